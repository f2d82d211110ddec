//! What the benchmarks in `examples/` share: a `trex` child process on a temporary data dir
//! (its admin key from `trex init`), a minimal MCP client over HTTP, and the process's RSS from
//! `/proc` (Linux).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// The `trex` binary: the first argument, or the release build beside this example.
pub fn trex_bin() -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let bin: PathBuf = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| me.parent().unwrap().parent().unwrap().join("trex"));
    if !bin.exists() {
        bail!(
            "{} not found: cargo build --release --bin trex",
            bin.display()
        );
    }
    Ok(bin)
}

/// A running `trex serve` on a data dir of its own.
pub struct Served {
    pub child: Child,
    pub pid: u32,
    pub base: String,
    pub key: String,
    pub dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Initializes a data dir (`prepare` may put files into it first) and serves it.
pub fn serve(trex_bin: &Path, prepare: impl FnOnce(&Path)) -> Result<Served> {
    let dir = tempfile::tempdir()?;
    prepare(dir.path());
    let d = dir.path().to_str().unwrap().to_string();
    let init = Command::new(trex_bin)
        .args([
            "init",
            "--data-dir",
            &d,
            "--admin-email",
            "bench@example.com",
        ])
        .output()?;
    let key = String::from_utf8(init.stdout)?
        .lines()
        .last()
        .context("no key from trex init")?
        .to_string();
    let mut child = Command::new(trex_bin)
        .args(["serve", "--data-dir", &d, "--listen", "127.0.0.1:0"])
        .env("TREX_LOG", "warn,trex=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(rest) = line.split("listening on ").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(10))
        .context("trex did not start")?;
    std::thread::sleep(Duration::from_millis(300));
    Ok(Served {
        child,
        pid,
        base: format!("http://{addr}"),
        key,
        dir,
    })
}

pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Resets the peak RSS counter of `pid` (Linux ≥ 4.0).
pub fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

pub struct Mcp {
    http: reqwest::Client,
    url: String,
    key: String,
    session: String,
    next: i64,
}

impl Mcp {
    pub async fn open(http: &reqwest::Client, url: String, key: &str) -> Result<Mcp> {
        let r = http
            .post(&url)
            .bearer_auth(key)
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
                "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"membench","version":"1"}}}))
            .send()
            .await?;
        let session = r.headers()["mcp-session-id"].to_str()?.to_string();
        Ok(Mcp {
            http: http.clone(),
            url,
            key: key.to_string(),
            session,
            next: 1,
        })
    }

    /// Registers the machine's PostgreSQL (database `test`, user `postgres`, trust auth) as
    /// database `id` with a credential.
    pub async fn register_local_postgres(&mut self, id: &str) -> Result<()> {
        self.call(
            "database-create",
            json!({"id": id, "host": "127.0.0.1", "port": 5432, "databaseName": "test"}),
            false,
        )
        .await?;
        self.call(
            "database-credential-save",
            json!({"databaseId": id, "username": "postgres", "password": "unused"}),
            false,
        )
        .await?;
        Ok(())
    }

    /// Calls a tool and returns its `structuredContent` (answered as JSON or over SSE); an error
    /// result is an error.
    pub async fn call_result(&mut self, tool: &str, args: Value) -> Result<Value> {
        self.next += 1;
        let r = self
            .http
            .post(&self.url)
            .bearer_auth(&self.key)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.session)
            .header("mcp-protocol-version", "2025-11-25")
            .json(&json!({"jsonrpc":"2.0","id":self.next,"method":"tools/call","params":{"name": tool, "arguments": args}}))
            .send()
            .await?;
        let body = r.text().await?;
        let json = body
            .lines()
            .filter_map(|l| l.strip_prefix("data:").map(str::trim_start))
            .rfind(|l| l.contains("\"result\"") || l.contains("\"error\""))
            .unwrap_or(body.as_str());
        let v: Value =
            serde_json::from_str(json).with_context(|| format!("not JSON: {json:.200}"))?;
        if v["result"]["isError"] == true || v.get("error").is_some() {
            bail!("{tool} failed: {:.300}", v.to_string());
        }
        Ok(v["result"]["structuredContent"].clone())
    }

    /// Calls a tool; `sse` asks for an SSE answer (a progress token). Returns the body's size.
    pub async fn call(&mut self, tool: &str, args: Value, sse: bool) -> Result<(usize, String)> {
        self.next += 1;
        let mut params = json!({"name": tool, "arguments": args});
        if sse {
            params["_meta"] = json!({"progressToken": self.next});
        }
        let r = self
            .http
            .post(&self.url)
            .bearer_auth(&self.key)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.session)
            .header("mcp-protocol-version", "2025-11-25")
            .json(&json!({"jsonrpc":"2.0","id":self.next,"method":"tools/call","params":params}))
            .send()
            .await?;
        let body = r.text().await?;
        let head: String = body.chars().take(160).collect();
        Ok((body.len(), head))
    }
}
