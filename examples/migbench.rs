//! Migration benchmark (not a test: it prints figures, as ratios against a reference run in the
//! same process):
//!
//! 1. a 10,000-statement migration (`run_migration` mode migrate, after its test) on a SQLite
//!    target, next to the `sqlite3` shell running the same script in one transaction;
//! 2. the same on PostgreSQL next to `psql -1 -f` (when 127.0.0.1:5432 answers);
//! 3. `mode=test` of a cheap change (a new column) on a ~200 MB SQLite target next to `cp` of
//!    the file — the runner's own cost: the scratch copy, schema reads, the apis — with the
//!    server's peak RSS during the test.
//!
//! Goals: ratios ≤ 1.5; peak RSS < 64 MiB.
//!
//! ```sh
//! cargo build --release --bin trex --example migbench
//! target/release/examples/migbench
//! ```

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::{Value, json};

#[path = "support/mod.rs"]
mod support;
use support::{Mcp, reset_peak, status_kib};

const STATEMENTS: usize = 10_000;

fn script() -> String {
    (0..STATEMENTS)
        .map(|i| format!("INSERT INTO items (id, name) VALUES ({i}, 'item {i}');\n"))
        .collect()
}

/// Calls `run_migration` and fails unless the run completed.
async fn run(m: &mut Mcp, id: &str, mode: &str) -> Result<Duration> {
    let t = Instant::now();
    let r = m
        .call_result("run_migration", json!({"migration_id": id, "mode": mode}))
        .await?;
    let took = t.elapsed();
    if r["state"] != "completed" {
        bail!("{mode} of {id} did not complete: {r}");
    }
    if std::env::var_os("MIGBENCH_VERBOSE").is_some() {
        eprintln!(
            "  {mode} {id}: {:.1} ms wall, run {} .. {}, target report {}",
            took.as_secs_f64() * 1000.0,
            r["startedAt"],
            r["finishedAt"],
            r["targets"][0]["report"]["durationMs"]
        );
    }
    Ok(took)
}

