//! The migrations MCP server (`/api/v1/mcp/migrations`): definitions checked at define time,
//! versions, test on scratch copies, migrate bound to what was tested, rollback_all over several
//! SQLite targets, time windows, blue-green swaps under a reader, runs that do not wait, and a
//! PostgreSQL target put back by `down`.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::common::{Client, TestServer};

struct Setup {
    s: TestServer,
    admin: Client,
    mig: Client,
}

async fn setup(dbs: &[&str]) -> Setup {
    let s = TestServer::start().await;
    let mut admin = s.client();
    admin.initialize().await;
    for d in dbs {
        let path = s.data_dir().join(format!("databases/{d}.db"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);
             INSERT INTO users (email) VALUES ('a@x'), ('b@x'), ('c@x');",
        )
        .unwrap();
        admin
            .call_ok(
                "database-create",
                json!({"id": d, "dialect": "sqlite", "databaseName": format!("{d}.db")}),
            )
            .await;
    }
    let mut mig = Client::new(&format!("{}/api/v1/mcp/migrations", s.base()), Some(&s.key));
    mig.initialize().await;
    Setup { s, admin, mig }
}

fn db(s: &TestServer, d: &str) -> PathBuf {
    s.data_dir().join(format!("databases/{d}.db"))
}

/// Every schema entry and every row of a database, as text: what "as before" compares.
fn dump(p: &Path) -> String {
    let c = rusqlite::Connection::open(p).unwrap();
    let mut out = String::new();
    let schema: Vec<(String, String)> = c
        .prepare("SELECT name, coalesce(sql, '') FROM sqlite_schema ORDER BY name")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (name, sql) in &schema {
        out.push_str(&format!("{name}: {sql}\n"));
    }
    for (name, _) in schema.iter().filter(|(_, s)| s.starts_with("CREATE TABLE")) {
        let mut st = c
            .prepare(&format!("SELECT * FROM \"{name}\" ORDER BY 1"))
            .unwrap();
        let n = st.column_count();
        let rows: Vec<String> = st
            .query_map([], |r| {
                Ok((0..n)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join("|"))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        out.push_str(&format!("{name} rows: {}\n", rows.join("; ")));
    }
    out
}

fn interlays(dbs: &[&str]) -> Value {
    json!(
        dbs.iter()
            .map(|d| json!({"endpoint": d}))
            .collect::<Vec<_>>()
    )
}

async fn run(c: &Client, id: &str, mode: &str) -> Value {
    let r = c
        .call("run_migration", json!({"migration_id": id, "mode": mode}))
        .await;
    assert_eq!(r["isError"], false, "{r}");
    r["structuredContent"].clone()
}

#[tokio::test]
async fn definitions_are_checked_at_define_time_and_versioned() {
    let t = setup(&["a"]).await;
    let m = &t.mig;
    let bad = |args: Value, field: &'static str| {
        let m = m.clone();
        async move {
            let e = m.call_err("define_migration", args).await;
            assert!(e.contains(field), "{field}: {e}");
        }
    };
    bad(
        json!({"id": "x", "interlays": [{"endpoint": "nope"}], "data": {"type": "sql", "up": "SELECT 1"}}),
        "`interlays[0].endpoint`",
    )
    .await;
    bad(
        json!({"id": "x", "interlays": interlays(&["a"]), "data": {"type": "sql", "up": "ALTER TABLE nosuch ADD COLUMN y"}}),
        "`data.up`",
    )
    .await;
    bad(
        json!({"id": "x", "interlays": interlays(&["a"]), "data": {"type": "sql", "up": "CREAT TABLE t (x)"}}),
        "`data.up`",
    )
    .await;
    bad(
        json!({"id": "x", "interlays": interlays(&["a"]), "strategy": {"type": "warp_speed"}}),
        "`strategy.type`",
    )
    .await;
    bad(
        json!({"id": "x", "interlays": interlays(&["a"]), "strategy": {"type": "canary", "canary_targets": ["b"]}}),
        "`strategy.canary_targets`",
    )
    .await;
    bad(
        json!({"id": "x", "interlays": interlays(&["a"]), "failure_handling": "shrug"}),
        "`failure_handling`",
    )
    .await;
    bad(json!({"id": "x"}), "`interlays`").await;
    // the runner owns the transaction: a change that commits halfway is refused
    bad(
        json!({"id": "x", "interlays": interlays(&["a"]), "data": {"type": "sql", "up": "BEGIN; ALTER TABLE users ADD COLUMN q TEXT; COMMIT;"}}),
        "`data.up` contains BEGIN",
    )
    .await;
    bad(
        json!({"id": "bad id!", "interlays": interlays(&["a"])}),
        "`id`",
    )
    .await;
    bad(
        json!({"id": "x", "interlays": interlays(&["a"]), "data": {"type": "snapshot", "source": "a"}}),
        "`data.source`",
    )
    .await;

    let def = json!({"id": "add-nick", "description": "nicknames", "interlays": interlays(&["a"]),
        "data": {"type": "sql", "up": "ALTER TABLE users ADD COLUMN nickname TEXT"}});
    let v1 = m.call_ok("define_migration", def.clone()).await;
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["status"], "pending");
    assert_eq!(v1["strategy"]["type"], "big_bang");
    // the same content again is the same definition
    assert_eq!(
        m.call_ok("define_migration", def.clone()).await["version"],
        1
    );
    // other content is refused without replace, and versioned with it
    let mut other = def.clone();
    other["data"]["up"] = json!("ALTER TABLE users ADD COLUMN nick TEXT");
    let e = m.call_err("define_migration", other.clone()).await;
    assert!(
        e.contains("already exists") && e.contains("replace: true"),
        "{e}"
    );
    other["replace"] = json!(true);
    assert_eq!(m.call_ok("define_migration", other).await["version"], 2);
    let g = m
        .call_ok(
            "get_migration",
            json!({"migration_id": "add-nick", "verbose": true}),
        )
        .await;
    assert_eq!(g["versions"].as_array().unwrap().len(), 2);
    let l = m
        .call_ok("list_migrations", json!({"status": "pending"}))
        .await;
    assert_eq!(l["migrations"][0]["id"], "add-nick");
    assert!(
        m.call_err("list_migrations", json!({"status": "bogus"}))
            .await
            .contains("`status`")
    );
    assert!(
        m.call_err("list_migrations", json!({"updated_since": "yesterday"}))
            .await
            .contains("`updated_since`")
    );
    let e = m
        .call_err("get_migration", json!({"migration_id": "nope"}))
        .await;
    assert!(e.contains("not found"), "{e}");
    // Eden's other strategies are accepted, and refused at run time
    m.call_ok(
        "define_migration",
        json!({"id": "ff", "interlays": interlays(&["a"]), "strategy": {"type": "feature_flag", "flags": {"x": true}}}),
    )
    .await;
    let e = m
        .call_err(
            "run_migration",
            json!({"migration_id": "ff", "mode": "test"}),
        )
        .await;
    assert!(
        e.contains("feature_flag") && e.contains("not supported"),
        "{e}"
    );
    // the admin server's audit log has the definitions
    let a = t
        .admin
        .call_ok(
            "audit-list",
            json!({"tool": "define_migration", "limit": 100}),
        )
        .await;
    assert!(a["entries"].as_array().unwrap().len() >= 12, "{a}");
}

