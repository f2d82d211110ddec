//! SSO sign-in to the admin page, for every enabled provider of `sso-save`: OpenID Connect's
//! authorization-code flow with PKCE, `state` and `nonce` (discovery from the provider's
//! issuer; the ID token's signature, issuer, audience, expiry and nonce verified by the
//! `openidconnect` crate), or GitHub's OAuth (`oauth2`, then the account's verified primary
//! email from GitHub's API).
//!
//! Nothing of a sign-in in progress is kept on the server: [`begin`] seals the state, nonce,
//! PKCE verifier, provider and start time with the master key into a cookie that only the
//! callback path receives, so the callback may land on any node. [`finish`] checks it, trades
//! the code, and matches the verified email to an existing user — or, when `sso.unknown_users`
//! is `create`, makes a `user`-role account. Deleted and banned users are refused; the admin
//! role is checked where every admin call is checked (`auth::Auth::web`). Every sign-in and
//! every refusal is an audit row (`via: web`, action `login`, with the provider).

use std::net::IpAddr;
use std::sync::LazyLock;
use std::time::Duration;

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Actor;
use super::sso::GITHUB;
use super::web::{SignedIn, open_session};
use crate::app::App;
use crate::error::{Error, Result};
use crate::store::sso;
use crate::store::users::{self, User};

/// Name of the cookie that carries a sign-in in progress to its callback.
pub const STATE_COOKIE: &str = "trex_sso";

/// The sealed content of [`STATE_COOKIE`].
#[derive(Serialize, Deserialize)]
struct Pending {
    /// Provider id.
    p: String,
    /// OAuth `state`.
    s: String,
    /// OIDC `nonce`.
    n: String,
    /// PKCE verifier.
    v: String,
    /// Started at (ms since the epoch).
    t: i64,
}

/// A started sign-in: where to send the browser, and the sealed cookie value to set.
pub struct Begun {
    pub authorize_url: String,
    pub cookie: String,
}

/// Why an SSO sign-in did not sign anyone in: the text shown on the sign-in page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

