//! ACME (RFC 8555): settings, the account, which names get certificates, and
//! the per-name-set status.
//!
//! Why: the appliance must "just get a certificate" and keep it valid. The
//! protocol (JWS, nonces, account, order objects; RFC 8555 §6–7) comes from
//! instant-acme on our own HTTP client (`http`, trusting exactly the Root CA
//! list); challenges are answered by the daemon itself: HTTP-01 (RFC 8555
//! §8.3) on the port-80 listener, TLS-ALPN-01 (RFC 8737 §3) on the HTTPS
//! listener, DNS-01 (RFC 8555 §8.4) through the stored DNS provider covering
//! the name (`crate::dns`: RFC 2136 + TSIG, RFC 8945). The flow of one
//! order is in `issue`, the renewal timer in `renew`.
//!
//! What must hold: uploaded certificates are never replaced; a failed order
//! never removes a served certificate; every outcome is kept in the store
//! (`acme status`) with a stable error code; settings are validated before
//! they are stored; secrets (EAB HMAC, account key) are never shown back.

use serde::{Deserialize, Serialize};

use crate::clock;
use crate::error::Error;
use crate::limits::{
    ACME_DEFAULT_CHECK_INTERVAL_SECS, ACME_DEFAULT_DIRECTORY, ACME_MAX_CHECK_INTERVAL_SECS,
    ACME_MAX_ERROR_LEN, ACME_MAX_PROFILE_LEN, ACME_MIN_CHECK_INTERVAL_SECS, ACME_RENEW_FRACTION,
    ACME_SHORT_LIVED_SECS, ACME_SHORT_RENEW_FRACTION,
};
use crate::model::ChallengeChoice;
use crate::model::Source;
use crate::pki::Kind;
use crate::store::{Batch, CertRecord, Store};

const SETTING_ACME: &str = crate::settings::Setting::Acme.name();
const SETTING_ACCOUNT: &str = crate::settings::Setting::AcmeAccount.name();
const STATUS_PREFIX: &str = crate::settings::Family::AcmeStatus.prefix();
const LEASE_PREFIX: &str = crate::settings::ACME_LEASE_PREFIX;

/// External Account Binding (RFC 8555 §7.3.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eab {
    /// Key identifier given by the CA.
    pub kid: String,
    /// HMAC key, base64url as the CA gives it (never shown back).
    pub hmac: String,
}

/// The ACME settings (`acme set`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcmeSettings {
    /// Directory URL (https).
    pub directory: String,
    /// Contact e-mail; `None`: the admin e-mail if set.
    pub email: Option<String>,
    /// Order certificates at all.
    pub enabled: bool,
    /// Challenge choice.
    pub challenge: ChallengeChoice,
    /// External Account Binding.
    pub eab: Option<Eab>,
    /// Seconds between renewal checks.
    pub check_interval: u64,
    /// ACME profile (draft-ietf-acme-profiles) named in every newOrder;
    /// `None`: the CA's default. Sent only when the directory lists it.
    #[serde(default)]
    pub profile: Option<String>,
}

impl Default for AcmeSettings {
    fn default() -> AcmeSettings {
        AcmeSettings {
            directory: ACME_DEFAULT_DIRECTORY.into(),
            email: None,
            enabled: false,
            challenge: ChallengeChoice::Auto,
            eab: None,
            check_interval: ACME_DEFAULT_CHECK_INTERVAL_SECS,
            profile: None,
        }
    }
}

/// A change from `acme set` (each field optional; also the body of
/// `POST /api/acme`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AcmeChange {
    /// New directory URL.
    pub directory: Option<String>,
    /// New e-mail, `none` clears.
    pub email: Option<String>,
    /// Enable or disable.
    pub enabled: Option<bool>,
    /// `auto|http-01|dns-01|tls-alpn-01`.
    pub challenge: Option<String>,
    /// EAB key ID (with `eab_hmac`).
    pub eab_kid: Option<String>,
    /// EAB HMAC key (with `eab_kid`).
    pub eab_hmac: Option<String>,
    /// Seconds between checks.
    pub check_interval: Option<u64>,
    /// ACME profile name, `none` clears (draft-ietf-acme-profiles).
    pub profile: Option<String>,
}

/// The stored account: its key (PKCS#8, base64) and, once registered, its URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAccount {
    /// The directory it belongs to.
    pub directory: String,
    /// ECDSA P-256 private key, PKCS#8 DER in base64.
    pub key_pkcs8: String,
    /// Account URL (RFC 8555 §7.3), when registered.
    pub id: Option<String>,
    /// The contact URLs the CA has for this account (sent at registration
    /// or by the last account update, RFC 8555 §7.3.2); `None`: unknown
    /// (an account stored before this was kept), so an update is sent.
    #[serde(default)]
    pub contact: Option<Vec<String>>,
}

