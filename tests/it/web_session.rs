//! A web session is a caller too: the admin page calls `/trex/mcp` with its cookie, same-origin
//! only, and its changes are audited `via: web`.

use serde_json::{Value, json};

use crate::common::{TestServer, post_headers};

#[tokio::test]
async fn a_web_session_calls_the_admin_server_from_its_own_origin_only() {
    let s = TestServer::start().await;
    let mut c = s.client();
    c.initialize().await;
    c.call_ok(
        "user-create",
        json!({"name": "Web", "email": "web@example.com", "password": "pass-word-1", "role": "admin"}),
    )
    .await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/trex/api/auth/login", s.base()))
        .json(&json!({"email": "web@example.com", "password": "pass-word-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let csrf = r.json::<Value>().await.unwrap()["csrfToken"]
        .as_str()
        .unwrap()
        .to_string();
    let cookie = set.split(';').next().unwrap().to_string();
    let origin = s.base();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "admin-page", "version": "1"}}});
    let post_with = |origin: Option<&str>, body: &Value, session: Option<&str>, token: &str| {
        let mut b = http
            .post(s.url())
            .headers(post_headers())
            .header("cookie", &cookie)
            .header("x-trex-csrf", token)
            .json(body);
        if let Some(o) = origin {
            b = b.header("origin", o);
        }
        if let Some(sid) = session {
            b = b
                .header("mcp-session-id", sid)
                .header("mcp-protocol-version", "2025-11-25");
        }
        b.send()
    };
    let post = |origin: Option<&str>, body: &Value, session: Option<&str>| {
        post_with(origin, body, session, &csrf)
    };
    // its own origin without the session's anti-CSRF token, or with another one, is refused
    for token in ["", "0123abcd"] {
        let r = post_with(Some(&origin), &init, None, token).await.unwrap();
        assert_eq!(r.status(), 403, "token {token:?}");
        let v: Value = r.json().await.unwrap();
        assert!(v.to_string().contains("X-Trex-Csrf"), "{v}");
    }
    // another origin (a page on another local port) and no origin at all are refused
    let r = post(Some("http://127.0.0.1:1"), &init, None).await.unwrap();
    assert_eq!(r.status(), 403);
    let r = post(None, &init, None).await.unwrap();
    assert_eq!(r.status(), 403);
    // its own origin works
    let r = post(Some(&origin), &init, None).await.unwrap();
    assert_eq!(r.status(), 200);
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_string();
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "role-create", "arguments": {"name": "from-the-page"}}});
    let r: Value = post(Some(&origin), &call, Some(&sid))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["result"]["isError"], false, "{r}");
    let audit = c
        .call_ok("audit-list", json!({"tool": "role-create", "via": "web"}))
        .await;
    assert_eq!(audit["entries"].as_array().unwrap().len(), 1, "{audit}");
    assert_eq!(audit["entries"][0]["keyId"], Value::Null);
    // after logout the cookie no longer works
    http.post(format!("{}/trex/api/auth/logout", s.base()))
        .header("cookie", &cookie)
        .header("x-trex-csrf", &csrf)
        .send()
        .await
        .unwrap();
    let r = post(Some(&origin), &call, Some(&sid)).await.unwrap();
    assert_eq!(r.status(), 401);
}
