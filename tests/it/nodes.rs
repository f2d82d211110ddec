//! Several trex nodes on one PostgreSQL control store (whichever store the matrix runs the rest
//! of the suite on): a session opened on one node goes on through the others, a key revoked or
//! a session ended on one is refused by every node within a second, the session caps count all
//! nodes together, the official Python SDK runs a session through a round-robin proxy in
//! front of three nodes without a failed call, 300 jobs through the three nodes' runtimes run
//! once each, and the pipelines of a node killed with `kill -9` are taken over by exactly one
//! other node.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{Client, SseReader, TEST_STORE_DB, TestServer, postgres_or_skip};

/// max_sessions of the first test's nodes.
const CAP: usize = 6;

/// The first node of a new shared store (a schema of its own), with `max_sessions` sessions.
async fn first_node(max_sessions: usize) -> (TestServer, String) {
    let schema = format!("n_{}", trex::util::random_hex(6));
    let s = schema.clone();
    let node = TestServer::start_with(
        move |c| {
            c.store.url = TEST_STORE_DB.into();
            c.store.schema = s.clone();
            c.mcp.max_sessions = max_sessions;
            c.mcp.max_sessions_per_user = max_sessions;
            c.cluster.heartbeat_secs = 1;
        },
        |s| s,
    )
    .await;
    (node, schema)
}

