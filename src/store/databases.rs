//! External databases and their credentials. Passwords are stored sealed; this module never sees
//! clear text, and listings never include a password.

use super::sql::Row;
use crate::params;
use schemars::JsonSchema;
use serde::Serialize;

use super::users::search_term;
use super::{Conn, Page, Paged};
use crate::error::{Error, Result};
use crate::util::now_rfc3339;

/// A registered database.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Database {
    pub id: String,
    pub host: Option<String>,
    pub port: Option<i64>,
    /// PostgreSQL: the database name; SQLite: the file path.
    pub database_name: String,
    /// `postgresql` or `sqlite`.
    pub dialect: String,
    pub description: Option<String>,
    pub enabled: bool,
    /// Directory of its versioned migration files (`V<n>__<name>.sql`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migrations_dir: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

const COLUMNS: &str = "id, host, port, database_name, dialect, description, enabled, created_at, updated_at, migrations_dir";

fn from_row(r: &Row<'_>) -> Result<Database> {
    Ok(Database {
        id: r.get(0)?,
        host: r.get(1)?,
        port: r.get(2)?,
        database_name: r.get(3)?,
        dialect: r.get(4)?,
        description: r.get(5)?,
        enabled: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
        migrations_dir: r.get(9)?,
    })
}

/// One database.
pub fn get(conn: &Conn<'_>, id: &str) -> Result<Option<Database>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM databases WHERE id = ?1"))?
        .query_opt([id], from_row)
}

/// Databases newest first; `search` matches id, host, name or description literally.
pub fn list(
    conn: &Conn<'_>,
    search: Option<&str>,
    only: Option<&[String]>,
    page: &Page,
) -> Result<Paged<Database>> {
    let (ac, ai) = page.after.clone().unzip();
    let only = only.map(|ids| serde_json::to_string(ids).expect("json"));
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM databases
             WHERE (CAST(?1 AS TEXT) IS NULL OR instr(lower(id), ?1) > 0 OR instr(lower(host), ?1) > 0
                    OR instr(lower(database_name), ?1) > 0 OR instr(lower(description), ?1) > 0)
               AND (CAST(?2 AS TEXT) IS NULL OR (created_at, id) < (?2, ?3))
               AND (CAST(?5 AS TEXT) IS NULL OR id IN (SELECT value FROM json_each(?5)))
             ORDER BY created_at DESC, id DESC LIMIT ?4"
        ))?
        .query_map(
            params![
                search.map(search_term),
                ac,
                ai,
                (page.limit + 1) as i64,
                only
            ],
            from_row,
        )?;
    Ok(Paged::from_overfetch(rows, page.limit, |d| {
        (d.created_at.clone(), d.id.clone())
    }))
}

/// Every registered database, by id.
pub fn all(conn: &Conn<'_>) -> Result<Vec<Database>> {
    let rows = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM databases ORDER BY id"))?
        .query_map([], from_row)?;
    Ok(rows)
}

/// The database a credential belongs to.
pub fn credential_database(conn: &Conn<'_>, credential_id: &str) -> Result<Option<String>> {
    conn.query_opt(
        "SELECT database_id FROM database_credentials WHERE id = ?1",
        [credential_id],
        |r| r.get(0),
    )
}

/// Enabled sqlite databases (for attaching to the trexdb engine).
pub fn enabled_sqlite(conn: &Conn<'_>) -> Result<Vec<Database>> {
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM databases WHERE dialect = 'sqlite' AND enabled = 1 ORDER BY id"
        ))?
        .query_map([], from_row)?;
    Ok(rows)
}

/// Inserts a database; a taken id is a conflict.
pub fn insert(conn: &Conn<'_>, d: &Database) -> Result<Database> {
    let now = now_rfc3339();
    let res = conn.execute(
        "INSERT INTO databases (id, host, port, database_name, dialect, description, enabled, created_at, updated_at, migrations_dir)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9)",
        params![d.id, d.host, d.port, d.database_name, d.dialect, d.description, d.enabled, now, d.migrations_dir],
    );
    match res {
        Err(e) if super::sql::is_unique_violation(&e) => Err(Error::Conflict(format!(
            "Database '{}' already exists",
            d.id
        ))),
        Err(e) => Err(e),
        Ok(_) => {
            get(conn, &d.id)?.ok_or_else(|| Error::Other("database vanished after insert".into()))
        }
    }
}

