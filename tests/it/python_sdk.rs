//! The official Python SDK (from ../shared/mcpkit, installed in .mcpkit) as a client of the real
//! admin server: `mcp` 2.x (probes the stateless era first, then falls back to `initialize`) and
//! `mcp` 1.x. Skipped with a clear line when the kit is not installed (CI installs it).

use std::process::Command;

use crate::common::{TestServer, mcpkit};

async fn run(venv: &str) {
    let Some(kit) = mcpkit() else {
        assert!(
            std::env::var_os("TREX_REQUIRE_MCPKIT").is_none(),
            "TREX_REQUIRE_MCPKIT is set but the MCP kit is not installed"
        );
        println!("SKIP: MCP kit not installed (bash ../shared/mcpkit/setup.sh .mcpkit)");
        return;
    };
    let python = kit.join(venv).join("bin/python");
    if !python.exists() {
        assert!(
            std::env::var_os("TREX_REQUIRE_MCPKIT").is_none(),
            "{} missing",
            python.display()
        );
        println!("SKIP: {} missing", python.display());
        return;
    }
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
async fn python_sdk_2x_drives_the_admin_server() {
    run("venv").await;
}

#[tokio::test]
async fn python_sdk_1x_drives_the_admin_server() {
    run("venv-mcp1").await;
}
