//! The replica side of every pipeline: tables in trexdb's main file (`data/main.db`), named
//! `<schema>__<table>` for a PostgreSQL source and `<databaseId>__<table>` for a SQLite one,
//! plus two bookkeeping tables there that user SQL may read but not write (the engine's
//! authorizer refuses it):
//!
//! - `_trex_etl_checkpoints(pipeline_id, phase, position, rows, updated_at)` — where the
//!   pipeline is: `phase` `snapshotting` (the initial copy runs; a restart starts it again from
//!   scratch), `streaming` (changes up to `position` are applied: the end LSN of the last
//!   applied PostgreSQL commit, or the last change-table sequence of a SQLite source) or `done`
//!   (a finished `copy_only`).
//! - `_trex_etl_tables(pipeline_id, source, target, spec)` — which replica tables a pipeline
//!   owns, with the column description they were made from (a later schema difference is
//!   detected against it).
//!
//! Every batch of changes and the checkpoint commit in **one** SQLite transaction on this
//! file, so after a crash the replica and its checkpoint agree; the source is told a position
//! only after that commit. [`Applier`] does the writing on a thread of its own (never on the
//! async runtime), committing at source transaction boundaries only: when nothing more is
//! queued, when `batchSize` changes are waiting, or when `batchTimeoutMs` has passed.
//! Updates and deletes that find no row, and inserts that find one, are errors — the replica
//! has diverged (someone wrote to it) and the pipeline stops rather than drift.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use serde::{Deserialize, Serialize};

use super::Live;
use super::pgtext::Kind;

/// The bookkeeping tables (created on first use).
const BOOKKEEPING: &str = "
CREATE TABLE IF NOT EXISTS _trex_etl_checkpoints (
    pipeline_id TEXT PRIMARY KEY,
    phase       TEXT NOT NULL,
    position    INTEGER NOT NULL DEFAULT 0,
    rows        INTEGER NOT NULL DEFAULT 0,
    updated_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS _trex_etl_tables (
    pipeline_id TEXT NOT NULL,
    source      TEXT NOT NULL,
    target      TEXT NOT NULL UNIQUE,
    spec        TEXT NOT NULL,
    PRIMARY KEY (pipeline_id, source)
);";

/// A replica column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    /// The source type's OID (0 for a SQLite source).
    pub type_oid: u32,
    /// The source type as the source names it (`numeric(12,2)`, `INTEGER`).
    pub type_name: String,
    pub kind: Kind,
    /// An array's element kind.
    pub elem: Kind,
    /// Part of the source's replica identity (its primary key, for most tables).
    pub key: bool,
}

/// How updates and deletes find their row in the replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Match {
    /// By the key columns (the replica's primary key).
    Key,
    /// By every column (replica identity full; no key in the replica).
    Full,
    /// By SQLite rowid (a SQLite source).
    Rowid,
    /// Inserts only (replica identity nothing).
    None,
}

/// One replicated table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableSpec {
    pub schema: String,
    pub name: String,
    pub target: String,
    pub columns: Vec<Column>,
    pub matching: Match,
    /// The SQLite source's `INTEGER PRIMARY KEY` column, kept as the replica's rowid alias.
    #[serde(default)]
    pub rowid_alias: Option<String>,
    /// The PostgreSQL source table's oid (a rename or a drop and re-create is seen by it).
    #[serde(default)]
    pub oid: Option<u32>,
}

impl TableSpec {
    /// `schema.name`, as `_trex_etl_tables.source` and messages name it.
    pub fn source(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    fn keys(&self) -> Vec<usize> {
        (0..self.columns.len())
            .filter(|&i| self.columns[i].key)
            .collect()
    }

    fn ddl(&self) -> String {
        let mut cols: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                if self.rowid_alias.as_deref() == Some(c.name.as_str()) {
                    format!("{} INTEGER PRIMARY KEY", ident(&c.name))
                } else if self.matching == Match::Rowid {
                    // a SQLite source keeps its declared type (same engine, same affinity) when
                    // it is a plain type name; anything else gets the affinity it stands for
                    format!("{} {}", ident(&c.name), declared_type(&c.type_name))
                } else {
                    format!("{} {}", ident(&c.name), c.kind.sqlite_type())
                }
            })
            .collect();
        if self.matching == Match::Key {
            let keys: Vec<String> = self
                .keys()
                .iter()
                .map(|&i| ident(&self.columns[i].name))
                .collect();
            cols.push(format!("PRIMARY KEY ({})", keys.join(", ")));
        }
        format!("CREATE TABLE {} ({})", ident(&self.target), cols.join(", "))
    }
}

