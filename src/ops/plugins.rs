//! Plugins as operations (`plugin-install`, `plugin-uninstall`, `plugin-list`,
//! `plugin-get-info`, `plugin-function-invoke`, the `/plugins/…` routes and the tools plugins
//! declare): the rules once.
//!
//! Installing stages the package in `<data_dir>/plugins/.staging-<random>/` (every archive entry
//! checked, [`crate::plugins::archive`]), checks its manifest, applies its migrations to its own
//! `plugin.db` there, and only then moves the directory into place and writes the row; any
//! failure removes the staging directory, so a failed install leaves nothing behind. A plugin
//! whose migrations target a registered database has them applied after the move through the
//! versioned runner (target `plugin:<name>`); if that fails, the row and files go again (files
//! applied before the failing one stay applied on that database, each in its own transaction).
//! Uninstalling removes the tools (clients are told), the row, the files and `plugin.db`; tables
//! a plugin created in a registered database stay there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{Actor, audited, invalid};
use crate::app::App;
use crate::error::{Error, Result};
use crate::migrate::Outcome;
use crate::plugins::{self, Manifest, Target, functions};
use crate::store::plugins::Plugin;
use crate::store::{Page, Paged};

/// One install or uninstall at a time in this process (and [`lock_plugins`] across processes).
static CHANGING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Takes `<data_dir>/plugins.lock`, an OS file lock (released when the file is dropped, or the
/// process dies): one install or uninstall at a time across processes — the server and
/// `trex plugin …` on the same data dir.
async fn lock_plugins(app: &App) -> Result<std::fs::File> {
    let path = app.config.store.data_dir.join("plugins.lock");
    tokio::task::spawn_blocking(move || {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
        f.lock()
            .map_err(|e| Error::io(format!("cannot lock {}", path.display()), e))?;
        Ok(f)
    })
    .await?
}

/// The name of the service that runs plugin functions (cluster-list-services).
pub const SERVICE: &str = "plugin-functions";

/// What `plugin-install` did.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Installed {
    /// The package.json name.
    pub package: String,
    /// The plugin's name (the short package name).
    pub name: String,
    pub version: String,
    pub install_path: String,
    pub success: bool,
    /// The migration files applied at install.
    pub migrations: Vec<Outcome>,
    /// The admin-server tools it added.
    pub tools: Vec<String>,
    pub functions: Vec<String>,
    /// Where its UI is served, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ui_path: Option<String>,
    /// Keys of `trex` this build does not use.
    pub ignored: Vec<String>,
}

/// One plugin in `plugin-list`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub name: String,
    pub package: String,
    pub version: String,
    /// The version serving now (plugins are live once installed: equal to `version`).
    pub active_version: String,
    pub active: bool,
    /// False when the row exists but the files are missing from this node.
    pub installed: bool,
    /// Always false: installs take effect at once, no restart.
    pub pending_restart: bool,
    pub registered_types: Vec<&'static str>,
    pub tools: Vec<String>,
    pub functions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ui_path: Option<String>,
    pub installed_at: String,
}

/// `plugin-get-info`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Info {
    #[serde(flatten)]
    pub summary: Summary,
    pub directory: String,
    /// The checked `trex` key of its package.json.
    #[schemars(with = "Map<String, Value>")]
    pub trex_config: Value,
    /// The status of its migrations (`plugin:<name>`), if it has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migration_status: Option<super::migrations::TargetStatus>,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installed_by: Option<String>,
}

/// What `plugin-uninstall` did.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Uninstalled {
    pub package: String,
    pub deleted: bool,
    /// The admin-server tools that went with it.
    pub tools_removed: Vec<String>,
}

/// A request to a plugin path (HTTP or `plugin-function-invoke`).
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// As sent; normalised before anything else.
    pub path: String,
    pub query: Map<String, Value>,
    /// Lower-case names; `authorization` and `cookie` are never passed on.
    pub headers: BTreeMap<String, String>,
    pub body: bytes::Bytes,
}

/// The answer to a plugin path.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: bytes::Bytes,
}

impl Answer {
    fn json(status: u16, v: &Value) -> Answer {
        Answer {
            status,
            headers: BTreeMap::from([("content-type".into(), "application/json".into())]),
            body: v.to_string().into(),
        }
    }

