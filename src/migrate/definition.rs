//! A migration definition as the migrations MCP server takes it (Eden's `define_migration`):
//! the targets (`interlays`), what to do (`data`), in which order and shape (`strategy`), what
//! happens when a target fails (`failure_handling`) and the queries the application depends on
//! (`apis`). Eden's names are accepted where they mean something here (see README, "Migration
//! definitions"); the body is stored normalized, so defining the same content twice is the same
//! definition.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The order and shape of a run, tagged by `type` (default `big_bang`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Strategy {
    /// Every target, one after the other, in `interlays` order.
    BigBang {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        durability: Option<bool>,
    },
    /// Targets in batches of `batch_size` (default 1); a failing batch stops the run.
    RollingUpdate {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        batch_size: Option<u32>,
    },
    /// `canary_targets` first, their `apis` checked, then the rest.
    Canary {
        #[serde(default)]
        canary_targets: Vec<String>,
    },
    /// SQLite targets: migrate a copy, check `apis` on it, then swap it in at once.
    BlueGreen {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        active_is_new: Option<bool>,
    },
    /// Runs only between `window_start` and `window_end` (RFC 3339): a run waits for the window;
    /// targets not started when it closes are not started and count as failed.
    TimeWindow {
        window_start: String,
        window_end: String,
    },
    /// Test only: `apis` run against the old and the migrated schema and their results compared.
    ShadowTraffic {},
    /// Eden's; accepted, refused at run time.
    StranglerFig {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        features: Option<Value>,
    },
    /// Eden's; accepted, refused at run time.
    FeatureFlag {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        flags: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rollout_percentage: Option<f64>,
    },
    /// Eden's; accepted, refused at run time.
    Geographic {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        regions: Option<Value>,
    },
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy::BigBang { durability: None }
    }
}

impl Strategy {
    /// Its `type`.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::BigBang { .. } => "big_bang",
            Strategy::RollingUpdate { .. } => "rolling_update",
            Strategy::Canary { .. } => "canary",
            Strategy::BlueGreen { .. } => "blue_green",
            Strategy::TimeWindow { .. } => "time_window",
            Strategy::ShadowTraffic {} => "shadow_traffic",
            Strategy::StranglerFig { .. } => "strangler_fig",
            Strategy::FeatureFlag { .. } => "feature_flag",
            Strategy::Geographic { .. } => "geographic",
        }
    }

    /// True for Eden's strategies this build accepts but does not run.
    pub fn unsupported(&self) -> bool {
        matches!(
            self,
            Strategy::StranglerFig { .. }
                | Strategy::FeatureFlag { .. }
                | Strategy::Geographic { .. }
        )
    }
}

/// What a run does on each target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Data {
    /// A schema or data change: `up`, and `down` to undo it (required for PostgreSQL targets
    /// under `rollback_all`).
    Sql {
        up: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        down: Option<String>,
    },
    /// Copy tables from database `source` (not supported in this build; refused at define time).
    Snapshot {
        source: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tables: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replace: Option<String>,
    },
    /// Nothing (only the `apis` are checked).
    None {},
}

/// `data` as given: an object tagged by `type`, or the word `"none"`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum DataArg {
    Word(String),
    Data(Data),
}

/// What happens when a target fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum FailureHandling {
    /// `rollback_all` (default: every target already migrated is put back) or `allow_partial`
    /// (migrated targets stay; the rest still run).
    Word(String),
    /// `{"type": "retry_then_all", "retry_count": N}`: a failing target is tried N more times,
    /// then everything is put back.
    Retry {
        #[serde(rename = "type")]
        kind: String,
        retry_count: u32,
    },
}

impl Default for FailureHandling {
    fn default() -> Self {
        FailureHandling::Word("rollback_all".into())
    }
}

impl FailureHandling {
    /// Retries per target.
    pub fn retries(&self) -> u32 {
        match self {
            FailureHandling::Retry { retry_count, .. } => *retry_count,
            FailureHandling::Word(_) => 0,
        }
    }

    /// True when migrated targets are put back after a failure.
    pub fn rolls_back(&self) -> bool {
        !matches!(self, FailureHandling::Word(w) if w == "allow_partial")
    }
}

/// A query the application depends on; every test and migrate run checks it on every target
/// after the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Api {
    pub id: String,
    pub query: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<Value>,
}

/// A target database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Interlay {
    /// The id of a registered database.
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The stored, normalized body of a definition version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Body {
    pub strategy: Strategy,
    pub data: Data,
    pub failure_handling: FailureHandling,
    pub apis: Vec<Api>,
    pub interlays: Vec<Interlay>,
}
