//! `role-*` tools: application roles (separate from a user's admin/user role).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{next_cursor, page};
use crate::mcp::tool::{Annotations, Tool, ToolCtx, ToolError};
use crate::ops::validate_name;
use crate::store::roles::{self, Role};

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
    /// Page size, 1–1000 (default 100).
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<u32>,
    /// Opaque cursor from a previous page's `nextCursor`.
    pub cursor: Option<String>,
}

/// Result of `role-list`.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolePage {
    pub roles: Vec<Role>,
    /// Cursor of the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

async fn role_list(ctx: ToolCtx, a: ListArgs) -> Result<RolePage, ToolError> {
    let page = page(a.limit, a.cursor.as_deref())?;
    let p = ctx
        .app
        .store
        .run(move |c| roles::list(c, a.search.as_deref(), &page))
        .await?;
    Ok(RolePage {
        roles: p.items,
        next_cursor: next_cursor(p.next),
    })
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
    validate_name("name", &a.name)?;
    let name = a.name.trim().to_string();
    Ok(ctx
        .app
        .store
        .run(move |c| roles::insert(c, &name, a.description.as_deref()))
        .await?)
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
    if a.name.is_none() && a.description.is_none() {
        return Err(ToolError::Failed("No fields to update".into()));
    }
    if let Some(n) = &a.name {
        validate_name("name", n)?;
    }
    let name = a.name.map(|n| n.trim().to_string());
    ctx.app
        .store
        .run(move |c| roles::update(c, &a.role_id, name.as_deref(), a.description.as_deref()))
        .await?
        .ok_or_else(|| ToolError::Failed("Role not found".into()))
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
    let id = a.role_id.clone();
    let role = ctx
        .app
        .store
        .run(move |c| roles::delete(c, &a.role_id))
        .await?
        .ok_or_else(|| ToolError::Failed("Role not found".into()))?;
    Ok(Deleted {
        id,
        message: format!("Role '{}' deleted", role.name),
    })
}
