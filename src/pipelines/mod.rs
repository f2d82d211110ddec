//! ETL/CDC pipelines, the mechanics: copy and change capture from a registered PostgreSQL
//! database (a logical replication slot with `pgoutput`, over the streaming replication
//! protocol: [`postgres`]) or SQLite file (change-capture triggers: [`sqlite`]) into replica
//! tables in trexdb ([`target`]), exactly once across restarts. What a pipeline is and who may
//! start, stop or delete one is the domain's (`ops::pipelines`); this module runs them: one
//! supervised task per running pipeline ([`supervise`]), a service of the node named
//! `etl:<name>`, retried after `retryDelayMs` up to `retryMaxAttempts` times on a lost
//! connection, stopped in `error` with the reason on anything a retry cannot fix.
//!
//! States: `starting` → `snapshotting` (copy modes) → `streaming`; `stopping` → `stopped`;
//! `error`. A `copy_only` pipeline ends `stopped` when its copy is complete.

pub mod pgoutput;
pub mod pgtext;
pub mod postgres;
pub mod sqlite;
pub mod target;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::app::App;

/// What a pipeline does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Copy the tables, then stream their changes.
    CopyAndCdc,
    /// Stream changes from now on (no copy).
    CdcOnly,
    /// Copy the tables once.
    CopyOnly,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::CopyAndCdc => "copy_and_cdc",
            Mode::CdcOnly => "cdc_only",
            Mode::CopyOnly => "copy_only",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "copy_and_cdc" => Some(Mode::CopyAndCdc),
            "cdc_only" => Some(Mode::CdcOnly),
            "copy_only" => Some(Mode::CopyOnly),
            _ => None,
        }
    }

    pub fn copies(self) -> bool {
        self != Mode::CdcOnly
    }

    pub fn streams(self) -> bool {
        self != Mode::CopyOnly
    }
}

/// A running pipeline's figures, shared by its task, its applier and the listings.
#[derive(Default)]
pub struct Live {
    state: Mutex<(&'static str, Option<String>)>,
    /// Rows copied plus changes applied.
    pub rows: AtomicU64,
    /// When the replica last committed (unix ms).
    pub last_activity_ms: AtomicI64,
    /// The source position applied and committed (LSN or change sequence).
    pub applied: AtomicU64,
    /// The source's WAL end as last reported by the server.
    pub wal_end: AtomicU64,
    lags: Mutex<VecDeque<i64>>,
    last_lag_ms: AtomicI64,
}

/// How many commit lags the percentiles are taken over.
const LAG_WINDOW: usize = 16384;

impl Live {
    pub fn set(&self, state: &'static str, error: Option<String>) {
        *self.state.lock().unwrap() = (state, error);
    }

    pub fn state(&self) -> (&'static str, Option<String>) {
        self.state.lock().unwrap().clone()
    }

    /// Records the time from source commit to replica commit of some transactions (ms).
    pub fn record_lags(&self, lags: &[i64]) {
        if lags.is_empty() {
            return;
        }
        let mut g = self.lags.lock().unwrap();
        for &l in lags {
            if g.len() == LAG_WINDOW {
                g.pop_front();
            }
            g.push_back(l);
        }
        self.last_lag_ms
            .store(*lags.last().unwrap(), Ordering::Relaxed);
    }

    /// `(last, p50, p99)` of the recent commit lags, in ms.
    pub fn lag(&self) -> (Option<i64>, Option<i64>, Option<i64>) {
        let g = self.lags.lock().unwrap();
        if g.is_empty() {
            return (None, None, None);
        }
        let mut v: Vec<i64> = g.iter().copied().collect();
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        (
            Some(self.last_lag_ms.load(Ordering::Relaxed)),
            Some(at(0.5)),
            Some(at(0.99)),
        )
    }

