//! The admin web page at `{base}/admin/`: three files embedded in the binary at build time
//! (`admin/index.html`, `admin/app.js`, `admin/app.css`; no toolchain, no CDN, nothing fetched
//! at run time). The script and the style sheet are served under names that carry a hash of
//! their content (`app.<hash>.js`), cached for a year as immutable; the page itself is
//! `no-cache`, so a new binary's assets are picked up at once. Every answer has a strict
//! `Content-Security-Policy` (own-origin scripts, styles and fetches only; no inline code, no
//! framing, no forms to elsewhere), `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer` and
//! `X-Content-Type-Options: nosniff`.
//!
//! The page holds no rules: it signs in through [`super::web_auth`] and then calls the admin MCP
//! server's tools (and the migrations server's) with the session cookie and its anti-CSRF
//! token, so everything it does is a tool call, audited `via: web`.

use std::sync::{Arc, LazyLock};

use sha2::{Digest, Sha256};
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode, header};
use warp::{Filter, Rejection};

use super::Response;
use super::guard::{HostPolicy, check_origin};
use crate::app::App;

const INDEX: &str = include_str!("admin/index.html");
const SCRIPT: &str = include_str!("admin/app.js");
const STYLE: &str = include_str!("admin/app.css");

/// The policy of every answer of the page.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// An embedded asset under its hashed name.
struct Asset {
    name: String,
    body: &'static str,
    mime: &'static str,
}

fn asset(stem: &str, ext: &str, body: &'static str, mime: &'static str) -> Asset {
    let hash = hex::encode(&Sha256::digest(body.as_bytes())[..6]);
    Asset {
        name: format!("{stem}.{hash}.{ext}"),
        body,
        mime,
    }
}

static ASSETS: LazyLock<[Asset; 2]> = LazyLock::new(|| {
    [
        asset("app", "js", SCRIPT, "text/javascript; charset=utf-8"),
        asset("app", "css", STYLE, "text/css; charset=utf-8"),
    ]
});

/// The page, with its asset names and base path filled in.
fn index(base: &str) -> String {
    INDEX
        .replace("{{base}}", base)
        .replace("{{app.js}}", &ASSETS[0].name)
        .replace("{{app.css}}", &ASSETS[1].name)
}

fn secured(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn reply(body: String, mime: &'static str, cache: &'static str) -> Response {
    let mut r = Response::new(body.into());
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    secured(r)
}

/// GET {base}/admin, {base}/admin/, {base}/admin/assets/{name}
pub fn routes(app: Arc<App>, policy: Arc<HostPolicy>, base: &[String]) -> BoxedFilter<(Response,)> {
    let mut seg = base.to_vec();
    seg.push("admin".into());
    let root = super::exact_prefix(&seg);
    let base_path = app
        .config
        .server
        .base_path
        .trim_end_matches('/')
        .to_string();
    let guard = {
        let policy = policy.clone();
        warp::header::headers_cloned()
            .and_then(move |h: warp::http::HeaderMap| {
                let policy = policy.clone();
                async move { check_origin(&policy, &h) }
            })
            .untuple_one()
    };
    // {base}/admin → {base}/admin/
    let bare = {
        let to = format!("{base_path}/admin/");
        root.clone()
            .and(warp::path::end())
            .and(warp::get().or(warp::head()).unify())
            .and(guard.clone())
            .and(warp::path::full())
            .and_then(move |full: warp::path::FullPath| {
                let to = to.clone();
                async move {
                    if full.as_str().ends_with('/') {
                        return Err::<Response, Rejection>(warp::reject::not_found());
                    }
                    let mut r = Response::new(Vec::new().into());
                    *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
                    r.headers_mut()
                        .insert(header::LOCATION, HeaderValue::from_str(&to).expect("ascii"));
                    Ok(secured(r))
                }
            })
    };
    let page = {
        let html = index(&base_path);
        root.clone()
            .and(warp::path::end())
            .and(warp::get().or(warp::head()).unify())
            .and(guard.clone())
            .map(move || reply(html.clone(), "text/html; charset=utf-8", "no-cache"))
    };
    let assets = root
        .and(warp::path("assets"))
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::get().or(warp::head()).unify())
        .and(guard)
        .and_then(|name: String| async move {
            match ASSETS.iter().find(|a| a.name == name) {
                Some(a) => Ok(reply(
                    a.body.to_string(),
                    a.mime,
                    "public, max-age=31536000, immutable",
                )),
                None => Err(warp::reject::not_found()),
            }
        });
    bare.or(page).unify().or(assets).unify().boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_names_carry_their_hash_and_the_page_names_them() {
        let html = index("/trex");
        for a in ASSETS.iter() {
            assert!(html.contains(&format!("/trex/admin/assets/{}", a.name)));
            assert_eq!(a.name.split('.').nth(1).unwrap().len(), 12);
        }
        assert!(!html.contains("{{"));
        // nothing inline that the policy would block
        assert!(!html.contains("<script>") && !html.contains("style="));
    }
}
