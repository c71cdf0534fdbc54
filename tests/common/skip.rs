//! The one way a test skips because a peer or tool is missing (pebble and
//! BIND for ACME, Chromium/node for the browser tests, ...): `require`.
//! libtest has no "skipped" outcome, so a test that returns early counts as
//! passed; this makes such a skip visible and, where the peers must be
//! there, impossible:
//!
//! - it prints `SKIPPED <binary>::<test>: <reason>` to stderr and appends
//!   the same line to `target/skipped-tests.txt` (or the file named by
//!   `PBX_CERTD_SKIPPED_FILE`), which `scripts/test.sh` prints at its end;
//! - with `PBX_CERTD_REQUIRE_PEERS=1` (set by `scripts/test.sh`, hence CI)
//!   it panics instead: a missing peer fails the test.
//!
//! What must hold: every early return for a missing peer in `tests/` goes
//! through here (`tests/harness.rs` checks the helper itself, through a
//! child run of its own test binary).
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;

/// Set to `1`: a missing peer fails the test instead of skipping it.
pub const REQUIRE_ENV: &str = "PBX_CERTD_REQUIRE_PEERS";

/// Where skip lines go instead of `target/skipped-tests.txt`.
pub const FILE_ENV: &str = "PBX_CERTD_SKIPPED_FILE";

/// Set to `1` by a developer without the ACME peers: the peer tests skip
/// (through `require`, so never silently).
pub const NO_PEERS_ENV: &str = "PBX_CERTD_NO_PEERS";

/// The skip list: `PBX_CERTD_SKIPPED_FILE`, else `target/skipped-tests.txt`
/// of this crate.
pub fn skipped_file() -> PathBuf {
    match std::env::var_os(FILE_ENV) {
        Some(f) if !f.is_empty() => PathBuf::from(f),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/skipped-tests.txt"),
    }
}

/// Whether the calling test may use `peer`: `true` when `missing` is
/// `None`. Otherwise (`missing` says why the peer is not there) the test is
/// skipped out loud: the line goes to stderr and the skip list and this
/// returns `false`; the caller then returns. With `PBX_CERTD_REQUIRE_PEERS=1`
/// it panics instead.
#[track_caller]
pub fn require(peer: &str, missing: Option<&str>) -> bool {
    let Some(reason) = missing else {
        return true;
    };
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_owned();
    let line = format!(
        "SKIPPED {}::{test}: {peer}: {reason}",
        env!("CARGO_CRATE_NAME")
    );
    if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
        panic!("{line}\n({REQUIRE_ENV}=1: a missing peer fails the test, it is never skipped)");
    }
    // Straight to the process's stderr: libtest captures `eprintln!` of a
    // passing test, and a skip must show.
    let _ = writeln!(std::io::stderr(), "{line}");
    let path = skipped_file();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = written {
        panic!("{line}\ncannot record the skip in {}: {e}", path.display());
    }
    false
}

/// `require` for the ACME peers (pebble + BIND, `scripts/acme-peers.sh`):
/// missing when the developer set `PBX_CERTD_NO_PEERS=1`.
#[track_caller]
pub fn require_acme_peers() -> bool {
    let off = std::env::var(NO_PEERS_ENV).as_deref() == Ok("1");
    require(
        "ACME peers (pebble, BIND)",
        off.then_some("PBX_CERTD_NO_PEERS=1 (peers not started)"),
    )
}
