//! `role-*` tools: application roles (separate from a user's admin/user role).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::page_of;
use crate::mcp::tool::{Annotations, Tool, ToolCtx, ToolError};
use crate::ops;
use crate::store::roles::Role;

/// The tools of this group.
pub fn tools() -> Vec<Tool> {
    vec![
        Tool::typed(
            "role-list",
            "List roles",
            "List application roles, newest first; `search` matches name or description literally. Paginated.",
            Annotations::READ,
            role_list,
        ),
        Tool::typed(
            "role-create",
            "Create a role",
            "Create an application role with a unique name (case-insensitive).",
            Annotations::CREATE,
            role_create,
        ),
        Tool::typed(
            "role-update",
            "Update a role",
            "Change a role's name and/or description.",
            Annotations::UPDATE,
            role_update,
        ),
        Tool::typed(
            "role-delete",
            "Delete a role",
            "Delete a role; its assignments to users are removed with it.",
            Annotations::DESTROY,
            role_delete,
        ),
    ]
}

/// Arguments of `role-list`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListArgs {
    /// Text to find in name or description; `%` and `_` match literally.
    pub search: Option<String>,
    // the page size: the schema's default, minimum and maximum say it all
    #[schemars(range(min = 1, max = 1000), extend("default" = 100))]
    pub limit: Option<u32>,
    /// From `nextCursor`.
    pub cursor: Option<String>,
}

page_of!(
    /// Result of `role-list`.
    RolePage,
    roles: Role
);

async fn role_list(ctx: ToolCtx, a: ListArgs) -> Result<RolePage, ToolError> {
    let page = ops::page(a.limit, a.cursor.as_deref())?;
    Ok(ops::roles::list(&ctx.app, a.search, page).await?.into())
}

/// Arguments of `role-create`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateArgs {
    /// Unique name.
    pub name: String,
    pub description: Option<String>,
}

async fn role_create(ctx: ToolCtx, a: CreateArgs) -> Result<Role, ToolError> {
    Ok(ops::roles::create(&ctx.app, &ctx.actor, &a.name, a.description).await?)
}

/// Arguments of `role-update`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateArgs {
    pub role_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
}

async fn role_update(ctx: ToolCtx, a: UpdateArgs) -> Result<Role, ToolError> {
    Ok(ops::roles::update(&ctx.app, &ctx.actor, &a.role_id, a.name, a.description).await?)
}

/// Arguments of `role-delete`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeleteArgs {
    pub role_id: String,
}

/// Result of `role-delete`.
#[derive(Serialize, JsonSchema)]
pub struct Deleted {
    pub id: String,
    pub message: String,
}

async fn role_delete(ctx: ToolCtx, a: DeleteArgs) -> Result<Deleted, ToolError> {
    let role = ops::roles::delete(&ctx.app, &ctx.actor, &a.role_id).await?;
    Ok(Deleted {
        id: a.role_id,
        message: format!("Role '{}' deleted", role.name),
    })
}
