//! Sealing secrets at rest (SSO and app client secrets, later database passwords): AES-256-GCM
//! with a master key from `TREX_MASTER_KEY` (64 hex characters) or the 0600 file
//! `<data_dir>/master.key`, created on first use. Each sealed value is bound to where it is
//! stored (associated data such as `sso_providers:google:client_secret`), so a ciphertext copied
//! to another row does not open. Format: `v1:` + hex(12-byte nonce ‖ ciphertext ‖ tag).

use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use crate::error::{Error, Result};
use crate::util::random_hex;

/// File name of the master key inside the data dir.
pub const KEY_FILE: &str = "master.key";
/// Environment variable that overrides the key file.
pub const KEY_ENV: &str = "TREX_MASTER_KEY";

/// The master key.
#[derive(Clone)]
pub struct MasterKey {
    cipher: Aes256Gcm,
    /// Where it came from, for messages (`TREX_MASTER_KEY` or the file path).
    pub source: String,
    /// True when this load wrote a new key file (there was none).
    pub created: bool,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.source)
    }
}

fn from_hex(hex_key: &str, source: &str) -> Result<MasterKey> {
    let bytes = hex::decode(hex_key.trim())
        .ok()
        .filter(|b| b.len() == 32)
        .ok_or_else(|| {
            Error::Config(format!(
                "{source} must hold 64 hex characters (a 256-bit key)"
            ))
        })?;
    let cipher = Aes256Gcm::new_from_slice(&bytes)
        .map_err(|_| Error::Config(format!("{source}: bad key")))?;
    Ok(MasterKey {
        cipher,
        source: source.to_string(),
        created: false,
    })
}

/// Path of the key file for a data dir.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEY_FILE)
}

impl MasterKey {
    /// The key from `env` (the value of `TREX_MASTER_KEY`, if set), else from the key file; when
    /// neither exists and `may_create` is true, a new key file is written with mode 0600.
    pub fn load(data_dir: &Path, env: Option<String>, may_create: bool) -> Result<MasterKey> {
        if let Some(v) = env {
            return from_hex(&v, KEY_ENV);
        }
        let path = key_path(data_dir);
        let shown = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => from_hex(&text, &shown),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && may_create => {
                let hex_key = random_hex(32);
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let mut f = opts
                    .open(&path)
                    .map_err(|e| Error::io(format!("cannot create {shown}"), e))?;
                writeln!(f, "{hex_key}")
                    .map_err(|e| Error::io(format!("cannot write {shown}"), e))?;
                tracing::info!(
                    "created master key file {shown} (mode 0600); back it up with the data dir"
                );
                let mut k = from_hex(&hex_key, &shown)?;
                k.created = true;
                Ok(k)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Config(format!(
                "the master key is missing: {shown} does not exist and {KEY_ENV} is not set, but the \
                 store holds sealed secrets (SSO and app client secrets, database passwords). Restore \
                 the key file (or set {KEY_ENV}); or, to give those secrets up, run \
                 `trex master-key reset --data-dir {}`, which drops them and makes a new key",
                data_dir.display()
            ))),
            Err(e) => Err(Error::io(format!("cannot read {shown}"), e)),
        }
    }

    /// A key from raw hex (tests).
    pub fn from_hex(hex_key: &str) -> Result<MasterKey> {
        from_hex(hex_key, "key")
    }

    /// A new random key that is not written anywhere yet, and its hex.
    pub fn generate() -> (MasterKey, String) {
        let hex_key = random_hex(32);
        (from_hex(&hex_key, "new key").expect("64 hex"), hex_key)
    }

    /// Seals `plain`, bound to `aad` (where the value is stored).
    pub fn seal(&self, plain: &str, aad: &str) -> String {
        let nonce_hex = random_hex(12);
        let nonce_bytes = hex::decode(&nonce_hex).expect("hex");
        let nonce = Nonce::try_from(&nonce_bytes[..]).expect("12 bytes");
        let ct = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM sealing does not fail for small inputs");
        format!("v1:{nonce_hex}{}", hex::encode(ct))
    }

    /// Opens a value made by [`seal`](Self::seal) with the same `aad`.
    pub fn open(&self, sealed: &str, aad: &str) -> Result<String> {
        let bad = || Error::Other("a sealed secret could not be opened (wrong master key?)".into());
        let raw = hex::decode(sealed.strip_prefix("v1:").ok_or_else(bad)?).map_err(|_| bad())?;
        if raw.len() < 12 + 16 {
            return Err(bad());
        }
        let nonce = Nonce::try_from(&raw[..12]).map_err(|_| bad())?;
        let plain = self
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &raw[12..],
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| bad())?;
        String::from_utf8(plain).map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_bound_to_aad() {
        let k = MasterKey::from_hex(&random_hex(32)).unwrap();
        let s = k.seal("hunter2", "sso_providers:google:client_secret");
        assert!(s.starts_with("v1:") && !s.contains("hunter2"));
        assert_eq!(
            k.open(&s, "sso_providers:google:client_secret").unwrap(),
            "hunter2"
        );
        assert!(k.open(&s, "sso_providers:github:client_secret").is_err());
        let other = MasterKey::from_hex(&random_hex(32)).unwrap();
        assert!(
            other
                .open(&s, "sso_providers:google:client_secret")
                .is_err()
        );
        assert_ne!(k.seal("x", "a"), k.seal("x", "a"), "nonces differ");
    }

    #[test]
    fn key_file_is_created_0600_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = MasterKey::load(dir.path(), None, true).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(key_path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let b = MasterKey::load(dir.path(), None, false).unwrap();
        assert_eq!(b.open(&a.seal("s", "x"), "x").unwrap(), "s");
        assert!(MasterKey::load(dir.path(), Some("nothex".into()), false).is_err());
        let empty = tempfile::tempdir().unwrap();
        assert!(MasterKey::load(empty.path(), None, false).is_err());
    }
}
