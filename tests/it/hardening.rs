//! The adversarial review's cases: authority per operation, the last-admin rule inside the write,
//! audit rows without secrets and of bounded size, internal errors kept internal.

use serde_json::{Value, json};
use trex::mcp::tool::{Annotations, Tool, ToolCtx, ToolError};
use trex::ops::users::{Standing, change};

use crate::common::{Client, TestServer};

/// The caller `user_id`, as the domain layer takes it.
fn as_user(user_id: &str) -> trex::ops::Actor {
    trex::ops::Actor::web(Some(user_id.to_string()), None)
}

/// Sends a 2025-03-26 batch and returns the answers.
async fn batch(c: &Client, items: Vec<Value>) -> Vec<Value> {
    let r = c.post().json(&Value::Array(items)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn call(id: i64, tool: &str, args: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}})
}

/// A test tool that revokes the calling key behind the server's back (as another admin or the
/// CLI would), so a batch can be interrupted at a known item.
fn revoke_self_tool() -> Tool {
    Tool::typed(
        "test-revoke-self",
        "revoke",
        "Revokes the calling key (test only).",
        Annotations::UPDATE,
        |ctx: ToolCtx, _a: trex::tools::trexdb::NoArgs| async move {
            let id = ctx.call.principal.key_id.clone();
            ctx.app
                .store
                .run(move |c| trex::store::api_keys::revoke(c, &id))
                .await
                .map_err(ToolError::from)?;
            ctx.app.auth.invalidate();
            Ok(json!({"revoked": true}))
        },
    )
}

#[tokio::test]
async fn a_batch_stops_at_the_item_after_its_key_is_revoked() {
    let s = TestServer::start_with(|_| {}, |srv| srv.tool(revoke_self_tool())).await;
    let (_, other_key) = s.other_admin("other@example.com").await;
    let mut c = Client::new(&s.url(), Some(&other_key));
    c.initialize_version("2025-03-26").await;
    let mut items: Vec<Value> = (0..3)
        .map(|i| {
            call(
                i,
                "user-create",
                json!({"name": "u", "email": format!("b{i}@example.com")}),
            )
        })
        .collect();
    items.push(call(3, "test-revoke-self", json!({})));
    items.extend((4..100).map(|i| {
        call(
            i,
            "user-create",
            json!({"name": "u", "email": format!("b{i}@example.com")}),
        )
    }));
    let answers = batch(&c, items).await;
    assert_eq!(answers.len(), 100);
    let ok = |a: &Value| a["result"]["isError"] == json!(false);
    assert!(answers[..4].iter().all(ok), "{:?}", &answers[..4]);
    for a in &answers[4..] {
        assert_eq!(a["error"]["message"], "Invalid or missing API key", "{a}");
    }
    let admin = s.client();
    let mut admin = admin;
    admin.initialize().await;
    let users = admin
        .call_ok(
            "user-list",
            json!({"search": "@example.com", "limit": 1000}),
        )
        .await;
    let created = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["email"].as_str().unwrap().starts_with('b'))
        .count();
    assert_eq!(created, 3);
}

