//! Users: listing, creating, their standing (role, ban, deletion), passwords and application
//! roles, for every front door. A standing change runs in one `BEGIN IMMEDIATE` transaction
//! that also checks "an active admin always remains" after the write, so two admins demoting,
//! banning or deleting each other at the same moment cannot both succeed: the second writer
//! sees the first's commit and is refused. A change that takes an admin away ends the user's
//! web and MCP sessions and stops their keys at once.

use serde_json::json;

use super::{Actor, audited, invalid, validate_email, validate_name};
use crate::app::App;
use crate::auth::password;
use crate::error::{Error, Result};
use crate::store::roles::{self, Role};
use crate::store::users::{self, NewUser, User};
use crate::store::{Conn, Page, Paged, web_sessions};

/// Email of the admin created on first start.
pub const FIRST_ADMIN_EMAIL: &str = "admin@trex.local";

/// One change to a user's standing.
#[derive(Debug, Clone)]
pub enum Standing {
    /// `admin` or `user`.
    Role(&'static str),
    /// Ban (with optional reason and RFC 3339 end) or lift a ban.
    Ban {
        banned: bool,
        reason: Option<String>,
        expires: Option<String>,
    },
    /// Soft-delete (`true`) or restore.
    Deleted(bool),
}

impl Standing {
    /// The words of "You cannot … yourself".
    fn verb(&self) -> &'static str {
        match self {
            Standing::Role(_) => "change the role of",
            Standing::Ban { .. } => "ban",
            Standing::Deleted(true) => "delete",
            Standing::Deleted(false) => "restore",
        }
    }

    /// The operation's name in the audit log (the MCP tool's).
    fn action(&self) -> &'static str {
        match self {
            Standing::Role(_) => "user-update-role",
            Standing::Ban { .. } => "user-ban",
            Standing::Deleted(true) => "user-delete",
            Standing::Deleted(false) => "user-restore",
        }
    }

    /// True when the change can take an admin away (so the last-admin rule must be checked,
    /// and the user's sessions end).
    fn may_remove_admin(&self) -> bool {
        matches!(
            self,
            Standing::Role("user") | Standing::Ban { banned: true, .. } | Standing::Deleted(true)
        )
    }
}

/// A user by id, or by email when `who` contains `@` (the CLI names users by email; the
/// message then names the address).
pub(super) fn find(c: &Conn<'_>, who: &str) -> Result<User> {
    if who.contains('@') {
        users::get_by_email(c, who)?
            .ok_or_else(|| Error::NotFound(format!("User not found: no user has the email {who}")))
    } else {
        users::get(c, who)?.ok_or_else(|| Error::NotFound("User not found".into()))
    }
}

/// Applies `change` to user `target` (id or email) on behalf of `actor` inside the caller's
/// transaction. Refuses acting on yourself, banning a deleted user, and any change that would
/// leave no active admin. Returns the user as it is now.
pub fn change_standing(
    c: &Conn<'_>,
    actor: Option<&str>,
    target: &str,
    change: &Standing,
) -> Result<User> {
    let before = find(c, target)?;
    if actor == Some(before.id.as_str()) {
        return Err(Error::Conflict(format!(
            "You cannot {} yourself",
            change.verb()
        )));
    }
    let id = before.id.as_str();
    let after = match change {
        Standing::Role(role) => users::set_role(c, id, role)?,
        Standing::Ban {
            banned,
            reason,
            expires,
        } => {
            if *banned && before.deleted_at.is_some() {
                return Err(Error::Conflict(format!(
                    "User '{}' is deleted; restore it before banning it",
                    before.email
                )));
            }
            users::set_ban(c, id, *banned, reason.as_deref(), expires.as_deref())?
        }
        Standing::Deleted(d) => users::set_deleted(c, id, *d)?,
    }
    .ok_or_else(|| Error::NotFound("User not found".into()))?;
    if change.may_remove_admin() && users::active_admins_except(c, "")? == 0 {
        // the caller's transaction is rolled back by the error
        return Err(Error::Conflict(format!(
            "'{}' is the last active admin; make another admin first (an active admin always remains)",
            before.email
        )));
    }
    if change.may_remove_admin() {
        web_sessions::delete_user(c, id)?;
    }
    Ok(after)
}

/// Changes user `target`'s standing (role, ban, deletion) as `actor`, with every rule of
/// [`change_standing`]; a change that takes an admin away ends the user's MCP sessions too.
pub async fn change(app: &App, actor: &Actor, target: &str, change: Standing) -> Result<User> {
    let args = match &change {
        Standing::Role(r) => json!({"userId": target, "role": r}),
        Standing::Ban {
            banned,
            reason,
            expires,
        } => json!({"userId": target, "banned": banned, "reason": reason, "expiresAt": expires}),
        Standing::Deleted(_) => json!({"userId": target}),
    };
    audited(app, actor, change.action(), args, async {
        let (who, target) = (actor.user_id.clone(), target.to_string());
        let ch = change.clone();
        let user = app
            .store
            .write(move |c| change_standing(c, who.as_deref(), &target, &ch))
            .await?;
        if change.may_remove_admin() {
            app.sessions.remove_user(&user.id).await?;
        }
        app.auth.invalidate();
        Ok(user)
    })
    .await
}

/// [`change`] to a ban: `expires` (a date or RFC 3339 time, in the future) only when banning;
/// `field` names it as the caller knows it (`expiresAt`, `--until`).
pub async fn ban(
    app: &App,
    actor: &Actor,
    target: &str,
    banned: bool,
    reason: Option<String>,
    expires: Option<&str>,
    field: &str,
) -> Result<User> {
    let expires = if banned {
        super::parse_expiry_as(field, expires)?
    } else {
        None
    };
    change(
        app,
        actor,
        target,
        Standing::Ban {
            banned,
            reason,
            expires,
        },
    )
    .await
}

