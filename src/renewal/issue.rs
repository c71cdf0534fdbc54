//! One ACME order, from account to stored certificate (RFC 8555 §7.4, §7.5,
//! §8; RFC 8737 §3 for TLS-ALPN-01).
//!
//! Why: this is the protocol flow the daemon runs for a name set: account
//! (created once, key stored, re-registered on `accountDoesNotExist`), order,
//! authorizations (already valid ones reused, §7.5), one challenge each
//! (HTTP-01 and TLS-ALPN-01 presented through the snapshot; DNS-01, §8.4,
//! through the stored provider covering the name, `crate::dns01::Challenge`:
//! the TXT record is published and seen at the zone's servers before the CA
//! is told to validate), polling with
//! `refresh()` on smol timers (instant-acme's own polling needs tokio),
//! finalize with a fresh key (P-256, or RSA 2048 for tenants that chose it;
//! the challenge too follows the tenant's choice, `tenant set`) and CSR,
//! download, and import through the
//! same rules as an upload with `source: "acme"`. A tenant's IP names are
//! `ip` identifiers (RFC 8738 §3), validated by HTTP-01 or TLS-ALPN-01 only
//! (§7; TLS-ALPN-01 answers the reverse-DNS SNI, §6), whatever the tenant's
//! choice for its DNS names.
//!
//! What must hold: challenges are withdrawn whatever the outcome; badNonce
//! (§6.5) is retried with the fresh nonce; the old certificate stays until
//! the new one is stored; nothing the CA sends can panic. A DNS-01 TXT
//! record outlives the process (HTTP-01 and TLS-ALPN-01 answers do not), so
//! it is noted in the store (`acme_txt:`) before it is published and
//! forgotten once removed: a daemon stopped mid-order (SIGTERM, crash, power
//! loss) removes what it left at its next start (`remove_leftover_txt`).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, ExternalAccountKey, Identifier, NewAccount,
    NewOrder, OrderStatus,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::acme::{
    AcmeError, AcmeSettings, ChallengeAnswer, ChallengeRecord, StoredAccount, Target,
};
use crate::daemon::Shared;
use crate::limits::{
    ACME_BAD_NONCE_RETRIES, ACME_CHALLENGE_TTL_SECS, ACME_POLL_FIRST_DELAY, ACME_POLL_MAX_DELAY,
    ACME_POLL_TIMEOUT, CLUSTER_CHALLENGE_SETTLE,
};
use crate::model::ChallengeChoice;
use crate::model::Source;
use crate::outbound::Client;
use crate::pki::KindRequest;

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737 §6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// What the daemon can answer challenges on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Listeners {
    /// A port-80 listener runs (HTTP-01).
    pub http: bool,
    /// An HTTPS listener runs (TLS-ALPN-01).
    pub https: bool,
}

/// Retry an ACME call while the CA answers badNonce (RFC 8555 §6.5).
macro_rules! nonce_retry {
    ($e:expr) => {{
        let mut tries = 0;
        loop {
            match $e {
                Ok(v) => break Ok(v),
                Err(e) => {
                    let e = AcmeError::from(e);
                    if e.is_bad_nonce() && tries < ACME_BAD_NONCE_RETRIES {
                        tries += 1;
                        continue;
                    }
                    break Err(e);
                }
            }
        }
    }};
}

async fn blocking<T: Send + 'static>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&Shared) -> T + Send + 'static,
) -> T {
    let shared = shared.clone();
    smol::unblock(move || f(&shared)).await
}

fn internal(e: impl core::fmt::Display) -> AcmeError {
    AcmeError::new("internal", e.to_string())
}

fn store_err(e: crate::Error) -> AcmeError {
    AcmeError::new("store-error", e.to_string())
}

