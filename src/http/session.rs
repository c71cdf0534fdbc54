//! Web admin sessions (in memory) and the login rate limiter.
//!
//! Why: a session cookie carries only a random ID; what it grants (full
//! admin, or "setup only" after the one-time token) lives here, with its CSRF
//! token and a one-shot flash message for the page after a redirect. Login
//! attempts are limited per client IP in a small fixed table, so guessing is
//! slow and the table cannot grow.
//!
//! What must hold: IDs and CSRF tokens come from the system RNG
//! (`auth::random_token`); a session expires after `SESSION_IDLE` without
//! use and after `SESSION_MAX_AGE` in any case; both tables are bounded
//! (`MAX_SESSIONS`, `LOGIN_LIMITER_SLOTS`), evicting the oldest entry; a
//! poisoned lock is recovered, never a panic. Time is passed in, for tests.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{
    LOGIN_FREE_FAILURES, LOGIN_LIMITER_SLOTS, LOGIN_LOCKOUT_BASE, LOGIN_LOCKOUT_MAX,
    LOGIN_LOCKOUT_RESET, MAX_SESSIONS, SESSION_IDLE, SESSION_MAX_AGE, TOKEN_BYTES,
};
use crate::auth;
use crate::error::Error;

/// What a session may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Logged in with the setup token: may only set the first password.
    Setup,
    /// Logged in with the admin password.
    Admin,
}

/// A message shown once on the next page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flash {
    /// Lines: (`ok` | `warn` | `err`, stable code or empty, message).
    pub lines: Vec<(&'static str, String, String)>,
}

impl Flash {
    /// One line.
    pub fn one(class: &'static str, code: &str, message: impl Into<String>) -> Flash {
        Flash {
            lines: vec![(class, code.to_owned(), message.into())],
        }
    }
}

#[derive(Debug, Clone)]
struct Session {
    grant: Grant,
    csrf: String,
    created: Instant,
    last_used: Instant,
    flash: Option<Flash>,
}

/// A valid session, as seen by a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    /// Session ID (the cookie value).
    pub id: String,
    /// What it may do.
    pub grant: Grant,
    /// Its CSRF token.
    pub csrf: String,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    ip: IpAddr,
    failures: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
}

/// Process-wide state of the web admin.
pub struct WebState {
    sessions: Mutex<HashMap<String, Session>>,
    limiter: Mutex<Vec<Slot>>,
}

impl Default for WebState {
    fn default() -> Self {
        WebState::new()
    }
}

impl WebState {
    /// Empty tables.
    pub fn new() -> WebState {
        WebState {
            sessions: Mutex::new(HashMap::new()),
            limiter: Mutex::new(Vec::with_capacity(LOGIN_LIMITER_SLOTS)),
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.limiter.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start a session (evicting the least recently used one when full).
    pub fn create(&self, grant: Grant, now: Instant) -> Result<SessionView, Error> {
        let id = auth::random_token(TOKEN_BYTES)?;
        let csrf = auth::random_token(TOKEN_BYTES)?;
        let mut sessions = self.sessions();
        sessions.retain(|_, s| alive(s, now));
        if sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                sessions.remove(&k);
            }
        }
        sessions.insert(
            id.clone(),
            Session {
                grant,
                csrf: csrf.clone(),
                created: now,
                last_used: now,
                flash: None,
            },
        );
        Ok(SessionView { id, grant, csrf })
    }

    /// The live session with this ID (and mark it used).
    pub fn get(&self, id: &str, now: Instant) -> Option<SessionView> {
        let mut sessions = self.sessions();
        let session = sessions.get_mut(id)?;
        if !alive(session, now) {
            sessions.remove(id);
            return None;
        }
        session.last_used = now;
        Some(SessionView {
            id: id.to_owned(),
            grant: session.grant,
            csrf: session.csrf.clone(),
        })
    }

    /// End one session.
    pub fn remove(&self, id: &str) {
        self.sessions().remove(id);
    }

    /// End every session but `keep` (after a password change).
    pub fn remove_others(&self, keep: &str) {
        self.sessions().retain(|k, _| k == keep);
    }

