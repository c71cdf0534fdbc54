//! Time, IDs and encodings for assertions: Unix "now", RFC 3339 UTC,
//! SHA-256 IDs, hex, Base64 and PEM made and parsed here (independently of
//! the code under test), and the check that no output echoes a private key
//! (in PEM, hex or Base64 at any alignment).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds in a day.
pub const DAY: i64 = 86_400;

/// Now, in Unix seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// `2026-11-26T23:06:13Z` for a Unix time (UTC).
pub fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(DAY);
    let secs = unix.rem_euclid(DAY);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// True for `YYYY-MM-DDTHH:MM:SSZ`.
pub fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// Lowercase hex SHA-256: a certificate ID.
pub fn sha256_hex(der: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// True for 64 lowercase hex digits.
pub fn is_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// The PEM blocks of a text: (label, DER). Panics on a malformed block.
pub fn pem_blocks(text: &str) -> Vec<(String, Vec<u8>)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            current = Some((label.to_string(), String::new()));
        } else if let Some(label) = line
            .strip_prefix("-----END ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            let (l, body) = current.take().expect("END without BEGIN");
            assert_eq!(l, label, "mismatched PEM labels");
            blocks.push((l, base64_decode(&body)));
        } else if let Some((_, body)) = current.as_mut() {
            if !line.contains(':') {
                body.push_str(line);
            }
        }
    }
    assert!(current.is_none(), "BEGIN without END in:\n{text}");
    blocks
}

/// DERs of the CERTIFICATE blocks of a text.
pub fn pem_certs(text: &str) -> Vec<Vec<u8>> {
    pem_blocks(text)
        .into_iter()
        .filter(|(l, _)| l == "CERTIFICATE")
        .map(|(_, d)| d)
        .collect()
}

/// Standard Base64 (with padding, whitespace ignored).
pub fn base64_decode(s: &str) -> Vec<u8> {
    fn val(c: u8) -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64 character {c}"),
        }
    }
    let clean: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= val(*c) << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

/// Standard Base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for chunk in data.chunks(3) {
        let mut acc = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            acc |= (*b as u32) << (16 - 8 * i);
        }
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(T[((acc >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// A PEM block with 64-column lines.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64_encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(line).unwrap());
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// LF → CRLF.
pub fn crlf(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\n', "\r\n")
}

/// The secret part of a private key (PEM, any accepted format): the EC
/// scalar, the Ed25519 seed, or the tail of an RSA key (CRT coefficient).
pub fn key_secret(key_pem: &str) -> Vec<u8> {
    let (_, der) = pem_blocks(key_pem)
        .into_iter()
        .find(|(l, _)| l.ends_with("PRIVATE KEY"))
        .expect("a private key block");
    let find = |pat: &[u8]| der.windows(pat.len()).position(|w| w == pat);
    const RSA_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    if key_pem.contains("RSA PRIVATE KEY") || find(RSA_OID).is_some() {
        return der[der.len() - 32..].to_vec();
    }
    if let Some(p) = find(&[0x04, 0x22, 0x04, 0x20]) {
        return der[p + 4..p + 36].to_vec();
    }
    for len in [0x20u8, 0x30] {
        if let Some(p) = find(&[0x02, 0x01, 0x01, 0x04, len]) {
            return der[p + 5..p + 5 + len as usize].to_vec();
        }
    }
    panic!("test helper: unknown key layout");
}

/// Asserts `text` does not echo the key: no PRIVATE KEY block, and the
/// secret neither in hex nor in Base64 (at any alignment, any line wrapping).
#[track_caller]
pub fn assert_no_key_material(text: &str, key_pem: &str) {
    assert!(
        !text.contains("PRIVATE KEY"),
        "output mentions a PRIVATE KEY block:\n{text}"
    );
    let secret = key_secret(key_pem);
    let flat: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let h = hex(&secret[..16]);
    assert!(
        !flat.to_lowercase().contains(&h),
        "output echoes the key in hex:\n{text}"
    );
    for shift in 0..3 {
        let body = &secret[shift..];
        let b64 = base64_encode(&body[..body.len() / 3 * 3]);
        for start in (0..=b64.len() - 16).step_by(4) {
            let chunk = &b64[start..start + 16];
            assert!(
                !flat.contains(chunk),
                "output echoes key material ({chunk}):\n{text}"
            );
        }
    }
}

/// Path helper for tests that need a path as &str.
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
