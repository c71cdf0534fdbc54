//! DNS names: normalisation, validation and the wildcard rule.
//!
//! Why: tenants own DNS names, certificates carry them, and SNI values arrive
//! from the network. All three are compared in one normal form: ASCII lowercase,
//! one trailing dot removed (RFC 4343 case-insensitivity, RFC 1034 §3.1 absolute
//! names). Wildcards follow RFC 6125 §6.4.3: `*.example.com` covers exactly one
//! left-most label, so neither `example.com` nor `a.b.example.com`.
//!
//! What must hold: `normalize_into` never allocates (it runs on the handshake
//! path) and every function is total on arbitrary input.

use crate::limits::{MAX_DNS_LABEL_LEN, MAX_DNS_NAME_LEN};

/// Why a DNS name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// Longer than `MAX_DNS_NAME_LEN` characters.
    TooLong,
    /// A label is empty or longer than `MAX_DNS_LABEL_LEN`.
    BadLabel,
    /// A character other than letters, digits, `-`, `_` and `.`.
    BadCharacter,
    /// A `*` anywhere but as the whole left-most label.
    BadWildcard,
    /// An IP address where a host's DNS name is wanted: a CA refuses it as a
    /// `dns` identifier (IP identifiers are their own kind, RFC 8738 §3).
    IpAddress,
}

impl core::fmt::Display for NameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            NameError::Empty => "the name is empty",
            NameError::TooLong => "the name is longer than 253 characters",
            NameError::BadLabel => "a label is empty or longer than 63 characters",
            NameError::BadCharacter => {
                "only letters, digits, '-', '_' and '.' are allowed in a DNS name"
            }
            NameError::BadWildcard => "'*' is only allowed as the whole left-most label",
            NameError::IpAddress => {
                "an IP address is not a DNS name (a CA refuses it as one); give it as an IP name: `tenant add NAME --ip ADDR` (RFC 8738)"
            }
        })
    }
}

/// A stack buffer holding one normalised name; no heap on the handshake path.
pub type NameBuf = heapless::String<MAX_DNS_NAME_LEN>;

/// Normalise `raw` (lowercase, one trailing dot dropped) into `out`.
/// Returns `None` when it cannot be a DNS name (too long, not ASCII).
pub fn normalize_into(raw: &str, out: &mut NameBuf) -> Option<()> {
    out.clear();
    let raw = raw.strip_suffix('.').unwrap_or(raw);
    if !raw.is_ascii() {
        return None;
    }
    for c in raw.chars() {
        out.push(c.to_ascii_lowercase()).ok()?;
    }
    Some(())
}

/// An IP name's one text form (RFC 8738 §3: the address as the `ip`
/// identifier's value; RFC 5952 for IPv6), as it stands in certificate
/// name lists, tenants' names and SNI snapshot keys. `None`: not an IP.
pub fn ip_text(raw: &str) -> Option<String> {
    raw.trim()
        .parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| ip.to_string())
}

/// Is this (normalised) name an IP address rather than a DNS name?
pub fn is_ip(name: &str) -> bool {
    name.parse::<std::net::IpAddr>().is_ok()
}

/// The reverse-DNS name of an IP address (RFC 8738 §6: the SNI a CA sends
/// when it validates an `ip` identifier by TLS-ALPN-01): `in-addr.arpa`
/// for IPv4 (RFC 1035 §3.5), nibbles under `ip6.arpa` for IPv6 (RFC 3596
/// §2.5).
pub fn reverse_name(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        std::net::IpAddr::V6(v6) => {
            let mut out = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                out.push_str(&format!("{:x}.{:x}.", byte & 0x0f, byte >> 4));
            }
            out.push_str("ip6.arpa");
            out
        }
    }
}