/// A SQLite source column's declared type as the replica declares it: the name itself when it
/// is words, digits and a size such as `VARCHAR(20)`, else the affinity SQLite gives it — never
/// text pasted into DDL as it came.
fn declared_type(t: &str) -> String {
    let plain = t.len() <= 64
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '(' | ')' | ','))
        && t.chars().filter(|&c| c == '(').count() <= 1
        && t.chars().filter(|&c| c == ')').count() == t.chars().filter(|&c| c == '(').count();
    if plain {
        return t.to_string();
    }
    // SQLite's affinity rules (https://sqlite.org/datatype3.html §3.1)
    let u = t.to_ascii_uppercase();
    if u.contains("INT") {
        "INTEGER"
    } else if u.contains("CHAR") || u.contains("CLOB") || u.contains("TEXT") {
        "TEXT"
    } else if u.contains("BLOB") || u.is_empty() {
        "BLOB"
    } else if u.contains("REAL") || u.contains("FLOA") || u.contains("DOUB") {
        "REAL"
    } else {
        "NUMERIC"
    }
    .to_string()
}

/// An SQL identifier, quoted.
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// What the applier is told to do.
#[derive(Debug)]
pub enum Op {
    /// Rows of the initial copy of table `table` (index into the specs); a SQLite source's rows
    /// start with their rowid.
    Rows {
        table: usize,
        rows: Vec<Vec<Value>>,
    },
    /// The initial copy is complete; changes after `position` follow (`phase` `streaming`), or
    /// there is nothing more (`done`).
    SnapshotDone {
        position: u64,
        phase: &'static str,
    },
    Insert {
        table: usize,
        row: Vec<Value>,
    },
    /// `key`: the values that find the row (key columns, every column for `Full`, or the rowid);
    /// `set`: the columns that change (TOASTed unchanged values are left out).
    Update {
        table: usize,
        key: Vec<Value>,
        set: Vec<(usize, Value)>,
    },
    Delete {
        table: usize,
        key: Vec<Value>,
    },
    Truncate {
        tables: Vec<usize>,
    },
    /// A SQLite source's row as it is now (`None`: gone).
    Upsert {
        table: usize,
        rowid: i64,
        row: Option<Vec<Value>>,
    },
    /// The end of a source transaction: changes up to `position` are all sent.
    End {
        position: u64,
        commit_time_ms: Option<i64>,
    },
}

/// Batch settings.
#[derive(Debug, Clone, Copy)]
pub struct Batch {
    pub size: usize,
    pub timeout: Duration,
}

/// Where a pipeline stands in the replica.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub phase: String,
    pub position: u64,
    pub rows: u64,
}

fn err(e: rusqlite::Error) -> String {
    format!("trexdb: {e}")
}

/// Opens the replica file for writing.
pub fn open(path: &Path) -> Result<Connection, String> {
    let c = Connection::open(path).map_err(err)?;
    c.busy_timeout(Duration::from_secs(30)).map_err(err)?;
    // FULL: a batch's commit is on disk before the source is told it may forget those changes
    c.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
        .map_err(err)?;
    c.set_prepared_statement_cache_capacity(256);
    c.execute_batch(BOOKKEEPING).map_err(err)?;
    Ok(c)
}

/// The checkpoint of `pipeline`, if it has one.
pub fn checkpoint(c: &Connection, pipeline: &str) -> Result<Option<Checkpoint>, String> {
    c.query_row(
        "SELECT phase, position, rows FROM _trex_etl_checkpoints WHERE pipeline_id = ?1",
        [pipeline],
        |r| {
            Ok(Checkpoint {
                phase: r.get(0)?,
                position: r.get::<_, i64>(1)? as u64,
                rows: r.get::<_, i64>(2)? as u64,
            })
        },
    )
    .optional()
    .map_err(err)
}

