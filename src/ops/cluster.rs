//! This node among the nodes that share the control store: registration and heartbeat (rows of
//! `nodes`, so several nodes on a shared PostgreSQL store later need no new mechanism), the node
//! list with each node `alive`, `suspect` or `dead` by the age of its heartbeat plus the
//! configured `cluster.peers` probed at `/healthz`, and the node's status figures.

use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Serialize;

use crate::app::App;
use crate::error::Result;
use crate::store::nodes::{self, Node};
use crate::util::{now_ms, random_hex};

/// One node as `cluster-list-nodes` shows it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    pub id: String,
    pub name: String,
    pub listen_address: String,
    pub version: String,
    /// `alive`, `suspect` (3 heartbeats missed), `dead` (12 missed, or stopped).
    pub state: &'static str,
    /// The last heartbeat (RFC 3339), or for a peer the last answer.
    pub last_seen: Option<String>,
    pub started_at: Option<String>,
    /// It holds data (trexdb files): every trex node does.
    pub data_node: bool,
    /// `store` (it shares this control store) or `peer` (from cluster.peers).
    pub source: &'static str,
    /// This very node.
    #[serde(rename = "self")]
    pub this: bool,
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "trex".into())
}

/// This node's id: kept in `<data_dir>/node.id` (made on first start), so a node is the same
/// node across restarts — what it owns on its disk (a pipeline's replica) stays its own.
fn node_id(data_dir: &std::path::Path) -> Result<String> {
    let path = data_dir.join("node.id");
    match std::fs::read_to_string(&path) {
        Ok(s)
            if s.trim().starts_with("node_")
                && s.trim().len() <= 64
                && s.trim()[5..].bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Ok(s.trim().to_string())
        }
        _ => {
            let id = format!("node_{}", random_hex(6));
            std::fs::write(&path, format!("{id}\n"))
                .map_err(|e| crate::Error::io(format!("cannot write {}", path.display()), e))?;
            Ok(id)
        }
    }
}

/// Registers this node (listening on `listen`) and starts its heartbeat, a tracked task that
/// marks the node stopped at shutdown. Returns the node id.
pub async fn register(app: &Arc<App>, listen: &str) -> Result<String> {
    let id = node_id(&app.config.store.data_dir)?;
    let n = Node {
        id: id.clone(),
        name: app.config.cluster.name.clone().unwrap_or_else(host_name),
        listen: listen.to_string(),
        version: env!("CARGO_PKG_VERSION").into(),
        pid: Some(std::process::id() as i64),
        data_node: true,
        started_at: crate::util::now_rfc3339(),
        heartbeat_ms: now_ms(),
        stopped_at: None,
        services: None,
    };
    app.store.write(move |c| nodes::upsert(c, &n)).await?;
    let (app2, id2) = (app.clone(), id.clone());
    let every = Duration::from_secs(app.config.cluster.heartbeat_secs);
    app.services.started(
        "node-heartbeat",
        serde_json::json!({"heartbeat_secs": app.config.cluster.heartbeat_secs, "peers": app.config.cluster.peers}),
        None,
    );
    app.tasks.spawn(async move {
        let mut tick = tokio::time::interval(every);
        let mut liveness = Liveness::default();
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let id = id2.clone();
                    // this node's services, for cluster-list-services on every node
                    let services = serde_json::to_string(&crate::ops::services::list(&app2))
                        .unwrap_or_else(|_| "[]".into());
                    let beat = app2
                        .store
                        .run(move |c| nodes::heartbeat(c, &id, now_ms(), &services))
                        .await;
                    if let Err(e) = &beat {
                        tracing::warn!("node heartbeat: {e}");
                        liveness.reset();
                    }
                    // plugins installed or removed by another process (the CLI) go live here
                    crate::ops::plugins::publish(&app2).await;
                    // pipelines stopped, deleted or orphaned by a dead node, on a shared store
                    if beat.is_ok() && app2.store.backend() == crate::store::Backend::Postgres {
                        crate::ops::pipelines::reconcile(&app2, &mut liveness).await;
                    }
                }
                _ = app2.shutdown.cancelled() => {
                    let id = id2.clone();
                    let _ = app2.store.run(move |c| nodes::stopped(c, &id)).await;
                    break;
                }
            }
        }
    });
    Ok(id)
}

/// The services of every node that is alive or suspect: this node's as they are now, the
/// others' as of their last heartbeat (their `controllable` false: cluster-start-service and
/// cluster-stop-service act on the node they are called on).
pub async fn all_services(app: &App) -> Result<Vec<crate::ops::services::ServiceView>> {
    let mut out = crate::ops::services::list(app);
    let this = app.node.get().cloned();
    let rows = app.store.run(nodes::list).await?;
    let (hb, now) = (app.config.cluster.heartbeat_secs, now_ms());
    for n in rows {
        if Some(&n.id) == this.as_ref() || state_of(&n, hb, now) == "dead" {
            continue;
        }
        let theirs: Vec<crate::ops::services::ServiceView> = n
            .services
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        out.extend(theirs.into_iter().map(|mut s| {
            s.node = Some(n.id.clone());
            s.controllable = false;
            s
        }));
    }
    Ok(out)
}