/// The outcome of the last attempt for a name set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetStatus {
    /// `valid`, `pending` or `failed`.
    pub state: String,
    /// Code and message of the last failure.
    pub last_error: Option<ErrorInfo>,
    /// Unix seconds of the last attempt.
    pub last_attempt: Option<i64>,
    /// Unix seconds before which no new attempt is made (back-off).
    pub next_attempt: Option<i64>,
    /// Failures in a row.
    pub failures: u32,
    /// `cert reissue`: renew at the next check whatever the expiry.
    pub force: bool,
    /// RFC 9773: the CA's window for `ari_cert` and the time picked in it.
    #[serde(default)]
    pub ari: Option<AriChoice>,
    /// The certificate `ari` is about.
    #[serde(default)]
    pub ari_cert: Option<String>,
}

/// A stable code and a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// Stable code.
    pub code: String,
    /// Text for the admin.
    pub message: String,
}

/// Why an ACME operation failed (kept in the status; codes are stable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeError {
    /// Stable code: `rate-limited`, `ca-unreachable`, `tls-failed`,
    /// `validation-failed`, `timeout`, `account-does-not-exist`,
    /// `unauthorized`, `bad-nonce`, `ca-error`, `bad-response`,
    /// `no-challenge`, `no-dns-provider`, `import-failed`, `lease-held`,
    /// `store-error`, `internal`, and the DNS-01 provider's codes
    /// (`crate::dns::DnsError::code`: `dns-tsig-rejected`, ...).
    pub code: &'static str,
    /// Text for the admin.
    pub message: String,
    /// The CA's `Retry-After` in seconds, when it sent one with the error
    /// (RFC 8555 §6.6: rate limits).
    pub retry_after: Option<u64>,
}

impl AcmeError {
    /// An error with this code.
    pub fn new(code: &'static str, message: impl Into<String>) -> AcmeError {
        let mut message: String = message.into();
        if message.len() > ACME_MAX_ERROR_LEN {
            let mut end = ACME_MAX_ERROR_LEN;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        AcmeError {
            code,
            message,
            retry_after: None,
        }
    }

    /// Is this the CA saying the nonce was bad (retry with a fresh one)?
    pub fn is_bad_nonce(&self) -> bool {
        self.code == "bad-nonce"
    }
}

impl core::fmt::Display for AcmeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<instant_acme::Error> for AcmeError {
    fn from(e: instant_acme::Error) -> AcmeError {
        use instant_acme::Error as E;
        match e {
            E::Api(p) => {
                let kind = p
                    .r#type
                    .as_deref()
                    .and_then(|t| t.strip_prefix("urn:ietf:params:acme:error:"))
                    .unwrap_or("");
                let code = match kind {
                    "rateLimited" => "rate-limited",
                    "badNonce" => "bad-nonce",
                    "accountDoesNotExist" => "account-does-not-exist",
                    "unauthorized" | "caa" | "dns" | "connection" | "incorrectResponse" | "tls" => {
                        "validation-failed"
                    }
                    "externalAccountRequired" => "eab-required",
                    _ => "ca-error",
                };
                let mut message = format!(
                    "the CA refused: {} ({})",
                    p.detail.as_deref().unwrap_or("no detail"),
                    p.r#type.as_deref().unwrap_or("no type")
                );
                for sub in &p.subproblems {
                    message.push_str(&format!(
                        "; {}",
                        sub.detail.as_deref().unwrap_or("(no detail)")
                    ));
                }
                AcmeError::new(code, message)
            }
            E::Other(inner) => match inner.downcast::<crate::outbound::HttpError>() {
                Ok(h) => {
                    let code = match *h {
                        crate::outbound::HttpError::Connect(_) => "ca-unreachable",
                        crate::outbound::HttpError::Tls(_) => "tls-failed",
                        crate::outbound::HttpError::Timeout => "timeout",
                        _ => "bad-response",
                    };
                    AcmeError::new(code, format!("ACME server: {h}"))
                }
                Err(other) => AcmeError::new("bad-response", other.to_string()),
            },
            E::Json(j) => AcmeError::new("bad-response", format!("ACME server sent bad JSON: {j}")),
            E::Timeout(_) => AcmeError::new("timeout", "the CA did not finish in time"),
            other => AcmeError::new("ca-error", other.to_string()),
        }
    }
}

impl From<crate::store::StoreError> for AcmeError {
    fn from(e: crate::store::StoreError) -> AcmeError {
        AcmeError::new("store-error", e.to_string())
    }
}

/// A set of names that gets one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `system` or `tenant:NAME`.
    pub key: String,
    /// Owner (domain certificate) or `None` (server certificate).
    pub tenant: Option<String>,
    /// Names (normalised).
    pub names: Vec<String>,
    /// The tenant's challenge choice; `None` follows `acme set --challenge`.
    pub challenge: Option<ChallengeChoice>,
    /// Key type of the certificate (P-256 unless the tenant chose RSA).
    pub key_type: crate::model::KeyType,
    /// The name set's own ACME profile; `None` follows `acme set --profile`.
    pub profile: Option<String>,
}

impl Target {
    /// The kind the certificate is imported as.
    pub fn kind(&self) -> Kind {
        if self.tenant.is_some() {
            Kind::Domain
        } else {
            Kind::Server
        }
    }
}

/// The window the CA suggested and the time we picked in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AriChoice {
    /// Window start (Unix seconds).
    pub start: i64,
    /// Window end (Unix seconds).
    pub end: i64,
    /// The renewal time picked uniformly in [start, end].
    pub at: i64,
}

