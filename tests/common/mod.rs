//! Shared helpers of the integration tests: a `Pbx` that drives the real
//! `pbx-certd` binary on a fresh data dir, and certificate factories (rcgen,
//! plus the `openssl` command line for RSA and odd key formats).
//!
//! Every certificate is made at test time. Nothing here sleeps or measures
//! time: the only clock use is "now" to place validity windows around it, and a
//! generous deadline that kills a hung binary (a hang is a failure).

#![allow(dead_code)]

pub mod accept_any;
pub mod browser;
pub mod serve;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CustomExtension, DistinguishedName, DnType,
    IsCa, KeyPair, PublicKeyData, SanType, SerialNumber, SignatureAlgorithm,
};
use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_pbx-certd");

/// A command still running after this is killed and the test fails: the CLI
/// must never hang (this is a hang guard, not a performance assertion).
pub const HANG_GUARD: Duration = Duration::from_secs(120);

/// Seconds in a day.
pub const DAY: i64 = 86_400;

/// OID of the TNAuthList extension (RFC 8226), which makes a STIR/SHAKEN cert.
pub const TN_AUTH_LIST_OID: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 26];

// ---------------------------------------------------------------------------
// Running processes
// ---------------------------------------------------------------------------

/// What one run of a process gave.
#[derive(Debug, Clone)]
pub struct Out {
    pub cmd: String,
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Everything about the run, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "command: {}\nexit status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmd, self.status, self.stdout, self.stderr
        )
    }

    /// stdout parsed as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!("stdout is not one JSON document ({e})\n{}", self.describe())
        })
    }

    /// Asserts exit 0 and returns self.
    #[track_caller]
    pub fn success(&self) -> &Self {
        assert_eq!(self.status, 0, "expected success\n{}", self.describe());
        self
    }

    /// Asserts a usage error: exit 2 and something on stderr.
    #[track_caller]
    pub fn usage_error(&self) -> &Self {
        assert_eq!(
            self.status,
            2,
            "expected a usage error (exit 2)\n{}",
            self.describe()
        );
        assert!(
            !self.stderr.trim().is_empty(),
            "a usage error must explain itself on stderr\n{}",
            self.describe()
        );
        self
    }

    /// Asserts a rejected operation run with `--json`: exit 1, stdout exactly
    /// `{"error":{"code","message"}}`, a human message on stderr. Returns it.
    #[track_caller]
    pub fn api_error(&self) -> ApiError {
        assert_eq!(
            self.status,
            1,
            "expected a rejected operation (exit 1)\n{}",
            self.describe()
        );
        assert!(
            !self.stderr.trim().is_empty(),
            "a rejected operation must print a human message on stderr\n{}",
            self.describe()
        );
        let v = self.json();
        let obj = v
            .as_object()
            .unwrap_or_else(|| panic!("error output is not an object\n{}", self.describe()));
        assert_eq!(
            obj.len(),
            1,
            "error output must be {{\"error\":{{..}}}} only\n{}",
            self.describe()
        );
        let e = &v["error"];
        let code = e["code"]
            .as_str()
            .unwrap_or_else(|| panic!("error.code must be a string\n{}", self.describe()))
            .to_string();
        let message = e["message"]
            .as_str()
            .unwrap_or_else(|| panic!("error.message must be a string\n{}", self.describe()))
            .to_string();
        assert!(
            !message.trim().is_empty(),
            "error.message is empty\n{}",
            self.describe()
        );
        ApiError {
            code,
            message,
            out: self.clone(),
        }
    }
}

/// A `{"error":{"code","message"}}` answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: String,
    pub message: String,
    pub out: Out,
}

impl ApiError {
    /// Asserts the code, with the whole run in the failure message.
    #[track_caller]
    pub fn expect(&self, code: &str) -> &Self {
        assert_eq!(self.code, code, "wrong error code\n{}", self.out.describe());
        self
    }
}

