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
    s.sql()
        .execute(
            "INSERT INTO nodes (id, name, listen, version, started_at, heartbeat_ms) VALUES ('node_gone', 'gone', '10.0.0.9:8001', '0.1.0', '2026-01-01T00:00:00Z', ?1)",
            [now],
        )
        .unwrap();
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
    s.sql()
        .execute(
            "UPDATE nodes SET heartbeat_ms = ?1 WHERE id = 'node_gone'",
            [now - 13_000],
        )
        .unwrap();
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
