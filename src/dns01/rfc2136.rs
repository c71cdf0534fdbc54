//! The RFC 2136 provider: DNS UPDATE (RFC 2136 §2–3) signed with TSIG
//! (RFC 8945), sent to the zone's primary server.
//!
//! Why: dynamic update with TSIG is what every self-hosted DNS server
//! (BIND, Knot, PowerDNS, Windows with a TSIG-capable setup) speaks, so one
//! implementation covers most PBX customers that run their own DNS.
//!
//! Messages (built with the `domain` crate): zone section = the zone's SOA
//! question (§2.3); no prerequisites; update section (§2.5) = "add to an
//! RRset" (class IN, TTL `DNS01_TXT_TTL`) or "delete an RR from an RRset"
//! (class NONE, TTL 0, §2.5.4) for the one TXT value; TSIG record last in the
//! additional section (RFC 8945 §4.2, fudge 300 s per §10). The answer's TSIG
//! is verified (RFC 8945 §5.3) before its RCODE is believed; a server that
//! rejects our signature answers NOTAUTH with a TSIG error (§5.2), reported as
//! `dns-tsig-rejected`.
//!
//! What must hold: the secret never appears in errors or `Debug`; a name
//! outside the zone is refused before anything is sent (`dns-not-in-zone`).

use std::str::FromStr;
use std::time::Duration;

use domain::base::iana::{Class, Opcode, Rcode, Rtype};
use domain::base::{Message, MessageBuilder, Name};
use domain::rdata::rfc1035::Txt;
use domain::rdata::tsig::Time48;
use domain::tsig::{Algorithm, ClientTransaction, Key, KeyName, ValidationError};

use super::{wire, DnsError, DnsFuture, DnsProvider};
use crate::dns::in_zone;
use crate::limits::{DNS01_TXT_TTL, DNS_EXCHANGE_TIMEOUT_SECS, MAX_DNS_SECRET_LEN};
use crate::model::TsigAlgorithm;

/// An RFC 2136 provider for one zone.
pub struct Rfc2136 {
    zone: String,
    server: String,
    key: Key,
}

impl core::fmt::Debug for Rfc2136 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "Rfc2136({}, {}, key {} ****)",
            self.zone,
            self.server,
            self.key.name()
        )
    }
}

/// A DNS name in wire-ready form.
fn dname(name: &str) -> Result<Name<Vec<u8>>, DnsError> {
    let absolute = if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    };
    Name::from_str(&absolute).map_err(|e| DnsError::BadConfig(format!("bad DNS name {name}: {e}")))
}

impl Rfc2136 {
    /// A provider for `zone` updating through `server` (`HOST:PORT`).
    pub fn new(
        zone: &str,
        server: &str,
        tsig_name: &str,
        algorithm: TsigAlgorithm,
        secret_b64: &str,
    ) -> Result<Rfc2136, DnsError> {
        use base64ct::{Base64, Encoding};
        wire::check_server(server)?;
        if secret_b64.len() > MAX_DNS_SECRET_LEN {
            return Err(DnsError::BadConfig("the TSIG secret is too long".into()));
        }
        let secret = Base64::decode_vec(secret_b64.trim()).map_err(|_| {
            DnsError::BadConfig("the TSIG secret is not Base64 (as in BIND's key file)".into())
        })?;
        if secret.is_empty() {
            return Err(DnsError::BadConfig("the TSIG secret is empty".into()));
        }
        let absolute = if tsig_name.ends_with('.') {
            tsig_name.to_owned()
        } else {
            format!("{tsig_name}.")
        };
        let key_name = KeyName::from_str(&absolute)
            .map_err(|e| DnsError::BadConfig(format!("bad TSIG key name {tsig_name}: {e}")))?;
        let alg = match algorithm {
            TsigAlgorithm::HmacSha256 => Algorithm::Sha256,
            TsigAlgorithm::HmacSha512 => Algorithm::Sha512,
        };
        let key = Key::new(alg, &secret, key_name, None, None)
            .map_err(|e| DnsError::BadConfig(format!("unusable TSIG key: {e}")))?;
        let zone = zone.strip_suffix('.').unwrap_or(zone).to_ascii_lowercase();
        dname(&zone)?;
        Ok(Rfc2136 {
            zone,
            server: server.to_owned(),
            key,
        })
    }

    /// Build a signed UPDATE for one TXT record; `add` or delete.
    pub(crate) fn message(
        &self,
        fqdn: &str,
        value: &str,
        add: bool,
    ) -> Result<(Vec<u8>, ClientTransaction<&Key>), DnsError> {
        let name = fqdn.strip_suffix('.').unwrap_or(fqdn).to_ascii_lowercase();
        if !in_zone(&name, &self.zone) {
            return Err(DnsError::NotInZone(name, self.zone.clone()));
        }
        let push = |e: domain::base::message_builder::PushError| {
            DnsError::BadConfig(format!("DNS update does not fit: {e}"))
        };
        let txt = Txt::<Vec<u8>>::build_from_slice(value.as_bytes())
            .map_err(|e| DnsError::BadConfig(format!("TXT value: {e}")))?;
        let mut msg = MessageBuilder::new_vec();
        msg.header_mut().set_id(wire::random_id());
        msg.header_mut().set_opcode(Opcode::UPDATE);
        let mut zone = msg.question();
        zone.push((dname(&self.zone)?, Rtype::SOA, Class::IN))
            .map_err(push)?;
        let mut update = zone.authority();
        if add {
            update
                .push((dname(&name)?, Class::IN, DNS01_TXT_TTL, txt))
                .map_err(push)?;
        } else {
            update
                .push((dname(&name)?, Class::NONE, 0, txt))
                .map_err(push)?;
        }
        let mut additional = update.additional();
        let tran =
            ClientTransaction::request(&self.key, &mut additional, Time48::now()).map_err(push)?;
        Ok((additional.finish(), tran))
    }

