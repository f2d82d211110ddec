//! `plugin-*` tools ([`ops::plugins`]) and the admin-server tools plugins declare: each such
//! tool is `<plugin>-<tool>`, validated against the schema the plugin gave (values masked in
//! the error, the field named), and served by the plugin's function.

use std::collections::BTreeMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::mcp::tool::{Annotations, Tool, ToolCtx, ToolError, ToolOutput};
use crate::ops;
use crate::ops::plugins::{Info, Installed, Summary, Uninstalled};
use crate::plugins::{Manifest, ToolDecl};

/// The tools of this group.
pub fn tools() -> Vec<Tool> {
    vec![
        Tool::typed(
            "plugin-list",
            "List plugins",
            "Installed plugins: name, version, whether its files are on this node, what it \
             registers (migrations, ui, functions, tools), its tools and UI path. Plugins are live \
             once installed.",
            Annotations::READ,
            plugin_list,
        ),
        Tool::typed(
            "plugin-install",
            "Install a plugin",
            "Install a plugin from `packageSpec`, a directory or `npm pack` archive on the \
             server's machine (no registry). Its files and package.json `trex` key are checked and \
             its migrations applied; then its UI, functions and tools go live. A failed install \
             leaves nothing. Guide: trex://plugin-development-guide.",
            Annotations::CREATE,
            plugin_install,
        ),
        Tool::typed(
            "plugin-uninstall",
            "Uninstall a plugin",
            "Remove an installed plugin (`packageName`: its name or package name): its tools (clients are told), \
             UI, functions, files and its own plugin.db. Tables it created in a registered database stay.",
            Annotations::DESTROY,
            plugin_uninstall,
        ),
        Tool::typed(
            "plugin-get-info",
            "Describe a plugin",
            "One installed plugin (`pluginName`): version, directory, its checked trex config, what it \
             registers, and the status of its migrations (target plugin:<name>).",
            Annotations::READ,
            plugin_get_info,
        ),
        Tool::typed(
            "plugin-function-invoke",
            "Call a plugin path",
            "Send a request to a path under /plugins/ and return the answer {status, statusText, \
             headers, body} (a 4xx or 5xx is not a tool error): /plugins/<name>/fn/<function> runs \
             a function, other paths read the plugin's UI files. A function may change what its \
             plugin holds.",
            Annotations {
                destructive: true,
                ..Annotations::CREATE
            },
            plugin_function_invoke,
        ),
    ]
}

super::page_of!(
    /// Result of `plugin-list`.
    Listed, plugins: Summary
);

async fn plugin_list(ctx: ToolCtx, a: super::PageArgs) -> Result<Listed, ToolError> {
    Ok(ops::plugins::list(&ctx.app, a.page()?).await?.into())
}

/// Arguments of `plugin-install`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InstallArgs {
    /// A plugin directory or a .tgz / .tar.gz file on the server's machine.
    pub package_spec: String,
}

/// Runs a plugin change on its own task, so a client that cancels or hangs up cannot stop it
/// half-way (between moving the files and writing the row).
async fn detached<T: Send + 'static>(
    ctx: &ToolCtx,
    f: impl FnOnce(std::sync::Arc<crate::App>, crate::audit::Actor) -> ops::BoxFuture<crate::Result<T>>,
) -> crate::Result<T> {
    let fut = f(ctx.app.clone(), ctx.actor.clone());
    ctx.app.tasks.spawn(fut).await?
}

async fn plugin_install(ctx: ToolCtx, a: InstallArgs) -> Result<Installed, ToolError> {
    detached(&ctx, move |app, actor| {
        Box::pin(async move { ops::plugins::install(&app, &actor, &a.package_spec).await })
    })
    .await
    .map_err(|e| match e {
        crate::Error::Invalid(m) => ToolError::Invalid(format!("Install failed: {m}")),
        e => e.into(),
    })
}

/// Arguments of `plugin-uninstall`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UninstallArgs {
    /// The plugin's name (or its package.json name).
    pub package_name: String,
}

async fn plugin_uninstall(ctx: ToolCtx, a: UninstallArgs) -> Result<Uninstalled, ToolError> {
    Ok(detached(&ctx, move |app, actor| {
        Box::pin(async move { ops::plugins::uninstall(&app, &actor, &a.package_name).await })
    })
    .await?)
}

/// Arguments of `plugin-get-info`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InfoArgs {
    /// The plugin's name.
    pub plugin_name: String,
}

async fn plugin_get_info(ctx: ToolCtx, a: InfoArgs) -> Result<Info, ToolError> {
    Ok(ops::plugins::info(&ctx.app, &ctx.actor, &a.plugin_name).await?)
}

