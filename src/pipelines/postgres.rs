//! The PostgreSQL source: a logical replication slot with the `pgoutput` plugin on the named
//! publication, read over the streaming replication protocol (`pgwire-replication`), with
//! standby status updates so the server can recycle WAL.
//!
//! - **Copy consistent with the stream.** `copy_and_cdc` creates the slot with
//!   `EXPORT_SNAPSHOT` on the replication session, and the copy runs on a second session
//!   inside that snapshot (`SET TRANSACTION SNAPSHOT`) while the first one waits; streaming
//!   then starts on the same session at the slot's consistent point. Every committed
//!   transaction is in exactly one of the two.
//! - **Exactly once.** The replica commits each batch with the end LSN of its last source
//!   transaction ([`target`]); the slot is told that LSN only after the commit. On a restart
//!   the stream resumes from the checkpoint and every transaction whose commit lies before it
//!   is skipped, whatever the server re-sends.
//! - **Schema changes** (a column added, dropped or retyped, a replica identity changed) stop
//!   the pipeline in `error` with what changed — never silent divergence.
//! - Connections are unencrypted (like the engine's): keep the source on a trusted network.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use pgwire_replication::{
    Lsn, PgWireError, ReplicationClient, ReplicationConfig, ReplicationEvent,
};
use rusqlite::types::Value;
use tokio_postgres::{Client, NoTls};

use super::pgoutput::{self, Cell, Message, Relation};
use super::pgtext::{self, Kind};
use super::target::{self, Applier, Checkpoint, Column, Match, Op, TableSpec, ident};
use super::{Fail, Outcome, Run};
use crate::engine::postgres::Target;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Rows sent to the applier at once during the copy.
const CHUNK: usize = 2000;

fn db_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => d.message().to_string(),
        None => match std::error::Error::source(e) {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        },
    }
}

/// A failed query or connection, fatal when retrying cannot help (authentication, privileges,
/// a missing database, bad SQL).
fn pg_fail(what: &str, e: tokio_postgres::Error) -> Fail {
    let msg = format!("{what}: {}", db_error(&e));
    match e.code().map(|c| c.code()) {
        Some(c) if c.starts_with("28") || c.starts_with("42") || c == "3D000" => Fail::Fatal(msg),
        _ => Fail::Transient(msg),
    }
}

fn wire_fail(what: &str, e: PgWireError) -> Fail {
    let text = e.to_string();
    let msg = format!("{what}: {text}");
    if e.is_auth()
        || text.contains("does not exist")
        || text.contains("must be superuser or replication role")
        || text.contains("permission denied")
        || text.contains("wal_level")
    {
        let hint = if text.contains("superuser or replication role") {
            " (the credential's role needs the REPLICATION attribute: ALTER ROLE <name> REPLICATION)"
        } else {
            ""
        };
        Fail::Fatal(format!("{msg}{hint}"))
    } else {
        Fail::Transient(msg)
    }
}

