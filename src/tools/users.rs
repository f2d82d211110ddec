//! `user-*` tools: list, get and create users.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{next_cursor, page};
use crate::auth::password;
use crate::mcp::tool::{Annotations, Tool, ToolCtx, ToolError};
use crate::ops;
use crate::store::users::{self, User};

/// The tools of this group.
pub fn tools() -> Vec<Tool> {
    vec![
        Tool::typed(
            "user-list",
            "List users",
            "List users, newest first. `search` matches name or email literally (case-insensitive); \
             deleted users are left out unless `includeDeleted` is true. Paginated.",
            Annotations::READ,
            user_list,
        ),
        Tool::typed(
            "user-get",
            "Get a user",
            "Get one user by id.",
            Annotations::READ,
            user_get,
        ),
        Tool::typed(
            "user-create",
            "Create a user",
            "Create a user. With `password` (at least 8 characters, stored as argon2id) the user can \
             sign in with email and password; without one the user is SSO-only. `role` is admin or \
             user (default user); only admins can hold API keys.",
            Annotations::CREATE,
            user_create,
        ),
    ]
}

/// Arguments of `user-list`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListArgs {
    /// Include soft-deleted users (default false).
    #[serde(default)]
    pub include_deleted: bool,
    /// Text to find in name or email; `%` and `_` match literally.
    pub search: Option<String>,
    /// Page size, 1–1000 (default 100).
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<u32>,
    /// Opaque cursor from a previous page's `nextCursor`.
    pub cursor: Option<String>,
}

/// Result of `user-list`.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserPage {
    pub users: Vec<User>,
    /// Cursor of the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

async fn user_list(ctx: ToolCtx, a: ListArgs) -> Result<UserPage, ToolError> {
    let page = page(a.limit, a.cursor.as_deref())?;
    let p = ctx
        .app
        .store
        .run(move |c| users::list(c, a.include_deleted, a.search.as_deref(), &page))
        .await?;
    Ok(UserPage {
        users: p.items,
        next_cursor: next_cursor(p.next),
    })
}

/// Arguments of `user-get`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GetArgs {
    /// The user's id.
    pub user_id: String,
}

async fn user_get(ctx: ToolCtx, a: GetArgs) -> Result<User, ToolError> {
    ctx.app
        .store
        .read(move |c| users::get(c, &a.user_id))
        .await?
        .ok_or_else(|| ToolError::Failed("User not found".into()))
}

/// A user's role.
#[derive(Deserialize, JsonSchema, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    #[default]
    User,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }
}

/// Arguments of `user-create`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateArgs {
    /// Display name.
    pub name: String,
    /// Email address; unique (case-insensitive).
    pub email: String,
    /// Password for email sign-in (at least 8 characters). Omit for an SSO-only user.
    pub password: Option<String>,
    /// `admin` or `user` (default `user`).
    #[serde(default)]
    pub role: Role,
}

async fn user_create(ctx: ToolCtx, a: CreateArgs) -> Result<User, ToolError> {
    ops::validate_name("name", &a.name)?;
    ops::validate_email(&a.email)?;
    let hash = match a.password {
        Some(pw) => {
            password::validate(&pw)?;
            Some(
                tokio::task::spawn_blocking(move || password::hash(&pw))
                    .await
                    .map_err(crate::error::Error::from)??,
            )
        }
        None => None,
    };
    let role = a.role.as_str();
    let user = ctx
        .app
        .store
        .run(move |c| ops::create_user(c, &a.name, &a.email, role, hash))
        .await?;
    Ok(user)
}
