//! Pure import rules: PEM → DER → X.509 facts, key parsing, key↔leaf match,
//! chain order and signature checks, validity, and the kind of a certificate.
//!
//! Why: everything the PBX serves is validated here, once, at import (never at
//! handshake, as rustls' `CertifiedKey::from_der`/`keys_match` teach). The
//! numbered rules of the import contract are applied in order and the first
//! failing one is reported (README, "Import error codes").
//!
//! Rule 4 judges the chain as clients will (issue 17): the path is built
//! and validated by rustls-webpki, the validator of rustls clients (RFC 5280
//! §6.1: validity of every certificate with notAfter inclusive, basic
//! constraints, path length, name constraints, extended key usage, critical
//! extensions), from the leaf through any supplied certificate to the Root
//! CA list, the local CA, a pasted root, or the box's top CA; the served
//! chain is that path. The chain doctor's pure half (which caIssuers URL to
//! fetch, RFC 5280 §4.2.2.1; reading a DER/PKCS#7 answer) is here too; the
//! fetch itself is in `certs`.
//!
//! What must hold: no I/O, no panics on any input (all parsing goes through
//! checked decoders), key material never appears in an error message.
//! Names follow RFC 6125 §6.4 (see `names`): SAN DNS names and SAN IP
//! addresses (RFC 5280 §4.2.1.6; RFC 8738 certificates), never the CN;
//! TNAuthList is RFC 8226 §9.

use std::sync::Arc;

use der::asn1::{ContextSpecific, ObjectIdentifier, OctetStringRef, UintRef};
use der::{Decode, Encode, Reader, SliceReader, TagNumber};
use ring::signature;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
use rustls::sign::SigningKey;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, SubjectAltName};
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
const OID_EKU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");

/// Extended key usages by their stable names (RFC 5280 §4.2.1.12); any
/// other purpose is shown as its dotted OID.
const EKU_NAMES: [(ObjectIdentifier, &str); 7] = [
    (
        ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1"),
        EKU_SERVER_AUTH,
    ),
    (
        ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2"),
        EKU_CLIENT_AUTH,
    ),
    (
        ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3"),
        "code-signing",
    ),
    (
        ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.4"),
        "email-protection",
    ),
    (
        ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8"),
        "time-stamping",
    ),
    (
        ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.9"),
        "ocsp-signing",
    ),
    (ObjectIdentifier::new_unwrap("2.5.29.37.0"), EKU_ANY),
];

/// The `eku` name of id-kp-serverAuth.
pub const EKU_SERVER_AUTH: &str = "server-auth";
/// The `eku` name of id-kp-clientAuth.
pub const EKU_CLIENT_AUTH: &str = "client-auth";
/// The `eku` name of anyExtendedKeyUsage, and of a certificate without the
/// EKU extension (RFC 5280 §4.2.1.12: then no purpose is excluded).
pub const EKU_ANY: &str = "any";

/// The `eku` names of an extension's purposes, in certificate order.
fn eku_names(eku: &ExtendedKeyUsage) -> Vec<String> {
    eku.0
        .iter()
        .map(|oid| {
            EKU_NAMES
                .iter()
                .find(|(known, _)| known == oid)
                .map_or_else(|| oid.to_string(), |(_, name)| (*name).to_owned())
        })
        .collect()
}

/// A certificate with these `eku` names may authenticate a TLS client
/// (clientAuth, anyExtendedKeyUsage, or no EKU extension at all).
pub fn eku_allows_client_auth(eku: &[String]) -> bool {
    eku.iter().any(|e| e == EKU_CLIENT_AUTH || e == EKU_ANY)
}
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
    /// The certificate box holds a private key and no certificate.
    OnlyAKey,
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
    /// A signature on the path fails, or the path breaks another rule.
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
    /// The leaf's (or a CA's) extended key usage lacks serverAuth
    /// (RFC 5280 §4.2.1.12): clients refuse it for a TLS server.
    WrongUsage(String),
    /// An intermediate on the path is past its `notAfter` (RFC 5280 §4.1.2.5).
    IntermediateExpired(String, String),
    /// An intermediate on the path is not valid yet.
    IntermediateNotYetValid(String, String),
    /// A certificate that issues another is not a CA (basicConstraints
    /// cA absent, RFC 5280 §4.2.1.9).
    IssuerNotACa(String),
    /// The leaf is a CA certificate (basicConstraints cA:TRUE).
    LeafIsACa(String),
    /// A CA certificate (cA:TRUE, no names of its own) came with its private
    /// key: it issues certificates and serves none (issue 14: it used to
    /// end up a nameless server certificate).
    CaWithKey(String),
    /// `import --kind ca`: the CA's subject cannot be written back byte
    /// for byte into the certificates it would issue (a multi-valued or
    /// repeated attribute, or an unusual string type).
    CaNameUnsupported(String),
    /// An intermediate's pathLenConstraint is exceeded (RFC 5280 §4.2.1.9).
    PathLenExceeded,
    /// A CA's name constraints exclude (or do not permit) a name of the
    /// leaf (RFC 5280 §4.2.1.10).
    NameConstraint(String),
    /// A certificate carries a critical extension clients do not know
    /// (RFC 5280 §4.2).
    UnknownCriticalExtension(String),
    /// A server or domain certificate without a SAN DNS name (clients ignore
    /// the CN, RFC 6125 §6.4.4).
    NoSan(String),
    /// A wildcard directly on a public suffix (`*.com`, `*.co.uk`).
    WildcardPublicSuffix(String),
}

