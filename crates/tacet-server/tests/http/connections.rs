//! The listener's own limits, on a real socket: a connection that says nothing is closed after the
//! header timeout, so is a kept-alive one left idle, and one address cannot hold more than its share of
//! connections while another address is still served.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::*;

/// A server on a free loopback port with `config`'s limits, serving `GET /ping`.
async fn listen(config: ServerConfig) -> (SocketAddr, axum_server::Handle<SocketAddr>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/ping", axum::routing::get(|| async { "pong" }));
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        tacet_server::listener::serve(listener, app, None, &config, &[], h)
            .await
            .unwrap()
    });
    // Until it accepts.
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (addr, handle)
}

/// Connects from `from` (any address of 127.0.0.0/8) to `to`.
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// How long until the server closes `stream` (reads end or fail), at most `within`.
async fn closed_after(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(
            within.saturating_sub(started.elapsed()),
            stream.read(&mut buf),
        )
        .await
        {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

async fn ping(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn silent_and_idle_connections_are_closed_after_the_header_timeout() {
    let config = ServerConfig {
        header_timeout: Duration::from_millis(400),
        ..ServerConfig::default()
    };
    let (addr, _handle) = listen(config).await;
    // Nothing sent at all.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let t = closed_after(&mut silent, Duration::from_secs(5)).await;
    assert!(
        t.is_some_and(|t| t >= Duration::from_millis(300)),
        "closed after {t:?}"
    );
    // Half a request head, then nothing (slow-loris).
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /ping HTTP/1.1\r\nHo").await.unwrap();
    assert!(
        closed_after(&mut slow, Duration::from_secs(5))
            .await
            .is_some()
    );
    // One request answered, then idle on keep-alive.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    assert!(ping(&mut idle).await.contains("pong"));
    let t = closed_after(&mut idle, Duration::from_secs(5)).await;
    assert!(t.is_some(), "an idle kept-alive connection stayed open");
}

#[tokio::test]
async fn one_address_cannot_hold_more_than_its_connections() {
    let config = ServerConfig {
        max_connections: 6,
        max_connections_per_client: 4,
        header_timeout: Duration::from_secs(30),
        ..ServerConfig::default()
    };
    let (addr, _handle) = listen(config).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = connect_from("127.0.0.1", addr).await;
        assert!(ping(&mut s).await.contains("pong"));
        held.push(s);
    }
    // The fifth from the same address is closed at once, unanswered.
    let mut fifth = connect_from("127.0.0.1", addr).await;
    let t = closed_after(&mut fifth, Duration::from_secs(5)).await;
    assert!(t.is_some_and(|t| t < Duration::from_secs(1)), "{t:?}");
    // Another address is served, up to the total of 6.
    let mut other = connect_from("127.0.0.2", addr).await;
    assert!(ping(&mut other).await.contains("pong"));
    let mut other2 = connect_from("127.0.0.3", addr).await;
    assert!(ping(&mut other2).await.contains("pong"));
    let mut seventh = connect_from("127.0.0.4", addr).await;
    assert!(
        closed_after(&mut seventh, Duration::from_secs(5))
            .await
            .is_some()
    );
    // Closing one gives its place back.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = connect_from("127.0.0.1", addr).await;
    assert!(ping(&mut again).await.contains("pong"));
}
