//! Test helpers: start trex in-process on 127.0.0.1:0 with a temporary data dir, and a small MCP
//! client over real HTTP (reqwest) that understands both JSON and SSE replies.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};
use trex::config::{Config, Overrides};
use trex::mcp::server::McpServer;
use trex::server::{self, Running};
use trex::{App, ops};

/// A running server with an admin key.
pub struct TestServer {
    pub running: Option<Running>,
    pub addr: std::net::SocketAddr,
    pub dir: Arc<tempfile::TempDir>,
    pub key: String,
    pub admin_id: String,
    customize: Arc<dyn Fn(&mut Config) + Send + Sync>,
    extend: Arc<dyn Fn(McpServer) -> McpServer + Send + Sync>,
}

impl TestServer {
    /// Default configuration.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}, |s| s).await
    }

    /// With a configuration tweak and extra tools on the admin server.
    pub async fn start_with(
        customize: impl Fn(&mut Config) + Send + Sync + 'static,
        extend: impl Fn(McpServer) -> McpServer + Send + Sync + 'static,
    ) -> TestServer {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let (running, key, admin_id) = boot(dir.path(), &customize, &extend, None).await;
        TestServer {
            addr: running.addr,
            running: Some(running),
            dir,
            key,
            admin_id,
            customize: Arc::new(customize),
            extend: Arc::new(extend),
        }
    }

    /// Another node on this server's store (which must be a shared PostgreSQL one): its own
    /// data dir with a copy of this node's master key, the same configuration, a new port.
    pub async fn join(&self) -> TestServer {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        std::fs::copy(
            self.data_dir().join("master.key"),
            dir.path().join("master.key"),
        )
        .unwrap();
        let (running, _, _) = boot(dir.path(), &*self.customize, &*self.extend, Some(())).await;
        TestServer {
            addr: running.addr,
            running: Some(running),
            dir,
            key: self.key.clone(),
            admin_id: self.admin_id.clone(),
            customize: self.customize.clone(),
            extend: self.extend.clone(),
        }
    }

    /// Stops and starts again on the same data dir with another configuration tweak (which
    /// replaces the first).
    pub async fn restart_with(&mut self, customize: impl Fn(&mut Config) + Send + Sync + 'static) {
        self.customize = Arc::new(customize);
        self.restart().await;
    }

    /// Stops and starts again on the same data dir (a new port).
    pub async fn restart(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
        let (running, _, _) =
            boot(self.dir.path(), &*self.customize, &*self.extend, Some(())).await;
        self.addr = running.addr;
        self.running = Some(running);
    }

    pub fn app(&self) -> &Arc<App> {
        &self.running.as_ref().unwrap().app
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn url(&self) -> String {
        format!("http://{}/trex/mcp", self.addr)
    }

    /// A client with this server's admin key.
    pub fn client(&self) -> Client {
        Client::new(&self.url(), Some(&self.key))
    }

    /// Creates another admin and a key for it; returns (user id, key).
    pub async fn other_admin(&self, email: &str) -> (String, String) {
        let (app, cli) = (self.app(), ops::Actor::cli());
        let u = ops::users::create(app, &cli, "Other", email, None, "admin")
            .await
            .unwrap();
        let k = ops::keys::create(app, &cli, &u.id, "other", None, "expiresAt", None)
            .await
            .unwrap();
        (u.id, k.key)
    }

    /// A connection of its own to this server's `trex.db`, for tests that plant or read rows
    /// the tools do not offer (the server sees the commits as another process's).
    pub fn sql(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(self.data_dir().join("trex.db")).unwrap();
        c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
        c
    }

    /// Everything the store holds, as bytes: `trex.db` and its log, or on PostgreSQL the text
    /// of every row of every table of the store's schema.
    pub fn store_bytes(&self) -> Vec<u8> {
        if pg_store() {
            return self.store(|c| {
                let tables: Vec<String> = c.query_map(
                    "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()",
                    (),
                    |r| r.get(0),
                )?;
                let mut all = Vec::new();
                for t in tables {
                    let rows: Vec<String> =
                        c.query_map(&format!("SELECT CAST(t AS TEXT) FROM \"{t}\" t"), (), |r| r.get(0))?;
                    for r in rows {
                        all.extend(r.into_bytes());
                    }
                }
                Ok(all)
            });
        }
        self.checkpoint();
        let mut all = Vec::new();
        for f in ["trex.db", "trex.db-wal"] {
            if let Ok(b) = std::fs::read(self.data_dir().join(f)) {
                all.extend(b);
            }
        }
        all
    }

    /// Moves the write-ahead log into `trex.db`, so the file's bytes show everything stored
    /// (nothing to do on a PostgreSQL store).
    pub fn checkpoint(&self) {
        if pg_store() {
            return;
        }
        self.sql()
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
    }
}