impl ImportError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ImportError::TooLarge(_) => "too-large",
            ImportError::BadPem(_) => "bad-pem",
            ImportError::BadCertificate(_) => "bad-certificate",
            ImportError::NoCertificate => "no-certificate",
            ImportError::OnlyAKey => "only-a-key",
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
            ImportError::WrongUsage(_) => "wrong-usage",
            ImportError::IntermediateExpired(..) => "intermediate-expired",
            ImportError::IntermediateNotYetValid(..) => "intermediate-not-yet-valid",
            ImportError::IssuerNotACa(_) => "issuer-not-a-ca",
            ImportError::LeafIsACa(_) => "leaf-is-a-ca",
            ImportError::CaWithKey(_) => "ca-with-key",
            ImportError::CaNameUnsupported(_) => "ca-name-unsupported",
            ImportError::PathLenExceeded => "path-len-exceeded",
            ImportError::NameConstraint(_) => "name-constraint",
            ImportError::UnknownCriticalExtension(_) => "unknown-critical-extension",
            ImportError::NoSan(_) => "no-san",
            ImportError::WildcardPublicSuffix(_) => "wildcard-public-suffix",
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
            ImportError::OnlyAKey => f.write_str(
                "the certificate box holds a private key but no certificate: paste the certificate \
                 (with its chain) in the certificate box; the key may go with it or in the key box",
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
            ImportError::WrongUsage(subject) => write!(
                f,
                "\"{subject}\" (or a CA above it) is not made for TLS servers: its extended key usage \
                 lacks serverAuth, so phones and browsers refuse it. Ask the CA for a TLS server certificate"
            ),
            ImportError::IntermediateExpired(subject, when) => write!(
                f,
                "the intermediate \"{subject}\" expired on {when}; clients refuse the chain. \
                 Download the CA's current intermediate bundle and paste it after the certificate"
            ),
            ImportError::IntermediateNotYetValid(subject, when) => write!(
                f,
                "the intermediate \"{subject}\" is valid only from {when}; clients refuse the chain until then. \
                 Use the CA's current intermediate bundle"
            ),
            ImportError::IssuerNotACa(subject) => write!(
                f,
                "\"{subject}\" issues a certificate of the chain but is not a CA certificate \
                 (no basicConstraints CA:TRUE); clients refuse such a chain. Ask the CA for its real intermediate"
            ),
            ImportError::LeafIsACa(subject) => write!(
                f,
                "\"{subject}\" is a CA certificate (CA:TRUE) and cannot serve TLS; clients refuse it. \
                 Import the server certificate the CA issued, not the CA itself"
            ),
            ImportError::CaWithKey(subject) => write!(
                f,
                "\"{subject}\" is a CA certificate with its private key: it issues certificates and \
                 serves none. To make it the local CA (it then issues tenant certificates: ca issue), \
                 import it with --kind ca (Import page: kind \"local CA\"); to trust it, import it \
                 without the key"
            ),
            ImportError::CaNameUnsupported(subject) => write!(
                f,
                "the CA's name \"{subject}\" cannot be written back exactly into the certificates \
                 it would issue (a multi-valued or repeated attribute, or an unusual string type); \
                 use ca init for a local CA instead"
            ),
            ImportError::PathLenExceeded => f.write_str(
                "a CA on the chain allows fewer CAs below it (pathLenConstraint) than the chain has; \
                 clients refuse it. Ask the CA for a chain that respects its path length",
            ),
            ImportError::NameConstraint(names) => write!(
                f,
                "a CA on the chain is not allowed to issue for {names} (its name constraints, RFC 5280 4.2.1.10); \
                 clients refuse it. Get the certificate from a CA allowed to issue these names"
            ),
            ImportError::UnknownCriticalExtension(subject) => write!(
                f,
                "{subject} carries a critical extension that clients do not understand, so they refuse it. \
                 Ask the CA for a certificate without it"
            ),
            ImportError::NoSan(subject) => write!(
                f,
                "\"{subject}\" has no DNS name or IP address in its Subject Alternative Name; clients ignore the CN, \
                 so it is valid for no name. Reissue it with the names as SAN DNS entries"
            ),
            ImportError::WildcardPublicSuffix(name) => write!(
                f,
                "\"{name}\" is a wildcard on a public suffix; clients refuse it. \
                 Use a wildcard under your own domain (e.g. *.example.com)"
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

/// X.520 commonName (RFC 5280 §4.1.2.6, Appendix A.1).
const OID_CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

/// X.520 organizationName (RFC 5280 Appendix A.1).
const OID_O: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.10");

/// The subject's Common Name (the most specific one when there are
/// several), for logs and the PROXY v2 header of a verified client
/// certificate; `None` when the DER is not X.509 or has no readable CN.
pub fn subject_cn(der: &[u8]) -> Option<String> {
    subject_attr(der, OID_CN)
}

/// The subject's organizationName (the most specific one), e.g. a root's
/// issuing organisation on the Root CA page.
pub fn subject_org(der: &[u8]) -> Option<String> {
    subject_attr(der, OID_O)
}

/// One directory-string attribute of the subject (UTF8String,
/// PrintableString or IA5String), the most specific first.
fn subject_attr(der: &[u8], oid: ObjectIdentifier) -> Option<String> {
    let cert = Certificate::from_der(der).ok()?;
    let atv = cert
        .tbs_certificate
        .subject
        .0
        .iter()
        .rev()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| atv.oid == oid)?;
    let v = &atv.value;
    v.decode_as::<der::asn1::Utf8StringRef<'_>>()
        .map(|s| s.as_str().to_owned())
        .or_else(|_| {
            v.decode_as::<der::asn1::PrintableStringRef<'_>>()
                .map(|s| s.as_str().to_owned())
        })
        .or_else(|_| {
            v.decode_as::<der::asn1::Ia5StringRef<'_>>()
                .map(|s| s.as_str().to_owned())
        })
        .ok()
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
    /// Normalised SAN DNS names, and SAN IP addresses in `names::ip_text`
    /// form (never the CN: clients ignore it).
    pub names: Vec<String>,
    /// The TNAuthList extension (RFC 8226) is present.
    pub tn_auth_list: bool,
    /// Extended key usages by name (`server-auth`, `client-auth`, ... or a
    /// dotted OID); `["any"]` without the extension. Empty only for an
    /// empty extension (no purpose at all; import rule 4 refuses such a leaf).
    pub eku: Vec<String>,
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
        let mut eku = vec![EKU_ANY.to_owned()];
        for ext in tbs_cert.extensions.iter().flatten() {
            let value = ext.extn_value.as_bytes();
            if ext.extn_id == OID_BASIC_CONSTRAINTS {
                is_ca = BasicConstraints::from_der(value).ok()?.ca;
            } else if ext.extn_id == OID_SAN {
                let san = SubjectAltName::from_der(value).ok()?;
                for name in san.0 {
                    let found = match name {
                        // A dNSName holding an IP address matches nothing a
                        // client checks (RFC 6125 §6.2.1), so it names nothing.
                        GeneralName::DnsName(dns) if names::is_ip(dns.as_str()) => None,
                        GeneralName::DnsName(dns) => names::normalize(dns.as_str(), true).ok(),
                        // iPAddress: 4 or 16 octets (RFC 5280 §4.2.1.6).
                        GeneralName::IpAddress(octets) => ip_from_octets(octets.as_bytes()),
                        _ => None,
                    };
                    if let Some(n) = found {
                        if !names_found.contains(&n) {
                            names_found.push(n);
                        }
                    }
                }
            } else if ext.extn_id == OID_TN_AUTH_LIST {
                tn_auth_list = true;
            } else if ext.extn_id == OID_EKU {
                eku = eku_names(&ExtendedKeyUsage::from_der(value).ok()?);
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
            eku,
            key_alg,
            public_key,
            tbs,
            sig_alg: cert.signature_algorithm.oid,
            signature: cert.signature.raw_bytes().to_vec(),
            der,
        })
    }

    /// The raw subjectPublicKey bits (for P-256 the uncompressed point,
    /// which `stir` checks PASSporT signatures with).
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
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
    /// CA certificates trusted for client certificates only (judged as
    /// roots, kept in the client-CA list).
    ClientCa,
    /// A CA certificate with its key that becomes the local CA
    /// (`localca::adopt`; never analysed as a leaf here).
    Ca,
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
    /// DER of the Root CA list: trust anchors of rule 4.
    pub roots: &'a [Vec<u8>],
    /// DER of the local CA's root, if any: a trust anchor too.
    pub local_ca: Option<&'a [u8]>,
    /// DER of the roots distributed to phones (`phone-roots`): trust
    /// anchors of rule 4 that are not in the Root CA list.
    pub phone_roots: &'a [Vec<u8>],
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
    let key_in_cert_box = blocks.iter().any(|b| b.label.ends_with("PRIVATE KEY"));
    let mut certs = Vec::new();
    for block in blocks.into_iter().filter(|b| b.label == "CERTIFICATE") {
        let n = certs.len() + 1;
        certs.push(CertInfo::parse(block.der).ok_or(ImportError::BadCertificate(n))?);
    }
    if certs.is_empty() {
        return Err(if key_in_cert_box {
            ImportError::OnlyAKey
        } else {
            ImportError::NoCertificate
        });
    }

    // Rule 2: the key: the key box's, else one pasted with the chain into
    // the certificate box (a combined PEM, as many panels export it).
    let mut warnings = Vec::new();
    let key_box = key_box.filter(|k| !k.iter().all(u8::is_ascii_whitespace));
    let key = match (key_box, key_in_cert_box) {
        (Some(k), also) => {
            if also {
                warnings.push(Notice {
                    code: "key-in-certificate-box-ignored",
                    message:
                        "the certificate box also held a private key; the key box's key was used"
                            .into(),
                });
            }
            Some(parse_key_box(k)?)
        }
        (None, true) => {
            let k = parse_key_box(cert_box)?;
            warnings.push(Notice {
                code: "key-from-certificate-box",
                message: "the certificate box also held the private key; it was used as this \
                          certificate's key (stored like a key from the key box, never shown)"
                    .into(),
            });
            Some(k)
        }
        (None, false) => None,
    };

    let all_ca = certs.iter().all(|c| c.is_ca);
    let root_path = match kind {
        KindRequest::Root | KindRequest::ClientCa => true,
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
    // A CA's own key: a CA to issue with, not a certificate to serve.
    let leaf = &certs[leaf_idx];
    if key.is_some() && leaf.is_ca && leaf.names.is_empty() {
        return Err(ImportError::CaWithKey(leaf.subject.clone()));
    }

    // Rule 4: the chain.
    let server = !(certs[leaf_idx].tn_auth_list
        && matches!(kind, KindRequest::Auto | KindRequest::StirShaken));
    let chain_idx = build_chain(&certs, leaf_idx, server, ctx, &mut warnings)?;
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
    if kind != Kind::StirShaken {
        check_names(leaf)?;
    }
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
    // RFC 5280 §4.1.2.5: the validity period includes notAfter.
    if cert.not_after < now {
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

/// Where a trust anchor of the path search comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The Root CA list.
    Listed,
    /// The local CA's root.
    LocalCa,
    /// A root distributed to phones.
    Phone,
    /// A self-signed certificate of the box (a pasted root, or a
    /// self-signed leaf): box index.
    Pasted(usize),
    /// A CA of the box whose issuer is nowhere (box, Root CA list, local
    /// CA): clients are expected to hold that issuer (box index).
    Top(usize),
}

/// The extended key usage a path must allow (RFC 5280 §4.2.1.12): serverAuth
/// for certificates that serve TLS (absent EKU allows any), anything for a
/// STIR/SHAKEN signing certificate, which never serves TLS.
struct Usage {
    server: bool,
}

impl webpki::ExtendedKeyUsageValidator for Usage {
    fn validate(&self, iter: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        if self.server {
            webpki::KeyUsage::server_auth().validate(iter)
        } else {
            Ok(())
        }
    }
}

/// Unix seconds to webpki's time (negative clamps to the epoch).
fn unix_time(t: i64) -> rustls::pki_types::UnixTime {
    rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(t).unwrap_or(0),
    ))
}