#[tokio::test]
async fn two_admins_removing_each_other_leave_one_active_admin() {
    let s = TestServer::start().await;
    let (a, _) = s.other_admin("a@example.com").await;
    let (b, _) = s.other_admin("b@example.com").await;
    let first = s.admin_id.clone();
    // leave exactly two admins, a and b
    let (actor_a, actor_b) = (as_user(&a), as_user(&b));
    change(s.app(), &actor_a, &first, Standing::Role("user"))
        .await
        .unwrap();
    // each checked the other's authority before either wrote (the race): the rule inside the
    // transaction refuses the second, for demote, ban and delete alike
    for ch in [
        Standing::Role("user"),
        Standing::Ban {
            banned: true,
            reason: None,
            expires: None,
        },
        Standing::Deleted(true),
    ] {
        change(s.app(), &actor_a, &b, ch.clone()).await.unwrap();
        let e = change(s.app(), &actor_b, &a, ch.clone()).await.unwrap_err();
        assert!(e.to_string().contains("last active admin"), "{e}");
        // undo the first change for the next round
        let undo = match ch {
            Standing::Role(_) => Standing::Role("admin"),
            Standing::Ban { .. } => Standing::Ban {
                banned: false,
                reason: None,
                expires: None,
            },
            Standing::Deleted(_) => Standing::Deleted(false),
        };
        change(s.app(), &actor_a, &b, undo).await.unwrap();
    }
    // and for real, two concurrent batches over HTTP
    let cli = trex::ops::Actor::cli();
    let mut keys = Vec::new();
    for id in [&a, &b] {
        let k = trex::ops::keys::create(s.app(), &cli, id, "k", None, "expiresAt", None);
        keys.push(k.await.unwrap().key);
    }
    let (ka, kb) = (keys[0].clone(), keys[1].clone());
    let mut ca = Client::new(&s.url(), Some(&ka));
    let mut cb = Client::new(&s.url(), Some(&kb));
    ca.initialize_version("2025-03-26").await;
    cb.initialize_version("2025-03-26").await;
    let ia = vec![call(
        1,
        "user-update-role",
        json!({"userId": b, "role": "user"}),
    )];
    let ib = vec![call(
        1,
        "user-update-role",
        json!({"userId": a, "role": "user"}),
    )];
    // a demoted admin's session ends and key stops: the slower batch may get 404 or 401
    let send = |c: &Client, items: Vec<Value>| c.post().json(&Value::Array(items)).send();
    let (ra, rb) = tokio::join!(send(&ca, ia), send(&cb, ib));
    for r in [ra.unwrap(), rb.unwrap()] {
        assert!(
            [200, 401, 404].contains(&r.status().as_u16()),
            "{}",
            r.status()
        );
    }
    let active = s
        .app()
        .store
        .run(|c| trex::store::users::active_admins_except(c, ""))
        .await
        .unwrap();
    assert!(active >= 1, "no active admin left");
}

#[tokio::test]
async fn audit_rows_hold_no_secrets_and_are_bounded() {
    let s = TestServer::start_with(|c| c.audit.max_rows = 40, |srv| srv).await;
    let mut c = s.client();
    c.initialize().await;
    // SQL whose quotes a naive blanker gets wrong
    for sql in [
        r#"ALTER ROLE "o'neil" PASSWORD 'sekrit-one'"#,
        "SELECT 1 /* it's */, 'sekrit-two' -- don't",
        r"SELECT E'a\'b sekrit-three'",
    ] {
        c.call("trexdb-execute-sql", json!({"sql": sql})).await;
    }
    // a password sent with the wrong type: the error must not echo it, here or in the audit
    let r = c
        .call(
            "user-create",
            json!({"name": "n", "email": "n@example.com", "pwd": 1, "password": 987654321}),
        )
        .await;
    assert_eq!(r["isError"], true);
    assert!(!r.to_string().contains("987654321"), "{r}");
    // 4 MB arguments, refused or not, are not stored whole
    let big = "y".repeat(4 * 1024 * 1024 - 4096);
    for _ in 0..3 {
        c.call(
            "user-create",
            json!({"name": big, "email": "x@example.com"}),
        )
        .await;
    }
    let rows = c.call_ok("audit-list", json!({"limit": 1000})).await;
    let text = rows.to_string();
    for secret in ["sekrit-one", "sekrit-two", "sekrit-three", "987654321"] {
        assert!(
            !text.contains(secret),
            "{secret} in the audit log: {text:.2000}"
        );
    }
    for e in rows["entries"].as_array().unwrap() {
        assert!(
            e.to_string().len() < 16 * 1024,
            "an audit row of {} bytes",
            e.to_string().len()
        );
        assert_eq!(e["via"], "mcp");
    }
    // retention by row count
    for i in 0..60 {
        c.call("role-create", json!({"name": format!("r{i}")}))
            .await;
    }
    let n = s.app().store.run(trex::store::audit::count).await.unwrap();
    assert!(n <= 40, "{n} rows kept with audit.max_rows = 40");
}

