//! Versioned migrations as an operation (`migration-list`, `migration-run`, `trex migrate`): which
//! targets exist — `core` (the control store's own schema steps, status only), `trexdb` (files
//! in `<data_dir>/migrations/trexdb/`) and every registered database with a `migrationsDir` —
//! who may see and run them (a key limited to some databases sees only those), and a run that
//! verifies every checksum first, applies pending files in order and stops at the first failure.
//! The files and ledgers themselves are [`crate::migrate`]'s.

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::json;

use super::{Actor, audited};
use crate::app::App;
use crate::engine::{paths, postgres as pg, registry};
use crate::error::{Error, Result};
use crate::migrate::{self, FileStatus, Ignored, LedgerRow, Outcome, Scan};
use crate::store::databases::Database;

/// Where a target's ledger lives.
#[derive(Debug, Clone)]
enum Place {
    /// The control store: its schema steps, applied at start-up.
    Core,
    Sqlite(PathBuf),
    /// A registered PostgreSQL database (connected with its stored credential when used).
    Postgres(String),
    /// A database a plugin names that is not registered (its status is an error).
    Database(String),
}

/// One migration target.
#[derive(Debug, Clone)]
struct Target {
    name: String,
    kind: &'static str,
    dialect: &'static str,
    dir: Option<PathBuf>,
    place: Place,
    /// Its ledger table ([`migrate::ledger_table`]).
    ledger: String,
}

/// The status of one target (`migration-list`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    /// `core`, `trexdb`, a database id or `plugin:<name>`.
    pub target: String,
    /// The same as `target` (trexsql's name for it).
    pub plugin_name: String,
    /// `core`, `trexdb`, `database` or `plugin`.
    pub kind: &'static str,
    /// `sqlite` or `postgresql`.
    pub dialect: &'static str,
    /// Where its files are read from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    pub applied_count: usize,
    pub pending_count: usize,
    pub migrations: Vec<FileStatus>,
    /// Files in the directory that are not migrations, and why.
    pub ignored: Vec<Ignored>,
    /// Why the status could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a run did on one target (`migration-run`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetRun {
    pub target: String,
    /// `sqlite` or `postgresql`.
    pub dialect: &'static str,
    /// One entry per file the run applied, skipped or (dry run) would apply.
    pub results: Vec<Outcome>,
    /// Files in the directory that are not migrations, and why.
    pub ignored: Vec<Ignored>,
    /// Said when the target has nothing to run and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn target_of(app: &App, d: &Database) -> Result<Target> {
    let dir = d.migrations_dir.as_deref().unwrap_or_default();
    let dir = paths::resolve_migrations_dir(&app.config, dir, "migrationsDir")?;
    let (dialect, place) = if d.dialect == "sqlite" {
        let p = paths::resolve_sqlite(&app.config, &d.database_name, "databaseName")?;
        ("sqlite", Place::Sqlite(p))
    } else {
        ("postgresql", Place::Postgres(d.id.clone()))
    };
    Ok(Target {
        name: d.id.clone(),
        kind: "database",
        dialect,
        dir: Some(dir),
        place,
        ledger: migrate::ledger_table(None),
    })
}

/// The migration target of an installed plugin (`plugin:<name>`), if it declares migrations:
/// its own `plugin.db`, or the registered database it names.
fn plugin_target(
    app: &App,
    p: &crate::store::plugins::Plugin,
    dbs: &[Database],
) -> Result<Option<Target>> {
    let m = super::plugins::manifest_of(p)?;
    let Some(mig) = m.migrations else {
        return Ok(None);
    };
    let dir = crate::plugins::package_dir(&app.config, &p.name).join(&mig.dir);
    let (dialect, place) = match &mig.database {
        None => (
            "sqlite",
            Place::Sqlite(crate::plugins::database_of(&app.config, &p.name)),
        ),
        Some(id) => match dbs.iter().find(|d| &d.id == id) {
            Some(d) if d.dialect == "sqlite" => (
                "sqlite",
                Place::Sqlite(paths::resolve_sqlite(
                    &app.config,
                    &d.database_name,
                    "databaseName",
                )?),
            ),
            Some(d) => ("postgresql", Place::Postgres(d.id.clone())),
            None => ("sqlite", Place::Database(id.clone())),
        },
    };
    Ok(Some(Target {
        name: format!("plugin:{}", p.name),
        kind: "plugin",
        dialect,
        dir: Some(dir),
        place,
        ledger: migrate::ledger_table(Some(&p.name)),
    }))
}

