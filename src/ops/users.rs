//! The rules of a user's standing — role, ban, deletion — in one place for every front door
//! (MCP tools, CLI). Each change runs in one `BEGIN IMMEDIATE` transaction that also checks
//! "an active admin always remains" after the write, so two admins demoting, banning or deleting
//! each other at the same moment cannot both succeed: the second writer sees the first's commit
//! and is refused.

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::error::{Error, Result};
use crate::store::users::{self, User};

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

    /// True when the change can take an admin away (so the last-admin rule must be checked).
    fn may_remove_admin(&self) -> bool {
        matches!(
            self,
            Standing::Role("user") | Standing::Ban { banned: true, .. } | Standing::Deleted(true)
        )
    }
}

/// Applies `change` to user `target` on behalf of user `actor` (`None` for the CLI, which acts
/// as the machine's owner). Refuses acting on yourself, banning a deleted user, and any change
/// that would leave no active admin. Returns the user as it is now.
pub fn change_standing(
    conn: &Connection,
    actor: Option<&str>,
    target: &str,
    change: &Standing,
) -> Result<User> {
    if actor == Some(target) {
        return Err(Error::Conflict(format!(
            "You cannot {} yourself",
            change.verb()
        )));
    }
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let before =
        users::get(&tx, target)?.ok_or_else(|| Error::NotFound("User not found".into()))?;
    let after = match change {
        Standing::Role(role) => users::set_role(&tx, target, role)?,
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
            users::set_ban(&tx, target, *banned, reason.as_deref(), expires.as_deref())?
        }
        Standing::Deleted(d) => users::set_deleted(&tx, target, *d)?,
    }
    .ok_or_else(|| Error::NotFound("User not found".into()))?;
    if change.may_remove_admin() && users::active_admins_except(&tx, "")? == 0 {
        // dropping `tx` rolls the write back
        return Err(Error::Conflict(format!(
            "'{}' is the last active admin; make another admin first (an active admin always remains)",
            before.email
        )));
    }
    tx.commit()?;
    Ok(after)
}
