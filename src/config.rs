//! Configuration: built-in defaults, then `trex.toml` (`--config`), then `TREX_<SECTION>_<KEY>`
//! environment variables, then command-line flags. Strict: an unknown key or a bad value stops
//! start-up with a message naming it. Every key is documented in `trex.toml.example`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// HTTP listener and request guards.
    pub server: ServerConfig,
    /// Where the data lives.
    pub store: StoreConfig,
    /// MCP transport limits.
    pub mcp: McpConfig,
    /// The trexdb data engine and external databases.
    pub engine: EngineConfig,
    /// Logging.
    pub log: LogConfig,
    /// Audit log retention.
    pub audit: AuditConfig,
    /// The background job runtime.
    pub jobs: JobsConfig,
    /// Online backups.
    pub backup: BackupConfig,
    /// This node among others sharing the store.
    pub cluster: ClusterConfig,
    /// Installed plugins: archive limits and function runners.
    pub plugins: PluginsConfig,
    /// Sign-in to the admin page through SSO providers.
    pub sso: SsoConfig,
}

/// `[sso]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SsoConfig {
    /// What an SSO sign-in with a verified email that no user has does: `refuse` (the default),
    /// or `create` (a new `user`-role account, which an admin may then promote).
    pub unknown_users: String,
    /// Seconds a started SSO sign-in may take before its callback is refused.
    pub login_timeout_secs: u64,
}

impl Default for SsoConfig {
    fn default() -> Self {
        SsoConfig {
            unknown_users: "refuse".into(),
            login_timeout_secs: 600,
        }
    }
}

/// `[plugins]`
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Most bytes a plugin may unpack to (archive or directory), in MiB.
    pub max_unpacked_mb: u64,
    /// Default time limit of a plugin function, in milliseconds (a function may ask for less or
    /// more, up to 300000).
    pub function_timeout_ms: u64,
    /// Plugin functions running at once in this process; more wait their turn.
    pub max_concurrent_functions: usize,
    /// Most bytes a function may write to stdout (its response).
    pub max_output_bytes: usize,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            max_unpacked_mb: 64,
            function_timeout_ms: 10_000,
            max_concurrent_functions: 4,
            max_output_bytes: 4 * 1024 * 1024,
        }
    }
}

/// `[cluster]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This node's name (default: the host name).
    pub name: Option<String>,
    /// Seconds between heartbeats; a node is `suspect` after 3 missed, `dead` after 12.
    pub heartbeat_secs: u64,
    /// Other trex servers to show in cluster-list-nodes (base URLs, probed at `/healthz`).
    pub peers: Vec<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            name: None,
            heartbeat_secs: 5,
            peers: Vec::new(),
        }
    }
}

/// `[backup]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// Where backups are written and listed; default `<data_dir>/backups`.
    pub dir: Option<PathBuf>,
    /// Seconds between scheduled backups; 0 = no schedule.
    pub interval_secs: u64,
    /// Scheduled backups kept (older ones are deleted); at least 1.
    pub keep: usize,
    /// gzip level of the archive: 0 (stored: fastest, biggest) to 9 (smallest, slowest).
    pub compression_level: u32,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            dir: None,
            interval_secs: 0,
            keep: 7,
            compression_level: 1,
        }
    }
}

/// `[jobs]`
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Jobs running at once in this process.
    pub workers: usize,
    /// Seconds a job's lease lasts; a running job renews it every third of that, and a job whose
    /// lease ran out (its process died) is recovered.
    pub lease_secs: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            workers: 2,
            lease_secs: 30,
        }
    }
}

/// `[audit]`
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Days an audit row is kept (0 = for ever).
    pub retain_days: u64,
    /// Most audit rows kept; the oldest go first (0 = no cap).
    pub max_rows: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            retain_days: 90,
            max_rows: 100_000,
        }
    }
}

