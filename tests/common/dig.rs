//! What the ACME peers' BIND holds, asked with `dig` (an independent DNS
//! client, not our own code).
#![allow(dead_code)]

use std::collections::HashMap;
use std::process::Command;

/// TXT values at `name` on the peers' BIND (`DNS_SERVER` of a peers
/// instance's environment), sorted.
pub fn dig_txt(env: &HashMap<String, String>, name: &str) -> Vec<String> {
    let (host, port) = env["DNS_SERVER"].split_once(':').expect("host:port");
    let out = Command::new("dig")
        .args(["+short", "+norecurse", "+time=2", "+tries=2", "-p", port])
        .arg(format!("@{host}"))
        .args([name, "TXT"])
        .output()
        .expect("run dig");
    assert!(out.status.success(), "dig failed");
    let mut values: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().trim_matches('"').to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    values.sort();
    values
}
