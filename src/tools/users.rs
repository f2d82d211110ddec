//! `user-*` tools: list, get and create users.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{next_cursor, page};
use crate::auth::password;
use crate::mcp::tool::{Annotations, Tool, ToolCtx, ToolError};
use crate::ops;
use crate::ops::users::Standing;
use crate::store::roles::{self, Role};
use crate::store::users::{self, User};
use crate::store::web_sessions;

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
            "Ban (`banned: true`, optional `reason` and `expiresAt`) or unban a user. A ban ends the \
             user's web and MCP sessions and stops their API keys until it is lifted or `expiresAt` \
             passes. Unbanning clears reason and expiry. You cannot ban yourself.",
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
    if a.search.as_ref().is_some_and(|s| s.chars().count() > 200) {
        return Err(ToolError::field("search", "must be at most 200 characters"));
    }
    let p = ctx
        .app
        .store
        .read(move |c| users::list(c, a.include_deleted, a.search.as_deref(), &page))
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

/// A user with their roles.
#[derive(Serialize, JsonSchema)]
pub struct UserWithRoles {
    #[serde(flatten)]
    pub user: User,
    pub roles: Vec<Role>,
}

async fn user_get(ctx: ToolCtx, a: GetArgs) -> Result<UserWithRoles, ToolError> {
    ctx.app
        .store
        .read(move |c| {
            let Some(user) = users::get(c, &a.user_id)? else {
                return Ok(None);
            };
            let roles = roles::of_user(c, &user.id)?;
            Ok(Some(UserWithRoles { user, roles }))
        })
        .await?
        .ok_or_else(not_found)
}

fn not_found() -> ToolError {
    ToolError::Failed("User not found".into())
}

/// What a change tool answers.
#[derive(Serialize, JsonSchema)]
pub struct Changed {
    pub message: String,
    pub user: User,
}

/// Ends a user's web and MCP sessions and forgets cached keys.
async fn end_sessions(ctx: &ToolCtx, user_id: &str) -> Result<(), ToolError> {
    let id = user_id.to_string();
    ctx.app
        .store
        .run(move |c| web_sessions::delete_user(c, &id))
        .await?;
    ctx.app.sessions.remove_user(user_id).await?;
    ctx.app.auth.invalidate();
    Ok(())
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
    let user = standing(&ctx, a.user_id, Standing::Role(role)).await?;
    if role == "user" {
        // an admin who is demoted loses the admin surfaces: end their sessions
        end_sessions(&ctx, &user.id).await?;
    } else {
        ctx.app.auth.invalidate();
    }
    Ok(Changed {
        message: format!("User '{}' is now {role}", user.email),
        user,
    })
}

/// Runs one standing change through the domain rule (self, last admin, deleted users).
async fn standing(ctx: &ToolCtx, target: String, change: Standing) -> Result<User, ToolError> {
    let actor = ctx.call.principal.user_id.clone();
    Ok(ctx
        .app
        .store
        .run(move |c| ops::users::change_standing(c, Some(&actor), &target, &change))
        .await?)
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
    let expires = if a.banned {
        ops::parse_expiry(a.expires_at.as_deref())
            .map_err(|e| ToolError::Invalid(format!("Invalid arguments: {e}")))?
    } else {
        None
    };
    let banned = a.banned;
    let change = Standing::Ban {
        banned,
        reason: a.reason,
        expires,
    };
    let user = standing(&ctx, a.user_id, change).await?;
    if banned {
        end_sessions(&ctx, &user.id).await?;
    } else {
        ctx.app.auth.invalidate();
    }
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
    let user = standing(&ctx, a.user_id, Standing::Deleted(true)).await?;
    end_sessions(&ctx, &user.id).await?;
    Ok(Changed {
        message: format!("User '{}' deleted", user.email),
        user,
    })
}

async fn user_restore(ctx: ToolCtx, a: UserArgs) -> Result<Changed, ToolError> {
    let user = standing(&ctx, a.user_id, Standing::Deleted(false)).await?;
    ctx.app.auth.invalidate();
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
    password::validate(&a.password)?;
    let pw = a.password;
    let hash = tokio::task::spawn_blocking(move || password::hash(&pw))
        .await
        .map_err(crate::error::Error::from)??;
    let id = a.user_id.clone();
    let found = ctx
        .app
        .store
        .run(move |c| users::set_password_hash(c, &a.user_id, &hash))
        .await?;
    if !found {
        return Err(not_found());
    }
    let sid = id.clone();
    ctx.app
        .store
        .run(move |c| web_sessions::delete_user(c, &sid))
        .await?;
    Ok(Done {
        message: format!("Password set for user {id}"),
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
    let msg = ctx
        .app
        .store
        .run(move |c| {
            if users::get(c, &a.user_id)?.is_none() {
                return Err(crate::Error::NotFound("User not found".into()));
            }
            if roles::get(c, &a.role_id)?.is_none() {
                return Err(crate::Error::NotFound("Role not found".into()));
            }
            Ok(if roles::assign(c, &a.user_id, &a.role_id)? {
                "Role assigned to user"
            } else {
                "User already has this role"
            })
        })
        .await?;
    Ok(Done {
        message: msg.into(),
    })
}

async fn user_role_remove(ctx: ToolCtx, a: UserRoleArgs) -> Result<Done, ToolError> {
    let removed = ctx
        .app
        .store
        .run(move |c| roles::unassign(c, &a.user_id, &a.role_id))
        .await?;
    if !removed {
        return Err(ToolError::Failed("Role assignment not found".into()));
    }
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
