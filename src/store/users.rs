//! Users: rows of `users`, with keyset paging and the email uniqueness rule.

use super::sql::Row;
use crate::params;
use schemars::JsonSchema;
use serde::Serialize;

use super::{Conn, Page, Paged};
use crate::error::{Error, Result};
use crate::util::{now_rfc3339, parse_rfc3339};

/// A user as tools and the CLI show it (never the password hash).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub name: String,
    pub email: String,
    /// `admin` or `user`.
    pub role: String,
    pub banned: bool,
    pub ban_reason: Option<String>,
    pub ban_expires: Option<String>,
    pub email_verified: bool,
    pub must_change_password: bool,
    pub deleted_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl User {
    /// True when a ban is in force now (a ban whose `banExpires` has passed no longer counts).
    pub fn is_banned_now(&self) -> bool {
        ban_in_force(self.banned, self.ban_expires.as_deref())
    }
}

/// True when `banned` is set and `ban_expires` is absent or still in the future.
pub fn ban_in_force(banned: bool, ban_expires: Option<&str>) -> bool {
    banned
        && match ban_expires.and_then(parse_rfc3339) {
            Some(until) => until > chrono::Utc::now(),
            None => true,
        }
}

const COLUMNS: &str = "id, name, email, role, banned, ban_reason, ban_expires, email_verified, \
                       must_change_password, deleted_at, created_at, updated_at";

fn from_row(r: &Row<'_>) -> Result<User> {
    Ok(User {
        id: r.get(0)?,
        name: r.get(1)?,
        email: r.get(2)?,
        role: r.get(3)?,
        banned: r.get(4)?,
        ban_reason: r.get(5)?,
        ban_expires: r.get(6)?,
        email_verified: r.get(7)?,
        must_change_password: r.get(8)?,
        deleted_at: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
    })
}

/// What a new user is made of.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub name: String,
    pub email: String,
    pub role: String,
    /// argon2id PHC string, or `None` for an SSO-only user.
    pub password_hash: Option<String>,
}

/// Inserts a user; a taken email is a [`Error::Conflict`].
pub fn insert(conn: &Conn<'_>, new: &NewUser) -> Result<User> {
    let id = uuid::Uuid::new_v4().to_string();
    let now = now_rfc3339();
    let verified = new.password_hash.is_some();
    let res = conn.execute(
        "INSERT INTO users (id, name, email, role, email_verified, password_hash, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        params![id, new.name, new.email, new.role, verified, new.password_hash, now],
    );
    match res {
        Ok(_) => {}
        Err(e) if super::sql::is_unique_violation(&e) => {
            return Err(Error::Conflict(format!(
                "A user with email '{}' already exists",
                new.email
            )));
        }
        Err(e) => return Err(e),
    }
    get(conn, &id)?.ok_or_else(|| Error::Other("user vanished after insert".into()))
}

/// One user by id.
pub fn get(conn: &Conn<'_>, id: &str) -> Result<Option<User>> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = ?1");
    conn.prepare_cached(&sql)?.query_opt([id], from_row)
}

/// One user with their roles (by name), by id or — `by_email` — by email, in one statement (a
/// point read with its join: one step of SQLite per role, one set of locks).
pub fn get_with_roles(
    conn: &Conn<'_>,
    key: &str,
    by_email: bool,
) -> Result<Option<(User, Vec<super::roles::Role>)>> {
    const BY_ID: &str = "SELECT u.id, u.name, u.email, u.role, u.banned, u.ban_reason, u.ban_expires, \
         u.email_verified, u.must_change_password, u.deleted_at, u.created_at, u.updated_at, \
         r.id, r.name, r.description, r.created_at, r.updated_at \
         FROM users u LEFT JOIN user_roles ur ON ur.user_id = u.id LEFT JOIN roles r ON r.id = ur.role_id \
         WHERE u.id = ?1";
    const BY_EMAIL: &str = "SELECT u.id, u.name, u.email, u.role, u.banned, u.ban_reason, u.ban_expires, \
         u.email_verified, u.must_change_password, u.deleted_at, u.created_at, u.updated_at, \
         r.id, r.name, r.description, r.created_at, r.updated_at \
         FROM users u LEFT JOIN user_roles ur ON ur.user_id = u.id LEFT JOIN roles r ON r.id = ur.role_id \
         WHERE u.email = ?1";
    let mut out: Option<(User, Vec<super::roles::Role>)> = None;
    conn.query_map(if by_email { BY_EMAIL } else { BY_ID }, [key], |r| {
        let entry = match &mut out {
            Some(e) => e,
            None => out.insert((from_row(r)?, Vec::new())),
        };
        if r.get::<_, Option<String>>(12)?.is_some() {
            entry.1.push(super::roles::from_row_at(r, 12)?);
        }
        Ok(())
    })?;
    // in name order, as `roles.name`'s NOCASE collation sorts (here rather than by an ORDER BY:
    // SQLite's sorter was a fifth of the query)
    if let Some((_, roles)) = &mut out {
        roles.sort_unstable_by(|a, b| {
            a.name
                .bytes()
                .map(|c| c.to_ascii_lowercase())
                .cmp(b.name.bytes().map(|c| c.to_ascii_lowercase()))
        });
    }
    Ok(out)
}

