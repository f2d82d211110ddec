//! Online backups of a data dir, and restoring one: every SQLite file (`trex.db`, trexdb's data
//! files, registered SQLite databases under the data dir) is copied with SQLite's online backup
//! — a consistent snapshot of each while the server keeps serving — and every other file as it
//! is, into one `.tar.gz` with a manifest (trex version, schema version, time, each file's
//! SHA-256 and size). `master.key` is left out unless asked for: a backup that holds the key
//! opens every sealed secret for whoever holds the archive. Restoring checks every path and
//! checksum, runs `PRAGMA integrity_check` on every database, and only then moves the files in.

use std::path::{Component, Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Actor, audited};
use crate::app::App;
use crate::config::Config;
use crate::error::{Error, Result};

/// The manifest's name inside an archive.
pub const MANIFEST: &str = "manifest.json";

/// One file of a backup.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct FileEntry {
    /// Relative to the data dir.
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
    /// True for SQLite databases (copied with the online backup, checked on restore).
    pub sqlite: bool,
}

/// What a backup holds.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub trex_version: String,
    pub schema_version: i64,
    pub created_at: String,
    pub master_key_included: bool,
    pub files: Vec<FileEntry>,
}

/// A backup archive.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Backup {
    pub file: String,
    pub bytes: u64,
    pub manifest: Manifest,
}

/// Where backups go.
pub fn dir(config: &Config) -> PathBuf {
    config
        .backup
        .dir
        .clone()
        .unwrap_or_else(|| config.store.data_dir.join("backups"))
}

fn io(what: &str, p: &Path, e: std::io::Error) -> Error {
    Error::io(format!("{what} {}", p.display()), e)
}

fn is_sqlite(p: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 16];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head == b"SQLite format 3\0"
}