/// A trust anchor's subject and key equal those of `der`.
fn anchor_is(anchor: &rustls::pki_types::TrustAnchor<'_>, der: &[u8]) -> bool {
    let cert = rustls::pki_types::CertificateDer::from(der);
    webpki::anchor_from_trusted_cert(&cert).is_ok_and(|a| {
        a.subject.as_ref() == anchor.subject.as_ref()
            && a.subject_public_key_info.as_ref() == anchor.subject_public_key_info.as_ref()
    })
}

/// Rule 4: the path a client builds (RFC 5280 §6.1, via rustls-webpki, the
/// validator rustls clients run): from the leaf through any of the supplied
/// certificates (alternate and cross-signed intermediates allowed) to a trust
/// anchor — the Root CA list, the local CA, a self-signed root pasted in the
/// box, or, when the box stops at a CA whose issuer is nowhere, that CA.
/// Every certificate on the path is checked at the leaf's time of use (now,
/// clamped into the leaf's validity so that rule 5 reports the leaf's own
/// dates): validity, basic constraints, path length, name constraints,
/// extended key usage, critical extensions, signatures. Supplied
/// certificates off the path are dropped with `not-on-path`. Returns box
/// indices, leaf first, without the anchor unless it is a `Top` CA.
fn build_chain(
    certs: &[CertInfo],
    leaf_idx: usize,
    server: bool,
    ctx: &Context<'_>,
    warnings: &mut Vec<Notice>,
) -> Result<Vec<usize>, ImportError> {
    use rustls::pki_types::{CertificateDer, TrustAnchor};

    let leaf = &certs[leaf_idx];
    let t = ctx
        .now
        .clamp(leaf.not_before, leaf.not_after.max(leaf.not_before));
    let time = unix_time(t);
    let ders: Vec<CertificateDer<'_>> = certs
        .iter()
        .map(|c| CertificateDer::from(c.der.as_slice()))
        .collect();
    let leaf_der = &ders[leaf_idx];
    let ee = webpki::EndEntityCert::try_from(leaf_der)
        .map_err(|e| map_path_error(&e, certs, leaf_idx, t))?;
    let intermediates: Vec<CertificateDer<'_>> = ders
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != leaf_idx)
        .map(|(_, d)| d.clone())
        .collect();

    // Anchors: listed roots, phone roots, local CA, self-signed
    // certificates of the box.
    let root_ders: Vec<CertificateDer<'_>> = ctx
        .roots
        .iter()
        .chain(ctx.phone_roots)
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let local_der = ctx.local_ca.map(CertificateDer::from);
    let mut anchors: Vec<TrustAnchor<'_>> = Vec::new();
    for der in root_ders.iter().chain(local_der.iter()) {
        if let Ok(a) = webpki::anchor_from_trusted_cert(der) {
            anchors.push(a);
        }
    }
    let self_signed =
        |i: usize| certs[i].is_self_issued() && certs[i].is_signed_by(&certs[i]).is_ok();
    for (i, der) in ders.iter().enumerate() {
        if (certs[i].is_ca || i == leaf_idx) && self_signed(i) {
            if let Ok(a) = webpki::anchor_from_trusted_cert(der) {
                anchors.push(a);
            }
        }
    }
    let algs = rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all;
    let usage = Usage { server };
    let verify = |anchors: &[TrustAnchor<'_>]| -> Result<(Vec<Vec<u8>>, TrustAnchor<'static>), webpki::Error> {
        let path =
            ee.verify_for_usage(algs, anchors, &intermediates, time, &usage, None, None)?;
        let inters = path
            .intermediate_certificates()
            .map(|c| c.der().to_vec())
            .collect();
        Ok((inters, path.anchor().to_owned()))
    };
    let mut tops = Vec::new();
    // A self-signed leaf is its own trust anchor (clients trust it only as
    // installed, e.g. `openssl req -x509`, which also sets CA:TRUE): no
    // path to judge.
    let own_anchor = self_signed(leaf_idx)
        .then(|| webpki::anchor_from_trusted_cert(leaf_der).ok())
        .flatten();
    let found = match own_anchor {
        Some(a) => Ok((Vec::new(), a.to_owned())),
        None => verify(&anchors),
    };
    let found = match found {
        Err(webpki::Error::UnknownIssuer) => {
            // The box stops at a CA whose issuer is nowhere: that CA is
            // where clients must take over (today's rule "complete when the
            // top is an intermediate CA").
            let mut with_tops = anchors.clone();
            for (i, der) in ders.iter().enumerate() {
                let issuer_supplied = certs
                    .iter()
                    .enumerate()
                    .any(|(j, o)| j != i && certs[i].names_issuer(o));
                if i != leaf_idx && certs[i].is_ca && !issuer_supplied {
                    if let Ok(a) = webpki::anchor_from_trusted_cert(der) {
                        with_tops.push(a);
                        tops.push(i);
                    }
                }
            }
            verify(&with_tops)
        }
        other => other,
    };
    let (inter_ders, anchor) = found.map_err(|e| map_path_error(&e, certs, leaf_idx, t))?;

    let box_index = |der: &[u8]| certs.iter().position(|c| c.der == der);
    let mut chain = vec![leaf_idx];
    chain.extend(inter_ders.iter().filter_map(|d| box_index(d)));
    let pasted = (0..certs.len()).find(|&i| {
        (certs[i].is_ca || i == leaf_idx) && self_signed(i) && anchor_is(&anchor, &certs[i].der)
    });
    let origin = if ctx.roots.iter().any(|d| anchor_is(&anchor, d)) {
        Origin::Listed
    } else if ctx.local_ca.is_some_and(|d| anchor_is(&anchor, d)) {
        Origin::LocalCa
    } else if ctx.phone_roots.iter().any(|d| anchor_is(&anchor, d)) {
        Origin::Phone
    } else if let Some(i) = pasted {
        Origin::Pasted(i)
    } else if let Some(&i) = tops.iter().find(|&&i| anchor_is(&anchor, &certs[i].der)) {
        Origin::Top(i)
    } else {
        return Err(ImportError::BadChain(
            "the path ends at an unknown anchor".into(),
        ));
    };
    if let Origin::Top(i) = origin {
        // webpki does not check an anchor's dates: this CA is served.
        let top = &certs[i];
        if top.not_after < t {
            return Err(ImportError::IntermediateExpired(
                top.subject.clone(),
                crate::clock::rfc3339(top.not_after),
            ));
        }
        if top.not_before > t {
            return Err(ImportError::IntermediateNotYetValid(
                top.subject.clone(),
                crate::clock::rfc3339(top.not_before),
            ));
        }
        chain.push(i);
    }
    if chain.len() > MAX_CHAIN_LEN {
        return Err(ImportError::BadChain(format!(
            "the chain is longer than {MAX_CHAIN_LEN} certificates"
        )));
    }
    let root_idx = pasted.filter(|&i| i != leaf_idx);
    if let Some(r) = root_idx {
        warnings.push(Notice {
            code: "root-included",
            message: format!(
                "the root \"{}\" was included; clients have it already, so it is not sent and was dropped",
                certs[r].subject
            ),
        });
        if let Origin::Pasted(_) = origin {
            warnings.push(Notice {
                code: "private-root",
                message: format!(
                    "the chain ends in the root \"{}\", which is neither in the Root CA list, the local CA nor the roots \
                     distributed to phones: phones must trust this root; load it onto them and record it with \
                     `pbx-certd phone-roots import`",
                    certs[r].subject
                ),
            });
        }
    }
    for (i, c) in certs.iter().enumerate() {
        if !chain.contains(&i) && root_idx != Some(i) {
            warnings.push(Notice {
                code: "not-on-path",
                message: format!(
                    "\"{}\" is not on the path clients build for \"{}\"; it is not served and was dropped",
                    c.subject, leaf.subject
                ),
            });
        }
    }
    let order: Vec<usize> = chain.iter().copied().chain(root_idx).collect();
    if order.iter().enumerate().any(|(pos, &i)| pos != i) {
        warnings.push(Notice {
            code: "chain-reordered",
            message: "the certificates were not in leaf-first order; they were put in order".into(),
        });
    }
    if let Some(first) = chain[1..]
        .iter()
        .map(|&i| &certs[i])
        .filter(|c| c.not_after < leaf.not_after)
        .min_by_key(|c| c.not_after)
    {
        warnings.push(Notice {
            code: "intermediate-expires-first",
            message: format!(
                "the intermediate \"{}\" expires on {}, before the certificate; clients refuse the chain from then. \
                 Get the CA's newer intermediate before that date",
                first.subject,
                crate::clock::rfc3339(first.not_after)
            ),
        });
    }
    Ok(chain)
}

