//! Registered external databases (PostgreSQL servers and SQLite files) and their credentials:
//! validation (ids, hosts, ports, SQLite paths confined to the allowed directories), the key
//! scope rules (a key limited to some databases sees and changes only those, and may not point
//! one of them at what another database outside its scope points at), credentials sealed at
//! rest and dropped when a database is pointed elsewhere, and the endpoint-server cache
//! emptied on every change.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Actor, audited, invalid};
use crate::app::App;
use crate::engine::{paths, registry};
use crate::error::{Error, Result};
use crate::store::databases::{self, Credential, Database};
use crate::store::{Page, Paged};

/// Database dialects.
#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// PostgreSQL (`postgres` is accepted too).
    #[default]
    #[serde(alias = "postgres")]
    Postgresql,
    Sqlite,
}

impl Dialect {
    fn as_str(self) -> &'static str {
        match self {
            Dialect::Postgresql => "postgresql",
            Dialect::Sqlite => "sqlite",
        }
    }
}

/// A database to register.
#[derive(Debug, Clone)]
pub struct NewDatabase {
    pub id: String,
    pub host: Option<String>,
    pub port: Option<i64>,
    pub database_name: String,
    pub dialect: Dialect,
    pub description: Option<String>,
    pub enabled: Option<bool>,
    /// Directory of its versioned migration files.
    pub migrations_dir: Option<String>,
}

/// Changes to a registered database; `None` keeps a field.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub host: Option<String>,
    pub port: Option<i64>,
    pub database_name: Option<String>,
    pub dialect: Option<Dialect>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
    /// An empty string removes it.
    pub migrations_dir: Option<String>,
}

/// A credential to save (create or replace, per database and username).
#[derive(Debug, Clone)]
pub struct NewCredential {
    pub database_id: String,
    pub username: String,
    pub password: String,
    pub user_scope: Option<String>,
    pub service_scope: Option<String>,
}

fn not_found() -> Error {
    Error::NotFound("Database not found".into())
}

/// Refuses a database outside the caller's `endpoints` scope. Every operation that reads,
/// changes or tests a registered database, or its credentials, goes through this.
pub fn in_scope(actor: &Actor, id: &str) -> Result<()> {
    match &actor.scopes {
        Some(s) if !s.allows_endpoint(id) => {
            Err(Error::Conflict(crate::auth::scopes::database_refusal(id)))
        }
        _ => Ok(()),
    }
}

/// Where a database points, comparable across registrations: a SQLite file by its real path;
/// a PostgreSQL server by the addresses its host name resolves to (every loopback address is
/// one place: `localhost`, `127.0.0.1`, `127.1`, `::1`), its port and database name.
#[derive(PartialEq)]
enum Place {
    File(std::path::PathBuf),
    Server {
        addrs: Vec<String>,
        port: i64,
        database: String,
    },
}

async fn place_of(app: &App, d: &Database) -> Option<Place> {
    if d.dialect == "sqlite" {
        let p = paths::resolve_sqlite(&app.config, &d.database_name, "databaseName").ok()?;
        return Some(Place::File(std::fs::canonicalize(&p).unwrap_or(p)));
    }
    let host = d
        .host
        .clone()
        .unwrap_or_default()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let port = d.port.unwrap_or(5432);
    let resolved = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::lookup_host((host.as_str(), port as u16)),
    )
    .await;
    let mut addrs: Vec<String> = match resolved {
        Ok(Ok(it)) => it.map(|a| place_of_ip(a.ip())).collect(),
        _ => vec![host.clone()],
    };
    addrs.sort();
    addrs.dedup();
    Some(Place::Server {
        addrs,
        port,
        database: d.database_name.clone(),
    })
}

/// An address as a place: IPv4-mapped IPv6 as IPv4; every loopback address, and the unspecified
/// one (which connects to this host), as one place `loopback`.
fn place_of_ip(ip: std::net::IpAddr) -> String {
    let ip = match ip {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(std::net::IpAddr::V4)
            .unwrap_or(std::net::IpAddr::V6(v6)),
        v4 => v4,
    };
    if ip.is_loopback() || ip.is_unspecified() {
        "loopback".to_string()
    } else {
        ip.to_string()
    }
}

fn same_place(a: &Place, b: &Place) -> bool {
    match (a, b) {
        (Place::File(x), Place::File(y)) => x == y,
        (
            Place::Server {
                addrs: a1,
                port: p1,
                database: d1,
            },
            Place::Server {
                addrs: a2,
                port: p2,
                database: d2,
            },
        ) => p1 == p2 && d1 == d2 && a1.iter().any(|x| a2.contains(x)),
        _ => false,
    }
}

