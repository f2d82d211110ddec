//! Application roles (separate from a user's admin/user role): unique names
//! (case-insensitive), assignments removed with the role.

use serde_json::json;

use super::{Actor, audited, validate_name};
use crate::app::App;
use crate::error::{Error, Result};
use crate::store::roles::{self, Role};
use crate::store::{Page, Paged};

fn not_found() -> Error {
    Error::NotFound("Role not found".into())
}

/// Roles, newest first; `search` matches name or description literally.
pub async fn list(app: &App, search: Option<String>, page: Page) -> Result<Paged<Role>> {
    app.store
        .run(move |c| roles::list(c, search.as_deref(), &page))
        .await
}

/// Creates a role.
pub async fn create(
    app: &App,
    actor: &Actor,
    name: &str,
    description: Option<String>,
) -> Result<Role> {
    let args = json!({"name": name, "description": description});
    audited(app, actor, "role-create", args, async {
        validate_name("name", name)?;
        let name = name.trim().to_string();
        app.store
            .write(move |c| roles::insert(c, &name, description.as_deref()))
            .await
    })
    .await
}

/// Changes a role's name and/or description.
pub async fn update(
    app: &App,
    actor: &Actor,
    role_id: &str,
    name: Option<String>,
    description: Option<String>,
) -> Result<Role> {
    let args = json!({"roleId": role_id, "name": name, "description": description});
    audited(app, actor, "role-update", args, async {
        if name.is_none() && description.is_none() {
            return Err(Error::Conflict("No fields to update".into()));
        }
        if let Some(n) = &name {
            validate_name("name", n)?;
        }
        let name = name.map(|n| n.trim().to_string());
        let id = role_id.to_string();
        app.store
            .write(move |c| roles::update(c, &id, name.as_deref(), description.as_deref()))
            .await?
            .ok_or_else(not_found)
    })
    .await
}

/// Deletes a role with its assignments.
pub async fn delete(app: &App, actor: &Actor, role_id: &str) -> Result<Role> {
    audited(
        app,
        actor,
        "role-delete",
        json!({"roleId": role_id}),
        async {
            let id = role_id.to_string();
            app.store
                .write(move |c| roles::delete(c, &id))
                .await?
                .ok_or_else(not_found)
        },
    )
    .await
}
