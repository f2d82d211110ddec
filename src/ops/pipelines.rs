//! ETL/CDC pipelines as operations (`etl-list-pipelines`, `etl-start-pipeline`,
//! `etl-stop-pipeline`, `etl-delete-pipeline`, and `trex etl …`): the rules of what a
//! pipeline is — a unique name, a registered database, one chosen credential (required when
//! the database has more than one), a mode and, for change capture from PostgreSQL, a
//! publication; checked against the source before anything is made, so a wrong setting is the
//! caller's error and not a pipeline left in `error`. A pipeline is a row in `trex.db` (its id,
//! settings, whether it is wanted running) and, while it runs, a service `etl:<name>` of this
//! node; a stopped one keeps its row and checkpoint and resumes from it; the server resumes
//! every pipeline that was running when it stopped, `kill -9` included. On a store shared by
//! several nodes a pipeline runs on one node; when that node dies, another takes it over
//! ([`reconcile`]). The mechanics are [`crate::pipelines`].

use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::json;

use super::{Actor, audited, invalid};
use crate::app::App;
use crate::error::{Error, Result};
use crate::pipelines::{self, Live, Mode, Run, Source, target};
use crate::store::pipelines::{self as store, Pipeline};

/// How long a stop waits for the pipeline to reach a safe point.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// What `etl-start-pipeline` may say.
#[derive(Debug, Clone, Default)]
pub struct StartArgs {
    pub name: String,
    pub database_id: Option<String>,
    pub mode: Option<Mode>,
    pub publication: Option<String>,
    pub schema: Option<String>,
    pub tables: Option<Vec<String>>,
    pub credential_id: Option<String>,
    pub batch_size: Option<i64>,
    pub batch_timeout_ms: Option<i64>,
    pub retry_delay_ms: Option<i64>,
    pub retry_max_attempts: Option<i64>,
}

/// One pipeline as the tools show it (never a password).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineView {
    pub id: String,
    pub name: String,
    /// `starting`, `snapshotting`, `streaming`, `stopping`, `stopped` or `error`.
    pub state: String,
    pub mode: String,
    pub database_id: String,
    /// Where it reads from: `postgresql://user@host:port/db` or the SQLite file.
    pub connection: String,
    pub publication: Option<String>,
    pub schema: Option<String>,
    pub tables: Option<Vec<String>>,
    /// The replication slot (PostgreSQL) or change-object suffix (SQLite).
    pub slot: String,
    /// True for the modes that copy the tables first.
    pub snapshot: bool,
    /// Rows copied plus changes applied.
    pub rows_replicated: u64,
    /// When the replica last committed (RFC 3339), while it runs.
    pub last_activity: Option<String>,
    /// Source WAL not yet applied (PostgreSQL, while it runs).
    pub lag_bytes: Option<u64>,
    /// Source commit to replica commit of the latest transaction, and the median and 99th
    /// percentile over the recent ones (ms).
    pub lag_ms: Option<i64>,
    pub lag_p50_ms: Option<i64>,
    pub lag_p99_ms: Option<i64>,
    /// The replica tables in trexdb.
    pub targets: Vec<String>,
    pub error: Option<String>,
    pub node: Option<String>,
    pub batch_size: i64,
    pub batch_timeout_ms: i64,
    pub retry_delay_ms: i64,
    pub retry_max_attempts: i64,
    pub created_at: String,
}