/// Log in: the stored account (registering it when needed).
async fn login(
    shared: &Arc<Shared>,
    settings: &AcmeSettings,
    client: &Client,
    force_register: bool,
) -> Result<Account, AcmeError> {
    use base64ct::{Base64, Encoding};
    let dir = settings.directory.clone();
    let stored = blocking(shared, |s| crate::acme::account(s.store()))
        .await
        .map_err(store_err)?
        .filter(|a| a.directory == dir);
    let contact = {
        let s = settings.clone();
        blocking(shared, move |sh| sh.store().system())
            .await
            .map(|system| crate::acme::contact(&s, &system))?
    };
    // Existing account with a URL: no request beyond the directory.
    if let Some(StoredAccount {
        key_pkcs8,
        id: Some(id),
        ..
    }) = &stored
    {
        if !force_register {
            let der = Base64::decode_vec(key_pkcs8).map_err(internal)?;
            return Account::builder_with_http(Box::new(client.clone()))
                .from_parts(id.clone(), PrivatePkcs8KeyDer::from(der), dir)
                .await
                .map_err(AcmeError::from);
        }
    }
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, key_b64) = match (&stored, &settings.eab) {
        (Some(s), _) => {
            // Same key, registered (again): RFC 8555 §7.3 returns the existing
            // account or creates one (e.g. after the CA forgot it).
            let der = Base64::decode_vec(&s.key_pkcs8).map_err(internal)?;
            let (account, _) = nonce_retry!({
                let key = instant_acme::Key::from_pkcs8_der(PrivatePkcs8KeyDer::from(der.clone()))
                    .map_err(AcmeError::from)?;
                Account::builder_with_http(Box::new(client.clone()))
                    .create_from_key(
                        (
                            key,
                            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der.clone())),
                        ),
                        dir.clone(),
                    )
                    .await
            })?;
            (account, s.key_pkcs8.clone())
        }
        (None, Some(eab)) => {
            let hmac = base64ct::Base64UrlUnpadded::decode_vec(&eab.hmac).map_err(internal)?;
            let eak = ExternalAccountKey::new(eab.kid.clone(), &hmac);
            let (account, creds) = nonce_retry!(
                Account::builder_with_http(Box::new(client.clone()))
                    .create(
                        &NewAccount {
                            contact: &contacts,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        dir.clone(),
                        Some(&eak),
                    )
                    .await
            )?;
            let creds = serde_json::to_value(&creds).map_err(internal)?;
            let key = creds["key_pkcs8"]
                .as_str()
                .ok_or_else(|| internal("account credentials without key"))?
                .to_owned();
            // instant-acme stores it base64url; keep standard base64.
            let der = base64ct::Base64UrlUnpadded::decode_vec(key.trim_end_matches('='))
                .or_else(|_| Base64::decode_vec(&key))
                .map_err(internal)?;
            (account, Base64::encode_string(&der))
        }
        (None, None) => {
            let (key, der) = instant_acme::Key::generate_pkcs8().map_err(AcmeError::from)?;
            let bytes = der.secret_pkcs8_der().to_vec();
            // Store the key before registering: a crash leaves a key, not an orphan account.
            let pre = StoredAccount {
                directory: dir.clone(),
                key_pkcs8: Base64::encode_string(&bytes),
                id: None,
                contact: None,
            };
            blocking(shared, move |s| crate::acme::put_account(s.store(), &pre))
                .await
                .map_err(store_err)?;
            let mut first = Some(key);
            let (account, _) = nonce_retry!({
                let key = match first.take() {
                    Some(k) => k,
                    None => {
                        instant_acme::Key::from_pkcs8_der(PrivatePkcs8KeyDer::from(bytes.clone()))
                            .map_err(AcmeError::from)?
                    }
                };
                Account::builder_with_http(Box::new(client.clone()))
                    .create_from_key(
                        (
                            key,
                            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(bytes.clone())),
                        ),
                        dir.clone(),
                    )
                    .await
            })?;
            (account, Base64::encode_string(&bytes))
        }
    };
    // Registered without contact (instant-acme's `create_from_key` sends
    // none): the contact goes in an account update (RFC 8555 §7.3.2).
    if !contacts.is_empty() && settings.eab.is_none() {
        nonce_retry!(account.update_contacts(&contacts).await)?;
        log::info!(
            "ACME: account {} contact set to {}",
            account.id(),
            contacts.join(", ")
        );
    }
    let record = StoredAccount {
        directory: dir,
        key_pkcs8: key_b64,
        id: Some(account.id().to_owned()),
        contact: Some(contact.into_iter().collect()),
    };
    blocking(shared, move |s| {
        crate::acme::put_account(s.store(), &record)
    })
    .await
    .map_err(store_err)?;
    log::info!("ACME account {} ready", account.id());
    Ok(account)
}

