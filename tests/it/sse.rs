//! SSE behaviour: priming, unique event ids, the standalone GET stream, keep-alives,
//! `Last-Event-ID` replay of one stream only, and cancellation.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use trex::mcp::server::McpServer;
use trex::mcp::tool::{Annotations, Tool, ToolCtx, ToolOutput};

use crate::common::{SseReader, TestServer};

const WAIT: Duration = Duration::from_secs(5);

/// Adds `ticker` (progress + logs, `steps` × 60 ms) and `slow` (counts until cancelled).
fn with_test_tools(
    counter: Arc<AtomicUsize>,
) -> impl Fn(McpServer) -> McpServer + Send + Sync + 'static {
    move |s| {
        let counter = counter.clone();
        let schema = json!({"type":"object","properties":{"steps":{"type":"integer"}}});
        s.tool(
            Tool::raw(
                "ticker",
                "test: progress and logs",
                schema,
                Annotations::READ,
                |c: ToolCtx, a: Value| async move {
                    let steps = a["steps"].as_u64().unwrap_or(3);
                    for i in 0..steps {
                        c.call
                            .progress(i as f64 + 1.0, Some(steps as f64), Some("tick"));
                        c.call.log("info", Some("ticker"), json!({"step": i}));
                        tokio::time::sleep(Duration::from_millis(60)).await;
                    }
                    ToolOutput::text("done")
                },
            )
            .streaming(),
        )
        .tool(
            Tool::raw(
                "slow",
                "test: runs until cancelled",
                json!({"type":"object"}),
                Annotations::READ,
                move |_c: ToolCtx, _a| {
                    let counter = counter.clone();
                    async move {
                        for _ in 0..200 {
                            counter.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(25)).await;
                        }
                        ToolOutput::text("finished")
                    }
                },
            )
            .streaming(),
        )
    }
}

