//! `sso-*` tools: SSO (OIDC) providers. Client secrets are sealed with the master key; no tool
//! returns one (lists show `hasClientSecret`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{PageArgs, page_of};
use crate::mcp::tool::{Annotations, Tool, ToolCtx, ToolError};
use crate::ops;
use crate::store::sso::SsoProvider;

/// The tools of this group.
pub fn tools() -> Vec<Tool> {
    vec![
        Tool::typed(
            "sso-list",
            "List SSO providers",
            "List SSO providers (id, display name, client id, enabled, whether a client secret is set). \
             Never shows a secret. Paginated.",
            Annotations::READ,
            sso_list,
        ),
        Tool::typed(
            "sso-save",
            "Create or update an SSO provider",
            "Create or update an SSO provider. The client secret is sealed at rest.",
            Annotations::UPDATE,
            sso_save,
        ),
        Tool::typed(
            "sso-delete",
            "Delete an SSO provider",
            "Delete an SSO provider by id.",
            Annotations::DESTROY,
            sso_delete,
        ),
    ]
}

page_of!(
    /// Result of `sso-list`.
    SsoPage,
    providers: SsoProvider
);

async fn sso_list(ctx: ToolCtx, a: PageArgs) -> Result<SsoPage, ToolError> {
    Ok(ops::sso::list(&ctx.app, a.page()?).await?.into())
}

/// Arguments of `sso-save`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SaveArgs {
    /// Provider id, e.g. `google` (lowercase letters, digits, _; starts with a letter).
    pub id: String,
    pub display_name: String,
    pub client_id: String,
    /// The OAuth client secret; empty or omitted keeps the stored one.
    pub client_secret: Option<String>,
    /// OpenID Connect issuer URL (its discovery document is at
    /// `{issuer}/.well-known/openid-configuration`); required to enable any provider but
    /// `github`. Omit to keep the stored one; `""` clears it.
    pub issuer: Option<String>,
    /// Omit to keep the current value (new providers start disabled).
    pub enabled: Option<bool>,
}

/// Result of `sso-save`.
#[derive(Serialize, JsonSchema)]
pub struct Saved {
    pub message: String,
    pub provider: SsoProvider,
}

async fn sso_save(ctx: ToolCtx, a: SaveArgs) -> Result<Saved, ToolError> {
    let p = ops::sso::Provider {
        id: a.id,
        display_name: a.display_name,
        client_id: a.client_id,
        client_secret: a.client_secret,
        issuer: a.issuer,
        enabled: a.enabled,
    };
    let (provider, created) = ops::sso::save(&ctx.app, &ctx.actor, p).await?;
    Ok(Saved {
        message: format!(
            "SSO provider '{}' {}",
            provider.id,
            if created { "created" } else { "saved" }
        ),
        provider,
    })
}

/// Arguments of `sso-delete`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeleteArgs {
    pub id: String,
}

/// Result of `sso-delete`.
#[derive(Serialize, JsonSchema)]
pub struct Deleted {
    pub message: String,
}

async fn sso_delete(ctx: ToolCtx, a: DeleteArgs) -> Result<Deleted, ToolError> {
    ops::sso::delete(&ctx.app, &ctx.actor, &a.id).await?;
    Ok(Deleted {
        message: format!("SSO provider '{}' deleted", a.id),
    })
}