#[tokio::test]
async fn internal_errors_reach_the_client_without_their_detail() {
    let failing = Tool::typed(
        "test-fail",
        "fail",
        "Fails inside (test only).",
        Annotations::READ,
        |_ctx: ToolCtx, _a: trex::tools::trexdb::NoArgs| async move {
            Err::<Value, _>(ToolError::Internal(trex::Error::Other(
                "database error: LIKE or GLOB pattern too complex".into(),
            )))
        },
    );
    let s = TestServer::start_with(|_| {}, move |srv| srv.tool(failing.clone())).await;
    let mut c = s.client();
    c.initialize().await;
    let r = c.call("test-fail", json!({})).await;
    let text = r["content"][0]["text"].as_str().unwrap();
    assert_eq!(r["isError"], true);
    assert!(text.starts_with("Internal error (reference "), "{text}");
    assert!(!text.contains("LIKE"), "{text}");
    // the review's trigger: an over-long search is a field error now
    let e = c
        .call_err("user-list", json!({"search": "%_".repeat(30_000)}))
        .await;
    assert!(e.contains("`search`"), "{e}");
}

#[tokio::test]
async fn sqlite_calls_are_bounded_in_time_and_memory() {
    let s = TestServer::start_with(|c| c.engine.query_timeout_secs = 2, |srv| srv).await;
    let mut c = s.client();
    c.initialize().await;
    // instr over megabytes: quadratic in SQLite's own version (minutes), linear here
    let started = std::time::Instant::now();
    let r = c
        .call_ok(
            "trexdb-execute-sql",
            json!({"sql": "SELECT instr(printf('%.*c', 4000000, 'a') || 'b', printf('%.*c', 2000000, 'a') || 'b'), \
                          replace(printf('%.*c', 3000000, 'a'), printf('%.*c', 1000000, 'a'), 'x'), \
                          length(trim(printf('%.*c', 3000000, 'a'), printf('%.*c', 1000000, 'a')))"}),
        )
        .await;
    assert_eq!(r["rows"][0][0], 2_000_001);
    assert_eq!(r["rows"][0][1], "xxx");
    assert_eq!(r["rows"][0][2], 0);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    // json_patch compares every key with every key: small inputs run, large ones are refused
    let r = c
        .call_ok(
            "trexdb-execute-sql",
            json!({"sql": "SELECT json_patch('{\"a\":1}', '{\"b\":2}')"}),
        )
        .await;
    assert_eq!(r["rows"][0][0], "{\"a\":1,\"b\":2}");
    let started = std::time::Instant::now();
    let e = c
        .call_err(
            "trexdb-execute-sql",
            json!({"sql": "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<60000) \
                           SELECT length(json_patch((SELECT json_group_object('a'||i,i) FROM c),(SELECT json_group_object('b'||i,i) FROM c)))"}),
        )
        .await;
    assert!(e.contains("json_patch") && e.contains("refused"), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // two hundred large zero blobs (the review's crash): cut at the byte budget, or stopped by
    // the memory budget when SQLite expands them first — never the process's memory
    let cols: Vec<String> = (0..200).map(|_| "zeroblob(8000000)".to_string()).collect();
    let r = c
        .call(
            "trexdb-execute-sql",
            json!({"sql": format!("SELECT {}", cols.join(", "))}),
        )
        .await;
    if r["isError"] == json!(true) {
        let t = r["content"][0]["text"].as_str().unwrap();
        assert!(t.contains("engine.max_query_memory"), "{t}");
    } else {
        assert_eq!(r["structuredContent"]["truncated"], true);
        assert_eq!(r["structuredContent"]["rowCount"], 0);
    }
    // one value over the byte budget is cut before it is converted
    let r = c
        .call_ok(
            "trexdb-execute-sql",
            json!({"sql": "SELECT 1, randomblob(5000000)"}),
        )
        .await;
    assert_eq!(r["truncated"], true);
    // forty 4 MB values SQLite must build before the first row: past engine.max_query_memory
    let cols: Vec<String> = (0..40).map(|_| "randomblob(4000000)".to_string()).collect();
    let e = c
        .call_err(
            "trexdb-execute-sql",
            json!({"sql": format!("SELECT {}", cols.join(", "))}),
        )
        .await;
    assert!(e.contains("engine.max_query_memory"), "{e}");
    // and the server is fine
    c.call_ok("trexdb-execute-sql", json!({"sql": "SELECT 1"}))
        .await;
}

#[tokio::test]
async fn engine_queries_have_their_own_slots_and_do_not_starve_the_store() {
    let s = TestServer::start_with(
        |c| {
            c.engine.query_timeout_secs = 3;
            c.engine.max_concurrent_queries = 2;
            c.engine.queue_timeout_secs = 1;
        },
        |srv| srv,
    )
    .await;
    let mut c = s.client();
    c.initialize().await;
    let forever =
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM n) SELECT count(*) FROM n";
    let long: Vec<_> = (0..6)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.call("trexdb-execute-sql", json!({"sql": forever})).await })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // administration answers while every engine slot is taken
    c.call_ok("user-list", json!({})).await;
    assert!(
        long.iter().any(|h| !h.is_finished()),
        "the engine queries ended first"
    );
    let mut busy = 0;
    for h in long {
        let r = h.await.unwrap();
        let text = r["content"][0]["text"].as_str().unwrap_or("").to_string();
        if text.contains("The engine is busy") {
            busy += 1;
        } else {
            assert!(text.contains("Query stopped"), "{text}");
        }
    }
    assert!(busy >= 1, "no call was refused as busy");
}

