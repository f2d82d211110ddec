//! `cluster-*` tools: the nodes sharing this control store and this node's status
//! ([`ops::cluster`]).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::trexdb::NoArgs;
use crate::mcp::tool::{Annotations, Tool, ToolCtx, ToolError};
use crate::ops;
use crate::ops::cluster::{NodeView, Status};
use crate::ops::services::ServiceView;

/// The tools of this group.
pub fn tools() -> Vec<Tool> {
    vec![
        Tool::typed(
            "cluster-list-nodes",
            "List cluster nodes",
            "Every trex server sharing this control store and every cluster.peers entry (probed at \
             /healthz): state alive, suspect (3 heartbeats missed) or dead (12 missed, or \
             stopped), last seen, and which one is this.",
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
        Tool::typed(
            "cluster-list-services",
            "List node services",
            "The background services of every live node (this node's now, the others' as of their \
             last heartbeat): node, status, uptime, configuration, last error, and whether \
             cluster-start-service / cluster-stop-service, which act on this node, control them.",
            Annotations::READ,
            list_services,
        ),
        Tool::typed(
            "cluster-start-service",
            "Start a node service",
            "Start or resume a service by `extension`: `backup-scheduler` (`config`: {\"interval_secs\" ≥ 60, \
             \"keep\" ≥ 1}) or `job-workers` (resumes claiming jobs). Other services run as long as the server.",
            Annotations::UPDATE,
            start_service,
        ),
        Tool::typed(
            "cluster-stop-service",
            "Stop a node service",
            "Stop a service by `extension`: `backup-scheduler`, or `job-workers` (paused: no new job is claimed, \
             running ones finish).",
            Annotations::UPDATE,
            stop_service,
        ),
    ]
}

/// Result of `cluster-list-services`.
#[derive(Serialize, JsonSchema)]
pub struct Services {
    pub services: Vec<ServiceView>,
}

async fn list_services(ctx: ToolCtx, _a: NoArgs) -> Result<Services, ToolError> {
    Ok(Services {
        services: ops::cluster::all_services(&ctx.app).await?,
    })
}

/// Arguments of `cluster-start-service`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartArgs {
    /// The service's name (see cluster-list-services).
    pub extension: String,
    /// Its settings, as a JSON object.
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub config: Option<serde_json::Value>,
}

async fn start_service(ctx: ToolCtx, a: StartArgs) -> Result<ServiceView, ToolError> {
    Ok(ops::services::start(&ctx.app, &ctx.actor, &a.extension, a.config).await?)
}

/// Arguments of `cluster-stop-service`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StopArgs {
    /// The service's name (see cluster-list-services).
    pub extension: String,
}

async fn stop_service(ctx: ToolCtx, a: StopArgs) -> Result<ServiceView, ToolError> {
    Ok(ops::services::stop(&ctx.app, &ctx.actor, &a.extension).await?)
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
