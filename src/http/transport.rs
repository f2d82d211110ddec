//! The MCP Streamable HTTP transport (revisions 2025-03-26, 2025-06-18, 2025-11-25; requests of
//! the stateless 2026-07-28 era are handed to [`super::stateless`]): POST for
//! client messages, GET for the standalone SSE stream and `Last-Event-ID` resumption, DELETE to
//! end a session. Requests are answered with one JSON object, or over SSE when the work may talk
//! back to the client (progress, logs, server→client requests) — the SSE work runs in its own task,
//! so a dropped connection is not a cancellation and the stream can be resumed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use tokio_stream::wrappers::UnboundedReceiverStream;
use warp::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use warp::sse::Event;

use super::rejection::{ApiError, json_text};
use crate::app::App;
use crate::auth::Principal;
use crate::error::code;
use crate::mcp::context::{CallContext, ToolView};
use crate::mcp::dispatch::dispatch;
use crate::mcp::protocol::{
    self, Json, Message, RpcError, SUPPORTED_VERSIONS, error_response, negotiate, result_response,
};
use crate::mcp::server::McpServer;
use crate::mcp::session::{CreateError, Session};
use crate::mcp::stream::{FrameRx, parse_event_id};

/// Largest `capabilities` / `clientInfo` accepted at `initialize` (serialized bytes).
const MAX_CLIENT_METADATA: usize = 16 * 1024;
/// Most messages in one 2025-03-26 batch.
const MAX_BATCH: usize = 100;

/// Header carrying the session id.
pub const SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");
/// Header carrying the negotiated revision.
pub const VERSION_HEADER: HeaderName = HeaderName::from_static("mcp-protocol-version");

const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

type Reply = Result<warp::reply::Response, warp::Rejection>;

/// A header's value as text (header names as constants: a name given as a string is parsed
/// again on every lookup).
fn header_str(h: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// True when `Accept` lists `want` (or a wildcard covering it).
fn accepts(h: &HeaderMap, want: &str) -> bool {
    let Some(accept) = header_str(h, header::ACCEPT) else {
        return false;
    };
    let major = want.split('/').next().unwrap_or("");
    // no allocation: this runs twice on every POST
    accept.split(',').any(|part| {
        let t = part.split(';').next().unwrap_or("").trim();
        t.eq_ignore_ascii_case(want)
            || t == "*/*"
            || t.strip_suffix("/*")
                .is_some_and(|m| m.eq_ignore_ascii_case(major))
    })
}

/// 400 for an unsupported `MCP-Protocol-Version`.
fn check_version_header(h: &HeaderMap) -> Result<(), ApiError> {
    match header_str(h, &VERSION_HEADER) {
        Some(v) if !protocol::is_supported(v) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "Bad Request: Unsupported protocol version: {v} (supported versions: {})",
                SUPPORTED_VERSIONS.join(", ")
            ),
        )),
        _ => Ok(()),
    }
}

/// Finds the session named by the request, checking owner and server.
async fn find_session(
    app: &App,
    server: &McpServer,
    principal: &Principal,
    id: &str,
) -> Result<Arc<Session>, ApiError> {
    let not_found =
        || ApiError::new(StatusCode::NOT_FOUND, "Session not found").code(code::SESSION_NOT_FOUND);
    let s = app
        .sessions
        .get(id)
        .await
        .map_err(|e| {
            tracing::error!("session lookup failed: {e}");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
                .code(code::INTERNAL_ERROR)
        })?
        .ok_or_else(not_found)?;
    if s.server != server.id {
        return Err(not_found());
    }
    if s.user_id != principal.user_id {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Session belongs to a different user",
        ));
    }
    s.touch();
    Ok(s)
}

fn missing_session() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "Bad Request: Mcp-Session-Id header is required",
    )
}

/// POST {path}: one JSON-RPC message, or a batch under 2025-03-26. `query` is the URL's query
/// string (`tools=` selects a view of the tools).
pub async fn post(
    app: Arc<App>,
    server: Arc<McpServer>,
    principal: Arc<Principal>,
    headers: HeaderMap,
    query: String,
    body: Bytes,
) -> Reply {
    Ok(answer_post(app, server, principal, &query, headers, body).await)
}

