//! The official Python SDK (from ../shared/mcpkit, installed in .mcpkit) as a client of the real
//! admin server: `mcp` 2.x (probes the stateless era first, then falls back to `initialize`) and
//! `mcp` 1.x. `#[ignore]`d unless asked for (`cargo test -- --include-ignored`, as CI does), so a
//! plain `cargo test` lists them as ignored, with the reason, instead of passing them silently.

use std::process::Command;

use crate::common::{TestServer, require_mcpkit};

async fn run(venv: &str) {
    let s = TestServer::start().await;
    run_script(venv, "sdk_client.py", &s, s.url()).await
}

/// Runs `tests/python/<script> URL KEY` with the SDK of `venv` against server `s`; the script
/// prints OK on success.
async fn run_script(venv: &str, script: &str, s: &TestServer, url: String) {
    run_script_with(venv, script, s, url, &[]).await
}

/// [`run_script`] with more arguments after the key.
pub(crate) async fn run_script_with(
    venv: &str,
    script: &str,
    s: &TestServer,
    url: String,
    extra: &[String],
) {
    let python = require_mcpkit().join(venv).join("bin/python");
    assert!(
        python.exists(),
        "{} missing: reinstall the MCP kit",
        python.display()
    );
    let script = format!("{}/tests/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let key = s.key.clone();
    let extra = extra.to_vec();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args([&script, &url, &key])
            .args(&extra)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("OK"), "{stdout}");
}

#[tokio::test]
#[ignore = "needs the MCP kit: bash ../shared/mcpkit/setup.sh .mcpkit, then cargo test -- --include-ignored"]
async fn python_sdk_2x_drives_the_admin_server() {
    run("venv").await;
}

#[tokio::test]
#[ignore = "needs the MCP kit: bash ../shared/mcpkit/setup.sh .mcpkit, then cargo test -- --include-ignored"]
async fn python_sdk_1x_drives_the_admin_server() {
    run("venv-mcp1").await;
}

/// Registers the SQLite database `app` (a `users` table) for the migrations script.
pub(crate) async fn app_database(s: &TestServer) {
    let dir = s.data_dir().join("databases");
    std::fs::create_dir_all(&dir).unwrap();
    rusqlite::Connection::open(dir.join("app.db"))
        .unwrap()
        .execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT); INSERT INTO users (email) VALUES ('a@x');")
        .unwrap();
    let mut c = s.client();
    c.initialize().await;
    c.call_ok(
        "database-create",
        serde_json::json!({"id": "app", "dialect": "sqlite", "databaseName": "app.db"}),
    )
    .await;
}

async fn migrations(venv: &str) {
    let s = TestServer::start().await;
    app_database(&s).await;
    let url = format!("{}/api/v1/mcp/migrations", s.base());
    run_script(venv, "sdk_migrations.py", &s, url).await
}

#[tokio::test]
#[ignore = "needs the MCP kit: bash ../shared/mcpkit/setup.sh .mcpkit, then cargo test -- --include-ignored"]
async fn python_sdk_2x_runs_a_migration_with_progress() {
    migrations("venv").await;
}

#[tokio::test]
#[ignore = "needs the MCP kit: bash ../shared/mcpkit/setup.sh .mcpkit, then cargo test -- --include-ignored"]
async fn python_sdk_1x_runs_a_migration_with_progress() {
    migrations("venv-mcp1").await;
}

async fn plugins(venv: &str) {
    let s = TestServer::start().await;
    let dir = format!("{}/examples/plugin-hello", env!("CARGO_MANIFEST_DIR"));
    run_script_with(venv, "sdk_plugins.py", &s, s.url(), &[dir]).await
}

#[tokio::test]
#[ignore = "needs the MCP kit: bash ../shared/mcpkit/setup.sh .mcpkit, then cargo test -- --include-ignored"]
async fn python_sdk_2x_sees_plugin_tools_come_and_go() {
    plugins("venv").await;
}

#[tokio::test]
#[ignore = "needs the MCP kit: bash ../shared/mcpkit/setup.sh .mcpkit, then cargo test -- --include-ignored"]
async fn python_sdk_1x_sees_plugin_tools_come_and_go() {
    plugins("venv-mcp1").await;
}

/// The Python SDK 2.x in its default mode negotiates the stateless 2026-07-28 era with
/// `/trex/mcp` (no session is opened) and calls tools; what it changed is audited like any call.
#[tokio::test]
#[ignore = "needs the MCP kit: bash ../shared/mcpkit/setup.sh .mcpkit, then cargo test -- --include-ignored"]
async fn python_sdk_2x_negotiates_the_stateless_era() {
    let s = TestServer::start().await;
    let python = require_mcpkit().join("venv/bin/python");
    let script = format!("{}/tests/python/sdk_modern.py", env!("CARGO_MANIFEST_DIR"));
    let (url, key) = (s.url(), s.key.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args([&script, &url, &key])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("OK 2026-07-28"),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut c = s.client();
    c.initialize().await;
    let audit = c
        .call_ok("audit-list", serde_json::json!({"tool": "role-create"}))
        .await;
    assert_eq!(audit["entries"].as_array().unwrap().len(), 2, "{audit}");
    let sessions = c.call_ok("session-list", serde_json::json!({})).await;
    assert_eq!(
        sessions["sessions"].as_array().unwrap().len(),
        1,
        "only this test's own session: {sessions}"
    );
}
