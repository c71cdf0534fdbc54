//! Pure import rules: PEM → DER → X.509 facts, key parsing, key↔leaf match,
//! chain order and signature checks, validity, and the kind of a certificate.
//!
//! Why: everything the PBX serves is validated here, once, at import (never at
//! handshake, as rustls' `CertifiedKey::from_der`/`keys_match` teach). The
//! numbered rules of the import contract are applied in order and the first
//! failing one is reported (README, "Import error codes").
//!
//! What must hold: no I/O, no panics on any input (all parsing goes through
//! checked decoders), key material never appears in an error message.
//! Names follow RFC 6125 §6.4 (see `names`); TNAuthList is RFC 8226 §9.

use std::sync::Arc;

use der::asn1::{ContextSpecific, Ia5StringRef, ObjectIdentifier, OctetStringRef, UintRef};
use der::{Decode, Encode, Reader, SliceReader, TagNumber};
use ring::signature;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
use rustls::sign::SigningKey;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, SubjectAltName};
use x509_cert::spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};
use x509_cert::Certificate;

use crate::clock::DAY;
use crate::limits::{EXPIRING_SOON_DAYS, MAX_BOX_BYTES, MAX_CHAIN_LEN, MIN_RSA_BITS};
use crate::model::Tenant;
use crate::names;
use crate::pem;

const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_SHA1_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.5");
const OID_SHA256_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const OID_SHA384_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const OID_SHA512_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OID_ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const OID_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const OID_SAN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
const OID_CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
/// RFC 8226 §9: id-pe-TNAuthList.
pub const OID_TN_AUTH_LIST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.1.26");

/// Why an import was refused. The codes are stable (README, "Import error codes").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportError {
    /// A box is larger than `MAX_BOX_BYTES` or holds too many PEM blocks.
    TooLarge(String),
    /// The certificate box is not well-formed PEM.
    BadPem(String),
    /// A `CERTIFICATE` block does not hold a parseable X.509 certificate.
    BadCertificate(usize),
    /// The certificate box holds no `CERTIFICATE` block.
    NoCertificate,
    /// The key is encrypted; the PBX must be able to load it unattended.
    EncryptedKey,
    /// A key of a type the PBX cannot use.
    UnsupportedKey(String),
    /// The key box holds no key block, or the key does not decode.
    BadKey(String),
    /// An RSA key below `MIN_RSA_BITS`.
    WeakKey(usize),
    /// No certificate in the box carries the key's public key.
    KeyMismatch,
    /// The box holds certificates outside the leaf's chain, or a signature fails.
    BadChain(String),
    /// The chain stops before an intermediate CA or a known root.
    IncompleteChain(String),
    /// The leaf (or a root being imported) is past its `notAfter`.
    Expired(String),
    /// `--kind root` with a certificate that is not a CA.
    NotACa(String),
    /// `--kind stir-shaken` without the TNAuthList extension.
    NotStirShaken,
    /// `--kind domain` with a wildcard name.
    WildcardNeedsServer(String),
    /// `--kind domain` whose names match no tenant, or several.
    NoMatchingTenant,
    /// No key given and no stored key matches the certificate.
    KeyRequired,
}

impl ImportError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ImportError::TooLarge(_) => "too-large",
            ImportError::BadPem(_) => "bad-pem",
            ImportError::BadCertificate(_) => "bad-certificate",
            ImportError::NoCertificate => "no-certificate",
            ImportError::EncryptedKey => "encrypted-key",
            ImportError::UnsupportedKey(_) => "unsupported-key",
            ImportError::BadKey(_) => "bad-key",
            ImportError::WeakKey(_) => "weak-key",
            ImportError::KeyMismatch => "key-mismatch",
            ImportError::BadChain(_) => "bad-chain",
            ImportError::IncompleteChain(_) => "incomplete-chain",
            ImportError::Expired(_) => "expired",
            ImportError::NotACa(_) => "not-a-ca",
            ImportError::NotStirShaken => "not-stir-shaken",
            ImportError::WildcardNeedsServer(_) => "wildcard-needs-server",
            ImportError::NoMatchingTenant => "no-matching-tenant",
            ImportError::KeyRequired => "key-required",
        }
    }
}