/// Keep the CA's copy of the account contact in step with the settings
/// (`acme set --email`, else `system set --admin-email`): when the stored
/// account's contact differs from the wanted one, send an account update
/// (RFC 8555 §7.3.2: a POST to the account URL with the new `contact`
/// array, which replaces the old one; an empty array removes it) and keep
/// what was sent. Run by the renewal loop before each pass; a failure is
/// logged and retried at the next pass (orders do not depend on it).
pub async fn sync_account(shared: &Arc<Shared>, settings: &AcmeSettings) {
    if let Err(e) = try_sync_account(shared, settings).await {
        log::warn!("ACME: account update failed [{}]: {e}", e.code);
    }
}

async fn try_sync_account(shared: &Arc<Shared>, settings: &AcmeSettings) -> Result<(), AcmeError> {
    use base64ct::{Base64, Encoding};
    let s = settings.clone();
    let (stored, wanted) = blocking(shared, move |sh| -> Result<_, crate::Error> {
        let store = sh.store();
        let account = crate::acme::account(store)?.filter(|a| a.directory == s.directory);
        let wanted: Vec<String> = crate::acme::contact(&s, &store.system()?)
            .into_iter()
            .collect();
        Ok((account, wanted))
    })
    .await
    .map_err(store_err)?;
    let Some(mut stored) = stored else {
        return Ok(()); // registered (with the contact) by the next order
    };
    let Some(id) = stored.id.clone() else {
        return Ok(());
    };
    if stored.contact.as_ref() == Some(&wanted) {
        return Ok(());
    }
    let client = blocking(shared, |s| Client::from_store(s.store()))
        .await
        .map_err(|e| AcmeError::new(e.code(), e.to_string()))?;
    let der = Base64::decode_vec(&stored.key_pkcs8).map_err(internal)?;
    let account = Account::builder_with_http(Box::new(client))
        .from_parts(
            id.clone(),
            PrivatePkcs8KeyDer::from(der),
            settings.directory.clone(),
        )
        .await
        .map_err(AcmeError::from)?;
    let contacts: Vec<&str> = wanted.iter().map(String::as_str).collect();
    nonce_retry!(account.update_contacts(&contacts).await)?;
    log::info!(
        "ACME: account {id} updated: contact [{}]",
        contacts.join(", ")
    );
    stored.contact = Some(wanted);
    blocking(shared, move |s| {
        crate::acme::put_account(s.store(), &stored)
    })
    .await
    .map_err(store_err)
}

/// The newOrder of an order: the profile (draft-ietf-acme-profiles) only
/// when the directory's `meta.profiles` lists it, else `acme-profile-unknown`.
fn new_order<'a>(
    account: &Account,
    identifiers: &'a [Identifier],
    profile: Option<&'a str>,
) -> Result<NewOrder<'a>, AcmeError> {
    let order = NewOrder::new(identifiers);
    let Some(p) = profile else {
        return Ok(order);
    };
    if account.profiles().any(|m| m.name == p) {
        return Ok(order.profile(p));
    }
    let offered: Vec<&str> = account.profiles().map(|m| m.name).collect();
    Err(AcmeError::new(
        "acme-profile-unknown",
        format!(
            "the CA does not offer the ACME profile {p:?} (its directory lists: {})",
            if offered.is_empty() {
                "none".to_owned()
            } else {
                offered.join(", ")
            }
        ),
    ))
}

