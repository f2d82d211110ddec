//! The domain layer: every administrative rule, once, for every front door. One file per area
//! ([`users`], [`roles`], [`keys`], [`sessions`], [`sso`], [`apps`], [`databases`], [`audit`],
//! [`secrets`] for the master key, [`web`] for sign-in). Each operation is an async function that takes the [`App`], the caller
//! ([`Actor`]: user, key or web session, scopes, front door) and typed input, and does
//! everything the operation implies: validation with the field named, the rule checks, the
//! store writes in one transaction ([`Store::write`](crate::store::Store::write)), the audit
//! row ([`audited`]), cache invalidation and ending sessions. MCP tools, the CLI and the web
//! routes only translate arguments and results, so the same bad input gets the same error
//! through each of them.

/// A boxed, sendable future (operations handed to a task of their own).
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

pub mod apps;
pub mod audit;
pub mod backups;
pub mod cluster;
pub mod databases;
pub mod definitions;
pub mod keys;
pub mod migrations;
pub mod pipelines;
pub mod plugins;
pub mod roles;
pub mod runs;
pub mod secrets;
pub mod services;
pub mod sessions;
pub mod sso;
pub mod sso_login;
pub mod store_migrate;
pub mod users;
pub mod web;

use std::future::Future;

use serde_json::Value;

use crate::app::App;
pub use crate::audit::Actor;
use crate::config::AuditConfig;
use crate::error::{Error, Result};
use crate::store::{Page, Paged, Store};
use crate::util::{decode_cursor, encode_cursor, parse_rfc3339, rfc3339};

/// Default page size of list operations.
pub const DEFAULT_LIMIT: u32 = 100;
/// Largest page size of list operations.
pub const MAX_LIMIT: u32 = 1000;

/// Queues a job of `kind` that acts for `actor` (who goes into the payload as `actor`): the
/// job does the work — and writes the call's audit row, with its outcome — when it runs, on
/// this process or, after a crash, the next. Returns the job's id.
pub async fn enqueue_as(
    app: &App,
    actor: &Actor,
    kind: &str,
    mut payload: Value,
) -> Result<String> {
    payload["actor"] = actor.to_json();
    let id = app
        .jobs
        .enqueue(kind, &payload, 2, actor.user_id.as_deref())
        .await?;
    actor.recorded_by_job();
    Ok(id)
}

