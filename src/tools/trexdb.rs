//! `trexdb-*` tools: the trexdb engine's own SQLite data files (`<data_dir>/data/main.db`, kept
//! apart from `trex.db`) with every enabled registered sqlite database attached read-only under
//! its id.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::engine::registry;
use crate::engine::{Class, QueryResult, catalog, paths, sqlite};
use crate::mcp::tool::{Annotations, Tool, ToolCtx, ToolError};

/// Registered databases attached at most (SQLite attaches 10 databases per connection; one
/// place is kept free). Databases past it are named in the result's `warnings`; reach them
/// through their endpoint server.
const MAX_ATTACHED: usize = 9;

/// The tools of this group.
pub fn tools() -> Vec<Tool> {
    vec![
        Tool::typed(
            "trexdb-list-databases",
            "List trexdb databases",
            "List the engine's databases: `main` (data/main.db) and each enabled registered sqlite \
             database, attached read-only under its id.",
            Annotations::READ,
            list_databases,
        ),
        Tool::typed(
            "trexdb-list-schemas",
            "List trexdb schemas",
            "List schemas. In SQLite each attached database is one schema, named like the database.",
            Annotations::READ,
            list_schemas,
        ),
        Tool::typed(
            "trexdb-list-tables",
            "List trexdb tables",
            "List tables and views with row, column and index counts; filter by `database` (or its alias \
             `schema`). Paginated.",
            Annotations::READ,
            list_tables,
        ),
        Tool::typed(
            "trexdb-list-extensions",
            "List trexdb extensions",
            "List the engine's compile options and available SQL functions (extension loading is off).",
            Annotations::READ,
            list_extensions,
        ),
        Tool::typed(
            "trexdb-execute-sql",
            "Execute SQL on trexdb",
            "Run one SQL statement on the engine (never on trex.db): read-only unless \
             `allowWrite`; Dangerous statements (DDL, ATTACH, PRAGMA writes, ...) also need a key \
             with the `dangerousSql` scope. At most engine.row_limit rows (`truncated` tells), \
             engine.query_timeout_secs.",
            Annotations {
                read_only: false,
                destructive: true,
                idempotent: false,
                open_world: false,
            },
            execute_sql,
        )
        .read_only_capable(),
    ]
}

/// The engine target: main file plus attached registered sqlite databases, and what could not
/// be attached, in words. A registered file that became unusable (a directory, not SQLite, gone
/// outside the allowed directories) is skipped and named, never fails the call for everyone.
async fn target(ctx: &ToolCtx, writable: bool) -> Result<(sqlite::Target, Vec<String>), ToolError> {
    let dbs = crate::ops::databases::enabled_sqlite(&ctx.app).await?;
    let scopes = ctx.call.principal.scopes.as_ref();
    let mut attach = Vec::new();
    let mut warnings = Vec::new();
    // a key's `endpoints` scope also limits which registered databases it sees here
    let allowed = dbs
        .into_iter()
        .filter(|d| scopes.is_none_or(|s| s.allows_endpoint(&d.id)));
    let mut over = Vec::new();
    for d in allowed {
        let usable = paths::resolve_sqlite(&ctx.app.config, &d.database_name, "databaseName")
            .and_then(|p| paths::check_sqlite_file(&p, "databaseName").map(|_| p));
        match usable {
            Err(e) => warnings.push(format!("database '{}' is not attached: {e}", d.id)),
            Ok(p) if !p.exists() => warnings.push(format!(
                "database '{}' is not attached: its file does not exist yet",
                d.id
            )),
            Ok(_) if attach.len() == MAX_ATTACHED => over.push(d.id),
            Ok(p) => attach.push((d.id, p)),
        }
    }
    if !over.is_empty() {
        warnings.push(format!(
            "{} database(s) not attached, SQLite attaches at most {MAX_ATTACHED} here: {}; query them through /api/v1/endpoints/<id>/mcp/sqlite",
            over.len(),
            over.join(", ")
        ));
    }
    Ok((
        sqlite::Target {
            path: paths::main_file(&ctx.app.config),
            attach,
            writable,
        },
        warnings,
    ))
}

async fn query(
    ctx: &ToolCtx,
    sql: &'static str,
    params: Vec<Value>,
) -> Result<QueryResult, ToolError> {
    let (t, warnings) = target(ctx, false).await?;
    let limits = crate::engine::Limits {
        row_limit: 100_000,
        ..registry::limits(&ctx.app)
    };
    let mut r = ctx
        .app
        .engine
        .run(move || {
            let mut skipped = Vec::new();
            let conn = sqlite::open_reporting(&t, limits, &mut skipped)?;
            let mut r = sqlite::run(&conn, sql, &params, Class::Safe, limits)?;
            r.warnings = skipped;
            Ok(r)
        })
        .await?;
    r.warnings.splice(0..0, warnings);
    Ok(r)
}

