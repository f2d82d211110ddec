//! Method routing for everything after `initialize`: ping, tools, resources, prompts, completion
//! and logging. Era-neutral: it sees a [`CallContext`], never transport details. Every call of a
//! tool that is not read-only is written to the audit log with its secrets redacted.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::context::CallContext;
use super::protocol::{Json, RpcError, log_level_index};
use super::server::McpServer;
use super::tool::{Tool, ToolCtx, ToolOutput};
use crate::app::App;
use crate::error::code;

/// Handles one request and returns its `result`, serialized. The caller's authority is checked
/// again here, per operation: a key revoked, a user banned or demoted while a batch or a stream
/// of requests is under way stops the next operation, not only the next HTTP request.
pub async fn dispatch(
    app: &Arc<App>,
    server: &McpServer,
    ctx: Arc<CallContext>,
    method: &str,
    params: Value,
) -> Result<Json, RpcError> {
    if app.auth.recheck(&ctx.principal).await.is_err() {
        return Err(RpcError::new(
            code::SERVER_ERROR,
            crate::auth::AuthFailure::MESSAGE,
        ));
    }
    if method == "tools/call" {
        return tools_call(app, server, ctx, params).await;
    }
    other(app, server, ctx, method, params)
        .await
        .map(|v| Json::of(&v))
}

async fn other(
    app: &Arc<App>,
    server: &McpServer,
    ctx: Arc<CallContext>,
    method: &str,
    params: Value,
) -> Result<Value, RpcError> {
    match method {
        "ping" => Ok(json!({})),
        "tools/list" => tools_list(app, server, &ctx, &params),
        "resources/list" if offers_resources(server) => {
            page_guard(&params)?;
            Ok(json!({"resources": server.resource_list()}))
        }
        "resources/templates/list" if offers_resources(server) => {
            page_guard(&params)?;
            Ok(json!({"resourceTemplates": server.template_list()}))
        }
        "resources/read" if offers_resources(server) => {
            let uri = str_param(&params, "uri")?;
            server
                .read_resource(uri)
                .map(|c| json!({"contents": c}))
                .ok_or_else(|| {
                    RpcError::new(
                        code::RESOURCE_NOT_FOUND,
                        format!("Resource not found: {uri}"),
                    )
                    .with_data(json!({"uri": uri}))
                })
        }
        "resources/subscribe" | "resources/unsubscribe" if server.subscriptions => {
            let uri = str_param(&params, "uri")?;
            if !server.has_resource(uri) {
                return Err(RpcError::new(
                    code::RESOURCE_NOT_FOUND,
                    format!("Resource not found: {uri}"),
                )
                .with_data(json!({"uri": uri})));
            }
            Ok(json!({}))
        }
        "prompts/list" if !server.prompts.is_empty() => {
            page_guard(&params)?;
            Ok(json!({"prompts": server.prompt_list()}))
        }
        "prompts/get" if !server.prompts.is_empty() => prompts_get(server, &ctx, &params),
        "completion/complete" if server.completer.is_some() => {
            (server.completer.as_ref().expect("checked"))(&params)
        }
        "logging/setLevel" => {
            let level = str_param(&params, "level")?;
            let idx = log_level_index(level).ok_or_else(|| {
                RpcError::invalid_params(format!(
                    "Invalid params: `level` must be one of debug, info, notice, warning, error, critical, alert, emergency (got {level:?})"
                ))
            })?;
            if let Some(s) = &ctx.session {
                s.set_log_level(idx);
                if let Err(e) = app.sessions.save_log_level(s).await {
                    tracing::warn!("cannot persist log level: {e}");
                }
            }
            Ok(json!({}))
        }
        _ => Err(RpcError::method_not_found(method)),
    }
}

fn offers_resources(s: &McpServer) -> bool {
    !s.resources.is_empty() || !s.templates.is_empty()
}

fn str_param<'a>(params: &'a Value, name: &str) -> Result<&'a str, RpcError> {
    params.get(name).and_then(Value::as_str).ok_or_else(|| {
        RpcError::invalid_params(format!("Invalid params: `{name}` must be a string"))
    })
}

/// Single-page lists accept no cursor but the absent one.
fn page_guard(params: &Value) -> Result<(), RpcError> {
    match params.get("cursor") {
        None | Some(Value::Null) => Ok(()),
        Some(_) => Err(RpcError::invalid_params("Invalid params: unknown `cursor`")),
    }
}

/// True when the caller's key scopes allow `tool` of `server`.
fn in_scope(server: &McpServer, ctx: &CallContext, tool: &Tool) -> bool {
    tool.allowed_by(
        crate::servers::scope_name(&server.id),
        ctx.principal.scopes.as_ref(),
    )
}

/// True when `tool` is in the view the request's URL asked for (`?tools=`), if any.
fn in_view(server: &McpServer, ctx: &CallContext, tool: &Tool) -> bool {
    let scope = crate::servers::scope_name(&server.id);
    ctx.view.globs.as_ref().is_none_or(|v| {
        v.iter()
            .any(|g| crate::auth::scopes::Scopes::glob_matches(g, scope, &tool.name))
    })
}