/// `[engine]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// The trexdb main data file, relative to the data dir (never `trex.db`).
    pub main_file: PathBuf,
    /// Directories besides `<data_dir>/databases` where registered SQLite databases may live.
    pub sqlite_dirs: Vec<PathBuf>,
    /// Most rows a query returns (the rest is cut and `truncated` set).
    pub row_limit: usize,
    /// Seconds a query may run before it is stopped.
    pub query_timeout_secs: u64,
    /// Seconds `database-test-connection` waits for a server.
    pub connect_timeout_secs: u64,
    /// Most bytes of row data a query returns (rows past it are cut and `truncated` set); also
    /// the largest single value SQLite will build.
    pub max_result_bytes: usize,
    /// Most bytes SQLite may allocate for one query (larger needs fail with a clear error).
    pub max_query_memory: usize,
    /// Queries (SQLite and PostgreSQL) running at once; more wait for a free slot.
    pub max_concurrent_queries: usize,
    /// Seconds a query waits for a free slot before it is refused as busy.
    pub queue_timeout_secs: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            main_file: PathBuf::from("data/main.db"),
            sqlite_dirs: Vec::new(),
            row_limit: 1000,
            query_timeout_secs: 30,
            connect_timeout_secs: 5,
            max_result_bytes: 8 * 1024 * 1024,
            max_query_memory: 64 * 1024 * 1024,
            max_concurrent_queries: 4,
            queue_timeout_secs: 10,
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Must be true to listen on a non-loopback address.
    pub allow_remote: bool,
    /// Base path of the admin server (`{base_path}/mcp`).
    pub base_path: String,
    /// Extra host names accepted in `Host` and `Origin` (besides loopback names and the listen IP).
    pub allowed_hosts: Vec<String>,
    /// Extra origins accepted verbatim in `Origin` (e.g. `https://admin.example.com`).
    pub allowed_origins: Vec<String>,
    /// Largest request body in bytes (chunked bodies counted too).
    pub body_limit: usize,
    /// Seconds the server waits for open connections at shutdown before it exits anyway.
    pub shutdown_grace_secs: u64,
    /// Seconds a client has to send a whole request head, counted from when the connection
    /// opens or its previous response ends (so it is also the idle keep-alive timeout).
    pub header_read_timeout_secs: u64,
    /// Seconds a client has to send a whole request body.
    pub body_read_timeout_secs: u64,
    /// Most open connections; at the cap the oldest connection that has not sent a request yet
    /// is closed to make room (lowered to what the open-file limit allows).
    pub max_connections: usize,
    /// Who may read `/metrics`: `off` (404), `local` (loopback callers only) or `key` (an API
    /// key, any address).
    pub metrics: String,
    /// The URL users reach this server at, e.g. `https://trex.example.com` behind a proxy; SSO
    /// redirect URLs are made from it. Empty: from the request's own `Host` (plain http).
    pub public_url: String,
}

/// `[store]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Data directory; holds `trex.db`. Created when missing.
    pub data_dir: PathBuf,
    /// Largest number of pooled control-store connections.
    pub pool_size: u32,
    /// Seconds between flushes of `lastUsedAt` / session activity to the store.
    pub flush_interval_secs: u64,
    /// A PostgreSQL control store shared by several nodes (`postgres://user@host:5432/db`,
    /// `?sslmode=require` for TLS); empty: the SQLite file `trex.db` in the data dir.
    pub url: String,
    /// The PostgreSQL schema that holds the store's tables (with `url`).
    pub schema: String,
}

/// `[mcp]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpConfig {
    /// Most live MCP sessions at once (all servers together).
    pub max_sessions: usize,
    /// Most live MCP sessions of one user, so one user (or one narrowly scoped key) cannot take
    /// every place.
    pub max_sessions_per_user: usize,
    /// Seconds without a request after which a session expires.
    pub session_idle_timeout_secs: u64,
    /// Seconds between SSE keep-alive comments.
    pub keepalive_secs: u64,
    /// Milliseconds a client should wait before reconnecting an SSE stream (`retry:`).
    pub sse_retry_ms: u64,
    /// Events kept per SSE stream for `Last-Event-ID` replay.
    pub replay_events: usize,
    /// Bytes of SSE events kept for replay per session (oldest finished streams go first).
    pub replay_bytes: usize,
    /// Tools per `tools/list` page.
    pub tools_page_size: usize,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, `trex=debug,warp=info`, ...
    pub level: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8001)),
            allow_remote: false,
            base_path: "/trex".into(),
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            body_limit: 4 * 1024 * 1024,
            shutdown_grace_secs: 2,
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 30,
            max_connections: 1024,
            metrics: "local".into(),
            public_url: String::new(),
        }
    }
}

