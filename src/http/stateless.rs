//! The MCP 2026-07-28 era on the same endpoints as the session era: no `initialize`, no
//! `Mcp-Session-Id`; each POST is one request that names its revision in the
//! `MCP-Protocol-Version` header and in `params._meta["io.modelcontextprotocol/protocolVersion"]`,
//! brings its client capabilities (and optionally its log level) in `_meta`, and mirrors
//! `method` and the tool, prompt or resource name into `Mcp-Method` / `Mcp-Name`. Headers that
//! are missing or disagree with the body get 400 and `HeaderMismatch` (-32020); a revision not
//! served gets 400 and `UnsupportedProtocolVersion` (-32022) listing those that are; a method
//! this era does not have gets 404 and -32601.
//!
//! The request is answered by the same [`dispatch`] as a session's, with a [`CallContext`]
//! filled from `_meta` (no session), so tools do not know which era called them. Results carry
//! `resultType` and the server's identity in `_meta`; lists and reads that a client may cache
//! carry `ttlMs` and `cacheScope` (`private`: what a key sees depends on its scopes). A request
//! that may report progress or logs is answered over an SSE stream of its own, without event ids
//! (nothing is replayed in this era), and closing that stream cancels the request.

use std::sync::Arc;

use base64::Engine;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_stream::wrappers::UnboundedReceiverStream;
use warp::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

use super::rejection::json_text;
use crate::app::App;
use crate::auth::Principal;
use crate::error::code;
use crate::mcp::context::CallContext;
use crate::mcp::dispatch::dispatch;
use crate::mcp::protocol::{
    Json, Message, RpcError, SUPPORTED_VERSIONS, error_response, log_level_index, result_response,
};
use crate::mcp::server::McpServer;
use crate::mcp::tasks;
use crate::mcp::tool::{TaskSupport, Tool};

/// The stateless revisions served.
pub const MODERN_VERSIONS: &[&str] = &["2026-07-28"];

/// `_meta` keys of this era.
pub const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

/// The headers that mirror the body's method and the name of what it calls.
const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
const MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");

/// JSON-RPC codes this era defines.
pub const HEADER_MISMATCH: i64 = -32020;
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// How long a client may keep a list or a read (ms): tool lists change when a plugin is
/// installed or a key's scopes change (listeners are told at once), so a short hint.
const LIST_TTL_MS: u64 = 10_000;

/// Every revision served, newest first (what `server/discover` and -32022 name).
pub fn all_versions() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = MODERN_VERSIONS.to_vec();
    v.extend(SUPPORTED_VERSIONS.iter().rev());
    v
}

/// True when a request without a session is one of this era: its `MCP-Protocol-Version` is
/// not a session-era revision (a stateless one, or one we do not know, which this era answers
/// with -32022), or its body carries the era's `_meta` version.
pub fn is_stateless(h: &HeaderMap, body: &Value) -> bool {
    let header = h
        .get(&super::transport::VERSION_HEADER)
        .and_then(|v| v.to_str().ok());
    let meta = body
        .get("params")
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(META_VERSION))
        .is_some();
    match header {
        Some(v) => !SUPPORTED_VERSIONS.contains(&v) || meta,
        None => meta,
    }
}

fn reject(status: StatusCode, id: &Value, e: RpcError) -> warp::reply::Response {
    json_text(status, error_response(id, &e))
}

fn mismatch(id: &Value, what: String) -> warp::reply::Response {
    reject(
        StatusCode::BAD_REQUEST,
        id,
        RpcError::new(HEADER_MISMATCH, format!("Header mismatch: {what}")),
    )
}

/// A header value, with the `=?base64?…?=` sentinel decoded.
fn decoded(raw: &str) -> Option<String> {
    match raw
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|b| String::from_utf8(b).ok()),
        None => Some(raw.to_string()),
    }
}

