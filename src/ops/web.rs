//! Web sign-in for the admin page: email and password against the stored argon2id hash
//! (verified even for unknown emails, so timing does not tell which exist), the sign-in rate
//! limit ([`crate::auth::limiter`]), refusal of deleted and banned users, a session token of
//! which only the hash is stored, and an audit row (`via: web`, with the client address) for
//! every sign-in, refusal and sign-out. The HTTP routes only parse and answer.

use std::net::IpAddr;
use std::sync::LazyLock;

use serde_json::json;

use super::Actor;
use crate::app::App;
use crate::auth::password;
use crate::error::Result;
use crate::store::users::{self, User};
use crate::store::web_sessions;
use crate::util::{random_hex, rfc3339};

/// Life of a web session.
pub const SESSION_DAYS: i64 = 7;

/// A new web session: the token for the cookie (shown once; only its hash is stored).
#[derive(Debug)]
pub struct SignedIn {
    pub user: User,
    pub token: String,
    pub expires_at: String,
}

/// Why a sign-in was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Too many failures; try again after this many seconds.
    RateLimited { wait_secs: u64 },
    /// Wrong email or password (or a deleted user, or one without a password).
    BadCredentials,
    /// The user is banned.
    Banned,
}

/// The hash a session token is stored and looked up by.
pub fn token_hash(t: &str) -> String {
    crate::auth::keys::hash(t)
}

/// Writes the audit row of a web sign-in or sign-out.
pub(crate) async fn record(
    app: &App,
    user_id: Option<String>,
    ip: IpAddr,
    action: &str,
    email: &str,
    outcome: &'static str,
    detail: Option<&str>,
) {
    let actor = Actor::web(user_id, Some(ip.to_string()));
    let args = json!({"email": email});
    let event = crate::audit::Event {
        action,
        arguments: &args,
        outcome,
        detail,
    };
    crate::audit::record(&app.store, app.config.audit, &actor, event).await;
}

/// Signs `email` in with `password` from address `ip`.
pub async fn sign_in(
    app: &App,
    email: &str,
    password: String,
    ip: IpAddr,
    user_agent: Option<String>,
) -> Result<std::result::Result<SignedIn, Refused>> {
    if let Err(l) = app.login_limiter.begin(ip, email).await? {
        tracing::warn!(remote = %ip, "sign-in refused: too many failures for this {}", l.by);
        record(
            app,
            None,
            ip,
            "login",
            email,
            "refused",
            Some("rate limited"),
        )
        .await;
        return Ok(Err(Refused::RateLimited {
            wait_secs: l.wait_secs,
        }));
    }
    let key = email.to_string();
    let (user, hash) = app
        .store
        .run(move |c| {
            let u = users::get_by_email(c, &key)?;
            let hash = match &u {
                Some(u) => users::password_hash(c, &u.id)?,
                None => None,
            };
            Ok((u, hash))
        })
        .await?;
    // verify even for unknown users, so timing does not tell which emails exist
    static DUMMY: LazyLock<String> =
        LazyLock::new(|| password::hash("no such user").expect("hashing a constant password"));
    let known = hash.clone();
    // the dummy is made (once) on the blocking pool too: argon2 never runs on the runtime
    let ok = tokio::task::spawn_blocking(move || {
        let phc = known.unwrap_or_else(|| DUMMY.clone());
        password::verify(&password, &phc)
    })
    .await
    .unwrap_or(false);
    let uid = user.as_ref().map(|u| u.id.clone());
    let Some(user) = user.filter(|u| ok && hash.is_some() && u.deleted_at.is_none()) else {
        tracing::warn!(remote = %ip, "sign-in failed: wrong email or password");
        let why = "wrong email or password";
        record(app, uid, ip, "login", email, "refused", Some(why)).await;
        return Ok(Err(Refused::BadCredentials));
    };
    if user.is_banned_now() {
        tracing::warn!(remote = %ip, user = %user.email, "sign-in refused: banned");
        record(app, uid, ip, "login", email, "refused", Some("banned")).await;
        return Ok(Err(Refused::Banned));
    }
    app.login_limiter.succeeded(ip, email).await?;
    let done = open_session(app, user, ip, user_agent).await?;
    record(app, uid, ip, "login", &done.user.email, "ok", None).await;
    Ok(Ok(done))
}

/// A new web session of `user` (whose sign-in was checked): the token for the cookie, of
/// which only the hash is stored.
pub(crate) async fn open_session(
    app: &App,
    user: User,
    ip: IpAddr,
    user_agent: Option<String>,
) -> Result<SignedIn> {
    let token = random_hex(32);
    let expires_at = rfc3339(chrono::Utc::now() + chrono::Duration::days(SESSION_DAYS));
    let (id, th, exp, ipstr) = (
        user.id.clone(),
        token_hash(&token),
        expires_at.clone(),
        ip.to_string(),
    );
    app.store
        .write(move |c| {
            web_sessions::insert(c, &id, &th, Some(&ipstr), user_agent.as_deref(), &exp)
        })
        .await?;
    Ok(SignedIn {
        user,
        token,
        expires_at,
    })
}

/// The anti-CSRF token of the web session whose cookie holds `token`: the admin page reads it
/// from `GET {base}/api/auth/session` (a same-origin read another site cannot make) and sends
/// it as `X-Trex-Csrf` with every call. Derived from the session's secret, so nothing more is
/// stored and it dies with the session.
pub fn csrf_token(token: &str) -> String {
    crate::auth::keys::hash(&format!("trex-csrf:{token}"))
}

/// True when `sent` is the anti-CSRF token of the session of `token` (compared in constant
/// time).
pub fn csrf_ok(token: &str, sent: Option<&str>) -> bool {
    use subtle::ConstantTimeEq;
    let want = csrf_token(token);
    sent.is_some_and(|s| bool::from(s.as_bytes().ct_eq(want.as_bytes())))
}

/// Ends the web session of `token` (nothing when there is none).
pub async fn sign_out(app: &App, token: &str, ip: IpAddr) -> Result<()> {
    let th = token_hash(token);
    let ended = app
        .store
        .write(move |c| match web_sessions::find(c, &th)? {
            Some((id, uid, _)) => {
                web_sessions::delete(c, &id)?;
                Ok(users::get(c, &uid)?.map(|u| (u.id, u.email)))
            }
            None => Ok(None),
        })
        .await?;
    if let Some((uid, email)) = ended {
        app.auth.invalidate();
        record(app, Some(uid), ip, "logout", &email, "ok", None).await;
    }
    Ok(())
}

/// The live session of `token` and its user: `(session id, user, expires_at)`, or `None`
/// when the token is unknown or expired, or its user deleted or banned.
pub async fn current(app: &App, token: &str) -> Result<Option<(String, User, String)>> {
    let th = token_hash(token);
    let found = app
        .store
        .run(move |c| {
            let Some((id, uid, exp)) = web_sessions::find(c, &th)? else {
                return Ok(None);
            };
            Ok(users::get(c, &uid)?.map(|u| (id, u, exp)))
        })
        .await?;
    Ok(found.filter(|(_, u, _)| u.deleted_at.is_none() && !u.is_banned_now()))
}