impl StoreConfig {
    /// The PostgreSQL store's URL, or `None` for the SQLite store.
    pub fn postgres_url(&self) -> Option<&str> {
        Some(self.url.as_str()).filter(|u| !u.is_empty())
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            data_dir: PathBuf::from("./trex-data"),
            pool_size: 8,
            flush_interval_secs: 5,
            url: String::new(),
            schema: "trex".into(),
        }
    }
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            max_sessions: 100,
            max_sessions_per_user: 50,
            session_idle_timeout_secs: 30 * 60,
            keepalive_secs: 15,
            sse_retry_ms: 1000,
            replay_events: 256,
            replay_bytes: 8 * 1024 * 1024,
            tools_page_size: 100,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

/// Sections whose keys may be set through `TREX_<SECTION>_<KEY>`.
const SECTIONS: &[&str] = &[
    "server", "store", "mcp", "engine", "log", "audit", "jobs", "backup", "cluster", "plugins",
    "sso",
];

/// Short environment names kept for convenience (`TREX_LISTEN`, `TREX_DATA_DIR`).
const ALIASES: &[(&str, &str, &str)] = &[
    ("TREX_LISTEN", "server", "listen"),
    ("TREX_DATA_DIR", "store", "data_dir"),
    ("TREX_LOG", "log", "level"),
];

/// Values given on the command line; they win over file and environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
}