/// Serves one stateless POST body (already parsed; auth, Origin and body limit done).
pub async fn serve(
    app: Arc<App>,
    server: Arc<McpServer>,
    principal: Arc<Principal>,
    view: crate::mcp::context::ToolView,
    h: HeaderMap,
    body: Value,
) -> warp::reply::Response {
    if body.is_array() {
        return reject(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            RpcError::new(
                code::INVALID_REQUEST,
                "Invalid Request: batches are not part of protocol version 2026-07-28",
            ),
        );
    }
    let (id, method, params) = match Message::parse(body) {
        Err((id, e)) => return reject(StatusCode::BAD_REQUEST, &id, e),
        // no client notification exists in this era over HTTP; accept and drop any
        Ok(Message::Notification { .. }) => {
            let mut r = warp::reply::Response::new(bytes::Bytes::new().into());
            *r.status_mut() = StatusCode::ACCEPTED;
            return r;
        }
        Ok(Message::Response { id, .. }) => {
            return reject(
                StatusCode::BAD_REQUEST,
                &id,
                RpcError::new(
                    code::INVALID_REQUEST,
                    "Invalid Request: clients send no responses in protocol version 2026-07-28",
                ),
            );
        }
        Ok(Message::Request { id, method, params }) => (id, method, params),
    };
    let header = |n: &HeaderName| h.get(n).and_then(|v| v.to_str().ok());
    let Some(version) = header(&super::transport::VERSION_HEADER) else {
        return mismatch(&id, "the MCP-Protocol-Version header is required".into());
    };
    if !MODERN_VERSIONS.contains(&version) {
        return reject(
            StatusCode::BAD_REQUEST,
            &id,
            RpcError::new(UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version")
                .with_data(json!({"supported": all_versions(), "requested": version})),
        );
    }
    let null = Value::Null;
    let meta = params.get("_meta").unwrap_or(&null);
    let invalid = |what: String| {
        reject(
            StatusCode::BAD_REQUEST,
            &id,
            RpcError::invalid_params(format!("Invalid params: {what}")),
        )
    };
    if !meta.is_object() {
        return invalid("`_meta` is required in protocol version 2026-07-28".into());
    }
    match meta.get(META_VERSION).and_then(Value::as_str) {
        Some(v) if v == version => {}
        Some(v) => {
            return mismatch(
                &id,
                format!("MCP-Protocol-Version is {version} but _meta names {v}"),
            );
        }
        None => return invalid(format!("`_meta[\"{META_VERSION}\"]` is required")),
    }
    if !meta.get(META_CAPABILITIES).is_some_and(Value::is_object) {
        return invalid(format!(
            "`_meta[\"{META_CAPABILITIES}\"]` is required (an object)"
        ));
    }
    match header(&MCP_METHOD) {
        Some(m) if m == method => {}
        Some(m) => {
            return mismatch(
                &id,
                format!("Mcp-Method header value '{m}' does not match body value '{method}'"),
            );
        }
        None => return mismatch(&id, "the Mcp-Method header is required".into()),
    }
    let named = match method.as_str() {
        "tools/call" | "prompts/get" => params.get("name").and_then(Value::as_str),
        "resources/read" => params.get("uri").and_then(Value::as_str),
        "tasks/get" | "tasks/update" | "tasks/cancel" => {
            params.get("taskId").and_then(Value::as_str)
        }
        _ => None,
    };
    if let Some(name) = named {
        match header(&MCP_NAME).map(decoded) {
            Some(Some(n)) if n == name => {}
            Some(Some(n)) => {
                return mismatch(
                    &id,
                    format!("Mcp-Name header value '{n}' does not match body value '{name}'"),
                );
            }
            Some(None) => return mismatch(&id, "the Mcp-Name header is not valid base64".into()),
            None => return mismatch(&id, "the Mcp-Name header is required".into()),
        }
    }
    let tool = (method == "tools/call")
        .then(|| named.and_then(|n| server.find_tool(n)))
        .flatten();
    if let Some(t) = &tool
        && let Err(what) = check_param_headers(t, params.get("arguments"), &h)
    {
        return mismatch(&id, what);
    }
    // what this era does not have
    if matches!(
        method.as_str(),
        "initialize"
            | "ping"
            | "logging/setLevel"
            | "resources/subscribe"
            | "resources/unsubscribe"
    ) {
        return reject(
            StatusCode::NOT_FOUND,
            &id,
            RpcError::method_not_found(&method),
        );
    }
    if method == "subscriptions/listen" {
        return listen(&app, &server, &id, &params, &principal.key_id);
    }
    if method == "server/discover" {
        let mut caps = server.capabilities();
        if server
            .tool_table()
            .list
            .iter()
            .any(|t| !matches!(t.task, TaskSupport::Never))
        {
            caps["extensions"] = json!({tasks::EXTENSION: {}});
        }
        let mut r = json!({
            "supportedVersions": all_versions(),
            "capabilities": caps,
            "serverInfo": server.info(version),
            "resultType": "complete",
            "ttlMs": LIST_TTL_MS,
            "cacheScope": "public",
            "_meta": {META_SERVER_INFO: server.info(version)},
        });
        if let Some(i) = &server.instructions {
            r["instructions"] = json!(i);
        }
        return json_text(StatusCode::OK, result_response(&id, &Json::of(&r)));
    }
    let caps = meta
        .get(META_CAPABILITIES)
        .cloned()
        .unwrap_or_else(|| json!({}));
    let tasks_declared = tasks::declared(&caps);
    if let Some(r) = task_method(&app, &server, &principal, &method, &params, tasks_declared).await
    {
        let (status, body) = answer(&id, r, &server.info_text(version), false);
        return json_text(status, body);
    }
    let support = tool.as_ref().map(|t| t.task.clone()).unwrap_or_default();
    if matches!(support, TaskSupport::Required | TaskSupport::Deferred) && !tasks_declared {
        let (status, body) = answer(&id, Err(tasks::missing_extension()), "null", false);
        return json_text(status, body);
    }
    let log_level = meta
        .get(META_LOG_LEVEL)
        .and_then(Value::as_str)
        .and_then(log_level_index);
    let mrtr = match mrtr_of(&app, &principal, &method, &params) {
        Ok(m) => m,
        Err(e) => return reject(StatusCode::BAD_REQUEST, &id, e),
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    let slot = (tasks_declared && !matches!(support, TaskSupport::Never)).then(|| {
        let name = named.unwrap_or_default();
        tasks::TaskSlot::new(
            app.mcp_tasks.clone(),
            &principal.key_id,
            &server.id,
            name,
            cancel.clone(),
        )
    });
    // a call that may become a task is answered in JSON: a task reports no progress or logs
    let streams = slot.is_none() && wants_stream(&server, &method, &params, log_level.is_some());
    let info = server.info_text(version);
    let cacheable = matches!(
        method.as_str(),
        "tools/list"
            | "prompts/list"
            | "resources/list"
            | "resources/templates/list"
            | "resources/read"
    );
    let hub = streams.then(|| crate::mcp::stream::StreamHub::new(1, usize::MAX));
    let peer = hub.as_ref().map(|h| h.open());
    let ctx = Arc::new(CallContext {
        principal,
        protocol_version: Arc::from(version),
        client_capabilities: Arc::new(caps),
        session: None,
        request_id: id.clone(),
        progress_token: crate::mcp::protocol::progress_token(&params).cloned(),
        cancel: cancel.clone(),
        peer: peer.clone(),
        log_level,
        mrtr: Some(mrtr),
        task: slot.clone(),
        view,
    });
    let sealer = Sealer {
        app: app.clone(),
        key: ctx.principal.key_id.clone(),
        method: method.clone(),
        target: target_of(&method, &params),
        arguments: params.get("arguments").cloned(),
    };
    if let Some(slot) = slot {
        if !matches!(support, TaskSupport::Deferred)
            && let Err(e) = slot.start().await
        {
            let (status, body) = answer(&id, Err(e), &info, false);
            return json_text(status, body);
        }
        let work = {
            let (app, server, ctx) = (app.clone(), server.clone(), ctx.clone());
            Box::pin(async move { dispatch(&app, &server, ctx, &method, params).await })
        };
        let r = tasks::run(slot, work, &app.tasks).await;
        let r = sealer.input_required(&ctx).unwrap_or(r);
        let (status, body) = answer(&id, r, &info, false);
        return json_text(status, body);
    }
    let Some(stream) = peer else {
        let r = dispatch(&app, &server, ctx.clone(), &method, params).await;
        let r = sealer.input_required(&ctx).unwrap_or(r);
        let (status, body) = answer(&id, r, &info, cacheable);
        return json_text(status, body);
    };
    let rx = stream.attach(0);
    let guard = CancelOnDrop(cancel.clone());
    let task = {
        let (app, server, stream, id) = (app.clone(), server.clone(), stream.clone(), id.clone());
        async move {
            let r = tokio::select! {
                r = dispatch(&app, &server, ctx.clone(), &method, params) => Some(r),
                _ = cancel.cancelled() => None,
            };
            if let Some(r) = r {
                let r = sealer.input_required(&ctx).unwrap_or(r);
                stream.push(answer(&id, r, &info, cacheable).1);
            }
            stream.finish();
        }
    };
    app.tasks.spawn(task);
    drop(hub);
    // the response body owns the guard: when the client closes the stream, the request stops
    let events = UnboundedReceiverStream::new(rx).map(move |f| {
        let _held = &guard;
        Ok::<_, std::convert::Infallible>(warp::sse::Event::default().data(f.data.to_string()))
    });
    sse_reply(&app, events)
}

/// `tasks/get`, `tasks/update` and `tasks/cancel` (the tasks extension), for a client that
/// declared it (else -32021); `None` for any other method. A task is seen only by the key that
/// created it; any other id is -32602.
async fn task_method(
    app: &Arc<App>,
    server: &McpServer,
    principal: &Principal,
    method: &str,
    params: &Value,
    declared: bool,
) -> Option<Result<Json, RpcError>> {
    if !matches!(method, "tasks/get" | "tasks/update" | "tasks/cancel") {
        return None;
    }
    if !declared {
        return Some(Err(tasks::missing_extension()));
    }
    let Some(id) = params.get("taskId").and_then(Value::as_str) else {
        return Some(Err(RpcError::invalid_params(
            "Invalid params: `taskId` must be a string",
        )));
    };
    if app.auth.recheck(principal).await.is_err() {
        return Some(Err(RpcError::new(
            code::SERVER_ERROR,
            crate::auth::AuthFailure::MESSAGE,
        )));
    }
    let t = &app.mcp_tasks;
    let key = &principal.key_id;
    let r = match method {
        "tasks/get" => t.get(id, key).await,
        "tasks/update" => {
            let empty = json!({});
            let responses = params.get("inputResponses").unwrap_or(&empty);
            t.update(id, key, responses).await.map(|_| json!({}))
        }
        _ => t.cancel(id, key, &app.jobs).await.map(|_| json!({})),
    };
    // what changes a task is audited like a tool call (a poll is not)
    if method != "tasks/get" {
        let actor = crate::audit::Actor::of(principal, &server.id);
        let detail = r.as_ref().err().map(|e| e.message.clone());
        let event = crate::audit::Event {
            action: method,
            arguments: &json!({"taskId": id}),
            outcome: if r.is_ok() { "ok" } else { "error" },
            detail: detail.as_deref(),
        };
        crate::audit::record(&app.store, app.config.audit, &actor, event).await;
    }
    Some(r.map(|v| Json::of(&v)))
}

/// Checks each `Mcp-Param-{name}` header a tool's `x-mcp-header` annotations ask for against
/// the argument it mirrors: present exactly when the argument is, equal to it once decoded
/// (`=?base64?…?=`) and trimmed, integers compared as numbers. The error says which and why.
fn check_param_headers(
    tool: &Tool,
    arguments: Option<&Value>,
    h: &HeaderMap,
) -> Result<(), String> {
    for p in tool.param_headers.iter() {
        let mut v = arguments;
        for k in &p.path {
            v = v.and_then(|x| x.get(k));
        }
        let v = v.filter(|x| !x.is_null());
        let raw = match h.get(&p.header) {
            None if v.is_none() => continue,
            None => {
                return Err(format!(
                    "the {} header is required (its argument is set)",
                    p.header
                ));
            }
            Some(raw) => raw,
        };
        let text = raw
            .to_str()
            .map_err(|_| format!("the {} header holds characters a header may not", p.header))?
            .trim_matches([' ', '\t']);
        let value =
            decoded(text).ok_or_else(|| format!("the {} header is not valid base64", p.header))?;
        let Some(v) = v else {
            return Err(format!(
                "the {} header is set but its argument is not",
                p.header
            ));
        };
        let same = match (p.kind, v) {
            ("string", Value::String(s)) => *s == value,
            ("integer", Value::Number(n)) => value.parse::<f64>().ok() == n.as_f64(),
            ("boolean", Value::Bool(b)) => value == if *b { "true" } else { "false" },
            _ => false,
        };
        if !same {
            return Err(format!(
                "the {} header does not match the argument it mirrors",
                p.header
            ));
        }
    }
    Ok(())
}

/// Cancels its token when dropped: held by a stateless SSE response body, so a closed stream
/// is the request's cancellation.
struct CancelOnDrop(tokio_util::sync::CancellationToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Whether the request is answered over SSE: it asked for progress or logs, or the tool talks
/// while it runs.
fn wants_stream(server: &McpServer, method: &str, params: &Value, logs: bool) -> bool {
    crate::mcp::protocol::progress_token(params).is_some()
        || method == "tools/call"
            && params
                .get("name")
                .and_then(Value::as_str)
                .and_then(|n| server.find_tool(n))
                .is_some_and(|t| t.streaming || logs)
}

/// The response to request `id`: the result with `resultType`, the server's identity and, for
/// what may be cached, `ttlMs` and `cacheScope`; or the error, with this era's codes. The
/// members are written in front of the result's own text when it has neither `resultType` nor
/// `_meta` of its own (the common case: no re-parse of what may be a large result).
fn answer(
    id: &Value,
    r: Result<Json, RpcError>,
    info: &str,
    cacheable: bool,
) -> (StatusCode, Json) {
    match r {
        Ok(j)
            if j.is_plain_object()
                || !j.as_str().contains("\"resultType\"") && !j.as_str().contains("\"_meta\"") =>
        {
            let body = j.as_str().trim_start();
            let rest = body.strip_prefix('{').unwrap_or("}").trim_start();
            let mut head = String::with_capacity(rest.len() + info.len() + 120);
            head.push_str(r#"{"resultType":"complete","_meta":{""#);
            head.push_str(META_SERVER_INFO);
            head.push_str(r#"":"#);
            head.push_str(info);
            head.push('}');
            if cacheable {
                head.push_str(&format!(
                    ",\"ttlMs\":{LIST_TTL_MS},\"cacheScope\":\"private\""
                ));
            }
            if !rest.starts_with('}') {
                head.push(',');
            }
            head.push_str(rest);
            (StatusCode::OK, result_response(id, &Json::trusted(head)))
        }
        Ok(j) => {
            let mut v: Value = serde_json::from_str(j.as_str()).unwrap_or_else(|_| json!({}));
            if let Some(o) = v.as_object_mut() {
                o.entry("resultType").or_insert_with(|| json!("complete"));
                let meta = o.entry("_meta").or_insert_with(|| json!({}));
                if let Some(m) = meta.as_object_mut() {
                    let info = serde_json::from_str(info).unwrap_or(Value::Null);
                    m.insert(META_SERVER_INFO.into(), info);
                }
                if cacheable {
                    o.insert("ttlMs".into(), json!(LIST_TTL_MS));
                    o.insert("cacheScope".into(), json!("private"));
                }
            }
            (StatusCode::OK, result_response(id, &Json::of(&v)))
        }
        Err(mut e) => {
            // SEP-2164: an unknown resource is an invalid parameter in this era
            if e.code == code::RESOURCE_NOT_FOUND {
                e.code = code::INVALID_PARAMS;
            }
            let status = match e.code {
                code::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
                crate::mcp::context::MISSING_CLIENT_CAPABILITY => StatusCode::BAD_REQUEST,
                _ => StatusCode::OK,
            };
            (status, error_response(id, &e))
        }
    }
}

/// How long a `requestState` stays good: a client answers a question within this.
const STATE_TTL_MS: i64 = 10 * 60 * 1000;
/// Additional data of the sealed `requestState` (another sealed value cannot pass for one).
const STATE_AAD: &str = "mcp-request-state";

/// What a `requestState` is bound to and carries: the key that asked, the method and its
/// target (tool, prompt or resource), a digest of the arguments, when, and the answers so far.
#[derive(serde::Serialize, serde::Deserialize)]
struct State {
    k: String,
    m: String,
    n: Option<String>,
    a: String,
    t: i64,
    r: serde_json::Map<String, Value>,
}

fn target_of(method: &str, params: &Value) -> Option<String> {
    match method {
        "resources/read" => params.get("uri"),
        _ => params.get("name"),
    }
    .and_then(Value::as_str)
    .map(str::to_string)
}

/// A digest of the request's arguments (what a `requestState` may be replayed with).
fn args_digest(arguments: Option<&Value>) -> String {
    use sha2::{Digest, Sha256};
    let text = arguments
        .map(Value::to_string)
        .unwrap_or_else(|| "null".into());
    hex::encode(&Sha256::digest(text.as_bytes())[..12])
}

/// The answers a retried request brings: its `inputResponses`, and those sealed in its
/// `requestState`, which must open with this server's key and be bound to this caller, method,
/// target and arguments, and be recent — else -32602.
fn mrtr_of(
    app: &App,
    principal: &Principal,
    method: &str,
    params: &Value,
) -> Result<crate::mcp::context::Mrtr, RpcError> {
    let mut m = crate::mcp::context::Mrtr::default();
    if let Some(raw) = params.get("requestState") {
        let bad = || {
            RpcError::invalid_params(
                "Invalid params: `requestState` failed its integrity check (it is not one this server issued for this request)",
            )
        };
        let sealed = raw.as_str().ok_or_else(bad)?;
        let state: State = app
            .master
            .open(sealed, STATE_AAD)
            .ok()
            .and_then(|j| serde_json::from_str(&j).ok())
            .ok_or_else(bad)?;
        let fresh = crate::util::now_ms() - state.t <= STATE_TTL_MS;
        if state.k != principal.key_id
            || state.m != method
            || state.n != target_of(method, params)
            || state.a != args_digest(params.get("arguments"))
            || !fresh
        {
            return Err(bad());
        }
        m.responses = state.r;
        m.state_verified = true;
    }
    if let Some(r) = params.get("inputResponses") {
        let Value::Object(r) = r else {
            return Err(RpcError::invalid_params(
                "Invalid params: `inputResponses` must be an object",
            ));
        };
        m.responses.extend(r.clone());
    }
    Ok(m)
}

/// Turns a run that asked the client something into the `input_required` result.
struct Sealer {
    app: Arc<App>,
    key: String,
    method: String,
    target: Option<String>,
    /// The request's arguments (digested only when a question goes out).
    arguments: Option<Value>,
}

impl Sealer {
    /// The answer instead of the work's own: a refused question's error, or the questions.
    fn input_required(&self, ctx: &CallContext) -> Option<Result<Json, RpcError>> {
        let m = ctx.mrtr.as_ref()?;
        if let Some(e) = m.refused.lock().unwrap().take() {
            return Some(Err(e));
        }
        let asked = std::mem::take(&mut *m.asked.lock().unwrap());
        if asked.is_empty() {
            return None;
        }
        let state = State {
            k: self.key.clone(),
            m: self.method.clone(),
            n: self.target.clone(),
            a: args_digest(self.arguments.as_ref()),
            t: crate::util::now_ms(),
            r: m.responses.clone(),
        };
        let sealed = self
            .app
            .master
            .seal(&serde_json::to_string(&state).expect("json"), STATE_AAD);
        Some(Ok(Json::of(&json!({
            "resultType": "input_required",
            "inputRequests": asked,
            "requestState": sealed,
        }))))
    }
}

/// `subscriptions/listen`: a long-lived SSE stream of the change notifications the client opted
/// into (`toolsListChanged`, `promptsListChanged`, `resourcesListChanged`), acknowledged first
/// and each tagged with the subscription's id; it ends when the client closes it or the server
/// stops.
fn listen(
    app: &Arc<App>,
    server: &Arc<McpServer>,
    id: &Value,
    params: &Value,
    key_id: &str,
) -> warp::reply::Response {
    let wanted = params.get("notifications").cloned().unwrap_or(json!({}));
    // task status notifications (tasks extension): only for a client that declared it
    let task_ids: Option<Vec<String>> = match wanted.get("taskIds") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => Some(
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        ),
        Some(_) => {
            return reject(
                StatusCode::BAD_REQUEST,
                id,
                RpcError::invalid_params(
                    "Invalid params: `notifications.taskIds` must be an array of strings",
                ),
            );
        }
    };
    let caps = params.get("_meta").and_then(|m| m.get(META_CAPABILITIES));
    if task_ids.is_some() && !caps.is_some_and(tasks::declared) {
        let (status, body) = answer(id, Err(tasks::missing_extension()), "null", false);
        return json_text(status, body);
    }
    let on = |k: &str| wanted.get(k).and_then(Value::as_bool).unwrap_or(false);
    let mut methods: Vec<&'static str> = Vec::new();
    let mut accepted = serde_json::Map::new();
    if on("toolsListChanged") {
        methods.push("notifications/tools/list_changed");
        accepted.insert("toolsListChanged".into(), json!(true));
    }
    if on("promptsListChanged") {
        methods.push("notifications/prompts/list_changed");
        accepted.insert("promptsListChanged".into(), json!(true));
    }
    if on("resourcesListChanged") {
        methods.push("notifications/resources/list_changed");
        accepted.insert("resourcesListChanged".into(), json!(true));
    }
    if let Some(ids) = &task_ids {
        accepted.insert("taskIds".into(), json!(ids));
    }
    // the subscription is named by the id of the request that opened it
    let tag = json!({"io.modelcontextprotocol/subscriptionId": id});
    let ack = json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
        "params": {"_meta": tag.clone(), "notifications": accepted}});
    let server_id: Arc<str> = Arc::from(server.id.as_str());
    let task_tag = tag.clone();
    let changes =
        tokio_stream::wrappers::BroadcastStream::new(app.sessions.changes()).filter_map(move |c| {
            let (server_id, tag, methods) = (server_id.clone(), tag.clone(), methods.clone());
            async move {
                let (sid, method) = c.ok()?;
                (sid == server_id && methods.contains(&&*method)).then(
                    || json!({"jsonrpc": "2.0", "method": &*method, "params": {"_meta": tag}}),
                )
            }
        });
    // each carries the whole task as tasks/get would show it; only the caller's own tasks
    let (key, ids) = (key_id.to_string(), task_ids.unwrap_or_default());
    let task_changes = tokio_stream::wrappers::BroadcastStream::new(app.mcp_tasks.updates())
        .filter_map(move |u| {
            let (key, ids, tag) = (key.clone(), ids.clone(), task_tag.clone());
            async move {
                let (owner, mut task) = u.ok()?;
                let tid = task.get("taskId")?.as_str()?.to_string();
                if owner != key || !ids.contains(&tid) {
                    return None;
                }
                task["_meta"] = tag;
                Some(json!({"jsonrpc": "2.0", "method": "notifications/tasks", "params": task}))
            }
        });
    let events = futures_util::stream::iter([ack])
        .chain(futures_util::stream::select(changes, task_changes))
        .take_until(app.shutdown.clone().cancelled_owned())
        .map(|m| {
            Ok::<_, std::convert::Infallible>(warp::sse::Event::default().data(m.to_string()))
        });
    sse_reply(app, events)
}

/// An SSE response of `events` with keep-alive comments, not to be cached or buffered by
/// proxies.
fn sse_reply<S>(app: &App, events: S) -> warp::reply::Response
where
    S: futures_util::Stream<Item = Result<warp::sse::Event, std::convert::Infallible>>
        + Send
        + Sync
        + 'static,
{
    let keepalive = std::time::Duration::from_secs(app.config.mcp.keepalive_secs);
    let events = warp::sse::keep_alive().interval(keepalive).stream(events);
    let mut r = warp::reply::Reply::into_response(warp::sse::reply(events));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(j: &Json) -> Value {
        serde_json::from_str(j.as_str()).unwrap()
    }

    #[test]
    fn results_get_the_era_members_spliced_or_parsed() {
        let info = json!({"name": "trex", "version": "1"});
        for (text, cacheable) in [
            (r#"{"tools":[{"name":"a"}]}"#, true),
            (r#" { } "#, false),
            (
                r#"{"content":[{"type":"text","text":"say \"_meta\" here"}],"isError":false}"#,
                false,
            ),
            (r#"{"_meta":{"x":1},"v":2}"#, true),
            (
                r#"{"resultType":"input_required","inputRequests":{}}"#,
                false,
            ),
        ] {
            let (st, j) = answer(
                &json!(1),
                Ok(Json::trusted(text.into())),
                &info.to_string(),
                cacheable,
            );
            assert_eq!(st, StatusCode::OK);
            let v = body(&j);
            let r = &v["result"];
            let own: Value = serde_json::from_str(text).unwrap();
            for (k, val) in own.as_object().unwrap() {
                if k != "_meta" {
                    assert_eq!(&r[k], val, "{text}");
                }
            }
            assert_eq!(r["_meta"][META_SERVER_INFO], info, "{text}");
            assert!(r["resultType"].is_string(), "{text}");
            assert_eq!(r.get("ttlMs").is_some(), cacheable, "{text}");
        }
        let (_, j) = answer(
            &json!(1),
            Ok(Json::trusted(r#"{"_meta":{"x":1}}"#.into())),
            &info.to_string(),
            false,
        );
        assert_eq!(
            body(&j)["result"]["_meta"]["x"],
            1,
            "the result's own _meta is kept"
        );
        let (st, j) = answer(
            &json!(1),
            Err(RpcError::new(code::RESOURCE_NOT_FOUND, "nope")),
            &info.to_string(),
            false,
        );
        assert_eq!(
            (st, body(&j)["error"]["code"].clone()),
            (StatusCode::OK, json!(-32602))
        );
    }
}
