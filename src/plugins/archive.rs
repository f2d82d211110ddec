//! Bringing a plugin's files in, every entry checked before it is written: from a `.tgz` /
//! `.tar.gz` (an `npm pack` tarball, whose files sit under `package/`) or from a directory.
//! Refused: absolute paths, `..` components, hard links, devices and FIFOs, symbolic links whose
//! target is absolute or resolves outside the plugin (checked per link as it comes, then every
//! link resolved for real once all are in, so chains of links cannot leave either), links that
//! lead nowhere, a file written through a link, more than
//! [`MAX_ENTRIES`] entries, and more than the size limit in total (counted as bytes are written,
//! not as headers claim). The caller unpacks into a fresh staging directory and removes it on
//! any error, so a refused package leaves nothing behind.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// Most entries a plugin may hold.
pub const MAX_ENTRIES: usize = 10_000;

fn refuse(why: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("`packageSpec` {why}"))
}

fn io(what: &str, p: &Path, e: std::io::Error) -> Error {
    Error::io(format!("{what} {}", p.display()), e)
}

/// A checked relative path: only normal components (`./` dropped), no `..`, not absolute.
fn checked(raw: &str) -> Result<PathBuf> {
    if raw.starts_with('/') || raw.starts_with('\\') || Path::new(raw).is_absolute() {
        return Err(refuse(format!("holds an absolute path ({raw:?})")));
    }
    let mut out = PathBuf::new();
    for c in Path::new(raw).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(refuse(format!("holds a path with `..` ({raw:?})")));
            }
            _ => return Err(refuse(format!("holds an absolute path ({raw:?})"))),
        }
    }
    Ok(out)
}