impl core::fmt::Display for ImportError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ImportError::TooLarge(what) => write!(f, "{what}"),
            ImportError::BadPem(why) => write!(f, "the certificate box is not valid PEM: {why}"),
            ImportError::BadCertificate(n) => write!(
                f,
                "certificate block {n} is not a valid X.509 certificate (is it complete, and really a certificate?)"
            ),
            ImportError::NoCertificate => f.write_str(
                "no \"-----BEGIN CERTIFICATE-----\" block found in the certificate box",
            ),
            ImportError::EncryptedKey => f.write_str(
                "the private key is encrypted with a passphrase; the PBX must load it unattended at start-up. \
                 Decrypt it first (openssl pkey -in key.pem -out plain.pem) and import the plain key",
            ),
            ImportError::UnsupportedKey(what) => write!(
                f,
                "unsupported private key ({what}); use RSA (2048 bits or more), EC P-256/P-384 or Ed25519"
            ),
            ImportError::BadKey(why) => write!(f, "the private key cannot be read: {why}"),
            ImportError::WeakKey(bits) => write!(
                f,
                "the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"
            ),
            ImportError::KeyMismatch => f.write_str(
                "the private key does not belong to any certificate in the box (wrong key file?)",
            ),
            ImportError::BadChain(why) => write!(f, "the certificate chain is not valid: {why}"),
            ImportError::IncompleteChain(issuer) => write!(
                f,
                "the chain is incomplete: the intermediate certificate \"{issuer}\" is missing. \
                 Paste the CA's intermediate bundle (.ca-bundle) after the certificate; \
                 Android phones and many SIP clients fail without it"
            ),
            ImportError::Expired(when) => write!(f, "the certificate expired on {when}"),
            ImportError::NotACa(subject) => {
                write!(f, "\"{subject}\" is not a CA certificate and cannot be a root")
            }
            ImportError::NotStirShaken => f.write_str(
                "the certificate has no TNAuthList extension (RFC 8226), so it is not a STIR/SHAKEN certificate",
            ),
            ImportError::WildcardNeedsServer(name) => write!(
                f,
                "\"{name}\" is a wildcard name; wildcard certificates serve all tenants, import it as kind server"
            ),
            ImportError::NoMatchingTenant => f.write_str(
                "the certificate's names belong to no single tenant; add the name to a tenant or import it as kind server",
            ),
            ImportError::KeyRequired => f.write_str(
                "no private key given and no stored key matches this certificate; paste the private key too",
            ),
        }
    }
}

impl std::error::Error for ImportError {}

/// A warning attached to a successful import.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Notice {
    /// Stable lowercase code.
    pub code: &'static str,
    /// Text for a PBX admin.
    pub message: String,
}

/// The public key algorithm of a certificate or key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    /// RSA with the modulus size in bits.
    Rsa(usize),
    /// ECDSA on NIST P-256.
    P256,
    /// ECDSA on NIST P-384.
    P384,
    /// Ed25519.
    Ed25519,
    /// Anything else (shown, never used to sign).
    Other,
}

impl KeyAlg {
    /// The `key_type` shown by `certs`: `rsa2048`, `p256`, ...
    pub fn name(self) -> String {
        match self {
            KeyAlg::Rsa(bits) => format!("rsa{bits}"),
            KeyAlg::P256 => "p256".into(),
            KeyAlg::P384 => "p384".into(),
            KeyAlg::Ed25519 => "ed25519".into(),
            KeyAlg::Other => "other".into(),
        }
    }

    fn family(self) -> u8 {
        match self {
            KeyAlg::Rsa(_) => 1,
            KeyAlg::P256 => 2,
            KeyAlg::P384 => 3,
            KeyAlg::Ed25519 => 4,
            KeyAlg::Other => 0,
        }
    }
}