fn name_ok(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

fn bounded(field: &str, v: Option<i64>, default: i64, min: i64, max: i64) -> Result<i64> {
    let v = v.unwrap_or(default);
    if v < min || v > max {
        return Err(invalid(field, format!("must be between {min} and {max}")));
    }
    Ok(v)
}

/// Builds what a run needs from a pipeline row: the database, its credential, the paths.
async fn run_of(app: &Arc<App>, p: &Pipeline) -> Result<Run> {
    let (db_id, cred) = (p.database_id.clone(), p.credential_id.clone());
    let found = app
        .store
        .run(move |c| {
            let db = crate::store::databases::get(c, &db_id)?;
            let secret = match &cred {
                Some(id) => crate::store::databases::secret(c, &db_id, id)?,
                None => None,
            };
            Ok((db, secret))
        })
        .await?;
    let (db, secret) = found;
    let db = db.ok_or_else(|| Error::NotFound("Database not found".into()))?;
    let source = if db.dialect == "sqlite" {
        Source::Sqlite(crate::engine::paths::resolve_sqlite(
            &app.config,
            &db.database_name,
            "databaseName",
        )?)
    } else {
        let (_, user, sealed) = secret
            .ok_or_else(|| Error::NotFound("No credentials configured for this database".into()))?;
        let password = app
            .master
            .open(
                &sealed,
                &crate::engine::registry::credential_aad(&db.id, &user),
            )
            .map_err(|e| Error::Other(format!("opening a sealed credential: {e}")))?;
        Source::Postgres(crate::engine::postgres::Target {
            host: db.host.clone().unwrap_or_else(|| "127.0.0.1".into()),
            port: db.port.unwrap_or(5432) as u16,
            dbname: db.database_name.clone(),
            user,
            password: Some(password),
        })
    };
    let mode = Mode::parse(&p.mode).ok_or_else(|| Error::Other(format!("bad mode {}", p.mode)))?;
    Ok(Run {
        id: p.id.clone(),
        name: p.name.clone(),
        database_id: p.database_id.clone(),
        mode,
        publication: p.publication.clone(),
        schema: p.schema_name.clone(),
        tables: p
            .tables
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok()),
        slot: p.slot.clone(),
        batch: target::Batch {
            size: p.batch_size as usize,
            timeout: Duration::from_millis(p.batch_timeout_ms as u64),
        },
        retry_delay: Duration::from_millis(p.retry_delay_ms as u64),
        retry_max: p.retry_max_attempts as u32,
        source,
        target: crate::engine::paths::main_file(&app.config),
        live: Arc::new(Live::default()),
        cancel: tokio_util::sync::CancellationToken::new(),
        owner: owner_check(app, &p.id),
    })
}

/// On a shared store, the check a run makes before each start and retry (see
/// [`pipelines::Run::owner`]); none on SQLite, whose one node owns every pipeline.
fn owner_check(app: &Arc<App>, id: &str) -> Option<pipelines::OwnerCheck> {
    if app.store.backend() != crate::store::Backend::Postgres {
        return None;
    }
    let (db, id, me) = (app.store.clone(), id.to_string(), node_of(app));
    Some(Arc::new(move || {
        let (db, id, me) = (db.clone(), id.clone(), me.clone());
        Box::pin(async move {
            let key = id.clone();
            match db.run(move |c| store::runs_on(c, &key, &me)).await {
                Ok(mine) => mine,
                Err(e) => {
                    tracing::warn!(pipeline = %id, "not started: the store does not answer ({e})");
                    false
                }
            }
        })
    }))
}

/// On a shared store, the other node that holds pipeline `p` (its replica and checkpoint) while
/// it is alive (a heartbeat within 12 beats): a start there, or a delete that cleans up its
/// replica, must be called on that node.
async fn held_elsewhere(app: &App, p: &Pipeline) -> Result<Option<crate::store::nodes::Node>> {
    if app.store.backend() != crate::store::Backend::Postgres {
        return Ok(None);
    }
    let me = node_of(app);
    let Some(owner) = p.node.clone().filter(|n| *n != me) else {
        return Ok(None);
    };
    let nodes = app.store.run(crate::store::nodes::list).await?;
    let (hb, now) = (app.config.cluster.heartbeat_secs, crate::util::now_ms());
    Ok(nodes
        .into_iter()
        .find(|n| n.id == owner && !crate::ops::cluster::silent(n, hb, now)))
}

/// The refusal of an operation that must run on node `n`, which holds pipeline `name`.
fn elsewhere(name: &str, what: &str, n: &crate::store::nodes::Node) -> Error {
    Error::Conflict(format!(
        "Pipeline '{name}' runs on node {} ({}, listening on {}), which holds its replica: {what} \
         on that node",
        n.id, n.name, n.listen
    ))
}

/// This node's id, or "" when it has none (`ended` then writes any row).
fn node_of(app: &App) -> String {
    app.node.get().cloned().unwrap_or_default()
}

/// Launches a run; its end is written to the row (unless another node has taken it over).
fn launch(app: &Arc<App>, run: Run) {
    let store = app.store.clone();
    let (id, me) = (run.id.clone(), node_of(app));
    pipelines::launch(app, run, move |state, error| {
        Box::pin(async move {
            let _ = store
                .write(move |c| store::ended(c, &id, state, error.as_deref(), &me))
                .await;
        })
    });
}

