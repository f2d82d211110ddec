//! The SQLite source (a registered `sqlite` database): `copy_only` reads the file read-only;
//! the change-capture modes install, into the source file, a change table
//! `_trex_changes_<id>(seq, tbl, rid, at)` and three triggers per table
//! (`_trex_<id>_i_<table>`, `_u_`, `_d_`) that record which rowid changed. The pipeline polls
//! the change table (`PRAGMA data_version` tells when another connection committed), reads each
//! changed row as it is now inside one read transaction, and applies it as an upsert or a
//! delete; the checkpoint is the last change sequence applied, committed with the batch.
//! Applying the state of a row is idempotent, so a batch re-read after a crash changes
//! nothing twice. Consumed change rows are deleted from the source after the replica commit.
//! `etl-delete-pipeline` removes the triggers and the change table ([`uninstall`]).
//!
//! Tables `WITHOUT ROWID` are not supported. A schema change of a replicated table, or a
//! dropped trigger, stops the pipeline in `error`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::target::{self, Applier, Checkpoint, Column, Match, Op, TableSpec, ident};
use super::{Fail, Outcome, Run};

/// How often the source is looked at when nothing changed.
const POLL: Duration = Duration::from_millis(100);

fn err(e: rusqlite::Error) -> String {
    format!("source: {e}")
}

fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The suffix of this pipeline's change objects (the slot name without `trex_`).
fn suffix(run_slot: &str) -> String {
    run_slot.trim_start_matches("trex_").to_string()
}

fn change_table(slot: &str) -> String {
    format!("_trex_changes_{}", suffix(slot))
}

fn trigger(slot: &str, op: char, table: &str) -> String {
    format!("_trex_{}_{op}_{table}", suffix(slot))
}

fn open(path: &Path, write: bool) -> Result<Connection, Fail> {
    if !path.is_file() {
        return Err(Fail::Fatal(format!(
            "the source file {} does not exist",
            path.display()
        )));
    }
    let flags = if write {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let c = Connection::open_with_flags(path, flags)
        .map_err(|e| Fail::Fatal(format!("opening {}: {e}", path.display())))?;
    c.busy_timeout(Duration::from_secs(10))
        .map_err(|e| Fail::Fatal(err(e)))?;
    Ok(c)
}

/// The tables to replicate, described from the source.
pub fn catalog(c: &Connection, run: &Run) -> Result<Vec<TableSpec>, String> {
    let mut st = c
        .prepare(
            "SELECT name, sql FROM sqlite_schema WHERE type = 'table'
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_trex\\_%' ESCAPE '\\'
             ORDER BY name",
        )
        .map_err(err)?;
    let all: Vec<(String, String)> = st
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get::<_, Option<String>>(1)?.unwrap_or_default(),
            ))
        })
        .map_err(err)?
        .collect::<rusqlite::Result<_>>()
        .map_err(err)?;
    if let Some(wanted) = &run.tables {
        for w in wanted {
            if !all
                .iter()
                .any(|(n, _)| super::selected(&Some(vec![w.clone()]), &run.database_id, n))
            {
                return Err(format!(
                    "table '{w}' is not in database '{}'",
                    run.database_id
                ));
            }
        }
    }
    let mut out = Vec::new();
    for (name, sql) in all
        .iter()
        .filter(|(n, _)| super::selected(&run.tables, &run.database_id, n))
    {
        if sql.to_ascii_uppercase().contains("WITHOUT ROWID") {
            return Err(format!(
                "table '{name}' is WITHOUT ROWID, which pipelines do not replicate; leave it out with `tables`"
            ));
        }
        out.push(describe(c, &run.database_id, name)?);
    }
    if out.is_empty() {
        return Err(format!("database '{}' has no tables", run.database_id));
    }
    Ok(out)
}