/// Lowercase hex of SHA-256: certificate IDs and key IDs.
pub fn sha256_hex(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = String::with_capacity(64);
    for b in digest.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The facts of one certificate that the rules and the store need.
#[derive(Debug, Clone)]
pub struct CertInfo {
    /// The DER as given.
    pub der: Vec<u8>,
    /// Hex SHA-256 of `der`.
    pub id: String,
    /// Subject in RFC 4514 text.
    pub subject: String,
    /// Issuer in RFC 4514 text.
    pub issuer: String,
    subject_der: Vec<u8>,
    issuer_der: Vec<u8>,
    /// basicConstraints CA:true.
    pub is_ca: bool,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// Normalised SAN DNS names (the CN when there is no SAN DNS name).
    pub names: Vec<String>,
    /// The TNAuthList extension (RFC 8226) is present.
    pub tn_auth_list: bool,
    /// The subject public key's algorithm.
    pub key_alg: KeyAlg,
    /// The raw subjectPublicKey bits.
    public_key: Vec<u8>,
    tbs: std::ops::Range<usize>,
    sig_alg: ObjectIdentifier,
    signature: Vec<u8>,
}

impl CertInfo {
    /// Parse a DER certificate; `None` when it is not valid X.509.
    pub fn parse(der: Vec<u8>) -> Option<CertInfo> {
        let cert = Certificate::from_der(&der).ok()?;
        let tbs = tbs_range(&der)?;
        let tbs_cert = &cert.tbs_certificate;
        let spki = &tbs_cert.subject_public_key_info;
        let public_key = spki.subject_public_key.raw_bytes().to_vec();
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        let key_alg = key_alg_of(spki.algorithm.oid, curve, &public_key);
        let mut is_ca = false;
        let mut names_found = Vec::new();
        let mut tn_auth_list = false;
        for ext in tbs_cert.extensions.iter().flatten() {
            let value = ext.extn_value.as_bytes();
            if ext.extn_id == OID_BASIC_CONSTRAINTS {
                is_ca = BasicConstraints::from_der(value).ok()?.ca;
            } else if ext.extn_id == OID_SAN {
                let san = SubjectAltName::from_der(value).ok()?;
                for name in san.0 {
                    if let GeneralName::DnsName(dns) = name {
                        if let Ok(n) = names::normalize(dns.as_str(), true) {
                            if !names_found.contains(&n) {
                                names_found.push(n);
                            }
                        }
                    }
                }
            } else if ext.extn_id == OID_TN_AUTH_LIST {
                tn_auth_list = true;
            }
        }
        if names_found.is_empty() {
            if let Some(cn) = common_name(&tbs_cert.subject) {
                if let Ok(n) = names::normalize(&cn, true) {
                    names_found.push(n);
                }
            }
        }
        let unix = |t: x509_cert::time::Time| {
            i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
        };
        Some(CertInfo {
            id: sha256_hex(&der),
            subject: tbs_cert.subject.to_string(),
            issuer: tbs_cert.issuer.to_string(),
            subject_der: tbs_cert.subject.to_der().ok()?,
            issuer_der: tbs_cert.issuer.to_der().ok()?,
            is_ca,
            not_before: unix(tbs_cert.validity.not_before),
            not_after: unix(tbs_cert.validity.not_after),
            names: names_found,
            tn_auth_list,
            key_alg,
            public_key,
            tbs,
            sig_alg: cert.signature_algorithm.oid,
            signature: cert.signature.raw_bytes().to_vec(),
            der,
        })
    }

    /// Hex SHA-256 of the subject public key: the ID of its private key.
    pub fn key_id(&self) -> String {
        sha256_hex(&self.public_key)
    }

    /// Subject equals issuer.
    pub fn is_self_issued(&self) -> bool {
        self.subject_der == self.issuer_der
    }

    /// Any name is a wildcard.
    pub fn has_wildcard(&self) -> bool {
        self.names.iter().any(|n| n.starts_with("*."))
    }

    /// Does `issuer`'s key verify this certificate's signature?
    pub fn is_signed_by(&self, issuer: &CertInfo) -> Result<(), String> {
        let alg: &dyn signature::VerificationAlgorithm = match (self.sig_alg, issuer.key_alg) {
            (OID_SHA256_RSA, KeyAlg::Rsa(_)) => &signature::RSA_PKCS1_2048_8192_SHA256,
            (OID_SHA384_RSA, KeyAlg::Rsa(_)) => &signature::RSA_PKCS1_2048_8192_SHA384,
            (OID_SHA512_RSA, KeyAlg::Rsa(_)) => &signature::RSA_PKCS1_2048_8192_SHA512,
            (OID_SHA1_RSA, KeyAlg::Rsa(_)) => {
                &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY
            }
            (OID_ECDSA_SHA256, KeyAlg::P256) => &signature::ECDSA_P256_SHA256_ASN1,
            (OID_ECDSA_SHA384, KeyAlg::P256) => &signature::ECDSA_P256_SHA384_ASN1,
            (OID_ECDSA_SHA256, KeyAlg::P384) => &signature::ECDSA_P384_SHA256_ASN1,
            (OID_ECDSA_SHA384, KeyAlg::P384) => &signature::ECDSA_P384_SHA384_ASN1,
            (OID_ED25519, KeyAlg::Ed25519) => &signature::ED25519,
            _ => {
                return Err(format!(
                    "the signature algorithm {} of \"{}\" is not supported with the key of \"{}\"",
                    self.sig_alg, self.subject, issuer.subject
                ))
            }
        };
        let tbs = self.der.get(self.tbs.clone()).unwrap_or_default();
        signature::UnparsedPublicKey::new(alg, &issuer.public_key)
            .verify(tbs, &self.signature)
            .map_err(|_| {
                format!(
                    "the signature of \"{}\" does not verify with the key of \"{}\"",
                    self.subject, issuer.subject
                )
            })
    }

    /// The subject's issuer name matches `issuer`'s subject name.
    fn names_issuer(&self, issuer: &CertInfo) -> bool {
        self.issuer_der == issuer.subject_der
    }
}

/// The byte range of `tbsCertificate` inside the certificate DER, so the
/// signature is checked over the bytes as received (no re-encoding).
fn tbs_range(der: &[u8]) -> Option<std::ops::Range<usize>> {
    let mut reader = SliceReader::new(der).ok()?;
    let outer = der::Header::decode(&mut reader).ok()?;
    let start = usize::try_from(outer.encoded_len().ok()?).ok()?;
    let tbs = reader.tlv_bytes().ok()?;
    Some(start..start.checked_add(tbs.len())?)
}

fn common_name(name: &x509_cert::name::Name) -> Option<String> {
    for rdn in name.0.iter().rev() {
        for atv in rdn.0.iter() {
            if atv.oid == OID_CN {
                let value = &atv.value;
                if let Ok(s) = value.decode_as::<der::asn1::Utf8StringRef<'_>>() {
                    return Some(s.as_str().to_owned());
                }
                if let Ok(s) = value.decode_as::<der::asn1::PrintableStringRef<'_>>() {
                    return Some(s.as_str().to_owned());
                }
                if let Ok(s) = value.decode_as::<Ia5StringRef<'_>>() {
                    return Some(s.as_str().to_owned());
                }
            }
        }
    }
    None
}

