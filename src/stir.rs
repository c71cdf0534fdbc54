//! STIR/SHAKEN PASSporTs: signing the SIP `Identity` header with the
//! tenant's STIR/SHAKEN certificate, publishing its chain for `x5u`, and
//! verifying the headers of incoming calls against the STI trust list.
//!
//! Why: a STIR/SHAKEN certificate (TNAuthList, RFC 8226) is useless to a
//! PBX until something signs calls with it. This module is the PASSporT
//! logic (RFC 8225 compact JWS, the `shaken` extension of RFC 8588, the
//! Identity header of RFC 8224 §4, ATIS-1000074); `ops` runs it for the CLI,
//! the JSON API and the control socket alike.
//!
//! What must hold:
//! - the JWS protected header and payload are canonical JSON (RFC 8225 §9:
//!   keys sorted, no whitespace), telephone numbers canonical (RFC 8224
//!   §8.3: digits only, no visual separators, no leading `+`);
//! - only ES256 (RFC 8225 §8, ATIS-1000074 §5.3.1) with a P-256 key, the
//!   signature in the JWS fixed `r||s` form (RFC 7518 §3.4);
//! - verification never panics on any header or x5u answer: every refusal
//!   is a `VerifyFailure` with a stable code, the RFC 8224 §6.2.2 / §13.2
//!   SIP reason code and a `verstat` (ATIS-1000074 §5.3.1);
//! - the x5u answer is bounded (`MAX_X5U_BYTES`, `X5U_FETCH_TIMEOUT`) and
//!   cached by URL at most `MAX_X5U_CACHE_ENTRIES`, for at most its
//!   Cache-Control max-age (capped at `MAX_X5U_CACHE_SECS`); the chain is
//!   judged against the STI trust list only (the STI-PA's roots, not web
//!   roots), at the verification time, every time (the cache keeps bytes).
//!
//! Layer 4: it uses `certs` (the tenant's choice), `outbound` (HTTPS),
//! `pki`, the store and the settings; nothing above.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64ct::{Base64UrlUnpadded, Encoding};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, StirError};
use crate::limits::{
    DEFAULT_IAT_SKEW_SECS, MAX_DEST_TNS, MAX_IAT_SKEW_SECS, MAX_IDENTITY_LEN, MAX_STIR_SIGNERS,
    MAX_TN_DIGITS, MAX_X5U_BYTES, MAX_X5U_CACHE_ENTRIES, MAX_X5U_CACHE_SECS, X5U_FETCH_TIMEOUT,
};
use crate::pki::{CertInfo, KeyAlg, Kind};
use crate::settings::Setting;
use crate::store::{Batch, Store, StoreError};

/// The path prefix of published chains on the HTTPS listener.
pub const PUBLISH_PATH: &str = "/sti/";

/// The media type of a published chain (RFC 8555 §9.1, used by ATIS-1000074).
pub const PEM_CHAIN_TYPE: &str = "application/pem-certificate-chain";

// ---------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------

/// The stored STIR/SHAKEN settings (`Setting::StirShaken`, JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StirSettings {
    /// Base URL of the published chains (`BASE/ID.pem`); `None`: the
    /// daemon's own `https://SYSTEM-DNS/sti` (port 443).
    #[serde(default)]
    pub x5u_base: Option<String>,
    /// Allowed distance of `iat` from now, seconds.
    #[serde(default = "default_skew")]
    pub iat_skew: u64,
}

fn default_skew() -> u64 {
    DEFAULT_IAT_SKEW_SECS
}

impl Default for StirSettings {
    fn default() -> Self {
        StirSettings {
            x5u_base: None,
            iat_skew: DEFAULT_IAT_SKEW_SECS,
        }
    }
}

/// `stir-shaken set --json`: the settings and the x5u base in effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StirSettingsView {
    /// The configured base, `null` for the default.
    pub x5u_base: Option<String>,
    /// The base URLs are built from now (`null`: none, no system DNS name).
    pub x5u_base_effective: Option<String>,
    /// Allowed `iat` distance, seconds.
    pub iat_skew: u64,
}

/// A `stir-shaken set` change (`None`: unchanged; `x5u_base` `"none"`:
/// back to the default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StirChange {
    /// `--x5u-base URL|none`.
    #[serde(default)]
    pub x5u_base: Option<String>,
    /// `--iat-skew SECONDS`.
    #[serde(default)]
    pub iat_skew: Option<u64>,
}

/// The one parser of an x5u base URL: `https://host[:port][/path]`, no
/// query or fragment; kept without its trailing `/`.
pub fn parse_x5u_base(raw: &str) -> Result<String, StirError> {
    let bad = |why: &str| StirError::BadX5uBase(raw.chars().take(200).collect(), why.into());
    let trimmed = raw.trim().trim_end_matches('/');
    let url = crate::outbound::Url::parse(trimmed).map_err(|_| bad("not a URL"))?;
    if !url.tls {
        return Err(bad(
            "x5u must be an https:// URL (RFC 8226 §8, ATIS-1000074)",
        ));
    }
    if url.path.contains(['?', '#']) || trimmed.chars().any(|c| c.is_whitespace() || c == '>') {
        return Err(bad("no query, fragment, space or '>' allowed"));
    }
    Ok(trimmed.to_owned())
}

