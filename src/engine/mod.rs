//! The data engine: user SQL against trexdb's own SQLite files and against registered external
//! databases (SQLite files and PostgreSQL servers). It owns the rules that keep user SQL safe:
//! statements classed by a parser ([`classify`]), read-only enforced by the engine (read-only
//! opens, `query_only`, `BEGIN READ ONLY`), an authorizer that refuses ATTACH and extension
//! loading, a row cap with a `truncated` flag, and a time limit. User SQL never runs on a
//! connection that can reach `trex.db`. The SQL trex runs itself to describe user databases is
//! in [`catalog`].

pub mod catalog;
pub mod classify;
pub mod memory;
pub mod paths;
pub mod pool;
pub mod postgres;
pub mod registry;
pub mod sqlite;

use std::time::Duration;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

pub use classify::{Class, Flavor, Verdict, classify};

/// Limits applied to one query.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub row_limit: usize,
    pub timeout: Duration,
    /// Most bytes of row data returned.
    pub max_bytes: usize,
    /// Most bytes SQLite may allocate for the query (see [`memory`]).
    pub max_memory: usize,
}

/// Bytes `s` takes as a JSON string (quotes and escapes included): control characters take six,
/// so a value of control characters is counted as what it becomes, not what it was.
pub fn json_str_bytes(s: &[u8]) -> usize {
    2 + s
        .iter()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// Size of a JSON value as returned (strings with their escapes).
pub fn value_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) => json_str_bytes(s.as_bytes()),
        Value::Object(m) => {
            m.iter()
                .map(|(k, v)| json_str_bytes(k.as_bytes()) + value_bytes(v))
                .sum::<usize>()
                + 2
        }
        Value::Array(a) => a.iter().map(value_bytes).sum::<usize>() + 2,
        _ => 8,
    }
}

/// The result of one statement.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueryResult {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Rows as arrays in column order (at most the row limit).
    pub rows: Vec<Vec<Value>>,
    /// Number of rows returned.
    pub row_count: usize,
    /// True when more rows existed than the row limit allowed.
    pub truncated: bool,
    /// Rows changed by a data-changing statement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_affected: Option<u64>,
    /// `safe`, `moderate` or `dangerous`.
    pub statement_class: Class,
    pub elapsed_ms: u64,
    /// What the call could not include (e.g. a registered database that was not attached).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The engine slot the query ran in, held until the result has been serialized and
    /// dropped, so the number of large results in memory at once is bounded by
    /// `engine.max_concurrent_queries` too.
    #[serde(skip)]
    #[schemars(skip)]
    pub slot: Option<std::sync::Arc<tokio::sync::OwnedSemaphorePermit>>,
}

/// Why a query failed; the message is for the caller.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The caller's input (bad parameter, disallowed statement, ...).
    #[error("{0}")]
    Refused(String),
    /// The database answered with an error.
    #[error("{0}")]
    Database(String),
    /// The time limit stopped the query.
    #[error("Query stopped: it ran longer than the {0} s limit")]
    Timeout(u64),
    /// The server could not be reached.
    #[error("{0}")]
    Connect(String),
    /// Every query slot stayed taken for `engine.queue_timeout_secs`.
    #[error(
        "The engine is busy: {0} queries are running and none finished within {1} s; try again shortly"
    )]
    Busy(usize, u64),
    /// The server itself failed (logged; the client sees a correlation id).
    #[error("{0}")]
    Internal(String),
}

/// Checks positional parameters: only null, booleans, numbers and strings.
pub fn check_params(params: &[Value]) -> Result<(), EngineError> {
    for (i, p) in params.iter().enumerate() {
        if p.is_object() || p.is_array() {
            return Err(EngineError::Refused(format!(
                "Invalid arguments: `parameters[{i}]` must be null, a boolean, a number or a string"
            )));
        }
    }
    Ok(())
}

impl From<EngineError> for crate::mcp::tool::ToolError {
    fn from(e: EngineError) -> Self {
        use crate::mcp::tool::ToolError;
        match e {
            EngineError::Refused(m) if m.starts_with("Invalid arguments") => ToolError::Invalid(m),
            EngineError::Refused(m) | EngineError::Connect(m) => ToolError::Failed(m),
            EngineError::Database(m) => ToolError::Failed(format!("Error: {m}")),
            t @ (EngineError::Timeout(_) | EngineError::Busy(..)) => {
                ToolError::Failed(t.to_string())
            }
            EngineError::Internal(m) => ToolError::Internal(crate::Error::Other(m)),
        }
    }
}
