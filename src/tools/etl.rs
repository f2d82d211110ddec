//! `etl-*` tools: ETL/CDC pipelines from registered PostgreSQL and SQLite databases into
//! trexdb ([`ops::pipelines`]), with trexsql's arguments plus `credentialId` and `tables`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::mcp::tool::{Annotations, TaskSupport, Tool, ToolCtx, ToolError, ToolOutput};
use crate::ops;
use crate::ops::pipelines::{PipelineView, StartArgs};
use crate::pipelines::Mode;
use serde_json::json;

/// The tools of this group.
pub fn tools() -> Vec<Tool> {
    vec![
        Tool::typed(
            "etl-list-pipelines",
            "List ETL pipelines",
            "Every pipeline with its state, mode, source (never a password), publication, slot, \
             replication progress and lag (p50/p99 over recent commits), replica tables and error.",
            Annotations::READ,
            list,
        ),
        Tool::typed(
            "etl-start-pipeline",
            "Start an ETL pipeline",
            "Replicate a registered database into trexdb tables `<schema>__<table>` (PostgreSQL) or \
             `<databaseId>__<table>` (SQLite). CDC on PostgreSQL needs wal_level=logical. Starting a stopped pipeline \
             resumes it from its checkpoint; exactly once across restarts.",
            // it connects to the source database
            Annotations {
                open_world: true,
                ..Annotations::CREATE
            },
            start,
        )
        .task(TaskSupport::Optional),
        Tool::typed(
            "etl-stop-pipeline",
            "Stop an ETL pipeline",
            "Stop a pipeline at a safe point. It keeps its row, slot and checkpoint: etl-start-pipeline with the \
             same name resumes it.",
            Annotations::UPDATE,
            stop,
        ),
        Tool::typed(
            "etl-delete-pipeline",
            "Delete an ETL pipeline",
            "Stop and delete a pipeline: its replication slot (PostgreSQL) or capture triggers and \
             change table (SQLite), its checkpoint, and with `dropTables` its replica tables. An \
             unreachable source keeps it unless `force`.",
            Annotations {
                open_world: true,
                ..Annotations::DESTROY
            },
            delete,
        ),
    ]
}

/// Result of `etl-list-pipelines`.
#[derive(Serialize, JsonSchema)]
pub struct Listed {
    pub pipelines: Vec<PipelineView>,
}

async fn list(ctx: ToolCtx, _a: super::trexdb::NoArgs) -> Result<Listed, ToolError> {
    Ok(Listed {
        pipelines: ops::pipelines::list(&ctx.app, &ctx.actor).await?,
    })
}

/// Arguments of `etl-start-pipeline`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StartToolArgs {
    /// The pipeline's name (1–64 letters, digits, `_`, `-`, `.`).
    pub name: String,
    /// The registered database to read (required for a new pipeline).
    pub database_id: Option<String>,
    /// copy_and_cdc, cdc_only or copy_only (required for a new pipeline).
    pub mode: Option<Mode>,
    /// The PostgreSQL publication to stream (CDC modes on PostgreSQL).
    pub publication: Option<String>,
    /// The schema a PostgreSQL copy_only reads (default public).
    pub schema: Option<String>,
    /// Only these tables (`table` or `schema.table`); default: all.
    pub tables: Option<Vec<String>>,
    /// Which stored credential of the database to use (required when it has more than one).
    pub credential_id: Option<String>,
    /// Changes per replica commit at most (default 1000).
    pub batch_size: Option<i64>,
    /// Longest a batch stays open under constant load, ms (default 5000).
    pub batch_timeout_ms: Option<i64>,
    /// Wait between retries after a lost connection, ms (default 10000).
    pub retry_delay_ms: Option<i64>,
    /// Retries before the pipeline stops in `error` (default 5).
    pub retry_max_attempts: Option<i64>,
}

/// A one-line outcome.
#[derive(Serialize, JsonSchema)]
pub struct Said {
    pub message: String,
}

async fn start(ctx: ToolCtx, a: StartToolArgs) -> Result<Said, ToolError> {
    let args = StartArgs {
        name: a.name,
        database_id: a.database_id,
        mode: a.mode,
        publication: a.publication,
        schema: a.schema,
        tables: a.tables,
        credential_id: a.credential_id,
        batch_size: a.batch_size,
        batch_timeout_ms: a.batch_timeout_ms,
        retry_delay_ms: a.retry_delay_ms,
        retry_max_attempts: a.retry_max_attempts,
    };
    let name = args.name.clone();
    let message = ops::pipelines::start(&ctx.app, &ctx.actor, args).await?;
    if !ctx.call.is_task() {
        return Ok(Said { message });
    }
    // as a task: done when the first copy is, followed through the pipeline's row
    ctx.call
        .follow(json!({"kind": SNAPSHOT_BACKING, "name": name}))
        .await;
    loop {
        match ops::pipelines::snapshot_outcome(&ctx.app, &name).await? {
            None => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
            Some(Ok(message)) => return Ok(Said { message }),
            Some(Err(why)) => return Err(ToolError::Failed(why)),
        }
    }
}

/// The `kind` of a task's backing that follows a pipeline's first copy.
const SNAPSHOT_BACKING: &str = "pipeline-snapshot";

/// Lets tasks of `etl-start-pipeline` be answered from their pipeline's row when the process
/// that ran them stopped (the pipeline resumes on the next start).
pub fn register_task_resumers(app: &std::sync::Arc<crate::App>) {
    let weak = std::sync::Arc::downgrade(app);
    app.mcp_tasks.register_resumer(
        SNAPSHOT_BACKING,
        std::sync::Arc::new(move |b: serde_json::Value| {
            let weak = weak.clone();
            Box::pin(async move {
                let app = weak.upgrade()?;
                let name = b.get("name")?.as_str()?.to_string();
                let out = match ops::pipelines::snapshot_outcome(&app, &name).await {
                    Ok(None) => return None,
                    Ok(Some(Ok(message))) => {
                        ToolOutput::Json(serde_json::to_string(&Said { message }).ok()?)
                    }
                    Ok(Some(Err(why))) => ToolOutput::Err(why),
                    Err(e) => ToolOutput::Err(e.to_string()),
                };
                Some(Ok(out.into_result()))
            })
        }),
    );
}

/// Arguments of `etl-stop-pipeline`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NameArgs {
    pub name: String,
}

async fn stop(ctx: ToolCtx, a: NameArgs) -> Result<Said, ToolError> {
    Ok(Said {
        message: ops::pipelines::stop(&ctx.app, &ctx.actor, &a.name).await?,
    })
}

/// Arguments of `etl-delete-pipeline`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeleteArgs {
    pub name: String,
    /// Also drop the replica tables in trexdb.
    #[serde(default)]
    pub drop_tables: bool,
    /// Delete even if the source's slot or triggers cannot be removed.
    #[serde(default)]
    pub force: bool,
}

async fn delete(ctx: ToolCtx, a: DeleteArgs) -> Result<Said, ToolError> {
    Ok(Said {
        message: ops::pipelines::delete(&ctx.app, &ctx.actor, &a.name, a.drop_tables, a.force)
            .await?,
    })
}
