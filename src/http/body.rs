//! Request bodies with a size limit that counts chunked bodies too (warp's own limit only checks
//! `Content-Length` and answers 411 to chunked requests).

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
    timeout: std::time::Duration,
) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .and_then(move |len: Option<u64>, s| async move {
            if len.is_some_and(|l| l > max as u64) {
                return Err(too_large(max));
            }
            match tokio::time::timeout(timeout, collect(s, max)).await {
                Ok(r) => r,
                Err(_) => Err(timeout_error(timeout).reject()),
            }
        })
}

fn too_large(max: usize) -> Rejection {
    too_large_error(max).reject()
}

/// 413: the body is over `max` bytes.
pub fn too_large_error(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("Request body too large (limit {max} bytes)"),
    )
}

/// 408: the body did not arrive whole within `timeout`.
pub fn timeout_error(timeout: std::time::Duration) -> ApiError {
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

async fn collect<S, B>(s: S, max: usize) -> Result<Bytes, Rejection>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut s = std::pin::pin!(s);
    let mut out = BytesMut::new();
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|_| unreadable_error().reject())?;
        append(&mut out, chunk, max).map_err(ApiError::reject)?;
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
