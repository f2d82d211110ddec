//! OAuth applications: redirect URLs checked for the app type (https; http only for localhost;
//! custom schemes only for native apps; no fragments), metadata that is JSON, a client secret
//! sealed at rest and shown once, deletion with the tokens and consents issued to the app.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Actor, audited, invalid, validate_name};
use crate::app::App;
use crate::error::{Error, Result};
use crate::store::apps::{self, AppChanges, NewApp, OauthApp};
use crate::store::{Page, Paged};
use crate::util::random_hex;

/// Kinds of application.
#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AppType {
    #[default]
    Web,
    Native,
}

impl AppType {
    fn as_str(self) -> &'static str {
        match self {
            AppType::Web => "web",
            AppType::Native => "native",
        }
    }
}

/// Redirect URLs: a comma-separated string (trexsql's form) or an array.
#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone)]
#[serde(untagged)]
pub enum Urls {
    List(Vec<String>),
    Csv(String),
}

/// A new application.
#[derive(Debug, Clone)]
pub struct NewApplication {
    pub name: String,
    pub redirect_urls: Urls,
    pub kind: AppType,
    pub icon: Option<String>,
    /// JSON text.
    pub metadata: Option<String>,
}

/// Changes to an application; `None` keeps a field.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub name: Option<String>,
    pub redirect_urls: Option<Urls>,
    pub kind: Option<AppType>,
    pub disabled: Option<bool>,
    pub icon: Option<String>,
    pub metadata: Option<String>,
}

fn not_found() -> Error {
    Error::NotFound("Application not found".into())
}

/// Parses and checks redirect URLs for an app type.
fn check_urls(urls: &Urls, kind: AppType) -> Result<Vec<String>> {
    const F: &str = "redirectURLs";
    let raw: Vec<String> = match urls {
        Urls::List(v) => v.iter().map(|s| s.trim().to_string()).collect(),
        Urls::Csv(s) => s
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    };
    if raw.is_empty() {
        return Err(invalid(F, "must name at least one URL"));
    }
    for u in &raw {
        let parsed =
            url::Url::parse(u).map_err(|e| invalid(F, format!("has an invalid URL {u:?}: {e}")))?;
        if parsed.fragment().is_some() {
            return Err(invalid(F, format!("{u:?} must not have a #fragment")));
        }
        let local = matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
        let ok = match parsed.scheme() {
            "https" => parsed.host_str().is_some(),
            "http" => local,
            _ => kind == AppType::Native,
        };
        if !ok {
            return Err(invalid(
                F,
                format!(
                    "{u:?} must use https (http only for localhost; custom schemes only for native apps)"
                ),
            ));
        }
    }
    Ok(raw)
}

/// Checks that `metadata` is JSON; returns it normalized.
fn check_metadata(m: &str) -> Result<String> {
    serde_json::from_str::<serde_json::Value>(m)
        .map(|v| v.to_string())
        .map_err(|e| invalid("metadata", format!("is not valid JSON: {e}")))
}

/// Applications, newest first.
pub async fn list(app: &App, page: Page) -> Result<Paged<OauthApp>> {
    app.store.run(move |c| apps::list(c, &page)).await
}

/// Creates an application owned by the caller; returns it with its client secret (shown once).
pub async fn create(app: &App, actor: &Actor, a: NewApplication) -> Result<(OauthApp, String)> {
    let args = json!({"name": a.name, "redirectURLs": a.redirect_urls, "type": a.kind,
        "icon": a.icon, "metadata": a.metadata});
    audited(app, actor, "app-create", args, async {
        validate_name("name", &a.name)?;
        let urls = check_urls(&a.redirect_urls, a.kind)?;
        let metadata = a.metadata.as_deref().map(check_metadata).transpose()?;
        let id = uuid::Uuid::new_v4().to_string();
        let client_id = format!("trexapp_{}", random_hex(12));
        let secret = random_hex(32);
        let sealed = app
            .master
            .seal(&secret, &format!("oauth_apps:{id}:client_secret"));
        let owner = actor.user_id.clone();
        let created = app
            .store
            .write(move |c| {
                apps::insert(
                    c,
                    &NewApp {
                        id: &id,
                        name: a.name.trim(),
                        icon: a.icon.as_deref(),
                        metadata: metadata.as_deref(),
                        client_id: &client_id,
                        sealed_secret: &sealed,
                        redirect_urls: &urls,
                        kind: a.kind.as_str(),
                        user_id: owner.as_deref(),
                    },
                )
            })
            .await?;
        Ok((created, secret))
    })
    .await
}

/// Updates an application (a new type re-checks the stored redirect URLs).
pub async fn update(app: &App, actor: &Actor, app_id: &str, a: Changes) -> Result<OauthApp> {
    let args = json!({"appId": app_id, "name": a.name, "redirectURLs": a.redirect_urls,
        "type": a.kind, "disabled": a.disabled, "icon": a.icon, "metadata": a.metadata});
    audited(app, actor, "app-update", args, async {
        if a.name.is_none()
            && a.redirect_urls.is_none()
            && a.kind.is_none()
            && a.disabled.is_none()
            && a.icon.is_none()
            && a.metadata.is_none()
        {
            return Err(Error::Conflict("No fields to update".into()));
        }
        if let Some(n) = &a.name {
            validate_name("name", n)?;
        }
        let metadata = a.metadata.as_deref().map(check_metadata).transpose()?;
        let id = app_id.to_string();
        app.store
            .write(move |c| {
                let current = apps::get(c, &id)?.ok_or_else(not_found)?;
                let kind = a.kind.unwrap_or(if current.kind == "native" {
                    AppType::Native
                } else {
                    AppType::Web
                });
                let urls = match &a.redirect_urls {
                    Some(u) => Some(check_urls(u, kind)?),
                    None if a.kind.is_some() => {
                        check_urls(&Urls::List(current.redirect_urls.clone()), kind)?;
                        None
                    }
                    None => None,
                };
                apps::update(
                    c,
                    &id,
                    &AppChanges {
                        name: a.name.as_deref().map(str::trim),
                        icon: a.icon.as_deref(),
                        metadata: metadata.as_deref(),
                        redirect_urls: urls.as_deref(),
                        kind: a.kind.map(AppType::as_str),
                        disabled: a.disabled,
                    },
                )?
                .ok_or_else(not_found)
            })
            .await
    })
    .await
}

/// Deletes an application with its tokens and consents; returns it and how many of each went.
pub async fn delete(app: &App, actor: &Actor, app_id: &str) -> Result<(OauthApp, i64, i64)> {
    audited(app, actor, "app-delete", json!({"appId": app_id}), async {
        let id = app_id.to_string();
        app.store
            .write(move |c| apps::delete(c, &id))
            .await?
            .ok_or_else(not_found)
    })
    .await
}
