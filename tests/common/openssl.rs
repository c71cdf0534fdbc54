//! The `openssl` command line as an independent key maker: RSA (PKCS#1,
//! PKCS#8), SEC1 EC keys (with or without parameters), format conversion,
//! and rcgen key pairs from them.

use std::io::Write;
use std::process::{Command, Stdio};

use rcgen::KeyPair;

use super::*;

/// Runs `openssl ARGS` with `stdin`, asserts success, returns stdout as text.
#[track_caller]
pub fn openssl_text(args: &[&str], stdin: Option<&[u8]>) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(args);
    let out = run_command(cmd, stdin.map(|s| s.to_vec()));
    assert_eq!(out.status, 0, "openssl failed\n{}", out.describe());
    out.stdout
}

/// `openssl ARGS` returning raw bytes (for DER output).
#[track_caller]
pub fn openssl_raw(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let w = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("openssl output");
    let _ = w.join();
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// An RSA key as PKCS#1 `RSA PRIVATE KEY`.
pub fn rsa_pkcs1(bits: u32) -> String {
    openssl_text(&["genrsa", "-traditional", &bits.to_string()], None)
}

/// An RSA key as PKCS#8 `PRIVATE KEY`.
pub fn rsa_pkcs8(bits: u32) -> String {
    let opt = format!("rsa_keygen_bits:{bits}");
    openssl_text(&["genpkey", "-algorithm", "RSA", "-pkeyopt", &opt], None)
}

/// An EC key as SEC1 `EC PRIVATE KEY`, preceded by an `EC PARAMETERS` block.
pub fn ec_sec1_with_params(curve: &str) -> String {
    openssl_text(&["ecparam", "-genkey", "-name", curve], None)
}

/// An EC key as SEC1 `EC PRIVATE KEY` alone.
pub fn ec_sec1(curve: &str) -> String {
    openssl_text(&["ecparam", "-genkey", "-noout", "-name", curve], None)
}

/// Any openssl key → unencrypted PKCS#8 PEM.
pub fn to_pkcs8(key_pem: &str) -> String {
    openssl_text(&["pkcs8", "-topk8", "-nocrypt"], Some(key_pem.as_bytes()))
}

/// An RSA key's PKCS#1 RSAPublicKey DER.
pub fn rsa_public_der(key_pem: &str) -> Vec<u8> {
    openssl_raw(
        &["rsa", "-RSAPublicKey_out", "-outform", "DER"],
        key_pem.as_bytes(),
    )
}

/// The public half of an RSA key, to certify with rcgen.
pub fn rsa_public(key_pem: &str) -> RawPublicKey {
    RawPublicKey {
        der: rsa_public_der(key_pem),
        alg: &rcgen::PKCS_RSA_SHA256,
    }
}

/// An rcgen key pair for an openssl EC/Ed25519/RSA(≥2048) key in any format.
pub fn keypair_of(key_pem: &str) -> KeyPair {
    KeyPair::from_pem(&to_pkcs8(key_pem)).expect("rcgen loads the PKCS#8 key")
}

/// A P-384 key (PKCS#8).
pub fn p384_key() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("P-384")
}

/// An Ed25519 key (PKCS#8).
pub fn ed25519_key() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("Ed25519")
}
