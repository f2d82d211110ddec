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
use crate::store::audit;

/// Handles one request and returns its `result`, serialized.
pub async fn dispatch(
    app: &Arc<App>,
    server: &McpServer,
    ctx: Arc<CallContext>,
    method: &str,
    params: Value,
) -> Result<Json, RpcError> {
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
        "prompts/get" if !server.prompts.is_empty() => prompts_get(server, &params),
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

/// True when the caller's key scopes allow `tool`.
fn in_scope(ctx: &CallContext, tool: &Tool) -> bool {
    ctx.principal
        .scopes
        .as_ref()
        .is_none_or(|s| s.allows_tool(&tool.name, tool.annotations.read_only))
}

fn tools_list(
    app: &Arc<App>,
    server: &McpServer,
    ctx: &CallContext,
    params: &Value,
) -> Result<Value, RpcError> {
    let size = app.config.mcp.tools_page_size;
    let visible: Vec<&Arc<Tool>> = server.tools.iter().filter(|t| in_scope(ctx, t)).collect();
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
    let tools: Vec<Value> = visible[start..end].iter().map(|t| t.describe()).collect();
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
        .ok_or_else(|| RpcError::invalid_params(format!("Unknown tool: {name}")))?
        .clone();
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
    let principal = ctx.principal.clone();
    if !in_scope(&ctx, &tool) {
        let out = ToolOutput::Err(format!(
            "This API key's scopes do not allow the tool '{name}'"
        ));
        write_audit(
            app,
            server,
            &principal,
            &name,
            &redact(&args),
            "refused",
            &out,
        )
        .await;
        return Ok(out.into_result());
    }
    let redacted = (!tool.annotations.read_only).then(|| redact(&args));
    let call = ToolCtx {
        app: app.clone(),
        call: ctx,
    };
    let out = tool.call(call, args).await;
    if let Some(arguments) = redacted {
        let outcome = if out.is_error() { "error" } else { "ok" };
        write_audit(app, server, &principal, &name, &arguments, outcome, &out).await;
    }
    Ok(out.into_result())
}

/// Writes one audit row (failures are logged, never fail the call).
async fn write_audit(
    app: &Arc<App>,
    server: &McpServer,
    principal: &crate::auth::Principal,
    tool: &str,
    arguments: &Value,
    outcome: &'static str,
    out: &ToolOutput,
) {
    let entry = audit::AuditEntry {
        user_id: Some(principal.user_id.clone()),
        key_id: Some(principal.key_id.clone()),
        server: server.id.clone(),
        tool: tool.to_string(),
        arguments: arguments.to_string(),
        outcome,
        detail: match out {
            ToolOutput::Err(m) => Some(m.clone()),
            _ => None,
        },
    };
    if let Err(e) = app.store.run(move |c| audit::insert(c, &entry)).await {
        tracing::error!("cannot write audit row: {e}");
    }
}

/// True for argument names whose values must never be stored or logged.
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("password")
        || n.contains("secret")
        || n.contains("token")
        || n == "key"
        || n == "apikey"
}

/// A copy of `v` with secret-named members replaced by `"[redacted]"`, SQL parameters dropped and
/// string literals inside SQL text (`sql`, `query`) blanked, since SQL can carry secrets
/// (`ALTER ROLE … PASSWORD '…'`).
pub fn redact(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = if is_secret_name(k) {
                        json!("[redacted]")
                    } else if k == "parameters" {
                        json!(format!(
                            "[redacted: {} value(s)]",
                            v.as_array().map_or(1, Vec::len)
                        ))
                    } else if (k == "sql" || k == "query") && v.is_string() {
                        json!(blank_literals(v.as_str().unwrap_or("")))
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect::<Map<_, _>>(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(redact).collect()),
        other => other.clone(),
    }
}

/// SQL text with the contents of '…' and $tag$…$tag$ literals replaced by `***`.
pub fn blank_literals(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(i) = rest.find(['\'', '$']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix('\'') {
            // '…' with '' as an escaped quote
            let mut j = 0;
            let b = after.as_bytes();
            loop {
                match after[j..].find('\'') {
                    Some(k) if b.get(j + k + 1) == Some(&b'\'') => j += k + 2,
                    Some(k) => {
                        j += k;
                        break;
                    }
                    None => {
                        j = after.len();
                        break;
                    }
                }
            }
            out.push_str("'***'");
            rest = after.get(j + 1..).unwrap_or("");
        } else {
            // $tag$ … $tag$ (PostgreSQL); a lone $1 parameter stays
            let tag_end = tail[1..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map(|e| e + 1);
            match tag_end {
                Some(e)
                    if tail.as_bytes()[e] == b'$'
                        && !tail[1..e].starts_with(|c: char| c.is_ascii_digit()) =>
                {
                    let tag = &tail[..=e];
                    match tail[e + 1..].find(tag) {
                        Some(close) => {
                            out.push_str(tag);
                            out.push_str("***");
                            out.push_str(tag);
                            rest = &tail[e + 1 + close + tag.len()..];
                        }
                        None => {
                            out.push_str("***");
                            rest = "";
                        }
                    }
                }
                _ => {
                    out.push('$');
                    rest = &tail[1..];
                }
            }
        }
    }
    out.push_str(rest);
    out
}

fn prompts_get(server: &McpServer, params: &Value) -> Result<Value, RpcError> {
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
    (prompt.render)(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_literals_and_parameters_are_blanked() {
        assert_eq!(
            blank_literals("ALTER ROLE x PASSWORD 'hunter''2' VALID UNTIL 'now'"),
            "ALTER ROLE x PASSWORD '***' VALID UNTIL '***'"
        );
        assert_eq!(
            blank_literals("SELECT $1, $$secret$$"),
            "SELECT $1, $$***$$"
        );
        assert_eq!(blank_literals("SELECT 'unterminated"), "SELECT '***'");
        let r = redact(&json!({"sql": "SELECT 'x'", "parameters": ["pw", 2]}));
        assert_eq!(r["sql"], "SELECT '***'");
        assert_eq!(r["parameters"], "[redacted: 2 value(s)]");
    }

    #[test]
    fn redaction_hides_secrets_at_any_depth() {
        let v =
            json!({"name": "a", "password": "p", "nested": [{"clientSecret": "s", "keyId": "k"}]});
        let r = redact(&v);
        assert_eq!(r["password"], "[redacted]");
        assert_eq!(r["nested"][0]["clientSecret"], "[redacted]");
        assert_eq!(r["nested"][0]["keyId"], "k");
        assert_eq!(r["name"], "a");
    }
}
