//! JSON-RPC 2.0 envelopes and MCP protocol constants: the revisions served, version negotiation,
//! message classification, and error objects.

use serde::Serialize;
use serde_json::{Value, json};

use crate::error::code;

/// Revisions this server speaks, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["2025-03-26", "2025-06-18", "2025-11-25"];
/// The newest revision served; the answer when a client asks for one we do not speak.
pub const LATEST_VERSION: &str = "2025-11-25";
/// Assumed when a request carries no `MCP-Protocol-Version` and nothing else tells.
pub const DEFAULT_VERSION: &str = "2025-03-26";

/// True when `v` is a revision we speak.
pub fn is_supported(v: &str) -> bool {
    SUPPORTED_VERSIONS.contains(&v)
}

/// The revision to answer an `initialize` asking for `requested`.
pub fn negotiate(requested: Option<&str>) -> &'static str {
    requested
        .and_then(|r| SUPPORTED_VERSIONS.iter().find(|v| **v == r).copied())
        .unwrap_or(LATEST_VERSION)
}

/// True for revisions that allow JSON-RPC batches (only 2025-03-26).
pub fn allows_batches(v: &str) -> bool {
    v == "2025-03-26"
}

/// True for revisions that get the SSE priming event and `retry` (2025-11-25 on).
pub fn wants_priming(v: &str) -> bool {
    v >= "2025-11-25"
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl RpcError {
    /// An error with a code and message.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// Adds `data`.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// -32602 Invalid params.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(code::INVALID_PARAMS, message)
    }

    /// -32601 Method not found.
    pub fn method_not_found(method: &str) -> Self {
        Self::new(
            code::METHOD_NOT_FOUND,
            format!("Method not found: {method}"),
        )
    }

    /// -32603 Internal error (details go to the log, not the client).
    pub fn internal() -> Self {
        Self::new(code::INTERNAL_ERROR, "Internal error")
    }

    /// The `error` member.
    pub fn to_value(&self) -> Value {
        let mut e = json!({"code": self.code, "message": self.message});
        if let Some(d) = &self.data {
            e["data"] = d.clone();
        }
        e
    }
}

/// JSON text this server serialized itself: built once, then written as is (no re-parse, no
/// re-serialization on the way out).
#[derive(Debug, Clone, PartialEq)]
pub struct Json(String, Plain);

/// Whether a [`Json`] object is known to have neither `resultType` nor `_meta` among its own
/// members (a tool's result: the stateless era puts its own in front without looking).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Plain {
    Unknown,
    Known,
}

impl Json {
    /// Serializes `v`.
    pub fn of<T: Serialize + ?Sized>(v: &T) -> Json {
        Json(
            serde_json::to_string(v).expect("JSON values serialize"),
            Plain::Unknown,
        )
    }

    /// Wraps text the caller built from valid JSON parts.
    pub(crate) fn trusted(s: String) -> Json {
        Json(s, Plain::Unknown)
    }

    /// Wraps an object the caller built whose own members are neither `resultType` nor
    /// `_meta` (whatever its members hold).
    pub(crate) fn plain_object(s: String) -> Json {
        Json(s, Plain::Known)
    }

    /// True for an object made by [`plain_object`](Self::plain_object).
    pub fn is_plain_object(&self) -> bool {
        self.1 == Plain::Known
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, owned.
    pub fn into_string(self) -> String {
        self.0
    }

    /// A JSON array of these texts.
    pub fn array(items: &[Json]) -> Json {
        let mut s = String::from("[");
        for (i, j) in items.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&j.0);
        }
        s.push(']');
        Json(s, Plain::Unknown)
    }
}

/// A full error response for request `id` (`null` when it could not be read).
pub fn error_response(id: &Value, err: &RpcError) -> Json {
    Json::of(&json!({"jsonrpc": "2.0", "id": id, "error": err.to_value()}))
}

