//! `user-*` tools: users, their standing, passwords and application roles ([`ops::users`]).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::page_of;
use crate::mcp::tool::{Annotations, Tool, ToolCtx, ToolError};
use crate::ops;
use crate::ops::users::Standing;
use crate::store::roles::Role;
use crate::store::users::User;

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
            "Get one user by id, with the roles assigned to them.",
            Annotations::READ,
            user_get,
        ),
        Tool::typed(
            "user-update-role",
            "Change a user's role",
            "Set a user's role to admin or user. Demoting an admin ends their sessions and stops their \
             API keys at once. You cannot change your own role (so an admin always remains).",
            Annotations::UPDATE,
            user_update_role,
        ),
        Tool::typed(
            "user-ban",
            "Ban or unban a user",
            "Ban or unban a user. A ban ends the user's web and MCP sessions and stops their API \
             keys until it is lifted or `expiresAt` passes; unbanning clears reason and expiry. \
             You cannot ban yourself.",
            Annotations::UPDATE,
            user_ban,
        ),
        Tool::typed(
            "user-delete",
            "Delete a user (soft)",
            "Soft-delete a user: hidden from user-list (unless includeDeleted), sessions ended, API keys \
             refused. `user-restore` undoes it. You cannot delete yourself.",
            Annotations::DESTROY,
            user_delete,
        ),
        Tool::typed(
            "user-restore",
            "Restore a deleted user",
            "Undo `user-delete`.",
            Annotations::UPDATE,
            user_restore,
        ),
        Tool::typed(
            "user-set-password",
            "Set a user's password",
            "Set a user's password (at least 8 characters, stored as argon2id). Ends the user's web \
             sessions.",
            Annotations::UPDATE,
            user_set_password,
        ),
        Tool::typed(
            "user-role-assign",
            "Assign a role to a user",
            "Give a user an application role (see role-list).",
            Annotations::UPDATE,
            user_role_assign,
        ),
        Tool::typed(
            "user-role-remove",
            "Remove a role from a user",
            "Take an application role away from a user.",
            Annotations::DESTROY,
            user_role_remove,
        ),
        Tool::typed(
            "user-create",
            "Create a user",
            "Create a user. With `password` (stored as argon2id) the user can sign in with email and password; without one the user is SSO-only. `role` is admin or user (default user); only admins can hold API keys.",
            Annotations::CREATE,
            user_create,
        ),
    ]
}

/// Arguments of `user-list`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListArgs {
    /// Include soft-deleted users.
    #[serde(default)]
    pub include_deleted: bool,
    /// Text to find in name or email; `%` and `_` match literally.
    pub search: Option<String>,
    // the page size: the schema's default, minimum and maximum say it all
    #[schemars(range(min = 1, max = 1000), extend("default" = 100))]
    pub limit: Option<u32>,
    /// From `nextCursor`.
    pub cursor: Option<String>,
}

page_of!(
    /// Result of `user-list`.
    UserPage,
    users: User
);

async fn user_list(ctx: ToolCtx, a: ListArgs) -> Result<UserPage, ToolError> {
    let page = ops::page(a.limit, a.cursor.as_deref())?;
    Ok(
        ops::users::list(&ctx.app, a.include_deleted, a.search, page)
            .await?
            .into(),
    )
}

/// Arguments of `user-get`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GetArgs {
    /// The user's id.
    pub user_id: String,
}

/// A user with their roles.
#[derive(Serialize, JsonSchema)]
pub struct UserWithRoles {
    #[serde(flatten)]
    pub user: User,
    pub roles: Vec<Role>,
}

async fn user_get(ctx: ToolCtx, a: GetArgs) -> Result<UserWithRoles, ToolError> {
    let (user, roles) = ops::users::get(&ctx.app, &a.user_id).await?;
    Ok(UserWithRoles { user, roles })
}

/// What a change tool answers.
#[derive(Serialize, JsonSchema)]
pub struct Changed {
    pub message: String,
    pub user: User,
}

/// Arguments of `user-update-role`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateRoleArgs {
    pub user_id: String,
    /// `admin` or `user`.
    pub role: UserRole,
}