/// Drops the ledger of plugin `name`'s target (after its install was undone, so nothing of it is
/// left in a registered database; the files it applied before failing stay, documented).
pub async fn drop_plugin_ledger(app: &App, name: &str) -> Result<()> {
    let dbs = app.store.run(crate::store::databases::all).await?;
    let Some(row) = app
        .store
        .run({
            let n = name.to_string();
            move |c| crate::store::plugins::get(c, &n)
        })
        .await?
    else {
        return Ok(());
    };
    let Some(t) = plugin_target(app, &row, &dbs)? else {
        return Ok(());
    };
    match &t.place {
        Place::Sqlite(p) => {
            let (p, l) = (p.clone(), t.ledger.clone());
            tokio::task::spawn_blocking(move || migrate::sqlite::drop_ledger(&p, &l)).await?
        }
        Place::Postgres(id) => {
            migrate::postgres::drop_ledger(&connect(app, id).await?, &t.ledger).await
        }
        Place::Core | Place::Database(_) => Ok(()),
    }
}

/// The targets `actor` may see, or only `only` (an unknown name is an error naming it).
async fn targets(app: &App, actor: &Actor, only: Option<&str>) -> Result<Vec<Target>> {
    let mut out = vec![
        Target {
            name: "core".into(),
            kind: "core",
            dialect: match app.store.backend() {
                crate::store::Backend::Sqlite => "sqlite",
                crate::store::Backend::Postgres => "postgresql",
            },
            dir: None,
            place: Place::Core,
            ledger: migrate::ledger_table(None),
        },
        Target {
            name: "trexdb".into(),
            kind: "trexdb",
            dialect: "sqlite",
            dir: Some(paths::migrations_dir(&app.config).join("trexdb")),
            place: Place::Sqlite(paths::main_file(&app.config)),
            ledger: migrate::ledger_table(None),
        },
    ];
    let dbs = app.store.run(crate::store::databases::all).await?;
    let visible = |d: &&Database| {
        actor
            .scopes
            .as_ref()
            .is_none_or(|s| s.allows_endpoint(&d.id))
    };
    let mut names: Vec<String> = vec!["core".into(), "trexdb".into()];
    for d in dbs
        .iter()
        .filter(|d| d.migrations_dir.is_some())
        .filter(visible)
    {
        names.push(d.id.clone());
        if only.is_none_or(|o| o == d.id) {
            out.push(target_of(app, d)?);
        }
    }
    // plugins with migrations: `plugin:<name>` (trexsql's pluginName `<name>` finds it too)
    let plugins = app.store.run(crate::store::plugins::all).await?;
    let only = only.map(|o| {
        let bare = !names.iter().any(|n| n == o) && !dbs.iter().any(|d| d.id == o);
        if bare && plugins.iter().any(|p| p.name == o) {
            format!("plugin:{o}")
        } else {
            o.to_string()
        }
    });
    let only = only.as_deref();
    for p in &plugins {
        let Some(t) = plugin_target(app, p, &dbs)? else {
            continue;
        };
        if let Place::Postgres(id) | Place::Database(id) = &t.place
            && !actor.scopes.as_ref().is_none_or(|s| s.allows_endpoint(id))
        {
            continue;
        }
        names.push(t.name.clone());
        if only.is_none_or(|o| o == t.name) {
            out.push(t);
        }
    }
    match only {
        None => Ok(out),
        Some(o) => {
            if let Some(d) = dbs.iter().find(|d| d.id == o) {
                super::databases::in_scope(actor, &d.id)?;
                if d.migrations_dir.is_none() {
                    return Err(Error::NotFound(format!(
                        "Database '{o}' has no migrationsDir; set one with database-update to give it versioned migrations"
                    )));
                }
            }
            out.retain(|t| t.name == o);
            if out.is_empty() {
                return Err(Error::NotFound(format!(
                    "Unknown migration target '{o}' (targets: {})",
                    names.join(", ")
                )));
            }
            Ok(out)
        }
    }
}

/// The control store's own schema steps, as a scan and a ledger (all applied at start-up).
async fn core_status(app: &App) -> Result<(Scan, Vec<LedgerRow>)> {
    let have = app.store.schema_version().await?;
    let mut scan = Scan::default();
    let mut ledger = Vec::new();
    let (source, steps) = crate::store::schema::steps(app.store.backend());
    for (v, sql) in steps {
        let file = migrate::File {
            version: v,
            name: format!("schema_v{v}"),
            file: format!("{source} version {v}"),
            checksum: migrate::checksum(sql.as_bytes()),
            sql,
        };
        if v <= have {
            ledger.push(LedgerRow {
                version: v,
                name: file.name.clone(),
                checksum: file.checksum.clone(),
                applied_at: String::new(),
                duration_ms: 0,
                applied_by: Some("trex (start-up)".into()),
                success: true,
            });
        }
        scan.files.push(file);
    }
    Ok((scan, ledger))
}

