//! `tacet health`: asks a running server's `/readyz`, for container health checks (the runtime image has
//! no curl) and scripts. Plain HTTP on the configured listen address; exits 0 only on 200.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::config::Config;

/// Where to ask: `addr`, else the configured listen address with an unspecified IP (`0.0.0.0`, `::`)
/// replaced by loopback.
pub fn target(config: &Config, addr: Option<SocketAddr>) -> SocketAddr {
    let mut addr = addr.unwrap_or(config.listen);
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    addr
}

/// `GET /readyz` at `addr`: Ok with the body on 200, else an error saying what answered.
pub fn check(config: &Config, addr: SocketAddr, timeout: Duration) -> anyhow::Result<String> {
    if config.tls.is_some() {
        bail!(
            "the server terminates TLS ([tls]); tacet health speaks plain HTTP: probe https://{addr}/readyz \
             with a TLS-capable client"
        );
    }
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("nothing answers at {addr}: is `tacet serve` running there?"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .with_context(|| format!("{addr} did not answer /readyz within {timeout:?}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("no status");
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .trim()
        .to_owned();
    if status != "200" {
        bail!("{addr}/readyz answered {status}: {body}");
    }
    Ok(body)
}
