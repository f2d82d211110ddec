//! `cluster-*` tools: the nodes sharing this control store and this node's status
//! ([`ops::cluster`]).

use schemars::JsonSchema;
use serde::Serialize;

use super::trexdb::NoArgs;
use crate::mcp::tool::{Annotations, Tool, ToolCtx, ToolError};
use crate::ops;
use crate::ops::cluster::{NodeView, Status};

/// The tools of this group.
pub fn tools() -> Vec<Tool> {
    vec![
        Tool::typed(
            "cluster-list-nodes",
            "List cluster nodes",
            "Every trex server sharing this control store (registered at start, heartbeating every \
             cluster.heartbeat_secs) and every cluster.peers entry (probed at /healthz): state alive, suspect \
             (3 heartbeats missed) or dead (12 missed, or stopped), last seen, dataNode, and which one is this.",
            Annotations::READ,
            list_nodes,
        ),
        Tool::typed(
            "cluster-get-status",
            "Get cluster status",
            "This node's figures: totalNodes (alive), activeQueries and queuedQueries of the engine, \
             memoryUtilizationPct and rssBytes, MCP sessions, jobs queued, running and failed, pipelines.",
            Annotations::READ,
            get_status,
        ),
    ]
}

/// Result of `cluster-list-nodes`.
#[derive(Serialize, JsonSchema)]
pub struct Nodes {
    pub nodes: Vec<NodeView>,
}

async fn list_nodes(ctx: ToolCtx, _a: NoArgs) -> Result<Nodes, ToolError> {
    let this = ctx.app.node.get().map(String::as_str);
    Ok(Nodes {
        nodes: ops::cluster::list_nodes(&ctx.app, this).await?,
    })
}

async fn get_status(ctx: ToolCtx, _a: NoArgs) -> Result<Status, ToolError> {
    Ok(ops::cluster::status(&ctx.app).await?)
}
