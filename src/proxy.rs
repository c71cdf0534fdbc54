//! The PROXY protocol header a `--tls-forward … ,proxy=v2` (or `proxy=v1`)
//! writes to its target before the first decrypted byte.
//!
//! Why: behind the TLS front, a SIP server sees every phone as 127.0.0.1
//! (pbx-certd's own connection); with this header (haproxy's
//! proxy-protocol.txt §2.2, accepted by Kamailio's `tcp_accept_haproxy`,
//! Asterisk/FreeSWITCH behind HAProxy, nginx `proxy_protocol`) it sees the
//! phone's address and port, and learns the TLS facts (version, SNI, the
//! verified client certificate's CN) from the TLVs (§2.2.5, §2.2.6).
//!
//! What must hold: the header is exactly §2.2's binary format (12-byte
//! signature, version 2 + PROXY command, TCP over IPv4 or IPv6, the length of
//! what follows in network order, then source and destination address and
//! port, then the TLVs); an IPv4 client on an IPv6 listener is sent as IPv4
//! when both ends are IPv4 (mapped addresses unmapped), else both as IPv6;
//! a TLV value longer than `MAX_PROXY_TLV_VALUE_BYTES` is left out rather
//! than cut, so the target never gets a truncated name. Pure functions: no
//! I/O, no panic.
//!
//! v1 (§2.1, one text line, addresses only) is there for targets whose v2
//! parser is wrong: Kamailio before 5.7.4 (Debian 12 ships 5.6.3) reads the
//! v2 ports without converting them from network order (kamailio GH #3683),
//! so the phone's port arrives byte-swapped; its v1 parser is right.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use crate::limits::MAX_PROXY_TLV_VALUE_BYTES;

/// §2.2: the 12-byte signature that starts every v2 header.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// §2.2: protocol version 2 (high nibble), command PROXY (low nibble).
const VERSION2_PROXY: u8 = 0x21;
/// §2.2: address family AF_INET, transport STREAM.
const TCP_OVER_IPV4: u8 = 0x11;
/// §2.2: address family AF_INET6, transport STREAM.
const TCP_OVER_IPV6: u8 = 0x21;
/// §2.2.7: the host name the client asked for (SNI).
pub const PP2_TYPE_AUTHORITY: u8 = 0x02;
/// §2.2.5: the TLS facts (client flags, verify result, sub-TLVs).
pub const PP2_TYPE_SSL: u8 = 0x20;
/// §2.2.5: sub-TLV, the TLS version (e.g. `TLSv1.3`).
pub const PP2_SUBTYPE_SSL_VERSION: u8 = 0x21;
/// §2.2.5: sub-TLV, the Common Name of the client certificate's subject.
pub const PP2_SUBTYPE_SSL_CN: u8 = 0x22;
/// §2.2.5: the client connected over TLS.
pub const PP2_CLIENT_SSL: u8 = 0x01;
/// §2.2.5: the client presented a certificate over this connection.
pub const PP2_CLIENT_CERT_CONN: u8 = 0x02;
/// §2.2.5: the client presented a certificate at least once over the TLS
/// session this connection belongs to.
pub const PP2_CLIENT_CERT_SESS: u8 = 0x04;

/// A forward's `proxy=`: which header the target gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// §2.1, the text line (addresses and ports only).
    V1,
    /// §2.2, binary, with the TLS TLVs.
    V2,
}

impl Version {
    /// The header for a client at `source` that connected to `destination`.
    pub fn header(
        self,
        source: SocketAddr,
        destination: SocketAddr,
        tls: &TlsFacts<'_>,
    ) -> Vec<u8> {
        match self {
            Version::V1 => header_v1(source, destination),
            Version::V2 => header_v2(source, destination, tls),
        }
    }
}

/// §2.1: `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n` (mapped IPv4 unmapped;
/// mixed families both as IPv6).
pub fn header_v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let line = match (unmap(source.ip()), unmap(destination.ip())) {
        (IpAddr::V4(s), IpAddr::V4(d)) => format!("PROXY TCP4 {s} {d}"),
        (s, d) => format!("PROXY TCP6 {} {}", v6(s), v6(d)),
    };
    format!("{line} {} {}\r\n", source.port(), destination.port()).into_bytes()
}

/// The TLS facts of one forwarded connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct TlsFacts<'a> {
    /// `TLSv1.3` / `TLSv1.2`.
    pub version: &'a str,
    /// The SNI the client sent, if any.
    pub sni: Option<&'a str>,
    /// A verified client certificate was presented (rustls refuses the
    /// handshake for an unverified one, so presented means verified).
    pub client_cert: bool,
    /// That certificate's subject CN, when it has one.
    pub client_cn: Option<&'a str>,
}