fn rsa_modulus_bits(pkcs1_public_or_private: &[u8], private: bool) -> Option<usize> {
    let mut reader = SliceReader::new(pkcs1_public_or_private).ok()?;
    reader
        .sequence(|r| {
            if private {
                let _version = UintRef::decode(r)?;
            }
            let modulus = UintRef::decode(r)?;
            let rest = r.remaining_len();
            r.read_slice(rest)?;
            Ok(uint_bits(modulus.as_bytes()))
        })
        .ok()
}

fn uint_bits(bytes: &[u8]) -> usize {
    match bytes.iter().position(|&b| b != 0) {
        Some(i) => (bytes.len() - i - 1) * 8 + (8 - bytes[i].leading_zeros() as usize),
        None => 0,
    }
}

fn key_alg_of(oid: ObjectIdentifier, curve: Option<ObjectIdentifier>, public_key: &[u8]) -> KeyAlg {
    match (oid, curve) {
        (OID_RSA, _) => rsa_modulus_bits(public_key, false).map_or(KeyAlg::Other, KeyAlg::Rsa),
        (OID_EC, Some(OID_P256)) => KeyAlg::P256,
        (OID_EC, Some(OID_P384)) => KeyAlg::P384,
        (OID_ED25519, _) => KeyAlg::Ed25519,
        _ => KeyAlg::Other,
    }
}

/// How a private key is encoded (kept so the stored key loads as given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// `RSA PRIVATE KEY` (RFC 8017 A.1.2).
    Pkcs1,
    /// `PRIVATE KEY` (RFC 5208 / 5958).
    Pkcs8,
    /// `EC PRIVATE KEY` (RFC 5915).
    Sec1,
}

impl KeyFormat {
    /// One-byte tag used in the store.
    pub fn tag(self) -> u8 {
        match self {
            KeyFormat::Pkcs1 => 1,
            KeyFormat::Pkcs8 => 8,
            KeyFormat::Sec1 => 2,
        }
    }

    /// Inverse of `tag`.
    pub fn from_tag(tag: u8) -> Option<KeyFormat> {
        match tag {
            1 => Some(KeyFormat::Pkcs1),
            8 => Some(KeyFormat::Pkcs8),
            2 => Some(KeyFormat::Sec1),
            _ => None,
        }
    }
}

/// A parsed, usable private key. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct ParsedKey {
    /// Encoding of `der`.
    pub format: KeyFormat,
    /// The key bytes as given (secret).
    pub der: Vec<u8>,
    /// Algorithm and size.
    pub alg: KeyAlg,
    /// The signer rustls uses in handshakes.
    pub signer: Arc<dyn SigningKey>,
    public_key: Vec<u8>,
}

impl core::fmt::Debug for ParsedKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "ParsedKey({:?}, {:?}, ****)", self.format, self.alg)
    }
}

impl ParsedKey {
    /// Hex SHA-256 of the public key (same as `CertInfo::key_id` of its cert).
    pub fn key_id(&self) -> String {
        sha256_hex(&self.public_key)
    }

    /// Does `cert` carry this key's public key?
    pub fn matches(&self, cert: &CertInfo) -> bool {
        self.alg.family() == cert.key_alg.family() && self.public_key == cert.public_key
    }
}

/// Load a stored key into a rustls signer (also used by the snapshot).
pub fn load_key(format: KeyFormat, der: &[u8]) -> Result<ParsedKey, ImportError> {
    let alg = private_key_alg(format, der)?;
    if let KeyAlg::Rsa(bits) = alg {
        if bits < MIN_RSA_BITS {
            return Err(ImportError::WeakKey(bits));
        }
    }
    let key_der = match format {
        KeyFormat::Pkcs1 => PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der.to_vec())),
        KeyFormat::Pkcs8 => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der.to_vec())),
        KeyFormat::Sec1 => PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der.to_vec())),
    };
    let signer = rustls::crypto::ring::sign::any_supported_type(&key_der)
        .map_err(|_| ImportError::BadKey("the key's contents are not consistent".into()))?;
    let spki = signer
        .public_key()
        .ok_or_else(|| ImportError::BadKey("the public key cannot be derived".into()))?;
    let public_key = SubjectPublicKeyInfoRef::from_der(spki.as_ref())
        .map_err(|_| ImportError::BadKey("the public key cannot be derived".into()))?
        .subject_public_key
        .raw_bytes()
        .to_vec();
    Ok(ParsedKey {
        format,
        der: der.to_vec(),
        alg,
        signer,
        public_key,
    })
}