/// The stored settings (defaults when none).
pub fn settings(store: &Store) -> Result<StirSettings, Error> {
    match store.setting(Setting::StirShaken.name())? {
        None => Ok(StirSettings::default()),
        Some(raw) => serde_json::from_slice(&raw)
            .map_err(|e| Error::Store(StoreError::Corrupt(format!("stir-shaken settings: {e}")))),
    }
}

/// The base URL the x5u of our certificates starts with.
fn effective_base(store: &Store, s: &StirSettings) -> Result<Option<String>, Error> {
    if let Some(base) = &s.x5u_base {
        return Ok(Some(base.clone()));
    }
    Ok(store
        .system()?
        .dns
        .map(|dns| format!("https://{dns}{}", PUBLISH_PATH.trim_end_matches('/'))))
}

fn view(store: &Store, s: StirSettings) -> Result<StirSettingsView, Error> {
    Ok(StirSettingsView {
        x5u_base_effective: effective_base(store, &s)?,
        x5u_base: s.x5u_base,
        iat_skew: s.iat_skew,
    })
}

/// `stir-shaken set`: apply a change (none: show the settings).
pub fn set(store: &Store, change: &StirChange) -> Result<StirSettingsView, Error> {
    let mut s = settings(store)?;
    if change.x5u_base.is_none() && change.iat_skew.is_none() {
        return view(store, s);
    }
    if let Some(raw) = &change.x5u_base {
        s.x5u_base = match raw.trim() {
            "none" | "" => None,
            other => Some(parse_x5u_base(other)?),
        };
    }
    if let Some(skew) = change.iat_skew {
        if skew > MAX_IAT_SKEW_SECS {
            return Err(Error::BadSetting(format!(
                "iat skew: at most {MAX_IAT_SKEW_SECS} s (RFC 8224 §12.1: replay)"
            )));
        }
        s.iat_skew = skew;
    }
    let mut batch = Batch::default();
    let raw = serde_json::to_vec(&s).map_err(|e| Error::BadSetting(e.to_string()))?;
    batch.put_setting(Setting::StirShaken.name(), &raw);
    store.commit(batch)?;
    view(store, s)
}

// ---------------------------------------------------------------------------
// Telephone numbers, attestation, origid
// ---------------------------------------------------------------------------

/// RFC 8224 §8.3: drop visual separators (`-`, `.`, `(`, `)`, space) and a
/// leading `+`; what remains must be 1 to `MAX_TN_DIGITS` digits.
pub fn canonical_tn(raw: &str) -> Result<String, StirError> {
    let bad = |why: String| StirError::BadTn(raw.chars().take(64).collect(), why);
    let t = raw.trim();
    let t = t.strip_prefix('+').unwrap_or(t);
    let mut out = String::with_capacity(t.len());
    for c in t.chars() {
        match c {
            '0'..='9' => out.push(c),
            '-' | '.' | '(' | ')' | ' ' => {}
            other => return Err(bad(format!("'{}' is not a digit", other.escape_debug()))),
        }
    }
    if out.is_empty() {
        return Err(bad("no digits".into()));
    }
    if out.len() > MAX_TN_DIGITS {
        return Err(bad(format!("more than {MAX_TN_DIGITS} digits")));
    }
    Ok(out)
}

/// The attestation level (RFC 8588 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attest {
    /// Full: the caller is the number's authorised user.
    A,
    /// Partial: the customer is known, the number not.
    B,
    /// Gateway: only where the call entered.
    C,
}

impl Attest {
    /// `A`, `B` or `C`.
    pub fn as_str(self) -> &'static str {
        match self {
            Attest::A => "A",
            Attest::B => "B",
            Attest::C => "C",
        }
    }
}

impl core::str::FromStr for Attest {
    type Err = StirError;
    fn from_str(s: &str) -> Result<Attest, StirError> {
        match s.trim() {
            "A" | "a" => Ok(Attest::A),
            "B" | "b" => Ok(Attest::B),
            "C" | "c" => Ok(Attest::C),
            other => Err(StirError::BadAttest(other.chars().take(16).collect())),
        }
    }
}

/// A UUID in RFC 4122 text form (8-4-4-4-12 hex digits), lowercased.
pub fn parse_uuid(raw: &str) -> Result<String, StirError> {
    let ok = raw.len() == 36
        && raw.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    if ok {
        Ok(raw.to_ascii_lowercase())
    } else {
        Err(StirError::BadOrigid(raw.chars().take(64).collect()))
    }
}

/// A fresh random UUID v4 (RFC 4122 §4.4).
pub fn new_uuid() -> Result<String, StirError> {
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| StirError::SignFailed("no randomness for origid".into()))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

// ---------------------------------------------------------------------------
// Signing
// ---------------------------------------------------------------------------

/// A `stir-shaken sign` request, as typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignRequest {
    /// The tenant whose certificate signs (`stir-shaken select`).
    pub tenant: String,
    /// Calling number.
    pub orig: String,
    /// Called numbers (at least one).
    pub dest: Vec<String>,
    /// `A`, `B` or `C`.
    pub attest: String,
    /// A UUID; a fresh one when absent.
    #[serde(default)]
    pub origid: Option<String>,
    /// Unix seconds; now when absent.
    #[serde(default)]
    pub iat: Option<i64>,
}

