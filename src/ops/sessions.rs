//! Web and MCP sessions: one list of both kinds, and revocation of either by id.

use serde_json::json;

use super::{Actor, audited};
use crate::app::App;
use crate::error::{Error, Result};
use crate::store::web_sessions::{self, SessionInfo};
use crate::store::{Page, Paged};

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub user_id: Option<String>,
    /// `web` or `mcp`; `None` for both.
    pub kind: Option<&'static str>,
    pub include_expired: bool,
}

/// Web and MCP sessions, newest first, with MCP activity made current first.
pub async fn list(app: &App, f: Filter, page: Page) -> Result<Paged<SessionInfo>> {
    app.sessions.flush().await?;
    let idle = app.config.mcp.session_idle_timeout_secs;
    app.store
        .run(move |c| {
            web_sessions::list_all(
                c,
                f.user_id.as_deref(),
                f.kind,
                f.include_expired,
                idle,
                &page,
            )
        })
        .await
}

/// Ends a web or an MCP session by id.
pub async fn revoke(app: &App, actor: &Actor, session_id: &str) -> Result<()> {
    let args = json!({"sessionId": session_id});
    audited(app, actor, "session-revoke", args, async {
        let id = session_id.to_string();
        let web = app
            .store
            .write(move |c| web_sessions::delete(c, &id))
            .await?;
        if web || app.sessions.remove(session_id).await? {
            app.auth.invalidate();
            Ok(())
        } else {
            Err(Error::NotFound("Session not found".into()))
        }
    })
    .await
}