/// Runs `cmd`, feeding `stdin` (or nothing: stdin closed), killing it at the
/// hang guard. Never deadlocks on full pipes (readers run on threads).
pub fn run_command(mut cmd: Command, stdin: Option<Vec<u8>>) -> Out {
    let desc = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
    let writer = stdin.map(|data| {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        std::thread::spawn(move || {
            // The child may exit before reading everything (e.g. too-large):
            // a broken pipe is not the test's concern.
            let _ = pipe.write_all(&data);
        })
    });
    let mut out_pipe = child.stdout.take().expect("stdout pipe");
    let mut err_pipe = child.stderr.take().expect("stderr pipe");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait().expect("try_wait") {
            Some(status) => break status,
            None if start.elapsed() > HANG_GUARD => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{desc} did not finish within {HANG_GUARD:?}: it hangs");
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned();
    let status = status
        .code()
        .unwrap_or_else(|| panic!("{desc} was killed by a signal: {status:?}\nstderr:\n{stderr}"));
    Out {
        cmd: desc,
        status,
        stdout,
        stderr,
    }
}

// ---------------------------------------------------------------------------
// The binary on a fresh data dir
// ---------------------------------------------------------------------------

static FILE_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// One fresh pbx-certd data dir (not created beforehand: the binary creates
/// it) plus a scratch folder for PEM files.
pub struct Pbx {
    pub tmp: tempfile::TempDir,
    pub data: PathBuf,
    pub files: PathBuf,
}

impl Default for Pbx {
    fn default() -> Self {
        Self::new()
    }
}

impl Pbx {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("data");
        let files = tmp.path().join("files");
        std::fs::create_dir(&files).expect("files dir");
        Pbx { tmp, data, files }
    }

    /// `pbx-certd --data-dir DATA ARGS...` with no data-dir env var around.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_remove("PBX_CERTD_DATA_DIR")
            .arg("--data-dir")
            .arg(&self.data)
            .args(args);
        cmd
    }

    /// `serve` on this data dir (HTTPS on a free loopback port, no HTTP),
    /// ready; with `echo` its log goes to the test's output too.
    pub fn serve(&self, echo: bool) -> serve::Daemon {
        serve::Daemon::start(
            &mut self.command(&["serve", "--https", "127.0.0.1:0", "--http", "none"]),
            echo,
        )
    }

    pub fn run(&self, args: &[&str]) -> Out {
        run_command(self.command(args), None)
    }

    pub fn run_stdin(&self, args: &[&str], stdin: &[u8]) -> Out {
        run_command(self.command(args), Some(stdin.to_vec()))
    }

    /// Runs `ARGS --json`.
    pub fn run_json(&self, args: &[&str]) -> Out {
        let mut a = args.to_vec();
        a.push("--json");
        self.run(&a)
    }

    /// Runs `ARGS --json`, asserts success, returns the JSON.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> Value {
        let out = self.run_json(args);
        out.success();
        out.json()
    }

    /// Runs `ARGS --json` for a command with nothing to report: asserts
    /// success and `{"ok":true}`.
    #[track_caller]
    pub fn ok_true(&self, args: &[&str]) {
        let out = self.run_json(args);
        out.success();
        assert_eq!(
            out.json(),
            serde_json::json!({"ok": true}),
            "a command with nothing to report prints {{\"ok\":true}}\n{}",
            out.describe()
        );
    }

    /// Runs `ARGS --json`, asserts a rejected operation, returns the error.
    #[track_caller]
    pub fn err(&self, args: &[&str]) -> ApiError {
        self.run_json(args).api_error()
    }

    /// Writes a file in the scratch folder; returns its path as a string.
    pub fn file(&self, hint: &str, contents: impl AsRef<[u8]>) -> String {
        let n = FILE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = self.files.join(format!("{n:04}-{hint}"));
        std::fs::write(&path, contents).expect("write scratch file");
        path.to_str().expect("utf-8 path").to_string()
    }

    /// `import --cert CERTFILE [--key KEYFILE] EXTRA... --json`.
    pub fn import(&self, cert: impl AsRef<[u8]>, key: Option<&str>, extra: &[&str]) -> Out {
        let cert_path = self.file("cert.pem", cert);
        let key_path = key.map(|k| self.file("key.pem", k));
        let mut args = vec!["import", "--cert", cert_path.as_str()];
        if let Some(k) = &key_path {
            args.push("--key");
            args.push(k.as_str());
        }
        args.extend_from_slice(extra);
        self.run_json(&args)
    }

    /// Import that must succeed; returns the JSON answer.
    #[track_caller]
    pub fn import_ok(&self, cert: impl AsRef<[u8]>, key: Option<&str>, extra: &[&str]) -> Value {
        let out = self.import(cert, key, extra);
        out.success();
        out.json()
    }

    /// Import that must be rejected; returns the error.
    #[track_caller]
    pub fn import_err(
        &self,
        cert: impl AsRef<[u8]>,
        key: Option<&str>,
        extra: &[&str],
    ) -> ApiError {
        self.import(cert, key, extra).api_error()
    }

    /// Imports `leaf` (with its key) and `chain` (issuers, leaf-first order).
    #[track_caller]
    pub fn import_chain(&self, leaf: &Issued, chain: &[&Issued], extra: &[&str]) -> Value {
        let mut pem = leaf.pem();
        for c in chain {
            pem.push_str(&c.pem());
        }
        self.import_ok(pem, Some(&leaf.key_pem()), extra)
    }

    /// `certs --json` as a list.
    #[track_caller]
    pub fn certs(&self) -> Vec<Value> {
        as_array(self.ok(&["certs"]))
    }

    /// IDs of `certs --json`, in its order.
    #[track_caller]
    pub fn cert_ids(&self) -> Vec<String> {
        self.certs()
            .iter()
            .map(|c| c["id"].as_str().expect("id").to_string())
            .collect()
    }

    /// `roots --json` as a list.
    #[track_caller]
    pub fn roots(&self) -> Vec<Value> {
        as_array(self.ok(&["roots"]))
    }

    /// IDs of `roots --json`.
    #[track_caller]
    pub fn root_ids(&self) -> BTreeSet<String> {
        self.roots()
            .iter()
            .map(|c| c["id"].as_str().expect("id").to_string())
            .collect()
    }

    /// `resolve [SNI] --json`.
    #[track_caller]
    pub fn resolve(&self, sni: Option<&str>) -> Value {
        match sni {
            Some(s) => self.ok(&["resolve", s]),
            None => self.ok(&["resolve"]),
        }
    }

    /// `tenant add NAME --dns A --dns B ...`, must succeed. (Whether it
    /// prints `{"ok":true}` is checked once, in tests/cli.rs, not everywhere.)
    #[track_caller]
    pub fn tenant_add(&self, name: &str, dns: &[&str]) {
        let mut args = vec!["tenant", "add", name];
        for d in dns {
            args.push("--dns");
            args.push(d);
        }
        self.ok(&args);
    }

    /// `system show --json`.
    #[track_caller]
    pub fn system(&self) -> Value {
        self.ok(&["system", "show"])
    }

    /// Everything observable about the store, to compare before/after.
    #[track_caller]
    pub fn state(&self) -> Value {
        serde_json::json!({
            "certs": self.ok(&["certs"]),
            "roots": self.ok(&["roots"]),
            "tenants": self.ok(&["tenant", "list"]),
            "system": self.ok(&["system", "show"]),
        })
    }
}

