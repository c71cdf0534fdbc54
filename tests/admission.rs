//! Connection admission and the control socket's bounds, against the running
//! daemon with default settings (issue 9): floods of idle TCP connections, a
//! port-80 slowloris and completed-handshake floods must not lock out other
//! clients or the other listener; the control socket times out slow clients,
//! refuses oversize lines and bounds its clients and buffers.
//!
//! Clients that must look like other hosts bind their socket to another
//! loopback address (127.0.0.2, 127.0.1.x, ...) before connecting; the
//! daemon listens on 127.0.0.1 only. `rustix::net` (bind before connect) is
//! compiled because smol's async-io enables rustix's `net` feature.
//!
//! Bounded: every wait has a hang guard, nothing asserts on speed; the
//! daemon's RSS during the floods is printed, not asserted, except for the
//! control socket, where buffering without bound is the defect itself.
//! Under `PBX_CERTD_EMULATED` (qemu-user, 5-20x slower) the
//! completed-handshake floods are scaled down (`scaled`), saying so.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;

use pbx_certd::limits::{
    MAX_BOX_BYTES, MAX_CONTROL_CLIENTS, MAX_ESTABLISHED_HTTPS, MAX_ESTABLISHED_PER_FORWARD,
    MAX_UNPROVEN_PER_LISTENER,
};

#[path = "common/accept_any.rs"]
mod accept_any;
#[path = "common/serve.rs"]
mod serve;

use accept_any::AcceptAny;

/// Hang guard for one client operation (not a timing assertion).
const GUARD: Duration = Duration::from_secs(30);

/// The flood tests run one at a time (file descriptors, RSS readings).
static FLOOD: Mutex<()> = Mutex::new(());

fn flood_lock() -> std::sync::MutexGuard<'static, ()> {
    FLOOD.lock().unwrap_or_else(|p| p.into_inner())
}

fn emulated() -> bool {
    std::env::var_os("PBX_CERTD_EMULATED").is_some()
}

/// `native` under native runs, `emulated` under qemu-user.
fn scaled(native: usize, emulated_n: usize) -> usize {
    if emulated() {
        eprintln!("PBX_CERTD_EMULATED: flood scaled down from {native} to {emulated_n}");
        emulated_n
    } else {
        native
    }
}

/// Floods hold thousands of sockets: raise the soft RLIMIT_NOFILE to the hard one.
fn raise_nofile() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    let _ = setrlimit(Resource::Nofile, limit);
    eprintln!(
        "test process open-file limit: {:?}",
        getrlimit(Resource::Nofile).current
    );
}

struct Daemon {
    d: serve::Daemon,
    dir: tempfile::TempDir,
    https: SocketAddr,
    http: SocketAddr,
    forward: SocketAddr,
}

impl Daemon {
    /// `serve` with HTTPS, port 80 and one forward to `target`, all on
    /// 127.0.0.1, default limits plus `extra` arguments.
    fn start(target: SocketAddr, extra: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let d = serve::Serve::on(dir.path())
            .http("127.0.0.1:0")
            .forward(target)
            .args(extra)
            .env_remove("PBX_CERTD_LOG")
            .echo(true)
            .start();
        Daemon {
            https: d.https,
            http: d.http(),
            forward: d.forward.expect("forward listener"),
            d,
            dir,
        }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.d.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.d.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    fn nofile_limit(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/limits", self.d.pid()))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap_or("")
            .split_whitespace()
            .skip(3)
            .take(2)
            .collect::<Vec<_>>()
            .join(" soft / hard ")
    }

    /// The log lines that arrived since the last call.
    fn drain_log(&self) -> Vec<String> {
        self.d.log.try_iter().collect()
    }

    fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join("control.sock")
    }

    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        serve::cli(self.dir.path(), args)
    }
}

/// A plain-TCP forward target: echoes each connection (a thread each), or
/// just holds it open.
fn target(echo: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            if echo {
                std::thread::spawn(move || {
                    let mut reader = stream.try_clone().unwrap();
                    let mut writer = stream;
                    let _ = std::io::copy(&mut reader, &mut writer);
                });
            } else {
                held.push(stream);
            }
        }
    });
    addr
}

