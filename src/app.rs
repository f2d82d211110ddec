//! The application state shared by every request and background task: configuration, the control
//! store, the authenticator and the session table, plus the shutdown token.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::auth::secrets::MasterKey;
use crate::config::Config;
use crate::error::Result;
use crate::mcp::session::Sessions;
use crate::store::Store;

/// How often the key watcher polls the store for commits by other connections.
const WATCH_EVERY: Duration = Duration::from_millis(200);

/// Shared state; hand it around as `Arc<App>`.
pub struct App {
    pub config: Config,
    pub store: Store,
    pub auth: Arc<Authenticator>,
    pub sessions: Sessions,
    /// Seals secrets at rest.
    pub master: MasterKey,
    /// Where user SQL runs: the engine's own threads and query slots.
    pub engine: crate::engine::pool::EnginePool,
    /// Bumped by every change to the database registry, so caches built from it (the
    /// catalogue's endpoint servers) are dropped.
    pub databases_changed: std::sync::atomic::AtomicU64,
    /// Rate limit of web sign-in attempts.
    pub login_limiter: crate::auth::limiter::LoginLimiter,
    /// The durable job runtime (migration runs, backups, pipeline snapshots).
    pub jobs: Arc<crate::jobs::Jobs>,
    /// Tool calls run as tasks of the MCP tasks extension (rows, leased by this process).
    pub mcp_tasks: Arc<crate::mcp::tasks::Tasks>,
    /// Every background task of the server (reapers, flusher, SSE work), so shutdown can wait.
    pub tasks: tokio_util::task::TaskTracker,
    /// Cancelled to stop the server and every background task.
    pub shutdown: CancellationToken,
    /// This node's id in the `nodes` table, once the server has registered it.
    pub node: std::sync::OnceLock<String>,
    /// Counters for `/metrics`.
    pub metrics: crate::metrics::Metrics,
    /// The background services of this node, for cluster-list-services.
    pub services: crate::services::Registry,
    /// The runners of plugin functions (a limit on how many run at once, counters).
    pub functions: crate::plugins::functions::Runners,
    /// The servers being served, once `server::start` has them (plugins add tools to the admin
    /// server); unset in the CLI.
    pub catalogue: std::sync::OnceLock<Arc<crate::servers::Catalogue>>,
    /// The ETL/CDC pipelines running on this node.
    pub pipelines: crate::pipelines::Running,
}

/// Associated data of the master key's check value.
pub const MASTER_CHECK_AAD: &str = "settings:master_key_check";

/// Checks that `master` is the key this store's secrets were sealed with (a sealed check value
/// in `settings`), so a wrong `TREX_MASTER_KEY` stops start-up instead of failing later. A key
/// file that was just made because the old one was lost, on a store that holds no sealed
/// secret, replaces the check value: nothing is lost, and later starts work.
async fn verify_master_key(store: &Store, master: &MasterKey) -> Result<()> {
    use crate::store::settings::{self, MASTER_KEY_CHECK};
    const AAD: &str = MASTER_CHECK_AAD;
    let existing = store.run(|c| settings::get(c, MASTER_KEY_CHECK)).await?;
    let existing = match existing {
        Some(_) if master.created => {
            tracing::warn!(
                "{} was missing; the store holds no sealed secrets, so a new master key was made (back it up)",
                master.source
            );
            None
        }
        other => other,
    };
    match existing {
        Some(sealed) => {
            let sealed: String = serde_json::from_str(&sealed).unwrap_or_default();
            master.open(&sealed, AAD).map(|_| ()).map_err(|_| {
                crate::Error::Config(format!(
                    "the master key from {} is not the key this store's secrets were sealed with; \
                     use the original key file or TREX_MASTER_KEY",
                    master.source
                ))
            })
        }
        None => {
            let v = serde_json::to_string(&master.seal("trex", AAD)).expect("json");
            store
                .run(move |c| settings::set(c, MASTER_KEY_CHECK, &v))
                .await
        }
    }
}

