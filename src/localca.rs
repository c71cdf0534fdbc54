//! Making keys and certificates on the PBX: a CSR to buy a certificate with,
//! and a local CA (like mkcert) for closed networks.
//!
//! Why: buying a certificate starts with a CSR whose private key must never
//! leave the PBX; keeping the key in the store makes the later
//! `import --cert bought.crt` (no key) match it by import rule 7. A PBX in a
//! closed network has no public CA at all: `ca init` makes a root whose
//! certificate the admin loads onto the phones, and `ca issue` signs a server
//! certificate for a tenant's names, imported like any other (`source:
//! "local-ca"`).
//!
//! What must hold: keys are generated on the PBX (ring's system RNG) and
//! stored only in the store; no command prints a private key; the CA key
//! never signs anything but leaf certificates (pathLen 0); an issued
//! certificate passes the same import rules as an upload. The CA key lives
//! with the other private keys (`Tree::Keys`, named `local-ca:<key ID>`, so
//! no certificate's cleanup can remove it); stores of older releases, which
//! kept it inside the `local-ca` setting, are migrated when opened
//! (`migrate`). ring cannot generate RSA keys, so `--key-type rsa2048` keys
//! come from the RustCrypto `rsa` crate (generation only, from the OS RNG);
//! the PKCS#8 DER is then loaded into rcgen/ring, which signs, as for P-256.
//! Generation takes up to seconds on ARM: the daemon runs it off its
//! executor.

use std::time::{Duration, SystemTime};

use base64ct::{Base64, Encoding};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use serde::{Deserialize, Serialize};

use crate::certs::{self, Imported};
use crate::error::Error;
use crate::limits::{
    CSR_MAX_ORG_LEN, CSR_MAX_PLACE_LEN, LOCAL_CA_DAYS, LOCAL_CA_LEAF_DAYS, MAX_CSR_NAMES,
    RSA_KEY_BITS,
};
use crate::model::KeyType;
use crate::model::Source;
use crate::names;
use crate::pki::{self, KeyFormat, KindRequest};
use crate::store::{Batch, Store};

fn gen_err(e: impl core::fmt::Display) -> Error {
    Error::KeyGeneration(e.to_string())
}

/// A new key of `key_type`. RSA generation is slow (CPU-bound, seconds on
/// ARM): async callers run this on a blocking thread.
pub fn new_key(key_type: KeyType) -> Result<KeyPair, Error> {
    match key_type {
        KeyType::P256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err),
        KeyType::Rsa2048 => {
            use rsa::pkcs8::EncodePrivateKey;
            let key =
                rsa::RsaPrivateKey::new(&mut rand_core::OsRng, RSA_KEY_BITS).map_err(gen_err)?;
            let der = key.to_pkcs8_der().map_err(gen_err)?;
            let der = rustls::pki_types::PrivatePkcs8KeyDer::from(der.as_bytes().to_vec());
            KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256).map_err(gen_err)
        }
    }
}

