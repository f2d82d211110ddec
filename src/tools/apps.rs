//! `app-*` tools: OAuth/OIDC client applications. The client secret is shown once, at create,
//! and sealed at rest. Deleting an app deletes its tokens and consents.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{PageArgs, next_cursor, page};
use crate::mcp::tool::{Annotations, Tool, ToolCtx, ToolError};
use crate::ops::validate_name;
use crate::store::apps::{self, AppChanges, NewApp, OauthApp};
use crate::util::random_hex;

/// The tools of this group.
pub fn tools() -> Vec<Tool> {
    vec![
        Tool::typed(
            "app-list",
            "List OAuth applications",
            "List OAuth/OIDC client applications (never their secrets). Paginated.",
            Annotations::READ,
            app_list,
        ),
        Tool::typed(
            "app-create",
            "Create an OAuth application",
            "Register an OAuth/OIDC client application. `redirectURLs` is a comma-separated string or an \
             array of absolute URLs (web apps: https, or http on localhost; native apps may use a custom \
             scheme). `metadata` must be JSON. The client secret is in the result once and cannot be \
             shown again.",
            Annotations::CREATE,
            app_create,
        ),
        Tool::typed(
            "app-update",
            "Update an OAuth application",
            "Change an application's name, redirect URLs, type, icon, metadata or disabled flag.",
            Annotations::UPDATE,
            app_update,
        ),
        Tool::typed(
            "app-delete",
            "Delete an OAuth application",
            "Delete an application together with the tokens and consents issued to it.",
            Annotations::DESTROY,
            app_delete,
        ),
    ]
}

/// Result of `app-list`.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppPage {
    pub apps: Vec<OauthApp>,
    /// Cursor of the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

async fn app_list(ctx: ToolCtx, a: PageArgs) -> Result<AppPage, ToolError> {
    let page = page(a.limit, a.cursor.as_deref())?;
    let p = ctx.app.store.run(move |c| apps::list(c, &page)).await?;
    Ok(AppPage {
        apps: p.items,
        next_cursor: next_cursor(p.next),
    })
}

/// Kinds of application.
#[derive(Deserialize, JsonSchema, Clone, Copy, Default, PartialEq, Eq)]
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
#[derive(Deserialize, JsonSchema, Clone)]
#[serde(untagged)]
pub enum Urls {
    List(Vec<String>),
    Csv(String),
}

/// Parses and checks redirect URLs for an app type.
fn check_urls(urls: &Urls, kind: AppType) -> Result<Vec<String>, ToolError> {
    let raw: Vec<String> = match urls {
        Urls::List(v) => v.iter().map(|s| s.trim().to_string()).collect(),
        Urls::Csv(s) => s
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    };
    if raw.is_empty() {
        return Err(ToolError::field(
            "redirectURLs",
            "must name at least one URL",
        ));
    }
    for u in &raw {
        let parsed = url::Url::parse(u).map_err(|e| {
            ToolError::field("redirectURLs", format!("has an invalid URL {u:?}: {e}"))
        })?;
        if parsed.fragment().is_some() {
            return Err(ToolError::field(
                "redirectURLs",
                format!("{u:?} must not have a #fragment"),
            ));
        }
        let local = matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
        let ok = match parsed.scheme() {
            "https" => parsed.host_str().is_some(),
            "http" => local,
            _ => kind == AppType::Native,
        };
        if !ok {
            return Err(ToolError::field(
                "redirectURLs",
                format!(
                    "{u:?} must use https (http only for localhost; custom schemes only for native apps)"
                ),
            ));
        }
    }
    Ok(raw)
}

/// Checks that `metadata` is JSON; returns it normalized.
fn check_metadata(m: &str) -> Result<String, ToolError> {
    serde_json::from_str::<serde_json::Value>(m)
        .map(|v| v.to_string())
        .map_err(|e| ToolError::field("metadata", format!("is not valid JSON: {e}")))
}