/// A challenge answer that must be withdrawn.
enum Presented {
    Http(String),
    Alpn(String),
    /// The challenge, and the store note of its TXT record (`acme_txt:`).
    Dns(Box<crate::dns01::Challenge>, String),
}

/// Store notes of DNS-01 TXT records published and not yet removed.
const PENDING_TXT_PREFIX: &str = crate::settings::Family::AcmeTxt.prefix();

/// What a note says: enough to find the provider again and remove exactly
/// that value (the provider's settings themselves stay in the store).
#[derive(serde::Serialize, serde::Deserialize)]
struct PendingTxt {
    /// The name validated (a host or `*.host`).
    domain: String,
    /// The TXT value (RFC 8555 §8.4).
    value: String,
}

/// Note a TXT record about to be published; returns the note's name.
async fn note_txt(
    shared: &Arc<Shared>,
    fqdn: &str,
    domain: &str,
    value: &str,
) -> Result<String, AcmeError> {
    let key = format!("{PENDING_TXT_PREFIX}{fqdn} {value}");
    let note = serde_json::to_vec(&PendingTxt {
        domain: domain.to_owned(),
        value: value.to_owned(),
    })
    .map_err(internal)?;
    let k = key.clone();
    blocking(shared, move |s| {
        let mut batch = crate::store::Batch::default();
        batch.put_setting(&k, &note);
        s.store().commit(batch)
    })
    .await?;
    Ok(key)
}

/// Forget the note `key` (its record is gone).
async fn forget_txt(shared: &Arc<Shared>, key: String) {
    let result = blocking(shared, move |s| {
        let mut batch = crate::store::Batch::default();
        batch.delete_setting(&key);
        s.store().commit(batch)
    })
    .await;
    if let Err(e) = result {
        log::warn!("ACME: cannot update the store after removing a TXT record: {e}");
    }
}

/// Remove the DNS-01 TXT records an order noted but never removed (the
/// daemon stopped mid-order, or the removal failed): run when the renewal
/// loop starts, before any order. A note whose name no provider covers any
/// more is dropped; one whose removal fails is kept for the next start.
pub async fn remove_leftover_txt(shared: &Arc<Shared>) {
    let notes = match blocking(shared, |s| {
        s.store().settings_with_prefix(PENDING_TXT_PREFIX)
    })
    .await
    {
        Ok(n) => n,
        Err(e) => {
            log::warn!("ACME: cannot list TXT records left by earlier orders: {e}");
            return;
        }
    };
    for (key, raw) in notes {
        let key = String::from_utf8_lossy(&key).into_owned();
        let Ok(note) = serde_json::from_slice::<PendingTxt>(&raw) else {
            forget_txt(shared, key).await;
            continue;
        };
        let (domain, value) = (note.domain.clone(), note.value);
        let challenge = blocking(shared, move |s| {
            crate::dns01::Challenge::prepare(s.store(), &domain, &value)
        })
        .await;
        match challenge {
            Ok(Some(c)) => match c.cleanup().await {
                Ok(()) => {
                    log::info!(
                        "ACME: removed TXT {} left by an interrupted order (DNS provider {})",
                        c.fqdn,
                        c.provider_name
                    );
                    forget_txt(shared, key).await;
                }
                Err(e) => log::warn!(
                    "ACME: cannot remove TXT {} left by an interrupted order through DNS provider {} [{}]: {e}",
                    c.fqdn,
                    c.provider_name,
                    e.code()
                ),
            },
            Ok(None) => {
                log::warn!(
                    "ACME: a TXT record for {} was left by an interrupted order, but no DNS provider covers it any more; remove it by hand",
                    note.domain
                );
                forget_txt(shared, key).await;
            }
            Err(e) => log::warn!("ACME: cannot remove TXT left for {}: {e}", note.domain),
        }
    }
}

