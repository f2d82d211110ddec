//! The control store `trex.db`: an r2d2 pool of SQLite connections with the pragmas every
//! connection needs, the schema bootstrap, and one file per table group. All control-store SQL
//! lives under this module, behind typed functions taking a [`Conn`]; nothing else in the crate
//! writes SQL for `trex.db`, and nothing this module exposes names a `rusqlite` type ([`Conn`],
//! [`StoreError`] and [`DataVersion`] are opaque), so a PostgreSQL control store can later sit
//! behind the same functions (DESIGN.md §10). Async callers go through [`Store::run`] (one
//! statement or a few reads) and [`Store::write`] (several writes in one `BEGIN IMMEDIATE`
//! transaction), which move the work to the blocking pool so no pooled connection is ever held
//! across an `.await`.

pub mod api_keys;
pub mod apps;
pub mod audit;
pub mod databases;
pub mod jobs;
pub mod migrations;
pub mod nodes;
pub mod pipelines;
pub mod plugins;
pub mod roles;
pub mod schema;
pub mod sessions;
pub mod settings;
pub mod sso;
pub mod tasks;
pub mod users;
pub mod web_sessions;

use std::path::{Path, PathBuf};
use std::time::Duration;

use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Error, Result};

/// A connection of the control store, as every store function takes it: inside
/// [`Store::write`] it is the open transaction. Opaque outside this module.
pub struct Conn<'a>(&'a Connection);

impl<'a> Conn<'a> {
    /// The SQLite connection underneath (store functions only).
    pub(in crate::store) fn db(&self) -> &'a Connection {
        self.0
    }
}

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
    Ok(())
}

/// Handle to the control store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: Pool<SqliteConnectionManager>,
    path: PathBuf,
}

impl Store {
    /// Opens (creating when missing) `<data_dir>/trex.db` and brings its schema up to date.
    pub fn open(data_dir: &Path, pool_size: u32) -> Result<Store> {
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
        let manager = SqliteConnectionManager::file(&path).with_init(configure);
        let pool = Pool::builder()
            .max_size(pool_size)
            .min_idle(Some(1))
            // connections to a local file do not go stale; skip the per-checkout probe query
            .test_on_check_out(false)
            .connection_timeout(Duration::from_secs(10))
            .build(manager)?;
        let store = Store { pool, path };
        {
            let mut conn = store.pool.get()?;
            schema::bootstrap(&mut conn)?;
        }
        // trex.db readable by its owner only (SQLite gives -wal and -shm the same mode)
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&store.path, std::fs::Permissions::from_mode(0o600));
        }
        Ok(store)
    }

    /// Path of `trex.db`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with a pooled connection on the blocking thread pool (autocommit: each
    /// statement commits on its own; use [`write`](Self::write) for several writes).
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Conn<'_>) -> Result<T> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.get()?;
            f(&Conn(&conn))
        })
        .await?
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction on the blocking pool: committed when `f`
    /// returns `Ok`, rolled back otherwise. Rules checked inside `f` ("an active admin always
    /// remains") see every other writer's commits, so two racing changes cannot both pass.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Conn<'_>) -> Result<T> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get()?;
            transaction(&mut conn, f)
        })
        .await?
    }

    /// Runs a short, bounded read (a lookup by key) on the calling thread when a pooled
    /// connection is free at once, else on the blocking pool like [`run`](Self::run). For point
    /// reads of a few microseconds the hand-off to another thread costs more than the read.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Conn<'_>) -> Result<T> + Send + 'static,
    {
        match self.pool.try_get() {
            Some(conn) => f(&Conn(&conn)),
            None => self.run(f).await,
        }
    }

    /// [`write`](Self::write) on the current thread (start-up and tests only; never on the
    /// runtime's threads while serving).
    pub fn write_sync<T>(&self, f: impl FnOnce(&Conn<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.pool.get()?;
        transaction(&mut conn, f)
    }

    /// The schema version the store is at (`/readyz`).
    pub async fn schema_version(&self) -> Result<i64> {
        self.run(schema::version).await
    }

    /// A watcher of commits by other connections and processes, on a connection of its own.
    pub fn data_version(&self) -> Result<DataVersion> {
        let c = Connection::open(&self.path)?;
        c.execute_batch(PRAGMAS)?;
        Ok(DataVersion(c))
    }
}

/// Runs `f` inside `BEGIN IMMEDIATE … COMMIT` on `conn`.
fn transaction<T>(conn: &mut Connection, f: impl FnOnce(&Conn<'_>) -> Result<T>) -> Result<T> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let out = f(&Conn(&tx))?;
    tx.commit()?;
    Ok(out)
}

/// Tells whether anyone else has committed to the store since the last look (SQLite's
/// `PRAGMA data_version` on a dedicated connection). SQLite-only: a shared PostgreSQL store
/// will use LISTEN/NOTIFY instead.
pub struct DataVersion(Connection);

impl DataVersion {
    /// The current version; it changes when another connection commits (-1 when unreadable).
    pub fn current(&self) -> i64 {
        self.0
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .unwrap_or(-1)
    }
}

/// Moves everything in the write-ahead log into `trex.db` and empties the log (clean shutdown).
pub fn checkpoint(conn: &Conn<'_>) -> Result<()> {
    conn.db()
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
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
