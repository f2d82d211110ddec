//! ETL/CDC pipelines against the machine's real PostgreSQL (logical replication) and real
//! SQLite files: copy and stream under a concurrent writer, row-by-row comparison of source and
//! replica, `kill -9` of the server mid-stream, stop/start, clear errors, a password with `'`
//! and `\`, and a SQLite source with triggers. Each test makes its own schema, publication and
//! role names and drops them (and its slots) at the end.

use std::time::{Duration, Instant};

use rusqlite::types::Value as Sql;
use serde_json::{Value, json};

use crate::cli::serve_with;
use crate::common::{Client, TestServer, postgres_or_skip};
use crate::databases::pg_admin;

/// The three source tables of the PostgreSQL tests, every mapped type among them.
fn source_ddl(s: &str) -> String {
    format!(
        "CREATE SCHEMA {s};
         CREATE TABLE {s}.kinds (id serial PRIMARY KEY, n numeric(20,5), f float8, b bool, ts timestamptz,
            t timestamp, d date, j jsonb, jj json, ai int[], at text[], by bytea, big text);
         ALTER TABLE {s}.kinds ALTER big SET STORAGE EXTERNAL;
         CREATE TABLE {s}.orders (id bigserial PRIMARY KEY, qty int NOT NULL, note text);
         CREATE TABLE {s}.events (id int, payload text);
         ALTER TABLE {s}.events REPLICA IDENTITY FULL;
         INSERT INTO {s}.kinds (n, f, b, ts, t, d, j, jj, ai, at, by, big)
           SELECT g * 1.5, g / 3.0, g % 2 = 0, '2026-01-01 00:00:00+00'::timestamptz + g * interval '1.25 seconds',
                  '2026-01-01'::timestamp + g * interval '1 minute', '2026-01-01'::date + g,
                  jsonb_build_object('g', g, 'tags', jsonb_build_array('a', g)), ('{{\"raw\": ' || g || '}}')::json,
                  ARRAY[g, NULL, g + 1], ARRAY['x y', 'q\"uote', NULL], decode(md5(g::text), 'hex'),
                  repeat(md5(g::text), 200)
           FROM generate_series(1, 40) g;
         INSERT INTO {s}.kinds (n) VALUES (NULL);
         INSERT INTO {s}.kinds (n, f, ts) VALUES (12345678901234.56789, 'NaN', 'infinity');
         INSERT INTO {s}.orders (qty, note) SELECT g, 'order ' || g FROM generate_series(1, 500) g;
         INSERT INTO {s}.events SELECT g % 50, 'e' || g FROM generate_series(1, 100) g;
         CREATE PUBLICATION {s} FOR TABLE {s}.kinds, {s}.orders, {s}.events;"
    )
}

/// The source rows of table `t` as JSON values in the replica's representation (README's type
/// mapping, written independently of trex's code), sorted.
async fn source_rows(pg: &tokio_postgres::Client, s: &str, t: &str) -> Vec<Vec<Value>> {
    let sql = match t {
        "kinds" => format!(
            "SELECT id::text, n::text, f, b::int::text,
                    CASE WHEN isfinite(ts) THEN to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') ELSE ts::text END,
                    to_char(t, 'YYYY-MM-DD\"T\"HH24:MI:SS.US'), d::text, j::text, jj::text,
                    array_to_json(ai)::text, array_to_json(at)::text, by, big
             FROM {s}.kinds"
        ),
        "orders" => format!("SELECT id::text, qty::text, note FROM {s}.orders"),
        _ => format!("SELECT id::text, payload FROM {s}.events"),
    };
    let rows = pg.query(&sql, &[]).await.unwrap();
    let mut out: Vec<Vec<Value>> = rows
        .iter()
        .map(|r| {
            (0..r.len())
                .map(|i| {
                    if t == "kinds" && i == 2 {
                        return match r.get::<_, Option<f64>>(i) {
                            Some(f) if f.is_nan() => json!("NaN"),
                            Some(f) => json!(f),
                            None => Value::Null,
                        };
                    }
                    if t == "kinds" && i == 11 {
                        return r
                            .get::<_, Option<Vec<u8>>>(i)
                            .map(|b| json!(hex::encode(b)))
                            .unwrap_or(Value::Null);
                    }
                    let v: Option<String> = r.get(i);
                    match v {
                        None => Value::Null,
                        Some(s) if t == "kinds" && (i == 9 || i == 10) => {
                            serde_json::from_str(&s).unwrap()
                        }
                        Some(s) => json!(s),
                    }
                })
                .collect()
        })
        .collect();
    out.sort_by(|a, b| {
        a.iter()
            .map(|v| v.to_string())
            .cmp(b.iter().map(|v| v.to_string()))
    });
    out
}

