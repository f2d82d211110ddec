//! API keys: minting (only for active admins; a scoped caller mints only keys within its own
//! scopes, whose tool globs must name tools some server offers), listing and revoking (by id,
//! or by the prefix `trex api-key list` shows). A key is shown once; only its hash is stored.

use serde_json::json;

use super::{Actor, audited, parse_expiry_as, validate_name};
use crate::app::App;
use crate::auth::keys;
use crate::auth::scopes::Scopes;
use crate::error::{Error, Result};
use crate::store::api_keys::{self, ApiKey};
use crate::store::{Conn, Page, Paged, users};

/// Why a caller cannot revoke the key it calls with.
const OWN_KEY: &str =
    "You cannot revoke the key this call uses; revoke it with another key or `trex api-key revoke`";

/// A freshly minted key: shown once, never stored.
#[derive(Debug, Clone)]
pub struct MintedKey {
    pub id: String,
    pub key: String,
    pub expires_at: Option<String>,
}

/// Mints a key for active admin `user_id` inside the caller's transaction (`expires_at`
/// already checked).
pub(super) fn mint(
    c: &Conn<'_>,
    user_id: &str,
    name: &str,
    expires_at: Option<String>,
    scopes: Option<&Scopes>,
) -> Result<MintedKey> {
    validate_name("name", name)?;
    let user = users::get(c, user_id)?.ok_or_else(|| Error::NotFound("User not found".into()))?;
    if user.role != "admin" {
        return Err(Error::Conflict(
            "API keys can only be created for admin users".into(),
        ));
    }
    if user.deleted_at.is_some() {
        return Err(Error::Conflict(
            "API keys cannot be created for a deleted user".into(),
        ));
    }
    if user.is_banned_now() {
        return Err(Error::Conflict(
            "API keys cannot be created for a banned user".into(),
        ));
    }
    let key = keys::generate();
    let id = api_keys::insert(
        c,
        &user.id,
        name.trim(),
        &keys::hash(&key),
        &keys::prefix(&key),
        expires_at.as_deref(),
        scopes
            .map(|s| serde_json::to_string(s).expect("json"))
            .as_deref(),
    )?;
    Ok(MintedKey {
        id,
        key,
        expires_at,
    })
}

/// Mints a key for `user` (an admin's id, or email) as `actor`. `expires` is a date or an
/// RFC 3339 time in the future, `expires_field` its name as the caller knows it.
pub async fn create(
    app: &App,
    actor: &Actor,
    user: &str,
    name: &str,
    expires: Option<&str>,
    expires_field: &str,
    scopes: Option<Scopes>,
) -> Result<MintedKey> {
    let args = json!({"userId": user, "name": name, "expiresAt": expires, "scopes": scopes});
    audited(app, actor, "api-key-create", args, async {
        validate_name("name", name)?;
        if let Some(s) = &scopes {
            s.validate()?;
        }
        Scopes::check_within(scopes.as_ref(), actor.scopes.as_ref())?;
        let plugin_tools = super::plugins::tool_names(app).await?;
        crate::servers::check_tool_globs(scopes.as_ref(), &plugin_tools)?;
        let expires = parse_expiry_as(expires_field, expires)?;
        let (user, name) = (user.to_string(), name.to_string());
        app.store
            .write(move |c| {
                let id = super::users::find(c, &user)?.id;
                mint(c, &id, &name, expires, scopes.as_ref())
            })
            .await
    })
    .await
}

/// Keys of every user (or of `user_id`), newest first; never the keys themselves.
pub async fn list(app: &App, user_id: Option<String>, page: Page) -> Result<Paged<ApiKey>> {
    app.store
        .run(move |c| api_keys::list(c, user_id.as_deref(), &page))
        .await
}

/// The number of keys that are neither revoked nor expired.
pub async fn count_active(app: &App) -> Result<i64> {
    app.store.run(api_keys::count_active).await
}

/// Revokes a key by id, or by the prefix `trex api-key list` shows when only one live key has
/// it. A caller cannot revoke the key it is calling with. Requests with the key are refused
/// from the next one on.
pub async fn revoke(app: &App, actor: &Actor, key: &str) -> Result<ApiKey> {
    let args = json!({"keyId": key});
    audited(app, actor, "api-key-revoke", args, async {
        if actor.key_id.as_deref() == Some(key) {
            return Err(Error::Conflict(
                OWN_KEY.into(),
            ));
        }
        let key = key.to_string();
        let mine = actor.key_id.clone();
        let revoked = app
            .store
            .write(move |c| {
                let id = if key.starts_with(keys::KEY_PREFIX) {
                    match api_keys::ids_by_prefix(c, &key)?.as_slice() {
                        [one] => one.clone(),
                        [] => key.clone(),
                        many => {
                            return Err(Error::Conflict(format!(
                                "{} live keys share the prefix {key}; revoke by id (trex api-key list)",
                                many.len()
                            )));
                        }
                    }
                } else {
                    key.clone()
                };
                if mine.as_deref() == Some(id.as_str()) {
                    return Err(Error::Conflict(
                        OWN_KEY.into(),
                    ));
                }
                api_keys::revoke(c, &id)?
                    .ok_or_else(|| Error::NotFound("API key not found or already revoked".into()))
            })
            .await?;
        app.auth.invalidate();
        Ok(revoked)
    })
    .await
}