/// `stir-shaken sign --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    /// The SIP `Identity` header value (RFC 8224 §4).
    pub identity: String,
    /// The certificate that signed.
    pub cert: String,
    /// Its published chain's URL.
    pub x5u: String,
    /// The protected header, canonical JSON.
    pub header: String,
    /// The payload, canonical JSON.
    pub payload: String,
}

/// A JSON string literal.
fn js(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// The protected header, canonical JSON (RFC 8225 §9: keys in lexicographic
/// order, no whitespace).
fn header_json(x5u: &str) -> String {
    format!(
        r#"{{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":{}}}"#,
        js(x5u)
    )
}

/// The payload, canonical JSON (keys sorted: attest, dest, iat, orig, origid).
fn payload_json(attest: Attest, dest: &[String], iat: i64, orig: &str, origid: &str) -> String {
    let dest: Vec<String> = dest.iter().map(|d| js(d)).collect();
    format!(
        r#"{{"attest":{},"dest":{{"tn":[{}]}},"iat":{iat},"orig":{{"tn":{}}},"origid":{}}}"#,
        js(attest.as_str()),
        dest.join(","),
        js(orig),
        js(origid)
    )
}

/// The x5u URL of certificate `id`.
pub fn x5u_of(store: &Store, id: &str) -> Result<String, Error> {
    let s = settings(store)?;
    let base = effective_base(store, &s)?.ok_or(StirError::NoX5uBase)?;
    Ok(format!("{base}/{id}.pem"))
}

/// A DER ECDSA signature (`SEQUENCE { r INTEGER, s INTEGER }`) in the JWS
/// fixed form `r||s`, 32 bytes each (RFC 7518 §3.4).
fn der_to_fixed(der: &[u8]) -> Option<[u8; 64]> {
    fn int(b: &[u8]) -> Option<(&[u8], &[u8])> {
        let (&tag, rest) = b.split_first()?;
        let (&len, rest) = rest.split_first()?;
        if tag != 0x02 || len > 33 || rest.len() < usize::from(len) {
            return None;
        }
        let (v, rest) = rest.split_at(usize::from(len));
        Some((v, rest))
    }
    let (&tag, rest) = der.split_first()?;
    let (&len, body) = rest.split_first()?;
    if tag != 0x30 || usize::from(len) != body.len() {
        return None;
    }
    let (r, rest) = int(body)?;
    let (s, rest) = int(rest)?;
    if !rest.is_empty() {
        return None;
    }
    let mut out = [0u8; 64];
    for (v, at) in [(r, 0), (s, 32)] {
        let v = match v {
            [0, tail @ ..] => tail,
            other => other,
        };
        if v.len() > 32 {
            return None;
        }
        out.get_mut(at + 32 - v.len()..at + 32)?.copy_from_slice(v);
    }
    Some(out)
}

/// Loaded P-256 signing keys by key ID (process-wide, at most
/// `MAX_STIR_SIGNERS`): loading a key checks it (a scalar multiplication),
/// which would cost more than the signature itself on every call. The key
/// ID is the hash of the public key, so a replaced key has another ID; the
/// certificate choice is read from the store on every call.
static SIGNERS: Mutex<Vec<(String, Arc<dyn rustls::sign::SigningKey>)>> = Mutex::new(Vec::new());

/// The signing key of certificate `id` (its key ID `key_id`), P-256 only.
fn signer_for(
    store: &Store,
    id: &str,
    key_id: &str,
) -> Result<Arc<dyn rustls::sign::SigningKey>, Error> {
    {
        let cache = SIGNERS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, k)) = cache.iter().find(|(k, _)| k == key_id) {
            return Ok(k.clone());
        }
    }
    let stored = store
        .key(key_id)?
        .ok_or_else(|| StirError::KeyMissing(id.to_owned()))?;
    let key = crate::pki::load_key(stored.format, &stored.der)?;
    if key.alg != KeyAlg::P256 {
        return Err(StirError::KeyNotP256(id.to_owned(), key.alg.name()).into());
    }
    let mut cache = SIGNERS.lock().unwrap_or_else(|p| p.into_inner());
    if cache.len() >= MAX_STIR_SIGNERS {
        cache.remove(0);
    }
    cache.push((key_id.to_owned(), key.signer.clone()));
    Ok(key.signer)
}