async fn boot(
    dir: &Path,
    customize: &(dyn Fn(&mut Config) + Send + Sync),
    extend: &(dyn Fn(McpServer) -> McpServer + Send + Sync),
    again: Option<()>,
) -> (Running, String, String) {
    let o = Overrides {
        data_dir: Some(dir.to_path_buf()),
        listen: Some("127.0.0.1:0".parse().unwrap()),
    };
    let mut config = Config::load(None, std::iter::empty(), &o).unwrap();
    config.log.level = "warn".into();
    test_store(&mut config.store);
    customize(&mut config);
    let app = App::open(config).await.unwrap();
    let (key, admin) = if again.is_none() {
        let (u, k) =
            ops::users::bootstrap_admin(&app.store, "Admin", "admin@example.com", None, "test")
                .await
                .unwrap()
                .expect("a new store");
        (k.key, u.id)
    } else {
        (String::new(), String::new())
    };
    let catalogue = Arc::new(trex::servers::Catalogue::with_admin(extend(
        trex::tools::admin_server(),
    )));
    let running = server::start(app, catalogue, vec![]).await.unwrap();
    (running, key, admin)
}

/// The PostgreSQL database the store matrix runs on (`TREX_TEST_STORE=postgres`).
pub const TEST_STORE_DB: &str = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable";

/// True when the suite runs against a PostgreSQL control store: `TREX_TEST_STORE=postgres`
/// (unset or `sqlite`: the SQLite file, the default).
pub fn pg_store() -> bool {
    match std::env::var("TREX_TEST_STORE").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("TREX_TEST_STORE={other}: use sqlite or postgres"),
    }
}

/// The PostgreSQL schema of a data dir's store in the matrix: one per data dir, so tests are
/// isolated as their temporary dirs are, and a restart on the same dir finds its store again.
pub fn test_schema(dir: &Path) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(dir.to_string_lossy().as_bytes());
    format!("t_{}", hex::encode(&h[..8]))
}

/// Points a store config at PostgreSQL when the matrix asks for it.
pub fn test_store(c: &mut trex::config::StoreConfig) {
    if pg_store() {
        c.url = TEST_STORE_DB.into();
        c.schema = test_schema(&c.data_dir);
    }
}

/// The environment a `trex` child process needs to open the same store as the matrix.
pub fn store_env(dir: &Path) -> Vec<(&'static str, String)> {
    if pg_store() {
        vec![
            ("TREX_STORE_URL", TEST_STORE_DB.into()),
            ("TREX_STORE_SCHEMA", test_schema(dir)),
        ]
    } else {
        Vec::new()
    }
}

/// The `trex` binary with the store matrix's environment for the data dir its arguments name
/// (`--data-dir D`), so a child process opens the same store as the in-process server.
pub fn trex_command<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_trex"));
    cmd.args(args);
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    if let Some(i) = args.iter().position(|a| *a == "--data-dir")
        && let Some(dir) = args.get(i + 1)
    {
        cmd.envs(store_env(Path::new(dir)));
    }
    cmd
}

impl TestServer {
    /// Runs `f` on this server's store through a pooled connection, in one write transaction,
    /// on a thread of its own (the server sees the commit as another connection's): for tests
    /// that plant or read rows the tools do not offer.
    pub fn store<T: Send>(
        &self,
        f: impl FnOnce(&trex::store::Conn<'_>) -> trex::Result<T> + Send,
    ) -> T {
        let store = self.app().store.clone();
        std::thread::scope(|s| s.spawn(|| store.write_sync(f)).join().unwrap())
            .expect("store statement")
    }

    /// One statement on this server's store (see [`store`](Self::store)).
    pub fn exec<P: trex::store::sql::Params + Send>(&self, sql: &str, params: P) -> usize {
        self.store(|c| c.execute(sql, params))
    }
}

/// Runs `f` in a write transaction on the store of data dir `dir` (the matrix's store for it),
/// opened for the call on a thread of its own: for tests of the CLI that read or plant rows.
pub fn with_dir_store<T: Send>(
    dir: &Path,
    f: impl FnOnce(&trex::store::Conn<'_>) -> trex::Result<T> + Send,
) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut c = trex::config::StoreConfig {
                data_dir: dir.to_path_buf(),
                pool_size: 1,
                ..Default::default()
            };
            test_store(&mut c);
            trex::store::Store::open(&c)?.write_sync(f)
        })
        .join()
        .unwrap()
    })
    .expect("store statement")
}

