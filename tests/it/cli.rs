//! The `trex` binary as a person runs it: init, api-key create/list/revoke, serve's first start,
//! strict config, and SIGTERM with open SSE streams.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{Client, SseReader};

fn trex(args: &[&str]) -> Output {
    crate::common::trex_command(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn last_line(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_string()
}

#[test]
fn init_and_api_key_commands() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let o = trex(&[
        "init",
        "--data-dir",
        d,
        "--admin-email",
        "root@example.com",
        "--admin-password",
        "s3cret-pass",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let key = last_line(&o);
    assert!(trex::auth::keys::well_formed(&key), "{key:?}");
    assert_eq!(
        dir.path().join("trex.db").exists(),
        !crate::common::pg_store()
    );

    let again = trex(&["init", "--data-dir", d, "--admin-email", "x@example.com"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already initialized"));

    let o = trex(&[
        "api-key",
        "create",
        "--data-dir",
        d,
        "--user",
        "root@example.com",
        "--name",
        "ci",
        "--expires",
        "2099-01-01T00:00:00Z",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let second = last_line(&o);
    assert!(trex::auth::keys::well_formed(&second));
    assert_ne!(second, key);

    let o = trex(&[
        "api-key",
        "create",
        "--data-dir",
        d,
        "--user",
        "nobody@example.com",
        "--name",
        "x",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("nobody@example.com"));
    let o = trex(&[
        "api-key",
        "create",
        "--data-dir",
        d,
        "--user",
        "root@example.com",
        "--name",
        "x",
        "--expires",
        "soon",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--expires"));

    let o = trex(&["api-key", "list", "--data-dir", d]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(out.contains("ci") && out.contains("init"), "{out}");
    assert!(
        !out.contains(&key) && !out.contains(&second),
        "list must not print keys"
    );
    let id = out
        .lines()
        .find(|l| l.contains(" ci "))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let o = trex(&["api-key", "revoke", "--data-dir", d, &id]);
    assert!(o.status.success());
    let o = trex(&["api-key", "revoke", "--data-dir", d, &id]);
    assert!(!o.status.success());
    let out =
        String::from_utf8_lossy(&trex(&["api-key", "list", "--data-dir", d]).stdout).to_string();
    assert!(
        out.lines()
            .any(|l| l.contains(" ci ") && l.contains("revoked")),
        "{out}"
    );
}

#[test]
fn bad_config_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("trex.toml");
    std::fs::write(&cfg, "[mcp]\nmax_sesions = 5\n").unwrap();
    let o = trex(&[
        "serve",
        "--config",
        cfg.to_str().unwrap(),
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("max_sesions"));
    std::fs::write(&cfg, "[server]\nlisten = \"0.0.0.0:8001\"\n").unwrap();
    let o = trex(&["serve", "--config", cfg.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("allow_remote"));
}

/// A `trex serve` child with its bound address and first-start stdout.
pub(crate) struct Served {
    pub(crate) child: Child,
    pub(crate) addr: String,
    pub(crate) stdout: String,
}

impl Served {
    /// The admin key a first start printed.
    pub(crate) fn key(&self) -> String {
        self.stdout
            .split_whitespace()
            .find(|w| trex::auth::keys::well_formed(w))
            .expect("the first start prints a key")
            .to_string()
    }
}

fn serve(dir: &str) -> Served {
    serve_with(dir, &[])
}

/// [`serve`] with extra environment variables (`TREX_*` configuration).
pub(crate) fn serve_with(dir: &str, env: &[(&str, &str)]) -> Served {
    let mut child =
        crate::common::trex_command(&["serve", "--data-dir", dir, "--listen", "127.0.0.1:0"])
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut addr = None;
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 {
        if let Some(rest) = line.split("listening on ").nth(1) {
            addr = Some(rest.split_whitespace().next().unwrap().to_string());
            break;
        }
        line.clear();
    }
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    let addr = addr.expect("server did not log its address");
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let mut buf = [0u8; 4096];
        // first-start output is printed before serving; collect what is there
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            s.push_str(&String::from_utf8_lossy(&buf[..n]));
            let _ = tx.send(s.clone());
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    let stdout = rx.try_iter().last().unwrap_or_default();
    Served {
        child,
        addr,
        stdout,
    }
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[tokio::test]
async fn first_start_prints_a_key_and_client_config_once_and_sigterm_ends_open_streams() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    let mut first = serve(&d);
    assert!(first.stdout.contains("\"mcpServers\""), "{}", first.stdout);
    let key = first.key();
    let url = format!("http://{}/trex/mcp", first.addr);
    assert!(first.stdout.contains(&url));
    let mut c = Client::new(&url, Some(&key));
    c.initialize().await;
    let users = c.call_ok("user-list", json!({})).await;
    assert_eq!(users["users"][0]["email"], "admin@trex.local");

    // open SSE streams: the standalone GET stream
    let r = c.get().send().await.unwrap();
    let mut rd = SseReader::new(r);
    rd.next(Duration::from_secs(3)).await.unwrap();
    let t = Instant::now();
    sigterm(&first.child);
    let status = tokio::task::spawn_blocking(move || first.child.wait())
        .await
        .unwrap()
        .unwrap();
    let took = t.elapsed();
    assert!(status.success() || status.code().is_some(), "{status:?}");
    assert!(
        took < Duration::from_secs(2),
        "SIGTERM with an open SSE stream took {took:?}"
    );

    // the second start prints no key, and the old key and session still work
    let mut second = serve(&d);
    assert!(!second.stdout.contains("trex_"), "{}", second.stdout);
    let mut again = Client::new(&format!("http://{}/trex/mcp", second.addr), Some(&key));
    again.session = c.session.clone();
    assert!(again.rpc("ping", json!({})).await["result"].is_object());

    // revocation through the CLI reaches the running server
    let keys = again.call_ok("api-key-list", json!({})).await;
    let id = keys["keys"][0]["id"].as_str().unwrap().to_string();
    let o = trex(&["api-key", "revoke", "--data-dir", &d, &id]);
    assert!(o.status.success());
    let mut refused = false;
    for _ in 0..40 {
        let r = again
            .post()
            .json(&json!({"jsonrpc":"2.0","id":9,"method":"ping"}))
            .send()
            .await
            .unwrap();
        if r.status() == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "a key revoked by the CLI kept working");
    sigterm(&second.child);
    second.child.wait().unwrap();
}

#[test]
fn user_commands() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let o = trex(&[
        "init",
        "--data-dir",
        d,
        "--admin-email",
        "ann@example.com",
        "--admin-password",
        "long-enough",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = trex(&[
        "user",
        "create",
        "--data-dir",
        d,
        "--email",
        "zed@example.com",
        "--name",
        "Zed",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let id = last_line(&o);
    assert_eq!(id.len(), 36);
    // the last active admin cannot be banned
    let o = trex(&["user", "ban", "--data-dir", d, "--email", "ann@example.com"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("last active admin"));
    let o = trex(&[
        "user",
        "create",
        "--data-dir",
        d,
        "--email",
        "root@example.com",
        "--name",
        "Root",
        "--role",
        "admin",
    ]);
    assert!(o.status.success());
    let o = trex(&[
        "user",
        "ban",
        "--data-dir",
        d,
        "--email",
        "ann@example.com",
        "--unban",
        "--reason",
        "x",
    ]);
    assert!(!o.status.success(), "--unban with --reason is refused");
    let o = trex(&[
        "user",
        "create",
        "--data-dir",
        d,
        "--email",
        "ann@example.com",
        "--name",
        "Ann",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
    let o = trex(&[
        "user",
        "create",
        "--data-dir",
        d,
        "--email",
        "bad",
        "--name",
        "B",
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("email"));
    let o = trex(&[
        "user",
        "create",
        "--data-dir",
        d,
        "--email",
        "b@example.com",
        "--name",
        "B",
        "--password",
        "short",
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("password"));

    let o = trex(&[
        "user",
        "set-password",
        "--data-dir",
        d,
        "--email",
        "ann@example.com",
        "--password",
        "another-one",
    ]);
    assert!(o.status.success());
    let o = trex(&[
        "user",
        "ban",
        "--data-dir",
        d,
        "--email",
        "ann@example.com",
        "--reason",
        "test",
    ]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&trex(&["user", "list", "--data-dir", d]).stdout).to_string();
    assert!(
        out.lines()
            .any(|l| l.contains("ann@example.com") && l.contains("banned")),
        "{out}"
    );
    trex(&[
        "user",
        "ban",
        "--data-dir",
        d,
        "--email",
        "ann@example.com",
        "--unban",
    ]);
    let out = String::from_utf8_lossy(&trex(&["user", "list", "--data-dir", d]).stdout).to_string();
    assert!(
        out.lines()
            .any(|l| l.contains("ann@example.com") && l.contains("active")),
        "{out}"
    );
    let o = trex(&[
        "user",
        "ban",
        "--data-dir",
        d,
        "--email",
        "nobody@example.com",
    ]);
    assert!(!o.status.success());
}

#[test]
fn init_checks_input_before_creating_anything() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("fresh");
    let o = trex(&[
        "init",
        "--data-dir",
        d.to_str().unwrap(),
        "--admin-email",
        "nope",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("email"));
    assert!(!d.exists(), "a failed init must leave nothing behind");
    let o = Command::new(env!("CARGO_BIN_EXE_trex"))
        .args(["serve", "--data-dir", d.to_str().unwrap()])
        .env("TREX_MCP_MAX_SESION", "5")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains("TREX_MCP_MAX_SESION"), "{err}");
    assert!(!err.contains("backtrace"), "{err}");
}

#[test]
fn init_makes_a_0600_master_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert!(
        trex(&["init", "--data-dir", d, "--admin-email", "root@example.com"])
            .status
            .success()
    );
    let key = dir.path().join("master.key");
    assert!(key.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        if !crate::common::pg_store() {
            let db = std::fs::metadata(dir.path().join("trex.db")).unwrap();
            assert_eq!(db.permissions().mode() & 0o777, 0o600);
        }
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn the_cli_does_not_invent_stores_and_names_its_flags() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("nothing-here");
    let d = d.to_str().unwrap();
    for args in [
        vec!["user", "list", "--data-dir", d],
        vec!["api-key", "list", "--data-dir", d],
        vec!["user", "ban", "--data-dir", d, "--email", "a@example.com"],
    ] {
        let o = trex(&args);
        assert!(!o.status.success(), "{args:?}");
        assert!(stderr(&o).contains("no trex store in"), "{}", stderr(&o));
    }
    assert!(
        !dir.path().join("nothing-here").exists(),
        "a store was invented"
    );
    let o = trex(&["init", "--data-dir", d, "--admin-email", "not-an-email"]);
    assert!(stderr(&o).contains("--admin-email"), "{}", stderr(&o));
    assert!(
        trex(&["init", "--data-dir", d, "--admin-email", "root@example.com"])
            .status
            .success()
    );
    let o = trex(&[
        "user",
        "create",
        "--data-dir",
        d,
        "--email",
        "u@example.com",
        "--name",
        "U",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = trex(&[
        "user",
        "ban",
        "--data-dir",
        d,
        "--email",
        "u@example.com",
        "--until",
        "yesterday",
    ]);
    assert!(stderr(&o).contains("--until"), "{}", stderr(&o));
    let o = trex(&[
        "user",
        "ban",
        "--data-dir",
        d,
        "--email",
        "u@example.com",
        "--until",
        "2099-01-31",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // the same rule, with the same words, as the user-ban tool: the last admin stays
    let o = trex(&[
        "user",
        "ban",
        "--data-dir",
        d,
        "--email",
        "root@example.com",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("last active admin"), "{}", stderr(&o));
}

#[test]
fn cli_changes_are_audited_and_keys_listed_with_scopes_revoked_by_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert!(
        trex(&["init", "--data-dir", d, "--admin-email", "root@example.com"])
            .status
            .success()
    );
    let o = trex(&[
        "api-key",
        "create",
        "--data-dir",
        d,
        "--user",
        "root@example.com",
        "--name",
        "ro",
        "--read-only",
        "--expires",
        "2099-01-01",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let key = last_line(&o);
    let list =
        String::from_utf8_lossy(&trex(&["api-key", "list", "--data-dir", d]).stdout).to_string();
    assert!(
        list.contains("\"readOnly\":true") && list.contains("expires 2099-01-01"),
        "{list}"
    );
    let prefix = &key[..13];
    let o = trex(&["api-key", "revoke", "--data-dir", d, prefix]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = trex(&[
        "user",
        "create",
        "--data-dir",
        d,
        "--email",
        "x@example.com",
        "--name",
        "X",
    ]);
    assert!(o.status.success());
    let o = trex(&["user", "ban", "--data-dir", d, "--email", "x@example.com"]);
    assert!(o.status.success());
    let rows: Vec<(String, String, String)> = crate::common::with_dir_store(dir.path(), |c| {
        c.query_map(
            "SELECT tool, via, outcome FROM audit_log ORDER BY id",
            (),
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
    });
    let tools: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    // the CLI's rows name the operation as the MCP tools do, with `via: cli`
    for t in [
        "api-key-create",
        "api-key-revoke",
        "user-create",
        "user-ban",
    ] {
        assert!(tools.contains(&t), "{t} not audited: {rows:?}");
    }
    assert!(rows.iter().all(|r| r.1 == "cli"));
}

#[test]
fn a_lost_master_key_without_sealed_secrets_is_replaced_and_reset_drops_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    // first start makes the key; losing it on a store with no sealed secret is harmless
    let mut first = serve(d);
    sigterm(&first.child);
    first.child.wait().unwrap();
    std::fs::remove_file(dir.path().join("master.key")).unwrap();
    if crate::common::pg_store() {
        // on a shared store a node never makes its own key: other nodes may hold the old one
        let o = trex(&["serve", "--data-dir", d, "--listen", "127.0.0.1:0"]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains("has no master key"), "{}", stderr(&o));
        assert!(!dir.path().join("master.key").exists());
        let o = trex(&["master-key", "reset", "--data-dir", d, "--yes"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    for _ in 0..2 {
        let mut again = serve(d);
        sigterm(&again.child);
        assert!(again.child.wait().unwrap().success());
    }
    // with a sealed secret, a lost key refuses to start and `master-key reset` recovers
    crate::common::with_dir_store(dir.path(), |c| {
        c.execute_batch(
        "INSERT INTO databases (id, host, port, database_name, dialect, created_at, updated_at)
           VALUES ('pg', '127.0.0.1', 5432, 'test', 'postgresql', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z');
         INSERT INTO database_credentials (id, database_id, username, password, created_at, updated_at)
           VALUES ('c1', 'pg', 'u', 'v1:sealed', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z');",
        )
    });
    std::fs::remove_file(dir.path().join("master.key")).unwrap();
    let o = trex(&["serve", "--data-dir", d, "--listen", "127.0.0.1:0"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("trex master-key reset"),
        "{}",
        stderr(&o)
    );
    assert!(
        !dir.path().join("master.key").exists(),
        "a refused start wrote a key"
    );
    let o = trex(&["master-key", "reset", "--data-dir", d, "--yes"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut ok = serve(d);
    sigterm(&ok.child);
    assert!(ok.child.wait().unwrap().success());
    // a clean stop leaves no WAL behind, and every file is the owner's only
    let wal = dir.path().join("trex.db-wal");
    assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                let mode = e.metadata().unwrap().permissions().mode() & 0o777;
                assert_eq!(mode & 0o077, 0, "{:?} is {mode:o}", e.file_name());
            }
        }
    }
}

#[test]
fn serve_says_how_to_mint_a_key_when_none_exists() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let o = trex(&["init", "--data-dir", d, "--admin-email", "root@example.com"]);
    let key = last_line(&o);
    assert!(
        trex(&["api-key", "revoke", "--data-dir", d, &key[..13]])
            .status
            .success()
    );
    let mut s = serve(d);
    sigterm(&s.child);
    s.child.wait().unwrap();
    assert!(s.stdout.contains("No API key exists yet"), "{}", s.stdout);
    assert!(s.stdout.contains("trex api-key create"), "{}", s.stdout);
}

#[test]
fn one_server_per_data_dir_and_no_key_reset_under_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let mut first = serve(d);
    let o = trex(&["serve", "--data-dir", d, "--listen", "127.0.0.1:0"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("another trex server is running"),
        "{}",
        stderr(&o)
    );
    let o = trex(&["master-key", "reset", "--data-dir", d, "--yes"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("another trex server is running"),
        "{}",
        stderr(&o)
    );
    sigterm(&first.child);
    first.child.wait().unwrap();
    // an empty trex.db is not a store
    let e = tempfile::tempdir().unwrap();
    std::fs::write(e.path().join("trex.db"), b"").unwrap();
    let o = trex(&["api-key", "list", "--data-dir", e.path().to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no trex store"), "{}", stderr(&o));
    assert_eq!(
        std::fs::metadata(e.path().join("trex.db")).unwrap().len(),
        0
    );
}

/// The error text the CLI printed for a failed command (after `error: `).
fn cli_error(o: &Output) -> String {
    assert!(!o.status.success(), "the command succeeded");
    let e = stderr(o);
    e.trim()
        .strip_prefix("error: ")
        .unwrap_or(e.trim())
        .to_string()
}

#[tokio::test]
async fn the_cli_and_the_tools_refuse_the_same_bad_input_with_the_same_words() {
    let s = crate::common::TestServer::start().await;
    let d = s.data_dir();
    let d = d.to_str().unwrap();
    let mut c = s.client();
    c.initialize().await;
    // ban of the last active admin: one rule, in the domain layer, whichever door
    let o = trex(&[
        "user",
        "ban",
        "--data-dir",
        d,
        "--email",
        "admin@example.com",
    ]);
    assert_eq!(
        cli_error(&o),
        "'admin@example.com' is the last active admin; make another admin first (an active admin always remains)"
    );
    // over MCP the only way to it is the admin itself, which the self rule stops first
    let e = c
        .call_err("user-ban", json!({"userId": s.admin_id, "banned": true}))
        .await;
    assert_eq!(e, "You cannot ban yourself");
    // an unknown user, named by email at both doors
    let o = trex(&[
        "user",
        "ban",
        "--data-dir",
        d,
        "--email",
        "nobody@example.com",
    ]);
    let e = c
        .call_err(
            "user-ban",
            json!({"userId": "nobody@example.com", "banned": true}),
        )
        .await;
    assert_eq!(cli_error(&o), e);
    assert!(e.contains("nobody@example.com"), "{e}");
    // a deleted user cannot be banned
    let u = c
        .call_ok(
            "user-create",
            json!({"name": "Zed", "email": "zed@example.com"}),
        )
        .await;
    c.call_ok("user-delete", json!({"userId": u["id"]})).await;
    let o = trex(&["user", "ban", "--data-dir", d, "--email", "zed@example.com"]);
    let e = c
        .call_err("user-ban", json!({"userId": u["id"], "banned": true}))
        .await;
    assert_eq!(cli_error(&o), e);
    assert!(e.contains("is deleted"), "{e}");
    // a password that is too short
    let o = trex(&[
        "user",
        "set-password",
        "--data-dir",
        d,
        "--email",
        "admin@example.com",
        "--password",
        "short",
    ]);
    let e = c
        .call_err(
            "user-set-password",
            json!({"userId": s.admin_id, "password": "short"}),
        )
        .await;
    assert_eq!(format!("Invalid arguments: {}", cli_error(&o)), e);
    // and every one of them is in the audit log once, under the tool's name, from both doors
    let rows = c
        .call_ok("audit-list", json!({"tool": "user-ban", "limit": 100}))
        .await;
    let vias: Vec<&str> = rows["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["via"].as_str().unwrap())
        .collect();
    assert_eq!(vias.iter().filter(|v| **v == "cli").count(), 3, "{rows}");
    assert_eq!(vias.iter().filter(|v| **v == "mcp").count(), 3, "{rows}");
}

/// The dump of a SQLite file: schema and rows, for "as before" comparisons.
fn sqlite_dump(p: &std::path::Path) -> String {
    let c = rusqlite::Connection::open(p).unwrap();
    let mut st = c
        .prepare("SELECT name, coalesce(sql, '') FROM sqlite_schema ORDER BY name")
        .unwrap();
    let schema: Vec<String> = st
        .query_map([], |r| {
            Ok(format!(
                "{}: {}",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let n: i64 = c
        .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
        .unwrap();
    format!("{}\nusers: {n}", schema.join("\n"))
}

/// Who finishes a migration run whose node was killed with `kill -9`.
enum Takeover {
    /// The same node, restarted on its data dir.
    Restart,
    /// Another node of the same PostgreSQL store, already running, with a data dir of its own
    /// (its `databases/` the same directory, its master key a copy).
    OtherNode,
}

async fn a_run_killed_mid_migration_is_rolled_back_by(takeover: Takeover) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let dbs = dir.path().join("databases");
    std::fs::create_dir_all(&dbs).unwrap();
    for (name, rows) in [("a", 3), ("b", 3000)] {
        let c = rusqlite::Connection::open(dbs.join(format!("{name}.db"))).unwrap();
        c.execute_batch(&format!(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT);
             WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {rows})
             INSERT INTO users (email) SELECT 'u' || n FROM s;"
        ))
        .unwrap();
    }
    let before = [
        sqlite_dump(&dbs.join("a.db")),
        sqlite_dump(&dbs.join("b.db")),
    ];
    let schema = format!("n_{}", trex::util::random_hex(6));
    let mut env = vec![("TREX_JOBS_LEASE_SECS", "3")];
    if let Takeover::OtherNode = takeover {
        env.extend([
            ("TREX_STORE_URL", crate::common::TEST_STORE_DB),
            ("TREX_STORE_SCHEMA", schema.as_str()),
        ]);
    }
    let mut first = serve_with(d, &env);
    let key = first.key();
    let mut admin = Client::new(&format!("http://{}/trex/mcp", first.addr), Some(&key));
    admin.initialize().await;
    for name in ["a", "b"] {
        admin
            .call_ok(
                "database-create",
                json!({"id": name, "dialect": "sqlite", "databaseName": format!("{name}.db")}),
            )
            .await;
    }
    let mig_url = |addr: &str| format!("http://{addr}/api/v1/mcp/migrations");
    let mut m = Client::new(&mig_url(&first.addr), Some(&key));
    m.initialize().await;
    // slow on b only: 3000 x 3000 rows capped at 4 million
    m.call_ok(
        "define_migration",
        json!({"id": "slow", "interlays": [{"endpoint": "a"}, {"endpoint": "b"}],
            "data": {"type": "sql", "up": "CREATE TABLE pairs AS SELECT u1.id AS x, u2.id AS y FROM users u1, users u2 LIMIT 4000000"}}),
    )
    .await;
    let t = m
        .call_ok(
            "run_migration",
            json!({"migration_id": "slow", "mode": "test"}),
        )
        .await;
    assert_eq!(t["state"], "completed", "{t}");
    let r = m
        .call_ok(
            "run_migration",
            json!({"migration_id": "slow", "mode": "migrate", "wait": false}),
        )
        .await;
    let run = r["runId"].as_str().unwrap().to_string();
    // the other node is up before the kill, sharing the store and the databases
    let other_dir = tempfile::tempdir().unwrap();
    let mut other = match takeover {
        Takeover::Restart => None,
        Takeover::OtherNode => {
            std::fs::copy(
                dir.path().join("master.key"),
                other_dir.path().join("master.key"),
            )
            .unwrap();
            std::os::unix::fs::symlink(&dbs, other_dir.path().join("databases")).unwrap();
            Some(serve_with(other_dir.path().to_str().unwrap(), &env))
        }
    };
    // kill -9 while b is being migrated (a is done)
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let g = m.call_ok("get_migration_run", json!({"run_id": run})).await;
        if g["targets"][0]["state"] == "completed" && g["targets"][1]["state"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "never saw b running: {g}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    assert_ne!(
        sqlite_dump(&dbs.join("a.db")),
        before[0],
        "a was migrated before the kill"
    );

    let mut second = match other.take() {
        Some(node) => node,
        None => serve_with(d, &env),
    };
    let mut m = Client::new(&mig_url(&second.addr), Some(&key));
    m.initialize().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let g = loop {
        let g = m.call_ok("get_migration_run", json!({"run_id": run})).await;
        if !["pending", "running", "rolling_back"].contains(&g["state"].as_str().unwrap()) {
            break g;
        }
        assert!(Instant::now() < deadline, "the run was never finished: {g}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(g["state"], "rolled_back", "{g}");
    assert!(g["error"].as_str().unwrap().contains("interrupted"), "{g}");
    assert_eq!(sqlite_dump(&dbs.join("a.db")), before[0]);
    assert_eq!(sqlite_dump(&dbs.join("b.db")), before[1]);
    sigterm(&second.child);
    second.child.wait().unwrap();
}

#[tokio::test]
async fn a_run_killed_mid_migration_reads_rolled_back_interrupted_after_restart() {
    a_run_killed_mid_migration_is_rolled_back_by(Takeover::Restart).await;
}

#[tokio::test]
async fn a_run_whose_node_is_killed_is_rolled_back_by_another_node_of_the_store() {
    if !crate::common::postgres_or_skip("a run taken over by another node").await {
        return;
    }
    a_run_killed_mid_migration_is_rolled_back_by(Takeover::OtherNode).await;
}

#[test]
fn migration_commands_define_test_run_and_show_with_exit_status_1_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let dbs = dir.path().join("databases");
    std::fs::create_dir_all(&dbs).unwrap();
    rusqlite::Connection::open(dbs.join("app.db"))
        .unwrap()
        .execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT);")
        .unwrap();
    // register the database through a short-lived server (the CLI has no database command)
    let mut s = serve(d);
    let key = s.key();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = Client::new(&format!("http://{}/trex/mcp", s.addr), Some(&key));
        c.initialize().await;
        c.call_ok(
            "database-create",
            json!({"id": "app", "dialect": "sqlite", "databaseName": "app.db"}),
        )
        .await;
    });
    sigterm(&s.child);
    s.child.wait().unwrap();

    let file = dir.path().join("m.json");
    std::fs::write(
        &file,
        json!({"id": "nick", "interlays": [{"endpoint": "app"}],
            "data": {"type": "sql", "up": "ALTER TABLE users ADD COLUMN nick TEXT"},
            "apis": [{"id": "nicks", "query": "SELECT nick FROM users"}]})
        .to_string(),
    )
    .unwrap();
    let o = trex(&[
        "migration",
        "define",
        "--data-dir",
        d,
        file.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = trex(&["migration", "run", "--data-dir", d, "nick"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("has not passed a test"),
        "{}",
        stderr(&o)
    );
    let o = trex(&["migration", "test", "--data-dir", d, "nick"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["state"], "completed");
    assert_eq!(
        report["targets"][0]["report"]["diff"]["columns"]["users"]["added"][0],
        "nick TEXT"
    );
    let o = trex(&["migration", "run", "--data-dir", d, "nick"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = trex(&["migration", "list", "--data-dir", d]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("completed"));
    let o = trex(&["migration", "show", "--data-dir", d, "nick"]);
    let shown: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(shown["runs"].as_array().unwrap().len(), 2);
    // a failing test exits 1 and says why
    std::fs::write(
        &file,
        json!({"id": "nick", "interlays": [{"endpoint": "app"}],
            "data": {"type": "sql", "up": "ALTER TABLE users DROP COLUMN nick"},
            "apis": [{"id": "nicks", "query": "SELECT nick FROM users"}]})
        .to_string(),
    )
    .unwrap();
    let o = trex(&[
        "migration",
        "define",
        "--data-dir",
        d,
        file.to_str().unwrap(),
    ]);
    assert!(stderr(&o).contains("replace: true"), "{}", stderr(&o));
    let o = trex(&[
        "migration",
        "define",
        "--data-dir",
        d,
        "--replace",
        file.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = trex(&["migration", "test", "--data-dir", d, "nick"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nicks"), "{}", stderr(&o));
}

/// `trex.db`'s job rows of `kind`: `(state, attempts, progress message)`.
fn jobs_of(data: &std::path::Path, kind: &str) -> Vec<(String, i64, Option<String>)> {
    crate::common::with_dir_store(data, |c| {
        c.query_map(
            "SELECT state, attempts, progress_message FROM jobs WHERE kind = ?1",
            [kind],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
    })
}

#[tokio::test]
async fn a_migration_run_task_outlives_kill_9_of_its_server_and_is_polled_from_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let dbs = dir.path().join("databases");
    std::fs::create_dir_all(&dbs).unwrap();
    rusqlite::Connection::open(dbs.join("b.db"))
        .unwrap()
        .execute_batch(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT);
             WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 3000)
             INSERT INTO users (email) SELECT 'u' || n FROM s;",
        )
        .unwrap();
    let migs = dir.path().join("migrations/b");
    std::fs::create_dir_all(&migs).unwrap();
    // V1 is slow (millions of rows in one transaction), V2 quick
    std::fs::write(
        migs.join("V1__pairs.sql"),
        "CREATE TABLE pairs AS SELECT u1.id AS x, u2.id AS y FROM users u1, users u2 LIMIT 6000000;",
    )
    .unwrap();
    std::fs::write(
        migs.join("V2__marker.sql"),
        "CREATE TABLE marker (x INTEGER);",
    )
    .unwrap();
    let env = [("TREX_JOBS_LEASE_SECS", "3")];
    let mut first = serve_with(d, &env);
    let key = first.key();
    let mut admin = Client::new(&format!("http://{}/trex/mcp", first.addr), Some(&key));
    admin.initialize().await;
    admin
        .call_ok(
            "database-create",
            json!({"id": "b", "dialect": "sqlite", "databaseName": "b.db", "migrationsDir": "b"}),
        )
        .await;

    // a client that declared the tasks extension gets a task at once
    let url = format!("http://{}/trex/mcp", first.addr);
    let call = json!({"name": "migration-run", "arguments": {"target": "b"}});
    let (st, c) = crate::tasks::send(&url, &key, "tools/call", call, true).await;
    assert_eq!(st, 200, "{c}");
    assert_eq!(c["result"]["resultType"], "task", "{c}");
    let task = c["result"]["taskId"].as_str().unwrap().to_string();

    // kill -9 while V1 is being applied: no shutdown, no finishing write
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let j = jobs_of(dir.path(), "migration-files");
        if j.first()
            .is_some_and(|(s, _, m)| s == "running" && m.as_deref() == Some("b: V1__pairs.sql"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "never saw V1 running: {j:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let j = jobs_of(dir.path(), "migration-files");
    assert_eq!(j[0].0, "running", "killed mid-run: {j:?}");
    assert_eq!(j[0].1, 1, "{j:?}");

    // the next process takes the job over and the task, polled there on new connections,
    // ends with the run's result
    let mut second = serve_with(d, &env);
    let url = format!("http://{}/trex/mcp", second.addr);
    let deadline = Instant::now() + Duration::from_secs(90);
    let done = loop {
        let (st, b) =
            crate::tasks::send(&url, &key, "tasks/get", json!({"taskId": task}), true).await;
        assert_eq!(st, 200, "{b}");
        let r = b["result"].clone();
        if matches!(
            r["status"].as_str(),
            Some("completed" | "failed" | "cancelled")
        ) {
            break r;
        }
        assert_eq!(r["status"], "working", "{b}");
        assert!(Instant::now() < deadline, "the task never ended: {b}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(done["status"], "completed", "{done}");
    let ran = &done["result"]["structuredContent"]["targets"][0];
    assert_eq!(ran["target"], "b", "{done}");
    let applied: Vec<_> = ran["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["version"].as_i64().unwrap(),
                o["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        applied,
        [(1, "applied".to_string()), (2, "applied".to_string())],
        "{done}"
    );
    let j = jobs_of(dir.path(), "migration-files");
    assert_eq!((j[0].0.as_str(), j[0].1), ("succeeded", 2), "{j:?}");
    // each file applied once, and V1's cut-short first attempt left nothing behind
    let b = rusqlite::Connection::open(dbs.join("b.db")).unwrap();
    let n: i64 = b
        .query_row("SELECT count(*) FROM pairs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 6_000_000);
    let mut m = Client::new(&url, Some(&key));
    m.initialize().await;
    let l = m.call_ok("migration-list", json!({"target": "b"})).await;
    let files = l["targets"][0]["migrations"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{l}");
    assert!(files.iter().all(|f| f["status"] == "applied"), "{l}");
    // the run is audited once, as the caller who asked for it, with its outcome
    let a = m
        .call_ok("audit-list", json!({"tool": "migration-run"}))
        .await;
    assert_eq!(a["entries"].as_array().unwrap().len(), 1, "{a}");
    assert_eq!(a["entries"][0]["outcome"], "ok", "{a}");
    assert!(a["entries"][0]["keyId"].is_string(), "{a}");
    sigterm(&second.child);
    second.child.wait().unwrap();
}