/// The issuer name where the name chain from the leaf through the box stops.
fn missing_issuer(certs: &[CertInfo], leaf_idx: usize) -> String {
    let mut cur = leaf_idx;
    let mut seen = vec![false; certs.len()];
    seen[cur] = true;
    while let Some(j) = (0..certs.len()).find(|&j| !seen[j] && certs[cur].names_issuer(&certs[j])) {
        seen[j] = true;
        cur = j;
    }
    certs[cur].issuer.clone()
}

/// A webpki refusal as the import error a PBX admin can act on.
fn map_path_error(e: &webpki::Error, certs: &[CertInfo], leaf_idx: usize, t: i64) -> ImportError {
    use webpki::Error as W;
    let leaf = &certs[leaf_idx];
    let others = || {
        certs
            .iter()
            .enumerate()
            .filter(move |&(i, _)| i != leaf_idx)
            .map(|(_, c)| c)
    };
    match e {
        W::UnknownIssuer => ImportError::IncompleteChain(missing_issuer(certs, leaf_idx)),
        W::CertExpired { .. } => match others()
            .filter(|c| c.not_after < t)
            .min_by_key(|c| c.not_after)
        {
            Some(c) => ImportError::IntermediateExpired(
                c.subject.clone(),
                crate::clock::rfc3339(c.not_after),
            ),
            None => ImportError::Expired(crate::clock::rfc3339(leaf.not_after)),
        },
        W::CertNotValidYet { .. } => match others().find(|c| c.not_before > t) {
            Some(c) => ImportError::IntermediateNotYetValid(
                c.subject.clone(),
                crate::clock::rfc3339(c.not_before),
            ),
            None => ImportError::BadChain("a certificate of the chain is not valid yet".into()),
        },
        W::RequiredEkuNotFoundContext(_) | W::EmptyEkuExtension => {
            ImportError::WrongUsage(leaf.subject.clone())
        }
        W::EndEntityUsedAsCa => {
            let issuer = others()
                .find(|c| {
                    !c.is_ca
                        && certs
                            .iter()
                            .any(|o| !o.is_self_issued() && o.names_issuer(c))
                })
                .map_or_else(|| leaf.issuer.clone(), |c| c.subject.clone());
            ImportError::IssuerNotACa(issuer)
        }
        W::CaUsedAsEndEntity => ImportError::LeafIsACa(leaf.subject.clone()),
        W::PathLenConstraintViolated => ImportError::PathLenExceeded,
        W::MaximumPathDepthExceeded => ImportError::BadChain(format!(
            "the chain is longer than {MAX_CHAIN_LEN} certificates"
        )),
        W::NameConstraintViolation => ImportError::NameConstraint(if leaf.names.is_empty() {
            format!("\"{}\"", leaf.subject)
        } else {
            leaf.names.join(", ")
        }),
        W::UnsupportedCriticalExtension => {
            let who = if webpki::EndEntityCert::try_from(&rustls::pki_types::CertificateDer::from(
                leaf.der.as_slice(),
            ))
            .is_err()
            {
                format!("the certificate \"{}\"", leaf.subject)
            } else {
                "a CA certificate of the chain".to_owned()
            };
            ImportError::UnknownCriticalExtension(who)
        }
        W::InvalidSignatureForPublicKey => ImportError::BadChain(format!(
            "a signature on the path to \"{}\" does not verify with its issuer's key \
             (a different CA with the same name?)",
            leaf.subject
        )),
        other => ImportError::BadChain(format!("clients refuse the chain ({other})")),
    }
}

