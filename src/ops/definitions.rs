//! Migration definitions (the migrations MCP server, Eden's model): defining one — validated
//! at define time with the field named: unknown target databases, a strategy or `data` that does
//! not fit a target's dialect, SQL that does not parse, `rollback_all` over PostgreSQL without
//! `down` — listing and reading them. Defining an id again with the same content returns it;
//! with other content it is refused unless `replace`, which makes version N+1. Runs are
//! [`super::runs`]'.

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Value, json};

use super::{Actor, audited, invalid};
use crate::app::App;
use crate::error::{Error, Result};
use crate::migrate::definition::{Api, Body, Data, DataArg, FailureHandling, Interlay, Strategy};
use crate::store::databases::Database;
use crate::store::migrations::{self as rows, Definition};
use crate::util::{decode_cursor, encode_cursor, parse_rfc3339, rfc3339};

/// What `define_migration` takes.
#[derive(Debug, Clone, Default)]
pub struct Define {
    pub id: String,
    pub description: Option<String>,
    pub strategy: Option<Value>,
    pub data: Option<Value>,
    pub failure_handling: Option<Value>,
    pub apis: Option<Vec<Value>>,
    pub interlays: Option<Vec<Value>>,
    pub replace: bool,
    /// The database a per-database server is scoped to: the default interlay, and the only one
    /// allowed.
    pub scoped_to: Option<String>,
}

/// A definition as the tools show it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct MigrationView {
    pub id: String,
    pub version: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `pending`, `ready` (tested), `running`, `completed`, `failed`, `rolling_back`,
    /// `rolled_back`.
    pub status: String,
    #[schemars(with = "serde_json::Map<String, Value>")]
    pub strategy: Value,
    pub created_at: String,
    pub updated_at: String,
    /// The target database ids.
    pub interlays: Vec<String>,
    /// With `verbose`: the whole body (data, failure_handling, apis, interlays).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Map<String, Value>>")]
    pub definition: Option<Value>,
}

impl MigrationView {
    fn of(d: &Definition, verbose: bool) -> MigrationView {
        let body: Value = serde_json::from_str(&d.body).unwrap_or_default();
        MigrationView {
            id: d.id.clone(),
            version: d.version,
            description: d.description.clone(),
            status: d.status.clone(),
            strategy: body["strategy"].clone(),
            created_at: d.created_at.clone(),
            updated_at: d.updated_at.clone(),
            interlays: body["interlays"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|i| i["endpoint"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            definition: verbose.then_some(body),
        }
    }
}

/// Parses `v` as `T`, naming `field` on failure.
fn parse<T: serde::de::DeserializeOwned>(field: &str, v: Value) -> Result<T> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = crate::mcp::tool::without_values(&e.into_inner().to_string());
        let at = if path == "." || path.is_empty() {
            field.to_string()
        } else {
            format!("{field}.{path}")
        };
        invalid(&at, format!("is not valid: {inner}"))
    })
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Checks `sql` (field `field`) against target `d`: SQLite by rehearsing it on an empty copy of
/// the target's schema in memory (SQLite's own parser, in a transaction rolled back); PostgreSQL
/// by sqlparser.
async fn check_sql(app: &App, d: &Database, field: &str, sql: &str) -> Result<()> {
    crate::migrate::check_transaction_control(sql, d.dialect != "sqlite")
        .map_err(|why| invalid(field, why))?;
    if d.dialect == "sqlite" {
        let path =
            crate::engine::paths::resolve_sqlite(&app.config, &d.database_name, "databaseName")?;
        let (sql, id, field) = (sql.to_string(), d.id.clone(), field.to_string());
        return tokio::task::spawn_blocking(move || crate::migrate::runs::rehearse(&path, &sql))
            .await?
            .map_err(|e| invalid(&field, format!("does not run on '{id}' (SQLite): {e}")));
    }
    let dialect = sqlparser::dialect::PostgreSqlDialect {};
    sqlparser::parser::Parser::parse_sql(&dialect, sql)
        .map(|_| ())
        .map_err(|e| {
            invalid(
                field,
                format!("does not parse as PostgreSQL for '{}': {e}", d.id),
            )
        })
}