    /// Store a message for the session's next page.
    pub fn set_flash(&self, id: &str, flash: Flash) {
        if let Some(s) = self.sessions().get_mut(id) {
            s.flash = Some(flash);
        }
    }

    /// Take the session's message.
    pub fn take_flash(&self, id: &str) -> Option<Flash> {
        self.sessions().get_mut(id).and_then(|s| s.flash.take())
    }

    /// Number of live sessions (tests, diagnostics).
    pub fn session_count(&self) -> usize {
        self.sessions().len()
    }

    /// `Err(wait)` while this IP is locked out.
    pub fn login_allowed(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let slots = self.slots();
        match slots
            .iter()
            .find(|s| s.ip == ip)
            .and_then(|s| s.locked_until)
        {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Count a failed login; returns the lockout it causes, if any.
    pub fn login_failed(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let mut slots = self.slots();
        let index = match slots.iter().position(|s| s.ip == ip) {
            Some(i) => i,
            None => {
                let fresh = Slot {
                    ip,
                    failures: 0,
                    last_failure: now,
                    locked_until: None,
                };
                if slots.len() < LOGIN_LIMITER_SLOTS {
                    slots.push(fresh);
                    slots.len() - 1
                } else {
                    // Replace the entry whose last failure is oldest.
                    let i = slots
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, s)| s.last_failure)
                        .map(|(i, _)| i)
                        .unwrap_or(0);
                    if let Some(slot) = slots.get_mut(i) {
                        *slot = fresh;
                    }
                    i
                }
            }
        };
        let slot = slots.get_mut(index)?;
        if now.saturating_duration_since(slot.last_failure) > LOGIN_LOCKOUT_RESET {
            slot.failures = 0;
        }
        slot.failures = slot.failures.saturating_add(1);
        slot.last_failure = now;
        let lockout = lockout_for(slot.failures);
        slot.locked_until = lockout.map(|d| now + d);
        lockout
    }

    /// Forget the failures of an IP after a successful login.
    pub fn login_succeeded(&self, ip: IpAddr) {
        self.slots().retain(|s| s.ip != ip);
    }
}

fn alive(s: &Session, now: Instant) -> bool {
    now.saturating_duration_since(s.last_used) < SESSION_IDLE
        && now.saturating_duration_since(s.created) < SESSION_MAX_AGE
}