/// The JSON Accept/Content-Type headers every POST carries.
pub fn post_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert(
        "accept",
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    h
}

/// One SSE event.
#[derive(Debug, Clone, Default)]
pub struct SseEvent {
    pub id: Option<String>,
    pub data: String,
    pub retry: Option<u64>,
    pub comment: bool,
}

/// Parses an SSE body into events (comments kept as events with `comment: true`).
pub fn parse_sse(body: &str) -> Vec<SseEvent> {
    let mut out = Vec::new();
    for block in body.split("\n\n") {
        if block.trim().is_empty() {
            continue;
        }
        let mut e = SseEvent::default();
        let mut data = Vec::new();
        for line in block.lines() {
            if line.starts_with(':') {
                e.comment = true;
            } else if let Some(v) = line.strip_prefix("id:") {
                e.id = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
            } else if let Some(v) = line.strip_prefix("retry:") {
                e.retry = v.trim().parse().ok();
            }
        }
        e.data = data.join("\n");
        out.push(e);
    }
    out
}

/// A minimal MCP client.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub url: String,
    pub key: Option<String>,
    pub session: Option<String>,
    pub version: String,
    next_id: Arc<std::sync::atomic::AtomicI64>,
}

impl Client {
    pub fn new(url: &str, key: Option<&str>) -> Client {
        Client {
            http: reqwest::Client::new(),
            url: url.to_string(),
            key: key.map(str::to_string),
            session: None,
            version: "2025-11-25".into(),
            next_id: Arc::new(std::sync::atomic::AtomicI64::new(1)),
        }
    }

    pub fn with_key(mut self, key: &str) -> Client {
        self.key = Some(key.to_string());
        self
    }