/// The stored settings (defaults when never set).
pub fn settings(store: &Store) -> Result<AcmeSettings, Error> {
    match store.setting(SETTING_ACME)? {
        Some(raw) => serde_json::from_slice(&raw)
            .map_err(|e| crate::store::StoreError::Corrupt(e.to_string()).into()),
        None => Ok(AcmeSettings::default()),
    }
}

/// The stored account, if any.
pub fn account(store: &Store) -> Result<Option<StoredAccount>, Error> {
    match store.setting(SETTING_ACCOUNT)? {
        Some(raw) => serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|e| crate::store::StoreError::Corrupt(e.to_string()).into()),
        None => Ok(None),
    }
}

/// Store the account.
pub fn put_account(store: &Store, account: &StoredAccount) -> Result<(), Error> {
    let mut batch = Batch::default();
    batch.put_setting(
        SETTING_ACCOUNT,
        &serde_json::to_vec(account).unwrap_or_default(),
    );
    Ok(store.commit(batch)?)
}

fn bad(what: &str, why: impl core::fmt::Display) -> Error {
    Error::BadSetting(format!("{what}: {why}"))
}

/// `acme set`.
pub fn set(store: &Store, change: &AcmeChange) -> Result<AcmeSettings, Error> {
    let mut s = settings(store)?;
    if let Some(dir) = &change.directory {
        let url = crate::outbound::Url::parse(dir).map_err(|e| bad("--directory", e))?;
        if !url.tls {
            return Err(bad(
                "--directory",
                "an ACME directory is an https:// URL (RFC 8555 §6.1)",
            ));
        }
        s.directory = dir.clone();
    }
    if let Some(email) = &change.email {
        s.email = match email.as_str() {
            "none" | "" => None,
            e => {
                if !crate::model::valid_email(e) {
                    return Err(Error::BadEmail(e.to_owned()));
                }
                Some(e.to_owned())
            }
        };
    }
    if let Some(enabled) = change.enabled {
        s.enabled = enabled;
    }
    if let Some(ch) = &change.challenge {
        s.challenge = ch
            .parse::<ChallengeChoice>()
            .map_err(|e| bad("--challenge", e))?;
    }
    match (&change.eab_kid, &change.eab_hmac) {
        (Some(kid), Some(hmac)) if kid == "none" => {
            let _ = hmac;
            s.eab = None;
        }
        (Some(kid), Some(hmac)) => {
            use base64ct::{Base64UrlUnpadded, Encoding};
            let trimmed = hmac.trim_end_matches('=');
            if kid.is_empty()
                || Base64UrlUnpadded::decode_vec(trimmed).map_or(true, |k| k.is_empty())
            {
                return Err(bad(
                    "--eab-hmac",
                    "expected the base64url HMAC key the CA gave",
                ));
            }
            s.eab = Some(Eab {
                kid: kid.clone(),
                hmac: trimmed.to_owned(),
            });
        }
        (None, None) => {}
        _ => return Err(bad("--eab-kid/--eab-hmac", "give both, or neither")),
    }
    if let Some(secs) = change.check_interval {
        if !(ACME_MIN_CHECK_INTERVAL_SECS..=ACME_MAX_CHECK_INTERVAL_SECS).contains(&secs) {
            return Err(bad(
                "--check-interval",
                format!("between {ACME_MIN_CHECK_INTERVAL_SECS} and {ACME_MAX_CHECK_INTERVAL_SECS} seconds"),
            ));
        }
        s.check_interval = secs;
    }
    if let Some(p) = &change.profile {
        s.profile = parse_profile(p, "--profile")?;
    }
    let old = settings(store)?;
    let mut batch = Batch::default();
    batch.put_setting(SETTING_ACME, &serde_json::to_vec(&s).unwrap_or_default());
    if old.directory != s.directory || old.eab != s.eab {
        // Another CA (or binding): the next order registers afresh.
        batch.delete_setting(SETTING_ACCOUNT);
    }
    store.commit(batch)?;
    Ok(s)
}

/// `acme show`.
pub fn show(store: &Store) -> Result<AcmeView, Error> {
    let s = settings(store)?;
    let system = store.system()?;
    let account_record = account(store)?.filter(|a| a.directory == s.directory);
    let account = |state: &str, url: Option<String>| AccountView {
        state: state.to_owned(),
        url,
    };
    Ok(AcmeView {
        contact: contact(&s, &system).map(|c| c.trim_start_matches("mailto:").to_owned()),
        directory: s.directory,
        email: s.email,
        enabled: s.enabled,
        challenge: s.challenge,
        eab_kid: s.eab.as_ref().map(|e| e.kid.clone()),
        eab_hmac: s.eab.as_ref().map(|_| "********".to_owned()),
        check_interval: s.check_interval,
        profile: s.profile,
        account: match account_record {
            Some(StoredAccount { id: Some(id), .. }) => account("registered", Some(id)),
            Some(_) => account("key-only", None),
            None => account("none", None),
        },
    })
}