fn bad_key() -> ImportError {
    ImportError::BadKey("the key block does not decode as the key type its label names".into())
}

/// The algorithm of a private key, from its own structure.
fn private_key_alg(format: KeyFormat, der: &[u8]) -> Result<KeyAlg, ImportError> {
    match format {
        KeyFormat::Pkcs1 => rsa_modulus_bits(der, true)
            .map(KeyAlg::Rsa)
            .ok_or_else(bad_key),
        KeyFormat::Sec1 => sec1_curve(der),
        KeyFormat::Pkcs8 => {
            let mut reader = SliceReader::new(der).map_err(|_| bad_key())?;
            let (oid, params, inner) = reader
                .sequence(|r| {
                    let _version = UintRef::decode(r)?;
                    let alg = AlgorithmIdentifierRef::decode(r)?;
                    let inner = OctetStringRef::decode(r)?;
                    let rest = r.remaining_len();
                    r.read_slice(rest)?;
                    let params = alg
                        .parameters
                        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
                    Ok((alg.oid, params, inner.as_bytes()))
                })
                .map_err(|_| bad_key())?;
            match (oid, params) {
                (OID_RSA, _) => rsa_modulus_bits(inner, true)
                    .map(KeyAlg::Rsa)
                    .ok_or_else(bad_key),
                (OID_EC, Some(OID_P256)) => Ok(KeyAlg::P256),
                (OID_EC, Some(OID_P384)) => Ok(KeyAlg::P384),
                (OID_EC, Some(curve)) => {
                    Err(ImportError::UnsupportedKey(format!("EC curve {curve}")))
                }
                (OID_EC, None) => sec1_curve(inner),
                (OID_ED25519, _) => Ok(KeyAlg::Ed25519),
                (other, _) => Err(ImportError::UnsupportedKey(format!("algorithm {other}"))),
            }
        }
    }
}

/// RFC 5915: the curve from `parameters`, else from the private key length.
fn sec1_curve(der: &[u8]) -> Result<KeyAlg, ImportError> {
    let mut reader = SliceReader::new(der).map_err(|_| bad_key())?;
    let (len, curve) = reader
        .sequence(|r| {
            let _version = UintRef::decode(r)?;
            let private = OctetStringRef::decode(r)?;
            let curve = ContextSpecific::<ObjectIdentifier>::decode_explicit(r, TagNumber::N0)?
                .map(|c| c.value);
            let rest = r.remaining_len();
            r.read_slice(rest)?;
            Ok((private.as_bytes().len(), curve))
        })
        .map_err(|_| bad_key())?;
    match (curve, len) {
        (Some(OID_P256), _) | (None, 32) => Ok(KeyAlg::P256),
        (Some(OID_P384), _) | (None, 48) => Ok(KeyAlg::P384),
        (Some(other), _) => Err(ImportError::UnsupportedKey(format!("EC curve {other}"))),
        (None, _) => Err(ImportError::UnsupportedKey(
            "EC key on an unknown curve".into(),
        )),
    }
}

/// Rule 2: the first key block of the key box.
pub fn parse_key_box(key_box: &[u8]) -> Result<ParsedKey, ImportError> {
    let blocks = pem::parse(key_box).map_err(|e| ImportError::BadKey(e.to_string()))?;
    for block in &blocks {
        let format = match block.label.as_str() {
            "ENCRYPTED PRIVATE KEY" => return Err(ImportError::EncryptedKey),
            "RSA PRIVATE KEY" => KeyFormat::Pkcs1,
            "EC PRIVATE KEY" => KeyFormat::Sec1,
            "PRIVATE KEY" => KeyFormat::Pkcs8,
            "EC PARAMETERS" | "CERTIFICATE" => continue,
            other if other.ends_with("PRIVATE KEY") => {
                return Err(ImportError::UnsupportedKey(format!("a \"{other}\" block")))
            }
            _ => continue,
        };
        if block.is_encrypted() {
            return Err(ImportError::EncryptedKey);
        }
        return load_key(format, &block.der);
    }
    Err(ImportError::BadKey(
        "the key box holds no \"-----BEGIN ... PRIVATE KEY-----\" block".into(),
    ))
}

