//! Status paths of the Streamable HTTP transport, each checked as a client sees it.

use serde_json::{Value, json};

use crate::common::{TestServer, post_headers};

fn init_body() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
}

/// Asserts a JSON-RPC error body with `id: null` and returns its message.
async fn rpc_error(r: reqwest::Response, status: u16) -> String {
    assert_eq!(r.status().as_u16(), status);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["id"], Value::Null);
    v["error"]["message"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn initialize_negotiates_versions() {
    let s = TestServer::start().await;
    for (asked, got) in [
        ("2025-03-26", "2025-03-26"),
        ("2025-06-18", "2025-06-18"),
        ("2025-11-25", "2025-11-25"),
        ("2024-11-05", "2025-11-25"),
        ("2099-01-01", "2025-11-25"),
    ] {
        let mut c = s.client();
        let r = c.initialize_version(asked).await;
        assert_eq!(r["protocolVersion"], got, "asked {asked}");
        assert_eq!(r["serverInfo"]["name"], "trex");
        assert!(r["capabilities"]["tools"].is_object());
        assert!(c.session.as_ref().unwrap().len() == 64);
    }
}

#[tokio::test]
async fn bad_requests_get_json_errors_with_the_right_status() {
    let s = TestServer::start().await;
    let mut c = s.client();
    c.initialize().await;
    let http = reqwest::Client::new();
    let auth = format!("Bearer {}", s.key);

    // 406: Accept without text/event-stream
    let r = http
        .post(s.url())
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .json(&init_body())
        .send()
        .await
        .unwrap();
    assert!(rpc_error(r, 406).await.contains("Not Acceptable"));
    // 415: not JSON
    let r = http
        .post(s.url())
        .header("authorization", &auth)
        .header("content-type", "text/plain")
        .header("accept", "application/json, text/event-stream")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert!(rpc_error(r, 415).await.contains("Unsupported Media Type"));
    // 400 -32700: malformed JSON
    let r = http
        .post(s.url())
        .header("authorization", &auth)
        .headers(post_headers())
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32700);
    // 400: missing session id on a non-initialize request
    let r = http
        .post(s.url())
        .header("authorization", &auth)
        .headers(post_headers())
        .json(&json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}))
        .send()
        .await
        .unwrap();
    assert!(rpc_error(r, 400).await.contains("Mcp-Session-Id"));
    // 400: unsupported MCP-Protocol-Version inside a session
    let sid = c.session.clone().unwrap();
    let r = http
        .post(s.url())
        .header("authorization", &auth)
        .headers(post_headers())
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "1999-01-01")
        .json(&json!({"jsonrpc":"2.0","id":3,"method":"ping"}))
        .send()
        .await
        .unwrap();
    assert!(
        rpc_error(r, 400)
            .await
            .contains("Unsupported protocol version")
    );
    // any supported version is accepted inside the session (conformance sends 2025-03-26)
    let r = http
        .post(s.url())
        .header("authorization", &auth)
        .headers(post_headers())
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-03-26")
        .json(&json!({"jsonrpc":"2.0","id":4,"method":"ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // 404: unknown session
    let r = http
        .post(s.url())
        .header("authorization", &auth)
        .headers(post_headers())
        .header("mcp-session-id", "ab".repeat(32))
        .json(&json!({"jsonrpc":"2.0","id":5,"method":"ping"}))
        .send()
        .await
        .unwrap();
    assert!(rpc_error(r, 404).await.contains("Session not found"));
    // 405: PUT
    let r = http
        .put(s.url())
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    rpc_error(r, 405).await;
    // 404 JSON (not HTML) for an unknown path
    let r = http.get(format!("{}/nope", s.base())).send().await.unwrap();
    rpc_error(r, 404).await;
    // second initialize on a session → 400 -32600
    let r = c.post().json(&init_body()).send().await.unwrap();
    assert!(rpc_error(r, 400).await.contains("already initialized"));
    // invalid JSON-RPC object → 400 -32600
    let r = c
        .post()
        .json(&json!({"id": 9, "method": "ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32600);
    // unknown method → -32601; unknown tool → -32602
    assert_eq!(
        c.rpc("no/such/method", json!({})).await["error"]["code"],
        -32601
    );
    assert_eq!(
        c.rpc("tools/call", json!({"name": "nope"})).await["error"]["code"],
        -32602
    );
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_even_when_chunked() {
    let s = TestServer::start_with(|c| c.server.body_limit = 4096, |s| s).await;
    let mut c = s.client();
    c.initialize().await;
    let big = json!({"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"x".repeat(10_000)}});
    let r = c.post().json(&big).send().await.unwrap();
    let st = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(st, 413, "{v}");
    assert_eq!(v["id"], Value::Null);
    // chunked: no Content-Length
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..10).map(|_| Ok(vec![b' '; 1000])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let r = c.post().body(body).send().await.unwrap();
    assert_eq!(r.status(), 413);
    // a small chunked body is fine
    let small = json!({"jsonrpc":"2.0","id":2,"method":"ping"})
        .to_string()
        .into_bytes();
    let body =
        reqwest::Body::wrap_stream(futures_util::stream::iter(vec![Ok::<_, std::io::Error>(
            small,
        )]));
    let r = c.post().body(body).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn notifications_and_responses_get_202() {
    let s = TestServer::start().await;
    let mut c = s.client();
    c.initialize().await;
    let r = c
        .post()
        .json(&json!({"jsonrpc":"2.0","method":"notifications/whatever"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(r.text().await.unwrap().is_empty());
    let r = c
        .post()
        .json(&json!({"jsonrpc":"2.0","id":"trex-99","result":{}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

#[tokio::test]
async fn batches_only_under_2025_03_26() {
    let s = TestServer::start().await;
    let mut old = s.client();
    old.initialize_version("2025-03-26").await;
    let batch = json!([
        {"jsonrpc":"2.0","id":1,"method":"ping"},
        {"jsonrpc":"2.0","method":"notifications/initialized"},
        {"jsonrpc":"2.0","id":2,"method":"tools/list"}
    ]);
    let r = old.post().json(&batch).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    assert!(arr.iter().any(|m| m["id"] == 1 && m["result"] == json!({})));
    assert!(
        arr.iter()
            .any(|m| m["id"] == 2 && m["result"]["tools"].is_array())
    );

    let too_many: Vec<Value> = (0..101)
        .map(|i| json!({"jsonrpc":"2.0","id":i,"method":"ping"}))
        .collect();
    let r = old.post().json(&too_many).send().await.unwrap();
    assert_eq!(r.status(), 400);

    let mut new = s.client();
    new.initialize().await;
    let r = new.post().json(&batch).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("batches are not supported")
    );
}

#[tokio::test]
async fn oversized_client_metadata_is_refused_at_initialize() {
    let s = TestServer::start().await;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {"x": "y".repeat(20_000)}, "clientInfo": {"name": "t", "version": "1"}}});
    let r = s.client().post().json(&body).send().await.unwrap();
    assert!(r.headers().get("mcp-session-id").is_none());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32602);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("capabilities")
    );
}

#[tokio::test]
async fn stateless_era_discover_gets_a_clean_4xx() {
    let s = TestServer::start().await;
    let r = reqwest::Client::new()
        .post(s.url())
        .headers(post_headers())
        .bearer_auth(&s.key)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "server/discover")
        .json(&json!({"jsonrpc":"2.0","id":1,"method":"server/discover","params":{}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["code"].is_i64());
}

#[tokio::test]
async fn dns_rebinding_host_and_origin_are_refused() {
    let s = TestServer::start().await;
    let http = reqwest::Client::new();
    let send = |host: Option<&str>, origin: Option<&str>| {
        let mut b = http
            .post(s.url())
            .headers(post_headers())
            .bearer_auth(&s.key)
            .json(&init_body());
        if let Some(h) = host {
            b = b.header("host", h.to_string());
        }
        if let Some(o) = origin {
            b = b.header("origin", o.to_string());
        }
        b.send()
    };
    let r = send(Some("evil.example.com"), Some("http://evil.example.com"))
        .await
        .unwrap();
    assert!(rpc_error(r, 403).await.contains("Host"));
    let r = send(None, Some("http://evil.example.com")).await.unwrap();
    assert!(rpc_error(r, 403).await.contains("Origin"));
    let own = s.addr.to_string();
    let r = send(Some(&own), Some(&format!("http://{own}")))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn health_ready_and_metrics_answer() {
    let s = TestServer::start().await;
    let http = reqwest::Client::new();
    let v: Value = http
        .get(format!("{}/healthz", s.base()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "ok");
    let r = http
        .get(format!("{}/readyz", s.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut c = s.client();
    c.initialize().await;
    let m = http
        .get(format!("{}/metrics", s.base()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("trex_mcp_sessions 1"), "{m}");
    // tool calls are counted by server, tool and outcome, and timed
    c.call_ok("user-list", json!({})).await;
    c.call_err("user-get", json!({"userId": "nope"})).await;
    let m = http
        .get(format!("{}/metrics", s.base()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains(r#"trex_tool_calls_total{server="trex",tool="user-list",outcome="ok"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"trex_tool_calls_total{server="trex",tool="user-get",outcome="error"} 1"#),
        "{m}"
    );
    assert!(m.contains("trex_tool_errors_total 1"), "{m}");
    assert!(
        m.contains(r#"trex_tool_call_seconds_bucket{le="+Inf"} 2"#),
        "{m}"
    );
    assert!(
        m.contains("trex_jobs_queued 0") && m.contains("trex_process_resident_bytes"),
        "{m}"
    );
}

#[tokio::test]
async fn metrics_exposure_is_a_config_choice() {
    let http = reqwest::Client::new();
    let off = TestServer::start_with(|c| c.server.metrics = "off".into(), |s| s).await;
    let r = http
        .get(format!("{}/metrics", off.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let keyed = TestServer::start_with(|c| c.server.metrics = "key".into(), |s| s).await;
    let r = http
        .get(format!("{}/metrics", keyed.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(format!("{}/metrics", keyed.base()))
        .bearer_auth(&keyed.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("trex_tool_call_seconds_count")
    );
}
