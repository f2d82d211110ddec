//! SSO providers: saved by id with their client secret sealed at rest (never shown again;
//! an empty secret keeps the stored one); new providers start disabled. The provider `github`
//! is GitHub's OAuth; any other id is an OpenID Connect provider found by discovery from its
//! `issuer` URL, which it needs before it can be enabled. Signing in through them is
//! [`crate::ops::sso_login`]'s.

use serde_json::json;

use super::{Actor, audited, invalid, validate_name};
use crate::app::App;
use crate::error::{Error, Result};
use crate::store::sso::{self, SsoProvider};
use crate::store::{Page, Paged};

/// What `sso-save` stores.
#[derive(Debug, Clone)]
pub struct Provider {
    pub id: String,
    pub display_name: String,
    pub client_id: String,
    /// Empty or `None` keeps the stored secret.
    pub client_secret: Option<String>,
    /// OIDC issuer URL; `None` keeps the stored one, `""` clears it.
    pub issuer: Option<String>,
    /// `None` keeps the current value.
    pub enabled: Option<bool>,
}

/// The id of the GitHub OAuth provider (not OpenID Connect: no issuer).
pub const GITHUB: &str = "github";

/// Checks an issuer URL: absolute `https` (or `http` to a loopback host, for a provider on
/// this machine), no query or fragment.
pub fn check_issuer(raw: &str) -> Result<String> {
    let bad = |why: &str| invalid("issuer", why);
    let u = url::Url::parse(raw.trim()).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    let loopback = match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => return Err(bad("must name a host")),
    };
    match u.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => return Err(bad("must be https (http only for a loopback host)")),
        _ => return Err(bad("must be an https URL")),
    }
    if u.query().is_some() || u.fragment().is_some() || !u.username().is_empty() {
        return Err(bad("must not have a query, fragment or user name"));
    }
    // kept exactly as given: the ID token's `iss` must equal it (some issuers end in `/`)
    Ok(raw.trim().to_string())
}

fn valid_id(id: &str) -> bool {
    id.len() <= 64
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Providers, newest first.
pub async fn list(app: &App, page: Page) -> Result<Paged<SsoProvider>> {
    app.store.run(move |c| sso::list(c, &page)).await
}

/// The enabled providers (for the sign-in page), by display name.
pub async fn enabled(app: &App) -> Result<Vec<SsoProvider>> {
    let mut all = app.store.run(sso::all).await?;
    all.retain(|p| p.enabled);
    all.sort_by(|a, b| a.display_name.cmp(&b.display_name));
    Ok(all)
}

/// Creates or updates a provider; `true` with it when it is new.
pub async fn save(app: &App, actor: &Actor, p: Provider) -> Result<(SsoProvider, bool)> {
    let args = json!({"id": p.id, "displayName": p.display_name, "clientId": p.client_id,
        "clientSecret": p.client_secret, "issuer": p.issuer, "enabled": p.enabled});
    audited(app, actor, "sso-save", args, async {
        if !valid_id(&p.id) {
            return Err(invalid(
                "id",
                "must be lowercase letters, digits and _ and start with a letter",
            ));
        }
        validate_name("displayName", &p.display_name)?;
        if p.client_id.trim().is_empty() {
            return Err(invalid("clientId", "must not be empty"));
        }
        let issuer = match p.issuer.as_deref().map(str::trim) {
            Some("") => Some(String::new()),
            Some(_) if p.id == GITHUB => {
                return Err(invalid(
                    "issuer",
                    "GitHub signs in by OAuth, not OpenID Connect: leave issuer out for `github`",
                ));
            }
            Some(i) => Some(check_issuer(i)?),
            None => None,
        };
        let sealed = p
            .client_secret
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| {
                app.master
                    .seal(s, &format!("sso_providers:{}:client_secret", p.id))
            });
        app.store
            .write(move |c| {
                let save = sso::Save {
                    id: &p.id,
                    display_name: p.display_name.trim(),
                    client_id: p.client_id.trim(),
                    sealed_secret: sealed.as_deref(),
                    issuer: issuer.as_deref(),
                    enabled: p.enabled,
                };
                sso::save(c, &save, |saved| {
                    if !saved.enabled {
                        Ok(())
                    } else if saved.id != GITHUB && saved.issuer.is_none() {
                        Err(invalid(
                            "issuer",
                            "is required to enable an OpenID Connect provider (the URL its discovery document is under)",
                        ))
                    } else if saved.id == GITHUB && !saved.has_client_secret {
                        Err(invalid(
                            "clientSecret",
                            "is required to enable GitHub sign-in",
                        ))
                    } else {
                        Ok(())
                    }
                })
            })
            .await
    })
    .await
}

/// Deletes a provider.
pub async fn delete(app: &App, actor: &Actor, id: &str) -> Result<()> {
    audited(app, actor, "sso-delete", json!({"id": id}), async {
        let key = id.to_string();
        if app.store.write(move |c| sso::delete(c, &key)).await? {
            Ok(())
        } else {
            Err(Error::NotFound("SSO provider not found".into()))
        }
    })
    .await
}
