//! Runs of migration definitions on the job runtime: `run_migration` in `test` mode (scratch
//! copies — SQLite's online backup into `<data_dir>/scratch/`, deleted after; PostgreSQL inside a
//! transaction that is rolled back — with a per-target report: statements, rows, the schema
//! diff, each api's result, time) or `migrate` mode (refused unless this definition version
//! passed a test and no target's schema changed since). A run is a job with a row per target;
//! the strategy orders the targets, the failure handling decides what a failure undoes
//! (SQLite from the pre-run copy the runner keeps until the run ends, PostgreSQL by `down`).
//! Cancellation stops at the next target; a run whose process died is finished by the job's
//! next attempt as `failed` or `rolled_back` with the reason "interrupted".

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Actor, audited};
use crate::app::App;
use crate::engine::{paths, registry};
use crate::error::{Error, Result};
use crate::jobs::JobCtx;
use crate::migrate::definition::{Body, Data, Strategy};
use crate::migrate::runs as lite;
use crate::migrate::schema;
use crate::store::migrations::{self as rows, Run};
use crate::util::{parse_rfc3339, random_hex};

/// The job kind of a run.
pub const KIND: &str = "migration-run";

/// Registers the run job with the runtime (retried once, so a run whose process died is
/// finished as interrupted by the next runtime that claims it).
pub fn register(app: &Arc<App>) {
    let weak: Weak<App> = Arc::downgrade(app);
    app.jobs.register(KIND, true, move |ctx, payload| {
        let app = weak.upgrade();
        async move {
            let Some(app) = app else {
                return Err("the server is stopping".into());
            };
            let run_id = payload["runId"].as_str().unwrap_or_default().to_string();
            match execute(&app, &ctx, &run_id).await {
                Ok(v) => Ok(v),
                Err(e) => {
                    runner_failed(&app, &run_id, &e).await;
                    Err(e.to_string())
                }
            }
        }
    });
}

/// Where a target lives.
#[derive(Debug, Clone)]
enum Place {
    Sqlite(PathBuf),
    Postgres(String),
}

async fn place(app: &App, id: &str) -> Result<Place> {
    let d = super::databases::find(app, id).await?.ok_or_else(|| {
        Error::Conflict(format!("target database '{id}' is no longer registered"))
    })?;
    if !d.enabled {
        return Err(Error::Conflict(format!(
            "target database '{id}' is disabled"
        )));
    }
    Ok(if d.dialect == "sqlite" {
        Place::Sqlite(paths::resolve_sqlite(
            &app.config,
            &d.database_name,
            "databaseName",
        )?)
    } else {
        Place::Postgres(d.id)
    })
}

async fn connect(app: &App, id: &str) -> Result<tokio_postgres::Client> {
    let (_, r) = registry::lookup(app, id, true)
        .await
        .map_err(|e| Error::Conflict(e.to_string()))?;
    let registry::Resolved::Postgres(t) = r else {
        return Err(Error::Conflict(format!("'{id}' is not PostgreSQL")));
    };
    crate::engine::postgres::connect(
        &t,
        Duration::from_secs(app.config.engine.connect_timeout_secs),
    )
    .await
    .map_err(|e| Error::Conflict(e.to_string()))
}

fn pg(e: tokio_postgres::Error) -> Error {
    Error::Conflict(match e.as_db_error() {
        Some(d) => d.message().to_string(),
        None => e.to_string(),
    })
}

/// The digest of a target's schema now.
async fn digest(app: &App, id: &str) -> Result<String> {
    Ok(match place(app, id).await? {
        Place::Sqlite(p) => tokio::task::spawn_blocking(move || lite::schema_of(&p))
            .await??
            .digest(),
        Place::Postgres(id) => schema::postgres(&connect(app, &id).await?)
            .await
            .map_err(pg)?
            .digest(),
    })
}

/// The order targets run in, for a strategy.
fn ordered(body: &Body) -> Vec<String> {
    let all: Vec<String> = body.interlays.iter().map(|i| i.endpoint.clone()).collect();
    match &body.strategy {
        Strategy::Canary { canary_targets } => {
            let mut v: Vec<String> = canary_targets.clone();
            v.extend(all.into_iter().filter(|t| !canary_targets.contains(t)));
            v
        }
        _ => all,
    }
}

/// A run as the tools show it.
pub async fn view(app: &App, r: &Run) -> Result<Value> {
    let id = r.id.clone();
    let targets = app.store.run(move |c| rows::targets(c, &id)).await?;
    Ok(json!({
        "runId": r.id, "migrationId": r.migration_id, "version": r.version, "mode": r.mode,
        "state": r.state, "error": r.error, "createdAt": r.created_at, "startedAt": r.started_at,
        "finishedAt": r.finished_at,
        "targets": targets.iter().map(|t| json!({
            "database": t.database_id, "state": t.state, "error": t.error,
            "report": t.report.as_deref().and_then(|s| serde_json::from_str::<Value>(s).ok()),
        })).collect::<Vec<_>>(),
    }))
}

/// One run by id (`touching`: only when the run's definition targets that database).
pub async fn get(app: &App, run_id: &str, touching: Option<&str>) -> Result<Value> {
    let key = run_id.to_string();
    let r = app
        .store
        .run(move |c| rows::run(c, &key))
        .await?
        .ok_or_else(|| Error::NotFound(format!("Migration run '{run_id}' not found")))?;
    let v = view(app, &r).await?;
    if let Some(db) = touching
        && !v["targets"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["database"] == db))
    {
        return Err(Error::NotFound(format!(
            "Migration run '{run_id}' not found"
        )));
    }
    Ok(v)
}