/// `stir-shaken sign`: the Identity header for one call.
pub fn sign(store: &Store, req: &SignRequest, now: i64) -> Result<Signed, Error> {
    let orig = canonical_tn(&req.orig)?;
    if req.dest.is_empty() {
        return Err(StirError::BadTn(String::new(), "no destination number".into()).into());
    }
    if req.dest.len() > MAX_DEST_TNS {
        return Err(Error::LimitExceeded(format!(
            "at most {MAX_DEST_TNS} destination numbers per PASSporT"
        )));
    }
    let dest = req
        .dest
        .iter()
        .map(|d| canonical_tn(d))
        .collect::<Result<Vec<_>, _>>()?;
    let attest: Attest = req.attest.parse()?;
    let origid = match &req.origid {
        Some(o) => parse_uuid(o)?,
        None => new_uuid()?,
    };
    let (id, _) = crate::certs::stir_select(store, &req.tenant)?;
    let id = id.ok_or_else(|| StirError::NoCertificate(req.tenant.clone()))?;
    let record = store
        .cert(&id)?
        .ok_or_else(|| StirError::NoCertificate(req.tenant.clone()))?;
    if record.not_after < now {
        return Err(StirError::Expired(id.clone(), crate::clock::rfc3339(record.not_after)).into());
    }
    if record.key_type != KeyAlg::P256.name() {
        return Err(StirError::KeyNotP256(id.clone(), record.key_type.clone()).into());
    }
    let signing_key = signer_for(store, &id, &record.key_id)?;
    let x5u = x5u_of(store, &id)?;
    let header = header_json(&x5u);
    let payload = payload_json(attest, &dest, req.iat.unwrap_or(now), &orig, &origid);
    let input = format!(
        "{}.{}",
        Base64UrlUnpadded::encode_string(header.as_bytes()),
        Base64UrlUnpadded::encode_string(payload.as_bytes())
    );
    let signer = signing_key
        .choose_scheme(&[rustls::SignatureScheme::ECDSA_NISTP256_SHA256])
        .ok_or_else(|| StirError::KeyNotP256(id.clone(), "other".into()))?;
    let der = signer
        .sign(input.as_bytes())
        .map_err(|e| StirError::SignFailed(e.to_string()))?;
    let fixed = der_to_fixed(&der)
        .ok_or_else(|| StirError::SignFailed("unexpected ECDSA signature encoding".into()))?;
    let jws = format!("{input}.{}", Base64UrlUnpadded::encode_string(&fixed));
    Ok(Signed {
        identity: format!("{jws};info=<{x5u}>;alg=ES256;ppt=shaken"),
        cert: id,
        x5u,
        header,
        payload,
    })
}

/// The PEM chain published at `/sti/ID.pem`: only for a stored STIR/SHAKEN
/// certificate of exactly that (full) ID; `None` for anything else.
pub fn published_chain(store: &Store, id: &str) -> Result<Option<String>, Error> {
    match store.cert(id)? {
        Some(record) if record.kind == Kind::StirShaken && record.id == id => {
            Ok(Some(crate::certs::chain_pem(store, id)?))
        }
        _ => Ok(None),
    }
}

// ---------------------------------------------------------------------------
// The STI trust list
// ---------------------------------------------------------------------------

// One implementation for every trust list: `crate::roots::TrustList::Sti`
// (`sti-roots import|list|show|delete`); verification reads its entries.

// ---------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------

/// `verstat` values (ATIS-1000074 §5.3.1, 3GPP TS 24.229 §7.2A.20).
pub const PASSED: &str = "TN-Validation-Passed";
/// The header was checked and failed.
pub const FAILED: &str = "TN-Validation-Failed";
/// No check could be made (no header, or its certificate unreachable).
pub const NO_VALIDATION: &str = "No-TN-Validation";

/// Why a verification failed: a stable code, the RFC 8224 reason code a
/// verifier answers with, and the `verstat` it implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyFailure {
    /// No Identity header given (428 Use Identity Header, §6.2.2).
    NoIdentity,
    /// Not a compact JWS with JSON header and payload, or a bad parameter
    /// (438 Invalid Identity Header).
    Malformed,
    /// The header's `alg` is not ES256 (438; ATIS-1000074 §5.3.1).
    WrongAlg,
    /// `ppt` missing from the protected header, or not `shaken` (438).
    WrongPpt,
    /// `iat` further from now than the allowed skew (403 Stale Date, §6.2.1).
    Stale,
    /// `orig` is not the calling number (438).
    OrigMismatch,
    /// The called number is not in `dest` (438).
    DestMismatch,
    /// `info`/`x5u` missing, not https, or different (436 Bad Identity Info).
    BadInfo,
    /// The x5u URL could not be fetched (436).
    X5uFetch,
    /// The x5u answer is larger than `MAX_X5U_BYTES` (436).
    X5uTooLarge,
    /// The x5u answer holds no certificate (436).
    X5uNotPem,
    /// The chain does not lead to the STI trust list (437 Unsupported Credential).
    Untrusted,
    /// The certificate has no TNAuthList extension (437; RFC 8226 §9).
    NoTnAuthList,
    /// The certificate's key is not P-256 (437).
    KeyNotP256,
    /// The signature does not verify (438; RFC 8224 §6.2.3).
    BadSignature,
}

