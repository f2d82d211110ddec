//! OAuth/OIDC client applications. The client secret column holds a sealed value.

use super::sql::Row;
use crate::params;
use schemars::JsonSchema;
use serde::Serialize;

use super::{Conn, Page, Paged};
use crate::error::{Error, Result};
use crate::util::now_rfc3339;

/// An application as tools show it (never the client secret).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct OauthApp {
    pub id: String,
    pub name: String,
    pub icon: Option<String>,
    /// JSON object or value supplied at create/update.
    pub metadata: Option<serde_json::Value>,
    #[serde(rename = "clientId")]
    pub client_id: String,
    #[serde(rename = "redirectURLs")]
    pub redirect_urls: Vec<String>,
    /// `web` or `native`.
    #[serde(rename = "type")]
    pub kind: String,
    pub disabled: bool,
    #[serde(rename = "userId")]
    pub user_id: Option<String>,
    #[serde(rename = "createdAt")]
    pub created_at: String,
    #[serde(rename = "updatedAt")]
    pub updated_at: String,
}

fn from_row(r: &Row<'_>) -> Result<OauthApp> {
    let meta: Option<String> = r.get(3)?;
    let urls: String = r.get(5)?;
    Ok(OauthApp {
        id: r.get(0)?,
        name: r.get(1)?,
        icon: r.get(2)?,
        metadata: meta.and_then(|m| serde_json::from_str(&m).ok()),
        client_id: r.get(4)?,
        redirect_urls: serde_json::from_str(&urls).unwrap_or_default(),
        kind: r.get(6)?,
        disabled: r.get(7)?,
        user_id: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
    })
}

const COLUMNS: &str = "id, name, icon, metadata, client_id, redirect_urls, type, disabled, user_id, created_at, updated_at";

/// One application.
pub fn get(conn: &Conn<'_>, id: &str) -> Result<Option<OauthApp>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM oauth_apps WHERE id = ?1"))?
        .query_opt([id], from_row)
}

/// Applications, newest first.
pub fn list(conn: &Conn<'_>, page: &Page) -> Result<Paged<OauthApp>> {
    let (ac, ai) = page.after.clone().unzip();
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM oauth_apps WHERE (CAST(?1 AS TEXT) IS NULL OR (created_at, id) < (?1, ?2))
             ORDER BY created_at DESC, id DESC LIMIT ?3"
        ))?
        .query_map(params![ac, ai, (page.limit + 1) as i64], from_row)?;
    Ok(Paged::from_overfetch(rows, page.limit, |a| {
        (a.created_at.clone(), a.id.clone())
    }))
}

/// What a new application is made of (secret already sealed).
pub struct NewApp<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub icon: Option<&'a str>,
    pub metadata: Option<&'a str>,
    pub client_id: &'a str,
    pub sealed_secret: &'a str,
    pub redirect_urls: &'a [String],
    pub kind: &'a str,
    pub user_id: Option<&'a str>,
}

/// Creates an application.
pub fn insert(conn: &Conn<'_>, a: &NewApp<'_>) -> Result<OauthApp> {
    let now = now_rfc3339();
    conn.execute(
        "INSERT INTO oauth_apps (id, name, icon, metadata, client_id, client_secret, redirect_urls, type,
                                 disabled, user_id, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9, ?10, ?10)",
        params![
            a.id,
            a.name,
            a.icon,
            a.metadata,
            a.client_id,
            a.sealed_secret,
            serde_json::to_string(a.redirect_urls).expect("json"),
            a.kind,
            a.user_id,
            now
        ],
    )?;
    get(conn, a.id)?.ok_or_else(|| Error::Other("app vanished after insert".into()))
}

/// Fields an update may change (`None` = keep).
#[derive(Default)]
pub struct AppChanges<'a> {
    pub name: Option<&'a str>,
    pub icon: Option<&'a str>,
    pub metadata: Option<&'a str>,
    pub redirect_urls: Option<&'a [String]>,
    pub kind: Option<&'a str>,
    pub disabled: Option<bool>,
}

/// Updates an application; `None` when it does not exist.
pub fn update(conn: &Conn<'_>, id: &str, c: &AppChanges<'_>) -> Result<Option<OauthApp>> {
    let urls = c
        .redirect_urls
        .map(|u| serde_json::to_string(u).expect("json"));
    conn.execute(
        "UPDATE oauth_apps SET name = COALESCE(?2, name), icon = COALESCE(?3, icon),
                metadata = COALESCE(?4, metadata), redirect_urls = COALESCE(?5, redirect_urls),
                type = COALESCE(?6, type), disabled = COALESCE(?7, disabled), updated_at = ?8
         WHERE id = ?1",
        params![
            id,
            c.name,
            c.icon,
            c.metadata,
            urls,
            c.kind,
            c.disabled,
            now_rfc3339()
        ],
    )?;
    get(conn, id)
}

/// Deletes an application with its tokens and consents (FK cascade); returns it as it was and
/// how many tokens and consents went with it.
pub fn delete(conn: &Conn<'_>, id: &str) -> Result<Option<(OauthApp, i64, i64)>> {
    let Some(app) = get(conn, id)? else {
        return Ok(None);
    };
    let tokens: i64 = conn.query_row(
        "SELECT count(*) FROM oauth_tokens WHERE app_id = ?1",
        [id],
        |r| r.get(0),
    )?;
    let consents: i64 = conn.query_row(
        "SELECT count(*) FROM oauth_consents WHERE app_id = ?1",
        [id],
        |r| r.get(0),
    )?;
    conn.execute("DELETE FROM oauth_apps WHERE id = ?1", [id])?;
    Ok(Some((app, tokens, consents)))
}
