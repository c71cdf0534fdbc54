//! Certificate makers (rcgen): leaves, roots, intermediates, a `Pki`
//! (root + intermediate), TNAuthList (STIR/SHAKEN) extensions, raw public
//! keys, and the fixed certificate pairs whose IDs share an 8-hex-digit
//! prefix (for `ambiguous-id`). Every certificate is made at test time.

use std::time::Duration;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CustomExtension, DistinguishedName, DnType,
    IsCa, KeyPair, PublicKeyData, SanType, SerialNumber, SignatureAlgorithm,
};
use serde_json::Value;

use super::*;

/// OID of the TNAuthList extension (RFC 8226), which makes a STIR/SHAKEN cert.
pub const TN_AUTH_LIST_OID: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 26];

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

/// A leaf for `names` (SAN DNS names, an IP address as an iPAddress SAN;
/// CN = first name), valid from a day ago for 90 days, with a fresh P-256 key.
pub fn leaf(names: &[&str]) -> CertBuilder {
    let mut params = CertificateParams::default();
    params.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName((*n).try_into().expect("ia5 name")),
        })
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

    /// Extended key usage clientAuth only (a phone's or trunk's client
    /// certificate).
    pub fn client_auth(mut self) -> Self {
        self.params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        self
    }

    /// Extended key usage serverAuth only.
    pub fn server_auth(mut self) -> Self {
        self.params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
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
