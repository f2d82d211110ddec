//! The one catalogue of MCP servers: scope globs that name a server, a tool table that changes
//! while the server runs (with `notifications/tools/list_changed`), and the endpoint-server
//! cache emptied when the registry changes.

use std::time::Duration;

use serde_json::json;
use trex::mcp::tool::{Annotations, Tool, ToolCtx};

use crate::common::{Client, SseReader, TestServer};

#[tokio::test]
async fn scope_globs_may_name_a_server() {
    let s = TestServer::start().await;
    let mut c = s.client();
    c.initialize().await;
    let dir = s.data_dir().join("databases");
    std::fs::create_dir_all(&dir).unwrap();
    rusqlite::Connection::open(dir.join("a.db"))
        .unwrap()
        .execute_batch("CREATE TABLE t (v); INSERT INTO t VALUES (1);")
        .unwrap();
    c.call_ok(
        "database-create",
        json!({"id": "a", "dialect": "sqlite", "databaseName": "a.db"}),
    )
    .await;
    let k = c
        .call_ok(
            "api-key-create",
            json!({"userId": s.admin_id, "name": "sq", "scopes": {"tools": ["sqlite:*", "trex:user-list"]}}),
        )
        .await;
    let key = k["key"].as_str().unwrap();
    let mut admin = Client::new(&s.url(), Some(key));
    admin.initialize().await;
    let names: Vec<String> = admin.rpc("tools/list", json!({})).await["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["user-list"]);
    let mut e = Client::new(
        &format!("{}/api/v1/endpoints/a/mcp/sqlite", s.base()),
        Some(key),
    );
    e.initialize().await;
    let r = e
        .call_ok("execute_sqlite_query", json!({"query": "SELECT v FROM t"}))
        .await;
    assert_eq!(r["rows"], json!([[1]]));
    let err = c
        .call_err(
            "api-key-create",
            json!({"userId": s.admin_id, "name": "x", "scopes": {"tools": ["nosuch:*"]}}),
        )
        .await;
    assert!(err.contains("matches no tool"), "{err}");
}

#[tokio::test]
async fn tools_added_while_running_are_listed_and_announced() {
    let s = TestServer::start().await;
    let mut c = s.client();
    let init = c.initialize().await;
    assert_eq!(init["capabilities"]["tools"]["listChanged"], true);
    let stream = c.get().send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let mut rd = SseReader::new(stream);
    let running = s.running.as_ref().unwrap();
    let tool = Tool::typed(
        "plugin-hello",
        "Hello",
        "Says hello (added at run time).",
        Annotations::READ,
        |_ctx: ToolCtx, _a: trex::tools::trexdb::NoArgs| async move { Ok(json!({"hello": "world"})) },
    );
    running
        .catalogue
        .add_admin_tool(tool, &running.app.sessions)
        .unwrap();
    let (_, msg) = loop {
        let m = rd
            .next_message(Duration::from_secs(5))
            .await
            .expect("no notification");
        if m.1["method"].is_string() {
            break m;
        }
    };
    assert_eq!(msg["method"], "notifications/tools/list_changed");
    let r = c.call_ok("plugin-hello", json!({})).await;
    assert_eq!(r["hello"], "world");
    assert!(
        running
            .catalogue
            .remove_admin_tool("plugin-hello", &running.app.sessions)
    );
    let r = c
        .rpc(
            "tools/call",
            json!({"name": "plugin-hello", "arguments": {}}),
        )
        .await;
    assert_eq!(r["error"]["code"], -32602);
}

#[tokio::test]
async fn the_endpoint_server_cache_is_emptied_when_databases_change() {
    let s = TestServer::start().await;
    let mut c = s.client();
    c.initialize().await;
    for id in ["a", "b"] {
        c.call_ok(
            "database-create",
            json!({"id": id, "dialect": "sqlite", "databaseName": format!("{id}.db")}),
        )
        .await;
    }
    let open = async |id: &str| {
        let mut e = Client::new(
            &format!("{}/api/v1/endpoints/{id}/mcp/sqlite", s.base()),
            Some(&s.key),
        );
        e.initialize().await;
    };
    open("a").await;
    open("b").await;
    let cat = &s.running.as_ref().unwrap().catalogue;
    assert_eq!(cat.cached_endpoints(), 2);
    c.call_ok("database-delete", json!({"id": "b"})).await;
    open("a").await;
    assert_eq!(
        cat.cached_endpoints(),
        1,
        "the deleted database's server is still cached"
    );
}
