//! Memory benchmark: runs the call shapes that once took gigabytes against a real `trex serve`
//! process at its default limits and prints the server's peak RSS for each (Linux: `VmHWM` from
//! `/proc/<pid>/status`, reset before each shape through `/proc/<pid>/clear_refs`), and its RSS
//! after every shape is done. The goal is < 128 MiB peak for any single call. Not a test: it
//! prints figures.
//!
//! ```sh
//! cargo build --release --bin trex --example membench
//! target/release/examples/membench            # PostgreSQL shapes too when 127.0.0.1:5432 answers
//! ```

use std::time::Duration;

use anyhow::Result;
use serde_json::json;

#[path = "support/mod.rs"]
mod support;
use support::{Mcp, reset_peak, status_kib};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let trex_bin = support::trex_bin()?;
    let served = support::serve(&trex_bin, |_| {})?;
    let (pid, base, key) = (served.pid, served.base.clone(), served.key.clone());
    let http = reqwest::Client::new();
    let mut admin = Mcp::open(&http, format!("{base}/trex/mcp"), &key).await?;
    println!("trex pid {pid}, idle RSS {} KiB", status_kib(pid, "VmRSS:"));
    let mut worst = 0u64;
    let mut shape = |name: &str, peak: u64, note: &str| {
        worst = worst.max(peak);
        println!("{name:<58} peak {:>7.1} MiB   {note}", peak as f64 / 1024.0);
    };

    // SQLite shapes through trexdb-execute-sql
    let cols = |n: usize, expr: &str| vec![expr; n].join(", ");
    let sqlite_shapes = [
        ("200 x zeroblob(16000000)", format!("SELECT {}", cols(200, "zeroblob(16000000)"))),
        ("200 x zeroblob(8000000)", format!("SELECT {}", cols(200, "zeroblob(8000000)"))),
        ("40 x randomblob(16000000)", format!("SELECT {}", cols(40, "randomblob(16000000)"))),
        ("40 x printf('%.*c', 8000000, 'x')", format!("SELECT {}", cols(40, "printf('%.*c', 8000000, 'x')"))),
        ("1 x randomblob(8000000) (one value at the limit)", "SELECT randomblob(8000000)".to_string()),
        ("1 x 8 MB of control characters (6 bytes each in JSON)", "SELECT printf('%.*c', 7999000, char(1))".to_string()),
        ("1000 rows x 8 KB text", "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) SELECT printf('%.*c', 8000, 'x') FROM n".to_string()),
    ];
    for (name, sql) in sqlite_shapes {
        reset_peak(pid);
        let (bytes, head) = admin
            .call("trexdb-execute-sql", json!({"sql": sql}), false)
            .await?;
        let note = if head.contains("\"isError\":true") {
            "refused: ".to_string() + &head.chars().skip(30).take(90).collect::<String>()
        } else {
            format!("answered {:.1} MiB", bytes as f64 / 1048576.0)
        };
        shape(&format!("sqlite {name}"), status_kib(pid, "VmHWM:"), &note);
    }

    // PostgreSQL rows of 50-100 MB, when a server is here
    let pg = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect("127.0.0.1:5432"),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    if pg {
        admin.register_local_postgres("pg").await?;
        let mut e = Mcp::open(
            &http,
            format!("{base}/api/v1/endpoints/pg/mcp/postgres"),
            &key,
        )
        .await?;
        for (name, sql) in [
            ("1 row of 50 MB", "SELECT repeat('x', 50000000)"),
            ("1 row of 100 MB", "SELECT repeat('x', 100000000)"),
            (
                "3 rows of 5 MB",
                "SELECT repeat('x', 5000000) FROM generate_series(1, 3)",
            ),
        ] {
            reset_peak(pid);
            let (bytes, _) = e
                .call("execute_postgres_query", json!({"query": sql}), false)
                .await?;
            shape(
                &format!("postgres {name}"),
                status_kib(pid, "VmHWM:"),
                &format!("answered {:.1} MiB", bytes as f64 / 1048576.0),
            );
        }
    } else {
        println!("(PostgreSQL shapes skipped: nothing on 127.0.0.1:5432)");
    }

    // SSE replay: 30 calls of ~8 MB each in one session, then in three sessions
    let big = "SELECT printf('%.*c', 7000000, 'x')";
    let mut call_peak = 0;
    for _ in 0..30 {
        reset_peak(pid);
        admin
            .call("trexdb-execute-sql", json!({"sql": big}), true)
            .await?;
        call_peak = call_peak.max(status_kib(pid, "VmHWM:"));
    }
    shape(
        "SSE: 30 calls x 7 MB in one session (worst call)",
        call_peak,
        &format!(
            "RSS after {:.1} MiB",
            status_kib(pid, "VmRSS:") as f64 / 1024.0
        ),
    );
    reset_peak(pid);
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(Mcp::open(&http, format!("{base}/trex/mcp"), &key).await?);
    }
    for s in &mut sessions {
        for _ in 0..10 {
            s.call("trexdb-execute-sql", json!({"sql": big}), true)
                .await?;
        }
    }
    shape(
        "SSE: 3 sessions x 10 calls x 7 MB",
        status_kib(pid, "VmHWM:"),
        &format!(
            "RSS after {:.1} MiB",
            status_kib(pid, "VmRSS:") as f64 / 1024.0
        ),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(
        "\nworst single-shape peak {:.1} MiB (goal < 128 MiB); RSS at the end {:.1} MiB",
        worst as f64 / 1024.0,
        status_kib(pid, "VmRSS:") as f64 / 1024.0
    );
    drop(served);
    Ok(())
}