/// The kind asked for on import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KindRequest {
    /// Classify by rule 6.
    Auto,
    /// Add CA certificates to the Root CA list.
    Root,
    /// A certificate serving all tenants.
    Server,
    /// A certificate belonging to one tenant.
    Domain,
    /// A STIR/SHAKEN signing certificate (RFC 8226).
    StirShaken,
}

/// What a stored certificate is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Serves every tenant it covers; a default candidate.
    Server,
    /// Belongs to one tenant; served first for that tenant's names.
    Domain,
    /// Signs SIP Identity headers; never serves TLS.
    StirShaken,
}

impl Kind {
    /// The name used by the CLI and API.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Server => "server",
            Kind::Domain => "domain",
            Kind::StirShaken => "stir-shaken",
        }
    }
}

/// What the rules need to know about the store.
pub struct Context<'a> {
    /// Tenants and their DNS names (for rule 6).
    pub tenants: &'a [Tenant],
    /// DER of the Root CA list (for rule 4 completeness).
    pub roots: &'a [Vec<u8>],
    /// Now, Unix seconds.
    pub now: i64,
}

/// A leaf certificate that passed rules 1–6.
#[derive(Debug)]
pub struct LeafImport {
    /// Leaf first, then intermediates upward (no root).
    pub chain: Vec<CertInfo>,
    /// The key from the key box, if any.
    pub key: Option<ParsedKey>,
    /// Rule 6's kind.
    pub kind: Kind,
    /// The owning tenant of a domain certificate.
    pub tenant: Option<String>,
    /// Warnings so far.
    pub warnings: Vec<Notice>,
}

/// The outcome of rules 1–6.
#[derive(Debug)]
pub enum Analysis {
    /// CA certificates for the Root CA list.
    Roots {
        /// The CA certificates, in box order.
        certs: Vec<CertInfo>,
        /// Warnings.
        warnings: Vec<Notice>,
    },
    /// A leaf with its chain.
    Leaf(LeafImport),
}

/// Apply rules 1–6 to a certificate box and an optional key box.
pub fn analyse(
    cert_box: &[u8],
    key_box: Option<&[u8]>,
    kind: KindRequest,
    ctx: &Context<'_>,
) -> Result<Analysis, ImportError> {
    // Rule 1: size, PEM, DER.
    let too_large = |what: &str| {
        ImportError::TooLarge(format!(
            "the {what} box is larger than {} KiB",
            MAX_BOX_BYTES / 1024
        ))
    };
    if cert_box.len() > MAX_BOX_BYTES {
        return Err(too_large("certificate"));
    }
    if key_box.is_some_and(|k| k.len() > MAX_BOX_BYTES) {
        return Err(too_large("key"));
    }
    let blocks = pem::parse(cert_box).map_err(|e| match e {
        pem::PemError::TooManyBlocks => ImportError::TooLarge(e.to_string()),
        other => ImportError::BadPem(other.to_string()),
    })?;
    let mut certs = Vec::new();
    for block in blocks.into_iter().filter(|b| b.label == "CERTIFICATE") {
        let n = certs.len() + 1;
        certs.push(CertInfo::parse(block.der).ok_or(ImportError::BadCertificate(n))?);
    }
    if certs.is_empty() {
        return Err(ImportError::NoCertificate);
    }

    // Rule 2: the key.
    let key_box = key_box.filter(|k| !k.iter().all(u8::is_ascii_whitespace));
    let key = key_box.map(parse_key_box).transpose()?;

    let mut warnings = Vec::new();
    let all_ca = certs.iter().all(|c| c.is_ca);
    let root_path = match kind {
        KindRequest::Root => true,
        KindRequest::Auto => key.is_none() && all_ca,
        _ => false,
    };
    if root_path {
        for cert in &certs {
            check_validity(cert, ctx.now, &mut warnings)?;
        }
        if let Some(cert) = certs.iter().find(|c| !c.is_ca) {
            return Err(ImportError::NotACa(cert.subject.clone()));
        }
        if key.is_some() {
            warnings.push(Notice {
                code: "key-ignored",
                message: "a Root CA needs no private key; the key box was ignored".into(),
            });
        }
        return Ok(Analysis::Roots { certs, warnings });
    }

    // Rule 3: the leaf.
    let leaf_idx = match &key {
        Some(key) => certs
            .iter()
            .position(|c| key.matches(c))
            .ok_or(ImportError::KeyMismatch)?,
        None => pick_leaf(&certs),
    };

    // Rule 4: the chain.
    let chain_idx = build_chain(&certs, leaf_idx, ctx, &mut warnings)?;
    let mut slots: Vec<Option<CertInfo>> = certs.into_iter().map(Some).collect();
    let chain: Vec<CertInfo> = chain_idx
        .iter()
        .filter_map(|&i| slots.get_mut(i)?.take())
        .collect();
    let leaf = chain.first().ok_or(ImportError::NoCertificate)?;

    // Rule 5: validity.
    check_validity(leaf, ctx.now, &mut warnings)?;

    // Rule 6: the kind.
    let (kind, tenant) = classify(leaf, kind, ctx.tenants)?;
    Ok(Analysis::Leaf(LeafImport {
        chain,
        key,
        kind,
        tenant,
        warnings,
    }))
}

