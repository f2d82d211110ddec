//! Where SQLite databases may live: `<data_dir>/databases/` and the directories listed in
//! `engine.sqlite_dirs`. A registered sqlite database's path is resolved (relative paths under
//! `<data_dir>/databases/`), its directory canonicalized (symlinks followed) and checked to lie
//! inside an allowed root; `..` components and the control store itself are refused.

use std::path::{Component, Path, PathBuf};

use crate::config::Config;
use crate::error::{Error, Result};

/// `<data_dir>/databases`.
pub fn databases_dir(c: &Config) -> PathBuf {
    c.store.data_dir.join("databases")
}

/// The trexdb main data file.
pub fn main_file(c: &Config) -> PathBuf {
    c.store.data_dir.join(&c.engine.main_file)
}

fn canon_dir(p: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(p).ok()
}

/// Resolves and checks the path of a sqlite database (`field` names the argument in messages).
/// Creates `<data_dir>/databases` when missing.
pub fn resolve_sqlite(c: &Config, raw: &str, field: &str) -> Result<PathBuf> {
    let bad = |why: &str| Error::Invalid(format!("`{field}` {why}"));
    if raw.trim().is_empty() {
        return Err(bad("must name a file"));
    }
    if raw.contains('\0') || raw.contains('?') || raw.contains('#') || raw.starts_with("file:") {
        return Err(bad("must be a plain file path (no URI, `?` or `#`)"));
    }
    let p = Path::new(raw);
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(bad("must not contain `..`"));
    }
    if raw.ends_with('/') || p.file_name().is_none() || raw == "." || raw.ends_with("/.") {
        return Err(bad("must name a file, not a directory"));
    }
    let dbs = databases_dir(c);
    std::fs::create_dir_all(&dbs)
        .map_err(|e| Error::io(format!("cannot create {}", dbs.display()), e))?;
    let full = if p.is_absolute() {
        p.to_path_buf()
    } else {
        dbs.join(p)
    };
    let name = full
        .file_name()
        .ok_or_else(|| bad("must name a file"))?
        .to_owned();
    let parent = full.parent().ok_or_else(|| bad("must name a file"))?;
    let parent = canon_dir(parent).ok_or_else(|| bad("names a directory that does not exist"))?;
    let resolved = parent.join(&name);
    let mut roots: Vec<PathBuf> = vec![canon_dir(&dbs).unwrap_or(dbs)];
    roots.extend(c.engine.sqlite_dirs.iter().filter_map(|d| canon_dir(d)));
    if !roots.iter().any(|r| resolved.starts_with(r)) {
        return Err(bad(&format!(
            "is outside the allowed directories ({}; add others with engine.sqlite_dirs)",
            databases_dir(c).display()
        )));
    }
    if let Ok(real) = std::fs::canonicalize(&resolved) {
        // the file itself may be a symlink out of the allowed roots
        if !roots.iter().any(|r| real.starts_with(r)) {
            return Err(bad("is a link to a file outside the allowed directories"));
        }
        let store = canon_dir(&c.store.data_dir).map(|d| d.join(crate::store::STORE_FILE));
        if store.as_deref() == Some(real.as_path()) {
            return Err(bad("must not be the control store"));
        }
    }
    Ok(resolved)
}

/// `<data_dir>/migrations`: where migration directories live (`trexdb/` for trexdb's own).
pub fn migrations_dir(c: &Config) -> PathBuf {
    c.store.data_dir.join("migrations")
}

