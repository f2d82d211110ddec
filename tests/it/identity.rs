//! Identity and administration tools through `/trex/mcp`: users, roles, sessions (web and MCP),
//! SSO providers, OAuth apps, key scopes, audit, and web sign-in.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Client, TestServer};

async fn ready() -> (TestServer, Client) {
    let s = TestServer::start().await;
    let mut c = s.client();
    c.initialize().await;
    (s, c)
}

/// Creates a user with a password; returns its id.
async fn user(c: &Client, email: &str, role: &str) -> String {
    let u = c
        .call_ok(
            "user-create",
            json!({"name": email, "email": email, "password": "pass-word-1", "role": role}),
        )
        .await;
    u["id"].as_str().unwrap().to_string()
}

/// Signs in on the web; returns the session cookie value.
async fn login(s: &TestServer, email: &str, pw: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/trex/api/auth/login", s.base()))
        .json(&json!({"email": email, "password": pw}))
        .send()
        .await
        .unwrap()
}

fn cookie_of(r: &reqwest::Response) -> String {
    let c = r.headers()["set-cookie"].to_str().unwrap().to_string();
    c.split(';').next().unwrap().to_string()
}

async fn web_me(s: &TestServer, cookie: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{}/trex/api/auth/session", s.base()))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn status_of(c: &Client) -> u16 {
    c.post()
        .json(&json!({"jsonrpc":"2.0","id":99,"method":"ping"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn web_sign_in_sets_a_strict_cookie_and_logout_ends_it() {
    let (s, c) = ready().await;
    user(&c, "web@example.com", "user").await;
    let r = login(&s, "web@example.com", "pass-word-1").await;
    assert_eq!(r.status(), 200);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.contains("HttpOnly")
            && set.contains("SameSite=Strict")
            && set.contains("Max-Age=604800"),
        "{set}"
    );
    let cookie = cookie_of(&r);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["user"]["email"], "web@example.com");
    let csrf = v["csrfToken"].as_str().unwrap().to_string();
    assert_eq!(web_me(&s, &cookie).await, 200);

    let bad = login(&s, "web@example.com", "wrong-password").await;
    assert_eq!(bad.status(), 401);
    let v: Value = bad.json().await.unwrap();
    assert_eq!(v["error"], "Invalid email or password");
    assert_eq!(
        login(&s, "nobody@example.com", "pass-word-1")
            .await
            .status(),
        401
    );
    let r = reqwest::Client::new()
        .post(format!("{}/trex/api/auth/login", s.base()))
        .body("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415, "only JSON bodies");
    let r = reqwest::Client::new()
        .post(format!("{}/trex/api/auth/login", s.base()))
        .header("content-type", "application/json")
        .body("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // logging out needs the session's anti-CSRF token, so another site cannot log one out
    let out = reqwest::Client::new()
        .post(format!("{}/trex/api/auth/logout", s.base()))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 403);
    assert_eq!(web_me(&s, &cookie).await, 200);
    let out = reqwest::Client::new()
        .post(format!("{}/trex/api/auth/logout", s.base()))
        .header("cookie", &cookie)
        .header("x-trex-csrf", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 200);
    assert!(
        out.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(web_me(&s, &cookie).await, 401);
}

#[tokio::test]
async fn sign_in_is_rate_limited_per_address() {
    let (s, c) = ready().await;
    user(&c, "rl@example.com", "user").await;
    let mut last = 0;
    for _ in 0..12 {
        last = login(&s, "rl@example.com", "wrong-password")
            .await
            .status()
            .as_u16();
    }
    assert_eq!(last, 429);
    let r = login(&s, "rl@example.com", "pass-word-1").await;
    assert_eq!(
        r.status(),
        429,
        "the limit holds even for the right password"
    );
    assert!(r.headers().contains_key("retry-after"));
    // a colleague behind the same address signs in: the limit was on the other account
    user(&c, "colleague@example.com", "user").await;
    let r = login(&s, "colleague@example.com", "pass-word-1").await;
    assert_eq!(r.status(), 200);
    // every attempt is audited with the client address, and filtered by front door
    let rows = c
        .call_ok("audit-list", json!({"via": "web", "limit": 100}))
        .await;
    let entries = rows["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["tool"] == "login" && e["outcome"] == "ok" && e["remote"] == "127.0.0.1")
    );
    assert!(
        entries
            .iter()
            .any(|e| e["tool"] == "login" && e["outcome"] == "refused")
    );
    assert!(entries.iter().all(|e| e["via"] == "web"));
    assert!(!rows.to_string().contains("pass-word-1"));
}

#[tokio::test]
async fn sessions_of_both_kinds_are_listed_and_revoked() {
    let (s, c) = ready().await;
    user(&c, "both@example.com", "user").await;
    let cookie = cookie_of(&login(&s, "both@example.com", "pass-word-1").await);
    let list = c.call_ok("session-list", json!({})).await;
    let sessions = list["sessions"].as_array().unwrap();
    let web = sessions
        .iter()
        .find(|x| x["kind"] == "web")
        .expect("web session listed");
    let mcp = sessions
        .iter()
        .find(|x| x["kind"] == "mcp")
        .expect("mcp session listed");
    assert_eq!(web["userEmail"], "both@example.com");
    assert_eq!(mcp["id"], json!(c.session.clone().unwrap()));
    assert_eq!(mcp["userAgent"], "trex-tests 1");
    assert!(
        !list.to_string().contains(cookie.split('=').nth(1).unwrap()),
        "no token in listings"
    );
    let only_web = c.call_ok("session-list", json!({"kind": "web"})).await;
    assert!(
        only_web["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["kind"] == "web")
    );

    // revoking a web session signs the browser out
    let r = c
        .call_ok("session-revoke", json!({"sessionId": web["id"]}))
        .await;
    assert!(r["message"].as_str().unwrap().contains("revoked"));
    assert_eq!(web_me(&s, &cookie).await, 401);
    // revoking an MCP session makes its next request 404
    let mut other = s.client();
    other.initialize().await;
    c.call_ok(
        "session-revoke",
        json!({"sessionId": other.session.clone().unwrap()}),
    )
    .await;
    assert_eq!(status_of(&other).await, 404);
    assert_eq!(
        c.call_err("session-revoke", json!({"sessionId": "nope"}))
            .await,
        "Session not found"
    );
}

#[tokio::test]
async fn role_changes_bans_and_deletes_take_effect_at_once() {
    let (s, c) = ready().await;
    // self-protection and last-admin rules
    assert_eq!(
        c.call_err(
            "user-update-role",
            json!({"userId": s.admin_id, "role": "user"})
        )
        .await,
        "You cannot change the role of yourself"
    );
    assert_eq!(
        c.call_err("user-ban", json!({"userId": s.admin_id, "banned": true}))
            .await,
        "You cannot ban yourself"
    );
    assert_eq!(
        c.call_err("user-delete", json!({"userId": s.admin_id}))
            .await,
        "You cannot delete yourself"
    );

    let (bob, bob_key) = s.other_admin("bob@example.com").await;
    let mut b = Client::new(&s.url(), Some(&bob_key));
    b.initialize().await;
    // demotion: bob's key stops at once
    let r = c
        .call_ok("user-update-role", json!({"userId": bob, "role": "user"}))
        .await;
    assert_eq!(r["user"]["role"], "user");
    assert_eq!(status_of(&b).await, 401);
    c.call_ok("user-update-role", json!({"userId": bob, "role": "admin"}))
        .await;
    assert_eq!(status_of(&b).await, 404, "demotion ended bob's MCP session");
    b.session = None;
    b.initialize().await;

    // a ban with an end date: refused until then, and the ban ends bob's sessions
    let until = trex::util::rfc3339(chrono::Utc::now() + chrono::Duration::milliseconds(1500));
    let r = c
        .call_ok(
            "user-ban",
            json!({"userId": bob, "banned": true, "reason": "test", "expiresAt": until}),
        )
        .await;
    assert_eq!(r["user"]["banned"], true);
    assert_eq!(r["user"]["banReason"], "test");
    assert_eq!(status_of(&b).await, 401);
    let mcp = c.call_ok("session-list", json!({"userId": bob})).await;
    assert_eq!(
        mcp["sessions"],
        json!([]),
        "a ban revokes the user's sessions"
    );
    tokio::time::sleep(Duration::from_millis(1700)).await;
    b.session = None;
    b.initialize().await; // the ban has expired: the key works again
    assert!(
        c.call_err(
            "user-ban",
            json!({"userId": bob, "banned": true, "expiresAt": "2001-01-01T00:00:00Z"})
        )
        .await
        .contains("expiresAt")
    );
    let r = c
        .call_ok("user-ban", json!({"userId": bob, "banned": false}))
        .await;
    assert_eq!(r["user"]["banned"], false);
    assert_eq!(r["user"]["banReason"], Value::Null);

    // soft delete hides and stops; restore brings back
    c.call_ok("user-delete", json!({"userId": bob})).await;
    assert_eq!(status_of(&b).await, 401);
    let listed = c.call_ok("user-list", json!({})).await;
    assert!(!listed.to_string().contains("bob@example.com"));
    let all = c
        .call_ok("user-list", json!({"includeDeleted": true}))
        .await;
    assert!(all.to_string().contains("bob@example.com"));
    c.call_ok("user-restore", json!({"userId": bob})).await;
    b.session = None;
    b.initialize().await;
    c.call_ok("user-update-role", json!({"userId": bob, "role": "user"}))
        .await;
    assert_eq!(
        c.call_err("user-get", json!({"userId": "ghost"})).await,
        "User not found"
    );
    assert_eq!(
        c.call_err(
            "user-ban",
            json!({"userId": "ghost", "banned": true, "expiresAt": until_later()})
        )
        .await,
        "User not found"
    );
}

fn until_later() -> String {
    trex::util::rfc3339(chrono::Utc::now() + chrono::Duration::days(1))
}

#[tokio::test]
async fn set_password_lets_the_user_sign_in_and_ends_web_sessions() {
    let (s, c) = ready().await;
    let id = user(&c, "pw@example.com", "user").await;
    let cookie = cookie_of(&login(&s, "pw@example.com", "pass-word-1").await);
    assert!(
        c.call_err(
            "user-set-password",
            json!({"userId": id, "password": "short"})
        )
        .await
        .contains("password")
    );
    c.call_ok(
        "user-set-password",
        json!({"userId": id, "password": "new-pass-word"}),
    )
    .await;
    assert_eq!(web_me(&s, &cookie).await, 401, "old web sessions end");
    assert_eq!(
        login(&s, "pw@example.com", "pass-word-1").await.status(),
        401
    );
    assert_eq!(
        login(&s, "pw@example.com", "new-pass-word").await.status(),
        200
    );
    assert_eq!(
        c.call_err(
            "user-set-password",
            json!({"userId": "ghost", "password": "long-enough"})
        )
        .await,
        "User not found"
    );
    // a banned user cannot sign in
    c.call_ok("user-ban", json!({"userId": id, "banned": true}))
        .await;
    assert_eq!(
        login(&s, "pw@example.com", "new-pass-word").await.status(),
        403
    );
}

#[tokio::test]
async fn roles_and_assignments() {
    let (_s, c) = ready().await;
    let r = c
        .call_ok(
            "role-create",
            json!({"name": "analyst", "description": "reads"}),
        )
        .await;
    let role = r["id"].as_str().unwrap().to_string();
    assert_eq!(
        c.call_err("role-create", json!({"name": "Analyst"})).await,
        "A role named 'Analyst' already exists"
    );
    assert!(
        c.call_err("role-create", json!({"name": ""}))
            .await
            .contains("name")
    );
    let list = c.call_ok("role-list", json!({"search": "ana"})).await;
    assert_eq!(list["roles"].as_array().unwrap().len(), 1);
    assert_eq!(
        c.call_err("role-update", json!({"roleId": role})).await,
        "No fields to update"
    );
    assert_eq!(
        c.call_err("role-update", json!({"roleId": "ghost", "name": "x"}))
            .await,
        "Role not found"
    );
    let up = c
        .call_ok(
            "role-update",
            json!({"roleId": role, "description": "reads data"}),
        )
        .await;
    assert_eq!(up["description"], "reads data");
    assert_eq!(up["name"], "analyst");

    let who = user(&c, "r@example.com", "user").await;
    assert_eq!(
        c.call_err(
            "user-role-assign",
            json!({"userId": "ghost", "roleId": role})
        )
        .await,
        "User not found"
    );
    assert_eq!(
        c.call_err(
            "user-role-assign",
            json!({"userId": who, "roleId": "ghost"})
        )
        .await,
        "Role not found"
    );
    assert_eq!(
        c.call_ok("user-role-assign", json!({"userId": who, "roleId": role}))
            .await["message"],
        "Role assigned to user"
    );
    assert_eq!(
        c.call_ok("user-role-assign", json!({"userId": who, "roleId": role}))
            .await["message"],
        "User already has this role"
    );
    let u = c.call_ok("user-get", json!({"userId": who})).await;
    assert_eq!(u["roles"][0]["name"], "analyst");
    // every role, by name, whether the user is named by id or by email
    let a = c.call_ok("role-create", json!({"name": "accounts"})).await;
    let a_id = a["id"]
        .as_str()
        .or(a["role"]["id"].as_str())
        .unwrap()
        .to_string();
    c.call_ok("user-role-assign", json!({"userId": who, "roleId": a_id}))
        .await;
    let email = u["email"].as_str().unwrap().to_uppercase();
    for key in [who.to_string(), email] {
        let u = c.call_ok("user-get", json!({"userId": key})).await;
        let names: Vec<&str> = u["roles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["accounts", "analyst"], "{u}");
        assert_eq!(u["id"], who, "{u}");
    }
    c.call_ok("role-delete", json!({"roleId": a_id})).await;
    assert_eq!(
        c.call_ok("user-role-remove", json!({"userId": who, "roleId": role}))
            .await["message"],
        "Role removed from user"
    );
    assert_eq!(
        c.call_err("user-role-remove", json!({"userId": who, "roleId": role}))
            .await,
        "Role assignment not found"
    );
    c.call_ok("user-role-assign", json!({"userId": who, "roleId": role}))
        .await;
    let d = c.call_ok("role-delete", json!({"roleId": role})).await;
    assert_eq!(d["message"], "Role 'analyst' deleted");
    assert_eq!(
        c.call_ok("user-get", json!({"userId": who})).await["roles"],
        json!([])
    );
    assert_eq!(
        c.call_err("role-delete", json!({"roleId": role})).await,
        "Role not found"
    );
}

/// Every byte of the store files, to look for clear-text secrets.
fn store_bytes(s: &TestServer) -> Vec<u8> {
    s.store_bytes()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn sso_providers_keep_secrets_sealed() {
    let (s, c) = ready().await;
    let secret = "sso-secret-4f1c9e";
    let r = c.call_ok("sso-save", json!({"id": "google", "displayName": "Google", "clientId": "cid", "clientSecret": secret})).await;
    assert_eq!(r["message"], "SSO provider 'google' created");
    assert_eq!(
        r["provider"]["enabled"], false,
        "new providers start disabled"
    );
    assert_eq!(r["provider"]["hasClientSecret"], true);
    // an OpenID Connect provider cannot be enabled before it has an issuer to discover from
    let e = c
        .call_err(
            "sso-save",
            json!({"id": "google", "displayName": "Google", "clientId": "cid", "enabled": true}),
        )
        .await;
    assert!(e.contains("`issuer`"), "{e}");
    for bad in [
        "ftp://accounts.google.com",
        "http://accounts.example.com",
        "https://x.example/?a=1",
        "not a url",
    ] {
        let e = c
            .call_err(
                "sso-save",
                json!({"id": "google", "displayName": "Google", "clientId": "cid", "issuer": bad}),
            )
            .await;
        assert!(e.contains("`issuer`"), "{bad}: {e}");
    }
    let e = c
        .call_err(
            "sso-save",
            json!({"id": "github", "displayName": "GitHub", "clientId": "c", "issuer": "https://github.com"}),
        )
        .await;
    assert!(e.contains("`issuer`"), "{e}");
    let r = c.call_ok(
        "sso-save",
        json!({"id": "google", "displayName": "Google", "clientId": "cid", "enabled": true, "issuer": " https://accounts.google.com "}),
    )
    .await;
    assert_eq!(r["provider"]["issuer"], "https://accounts.google.com");
    let r = c.call_ok("sso-save", json!({"id": "google", "displayName": "Google SSO", "clientId": "cid2", "clientSecret": ""})).await;
    assert_eq!(
        r["provider"]["enabled"], true,
        "omitted enabled keeps the value"
    );
    assert_eq!(
        r["provider"]["hasClientSecret"], true,
        "empty secret keeps the stored one"
    );
    assert_eq!(r["provider"]["displayName"], "Google SSO");
    let sealed = s
        .app()
        .store
        .run(|c| trex::store::sso::sealed_secret(c, "google"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        s.app()
            .master
            .open(&sealed, "sso_providers:google:client_secret")
            .unwrap(),
        secret
    );
    let list = c.call("sso-list", json!({})).await;
    assert!(!list.to_string().contains(secret));
    assert!(
        c.call_err(
            "sso-save",
            json!({"id": "Bad-Id", "displayName": "x", "clientId": "c"})
        )
        .await
        .contains("`id`")
    );
    s.checkpoint();
    assert!(
        !contains(&store_bytes(&s), secret),
        "the secret is in trex.db in clear text"
    );
    assert_eq!(
        c.call_ok("sso-delete", json!({"id": "google"})).await["message"],
        "SSO provider 'google' deleted"
    );
    assert_eq!(
        c.call_err("sso-delete", json!({"id": "google"})).await,
        "SSO provider not found"
    );
    // the audit log never holds the secret either
    let audit = c.call_ok("audit-list", json!({"tool": "sso-save"})).await;
    assert_eq!(audit["entries"].as_array().unwrap().len(), 10);
    assert!(!audit.to_string().contains(secret));
}

#[tokio::test]
async fn apps_validate_show_the_secret_once_and_delete_their_tokens() {
    let (s, c) = ready().await;
    for (args, field) in [
        (
            json!({"name": "a", "redirectURLs": "not a url"}),
            "redirectURLs",
        ),
        (
            json!({"name": "a", "redirectURLs": "http://example.com/cb"}),
            "redirectURLs",
        ),
        (
            json!({"name": "a", "redirectURLs": "https://example.com/cb#frag"}),
            "redirectURLs",
        ),
        (
            json!({"name": "a", "redirectURLs": "myapp:/cb"}),
            "redirectURLs",
        ),
        (json!({"name": "a", "redirectURLs": ""}), "redirectURLs"),
        (
            json!({"name": "a", "redirectURLs": "https://example.com/cb", "metadata": "{oops"}),
            "metadata",
        ),
        (
            json!({"name": "a", "redirectURLs": "https://example.com/cb", "type": "tv"}),
            "type",
        ),
    ] {
        let e = c.call_err("app-create", args.clone()).await;
        assert!(e.contains(field), "{args}: {e}");
    }
    let a = c
        .call_ok("app-create", json!({"name": "Portal", "redirectURLs": "https://example.com/cb, http://localhost:3000/cb", "metadata": "{\"team\":\"data\"}"}))
        .await;
    let secret = a["clientSecret"].as_str().unwrap().to_string();
    assert_eq!(
        a["redirectURLs"],
        json!(["https://example.com/cb", "http://localhost:3000/cb"])
    );
    assert_eq!(a["metadata"]["team"], "data");
    let native = c
        .call_ok(
            "app-create",
            json!({"name": "Mobile", "type": "native", "redirectURLs": ["com.example.app:/cb"]}),
        )
        .await;
    assert_eq!(native["type"], "native");
    let list = c.call("app-list", json!({})).await;
    assert!(!list.to_string().contains(&secret));
    assert_eq!(
        list["structuredContent"]["apps"].as_array().unwrap().len(),
        2
    );
    let id = a["id"].as_str().unwrap().to_string();
    assert_eq!(
        c.call_err("app-update", json!({"appId": id})).await,
        "No fields to update"
    );
    let up = c
        .call_ok(
            "app-update",
            json!({"appId": id, "disabled": true, "name": "Portal 2"}),
        )
        .await;
    assert_eq!(up["disabled"], true);
    assert_eq!(up["name"], "Portal 2");
    assert!(
        c.call_err(
            "app-update",
            json!({"appId": id, "redirectURLs": "ftp://x"})
        )
        .await
        .contains("redirectURLs")
    );
    assert_eq!(
        c.call_err("app-update", json!({"appId": "ghost", "name": "x"}))
            .await,
        "Application not found"
    );

    // tokens and consents issued to the app go with it
    let (aid, uid) = (id.clone(), s.admin_id.clone());
    s.exec("INSERT INTO oauth_tokens (id, app_id, user_id, token_hash, created_at) VALUES ('t1', ?1, ?2, 'h1', 'now')", [&aid, &uid]);
    s.exec(
        "INSERT INTO oauth_consents (id, app_id, user_id, created_at) VALUES ('c1', ?1, ?2, 'now')",
        [&aid, &uid],
    );
    let d = c.call_ok("app-delete", json!({"appId": id})).await;
    assert_eq!(d["message"], "Application 'Portal 2' deleted");
    assert_eq!(d["tokensRemoved"], 1);
    assert_eq!(d["consentsRemoved"], 1);
    let left: i64 = s.store(|c| {
        c.query_row(
            "SELECT (SELECT count(*) FROM oauth_tokens) + (SELECT count(*) FROM oauth_consents)",
            (),
            |r| r.get(0),
        )
    });
    assert_eq!(left, 0);
    s.checkpoint();
    let native_secret = native["clientSecret"].as_str().unwrap();
    assert!(
        !contains(&store_bytes(&s), native_secret),
        "app secret in clear text"
    );
}

#[tokio::test]
async fn key_scopes_hide_and_refuse_tools() {
    let (s, c) = ready().await;
    let ro = c
        .call_ok(
            "api-key-create",
            json!({"userId": s.admin_id, "name": "ro", "scopes": {"readOnly": true}}),
        )
        .await;
    assert_eq!(ro["scopes"], json!({"readOnly": true}));
    let mut r = Client::new(&s.url(), Some(ro["key"].as_str().unwrap()));
    r.initialize().await;
    let tools = r.rpc("tools/list", json!({})).await["result"]["tools"].clone();
    // read-only tools, plus the SQL tool that runs reads only for such a key
    assert!(
        tools
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["annotations"]["readOnlyHint"] == true || t["name"] == "trexdb-execute-sql")
    );
    assert!(tools.to_string().contains("user-list"));
    r.call_ok("user-list", json!({})).await;
    let e = r
        .call_err(
            "user-create",
            json!({"name": "x", "email": "x@example.com"}),
        )
        .await;
    // the refusal names the scope and how to mint a key that may
    assert!(
        e.starts_with("This API key's scopes do not allow the tool 'user-create'")
            && e.contains("trex api-key create"),
        "{e}"
    );
    let audit = c
        .call_ok("audit-list", json!({"tool": "user-create"}))
        .await;
    assert_eq!(audit["entries"][0]["outcome"], "refused");

    let narrow = c
        .call_ok(
            "api-key-create",
            json!({"userId": s.admin_id, "name": "users", "scopes": {"tools": ["user-*"]}}),
        )
        .await;
    let mut n = Client::new(&s.url(), Some(narrow["key"].as_str().unwrap()));
    n.initialize().await;
    let names: Vec<String> = n.rpc("tools/list", json!({})).await["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !names.is_empty() && names.iter().all(|x| x.starts_with("user-")),
        "{names:?}"
    );
    n.call_ok(
        "user-create",
        json!({"name": "y", "email": "y@example.com"}),
    )
    .await;
    assert!(
        n.call_err("role-list", json!({}))
            .await
            .contains("scopes do not allow")
    );

    let keys = c.call_ok("api-key-list", json!({})).await;
    assert!(keys.to_string().contains("\"readOnly\":true"));
    assert!(
        c.call_err(
            "api-key-create",
            json!({"userId": s.admin_id, "name": "bad", "scopes": {"tools": []}})
        )
        .await
        .contains("scopes.tools")
    );
    let e = c
        .call_err(
            "api-key-create",
            json!({"userId": s.admin_id, "name": "bad", "scopes": {"tools": ["nosuch-*"]}}),
        )
        .await;
    assert!(e.contains("matches no tool"), "{e}");
    // a scoped key cannot mint a wider key
    let minter = c.call_ok("api-key-create", json!({"userId": s.admin_id, "name": "minter", "scopes": {"tools": ["api-key-create", "user-list"]}})).await;
    let mut m = Client::new(&s.url(), Some(minter["key"].as_str().unwrap()));
    m.initialize().await;
    for scopes in [
        json!(null),
        json!({"dangerousSql": true, "tools": ["user-list"]}),
        json!({"tools": ["*"]}),
    ] {
        let mut args = json!({"userId": s.admin_id, "name": "wider"});
        if !scopes.is_null() {
            args["scopes"] = scopes;
        }
        let e = m.call_err("api-key-create", args).await;
        assert!(e.contains("wider scopes"), "{e}");
    }
    m.call_ok(
        "api-key-create",
        json!({"userId": s.admin_id, "name": "narrower", "scopes": {"tools": ["user-list"]}}),
    )
    .await;
    assert!(
        c.call_err(
            "api-key-create",
            json!({"userId": s.admin_id, "name": "bad", "scopes": {"everything": true}})
        )
        .await
        .contains("everything")
    );
}

#[tokio::test]
async fn audit_list_filters_and_paginates() {
    let (s, c) = ready().await;
    let t0 = trex::util::now_rfc3339();
    for i in 0..3 {
        c.call_ok("role-create", json!({"name": format!("r{i}")}))
            .await;
    }
    c.call_err("role-create", json!({"name": "r0"})).await;
    let all = c
        .call_ok("audit-list", json!({"tool": "role-create"}))
        .await;
    let entries = all["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[0]["outcome"], "error");
    assert_eq!(entries[0]["userId"], json!(s.admin_id));
    assert_eq!(entries[0]["arguments"]["name"], "r0");
    let page = c
        .call_ok("audit-list", json!({"tool": "role-create", "limit": 3}))
        .await;
    assert_eq!(page["entries"].as_array().unwrap().len(), 3);
    let rest = c
        .call_ok(
            "audit-list",
            json!({"tool": "role-create", "limit": 3, "cursor": page["nextCursor"]}),
        )
        .await;
    assert_eq!(rest["entries"].as_array().unwrap().len(), 1);
    assert!(rest.get("nextCursor").is_none());
    let since = c.call_ok("audit-list", json!({"since": t0})).await;
    assert_eq!(since["entries"].as_array().unwrap().len(), 4);
    let none = c.call_ok("audit-list", json!({"userId": "ghost"})).await;
    assert_eq!(none["entries"], json!([]));
    assert!(
        c.call_err("audit-list", json!({"since": "yesterday"}))
            .await
            .contains("since")
    );
}

#[tokio::test]
async fn a_lost_master_key_stops_start_up_instead_of_replacing_it() {
    let (mut s, c) = ready().await;
    c.call_ok("sso-save", json!({"id": "gh", "displayName": "GitHub", "clientId": "c", "clientSecret": "s3cr3t-value"})).await;
    s.running.take().unwrap().stop().await;
    std::fs::remove_file(s.data_dir().join("master.key")).unwrap();
    let o = trex::config::Overrides {
        data_dir: Some(s.data_dir()),
        listen: Some("127.0.0.1:0".parse().unwrap()),
    };
    let mut config = trex::Config::load(None, std::iter::empty(), &o).unwrap();
    crate::common::test_store(&mut config.store);
    let err = trex::App::open(config)
        .await
        .err()
        .expect("start-up must fail");
    let why = if crate::common::pg_store() {
        // a node of a shared store is told to copy the key from another node
        "has no master key, but the shared store"
    } else {
        "master key is missing"
    };
    assert!(err.to_string().contains(why), "{err}");
    assert!(
        !s.data_dir().join("master.key").exists(),
        "no replacement key was made"
    );
}

#[tokio::test]
async fn a_wrong_master_key_stops_start_up() {
    let (mut s, c) = ready().await;
    c.call_ok("sso-save", json!({"id": "gh", "displayName": "GitHub", "clientId": "c", "clientSecret": "s3cr3t-value"})).await;
    s.running.take().unwrap().stop().await;
    std::fs::write(
        s.data_dir().join("master.key"),
        format!("{}\n", trex::util::random_hex(32)),
    )
    .unwrap();
    let o = trex::config::Overrides {
        data_dir: Some(s.data_dir()),
        listen: Some("127.0.0.1:0".parse().unwrap()),
    };
    let mut config = trex::Config::load(None, std::iter::empty(), &o).unwrap();
    crate::common::test_store(&mut config.store);
    let err = trex::App::open(config)
        .await
        .err()
        .expect("start-up must fail");
    assert!(
        err.to_string()
            .contains("not the key this store's secrets were sealed with"),
        "{err}"
    );
}

#[tokio::test]
async fn the_key_in_use_cannot_revoke_itself() {
    let (_s, c) = ready().await;
    let keys = c.call_ok("api-key-list", json!({})).await;
    let mine = keys["keys"][0]["id"].clone();
    let e = c.call_err("api-key-revoke", json!({"keyId": mine})).await;
    assert!(
        e.starts_with("You cannot revoke the key this call uses"),
        "{e}"
    );
}