/// [`post`] once the caller is known and the body read: the answer, errors included (the fast
/// lane, [`super::fast`], calls this directly).
pub async fn answer_post(
    app: Arc<App>,
    server: Arc<McpServer>,
    principal: Arc<Principal>,
    query: &str,
    headers: HeaderMap,
    body: Bytes,
) -> warp::reply::Response {
    post_inner(app, server, principal, query, headers, body)
        .await
        .unwrap_or_else(ApiError::into_response)
}

/// The view a query string asks for: `tools=` — comma-separated globs (`*`, `?`), each
/// optionally `server:`-qualified, as key scopes write them — and `outputSchemas=true|false`
/// (default false). Anything else in the query is ignored.
pub fn view_of(query: &str) -> Result<ToolView, ApiError> {
    let mut view = ToolView::default();
    if query.is_empty() {
        return Ok(view);
    }
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "tools" => view.globs = Some(globs_of(&v)?),
            "outputSchemas" => {
                view.output_schemas = match &*v {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(ApiError::new(
                            StatusCode::BAD_REQUEST,
                            "Invalid `outputSchemas` in the URL: true or false",
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(view)
}

fn globs_of(list: &str) -> Result<std::sync::Arc<[String]>, ApiError> {
    let globs: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect();
    let ok = |g: &str| {
        g.len() <= 200
            && g.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.*?:".contains(c))
    };
    if globs.is_empty() || globs.len() > 100 || !globs.iter().all(|g| ok(g)) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "Invalid `tools` in the URL: a comma-separated list of tool-name globs (letters, digits, _ - . * ? and server: prefixes)",
        ));
    }
    Ok(globs.into())
}

async fn post_inner(
    app: Arc<App>,
    server: Arc<McpServer>,
    principal: Arc<Principal>,
    query: &str,
    h: HeaderMap,
    body: Bytes,
) -> Result<warp::reply::Response, ApiError> {
    let view = view_of(query)?;
    let ct_ok = header_str(&h, header::CONTENT_TYPE).is_some_and(|ct| {
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("application/json")
    });
    if !ct_ok {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported Media Type: Content-Type must be application/json",
        ));
    }
    if !(accepts(&h, "application/json") && accepts(&h, "text/event-stream")) {
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "Not Acceptable: Client must accept both application/json and text/event-stream",
        ));
    }
    let parsed: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, format!("Parse error: {e}")).code(code::PARSE_ERROR)
    })?;
    // a request of the stateless era (no session, its revision in the header and `_meta`)
    // (`initialize` is the session era's, unless it comes as a stateless request: 404 there)
    if header_str(&h, &SESSION_HEADER).is_none()
        && super::stateless::is_stateless(&h, &parsed)
        && (parsed.get("method").and_then(Value::as_str) != Some("initialize")
            || parsed
                .get("params")
                .and_then(|p| p.get("_meta"))
                .is_some_and(|m| m.get(super::stateless::META_VERSION).is_some()))
    {
        return Ok(super::stateless::serve(app, server, principal, view, h, parsed).await);
    }
    check_version_header(&h)?;
    let session = match header_str(&h, &SESSION_HEADER) {
        Some(id) => Some(find_session(&app, &server, &principal, id).await?),
        None => None,
    };
    match parsed {
        Value::Array(items) => batch(app, server, principal, view, session, items).await,
        single => {
            let msg = match Message::parse(single) {
                Ok(m) => m,
                Err((id, e)) => {
                    return Ok(json_text(StatusCode::BAD_REQUEST, error_response(&id, &e)));
                }
            };
            match msg {
                Message::Request { id, method, params } if method == "initialize" => {
                    if session.is_some() {
                        return Err(ApiError::new(
                            StatusCode::BAD_REQUEST,
                            "Invalid Request: Server already initialized",
                        )
                        .code(code::INVALID_REQUEST));
                    }
                    initialize(&app, &server, &principal, id, params).await
                }
                Message::Request { id, method, params } => {
                    let session = session.ok_or_else(missing_session)?;
                    let call = (id, method, params);
                    Ok(request(app, server, principal, view, session, call).await)
                }
                other => {
                    let session = session.ok_or_else(missing_session)?;
                    absorb(&app, &session, other).await;
                    Ok(accepted())
                }
            }
        }
    }
}

fn accepted() -> warp::reply::Response {
    let mut r = warp::reply::Response::new(Bytes::new().into());
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}

