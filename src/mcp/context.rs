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
}

impl CallContext {
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
        let want = self.session.as_ref().map(|s| s.log_level()).unwrap_or(1);
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

    /// Sends a request to the client and waits for its answer (sampling, elicitation, roots).
    pub async fn request_client(&self, method: &str, params: Value) -> Result<Value, RpcError> {
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