/// TCP from source address `src` (bind before connect).
fn connect_from(src: Ipv4Addr, dst: SocketAddr) -> std::io::Result<TcpStream> {
    use rustix::net::{bind, connect, socket, AddressFamily, SocketType};
    let SocketAddr::V4(dst) = dst else {
        panic!("IPv4 only")
    };
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None)?;
    bind(&fd, &SocketAddrV4::new(src, 0))?;
    connect(&fd, &dst)?;
    let tcp = TcpStream::from(fd);
    tcp.set_read_timeout(Some(GUARD))?;
    tcp.set_write_timeout(Some(GUARD))?;
    Ok(tcp)
}

fn client_config() -> Arc<rustls::ClientConfig> {
    Arc::new(accept_any::client_config(AcceptAny::new(), &[]))
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A finished TLS handshake from `src` to `dst` (no SNI: the default
/// certificate), or why not.
fn handshake_from(
    config: &Arc<rustls::ClientConfig>,
    src: Ipv4Addr,
    dst: SocketAddr,
) -> Result<Tls, String> {
    let tcp = connect_from(src, dst).map_err(|e| format!("connect: {e}"))?;
    let name = ServerName::IpAddress(dst.ip().into());
    let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| format!("handshake: {e}"))?;
    }
    Ok(tls)
}

/// Read one answer's status line (`HTTP/1.1 NNN ...`), or why not.
fn status_line(reader: impl Read) -> Result<String, String> {
    let mut line = String::new();
    BufReader::new(reader)
        .read_line(&mut line)
        .map_err(|e| format!("read: {e}"))?;
    if line.starts_with("HTTP/1.1 ") {
        Ok(line.trim_end().to_owned())
    } else {
        Err(format!("no HTTP answer: {line:?}"))
    }
}

/// A legitimate HTTPS request (`GET /`) from `src`: its status line.
fn https_get_from(src: Ipv4Addr, https: SocketAddr) -> Result<String, String> {
    let mut tls = handshake_from(&client_config(), src, https)?;
    tls.write_all(b"GET / HTTP/1.1\r\nHost: pbx.test\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    status_line(tls)
}

/// A plain port-80 request from `src`: its status line.
fn http_get_from(src: Ipv4Addr, http: SocketAddr) -> Result<String, String> {
    let mut tcp = connect_from(src, http).map_err(|e| format!("connect: {e}"))?;
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: pbx.test\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    status_line(tcp)
}

/// A TLS handshake on the forward listener from `src`, then a line through
/// the forward to the echo target and back.
fn forward_echo_from(src: Ipv4Addr, forward: SocketAddr) -> Result<(), String> {
    let mut tls = handshake_from(&client_config(), src, forward)?;
    tls.write_all(b"INVITE sip:probe\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut back = [0u8; 18];
    tls.read_exact(&mut back)
        .map_err(|e| format!("no echo through the forward: {e}"))?;
    if &back == b"INVITE sip:probe\r\n" {
        Ok(())
    } else {
        Err(format!("wrong echo {back:?}"))
    }
}

/// Whether the daemon closed `tcp` (EOF or reset) within `wait`.
fn closed_by_daemon(tcp: &mut TcpStream, wait: Duration) -> bool {
    tcp.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 64];
    match tcp.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// `count` idle TCP connections to `dst` from `src`, held open.
fn idle_flood(src: Ipv4Addr, dst: SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|i| connect_from(src, dst).unwrap_or_else(|e| panic!("flood connection {i}: {e}")))
        .collect()
}

fn rss_line(daemon: &Daemon, when: &str) {
    eprintln!(
        "daemon RSS {when}: {} KiB, open fds {}, open-file limit {}",
        daemon.rss_kib(),
        daemon.fds(),
        daemon.nofile_limit()
    );
}

const LEGIT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const FLOODER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

/// The `n`-th of many flooding hosts: 127.0.B.C from 127.0.`base`.1 on.
fn host(base: u8, n: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, base + (n / 250) as u8, 1 + (n % 250) as u8)
}