/// One user by email (case-insensitive).
pub fn get_by_email(conn: &Conn<'_>, email: &str) -> Result<Option<User>> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE email = ?1");
    conn.prepare_cached(&sql)?.query_opt([email], from_row)
}

/// Number of users, deleted ones included.
pub fn count(conn: &Conn<'_>) -> Result<i64> {
    conn.query_row("SELECT count(*) FROM users", [], |r| r.get(0))
}

/// A search term as the list queries compare it: `instr(lower(column), term) > 0`, a literal
/// substring match that ignores ASCII case, as LIKE does, with nothing to escape.
pub fn search_term(term: &str) -> String {
    term.to_ascii_lowercase()
}

/// Users newest first; `search` matches name or email literally (case-insensitive).
pub fn list(
    conn: &Conn<'_>,
    include_deleted: bool,
    search: Option<&str>,
    page: &Page,
) -> Result<Paged<User>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM users
         WHERE (?1 OR deleted_at IS NULL)
           AND (CAST(?2 AS TEXT) IS NULL OR instr(lower(name), ?2) > 0 OR instr(lower(email), ?2) > 0)
           AND (CAST(?3 AS TEXT) IS NULL OR (created_at, id) < (?3, ?4))
         ORDER BY created_at DESC, id DESC LIMIT ?5"
    );
    let pattern = search.map(search_term);
    let (ac, ai) = page.after.clone().unzip();
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![include_deleted, pattern, ac, ai, (page.limit + 1) as i64],
        from_row,
    )?;
    Ok(Paged::from_overfetch(rows, page.limit, |u| {
        (u.created_at.clone(), u.id.clone())
    }))
}

/// The password hash of a user, if any.
pub fn password_hash(conn: &Conn<'_>, id: &str) -> Result<Option<String>> {
    Ok(conn
        .query_opt("SELECT password_hash FROM users WHERE id = ?1", [id], |r| {
            r.get(0)
        })?
        .flatten())
}

/// Sets a user's role (`admin` or `user`); `None` when the user does not exist.
pub fn set_role(conn: &Conn<'_>, id: &str, role: &str) -> Result<Option<User>> {
    conn.execute(
        "UPDATE users SET role = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, role, now_rfc3339()],
    )?;
    get(conn, id)
}

/// Bans or unbans a user. Unbanning clears reason and expiry.
pub fn set_ban(
    conn: &Conn<'_>,
    id: &str,
    banned: bool,
    reason: Option<&str>,
    expires: Option<&str>,
) -> Result<Option<User>> {
    let (reason, expires) = if banned {
        (reason, expires)
    } else {
        (None, None)
    };
    conn.execute(
        "UPDATE users SET banned = ?2, ban_reason = ?3, ban_expires = ?4, updated_at = ?5 WHERE id = ?1",
        params![id, banned, reason, expires, now_rfc3339()],
    )?;
    get(conn, id)
}

/// Admins who can act now (not deleted, not under a ban in force), other than `except`.
pub fn active_admins_except(conn: &Conn<'_>, except: &str) -> Result<usize> {
    let mut stmt = conn.prepare_cached(
        "SELECT banned, ban_expires FROM users WHERE role = 'admin' AND deleted_at IS NULL AND id <> ?1",
    )?;
    let rows = stmt.query_map([except], |r| {
        Ok((r.get::<_, bool>(0)?, r.get::<_, Option<String>>(1)?))
    })?;
    Ok(rows
        .iter()
        .filter(|(b, e)| !ban_in_force(*b, e.as_deref()))
        .count())
}

/// Soft-deletes (`deleted = true`) or restores a user.
pub fn set_deleted(conn: &Conn<'_>, id: &str, deleted: bool) -> Result<Option<User>> {
    let now = now_rfc3339();
    conn.execute(
        "UPDATE users SET deleted_at = CASE WHEN ?2 THEN ?3 ELSE NULL END, updated_at = ?3 WHERE id = ?1",
        params![id, deleted, now],
    )?;
    get(conn, id)
}

/// Replaces a user's password hash; false when the user does not exist.
pub fn set_password_hash(conn: &Conn<'_>, id: &str, hash: &str) -> Result<bool> {
    Ok(conn.execute(
        "UPDATE users SET password_hash = ?2, must_change_password = 0, updated_at = ?3 WHERE id = ?1",
        params![id, hash, now_rfc3339()],
    )? == 1)
}