#[tokio::test]
async fn tool_calls_with_progress_stream_priming_notifications_then_the_result() {
    let s = TestServer::start_with(|_| {}, with_test_tools(Arc::default())).await;
    let mut c = s.client();
    c.initialize().await;
    let r = c
        .post()
        .json(&json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"ticker","arguments":{"steps":3},"_meta":{"progressToken":"tok"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut rd = SseReader::new(r);
    let prime = rd.next(WAIT).await.unwrap();
    assert!(
        prime.id.is_some() && prime.data.is_empty(),
        "first event must be the priming event"
    );
    assert!(prime.retry.is_some(), "priming event carries retry");
    let mut ids = HashSet::new();
    let mut progress = Vec::new();
    let mut logs = 0;
    loop {
        let (id, m) = rd
            .next_message(WAIT)
            .await
            .expect("stream ended before the result");
        assert!(ids.insert(id.unwrap()), "event ids must be unique");
        match m["method"].as_str() {
            Some("notifications/progress") => {
                assert_eq!(m["params"]["progressToken"], "tok");
                progress.push(m["params"]["progress"].as_f64().unwrap());
            }
            Some("notifications/message") => logs += 1,
            _ => {
                assert_eq!(m["id"], 7);
                assert_eq!(m["result"]["content"][0]["text"], "done");
                break;
            }
        }
    }
    assert_eq!(progress, vec![1.0, 2.0, 3.0]);
    assert_eq!(logs, 3);
    assert!(
        rd.next(Duration::from_millis(500)).await.is_none(),
        "stream ends after the result"
    );
}

#[tokio::test]
async fn log_level_filters_notifications() {
    let s = TestServer::start_with(|_| {}, with_test_tools(Arc::default())).await;
    let mut c = s.client();
    c.initialize().await;
    assert_eq!(
        c.rpc("logging/setLevel", json!({"level": "warning"})).await["result"],
        json!({})
    );
    let bad = c.rpc("logging/setLevel", json!({"level": "loud"})).await;
    assert_eq!(bad["error"]["code"], -32602);
    let r = c.post().json(&json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ticker","arguments":{"steps":2}}})).send().await.unwrap();
    let body = r.text().await.unwrap();
    assert!(
        !body.contains("notifications/message"),
        "info logs must be filtered at level warning: {body}"
    );
    assert!(body.contains("\"done\""));
}

#[tokio::test]
async fn standalone_get_stream_primes_keeps_alive_and_is_single() {
    let s = TestServer::start_with(|c| c.mcp.keepalive_secs = 1, |s| s).await;
    let mut c = s.client();
    c.initialize().await;
    let r = c.get().send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut rd = SseReader::new(r);
    let prime = rd.next(WAIT).await.unwrap();
    assert!(prime.id.is_some() && prime.data.is_empty());
    // a second standalone stream while the first is open → 409
    let r2 = c.get().send().await.unwrap();
    assert_eq!(r2.status(), 409);
    // keep-alive comment within ~1 s
    let ka = rd.next(Duration::from_secs(3)).await.unwrap();
    assert!(ka.comment, "expected a keep-alive comment, got {ka:?}");
    // GET without event-stream Accept → 406; without session → 400
    let r = c
        .http
        .get(&c.url)
        .bearer_auth(&s.key)
        .header("mcp-session-id", c.session.clone().unwrap())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 406);
    let r = c
        .http
        .get(&c.url)
        .bearer_auth(&s.key)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    drop(rd);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        c.get().send().await.unwrap().status(),
        200,
        "after the first closes, a new GET is allowed"
    );
}

#[tokio::test]
async fn last_event_id_replays_that_stream_only() {
    let s = TestServer::start_with(|_| {}, with_test_tools(Arc::default())).await;
    let mut c = s.client();
    c.initialize().await;
    let call = |id: i64, steps: i64| {
        c.post()
            .json(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"ticker","arguments":{"steps":steps},"_meta":{"progressToken":id}}}))
            .send()
    };
    let (a, b) = tokio::join!(call(1, 6), call(2, 6));
    let mut ra = SseReader::new(a.unwrap());
    let other = SseReader::new(b.unwrap());
    ra.next(WAIT).await.unwrap(); // priming
    let (first_id, _) = ra.next_message(WAIT).await.unwrap();
    let first_id = first_id.unwrap();
    drop(ra); // disconnect: not a cancellation, the work goes on
    drop(other);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = c
        .get()
        .header("last-event-id", &first_id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut rd = SseReader::new(r);
    let stream_prefix = first_id.split('-').next().unwrap().to_string();
    let mut got_result = false;
    let mut progress = Vec::new();
    while let Some((id, m)) = rd.next_message(WAIT).await {
        let id = id.unwrap();
        assert!(
            id.starts_with(&format!("{stream_prefix}-")),
            "replayed {id} from another stream"
        );
        assert_ne!(id, first_id, "the acknowledged event must not be replayed");
        if m["method"] == "notifications/progress" {
            assert_eq!(m["params"]["progressToken"], 1);
            progress.push(m["params"]["progress"].as_f64().unwrap());
        }
        if m["id"] == 1 {
            got_result = true;
            break;
        }
    }
    assert!(
        got_result,
        "the result of the interrupted call arrives on resume"
    );
    assert_eq!(progress.first(), Some(&2.0));
    // an id of no stream of this session
    let r = c
        .get()
        .header("last-event-id", "999-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn cancellation_stops_a_slow_call_without_a_response() {
    let counter = Arc::new(AtomicUsize::new(0));
    let s = TestServer::start_with(|_| {}, with_test_tools(counter.clone())).await;
    let mut c = s.client();
    c.initialize().await;
    let r = c
        .post()
        .json(
            &json!({"jsonrpc":"2.0","id":"slow-1","method":"tools/call","params":{"name":"slow"}}),
        )
        .send()
        .await
        .unwrap();
    let mut rd = SseReader::new(r);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(counter.load(Ordering::SeqCst) > 0, "the call started");
    let n = c.post().json(&json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"slow-1","reason":"test"}})).send().await.unwrap();
    assert_eq!(n.status(), 202);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after_cancel = counter.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        counter.load(Ordering::SeqCst),
        after_cancel,
        "work went on after cancellation"
    );
    assert!(
        rd.next_message(Duration::from_secs(2)).await.is_none(),
        "a cancelled request gets no response"
    );
}
