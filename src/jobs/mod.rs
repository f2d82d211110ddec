//! The durable job runtime. A job is a row of `jobs` in the control store (kind, JSON payload,
//! state `queued | running | succeeded | failed | cancelled`, attempts, progress, result or
//! error, lease). `jobs.workers` workers claim jobs with one atomic statement
//! ([`crate::store::jobs::claim`]), renew the lease while a job runs, and report progress
//! through one channel ([`Jobs::subscribe`]) that an MCP call waiting on the job turns into
//! `notifications/progress`. Because jobs are rows and leases are times, a job whose process
//! died is recovered by the next runtime that looks — on the next start, or by another runtime
//! on the same store: failed with a reason that says so, or queued again where its kind allows.
//! Cancellation ([`Jobs::cancel`]) reaches a running job at its next safe point (the handler
//! checks [`JobCtx::is_cancelled`] or awaits [`JobCtx::cancelled`]). At shutdown the runtime
//! stops claiming, lets running jobs finish for up to `server.shutdown_grace_secs`, then stops
//! them at a safe point and puts them back in the queue (or fails them when they may not run
//! again).
//!
//! Kinds are registered by the modules that own them (migrations, backups, pipeline snapshots):
//! [`Jobs::register`] with a handler `async fn(JobCtx, payload) -> Result<result, message>`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::jobs::{self as rows, Job};
use crate::util::{now_ms, random_hex};

/// What a job handler returns: its result, or the reason it failed.
pub type Outcome = std::result::Result<Value, String>;

type Handler =
    Arc<dyn Fn(JobCtx, Value) -> Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync>;

struct Kind {
    handler: Handler,
    /// May run again after its process died or the server stopped it.
    retry: bool,
}

/// Something that happened to a job, for whoever waits on it.
#[derive(Debug, Clone)]
pub enum JobEvent {
    Progress {
        id: String,
        progress: f64,
        total: Option<f64>,
        message: Option<String>,
    },
    Finished {
        id: String,
        state: String,
    },
}

/// What a handler gets: the job's id and attempt, its cancellation, and progress reporting.
#[derive(Clone)]
pub struct JobCtx {
    pub id: String,
    /// 1 for the first run.
    pub attempt: i64,
    cancel: CancellationToken,
    store: Store,
    events: broadcast::Sender<JobEvent>,
    /// When progress was last written to the job's row (writes are at most every
    /// [`PROGRESS_EVERY`]; every report still reaches the subscribers).
    saved: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

/// How often a job's progress is written to its row at most.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

impl JobCtx {
    /// True once the job should stop (cancelled, its lease lost, or the server stopping).
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Resolves when the job should stop.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// Reports progress: sent to every subscriber, and kept in the job's row (at most every
    /// 250 ms, and always the last report).
    pub async fn progress(&self, progress: f64, total: Option<f64>, message: Option<&str>) {
        let _ = self.events.send(JobEvent::Progress {
            id: self.id.clone(),
            progress,
            total,
            message: message.map(str::to_string),
        });
        {
            let mut saved = self.saved.lock().unwrap();
            let last = total.is_some_and(|t| progress >= t);
            if !last && saved.is_some_and(|at| at.elapsed() < PROGRESS_EVERY) {
                return;
            }
            *saved = Some(std::time::Instant::now());
        }
        let (id, msg) = (self.id.clone(), message.map(str::to_string));
        if let Err(e) = self
            .store
            .run(move |c| rows::set_progress(c, &id, progress, total, msg.as_deref()))
            .await
        {
            tracing::warn!(job = %self.id, "cannot record progress: {e}");
        }
    }
}

/// The runtime of one process.
pub struct Jobs {
    store: Store,
    /// This runtime's name in `lease_owner`.
    pub owner: String,
    lease: Duration,
    kinds: RwLock<HashMap<String, Arc<Kind>>>,
    notify: Notify,
    events: broadcast::Sender<JobEvent>,
    /// Cancels claiming (shutdown begins).
    stop: CancellationToken,
    /// Cancels running jobs (shutdown grace over).
    halt: CancellationToken,
    running: Mutex<HashMap<String, CancellationToken>>,
    tasks: TaskTracker,
    /// While set, workers claim nothing new (running jobs go on).
    paused: std::sync::atomic::AtomicBool,
}

impl Jobs {
    /// A runtime over `store` whose leases last `lease`.
    pub fn new(store: Store, lease: Duration) -> Arc<Jobs> {
        Arc::new(Jobs {
            store,
            owner: format!("{}-{}", std::process::id(), random_hex(4)),
            lease,
            kinds: RwLock::new(HashMap::new()),
            notify: Notify::new(),
            events: broadcast::channel(1024).0,
            stop: CancellationToken::new(),
            halt: CancellationToken::new(),
            running: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            paused: Default::default(),
        })
    }

