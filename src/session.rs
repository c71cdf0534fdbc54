//! Web admin sessions (in memory) and the login rate limiter.
//!
//! Why: a session cookie carries only a random ID; what it grants (full
//! admin, or "setup only" after the one-time token) lives here, with its CSRF
//! token and a one-shot flash message for the page after a redirect. Login
//! attempts are limited per client IP in a small fixed table, so guessing is
//! slow and the table cannot grow.
//!
//! The login limiter: every attempt (login form or HTTP Basic, the same path)
//! first takes a `LoginAttempt` from `WebState::begin_login`. Under the
//! limiter's one lock that refuses the attempt (an IP locked out; an IP with
//! a check already running; `MAX_CONCURRENT_PASSWORD_CHECKS` checks running
//! in all) or reserves it: the attempt is counted as a failure, and the
//! lockout that failure would cause is set, before the password hash is
//! checked. Only `LoginAttempt::succeeded` takes that back (it forgets the
//! IP's failures); a failed check, or an attempt dropped unfinished, stays
//! counted and restarts the lockout from its end. So parallel guesses cannot
//! overtake the count: one IP gets at most `LOGIN_FREE_FAILURES + 1` checks
//! before its first lockout, however many it sends at once, and the PBKDF2
//! work (`auth::check_password`) is bounded per IP and in all.
//!
//! What must hold: IDs and CSRF tokens come from the system RNG
//! (`auth::random_token`); a session expires after `SESSION_IDLE` without
//! use and after `SESSION_MAX_AGE` in any case; both tables are bounded
//! (`MAX_SESSIONS`, `LOGIN_LIMITER_SLOTS`), evicting the oldest entry (never
//! one with a check running); a poisoned lock is recovered, never a panic.
//! Time is passed in, for tests.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::auth;
use crate::error::Error;
use crate::limits::{LOGIN_BUSY_RETRY_AFTER, MAX_CONCURRENT_PASSWORD_CHECKS};
use crate::limits::{
    LOGIN_FREE_FAILURES, LOGIN_LIMITER_SLOTS, LOGIN_LOCKOUT_BASE, LOGIN_LOCKOUT_MAX,
    LOGIN_LOCKOUT_RESET, MAX_SESSIONS, SESSION_IDLE, SESSION_MAX_AGE, TOKEN_BYTES,
};

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
    /// Attempts counted (reserved ones included) since the last success.
    failures: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
    /// A check for this IP is running (at most one).
    checking: bool,
}

/// The login limiter's table, under one lock.
#[derive(Debug, Default)]
struct Limiter {
    slots: Vec<Slot>,
    /// Checks running over all IPs (at most `MAX_CONCURRENT_PASSWORD_CHECKS`).
    checking: usize,
}

/// Why a login attempt was refused before any check (nothing was counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefused {
    /// Too many failed logins from this IP: locked out for this long more
    /// (429 `rate-limited`).
    LockedOut(Duration),
    /// Another login from this IP is being checked; one at a time
    /// (429 `rate-limited`).
    InFlight,
    /// `MAX_CONCURRENT_PASSWORD_CHECKS` logins are being checked already,
    /// from other IPs: the server is busy, not this client at fault
    /// (503 `busy`).
    Busy,
}

impl LoginRefused {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            LoginRefused::LockedOut(_) | LoginRefused::InFlight => "rate-limited",
            LoginRefused::Busy => "busy",
        }
    }

    /// HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            LoginRefused::LockedOut(_) | LoginRefused::InFlight => 429,
            LoginRefused::Busy => 503,
        }
    }

    /// When to try again (the `Retry-After` header).
    pub fn retry_after(&self) -> Duration {
        match self {
            LoginRefused::LockedOut(wait) => *wait,
            LoginRefused::InFlight | LoginRefused::Busy => LOGIN_BUSY_RETRY_AFTER,
        }
    }

    /// `Retry-After` in whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let wait = self.retry_after();
        wait.as_secs()
            .saturating_add(u64::from(wait.subsec_nanos() > 0))
            .max(1)
    }

    /// A sentence for the user.
    pub fn message(&self) -> String {
        let secs = self.retry_after_secs();
        match self {
            LoginRefused::LockedOut(_) => format!(
                "too many failed logins from this address; try again in {secs} s"
            ),
            LoginRefused::InFlight => format!(
                "another login from this address is being checked; one at a time, try again in {secs} s"
            ),
            LoginRefused::Busy => format!(
                "too many logins are being checked at once; try again in {secs} s"
            ),
        }
    }
}

/// A login attempt reserved by `WebState::begin_login`: already counted as a
/// failure of its IP. `succeeded` forgets the IP's failures; `failed`, or
/// dropping it unfinished, keeps the count and restarts the lockout from
/// then. Either way its check slot is given back. It may move to the thread
/// that runs the hash, so the slot is held exactly as long as the hash runs.
#[derive(Debug)]
pub struct LoginAttempt {
    web: Arc<WebState>,
    ip: IpAddr,
    done: bool,
}

impl LoginAttempt {
    /// The password or token was right.
    pub fn succeeded(mut self) {
        self.done = true;
        self.web.finish_login(self.ip, true, Instant::now());
    }

