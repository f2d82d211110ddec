//! Request guards that run before a body is read: `Host`/`Origin` validation against DNS
//! rebinding, then API-key authentication.

use std::net::IpAddr;
use std::sync::Arc;

use warp::http::{HeaderMap, StatusCode, header};
use warp::{Filter, Rejection};

use super::rejection::ApiError;
use crate::app::App;
use crate::auth::Principal;
use crate::config::Config;

/// Which `Host` / `Origin` values are acceptable.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    names: Vec<String>,
    origins: Vec<String>,
    any_host: bool,
}

impl HostPolicy {
    /// Loopback names, the listen IP and `allowed_hosts`; any host when listening on a wildcard
    /// address with no `allowed_hosts` (Origin is still checked).
    pub fn from_config(c: &Config) -> Self {
        let ip = c.server.listen.ip();
        let mut names: Vec<String> = c
            .server
            .allowed_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        if !ip.is_unspecified() {
            names.push(ip.to_string());
        }
        let mut origins: Vec<String> = c
            .server
            .allowed_origins
            .iter()
            .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
            .collect();
        // the address users reach the server at (behind a proxy) is its own
        if let Ok(u) = url::Url::parse(&c.server.public_url)
            && let Some(host) = u.host_str()
        {
            names.push(host.to_ascii_lowercase());
            origins.push(u.origin().ascii_serialization().to_ascii_lowercase());
        }
        HostPolicy {
            any_host: ip.is_unspecified() && c.server.allowed_hosts.is_empty(),
            names,
            origins,
        }
    }

    fn name_ok(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        bare == "localhost"
            || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
            || self
                .names
                .iter()
                .any(|n| n.trim_start_matches('[').trim_end_matches(']') == bare)
    }

    /// Checks a `Host` header value (`name[:port]`).
    pub fn host_ok(&self, host: &str) -> bool {
        self.any_host || self.name_ok(split_host(host))
    }

    /// Checks an `Origin` header value (`scheme://name[:port]`).
    pub fn origin_ok(&self, origin: &str) -> bool {
        let o = origin.trim_end_matches('/').to_ascii_lowercase();
        if self.origins.contains(&o) {
            return true;
        }
        match o.split_once("://") {
            Some(("http" | "https", rest)) => self.name_ok(split_host(rest)),
            _ => false,
        }
    }
}

/// The host part of `name:port`, `[v6]:port`, `name` or `[v6]`.
fn split_host(h: &str) -> &str {
    if h.starts_with('[') {
        return h.split_inclusive(']').next().unwrap_or(h);
    }
    match h.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => h,
    }
}

/// Refuses a bad `Host` or `Origin` with 403.
pub fn check_origin(policy: &HostPolicy, h: &HeaderMap) -> Result<(), Rejection> {
    origin_allowed(policy, h).map_err(ApiError::reject)
}

/// [`check_origin`] as the error to answer.
fn origin_allowed(policy: &HostPolicy, h: &HeaderMap) -> Result<(), ApiError> {
    if let Some(host) = h.get(header::HOST) {
        let ok = host.to_str().is_ok_and(|v| policy.host_ok(v));
        if !ok {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "Forbidden: invalid Host header",
            ));
        }
    }
    if let Some(origin) = h.get(header::ORIGIN) {
        let ok = origin.to_str().is_ok_and(|v| policy.origin_ok(v));
        if !ok {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "Forbidden: invalid Origin header",
            ));
        }
    }
    Ok(())
}

/// True when the request comes from a page of this very origin: `Origin` equal to
/// `http(s)://` + `Host`, or `Sec-Fetch-Site: same-origin`. Only such requests may authenticate
/// with the web session cookie (loopback pages on other ports are other origins).
fn same_origin(h: &HeaderMap) -> bool {
    let get = |n| {
        h.get(n)
            .and_then(|v: &warp::http::HeaderValue| v.to_str().ok())
    };
    if get("sec-fetch-site").is_some_and(|v| v.eq_ignore_ascii_case("same-origin")) {
        return true;
    }
    match (get(header::ORIGIN.as_str()), get(header::HOST.as_str())) {
        (Some(origin), Some(host)) => {
            origin
                .trim_end_matches('/')
                .split_once("://")
                .is_some_and(|(scheme, rest)| {
                    matches!(scheme, "http" | "https") && rest.eq_ignore_ascii_case(host)
                })
        }
        _ => false,
    }
}