/// A caller limited to some databases may not point one of them at what another database,
/// outside its scope, points at (a file or a server it could then read through its own id).
async fn not_anothers_target(app: &App, actor: &Actor, d: &Database) -> Result<()> {
    let Some(scopes) = actor.scopes.clone() else {
        return Ok(());
    };
    if scopes.endpoints.is_none() {
        return Ok(());
    }
    let all = app.store.run(databases::all).await?;
    let Some(mine) = place_of(app, d).await else {
        return Ok(());
    };
    for o in all
        .iter()
        .filter(|o| o.id != d.id && !scopes.allows_endpoint(&o.id))
    {
        if let Some(theirs) = place_of(app, o).await
            && same_place(&mine, &theirs)
        {
            return Err(Error::Conflict(
                "Refused: this database would point at the same database as one outside this API key's scopes"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// True for a usable database id: letters, digits and `_`, at most 63, not `main` or `temp`.
pub fn id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !["main", "temp"].contains(&id.to_ascii_lowercase().as_str())
}

/// Checks a database definition; messages name the field.
fn validate(app: &App, d: &Database) -> Result<()> {
    if !id_ok(&d.id) {
        return Err(invalid(
            "id",
            "must be letters, digits and _ (at most 63; not main or temp)",
        ));
    }
    if d.database_name.trim().is_empty() {
        return Err(invalid("databaseName", "must not be empty"));
    }
    if d.dialect == "postgresql" {
        let host = d.host.as_deref().unwrap_or("");
        if host.is_empty()
            || host.len() > 255
            || host
                .chars()
                .any(|c| c.is_whitespace() || c == '/' || c == '@')
        {
            return Err(invalid(
                "host",
                "must be a host name or address for a postgresql database",
            ));
        }
        if !(1..=65535).contains(&d.port.unwrap_or(5432)) {
            return Err(invalid("port", "must be between 1 and 65535"));
        }
    } else {
        let p = paths::resolve_sqlite(&app.config, &d.database_name, "databaseName")?;
        paths::check_sqlite_file(&p, "databaseName")?;
    }
    if let Some(m) = &d.migrations_dir {
        paths::resolve_migrations_dir(&app.config, m, "migrationsDir")?;
    }
    Ok(())
}

/// Registered databases the caller may see, `search` in id, host, name or description.
pub async fn list(
    app: &App,
    actor: &Actor,
    search: Option<String>,
    page: Page,
) -> Result<Paged<Database>> {
    let only = actor.scopes.as_ref().and_then(|s| s.endpoints.clone());
    app.store
        .run(move |c| databases::list(c, search.as_deref(), only.as_deref(), &page))
        .await
}

/// Every enabled SQLite database (what trexdb attaches).
pub async fn enabled_sqlite(app: &App) -> Result<Vec<Database>> {
    app.store.run(databases::enabled_sqlite).await
}

/// One registered database by id (the caller checks scopes: the endpoint routes answer 404
/// before 403).
pub async fn find(app: &App, id: &str) -> Result<Option<Database>> {
    let key = id.to_string();
    app.store.read(move |c| databases::get(c, &key)).await
}

/// Registers a database.
pub async fn create(app: &App, actor: &Actor, a: NewDatabase) -> Result<Database> {
    let args = json!({"id": a.id, "host": a.host, "port": a.port, "databaseName": a.database_name,
        "dialect": a.dialect, "description": a.description, "enabled": a.enabled,
        "migrationsDir": a.migrations_dir});
    audited(app, actor, "database-create", args, async {
        let pg = a.dialect == Dialect::Postgresql;
        let d = Database {
            id: a.id,
            host: a.host.map(|h| h.trim().to_string()),
            port: if pg {
                Some(a.port.unwrap_or(5432))
            } else {
                a.port
            },
            database_name: a.database_name,
            dialect: a.dialect.as_str().into(),
            description: a.description,
            enabled: a.enabled.unwrap_or(true),
            migrations_dir: a.migrations_dir.filter(|m| !m.is_empty()),
            created_at: String::new(),
            updated_at: String::new(),
        };
        validate(app, &d)?;
        in_scope(actor, &d.id)?;
        not_anothers_target(app, actor, &d).await?;
        let created = app.store.write(move |c| databases::insert(c, &d)).await?;
        app.database_changed();
        Ok(created)
    })
    .await
}

/// Changes a registered database; pointing it elsewhere drops its credentials in the same
/// transaction, so a password is never sent to a new target.
pub async fn update(app: &App, actor: &Actor, id: &str, a: Changes) -> Result<Database> {
    let args = json!({"id": id, "host": a.host, "port": a.port, "databaseName": a.database_name,
        "dialect": a.dialect, "description": a.description, "enabled": a.enabled,
        "migrationsDir": a.migrations_dir});
    audited(app, actor, "database-update", args, async {
        if a.host.is_none()
            && a.port.is_none()
            && a.database_name.is_none()
            && a.dialect.is_none()
            && a.description.is_none()
            && a.enabled.is_none()
            && a.migrations_dir.is_none()
        {
            return Err(Error::Conflict("No fields to update".into()));
        }
        in_scope(actor, id)?;
        let key = id.to_string();
        let mut d = app
            .store
            .run(move |c| databases::get(c, &key))
            .await?
            .ok_or_else(not_found)?;
        let target = |d: &Database| {
            (
                d.host.clone(),
                d.port,
                d.database_name.clone(),
                d.dialect.clone(),
            )
        };
        let before = target(&d);
        if let Some(h) = a.host {
            d.host = Some(h.trim().to_string());
        }
        if let Some(p) = a.port {
            d.port = Some(p);
        }
        if let Some(n) = a.database_name {
            d.database_name = n;
        }
        if let Some(x) = a.dialect {
            d.dialect = x.as_str().into();
        }
        if let Some(x) = a.description {
            d.description = Some(x);
        }
        if let Some(e) = a.enabled {
            d.enabled = e;
        }
        if let Some(m) = a.migrations_dir {
            d.migrations_dir = (!m.is_empty()).then_some(m);
        }
        validate(app, &d)?;
        let moved = target(&d) != before;
        if moved {
            not_anothers_target(app, actor, &d).await?;
        }
        let updated = app
            .store
            .write(move |c| {
                let updated = databases::update(c, &d)?;
                if moved {
                    databases::delete_credentials(c, &d.id)?;
                }
                Ok(updated)
            })
            .await?
            .ok_or_else(not_found)?;
        app.database_changed();
        Ok(updated)
    })
    .await
}

/// Unregisters a database with its credentials (its data is not touched).
pub async fn delete(app: &App, actor: &Actor, id: &str) -> Result<()> {
    audited(app, actor, "database-delete", json!({"id": id}), async {
        in_scope(actor, id)?;
        let users = super::pipelines::of_database(app, id).await?;
        if !users.is_empty() {
            return Err(Error::Conflict(format!(
                "Database '{id}' is read by pipeline(s) {}; delete them first (etl-delete-pipeline)",
                users.join(", ")
            )));
        }
        let key = id.to_string();
        if !app.store.write(move |c| databases::delete(c, &key)).await? {
            return Err(not_found());
        }
        app.database_changed();
        Ok(())
    })
    .await
}

/// Saves a credential, its password sealed at rest.
pub async fn save_credential(app: &App, actor: &Actor, a: NewCredential) -> Result<Credential> {
    let args = json!({"databaseId": a.database_id, "username": a.username, "password": "*",
        "userScope": a.user_scope, "serviceScope": a.service_scope});
    audited(app, actor, "database-credential-save", args, async {
        if a.username.trim().is_empty() || a.username.len() > 128 {
            return Err(invalid("username", "must be 1 to 128 characters"));
        }
        in_scope(actor, &a.database_id)?;
        let sealed = app.master.seal(
            &a.password,
            &registry::credential_aad(&a.database_id, &a.username),
        );
        let (cred, _) = app
            .store
            .write(move |c| {
                if databases::get(c, &a.database_id)?.is_none() {
                    return Err(not_found());
                }
                databases::save_credential(
                    c,
                    &a.database_id,
                    &a.username,
                    &sealed,
                    a.user_scope.as_deref(),
                    a.service_scope.as_deref(),
                )
            })
            .await?;
        Ok(cred)
    })
    .await
}

/// Deletes a credential by id (outside the caller's scope it is not there for the caller).
pub async fn delete_credential(app: &App, actor: &Actor, credential_id: &str) -> Result<()> {
    let args = json!({"credentialId": credential_id});
    audited(app, actor, "database-credential-delete", args, async {
        let scopes = actor.scopes.clone();
        let id = credential_id.to_string();
        let deleted = app
            .store
            .write(move |c| {
                let Some(db) = databases::credential_database(c, &id)? else {
                    return Ok(false);
                };
                if scopes.as_ref().is_some_and(|s| !s.allows_endpoint(&db)) {
                    return Ok(false);
                }
                databases::delete_credential(c, &id)
            })
            .await?;
        if deleted {
            Ok(())
        } else {
            Err(Error::NotFound("Credential not found".into()))
        }
    })
    .await
}

/// The credentials of a database: ids, usernames and scopes, never passwords.
pub async fn credentials(app: &App, actor: &Actor, database_id: &str) -> Result<Vec<Credential>> {
    in_scope(actor, database_id)?;
    let id = database_id.to_string();
    app.store
        .run(move |c| {
            if databases::get(c, &id)?.is_none() {
                return Err(not_found());
            }
            databases::credentials(c, &id)
        })
        .await
}
