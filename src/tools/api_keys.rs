//! `api-key-*` tools: list, create and revoke API keys. A key is shown once, at creation.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::page_of;
use crate::auth::scopes::Scopes;
use crate::mcp::tool::{Annotations, Tool, ToolCtx, ToolError};
use crate::ops;
use crate::store::api_keys::ApiKey;

/// The tools of this group.
pub fn tools() -> Vec<Tool> {
    vec![
        Tool::typed(
            "api-key-list",
            "List API keys",
            "List API keys of every user (or of `userId`), newest first, with prefix, owner, last use, \
             expiry and revocation. Never shows a key itself. Paginated.",
            Annotations::READ,
            key_list,
        ),
        Tool::typed(
            "api-key-create",
            "Create an API key",
            "Create an API key for an admin user. The key (`trex_` + 48 hex) is in the result once and cannot be shown again; only its hash is stored.",
            Annotations::CREATE,
            key_create,
        ),
        Tool::typed(
            "api-key-revoke",
            "Revoke an API key",
            "Revoke an API key by id. Requests with it are refused from the next one on.",
            Annotations::DESTROY,
            key_revoke,
        ),
    ]
}

/// Arguments of `api-key-list`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListArgs {
    /// Only keys of this user.
    pub user_id: Option<String>,
    // the page size: the schema's default, minimum and maximum say it all
    #[schemars(range(min = 1, max = 1000), extend("default" = 100))]
    pub limit: Option<u32>,
    /// From `nextCursor`.
    pub cursor: Option<String>,
}

page_of!(
    /// Result of `api-key-list`.
    KeyPage,
    keys: ApiKey
);

async fn key_list(ctx: ToolCtx, a: ListArgs) -> Result<KeyPage, ToolError> {
    let page = ops::page(a.limit, a.cursor.as_deref())?;
    Ok(ops::keys::list(&ctx.app, a.user_id, page).await?.into())
}

/// Arguments of `api-key-create`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateArgs {
    /// Id of the admin user who will hold the key.
    pub user_id: String,
    /// A name to recognise the key by.
    pub name: String,
    /// Expiry, RFC 3339 (e.g. `2027-01-01T00:00:00Z`); omit for a key that does not expire.
    pub expires_at: Option<String>,
    /// Limits of the key; omit for an unrestricted key.
    pub scopes: Option<Scopes>,
}

/// Result of `api-key-create`.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedKey {
    pub id: String,
    /// The key. Shown only now.
    pub key: String,
    pub name: String,
    pub user_id: String,
    pub expires_at: Option<String>,
    pub scopes: Option<Scopes>,
    pub note: String,
}

async fn key_create(ctx: ToolCtx, a: CreateArgs) -> Result<CreatedKey, ToolError> {
    let minted = ops::keys::create(
        &ctx.app,
        &ctx.actor,
        &a.user_id,
        &a.name,
        a.expires_at.as_deref(),
        "`expiresAt`",
        a.scopes.clone(),
    )
    .await?;
    Ok(CreatedKey {
        id: minted.id,
        key: minted.key,
        name: a.name.trim().to_string(),
        user_id: a.user_id,
        expires_at: minted.expires_at,
        scopes: a.scopes,
        note: "Store this key now: it cannot be shown again.".into(),
    })
}

/// Arguments of `api-key-revoke`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RevokeArgs {
    /// Id of the key (from `api-key-list`).
    pub key_id: String,
}

/// Result of `api-key-revoke`.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Revoked {
    pub id: String,
    pub message: String,
}

async fn key_revoke(ctx: ToolCtx, a: RevokeArgs) -> Result<Revoked, ToolError> {
    let key = ops::keys::revoke(&ctx.app, &ctx.actor, &a.key_id).await?;
    Ok(Revoked {
        id: a.key_id,
        message: format!("API key '{}' ({}...) revoked", key.name, key.key_prefix),
    })
}
