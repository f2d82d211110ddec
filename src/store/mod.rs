//! The control store: by default the SQLite file `trex.db` in the data dir (an r2d2 pool of
//! connections with the pragmas every connection needs), or, with `store.url`, a schema of a
//! PostgreSQL database shared by several nodes ([`pg`]). All control-store SQL lives under this
//! module, in one file per table group, written once against [`sql::Conn`], which runs it on
//! either engine; nothing else in the crate writes SQL for the store, and nothing this module
//! exposes names a driver type ([`Conn`], [`StoreError`] and [`DataVersion`] are opaque).
//! Async callers go through [`Store::run`] (one statement or a few reads) and [`Store::write`]
//! (several writes in one transaction that holds the store's write lock), which move the work
//! to the blocking pool so no pooled connection is ever held across an `.await`.

pub mod api_keys;
pub mod apps;
pub mod audit;
pub mod copy;
pub mod databases;
pub mod jobs;
pub mod logins;
pub mod migrations;
pub mod nodes;
pub mod pg;
mod pin;
pub mod pipelines;
pub mod plugins;
pub mod roles;
pub mod schema;
pub mod sessions;
pub mod settings;
pub mod sql;
pub mod sso;
pub mod tasks;
mod tls;
pub mod users;
pub mod web_sessions;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, TransactionBehavior};

use crate::config::StoreConfig;
use crate::error::{Error, Result};

use sql::Db;
pub use sql::{Backend, Conn};

/// A failure of the control store itself (its file, a statement, the pool), as opposed to the
/// caller's input. The message is for the log; clients are told only that an internal error
/// happened.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(Box<dyn std::error::Error + Send + Sync>);

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Db(StoreError(Box::new(e)))
    }
}

impl From<r2d2::Error> for Error {
    fn from(e: r2d2::Error) -> Self {
        Error::Db(StoreError(Box::new(e)))
    }
}

/// File name of the control store inside the data dir.
pub const STORE_FILE: &str = "trex.db";

/// Pragmas set on every connection of the pool.
const PRAGMAS: &str = "PRAGMA journal_mode = WAL;
PRAGMA foreign_keys = ON;
PRAGMA busy_timeout = 5000;
PRAGMA synchronous = NORMAL;";

/// Sets up a connection of the store: the pragmas, and the query planner stability guarantee.
/// Without it SQLite (built with STAT4) prepares a cached statement again on the first step
/// after each bind of a parameter that is compared to an indexed column or used as a LIKE
/// pattern — every keyset-paginated list did so on every call (a one-row `user-list` cost 2.5
/// times a point read). The store's queries are written for their indexes; a plan that does not
/// change with the values bound is what they want.
fn configure(c: &mut Connection) -> rusqlite::Result<()> {
    c.execute_batch(PRAGMAS)?;
    c.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    c.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Handle to the control store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pools: Pools,
    path: PathBuf,
}

/// The SQLite store's read pin, once the server turns it on ([`Store::pin_reads`]).
type PinCell = std::sync::Arc<std::sync::OnceLock<std::sync::Arc<pin::ReadPin>>>;

/// The pool of whichever engine holds the store.
#[derive(Clone)]
enum Pools {
    Lite(Pool<SqliteConnectionManager>, PinCell),
    Pg(Pool<pg::Manager>, Box<pg::Manager>),
}

impl Store {
    /// Opens the store `c` names: PostgreSQL when `store.url` is set (its schema created or
    /// upgraded), else `<data_dir>/trex.db` (created when missing). The data dir is created
    /// either way: trexdb's files, plugins and backups live there on every node.
    pub fn open(c: &StoreConfig) -> Result<Store> {
        if c.postgres_url().is_some() && tokio::runtime::Handle::try_current().is_ok() {
            // the PostgreSQL client blocks on a runtime of its own: never on the caller's
            return std::thread::scope(|s| {
                s.spawn(|| Self::open_here(c))
                    .join()
                    .unwrap_or_else(|_| Err(Error::Other("opening the store panicked".into())))
            });
        }
        Self::open_here(c)
    }

