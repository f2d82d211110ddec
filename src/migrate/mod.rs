//! Versioned file migrations (trexsql's `migration-list` / `migration-run`): `V<n>__<name>.sql`
//! files in a target's directory, applied in version order, with the ledger in the target itself
//! (`trex_schema_history`: version, name, SHA-256 checksum, applied_at, duration_ms, applied_by,
//! success), so each file and its ledger row commit in one transaction. This module reads a
//! directory ([`scan`]) and compares it with a ledger ([`statuses`]); [`sqlite`] and
//! [`postgres`] read and write the ledger of each kind of target, with the lock that keeps two
//! runs from applying a file twice. Which targets exist and who may run them is the domain's
//! ([`crate::ops::migrations`]).
//!
//! Rules, fixing trexsql's known bugs: a file that does not match the pattern is listed as
//! `ignored` with the reason, never skipped silently; a duplicate version is an error naming both
//! files; reading the status writes nothing anywhere (a target without a ledger is all
//! `pending`); a checksum mismatch stops a run before anything is applied and names the file and
//! both checksums; a failed file leaves nothing of itself behind and is recorded as `failed`.

pub mod definition;
pub mod postgres;
pub mod runs;
pub mod schema;
pub mod sqlite;

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The ledger table every target keeps.
pub const LEDGER: &str = "trex_schema_history";

/// The ledger table of a target: [`LEDGER`], or for an installed plugin's migrations
/// `trex_plugin_<name>_history` (a plugin may share a database with others and with the
/// database's own migrations, so each keeps its own versions). Plugin names are checked
/// (`[a-z0-9_-]`), and ledgers are always quoted.
pub fn ledger_table(plugin: Option<&str>) -> String {
    match plugin {
        None => LEDGER.to_string(),
        Some(p) => format!("trex_plugin_{p}_history"),
    }
}

/// One migration file.
#[derive(Debug, Clone)]
pub struct File {
    pub version: i64,
    pub name: String,
    /// The file name (`V3__add_email.sql`).
    pub file: String,
    pub sql: String,
    /// SHA-256 of the file's bytes, hex.
    pub checksum: String,
}

impl File {
    /// What happened to this file in a run.
    pub fn outcome(
        &self,
        status: &'static str,
        duration_ms: Option<i64>,
        error: Option<String>,
    ) -> Outcome {
        Outcome {
            version: self.version,
            name: self.name.clone(),
            status,
            duration_ms,
            error,
        }
    }
}

/// A file in the directory that is not a migration, and why.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Ignored {
    pub file: String,
    pub reason: String,
}

/// What a migrations directory holds.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// Sorted by version.
    pub files: Vec<File>,
    pub ignored: Vec<Ignored>,
}

/// One row of a target's ledger.
#[derive(Debug, Clone)]
pub struct LedgerRow {
    pub version: i64,
    pub name: String,
    pub checksum: String,
    pub applied_at: String,
    pub duration_ms: i64,
    pub applied_by: Option<String>,
    pub success: bool,
}

/// The status of one version of a target.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileStatus {
    pub version: i64,
    pub name: String,
    /// `applied`, `pending`, `checksum_mismatch`, `missing_file` (in the ledger, no file) or
    /// `failed` (the last attempt failed; the next run tries it again).
    pub status: &'static str,
    /// SHA-256 of the file, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// SHA-256 the ledger recorded, when it differs from the file's or there is no file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger_checksum: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_by: Option<String>,
}