    /// The password or token was wrong: the lockout this causes, if any,
    /// counted from `now`.
    pub fn failed(mut self, now: Instant) -> Option<Duration> {
        self.done = true;
        self.web.finish_login(self.ip, false, now)
    }
}

impl Drop for LoginAttempt {
    fn drop(&mut self) {
        if !self.done {
            self.web.finish_login(self.ip, false, Instant::now());
        }
    }
}

/// Process-wide state of the web admin.
pub struct WebState {
    sessions: Mutex<HashMap<String, Session>>,
    limiter: Mutex<Limiter>,
}

impl std::fmt::Debug for WebState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the session IDs.
        f.write_str("WebState")
    }
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
            limiter: Mutex::new(Limiter {
                slots: Vec::with_capacity(LOGIN_LIMITER_SLOTS),
                checking: 0,
            }),
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, Limiter> {
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

    /// Reserve one login attempt from `ip` (see the module header), or say
    /// why not. Nothing is counted for a refused attempt.
    pub fn begin_login(
        self: &Arc<Self>,
        ip: IpAddr,
        now: Instant,
    ) -> Result<LoginAttempt, LoginRefused> {
        let mut limiter = self.limiter();
        let found = limiter.slots.iter().position(|s| s.ip == ip);
        if let Some(slot) = found.and_then(|i| limiter.slots.get(i)) {
            match slot.locked_until {
                Some(until) if until > now => return Err(LoginRefused::LockedOut(until - now)),
                _ => {}
            }
            if slot.checking {
                return Err(LoginRefused::InFlight);
            }
        }
        if limiter.checking >= MAX_CONCURRENT_PASSWORD_CHECKS {
            return Err(LoginRefused::Busy);
        }
        let index = match found {
            Some(i) => i,
            None => limiter.new_slot(ip, now).ok_or(LoginRefused::Busy)?,
        };
        let slot = limiter.slots.get_mut(index).ok_or(LoginRefused::Busy)?;
        if now.saturating_duration_since(slot.last_failure) > LOGIN_LOCKOUT_RESET {
            slot.failures = 0;
        }
        // Counted now, before the check: only `succeeded` takes it back.
        slot.failures = slot.failures.saturating_add(1);
        slot.last_failure = now;
        slot.locked_until = lockout_for(slot.failures).map(|d| now + d);
        slot.checking = true;
        limiter.checking += 1;
        Ok(LoginAttempt {
            web: self.clone(),
            ip,
            done: false,
        })
    }

    /// End a reserved attempt: give its check slot back; forget the IP's
    /// failures after a success; restart the lockout from `now` after a
    /// failure (the check may have outlasted the lockout set at reservation).
    fn finish_login(&self, ip: IpAddr, ok: bool, now: Instant) -> Option<Duration> {
        let mut limiter = self.limiter();
        limiter.checking = limiter.checking.saturating_sub(1);
        let index = limiter.slots.iter().position(|s| s.ip == ip)?;
        if ok {
            limiter.slots.swap_remove(index);
            return None;
        }
        let slot = limiter.slots.get_mut(index)?;
        slot.checking = false;
        slot.last_failure = now;
        let lockout = lockout_for(slot.failures);
        slot.locked_until = lockout.map(|d| now + d);
        lockout
    }

    /// Checks running now (tests, diagnostics).
    pub fn checks_running(&self) -> usize {
        self.limiter().checking
    }
}

impl Limiter {
    /// A fresh slot for `ip`; when the table is full it replaces the slot
    /// whose last failure is oldest, never one with a check running.
    fn new_slot(&mut self, ip: IpAddr, now: Instant) -> Option<usize> {
        let fresh = Slot {
            ip,
            failures: 0,
            last_failure: now,
            locked_until: None,
            checking: false,
        };
        if self.slots.len() < LOGIN_LIMITER_SLOTS {
            self.slots.push(fresh);
            return Some(self.slots.len() - 1);
        }
        let i = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.checking)
            .min_by_key(|(_, s)| s.last_failure)
            .map(|(i, _)| i)?;
        *self.slots.get_mut(i)? = fresh;
        Some(i)
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

    /// A failed check from `ip` at `now`: the lockout it causes.
    fn fail(web: &Arc<WebState>, addr: IpAddr, now: Instant) -> Option<Duration> {
        web.begin_login(addr, now).unwrap().failed(now)
    }

    #[test]
    fn limiter_locks_out_one_ip_only_and_forgives_success() {
        let web = Arc::new(WebState::new());
        let now = Instant::now();
        for _ in 0..LOGIN_FREE_FAILURES {
            assert_eq!(fail(&web, ip(1), now), None);
        }
        assert_eq!(fail(&web, ip(1), now), Some(LOGIN_LOCKOUT_BASE));
        assert_eq!(
            web.begin_login(ip(1), now).unwrap_err(),
            LoginRefused::LockedOut(LOGIN_LOCKOUT_BASE)
        );
        assert!(web.begin_login(ip(2), now).is_ok());
        // The next failure doubles the lockout.
        let later = now + LOGIN_LOCKOUT_BASE;
        assert_eq!(fail(&web, ip(1), later), Some(LOGIN_LOCKOUT_BASE * 2));
        let later = later + LOGIN_LOCKOUT_BASE * 2;
        web.begin_login(ip(1), later).unwrap().succeeded();
        assert_eq!(fail(&web, ip(1), later), None, "a success forgets");
        assert_eq!(web.checks_running(), 0);
    }