#[tokio::test]
async fn test_then_migrate_and_rollback_all_puts_three_targets_back() {
    let t = setup(&["a", "b", "c"]).await;
    let m = &t.mig;
    let before: Vec<String> = ["a", "b", "c"].iter().map(|d| dump(&db(&t.s, d))).collect();
    m.call_ok(
        "define_migration",
        json!({"id": "uniq", "interlays": interlays(&["a", "b", "c"]),
            "data": {"type": "sql", "up": "ALTER TABLE users ADD COLUMN nick TEXT; UPDATE users SET nick = 'n' || id; CREATE UNIQUE INDEX users_email ON users (email);"},
            "apis": [{"id": "by-email", "query": "SELECT id, nick FROM users WHERE email = ?1", "parameters": ["a@x"]}]}),
    )
    .await;
    // migrate before a test is refused
    let e = m
        .call_err(
            "run_migration",
            json!({"migration_id": "uniq", "mode": "migrate"}),
        )
        .await;
    assert!(e.contains("has not passed a test"), "{e}");
    let r = run(m, "uniq", "test").await;
    assert_eq!(r["state"], "completed", "{r}");
    let rep = &r["targets"][0]["report"];
    assert_eq!(rep["statements"], 3, "{rep}");
    assert_eq!(rep["rowsAffected"], 3, "{rep}");
    assert_eq!(rep["diff"]["columns"]["users"]["added"][0], "nick TEXT");
    assert_eq!(rep["diff"]["indexesAdded"][0], "users_email");
    assert_eq!(rep["apis"][0]["ok"], true);
    // the test changed nothing, and left no scratch copy
    let now: Vec<String> = ["a", "b", "c"].iter().map(|d| dump(&db(&t.s, d))).collect();
    assert_eq!(before, now);
    assert!(
        std::fs::read_dir(t.s.data_dir().join("scratch"))
            .map(|d| d.flatten().next().is_none())
            .unwrap_or(true)
    );
    let g = m
        .call_ok("get_migration", json!({"migration_id": "uniq"}))
        .await;
    assert_eq!(g["status"], "ready");

    // data (not schema) changes after the test: the third target now fails the unique index
    rusqlite::Connection::open(db(&t.s, "c"))
        .unwrap()
        .execute("INSERT INTO users (email) VALUES ('a@x')", [])
        .unwrap();
    let before_c = dump(&db(&t.s, "c"));
    let r = run(m, "uniq", "migrate").await;
    assert_eq!(r["state"], "rolled_back", "{r}");
    assert!(r["error"].as_str().unwrap().contains("UNIQUE"), "{r}");
    let states: Vec<&str> = r["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["rolled_back", "rolled_back", "failed"]);
    assert_eq!(dump(&db(&t.s, "a")), before[0]);
    assert_eq!(dump(&db(&t.s, "b")), before[1]);
    assert_eq!(dump(&db(&t.s, "c")), before_c);
    let g = m
        .call_ok("get_migration", json!({"migration_id": "uniq"}))
        .await;
    assert_eq!(g["status"], "rolled_back");

    // fixed, tested again, migrated for real
    rusqlite::Connection::open(db(&t.s, "c"))
        .unwrap()
        .execute("DELETE FROM users WHERE id = 4", [])
        .unwrap();
    assert_eq!(run(m, "uniq", "test").await["state"], "completed");
    let r = run(m, "uniq", "migrate").await;
    assert_eq!(r["state"], "completed", "{r}");
    for d in ["a", "b", "c"] {
        assert!(dump(&db(&t.s, d)).contains("users_email"), "{d}");
    }
    assert_eq!(
        m.call_ok("get_migration", json!({"migration_id": "uniq"}))
            .await["status"],
        "completed"
    );
}

#[tokio::test]
async fn a_failed_test_blocks_migrate_and_a_changed_target_must_be_tested_again() {
    let t = setup(&["a"]).await;
    let m = &t.mig;
    m.call_ok(
        "define_migration",
        json!({"id": "drop-email", "interlays": interlays(&["a"]),
            "data": {"type": "sql", "up": "ALTER TABLE users DROP COLUMN email"},
            "apis": [{"id": "emails", "query": "SELECT email FROM users"}]}),
    )
    .await;
    let r = run(m, "drop-email", "test").await;
    assert_eq!(r["state"], "failed", "{r}");
    assert!(
        r["targets"][0]["error"]
            .as_str()
            .unwrap()
            .contains("emails"),
        "{r}"
    );
    let e = m
        .call_err(
            "run_migration",
            json!({"migration_id": "drop-email", "mode": "migrate"}),
        )
        .await;
    assert!(e.contains("has not passed a test"), "{e}");

    m.call_ok(
        "define_migration",
        json!({"id": "add-age", "interlays": interlays(&["a"]),
            "data": {"type": "sql", "up": "ALTER TABLE users ADD COLUMN age INTEGER"}}),
    )
    .await;
    assert_eq!(run(m, "add-age", "test").await["state"], "completed");
    rusqlite::Connection::open(db(&t.s, "a"))
        .unwrap()
        .execute_batch("CREATE TABLE other (x)")
        .unwrap();
    let e = m
        .call_err(
            "run_migration",
            json!({"migration_id": "add-age", "mode": "migrate"}),
        )
        .await;
    assert_eq!(e, "target 'a' changed since it was tested; test again");
    assert_eq!(run(m, "add-age", "test").await["state"], "completed");
    assert_eq!(run(m, "add-age", "migrate").await["state"], "completed");
}

#[tokio::test]
async fn a_time_window_outside_now_does_not_run_and_runs_can_be_polled() {
    let t = setup(&["a"]).await;
    let m = &t.mig;
    let before = dump(&db(&t.s, "a"));
    m.call_ok(
        "define_migration",
        json!({"id": "late", "interlays": interlays(&["a"]),
            "strategy": {"type": "time_window", "window_start": "2020-01-01T00:00:00Z", "window_end": "2020-01-01T01:00:00Z"},
            "data": {"type": "sql", "up": "ALTER TABLE users ADD COLUMN late TEXT"}}),
    )
    .await;
    let r = run(m, "late", "test").await;
    assert_eq!(r["state"], "failed", "{r}");
    assert!(
        r["error"].as_str().unwrap().contains("window closed"),
        "{r}"
    );
    assert_eq!(dump(&db(&t.s, "a")), before);

    // wait: false returns the run id; get_migration_run shows it end
    m.call_ok(
        "define_migration",
        json!({"id": "now", "interlays": interlays(&["a"]),
            "data": {"type": "sql", "up": "CREATE TABLE t2 (x)"}}),
    )
    .await;
    let started = m
        .call_ok(
            "run_migration",
            json!({"migration_id": "now", "mode": "test", "wait": false}),
        )
        .await;
    let id = started["runId"].as_str().unwrap().to_string();
    let mut state = String::new();
    for _ in 0..100 {
        let g = m.call_ok("get_migration_run", json!({"run_id": id})).await;
        state = g["state"].as_str().unwrap().to_string();
        if state == "completed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(state, "completed");
    let e = m
        .call_err("cancel_migration_run", json!({"run_id": id}))
        .await;
    assert!(e.contains("has ended"), "{e}");
    let e = m
        .call_err("get_migration_run", json!({"run_id": "run_nope"}))
        .await;
    assert!(e.contains("not found"), "{e}");
}

#[tokio::test]
async fn blue_green_swaps_the_file_under_a_reader_who_never_sees_half() {
    let t = setup(&["a"]).await;
    let m = &t.mig;
    let path = db(&t.s, "a");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 20000)
             INSERT INTO users (email) SELECT 'u' || n FROM s;",
        )
        .unwrap();
    }
    m.call_ok(
        "define_migration",
        json!({"id": "bg", "interlays": interlays(&["a"]), "strategy": {"type": "blue_green"},
            "data": {"type": "sql", "up": "ALTER TABLE users ADD COLUMN score INTEGER DEFAULT 0; UPDATE users SET score = 1;"}}),
    )
    .await;
    assert_eq!(run(m, "bg", "test").await["state"], "completed");
    // a reader checks that every view of the table is whole: old (no score) or new (all score 1)
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (stop, path) = (stop.clone(), path.clone());
        std::thread::spawn(move || {
            let mut seen = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let c = rusqlite::Connection::open(&path).unwrap();
                c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
                let has: bool = c
                    .query_row(
                        "SELECT count(*) > 0 FROM pragma_table_info('users') WHERE name = 'score'",
                        [],
                        |r| r.get(0),
                    )
                    .unwrap();
                if has {
                    let (n, ones): (i64, i64) = c
                        .query_row("SELECT count(*), sum(score = 1) FROM users", [], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })
                        .unwrap();
                    assert_eq!(n, ones, "a half-migrated table");
                    seen.1 += 1;
                } else {
                    seen.0 += 1;
                }
            }
            seen
        })
    };
    let r = run(m, "bg", "migrate").await;
    assert_eq!(r["state"], "completed", "{r}");
    std::thread::sleep(std::time::Duration::from_millis(100));
    stop.store(true, std::sync::atomic::Ordering::Release);
    let (old, new) = reader.join().unwrap();
    assert!(old + new > 0 && new > 0, "reader saw old {old}, new {new}");
}

