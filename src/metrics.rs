//! Counters of this process for `/metrics` (Prometheus text): tool calls by server, tool and
//! outcome, and a latency histogram of tool calls. Kept in memory; the gauges (sessions, jobs,
//! engine load, memory) are read from the services when `/metrics` is asked.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram's buckets.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Outcomes counted, in the order of a tool's counters.
const OUTCOMES: [&str; 3] = ["ok", "error", "refused"];

/// The counters.
#[derive(Default)]
pub struct Metrics {
    /// server → tool → calls per outcome (looked up by `&str`: no allocation once a tool has
    /// been called).
    calls: Mutex<HashMap<String, HashMap<String, [u64; 3]>>>,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Metrics {
    /// Counts one tool call of `server` that ended with `outcome` (`ok`, `error`, `refused`)
    /// after `took`.
    pub fn tool_call(&self, server: &str, tool: &str, outcome: &'static str, took: Duration) {
        let i = OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(1);
        {
            let mut calls = self.calls.lock().unwrap();
            let tools = match calls.get_mut(server) {
                Some(t) => t,
                None => calls.entry(server.to_string()).or_default(),
            };
            match tools.get_mut(tool) {
                Some(c) => c[i] += 1,
                None => tools.entry(tool.to_string()).or_default()[i] += 1,
            }
        }
        let s = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| s <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// The counters in Prometheus text.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP trex_store_statements_total Statements the control store ran (on PostgreSQL each is a round trip).\n# TYPE trex_store_statements_total counter\ntrex_store_statements_total {}",
            crate::store::sql::STATEMENTS.load(Ordering::Relaxed)
        );
        out.push_str("# HELP trex_tool_calls_total Tool calls by server, tool and outcome.\n# TYPE trex_tool_calls_total counter\n");
        let mut calls: Vec<((String, String, &str), u64)> = Vec::new();
        for (server, tools) in self.calls.lock().unwrap().iter() {
            for (tool, counts) in tools {
                for (o, n) in OUTCOMES.iter().zip(counts) {
                    if *n > 0 {
                        calls.push(((server.clone(), tool.clone(), o), *n));
                    }
                }
            }
        }
        calls.sort();
        let mut errors = 0;
        for ((server, tool, outcome), n) in &calls {
            if *outcome != "ok" {
                errors += n;
            }
            let _ = writeln!(
                out,
                "trex_tool_calls_total{{server=\"{}\",tool=\"{}\",outcome=\"{outcome}\"}} {n}",
                label(server),
                label(tool)
            );
        }
        let _ = writeln!(
            out,
            "# HELP trex_tool_errors_total Tool calls that ended in an error or a refusal.\n# TYPE trex_tool_errors_total counter\ntrex_tool_errors_total {errors}"
        );
        out.push_str("# HELP trex_tool_call_seconds Time from a tool call's start to its result.\n# TYPE trex_tool_call_seconds histogram\n");
        let mut cumulative = 0;
        for (b, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "trex_tool_call_seconds_bucket{{le=\"{b}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "trex_tool_call_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "trex_tool_call_seconds_sum {}\ntrex_tool_call_seconds_count {count}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
    }
}

/// A label value with `\` and `"` escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"")
}
