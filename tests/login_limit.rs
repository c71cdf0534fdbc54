//! The login limit and the setup token, against the running daemon with
//! default settings (issue 9, item 3).
//!
//! Why: a limit that is checked before the password hash and recorded after
//! it lets parallel guesses through (each guess also costs a PBKDF2 run);
//! the setup token must open one setup session, not any number.
//!
//! How a check is seen from outside: a guess that was checked gets 401
//! `unauthenticated` and one `failed ... login` line in the daemon's log; a
//! guess refused without a check gets 429 `rate-limited` with `Retry-After`.
//! Each burst opens one TLS connection per thread, handshakes, waits at a
//! barrier, then sends its one request, so the guesses really are parallel.
//! Under emulation (`PBX_CERTD_EMULATED`, qemu-user is 5-20x slower) a burst
//! has 20 guesses instead of 60; every wait is bounded by count and time.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

use common::accept_any::{client_config, AcceptAny};
use common::{base64_encode, serve, Pbx};

/// `LOGIN_FREE_FAILURES` in src/limits.rs: failures before lockouts start.
const FREE_FAILURES: usize = 5;

/// Checks one IP may get before the first lockout: the free failures and the
/// one that causes the lockout.
const ALLOWED_CHECKS: usize = FREE_FAILURES + 1;

/// The admin password the tests set.
const PASSWORD: &str = "correct horse battery";

/// Guesses in one burst (fewer when emulated, see the module header).
fn burst_size() -> usize {
    if std::env::var_os("PBX_CERTD_EMULATED").is_some() {
        20
    } else {
        60
    }
}

/// Handshakes a burst runs at once (below the daemon's 16 unproven
/// connections per IP).
const HANDSHAKES_AT_ONCE: usize = 8;

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A finished TLS handshake with the daemon (reads time out after 300 s, a
/// hang guard).
fn connect(addr: SocketAddr) -> Result<Tls, String> {
    let config = client_config(AcceptAny::new(), &[]);
    let name = rustls::pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(300)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| format!("TLS handshake: {e}"))?;
    }
    Ok(tls)
}

/// One HTTP answer.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The session ID from `Set-Cookie`.
    fn session(&self) -> Option<String> {
        let value = self.header("set-cookie")?.split(';').next()?;
        let (_, id) = value.split_once('=')?;
        (!id.is_empty()).then(|| id.to_owned())
    }
}