    async fn update(&self, fqdn: &str, value: &str, add: bool) -> Result<(), DnsError> {
        let (request, tran) = self.message(fqdn, value, add)?;
        let addrs = wire::resolve(&self.server).await?;
        let mut last = DnsError::Io(format!("{}: no address", self.server));
        for addr in addrs {
            let timeout = Duration::from_secs(DNS_EXCHANGE_TIMEOUT_SECS);
            match wire::exchange(addr, &request, timeout).await {
                Ok(answer) => return self.check_answer(&tran, answer),
                Err(e @ (DnsError::Timeout(_) | DnsError::Io(_))) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    pub(crate) fn check_answer(
        &self,
        tran: &ClientTransaction<&Key>,
        answer: Vec<u8>,
    ) -> Result<(), DnsError> {
        let mut msg = Message::from_octets(answer)
            .map_err(|_| DnsError::BadResponse(format!("{}: short message", self.server)))?;
        let rcode = msg.header().rcode();
        if msg.header().opcode() != Opcode::UPDATE {
            return Err(DnsError::BadResponse(format!(
                "{}: the answer is not an UPDATE answer",
                self.server
            )));
        }
        match tran.answer(&mut msg, Time48::now()) {
            Ok(()) => {}
            Err(
                e @ (ValidationError::ServerBadKey
                | ValidationError::ServerBadSig
                | ValidationError::ServerBadTime { .. }),
            ) => return Err(DnsError::TsigRejected(format!("{}: {e}", self.server))),
            Err(ValidationError::ServerUnsigned) if rcode != Rcode::NOERROR => {
                return Err(rcode_error(&self.server, rcode));
            }
            Err(e) => {
                return Err(DnsError::BadResponse(format!(
                    "{}: the answer's TSIG does not verify ({e})",
                    self.server
                )))
            }
        }
        if rcode == Rcode::NOERROR {
            Ok(())
        } else {
            Err(rcode_error(&self.server, rcode))
        }
    }
}

fn rcode_error(server: &str, rcode: Rcode) -> DnsError {
    if rcode == Rcode::REFUSED || rcode == Rcode::NOTAUTH {
        DnsError::Refused(format!(
            "{server} answered {rcode} (is it the primary of the zone, and does the key's update-policy allow TXT records there?)"
        ))
    } else if rcode == Rcode::NOTZONE {
        DnsError::ServerError(format!(
            "{server} answered NOTZONE: the name is not in the zone it serves"
        ))
    } else {
        DnsError::ServerError(format!("{server} answered {rcode}"))
    }
}

impl DnsProvider for Rfc2136 {
    fn add_txt<'a>(&'a self, fqdn: &'a str, value: &'a str) -> DnsFuture<'a> {
        Box::pin(self.update(fqdn, value, true))
    }

    fn remove_txt<'a>(&'a self, fqdn: &'a str, value: &'a str) -> DnsFuture<'a> {
        Box::pin(self.update(fqdn, value, false))
    }

    fn authoritative_servers(&self) -> Vec<String> {
        vec![self.server.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> Rfc2136 {
        Rfc2136::new(
            "example.test",
            "127.0.0.1:53",
            "k.",
            TsigAlgorithm::HmacSha256,
            "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0",
        )
        .unwrap()
    }

    #[test]
    fn names_outside_the_zone_are_refused_before_sending() {
        let p = provider();
        assert!(matches!(
            p.message("_acme-challenge.other.test", "v", true),
            Err(DnsError::NotInZone(..))
        ));
        assert!(matches!(
            p.message("_acme-challenge.badexample.test", "v", true),
            Err(DnsError::NotInZone(..))
        ));
        assert!(p.message("_acme-challenge.example.test", "v", true).is_ok());
    }

    #[test]
    fn update_message_has_zone_update_and_tsig() {
        let p = provider();
        let (bytes, _) = p
            .message("_acme-challenge.example.test", "abc", false)
            .unwrap();
        let msg = Message::from_octets(bytes).unwrap();
        assert_eq!(msg.header().opcode(), Opcode::UPDATE);
        let counts = msg.header_counts();
        assert_eq!(
            (
                counts.qdcount(),
                counts.ancount(),
                counts.nscount(),
                counts.arcount()
            ),
            (1, 0, 1, 1)
        );
    }

    #[test]
    fn bad_config_is_named() {
        for (server, secret) in [("127.0.0.1", "c2VjcmV0"), ("127.0.0.1:53", "not base64!")] {
            let e = Rfc2136::new(
                "example.test",
                server,
                "k",
                TsigAlgorithm::HmacSha512,
                secret,
            )
            .unwrap_err();
            assert_eq!(e.code(), "bad-dns-config");
        }
    }

    #[test]
    fn garbage_answers_never_panic() {
        let p = provider();
        let (req, tran) = p
            .message("_acme-challenge.example.test", "abc", true)
            .unwrap();
        for n in 0..req.len().min(64) {
            let mut a = req[..n].to_vec();
            if let Some(b) = a.get_mut(2) {
                *b |= 0x80;
            }
            assert!(p.check_answer(&tran, a).is_err());
        }
    }
}