    #[test]
    fn an_attempt_is_counted_before_its_check() {
        let web = Arc::new(WebState::new());
        let now = Instant::now();
        for _ in 0..LOGIN_FREE_FAILURES {
            assert_eq!(fail(&web, ip(1), now), None);
        }
        // The attempt that will cause the lockout locks the IP as soon as
        // it is reserved, while its check still runs.
        let sixth = web.begin_login(ip(1), now).unwrap();
        assert_eq!(
            web.begin_login(ip(1), now).unwrap_err(),
            LoginRefused::LockedOut(LOGIN_LOCKOUT_BASE)
        );
        // A slow check: the lockout runs from its end.
        let end = now + LOGIN_LOCKOUT_BASE * 3;
        assert_eq!(sixth.failed(end), Some(LOGIN_LOCKOUT_BASE));
        assert_eq!(
            web.begin_login(ip(1), end + LOGIN_LOCKOUT_BASE / 2)
                .unwrap_err(),
            LoginRefused::LockedOut(LOGIN_LOCKOUT_BASE / 2)
        );
        // An attempt dropped unfinished (its request cancelled) stays counted.
        let later = end + LOGIN_LOCKOUT_BASE;
        drop(web.begin_login(ip(1), later).unwrap());
        let slot = *web.limiter().slots.iter().find(|s| s.ip == ip(1)).unwrap();
        assert_eq!(slot.failures, LOGIN_FREE_FAILURES + 2);
        assert!(!slot.checking && slot.locked_until.is_some());
        assert_eq!(web.checks_running(), 0);
    }

    #[test]
    fn one_check_per_ip_and_a_global_bound() {
        let web = Arc::new(WebState::new());
        let now = Instant::now();
        let first = web.begin_login(ip(1), now).unwrap();
        let refused = web.begin_login(ip(1), now).unwrap_err();
        assert_eq!(refused, LoginRefused::InFlight);
        assert_eq!((refused.status(), refused.code()), (429, "rate-limited"));
        assert_eq!(refused.retry_after_secs(), 1);
        let mut running = vec![first];
        for n in 2..=MAX_CONCURRENT_PASSWORD_CHECKS {
            running.push(web.begin_login(ip(n as u8), now).unwrap());
        }
        let busy = web.begin_login(ip(200), now).unwrap_err();
        assert_eq!(busy, LoginRefused::Busy);
        assert_eq!((busy.status(), busy.code()), (503, "busy"));
        assert_eq!(web.checks_running(), MAX_CONCURRENT_PASSWORD_CHECKS);
        // Refusals counted nothing: ip(200) has no slot, ip(1) one failure.
        running.pop().unwrap().succeeded();
        running.pop().unwrap().failed(now);
        assert!(web.begin_login(ip(200), now).is_ok());
        assert_eq!(
            web.limiter()
                .slots
                .iter()
                .find(|s| s.ip == ip(1))
                .map(|s| s.failures),
            Some(1)
        );
    }

    #[test]
    fn refusals_say_when_to_retry() {
        let locked = LoginRefused::LockedOut(Duration::from_millis(1500));
        assert_eq!(locked.retry_after_secs(), 2);
        assert!(locked.message().contains("in 2 s"));
        assert_eq!(
            LoginRefused::LockedOut(Duration::ZERO).retry_after_secs(),
            1
        );
    }

    #[test]
    fn limiter_forgets_old_failures() {
        let web = Arc::new(WebState::new());
        let now = Instant::now();
        for _ in 0..LOGIN_FREE_FAILURES {
            fail(&web, ip(1), now);
        }
        let much_later = now + LOGIN_LOCKOUT_RESET + Duration::from_secs(1);
        assert_eq!(fail(&web, ip(1), much_later), None);
    }

    #[test]
    fn limiter_table_is_bounded() {
        let web = Arc::new(WebState::new());
        let now = Instant::now();
        for _ in 0..=LOGIN_FREE_FAILURES {
            fail(&web, ip(0), now);
        }
        assert!(web.begin_login(ip(0), now).is_err());
        // A check running keeps its slot whatever its age.
        let running = web.begin_login(ip(9), now).unwrap();
        for i in 0..LOGIN_LIMITER_SLOTS {
            let addr = IpAddr::from([10, 0, (i >> 8) as u8, i as u8]);
            fail(&web, addr, now + Duration::from_millis(1 + i as u64));
        }
        assert_eq!(web.limiter().slots.len(), LOGIN_LIMITER_SLOTS);
        assert!(web.limiter().slots.iter().any(|s| s.ip == ip(9)));
        drop(running);
        // The oldest entry (ip 0) was replaced.
        assert!(web.begin_login(ip(0), now).is_ok());
    }
}