fn check_validity(
    cert: &CertInfo,
    now: i64,
    warnings: &mut Vec<Notice>,
) -> Result<(), ImportError> {
    let when = crate::clock::rfc3339(cert.not_after);
    if cert.not_after <= now {
        return Err(ImportError::Expired(when));
    }
    if cert.not_before > now {
        warnings.push(Notice {
            code: "not-yet-valid",
            message: format!(
                "the certificate is valid only from {}; it is served once no valid certificate covers its names",
                crate::clock::rfc3339(cert.not_before)
            ),
        });
    }
    let days_left = (cert.not_after - now) / DAY;
    if days_left < EXPIRING_SOON_DAYS {
        warnings.push(Notice {
            code: "expiring-soon",
            message: format!(
                "the certificate expires on {when}, in {days_left} days; renew it soon"
            ),
        });
    }
    Ok(())
}

/// Without a key: the certificate that issued no other in the box
/// (the first non-CA such certificate, else the first such).
fn pick_leaf(certs: &[CertInfo]) -> usize {
    let issues_another = |i: usize| {
        certs
            .iter()
            .enumerate()
            .any(|(j, other)| j != i && other.names_issuer(&certs[i]) && !other.is_self_issued())
    };
    let candidates: Vec<usize> = (0..certs.len()).filter(|&i| !issues_another(i)).collect();
    candidates
        .iter()
        .copied()
        .find(|&i| !certs[i].is_ca)
        .or_else(|| candidates.first().copied())
        .unwrap_or(0)
}

/// Rule 4: order from the leaf upward, verify signatures, drop the root,
/// refuse strays, then check completeness. Returns box indices, leaf first.
fn build_chain(
    certs: &[CertInfo],
    leaf_idx: usize,
    ctx: &Context<'_>,
    warnings: &mut Vec<Notice>,
) -> Result<Vec<usize>, ImportError> {
    let mut chain = vec![leaf_idx];
    let mut used = vec![false; certs.len()];
    used[leaf_idx] = true;
    let mut root_idx = None;
    let mut self_signed_leaf = false;
    let mut cur = leaf_idx;
    loop {
        let current = &certs[cur];
        if current.is_self_issued() {
            self_signed_leaf = cur == leaf_idx && current.is_signed_by(current).is_ok();
            break;
        }
        let by_name: Vec<usize> = (0..certs.len())
            .filter(|&j| !used[j] && current.names_issuer(&certs[j]))
            .collect();
        if by_name.is_empty() {
            break;
        }
        let mut last_error = String::new();
        let mut found = None;
        for &j in &by_name {
            match current.is_signed_by(&certs[j]) {
                Ok(()) => {
                    found = Some(j);
                    break;
                }
                Err(e) => last_error = e,
            }
        }
        let j = found.ok_or(ImportError::BadChain(last_error))?;
        used[j] = true;
        if certs[j].is_self_issued() {
            root_idx = Some(j);
            warnings.push(Notice {
                code: "root-included",
                message: format!(
                    "the root \"{}\" was included; clients have it already, so it is not sent and was dropped",
                    certs[j].subject
                ),
            });
            break;
        }
        if chain.len() == MAX_CHAIN_LEN {
            return Err(ImportError::BadChain(format!(
                "the chain is longer than {MAX_CHAIN_LEN} certificates"
            )));
        }
        chain.push(j);
        cur = j;
    }
    if let Some(stray) = (0..certs.len()).find(|&j| !used[j]) {
        return Err(ImportError::BadChain(format!(
            "\"{}\" is not part of the chain of \"{}\"; remove it from the box",
            certs[stray].subject, certs[leaf_idx].subject
        )));
    }
    let order: Vec<usize> = chain.iter().copied().chain(root_idx).collect();
    if order.iter().enumerate().any(|(pos, &i)| pos != i) {
        warnings.push(Notice {
            code: "chain-reordered",
            message: "the certificates were not in leaf-first order; they were put in order".into(),
        });
    }
    let top = &certs[*chain.last().unwrap_or(&leaf_idx)];
    let complete = root_idx.is_some()
        || self_signed_leaf
        || (chain.len() > 1 && top.is_ca)
        || issued_by_known_root(top, ctx.roots);
    if !complete {
        return Err(ImportError::IncompleteChain(top.issuer.clone()));
    }
    Ok(chain)
}

fn issued_by_known_root(top: &CertInfo, roots: &[Vec<u8>]) -> bool {
    roots.iter().any(|der| {
        CertInfo::parse(der.clone())
            .is_some_and(|root| top.names_issuer(&root) && top.is_signed_by(&root).is_ok())
    })
}