/// `initialize`: negotiates the revision and opens a session.
async fn initialize(
    app: &App,
    server: &McpServer,
    principal: &Principal,
    id: Value,
    params: Value,
) -> Result<warp::reply::Response, ApiError> {
    let requested = match params.get("protocolVersion") {
        Some(Value::String(v)) => Some(v.as_str()),
        _ => {
            let e = RpcError::invalid_params("Invalid params: `protocolVersion` must be a string");
            return Ok(json_text(StatusCode::OK, error_response(&id, &e)));
        }
    };
    let version = negotiate(requested);
    let caps = params
        .get("capabilities")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let info = params
        .get("clientInfo")
        .cloned()
        .unwrap_or_else(|| json!({}));
    // both are kept with the session (memory and store): bound them
    for (field, v) in [("capabilities", &caps), ("clientInfo", &info)] {
        if v.to_string().len() > MAX_CLIENT_METADATA {
            let e = RpcError::invalid_params(format!(
                "Invalid params: `{field}` is larger than {} KiB",
                MAX_CLIENT_METADATA / 1024
            ));
            return Ok(json_text(StatusCode::OK, error_response(&id, &e)));
        }
    }
    let session = match app
        .sessions
        .create(&server.id, principal, version, info, caps)
        .await
    {
        Ok(s) => s,
        Err(CreateError::Full) => {
            return Err(ApiError {
                retry_after: Some(30),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Too many active MCP sessions",
                )
            });
        }
        Err(CreateError::UserFull) => {
            return Err(ApiError {
                retry_after: Some(30),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many active MCP sessions for this user; end some with DELETE",
                )
            });
        }
        Err(CreateError::Store(e)) => {
            tracing::error!("cannot store session: {e}");
            return Err(
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
                    .code(code::INTERNAL_ERROR),
            );
        }
    };
    tracing::info!(session = %short(&session.id), user = %principal.user_email, version, "MCP session opened");
    let mut result = json!({
        "protocolVersion": version,
        "capabilities": server.capabilities(),
        "serverInfo": server.info(version),
    });
    if let Some(i) = &server.instructions {
        result["instructions"] = json!(i);
    }
    let mut resp = json_text(StatusCode::OK, result_response(&id, &Json::of(&result)));
    resp.headers_mut().insert(
        SESSION_HEADER,
        HeaderValue::from_str(&session.id).expect("hex is a valid header"),
    );
    Ok(resp)
}

fn short(id: &str) -> &str {
    &id[..8.min(id.len())]
}

/// Handles notifications and responses from the client.
async fn absorb(app: &App, session: &Arc<Session>, msg: Message) {
    match msg {
        Message::Notification { method, params } => match method.as_str() {
            "notifications/initialized" => {
                if session.set_initialized()
                    && let Err(e) = app.sessions.save_initialized(session).await
                {
                    tracing::warn!("cannot persist initialized flag: {e}");
                }
            }
            "notifications/cancelled" => {
                if let Some(id) = params.get("requestId") {
                    session.cancel_request(id);
                }
            }
            _ => {}
        },
        Message::Response { id, outcome } => {
            session.answer_client_request(&id, outcome);
        }
        Message::Request { .. } => {}
    }
}

/// Whether a request should be answered over SSE.
fn wants_stream(server: &McpServer, method: &str, params: &Value) -> bool {
    if crate::mcp::protocol::progress_token(params).is_some() {
        return true;
    }
    method == "tools/call"
        && params
            .get("name")
            .and_then(Value::as_str)
            .and_then(|n| server.find_tool(n))
            .is_some_and(|t| t.streaming)
}

fn context(
    principal: Arc<Principal>,
    view: &ToolView,
    session: &Arc<Session>,
    id: &Value,
    params: &Value,
    cancel: tokio_util::sync::CancellationToken,
    peer: Option<Arc<crate::mcp::stream::EventStream>>,
) -> Arc<CallContext> {
    Arc::new(CallContext {
        principal,
        protocol_version: session.protocol_version.clone(),
        client_capabilities: session.client_capabilities.clone(),
        session: Some(session.clone()),
        request_id: id.clone(),
        progress_token: crate::mcp::protocol::progress_token(params).cloned(),
        cancel,
        peer,
        log_level: None,
        mrtr: None,
        task: None,
        view: view.clone(),
    })
}

