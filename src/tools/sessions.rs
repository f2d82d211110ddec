//! `session-*` tools: web (admin page) and MCP sessions together, with a `kind` field.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::page_of;
use crate::mcp::tool::{Annotations, Tool, ToolCtx, ToolError};
use crate::ops;
use crate::store::web_sessions::SessionInfo;

/// The tools of this group.
pub fn tools() -> Vec<Tool> {
    vec![
        Tool::typed(
            "session-list",
            "List sessions",
            "Web sessions (admin page sign-ins) and MCP sessions, newest first, `kind` `web` or \
             `mcp`; expired ones only with `includeExpired`. Never shows a token. Paginated.",
            Annotations::READ,
            session_list,
        ),
        Tool::typed(
            "session-revoke",
            "Revoke a session",
            "End a web or MCP session by id. A revoked MCP session answers 404 to its next request, \
             so the client re-initializes.",
            Annotations::DESTROY,
            session_revoke,
        ),
    ]
}

/// Kinds of session.
#[derive(Deserialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Web,
    Mcp,
}

/// Arguments of `session-list`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListArgs {
    /// Only sessions of this user.
    pub user_id: Option<String>,
    /// Include expired sessions.
    #[serde(default)]
    pub include_expired: bool,
    /// Only `web` or only `mcp` sessions.
    pub kind: Option<Kind>,
    // the page size: the schema's default, minimum and maximum say it all
    #[schemars(range(min = 1, max = 1000), extend("default" = 100))]
    pub limit: Option<u32>,
    /// From `nextCursor`.
    pub cursor: Option<String>,
}

page_of!(
    /// Result of `session-list`.
    SessionPage,
    sessions: SessionInfo
);

async fn session_list(ctx: ToolCtx, a: ListArgs) -> Result<SessionPage, ToolError> {
    let page = ops::page(a.limit, a.cursor.as_deref())?;
    let filter = ops::sessions::Filter {
        user_id: a.user_id,
        kind: a.kind.map(|k| match k {
            Kind::Web => "web",
            Kind::Mcp => "mcp",
        }),
        include_expired: a.include_expired,
    };
    Ok(ops::sessions::list(&ctx.app, filter, page).await?.into())
}

/// Arguments of `session-revoke`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RevokeArgs {
    pub session_id: String,
}

/// Result of `session-revoke`.
#[derive(Serialize, JsonSchema)]
pub struct Revoked {
    pub message: String,
}

async fn session_revoke(ctx: ToolCtx, a: RevokeArgs) -> Result<Revoked, ToolError> {
    ops::sessions::revoke(&ctx.app, &ctx.actor, &a.session_id).await?;
    Ok(Revoked {
        message: format!("Session {} revoked", a.session_id),
    })
}
