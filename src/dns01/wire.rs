//! One DNS exchange with one server: UDP first, TCP when the answer is
//! truncated (RFC 1035 §4.2, RFC 7766 §5), each bounded by a timeout.
//!
//! Why: both the RFC 2136 update and the propagation check need exactly this,
//! on smol (no tokio), without a resolver library.
//!
//! What must hold: an answer is accepted only from the server asked, with the
//! request's ID and QR set; sizes are bounded (`MAX_DNS_UDP_BYTES`, TCP by its
//! 16-bit length); nothing here panics on any input.

use std::net::SocketAddr;
use std::time::Duration;

use smol::io::{AsyncReadExt, AsyncWriteExt};

use super::DnsError;
use crate::limits::MAX_DNS_UDP_BYTES;

/// Resolve `HOST:PORT` (an IP literal or a host name) to socket addresses.
pub async fn resolve(server: &str) -> Result<Vec<SocketAddr>, DnsError> {
    if let Ok(addr) = server.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let addrs = smol::net::resolve(server)
        .await
        .map_err(|e| DnsError::Io(format!("cannot resolve {server}: {e}")))?;
    if addrs.is_empty() {
        return Err(DnsError::Io(format!("{server} has no address")));
    }
    Ok(addrs)
}

/// Check the form `HOST:PORT` without resolving.
pub fn check_server(server: &str) -> Result<(), DnsError> {
    let bad = || {
        DnsError::BadConfig(format!(
            "server \"{server}\" is not HOST:PORT (e.g. 192.0.2.1:53, [2001:db8::1]:53, ns1.example.com:53)"
        ))
    };
    if server.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = server.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    crate::names::normalize(host, false).map_err(|_| bad())?;
    Ok(())
}

async fn with_timeout<T>(
    limit: Duration,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, DnsError>>,
) -> Result<T, DnsError> {
    smol::future::or(fut, async {
        smol::Timer::after(limit).await;
        Err(DnsError::Timeout(what.to_owned()))
    })
    .await
}

/// Is `answer` a reply to `request` (same ID, QR set)?
pub(crate) fn is_reply(request: &[u8], answer: &[u8]) -> bool {
    answer.len() >= 12 && request.len() >= 2 && answer[..2] == request[..2] && answer[2] & 0x80 != 0
}

/// The TC bit.
pub(crate) fn truncated(answer: &[u8]) -> bool {
    answer.get(2).is_some_and(|b| b & 0x02 != 0)
}

/// Send `request` to `server`, return the raw answer (TCP after a truncated
/// UDP answer). `timeout` bounds each transport attempt.
pub async fn exchange(
    server: SocketAddr,
    request: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, DnsError> {
    let answer = with_timeout(timeout, &format!("{server} (UDP)"), udp(server, request)).await?;
    if !truncated(&answer) {
        return Ok(answer);
    }
    with_timeout(timeout, &format!("{server} (TCP)"), tcp(server, request)).await
}

async fn udp(server: SocketAddr, request: &[u8]) -> Result<Vec<u8>, DnsError> {
    let io = |e: std::io::Error| DnsError::Io(format!("{server}: {e}"));
    let local: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = smol::net::UdpSocket::bind(local).await.map_err(io)?;
    // Connected: the kernel drops datagrams from anyone but `server`.
    socket.connect(server).await.map_err(io)?;
    socket.send(request).await.map_err(io)?;
    let mut buf = vec![0u8; MAX_DNS_UDP_BYTES];
    loop {
        let n = socket.recv(&mut buf).await.map_err(io)?;
        let answer = buf.get(..n).unwrap_or_default();
        if is_reply(request, answer) {
            return Ok(answer.to_vec());
        }
        // A stray or forged datagram: keep waiting (the timeout bounds this).
    }
}

async fn tcp(server: SocketAddr, request: &[u8]) -> Result<Vec<u8>, DnsError> {
    let io = |e: std::io::Error| DnsError::Io(format!("{server} (TCP): {e}"));
    let len = u16::try_from(request.len())
        .map_err(|_| DnsError::BadConfig("DNS request over 65535 bytes".into()))?;
    let mut stream = smol::net::TcpStream::connect(server).await.map_err(io)?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(request);
    stream.write_all(&out).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.map_err(io)?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut answer).await.map_err(io)?;
    if !is_reply(request, &answer) {
        return Err(DnsError::BadResponse(format!(
            "{server} (TCP) answered another request"
        )));
    }
    Ok(answer)
}

/// A random message ID (RFC 5452 §9.2: unpredictable IDs).
pub fn random_id() -> u16 {
    use ring::rand::SecureRandom;
    let mut id = [0u8; 2];
    // On failure of the system RNG a fixed ID still works (the answer is
    // also bound to the connected socket, and updates by TSIG).
    let _ = ring::rand::SystemRandom::new().fill(&mut id);
    u16::from_be_bytes(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_matching_needs_id_and_qr() {
        let req = [0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        let mut ans = req;
        assert!(!is_reply(&req, &ans));
        ans[2] |= 0x80;
        assert!(is_reply(&req, &ans));
        ans[1] = 0x35;
        assert!(!is_reply(&req, &ans));
        assert!(!is_reply(&req, &ans[..5]));
        assert!(!truncated(&[]));
    }

    #[test]
    fn server_syntax() {
        assert!(check_server("127.0.0.1:53").is_ok());
        assert!(check_server("[::1]:53").is_ok());
        assert!(check_server("ns1.example.com:5353").is_ok());
        assert!(check_server("ns1.example.com").is_err());
        assert!(check_server("ns1.example.com:99999").is_err());
        assert!(check_server(":53").is_err());
    }
}
