//! The migrations MCP server (Eden's tools, snake_case): at `/api/v1/mcp/migrations`, and scoped
//! to one database at `/api/v1/endpoints/{id}/mcp/migrations` (where `define_migration`
//! defaults `interlays` to that database and lists show only definitions that touch it). The
//! rules are [`ops::definitions`]' and [`ops::runs`]'.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::mcp::server::McpServer;
use crate::mcp::tool::{Annotations, TaskSupport, Tool, ToolCtx, ToolError, ToolOutput};
use crate::ops;
use crate::ops::definitions::MigrationView;

/// The migrations server; `db` scopes it to one database.
pub fn server(db: Option<&str>) -> McpServer {
    let id = match db {
        None => "migrations".to_string(),
        Some(d) => format!("endpoint:{d}:migrations"),
    };
    let scoped = db.map(str::to_string);
    let s = |f: fn(Option<String>) -> Tool| f(scoped.clone());
    let mut srv = McpServer::new(&id, "trex-migrations", "trex migrations").tools(vec![
        s(list_tool),
        s(get_tool),
        s(define_tool),
        s(run_tool),
        s(get_run_tool),
        s(cancel_tool),
    ]);
    srv.instructions = Some(
        "Migrations across registered databases. define_migration (targets in `interlays`, the change in \
         `data` {\"type\":\"sql\",\"up\",\"down\"?}, a `strategy`, `failure_handling`, and `apis` the application \
         depends on), then run_migration with mode \"test\" (scratch copies; the report shows statements, rows, \
         the schema diff and each api), then mode \"migrate\" — refused unless this version passed a test and no \
         target changed since. Runs are jobs: wait=true blocks with progress; otherwise poll get_migration_run."
            .into(),
    );
    srv
}

fn destructive() -> Annotations {
    Annotations {
        read_only: false,
        destructive: true,
        idempotent: false,
        open_world: true,
    }
}

/// Arguments of `list_migrations`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    /// Include each definition's whole body.
    #[serde(default)]
    pub verbose: bool,
    /// Only definitions updated at or after this time (RFC 3339).
    pub updated_since: Option<String>,
    /// Only definitions with this status.
    pub status: Option<String>,
    // the page size: the schema's default, minimum and maximum say it all
    #[schemars(range(min = 1, max = 1000), extend("default" = 100))]
    pub limit: Option<u32>,
    /// Opaque cursor from a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// Result of `list_migrations`.
#[derive(Serialize, JsonSchema)]
pub struct Listed {
    pub migrations: Vec<MigrationView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

fn list_tool(db: Option<String>) -> Tool {
    Tool::typed(
        "list_migrations",
        "List migrations",
        "List migration definitions (latest versions), most recently updated first; filters `status` and \
         `updated_since`; `verbose` adds each body. Paginated (`limit`, `cursor`).",
        Annotations::READ,
        move |ctx: ToolCtx, a: ListArgs| {
            let db = db.clone();
            async move {
                let f = ops::definitions::ListFilter {
                    verbose: a.verbose,
                    updated_since: a.updated_since,
                    status: a.status,
                    limit: a.limit,
                    cursor: a.cursor,
                    touching: db,
                };
                let (migrations, next_cursor) = ops::definitions::list(&ctx.app, f).await?;
                Ok::<_, ToolError>(Listed {
                    migrations,
                    next_cursor,
                })
            }
        },
    )
}

/// Arguments of `get_migration`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetArgs {
    pub migration_id: String,
    /// Add every version and every run with its per-target results.
    #[serde(default)]
    pub verbose: bool,
}

/// A definition, or a run, as JSON.
#[derive(Serialize, JsonSchema)]
pub struct Shown {
    #[serde(flatten)]
    pub value: serde_json::Map<String, Value>,
}

fn shown(v: Value) -> Shown {
    Shown {
        value: match v {
            Value::Object(m) => m,
            other => [("value".to_string(), other)].into_iter().collect(),
        },
    }
}

