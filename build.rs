//! Records the target triple for `pbx-certd --version` (appliance builds
//! must say which board binary they are).
fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=PBX_CERTD_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