/// SHA-256 of `bytes`, hex.
pub fn checksum(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Parses `V<n>__<name>.sql`: `Ok((n, name))`, or why the name is not a migration.
fn parse_name(file: &str) -> std::result::Result<(i64, String), String> {
    let Some(stem) = file.strip_suffix(".sql") else {
        return Err("not a .sql file".into());
    };
    let Some(rest) = stem.strip_prefix('V') else {
        return Err("does not start with V<version>__ (e.g. V1__create_users.sql)".into());
    };
    let Some((v, name)) = rest.split_once("__") else {
        return Err("has no __ between the version and the name (V1__create_users.sql)".into());
    };
    let version: i64 = match v.parse() {
        Ok(n) if n > 0 && v.chars().all(|c| c.is_ascii_digit()) => n,
        _ => return Err(format!("version {v:?} is not a whole number above 0")),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err("the name after __ must be letters, digits and _".into());
    }
    Ok((version, name.to_string()))
}

/// Reads a migrations directory. A directory that does not exist holds no files; a duplicate
/// version is an error naming both files.
pub fn scan(dir: &Path) -> Result<Scan> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Scan::default()),
        Err(e) => return Err(Error::io(format!("cannot read {}", dir.display()), e)),
    };
    let mut scan = Scan::default();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("cannot read {}", dir.display()), e))?;
        let file = entry.file_name().to_string_lossy().to_string();
        if file.starts_with('.') {
            continue;
        }
        let path: PathBuf = entry.path();
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        if !meta.is_file() {
            scan.ignored.push(Ignored {
                file,
                reason: "not a regular file".into(),
            });
            continue;
        }
        match parse_name(&file) {
            Err(reason) => scan.ignored.push(Ignored { file, reason }),
            Ok((version, name)) => {
                let bytes = std::fs::read(&path)
                    .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
                let sql = String::from_utf8(bytes.clone()).map_err(|_| {
                    Error::Invalid(format!("migration file {file} is not UTF-8 text"))
                })?;
                scan.files.push(File {
                    version,
                    name,
                    file,
                    checksum: checksum(&bytes),
                    sql,
                });
            }
        }
    }
    scan.files
        .sort_by(|a, b| a.version.cmp(&b.version).then(a.file.cmp(&b.file)));
    if let Some(w) = scan.files.windows(2).find(|w| w[0].version == w[1].version) {
        return Err(Error::Invalid(format!(
            "two migration files have version {} in {}: {} and {}",
            w[0].version,
            dir.display(),
            w[0].file,
            w[1].file
        )));
    }
    scan.ignored.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(scan)
}

/// The status of every version, from the files and the ledger, in version order.
pub fn statuses(scan: &Scan, ledger: &[LedgerRow]) -> Vec<FileStatus> {
    let mut out: Vec<FileStatus> = scan
        .files
        .iter()
        .map(|f| {
            let row = ledger.iter().find(|r| r.version == f.version);
            let status = match row {
                None => "pending",
                Some(r) if !r.success => "failed",
                Some(r) if r.checksum != f.checksum => "checksum_mismatch",
                Some(_) => "applied",
            };
            FileStatus {
                version: f.version,
                name: f.name.clone(),
                status,
                checksum: Some(f.checksum.clone()),
                ledger_checksum: row
                    .filter(|r| r.checksum != f.checksum)
                    .map(|r| r.checksum.clone()),
                applied_at: row.filter(|r| r.success).map(|r| r.applied_at.clone()),
                duration_ms: row.map(|r| r.duration_ms),
                applied_by: row.and_then(|r| r.applied_by.clone()),
            }
        })
        .collect();
    for r in ledger {
        if !scan.files.iter().any(|f| f.version == r.version) && r.success {
            out.push(FileStatus {
                version: r.version,
                name: r.name.clone(),
                status: "missing_file",
                checksum: None,
                ledger_checksum: Some(r.checksum.clone()),
                applied_at: Some(r.applied_at.clone()),
                duration_ms: Some(r.duration_ms),
                applied_by: r.applied_by.clone(),
            });
        }
    }
    out.sort_by_key(|s| s.version);
    out
}

/// Refuses a run over a ledger that disagrees with the files: the first checksum mismatch, named
/// with both checksums.
pub fn verify(scan: &Scan, ledger: &[LedgerRow]) -> Result<()> {
    for f in &scan.files {
        if let Some(r) = ledger
            .iter()
            .find(|r| r.version == f.version && r.success && r.checksum != f.checksum)
        {
            return Err(Error::Conflict(format!(
                "Checksum mismatch for migration {}: the file's SHA-256 is {} but {} was applied with {}; \
                 restore the file as it was applied (or write the change as a new version)",
                f.file, f.checksum, r.name, r.checksum
            )));
        }
    }
    Ok(())
}

/// The files a run would apply: pending or failed ones up to `to_version`, in order.
pub fn pending<'a>(scan: &'a Scan, ledger: &[LedgerRow], to_version: Option<i64>) -> Vec<&'a File> {
    scan.files
        .iter()
        .filter(|f| to_version.is_none_or(|t| f.version <= t))
        .filter(|f| !ledger.iter().any(|r| r.version == f.version && r.success))
        .collect()
}