/// The files of a data dir a backup holds (relative paths), leaving out backups, scratch and
/// pre-run copies, the lock, write-ahead logs and (unless asked) the master key. `node.id` goes
/// in: a restored data dir is the same node again (its pipelines' replicas come with it).
fn files_of(data: &Path, backups: &Path, with_key: bool) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![data.to_path_buf()];
    // scratch copies, and plugin installs and removals in progress, are not part of the state
    let skip_dir = |p: &Path| {
        p == backups
            || p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n == "scratch"
                    || n == ".trex-pre-run"
                    || n.starts_with(".staging-")
                    || n.starts_with(".trash-")
            })
    };
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| io("cannot read", &d, e))? {
            let e = e.map_err(|e| io("cannot read", &d, e))?;
            let p = e.path();
            let t = e.file_type().map_err(|e| io("cannot read", &p, e))?;
            let name = e.file_name().to_string_lossy().to_string();
            if t.is_dir() {
                if !skip_dir(&p) {
                    stack.push(p);
                }
            } else if t.is_file()
                && name != "trex.lock"
                && name != "plugins.lock"
                && !name.ends_with("-wal")
                && !name.ends_with("-shm")
                && !name.ends_with("-journal")
                && (with_key || name != "master.key")
            {
                out.push(p.strip_prefix(data).expect("below").to_path_buf());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// SHA-256 hex and size of a file. Blocking.
pub fn sha256_file(p: &Path) -> Result<(String, u64)> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(p).map_err(|e| io("cannot read", p, e))?;
    let mut h = sha2::Sha256::new();
    let (mut buf, mut n) = (vec![0u8; 1 << 16], 0u64);
    loop {
        let k = f.read(&mut buf).map_err(|e| io("cannot read", p, e))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

/// Takes a backup of the data dir into `out` (or a new file in the backup dir); `each(done,
/// total, path)` after each file. Blocking.
fn create_blocking(
    config: &Config,
    schema_version: i64,
    with_key: bool,
    out: Option<PathBuf>,
    mut each: impl FnMut(usize, usize, &str) -> bool,
) -> Result<Backup> {
    let data = config.store.data_dir.clone();
    let backups = dir(config);
    std::fs::create_dir_all(&backups).map_err(|e| io("cannot create", &backups, e))?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let target = out.unwrap_or_else(|| {
        backups.join(format!(
            "trex-backup-{stamp}-{}.tar.gz",
            crate::util::random_hex(3)
        ))
    });
    let staging = backups.join(format!(".staging-{}", crate::util::random_hex(6)));
    let result = (|| -> Result<Backup> {
        std::fs::create_dir_all(&staging).map_err(|e| io("cannot create", &staging, e))?;
        let rel = files_of(&data, &backups, with_key)?;
        let mut entries = Vec::new();
        for (i, r) in rel.iter().enumerate() {
            let (from, to) = (data.join(r), staging.join(r));
            if let Some(p) = to.parent() {
                std::fs::create_dir_all(p).map_err(|e| io("cannot create", p, e))?;
            }
            let sqlite = is_sqlite(&from);
            if sqlite {
                crate::migrate::runs::copy(&from, &to, false)
                    .map_err(|e| Error::Other(format!("cannot back up {}: {e}", from.display())))?;
            } else {
                std::fs::copy(&from, &to).map_err(|e| io("cannot copy", &from, e))?;
            }
            let (sha256, bytes) = sha256_file(&to)?;
            let path = r.to_string_lossy().replace('\\', "/");
            if !each(i + 1, rel.len(), &path) {
                return Err(Error::Conflict(
                    "The backup was cancelled; nothing was written".into(),
                ));
            }
            entries.push(FileEntry {
                path,
                sha256,
                bytes,
                sqlite,
            });
        }
        let manifest = Manifest {
            trex_version: env!("CARGO_PKG_VERSION").into(),
            schema_version,
            created_at: crate::util::now_rfc3339(),
            master_key_included: with_key,
            files: entries,
        };
        let partial = target.with_extension("partial");
        let f = std::fs::File::create(&partial).map_err(|e| io("cannot create", &partial, e))?;
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
            std::io::BufWriter::with_capacity(1 << 20, f),
            flate2::Compression::new(config.backup.compression_level),
        ));
        let m = serde_json::to_vec_pretty(&manifest).expect("json");
        let mut h = tar::Header::new_gnu();
        h.set_size(m.len() as u64);
        h.set_mode(0o600);
        h.set_cksum();
        tar.append_data(&mut h, MANIFEST, m.as_slice())
            .map_err(|e| io("cannot write", &partial, e))?;
        for e in &manifest.files {
            tar.append_path_with_name(staging.join(&e.path), &e.path)
                .map_err(|x| io("cannot write", &partial, x))?;
        }
        tar.into_inner()
            .and_then(|gz| gz.finish())
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .and_then(|f| f.sync_all())
            .map_err(|e| io("cannot write", &partial, e))?;
        std::fs::rename(&partial, &target).map_err(|e| io("cannot write", &target, e))?;
        let bytes = std::fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
        Ok(Backup {
            file: target.display().to_string(),
            bytes,
            manifest,
        })
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// Takes an online backup as `actor` (`include_master_key` adds `master.key`); `each(done,
/// total, path)` after each file, returning false to stop (the backup is then cancelled and
/// leaves nothing behind).
pub async fn create(
    app: &App,
    actor: &Actor,
    include_master_key: bool,
    out: Option<PathBuf>,
    each: impl FnMut(usize, usize, &str) -> bool + Send + 'static,
) -> Result<Backup> {
    let args = json!({"includeMasterKey": include_master_key, "out": out});
    audited(app, actor, "backup-create", args, async {
        let config = app.config.clone();
        let version = app.store.schema_version().await?;
        tokio::task::spawn_blocking(move || {
            create_blocking(&config, version, include_master_key, out, each)
        })
        .await?
    })
    .await
}

/// The job kind of a backup a tool call asked for (`backup-create`): a row, so a backup that a
/// crash cut short is taken again by the next runtime (a cut-short attempt leaves only its
/// `.partial` file and staging dir, which no later attempt reuses), and a task that follows it
/// is answered from the row.
pub const KIND: &str = "backup";

/// Registers the backup job with the runtime (retried once after a crash).
pub fn register(app: &std::sync::Arc<App>) {
    super::register_as(app, KIND, |app, actor, job, payload| async move {
        let with_key = payload["includeMasterKey"].as_bool().unwrap_or(false);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, usize, String)>();
        let stop = job.clone();
        let each = move |done: usize, total: usize, path: &str| {
            let _ = tx.send((done, total, path.to_string()));
            !stop.is_cancelled()
        };
        let work = create(&app, &actor, with_key, None, each);
        tokio::pin!(work);
        loop {
            tokio::select! {
                r = &mut work => return Ok(serde_json::to_value(r?).expect("a backup is JSON")),
                Some((done, total, path)) = rx.recv() => {
                    job.progress(done as f64, Some(total as f64), Some(&path)).await;
                }
            }
        }
    });
}

/// Queues a backup as `actor` (audited as `backup-create` when it ends, with its outcome);
/// returns the job's id.
pub async fn start(app: &App, actor: &Actor, include_master_key: bool) -> Result<String> {
    let payload = json!({"includeMasterKey": include_master_key});
    super::enqueue_as(app, actor, KIND, payload).await
}

/// Reads the manifest of an archive.
pub fn read_manifest(file: &Path) -> Result<Manifest> {
    let f = std::fs::File::open(file).map_err(|e| io("cannot read", file, e))?;
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut entries = a.entries().map_err(|e| io("cannot read", file, e))?;
    let mut first = entries
        .next()
        .ok_or_else(|| Error::Invalid(format!("{} is an empty archive", file.display())))?
        .map_err(|e| io("cannot read", file, e))?;
    if first
        .path()
        .map(|p| p != Path::new(MANIFEST))
        .unwrap_or(true)
    {
        return Err(Error::Invalid(format!(
            "{} is not a trex backup (no manifest first)",
            file.display()
        )));
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut first, &mut text).map_err(|e| io("cannot read", file, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Invalid(format!("{}: unreadable manifest: {e}", file.display())))
}

/// The backups in the backup dir, newest first.
pub async fn list(app: &App) -> Result<Vec<Backup>> {
    let d = dir(&app.config);
    tokio::task::spawn_blocking(move || -> Result<Vec<Backup>> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(&d) else {
            return Ok(out);
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "gz")
                && let Ok(manifest) = read_manifest(&p)
            {
                let bytes = e.metadata().map(|m| m.len()).unwrap_or(0);
                out.push(Backup {
                    file: p.display().to_string(),
                    bytes,
                    manifest,
                });
            }
        }
        out.sort_by(|a, b| b.manifest.created_at.cmp(&a.manifest.created_at));
        Ok(out)
    })
    .await?
}

/// Deletes the oldest scheduled backups past `keep`.
async fn prune(app: &App, keep: usize) -> Result<usize> {
    let all = list(app).await?;
    let mut n = 0;
    for b in all.iter().skip(keep) {
        if std::fs::remove_file(&b.file).is_ok() {
            n += 1;
        }
    }
    Ok(n)
}

/// The scheduled backup service's name among the node's services.
pub const SCHEDULER: &str = "backup-scheduler";

/// Starts the scheduled backup service (`backup.interval_secs` at start; `cluster-start-service`
/// later): a tracked task that takes a backup every `every` seconds and keeps the newest `keep`;
/// a failure is logged, shown as the service's last error, and tried again next time. A
/// running schedule is replaced.
pub fn start_schedule(app: &std::sync::Arc<App>, every: u64, keep: usize) {
    if let Some(old) = app.services.get(SCHEDULER).and_then(|s| s.stop) {
        old.cancel();
    }
    let stop = app.shutdown.child_token();
    let config = json!({"interval_secs": every, "keep": keep, "dir": dir(&app.config)});
    app.services.started(SCHEDULER, config, Some(stop.clone()));
    let app2 = app.clone();
    app.tasks.spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(every));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let actor = Actor::system(SCHEDULER);
                    match create(&app2, &actor, false, None, |_, _, _| true).await {
                        Ok(b) => {
                            tracing::info!("scheduled backup written: {} ({} bytes)", b.file, b.bytes);
                            app2.services.error(SCHEDULER, None);
                            if let Err(e) = prune(&app2, keep).await {
                                tracing::warn!("pruning old backups: {e}");
                            }
                        }
                        Err(e) => {
                            tracing::error!("scheduled backup failed: {e}");
                            app2.services.error(SCHEDULER, Some(e.to_string()));
                        }
                    }
                }
                _ = stop.cancelled() => break,
            }
        }
    });
}

