//! The tasks extension of 2026-07-28 on the real servers: long tools (`run_migration`,
//! `backup-create`) become tasks for a client that declares the extension and stay plain calls
//! for one that does not; a task is a row, so another connection polls it, a restart keeps
//! it, and a task whose runner died is answered from the run or job it follows (or failed
//! when it follows nothing durable; `kill -9` mid-task is in `cli.rs`); only the key that made a task sees it; the header and capability
//! rules hold.

use serde_json::{Value, json};

use crate::common::{Client, TestServer, parse_sse, post_headers};

const V: &str = "2026-07-28";
const TASKS: &str = "io.modelcontextprotocol/tasks";

/// One stateless request to `url`: `(status, body)`. `tasks`: declare the extension.
pub(crate) async fn send(
    url: &str,
    key: &str,
    method: &str,
    mut params: Value,
    tasks: bool,
) -> (u16, Value) {
    let caps = if tasks {
        json!({"extensions": {TASKS: {}}})
    } else {
        json!({})
    };
    params["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": V,
        "io.modelcontextprotocol/clientCapabilities": caps});
    let mut h = post_headers();
    h.insert("authorization", format!("Bearer {key}").parse().unwrap());
    h.insert("mcp-protocol-version", V.parse().unwrap());
    h.insert("mcp-method", method.parse().unwrap());
    if let Some(n) = params
        .get("name")
        .or_else(|| params.get("taskId"))
        .and_then(Value::as_str)
    {
        h.insert("mcp-name", n.parse().unwrap());
    }
    // a client of its own each time: nothing ties a poll to the connection that made the task
    let r = reqwest::Client::new()
        .post(url)
        .headers(h)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let sse = r
        .headers()
        .get("content-type")
        .is_some_and(|c| c.to_str().unwrap().starts_with("text/event-stream"));
    let mut text = r.text().await.unwrap();
    if sse {
        text = parse_sse(&text).last().unwrap().data.clone();
    }
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method}: {status} {text:?} is not JSON: {e}"));
    (status, body)
}