/// The replica rows of `table` read straight from trexdb's main file, as JSON, sorted.
fn replica_rows(main: &std::path::Path, table: &str, arrays: &[usize]) -> Vec<Vec<Value>> {
    let c = rusqlite::Connection::open_with_flags(main, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    let mut st = c.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
    let n = st.column_count();
    let mut out: Vec<Vec<Value>> = st
        .query_map([], |r| {
            Ok((0..n)
                .map(|i| match r.get::<_, Sql>(i).unwrap() {
                    Sql::Null => Value::Null,
                    Sql::Integer(v) => json!(v.to_string()),
                    Sql::Real(f) => json!(f),
                    Sql::Text(s) if arrays.contains(&i) => serde_json::from_str(&s).unwrap(),
                    Sql::Text(s) => json!(s),
                    Sql::Blob(b) => json!(hex::encode(b)),
                })
                .collect())
        })
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    out.sort_by(|a, b| {
        a.iter()
            .map(|v| v.to_string())
            .cmp(b.iter().map(|v| v.to_string()))
    });
    out
}

/// Waits until every replica table equals its source (the writer has stopped); panics with
/// the first difference after `wait`.
async fn converge(pg: &tokio_postgres::Client, s: &str, main: &std::path::Path, wait: Duration) {
    let deadline = Instant::now() + wait;
    loop {
        let mut diff = None;
        for t in ["kinds", "orders", "events"] {
            let arrays: &[usize] = if t == "kinds" { &[9, 10] } else { &[] };
            let (a, b) = (
                source_rows(pg, s, t).await,
                replica_rows(main, &format!("{s}__{t}"), arrays),
            );
            if a != b {
                let first = a
                    .iter()
                    .zip(&b)
                    .find(|(x, y)| x != y)
                    .map(|(x, y)| format!("source {x:?}\nreplica {y:?}"));
                diff = Some(format!(
                    "{t}: {} source rows, {} replica rows; first difference: {first:?}",
                    a.len(),
                    b.len()
                ));
                break;
            }
        }
        match diff {
            None => return,
            Some(d) if Instant::now() > deadline => panic!("replica never matched the source: {d}"),
            Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Inserts, updates (TOASTed `big` left unchanged), deletes and one truncate on the source
/// until `stop` is set; returns how many transactions it committed.
async fn writer(s: String, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> u64 {
    let pg = pg_admin().await;
    let mut x: u64 = 7;
    let mut n = 0u64;
    let mut rnd = move |m: u64| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) % m
    };
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let (a, b, c) = (rnd(600) + 1, rnd(60) + 1, rnd(50));
        let sql = format!(
            "BEGIN;
             INSERT INTO {s}.orders (qty, note) VALUES ({a}, 'w{n}');
             UPDATE {s}.orders SET qty = qty + 1, note = note || '+' WHERE id = {a};
             DELETE FROM {s}.orders WHERE id = {b} * 7;
             UPDATE {s}.kinds SET n = n + 1, j = jsonb_set(coalesce(j, '{{}}'), '{{w}}', '{n}') WHERE id = {b};
             INSERT INTO {s}.kinds (n, f, b, ts, ai, at, by) VALUES ({a}.125, {b}.5, true, now(), ARRAY[{a}], ARRAY['w'], '\\x00ff');
             DELETE FROM {s}.kinds WHERE id = (SELECT max(id) FROM {s}.kinds) AND {c} < 5;
             INSERT INTO {s}.events VALUES ({c}, 'w{n}');
             UPDATE {s}.events SET payload = payload || '!' WHERE ctid = (SELECT ctid FROM {s}.events WHERE id = {c} LIMIT 1);
             DELETE FROM {s}.events WHERE ctid = (SELECT ctid FROM {s}.events WHERE id = ({c} + 1) % 50 LIMIT 1);
             COMMIT;"
        );
        pg.batch_execute(&sql).await.unwrap();
        n += 1;
        if n == 150 {
            pg.batch_execute(&format!(
                "TRUNCATE {s}.events; INSERT INTO {s}.events VALUES (1, 'after truncate')"
            ))
            .await
            .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    n
}

async fn pipeline(c: &Client, name: &str) -> Value {
    let l = c.call_ok("etl-list-pipelines", json!({})).await;
    l["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

async fn wait_state(c: &Client, name: &str, state: &str, wait: Duration) -> Value {
    let deadline = Instant::now() + wait;
    loop {
        let p = pipeline(c, name).await;
        if p["state"] == state {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "pipeline never reached {state}: {p}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn cleanup(pg: &tokio_postgres::Client, s: &str) {
    let _ = pg
        .batch_execute(&format!(
            "DROP PUBLICATION IF EXISTS {s}; DROP SCHEMA IF EXISTS {s} CASCADE;"
        ))
        .await;
}

async fn key_of(served: &crate::cli::Served) -> String {
    served
        .stdout
        .split_whitespace()
        .find(|w| trex::auth::keys::well_formed(w))
        .expect("first start prints a key")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_copy_and_cdc_is_exactly_once_across_kill_and_restart() {
    if !postgres_or_skip("postgres_copy_and_cdc").await {
        return;
    }
    let pg = pg_admin().await;
    let s = format!("etl_{}", trex::util::random_hex(4));
    pg.batch_execute(&source_ddl(&s)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let main = dir.path().join("data").join("main.db");
    let mut first = serve_with(d, &[]);
    let key = key_of(&first).await;
    let mut c = Client::new(&format!("http://{}/trex/mcp", first.addr), Some(&key));
    c.initialize().await;
    c.call_ok(
        "database-create",
        json!({"id": "src", "host": "127.0.0.1", "port": 5432, "databaseName": "test"}),
    )
    .await;
    c.call_ok(
        "database-credential-save",
        json!({"databaseId": "src", "username": "postgres", "password": "trust"}),
    )
    .await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let w = tokio::spawn(writer(s.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = c
        .call_ok(
            "etl-start-pipeline",
            json!({"name": "shop", "databaseId": "src", "mode": "copy_and_cdc", "publication": s,
                   "batchSize": 200, "batchTimeoutMs": 200, "retryDelayMs": 500}),
        )
        .await;
    assert_eq!(r["message"], "Pipeline 'shop' started");
    assert!(
        c.call_err(
            "etl-start-pipeline",
            json!({"name": "shop", "databaseId": "src", "mode": "copy_and_cdc", "publication": s})
        )
        .await
        .contains("Pipeline 'shop' already exists")
    );
    let p = wait_state(&c, "shop", "streaming", Duration::from_secs(60)).await;
    assert_eq!(p["mode"], "copy_and_cdc");
    assert_eq!(p["connection"], "postgresql://postgres@127.0.0.1:5432/test");
    assert!(
        !p.to_string().contains("trust"),
        "no password in listings: {p}"
    );
    let slot = p["slot"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // copy and stream under writes: compared once the writer pauses
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let before = w.await.unwrap();
    converge(&pg, &s, &main, Duration::from_secs(30)).await;
    stop.store(false, std::sync::atomic::Ordering::Relaxed);
    let w = tokio::spawn(writer(s.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(1000)).await;

    // kill -9 mid-stream: the writer keeps writing while trex is down
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let second = serve_with(d, &[]);
    let mut c = Client::new(&format!("http://{}/trex/mcp", second.addr), Some(&key));
    c.initialize().await;
    let p = wait_state(&c, "shop", "streaming", Duration::from_secs(60)).await;
    assert_eq!(p["slot"], slot, "same pipeline, same slot: {p}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let txns = w.await.unwrap();
    assert!(
        before > 50 && txns > 50,
        "the writer committed {before} + {txns} transactions"
    );
    converge(&pg, &s, &main, Duration::from_secs(30)).await;
    let p = pipeline(&c, "shop").await;
    assert!(p["rowsReplicated"].as_u64().unwrap() > 640, "{p}");
    assert_eq!(p["error"], Value::Null, "{p}");
    // the slot is confirmed as the replica commits: the server may recycle WAL
    let confirmed: Option<String> = pg
        .query_one(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap()
        .get(0);
    assert!(confirmed.is_some());

    // the replica is queryable through trexdb, and its bookkeeping is read-only there
    let q = c
        .call_ok(
            "trexdb-execute-sql",
            json!({"sql": format!("SELECT count(*) AS n, typeof(n) AS tn, typeof(b) AS tb, typeof(by) AS tby FROM \"{s}__kinds\" WHERE id = 2")}),
        )
        .await;
    assert_eq!(q["rows"][0], json!([1, "text", "integer", "blob"]), "{q}");
    let e = c
        .call_err(
            "trexdb-execute-sql",
            json!({"sql": "DELETE FROM _trex_etl_checkpoints", "allowWrite": true}),
        )
        .await;
    assert!(
        e.contains("not authorized") || e.contains("authoriz"),
        "{e}"
    );

    // stop keeps the row; changes made while stopped arrive after a start of the same name
    let r = c
        .call_ok("etl-stop-pipeline", json!({"name": "shop"}))
        .await;
    assert_eq!(r["message"], "Pipeline 'shop' stopped");
    assert_eq!(pipeline(&c, "shop").await["state"], "stopped");
    pg.batch_execute(&format!(
        "INSERT INTO {s}.orders (qty, note) VALUES (1, 'while stopped'); DELETE FROM {s}.orders WHERE id = 3;"
    ))
    .await
    .unwrap();
    let r = c
        .call_ok("etl-start-pipeline", json!({"name": "shop"}))
        .await;
    assert!(r["message"].as_str().unwrap().contains("resuming"), "{r}");
    wait_state(&c, "shop", "streaming", Duration::from_secs(30)).await;
    converge(&pg, &s, &main, Duration::from_secs(30)).await;

    // a schema change on the source stops the pipeline in error, saying what changed
    pg.batch_execute(&format!(
        "ALTER TABLE {s}.orders ADD COLUMN extra int DEFAULT 5; INSERT INTO {s}.orders (qty) VALUES (9);"
    ))
    .await
    .unwrap();
    let p = wait_state(&c, "shop", "error", Duration::from_secs(30)).await;
    assert!(
        p["error"]
            .as_str()
            .unwrap()
            .contains("column `extra` added"),
        "{p}"
    );

    // delete drops the slot and, asked to, the replica tables
    let r = c
        .call_ok(
            "etl-delete-pipeline",
            json!({"name": "shop", "dropTables": true}),
        )
        .await;
    assert!(r["message"].as_str().unwrap().contains("slot"), "{r}");
    let left = pg
        .query(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap();
    assert!(left.is_empty(), "the slot is dropped");
    assert_eq!(pipeline(&c, "shop").await, Value::Null);
    let t = rusqlite::Connection::open(&main).unwrap();
    let n: i64 = t
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name LIKE ?1",
            [format!("{s}__%")],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 0, "replica tables dropped");
    let mut second = second;
    second.child.kill().unwrap();
    second.child.wait().unwrap();
    cleanup(&pg, &s).await;
}

/// A throwaway PostgreSQL server with `wal_level = replica`, run as the `postgres` user.
struct ReplicaServer {
    dir: std::path::PathBuf,
    port: u16,
}

impl ReplicaServer {
    fn start() -> Option<ReplicaServer> {
        let bin = std::path::Path::new("/usr/lib/postgresql/15/bin");
        if !bin.join("initdb").exists() {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("trex-pg-{}", trex::util::random_hex(4)));
        std::fs::create_dir_all(&dir).unwrap();
        let as_pg = |args: &[&str]| {
            std::process::Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .args(args)
                .output()
                .unwrap()
        };
        std::process::Command::new("chown")
            .args(["postgres", dir.to_str().unwrap()])
            .status()
            .unwrap();
        let data = dir.join("data");
        let o = as_pg(&[
            bin.join("initdb").to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-A",
            "trust",
            "-U",
            "postgres",
        ]);
        assert!(
            o.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let opts = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c wal_level=replica",
            dir.display()
        );
        let o = as_pg(&[
            bin.join("pg_ctl").to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-o",
            &opts,
            "-w",
            "-l",
            dir.join("log").to_str().unwrap(),
            "start",
        ]);
        assert!(
            o.status.success(),
            "pg_ctl: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Some(ReplicaServer { dir, port })
    }
}

impl Drop for ReplicaServer {
    fn drop(&mut self) {
        let _ = std::process::Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                "/usr/lib/postgresql/15/bin/pg_ctl",
                "-D",
            ])
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_pipeline_errors_are_clear_and_a_quoted_password_works() {
    if !postgres_or_skip("postgres_pipeline_errors").await {
        return;
    }
    let pg = pg_admin().await;
    let s = format!("etl_{}", trex::util::random_hex(4));
    pg.batch_execute(&format!(
        "CREATE SCHEMA {s}; CREATE TABLE {s}.t (id int PRIMARY KEY, v text);
         INSERT INTO {s}.t SELECT g, 'v' || g FROM generate_series(1, 10) g;
         CREATE PUBLICATION {s} FOR TABLE {s}.t;"
    ))
    .await
    .unwrap();
    let srv = TestServer::start().await;
    let mut c = srv.client();
    c.initialize().await;
    c.call_ok(
        "database-create",
        json!({"id": "src", "host": "127.0.0.1", "port": 5432, "databaseName": "test"}),
    )
    .await;
    let start = |name: &str, extra: Value| {
        let mut a =
            json!({"name": name, "databaseId": "src", "mode": "copy_and_cdc", "publication": s});
        a.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        a
    };
    assert_eq!(
        c.call_err("etl-start-pipeline", start("p", json!({})))
            .await,
        "No credentials configured for this database"
    );
    assert!(
        c.call_err(
            "etl-start-pipeline",
            json!({"name": "p", "databaseId": "src", "mode": "cdc_only"})
        )
        .await
        .contains("Publication name is required for CDC modes")
    );
    assert!(
        c.call_err(
            "etl-start-pipeline",
            json!({"name": "p", "databaseId": "nope", "mode": "copy_only"})
        )
        .await
        .contains("Database not found")
    );
    // a role whose password holds ' and \, checked by scram (pg_hba: see .ci/run)
    let password = r#"it's a \back'slash\\ pass"#;
    let exists = !pg
        .query("SELECT 1 FROM pg_roles WHERE rolname = 'trex_pw'", &[])
        .await
        .unwrap()
        .is_empty();
    pg.execute(
        &format!(
            "{} ROLE trex_pw LOGIN REPLICATION PASSWORD {}",
            if exists { "ALTER" } else { "CREATE" },
            tokio_postgres_literal(password)
        ),
        &[],
    )
    .await
    .unwrap();
    pg.batch_execute(&format!(
        "GRANT USAGE ON SCHEMA {s} TO trex_pw; GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO trex_pw;"
    ))
    .await
    .unwrap();
    c.call_ok(
        "database-credential-save",
        json!({"databaseId": "src", "username": "trex_pw", "password": "wrong"}),
    )
    .await;
    let e = c
        .call_err("etl-start-pipeline", start("p", json!({})))
        .await;
    assert!(
        e.contains("password authentication failed"),
        "a wrong password must be refused (pg_hba.conf needs `host all trex_pw 127.0.0.1/32 scram-sha-256`, as .ci/run sets): {e}"
    );
    // saving the same user again replaces the password
    let good = c
        .call_ok(
            "database-credential-save",
            json!({"databaseId": "src", "username": "trex_pw", "password": password}),
        )
        .await["credential"]
        .clone();
    c.call_ok(
        "database-credential-save",
        json!({"databaseId": "src", "username": "postgres", "password": "x"}),
    )
    .await;
    let e = c
        .call_err("etl-start-pipeline", start("p", json!({})))
        .await;
    assert!(
        e.contains("`credentialId` is required") && e.contains("2 credentials"),
        "{e}"
    );
    let e = c
        .call_err(
            "etl-start-pipeline",
            start(
                "p",
                json!({"publication": "nope", "credentialId": good["id"]}),
            ),
        )
        .await;
    assert!(e.contains("publication 'nope' does not exist"), "{e}");
    assert!(
        c.call_err(
            "etl-start-pipeline",
            start(
                "p",
                json!({"credentialId": good["id"], "tables": ["missing"]})
            )
        )
        .await
        .contains("table 'missing' is not in publication")
    );
    assert_eq!(
        c.call_ok("etl-list-pipelines", json!({})).await["pipelines"],
        json!([]),
        "a refused start leaves nothing behind"
    );
    c.call_ok(
        "etl-start-pipeline",
        start(
            "p",
            json!({"credentialId": good["id"], "retryDelayMs": 200, "retryMaxAttempts": 2}),
        ),
    )
    .await;
    let p = wait_state(&c, "p", "streaming", Duration::from_secs(30)).await;
    assert_eq!(p["connection"], "postgresql://trex_pw@127.0.0.1:5432/test");
    pg.batch_execute(&format!("UPDATE {s}.t SET v = 'changed' WHERE id = 3"))
        .await
        .unwrap();
    let main = srv.data_dir().join("data").join("main.db");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = replica_rows(&main, &format!("{s}__t"), &[]);
        if rows.len() == 10 && rows.iter().any(|r| r[1] == json!("changed")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the update never arrived: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // a dropped connection: the pipeline reconnects and goes on
    let slot = p["slot"].as_str().unwrap().to_string();
    let kill_walsender = || async {
        pg.execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active",
            &[&slot],
        )
        .await
        .unwrap()
    };
    assert_eq!(kill_walsender().await, 1);
    pg.batch_execute(&format!(
        "UPDATE {s}.t SET v = 'after reconnect' WHERE id = 4"
    ))
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = replica_rows(&main, &format!("{s}__t"), &[]);
        if rows.iter().any(|r| r[1] == json!("after reconnect")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no change after the reconnect: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // a source that stays unreachable: retries, then `error` with the reason
    pg.batch_execute("ALTER ROLE trex_pw CONNECTION LIMIT 0")
        .await
        .unwrap();
    wait_state(&c, "p", "streaming", Duration::from_secs(10)).await;
    assert_eq!(kill_walsender().await, 1);
    let p = wait_state(&c, "p", "error", Duration::from_secs(20)).await;
    pg.batch_execute("ALTER ROLE trex_pw CONNECTION LIMIT -1")
        .await
        .unwrap();
    let e = p["error"].as_str().unwrap();
    assert!(
        e.contains("too many connections") && e.contains("gave up after 2 retries"),
        "{p}"
    );
    c.call_ok(
        "etl-delete-pipeline",
        json!({"name": "p", "dropTables": true}),
    )
    .await;

    // copy_only from a schema
    c.call_ok(
        "etl-start-pipeline",
        json!({"name": "once", "databaseId": "src", "mode": "copy_only", "schema": s, "credentialId": good["id"]}),
    )
    .await;
    let p = wait_state(&c, "once", "stopped", Duration::from_secs(30)).await;
    assert_eq!(p["rowsReplicated"], 10, "{p}");
    assert_eq!(replica_rows(&main, &format!("{s}__t"), &[]).len(), 10);
    c.call_ok(
        "etl-delete-pipeline",
        json!({"name": "once", "dropTables": true}),
    )
    .await;

    // a server without logical decoding
    {
        let replica = ReplicaServer::start().expect(
            "this test starts a PostgreSQL 15 server of its own (/usr/lib/postgresql/15/bin/initdb)",
        );
        c.call_ok(
            "database-create",
            json!({"id": "plain", "host": "127.0.0.1", "port": replica.port, "databaseName": "postgres"}),
        )
        .await;
        c.call_ok(
            "database-credential-save",
            json!({"databaseId": "plain", "username": "postgres", "password": "x"}),
        )
        .await;
        let e = c
            .call_err(
                "etl-start-pipeline",
                json!({"name": "plain", "databaseId": "plain", "mode": "cdc_only", "publication": "any"}),
            )
            .await;
        assert!(
            e.contains("wal_level = replica") && e.contains("wal_level = logical"),
            "{e}"
        );
    }
    cleanup(&pg, &s).await;
}

/// Rows of the replica table `t` (0 while it does not exist yet).
pub(crate) fn replica_count(main: &std::path::Path, t: &str) -> i64 {
    rusqlite::Connection::open(main)
        .and_then(|c| c.query_row(&format!("SELECT count(*) FROM \"{t}\""), [], |r| r.get(0)))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_whole_transactions_only_and_a_renamed_table_stops_it() {
    if !postgres_or_skip("postgres_whole_transactions").await {
        return;
    }
    let pg = pg_admin().await;
    let s = format!("etl_{}", trex::util::random_hex(4));
    pg.batch_execute(&format!(
        "CREATE SCHEMA {s}; CREATE TABLE {s}.big (id int PRIMARY KEY, v text);
         CREATE TABLE {s}.r (id int PRIMARY KEY);
         CREATE PUBLICATION {s} FOR TABLE {s}.big, {s}.r;"
    ))
    .await
    .unwrap();
    let srv = TestServer::start().await;
    let mut c = srv.client();
    c.initialize().await;
    c.call_ok(
        "database-create",
        json!({"id": "src", "host": "127.0.0.1", "port": 5432, "databaseName": "test"}),
    )
    .await;
    c.call_ok(
        "database-credential-save",
        json!({"databaseId": "src", "username": "postgres", "password": "unused-with-trust"}),
    )
    .await;
    c.call_ok(
        "etl-start-pipeline",
        json!({"name": "w", "databaseId": "src", "mode": "copy_and_cdc", "publication": s,
               "retryDelayMs": 200, "retryMaxAttempts": 5}),
    )
    .await;
    let p = wait_state(&c, "w", "streaming", Duration::from_secs(30)).await;
    let slot = p["slot"].as_str().unwrap().to_string();
    let main = srv.data_dir().join("data").join("main.db");
    let big = format!("{s}__big");
    // a large source transaction is cut off part-way twice: by a dropped connection, and by a
    // stop; each time the replica keeps none of it, and takes it whole when it comes again
    let mut want = 0;
    for cut in ["dropped connection", "stop"] {
        let from = want + 1;
        want += 200_000;
        pg.batch_execute(&format!(
            "INSERT INTO {s}.big SELECT g, 'v' || g FROM generate_series({from}, {want}) g"
        ))
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        if cut == "stop" {
            c.call_ok("etl-stop-pipeline", json!({"name": "w"})).await;
            let n = replica_count(&main, &big);
            assert!(
                n == want - 200_000 || n == want,
                "a stop left part of a source transaction: {n} rows"
            );
            c.call_ok("etl-start-pipeline", json!({"name": "w"})).await;
        } else {
            pg.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active",
                &[&slot],
            )
            .await
            .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while replica_count(&main, &big) != want {
            let p = pipeline(&c, "w").await;
            assert_ne!(p["state"], "error", "after a {cut}: {p}");
            assert!(Instant::now() < deadline, "after a {cut}: {p}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let p = wait_state(&c, "w", "streaming", Duration::from_secs(30)).await;
        assert_eq!(p["error"], Value::Null, "after a {cut}: {p}");
    }
    // a renamed source table is not silently dropped from the stream
    pg.batch_execute(&format!(
        "ALTER TABLE {s}.r RENAME TO r2; INSERT INTO {s}.r2 VALUES (1);"
    ))
    .await
    .unwrap();
    let p = wait_state(&c, "w", "error", Duration::from_secs(30)).await;
    let e = p["error"].as_str().unwrap();
    assert!(e.contains(&format!("{s}.r was renamed to {s}.r2")), "{p}");
    c.call_ok(
        "etl-delete-pipeline",
        json!({"name": "w", "dropTables": true}),
    )
    .await;
    cleanup(&pg, &s).await;
}

/// `'…'` with quotes doubled (a test-only literal for CREATE ROLE … PASSWORD, which takes no
/// parameters).
fn tokio_postgres_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_source_with_change_capture_triggers() {
    let srv = TestServer::start().await;
    let mut c = srv.client();
    c.initialize().await;
    let dbs = srv.data_dir().join("databases");
    std::fs::create_dir_all(&dbs).unwrap();
    let file = dbs.join("shop.db");
    let src = rusqlite::Connection::open(&file).unwrap();
    src.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL, data BLOB);
         CREATE TABLE notes (body TEXT);
         WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 300)
         INSERT INTO items (name, price, data) SELECT 'item ' || n, n * 0.5, randomblob(8) FROM s;
         INSERT INTO notes VALUES ('a'), ('b'), (NULL);",
    )
    .unwrap();
    c.call_ok(
        "database-create",
        json!({"id": "shop", "dialect": "sqlite", "databaseName": "shop.db"}),
    )
    .await;
    c.call_ok(
        "etl-start-pipeline",
        json!({"name": "lite", "databaseId": "shop", "mode": "copy_and_cdc", "batchSize": 50}),
    )
    .await;
    let p = wait_state(&c, "lite", "streaming", Duration::from_secs(30)).await;
    assert_eq!(p["connection"], "sqlite:shop.db");
    for i in 0..200 {
        src.execute_batch(&format!(
            "INSERT INTO items (name, price) VALUES ('new {i}', {i});
             UPDATE items SET price = price + 1 WHERE id = {};
             DELETE FROM items WHERE id = {};
             UPDATE items SET id = 100000 + id WHERE id = {};
             INSERT INTO notes VALUES ('n{i}'); DELETE FROM notes WHERE rowid = {};",
            i + 1,
            i * 3 + 2,
            i * 5 + 4,
            i + 1
        ))
        .unwrap();
    }
    let main = srv.data_dir().join("data").join("main.db");
    let dump = |c: &rusqlite::Connection, t: &str| -> Vec<Vec<String>> {
        let mut st = c
            .prepare(&format!("SELECT rowid, * FROM {t} ORDER BY rowid"))
            .unwrap();
        let n = st.column_count();
        st.query_map([], |r| {
            Ok((0..n)
                .map(|i| format!("{:?}", r.get::<_, Sql>(i).unwrap()))
                .collect())
        })
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = rusqlite::Connection::open(&main).unwrap();
        let same = dump(&src, "items") == dump(&t, "shop__items")
            && dump(&src, "notes") == dump(&t, "shop__notes");
        if same {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the SQLite replica never matched"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let triggers: i64 = src
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' AND name LIKE '\\_trex\\_%' ESCAPE '\\'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(triggers, 6, "three triggers per table");
    // consumed changes leave the source's change table
    let left: i64 = src
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name LIKE '\\_trex\\_changes\\_%' ESCAPE '\\'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 1);

    // stop, change, start: resumes from the change-table position
    c.call_ok("etl-stop-pipeline", json!({"name": "lite"}))
        .await;
    src.execute_batch("INSERT INTO items (name) VALUES ('while stopped')")
        .unwrap();
    c.call_ok("etl-start-pipeline", json!({"name": "lite"}))
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = rusqlite::Connection::open(&main).unwrap();
        if dump(&src, "items") == dump(&t, "shop__items") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the change made while stopped never arrived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        c.call_err("database-delete", json!({"id": "shop"}))
            .await
            .contains("read by pipeline(s) lite")
    );
    c.call_ok("etl-delete-pipeline", json!({"name": "lite"}))
        .await;
    let objects: i64 = src
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name LIKE '\\_trex\\_%' ESCAPE '\\'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        objects, 0,
        "triggers and change table removed from the source"
    );
    let t = rusqlite::Connection::open(&main).unwrap();
    assert_eq!(
        dump(&t, "shop__items").len(),
        dump(&src, "items").len(),
        "tables kept without dropTables"
    );
}
