//! The HTTP listener: HTTP/1.1 over TCP (or TLS), with limits on connections and on how long one may
//! stay silent.
//!
//! - `http.header_timeout` bounds the time to a complete request head: for a new connection (which is
//!   closed if it sends nothing), and between requests on a kept-alive one (the idle timeout). HTTP/1 only:
//!   there is no protocol detection that would wait without a timer.
//! - `http.max_connections` open connections in all, `http.max_connections_per_client` from one address
//!   (addresses of `trusted_proxies`, which carry many clients, count only towards the total). A
//!   connection past either is closed at once; `tacet_http_connections_refused_total{reason}` counts them
//!   and `tacet_http_connections_open` shows the open ones.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum_server::accept::Accept;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::ServerConfig;

/// Open connections, in all and per client address.
#[derive(Debug)]
struct Counts {
    max_total: usize,
    max_per_client: usize,
    trusted: Vec<IpNet>,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

impl Counts {
    fn take(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, &'static str> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.0 >= self.max_total {
            return Err("total");
        }
        let per_client = !self.trusted.iter().any(|n| n.contains(&peer));
        if per_client {
            let mine = open.1.entry(peer).or_default();
            if *mine >= self.max_per_client {
                return Err("client");
            }
            *mine += 1;
        }
        open.0 += 1;
        metrics::gauge!("tacet_http_connections_open").set(open.0 as f64);
        Ok(Slot {
            counts: Arc::clone(self),
            peer: per_client.then_some(peer),
        })
    }
}

/// One open connection's place in [`Counts`], given back when the connection is dropped.
#[derive(Debug)]
struct Slot {
    counts: Arc<Counts>,
    peer: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().unwrap_or_else(|e| e.into_inner());
        open.0 -= 1;
        if let Some(peer) = self.peer
            && let Some(n) = open.1.get_mut(&peer)
        {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&peer);
            }
        }
        metrics::gauge!("tacet_http_connections_open").set(open.0 as f64);
    }
}

/// A TCP stream that holds its connection's slot.
#[derive(Debug)]
pub struct Counted {
    stream: TcpStream,
    _slot: Slot,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Counts each accepted connection in, refusing it past a limit; `TCP_NODELAY` on (answers are small).
#[derive(Debug, Clone)]
pub struct Limiter {
    counts: Arc<Counts>,
}

impl<S: Send + 'static> Accept<TcpStream, S> for Limiter {
    type Stream = Counted;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Counted, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let answer = (|| {
            let peer = stream.peer_addr()?.ip();
            let slot = self.counts.take(peer).map_err(|reason| {
                metrics::counter!("tacet_http_connections_refused_total", "reason" => reason)
                    .increment(1);
                io::Error::other(format!("connection limit ({reason}) reached"))
            })?;
            stream.set_nodelay(true)?;
            Ok((
                Counted {
                    stream,
                    _slot: slot,
                },
                service,
            ))
        })();
        std::future::ready(answer)
    }
}

impl Limiter {
    pub fn new(config: &ServerConfig, trusted: &[IpNet]) -> Self {
        Self {
            counts: Arc::new(Counts {
                max_total: config.max_connections.max(1),
                max_per_client: config.max_connections_per_client.max(1),
                trusted: trusted.to_vec(),
                open: Mutex::new((0, HashMap::new())),
            }),
        }
    }
}

/// Offers only HTTP/1.1 in the TLS handshake (ALPN): the listener speaks HTTP/1 alone, so that its
/// timeouts hold from the first byte. Call after every (re)load of the certificate.
pub fn http1_alpn(config: &axum_server::tls_rustls::RustlsConfig) {
    let mut inner = (*config.get_inner()).clone();
    inner.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.reload_from_config(Arc::new(inner));
}

/// Serves `app` on `listener` until `handle` shuts it down: TLS when `tls` is given, the limits of
/// `config` either way.
pub async fn serve(
    listener: std::net::TcpListener,
    app: axum::Router,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    config: &ServerConfig,
    trusted: &[IpNet],
    handle: axum_server::Handle<SocketAddr>,
) -> io::Result<()> {
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let limiter = Limiter::new(config, trusted);
    let timeout = config.header_timeout;
    // A refused connection is dropped (closed) by the server; nothing more to do with the error.
    let quiet = |_: Option<&SocketAddr>, _: &io::Error| {};
    match tls {
        Some(rustls) => {
            http1_alpn(&rustls);
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(rustls)
                .handshake_timeout(timeout)
                .acceptor(limiter);
            let mut server = axum_server::from_tcp(listener)?
                .acceptor(acceptor)
                .handle(handle)
                .http1_only()
                .first_request_timeout(timeout)
                .accept_error_handler(quiet);
            server.http_builder().http1().header_read_timeout(timeout);
            server.serve(app).await
        }
        None => {
            let mut server = axum_server::from_tcp(listener)?
                .acceptor(limiter)
                .handle(handle)
                .http1_only()
                .first_request_timeout(timeout)
                .accept_error_handler(quiet);
            server.http_builder().http1().header_read_timeout(timeout);
            server.serve(app).await
        }
    }
}