/// id-pe-authorityInfoAccess (RFC 5280 §4.2.2.1).
const OID_AIA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.1.1");
/// id-ad-caIssuers (RFC 5280 §4.2.2.1).
const OID_CA_ISSUERS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.2");
/// id-signedData (RFC 5652 §5.1), DER of the OID's value.
const SIGNED_DATA_OID_DER: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];

/// The http(s) caIssuers URLs of a certificate's AIA extension.
fn ca_issuers_of(cert: &Certificate) -> Vec<String> {
    use x509_cert::ext::pkix::AuthorityInfoAccessSyntax;
    let mut urls = Vec::new();
    for ext in cert.tbs_certificate.extensions.iter().flatten() {
        if ext.extn_id != OID_AIA {
            continue;
        }
        let Ok(aia) = AuthorityInfoAccessSyntax::from_der(ext.extn_value.as_bytes()) else {
            continue;
        };
        for ad in aia.0 {
            if let (true, GeneralName::UniformResourceIdentifier(uri)) =
                (ad.access_method == OID_CA_ISSUERS, &ad.access_location)
            {
                let uri = uri.as_str();
                if uri.starts_with("http://") || uri.starts_with("https://") {
                    urls.push(uri.to_owned());
                }
            }
        }
    }
    urls
}

/// Chain doctor (issue 17): when the box stops at a certificate whose issuer
/// is missing, that certificate's subject and its AIA caIssuers URL (RFC
/// 5280 §4.2.2.1), if it names one. The box is judged as `analyse` reads it
/// (unparseable blocks are ignored here: rule 1 reports them).
pub fn missing_issuer_url(cert_box: &[u8]) -> Option<(String, String)> {
    let blocks = pem::parse(cert_box).ok()?;
    let certs: Vec<(CertInfo, Vec<String>)> = blocks
        .into_iter()
        .filter(|b| b.label == "CERTIFICATE")
        .filter_map(|b| {
            let urls = Certificate::from_der(&b.der)
                .map(|c| ca_issuers_of(&c))
                .ok()?;
            Some((CertInfo::parse(b.der)?, urls))
        })
        .collect();
    certs.iter().find_map(|(c, urls)| {
        let issuer_here = certs.iter().any(|(o, _)| c.names_issuer(o));
        let url = urls.first()?;
        (!issuer_here && !c.is_self_issued()).then(|| (c.subject.clone(), url.clone()))
    })
}