/// HTTP methods `plugin-function-invoke` sends.
#[derive(Deserialize, JsonSchema, Clone, Copy, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

/// Arguments of `plugin-function-invoke` (trexsql's).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InvokeArgs {
    /// A path under /plugins/ (`/plugins/<name>/fn/<function>` for a function).
    pub path: String,
    /// GET (default), POST, PUT, PATCH or DELETE.
    #[serde(default)]
    pub method: Method,
    /// Request headers as a JSON object in a string (`{"x-trace": "1"}`).
    pub headers: Option<String>,
    /// The request body (sent for methods other than GET; JSON is passed to the function parsed).
    pub body: Option<String>,
}

/// Result of `plugin-function-invoke`.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Invoked {
    pub status: u16,
    pub status_text: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

async fn plugin_function_invoke(ctx: ToolCtx, a: InvokeArgs) -> Result<Invoked, ToolError> {
    let method = match a.method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
    };
    let headers: BTreeMap<String, String> = match a.headers.as_deref() {
        None | Some("") => BTreeMap::new(),
        Some(h) => {
            let m: Map<String, Value> = serde_json::from_str(h)
                .map_err(|_| ToolError::field("headers", "must be a JSON object in a string"))?;
            m.into_iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.to_ascii_lowercase(), s)),
                    _ => Err(ToolError::field("headers", "values must be strings")),
                })
                .collect::<Result<_, _>>()?
        }
    };
    let body = match (method, a.body) {
        ("GET", _) | (_, None) => bytes::Bytes::new(),
        (_, Some(b)) => b.into(),
    };
    let (path, query) = match a.path.split_once('?') {
        Some((p, q)) => (p.to_string(), query_map(q)),
        None => (a.path.clone(), Map::new()),
    };
    let req = ops::plugins::Request {
        method: method.into(),
        path,
        query,
        headers,
        body,
    };
    let ans = ops::plugins::serve(&ctx.app, Some(&ctx.actor), req).await?;
    Ok(Invoked {
        status: ans.status,
        status_text: warp::http::StatusCode::from_u16(ans.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("")
            .into(),
        headers: ans.headers,
        body: String::from_utf8_lossy(&ans.body).into_owned(),
    })
}

/// A query string as an object of strings (the last value of a repeated name wins).
pub fn query_map(q: &str) -> Map<String, Value> {
    url::form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect()
}

/// The admin-server tool for a plugin's declared tool.
pub fn tool_of(plugin: &str, d: &ToolDecl) -> Result<Tool, String> {
    let validator =
        Arc::new(jsonschema::validator_for(&d.input_schema).map_err(|e| e.to_string())?);
    let name = Manifest::tool_name(plugin, &d.name);
    let annotations = Annotations {
        read_only: d.read_only,
        destructive: d.destructive && !d.read_only,
        idempotent: d.read_only,
        open_world: false,
    };
    let (plugin, tool) = (plugin.to_string(), d.name.clone());
    let mut t = Tool::raw(
        &name,
        &d.description,
        d.input_schema.clone(),
        annotations,
        move |ctx: ToolCtx, args: Value| {
            let (validator, plugin, tool) = (validator.clone(), plugin.clone(), tool.clone());
            async move {
                let args = if args.is_null() {
                    Value::Object(Map::new())
                } else {
                    args
                };
                if let Some(e) = validator.iter_errors(&args).next() {
                    let at = e.instance_path().to_string();
                    let field = if at.is_empty() {
                        "arguments".into()
                    } else {
                        at
                    };
                    return ToolOutput::Err(format!(
                        "Invalid arguments: `{field}`: {}",
                        e.masked()
                    ));
                }
                match ops::plugins::call_tool(&ctx.app, &ctx.actor, &plugin, &tool, args).await {
                    Err(e) => ToolOutput::Err(match ToolError::from(e) {
                        ToolError::Invalid(m) | ToolError::Failed(m) => m,
                        ToolError::Internal(e) => {
                            crate::error::internal(&format!("plugin tool {plugin}-{tool}"), &e)
                        }
                    }),
                    Ok(a) if a.status >= 400 => ToolOutput::Err(match &a.body {
                        Value::String(s) => s.clone(),
                        Value::Object(o) if o.get("error").is_some_and(Value::is_string) => {
                            o["error"].as_str().unwrap_or_default().to_string()
                        }
                        v => v.to_string(),
                    }),
                    Ok(a) => match a.body {
                        v @ Value::Object(_) => ToolOutput::structured(v),
                        Value::String(s) => ToolOutput::text(s),
                        v => ToolOutput::text(v.to_string()),
                    },
                }
            }
        },
    );
    t.title = d.title.clone();
    Ok(t)
}
