//! The browser tests' one rule for a missing browser: Debian's Chromium,
//! node and playwright-core (installed by `scripts/web-test/setup.sh`) must
//! be there. Only under `cross test`, whose emulated Docker image has no
//! Chromium or node for the host to drive (Cross.toml sets
//! `PBX_CERTD_EMULATED` there), may a browser test skip, through
//! `skip::require` (recorded; a failure with `PBX_CERTD_REQUIRE_PEERS=1`);
//! everywhere else a missing browser is a failure, never a skip.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Whether the browser tools are all here; `Err` names what is missing.
fn browser_tools(root: &Path) -> Result<(), String> {
    let node = Command::new("node").arg("--version").output();
    let playwright = root.join("scripts/web-test/node_modules/playwright-core/package.json");
    let missing: Vec<&str> = [
        (node.map(|o| o.status.success()).unwrap_or(false), "node"),
        (Path::new("/usr/bin/chromium").exists(), "/usr/bin/chromium"),
        (
            playwright.exists(),
            "scripts/web-test/node_modules/playwright-core",
        ),
    ]
    .into_iter()
    .filter(|(ok, _)| !ok)
    .map(|(_, what)| what)
    .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the browser test needs {}: run `scripts/web-test/setup.sh` (as root) first",
            missing.join(", ")
        ))
    }
}

/// `true` when the browser test can run. Tools missing: under emulation
/// (no browser in the container) the test is skipped out loud through
/// `skip::require` (a failure with `PBX_CERTD_REQUIRE_PEERS=1`); anywhere
/// else this panics.
#[track_caller]
pub fn browser_or_skip(root: &Path) -> bool {
    match browser_tools(root) {
        Ok(()) => true,
        Err(missing) => match std::env::var("PBX_CERTD_EMULATED") {
            Ok(emulator) => super::skip::require(
                "browser (Chromium, node, playwright-core)",
                Some(&format!("missing under {emulator}: {missing}")),
            ),
            Err(_) => panic!("{missing}"),
        },
    }
}
