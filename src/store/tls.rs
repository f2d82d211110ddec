//! How the control store reaches PostgreSQL: in the clear when the URL says `sslmode=disable`,
//! else through rustls — `sslmode=prefer` (the default) falls back to plain text only when the
//! server offers no TLS at all, `require` refuses to. The server's certificate is always checked:
//! against the Mozilla roots (webpki-roots), or, as libpq does with `sslrootcert=<file>` in the
//! URL, against the PEM certificates of that file only (a private CA, a self-signed server).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use postgres::config::SslMode;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::error::{Error, Result};

/// Splits libpq's `sslrootcert` off a connection string (URL or `key=value` form), which the
/// `postgres` parser does not know; returns the rest and the file.
pub fn split_root_cert(url: &str) -> Result<(String, Option<PathBuf>)> {
    if !url.contains("sslrootcert") {
        // left exactly as written (multi-host URLs are the `postgres` parser's to read)
        return Ok((url.to_owned(), None));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let mut u = url::Url::parse(url).map_err(|e| Error::Config(format!("store.url: {e}")))?;
        let mut root = None;
        let kept: Vec<(String, String)> = u
            .query_pairs()
            .filter_map(|(k, v)| {
                if k == "sslrootcert" {
                    root = Some(PathBuf::from(v.as_ref()));
                    None
                } else {
                    Some((k.into_owned(), v.into_owned()))
                }
            })
            .collect();
        if root.is_some() {
            if kept.is_empty() {
                u.set_query(None);
            } else {
                u.query_pairs_mut().clear().extend_pairs(kept);
            }
        }
        return Ok((u.to_string(), root));
    }
    let mut root = None;
    let kept: Vec<&str> = url
        .split_whitespace()
        .filter(|kv| match kv.strip_prefix("sslrootcert=") {
            Some(v) => {
                root = Some(PathBuf::from(v));
                false
            }
            None => true,
        })
        .collect();
    Ok((kept.join(" "), root))
}

/// The roots a server certificate must chain to.
fn roots(root_cert: Option<&Path>) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    match root_cert {
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(p) => {
            let bad = |e: &dyn std::fmt::Display| {
                Error::Config(format!("store.url: sslrootcert {}: {e}", p.display()))
            };
            for c in CertificateDer::pem_file_iter(p).map_err(|e| bad(&e))? {
                roots.add(c.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
            if roots.is_empty() {
                return Err(bad(&"holds no certificate"));
            }
        }
    }
    Ok(roots)
}

/// Opens a client for `config`, checking the server against `root_cert` (or the Mozilla roots).
pub fn connect(config: &postgres::Config, root_cert: Option<&Path>) -> Result<postgres::Client> {
    if config.get_ssl_mode() == SslMode::Disable {
        return Ok(config.connect(postgres::NoTls)?);
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Other(format!("TLS set-up: {e}")))?
    .with_root_certificates(roots(root_cert)?)
    .with_no_client_auth();
    Ok(config.connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslrootcert_is_taken_off_the_url_and_the_rest_kept() {
        let (u, r) =
            split_root_cert("postgres://a@h:5432/db?sslmode=require&sslrootcert=/x/ca.pem")
                .unwrap();
        assert_eq!(u, "postgres://a@h:5432/db?sslmode=require");
        assert_eq!(r, Some(PathBuf::from("/x/ca.pem")));
        let (u, r) = split_root_cert("postgres://a@h/db?sslrootcert=ca.pem").unwrap();
        assert_eq!(
            (u.as_str(), r),
            ("postgres://a@h/db", Some(PathBuf::from("ca.pem")))
        );
        let (u, r) = split_root_cert("host=h sslmode=require sslrootcert=/c.pem").unwrap();
        assert_eq!(
            (u.as_str(), r),
            ("host=h sslmode=require", Some(PathBuf::from("/c.pem")))
        );
        let (u, r) = split_root_cert("postgres://a@h/db").unwrap();
        assert_eq!((u.as_str(), r), ("postgres://a@h/db", None));
    }
}