#[tokio::test]
async fn a_postgres_target_is_put_back_by_down_when_another_target_fails() {
    if !crate::common::postgres_or_skip(
        "a_postgres_target_is_put_back_by_down_when_another_target_fails",
    )
    .await
    {
        return;
    }
    let t = setup(&["lite"]).await;
    let name = format!("trex_def_{}", trex::util::random_hex(4));
    let admin = crate::databases::pg_admin().await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let (pg, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port=5432 user=postgres dbname={name}"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    pg.batch_execute(
        "CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL);
         INSERT INTO users (email) VALUES ('a@x'), ('b@x');",
    )
    .await
    .unwrap();
    t.admin
        .call_ok(
            "database-create",
            json!({"id": "pgd", "host": "127.0.0.1", "port": 5432, "databaseName": name}),
        )
        .await;
    t.admin
        .call_ok(
            "database-credential-save",
            json!({"databaseId": "pgd", "username": "postgres", "password": "unused-under-trust"}),
        )
        .await;
    let m = &t.mig;
    let up = "CREATE TABLE marks (id integer PRIMARY KEY); CREATE UNIQUE INDEX users_email_u ON users (email);";
    // PostgreSQL under rollback_all needs `down`
    let e = m
        .call_err(
            "define_migration",
            json!({"id": "both", "interlays": interlays(&["pgd", "lite"]), "data": {"type": "sql", "up": up}}),
        )
        .await;
    assert!(e.contains("`data.down`"), "{e}");
    m.call_ok(
        "define_migration",
        json!({"id": "both", "interlays": interlays(&["pgd", "lite"]),
            "data": {"type": "sql", "up": up, "down": "DROP INDEX users_email_u; DROP TABLE marks;"},
            "apis": [{"id": "by-email", "query": "SELECT id FROM users WHERE email = $1", "parameters": ["a@x"]}]}),
    )
    .await;
    let marks = || async {
        pg.query_one("SELECT to_regclass('public.marks') IS NOT NULL", &[])
            .await
            .unwrap()
            .get::<_, bool>(0)
    };
    let r = run(m, "both", "test").await;
    assert_eq!(r["state"], "completed", "{r}");
    assert_eq!(
        r["targets"][0]["report"]["diff"]["tablesAdded"][0], "public.marks",
        "{r}"
    );
    assert!(!marks().await, "a test changed the PostgreSQL target");

    // the SQLite target fails at migrate (a duplicate added after the test): PostgreSQL, migrated
    // first, is put back by `down`
    rusqlite::Connection::open(db(&t.s, "lite"))
        .unwrap()
        .execute("INSERT INTO users (email) VALUES ('a@x')", [])
        .unwrap();
    let r = run(m, "both", "migrate").await;
    assert_eq!(r["state"], "rolled_back", "{r}");
    assert_eq!(r["targets"][0]["state"], "rolled_back", "{r}");
    assert!(
        !marks().await,
        "the PostgreSQL target was not put back by down"
    );

    rusqlite::Connection::open(db(&t.s, "lite"))
        .unwrap()
        .execute("DELETE FROM users WHERE id = 4", [])
        .unwrap();
    assert_eq!(run(m, "both", "test").await["state"], "completed");
    assert_eq!(run(m, "both", "migrate").await["state"], "completed");
    assert!(marks().await);
    drop(pg);
    let _ = admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await;
}

