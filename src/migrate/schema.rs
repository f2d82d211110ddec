//! What a target's schema is — tables with their columns, and indexes — read from SQLite's
//! catalog or PostgreSQL's `information_schema`, its SHA-256 digest (a migrate run is refused
//! when a target's digest differs from the one its passing test saw) and the difference between
//! two schemas (the test report's "before and after").

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::LEDGER;

/// A schema: tables (name → columns as `name type [NOT NULL] [PK] [DEFAULT x]`) and indexes
/// (name → definition).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Schema {
    pub tables: BTreeMap<String, Vec<String>>,
    pub indexes: BTreeMap<String, String>,
}

impl Schema {
    /// SHA-256 of the schema's canonical JSON.
    pub fn digest(&self) -> String {
        super::checksum(serde_json::to_string(self).expect("json").as_bytes())
    }
}

/// What changed between two schemas.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Diff {
    pub tables_added: Vec<String>,
    pub tables_dropped: Vec<String>,
    /// Per table that exists before and after: columns added, dropped or changed.
    pub columns: BTreeMap<String, ColumnDiff>,
    pub indexes_added: Vec<String>,
    pub indexes_dropped: Vec<String>,
    pub indexes_changed: Vec<String>,
}

/// Column changes of one table.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct ColumnDiff {
    pub added: Vec<String>,
    pub dropped: Vec<String>,
    pub changed: Vec<String>,
}

fn column_name(c: &str) -> &str {
    c.split_whitespace().next().unwrap_or(c)
}

/// The difference from `a` to `b`.
pub fn diff(a: &Schema, b: &Schema) -> Diff {
    let mut d = Diff::default();
    for (t, cols) in &b.tables {
        match a.tables.get(t) {
            None => d.tables_added.push(t.clone()),
            Some(old) => {
                let mut cd = ColumnDiff::default();
                for c in cols {
                    match old.iter().find(|o| column_name(o) == column_name(c)) {
                        None => cd.added.push(c.clone()),
                        Some(o) if o != c => cd.changed.push(format!("{o} -> {c}")),
                        Some(_) => {}
                    }
                }
                for o in old {
                    if !cols.iter().any(|c| column_name(c) == column_name(o)) {
                        cd.dropped.push(o.clone());
                    }
                }
                if !(cd.added.is_empty() && cd.dropped.is_empty() && cd.changed.is_empty()) {
                    d.columns.insert(t.clone(), cd);
                }
            }
        }
    }
    d.tables_dropped = a
        .tables
        .keys()
        .filter(|t| !b.tables.contains_key(*t))
        .cloned()
        .collect();
    for (i, def) in &b.indexes {
        match a.indexes.get(i) {
            None => d.indexes_added.push(i.clone()),
            Some(o) if o != def => d.indexes_changed.push(i.clone()),
            Some(_) => {}
        }
    }
    d.indexes_dropped = a
        .indexes
        .keys()
        .filter(|i| !b.indexes.contains_key(*i))
        .cloned()
        .collect();
    d
}

/// The schema of a SQLite connection's main database (its internal tables and the ledgers —
/// the database's own and plugins' — left out).
pub fn sqlite(c: &rusqlite::Connection) -> rusqlite::Result<Schema> {
    let mut s = Schema::default();
    let tables: Vec<String> = c
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
             AND name <> ?1 AND name NOT LIKE 'trex\\_plugin\\_%\\_history' ESCAPE '\\' ORDER BY name",
        )?
        .query_map([LEDGER], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for t in tables {
        let cols: Vec<String> = c
            .prepare("SELECT name, type, \"notnull\", pk, dflt_value FROM pragma_table_info(?1) ORDER BY cid")?
            .query_map([&t], |r| {
                let (name, ty, nn, pk, dflt): (String, String, bool, i64, Option<String>) =
                    (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
                Ok(column(&name, &ty, nn, pk > 0, dflt.as_deref()))
            })?
            .collect::<rusqlite::Result<_>>()?;
        s.tables.insert(t, cols);
    }
    let idx: Vec<(String, String)> = c
        .prepare(
            "SELECT name, coalesce(sql, 'auto: ' || tbl_name) FROM sqlite_schema WHERE type = 'index'
             AND tbl_name <> ?1 AND tbl_name NOT LIKE 'trex\\_plugin\\_%\\_history' ESCAPE '\\' ORDER BY name",
        )?
        .query_map([LEDGER], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    s.indexes.extend(idx);
    Ok(s)
}

fn column(name: &str, ty: &str, not_null: bool, pk: bool, default: Option<&str>) -> String {
    let mut c = format!("{name} {ty}");
    if not_null {
        c.push_str(" NOT NULL");
    }
    if pk {
        c.push_str(" PK");
    }
    if let Some(d) = default {
        c.push_str(&format!(" DEFAULT {d}"));
    }
    c.trim().to_string()
}

/// The schema of a PostgreSQL database (every schema but the system ones; the ledger left out).
pub async fn postgres(
    c: &impl tokio_postgres::GenericClient,
) -> Result<Schema, tokio_postgres::Error> {
    let mut s = Schema::default();
    let rows = c
        .query(
            "SELECT c.table_schema || '.' || c.table_name, c.column_name, c.data_type, c.is_nullable = 'NO',
                    coalesce(c.column_default, '')
             FROM information_schema.columns c JOIN information_schema.tables t
               ON t.table_schema = c.table_schema AND t.table_name = c.table_name
             WHERE c.table_schema NOT IN ('pg_catalog', 'information_schema') AND t.table_type = 'BASE TABLE'
               AND c.table_name <> $1 AND c.table_name NOT LIKE 'trex\\_plugin\\_%\\_history'
             ORDER BY 1, c.ordinal_position",
            &[&LEDGER],
        )
        .await?;
    for r in rows {
        let (t, n, ty, nn, d): (String, String, String, bool, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        let d = (!d.is_empty()).then_some(d);
        s.tables
            .entry(t)
            .or_default()
            .push(column(&n, &ty, nn, false, d.as_deref()));
    }
    let idx = c
        .query(
            "SELECT schemaname || '.' || indexname, indexdef FROM pg_indexes
             WHERE schemaname NOT IN ('pg_catalog', 'information_schema') AND tablename <> $1
               AND tablename NOT LIKE 'trex\\_plugin\\_%\\_history' ORDER BY 1",
            &[&LEDGER],
        )
        .await?;
    for r in idx {
        s.indexes.insert(r.get(0), r.get(1));
    }
    Ok(s)
}