fn describe(c: &Connection, database_id: &str, name: &str) -> Result<TableSpec, String> {
    let mut st = c
        .prepare("SELECT name, type, pk FROM pragma_table_info(?1) ORDER BY cid")
        .map_err(err)?;
    let cols: Vec<(String, String, i64)> = st
        .query_map([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(err)?
        .collect::<rusqlite::Result<_>>()
        .map_err(err)?;
    let pks: Vec<&(String, String, i64)> = cols.iter().filter(|c| c.2 > 0).collect();
    let rowid_alias = match pks.as_slice() {
        [one] if one.1.eq_ignore_ascii_case("INTEGER") => Some(one.0.clone()),
        _ => None,
    };
    Ok(TableSpec {
        schema: database_id.into(),
        name: name.into(),
        target: format!("{database_id}__{name}"),
        columns: cols
            .into_iter()
            .map(|(n, t, pk)| Column {
                name: n,
                type_oid: 0,
                type_name: t,
                kind: super::pgtext::Kind::Text,
                elem: super::pgtext::Kind::Text,
                key: pk > 0,
            })
            .collect(),
        matching: Match::Rowid,
        rowid_alias,
        oid: None,
    })
}

/// Creates the change table and triggers of `slot` on `tables` (replacing earlier ones).
fn install(c: &mut Connection, slot: &str, tables: &[TableSpec]) -> Result<(), String> {
    let tx = c
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(err)?;
    drop_objects(&tx, slot)?;
    let chg = ident(&change_table(slot));
    let mut sql = format!(
        "CREATE TABLE {chg} (seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, rid INTEGER NOT NULL,
         at INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)));\n"
    );
    for t in tables {
        let (on, name) = (ident(&t.name), lit(&t.name));
        sql.push_str(&format!(
            "CREATE TRIGGER {} AFTER INSERT ON {on} BEGIN INSERT INTO {chg} (tbl, rid) VALUES ({name}, NEW.rowid); END;
             CREATE TRIGGER {} AFTER UPDATE ON {on} BEGIN INSERT INTO {chg} (tbl, rid) VALUES ({name}, NEW.rowid);
               INSERT INTO {chg} (tbl, rid) SELECT {name}, OLD.rowid WHERE OLD.rowid IS NOT NEW.rowid; END;
             CREATE TRIGGER {} AFTER DELETE ON {on} BEGIN INSERT INTO {chg} (tbl, rid) VALUES ({name}, OLD.rowid); END;\n",
            ident(&trigger(slot, 'i', &t.name)),
            ident(&trigger(slot, 'u', &t.name)),
            ident(&trigger(slot, 'd', &t.name)),
        ));
    }
    tx.execute_batch(&sql).map_err(err)?;
    tx.commit().map_err(err)
}

fn drop_objects(c: &Connection, slot: &str) -> Result<(), String> {
    let prefix = format!("_trex_{}_", suffix(slot));
    let mut st = c
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'trigger' AND substr(name, 1, length(?1)) = ?1")
        .map_err(err)?;
    let triggers: Vec<String> = st
        .query_map([&prefix], |r| r.get(0))
        .map_err(err)?
        .collect::<rusqlite::Result<_>>()
        .map_err(err)?;
    for t in triggers {
        c.execute_batch(&format!("DROP TRIGGER IF EXISTS {}", ident(&t)))
            .map_err(err)?;
    }
    c.execute_batch(&format!(
        "DROP TABLE IF EXISTS {}",
        ident(&change_table(slot))
    ))
    .map_err(err)
}

/// Removes the change table and triggers of `slot` from the source file at `path`.
pub fn uninstall(path: &Path, slot: &str) -> Result<(), String> {
    if !path.is_file() {
        return Ok(());
    }
    let mut c = Connection::open(path).map_err(err)?;
    c.busy_timeout(Duration::from_secs(10)).map_err(err)?;
    let tx = c
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(err)?;
    drop_objects(&tx, slot)?;
    tx.commit().map_err(err)
}

