//! ETL/CDC benchmark (not a test: it prints figures, with ratios against a reference run in the
//! same process), against the machine's PostgreSQL (wal_level = logical; `.ci/run` sets it):
//!
//! 1. **Snapshot copy** of a table of `TREX_BENCH_ROWS` rows (default 1,000,000; bigint key,
//!    text, numeric, timestamptz, bool) by a `copy_only` pipeline, next to doing it by hand:
//!    `psql \copy … TO file` then `sqlite3 .import --csv` into a fresh file. Rows/s of each and
//!    the ratio (goal ≥ 1.0).
//! 2. **Steady change capture** under `pgbench` (TPC-B: 3 updates + 1 insert per transaction)
//!    at `TREX_BENCH_TPS` transactions/s (default 1250, about 5,000 changes/s) for
//!    `TREX_BENCH_SECS` seconds (default 20): changes/s applied, replication lag (source commit
//!    to replica commit) p50/p99 as the pipeline measured it over its recent commits, and
//!    trex's RSS while streaming (peak of samples every 100 ms).
//!
//! ```sh
//! cargo build --release --bin trex --example etlbench
//! target/release/examples/etlbench
//! ```

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

#[path = "support/mod.rs"]
mod support;
use support::Mcp;

async fn pipeline(m: &mut Mcp, name: &str) -> Result<Value> {
    let l = m.call_result("etl-list-pipelines", json!({})).await?;
    Ok(l["pipelines"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name).cloned())
        .unwrap_or(Value::Null))
}

