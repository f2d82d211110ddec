//! trex: one binary that carries its own SQLite control store and serves the Model Context
//! Protocol so assistants and automation can run a self-hosted data platform.
//!
//! Module map, by layer (front doors call the domain layer; only `store` writes control-store SQL):
//!
//! - Front doors: [`cli`] (clap definitions and the commands; `main.rs` only dispatches),
//!   [`http`] (warp filters: routes, guards before bodies, limited bodies, JSON rejections, the
//!   Streamable HTTP handlers, web sign-in), [`tools`] (the admin server's tools, one file per
//!   group, and the endpoint servers' tools).
//! - Protocol: [`mcp`] — protocol types, version negotiation, sessions, SSE streams with replay,
//!   the era-neutral request context, tools and method dispatch; [`servers`] — the one catalogue
//!   of MCP servers (admin, per-database) that routes, scope validation, tests and CLI read.
//! - Domain: [`ops`] — every administrative rule, once, one file per area (users, roles, keys,
//!   sessions, sso, apps, databases, audit, secrets, web sign-in): async operations that take
//!   the caller ([`ops::Actor`]) and do what the operation implies — validation naming the
//!   field, rule checks, one transaction, the audit row ([`ops::audited`]), cache invalidation,
//!   ending sessions; [`audit`] — what the audit log keeps (redaction, SQL literal blanking,
//!   truncation) and the caller type; [`jobs`] — the durable job runtime (rows with leases,
//!   workers, progress, cancellation, recovery, shutdown drain).
//! - Services: [`auth`] (API keys, passwords, the cached per-request key check rechecked per
//!   operation, scopes, sealing, the sign-in rate limit), [`engine`] (user SQL on trexdb and
//!   registered databases: classification, read-only enforcement, time and memory bounds, its
//!   own threads and query slots; [`engine::catalog`] holds the SQL trex runs to describe user
//!   databases), [`store`] (the control store `trex.db`: pool, pragmas, schema, one file per
//!   table group — all control-store SQL lives there, behind an opaque [`store::Conn`], so no
//!   `rusqlite` type leaves it), [`plugins`] (the plugin package format: manifest checks,
//!   archive unpacking with every entry checked, request-path normalisation, the function
//!   runner's process contract; installing and calling them is [`ops`]'s plugins file),
//!   [`pipelines`] (ETL/CDC mechanics: PostgreSQL logical replication over pgoutput, SQLite
//!   change-capture triggers, the replica writer with its exactly-once checkpoints, one
//!   supervised task per running pipeline; the rules are [`ops`]'s pipelines file).
//! - Plumbing: [`config`] (`trex.toml` + `TREX_*` + flags, strict), [`error`] (the error type,
//!   status mapping, internal errors with a correlation id), [`app`] (configuration plus
//!   services, background tasks), [`server`] (bind, accept loop with connection limits, serve,
//!   shut down), [`util`].

pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod http;
pub mod jobs;
pub mod mcp;
pub mod metrics;
pub mod migrate;
pub mod ops;
pub mod pipelines;
pub mod plugins;
pub mod server;
pub mod servers;
pub mod services;
pub mod store;
pub mod tools;
pub mod util;

pub use app::App;
pub use config::Config;
pub use error::{Error, Result};