#[track_caller]
pub fn as_array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        other => panic!("expected a JSON array, got {other}"),
    }
}

/// The codes of `warnings` in an import answer.
#[track_caller]
pub fn warning_codes(import: &Value) -> Vec<String> {
    let w = import["warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("import answer without a warnings array: {import}"));
    w.iter()
        .map(|x| {
            let msg = x["message"]
                .as_str()
                .unwrap_or_else(|| panic!("warning without message: {x}"));
            assert!(!msg.trim().is_empty(), "warning with an empty message: {x}");
            x["code"]
                .as_str()
                .unwrap_or_else(|| panic!("warning without code: {x}"))
                .to_string()
        })
        .collect()
}

/// Asserts the import answer carries warning `code`.
#[track_caller]
pub fn assert_warning(import: &Value, code: &str) {
    let codes = warning_codes(import);
    assert!(
        codes.iter().any(|c| c == code),
        "expected warning {code}, got {codes:?} in {import}"
    );
}

/// Asserts the import answer does not carry warning `code`.
#[track_caller]
pub fn assert_no_warning(import: &Value, code: &str) {
    let codes = warning_codes(import);
    assert!(
        !codes.iter().any(|c| c == code),
        "unexpected warning {code} in {import}"
    );
}

/// The entry of `list` whose `id` is `id`.
#[track_caller]
pub fn by_id<'a>(list: &'a [Value], id: &str) -> &'a Value {
    list.iter()
        .find(|v| v["id"] == id)
        .unwrap_or_else(|| panic!("no entry with id {id} in {list:?}"))
}

/// `v[key]` as a string list.
#[track_caller]
pub fn str_list(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is not an array in {v}"))
        .iter()
        .map(|x| x.as_str().expect("string").to_string())
        .collect()
}

