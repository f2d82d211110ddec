//! Nodes: a running server registers itself and heartbeats; a node that stops heartbeating turns
//! suspect, then dead; configured peers are probed; the status figures add up.

use serde_json::{Value, json};

use crate::common::TestServer;

fn node<'a>(nodes: &'a Value, id: &str) -> &'a Value {
    nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .unwrap_or_else(|| panic!("no node {id} in {nodes}"))
}

#[tokio::test]
async fn nodes_heartbeat_turn_suspect_then_dead_and_peers_are_probed() {
    let other = TestServer::start().await;
    let peer = other.base();
    let s = TestServer::start_with(
        move |c| {
            c.cluster.heartbeat_secs = 1;
            c.cluster.peers = vec![peer.clone(), "http://127.0.0.1:1".into()];
        },
        |s| s,
    )
    .await;
    let mut c = s.client();
    c.initialize().await;
    let l = c.call_ok("cluster-list-nodes", json!({})).await;
    let me = l["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["self"] == true)
        .expect("this node is listed")
        .clone();
    assert_eq!(me["state"], "alive");
    assert_eq!(me["source"], "store");
    assert_eq!(me["listenAddress"], s.addr.to_string());
    assert_eq!(me["dataNode"], true);
    let peers: Vec<(&str, &str)> = l["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["source"] == "peer")
        .map(|n| (n["id"].as_str().unwrap(), n["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        peers,
        [
            (other.base().as_str(), "alive"),
            ("http://127.0.0.1:1", "dead")
        ]
    );

    // another node on this store that stops heartbeating
    let now = trex::util::now_ms();
    s.exec(
            "INSERT INTO nodes (id, name, listen, version, started_at, heartbeat_ms) VALUES ('node_gone', 'gone', '10.0.0.9:8001', '0.1.0', '2026-01-01T00:00:00Z', ?1)",
            [now],
    );
    let l = c.call_ok("cluster-list-nodes", json!({})).await;
    assert_eq!(node(&l, "node_gone")["state"], "alive");
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let l = c.call_ok("cluster-list-nodes", json!({})).await;
    assert_eq!(node(&l, "node_gone")["state"], "suspect", "{l}");
    // this node kept heartbeating meanwhile
    assert_eq!(
        node(&l, me["id"].as_str().unwrap())["state"],
        "alive",
        "{l}"
    );
    s.exec(
        "UPDATE nodes SET heartbeat_ms = ?1 WHERE id = 'node_gone'",
        [now - 13_000],
    );
    let l = c.call_ok("cluster-list-nodes", json!({})).await;
    assert_eq!(node(&l, "node_gone")["state"], "dead", "{l}");

    let st = c.call_ok("cluster-get-status", json!({})).await;
    assert_eq!(st["totalNodes"], 2, "{st}");
    assert!(st["sessions"].as_u64().unwrap() >= 1, "{st}");
    assert!(st["rssBytes"].as_u64().unwrap() > 1_000_000, "{st}");
    assert!(st["memoryUtilizationPct"].as_f64().unwrap() > 0.0, "{st}");
    assert_eq!(st["activeQueries"], 0);
    assert_eq!(st["pipelines"], 0);
}

#[tokio::test]
async fn services_are_listed_and_the_controllable_ones_stopped_and_started() {
    let s = TestServer::start().await;
    let mut c = s.client();
    c.initialize().await;
    let l = c.call_ok("cluster-list-services", json!({})).await;
    let status = |l: &Value, name: &str| {
        l["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["extension"] == name)
            .unwrap_or_else(|| panic!("no {name} in {l}"))["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for name in [
        "job-workers",
        "session-reaper",
        "activity-flusher",
        "node-heartbeat",
    ] {
        assert_eq!(status(&l, name), "running", "{name}");
    }
    assert_eq!(status(&l, "backup-scheduler"), "stopped");
    let e = c
        .call_err(
            "cluster-stop-service",
            json!({"extension": "session-reaper"}),
        )
        .await;
    assert!(e.contains("cannot be started or stopped"), "{e}");
    let e = c
        .call_err("cluster-stop-service", json!({"extension": "nope"}))
        .await;
    assert!(e.contains("No service 'nope'"), "{e}");
    let e = c
        .call_err(
            "cluster-start-service",
            json!({"extension": "backup-scheduler", "config": {"interval_secs": 5}}),
        )
        .await;
    assert!(e.contains("`config.interval_secs`"), "{e}");
    let r = c
        .call_ok(
            "cluster-start-service",
            json!({"extension": "backup-scheduler", "config": {"interval_secs": 60, "keep": 2}}),
        )
        .await;
    assert_eq!(r["status"], "running");
    assert_eq!(r["config"]["keep"], 2);
    let r = c
        .call_ok(
            "cluster-stop-service",
            json!({"extension": "backup-scheduler"}),
        )
        .await;
    assert_eq!(r["status"], "stopped");

    // paused job workers claim nothing until they are started again
    let r = c
        .call_ok("cluster-stop-service", json!({"extension": "job-workers"}))
        .await;
    assert_eq!(r["status"], "paused");
    let dir = s.data_dir().join("databases");
    std::fs::create_dir_all(&dir).unwrap();
    rusqlite::Connection::open(dir.join("a.db"))
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    c.call_ok(
        "database-create",
        json!({"id": "a", "dialect": "sqlite", "databaseName": "a.db"}),
    )
    .await;
    let mut m =
        crate::common::Client::new(&format!("{}/api/v1/mcp/migrations", s.base()), Some(&s.key));
    m.initialize().await;
    m.call_ok(
        "define_migration",
        json!({"id": "x", "interlays": [{"endpoint": "a"}], "data": {"type": "sql", "up": "CREATE TABLE u (y)"}}),
    )
    .await;
    let run = m
        .call_ok(
            "run_migration",
            json!({"migration_id": "x", "mode": "test", "wait": false}),
        )
        .await;
    let id = run["runId"].as_str().unwrap().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let g = m.call_ok("get_migration_run", json!({"run_id": id})).await;
    assert_eq!(g["state"], "pending", "{g}");
    c.call_ok("cluster-start-service", json!({"extension": "job-workers"}))
        .await;
    let mut state = String::new();
    for _ in 0..100 {
        let g = m.call_ok("get_migration_run", json!({"run_id": id})).await;
        state = g["state"].as_str().unwrap().to_string();
        if state == "completed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(state, "completed");
}
