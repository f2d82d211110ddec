//! Load generator: measures `tools/call` throughput and latency of a real `trex serve` process
//! against a bare warp route in the same run, and trex's memory and start-up time.
//!
//! It starts both servers as child processes (pinned to one core with `taskset` when `--pin` is
//! given and taskset exists), opens `--sessions` MCP sessions, then runs interleaved rounds of
//! `--seconds` each over `--connections` keep-alive HTTP/1.1 connections, and prints per-round
//! figures and the median ratio. Bounded in time and count; it talks to 127.0.0.1 only.
//!
//! ```sh
//! cargo build --release --bin trex --example loadgen
//! taskset -c 1 target/release/examples/loadgen --pin 0
//! taskset -c 1 target/release/examples/loadgen --pin 0 --stateless   # the 2026-07-28 era
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use warp::Filter;

#[derive(Parser, Clone)]
struct Args {
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// MCP sessions the connections share.
    #[arg(long, default_value_t = 64)]
    sessions: usize,
    /// Seconds per round.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Rounds per server (interleaved; the median is reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Tool to call.
    #[arg(long, default_value = "user-get")]
    tool: String,
    /// Pin both servers to this CPU with taskset.
    #[arg(long)]
    pin: Option<usize>,
    /// The trex binary (default: next to this example, ../trex).
    #[arg(long)]
    trex_bin: Option<PathBuf>,
    /// A second trex binary (e.g. a build of the previous commit) measured in the same
    /// interleaved rounds, for before/after figures.
    #[arg(long)]
    baseline_bin: Option<PathBuf>,
    /// Call in the stateless 2026-07-28 era (no sessions: each request carries its version,
    /// `_meta` and the `Mcp-Method` / `Mcp-Name` headers) instead of over sessions.
    #[arg(long)]
    stateless: bool,
    /// Run trex on a PostgreSQL control store (`postgres://…`; a new schema per run, dropped
    /// at the end) instead of its SQLite file.
    #[arg(long)]
    store_url: Option<String>,
    /// Measure a second trex (this binary unless --baseline-bin) on this store in the same
    /// interleaved rounds: `sqlite`, or a `postgres://…` URL. E.g. `--store-url postgres://… \
    /// --baseline-store sqlite` puts the two stores side by side.
    #[arg(long)]
    baseline_store: Option<String>,
    /// With --store-url: run this many trex nodes on the one PostgreSQL store (each its own
    /// process and data dir, all pinned like the first), the connections spread over them.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Internal: run the bare warp server and print its address.
    #[arg(long, hide = true)]
    bare_server: bool,
}

fn spawn(
    args: &Args,
    program: &std::path::Path,
    extra: &[&str],
    env: &[(&str, String)],
) -> Result<Child> {
    let mut cmd = match (args.pin, which("taskset")) {
        (Some(cpu), true) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(program);
            c
        }
        _ => Command::new(program),
    };
    cmd.args(extra)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        // the benchmark opens up to 100 sessions as one user
        .env("TREX_MCP_MAX_SESSIONS_PER_USER", "100")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Ok(cmd.spawn()?)
}

fn which(p: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {p}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Reads lines of a child's stream until `pick` finds something.
fn scan(
    r: impl std::io::Read + Send + 'static,
    pick: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    use std::io::BufRead;
    let mut rd = std::io::BufReader::new(r);
    let mut line = String::new();
    let mut found = None;
    while rd.read_line(&mut line).ok()? > 0 {
        if let Some(v) = pick(&line) {
            found = Some(v);
            break;
        }
        line.clear();
    }
    std::thread::spawn(move || std::io::copy(&mut rd, &mut std::io::sink()));
    found
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender> {
    let s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await?;
    tokio::spawn(conn);
    Ok(tx)
}

async fn post(
    tx: &mut Sender,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, String)],
    body: Bytes,
) -> Result<(u16, hyper::HeaderMap, Bytes)> {
    let mut b = hyper::Request::post(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    tx.ready().await?;
    let resp = tx.send_request(b.body(Full::new(body))?).await?;
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, h, body))
}

struct Round {
    calls: u64,
    errors: u64,
    p50_us: u64,
    p99_us: u64,
    secs: f64,
}

impl Round {
    fn rate(&self) -> f64 {
        self.calls as f64 / self.secs
    }
}