/// The whole v2 header: `source` is the client, `destination` the address
/// it connected to (the listener's local address).
pub fn header_v2(source: SocketAddr, destination: SocketAddr, tls: &TlsFacts<'_>) -> Vec<u8> {
    let mut body = Vec::with_capacity(128);
    let family = match (unmap(source.ip()), unmap(destination.ip())) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            body.extend_from_slice(&s.octets());
            body.extend_from_slice(&d.octets());
            TCP_OVER_IPV4
        }
        (s, d) => {
            body.extend_from_slice(&v6(s).octets());
            body.extend_from_slice(&v6(d).octets());
            TCP_OVER_IPV6
        }
    };
    body.extend_from_slice(&source.port().to_be_bytes());
    body.extend_from_slice(&destination.port().to_be_bytes());
    if let Some(sni) = tls.sni {
        tlv(&mut body, PP2_TYPE_AUTHORITY, sni.as_bytes());
    }
    // §2.2.5: client flags (1 byte), verify (4 bytes: 0 = a certificate was
    // presented and verified, else non-zero), then the sub-TLVs.
    let mut ssl = Vec::with_capacity(64);
    let mut client = PP2_CLIENT_SSL;
    if tls.client_cert {
        client |= PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS;
    }
    ssl.push(client);
    let verify: u32 = if tls.client_cert { 0 } else { 1 };
    ssl.extend_from_slice(&verify.to_be_bytes());
    tlv(&mut ssl, PP2_SUBTYPE_SSL_VERSION, tls.version.as_bytes());
    if let Some(cn) = tls.client_cn {
        tlv(&mut ssl, PP2_SUBTYPE_SSL_CN, cn.as_bytes());
    }
    tlv(&mut body, PP2_TYPE_SSL, &ssl);

    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(&SIGNATURE);
    out.push(VERSION2_PROXY);
    out.push(family);
    // Bounded: two addresses plus at most three TLVs of
    // MAX_PROXY_TLV_VALUE_BYTES each, far below 65 535.
    let len = u16::try_from(body.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Append one TLV (type, 16-bit length, value); a value over
/// `MAX_PROXY_TLV_VALUE_BYTES` is left out.
fn tlv(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    let Ok(len) = u16::try_from(value.len()) else {
        return;
    };
    if value.len() > MAX_PROXY_TLV_VALUE_BYTES {
        return;
    }
    out.push(kind);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, a dual-stack listener)
/// as the IPv4 address it is.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_is_byte_exact() {
        let src: SocketAddr = "127.0.0.2:40000".parse().unwrap();
        let dst: SocketAddr = "127.0.0.1:5061".parse().unwrap();
        let h = header_v2(
            src,
            dst,
            &TlsFacts {
                version: "TLSv1.3",
                sni: Some("sip.a.test"),
                client_cert: true,
                client_cn: Some("phone1"),
            },
        );
        let mut want = SIGNATURE.to_vec();
        want.extend_from_slice(&[0x21, 0x11]);
        let mut body = vec![127, 0, 0, 2, 127, 0, 0, 1];
        body.extend_from_slice(&40000u16.to_be_bytes());
        body.extend_from_slice(&5061u16.to_be_bytes());
        body.extend_from_slice(&[0x02, 0, 10]);
        body.extend_from_slice(b"sip.a.test");
        let mut ssl = vec![0x07, 0, 0, 0, 0, 0x21, 0, 7];
        ssl.extend_from_slice(b"TLSv1.3");
        ssl.extend_from_slice(&[0x22, 0, 6]);
        ssl.extend_from_slice(b"phone1");
        body.push(0x20);
        body.extend_from_slice(&(ssl.len() as u16).to_be_bytes());
        body.extend_from_slice(&ssl);
        want.extend_from_slice(&(body.len() as u16).to_be_bytes());
        want.extend_from_slice(&body);
        assert_eq!(h, want);
    }

    #[test]
    fn no_client_cert_means_verify_nonzero_and_no_cn() {
        let src: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let dst: SocketAddr = "192.0.2.2:2".parse().unwrap();
        let h = header_v2(
            src,
            dst,
            &TlsFacts {
                version: "TLSv1.2",
                ..TlsFacts::default()
            },
        );
        // Signature, 0x21 0x11, length, 12 address bytes, then PP2_TYPE_SSL.
        let ssl = &h[16 + 12..];
        assert_eq!(ssl[0], PP2_TYPE_SSL);
        assert_eq!(&ssl[3..8], &[PP2_CLIENT_SSL, 0, 0, 0, 1]);
        assert_eq!(&ssl[8..11], &[PP2_SUBTYPE_SSL_VERSION, 0, 7]);
        assert_eq!(ssl.len(), 11 + 7);
    }

    #[test]
    fn mapped_ipv4_is_unmapped_and_mixed_families_become_ipv6() {
        let src: SocketAddr = "[::ffff:192.0.2.1]:5".parse().unwrap();
        let dst: SocketAddr = "192.0.2.2:6".parse().unwrap();
        let h = header_v2(src, dst, &TlsFacts::default());
        assert_eq!(h[13], TCP_OVER_IPV4);
        assert_eq!(&h[16..20], &[192, 0, 2, 1]);

        let src: SocketAddr = "[2001:db8::1]:5".parse().unwrap();
        let h = header_v2(src, dst, &TlsFacts::default());
        assert_eq!(h[13], TCP_OVER_IPV6);
        assert_eq!(
            &h[16..32],
            &"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(
            &h[32..48],
            &"::ffff:192.0.2.2".parse::<Ipv6Addr>().unwrap().octets()
        );
        let len = u16::from_be_bytes([h[14], h[15]]) as usize;
        assert_eq!(h.len(), 16 + len);
    }

    #[test]
    fn v1_line() {
        let src: SocketAddr = "127.0.0.2:40000".parse().unwrap();
        let dst: SocketAddr = "[::ffff:127.0.0.1]:5061".parse().unwrap();
        assert_eq!(
            header_v1(src, dst),
            b"PROXY TCP4 127.0.0.2 127.0.0.1 40000 5061\r\n"
        );
        let src: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
        assert_eq!(
            header_v1(src, dst),
            b"PROXY TCP6 2001:db8::1 ::ffff:127.0.0.1 1 5061\r\n"
        );
    }

    #[test]
    fn an_overlong_value_is_left_out_not_cut() {
        let long = "x".repeat(MAX_PROXY_TLV_VALUE_BYTES + 1);
        let src: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let h = header_v2(
            src,
            src,
            &TlsFacts {
                version: "TLSv1.3",
                client_cert: true,
                client_cn: Some(&long),
                ..TlsFacts::default()
            },
        );
        assert!(!h.windows(8).any(|w| w == b"xxxxxxxx"));
    }
}