async fn wait_state(m: &mut Mcp, name: &str, state: &str, wait: Duration) -> Result<Value> {
    let deadline = Instant::now() + wait;
    loop {
        let p = pipeline(m, name).await?;
        if p["state"] == state {
            return Ok(p);
        }
        if p["state"] == "error" || Instant::now() > deadline {
            bail!("pipeline {name} did not reach {state}: {p}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(v: &mut [i64], p: f64) -> i64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> Result<()> {
    let bin = support::trex_bin()?;
    let rows = env_num("TREX_BENCH_ROWS", 1_000_000);
    let tps = env_num("TREX_BENCH_TPS", 1250);
    let secs = env_num("TREX_BENCH_SECS", 20);
    let (pg, conn) = tokio_postgres::connect(
        "host=127.0.0.1 user=postgres dbname=test",
        tokio_postgres::NoTls,
    )
    .await
    .context("PostgreSQL on 127.0.0.1:5432")?;
    tokio::spawn(conn);
    let wal: String = pg.query_one("SHOW wal_level", &[]).await?.get(0);
    if wal != "logical" {
        bail!("PostgreSQL runs with wal_level = {wal}; the benchmark needs logical (see .ci/run)");
    }
    let served = support::serve(&bin, |_| {})?;
    let http = reqwest::Client::new();
    let mut m = Mcp::open(&http, format!("{}/trex/mcp", served.base), &served.key).await?;
    m.register_local_postgres("src").await?;

    // 1. snapshot copy
    let s = format!("etlbench_{}", std::process::id());
    println!("making {s}.big with {rows} rows …");
    pg.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {s} CASCADE; CREATE SCHEMA {s};
         CREATE TABLE {s}.big (id bigint PRIMARY KEY, name text NOT NULL, amount numeric(12,2), at timestamptz, flag bool);
         INSERT INTO {s}.big SELECT g, 'customer ' || g, g * 0.37, '2026-01-01'::timestamptz + g * interval '1 second', g % 3 = 0
           FROM generate_series(1, {rows}) g;"
    ))
    .await?;
    pg.batch_execute(&format!("VACUUM ANALYZE {s}.big")).await?;
    let tmp = tempfile::tempdir()?;
    let csv = tmp.path().join("big.csv");
    let reference = tmp.path().join("ref.db");
    let t = Instant::now();
    let o = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc"])
        .arg(format!(
            "\\copy (SELECT * FROM {s}.big) TO '{}' WITH CSV",
            csv.display()
        ))
        .output()
        .context("psql")?;
    if !o.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&o.stderr));
    }
    let o = Command::new("sqlite3")
        .arg(&reference)
        .arg("CREATE TABLE big (id INTEGER PRIMARY KEY, name TEXT, amount TEXT, at TEXT, flag INTEGER)")
        .arg(format!(".import --csv {} big", csv.display()))
        .output()
        .context("sqlite3 (apt-get install sqlite3)")?;
    if !o.status.success() {
        bail!("sqlite3: {}", String::from_utf8_lossy(&o.stderr));
    }
    let by_hand = t.elapsed().as_secs_f64();
    let t = Instant::now();
    m.call_result(
        "etl-start-pipeline",
        json!({"name": "bulk", "databaseId": "src", "mode": "copy_only", "schema": s, "batchSize": 10000}),
    )
    .await?;
    let p = wait_state(&mut m, "bulk", "stopped", Duration::from_secs(1800)).await?;
    let trex = t.elapsed().as_secs_f64();
    if p["rowsReplicated"].as_u64() != Some(rows) {
        bail!("copied {} rows, not {rows}: {p}", p["rowsReplicated"]);
    }
    println!(
        "snapshot copy of {rows} rows: trex {:.2} s ({:.0} rows/s); psql \\copy + sqlite3 .import {:.2} s ({:.0} rows/s); ratio {:.2} (goal >= 1.0)",
        trex,
        rows as f64 / trex,
        by_hand,
        rows as f64 / by_hand,
        by_hand / trex
    );
    m.call_result(
        "etl-delete-pipeline",
        json!({"name": "bulk", "dropTables": true}),
    )
    .await?;
    pg.batch_execute(&format!("DROP SCHEMA {s} CASCADE"))
        .await?;

    // 2. change capture under pgbench, in a database of its own
    let db = format!("trex_etlbench_{}", std::process::id());
    pg.batch_execute(&format!("CREATE DATABASE {db}")).await?;
    let o = Command::new("pgbench")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-i",
            "-s",
            "2",
            "-q",
            &db,
        ])
        .output()
        .context("pgbench")?;
    if !o.status.success() {
        bail!("pgbench -i: {}", String::from_utf8_lossy(&o.stderr));
    }
    let (bpg, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 user=postgres dbname={db}"),
        tokio_postgres::NoTls,
    )
    .await?;
    tokio::spawn(conn);
    bpg.batch_execute(
        "CREATE PUBLICATION bench FOR TABLE pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history",
    )
    .await?;
    m.call_result(
        "database-create",
        json!({"id": "bench", "host": "127.0.0.1", "port": 5432, "databaseName": db}),
    )
    .await?;
    m.call_result(
        "database-credential-save",
        json!({"databaseId": "bench", "username": "postgres", "password": "unused"}),
    )
    .await?;
    m.call_result(
        "etl-start-pipeline",
        json!({"name": "cdc", "databaseId": "bench", "mode": "copy_and_cdc", "publication": "bench"}),
    )
    .await?;
    wait_state(&mut m, "cdc", "streaming", Duration::from_secs(300)).await?;
    // the copy's last rows commit just after streaming starts: wait until the count settles
    let mut start_rows = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let n = pipeline(&mut m, "cdc").await?["rowsReplicated"]
            .as_u64()
            .unwrap_or(0);
        if n == start_rows {
            break;
        }
        start_rows = n;
    }
    let mut bench = Command::new("pgbench")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-n",
            "-c",
            "4",
            "-j",
            "2",
        ])
        .args(["-T", &secs.to_string(), "-R", &tps.to_string(), &db])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let t = Instant::now();
    let mut rss_peak = 0u64;
    let mut samples: Vec<i64> = Vec::new();
    while bench.try_wait()?.is_none() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        rss_peak = rss_peak.max(support::status_kib(served.pid, "VmRSS:"));
        if let Some(l) = pipeline(&mut m, "cdc").await?["lagMs"].as_i64() {
            samples.push(l);
        }
    }
    let out = String::from_utf8_lossy(&bench.wait_with_output()?.stdout).into_owned();
    let bench_secs = t.elapsed().as_secs_f64();
    let tps_done: f64 = out
        .lines()
        .find(|l| l.starts_with("tps"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    // wait until the replica has caught up
    let deadline = Instant::now() + Duration::from_secs(120);
    let p = loop {
        let p = pipeline(&mut m, "cdc").await?;
        if p["lagBytes"] == 0 || Instant::now() > deadline {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let caught_up = t.elapsed().as_secs_f64();
    let applied = p["rowsReplicated"].as_u64().unwrap_or(0) - start_rows;
    println!(
        "change capture under pgbench ({tps_done:.0} tps asked {tps}, about {:.0} changes/s, {secs} s): \
         {applied} changes applied, {:.0} changes/s over the run (caught up {:.1} s after it ended)",
        tps_done * 4.0,
        applied as f64 / bench_secs,
        caught_up - bench_secs
    );
    println!(
        "replication lag (source commit to replica commit): pipeline's own p50 {} ms, p99 {} ms over its last \
         commits; sampled every 100 ms p50 {} ms, p99 {} ms (goal p99 < 1000 ms at 5,000 changes/s)",
        p["lagP50Ms"],
        p["lagP99Ms"],
        pct(&mut samples.clone(), 0.5),
        pct(&mut samples, 0.99)
    );
    println!(
        "trex RSS while streaming: peak {:.1} MiB (goal < 64 MiB)",
        rss_peak as f64 / 1024.0
    );
    m.call_result(
        "etl-delete-pipeline",
        json!({"name": "cdc", "dropTables": true}),
    )
    .await?;
    drop(bpg);
    drop(served);
    pg.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .await?;
    Ok(())
}