/// Checks the source before a start (see the module docs).
async fn preflight(run: &Run) -> std::result::Result<(), String> {
    match &run.source {
        Source::Postgres(t) => pipelines::postgres::preflight(run, t).await.map(|_| ()),
        Source::Sqlite(path) => {
            let (run, path) = (run.clone(), path.clone());
            tokio::task::spawn_blocking(move || {
                if !path.is_file() {
                    return Err(format!(
                        "the database file {} does not exist",
                        path.display()
                    ));
                }
                let c = rusqlite::Connection::open_with_flags(
                    &path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )
                .map_err(|e| e.to_string())?;
                pipelines::sqlite::catalog(&c, &run).map(|_| ())
            })
            .await
            .map_err(|e| e.to_string())?
        }
    }
}

/// Starts a new pipeline, or resumes a stopped one from its checkpoint.
pub async fn start(app: &Arc<App>, actor: &Actor, a: StartArgs) -> Result<String> {
    let args = json!({"name": a.name, "databaseId": a.database_id, "mode": a.mode.map(|m| m.as_str()),
        "publication": a.publication, "schema": a.schema, "tables": a.tables, "credentialId": a.credential_id,
        "batchSize": a.batch_size, "batchTimeoutMs": a.batch_timeout_ms, "retryDelayMs": a.retry_delay_ms,
        "retryMaxAttempts": a.retry_max_attempts});
    audited(
        app,
        actor,
        "etl-start-pipeline",
        args,
        start_inner(app, actor, a),
    )
    .await
}

