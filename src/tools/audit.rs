//! `audit-list`: the audit log of mutating (and refused) tool calls.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::mcp::tool::{Annotations, Tool, ToolCtx, ToolError};
use crate::store::audit::{self, AuditRow};
use crate::util::{decode_cursor, encode_cursor, parse_rfc3339, rfc3339};

/// The tools of this group.
pub fn tools() -> Vec<Tool> {
    vec![Tool::typed(
        "audit-list",
        "List audit entries",
        "List the audit log, newest first: every mutating tool call and every refused one, with time, \
         user, key, tool, arguments (secrets redacted) and outcome. Filters: `userId`, `tool`, `since` \
         (RFC 3339), `via` (`mcp`, `cli` or `web`: the front door the change came through). Paginated.",
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
    /// Page size, 1–1000 (default 100).
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<u32>,
    /// Opaque cursor from a previous page's `nextCursor`.
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
    let page = super::page(a.limit, a.cursor.as_deref())?;
    let before = match &a.cursor {
        Some(c) => Some(
            decode_cursor(c)
                .and_then(|(_, id)| id.parse::<i64>().ok())
                .ok_or_else(|| {
                    ToolError::field("cursor", "is not a cursor returned by this tool")
                })?,
        ),
        None => None,
    };
    let since = match &a.since {
        Some(s) => Some(rfc3339(parse_rfc3339(s).ok_or_else(|| {
            ToolError::field("since", format!("is not an RFC 3339 time: {s:?}"))
        })?)),
        None => None,
    };
    let limit = page.limit;
    let (entries, next) = ctx
        .app
        .store
        .run(move |c| {
            let filter = audit::AuditFilter {
                user_id: a.user_id.as_deref(),
                tool: a.tool.as_deref(),
                since: since.as_deref(),
                via: a.via.map(Via::as_str),
            };
            audit::list(c, &filter, before, limit)
        })
        .await?;
    let next_cursor = next.and_then(|id| {
        entries
            .iter()
            .find(|e| e.id == id)
            .map(|e| encode_cursor(&e.at, &id.to_string()))
    });
    Ok(AuditPage {
        entries,
        next_cursor,
    })
}
