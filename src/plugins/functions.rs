//! Plugin functions: running one executable of a plugin for one request.
//!
//! The contract (documented in the development guide): the executable is started directly — no
//! shell, no arguments — with the plugin's package directory as working directory and a scrubbed
//! environment (only `PATH`, `LANG`, `HOME`=the package directory and the `TREX_*` variables
//! below). It reads one JSON object on stdin:
//! `{"function", "method", "path", "query", "headers", "body", "tool", "arguments", "caller"}`
//! and writes one JSON object on stdout: `{"status"?: 200, "headers"?: {…}, "body"?: any}`. A
//! call that outlives its time limit is killed (its whole process group) and answered 504; a
//! non-zero exit, an answer that is not JSON or one over `plugins.max_output_bytes` is 502 (the
//! group is killed at once). At most `plugins.max_concurrent_functions` run at once; the rest
//! wait, up to their time limit (then 503). Whatever way a call ends — its client gone
//! included — the function's process group is killed, so nothing it started lives on.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Environment variables a function sees besides `PATH`, `LANG` and `HOME`.
pub const ENV: &[&str] = &[
    "TREX_PLUGIN",
    "TREX_FUNCTION",
    "TREX_FUNCTION_PATH",
    "TREX_PLUGIN_DIR",
    "TREX_PLUGIN_DB",
];

/// The function runners of this process: a limit on how many run at once, and counters.
pub struct Runners {
    slots: tokio::sync::Semaphore,
    max_output: usize,
    pub calls: AtomicU64,
    pub failures: AtomicU64,
    pub timeouts: AtomicU64,
}

impl Runners {
    pub fn new(config: &crate::config::PluginsConfig) -> Runners {
        Runners {
            slots: tokio::sync::Semaphore::new(config.max_concurrent_functions),
            max_output: config.max_output_bytes,
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
        }
    }

    /// Calls waiting for a runner or running now.
    pub fn busy(&self, max: usize) -> usize {
        max.saturating_sub(self.slots.available_permits())
    }
}

/// One call of one function.
pub struct Call {
    pub plugin: String,
    pub function: String,
    /// The executable (inside `cwd`).
    pub command: PathBuf,
    /// The plugin's package directory.
    pub cwd: PathBuf,
    /// The plugin's own database.
    pub database: PathBuf,
    pub timeout: Duration,
    /// The JSON request written to stdin.
    pub request: Value,
}

/// A function's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Map<String, Value>,
    pub body: Value,
    pub duration_ms: u64,
}

impl Answer {
    fn failed(status: u16, msg: String, started: Instant) -> Answer {
        Answer {
            status,
            headers: Map::new(),
            body: json!({"error": msg}),
            duration_ms: started.elapsed().as_millis() as u64,
        }
    }
}

/// Kills the process group of `pid` (the function and anything it started).
fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid {
        // SAFETY: plain syscall; a negative pid names the process group we created for the child
        unsafe {
            libc::kill(-(pid as i32), libc::SIGKILL);
        }
    }
}

/// Kills the function's process group when the call ends in any way — answered, timed out, or
/// dropped because its client went away — so nothing it started outlives it.
struct Group(Option<u32>);

impl Drop for Group {
    fn drop(&mut self) {
        kill_group(self.0);
    }
}

/// Most stderr kept for the log; the rest is read and thrown away.
const STDERR_KEPT: usize = 64 * 1024;