/// Host/Origin check, then the caller: an API key, or — for a same-origin request without an
/// `Authorization` header that carries the session's anti-CSRF token in `X-Trex-Csrf` — the
/// admin page's web session cookie. Yields the caller and the
/// request headers.
pub fn authenticated(
    app: Arc<App>,
    policy: Arc<HostPolicy>,
) -> impl Filter<Extract = (Arc<Principal>, HeaderMap), Error = Rejection> + Clone {
    warp::header::headers_cloned()
        .and(crate::http::client_addr())
        .and(warp::ext::optional::<crate::http::ConnMark>())
        .and_then(
            move |h: HeaderMap,
                  remote: Option<std::net::SocketAddr>,
                  mark: Option<crate::http::ConnMark>| {
                let app = app.clone();
                let policy = policy.clone();
                async move {
                    match authenticate(&app, &policy, &h, remote, mark.as_ref()).await {
                        Ok(p) => Ok((p, h)),
                        Err(e) => Err(e.reject()),
                    }
                }
            },
        )
        .untuple_one()
}

/// What [`authenticated`] checks, for a request's headers `h` from `remote`: the caller, or the
/// JSON error to answer (403 for a bad Host, Origin or cross-site cookie, 401 for no or a bad
/// key). Marks the connection trusted once the caller is known. The one rule both the warp
/// routes and the fast lane ([`super::fast`]) apply.
pub async fn authenticate(
    app: &App,
    policy: &HostPolicy,
    h: &HeaderMap,
    remote: Option<std::net::SocketAddr>,
    mark: Option<&crate::http::ConnMark>,
) -> Result<Arc<Principal>, ApiError> {
    let trust = |p: Arc<Principal>| {
        if let Some(m) = mark {
            m.trust();
        }
        p
    };
    origin_allowed(policy, h)?;
    let auth = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if auth.is_none()
        && let Some(token) = crate::http::web_auth::cookie_token(h)
    {
        if !same_origin(h) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "Forbidden: the session cookie works only from this server's own pages (same origin)",
            ));
        }
        if !crate::http::web_auth::csrf_ok(h, &token) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "Forbidden: the X-Trex-Csrf header must carry this session's token (GET /api/auth/session)",
            ));
        }
        return match app.auth.web(&token).await {
            Ok(p) => Ok(trust(p)),
            Err(_) => Err(ApiError::unauthorized()),
        };
    }
    match app.auth.authenticate(auth).await {
        Ok(p) => Ok(trust(p)),
        Err(why) => {
            // never the key itself: the 13-character display prefix of a trex key at most
            // (nothing of any other token)
            let prefix = auth
                .and_then(|a| a.split_whitespace().nth(1))
                .filter(|k| k.starts_with(crate::auth::keys::KEY_PREFIX))
                .map(|k| {
                    k.chars()
                        .take(crate::auth::keys::PREFIX_LEN)
                        .collect::<String>()
                });
            tracing::warn!(
                remote = %remote.map(|r| r.to_string()).unwrap_or_default(),
                key_prefix = prefix.as_deref().unwrap_or("-"),
                reason = ?why,
                "API key refused"
            );
            Err(ApiError::unauthorized())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(listen: &str, hosts: &[&str], origins: &[&str]) -> HostPolicy {
        let mut c = Config::default();
        c.server.listen = listen.parse().unwrap();
        c.server.allowed_hosts = hosts.iter().map(|s| s.to_string()).collect();
        c.server.allowed_origins = origins.iter().map(|s| s.to_string()).collect();
        HostPolicy::from_config(&c)
    }

    #[test]
    fn loopback_policy() {
        let p = policy("127.0.0.1:8001", &[], &[]);
        assert!(p.host_ok("127.0.0.1:8001"));
        assert!(p.host_ok("localhost:8001"));
        assert!(p.host_ok("[::1]:8001"));
        assert!(!p.host_ok("evil.example.com"));
        assert!(!p.host_ok("evil.example.com:8001"));
        assert!(p.origin_ok("http://localhost:3000"));
        assert!(!p.origin_ok("http://evil.example.com"));
        assert!(!p.origin_ok("null"));
    }

    #[test]
    fn configured_names_and_origins() {
        let p = policy(
            "127.0.0.1:8001",
            &["trex.internal"],
            &["https://admin.example.com"],
        );
        assert!(p.host_ok("trex.internal:443"));
        assert!(p.origin_ok("https://admin.example.com"));
        assert!(p.origin_ok("https://trex.internal"));
        assert!(!p.origin_ok("https://other.example.com"));
    }
}