    fn of(a: functions::Answer) -> Answer {
        // an explicit list: no `x-accel-redirect` / `x-sendfile` for a proxy in front to obey
        const PASSED: &[&str] = &[
            "content-type",
            "cache-control",
            "content-disposition",
            "etag",
            "last-modified",
            "location",
            "x-request-id",
        ];
        let mut headers: BTreeMap<String, String> = a
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_ascii_lowercase(),
                    v.as_str().unwrap_or_default().to_string(),
                )
            })
            .filter(|(k, v)| {
                PASSED.contains(&k.as_str()) && !v.contains(['\r', '\n']) && v.len() < 4096
            })
            .collect();
        let text = headers
            .get("content-type")
            .is_some_and(|c| !c.contains("json"));
        let body: bytes::Bytes = match (&a.body, text) {
            (Value::String(s), true) => s.clone().into(),
            (Value::Null, _) if a.status == 204 => bytes::Bytes::new(),
            (v, _) => {
                headers.insert("content-type".into(), "application/json".into());
                v.to_string().into()
            }
        };
        Answer {
            status: a.status,
            headers,
            body,
        }
    }
}

/// The stored manifest of a plugin row.
pub fn manifest_of(p: &Plugin) -> Result<Manifest> {
    serde_json::from_str(&p.manifest)
        .map_err(|e| Error::Other(format!("plugin {}: unreadable manifest: {e}", p.name)))
}

fn summary(app: &App, p: &Plugin) -> Result<Summary> {
    let m = manifest_of(p)?;
    let installed = plugins::package_dir(&app.config, &p.name).is_dir();
    Ok(Summary {
        name: p.name.clone(),
        package: p.package.clone(),
        version: p.version.clone(),
        active_version: p.version.clone(),
        active: installed,
        installed,
        pending_restart: false,
        registered_types: m.registered_types(),
        tools: m
            .tools
            .iter()
            .map(|t| Manifest::tool_name(&p.name, &t.name))
            .collect(),
        functions: m.functions.keys().cloned().collect(),
        ui_path: m.ui.as_ref().map(|_| format!("/plugins/{}/", p.name)),
        installed_at: p.installed_at.clone(),
    })
}

/// Removes a directory tree: renamed aside first (so a half-removed plugin is never seen under
/// its name), then deleted.
fn remove_tree(root: &Path, dir: &Path) {
    if !dir.exists() {
        return;
    }
    let trash = root.join(format!(".trash-{}", crate::util::random_hex(6)));
    let target = match std::fs::rename(dir, &trash) {
        Ok(()) => trash,
        Err(_) => dir.to_path_buf(),
    };
    if let Err(e) = std::fs::remove_dir_all(&target) {
        tracing::warn!("cannot remove {}: {e}", target.display());
    }
}

/// Deletes the staging directory if it is still there (an install that went through has
/// moved it into place).
struct Staging {
    root: PathBuf,
    dir: PathBuf,
}

impl Drop for Staging {
    fn drop(&mut self) {
        remove_tree(&self.root, &self.dir);
    }
}

/// Stages the package of `spec` under `root`, checks it and applies its own-database
/// migrations there. Blocking.
fn stage(
    spec: &Path,
    root: &Path,
    max_bytes: u64,
    by: &str,
) -> Result<(Staging, plugins::Package, Option<String>, Vec<Outcome>)> {
    std::fs::create_dir_all(root)
        .map_err(|e| Error::io(format!("cannot create {}", root.display()), e))?;
    let staging = Staging {
        root: root.to_path_buf(),
        dir: root.join(format!(".staging-{}", crate::util::random_hex(6))),
    };
    let package = staging.dir.join("package");
    std::fs::create_dir(&staging.dir)
        .map_err(|e| Error::io(format!("cannot create {}", staging.dir.display()), e))?;
    let md = std::fs::metadata(spec).map_err(|_| {
        invalid(
            "packageSpec",
            format!(
                "names {:?}, which does not exist here (give a plugin directory or an `npm pack` .tgz on this machine; registry names are not fetched)",
                spec.display()
            ),
        )
    })?;
    let mut sha = None;
    if md.is_dir() {
        std::fs::create_dir(&package)
            .map_err(|e| Error::io("cannot create the staging directory", e))?;
        plugins::archive::copy_dir(spec, &package, max_bytes)?;
    } else {
        let name = spec.to_string_lossy().to_ascii_lowercase();
        if !(name.ends_with(".tgz") || name.ends_with(".tar.gz")) {
            return Err(invalid(
                "packageSpec",
                "must be a directory or a .tgz / .tar.gz archive",
            ));
        }
        sha = Some(super::backups::sha256_file(spec)?.0);
        let unpacked = staging.dir.join("unpacked");
        std::fs::create_dir(&unpacked)
            .map_err(|e| Error::io("cannot create the staging directory", e))?;
        let pkg_root = plugins::archive::unpack(spec, &unpacked, max_bytes)?;
        std::fs::rename(&pkg_root, &package)
            .map_err(|e| Error::io("cannot move the unpacked package", e))?;
        remove_tree(root, &unpacked);
    }
    let pkg = plugins::read_package(&package)?;
    let mut applied = Vec::new();
    if let Some(m) = &pkg.manifest.migrations
        && m.database.is_none()
    {
        let db = staging.dir.join("plugin.db");
        let scan = crate::migrate::scan(&package.join(&m.dir))?;
        if let Some(i) = scan.ignored.first() {
            return Err(invalid(
                "trex.migrations",
                format!("holds {:?}, which is not a migration: {}", i.file, i.reason),
            ));
        }
        for f in &scan.files {
            let ledger = crate::migrate::ledger_table(Some(&pkg.name));
            let o = crate::migrate::sqlite::apply(&db, &ledger, f, by)?;
            if let Some(e) = &o.error {
                return Err(invalid(
                    "trex.migrations",
                    format!("file {} failed on the plugin's database: {e}", f.file),
                ));
            }
            applied.push(o);
        }
    }
    Ok((staging, pkg, sha, applied))
}