fn define(id: &str, target: &str, up: &str, down: Option<&str>) -> Value {
    let mut data = json!({"type": "sql", "up": up});
    if let Some(d) = down {
        data["down"] = json!(d);
    }
    json!({"id": id, "interlays": [{"endpoint": target}], "data": data})
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let trex_bin = support::trex_bin()?;
    let big_rows: i64 = std::env::var("MIGBENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_600_000);
    let served = support::serve(&trex_bin, |dir| {
        let dbs = dir.join("databases");
        std::fs::create_dir_all(&dbs).unwrap();
        for name in ["lite", "ref"] {
            rusqlite::Connection::open(dbs.join(format!("{name}.db")))
                .unwrap()
                .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT);")
                .unwrap();
        }
        let big = rusqlite::Connection::open(dbs.join("big.db")).unwrap();
        big.execute_batch(&format!(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE events (id INTEGER PRIMARY KEY, kind TEXT, body TEXT);
             WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {big_rows})
             INSERT INTO events (kind, body) SELECT 'k' || (n % 10), printf('%.*c', 100, 'x') FROM s;
             CREATE INDEX events_kind ON events (kind);"
        ))
        .unwrap();
    })?;
    let http = reqwest::Client::new();
    let mut admin = Mcp::open(&http, format!("{}/trex/mcp", served.base), &served.key).await?;
    let mut m = Mcp::open(
        &http,
        format!("{}/api/v1/mcp/migrations", served.base),
        &served.key,
    )
    .await?;
    for name in ["lite", "big"] {
        admin
            .call(
                "database-create",
                json!({"id": name, "dialect": "sqlite", "databaseName": format!("{name}.db")}),
                false,
            )
            .await?;
    }
    let sql = script();
    let dbs = served.dir.path().join("databases");

    // 3. mode=test on a large SQLite file vs cp, and the server's peak RSS
    let big = dbs.join("big.db");
    rusqlite::Connection::open(&big)?.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    let size = std::fs::metadata(&big)?.len();
    m.call_result(
        "define_migration",
        json!({"id": "bigtest", "interlays": [{"endpoint": "big"}],
            "data": {"type": "sql", "up": "ALTER TABLE events ADD COLUMN seen INTEGER DEFAULT 0"},
            "apis": [{"id": "recent", "query": "SELECT id, kind FROM events WHERE kind = ?1 ORDER BY id DESC LIMIT 10", "parameters": ["k3"]}]}),
    )
    .await?;
    reset_peak(served.pid);
    let idle = status_kib(served.pid, "VmRSS:");
    let test_ms = ms(run(&mut m, "bigtest", "test").await?);
    let peak = status_kib(served.pid, "VmHWM:");
    let copy = served.dir.path().join("copy.db");
    let t = Instant::now();
    let ok = Command::new("cp").arg(&big).arg(&copy).status()?.success();
    let cp_ms = ms(t.elapsed());
    let _ = std::fs::remove_file(&copy);
    println!(
        "sqlite  test on a {:.0} MB file: trex {test_ms:>8.1} ms | cp {cp_ms:>8.1} ms{} | ratio {:.2} | trex RSS before {:.1} MiB, peak {:.1} MiB",
        size as f64 / 1e6,
        if ok { "" } else { " (cp failed)" },
        test_ms / cp_ms,
        idle as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    println!(
        "        trex RSS now {:.1} MiB",
        status_kib(served.pid, "VmRSS:") as f64 / 1024.0
    );
    // 1. SQLite: trex migrate vs the sqlite3 shell
    m.call_result("define_migration", define("ins", "lite", &sql, None))
        .await?;
    run(&mut m, "ins", "test").await?;
    let trex_ms = ms(run(&mut m, "ins", "migrate").await?);
    let file = served.dir.path().join("script.sql");
    std::fs::write(&file, format!("BEGIN;\n{sql}COMMIT;\n"))?;
    let t = Instant::now();
    let out = Command::new("sqlite3")
        .arg(dbs.join("ref.db"))
        .stdin(std::fs::File::open(&file)?)
        .output();
    let shell_ms = ms(t.elapsed());
    match out {
        Ok(o) if o.status.success() => println!(
            "sqlite  {STATEMENTS} statements: trex migrate {trex_ms:>8.1} ms | sqlite3 shell {shell_ms:>8.1} ms | ratio {:.2}",
            trex_ms / shell_ms
        ),
        _ => println!(
            "sqlite  {STATEMENTS} statements: trex migrate {trex_ms:.1} ms | sqlite3 shell not available"
        ),
    }

    // 2. PostgreSQL: trex migrate vs psql -1 -f
    let pg_up = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect("127.0.0.1:5432"),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    if pg_up {
        let schema = "migbench";
        let psql = |sql: &str| {
            Command::new("psql")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-d",
                    "test",
                    "-q",
                    "-c",
                    sql,
                ])
                .output()
        };
        psql(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
             CREATE TABLE {schema}.items (id int PRIMARY KEY, name text);
             CREATE TABLE {schema}.items_ref (id int PRIMARY KEY, name text);"
        ))?;
        admin.register_local_postgres("pg").await?;
        let pg_sql = sql.replace("INSERT INTO items", &format!("INSERT INTO {schema}.items"));
        let down = format!("DELETE FROM {schema}.items");
        m.call_result(
            "define_migration",
            define("pgins", "pg", &pg_sql, Some(&down)),
        )
        .await?;
        run(&mut m, "pgins", "test").await?;
        let trex_ms = ms(run(&mut m, "pgins", "migrate").await?);
        std::fs::write(
            &file,
            pg_sql.replace(&format!("{schema}.items"), &format!("{schema}.items_ref")),
        )?;
        let t = Instant::now();
        let o = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "test",
                "-q",
                "-1",
                "-f",
            ])
            .arg(&file)
            .output()?;
        let psql_ms = ms(t.elapsed());
        if !o.status.success() {
            bail!("psql failed: {}", String::from_utf8_lossy(&o.stderr));
        }
        println!(
            "postgres {STATEMENTS} statements: trex migrate {trex_ms:>8.1} ms | psql -1 -f {psql_ms:>8.1} ms | ratio {:.2}",
            trex_ms / psql_ms
        );
        psql(&format!("DROP SCHEMA {schema} CASCADE"))?;
    } else {
        println!("postgres: skipped (nothing answers on 127.0.0.1:5432)");
    }

    println!(
        "        trex RSS now {:.1} MiB",
        status_kib(served.pid, "VmRSS:") as f64 / 1024.0
    );
    Ok(())
}