/// The HTTP client of sign-ins: no redirects followed (the flow's requests never need one,
/// and following them would let a provider point trex elsewhere), bounded time.
static HTTP: LazyLock<openidconnect::reqwest::Client> = LazyLock::new(|| {
    openidconnect::reqwest::Client::builder()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .user_agent(concat!("trex/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("an HTTP client")
});

const GITHUB_AUTHORIZE: &str = "https://github.com/login/oauth/authorize";
const GITHUB_TOKEN: &str = "https://github.com/login/oauth/access_token";
const GITHUB_EMAILS: &str = "https://api.github.com/user/emails";

/// The provider `id` if it is enabled, with its client secret opened.
async fn provider(app: &App, id: &str) -> Result<(sso::SsoProvider, Option<String>)> {
    let key = id.to_string();
    let found = app
        .store
        .run(move |c| Ok((sso::get(c, &key)?, sso::sealed_secret(c, &key)?)))
        .await?;
    let (Some(p), sealed) = found else {
        return Err(Error::NotFound(format!("SSO provider '{id}' not found")));
    };
    if !p.enabled {
        return Err(Error::NotFound(format!(
            "SSO provider '{id}' is not enabled"
        )));
    }
    let secret = match sealed.filter(|s| !s.is_empty()) {
        Some(s) => Some(
            app.master
                .open(&s, &format!("sso_providers:{id}:client_secret"))?,
        ),
        None => None,
    };
    Ok((p, secret))
}

fn redirect_url(callback: &str) -> Result<RedirectUrl> {
    RedirectUrl::new(callback.to_string())
        .map_err(|e| Error::Other(format!("SSO callback URL {callback}: {e}")))
}

/// What went wrong talking to a provider, for the log; the user sees a short text.
fn upstream(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Other(format!("SSO {what}: {e}"))
}

/// Discovery documents (with their signing keys) by issuer, kept [`DISCOVERY_TTL`]: a sign-in
/// fetches them at its start and its callback, and a flood of starts must not become a flood of
/// requests to the provider. A cache only: a stale entry costs at most a failed verification
/// until it expires.
type Discovered = std::collections::HashMap<String, (std::time::Instant, CoreProviderMetadata)>;
static DISCOVERED: LazyLock<std::sync::Mutex<Discovered>> = LazyLock::new(Default::default);
const DISCOVERY_TTL: Duration = Duration::from_secs(300);

async fn discover(issuer: &str) -> Result<CoreProviderMetadata> {
    if let Some((at, m)) = DISCOVERED.lock().unwrap().get(issuer)
        && at.elapsed() < DISCOVERY_TTL
    {
        return Ok(m.clone());
    }
    let url = IssuerUrl::new(issuer.to_string()).map_err(|e| upstream("issuer URL", e))?;
    let m = CoreProviderMetadata::discover_async(url, &*HTTP)
        .await
        .map_err(|e| upstream(&format!("discovery at {issuer}"), error_chain(&e)))?;
    let mut cache = DISCOVERED.lock().unwrap();
    cache.retain(|_, (at, _)| at.elapsed() < DISCOVERY_TTL);
    cache.insert(issuer.to_string(), (std::time::Instant::now(), m.clone()));
    Ok(m)
}

/// An error with its causes, `a: b: c`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Starts a sign-in through provider `id`; `callback` is this server's callback URL for it.
pub async fn begin(app: &App, id: &str, callback: &str) -> Result<Begun> {
    let (p, secret) = provider(app, id).await?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let state = CsrfToken::new_random();
    let nonce = Nonce::new_random();
    let authorize_url = if p.id == GITHUB {
        let client = oauth2::basic::BasicClient::new(ClientId::new(p.client_id.clone()))
            .set_auth_uri(oauth2::AuthUrl::new(GITHUB_AUTHORIZE.into()).expect("a URL"))
            .set_redirect_uri(redirect_url(callback)?);
        let st = state.clone();
        let (url, _) = client
            .authorize_url(move || st)
            .add_scope(Scope::new("read:user".into()))
            .add_scope(Scope::new("user:email".into()))
            .set_pkce_challenge(challenge)
            .url();
        url
    } else {
        let issuer = p.issuer.as_deref().ok_or_else(|| {
            Error::Conflict(format!(
                "SSO provider '{id}' has no issuer (sso-save issuer)"
            ))
        })?;
        let meta = discover(issuer).await?;
        let client = CoreClient::from_provider_metadata(
            meta,
            ClientId::new(p.client_id.clone()),
            secret.map(ClientSecret::new),
        )
        .set_redirect_uri(redirect_url(callback)?);
        let (st, no) = (state.clone(), nonce.clone());
        let (url, _, _) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || st,
                move || no,
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .url();
        url
    };
    let pending = Pending {
        p: p.id.clone(),
        s: state.secret().clone(),
        n: nonce.secret().clone(),
        v: verifier.secret().clone(),
        t: crate::util::now_ms(),
    };
    let cookie = app.master.seal(
        &serde_json::to_string(&pending).expect("json"),
        STATE_COOKIE,
    );
    Ok(Begun {
        authorize_url: authorize_url.to_string(),
        cookie,
    })
}

/// What the provider sent back to the callback.
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    /// `error` (and `error_description`) when the user or the provider refused.
    pub error: Option<String>,
}

/// Ends a sign-in through provider `id`: checks the callback against the sealed `cookie`,
/// trades the code, verifies who it is, and opens a web session for the matching user.
#[allow(clippy::too_many_arguments)]
pub async fn finish(
    app: &App,
    id: &str,
    callback_url: &str,
    cb: Callback,
    cookie: Option<&str>,
    ip: IpAddr,
    user_agent: Option<String>,
) -> Result<std::result::Result<SignedIn, Refused>> {
    let refuse = |why: &str, email: Option<&str>, uid: Option<String>, shown: String| {
        let why = why.to_string();
        let email = email.map(str::to_string);
        async move {
            tracing::warn!(remote = %ip, provider = %id, "SSO sign-in refused: {why}");
            record(app, uid, ip, id, email.as_deref(), "refused", Some(&why)).await;
            Ok(Err(Refused(shown)))
        }
    };
    let pending: Option<Pending> = cookie
        .and_then(|c| app.master.open(c, STATE_COOKIE).ok())
        .and_then(|j| serde_json::from_str(&j).ok());
    let Some(pending) = pending else {
        let shown = "This sign-in was not started here, or its cookie is gone; start again".into();
        return refuse("no sign-in state cookie", None, None, shown).await;
    };
    let fresh =
        crate::util::now_ms() - pending.t <= app.config.sso.login_timeout_secs as i64 * 1000;
    let state_ok = cb.state.as_deref().is_some_and(|s| {
        use subtle::ConstantTimeEq;
        bool::from(s.as_bytes().ct_eq(pending.s.as_bytes()))
    });
    if pending.p != id || !state_ok {
        let shown =
            "The sign-in answer does not match the sign-in started here; start again".into();
        return refuse("state mismatch", None, None, shown).await;
    }
    if !fresh {
        let shown = "The sign-in took too long; start again".into();
        return refuse("sign-in expired", None, None, shown).await;
    }
    // only now, for a sign-in started here, what the provider said: logged without control
    // characters, shown as a fixed text
    if let Some(e) = cb.error {
        let e: String = e.chars().filter(|c| !c.is_control()).take(300).collect();
        let shown = "The provider did not sign you in".into();
        return refuse(&format!("provider answered {e}"), None, None, shown).await;
    }
    let Some(code) = cb.code else {
        return refuse("no code", None, None, "The provider sent no code".into()).await;
    };
    let (p, secret) = provider(app, id).await?;
    let verified = if p.id == GITHUB {
        github_email(&p, secret, callback_url, code, pending.v).await
    } else {
        oidc_email(&p, secret, callback_url, code, pending.v, pending.n).await
    };
    let email = match verified {
        Ok(Ok(e)) => e,
        Ok(Err(Why { shown, detail })) => {
            return refuse(&detail, None, None, shown.into()).await;
        }
        Err(e) => {
            let shown = crate::error::internal("SSO sign-in", &e);
            return refuse(
                "the provider could not be reached or answered wrongly",
                None,
                None,
                shown,
            )
            .await;
        }
    };
    let key = email.clone();
    let found = app.store.run(move |c| users::get_by_email(c, &key)).await?;
    let user: User = match found {
        Some(u) if u.deleted_at.is_some() => {
            let shown = "This account is deleted".into();
            return refuse("deleted user", Some(&email), Some(u.id), shown).await;
        }
        Some(u) if u.is_banned_now() => {
            let shown = "This user is banned".into();
            return refuse("banned", Some(&email), Some(u.id), shown).await;
        }
        Some(u) => u,
        None if app.config.sso.unknown_users == "create" => {
            let actor = Actor::web(None, Some(ip.to_string()));
            let name = email.split('@').next().unwrap_or("user").to_string();
            super::users::create(app, &actor, &name, &email, None, "user").await?
        }
        None => {
            let shown = format!("No account has the email {email}; ask an admin to create one");
            return refuse("unknown email", Some(&email), None, shown).await;
        }
    };
    let uid = user.id.clone();
    let done = open_session(app, user, ip, user_agent).await?;
    record(app, Some(uid), ip, id, Some(&email), "ok", None).await;
    Ok(Ok(done))
}

/// Why the provider's answer was refused: a fixed text for the sign-in page, and the detail for
/// the log and the audit row only.
struct Why {
    shown: &'static str,
    detail: String,
}

fn why(shown: &'static str, detail: impl Into<String>) -> Why {
    Why {
        shown,
        detail: detail.into(),
    }
}

/// The verified email of an OpenID Connect sign-in (`Ok(Err)`: the answer was refused).
async fn oidc_email(
    p: &sso::SsoProvider,
    secret: Option<String>,
    callback: &str,
    code: String,
    verifier: String,
    nonce: String,
) -> Result<std::result::Result<String, Why>> {
    let issuer = p
        .issuer
        .as_deref()
        .ok_or_else(|| Error::Conflict(format!("SSO provider '{}' has no issuer", p.id)))?;
    let meta = discover(issuer).await?;
    let client = CoreClient::from_provider_metadata(
        meta,
        ClientId::new(p.client_id.clone()),
        secret.map(ClientSecret::new),
    )
    .set_redirect_uri(redirect_url(callback)?);
    let token = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| upstream("token endpoint", e))?
        .set_pkce_verifier(PkceCodeVerifier::new(verifier))
        .request_async(&*HTTP)
        .await;
    let token = match token {
        Ok(t) => t,
        Err(e) => {
            let d = format!("the code was not accepted: {}", error_chain(&e));
            return Ok(Err(why(
                "The provider did not accept the sign-in; start again",
                d,
            )));
        }
    };
    let unverified = "The provider's answer could not be verified";
    let Some(id_token) = token.id_token() else {
        return Ok(Err(why(unverified, "the provider sent no ID token")));
    };
    let claims = match id_token.claims(&client.id_token_verifier(), &Nonce::new(nonce)) {
        Ok(c) => c.clone(),
        Err(e) => {
            let d = format!("the ID token did not verify: {e}");
            return Ok(Err(why(unverified, d)));
        }
    };
    let (mut email, mut verified) = (
        claims.email().map(|e| e.to_string()),
        claims.email_verified(),
    );
    if email.is_none() || verified != Some(true) {
        // not (verified) in the ID token: ask the userinfo endpoint, for the same subject
        if let Ok(req) =
            client.user_info(token.access_token().clone(), Some(claims.subject().clone()))
        {
            let info: std::result::Result<CoreUserInfoClaims, _> = req.request_async(&*HTTP).await;
            if let Ok(info) = info
                && info.email().is_some()
            {
                email = info.email().map(|e| e.to_string());
                verified = info.email_verified();
            }
        }
    }
    match (email, verified) {
        (Some(e), Some(true)) => Ok(Ok(e)),
        (Some(e), _) => Ok(Err(why(
            "The provider has not verified your email address",
            format!("email {e} not verified by the provider"),
        ))),
        (None, _) => Ok(Err(why(
            "The provider gave no email address",
            "no email in the ID token or from userinfo",
        ))),
    }
}