/// Write an IP address's text form into a stack buffer (the handshake path:
/// a client without SNI gets the certificate of the local address).
pub fn ip_text_into(ip: std::net::IpAddr, out: &mut NameBuf) -> Option<()> {
    use core::fmt::Write as _;
    out.clear();
    write!(out, "{ip}").ok()
}

/// A host's DNS name (a tenant's or the system's), normalised: as
/// `normalize` without wildcards, and an IP address refused (`IpAddress`):
/// ordered as a `dns` identifier it would fail at every CA, forever.
pub fn normalize_host(raw: &str) -> Result<String, NameError> {
    let bare = raw.trim().trim_end_matches('.');
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return Err(NameError::IpAddress);
    }
    normalize(raw, false)
}

/// Normalise and validate a host name; `allow_wildcard` admits `*.rest`.
pub fn normalize(raw: &str, allow_wildcard: bool) -> Result<String, NameError> {
    let name = raw.trim();
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_DNS_NAME_LEN {
        return Err(NameError::TooLong);
    }
    for (i, label) in name.split('.').enumerate() {
        if label.is_empty() || label.len() > MAX_DNS_LABEL_LEN {
            return Err(NameError::BadLabel);
        }
        if label == "*" {
            if i != 0 || !allow_wildcard {
                return Err(NameError::BadWildcard);
            }
            continue;
        }
        if label.contains('*') {
            return Err(NameError::BadWildcard);
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(NameError::BadCharacter);
        }
    }
    Ok(name)
}

/// The part a wildcard pattern covers: `*.example.com` → `example.com`.
pub fn wildcard_base(pattern: &str) -> Option<&str> {
    pattern.strip_prefix("*.")
}

/// The parent a wildcard would need to cover `name`: `a.example.com` →
/// `example.com`; `None` for a single-label name.
pub fn parent(name: &str) -> Option<&str> {
    let (first, rest) = name.split_once('.')?;
    (!first.is_empty() && !rest.is_empty()).then_some(rest)
}

/// RFC 6125 §6.4.3: does the (normalised) certificate name `pattern` cover the
/// (normalised) host `name`?
pub fn covers(pattern: &str, name: &str) -> bool {
    match wildcard_base(pattern) {
        // A wildcard covers DNS names only, never an IP address.
        Some(base) => !is_ip(name) && parent(name) == Some(base),
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_and_trailing_dot() {
        assert_eq!(
            normalize("PBX.Example.COM.", false).unwrap(),
            "pbx.example.com"
        );
        let mut buf = NameBuf::new();
        normalize_into("A.B.", &mut buf).unwrap();
        assert_eq!(buf.as_str(), "a.b");
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(normalize("", false), Err(NameError::Empty));
        assert_eq!(normalize("a..b", false), Err(NameError::BadLabel));
        assert_eq!(normalize("a b.c", false), Err(NameError::BadCharacter));
        assert_eq!(normalize("*.a.b", false), Err(NameError::BadWildcard));
        assert_eq!(normalize("a.*.b", true), Err(NameError::BadWildcard));
        assert_eq!(normalize("f*o.b", true), Err(NameError::BadWildcard));
        assert_eq!(normalize(&"a".repeat(64), false), Err(NameError::BadLabel));
        let long = ["abcdefghi"; 30].join(".");
        assert_eq!(normalize(&long, false), Err(NameError::TooLong));
        assert_eq!(normalize("*.a.b", true).unwrap(), "*.a.b");
    }

    #[test]
    fn non_ascii_or_overlong_sni_does_not_normalise() {
        let mut buf = NameBuf::new();
        assert!(normalize_into("bücher.de", &mut buf).is_none());
        assert!(normalize_into(&"a".repeat(300), &mut buf).is_none());
    }

    #[test]
    fn wildcard_covers_exactly_one_label() {
        assert!(covers("*.example.com", "a.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(!covers("*.example.com", ".example.com"));
        assert!(covers("a.example.com", "a.example.com"));
        assert!(!covers("a.example.com", "b.example.com"));
    }
}
