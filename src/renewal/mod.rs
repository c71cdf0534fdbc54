//! ACME orders and the renewal timer (RFC 8555 §7.4, RFC 9773 ARI): the
//! network side of ACME, above the daemon.
//!
//! Why apart from `crate::acme`: the settings, account record, targets and
//! per-name-set status are plain store data that commands change (layer 4);
//! placing an order needs the daemon's shared state (the challenge answers
//! the listeners serve), the outgoing HTTPS client and the DNS-01 providers
//! (`dns01`). `issue` runs one order, `renew` is the loop that decides when,
//! `ari` asks the CA when it wants a certificate renewed.
//!
//! What must hold: uploaded certificates are never replaced; a failed order
//! never removes a served certificate; challenges are always withdrawn.

pub mod ari;
pub mod issue;
pub mod renew;