/// Polls `tasks/get` until the task has ended.
async fn settle(url: &str, key: &str, id: &str) -> Value {
    for _ in 0..200 {
        let (st, b) = send(url, key, "tasks/get", json!({"taskId": id}), true).await;
        assert_eq!(st, 200, "{b}");
        let r = b["result"].clone();
        assert_eq!(r["resultType"], "complete", "{b}");
        if matches!(
            r["status"].as_str(),
            Some("completed" | "failed" | "cancelled")
        ) {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("task {id} did not end");
}

#[tokio::test]
async fn long_tools_run_as_tasks_polled_from_anywhere_and_kept_across_restarts() {
    let mut s = TestServer::start().await;
    let mut admin = s.client();
    admin.initialize().await;
    let path = s.data_dir().join("databases/shop.db");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT); INSERT INTO users (email) VALUES ('a@x');")
        .unwrap();
    admin
        .call_ok(
            "database-create",
            json!({"id": "shop", "dialect": "sqlite", "databaseName": "shop.db"}),
        )
        .await;
    let mut mig = Client::new(&format!("{}/api/v1/mcp/migrations", s.base()), Some(&s.key));
    mig.initialize().await;
    mig.call_ok(
        "define_migration",
        json!({"id": "nick", "interlays": [{"endpoint": "shop"}],
            "data": {"type": "sql", "up": "ALTER TABLE users ADD COLUMN nick TEXT"}}),
    )
    .await;
    let murl = format!("{}/api/v1/mcp/migrations", s.base());

    // discovery names the extension
    let (_, d) = send(&murl, &s.key, "server/discover", json!({}), true).await;
    assert!(
        d["result"]["capabilities"]["extensions"][TASKS].is_object(),
        "{d}"
    );

    // a client that declared the extension gets a task, written before it hears of it
    let call =
        json!({"name": "run_migration", "arguments": {"migration_id": "nick", "mode": "test"}});
    let (st, c) = send(&murl, &s.key, "tools/call", call.clone(), true).await;
    assert_eq!(st, 200, "{c}");
    let created = &c["result"];
    assert_eq!(created["resultType"], "task", "{c}");
    let id = created["taskId"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32, "128 random bits: {id}");
    assert!(created.get("result").is_none() && created.get("requestState").is_none());
    assert!(
        created["ttlMs"].as_i64().unwrap() > 0 && created["pollIntervalMs"].as_i64().unwrap() > 0
    );

    // another admin's key does not see it; without the extension the methods are refused
    let (_, other) = s.other_admin("other@example.com").await;
    let (_, b) = send(&murl, &other, "tasks/get", json!({"taskId": id}), true).await;
    assert_eq!(b["error"]["code"], -32602, "{b}");
    let (st, b) = send(&murl, &s.key, "tasks/get", json!({"taskId": id}), false).await;
    assert_eq!(
        (st, b["error"]["code"].clone()),
        (400, json!(-32021)),
        "{b}"
    );

    let done = settle(&murl, &s.key, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let run = &done["result"]["structuredContent"];
    assert_eq!(run["state"], "completed", "{done}");
    assert_eq!(run["targets"][0]["database"], "shop", "{done}");

    // without the extension the same tool answers in the request
    let (_, plain) = send(&murl, &s.key, "tools/call", call.clone(), false).await;
    assert_eq!(plain["result"]["resultType"], "complete", "{plain}");
    assert_eq!(
        plain["result"]["structuredContent"]["state"], "completed",
        "{plain}"
    );

    // the admin server's backup-create is a task too
    let url = s.url();
    let (_, c) = send(
        &url,
        &s.key,
        "tools/call",
        json!({"name": "backup-create", "arguments": {}}),
        true,
    )
    .await;
    let backup_task = c["result"]["taskId"].as_str().unwrap().to_string();
    let b = settle(&url, &s.key, &backup_task).await;
    assert_eq!(b["status"], "completed", "{b}");
    assert!(b["result"]["structuredContent"]["file"].is_string(), "{b}");

    // a restart keeps the tasks: they are rows
    s.restart().await;
    let murl = format!("{}/api/v1/mcp/migrations", s.base());
    let again = settle(&murl, &s.key, &id).await;
    assert_eq!(again["result"], done["result"]);

    // a task whose runner died mid-way is answered from the run it follows...
    s.exec(
        "UPDATE mcp_tasks SET status = 'working', result = NULL, lease_until = 0 WHERE id = ?1",
        [&id],
    );
    let resumed = settle(&murl, &s.key, &id).await;
    assert_eq!(resumed["status"], "completed", "{resumed}");
    assert_eq!(resumed["result"]["structuredContent"]["state"], "completed");
    // ...backup-create's from the job it follows...
    s.exec(
        "UPDATE mcp_tasks SET status = 'working', result = NULL, lease_until = 0 WHERE id = ?1",
        [&backup_task],
    );
    let url = s.url();
    let from_job = settle(&url, &s.key, &backup_task).await;
    assert_eq!(from_job["status"], "completed", "{from_job}");
    assert_eq!(from_job["result"], b["result"], "the job's stored result");
    // ...and one that follows nothing durable is failed, saying why
    s.exec(
        "UPDATE mcp_tasks SET status = 'working', result = NULL, lease_until = 0, backing = NULL WHERE id = ?1",
        [&backup_task],
    );
    let lost = settle(&url, &s.key, &backup_task).await;
    assert_eq!(lost["status"], "failed", "{lost}");
    assert_eq!(lost["error"]["code"], -32603, "{lost}");
    assert!(lost.get("result").is_none());

    // tasks/cancel of an ended task is acknowledged; an unknown id is -32602; a mismatched
    // Mcp-Name is a header mismatch
    let (_, ack) = send(
        &url,
        &s.key,
        "tasks/cancel",
        json!({"taskId": backup_task}),
        true,
    )
    .await;
    assert_eq!(ack["result"]["resultType"], "complete", "{ack}");
    assert!(ack["result"].get("status").is_none(), "{ack}");
    // the cancel is in the audit log, with the task it named
    let mut admin = s.client();
    admin.initialize().await;
    let audit = admin
        .call_ok("audit-list", json!({"tool": "tasks/cancel"}))
        .await;
    let row = &audit["entries"][0];
    assert_eq!(row["arguments"]["taskId"], backup_task.as_str(), "{audit}");
    assert_eq!(row["outcome"], "ok", "{audit}");
    let (_, b) = send(
        &url,
        &s.key,
        "tasks/get",
        json!({"taskId": "0".repeat(32)}),
        true,
    )
    .await;
    assert_eq!(b["error"]["code"], -32602, "{b}");
    let r = reqwest::Client::new()
        .post(&url)
        .headers(post_headers())
        .header("authorization", format!("Bearer {}", s.key))
        .header("mcp-protocol-version", V)
        .header("mcp-method", "tasks/get")
        .header("mcp-name", "someone-else")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {"taskId": id,
            "_meta": {"io.modelcontextprotocol/protocolVersion": V,
                "io.modelcontextprotocol/clientCapabilities": {"extensions": {TASKS: {}}}}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], -32020, "{b}");
}
