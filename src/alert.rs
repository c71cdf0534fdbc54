//! Alerts: when the administrator must be told, the channel settings, and
//! what was already sent (issue 11, "Alerts").
//!
//! Why: "certificates stay valid without me, and when they cannot, I am
//! told". ACME cannot renew an uploaded certificate, a CA can keep failing,
//! and a bundled Root CA list can be newer than the store's; each of these
//! must reach the admin once, not every check, and not again after a
//! restart.
//!
//! The rules (`evaluate`), each an alert with a stable key (the key names
//! the event and the threshold, so each is sent once):
//! - `cert-expiring`: a served certificate (uploaded ones too) is 30, 14, 7
//!   or 1 days from expiry (`limits::ALERT_EXPIRY_DAYS`; only the nearest
//!   threshold reached is open, key `expiring:ID:DAYS`);
//! - `cert-expired`: a certificate expired while still served;
//! - `renewal-failing`: an ACME name set failed `failures` times in a row
//!   (default 3), or failed at all with under 7 days of validity left;
//! - `roots-outdated`: the store's Root CA list is older than the bundled one.
//!
//! The sender (layer 7, `crate::notify`) keeps one `Delivery` record per open
//! alert in the store (`Family::AlertSent`): per channel, when it was sent or
//! when to retry (exponential back-off from `ALERT_RETRY_FIRST_SECS` up to
//! `ALERT_RETRY_MAX_SECS`). A record whose alert is no longer open is removed,
//! so the same event can alert again after it was cured.
//!
//! What must hold: secrets (SMTP password, webhook secret) are never shown
//! back (`show` masks them); settings are validated before they are stored;
//! the webhook is HTTPS only (its receiver is verified against the Root CA
//! list, like every outgoing connection).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock;
use crate::error::Error;
use crate::limits::{
    ALERT_DEFAULT_FAILURES, ALERT_EXPIRY_DAYS, ALERT_FAILURE_VALIDITY_SECS, ALERT_MAX_SETTING_LEN,
    ALERT_RETRY_FIRST_SECS, ALERT_RETRY_MAX_SECS,
};
use crate::model::Source;
use crate::pki::Kind;
use crate::store::{Batch, CertRecord, Store, StoreError};

const SETTING_ALERTS: &str = crate::settings::Setting::Alerts.name();
const SENT: crate::settings::Family = crate::settings::Family::AlertSent;

/// How the SMTP connection is secured (plain text is never used: AUTH and
/// alert contents must not cross the network in clear).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SmtpTls {
    /// Submission (port 587): plain connect, then STARTTLS (RFC 3207).
    #[default]
    Starttls,
    /// Implicit TLS (port 465, RFC 8314 §3.3).
    Implicit,
}

impl SmtpTls {
    /// The word `alert set --smtp-tls` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpTls::Starttls => "starttls",
            SmtpTls::Implicit => "implicit",
        }
    }
}

impl std::str::FromStr for SmtpTls {
    type Err = Error;

    fn from_str(s: &str) -> Result<SmtpTls, Error> {
        match s {
            "starttls" => Ok(SmtpTls::Starttls),
            "implicit" => Ok(SmtpTls::Implicit),
            other => Err(Error::BadSetting(format!(
                "--smtp-tls is starttls or implicit, not {other}"
            ))),
        }
    }
}

/// The alert channels (`alert set`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AlertSettings {
    /// SMTP submission server `HOST:PORT`; `None`: no e-mail.
    pub smtp_server: Option<String>,
    /// STARTTLS or implicit TLS.
    pub smtp_tls: SmtpTls,
    /// AUTH user (PLAIN or LOGIN); `None`: no AUTH.
    pub smtp_user: Option<String>,
    /// AUTH password (never shown back).
    pub smtp_password: Option<String>,
    /// Envelope and header sender; `None`: the admin e-mail.
    pub from: Option<String>,
    /// Webhook URL (https); `None`: no webhook.
    pub webhook: Option<String>,
    /// HMAC-SHA256 key of the `X-Pbx-Certd-Signature` header (never shown).
    pub webhook_secret: Option<String>,
    /// Renewal failures in a row before an alert (`None`: 3).
    pub failures: Option<u32>,
}