/// At start: the schedule of `backup.interval_secs`, or the service listed as stopped.
pub fn spawn_schedule(app: &std::sync::Arc<App>) {
    let (every, keep) = (app.config.backup.interval_secs, app.config.backup.keep);
    if every > 0 {
        start_schedule(app, every, keep);
    } else {
        let config = json!({"interval_secs": 0, "keep": keep, "dir": dir(&app.config)});
        app.services.started(SCHEDULER, config, None);
        app.services.set_status(SCHEDULER, "stopped");
    }
}

/// Checks an archive entry's path: relative, without `..`, and a plain file.
fn safe_path(p: &Path) -> Result<PathBuf> {
    if p.to_string_lossy().contains('\\')
        || p.is_absolute()
        || p.components().any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(Error::Invalid(format!(
            "the archive holds an unsafe path {:?}; nothing was restored",
            p.display()
        )));
    }
    Ok(p.to_path_buf())
}

/// Restores archive `file` into `data` (which must hold no store unless `force`): every entry's
/// path and type checked, every checksum compared with the manifest, `PRAGMA integrity_check`
/// on every database, then the files moved in. Nothing is changed when a check fails. Blocking;
/// the caller holds the data dir's lock.
pub fn restore(file: &Path, data: &Path, force: bool) -> Result<Manifest> {
    let manifest = read_manifest(file)?;
    if data.join(crate::store::STORE_FILE).exists() && !force {
        return Err(Error::Conflict(format!(
            "{} already holds a store; restore into an empty directory, or pass --force to replace its files",
            data.display()
        )));
    }
    std::fs::create_dir_all(data).map_err(|e| io("cannot create", data, e))?;
    let staging = data.join(format!(".restore-{}", crate::util::random_hex(6)));
    let result = (|| -> Result<()> {
        std::fs::create_dir_all(&staging).map_err(|e| io("cannot create", &staging, e))?;
        let f = std::fs::File::open(file).map_err(|e| io("cannot read", file, e))?;
        let mut a = tar::Archive::new(flate2::read::GzDecoder::new(f));
        let mut seen = std::collections::HashSet::new();
        for e in a.entries().map_err(|e| io("cannot read", file, e))? {
            let mut e = e.map_err(|e| io("cannot read", file, e))?;
            let p = safe_path(&e.path().map_err(|e| io("cannot read", file, e))?)?;
            if p == Path::new(MANIFEST) {
                continue;
            }
            if e.header().entry_type() != tar::EntryType::Regular {
                return Err(Error::Invalid(format!(
                    "the archive entry {} is not a plain file",
                    p.display()
                )));
            }
            let key = p.to_string_lossy().replace('\\', "/");
            if !manifest.files.iter().any(|m| m.path == key) {
                return Err(Error::Invalid(format!(
                    "the archive entry {key} is not in its manifest"
                )));
            }
            let to = staging.join(&p);
            if let Some(d) = to.parent() {
                std::fs::create_dir_all(d).map_err(|e| io("cannot create", d, e))?;
            }
            let mut out = std::fs::File::create(&to).map_err(|e| io("cannot write", &to, e))?;
            std::io::copy(&mut e, &mut out).map_err(|e| io("cannot write", &to, e))?;
            seen.insert(key);
        }
        for m in &manifest.files {
            safe_path(Path::new(&m.path))?;
            if !seen.contains(&m.path) {
                return Err(Error::Invalid(format!(
                    "the archive lacks {} of its manifest",
                    m.path
                )));
            }
            let p = staging.join(&m.path);
            let (sum, _) = sha256_file(&p)?;
            if sum != m.sha256 {
                return Err(Error::Invalid(format!(
                    "{} does not match its checksum (SHA-256 {sum}, the manifest says {})",
                    m.path, m.sha256
                )));
            }
            if m.sqlite {
                let c = rusqlite_check(&p)?;
                if c != "ok" {
                    return Err(Error::Invalid(format!(
                        "{} fails its integrity check: {c}",
                        m.path
                    )));
                }
            }
        }
        for m in &manifest.files {
            let (from, to) = (staging.join(&m.path), data.join(&m.path));
            if let Some(d) = to.parent() {
                std::fs::create_dir_all(d).map_err(|e| io("cannot create", d, e))?;
            }
            for side in ["-wal", "-shm", "-journal"] {
                let _ = std::fs::remove_file(format!("{}{side}", to.display()));
            }
            std::fs::rename(&from, &to).map_err(|e| io("cannot write", &to, e))?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result.map(|_| manifest)
}

/// `PRAGMA integrity_check` of a database file ("ok" when whole).
fn rusqlite_check(p: &Path) -> Result<String> {
    crate::migrate::runs::integrity(p)
        .map_err(|e| Error::Invalid(format!("{} is not a readable database: {e}", p.display())))
}