impl Config {
    /// Loads defaults < file < environment (`vars`) < overrides, then validates.
    pub fn load(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Config> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
                text.parse::<toml::Table>()
                    .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?
            }
            None => toml::Table::new(),
        };
        let known = toml::Table::try_from(Config::default()).expect("defaults serialize");
        for (name, value) in vars {
            let Some((section, key)) = env_key(&name) else {
                continue;
            };
            let exists = known
                .get(&section)
                .and_then(toml::Value::as_table)
                .is_some_and(|t| t.contains_key(&key));
            if !exists {
                return Err(Error::Config(format!(
                    "environment variable {name}: `{section}.{key}` is not a configuration key (see trex.toml.example)"
                )));
            }
            let default = &known[&section][&key];
            let parsed = env_value(&value);
            let fits = match default {
                toml::Value::Integer(_) => {
                    matches!(parsed, toml::Value::Integer(n) if n >= 0)
                }
                toml::Value::Boolean(_) => matches!(parsed, toml::Value::Boolean(_)),
                toml::Value::Array(_) => matches!(parsed, toml::Value::Array(_)),
                _ => true,
            };
            if !fits {
                return Err(Error::Config(format!(
                    "environment variable {name}={value:?}: `{section}.{key}` must be {}",
                    describe_kind(default)
                )));
            }
            let entry = table
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(t) = entry else {
                return Err(Error::Config(format!("`{section}` must be a table")));
            };
            t.insert(key, env_value(&value));
        }
        let mut config: Config = Config::deserialize(toml::Value::Table(table))
            .map_err(|e| Error::Config(plain_types(e.to_string().trim())))?;
        if let Some(d) = &overrides.data_dir {
            config.store.data_dir = d.clone();
        }
        if let Some(l) = overrides.listen {
            config.server.listen = l;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks values that the types alone do not constrain.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, why: &str| Err(Error::Config(format!("`{key}` {why}")));
        if !self.server.listen.ip().is_loopback() && !self.server.allow_remote {
            return bad(
                "server.listen",
                "is not a loopback address; set server.allow_remote = true to listen on it",
            );
        }
        let bp = &self.server.base_path;
        if !bp.starts_with('/')
            || bp.len() > 1 && bp.ends_with('/')
            || bp.split('/').skip(1).any(|s| {
                !s.is_empty()
                    && !s
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            })
        {
            return bad(
                "server.base_path",
                "must look like `/trex`: a leading slash, segments of letters, digits, - and _",
            );
        }
        if !matches!(self.sso.unknown_users.as_str(), "refuse" | "create") {
            return bad("sso.unknown_users", "must be `refuse` or `create`");
        }
        if self.sso.login_timeout_secs == 0 {
            return bad("sso.login_timeout_secs", "must be at least 1");
        }
        let pu = &self.server.public_url;
        if !pu.is_empty()
            && url::Url::parse(pu).map_or(true, |u| {
                !matches!(u.scheme(), "http" | "https")
                    || u.host().is_none()
                    || u.path() != "/"
                    || u.query().is_some()
            })
        {
            return bad(
                "server.public_url",
                "must be a scheme and host (and port), such as `https://trex.example.com`",
            );
        }
        if self.server.body_limit < 1024 {
            return bad("server.body_limit", "must be at least 1024 bytes");
        }
        if self.store.pool_size == 0 {
            return bad("store.pool_size", "must be at least 1");
        }
        if self.store.flush_interval_secs == 0 {
            return bad("store.flush_interval_secs", "must be at least 1");
        }
        if let Some(url) = self.store.postgres_url()
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return bad(
                "store.url",
                "must be a PostgreSQL URL (`postgres://user@host:5432/database`); leave it unset for the SQLite store",
            );
        }
        if !crate::store::pg::is_identifier(&self.store.schema) {
            return bad(
                "store.schema",
                "must be a lower-case identifier (letters, digits and _, starting with a letter or _)",
            );
        }
        if self.mcp.max_sessions == 0 {
            return bad("mcp.max_sessions", "must be at least 1");
        }
        if self.mcp.max_sessions_per_user == 0 {
            return bad("mcp.max_sessions_per_user", "must be at least 1");
        }
        if self.mcp.session_idle_timeout_secs == 0 {
            return bad("mcp.session_idle_timeout_secs", "must be at least 1");
        }
        if self.mcp.keepalive_secs == 0 {
            return bad("mcp.keepalive_secs", "must be at least 1");
        }
        if self.mcp.tools_page_size == 0 || self.mcp.tools_page_size > 1000 {
            return bad("mcp.tools_page_size", "must be between 1 and 1000");
        }
        if self.mcp.replay_events == 0 {
            return bad("mcp.replay_events", "must be at least 1");
        }
        let mf = &self.engine.main_file;
        if mf.is_absolute()
            || mf
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
            || mf.file_name().is_none_or(|n| n == crate::store::STORE_FILE)
        {
            return bad(
                "engine.main_file",
                "must be a relative path inside the data dir, not trex.db",
            );
        }
        if self.engine.row_limit == 0 || self.engine.row_limit > 100_000 {
            return bad("engine.row_limit", "must be between 1 and 100000");
        }
        if self.engine.query_timeout_secs == 0 {
            return bad("engine.query_timeout_secs", "must be at least 1");
        }
        if self.engine.max_result_bytes < 1024 || self.engine.max_result_bytes > i32::MAX as usize {
            return bad(
                "engine.max_result_bytes",
                "must be between 1024 and 2147483647",
            );
        }
        if self.engine.max_query_memory < 1024 * 1024 {
            return bad(
                "engine.max_query_memory",
                "must be at least 1048576 (1 MiB)",
            );
        }
        if self.engine.max_concurrent_queries == 0 || self.engine.max_concurrent_queries > 256 {
            return bad("engine.max_concurrent_queries", "must be between 1 and 256");
        }
        if self.engine.queue_timeout_secs == 0 {
            return bad("engine.queue_timeout_secs", "must be at least 1");
        }
        if self.server.header_read_timeout_secs == 0 {
            return bad("server.header_read_timeout_secs", "must be at least 1");
        }
        if self.server.body_read_timeout_secs == 0 {
            return bad("server.body_read_timeout_secs", "must be at least 1");
        }
        if self.server.max_connections < 8 {
            return bad("server.max_connections", "must be at least 8");
        }
        if self.jobs.workers == 0 || self.jobs.workers > 64 {
            return bad("jobs.workers", "must be between 1 and 64");
        }
        if self.jobs.lease_secs < 3 {
            return bad("jobs.lease_secs", "must be at least 3");
        }
        if !["off", "local", "key"].contains(&self.server.metrics.as_str()) {
            return bad("server.metrics", "must be off, local or key");
        }
        if self.cluster.heartbeat_secs == 0 || self.cluster.heartbeat_secs > 300 {
            return bad("cluster.heartbeat_secs", "must be between 1 and 300");
        }
        if let Some(p) = self.cluster.peers.iter().find(|p| {
            url::Url::parse(p)
                .map(|u| u.scheme() != "http")
                .unwrap_or(true)
        }) {
            return bad(
                "cluster.peers",
                &format!(
                    "holds {p:?}, which is not an http:// URL (peers are probed over plain HTTP)"
                ),
            );
        }
        if self.plugins.max_unpacked_mb == 0 || self.plugins.max_unpacked_mb > 4096 {
            return bad("plugins.max_unpacked_mb", "must be between 1 and 4096");
        }
        if !(100..=300_000).contains(&self.plugins.function_timeout_ms) {
            return bad(
                "plugins.function_timeout_ms",
                "must be between 100 and 300000",
            );
        }
        if self.plugins.max_concurrent_functions == 0 {
            return bad("plugins.max_concurrent_functions", "must be at least 1");
        }
        if self.plugins.max_output_bytes < 1024 {
            return bad("plugins.max_output_bytes", "must be at least 1024");
        }
        if self.backup.compression_level > 9 {
            return bad("backup.compression_level", "must be between 0 and 9");
        }
        if self.backup.keep == 0 {
            return bad("backup.keep", "must be at least 1");
        }
        if self.backup.interval_secs != 0 && self.backup.interval_secs < 60 {
            return bad(
                "backup.interval_secs",
                "must be 0 (no schedule) or at least 60",
            );
        }
        if self.mcp.replay_bytes < 64 * 1024 {
            return bad("mcp.replay_bytes", "must be at least 65536");
        }
        if self.engine.connect_timeout_secs == 0 {
            return bad("engine.connect_timeout_secs", "must be at least 1");
        }
        if !valid_log_filter(&self.log.level) {
            return bad(
                "log.level",
                &format!(
                    "is not a log filter: {:?} (use a level — trace, debug, info, warn, error, off — or target=level pairs such as `info,trex=debug`; TREX_LOG sets it too)",
                    self.log.level
                ),
            );
        }
        Ok(())
    }

    /// Path segments of the base path (`/trex` → `["trex"]`).
    pub fn base_segments(&self) -> Vec<String> {
        self.server
            .base_path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// What a value of the kind of `default` looks like, in words.
fn describe_kind(default: &toml::Value) -> String {
    match default {
        toml::Value::Integer(n) => format!("a whole number, 0 or more (default {n})"),
        toml::Value::Boolean(_) => "true or false".into(),
        toml::Value::Array(_) => "a list in TOML syntax, e.g. '[\"a\", \"b\"]'".into(),
        _ => "text".into(),
    }
}

/// A deserializer message with Rust's type names put in words (`expected usize` → `expected a
/// whole number, 0 or more`).
fn plain_types(msg: &str) -> String {
    let mut out = msg.to_string();
    for (rust, words) in [
        ("expected usize", "expected a whole number, 0 or more"),
        ("expected u64", "expected a whole number, 0 or more"),
        ("expected u32", "expected a whole number, 0 or more"),
        ("expected u16", "expected a whole number, 0 or more"),
        ("expected i64", "expected a whole number"),
        ("expected a boolean", "expected true or false"),
    ] {
        out = out.replace(rust, words);
    }
    out
}

/// Checks a log filter: each comma-separated part is a level (`trace`, `debug`, `info`, `warn`,
/// `error`, `off`) or `target=level`; anything else (`verbose`) would silently filter all out.
fn valid_log_filter(filter: &str) -> bool {
    const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];
    let level = |l: &str| LEVELS.contains(&l.trim().to_ascii_lowercase().as_str());
    !filter.trim().is_empty()
        && filter.split(',').all(|part| match part.split_once('=') {
            Some((target, l)) => !target.trim().is_empty() && level(l),
            None => level(part),
        })
        && tracing_subscriber::EnvFilter::try_new(filter).is_ok()
}