/// One entry of GitHub's `GET /user/emails`.
#[derive(Deserialize)]
struct GithubEmail {
    email: String,
    primary: bool,
    verified: bool,
}

/// The verified primary email of a GitHub sign-in.
async fn github_email(
    p: &sso::SsoProvider,
    secret: Option<String>,
    callback: &str,
    code: String,
    verifier: String,
) -> Result<std::result::Result<String, Why>> {
    let mut client = oauth2::basic::BasicClient::new(ClientId::new(p.client_id.clone()))
        .set_auth_uri(oauth2::AuthUrl::new(GITHUB_AUTHORIZE.into()).expect("a URL"))
        .set_token_uri(oauth2::TokenUrl::new(GITHUB_TOKEN.into()).expect("a URL"))
        .set_redirect_uri(redirect_url(callback)?);
    if let Some(s) = secret {
        client = client.set_client_secret(ClientSecret::new(s));
    }
    let token = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(PkceCodeVerifier::new(verifier))
        .request_async(&*HTTP)
        .await;
    let token = match token {
        Ok(t) => t,
        Err(e) => {
            let d = format!("the code was not accepted: {}", error_chain(&e));
            return Ok(Err(why(
                "GitHub did not accept the sign-in; start again",
                d,
            )));
        }
    };
    let emails: Vec<GithubEmail> = HTTP
        .get(GITHUB_EMAILS)
        .bearer_auth(token.access_token().secret())
        .header("accept", "application/vnd.github+json")
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| upstream("GitHub emails", e))?
        .json()
        .await
        .map_err(|e| upstream("GitHub emails", e))?;
    Ok(emails
        .into_iter()
        .find(|e| e.primary && e.verified)
        .map(|e| e.email)
        .ok_or_else(|| {
            why(
                "Your GitHub account has no verified primary email",
                "no verified primary email on the GitHub account",
            )
        }))
}

/// The audit row of an SSO sign-in or refusal.
async fn record(
    app: &App,
    user_id: Option<String>,
    ip: IpAddr,
    provider: &str,
    email: Option<&str>,
    outcome: &'static str,
    detail: Option<&str>,
) {
    let actor = Actor::web(user_id, Some(ip.to_string()));
    let args = json!({"provider": provider, "email": email});
    let event = crate::audit::Event {
        action: "login",
        arguments: &args,
        outcome,
        detail,
    };
    crate::audit::record(&app.store, app.config.audit, &actor, event).await;
}
