//! `app-*` tools: OAuth/OIDC client applications. The client secret is shown once, at create,
//! and sealed at rest. Deleting an app deletes its tokens and consents.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{PageArgs, page_of};
use crate::mcp::tool::{Annotations, Tool, ToolCtx, ToolError};
use crate::ops;
use crate::ops::apps::{AppType, Urls};
use crate::store::apps::OauthApp;

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
            "Register an OAuth/OIDC client application. Redirect URLs are absolute (web: https, or \
             http on localhost; native: a custom scheme too). The client secret is shown once, in \
             the result.",
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

page_of!(
    /// Result of `app-list`.
    AppPage,
    apps: OauthApp
);

async fn app_list(ctx: ToolCtx, a: PageArgs) -> Result<AppPage, ToolError> {
    Ok(ops::apps::list(&ctx.app, a.page()?).await?.into())
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
    let new = ops::apps::NewApplication {
        name: a.name,
        redirect_urls: a.redirect_urls,
        kind: a.kind,
        icon: a.icon,
        metadata: a.metadata,
    };
    let (app, secret) = ops::apps::create(&ctx.app, &ctx.actor, new).await?;
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
    let changes = ops::apps::Changes {
        name: a.name,
        redirect_urls: a.redirect_urls,
        kind: a.kind,
        disabled: a.disabled,
        icon: a.icon,
        metadata: a.metadata,
    };
    Ok(ops::apps::update(&ctx.app, &ctx.actor, &a.app_id, changes).await?)
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
    let (app, tokens, consents) = ops::apps::delete(&ctx.app, &ctx.actor, &a.app_id).await?;
    Ok(Deleted {
        message: format!("Application '{}' deleted", app.name),
        tokens_removed: tokens,
        consents_removed: consents,
    })
}