/// Installs the plugin at `spec` (a directory or a `.tgz` / `.tar.gz`).
pub async fn install(app: &App, actor: &Actor, spec: &str) -> Result<Installed> {
    let args = json!({"packageSpec": spec});
    audited(app, actor, "plugin-install", args, async {
        if spec.trim().is_empty() || spec.len() > 4096 || spec.contains('\0') {
            return Err(invalid(
                "packageSpec",
                "must be a local path (1–4096 characters)",
            ));
        }
        let _one = CHANGING.lock().await;
        let _all = lock_plugins(app).await?;
        let root = plugins::root(&app.config);
        let max = app.config.plugins.max_unpacked_mb * 1024 * 1024;
        let by = super::migrations::applied_by(actor);
        let (spec_path, root2) = (PathBuf::from(spec), root.clone());
        let (staging, pkg, sha, applied) =
            tokio::task::spawn_blocking(move || stage(&spec_path, &root2, max, &by)).await??;
        let name = pkg.name.clone();
        if let Some(p) = app
            .store
            .run({
                let n = name.clone();
                move |c| crate::store::plugins::get(c, &n)
            })
            .await?
        {
            return Err(Error::Conflict(format!(
                "Plugin \"{name}\" is already installed (version {}); uninstall it first",
                p.version
            )));
        }
        // its tools must not take a name a built-in tool or another plugin's tool holds
        let others = tool_names(app).await?;
        for t in &pkg.manifest.tools {
            let full = Manifest::tool_name(&name, &t.name);
            if crate::servers::known_tools().iter().any(|(_, k)| k.name == full)
                || others.iter().any(|(n, _)| *n == full)
            {
                return Err(invalid(
                    "trex.tools",
                    format!("declares {full:?}, a tool name already taken"),
                ));
            }
        }
        let dest = plugins::dir_of(&app.config, &name);
        {
            let (root, dest, from) = (root.clone(), dest.clone(), staging.dir.clone());
            tokio::task::spawn_blocking(move || {
                // debris of an install that died between the move and the row
                remove_tree(&root, &dest);
                std::fs::rename(&from, &dest).map_err(|e| {
                    Error::io(format!("cannot move the plugin to {}", dest.display()), e)
                })
            })
            .await??;
        }
        let row = Plugin {
            name: name.clone(),
            package: pkg.package.clone(),
            version: pkg.version.clone(),
            manifest: serde_json::to_string(&pkg.manifest).expect("a manifest serializes"),
            source: spec.to_string(),
            sha256: sha,
            installed_at: crate::util::now_rfc3339(),
            installed_by: actor.user_id.clone(),
        };
        let undo = |app: &App, root: PathBuf, dest: PathBuf, name: String| {
            let store = app.store.clone();
            async move {
                let _ = store
                    .run(move |c| crate::store::plugins::delete(c, &name))
                    .await;
                let _ = tokio::task::spawn_blocking(move || remove_tree(&root, &dest)).await;
            }
        };
        if let Err(e) = app
            .store
            .write(move |c| crate::store::plugins::insert(c, &row))
            .await
        {
            let (root, dest) = (root.clone(), dest.clone());
            let _ = tokio::task::spawn_blocking(move || remove_tree(&root, &dest)).await;
            return Err(e);
        }
        let mut migrations = applied;
        if pkg
            .manifest
            .migrations
            .as_ref()
            .is_some_and(|m| m.database.is_some())
        {
            let target = format!("plugin:{name}");
            match super::migrations::run(app, actor, Some(&target), None, false).await {
                Ok(runs) => migrations.extend(runs.into_iter().flat_map(|r| r.results)),
                Err(e) => {
                    if let Err(x) = super::migrations::drop_plugin_ledger(app, &name).await {
                        tracing::warn!(plugin = %name, "cannot drop the plugin's ledger after a failed install: {x}");
                    }
                    undo(app, root.clone(), dest.clone(), name.clone()).await;
                    return Err(e);
                }
            }
        }
        publish(app).await;
        let m = &pkg.manifest;
        Ok(Installed {
            package: pkg.package.clone(),
            name: name.clone(),
            version: pkg.version.clone(),
            install_path: dest.display().to_string(),
            success: true,
            migrations,
            tools: m
                .tools
                .iter()
                .map(|t| Manifest::tool_name(&name, &t.name))
                .collect(),
            functions: m.functions.keys().cloned().collect(),
            ui_path: m.ui.as_ref().map(|_| format!("/plugins/{name}/")),
            ignored: m.ignored.clone(),
        })
    })
    .await
}