/// A change from `alert set` (each field optional; `none` clears a value).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertChange {
    /// `HOST:PORT` or `none`.
    pub smtp_server: Option<String>,
    /// `starttls` or `implicit`.
    pub smtp_tls: Option<String>,
    /// AUTH user or `none`.
    pub smtp_user: Option<String>,
    /// AUTH password or `none`.
    pub smtp_password: Option<String>,
    /// Sender address or `none`.
    pub from: Option<String>,
    /// `https://…` or `none`.
    pub webhook: Option<String>,
    /// HMAC key or `none`.
    pub webhook_secret: Option<String>,
    /// Renewal failures in a row before an alert (1 to 100).
    pub failures: Option<u32>,
}

/// One open alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Event and threshold: sent once per key.
    pub key: String,
    /// Stable code: `cert-expiring`, `cert-expired`, `renewal-failing`,
    /// `roots-outdated`, `test`.
    pub code: String,
    /// One line for a subject.
    pub subject: String,
    /// Text for the admin.
    pub message: String,
    /// The certificate concerned, if any.
    pub cert_id: Option<String>,
    /// Unix seconds the alert is about (expiry, last attempt), if any.
    pub at: Option<i64>,
}

/// An alert as the webhook body and `alerts --json` show it (times RFC
/// 3339).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertBody {
    /// Event and threshold: sent once per key.
    pub key: String,
    /// Stable code.
    pub code: String,
    /// One line for a subject.
    pub subject: String,
    /// Text for the admin.
    pub message: String,
    /// The certificate concerned, if any.
    pub cert_id: Option<String>,
    /// The time the alert is about, if any.
    pub at: Option<String>,
}

impl Alert {
    /// The alert's JSON shape.
    pub fn body(&self) -> AlertBody {
        AlertBody {
            key: self.key.clone(),
            code: self.code.clone(),
            subject: self.subject.clone(),
            message: self.message.clone(),
            cert_id: self.cert_id.clone(),
            at: self.at.map(clock::rfc3339),
        }
    }

    /// The alert as the webhook body and `alerts --json` show it.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.body()).unwrap_or(Value::Null)
    }
}

/// What happened on one channel for one alert.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelState {
    /// Unix seconds it was delivered.
    pub sent: Option<i64>,
    /// Failed attempts so far.
    pub failures: u32,
    /// Unix seconds before which no new attempt is made.
    pub next_try: i64,
    /// Code and text of the last failure.
    pub last_error: Option<String>,
}

impl ChannelState {
    /// Should an attempt be made now?
    pub fn due(&self, now: i64) -> bool {
        self.sent.is_none() && now >= self.next_try
    }

    /// Record a failed attempt: back off exponentially.
    pub fn failed(&mut self, now: i64, error: String) {
        self.failures = self.failures.saturating_add(1);
        let shift = self.failures.saturating_sub(1).min(20);
        let wait = ALERT_RETRY_FIRST_SECS
            .saturating_mul(1i64 << shift)
            .min(ALERT_RETRY_MAX_SECS);
        self.next_try = now.saturating_add(wait);
        self.last_error = Some(error);
    }
}

/// The stored delivery record of one alert (`Family::AlertSent`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Unix seconds the alert was first seen open.
    pub opened: i64,
    /// The e-mail channel.
    pub email: ChannelState,
    /// The webhook channel.
    pub webhook: ChannelState,
}

/// The stored settings (defaults when never set).
pub fn settings(store: &Store) -> Result<AlertSettings, Error> {
    match store.setting(SETTING_ALERTS)? {
        Some(raw) => {
            serde_json::from_slice(&raw).map_err(|e| StoreError::Corrupt(e.to_string()).into())
        }
        None => Ok(AlertSettings::default()),
    }
}

/// `Some(value)`, or `None` for `none`/empty; checked for length and
/// control characters (values end up in SMTP commands and headers).
fn value(raw: &str, what: &str) -> Result<Option<String>, Error> {
    let v = raw.trim();
    if v.is_empty() || v == "none" {
        return Ok(None);
    }
    if v.len() > ALERT_MAX_SETTING_LEN || v.chars().any(char::is_control) {
        return Err(Error::BadSetting(format!(
            "{what}: at most {ALERT_MAX_SETTING_LEN} characters, no control characters"
        )));
    }
    Ok(Some(v.to_owned()))
}