/// Every pipeline's `(phase, position, rows)` in `path` (for listings; empty if the file has
/// no bookkeeping yet).
pub fn all_checkpoints(path: &Path) -> Vec<(String, Checkpoint)> {
    let Ok(c) = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return Vec::new();
    };
    let _ = c.busy_timeout(Duration::from_secs(5));
    let Ok(mut st) =
        c.prepare("SELECT pipeline_id, phase, position, rows FROM _trex_etl_checkpoints")
    else {
        return Vec::new();
    };
    st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            Checkpoint {
                phase: r.get(1)?,
                position: r.get::<_, i64>(2)? as u64,
                rows: r.get::<_, i64>(3)? as u64,
            },
        ))
    })
    .map(|rows| rows.filter_map(|r| r.ok()).collect())
    .unwrap_or_default()
}

/// Every `(pipeline, replica table)` in `path` (for listings).
pub fn all_targets(path: &Path) -> Vec<(String, String)> {
    let Ok(c) = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return Vec::new();
    };
    let _ = c.busy_timeout(Duration::from_secs(5));
    let Ok(mut st) = c.prepare("SELECT pipeline_id, target FROM _trex_etl_tables ORDER BY rowid")
    else {
        return Vec::new();
    };
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map(|rows| rows.filter_map(|r| r.ok()).collect())
        .unwrap_or_default()
}