/// `acme show --json`: the settings (the EAB HMAC masked) and the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcmeView {
    /// Directory URL.
    pub directory: String,
    /// The ACME contact e-mail, if set.
    pub email: Option<String>,
    /// The contact used (the ACME e-mail, else the admin e-mail).
    pub contact: Option<String>,
    /// Orders run automatically.
    pub enabled: bool,
    /// The global challenge choice.
    pub challenge: ChallengeChoice,
    /// The EAB key ID, if bound.
    pub eab_kid: Option<String>,
    /// `********` when an EAB HMAC is stored (never the key).
    pub eab_hmac: Option<String>,
    /// Seconds between renewal checks.
    pub check_interval: u64,
    /// The ACME profile asked for in every order (`None`: the CA's default).
    pub profile: Option<String>,
    /// The account at this directory.
    pub account: AccountView,
}

/// The ACME account's state: `registered` (with its URL), `key-only`, `none`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    /// `registered`, `key-only` or `none`.
    pub state: String,
    /// The account URL once registered.
    pub url: Option<String>,
}

/// One `acme status --json` row: a name set's renewal state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRow {
    /// The name set's key (`system`, `tenant:NAME`).
    pub key: String,
    /// The tenant, for a tenant's set.
    pub tenant: Option<String>,
    /// Its DNS names.
    pub names: Vec<String>,
    /// `valid`, `pending`, `failed`, or `off` (ACME disabled and no valid
    /// certificate: nothing will be ordered).
    pub state: String,
    /// The certificate serving it now.
    pub cert_id: Option<String>,
    /// That certificate's expiry (RFC 3339).
    pub not_after: Option<String>,
    /// The last failure.
    pub last_error: Option<ErrorInfo>,
    /// Failures in a row.
    pub failures: u32,
    /// RFC 3339.
    pub last_attempt: Option<String>,
    /// RFC 3339.
    pub next_attempt: Option<String>,
}

/// `cert reissue --json`: the name set marked for renewal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reissued {
    /// Always true.
    pub ok: bool,
    /// The name set's key.
    pub key: String,
    /// Its DNS names.
    pub names: Vec<String>,
}

/// The contact URL: the ACME e-mail, else the admin e-mail.
pub fn contact(s: &AcmeSettings, system: &crate::model::SystemSettings) -> Option<String> {
    s.email
        .clone()
        .or_else(|| system.admin_email.clone())
        .map(|e| format!("mailto:{e}"))
}

/// Is `name` covered by a valid uploaded server/domain certificate?
fn uploaded_covers(certs: &[CertRecord], name: &str, now: i64) -> bool {
    certs.iter().any(|c| {
        c.source == Source::Upload
            && matches!(c.kind, Kind::Server | Kind::Domain)
            && c.not_before <= now
            && now < c.not_after
            && c.names.iter().any(|n| crate::names::covers(n, name))
    })
}

/// The name sets that get ACME certificates (whether or not ACME is enabled):
/// each tenant's DNS names and IP addresses (RFC 8738) without a valid uploaded certificate (one
/// certificate per tenant), and the system DNS name, with `*.NAME` as well
/// when a DNS provider covers it and the challenge choice allows DNS-01
/// (wildcards can only be validated by DNS-01, RFC 8555 §7.1.3).
pub fn targets(store: &Store) -> Result<Vec<Target>, Error> {
    let certs = store.certs()?;
    let now = clock::now();
    let mut out = Vec::new();
    if let Some(dns) = store.system()?.dns {
        if !uploaded_covers(&certs, &dns, now) {
            let mut names = vec![dns.clone()];
            let dns01 = matches!(
                settings(store)?.challenge,
                ChallengeChoice::Auto | ChallengeChoice::Dns01
            );
            if dns01 && crate::dns::provider_for(store, &dns)?.is_some() {
                names.push(format!("*.{dns}"));
            }
            out.push(Target {
                key: "system".into(),
                tenant: None,
                names,
                challenge: None,
                key_type: crate::model::KeyType::P256,
                profile: None,
            });
        }
    }
    for t in store.tenants()? {
        let names: Vec<String> = t
            .names()
            .filter(|n| !uploaded_covers(&certs, n, now))
            .cloned()
            .collect();
        if !names.is_empty() {
            out.push(Target {
                key: format!("tenant:{}", t.name),
                tenant: Some(t.name.clone()),
                names,
                challenge: t.acme_challenge,
                key_type: t.acme_key_type.unwrap_or(crate::model::KeyType::P256),
                profile: t.acme_profile.clone(),
            });
        }
    }
    Ok(out)
}

/// The newest ACME certificate serving exactly this target's names.
pub fn current_cert(store: &Store, target: &Target) -> Result<Option<CertRecord>, Error> {
    let mut want = target.names.clone();
    want.sort();
    Ok(store
        .certs()?
        .into_iter()
        .filter(|c| {
            let mut names = c.names.clone();
            names.sort();
            c.source == Source::Acme && c.tenant == target.tenant && names == want
        })
        .max_by_key(|c| c.not_after))
}

/// When a certificate is renewed by the lifetime rule: when less than 1/3
/// of its lifetime is left, or 1/2 for certificates living under 10 days
/// (short-lived profiles).
pub fn renew_time(c: &CertRecord) -> i64 {
    let life = (c.not_after - c.not_before).max(0);
    let fraction = if life < ACME_SHORT_LIVED_SECS {
        ACME_SHORT_RENEW_FRACTION
    } else {
        ACME_RENEW_FRACTION
    };
    c.not_after - life / fraction
}

