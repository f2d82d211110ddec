//! SSO providers. The client secret column holds a sealed value (see `auth::secrets`); this
//! module never sees clear text.

use super::sql::Row;
use crate::params;
use schemars::JsonSchema;
use serde::Serialize;

use super::{Conn, Page, Paged};
use crate::error::Result;
use crate::util::now_rfc3339;

/// A provider as tools show it: whether a secret is set, never the secret.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SsoProvider {
    pub id: String,
    pub display_name: String,
    pub client_id: String,
    /// OpenID Connect issuer URL (discovery); `None` for GitHub, or not set yet.
    pub issuer: Option<String>,
    pub enabled: bool,
    pub has_client_secret: bool,
    pub created_at: String,
    pub updated_at: String,
}

fn from_row(r: &Row<'_>) -> Result<SsoProvider> {
    Ok(SsoProvider {
        id: r.get(0)?,
        display_name: r.get(1)?,
        client_id: r.get(2)?,
        enabled: r.get(3)?,
        has_client_secret: !r.get::<_, String>(4)?.is_empty(),
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
        issuer: r.get(7)?,
    })
}

const COLUMNS: &str =
    "id, display_name, client_id, enabled, client_secret, created_at, updated_at, issuer";

/// One provider.
pub fn get(conn: &Conn<'_>, id: &str) -> Result<Option<SsoProvider>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM sso_providers WHERE id = ?1"
    ))?
    .query_opt([id], from_row)
}

/// Every provider.
pub fn all(conn: &Conn<'_>) -> Result<Vec<SsoProvider>> {
    let rows = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM sso_providers ORDER BY id"))?
        .query_map([], from_row)?;
    Ok(rows)
}

/// Providers, newest first.
pub fn list(conn: &Conn<'_>, page: &Page) -> Result<Paged<SsoProvider>> {
    let (ac, ai) = page.after.clone().unzip();
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM sso_providers WHERE (CAST(?1 AS TEXT) IS NULL OR (created_at, id) < (?1, ?2))
             ORDER BY created_at DESC, id DESC LIMIT ?3"
        ))?
        .query_map(params![ac, ai, (page.limit + 1) as i64], from_row)?;
    Ok(Paged::from_overfetch(rows, page.limit, |p| {
        (p.created_at.clone(), p.id.clone())
    }))
}

/// What [`save`] writes; `None` members keep the stored value (a new row: no secret, no
/// issuer, disabled). `issuer: Some("")` clears the issuer.
pub struct Save<'a> {
    pub id: &'a str,
    pub display_name: &'a str,
    pub client_id: &'a str,
    pub sealed_secret: Option<&'a str>,
    pub issuer: Option<&'a str>,
    pub enabled: Option<bool>,
}

/// Creates or updates a provider, then `check`s what the row became (inside the caller's
/// transaction of `Store::write`: its error rolls the save back). Returns the provider and
/// whether it was created.
pub fn save(
    conn: &Conn<'_>,
    p: &Save<'_>,
    check: impl FnOnce(&SsoProvider) -> Result<()>,
) -> Result<(SsoProvider, bool)> {
    let Save {
        id,
        display_name,
        client_id,
        sealed_secret,
        issuer,
        enabled,
    } = *p;
    let now = now_rfc3339();
    let existed = get(conn, id)?.is_some();
    conn.execute(
        "INSERT INTO sso_providers (id, display_name, client_id, client_secret, enabled, created_at, updated_at, issuer)
         VALUES (?1, ?2, ?3, COALESCE(?4, ''), COALESCE(?5, 0), ?6, ?6, NULLIF(?7, ''))
         ON CONFLICT (id) DO UPDATE SET
            display_name = excluded.display_name,
            client_id = excluded.client_id,
            client_secret = COALESCE(?4, sso_providers.client_secret),
            enabled = COALESCE(?5, sso_providers.enabled),
            issuer = CASE WHEN CAST(?7 AS TEXT) IS NULL THEN sso_providers.issuer ELSE NULLIF(?7, '') END,
            updated_at = excluded.updated_at",
        params![id, display_name, client_id, sealed_secret, enabled, now, issuer],
    )?;
    let p = get(conn, id)?.expect("just saved");
    check(&p)?;
    Ok((p, !existed))
}

/// Deletes a provider; true when it existed.
pub fn delete(conn: &Conn<'_>, id: &str) -> Result<bool> {
    Ok(conn.execute("DELETE FROM sso_providers WHERE id = ?1", [id])? == 1)
}

/// The sealed secret of a provider (for the SSO flow; never returned by a tool).
pub fn sealed_secret(conn: &Conn<'_>, id: &str) -> Result<Option<String>> {
    conn.prepare_cached("SELECT client_secret FROM sso_providers WHERE id = ?1")?
        .query_opt([id], |r| r.get(0))
}

/// Number of sealed values held by the store (SSO and app secrets).
pub fn count_sealed(conn: &Conn<'_>) -> Result<i64> {
    conn.query_row(
        "SELECT (SELECT count(*) FROM sso_providers WHERE client_secret <> '')
              + (SELECT count(*) FROM oauth_apps WHERE client_secret <> '')
              + (SELECT count(*) FROM database_credentials)",
        [],
        |r| r.get(0),
    )
}

/// Gives up every sealed secret (the master key that sealed them is lost): SSO providers lose
/// their client secret and are disabled, OAuth apps lose theirs and are disabled, database
/// credentials are deleted. Returns how many of each.
pub fn drop_sealed(conn: &Conn<'_>) -> Result<(usize, usize, usize)> {
    let sso = conn.execute(
        "UPDATE sso_providers SET client_secret = '', enabled = 0 WHERE client_secret <> ''",
        [],
    )?;
    let apps = conn.execute(
        "UPDATE oauth_apps SET client_secret = '', disabled = 1 WHERE client_secret <> ''",
        [],
    )?;
    let creds = conn.execute("DELETE FROM database_credentials", [])?;
    Ok((sso, apps, creds))
}
