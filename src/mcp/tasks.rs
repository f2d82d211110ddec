//! The tasks extension of 2026-07-28 (`io.modelcontextprotocol/tasks`): a `tools/call` answered
//! with a task handle (`resultType: "task"`) while the work goes on in the background, then
//! polled with `tasks/get`, given answers with `tasks/update`, stopped with `tasks/cancel`.
//!
//! Tasks are rows ([`crate::store::tasks`]), so any connection of the caller's key — on any
//! node — can poll one, and the row exists before the client hears of the task. The process
//! that runs a task leases it (renewed every few seconds); a task whose runner died is answered
//! as `failed`, unless it follows durable work (its `backing`: a migration run, which the job
//! runtime recovers), in which case that work's outcome is its result. Creation is the server's
//! choice, per call: a tool marked [`TaskSupport`](super::tool::TaskSupport) runs as a task
//! when the request declared the extension (a `Required` one refuses requests that did not,
//! with -32021). A tool may first ask questions in the request (multi-round-trip) and only then
//! become a task ([`CallContext::start_task`](super::context::CallContext::start_task)).
//! While it runs, what it asks the client goes to `inputRequests` and waits for `tasks/update`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use super::protocol::{Json, RpcError};
use crate::error::code;
use crate::store::Store;
use crate::store::tasks::{self as rows, TaskRow};
use crate::util::{now_ms, random_hex, rfc3339};

/// The extension's name, in capabilities.
pub const EXTENSION: &str = "io.modelcontextprotocol/tasks";

/// How long a task stays readable after it was created.
const TTL_MS: i64 = 60 * 60 * 1000;
/// The polling interval suggested to clients.
const POLL_MS: i64 = 500;
/// A runner's lease on its tasks, and how often it renews it.
const LEASE_MS: i64 = 15_000;
const RENEW_EVERY: Duration = Duration::from_secs(5);
/// How often a waiting question looks for answers that came through another node.
const ANSWER_POLL: Duration = Duration::from_millis(250);

/// Something every resumer of durable work answers: `None` while the work goes on, else the
/// task's outcome (the tool's result, or a protocol error).
pub type Resumer =
    Arc<dyn Fn(Value) -> super::tool::BoxFuture<Option<Result<Json, RpcError>>> + Send + Sync>;

/// The tasks of this process, and the rules of all tasks.
pub struct Tasks {
    store: Store,
    /// This process's name in `runner`.
    runner: String,
    live: Mutex<HashMap<String, Live>>,
    /// Every change of a task this process runs: `(key id, DetailedTask)`.
    updates: broadcast::Sender<(String, Value)>,
    /// How durable work is read back, by the `kind` of a task's backing.
    resumers: std::sync::RwLock<HashMap<String, Resumer>>,
}

struct Live {
    cancel: CancellationToken,
    answered: Arc<Notify>,
}

/// True when client capabilities (a request's `_meta` ones) declare the extension.
pub fn declared(capabilities: &Value) -> bool {
    capabilities
        .get("extensions")
        .and_then(|e| e.get(EXTENSION))
        .is_some()
}

/// The error a request without the extension gets from what needs it.
pub fn missing_extension() -> RpcError {
    RpcError::new(
        super::context::MISSING_CLIENT_CAPABILITY,
        "Missing required client capability: this request needs the io.modelcontextprotocol/tasks extension",
    )
    .with_data(json!({"requiredCapabilities": {"extensions": {EXTENSION: {}}}}))
}

fn not_found() -> RpcError {
    RpcError::invalid_params("Failed to retrieve task: Task not found")
}

fn internal(e: crate::Error) -> RpcError {
    RpcError::new(
        code::INTERNAL_ERROR,
        crate::error::internal("task store failed", &e),
    )
}

impl Tasks {
    /// The task runtime of a process named `runner`.
    pub fn new(store: Store, runner: String) -> Arc<Tasks> {
        Arc::new(Tasks {
            store,
            runner,
            live: Mutex::new(HashMap::new()),
            updates: broadcast::channel(256).0,
            resumers: Default::default(),
        })
    }

    /// Registers how tasks backed by durable work of `kind` are read back.
    pub fn register_resumer(&self, kind: &str, f: Resumer) {
        self.resumers.write().unwrap().insert(kind.to_string(), f);
    }

    /// Changes of tasks this process runs, for `subscriptions/listen`.
    pub fn updates(&self) -> broadcast::Receiver<(String, Value)> {
        self.updates.subscribe()
    }

