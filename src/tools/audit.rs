//! `audit-list`: the audit log of mutating (and refused) tool calls.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::mcp::tool::{Annotations, Tool, ToolCtx, ToolError};
use crate::ops;
use crate::store::audit::AuditRow;

/// The tools of this group.
pub fn tools() -> Vec<Tool> {
    vec![Tool::typed(
        "audit-list",
        "List audit entries",
        "The audit log, newest first: every mutating tool call, allowed or refused, with time, \
         user, key, tool, arguments (secrets redacted) and outcome. Paginated.",
        Annotations::READ,
        audit_list,
    )]
}

/// Arguments of `audit-list`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListArgs {
    pub user_id: Option<String>,
    /// Exact tool name.
    pub tool: Option<String>,
    /// Only entries at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Only entries that came through this front door.
    pub via: Option<Via>,
    // the page size: the schema's default, minimum and maximum say it all
    #[schemars(range(min = 1, max = 1000), extend("default" = 100))]
    pub limit: Option<u32>,
    /// From `nextCursor`.
    pub cursor: Option<String>,
}

/// The front door of an audited change.
#[derive(Deserialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    Mcp,
    Cli,
    Web,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Via::Mcp => "mcp",
            Via::Cli => "cli",
            Via::Web => "web",
        }
    }
}

/// Result of `audit-list`.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    pub entries: Vec<AuditRow>,
    /// Cursor of the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

async fn audit_list(ctx: ToolCtx, a: ListArgs) -> Result<AuditPage, ToolError> {
    let filter = ops::audit::Filter {
        user_id: a.user_id,
        tool: a.tool,
        since: a.since,
        via: a.via.map(Via::as_str),
    };
    let (entries, next_cursor) =
        ops::audit::list(&ctx.app, filter, a.limit, a.cursor.as_deref()).await?;
    Ok(AuditPage {
        entries,
        next_cursor,
    })
}