/// The job that carries run `run_id`, once it has one.
pub async fn job_of(app: &App, run_id: &str) -> Result<Option<String>> {
    let key = run_id.to_string();
    Ok(app
        .store
        .run(move |c| rows::run(c, &key))
        .await?
        .and_then(|r| r.job_id))
}

/// True when a run's view ([`get`]) shows it has ended.
pub fn has_ended(view: &Value) -> bool {
    !matches!(
        view.get("state").and_then(Value::as_str),
        Some("pending" | "running" | "rolling_back")
    )
}

/// Starts a run of the latest version of `migration_id`; returns the run id. Checks what must
/// hold before anything runs: a supported strategy, a passed test bound to the targets' schemas
/// for `migrate`, no other run of the definition under way.
pub async fn start(
    app: &App,
    actor: &Actor,
    migration_id: &str,
    mode: &str,
    touching: Option<&str>,
) -> Result<String> {
    let args = json!({"migration_id": migration_id, "mode": mode});
    audited(app, actor, "run_migration", args, async {
        if mode != "test" && mode != "migrate" {
            return Err(super::invalid("mode", "must be test or migrate"));
        }
        let key = migration_id.to_string();
        let def = app
            .store
            .run(move |c| rows::latest(c, &key))
            .await?
            .ok_or_else(|| Error::NotFound(format!("Migration '{migration_id}' not found. Please verify the migration ID is correct")))?;
        let body = super::definitions::body_of(&def)?;
        let targets = ordered(&body);
        if let Some(db) = touching
            && !targets.iter().any(|t| t == db)
        {
            return Err(Error::NotFound(format!("Migration '{migration_id}' not found for database '{db}'")));
        }
        for t in &targets {
            super::databases::in_scope(actor, t)?;
        }
        if body.strategy.unsupported() {
            return Err(Error::Conflict(format!(
                "Migration strategy '{}' is not supported by trex (supported: big_bang, rolling_update, canary, blue_green, time_window, shadow_traffic)",
                body.strategy.name()
            )));
        }
        if mode == "migrate" {
            if matches!(body.strategy, Strategy::ShadowTraffic {}) {
                return Err(Error::Conflict("shadow_traffic is a test-only strategy: run it with mode test".into()));
            }
            let (key, v) = (migration_id.to_string(), def.version);
            let Some(test) = app.store.run(move |c| rows::passed_test(c, &key, v)).await? else {
                return Err(Error::Conflict(format!(
                    "Migration '{migration_id}' version {} has not passed a test; run it with mode test first",
                    def.version
                )));
            };
            let tid = test.id.clone();
            let tested = app.store.run(move |c| rows::targets(c, &tid)).await?;
            for t in &targets {
                let seen = tested.iter().find(|x| &x.database_id == t).and_then(|x| x.schema_digest.clone());
                if seen.as_deref() != Some(digest(app, t).await?.as_str()) {
                    return Err(Error::Conflict(format!("target '{t}' changed since it was tested; test again")));
                }
            }
        }
        let run = Run {
            id: format!("run_{}", random_hex(8)),
            migration_id: def.id.clone(),
            version: def.version,
            mode: mode.to_string(),
            state: "pending".into(),
            job_id: None,
            error: None,
            created_by: actor.user_id.clone(),
            created_at: String::new(),
            started_at: None,
            finished_at: None,
        };
        let (r, t, id) = (run.clone(), targets.clone(), def.id.clone());
        app.store
            .write(move |c| {
                if let Some(other) = rows::busy(c, &id)? {
                    return Err(Error::Conflict(format!(
                        "Migration '{id}' has run {other} under way; wait for it (get_migration_run) or cancel it"
                    )));
                }
                if let Some((other, db)) = rows::busy_targets(c, &t)? {
                    return Err(Error::Conflict(format!(
                        "target '{db}' is in run {other} of another migration; wait for it or cancel it"
                    )));
                }
                rows::insert_run(c, &r, &t)
            })
            .await?;
        let job = app
            .jobs
            .enqueue(KIND, &json!({"runId": run.id}), 2, actor.user_id.as_deref())
            .await?;
        let (rid, jid) = (run.id.clone(), job);
        app.store.write(move |c| rows::set_job(c, &rid, &jid)).await?;
        Ok(run.id)
    })
    .await
}

/// Waits for run `run_id` to end, relaying progress; `cancel` firing cancels the run.
pub async fn wait(
    app: &App,
    run_id: &str,
    events: tokio::sync::broadcast::Receiver<crate::jobs::JobEvent>,
    on_progress: impl FnMut(f64, Option<f64>, Option<&str>),
    cancel: tokio_util::sync::CancellationToken,
) -> Result<Value> {
    let key = run_id.to_string();
    let r = app
        .store
        .run(move |c| rows::run(c, &key))
        .await?
        .expect("started");
    let job = r.job_id.clone().unwrap_or_default();
    tokio::select! {
        j = app.jobs.wait_from(events, &job, on_progress) => { j?; }
        _ = cancel.cancelled() => { app.jobs.cancel(&job).await?; }
    }
    get(app, run_id, None).await
}