    /// Whether the store `c` names exists already (the CLI's commands other than `init` and
    /// `serve` refuse to create one): a non-empty SQLite file (an empty one would be made into
    /// a store), or the schema's version table in PostgreSQL.
    pub fn exists(c: &StoreConfig) -> Result<bool> {
        let Some(url) = c.postgres_url() else {
            let file = c.data_dir.join(STORE_FILE);
            return Ok(std::fs::File::open(&file)
                .and_then(|mut f| {
                    let mut head = [0u8; 16];
                    std::io::Read::read_exact(&mut f, &mut head)?;
                    Ok(&head == b"SQLite format 3\0")
                })
                .unwrap_or(false));
        };
        let manager = pg::Manager::new(url, &c.schema)?;
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut client = manager.client()?;
                let row = client.query_one(
                    "SELECT to_regclass(format('%I.schema_version', $1::text)) IS NOT NULL",
                    &[&c.schema],
                )?;
                Ok(row.get::<_, bool>(0))
            })
            .join()
            .unwrap_or_else(|_| Err(Error::Other("looking for the store panicked".into())))
        })
    }

    fn open_here(c: &StoreConfig) -> Result<Store> {
        let data_dir = &c.data_dir;
        if !data_dir.exists() {
            std::fs::create_dir_all(data_dir).map_err(|e| {
                Error::io(format!("cannot create data dir {}", data_dir.display()), e)
            })?;
            // a new data dir is private: it holds key hashes, sealed secrets and the master key
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700));
            }
        }
        let path = data_dir.join(STORE_FILE);
        if let Some(url) = c.postgres_url() {
            let manager = pg::Manager::new(url, &c.schema)?;
            // one connection first, outside the pool: a refused password or an untrusted
            // certificate is reported as it is, at once (the pool only says it timed out)
            drop(manager.client().map_err(|e| {
                Error::Config(format!(
                    "cannot reach the PostgreSQL store {}: {}",
                    manager.describe(),
                    with_causes(&e)
                ))
            })?);
            let pool = Pool::builder()
                .max_size(c.pool_size)
                .min_idle(Some(1))
                .test_on_check_out(false)
                .connection_timeout(Duration::from_secs(10))
                .build(manager.clone())?;
            {
                let conn = pool.get()?;
                schema::bootstrap_pg(&conn, manager.schema())?;
            }
            return Ok(Store {
                pools: Pools::Pg(pool, Box::new(manager)),
                path,
            });
        }
        let manager = SqliteConnectionManager::file(&path).with_init(configure);
        let pool = Pool::builder()
            .max_size(c.pool_size)
            .min_idle(Some(1))
            // connections to a local file do not go stale; skip the per-checkout probe query
            .test_on_check_out(false)
            .connection_timeout(Duration::from_secs(10))
            .build(manager)?;
        {
            let mut conn = pool.get()?;
            schema::bootstrap(&mut conn)?;
        }
        let store = Store {
            pools: Pools::Lite(pool, PinCell::default()),
            path,
        };
        // trex.db readable by its owner only (SQLite gives -wal and -shm the same mode)
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&store.path, std::fs::Permissions::from_mode(0o600));
        }
        Ok(store)
    }

    /// Path of `trex.db` (on a PostgreSQL store: where it would be; nothing is there).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The engine this store is on.
    pub fn backend(&self) -> Backend {
        match self.pools {
            Pools::Lite(..) => Backend::Sqlite,
            Pools::Pg(..) => Backend::Postgres,
        }
    }

    /// Where the store is, for people: the file, or the PostgreSQL database and schema (never
    /// a password).
    pub fn describe(&self) -> String {
        match &self.pools {
            Pools::Lite(..) => self.path.display().to_string(),
            Pools::Pg(_, m) => m.describe(),
        }
    }

    /// Runs `f` with a pooled connection on the blocking thread pool (autocommit: each
    /// statement commits on its own; use [`write`](Self::write) for several writes).
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Conn<'_>) -> Result<T> + Send + 'static,
    {
        let pools = self.pools.clone();
        tokio::task::spawn_blocking(move || pools.with(f)).await?
    }

    /// Runs `f` in one write transaction on the blocking pool (SQLite `BEGIN IMMEDIATE`;
    /// PostgreSQL `BEGIN` plus the store's write lock): committed when `f` returns `Ok`, rolled
    /// back otherwise. Rules checked inside `f` ("an active admin always remains") see every
    /// other writer's commits, so two racing changes cannot both pass.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Conn<'_>) -> Result<T> + Send + 'static,
    {
        let pools = self.pools.clone();
        tokio::task::spawn_blocking(move || pools.transaction(f)).await?
    }

    /// Runs a short, bounded read (a lookup by key) on the calling thread when a pooled SQLite
    /// connection is free at once, else on the blocking pool like [`run`](Self::run). For point
    /// reads of a few microseconds the hand-off to another thread costs more than the read.
    /// On SQLite the read pin ([`pin`]) is taken first, so the read locks in memory.
    /// PostgreSQL reads always go to the blocking pool (a network round trip).
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Conn<'_>) -> Result<T> + Send + 'static,
    {
        if let Pools::Lite(pool, pin) = &self.pools
            && let Some(conn) = pool.try_get()
        {
            if let Some(pin) = pin.get() {
                pin.hold();
            }
            return f(&Conn(Db::Lite(&conn)));
        }
        self.run(f).await
    }

    /// [`write`](Self::write) on the current thread (start-up, the CLI and tests only; never
    /// on the runtime's threads while serving).
    pub fn write_sync<T>(&self, f: impl FnOnce(&Conn<'_>) -> Result<T>) -> Result<T> {
        self.pools.transaction(f)
    }

    /// Turns on the SQLite read pin ([`pin`]) and its watcher thread (the server, once; nothing
    /// on PostgreSQL). The CLI never does: a console command that stops half way (a pipe that
    /// is not read) would hold the pin with no watcher to let it go.
    pub fn pin_reads(&self) -> Result<()> {
        let Pools::Lite(_, cell) = &self.pools else {
            return Ok(());
        };
        if cell.get().is_some() {
            return Ok(());
        }
        let mut conn = Connection::open(&self.path)?;
        configure(&mut conn)?;
        let p = std::sync::Arc::new(pin::ReadPin::new(conn));
        pin::watch(&p, &self.path)?;
        let _ = cell.set(p);
        Ok(())
    }

    /// Whether the SQLite read pin is held now (tests; always false on PostgreSQL).
    pub fn pin_held(&self) -> bool {
        matches!(&self.pools, Pools::Lite(_, cell) if cell.get().is_some_and(|p| p.is_held()))
    }

    /// The schema version the store is at (`/readyz`).
    pub async fn schema_version(&self) -> Result<i64> {
        self.run(schema::version).await
    }

    /// A watcher of commits by other connections, processes and nodes, on a connection of its
    /// own (call [`DataVersion::current`] from a thread of its own: it blocks).
    pub fn data_version(&self) -> Result<DataVersion> {
        match &self.pools {
            Pools::Lite(..) => {
                let c = Connection::open(&self.path)?;
                c.execute_batch(PRAGMAS)?;
                Ok(DataVersion(Watch::Lite(c)))
            }
            // connected on first use, on the watcher's own thread
            Pools::Pg(_, m) => Ok(DataVersion(Watch::Pg(m.clone(), RefCell::new(None)))),
        }
    }
}