    /// Bytes of source WAL not yet applied (PostgreSQL sources).
    pub fn lag_bytes(&self) -> u64 {
        self.wal_end
            .load(Ordering::Relaxed)
            .saturating_sub(self.applied.load(Ordering::Relaxed))
    }
}

/// Where the rows come from.
#[derive(Debug, Clone)]
pub enum Source {
    Postgres(crate::engine::postgres::Target),
    Sqlite(PathBuf),
}

/// Everything a pipeline run needs.
#[derive(Clone)]
pub struct Run {
    pub id: String,
    pub name: String,
    pub database_id: String,
    pub mode: Mode,
    pub publication: Option<String>,
    /// The schema of a `copy_only` PostgreSQL pipeline (default `public`).
    pub schema: String,
    /// Only these tables (`table` or `schema.table`); all of the publication/schema if `None`.
    pub tables: Option<Vec<String>>,
    /// The replication slot (PostgreSQL) or change-table suffix (SQLite): `trex_<id>`.
    pub slot: String,
    pub batch: target::Batch,
    pub retry_delay: Duration,
    pub retry_max: u32,
    pub source: Source,
    /// trexdb's main file, where the replica tables are.
    pub target: PathBuf,
    pub live: Arc<Live>,
    pub cancel: CancellationToken,
    /// On a store shared by several nodes: asked before each start and retry whether this node
    /// still runs the pipeline (false, or a store that does not answer, ends the run here as
    /// `moved`, without writing its row).
    pub owner: Option<OwnerCheck>,
}

/// See [`Run::owner`].
pub type OwnerCheck = Arc<dyn Fn() -> crate::ops::BoxFuture<bool> + Send + Sync>;

/// How a run ended without an error.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Stopped on request.
    Stopped,
    /// A `copy_only` copy is complete.
    Done,
}

/// How a run failed.
#[derive(Debug)]
pub enum Fail {
    /// Needs a person: wrong settings, a schema change, a diverged replica.
    Fatal(String),
    /// Worth retrying: a lost connection, a server restarting.
    Transient(String),
}

/// The replication slot name of a pipeline id: `trex_` and the id's first 16 hex digits.
pub fn slot_name(id: &str) -> String {
    let hex: String = id
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .take(16)
        .collect();
    format!("trex_{}", hex.to_ascii_lowercase())
}

/// Whether `t` (a source `schema.table`, or a bare table name) is selected by `tables`.
pub fn selected(tables: &Option<Vec<String>>, schema: &str, name: &str) -> bool {
    match tables {
        None => true,
        Some(list) => list
            .iter()
            .any(|t| t == name || *t == format!("{schema}.{name}")),
    }
}

/// A running pipeline's handle.
struct Handle {
    cancel: CancellationToken,
    live: Arc<Live>,
    done: tokio::sync::watch::Receiver<bool>,
}

/// The pipelines running on this node.
#[derive(Default)]
pub struct Running {
    all: Mutex<HashMap<String, Handle>>,
}

impl Running {
    /// The live figures of pipeline `id`, if it runs here.
    pub fn live(&self, id: &str) -> Option<Arc<Live>> {
        self.all.lock().unwrap().get(id).map(|h| h.live.clone())
    }

    /// The ids of the pipelines running here.
    pub fn ids(&self) -> Vec<String> {
        self.all.lock().unwrap().keys().cloned().collect()
    }

    /// How many pipelines run here.
    pub fn count(&self) -> usize {
        self.all.lock().unwrap().len()
    }

    /// True when pipeline `id` runs here.
    pub fn is_running(&self, id: &str) -> bool {
        self.all.lock().unwrap().contains_key(id)
    }

    /// Asks pipeline `id` to stop and waits up to `grace` for it; true if it ended.
    pub async fn stop(&self, id: &str, grace: Duration) -> bool {
        let Some(mut done) = ({
            let g = self.all.lock().unwrap();
            g.get(id).map(|h| {
                h.live.set("stopping", None);
                h.cancel.cancel();
                h.done.clone()
            })
        }) else {
            return true;
        };
        tokio::time::timeout(grace, done.wait_for(|d| *d))
            .await
            .is_ok()
    }
}