/// Runs `call`; failures of the function itself are answers (502, 503, 504), not errors.
pub async fn run(runners: &Runners, call: Call) -> Answer {
    let started = Instant::now();
    let Ok(Ok(_slot)) = tokio::time::timeout(call.timeout, runners.slots.acquire()).await else {
        runners.failures.fetch_add(1, Ordering::Relaxed);
        return Answer::failed(
            503,
            format!(
                "every plugin function runner stayed busy for {} ms (plugins.max_concurrent_functions)",
                call.timeout.as_millis()
            ),
            started,
        );
    };
    runners.calls.fetch_add(1, Ordering::Relaxed);
    let fn_path = format!("/plugins/{}/fn/{}", call.plugin, call.function);
    let mut cmd = tokio::process::Command::new(&call.command);
    cmd.current_dir(&call.cwd)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .env("HOME", &call.cwd)
        .env("TREX_PLUGIN", &call.plugin)
        .env("TREX_FUNCTION", &call.function)
        .env("TREX_FUNCTION_PATH", &fn_path)
        .env("TREX_PLUGIN_DIR", &call.cwd)
        .env("TREX_PLUGIN_DB", &call.database)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            runners.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(plugin = %call.plugin, function = %call.function, "cannot start plugin function: {e}");
            return Answer::failed(
                502,
                format!("function {} could not be started", call.function),
                started,
            );
        }
    };
    let pid = child.id();
    let _group = Group(pid);
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let input = serde_json::to_vec(&call.request).expect("json");
    let max = runners.max_output;
    let work = async {
        // the request is written while the answer is read, so a big one cannot deadlock
        let write = async {
            let _ = stdin.write_all(&input).await;
            drop(stdin);
        };
        let read_out = async {
            let mut buf = Vec::new();
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                match stdout.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        buf.extend_from_slice(&chunk[..n]);
                        if buf.len() > max {
                            // stop it at once: it would block on a full pipe until the timeout
                            kill_group(pid);
                            return Err(());
                        }
                    }
                }
            }
            Ok(buf)
        };
        let read_err = async {
            let (mut kept, mut chunk) = (Vec::new(), vec![0u8; 16 * 1024]);
            loop {
                match stderr.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let room = STDERR_KEPT.saturating_sub(kept.len());
                        kept.extend_from_slice(&chunk[..n.min(room)]);
                    }
                }
            }
            kept
        };
        // once the function exits, what it left running goes (and with it the pipes it holds)
        let wait = async {
            let status = child.wait().await;
            kill_group(pid);
            status
        };
        let ((), out, err, status) = tokio::join!(write, read_out, read_err, wait);
        (out, err, status)
    };
    let (out, err, status) = match tokio::time::timeout(call.timeout, work).await {
        Ok(r) => r,
        Err(_) => {
            runners.timeouts.fetch_add(1, Ordering::Relaxed);
            runners.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(plugin = %call.plugin, function = %call.function, "plugin function timed out after {:?}", call.timeout);
            return Answer::failed(
                504,
                format!(
                    "function {} timed out after {} ms",
                    call.function,
                    call.timeout.as_millis()
                ),
                started,
            );
        }
    };
    let stderr_text = String::from_utf8_lossy(&err).trim().to_string();
    let fail = |msg: String| {
        runners.failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(plugin = %call.plugin, function = %call.function, stderr = %stderr_text, "{msg}");
        Answer::failed(502, msg, started)
    };
    let Ok(out) = out else {
        return fail(format!(
            "function {} answered more than {max} bytes",
            call.function
        ));
    };
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => return fail(format!("function {} failed ({s})", call.function)),
        Err(e) => return fail(format!("function {} failed ({e})", call.function)),
    }
    let v: Value = match serde_json::from_slice(&out) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return fail(format!(
                "function {} did not answer one JSON object on stdout",
                call.function
            ));
        }
    };
    let status = match v.get("status") {
        None => 200,
        Some(s) => match s.as_u64().filter(|s| (200..=599).contains(s)) {
            Some(s) => s as u16,
            None => {
                return fail(format!(
                    "function {}: `status` must be 200–599",
                    call.function
                ));
            }
        },
    };
    let headers = match v.get("headers") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(h)) if h.values().all(Value::is_string) => h.clone(),
        Some(_) => {
            return fail(format!(
                "function {}: `headers` must map names to strings",
                call.function
            ));
        }
    };
    Answer {
        status,
        headers,
        body: v.get("body").cloned().unwrap_or(Value::Null),
        duration_ms: started.elapsed().as_millis() as u64,
    }
}