/// Asks a run to stop at its next safe point (before the next target).
pub async fn cancel(
    app: &App,
    actor: &Actor,
    run_id: &str,
    touching: Option<&str>,
) -> Result<Value> {
    audited(
        app,
        actor,
        "cancel_migration_run",
        json!({"run_id": run_id}),
        async {
            let v = get(app, run_id, touching).await?;
            let key = run_id.to_string();
            let r = app
                .store
                .run(move |c| rows::run(c, &key))
                .await?
                .expect("found");
            if !matches!(r.state.as_str(), "pending" | "running" | "rolling_back") {
                return Err(Error::Conflict(format!(
                    "Migration run '{run_id}' has ended ({})",
                    r.state
                )));
            }
            let state = match &r.job_id {
                Some(j) => app.jobs.cancel(j).await?,
                None => None,
            };
            if state.as_deref() == Some("cancelled") && r.state == "pending" {
                // cancelled before a worker took it: nothing ran, so nothing is undone
                for t in v["targets"].as_array().cloned().unwrap_or_default() {
                    let db = t["database"].as_str().unwrap_or_default().to_string();
                    let why = Some("cancelled".to_string());
                    mark(app, run_id, &db, "not_started", None, None, why).await?;
                }
                let ds = (r.mode == "migrate").then_some("failed");
                let why = Some("cancelled before it started".to_string());
                set_state(app, &r, "cancelled", why, ds).await?;
            }
            get(app, run_id, touching).await
        },
    )
    .await
}

/// The scratch directory of a run (test copies: this node's business only).
fn scratch(app: &App, run_id: &str) -> PathBuf {
    app.config.store.data_dir.join("scratch").join(run_id)
}

/// Where the pre-run copy of the SQLite target at `path` is kept while run `run_id` lasts:
/// beside the database, not in this node's data dir, so that whoever can reach the database —
/// another node of a shared store, after this one died mid-run — can also put it back.
fn pre_copy(path: &std::path::Path, run_id: &str, db: &str) -> PathBuf {
    path.parent()
        .unwrap_or(std::path::Path::new("."))
        .join(".trex-pre-run")
        .join(run_id)
        .join(format!("{db}.pre.db"))
}

/// Removes what a run kept on disk: its scratch directory and its targets' pre-run copies.
async fn clean_up(app: &App, run: &Run, body: &Body) {
    let _ = std::fs::remove_dir_all(scratch(app, &run.id));
    for i in &body.interlays {
        if let Ok(Place::Sqlite(path)) = place(app, &i.endpoint).await
            && let Some(dir) = pre_copy(&path, &run.id, &i.endpoint).parent()
        {
            let _ = std::fs::remove_dir_all(dir);
            if let Some(top) = dir.parent() {
                // the shared `.trex-pre-run` goes when no other run keeps a copy there
                let _ = std::fs::remove_dir(top);
            }
        }
    }
}

/// Records a target's state and report.
async fn mark(
    app: &App,
    run: &str,
    db: &str,
    state: &str,
    digest: Option<String>,
    report: Option<&Value>,
    error: Option<String>,
) -> Result<()> {
    let (run, db, state) = (run.to_string(), db.to_string(), state.to_string());
    let report = report.map(|r| r.to_string());
    app.store
        .write(move |c| {
            rows::set_target(
                c,
                &run,
                &db,
                &state,
                digest.as_deref(),
                report.as_deref(),
                error.as_deref(),
            )
        })
        .await
}

async fn set_state(
    app: &App,
    run: &Run,
    state: &str,
    error: Option<String>,
    def_status: Option<&str>,
) -> Result<()> {
    let (id, mid, v, state, ds) = (
        run.id.clone(),
        run.migration_id.clone(),
        run.version,
        state.to_string(),
        def_status.map(str::to_string),
    );
    app.store
        .write(move |c| {
            rows::set_run_state(c, &id, &state, error.as_deref())?;
            if let Some(s) = ds {
                rows::set_status(c, &mid, v, &s)?;
            }
            Ok(())
        })
        .await
}

/// Progress per statement of target `db`, reported from a blocking thread at most every 100 ms
/// (a 10,000-statement change would otherwise send 10,000 notifications).
fn statement_progress(ctx: &JobCtx, db: &str) -> impl FnMut(usize) + Send + 'static {
    let (ctx, db, rt) = (
        ctx.clone(),
        db.to_string(),
        tokio::runtime::Handle::current(),
    );
    let mut last: Option<Instant> = None;
    move |n| {
        if last.is_some_and(|t| t.elapsed() < Duration::from_millis(100)) {
            return;
        }
        last = Some(Instant::now());
        let (ctx, db) = (ctx.clone(), db.clone());
        rt.block_on(async move {
            ctx.progress(n as f64, None, Some(&format!("{db}: statement {n}")))
                .await
        });
    }
}

/// The change a run makes on a SQLite target.
async fn change_of(app: &App, body: &Body) -> Result<lite::Change> {
    Ok(match &body.data {
        Data::Sql { up, .. } => lite::Change::Sql(up.clone()),
        Data::None {} => lite::Change::Sql(String::new()),
        Data::Snapshot {
            source,
            tables,
            replace,
        } => match place(app, source).await? {
            Place::Sqlite(p) => lite::Change::Snapshot {
                source: p,
                tables: tables.clone(),
                replace: replace.clone().unwrap_or_else(|| "none".into()),
            },
            Place::Postgres(_) => {
                return Err(Error::Conflict(format!(
                    "snapshot source '{source}' is not SQLite"
                )));
            }
        },
    })
}