impl VerifyFailure {
    /// Stable code.
    pub fn code(self) -> &'static str {
        match self {
            VerifyFailure::NoIdentity => "no-identity",
            VerifyFailure::Malformed => "malformed-identity",
            VerifyFailure::WrongAlg => "alg-not-es256",
            VerifyFailure::WrongPpt => "ppt-not-shaken",
            VerifyFailure::Stale => "stale-iat",
            VerifyFailure::OrigMismatch => "orig-mismatch",
            VerifyFailure::DestMismatch => "dest-mismatch",
            VerifyFailure::BadInfo => "bad-identity-info",
            VerifyFailure::X5uFetch => "x5u-fetch-failed",
            VerifyFailure::X5uTooLarge => "x5u-too-large",
            VerifyFailure::X5uNotPem => "x5u-not-pem",
            VerifyFailure::Untrusted => "untrusted-chain",
            VerifyFailure::NoTnAuthList => "no-tn-auth-list",
            VerifyFailure::KeyNotP256 => "cert-key-not-p256",
            VerifyFailure::BadSignature => "bad-signature",
        }
    }

    /// The SIP reason code (RFC 8224 §6.2.2, §13.2).
    pub fn sip_code(self) -> u16 {
        match self {
            VerifyFailure::NoIdentity => 428,
            VerifyFailure::Stale => 403,
            VerifyFailure::BadInfo
            | VerifyFailure::X5uFetch
            | VerifyFailure::X5uTooLarge
            | VerifyFailure::X5uNotPem => 436,
            VerifyFailure::Untrusted | VerifyFailure::NoTnAuthList | VerifyFailure::KeyNotP256 => {
                437
            }
            VerifyFailure::Malformed
            | VerifyFailure::WrongAlg
            | VerifyFailure::WrongPpt
            | VerifyFailure::OrigMismatch
            | VerifyFailure::DestMismatch
            | VerifyFailure::BadSignature => 438,
        }
    }

    /// The reason phrase of `sip_code`.
    pub fn sip_text(self) -> &'static str {
        match self.sip_code() {
            403 => "Stale Date",
            428 => "Use Identity Header",
            436 => "Bad Identity Info",
            437 => "Unsupported Credential",
            _ => "Invalid Identity Header",
        }
    }

    /// `verstat`: no header, or no certificate to check with, is
    /// `No-TN-Validation`; anything checked and failed `TN-Validation-Failed`.
    pub fn verstat(self) -> &'static str {
        match self {
            VerifyFailure::NoIdentity
            | VerifyFailure::BadInfo
            | VerifyFailure::X5uFetch
            | VerifyFailure::X5uTooLarge
            | VerifyFailure::X5uNotPem => NO_VALIDATION,
            _ => FAILED,
        }
    }
}

/// A `stir-shaken verify` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyRequest {
    /// The Identity header value.
    pub identity: String,
    /// The calling number (From / P-Asserted-Identity).
    pub orig: String,
    /// The called number (Request-URI / To).
    pub dest: String,
    /// Unix seconds; now when absent.
    #[serde(default)]
    pub now: Option<i64>,
}

/// The SIP reason of a failed verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipReason {
    /// 403, 428, 436, 437 or 438.
    pub code: u16,
    /// Its reason phrase.
    pub text: String,
}

/// The named error of a failed verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// `VerifyFailure::code`.
    pub code: String,
    /// What was wrong.
    pub message: String,
}

/// `stir-shaken verify --json`: the verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// `TN-Validation-Passed`, `TN-Validation-Failed` or `No-TN-Validation`.
    pub verstat: String,
    /// On failure: the RFC 8224 reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<SipReason>,
    /// On failure: the named error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
    /// The attestation (when the payload was read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attest: Option<String>,
    /// The origid (when the payload was read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origid: Option<String>,
    /// The x5u (when the header was read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x5u: Option<String>,
}

/// A failure with its message.
type Refusal = (VerifyFailure, String);

fn refuse<T>(f: VerifyFailure, message: impl Into<String>) -> Result<T, Refusal> {
    Err((f, message.into()))
}

/// What the header and payload said (filled as far as they were read).
#[derive(Default)]
struct Seen {
    attest: Option<String>,
    origid: Option<String>,
    x5u: Option<String>,
}

/// `stir-shaken verify`: the verdict on one Identity header. An `Err` only
/// for the caller's own input (`bad-tn`) or a store failure; every fault of
/// the header or its certificate is a failed `Verdict`.
pub fn verify(store: &Store, req: &VerifyRequest) -> Result<Verdict, Error> {
    let orig = canonical_tn(&req.orig)?;
    let dest = canonical_tn(&req.dest)?;
    let now = req.now.unwrap_or_else(crate::clock::now);
    let skew = settings(store)?.iat_skew;
    let mut seen = Seen::default();
    let outcome = check(
        store,
        req.identity.trim(),
        &orig,
        &dest,
        now,
        skew,
        &mut seen,
    );
    let (verstat, reason, error) = match outcome {
        Ok(()) => (PASSED, None, None),
        Err((f, message)) => (
            f.verstat(),
            Some(SipReason {
                code: f.sip_code(),
                text: f.sip_text().into(),
            }),
            Some(Failure {
                code: f.code().into(),
                message,
            }),
        ),
    };
    Ok(Verdict {
        verstat: verstat.into(),
        reason,
        error,
        attest: seen.attest,
        origid: seen.origid,
        x5u: seen.x5u,
    })
}

fn b64_json(part: &str, what: &str) -> Result<(Vec<u8>, Value), Refusal> {
    let raw = Base64UrlUnpadded::decode_vec(part).or_else(|_| {
        refuse(
            VerifyFailure::Malformed,
            format!("the {what} is not base64url"),
        )
    })?;
    let v: Value = serde_json::from_slice(&raw)
        .or_else(|_| refuse(VerifyFailure::Malformed, format!("the {what} is not JSON")))?;
    if !v.is_object() {
        return refuse(
            VerifyFailure::Malformed,
            format!("the {what} is not a JSON object"),
        );
    }
    Ok((raw, v))
}

