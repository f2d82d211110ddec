//! The Model Context Protocol, independent of HTTP: JSON-RPC envelopes and revisions
//! ([`protocol`]), sessions ([`session`]) and their SSE streams ([`stream`]), the per-request
//! context ([`context`]), tools ([`tool`]), server definitions ([`server`]) and method routing
//! ([`dispatch`]).

pub mod context;
pub mod dispatch;
pub mod protocol;
pub mod server;
pub mod session;
pub mod stream;
pub mod tasks;
pub mod tool;