/// No arguments.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// One engine database.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EngineDatabase {
    pub database_name: String,
    pub path: Option<String>,
    /// Attached read-only (registered databases).
    pub read_only: bool,
    /// `main`, `temp` or a registered database.
    pub internal: bool,
}

/// Result of `trexdb-list-databases`.
#[derive(Serialize, JsonSchema)]
pub struct Databases {
    pub databases: Vec<EngineDatabase>,
    /// Registered databases that are not attached, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

async fn list_databases(ctx: ToolCtx, _a: NoArgs) -> Result<Databases, ToolError> {
    let r = query(&ctx, catalog::DATABASE_LIST, vec![]).await?;
    Ok(Databases {
        warnings: r.warnings,
        databases: r
            .rows
            .into_iter()
            .map(|row| {
                let name = row[0].as_str().unwrap_or("").to_string();
                EngineDatabase {
                    read_only: name != "main" && name != "temp",
                    internal: name == "main" || name == "temp",
                    path: row[1]
                        .as_str()
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                    database_name: name,
                }
            })
            .collect(),
    })
}

/// One schema.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Schema {
    pub database_name: String,
    pub schema_name: String,
    pub internal: bool,
}

/// Result of `trexdb-list-schemas`.
#[derive(Serialize, JsonSchema)]
pub struct Schemas {
    pub schemas: Vec<Schema>,
}

async fn list_schemas(ctx: ToolCtx, _a: NoArgs) -> Result<Schemas, ToolError> {
    let r = query(&ctx, catalog::SCHEMA_LIST, vec![]).await?;
    Ok(Schemas {
        schemas: r
            .rows
            .into_iter()
            .map(|row| {
                let name = row[0].as_str().unwrap_or("").to_string();
                Schema {
                    internal: name == "temp",
                    database_name: name.clone(),
                    schema_name: name,
                }
            })
            .collect(),
    })
}

/// Arguments of `trexdb-list-tables`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TablesArgs {
    /// Only this database (`main` or a registered id).
    pub database: Option<String>,
    /// Same as `database` (SQLite schemas are databases).
    pub schema: Option<String>,
    // the page size: the schema's default, minimum and maximum say it all
    #[schemars(range(min = 1, max = 1000), extend("default" = 100))]
    pub limit: Option<u32>,
    /// From `nextCursor`.
    pub cursor: Option<String>,
}

/// One table or view.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Table {
    pub database_name: String,
    pub schema_name: String,
    pub table_name: String,
    /// `table`, `view`, `virtual` or `shadow`.
    pub table_type: String,
    pub internal: bool,
    pub column_count: i64,
    pub index_count: i64,
    /// Rows (tables only).
    pub row_count: Option<i64>,
}

/// Result of `trexdb-list-tables`.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tables {
    pub tables: Vec<Table>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

async fn list_tables(ctx: ToolCtx, a: TablesArgs) -> Result<Tables, ToolError> {
    let limit = crate::ops::page(a.limit, None)?.limit as u32;
    let offset = match &a.cursor {
        None => 0,
        Some(c) => crate::util::decode_offset(c)
            .ok_or_else(|| ToolError::field("cursor", "is not a cursor returned by this tool"))?,
    };
    let filter = a.database.or(a.schema);
    let (t, _) = target(&ctx, false).await?;
    let limits = registry::limits(&ctx.app);
    let tables = ctx
        .app
        .engine
        .run(move || -> Result<Vec<Table>, crate::engine::EngineError> {
            let conn = sqlite::open(&t, limits)?;
            let list = sqlite::run(
                &conn,
                catalog::TABLE_LIST,
                &[filter.map(Value::String).unwrap_or(Value::Null)],
                Class::Safe,
                crate::engine::Limits {
                    row_limit: 100_000,
                    ..limits
                },
            )?;
            let mut out = Vec::new();
            for row in list.rows {
                let schema = row[0].as_str().unwrap_or("").to_string();
                let name = row[1].as_str().unwrap_or("").to_string();
                let kind = row[2].as_str().unwrap_or("").to_string();
                let internal = name.starts_with("sqlite_");
                let idx = sqlite::run(
                    &conn,
                    catalog::INDEX_COUNT,
                    &[json!(name), json!(schema)],
                    Class::Safe,
                    limits,
                )
                .ok()
                .and_then(|r| r.rows.first().and_then(|r| r[0].as_i64()))
                .unwrap_or(0);
                let rows = if kind == "table" {
                    let sql = catalog::row_count(&schema, &name);
                    sqlite::run(&conn, &sql, &[], Class::Safe, limits)
                        .ok()
                        .and_then(|r| r.rows.first().and_then(|r| r[0].as_i64()))
                } else {
                    None
                };
                out.push(Table {
                    database_name: schema.clone(),
                    schema_name: schema,
                    table_name: name,
                    table_type: kind,
                    internal,
                    column_count: row[3].as_i64().unwrap_or(0),
                    index_count: idx,
                    row_count: rows,
                });
            }
            Ok(out)
        })
        .await?;
    let total = tables.len();
    let page: Vec<Table> = tables
        .into_iter()
        .skip(offset)
        .take(limit as usize)
        .collect();
    let next = offset + page.len();
    Ok(Tables {
        tables: page,
        next_cursor: (next < total).then(|| crate::util::encode_offset(next)),
    })
}