/// Lists users, newest first (`search` in name or email, literally).
pub async fn list(
    app: &App,
    include_deleted: bool,
    search: Option<String>,
    page: Page,
) -> Result<Paged<User>> {
    super::at_most("search", search.as_deref(), 200)?;
    app.store
        .read(move |c| users::list(c, include_deleted, search.as_deref(), &page))
        .await
}

/// One user (by id, or by email) with the application roles assigned to them.
pub async fn get(app: &App, who: &str) -> Result<(User, Vec<Role>)> {
    let who = who.to_string();
    app.store
        .read(move |c| {
            let by_email = who.contains('@');
            users::get_with_roles(c, &who, by_email)?.ok_or_else(|| {
                Error::NotFound(if by_email {
                    format!("User not found: no user has the email {who}")
                } else {
                    "User not found".into()
                })
            })
        })
        .await
}

/// Hashes a password on the blocking pool after checking it (at least 8 characters).
async fn hash(pw: String) -> Result<String> {
    password::validate(&pw)?;
    tokio::task::spawn_blocking(move || password::hash(&pw)).await?
}

/// Creates a user inside the caller's transaction (password already hashed, or none for an
/// SSO-only user).
fn insert(
    c: &Conn<'_>,
    name: &str,
    email: &str,
    role: &str,
    password_hash: Option<String>,
) -> Result<User> {
    validate_name("name", name)?;
    validate_email(email)?;
    if role != "admin" && role != "user" {
        return Err(invalid(
            "role",
            format!("must be admin or user, not {role:?}"),
        ));
    }
    users::insert(
        c,
        &NewUser {
            name: name.trim().to_string(),
            email: email.trim().to_string(),
            role: role.to_string(),
            password_hash,
        },
    )
}

/// Creates a user. With a password (at least 8 characters) the user can sign in by email;
/// without one the user is SSO-only. `role` is `admin` or `user`.
pub async fn create(
    app: &App,
    actor: &Actor,
    name: &str,
    email: &str,
    password: Option<String>,
    role: &str,
) -> Result<User> {
    let args = json!({"name": name, "email": email, "role": role, "password": password});
    audited(app, actor, "user-create", args, async {
        validate_name("name", name)?;
        validate_email(email)?;
        let hash = match password {
            Some(pw) => Some(hash(pw).await?),
            None => None,
        };
        let (name, email, role) = (name.to_string(), email.to_string(), role.to_string());
        app.store
            .write(move |c| insert(c, &name, &email, &role, hash))
            .await
    })
    .await
}

/// Sets a user's password (at least 8 characters, stored as argon2id) and ends their web
/// sessions, in one transaction.
pub async fn set_password(app: &App, actor: &Actor, who: &str, password: String) -> Result<User> {
    let args = json!({"userId": who, "password": "*"});
    audited(app, actor, "user-set-password", args, async {
        let hash = hash(password).await?;
        let who = who.to_string();
        app.store
            .write(move |c| {
                let u = find(c, &who)?;
                users::set_password_hash(c, &u.id, &hash)?;
                web_sessions::delete_user(c, &u.id)?;
                Ok(u)
            })
            .await
    })
    .await
}

/// Gives a user an application role; `false` when they had it already.
pub async fn assign_role(app: &App, actor: &Actor, who: &str, role_id: &str) -> Result<bool> {
    let args = json!({"userId": who, "roleId": role_id});
    audited(app, actor, "user-role-assign", args, async {
        let (who, role_id) = (who.to_string(), role_id.to_string());
        app.store
            .write(move |c| {
                let u = find(c, &who)?;
                if roles::get(c, &role_id)?.is_none() {
                    return Err(Error::NotFound("Role not found".into()));
                }
                roles::assign(c, &u.id, &role_id)
            })
            .await
    })
    .await
}

/// Takes an application role away from a user.
pub async fn remove_role(app: &App, actor: &Actor, user_id: &str, role_id: &str) -> Result<()> {
    let args = json!({"userId": user_id, "roleId": role_id});
    audited(app, actor, "user-role-remove", args, async {
        let (u, r) = (user_id.to_string(), role_id.to_string());
        if app.store.write(move |c| roles::unassign(c, &u, &r)).await? {
            Ok(())
        } else {
            Err(Error::NotFound("Role assignment not found".into()))
        }
    })
    .await
}

/// On an empty store, in one transaction: creates an admin and a key named `key_name` for it.
/// `None` when the store already has users.
pub async fn bootstrap_admin(
    store: &crate::store::Store,
    name: &str,
    email: &str,
    password: Option<String>,
    key_name: &str,
) -> Result<Option<(User, super::keys::MintedKey)>> {
    let hash = match password {
        Some(pw) => Some(hash(pw).await?),
        None => None,
    };
    let (name, email, key_name) = (name.to_string(), email.to_string(), key_name.to_string());
    store
        .write(move |c| {
            if users::count(c)? > 0 {
                return Ok(None);
            }
            let user = insert(c, &name, &email, "admin", hash)?;
            let key = super::keys::mint(c, &user.id, &key_name, None, None)?;
            Ok(Some((user, key)))
        })
        .await
}

/// The first start of `trex serve` on an empty store: the default admin and its key.
pub async fn first_start(
    store: &crate::store::Store,
) -> Result<Option<(User, super::keys::MintedKey)>> {
    bootstrap_admin(
        store,
        "Administrator",
        FIRST_ADMIN_EMAIL,
        None,
        "first-start",
    )
    .await
}