/// Validates and normalizes a definition against the registered databases.
async fn normalize(app: &App, actor: &Actor, a: &Define) -> Result<Body> {
    let strategy = match a.strategy.clone() {
        None | Some(Value::Null) => Strategy::default(),
        Some(Value::String(s)) => parse("strategy", json!({"type": s}))?,
        Some(v) => parse("strategy", v)?,
    };
    let data = match a.data.clone() {
        None | Some(Value::Null) => Data::None {},
        Some(v) => match parse::<DataArg>("data", v)? {
            DataArg::Word(w) if w.eq_ignore_ascii_case("none") => Data::None {},
            DataArg::Word(w) => {
                return Err(invalid(
                    "data",
                    format!("must be \"none\" or an object with `type` sql or snapshot, not {w:?}"),
                ));
            }
            DataArg::Data(d) => d,
        },
    };
    let failure_handling = match a.failure_handling.clone() {
        None | Some(Value::Null) => FailureHandling::default(),
        Some(v) => parse("failure_handling", v)?,
    };
    match &failure_handling {
        FailureHandling::Word(w) if w == "rollback_all" || w == "allow_partial" => {}
        FailureHandling::Retry { kind, .. } if kind == "retry_then_all" => {}
        _ => {
            return Err(invalid(
                "failure_handling",
                "must be \"rollback_all\", \"allow_partial\" or {\"type\": \"retry_then_all\", \"retry_count\": N}",
            ));
        }
    }
    let apis: Vec<Api> = parse("apis", Value::Array(a.apis.clone().unwrap_or_default()))?;
    let mut interlays: Vec<Interlay> = parse(
        "interlays",
        Value::Array(a.interlays.clone().unwrap_or_default()),
    )?;
    if let Some(db) = &a.scoped_to {
        if interlays.is_empty() {
            interlays.push(Interlay {
                endpoint: db.clone(),
                description: None,
            });
        }
        if let Some(i) = interlays.iter().find(|i| &i.endpoint != db) {
            return Err(invalid(
                "interlays",
                format!(
                    "names '{}', but this server is scoped to database '{db}'",
                    i.endpoint
                ),
            ));
        }
    }
    if interlays.is_empty() {
        return Err(invalid(
            "interlays",
            "must name at least one target database ([{\"endpoint\": \"<database id>\"}])",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, api) in apis.iter().enumerate() {
        if api.id.trim().is_empty() || !seen.insert(api.id.clone()) {
            return Err(invalid(
                &format!("apis[{i}].id"),
                "must be a unique, non-empty name",
            ));
        }
    }
    let mut dbs = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for (i, il) in interlays.iter().enumerate() {
        let field = format!("interlays[{i}].endpoint");
        if !ids.insert(il.endpoint.clone()) {
            return Err(invalid(&field, format!("names '{}' twice", il.endpoint)));
        }
        super::databases::in_scope(actor, &il.endpoint)?;
        let d = super::databases::find(app, &il.endpoint)
            .await?
            .ok_or_else(|| {
                invalid(
                    &field,
                    format!(
                        "names '{}', which is not a registered database",
                        il.endpoint
                    ),
                )
            })?;
        dbs.push(d);
    }
    // the strategy fits the targets
    match &strategy {
        Strategy::Canary { canary_targets } => {
            if canary_targets.is_empty() {
                return Err(invalid(
                    "strategy.canary_targets",
                    "must name at least one of the interlays",
                ));
            }
            if let Some(t) = canary_targets.iter().find(|t| !ids.contains(*t)) {
                return Err(invalid(
                    "strategy.canary_targets",
                    format!("names '{t}', which is not one of the interlays"),
                ));
            }
        }
        Strategy::RollingUpdate {
            batch_size: Some(0),
        } => {
            return Err(invalid("strategy.batch_size", "must be 1 or more"));
        }
        Strategy::BlueGreen { .. } => {
            if let Some(d) = dbs.iter().find(|d| d.dialect != "sqlite") {
                return Err(invalid(
                    "strategy",
                    format!("blue_green swaps SQLite files; '{}' is {}", d.id, d.dialect),
                ));
            }
        }
        Strategy::TimeWindow {
            window_start,
            window_end,
        } => {
            let s = parse_rfc3339(window_start)
                .ok_or_else(|| invalid("strategy.window_start", "is not an RFC 3339 time"))?;
            let e = parse_rfc3339(window_end)
                .ok_or_else(|| invalid("strategy.window_end", "is not an RFC 3339 time"))?;
            if e <= s {
                return Err(invalid("strategy.window_end", "must be after window_start"));
            }
        }
        _ => {}
    }
    // the data fits the targets
    match &data {
        Data::Snapshot {
            source,
            tables,
            replace,
        } => {
            if let Some(r) = replace
                && !["none", "replace", "merge"].contains(&r.as_str())
            {
                return Err(invalid("data.replace", "must be none, replace or merge"));
            }
            if ids.contains(source) {
                return Err(invalid(
                    "data.source",
                    format!("'{source}' is also a target"),
                ));
            }
            super::databases::in_scope(actor, source)?;
            let src = super::databases::find(app, source).await?.ok_or_else(|| {
                invalid(
                    "data.source",
                    format!("names '{source}', which is not a registered database"),
                )
            })?;
            if let Some(d) = dbs.iter().find(|d| d.dialect != src.dialect) {
                return Err(invalid(
                    "data",
                    format!(
                        "snapshot copies between databases of one dialect; '{source}' is {} and '{}' is {}",
                        src.dialect, d.id, d.dialect
                    ),
                ));
            }
            if src.dialect != "sqlite" && dbs.len() > 1 && failure_handling.rolls_back() {
                return Err(invalid(
                    "failure_handling",
                    "must be allow_partial for a snapshot onto several PostgreSQL targets: a copied target has no `down` to put it back",
                ));
            }
            if let Some(want) = tables.as_ref().filter(|_| src.dialect != "sqlite") {
                let have = super::runs::pg_tables(app, source).await?;
                if let Some(t) = want
                    .iter()
                    .find(|t| !have.contains(&super::runs::qualified(t)))
                {
                    return Err(invalid(
                        "data.tables",
                        format!("names '{t}', which is not a table of '{source}'"),
                    ));
                }
            } else if let Some(want) = tables {
                let path = crate::engine::paths::resolve_sqlite(
                    &app.config,
                    &src.database_name,
                    "databaseName",
                )?;
                let have =
                    tokio::task::spawn_blocking(move || crate::migrate::runs::schema_of(&path))
                        .await??;
                if let Some(t) = want.iter().find(|t| !have.tables.contains_key(*t)) {
                    return Err(invalid(
                        "data.tables",
                        format!("names '{t}', which is not a table of '{source}'"),
                    ));
                }
            }
        }
        Data::Sql { up, down } => {
            if up.trim().is_empty() {
                return Err(invalid("data.up", "must not be empty"));
            }
            for d in &dbs {
                check_sql(app, d, "data.up", up).await?;
                if d.dialect != "sqlite" {
                    match down {
                        Some(down) => check_sql(app, d, "data.down", down).await?,
                        None if failure_handling.rolls_back() => {
                            return Err(invalid(
                                "data.down",
                                format!(
                                    "is required: '{}' is PostgreSQL and failure_handling puts migrated targets back, which there is done by `down`",
                                    d.id
                                ),
                            ));
                        }
                        None => {}
                    }
                }
            }
        }
        Data::None {} => {}
    }
    Ok(Body {
        strategy,
        data,
        failure_handling,
        apis,
        interlays,
    })
}

/// Defines (or, with `replace`, versions) a migration.
pub async fn define(app: &App, actor: &Actor, a: Define) -> Result<MigrationView> {
    let args = json!({"id": a.id, "description": a.description, "strategy": a.strategy,
        "data": a.data, "failure_handling": a.failure_handling, "apis": a.apis,
        "interlays": a.interlays, "replace": a.replace});
    audited(app, actor, "define_migration", args, async {
        if !valid_id(&a.id) {
            return Err(invalid("id", "must be 1 to 128 letters, digits, `_`, `-` or `.`"));
        }
        let body = normalize(app, actor, &a).await?;
        let text = serde_json::to_string(&json!({
            "strategy": body.strategy, "data": body.data, "failure_handling": body.failure_handling,
            "apis": body.apis, "interlays": body.interlays,
        }))
        .expect("json");
        let digest = crate::migrate::checksum(format!("{}\n{text}", a.description.clone().unwrap_or_default()).as_bytes());
        let (id, desc, by, replace) = (a.id.clone(), a.description.clone(), actor.user_id.clone(), a.replace);
        let d = app
            .store
            .write(move |c| {
                let next = match rows::latest(c, &id)? {
                    Some(cur) if cur.digest == digest => return Ok(cur),
                    Some(cur) if !replace => {
                        return Err(Error::Conflict(format!(
                            "Migration '{id}' already exists (version {}) with other content; pass replace: true to make version {}",
                            cur.version,
                            cur.version + 1
                        )));
                    }
                    Some(cur) => {
                        if let Some(run) = rows::busy(c, &id)? {
                            return Err(Error::Conflict(format!(
                                "Migration '{id}' has run {run} under way; wait for it or cancel it first"
                            )));
                        }
                        cur.version + 1
                    }
                    None => 1,
                };
                rows::insert(c, &id, next, desc.as_deref(), &text, &digest, by.as_deref())
            })
            .await?;
        Ok(MigrationView::of(&d, true))
    })
    .await
}

/// Decodes a definition body.
pub fn body_of(d: &Definition) -> Result<Body> {
    serde_json::from_str(&d.body)
        .map_err(|e| Error::Other(format!("stored migration '{}' is unreadable: {e}", d.id)))
}

/// What `list_migrations` filters by.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub verbose: bool,
    pub updated_since: Option<String>,
    pub status: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    /// Only definitions that touch this database (the per-database server).
    pub touching: Option<String>,
}

/// Definitions (their latest versions), most recently updated first.
pub async fn list(app: &App, f: ListFilter) -> Result<(Vec<MigrationView>, Option<String>)> {
    let page = super::page(f.limit, f.cursor.as_deref())?;
    let since = match &f.updated_since {
        Some(s) => Some(rfc3339(parse_rfc3339(s).ok_or_else(|| {
            invalid("updated_since", format!("is not an RFC 3339 time: {s:?}"))
        })?)),
        None => None,
    };
    const STATUSES: &[&str] = &[
        "pending",
        "ready",
        "running",
        "completed",
        "failed",
        "rolling_back",
        "rolled_back",
    ];
    if let Some(s) = &f.status
        && !STATUSES.contains(&s.as_str())
    {
        return Err(invalid(
            "status",
            format!("must be one of {}", STATUSES.join(", ")),
        ));
    }
    let after = match &f.cursor {
        Some(c) => Some(
            decode_cursor(c)
                .ok_or_else(|| invalid("cursor", "is not a cursor returned by this tool"))?,
        ),
        None => None,
    };
    let (status, touching, limit) = (f.status.clone(), f.touching.clone(), page.limit);
    let mut rows = app
        .store
        .run(move |c| {
            rows::list(
                c,
                since.as_deref(),
                status.as_deref(),
                touching.as_deref(),
                after,
                limit,
            )
        })
        .await?;
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|d| encode_cursor(&d.updated_at, &d.id))
    } else {
        None
    };
    Ok((
        rows.iter()
            .map(|d| MigrationView::of(d, f.verbose))
            .collect(),
        next,
    ))
}

/// One definition: its latest version, and with `verbose` every version and its runs.
pub async fn get(app: &App, id: &str, verbose: bool, touching: Option<&str>) -> Result<Value> {
    let key = id.to_string();
    let (versions, runs) = app
        .store
        .run(move |c| Ok((rows::versions(c, &key)?, rows::runs_of(c, &key)?)))
        .await?;
    let latest = versions.last().ok_or_else(|| {
        Error::NotFound(format!(
            "Migration '{id}' not found. Please verify the migration ID is correct"
        ))
    })?;
    let view = MigrationView::of(latest, true);
    if let Some(db) = touching
        && !view.interlays.iter().any(|i| i == db)
    {
        return Err(Error::NotFound(format!(
            "Migration '{id}' not found for database '{db}'"
        )));
    }
    let mut v = serde_json::to_value(&view).expect("json");
    if verbose {
        v["versions"] = json!(
            versions
                .iter()
                .map(|d| MigrationView::of(d, true))
                .collect::<Vec<_>>()
        );
        let mut out = Vec::new();
        for r in runs {
            out.push(super::runs::view(app, &r).await?);
        }
        v["runs"] = json!(out);
    }
    Ok(v)
}
