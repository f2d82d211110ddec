//! Plugins: the example plugin installed (from its directory and from an `npm pack`-style
//! tarball), its migration applied, its function called over HTTP and through
//! `plugin-function-invoke`, its UI served, its tool listed (clients told) and called, then
//! uninstalled with nothing left; hostile archives and traversal paths refused with nothing
//! written; function time limits, failures and the scrubbed environment.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{SseReader, TestServer};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/plugin-hello")
}

/// Entries of `<data_dir>/plugins` (staging and trash directories included).
fn plugin_dir_entries(s: &TestServer) -> Vec<String> {
    match std::fs::read_dir(s.data_dir().join("plugins")) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => vec![],
    }
}

/// No plugin row and no file under `<data_dir>/plugins` (staging and trash included).
async fn nothing_installed(s: &TestServer, c: &crate::common::Client) {
    assert_eq!(plugin_dir_entries(s), Vec::<String>::new());
    assert_eq!(
        c.call_ok("plugin-list", json!({})).await["plugins"],
        json!([])
    );
}

/// Waits for `notifications/tools/list_changed` on a standalone stream.
async fn list_changed(stream: &mut SseReader) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        match stream.next_message(Duration::from_secs(10)).await {
            Some((_, m)) if m["method"] == "notifications/tools/list_changed" => return true,
            Some(_) => continue,
            None => return false,
        }
    }
    false
}