/// One DER TLV split off the front of an input: (tag, whole TLV, content,
/// the rest of the input).
type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

/// One DER TLV at the start of `input`.
fn tlv(input: &[u8]) -> Option<Tlv<'_>> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, head) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for &b in input.get(2..2 + n)? {
            len = (len << 8) | usize::from(b);
        }
        (len, 2 + n)
    };
    let end = head.checked_add(len)?;
    Some((
        tag,
        input.get(..end)?,
        input.get(head..end)?,
        input.get(end..)?,
    ))
}

/// The certificates of a PKCS#7 "certs-only" SignedData (RFC 5652 §5.1;
/// RFC 5280 §4.2.2.1 names it for caIssuers), as DER.
fn pkcs7_certs(der: &[u8]) -> Option<Vec<Vec<u8>>> {
    let (0x30, _, content_info, _) = tlv(der)? else {
        return None;
    };
    let (0x06, _, oid, rest) = tlv(content_info)? else {
        return None;
    };
    if oid != SIGNED_DATA_OID_DER {
        return None;
    }
    let (0xa0, _, explicit, _) = tlv(rest)? else {
        return None;
    };
    let (0x30, _, signed_data, _) = tlv(explicit)? else {
        return None;
    };
    // version, digestAlgorithms, encapContentInfo, then [0] certificates.
    let (_, _, _, rest) = tlv(signed_data)?;
    let (_, _, _, rest) = tlv(rest)?;
    let (_, _, _, rest) = tlv(rest)?;
    let (0xa0, _, mut set, _) = tlv(rest)? else {
        return Some(Vec::new());
    };
    let mut out = Vec::new();
    while !set.is_empty() && out.len() < MAX_CHAIN_LEN {
        let (tag, whole, _, rest) = tlv(set)?;
        if tag == 0x30 {
            out.push(whole.to_vec());
        }
        set = rest;
    }
    Some(out)
}

