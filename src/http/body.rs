//! Request bodies with a size limit that counts chunked bodies too (warp's own limit only checks
//! `Content-Length` and answers 411 to chunked requests), and a read timeout. One rule,
//! [`read`], for both the warp routes ([`limited`]) and the fast lane ([`super::fast`]).

use std::future::Future;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use warp::http::StatusCode;
use warp::{Filter, Rejection};

use super::rejection::ApiError;

/// The body as bytes, refused with 413 past `max` bytes, whether declared or streamed, and with
/// 408 when it does not arrive whole within `server.body_read_timeout_secs` (a slow trickle
/// cannot hold a connection).
pub fn limited(
    max: usize,
    timeout: Duration,
) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .and_then(move |len: Option<u64>, s| async move {
            let chunks = collect(s, max);
            read(len, chunks, max, timeout)
                .await
                .map_err(ApiError::reject)
        })
}

/// The body `chunks` collects, checked first against its declared length (413 past `max`)
/// and read within `timeout` (408). A small body has usually arrived with the headers: it is
/// read without arming a timer, which starts only when the body is not there yet.
pub async fn read(
    declared: Option<u64>,
    chunks: impl Future<Output = Result<Bytes, ApiError>>,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    if declared.is_some_and(|l| l > max as u64) {
        return Err(too_large_error(max));
    }
    let mut chunks = std::pin::pin!(chunks);
    if let std::task::Poll::Ready(r) = futures_util::poll!(chunks.as_mut()) {
        return r;
    }
    tokio::time::timeout(timeout, chunks)
        .await
        .unwrap_or_else(|_| Err(timeout_error(timeout)))
}

/// 413: the body is over `max` bytes.
pub fn too_large_error(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("Request body too large (limit {max} bytes)"),
    )
}

/// 408: the body did not arrive whole within `timeout`.
pub fn timeout_error(timeout: Duration) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        format!(
            "Request Timeout: the body did not arrive within {} s",
            timeout.as_secs()
        ),
    )
}

/// 400: the body could not be read (the connection broke mid-body).
pub fn unreadable_error() -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "Could not read the request body")
}

async fn collect<S, B>(s: S, max: usize) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut s = std::pin::pin!(s);
    let mut out = BytesMut::new();
    while let Some(chunk) = s.next().await {
        append(&mut out, chunk.map_err(|_| unreadable_error())?, max)?;
    }
    Ok(out.freeze())
}

/// Adds `chunk` to the body read so far, refusing a body past `max` bytes (413).
pub fn append(out: &mut BytesMut, mut chunk: impl Buf, max: usize) -> Result<(), ApiError> {
    if out.len() + chunk.remaining() > max {
        return Err(too_large_error(max));
    }
    while chunk.has_remaining() {
        let c = chunk.chunk();
        let n = c.len();
        out.extend_from_slice(c);
        chunk.advance(n);
    }
    Ok(())
}
