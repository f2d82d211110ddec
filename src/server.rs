//! Running the HTTP server: bind (with `TCP_NODELAY`, so a priming event and a result written
//! apart never meet the 40 ms Nagle/delayed-ACK stall), accept connections and serve the warp
//! routes on them with hyper, and stop cleanly: on shutdown every SSE stream ends, connections
//! drain, a hard deadline bounds the wait, and batched activity is flushed.
//!
//! The accept loop is trex's own (not `warp::serve`) so that slow and idle clients cannot hold
//! the server: a request head must arrive within `server.header_read_timeout_secs` (which also
//! ends idle keep-alive connections), a body within `server.body_read_timeout_secs`, and at
//! `server.max_connections` (kept below the open-file limit) the oldest connection whose current
//! request has not authenticated — none yet, a head or body trickling in, or idle after an
//! unauthenticated answer — is closed to make room for the new one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::error::{Error, Result};
use crate::http::{self, Mount};

/// A server that is running.
pub struct Running {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    pub app: Arc<App>,
    /// The servers being served (tools may be added to the admin server while it runs).
    pub catalogue: Arc<crate::servers::Catalogue>,
    task: JoinHandle<()>,
}

impl Running {
    /// Stops the server and waits for it (bounded by `shutdown_grace_secs` plus a little).
    pub async fn stop(self) {
        self.app.shutdown.cancel();
        let _ = self.task.await;
    }

    /// Waits until the server stops by itself (shutdown token cancelled elsewhere).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Binds a listener with `TCP_NODELAY` (inherited by accepted sockets) and `SO_REUSEADDR`.
pub fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let ctx = |e| Error::io(format!("cannot listen on {addr}"), e);
    let sock =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(ctx)?;
    sock.set_reuse_address(true).map_err(ctx)?;
    sock.set_tcp_nodelay(true).map_err(ctx)?;
    sock.set_nonblocking(true).map_err(ctx)?;
    sock.bind(&addr.into()).map_err(ctx)?;
    sock.listen(1024).map_err(ctx)?;
    tokio::net::TcpListener::from_std(sock.into()).map_err(ctx)
}

/// Starts serving the catalogue's servers, `extra` mounts and the health routes on the
/// configured address.
pub async fn start(
    app: Arc<App>,
    catalogue: Arc<crate::servers::Catalogue>,
    extra: Vec<Mount>,
) -> Result<Running> {
    let listener = bind(app.config.server.listen)?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("cannot read the bound address", e))?;
    // the job kinds of the domain layer, before the workers start
    crate::ops::runs::register(&app);
    crate::ops::backups::register(&app);
    crate::ops::migrations::register(&app);
    crate::tools::definitions::register_task_resumers(&app);
    crate::tools::jobs::register_task_resumer(&app);
    crate::tools::etl::register_task_resumers(&app);
    app.spawn_background()?;
    crate::ops::backups::spawn_schedule(&app);
    let node = crate::ops::cluster::register(&app, &addr.to_string()).await?;
    let _ = app.node.set(node);
    // installed plugins: their tools on the admin server, the function service
    let _ = app.catalogue.set(catalogue.clone());
    crate::ops::plugins::sweep(&app).await;
    crate::ops::plugins::publish(&app).await;
    // pipelines that were running when the server last stopped (however it stopped)
    crate::ops::pipelines::resume_all(&app).await;
    let routes = http::routes(app.clone(), catalogue.clone(), &extra);
    let lane = Arc::new(http::fast::FastLane::new(
        app.clone(),
        &http::mcp_mounts(&app, &catalogue, &extra),
    ));
    let grace = Duration::from_secs(app.config.server.shutdown_grace_secs);
    let stop = app.shutdown.clone();
    let app2 = app.clone();
    let task = tokio::spawn(async move {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        accept_loop(&app2, listener, routes, lane, &graceful).await;
        app2.sessions.close_streams();
        // connections drain while running jobs get the same grace to finish
        let connections = async {
            tokio::select! {
                _ = graceful.shutdown() => {}
                _ = tokio::time::sleep(grace) => {
                    tracing::warn!("connections still open after {grace:?}; stopping anyway");
                }
            }
        };
        tokio::join!(connections, app2.jobs.shutdown(grace));
        app2.tasks.close();
        if tokio::time::timeout(grace, app2.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks still running after {grace:?}; stopping anyway");
        }
        let _ = &stop;
        app2.flush().await;
        // a clean stop leaves everything in trex.db itself: a copy of a stopped data dir is whole
        if let Err(e) = app2.store.run(crate::store::checkpoint).await {
            tracing::warn!("WAL checkpoint at shutdown: {e}");
        }
    });
    Ok(Running {
        addr,
        app,
        catalogue,
        task,
    })
}

/// The soft open-file limit of this process (Linux), if it can be read.
fn open_file_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The connection cap: `server.max_connections`, lowered to leave 64 descriptors for the store,
/// the engine and logs under the open-file limit.
pub fn connection_cap(configured: usize) -> usize {
    match open_file_limit() {
        Some(n) => configured.min(n.saturating_sub(64)).max(8),
        None => configured,
    }
}