/// Rule 6 for a leaf: the kind and, for a domain certificate, its tenant.
fn classify(
    leaf: &CertInfo,
    kind: KindRequest,
    tenants: &[Tenant],
) -> Result<(Kind, Option<String>), ImportError> {
    let owners: Vec<&str> = tenants
        .iter()
        .filter(|t| t.dns.iter().any(|d| leaf.names.contains(d)))
        .map(|t| t.name.as_str())
        .collect();
    let single_owner = match owners.as_slice() {
        [one] => Some((*one).to_owned()),
        _ => None,
    };
    let wildcard = leaf.names.iter().find(|n| n.starts_with("*."));
    match kind {
        KindRequest::Auto if leaf.tn_auth_list => Ok((Kind::StirShaken, None)),
        KindRequest::Auto => match (wildcard, single_owner) {
            (None, Some(tenant)) => Ok((Kind::Domain, Some(tenant))),
            _ => Ok((Kind::Server, None)),
        },
        KindRequest::Server => Ok((Kind::Server, None)),
        KindRequest::StirShaken if leaf.tn_auth_list => Ok((Kind::StirShaken, None)),
        KindRequest::StirShaken => Err(ImportError::NotStirShaken),
        KindRequest::Domain => match (wildcard, single_owner) {
            (Some(w), _) => Err(ImportError::WildcardNeedsServer(w.clone())),
            (None, Some(tenant)) => Ok((Kind::Domain, Some(tenant))),
            (None, None) => Err(ImportError::NoMatchingTenant),
        },
        // Handled by the root path in `analyse`.
        KindRequest::Root => Err(ImportError::NotACa(leaf.subject.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context<'static> {
        Context {
            tenants: &[],
            roots: &[],
            now: crate::clock::now(),
        }
    }

    fn leaf_and_key() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.example.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn self_signed_leaf_with_key_is_a_server_cert() {
        let (cert, key) = leaf_and_key();
        match analyse(
            cert.as_bytes(),
            Some(key.as_bytes()),
            KindRequest::Auto,
            &ctx(),
        )
        .unwrap()
        {
            Analysis::Leaf(leaf) => {
                assert_eq!(leaf.kind, Kind::Server);
                assert_eq!(leaf.chain.len(), 1);
                assert_eq!(leaf.chain[0].names, vec!["a.example.test".to_string()]);
                assert_eq!(leaf.chain[0].key_alg, KeyAlg::P256);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn truncated_or_mutated_der_never_panics() {
        let (cert, _) = leaf_and_key();
        let der = pem::parse(cert.as_bytes()).unwrap().remove(0).der;
        for len in 0..der.len() {
            assert!(
                CertInfo::parse(der[..len].to_vec()).is_none(),
                "prefix {len} parsed"
            );
        }
        // Flip every byte in turn: parsing may succeed or fail, never panic,
        // and a parsed mutant still checks its signature without panicking.
        for i in 0..der.len() {
            let mut m = der.clone();
            m[i] ^= 0xff;
            if let Some(info) = CertInfo::parse(m) {
                let _ = info.is_signed_by(&info);
            }
        }
    }

    #[test]
    fn mutated_key_boxes_never_panic() {
        let (_, key) = leaf_and_key();
        let der = pem::parse(key.as_bytes()).unwrap().remove(0).der;
        for i in 0..der.len() {
            let mut m = der.clone();
            m[i] = m[i].wrapping_add(1);
            let boxed = pem::encode("PRIVATE KEY", &m);
            let _ = parse_key_box(boxed.as_bytes());
            let _ = load_key(KeyFormat::Sec1, &m);
            let _ = load_key(KeyFormat::Pkcs1, &m);
        }
        for len in 0..der.len() {
            assert!(load_key(KeyFormat::Pkcs8, &der[..len]).is_err());
        }
    }

    #[test]
    fn key_box_rules() {
        let enc =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert_eq!(
            parse_key_box(enc.as_bytes()).unwrap_err().code(),
            "encrypted-key"
        );
        let dsa = "-----BEGIN DSA PRIVATE KEY-----\nAAAA\n-----END DSA PRIVATE KEY-----\n";
        assert_eq!(
            parse_key_box(dsa.as_bytes()).unwrap_err().code(),
            "unsupported-key"
        );
        assert_eq!(parse_key_box(b"no key here").unwrap_err().code(), "bad-key");
        let junk = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert_eq!(
            parse_key_box(junk.as_bytes()).unwrap_err().code(),
            "bad-key"
        );
    }

    #[test]
    fn uint_bits_counts_significant_bits() {
        assert_eq!(uint_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(uint_bits(&[0x01]), 1);
        assert_eq!(uint_bits(&[]), 0);
    }
}