/// The CA certificates a caIssuers URL returned: one DER certificate, a
/// DER PKCS#7 certs-only bundle, or the same as PEM. Only certificates that
/// parse are kept; none is `None`.
pub fn issuer_certs_from_download(body: &[u8]) -> Option<Vec<Vec<u8>>> {
    let ders: Vec<Vec<u8>> = if body.starts_with(b"-----") || body.windows(5).any(|w| w == b"-----")
    {
        pem::parse(body)
            .ok()?
            .into_iter()
            .flat_map(|b| match b.label.as_str() {
                "PKCS7" => pkcs7_certs(&b.der).unwrap_or_default(),
                _ => vec![b.der],
            })
            .collect()
    } else if CertInfo::parse(body.to_vec()).is_some() {
        vec![body.to_vec()]
    } else {
        pkcs7_certs(body)?
    };
    let certs: Vec<Vec<u8>> = ders
        .into_iter()
        .filter(|d| CertInfo::parse(d.clone()).is_some())
        .take(MAX_CHAIN_LEN)
        .collect();
    (!certs.is_empty()).then_some(certs)
}

/// Second-level public suffixes refused under a wildcard (every single-label
/// suffix, `*.com`, is refused anyway): the common country registries'.
/// A built-in list instead of the whole Public Suffix List: the PSL crates
/// embed ~200 KB of rules, more than this daemon's whole import path, for
/// the rare `*.<suffix>` that the CAs refuse to issue in the first place.
const PUBLIC_SUFFIXES_2: &[&str] = &[
    "co.uk", "org.uk", "me.uk", "ac.uk", "gov.uk", "ltd.uk", "plc.uk", "net.uk", "com.au",
    "net.au", "org.au", "edu.au", "gov.au", "co.nz", "org.nz", "net.nz", "co.jp", "ne.jp", "or.jp",
    "ac.jp", "co.kr", "or.kr", "co.za", "org.za", "co.in", "net.in", "org.in", "com.br", "net.br",
    "org.br", "com.cn", "net.cn", "org.cn", "com.mx", "com.ar", "com.tr", "com.tw", "com.hk",
    "com.sg", "com.my", "co.id", "co.il", "co.th", "com.ua", "com.pl", "co.at", "or.at", "com.es",
    "com.co", "com.pe",
];