/// Which other nodes have gone silent, judged on this node's own clock (so clocks that differ
/// between machines do not matter): a node whose heartbeat has not changed for 12 beats while
/// this node's own heartbeats succeeded. A heartbeat of this node that fails forgets what was
/// seen, so after a store outage every node gets 12 beats again before its work is taken.
#[derive(Default)]
pub struct Liveness {
    seen: std::collections::HashMap<String, (i64, std::time::Instant)>,
}

impl Liveness {
    /// Forgets what was seen (this node's heartbeat failed).
    pub fn reset(&mut self) {
        self.seen.clear();
    }

    /// Notes the heartbeats of `nodes` as read now.
    pub fn observe(&mut self, nodes: &[Node]) {
        let now = std::time::Instant::now();
        for n in nodes {
            match self.seen.get(&n.id) {
                Some((hb, _)) if *hb == n.heartbeat_ms => {}
                _ => {
                    self.seen.insert(n.id.clone(), (n.heartbeat_ms, now));
                }
            }
        }
    }

    /// True when node `id` has been seen with the same heartbeat for 12 beats of `hb` seconds.
    pub fn silent(&self, id: &str, hb: u64) -> bool {
        self.seen
            .get(id)
            .is_some_and(|(_, at)| at.elapsed() > Duration::from_secs(12 * hb))
    }
}

/// Whether node `n` has sent no heartbeat for 12 beats of `hb` seconds (stopped or not: a node
/// restarted within that time keeps its work).
pub fn silent(n: &Node, hb: u64, now: i64) -> bool {
    now - n.heartbeat_ms > 12 * (hb * 1000) as i64
}

fn state_of(n: &Node, hb: u64, now: i64) -> &'static str {
    let age = now - n.heartbeat_ms;
    let beat = (hb * 1000) as i64;
    if n.stopped_at.is_some() || age > 12 * beat {
        "dead"
    } else if age > 3 * beat {
        "suspect"
    } else {
        "alive"
    }
}

/// Every node sharing the store, then the configured peers (probed at `/healthz`, 2 s).
pub async fn list_nodes(app: &App, this: Option<&str>) -> Result<Vec<NodeView>> {
    let rows = app.store.run(nodes::list).await?;
    let (hb, now) = (app.config.cluster.heartbeat_secs, now_ms());
    let mut out: Vec<NodeView> = rows
        .iter()
        .map(|n| NodeView {
            id: n.id.clone(),
            name: n.name.clone(),
            listen_address: n.listen.clone(),
            version: n.version.clone(),
            state: state_of(n, hb, now),
            last_seen: Some(crate::util::ms_rfc3339(n.heartbeat_ms)),
            started_at: Some(n.started_at.clone()),
            data_node: n.data_node,
            source: "store",
            this: this == Some(n.id.as_str()),
        })
        .collect();
    for p in &app.config.cluster.peers {
        let ok = probe(p).await;
        out.push(NodeView {
            id: p.clone(),
            name: p.clone(),
            listen_address: p.clone(),
            version: String::new(),
            state: if ok { "alive" } else { "dead" },
            last_seen: ok.then(crate::util::now_rfc3339),
            started_at: None,
            data_node: true,
            source: "peer",
            this: false,
        });
    }
    Ok(out)
}

/// True when the trex at base URL `peer` answers `GET /healthz` with 200 within 2 s (plain HTTP,
/// one request on its own connection).
async fn probe(peer: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(u) = url::Url::parse(peer) else {
        return false;
    };
    let (Some(host), Some(port)) = (u.host_str(), u.port_or_known_default()) else {
        return false;
    };
    let ask = async {
        let mut s = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        let req =
            format!("GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"))
    };
    tokio::time::timeout(Duration::from_secs(2), ask)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// The node's figures (`cluster-get-status`, `/metrics`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Nodes alive (sharing the store, and peers that answer).
    pub total_nodes: usize,
    /// Engine queries running now.
    pub active_queries: usize,
    /// Engine queries waiting for a slot.
    pub queued_queries: usize,
    /// This process's resident memory over the machine's memory, in percent.
    pub memory_utilization_pct: f64,
    pub rss_bytes: u64,
    /// Live MCP sessions.
    pub sessions: usize,
    pub jobs_queued: i64,
    pub jobs_running: i64,
    pub jobs_failed: i64,
    /// ETL pipelines running on this node.
    pub pipelines: usize,
}

fn kib(file: &str, field: &str) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// The status of this node.
pub async fn status(app: &App) -> Result<Status> {
    let nodes = list_nodes(app, None).await?;
    let (active, queued) = app.engine.load();
    let counts = app.store.run(crate::store::jobs::counts).await?;
    let count = |s: &str| counts.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
    let rss = kib("/proc/self/status", "VmRSS:") * 1024;
    let total = kib("/proc/meminfo", "MemTotal:") * 1024;
    Ok(Status {
        total_nodes: nodes.iter().filter(|n| n.state == "alive").count(),
        active_queries: active,
        queued_queries: queued,
        memory_utilization_pct: if total > 0 {
            (rss as f64 * 10000.0 / total as f64).round() / 100.0
        } else {
            0.0
        },
        rss_bytes: rss,
        sessions: app.sessions.len(),
        jobs_queued: count("queued"),
        jobs_running: count("running"),
        jobs_failed: count("failed"),
        pipelines: app.pipelines.count(),
    })
}