/// A success response around an already serialized result.
pub fn result_response(id: &Value, result: &Json) -> Json {
    let id = serde_json::to_string(id).expect("ids serialize");
    let mut out = String::with_capacity(result.0.len() + id.len() + 36);
    out.push_str(r#"{"jsonrpc":"2.0","id":"#);
    out.push_str(&id);
    out.push_str(r#","result":"#);
    out.push_str(&result.0);
    out.push('}');
    Json(out, Plain::Unknown)
}

/// The `_meta.progressToken` of a request's params, when the client asked for progress.
pub fn progress_token(params: &Value) -> Option<&Value> {
    params.get("_meta")?.get("progressToken")
}

/// A notification.
pub fn notification(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params})
}

/// What one JSON-RPC message is.
#[derive(Debug, Clone)]
pub enum Message {
    /// Has `method` and `id`.
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    /// Has `method`, no `id`.
    Notification { method: String, params: Value },
    /// Has `result` or `error` and an `id`: the client answering a server request.
    Response {
        id: Value,
        outcome: Result<Value, Value>,
    },
}

impl Message {
    /// Classifies a parsed value; `Err` carries the -32600 explanation and the id if readable.
    pub fn parse(v: Value) -> Result<Message, (Value, RpcError)> {
        let Value::Object(mut m) = v else {
            return Err((
                Value::Null,
                RpcError::new(code::INVALID_REQUEST, "Invalid Request: not a JSON object"),
            ));
        };
        let id = m.remove("id");
        let id_for_err = id.clone().unwrap_or(Value::Null);
        let invalid = |msg: &str| {
            Err((
                id_for_err.clone(),
                RpcError::new(code::INVALID_REQUEST, format!("Invalid Request: {msg}")),
            ))
        };
        if m.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return invalid("`jsonrpc` must be \"2.0\"");
        }
        if let Some(id) = &id
            && !(id.is_string() || id.is_i64() || id.is_u64())
        {
            return invalid("`id` must be a string or an integer");
        }
        match (m.remove("method"), id) {
            (Some(Value::String(method)), Some(id)) => Ok(Message::Request {
                id,
                method,
                params: m.remove("params").unwrap_or(Value::Null),
            }),
            (Some(Value::String(method)), None) => Ok(Message::Notification {
                method,
                params: m.remove("params").unwrap_or(Value::Null),
            }),
            (Some(_), _) => invalid("`method` must be a string"),
            (None, Some(id)) => {
                if let Some(r) = m.remove("result") {
                    Ok(Message::Response { id, outcome: Ok(r) })
                } else if let Some(e) = m.remove("error") {
                    Ok(Message::Response {
                        id,
                        outcome: Err(e),
                    })
                } else {
                    invalid("a response needs `result` or `error`")
                }
            }
            (None, None) => invalid("missing `method`"),
        }
    }
}

/// Log levels of `logging/setLevel`, lowest first (RFC 5424 order).
pub const LOG_LEVELS: &[&str] = &[
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// Index of a level name in [`LOG_LEVELS`].
pub fn log_level_index(level: &str) -> Option<u8> {
    LOG_LEVELS.iter().position(|l| *l == level).map(|i| i as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_echoes_supported_and_answers_latest_otherwise() {
        assert_eq!(negotiate(Some("2025-03-26")), "2025-03-26");
        assert_eq!(negotiate(Some("2025-06-18")), "2025-06-18");
        assert_eq!(negotiate(Some("2024-11-05")), LATEST_VERSION);
        assert_eq!(negotiate(Some("2026-07-28")), LATEST_VERSION);
        assert_eq!(negotiate(None), LATEST_VERSION);
    }

    #[test]
    fn classification() {
        assert!(matches!(
            Message::parse(json!({"jsonrpc":"2.0","id":1,"method":"ping"})),
            Ok(Message::Request { .. })
        ));
        assert!(matches!(
            Message::parse(json!({"jsonrpc":"2.0","method":"x"})),
            Ok(Message::Notification { .. })
        ));
        assert!(matches!(
            Message::parse(json!({"jsonrpc":"2.0","id":"a","result":{}})),
            Ok(Message::Response { .. })
        ));
        assert!(Message::parse(json!({"jsonrpc":"2.0","id":null,"method":"ping"})).is_err());
        assert!(Message::parse(json!({"id":1,"method":"ping"})).is_err());
        assert!(Message::parse(json!([1])).is_err());
    }
}
