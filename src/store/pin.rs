//! The read pin of a SQLite store: one read transaction kept open on a connection of its own
//! while nothing writes, so that the store's point reads do not each make two system calls.
//! The server turns it on ([`super::Store::pin_reads`]); the CLI and tests that open a store
//! never hold one.
//!
//! A read of a WAL database takes a shared lock on one of the WAL index's read marks and
//! releases it at the end. SQLite counts the shared locks the connections of one process hold
//! on each mark and only asks the kernel (an `fcntl` lock, then an unlock) when the count goes
//! from or to zero. A read transaction held here on the newest mark keeps that count above
//! zero, so a point read that picks the same mark — every read, until something commits — is
//! locked in memory. Measured on `user-get`, the two `fcntl` calls were a tenth of the whole
//! request. Reads never use the pin's own snapshot: each begins its own transaction and sees
//! every commit.
//!
//! What a reader holds open matters to writers: the WAL cannot start over from its beginning
//! while any read mark is held, a checkpoint copies frames into `trex.db` only up to the oldest
//! mark held, and none at all while read mark 0 is held. So the pin is let go:
//!
//! - before every write of this process, and not taken again while one is under way
//!   ([`ReadPin::writing`]); the next read after it takes a new one;
//! - as soon as another process is seen to commit (a watcher thread compares `PRAGMA
//!   data_version` every [`WATCH_EVERY`] with this process's own commits), and not taken again
//!   until a whole interval passes without one: while the CLI or any other process writes, reads
//!   lock as they did without a pin, and its checkpoints and the WAL's restarts go as before
//!   (a stale pin would not help the reads anyway: they need a mark at the newest commit);
//! - when it is [`MAX_AGE`] old.
//!
//! A pin that cannot be taken (a busy store, an I/O error) is simply not held.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// The longest a pin is held before the watcher lets it go.
pub const MAX_AGE: Duration = Duration::from_secs(1);
/// How often the watcher looks for other processes' commits.
pub const WATCH_EVERY: Duration = Duration::from_millis(200);

/// One read transaction held open on a connection of its own (see the module docs).
pub struct ReadPin {
    held: Mutex<Pinned>,
    /// Writes of this process under way: no pin is taken while there are any.
    writers: AtomicUsize,
    /// Writes of this process ended so far (the watcher tells them from other processes').
    commits: AtomicU64,
    /// False from another process's commit until a watch interval without one.
    quiet: AtomicBool,
}

struct Pinned {
    conn: Connection,
    /// When the read transaction began, while one is open.
    since: Option<Instant>,
}

impl ReadPin {
    /// A pin on the store `conn` is open on (not held until the first [`hold`](Self::hold)).
    pub fn new(conn: Connection) -> ReadPin {
        ReadPin {
            held: Mutex::new(Pinned { conn, since: None }),
            writers: AtomicUsize::new(0),
            commits: AtomicU64::new(0),
            quiet: AtomicBool::new(true),
        }
    }

    /// Takes the pin when it is not held, nothing of this process writes and no other process
    /// wrote lately (before a point read). Never waits: when another thread is taking or
    /// letting go of the pin, the read goes ahead without it.
    pub fn hold(&self) {
        if self.writers.load(Ordering::Acquire) > 0 || !self.quiet.load(Ordering::Acquire) {
            return;
        }
        let Ok(mut p) = self.held.try_lock() else {
            return;
        };
        // a writer counts itself before it waits for this lock to let the pin go
        if p.since.is_some() || self.writers.load(Ordering::Acquire) > 0 {
            return;
        }
        let begun = p.conn.execute_batch("BEGIN").and_then(|()| {
            p.conn
                .query_row("SELECT 1 FROM sqlite_schema LIMIT 1", [], |_| Ok(()))
                .or_else(|e| match e {
                    // an empty schema still began the read
                    rusqlite::Error::QueryReturnedNoRows => Ok(()),
                    e => Err(e),
                })
        });
        match begun {
            Ok(()) => p.since = Some(Instant::now()),
            Err(e) => {
                tracing::debug!("store read pin not taken: {e}");
                if !p.conn.is_autocommit() {
                    let _ = p.conn.execute_batch("ROLLBACK");
                }
            }
        }
    }

    /// Lets the pin go for a write of this process and keeps it from being taken until the
    /// returned guard is dropped (after the write's commit and checkpoint).
    pub fn writing(&self) -> Writing<'_> {
        self.writers.fetch_add(1, Ordering::AcqRel);
        self.release();
        Writing(self)
    }

    /// Lets the pin go (waits for a thread taking it).
    fn release(&self) {
        let mut p = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if p.since.take().is_some() && !p.conn.is_autocommit() {
            // a read transaction: nothing to commit, its locks go
            if let Err(e) = p.conn.execute_batch("COMMIT") {
                tracing::warn!("store read pin: {e}");
            }
        }
    }

    /// One look of the watcher: `external` when another process committed since the last.
    fn watched(&self, external: bool) {
        self.quiet.store(!external, Ordering::Release);
        let old = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .since
            .is_some_and(|s| s.elapsed() >= MAX_AGE);
        if external || old {
            self.release();
        }
    }

    /// Whether the pin is held now (tests).
    pub fn is_held(&self) -> bool {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .since
            .is_some()
    }
}

/// A write of this process under way (from [`ReadPin::writing`]).
pub struct Writing<'a>(&'a ReadPin);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.commits.fetch_add(1, Ordering::AcqRel);
        self.0.writers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Starts the watcher of `pin` on a thread of its own, with its own connection to the store at
