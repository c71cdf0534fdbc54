//! The renewal timer of `serve`: checks every name set, orders what is due.
//!
//! Why: certificates must stay valid without an admin (issue 5; certmagic
//! `maintain.go` has the same shape), and `acme status` must tell the truth
//! about when the next attempt happens (issue 11). One clock
//! (`acme::attempt_at`): a set is due when it has no ACME certificate, when
//! forced, at the CA's ARI pick (RFC 9773), else when under 1/3 of the
//! lifetime is left (1/2 under 10 days) — never before the end of a
//! failure's back-off. The loop sleeps until the earliest of the next
//! periodic check (`check_interval`, default 6 h, plus jitter) and the
//! earliest due time of any set, and re-plans at once when woken by a
//! command (`Command::effect`). A change that can cure failures
//! (`Command::cures_failures`) ends all back-offs first
//! (`acme::clear_backoffs`, in the daemon's write path).
//!
//! What must hold: one loop runs all orders one after the other, so
//! concurrent triggers for the same names run once; a named lease in the
//! store is taken and the need re-checked before ordering (clustered stores);
//! failures back off doubling up to `ACME_BACKOFF_MAX_SECS`, are logged and
//! kept in the status, and never remove the served certificate. Before the
//! first check, DNS-01 TXT records that a stopped daemon left are removed
//! (`issue::remove_leftover_txt`).

use std::sync::Arc;
use std::time::Duration;

use smol::future::FutureExt as _;

use super::issue::{issue, Listeners};
use crate::acme::{AcmeError, ErrorInfo, Target};
use crate::clock;
use crate::daemon::Shared;
use crate::limits::{
    ACME_BACKOFF_BASE_SECS, ACME_BACKOFF_MAX_SECS, ACME_JITTER_DIVISOR, ACME_LEASE_SECS,
    ACME_MIN_RESCHEDULE_SECS,
};

/// The wait before the next attempt: the back-off, or longer when the CA
/// asked for it with Retry-After (capped like the back-off).
pub fn next_wait(failures: u32, retry_after: Option<u64>) -> i64 {
    let asked = retry_after
        .map(|s| i64::try_from(s).unwrap_or(i64::MAX))
        .unwrap_or(0)
        .min(ACME_BACKOFF_MAX_SECS);
    backoff_secs(failures).max(asked)
}

/// Back-off after `failures` failures in a row.
pub fn backoff_secs(failures: u32) -> i64 {
    let shift = failures.saturating_sub(1).min(30);
    ACME_BACKOFF_BASE_SECS
        .saturating_mul(1i64 << shift)
        .min(ACME_BACKOFF_MAX_SECS)
}

fn jitter(interval: u64) -> Duration {
    let span_ms = interval.saturating_mul(1000) / ACME_JITTER_DIVISOR;
    let mut b = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    Duration::from_millis(u64::from_le_bytes(b) % span_ms.max(1))
}

/// This node's name as a lease holder (`ops::node_id`, kept in the data
/// directory).
pub fn node_id(data_dir: &std::path::Path) -> String {
    crate::ops::node_id(data_dir)
}

/// The renewal loop; runs until the daemon stops. `holder` names this node
/// in leases (`node_id`).
///
/// One clock: after each pass the loop sleeps until the earliest of the next
/// periodic check (`check_interval` plus jitter) and the earliest
/// `acme::attempt_at` of any name set (renewal time or end of back-off), or
/// until woken (`Command::effect`), and then re-plans.
pub async fn run(shared: Arc<Shared>, listeners: Listeners, holder: String) {
    let wake = shared.acme_wake_receiver();
    // What a daemon stopped mid-order left in DNS zones goes first.
    super::issue::remove_leftover_txt(&shared).await;
    let mut next_periodic: Option<std::time::Instant> = None;
    loop {
        let settings = {
            let s = shared.clone();
            smol::unblock(move || crate::acme::settings(s.store())).await
        };
        let periodic_due = next_periodic.is_none_or(|t| std::time::Instant::now() >= t);
        let (interval, enabled) = match settings {
            Ok(settings) => {
                if settings.enabled {
                    super::issue::sync_account(&shared, &settings).await;
                    check_once(&shared, &settings, listeners, &holder).await;
                }
                (settings.check_interval, settings.enabled)
            }
            Err(e) => {
                log::warn!("ACME: cannot read settings: {e}");
                (crate::limits::ACME_DEFAULT_CHECK_INTERVAL_SECS, false)
            }
        };
        if periodic_due {
            next_periodic =
                Some(std::time::Instant::now() + Duration::from_secs(interval) + jitter(interval));
        }
        let mut wait = next_periodic
            .map(|t| t.saturating_duration_since(std::time::Instant::now()))
            .unwrap_or_default();
        if enabled {
            let s = shared.clone();
            match smol::unblock(move || crate::acme::next_due(s.store())).await {
                Ok(Some(at)) => wait = wait.min(until(at)),
                Ok(None) => {}
                Err(e) => log::warn!("ACME: cannot plan the next attempt: {e}"),
            }
        }
        log::debug!("ACME: next pass in {} ms", wait.as_millis());
        async {
            smol::Timer::after(wait).await;
        }
        .or(async {
            let _ = wake.recv().await;
        })
        .await;
    }
}