/// Maps `TREX_MCP_MAX_SESSIONS` to `("mcp", "max_sessions")`; `None` for variables that are not
/// configuration (`TREX_MASTER_KEY`, unrelated names).
fn env_key(name: &str) -> Option<(String, String)> {
    if let Some((_, s, k)) = ALIASES.iter().find(|(n, _, _)| *n == name) {
        return Some((s.to_string(), k.to_string()));
    }
    let rest = name.strip_prefix("TREX_")?.to_ascii_lowercase();
    SECTIONS.iter().find_map(|s| {
        rest.strip_prefix(s)
            .and_then(|k| k.strip_prefix('_'))
            .filter(|k| !k.is_empty())
            .map(|k| (s.to_string(), k.to_string()))
    })
}

/// An environment value read as TOML when it parses as a number, boolean or array, else a string.
fn env_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => match t.remove("v") {
            Some(
                v @ (toml::Value::Integer(_)
                | toml::Value::Boolean(_)
                | toml::Value::Array(_)
                | toml::Value::Float(_)),
            ) => v,
            _ => toml::Value::String(raw.to_string()),
        },
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml_text: &str, vars: &[(&str, &str)]) -> Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("trex.toml");
        std::fs::write(&p, toml_text).unwrap();
        let vars = vars.iter().map(|(a, b)| (a.to_string(), b.to_string()));
        Config::load(Some(&p), vars, &Overrides::default())
    }

    #[test]
    fn example_file_documents_every_key_with_its_default() {
        let example: toml::Table = include_str!("../trex.toml.example").parse().unwrap();
        let defaults = toml::Table::try_from(Config::default()).unwrap();
        assert_eq!(example, defaults);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = load("[server]\nlisten_addr = \"127.0.0.1:1\"\n", &[]).unwrap_err();
        assert!(e.to_string().contains("listen_addr"), "{e}");
    }

    #[test]
    fn bad_value_is_named() {
        let e = load("[mcp]\nmax_sessions = \"many\"\n", &[]).unwrap_err();
        assert!(e.to_string().contains("max_sessions"), "{e}");
    }

    #[test]
    fn env_overrides_file_and_unknown_env_key_fails() {
        let c = load(
            "[mcp]\nmax_sessions = 5\n",
            &[("TREX_MCP_MAX_SESSIONS", "7")],
        )
        .unwrap();
        assert_eq!(c.mcp.max_sessions, 7);
        let e = load("", &[("TREX_MCP_MAX_SESIONS", "7")]).unwrap_err();
        assert!(e.to_string().contains("max_sesions"), "{e}");
        let c = load(
            "",
            &[("TREX_MASTER_KEY", "x"), ("TREX_LISTEN", "127.0.0.1:9")],
        )
        .unwrap();
        assert_eq!(c.server.listen.port(), 9);
    }

    #[test]
    fn env_values_are_checked_in_words_naming_the_variable() {
        let e = load("", &[("TREX_MCP_MAX_SESSIONS", "abc")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("TREX_MCP_MAX_SESSIONS") && e.contains("whole number"),
            "{e}"
        );
        let e = load("", &[("TREX_LOG", "verbose")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("log.level") && e.contains("verbose"), "{e}");
        assert!(load("", &[("TREX_LOG", "info,trex=debug")]).is_ok());
        let e = load("[mcp]\nmax_sessions = \"many\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("whole number"), "{e}");
    }

    #[test]
    fn remote_listen_needs_opt_in() {
        let e = load("[server]\nlisten = \"0.0.0.0:8001\"\n", &[]).unwrap_err();
        assert!(e.to_string().contains("server.listen"), "{e}");
        assert!(
            load(
                "[server]\nlisten = \"0.0.0.0:8001\"\nallow_remote = true\n",
                &[]
            )
            .is_ok()
        );
    }
}
