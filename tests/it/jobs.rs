//! The durable job runtime: exactly-once claims across runtimes on one store, recovery of a job
//! whose process was killed, cancellation at a safe point with progress on the way, and the
//! shutdown drain.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common;
use serde_json::json;
use trex::jobs::Jobs;
use trex::store::Store;

fn store(dir: &std::path::Path) -> Store {
    let mut c = trex::config::StoreConfig {
        data_dir: dir.to_path_buf(),
        pool_size: 4,
        ..Default::default()
    };
    common::test_store(&mut c);
    Store::open(&c).unwrap()
}

async fn wait_until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    for _ in 0..600 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_runtimes_on_one_store_run_each_of_300_jobs_once() {
    let dir = tempfile::tempdir().unwrap();
    let runs: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let mut runtimes = Vec::new();
    for _ in 0..3 {
        let jobs = Jobs::new(store(dir.path()), Duration::from_secs(10));
        let runs = runs.clone();
        jobs.register("count", false, move |ctx, _payload| {
            let runs = runs.clone();
            async move {
                *runs.lock().unwrap().entry(ctx.id.clone()).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
                Ok(json!({"ok": true}))
            }
        });
        runtimes.push(jobs);
    }
    let mut ids = Vec::new();
    for i in 0..300 {
        ids.push(
            runtimes[i % 3]
                .enqueue("count", &json!({"n": i}), 1, None)
                .await
                .unwrap(),
        );
    }
    for r in &runtimes {
        r.start(2);
    }
    let check = store(dir.path());
    wait_until("300 jobs succeeded", async || {
        check
            .run(trex::store::jobs::counts)
            .await
            .unwrap()
            .iter()
            .any(|(s, n)| s == "succeeded" && *n == 300)
    })
    .await;
    {
        let runs = runs.lock().unwrap();
        assert_eq!(runs.len(), 300);
        assert!(runs.values().all(|n| *n == 1), "a job ran twice");
        for id in &ids {
            assert_eq!(runs.get(id), Some(&1));
        }
    }
    for r in runtimes {
        r.shutdown(Duration::from_secs(1)).await;
    }
}

/// The child process of the kill -9 test: starts a long job on the store in
/// `TREX_JOB_CHILD_DIR`, prints `RUNNING <id>` and waits to be killed.
#[tokio::test]
#[ignore = "run by a_job_whose_process_was_killed_is_recovered as its child process"]
async fn child_runs_a_long_job() {
    let Some(dir) = std::env::var_os("TREX_JOB_CHILD_DIR") else {
        return;
    };
    let jobs = Jobs::new(store(std::path::Path::new(&dir)), Duration::from_secs(3));
    jobs.register("long", false, |ctx, _| async move {
        ctx.cancelled().await;
        Err("stopped".to_string())
    });
    let id = jobs.enqueue("long", &json!({}), 1, None).await.unwrap();
    jobs.start(1);
    let j = jobs.clone();
    let id2 = id.clone();
    wait_until("the job runs", async || {
        j.get(&id2).await.unwrap().unwrap().state == "running"
    })
    .await;
    println!("RUNNING {id}");
    tokio::time::sleep(Duration::from_secs(120)).await;
}

#[tokio::test]
async fn a_job_whose_process_was_killed_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "jobs::child_runs_a_long_job",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("TREX_JOB_CHILD_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let id = loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the child ended early"
        );
        if let Some(id) = line.trim().strip_prefix("RUNNING ") {
            break id.to_string();
        }
    };
    // kill -9: no shutdown, no finishing write, the lease just stops being renewed
    Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    let jobs = Jobs::new(store(dir.path()), Duration::from_secs(3));
    jobs.register("long", false, |_, _| async { Ok(json!({})) });
    assert_eq!(jobs.get(&id).await.unwrap().unwrap().state, "running");
    jobs.start(1);
    let j = jobs.clone();
    wait_until("the killed job is recovered", async || {
        j.get(&id).await.unwrap().unwrap().state != "running"
    })
    .await;
    let job = jobs.get(&id).await.unwrap().unwrap();
    assert_eq!(job.state, "failed");
    assert!(job.error.unwrap().contains("interrupted"));
    jobs.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn cancellation_reaches_a_running_job_and_progress_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = Jobs::new(store(dir.path()), Duration::from_secs(10));
    jobs.register("steps", false, |ctx, _| async move {
        for i in 0..1000 {
            if ctx.is_cancelled() {
                return Err(format!("stopped at step {i}"));
            }
            ctx.progress(i as f64, Some(1000.0), Some("step")).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(json!({"done": true}))
    });
    jobs.start(1);
    let id = jobs.enqueue("steps", &json!({}), 1, None).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let waiter = {
        let (jobs, id, seen) = (jobs.clone(), id.clone(), seen.clone());
        tokio::spawn(async move {
            jobs.wait(&id, |p, _, _| seen.lock().unwrap().push(p))
                .await
                .unwrap()
        })
    };
    let s2 = seen.clone();
    wait_until("progress arrives", async || s2.lock().unwrap().len() >= 3).await;
    assert_eq!(jobs.cancel(&id).await.unwrap().as_deref(), Some("running"));
    let job = waiter.await.unwrap();
    assert_eq!(job.state, "cancelled");
    assert!(job.error.unwrap().contains("stopped at step"));
    assert!(job.progress.is_some());
    // a queued job is cancelled before it starts
    let q = jobs.enqueue("steps", &json!({}), 1, None).await.unwrap();
    let _ = jobs.cancel(&q).await;
    jobs.shutdown(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn shutdown_drains_short_jobs_and_stops_long_ones_at_a_safe_point() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = Jobs::new(store(dir.path()), Duration::from_secs(10));
    jobs.register("short", false, |_, _| async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(json!({}))
    });
    jobs.register("forever", true, |ctx, _| async move {
        ctx.cancelled().await;
        Err("stopped".to_string())
    });
    jobs.start(2);
    let short = jobs.enqueue("short", &json!({}), 1, None).await.unwrap();
    let long = jobs.enqueue("forever", &json!({}), 3, None).await.unwrap();
    let j = jobs.clone();
    let (s2, l2) = (short.clone(), long.clone());
    wait_until("both run", async || {
        j.get(&s2).await.unwrap().unwrap().state == "running"
            && j.get(&l2).await.unwrap().unwrap().state == "running"
    })
    .await;
    jobs.shutdown(Duration::from_secs(1)).await;
    assert_eq!(jobs.get(&short).await.unwrap().unwrap().state, "succeeded");
    // stopped at shutdown and, its kind allowing it, queued for the next start
    assert_eq!(jobs.get(&long).await.unwrap().unwrap().state, "queued");
}