/// Arguments of `app-create`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateArgs {
    pub name: String,
    #[serde(rename = "redirectURLs")]
    pub redirect_urls: Urls,
    /// `web` (default) or `native`.
    #[serde(rename = "type", default)]
    pub kind: AppType,
    pub icon: Option<String>,
    /// JSON text.
    pub metadata: Option<String>,
}

/// Result of `app-create`.
#[derive(Serialize, JsonSchema)]
pub struct Created {
    #[serde(flatten)]
    pub app: OauthApp,
    /// The client secret. Shown only now.
    #[serde(rename = "clientSecret")]
    pub client_secret: String,
    pub note: String,
}

async fn app_create(ctx: ToolCtx, a: CreateArgs) -> Result<Created, ToolError> {
    validate_name("name", &a.name)?;
    let urls = check_urls(&a.redirect_urls, a.kind)?;
    let metadata = a.metadata.as_deref().map(check_metadata).transpose()?;
    let id = uuid::Uuid::new_v4().to_string();
    let client_id = format!("trexapp_{}", random_hex(12));
    let secret = random_hex(32);
    let sealed = ctx
        .app
        .master
        .seal(&secret, &format!("oauth_apps:{id}:client_secret"));
    let owner = ctx.call.principal.user_id.clone();
    let app = ctx
        .app
        .store
        .run(move |c| {
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
                    user_id: Some(&owner),
                },
            )
        })
        .await?;
    Ok(Created {
        app,
        client_secret: secret,
        note: "Store the client secret now: it cannot be shown again.".into(),
    })
}

/// Arguments of `app-update`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateArgs {
    #[serde(rename = "appId")]
    pub app_id: String,
    pub name: Option<String>,
    #[serde(rename = "redirectURLs")]
    pub redirect_urls: Option<Urls>,
    #[serde(rename = "type")]
    pub kind: Option<AppType>,
    pub disabled: Option<bool>,
    pub icon: Option<String>,
    /// JSON text.
    pub metadata: Option<String>,
}

async fn app_update(ctx: ToolCtx, a: UpdateArgs) -> Result<OauthApp, ToolError> {
    if a.name.is_none()
        && a.redirect_urls.is_none()
        && a.kind.is_none()
        && a.disabled.is_none()
        && a.icon.is_none()
        && a.metadata.is_none()
    {
        return Err(ToolError::Failed("No fields to update".into()));
    }
    if let Some(n) = &a.name {
        validate_name("name", n)?;
    }
    let id = a.app_id.clone();
    let current = ctx
        .app
        .store
        .run(move |c| apps::get(c, &id))
        .await?
        .ok_or_else(|| ToolError::Failed("Application not found".into()))?;
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
    let metadata = a.metadata.as_deref().map(check_metadata).transpose()?;
    ctx.app
        .store
        .run(move |c| {
            apps::update(
                c,
                &a.app_id,
                &AppChanges {
                    name: a.name.as_deref().map(str::trim),
                    icon: a.icon.as_deref(),
                    metadata: metadata.as_deref(),
                    redirect_urls: urls.as_deref(),
                    kind: a.kind.map(AppType::as_str),
                    disabled: a.disabled,
                },
            )
        })
        .await?
        .ok_or_else(|| ToolError::Failed("Application not found".into()))
}

/// Arguments of `app-delete`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteArgs {
    #[serde(rename = "appId")]
    pub app_id: String,
}

/// Result of `app-delete`.
#[derive(Serialize, JsonSchema)]
pub struct Deleted {
    pub message: String,
    #[serde(rename = "tokensRemoved")]
    pub tokens_removed: i64,
    #[serde(rename = "consentsRemoved")]
    pub consents_removed: i64,
}

async fn app_delete(ctx: ToolCtx, a: DeleteArgs) -> Result<Deleted, ToolError> {
    let (app, tokens, consents) = ctx
        .app
        .store
        .run(move |c| apps::delete(c, &a.app_id))
        .await?
        .ok_or_else(|| ToolError::Failed("Application not found".into()))?;
    Ok(Deleted {
        message: format!("Application '{}' deleted", app.name),
        tokens_removed: tokens,
        consents_removed: consents,
    })
}
