//! Versioned migrations through `migration-list` / `migration-run` and `trex migrate`: files and
//! ledgers of trexdb, a registered SQLite database and a real PostgreSQL database; ignored
//! files, duplicates, checksum mismatches, missing files, failed files rolled back whole, two
//! runs at once applying each file once, and a status that writes nothing.

use std::path::Path;

use serde_json::{Value, json};

use crate::common::{Client, TestServer};

async fn ready() -> (TestServer, Client) {
    let s = TestServer::start().await;
    let mut c = s.client();
    c.initialize().await;
    (s, c)
}

fn write(dir: &Path, name: &str, sql: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), sql).unwrap();
}

/// The one target of a `migration-list` or `migration-run` result.
fn only(v: &Value) -> &Value {
    let t = v["targets"].as_array().unwrap();
    assert_eq!(t.len(), 1, "{v}");
    &t[0]
}

fn statuses(t: &Value) -> Vec<(i64, String)> {
    t["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["version"].as_i64().unwrap(),
                m["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn tables(db: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap();
    st.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn trexdb_files_are_listed_without_writing_then_applied_once_in_order() {
    let (s, c) = ready().await;
    let dir = s.data_dir().join("migrations/trexdb");
    write(
        &dir,
        "V1__create_items.sql",
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT);",
    );
    write(
        &dir,
        "V2__seed.sql",
        "INSERT INTO items (name) VALUES ('a'), ('b');",
    );
    write(&dir, "001_old_style.sql", "SELECT 1;");
    write(&dir, "notes.txt", "not a migration");
    let main = s.data_dir().join("data/main.db");

    let l = c
        .call_ok("migration-list", json!({"target": "trexdb"}))
        .await;
    let t = only(&l);
    assert_eq!(statuses(t), [(1, "pending".into()), (2, "pending".into())]);
    assert_eq!(t["pendingCount"], 2);
    let ignored: Vec<&str> = t["ignored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["file"].as_str().unwrap())
        .collect();
    assert_eq!(ignored, ["001_old_style.sql", "notes.txt"]);
    assert!(
        t["ignored"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("V<version>__"),
        "{t}"
    );
    // listing, and a dry run, write nothing anywhere
    let d = c
        .call_ok("migration-run", json!({"target": "trexdb", "dryRun": true}))
        .await;
    let results = &only(&d)["results"];
    assert_eq!(results[0]["status"], "would_apply");
    assert_eq!(results.as_array().unwrap().len(), 2);
    assert!(
        !tables(&main).iter().any(|t| t == "trex_schema_history"),
        "{:?}",
        tables(&main)
    );

    // trexsql's name for the target is accepted
    let r = c
        .call_ok("migration-run", json!({"pluginName": "trexdb"}))
        .await;
    let got: Vec<(i64, &str)> = only(&r)["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["version"].as_i64().unwrap(),
                o["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, [(1, "applied"), (2, "applied")]);
    let rows: i64 = rusqlite::Connection::open(&main)
        .unwrap()
        .query_row("SELECT count(*) FROM items", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 2);
    let again = c
        .call_ok("migration-run", json!({"target": "trexdb"}))
        .await;
    assert_eq!(only(&again)["note"], "No pending migrations");
    let l = c
        .call_ok("migration-list", json!({"target": "trexdb"}))
        .await;
    let t = only(&l);
    assert_eq!(statuses(t), [(1, "applied".into()), (2, "applied".into())]);
    assert!(
        t["migrations"][0]["appliedBy"]
            .as_str()
            .unwrap()
            .contains(&s.admin_id)
    );

    // the trexdb tools see the migrated table
    let q = c
        .call_ok(
            "trexdb-execute-sql",
            json!({"sql": "SELECT count(*) AS n FROM items"}),
        )
        .await;
    assert!(q.to_string().contains('2'), "{q}");

    // core: the control store's schema steps, all applied, nothing to run
    let core = c.call_ok("migration-list", json!({"target": "core"})).await;
    let core = only(&core);
    assert!(
        statuses(core).iter().all(|(_, st)| st == "applied"),
        "{core}"
    );
    // every step of the store's schema file: schema.sql's from 1, schema.pg.sql's from 12
    let first = if crate::common::pg_store() { 12 } else { 1 };
    assert_eq!(
        core["appliedCount"].as_u64().unwrap(),
        (trex::store::schema::current_version() - first + 1) as u64,
        "{core}"
    );
    // an unknown target is an error that names it and the targets there are
    let e = c.call_err("migration-run", json!({"target": "nope"})).await;
    assert!(e.contains("'nope'") && e.contains("trexdb"), "{e}");
    let e = c
        .call_err("migration-list", json!({"target": "nope"}))
        .await;
    assert!(e.contains("'nope'"), "{e}");
    // and the run is in the audit log
    let a = c
        .call_ok("audit-list", json!({"tool": "migration-run"}))
        .await;
    assert!(a["entries"].as_array().unwrap().len() >= 4, "{a}");
}

#[tokio::test]
async fn mismatches_missing_files_failures_and_duplicates_are_reported_not_skipped() {
    let (s, c) = ready().await;
    let dir = s.data_dir().join("migrations/trexdb");
    write(&dir, "V1__a.sql", "CREATE TABLE a (x);");
    write(&dir, "V2__b.sql", "CREATE TABLE b (x);");
    c.call_ok("migration-run", json!({"target": "trexdb", "toVersion": 1}))
        .await;
    let l = c
        .call_ok("migration-list", json!({"target": "trexdb"}))
        .await;
    assert_eq!(
        statuses(only(&l)),
        [(1, "applied".into()), (2, "pending".into())]
    );

    // an applied file changed: listed, and it stops the run before anything runs
    write(&dir, "V1__a.sql", "CREATE TABLE a (x, y);");
    let l = c
        .call_ok("migration-list", json!({"target": "trexdb"}))
        .await;
    let m = &only(&l)["migrations"][0];
    assert_eq!(m["status"], "checksum_mismatch");
    assert_ne!(m["checksum"], m["ledgerChecksum"]);
    let e = c
        .call_err("migration-run", json!({"target": "trexdb"}))
        .await;
    assert!(
        e.contains("V1__a.sql")
            && e.contains(m["checksum"].as_str().unwrap())
            && e.contains(m["ledgerChecksum"].as_str().unwrap()),
        "{e}"
    );
    let main = s.data_dir().join("data/main.db");
    assert!(!tables(&main).contains(&"b".to_string()));
    write(&dir, "V1__a.sql", "CREATE TABLE a (x);");

    // a failing file leaves nothing of itself behind, is recorded as failed, and runs again
    write(
        &dir,
        "V3__c.sql",
        "CREATE TABLE c (x); INSERT INTO no_such_table VALUES (1);",
    );
    let e = c
        .call_err("migration-run", json!({"target": "trexdb"}))
        .await;
    assert!(
        e.contains("V3__c.sql") && e.contains("no_such_table"),
        "{e}"
    );
    assert!(
        e.contains("trexdb V2"),
        "names what was applied before it: {e}"
    );
    let t = tables(&main);
    assert!(
        t.contains(&"b".to_string()) && !t.contains(&"c".to_string()),
        "{t:?}"
    );
    let l = c
        .call_ok("migration-list", json!({"target": "trexdb"}))
        .await;
    assert_eq!(statuses(only(&l))[2], (3, "failed".into()));
    write(&dir, "V3__c.sql", "CREATE TABLE c (x);");
    c.call_ok("migration-run", json!({"target": "trexdb"}))
        .await;
    assert!(tables(&main).contains(&"c".to_string()));

    // a file that was applied and is gone
    std::fs::remove_file(dir.join("V2__b.sql")).unwrap();
    let l = c
        .call_ok("migration-list", json!({"target": "trexdb"}))
        .await;
    assert_eq!(statuses(only(&l))[1], (2, "missing_file".into()));

    // a file that manages its own transaction is refused before anything runs
    write(
        &dir,
        "V4__own_tx.sql",
        "BEGIN; CREATE TABLE own (x); COMMIT;",
    );
    let e = c
        .call_err("migration-run", json!({"target": "trexdb"}))
        .await;
    assert!(e.contains("V4__own_tx.sql") && e.contains("BEGIN"), "{e}");
    assert!(!tables(&main).contains(&"own".to_string()));
    std::fs::remove_file(dir.join("V4__own_tx.sql")).unwrap();

    // two files with one version: an error naming both
    write(&dir, "V3__again.sql", "SELECT 1;");
    let l = c
        .call_ok("migration-list", json!({"target": "trexdb"}))
        .await;
    let err = only(&l)["error"].as_str().unwrap().to_string();
    assert!(
        err.contains("V3__again.sql") && err.contains("V3__c.sql"),
        "{err}"
    );
    let e = c
        .call_err("migration-run", json!({"target": "trexdb"}))
        .await;
    assert!(
        e.contains("V3__again.sql") && e.contains("V3__c.sql"),
        "{e}"
    );
    // bad input names the field
    let e = c
        .call_err("migration-run", json!({"target": "trexdb", "toVersion": 0}))
        .await;
    assert!(e.contains("`toVersion`"), "{e}");
    let e = c
        .call_err(
            "migration-run",
            json!({"target": "trexdb", "pluginName": "core"}),
        )
        .await;
    assert!(e.contains("`pluginName`"), "{e}");
}

#[tokio::test]
async fn a_registered_sqlite_database_migrates_from_its_confined_directory() {
    let (s, c) = ready().await;
    for (dir, why) in [
        ("../outside", "`migrationsDir` must not contain `..`"),
        ("/etc", "`migrationsDir` is outside the allowed directories"),
    ] {
        let e = c
            .call_err(
                "database-create",
                json!({"id": "app", "dialect": "sqlite", "databaseName": "app.db", "migrationsDir": dir}),
            )
            .await;
        assert!(e.contains(why), "{e}");
    }
    c.call_ok(
        "database-create",
        json!({"id": "app", "dialect": "sqlite", "databaseName": "app.db", "migrationsDir": "app"}),
    )
    .await;
    // a registered database without migrationsDir is no target, and says how to make it one
    c.call_ok(
        "database-create",
        json!({"id": "plain", "dialect": "sqlite", "databaseName": "plain.db"}),
    )
    .await;
    let e = c
        .call_err("migration-list", json!({"target": "plain"}))
        .await;
    assert!(e.contains("migrationsDir"), "{e}");
    let dir = s.data_dir().join("migrations/app");
    write(
        &dir,
        "V1__users.sql",
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT);",
    );
    let all = c.call_ok("migration-list", json!({})).await;
    let names: Vec<&str> = all["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["target"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["core", "trexdb", "app"]);
    // omitted target = every target
    let r = c.call_ok("migration-run", json!({})).await;
    assert_eq!(r["targets"][2]["results"][0]["status"], "applied");
    let db = s.data_dir().join("databases/app.db");
    assert!(tables(&db).contains(&"users".to_string()));

    // two runs at once on one target apply the file once
    write(
        &dir,
        "V2__fill.sql",
        "CREATE TABLE big (n); WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 300000) INSERT INTO big SELECT n FROM s;",
    );
    let c2 = {
        let mut c2 = s.client();
        c2.initialize().await;
        c2
    };
    let (r1, r2) = tokio::join!(
        c.call("migration-run", json!({"target": "app"})),
        c2.call("migration-run", json!({"target": "app"}))
    );
    let mut statuses_seen = Vec::new();
    for r in [&r1, &r2] {
        assert_eq!(r["isError"], false, "{r}");
        let t = &r["structuredContent"]["targets"][0];
        for o in t["results"].as_array().unwrap() {
            statuses_seen.push(o["status"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(
        statuses_seen.iter().filter(|s| *s == "applied").count(),
        1,
        "{statuses_seen:?}"
    );
    let n: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT count(*) FROM big", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 300_000);
    let ledger: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM trex_schema_history WHERE version = 2",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(ledger, 1);

    // a key limited to other databases sees no such target
    let k = c
        .call_ok(
            "api-key-create",
            json!({"userId": s.admin_id, "name": "only-plain", "scopes": {"endpoints": ["plain"]}}),
        )
        .await;
    let mut limited = Client::new(&s.url(), Some(k["key"].as_str().unwrap()));
    limited.initialize().await;
    let l = limited.call_ok("migration-list", json!({})).await;
    assert_eq!(l["targets"].as_array().unwrap().len(), 2, "{l}");
    let e = limited
        .call_err("migration-run", json!({"target": "app"}))
        .await;
    assert!(e.contains("app"), "{e}");
}

#[test]
fn the_cli_shows_status_and_runs_with_exit_status_1_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let trex = |args: &[&str]| {
        crate::common::trex_command(args)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    assert!(
        trex(&["init", "--data-dir", d, "--admin-email", "root@example.com"])
            .status
            .success()
    );
    let mig = dir.path().join("migrations/trexdb");
    write(&mig, "V1__t.sql", "CREATE TABLE t (x);");
    write(
        &mig,
        "V2__bad.sql",
        "CREATE TABLE u (x); SELECT * FROM nowhere;",
    );
    let o = trex(&["migrate", "status", "--data-dir", d, "--target", "trexdb"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("V1") && out.contains("pending"), "{out}");
    let o = trex(&["migrate", "run", "--data-dir", d, "--dry-run"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("would_apply"));
    let o = trex(&["migrate", "run", "--data-dir", d]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("V2__bad.sql") && err.contains("nowhere"),
        "{err}"
    );
    let o = trex(&["migrate", "status", "--data-dir", d, "--target", "trexdb"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("applied") && out.contains("failed"), "{out}");
}

#[tokio::test]
async fn postgres_targets_migrate_atomically_under_an_advisory_lock() {
    if !crate::common::postgres_or_skip(
        "postgres_targets_migrate_atomically_under_an_advisory_lock",
    )
    .await
    {
        return;
    }
    let name = format!("trex_mig_{}", trex::util::random_hex(4));
    let admin = crate::databases::pg_admin().await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let (s, c) = ready().await;
    c.call_ok(
        "database-create",
        json!({"id": "pgm", "host": "127.0.0.1", "port": 5432, "databaseName": name, "migrationsDir": "pgm"}),
    )
    .await;
    c.call_ok(
        "database-credential-save",
        json!({"databaseId": "pgm", "username": "postgres", "password": "unused-under-trust"}),
    )
    .await;
    let dir = s.data_dir().join("migrations/pgm");
    write(
        &dir,
        "V1__items.sql",
        "CREATE TABLE items (id serial PRIMARY KEY, name text);",
    );
    // the second statement fails: trexsql would have kept the first
    write(
        &dir,
        "V2__half.sql",
        "CREATE TABLE half (x int); SELECT 1 / 0;",
    );
    let l = c.call_ok("migration-list", json!({"target": "pgm"})).await;
    assert_eq!(
        statuses(only(&l)),
        [(1, "pending".into()), (2, "pending".into())]
    );
    let (pg, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port=5432 user=postgres dbname={name}"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let exists = |t: &'static str| {
        let pg = &pg;
        async move {
            pg.query_one("SELECT to_regclass($1) IS NOT NULL", &[&t])
                .await
                .unwrap()
                .get::<_, bool>(0)
        }
    };
    assert!(
        !exists("trex_schema_history").await,
        "the list wrote a ledger"
    );
    let e = c.call_err("migration-run", json!({"target": "pgm"})).await;
    assert!(
        e.contains("V2__half.sql") && e.contains("division by zero"),
        "{e}"
    );
    assert!(exists("items").await);
    assert!(!exists("half").await, "a failed file left a table behind");
    let l = c.call_ok("migration-list", json!({"target": "pgm"})).await;
    assert_eq!(
        statuses(only(&l)),
        [(1, "applied".into()), (2, "failed".into())]
    );

    // a second run waits on the advisory lock held by another session, then applies once
    write(&dir, "V2__half.sql", "CREATE TABLE half (x int);");
    let (locker, lconn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port=5432 user=postgres dbname={name}"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(lconn);
    locker
        .batch_execute(
            "BEGIN; SELECT pg_advisory_xact_lock(hashtext('trex_schema_history'), hashtext(current_database()));",
        )
        .await
        .unwrap();
    let c2 = {
        let mut c2 = s.client();
        c2.initialize().await;
        c2
    };
    let runs = tokio::spawn(async move {
        let (a, b) = tokio::join!(
            c.call("migration-run", json!({"target": "pgm"})),
            c2.call("migration-run", json!({"target": "pgm"}))
        );
        (a, b)
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!exists("half").await, "a run went past the lock");
    locker.batch_execute("COMMIT").await.unwrap();
    let (a, b) = runs.await.unwrap();
    let applied = [a, b]
        .iter()
        .flat_map(|r| {
            r["structuredContent"]["targets"][0]["results"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|o| o["status"] == "applied")
        .count();
    assert_eq!(applied, 1);
    assert!(exists("half").await);
    let n: i64 = pg
        .query_one(
            "SELECT count(*) FROM trex_schema_history WHERE success",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    drop(pg);
    drop(locker);
    drop(s);
    let _ = admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await;
}
