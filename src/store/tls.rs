//! How the control store reaches PostgreSQL: in the clear when the URL says `sslmode=disable`,
//! else through rustls with the Mozilla root certificates (webpki-roots) — `sslmode=prefer` (the
//! default) falls back to plain text only when the server offers no TLS at all, `require`
//! refuses to.

use std::sync::Arc;

use postgres::config::SslMode;

use crate::error::{Error, Result};

/// Opens a client for `config`.
pub fn connect(config: &postgres::Config) -> Result<postgres::Client> {
    if config.get_ssl_mode() == SslMode::Disable {
        return Ok(config.connect(postgres::NoTls)?);
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Other(format!("TLS set-up: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(config.connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))?)
}