fn get_tool(db: Option<String>) -> Tool {
    Tool::typed(
        "get_migration",
        "Get a migration",
        "One migration definition (latest version, with its body); `verbose` adds every version and every run \
         with per-target results.",
        Annotations::READ,
        move |ctx: ToolCtx, a: GetArgs| {
            let db = db.clone();
            async move {
                let v = ops::definitions::get(&ctx.app, &a.migration_id, a.verbose, db.as_deref())
                    .await?;
                Ok::<_, ToolError>(shown(v))
            }
        },
    )
}

/// Arguments of `define_migration`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DefineArgs {
    /// Unique id (letters, digits, `_`, `-`, `.`).
    pub id: String,
    pub description: Option<String>,
    /// `{"type": "big_bang"}` (default), `rolling_update` (`batch_size`), `canary` (`canary_targets`),
    /// `blue_green` (SQLite), `time_window` (`window_start`, `window_end`), `shadow_traffic` (test only);
    /// Eden's `strangler_fig`, `feature_flag`, `geographic` are refused at run time.
    #[schemars(schema_with = "super::object_or_string")]
    pub strategy: Option<Value>,
    /// `{"type": "sql", "up": "...", "down": "..."}` or `"none"`.
    #[schemars(schema_with = "super::object_or_string")]
    pub data: Option<Value>,
    /// `"rollback_all"` (default), `"allow_partial"` or `{"type": "retry_then_all", "retry_count": N}`.
    #[schemars(schema_with = "super::object_or_string")]
    pub failure_handling: Option<Value>,
    /// Queries the application depends on: `[{"id", "query", "parameters"?}]`, checked after the
    /// change on every target.
    #[schemars(with = "Option<Vec<serde_json::Map<String, Value>>>")]
    pub apis: Option<Vec<Value>>,
    /// Target databases: `[{"endpoint": "<database id>", "description"?}]`.
    #[schemars(with = "Option<Vec<serde_json::Map<String, Value>>>")]
    pub interlays: Option<Vec<Value>>,
    /// Make a new version when the id exists with other content.
    #[serde(default)]
    pub replace: bool,
}

fn define_tool(db: Option<String>) -> Tool {
    Tool::typed(
        "define_migration",
        "Define a migration",
        "Define a migration: targets (`interlays`), the change (`data`), `strategy`, `failure_handling` and \
         `apis`. Checked now: unknown databases, SQL that does not parse or run against the target's schema, a \
         strategy that does not fit, PostgreSQL targets under rollback_all without `down`. The same content again \
         returns the definition; other content needs `replace: true` and makes the next version.",
        Annotations::UPDATE,
        move |ctx: ToolCtx, a: DefineArgs| {
            let db = db.clone();
            async move {
                let d = ops::definitions::Define {
                    id: a.id,
                    description: a.description,
                    strategy: a.strategy,
                    data: a.data,
                    failure_handling: a.failure_handling,
                    apis: a.apis,
                    interlays: a.interlays,
                    replace: a.replace,
                    scoped_to: db,
                };
                Ok::<_, ToolError>(ops::definitions::define(&ctx.app, &ctx.actor, d).await?)
            }
        },
    )
}

/// Arguments of `run_migration`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunArgs {
    pub migration_id: String,
    /// `test` (scratch copies, nothing changes) or `migrate` (for real; needs a passed test).
    pub mode: Mode,
    /// Wait for the run to end, with progress notifications (default true); false returns the run id at once.
    pub wait: Option<bool>,
}

/// Run modes.
#[derive(Deserialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Test,
    Migrate,
}