#[tokio::test]
async fn postgres_results_by_position_exact_numerics_whole_call_limit_and_bounded_rows() {
    if !crate::common::postgres_or_skip("postgres_results_by_position").await {
        return;
    }
    let s = TestServer::start_with(
        |c| {
            c.engine.query_timeout_secs = 2;
            c.engine.max_result_bytes = 4 * 1024 * 1024;
        },
        |srv| srv,
    )
    .await;
    let mut c = s.client();
    c.initialize().await;
    c.call_ok(
        "database-create",
        json!({"id": "pg", "host": "127.0.0.1", "port": 5432, "databaseName": "test"}),
    )
    .await;
    c.call_ok(
        "database-credential-save",
        json!({"databaseId": "pg", "username": "postgres", "password": "unused"}),
    )
    .await;
    let mut e = Client::new(
        &format!("{}/api/v1/endpoints/pg/mcp/postgres", s.base()),
        Some(&s.key),
    );
    e.initialize().await;
    let q = |sql: &str| json!({"query": sql});
    let r = e
        .call_ok("execute_postgres_query", q("SELECT 1 AS x, 2 AS x"))
        .await;
    assert_eq!(r["rows"], json!([[1, 2]]));
    assert_eq!(r["columns"], json!(["x", "x"]));
    let r = e
        .call_ok(
            "execute_postgres_query",
            q("SELECT 12345678901234567890.123456789::numeric AS n, 1e400::numeric AS big, 7 AS i"),
        )
        .await;
    assert_eq!(r["rows"][0][0], "12345678901234567890.123456789");
    assert!(r["rows"][0][1].as_str().unwrap().starts_with("1000000000"));
    assert_eq!(r["rows"][0][2], 7);
    // inside rows, arrays and jsonb too: kept exact (as JSON text), and 1e400 does not fail
    let r = e
        .call_ok(
            "execute_postgres_query",
            q("SELECT ROW(12345678901234567890.123456789::numeric, 1) AS r, '[1e400]'::jsonb AS j, 9223372036854775807 AS big -- trailing comment"),
        )
        .await;
    assert!(
        r["rows"][0][0]
            .as_str()
            .unwrap()
            .contains("12345678901234567890.123456789"),
        "{r}"
    );
    assert!(
        r["rows"][0][1].as_str().unwrap().starts_with("[1000000000"),
        "{r}"
    );
    assert_eq!(r["rows"][0][2], 9223372036854775807i64);
    // EXPLAIN cannot be used to build a huge plan text
    let err = e
        .call_err(
            "execute_postgres_query",
            q("EXPLAIN VERBOSE SELECT repeat('x', 400000000)"),
        )
        .await;
    assert!(err.contains("repeat()"), "{err}");
    // the limit covers the whole call, not each fetch: 300 × 50 ms > 2 s
    let started = std::time::Instant::now();
    let err = e
        .call_err(
            "execute_postgres_query",
            q("SELECT pg_sleep(0.05), g FROM generate_series(1, 300) g"),
        )
        .await;
    assert!(err.contains("Query stopped"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // ... and the query was cancelled on the server
    let pg = crate::databases::pg_admin().await;
    let mut left = 1;
    for _ in 0..50 {
        left = pg
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%generate_series(1, 300)%' AND pid <> pg_backend_pid() AND state = 'active'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "the timed-out query still runs on the server");
    // a 20 MB row (over the 4 MB budget) is never sent to trex
    let r = e
        .call_ok(
            "execute_postgres_query",
            q("SELECT repeat('x', 20000000) AS big"),
        )
        .await;
    assert_eq!(r["truncated"], true);
    assert_eq!(r["rowCount"], 0);
}

/// A small SQLite file with one table `t(v)` in `<data_dir>/databases/`.
fn sqlite_file(s: &TestServer, name: &str, value: &str) {
    let dir = s.data_dir().join("databases");
    std::fs::create_dir_all(&dir).unwrap();
    let c = rusqlite::Connection::open(dir.join(name)).unwrap();
    c.execute_batch(&format!(
        "CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('{value}');"
    ))
    .unwrap();
}

#[tokio::test]
async fn the_endpoints_scope_covers_every_database_tool() {
    let s = TestServer::start().await;
    let mut c = s.client();
    c.initialize().await;
    sqlite_file(&s, "a.db", "mine");
    sqlite_file(&s, "b.db", "theirs");
    for (id, file) in [("a", "a.db"), ("b", "b.db")] {
        c.call_ok(
            "database-create",
            json!({"id": id, "dialect": "sqlite", "databaseName": file}),
        )
        .await;
    }
    let b_cred = c
        .call_ok(
            "database-credential-save",
            json!({"databaseId": "b", "username": "u", "password": "p-secret"}),
        )
        .await["credential"]["id"]
        .clone();
    let k = c
        .call_ok(
            "api-key-create",
            json!({"userId": s.admin_id, "name": "only-a", "scopes": {"endpoints": ["a"]}}),
        )
        .await;
    let mut a = Client::new(&s.url(), Some(k["key"].as_str().unwrap()));
    a.initialize().await;
    let refused = "This API key's scopes do not allow database 'b'";
    for (tool, args) in [
        ("database-update", json!({"id": "b", "description": "x"})),
        ("database-delete", json!({"id": "b"})),
        ("database-test-connection", json!({"databaseId": "b"})),
        ("database-credential-list", json!({"databaseId": "b"})),
        (
            "database-credential-save",
            json!({"databaseId": "b", "username": "v", "password": "w"}),
        ),
    ] {
        let e = a.call_err(tool, args).await;
        assert!(
            e.starts_with(refused) && e.contains("--endpoint b"),
            "{tool}: {e}"
        );
    }
    assert_eq!(
        a.call_err(
            "database-credential-delete",
            json!({"credentialId": b_cred})
        )
        .await,
        "Credential not found"
    );
    assert!(
        a.call_err(
            "database-create",
            json!({"id": "c", "dialect": "sqlite", "databaseName": "c.db"})
        )
        .await
        .contains("do not allow database 'c'")
    );
    // a server registered out of scope cannot be reached by naming it another way either
    c.call_ok(
        "database-create",
        json!({"id": "pgb", "host": "127.0.0.1", "port": 5432, "databaseName": "postgres"}),
    )
    .await;
    c.call_ok(
        "database-create",
        json!({"id": "a_pg", "host": "127.0.0.1", "port": 5432, "databaseName": "test"}),
    )
    .await;
    let k2 = c
        .call_ok(
            "api-key-create",
            json!({"userId": s.admin_id, "name": "only-a-pg", "scopes": {"endpoints": ["a_pg"]}}),
        )
        .await;
    let mut ap = Client::new(&s.url(), Some(k2["key"].as_str().unwrap()));
    ap.initialize().await;
    for host in [
        "localhost",
        "127.1",
        "LOCALHOST.",
        "127.0.0.1",
        "::ffff:127.0.0.1",
        "0.0.0.0",
        "0",
    ] {
        let e = ap
            .call_err(
                "database-update",
                json!({"id": "a_pg", "host": host, "databaseName": "postgres"}),
            )
            .await;
        assert!(e.contains("outside this API key's scopes"), "{host}: {e}");
    }
    // re-pointing a at b's file is refused, so b cannot be read through a
    let e = a
        .call_err(
            "database-update",
            json!({"id": "a", "databaseName": "b.db"}),
        )
        .await;
    assert!(e.contains("outside this API key's scopes"), "{e}");
    let list = a.call_ok("database-list", json!({})).await;
    let ids: Vec<&str> = list["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a"]);
    // everything of b is as it was
    let b = c
        .call_ok("database-credential-list", json!({"databaseId": "b"}))
        .await;
    assert_eq!(b["credentials"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_bad_registered_database_cannot_break_trexdb() {
    let s = TestServer::start().await;
    let mut c = s.client();
    c.initialize().await;
    let dir = s.data_dir().join("databases");
    std::fs::create_dir_all(dir.join("adir")).unwrap();
    std::fs::write(dir.join("notes.txt"), "plain text, not a database").unwrap();
    for name in [".", "adir", "adir/", "notes.txt"] {
        let e = c
            .call_err(
                "database-create",
                json!({"id": "bad", "dialect": "sqlite", "databaseName": name}),
            )
            .await;
        assert!(e.contains("`databaseName`"), "{name}: {e}");
    }
    // eleven good databases and one that goes bad after it was registered
    for i in 0..11 {
        sqlite_file(&s, &format!("d{i:02}.db"), "v");
        c.call_ok(
            "database-create",
            json!({"id": format!("d{i:02}"), "dialect": "sqlite", "databaseName": format!("d{i:02}.db")}),
        )
        .await;
    }
    std::fs::write(dir.join("d00.db"), "overwritten with text").unwrap();
    let r = c
        .call_ok("trexdb-execute-sql", json!({"sql": "SELECT v FROM d01.t"}))
        .await;
    assert_eq!(r["rows"], json!([["v"]]));
    let w = r["warnings"].to_string();
    assert!(w.contains("'d00' is not attached"), "{w}");
    assert!(w.contains("d10"), "the attach limit is not reported: {w}");
    let l = c.call_ok("trexdb-list-databases", json!({})).await;
    assert!(l["warnings"].to_string().contains("d00"), "{l}");
    // a corrupt file behind a valid header is skipped too, not fatal for every call
    let mut junk = b"SQLite format 3\0".to_vec();
    junk.extend(std::iter::repeat_n(0xffu8, 2000));
    std::fs::write(dir.join("d02.db"), junk).unwrap();
    let r = c
        .call_ok("trexdb-execute-sql", json!({"sql": "SELECT v FROM d01.t"}))
        .await;
    assert_eq!(r["rows"], json!([["v"]]));
    assert!(
        r["warnings"].to_string().contains("'d02' is not attached"),
        "{r}"
    );
}
