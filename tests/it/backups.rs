//! Online backups: taken while a writer keeps inserting, restored by the CLI into a new data
//! dir with every acknowledged row there and every database whole; archives with unsafe paths
//! or wrong checksums refused with nothing written.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use serde_json::json;

use crate::common::TestServer;

fn trex(args: &[&str]) -> std::process::Output {
    crate::common::trex_command(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

#[tokio::test]
async fn a_backup_under_writes_restores_with_every_acknowledged_row() {
    let s = TestServer::start().await;
    let mut c = s.client();
    c.initialize().await;
    let dbs = s.data_dir().join("databases");
    std::fs::create_dir_all(&dbs).unwrap();
    let app_db = dbs.join("app.db");
    rusqlite::Connection::open(&app_db)
        .unwrap()
        .execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE events (id INTEGER PRIMARY KEY, body TEXT);",
        )
        .unwrap();
    c.call_ok(
        "database-create",
        json!({"id": "app", "dialect": "sqlite", "databaseName": "app.db"}),
    )
    .await;
    // a writer that keeps inserting, one committed row at a time
    let (stop, acked) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicI64::new(0)),
    );
    let writer = {
        let (stop, acked, path) = (stop.clone(), acked.clone(), app_db.clone());
        std::thread::spawn(move || {
            let c = rusqlite::Connection::open(&path).unwrap();
            c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
            let mut i = 0i64;
            while !stop.load(Ordering::Acquire) {
                i += 1;
                c.execute(
                    "INSERT INTO events (id, body) VALUES (?1, printf('%.*c', 200, 'x'))",
                    [i],
                )
                .unwrap();
                acked.store(i, Ordering::Release);
            }
            i
        })
    };
    while acked.load(Ordering::Acquire) < 2000 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let before = acked.load(Ordering::Acquire);
    let b = c.call_ok("backup-create", json!({})).await;
    stop.store(true, Ordering::Release);
    let written = writer.join().unwrap();
    assert!(written > before, "the writer was not paused for the backup");
    let file = b["file"].as_str().unwrap().to_string();
    let files: Vec<&str> = b["manifest"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    // on a PostgreSQL control store the node's backup holds its own files; the shared store
    // is PostgreSQL's to back up (pg_dump), as README says
    let store_file = !crate::common::pg_store();
    assert!(
        files.contains(&"trex.db") == store_file
            && files.contains(&"databases/app.db")
            && files.contains(&"data/main.db"),
        "{files:?}"
    );
    assert!(
        !files.contains(&"master.key"),
        "master.key went into the backup"
    );
    assert_eq!(b["manifest"]["masterKeyIncluded"], false);
    let l = c.call_ok("backup-list", json!({})).await;
    assert_eq!(l["backups"][0]["file"], file.as_str());

    // restore into a new data dir with the CLI
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("restored");
    let o = trex(&["restore", &file, "--data-dir", target.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = rusqlite::Connection::open(target.join("databases/app.db")).unwrap();
    let check: String = r
        .query_row("PRAGMA integrity_check", [], |x| x.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let (n, max): (i64, i64) = r
        .query_row("SELECT count(*), max(id) FROM events", [], |x| {
            Ok((x.get(0)?, x.get(1)?))
        })
        .unwrap();
    assert!(
        max >= before,
        "row {before} was acknowledged before the backup but is missing (max {max})"
    );
    assert_eq!(n, max, "a hole in the restored rows");
    if store_file {
        let users: i64 = rusqlite::Connection::open(target.join("trex.db"))
            .unwrap()
            .query_row("SELECT count(*) FROM users", [], |x| x.get(0))
            .unwrap();
        assert_eq!(users, 1);
        // a second restore onto a store needs --force
        let o = trex(&["restore", &file, "--data-dir", target.to_str().unwrap()]);
        assert!(!o.status.success());
        assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    }
    // the backup is audited
    let a = c
        .call_ok("audit-list", json!({"tool": "backup-create"}))
        .await;
    assert_eq!(a["entries"][0]["outcome"], "ok");
}

/// Writes a .tar.gz with a manifest and the given entries (name, bytes), checksums from `sums`.
fn archive(path: &std::path::Path, entries: &[(&str, &[u8])], sums: &[(&str, &str)]) {
    let files: Vec<serde_json::Value> = sums
        .iter()
        .map(|(p, s)| json!({"path": p, "sha256": s, "bytes": 1, "sqlite": false}))
        .collect();
    let manifest = json!({"trexVersion": "0", "schemaVersion": 1, "createdAt": "now",
        "masterKeyIncluded": false, "files": files});
    let f = std::fs::File::create(path).unwrap();
    let mut t = tar::Builder::new(flate2::write::GzEncoder::new(
        f,
        flate2::Compression::fast(),
    ));
    let m = serde_json::to_vec(&manifest).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(m.len() as u64);
    h.set_cksum();
    t.append_data(&mut h, "manifest.json", m.as_slice())
        .unwrap();
    for (name, bytes) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o600);
        // set the raw name, so `..` survives (the builder refuses it)
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        t.append(&h, *bytes).unwrap();
    }
    t.into_inner().unwrap().finish().unwrap();
}

#[test]
fn unsafe_or_damaged_archives_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let evil = dir.path().join("evil.tar.gz");
    archive(
        &evil,
        &[("../escaped.txt", b"x")],
        &[("../escaped.txt", "00")],
    );
    let target = dir.path().join("data");
    let o = trex(&[
        "restore",
        evil.to_str().unwrap(),
        "--data-dir",
        target.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("unsafe path"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!dir.path().join("escaped.txt").exists());
    let bad = dir.path().join("bad.tar.gz");
    archive(&bad, &[("notes.txt", b"hello")], &[("notes.txt", "0000")]);
    let o = trex(&[
        "restore",
        bad.to_str().unwrap(),
        "--data-dir",
        target.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("checksum"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!target.join("notes.txt").exists());
}