fn run_tool(db: Option<String>) -> Tool {
    Tool::typed(
        "run_migration",
        "Run a migration",
        "Run the latest version of a migration: mode `test` on scratch copies (report per target: statements, \
         rows affected, schema diff, apis, time), or `migrate` for real — refused unless this version passed a \
         test and no target's schema changed since. `wait` (default true) blocks and sends notifications/progress \
         per target and statement; cancelling the request cancels the run at a safe point.",
        destructive(),
        move |ctx: ToolCtx, a: RunArgs| {
            let db = db.clone();
            async move {
                let mode = match a.mode {
                    Mode::Test => "test",
                    Mode::Migrate => "migrate",
                };
                // subscribed before the run is queued, so none of its progress is missed
                let events = ctx.app.jobs.subscribe();
                let run = ops::runs::start(&ctx.app, &ctx.actor, &a.migration_id, mode, db.as_deref()).await?;
                if ctx.call.is_task() {
                    // the task follows the run: polled after a restart, it is answered from it
                    let job = ops::runs::job_of(&ctx.app, &run).await?;
                    ctx.call
                        .follow(json!({"kind": RUN_BACKING, "run": run, "db": db, "job": job}))
                        .await;
                }
                if !a.wait.unwrap_or(true) {
                    return Ok::<_, ToolError>(shown(json!({"runId": run, "state": "pending"})));
                }
                let progress = super::jobs::progress_of(&ctx);
                let v = ops::runs::wait(&ctx.app, &run, events, progress, ctx.call.cancel.clone())
                    .await?;
                Ok(shown(v))
            }
        },
    )
    .streaming()
    .task(TaskSupport::Optional)
}

/// The `kind` of a task's backing that follows a migration run.
const RUN_BACKING: &str = "migration-run";

/// Lets tasks of `run_migration` be answered from their run when the process that ran them
/// stopped: the run's view once it has ended, as the tool would have returned it.
pub fn register_task_resumers(app: &std::sync::Arc<crate::App>) {
    let weak = std::sync::Arc::downgrade(app);
    app.mcp_tasks.register_resumer(
        RUN_BACKING,
        std::sync::Arc::new(move |b: Value| {
            let weak = weak.clone();
            Box::pin(async move {
                let app = weak.upgrade()?;
                let run = b.get("run")?.as_str()?.to_string();
                let db = b.get("db").and_then(Value::as_str).map(str::to_string);
                match ops::runs::get(&app, &run, db.as_deref()).await {
                    Ok(v) if ops::runs::has_ended(&v) => {
                        let text = serde_json::to_string(&shown(v)).ok()?;
                        Some(Ok(ToolOutput::Json(text).into_result()))
                    }
                    Ok(_) => None,
                    Err(e) => Some(Ok(ToolOutput::Err(e.to_string()).into_result())),
                }
            })
        }),
    );
}

/// Arguments naming a run.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunIdArgs {
    pub run_id: String,
}

fn get_run_tool(db: Option<String>) -> Tool {
    Tool::typed(
        "get_migration_run",
        "Get a migration run",
        "A run's state (pending, running, completed, failed, rolling_back, rolled_back, cancelled) and per-target \
         results and reports.",
        Annotations::READ,
        move |ctx: ToolCtx, a: RunIdArgs| {
            let db = db.clone();
            async move {
                Ok::<_, ToolError>(shown(
                    ops::runs::get(&ctx.app, &a.run_id, db.as_deref()).await?,
                ))
            }
        },
    )
}

fn cancel_tool(db: Option<String>) -> Tool {
    Tool::typed(
        "cancel_migration_run",
        "Cancel a migration run",
        "Stop a run at its next safe point (before the next target); the failure handling then applies \
         (rollback_all puts migrated targets back).",
        Annotations {
            read_only: false,
            destructive: true,
            idempotent: true,
            open_world: false,
        },
        move |ctx: ToolCtx, a: RunIdArgs| {
            let db = db.clone();
            async move {
                Ok::<_, ToolError>(shown(
                    ops::runs::cancel(&ctx.app, &ctx.actor, &a.run_id, db.as_deref()).await?,
                ))
            }
        },
    )
}