/// Runs one round: every connection sends `body` to `path` as fast as answers come back.
async fn round(
    addr: SocketAddr,
    path: &'static str,
    conns: usize,
    secs: u64,
    per_conn: Arc<Vec<Vec<(&'static str, String)>>>,
    body: Bytes,
    ok: fn(&[u8]) -> bool,
) -> Result<Round> {
    round_on(&[addr], path, conns, secs, per_conn, body, ok).await
}

/// [`round`] over several servers: connection `i` talks to `addrs[i % addrs.len()]`.
async fn round_on(
    addrs: &[SocketAddr],
    path: &'static str,
    conns: usize,
    secs: u64,
    per_conn: Arc<Vec<Vec<(&'static str, String)>>>,
    body: Bytes,
    ok: fn(&[u8]) -> bool,
) -> Result<Round> {
    let stop = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..conns {
        let (per_conn, body) = (per_conn.clone(), body.clone());
        let addr = addrs[i % addrs.len()];
        tasks.push(tokio::spawn(async move {
            let mut tx = connect(addr).await?;
            let headers = &per_conn[i % per_conn.len()];
            let mut lat = Vec::with_capacity(100_000);
            let mut errors = 0u64;
            while Instant::now() < stop {
                let t = Instant::now();
                match post(&mut tx, addr, path, headers, body.clone()).await {
                    Ok((200, _, b)) if ok(&b) => lat.push(t.elapsed().as_micros() as u32),
                    Ok((st, _, b)) => {
                        if errors == 0 && std::env::var_os("LOADGEN_DEBUG").is_some() {
                            eprintln!("unexpected answer {st}: {}", String::from_utf8_lossy(&b));
                        }
                        errors += 1
                    }
                    Err(_) => {
                        errors += 1;
                        tx = connect(addr).await?;
                    }
                }
            }
            Ok::<_, anyhow::Error>((lat, errors))
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await??;
        lat.extend(l);
        errors += e;
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as u64
    };
    Ok(Round {
        calls: lat.len() as u64,
        errors,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        secs,
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

async fn bare_server() -> Result<()> {
    let hello = warp::post()
        .and(warp::path("hello"))
        .and(warp::body::bytes())
        .map(|_b: Bytes| {
            warp::reply::with_header(
                r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
                "content-type",
                "application/json",
            )
        });
    let l = trex::server::bind("127.0.0.1:0".parse()?)?;
    println!("BARE={}", l.local_addr()?);
    use std::io::Write;
    std::io::stdout().flush()?;
    warp::serve(hello).incoming(l).run().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.bare_server {
        return bare_server().await;
    }
    let me = std::env::current_exe()?;
    let trex_bin = args
        .trex_bin
        .clone()
        .unwrap_or_else(|| me.parent().unwrap().parent().unwrap().join("trex"));
    if !trex_bin.exists() {
        bail!(
            "{} not found: build it with `cargo build --release --bin trex`",
            trex_bin.display()
        );
    }

    let t = start_trex(&args, &trex_bin, args.store_url.as_deref()).await?;
    let base = match (&args.baseline_bin, &args.baseline_store) {
        (None, None) => None,
        (bin, store) => {
            let store = store.as_deref().filter(|s| *s != "sqlite");
            Some(start_trex(&args, bin.as_ref().unwrap_or(&trex_bin), store).await?)
        }
    };
    let (addr, trex_pid, per_session, call) =
        (t.addr, t.pid, t.per_session.clone(), t.call.clone());
    let mut schemas: Vec<(String, String)> = t.pg.iter().cloned().collect();
    // more nodes on the same store: a data dir each with the first node's master key
    let mut extra_nodes: Vec<(Child, tempfile::TempDir)> = Vec::new();
    let mut addrs = vec![addr];
    if args.nodes > 1 {
        let (url, schema) = t.pg.clone().context("--nodes needs --store-url")?;
        let env = vec![("TREX_STORE_URL", url), ("TREX_STORE_SCHEMA", schema)];
        for _ in 1..args.nodes {
            let dir = tempfile::tempdir()?;
            std::fs::copy(
                t._dir.path().join("master.key"),
                dir.path().join("master.key"),
            )?;
            let d = dir.path().to_str().unwrap().to_string();
            let mut c = spawn(
                &args,
                &trex_bin,
                &["serve", "--data-dir", &d, "--listen", "127.0.0.1:0"],
                &env,
            )?;
            let a = listening(&mut c).context("a joining node did not start")?;
            addrs.push(a);
            extra_nodes.push((c, dir));
        }
    }
    schemas.extend(base.as_ref().and_then(|b| b.pg.clone()));
    let (idle_rss, sessions_rss, hundred_rss, ready_ms) =
        (t.idle_rss, t.sessions_rss, t.hundred_rss, t.ready_ms);
    let mut trex = t.child;
    let _dir = t._dir;

    // bare warp
    let mut bare = spawn(&args, &me, &["--bare-server"], &[])?;
    let bare_addr: SocketAddr = scan(bare.stdout.take().unwrap(), |l| {
        l.strip_prefix("BARE=").map(|a| a.trim().to_string())
    })
    .context("bare server did not start")?
    .parse()?;
    let hello = Bytes::from(
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x","arguments":{}}})
            .to_string(),
    );

    println!(
        "trex {} ×{} node(s) | {} connections over {} | tool {} | {} s × {} rounds | servers pinned: {}",
        env!("CARGO_PKG_VERSION"),
        addrs.len(),
        args.connections,
        if args.stateless {
            "no sessions (2026-07-28)".to_string()
        } else {
            format!("{} sessions", per_session.len())
        },
        args.tool,
        args.seconds,
        args.rounds,
        args.pin
            .map(|c| format!("cpu {c}"))
            .unwrap_or_else(|| "no".into())
    );
    let per_session = Arc::new(per_session);
    let no_headers: Arc<Vec<Vec<(&'static str, String)>>> = Arc::new(vec![vec![]]);
    let (mut t_rates, mut b_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut t_p50, mut t_p99) = (Vec::new(), Vec::new());
    let mut o_ratios: Vec<f64> = Vec::new();
    let mut peak_rss = 0;
    for r in 0..args.rounds {
        let b = round(
            bare_addr,
            "/hello",
            args.connections,
            args.seconds,
            no_headers.clone(),
            hello.clone(),
            |_| true,
        )
        .await?;
        // the baseline build runs right before this one in odd rounds and right after it in
        // even ones: the second slot of a round measured up to ~5% faster, whatever ran in it
        let old_round = |old: &Trex| {
            round(
                old.addr,
                "/trex/mcp",
                args.connections,
                args.seconds,
                Arc::new(old.per_session.clone()),
                old.call.clone(),
                tool_ok,
            )
        };
        let mut o = None;
        if r % 2 == 1
            && let Some(old) = &base
        {
            let s0 = statements(old.addr).await;
            o = Some((old_round(old).await?, s0, statements(old.addr).await));
        }
        let s0 = statements_all(&addrs).await;
        let t = round_on(
            &addrs,
            "/trex/mcp",
            args.connections,
            args.seconds,
            per_session.clone(),
            call.clone(),
            tool_ok,
        )
        .await?;
        let s1 = statements_all(&addrs).await;
        if r % 2 == 0
            && let Some(old) = &base
        {
            let s0 = statements(old.addr).await;
            o = Some((old_round(old).await?, s0, statements(old.addr).await));
        }
        peak_rss = peak_rss.max(rss_kib(trex_pid).unwrap_or(0));
        println!(
            "round {}: bare warp {:>8.0}/s p50 {:>5} µs p99 {:>6} µs err {} | trex tools/call {:>8.0}/s p50 {:>5} µs p99 {:>6} µs err {} | ratio {:.2}",
            r + 1,
            b.rate(),
            b.p50_us,
            b.p99_us,
            b.errors,
            t.rate(),
            t.p50_us,
            t.p99_us,
            t.errors,
            t.rate() / b.rate()
        );
        println!(
            "         trex store statements per call {}",
            per_call(s0, s1, t.calls)
        );
        if let Some((o, o0, o1)) = o {
            println!(
                "         baseline trex {:>8.0}/s p50 {:>5} µs p99 {:>6} µs err {} | ratio {:.2} | this / baseline {:.2} | store statements per call {}",
                o.rate(),
                o.p50_us,
                o.p99_us,
                o.errors,
                o.rate() / b.rate(),
                t.rate() / o.rate(),
                per_call(o0, o1, o.calls)
            );
            o_ratios.push(o.rate() / b.rate());
        }
        b_rates.push(b.rate());
        t_rates.push(t.rate());
        ratios.push(t.rate() / b.rate());
        t_p50.push(t.p50_us as f64);
        t_p99.push(t.p99_us as f64);
    }
    println!(
        "median: trex {:.0} calls/s (p50 {:.0} µs, p99 {:.0} µs), bare warp {:.0}/s, ratio {:.2}",
        median(&mut t_rates),
        median(&mut t_p50),
        median(&mut t_p99),
        median(&mut b_rates),
        median(&mut ratios)
    );
    if !o_ratios.is_empty() {
        println!(
            "median baseline ratio {:.2} (this build {:.2})",
            median(&mut o_ratios),
            median(&mut ratios.clone())
        );
    }
    let mib = |k: Option<u64>| {
        k.map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
            .unwrap_or_else(|| "n/a".into())
    };
    println!(
        "trex memory: idle {} | {} sessions {} | 100 sessions {} | peak under load {} ; start to ready {:.0} ms",
        mib(idle_rss),
        args.sessions,
        mib(sessions_rss),
        mib(hundred_rss.or(sessions_rss)),
        mib(Some(peak_rss)),
        ready_ms
    );
    // SIGTERM, so trex shuts down as in production (and profilers get to write their output)
    let mut others: Vec<Child> = base.into_iter().map(|b| b.child).collect();
    others.extend(extra_nodes.into_iter().map(|(c, _)| c));
    for c in std::iter::once(&mut trex)
        .chain(std::iter::once(&mut bare))
        .chain(others.iter_mut())
    {
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let _ = c.wait();
    }
    for (url, schema) in schemas {
        if let Ok((client, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
            tokio::spawn(conn);
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .await;
        }
    }
    Ok(())
}

/// `trex_store_statements_total` of the trex at `addr` (its `/metrics`).
async fn statements(addr: SocketAddr) -> Option<u64> {
    let mut tx = connect(addr).await.ok()?;
    let req = hyper::Request::get("/metrics")
        .header("host", addr.to_string())
        .body(Full::new(Bytes::new()))
        .ok()?;
    tx.ready().await.ok()?;
    let body = tx
        .send_request(req)
        .await
        .ok()?
        .into_body()
        .collect()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&body.to_bytes()).to_string();
    text.lines()
        .find_map(|l| l.strip_prefix("trex_store_statements_total "))
        .and_then(|v| v.trim().parse().ok())
}

/// [`statements`] summed over several nodes.
async fn statements_all(addrs: &[SocketAddr]) -> Option<u64> {
    let mut sum = 0;
    for a in addrs {
        sum += statements(*a).await?;
    }
    Some(sum)
}

/// Store statements per call over a round, as text.
fn per_call(before: Option<u64>, after: Option<u64>, calls: u64) -> String {
    match (before, after) {
        (Some(a), Some(b)) if calls > 0 => format!("{:.3}", (b - a) as f64 / calls as f64),
        _ => "n/a".into(),
    }
}

/// The address a `trex serve` child logs that it listens on.
fn listening(child: &mut Child) -> Result<SocketAddr> {
    let addr = scan(child.stderr.take().context("no stderr")?, |l| {
        l.split("listening on ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .map(str::to_string)
    })
    .context("no `listening on` line")?;
    Ok(addr.parse()?)
}

/// True for a tools/call answer that is not an error.
fn tool_ok(b: &[u8]) -> bool {
    const OK: &[u8] = b"\"isError\":false";
    b.windows(OK.len()).any(|w| w == OK)
}

/// One trex under test: its process, address, sessions and the call to send.
struct Trex {
    child: Child,
    /// The scratch data dir, removed when the run ends.
    _dir: tempfile::TempDir,
    addr: SocketAddr,
    pid: u32,
    per_session: Vec<Vec<(&'static str, String)>>,
    call: Bytes,
    idle_rss: Option<u64>,
    sessions_rss: Option<u64>,
    hundred_rss: Option<u64>,
    ready_ms: f64,
    /// The PostgreSQL store `(url, schema)`, dropped at the end.
    pg: Option<(String, String)>,
}

/// Starts `trex_bin` on a scratch store, times start → ready, opens the sessions.
async fn start_trex(
    args: &Args,
    trex_bin: &std::path::Path,
    store_url: Option<&str>,
) -> Result<Trex> {
    // trex: init a scratch store, then time start → ready
    let dir = tempfile::tempdir()?;
    let d = dir.path().to_str().unwrap();
    let env: Vec<(&str, String)> = match store_url {
        Some(url) => {
            let schema = format!("bench_{}", std::process::id());
            let schema = format!(
                "{schema}_{}",
                dir.path()
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .to_lowercase()
                    .replace(|c: char| !c.is_ascii_alphanumeric(), "")
            );
            vec![
                ("TREX_STORE_URL", url.to_string()),
                ("TREX_STORE_SCHEMA", schema),
            ]
        }
        None => Vec::new(),
    };
    let init = Command::new(trex_bin)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args([
            "init",
            "--data-dir",
            d,
            "--admin-email",
            "bench@example.com",
        ])
        .output()?;
    let key = String::from_utf8(init.stdout)?
        .lines()
        .last()
        .context("no key from trex init")?
        .to_string();
    let t0 = Instant::now();
    let trex = spawn(
        args,
        trex_bin,
        &["serve", "--data-dir", d, "--listen", "127.0.0.1:0"],
        &env,
    )?;
    let trex_pid = trex.id();
    let mut trex = trex;
    let addr = listening(&mut trex).context("trex did not start")?;
    let mut probe = connect(addr).await?;
    let ready_ms = loop {
        let req = hyper::Request::get("/readyz")
            .header("host", addr.to_string())
            .body(Full::new(Bytes::new()))?;
        probe.ready().await?;
        if probe.send_request(req).await?.status() == 200 {
            break t0.elapsed().as_secs_f64() * 1000.0;
        }
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_rss = rss_kib(trex_pid);

    // sessions
    let auth = format!("Bearer {key}");
    let mut admin = connect(addr).await?;
    let init_body = Bytes::from(json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"loadgen","version":"1"}}}).to_string());
    let mut per_session = Vec::new();
    for _ in 0..args.sessions.max(1) {
        let (st, h, _) = post(
            &mut admin,
            addr,
            "/trex/mcp",
            &[("authorization", auth.clone())],
            init_body.clone(),
        )
        .await?;
        if st != 200 {
            bail!("initialize answered {st}");
        }
        let sid = h["mcp-session-id"].to_str()?.to_string();
        per_session.push(vec![
            ("authorization", auth.clone()),
            ("mcp-session-id", sid),
            ("mcp-protocol-version", "2025-11-25".to_string()),
        ]);
    }
    let sessions_rss = rss_kib(trex_pid);
    let mut hundred_rss = None;
    if args.sessions < 100 {
        for _ in args.sessions..100 {
            let (st, _, _) = post(
                &mut admin,
                addr,
                "/trex/mcp",
                &[("authorization", auth.clone())],
                init_body.clone(),
            )
            .await?;
            if st != 200 {
                bail!("initialize answered {st} while opening 100 sessions");
            }
        }
        hundred_rss = rss_kib(trex_pid);
    }
    let (_, _, users) = post(&mut admin, addr, "/trex/mcp", &per_session[0], Bytes::from(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"user-list","arguments":{"limit":1}}}).to_string())).await?;
    let users: Value = serde_json::from_slice(&users)?;
    let uid = users["result"]["structuredContent"]["users"][0]["id"]
        .as_str()
        .context("no user")?
        .to_string();
    let call_args = match args.tool.as_str() {
        "user-get" => json!({"userId": uid}),
        "user-list" | "api-key-list" => json!({"limit": 10}),
        _ => json!({}),
    };
    let mut call = Bytes::from(json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name": args.tool, "arguments": call_args}}).to_string());
    if args.stateless {
        // every connection sends the era's headers and `_meta`; no session is used
        call = Bytes::from(json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name": args.tool, "arguments": call_args,
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}}).to_string());
        per_session = vec![vec![
            ("authorization", auth.clone()),
            ("mcp-protocol-version", "2026-07-28".to_string()),
            ("mcp-method", "tools/call".to_string()),
            ("mcp-name", args.tool.clone()),
        ]];
    }

    Ok(Trex {
        child: trex,
        _dir: dir,
        addr,
        pid: trex_pid,
        per_session,
        call,
        idle_rss,
        sessions_rss,
        hundred_rss,
        ready_ms,
        pg: store_url.map(|u| (u.to_string(), env[1].1.clone())),
    })
}
