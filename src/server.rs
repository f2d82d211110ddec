//! Running the HTTP server: bind (with `TCP_NODELAY`, so a priming event and a result written
//! apart never meet the 40 ms Nagle/delayed-ACK stall), serve the routes, and stop cleanly: on
//! shutdown every SSE stream ends, warp drains connections, a hard deadline bounds the wait, and
//! batched activity is flushed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::app::App;
use crate::error::{Error, Result};
use crate::http::{self, Mount};
use crate::tools;

/// A server that is running.
pub struct Running {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    pub app: Arc<App>,
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

/// The admin server's mount: `{base_path}/mcp`.
pub fn admin_mount(app: &App) -> Mount {
    let mut segments = app.config.base_segments();
    segments.push("mcp".into());
    Mount {
        segments,
        server: Arc::new(tools::admin_server()),
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

/// Starts serving `mounts` (plus health routes) on the configured address.
pub async fn start(app: Arc<App>, mounts: Vec<Mount>) -> Result<Running> {
    let listener = bind(app.config.server.listen)?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("cannot read the bound address", e))?;
    app.spawn_background()?;
    let routes = http::routes(app.clone(), &mounts);
    let grace = Duration::from_secs(app.config.server.shutdown_grace_secs);
    let stop = app.shutdown.clone();
    let app2 = app.clone();
    let task = tokio::spawn(async move {
        let on_stop = {
            let (stop, app) = (stop.clone(), app2.clone());
            async move {
                stop.cancelled().await;
                app.sessions.close_streams();
            }
        };
        let server = warp::serve(routes)
            .incoming(listener)
            .graceful(on_stop)
            .run();
        tokio::select! {
            _ = server => {}
            _ = async { stop.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!("connections still open after {grace:?}; stopping anyway");
            }
        }
        app2.flush().await;
    });
    Ok(Running { addr, app, task })
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
