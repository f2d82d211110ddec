//! Slow and idle connections are cut off: a request head must arrive in time (which also ends
//! idle keep-alive connections), a body too, and half-open connections cannot fill the server.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::TestServer;

async fn slow_server() -> TestServer {
    TestServer::start_with(
        |c| {
            c.server.header_read_timeout_secs = 1;
            c.server.body_read_timeout_secs = 1;
            c.server.max_connections = 16;
        },
        |s| s,
    )
    .await
}

/// Reads until the peer closes (true) or `wait` passes (false); what was read is returned too.
async fn closed_within(s: &mut TcpStream, wait: Duration) -> (bool, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (false, String::from_utf8_lossy(&got).into()),
            Ok(Ok(0)) | Ok(Err(_)) => return (true, String::from_utf8_lossy(&got).into()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn half_sent_headers_are_cut_off_and_cannot_lock_others_out() {
    let s = slow_server().await;
    let mut held = Vec::new();
    for _ in 0..40 {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(b"POST /trex/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await
            .unwrap();
        held.push(c);
    }
    // the server still answers while 40 half-open connections try to hold it (cap 16)
    let r = reqwest::get(format!("{}/healthz", s.base())).await.unwrap();
    assert_eq!(r.status(), 200);
    // and each of them is closed (evicted, or by the head timeout) without a request
    for mut c in held {
        let (closed, _) = closed_within(&mut c, Duration::from_secs(5)).await;
        assert!(closed, "a half-sent request head was kept open");
    }
}

#[tokio::test]
async fn a_trickled_body_times_out_and_an_idle_connection_is_closed() {
    let s = slow_server().await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(
        format!(
            "POST /trex/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
             Content-Length: 1000\r\n\r\n{{\"jsonrpc\"",
            s.key
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (_, text) = closed_within(&mut c, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("did not arrive"), "{text}");
    // a keep-alive connection that sends nothing after its response is closed too
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let (closed, text) = closed_within(&mut c, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(closed, "an idle keep-alive connection stayed open");
}

#[tokio::test]
async fn trickled_unauthenticated_bodies_cannot_lock_others_out() {
    let s = slow_server().await;
    let mut held = Vec::new();
    for _ in 0..40 {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(
            b"POST /trex/api/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
        )
        .await
        .unwrap();
        held.push(c);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // the cap is 16: new connections push out the oldest unauthenticated ones
    for _ in 0..3 {
        let r = reqwest::get(format!("{}/healthz", s.base())).await.unwrap();
        assert_eq!(r.status(), 200);
    }
}