fn tools_list(
    app: &Arc<App>,
    server: &McpServer,
    ctx: &CallContext,
    params: &Value,
) -> Result<Value, RpcError> {
    let size = app.config.mcp.tools_page_size;
    let table = server.tool_table();
    let visible: Vec<&Arc<Tool>> = table
        .list
        .iter()
        .filter(|t| in_view(server, ctx, t) && in_scope(server, ctx, t))
        .collect();
    let start = match params.get("cursor") {
        None | Some(Value::Null) => 0,
        Some(Value::String(c)) => crate::util::decode_offset(c)
            .filter(|n| *n < visible.len())
            .ok_or_else(|| RpcError::invalid_params("Invalid params: unknown `cursor`"))?,
        Some(_) => {
            return Err(RpcError::invalid_params(
                "Invalid params: `cursor` must be a string",
            ));
        }
    };
    let end = (start + size).min(visible.len());
    let tools: Vec<Value> = visible[start..end]
        .iter()
        .map(|t| t.describe(&ctx.protocol_version, ctx.view.output_schemas))
        .collect();
    let mut r = json!({"tools": tools});
    if end < visible.len() {
        r["nextCursor"] = json!(crate::util::encode_offset(end));
    }
    Ok(r)
}

async fn tools_call(
    app: &Arc<App>,
    server: &McpServer,
    ctx: Arc<CallContext>,
    params: Value,
) -> Result<Json, RpcError> {
    let name = str_param(&params, "name")?.to_string();
    let tool = server
        .find_tool(&name)
        .filter(|t| in_view(server, &ctx, t))
        .ok_or_else(|| RpcError::invalid_params(format!("Unknown tool: {name}")))?;
    let mut params = params;
    let args = match params.as_object_mut().and_then(|p| p.remove("arguments")) {
        None | Some(Value::Null) => json!({}),
        Some(v @ Value::Object(_)) => v,
        Some(_) => {
            return Err(RpcError::invalid_params(
                "Invalid params: `arguments` must be an object",
            ));
        }
    };
    let actor = crate::audit::Actor::of(&ctx.principal, &server.id);
    if !in_scope(server, &ctx, &tool) {
        let out = ToolOutput::Err(format!(
            "This API key's scopes do not allow the tool '{name}' (scopes `tools`/`readOnly`); a key that may: \
             `trex api-key create --user <admin email> --name <name> --tools '{name}'` or api-key-create with \
             {{\"scopes\": {{\"tools\": [\"{name}\"]}}}}"
        ));
        let kept = crate::audit::names_only(&args);
        fallback_audit(app, &actor, &name, &kept, "refused", &out).await;
        let scope = crate::servers::scope_name(&server.id);
        app.metrics
            .tool_call(scope, &name, "refused", std::time::Duration::ZERO);
        return Ok(out.into_result());
    }
    let audited = (!tool.annotations.read_only).then(|| args.clone());
    let call = ToolCtx {
        app: app.clone(),
        call: ctx,
        actor: actor.clone(),
    };
    let started = std::time::Instant::now();
    let out = tool.call(call, args).await;
    let outcome = if out.is_error() { "error" } else { "ok" };
    app.metrics.tool_call(
        crate::servers::scope_name(&server.id),
        &name,
        outcome,
        started.elapsed(),
    );
    // the domain layer audits every operation it runs; a call that failed before reaching it
    // (bad arguments) or a tool outside it (SQL execution) is audited here, never twice
    if let Some(arguments) = audited
        && !actor.recorded()
    {
        let outcome = if out.is_error() { "error" } else { "ok" };
        fallback_audit(app, &actor, &name, &arguments, outcome, &out).await;
    }
    Ok(out.into_result())
}

/// Writes the audit row of a tool call the domain layer did not record (failures are logged,
/// never fail the call).
async fn fallback_audit(
    app: &Arc<App>,
    actor: &crate::audit::Actor,
    tool: &str,
    arguments: &Value,
    outcome: &'static str,
    out: &ToolOutput,
) {
    let detail = match out {
        ToolOutput::Err(m) => Some(m.as_str()),
        _ => None,
    };
    let event = crate::audit::Event {
        action: tool,
        arguments,
        outcome,
        detail,
    };
    crate::audit::record(&app.store, app.config.audit, actor, event).await;
}

fn prompts_get(server: &McpServer, ctx: &CallContext, params: &Value) -> Result<Value, RpcError> {
    let name = str_param(params, "name")?;
    let prompt = server
        .prompts
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| RpcError::invalid_params(format!("Unknown prompt: {name}")))?;
    let empty = Map::new();
    let args = match params.get("arguments") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(RpcError::invalid_params(
                "Invalid params: `arguments` must be an object",
            ));
        }
    };
    for (arg, _, required) in &prompt.arguments {
        if *required && !args.contains_key(arg) {
            return Err(RpcError::invalid_params(format!(
                "Invalid params: missing required argument `{arg}`"
            )));
        }
    }
    (prompt.render)(args, ctx)
}
