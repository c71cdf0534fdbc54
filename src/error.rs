//! The error of a CLI/API operation, with stable machine-readable codes.
//!
//! Why: scripts branch on `error.code`; admins read `message`. Import rule
//! failures keep their own enum (`pki::ImportError`), storage failures theirs
//! (`store::StoreError`); the operational outcomes are the variants below.
//!
//! What must hold: a code never changes once released; no message contains key
//! material.

use crate::names::NameError;
use crate::pki::ImportError;
use crate::store::StoreError;

/// Why an operation failed.
#[derive(Debug)]
pub enum Error {
    /// An import rule refused the input.
    Import(ImportError),
    /// The store failed or is locked.
    Store(StoreError),
    /// No certificate, root or key with that ID.
    NotFound(String),
    /// The ID prefix matches several entries.
    AmbiguousId(String),
    /// No tenant of that name.
    NoSuchTenant(String),
    /// The tenant still owns domain certificates.
    TenantInUse(String, usize),
    /// A tenant of that name exists already.
    TenantExists(String),
    /// The DNS name belongs to another tenant.
    DnsNameTaken(String, String),
    /// A DNS name or tenant name is not acceptable.
    BadName(String, String),
    /// The admin e-mail address is not an address.
    BadEmail(String),
    /// A fixed limit (see `limits`) was hit.
    LimitExceeded(String),
    /// An input file could not be read.
    ReadFailed(String, String),
    /// The certificate cannot be the default (STIR/SHAKEN certs never serve TLS).
    NotServable(String),
    /// The admin password is not acceptable.
    BadPassword(String),
    /// An `acme set` value is not acceptable.
    BadSetting(String),
    /// `cert reissue` of a certificate ACME does not manage.
    NotAcmeManaged(String),
    /// `cert reissue` while ACME is disabled.
    AcmeDisabled,
    /// An error reported by the running daemon (code kept as it sent it).
    Remote(RemoteError),
    /// A DNS provider operation or configuration failed.
    Dns(DnsError),
    /// A DNS provider of that name exists already.
    DnsProviderExists(String),
    /// No DNS provider of that name.
    NoSuchDnsProvider(String),
    /// A key type this build cannot generate.
    UnsupportedKeyType(String),
    /// Generating a key, CSR or certificate failed.
    KeyGeneration(String),
    /// `ca init` when a local CA exists.
    CaExists,
    /// `ca issue`/`ca show` before `ca init`.
    NoCa,
    /// The tenant has no DNS names to issue for.
    NothingToIssue(String),
    /// A STIR/SHAKEN signing request was refused (`StirError`).
    Stir(StirError),
    /// A CSR's country (C) is not two letters (RFC 5280 §4.1.2.4: ISO 3166
    /// alpha-2, a PrintableString of exactly 2).
    BadCountry(String),
    /// A CSR subject attribute (O, OU, L, ST) is too long or has control
    /// characters (the RFC 5280 Appendix A upper bounds).
    BadSubject(String, String),
    /// `backup`, `restore` or `store copy` refused or failed (`BackupError`).
    Backup(BackupError),
}

