//! The stateless 2026-07-28 era on the real `/trex/mcp`, beside the session era: discovery,
//! the header rules and their error codes, auth and audit exactly as in a session, results with
//! `resultType`, `ttlMs` and the server's identity, progress over a per-request stream, and the
//! multi-round-trip `requestState` bound to the key that got it.

use serde_json::{Value, json};

use crate::common::{TestServer, parse_sse, post_headers};

const V: &str = "2026-07-28";

fn meta() -> Value {
    json!({"io.modelcontextprotocol/protocolVersion": V,
           "io.modelcontextprotocol/clientCapabilities": {},
           "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"}})
}

/// A stateless request: `(status, body)`; an SSE answer is reduced to its last message.
async fn send(
    s: &TestServer,
    key: &str,
    method: &str,
    mut params: Value,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    if params.get("_meta").is_none() {
        params["_meta"] = meta();
    }
    let name = params
        .get("name")
        .or_else(|| params.get("uri"))
        .and_then(Value::as_str)
        .map(str::to_string);
    // the defaults, then `headers` in their place (a header replaced, not repeated)
    let mut h = post_headers();
    let mut set = |k: &str, v: &str| {
        h.insert(
            reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    };
    set("authorization", &format!("Bearer {key}"));
    set("mcp-protocol-version", V);
    set("mcp-method", method);
    if let Some(n) = &name {
        set("mcp-name", n);
    }
    for (k, v) in headers {
        set(k, v);
    }
    let r = reqwest::Client::new()
        .post(s.url())
        .headers(h)
        .json(&json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert!(
        r.headers().get("mcp-session-id").is_none(),
        "no session in this era"
    );
    let sse = r
        .headers()
        .get("content-type")
        .is_some_and(|c| c.to_str().unwrap().starts_with("text/event-stream"));
    let text = r.text().await.unwrap();
    let body = if sse {
        let events = parse_sse(&text);
        assert!(
            events.iter().all(|e| e.id.is_none()),
            "no event ids: {text}"
        );
        serde_json::from_str(&events.last().unwrap().data).unwrap()
    } else {
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    (status, body)
}

#[tokio::test]
async fn discovery_and_the_header_rules() {
    let s = TestServer::start().await;
    let k = s.key.clone();
    let (st, v) = send(&s, &k, "server/discover", json!({}), &[]).await;
    assert_eq!(st, 200, "{v}");
    let r = &v["result"];
    assert_eq!(r["supportedVersions"][0], V, "{v}");
    assert!(
        r["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("2025-11-25"))
    );
    assert_eq!(r["resultType"], "complete");
    assert_eq!(
        r["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "trex"
    );
    assert!(r["capabilities"]["tools"].is_object(), "{v}");

    // a revision not served: 400 and the versions that are
    let r = reqwest::Client::new()
        .post(s.url())
        .headers(post_headers())
        .header("authorization", format!("Bearer {k}"))
        .header("mcp-protocol-version", "2099-01-01")
        .header("mcp-method", "tools/list")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2099-01-01", "io.modelcontextprotocol/clientCapabilities": {}}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32022, "{v}");
    assert_eq!(v["error"]["data"]["requested"], "2099-01-01");
    assert_eq!(v["id"], 1);

    // headers that disagree with the body, or are missing
    let (st, v) = send(
        &s,
        &k,
        "tools/list",
        json!({}),
        &[("mcp-method", "tools/call")],
    )
    .await;
    assert_eq!(
        (st, v["error"]["code"].clone()),
        (400, json!(-32020)),
        "{v}"
    );
    let (st, v) = send(
        &s,
        &k,
        "tools/call",
        json!({"name": "user-list", "arguments": {}}),
        &[("mcp-name", "user-delete")],
    )
    .await;
    assert_eq!(
        (st, v["error"]["code"].clone()),
        (400, json!(-32020)),
        "{v}"
    );
    // the base64 form of Mcp-Name is decoded before the comparison
    let (st, v) = send(
        &s,
        &k,
        "tools/call",
        json!({"name": "user-list", "arguments": {}}),
        &[("mcp-name", "=?base64?dXNlci1saXN0?=")],
    )
    .await;
    assert_eq!(st, 200, "{v}");
    // _meta without its required members: -32602
    let (st, v) = send(
        &s,
        &k,
        "tools/list",
        json!({"_meta": {"io.modelcontextprotocol/protocolVersion": V}}),
        &[],
    )
    .await;
    assert_eq!(
        (st, v["error"]["code"].clone()),
        (400, json!(-32602)),
        "{v}"
    );
    // what this era removed: 404 and -32601
    for m in ["ping", "logging/setLevel", "initialize"] {
        let (st, v) = send(&s, &k, m, json!({}), &[]).await;
        assert_eq!(
            (st, v["error"]["code"].clone()),
            (404, json!(-32601)),
            "{m}: {v}"
        );
    }
    // no key, a bad key: 401 as in a session
    let (st, _) = send(
        &s,
        "trex_0000000000000000000000000000000000000000000000000",
        "tools/list",
        json!({}),
        &[],
    )
    .await;
    assert_eq!(st, 401);
    // another Origin: 403
    let (st, _) = send(
        &s,
        &k,
        "tools/list",
        json!({}),
        &[("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(st, 403);
    // the session era goes on beside it
    let mut c = s.client();
    c.initialize().await;
    c.call_ok("user-list", json!({})).await;
}

#[tokio::test]
async fn tools_behave_and_are_audited_as_in_a_session() {
    let s = TestServer::start().await;
    let k = s.key.clone();
    let (st, v) = send(&s, &k, "tools/list", json!({}), &[]).await;
    assert_eq!(st, 200);
    let r = &v["result"];
    assert_eq!(r["resultType"], "complete");
    assert!(
        r["ttlMs"].as_u64().is_some() && r["cacheScope"] == "private",
        "{r}"
    );
    assert!(r["tools"].as_array().unwrap().len() > 40);
    let (_, v) = send(
        &s,
        &k,
        "tools/call",
        json!({"name": "role-create", "arguments": {"name": "stateless-role"}}),
        &[],
    )
    .await;
    assert_eq!(v["result"]["isError"], false, "{v}");
    assert_eq!(v["result"]["resultType"], "complete");
    // a bad argument names the field, as in a session
    let (_, v) = send(
        &s,
        &k,
        "tools/call",
        json!({"name": "role-create", "arguments": {"name": 5}}),
        &[],
    )
    .await;
    assert_eq!(v["result"]["isError"], true, "{v}");
    assert!(v.to_string().contains("`name`"), "{v}");
    // an unknown resource is -32602 in this era
    let (_, v) = send(&s, &k, "resources/read", json!({"uri": "trex://nope"}), &[]).await;
    assert_eq!(v["error"]["code"], -32602, "{v}");
    let (_, v) = send(
        &s,
        &k,
        "resources/read",
        json!({"uri": "trex://plugin-development-guide"}),
        &[],
    )
    .await;
    assert!(v["result"]["contents"][0]["text"].is_string(), "{v}");
    // audited like any call, and no session was opened
    let mut c = s.client();
    c.initialize().await;
    let a = c
        .call_ok("audit-list", json!({"tool": "role-create"}))
        .await;
    assert_eq!(a["entries"].as_array().unwrap().len(), 2, "{a}");
    let sessions = c.call_ok("session-list", json!({})).await;
    assert_eq!(
        sessions["sessions"].as_array().unwrap().len(),
        1,
        "{sessions}"
    );
}

#[tokio::test]
async fn progress_comes_on_a_stream_of_its_own() {
    let s = TestServer::start().await;
    let k = s.key.clone();
    let dir = s.data_dir().join("databases");
    std::fs::create_dir_all(&dir).unwrap();
    rusqlite::Connection::open(dir.join("p.db"))
        .unwrap()
        .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        .unwrap();
    let mut m = meta();
    m["progressToken"] = json!("p1");
    let r = reqwest::Client::new()
        .post(s.url())
        .headers(post_headers())
        .header("authorization", format!("Bearer {k}"))
        .header("mcp-protocol-version", V)
        .header("mcp-method", "tools/call")
        .header("mcp-name", "backup-create")
        .json(&json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
            "params": {"name": "backup-create", "arguments": {}, "_meta": m}}))
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = r.text().await.unwrap();
    let msgs: Vec<Value> = parse_sse(&text)
        .iter()
        .filter(|e| !e.data.is_empty())
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    let last = msgs.last().unwrap();
    assert_eq!(last["id"], 9, "{text}");
    assert_eq!(last["result"]["isError"], false, "{text}");
    assert!(
        msgs.iter().all(|m| m
            .get("method")
            .is_none_or(|m| m.as_str().unwrap().starts_with("notifications/"))),
        "only notifications before the result: {text}"
    );
}

#[tokio::test]
async fn a_request_state_is_bound_to_what_it_was_issued_for() {
    let s = TestServer::start().await;
    let k = s.key.clone();
    // a requestState that this server did not issue
    let (st, v) = send(
        &s,
        &k,
        "tools/call",
        json!({"name": "user-list", "arguments": {}, "requestState": "v1:00112233445566778899aabbccddeeff00112233445566778899"}),
        &[],
    )
    .await;
    assert_eq!(
        (st, v["error"]["code"].clone()),
        (400, json!(-32602)),
        "{v}"
    );
    // one issued for another key, method and target does not open for this request either
    let sealed = s.app().master.seal(
        r#"{"k":"other","m":"tools/call","n":"user-list","a":"x","t":0,"r":{}}"#,
        "mcp-request-state",
    );
    let (st, v) = send(
        &s,
        &k,
        "tools/call",
        json!({"name": "user-list", "arguments": {}, "requestState": sealed}),
        &[],
    )
    .await;
    assert_eq!(
        (st, v["error"]["code"].clone()),
        (400, json!(-32602)),
        "{v}"
    );
}