/// Renewal due by the lifetime rule: no certificate, or `renew_time` reached.
pub fn due(cert: Option<&CertRecord>, now: i64) -> bool {
    cert.is_none_or(|c| now >= renew_time(c))
}

/// The one clock of the renewal loop: the Unix time at which the next order
/// for a name set is made (`i64::MIN`: at once). The renewal time (the ARI
/// pick for the current certificate, else `renew_time`; at once without a
/// certificate or when forced), but not before the back-off of a failure.
/// The loop orders when `now >= attempt_at`, sleeps until the earliest
/// `attempt_at`, and `acme status` shows it as `next_attempt`.
pub fn attempt_at(st: &SetStatus, cert: Option<&CertRecord>) -> i64 {
    let renew = match cert {
        _ if st.force => st.next_attempt.unwrap_or(i64::MIN),
        None => i64::MIN,
        Some(c) => {
            let ari = st
                .ari
                .filter(|_| st.ari_cert.as_deref() == Some(c.id.as_str()))
                .map_or(i64::MAX, |a| a.at);
            renew_time(c).min(ari)
        }
    };
    match st.next_attempt {
        Some(n) if st.failures > 0 => renew.max(n),
        _ => renew,
    }
}

/// The earliest `attempt_at` over all name sets (`None`: no name sets).
pub fn next_due(store: &Store) -> Result<Option<i64>, Error> {
    let mut earliest = None;
    for t in targets(store)? {
        let st = status(store, &t.key)?;
        let at = attempt_at(&st, current_cert(store, &t)?.as_ref());
        earliest = Some(earliest.map_or(at, |e: i64| e.min(at)));
    }
    Ok(earliest)
}

/// A change that can cure failures happened (Root CA list, DNS provider,
/// ACME or tenant settings): the back-off of every failed name set ends now,
/// except where the CA itself asked to wait (`rate-limited`, RFC 8555 §6.6).
/// Simplest honest rule: all failed sets, not only those the change could
/// cure (telling which could is guessing). Returns how many were cleared.
pub fn clear_backoffs(store: &Store) -> Result<usize, Error> {
    let now = clock::now();
    let mut cleared = 0;
    for t in targets(store)? {
        let mut st = status(store, &t.key)?;
        let rate_limited = st
            .last_error
            .as_ref()
            .is_some_and(|e| e.code == "rate-limited");
        if st.failures > 0 && !rate_limited && st.next_attempt.is_some_and(|n| n > now) {
            st.next_attempt = Some(now);
            put_status(store, &t.key, &st)?;
            cleared += 1;
        }
    }
    Ok(cleared)
}

/// A profile name as `acme set --profile` / `tenant set --acme-profile`
/// take it: `none` (or `default`, or empty) clears it.
pub fn parse_profile(raw: &str, what: &str) -> Result<Option<String>, Error> {
    match raw {
        "none" | "default" | "" => Ok(None),
        p if p.len() <= ACME_MAX_PROFILE_LEN
            && p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) =>
        {
            Ok(Some(p.to_owned()))
        }
        _ => Err(bad(
            what,
            format!(
                "a profile name is 1 to {ACME_MAX_PROFILE_LEN} letters, digits, '-', '_' or '.' (or none)"
            ),
        )),
    }
}

/// The stored status of a name set.
pub fn status(store: &Store, key: &str) -> Result<SetStatus, Error> {
    match store.setting(&format!("{STATUS_PREFIX}{key}"))? {
        Some(raw) => Ok(serde_json::from_slice(&raw).unwrap_or_default()),
        None => Ok(SetStatus::default()),
    }
}

/// Store the status of a name set.
pub fn put_status(store: &Store, key: &str, status: &SetStatus) -> Result<(), Error> {
    let mut batch = Batch::default();
    batch.put_setting(
        &format!("{STATUS_PREFIX}{key}"),
        &serde_json::to_vec(status).unwrap_or_default(),
    );
    Ok(store.commit(batch)?)
}

/// `acme status`: one entry per name set.
pub fn status_report(store: &Store) -> Result<Vec<StatusRow>, Error> {
    let now = clock::now();
    let enabled = settings(store)?.enabled;
    let mut out = Vec::new();
    for t in targets(store)? {
        let st = status(store, &t.key)?;
        let cert = current_cert(store, &t)?;
        let ari_due = st
            .ari
            .filter(|_| st.ari_cert.is_some() && st.ari_cert == cert.as_ref().map(|c| c.id.clone()))
            .map(|a| a.at);
        let valid = cert.is_some()
            && !st.force
            && !due(cert.as_ref(), now)
            && ari_due.is_none_or(|at| now < at);
        let state = if !enabled && !valid {
            // Nothing is ordered while ACME is off: not "pending".
            "off"
        } else if st.failures > 0 {
            "failed"
        } else if valid {
            "valid"
        } else {
            "pending"
        };
        // The loop's own clock (`attempt_at`); `null`: at the next pass.
        let next = Some(attempt_at(&st, cert.as_ref())).filter(|&at| at != i64::MIN && enabled);
        out.push(StatusRow {
            key: t.key,
            tenant: t.tenant,
            names: t.names,
            state: state.to_owned(),
            cert_id: cert.as_ref().map(|c| c.id.clone()),
            not_after: cert.as_ref().map(|c| clock::rfc3339(c.not_after)),
            last_error: st.last_error,
            failures: st.failures,
            last_attempt: st.last_attempt.map(clock::rfc3339),
            next_attempt: next.map(clock::rfc3339),
        });
    }
    Ok(out)
}

