//! README.md's examples, run as written against a live server: every `python` block (with the
//! Python SDK of the MCP kit: 2.x, or 1.x for a block that imports `streamablehttp_client`) and
//! every `sh` block that calls curl. The README's placeholders — `http://127.0.0.1:8001` and
//! `trex_your_api_key_here` — are replaced by the test server's address and key, nothing else.

use std::process::Command;

use crate::common::{TestServer, require_mcpkit};

/// The fenced blocks of README.md: (language, text).
fn blocks() -> Vec<(String, String)> {
    let readme = include_str!("../../README.md");
    let mut out = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if let Some(lang) = line.strip_prefix("```") {
            let lang = lang.trim().to_string();
            let mut text = String::new();
            for l in lines.by_ref() {
                if l.starts_with("```") {
                    break;
                }
                text.push_str(l);
                text.push('\n');
            }
            out.push((lang, text));
        }
    }
    out
}

fn localize(text: &str, s: &TestServer) -> String {
    text.replace("http://127.0.0.1:8001", &s.base())
        .replace("trex_your_api_key_here", &s.key)
}

async fn run(program: std::path::PathBuf, args: Vec<String>) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let o = Command::new(program).args(args).output().unwrap();
        (
            o.status.success(),
            format!(
                "{}\n{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_readme_curl_lines_work_as_written() {
    let s = TestServer::start().await;
    let curls: Vec<String> = blocks()
        .into_iter()
        .filter(|(lang, t)| lang == "sh" && t.contains("curl "))
        .map(|(_, t)| localize(&t, &s))
        .collect();
    assert!(!curls.is_empty(), "README has no curl block");
    for script in curls {
        let (ok, out) = run("sh".into(), vec!["-ec".into(), script.clone()]).await;
        assert!(ok, "{script}\n{out}");
        assert!(out.contains("\"isError\":false"), "{script}\n{out}");
        assert!(out.contains("admin@example.com"), "{out}");
    }
}

#[tokio::test]
#[ignore = "needs the MCP kit: bash ../shared/mcpkit/setup.sh .mcpkit, then cargo test -- --include-ignored"]
async fn the_readme_python_examples_work_as_written() {
    let kit = require_mcpkit();
    let s = TestServer::start().await;
    let pythons: Vec<String> = blocks()
        .into_iter()
        .filter(|(lang, _)| lang == "python")
        .map(|(_, t)| t)
        .collect();
    assert!(pythons.len() >= 2, "README should show mcp 2.x and 1.x");
    for code in pythons {
        let venv = if code.contains("streamablehttp_client") {
            "venv-mcp1"
        } else {
            "venv"
        };
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("example.py");
        std::fs::write(&file, localize(&code, &s)).unwrap();
        let python = kit.join(venv).join("bin/python");
        let (ok, out) = run(python, vec![file.display().to_string()]).await;
        assert!(ok, "{venv}: {code}\n{out}");
        assert!(out.contains("admin@example.com"), "{venv}: {out}");
    }
}