/// Starts `run` as a supervised task of the server (a service `etl:<name>`); `on_end` is told
/// the final state and error when it ends.
pub fn launch(
    app: &Arc<App>,
    run: Run,
    on_end: impl FnOnce(&'static str, Option<String>) -> crate::ops::BoxFuture<()> + Send + 'static,
) {
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    {
        let mut g = app.pipelines.all.lock().unwrap();
        if g.contains_key(&run.id) {
            return;
        }
        g.insert(
            run.id.clone(),
            Handle {
                cancel: run.cancel.clone(),
                live: run.live.clone(),
                done: done_rx,
            },
        );
    }
    let service = format!("etl:{}", run.name);
    app.services.started(
        &service,
        serde_json::json!({"mode": run.mode.as_str(), "databaseId": run.database_id, "slot": run.slot}),
        None,
    );
    let app2 = app.clone();
    // the server's shutdown stops the pipeline at a safe point
    let shutdown = app.shutdown.clone();
    let cancel = run.cancel.clone();
    app.tasks.spawn(async move {
        let watcher = tokio::spawn(async move {
            shutdown.cancelled().await;
            cancel.cancel();
        });
        let (state, error) = supervise(&run).await;
        watcher.abort();
        run.live.set(state, error.clone());
        app2.services.set_status(&service, "stopped");
        app2.services.error(&service, error.clone());
        // an ending caused by the server's own shutdown keeps the pipeline wanted: it resumes
        // at the next start; one that is no longer this node's is not written
        if !app2.shutdown.is_cancelled() && state != MOVED {
            on_end(state, error).await;
        }
        app2.pipelines.all.lock().unwrap().remove(&run.id);
        let _ = done_tx.send(true);
    });
}

/// How a run ends that found its pipeline no longer this node's ([`Run::owner`]).
const MOVED: &str = "moved";

/// Runs a pipeline until it is stopped, done or failed for good; returns the final state and
/// error.
async fn supervise(run: &Run) -> (&'static str, Option<String>) {
    let mut attempts = 0u32;
    loop {
        if run.cancel.is_cancelled() {
            return ("stopped", None);
        }
        if let Some(check) = &run.owner
            && !check().await
        {
            return (MOVED, None);
        }
        if attempts == 0 {
            run.live.set("starting", None);
        }
        let before = run.live.last_activity_ms.load(Ordering::Relaxed);
        let r = match &run.source {
            Source::Postgres(t) => postgres::run(run, t).await,
            Source::Sqlite(p) => sqlite::run(run, p.clone()).await,
        };
        match r {
            Ok(Outcome::Stopped) => return ("stopped", None),
            Ok(Outcome::Done) => return ("stopped", None),
            Err(Fail::Fatal(m)) => {
                tracing::warn!(pipeline = %run.name, "pipeline stopped: {m}");
                return ("error", Some(m));
            }
            Err(Fail::Transient(m)) => {
                if run.cancel.is_cancelled() {
                    return ("stopped", None);
                }
                // a run that made progress starts the count again
                if run.live.last_activity_ms.load(Ordering::Relaxed) != before {
                    attempts = 0;
                }
                attempts += 1;
                if attempts > run.retry_max {
                    return (
                        "error",
                        Some(format!("{m} (gave up after {} retries)", run.retry_max)),
                    );
                }
                tracing::info!(pipeline = %run.name, "retry {attempts}/{}: {m}", run.retry_max);
                run.live.set(
                    "starting",
                    Some(format!(
                        "{m}; retry {attempts} of {} in {} ms",
                        run.retry_max,
                        run.retry_delay.as_millis()
                    )),
                );
                tokio::select! {
                    _ = tokio::time::sleep(run.retry_delay) => {}
                    _ = run.cancel.cancelled() => return ("stopped", None),
                }
            }
        }
    }
}