/// Tests one target on a scratch copy; returns its report and the digest of the schema the test
/// saw, or the error.
async fn test_target(
    app: &App,
    ctx: &JobCtx,
    run: &Run,
    body: &Body,
    db: &str,
) -> std::result::Result<(Value, String), (String, Option<String>)> {
    let started = Instant::now();
    let up = match &body.data {
        Data::Sql { up, .. } => up.clone(),
        _ => String::new(),
    };
    let shadow = matches!(body.strategy, Strategy::ShadowTraffic {});
    let fail = |e: Error| (e.to_string(), None);
    match place(app, db).await.map_err(fail)? {
        Place::Sqlite(path) => {
            let change = change_of(app, body).await.map_err(fail)?;
            let copy = scratch(app, &run.id).join(format!("{db}.test.db"));
            let apis = body.apis.clone();
            let mut progress = statement_progress(ctx, db);
            let r = tokio::task::spawn_blocking(move || -> std::result::Result<(Value, String), (String, Option<String>)> {
                let e = |e: rusqlite::Error| e.to_string();
                let before = lite::schema_of(&path).map_err(|x| (e(x), None))?;
                let digest = before.digest();
                let old_apis = if shadow { lite::check_apis(&lite::open_ro(&path).map_err(|x| (e(x), None))?, &apis) } else { vec![] };
                lite::copy(&path, &copy, false).map_err(|x| (e(x), Some(digest.clone())))?;
                let out = (|| -> std::result::Result<Value, String> {
                    let c = lite::open_rw(&copy).map_err(e)?;
                    change.prepare(&c).map_err(e)?;
                    c.execute_batch("BEGIN").map_err(e)?;
                    let applied = change.apply(&c, &mut progress).map_err(e)?;
                    let results = lite::check_apis(&c, &apis);
                    let after = schema::sqlite(&c).map_err(e)?;
                    c.execute_batch("COMMIT").map_err(e)?;
                    let mut report = json!({
                        "statements": applied.statements, "rowsAffected": applied.rows_affected,
                        "schemaBefore": before, "schemaAfter": after, "diff": schema::diff(&before, &after),
                        "apis": results,
                    });
                    if let Some(f) = results.iter().find(|r| !r.ok) {
                        return Err(format!("api '{}' fails after the change: {}", f.id, f.error.clone().unwrap_or_default()));
                    }
                    if shadow {
                        if let Some(o) = old_apis.iter().find(|r| !r.ok) {
                            return Err(format!("api '{}' fails before the change: {}", o.id, o.error.clone().unwrap_or_default()));
                        }
                        let same: Vec<Value> = results.iter().zip(&old_apis).map(|(n, o)| json!({"id": n.id, "same": n.sample == o.sample})).collect();
                        report["shadow"] = json!(same);
                        if let Some(d) = same.iter().find(|s| s["same"] != true) {
                            return Err(format!("shadow_traffic: api '{}' answers differently after the change", d["id"].as_str().unwrap_or("")));
                        }
                    }
                    Ok(report)
                })();
                let _ = std::fs::remove_file(&copy);
                out.map(|r| (r, digest.clone())).map_err(|m| (m, Some(digest)))
            })
            .await
            .map_err(|e| (e.to_string(), None))?;
            r.map(|(mut rep, d)| {
                rep["durationMs"] = json!(started.elapsed().as_millis() as u64);
                (rep, d)
            })
        }
        Place::Postgres(id) => {
            let mut c = connect(app, &id).await.map_err(fail)?;
            let tx = c
                .transaction()
                .await
                .map_err(|e| (pg(e).to_string(), None))?;
            let before = schema::postgres(&tx)
                .await
                .map_err(|e| (pg(e).to_string(), None))?;
            let digest = before.digest();
            let r: std::result::Result<Value, String> = async {
                let n = pg_change(app, &tx, body, &up)
                    .await
                    .map_err(|e| e.to_string())?;
                let results = pg_apis(&tx, &body.apis).await;
                let after = schema::postgres(&tx).await.map_err(|e| pg(e).to_string())?;
                if let Some(f) = results.iter().find(|r| !r.ok) {
                    return Err(format!(
                        "api '{}' fails after the change: {}",
                        f.id,
                        f.error.clone().unwrap_or_default()
                    ));
                }
                Ok(
                    json!({"statements": n.statements, "rowsAffected": n.rows_affected,
                    "schemaBefore": before, "schemaAfter": after,
                    "diff": schema::diff(&before, &after), "apis": results}),
                )
            }
            .await;
            let _ = tx.rollback().await;
            r.map(|mut rep| {
                rep["durationMs"] = json!(started.elapsed().as_millis() as u64);
                (rep, digest.clone())
            })
            .map_err(|m| (m, Some(digest)))
        }
    }
}

/// The change of a run on a PostgreSQL target (inside the caller's transaction).
async fn pg_change(
    app: &App,
    tx: &tokio_postgres::Transaction<'_>,
    body: &Body,
    up: &str,
) -> Result<lite::Applied> {
    match &body.data {
        Data::Snapshot {
            source,
            tables,
            replace,
        } => {
            pg_snapshot(
                app,
                tx,
                source,
                tables.as_deref(),
                replace.as_deref().unwrap_or("none"),
            )
            .await
        }
        _ => pg_apply(tx, up).await,
    }
}