/// `cert reissue ID`: mark the name set of this certificate for renewal at
/// the next check (the daemon is woken when it runs).
pub fn reissue(store: &Store, id: &str) -> Result<Reissued, Error> {
    let record = store
        .cert(id)?
        .ok_or_else(|| Error::NotFound(id.to_owned()))?;
    if !settings(store)?.enabled {
        return Err(Error::AcmeDisabled);
    }
    if record.source == Source::Upload {
        return Err(Error::NotAcmeManaged(format!(
            "certificate {id} was uploaded; ACME never replaces uploaded certificates"
        )));
    }
    let target = targets(store)?
        .into_iter()
        .find(|t| {
            manages(
                t.tenant.as_deref(),
                &t.names,
                record.source,
                record.tenant.as_deref(),
                &record.names,
            )
        })
        .ok_or_else(|| {
            Error::NotAcmeManaged(format!(
                "certificate {id} covers no tenant or system name that ACME manages"
            ))
        })?;
    requeue(store, target)
}

/// Whether the name set (its tenant and names, as `acme status` lists
/// them) is the one ACME renews a certificate for: the certificate is not
/// uploaded, belongs to the same tenant (none for the system set) and covers
/// one of the set's names. `cert reissue` and the Certificates page (its
/// Reissue button, the set's last error) both ask this.
pub fn manages(
    set_tenant: Option<&str>,
    set_names: &[String],
    source: Source,
    cert_tenant: Option<&str>,
    cert_names: &[String],
) -> bool {
    source != Source::Upload
        && set_tenant == cert_tenant
        && cert_names
            .iter()
            .any(|n| set_names.iter().any(|m| crate::names::covers(n, m)))
}

/// `acme retry KEY`: order the name set again now (a failed one's back-off
/// ends; the daemon is woken when it runs). `KEY` as `acme status` lists it
/// (`system`, `tenant:NAME`).
pub fn retry(store: &Store, key: &str) -> Result<Reissued, Error> {
    if !settings(store)?.enabled {
        return Err(Error::AcmeDisabled);
    }
    let target = targets(store)?
        .into_iter()
        .find(|t| t.key == key)
        .ok_or_else(|| {
            Error::NotAcmeManaged(format!(
                "no ACME name set \"{key}\" (acme status lists them: system, tenant:NAME)"
            ))
        })?;
    requeue(store, target)
}

/// Mark a name set for an order at the next check, whatever its expiry or
/// back-off.
fn requeue(store: &Store, target: Target) -> Result<Reissued, Error> {
    let mut st = status(store, &target.key)?;
    st.force = true;
    st.next_attempt = Some(clock::now());
    put_status(store, &target.key, &st)?;
    Ok(Reissued {
        ok: true,
        key: target.key,
        names: target.names,
    })
}

/// A challenge answer published in a shared store (`Tree::Challenges`) so
/// that every node answers for an order any node runs (RFC 8555 §8.3: the
/// CA may reach any node behind the name; RFC 8737 §3 likewise).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeRecord {
    /// The ordering node (`ops::node_id`).
    pub node: String,
    /// Unix seconds after which no node answers it (the order is over or
    /// its node died).
    pub expires: i64,
    /// What to answer.
    pub answer: ChallengeAnswer,
}

/// The answer of a published challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum ChallengeAnswer {
    /// HTTP-01: the key authorization served at
    /// `/.well-known/acme-challenge/TOKEN`.
    Http01 {
        token: String,
        key_authorization: String,
    },
    /// TLS-ALPN-01: the SNI name (a reverse-DNS name for an IP, RFC 8738
    /// §6), the name the certificate carries, and the key authorization
    /// whose SHA-256 goes in its acmeIdentifier extension. Each node makes
    /// its own certificate from them (`alpn_cert`): no key crosses the store.
    TlsAlpn01 {
        sni: String,
        name: String,
        key_authorization: String,
    },
}

/// The `Tree::Challenges` key of an HTTP-01 answer.
pub fn http_challenge_key(token: &str) -> String {
    format!("http:{token}")
}

/// The `Tree::Challenges` key of a TLS-ALPN-01 answer.
pub fn alpn_challenge_key(sni: &str) -> String {
    format!("alpn:{sni}")
}

impl ChallengeRecord {
    /// Its key in `Tree::Challenges`.
    pub fn key(&self) -> String {
        match &self.answer {
            ChallengeAnswer::Http01 { token, .. } => http_challenge_key(token),
            ChallengeAnswer::TlsAlpn01 { sni, .. } => alpn_challenge_key(sni),
        }
    }

