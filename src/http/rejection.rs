//! Rejections → JSON. Every error path of every route answers a JSON-RPC error object with
//! `id: null` and the right status, never HTML and never a hang.

use std::convert::Infallible;

use serde_json::json;
use warp::http::{HeaderValue, StatusCode, header};
use warp::{Rejection, Reply};

use crate::error::code;

/// A refusal with its status, JSON-RPC code and message (plus optional headers).
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: i64,
    pub message: String,
    /// Add `WWW-Authenticate: Bearer`.
    pub challenge: bool,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u64>,
}

impl warp::reject::Reject for ApiError {}

impl ApiError {
    /// A refusal with `status`, code -32000 and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code::SERVER_ERROR,
            message: message.into(),
            challenge: false,
            retry_after: None,
        }
    }

    /// Replaces the JSON-RPC code.
    pub fn code(mut self, code: i64) -> Self {
        self.code = code;
        self
    }

    /// 401 with the trexsql message and a Bearer challenge.
    pub fn unauthorized() -> Self {
        ApiError {
            challenge: true,
            ..ApiError::new(StatusCode::UNAUTHORIZED, crate::auth::AuthFailure::MESSAGE)
        }
    }

    /// As a warp rejection.
    pub fn reject(self) -> Rejection {
        warp::reject::custom(self)
    }

    /// As a response.
    pub fn into_response(self) -> warp::reply::Response {
        let body = json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": {"code": self.code, "message": self.message},
        });
        let mut resp = json_response(self.status, &body);
        if self.challenge {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

/// A JSON response with a status.
pub fn json_response<T: serde::Serialize + ?Sized>(
    status: StatusCode,
    body: &T,
) -> warp::reply::Response {
    let bytes = serde_json::to_vec(body).expect("JSON serializes");
    let mut r = warp::reply::Response::new(bytes.into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A response whose body is JSON text this server built.
pub fn json_text(status: StatusCode, body: crate::mcp::protocol::Json) -> warp::reply::Response {
    let mut r = warp::reply::Response::new(body.into_string().into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The `recover` handler at the top of the route tree.
pub async fn handle_rejection(err: Rejection) -> Result<warp::reply::Response, Infallible> {
    use warp::reject::*;
    let e = if let Some(e) = err.find::<ApiError>() {
        e.clone()
    } else if err.is_not_found() {
        ApiError::new(StatusCode::NOT_FOUND, "Not found")
    } else if err.find::<PayloadTooLarge>().is_some() {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
    } else if err.find::<MethodNotAllowed>().is_some() {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
    } else if err.find::<UnsupportedMediaType>().is_some() {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported Media Type: Content-Type must be application/json",
        )
    } else if err.find::<LengthRequired>().is_some() {
        ApiError::new(StatusCode::LENGTH_REQUIRED, "Length required")
    } else if let Some(h) = err.find::<MissingHeader>() {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("Missing header: {}", h.name()),
        )
    } else if let Some(h) = err.find::<InvalidHeader>() {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("Invalid header: {}", h.name()),
        )
    } else if err.find::<InvalidQuery>().is_some() {
        ApiError::new(StatusCode::BAD_REQUEST, "Invalid query string")
    } else {
        tracing::error!("unhandled rejection: {err:?}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
            .code(code::INTERNAL_ERROR)
    };
    Ok(e.into_response())
}

/// Makes any reply a plain response (so branches of a route tree unify).
pub fn boxed(r: impl Reply) -> warp::reply::Response {
    r.into_response()
}
