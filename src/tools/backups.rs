//! `backup-*` tools: online backups of the data dir ([`ops::backups`]).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::jobs::Stored;
use crate::mcp::tool::{Annotations, TaskSupport, Tool, ToolCtx, ToolError};
use crate::ops;
use crate::ops::backups::Backup;

/// The tools of this group.
pub fn tools() -> Vec<Tool> {
    vec![
        Tool::typed(
            "backup-create",
            "Back up the data dir",
            "Online backup (the server keeps serving) of trex.db, trexdb's data files and the \
             registered SQLite databases into one .tar.gz with a checksum manifest, in backup.dir. \
             A job: it outlives a restart; cancelling stops it between files. master.key only with \
             `includeMasterKey` (it opens every sealed secret).",
            Annotations::CREATE,
            backup_create,
        )
        .streaming()
        .task(TaskSupport::Optional),
        Tool::typed(
            "backup-list",
            "List backups",
            "The backups in backup.dir, newest first, with their manifests.",
            Annotations::READ,
            backup_list,
        ),
    ]
}

/// Arguments of `backup-create`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateArgs {
    /// Put master.key into the archive too.
    #[serde(default)]
    pub include_master_key: bool,
}

async fn backup_create(ctx: ToolCtx, a: CreateArgs) -> Result<Stored<Backup>, ToolError> {
    let events = ctx.app.jobs.subscribe();
    let job = ops::backups::start(&ctx.app, &ctx.actor, a.include_master_key).await?;
    super::jobs::follow(&ctx, events, &job).await
}

/// Result of `backup-list`.
#[derive(Serialize, JsonSchema)]
pub struct Listed {
    pub backups: Vec<Backup>,
}

async fn backup_list(ctx: ToolCtx, _a: super::trexdb::NoArgs) -> Result<Listed, ToolError> {
    Ok(Listed {
        backups: ops::backups::list(&ctx.app).await?,
    })
}