impl Error {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Import(e) => e.code(),
            Error::Store(e) => e.code(),
            Error::NotFound(_) => "not-found",
            Error::AmbiguousId(_) => "ambiguous-id",
            Error::NoSuchTenant(_) => "no-such-tenant",
            Error::TenantInUse(..) => "tenant-in-use",
            Error::TenantExists(_) => "tenant-exists",
            Error::DnsNameTaken(..) => "dns-name-taken",
            Error::BadName(..) => "bad-name",
            Error::BadEmail(_) => "bad-email",
            Error::LimitExceeded(_) => "limit-exceeded",
            Error::ReadFailed(..) => "read-failed",
            Error::NotServable(_) => "not-servable",
            Error::BadPassword(_) => "bad-password",
            Error::BadSetting(_) => "bad-setting",
            Error::NotAcmeManaged(_) => "not-acme-managed",
            Error::AcmeDisabled => "acme-disabled",
            Error::Remote(_) => "remote",
            Error::Dns(e) => e.code(),
            Error::DnsProviderExists(_) => "dns-provider-exists",
            Error::NoSuchDnsProvider(_) => "no-such-dns-provider",
            Error::UnsupportedKeyType(_) => "unsupported-key-type",
            Error::KeyGeneration(_) => "key-generation-failed",
            Error::CaExists => "ca-exists",
            Error::NoCa => "no-ca",
            Error::NothingToIssue(_) => "nothing-to-issue",
            Error::Stir(e) => e.code(),
            Error::BadCountry(_) => "bad-country",
            Error::BadSubject(..) => "bad-subject",
            Error::Backup(e) => e.code(),
        }
    }

    /// `{"error":{"code","message"}}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code_str(), "message": self.to_string()}})
    }

    /// The code, including one relayed from the daemon.
    pub fn code_str(&self) -> &str {
        match self {
            Error::Remote(r) => &r.code,
            other => other.code(),
        }
    }

    pub(crate) fn bad_name(name: &str, why: NameError) -> Error {
        Error::BadName(name.to_owned(), why.to_string())
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Import(e) => e.fmt(f),
            Error::Store(e) => e.fmt(f),
            Error::NotFound(id) => write!(f, "nothing found with ID {id}"),
            Error::AmbiguousId(id) => {
                write!(
                    f,
                    "the ID prefix {id} matches several entries; give more digits"
                )
            }
            Error::NoSuchTenant(t) => write!(f, "there is no tenant \"{t}\""),
            Error::TenantInUse(t, n) => write!(
                f,
                "tenant \"{t}\" still owns {n} domain certificate(s); delete them first"
            ),
            Error::TenantExists(t) => write!(f, "a tenant \"{t}\" exists already"),
            Error::DnsNameTaken(name, t) => {
                write!(f, "the DNS name {name} already belongs to tenant \"{t}\"")
            }
            Error::BadName(name, why) => write!(f, "\"{name}\" is not acceptable: {why}"),
            Error::BadEmail(e) => write!(f, "\"{e}\" is not an e-mail address"),
            Error::LimitExceeded(what) => f.write_str(what),
            Error::ReadFailed(path, why) => write!(f, "cannot read {path}: {why}"),
            Error::BadPassword(why) => f.write_str(why),
            Error::BadSetting(why) | Error::NotAcmeManaged(why) => f.write_str(why),
            Error::AcmeDisabled => {
                f.write_str("ACME is disabled; enable it with `pbx-certd acme set --enabled true`")
            }
            Error::Remote(r) => f.write_str(&r.message),
            Error::Dns(e) => e.fmt(f),
            Error::DnsProviderExists(n) => write!(f, "a DNS provider \"{n}\" exists already"),
            Error::NoSuchDnsProvider(n) => write!(f, "there is no DNS provider \"{n}\""),
            Error::UnsupportedKeyType(t) => write!(
                f,
                "unknown key type {t}; use one of: {}",
                crate::model::KeyType::NAMES.join(", ")
            ),
            Error::KeyGeneration(e) => write!(f, "key or certificate generation failed: {e}"),
            Error::CaExists => f.write_str("a local CA exists already (ca show prints its root)"),
            Error::NoCa => f.write_str("there is no local CA yet: run `pbx-certd ca init` first"),
            Error::NothingToIssue(t) => write!(f, "tenant \"{t}\" has no DNS names"),
            Error::Stir(e) => e.fmt(f),
            Error::BadCountry(c) => write!(
                f,
                "country \"{c}\": give the two-letter ISO 3166 code (DE, US, ...)"
            ),
            Error::BadSubject(what, why) => write!(f, "{what}: {why}"),
            Error::Backup(e) => e.fmt(f),
            Error::NotServable(id) => write!(
                f,
                "certificate {id} is not a server or domain certificate and cannot serve TLS"
            ),
        }
    }
}

impl std::error::Error for Error {}

impl From<ImportError> for Error {
    fn from(e: ImportError) -> Error {
        Error::Import(e)
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        Error::Store(e)
    }
}

impl From<DnsError> for Error {
    fn from(e: DnsError) -> Error {
        Error::Dns(e)
    }
}

impl From<BackupError> for Error {
    fn from(e: BackupError) -> Error {
        Error::Backup(e)
    }
}