/// A failure of the DNS side of DNS-01, with the DNS error's stable code
/// (`dns-tsig-rejected`, `dns-not-propagated`, ...).
fn dns_error(e: crate::Error) -> AcmeError {
    match e {
        crate::Error::Dns(d) => AcmeError::new(d.code(), d.to_string()),
        other => store_err(other),
    }
}

/// Does a stored DNS provider cover `name`? (Blocking: reads the store.)
async fn provider_covers(shared: &Arc<Shared>, name: &str) -> Result<bool, AcmeError> {
    let name = name.to_owned();
    blocking(shared, move |s| crate::dns::provider_for(s.store(), &name))
        .await
        .map(|p| p.is_some())
        .map_err(dns_error)
}

/// The TLS-ALPN-01 certificate (`acme::alpn_cert`, where every node of a
/// shared store makes it from a published answer).
pub use crate::acme::alpn_cert;

async fn sleep(d: Duration) {
    smol::Timer::after(d).await;
}

/// The wait before the next poll: the CA's Retry-After (capped), else a
/// doubling delay.
fn next_delay(client: &Client, delay: &mut Duration) -> Duration {
    let wait = client
        .take_retry_after()
        .map(Duration::from_secs)
        .unwrap_or(*delay)
        .min(ACME_POLL_MAX_DELAY);
    *delay = (*delay * 2).min(ACME_POLL_MAX_DELAY);
    wait
}

/// Run one order for `target`; returns the new certificate's ID.
pub async fn issue(
    shared: &Arc<Shared>,
    settings: &AcmeSettings,
    target: &Target,
    listeners: Listeners,
) -> Result<String, AcmeError> {
    let client = {
        let c = blocking(shared, |s| Client::from_store(s.store())).await;
        c.map_err(|e| AcmeError::new(e.code(), e.to_string()))?
    };
    let mut presented = Vec::new();
    let result = run_order(shared, settings, target, listeners, &client, &mut presented).await;
    // Always withdraw what was presented (RFC 8555 §8.3/§8.4: the client
    // removes the answer once the challenge is done).
    withdraw(shared, presented).await;
    let (cert_pem, key_pem) = result.map_err(|mut e| {
        e.retry_after = client.take_retry_after();
        e
    })?;
    let target = target.clone();
    blocking(shared, move |s| {
        store_issued(s, &target, &cert_pem, &key_pem)
    })
    .await
}

fn store_issued(
    shared: &Shared,
    target: &Target,
    cert_pem: &str,
    key_pem: &str,
) -> Result<String, AcmeError> {
    let kind = if target.tenant.is_some() {
        KindRequest::Domain
    } else {
        KindRequest::Server
    };
    shared
        .write(|store| {
            let imported = crate::certs::import(
                store,
                cert_pem.as_bytes(),
                Some(key_pem.as_bytes()),
                kind,
                Source::Acme,
            )?;
            // The new certificate is stored: older ACME ones of this owner
            // whose names it all has go (also a set that grew, e.g. the
            // system name that got `*.NAME` with a DNS provider).
            for old in store.certs()? {
                if old.source == Source::Acme
                    && old.id != imported.id
                    && old.tenant == target.tenant
                    && old.names.iter().all(|n| target.names.contains(n))
                {
                    crate::certs::delete(store, &old.id)?;
                }
            }
            Ok(imported.id)
        })
        .map_err(|e| AcmeError::new("import-failed", e.to_string()))
}

/// On a shared store (a cluster), publish an answer so that every node
/// gives it (`acme::publish_challenge`), then wait
/// `CLUSTER_CHALLENGE_SETTLE` for the nodes to rebuild before the CA is
/// told to validate: it may reach any node behind the name.
async fn publish(shared: &Arc<Shared>, answer: ChallengeAnswer) -> Result<(), AcmeError> {
    if !shared.store().kv().shared() {
        return Ok(());
    }
    let record = ChallengeRecord {
        node: shared.node_id().unwrap_or_default(),
        expires: crate::clock::now().saturating_add(ACME_CHALLENGE_TTL_SECS),
        answer,
    };
    blocking(shared, move |s| {
        crate::acme::publish_challenge(s.store(), &record)
    })
    .await
    .map_err(store_err)?;
    sleep(CLUSTER_CHALLENGE_SETTLE).await;
    Ok(())
}