// ---------------------------------------------------------------------------
// Time, IDs, PEM
// ---------------------------------------------------------------------------

/// Now, in Unix seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// `2026-11-26T23:06:13Z` for a Unix time (UTC).
pub fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(DAY);
    let secs = unix.rem_euclid(DAY);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// True for `YYYY-MM-DDTHH:MM:SSZ`.
pub fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// Lowercase hex SHA-256: a certificate ID.
pub fn sha256_hex(der: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// True for 64 lowercase hex digits.
pub fn is_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// The PEM blocks of a text: (label, DER). Panics on a malformed block.
pub fn pem_blocks(text: &str) -> Vec<(String, Vec<u8>)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            current = Some((label.to_string(), String::new()));
        } else if let Some(label) = line
            .strip_prefix("-----END ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            let (l, body) = current.take().expect("END without BEGIN");
            assert_eq!(l, label, "mismatched PEM labels");
            blocks.push((l, base64_decode(&body)));
        } else if let Some((_, body)) = current.as_mut() {
            if !line.contains(':') {
                body.push_str(line);
            }
        }
    }
    assert!(current.is_none(), "BEGIN without END in:\n{text}");
    blocks
}

/// DERs of the CERTIFICATE blocks of a text.
pub fn pem_certs(text: &str) -> Vec<Vec<u8>> {
    pem_blocks(text)
        .into_iter()
        .filter(|(l, _)| l == "CERTIFICATE")
        .map(|(_, d)| d)
        .collect()
}

/// Standard Base64 (with padding, whitespace ignored).
pub fn base64_decode(s: &str) -> Vec<u8> {
    fn val(c: u8) -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64 character {c}"),
        }
    }
    let clean: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= val(*c) << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