/// A plain `local@domain` address (no display name, no spaces or brackets).
pub fn valid_address(a: &str) -> bool {
    match a.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && a.chars()
                    .all(|c| c.is_ascii_graphic() && !"<>()[]\\,;:\"".contains(c))
                && a.matches('@').count() == 1
        }
        None => false,
    }
}

/// `alert set`: validate and store a change; returns `show`.
pub fn set(store: &Store, change: &AlertChange) -> Result<AlertView, Error> {
    let mut s = settings(store)?;
    if let Some(raw) = &change.smtp_server {
        s.smtp_server = value(raw, "--smtp-server")?;
        if let Some(v) = &s.smtp_server {
            let port = v.rsplit_once(':').and_then(|(h, p)| {
                (!h.is_empty())
                    .then(|| p.parse::<u16>().ok())
                    .flatten()
                    .filter(|p| *p != 0)
            });
            if port.is_none() {
                return Err(Error::BadSetting(format!(
                    "--smtp-server is HOST:PORT (e.g. mail.example.com:587), not {v}"
                )));
            }
        }
    }
    if let Some(raw) = &change.smtp_tls {
        s.smtp_tls = raw.trim().parse()?;
    }
    if let Some(raw) = &change.smtp_user {
        s.smtp_user = value(raw, "--smtp-user")?;
    }
    if let Some(raw) = &change.smtp_password {
        s.smtp_password = value(raw, "--smtp-password")?;
    }
    if let Some(raw) = &change.from {
        s.from = value(raw, "--from")?;
        if let Some(v) = &s.from {
            if !valid_address(v) {
                return Err(Error::BadEmail(v.clone()));
            }
        }
    }
    if let Some(raw) = &change.webhook {
        s.webhook = value(raw, "--webhook")?;
        if let Some(v) = &s.webhook {
            let ok = crate::outbound::Url::parse(v).is_ok_and(|u| u.tls);
            if !ok {
                return Err(Error::BadSetting(format!(
                    "--webhook is an https:// URL, not {v}"
                )));
            }
        }
    }
    if let Some(raw) = &change.webhook_secret {
        s.webhook_secret = value(raw, "--webhook-secret")?;
    }
    if let Some(n) = change.failures {
        if !(1..=100).contains(&n) {
            return Err(Error::BadSetting("--failures is 1 to 100".into()));
        }
        s.failures = Some(n);
    }
    if s.webhook.is_some() && s.webhook_secret.is_none() {
        return Err(Error::BadSetting(
            "a webhook needs --webhook-secret (its receiver checks the signature)".into(),
        ));
    }
    if s.smtp_user.is_some() != s.smtp_password.is_some() {
        return Err(Error::BadSetting(
            "--smtp-user and --smtp-password go together".into(),
        ));
    }
    let mut batch = Batch::default();
    batch.put_setting(
        SETTING_ALERTS,
        &serde_json::to_vec(&s).map_err(|e| Error::BadSetting(e.to_string()))?,
    );
    store.commit(batch)?;
    show(store)
}

/// `alert show --json`: the settings with secrets masked, and the recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertView {
    /// `HOST:PORT` of the submission server.
    pub smtp_server: Option<String>,
    /// STARTTLS or implicit TLS.
    pub smtp_tls: SmtpTls,
    /// AUTH user.
    pub smtp_user: Option<String>,
    /// `********` when a password is stored (never the password).
    pub smtp_password: Option<String>,
    /// Sender address (the admin e-mail when not set).
    pub from: Option<String>,
    /// Recipient: the admin e-mail.
    pub to: Option<String>,
    /// Webhook URL.
    pub webhook: Option<String>,
    /// `********` when a secret is stored.
    pub webhook_secret: Option<String>,
    /// Renewal failures in a row that raise an alert.
    pub failures: u32,
}

/// `alert show`: the settings with secrets masked, and the recipient.
pub fn show(store: &Store) -> Result<AlertView, Error> {
    let s = settings(store)?;
    let mask = |v: &Option<String>| v.as_ref().map(|_| "********".to_owned());
    let to = store.system()?.admin_email;
    Ok(AlertView {
        smtp_server: s.smtp_server.clone(),
        smtp_tls: s.smtp_tls,
        smtp_user: s.smtp_user.clone(),
        smtp_password: mask(&s.smtp_password),
        from: s.from.clone().or_else(|| to.clone()),
        to,
        webhook: s.webhook.clone(),
        webhook_secret: mask(&s.webhook_secret),
        failures: s.failures.unwrap_or(ALERT_DEFAULT_FAILURES),
    })
}