async fn withdraw(shared: &Arc<Shared>, presented: Vec<Presented>) {
    let mut snapshot_change = false;
    for p in &presented {
        if let Presented::Dns(challenge, note) = p {
            match challenge.cleanup().await {
                Ok(()) => forget_txt(shared, note.clone()).await,
                // The note stays: the next start tries again.
                Err(e) => log::warn!(
                    "ACME: cannot remove TXT {} through DNS provider {} [{}]: {e}",
                    challenge.fqdn,
                    challenge.provider_name,
                    e.code()
                ),
            }
        } else {
            snapshot_change = true;
        }
    }
    if snapshot_change && shared.store().kv().shared() {
        let keys: Vec<String> = presented
            .iter()
            .filter_map(|p| match p {
                Presented::Http(token) => Some(crate::acme::http_challenge_key(token)),
                Presented::Alpn(sni) => Some(crate::acme::alpn_challenge_key(sni)),
                Presented::Dns(..) => None,
            })
            .collect();
        let result = blocking(shared, move |s| {
            keys.iter()
                .try_for_each(|k| crate::acme::withdraw_challenge(s.store(), k))
        })
        .await;
        if let Err(e) = result {
            log::warn!("ACME: cannot withdraw published challenges (they lapse): {e}");
        }
    }
    if snapshot_change {
        let result = blocking(shared, move |s| {
            s.set_challenges(|c| {
                for p in &presented {
                    match p {
                        Presented::Http(token) => {
                            c.http.remove(token);
                        }
                        Presented::Alpn(name) => {
                            c.alpn.remove(name);
                        }
                        Presented::Dns(..) => {}
                    }
                }
            })
        })
        .await;
        if let Err(e) = result {
            log::warn!("ACME: cannot withdraw challenges: {e}");
        }
    }
}