/// True when a link at `entry` (relative to the root) pointing at `target` stays inside the
/// root, resolved lexically.
fn link_stays_inside(entry: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: Vec<&std::ffi::OsStr> = entry
        .parent()
        .map(|p| {
            p.components()
                .filter_map(|c| match c {
                    Component::Normal(n) => Some(n),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    for c in target.components() {
        match c {
            Component::Normal(n) => depth.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

/// Refuses to write through a link: every existing ancestor of `rel` under `root` must be a real
/// directory.
fn no_link_on_the_way(root: &Path, rel: &Path) -> Result<()> {
    let mut p = root.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            p.push(c);
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(refuse(format!("writes through a link ({})", rel.display())));
                }
                Ok(m) if !m.is_dir() => {
                    return Err(refuse(format!(
                        "holds a file where a directory is ({})",
                        rel.display()
                    )));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Counts what has been written against the limits.
struct Budget {
    max_bytes: u64,
    bytes: u64,
    entries: usize,
}

impl Budget {
    fn entry(&mut self) -> Result<()> {
        self.entries += 1;
        if self.entries > MAX_ENTRIES {
            return Err(refuse(format!("holds more than {MAX_ENTRIES} entries")));
        }
        Ok(())
    }

    /// Copies `from` into a new file at `to`, counting bytes; `exec` keeps it executable.
    fn write(&mut self, from: &mut impl Read, to: &Path, exec: bool) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(d) = to.parent() {
            std::fs::create_dir_all(d).map_err(|e| io("cannot create", d, e))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if exec { 0o755 } else { 0o644 })
            .open(to)
            .map_err(|e| io("cannot create", to, e))?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = from
                .read(&mut buf)
                .map_err(|e| io("cannot read the package for", to, e))?;
            if n == 0 {
                break;
            }
            self.bytes += n as u64;
            if self.bytes > self.max_bytes {
                return Err(refuse(format!(
                    "unpacks to more than {} MiB (plugins.max_unpacked_mb)",
                    self.max_bytes / (1024 * 1024)
                )));
            }
            f.write_all(&buf[..n])
                .map_err(|e| io("cannot write", to, e))?;
        }
        Ok(())
    }
}

/// A reader that fails once more than `left` bytes have come through: the decompressed stream
/// is bounded as a whole, tar's own header records (PAX, GNU long names, which it reads into
/// memory) included.
struct Bounded<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self.left.checked_sub(n as u64).ok_or_else(|| {
            std::io::Error::other("the archive unpacks to more than plugins.max_unpacked_mb")
        })?;
        Ok(n)
    }
}

/// Refuses a symbolic link anywhere under `root` that does not resolve to a place inside it
/// (chains of links each fine on its own included) or that leads nowhere.
fn check_links(root: &Path) -> Result<()> {
    let real_root = root
        .canonicalize()
        .map_err(|e| io("cannot read", root, e))?;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| io("cannot read", &d, e))? {
            let e = e.map_err(|x| io("cannot read", &d, x))?;
            let t = e.file_type().map_err(|x| io("cannot read", &e.path(), x))?;
            let rel = e
                .path()
                .strip_prefix(root)
                .unwrap_or(&e.path())
                .to_path_buf();
            if t.is_symlink() {
                match e.path().canonicalize() {
                    Ok(real) if real.starts_with(&real_root) => {}
                    Ok(_) => {
                        return Err(refuse(format!(
                            "holds a link that leaves the plugin ({})",
                            rel.display()
                        )));
                    }
                    Err(_) => {
                        return Err(refuse(format!(
                            "holds a link that leads nowhere ({})",
                            rel.display()
                        )));
                    }
                }
            } else if t.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok(())
}

/// Unpacks a gzip'd tarball into `dest` (a new, empty directory); answers the package root:
/// `dest/package` for an `npm pack` tarball, else `dest`.
pub fn unpack(archive: &Path, dest: &Path, max_bytes: u64) -> Result<PathBuf> {
    let f = std::fs::File::open(archive).map_err(|e| io("cannot open", archive, e))?;
    // the whole tar stream: the files' bytes, their headers and padding
    let stream = Bounded {
        inner: flate2::read::GzDecoder::new(std::io::BufReader::new(f)),
        left: max_bytes + (MAX_ENTRIES as u64) * 1024 + (1 << 20),
    };
    let mut tar = tar::Archive::new(stream);
    let mut budget = Budget {
        max_bytes,
        bytes: 0,
        entries: 0,
    };
    let entries = tar
        .entries()
        .map_err(|_| refuse("is not a gzip'd tar archive"))?;
    for entry in entries {
        let mut e = entry.map_err(|e| refuse(format!("is not a readable tar.gz ({e})")))?;
        if e.header().entry_size().unwrap_or(0) > max_bytes {
            return Err(refuse(format!(
                "unpacks to more than {} MiB (plugins.max_unpacked_mb)",
                max_bytes / (1024 * 1024)
            )));
        }
        budget.entry()?;
        let raw = String::from_utf8(e.path_bytes().into_owned())
            .map_err(|_| refuse("holds a path that is not UTF-8"))?;
        let rel = checked(&raw)?;
        if rel.as_os_str().is_empty() {
            continue; // `./` itself
        }
        no_link_on_the_way(dest, &rel)?;
        let to = dest.join(&rel);
        let kind = e.header().entry_type();
        use tar::EntryType as T;
        match kind {
            T::Directory => {
                std::fs::create_dir_all(&to).map_err(|e| io("cannot create", &to, e))?;
            }
            T::Regular | T::Continuous => {
                let exec = e.header().mode().map(|m| m & 0o111 != 0).unwrap_or(false);
                budget.write(&mut e, &to, exec)?;
            }
            T::Symlink => {
                let target = e
                    .link_name()
                    .ok()
                    .flatten()
                    .ok_or_else(|| refuse(format!("holds a link without a target ({raw:?})")))?
                    .into_owned();
                if !link_stays_inside(&rel, &target) {
                    return Err(refuse(format!(
                        "holds a link that leaves the plugin ({raw:?} → {})",
                        target.display()
                    )));
                }
                if let Some(d) = to.parent() {
                    std::fs::create_dir_all(d).map_err(|e| io("cannot create", d, e))?;
                }
                std::os::unix::fs::symlink(&target, &to)
                    .map_err(|e| io("cannot create", &to, e))?;
            }
            T::Link => {
                return Err(refuse(format!(
                    "holds a hard link ({raw:?}); hard links are not allowed"
                )));
            }
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => {}
            _ => {
                return Err(refuse(format!(
                    "holds a device, FIFO or other special entry ({raw:?})"
                )));
            }
        }
    }
    let npm = dest.join("package");
    Ok(
        if !dest.join("package.json").exists() && npm.join("package.json").exists() {
            npm
        } else {
            dest.to_path_buf()
        },
    )
}

/// Copies a plugin directory into `dest` (a new, empty directory) with the same checks as
/// [`unpack`]; `.git` and `node_modules` are left out.
pub fn copy_dir(src: &Path, dest: &Path, max_bytes: u64) -> Result<()> {
    let mut budget = Budget {
        max_bytes,
        bytes: 0,
        entries: 0,
    };
    let mut stack = vec![PathBuf::new()];
    while let Some(rel_dir) = stack.pop() {
        let dir = src.join(&rel_dir);
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| io("cannot read", &dir, e))?
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| io("cannot read", &dir, e))?;
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let name = e.file_name();
            if rel_dir.as_os_str().is_empty() && (name == ".git" || name == "node_modules") {
                continue;
            }
            budget.entry()?;
            let rel = rel_dir.join(&name);
            let to = dest.join(&rel);
            let t = e.file_type().map_err(|x| io("cannot read", &e.path(), x))?;
            if t.is_symlink() {
                let target =
                    std::fs::read_link(e.path()).map_err(|x| io("cannot read", &e.path(), x))?;
                if !link_stays_inside(&rel, &target) {
                    return Err(refuse(format!(
                        "holds a link that leaves the plugin ({} → {})",
                        rel.display(),
                        target.display()
                    )));
                }
                std::os::unix::fs::symlink(&target, &to)
                    .map_err(|x| io("cannot create", &to, x))?;
            } else if t.is_dir() {
                std::fs::create_dir_all(&to).map_err(|x| io("cannot create", &to, x))?;
                stack.push(rel);
            } else if t.is_file() {
                use std::os::unix::fs::PermissionsExt;
                let exec = e
                    .metadata()
                    .map(|m| m.permissions().mode() & 0o111 != 0)
                    .unwrap_or(false);
                let mut f =
                    std::fs::File::open(e.path()).map_err(|x| io("cannot read", &e.path(), x))?;
                budget.write(&mut f, &to, exec)?;
            } else {
                return Err(refuse(format!(
                    "holds a device, FIFO or socket ({})",
                    rel.display()
                )));
            }
        }
    }
    check_links(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links() {
        assert!(link_stays_inside(Path::new("a/b"), Path::new("c")));
        assert!(link_stays_inside(Path::new("a/b"), Path::new("../c")));
        assert!(!link_stays_inside(Path::new("a/b"), Path::new("../../c")));
        assert!(!link_stays_inside(Path::new("b"), Path::new("/etc/passwd")));
    }

    #[test]
    fn paths() {
        assert!(checked("../x").is_err());
        assert!(checked("a/../../x").is_err());
        assert!(checked("/etc/x").is_err());
        assert_eq!(checked("./package/a").unwrap(), PathBuf::from("package/a"));
    }
}