#[test]
fn one_host_flood_and_port80_slowloris_do_not_lock_out_others() {
    let _one = flood_lock();
    raise_nofile();
    let daemon = Daemon::start(target(true), &[]);
    rss_line(&daemon, "before the flood");
    daemon.drain_log();
    let flood_start = Instant::now();

    let idle = idle_flood(FLOODER, daemon.https, 1000);
    let slowloris: Vec<TcpStream> = (0..500)
        .map(|i| {
            let mut tcp = connect_from(FLOODER, daemon.http)
                .unwrap_or_else(|e| panic!("slowloris connection {i}: {e}"));
            // A request head that never ends.
            let _ = tcp.write_all(b"GET / HTTP/1.1\r\nHost: pbx.test\r\nX-a: b\r\n");
            tcp
        })
        .collect();
    rss_line(
        &daemon,
        "during the flood (1000 idle HTTPS + 500 slowloris)",
    );

    let https = https_get_from(LEGIT, daemon.https);
    let forward = forward_echo_from(LEGIT, daemon.forward);
    let http = http_get_from(LEGIT, daemon.http);
    rss_line(&daemon, "after the legitimate requests");
    assert!(
        https.is_ok(),
        "HTTPS request from 127.0.0.2 during the flood: {https:?}"
    );
    assert!(
        forward.is_ok(),
        "forward handshake from 127.0.0.2 during the flood: {forward:?}"
    );
    assert!(
        http.is_ok(),
        "port-80 request from 127.0.0.2 during the slowloris: {http:?}"
    );

    // 1500 dropped connections, and the held ones hanging up, leave a
    // bounded number of log lines.
    drop((idle, slowloris));
    std::thread::sleep(Duration::from_millis(500));
    let lines = daemon.drain_log();
    // Per started interval of 10 s: a summary for each of the two flooded
    // listeners, one handshake-failure line, and slack.
    let windows = 1 + flood_start.elapsed().as_secs() as usize / 10;
    assert!(
        lines.len() <= 5 * windows,
        "the flood filled the log: {} lines, e.g. {:?}",
        lines.len(),
        lines.iter().take(3).collect::<Vec<_>>()
    );
}

#[test]
fn full_unproven_budget_drops_the_oldest_for_a_newcomer() {
    let _one = flood_lock();
    raise_nofile();
    let daemon = Daemon::start(target(true), &[]);
    // 600 idle connections from 75 hosts, 8 each (under any per-host cap):
    // together far over the listener's unproven budget.
    let mut flood: Vec<TcpStream> = (0..600)
        .map(|i| {
            connect_from(host(1, i / 8), daemon.https)
                .unwrap_or_else(|e| panic!("flood connection {i}: {e}"))
        })
        .collect();
    rss_line(&daemon, "during a 600-connection flood from 75 hosts");
    let https = https_get_from(LEGIT, daemon.https);
    assert!(
        https.is_ok(),
        "HTTPS request from a newcomer while the unproven budget is full: {https:?}"
    );
    assert!(
        closed_by_daemon(&mut flood[0], Duration::from_secs(3)),
        "the oldest flood connection is still open"
    );
    // The newest unproven connections stay (oldest first, not all).
    let newest = flood.len() - MAX_UNPROVEN_PER_LISTENER / 4;
    assert!(
        !closed_by_daemon(&mut flood[newest], Duration::from_millis(500)),
        "a recent flood connection was dropped although older ones were there"
    );
}

/// `count` finished TLS handshakes to `dst` from many hosts (20 each), held.
fn handshake_flood(dst: SocketAddr, count: usize) -> Vec<Tls> {
    let config = client_config();
    let held: Vec<Tls> = (0..count)
        .filter_map(|i| handshake_from(&config, host(2, i / 20), dst).ok())
        .collect();
    eprintln!("{} of {count} flood handshakes completed", held.len());
    held
}

#[test]
fn https_flood_does_not_block_the_forward_listener() {
    let _one = flood_lock();
    raise_nofile();
    let daemon = Daemon::start(target(true), &[]);
    let count = scaled(600, 100);
    let held = handshake_flood(daemon.https, count);
    rss_line(&daemon, &format!("holding {count} HTTPS handshakes"));
    let forward = forward_echo_from(LEGIT, daemon.forward);
    assert!(
        forward.is_ok(),
        "forward listener during an HTTPS flood: {forward:?}"
    );
    // The HTTPS listener kept to its own established budget.
    let open = still_open(held);
    eprintln!("{open} of the flood's HTTPS connections are still open");
    assert!(
        open <= MAX_ESTABLISHED_HTTPS,
        "{open} HTTPS connections held, budget {MAX_ESTABLISHED_HTTPS}"
    );
}