/// One request inside a session: JSON or SSE.
async fn request(
    app: Arc<App>,
    server: Arc<McpServer>,
    principal: Arc<Principal>,
    view: ToolView,
    session: Arc<Session>,
    (id, method, params): (Value, String, Value),
) -> warp::reply::Response {
    let cancel = session.begin_request(&id);
    let stream = wants_stream(&server, &method, &params).then(|| session.streams.open());
    let ctx = context(
        principal,
        &view,
        &session,
        &id,
        &params,
        cancel.clone(),
        stream.clone(),
    );
    let Some(stream) = stream else {
        let outcome = tokio::select! {
            r = dispatch(&app, &server, ctx, &method, params) => Some(r),
            _ = cancel.cancelled() => None,
        };
        session.end_request(&id);
        let body = match outcome {
            Some(Ok(r)) => result_response(&id, &r),
            Some(Err(e)) => error_response(&id, &e),
            None => error_response(
                &id,
                &RpcError::new(code::REQUEST_CANCELLED, "Request cancelled"),
            ),
        };
        return json_text(StatusCode::OK, body);
    };
    let rx = stream.attach(0);
    let priming = protocol::wants_priming(&session.protocol_version).then(|| stream.priming_id());
    let task_session = session.clone();
    let response = sse_response(&app, &session, rx, priming);
    let tasks = app.tasks.clone();
    tasks.spawn(async move {
        let outcome = tokio::select! {
            r = dispatch(&app, &server, ctx, &method, params) => Some(r),
            _ = cancel.cancelled() => None,
        };
        task_session.end_request(&id);
        match outcome {
            Some(Ok(r)) => stream.push(result_response(&id, &r)),
            Some(Err(e)) => stream.push(error_response(&id, &e)),
            None => {} // cancelled: no response, per the spec
        }
        stream.finish();
    });
    response
}

/// A 2025-03-26 batch: requests run one after another, in order, each with its own authority
/// check (a key revoked by item 3 stops item 4), answered as a JSON array.
async fn batch(
    app: Arc<App>,
    server: Arc<McpServer>,
    principal: Arc<Principal>,
    view: ToolView,
    session: Option<Arc<Session>>,
    items: Vec<Value>,
) -> Result<warp::reply::Response, ApiError> {
    let session = session.ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "Invalid Request: initialize must not be part of a batch",
        )
        .code(code::INVALID_REQUEST)
    })?;
    if !protocol::allows_batches(&session.protocol_version) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "Invalid Request: batches are not supported in protocol version {}",
                session.protocol_version
            ),
        )
        .code(code::INVALID_REQUEST));
    }
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("Invalid Request: a batch holds 1 to {MAX_BATCH} messages"),
        )
        .code(code::INVALID_REQUEST));
    }
    let mut answers: Vec<Json> = Vec::new();
    let mut calls = Vec::new();
    for item in items {
        match Message::parse(item) {
            Err((id, e)) => answers.push(error_response(&id, &e)),
            Ok(Message::Request { id, method, .. }) if method == "initialize" => {
                answers.push(error_response(
                    &id,
                    &RpcError::new(
                        code::INVALID_REQUEST,
                        "Invalid Request: initialize must not be part of a batch",
                    ),
                ))
            }
            Ok(Message::Request { id, method, params }) => {
                let (app, server, principal, session, view) = (
                    app.clone(),
                    server.clone(),
                    principal.clone(),
                    session.clone(),
                    view.clone(),
                );
                calls.push(async move {
                    let cancel = session.begin_request(&id);
                    let ctx = context(principal, &view, &session, &id, &params, cancel, None);
                    let r = dispatch(&app, &server, ctx, &method, params).await;
                    session.end_request(&id);
                    match r {
                        Ok(v) => result_response(&id, &v),
                        Err(e) => error_response(&id, &e),
                    }
                });
            }
            Ok(other) => absorb(&app, &session, other).await,
        }
    }
    // one at a time: a body cannot start many queries at once, and each item sees what the
    // previous ones did (a revocation, a demotion)
    let done: Vec<Json> = stream::iter(calls).then(|c| c).collect().await;
    answers.extend(done);
    if answers.is_empty() {
        return Ok(accepted());
    }
    Ok(json_text(StatusCode::OK, Json::array(&answers)))
}