/// The table specs `pipeline` owns, in the order they were made.
pub fn owned(c: &Connection, pipeline: &str) -> Result<Vec<TableSpec>, String> {
    let mut st = c
        .prepare("SELECT spec FROM _trex_etl_tables WHERE pipeline_id = ?1 ORDER BY rowid")
        .map_err(err)?;
    let specs = st
        .query_map([pipeline], |r| r.get::<_, String>(0))
        .map_err(err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(err)?;
    specs
        .iter()
        .map(|s| serde_json::from_str(s).map_err(|e| format!("trexdb: a table spec: {e}")))
        .collect()
}

/// Starts `pipeline` afresh in the replica: drops the tables it owned, checks that no other
/// pipeline's (or user's) table has a wanted name, creates the replica tables and writes the
/// checkpoint (`phase`, `position`), all in one transaction.
pub fn prepare(
    c: &mut Connection,
    pipeline: &str,
    tables: &[TableSpec],
    phase: &str,
    position: u64,
) -> Result<(), String> {
    let tx = c
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(err)?;
    drop_owned(&tx, pipeline, true)?;
    for t in tables {
        let other: Option<String> = tx
            .query_row(
                "SELECT pipeline_id FROM _trex_etl_tables WHERE target = ?1",
                [&t.target],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?;
        if let Some(other) = other {
            return Err(format!(
                "trexdb table {} is already the replica of another pipeline ({other}); delete that pipeline first",
                t.target
            ));
        }
        let exists: bool = tx
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_schema WHERE name = ?1 COLLATE NOCASE",
                [&t.target],
                |r| r.get(0),
            )
            .map_err(err)?;
        if exists {
            return Err(format!(
                "trexdb already has a table {} that no pipeline made; drop or rename it, or replicate into another name",
                t.target
            ));
        }
        tx.execute_batch(&t.ddl()).map_err(err)?;
        tx.execute(
            "INSERT INTO _trex_etl_tables (pipeline_id, source, target, spec) VALUES (?1, ?2, ?3, ?4)",
            params![
                pipeline,
                t.source(),
                t.target,
                serde_json::to_string(t).expect("json")
            ],
        )
        .map_err(err)?;
    }
    tx.execute(
        "INSERT INTO _trex_etl_checkpoints (pipeline_id, phase, position, rows, updated_at)
         VALUES (?1, ?2, ?3, 0, ?4)
         ON CONFLICT (pipeline_id) DO UPDATE SET phase = ?2, position = ?3, rows = 0, updated_at = ?4",
        params![pipeline, phase, position as i64, crate::util::now_rfc3339()],
    )
    .map_err(err)?;
    tx.commit().map_err(err)
}

fn drop_owned(c: &Connection, pipeline: &str, tables: bool) -> Result<(), String> {
    if tables {
        let mut st = c
            .prepare("SELECT target FROM _trex_etl_tables WHERE pipeline_id = ?1")
            .map_err(err)?;
        let targets = st
            .query_map([pipeline], |r| r.get::<_, String>(0))
            .map_err(err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(err)?;
        for t in targets {
            c.execute_batch(&format!("DROP TABLE IF EXISTS {}", ident(&t)))
                .map_err(err)?;
        }
    }
    c.execute(
        "DELETE FROM _trex_etl_tables WHERE pipeline_id = ?1",
        [pipeline],
    )
    .map_err(err)?;
    Ok(())
}

/// Forgets `pipeline` in the replica: its checkpoint and table ownership, and its tables too
/// with `drop_tables`.
pub fn forget(path: &Path, pipeline: &str, drop_tables: bool) -> Result<(), String> {
    let mut c = open(path)?;
    let tx = c
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(err)?;
    drop_owned(&tx, pipeline, drop_tables)?;
    tx.execute(
        "DELETE FROM _trex_etl_checkpoints WHERE pipeline_id = ?1",
        [pipeline],
    )
    .map_err(err)?;
    tx.commit().map_err(err)
}

/// Writes changes into the replica in batches with the checkpoint (see the module docs).
pub struct Applier {
    conn: Connection,
    pipeline: String,
    tables: Vec<TableSpec>,
    batch: Batch,
    live: Arc<Live>,
    /// A transaction is open.
    open: bool,
    /// The position of the last source transaction end not yet committed.
    pending: Option<u64>,
    /// The commit times (ms) of the source transactions in the open batch.
    commit_times: Vec<i64>,
    /// Changes in the open batch.
    changes: u64,
    started: Instant,
    rows: u64,
    phase: String,
    position: u64,
    /// The statements made so far, by (table, kind, changed columns): built once, not per row.
    sqls: HashMap<(usize, u8, Vec<usize>), Arc<str>>,
    /// Changes were applied after the last source transaction end (they belong to a source
    /// transaction not seen to its end yet, undone if the batch must close now).
    since_end: bool,
    /// `rows` at the last source transaction end.
    rows_at_end: u64,
}

impl Applier {
    /// An applier for `pipeline`, its tables as `tables`, continuing from `at`.
    pub fn new(
        path: &Path,
        pipeline: &str,
        tables: Vec<TableSpec>,
        batch: Batch,
        live: Arc<Live>,
        at: &Checkpoint,
    ) -> Result<Applier, String> {
        Ok(Applier {
            conn: open(path)?,
            pipeline: pipeline.into(),
            tables,
            batch,
            live,
            open: false,
            pending: None,
            commit_times: Vec::new(),
            changes: 0,
            started: Instant::now(),
            rows: at.rows,
            phase: at.phase.clone(),
            position: at.position,
            sqls: HashMap::new(),
            since_end: false,
            rows_at_end: at.rows,
        })
    }

    /// The replica tables.
    pub fn tables(&self) -> &[TableSpec] {
        &self.tables
    }

    /// Opens a batch, with a savepoint marking where the next source transaction starts.
    fn begin(&mut self) -> Result<(), String> {
        if !self.open {
            self.conn
                .execute_batch("BEGIN IMMEDIATE; SAVEPOINT trex_end")
                .map_err(err)?;
            self.open = true;
            self.since_end = false;
            self.started = Instant::now();
        }
        Ok(())
    }

    /// A change of a source transaction begins in the batch.
    fn change(&mut self) -> Result<(), String> {
        self.begin()?;
        if !self.since_end {
            self.rows_at_end = self.rows;
        }
        self.since_end = true;
        Ok(())
    }

    /// Applies one operation; commits when the batch rules say so (`queue_empty`: nothing more
    /// is waiting to be applied).
    pub fn apply(&mut self, op: Op, queue_empty: bool) -> Result<(), String> {
        match op {
            Op::Rows { table, rows } => {
                self.begin()?;
                let n = rows.len() as u64;
                // a SQLite source's rows come with their rowid first, as the statement takes it
                let by_rowid = self.tables[table].matching == Match::Rowid;
                let sql = self.insert_sql(table, by_rowid)?;
                let width = self.tables[table].columns.len() + by_rowid as usize;
                let mut st = self.conn.prepare_cached(&sql).map_err(err)?;
                for row in rows {
                    if row.len() != width {
                        return Err(format!(
                            "{}: a copied row has {} values, not {width}",
                            self.tables[table].source(),
                            row.len()
                        ));
                    }
                    st.execute(params_from_iter(row))
                        .map_err(|e| insert_error(&self.tables[table], e))?;
                }
                drop(st);
                self.rows += n;
                self.changes += n;
                // the copy commits in large pieces (a crash restarts it anyway)
                if self.changes >= 50_000 {
                    self.commit()?;
                }
            }
            Op::SnapshotDone { position, phase } => {
                self.begin()?;
                self.phase = phase.into();
                self.position = position;
                self.pending = Some(position);
                self.commit()?;
            }
            Op::Insert { table, row } => {
                self.change()?;
                self.insert(table, row, None)?;
                self.counted();
            }
            Op::Update { table, key, set } => {
                self.change()?;
                self.update(table, key, set)?;
                self.counted();
            }
            Op::Delete { table, key } => {
                self.change()?;
                self.delete(table, key)?;
                self.counted();
            }
            Op::Truncate { tables } => {
                self.change()?;
                for t in tables {
                    let sql = format!("DELETE FROM {}", ident(&self.tables[t].target));
                    self.conn.execute(&sql, []).map_err(err)?;
                }
                self.counted();
            }
            Op::Upsert { table, rowid, row } => {
                self.change()?;
                let sql = self.statement((table, 4, Vec::new()), |_, t| {
                    Ok(format!("DELETE FROM {} WHERE rowid = ?1", ident(&t.target)))
                })?;
                self.conn
                    .prepare_cached(&sql)
                    .map_err(err)?
                    .execute([rowid])
                    .map_err(err)?;
                if let Some(row) = row {
                    self.insert(table, row, Some(rowid))?;
                }
                self.counted();
            }
            Op::End {
                position,
                commit_time_ms,
            } => {
                self.pending = Some(position);
                if let Some(t) = commit_time_ms {
                    self.commit_times.push(t);
                }
                if self.open
                    && (queue_empty
                        || self.changes >= self.batch.size as u64
                        || self.started.elapsed() >= self.batch.timeout)
                {
                    self.commit()?;
                } else if self.open {
                    // the batch stays open: the next source transaction starts here
                    self.conn
                        .execute_batch("RELEASE trex_end; SAVEPOINT trex_end")
                        .map_err(err)?;
                    self.since_end = false;
                } else {
                    // a transaction with nothing for us (other tables): just move on
                    self.begin()?;
                    if queue_empty {
                        self.commit()?;
                    }
                }
            }
        }
        Ok(())
    }

    fn counted(&mut self) {
        self.rows += 1;
        self.changes += 1;
    }

    /// Commits the open batch with the checkpoint at the last transaction end, if any is open.
    pub fn commit(&mut self) -> Result<(), String> {
        if !self.open {
            return Ok(());
        }
        if let Some(p) = self.pending.take() {
            self.position = p;
        }
        self.conn
            .prepare_cached(
                "INSERT INTO _trex_etl_checkpoints (pipeline_id, phase, position, rows, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (pipeline_id) DO UPDATE SET phase = ?2, position = ?3, rows = ?4, updated_at = ?5",
            )
            .map_err(err)?
            .execute(params![
                self.pipeline,
                self.phase,
                self.position as i64,
                self.rows as i64,
                crate::util::now_rfc3339()
            ])
            .map_err(err)?;
        self.conn.execute_batch("COMMIT").map_err(err)?;
        self.open = false;
        self.changes = 0;
        let now = crate::util::now_ms();
        self.live.rows.store(self.rows, Ordering::Relaxed);
        self.live.last_activity_ms.store(now, Ordering::Relaxed);
        if self.phase == "streaming" {
            self.live
                .applied
                .fetch_max(self.position, Ordering::Release);
        }
        let lags: Vec<i64> = self
            .commit_times
            .drain(..)
            .map(|t| (now - t).max(0))
            .collect();
        self.live.record_lags(&lags);
        Ok(())
    }

    /// Commits what is open (a stop, a lost connection, the end of a poll) up to the last source
    /// transaction end: the changes of a transaction not seen to its end are undone, so the
    /// replica only ever holds whole source transactions and the checkpoint matches it. The
    /// source sends that transaction again, whole, from the checkpoint.
    pub fn flush(&mut self) -> Result<(), String> {
        if self.open && self.since_end {
            self.conn
                .execute_batch("ROLLBACK TO trex_end")
                .map_err(err)?;
            self.rows = self.rows_at_end;
            self.since_end = false;
        }
        self.commit()
    }

    /// The statement of `key`, made by `make` the first time.
    fn statement(
        &mut self,
        key: (usize, u8, Vec<usize>),
        make: impl FnOnce(&Applier, &TableSpec) -> Result<String, String>,
    ) -> Result<Arc<str>, String> {
        if let Some(s) = self.sqls.get(&key) {
            return Ok(s.clone());
        }
        let sql: Arc<str> = make(self, &self.tables[key.0])?.into();
        self.sqls.insert(key, sql.clone());
        Ok(sql)
    }

    fn insert(&mut self, table: usize, row: Vec<Value>, rowid: Option<i64>) -> Result<(), String> {
        let t = &self.tables[table];
        if row.len() != t.columns.len() {
            return Err(format!(
                "{}: a row has {} columns, the replica {}",
                t.source(),
                row.len(),
                t.columns.len()
            ));
        }
        let sql = self.insert_sql(table, rowid.is_some())?;
        let t = &self.tables[table];
        let mut st = self.conn.prepare_cached(&sql).map_err(err)?;
        let r = match rowid {
            Some(id) => st.execute(params_from_iter(
                std::iter::once(Value::Integer(id)).chain(row),
            )),
            None => st.execute(params_from_iter(row)),
        };
        r.map(|_| ()).map_err(|e| insert_error(t, e))
    }

    /// The INSERT of `table` (with the rowid as its first value when `with_rowid`).
    fn insert_sql(&mut self, table: usize, with_rowid: bool) -> Result<Arc<str>, String> {
        self.statement((table, with_rowid as u8, Vec::new()), |_, t| {
            let names: Vec<String> = t.columns.iter().map(|c| ident(&c.name)).collect();
            let n = names.len() + with_rowid as usize;
            let marks: Vec<String> = (1..=n).map(|i| format!("?{i}")).collect();
            Ok(format!(
                "INSERT INTO {} ({}{}) VALUES ({})",
                ident(&t.target),
                if with_rowid { "rowid, " } else { "" },
                names.join(", "),
                marks.join(", ")
            ))
        })
    }

    fn where_clause(&self, table: usize, first: usize) -> (String, Vec<usize>) {
        let t = &self.tables[table];
        let cols: Vec<usize> = match t.matching {
            Match::Key => t.keys(),
            _ => (0..t.columns.len()).collect(),
        };
        let w = cols
            .iter()
            .enumerate()
            .map(|(n, &i)| format!("{} IS ?{}", ident(&t.columns[i].name), first + n))
            .collect::<Vec<_>>()
            .join(" AND ");
        (w, cols)
    }

    fn located(&self, table: usize, first: usize) -> Result<String, String> {
        let t = &self.tables[table];
        match t.matching {
            Match::None => Err(format!(
                "{} has replica identity nothing: its updates and deletes cannot be replicated",
                t.source()
            )),
            Match::Key => Ok(self.where_clause(table, first).0),
            Match::Full => Ok(format!(
                "rowid = (SELECT rowid FROM {} WHERE {} LIMIT 1)",
                ident(&t.target),
                self.where_clause(table, first).0
            )),
            Match::Rowid => Ok(format!("rowid = ?{first}")),
        }
    }

    fn key_values(&self, table: usize, key: Vec<Value>) -> Vec<Value> {
        let t = &self.tables[table];
        match t.matching {
            Match::Key => t
                .keys()
                .into_iter()
                .map(|i| key.get(i).cloned().unwrap_or(Value::Null))
                .collect(),
            _ => key,
        }
    }

    fn diverged(&self, table: usize, what: &str, key: &[Value]) -> String {
        let t = &self.tables[table];
        let shown: Vec<String> = key
            .iter()
            .take(4)
            .map(|v| match v {
                Value::Null => "NULL".into(),
                Value::Integer(i) => i.to_string(),
                Value::Real(f) => f.to_string(),
                Value::Text(s) => format!("'{}'", s.chars().take(40).collect::<String>()),
                Value::Blob(b) => format!("<{} bytes>", b.len()),
            })
            .collect();
        format!(
            "the replica has diverged: {what} of {} found no row with key ({}) in {}; was the replica written to?",
            t.source(),
            shown.join(", "),
            t.target
        )
    }

    fn update(
        &mut self,
        table: usize,
        key: Vec<Value>,
        set: Vec<(usize, Value)>,
    ) -> Result<(), String> {
        if set.is_empty() {
            return Ok(());
        }
        let key = self.key_values(table, key);
        let cols: Vec<usize> = set.iter().map(|(i, _)| *i).collect();
        let sql = self.statement((table, 2, cols), |a, t| {
            let loc = a.located(table, set.len() + 1)?;
            let assigns: Vec<String> = set
                .iter()
                .enumerate()
                .map(|(n, (i, _))| format!("{} = ?{}", ident(&t.columns[*i].name), n + 1))
                .collect();
            Ok(format!(
                "UPDATE {} SET {} WHERE {loc}",
                ident(&t.target),
                assigns.join(", ")
            ))
        })?;
        let t = &self.tables[table];
        let n = self
            .conn
            .prepare_cached(&sql)
            .map_err(err)?
            .execute(params_from_iter(
                set.into_iter().map(|(_, v)| v).chain(key.iter().cloned()),
            ))
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    format!(
                        "the replica has diverged: an update of {} ({})",
                        t.target,
                        err(e)
                    )
                }
                e => err(e),
            })?;
        if n != 1 {
            return Err(self.diverged(table, "an update", &key));
        }
        Ok(())
    }

    fn delete(&mut self, table: usize, key: Vec<Value>) -> Result<(), String> {
        let key = self.key_values(table, key);
        let sql = self.statement((table, 3, Vec::new()), |a, t| {
            let loc = a.located(table, 1)?;
            Ok(format!("DELETE FROM {} WHERE {loc}", ident(&t.target)))
        })?;
        let n = self
            .conn
            .prepare_cached(&sql)
            .map_err(err)?
            .execute(params_from_iter(key.iter()))
            .map_err(err)?;
        if n != 1 {
            return Err(self.diverged(table, "a delete", &key));
        }
        Ok(())
    }

    /// Undoes the open batch (the pipeline stops on an error; what was committed stays).
    pub fn rollback(&mut self) {
        if self.open {
            let _ = self.conn.execute_batch("ROLLBACK");
            self.open = false;
        }
    }
}

/// An insert's error; a key already there means the replica diverged.
fn insert_error(t: &TableSpec, e: rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            format!(
                "the replica has diverged: an insert into {} found its key already there ({}); was the replica written to?",
                t.target,
                err(e)
            )
        }
        e => err(e),
    }
}

/// Runs an [`Applier`] on a thread of its own, fed by a bounded channel; the thread ends when
/// the channel closes (after committing what is open) or on the first error, which the handle
/// returns.
pub fn spawn(
    mut applier: Applier,
    capacity: usize,
) -> (
    tokio::sync::mpsc::Sender<Op>,
    std::thread::JoinHandle<Result<(), String>>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Op>(capacity);
    let handle = std::thread::Builder::new()
        .name("trex-etl-apply".into())
        .spawn(move || {
            let r = (|| {
                while let Some(op) = rx.blocking_recv() {
                    let empty = rx.is_empty();
                    applier.apply(op, empty)?;
                }
                applier.flush()
            })();
            if r.is_err() {
                applier.rollback();
            }
            r
        })
        .expect("spawning the applier thread");
    (tx, handle)
}