/// Words that start a statement controlling the transaction the runner owns.
const TRANSACTION_WORDS: &[&str] = &[
    "BEGIN",
    "COMMIT",
    "END",
    "ROLLBACK",
    "SAVEPOINT",
    "RELEASE",
    "ABORT",
    "START",
];

/// The first word of a statement, comments and white space skipped, upper-cased.
fn first_word(stmt: &str) -> String {
    let mut s = stmt.trim_start();
    loop {
        if let Some(rest) = s.strip_prefix("--") {
            s = rest.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(rest) = s.strip_prefix("/*") {
            s = rest.split_once("*/").map_or("", |(_, r)| r).trim_start();
        } else {
            break;
        }
    }
    s.chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase()
}

/// [`check_transaction_control`] for SQLite statements already cut apart.
pub fn check_statements(statements: &[&str]) -> std::result::Result<(), String> {
    match statements
        .iter()
        .map(|st| first_word(st))
        .find(|w| TRANSACTION_WORDS.contains(&w.as_str()))
    {
        Some(w) => Err(transaction_refusal(&w)),
        None => Ok(()),
    }
}

fn transaction_refusal(w: &str) -> String {
    format!(
        "contains {w}: the runner wraps the change in its own transaction; leave out BEGIN, COMMIT, ROLLBACK and SAVEPOINT"
    )
}

/// Refuses SQL that would end or split the transaction the runner wraps it in (BEGIN, COMMIT,
/// ROLLBACK, SAVEPOINT, …): a file or `up` that commits halfway would leave a target half
/// changed, and a test that commits would change it for real. SQLite statements are cut by
/// SQLite's own tokenizer; PostgreSQL text is parsed (when sqlparser cannot read it, statements
/// that start with BEGIN, COMMIT, ROLLBACK or START are refused).
pub fn check_transaction_control(sql: &str, postgres: bool) -> std::result::Result<(), String> {
    let bad = |w: &str| Err(transaction_refusal(w));
    if !postgres {
        return check_statements(&runs::statements(sql));
    }
    use sqlparser::ast::Statement as S;
    match sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::PostgreSqlDialect {}, sql) {
        Ok(stmts) => {
            for st in stmts {
                if matches!(
                    st,
                    S::StartTransaction { .. }
                        | S::Commit { .. }
                        | S::Rollback { .. }
                        | S::Savepoint { .. }
                        | S::ReleaseSavepoint { .. }
                ) {
                    return bad(&first_word(&st.to_string()));
                }
            }
            Ok(())
        }
        Err(_) => {
            for st in sql.split(';') {
                let w = first_word(st);
                if ["BEGIN", "COMMIT", "ROLLBACK", "START"].contains(&w.as_str()) {
                    return bad(&w);
                }
            }
            Ok(())
        }
    }
}

/// What happened to one file in a run.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub version: i64,
    pub name: String,
    /// `applied`, `skipped` (another run applied it first), `would_apply` (dry run) or `failed`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_parsed_strictly() {
        assert_eq!(parse_name("V1__init.sql").unwrap(), (1, "init".into()));
        assert_eq!(
            parse_name("V20__add_x_2.sql").unwrap(),
            (20, "add_x_2".into())
        );
        for bad in [
            "001_init.sql",
            "V1_init.sql",
            "v1__init.sql",
            "V0__init.sql",
            "V-1__x.sql",
            "V1__.sql",
            "V1__a-b.sql",
            "V1__init.txt",
            "V+1__x.sql",
        ] {
            assert!(parse_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scan_lists_ignored_files_and_refuses_duplicate_versions() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("V2__b.sql"), "SELECT 2;").unwrap();
        std::fs::write(d.path().join("V1__a.sql"), "SELECT 1;").unwrap();
        std::fs::write(d.path().join("001_old.sql"), "SELECT 0;").unwrap();
        std::fs::write(d.path().join("README.md"), "hi").unwrap();
        let s = scan(d.path()).unwrap();
        assert_eq!(
            s.files.iter().map(|f| f.version).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(s.ignored.len(), 2);
        assert!(s.ignored.iter().any(|i| i.file == "001_old.sql"));
        std::fs::write(d.path().join("V2__again.sql"), "SELECT 3;").unwrap();
        let e = scan(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("V2__again.sql") && e.contains("V2__b.sql"),
            "{e}"
        );
        assert!(scan(&d.path().join("nope")).unwrap().files.is_empty());
    }
}