/// The Identity header's parameters after the JWS (RFC 8224 §4.1).
fn params(rest: &str) -> Result<BTreeMap<String, String>, Refusal> {
    let mut out = BTreeMap::new();
    for p in rest.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        let v = v.trim();
        let v = v
            .strip_prefix('<')
            .and_then(|v| v.strip_suffix('>'))
            .unwrap_or(v);
        let v = v.trim_matches('"');
        out.insert(k.trim().to_ascii_lowercase(), v.to_owned());
    }
    Ok(out)
}

fn tn_of(v: &Value) -> Option<String> {
    canonical_tn(v.as_str()?).ok()
}

fn check(
    store: &Store,
    identity: &str,
    orig: &str,
    dest: &str,
    now: i64,
    skew: u64,
    seen: &mut Seen,
) -> Result<(), Refusal> {
    use VerifyFailure as F;
    if identity.is_empty() {
        return refuse(F::NoIdentity, "no Identity header");
    }
    if identity.len() > MAX_IDENTITY_LEN {
        return refuse(
            F::Malformed,
            format!("the Identity header is longer than {MAX_IDENTITY_LEN} bytes"),
        );
    }
    let (jws, rest) = identity.split_once(';').unwrap_or((identity, ""));
    let params = params(rest)?;
    let parts: Vec<&str> = jws.trim().split('.').collect();
    let [h, p, s] = parts.as_slice() else {
        return refuse(
            F::Malformed,
            "not a compact JWS (three base64url parts; RFC 8225 §7)",
        );
    };
    let (_, header) = b64_json(h, "protected header")?;
    let (_, payload) = b64_json(p, "payload")?;
    seen.x5u = header["x5u"].as_str().map(str::to_owned);
    seen.attest = payload["attest"].as_str().map(str::to_owned);
    seen.origid = payload["origid"].as_str().map(str::to_owned);
    if header["alg"] != "ES256" || params.get("alg").is_some_and(|a| a != "ES256") {
        return refuse(
            F::WrongAlg,
            format!("alg is {} (only ES256 is allowed)", header["alg"]),
        );
    }
    if header["ppt"] != "shaken" || params.get("ppt").is_some_and(|a| a != "shaken") {
        return refuse(
            F::WrongPpt,
            format!("ppt is {} (shaken expected, RFC 8588)", header["ppt"]),
        );
    }
    if header.get("typ").is_some_and(|t| t != "passport") {
        return refuse(F::Malformed, "typ is not passport (RFC 8225 §5.1.1)");
    }
    if !matches!(seen.attest.as_deref(), Some("A" | "B" | "C")) || seen.origid.is_none() {
        return refuse(
            F::Malformed,
            "attest (A, B, C) or origid missing (RFC 8588 §4)",
        );
    }
    let Some(iat) = payload["iat"].as_i64() else {
        return refuse(F::Malformed, "iat missing or not a number");
    };
    if now.abs_diff(iat) > skew {
        return refuse(
            F::Stale,
            format!(
                "iat {iat} is {} s from now (at most {skew} s)",
                now.abs_diff(iat)
            ),
        );
    }
    match tn_of(&payload["orig"]["tn"]) {
        Some(tn) if tn == orig => {}
        Some(tn) => {
            return refuse(
                F::OrigMismatch,
                format!("orig is {tn}, the call is from {orig}"),
            )
        }
        None => return refuse(F::Malformed, "orig.tn missing or not a number"),
    }
    let dests: Vec<String> = match &payload["dest"]["tn"] {
        Value::Array(a) => a.iter().filter_map(tn_of).collect(),
        other => tn_of(other).into_iter().collect(),
    };
    if dests.is_empty() {
        return refuse(F::Malformed, "dest.tn missing");
    }
    if !dests.iter().any(|d| d == dest) {
        return refuse(
            F::DestMismatch,
            format!("dest is {}, the call is to {dest}", dests.join(",")),
        );
    }
    let Some(x5u) = seen.x5u.clone() else {
        return refuse(F::BadInfo, "x5u missing from the protected header");
    };
    match params.get("info") {
        Some(info) if *info == x5u => {}
        Some(info) => return refuse(F::BadInfo, format!("info <{info}> is not the x5u {x5u}")),
        None => return refuse(F::BadInfo, "the info parameter is missing (RFC 8224 §4.1)"),
    }
    if !x5u.starts_with("https://") {
        return refuse(F::BadInfo, format!("x5u {x5u} is not an https:// URL"));
    }
    let body = fetch_x5u(store, &x5u, crate::clock::now())?;
    let ders: Vec<Vec<u8>> = match crate::pem::parse(&body) {
        Ok(blocks) => blocks
            .into_iter()
            .filter(|b| b.label == "CERTIFICATE")
            .map(|b| b.der)
            .collect(),
        Err(_) => Vec::new(),
    };
    let Some(leaf) = ders.first().and_then(|d| CertInfo::parse(d.clone())) else {
        return refuse(F::X5uNotPem, format!("{x5u} holds no PEM certificate"));
    };
    check_chain(store, &ders, now)?;
    if !leaf.tn_auth_list {
        return refuse(
            F::NoTnAuthList,
            "the certificate has no TNAuthList extension (RFC 8226 §9)",
        );
    }
    if leaf.key_alg != KeyAlg::P256 {
        return refuse(
            F::KeyNotP256,
            format!("the certificate's key is {}", leaf.key_alg.name()),
        );
    }
    let sig = Base64UrlUnpadded::decode_vec(s).unwrap_or_default();
    let signed = jws
        .trim()
        .rsplit_once('.')
        .map(|(input, _)| input)
        .unwrap_or_default();
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_FIXED,
        leaf.public_key(),
    );
    if key.verify(signed.as_bytes(), &sig).is_err() {
        return refuse(F::BadSignature, "the signature does not verify");
    }
    Ok(())
}

