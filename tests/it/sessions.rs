//! Session lifecycle: ownership, DELETE, idle expiry, the cap, and survival across a restart.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Client, TestServer};

fn ping(id: i64) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"ping"})
}

#[tokio::test]
async fn a_session_belongs_to_its_user() {
    let s = TestServer::start().await;
    let mut mine = s.client();
    mine.initialize().await;
    let (_, other_key) = s.other_admin("other@example.com").await;
    let theirs = mine.clone().with_key(&other_key);
    let r = theirs.post().json(&ping(1)).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["message"], "Session belongs to a different user");
    let r = theirs
        .http
        .delete(&theirs.url)
        .bearer_auth(&other_key)
        .header("mcp-session-id", mine.session.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // another key of the same user may use it
    let second = mine
        .call_ok(
            "api-key-create",
            json!({"userId": s.admin_id, "name": "second"}),
        )
        .await;
    let same_user = mine.clone().with_key(second["key"].as_str().unwrap());
    assert_eq!(
        same_user
            .post()
            .json(&ping(2))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn delete_ends_the_session() {
    let s = TestServer::start().await;
    let mut c = s.client();
    c.initialize().await;
    let del = |c: &Client| {
        c.http
            .delete(&c.url)
            .bearer_auth(c.key.as_ref().unwrap())
            .header("mcp-session-id", c.session.clone().unwrap())
            .send()
    };
    let r = del(&c).await.unwrap();
    assert!(r.status().is_success());
    let r = c.post().json(&ping(1)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32001);
    assert_eq!(del(&c).await.unwrap().status(), 404);
    // DELETE without a session id
    let r = c
        .http
        .delete(&c.url)
        .bearer_auth(c.key.as_ref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn idle_sessions_expire() {
    let s = TestServer::start_with(|c| c.mcp.session_idle_timeout_secs = 1, |s| s).await;
    let mut c = s.client();
    c.initialize().await;
    assert_eq!(c.post().json(&ping(1)).send().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let r = c.post().json(&ping(2)).send().await.unwrap();
    assert_eq!(r.status(), 404, "an idle session must expire");
    // a fresh initialize works again
    c.session = None;
    c.initialize().await;
}

#[tokio::test]
async fn the_session_cap_answers_503_with_retry_after() {
    let s = TestServer::start_with(|c| c.mcp.max_sessions = 2, |s| s).await;
    let mut a = s.client();
    a.initialize().await;
    let mut b = s.client();
    b.initialize().await;
    let c = s.client();
    let r = c.post().json(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}})).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["message"], "Too many active MCP sessions");
    // ending one frees a place
    a.http
        .delete(&a.url)
        .bearer_auth(a.key.as_ref().unwrap())
        .header("mcp-session-id", a.session.clone().unwrap())
        .send()
        .await
        .unwrap();
    let mut c = s.client();
    c.initialize().await;
}

#[tokio::test]
async fn one_user_cannot_take_every_session() {
    let s = TestServer::start_with(|c| c.mcp.max_sessions_per_user = 2, |s| s).await;
    let mut a = s.client();
    a.initialize().await;
    let mut b = s.client();
    b.initialize().await;
    let r = s.client().post().json(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}})).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // another user still gets in
    let (_, other) = s.other_admin("other@example.com").await;
    let mut o = Client::new(&s.url(), Some(&other));
    o.initialize().await;
}

#[tokio::test]
async fn sessions_survive_a_restart() {
    let mut s = TestServer::start().await;
    let mut c = s.client();
    c.initialize_version("2025-06-18").await;
    c.rpc("logging/setLevel", json!({"level": "error"})).await;
    let session = c.session.clone().unwrap();
    s.restart().await;
    let mut again = Client::new(&s.url(), Some(&s.key));
    again.session = Some(session.clone());
    again.version = "2025-06-18".into();
    let tools = again.rpc("tools/list", json!({})).await;
    assert!(
        tools["result"]["tools"].as_array().unwrap().len() >= 6,
        "{tools}"
    );
    let users = again.call_ok("user-list", json!({})).await;
    assert_eq!(users["users"][0]["email"], "admin@example.com");
    // the restored session still refuses another user, and still counts toward the cap
    let (_, other) = s.other_admin("x@example.com").await;
    let r = again
        .clone()
        .with_key(&other)
        .post()
        .json(&ping(3))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(s.app().sessions.len(), 1);
}
