//! The propagation check: ask the zone's servers for the challenge TXT
//! record until every one of them answers with the value, so the CA is told
//! to validate (RFC 8555 §7.5.1) only when its lookup can succeed.
//!
//! Why: a CA that validates before the record is visible fails the
//! authorization for good; asking the authoritative servers directly (not a
//! caching resolver) avoids negative caching of the name.
//!
//! What must hold: queries are non-recursive (RD=0) TXT questions; answers
//! are untrusted (parsed by `domain`, no panics, only TXT records owned by the
//! asked name count); the wait is bounded by `PropagationSettings`.

use std::str::FromStr;
use std::time::{Duration, Instant};

use domain::base::iana::{Class, Rcode, Rtype};
use domain::base::{Message, MessageBuilder, Name};
use domain::rdata::rfc1035::Txt;

use super::{wire, DnsError, PropagationSettings};
use crate::limits::DNS_EXCHANGE_TIMEOUT_SECS;

/// The TXT values at `fqdn` according to `server` (`HOST:PORT`).
pub async fn query_txt(server: &str, fqdn: &str) -> Result<Vec<String>, DnsError> {
    let fqdn = fqdn.strip_suffix('.').unwrap_or(fqdn).to_ascii_lowercase();
    let name: Name<Vec<u8>> = Name::from_str(&format!("{fqdn}."))
        .map_err(|e| DnsError::BadConfig(format!("bad DNS name {fqdn}: {e}")))?;
    let mut msg = MessageBuilder::new_vec();
    msg.header_mut().set_id(wire::random_id());
    msg.header_mut().set_rd(false);
    let mut q = msg.question();
    q.push((&name, Rtype::TXT, Class::IN))
        .map_err(|e| DnsError::BadConfig(format!("DNS query does not fit: {e}")))?;
    let request = q.finish();
    let timeout = Duration::from_secs(DNS_EXCHANGE_TIMEOUT_SECS);
    let mut last = DnsError::Io(format!("{server}: no address"));
    for addr in wire::resolve(server).await? {
        match wire::exchange(addr, &request, timeout).await {
            Ok(answer) => return txt_values(server, &name, &answer),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The TXT values owned by `name` in the answer section.
fn txt_values(server: &str, name: &Name<Vec<u8>>, answer: &[u8]) -> Result<Vec<String>, DnsError> {
    let bad = |why: &str| DnsError::BadResponse(format!("{server}: {why}"));
    let msg = Message::from_octets(answer).map_err(|_| bad("short message"))?;
    let rcode = msg.header().rcode();
    if rcode == Rcode::NXDOMAIN {
        return Ok(Vec::new());
    }
    if rcode != Rcode::NOERROR {
        return Err(DnsError::ServerError(format!("{server} answered {rcode}")));
    }
    let section = msg.answer().map_err(|_| bad("malformed question"))?;
    let mut values = Vec::new();
    for record in section.limit_to::<Txt<_>>() {
        let record = record.map_err(|_| bad("malformed TXT record"))?;
        if record.class() != Class::IN || record.owner() != name {
            continue;
        }
        let mut text = Vec::new();
        for part in record.data().iter() {
            text.extend_from_slice(part);
        }
        values.push(String::from_utf8_lossy(&text).into_owned());
    }
    Ok(values)
}

/// Wait until every server in `servers` answers `value` at `fqdn`.
pub async fn wait_for_txt(
    servers: &[String],
    fqdn: &str,
    value: &str,
    settings: PropagationSettings,
) -> Result<(), DnsError> {
    let deadline = Instant::now() + Duration::from_secs(settings.timeout_secs);
    loop {
        let mut missing = Vec::new();
        for server in servers {
            match query_txt(server, fqdn).await {
                Ok(values) if values.iter().any(|v| v == value) => {}
                Ok(_) => missing.push(format!("{server}: not there yet")),
                Err(e) => missing.push(format!("{server}: {e}")),
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(DnsError::NotPropagated(format!(
                "{fqdn} after {} s: {}",
                settings.timeout_secs,
                missing.join("; ")
            )));
        }
        smol::Timer::after(Duration::from_secs(settings.interval_secs)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_parsing_survives_garbage() {
        let name: Name<Vec<u8>> = Name::from_str("a.example.").unwrap();
        for n in 0..40u8 {
            let junk: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37).wrapping_add(n)).collect();
            let _ = txt_values("s", &name, &junk);
        }
    }
}
