//! The fast lane: `POST` to an MCP server at a fixed path (`{base}/mcp`, the migrations
//! server, the conformance fixtures) is answered straight from hyper's request — the same
//! guard ([`guard::authenticate`]), body limit and read timeout, and handler
//! ([`transport::answer_post`]) as the warp route, without walking the filter chain of every
//! other route first or copying the request's headers. Every other request (other methods,
//! other paths, a path that only looks similar) goes to warp as before, so the two cannot
//! disagree on anything but speed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use warp::http::{Method, header};

use super::guard::{self, HostPolicy};
use super::rejection::ApiError;
use super::{ConnMark, Mount, transport};
use crate::app::App;
use crate::mcp::server::McpServer;

/// The MCP servers the fast lane answers, by exact path.
pub struct FastLane {
    app: Arc<App>,
    policy: HostPolicy,
    mounts: HashMap<String, Arc<McpServer>>,
    limit: usize,
    timeout: Duration,
}

impl FastLane {
    /// The lane for `mounts` ([`super::mcp_mounts`]), with the server's body limit and timeout.
    pub fn new(app: Arc<App>, mounts: &[Mount]) -> FastLane {
        FastLane {
            policy: HostPolicy::from_config(&app.config),
            mounts: mounts
                .iter()
                .map(|m| (m.path(), m.server.clone()))
                .collect(),
            limit: app.config.server.body_limit,
            timeout: Duration::from_secs(app.config.server.body_read_timeout_secs),
            app,
        }
    }

    /// The server a request is for when the lane takes it: a `POST` to exactly a mount's path.
    pub fn route<B>(&self, req: &hyper::Request<B>) -> Option<Arc<McpServer>> {
        if req.method() != Method::POST {
            return None;
        }
        self.mounts.get(req.uri().path()).cloned()
    }

    /// Answers a request [`route`](Self::route) took, from `peer` on a connection marked
    /// `mark`.
    pub async fn serve(
        &self,
        server: Arc<McpServer>,
        req: hyper::Request<hyper::body::Incoming>,
        peer: SocketAddr,
        mark: &ConnMark,
    ) -> warp::reply::Response {
        let (parts, body) = req.into_parts();
        let principal = match guard::authenticate(
            &self.app,
            &self.policy,
            &parts.headers,
            Some(peer),
            Some(mark),
        )
        .await
        {
            Ok(p) => p,
            Err(e) => return e.into_response(),
        };
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let chunks = collect(body, self.limit);
        let body = match super::body::read(declared, chunks, self.limit, self.timeout).await {
            Ok(b) => b,
            Err(e) => return e.into_response(),
        };
        let query = parts.uri.query().unwrap_or("");
        transport::answer_post(
            self.app.clone(),
            server,
            principal,
            query,
            parts.headers,
            body,
        )
        .await
    }
}

/// The body, refused past `max` bytes however it arrives.
async fn collect(mut body: hyper::body::Incoming, max: usize) -> Result<Bytes, ApiError> {
    let mut out = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| super::body::unreadable_error())?;
        if let Ok(data) = frame.into_data() {
            super::body::append(&mut out, data, max)?;
        } // else trailers
    }
    Ok(out.freeze())
}