/// The plugin row of `name` (the short name, or the package name), or a not-found error in
/// trexsql's words.
async fn find(app: &App, name: &str) -> Result<Plugin> {
    let short = plugins::short_name(name).unwrap_or_else(|_| name.to_string());
    app.store
        .run(move |c| crate::store::plugins::get(c, &short))
        .await?
        // a scoped name must be that package (`@b/hello` is not `@a/hello`)
        .filter(|p| !name.starts_with('@') || p.package == name)
        .ok_or_else(|| Error::NotFound(format!("Plugin \"{name}\" is not installed")))
}

/// Uninstalls a plugin: its tools, row, files and own database.
pub async fn uninstall(app: &App, actor: &Actor, name: &str) -> Result<Uninstalled> {
    audited(
        app,
        actor,
        "plugin-uninstall",
        json!({"packageName": name}),
        async {
            if name.trim().is_empty() {
                return Err(invalid("packageName", "must not be empty"));
            }
            let _one = CHANGING.lock().await;
            let p = find(app, name).await?;
            let tools = summary(app, &p)?.tools;
            let short = p.name.clone();
            app.store
                .write(move |c| crate::store::plugins::delete(c, &short))
                .await?;
            publish(app).await;
            let (root, dir) = (
                plugins::root(&app.config),
                plugins::dir_of(&app.config, &p.name),
            );
            tokio::task::spawn_blocking(move || remove_tree(&root, &dir)).await?;
            Ok(Uninstalled {
                package: p.package,
                deleted: true,
                tools_removed: tools,
            })
        },
    )
    .await
}

/// One page of installed plugins.
pub async fn list(app: &App, page: Page) -> Result<Paged<Summary>> {
    let rows = app
        .store
        .run(move |c| crate::store::plugins::list(c, &page))
        .await?;
    Ok(Paged {
        items: rows
            .items
            .iter()
            .map(|p| summary(app, p))
            .collect::<Result<_>>()?,
        next: rows.next,
    })
}

/// One plugin in detail, with the status of its migrations.
pub async fn info(app: &App, actor: &Actor, name: &str) -> Result<Info> {
    if name.trim().is_empty() {
        return Err(invalid("pluginName", "must not be empty"));
    }
    let p = find(app, name).await?;
    let m = manifest_of(&p)?;
    let migration_status = match &m.migrations {
        None => None,
        Some(_) => super::migrations::list(app, actor, Some(&format!("plugin:{}", p.name)))
            .await
            .ok()
            .and_then(|v| v.into_iter().next()),
    };
    Ok(Info {
        summary: summary(app, &p)?,
        directory: plugins::dir_of(&app.config, &p.name).display().to_string(),
        trex_config: serde_json::to_value(&m).expect("a manifest serializes"),
        migration_status,
        source: p.source,
        sha256: p.sha256,
        installed_by: p.installed_by,
    })
}

/// The content type of a static file, by extension.
fn content_type(p: &Path) -> &'static str {
    match p.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "txt" | "md" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// A file of a plugin's UI. Blocking.