/// Send `request` (with `Connection: close`) on `tls` and read the answer.
fn exchange(mut tls: Tls, request: &str) -> Result<Answer, String> {
    tls.write_all(request.as_bytes())
        .and_then(|()| tls.flush())
        .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // The daemon may close without close_notify after the answer.
            Err(_) if !raw.is_empty() => break,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
    Ok(Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}

/// One request on a fresh connection.
fn send(addr: SocketAddr, request: &str) -> Answer {
    connect(addr)
        .and_then(|tls| exchange(tls, request))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `GET /api/certs` with HTTP Basic (any user name) and this password.
fn basic(password: &str) -> String {
    let credentials = base64_encode(format!("admin:{password}").as_bytes());
    format!(
        "GET /api/certs HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {credentials}\r\nConnection: close\r\n\r\n"
    )
}

/// `POST /login` with this password (or setup token) in the form.
fn login_form(password: &str, cookie: Option<&str>) -> String {
    let body = format!("password={}", password.replace(' ', "+"));
    let cookie = cookie
        .map(|c| format!("Cookie: __Host-pbx-certd={c}\r\n"))
        .unwrap_or_default();
    format!(
        "POST /login HTTP/1.1\r\nHost: localhost\r\n{cookie}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A GET of `path` with the session cookie.
fn get(path: &str, session: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nCookie: __Host-pbx-certd={session}\r\nConnection: close\r\n\r\n"
    )
}

/// `requests.len()` requests sent at once, each on its own connection
/// (handshakes first, then a barrier): the answers, or why there was none.
fn burst(addr: SocketAddr, requests: Vec<String>) -> Vec<Result<Answer, String>> {
    let barrier = Arc::new(Barrier::new(requests.len()));
    // At most HANDSHAKES_AT_ONCE handshakes run at a time: the daemon drops
    // the oldest unproven connection of an IP past `MAX_UNPROVEN_PER_IP`
    // (16), which a slow (emulated, loaded) machine would otherwise reach.
    // The guesses themselves still go out together after the barrier.
    let slots = Arc::new((
        std::sync::Mutex::new(HANDSHAKES_AT_ONCE),
        std::sync::Condvar::new(),
    ));
    let threads: Vec<_> = requests
        .into_iter()
        .map(|request| {
            let (barrier, slots) = (barrier.clone(), slots.clone());
            std::thread::spawn(move || {
                // Every thread reaches the barrier, even when its handshake
                // failed, so a failure cannot hang the others.
                let (free, freed) = &*slots;
                let mut n = freed.wait_while(free.lock().unwrap(), |n| *n == 0).unwrap();
                *n -= 1;
                drop(n);
                let tls = connect(addr);
                *free.lock().unwrap() += 1;
                freed.notify_one();
                barrier.wait();
                tls.and_then(|tls| exchange(tls, &request))
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| {
            t.join()
                .unwrap_or_else(|_| Err("a burst thread panicked".into()))
        })
        .collect()
}

/// How a burst of wrong guesses was answered.
#[derive(Debug, Default)]
struct Tally {
    /// 401: checked.
    checked: usize,
    /// 429 with `Retry-After`: refused without a check.
    refused: usize,
    /// Anything else: no answer at all, or another status.
    other: Vec<String>,
}

fn tally(answers: &[Result<Answer, String>]) -> Tally {
    let mut t = Tally::default();
    for a in answers {
        match a {
            Ok(a) if a.status == 401 => t.checked += 1,
            Ok(a) if a.status == 429 && a.header("retry-after").is_some() => t.refused += 1,
            Ok(a) => t.other.push(format!("{} {}", a.status, a.body)),
            Err(e) => t.other.push(format!("no answer: {e}")),
        }
    }
    t
}

/// Log lines containing `needle`, read until `want` were seen or nothing
/// new came for a while (bounded: 10 s in all), then whatever is queued.
fn count_log(log: &mpsc::Receiver<String>, needle: &str, want: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = 0;
    while seen < want && Instant::now() < deadline {
        match log.recv_timeout(Duration::from_millis(500)) {
            Ok(line) if line.contains(needle) => seen += 1,
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    seen + log.try_iter().filter(|l| l.contains(needle)).count()
}

/// A daemon on a data dir whose admin password is `PASSWORD`.
fn daemon_with_password(pbx: &Pbx) -> serve::Daemon {
    let out = pbx.run_stdin(&["admin", "password"], format!("{PASSWORD}\n").as_bytes());
    out.success();
    pbx.serve(true)
}

/// Assert a burst of wrong guesses was checked at most `ALLOWED_CHECKS`
/// times, by its answers and by the daemon's log; every other guess was
/// refused with 429; the answers.
fn assert_burst_limited(
    answers: Vec<Result<Answer, String>>,
    log: &mpsc::Receiver<String>,
    log_line: &str,
) -> Vec<Answer> {
    let Tally {
        checked,
        refused,
        other,
    } = tally(&answers);
    eprintln!(
        "burst: {checked} checked (401), {refused} refused (429), {} other",
        other.len()
    );
    assert!(
        checked <= ALLOWED_CHECKS,
        "{checked} of {} parallel wrong guesses from one IP were checked (401), \
         at most {ALLOWED_CHECKS} may be; {refused} were refused (429); {} other: {:?}",
        answers.len(),
        other.len(),
        other.first()
    );
    assert!(other.is_empty(), "guesses neither 401 nor 429: {other:?}");
    assert!(checked >= 1, "no guess was checked at all");
    let logged = count_log(log, log_line, checked);
    assert_eq!(
        logged, checked,
        "the daemon logged {logged} checked failures for {checked} answers 401"
    );
    answers.into_iter().filter_map(Result::ok).collect()
}

#[test]
fn parallel_basic_auth_guesses_are_checked_at_most_the_allowed_number() {
    let pbx = Pbx::new();
    let daemon = daemon_with_password(&pbx);
    let guesses = (0..burst_size())
        .map(|i| basic(&format!("wrong guess {i}")))
        .collect();
    let answers = assert_burst_limited(
        burst(daemon.https, guesses),
        &daemon.log,
        "failed API login from",
    );
    for a in answers.iter().filter(|a| a.status == 429) {
        assert!(a.body.contains("\"rate-limited\""), "{a:?}");
    }
}

#[test]
fn parallel_login_form_guesses_are_checked_at_most_the_allowed_number() {
    let pbx = Pbx::new();
    let daemon = daemon_with_password(&pbx);
    let guesses = (0..burst_size())
        .map(|i| login_form(&format!("wrong guess {i}"), None))
        .collect();
    let answers = assert_burst_limited(
        burst(daemon.https, guesses),
        &daemon.log,
        "failed login from",
    );
    for a in &answers {
        assert!(a.session().is_none(), "a wrong guess got a session: {a:?}");
        if a.status == 429 {
            assert!(a.body.contains("rate-limited"), "{a:?}");
        }
    }
}

#[test]
fn right_password_works_after_the_lockout_expires() {
    let pbx = Pbx::new();
    let daemon = daemon_with_password(&pbx);
    // An attacker's burst, then single wrong guesses until the lockout.
    let guesses = (0..burst_size())
        .map(|i| login_form(&format!("wrong guess {i}"), None))
        .collect();
    let t = tally(&burst(daemon.https, guesses));
    assert!(
        t.other.is_empty(),
        "guesses neither 401 nor 429: {:?}",
        t.other
    );
    let mut locked = None;
    for i in 0..4 * ALLOWED_CHECKS {
        let a = send(daemon.https, &basic(&format!("single wrong guess {i}")));
        match a.status {
            401 => {}
            429 => {
                locked = Some(a);
                break;
            }
            _ => panic!("a wrong guess got neither 401 nor 429: {a:?}"),
        }
    }
    let locked = locked.expect("wrong guesses never led to a lockout");
    // Wait the lockout out as a client does, following Retry-After; a lockout
    // longer than 30 s means the burst counted far more than its checks.
    let mut waited = 0u64;
    let mut retry_after = locked.header("retry-after").map(str::to_owned);
    let mut answer = None;
    for _ in 0..10 {
        let secs: u64 = retry_after
            .as_deref()
            .and_then(|s| s.parse().ok())
            .expect("429 with a numeric Retry-After");
        waited += secs;
        assert!(
            waited <= 30,
            "locked out for {waited} s or more after one burst and {ALLOWED_CHECKS} checks \
             (Retry-After: {secs})"
        );
        std::thread::sleep(Duration::from_secs(secs));
        let a = send(daemon.https, &basic(PASSWORD));
        if a.status != 429 {
            answer = Some(a);
            break;
        }
        retry_after = a.header("retry-after").map(str::to_owned);
    }
    let a = answer.expect("still locked out after 10 waits");
    assert_eq!(a.status, 200, "the right password after the lockout: {a:?}");
    // The success forgot the failures: the login form works, and a typo is
    // a plain 401 again.
    let a = send(daemon.https, &login_form(PASSWORD, None));
    assert_eq!(
        (a.status, a.header("location")),
        (303, Some("/certs")),
        "{a:?}"
    );
    assert!(a.session().is_some());
    assert_eq!(send(daemon.https, &basic("a typo")).status, 401);
}

#[test]
fn setup_token_works_once() {
    let pbx = Pbx::new();
    let daemon = pbx.serve(true);
    let token = daemon
        .setup_token()
        .expect("serve logs setup-token=... while no password is set");

    // A wrong token does not use it up.
    assert_eq!(
        send(daemon.https, &login_form("not-the-token", None)).status,
        401
    );
    // The token opens one setup session...
    let first = send(daemon.https, &login_form(&token, None));
    assert_eq!(
        (first.status, first.header("location")),
        (303, Some("/password")),
        "{first:?}"
    );
    let session = first.session().expect("a setup session");
    // ... and no second one.
    let second = send(daemon.https, &login_form(&token, None));
    assert_eq!(
        second.status, 401,
        "a second login with the same setup token: {second:?}"
    );
    assert!(second.session().is_none());
    assert!(
        second.body.contains("pbx-certd admin password"),
        "the page says how to get in now: {}",
        second.body
    );

    // The first session still sets the password.
    let page = send(daemon.https, &get("/password", &session));
    assert_eq!(page.status, 200, "{page:?}");
    let start = page
        .body
        .find("name=\"csrf\" value=\"")
        .expect("the password form has a CSRF field")
        + "name=\"csrf\" value=\"".len();
    let csrf = page.body[start..].split('"').next().unwrap_or_default();
    let pw = PASSWORD.replace(' ', "+");
    let body = format!("csrf={csrf}&password={pw}&confirm={pw}");
    let set = send(
        daemon.https,
        &format!(
            "POST /password HTTP/1.1\r\nHost: localhost\r\nCookie: __Host-pbx-certd={session}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(
        (set.status, set.header("location")),
        (303, Some("/certs")),
        "{set:?}"
    );
    assert_eq!(send(daemon.https, &basic(PASSWORD)).status, 200);
    assert_eq!(send(daemon.https, &login_form(&token, None)).status, 401);
}