/// Any extended key usage (STI certificates carry none or their own).
struct AnyUsage;

impl webpki::ExtendedKeyUsageValidator for AnyUsage {
    fn validate(&self, _: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        Ok(())
    }
}

/// The leaf (first) through the others to the STI trust list, at `now`.
fn check_chain(store: &Store, ders: &[Vec<u8>], now: i64) -> Result<(), Refusal> {
    use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
    let roots = crate::roots::TrustList::Sti
        .entries(store)
        .or_else(|e| refuse(VerifyFailure::Untrusted, format!("STI trust list: {e}")))?;
    if roots.is_empty() {
        return refuse(
            VerifyFailure::Untrusted,
            "the STI trust list is empty (sti-roots import)",
        );
    }
    let root_ders: Vec<CertificateDer<'_>> = roots
        .iter()
        .map(|(_, d)| CertificateDer::from(d.as_slice()))
        .collect();
    let anchors: Vec<TrustAnchor<'_>> = root_ders
        .iter()
        .filter_map(|d| webpki::anchor_from_trusted_cert(d).ok())
        .collect();
    let certs: Vec<CertificateDer<'_>> = ders
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let Some((leaf, inters)) = certs.split_first() else {
        return refuse(VerifyFailure::X5uNotPem, "no certificate");
    };
    let ee = webpki::EndEntityCert::try_from(leaf)
        .or_else(|e| refuse(VerifyFailure::Untrusted, format!("the certificate: {e:?}")))?;
    let algs = rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all;
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(now).unwrap_or(0),
    ));
    ee.verify_for_usage(algs, &anchors, inters, time, &AnyUsage, None, None)
        .map(|_| ())
        .or_else(|e| {
            refuse(
                VerifyFailure::Untrusted,
                format!("the chain does not lead to the STI trust list: {e:?}"),
            )
        })
}

/// One cached x5u answer.
struct Cached {
    url: String,
    body: Vec<u8>,
    until: i64,
}

/// x5u answers by URL (process-wide: the daemon's verifications share it;
/// a CLI run starts empty). Bounded by `MAX_X5U_CACHE_ENTRIES`.
static X5U_CACHE: Mutex<Vec<Cached>> = Mutex::new(Vec::new());

/// The `max-age` of a Cache-Control value (none for `no-store`/`no-cache`).
fn max_age(cache_control: Option<&[u8]>) -> Option<u64> {
    let text = std::str::from_utf8(cache_control?).ok()?;
    let mut age = None;
    for d in text.split(',').map(|d| d.trim().to_ascii_lowercase()) {
        if d == "no-store" || d == "no-cache" {
            return None;
        }
        if let Some(v) = d.strip_prefix("max-age=") {
            age = v.trim_matches('"').parse::<u64>().ok();
        }
    }
    age.map(|a| a.min(MAX_X5U_CACHE_SECS))
}

