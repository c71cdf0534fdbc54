//! `pbx-certd --version` names the version, the target triple it was built
//! for and the bundled Root CA list (appliance integrators check all three).

#[test]
fn version_names_target_and_root_list() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pbx-certd"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
    let arch = std::env::consts::ARCH;
    let arch = if arch == "arm" { "armv7" } else { arch };
    assert!(
        text.contains(&format!("target {arch}-unknown-linux-")),
        "{text}"
    );
    assert!(text.contains("webpki-root-certs"), "{text}");
    assert!(text.contains(" roots, "), "{text}");
}