fn read_static(ui: &Path, file: &str) -> Option<(bytes::Bytes, &'static str)> {
    let mut p = ui.join(file);
    if p.is_dir() {
        p = p.join("index.html");
    }
    let real = p.canonicalize().ok()?;
    if !real.starts_with(ui.canonicalize().ok()?) || !real.is_file() {
        return None;
    }
    let body = std::fs::read(&real).ok()?;
    Some((body.into(), content_type(&real)))
}

/// Serves a request to a plugin path: a UI file (GET/HEAD, no caller needed) or a function
/// (the caller is audited). The path is normalised first and must then be under `/plugins/`.
pub async fn serve(app: &App, actor: Option<&Actor>, req: Request) -> Result<Answer> {
    let path = plugins::normalise(&req.path).map_err(|e| invalid("path", e))?;
    let Some(target) = plugins::target_of(&path) else {
        return Err(invalid(
            "path",
            format!("must start with /plugins/ once `.` and `..` are resolved (it is {path})"),
        ));
    };
    match target {
        Target::Static { plugin, file } => {
            if !matches!(req.method.as_str(), "GET" | "HEAD") {
                return Ok(Answer::json(
                    405,
                    &json!({"error": "plugin UI files answer GET only"}),
                ));
            }
            let Ok(p) = find(app, &plugin).await else {
                return Ok(Answer::json(
                    404,
                    &json!({"error": format!("Plugin \"{plugin}\" is not installed")}),
                ));
            };
            if file.is_empty() && !path.ends_with('/') {
                // relative links of the UI resolve against the directory
                return Ok(Answer {
                    status: 308,
                    headers: BTreeMap::from([("location".into(), format!("{path}/"))]),
                    body: bytes::Bytes::new(),
                });
            }
            let Some(ui) = manifest_of(&p)?.ui else {
                return Ok(Answer::json(
                    404,
                    &json!({"error": format!("Plugin \"{plugin}\" has no UI")}),
                ));
            };
            let ui = plugins::package_dir(&app.config, &p.name).join(ui);
            match tokio::task::spawn_blocking(move || read_static(&ui, &file)).await? {
                Some((body, ct)) => Ok(Answer {
                    status: 200,
                    headers: BTreeMap::from([
                        ("content-type".into(), ct.into()),
                        ("cache-control".into(), "no-cache".into()),
                    ]),
                    body: if req.method == "HEAD" {
                        bytes::Bytes::new()
                    } else {
                        body
                    },
                }),
                None => Ok(Answer::json(404, &json!({"error": "Not found"}))),
            }
        }
        Target::Function { plugin, function } => {
            let Some(actor) = actor else {
                return Ok(Answer::json(
                    401,
                    &json!({"error": "Invalid or missing API key"}),
                ));
            };
            let args = json!({"path": path, "method": req.method});
            let failed = |a: &Answer| {
                (a.status >= 500).then(|| {
                    format!(
                        "the function answered {}: {}",
                        a.status,
                        String::from_utf8_lossy(&a.body[..a.body.len().min(300)])
                    )
                })
            };
            super::audited_as(app, actor, "plugin-function-invoke", args, failed, async {
                let p = find(app, &plugin).await?;
                let m = manifest_of(&p)?;
                let Some(f) = m.functions.get(&function) else {
                    return Ok(Answer::json(
                        404,
                        &json!({"error": format!("Plugin \"{plugin}\" has no function \"{function}\"")}),
                    ));
                };
                let body = if req.body.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&req.body)
                        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&req.body).into()))
                };
                let mut headers = req.headers.clone();
                headers.remove("authorization");
                headers.remove("cookie");
                let request = json!({
                    "function": function, "method": req.method, "path": path,
                    "query": req.query, "headers": headers, "body": body,
                    "tool": null, "arguments": null, "caller": caller(actor),
                });
                Ok(Answer::of(run(app, &p, &function, f, request).await))
            })
            .await
        }
    }
}

fn caller(actor: &Actor) -> Value {
    json!({"userId": actor.user_id, "via": actor.via, "keyId": actor.key_id})
}

async fn run(
    app: &App,
    p: &Plugin,
    function: &str,
    f: &plugins::Function,
    request: Value,
) -> functions::Answer {
    let cwd = plugins::package_dir(&app.config, &p.name);
    let call = functions::Call {
        plugin: p.name.clone(),
        function: function.to_string(),
        command: cwd.join(&f.command),
        database: plugins::database_of(&app.config, &p.name),
        cwd,
        timeout: Duration::from_millis(
            f.timeout_ms
                .unwrap_or(app.config.plugins.function_timeout_ms),
        ),
        request,
    };
    functions::run(&app.functions, call).await
}

