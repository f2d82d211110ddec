//! What a new user tripped over: read-only keys that can read data, SQL errors that say what is
//! wrong, the CLI and the tools giving the same rules.

use serde_json::json;

use crate::common::{Client, TestServer};

async fn key_with(c: &Client, s: &TestServer, scopes: serde_json::Value) -> Client {
    let k = c
        .call_ok(
            "api-key-create",
            json!({"userId": s.admin_id, "name": "scoped", "scopes": scopes}),
        )
        .await;
    let mut k = Client::new(&s.url(), Some(k["key"].as_str().unwrap()));
    k.initialize().await;
    k
}

#[tokio::test]
async fn a_read_only_key_reads_data_and_nothing_else() {
    let s = TestServer::start().await;
    let mut c = s.client();
    c.initialize().await;
    let dir = s.data_dir().join("databases");
    std::fs::create_dir_all(&dir).unwrap();
    rusqlite::Connection::open(dir.join("sales.db"))
        .unwrap()
        .execute_batch("CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (1), (2);")
        .unwrap();
    c.call_ok(
        "database-create",
        json!({"id": "sales", "dialect": "sqlite", "databaseName": "sales.db"}),
    )
    .await;
    let ro = key_with(&c, &s, json!({"readOnly": true})).await;
    let tools = ro.rpc("tools/list", json!({})).await;
    let names: Vec<String> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        names.contains(&"trexdb-execute-sql".to_string()),
        "{names:?}"
    );
    assert!(!names.contains(&"user-create".to_string()));
    let r = ro
        .call_ok(
            "trexdb-execute-sql",
            json!({"sql": "SELECT sum(v) FROM sales.t"}),
        )
        .await;
    assert_eq!(r["rows"], json!([[3]]));
    let e = ro
        .call_err(
            "trexdb-execute-sql",
            json!({"sql": "CREATE TABLE x (a)", "allowWrite": true}),
        )
        .await;
    assert!(e.contains("read-only (scope readOnly)"), "{e}");
    // an endpoint key limited to one tool, read-only: SELECT yes, DELETE no
    let k = c
        .call_ok(
            "api-key-create",
            json!({"userId": s.admin_id, "name": "sel", "scopes": {"readOnly": true, "tools": ["execute_sqlite_query"], "endpoints": ["sales"]}}),
        )
        .await;
    let mut e = Client::new(
        &format!("{}/api/v1/endpoints/sales/mcp/sqlite", s.base()),
        Some(k["key"].as_str().unwrap()),
    );
    e.initialize().await;
    let r = e
        .call_ok(
            "execute_sqlite_query",
            json!({"query": "SELECT count(*) FROM t"}),
        )
        .await;
    assert_eq!(r["rows"], json!([[2]]));
    let err = e
        .call_err("execute_sqlite_query", json!({"query": "DELETE FROM t"}))
        .await;
    assert!(err.contains("read-only"), "{err}");
    let r = e
        .call_ok(
            "execute_sqlite_query",
            json!({"query": "SELECT count(*) FROM t"}),
        )
        .await;
    assert_eq!(r["rows"], json!([[2]]), "the DELETE ran");
    // a combination that allows no tool is refused when the key is made
    let err = c
        .call_err(
            "api-key-create",
            json!({"userId": s.admin_id, "name": "none", "scopes": {"readOnly": true, "tools": ["user-create"]}}),
        )
        .await;
    assert!(err.contains("allow no tool"), "{err}");
}

#[tokio::test]
async fn sql_errors_say_what_is_wrong() {
    let s = TestServer::start().await;
    let mut c = s.client();
    c.initialize().await;
    let e = c
        .call_err("trexdb-execute-sql", json!({"sql": "selec 1"}))
        .await;
    assert!(e.starts_with("Syntax error"), "{e}");
    assert!(!e.contains("dangerousSql"), "{e}");
    let e = c
        .call_err("trexdb-execute-sql", json!({"sql": "SELECT 1; SELECT 2"}))
        .await;
    assert!(e.contains("one statement per call"), "{e}");
    let e = c
        .call_err(
            "trexdb-execute-sql",
            json!({"sql": "CREATE TABLE x (a)", "allowWrite": true}),
        )
        .await;
    assert!(
        e.contains("\"dangerousSql\": true") && e.contains("trex api-key create"),
        "{e}"
    );
    // a write into an attached registered database names the endpoint that writes there
    let dir = s.data_dir().join("databases");
    std::fs::create_dir_all(&dir).unwrap();
    rusqlite::Connection::open(dir.join("shop.db"))
        .unwrap()
        .execute_batch("CREATE TABLE items (v INTEGER);")
        .unwrap();
    c.call_ok(
        "database-create",
        json!({"id": "shop", "dialect": "sqlite", "databaseName": "shop.db"}),
    )
    .await;
    let e = c
        .call_err(
            "trexdb-execute-sql",
            json!({"sql": "INSERT INTO shop.items VALUES (1)", "allowWrite": true}),
        )
        .await;
    assert!(e.contains("/api/v1/endpoints/shop/mcp/sqlite"), "{e}");
}

#[tokio::test]
async fn names_line_up_and_the_root_says_where_to_go() {
    let s = TestServer::start().await;
    let mut c = s.client();
    let init = c.initialize().await;
    let instructions = init["instructions"].as_str().unwrap();
    for group in [
        "user-*",
        "role-*",
        "session-*",
        "sso-*",
        "app-*",
        "api-key-*",
        "database-*",
        "trexdb-*",
        "audit-list",
    ] {
        assert!(
            instructions.contains(group),
            "{group} missing: {instructions}"
        );
    }
    // both spellings of the dialect
    let d = c
        .call_ok(
            "database-create",
            json!({"id": "pgx", "dialect": "postgres", "host": "127.0.0.1", "databaseName": "test"}),
        )
        .await;
    assert_eq!(d["dialect"], "postgresql");
    for server in ["postgres", "postgresql"] {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v1/endpoints/pgx/mcp/{server}", s.base()))
            .bearer_auth(&s.key)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "/mcp/{server}");
    }
    let r = reqwest::get(format!("{}/", s.base())).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["mcp"]["url"], format!("http://{}/trex/mcp", s.addr));
    // a Host the server does not accept is not echoed back
    let v: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/", s.base()))
        .header("host", "evil.example.com")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["mcp"]["url"], serde_json::Value::Null);
}