/// Standard Base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for chunk in data.chunks(3) {
        let mut acc = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            acc |= (*b as u32) << (16 - 8 * i);
        }
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(T[((acc >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// A PEM block with 64-column lines.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64_encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(line).unwrap());
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// LF → CRLF.
pub fn crlf(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\n', "\r\n")
}

/// The secret part of a private key (PEM, any accepted format): the EC
/// scalar, the Ed25519 seed, or the tail of an RSA key (CRT coefficient).
pub fn key_secret(key_pem: &str) -> Vec<u8> {
    let (_, der) = pem_blocks(key_pem)
        .into_iter()
        .find(|(l, _)| l.ends_with("PRIVATE KEY"))
        .expect("a private key block");
    let find = |pat: &[u8]| der.windows(pat.len()).position(|w| w == pat);
    const RSA_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    if key_pem.contains("RSA PRIVATE KEY") || find(RSA_OID).is_some() {
        return der[der.len() - 32..].to_vec();
    }
    if let Some(p) = find(&[0x04, 0x22, 0x04, 0x20]) {
        return der[p + 4..p + 36].to_vec();
    }
    for len in [0x20u8, 0x30] {
        if let Some(p) = find(&[0x02, 0x01, 0x01, 0x04, len]) {
            return der[p + 5..p + 5 + len as usize].to_vec();
        }
    }
    panic!("test helper: unknown key layout");
}

/// Asserts `text` does not echo the key: no PRIVATE KEY block, and the
/// secret neither in hex nor in Base64 (at any alignment, any line wrapping).
#[track_caller]
pub fn assert_no_key_material(text: &str, key_pem: &str) {
    assert!(
        !text.contains("PRIVATE KEY"),
        "output mentions a PRIVATE KEY block:\n{text}"
    );
    let secret = key_secret(key_pem);
    let flat: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let h = hex(&secret[..16]);
    assert!(
        !flat.to_lowercase().contains(&h),
        "output echoes the key in hex:\n{text}"
    );
    for shift in 0..3 {
        let body = &secret[shift..];
        let b64 = base64_encode(&body[..body.len() / 3 * 3]);
        for start in (0..=b64.len() - 16).step_by(4) {
            let chunk = &b64[start..start + 16];
            assert!(
                !flat.contains(chunk),
                "output echoes key material ({chunk}):\n{text}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------

/// A certificate with the key pair it certifies (the issuer of others, or a
/// leaf to import with its key).
pub struct Issued {
    pub cert: Certificate,
    pub key: KeyPair,
}

impl Issued {
    pub fn pem(&self) -> String {
        self.cert.pem()
    }
    pub fn der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }
    /// The expected pbx-certd ID.
    pub fn id(&self) -> String {
        sha256_hex(self.cert.der())
    }
    /// The key as PKCS#8 PEM.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }
}

/// A raw public key to certify (for keys rcgen/ring cannot load, e.g. RSA
/// 1024 bits): the subjectPublicKey bits and the algorithm naming it.
pub struct RawPublicKey {
    pub der: Vec<u8>,
    pub alg: &'static SignatureAlgorithm,
}

impl PublicKeyData for RawPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.der
    }
    fn algorithm(&self) -> &SignatureAlgorithm {
        self.alg
    }
}

/// Builds one certificate.
pub struct CertBuilder {
    pub params: CertificateParams,
    key: Option<KeyPair>,
}

/// A leaf for `names` (SAN DNS names; CN = first name), valid from a day ago
/// for 90 days, with a fresh P-256 key.
pub fn leaf(names: &[&str]) -> CertBuilder {
    let mut params = CertificateParams::default();
    params.subject_alt_names = names
        .iter()
        .map(|n| SanType::DnsName((*n).try_into().expect("ia5 name")))
        .collect();
    params.distinguished_name = dn(names.first().copied().unwrap_or("no-name leaf"));
    CertBuilder::with_params(params)
}

/// A CA certificate (CA:true, unconstrained) named `cn`, valid from ten years
/// ago for ten years, with a fresh P-256 key.
pub fn ca(cn: &str) -> CertBuilder {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let b = CertBuilder::with_params(params);
    b.valid_days(-3650, 3650)
}

/// A self-signed root CA.
pub fn root(cn: &str) -> Issued {
    ca(cn).self_signed()
}

/// An intermediate CA signed by `parent`.
pub fn intermediate(cn: &str, parent: &Issued) -> Issued {
    ca(cn).signed_by(parent)
}

/// A CN-only distinguished name.
pub fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    d
}

/// A fresh random unique-enough tag for names (hex of 4 random bytes).
pub fn tag() -> String {
    let mut b = [0u8; 4];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).unwrap();
    hex(&b)
}

impl CertBuilder {
    pub fn with_params(mut params: CertificateParams) -> Self {
        let mut serial = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial).unwrap();
        serial[0] = (serial[0] & 0x7f) | 0x10;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        CertBuilder { params, key: None }.valid_days(-1, 90)
    }

    /// Validity from `now + from` to `now + to` days.
    pub fn valid_days(self, from: i64, to: i64) -> Self {
        let n = now();
        self.valid_unix(n + from * DAY, n + to * DAY)
    }

    /// Validity in absolute Unix seconds.
    pub fn valid_unix(mut self, not_before: i64, not_after: i64) -> Self {
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        self.params.not_before = epoch + Duration::from_secs(not_before as u64);
        self.params.not_after = epoch + Duration::from_secs(not_after as u64);
        self
    }

    /// Sets the subject CN.
    pub fn cn(mut self, cn: &str) -> Self {
        self.params.distinguished_name = dn(cn);
        self
    }

    /// Adds a TNAuthList extension (SPC "1234"): a STIR/SHAKEN cert.
    pub fn tn_auth_list(mut self) -> Self {
        // TNAuthorizationList ::= SEQUENCE OF TNEntry; TNEntry spc [0] EXPLICIT IA5String
        let content = vec![0x30, 0x08, 0xa0, 0x06, 0x16, 0x04, b'1', b'2', b'3', b'4'];
        self.params
            .custom_extensions
            .push(CustomExtension::from_oid_content(TN_AUTH_LIST_OID, content));
        self
    }

    /// Makes it a CA (CA:true).
    pub fn ca(mut self) -> Self {
        self.params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        self
    }

    /// Uses this subject key instead of a fresh P-256 one.
    pub fn key(mut self, key: KeyPair) -> Self {
        self.key = Some(key);
        self
    }

    /// Fixed serial number.
    pub fn serial(mut self, serial: u64) -> Self {
        self.params.serial_number = Some(SerialNumber::from_slice(&serial.to_be_bytes()));
        self
    }

    fn take_key(&mut self) -> KeyPair {
        self.key
            .take()
            .unwrap_or_else(|| KeyPair::generate().expect("P-256 key"))
    }

    pub fn self_signed(mut self) -> Issued {
        let key = self.take_key();
        let cert = self.params.self_signed(&key).expect("self-sign");
        Issued { cert, key }
    }

    pub fn signed_by(mut self, issuer: &Issued) -> Issued {
        let key = self.take_key();
        let cert = self
            .params
            .signed_by(&key, &issuer.cert, &issuer.key)
            .expect("sign");
        Issued { cert, key }
    }

    /// Certifies a raw public key (no key pair to keep).
    pub fn signed_by_public(self, public: &impl PublicKeyData, issuer: &Issued) -> Certificate {
        self.params
            .signed_by(public, &issuer.cert, &issuer.key)
            .expect("sign")
    }
}

/// A root with an intermediate under it: the usual issuing path of the tests.
pub struct Pki {
    pub root: Issued,
    pub inter: Issued,
}

impl Pki {
    pub fn new() -> Self {
        let t = tag();
        let root = root(&format!("Test Root CA {t}"));
        let inter = intermediate(&format!("Test Intermediate CA {t}"), &root);
        Pki { root, inter }
    }

    /// A leaf signed by the intermediate.
    pub fn leaf(&self, b: CertBuilder) -> Issued {
        b.signed_by(&self.inter)
    }

    /// The import box of a leaf: leaf + intermediate.
    pub fn chain_pem(&self, leaf: &Issued) -> String {
        format!("{}{}", leaf.pem(), self.inter.pem())
    }

    /// Imports a leaf signed by the intermediate (with key and intermediate).
    #[track_caller]
    pub fn import(&self, pbx: &Pbx, leaf: &Issued, extra: &[&str]) -> Value {
        pbx.import_ok(self.chain_pem(leaf), Some(&leaf.key_pem()), extra)
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------
// openssl
// ---------------------------------------------------------------------------

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

/// Path helper for tests that need a path as &str.
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

// ---------------------------------------------------------------------------
// Certificates whose IDs share an 8-hex-digit prefix (for `ambiguous-id`)
// ---------------------------------------------------------------------------

/// A fixed Ed25519 test key: with it, rcgen output is deterministic (Ed25519
/// signatures are), so the serial numbers below were found once, offline, by a
/// birthday search over 2^32 prefixes. The certificates are still made here.
pub const COLLISION_KEY: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEILLhp3DRRuR8PYkZPu0vdfC20HtokaHqrwyLTPPVxUHN
-----END PRIVATE KEY-----
";

/// The two self-signed CA certs (roots) of the collision: serial offsets and
/// the shared ID prefix.
pub const ROOT_COLLISION: (u64, u64, &str) = (54_963, 153_754, "fb977f0c");

/// The two self-signed non-CA leaves (collide.example.com) of the collision.
pub const LEAF_COLLISION: (u64, u64, &str) = (11_666, 32_458, "73f8cbe6");

/// One certificate of a collision pair.
pub fn collision_cert(is_ca: bool, offset: u64) -> Issued {
    let key = KeyPair::from_pem(COLLISION_KEY).expect("fixed key");
    let mut p = if is_ca {
        CertificateParams::default()
    } else {
        CertificateParams::new(vec!["collide.example.com".to_string()]).expect("params")
    };
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(
        DnType::CommonName,
        if is_ca {
            "pbx-certd test collision root"
        } else {
            "collide.example.com"
        },
    );
    if is_ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    p.serial_number = Some(SerialNumber::from_slice(
        &(0x1000_0000_0000_0000u64 + offset).to_be_bytes(),
    ));
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2099, 1, 1);
    let cert = p.self_signed(&key).expect("self-sign");
    Issued { cert, key }
}

/// Both certificates of a collision pair, after checking that they do share
/// the prefix (if rcgen's output ever changes, this says so plainly).
#[track_caller]
pub fn collision_pair(is_ca: bool) -> (Issued, Issued, &'static str) {
    let (a, b, prefix) = if is_ca {
        ROOT_COLLISION
    } else {
        LEAF_COLLISION
    };
    let (a, b) = (collision_cert(is_ca, a), collision_cert(is_ca, b));
    assert_ne!(a.id(), b.id());
    assert!(
        a.id().starts_with(prefix) && b.id().starts_with(prefix),
        "test precondition: the fixed collision certificates no longer share the prefix \
         {prefix} ({} / {}); rcgen's encoding changed, redo the offline search",
        a.id(),
        b.id()
    );
    (a, b, prefix)
}