/// The x5u answer: from the cache while fresh, else fetched over HTTPS
/// (trusting the Root CA list), bounded in time and size.
fn fetch_x5u(store: &Store, url: &str, now: i64) -> Result<Vec<u8>, Refusal> {
    use smol::future::FutureExt as _;
    use VerifyFailure as F;
    {
        let mut cache = X5U_CACHE.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|c| c.until > now);
        if let Some(c) = cache.iter().find(|c| c.url == url) {
            return Ok(c.body.clone());
        }
    }
    let client = crate::outbound::Client::from_store(store)
        .or_else(|e| refuse(F::X5uFetch, format!("{url}: {e}")))?;
    let accept = [("Accept", PEM_CHAIN_TYPE)];
    let work = client.request("GET", url, &accept, b"");
    let timeout = async {
        smol::Timer::after(X5U_FETCH_TIMEOUT).await;
        Err(crate::outbound::HttpError::Timeout)
    };
    let resp = match smol::block_on(work.or(timeout)) {
        Ok(r) => r,
        Err(crate::outbound::HttpError::TooLarge(_)) => {
            return refuse(F::X5uTooLarge, format!("{url}: answer too large"))
        }
        Err(e) => return refuse(F::X5uFetch, format!("{url}: {e}")),
    };
    if resp.status != 200 {
        return refuse(F::X5uFetch, format!("{url}: HTTP status {}", resp.status));
    }
    if resp.body.len() > MAX_X5U_BYTES {
        return refuse(
            F::X5uTooLarge,
            format!("{url}: {} bytes (at most {MAX_X5U_BYTES})", resp.body.len()),
        );
    }
    if let Some(age) = max_age(resp.header("cache-control")) {
        let mut cache = X5U_CACHE.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|c| c.url != url);
        if cache.len() >= MAX_X5U_CACHE_ENTRIES {
            // The one closest to expiry goes.
            if let Some(i) = (0..cache.len()).min_by_key(|&i| cache.get(i).map_or(0, |c| c.until)) {
                cache.remove(i);
            }
        }
        cache.push(Cached {
            url: url.to_owned(),
            body: resp.body.clone(),
            until: now.saturating_add(i64::try_from(age).unwrap_or(0)),
        });
    }
    Ok(resp.body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tns_are_canonicalised_per_rfc_8224() {
        assert_eq!(canonical_tn("+1 (202) 555-0100").unwrap(), "12025550100");
        assert_eq!(canonical_tn("49.30.1234").unwrap(), "49301234");
        assert_eq!(canonical_tn("12a").unwrap_err().code(), "bad-tn");
        assert_eq!(canonical_tn("+").unwrap_err().code(), "bad-tn");
        assert_eq!(canonical_tn(&"1".repeat(21)).unwrap_err().code(), "bad-tn");
    }

    #[test]
    fn canonical_json_is_what_serde_json_prints_sorted() {
        // serde_json's map (without `preserve_order`) is sorted by key and
        // prints no whitespace: the same bytes as the hand-made text.
        let h = header_json("https://a.example/x\"y.pem");
        let v: Value = serde_json::from_str(&h).unwrap();
        assert_eq!(v.to_string(), h);
        let p = payload_json(Attest::B, &["2".into(), "3".into()], 5, "1", "u");
        let v: Value = serde_json::from_str(&p).unwrap();
        assert_eq!(v.to_string(), p);
        assert_eq!(
            p,
            r#"{"attest":"B","dest":{"tn":["2","3"]},"iat":5,"orig":{"tn":"1"},"origid":"u"}"#
        );
    }

    #[test]
    fn uuids() {
        let u = new_uuid().unwrap();
        assert_eq!(parse_uuid(&u).unwrap(), u);
        assert_eq!(u.as_bytes()[14], b'4');
        assert!(parse_uuid("not-a-uuid").is_err());
    }

    #[test]
    fn der_signatures_become_fixed() {
        // r = 0x00ff.. (33 bytes with sign byte), s = 0x01.
        let mut der = vec![0x30, 0x00, 0x02, 33, 0x00];
        der.extend([0xff; 32]);
        der.extend([0x02, 0x01, 0x01]);
        der[1] = (der.len() - 2) as u8;
        let f = der_to_fixed(&der).unwrap();
        assert_eq!(&f[..32], &[0xff; 32]);
        assert_eq!(f[63], 1);
        assert!(f[32..63].iter().all(|&b| b == 0));
        assert!(der_to_fixed(&der[..10]).is_none());
    }

    #[test]
    fn max_age_is_read_and_capped() {
        assert_eq!(max_age(Some(b"public, max-age=60")), Some(60));
        assert_eq!(max_age(Some(b"max-age=99999999")), Some(MAX_X5U_CACHE_SECS));
        assert_eq!(max_age(Some(b"no-store, max-age=60")), None);
        assert_eq!(max_age(None), None);
    }

    #[test]
    fn mangled_headers_get_named_failures_never_a_panic() {
        let store = crate::ops::with_backend(Box::new(crate::store::MemKv::new())).unwrap();
        let b64 = |v: &[u8]| Base64UrlUnpadded::encode_string(v);
        let h = json!({"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"https://127.0.0.1:1/x.pem"});
        let p = json!({"attest":"A","dest":{"tn":["2"]},"iat":1000,"orig":{"tn":"1"},"origid":"u"});
        let base = format!(
            "{}.{}.{};info=<https://127.0.0.1:1/x.pem>;alg=ES256;ppt=shaken",
            b64(h.to_string().as_bytes()),
            b64(p.to_string().as_bytes()),
            b64(&[7; 64])
        );
        // The call is from 9: every header that parses stops at orig (no
        // network); the others at their own named failure.
        let run = |identity: String| {
            let req = VerifyRequest {
                identity,
                orig: "9".into(),
                dest: "2".into(),
                now: Some(1000),
            };
            let v = verify(&store, &req).unwrap();
            assert_ne!(v.verstat, PASSED);
            assert!(v.error.is_some() && v.reason.is_some(), "{v:?}");
        };
        let chars: Vec<char> = base.chars().collect();
        for cut in 0..chars.len() {
            run(chars[..cut].iter().collect());
        }
        for i in 0..chars.len() {
            for c in ['.', ';', '=', '<', '>', 'A', '\0', '\u{e9}', ' '] {
                let mut m = chars.clone();
                m[i] = c;
                run(m.into_iter().collect());
            }
        }
        run("x".repeat(MAX_IDENTITY_LEN + 1));
    }

    #[test]
    fn x5u_bases() {
        assert_eq!(
            parse_x5u_base("https://certs.example.com/sti/").unwrap(),
            "https://certs.example.com/sti"
        );
        assert_eq!(
            parse_x5u_base("http://certs.example.com")
                .unwrap_err()
                .code(),
            "bad-x5u-base"
        );
    }
}