/// Certificates in use: domain and server certificates TLS serves or would
/// serve, STIR/SHAKEN certificates that sign calls (issue 15), not the
/// generated self-signed one, and not one replaced by
/// a newer one (same owner, every name covered, later expiry: the resolver
/// prefers that one, and an admin who uploaded a successor must not be
/// told about the old one).
fn served(certs: &[CertRecord]) -> Vec<&CertRecord> {
    let servable = |c: &&CertRecord| {
        matches!(c.kind, Kind::Server | Kind::Domain | Kind::StirShaken)
            && c.source != Source::SelfSigned
    };
    let replaces = |o: &CertRecord, c: &CertRecord| {
        o.id != c.id
            && o.tenant == c.tenant
            && o.kind == c.kind
            && o.not_after > c.not_after
            && c.names
                .iter()
                .all(|n| o.names.iter().any(|p| crate::names::covers(p, n)))
    };
    certs
        .iter()
        .filter(servable)
        .filter(|c| !certs.iter().filter(servable).any(|o| replaces(o, c)))
        .collect()
}

fn describe(c: &CertRecord) -> String {
    let owner = match &c.tenant {
        Some(t) => format!("tenant {t}"),
        None => "the system".to_owned(),
    };
    let source = match c.source {
        Source::Upload => "uploaded",
        Source::Acme => "ACME",
        _ => "generated",
    };
    let what = if c.kind == Kind::StirShaken {
        "STIR/SHAKEN certificate"
    } else {
        "certificate"
    };
    format!(
        "{what} {} ({source}, {owner}; {})",
        c.id.get(..12).unwrap_or(&c.id),
        c.names.join(", ")
    )
}

/// The alerts open now.
pub fn evaluate(store: &Store, now: i64) -> Result<Vec<Alert>, Error> {
    let mut out = Vec::new();
    let certs = store.certs()?;
    for c in served(&certs) {
        let left = c.not_after - now;
        if left <= 0 {
            out.push(Alert {
                key: format!("expired:{}", c.id),
                code: "cert-expired".into(),
                subject: format!("certificate expired: {}", c.names.join(", ")),
                message: if c.kind == Kind::StirShaken {
                    format!(
                        "{} expired at {}; calls can no longer be signed with it",
                        describe(c),
                        clock::rfc3339(c.not_after)
                    )
                } else {
                    format!(
                        "{} expired at {} and is still served; TLS clients now refuse it",
                        describe(c),
                        clock::rfc3339(c.not_after)
                    )
                },
                cert_id: Some(c.id.clone()),
                at: Some(c.not_after),
            });
            continue;
        }
        let reached = ALERT_EXPIRY_DAYS
            .iter()
            .copied()
            .filter(|d| left <= d * 86_400)
            .min();
        if let Some(days) = reached {
            let renew = if c.source == Source::Upload {
                "uploaded: ACME does not renew it, import a new one"
            } else {
                "renewal has not replaced it yet"
            };
            out.push(Alert {
                key: format!("expiring:{}:{days}", c.id),
                code: "cert-expiring".into(),
                subject: format!(
                    "certificate expires within {days} day{}: {}",
                    if days == 1 { "" } else { "s" },
                    c.names.join(", ")
                ),
                message: format!(
                    "{} expires at {} ({renew})",
                    describe(c),
                    clock::rfc3339(c.not_after)
                ),
                cert_id: Some(c.id.clone()),
                at: Some(c.not_after),
            });
        }
    }
    let threshold = settings(store)?.failures.unwrap_or(ALERT_DEFAULT_FAILURES);
    for t in crate::acme::targets(store)? {
        let st = crate::acme::status(store, &t.key)?;
        if st.failures == 0 {
            continue;
        }
        let cert = crate::acme::current_cert(store, &t)?;
        let short = cert
            .as_ref()
            .is_some_and(|c| c.not_after - now < ALERT_FAILURE_VALIDITY_SECS);
        if st.failures < threshold && !short {
            continue;
        }
        let error = st
            .last_error
            .as_ref()
            .map(|e| format!("{} ({})", e.message, e.code))
            .unwrap_or_default();
        out.push(Alert {
            key: format!(
                "renewal:{}:{}",
                t.key,
                if short { "short" } else { "failures" }
            ),
            code: "renewal-failing".into(),
            subject: format!("renewal failing: {}", t.names.join(", ")),
            message: format!(
                "ACME renewal of {} failed {} time(s) in a row{}; last error: {error}",
                t.names.join(", "),
                st.failures,
                match &cert {
                    Some(c) => format!(
                        "; the current certificate expires at {}",
                        clock::rfc3339(c.not_after)
                    ),
                    None => String::new(),
                }
            ),
            cert_id: cert.map(|c| c.id),
            at: st.last_attempt,
        });
    }
    if crate::roots::update_available(store)? {
        let bundled = crate::roots::bundled_version();
        out.push(Alert {
            key: format!("roots:{bundled}"),
            code: "roots-outdated".into(),
            subject: "the Root CA list is older than the bundled one".into(),
            message: format!(
                "this release bundles a newer Root CA list ({bundled}); `pbx-certd roots reset` updates it"
            ),
            cert_id: None,
            at: None,
        });
    }
    Ok(out)
}

