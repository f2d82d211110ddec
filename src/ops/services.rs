//! The background services of this node as operations (`cluster-list-services`,
//! `cluster-start-service`, `cluster-stop-service`): which can be started and stopped — the
//! backup schedule (started with a validated `config`), the job workers (stopped = paused: no
//! new job is claimed, running ones finish) — and a clear refusal for those that run as long as
//! the server does.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Actor, audited, invalid};
use crate::app::App;
use crate::error::{Error, Result};

/// One service as the tools show it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceView {
    /// The node it runs on.
    pub node: Option<String>,
    /// Its name (`extension` in cluster-start-service and cluster-stop-service).
    pub extension: String,
    /// `running`, `paused` or `stopped`.
    pub status: String,
    pub uptime_secs: Option<u64>,
    #[schemars(with = "serde_json::Map<String, Value>")]
    pub config: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// True when cluster-start-service and cluster-stop-service, called on this node, act on it.
    pub controllable: bool,
}

const CONTROLLABLE: &[&str] = &["job-workers", super::backups::SCHEDULER];

/// The services of this node.
pub fn list(app: &App) -> Vec<ServiceView> {
    let now = crate::util::now_ms();
    app.services
        .list()
        .into_iter()
        .map(|(name, s)| ServiceView {
            node: app.node.get().cloned(),
            controllable: CONTROLLABLE.contains(&name.as_str()),
            status: if name == "job-workers" && app.jobs.is_paused() {
                "paused".into()
            } else {
                s.status.into()
            },
            extension: name,
            uptime_secs: s.started_ms.map(|t| ((now - t).max(0) / 1000) as u64),
            config: s.config,
            last_error: s.last_error,
        })
        .collect()
}

fn check(app: &App, extension: &str) -> Result<()> {
    let names: Vec<String> = app.services.list().into_iter().map(|(n, _)| n).collect();
    if !names.iter().any(|n| n == extension) {
        return Err(Error::NotFound(format!(
            "No service '{extension}' on this node (services: {})",
            names.join(", ")
        )));
    }
    if !CONTROLLABLE.contains(&extension) {
        return Err(Error::Conflict(format!(
            "Service '{extension}' runs as long as the server and cannot be started or stopped (controllable: {})",
            CONTROLLABLE.join(", ")
        )));
    }
    Ok(())
}

/// Starts (or resumes) a service; `config` is validated for the backup schedule
/// (`interval_secs` ≥ 60, `keep` ≥ 1; defaults from `[backup]`).
pub async fn start(
    app: &std::sync::Arc<App>,
    actor: &Actor,
    extension: &str,
    config: Option<Value>,
) -> Result<ServiceView> {
    let args = json!({"extension": extension, "config": config});
    audited(app, actor, "cluster-start-service", args, async {
        check(app, extension)?;
        if extension == "job-workers" {
            if config.is_some() {
                return Err(invalid(
                    "config",
                    "is not taken by job-workers (set jobs.workers in the configuration)",
                ));
            }
            app.jobs.set_paused(false);
        } else {
            let c = config.unwrap_or(json!({}));
            let Some(o) = c.as_object() else {
                return Err(invalid(
                    "config",
                    "must be an object {\"interval_secs\", \"keep\"}",
                ));
            };
            if let Some(k) = o
                .keys()
                .find(|k| !["interval_secs", "keep"].contains(&k.as_str()))
            {
                return Err(invalid(
                    &format!("config.{k}"),
                    "is not a setting of the backup schedule (interval_secs, keep)",
                ));
            }
            let every = match o.get("interval_secs") {
                None => app.config.backup.interval_secs.max(3600),
                Some(v) => v.as_u64().filter(|n| *n >= 60).ok_or_else(|| {
                    invalid(
                        "config.interval_secs",
                        "must be a whole number of seconds, at least 60",
                    )
                })?,
            };
            let keep =
                match o.get("keep") {
                    None => app.config.backup.keep,
                    Some(v) => v.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
                        invalid("config.keep", "must be a whole number, at least 1")
                    })? as usize,
                };
            super::backups::start_schedule(app, every, keep);
        }
        Ok(list(app)
            .into_iter()
            .find(|s| s.extension == extension)
            .expect("listed"))
    })
    .await
}

/// Stops (or pauses) a service.
pub async fn stop(app: &App, actor: &Actor, extension: &str) -> Result<ServiceView> {
    let args = json!({"extension": extension});
    audited(app, actor, "cluster-stop-service", args, async {
        check(app, extension)?;
        if extension == "job-workers" {
            app.jobs.set_paused(true);
        } else {
            if let Some(t) = app.services.get(extension).and_then(|s| s.stop) {
                t.cancel();
            }
            app.services.set_status(extension, "stopped");
        }
        Ok(list(app)
            .into_iter()
            .find(|s| s.extension == extension)
            .expect("listed"))
    })
    .await
}
