//! pbx-certd: the certificate manager of a multi-tenant PBX.
//!
//! The library holds all logic so that the thin `main.rs`, the integration
//! tests and the fuzz targets call the same code (rathole's `run()` shape).
//! Module map, bottom up; a module imports only its own layer and those
//! below, with no cycle (`tests/layers.rs` checks it; README "Architecture"):
//!
//! - 0 plain building blocks: `model` (shared types, one parser each),
//!   `limits` (every limit, with its reason), `clock`, `logger`, `names`
//!   (DNS names, RFC 6125), `pem` (lenient PEM, RFC 7468), `admission`
//!   (connection budgets), `settings` (typed store keys), `proxy` (the
//!   PROXY protocol v2 header of a forward), `handshakes` (the per-listener
//!   ring of recent handshakes).
//! - 1 `pki`: the import rules, pure functions over DER.
//! - 2 `store`: the storage trait (get/put/delete/scan, batches, CAS, watch,
//!   leases) with its sled and in-memory backends; `etcd`, its etcd
//!   backend (a cluster's shared store, issue 16); `seal`, the wrapper
//!   that seals private keys and secret settings at rest (AES-256-GCM).
//! - 3 `error` (every operation's error enum, stable codes), `snapshot` (the
//!   immutable SNI map the handshake reads without a lock).
//! - 4 domain operations: `certs`, `tenant`, `roots`, `auth`, `localca`,
//!   `acme` (settings, account record, targets, status, leases), `dns`
//!   (configured DNS-01 providers), `outbound` (the HTTPS client that trusts
//!   the Root CA list), `connect` (`--tls-connect`: TLS to SIP trunks,
//!   trusting the Root CA list, with an optional client certificate),
//!   `session` (admin sessions and the login limit),
//!   `served` (who gets which certificate, from the snapshot's own rule),
//!   `stir` (STIR/SHAKEN PASSporTs: sign, publish, verify; STI trust list).
//! - 5 `ops`: the commands and their one table of effects; `open_store`.
//! - 6 `daemon`: shared state, the write lock, snapshot swaps, wake-ups.
//! - 7 `tls` (the SNI resolver), `renewal` (ACME orders, the renewal loop,
//!   ARI), `dns01` (DNS-01 providers and the propagation check).
//! - 8 `control` (the local socket), `http` (web admin, JSON API, port 80).
//! - 9 `serve` (the daemon's listeners and loops), `fuzz_entry`.
//! - 10 `cli` (the command-line contract; dispatches `serve`).
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod acme;
pub mod admission;
pub mod alert;
pub mod auth;
pub mod backup;
pub mod certs;
pub mod cli;
pub mod clock;
pub mod connect;
pub mod control;
pub mod daemon;
pub mod dns;
pub mod dns01;
pub mod renewal;

pub mod error;
pub mod etcd;
pub mod fuzz_entry;
pub mod handshakes;
pub mod http;
pub mod limits;
pub mod localca;
pub mod logger;
pub mod model;
pub mod names;
pub mod notify;
pub mod ops;
pub mod outbound;
pub mod pem;
pub mod pki;
pub mod proxy;
pub mod roots;
pub mod seal;
pub mod serve;
pub mod served;
pub mod session;
pub mod settings;
pub mod snapshot;
pub mod stir;
pub mod store;
pub mod tenant;
pub mod tls;

pub use error::Error;
pub use store::Store;
