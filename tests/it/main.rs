//! Integration tests: one binary, each module driving a real server over HTTP on 127.0.0.1.

mod admin_page;
mod auth;
mod backups;
mod catalogue;
mod cli;
mod cluster;
mod common;
mod connections;
mod databases;
mod definitions;
mod first_contact;
mod hardening;
mod identity;
mod jobs;
mod migrations;
mod nodes;
mod pipelines;
mod plugins;
mod python_sdk;
mod readme;
mod sessions;
mod sse;
mod stateless;
mod tasks;
mod tools;
mod transport;
mod web_session;

/// The engine's per-query memory budget needs its SQLite allocator installed before any test
/// opens a connection.
#[ctor::ctor]
fn install_sqlite_allocator() {
    assert!(trex::engine::memory::install());
}