/// A SAN iPAddress (RFC 5280 §4.2.1.6: 4 octets IPv4, 16 octets IPv6) in
/// `names::ip_text` form; `None` for any other length.
fn ip_from_octets(octets: &[u8]) -> Option<String> {
    let ip = match octets.len() {
        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(octets).ok()?),
        16 => std::net::IpAddr::from(<[u8; 16]>::try_from(octets).ok()?),
        _ => return None,
    };
    Some(ip.to_string())
}

/// Names a client accepts: the names are SAN DNS names or IP addresses, and no wildcard
/// sits directly on a public suffix.
fn check_names(leaf: &CertInfo) -> Result<(), ImportError> {
    if leaf.names.is_empty() {
        return Err(ImportError::NoSan(leaf.subject.clone()));
    }
    for name in &leaf.names {
        if let Some(base) = name.strip_prefix("*.") {
            if !base.contains('.') || PUBLIC_SUFFIXES_2.contains(&base) {
                return Err(ImportError::WildcardPublicSuffix(name.clone()));
            }
        }
    }
    Ok(())
}

/// Rule 6 for a leaf: the kind and, for a domain certificate, its tenant.
fn classify(
    leaf: &CertInfo,
    kind: KindRequest,
    tenants: &[Tenant],
) -> Result<(Kind, Option<String>), ImportError> {
    let owners: Vec<&str> = tenants
        .iter()
        .filter(|t| t.names().any(|d| leaf.names.contains(d)))
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
        KindRequest::Root | KindRequest::ClientCa => Err(ImportError::NotACa(leaf.subject.clone())),
        // `import --kind ca` is the local CA's (`localca::adopt`), not a
        // leaf's: a box reaching this far has no CA with its key.
        KindRequest::Ca => Err(ImportError::NotACa(leaf.subject.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context<'static> {
        Context {
            tenants: &[],
            roots: &[],
            local_ca: None,
            phone_roots: &[],
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

    /// RFC 5280 §4.1.2.5: "the validity period ... inclusive": at the
    /// exact second of notAfter the leaf and an intermediate are still valid.
    #[test]
    fn not_after_is_inclusive() {
        let at = |y| rcgen::date_time_ymd(y, 1, 1);
        let root_key = rcgen::KeyPair::generate().unwrap();
        let mut rp = rcgen::CertificateParams::default();
        rp.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        rp.distinguished_name
            .push(rcgen::DnType::CommonName, "Inclusive Root");
        rp.not_before = at(2020);
        rp.not_after = at(2040);
        let root = rp.self_signed(&root_key).unwrap();
        let inter_key = rcgen::KeyPair::generate().unwrap();
        let mut ip = rcgen::CertificateParams::default();
        ip.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ip.distinguished_name
            .push(rcgen::DnType::CommonName, "Inclusive Intermediate");
        ip.not_before = at(2020);
        ip.not_after = at(2030);
        let inter = ip.signed_by(&inter_key, &root, &root_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let mut lp = rcgen::CertificateParams::new(vec!["a.example.test".to_string()]).unwrap();
        lp.not_before = at(2021);
        lp.not_after = at(2030);
        let leaf = lp.signed_by(&leaf_key, &inter, &inter_key).unwrap();
        let cert_box = format!("{}{}{}", leaf.pem(), inter.pem(), root.pem());
        let key = leaf_key.serialize_pem();
        let not_after = CertInfo::parse(leaf.der().to_vec()).unwrap().not_after;
        let run = |now| {
            let ctx = Context { now, ..ctx() };
            analyse(
                cert_box.as_bytes(),
                Some(key.as_bytes()),
                KindRequest::Auto,
                &ctx,
            )
        };
        assert!(run(not_after).is_ok(), "{:?}", run(not_after));
        assert_eq!(run(not_after + 1).unwrap_err().code(), "expired");
    }

    /// caIssuers answers are untrusted network input: a PKCS#7 bundle
    /// yields its certificate, and every prefix or mutation of it parses
    /// or fails without panicking.
    #[test]
    fn aia_downloads_never_panic() {
        fn der(tag: u8, content: &[u8]) -> Vec<u8> {
            let mut out = vec![tag];
            if content.len() < 0x80 {
                out.push(content.len() as u8);
            } else {
                out.extend([0x82, (content.len() >> 8) as u8, content.len() as u8]);
            }
            out.extend_from_slice(content);
            out
        }
        let (cert, _) = leaf_and_key();
        let cert = pem::parse(cert.as_bytes()).unwrap().remove(0).der;
        let sd = der(
            0x30,
            &[
                der(0x02, &[1]),
                der(0x31, &[]),
                der(
                    0x30,
                    &der(
                        0x06,
                        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01],
                    ),
                ),
                der(0xa0, &cert),
                der(0x31, &[]),
            ]
            .concat(),
        );
        let p7 = der(
            0x30,
            &[der(0x06, SIGNED_DATA_OID_DER), der(0xa0, &sd)].concat(),
        );
        assert_eq!(issuer_certs_from_download(&p7), Some(vec![cert.clone()]));
        assert_eq!(issuer_certs_from_download(&cert), Some(vec![cert.clone()]));
        for len in 0..p7.len() {
            let _ = issuer_certs_from_download(&p7[..len]);
        }
        for i in 0..p7.len() {
            let mut m = p7.clone();
            m[i] ^= 0xff;
            let _ = issuer_certs_from_download(&m);
        }
        assert_eq!(issuer_certs_from_download(b"-----BEGIN nothing"), None);
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