/// Validate and normalise DNS names for a certificate (wildcards allowed).
fn cert_names(raw: &[String]) -> Result<Vec<String>, Error> {
    if raw.is_empty() {
        return Err(Error::BadName(
            String::new(),
            "give at least one --name".into(),
        ));
    }
    if raw.len() > MAX_CSR_NAMES {
        return Err(Error::LimitExceeded(format!(
            "at most {MAX_CSR_NAMES} names in one certificate"
        )));
    }
    let mut out: Vec<String> = Vec::new();
    for name in raw {
        let n = names::normalize(name, true).map_err(|e| Error::bad_name(name, e))?;
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

/// Put a generated key into a batch under its key ID (as import would).
fn stage_key(batch: &mut Batch, key: &KeyPair) -> Result<String, Error> {
    let der = key.serialize_der();
    let parsed = pki::load_key(KeyFormat::Pkcs8, &der)?;
    let key_id = parsed.key_id();
    batch.put_key(&key_id, KeyFormat::Pkcs8, &der);
    Ok(key_id)
}

/// The subject attributes of a CSR besides the CN (RFC 5280 §4.1.2.4), as
/// OV/EV vendors ask for them: `csr --org --org-unit --locality --state
/// --country`, the CSR page's fields and `POST /api/csr`. Empty is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsrSubject {
    /// O (organizationName).
    #[serde(default)]
    pub organization: Option<String>,
    /// OU (organizationalUnitName).
    #[serde(default)]
    pub organizational_unit: Option<String>,
    /// L (localityName).
    #[serde(default)]
    pub locality: Option<String>,
    /// ST (stateOrProvinceName).
    #[serde(default)]
    pub state: Option<String>,
    /// C (countryName): two letters, ISO 3166 alpha-2.
    #[serde(default)]
    pub country: Option<String>,
}

impl CsrSubject {
    /// The attributes in the CSR's order (C, ST, L, O, OU; the CN is added
    /// last), checked: C two ASCII letters (upper-cased), the others within
    /// RFC 5280's upper bounds and without control characters.
    fn attributes(&self) -> Result<Vec<(DnType, String)>, Error> {
        let given = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
        };
        let mut out = Vec::new();
        if let Some(c) = given(&self.country) {
            if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(Error::BadCountry(c));
            }
            out.push((DnType::CountryName, c.to_ascii_uppercase()));
        }
        let fields = [
            (
                &self.state,
                DnType::StateOrProvinceName,
                "state (ST)",
                CSR_MAX_PLACE_LEN,
            ),
            (
                &self.locality,
                DnType::LocalityName,
                "locality (L)",
                CSR_MAX_PLACE_LEN,
            ),
            (
                &self.organization,
                DnType::OrganizationName,
                "organization (O)",
                CSR_MAX_ORG_LEN,
            ),
            (
                &self.organizational_unit,
                DnType::OrganizationalUnitName,
                "organizational unit (OU)",
                CSR_MAX_ORG_LEN,
            ),
        ];
        for (value, ty, what, max) in fields {
            let Some(v) = given(value) else { continue };
            if v.chars().count() > max {
                return Err(Error::BadSubject(
                    what.to_owned(),
                    format!("at most {max} characters (RFC 5280)"),
                ));
            }
            if v.chars().any(char::is_control) {
                return Err(Error::BadSubject(
                    what.to_owned(),
                    "no control characters".to_owned(),
                ));
            }
            out.push((ty, v));
        }
        Ok(out)
    }
}

/// A CSR's key waiting for its certificate (`csr-keys list`): what the
/// CSR was for. Stored when the CSR is made; listed while no certificate
/// uses the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCsr {
    /// The stored key's ID.
    pub key_id: String,
    /// The CSR's DNS names (the first is the CN).
    pub names: Vec<String>,
    /// The key's type.
    pub key_type: KeyType,
    /// When the CSR was made (RFC 3339).
    pub created: String,
}

const PENDING_PREFIX: &str = crate::settings::Family::PendingCsr.prefix();

/// `csr --name HOST... [--key-type T] [--org O ...]`: a new key kept in the
/// store and the PEM CSR (RFC 2986) for it; the key is listed as pending
/// (`csr-keys list`) until its certificate is imported.
pub fn csr(
    store: &Store,
    names: &[String],
    key_type: KeyType,
    subject: &CsrSubject,
) -> Result<CsrView, Error> {
    let names = cert_names(names)?;
    let attributes = subject.attributes()?;
    let key = new_key(key_type)?;
    let mut params = CertificateParams::new(names.clone()).map_err(gen_err)?;
    let mut dn = DistinguishedName::new();
    for (ty, value) in attributes {
        dn.push(ty, value);
    }
    dn.push(DnType::CommonName, names[0].as_str());
    params.distinguished_name = dn;
    let request = params.serialize_request(&key).map_err(gen_err)?;
    let pem = request.pem().map_err(gen_err)?;
    let mut batch = Batch::default();
    let key_id = stage_key(&mut batch, &key)?;
    let pending = PendingCsr {
        key_id: key_id.clone(),
        names: names.clone(),
        key_type,
        created: crate::clock::rfc3339(crate::clock::now()),
    };
    batch.put_setting(
        &format!("{PENDING_PREFIX}{key_id}"),
        &serde_json::to_vec(&pending).unwrap_or_default(),
    );
    store.commit(batch)?;
    Ok(CsrView {
        csr: pem,
        names,
        key_type,
        key_id,
    })
}