/// How many of `held` the daemon has not closed (after a moment for its
/// closes to arrive; TLS records such as session tickets are consumed).
fn still_open(mut held: Vec<Tls>) -> usize {
    std::thread::sleep(Duration::from_millis(300));
    held.iter_mut()
        .map(|tls| {
            tls.sock.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 64];
            loop {
                match tls.read(&mut buf) {
                    Ok(0) => return false,
                    Ok(_) => continue,
                    Err(e) => return e.kind() == std::io::ErrorKind::WouldBlock,
                }
            }
        })
        .filter(|&open| open)
        .count()
}

#[test]
fn forward_flood_does_not_block_the_https_listener() {
    let _one = flood_lock();
    raise_nofile();
    let daemon = Daemon::start(target(false), &[]);
    let count = scaled(600, 100);
    let held = handshake_flood(daemon.forward, count);
    rss_line(&daemon, &format!("holding {count} forward handshakes"));
    let https = https_get_from(LEGIT, daemon.https);
    assert!(https.is_ok(), "HTTPS during a forward flood: {https:?}");
    let open = still_open(held);
    eprintln!("{open} of the flood's forward connections are still open");
    assert!(
        open <= MAX_ESTABLISHED_PER_FORWARD,
        "{open} forward connections held, budget {MAX_ESTABLISHED_PER_FORWARD}"
    );
}

