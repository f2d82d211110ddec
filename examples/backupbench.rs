//! Backup benchmark (not a test: it prints figures, as ratios against a reference run in the
//! same process):
//!
//! 1. `backup-create` of a data dir holding a ~500 MB trexdb data file, next to the `sqlite3`
//!    shell's `.backup` of the same SQLite files (trex also checksums every file and writes one
//!    gzip'd tar with a manifest, so the archive's size is printed too);
//! 2. `tools/call user-get` under load (16 sessions) for a few seconds before the backup and
//!    while it runs: calls/s, p50 and p99 in each window, and how much the p99 rises.
//!
//! ```sh
//! cargo build --release --bin trex --example backupbench
//! target/release/examples/backupbench            # TREX_BENCH_MB=500 by default
//! TREX_BACKUP_COMPRESSION_LEVEL=0 target/release/examples/backupbench   # the served trex inherits it
//! ```

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::json;

#[path = "support/mod.rs"]
mod support;
use support::Mcp;

const SESSIONS: usize = 16;

/// Fills `<dir>/data/main.db` with about `mb` MB of rows (text that compresses about 2:1).
fn fill(dir: &std::path::Path, mb: usize) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let c = rusqlite::Connection::open(dir.join("data/main.db")).unwrap();
    let rows = mb * 1024 * 1024 / 2100;
    c.execute_batch(&format!(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE events (id INTEGER PRIMARY KEY, name TEXT NOT NULL, payload TEXT NOT NULL);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
         INSERT INTO events (id, name, payload)
           SELECT i, 'event ' || i, hex(randomblob(1000)) FROM n;"
    ))
    .unwrap();
}

/// `tools/call user-get` from `SESSIONS` sessions until `stop`; latencies in µs.
async fn load(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    user: &str,
    stop: Arc<AtomicBool>,
) -> Result<Vec<u64>> {
    let mut tasks = Vec::new();
    for _ in 0..SESSIONS {
        let mut m = Mcp::open(http, url.to_string(), key).await?;
        let (stop, user) = (stop.clone(), user.to_string());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if m.call("user-get", json!({"userId": user}), false)
                    .await
                    .is_ok()
                {
                    lat.push(t.elapsed().as_micros() as u64);
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    all.sort_unstable();
    Ok(all)
}

/// [`load`] on a task of its own, until `stop`.
fn spawn_load(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    user: &str,
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Result<Vec<u64>>> {
    let (http, url, key, user, stop) = (
        http.clone(),
        url.to_string(),
        key.to_string(),
        user.to_string(),
        stop.clone(),
    );
    tokio::spawn(async move { load(&http, &url, &key, &user, stop).await })
}

fn pct(v: &[u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<()> {
    let bin = support::trex_bin()?;
    let mb: usize = std::env::var("TREX_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    println!("filling a data dir with ~{mb} MB …");
    let t = Instant::now();
    let served = support::serve(&bin, |d| fill(d, mb))?;
    let main_db = served.dir.path().join("data/main.db");
    let size = std::fs::metadata(&main_db)?.len();
    println!(
        "data/main.db {:.0} MB (made in {:.1} s)",
        size as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    // the reference: sqlite3 .backup of the same SQLite files
    let out = tempfile::tempdir()?;
    let t = Instant::now();
    for (f, name) in [
        (main_db.clone(), "main.db"),
        (served.dir.path().join("trex.db"), "trex.db"),
    ] {
        let o = Command::new("sqlite3")
            .arg(&f)
            .arg(format!(".backup {}", out.path().join(name).display()))
            .output();
        match o {
            Ok(o) if o.status.success() => {}
            Ok(o) => bail!(
                "sqlite3 .backup failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => bail!("sqlite3 is needed (apt-get install sqlite3): {e}"),
        }
    }
    let reference = t.elapsed();
    drop(out);

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let url = format!("{}/trex/mcp", served.base);
    let mut m = Mcp::open(&http, url.clone(), &served.key).await?;
    let users = m.call_result("user-list", json!({})).await?;
    let user = users["users"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    // load alone
    let stop = Arc::new(AtomicBool::new(false));
    let window = Duration::from_secs(5);
    let h = spawn_load(&http, &url, &served.key, &user, &stop);
    tokio::time::sleep(window).await;
    stop.store(true, Ordering::Relaxed);
    let quiet = h.await??;

    // load while the backup runs
    let stop = Arc::new(AtomicBool::new(false));
    let h = spawn_load(&http, &url, &served.key, &user, &stop);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    let b = m.call_result("backup-create", json!({})).await?;
    let took = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let busy = h.await??;

    let archive = b["bytes"].as_u64().unwrap_or(0);
    let level = std::env::var("TREX_BACKUP_COMPRESSION_LEVEL").unwrap_or_else(|_| "1".into());
    println!(
        "backup-create {:.2} s (archive {:.0} MB, gzip level {level}) | sqlite3 .backup {:.2} s | ratio {:.2}",
        took.as_secs_f64(),
        archive as f64 / 1e6,
        reference.as_secs_f64(),
        took.as_secs_f64() / reference.as_secs_f64()
    );
    let rate = |v: &[u64], d: Duration| v.len() as f64 / d.as_secs_f64();
    println!(
        "user-get alone:          {:>7.0} calls/s  p50 {:>6} µs  p99 {:>7} µs",
        rate(&quiet, window),
        pct(&quiet, 0.5),
        pct(&quiet, 0.99)
    );
    println!(
        "user-get during backup:  {:>7.0} calls/s  p50 {:>6} µs  p99 {:>7} µs",
        rate(&busy, took + Duration::from_millis(300)),
        pct(&busy, 0.5),
        pct(&busy, 0.99)
    );
    println!(
        "p99 during / alone: {:.2}",
        pct(&busy, 0.99) as f64 / pct(&quiet, 0.99).max(1) as f64
    );
    Ok(())
}
