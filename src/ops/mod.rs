//! Administrative operations shared by the MCP tools and the CLI: creating users and API keys
//! with every rule checked in one place. Synchronous, over a `&Connection`; async callers run them
//! through `Store::run`. One file per area as the domain layer grows ([`users`]).

pub mod users;

use rusqlite::Connection;

use crate::auth::keys;
use crate::auth::scopes::Scopes;
use crate::error::{Error, Result};
use crate::store::api_keys;
use crate::store::users as user_rows;
use crate::util::{parse_rfc3339, rfc3339};

/// Email of the admin created on first start.
pub const FIRST_ADMIN_EMAIL: &str = "admin@trex.local";

/// A freshly minted key: shown once, never stored.
#[derive(Debug, Clone)]
pub struct MintedKey {
    pub id: String,
    pub key: String,
    pub expires_at: Option<String>,
}

/// Checks an email address well enough to catch typos; the message names the field.
pub fn validate_email(email: &str) -> Result<()> {
    validate_email_as("`email`", email)
}

/// [`validate_email`] with the field named as the caller knows it (`--admin-email` on the CLI).
pub fn validate_email_as(field: &str, email: &str) -> Result<()> {
    let ok = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty()
                && !d.is_empty()
                && !d.contains('@')
                && !d.starts_with('.')
                && !d.ends_with('.')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{field} is not a valid address: {email:?}"
        )))
    }
}

/// Checks a display name (`field` names it in the message).
pub fn validate_name(field: &str, name: &str) -> Result<()> {
    let t = name.trim();
    if t.is_empty() {
        return Err(Error::Invalid(format!("`{field}` must not be empty")));
    }
    if t.chars().count() > 200 {
        return Err(Error::Invalid(format!(
            "`{field}` must be at most 200 characters"
        )));
    }
    Ok(())
}

/// Parses an optional expiry; it must be RFC 3339 and in the future.
pub fn parse_expiry(expires: Option<&str>) -> Result<Option<String>> {
    parse_expiry_as("`expiresAt`", expires)
}

/// [`parse_expiry`] for a field named `field` (`--until` on the CLI), also accepting a date
/// (`2027-01-31`, meaning its start, UTC).
pub fn parse_expiry_as(field: &str, expires: Option<&str>) -> Result<Option<String>> {
    let Some(s) = expires else { return Ok(None) };
    let t = parse_rfc3339(s)
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| d.and_utc())
        })
        .ok_or_else(|| {
            Error::Invalid(format!(
                "{field} is neither a date (2027-01-31) nor an RFC 3339 time (2027-01-31T12:00:00Z): {s:?}"
            ))
        })?;
    if t <= chrono::Utc::now() {
        return Err(Error::Invalid(format!("{field} must be in the future")));
    }
    Ok(Some(rfc3339(t)))
}

/// Creates a user (password already hashed, or none for SSO-only users).
pub fn create_user(
    conn: &Connection,
    name: &str,
    email: &str,
    role: &str,
    password_hash: Option<String>,
) -> Result<user_rows::User> {
    validate_name("name", name)?;
    validate_email(email)?;
    if role != "admin" && role != "user" {
        return Err(Error::Invalid(format!(
            "`role` must be admin or user, not {role:?}"
        )));
    }
    user_rows::insert(
        conn,
        &user_rows::NewUser {
            name: name.trim().to_string(),
            email: email.trim().to_string(),
            role: role.to_string(),
            password_hash,
        },
    )
}

/// Mints a key for an active admin user.
pub fn create_api_key(
    conn: &Connection,
    user_id: &str,
    name: &str,
    expires_at: Option<&str>,
    scopes: Option<&Scopes>,
) -> Result<MintedKey> {
    validate_name("name", name)?;
    if let Some(s) = scopes {
        s.validate()?;
    }
    let expires_at = parse_expiry(expires_at)?;
    let user =
        user_rows::get(conn, user_id)?.ok_or_else(|| Error::NotFound("User not found".into()))?;
    if user.role != "admin" {
        return Err(Error::Conflict(
            "API keys can only be created for admin users".into(),
        ));
    }
    if user.deleted_at.is_some() {
        return Err(Error::Conflict(
            "API keys cannot be created for a deleted user".into(),
        ));
    }
    if user.is_banned_now() {
        return Err(Error::Conflict(
            "API keys cannot be created for a banned user".into(),
        ));
    }
    let key = keys::generate();
    let id = api_keys::insert(
        conn,
        &user.id,
        name.trim(),
        &keys::hash(&key),
        &keys::prefix(&key),
        expires_at.as_deref(),
        scopes
            .map(|s| serde_json::to_string(s).expect("json"))
            .as_deref(),
    )?;
    Ok(MintedKey {
        id,
        key,
        expires_at,
    })
}

/// On an empty store, in one transaction: creates an admin and a key named `key_name` for it.
/// `None` when the store already has users.
pub fn bootstrap_admin(
    conn: &mut Connection,
    name: &str,
    email: &str,
    password_hash: Option<String>,
    key_name: &str,
) -> Result<Option<(user_rows::User, MintedKey)>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if user_rows::count(&tx)? > 0 {
        return Ok(None);
    }
    let user = create_user(&tx, name, email, "admin", password_hash)?;
    let key = create_api_key(&tx, &user.id, key_name, None, None)?;
    tx.commit()?;
    Ok(Some((user, key)))
}

/// The first start of `trex serve` on an empty store: the default admin and its key.
pub fn first_start(conn: &mut Connection) -> Result<Option<(user_rows::User, MintedKey)>> {
    bootstrap_admin(
        conn,
        "Administrator",
        FIRST_ADMIN_EMAIL,
        None,
        "first-start",
    )
}

/// A ready-to-paste Claude Desktop / Claude Code client configuration (seed 000's block).
pub fn client_config(url: &str, key: &str) -> String {
    let v = serde_json::json!({
        "mcpServers": {
            "trex": {
                "type": "http",
                "url": url,
                "headers": {"Authorization": format!("Bearer {key}")}
            }
        }
    });
    serde_json::to_string_pretty(&v).expect("json")
}