/// Registers job kind `kind` (run again once after a crash) whose jobs act for the caller that
/// queued them ([`enqueue_as`]): `f(app, actor, job, payload)`; a failure is reported as
/// [`crate::jobs::reason`] words it.
pub fn register_as<F, Fut>(app: &std::sync::Arc<App>, kind: &'static str, f: F)
where
    F: Fn(std::sync::Arc<App>, Actor, crate::jobs::JobCtx, Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value>> + Send + 'static,
{
    let weak = std::sync::Arc::downgrade(app);
    app.jobs.register(kind, true, move |ctx, payload| {
        let work = weak.upgrade().map(|app| {
            let actor = Actor::from_json(&payload["actor"]);
            f(app, actor, ctx, payload)
        });
        async move {
            match work {
                Some(w) => w.await.map_err(|e| crate::jobs::reason(kind, &e)),
                None => Err("the server is stopping".into()),
            }
        }
    });
}

/// Bad input for `field`: "`field` why" (the MCP tools prefix "Invalid arguments: ").
pub fn invalid(field: &str, why: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("`{field}` {why}"))
}

/// Runs one operation of `actor` and writes its audit row (`action`, the arguments, `ok` or
/// `error` with the error's text), whatever the outcome. Every mutating operation of the
/// domain layer goes through here, so every front door's changes are audited alike.
pub async fn audited<T>(
    app: &App,
    actor: &Actor,
    action: &str,
    arguments: Value,
    op: impl Future<Output = Result<T>>,
) -> Result<T> {
    audited_in(&app.store, app.config.audit, actor, action, arguments, op).await
}

/// [`audited`] on a bare store, for the operations that run before an [`App`] can be opened
/// (`trex master-key reset`, when the old key is lost).
pub async fn audited_in<T>(
    store: &Store,
    retention: AuditConfig,
    actor: &Actor,
    action: &str,
    arguments: Value,
    op: impl Future<Output = Result<T>>,
) -> Result<T> {
    let r = op.await;
    let detail = r.as_ref().err().map(|e| {
        if e.is_internal() {
            "internal error".to_string()
        } else {
            e.to_string()
        }
    });
    let event = crate::audit::Event {
        action,
        arguments: &arguments,
        outcome: if r.is_ok() { "ok" } else { "error" },
        detail: detail.as_deref(),
    };
    crate::audit::record(store, retention, actor, event).await;
    r
}

/// [`audited`] for an operation that may succeed as a call yet fail at what it asked for (a
/// plugin function answering 5xx): `failed` names such a result's failure, and the row's
/// outcome is then `error` with that detail.
pub async fn audited_as<T>(
    app: &App,
    actor: &Actor,
    action: &str,
    arguments: Value,
    failed: impl Fn(&T) -> Option<String>,
    op: impl Future<Output = Result<T>>,
) -> Result<T> {
    let r = op.await;
    let detail = match &r {
        Err(e) if e.is_internal() => Some("internal error".to_string()),
        Err(e) => Some(e.to_string()),
        Ok(v) => failed(v),
    };
    let event = crate::audit::Event {
        action,
        arguments: &arguments,
        outcome: if detail.is_none() { "ok" } else { "error" },
        detail: detail.as_deref(),
    };
    crate::audit::record(&app.store, app.config.audit, actor, event).await;
    r
}

/// Checks the pagination input every list operation takes (`limit` 1–1000, default 100; an
/// opaque `cursor` from a previous page); messages name the field.
pub fn page(limit: Option<u32>, cursor: Option<&str>) -> Result<Page> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(invalid(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let after = match cursor {
        None => None,
        Some(c) => Some(
            decode_cursor(c)
                .ok_or_else(|| invalid("cursor", "is not a cursor returned by this tool"))?,
        ),
    };
    Ok(Page {
        limit: limit as usize,
        after,
    })
}

/// The opaque `nextCursor` of a store page (absent on the last page).
pub fn next_cursor<T>(p: &Paged<T>) -> Option<String> {
    p.next.as_ref().map(|(c, i)| encode_cursor(c, i))
}

/// Checks an optional text argument's length (`search`, ...).
pub fn at_most(field: &str, v: Option<&str>, max: usize) -> Result<()> {
    if v.is_some_and(|s| s.chars().count() > max) {
        return Err(invalid(field, format!("must be at most {max} characters")));
    }
    Ok(())
}

/// Email of the admin created on first start.
pub const FIRST_ADMIN_EMAIL: &str = "admin@trex.local";

/// A freshly minted key: shown once, never stored.
#[derive(Debug, Clone)]
pub struct MintedKey {
    pub id: String,
    pub key: String,
    pub expires_at: Option<String>,
}

/// Checks an email address well enough to catch typos; the message names the field.
pub fn validate_email(email: &str) -> Result<()> {
    validate_email_as("`email`", email)
}

/// [`validate_email`] with the field named as the caller knows it (`--admin-email` on the CLI).
pub fn validate_email_as(field: &str, email: &str) -> Result<()> {
    let ok = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty()
                && !d.is_empty()
                && !d.contains('@')
                && !d.starts_with('.')
                && !d.ends_with('.')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{field} is not a valid address: {email:?}"
        )))
    }
}

/// Checks a display name (`field` names it in the message).
pub fn validate_name(field: &str, name: &str) -> Result<()> {
    let t = name.trim();
    if t.is_empty() {
        return Err(Error::Invalid(format!("`{field}` must not be empty")));
    }
    if t.chars().count() > 200 {
        return Err(Error::Invalid(format!(
            "`{field}` must be at most 200 characters"
        )));
    }
    Ok(())
}

/// Parses an optional expiry; it must be RFC 3339 and in the future.
pub fn parse_expiry(expires: Option<&str>) -> Result<Option<String>> {
    parse_expiry_as("`expiresAt`", expires)
}

/// [`parse_expiry`] for a field named `field` (`--until` on the CLI), also accepting a date
/// (`2027-01-31`, meaning its start, UTC).
pub fn parse_expiry_as(field: &str, expires: Option<&str>) -> Result<Option<String>> {
    let Some(s) = expires else { return Ok(None) };
    let t = parse_rfc3339(s)
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| d.and_utc())
        })
        .ok_or_else(|| {
            Error::Invalid(format!(
                "{field} is neither a date (2027-01-31) nor an RFC 3339 time (2027-01-31T12:00:00Z): {s:?}"
            ))
        })?;
    if t <= chrono::Utc::now() {
        return Err(Error::Invalid(format!("{field} must be in the future")));
    }
    Ok(Some(rfc3339(t)))
}

/// A ready-to-paste Claude Desktop / Claude Code client configuration (seed 000's block).
pub fn client_config(url: &str, key: &str) -> String {
    let v = serde_json::json!({
        "mcpServers": {
            "trex": {
                "type": "http",
                "url": url,
                "headers": {"Authorization": format!("Bearer {key}")}
            }
        }
    });
    serde_json::to_string_pretty(&v).expect("json")
}