/// `t` as `schema.table` (a bare name is in `public`).
pub fn qualified(t: &str) -> String {
    if t.contains('.') {
        t.to_string()
    } else {
        format!("public.{t}")
    }
}

fn pg_quote(qualified: &str) -> String {
    qualified
        .split('.')
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

/// The base tables of registered PostgreSQL database `id`, as `schema.table`.
pub async fn pg_tables(app: &App, id: &str) -> Result<Vec<String>> {
    let c = connect(app, id).await?;
    let rows = c
        .query(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables
             WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')
               AND table_name <> $1 ORDER BY 1",
            &[&crate::migrate::LEDGER],
        )
        .await
        .map_err(pg)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// `(name, type, not null)` of every column of `table`, in order.
async fn pg_columns(
    c: &impl tokio_postgres::GenericClient,
    table: &str,
) -> Result<Vec<(String, String, bool)>> {
    let rows = c
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull FROM pg_attribute a
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&table],
        )
        .await
        .map_err(pg)?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Copies tables of PostgreSQL database `source` into the target of `tx`: a missing table is
/// created with the source's columns and primary key; rows go through `COPY` into a temporary
/// table, then in by `replace` (`none`: rows with a key the target has are kept; `replace`: the
/// table's rows replaced; `merge`: rows with the same primary key overwritten).
async fn pg_snapshot(
    app: &App,
    tx: &tokio_postgres::Transaction<'_>,
    source: &str,
    tables: Option<&[String]>,
    replace: &str,
) -> Result<lite::Applied> {
    use futures_util::{SinkExt, StreamExt};
    let src = connect(app, source).await?;
    let all = pg_tables(app, source).await?;
    let chosen: Vec<String> = match tables {
        None => all,
        Some(w) => w.iter().map(|t| qualified(t)).collect(),
    };
    let mut out = lite::Applied::default();
    for t in &chosen {
        let q = pg_quote(t);
        let cols = pg_columns(&src, t).await?;
        if cols.is_empty() {
            return Err(Error::Conflict(format!(
                "table '{t}' is not in the snapshot's source"
            )));
        }
        let pk: Vec<String> = src
            .query(
                "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a
                   ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                 WHERE i.indrelid = to_regclass($1) AND i.indisprimary ORDER BY a.attnum",
                &[&t.as_str()],
            )
            .await
            .map_err(pg)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let quote = |c: &str| format!("\"{}\"", c.replace('"', "\"\""));
        if pg_columns(tx, t).await?.is_empty() {
            let mut defs: Vec<String> = cols
                .iter()
                .map(|(n, ty, nn)| {
                    format!("{} {ty}{}", quote(n), if *nn { " NOT NULL" } else { "" })
                })
                .collect();
            if !pk.is_empty() {
                defs.push(format!(
                    "PRIMARY KEY ({})",
                    pk.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ")
                ));
            }
            let schema = t.split('.').next().unwrap_or("public");
            tx.batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {}; CREATE TABLE {q} ({})",
                quote(schema),
                defs.join(", ")
            ))
            .await
            .map_err(pg)?;
            out.statements += 1;
        }
        let mine: Vec<String> = pg_columns(tx, t).await?.into_iter().map(|c| c.0).collect();
        let common: Vec<String> = cols
            .iter()
            .map(|c| c.0.clone())
            .filter(|c| mine.contains(c))
            .collect();
        let list = common
            .iter()
            .map(|c| quote(c))
            .collect::<Vec<_>>()
            .join(", ");
        tx.batch_execute(&format!(
            "DROP TABLE IF EXISTS pg_temp.trex_snapshot; CREATE TEMP TABLE trex_snapshot (LIKE {q}) ON COMMIT DROP"
        ))
        .await
        .map_err(pg)?;
        let sink = tx
            .copy_in::<_, bytes::Bytes>(&format!("COPY pg_temp.trex_snapshot ({list}) FROM STDIN"))
            .await
            .map_err(pg)?;
        let stream = src
            .copy_out(&format!("COPY (SELECT {list} FROM {q}) TO STDOUT"))
            .await
            .map_err(pg)?;
        futures_util::pin_mut!(sink);
        futures_util::pin_mut!(stream);
        while let Some(chunk) = stream.next().await {
            sink.send(chunk.map_err(pg)?).await.map_err(pg)?;
        }
        sink.finish().await.map_err(pg)?;
        let insert = format!("INSERT INTO {q} ({list}) SELECT {list} FROM pg_temp.trex_snapshot");
        let sql = match replace {
            "replace" => {
                tx.batch_execute(&format!("DELETE FROM {q}"))
                    .await
                    .map_err(pg)?;
                insert
            }
            "merge" if pk.is_empty() => {
                return Err(Error::Conflict(format!(
                    "merge needs a primary key on '{t}'"
                )));
            }
            "merge" => {
                let set: Vec<String> = common
                    .iter()
                    .filter(|c| !pk.contains(c))
                    .map(|c| format!("{0} = EXCLUDED.{0}", quote(c)))
                    .collect();
                let keys = pk.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
                if set.is_empty() {
                    format!("{insert} ON CONFLICT ({keys}) DO NOTHING")
                } else {
                    format!(
                        "{insert} ON CONFLICT ({keys}) DO UPDATE SET {}",
                        set.join(", ")
                    )
                }
            }
            _ => format!("{insert} ON CONFLICT DO NOTHING"),
        };
        out.rows_affected += tx.execute(&sql, &[]).await.map_err(pg)?;
        out.statements += 1;
        tx.batch_execute("DROP TABLE pg_temp.trex_snapshot")
            .await
            .map_err(pg)?;
    }
    Ok(out)
}

