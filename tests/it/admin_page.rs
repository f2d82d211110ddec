//! The admin page in a real browser (`tests/browser/admin.mjs`): Debian's chromium driven by
//! playwright-core, a real OpenID provider (oidc-provider), axe-core, and the official Python
//! SDK with a key made on the page. `#[ignore]`d unless asked for (`cargo test --
//! --include-ignored`, as CI does): it needs `apt-get install chromium`, the browser kit
//! (`cd tests/browser && npm ci`) and the MCP kit (its Node 22 and Python SDK). Screenshots of
//! every page at desktop and phone width land in `tests/browser/screenshots/` (not committed).
//! The server side of the page (headers, assets, CSRF, SSO errors) is checked without a browser
//! by the other tests here.

use std::path::Path;

use serde_json::{Value, json};

use crate::common::{TestServer, require_mcpkit};
use crate::python_sdk::app_database;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium (apt-get install chromium), the browser kit (cd tests/browser && npm ci) and the MCP kit; cargo test -- --include-ignored"]
async fn the_admin_page_in_a_real_browser() {
    let kit = require_mcpkit();
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let browser_kit = here.join("tests/browser");
    assert!(
        browser_kit.join("node_modules/playwright-core").exists(),
        "the browser kit is not installed: cd tests/browser && npm ci"
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "chromium is not installed: apt-get install chromium"
    );
    let s = TestServer::start().await;
    let mut c = s.client();
    c.initialize().await;
    c.call_ok(
        "user-create",
        json!({"name": "Page Admin", "email": "page-admin@example.com", "password": "page-pass-1", "role": "admin"}),
    )
    .await;
    c.call_ok(
        "user-create",
        json!({"name": "SSO Admin", "email": "sso-admin@example.com", "role": "admin"}),
    )
    .await;
    app_database(&s).await;
    let node = kit.join("node_modules/.bin/node");
    let out = tokio::process::Command::new(node)
        .arg(browser_kit.join("admin.mjs"))
        .current_dir(&browser_kit)
        .env("TREX_BASE", s.base())
        .env("TREX_KEY", &s.key)
        .env("PYTHON", kit.join("venv/bin/python"))
        .env("SDK_PING", here.join("tests/python/sdk_ping.py"))
        .env("SHOTS", browser_kit.join("screenshots"))
        .env("ADMIN_EMAIL", "page-admin@example.com")
        .env("ADMIN_PASSWORD", "page-pass-1")
        .env("SSO_EMAIL", "sso-admin@example.com")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("ALL OK"),
        "the browser test failed:\n{stdout}\n{stderr}"
    );
    // what the page did is in the audit log as web calls
    let audit = c
        .call_ok(
            "audit-list",
            json!({"tool": "api-key-create", "via": "web"}),
        )
        .await;
    assert_eq!(audit["entries"].as_array().unwrap().len(), 1, "{audit}");
}

#[tokio::test]
async fn the_page_is_served_from_the_binary_with_strict_headers() {
    let s = TestServer::start().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .get(format!("{}/trex/admin", s.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(r.headers()["location"], "/trex/admin/");
    let r = http
        .get(format!("{}/trex/admin/", s.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    let csp = h["content-security-policy"].to_str().unwrap();
    for d in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(d), "{csp}");
    }
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["cache-control"], "no-cache");
    let html = r.text().await.unwrap();
    let js = html
        .split('"')
        .find(|p| p.starts_with("/trex/admin/assets/app.") && p.ends_with(".js"))
        .expect("the page names its script")
        .to_string();
    let r = http.get(format!("{}{js}", s.base())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    // an unknown asset, and a path outside: JSON 404s, never HTML
    let r = http
        .get(format!(
            "{}/trex/admin/assets/app.000000000000.js",
            s.base()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert!(v.get("error").is_some(), "{v}");
    // another Host is refused (DNS rebinding)
    let r = http
        .get(format!("{}/trex/admin/", s.base()))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn sso_sign_in_refuses_what_it_cannot_trust() {
    let s = TestServer::start().await;
    let mut c = s.client();
    c.initialize().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |path: String| http.get(format!("{}{path}", s.base())).send();
    // no providers yet: the sign-in page lists none; an unknown one goes back with a reason
    let v: Value = get("/trex/api/auth/providers".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["providers"], json!([]));
    let r = get("/trex/api/auth/sso/nope/start".into()).await.unwrap();
    assert_eq!(r.status(), 303);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        loc.starts_with("/trex/admin/?sso_error=") && loc.contains("not+found"),
        "{loc}"
    );
    // a disabled provider is not offered and cannot be used
    c.call_ok(
        "sso-save",
        json!({"id": "corp", "displayName": "Corp", "clientId": "c", "issuer": "http://127.0.0.1:9"}),
    )
    .await;
    let v: Value = get("/trex/api/auth/providers".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["providers"], json!([]));
    let r = get("/trex/api/auth/sso/corp/start".into()).await.unwrap();
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .contains("not+enabled")
    );
    // enabled but unreachable: back to the page with a reason, nothing signed in
    c.call_ok(
        "sso-save",
        json!({"id": "corp", "displayName": "Corp", "clientId": "c", "enabled": true}),
    )
    .await;
    let v: Value = get("/trex/api/auth/providers".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["providers"],
        json!([{"id": "corp", "displayName": "Corp"}])
    );
    let r = get("/trex/api/auth/sso/corp/start".into()).await.unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .contains("could+not+be+reached")
    );
    // a callback that was never started here (no state cookie) or with a forged state
    let r = get("/trex/api/auth/sso/corp/callback?code=x&state=y".into())
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let loc = r.headers()["location"].to_str().unwrap();
    assert!(
        loc.contains("sso_error=") && loc.contains("not+started+here"),
        "{loc}"
    );
    let cookies: Vec<_> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        cookies.iter().all(|c| !c.starts_with("trex_session=")),
        "{cookies:?}"
    );
    let r = http
        .get(format!(
            "{}/trex/api/auth/sso/corp/callback?code=x&state=y",
            s.base()
        ))
        .header("cookie", "trex_sso=v1:00ff")
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .contains("not+started+here")
    );
    // a provider error for a sign-in not started here is not taken at its word, nor shown
    let r = get(
        "/trex/api/auth/sso/corp/callback?error=access_denied&error_description=call+us+at+555"
            .into(),
    )
    .await
    .unwrap();
    let loc = r.headers()["location"].to_str().unwrap();
    assert!(
        loc.contains("not+started+here") && !loc.contains("555"),
        "{loc}"
    );
    let audit = c
        .call_ok("audit-list", json!({"tool": "login", "via": "web"}))
        .await;
    let entries = audit["entries"].as_array().unwrap();
    assert!(entries.len() >= 3, "{audit}");
    assert!(entries.iter().all(|e| e["outcome"] != "ok"), "{audit}");
}