/// No delay for the first `LOGIN_FREE_FAILURES` failures, then a lockout
/// doubling from `LOGIN_LOCKOUT_BASE` up to `LOGIN_LOCKOUT_MAX`.
pub fn lockout_for(failures: u32) -> Option<Duration> {
    let over = failures.checked_sub(LOGIN_FREE_FAILURES)?;
    if over == 0 {
        return None;
    }
    let factor = 1u32.checked_shl(over - 1).unwrap_or(u32::MAX);
    Some(
        LOGIN_LOCKOUT_BASE
            .checked_mul(factor)
            .unwrap_or(LOGIN_LOCKOUT_MAX)
            .min(LOGIN_LOCKOUT_MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn sessions_expire_when_idle_and_when_old() {
        let web = WebState::new();
        let t0 = Instant::now();
        let s = web.create(Grant::Admin, t0).unwrap();
        assert_eq!(s.id.len(), 43);
        assert_ne!(s.id, s.csrf);
        assert_eq!(web.get(&s.id, t0 + SESSION_IDLE / 2), Some(s.clone()));
        // Used at IDLE/2, so still alive at IDLE.
        assert!(web.get(&s.id, t0 + SESSION_IDLE).is_some());
        assert!(web.get(&s.id, t0 + SESSION_IDLE * 3).is_none());
        assert!(web.get(&s.id, t0).is_none(), "an expired session is gone");

        let s = web.create(Grant::Admin, t0).unwrap();
        let mut t = t0;
        while t < t0 + SESSION_MAX_AGE {
            assert!(web.get(&s.id, t).is_some());
            t += SESSION_IDLE / 2;
        }
        assert!(web.get(&s.id, t0 + SESSION_MAX_AGE).is_none());
        assert!(web.get("no-such-id", t0).is_none());
    }

    #[test]
    fn session_table_is_bounded() {
        let web = WebState::new();
        let t0 = Instant::now();
        let first = web.create(Grant::Admin, t0).unwrap();
        for i in 1..=MAX_SESSIONS {
            web.create(Grant::Admin, t0 + Duration::from_millis(i as u64))
                .unwrap();
        }
        assert_eq!(web.session_count(), MAX_SESSIONS);
        assert!(web.get(&first.id, t0 + Duration::from_secs(1)).is_none());
    }

    #[test]
    fn flash_is_shown_once_and_logout_removes() {
        let web = WebState::new();
        let now = Instant::now();
        let a = web.create(Grant::Admin, now).unwrap();
        let b = web.create(Grant::Setup, now).unwrap();
        web.set_flash(&a.id, Flash::one("ok", "", "done"));
        assert_eq!(web.take_flash(&a.id).unwrap().lines[0].2, "done");
        assert_eq!(web.take_flash(&a.id), None);
        web.remove_others(&a.id);
        assert!(web.get(&b.id, now).is_none());
        web.remove(&a.id);
        assert!(web.get(&a.id, now).is_none());
    }

    #[test]
    fn lockout_grows_and_is_capped() {
        for n in 0..=LOGIN_FREE_FAILURES {
            assert_eq!(lockout_for(n), None);
        }
        assert_eq!(
            lockout_for(LOGIN_FREE_FAILURES + 1),
            Some(LOGIN_LOCKOUT_BASE)
        );
        assert_eq!(
            lockout_for(LOGIN_FREE_FAILURES + 2),
            Some(LOGIN_LOCKOUT_BASE * 2)
        );
        assert_eq!(lockout_for(u32::MAX), Some(LOGIN_LOCKOUT_MAX));
        assert_eq!(
            lockout_for(LOGIN_FREE_FAILURES + 40),
            Some(LOGIN_LOCKOUT_MAX)
        );
    }

    #[test]
    fn limiter_locks_out_one_ip_only_and_forgives_success() {
        let web = WebState::new();
        let now = Instant::now();
        for _ in 0..LOGIN_FREE_FAILURES {
            assert_eq!(web.login_failed(ip(1), now), None);
            assert!(web.login_allowed(ip(1), now).is_ok());
        }
        assert_eq!(web.login_failed(ip(1), now), Some(LOGIN_LOCKOUT_BASE));
        assert_eq!(web.login_allowed(ip(1), now), Err(LOGIN_LOCKOUT_BASE));
        assert!(web.login_allowed(ip(2), now).is_ok());
        assert!(web.login_allowed(ip(1), now + LOGIN_LOCKOUT_BASE).is_ok());
        // The next failure doubles the lockout.
        let later = now + LOGIN_LOCKOUT_BASE;
        assert_eq!(web.login_failed(ip(1), later), Some(LOGIN_LOCKOUT_BASE * 2));
        web.login_succeeded(ip(1));
        assert!(web.login_allowed(ip(1), later).is_ok());
        assert_eq!(web.login_failed(ip(1), later), None);
    }

    #[test]
    fn limiter_forgets_old_failures() {
        let web = WebState::new();
        let now = Instant::now();
        for _ in 0..LOGIN_FREE_FAILURES {
            web.login_failed(ip(1), now);
        }
        let much_later = now + LOGIN_LOCKOUT_RESET + Duration::from_secs(1);
        assert_eq!(web.login_failed(ip(1), much_later), None);
    }

    #[test]
    fn limiter_table_is_bounded() {
        let web = WebState::new();
        let now = Instant::now();
        for _ in 0..=LOGIN_FREE_FAILURES {
            web.login_failed(ip(0), now);
        }
        assert!(web.login_allowed(ip(0), now).is_err());
        for i in 0..LOGIN_LIMITER_SLOTS {
            let addr = IpAddr::from([10, 0, (i >> 8) as u8, i as u8]);
            web.login_failed(addr, now + Duration::from_millis(1 + i as u64));
        }
        assert_eq!(web.slots().len(), LOGIN_LIMITER_SLOTS);
        // The oldest entry (ip 0) was replaced.
        assert!(web.login_allowed(ip(0), now).is_ok());
    }
}
