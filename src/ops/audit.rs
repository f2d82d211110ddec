//! Reading the audit log (writing it is [`super::audited`]'s job): newest first, filtered by
//! user, tool, time and front door, paged by row id.

use crate::app::App;
use crate::error::Result;
use crate::store::audit::{self, AuditRow};
use crate::util::{decode_cursor, encode_cursor, parse_rfc3339, rfc3339};

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub user_id: Option<String>,
    /// Exact tool (operation) name.
    pub tool: Option<String>,
    /// RFC 3339; entries at or after it.
    pub since: Option<String>,
    /// `mcp`, `cli` or `web`.
    pub via: Option<&'static str>,
}

/// One page of audit rows and the cursor of the next.
pub async fn list(
    app: &App,
    f: Filter,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Result<(Vec<AuditRow>, Option<String>)> {
    let page = super::page(limit, cursor)?;
    let before = match cursor {
        Some(c) => Some(
            decode_cursor(c)
                .and_then(|(_, id)| id.parse::<i64>().ok())
                .ok_or_else(|| super::invalid("cursor", "is not a cursor returned by this tool"))?,
        ),
        None => None,
    };
    let since = match &f.since {
        Some(s) => Some(rfc3339(parse_rfc3339(s).ok_or_else(|| {
            super::invalid("since", format!("is not an RFC 3339 time: {s:?}"))
        })?)),
        None => None,
    };
    let (entries, next) = app
        .store
        .run(move |c| {
            let filter = audit::AuditFilter {
                user_id: f.user_id.as_deref(),
                tool: f.tool.as_deref(),
                since: since.as_deref(),
                via: f.via,
            };
            audit::list(c, &filter, before, page.limit)
        })
        .await?;
    let next = next.and_then(|id| {
        entries
            .iter()
            .find(|e| e.id == id)
            .map(|e| encode_cursor(&e.at, &id.to_string()))
    });
    Ok((entries, next))
}
