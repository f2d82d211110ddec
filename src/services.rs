//! The background services of this node, by name, for `cluster-list-services`: when each
//! started, whether it runs, is paused or is stopped, its configuration and its last error. The
//! services themselves (job workers, reapers, the backup schedule, the heartbeat) report here;
//! starting and stopping them is the domain's (`ops::services`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// One service's state.
#[derive(Debug, Clone)]
pub struct Service {
    /// `running`, `paused` or `stopped`.
    pub status: &'static str,
    /// When it last started (RFC 3339), if it runs.
    pub started_at: Option<String>,
    pub started_ms: Option<i64>,
    pub config: Value,
    pub last_error: Option<String>,
    /// Stops it (services that can be stopped).
    pub stop: Option<CancellationToken>,
}

/// Every service of this node.
#[derive(Default)]
pub struct Registry {
    all: Mutex<BTreeMap<String, Service>>,
}

impl Registry {
    /// Records that `name` runs now with `config` (`stop` stops it, for those that can be).
    pub fn started(&self, name: &str, config: Value, stop: Option<CancellationToken>) {
        self.all.lock().unwrap().insert(
            name.to_string(),
            Service {
                status: "running",
                started_at: Some(crate::util::now_rfc3339()),
                started_ms: Some(crate::util::now_ms()),
                config,
                last_error: None,
                stop,
            },
        );
    }

    /// Sets the configuration of `name`, recording it as started now if it is new (services
    /// that run as long as the server does and only change what they serve).
    pub fn configure(&self, name: &str, config: Value, stop: Option<CancellationToken>) {
        let mut g = self.all.lock().unwrap();
        match g.get_mut(name) {
            Some(s) => s.config = config,
            None => {
                drop(g);
                self.started(name, config, stop);
            }
        }
    }

    /// Sets the status of `name` (`paused`, `stopped`, `running`).
    pub fn set_status(&self, name: &str, status: &'static str) {
        if let Some(s) = self.all.lock().unwrap().get_mut(name) {
            s.status = status;
            if status == "stopped" {
                s.started_at = None;
                s.started_ms = None;
                s.stop = None;
            }
        }
    }

    /// Records the last error of `name` (`None` clears it).
    pub fn error(&self, name: &str, e: Option<String>) {
        if let Some(s) = self.all.lock().unwrap().get_mut(name) {
            s.last_error = e;
        }
    }

    /// A copy of every service.
    pub fn list(&self) -> Vec<(String, Service)> {
        self.all
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// One service.
    pub fn get(&self, name: &str) -> Option<Service> {
        self.all.lock().unwrap().get(name).cloned()
    }
}
