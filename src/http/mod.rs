//! warp filters: one function per route, each with a `///` naming it, handlers separate
//! (`transport.rs` for MCP), guards before bodies, and one `recover` that turns every rejection
//! into JSON.

pub mod admin;
pub mod body;
pub mod endpoints;
pub mod fast;
pub mod guard;
pub mod plugins;
pub mod rejection;
pub mod stateless;
pub mod transport;
pub mod web_auth;

use std::sync::Arc;

use serde_json::json;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::{Filter, Reply};

use crate::app::App;
use crate::mcp::server::McpServer;
use guard::HostPolicy;
use rejection::json_response;

/// The response type every route yields.
pub type Response = warp::reply::Response;

/// The peer address of the connection a request came on (set by [`crate::server`]'s
/// connection loop as a request extension).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// How far the connection a request came on has got, for the connection cap: set by the
/// connection loop and the auth guard, read when the server must close a connection to make
/// room.
#[derive(Debug, Clone)]
pub struct ConnMark(pub Arc<std::sync::atomic::AtomicU8>);

impl ConnMark {
    /// No request yet.
    pub const NEW: u8 = 0;
    /// A request is in progress that has not authenticated yet.
    pub const PENDING: u8 = 1;
    /// Its request authenticated (an API key or the web session).
    pub const TRUSTED: u8 = 2;

    /// Marks the connection trusted (its request authenticated).
    pub fn trust(&self) {
        self.0
            .store(Self::TRUSTED, std::sync::atomic::Ordering::Release);
    }
}

/// Extracts the client's address, when known.
pub fn client_addr()
-> impl Filter<Extract = (Option<std::net::SocketAddr>,), Error = std::convert::Infallible> + Clone
{
    warp::ext::optional::<ClientAddr>().map(|c: Option<ClientAddr>| c.map(|c| c.0))
}

/// The body limit and read timeout from config.
pub fn body_of(
    app: &App,
    max: usize,
) -> impl Filter<Extract = (bytes::Bytes,), Error = warp::Rejection> + Clone + use<> {
    body::limited(
        max,
        std::time::Duration::from_secs(app.config.server.body_read_timeout_secs),
    )
}

/// An MCP server mounted at a path (`["trex", "mcp"]` → `/trex/mcp`).
#[derive(Clone)]
pub struct Mount {
    pub segments: Vec<String>,
    pub server: Arc<McpServer>,
}

impl Mount {
    /// The path as a string.
    pub fn path(&self) -> String {
        format!("/{}", self.segments.join("/"))
    }
}

/// The admin server's mount: `{base_path}/mcp`.
pub fn admin_mount(app: &App, catalogue: &crate::servers::Catalogue) -> Mount {
    let mut segments = app.config.base_segments();
    segments.push("mcp".into());
    Mount {
        segments,
        server: catalogue.admin(),
    }
}

/// The MCP servers at fixed paths: the admin server, the migrations server and `extra` (the
/// endpoint servers are found by id under `/api/v1/endpoints/`).
pub fn mcp_mounts(app: &App, catalogue: &crate::servers::Catalogue, extra: &[Mount]) -> Vec<Mount> {
    let mut mounts = vec![
        admin_mount(app, catalogue),
        Mount {
            segments: vec!["api".into(), "v1".into(), "mcp".into(), "migrations".into()],
            server: catalogue.migrations(),
        },
    ];
    mounts.extend(extra.iter().cloned());
    mounts
}

