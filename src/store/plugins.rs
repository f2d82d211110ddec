//! The `plugins` table (schema v9): which plugins are installed, from what, by whom, with their
//! checked manifest. The files live under `<data_dir>/plugins/<name>/`.

use crate::params;

use super::sql::Row;
use super::{Conn, Page, Paged};
use crate::error::{Error, Result};

/// One installed plugin.
#[derive(Debug, Clone)]
pub struct Plugin {
    pub name: String,
    pub package: String,
    pub version: String,
    /// The `trex` key of its package.json, as checked at install (JSON).
    pub manifest: String,
    pub source: String,
    pub sha256: Option<String>,
    pub installed_at: String,
    pub installed_by: Option<String>,
}

const COLUMNS: &str =
    "name, package, version, manifest, source, sha256, installed_at, installed_by";

fn from_row(r: &Row<'_>) -> Result<Plugin> {
    Ok(Plugin {
        name: r.get(0)?,
        package: r.get(1)?,
        version: r.get(2)?,
        manifest: r.get(3)?,
        source: r.get(4)?,
        sha256: r.get(5)?,
        installed_at: r.get(6)?,
        installed_by: r.get(7)?,
    })
}

/// Records an installed plugin; a name already installed is a conflict.
pub fn insert(conn: &Conn<'_>, p: &Plugin) -> Result<()> {
    conn.execute(
        &format!("INSERT INTO plugins ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
        params![
            p.name,
            p.package,
            p.version,
            p.manifest,
            p.source,
            p.sha256,
            p.installed_at,
            p.installed_by
        ],
    )
    .map_err(|e| {
        if super::sql::is_constraint_violation(&e) {
            Error::Conflict(format!("Plugin \"{}\" is already installed", p.name))
        } else {
            e
        }
    })?;
    Ok(())
}

/// One plugin by its short name.
pub fn get(conn: &Conn<'_>, name: &str) -> Result<Option<Plugin>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM plugins WHERE name = ?1"))?
        .query_opt([name], from_row)
}

/// Every plugin, by name.
pub fn all(conn: &Conn<'_>) -> Result<Vec<Plugin>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM plugins ORDER BY name"))?
        .query_map([], from_row)
}

/// One page of plugins in name order.
pub fn list(conn: &Conn<'_>, page: &Page) -> Result<Paged<Plugin>> {
    let after = page.after.as_ref().map(|a| a.1.clone());
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM plugins WHERE (CAST(?1 AS TEXT) IS NULL OR name > ?1) ORDER BY name LIMIT ?2"
        ))?
        .query_map(params![after, (page.limit + 1) as i64], from_row)?;
    Ok(Paged::from_overfetch(rows, page.limit, |p| {
        (p.name.clone(), p.name.clone())
    }))
}

/// Forgets a plugin; false when it was not installed.
pub fn delete(conn: &Conn<'_>, name: &str) -> Result<bool> {
    Ok(conn.execute("DELETE FROM plugins WHERE name = ?1", [name])? > 0)
}