/// `csr-keys list`: the CSR keys no certificate uses yet, oldest first.
pub fn pending(store: &Store) -> Result<Vec<PendingCsr>, Error> {
    let used: std::collections::BTreeSet<String> =
        store.certs()?.into_iter().map(|c| c.key_id).collect();
    let mut out = Vec::new();
    for (_, raw) in store.settings_with_prefix(PENDING_PREFIX)? {
        let Ok(p) = serde_json::from_slice::<PendingCsr>(&raw) else {
            continue;
        };
        if !used.contains(&p.key_id) && store.key(&p.key_id)?.is_some() {
            out.push(p);
        }
    }
    // Oldest first; CSRs of the same second by name (deterministic).
    out.sort_by(|a, b| (&a.created, &a.names).cmp(&(&b.created, &b.names)));
    Ok(out)
}

/// `csr-keys delete KEY_ID` (ID or a unique prefix of 8+ hex digits): the
/// pending key and its record are removed; a certificate bought with that
/// CSR can then no longer be imported without its key.
pub fn delete_pending(store: &Store, key_id: &str) -> Result<PendingCsr, Error> {
    let matching: Vec<PendingCsr> = pending(store)?
        .into_iter()
        .filter(|p| p.key_id.starts_with(key_id))
        .collect();
    let p = match matching.as_slice() {
        [one] => one.clone(),
        [] => return Err(Error::NotFound(key_id.to_owned())),
        _ => return Err(Error::AmbiguousId(key_id.to_owned())),
    };
    let mut batch = Batch::default();
    batch.delete_key(&p.key_id);
    batch.delete_setting(&format!("{PENDING_PREFIX}{}", p.key_id));
    store.commit(batch)?;
    Ok(p)
}

/// `csr --json`: the PEM CSR and what it is for (the key stays stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsrView {
    /// PEM of the CSR (RFC 2986).
    pub csr: String,
    /// Its DNS names (normalised; the first is the CN).
    pub names: Vec<String>,
    /// The key's type.
    pub key_type: KeyType,
    /// The stored key's ID.
    pub key_id: String,
}

/// `ca init|show --json`: the local CA's root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaView {
    /// Hex SHA-256 of the root DER.
    pub id: String,
    /// Subject (RFC 4514).
    pub subject: String,
    /// RFC 3339.
    pub not_after: String,
    /// PEM of the root.
    pub pem: String,
}

/// The stored local CA (the `local-ca` setting). Its key lives with the
/// other private keys (`Tree::Keys`, under `CA_KEY_PREFIX` + key ID, a name
/// no certificate's key ID can take, so deleting certificates never drops
/// it).
#[derive(Serialize, Deserialize)]
struct CaRecord {
    /// The root's Common Name (its DN is rebuilt from it to sign).
    cn: String,
    /// Older releases only: PKCS#8 of the CA key, Base64, in this record.
    /// `migrate` moves it to the keys tree; never written now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    /// Name of the CA key in the keys tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_name: Option<String>,
    /// The root certificate DER, Base64.
    cert: String,
    /// An existing CA brought in by `import --kind ca` (not made by `ca
    /// init`): `issue` writes its subject back from the certificate.
    #[serde(default)]
    imported: bool,
}

/// Keys-tree prefix of the CA key (certificate key IDs are bare hex).
const CA_KEY_PREFIX: &str = "local-ca:";

/// Store-open migration (older layout: the CA key inside the `local-ca`
/// setting): move the key to the keys tree and drop it from the setting, in
/// one batch. Nothing to do for a store without a CA or already migrated.
pub fn migrate(store: &Store) -> Result<(), crate::store::StoreError> {
    let corrupt =
        |e: &dyn core::fmt::Display| crate::store::StoreError::Corrupt(format!("local CA: {e}"));
    let Some(raw) = store.setting(SETTING_CA)? else {
        return Ok(());
    };
    let mut record: CaRecord = serde_json::from_slice(&raw).map_err(|e| corrupt(&e))?;
    let Some(key_b64) = record.key.take() else {
        return Ok(());
    };
    let der = Base64::decode_vec(&key_b64).map_err(|e| corrupt(&e))?;
    let key_id = pki::load_key(KeyFormat::Pkcs8, &der)
        .map_err(|e| corrupt(&e))?
        .key_id();
    let name = format!("{CA_KEY_PREFIX}{key_id}");
    let mut batch = Batch::default();
    batch.put_key(&name, KeyFormat::Pkcs8, &der);
    record.key_name = Some(name);
    batch.put_setting(SETTING_CA, &serde_json::to_vec(&record).unwrap_or_default());
    store.commit(batch)?;
    log::info!("store: moved the local CA key to the keys tree");
    Ok(())
}