/// Calls the tool `tool` of plugin `plugin` with checked `arguments` (its function's answer).
pub async fn call_tool(
    app: &App,
    actor: &Actor,
    plugin: &str,
    tool: &str,
    arguments: Value,
) -> Result<functions::Answer> {
    let action = Manifest::tool_name(plugin, tool);
    let failed = |a: &functions::Answer| {
        (a.status >= 500).then(|| format!("the function answered {}: {}", a.status, a.body))
    };
    super::audited_as(app, actor, &action, arguments.clone(), failed, async {
        let p = find(app, plugin).await?;
        let m = manifest_of(&p)?;
        let decl = m.tools.iter().find(|t| t.name == tool).ok_or_else(|| {
            Error::NotFound(format!("Plugin \"{plugin}\" has no tool \"{tool}\""))
        })?;
        let f = m.functions.get(&decl.function).ok_or_else(|| {
            Error::NotFound(format!(
                "Plugin \"{plugin}\" has no function \"{}\"",
                decl.function
            ))
        })?;
        let request = json!({
            "function": decl.function, "method": "POST",
            "path": format!("/plugins/{plugin}/fn/{}", decl.function),
            "query": {}, "headers": {}, "body": arguments,
            "tool": action, "arguments": arguments, "caller": caller(actor),
        });
        Ok(run(app, &p, &decl.function, f, request).await)
    })
    .await
}

/// The admin-server tools the installed plugins declare, with their read-only hint (for key
/// scopes that name them).
pub async fn tool_names(app: &App) -> Result<Vec<(String, bool)>> {
    let rows = app.store.run(crate::store::plugins::all).await?;
    let mut out = Vec::new();
    for p in &rows {
        for t in manifest_of(p)?.tools {
            out.push((Manifest::tool_name(&p.name, &t.name), t.read_only));
        }
    }
    Ok(out)
}

/// Removes what installs and uninstalls that died half-way left (`.staging-*` and `.trash-*`
/// directories older than ten minutes, so one in progress in another process is left alone).
pub async fn sweep(app: &App) {
    let root = plugins::root(&app.config);
    let _ = tokio::task::spawn_blocking(move || {
        let Ok(rd) = std::fs::read_dir(&root) else {
            return;
        };
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|a| a > Duration::from_secs(600));
            if (n.starts_with(".staging-") || n.starts_with(".trash-")) && old {
                tracing::info!(
                    "removing {n}, left by a plugin install or removal that did not finish"
                );
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    })
    .await;
}

/// Brings the admin server's plugin tools and the function service in line with the installed
/// plugins — at start, after every install and uninstall, and on every node heartbeat (so a
/// plugin installed by `trex plugin install` while the server runs goes live within one
/// heartbeat); clients are told when the tool list changed. Does nothing when the plugins are
/// as last published.
pub async fn publish(app: &App) {
    let rows = match app.store.run(crate::store::plugins::all).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("cannot read the installed plugins: {e}");
            return;
        }
    };
    let fingerprint: Vec<String> = rows
        .iter()
        .map(|p| format!("{}@{}@{}", p.name, p.version, p.installed_at))
        .collect();
    if let Some(c) = app.catalogue.get()
        && !c.plugins_changed(&fingerprint.join(","))
    {
        return;
    }
    let mut decls = Vec::new();
    for p in &rows {
        match manifest_of(p) {
            Ok(m) => decls.extend(m.tools.into_iter().map(|t| (p.name.clone(), t))),
            Err(e) => tracing::warn!(plugin = %p.name, "unreadable plugin manifest: {e}"),
        }
    }
    app.services.configure(
        SERVICE,
        json!({
            "plugins": rows.iter().map(|p| &p.name).collect::<Vec<_>>(),
            "maxConcurrent": app.config.plugins.max_concurrent_functions,
            "timeoutMs": app.config.plugins.function_timeout_ms,
        }),
        None,
    );
    if let Some(c) = app.catalogue.get() {
        let tools = decls
            .iter()
            .filter_map(|(plugin, d)| match crate::tools::plugins::tool_of(plugin, d) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!(plugin = %plugin, tool = %d.name, "plugin tool not offered: {e}");
                    None
                }
            })
            .collect();
        c.set_plugin_tools(tools, &app.sessions);
    }
}