/// A connection to a registered PostgreSQL target, with its stored credential.
async fn connect(app: &App, id: &str) -> Result<tokio_postgres::Client> {
    let (_, resolved) = registry::lookup(app, id, true)
        .await
        .map_err(|e| Error::Conflict(e.to_string()))?;
    let registry::Resolved::Postgres(t) = resolved else {
        return Err(Error::Conflict(format!(
            "Database '{id}' is not PostgreSQL"
        )));
    };
    let timeout = Duration::from_secs(app.config.engine.connect_timeout_secs);
    pg::connect(&t, timeout)
        .await
        .map_err(|e| Error::Conflict(e.to_string()))
}

/// Reads a target's files and ledger (writes nothing).
async fn read(app: &App, t: &Target) -> Result<(Scan, Vec<LedgerRow>)> {
    if let Place::Core = t.place {
        return core_status(app).await;
    }
    let dir = t.dir.clone().expect("a file target has a directory");
    let scan = tokio::task::spawn_blocking(move || migrate::scan(&dir)).await??;
    let ledger = match &t.place {
        Place::Core => unreachable!(),
        Place::Database(id) => {
            return Err(Error::NotFound(format!(
                "Database '{id}' (named by the plugin's trex.migrations.database) is not registered"
            )));
        }
        Place::Sqlite(p) => {
            let (p, l) = (p.clone(), t.ledger.clone());
            tokio::task::spawn_blocking(move || migrate::sqlite::ledger(&p, &l)).await??
        }
        Place::Postgres(id) => {
            migrate::postgres::ledger(&connect(app, id).await?, &t.ledger).await?
        }
    };
    Ok((scan, ledger))
}

/// The status of every target `actor` may see (or of `only`). Writes nothing anywhere.
pub async fn list(app: &App, actor: &Actor, only: Option<&str>) -> Result<Vec<TargetStatus>> {
    let mut out = Vec::new();
    for t in targets(app, actor, only).await? {
        let mut s = TargetStatus {
            target: t.name.clone(),
            plugin_name: t.name.clone(),
            kind: t.kind,
            dialect: t.dialect,
            directory: t.dir.as_ref().map(|d| d.display().to_string()),
            applied_count: 0,
            pending_count: 0,
            migrations: vec![],
            ignored: vec![],
            error: None,
        };
        match read(app, &t).await {
            Ok((scan, ledger)) => {
                s.migrations = migrate::statuses(&scan, &ledger);
                s.applied_count = s
                    .migrations
                    .iter()
                    .filter(|m| m.status == "applied")
                    .count();
                s.pending_count = s
                    .migrations
                    .iter()
                    .filter(|m| matches!(m.status, "pending" | "failed"))
                    .count();
                s.ignored = scan.ignored;
            }
            Err(e) => s.error = Some(e.to_string()),
        }
        out.push(s);
    }
    Ok(out)
}

/// Who a ledger row says applied a file.
pub(crate) fn applied_by(actor: &Actor) -> String {
    match (&actor.user_id, &actor.remote) {
        (Some(u), _) => format!("{} user {u}", actor.via),
        (None, Some(r)) => format!("{} ({r})", actor.via),
        (None, None) => actor.via.to_string(),
    }
}

/// Applies the pending files of every target (or of `only`) up to `to_version`, in order,
/// stopping at the first failure; `dry_run` lists what would run and changes nothing. Every
/// applied checksum is verified before anything runs on a target.
pub async fn run(
    app: &App,
    actor: &Actor,
    only: Option<&str>,
    to_version: Option<i64>,
    dry_run: bool,
) -> Result<Vec<TargetRun>> {
    run_in(app, actor, only, to_version, dry_run, None).await
}

/// The job kind of a `migration-run` call: a row, so a run that a crash cut short is taken
/// again by the next runtime (each file commits with its ledger row, so the next attempt
/// applies what is still pending and nothing twice), and a task that follows it is answered
/// from the row.
pub const KIND: &str = "migration-files";

