//! `migration-*` tools: versioned file migrations of the control store, trexdb and every
//! registered database with a `migrationsDir` ([`ops::migrations`]).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::jobs::Stored;
use crate::mcp::tool::{Annotations, TaskSupport, Tool, ToolCtx, ToolError};
use crate::ops;
use crate::ops::migrations::{TargetRun, TargetStatus};

/// The tools of this group.
pub fn tools() -> Vec<Tool> {
    vec![
        Tool::typed(
            "migration-list",
            "List versioned migrations",
            "Status of the versioned migration files (V<n>__<name>.sql) of each target: `core` \
             (the control store's schema steps), `trexdb`, every registered database with a \
             `migrationsDir` and every plugin with migrations (`plugin:<name>`).",
            Annotations {
                open_world: true,
                ..Annotations::READ
            },
            migration_list,
        ),
        Tool::typed(
            "migration-run",
            "Run versioned migrations",
            "Apply the pending migration files of one target or of all, in version order. Each \
             file commits with its ledger row under a lock on the target, after applied files' \
             checksums are checked; the first failing file is rolled back and stops the run. A \
             job: it outlives a restart; cancelling stops it before the next file.",
            Annotations {
                read_only: false,
                destructive: true,
                idempotent: true,
                open_world: true,
            },
            migration_run,
        )
        .task(TaskSupport::Optional),
    ]
}

/// Arguments of `migration-list`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListArgs {
    /// One target (`core`, `trexdb`, a database id or `plugin:<name>`); omit for all.
    pub target: Option<String>,
    /// trexsql's name for `target`.
    pub plugin_name: Option<String>,
}

/// Result of `migration-list`.
#[derive(Serialize, JsonSchema)]
pub struct Listed {
    pub targets: Vec<TargetStatus>,
}

/// `target`, or trexsql's `pluginName`; both only when they agree.
fn target_arg(target: Option<String>, plugin: Option<String>) -> Result<Option<String>, ToolError> {
    match (target, plugin) {
        (Some(t), Some(p)) if t != p => Err(ToolError::field(
            "pluginName",
            "names another target than `target`; give one of them",
        )),
        (t, p) => Ok(t.or(p)),
    }
}

async fn migration_list(ctx: ToolCtx, a: ListArgs) -> Result<Listed, ToolError> {
    let target = target_arg(a.target, a.plugin_name)?;
    let targets = ops::migrations::list(&ctx.app, &ctx.actor, target.as_deref()).await?;
    Ok(Listed { targets })
}

/// Arguments of `migration-run`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RunArgs {
    /// One target (`core`, `trexdb`, a database id or `plugin:<name>`); omit for all.
    pub target: Option<String>,
    /// trexsql's name for `target`.
    pub plugin_name: Option<String>,
    /// Apply files up to this version only.
    #[schemars(range(min = 1))]
    pub to_version: Option<i64>,
    /// List what would run; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// Result of `migration-run`.
#[derive(Serialize, JsonSchema)]
pub struct Ran {
    pub targets: Vec<TargetRun>,
}

async fn migration_run(ctx: ToolCtx, a: RunArgs) -> Result<Stored<Ran>, ToolError> {
    let target = target_arg(a.target, a.plugin_name)?;
    if a.dry_run {
        let targets =
            ops::migrations::run(&ctx.app, &ctx.actor, target.as_deref(), a.to_version, true)
                .await?;
        return Ok(Stored::of(&Ran { targets }));
    }
    let events = ctx.app.jobs.subscribe();
    let job = ops::migrations::start(&ctx.app, &ctx.actor, target.as_deref(), a.to_version).await?;
    super::jobs::follow(&ctx, events, &job).await
}