/// The delivery record of an alert, if any.
pub fn delivery(store: &Store, key: &str) -> Result<Option<Delivery>, Error> {
    Ok(store
        .setting(&SENT.key(key))?
        .and_then(|raw| serde_json::from_slice(&raw).ok()))
}

/// Store the delivery record of an alert.
pub fn put_delivery(store: &Store, key: &str, d: &Delivery) -> Result<(), Error> {
    let mut batch = Batch::default();
    batch.put_setting(
        &SENT.key(key),
        &serde_json::to_vec(d).map_err(|e| Error::BadSetting(e.to_string()))?,
    );
    Ok(store.commit(batch)?)
}

/// Remove the records of alerts no longer open (so a later event of the
/// same key alerts again).
pub fn forget_closed(store: &Store, open: &[Alert]) -> Result<(), Error> {
    let mut batch = Batch::default();
    let mut any = false;
    for (k, _) in store.settings_with_prefix(SENT.prefix())? {
        let key = String::from_utf8_lossy(&k);
        let name = key.strip_prefix(SENT.prefix()).unwrap_or(&key);
        if !open.iter().any(|a| a.key == name) {
            batch.delete_setting(&key);
            any = true;
        }
    }
    if any {
        store.commit(batch)?;
    }
    Ok(())
}

/// One channel's outcome in `alert test`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelOutcome {
    /// Delivered.
    pub ok: bool,
    /// The failure's stable code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The failure in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `alert test --json`: each configured channel's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestReport {
    /// The e-mail channel, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<ChannelOutcome>,
    /// The webhook, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<ChannelOutcome>,
}

/// One channel's delivery state of an open alert (`alerts --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelView {
    /// When it was sent (RFC 3339), if it was.
    pub sent: Option<String>,
    /// Failed attempts so far.
    pub failures: u32,
    /// When the next attempt is due, while it waits for one.
    pub next_try: Option<String>,
    /// The last failure.
    pub last_error: Option<String>,
}

/// One open alert with its delivery state (`alerts --json`,
/// `GET /api/alerts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenAlert {
    /// The alert.
    #[serde(flatten)]
    pub alert: AlertBody,
    /// When it was first seen open (RFC 3339).
    pub opened: Option<String>,
    /// E-mail delivery.
    pub email: Option<ChannelView>,
    /// Webhook delivery.
    pub webhook: Option<ChannelView>,
}