async fn user_update_role(ctx: ToolCtx, a: UpdateRoleArgs) -> Result<Changed, ToolError> {
    let role = a.role.as_str();
    let user = ops::users::change(&ctx.app, &ctx.actor, &a.user_id, Standing::Role(role)).await?;
    Ok(Changed {
        message: format!("User '{}' is now {role}", user.email),
        user,
    })
}

/// Arguments of `user-ban`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BanArgs {
    pub user_id: String,
    /// true to ban, false to lift a ban.
    pub banned: bool,
    /// Why (shown to admins).
    pub reason: Option<String>,
    /// When the ban ends (RFC 3339, in the future); omit for an open-ended ban.
    pub expires_at: Option<String>,
}

async fn user_ban(ctx: ToolCtx, a: BanArgs) -> Result<Changed, ToolError> {
    let banned = a.banned;
    let user = ops::users::ban(
        &ctx.app,
        &ctx.actor,
        &a.user_id,
        banned,
        a.reason,
        a.expires_at.as_deref(),
        "`expiresAt`",
    )
    .await?;
    Ok(Changed {
        message: format!(
            "User '{}' {}",
            user.email,
            if banned { "banned" } else { "unbanned" }
        ),
        user,
    })
}

/// Arguments naming one user.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UserArgs {
    pub user_id: String,
}

async fn user_delete(ctx: ToolCtx, a: UserArgs) -> Result<Changed, ToolError> {
    let user =
        ops::users::change(&ctx.app, &ctx.actor, &a.user_id, Standing::Deleted(true)).await?;
    Ok(Changed {
        message: format!("User '{}' deleted", user.email),
        user,
    })
}

async fn user_restore(ctx: ToolCtx, a: UserArgs) -> Result<Changed, ToolError> {
    let user =
        ops::users::change(&ctx.app, &ctx.actor, &a.user_id, Standing::Deleted(false)).await?;
    Ok(Changed {
        message: format!("User '{}' restored", user.email),
        user,
    })
}

/// Arguments of `user-set-password`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PasswordArgs {
    pub user_id: String,
    /// The new password (at least 8 characters).
    pub password: String,
}

/// A plain confirmation.
#[derive(Serialize, JsonSchema)]
pub struct Done {
    pub message: String,
}

async fn user_set_password(ctx: ToolCtx, a: PasswordArgs) -> Result<Done, ToolError> {
    let u = ops::users::set_password(&ctx.app, &ctx.actor, &a.user_id, a.password).await?;
    Ok(Done {
        message: format!("Password set for user {}", u.id),
    })
}

/// Arguments of `user-role-assign` and `user-role-remove`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UserRoleArgs {
    pub user_id: String,
    /// Id of the application role (from role-list).
    pub role_id: String,
}

async fn user_role_assign(ctx: ToolCtx, a: UserRoleArgs) -> Result<Done, ToolError> {
    let added = ops::users::assign_role(&ctx.app, &ctx.actor, &a.user_id, &a.role_id).await?;
    Ok(Done {
        message: if added {
            "Role assigned to user"
        } else {
            "User already has this role"
        }
        .into(),
    })
}

async fn user_role_remove(ctx: ToolCtx, a: UserRoleArgs) -> Result<Done, ToolError> {
    ops::users::remove_role(&ctx.app, &ctx.actor, &a.user_id, &a.role_id).await?;
    Ok(Done {
        message: "Role removed from user".into(),
    })
}

/// A user's role.
#[derive(Deserialize, JsonSchema, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
pub enum UserRole {
    Admin,
    #[default]
    User,
}

impl UserRole {
    fn as_str(self) -> &'static str {
        match self {
            UserRole::Admin => "admin",
            UserRole::User => "user",
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
    pub role: UserRole,
}

async fn user_create(ctx: ToolCtx, a: CreateArgs) -> Result<User, ToolError> {
    let role = a.role.as_str();
    Ok(ops::users::create(&ctx.app, &ctx.actor, &a.name, &a.email, a.password, role).await?)
}
