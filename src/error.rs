//! The crate's error type and how each error is shown to a client: an HTTP status for the
//! transport, a JSON-RPC error code for protocol failures, a message that never carries a secret.

use warp::http::StatusCode;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure the library reports. The message (`Display`) is what clients see.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The control store, one of its connections or its pool failed.
    #[error("database error: {0}")]
    Db(#[from] crate::store::StoreError),
    /// A blocking task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// File-system trouble (data dir, key file, ...); the source is shown as its cause.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Bad configuration; the message names the key.
    #[error("configuration error: {0}")]
    Config(String),
    /// Input that cannot be accepted; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// A named thing does not exist ("User not found").
    #[error("{0}")]
    NotFound(String),
    /// The thing exists already (duplicate email, ...).
    #[error("{0}")]
    Conflict(String),
    /// Password hashing failed.
    #[error("password hashing failed")]
    Hash,
    /// Anything else, already phrased for the client.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The HTTP status this error maps to when it ends a request outside JSON-RPC.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Invalid(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// True for failures of the server itself, as opposed to the caller's input.
    pub fn is_internal(&self) -> bool {
        self.status() == StatusCode::INTERNAL_SERVER_ERROR
    }
}

/// Logs an internal failure with a fresh correlation id and returns the message a client may see:
/// that an internal error happened and the id to quote, never the detail itself.
pub fn internal(context: &str, detail: &dyn std::fmt::Display) -> String {
    let id = crate::util::random_hex(6);
    tracing::error!(correlation = %id, "{context}: {detail}");
    format!("Internal error (reference {id}; the server log has the details)")
}

/// JSON-RPC 2.0 and MCP error codes.
pub mod code {
    /// Invalid JSON was received.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON sent is not a valid request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method does not exist or is not offered.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Invalid method parameters (unknown tool, bad cursor, bad level, ...).
    pub const INVALID_PARAMS: i64 = -32602;
    /// Internal JSON-RPC error.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// Transport-level refusal (auth, origin, missing session, ...), as the SDKs use it.
    pub const SERVER_ERROR: i64 = -32000;
    /// Unknown or expired session.
    pub const SESSION_NOT_FOUND: i64 = -32001;
    /// Resource not found (2025 revisions).
    pub const RESOURCE_NOT_FOUND: i64 = -32002;
    /// The request was cancelled by the client.
    pub const REQUEST_CANCELLED: i64 = -32800;
}