/// `alerts`: the open alerts with their delivery state.
pub fn list(store: &Store) -> Result<Vec<OpenAlert>, Error> {
    let now = clock::now();
    let mut out = Vec::new();
    for a in evaluate(store, now)? {
        let d = delivery(store, &a.key)?;
        let chan = |c: Option<&ChannelState>| {
            c.map(|c| ChannelView {
                sent: c.sent.map(clock::rfc3339),
                failures: c.failures,
                next_try: (c.sent.is_none() && c.failures > 0).then(|| clock::rfc3339(c.next_try)),
                last_error: c.last_error.clone(),
            })
        };
        out.push(OpenAlert {
            opened: d.as_ref().map(|d| clock::rfc3339(d.opened)),
            email: chan(d.as_ref().map(|d| &d.email)),
            webhook: chan(d.as_ref().map(|d| &d.webhook)),
            alert: a.body(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, names: &[&str], not_after: i64, source: Source) -> CertRecord {
        CertRecord {
            id: id.into(),
            kind: Kind::Server,
            tenant: None,
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            subject: String::new(),
            issuer: String::new(),
            not_before: 0,
            not_after,
            source,
            key_type: String::new(),
            eku: vec!["server-auth".into()],
            key_id: String::new(),
            seq: 0,
        }
    }

    #[test]
    fn a_replaced_or_self_signed_certificate_is_not_served() {
        let certs = [
            rec("old", &["a.example"], 10, Source::Upload),
            rec("new", &["*.example"], 20, Source::Upload),
            rec("other", &["b.other"], 5, Source::Upload),
            rec("self", &["x"], 1, Source::SelfSigned),
        ];
        let ids: Vec<&str> = served(&certs).iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["new", "other"]);
    }

    #[test]
    fn renewal_failures_and_an_old_root_list_are_alerted() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::ops::open_store(dir.path()).unwrap();
        crate::tenant::add(&store, "t", &["t.example".into()], &[]).unwrap();
        let codes = |store: &Store| -> Vec<String> {
            evaluate(store, clock::now())
                .unwrap()
                .into_iter()
                .map(|a| a.key)
                .collect()
        };
        assert!(codes(&store).is_empty(), "{:?}", codes(&store));
        let mut st = crate::acme::SetStatus {
            failures: ALERT_DEFAULT_FAILURES - 1,
            ..Default::default()
        };
        crate::acme::put_status(&store, "tenant:t", &st).unwrap();
        assert!(codes(&store).is_empty(), "under the threshold");
        st.failures = ALERT_DEFAULT_FAILURES;
        crate::acme::put_status(&store, "tenant:t", &st).unwrap();
        assert_eq!(codes(&store), ["renewal:tenant:t:failures"]);
        store.set_roots_version("an older list").unwrap();
        let keys = codes(&store);
        assert_eq!(keys.len(), 2, "{keys:?}");
        assert!(keys[1].starts_with("roots:"), "{keys:?}");
    }

    #[test]
    fn back_off_doubles_up_to_the_cap() {
        let mut c = ChannelState::default();
        assert!(c.due(0));
        c.failed(100, "x".into());
        assert_eq!(c.next_try, 100 + ALERT_RETRY_FIRST_SECS);
        assert!(!c.due(100));
        c.failed(100, "x".into());
        assert_eq!(c.next_try, 100 + 2 * ALERT_RETRY_FIRST_SECS);
        for _ in 0..40 {
            c.failed(100, "x".into());
        }
        assert_eq!(c.next_try, 100 + ALERT_RETRY_MAX_SECS);
    }

    #[test]
    fn settings_are_checked_and_secrets_masked() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::ops::open_store(dir.path()).unwrap();
        let bad = |c: AlertChange| set(&store, &c).unwrap_err().code_str().to_owned();
        assert_eq!(
            bad(AlertChange {
                smtp_server: Some("mail.example.com".into()),
                ..Default::default()
            }),
            "bad-setting"
        );
        assert_eq!(
            bad(AlertChange {
                webhook: Some("http://x.example/h".into()),
                webhook_secret: Some("s".into()),
                ..Default::default()
            }),
            "bad-setting"
        );
        assert_eq!(
            bad(AlertChange {
                from: Some("not an address".into()),
                ..Default::default()
            }),
            "bad-email"
        );
        let shown = set(
            &store,
            &AlertChange {
                smtp_server: Some("127.0.0.1:587".into()),
                smtp_user: Some("u".into()),
                smtp_password: Some("hunter2".into()),
                webhook: Some("https://127.0.0.1:9/h".into()),
                webhook_secret: Some("s3cret".into()),
                ..Default::default()
            },
        )
        .unwrap();
        let text = serde_json::to_string(&shown).unwrap();
        assert!(
            !text.contains("hunter2") && !text.contains("s3cret"),
            "{text}"
        );
        assert_eq!(shown.smtp_password.as_deref(), Some("********"));
        assert_eq!(
            settings(&store).unwrap().smtp_password.as_deref(),
            Some("hunter2")
        );
    }
}
