//! The read pin of a SQLite store: one read transaction kept open on a connection of its own
//! while this process writes nothing, so that the store's point reads do not each make two
//! system calls.
//!
//! A read of a WAL database takes a shared lock on one of the WAL index's read marks and
//! releases it at the end. SQLite counts the shared locks the connections of one process hold
//! on each mark and only asks the kernel (an `fcntl` lock, then an unlock) when the count goes
//! from or to zero. A read transaction held here on the newest mark keeps that count above
//! zero, so a point read that picks the same mark — every read, until something commits — is
//! locked in memory. Measured on `user-get`, the two `fcntl` calls were a tenth of the whole
//! request.
//!
//! What a reader holds open matters to writers: the WAL cannot start over from its beginning
//! while any read mark is held, and a checkpoint copies frames into `trex.db` only up to the
//! oldest mark held. So the pin is let go before every write of this process and taken again
//! by the next read after it, never while a write is under way ([`ReadPin::writing`]); and it
//! is let go at least once a second ([`ReadPin::refresh`], from the server's upkeep loop), so
//! other processes' writes (the CLI's) are checkpointed as before. A pin that cannot be taken
//! (a busy store, an I/O error) is simply not held: reads work as they always did.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// The longest a pin is held before [`ReadPin::refresh`] lets it go.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// One read transaction held open on a connection of its own (see the module docs).
pub struct ReadPin {
    held: Mutex<Pinned>,
    /// Writes of this process under way: no pin is taken while there are any.
    writers: AtomicUsize,
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
        }
    }

    /// Takes the pin when it is not held and nothing writes (before a point read). Never
    /// waits: when another thread is taking or letting go of the pin, the read goes ahead
    /// without it.
    pub fn hold(&self) {
        if self.writers.load(Ordering::Acquire) > 0 {
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
        release(&mut self.held.lock().unwrap_or_else(|e| e.into_inner()));
        Writing(self)
    }

    /// Lets the pin go when it has been held for [`MAX_AGE`] (the next read takes a new one
    /// on the newest read mark). Never waits for the lock.
    pub fn refresh(&self) {
        if let Ok(mut p) = self.held.try_lock()
            && p.since.is_some_and(|s| s.elapsed() >= MAX_AGE)
        {
            release(&mut p);
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

fn release(p: &mut Pinned) {
    if p.since.take().is_some() && !p.conn.is_autocommit() {
        // a read transaction: nothing to commit, its locks go
        if let Err(e) = p.conn.execute_batch("COMMIT") {
            tracing::warn!("store read pin: {e}");
        }
    }
}

/// A write of this process under way (from [`ReadPin::writing`]).
pub struct Writing<'a>(&'a ReadPin);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.writers.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::MAX_AGE;
    use crate::store::Store;

    fn store(dir: &std::path::Path) -> Store {
        Store::open(&crate::config::StoreConfig {
            data_dir: dir.to_path_buf(),
            pool_size: 4,
            ..Default::default()
        })
        .unwrap()
    }

    async fn count(s: &Store) -> i64 {
        s.read(|c| c.query_row("SELECT count(*) FROM scratch", (), |r| r.get(0)))
            .await
            .unwrap()
    }

    fn wal_bytes(dir: &std::path::Path) -> u64 {
        std::fs::metadata(dir.join("trex.db-wal")).map_or(0, |m| m.len())
    }

    /// Another process (the CLI) commits while the pin is held: the next read sees it.
    #[tokio::test]
    async fn a_read_sees_what_another_process_committed_while_the_pin_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        s.write(|c| c.execute_batch("CREATE TABLE scratch (x BLOB)"))
            .await
            .unwrap();
        assert_eq!(count(&s).await, 0);
        assert!(s.pin_held());
        let other = rusqlite::Connection::open(dir.path().join("trex.db")).unwrap();
        for n in 1..=3 {
            other
                .execute_batch("INSERT INTO scratch VALUES (x'01')")
                .unwrap();
            assert_eq!(count(&s).await, n);
        }
        assert!(s.pin_held());
    }

    /// Writes of this process let the pin go, so the WAL starts over after each checkpoint: 20
    /// MB written, the log stays near the 4 MB auto-checkpoint size (held across the writes,
    /// the pin would keep every frame in it).
    #[tokio::test]
    async fn writes_of_this_process_let_the_log_start_over() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        s.write(|c| c.execute_batch("CREATE TABLE scratch (x BLOB)"))
            .await
            .unwrap();
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

    /// The pin keeps another process from emptying the log only until it is a second old.
    #[tokio::test]
    async fn another_process_can_empty_the_log_once_the_pin_is_a_second_old() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        s.write(|c| c.execute_batch("CREATE TABLE scratch (x BLOB)"))
            .await
            .unwrap();
        assert_eq!(count(&s).await, 0);
        let other = rusqlite::Connection::open(dir.path().join("trex.db")).unwrap();
        // asks once (rusqlite's default is to wait 5 s)
        other.busy_timeout(std::time::Duration::ZERO).unwrap();
        other
            .execute_batch("INSERT INTO scratch VALUES (randomblob(10000))")
            .unwrap();
        let truncate = || -> i64 {
            other
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(truncate(), 1, "busy while the pin is held");
        s.refresh_pin();
        assert!(s.pin_held(), "younger than a second: kept");
        tokio::time::sleep(MAX_AGE).await;
        s.refresh_pin();
        assert!(!s.pin_held());
        assert_eq!(truncate(), 0);
        assert_eq!(wal_bytes(dir.path()), 0);
        assert_eq!(count(&s).await, 1);
    }
}