#[test]
fn max_conns_per_ip_flag_and_config_line() {
    let _one = flood_lock();
    // Parsed once: the flag and the config line refuse the same bad values.
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = serve::cli(dir.path(), &["serve", "--max-conns-per-ip", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("max-conns-per-ip"), "{err}");
    let config = dir.path().join("serve.conf");
    std::fs::write(&config, "max-conns-per-ip = lots\n").unwrap();
    let (code, _, err) = serve::cli(dir.path(), &["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("max-conns-per-ip"), "{err}");

    // The config line takes effect: 2 established connections per address.
    std::fs::write(&config, "max-conns-per-ip = 2\n").unwrap();
    let daemon = Daemon::start(target(true), &["--config", config.to_str().unwrap()]);
    let office = Ipv4Addr::new(127, 0, 0, 3);
    let config_tls = client_config();
    let mut first = handshake_from(&config_tls, office, daemon.forward).unwrap();
    let mut second = handshake_from(&config_tls, office, daemon.forward).unwrap();
    for tls in [&mut first, &mut second] {
        tls.write_all(b"ping\r\n").unwrap();
        let mut back = [0u8; 6];
        tls.read_exact(&mut back).unwrap();
    }
    let third = forward_echo_from(office, daemon.forward);
    assert!(
        third.is_err(),
        "a third connection from one address got through with max-conns-per-ip = 2"
    );
    let other = forward_echo_from(LEGIT, daemon.forward);
    assert!(other.is_ok(), "another address: {other:?}");
    // The flag wins over the file.
    drop(daemon);
    let daemon = Daemon::start(
        target(true),
        &[
            "--config",
            config.to_str().unwrap(),
            "--max-conns-per-ip",
            "3",
        ],
    );
    let held: Vec<Tls> = (0..2)
        .map(|_| handshake_from(&config_tls, office, daemon.forward).unwrap())
        .collect();
    let third = forward_echo_from(office, daemon.forward);
    assert!(third.is_ok(), "flag 3 over file 2: {third:?}");
    drop(held);
}

// ---- control socket ---------------------------------------------------------

fn control(daemon: &Daemon) -> UnixStream {
    let s = UnixStream::connect(daemon.socket()).unwrap();
    s.set_read_timeout(Some(GUARD)).unwrap();
    s.set_write_timeout(Some(GUARD)).unwrap();
    s
}

/// The daemon's one-line reply (`Err` when it closed without one or the
/// hang guard passed).
fn reply(stream: &UnixStream) -> Result<serde_json::Value, String> {
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| format!("no reply: {e}"))?;
    serde_json::from_str(&line).map_err(|e| format!("bad reply {line:?}: {e}"))
}

#[test]
fn control_slow_client_times_out() {
    let daemon = Daemon::start(target(true), &[]);
    let mut slow = control(&daemon);
    slow.write_all(br#"{"command":"#).unwrap();
    let started = Instant::now();
    let answer = reply(&slow);
    eprintln!("slow control client answered after {:?}", started.elapsed());
    let answer = answer.expect("the daemon never ended a control client that stopped sending");
    assert_eq!(answer["error"]["code"], "timeout", "{answer}");
    // The daemon still answers others.
    let (code, _, err) = daemon.cli(&["certs", "--json"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn control_oversize_line_is_refused() {
    let daemon = Daemon::start(target(true), &[]);
    let stream = control(&daemon);
    let mut writer = stream.try_clone().unwrap();
    // The bound: what an import of two maximal boxes needs (Base64 in JSON,
    // under 3 x MAX_BOX_BYTES), not the 8 MiB that let N clients hold N x 8 MiB.
    let bound = 3 * MAX_BOX_BYTES;
    // A line one byte over it (newline included), written on a thread: the
    // daemon may answer before reading it all.
    let sender = std::thread::spawn(move || {
        let mut line = vec![b' '; bound];
        line.push(b'\n');
        let _ = writer.write_all(&line);
    });
    let answer = reply(&stream).unwrap();
    assert_eq!(answer["error"]["code"], "too-large", "{answer}");
    drop(stream);
    sender.join().unwrap();
}

#[test]
fn control_import_of_the_documented_max_size_reaches_the_import_rules() {
    let daemon = Daemon::start(target(true), &[]);
    // Two boxes of exactly MAX_BOX_BYTES (not PEM): the import rules answer,
    // not the socket's size bound.
    let big = daemon.dir.path().join("big.pem");
    std::fs::write(&big, vec![b'A'; MAX_BOX_BYTES]).unwrap();
    let big = big.to_str().unwrap();
    let (code, out, err) = daemon.cli(&["import", "--cert", big, "--key", big, "--json"]);
    assert_eq!(code, 1, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let code = v["error"]["code"].as_str().unwrap();
    assert!(
        code != "too-large" && code != "busy",
        "a maximal import was refused by the control socket: {v}"
    );
}

#[test]
fn control_clients_and_buffers_are_bounded() {
    let daemon = Daemon::start(target(true), &[]);
    let before = daemon.rss_kib();
    // Many clients each send 2 MiB of an unfinished line and wait.
    let clients = MAX_CONTROL_CLIENTS + 8;
    let streams: Vec<UnixStream> = (0..clients).map(|_| control(&daemon)).collect();
    let senders: Vec<_> = streams
        .iter()
        .map(|s| {
            let mut w = s.try_clone().unwrap();
            std::thread::spawn(move || {
                let chunk = vec![b' '; 64 * 1024];
                for _ in 0..32 {
                    if w.write_all(&chunk).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let during = daemon.rss_kib();
    eprintln!(
        "daemon RSS with {clients} control clients holding 2 MiB lines: {before} -> {during} KiB"
    );
    // Unbounded buffering would hold clients x 2 MiB (48 MiB) and more.
    let grown_mib = during.saturating_sub(before) / 1024;
    assert!(
        grown_mib < 24,
        "{clients} unfinished 2 MiB control lines grew the daemon by {grown_mib} MiB"
    );
    let deadline = Instant::now() + GUARD;
    let answers: Vec<Result<serde_json::Value, String>> = streams
        .iter()
        .map(|s| {
            let left = deadline.saturating_duration_since(Instant::now());
            s.set_read_timeout(Some(left.max(Duration::from_millis(10))))
                .unwrap();
            reply(s)
        })
        .collect();
    let busy = answers
        .iter()
        .filter(|a| a.as_ref().is_ok_and(|v| v["error"]["code"] == "busy"))
        .count();
    assert!(
        busy >= clients - MAX_CONTROL_CLIENTS,
        "{busy} of {clients} clients were told busy: {answers:?}"
    );
    drop(streams);
    let (code, _, err) = daemon.cli(&["certs", "--json"]);
    assert_eq!(code, 0, "the daemon answers again: {err}");
}

// Keep the imported constant honest if the budget changes.
const _: () = assert!(MAX_UNPROVEN_PER_LISTENER >= 8);