/// Checks a resumed pipeline's tables and triggers against the source.
fn unchanged(c: &Connection, run: &Run, owned: &[TableSpec]) -> Result<(), String> {
    for spec in owned {
        let now = describe(c, &run.database_id, &spec.name)?;
        if now.columns.is_empty() {
            return Err(format!("source table {} was dropped", spec.source()));
        }
        let a: Vec<(&str, &str)> = spec
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.type_name.as_str()))
            .collect();
        let b: Vec<(&str, &str)> = now
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.type_name.as_str()))
            .collect();
        if a != b {
            return Err(format!(
                "source table {} changed after the pipeline started (columns were {:?}, are {:?}); the \
                 replica cannot follow schema changes: delete the pipeline (dropTables: true) and start it again",
                spec.source(),
                a.iter().map(|x| x.0).collect::<Vec<_>>(),
                b.iter().map(|x| x.0).collect::<Vec<_>>()
            ));
        }
        if run.mode.streams() {
            for op in ['i', 'u', 'd'] {
                let name = trigger(&run.slot, op, &spec.name);
                let found: Option<i64> = c
                    .query_row(
                        "SELECT 1 FROM sqlite_schema WHERE type = 'trigger' AND name = ?1",
                        [&name],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(err)?;
                if found.is_none() {
                    return Err(format!(
                        "the change-capture trigger {name} on {} was dropped; changes may have been missed: \
                         delete the pipeline (dropTables: true) and start it again",
                        spec.source()
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Runs the pipeline on a blocking thread.
pub async fn run(run: &Run, path: PathBuf) -> Result<Outcome, Fail> {
    let run = run.clone();
    tokio::task::spawn_blocking(move || run_blocking(&run, &path))
        .await
        .map_err(|e| Fail::Fatal(format!("internal: {e}")))?
}

fn run_blocking(run: &Run, path: &Path) -> Result<Outcome, Fail> {
    let fatal = Fail::Fatal;
    let mut src = open(path, run.mode.streams())?;
    let tc = target::open(&run.target).map_err(fatal)?;
    let cp = target::checkpoint(&tc, &run.id).map_err(fatal)?;
    let owned = target::owned(&tc, &run.id).map_err(fatal)?;
    drop(tc);
    if let Some(cp) = cp.filter(|c| c.phase == "streaming" && run.mode.streams()) {
        unchanged(&src, run, &owned).map_err(fatal)?;
        let applier = Applier::new(
            &run.target,
            &run.id,
            owned,
            run.batch,
            run.live.clone(),
            &cp,
        )
        .map_err(fatal)?;
        return follow(run, &src, applier, cp.position);
    }
    let tables = catalog(&src, run).map_err(fatal)?;
    if run.mode.streams() {
        install(&mut src, &run.slot, &tables).map_err(fatal)?;
    }
    let phase = if run.mode.copies() {
        "snapshotting"
    } else {
        "streaming"
    };
    {
        let mut tc = target::open(&run.target).map_err(fatal)?;
        target::prepare(&mut tc, &run.id, &tables, phase, 0).map_err(fatal)?;
    }
    let at = Checkpoint {
        phase: phase.into(),
        position: 0,
        rows: 0,
    };
    let mut applier = Applier::new(
        &run.target,
        &run.id,
        tables.clone(),
        run.batch,
        run.live.clone(),
        &at,
    )
    .map_err(fatal)?;
    if !run.mode.copies() {
        return follow(run, &src, applier, 0);
    }
    run.live.set("snapshotting", None);
    // one read transaction: the copy and the change position are of the same moment
    src.execute_batch("BEGIN").map_err(|e| fatal(err(e)))?;
    let copied = (|| -> Result<Option<u64>, String> {
        let position: u64 = if run.mode.streams() {
            src.query_row(
                &format!(
                    "SELECT coalesce(max(seq), 0) FROM {}",
                    ident(&change_table(&run.slot))
                ),
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(err)? as u64
        } else {
            // starts the read transaction on a read-only file
            src.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(err)?;
            0
        };
        for (i, t) in tables.iter().enumerate() {
            let cols: Vec<String> = t.columns.iter().map(|c| ident(&c.name)).collect();
            let mut st = src
                .prepare(&format!(
                    "SELECT rowid, {} FROM {}",
                    cols.join(", "),
                    ident(&t.name)
                ))
                .map_err(err)?;
            let mut rows = st.query([]).map_err(err)?;
            let mut chunk = Vec::with_capacity(2000);
            while let Some(r) = rows.next().map_err(err)? {
                let mut row = Vec::with_capacity(cols.len() + 1);
                for n in 0..=cols.len() {
                    row.push(r.get::<_, Value>(n).map_err(err)?);
                }
                chunk.push(row);
                if chunk.len() == 2000 {
                    if run.cancel.is_cancelled() {
                        return Ok(None);
                    }
                    applier.apply(
                        Op::Rows {
                            table: i,
                            rows: std::mem::take(&mut chunk),
                        },
                        false,
                    )?;
                }
            }
            if !chunk.is_empty() {
                applier.apply(
                    Op::Rows {
                        table: i,
                        rows: chunk,
                    },
                    false,
                )?;
            }
        }
        Ok(Some(position))
    })();
    let _ = src.execute_batch("COMMIT");
    let position = match copied {
        Ok(Some(p)) => p,
        Ok(None) => {
            applier.rollback();
            return Ok(Outcome::Stopped);
        }
        Err(e) => {
            applier.rollback();
            return Err(fatal(e));
        }
    };
    let phase = if run.mode.streams() {
        "streaming"
    } else {
        "done"
    };
    applier
        .apply(Op::SnapshotDone { position, phase }, true)
        .map_err(fatal)?;
    if !run.mode.streams() {
        return Ok(Outcome::Done);
    }
    follow(run, &src, applier, position)
}

/// Polls the change table and applies what changed, until stopped or failed.
fn follow(
    run: &Run,
    src: &Connection,
    mut applier: Applier,
    mut position: u64,
) -> Result<Outcome, Fail> {
    let fatal = Fail::Fatal;
    run.live.set("streaming", None);
    run.live
        .applied
        .fetch_max(position, std::sync::atomic::Ordering::Release);
    let chg = ident(&change_table(&run.slot));
    let tables = applier.tables().to_vec();
    let mut seen_data: Option<i64> = None;
    let mut seen_schema: Option<i64> = None;
    loop {
        if run.cancel.is_cancelled() {
            applier.flush().map_err(fatal)?;
            return Ok(Outcome::Stopped);
        }
        let data: i64 = src
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(|e| fatal(err(e)))?;
        let schema: i64 = src
            .query_row("PRAGMA schema_version", [], |r| r.get(0))
            .map_err(|e| fatal(err(e)))?;
        if seen_schema.is_some_and(|s| s != schema) {
            unchanged(src, run, &tables).map_err(fatal)?;
        }
        seen_schema = Some(schema);
        if seen_data == Some(data) {
            std::thread::sleep(POLL);
            continue;
        }
        // read the changes and the rows they name in one read transaction
        src.execute_batch("BEGIN").map_err(|e| fatal(err(e)))?;
        let read = (|| -> Result<(Vec<Op>, u64, Option<i64>, usize), String> {
            let mut st = src
                .prepare_cached(&format!(
                    "SELECT seq, tbl, rid, at FROM {chg} WHERE seq > ?1 ORDER BY seq LIMIT ?2"
                ))
                .map_err(err)?;
            let changes: Vec<(i64, String, i64, i64)> = st
                .query_map(
                    rusqlite::params![position as i64, run.batch.size as i64],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .map_err(err)?
                .collect::<rusqlite::Result<_>>()
                .map_err(err)?;
            let n = changes.len();
            let last = changes.last().map(|c| c.0 as u64).unwrap_or(position);
            let oldest = changes.iter().map(|c| c.3).min();
            let mut ops = Vec::new();
            let mut done = std::collections::HashSet::new();
            for (_, tbl, rid, _) in changes.iter().rev() {
                let Some(i) = tables.iter().position(|t| &t.name == tbl) else {
                    continue;
                };
                if !done.insert((i, *rid)) {
                    continue;
                }
                let t = &tables[i];
                let cols: Vec<String> = t.columns.iter().map(|c| ident(&c.name)).collect();
                let row = src
                    .prepare_cached(&format!(
                        "SELECT {} FROM {} WHERE rowid = ?1",
                        cols.join(", "),
                        ident(&t.name)
                    ))
                    .map_err(err)?
                    .query_row([rid], |r| {
                        (0..cols.len())
                            .map(|n| r.get::<_, Value>(n))
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .optional()
                    .map_err(err)?;
                ops.push(Op::Upsert {
                    table: i,
                    rowid: *rid,
                    row,
                });
            }
            ops.reverse();
            Ok((ops, last, oldest, n))
        })();
        let _ = src.execute_batch("COMMIT");
        let (ops, last, oldest, n) = read.map_err(fatal)?;
        if n == 0 {
            seen_data = Some(data);
            continue;
        }
        for op in ops {
            applier.apply(op, false).map_err(fatal)?;
        }
        applier
            .apply(
                Op::End {
                    position: last,
                    commit_time_ms: oldest,
                },
                true,
            )
            .map_err(fatal)?;
        applier.flush().map_err(fatal)?;
        position = last;
        // consumed changes leave the source (the replica has committed them)
        let _ = src.execute(
            &format!("DELETE FROM {chg} WHERE seq <= ?1"),
            [position as i64],
        );
        if n < run.batch.size {
            // everything committed before `data` was read is applied now
            seen_data = Some(data);
        }
    }
}