async fn tool_names(c: &crate::common::Client) -> Vec<String> {
    let r = c.rpc("tools/list", json!({})).await;
    r["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn example_plugin_installed_used_and_uninstalled() {
    let s = TestServer::start().await;
    let mut c = s.client();
    c.initialize().await;
    let mut stream = SseReader::new(c.get().send().await.unwrap());

    let spec = example().display().to_string();
    let inst = c
        .call_ok("plugin-install", json!({"packageSpec": spec}))
        .await;
    assert_eq!(inst["name"], "hello");
    assert_eq!(inst["tools"], json!(["hello-greet"]));
    assert_eq!(inst["migrations"][0]["status"], "applied", "{inst}");
    assert_eq!(inst["uiPath"], "/plugins/hello/");
    assert!(
        list_changed(&mut stream).await,
        "no list_changed after install"
    );
    assert!(tool_names(&c).await.contains(&"hello-greet".to_string()));
    let db = s.data_dir().join("plugins/hello/plugin.db");
    assert!(db.exists());

    // the tool: validated against the plugin's schema, served by its function
    let r = c.call_ok("hello-greet", json!({"name": "Ada"})).await;
    assert_eq!(r["message"], "Hello, Ada!");
    assert_eq!(r["count"], 1);
    let e = c.call_err("hello-greet", json!({"name": 5})).await;
    assert!(e.contains("`/name`"), "{e}");
    let e = c
        .call_err("hello-greet", json!({"name": "x", "extra": 1}))
        .await;
    assert!(e.contains("Invalid arguments"), "{e}");

    // the function over HTTP, with the key
    let http = reqwest::Client::new();
    let fn_url = format!("{}/plugins/hello/fn/greet", s.base());
    let r = http
        .post(&fn_url)
        .bearer_auth(&s.key)
        .json(&json!({"name": "Grace"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["count"], 2, "{body}");
    // without a key: refused, JSON
    let r = http
        .post(&fn_url)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.json::<Value>().await.is_ok());
    // a read-only key may not run functions
    let ro = c
        .call_ok(
            "api-key-create",
            json!({"userId": s.admin_id, "name": "ro", "scopes": {"readOnly": true}}),
        )
        .await;
    let r = http
        .post(&fn_url)
        .bearer_auth(ro["key"].as_str().unwrap())
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // through plugin-function-invoke
    let r = c
        .call_ok(
            "plugin-function-invoke",
            json!({"path": "/plugins/hello/fn/greet", "method": "GET"}),
        )
        .await;
    assert_eq!(r["status"], 200);
    let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["count"], 2);
    assert_eq!(body["recent"][0]["name"], "Grace");
    let r = c
        .call_ok(
            "plugin-function-invoke",
            json!({"path": "/plugins/hello/fn/greet", "method": "POST", "body": "{\"name\": \"\"}"}),
        )
        .await;
    assert_eq!(
        r["status"], 400,
        "a 4xx answer is a result, not a tool error"
    );

    // its UI
    let r = http
        .get(format!("{}/plugins/hello/", s.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(r.text().await.unwrap().contains("Hello plugin"));
    let r = http
        .get(format!("{}/plugins/hello/app.js", s.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/plugins/hello", s.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "/plugins/hello/");
    let r = http
        .get(format!("{}/plugins/hello/nope.html", s.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // list, info with migration status, migration-list target
    let l = c.call_ok("plugin-list", json!({})).await;
    assert_eq!(l["plugins"][0]["name"], "hello");
    assert_eq!(l["plugins"][0]["installed"], true);
    let info = c
        .call_ok("plugin-get-info", json!({"pluginName": "hello"}))
        .await;
    assert_eq!(info["migrationStatus"]["appliedCount"], 1, "{info}");
    assert_eq!(info["migrationStatus"]["target"], "plugin:hello");
    assert_eq!(
        info["registeredTypes"],
        json!(["migrations", "ui", "functions", "tools"])
    );
    let m = c
        .call_ok("migration-list", json!({"pluginName": "hello"}))
        .await;
    assert_eq!(m["targets"][0]["target"], "plugin:hello", "{m}");
    let e = c
        .call_err("plugin-get-info", json!({"pluginName": "nope"}))
        .await;
    assert!(e.contains("not installed"), "{e}");

    // installing it again is a conflict, and changes nothing
    let e = c
        .call_err("plugin-install", json!({"packageSpec": spec}))
        .await;
    assert!(e.contains("already installed"), "{e}");

    // audited
    let a = c
        .call_ok("audit-list", json!({"tool": "plugin-install"}))
        .await;
    assert_eq!(a["entries"].as_array().unwrap().len(), 2);
    let a = c
        .call_ok("audit-list", json!({"tool": "hello-greet"}))
        .await;
    assert!(!a["entries"].as_array().unwrap().is_empty());

    // uninstalled: tool gone (clients told), files and database gone, routes 404
    let u = c
        .call_ok("plugin-uninstall", json!({"packageName": "hello"}))
        .await;
    assert_eq!(u["deleted"], true);
    assert!(
        list_changed(&mut stream).await,
        "no list_changed after uninstall"
    );
    assert!(!tool_names(&c).await.contains(&"hello-greet".to_string()));
    let r = c
        .rpc(
            "tools/call",
            json!({"name": "hello-greet", "arguments": {"name": "x"}}),
        )
        .await;
    assert_eq!(
        r["error"]["code"], -32602,
        "an uninstalled tool is unknown: {r}"
    );
    assert!(!db.exists());
    assert_eq!(plugin_dir_entries(&s), Vec::<String>::new());
    let r = http
        .get(format!("{}/plugins/hello/", s.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        c.call_ok("plugin-list", json!({})).await["plugins"],
        json!([])
    );
}

#[tokio::test]
async fn tarball_install_survives_restart() {
    let mut s = TestServer::start().await;
    // the tarball `npm pack` makes (what trexsql's packaging produces)
    let out = tempfile::tempdir().unwrap();
    let o = std::process::Command::new("npm")
        .args(["pack", "--silent", "--pack-destination"])
        .arg(out.path())
        .current_dir(example())
        .output()
        .expect("npm (Node) is needed for this test");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let tgz = out.path().join("hello-1.0.0.tgz");
    assert!(tgz.exists());
    let mut c = s.client();
    c.initialize().await;
    let inst = c
        .call_ok(
            "plugin-install",
            json!({"packageSpec": tgz.display().to_string()}),
        )
        .await;
    assert_eq!(inst["version"], "1.0.0");
    let info = c
        .call_ok("plugin-get-info", json!({"pluginName": "hello"}))
        .await;
    assert_eq!(info["sha256"].as_str().unwrap().len(), 64);
    c.call_ok("hello-greet", json!({"name": "Ada"})).await;

    // installed plugins are live again after a restart
    s.restart().await;
    let mut c = s.client();
    c.initialize().await;
    let r = c.call_ok("hello-greet", json!({"name": "Lin"})).await;
    assert_eq!(r["count"], 2);
    let svc = c.call_ok("cluster-list-services", json!({})).await;
    let f = svc["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["extension"] == "plugin-functions")
        .cloned()
        .unwrap_or_else(|| panic!("{svc}"));
    assert_eq!(f["config"]["plugins"], json!(["hello"]));
    c.call_ok("plugin-uninstall", json!({"packageName": "hello"}))
        .await;
}

/// A tar header for `name` written byte by byte (the tar crate refuses to build bad paths).
fn raw_header(name: &str, kind: tar::EntryType, size: u64, link: Option<&str>) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    {
        let old = h.as_old_mut();
        old.name = [0; 100];
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            old.linkname = [0; 100];
            old.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
    }
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    h
}

/// An archive entry: `(name, kind, data, link target)`.
type Entry<'a> = (&'a str, tar::EntryType, Vec<u8>, Option<&'a str>);

/// A tarball holding a valid package.json plus `extra` entries.
fn hostile(out: &Path, extra: &[Entry<'_>]) {
    let f = std::fs::File::create(out).unwrap();
    let gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    let pj = br#"{"name":"evil","version":"1.0.0","trex":{"ui":"ui"}}"#;
    let h = raw_header(
        "package/package.json",
        tar::EntryType::Regular,
        pj.len() as u64,
        None,
    );
    b.append(&h, &pj[..]).unwrap();
    let h = raw_header("package/ui/", tar::EntryType::Directory, 0, None);
    b.append(&h, std::io::empty()).unwrap();
    for (name, kind, data, link) in extra {
        let h = raw_header(name, *kind, data.len() as u64, *link);
        b.append(&h, &data[..]).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap();
}

#[tokio::test]
async fn hostile_archives_are_refused_and_leave_nothing() {
    let s = TestServer::start_with(|c| c.plugins.max_unpacked_mb = 1, |s| s).await;
    let mut c = s.client();
    c.initialize().await;
    let work = tempfile::tempdir().unwrap();
    let outside = work.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    use tar::EntryType as T;
    let big = vec![b'x'; 2 * 1024 * 1024];
    let cases: Vec<(&str, Vec<Entry<'_>>, &str)> = vec![
        (
            "dotdot",
            vec![("package/../../evil.txt", T::Regular, b"x".to_vec(), None)],
            "`..`",
        ),
        (
            "absolute",
            vec![("/tmp/trex-evil.txt", T::Regular, b"x".to_vec(), None)],
            "absolute path",
        ),
        (
            "symlink-out",
            vec![(
                "package/ui/link",
                T::Symlink,
                vec![],
                Some("../../../../outside"),
            )],
            "link that leaves",
        ),
        (
            "symlink-abs",
            vec![("package/ui/link", T::Symlink, vec![], Some("/etc"))],
            "link that leaves",
        ),
        (
            "through-link",
            vec![
                ("package/ui/sub", T::Symlink, vec![], Some(".")),
                ("package/ui/sub/x.txt", T::Regular, b"x".to_vec(), None),
            ],
            "through a link",
        ),
        (
            "hardlink",
            vec![(
                "package/ui/h",
                T::Link,
                vec![],
                Some("package/package.json"),
            )],
            "hard link",
        ),
        (
            "fifo",
            vec![("package/ui/f", T::Fifo, vec![], None)],
            "special",
        ),
        (
            "too-big",
            vec![("package/ui/big.bin", T::Regular, big, None)],
            "more than 1 MiB",
        ),
    ];
    for (name, extra, want) in cases {
        let tgz = work.path().join(format!("{name}.tgz"));
        hostile(&tgz, &extra);
        let e = install_err(&c, &tgz).await;
        assert!(e.contains(want), "{name}: {e}");
        assert!(e.starts_with("Install failed"), "{name}: {e}");
        assert_eq!(
            plugin_dir_entries(&s),
            Vec::<String>::new(),
            "{name} left files"
        );
    }
    assert!(!Path::new("/tmp/trex-evil.txt").exists());
    assert!(!work.path().join("evil.txt").exists());
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    // the same archive without the bad entries installs (the harness itself is sound)
    let ok = work.path().join("ok.tgz");
    hostile(&ok, &[]);
    c.call_ok(
        "plugin-install",
        json!({"packageSpec": ok.display().to_string()}),
    )
    .await;
    assert_eq!(
        c.call_ok("plugin-list", json!({})).await["plugins"][0]["name"],
        "evil"
    );
}

/// A plugin directory under `dir` with `package.json` text and executable files `(path, text)`.
fn plugin_dir(dir: &Path, package_json: &str, files: &[(&str, &str)]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("package.json"), package_json).unwrap();
    for (p, text) in files {
        let f = dir.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        let mut h = std::fs::File::create(&f).unwrap();
        h.write_all(text.as_bytes()).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir.to_path_buf()
}

#[tokio::test]
async fn bad_manifests_name_the_field_and_leave_nothing() {
    let s = TestServer::start().await;
    let mut c = s.client();
    c.initialize().await;
    let work = tempfile::tempdir().unwrap();
    let cases = [
        (
            r#"{"name":"a","version":"1.0.0"}"#,
            vec![],
            "package.json trex",
        ),
        (
            r#"{"name":"user","version":"1.0.0","trex":{"ui":"ui"}}"#,
            vec![("ui/index.html", "x")],
            "reserved",
        ),
        (
            r#"{"name":"a","version":"1.0.0","trex":{"ui":"../x"}}"#,
            vec![],
            "trex.ui",
        ),
        (
            r#"{"name":"a","version":"1.0.0","trex":{"functions":{"f":"f.sh"},"tools":[{"name":"t","description":"d","inputSchema":{"type":"object"},"function":"g"}]}}"#,
            vec![("f.sh", "#!/bin/sh\n")],
            "trex.tools[0].function",
        ),
        (
            r#"{"name":"a","version":"1.0.0","trex":{"functions":{"f":"f.sh"},"tools":[{"name":"t","description":"d","inputSchema":{"type":"string"},"function":"f"}]}}"#,
            vec![("f.sh", "#!/bin/sh\n")],
            "trex.tools[0].inputSchema",
        ),
        (
            // a header mirrored from a number argument (2026-07-28 allows string, integer, boolean)
            r#"{"name":"a","version":"1.0.0","trex":{"functions":{"f":"f.sh"},"tools":[{"name":"t","description":"d","inputSchema":{"type":"object","properties":{"n":{"type":"number","x-mcp-header":"N"}}},"function":"f"}]}}"#,
            vec![("f.sh", "#!/bin/sh\n")],
            "trex.tools[0].inputSchema",
        ),
        (
            r#"{"name":"a","version":"1.0.0","trex":{"migrations":"m"}}"#,
            vec![("m/V1__bad.sql", "CREATE TABLE (;")],
            "trex.migrations",
        ),
    ];
    for (i, (pj, files, want)) in cases.iter().enumerate() {
        let d = plugin_dir(&work.path().join(format!("p{i}")), pj, files);
        let e = install_err(&c, &d).await;
        assert!(e.contains(want), "case {i}: {e}");
        assert_eq!(
            plugin_dir_entries(&s),
            Vec::<String>::new(),
            "case {i} left files"
        );
    }
    // a function that is not executable
    let d = work.path().join("noexec");
    plugin_dir(
        &d,
        r#"{"name":"a","version":"1.0.0","trex":{"functions":{"f":"f.sh"}}}"#,
        &[],
    );
    std::fs::write(d.join("f.sh"), "#!/bin/sh\n").unwrap();
    let e = install_err(&c, &d).await;
    assert!(
        e.contains("trex.functions.f.command") && e.contains("executable"),
        "{e}"
    );
    let e = c
        .call_err("plugin-install", json!({"packageSpec": "left-pad"}))
        .await;
    assert!(e.contains("packageSpec"), "{e}");
    assert_eq!(
        c.call_ok("plugin-list", json!({})).await["plugins"],
        json!([])
    );
}

/// `plugin-install` of directory `d`, expected to fail; the error text.
async fn install_err(c: &crate::common::Client, d: &Path) -> String {
    c.call_err(
        "plugin-install",
        json!({"packageSpec": d.display().to_string()}),
    )
    .await
}

/// Names of the `trex…` tables of the SQLite database at `p`.
fn trex_tables(p: &Path) -> Vec<String> {
    rusqlite::Connection::open(p)
        .unwrap()
        .prepare("SELECT name FROM sqlite_master WHERE name LIKE 'trex%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

/// Sends a raw HTTP/1.1 request (reqwest would resolve the dot segments itself).
async fn raw_request(addr: std::net::SocketAddr, line: &str, extra: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{line} HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    sock.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    (status, out)
}

#[tokio::test]
async fn traversal_paths_are_refused() {
    let s = TestServer::start().await;
    let mut c = s.client();
    c.initialize().await;
    c.call_ok(
        "plugin-install",
        json!({"packageSpec": example().display().to_string()}),
    )
    .await;
    for p in [
        "/plugins/../trex/mcp",
        "/plugins/%2e%2e/trex/mcp",
        "/plugins/hello/../../trex/mcp",
        "/trex/mcp",
        "/plugins/hello%2f..%2f..%2ftrex",
    ] {
        let e = c
            .call_err(
                "plugin-function-invoke",
                json!({"path": p, "method": "POST"}),
            )
            .await;
        assert!(e.contains("`path`"), "{p}: {e}");
    }
    let e = c
        .call_err(
            "plugin-function-invoke",
            json!({"path": "/plugins/hello/fn/greet", "headers": "not json"}),
        )
        .await;
    assert!(e.contains("`headers`"), "{e}");
    // the UI cannot read outside its directory
    let r = c
        .call_ok(
            "plugin-function-invoke",
            json!({"path": "/plugins/hello/%2e%2e/package.json"}),
        )
        .await;
    assert_eq!(r["status"], 404, "{r}");

    // over HTTP, as sent (no client-side resolution)
    let key = format!("Authorization: Bearer {}\r\n", s.key);
    let (st, body) = raw_request(s.addr, "GET /plugins/../trex/mcp", &key).await;
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("application/json"), "{body}");
    let (st, _) = raw_request(s.addr, "GET /plugins/hello/../../etc/passwd", "").await;
    assert!(st == 400 || st == 404, "{st}");
    let (st, _) = raw_request(s.addr, "GET /plugins/hello/../package.json", "").await;
    assert_eq!(st, 404);
    // a dot-segment route to a function still needs a key
    let (st, body) = raw_request(s.addr, "POST /plugins/hello/./fn/greet", "").await;
    assert_eq!(st, 401, "{body}");
    let (st, _) = raw_request(s.addr, "POST /plugins/x/../hello/fn/greet", "").await;
    assert_eq!(st, 401);
}

#[tokio::test]
async fn functions_are_bounded_and_isolated() {
    let s = TestServer::start().await;
    let mut c = s.client();
    c.initialize().await;
    let work = tempfile::tempdir().unwrap();
    let pj = r#"{"name":"probe","version":"0.1.0","trex":{"functions":{
        "env":"env.sh",
        "slow":{"command":"slow.sh","timeoutMs":300},
        "crash":"crash.sh",
        "flood":{"command":"flood.sh","timeoutMs":20000},
        "orphan":"orphan.sh",
        "garbage":"garbage.sh"}}}"#;
    let d = plugin_dir(
        &work.path().join("probe"),
        pj,
        &[
            (
                "env.sh",
                "#!/bin/sh\nread -r line\nprintf '{\"body\":{\"cwd\":\"%s\",\"env\":\"%s\"}}' \"$(pwd)\" \"$(env | cut -d= -f1 | sort | tr '\\n' ' ')\"\n",
            ),
            ("slow.sh", "#!/bin/sh\nsleep 30\n"),
            ("crash.sh", "#!/bin/sh\necho oops >&2\nexit 3\n"),
            ("garbage.sh", "#!/bin/sh\necho not json\n"),
            (
                "flood.sh",
                "#!/bin/sh\nhead -c 50000000 /dev/zero\nsleep 30\n",
            ),
            (
                "orphan.sh",
                "#!/bin/sh\nsleep 30 &\necho $! > orphan.pid\nprintf '{\"body\":\"ok\"}'\n",
            ),
        ],
    );
    c.call_ok(
        "plugin-install",
        json!({"packageSpec": d.display().to_string()}),
    )
    .await;
    let call = |f: &str| {
        let c = &c;
        let path = format!("/plugins/probe/fn/{f}");
        async move {
            c.call_ok(
                "plugin-function-invoke",
                json!({"path": path, "method": "POST", "body": "{}"}),
            )
            .await
        }
    };
    let r = call("env").await;
    assert_eq!(r["status"], 200, "{r}");
    let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    assert!(
        body["cwd"]
            .as_str()
            .unwrap()
            .ends_with("plugins/probe/package"),
        "{body}"
    );
    let mut env: Vec<&str> = body["env"].as_str().unwrap().split_whitespace().collect();
    env.retain(|v| !["PWD", "SHLVL", "_", "OLDPWD"].contains(v));
    assert_eq!(
        env,
        vec![
            "HOME",
            "LANG",
            "PATH",
            "TREX_FUNCTION",
            "TREX_FUNCTION_PATH",
            "TREX_PLUGIN",
            "TREX_PLUGIN_DB",
            "TREX_PLUGIN_DIR"
        ],
        "the environment is scrubbed"
    );
    let t0 = std::time::Instant::now();
    let r = call("slow").await;
    assert_eq!(r["status"], 504, "{r}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_eq!(call("crash").await["status"], 502);
    // an answer over plugins.max_output_bytes is cut off at once, not left to time out
    let t0 = std::time::Instant::now();
    assert_eq!(call("flood").await["status"], 502);
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    // whatever a function leaves running goes with it
    assert_eq!(call("orphan").await["status"], 200);
    let pid =
        std::fs::read_to_string(s.data_dir().join("plugins/probe/package/orphan.pid")).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    let gone = || {
        std::fs::read_to_string(&stat)
            .map(|st| {
                st.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true)
    };
    for _ in 0..50 {
        if gone() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone(), "the function's background process outlived it");
    assert_eq!(call("garbage").await["status"], 502);
    let r = call("nope").await;
    assert_eq!(r["status"], 404);
    // a function that failed is an error in the audit log, with why
    let a = c
        .call_ok(
            "audit-list",
            json!({"tool": "plugin-function-invoke", "limit": 20}),
        )
        .await;
    let rows = a["entries"].as_array().unwrap();
    let crash = rows
        .iter()
        .find(|e| e["arguments"]["path"] == "/plugins/probe/fn/crash")
        .unwrap_or_else(|| panic!("{a}"));
    assert_eq!(crash["outcome"], "error", "{crash}");
    let env = rows
        .iter()
        .find(|e| e["arguments"]["path"] == "/plugins/probe/fn/env")
        .unwrap();
    assert_eq!(env["outcome"], "ok");
}

#[tokio::test]
async fn the_cli_installs_into_a_running_server() {
    let s = TestServer::start_with(|c| c.cluster.heartbeat_secs = 1, |s| s).await;
    let mut c = s.client();
    c.initialize().await;
    let mut stream = SseReader::new(c.get().send().await.unwrap());
    let data = s.data_dir().display().to_string();
    let trex = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            crate::common::trex_command(&args)
                .env_remove("RUST_LOG")
                .output()
                .unwrap()
        })
    };
    let args = |a: &[&str]| -> Vec<String> {
        a.iter()
            .map(|s| s.to_string())
            .chain(["--data-dir".to_string(), data.clone()])
            .collect()
    };
    let spec = example().display().to_string();
    let o = trex(args(&["plugin", "install", &spec])).await.unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("Installed hello 1.0.0") && out.contains("hello-greet"),
        "{out}"
    );
    // the server publishes it on its next heartbeat, and tells its clients
    assert!(list_changed(&mut stream).await);
    let r = c.call_ok("hello-greet", json!({"name": "CLI"})).await;
    assert_eq!(r["count"], 1);
    let o = trex(args(&["plugin", "list"])).await.unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("hello\t1.0.0\t"));
    let o = trex(args(&["plugin", "show", "hello"])).await.unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["migrationStatus"]["appliedCount"], 1);
    let o = trex(args(&["plugin", "uninstall", "hello"])).await.unwrap();
    assert!(o.status.success());
    assert!(list_changed(&mut stream).await);
    assert!(!tool_names(&c).await.contains(&"hello-greet".to_string()));
    let o = trex(args(&["plugin", "uninstall", "hello"])).await.unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not installed"));
}

#[tokio::test]
async fn key_scopes_apply_to_plugin_tools() {
    let s = TestServer::start().await;
    let mut c = s.client();
    c.initialize().await;
    let args =
        json!({"userId": s.admin_id, "name": "hello-only", "scopes": {"tools": ["trex:hello-*"]}});
    // before the plugin is there, the pattern names no tool
    let e = c.call_err("api-key-create", args.clone()).await;
    assert!(e.contains("matches no tool"), "{e}");
    c.call_ok(
        "plugin-install",
        json!({"packageSpec": example().display().to_string()}),
    )
    .await;
    let k = c.call_ok("api-key-create", args).await;
    let mut scoped = crate::common::Client::new(&s.url(), Some(k["key"].as_str().unwrap()));
    scoped.initialize().await;
    assert_eq!(tool_names(&scoped).await, vec!["hello-greet".to_string()]);
    scoped
        .call_ok("hello-greet", json!({"name": "Scoped"}))
        .await;
    let e = scoped.call_err("user-list", json!({})).await;
    assert!(e.contains("scopes do not allow"), "{e}");
    // a read-only key does not see a plugin tool that writes
    let ro = c
        .call_ok(
            "api-key-create",
            json!({"userId": s.admin_id, "name": "ro", "scopes": {"readOnly": true}}),
        )
        .await;
    let mut ro = crate::common::Client::new(&s.url(), Some(ro["key"].as_str().unwrap()));
    ro.initialize().await;
    assert!(!tool_names(&ro).await.contains(&"hello-greet".to_string()));
    let e = ro.call_err("hello-greet", json!({"name": "x"})).await;
    assert!(e.contains("scopes do not allow"), "{e}");
}

#[tokio::test]
async fn migrations_may_target_a_registered_database() {
    let s = TestServer::start().await;
    let mut c = s.client();
    c.initialize().await;
    std::fs::create_dir_all(s.data_dir().join("databases")).unwrap();
    rusqlite::Connection::open(s.data_dir().join("databases/app.db"))
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    c.call_ok(
        "database-create",
        json!({"id": "app", "dialect": "sqlite", "databaseName": "app.db"}),
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    let pj = |db: &str| {
        format!(
            r#"{{"name":"notes","version":"1.0.0","trex":{{"migrations":{{"dir":"m","database":"{db}"}}}}}}"#
        )
    };
    // a database that is not registered: refused, nothing kept
    let d = plugin_dir(
        &work.path().join("a"),
        &pj("nope"),
        &[(
            "m/V1__notes.sql",
            "CREATE TABLE notes (id INTEGER PRIMARY KEY);",
        )],
    );
    let e = install_err(&c, &d).await;
    assert!(e.contains("nope") && e.contains("not registered"), "{e}");
    nothing_installed(&s, &c).await;
    // a failing file: the install is undone
    let d = plugin_dir(
        &work.path().join("b"),
        &pj("app"),
        &[("m/V1__bad.sql", "CREATE TABLE t (y);")],
    );
    let e = install_err(&c, &d).await;
    assert!(e.contains("V1__bad.sql"), "{e}");
    nothing_installed(&s, &c).await;
    // nothing of the failed install is left in the database either
    let app_db = s.data_dir().join("databases/app.db");
    assert_eq!(trex_tables(&app_db), Vec::<String>::new());
    // a good one: applied to the registered database, listed as plugin:notes
    let d = plugin_dir(
        &work.path().join("c"),
        &pj("app"),
        &[(
            "m/V1__notes.sql",
            "CREATE TABLE notes (id INTEGER PRIMARY KEY);",
        )],
    );
    let i = c
        .call_ok(
            "plugin-install",
            json!({"packageSpec": d.display().to_string()}),
        )
        .await;
    assert_eq!(i["migrations"][0]["status"], "applied", "{i}");
    let db = rusqlite::Connection::open(s.data_dir().join("databases/app.db")).unwrap();
    let n: i64 = db
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'notes'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1);
    // its ledger is its own: the database's own versions stay free
    assert_eq!(
        trex_tables(&app_db),
        vec!["trex_plugin_notes_history".to_string()]
    );
    let m = c
        .call_ok("migration-list", json!({"target": "plugin:notes"}))
        .await;
    assert_eq!(m["targets"][0]["appliedCount"], 1, "{m}");
    // uninstalling leaves the registered database's tables alone
    c.call_ok("plugin-uninstall", json!({"packageName": "notes"}))
        .await;
    let n: i64 = db
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'notes'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1);
}