#[tokio::test]
async fn a_snapshot_copies_tables_from_a_source_database_by_its_replace_rule() {
    let t = setup(&["a", "src"]).await;
    let m = &t.mig;
    rusqlite::Connection::open(db(&t.s, "src"))
        .unwrap()
        .execute_batch(
            "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT);
             INSERT INTO products VALUES (1, 'one'), (2, 'two'), (3, 'three');
             CREATE TABLE categories (id INTEGER PRIMARY KEY, label TEXT);
             INSERT INTO categories VALUES (1, 'c1');",
        )
        .unwrap();
    rusqlite::Connection::open(db(&t.s, "a"))
        .unwrap()
        .execute_batch("CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO products VALUES (1, 'mine');")
        .unwrap();
    let e = m
        .call_err(
            "define_migration",
            json!({"id": "s", "interlays": interlays(&["a"]), "data": {"type": "snapshot", "source": "src", "tables": ["nope"]}}),
        )
        .await;
    assert!(e.contains("`data.tables`"), "{e}");
    let e = m
        .call_err(
            "define_migration",
            json!({"id": "s", "interlays": interlays(&["a"]), "data": {"type": "snapshot", "source": "src", "replace": "sometimes"}}),
        )
        .await;
    assert!(e.contains("`data.replace`"), "{e}");
    m.call_ok(
        "define_migration",
        json!({"id": "keep", "interlays": interlays(&["a"]),
            "data": {"type": "snapshot", "source": "src", "tables": ["products", "categories"]}}),
    )
    .await;
    let r = run(m, "keep", "test").await;
    assert_eq!(r["state"], "completed", "{r}");
    assert_eq!(r["targets"][0]["report"]["rowsAffected"], 3, "{r}");
    assert_eq!(
        r["targets"][0]["report"]["diff"]["tablesAdded"][0],
        "categories"
    );
    assert_eq!(run(m, "keep", "migrate").await["state"], "completed");
    let c = rusqlite::Connection::open(db(&t.s, "a")).unwrap();
    let names: Vec<String> = c
        .prepare("SELECT name FROM products ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(names, ["mine", "two", "three"], "none keeps existing rows");
    let labels: i64 = c
        .query_row("SELECT count(*) FROM categories", [], |r| r.get(0))
        .unwrap();
    assert_eq!(labels, 1);
    m.call_ok(
        "define_migration",
        json!({"id": "over", "interlays": interlays(&["a"]),
            "data": {"type": "snapshot", "source": "src", "tables": ["products"], "replace": "merge"}}),
    )
    .await;
    assert_eq!(run(m, "over", "test").await["state"], "completed");
    assert_eq!(run(m, "over", "migrate").await["state"], "completed");
    let first: String = c
        .query_row("SELECT name FROM products WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(first, "one", "merge overwrites rows with the same key");
}

#[tokio::test]
async fn strategies_failure_handling_cancellation_and_the_per_database_server() {
    let t = setup(&["a", "b", "c"]).await;
    let m = &t.mig;
    // the server scoped to one database defaults interlays to it and refuses others
    let mut scoped = Client::new(
        &format!("{}/api/v1/endpoints/a/mcp/migrations", t.s.base()),
        Some(&t.s.key),
    );
    scoped.initialize().await;
    let d = scoped
        .call_ok(
            "define_migration",
            json!({"id": "only-a", "data": {"type": "sql", "up": "CREATE TABLE only_a (x)"}}),
        )
        .await;
    assert_eq!(d["interlays"], json!(["a"]));
    let e = scoped
        .call_err(
            "define_migration",
            json!({"id": "x", "interlays": interlays(&["b"])}),
        )
        .await;
    assert!(e.contains("`interlays`") && e.contains("scoped"), "{e}");
    m.call_ok(
        "define_migration",
        json!({"id": "only-b", "interlays": interlays(&["b"]), "data": {"type": "sql", "up": "CREATE TABLE only_b (x)"}}),
    )
    .await;
    let l = scoped.call_ok("list_migrations", json!({})).await;
    let ids: Vec<&str> = l["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["only-a"]);
    assert!(
        scoped
            .call_err("get_migration", json!({"migration_id": "only-b"}))
            .await
            .contains("not found")
    );
    let list = reqwest::Client::new()
        .get(format!("{}/api/v1/endpoints/a/mcp", t.s.base()))
        .bearer_auth(&t.s.key)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(list["servers"][1]["name"], "migrations", "{list}");

    // canary runs its canary first; allow_partial keeps going past a failing target
    m.call_ok(
        "define_migration",
        json!({"id": "part", "interlays": interlays(&["a", "b", "c"]),
            "strategy": {"type": "canary", "canary_targets": ["c"]},
            "failure_handling": "allow_partial",
            "data": {"type": "sql", "up": "CREATE UNIQUE INDEX users_email ON users (email)"}}),
    )
    .await;
    assert_eq!(run(m, "part", "test").await["state"], "completed");
    rusqlite::Connection::open(db(&t.s, "b"))
        .unwrap()
        .execute("INSERT INTO users (email) VALUES ('a@x')", [])
        .unwrap();
    let r = run(m, "part", "migrate").await;
    let order: Vec<(&str, &str)> = r["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["database"].as_str().unwrap(),
                t["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        order,
        [("c", "completed"), ("a", "completed"), ("b", "failed")],
        "{r}"
    );
    assert_eq!(r["state"], "failed");
    assert!(dump(&db(&t.s, "a")).contains("users_email"));
    assert!(!dump(&db(&t.s, "b")).contains("users_email"));

    // shadow_traffic compares the apis before and after, and never migrates
    m.call_ok(
        "define_migration",
        json!({"id": "shadow", "interlays": interlays(&["a"]), "strategy": {"type": "shadow_traffic"},
            "data": {"type": "sql", "up": "UPDATE users SET email = upper(email)"},
            "apis": [{"id": "emails", "query": "SELECT email FROM users ORDER BY id"}]}),
    )
    .await;
    let r = run(m, "shadow", "test").await;
    assert_eq!(r["state"], "failed", "{r}");
    assert!(
        r["error"].as_str().unwrap().contains("answers differently"),
        "{r}"
    );
    let e = m
        .call_err(
            "run_migration",
            json!({"migration_id": "shadow", "mode": "migrate"}),
        )
        .await;
    assert!(e.contains("test-only"), "{e}");
    // an api must only read: a writing one fails its target and changes nothing
    let before = dump(&db(&t.s, "a"));
    m.call_ok(
        "define_migration",
        json!({"id": "writer", "interlays": interlays(&["a"]), "strategy": {"type": "shadow_traffic"},
            "apis": [{"id": "wipe", "query": "DELETE FROM users"}]}),
    )
    .await;
    let r = run(m, "writer", "test").await;
    assert_eq!(r["state"], "failed", "{r}");
    assert!(
        r["targets"][0]["error"]
            .as_str()
            .unwrap()
            .contains("read-only"),
        "{r}"
    );
    assert_eq!(dump(&db(&t.s, "a")), before);

    // a cancelled run stops before its next target
    rusqlite::Connection::open(db(&t.s, "c"))
        .unwrap()
        .execute_batch(
            "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 2000)
             INSERT INTO users (email) SELECT 'z' || n FROM s;",
        )
        .unwrap();
    m.call_ok(
        "define_migration",
        json!({"id": "long", "interlays": interlays(&["c", "a"]),
            "data": {"type": "sql", "up": "CREATE TABLE pairs AS SELECT u1.id AS x, u2.id AS y FROM users u1, users u2"}}),
    )
    .await;
    let started = m
        .call_ok(
            "run_migration",
            json!({"migration_id": "long", "mode": "test", "wait": false}),
        )
        .await;
    let id = started["runId"].as_str().unwrap().to_string();
    m.call_ok("cancel_migration_run", json!({"run_id": id}))
        .await;
    let mut g = Value::Null;
    for _ in 0..200 {
        g = m.call_ok("get_migration_run", json!({"run_id": id})).await;
        if !["pending", "running"].contains(&g["state"].as_str().unwrap()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(g["state"], "cancelled", "{g}");
    assert_eq!(g["targets"][1]["state"], "not_started", "{g}");
}

#[tokio::test]
async fn a_postgres_snapshot_copies_tables_between_databases() {
    if !crate::common::postgres_or_skip("a_postgres_snapshot_copies_tables_between_databases").await
    {
        return;
    }
    let t = setup(&["lite"]).await;
    let admin = crate::databases::pg_admin().await;
    let tag = trex::util::random_hex(4);
    let (src_db, dst_db) = (
        format!("trex_snap_src_{tag}"),
        format!("trex_snap_dst_{tag}"),
    );
    let mut conns = Vec::new();
    for (name, sql) in [
        (
            &src_db,
            "CREATE TABLE products (id int PRIMARY KEY, name text NOT NULL, price numeric(8,2));
             INSERT INTO products VALUES (1, 'one', 1.5), (2, 'two', 2.25), (3, 'three', NULL);
             CREATE TABLE categories (id int PRIMARY KEY, label text);
             INSERT INTO categories VALUES (7, 'seven');",
        ),
        (
            &dst_db,
            "CREATE TABLE products (id int PRIMARY KEY, name text NOT NULL, price numeric(8,2));
             INSERT INTO products VALUES (1, 'mine', 9.99);",
        ),
    ] {
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let (c, conn) = tokio_postgres::connect(
            &format!("host=127.0.0.1 port=5432 user=postgres dbname={name}"),
            tokio_postgres::NoTls,
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        c.batch_execute(sql).await.unwrap();
        conns.push(c);
    }
    for (id, name) in [("src", &src_db), ("dst", &dst_db)] {
        t.admin
            .call_ok(
                "database-create",
                json!({"id": id, "host": "127.0.0.1", "port": 5432, "databaseName": name}),
            )
            .await;
        t.admin
            .call_ok(
                "database-credential-save",
                json!({"databaseId": id, "username": "postgres", "password": "unused-under-trust"}),
            )
            .await;
    }
    let m = &t.mig;
    let e = m
        .call_err(
            "define_migration",
            json!({"id": "mixed", "interlays": interlays(&["lite"]), "data": {"type": "snapshot", "source": "src"}}),
        )
        .await;
    assert!(e.contains("`data`") && e.contains("one dialect"), "{e}");
    m.call_ok(
        "define_migration",
        json!({"id": "snap", "interlays": interlays(&["dst"]),
            "data": {"type": "snapshot", "source": "src", "replace": "merge"}}),
    )
    .await;
    let r = run(m, "snap", "test").await;
    assert_eq!(r["state"], "completed", "{r}");
    assert_eq!(
        r["targets"][0]["report"]["diff"]["tablesAdded"][0], "public.categories",
        "{r}"
    );
    let dst = &conns[1];
    let name1 = || async {
        dst.query_one("SELECT name FROM products WHERE id = 1", &[])
            .await
            .unwrap()
            .get::<_, String>(0)
    };
    assert_eq!(name1().await, "mine", "a test changed the target");
    assert_eq!(run(m, "snap", "migrate").await["state"], "completed");
    assert_eq!(
        name1().await,
        "one",
        "merge overwrites rows with the same key"
    );
    let n: i64 = dst
        .query_one("SELECT count(*) FROM products", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
    let price: Option<String> = dst
        .query_one("SELECT price::text FROM products WHERE id = 2", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(price.as_deref(), Some("2.25"));
    let label: String = dst
        .query_one("SELECT label FROM categories WHERE id = 7", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(label, "seven");
    drop(conns);
    for name in [&src_db, &dst_db] {
        let _ = admin
            .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .await;
    }
}