/// The sleep until Unix second `at` (the first instant `clock::now() >= at`
/// holds); `ACME_MIN_RESCHEDULE_SECS` when `at` has passed (a set still due
/// right after a pass: its lease is held elsewhere, or the store failed).
fn until(at: i64) -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    match u64::try_from(at) {
        Ok(at) if Duration::from_secs(at) > now => Duration::from_secs(at) - now,
        Ok(_) | Err(_) => Duration::from_secs(ACME_MIN_RESCHEDULE_SECS),
    }
}

/// One pass over all name sets.
pub async fn check_once(
    shared: &Arc<Shared>,
    settings: &crate::acme::AcmeSettings,
    listeners: Listeners,
    holder: &str,
) {
    let targets = {
        let s = shared.clone();
        smol::unblock(move || crate::acme::targets(s.store())).await
    };
    let targets = match targets {
        Ok(t) => t,
        Err(e) => {
            log::warn!("ACME: cannot list names: {e}");
            return;
        }
    };
    let client = {
        let s = shared.clone();
        smol::unblock(move || crate::outbound::Client::from_store(s.store())).await
    };
    // RFC 9773 §3: ARI only when the directory offers renewalInfo.
    let ari_url = match &client {
        Ok(c) => match super::ari::renewal_info_url(c, &settings.directory).await {
            Ok(url) => url,
            Err(e) => {
                log::debug!("ACME: no renewal information: {e}");
                None
            }
        },
        Err(_) => None,
    };
    for target in targets {
        if let (Some(url), Ok(c)) = (&ari_url, &client) {
            if let Err(e) = refresh_ari(shared, c, url, &target).await {
                log::info!("ACME: renewal information for {}: {e}", target.key);
            }
        }
        if let Err(e) = renew_one(shared, settings, &target, listeners, holder).await {
            log::warn!("ACME: {}: {e}", target.names.join(", "));
        }
    }
}

/// Fetch the CA's renewal window for the set's current certificate
/// (RFC 9773 §4.2) and keep it in the status.
async fn refresh_ari(
    shared: &Arc<Shared>,
    client: &crate::outbound::Client,
    url: &str,
    target: &Target,
) -> Result<(), crate::Error> {
    let (s, t) = (shared.clone(), target.clone());
    let found = smol::unblock(move || -> Result<_, crate::Error> {
        let store = s.store();
        let Some(cert) = crate::acme::current_cert(store, &t)? else {
            return Ok(None);
        };
        let leaf = store
            .chain(&cert.id)?
            .into_iter()
            .next()
            .unwrap_or_default();
        Ok(Some((cert.id, leaf, crate::acme::status(store, &t.key)?)))
    })
    .await?;
    let Some((cert_id, leaf, st)) = found else {
        return Ok(());
    };
    let previous = st
        .ari
        .filter(|_| st.ari_cert.as_deref() == Some(cert_id.as_str()));
    let choice = super::ari::fetch(client, url, &leaf, previous)
        .await
        .map_err(|e| crate::Error::LimitExceeded(e.message))?;
    if choice == previous {
        return Ok(());
    }
    if let Some(c) = choice {
        log::info!(
            "ACME: renewal window for {} is {} .. {}; renewing after {}",
            target.names.join(", "),
            clock::rfc3339(c.start),
            clock::rfc3339(c.end),
            clock::rfc3339(c.at)
        );
    }
    let key = target.key.clone();
    let s = shared.clone();
    smol::unblock(move || {
        let store = s.store();
        let mut st = crate::acme::status(store, &key)?;
        st.ari = choice;
        st.ari_cert = Some(cert_id);
        crate::acme::put_status(store, &key, &st)
    })
    .await
}

/// Is this set due now (`acme::attempt_at`: renewal time reached and not
/// backing off)?
fn needs_order(shared: &Shared, target: &Target) -> Result<bool, crate::Error> {
    let store = shared.store();
    let st = crate::acme::status(store, &target.key)?;
    let cert = crate::acme::current_cert(store, target)?;
    Ok(clock::now() >= crate::acme::attempt_at(&st, cert.as_ref()))
}