/// Replaces the editable fields of a database.
pub fn update(conn: &Conn<'_>, d: &Database) -> Result<Option<Database>> {
    conn.execute(
        "UPDATE databases SET host = ?2, port = ?3, database_name = ?4, dialect = ?5, description = ?6,
                enabled = ?7, updated_at = ?8, migrations_dir = ?9 WHERE id = ?1",
        params![d.id, d.host, d.port, d.database_name, d.dialect, d.description, d.enabled, now_rfc3339(), d.migrations_dir],
    )?;
    get(conn, &d.id)
}

/// Deletes a database (its credentials go with it); true when it existed.
pub fn delete(conn: &Conn<'_>, id: &str) -> Result<bool> {
    Ok(conn.execute("DELETE FROM databases WHERE id = ?1", [id])? == 1)
}

/// A credential as listed: never the password.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Credential {
    pub id: String,
    pub database_id: String,
    pub username: String,
    pub user_scope: Option<String>,
    pub service_scope: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// Saves (upserts on database + username) a credential with a sealed password; returns it and
/// whether it was created.
pub fn save_credential(
    conn: &Conn<'_>,
    database_id: &str,
    username: &str,
    sealed_password: &str,
    user_scope: Option<&str>,
    service_scope: Option<&str>,
) -> Result<(Credential, bool)> {
    let now = now_rfc3339();
    let existing: Option<String> = conn.query_opt(
        "SELECT id FROM database_credentials WHERE database_id = ?1 AND username = ?2",
        params![database_id, username],
        |r| r.get(0),
    )?;
    let id = existing
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    conn.execute(
        "INSERT INTO database_credentials (id, database_id, username, password, user_scope, service_scope, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
         ON CONFLICT (database_id, username) DO UPDATE SET password = excluded.password,
            user_scope = excluded.user_scope, service_scope = excluded.service_scope, updated_at = excluded.updated_at",
        params![id, database_id, username, sealed_password, user_scope, service_scope, now],
    )?;
    let c = credentials(conn, database_id)?
        .into_iter()
        .find(|c| c.id == id)
        .ok_or_else(|| Error::Other("credential vanished after save".into()))?;
    Ok((c, existing.is_none()))
}

/// Credentials of a database, oldest first.
pub fn credentials(conn: &Conn<'_>, database_id: &str) -> Result<Vec<Credential>> {
    let rows = conn
        .prepare_cached(
            "SELECT id, database_id, username, user_scope, service_scope, created_at, updated_at
             FROM database_credentials WHERE database_id = ?1 ORDER BY created_at, id",
        )?
        .query_map([database_id], |r| {
            Ok(Credential {
                id: r.get(0)?,
                database_id: r.get(1)?,
                username: r.get(2)?,
                user_scope: r.get(3)?,
                service_scope: r.get(4)?,
                created_at: r.get(5)?,
                updated_at: r.get(6)?,
            })
        })?;
    Ok(rows)
}

/// The first credential of a database with its sealed password: `(id, username, sealed)`.
pub fn first_secret(
    conn: &Conn<'_>,
    database_id: &str,
) -> Result<Option<(String, String, String)>> {
    conn.prepare_cached(
        "SELECT id, username, password FROM database_credentials WHERE database_id = ?1
             ORDER BY created_at, id LIMIT 1",
    )?
    .query_opt([database_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
}

/// Deletes every credential of a database; returns how many.
pub fn delete_credentials(conn: &Conn<'_>, database_id: &str) -> Result<usize> {
    conn.execute(
        "DELETE FROM database_credentials WHERE database_id = ?1",
        [database_id],
    )
}

/// Deletes a credential; true when it existed.
pub fn delete_credential(conn: &Conn<'_>, id: &str) -> Result<bool> {
    Ok(conn.execute("DELETE FROM database_credentials WHERE id = ?1", [id])? == 1)
}

/// One credential of a database with its sealed password: `(id, username, sealed)`.
pub fn secret(
    conn: &Conn<'_>,
    database_id: &str,
    credential_id: &str,
) -> Result<Option<(String, String, String)>> {
    conn
        .prepare_cached(
            "SELECT id, username, password FROM database_credentials WHERE database_id = ?1 AND id = ?2",
        )?
        .query_opt([database_id, credential_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
}