/// Runs `sql` on PostgreSQL as one simple query (inside the caller's transaction), counting the
/// statements and the rows they affected from the server's command completions.
async fn pg_apply(c: &impl tokio_postgres::GenericClient, sql: &str) -> Result<lite::Applied> {
    let mut out = lite::Applied::default();
    if sql.trim().is_empty() {
        return Ok(out);
    }
    crate::migrate::check_transaction_control(sql, true).map_err(Error::Conflict)?;
    for m in c.simple_query(sql).await.map_err(pg)? {
        if let tokio_postgres::SimpleQueryMessage::CommandComplete(n) = m {
            out.statements += 1;
            out.rows_affected += n;
        }
    }
    Ok(out)
}

async fn pg_apis(
    c: &impl tokio_postgres::GenericClient,
    apis: &[crate::migrate::definition::Api],
) -> Vec<lite::ApiResult> {
    let mut out = Vec::new();
    for a in apis {
        let params: Vec<Option<String>> = a
            .parameters
            .iter()
            .map(|v| match v {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                o => Some(o.to_string()),
            })
            .collect();
        let typed: Vec<(
            &(dyn tokio_postgres::types::ToSql + Sync),
            tokio_postgres::types::Type,
        )> = params
            .iter()
            .map(|p| {
                (
                    p as &(dyn tokio_postgres::types::ToSql + Sync),
                    tokio_postgres::types::Type::TEXT,
                )
            })
            .collect();
        out.push(match c.query_typed(&a.query, &typed).await {
            Ok(rows) => lite::ApiResult {
                id: a.id.clone(),
                ok: true,
                rows: Some(rows.len()),
                error: None,
                sample: vec![],
            },
            Err(e) => lite::ApiResult {
                id: a.id.clone(),
                ok: false,
                rows: None,
                error: Some(pg(e).to_string()),
                sample: vec![],
            },
        });
    }
    out
}

/// Migrates one target for real (one transaction; apis checked before it commits). SQLite
/// targets get a pre-run copy first (kept until the run ends, for rollback).
async fn migrate_target(
    app: &App,
    ctx: &JobCtx,
    run: &Run,
    body: &Body,
    db: &str,
) -> Result<Value> {
    let started = Instant::now();
    let up = match &body.data {
        Data::Sql { up, .. } => up.clone(),
        _ => String::new(),
    };
    match place(app, db).await? {
        Place::Sqlite(path) => {
            let change = change_of(app, body).await?;
            let pre = pre_copy(&path, &run.id, db);
            let apis = body.apis.clone();
            let progress = statement_progress(ctx, db);
            let report = tokio::task::spawn_blocking(move || -> std::result::Result<Value, String> {
                let e = |e: rusqlite::Error| e.to_string();
                let before = lite::schema_of(&path).map_err(e)?;
                // a retry keeps the copy taken before the first attempt
                if !pre.exists() {
                    lite::copy(&path, &pre, true).map_err(e)?;
                }
                // every strategy, blue_green too, changes the live file in one write transaction
                // with the apis checked before it commits: readers see the old schema (WAL
                // snapshot) until then and the new one after, never half; writers wait, and no
                // write is lost to a swap
                let (applied, results) = lite::migrate(&path, &change, &apis, progress)?;
                let diff = lite::schema_of(&path)
                    .map(|after| json!(schema::diff(&before, &after)))
                    .unwrap_or(Value::Null);
                Ok(json!({"statements": applied.statements, "rowsAffected": applied.rows_affected,
                    "diff": diff, "apis": results}))
            })
            .await?
            .map_err(Error::Conflict)?;
            let mut report = report;
            report["durationMs"] = json!(started.elapsed().as_millis() as u64);
            Ok(report)
        }
        Place::Postgres(id) => {
            let mut c = connect(app, &id).await?;
            let tx = c.transaction().await.map_err(pg)?;
            let before = schema::postgres(&tx).await.map_err(pg)?;
            let n = pg_change(app, &tx, body, &up).await?;
            let results = pg_apis(&tx, &body.apis).await;
            if let Some(f) = results.iter().find(|r| !r.ok) {
                return Err(Error::Conflict(format!(
                    "api '{}' fails after the change: {}",
                    f.id,
                    f.error.clone().unwrap_or_default()
                )));
            }
            let after = schema::postgres(&tx).await.map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok(
                json!({"statements": n.statements, "rowsAffected": n.rows_affected,
                "diff": schema::diff(&before, &after),
                "apis": results, "durationMs": started.elapsed().as_millis() as u64}),
            )
        }
    }
}

/// Puts a migrated target back: SQLite from its pre-run copy, PostgreSQL by `down`.
async fn put_back(app: &App, run: &Run, body: &Body, db: &str) -> Result<()> {
    match place(app, db).await? {
        Place::Sqlite(path) => {
            let pre = pre_copy(&path, &run.id, db);
            if !pre.exists() {
                return Err(Error::Conflict(format!(
                    "no pre-run copy of '{db}' to put back"
                )));
            }
            tokio::task::spawn_blocking(move || lite::restore(&pre, &path)).await??;
            Ok(())
        }
        Place::Postgres(id) => {
            let Data::Sql {
                down: Some(down), ..
            } = &body.data
            else {
                return Err(Error::Conflict(format!(
                    "'{db}' has no `down` to put it back"
                )));
            };
            let mut c = connect(app, &id).await?;
            let tx = c.transaction().await.map_err(pg)?;
            tx.batch_execute(down).await.map_err(pg)?;
            tx.commit().await.map_err(pg)
        }
    }
}

