//! pbx-certd: the certificate manager of a multi-tenant PBX.
//!
//! The library holds all logic so that the thin `main.rs`, the integration
//! tests and (later) the daemon call the same code (rathole's `run()` shape).
//! Module map: `pem`/`pki` (pure import rules), `names` (DNS names, RFC 6125),
//! `store` (sled behind a small `Kv` trait), `tenant`, `certs`, `roots`,
//! `snapshot` (the lock-free SNI map), `ops` (one function per command),
//! `cli` (the command-line contract), `limits`, `error`, `clock`;
//! `fuzz_entry` (arbitrary bytes into each untrusted-input path, for
//! `tests/fuzz` and `tests/fuzz_corpus.rs`).
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod acme;
pub mod admission;
pub mod alert;
pub mod auth;
pub mod certs;
pub mod cli;
pub mod clock;
pub mod control;
pub mod daemon;
pub mod dns;
pub mod dns01;
pub mod renewal;

pub mod error;
pub mod fuzz_entry;
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
pub mod roots;
pub mod serve;
pub mod session;
pub mod settings;
pub mod snapshot;
pub mod store;
pub mod tenant;
pub mod tls;

pub use error::Error;
pub use store::Store;
