//! `sso-*` tools: SSO (OIDC) providers. Client secrets are sealed with the master key; no tool
//! returns one (lists show `hasClientSecret`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{PageArgs, next_cursor, page};
use crate::mcp::tool::{Annotations, Tool, ToolCtx, ToolError};
use crate::ops::validate_name;
use crate::store::sso::{self, SsoProvider};

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
            "Create or update an SSO provider. `id` is lowercase letters, digits and _ (starting with a \
             letter). An empty or omitted `clientSecret` keeps the stored one; an omitted `enabled` keeps \
             the current value (new providers start disabled). The secret is sealed at rest.",
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

/// Result of `sso-list`.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SsoPage {
    pub providers: Vec<SsoProvider>,
    /// Cursor of the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

async fn sso_list(ctx: ToolCtx, a: PageArgs) -> Result<SsoPage, ToolError> {
    let page = page(a.limit, a.cursor.as_deref())?;
    let p = ctx.app.store.run(move |c| sso::list(c, &page)).await?;
    Ok(SsoPage {
        providers: p.items,
        next_cursor: next_cursor(p.next),
    })
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
    /// Omit to keep the current value (new providers start disabled).
    pub enabled: Option<bool>,
}

/// Result of `sso-save`.
#[derive(Serialize, JsonSchema)]
pub struct Saved {
    pub message: String,
    pub provider: SsoProvider,
}

fn valid_id(id: &str) -> bool {
    id.len() <= 64
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

async fn sso_save(ctx: ToolCtx, a: SaveArgs) -> Result<Saved, ToolError> {
    if !valid_id(&a.id) {
        return Err(ToolError::field(
            "id",
            "must be lowercase letters, digits and _ and start with a letter",
        ));
    }
    validate_name("displayName", &a.display_name)?;
    if a.client_id.trim().is_empty() {
        return Err(ToolError::field("clientId", "must not be empty"));
    }
    let sealed = a
        .client_secret
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            ctx.app
                .master
                .seal(s, &format!("sso_providers:{}:client_secret", a.id))
        });
    let (provider, created) = ctx
        .app
        .store
        .run(move |c| {
            sso::save(
                c,
                &a.id,
                a.display_name.trim(),
                a.client_id.trim(),
                sealed.as_deref(),
                a.enabled,
            )
        })
        .await?;
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
    let id = a.id.clone();
    if !ctx.app.store.run(move |c| sso::delete(c, &id)).await? {
        return Err(ToolError::Failed("SSO provider not found".into()));
    }
    Ok(Deleted {
        message: format!("SSO provider '{}' deleted", a.id),
    })
}
