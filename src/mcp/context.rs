//! The context of one request, whatever the protocol era: who calls, which revision, what the
//! client can do, the optional session, progress token, cancellation, and the one seam through
//! which work talks back to the client (notifications and server→client requests). The 2025 era
//! fills it from the session; a stateless era would fill it from the request's `_meta`. Tools
//! never read the session directly.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::protocol::{Json, RpcError, log_level_index, notification};
use super::session::Session;
use super::stream::EventStream;
use crate::auth::Principal;
use crate::error::code;

/// -32021: the request needs a client capability the client did not declare (2026-07-28).
pub const MISSING_CLIENT_CAPABILITY: i64 = -32021;

/// How long a server→client request may wait for its answer.
pub const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Everything a handler may know about the request it serves.
pub struct CallContext {
    pub principal: Arc<Principal>,
    pub protocol_version: Arc<str>,
    pub client_capabilities: Arc<Value>,
    pub session: Option<Arc<Session>>,
    pub request_id: Value,
    pub progress_token: Option<Value>,
    pub cancel: CancellationToken,
    /// Where messages for the client go while this request runs (its SSE stream), if anywhere.
    pub peer: Option<Arc<EventStream>>,
    /// The lowest log level the request asked for in `_meta` (the stateless era; a session
    /// keeps its own from `logging/setLevel`). `None` without a session: no log messages.
    pub log_level: Option<u8>,
    /// The stateless era's multi-round-trip state: what the client answered so far, and what
    /// this run asks. `None` in the session era (questions go to the client over the stream).
    pub mrtr: Option<Mrtr>,
    /// The request's way into the tasks extension (2026-07-28, when the client declared it and
    /// the tool may run as a task); `None` otherwise.
    pub task: Option<Arc<super::tasks::TaskSlot>>,
    /// The tools this request's URL asked to see (`?tools=user-*,audit-list`: globs, optionally
    /// `server:`-qualified as in key scopes), and whether with their output schemas.
    pub view: ToolView,
}

/// What of a server's tools a client asked to see, on its URL (see [`CallContext::view`]).
#[derive(Debug, Clone, Default)]
pub struct ToolView {
    /// `?tools=user-*,audit-list`: tool-name globs; `None`: every tool the key may use.
    pub globs: Option<Arc<[String]>>,
    /// `?outputSchemas=true`: `tools/list` gives each tool's output schema too. Left out by
    /// default (the lean list): results still carry `structuredContent`, and the schemas stay
    /// what the server checks its results against.
    pub output_schemas: bool,
}

/// Multi-round-trip requests (2026-07-28): instead of sending the client a request and waiting,
/// the work records what it needs ([`CallContext::ask`]) and fails; the transport answers
/// `resultType: "input_required"` with those questions and a sealed `requestState`, and the
/// client calls again with `inputResponses`. The work runs again from the start and finds its
/// answers. Tools written with `ask` work in both eras.
#[derive(Debug, Default)]
pub struct Mrtr {
    /// Answers by key: those sealed in the `requestState` the client sent back, and its
    /// `inputResponses`.
    pub responses: serde_json::Map<String, Value>,
    /// True when the request came back with a `requestState` that verified.
    pub state_verified: bool,
    /// Questions of this run not answered yet, by key: `{method, params}`.
    pub asked: std::sync::Mutex<serde_json::Map<String, Value>>,
    /// A question the client cannot be asked (a capability it did not declare): the request's
    /// answer is this error, whatever the work made of it.
    pub refused: std::sync::Mutex<Option<RpcError>>,
    next: std::sync::atomic::AtomicUsize,
}

/// Internal code of an [`CallContext::ask`] that must go to the client first (never sent: the
/// transport answers with the questions instead).
pub const INPUT_PENDING: i64 = -32090;

/// The client capability a server→client method needs.
fn capability_of(method: &str) -> Option<&'static str> {
    match method {
        "elicitation/create" => Some("elicitation"),
        "sampling/createMessage" => Some("sampling"),
        "roots/list" => Some("roots"),
        _ => None,
    }
}

/// -32021 for a question the client cannot be asked.
fn missing_capability(cap: &str) -> RpcError {
    RpcError::new(
        MISSING_CLIENT_CAPABILITY,
        format!("This request needs the client capability `{cap}`, which it did not declare"),
    )
    .with_data(json!({"requiredCapabilities": {cap: {}}}))
}

impl CallContext {
    /// Makes this request a task now, when it may be one (the client declared the tasks
    /// extension and the tool supports it): the client is answered with the task, and the work
    /// goes on in the background. Questions asked before go out as `input_required` results;
    /// questions asked after, as the task's `inputRequests`. Without a task slot, nothing.
    pub async fn start_task(&self) -> Result<(), RpcError> {
        match &self.task {
            Some(slot) => slot.start().await,
            None => Ok(()),
        }
    }

    /// True while this request runs as a task.
    pub fn is_task(&self) -> bool {
        self.task.as_ref().is_some_and(|t| t.id().is_some())
    }

    /// Records durable work a running task follows (`{"kind": …}`; see
    /// [`crate::mcp::tasks::Tasks::register_resumer`]); nothing outside a task.
    pub async fn follow(&self, backing: Value) {
        if let Some(slot) = &self.task {
            slot.follow(backing).await;
        }
    }