const SETTING_CA: &str = crate::settings::Setting::LocalCa.name();

/// The CA's parameters: the same DN, key usages and key identifier method
/// at `init` and at every `issue`, so issued certificates chain to the root.
fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "pbx-certd local CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn load_ca(store: &Store) -> Result<(CaRecord, Vec<u8>), Error> {
    let raw = store.setting(SETTING_CA)?.ok_or(Error::NoCa)?;
    let corrupt = |e: &dyn core::fmt::Display| {
        Error::Store(crate::store::StoreError::Corrupt(format!("local CA: {e}")))
    };
    let record: CaRecord = serde_json::from_slice(&raw).map_err(|e| corrupt(&e))?;
    let der = Base64::decode_vec(&record.cert).map_err(|e| corrupt(&e))?;
    Ok((record, der))
}

fn validity(params: &mut CertificateParams, days: u64) {
    // An hour back: clocks of phones are often a little behind.
    let start = SystemTime::now() - Duration::from_secs(3600);
    params.not_before = start.into();
    params.not_after = (start + Duration::from_secs(days * 86_400)).into();
}

/// `ca init`: a new CA key and self-signed root.
pub fn init(store: &Store) -> Result<CaView, Error> {
    if store.setting(SETTING_CA)?.is_some() {
        return Err(Error::CaExists);
    }
    let host = store.system()?.dns.unwrap_or_else(|| "pbx".to_owned());
    let cn = format!("pbx-certd local CA {host}");
    let key = new_key(KeyType::P256)?;
    let mut params = ca_params(&cn);
    validity(&mut params, LOCAL_CA_DAYS);
    let root = params.self_signed(&key).map_err(gen_err)?;
    let der = key.serialize_der();
    let key_name = format!(
        "{CA_KEY_PREFIX}{}",
        pki::load_key(KeyFormat::Pkcs8, &der)?.key_id()
    );
    let record = CaRecord {
        cn,
        key: None,
        key_name: Some(key_name.clone()),
        cert: Base64::encode_string(root.der()),
        imported: false,
    };
    let mut batch = Batch::default();
    batch.put_key(&key_name, KeyFormat::Pkcs8, &der);
    batch.put_setting(SETTING_CA, &serde_json::to_vec(&record).unwrap_or_default());
    store.commit(batch)?;
    show(store)
}

