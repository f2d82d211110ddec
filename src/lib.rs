//! trex: one binary that carries its own SQLite control store and serves the Model Context
//! Protocol so assistants and automation can run a self-hosted data platform.
//!
//! Module map:
//!
//! - [`cli`] — clap definitions and the commands (`serve`, `init`, `api-key …`); `main.rs` only
//!   dispatches.
//! - [`config`] — `trex.toml` + `TREX_*` environment + flags, strict.
//! - [`error`] — the error type and its HTTP / JSON-RPC mapping.
//! - [`store`] — the control store `trex.db`: pool, pragmas, schema bootstrap, one file per table
//!   group. All control-store SQL lives there.
//! - [`auth`] — API keys (hash + prefix), passwords (argon2id), the cached per-request key check.
//! - [`ops`] — the domain layer: administrative rules shared by tools and CLI ([`ops::users`]:
//!   role, ban, delete with "an active admin always remains" inside the write's transaction).
//! - [`audit`] — what the audit log keeps: redaction, SQL literal blanking, truncation, one
//!   `record` for every front door.
//! - [`mcp`] — protocol types, version negotiation, sessions, SSE streams with replay, the
//!   era-neutral request context, tool registry and method dispatch.
//! - [`http`] — warp filters: routes, guards (Host/Origin, auth) before bodies, limited bodies,
//!   rejections as JSON, and the Streamable HTTP handlers.
//! - [`tools`] — the admin server's tools, one file per group.
//! - [`app`] — shared state and background tasks; [`server`] — bind, serve, shut down.

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
pub mod ops;
pub mod server;
pub mod servers;
pub mod store;
pub mod tools;
pub mod util;

pub use app::App;
pub use config::Config;
pub use error::{Error, Result};