    /// A stored record still in its time at `now` (`None`: unreadable or
    /// over).
    fn live(value: &[u8], now: i64) -> Option<ChallengeRecord> {
        serde_json::from_slice::<ChallengeRecord>(value)
            .ok()
            .filter(|r| r.expires > now)
    }
}

/// Publish a challenge answer (a shared store's nodes all answer it), and
/// drop published answers whose time is over.
pub fn publish_challenge(store: &Store, record: &ChallengeRecord) -> Result<(), Error> {
    let kv = store.kv();
    let now = clock::now();
    let mut ops = Vec::new();
    for (key, value) in kv.scan_prefix(crate::store::Tree::Challenges, b"")? {
        if ChallengeRecord::live(&value, now).is_none() {
            ops.push(crate::store::Op::Delete(
                crate::store::Tree::Challenges,
                key,
            ));
        }
    }
    let value = serde_json::to_vec(record).map_err(|e| Error::BadSetting(e.to_string()))?;
    ops.push(crate::store::Op::Put(
        crate::store::Tree::Challenges,
        record.key().into_bytes(),
        value,
    ));
    Ok(kv.apply(&ops)?)
}

/// Withdraw a published answer (its key, `ChallengeRecord::key`).
pub fn withdraw_challenge(store: &Store, key: &str) -> Result<(), Error> {
    Ok(store
        .kv()
        .delete(crate::store::Tree::Challenges, key.as_bytes())?)
}

/// The published answers still in their time (unreadable records skipped).
pub fn live_challenges(store: &Store) -> Result<Vec<ChallengeRecord>, Error> {
    let now = clock::now();
    Ok(store
        .kv()
        .scan_prefix(crate::store::Tree::Challenges, b"")?
        .into_iter()
        .filter_map(|(_, v)| ChallengeRecord::live(&v, now))
        .collect())
}

/// The TLS-ALPN-01 certificate (RFC 8737 §3): self-signed, the name as its
/// only SAN (an IP name as an iPAddress SAN, RFC 8738 §6), the critical
/// acmeIdentifier extension with SHA-256 of the key authorization, a fresh
/// P-256 key.
pub fn alpn_cert(
    name: &str,
    digest: &[u8],
) -> Result<std::sync::Arc<rustls::sign::CertifiedKey>, AcmeError> {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let internal = |e: String| AcmeError::new("internal", e);
    let key = rcgen::KeyPair::generate().map_err(|e| internal(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()])
        .map_err(|e| internal(e.to_string()))?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params
        .self_signed(&key)
        .map_err(|e| internal(e.to_string()))?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signer = rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|e| internal(e.to_string()))?;
    Ok(std::sync::Arc::new(rustls::sign::CertifiedKey::new(
        vec![cert.der().clone()],
        signer,
    )))
}

/// Take the named lease for a name set (a `Tree::Leases` record that a
/// clustered store shares between nodes), by compare-and-swap: of two
/// contenders exactly one wins. `Ok(false)`: another holder has it.
pub fn take_lease(store: &Store, key: &str, holder: &str, secs: i64) -> Result<bool, Error> {
    Ok(store.kv().lease_acquire(
        lease_name(key).as_bytes(),
        holder.as_bytes(),
        lease_ttl(secs),
    )?)
}

/// The `Tree::Leases` name of a name set's ordering lease.
fn lease_name(key: &str) -> String {
    format!("{LEASE_PREFIX}{key}")
}

