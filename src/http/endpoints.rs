//! Routes of the per-database MCP servers (seed 002):
//! `GET /api/v1/endpoints/{id}/mcp` lists the servers of database `{id}`, and
//! `/api/v1/endpoints/{id}/mcp/{server}` serves one of them over the same transport, auth and
//! sessions as the admin server. Unknown databases or servers get 404 JSON; a key whose
//! `endpoints` scope leaves the database out gets 403.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, StatusCode};
use warp::{Filter, Rejection};

use super::guard::{self, HostPolicy};
use super::rejection::{ApiError, json_response};
use super::{Response, transport};
use crate::app::App;
use crate::auth::Principal;
use crate::mcp::server::McpServer;
use crate::servers::Catalogue;
use crate::tools::endpoint;

/// The endpoint routes.
pub fn routes(
    app: Arc<App>,
    policy: Arc<HostPolicy>,
    catalogue: Arc<Catalogue>,
) -> BoxedFilter<(Response,)> {
    let base = warp::path!("api" / "v1" / "endpoints" / String / "mcp" / ..);
    let with = {
        let app = app.clone();
        warp::any()
            .map(move || (app.clone(), catalogue.clone()))
            .untuple_one()
    };
    let auth = guard::authenticated(app.clone(), policy);
    let list = base
        .and(warp::path::end())
        .and(warp::get())
        .and(with.clone())
        .and(auth.clone())
        .and_then(list);
    let server = base
        .and(warp::path::param::<String>())
        .and(warp::path::end());
    let post = server
        .and(warp::post())
        .and(with.clone())
        .and(auth.clone())
        .and(crate::http::query())
        .and(crate::http::body_of(&app, app.config.server.body_limit))
        .and_then(post);
    let get = server
        .and(warp::get())
        .and(with.clone())
        .and(auth.clone())
        .and_then(get);
    let delete = server
        .and(warp::delete())
        .and(with)
        .and(auth)
        .and_then(delete);
    list.or(post)
        .unify()
        .or(get)
        .unify()
        .or(delete)
        .unify()
        .boxed()
}

/// Finds the database, checks scopes, and returns its server `name` (if given and offered).
async fn resolve(
    app: &Arc<App>,
    catalogue: &Catalogue,
    principal: &Principal,
    id: &str,
    name: Option<&str>,
) -> Result<(String, Option<Arc<McpServer>>), Rejection> {
    let db = crate::ops::databases::find(app, id)
        .await
        .map_err(|e| {
            tracing::error!("endpoint lookup failed: {e}");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error").reject()
        })?
        .ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, format!("Database '{id}' not found")).reject()
        })?;
    if principal
        .scopes
        .as_ref()
        .is_some_and(|s| !s.allows_endpoint(&db.id))
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            crate::auth::scopes::database_refusal(&db.id),
        )
        .reject());
    }
    let offered = endpoint::server_name(&db.dialect);
    let Some(name) = name else {
        return Ok((offered.to_string(), None));
    };
    // the dialect's name works as a path too: /mcp/postgresql is /mcp/postgres
    let name = if name == "postgresql" {
        "postgres"
    } else {
        name
    };
    if name != offered && name != crate::servers::MIGRATIONS {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "Database '{}' has no MCP server '{name}' (it offers '{offered}' and 'migrations')",
                db.id
            ),
        )
        .reject());
    }
    let generation = app
        .databases_changed
        .load(std::sync::atomic::Ordering::Acquire);
    let s = catalogue.endpoint(&db.id, name, generation);
    Ok((offered.to_string(), Some(s)))
}

/// GET /api/v1/endpoints/{id}/mcp
async fn list(
    id: String,
    app: Arc<App>,
    catalogue: Arc<Catalogue>,
    p: Arc<Principal>,
    _h: HeaderMap,
) -> Result<Response, Rejection> {
    let (name, _) = resolve(&app, &catalogue, &p, &id, None).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"servers": [
            {"name": name, "description": endpoint::describe(&name)},
            {"name": crate::servers::MIGRATIONS, "description": "Migrations scoped to this database: define_migration defaults `interlays` to it; lists show only definitions that touch it"},
        ]}),
    ))
}

/// POST /api/v1/endpoints/{id}/mcp/{server}
#[allow(clippy::too_many_arguments)] // one per value the route's filters extract
async fn post(
    id: String,
    name: String,
    app: Arc<App>,
    catalogue: Arc<Catalogue>,
    p: Arc<Principal>,
    h: HeaderMap,
    query: String,
    body: Bytes,
) -> Result<Response, Rejection> {
    let (_, s) = resolve(&app, &catalogue, &p, &id, Some(&name)).await?;
    transport::post(app, s.expect("named"), p, h, query, body).await
}

/// GET /api/v1/endpoints/{id}/mcp/{server}
async fn get(
    id: String,
    name: String,
    app: Arc<App>,
    catalogue: Arc<Catalogue>,
    p: Arc<Principal>,
    h: HeaderMap,
) -> Result<Response, Rejection> {
    let (_, s) = resolve(&app, &catalogue, &p, &id, Some(&name)).await?;
    transport::get(app, s.expect("named"), p, h).await
}

/// DELETE /api/v1/endpoints/{id}/mcp/{server}
async fn delete(
    id: String,
    name: String,
    app: Arc<App>,
    catalogue: Arc<Catalogue>,
    p: Arc<Principal>,
    h: HeaderMap,
) -> Result<Response, Rejection> {
    let (_, s) = resolve(&app, &catalogue, &p, &id, Some(&name)).await?;
    transport::delete(app, s.expect("named"), p, h).await
}