    /// Renews this runner's leases, relays cancellations asked on other nodes, and deletes
    /// expired tasks, until `stop`.
    pub async fn maintain(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let runner = self.runner.clone();
            let now = now_ms();
            let r = self
                .store
                .run(move |c| {
                    rows::renew(c, &runner, now + LEASE_MS)?;
                    rows::delete_expired(c, now)?;
                    rows::cancel_requested(c, &runner)
                })
                .await;
            match r {
                Ok(ids) => {
                    let live = self.live.lock().unwrap();
                    for id in ids {
                        if let Some(l) = live.get(&id) {
                            l.cancel.cancel();
                        }
                    }
                }
                Err(e) => tracing::warn!("task upkeep: {e}"),
            }
            tokio::select! {
                _ = tokio::time::sleep(RENEW_EVERY) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    /// Creates the row of a new task run here, whose work stops when `cancel` fires; returns it.
    async fn create(
        &self,
        key_id: &str,
        server_id: &str,
        tool: &str,
        cancel: CancellationToken,
    ) -> Result<TaskRow, RpcError> {
        let now = now_ms();
        let row = TaskRow {
            id: random_hex(16),
            key_id: key_id.to_string(),
            server_id: server_id.to_string(),
            tool: tool.to_string(),
            status: "working".into(),
            status_message: None,
            backing: None,
            runner: Some(self.runner.clone()),
            lease_until: now + LEASE_MS,
            result: None,
            error: None,
            input_requests: Map::new(),
            cancel_requested: false,
            created_at: now,
            updated_at: now,
            ttl_ms: TTL_MS,
        };
        let r = row.clone();
        self.store
            .write(move |c| rows::insert(c, &r))
            .await
            .map_err(internal)?;
        self.live.lock().unwrap().insert(
            row.id.clone(),
            Live {
                cancel,
                answered: Arc::new(Notify::new()),
            },
        );
        Ok(row)
    }

    fn cancel_token(&self, id: &str) -> Option<CancellationToken> {
        self.live.lock().unwrap().get(id).map(|l| l.cancel.clone())
    }

    async fn read(&self, id: &str, key_id: &str) -> Result<TaskRow, RpcError> {
        let (i, k, now) = (id.to_string(), key_id.to_string(), now_ms());
        self.store
            .run(move |c| rows::get(c, &i, &k, now))
            .await
            .map_err(internal)?
            .ok_or_else(not_found)
    }

    async fn publish(&self, id: &str, key_id: &str) {
        if self.updates.receiver_count() == 0 {
            return;
        }
        if let Ok(t) = self.read(id, key_id).await {
            let _ = self.updates.send((key_id.to_string(), detailed(&t)));
        }
    }

    /// Ends task `id` with the outcome of its request (a cancelled one stays cancelled).
    async fn finish(&self, id: &str, key_id: &str, outcome: Outcome) {
        let (status, message, result, error) = match outcome {
            Outcome::Done(Ok(j)) => ("completed", None, Some(j.as_str().to_string()), None),
            Outcome::Done(Err(e)) => (
                "failed",
                Some(e.message.clone()),
                None,
                Some(serde_json::to_string(&e.to_value()).expect("json")),
            ),
            Outcome::Cancelled => (
                "cancelled",
                Some("Cancelled by the client".to_string()),
                None,
                None,
            ),
        };
        let i = id.to_string();
        let now = now_ms();
        if let Err(e) = self
            .store
            .write(move |c| {
                rows::finish(
                    c,
                    &i,
                    status,
                    message.as_deref(),
                    result.as_deref(),
                    error.as_deref(),
                    now,
                )
            })
            .await
        {
            tracing::error!(task = id, "cannot record the end of a task: {e}");
        }
        self.live.lock().unwrap().remove(id);
        self.publish(id, key_id).await;
    }

    /// `tasks/get`: the task as it stands, with its result, error or open questions.
    pub async fn get(&self, id: &str, key_id: &str) -> Result<Value, RpcError> {
        let mut t = self.read(id, key_id).await?;
        if !t.is_terminal() && t.lease_until < now_ms() {
            t = self.settle_orphan(t).await?;
        }
        Ok(detailed(&t))
    }

    /// A live task whose runner stopped renewing its lease: answered from the durable work it
    /// follows when it has one, else failed.
    async fn settle_orphan(&self, t: TaskRow) -> Result<TaskRow, RpcError> {
        let resumer = t
            .backing
            .as_ref()
            .and_then(|b| b.get("kind"))
            .and_then(Value::as_str)
            .and_then(|k| self.resumers.read().unwrap().get(k).cloned());
        let outcome = match (resumer, t.backing.clone()) {
            (Some(f), Some(b)) => match f(b).await {
                Some(o) => Outcome::Done(o),
                None => return Ok(t),
            },
            _ => Outcome::Done(Err(RpcError::new(
                code::INTERNAL_ERROR,
                "The server running this task stopped before it finished",
            ))),
        };
        self.finish(&t.id, &t.key_id, outcome).await;
        self.read(&t.id, &t.key_id).await
    }

    /// `tasks/update`: answers to open questions (unknown and answered keys are ignored).
    pub async fn update(&self, id: &str, key_id: &str, responses: &Value) -> Result<(), RpcError> {
        let Value::Object(responses) = responses else {
            return Err(RpcError::invalid_params(
                "Invalid params: `inputResponses` must be an object",
            ));
        };
        self.read(id, key_id).await?;
        let (i, r, now) = (id.to_string(), responses.clone(), now_ms());
        let taken = self
            .store
            .write(move |c| rows::answer(c, &i, &r, now))
            .await
            .map_err(internal)?;
        if !taken.is_empty() {
            if let Some(l) = self.live.lock().unwrap().get(id) {
                l.answered.notify_waiters();
            }
            self.publish(id, key_id).await;
        }
        Ok(())
    }

    /// `tasks/cancel`: asks the task to stop (acknowledged also when it has ended).
    pub async fn cancel(
        &self,
        id: &str,
        key_id: &str,
        jobs: &crate::jobs::Jobs,
    ) -> Result<(), RpcError> {
        let t = self.read(id, key_id).await?;
        if t.is_terminal() {
            return Ok(());
        }
        let i = id.to_string();
        self.store
            .write(move |c| rows::request_cancel(c, &i))
            .await
            .map_err(internal)?;
        if let Some(job) = t
            .backing
            .as_ref()
            .and_then(|b| b.get("job"))
            .and_then(Value::as_str)
            && let Err(e) = jobs.cancel(job).await
        {
            tracing::warn!(task = id, "cannot cancel the task's job: {e}");
        }
        if let Some(c) = self.cancel_token(id) {
            c.cancel();
        }
        Ok(())
    }

    /// The time fields of a fresh task for the `CreateTaskResult`.
    fn created(t: &TaskRow) -> Value {
        let mut v = detailed(t);
        if let Some(o) = v.as_object_mut() {
            o.insert("resultType".into(), json!("task"));
        }
        v
    }
}

/// How a task's request ended.
enum Outcome {
    Done(Result<Json, RpcError>),
    Cancelled,
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(rfc3339)
        .unwrap_or_default()
}

/// The `DetailedTask` of a row: status, times, and the result, error or open questions.
pub fn detailed(t: &TaskRow) -> Value {
    let mut v = json!({
        "taskId": t.id,
        "status": t.status,
        "createdAt": iso(t.created_at),
        "lastUpdatedAt": iso(t.updated_at),
        "ttlMs": t.ttl_ms,
        "pollIntervalMs": POLL_MS,
    });
    if let Some(m) = &t.status_message {
        v["statusMessage"] = json!(m);
    }
    match t.status.as_str() {
        "completed" => {
            v["result"] = t
                .result
                .as_deref()
                .and_then(|r| serde_json::from_str(r).ok())
                .unwrap_or_else(|| json!({"content": [], "isError": false}));
        }
        "failed" => {
            v["error"] = t
                .error
                .as_deref()
                .and_then(|r| serde_json::from_str(r).ok())
                .unwrap_or_else(|| json!({"code": code::INTERNAL_ERROR, "message": "Task failed"}));
        }
        "input_required" => v["inputRequests"] = Value::Object(t.input_requests.clone()),
        _ => {}
    }
    v
}

/// One request's way into the extension: present when the client declared it and the tool may
/// run as a task. The task exists once [`TaskSlot::start`] ran.
pub struct TaskSlot {
    tasks: Arc<Tasks>,
    key_id: String,
    server_id: String,
    tool: String,
    /// The request's cancellation, which becomes the task's.
    cancel: CancellationToken,
    state: Mutex<Option<TaskRow>>,
    started: Notify,
}

impl TaskSlot {
    /// A slot for a call of `tool` by key `key_id`, whose work stops when `cancel` fires.
    pub fn new(
        tasks: Arc<Tasks>,
        key_id: &str,
        server_id: &str,
        tool: &str,
        cancel: CancellationToken,
    ) -> Arc<TaskSlot> {
        Arc::new(TaskSlot {
            tasks,
            key_id: key_id.to_string(),
            server_id: server_id.to_string(),
            tool: tool.to_string(),
            cancel,
            state: Mutex::new(None),
            started: Notify::new(),
        })
    }

    /// The task's id once it exists.
    pub fn id(&self) -> Option<String> {
        self.state.lock().unwrap().as_ref().map(|t| t.id.clone())
    }

    /// Makes the request a task (once): its row is written before the client is told.
    pub async fn start(&self) -> Result<(), RpcError> {
        if self.id().is_some() {
            return Ok(());
        }
        let row = self
            .tasks
            .create(
                &self.key_id,
                &self.server_id,
                &self.tool,
                self.cancel.clone(),
            )
            .await?;
        *self.state.lock().unwrap() = Some(row);
        self.started.notify_one();
        Ok(())
    }

    /// Records the durable work the task follows (`{"kind": …, "job"?: …, …}`), so it is
    /// answered from that work if this process stops.
    pub async fn follow(&self, backing: Value) {
        let Some(id) = self.id() else { return };
        let now = now_ms();
        if let Err(e) = self
            .tasks
            .store
            .write(move |c| rows::set_backing(c, &id, &backing, now))
            .await
        {
            tracing::warn!("cannot record a task's backing: {e}");
        }
    }

    /// Sets the task's status message (what it is doing now).
    pub async fn say(&self, message: &str) {
        let Some(id) = self.id() else { return };
        let (m, now) = (message.to_string(), now_ms());
        let _ = self
            .tasks
            .store
            .write(move |c| rows::set_message(c, &id, &m, now))
            .await;
    }

    /// Asks the client `request` (`{method, params}`) under `key` and waits for `tasks/update`
    /// to bring the answer (or the task to be cancelled).
    pub async fn ask(
        &self,
        key: &str,
        request: Value,
        cancel: &CancellationToken,
    ) -> Result<Value, RpcError> {
        let id = self.id().expect("asked before the task started");
        let answered = self
            .tasks
            .live
            .lock()
            .unwrap()
            .get(&id)
            .map(|l| l.answered.clone())
            .unwrap_or_default();
        let (i, k, now) = (id.clone(), key.to_string(), now_ms());
        let fresh = self
            .tasks
            .store
            .write(move |c| rows::ask(c, &i, &k, &request, now))
            .await
            .map_err(internal)?;
        if !fresh {
            return Err(RpcError::new(
                code::INTERNAL_ERROR,
                format!("question key {key:?} was used before in this task"),
            ));
        }
        self.tasks.publish(&id, &self.key_id).await;
        loop {
            let wake = answered.notified();
            let (i, k, now) = (id.clone(), key.to_string(), now_ms());
            if let Some(v) = self
                .tasks
                .store
                .write(move |c| rows::take_answer(c, &i, &k, now))
                .await
                .map_err(internal)?
            {
                return Ok(v);
            }
            tokio::select! {
                _ = wake => {}
                _ = tokio::time::sleep(ANSWER_POLL) => {}
                _ = cancel.cancelled() => return Err(RpcError::new(code::REQUEST_CANCELLED, "Request cancelled")),
            }
        }
    }
}

/// Runs `work` (the whole `tools/call`, audit included) for a request that may become a task:
/// the request's answer is the work's own when it ends before the task starts, else the
/// `CreateTaskResult`; from then on the work's outcome goes to the task's row. Cancelling the
/// task (the slot's token) stops the work; a panic in it fails the task with an internal error.
pub async fn run(
    slot: Arc<TaskSlot>,
    work: super::tool::BoxFuture<Result<Json, RpcError>>,
    spawner: &tokio_util::task::TaskTracker,
) -> Result<Json, RpcError> {
    use futures_util::FutureExt;
    let (tx, mut rx) = tokio::sync::oneshot::channel::<Result<Json, RpcError>>();
    let s = slot.clone();
    let cancel = slot.cancel.clone();
    spawner.spawn(async move {
        let caught = std::panic::AssertUnwindSafe(work).catch_unwind();
        let outcome = tokio::select! {
            r = caught => Outcome::Done(r.unwrap_or_else(|_| Err(RpcError::new(
                code::INTERNAL_ERROR,
                "Internal error: the task's work failed (see the server log)",
            )))),
            _ = cancel.cancelled() => Outcome::Cancelled,
        };
        // the task exists: its row takes the outcome; otherwise the request does
        let id = s.id();
        match id {
            Some(id) => s.tasks.finish(&id, &s.key_id, outcome).await,
            None => {
                let r = match outcome {
                    Outcome::Done(r) => r,
                    Outcome::Cancelled => {
                        Err(RpcError::new(code::REQUEST_CANCELLED, "Request cancelled"))
                    }
                };
                let _ = tx.send(r);
            }
        }
    });
    loop {
        let started = slot.started.notified();
        if let Some(t) = slot.state.lock().unwrap().clone() {
            return Ok(Json::of(&Tasks::created(&t)));
        }
        tokio::select! {
            r = &mut rx => return r.unwrap_or_else(|_| Err(RpcError::new(code::INTERNAL_ERROR, "the work ended without an answer"))),
            _ = started => {}
        }
    }
}
