//! ACME Renewal Information (RFC 9773): ask the CA when to renew.
//!
//! Why: a CA can move a certificate's renewal earlier (mass revocation,
//! short-lived profiles). When the directory has `renewalInfo` (§3), the
//! renewal loop fetches `GET {renewalInfo}/{certID}` (§4.1: base64url of the
//! leaf's Authority Key Identifier keyIdentifier, ".", base64url of the
//! serial number's DER content octets) and renews once a uniformly random
//! time inside `suggestedWindow` (§4.2) has passed. The time chosen is kept
//! until the CA changes the window, so a check does not re-roll it.
//!
//! What must hold: an absent, unreachable or malformed ARI never blocks the
//! 1/3-lifetime rule (ARI can only make renewal earlier); nothing the server
//! sends panics.

use serde::Deserialize;

use crate::acme::{AcmeError, AriChoice};
use crate::outbound::Client;

const OID_AKI: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("2.5.29.35");

/// The RFC 9773 §4.1 certificate identifier of a leaf (DER).
pub fn cert_id(leaf_der: &[u8]) -> Option<String> {
    use base64ct::{Base64UrlUnpadded, Encoding};
    use der::Decode;
    use x509_cert::ext::pkix::AuthorityKeyIdentifier;
    let cert = x509_cert::Certificate::from_der(leaf_der).ok()?;
    let aki = cert
        .tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id == OID_AKI)?;
    let aki = AuthorityKeyIdentifier::from_der(aki.extn_value.as_bytes()).ok()?;
    let key_id = aki.key_identifier?;
    let serial = cert.tbs_certificate.serial_number.as_bytes();
    Some(format!(
        "{}.{}",
        Base64UrlUnpadded::encode_string(key_id.as_bytes()),
        Base64UrlUnpadded::encode_string(serial)
    ))
}

#[derive(Deserialize)]
struct Window {
    start: String,
    end: String,
}

#[derive(Deserialize)]
struct RenewalInfo {
    #[serde(rename = "suggestedWindow")]
    suggested_window: Window,
}

/// The directory's `renewalInfo` URL, if the CA offers ARI.
pub async fn renewal_info_url(
    client: &Client,
    directory: &str,
) -> Result<Option<String>, AcmeError> {
    let resp = client
        .request("GET", directory, &[("Accept", "application/json")], b"")
        .await
        .map_err(|e| AcmeError::new("ca-unreachable", format!("ACME directory: {e}")))?;
    if resp.status != 200 {
        return Err(AcmeError::new(
            "bad-response",
            format!("ACME directory answered {}", resp.status),
        ));
    }
    renewal_info_of(&resp.body)
}

/// The `renewalInfo` URL of a directory object (RFC 9773 §3), if any.
pub fn renewal_info_of(directory: &[u8]) -> Result<Option<String>, AcmeError> {
    let dir: serde_json::Value = serde_json::from_slice(directory)
        .map_err(|e| AcmeError::new("bad-response", format!("ACME directory: {e}")))?;
    Ok(dir["renewalInfo"].as_str().map(str::to_owned))
}

/// The `suggestedWindow` of a renewalInfo object (RFC 9773 §4.2) as Unix
/// seconds `(start, end)`, checked to end no earlier than it starts.
pub fn suggested_window(body: &[u8]) -> Result<(i64, i64), AcmeError> {
    let info: RenewalInfo = serde_json::from_slice(body)
        .map_err(|e| AcmeError::new("bad-response", format!("ARI: {e}")))?;
    let parse = |t: &str| {
        crate::clock::parse_rfc3339(t)
            .ok_or_else(|| AcmeError::new("bad-response", format!("ARI: bad time {t:?}")))
    };
    let (start, end) = (
        parse(&info.suggested_window.start)?,
        parse(&info.suggested_window.end)?,
    );
    if end < start {
        return Err(AcmeError::new(
            "bad-response",
            "ARI: window ends before it starts",
        ));
    }
    Ok((start, end))
}

/// Fetch the suggested window for a leaf (RFC 9773 §4.2) and pick the
/// renewal time (keeping `previous.at` while the window is unchanged).
pub async fn fetch(
    client: &Client,
    renewal_info: &str,
    leaf_der: &[u8],
    previous: Option<AriChoice>,
) -> Result<Option<AriChoice>, AcmeError> {
    let Some(id) = cert_id(leaf_der) else {
        return Ok(None); // no AKI: ARI cannot name this certificate
    };
    let url = format!("{}/{id}", renewal_info.trim_end_matches('/'));
    let resp = client
        .request("GET", &url, &[("Accept", "application/json")], b"")
        .await
        .map_err(|e| AcmeError::new("ca-unreachable", format!("ARI: {e}")))?;
    if resp.status != 200 {
        return Err(AcmeError::new(
            "bad-response",
            format!("ARI answered {}", resp.status),
        ));
    }
    let (start, end) = suggested_window(&resp.body)?;
    if let Some(p) = previous.filter(|p| p.start == start && p.end == end) {
        return Ok(Some(p));
    }
    let span = u64::try_from(end - start).unwrap_or(0);
    let mut b = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    let offset = if span == 0 {
        0
    } else {
        i64::try_from(u64::from_le_bytes(b) % (span + 1)).unwrap_or(0)
    };
    Ok(Some(AriChoice {
        start,
        end,
        at: start + offset,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_id_matches_rfc9773_example_shape() {
        // A leaf with a known AKI and serial.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(vec![0x69, 0x88, 0x5b, 0x6b]);
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut leaf = rcgen::CertificateParams::new(vec!["a.example".to_string()]).unwrap();
        leaf.serial_number = Some(rcgen::SerialNumber::from_slice(&[
            0x00, 0x87, 0x65, 0x43, 0x21,
        ]));
        leaf.use_authority_key_identifier_extension = true;
        let leaf = leaf.signed_by(&key, &ca, &ca_key).unwrap();
        // RFC 9773 §4.1 example: keyIdentifier 69:88:5B:6B... → "aYhba", serial
        // 00:87:65:43:21 → "AIdlQyE".
        assert_eq!(cert_id(leaf.der()).as_deref(), Some("aYhbaw.AIdlQyE"));
        assert_eq!(cert_id(b"not a certificate"), None);
    }
}