/// Puts back every target in `done` (newest first); returns the failures.
async fn roll_back(app: &App, run: &Run, body: &Body, done: &[String]) -> Vec<String> {
    let mut errors = Vec::new();
    for db in done.iter().rev() {
        match put_back(app, run, body, db).await {
            Ok(()) => {
                let _ = mark(app, &run.id, db, "rolled_back", None, None, None).await;
            }
            Err(e) => {
                errors.push(format!("{db}: {e}"));
                let _ = mark(
                    app,
                    &run.id,
                    db,
                    "rollback_failed",
                    None,
                    None,
                    Some(e.to_string()),
                )
                .await;
            }
        }
    }
    errors
}

/// Waits for a time window to open; `Err` when it has closed or the run was cancelled.
async fn window(ctx: &JobCtx, start: &str, end: &str) -> std::result::Result<(), String> {
    let (s, e) = (
        parse_rfc3339(start).unwrap_or_default(),
        parse_rfc3339(end).unwrap_or_default(),
    );
    let now = chrono::Utc::now();
    if now >= e {
        return Err(format!("the time window closed at {end}"));
    }
    if now < s {
        ctx.progress(
            0.0,
            None,
            Some(&format!("waiting for the time window ({start})")),
        )
        .await;
        let wait = (s - now).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.cancelled() => return Err("cancelled while waiting for the time window".into()),
        }
    }
    Ok(())
}

fn window_closed(body: &Body) -> bool {
    match &body.strategy {
        Strategy::TimeWindow { window_end, .. } => {
            parse_rfc3339(window_end).is_some_and(|e| chrono::Utc::now() >= e)
        }
        _ => false,
    }
}

/// Ends a run that cannot go on (its process died, or the runner itself failed) the way its
/// failure handling promises: `completed` targets put back where it rolls back (a target still
/// `running` had its transaction rolled back), the run `rolled_back` or `failed` with `why`.
async fn finish_broken(
    app: &App,
    run: &Run,
    body: &Body,
    targets: &[rows::RunTarget],
    why: &str,
) -> Result<()> {
    let migrate = run.mode == "migrate";
    let done: Vec<String> = targets
        .iter()
        .filter(|t| t.state == "completed")
        .map(|t| t.database_id.clone())
        .collect();
    let why = why.to_string();
    if migrate && body.failure_handling.rolls_back() && !done.is_empty() {
        set_state(app, run, "rolling_back", None, Some("rolling_back")).await?;
        let errs = roll_back(app, run, body, &done).await;
        let state = if errs.is_empty() {
            "rolled_back"
        } else {
            "failed"
        };
        set_state(app, run, state, Some(why), Some(state)).await?;
    } else {
        set_state(app, run, "failed", Some(why), migrate.then_some("failed")).await?;
    }
    clean_up(app, run, body).await;
    Ok(())
}

/// A run whose runner failed (a store write, a lost connection): ended by its failure handling,
/// so it never stays `running` and blocks its targets.
async fn runner_failed(app: &App, run_id: &str, e: &Error) {
    let key = run_id.to_string();
    let Ok(Some(run)) = app.store.run(move |c| rows::run(c, &key)).await else {
        return;
    };
    if !matches!(run.state.as_str(), "pending" | "running" | "rolling_back") {
        return;
    }
    let (mid, v, rid) = (run.migration_id.clone(), run.version, run.id.clone());
    let found = app
        .store
        .run(move |c| {
            let d = rows::versions(c, &mid)?
                .into_iter()
                .find(|d| d.version == v);
            Ok((d, rows::targets(c, &rid)?))
        })
        .await;
    let why = format!("the runner failed: {e}");
    match found {
        Ok((Some(d), targets)) => match super::definitions::body_of(&d) {
            Ok(body) => {
                if let Err(x) = finish_broken(app, &run, &body, &targets, &why).await {
                    tracing::error!(run = %run.id, "cannot finish a failed migration run: {x}");
                }
            }
            Err(_) => {
                let _ = set_state(app, &run, "failed", Some(why), None).await;
            }
        },
        _ => {
            let _ = set_state(app, &run, "failed", Some(why), None).await;
        }
    }
}