/// Connects an ordinary session with the pinned settings of [`pgtext::SESSION_OPTIONS`].
pub async fn connect(t: &Target) -> Result<Client, Fail> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(&t.host)
        .port(t.port)
        .dbname(&t.dbname)
        .user(&t.user)
        .connect_timeout(CONNECT_TIMEOUT)
        .options(pgtext::SESSION_OPTIONS)
        .application_name("trex-etl");
    if let Some(p) = &t.password {
        cfg.password(p.as_bytes());
    }
    let (client, conn) = tokio::time::timeout(CONNECT_TIMEOUT, cfg.connect(NoTls))
        .await
        .map_err(|_| Fail::Transient(format!("connecting to {t:?}: no answer")))?
        .map_err(|e| pg_fail(&format!("connecting to {t:?}"), e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

fn repl_config(run: &Run, t: &Target, start: u64) -> ReplicationConfig {
    ReplicationConfig::new(
        t.host.clone(),
        t.user.clone(),
        t.password.clone().unwrap_or_default(),
        t.dbname.clone(),
        run.slot.clone(),
        run.publication.clone().unwrap_or_default(),
    )
    .with_port(t.port)
    .with_options(pgtext::SESSION_OPTIONS)
    .with_application_name(format!("trex-etl-{}", run.slot))
    .with_start_lsn(Lsn(start))
    .with_status_interval(Duration::from_secs(1))
    .with_wakeup_interval(Duration::from_secs(2))
    .with_buffer_size(1024)
    .with_max_message_size(256 << 20)
}

/// Checks what a start needs before anything is made, so a wrong setting is the tool's
/// error and not a pipeline in `error`: logical decoding on, the role may replicate, the
/// publication exists and holds the wanted tables (or the schema does, for `copy_only`), and
/// each table can be replicated.
pub async fn preflight(run: &Run, t: &Target) -> Result<Vec<TableSpec>, String> {
    let msg = |f: Fail| match f {
        Fail::Fatal(m) | Fail::Transient(m) => m,
    };
    let client = connect(t).await.map_err(msg)?;
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .map_err(|e| db_error(&e))?
        .get(0);
    if version < 120_000 {
        return Err(format!(
            "database '{}' runs PostgreSQL {}; pipelines need PostgreSQL 12 or newer",
            run.database_id,
            version / 10_000
        ));
    }
    if run.mode.streams() {
        let wal: String = client
            .query_one("SHOW wal_level", &[])
            .await
            .map_err(|e| db_error(&e))?
            .get(0);
        if wal != "logical" {
            return Err(format!(
                "database '{}' runs with wal_level = {wal}; change capture needs wal_level = logical \
                 (ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL), or use mode copy_only",
                run.database_id
            ));
        }
        let can: bool = client
            .query_one(
                "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await
            .map_err(|e| db_error(&e))?
            .get(0);
        if !can {
            return Err(format!(
                "role '{}' may not replicate: ALTER ROLE {} REPLICATION (or use another credential)",
                t.user, t.user
            ));
        }
        let publication = run.publication.clone().unwrap_or_default();
        let found = client
            .query_opt(
                "SELECT 1 FROM pg_publication WHERE pubname = $1",
                &[&publication],
            )
            .await
            .map_err(|e| db_error(&e))?;
        if found.is_none() {
            return Err(format!(
                "publication '{publication}' does not exist in database '{}' \
                 (CREATE PUBLICATION {publication} FOR TABLE …)",
                run.database_id
            ));
        }
    }
    let tables = catalog(&client, run).await.map_err(msg)?;
    for t in &tables {
        if run.mode.streams() && t.matching == Match::None {
            tracing::info!(
                "{} has no replica identity: only its inserts can be replicated",
                t.source()
            );
        }
    }
    Ok(tables)
}

/// The tables to replicate, described from the source's catalog.
async fn catalog(client: &Client, run: &Run) -> Result<Vec<TableSpec>, Fail> {
    let listed = if run.mode.streams() {
        client
            .query(
                "SELECT schemaname::text, tablename::text FROM pg_publication_tables
                 WHERE pubname = $1 ORDER BY 1, 2",
                &[&run.publication.clone().unwrap_or_default()],
            )
            .await
    } else {
        client
            .query(
                "SELECT n.nspname::text, c.relname::text FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY 2",
                &[&run.schema],
            )
            .await
    }
    .map_err(|e| pg_fail("listing the tables", e))?;
    let all: Vec<(String, String)> = listed.iter().map(|r| (r.get(0), r.get(1))).collect();
    let place = || match &run.publication {
        Some(p) if run.mode.streams() => format!("publication '{p}'"),
        _ => format!("schema '{}'", run.schema),
    };
    if let Some(wanted) = &run.tables {
        for w in wanted {
            if !all
                .iter()
                .any(|(s, n)| super::selected(&Some(vec![w.clone()]), s, n))
            {
                return Err(Fail::Fatal(format!(
                    "table '{w}' is not in {} of database '{}'",
                    place(),
                    run.database_id
                )));
            }
        }
    }
    let chosen: Vec<&(String, String)> = all
        .iter()
        .filter(|(s, n)| super::selected(&run.tables, s, n))
        .collect();
    if chosen.is_empty() {
        return Err(Fail::Fatal(format!("{} has no tables", place())));
    }
    let mut out = Vec::new();
    for (schema, name) in chosen {
        let rows = client
            .query(
                "SELECT a.attname::text, a.atttypid::int8, format_type(a.atttypid, a.atttypmod),
                        CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END::int8,
                        bt.typcategory::text, bt.typelem::int8, c.relreplident::text,
                        a.attnum = ANY (coalesce((SELECT i.indkey::int2[] FROM pg_index i
                            WHERE i.indrelid = c.oid AND
                                  CASE c.relreplident WHEN 'i' THEN i.indisreplident ELSE i.indisprimary END
                            LIMIT 1), '{}'::int2[])),
                        c.oid::int8
                 FROM pg_attribute a
                 JOIN pg_class c ON c.oid = a.attrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_type t ON t.oid = a.atttypid
                 JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END
                 WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0
                   AND NOT a.attisdropped AND a.attgenerated = ''
                 ORDER BY a.attnum",
                &[schema, name],
            )
            .await
            .map_err(|e| pg_fail(&format!("describing {schema}.{name}"), e))?;
        let identity: String = rows.first().map(|r| r.get(6)).unwrap_or_else(|| "d".into());
        let mut columns: Vec<Column> = rows
            .iter()
            .map(|r| {
                let base = r.get::<_, i64>(3) as u32;
                let category: String = r.get(4);
                let (kind, elem) = if category == "A" {
                    (Kind::Array, Kind::of_oid(r.get::<_, i64>(5) as u32))
                } else {
                    (Kind::of_oid(base), Kind::Text)
                };
                Column {
                    name: r.get(0),
                    type_oid: r.get::<_, i64>(1) as u32,
                    type_name: r.get(2),
                    kind,
                    elem,
                    key: r.get(7),
                }
            })
            .collect();
        let matching = match identity.as_str() {
            "f" => {
                for c in &mut columns {
                    c.key = true;
                }
                Match::Full
            }
            "n" => Match::None,
            _ if columns.iter().any(|c| c.key) => Match::Key,
            _ => Match::None,
        };
        if matching == Match::None {
            for c in &mut columns {
                c.key = false;
            }
        }
        let oid = rows.first().map(|r| r.get::<_, i64>(8) as u32);
        out.push(TableSpec {
            target: format!("{schema}__{name}"),
            schema: schema.clone(),
            name: name.clone(),
            columns,
            matching,
            rowid_alias: None,
            oid,
        });
    }
    Ok(out)
}

/// What changed between the replica's description of a table and the source's, if anything.
fn schema_diff(spec: &TableSpec, now: &[(String, u32, bool)]) -> Option<String> {
    let mut what = Vec::new();
    for (n, oid, _) in now {
        match spec.columns.iter().find(|c| &c.name == n) {
            None => what.push(format!("column `{n}` added")),
            Some(c) if c.type_oid != *oid => what.push(format!("column `{n}` changed type")),
            _ => {}
        }
    }
    for c in &spec.columns {
        if !now.iter().any(|(n, _, _)| n == &c.name) {
            what.push(format!("column `{}` dropped", c.name));
        }
    }
    if what.is_empty() {
        let names: Vec<&String> = now.iter().map(|(n, _, _)| n).collect();
        let ours: Vec<&String> = spec.columns.iter().map(|c| &c.name).collect();
        if names != ours {
            what.push("columns reordered".into());
        } else if spec.matching != Match::None
            && now.iter().map(|(_, _, k)| *k).collect::<Vec<_>>()
                != spec.columns.iter().map(|c| c.key).collect::<Vec<_>>()
        {
            what.push("replica identity changed".into());
        }
    }
    (!what.is_empty()).then(|| {
        format!(
            "source table {} changed after the pipeline started ({}); the replica cannot follow \
             schema changes: delete the pipeline (etl-delete-pipeline with dropTables: true) and start it \
             again to copy the table afresh",
            spec.source(),
            what.join(", ")
        )
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, Fail> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Fail::Fatal(format!("internal: {e}")))?
        .map_err(Fail::Fatal)
}

/// Drops replication slot `slot` if it exists, ending the session that holds it if one does
/// (an earlier run of the same pipeline).
pub async fn drop_slot(client: &Client, slot: &str) -> Result<(), String> {
    for attempt in 0..20 {
        let row = client
            .query_opt(
                "SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .map_err(|e| db_error(&e))?;
        let Some(row) = row else { return Ok(()) };
        let active: bool = row.get(0);
        if active {
            if attempt >= 5 {
                let pid: Option<i32> = row.get(1);
                let _ = client
                    .execute("SELECT pg_terminate_backend($1)", &[&pid])
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        match client
            .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if db_error(&e).contains("is active") => {
                tokio::time::sleep(Duration::from_millis(250)).await
            }
            Err(e) if db_error(&e).contains("does not exist") => return Ok(()),
            Err(e) => return Err(db_error(&e)),
        }
    }
    Err(format!("replication slot {slot} stays in use"))
}

/// The position slot `slot` was last confirmed at, once no session holds it (a session of
/// the node that ran it before is ended), or `None` if there is no such slot.
async fn release_slot(client: &Client, slot: &str) -> Result<Option<u64>, Fail> {
    for attempt in 0..20 {
        let row = client
            .query_opt(
                "SELECT active, active_pid, confirmed_flush_lsn::text FROM pg_replication_slots
                 WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .map_err(|e| pg_fail("reading the replication slots", e))?;
        let Some(row) = row else { return Ok(None) };
        let (active, pid, lsn): (bool, Option<i32>, Option<String>) =
            (row.get(0), row.get(1), row.get(2));
        if !active {
            return Ok(lsn.and_then(|l| Lsn::parse(&l).ok()).map(|l| l.0));
        }
        if attempt >= 5 {
            let _ = client
                .execute("SELECT pg_terminate_backend($1)", &[&pid])
                .await;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(Fail::Transient(format!(
        "replication slot {slot} stays in use"
    )))
}

/// Runs the pipeline: a fresh start (copy and/or slot), a resume from the checkpoint, or (a
/// `cdc_only` pipeline with a slot but no checkpoint here: taken over from a dead node) a stream
/// from where its slot was confirmed.
pub async fn run(run: &Run, t: &Target) -> Result<Outcome, Fail> {
    let client = connect(t).await?;
    let wanted = catalog(&client, run).await?;
    let (path, id) = (run.target.clone(), run.id.clone());
    let (cp, owned) = blocking(move || {
        let c = target::open(&path)?;
        Ok((target::checkpoint(&c, &id)?, target::owned(&c, &id)?))
    })
    .await?;
    let had_checkpoint = cp.is_some();
    if let Some(cp) = cp.filter(|c| c.phase == "streaming" && run.mode.streams()) {
        for spec in &owned {
            let now: Option<&TableSpec> = wanted
                .iter()
                .find(|w| w.schema == spec.schema && w.name == spec.name);
            match now {
                None => {
                    return Err(Fail::Fatal(format!(
                        "source table {} is no longer in publication '{}'",
                        spec.source(),
                        run.publication.clone().unwrap_or_default()
                    )));
                }
                Some(w) if spec.oid.is_some() && w.oid != spec.oid => {
                    return Err(Fail::Fatal(format!(
                        "table {} was dropped and created again on the source; delete the pipeline and start it again",
                        spec.source()
                    )));
                }
                Some(w) => {
                    let cols: Vec<(String, u32, bool)> = w
                        .columns
                        .iter()
                        .map(|c| (c.name.clone(), c.type_oid, c.key))
                        .collect();
                    if let Some(d) = schema_diff(spec, &cols) {
                        return Err(Fail::Fatal(d));
                    }
                }
            }
        }
        let slot = client
            .query_opt(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
                &[&run.slot],
            )
            .await
            .map_err(|e| pg_fail("reading the replication slots", e))?;
        if slot.is_none() {
            return Err(Fail::Fatal(format!(
                "replication slot {} is gone (dropped outside trex?); changes since the checkpoint \
                 are lost to this pipeline: delete it with dropTables: true and start it again",
                run.slot
            )));
        }
        drop(client);
        let repl = ReplicationClient::connect(repl_config(run, t, cp.position))
            .await
            .map_err(|e| wire_fail("replication", e))?;
        let applier = new_applier(run, owned, &cp).await?;
        return stream(run, repl, applier, cp.position).await;
    }

    // a cdc_only pipeline without a checkpoint here whose slot exists (taken over from a dead
    // node, or a start cut short after the slot was made) continues from the slot's position:
    // the changes since are not lost to a new slot
    if !had_checkpoint
        && run.mode == crate::pipelines::Mode::CdcOnly
        && let Some(at) = release_slot(&client, &run.slot).await?
    {
        prepare(run, &wanted, "streaming", at).await?;
        drop(client);
        let cp = Checkpoint {
            phase: "streaming".into(),
            position: at,
            rows: 0,
        };
        let repl = ReplicationClient::connect(repl_config(run, t, at))
            .await
            .map_err(|e| wire_fail("replication", e))?;
        let applier = new_applier(run, wanted, &cp).await?;
        return stream(run, repl, applier, at).await;
    }

    // a fresh start: no checkpoint, an interrupted copy, or a finished copy_only run again
    let fresh = Checkpoint {
        phase: "snapshotting".into(),
        position: 0,
        rows: 0,
    };
    if !run.mode.streams() {
        prepare(run, &wanted, "snapshotting", 0).await?;
        run.live.set("snapshotting", None);
        let applier = new_applier(run, wanted.clone(), &fresh).await?;
        let (tx, handle) = target::spawn(applier, 16);
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(|e| pg_fail("starting the copy", e))?;
        let copied = copy(&client, &wanted, &tx, run).await;
        let _ = client.batch_execute("COMMIT").await;
        if copied? {
            let _ = tx
                .send(Op::SnapshotDone {
                    position: 0,
                    phase: "done",
                })
                .await;
        }
        finish(tx, handle).await?;
        return Ok(if run.cancel.is_cancelled() {
            Outcome::Stopped
        } else {
            Outcome::Done
        });
    }
    // the replica tables first: a name another pipeline or table has fails here, before a slot
    // exists to hold the source's WAL
    if run.mode.copies() {
        prepare(run, &wanted, "snapshotting", 0).await?;
    }
    drop_slot(&client, &run.slot)
        .await
        .map_err(Fail::Transient)?;
    let mut repl = ReplicationClient::connect_gated(repl_config(run, t, 0))
        .await
        .map_err(|e| wire_fail("replication", e))?;
    let export = if run.mode.copies() {
        "EXPORT_SNAPSHOT"
    } else {
        "NOEXPORT_SNAPSHOT"
    };
    let rows = repl
        .simple_query(&format!(
            "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput {export}",
            run.slot
        ))
        .await
        .map_err(|e| wire_fail("creating the replication slot", e))?;
    let text = |i: usize| {
        rows.first()
            .and_then(|r| r.get(i).cloned().flatten())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    let consistent = text(1)
        .and_then(|s| Lsn::parse(&s).ok())
        .ok_or_else(|| Fail::Fatal("CREATE_REPLICATION_SLOT gave no consistent point".into()))?
        .0;
    if !run.mode.copies() {
        if let Err(e) = prepare(run, &wanted, "streaming", consistent).await {
            let _ = drop_slot(&client, &run.slot).await;
            return Err(e);
        }
        let cp = Checkpoint {
            phase: "streaming".into(),
            position: consistent,
            rows: 0,
        };
        let applier = new_applier(run, wanted, &cp).await?;
        repl.start()
            .await
            .map_err(|e| wire_fail("replication", e))?;
        return stream(run, repl, applier, consistent).await;
    }
    let snapshot = text(2)
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
        .ok_or_else(|| Fail::Fatal("CREATE_REPLICATION_SLOT exported no snapshot".into()))?;
    run.live.set("snapshotting", None);
    let applier = new_applier(run, wanted.clone(), &fresh).await?;
    let (tx, handle) = target::spawn(applier, 16);
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{snapshot}'"
        ))
        .await
        .map_err(|e| pg_fail("opening the slot's snapshot", e))?;
    let copied = copy(&client, &wanted, &tx, run).await;
    let _ = client.batch_execute("COMMIT").await;
    let copied = match copied {
        Ok(c) => c,
        Err(e) => {
            let _ = finish(tx, handle).await;
            // a copy that cannot succeed leaves no slot holding WAL behind (a retry makes a
            // new one anyway)
            if matches!(e, Fail::Fatal(_)) {
                let _ = drop_slot(&client, &run.slot).await;
            }
            return Err(e);
        }
    };
    drop(client);
    if !copied {
        finish(tx, handle).await?;
        return Ok(Outcome::Stopped);
    }
    if tx
        .send(Op::SnapshotDone {
            position: consistent,
            phase: "streaming",
        })
        .await
        .is_err()
    {
        return Err(finish(tx, handle)
            .await
            .err()
            .unwrap_or(Fail::Fatal("the replica writer stopped".into())));
    }
    repl.start()
        .await
        .map_err(|e| wire_fail("replication", e))?;
    stream_with(run, repl, tx, handle, wanted, consistent).await
}

async fn prepare(
    run: &Run,
    tables: &[TableSpec],
    phase: &'static str,
    position: u64,
) -> Result<(), Fail> {
    let (path, id, tables) = (run.target.clone(), run.id.clone(), tables.to_vec());
    blocking(move || {
        let mut c = target::open(&path)?;
        target::prepare(&mut c, &id, &tables, phase, position)
    })
    .await
}

async fn new_applier(run: &Run, tables: Vec<TableSpec>, at: &Checkpoint) -> Result<Applier, Fail> {
    let (path, id, batch, live, at) = (
        run.target.clone(),
        run.id.clone(),
        run.batch,
        run.live.clone(),
        at.clone(),
    );
    blocking(move || Applier::new(&path, &id, tables, batch, live, &at)).await
}

/// Ends the applier (it commits what is open) and returns its error, if it had one.
async fn finish(
    tx: tokio::sync::mpsc::Sender<Op>,
    handle: std::thread::JoinHandle<Result<(), String>>,
) -> Result<(), Fail> {
    drop(tx);
    tokio::task::spawn_blocking(move || handle.join())
        .await
        .map_err(|e| Fail::Fatal(format!("internal: {e}")))?
        .map_err(|_| Fail::Fatal("the replica writer panicked".into()))?
        .map_err(Fail::Fatal)
}

/// Copies every table (inside the session's open transaction); false if stopped first.
async fn copy(
    client: &Client,
    tables: &[TableSpec],
    tx: &tokio::sync::mpsc::Sender<Op>,
    run: &Run,
) -> Result<bool, Fail> {
    for (i, spec) in tables.iter().enumerate() {
        let cols: Vec<String> = spec.columns.iter().map(|c| ident(&c.name)).collect();
        let sql = format!(
            "COPY (SELECT {} FROM ONLY {}.{}) TO STDOUT",
            cols.join(", "),
            ident(&spec.schema),
            ident(&spec.name)
        );
        let stream = client
            .copy_out(sql.as_str())
            .await
            .map_err(|e| pg_fail(&format!("copying {}", spec.source()), e))?;
        futures_util::pin_mut!(stream);
        let mut buf: Vec<u8> = Vec::new();
        let mut rows = Vec::with_capacity(CHUNK);
        loop {
            let chunk = tokio::select! {
                c = stream.next() => c,
                _ = run.cancel.cancelled() => return Ok(false),
            };
            let Some(chunk) = chunk else { break };
            let chunk = chunk.map_err(|e| pg_fail(&format!("copying {}", spec.source()), e))?;
            buf.extend_from_slice(&chunk);
            let mut start = 0;
            for end in memchr::memchr_iter(b'\n', &buf) {
                rows.push(row_of(spec, pgtext::copy_fields(&buf[start..end])));
                start = end + 1;
                if rows.len() == CHUNK {
                    let batch = std::mem::replace(&mut rows, Vec::with_capacity(CHUNK));
                    if tx
                        .send(Op::Rows {
                            table: i,
                            rows: batch,
                        })
                        .await
                        .is_err()
                    {
                        return Err(Fail::Fatal("the replica writer stopped".into()));
                    }
                }
            }
            buf.drain(..start);
        }
        if !rows.is_empty() && tx.send(Op::Rows { table: i, rows }).await.is_err() {
            return Err(Fail::Fatal("the replica writer stopped".into()));
        }
    }
    Ok(true)
}

fn row_of(spec: &TableSpec, fields: Vec<Option<String>>) -> Vec<Value> {
    fields
        .into_iter()
        .zip(&spec.columns)
        .map(|(f, c)| match f {
            None => Value::Null,
            Some(s) => pgtext::convert_owned(c.kind, c.elem, s),
        })
        .collect()
}

fn cell_value(c: &Column, cell: &Cell) -> Value {
    match cell {
        Cell::Text(s) => pgtext::convert(c.kind, c.elem, s),
        Cell::Null | Cell::Unchanged => Value::Null,
    }
}

fn relation_ok(spec: &TableSpec, rel: &Relation) -> Option<String> {
    let now: Vec<(String, u32, bool)> = rel
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.type_oid, c.key || rel.identity == b'f'))
        .collect();
    schema_diff(spec, &now)
}

async fn stream(
    run: &Run,
    repl: ReplicationClient,
    applier: Applier,
    from: u64,
) -> Result<Outcome, Fail> {
    let tables = applier.tables().to_vec();
    let (tx, handle) = target::spawn(applier, 256);
    stream_with(run, repl, tx, handle, tables, from).await
}

/// The change stream: decode, hand to the applier, confirm what it committed.
async fn stream_with(
    run: &Run,
    mut repl: ReplicationClient,
    tx: tokio::sync::mpsc::Sender<Op>,
    handle: std::thread::JoinHandle<Result<(), String>>,
    tables: Vec<TableSpec>,
    from: u64,
) -> Result<Outcome, Fail> {
    let live = run.live.clone();
    live.applied.fetch_max(from, Ordering::Release);
    let started = tokio::time::timeout(Duration::from_secs(30), repl.wait_started())
        .await
        .map_err(|_| Fail::Transient("replication did not start within 30 s".into()));
    let started = match started {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(wire_fail("starting replication", e)),
        Err(f) => Err(f),
    };
    if let Err(f) = started {
        let _ = finish(tx, handle).await;
        return Err(f);
    }
    live.set("streaming", None);
    let mut rels: HashMap<u32, Option<usize>> = HashMap::new();
    let mut skipping = false;
    let mut in_txn = false;
    let mut commit_ms: Option<i64> = None;
    let mut last_end = from;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let result: Result<Outcome, Fail> = 'outer: loop {
        let ev = tokio::select! {
            biased;
            _ = run.cancel.cancelled() => break Ok(Outcome::Stopped),
            _ = tick.tick() => {
                if handle.is_finished() {
                    break Err(Fail::Fatal("the replica writer stopped".into()));
                }
                repl.update_applied_lsn(Lsn(live.applied.load(Ordering::Acquire)));
                continue;
            }
            ev = repl.recv() => ev,
        };
        let ops: Vec<Op> = match ev {
            Ok(Some(ReplicationEvent::Begin {
                final_lsn,
                commit_time_micros,
                ..
            })) => {
                in_txn = true;
                skipping = final_lsn.0 < from;
                commit_ms = Some(
                    pgwire_replication::protocol::pg_to_unix_timestamp(commit_time_micros) / 1000,
                );
                continue;
            }
            Ok(Some(ReplicationEvent::Commit { end_lsn, .. })) => {
                in_txn = false;
                if skipping {
                    continue;
                }
                last_end = end_lsn.0;
                vec![Op::End {
                    position: end_lsn.0,
                    commit_time_ms: commit_ms.take(),
                }]
            }
            Ok(Some(ReplicationEvent::XLogData { wal_end, data, .. })) => {
                live.wal_end.fetch_max(wal_end.0, Ordering::Relaxed);
                // a transaction already applied is skipped, but not the relation descriptions
                // in it: the server sends each one once per stream, before its first change
                if skipping && data.first() != Some(&b'R') {
                    continue;
                }
                let msg = match pgoutput::decode(&data) {
                    Ok(m) => m,
                    Err(e) => break Err(Fail::Fatal(e)),
                };
                match changes(run, &tables, &mut rels, msg) {
                    Ok(ops) => ops,
                    Err(e) => break Err(Fail::Fatal(e)),
                }
            }
            Ok(Some(ReplicationEvent::KeepAlive { wal_end, .. })) => {
                live.wal_end.fetch_max(wal_end.0, Ordering::Relaxed);
                // caught up: nothing of ours is pending, so the slot may move to the server's end
                if !in_txn && live.applied.load(Ordering::Acquire) >= last_end {
                    live.applied.fetch_max(wal_end.0, Ordering::Release);
                    repl.update_applied_lsn(wal_end);
                }
                continue;
            }
            Ok(Some(_)) => continue,
            Ok(None) => break Err(Fail::Transient("the replication stream ended".into())),
            Err(e) => break Err(wire_fail("replication", e)),
        };
        for op in ops {
            if tx.send(op).await.is_err() {
                break 'outer Err(Fail::Fatal("the replica writer stopped".into()));
            }
        }
    };
    // the applier commits what it has; its error, if any, is the pipeline's
    let applied = finish(tx, handle).await;
    repl.update_applied_lsn(Lsn(live.applied.load(Ordering::Acquire)));
    let _ = tokio::time::timeout(Duration::from_secs(5), repl.shutdown()).await;
    applied?;
    result
}

/// The applier operations of one change message.
fn changes(
    run: &Run,
    tables: &[TableSpec],
    rels: &mut HashMap<u32, Option<usize>>,
    msg: Message,
) -> Result<Vec<Op>, String> {
    let table = |rels: &HashMap<u32, Option<usize>>, rel: u32| -> Result<Option<usize>, String> {
        rels.get(&rel).copied().ok_or_else(|| {
            format!("pgoutput: a change for relation {rel} came before its description")
        })
    };
    Ok(match msg {
        Message::Relation(r) => {
            // the same table under another name, or another table under the same name: what
            // the replica holds is no longer what the source calls it
            if let Some(t) = tables
                .iter()
                .find(|t| t.oid == Some(r.id) && (t.schema != r.schema || t.name != r.name))
            {
                return Err(format!(
                    "table {} was renamed to {}.{} on the source; delete the pipeline and start it again",
                    t.source(),
                    r.schema,
                    r.name
                ));
            }
            let found = tables
                .iter()
                .position(|t| t.schema == r.schema && t.name == r.name);
            if let Some(i) = found
                && tables[i].oid.is_some_and(|o| o != r.id)
            {
                return Err(format!(
                    "table {} was dropped and created again on the source; delete the pipeline and start it again",
                    tables[i].source()
                ));
            }
            match found {
                Some(i) => {
                    if let Some(d) = relation_ok(&tables[i], &r) {
                        return Err(d);
                    }
                    rels.insert(r.id, Some(i));
                }
                None if run.tables.is_some() => {
                    rels.insert(r.id, None);
                }
                None => {
                    return Err(format!(
                        "table {}.{} was added to publication '{}' after the pipeline started; its rows \
                         were never copied: delete the pipeline (dropTables: true) and start it again, or \
                         list the tables to replicate in `tables`",
                        r.schema,
                        r.name,
                        run.publication.clone().unwrap_or_default()
                    ));
                }
            }
            vec![]
        }
        Message::Insert { rel, new } => match table(rels, rel)? {
            None => vec![],
            Some(i) => {
                let t = &tables[i];
                vec![Op::Insert {
                    table: i,
                    row: t
                        .columns
                        .iter()
                        .zip(&new)
                        .map(|(c, v)| cell_value(c, v))
                        .collect(),
                }]
            }
        },
        Message::Update { rel, old, new } => match table(rels, rel)? {
            None => vec![],
            Some(i) => {
                let t = &tables[i];
                let from = old.as_ref().unwrap_or(&new);
                let key = t
                    .columns
                    .iter()
                    .zip(from)
                    .map(|(c, v)| cell_value(c, v))
                    .collect();
                let set = t
                    .columns
                    .iter()
                    .zip(&new)
                    .enumerate()
                    .filter(|(_, (_, v))| **v != Cell::Unchanged)
                    .map(|(n, (c, v))| (n, cell_value(c, v)))
                    .collect();
                vec![Op::Update { table: i, key, set }]
            }
        },
        Message::Delete { rel, old } => match table(rels, rel)? {
            None => vec![],
            Some(i) => {
                let t = &tables[i];
                vec![Op::Delete {
                    table: i,
                    key: t
                        .columns
                        .iter()
                        .zip(&old)
                        .map(|(c, v)| cell_value(c, v))
                        .collect(),
                }]
            }
        },
        Message::Truncate { rels: ids } => {
            let mut which = Vec::new();
            for id in ids {
                if let Some(i) = table(rels, id)? {
                    which.push(i);
                }
            }
            if which.is_empty() {
                vec![]
            } else {
                vec![Op::Truncate { tables: which }]
            }
        }
        Message::Other => vec![],
    })
}