    /// Registers a job kind. `retry`: a job of this kind may run again after its process died
    /// or the server stopped it mid-run (up to its `max_attempts`).
    pub fn register<F, Fut>(&self, kind: &str, retry: bool, f: F)
    where
        F: Fn(JobCtx, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |ctx, v| Box::pin(f(ctx, v)));
        self.kinds
            .write()
            .unwrap()
            .insert(kind.to_string(), Arc::new(Kind { handler, retry }));
        self.notify.notify_waiters();
    }

    fn kind_names(&self) -> (Vec<String>, Vec<String>) {
        let k = self.kinds.read().unwrap();
        let all = k.keys().cloned().collect();
        let retry = k
            .iter()
            .filter(|(_, v)| v.retry)
            .map(|(n, _)| n.clone())
            .collect();
        (all, retry)
    }

    /// Stops claiming new jobs (running ones finish), or starts again.
    pub fn set_paused(&self, paused: bool) {
        self.paused
            .store(paused, std::sync::atomic::Ordering::Release);
        self.notify.notify_waiters();
    }

    /// True while paused.
    pub fn is_paused(&self) -> bool {
        self.paused.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Queues a job; returns its id.
    pub async fn enqueue(
        &self,
        kind: &str,
        payload: &Value,
        max_attempts: u32,
        created_by: Option<&str>,
    ) -> Result<String> {
        if !self.kinds.read().unwrap().contains_key(kind) {
            return Err(Error::Invalid(format!("unknown job kind {kind:?}")));
        }
        let (kind, payload, by) = (
            kind.to_string(),
            payload.to_string(),
            created_by.map(str::to_string),
        );
        let id = self
            .store
            .run(move |c| rows::enqueue(c, &kind, &payload, max_attempts, by.as_deref()))
            .await?;
        self.notify.notify_waiters();
        Ok(id)
    }

    /// One job.
    pub async fn get(&self, id: &str) -> Result<Option<Job>> {
        let id = id.to_string();
        self.store.run(move |c| rows::get(c, &id)).await
    }

    /// Asks a job to stop; returns its state after the request (`None`: unknown job).
    pub async fn cancel(&self, id: &str) -> Result<Option<String>> {
        let key = id.to_string();
        let state = self
            .store
            .run(move |c| rows::request_cancel(c, &key))
            .await?;
        if let Some(t) = self.running.lock().unwrap().get(id) {
            t.cancel();
        }
        Ok(state)
    }

    /// Every progress and end of every job of this runtime, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.events.subscribe()
    }

    /// Waits until job `id` has ended, calling `on_progress` for its progress on the way.
    /// Ends of jobs that run in another process are noticed by polling the row.
    pub async fn wait(
        &self,
        id: &str,
        on_progress: impl FnMut(f64, Option<f64>, Option<&str>),
    ) -> Result<Job> {
        self.wait_from(self.subscribe(), id, on_progress).await
    }