async fn run_order(
    shared: &Arc<Shared>,
    settings: &AcmeSettings,
    target: &Target,
    listeners: Listeners,
    client: &Client,
    presented: &mut Vec<Presented>,
) -> Result<(String, String), AcmeError> {
    // An IP name is an `ip` identifier (RFC 8738 §3), any other a `dns` one.
    let identifiers: Vec<Identifier> = target
        .names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Identifier::Ip(ip),
            Err(_) => Identifier::Dns(n.clone()),
        })
        .collect();
    let profile = target.profile.as_deref().or(settings.profile.as_deref());
    let mut account = login(shared, settings, client, false).await?;
    let first = new_order(&account, &identifiers, profile)?;
    let mut order = match nonce_retry!(account.new_order(&first).await) {
        Err(e) if e.code == "account-does-not-exist" => {
            log::info!("ACME: the CA does not know our account; registering the same key again");
            account = login(shared, settings, client, true).await?;
            let again = new_order(&account, &identifiers, profile)?;
            nonce_retry!(account.new_order(&again).await)?
        }
        other => other?,
    };
    log::info!(
        "ACME: order {} for {}{}",
        order.url(),
        target.names.join(", "),
        profile.map_or(String::new(), |p| format!(" (profile {p})"))
    );

    // Present one challenge per pending authorization.
    // Authorizations already answered: a retry after a badNonce while
    // fetching a later one must not answer them twice.
    let mut answered: Vec<String> = Vec::new();
    let mut fetched = false;
    'fetch: for _ in 0..=ACME_BAD_NONCE_RETRIES {
        let mut auths = order.authorizations();
        while let Some(auth) = auths.next().await {
            let mut auth = match auth {
                Ok(a) => a,
                Err(e) => {
                    let e = AcmeError::from(e);
                    if e.is_bad_nonce() {
                        continue 'fetch;
                    }
                    return Err(e);
                }
            };
            match auth.status {
                AuthorizationStatus::Valid => continue, // reused (RFC 8555 §7.5)
                AuthorizationStatus::Pending => {}
                other => {
                    return Err(AcmeError::new(
                        "validation-failed",
                        format!("authorization for {} is {other:?}", auth.identifier()),
                    ))
                }
            }
            let name = auth.identifier().to_string();
            if answered.contains(&name) {
                continue;
            }
            let wildcard = auth.identifier().wildcard;
            let ip = match auth.identifier().identifier {
                Identifier::Ip(ip) => Some(*ip),
                _ => None,
            };
            let kind = match target.challenge.unwrap_or(settings.challenge) {
                // An IP address has no DNS zone: HTTP-01 or TLS-ALPN-01
                // only (RFC 8738 §7); a DNS-01 choice (or auto) takes
                // HTTP-01 when port 80 runs, else TLS-ALPN-01.
                ChallengeChoice::TlsAlpn01 if ip.is_some() => ChallengeType::TlsAlpn01,
                _ if ip.is_some() && listeners.http => ChallengeType::Http01,
                _ if ip.is_some() => ChallengeType::TlsAlpn01,
                ChallengeChoice::Http01 => ChallengeType::Http01,
                ChallengeChoice::TlsAlpn01 => ChallengeType::TlsAlpn01,
                ChallengeChoice::Dns01 => ChallengeType::Dns01,
                // A wildcard needs DNS-01 (RFC 8555 §7.1.3): without a
                // provider it fails below with `no-dns-provider`.
                ChallengeChoice::Auto if wildcard => ChallengeType::Dns01,
                ChallengeChoice::Auto if provider_covers(shared, &name).await? => {
                    ChallengeType::Dns01
                }
                ChallengeChoice::Auto if listeners.http => ChallengeType::Http01,
                ChallengeChoice::Auto => ChallengeType::TlsAlpn01,
            };
            let Some(mut challenge) = auth.challenge(kind.clone()) else {
                return Err(AcmeError::new(
                    "no-challenge",
                    format!("the CA offers no {kind:?} challenge for {name}"),
                ));
            };
            let key_auth = challenge.key_authorization();
            match kind {
                ChallengeType::Http01 => {
                    let token = challenge.token.clone();
                    let value = key_auth.as_str().to_owned();
                    // The token is public (it is in the URL the CA fetches).
                    log::info!("ACME: answering http-01 for {name} (token {token})");
                    presented.push(Presented::Http(token.clone()));
                    let answer = ChallengeAnswer::Http01 {
                        token: token.clone(),
                        key_authorization: value.clone(),
                    };
                    blocking(shared, move |s| {
                        s.set_challenges(|c| {
                            c.http.insert(token, value);
                        })
                    })
                    .await?;
                    publish(shared, answer).await?;
                }
                ChallengeType::TlsAlpn01 => {
                    let cert = alpn_cert(&name, key_auth.digest().as_ref())?;
                    log::info!("ACME: answering tls-alpn-01 for {name}");
                    // For an IP the CA sends the reverse-DNS name as SNI
                    // (RFC 8738 §6); the certificate names the address.
                    let n = ip.map_or_else(|| name.clone(), crate::names::reverse_name);
                    presented.push(Presented::Alpn(n.clone()));
                    let answer = ChallengeAnswer::TlsAlpn01 {
                        sni: n.clone(),
                        name: name.clone(),
                        key_authorization: key_auth.as_str().to_owned(),
                    };
                    blocking(shared, move |s| {
                        s.set_challenges(|c| {
                            c.alpn.insert(n, cert);
                        })
                    })
                    .await?;
                    publish(shared, answer).await?;
                }
                _ => {
                    // DNS-01 (RFC 8555 §8.4): the stored provider with the
                    // longest zone containing the name.
                    let value = key_auth.dns_value();
                    let (domain, v) = (name.clone(), value.clone());
                    let dns = blocking(shared, move |s| {
                        crate::dns01::Challenge::prepare(s.store(), &domain, &v)
                    })
                    .await
                    .map_err(dns_error)?
                    .ok_or_else(|| {
                        AcmeError::new(
                            "no-dns-provider",
                            format!(
                                "DNS-01 for {name} needs a DNS provider covering its zone (pbx-certd dns add)"
                            ),
                        )
                    })?;
                    log::info!(
                        "ACME: answering dns-01 for {name} at {} through DNS provider {}",
                        dns.fqdn,
                        dns.provider_name
                    );
                    // Noted before it exists: a stop from here on leaves
                    // a note the next start acts on.
                    let note = note_txt(shared, &dns.fqdn, &name, &value).await?;
                    let dns = Box::new(dns);
                    let published = dns.publish().await;
                    // Withdrawn even when publishing failed: a record added
                    // but not seen in time is removed too.
                    presented.push(Presented::Dns(dns, note));
                    published.map_err(|e| AcmeError::new(e.code(), e.to_string()))?;
                }
            }
            nonce_retry!(challenge.set_ready().await)?;
            answered.push(name);
        }
        fetched = true;
        break;
    }
    if !fetched {
        return Err(AcmeError::new(
            "bad-nonce",
            "the CA kept rejecting nonces while the authorizations were fetched",
        ));
    }

    // Wait until the order is ready (or invalid).
    let _ = client.take_retry_after(); // nothing stale from earlier requests
    let start = Instant::now();
    let mut delay = ACME_POLL_FIRST_DELAY;
    loop {
        let (status, error) =
            nonce_retry!(order.refresh().await.map(|s| (s.status, s.error.clone())))?;
        match status {
            OrderStatus::Ready => break,
            OrderStatus::Pending => {}
            OrderStatus::Invalid => {
                let mut why = error
                    .map(|p| AcmeError::from(instant_acme::Error::Api(p)).message)
                    .unwrap_or_default();
                // The challenge errors say what the CA saw.
                let mut auths = order.authorizations();
                while let Some(Ok(mut a)) = auths.next().await {
                    if let Ok(state) = a.refresh().await {
                        for c in &state.challenges {
                            if let Some(p) = &c.error {
                                why.push_str(&format!(
                                    " {}: {}",
                                    state.identifier(),
                                    p.detail.as_deref().unwrap_or("failed")
                                ));
                            }
                        }
                    }
                }
                return Err(AcmeError::new(
                    "validation-failed",
                    format!(
                        "the CA could not validate {}:{why}",
                        target.names.join(", ")
                    ),
                ));
            }
            other => {
                return Err(AcmeError::new(
                    "ca-error",
                    format!("order in unexpected state {other:?}"),
                ))
            }
        }
        if start.elapsed() > ACME_POLL_TIMEOUT {
            return Err(AcmeError::new("timeout", "the CA did not validate in time"));
        }
        sleep(next_delay(client, &mut delay)).await;
    }

    // Finalize with a fresh key (never reused across certificates), of the
    // tenant's type; RSA generation takes seconds, so not on the executor.
    let key_type = target.key_type;
    let key = smol::unblock(move || crate::localca::new_key(key_type))
        .await
        .map_err(|e| AcmeError::new(e.code(), e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(target.names.clone()).map_err(internal)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(internal)?;
    nonce_retry!(order.finalize_csr(csr.der()).await)?;
    let mut delay = ACME_POLL_FIRST_DELAY;
    let chain = loop {
        if let Some(pem) = nonce_retry!(order.certificate().await)? {
            break pem;
        }
        if start.elapsed() > ACME_POLL_TIMEOUT {
            return Err(AcmeError::new("timeout", "the CA did not issue in time"));
        }
        sleep(next_delay(client, &mut delay)).await;
    };
    Ok((chain, key.serialize_pem()))
}
