//! The plugin routes: `POST|GET|… /plugins/<name>/fn/<function>` runs a plugin function for an
//! authenticated caller (an API key whose scopes allow `plugin-function-invoke`, or the admin
//! page's session from the same origin), and `GET /plugins/<name>/<file>` serves the plugin's UI
//! files. Every other path under `/plugins/` goes through the same normalisation as
//! `plugin-function-invoke` ([`crate::plugins::normalise`]), so dot segments cannot reach a
//! function without a key or leave `/plugins/`. Answers that are not the plugin's are JSON.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::{Filter, Rejection};

use super::Response;
use super::guard::{HostPolicy, check_origin};
use super::rejection::json_response;
use crate::app::App;
use crate::auth::Principal;
use crate::ops::plugins::{Answer, Request};

fn header_map(h: &HeaderMap) -> BTreeMap<String, String> {
    h.iter()
        .filter_map(|(k, v)| {
            Some((
                k.as_str().to_ascii_lowercase(),
                v.to_str().ok()?.to_string(),
            ))
        })
        .collect()
}

fn reply(a: Answer) -> Response {
    let mut r = warp::reply::Response::new(a.body.into());
    *r.status_mut() = StatusCode::from_u16(a.status).unwrap_or(StatusCode::BAD_GATEWAY);
    for (k, v) in &a.headers {
        if let (Ok(k), Ok(v)) = (
            warp::http::header::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            r.headers_mut().insert(k, v);
        }
    }
    r.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn failed(e: crate::Error) -> Response {
    let msg = if e.is_internal() {
        crate::error::internal("plugin request", &e)
    } else {
        e.to_string()
    };
    json_response(e.status(), &json!({"error": msg}))
}

/// The `/plugins/…` routes.
pub fn routes(app: Arc<App>, policy: Arc<HostPolicy>) -> BoxedFilter<(Response,)> {
    let with = {
        let app = app.clone();
        warp::any().map(move || app.clone())
    };
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    // /plugins/<name>/fn/<function>, any method, authenticated
    let function = warp::path("plugins")
        .and(warp::path::param::<String>())
        .and(warp::path("fn"))
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::method())
        .and(warp::path::full())
        .and(query)
        .and(with.clone())
        .and(super::guard::authenticated(app.clone(), policy.clone()))
        .and(crate::http::body_of(&app, app.config.server.body_limit))
        .and_then(call_function);
    // everything else under /plugins/: UI files, or a refusal
    let policy2 = policy.clone();
    let other = warp::path("plugins")
        .and(not_a_function_path())
        .and(warp::method())
        .and(warp::path::full())
        .and(query)
        .and(with)
        .and(warp::header::headers_cloned())
        .and_then(move |m, full, q, app, h| serve_other(m, full, q, app, h, policy2.clone()));
    function.or(other).unify().boxed()
}

/// Passes every path but the literal `/plugins/<name>/fn/<function>`, so a refusal of the
/// function route (401, 403, 413) is the answer rather than this route's.
fn not_a_function_path() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::path::full()
        .and_then(|full: warp::path::FullPath| async move {
            let segs: Vec<&str> = full.as_str().trim_matches('/').split('/').collect();
            if segs.len() == 4 && segs[0] == "plugins" && segs[2] == "fn" {
                Err(warp::reject::not_found())
            } else {
                Ok(())
            }
        })
        .untuple_one()
}

#[allow(clippy::too_many_arguments)]
async fn call_function(
    _plugin: String,
    _function: String,
    method: warp::http::Method,
    full: warp::path::FullPath,
    query: String,
    app: Arc<App>,
    principal: Arc<Principal>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Result<Response, Rejection> {
    let allowed = principal
        .scopes
        .as_ref()
        .is_none_or(|s| s.allows_tool(crate::servers::ADMIN, "plugin-function-invoke", false));
    if !allowed {
        return Ok(json_response(
            StatusCode::FORBIDDEN,
            &json!({"error": "This key's scopes do not allow plugin functions (plugin-function-invoke)"}),
        ));
    }
    let actor = crate::audit::Actor::of(&principal, "plugins");
    let req = Request {
        method: method.as_str().to_string(),
        path: full.as_str().to_string(),
        query: crate::tools::plugins::query_map(&query),
        headers: header_map(&headers),
        body,
    };
    Ok(
        match crate::ops::plugins::serve(&app, Some(&actor), req).await {
            Ok(a) => reply(a),
            Err(e) => failed(e),
        },
    )
}

async fn serve_other(
    method: warp::http::Method,
    full: warp::path::FullPath,
    query: String,
    app: Arc<App>,
    headers: HeaderMap,
    policy: Arc<HostPolicy>,
) -> Result<Response, Rejection> {
    check_origin(&policy, &headers)?;
    let req = Request {
        method: method.as_str().to_string(),
        path: full.as_str().to_string(),
        query: crate::tools::plugins::query_map(&query),
        headers: header_map(&headers),
        body: bytes::Bytes::new(),
    };
    Ok(match crate::ops::plugins::serve(&app, None, req).await {
        Ok(a) => reply(a),
        Err(e) => failed(e),
    })
}