impl App {
    /// Opens the store (creating the data dir and schema) and loads live sessions.
    pub async fn open(config: Config) -> Result<Arc<App>> {
        if !crate::engine::memory::install() {
            tracing::warn!(
                "SQLite was in use before trex started: engine.max_query_memory is not enforced in this process"
            );
        }
        let store = {
            let c = config.clone();
            tokio::task::spawn_blocking(move || Store::open(&c.store)).await??
        };
        let master = {
            let (store, dir) = (store.clone(), config.store.data_dir.clone());
            let sealed = store.run(crate::store::sso::count_sealed).await?;
            let env = std::env::var(crate::auth::secrets::KEY_ENV).ok();
            // a node joining a shared store must be given the store's key, never make its own
            if store.backend() == crate::store::Backend::Postgres && env.is_none() {
                let has_check = store
                    .run(|c| {
                        crate::store::settings::get(c, crate::store::settings::MASTER_KEY_CHECK)
                    })
                    .await?
                    .is_some();
                let file = crate::auth::secrets::key_path(&dir);
                if has_check && !file.exists() {
                    return Err(crate::Error::Config(format!(
                        "this node has no master key, but the shared store {} was set up with one: \
                         copy {} from a node of this store to {}, or set {}; to give up the \
                         store's sealed secrets on every node instead, run `trex master-key reset` \
                         and give the new key to the other nodes",
                        store.describe(),
                        crate::auth::secrets::KEY_FILE,
                        file.display(),
                        crate::auth::secrets::KEY_ENV
                    )));
                }
            }
            tokio::task::spawn_blocking(move || MasterKey::load(&dir, env, sealed == 0)).await??
        };
        verify_master_key(&store, &master).await?;
        {
            // the trexdb main data file exists from the start, apart from trex.db
            let main = crate::engine::paths::main_file(&config);
            tokio::task::spawn_blocking(move || crate::engine::sqlite::create_main(&main))
                .await??;
        }
        let auth = Arc::new(Authenticator::new(store.clone()));
        let sessions = Sessions::new(
            store.clone(),
            config.mcp.max_sessions,
            config.mcp.max_sessions_per_user,
            config.mcp.session_idle_timeout_secs,
            (config.mcp.replay_events, config.mcp.replay_bytes),
        );
        let engine = crate::engine::pool::EnginePool::new(
            config.engine.max_concurrent_queries,
            Duration::from_secs(config.engine.queue_timeout_secs),
            config.engine.max_query_memory,
        );
        let jobs =
            crate::jobs::Jobs::new(store.clone(), Duration::from_secs(config.jobs.lease_secs));
        let functions = crate::plugins::functions::Runners::new(&config.plugins);
        let mcp_tasks = crate::mcp::tasks::Tasks::new(store.clone(), jobs.owner.clone());
        let login_limiter = crate::auth::limiter::LoginLimiter::new(store.clone());
        let app = Arc::new(App {
            functions,
            jobs,
            mcp_tasks,
            tasks: tokio_util::task::TaskTracker::new(),
            engine,
            config,
            store,
            auth,
            sessions,
            master,
            login_limiter,
            databases_changed: Default::default(),
            shutdown: CancellationToken::new(),
            node: std::sync::OnceLock::new(),
            metrics: Default::default(),
            services: Default::default(),
            catalogue: Default::default(),
            pipelines: Default::default(),
        });
        let n = app.sessions.load().await?;
        if n > 0 {
            tracing::info!("resumed {n} live MCP session(s) from the store");
        }
        Ok(app)
    }

    /// Starts the background tasks: activity flusher, session reaper, key-cache watcher.
    pub fn spawn_background(self: &Arc<Self>) -> Result<()> {
        // a change in the store (another process, another node) empties the key cache and
        // drops the sessions held here whose rows are gone
        let (app, rt) = (Arc::downgrade(self), tokio::runtime::Handle::current());
        self.auth
            .spawn_watcher(WATCH_EVERY, self.shutdown.clone(), move || {
                if let Some(app) = app.upgrade() {
                    rt.spawn(async move {
                        if let Err(e) = app.sessions.revalidate().await {
                            tracing::warn!("revalidating sessions: {e}");
                        }
                    });
                }
            })?;
        self.jobs.start(self.config.jobs.workers);
        self.tasks
            .spawn(self.mcp_tasks.clone().maintain(self.shutdown.clone()));
        self.services.started(
            "task-upkeep",
            serde_json::json!({"what": "leases, cancellations and expiry of MCP tasks"}),
            None,
        );
        self.services.started(
            "job-workers",
            serde_json::json!({"workers": self.config.jobs.workers, "lease_secs": self.config.jobs.lease_secs}),
            None,
        );
        self.services.started(
            "activity-flusher",
            serde_json::json!({"interval_secs": self.config.store.flush_interval_secs}),
            None,
        );
        self.services.started(
            "session-reaper",
            serde_json::json!({"idle_timeout_secs": self.config.mcp.session_idle_timeout_secs}),
            None,
        );
        let app = self.clone();
        self.tasks.spawn(async move {
            let mut tick =
                tokio::time::interval(Duration::from_secs(app.config.store.flush_interval_secs));
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => app.flush().await,
                    _ = app.shutdown.cancelled() => break,
                }
            }
        });
        // point reads lock in memory while nothing writes (SQLite; see `store::pin`)
        self.store.pin_reads()?;
        let app = self.clone();
        self.tasks.spawn(async move {
            let idle = app.config.mcp.session_idle_timeout_secs;
            let every = Duration::from_secs((idle / 2).clamp(1, 60));
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        match app.sessions.reap().await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!("expired {n} idle MCP session(s)"),
                            Err(e) => tracing::warn!("session reaper: {e}"),
                        }
                        if let Err(e) = app.store.run(crate::store::web_sessions::delete_expired).await {
                            tracing::warn!("web session reaper: {e}");
                        }
                        app.prune_audit().await;
                    }
                    _ = app.shutdown.cancelled() => break,
                }
            }
        });
        Ok(())
    }

    /// Deletes audit rows older than `audit.retain_days` (0 = keep for ever).
    pub async fn prune_audit(&self) {
        let days = self.config.audit.retain_days;
        if days == 0 {
            return;
        }
        let before = crate::util::rfc3339(chrono::Utc::now() - chrono::Duration::days(days as i64));
        match self
            .store
            .run(move |c| crate::store::audit::prune(c, &before))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!("pruned {n} audit row(s) older than {days} days"),
            Err(e) => tracing::warn!("audit pruning: {e}"),
        }
    }

    /// Records that the database registry changed (created, updated or deleted a database).
    pub fn database_changed(&self) {
        self.databases_changed
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Writes batched `lastUsedAt` and session activity.
    pub async fn flush(&self) {
        if let Err(e) = self.auth.flush().await {
            tracing::warn!("flushing key usage: {e}");
        }
        if let Err(e) = self.sessions.flush().await {
            tracing::warn!("flushing session activity: {e}");
        }
    }
}
