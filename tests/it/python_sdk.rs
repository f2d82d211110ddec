//! The official Python SDK (from ../shared/mcpkit, installed in .mcpkit) as a client of the real
//! admin server: `mcp` 2.x (probes the stateless era first, then falls back to `initialize`) and
//! `mcp` 1.x. `#[ignore]`d unless asked for (`cargo test -- --include-ignored`, as CI does), so a
//! plain `cargo test` lists them as ignored, with the reason, instead of passing them silently.

use std::process::Command;

use crate::common::{TestServer, require_mcpkit};

async fn run(venv: &str) {
    let python = require_mcpkit().join(venv).join("bin/python");
    assert!(
        python.exists(),
        "{} missing: reinstall the MCP kit",
        python.display()
    );
    let s = TestServer::start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/sdk_client.py");
    let (url, key) = (s.url(), s.key.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args([script, &url, &key])
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
