//! The SQL trex itself runs against user databases to describe them (catalog and metadata
//! queries of the trexdb tools and the endpoint servers), in one place. Always run as Safe
//! statements through the engine, like a client's query; control-store SQL is in
//! [`crate::store`].

/// Kinds of database object the metadata tools describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    Tables,
    Columns,
    Indexes,
    Views,
}

/// The attached databases of a SQLite connection: `name`, `file`.
pub const DATABASE_LIST: &str = "SELECT name, file FROM pragma_database_list ORDER BY seq";
/// The schema names of a SQLite connection.
pub const SCHEMA_LIST: &str = "SELECT name FROM pragma_database_list ORDER BY seq";
/// Tables and views (`schema`, `name`, `type`, `ncol`), of schema `?1` or all.
pub const TABLE_LIST: &str =
    "SELECT schema, name, type, ncol FROM pragma_table_list WHERE (?1 IS NULL OR schema = ?1)
             ORDER BY schema, name";
/// The number of indexes of table `?1` in schema `?2`.
pub const INDEX_COUNT: &str = "SELECT count(*) FROM pragma_index_list(?1, ?2)";
/// The SQLite library version.
pub const SQLITE_VERSION: &str = "SELECT sqlite_version()";
/// A connection check that also reports the version.
pub const SQLITE_PING: &str = "SELECT 1, sqlite_version()";
/// The compile-time options of the SQLite library.
pub const COMPILE_OPTIONS: &str = "SELECT compile_options FROM pragma_compile_options";
/// The SQL functions SQLite offers.
pub const FUNCTION_LIST: &str =
    "SELECT name, builtin, type, narg FROM pragma_function_list ORDER BY name, narg";

/// Quotes a SQLite identifier that came from the catalog.
pub fn quote(id: &str) -> String {
    format!("\"{}\"", id.replace('"', "\"\""))
}

/// The row count of table `name` in schema `schema` (names from the catalog).
pub fn row_count(schema: &str, name: &str) -> String {
    format!("SELECT count(*) FROM {}.{}", quote(schema), quote(name))
}

/// The metadata query of `k` on a SQLite database (`?1` = a table name or NULL).
pub fn sqlite_meta(k: Object) -> &'static str {
    match k {
        Object::Tables => "SELECT name AS table_name, type AS table_type FROM sqlite_schema
             WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND (?1 IS NULL OR name = ?1) ORDER BY name",
        Object::Columns => "SELECT m.name AS table_name, p.cid AS position, p.name AS column_name, p.type AS data_type,
             p.\"notnull\" AS not_null, p.dflt_value AS default_value, p.pk AS primary_key
             FROM sqlite_schema m JOIN pragma_table_info(m.name) p
             WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND (?1 IS NULL OR m.name = ?1)
             ORDER BY m.name, p.cid",
        Object::Indexes => "SELECT m.name AS table_name, i.name AS index_name, i.\"unique\" AS is_unique, i.origin,
             (SELECT group_concat(c.name, ', ') FROM pragma_index_info(i.name) c) AS columns
             FROM sqlite_schema m JOIN pragma_index_list(m.name) i
             WHERE m.type = 'table' AND (?1 IS NULL OR m.name = ?1) ORDER BY m.name, i.name",
        Object::Views => "SELECT name AS view_name, sql AS definition FROM sqlite_schema
             WHERE type = 'view' AND (?1 IS NULL OR name = ?1) ORDER BY name",
    }
}

/// The metadata query of `k` on a PostgreSQL database (`$1` = schema, `$2` = table, or NULL).
pub fn pg_meta(k: Object) -> &'static str {
    match k {
        Object::Tables => "SELECT table_schema, table_name, table_type FROM information_schema.tables
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE'
               AND ($1::text IS NULL OR table_schema = $1) AND ($2::text IS NULL OR table_name = $2)
             ORDER BY table_schema, table_name",
        Object::Columns => "SELECT table_schema, table_name, ordinal_position AS position, column_name, data_type,
               is_nullable, column_default FROM information_schema.columns
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
               AND ($1::text IS NULL OR table_schema = $1) AND ($2::text IS NULL OR table_name = $2)
             ORDER BY table_schema, table_name, ordinal_position",
        Object::Indexes => "SELECT schemaname AS table_schema, tablename AS table_name, indexname AS index_name, indexdef
             FROM pg_indexes WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
               AND ($1::text IS NULL OR schemaname = $1) AND ($2::text IS NULL OR tablename = $2)
             ORDER BY schemaname, tablename, indexname",
        Object::Views => "SELECT table_schema, table_name AS view_name, view_definition AS definition
             FROM information_schema.views WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
               AND ($1::text IS NULL OR table_schema = $1) AND ($2::text IS NULL OR table_name = $2)
             ORDER BY table_schema, table_name",
    }
}