/// An error with every cause under it (`error performing TLS handshake: invalid peer
/// certificate: UnknownIssuer`), for messages people act on.
fn with_causes(e: &Error) -> String {
    let mut out = e.to_string();
    let mut next = match e {
        Error::Db(StoreError(inner)) => inner.source(),
        other => std::error::Error::source(other),
    };
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

impl Pools {
    fn with<T>(&self, f: impl FnOnce(&Conn<'_>) -> Result<T>) -> Result<T> {
        match self {
            // autocommit statements may write: the pin goes first
            Pools::Lite(p, pin) => {
                let _w = pin.get().map(|p| p.writing());
                f(&Conn(Db::Lite(&*p.get()?)))
            }
            Pools::Pg(p, _) => f(&Conn(Db::Pg(&*p.get()?))),
        }
    }

    fn transaction<T>(&self, f: impl FnOnce(&Conn<'_>) -> Result<T>) -> Result<T> {
        match self {
            Pools::Lite(p, pin) => {
                let _w = pin.get().map(|p| p.writing());
                let mut conn = p.get()?;
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let out = f(&Conn(Db::Lite(&tx)))?;
                tx.commit()?;
                Ok(out)
            }
            Pools::Pg(p, _) => {
                let conn = p.get()?;
                sql::STATEMENTS.fetch_add(2, std::sync::atomic::Ordering::Relaxed); // BEGIN, COMMIT
                conn.borrow_mut().batch(&format!(
                    "BEGIN; SELECT pg_advisory_xact_lock({})",
                    pg::WRITE_LOCK
                ))?;
                let out = f(&Conn(Db::Pg(&conn)));
                let end = if out.is_ok() { "COMMIT" } else { "ROLLBACK" };
                conn.borrow_mut().batch(end)?;
                out
            }
        }
    }
}

/// Tells whether anyone else has committed to the store since the last look: SQLite's
/// `PRAGMA data_version` on a dedicated connection, or on PostgreSQL the notifications the
/// schema's triggers send on the [`pg::CHANGES_CHANNEL`] when users, keys or roles change.
pub struct DataVersion(Watch);

enum Watch {
    Lite(Connection),
    Pg(Box<pg::Manager>, RefCell<Option<(pg::Listener, i64)>>),
}

impl DataVersion {
    /// The current version; it changes when another connection commits (-1 when unreadable).
    pub fn current(&self) -> i64 {
        match &self.0 {
            Watch::Lite(c) => c
                .query_row("PRAGMA data_version", [], |r| r.get(0))
                .unwrap_or(-1),
            Watch::Pg(manager, cell) => {
                let mut guard = cell.borrow_mut();
                if guard.as_ref().is_none_or(|(l, _)| l.is_closed()) {
                    // (re)connect; every connect is a change, as commits may have been missed
                    let seen = guard.as_ref().map_or(0, |(_, s)| s + 1);
                    match manager.listener() {
                        Ok(l) => *guard = Some((l, seen)),
                        Err(e) => {
                            tracing::warn!("store change listener: {e}");
                            *guard = None;
                            return -1;
                        }
                    }
                }
                let (listener, seen) = guard.as_mut().expect("connected above");
                *seen += listener.drain();
                *seen
            }
        }
    }
}

/// Moves everything in the write-ahead log into `trex.db` and empties the log (clean shutdown;
/// nothing to do on PostgreSQL).
pub fn checkpoint(conn: &Conn<'_>) -> Result<()> {
    if let Some(c) = conn.lite() {
        let busy: i64 = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy != 0 {
            return Err(Error::Other(
                "another process is reading trex.db: the write-ahead log stays beside it (nothing is lost; the next start or checkpoint moves it in)".into(),
            ));
        }
    }
    Ok(())
}

/// Keyset page request: at most `limit` rows strictly after `after` in `(created_at, id)` DESC order.
#[derive(Debug, Clone)]
pub struct Page {
    pub limit: usize,
    pub after: Option<(String, String)>,
}

/// One page of rows plus the key of the last row when more follow.
#[derive(Debug, Clone)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub next: Option<(String, String)>,
}

impl<T> Paged<T> {
    /// Trims a `limit + 1` fetch to `limit` rows and records where the next page starts.
    pub fn from_overfetch(
        mut rows: Vec<T>,
        limit: usize,
        key: impl Fn(&T) -> (String, String),
    ) -> Self {
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(key)
        } else {
            None
        };
        Paged { items: rows, next }
    }
}