/// `path`; it ends within [`WATCH_EVERY`] once the pin is dropped.
pub fn watch(pin: &Arc<ReadPin>, path: &Path) -> crate::error::Result<()> {
    let conn = Connection::open(path)?;
    let version = move || {
        conn.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0))
            .unwrap_or(-1)
    };
    let weak = Arc::downgrade(pin);
    let mut seen = (version(), pin.commits.load(Ordering::Acquire));
    std::thread::Builder::new()
        .name("trex-read-pin".into())
        .spawn(move || {
            loop {
                std::thread::sleep(WATCH_EVERY);
                let Some(pin) = weak.upgrade() else { return };
                // ours first: a commit of ours landing in between reads as another's, which
                // only costs one interval without the pin
                let ours = pin.commits.load(Ordering::Acquire);
                let now = (version(), ours);
                // the store's version moved while ours did not: another process committed (or
                // both did, and then our own writes let the pin go and checkpoint)
                pin.watched(now.0 != seen.0 && now.1 == seen.1);
                seen = now;
            }
        })
        .map_err(|e| crate::error::Error::io("cannot start the store's read pin watcher", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use crate::store::Store;

    /// A store with the read pin on, as the server has it, and a scratch table.
    async fn store(dir: &std::path::Path) -> Store {
        let s = Store::open(&crate::config::StoreConfig {
            data_dir: dir.to_path_buf(),
            pool_size: 4,
            ..Default::default()
        })
        .unwrap();
        s.write(|c| c.execute_batch("CREATE TABLE scratch (x BLOB)"))
            .await
            .unwrap();
        assert_eq!(count(&s).await, 0);
        assert!(!s.pin_held(), "off until the server turns it on");
        s.pin_reads().unwrap();
        s
    }

    async fn count(s: &Store) -> i64 {
        s.read(|c| c.query_row("SELECT count(*) FROM scratch", (), |r| r.get(0)))
            .await
            .unwrap()
    }

    fn wal_bytes(dir: &std::path::Path) -> u64 {
        std::fs::metadata(dir.join("trex.db-wal")).map_or(0, |m| m.len())
    }

    /// Another process: Python's sqlite3 inserting `rows` rows of `bytes` random bytes into
    /// `scratch`, one commit each, `pause_ms` apart.
    fn writer(dir: &std::path::Path, rows: u32, bytes: u32, pause_ms: u32) -> std::process::Child {
        let script = format!(
            "import sqlite3, time\n\
             c = sqlite3.connect({db:?}, timeout=5, isolation_level=None)\n\
             for _ in range({rows}):\n\
             \x20   c.execute('INSERT INTO scratch VALUES (randomblob({bytes}))')\n\
             \x20   time.sleep({pause})\n",
            db = dir.join("trex.db").to_str().unwrap(),
            pause = f64::from(pause_ms) / 1000.0,
        );
        Command::new("python3")
            .args(["-c", &script])
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 runs")
    }

    /// Another process commits while the pin is held: the next read sees it.
    #[tokio::test]
    async fn a_read_sees_what_another_process_committed_while_the_pin_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path()).await;
        for n in 1..=3 {
            assert_eq!(count(&s).await, n - 1);
            assert!(s.pin_held());
            assert!(writer(dir.path(), 1, 1, 0).wait().unwrap().success());
            assert_eq!(count(&s).await, n);
            // the watcher lets the pin go at the other process's commit; quiet again, it is
            // taken again
            tokio::time::sleep(super::WATCH_EVERY * 3).await;
        }
    }

    /// Writes of this process let the pin go, so the WAL starts over after each checkpoint: 20
    /// MB written, the log stays near the 4 MB auto-checkpoint size (held across the writes,
    /// the pin would keep every frame in it: 22 MB).
    #[tokio::test]
    async fn writes_of_this_process_let_the_log_start_over() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path()).await;
        for n in 1..=200 {
            s.write(|c| c.execute_batch("INSERT INTO scratch VALUES (randomblob(100000))"))
                .await
                .unwrap();
            assert_eq!(count(&s).await, n);
            assert!(s.pin_held());
        }
        let wal = wal_bytes(dir.path());
        assert!(wal < 8 << 20, "the WAL grew to {wal} bytes");
    }

    /// Another process writing steadily (50 MB in 2,500 commits over about 5 s) while this
    /// one reads without pause: the pin stays out of its way, so the log grows no more than
    /// without a pin (8 to 11 MB without one, 8 to 13 MB with it; a pin let go only once a
    /// second: 73 MB), and once the writer stops the pin is taken again.
    #[tokio::test]
    async fn a_steady_writer_in_another_process_keeps_its_log_small() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path()).await;
        let mut w = writer(dir.path(), 2500, 20_000, 2);
        let (mut reads, mut last) = (0u64, 0);
        while w.try_wait().unwrap().is_none() {
            let n = count(&s).await;
            assert!(n >= last, "a read went back in time: {n} after {last}");
            last = n;
            reads += 1;
            tokio::task::yield_now().await;
        }
        assert!(w.wait().unwrap().success());
        assert_eq!(count(&s).await, 2500);
        let wal = wal_bytes(dir.path());
        assert!(
            wal < 24 << 20,
            "the WAL grew to {wal} bytes over {reads} reads"
        );
        tokio::time::sleep(super::WATCH_EVERY * 3).await;
        count(&s).await;
        assert!(s.pin_held(), "taken again once the other process is quiet");
    }

    /// The pin is let go once it is a second old, even with nothing writing.
    #[tokio::test]
    async fn the_pin_is_let_go_at_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path()).await;
        count(&s).await;
        assert!(s.pin_held());
        tokio::time::sleep(super::MAX_AGE + super::WATCH_EVERY * 2).await;
        assert!(!s.pin_held());
        count(&s).await;
        assert!(s.pin_held());
    }
}
