//! The browser tests' one rule for a missing browser: Debian's Chromium,
//! node and playwright-core (installed by `scripts/web-test/setup.sh`) must
//! be there. Only under `cross test`, whose emulated Docker image has no
//! Chromium or node for the host to drive (Cross.toml sets
//! `PBX_CERTD_EMULATED` there), may a browser test skip, saying why;
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

/// `true` when the browser test can run; `false` (after saying why) only
/// when emulated without a browser; panics when tools are missing anywhere
/// else.
pub fn browser_or_skip(root: &Path) -> bool {
    match browser_tools(root) {
        Ok(()) => true,
        Err(missing) => match std::env::var("PBX_CERTD_EMULATED") {
            Ok(emulator) => {
                eprintln!("skipped under {emulator}: {missing}");
                false
            }
            Err(_) => panic!("{missing}"),
        },
    }
}