/// A lease lifetime in seconds as a `Duration` (negative: already over).
fn lease_ttl(secs: i64) -> std::time::Duration {
    std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// Extend our lease for a name set to `secs` from now; `Ok(false)`: it
/// lapsed or is not ours any more.
pub fn keep_lease(store: &Store, key: &str, holder: &str, secs: i64) -> Result<bool, Error> {
    Ok(store.kv().lease_keep_alive(
        lease_name(key).as_bytes(),
        holder.as_bytes(),
        lease_ttl(secs),
    )?)
}

/// Release the lease if we hold it.
pub fn release_lease(store: &Store, key: &str, holder: &str) -> Result<(), Error> {
    Ok(store
        .kv()
        .lease_release(lease_name(key).as_bytes(), holder.as_bytes())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_at_one_third_of_lifetime() {
        let rec = |nb: i64, na: i64| CertRecord {
            id: String::new(),
            kind: Kind::Server,
            tenant: None,
            names: vec![],
            subject: String::new(),
            issuer: String::new(),
            not_before: nb,
            not_after: na,
            source: Source::Acme,
            key_type: String::new(),
            eku: vec!["server-auth".into()],
            key_id: String::new(),
            seq: 0,
        };
        let day = crate::clock::DAY;
        let c = rec(0, 90 * day);
        assert!(!due(Some(&c), 60 * day - 1));
        assert!(due(Some(&c), 60 * day));
        assert!(due(None, 0));
        // Short-lived (6 days, under 10): renewed at half the lifetime.
        let short = rec(0, 6 * day);
        assert_eq!(renew_time(&short), 3 * day);
        assert!(!due(Some(&short), 3 * day - 1));
        assert!(due(Some(&short), 3 * day));
    }

    #[test]
    fn the_next_attempt_is_the_renewal_time_but_not_before_the_back_off() {
        let day = crate::clock::DAY;
        let c = CertRecord {
            id: "c1".into(),
            kind: Kind::Server,
            tenant: None,
            names: vec![],
            subject: String::new(),
            issuer: String::new(),
            not_before: 0,
            not_after: 90 * day,
            source: Source::Acme,
            key_type: String::new(),
            eku: vec!["server-auth".into()],
            key_id: String::new(),
            seq: 0,
        };
        let mut st = SetStatus::default();
        assert_eq!(attempt_at(&st, None), i64::MIN, "no certificate: at once");
        assert_eq!(attempt_at(&st, Some(&c)), 60 * day);
        st.ari = Some(AriChoice {
            start: day,
            end: 2 * day,
            at: day + 5,
        });
        assert_eq!(attempt_at(&st, Some(&c)), 60 * day, "ARI of another cert");
        st.ari_cert = Some("c1".into());
        assert_eq!(attempt_at(&st, Some(&c)), day + 5, "ARI pick wins");
        st.failures = 2;
        st.next_attempt = Some(day + 100);
        assert_eq!(attempt_at(&st, Some(&c)), day + 100, "back-off");
        assert_eq!(attempt_at(&st, None), day + 100, "back-off without cert");
        st.failures = 0;
        assert_eq!(
            attempt_at(&st, Some(&c)),
            day + 5,
            "no failure: no back-off"
        );
    }

    #[test]
    fn a_cure_clears_back_offs_but_not_rate_limits() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::ops::open_store(dir.path()).unwrap();
        crate::ops::execute(
            &store,
            &crate::ops::Command::SystemSet {
                dns: Some("sys.example.com".into()),
                admin_email: None,
                default_cert: None,
                aia_fetch: None,
            },
        )
        .unwrap();
        let later = clock::now() + 3600;
        let failed = |code: &str| SetStatus {
            state: "failed".into(),
            failures: 1,
            next_attempt: Some(later),
            last_error: Some(ErrorInfo {
                code: code.into(),
                message: String::new(),
            }),
            ..SetStatus::default()
        };
        put_status(&store, "system", &failed("rate-limited")).unwrap();
        assert_eq!(clear_backoffs(&store).unwrap(), 0);
        assert_eq!(status(&store, "system").unwrap().next_attempt, Some(later));
        put_status(&store, "system", &failed("tls-failed")).unwrap();
        assert_eq!(clear_backoffs(&store).unwrap(), 1);
        let st = status(&store, "system").unwrap();
        assert!(st.next_attempt.unwrap() <= clock::now());
        assert_eq!(st.failures, 1, "the failure count stays");
        assert!(next_due(&store).unwrap().unwrap() <= clock::now());
    }

    #[test]
    fn profile_names_are_checked() {
        assert_eq!(parse_profile("none", "x").unwrap(), None);
        assert_eq!(parse_profile("default", "x").unwrap(), None);
        assert_eq!(
            parse_profile("shortlived", "x").unwrap().as_deref(),
            Some("shortlived")
        );
        assert!(parse_profile("a b", "x").is_err());
        assert!(parse_profile(&"a".repeat(ACME_MAX_PROFILE_LEN + 1), "x").is_err());
    }

    #[test]
    fn a_lease_is_taken_once_until_released_or_stale() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::ops::open_store(dir.path()).unwrap();
        assert!(take_lease(&store, "system", "node-a", 600).unwrap());
        assert!(
            take_lease(&store, "system", "node-a", 600).unwrap(),
            "re-entrant"
        );
        assert!(!take_lease(&store, "system", "node-b", 600).unwrap());
        assert!(
            take_lease(&store, "tenant:x", "node-b", 600).unwrap(),
            "per name set"
        );
        release_lease(&store, "system", "node-b").unwrap(); // not its lease: no effect
        assert!(!take_lease(&store, "system", "node-b", 600).unwrap());
        release_lease(&store, "system", "node-a").unwrap();
        assert!(take_lease(&store, "system", "node-b", 600).unwrap());
        // A holder that died: its lease expires.
        assert!(take_lease(&store, "stale", "node-a", -1).unwrap());
        assert!(take_lease(&store, "stale", "node-b", 600).unwrap());
    }

    #[test]
    fn problem_types_map_to_codes() {
        let p = |t: &str| {
            instant_acme::Error::Api(instant_acme::Problem {
                r#type: Some(format!("urn:ietf:params:acme:error:{t}")),
                detail: Some("d".into()),
                status: Some(400),
                subproblems: vec![],
            })
        };
        assert_eq!(AcmeError::from(p("rateLimited")).code, "rate-limited");
        assert_eq!(AcmeError::from(p("badNonce")).code, "bad-nonce");
        assert_eq!(
            AcmeError::from(p("accountDoesNotExist")).code,
            "account-does-not-exist"
        );
        assert_eq!(
            AcmeError::from(p("incorrectResponse")).code,
            "validation-failed"
        );
        assert_eq!(AcmeError::from(p("weird")).code, "ca-error");
        let long = AcmeError::new("x", "é".repeat(ACME_MAX_ERROR_LEN));
        assert!(long.message.len() <= ACME_MAX_ERROR_LEN);
    }
}