/// The job: runs (or, on a second attempt, finishes as interrupted) one run.
async fn execute(app: &App, ctx: &JobCtx, run_id: &str) -> std::result::Result<Value, Error> {
    let key = run_id.to_string();
    let run = app
        .store
        .run(move |c| rows::run(c, &key))
        .await?
        .ok_or_else(|| Error::NotFound(format!("run {run_id}")))?;
    let (mid, v) = (run.migration_id.clone(), run.version);
    let def = app
        .store
        .run(move |c| {
            Ok(rows::versions(c, &mid)?
                .into_iter()
                .find(|d| d.version == v))
        })
        .await?
        .ok_or_else(|| Error::NotFound(format!("migration {}", run.migration_id)))?;
    let body = super::definitions::body_of(&def)?;
    let rid = run.id.clone();
    let targets = app.store.run(move |c| rows::targets(c, &rid)).await?;
    let migrate = run.mode == "migrate";
    if ctx.attempt > 1 || matches!(run.state.as_str(), "running" | "rolling_back") {
        // the process that ran it died
        let why = "interrupted: the server stopped during the run";
        finish_broken(app, &run, &body, &targets, why).await?;
        return Ok(json!({"state": "interrupted"}));
    }
    set_state(app, &run, "running", None, migrate.then_some("running")).await?;
    if let Strategy::TimeWindow {
        window_start,
        window_end,
    } = &body.strategy
        && let Err(why) = window(ctx, window_start, window_end).await
    {
        for t in &targets {
            mark(
                app,
                &run.id,
                &t.database_id,
                "failed",
                None,
                None,
                Some(why.clone()),
            )
            .await?;
        }
        set_state(app, &run, "failed", Some(why), migrate.then_some("failed")).await?;
        return Ok(json!({"state": "failed"}));
    }
    let total = targets.len() as f64;
    let batch = match &body.strategy {
        Strategy::RollingUpdate { batch_size } => batch_size.unwrap_or(1).max(1) as usize,
        _ => usize::MAX,
    };
    let mut done: Vec<String> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let mut stop: Option<String> = None;
    for (i, t) in targets.iter().enumerate() {
        let db = t.database_id.clone();
        if stop.is_none() && ctx.is_cancelled() {
            stop = Some("cancelled".into());
        }
        if let Some(why) = &stop {
            let why = Some(why.clone());
            mark(app, &run.id, &db, "not_started", None, None, why).await?;
            continue;
        }
        if window_closed(&body) {
            let why = "the time window closed before this target started".to_string();
            failures.push(format!("{db}: {why}"));
            mark(app, &run.id, &db, "failed", None, None, Some(why)).await?;
            continue;
        }
        ctx.progress(i as f64, Some(total), Some(&format!("target {db}")))
            .await;
        mark(app, &run.id, &db, "running", None, None, None).await?;
        if !migrate {
            match test_target(app, ctx, &run, &body, &db).await {
                Ok((report, digest)) => {
                    mark(
                        app,
                        &run.id,
                        &db,
                        "completed",
                        Some(digest),
                        Some(&report),
                        None,
                    )
                    .await?
                }
                Err((e, digest)) => {
                    failures.push(format!("{db}: {e}"));
                    mark(app, &run.id, &db, "failed", digest, None, Some(e)).await?;
                }
            }
            continue;
        }
        let mut attempt = 0;
        let result = loop {
            match migrate_target(app, ctx, &run, &body, &db).await {
                Ok(r) => break Ok(r),
                Err(e) if attempt < body.failure_handling.retries() => {
                    attempt += 1;
                    ctx.progress(
                        i as f64,
                        Some(total),
                        Some(&format!("target {db}: retry {attempt} after: {e}")),
                    )
                    .await;
                }
                Err(e) => break Err(e),
            }
        };
        match result {
            Ok(report) => {
                done.push(db.clone());
                mark(app, &run.id, &db, "completed", None, Some(&report), None).await?;
            }
            Err(e) => {
                failures.push(format!("{db}: {e}"));
                mark(app, &run.id, &db, "failed", None, None, Some(e.to_string())).await?;
                if body.failure_handling.rolls_back() {
                    stop = Some(format!("not started: '{db}' failed"));
                } else if batch != usize::MAX && (i + 1) % batch != 0 {
                    // allow_partial finishes the batch, then stops a rolling update
                } else if batch != usize::MAX {
                    stop = Some(format!("not started: the batch with '{db}' failed"));
                }
            }
        }
        if batch != usize::MAX && (i + 1) % batch == 0 && !failures.is_empty() && stop.is_none() {
            stop = Some("not started: an earlier batch failed".into());
        }
    }
    ctx.progress(total, Some(total), Some("done")).await;
    let cancelled = stop.as_deref() == Some("cancelled");
    let result = if !migrate {
        let ok = failures.is_empty() && !cancelled;
        let state = if cancelled {
            "cancelled"
        } else if ok {
            "completed"
        } else {
            "failed"
        };
        let err = (!ok).then(|| {
            if cancelled {
                "cancelled".to_string()
            } else {
                failures.join("; ")
            }
        });
        set_state(app, &run, state, err, ok.then_some("ready")).await?;
        json!({"state": state})
    } else if failures.is_empty() && !cancelled {
        set_state(app, &run, "completed", None, Some("completed")).await?;
        json!({"state": "completed"})
    } else if body.failure_handling.rolls_back() && !done.is_empty() {
        set_state(app, &run, "rolling_back", None, Some("rolling_back")).await?;
        let errs = roll_back(app, &run, &body, &done).await;
        let mut why = if cancelled {
            "cancelled".to_string()
        } else {
            failures.join("; ")
        };
        if !errs.is_empty() {
            why.push_str(&format!("; putting back failed: {}", errs.join("; ")));
        }
        let state = if errs.is_empty() {
            "rolled_back"
        } else {
            "failed"
        };
        set_state(app, &run, state, Some(why), Some(state)).await?;
        json!({"state": state})
    } else {
        let why = if cancelled {
            "cancelled".to_string()
        } else {
            failures.join("; ")
        };
        let state = if cancelled && done.is_empty() {
            "cancelled"
        } else {
            "failed"
        };
        set_state(app, &run, state, Some(why), Some("failed")).await?;
        json!({"state": state})
    };
    clean_up(app, &run, &body).await;
    Ok(result)
}