/// Registers the `migration-run` job with the runtime (retried once after a crash).
pub fn register(app: &std::sync::Arc<App>) {
    super::register_as(app, KIND, |app, actor, job, payload| async move {
        let (only, to) = (payload["target"].as_str(), payload["toVersion"].as_i64());
        let targets = run_in(&app, &actor, only, to, false, Some(&job)).await?;
        Ok(json!({ "targets": targets }))
    });
}

/// Queues a `migration-run` of `only` (or every target) up to `to_version` as `actor`, after
/// checking the arguments and that the target exists; audited when the job ends, with its
/// outcome. Returns the job's id.
pub async fn start(
    app: &App,
    actor: &Actor,
    only: Option<&str>,
    to_version: Option<i64>,
) -> Result<String> {
    if to_version.is_some_and(|v| v < 1) {
        return Err(super::invalid("toVersion", "must be 1 or more"));
    }
    targets(app, actor, only).await?;
    let payload = json!({"target": only, "toVersion": to_version});
    super::enqueue_as(app, actor, KIND, payload).await
}

/// [`run`], as job `job` when given: it reports each file as progress and stops before the
/// next file once the job is cancelled.
async fn run_in(
    app: &App,
    actor: &Actor,
    only: Option<&str>,
    to_version: Option<i64>,
    dry_run: bool,
    job: Option<&crate::jobs::JobCtx>,
) -> Result<Vec<TargetRun>> {
    let args = json!({"target": only, "toVersion": to_version, "dryRun": dry_run});
    let action = "migration-run";
    audited(app, actor, action, args, async {
        if to_version.is_some_and(|v| v < 1) {
            return Err(super::invalid("toVersion", "must be 1 or more"));
        }
        let by = applied_by(actor);
        let mut out = Vec::new();
        let mut applied = 0u32;
        for t in targets(app, actor, only).await? {
            let (scan, ledger) = read(app, &t).await?;
            let mut r = TargetRun {
                target: t.name.clone(),
                dialect: t.dialect,
                results: vec![],
                ignored: scan.ignored.clone(),
                note: None,
            };
            if let Place::Core = t.place {
                r.note = Some("the control store's schema is brought up to date at start-up".into());
                out.push(r);
                continue;
            }
            migrate::verify(&scan, &ledger)?;
            let todo = migrate::pending(&scan, &ledger, to_version);
            if todo.is_empty() {
                r.note = Some("No pending migrations".into());
            }
            if dry_run {
                r.results = todo
                    .iter()
                    .map(|f| f.outcome("would_apply", None, None))
                    .collect();
                out.push(r);
                continue;
            }
            let mut client = match &t.place {
                Place::Postgres(id) if !todo.is_empty() => Some(connect(app, id).await?),
                _ => None,
            };
            for f in todo {
                if let Some(j) = job {
                    if j.is_cancelled() {
                        return Err(Error::Conflict(format!(
                            "The run was cancelled before {} on target '{}' (files applied before it stay applied)",
                            f.file, t.name
                        )));
                    }
                    applied += 1;
                    let m = format!("{}: {}", t.name, f.file);
                    j.progress(applied as f64, None, Some(&m)).await;
                }
                let o = match (&t.place, client.as_mut()) {
                    (Place::Sqlite(p), _) => {
                        let (p, f, by, l) = (p.clone(), f.clone(), by.clone(), t.ledger.clone());
                        tokio::task::spawn_blocking(move || migrate::sqlite::apply(&p, &l, &f, &by))
                            .await??
                    }
                    (Place::Postgres(_), Some(c)) => {
                        migrate::postgres::apply(c, &t.ledger, f, &by).await?
                    }
                    (Place::Database(id), _) => {
                        return Err(Error::NotFound(format!("Database '{id}' is not registered")));
                    }
                    _ => unreachable!("core runs nothing; a PostgreSQL target is connected"),
                };
                let failed = o.error.clone();
                r.results.push(o);
                if let Some(e) = failed {
                    let done: Vec<String> = out
                        .iter()
                        .chain(std::iter::once(&r))
                        .flat_map(|t: &TargetRun| {
                            t.results
                                .iter()
                                .filter(|o| o.status == "applied")
                                .map(move |o| format!("{} V{}", t.target, o.version))
                        })
                        .collect();
                    return Err(Error::Conflict(format!(
                        "Migration {} on target '{}' failed: {e} (it was rolled back and recorded as failed; \
                         applied before it in this run: {})",
                        f.file,
                        t.name,
                        if done.is_empty() { "none".into() } else { done.join(", ") }
                    )));
                }
            }
            out.push(r);
        }
        Ok(out)
    })
    .await
}