/// Why `backup`, `restore` or `store copy` refused or failed
/// (`crate::backup`). Codes are stable. The store is left as it was by
/// every refusal (a sled store also by a failure: one transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupError {
    /// The backup file could not be written (path, why).
    WriteFailed(String, String),
    /// The backup file could not be read (path, why).
    ReadFailed(String, String),
    /// The file is not a backup of this format, is damaged, or holds a
    /// record this release cannot read (why).
    BadBackup(String),
    /// The file was made by a newer release (its format version).
    NewerFormat(u32),
    /// The target store holds certificates, keys or tenants (what it
    /// holds); `--replace` replaces them.
    NotEmpty(String),
    /// `store copy --to` names the store being copied.
    SameStore(String),
    /// A sealed backup needs a store key: to write one (`backup --sealed`
    /// without `--store-key-file`) or to read one (the key ID it needs).
    NoKey(String),
}

impl BackupError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            BackupError::WriteFailed(..) => "backup-write-failed",
            BackupError::ReadFailed(..) => "backup-read-failed",
            BackupError::BadBackup(_) => "bad-backup",
            BackupError::NewerFormat(_) => "backup-too-new",
            BackupError::NotEmpty(_) => "store-not-empty",
            BackupError::SameStore(_) => "same-store",
            BackupError::NoKey(_) => "backup-no-key",
        }
    }
}

impl core::fmt::Display for BackupError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BackupError::WriteFailed(path, why) => write!(f, "cannot write {path}: {why}"),
            BackupError::ReadFailed(path, why) => write!(f, "cannot read {path}: {why}"),
            BackupError::BadBackup(why) => write!(f, "not a usable pbx-certd backup: {why}"),
            BackupError::NewerFormat(v) => write!(
                f,
                "the backup has format {v}, made by a newer release; this release reads format {}",
                crate::limits::BACKUP_FORMAT_VERSION
            ),
            BackupError::NotEmpty(what) => write!(
                f,
                "the target store is not empty ({what}); --replace replaces everything in it"
            ),
            BackupError::SameStore(what) => write!(f, "{what} is the store being copied"),
            BackupError::NoKey(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for BackupError {}

impl From<StirError> for Error {
    fn from(e: StirError) -> Error {
        Error::Stir(e)
    }
}

/// Why `stir-shaken sign` (or its settings) refused (RFC 8224, RFC 8225,
/// RFC 8588; `crate::stir`). Codes are stable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StirError {
    /// The tenant has no STIR/SHAKEN certificate to sign with.
    NoCertificate(String),
    /// The chosen certificate (ID, not-after) has expired.
    Expired(String, String),
    /// The chosen certificate's key (ID, key type) is not P-256 (ES256 needs it).
    KeyNotP256(String, String),
    /// The private key of the chosen certificate is not in the store.
    KeyMissing(String),
    /// A telephone number that is not one after RFC 8224 §8.3 canonicalisation
    /// (the number, why).
    BadTn(String, String),
    /// `--attest` is not A, B or C (RFC 8588 §4).
    BadAttest(String),
    /// `--origid` is not a UUID (RFC 4122 text form).
    BadOrigid(String),
    /// No x5u base: neither `stir-shaken set --x5u-base` nor a system DNS name.
    NoX5uBase,
    /// The `--x5u-base` URL is not an `https://` URL (the URL, why).
    BadX5uBase(String, String),
    /// The signature could not be made (ring refused the key or the input).
    SignFailed(String),
}

impl StirError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            StirError::NoCertificate(_) => "no-stir-certificate",
            StirError::Expired(..) => "stir-certificate-expired",
            StirError::KeyNotP256(..) => "stir-key-not-p256",
            StirError::KeyMissing(_) => "stir-key-missing",
            StirError::BadTn(..) => "bad-tn",
            StirError::BadAttest(_) => "bad-attest",
            StirError::BadOrigid(_) => "bad-origid",
            StirError::NoX5uBase => "no-x5u-base",
            StirError::BadX5uBase(..) => "bad-x5u-base",
            StirError::SignFailed(_) => "sign-failed",
        }
    }
}

