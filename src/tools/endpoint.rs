//! The per-database MCP servers of seed 002 (`/api/v1/endpoints/{id}/mcp/{server}`): `sqlite` or
//! `postgres` by the database's dialect, each with `execute_<dialect>_query` and
//! `get_<dialect>_metadata`. Statements are classed by a parser; Dangerous ones need a key with
//! the `dangerousSql` scope; PostgreSQL reads run in `BEGIN READ ONLY`, SQLite reads on a
//! read-only connection.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::engine::registry::{self, Resolved};
use crate::engine::{QueryResult, catalog, sqlite};
use crate::mcp::server::McpServer;
use crate::mcp::tool::{Annotations, Tool, ToolCtx, ToolError};

/// The MCP server name for a dialect (`sqlite` or `postgres`).
pub fn server_name(dialect: &str) -> &'static str {
    if dialect == "sqlite" {
        "sqlite"
    } else {
        "postgres"
    }
}

/// A human description of a server.
pub fn describe(name: &str) -> &'static str {
    if name == "sqlite" {
        "SQLite MCP server: run queries and read metadata of this database"
    } else {
        "PostgreSQL MCP server: run queries and read metadata of this database"
    }
}

/// Arguments of `execute_<dialect>_query`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryArgs {
    /// One SQL statement.
    pub query: String,
    /// Values bound positionally ($1 … for PostgreSQL, ?1 … for SQLite).
    #[serde(default)]
    pub parameters: Vec<Value>,
}

/// Kinds of metadata.
#[derive(Deserialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum ObjectType {
    Tables,
    Columns,
    Indexes,
    Views,
}

impl From<ObjectType> for catalog::Object {
    fn from(k: ObjectType) -> Self {
        match k {
            ObjectType::Tables => catalog::Object::Tables,
            ObjectType::Columns => catalog::Object::Columns,
            ObjectType::Indexes => catalog::Object::Indexes,
            ObjectType::Views => catalog::Object::Views,
        }
    }
}

/// Arguments of `get_<dialect>_metadata`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetaArgs {
    /// `tables`, `columns`, `indexes` or `views`.
    pub object_type: ObjectType,
    /// Only this table (columns, indexes).
    pub table: Option<String>,
    /// PostgreSQL schema (default: every non-system schema).
    pub schema: Option<String>,
}

async fn run(
    ctx: &ToolCtx,
    db_id: &str,
    sql: String,
    params: Vec<Value>,
) -> Result<QueryResult, ToolError> {
    let (_, resolved) = registry::lookup(&ctx.app, db_id, true).await?;
    let limits = registry::limits(&ctx.app);
    let scopes = ctx.call.principal.scopes.as_ref();
    Ok(match resolved {
        Resolved::Sqlite(path) => {
            let t = sqlite::Target {
                path,
                attach: vec![],
                writable: true,
            };
            registry::run_sqlite(&ctx.app.engine, t, sql, params, true, scopes, limits).await?
        }
        Resolved::Postgres(t) => {
            let ct = Duration::from_secs(ctx.app.config.engine.connect_timeout_secs);
            registry::run_postgres(&ctx.app.engine, &t, &sql, &params, true, scopes, limits, ct)
                .await?
        }
    })
}

/// The MCP server of database `db_id` for `name` (`sqlite` or `postgres`).
pub fn server(db_id: &str, name: &str) -> McpServer {
    let exec_name = format!("execute_{name}_query");
    let meta_name = format!("get_{name}_metadata");
    let dialect_title = if name == "sqlite" {
        "SQLite"
    } else {
        "PostgreSQL"
    };
    let (id1, id2) = (db_id.to_string(), db_id.to_string());
    let pg = name == "postgres";
    let exec = Tool::typed(
        &exec_name,
        &format!("Run a {dialect_title} query"),
        &format!(
            "Run one SQL statement on database '{db_id}'. Reads run read-only; data changes (INSERT, UPDATE, \
             DELETE) are allowed; Dangerous statements (DDL, transaction control, settings, more than one \
             statement) need an API key with the `dangerousSql` scope. Parameters are bound positionally \
             ({}). At most engine.row_limit rows come back (`truncated` tells).",
            if pg { "$1, $2 …" } else { "?1, ?2 …" }
        ),
        Annotations {
            read_only: false,
            destructive: true,
            idempotent: false,
            open_world: pg,
        },
        move |ctx: ToolCtx, a: QueryArgs| {
            let id = id1.clone();
            async move {
                if a.query.trim().is_empty() {
                    return Err(ToolError::field("query", "must not be empty"));
                }
                run(&ctx, &id, a.query, a.parameters).await
            }
        },
    )
    .read_only_capable();
    let meta = Tool::typed(
        &meta_name,
        &format!("Read {dialect_title} metadata"),
        &format!(
            "List tables, columns, indexes or views of database '{db_id}'; filter by `table` (and `schema` on PostgreSQL)."
        ),
        Annotations {
            open_world: pg,
            ..Annotations::READ
        },
        move |ctx: ToolCtx, a: MetaArgs| {
            let id = id2.clone();
            async move {
                let (sql, params) = if pg {
                    (
                        catalog::pg_meta(a.object_type.into()),
                        vec![json!(a.schema), json!(a.table)],
                    )
                } else {
                    (
                        catalog::sqlite_meta(a.object_type.into()),
                        vec![json!(a.table)],
                    )
                };
                run(&ctx, &id, sql.to_string(), params).await
            }
        },
    );
    let mut s = McpServer::new(
        &format!("endpoint:{db_id}:{name}"),
        &format!("trex-{name}"),
        &format!("{dialect_title} database {db_id}"),
    )
    .tool(exec)
    .tool(meta);
    s.instructions = Some(format!(
        "Tools for the {dialect_title} database '{db_id}' registered in trex."
    ));
    s
}