/// An SSE response over `rx`, ended by session close or server shutdown.
fn sse_response(
    app: &App,
    session: &Session,
    rx: FrameRx,
    priming: Option<String>,
) -> warp::reply::Response {
    let app_stop = session.closed.clone();
    let retry = Duration::from_millis(app.config.mcp.sse_retry_ms);
    let keepalive = Duration::from_secs(app.config.mcp.keepalive_secs);
    let prime =
        priming.map(|id| Ok::<Event, Infallible>(Event::default().id(id).retry(retry).data("")));
    let frames = UnboundedReceiverStream::new(rx)
        .map(|f| Ok::<Event, Infallible>(Event::default().id(f.id).data(f.data.to_string())));
    let events = stream::iter(prime)
        .chain(frames)
        .take_until(app_stop.cancelled_owned());
    let events = warp::sse::keep_alive().interval(keepalive).stream(events);
    let mut r = warp::reply::Reply::into_response(warp::sse::reply(events));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// GET {path}: the standalone server→client stream, or a resumed stream with `Last-Event-ID`.
pub async fn get(
    app: Arc<App>,
    server: Arc<McpServer>,
    principal: Arc<Principal>,
    h: HeaderMap,
) -> Reply {
    Ok(get_inner(app, server, principal, h)
        .await
        .unwrap_or_else(ApiError::into_response))
}

async fn get_inner(
    app: Arc<App>,
    server: Arc<McpServer>,
    principal: Arc<Principal>,
    h: HeaderMap,
) -> Result<warp::reply::Response, ApiError> {
    if !accepts(&h, "text/event-stream") {
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "Not Acceptable: Client must accept text/event-stream",
        ));
    }
    check_version_header(&h)?;
    let id = header_str(&h, &SESSION_HEADER).ok_or_else(missing_session)?;
    let session = find_session(&app, &server, &principal, id).await?;
    if let Some(last) = header_str(&h, LAST_EVENT_ID) {
        let (sid, seq) = parse_event_id(last).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "Bad Request: malformed Last-Event-ID",
            )
        })?;
        let stream = session.streams.get(sid).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "Bad Request: Last-Event-ID names no stream of this session (it may have expired)",
            )
        })?;
        let rx = stream.attach(seq);
        return Ok(sse_response(&app, &session, rx, None));
    }
    let stream = session.streams.open_standalone().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "Conflict: Only one SSE stream is allowed per session",
        )
    })?;
    let rx = stream.attach(0);
    let priming = protocol::wants_priming(&session.protocol_version).then(|| stream.priming_id());
    Ok(sse_response(&app, &session, rx, priming))
}

/// DELETE {path}: ends the session.
pub async fn delete(
    app: Arc<App>,
    server: Arc<McpServer>,
    principal: Arc<Principal>,
    h: HeaderMap,
) -> Reply {
    let res = async {
        check_version_header(&h)?;
        let id = header_str(&h, &SESSION_HEADER).ok_or_else(missing_session)?;
        let session = find_session(&app, &server, &principal, id).await?;
        app.sessions.remove(&session.id).await.map_err(|e| {
            tracing::error!("cannot delete session: {e}");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
        })?;
        tracing::info!(session = %short(&session.id), "MCP session closed by client");
        let mut r = warp::reply::Response::new(Bytes::new().into());
        *r.status_mut() = StatusCode::NO_CONTENT;
        Ok::<_, ApiError>(r)
    }
    .await;
    Ok(res.unwrap_or_else(ApiError::into_response))
}

#[cfg(test)]
mod tests {
    use super::view_of;

    #[test]
    fn the_url_names_a_view() {
        let v = view_of("").unwrap();
        assert!(v.globs.is_none() && !v.output_schemas);
        let v = view_of("tools=user-*,trex:audit-list&outputSchemas=true&other=1").unwrap();
        assert_eq!(&*v.globs.unwrap(), ["user-*", "trex:audit-list"]);
        assert!(v.output_schemas);
        assert!(!view_of("outputSchemas=0").unwrap().output_schemas);
        assert!(view_of("outputSchemas=yes").is_err());
        assert!(view_of("tools=").is_err());
        assert!(view_of("tools=a/b").is_err());
    }
}