/// `import --kind ca [--replace]`: an existing CA (a company CA: its
/// certificate and its key) becomes the local CA that `ca issue` signs with,
/// in place of the one `ca init` would make. Refused with a named error: no
/// key (`key-required`), no certificate in the box carries the key
/// (`key-mismatch`), it is no CA (`not-a-ca`) or expired (`expired`), a key
/// not in PKCS#8 (`unsupported-key`: rcgen signs with PKCS#8 keys only), a
/// subject rcgen cannot write back byte for byte (`ca-name-unsupported`),
/// and a local CA exists without `replace` (`ca-exists`). With `replace`,
/// the old CA key goes.
pub fn adopt(
    store: &Store,
    cert_box: &[u8],
    key_box: Option<&[u8]>,
    replace: bool,
) -> Result<Imported, Error> {
    use crate::pki::ImportError;
    let old = store.setting(SETTING_CA)?;
    if old.is_some() && !replace {
        return Err(Error::CaExists);
    }
    let key = pki::parse_key_box(key_box.ok_or(ImportError::KeyRequired)?)?;
    let blocks = crate::pem::parse(cert_box).map_err(|e| ImportError::BadPem(e.to_string()))?;
    let ca = blocks
        .into_iter()
        .filter(|b| b.label == "CERTIFICATE")
        .filter_map(|b| pki::CertInfo::parse(b.der))
        .find(|c| key.matches(c))
        .ok_or(ImportError::KeyMismatch)?;
    if !ca.is_ca {
        return Err(ImportError::NotACa(ca.subject.clone()).into());
    }
    if ca.not_after < crate::clock::now() {
        return Err(ImportError::Expired(crate::clock::rfc3339(ca.not_after)).into());
    }
    if key.format != KeyFormat::Pkcs8 {
        return Err(ImportError::UnsupportedKey(
            "a CA key must be PKCS#8 (\"BEGIN PRIVATE KEY\"): convert it with \
             openssl pkey -in ca.key -out ca-pkcs8.key"
                .into(),
        )
        .into());
    }
    // Both must work before anything is stored: the DN written back, and
    // rcgen signing with the key.
    issuer_params(&ca.der)?;
    KeyPair::try_from(key.der.as_slice()).map_err(gen_err)?;
    let key_name = format!("{CA_KEY_PREFIX}{}", key.key_id());
    let record = CaRecord {
        cn: ca.subject.clone(),
        key: None,
        key_name: Some(key_name.clone()),
        cert: Base64::encode_string(&ca.der),
        imported: true,
    };
    let mut batch = Batch::default();
    if let Some(old_name) = old
        .and_then(|raw| serde_json::from_slice::<CaRecord>(&raw).ok())
        .and_then(|r| r.key_name)
        .filter(|n| *n != key_name)
    {
        batch.delete_key(&old_name);
    }
    batch.put_key(&key_name, KeyFormat::Pkcs8, &key.der);
    batch.put_setting(SETTING_CA, &serde_json::to_vec(&record).unwrap_or_default());
    store.commit(batch)?;
    Ok(Imported {
        id: ca.id,
        kind: "ca".into(),
        tenant: None,
        names: Vec::new(),
        not_after: crate::clock::rfc3339(ca.not_after),
        warnings: Vec::new(),
        ids: None,
        eku: ca.eku,
    })
}