async fn renew_one(
    shared: &Arc<Shared>,
    settings: &crate::acme::AcmeSettings,
    target: &Target,
    listeners: Listeners,
    holder: &str,
) -> Result<(), crate::Error> {
    let (s, t) = (shared.clone(), target.clone());
    if !smol::unblock(move || needs_order(&s, &t)).await? {
        return Ok(());
    }
    let (s, key, h) = (shared.clone(), target.key.clone(), holder.to_owned());
    let taken =
        smol::unblock(move || crate::acme::take_lease(s.store(), &key, &h, ACME_LEASE_SECS))
            .await?;
    if !taken {
        log::info!(
            "ACME: {} is being ordered elsewhere (lease held)",
            target.key
        );
        return Ok(());
    }
    // Re-check after taking the lease: another node may have finished.
    let (s, t) = (shared.clone(), target.clone());
    let still = smol::unblock(move || needs_order(&s, &t)).await;
    let outcome = match still {
        Ok(true) => {
            log::info!(
                "ACME: ordering a certificate for {}",
                target.names.join(", ")
            );
            // The lease is kept alive while the order runs; a node that
            // dies loses it `ACME_LEASE_SECS` later and another takes over.
            let keep = keep_lease_alive(shared, &target.key, holder);
            Some(issue(shared, settings, target, listeners).or(keep).await)
        }
        Ok(false) => None,
        Err(e) => Some(Err(AcmeError::new("store-error", e.to_string()))),
    };
    let (s, t, h) = (shared.clone(), target.clone(), holder.to_owned());
    smol::unblock(move || {
        let store = s.store();
        if let Some(outcome) = outcome {
            record(store, &t, outcome)?;
        }
        crate::acme::release_lease(store, &t.key, &h)
    })
    .await
}

/// Renew the ordering lease every third of `ACME_LEASE_SECS` until dropped
/// (it never completes; raced against the order). A lost lease is logged.
async fn keep_lease_alive<T>(shared: &Arc<Shared>, key: &str, holder: &str) -> T {
    let every = Duration::from_secs(u64::try_from(ACME_LEASE_SECS / 3).unwrap_or(1).max(1));
    loop {
        smol::Timer::after(every).await;
        let (s, k, h) = (shared.clone(), key.to_owned(), holder.to_owned());
        match smol::unblock(move || crate::acme::keep_lease(s.store(), &k, &h, ACME_LEASE_SECS))
            .await
        {
            Ok(true) => {}
            Ok(false) => log::warn!("ACME: the lease on {key} lapsed while ordering"),
            Err(e) => log::warn!("ACME: cannot renew the lease on {key}: {e}"),
        }
    }
}

fn record(
    store: &crate::Store,
    target: &Target,
    outcome: Result<String, AcmeError>,
) -> Result<(), crate::Error> {
    let mut st = crate::acme::status(store, &target.key)?;
    let now = clock::now();
    st.last_attempt = Some(now);
    st.force = false;
    match outcome {
        Ok(id) => {
            log::info!(
                "ACME: certificate {id} issued for {}",
                target.names.join(", ")
            );
            st.state = "valid".into();
            st.failures = 0;
            st.last_error = None;
            st.next_attempt = None;
            st.ari = None;
            st.ari_cert = None;
        }
        Err(e) => {
            st.failures = st.failures.saturating_add(1);
            let wait = next_wait(st.failures, e.retry_after);
            log::warn!(
                "ACME: order for {} failed [{}]: {}; next attempt in {wait} s",
                target.names.join(", "),
                e.code,
                e.message
            );
            st.state = "failed".into();
            st.last_error = Some(ErrorInfo {
                code: e.code.into(),
                message: e.message,
            });
            st.next_attempt = Some(now + wait);
        }
    }
    crate::acme::put_status(store, &target.key, &st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_id_is_kept_in_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let a = node_id(dir.path());
        assert!(a.len() >= 16);
        assert_eq!(node_id(dir.path()), a);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(node_id(other.path()), a);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff_secs(1), ACME_BACKOFF_BASE_SECS);
        assert_eq!(backoff_secs(2), 2 * ACME_BACKOFF_BASE_SECS);
        assert_eq!(backoff_secs(40), ACME_BACKOFF_MAX_SECS);
        assert!(jitter(10) < Duration::from_secs(1));
        assert_eq!(next_wait(1, None), ACME_BACKOFF_BASE_SECS);
        assert_eq!(
            next_wait(1, Some(3600)),
            3600,
            "a rate limit's Retry-After wins"
        );
        assert_eq!(next_wait(3, Some(1)), 4 * ACME_BACKOFF_BASE_SECS);
        assert_eq!(next_wait(1, Some(u64::MAX)), ACME_BACKOFF_MAX_SECS);
    }
}
