//! API key format: `trex_` followed by 48 lowercase hex characters (24 random bytes). Stored as
//! the SHA-256 hex of the whole key plus its first 13 characters as a display prefix.

use sha2::{Digest, Sha256};

use crate::util::random_hex;

/// The fixed start of every key.
pub const KEY_PREFIX: &str = "trex_";
/// Length of the stored display prefix.
pub const PREFIX_LEN: usize = 13;

/// A fresh key from the OS CSPRNG.
pub fn generate() -> String {
    format!("{KEY_PREFIX}{}", random_hex(24))
}

/// SHA-256 hex of the whole key (every request's key is hashed: encoded into a buffer on the
/// stack, not through `hex::encode`'s per-character iterator).
pub fn hash(key: &str) -> String {
    let mut out = [0u8; 64];
    hex::encode_to_slice(Sha256::digest(key.as_bytes()), &mut out).expect("64 = 2 × 32");
    String::from_utf8_lossy(&out).into_owned()
}

/// The display prefix (`trex_` + 8 hex).
pub fn prefix(key: &str) -> String {
    key.chars().take(PREFIX_LEN).collect()
}

/// True for `trex_` + exactly 48 lowercase hex characters.
pub fn well_formed(key: &str) -> bool {
    key.strip_prefix(KEY_PREFIX).is_some_and(|h| {
        h.len() == 48
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Extracts the key from an `Authorization` header value (`Bearer <key>`, scheme case-insensitive).
pub fn from_bearer(header: &str) -> Option<&str> {
    let (scheme, rest) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let key = rest.trim();
    well_formed(key).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_well_formed_and_distinct() {
        let a = generate();
        let b = generate();
        assert!(well_formed(&a), "{a}");
        assert_ne!(a, b);
        assert_eq!(prefix(&a).len(), 13);
        assert_eq!(hash(&a).len(), 64);
        // the stored form: lower-case hex of SHA-256 (keys stored before stay valid)
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn bearer_parsing() {
        let k = generate();
        assert_eq!(from_bearer(&format!("Bearer {k}")), Some(k.as_str()));
        assert_eq!(from_bearer(&format!("bearer {k}")), Some(k.as_str()));
        assert_eq!(from_bearer(&format!("Basic {k}")), None);
        assert_eq!(from_bearer("Bearer trex_123"), None);
        assert_eq!(from_bearer(&format!("Bearer {}", k.to_uppercase())), None);
    }
}