/// The issuer parameters of an imported CA: its subject as rcgen will
/// write it into the certificates it issues, which must be the same bytes
/// (RFC 5280 §7.1 name chaining; clients compare them). Single-valued RDNs
/// of PrintableString, UTF8String, IA5String or TeletexString, each
/// attribute once (rcgen keeps one value per attribute type); anything else
/// is `ca-name-unsupported`.
fn issuer_params(der: &[u8]) -> Result<CertificateParams, Error> {
    use der::{Decode, Tag, Tagged};
    use rcgen::DnValue;
    let cert =
        x509_cert::Certificate::from_der(der).map_err(|_| pki::ImportError::BadCertificate(1))?;
    let subject = cert.tbs_certificate.subject.to_string();
    let unsupported = || Error::Import(pki::ImportError::CaNameUnsupported(subject.clone()));
    let mut dn = DistinguishedName::new();
    let mut seen: Vec<DnType> = Vec::new();
    for rdn in cert.tbs_certificate.subject.0.iter() {
        let [atv] = rdn.0.as_slice() else {
            return Err(unsupported());
        };
        let arcs: Vec<u64> = atv.oid.arcs().map(u64::from).collect();
        let ty = DnType::from_oid(&arcs);
        if seen.contains(&ty) {
            return Err(unsupported());
        }
        let text = std::str::from_utf8(atv.value.value())
            .map_err(|_| unsupported())?
            .to_owned();
        let value = match atv.value.tag() {
            Tag::PrintableString => {
                DnValue::PrintableString(text.try_into().map_err(|_| unsupported())?)
            }
            Tag::Utf8String => DnValue::Utf8String(text),
            Tag::Ia5String => DnValue::Ia5String(text.try_into().map_err(|_| unsupported())?),
            Tag::TeletexString => {
                DnValue::TeletexString(text.try_into().map_err(|_| unsupported())?)
            }
            _ => return Err(unsupported()),
        };
        seen.push(ty.clone());
        dn.push(ty, value);
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    Ok(params)
}

/// `ca show`: the root (to load onto phones).
pub fn show(store: &Store) -> Result<CaView, Error> {
    let (_, der) = load_ca(store)?;
    let info = pki::CertInfo::parse(der.clone())
        .ok_or_else(|| Error::Store(crate::store::StoreError::Corrupt("local CA root".into())))?;
    Ok(CaView {
        id: info.id,
        subject: info.subject,
        not_after: crate::clock::rfc3339(info.not_after),
        pem: crate::pem::encode("CERTIFICATE", &der),
    })
}

/// The local CA's root certificate (DER): the trust anchor of a forward's
/// `client-ca=local-ca`.
pub fn root_der(store: &Store) -> Result<Vec<u8>, Error> {
    load_ca(store).map(|(_, der)| der)
}

/// `ca issue --tenant NAME [--client]`: a server certificate for the
/// tenant's DNS names and IP addresses, signed by the local CA and imported (leaf + root) as
/// the tenant's domain certificate. EKU serverAuth; with `client` also
/// clientAuth, so that it can be the client certificate of a
/// `--tls-connect` trunk (a trunk needs only clientAuth, but the certificate
/// is stored and served as the tenant's, whose import rule 4 asks for
/// serverAuth).
pub fn issue(store: &Store, tenant: &str, client: bool) -> Result<Imported, Error> {
    let t = store
        .tenant(tenant)?
        .ok_or_else(|| Error::NoSuchTenant(tenant.to_owned()))?;
    let names: Vec<String> = t.names().cloned().collect();
    let Some(first) = names.first().cloned() else {
        return Err(Error::NothingToIssue(tenant.to_owned()));
    };
    let (record, root_der) = load_ca(store)?;
    let corrupt = |what: &str| {
        Error::Store(crate::store::StoreError::Corrupt(format!(
            "local CA key: {what}"
        )))
    };
    let key_name = record
        .key_name
        .as_deref()
        .ok_or_else(|| corrupt("no key"))?;
    let ca_key_der = store
        .key(key_name)?
        .ok_or_else(|| corrupt("missing from the keys tree"))?
        .der;
    let ca_key = KeyPair::try_from(ca_key_der.as_slice()).map_err(gen_err)?;
    // The issuer object: same DN, key and key identifier as the stored root
    // (an imported CA's DN written back from its certificate).
    let issuer = match record.imported {
        true => issuer_params(&root_der)?,
        false => ca_params(&record.cn),
    }
    .self_signed(&ca_key)
    .map_err(gen_err)?;

    let key = new_key(KeyType::P256)?;
    // rcgen makes an IP name an iPAddress SAN.
    let mut params = CertificateParams::new(names).map_err(gen_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, first.as_str());
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    if client {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    // rcgen's key identifier is its own; an imported CA's SKI may differ,
    // and a mismatching AKI misleads path building, so none then.
    params.use_authority_key_identifier_extension = !record.imported;
    validity(&mut params, LOCAL_CA_LEAF_DAYS);
    let leaf = params.signed_by(&key, &issuer, &ca_key).map_err(gen_err)?;
    let mut chain = leaf.pem();
    chain.push_str(&crate::pem::encode("CERTIFICATE", &root_der));
    certs::import(
        store,
        chain.as_bytes(),
        Some(key.serialize_pem().as_bytes()),
        KindRequest::Domain,
        Source::LocalCa,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_deduplicated() {
        let n = cert_names(&["WWW.Example.com.".into(), "www.example.com".into()]).unwrap();
        assert_eq!(n, vec!["www.example.com"]);
        assert_eq!(cert_names(&[]).unwrap_err().code(), "bad-name");
        assert_eq!(cert_names(&["a b".into()]).unwrap_err().code(), "bad-name");
        assert!(cert_names(&["*.example.com".into()]).is_ok());
    }

    #[test]
    fn rsa2048_keys_are_generated_and_sign() {
        let key = new_key(KeyType::Rsa2048).unwrap();
        let parsed = pki::load_key(KeyFormat::Pkcs8, &key.serialize_der()).unwrap();
        assert_eq!(parsed.alg.name(), "rsa2048");
        // rcgen signs with it (ring, RSA PKCS#1 v1.5 SHA-256).
        let params = CertificateParams::new(vec!["a.test".to_string()]).unwrap();
        assert!(params.serialize_request(&key).is_ok());
    }
}
