//! Integration tests: one binary, each module driving a real server over HTTP on 127.0.0.1.

mod auth;
mod cli;
mod common;
mod databases;
mod hardening;
mod identity;
mod python_sdk;
mod sessions;
mod sse;
mod tools;
mod transport;
