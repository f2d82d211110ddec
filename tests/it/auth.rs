//! Every way a request can fail authentication answers 401 with a Bearer challenge, before the
//! body is read; good keys keep working without a database write per request.

use std::time::Duration;

use serde_json::{Value, json};
use trex::auth::keys;
use trex::store::api_keys;

use crate::common::{Client, TestServer, post_headers};

async fn expect_401(r: reqwest::Response) {
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["message"], "Invalid or missing API key");
    assert_eq!(v["id"], Value::Null);
}

fn ping() -> Value {
    json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}})
}

#[tokio::test]
async fn missing_malformed_and_unknown_keys_get_401() {
    let s = TestServer::start().await;
    let http = reqwest::Client::new();
    for auth in [
        None,
        Some("Basic abc".to_string()),
        Some("Bearer trex_123".to_string()),
        Some(format!("Bearer {}", s.key.to_uppercase())),
        Some(format!("Bearer {}", keys::generate())),
    ] {
        let mut b = http.post(s.url()).headers(post_headers()).json(&ping());
        if let Some(a) = &auth {
            b = b.header("authorization", a);
        }
        expect_401(b.send().await.unwrap()).await;
    }
    // GET and DELETE are guarded too
    expect_401(
        http.get(s.url())
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap(),
    )
    .await;
    expect_401(http.delete(s.url()).send().await.unwrap()).await;
}

#[tokio::test]
async fn auth_is_checked_before_the_body_is_read() {
    let s = TestServer::start_with(|c| c.server.body_limit = 2048, |s| s).await;
    // an oversized body without a key: 401, not 413
    let r = reqwest::Client::new()
        .post(s.url())
        .headers(post_headers())
        .body("x".repeat(10_000))
        .send()
        .await
        .unwrap();
    expect_401(r).await;
}

#[tokio::test]
async fn revoked_key_is_refused_on_its_next_request() {
    let s = TestServer::start().await;
    let mut c = s.client();
    c.initialize().await;
    let created = c
        .call_ok(
            "api-key-create",
            json!({"userId": s.admin_id, "name": "temp"}),
        )
        .await;
    let temp_key = created["key"].as_str().unwrap().to_string();
    let mut t = Client::new(&s.url(), Some(&temp_key));
    t.initialize().await;
    assert!(t.rpc("ping", json!({})).await["result"].is_object());
    c.call_ok("api-key-revoke", json!({"keyId": created["id"]}))
        .await;
    let r = t
        .post()
        .json(&json!({"jsonrpc":"2.0","id":5,"method":"ping"}))
        .send()
        .await
        .unwrap();
    expect_401(r).await;
}

#[tokio::test]
async fn expired_key_is_refused() {
    let s = TestServer::start().await;
    let key = keys::generate();
    let (h, p, uid) = (keys::hash(&key), keys::prefix(&key), s.admin_id.clone());
    let soon = trex::util::rfc3339(chrono::Utc::now() + chrono::Duration::milliseconds(800));
    s.app()
        .store
        .run(move |c| api_keys::insert(c, &uid, "short-lived", &h, &p, Some(&soon), None))
        .await
        .unwrap();
    let mut c = Client::new(&s.url(), Some(&key));
    c.initialize().await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let r = c
        .post()
        .json(&json!({"jsonrpc":"2.0","id":5,"method":"ping"}))
        .send()
        .await
        .unwrap();
    expect_401(r).await;
}

/// Out-of-band store changes (the CLI, another node) reach the key cache through the watcher.
async fn until_401(c: &Client) {
    for _ in 0..40 {
        let r = c
            .post()
            .json(&json!({"jsonrpc":"2.0","id":5,"method":"ping"}))
            .send()
            .await
            .unwrap();
        if r.status() == 401 {
            expect_401(r).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("key still accepted 2 s after the store changed");
}

#[tokio::test]
async fn banned_or_demoted_users_keys_stop_working() {
    let s = TestServer::start().await;
    let (uid, key) = s.other_admin("banned@example.com").await;
    let mut c = Client::new(&s.url(), Some(&key));
    c.initialize().await;
    let id = uid.clone();
    s.exec("UPDATE users SET banned = 1 WHERE id = ?1", [&id]);
    until_401(&c).await;

    // a ban that has ended no longer blocks
    let id = uid.clone();
    s.exec(
        "UPDATE users SET ban_expires = '2000-01-01T00:00:00.000Z' WHERE id = ?1",
        [&id],
    );
    let mut ok = false;
    for _ in 0..40 {
        if c.post()
            .json(&json!({"jsonrpc":"2.0","id":6,"method":"ping"}))
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "expired ban still blocks");

    let (uid2, key2) = s.other_admin("demoted@example.com").await;
    let mut d = Client::new(&s.url(), Some(&key2));
    d.initialize().await;
    s.exec("UPDATE users SET role = 'user' WHERE id = ?1", [&uid2]);
    until_401(&d).await;
}

#[tokio::test]
async fn non_admin_keys_are_refused_and_cannot_be_minted() {
    let s = TestServer::start().await;
    let mut c = s.client();
    c.initialize().await;
    let u = c
        .call_ok(
            "user-create",
            json!({"name": "Plain", "email": "plain@example.com"}),
        )
        .await;
    assert_eq!(u["role"], "user");
    let err = c
        .call_err("api-key-create", json!({"userId": u["id"], "name": "x"}))
        .await;
    assert_eq!(err, "API keys can only be created for admin users");
    // a key planted directly in the store for a non-admin still does not authenticate
    let key = keys::generate();
    let (h, p, uid) = (
        keys::hash(&key),
        keys::prefix(&key),
        u["id"].as_str().unwrap().to_string(),
    );
    s.app()
        .store
        .run(move |c| api_keys::insert(c, &uid, "planted", &h, &p, None, None))
        .await
        .unwrap();
    let r = reqwest::Client::new()
        .post(s.url())
        .headers(post_headers())
        .bearer_auth(&key)
        .json(&ping())
        .send()
        .await
        .unwrap();
    expect_401(r).await;
}

#[tokio::test]
async fn last_used_is_flushed_in_batches() {
    let s = TestServer::start_with(|c| c.store.flush_interval_secs = 1, |s| s).await;
    let mut c = s.client();
    c.initialize().await;
    for _ in 0..5 {
        c.rpc("ping", json!({})).await;
    }
    let mut seen = None;
    for _ in 0..30 {
        let keys = c.call_ok("api-key-list", json!({})).await;
        if let Some(t) = keys["keys"][0]["lastUsedAt"].as_str() {
            seen = Some(t.to_string());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.is_some(), "lastUsedAt never written");
}