/// Every route of the server — the catalogue's servers (admin and endpoint servers), `extra`
/// mounts (the conformance fixtures), health, web sign-in — with rejections recovered as JSON.
pub fn routes(
    app: Arc<App>,
    catalogue: Arc<crate::servers::Catalogue>,
    extra: &[Mount],
) -> BoxedFilter<(Response,)> {
    let mounts = mcp_mounts(&app, &catalogue, extra);
    let policy = Arc::new(HostPolicy::from_config(&app.config));
    let mut all = root(app.clone())
        .or(health(app.clone()))
        .unify()
        .or(ready(app.clone()))
        .unify()
        .or(metrics(app.clone(), policy.clone()))
        .unify()
        .boxed();
    all = all
        .or(web_auth::routes(
            app.clone(),
            policy.clone(),
            &app.config.base_segments(),
        ))
        .unify()
        .boxed();
    all = all
        .or(admin::routes(
            app.clone(),
            policy.clone(),
            &app.config.base_segments(),
        ))
        .unify()
        .boxed();
    all = all
        .or(plugins::routes(app.clone(), policy.clone()))
        .unify()
        .boxed();
    all = all
        .or(endpoints::routes(app.clone(), policy.clone(), catalogue))
        .unify()
        .boxed();
    for m in &mounts {
        all = all.or(mcp(app.clone(), policy.clone(), m)).unify().boxed();
    }
    all.recover(rejection::handle_rejection).unify().boxed()
}

/// The request's query string, empty when it has none.
pub fn query() -> impl Filter<Extract = (String,), Error = std::convert::Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

/// Matches the leading path segments (and leaves the rest of the path).
fn exact_prefix(segments: &[String]) -> BoxedFilter<()> {
    segments.iter().fold(warp::any().boxed(), |f, s| {
        let s: &'static str = Box::leak(s.clone().into_boxed_str());
        f.and(warp::path(s)).boxed()
    })
}

/// Matches exactly these path segments.
fn exact_path(segments: &[String]) -> BoxedFilter<()> {
    exact_prefix(segments).and(warp::path::end()).boxed()
}

/// POST, GET, DELETE {mount path} — the MCP Streamable HTTP endpoint of one server.
pub fn mcp(app: Arc<App>, policy: Arc<HostPolicy>, mount: &Mount) -> BoxedFilter<(Response,)> {
    let path = exact_path(&mount.segments);
    let guard = guard::authenticated(app.clone(), policy);
    let limit = app.config.server.body_limit;
    let with = {
        let (app, server) = (app.clone(), mount.server.clone());
        warp::any()
            .map(move || (app.clone(), server.clone()))
            .untuple_one()
    };
    let post = path
        .clone()
        .and(warp::post())
        .and(with.clone())
        .and(guard.clone())
        .and(query())
        .and(body_of(&app, limit))
        .and_then(transport::post);
    let get = path
        .clone()
        .and(warp::get())
        .and(with.clone())
        .and(guard.clone())
        .and_then(transport::get);
    let delete = path
        .and(warp::delete())
        .and(with)
        .and(guard)
        .and_then(transport::delete);
    post.or(get).unify().or(delete).unify().boxed()
}

/// GET / — what this server is and where its MCP endpoint is (no key needed, nothing secret).
/// The URL is built only from a `Host` the server accepts (DNS-rebinding policy), else left out.
pub fn root(app: Arc<App>) -> BoxedFilter<(Response,)> {
    let mcp_path = format!("{}/mcp", app.config.server.base_path.trim_end_matches('/'));
    let policy = HostPolicy::from_config(&app.config);
    warp::path::end()
        .and(warp::get())
        .and(warp::header::optional::<String>("host"))
        .map(move |host: Option<String>| {
            let url = host
                .filter(|h| h.len() < 256 && !h.contains(['/', ' ', '"']) && policy.host_ok(h))
                .map(|h| format!("http://{h}{mcp_path}"));
            json_response(
                StatusCode::OK,
                &json!({
                    "name": "trex",
                    "version": env!("CARGO_PKG_VERSION"),
                    "mcp": {"path": mcp_path, "url": url, "auth": "Authorization: Bearer trex_… (an API key: trex api-key create, or the key printed at first start)"},
                    "endpoints": "/api/v1/endpoints/{id}/mcp",
                    "health": "/healthz",
                    "docs": "README.md of the trex repository: connecting a client, tools, configuration"
                }),
            )
        })
        .boxed()
}

/// GET /healthz — liveness.
pub fn health(_app: Arc<App>) -> BoxedFilter<(Response,)> {
    warp::path("healthz")
        .and(warp::path::end())
        .and(warp::get())
        .map(|| json_response(StatusCode::OK, &json!({"status": "ok"})))
        .boxed()
}

