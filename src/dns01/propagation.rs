//! The propagation check: ask the zone's servers for the challenge TXT
//! record until every one of them answers with the value, so the CA is told
//! to validate (RFC 8555 §7.5.1) only when its lookup can succeed.
//!
//! Why: a CA that validates before the record is visible fails the
//! authorization for good; asking the authoritative servers directly (not a
//! caching resolver) avoids negative caching of the name.
//!
//! Which servers: the provider's own (for RFC 2136 the primary it updates)
//! and, with `check_ns` (default on), every name server the zone's NS RRset
//! names (RFC 1034 §4.2.1; addresses from glue, else asked of the primary,
//! else the system resolver), on port 53, since those are what the CA's
//! resolver will ask.
//!
//! What must hold: queries are non-recursive (RD=0); answers are untrusted
//! (parsed by `domain`, no panics, only records owned by the asked name
//! count); the wait is bounded by `PropagationSettings`; at most
//! `MAX_ZONE_NAME_SERVERS` NS addresses are used.

use std::str::FromStr;
use std::time::{Duration, Instant};

use domain::base::iana::{Class, Rcode, Rtype};
use domain::base::{Message, MessageBuilder, Name};
use domain::rdata::rfc1035::{Ns, Txt, A};
use domain::rdata::Aaaa;

use super::{wire, DnsError, PropagationSettings};
use crate::limits::{DNS_EXCHANGE_TIMEOUT_SECS, MAX_ZONE_NAME_SERVERS};

fn dname(fqdn: &str) -> Result<Name<Vec<u8>>, DnsError> {
    let fqdn = fqdn.strip_suffix('.').unwrap_or(fqdn).to_ascii_lowercase();
    Name::from_str(&format!("{fqdn}."))
        .map_err(|e| DnsError::BadConfig(format!("bad DNS name {fqdn}: {e}")))
}

/// Ask `server` one non-recursive question; the raw answer.
async fn query(server: &str, name: &Name<Vec<u8>>, rtype: Rtype) -> Result<Vec<u8>, DnsError> {
    let mut msg = MessageBuilder::new_vec();
    msg.header_mut().set_id(wire::random_id());
    msg.header_mut().set_rd(false);
    let mut q = msg.question();
    q.push((name, rtype, Class::IN))
        .map_err(|e| DnsError::BadConfig(format!("DNS query does not fit: {e}")))?;
    let request = q.finish();
    let timeout = Duration::from_secs(DNS_EXCHANGE_TIMEOUT_SECS);
    let mut last = DnsError::Io(format!("{server}: no address"));
    for addr in wire::resolve(server).await? {
        match wire::exchange(addr, &request, timeout).await {
            Ok(answer) => return Ok(answer),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The TXT values at `fqdn` according to `server` (`HOST:PORT`).
pub async fn query_txt(server: &str, fqdn: &str) -> Result<Vec<String>, DnsError> {
    let name = dname(fqdn)?;
    let answer = query(server, &name, Rtype::TXT).await?;
    txt_values(server, &name, &answer)
}

/// The name servers of `zone` (`IP:53`), as its NS RRset at `primary` says.
pub async fn zone_servers(primary: &str, zone: &str) -> Result<Vec<String>, DnsError> {
    let bad = |why: &str| DnsError::BadResponse(format!("{primary}: {why}"));
    let zone_name = dname(zone)?;
    let answer = query(primary, &zone_name, Rtype::NS).await?;
    let msg = Message::from_octets(answer).map_err(|_| bad("short message"))?;
    if msg.header().rcode() != Rcode::NOERROR {
        return Err(DnsError::ServerError(format!(
            "{primary} answered {} to the NS query for {zone}",
            msg.header().rcode()
        )));
    }
    let hosts = ns_hosts(primary, &msg, &zone_name)?;
    let mut out: Vec<String> = Vec::new();
    let mut push = |ip: std::net::IpAddr| {
        let s = std::net::SocketAddr::new(ip, 53).to_string();
        if !out.contains(&s) && out.len() < MAX_ZONE_NAME_SERVERS {
            out.push(s);
        }
    };
    for host in &hosts {
        // Glue first, then the primary (in-zone hosts), then the system resolver.
        let mut found = addresses(&msg, host, true);
        if found.is_empty() {
            for rtype in [Rtype::A, Rtype::AAAA] {
                if let Ok(a) = query(primary, host, rtype).await {
                    if let Ok(m) = Message::from_octets(a) {
                        found.extend(addresses(&m, host, false));
                    }
                }
            }
        }
        if found.is_empty() {
            let text = host.to_string();
            if let Ok(addrs) = smol::net::resolve((text.trim_end_matches('.'), 53)).await {
                found.extend(addrs.into_iter().map(|a| a.ip()));
            }
        }
        for ip in found {
            push(ip);
        }
    }
    Ok(out)
}

/// The hosts the NS RRset of `zone_name` names in `msg`'s answer section
/// (at most `MAX_ZONE_NAME_SERVERS`).
pub(crate) fn ns_hosts(
    primary: &str,
    msg: &Message<Vec<u8>>,
    zone_name: &Name<Vec<u8>>,
) -> Result<Vec<Name<Vec<u8>>>, DnsError> {
    let bad = |why: &str| DnsError::BadResponse(format!("{primary}: {why}"));
    let mut hosts: Vec<Name<Vec<u8>>> = Vec::new();
    for record in msg
        .answer()
        .map_err(|_| bad("malformed"))?
        .limit_to::<Ns<_>>()
    {
        let record = record.map_err(|_| bad("malformed NS record"))?;
        if record.owner() == zone_name && hosts.len() < MAX_ZONE_NAME_SERVERS {
            hosts.push(dname(&record.data().nsdname().to_string())?);
        }
    }
    Ok(hosts)
}

/// A/AAAA addresses of `host` in the additional (`glue`) or answer section.
pub(crate) fn addresses(
    msg: &Message<Vec<u8>>,
    host: &Name<Vec<u8>>,
    glue: bool,
) -> Vec<std::net::IpAddr> {
    let section = if glue { msg.additional() } else { msg.answer() };
    let Ok(section) = section else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for record in section.limit_to::<A>().flatten() {
        if record.owner() == host {
            out.push(record.data().addr().into());
        }
    }
    let section = if glue { msg.additional() } else { msg.answer() };
    if let Ok(section) = section {
        for record in section.limit_to::<Aaaa>().flatten() {
            if record.owner() == host {
                out.push(record.data().addr().into());
            }
        }
    }
    out
}

/// The TXT values owned by `name` in the answer section.
pub(crate) fn txt_values(
    server: &str,
    name: &Name<Vec<u8>>,
    answer: &[u8],
) -> Result<Vec<String>, DnsError> {
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