    fn id(&self) -> i64 {
        self.next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// A POST with the standard headers plus auth, session and version.
    pub fn post(&self) -> reqwest::RequestBuilder {
        let mut b = self.http.post(&self.url).headers(post_headers());
        if let Some(k) = &self.key {
            b = b.bearer_auth(k);
        }
        if let Some(s) = &self.session {
            b = b
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", &self.version);
        }
        b
    }

    /// A GET for the standalone stream.
    pub fn get(&self) -> reqwest::RequestBuilder {
        let mut b = self
            .http
            .get(&self.url)
            .header("accept", "text/event-stream");
        if let Some(k) = &self.key {
            b = b.bearer_auth(k);
        }
        if let Some(s) = &self.session {
            b = b.header("mcp-session-id", s);
        }
        b
    }

    /// Initializes with `version` and sends `notifications/initialized`; returns the result.
    pub async fn initialize_version(&mut self, version: &str) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": version,
            "capabilities": {"sampling": {}, "elicitation": {}},
            "clientInfo": {"name": "trex-tests", "version": "1"}}});
        let r = self.post().json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200, "initialize failed: {:?}", r.text().await);
        self.session = Some(r.headers()["mcp-session-id"].to_str().unwrap().to_string());
        let v: Value = r.json().await.unwrap();
        self.version = v["result"]["protocolVersion"].as_str().unwrap().to_string();
        let n = self
            .post()
            .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .send()
            .await
            .unwrap();
        assert_eq!(n.status(), 202);
        v["result"].clone()
    }

    pub async fn initialize(&mut self) -> Value {
        self.initialize_version("2025-11-25").await
    }

    /// Sends a request and returns the whole JSON-RPC response (from JSON or SSE).
    pub async fn rpc(&self, method: &str, params: Value) -> Value {
        let id = self.id();
        let r = self
            .post()
            .json(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let sse = r
            .headers()
            .get("content-type")
            .is_some_and(|c| c.to_str().unwrap().starts_with("text/event-stream"));
        let text = r.text().await.unwrap();
        assert_eq!(status, 200, "{method}: {text}");
        if sse {
            parse_sse(&text)
                .into_iter()
                .filter(|e| !e.data.is_empty())
                .map(|e| serde_json::from_str::<Value>(&e.data).unwrap())
                .find(|m| m["id"] == json!(id))
                .unwrap_or_else(|| panic!("no response in SSE body: {text}"))
        } else {
            serde_json::from_str(&text).unwrap()
        }
    }

    /// `tools/call`; returns the `result` (a CallToolResult).
    pub async fn call(&self, tool: &str, args: Value) -> Value {
        let r = self
            .rpc("tools/call", json!({"name": tool, "arguments": args}))
            .await;
        assert!(r.get("error").is_none(), "{tool}: protocol error {r}");
        r["result"].clone()
    }

    /// `tools/call` expected to succeed; returns `structuredContent`.
    pub async fn call_ok(&self, tool: &str, args: Value) -> Value {
        let r = self.call(tool, args).await;
        assert_eq!(r["isError"], false, "{tool} failed: {r}");
        let text: Value = serde_json::from_str(r["content"][0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(
            text, r["structuredContent"],
            "text and structuredContent differ"
        );
        r["structuredContent"].clone()
    }

    /// `tools/call` expected to fail; returns the error text.
    pub async fn call_err(&self, tool: &str, args: Value) -> String {
        let r = self.call(tool, args).await;
        assert_eq!(r["isError"], true, "{tool} should fail: {r}");
        r["content"][0]["text"].as_str().unwrap().to_string()
    }
}

/// Path of the MCP verification kit, if installed (`MCPKIT` or `.mcpkit` in the repo).
/// The MCP kit's directory; the tests that need it are `#[ignore]`d (run them with
/// `cargo test -- --include-ignored`), so when one runs, a missing kit is a failure that says
/// how to install it.
pub fn require_mcpkit() -> PathBuf {
    mcpkit().unwrap_or_else(|| {
        panic!(
            "the MCP kit is not installed: run `bash ../shared/mcpkit/setup.sh .mcpkit` (or set MCPKIT to its directory)"
        )
    })
}

/// True when PostgreSQL answers on 127.0.0.1:5432. When it does not, the test fails with a
/// message saying how to start it — unless `TREX_SKIP_POSTGRES=1` asks to skip, which prints
/// a SKIP line.
pub async fn postgres_or_skip(test: &str) -> bool {
    let up = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        tokio::net::TcpStream::connect("127.0.0.1:5432"),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    if up {
        return true;
    }
    if std::env::var_os("TREX_SKIP_POSTGRES").is_some() {
        println!("SKIP {test}: no PostgreSQL on 127.0.0.1:5432 (TREX_SKIP_POSTGRES is set)");
        return false;
    }
    panic!(
        "{test} needs PostgreSQL on 127.0.0.1:5432 (trust auth, database `test`): start it with \
         `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`, or set \
         TREX_SKIP_POSTGRES=1 to skip the PostgreSQL tests"
    )
}

pub fn mcpkit() -> Option<PathBuf> {
    let p = std::env::var_os("MCPKIT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".mcpkit"));
    p.join("venv/bin/python").exists().then_some(p)
}

/// Reads an SSE response event by event.
pub struct SseReader {
    stream:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl SseReader {
    pub fn new(r: reqwest::Response) -> SseReader {
        SseReader {
            stream: Box::pin(r.bytes_stream()),
            buf: String::new(),
        }
    }

    /// The next event (comments included), or `None` when the stream ends or `wait` passes.
    pub async fn next(&mut self, wait: std::time::Duration) -> Option<SseEvent> {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..i + 2).collect();
                if let Some(e) = parse_sse(&block).into_iter().next() {
                    return Some(e);
                }
                continue;
            }
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Ok(Some(Ok(b))) => self.buf.push_str(&String::from_utf8_lossy(&b)),
                _ => return None,
            }
        }
    }

    /// The next event that carries data (skips comments and priming events).
    pub async fn next_message(
        &mut self,
        wait: std::time::Duration,
    ) -> Option<(Option<String>, Value)> {
        loop {
            let e = self.next(wait).await?;
            if !e.data.is_empty() {
                return Some((e.id, serde_json::from_str(&e.data).unwrap()));
            }
        }
    }
}