impl core::fmt::Display for StirError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StirError::NoCertificate(t) => write!(
                f,
                "tenant \"{t}\" has no STIR/SHAKEN certificate (import one with --kind stir-shaken)"
            ),
            StirError::Expired(id, when) => {
                write!(f, "the STIR/SHAKEN certificate {id} expired at {when}")
            }
            StirError::KeyNotP256(id, kind) => write!(
                f,
                "the STIR/SHAKEN certificate {id} has a {kind} key; ES256 (RFC 8225 §8) needs P-256"
            ),
            StirError::KeyMissing(id) => {
                write!(f, "the private key of STIR/SHAKEN certificate {id} is not in the store")
            }
            StirError::BadTn(tn, why) => write!(f, "\"{tn}\" is not a telephone number: {why}"),
            StirError::BadAttest(a) => {
                write!(f, "attestation \"{a}\" is not one of A, B, C (RFC 8588 §4)")
            }
            StirError::BadOrigid(o) => write!(f, "origid \"{o}\" is not a UUID"),
            StirError::NoX5uBase => f.write_str(
                "no x5u URL: set the system DNS name (`system set --dns`) or `stir-shaken set --x5u-base URL`",
            ),
            StirError::BadX5uBase(u, why) => write!(f, "x5u base \"{u}\" is not usable: {why}"),
            StirError::SignFailed(why) => write!(f, "signing failed: {why}"),
        }
    }
}

impl std::error::Error for StirError {}

/// Why a DNS operation failed. Codes are stable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// The server did not answer in time.
    Timeout(String),
    /// Socket or connection failure.
    Io(String),
    /// The answer is malformed, does not match the request, or its TSIG does
    /// not verify.
    BadResponse(String),
    /// The server rejected our TSIG signature (BADKEY, BADSIG, BADTIME).
    TsigRejected(String),
    /// An HTTP API rejected the credentials (401/403: bad token or missing
    /// permission).
    Unauthorized(String),
    /// The server refused the update (REFUSED or NOTAUTH: policy).
    Refused(String),
    /// Any other error RCODE.
    ServerError(String),
    /// The name is not inside the provider's zone.
    NotInZone(String, String),
    /// The TXT value did not appear on every server in time.
    NotPropagated(String),
    /// The stored or given configuration is unusable.
    BadConfig(String),
}

impl DnsError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            DnsError::Timeout(_) => "dns-timeout",
            DnsError::Io(_) => "dns-io",
            DnsError::BadResponse(_) => "dns-bad-response",
            DnsError::TsigRejected(_) => "dns-tsig-rejected",
            DnsError::Unauthorized(_) => "dns-unauthorized",
            DnsError::Refused(_) => "dns-refused",
            DnsError::ServerError(_) => "dns-server-error",
            DnsError::NotInZone(..) => "dns-not-in-zone",
            DnsError::NotPropagated(_) => "dns-not-propagated",
            DnsError::BadConfig(_) => "bad-dns-config",
        }
    }
}

impl core::fmt::Display for DnsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DnsError::Timeout(what) => write!(f, "no DNS answer in time: {what}"),
            DnsError::Io(e) => write!(f, "DNS connection failed: {e}"),
            DnsError::BadResponse(e) => write!(f, "unusable DNS answer: {e}"),
            DnsError::TsigRejected(e) => write!(
                f,
                "the DNS server rejected the TSIG signature ({e}): check key name, algorithm and secret"
            ),
            DnsError::Refused(e) => write!(f, "the DNS server refused the update: {e}"),
            DnsError::Unauthorized(e) => write!(
                f,
                "the DNS provider rejected the credentials ({e}): check the token and its permissions"
            ),
            DnsError::ServerError(e) => write!(f, "the DNS server answered with an error: {e}"),
            DnsError::NotInZone(name, zone) => write!(f, "{name} is not inside the zone {zone}"),
            DnsError::NotPropagated(e) => write!(f, "the TXT record did not propagate: {e}"),
            DnsError::BadConfig(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for DnsError {}

/// An error reported by the daemon, re-raised in the CLI with its code.
#[derive(Debug)]
pub struct RemoteError {
    /// The stable code.
    pub code: String,
    /// The message.
    pub message: String,
}

impl RemoteError {
    /// From the `{"error":{...}}` reply.
    pub fn from_json(v: &serde_json::Value) -> RemoteError {
        RemoteError {
            code: v["error"]["code"].as_str().unwrap_or("error").to_owned(),
            message: v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        }
    }
}