/// One open connection, as the cap sees it.
struct Conn {
    /// [`http::ConnMark`]: no request yet, an unauthenticated request in progress, or trusted.
    mark: Arc<std::sync::atomic::AtomicU8>,
    /// Cancelled to close it.
    kill: CancellationToken,
}

/// The open connections, oldest first.
#[derive(Default)]
struct Conns {
    next: std::sync::atomic::AtomicU64,
    map: std::sync::Mutex<std::collections::BTreeMap<u64, Conn>>,
}

impl Conns {
    /// Makes room for one more connection under `cap`: closes the oldest connection whose current
    /// request has not authenticated (no request yet, a head or body trickling in, idle after an
    /// unauthenticated answer). False when every connection is authenticated (the new one is
    /// refused).
    fn make_room(&self, cap: usize) -> bool {
        let mut m = self.map.lock().unwrap();
        if m.len() < cap {
            return true;
        }
        // connections that have sent nothing go first (a flood of bare connects), then ones
        // whose request has not authenticated yet
        let oldest_in = |state: u8| {
            m.iter()
                .find(|(_, c)| c.mark.load(std::sync::atomic::Ordering::Acquire) == state)
                .map(|(k, _)| *k)
        };
        let victim = oldest_in(http::ConnMark::NEW).or_else(|| oldest_in(http::ConnMark::PENDING));
        match victim {
            Some(k) => {
                if let Some(c) = m.remove(&k) {
                    c.kill.cancel();
                }
                true
            }
            None => false,
        }
    }

    fn add(&self) -> (u64, Arc<std::sync::atomic::AtomicU8>, CancellationToken) {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mark = Arc::new(std::sync::atomic::AtomicU8::new(http::ConnMark::NEW));
        let kill = CancellationToken::new();
        self.map.lock().unwrap().insert(
            id,
            Conn {
                mark: mark.clone(),
                kill: kill.clone(),
            },
        );
        (id, mark, kill)
    }

    fn remove(&self, id: u64) {
        self.map.lock().unwrap().remove(&id);
    }
}

/// What the connection's service answers a request with.
type ServiceFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<http::Response, std::convert::Infallible>> + Send>,
>;

/// Accepts connections until shutdown and serves each in its own task.
async fn accept_loop(
    app: &Arc<App>,
    listener: tokio::net::TcpListener,
    routes: warp::filters::BoxedFilter<(http::Response,)>,
    lane: Arc<http::fast::FastLane>,
    graceful: &hyper_util::server::graceful::GracefulShutdown,
) {
    let cap = connection_cap(app.config.server.max_connections);
    let header_timeout = Duration::from_secs(app.config.server.header_read_timeout_secs);
    let conns = Arc::new(Conns::default());
    let stop = app.shutdown.clone();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // out of descriptors and the like: wait a little instead of spinning
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        if !conns.make_room(cap) {
            tracing::warn!(%peer, "connection refused: {cap} connections are open and serving");
            drop(stream);
            continue;
        }
        let (id, mark, kill) = conns.add();
        let svc = warp::service(routes.clone());
        let lane = lane.clone();
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                // a request in progress is trusted once it authenticates (the guard marks it);
                // an unauthenticated one that was answered leaves the connection idle (evictable)
                mark.store(
                    http::ConnMark::PENDING,
                    std::sync::atomic::Ordering::Release,
                );
                let answered = mark.clone();
                // POST to an MCP server's path: the fast lane; everything else: warp's routes
                let fut = match lane.route(&req) {
                    Some(server) => {
                        let (lane, mark) = (lane.clone(), http::ConnMark(mark.clone()));
                        // boxed: hyper moves the service's future into place, and the
                        // request's whole state machine is many kilobytes
                        Box::pin(async move {
                            Ok::<_, std::convert::Infallible>(
                                lane.serve(server, req, peer, &mark).await,
                            )
                        }) as ServiceFuture
                    }
                    None => {
                        req.extensions_mut().insert(http::ClientAddr(peer));
                        req.extensions_mut().insert(http::ConnMark(mark.clone()));
                        let mut svc = svc.clone();
                        Box::pin(tower_service::Service::call(&mut svc, req)) as ServiceFuture
                    }
                };
                async move {
                    let r = fut.await;
                    let _ = answered.compare_exchange(
                        http::ConnMark::PENDING,
                        http::ConnMark::NEW,
                        std::sync::atomic::Ordering::AcqRel,
                        std::sync::atomic::Ordering::Acquire,
                    );
                    r
                }
            });
        let watcher = graceful.watcher();
        let conns = conns.clone();
        tokio::spawn(async move {
            let mut builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            builder
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout);
            let conn = builder
                .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), service);
            let conn = watcher.watch(conn);
            tokio::select! {
                r = conn => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, "connection ended: {e}");
                    }
                }
                _ = kill.cancelled() => {
                    tracing::debug!(%peer, "connection closed to make room (no request yet)");
                }
            }
            conns.remove(id);
        });
    }
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("cannot install the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