async fn start_inner(app: &Arc<App>, actor: &Actor, a: StartArgs) -> Result<String> {
    if !name_ok(&a.name) {
        return Err(invalid(
            "name",
            "must be 1 to 64 letters, digits, `_`, `-` or `.`",
        ));
    }
    let name = a.name.clone();
    let existing = app.store.run(move |c| store::by_name(c, &name)).await?;
    if let Some(mut p) = existing {
        super::databases::in_scope(actor, &p.database_id)?;
        return resume(app, &mut p, a).await;
    }
    let mode = a.mode.ok_or_else(|| {
        invalid(
            "mode",
            "is required for a new pipeline (copy_and_cdc, cdc_only or copy_only)",
        )
    })?;
    let database_id = a
        .database_id
        .clone()
        .ok_or_else(|| invalid("databaseId", "is required for a new pipeline"))?;
    if let Some(p) = &a.publication
        && (p.is_empty() || p.len() > 63 || p.contains(',') || p.contains('\0'))
    {
        return Err(invalid(
            "publication",
            "must be a publication name (1 to 63 characters, no commas)",
        ));
    }
    if let Some(t) = &a.tables
        && (t.is_empty() || t.iter().any(|x| x.is_empty() || x.len() > 128))
    {
        return Err(invalid(
            "tables",
            "must list 1 or more table names (`table` or `schema.table`)",
        ));
    }
    let batch_size = bounded("batchSize", a.batch_size, 1000, 1, 100_000)?;
    let batch_timeout_ms = bounded("batchTimeoutMs", a.batch_timeout_ms, 5000, 1, 600_000)?;
    let retry_delay_ms = bounded("retryDelayMs", a.retry_delay_ms, 10_000, 0, 3_600_000)?;
    let retry_max_attempts = bounded("retryMaxAttempts", a.retry_max_attempts, 5, 0, 1000)?;
    let key = database_id.clone();
    let (db, creds) = app
        .store
        .run(move |c| {
            Ok((
                crate::store::databases::get(c, &key)?,
                crate::store::databases::credentials(c, &key)?,
            ))
        })
        .await?;
    let db = db.ok_or_else(|| Error::NotFound("Database not found".into()))?;
    super::databases::in_scope(actor, &db.id)?;
    if !db.enabled {
        return Err(Error::Conflict(format!("Database '{}' is disabled", db.id)));
    }
    let postgres = db.dialect != "sqlite";
    if postgres && mode.streams() && a.publication.is_none() {
        return Err(invalid(
            "publication",
            "Publication name is required for CDC modes",
        ));
    }
    let credential_id = if postgres {
        match (&a.credential_id, creds.as_slice()) {
            (Some(id), _) => {
                if !creds.iter().any(|c| &c.id == id) {
                    return Err(invalid(
                        "credentialId",
                        format!("is not a credential of database '{}'", db.id),
                    ));
                }
                Some(id.clone())
            }
            (None, []) => {
                return Err(Error::NotFound(
                    "No credentials configured for this database".into(),
                ));
            }
            (None, [one]) => Some(one.id.clone()),
            (None, many) => {
                return Err(invalid(
                    "credentialId",
                    format!(
                        "is required: database '{}' has {} credentials ({})",
                        db.id,
                        many.len(),
                        many.iter()
                            .map(|c| format!("{} for user {}", c.id, c.username))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
    } else {
        None
    };
    let id = uuid::Uuid::new_v4().to_string();
    let now = crate::util::now_rfc3339();
    let row = Pipeline {
        slot: pipelines::slot_name(&id),
        id,
        name: a.name.clone(),
        database_id: db.id.clone(),
        credential_id,
        mode: mode.as_str().into(),
        publication: if postgres {
            a.publication.clone()
        } else {
            None
        },
        schema_name: a.schema.clone().unwrap_or_else(|| "public".into()),
        tables: a
            .tables
            .as_ref()
            .map(|t| serde_json::to_string(t).expect("json")),
        batch_size,
        batch_timeout_ms,
        retry_delay_ms,
        retry_max_attempts,
        desired: "running".into(),
        state: "starting".into(),
        error: None,
        node: app.node.get().cloned(),
        created_at: now.clone(),
        created_by: actor.user_id.clone(),
        updated_at: now,
    };
    let run = run_of(app, &row).await?;
    preflight(&run)
        .await
        .map_err(|m| Error::Conflict(format!("Pipeline '{}' not started: {m}", row.name)))?;
    let r = row.clone();
    app.store.write(move |c| store::insert(c, &r)).await?;
    launch(app, run);
    Ok(match mode {
        Mode::CopyOnly => format!("Pipeline '{}' started (copy_only)", row.name),
        _ => format!("Pipeline '{}' started", row.name),
    })
}

/// A start of a pipeline that exists: resumes it from its checkpoint with the new batch and
/// retry settings; the settings that decide what is replicated cannot change.
async fn resume(app: &Arc<App>, p: &mut Pipeline, a: StartArgs) -> Result<String> {
    if app.pipelines.is_running(&p.id) {
        let state = app
            .pipelines
            .live(&p.id)
            .map(|l| l.state().0)
            .unwrap_or("starting");
        return Err(Error::Conflict(format!(
            "Pipeline '{}' already exists and is {state}",
            p.name
        )));
    }
    let differs = |field: &str, given: Option<String>, have: Option<String>| -> Result<()> {
        match given {
            Some(g) if Some(&g) != have.as_ref() => Err(invalid(
                field,
                format!(
                    "differs from pipeline '{}' ({}); delete the pipeline to change what it replicates",
                    p.name,
                    have.unwrap_or_else(|| "none".into())
                ),
            )),
            _ => Ok(()),
        }
    };
    differs(
        "databaseId",
        a.database_id.clone(),
        Some(p.database_id.clone()),
    )?;
    differs(
        "mode",
        a.mode.map(|m| m.as_str().to_string()),
        Some(p.mode.clone()),
    )?;
    differs("publication", a.publication.clone(), p.publication.clone())?;
    differs("schema", a.schema.clone(), Some(p.schema_name.clone()))?;
    differs(
        "tables",
        a.tables
            .as_ref()
            .map(|t| serde_json::to_string(t).expect("json")),
        p.tables.clone(),
    )?;
    if let Some(c) = &a.credential_id {
        let (db, c2) = (p.database_id.clone(), c.clone());
        let ok = app
            .store
            .run(move |s| crate::store::databases::secret(s, &db, &c2))
            .await?
            .is_some();
        if !ok {
            return Err(invalid(
                "credentialId",
                format!("is not a credential of database '{}'", p.database_id),
            ));
        }
        p.credential_id = Some(c.clone());
    }
    p.batch_size = bounded("batchSize", a.batch_size, p.batch_size, 1, 100_000)?;
    p.batch_timeout_ms = bounded(
        "batchTimeoutMs",
        a.batch_timeout_ms,
        p.batch_timeout_ms,
        1,
        600_000,
    )?;
    p.retry_delay_ms = bounded(
        "retryDelayMs",
        a.retry_delay_ms,
        p.retry_delay_ms,
        0,
        3_600_000,
    )?;
    p.retry_max_attempts = bounded(
        "retryMaxAttempts",
        a.retry_max_attempts,
        p.retry_max_attempts,
        0,
        1000,
    )?;
    if let Some(n) = held_elsewhere(app, p).await? {
        return Err(elsewhere(&p.name, "start it", &n));
    }
    let run = run_of(app, p).await?;
    preflight(&run)
        .await
        .map_err(|m| Error::Conflict(format!("Pipeline '{}' not started: {m}", p.name)))?;
    // moving here from a node that is gone: a replica this node kept from an earlier time is
    // stale (the source went on without it), so it starts afresh
    let me = node_of(app);
    if p.node.as_deref().is_some_and(|n| n != me) {
        let (path, id) = (run.target.clone(), p.id.clone());
        tokio::task::spawn_blocking(move || target::forget(&path, &id, true))
            .await?
            .map_err(Error::Other)?;
    }
    p.desired = "running".into();
    p.state = "starting".into();
    p.error = None;
    p.node = app.node.get().cloned();
    let row = p.clone();
    app.store
        .write(move |c| store::set_desired(c, &row))
        .await?;
    launch(app, run);
    Ok(format!(
        "Pipeline '{}' started (resuming from its checkpoint)",
        p.name
    ))
}

async fn find(app: &App, name: &str) -> Result<Pipeline> {
    let n = name.to_string();
    app.store
        .run(move |c| store::by_name(c, &n))
        .await?
        .ok_or_else(|| Error::NotFound(format!("Pipeline '{name}' not found")))
}

/// Stops a pipeline at a safe point; it keeps its row and checkpoint.
pub async fn stop(app: &Arc<App>, actor: &Actor, name: &str) -> Result<String> {
    audited(
        app,
        actor,
        "etl-stop-pipeline",
        json!({"name": name}),
        async {
            let p = find(app, name).await?;
            super::databases::in_scope(actor, &p.database_id)?;
            if !app.pipelines.stop(&p.id, STOP_GRACE).await {
                return Err(Error::Other(format!(
                    "Pipeline '{name}' did not stop within {} s; it stops at its next safe point",
                    STOP_GRACE.as_secs()
                )));
            }
            // only what is wanted changes: an error the run recorded while stopping stays
            let id = p.id.clone();
            app.store
                .write(move |c| store::mark_stopped(c, &id))
                .await?;
            Ok(format!("Pipeline '{name}' stopped"))
        },
    )
    .await
}

/// Deletes a pipeline: stops it, removes its replication slot (PostgreSQL) or triggers and
/// change table (SQLite), its checkpoint, and its replica tables with `drop_tables`. A source
/// that cannot be cleaned keeps the pipeline, unless `force`.
pub async fn delete(
    app: &Arc<App>,
    actor: &Actor,
    name: &str,
    drop_tables: bool,
    force: bool,
) -> Result<String> {
    let args = json!({"name": name, "dropTables": drop_tables, "force": force});
    audited(app, actor, "etl-delete-pipeline", args, async {
        let p = find(app, name).await?;
        super::databases::in_scope(actor, &p.database_id)?;
        if let Some(n) = held_elsewhere(app, &p).await? {
            return Err(elsewhere(name, "delete it", &n));
        }
        if !app.pipelines.stop(&p.id, STOP_GRACE).await {
            return Err(Error::Other(format!(
                "Pipeline '{name}' did not stop within {} s; try again",
                STOP_GRACE.as_secs()
            )));
        }
        let mut notes = Vec::new();
        let cleaned: std::result::Result<(), String> = async {
            let run = run_of(app, &p).await.map_err(|e| e.to_string())?;
            match &run.source {
                Source::Postgres(t) if run.mode.streams() => {
                    let client = pipelines::postgres::connect(t).await.map_err(|f| match f {
                        pipelines::Fail::Fatal(m) | pipelines::Fail::Transient(m) => m,
                    })?;
                    pipelines::postgres::drop_slot(&client, &run.slot).await?;
                    notes.push(format!("replication slot {} dropped", run.slot));
                }
                Source::Sqlite(path) if run.mode.streams() => {
                    let (path, slot) = (path.clone(), run.slot.clone());
                    tokio::task::spawn_blocking(move || pipelines::sqlite::uninstall(&path, &slot))
                        .await
                        .map_err(|e| e.to_string())??;
                    notes.push("change-capture triggers removed".into());
                }
                _ => {}
            }
            Ok(())
        }
        .await;
        if let Err(m) = cleaned {
            if !force {
                return Err(Error::Conflict(format!(
                    "Pipeline '{name}' kept: its source could not be cleaned up ({m}); retry, or pass \
                     force: true to delete it anyway (then drop replication slot {} yourself: \
                     SELECT pg_drop_replication_slot('{}'))",
                    p.slot, p.slot
                )));
            }
            notes.push(format!("source not cleaned up: {m}"));
        }
        let (path, id) = (crate::engine::paths::main_file(&app.config), p.id.clone());
        tokio::task::spawn_blocking(move || target::forget(&path, &id, drop_tables))
            .await?
            .map_err(Error::Other)?;
        if drop_tables {
            notes.push("replica tables dropped".into());
        }
        let id = p.id.clone();
        app.store.write(move |c| store::delete(c, &id)).await?;
        Ok(if notes.is_empty() {
            format!("Pipeline '{name}' deleted")
        } else {
            format!("Pipeline '{name}' deleted ({})", notes.join(", "))
        })
    })
    .await
}

/// Every pipeline with its live figures.
/// Where pipeline `name`'s first copy stands: `None` while it starts or copies, `Ok` with a
/// line once it streams (or was stopped), `Err` with the reason once it stopped in `error`.
pub async fn snapshot_outcome(
    app: &App,
    name: &str,
) -> Result<Option<std::result::Result<String, String>>> {
    let key = name.to_string();
    let Some(p) = app.store.run(move |c| store::by_name(c, &key)).await? else {
        return Ok(Some(Err(format!("Pipeline '{name}' no longer exists"))));
    };
    Ok(match p.state.as_str() {
        "starting" | "snapshotting" => None,
        "error" => Some(Err(p
            .error
            .unwrap_or_else(|| format!("Pipeline '{name}' stopped in error")))),
        state => Some(Ok(format!(
            "Pipeline '{name}' copied its tables and is {state}"
        ))),
    })
}

pub async fn list(app: &Arc<App>, actor: &Actor) -> Result<Vec<PipelineView>> {
    let rows = app.store.run(store::list).await?;
    let main = crate::engine::paths::main_file(&app.config);
    let (checkpoints, targets) = tokio::task::spawn_blocking(move || {
        let cps = target::all_checkpoints(&main);
        let targets = target::all_targets(&main);
        (cps, targets)
    })
    .await?;
    let wanted: Vec<(String, Option<String>)> = rows
        .iter()
        .map(|p| (p.database_id.clone(), p.credential_id.clone()))
        .collect();
    let dbs = app
        .store
        .run(move |c| {
            let mut out = Vec::new();
            for (db, cred) in wanted {
                let d = crate::store::databases::get(c, &db)?;
                let user = match &cred {
                    Some(id) => crate::store::databases::secret(c, &db, id)?.map(|s| s.1),
                    None => None,
                };
                if let Some(d) = d {
                    out.push((d, user, cred));
                }
            }
            Ok(out)
        })
        .await?;
    let mut out = Vec::new();
    for p in rows {
        if super::databases::in_scope(actor, &p.database_id).is_err() {
            continue;
        }
        let live = app.pipelines.live(&p.id);
        let cp = checkpoints
            .iter()
            .find(|(id, _)| id == &p.id)
            .map(|(_, c)| c);
        let (state, error) = match &live {
            Some(l) => {
                let (s, e) = l.state();
                (s.to_string(), e)
            }
            None => (p.state.clone(), p.error.clone()),
        };
        let rows_replicated = live
            .as_ref()
            .map(|l| l.rows.load(std::sync::atomic::Ordering::Relaxed))
            .unwrap_or(0)
            .max(cp.map(|c| c.rows).unwrap_or(0));
        let (lag_ms, p50, p99) = live.as_ref().map(|l| l.lag()).unwrap_or((None, None, None));
        let last = live
            .as_ref()
            .map(|l| {
                l.last_activity_ms
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .filter(|&t| t > 0)
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        let db = dbs
            .iter()
            .find(|d| d.0.id == p.database_id && d.2 == p.credential_id)
            .map(|(d, u, _)| (d, u));
        let connection = match db {
            Some((d, _)) if d.dialect == "sqlite" => format!("sqlite:{}", d.database_name),
            Some((d, user)) => format!(
                "postgresql://{}@{}:{}/{}",
                user.clone().unwrap_or_default(),
                d.host.clone().unwrap_or_else(|| "127.0.0.1".into()),
                d.port.unwrap_or(5432),
                d.database_name
            ),
            None => "(database deleted)".into(),
        };
        let postgres = !matches!(db, Some((d, _)) if d.dialect == "sqlite");
        out.push(PipelineView {
            lag_bytes: live
                .as_ref()
                .filter(|_| postgres && p.mode != "copy_only")
                .map(|l| l.lag_bytes()),
            targets: targets
                .iter()
                .filter(|(id, _)| id == &p.id)
                .map(|(_, t)| t.clone())
                .collect(),
            id: p.id,
            name: p.name,
            state,
            snapshot: p.mode != "cdc_only",
            mode: p.mode,
            database_id: p.database_id,
            connection,
            publication: p.publication,
            schema: Some(p.schema_name),
            tables: p
                .tables
                .as_deref()
                .and_then(|t| serde_json::from_str(t).ok()),
            slot: p.slot,
            rows_replicated,
            last_activity: last,
            lag_ms,
            lag_p50_ms: p50,
            lag_p99_ms: p99,
            error,
            node: p.node,
            batch_size: p.batch_size,
            batch_timeout_ms: p.batch_timeout_ms,
            retry_delay_ms: p.retry_delay_ms,
            retry_max_attempts: p.retry_max_attempts,
            created_at: p.created_at,
        });
    }
    Ok(out)
}

/// Resumes, at server start, every pipeline that was running when the server last stopped
/// (however it stopped).
pub async fn resume_all(app: &Arc<App>) {
    let rows = match app.store.run(store::list).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("pipelines not resumed: {e}");
            return;
        }
    };
    // a pipeline's replica and checkpoint are in the trexdb of the node that ran it: on a store
    // shared by several nodes each resumes its own (and those no node has taken yet); the one
    // node of a SQLite store resumes them all
    let me = app.node.get().cloned();
    let shared = app.store.backend() == crate::store::Backend::Postgres;
    let mine = |p: &Pipeline| !shared || p.node.is_none() || p.node == me;
    if shared {
        // what this node's trexdb still holds of pipelines that moved to another node (a copy
        // there is the live one) or were deleted on another node (their tables are kept, no
        // longer owned)
        let path = crate::engine::paths::main_file(&app.config);
        let stale: Vec<(String, bool)> = target::all_checkpoints(&path)
            .into_iter()
            .filter_map(|(id, _)| match rows.iter().find(|p| p.id == id) {
                None => Some((id, false)),
                Some(p) if !mine(p) => Some((id, true)),
                Some(_) => None,
            })
            .collect();
        for (id, drop_tables) in stale {
            tracing::info!(pipeline = %id, "forgetting a replica of a pipeline this node no longer runs");
            let path = path.clone();
            let _ =
                tokio::task::spawn_blocking(move || target::forget(&path, &id, drop_tables)).await;
        }
    }
    for p in rows
        .into_iter()
        .filter(|p| p.desired == "running" && mine(p))
    {
        // one that no node has taken yet becomes this node's first (a run checks that it is)
        if shared && p.node.is_none() {
            let (id, me) = (p.id.clone(), node_of(app));
            match app
                .store
                .write(move |c| store::claim(c, &id, None, &me))
                .await
            {
                Ok(true) => {}
                _ => continue,
            }
        }
        match run_of(app, &p).await {
            Ok(run) => {
                tracing::info!(pipeline = %p.name, "resuming pipeline");
                launch(app, run);
            }
            Err(e) => {
                let (id, msg, me) = (p.id.clone(), format!("not resumed: {e}"), node_of(app));
                tracing::warn!(pipeline = %p.name, "{msg}");
                let _ = app
                    .store
                    .write(move |c| store::ended(c, &id, "error", Some(&msg), &me))
                    .await;
            }
        }
    }
}

/// The names of the pipelines reading database `id` (a database in use is not deleted).
pub async fn of_database(app: &App, id: &str) -> Result<Vec<String>> {
    let id = id.to_string();
    app.store.run(move |c| store::of_database(c, &id)).await
}

/// What one node does with the pipelines of a shared store at each heartbeat (a PostgreSQL
/// store; the one node of a SQLite store owns them all):
///
/// - one of this node's wanted running that does not run here (its run ended `moved` while
///   the store did not answer) is started again;
/// - one that runs here but whose row was deleted, stopped or taken over by another node
///   (`etl-delete-pipeline`, `etl-stop-pipeline` called on another node, or this node was
///   thought dead) is stopped here at a safe point; its row is not written;
/// - one wanted running whose node is dead (its heartbeat unchanged for 12 beats, on this
///   node's clock: [`Liveness`](crate::ops::cluster::Liveness); a node restarted sooner keeps
///   its pipelines) is taken over: claimed by one conditional write (of several nodes trying,
///   one wins), its stale replica here forgotten, and started. trexdb is node-local, so the replica the dead
///   node held stays there: a copy mode copies the source again into this node's trexdb and
///   streams from there; `cdc_only` continues from the position its slot holds (the last one
///   the dead node confirmed), so the changes made while no node ran it are not lost.
///   Audited as `etl-takeover-pipeline` by `system:pipeline-takeover`.
pub async fn reconcile(app: &Arc<App>, liveness: &mut crate::ops::cluster::Liveness) {
    let Some(me) = app.node.get().cloned() else {
        return;
    };
    let running = app.pipelines.ids();
    let found = app
        .store
        .run(|c| Ok((store::list(c)?, crate::store::nodes::list(c)?)))
        .await;
    let (rows, nodes) = match found {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("pipelines not reconciled: {e}");
            return;
        }
    };
    let mut progressed = Vec::new();
    for id in running {
        let row = rows
            .iter()
            .find(|p| p.id == id && p.desired == "running" && p.node.as_deref() == Some(&me));
        // the row shows the other nodes what the run here is doing
        if let Some(p) = row
            && let Some(live) = app.pipelines.live(&id)
        {
            let (state, error) = live.state();
            if p.state != state || p.error != error {
                progressed.push((id.clone(), state, error));
            }
        }
        if row.is_none() {
            tracing::info!(pipeline = %id, "stopping here: deleted, stopped or taken over on another node");
            // not waited for: the heartbeat goes on meanwhile
            let app = app.clone();
            tokio::spawn(async move { app.pipelines.stop(&id, STOP_GRACE).await });
        }
    }
    if !progressed.is_empty() {
        let me2 = me.clone();
        let written = app
            .store
            .run(move |c| {
                for (id, state, error) in &progressed {
                    store::progressed(c, id, state, error.as_deref(), &me2)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = written {
            tracing::warn!("pipeline states not recorded: {e}");
        }
    }
    liveness.observe(&nodes);
    let hb = app.config.cluster.heartbeat_secs;
    // a node this store never saw is left alone, and one without a node is resumed by the
    // next node to start (resume_all)
    let dead = |node: &Option<String>| match node {
        Some(n) if n != &me => liveness.silent(n, hb),
        _ => false,
    };
    for p in rows
        .into_iter()
        .filter(|p| p.desired == "running" && !app.pipelines.is_running(&p.id))
    {
        if p.node.as_deref() == Some(&me) {
            // this node's, wanted running, not running here: a run that ended `moved` while
            // the store did not answer goes on
            match run_of(app, &p).await {
                Ok(run) => {
                    tracing::info!(pipeline = %p.name, "resuming pipeline");
                    launch(app, run);
                }
                Err(e) => tracing::warn!(pipeline = %p.name, "not resumed: {e}"),
            }
        } else if dead(&p.node)
            && let Err(e) = take_over(app, &p, &me).await
        {
            tracing::warn!(pipeline = %p.name, "not taken over: {e}");
        }
    }
}

/// Claims pipeline `p` of a dead node for node `me` and starts it (see [`reconcile`]).
async fn take_over(app: &Arc<App>, p: &Pipeline, me: &str) -> Result<()> {
    let actor = Actor::system("pipeline-takeover");
    let args = json!({"name": p.name, "from": p.node, "to": me});
    let (id, from, to) = (p.id.clone(), p.node.clone(), me.to_string());
    let claimed = app
        .store
        .write(move |c| store::claim(c, &id, from.as_deref(), &to))
        .await?;
    if !claimed {
        return Ok(());
    }
    audited(app, &actor, "etl-takeover-pipeline", args, async {
        tracing::warn!(pipeline = %p.name, from = ?p.node, "taking over the pipeline of a dead node");
        let (path, id) = (crate::engine::paths::main_file(&app.config), p.id.clone());
        tokio::task::spawn_blocking(move || target::forget(&path, &id, true))
            .await
            .map_err(|e| Error::Other(format!("internal: {e}")))?
            .map_err(|e| Error::Other(format!("forgetting the stale replica: {e}")))?;
        let run = match run_of(app, p).await {
            Ok(r) => r,
            Err(e) => {
                let (id, msg, me) = (p.id.clone(), format!("not taken over: {e}"), me.to_string());
                let _ = app
                    .store
                    .write(move |c| store::ended(c, &id, "error", Some(&msg), &me))
                    .await;
                return Err(e);
            }
        };
        launch(app, run);
        Ok(format!("Pipeline '{}' taken over", p.name))
    })
    .await
    .map(|_| ())
}
