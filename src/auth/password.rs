//! Password hashing with argon2id (default parameters, random salt). CPU-heavy: call from a
//! blocking context.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Argon2, PasswordHash};

use crate::error::{Error, Result};

/// Shortest password accepted.
pub const MIN_LEN: usize = 8;

/// Checks the password policy; the message names the field.
pub fn validate(pw: &str) -> Result<()> {
    if pw.chars().count() < MIN_LEN {
        return Err(Error::Invalid(format!(
            "`password` must be at least {MIN_LEN} characters"
        )));
    }
    if pw.len() > 1024 {
        return Err(Error::Invalid(
            "`password` must be at most 1024 bytes".into(),
        ));
    }
    Ok(())
}

/// An argon2id PHC string for `pw`.
pub fn hash(pw: &str) -> Result<String> {
    let h: PasswordHash = Argon2::default()
        .hash_password(pw.as_bytes())
        .map_err(|_| Error::Hash)?;
    Ok(h.to_string())
}

/// True when `pw` matches the PHC string.
pub fn verify(pw: &str, phc: &str) -> bool {
    Argon2::default()
        .verify_password(pw.as_bytes(), phc)
        .is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hash_verifies_and_uses_argon2id() {
        let h = super::hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(super::verify("correct horse", &h));
        assert!(!super::verify("wrong horse", &h));
    }
}
