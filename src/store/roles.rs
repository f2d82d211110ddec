//! Application roles and their assignment to users.

use super::sql::Row;
use crate::params;
use schemars::JsonSchema;
use serde::Serialize;

use super::users::search_term;
use super::{Conn, Page, Paged};
use crate::error::{Error, Result};
use crate::util::now_rfc3339;

/// A role.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

fn from_row(r: &Row<'_>) -> Result<Role> {
    from_row_at(r, 0)
}

/// A role from the five columns of a row that start at `at` (`id, name, description,
/// created_at, updated_at`).
pub(super) fn from_row_at(r: &Row<'_>, at: usize) -> Result<Role> {
    Ok(Role {
        id: r.get(at)?,
        name: r.get(at + 1)?,
        description: r.get(at + 2)?,
        created_at: r.get(at + 3)?,
        updated_at: r.get(at + 4)?,
    })
}

const COLUMNS: &str = "id, name, description, created_at, updated_at";

fn conflict(e: Error, name: &str) -> Error {
    if super::sql::is_unique_violation(&e) {
        Error::Conflict(format!("A role named '{name}' already exists"))
    } else {
        e
    }
}

/// One role by id.
pub fn get(conn: &Conn<'_>, id: &str) -> Result<Option<Role>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM roles WHERE id = ?1"))?
        .query_opt([id], from_row)
}

/// Roles newest first; `search` matches name or description literally.
pub fn list(conn: &Conn<'_>, search: Option<&str>, page: &Page) -> Result<Paged<Role>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM roles
         WHERE (CAST(?1 AS TEXT) IS NULL OR instr(lower(name), ?1) > 0 OR instr(lower(description), ?1) > 0)
           AND (CAST(?2 AS TEXT) IS NULL OR (created_at, id) < (?2, ?3))
         ORDER BY created_at DESC, id DESC LIMIT ?4"
    );
    let (ac, ai) = page.after.clone().unzip();
    let rows = conn.prepare_cached(&sql)?.query_map(
        params![search.map(search_term), ac, ai, (page.limit + 1) as i64],
        from_row,
    )?;
    Ok(Paged::from_overfetch(rows, page.limit, |r| {
        (r.created_at.clone(), r.id.clone())
    }))
}

/// Creates a role; a taken name is a conflict.
pub fn insert(conn: &Conn<'_>, name: &str, description: Option<&str>) -> Result<Role> {
    let id = uuid::Uuid::new_v4().to_string();
    let now = now_rfc3339();
    conn.execute(
        "INSERT INTO roles (id, name, description, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
        params![id, name, description, now],
    )
    .map_err(|e| conflict(e, name))?;
    get(conn, &id)?.ok_or_else(|| Error::Other("role vanished after insert".into()))
}

/// Changes name and/or description; `None` when the role does not exist.
pub fn update(
    conn: &Conn<'_>,
    id: &str,
    name: Option<&str>,
    description: Option<&str>,
) -> Result<Option<Role>> {
    conn.execute(
        "UPDATE roles SET name = COALESCE(?2, name), description = COALESCE(?3, description), updated_at = ?4
         WHERE id = ?1",
        params![id, name, description, now_rfc3339()],
    )
    .map_err(|e| conflict(e, name.unwrap_or("")))?;
    get(conn, id)
}

/// Deletes a role (its assignments go with it); returns it as it was.
pub fn delete(conn: &Conn<'_>, id: &str) -> Result<Option<Role>> {
    let role = get(conn, id)?;
    if role.is_some() {
        conn.execute("DELETE FROM roles WHERE id = ?1", [id])?;
    }
    Ok(role)
}

/// Assigns a role; false when the user already had it.
pub fn assign(conn: &Conn<'_>, user_id: &str, role_id: &str) -> Result<bool> {
    Ok(conn.execute(
        "INSERT INTO user_roles (user_id, role_id, created_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        params![user_id, role_id, now_rfc3339()],
    )? == 1)
}

/// Removes an assignment; false when there was none.
pub fn unassign(conn: &Conn<'_>, user_id: &str, role_id: &str) -> Result<bool> {
    Ok(conn.execute(
        "DELETE FROM user_roles WHERE user_id = ?1 AND role_id = ?2",
        params![user_id, role_id],
    )? == 1)
}

/// The roles of a user, by name.
pub fn of_user(conn: &Conn<'_>, user_id: &str) -> Result<Vec<Role>> {
    let rows = conn
        .prepare_cached(
            "SELECT r.id, r.name, r.description, r.created_at, r.updated_at
             FROM roles r JOIN user_roles ur ON ur.role_id = r.id WHERE ur.user_id = ?1 ORDER BY r.name",
        )?
        .query_map([user_id], from_row)?;
    Ok(rows)
}
