//! REGISTER round-trip benchmark (issue 12; not a test): how much latency a
//! `--tls-forward` adds in front of a SIP registrar.
//!
//! Debian's Kamailio (the test harness's registrar,
//! tests/sip/kamailio.cfg.in, with its websocket module when installed) and
//! a release-built `pbx-certd serve` with one forward
//! (`127.0.0.1:0=KAMAILIO,alpn=http/1.1`, the first-start self-signed
//! certificate) are started; three clients each keep one connection:
//!
//! - `tcp direct`: plain SIP over TCP straight to Kamailio;
//! - `tls via forward`: SIP over TLS 1.3 (rustls) through the forward;
//! - `wss via forward`: SIP over WebSocket over TLS (RFC 7118) through the
//!   same forward, when Kamailio's websocket module is there.
//!
//! After 20 warm-up REGISTERs each, `--n N` (default 200) rounds send one
//! REGISTER (a refresh: same Call-ID, next CSeq) per client in turn and
//! time each until its 200 OK is read; it prints the median, 10th and
//! 90th percentile per path and the forward's added median, as the README
//! table's rows. One run; the figures swing with the machine's load.
//!
//!   scripts/bench-sip.sh            (builds it and pbx-certd with --release)
//!   cargo bench --bench sip_register
//!
//! Both processes are stopped by the PIDs this program started.

#[path = "../tests/common/accept_any.rs"]
mod accept_any;
#[path = "../tests/common/kamailio.rs"]
mod kamailio;
#[path = "../tests/common/websocket.rs"]
mod websocket;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;

const DOMAIN: &str = "sip.acme.test";
const WARMUP: u32 = 20;
const GUARD: Duration = Duration::from_secs(60);

/// One client's connection.
enum Conn {
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    Wss(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

/// A REGISTER refresh number `n` of client `who`.
fn register(who: &str, transport: &str, n: u32) -> String {
    let (via, contact) = match transport {
        "WSS" => ("df7jal23ls0d.invalid", "df7jal23ls0d.invalid;transport=ws"),
        "TLS" => ("192.0.2.10:5061", "192.0.2.10:5061;transport=tls"),
        _ => ("192.0.2.10:5060", "192.0.2.10:5060;transport=tcp"),
    };
    format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {via};branch=z9hG4bK-{who}-{n};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{who}@{DOMAIN}>;tag={who}\r\n\
         To: <sip:{who}@{DOMAIN}>\r\n\
         Call-ID: bench-{who}@{DOMAIN}\r\n\
         CSeq: {n} REGISTER\r\n\
         Contact: <sip:{who}@{contact}>\r\n\
         Expires: 3600\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Reads one reply head (the 200 OK has no body; one request is in
/// flight, so nothing follows it), a whole chunk per read.
fn read_head(r: &mut impl Read) -> String {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.ends_with(b"\r\n\r\n") {
        match r.read(&mut buf) {
            Ok(0) => panic!("connection closed; so far {head:?}"),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read: {e}; so far {head:?}"),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

impl Conn {
    fn name(&self) -> &'static str {
        match self {
            Conn::Tcp(_) => "tcp direct",
            Conn::Tls(_) => "tls via forward",
            Conn::Wss(_) => "wss via forward",
        }
    }

    /// One REGISTER and its 200 OK; the round trip.
    fn round_trip(&mut self, n: u32) -> Duration {
        let start = Instant::now();
        let reply = match self {
            Conn::Tcp(s) => {
                s.write_all(register("tcp", "TCP", n).as_bytes()).unwrap();
                read_head(s)
            }
            Conn::Tls(s) => {
                s.write_all(register("tls", "TLS", n).as_bytes()).unwrap();
                s.flush().unwrap();
                read_head(s)
            }
            Conn::Wss(s) => {
                let mask = n.to_be_bytes();
                websocket::send_text(s, &register("wss", "WSS", n), mask);
                websocket::read_message(s).expect("a WebSocket message")
            }
        };
        let took = start.elapsed();
        assert!(reply.starts_with("SIP/2.0 200"), "{}: {reply}", self.name());
        took
    }
}

fn tls(
    fwd: SocketAddr,
    alpn: &[&[u8]],
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let tcp = TcpStream::connect(fwd).unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp.set_read_timeout(Some(GUARD)).unwrap();
    let config = Arc::new(accept_any::client_config(
        accept_any::AcceptAny::new(),
        alpn,
    ));
    let conn =
        rustls::ClientConnection::new(config, ServerName::try_from(DOMAIN).unwrap()).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).unwrap();
    }
    s
}

/// `pbx-certd serve` with one forward to `target`; the child and the
/// forward's address from the `ready:` line.
fn start_daemon(data: &std::path::Path, target: SocketAddr) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pbx-certd"))
        .env_remove("PBX_CERTD_DATA_DIR")
        .arg("--data-dir")
        .arg(data)
        .args([
            "serve",
            "--https",
            "127.0.0.1:0",
            "--http",
            "none",
            "--tls-forward",
        ])
        .arg(format!("127.0.0.1:0={target},alpn=http/1.1"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pbx-certd");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let fwd = loop {
        let Ok(line) = rx.recv_timeout(GUARD) else {
            break None;
        };
        if let Some(fwd) = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("forward="))
            .and_then(|a| a.split("->").next())
            .and_then(|a| a.parse().ok())
        {
            break Some(fwd);
        }
    };
    match fwd {
        Some(fwd) => (child, fwd),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pbx-certd logged no forward= ready line");
        }
    }
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() - 1) * p / 100]
}

