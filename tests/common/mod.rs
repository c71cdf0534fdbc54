//! Shared helpers of the integration tests, one file per purpose; test
//! files `mod common; use common::*;` and get all of them:
//!
//! - `run`: one process run with a hang guard (`run_command`, `Out`);
//! - `pbx`: `Pbx`, a fresh data dir and the CLI on it;
//! - `serve`: the one way to start `pbx-certd serve` (`Serve`, `Daemon`);
//! - `accept_any`: the one accept-any TLS verifier and client config;
//! - `json`: reading JSON answers in assertions;
//! - `text`: time, IDs, hex/Base64/PEM, the no-key-echo check;
//! - `certs`: certificate makers (rcgen);
//! - `openssl`: the `openssl` command line as a key maker;
//! - `skip`: the one way a test skips for a missing peer (never silently);
//! - `browser`: whether Chromium/node/playwright are there;
//! - `kamailio`: Debian's Kamailio as a SIP registrar peer;
//! - `etcd`: Debian's etcd members on loopback (the clustered store);
//! - `fault_peers`: an instance of the ACME peers of its own (pebble, BIND);
//! - `websocket`: a minimal WebSocket client side (RFC 6455);
//! - `sti`: a STIR/SHAKEN signing setup on a running daemon (issue 15).
//!
//! Test binaries that do not take all of `common` declare single files with
//! `#[path = "common/FILE.rs"] mod FILE;` (those files name their siblings
//! through `super::`).
//!
//! Every certificate is made at test time. Nothing here measures time: the
//! only clock use is "now" to place validity windows around it, and generous
//! hang guards (a hang is a failure).

// Each test binary uses a part of the helpers.
#![allow(dead_code, unused_imports)]

pub mod accept_any;
pub mod browser;
pub mod certs;
pub mod etcd;
pub mod fault_peers;
pub mod json;
pub mod kamailio;
pub mod openssl;
pub mod pbx;
pub mod run;
pub mod serve;
pub mod skip;
pub mod sti;
pub mod text;
pub mod websocket;

pub use certs::*;
pub use json::*;
pub use openssl::*;
pub use pbx::*;
pub use run::*;
pub use serve::{Daemon, Serve};
pub use text::*;