/// GET /readyz — readiness: the store answers and its schema is current.
pub fn ready(app: Arc<App>) -> BoxedFilter<(Response,)> {
    warp::path("readyz")
        .and(warp::path::end())
        .and(warp::get())
        .and_then(move || {
            let app = app.clone();
            async move {
                let v = app.store.schema_version().await;
                let want = crate::store::schema::current_version();
                let resp = match v {
                    Ok(v) if v == want => json_response(StatusCode::OK, &json!({"status": "ready", "schemaVersion": v})),
                    Ok(v) => json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &json!({"status": "not ready", "reason": format!("schema version {v}, want {want}")}),
                    ),
                    Err(e) => json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &json!({"status": "not ready", "reason": e.to_string()}),
                    ),
                };
                Ok::<_, warp::Rejection>(resp)
            }
        })
        .boxed()
}

/// GET /metrics — Prometheus text: the node's gauges (sessions, jobs, engine load, memory,
/// nodes) and counters (tool calls by server, tool and outcome; a latency histogram). Who may
/// read it is `server.metrics`: `off` (404), `local` (loopback callers only, 403 for others),
/// `key` (an API key, as the MCP routes check it).
pub fn metrics(app: Arc<App>, policy: Arc<HostPolicy>) -> BoxedFilter<(Response,)> {
    let base = warp::path("metrics")
        .and(warp::path::end())
        .and(warp::get());
    let mode = app.config.server.metrics.clone();
    let with = {
        let app = app.clone();
        warp::any().map(move || app.clone())
    };
    match mode.as_str() {
        "key" => base
            .and(with)
            .and(guard::authenticated(app.clone(), policy))
            .and_then(|app: Arc<App>, _p, _h| async move {
                Ok::<_, warp::Rejection>(metrics_body(&app).await)
            })
            .boxed(),
        "local" => base
            .and(with)
            .and(client_addr())
            .and_then(|app: Arc<App>, remote: Option<std::net::SocketAddr>| async move {
                if remote.is_some_and(|r| r.ip().is_loopback()) {
                    Ok::<_, warp::Rejection>(metrics_body(&app).await)
                } else {
                    Ok(json_response(
                        StatusCode::FORBIDDEN,
                        &json!({"error": "/metrics answers loopback callers only (server.metrics = \"local\"); set server.metrics = \"key\" to read it with an API key"}),
                    ))
                }
            })
            .boxed(),
        _ => base
            .map(|| {
                json_response(
                    StatusCode::NOT_FOUND,
                    &json!({"error": "/metrics is off (server.metrics = \"off\")"}),
                )
            })
            .boxed(),
    }
}

async fn metrics_body(app: &App) -> Response {
    let mut out = String::new();
    match crate::ops::cluster::status(app).await {
        Ok(st) => {
            let gauges: [(&str, &str, f64); 9] = [
                (
                    "trex_mcp_sessions",
                    "Live MCP sessions.",
                    st.sessions as f64,
                ),
                (
                    "trex_nodes_alive",
                    "Nodes alive (sharing the store, and peers that answer).",
                    st.total_nodes as f64,
                ),
                (
                    "trex_engine_active_queries",
                    "Engine queries running now.",
                    st.active_queries as f64,
                ),
                (
                    "trex_engine_queued_queries",
                    "Engine queries waiting for a slot.",
                    st.queued_queries as f64,
                ),
                ("trex_jobs_queued", "Jobs queued.", st.jobs_queued as f64),
                ("trex_jobs_running", "Jobs running.", st.jobs_running as f64),
                (
                    "trex_jobs_failed",
                    "Jobs that failed.",
                    st.jobs_failed as f64,
                ),
                (
                    "trex_process_resident_bytes",
                    "Resident memory of this process.",
                    st.rss_bytes as f64,
                ),
                (
                    "trex_memory_utilization_percent",
                    "Resident memory over the machine's memory.",
                    st.memory_utilization_pct,
                ),
            ];
            for (name, help, v) in gauges {
                out.push_str(&format!(
                    "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n"
                ));
            }
        }
        Err(e) => tracing::warn!("metrics: {e}"),
    }
    app.metrics.render(&mut out);
    warp::reply::with_header(out, "content-type", "text/plain; version=0.0.4").into_response()
}