fn micros(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u32 = args
        .iter()
        .position(|a| a == "--n")
        .and_then(|i| args.get(i + 1))
        .map_or(200, |v| v.parse().expect("--n N"));
    let bin = match kamailio::kamailio_bin() {
        Ok(b) => b,
        Err(why) => {
            eprintln!("sip_register: {why}; nothing measured");
            return;
        }
    };
    let ws = kamailio::websocket_missing().is_none();
    let defines: &[&str] = if ws { &["WITH_WEBSOCKET"] } else { &[] };
    let k = kamailio::Kamailio::start(&bin, defines);
    let data = tempfile::tempdir().unwrap();
    let (mut daemon, fwd) = start_daemon(data.path(), k.addr);

    let log = k.log_text();
    std::panic::set_hook(Box::new(move |info| {
        eprintln!("sip_register: {info}\n--- kamailio's log at the start:\n{log}");
    }));
    // Each connection is warmed up as soon as it is open: Kamailio with
    // `tcp_accept_haproxy=yes` drops a connection whose first bytes are
    // late ("invalid PROXY protocol header").
    let warm = |mut c: Conn| {
        for i in 1..=WARMUP {
            c.round_trip(i);
        }
        c
    };
    let direct = TcpStream::connect(k.addr).unwrap();
    direct.set_nodelay(true).unwrap();
    direct.set_read_timeout(Some(GUARD)).unwrap();
    let mut conns = vec![
        warm(Conn::Tcp(direct)),
        warm(Conn::Tls(Box::new(tls(fwd, &[])))),
    ];
    if ws {
        let mut s = tls(fwd, &[b"http/1.1"]);
        let (head, _) = websocket::upgrade(&mut s, DOMAIN, 0x5349_5042_454e_4348);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        conns.push(warm(Conn::Wss(Box::new(s))));
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); conns.len()];
    for i in 1..=n {
        for (c, t) in conns.iter_mut().zip(times.iter_mut()) {
            t.push(c.round_trip(WARMUP + i));
        }
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    drop(k);

    println!("| path | REGISTER round trip, median µs | p10 / p90 µs | n |");
    println!("|---|---|---|---|");
    let mut medians = Vec::new();
    for (c, t) in conns.iter().zip(times.iter_mut()) {
        t.sort();
        let median = percentile(t, 50);
        medians.push(median);
        println!(
            "| {} | {} | {} / {} | {} |",
            c.name(),
            micros(median),
            micros(percentile(t, 10)),
            micros(percentile(t, 90)),
            t.len()
        );
    }
    for (c, m) in conns.iter().zip(&medians).skip(1) {
        println!(
            "{}: +{} µs median over tcp direct ({:.2}x)",
            c.name(),
            micros(m.saturating_sub(medians[0])),
            m.as_secs_f64() / medians[0].as_secs_f64()
        );
    }
}