/// Resolves and checks a database's `migrationsDir`: relative paths live under
/// `<data_dir>/migrations/`; absolute ones must be inside it or inside a directory of
/// `engine.sqlite_dirs`; `..` is refused, and so is a link out of those roots. The directory need
/// not exist yet (it then holds no migrations).
pub fn resolve_migrations_dir(c: &Config, raw: &str, field: &str) -> Result<PathBuf> {
    let bad = |why: &str| Error::Invalid(format!("`{field}` {why}"));
    if raw.trim().is_empty() || raw.contains('\0') {
        return Err(bad("must name a directory"));
    }
    let p = Path::new(raw);
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(bad("must not contain `..`"));
    }
    let base = migrations_dir(c);
    let full = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    // the deepest part of the path that exists, with links resolved
    let mut known = full.as_path();
    let mut rest = Vec::new();
    let real = loop {
        if let Ok(r) = std::fs::canonicalize(known) {
            break r;
        }
        match (known.parent(), known.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                known = parent;
            }
            _ => return Err(bad("names a directory that cannot be resolved")),
        }
    };
    let resolved = rest.iter().rev().fold(real, |acc, n| acc.join(n));
    let mut roots: Vec<PathBuf> = vec![canon_dir(&base).unwrap_or(base.clone())];
    roots.extend(c.engine.sqlite_dirs.iter().filter_map(|d| canon_dir(d)));
    if p.is_relative() && canon_dir(&base).is_none() {
        // <data_dir>/migrations does not exist yet: a relative path is inside it by construction
        return Ok(full);
    }
    if !roots.iter().any(|r| resolved.starts_with(r)) {
        return Err(bad(&format!(
            "is outside the allowed directories ({}; add others with engine.sqlite_dirs)",
            base.display()
        )));
    }
    if resolved.exists() && !resolved.is_dir() {
        return Err(bad("names a file, not a directory"));
    }
    Ok(resolved)
}

/// The first bytes of every SQLite database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Checks that a resolved path can hold a SQLite database: not a directory, and — when the file
/// exists and is not empty — an SQLite file by its header (a missing or empty file is a new,
/// empty database). `field` names the argument in messages.
pub fn check_sqlite_file(p: &Path, field: &str) -> Result<()> {
    let bad = |why: &str| Error::Invalid(format!("`{field}` {why}"));
    match std::fs::metadata(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(bad(&format!("cannot be read ({e})"))),
        Ok(m) if m.is_dir() => Err(bad("names a directory, not a database file")),
        Ok(m) if !m.is_file() => Err(bad("is not a regular file")),
        Ok(m) if m.len() == 0 => Ok(()),
        Ok(_) => {
            use std::io::Read;
            let mut head = [0u8; 16];
            let n = std::fs::File::open(p)
                .and_then(|mut f| f.read(&mut head))
                .map_err(|e| bad(&format!("cannot be read ({e})")))?;
            if n == 16 && &head == SQLITE_HEADER {
                Ok(())
            } else {
                Err(bad("is not an SQLite database file"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path) -> Config {
        let mut c = Config::default();
        c.store.data_dir = dir.to_path_buf();
        c
    }

    #[test]
    fn relative_paths_resolve_under_databases_and_escapes_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let c = cfg(d.path());
        let p = resolve_sqlite(&c, "sales.db", "databaseName").unwrap();
        assert!(p.ends_with("databases/sales.db"));
        assert!(resolve_sqlite(&c, "../trex.db", "databaseName").is_err());
        assert!(resolve_sqlite(&c, "/etc/passwd", "databaseName").is_err());
        assert!(
            resolve_sqlite(
                &c,
                d.path().join("trex.db").to_str().unwrap(),
                "databaseName"
            )
            .is_err()
        );
        assert!(resolve_sqlite(&c, "file:x.db?mode=rwc", "databaseName").is_err());
        for dir in [".", "sub/", "sub/."] {
            assert!(resolve_sqlite(&c, dir, "databaseName").is_err(), "{dir}");
        }
        std::fs::create_dir(d.path().join("databases/adir")).unwrap();
        let p = resolve_sqlite(&c, "adir", "databaseName").unwrap();
        assert!(check_sqlite_file(&p, "databaseName").is_err());
        std::fs::write(d.path().join("databases/notes.txt"), "hello, not sqlite").unwrap();
        let p = resolve_sqlite(&c, "notes.txt", "databaseName").unwrap();
        assert!(check_sqlite_file(&p, "databaseName").is_err());
        let p = resolve_sqlite(&c, "new.db", "databaseName").unwrap();
        assert!(check_sqlite_file(&p, "databaseName").is_ok());
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc", d.path().join("databases/etc")).unwrap();
            assert!(resolve_sqlite(&c, "etc/passwd", "databaseName").is_err());
        }
    }
}
