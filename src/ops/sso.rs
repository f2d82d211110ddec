//! SSO providers: saved by id with their client secret sealed at rest (never shown again;
//! an empty secret keeps the stored one); new providers start disabled.

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
    /// `None` keeps the current value.
    pub enabled: Option<bool>,
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

/// Creates or updates a provider; `true` with it when it is new.
pub async fn save(app: &App, actor: &Actor, p: Provider) -> Result<(SsoProvider, bool)> {
    let args = json!({"id": p.id, "displayName": p.display_name, "clientId": p.client_id,
        "clientSecret": p.client_secret, "enabled": p.enabled});
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
                sso::save(
                    c,
                    &p.id,
                    p.display_name.trim(),
                    p.client_id.trim(),
                    sealed.as_deref(),
                    p.enabled,
                )
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