    /// Sends a notification to the client on this request's stream (dropped when the request
    /// is answered with plain JSON).
    pub fn notify(&self, method: &str, params: Value) {
        if let Some(p) = &self.peer {
            p.push(Json::of(&notification(method, params)));
        }
    }

    /// Reports progress when the client asked for it with `_meta.progressToken`.
    pub fn progress(&self, progress: f64, total: Option<f64>, message: Option<&str>) {
        let Some(token) = &self.progress_token else {
            return;
        };
        let mut p = json!({"progressToken": token, "progress": progress});
        if let Some(t) = total {
            p["total"] = json!(t);
        }
        if let Some(m) = message {
            p["message"] = json!(m);
        }
        self.notify("notifications/progress", p);
    }

    /// Sends `notifications/message` if `level` is at or above the session's level.
    pub fn log(&self, level: &str, logger: Option<&str>, data: Value) {
        let want = match &self.session {
            Some(s) => s.log_level(),
            None => match self.log_level {
                Some(l) => l,
                None => return,
            },
        };
        if log_level_index(level).is_none_or(|l| l < want) {
            return;
        }
        let mut p = json!({"level": level, "data": data});
        if let Some(l) = logger {
            p["logger"] = json!(l);
        }
        self.notify("notifications/message", p);
    }

    /// Closes this request's SSE connection while the work goes on (the client reconnects with
    /// GET + `Last-Event-ID` after the `retry` delay and gets the rest, result included).
    pub fn close_connection(&self) {
        if let Some(p) = &self.peer {
            p.detach();
        }
    }

    /// True when the client declared `capability` (e.g. `sampling`, `elicitation`).
    pub fn client_can(&self, capability: &str) -> bool {
        self.client_capabilities.get(capability).is_some()
    }

    /// Asks the client `method` (elicitation, sampling, roots) under `key`: in the session era
    /// a request on the stream, answered while this call waits; in the stateless era the answer
    /// the client sent under `key`, or — when it has not yet — an [`INPUT_PENDING`] error after
    /// recording the question (call every `ask` a round needs before giving up, so they go out
    /// together). A capability the client did not declare is -32021 in the stateless era.
    pub async fn ask(&self, key: &str, method: &str, params: Value) -> Result<Value, RpcError> {
        if let Some(slot) = &self.task
            && slot.id().is_some()
        {
            if let Some(cap) = capability_of(method)
                && !self.client_can(cap)
            {
                return Err(missing_capability(cap));
            }
            let request = json!({"method": method, "params": params});
            return slot.ask(key, request, &self.cancel).await;
        }
        if self.mrtr.is_none() {
            return self.request_client_now(method, params).await;
        }
        self.ask_stateless(key, method, params)
    }

    /// [`ask`](Self::ask) for work that cannot wait (a prompt's renderer): the stateless era's
    /// answer or question; in the session era an error (nothing can be awaited here).
    pub fn ask_stateless(&self, key: &str, method: &str, params: Value) -> Result<Value, RpcError> {
        let Some(m) = &self.mrtr else {
            return Err(RpcError::new(
                code::INTERNAL_ERROR,
                format!("{method} can be asked here only in protocol version 2026-07-28"),
            ));
        };
        if let Some(cap) = capability_of(method)
            && !self.client_can(cap)
        {
            let e = missing_capability(cap);
            *m.refused.lock().unwrap() = Some(e.clone());
            return Err(e);
        }
        if let Some(v) = m.responses.get(key) {
            return Ok(v.clone());
        }
        m.asked
            .lock()
            .unwrap()
            .insert(key.to_string(), json!({"method": method, "params": params}));
        Err(RpcError::new(
            INPUT_PENDING,
            format!("waiting for the client's answer to {method}"),
        ))
    }

    /// Sends a request to the client and waits for its answer (sampling, elicitation, roots);
    /// in the stateless era an [`ask`](Self::ask) under a key made from the method and its turn.
    pub async fn request_client(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        if let Some(m) = &self.mrtr {
            let n = m.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let key = format!("{}_{n}", method.replace('/', "_"));
            return self.ask(&key, method, params).await;
        }
        self.request_client_now(method, params).await
    }

    async fn request_client_now(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let (Some(session), Some(peer)) = (&self.session, &self.peer) else {
            return Err(RpcError::new(
                code::INTERNAL_ERROR,
                "this request has no stream to reach the client on",
            ));
        };
        let (id, rx) = session.register_client_request();
        peer.push(Json::of(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        ));
        let outcome = tokio::select! {
            r = rx => r.map_err(|_| RpcError::new(code::INTERNAL_ERROR, "session closed before the client answered")),
            _ = self.cancel.cancelled() => Err(RpcError::new(code::REQUEST_CANCELLED, "Request cancelled")),
            _ = tokio::time::sleep(CLIENT_REQUEST_TIMEOUT) => Err(RpcError::new(code::INTERNAL_ERROR, format!("the client did not answer {method} in time"))),
        };
        session.forget_client_request(&id);
        match outcome? {
            Ok(v) => Ok(v),
            Err(e) => Err(RpcError::new(
                e.get("code")
                    .and_then(Value::as_i64)
                    .unwrap_or(code::INTERNAL_ERROR),
                e.get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("client error")
                    .to_string(),
            )),
        }
    }
}
