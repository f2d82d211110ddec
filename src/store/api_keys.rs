//! API keys: only the SHA-256 hash and a 13-character prefix of a key are stored.

use super::sql::Row;
use crate::params;
use schemars::JsonSchema;
use serde::Serialize;

use super::{Conn, Page, Paged};
use crate::error::Result;
use crate::util::now_rfc3339;

/// An API key as tools and the CLI list it (never the key or its hash).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    /// The first 13 characters of the key, e.g. `trex_1a2b3c4d`.
    pub key_prefix: String,
    /// Limits of the key; absent = unrestricted.
    pub scopes: Option<crate::auth::scopes::Scopes>,
    pub user_id: String,
    pub user_name: String,
    pub user_email: String,
    pub last_used_at: Option<String>,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub created_at: String,
}

fn from_row(r: &Row<'_>) -> Result<ApiKey> {
    Ok(ApiKey {
        id: r.get(0)?,
        name: r.get(1)?,
        key_prefix: r.get(2)?,
        user_id: r.get(3)?,
        user_name: r.get(4)?,
        user_email: r.get(5)?,
        last_used_at: r.get(6)?,
        expires_at: r.get(7)?,
        revoked_at: r.get(8)?,
        created_at: r.get(9)?,
        scopes: r
            .get::<_, Option<String>>(10)?
            .and_then(|s| serde_json::from_str(&s).ok()),
    })
}

const SELECT: &str =
    "SELECT k.id, k.name, k.key_prefix, k.user_id, u.name, u.email, k.last_used_at,
                             k.expires_at, k.revoked_at, k.created_at, k.scopes
                      FROM api_keys k JOIN users u ON u.id = k.user_id";

/// Stores a new key by hash and prefix; returns its id.
pub fn insert(
    conn: &Conn<'_>,
    user_id: &str,
    name: &str,
    key_hash: &str,
    key_prefix: &str,
    expires_at: Option<&str>,
    scopes: Option<&str>,
) -> Result<String> {
    let id = uuid::Uuid::new_v4().to_string();
    conn.execute(
        "INSERT INTO api_keys (id, name, key_hash, key_prefix, user_id, expires_at, scopes, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![id, name, key_hash, key_prefix, user_id, expires_at, scopes, now_rfc3339()],
    )?;
    Ok(id)
}

/// One key by id.
pub fn get(conn: &Conn<'_>, id: &str) -> Result<Option<ApiKey>> {
    let sql = format!("{SELECT} WHERE k.id = ?1");
    conn.prepare_cached(&sql)?.query_opt([id], from_row)
}

/// Keys of every user, newest first.
pub fn list(conn: &Conn<'_>, user_id: Option<&str>, page: &Page) -> Result<Paged<ApiKey>> {
    let sql = format!(
        "{SELECT} WHERE (CAST(?1 AS TEXT) IS NULL OR k.user_id = ?1)
           AND (CAST(?2 AS TEXT) IS NULL OR (k.created_at, k.id) < (?2, ?3))
         ORDER BY k.created_at DESC, k.id DESC LIMIT ?4"
    );
    let (ac, ai) = page.after.clone().unzip();
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![user_id, ac, ai, (page.limit + 1) as i64], from_row)?;
    Ok(Paged::from_overfetch(rows, page.limit, |k| {
        (k.created_at.clone(), k.id.clone())
    }))
}

/// Ids of the keys not revoked whose display prefix is `prefix` (a prefix is not unique).
pub fn ids_by_prefix(conn: &Conn<'_>, prefix: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM api_keys WHERE key_prefix = ?1 AND revoked_at IS NULL ORDER BY created_at",
    )?;
    let rows = stmt.query_map([prefix], |r| r.get(0))?;
    Ok(rows)
}

/// Number of keys that can still be used (not revoked).
pub fn count_active(conn: &Conn<'_>) -> Result<i64> {
    conn.query_row(
        "SELECT count(*) FROM api_keys WHERE revoked_at IS NULL",
        [],
        |r| r.get(0),
    )
}

/// Marks a key revoked; returns it as it was, or `None` when unknown or already revoked.
pub fn revoke(conn: &Conn<'_>, id: &str) -> Result<Option<ApiKey>> {
    let Some(key) = get(conn, id)? else {
        return Ok(None);
    };
    let n = conn.execute(
        "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        params![id, now_rfc3339()],
    )?;
    Ok((n == 1).then_some(key))
}

/// What authentication needs to know about a key and its user.
#[derive(Debug, Clone)]
pub struct KeyOwner {
    pub key_id: String,
    pub key_name: String,
    pub user_id: String,
    pub user_name: String,
    pub user_email: String,
    pub role: String,
    pub banned: bool,
    pub ban_expires: Option<String>,
    pub deleted_at: Option<String>,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub scopes: Option<String>,
}

/// Looks a key up by hash (one indexed read; no write).
pub fn lookup(conn: &Conn<'_>, key_hash: &str) -> Result<Option<KeyOwner>> {
    let mut stmt = conn.prepare_cached(
        "SELECT k.id, k.name, u.id, u.name, u.email, u.role, u.banned, u.ban_expires, u.deleted_at,
                k.expires_at, k.revoked_at, k.scopes
         FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.key_hash = ?1",
    )?;
    stmt.query_opt([key_hash], |r| {
        Ok(KeyOwner {
            key_id: r.get(0)?,
            key_name: r.get(1)?,
            user_id: r.get(2)?,
            user_name: r.get(3)?,
            user_email: r.get(4)?,
            role: r.get(5)?,
            banned: r.get(6)?,
            ban_expires: r.get(7)?,
            deleted_at: r.get(8)?,
            expires_at: r.get(9)?,
            revoked_at: r.get(10)?,
            scopes: r.get(11)?,
        })
    })
}

/// Writes batched `last_used_at` values (callers run it in one [`Store::write`](super::Store::write)).
pub fn touch(conn: &Conn<'_>, used: &[(String, String)]) -> Result<()> {
    {
        let mut stmt = conn.prepare_cached(
            "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1
               AND (last_used_at IS NULL OR last_used_at < ?2)",
        )?;
        for (id, at) in used {
            stmt.execute(params![id, at])?;
        }
    }
    Ok(())
}