/// Drops a test's schema (best effort).
async fn drop_schema(schema: &str) {
    let (client, conn) = tokio_postgres::connect(TEST_STORE_DB, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let _ = client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await;
}

/// The same MCP session, talking to another node.
fn via(c: &Client, node: &TestServer) -> Client {
    let mut other = c.clone();
    other.url = node.url();
    other
}

/// Waits until `status` of a ping through `c` is `want`; returns how long that took.
async fn until_status(c: &Client, want: u16) -> Duration {
    let t = Instant::now();
    loop {
        let got = c
            .post()
            .json(&json!({"jsonrpc":"2.0","id":1,"method":"ping"}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if got == want {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "still {got}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_serves_any_session_and_refusals_reach_every_node_within_a_second() {
    if !postgres_or_skip("nodes").await {
        return;
    }
    let (n1, schema) = first_node(CAP).await;
    let (n2, n3) = (n1.join().await, n1.join().await);

    // a session opened on node 1 goes on through nodes 2 and 3
    let mut c1 = n1.client();
    c1.initialize().await;
    let me = c1.call_ok("user-get", json!({"userId": n1.admin_id})).await;
    for node in [&n2, &n3] {
        let c = via(&c1, node);
        let got = c.call_ok("user-get", json!({"userId": n1.admin_id})).await;
        assert_eq!(got["user"]["email"], me["user"]["email"]);
    }
    // a user made on node 2 is seen by node 3 at once
    via(&c1, &n2)
        .call_ok(
            "user-create",
            json!({"name": "Ann", "email": "ann@example.com", "role": "admin"}),
        )
        .await;
    let found = via(&c1, &n3)
        .call_ok("user-list", json!({"search": "ann@"}))
        .await;
    assert_eq!(found["users"].as_array().unwrap().len(), 1, "{found}");

    // a key revoked on node 3 is refused by nodes 1 and 2 within a second
    let k = c1
        .call_ok(
            "api-key-create",
            json!({"userId": n1.admin_id, "name": "shared"}),
        )
        .await;
    let key = k["key"].as_str().unwrap().to_string();
    let (mut a, mut b) = (
        Client::new(&n1.url(), Some(&key)),
        Client::new(&n2.url(), Some(&key)),
    );
    a.initialize().await;
    b.initialize().await;
    via(&c1, &n3)
        .call_ok("api-key-revoke", json!({"keyId": k["id"]}))
        .await;
    let (ta, tb) = (until_status(&a, 401).await, until_status(&b, 401).await);
    eprintln!("revocation reached node 1 in {ta:?}, node 2 in {tb:?}");
    assert!(ta < Duration::from_secs(1), "node 1 took {ta:?}");
    assert!(tb < Duration::from_secs(1), "node 2 took {tb:?}");

    // the caps are global: the live sessions of all nodes together fill max_sessions
    let live = c1.call_ok("session-list", json!({"kind": "mcp"})).await["sessions"]
        .as_array()
        .unwrap()
        .len();
    let nodes = [&n1, &n2, &n3];
    let mut opened = Vec::new();
    for i in live..CAP {
        let mut c = nodes[i % 3].client();
        c.initialize().await;
        opened.push(c);
    }
    let over = Client::new(&n1.url(), Some(&n1.key))
        .post()
        .json(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        over.status(),
        503,
        "the cap counts the sessions of every node"
    );
    assert!(over.headers().contains_key("retry-after"));

    // ... and a session ended on one node is unknown to the others within a second
    let c2 = opened.pop().expect("a session opened above");
    let elsewhere: Vec<&TestServer> = nodes.into_iter().filter(|n| n.url() != c2.url).collect();
    let other = via(&c2, elsewhere[0]);
    until_status(&other, 200).await;
    let del = c2
        .http
        .delete(&c2.url)
        .bearer_auth(&n1.key)
        .header("mcp-session-id", c2.session.clone().unwrap())
        .header("mcp-protocol-version", &c2.version)
        .send()
        .await
        .unwrap();
    assert!(del.status().is_success(), "{}", del.status());
    let gone = until_status(&other, 404).await;
    eprintln!("the ended session reached the other node in {gone:?}");
    assert!(
        gone < Duration::from_secs(1),
        "the other node took {gone:?}"
    );

    // the shared store was built by the PostgreSQL schema steps, which migration-list shows
    let core = c1
        .call_ok("migration-list", json!({"target": "core"}))
        .await;
    let t = &core["targets"][0];
    assert_eq!(t["dialect"], "postgresql", "{core}");
    let applied: Vec<i64> = t["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["status"] == "applied")
        .map(|m| m["version"].as_i64().unwrap())
        .collect();
    // schema.pg.sql starts at version 12 (SQLite's 1 to 12 in one step) and keeps pace after
    let want: Vec<i64> = (12..=trex::store::schema::current_version()).collect();
    assert_eq!(applied, want, "{core}");

    // every node shows every node
    let nodes = c1.call_ok("cluster-list-nodes", json!({})).await;
    let alive = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["state"] == "alive")
        .count();
    assert_eq!(alive, 3, "{nodes}");
    // ... and which node runs which service (the others' as of their last heartbeat)
    let t = Instant::now();
    loop {
        let l = c1.call_ok("cluster-list-services", json!({})).await;
        let services = l["services"].as_array().unwrap();
        let mut on: Vec<&str> = services
            .iter()
            .filter(|s| s["extension"] == "job-workers")
            .map(|s| s["node"].as_str().unwrap())
            .collect();
        on.sort();
        on.dedup();
        if on.len() == 3 {
            // only this node's services are controllable from here
            let mine = services.iter().filter(|s| s["controllable"] == true);
            assert!(mine.clone().count() >= 1);
            assert!(
                mine.map(|s| &s["node"]).all(|n| n == &services[0]["node"]),
                "{l}"
            );
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "not every node's services: {l}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop((n2, n3, n1));
    drop_schema(&schema).await;
}

/// A tiny HTTP/1.1 round-robin proxy: each request goes to the next node (`Connection: close`
/// on both sides). Returns its address and the requests each node got.
async fn round_robin(
    nodes: Vec<std::net::SocketAddr>,
) -> (std::net::SocketAddr, Arc<Vec<AtomicUsize>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counts: Arc<Vec<AtomicUsize>> =
        Arc::new(nodes.iter().map(|_| AtomicUsize::new(0)).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let (c2, n2) = (counts.clone(), next.clone());
    tokio::spawn(async move {
        while let Ok((mut down, _)) = listener.accept().await {
            let i = n2.fetch_add(1, Ordering::Relaxed) % nodes.len();
            let (to, counts) = (nodes[i], c2.clone());
            tokio::spawn(async move {
                // the request head, then its body by Content-Length
                let mut buf = Vec::new();
                let head_end = loop {
                    let mut chunk = [0u8; 8192];
                    let n = match down.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    let mut chunk = [0u8; 8192];
                    match down.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let mut lines: Vec<&str> = head
                    .trim_end()
                    .lines()
                    .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
                    .collect();
                lines.push("Connection: close");
                let mut out = lines.join("\r\n").into_bytes();
                out.extend_from_slice(b"\r\n\r\n");
                out.extend_from_slice(&buf[head_end..head_end + len]);
                let Ok(mut up) = tokio::net::TcpStream::connect(to).await else {
                    return;
                };
                counts[i].fetch_add(1, Ordering::Relaxed);
                if up.write_all(&out).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy(&mut up, &mut down).await;
            });
        }
    });
    (addr, counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the MCP kit: bash ../shared/mcpkit/setup.sh .mcpkit, then cargo test -- --include-ignored"]
async fn the_python_sdk_runs_a_session_through_a_round_robin_proxy_over_three_nodes() {
    if !postgres_or_skip("nodes").await {
        return;
    }
    let (n1, schema) = first_node(100).await;
    let (n2, n3) = (n1.join().await, n1.join().await);
    let (proxy, counts) = round_robin(vec![n1.addr, n2.addr, n3.addr]).await;
    // one session of the SDK 1.x, 60 tool calls, every one through the proxy
    let url = format!("http://{proxy}/trex/mcp");
    crate::python_sdk::run_script_with("venv-mcp1", "sdk_many_calls.py", &n1, url, &["60".into()])
        .await;
    let per_node: Vec<usize> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    eprintln!("requests per node through the proxy: {per_node:?}");
    assert!(
        per_node.iter().all(|n| *n >= 15),
        "every node served the session: {per_node:?}"
    );
    drop((n2, n3, n1));
    drop_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_store_moves_to_postgres_with_its_keys_and_sealed_secrets() {
    if !postgres_or_skip("nodes").await {
        return;
    }
    // a node on the SQLite store, whatever store the matrix runs
    let mut s = TestServer::start_with(|c| c.store.url = String::new(), |s| s).await;
    let mut c = s.client();
    c.initialize().await;
    c.call_ok(
        "sso-save",
        json!({"id": "gh", "displayName": "GitHub", "clientId": "cid", "clientSecret": "s3cr3t-value"}),
    )
    .await;
    c.call_ok(
        "user-create",
        json!({"name": "Bo", "email": "bo@example.com"}),
    )
    .await;
    s.running.take().unwrap().stop().await;

    let schema = format!("n_{}", trex::util::random_hex(6));
    let migrate = |schema: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_trex"))
            .args([
                "store",
                "migrate",
                "--data-dir",
                s.data_dir().to_str().unwrap(),
            ])
            .args(["--to", TEST_STORE_DB, "--schema", schema])
            .env_remove("TREX_STORE_URL")
            .env_remove("TREX_STORE_SCHEMA")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    let o = migrate(&schema);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    );
    assert!(o.status.success(), "{out}{err}");
    assert!(err.contains("every count and checksum matches"), "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("users") && l.contains(" 2 rows")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("sso_providers") && l.contains(" 1 rows")),
        "{out}"
    );
    // a second copy into the same schema is refused, naming why
    let again = migrate(&schema);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    // the same data dir (and master key) on the PostgreSQL store: the old key works, the
    // secret is still sealed and still opens, the copy is in the audit log
    let sc = schema.clone();
    s.restart_with(move |c| {
        c.store.url = TEST_STORE_DB.into();
        c.store.schema = sc.clone();
    })
    .await;
    assert_eq!(s.app().store.backend(), trex::store::Backend::Postgres);
    let mut c = s.client();
    c.initialize().await;
    let users = c.call_ok("user-list", json!({})).await;
    assert_eq!(users["users"].as_array().unwrap().len(), 2, "{users}");
    let sso = c.call_ok("sso-list", json!({})).await;
    assert_eq!(sso["providers"][0]["hasClientSecret"], true, "{sso}");
    assert!(!s.store_bytes().windows(12).any(|w| w == b"s3cr3t-value"));
    let a = c
        .call_ok("audit-list", json!({"tool": "store-migrate"}))
        .await;
    assert_eq!(a["entries"][0]["via"], "cli", "{a}");
    drop(s);
    drop_schema(&schema).await;
}

/// Signs in on the web page's route of `node`.
async fn login(node: &TestServer, email: &str, pw: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/trex/api/auth/login", node.base()))
        .json(&json!({"email": email, "password": pw}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_sign_in_and_its_rate_limit_span_the_nodes_and_sse_replay_stays_on_its_node() {
    if !postgres_or_skip("nodes").await {
        return;
    }
    let (n1, schema) = first_node(CAP).await;
    let (n2, n3) = (n1.join().await, n1.join().await);
    let nodes = [&n1, &n2, &n3];
    let mut c = n1.client();
    c.initialize().await;
    for email in ["rl@example.com", "ok@example.com"] {
        c.call_ok(
            "user-create",
            json!({"name": email, "email": email, "password": "pass-word-1", "role": "admin"}),
        )
        .await;
    }
    // five wrong passwords spread over the three nodes fill the limit of the pair on all
    for i in 0..5 {
        let r = login(nodes[i % 3], "rl@example.com", "wrong").await;
        assert_eq!(r.status(), 401, "attempt {i}");
    }
    for node in nodes {
        let r = login(node, "rl@example.com", "pass-word-1").await;
        assert_eq!(
            r.status(),
            429,
            "the limit is counted for all nodes together"
        );
        assert!(r.headers().contains_key("retry-after"));
    }
    // a web session opened on node 2 is good on node 3
    let r = login(&n2, "ok@example.com", "pass-word-1").await;
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let me = reqwest::Client::new()
        .get(format!("{}/trex/api/auth/session", n3.base()))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);

    // SSE replay stays with the node that sent the events: resuming a stream through another
    // node is answered 400 with a JSON-RPC error saying so, and a plain GET there opens a new one
    let mut stream = SseReader::new(c.get().send().await.unwrap());
    let first = stream
        .next(Duration::from_secs(5))
        .await
        .expect("the priming event");
    let last = first.id.expect("the priming event has an id");
    let elsewhere = via(&c, &n2);
    let r = elsewhere
        .get()
        .header("last-event-id", &last)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("names no stream of this session"),
        "{body}"
    );
    let fresh = elsewhere.get().send().await.unwrap();
    assert_eq!(fresh.status(), 200);
    assert_eq!(fresh.headers()["content-type"], "text/event-stream");
    drop((stream, fresh));
    drop((n2, n3, n1));
    drop_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_resumes_only_the_pipelines_whose_replica_it_holds() {
    if !postgres_or_skip("nodes").await {
        return;
    }
    let (n1, schema) = first_node(CAP).await;
    let mut n2 = n1.join().await;
    // a node keeps its id across restarts (node.id in its data dir)
    let id2 = std::fs::read_to_string(n2.data_dir().join("node.id")).unwrap();
    let id2 = id2.trim().to_string();
    let plant = |name: &str, node: &str| {
        n1.exec(
            "INSERT INTO pipelines (id, name, database_id, mode, slot, batch_size, batch_timeout_ms,
               retry_delay_ms, retry_max_attempts, desired, state, node, created_at, updated_at)
             VALUES (?1, ?1, 'gone', 'copy_only', ?1, 100, 100, 100, 1, 'running', 'running', ?2,
               '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')",
            [name, node],
        );
    };
    plant("p_other", "node_0123456789ab");
    plant("p_mine", &id2);
    n2.restart().await;
    assert_eq!(
        std::fs::read_to_string(n2.data_dir().join("node.id"))
            .unwrap()
            .trim(),
        id2
    );
    let state = |name: &'static str| {
        n1.store(move |c| {
            c.query_row("SELECT state FROM pipelines WHERE name = ?1", [name], |r| {
                r.get::<usize, String>(0)
            })
        })
    };
    // its own was resumed (and, its database gone, ended in error saying why) ...
    let t = Instant::now();
    while state("p_mine") != "error" {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "p_mine was not resumed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... another node's was left alone
    assert_eq!(state("p_other"), "running");
    drop((n2, n1));
    drop_schema(&schema).await;
}

/// The test CA of `.ci/run`'s PostgreSQL TLS set-up (`ssl_cert_file` is signed by it).
const TEST_CA: &str = "/var/lib/postgresql/trex-test-tls/ca.crt";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_reaches_postgresql_over_tls_and_checks_its_certificate() {
    if !postgres_or_skip("store over TLS").await {
        return;
    }
    assert!(
        std::path::Path::new(TEST_CA).exists(),
        "{TEST_CA} missing: run the PostgreSQL TLS step of .ci/run (a test CA and a certificate for 127.0.0.1)"
    );
    let schema = format!("n_{}", trex::util::random_hex(6));
    let url =
        format!("postgres://postgres@127.0.0.1:5432/test?sslmode=require&sslrootcert={TEST_CA}");
    let (u, sc) = (url.clone(), schema.clone());
    let s = TestServer::start_with(
        move |c| {
            c.store.url = u.clone();
            c.store.schema = sc.clone();
        },
        |s| s,
    )
    .await;
    let mut c = s.client();
    c.initialize().await;
    c.call_ok("user-list", json!({})).await;
    // every connection of this store is encrypted (PostgreSQL's own view)
    let (client, conn) = tokio_postgres::connect(TEST_STORE_DB, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a
             JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = $1",
            &[&format!("trex {schema}")],
        )
        .await
        .unwrap();
    let (all, tls): (i64, i64) = (row.get(0), row.get(1));
    assert!(all >= 1, "no connection of the store seen");
    assert_eq!(all, tls, "a store connection without TLS");
    drop(s);
    // the certificate is checked: the Mozilla roots do not vouch for the test CA
    let mut config = trex::Config::load(None, std::iter::empty(), &Default::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    config.store.data_dir = dir.path().to_path_buf();
    config.store.url = "postgres://postgres@127.0.0.1:5432/test?sslmode=require".into();
    config.store.schema = schema.clone();
    let err = trex::App::open(config)
        .await
        .err()
        .expect("an unknown issuer is refused");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    drop_schema(&schema).await;
}

/// The ids in replica table `t` of trexdb file `main`, in order.
fn replica_ids(main: &std::path::Path, t: &str) -> Vec<i64> {
    let c = rusqlite::Connection::open(main).unwrap();
    let mut st = c
        .prepare(&format!(
            "SELECT CAST(id AS INTEGER) FROM \"{t}\" ORDER BY 1"
        ))
        .unwrap();
    st.query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pipeline_whose_node_is_killed_is_taken_over_by_exactly_one_other_node() {
    if !postgres_or_skip("pipeline takeover").await {
        return;
    }
    let pg = crate::databases::pg_admin().await;
    let s = format!("etl_{}", trex::util::random_hex(4));
    pg.batch_execute(&format!(
        "CREATE SCHEMA {s};
         CREATE TABLE {s}.orders (id bigserial PRIMARY KEY, qty int NOT NULL);
         CREATE TABLE {s}.events (id bigserial PRIMARY KEY, what text NOT NULL);
         INSERT INTO {s}.orders (qty) SELECT g FROM generate_series(1, 100) g;
         CREATE PUBLICATION {s}_copy FOR TABLE {s}.orders;
         CREATE PUBLICATION {s}_feed FOR TABLE {s}.events;"
    ))
    .await
    .unwrap();
    let insert = |table: &'static str, n: usize| {
        let (pg, s) = (&pg, s.clone());
        async move {
            let col = if table == "orders" { "qty" } else { "what" };
            let val = if table == "orders" { "1" } else { "'e'" };
            for _ in 0..n {
                pg.execute(
                    &format!("INSERT INTO {s}.{table} ({col}) VALUES ({val})"),
                    &[],
                )
                .await
                .unwrap();
            }
        }
    };
    let schema = format!("n_{}", trex::util::random_hex(6));
    let env = [
        ("TREX_STORE_URL", TEST_STORE_DB),
        ("TREX_STORE_SCHEMA", schema.as_str()),
        ("TREX_CLUSTER_HEARTBEAT_SECS", "1"),
    ];
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let path = |i: usize| dirs[i].path().to_str().unwrap().to_string();
    let mut first = crate::cli::serve_with(&path(0), &env);
    let key = first.key();
    for d in &dirs[1..] {
        std::fs::copy(
            dirs[0].path().join("master.key"),
            d.path().join("master.key"),
        )
        .unwrap();
    }
    let others: Vec<crate::cli::Served> = (1..3)
        .map(|i| crate::cli::serve_with(&path(i), &env))
        .collect();
    let client = |addr: &str| Client::new(&format!("http://{addr}/trex/mcp"), Some(&key));
    let mut c1 = client(&first.addr);
    c1.initialize().await;
    c1.call_ok(
        "database-create",
        json!({"id": "src", "host": "127.0.0.1", "port": 5432, "databaseName": "test"}),
    )
    .await;
    c1.call_ok(
        "database-credential-save",
        json!({"databaseId": "src", "username": "postgres", "password": "trust"}),
    )
    .await;
    for (name, mode, publication) in [
        ("shop", "copy_and_cdc", format!("{s}_copy")),
        ("feed", "cdc_only", format!("{s}_feed")),
    ] {
        c1.call_ok(
            "etl-start-pipeline",
            json!({"name": name, "databaseId": "src", "mode": mode, "publication": publication,
                   "batchTimeoutMs": 100, "retryDelayMs": 300}),
        )
        .await;
    }
    let id1 = std::fs::read_to_string(dirs[0].path().join("node.id")).unwrap();
    let id1 = id1.trim();
    let mut c2 = client(&others[0].addr);
    c2.initialize().await;
    let listed = |c: &Client| {
        let c = c.clone();
        async move {
            let l = c.call_ok("etl-list-pipelines", json!({})).await;
            l["pipelines"].as_array().unwrap().clone()
        }
    };
    // both stream on node 1, which holds their replica
    let deadline = Instant::now() + Duration::from_secs(60);
    while !listed(&c1)
        .await
        .iter()
        .all(|p| p["state"] == "streaming" && p["node"] == id1)
    {
        assert!(Instant::now() < deadline, "{:?}", listed(&c1).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    insert("orders", 20).await;
    insert("events", 20).await;
    let main1 = dirs[0].path().join("data").join("main.db");
    let (orders, events) = (format!("{s}__orders"), format!("{s}__events"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while crate::pipelines::replica_count(&main1, &orders) != 120
        || crate::pipelines::replica_count(&main1, &events) != 20
    {
        assert!(Instant::now() < deadline, "node 1 never caught up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // kill -9 node 1; the source goes on changing while no node runs the pipelines
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let killed = Instant::now();
    insert("orders", 30).await;
    insert("events", 10).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let moved = loop {
        let l = listed(&c2).await;
        if l.iter()
            .all(|p| p["state"] == "streaming" && p["node"] != id1)
        {
            break l;
        }
        assert!(Instant::now() < deadline, "never taken over: {l:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("taken over {:?} after the kill", killed.elapsed());
    // node 1 comes back (same data dir, same node id) with its stale replica: it does not take
    // its pipelines back, and their new nodes go on
    let first = crate::cli::serve_with(&path(0), &env);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // ... and lets go of the replica it kept: the live copy is on the new node
    assert_eq!(crate::pipelines::replica_count(&main1, &orders), 0);
    assert_eq!(crate::pipelines::replica_count(&main1, &events), 0);
    let now = listed(&c2).await;
    for p in &moved {
        let n = now.iter().find(|q| q["name"] == p["name"]).unwrap();
        assert_eq!(n["node"], p["node"], "{now:?}");
        assert_eq!(n["state"], "streaming", "{now:?}");
    }
    insert("orders", 10).await;
    insert("events", 5).await;
    // each pipeline went to exactly one node, whose replica has every row once
    // which of nodes 2 and 3 (index into dirs) runs pipeline `name` now
    let owner_of = |name: &str| {
        let node = moved.iter().find(|p| p["name"] == name).unwrap()["node"].clone();
        (1..3)
            .find(|&i| {
                std::fs::read_to_string(dirs[i].path().join("node.id"))
                    .unwrap()
                    .trim()
                    == node
            })
            .expect("owned by a live node")
    };
    let owner = |name: &str| dirs[owner_of(name)].path().join("data").join("main.db");
    let (shop_main, feed_main) = (owner("shop"), owner("feed"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = replica_ids(&shop_main, &orders);
        let e = replica_ids(&feed_main, &events);
        // copy_and_cdc copied the source again into its new node's trexdb: all 160 rows, once
        // cdc_only went on from its slot: the 15 changes since the kill are there, none twice
        if o == (1..=160).collect::<Vec<i64>>() && e.ends_with(&(21..=35).collect::<Vec<i64>>()) {
            assert!(e.windows(2).all(|w| w[1] == w[0] + 1), "{e:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replicas never converged: orders {o:?} events {e:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (i, d) in dirs.iter().enumerate().skip(1) {
        let main = d.path().join("data").join("main.db");
        if main != shop_main {
            assert_eq!(
                crate::pipelines::replica_count(&main, &orders),
                0,
                "node {i} has no copy"
            );
        }
    }
    // each takeover audited once, by the one node that won it
    let taken: i64 = pg
        .query_one(
            &format!(
                "SELECT count(*) FROM \"{schema}\".audit_log WHERE tool = 'etl-takeover-pipeline' AND outcome = 'ok'"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(taken, 2);

    // a stop called on a node that does not run the pipeline stops it where it runs
    let other = 3 - owner_of("shop");
    let mut c3 = client(&others[other - 1].addr);
    c3.initialize().await;
    c3.call_ok("etl-stop-pipeline", json!({"name": "shop"}))
        .await;
    let slot = moved.iter().find(|p| p["name"] == "shop").unwrap()["slot"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let active: bool = pg
            .query_one(
                "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .unwrap()
            .get(0);
        if !active {
            break;
        }
        assert!(Instant::now() < deadline, "the owner never stopped it");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // a delete is the business of the node holding the replica: refused elsewhere, saying where
    let mut back = client(&first.addr);
    back.initialize().await;
    for name in ["shop", "feed"] {
        let i = owner_of(name);
        let e = back
            .call_err(
                "etl-delete-pipeline",
                json!({"name": name, "dropTables": true}),
            )
            .await;
        assert!(
            e.contains("which holds its replica: delete it on that node"),
            "{e}"
        );
        let mut owner = client(&others[i - 1].addr);
        owner.initialize().await;
        owner
            .call_ok(
                "etl-delete-pipeline",
                json!({"name": name, "dropTables": true}),
            )
            .await;
    }
    assert_eq!(crate::pipelines::replica_count(&shop_main, &orders), 0);
    for mut o in others.into_iter().chain([first]) {
        o.child.kill().unwrap();
        o.child.wait().unwrap();
    }
    let _ = pg
        .batch_execute(&format!(
            "DROP PUBLICATION IF EXISTS {s}_copy; DROP PUBLICATION IF EXISTS {s}_feed;
             DROP SCHEMA IF EXISTS {s} CASCADE;"
        ))
        .await;
    drop_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_run_each_of_300_jobs_exactly_once() {
    if !postgres_or_skip("300 jobs through three nodes").await {
        return;
    }
    let (n1, schema) = first_node(CAP).await;
    let n2 = n1.join().await;
    let n3 = n1.join().await;
    let nodes = [&n1, &n2, &n3];
    // each node's own job runtime (the one that runs its migration runs and backups) counts
    // which node ran which job
    let runs: Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<usize>>>> = Arc::default();
    for (i, n) in nodes.iter().enumerate() {
        let runs = runs.clone();
        n.app().jobs.register("count", false, move |ctx, _payload| {
            let runs = runs.clone();
            async move {
                runs.lock()
                    .unwrap()
                    .entry(ctx.id.clone())
                    .or_default()
                    .push(i);
                tokio::time::sleep(Duration::from_millis(2)).await;
                Ok(json!({"ok": true}))
            }
        });
    }
    let mut ids = Vec::new();
    for i in 0..300 {
        ids.push(
            nodes[i % 3]
                .app()
                .jobs
                .enqueue("count", &json!({"n": i}), 1, None)
                .await
                .unwrap(),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while runs.lock().unwrap().len() < 300 {
        assert!(Instant::now() < deadline, "not all 300 jobs ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // settle: a job run twice would show now
    tokio::time::sleep(Duration::from_millis(500)).await;
    let runs = runs.lock().unwrap().clone();
    for id in &ids {
        assert_eq!(runs[id].len(), 1, "job {id} ran {:?}", runs[id]);
    }
    let mut per_node = [0usize; 3];
    for r in runs.values() {
        per_node[r[0]] += 1;
    }
    println!("jobs per node: {per_node:?}");
    assert!(
        per_node.iter().filter(|&&n| n > 0).count() >= 2,
        "the jobs did not spread over the nodes: {per_node:?}"
    );
    drop((n3, n2, n1));
    drop_schema(&schema).await;
}