    /// [`wait`](Self::wait) with events subscribed to earlier: a caller that queues a job and
    /// then waits on it subscribes first, so no progress the job reports before the wait begins
    /// is lost (a short job may be claimed and run to its end in that gap).
    pub async fn wait_from(
        &self,
        mut rx: broadcast::Receiver<JobEvent>,
        id: &str,
        mut on_progress: impl FnMut(f64, Option<f64>, Option<&str>),
    ) -> Result<Job> {
        loop {
            if let Some(j) = self.get(id).await?
                && !matches!(j.state.as_str(), "queued" | "running")
            {
                return Ok(j);
            }
            let poll = tokio::time::sleep(Duration::from_millis(500));
            tokio::pin!(poll);
            loop {
                tokio::select! {
                    ev = rx.recv() => match ev {
                        Ok(JobEvent::Progress { id: j, progress, total, message }) if j == id => {
                            on_progress(progress, total, message.as_deref())
                        }
                        Ok(JobEvent::Finished { id: j, .. }) if j == id => break,
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                    _ = &mut poll => break,
                }
            }
        }
    }

    /// Marks jobs whose lease ran out (their process died) as failed or queued again.
    pub async fn recover(&self) -> Result<usize> {
        let (_, retry) = self.kind_names();
        let n = self
            .store
            .run(move |c| rows::recover(c, now_ms(), &retry))
            .await?;
        if n > 0 {
            tracing::warn!("recovered {n} job(s) whose process stopped before they finished");
            self.notify.notify_waiters();
        }
        Ok(n)
    }

    /// Starts `workers` workers and the recovery sweep.
    pub fn start(self: &Arc<Self>, workers: usize) {
        for _ in 0..workers {
            let me = self.clone();
            self.tasks.spawn(async move { me.worker().await });
        }
        let me = self.clone();
        self.tasks.spawn(async move {
            loop {
                if let Err(e) = me.recover().await {
                    tracing::warn!("job recovery: {e}");
                }
                tokio::select! {
                    _ = tokio::time::sleep(me.lease) => {}
                    _ = me.stop.cancelled() => return,
                }
            }
        });
    }

    async fn worker(self: Arc<Self>) {
        while !self.stop.is_cancelled() {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (kinds, _) = self.kind_names();
            let paused = self.paused.load(std::sync::atomic::Ordering::Acquire);
            let claimed = if kinds.is_empty() || paused {
                Ok(None)
            } else {
                let (owner, lease) = (self.owner.clone(), self.lease.as_millis() as i64);
                self.store
                    .run(move |c| {
                        let now = now_ms();
                        rows::claim(c, &owner, &kinds, now, now + lease)
                    })
                    .await
            };
            match claimed {
                Ok(Some(job)) => self.run_one(job).await,
                Ok(None) => {
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = self.stop.cancelled() => return,
                    }
                }
                Err(e) => {
                    tracing::warn!("claiming a job: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn run_one(self: &Arc<Self>, job: rows::Claimed) {
        let Some(kind) = self.kinds.read().unwrap().get(&job.kind).cloned() else {
            return;
        };
        let token = self.halt.child_token();
        self.running
            .lock()
            .unwrap()
            .insert(job.id.clone(), token.clone());
        // the lease is renewed while the job runs; a lost lease or a cancel request stops it
        let cancel_asked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let renewer = {
            let (me, id, token, asked) = (
                self.clone(),
                job.id.clone(),
                token.clone(),
                cancel_asked.clone(),
            );
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(me.lease / 3) => {}
                        _ = token.cancelled() => return,
                    }
                    let (owner, lease, id2) =
                        (me.owner.clone(), me.lease.as_millis() as i64, id.clone());
                    match me
                        .store
                        .run(move |c| {
                            let now = now_ms();
                            rows::renew(c, &id2, &owner, now, now + lease)
                        })
                        .await
                    {
                        Ok(Some(false)) => {}
                        Ok(Some(true)) => {
                            asked.store(true, std::sync::atomic::Ordering::Release);
                            token.cancel();
                            return;
                        }
                        Ok(None) => {
                            tracing::warn!(job = %id, "lost the lease of a running job; stopping it");
                            token.cancel();
                            return;
                        }
                        Err(e) => tracing::warn!(job = %id, "renewing a job lease: {e}"),
                    }
                }
            })
        };
        // a cancel asked between the claim and the registration above found no token to fire
        if self.cancel_requested(&job.id).await {
            cancel_asked.store(true, std::sync::atomic::Ordering::Release);
            token.cancel();
        }
        let ctx = JobCtx {
            id: job.id.clone(),
            attempt: job.attempts,
            cancel: token.clone(),
            store: self.store.clone(),
            events: self.events.clone(),
            saved: Default::default(),
        };
        let payload: Value = serde_json::from_str(&job.payload).unwrap_or(Value::Null);
        let outcome = (kind.handler)(ctx, payload).await;
        renewer.abort();
        self.running.lock().unwrap().remove(&job.id);
        let asked = cancel_asked.load(std::sync::atomic::Ordering::Acquire)
            || self.cancel_requested(&job.id).await;
        let halted = self.halt.is_cancelled();
        let (state, result, error) = match outcome {
            Ok(v) => ("succeeded", Some(v.to_string()), None),
            Err(e) if asked => ("cancelled", None, Some(format!("cancelled: {e}"))),
            Err(e) if halted && kind.retry => {
                ("queued", None, Some(format!("stopped at shutdown: {e}")))
            }
            Err(e) if halted => (
                "failed",
                None,
                Some(format!(
                    "interrupted: the server stopped before it finished ({e})"
                )),
            ),
            Err(e) => ("failed", None, Some(e)),
        };
        let (id, owner) = (job.id.clone(), self.owner.clone());
        let done = self
            .store
            .run(move |c| rows::finish(c, &id, &owner, state, result.as_deref(), error.as_deref()))
            .await;
        match done {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(job = %job.id, "a job ended after it was recovered elsewhere")
            }
            Err(e) => tracing::error!(job = %job.id, "cannot record the end of a job: {e}"),
        }
        let _ = self.events.send(JobEvent::Finished {
            id: job.id,
            state: state.to_string(),
        });
    }

    async fn cancel_requested(&self, id: &str) -> bool {
        let id = id.to_string();
        self.store
            .run(move |c| rows::get(c, &id))
            .await
            .ok()
            .flatten()
            .is_some_and(|j| j.cancel_requested)
    }

    /// Stops the runtime: no new claims; running jobs get `grace` to finish, then are stopped
    /// at a safe point (and requeued or failed, by kind) — waiting at most `grace` more.
    pub async fn shutdown(&self, grace: Duration) {
        self.stop.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            let n = self.running.lock().unwrap().len();
            tracing::warn!(
                "stopping {n} running job(s) at a safe point: the shutdown grace is over"
            );
            self.halt.cancel();
            let _ = tokio::time::timeout(grace, self.tasks.wait()).await;
        }
    }
}

/// The reason a job handler reports for a failed operation: the error's text, or for an
/// internal one a generic sentence (the detail goes to the log, not to the caller).
pub fn reason(kind: &str, e: &Error) -> String {
    if e.is_internal() {
        crate::error::internal(&format!("job {kind} failed"), e)
    } else {
        e.to_string()
    }
}