/// Result of `trexdb-list-extensions`.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Extensions {
    /// SQLite version of the engine.
    pub sqlite_version: String,
    pub compile_options: Vec<String>,
    /// SQL functions: name, builtin, type (`s` scalar, `a` aggregate, `w` window), number of args.
    pub functions: Vec<Value>,
    /// Whether loading extensions is possible (always false: refused by the engine).
    pub extension_loading: bool,
}

async fn list_extensions(ctx: ToolCtx, _a: NoArgs) -> Result<Extensions, ToolError> {
    let v = query(&ctx, catalog::SQLITE_VERSION, vec![]).await?;
    let opts = query(&ctx, catalog::COMPILE_OPTIONS, vec![]).await?;
    let funcs = query(&ctx, catalog::FUNCTION_LIST, vec![]).await?;
    Ok(Extensions {
        sqlite_version: v.rows[0][0].as_str().unwrap_or("").to_string(),
        compile_options: opts
            .rows
            .into_iter()
            .filter_map(|r| r[0].as_str().map(str::to_string))
            .collect(),
        functions: funcs
            .rows
            .into_iter()
            .map(|r| json!({"name": r[0], "builtin": r[1] == json!(1), "type": r[2], "narg": r[3]}))
            .collect(),
        extension_loading: false,
    })
}

/// Arguments of `trexdb-execute-sql`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExecuteArgs {
    /// One SQL statement.
    pub sql: String,
    /// Values bound to ?1, ?2 … (null, boolean, number or string).
    #[serde(default)]
    pub parameters: Vec<Value>,
    /// Allow statements that change data (default false: the engine opens the database read-only).
    #[serde(default)]
    pub allow_write: bool,
}

async fn execute_sql(ctx: ToolCtx, a: ExecuteArgs) -> Result<QueryResult, ToolError> {
    if a.sql.trim().is_empty() {
        return Err(ToolError::field("sql", "must not be empty"));
    }
    let (t, warnings) = target(&ctx, a.allow_write).await?;
    let limits = registry::limits(&ctx.app);
    let attached: Vec<String> = t.attach.iter().map(|(alias, _)| alias.clone()).collect();
    let sql = a.sql.clone();
    let mut r = registry::run_sqlite(
        &ctx.app.engine,
        t,
        a.sql,
        a.parameters,
        a.allow_write,
        ctx.call.principal.scopes.as_ref(),
        limits,
    )
    .await
    .map_err(|e| match e {
        // a write that reached an attached registered database: say where writes go
        crate::engine::EngineError::Refused(m) if a.allow_write && m.contains("read-only") => {
            match written_alias(&sql, &attached) {
                Some(db) => crate::engine::EngineError::Refused(format!(
                    "Refused: registered databases are attached read-only in trexdb; write to '{db}' \
                     through its endpoint server, /api/v1/endpoints/{db}/mcp/sqlite (tool execute_sqlite_query)"
                )),
                None => crate::engine::EngineError::Refused(m),
            }
        }
        other => other,
    })?;
    r.warnings.splice(0..0, warnings);
    Ok(r)
}

/// The attached database a statement names (`alias.table`), if any.
fn written_alias(sql: &str, attached: &[String]) -> Option<String> {
    let lower = sql.to_ascii_lowercase();
    attached
        .iter()
        .find(|a| {
            let a = a.to_ascii_lowercase();
            lower.contains(&format!("{a}.")) || lower.contains(&format!("\"{a}\"."))
        })
        .cloned()
}
