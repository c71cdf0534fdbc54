//! TLS handshake benchmark tool (not a test; `scripts/bench-tls.sh` drives it).
//!
//! Why: issue 13 compares pbx-certd's handshake cost with a plain rustls
//! server, nginx, HAProxy and Caddy serving the same 1000 tenant
//! certificates. This is the project's own client and reference server:
//!
//! - `gen DIR N`: a root CA and N tenant leaves `t{i}.pbx.test` (ECDSA P-256,
//!   each its own key): `DIR/ca.pem`, `DIR/leaves/NAME.pem|.key`,
//!   `DIR/tenants.txt`.
//! - `client --addr A --names FILE [--concurrency 32] [--duration 5]
//!   [--warmup 1] [--server-pid PID] [--resume] [--no-sig] [--label L]
//!   [--round R]`:
//!   TLS 1.3 handshakes from `concurrency` threads, cycling the names as SNI;
//!   prints one JSON line. Every handshake's leaf must carry the SNI sent,
//!   literally, in its SAN (a wildcard or default certificate is a
//!   `wrong_cert` error); the chain is verified against `ca.pem` once per
//!   distinct leaf, and the server's CertificateVerify signature on every
//!   full handshake. With `--server-pid` it reads the server's (and its child
//!   processes') utime+stime from /proc and reports handshakes per server
//!   CPU-second, the figure that is robust on a shared machine.
//! - `probe --addr A --sni NAME [--ca FILE] [--wait SECS]`: one checked
//!   handshake, retried until it succeeds or `wait` passes (readiness).
//! - `ref-server --dir DIR --addr A [--tickets]`: a plain rustls server
//!   (smol, one thread, exact-SNI map) as the reference; build it at
//!   opt-level 3 (`--profile bench-o3`).
//! - `procstat PID`: VmRSS (KiB) and thread count of a process tree, JSON.
//! - `summarize RUNS.jsonl SERVERS.jsonl [--baseline LABEL]`: the README
//!   table (median, min, max; ratios paired by round).
//!
//! `cargo bench` runs it with `--bench` only: it prints its usage and exits.

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, RootCertStore};

type Res<T> = Result<T, String>;

const USAGE: &str = "usage: tls_handshake gen DIR N | client --addr A --names FILE [--ca FILE] \
[--concurrency 32] [--duration 5] [--warmup 1] [--server-pid PID] [--resume] [--no-sig] [--label L] [--round R] \
| probe --addr A --sni NAME --ca FILE [--wait SECS] | ref-server --dir DIR --addr A [--tickets] \
| procstat PID | summarize RUNS.jsonl SERVERS.jsonl [--baseline LABEL]";

/// Loopback source addresses the client threads are spread over
/// (127.0.1.1..): 32 threads -> 4 per address.
const SOURCE_ADDRESSES: usize = 8;

/// Linux reports utime/stime in USER_HZ ticks, 100 on every ABI we run.
const USER_HZ: f64 = 100.0;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("gen") => gen(&args[1..]),
        Some("client") => client(&Opts::parse(&args[1..])),
        Some("probe") => probe(&Opts::parse(&args[1..])),
        Some("ref-server") => ref_server(&Opts::parse(&args[1..])),
        Some("procstat") => procstat(&args[1..]),
        Some("summarize") => summarize(&args[1..]),
        _ => {
            // `cargo bench` passes `--bench`: nothing to run by default.
            eprintln!("{USAGE}");
            Ok(())
        }
    };
    if let Err(e) = result {
        eprintln!("tls_handshake: {e}");
        std::process::exit(1);
    }
}

/// `--key value` and `--flag` options.
struct Opts(HashMap<String, String>);

impl Opts {
    fn parse(args: &[String]) -> Opts {
        let mut map = HashMap::new();
        let mut i = 0;
        while i < args.len() {
            let key = args[i].trim_start_matches("--").to_string();
            match args.get(i + 1) {
                Some(v) if !v.starts_with("--") => {
                    map.insert(key, v.clone());
                    i += 2;
                }
                _ => {
                    map.insert(key, String::new());
                    i += 1;
                }
            }
        }
        Opts(map)
    }
    fn get(&self, k: &str) -> Res<&str> {
        self.0
            .get(k)
            .map(String::as_str)
            .ok_or_else(|| format!("--{k} is required\n{USAGE}"))
    }
    fn num<T: std::str::FromStr>(&self, k: &str, default: T) -> Res<T> {
        match self.0.get(k) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("--{k}: not a number: {v}")),
        }
    }
    fn flag(&self, k: &str) -> bool {
        self.0.contains_key(k)
    }
}

fn err<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

// ---------------------------------------------------------------- gen

fn gen(args: &[String]) -> Res<()> {
    let dir = PathBuf::from(args.first().ok_or(USAGE)?);
    let n: usize = args
        .get(1)
        .ok_or(USAGE)?
        .parse()
        .map_err(err("tenant count"))?;
    std::fs::create_dir_all(dir.join("leaves")).map_err(err("mkdir"))?;
    let now = std::time::SystemTime::now();
    let start = now - Duration::from_secs(86_400);
    let ca_key = rcgen::KeyPair::generate().map_err(err("key"))?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err("ca"))?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "pbx-certd bench root");
    ca.not_before = start.into();
    ca.not_after = (start + Duration::from_secs(3650 * 86_400)).into();
    let ca_cert = ca.self_signed(&ca_key).map_err(err("ca"))?;
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).map_err(err("write"))?;
    let mut tenants = String::new();
    for i in 1..=n {
        let name = format!("t{i}.pbx.test");
        let key = rcgen::KeyPair::generate().map_err(err("key"))?;
        let mut p = rcgen::CertificateParams::new(vec![name.clone()]).map_err(err("leaf"))?;
        p.distinguished_name
            .push(rcgen::DnType::CommonName, name.as_str());
        p.not_before = start.into();
        p.not_after = (start + Duration::from_secs(90 * 86_400)).into();
        let cert = p.signed_by(&key, &ca_cert, &ca_key).map_err(err("leaf"))?;
        let leaves = dir.join("leaves");
        std::fs::write(leaves.join(format!("{name}.pem")), cert.pem()).map_err(err("write"))?;
        std::fs::write(leaves.join(format!("{name}.key")), key.serialize_pem())
            .map_err(err("write"))?;
        tenants.push_str(&name);
        tenants.push('\n');
    }
    std::fs::write(dir.join("tenants.txt"), tenants).map_err(err("write"))?;
    eprintln!("gen: {n} tenant certificates in {}", dir.display());
    Ok(())
}

fn pem_der(path: &Path) -> Res<Vec<u8>> {
    let text = std::fs::read(path).map_err(err("read"))?;
    let (_, der) =
        pem_rfc7468::decode_vec(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(der)
}

// ------------------------------------------------------------- client

/// Accepts a chain once `WebPkiServerVerifier` (roots: `--ca`) has accepted
/// the same leaf; checks the CertificateVerify signature every time.
#[derive(Debug)]
struct CachedVerifier {
    inner: Arc<WebPkiServerVerifier>,
    provider: Arc<CryptoProvider>,
    seen: Mutex<HashSet<Vec<u8>>>,
    /// `--no-sig`: skip the CertificateVerify check (saves the client an
    /// ECDSA verify, ~3x the server's sign, when the client is the limit;
    /// the SAN check still runs on every handshake).
    check_sig: bool,
}

impl ServerCertVerifier for CachedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if !seen.contains(end_entity.as_ref()) {
            self.inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
            seen.insert(end_entity.to_vec());
        }
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if !self.check_sig {
            return Ok(HandshakeSignatureValid::assertion());
        }
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn client_config(ca: &Path, resume: bool, check_sig: bool) -> Res<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(pem_der(ca)?))
        .map_err(err("ca"))?;
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(err("verifier"))?;
    let verifier = Arc::new(CachedVerifier {
        inner,
        provider: provider.clone(),
        seen: Mutex::new(HashSet::new()),
        check_sig,
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(err("config"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.resumption = if resume {
        Resumption::in_memory_sessions(8192)
    } else {
        Resumption::disabled()
    };
    Ok(Arc::new(config))
}

/// The DNS names in a leaf's SAN.
fn san_names(der: &[u8]) -> Vec<String> {
    use der::Decode as _;
    use x509_cert::ext::pkix::{name::GeneralName, SubjectAltName};
    let Ok(cert) = x509_cert::Certificate::from_der(der) else {
        return Vec::new();
    };
    match cert.tbs_certificate.get::<SubjectAltName>() {
        Ok(Some((_, san))) => san
            .0
            .iter()
            .filter_map(|n| match n {
                GeneralName::DnsName(d) => Some(d.as_str().to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

enum Outcome {
    Ok { resumed: bool },
    WrongCert(String),
    Error(String),
}

/// One handshake to `addr` with SNI `name`; `sans` caches leaf -> SAN names.
fn handshake(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    name: &str,
    sans: &mut HashMap<Vec<u8>, Vec<String>>,
    read_tickets: bool,
    src: Option<std::net::Ipv4Addr>,
) -> Outcome {
    let mut run = || -> Result<Outcome, String> {
        let mut tcp = connect(addr, src).map_err(|e| format!("connect: {}", e.kind()))?;
        let _ = tcp.set_nodelay(true);
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        // Close with RST after the close_notify: no TIME_WAIT pile-up.
        let _ = rustix::net::sockopt::set_socket_linger(&tcp, Some(Duration::ZERO));
        let sni = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
        let mut conn =
            ClientConnection::new(config.clone(), sni).map_err(|e| format!("tls: {e}"))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)
                .map_err(|e| format!("handshake: {e}"))?;
        }
        let resumed = conn.handshake_kind() == Some(HandshakeKind::Resumed);
        let Some(leaf) = conn.peer_certificates().and_then(|c| c.first()) else {
            return Ok(Outcome::WrongCert("no certificate".into()));
        };
        let names = sans
            .entry(leaf.to_vec())
            .or_insert_with(|| san_names(leaf.as_ref()));
        if !names.iter().any(|n| n == name) {
            return Ok(Outcome::WrongCert(format!("{name} got {names:?}")));
        }
        if read_tickets {
            // The server sends its tickets after our Finished: read them.
            let _ = conn.read_tls(&mut tcp);
            let _ = conn.process_new_packets();
        }
        conn.send_close_notify();
        let _ = conn.write_tls(&mut tcp);
        let _ = tcp.flush();
        Ok(Outcome::Ok { resumed })
    };
    run().unwrap_or_else(Outcome::Error)
}

/// TCP to `addr`, from source address `src` when given (bind before
/// connect): spreading the client threads over 127.0.0.x keeps each source
/// address below a server's per-IP admission caps (pbx-certd: 16 unproven
/// connections per IP), as real phones come from many addresses.
fn connect(addr: SocketAddr, src: Option<std::net::Ipv4Addr>) -> std::io::Result<TcpStream> {
    let (Some(src), SocketAddr::V4(dst)) = (src, addr) else {
        return TcpStream::connect_timeout(&addr, Duration::from_secs(10));
    };
    use rustix::net::{bind, socket, AddressFamily, SocketType};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None)?;
    bind(&fd, &std::net::SocketAddrV4::new(src, 0))?;
    rustix::net::connect(&fd, &dst)?;
    Ok(TcpStream::from(fd))
}

/// utime+stime (seconds) of `pid` and its descendants.
fn tree_cpu_seconds(pid: u32) -> f64 {
    tree(pid)
        .iter()
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            // Fields after the `(comm)`: state is field 3; utime 14, stime 15.
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            Some(ticks as f64 / USER_HZ)
        })
        .sum()
}

/// `pid` and every descendant (from /proc/*/stat's ppid).
fn tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            let ppid = stat
                .rfind(')')
                .and_then(|i| stat[i + 2..].split_whitespace().nth(1))
                .and_then(|s| s.parse::<u32>().ok());
            if let Some(pp) = ppid {
                parents.push((p, pp));
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let cur = out[i];
        out.extend(parents.iter().filter(|(_, pp)| *pp == cur).map(|(p, _)| *p));
        i += 1;
    }
    out
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn client(o: &Opts) -> Res<()> {
    let addr: SocketAddr = o.get("addr")?.parse().map_err(err("--addr"))?;
    let names: Vec<String> = std::fs::read_to_string(o.get("names")?)
        .map_err(err("--names"))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .collect();
    if names.is_empty() {
        return Err("--names is empty".into());
    }
    let ca = PathBuf::from(o.get("ca")?);
    let concurrency: usize = o.num("concurrency", 32)?;
    let duration: f64 = o.num("duration", 5.0)?;
    let warmup: f64 = o.num("warmup", 1.0)?;
    let resume = o.flag("resume");
    let server_pid: Option<u32> = o.0.get("server-pid").and_then(|p| p.parse().ok());
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let names = Arc::new(names);
    let mut threads = Vec::new();
    for t in 0..concurrency {
        let (names, measuring, stop) = (names.clone(), measuring.clone(), stop.clone());
        let config = client_config(&ca, resume, !o.flag("no-sig"))?;
        threads.push(std::thread::spawn(move || {
            let mut sans = HashMap::new();
            let (mut ok, mut resumed, mut wrong, mut errors) = (0u64, 0u64, 0u64, 0u64);
            let mut lat_us = Vec::new();
            let mut examples: Vec<String> = Vec::new();
            let mut i = t * names.len() / concurrency.max(1);
            while !stop.load(Ordering::Relaxed) {
                // Resumed: each thread is one phone reconnecting to its
                // tenant; full: every thread cycles through all tenants.
                let name = &names[i % names.len()];
                if !resume {
                    i += 1;
                }
                let t0 = Instant::now();
                let src = addr
                    .ip()
                    .is_loopback()
                    .then(|| std::net::Ipv4Addr::new(127, 0, 1, 1 + (t % SOURCE_ADDRESSES) as u8));
                let outcome = handshake(addr, &config, name, &mut sans, resume, src);
                let dt = t0.elapsed();
                if !measuring.load(Ordering::Relaxed) {
                    continue;
                }
                match outcome {
                    Outcome::Ok { resumed: r } => {
                        ok += 1;
                        resumed += u64::from(r);
                        lat_us.push(dt.as_micros() as u64);
                    }
                    Outcome::WrongCert(e) => {
                        wrong += 1;
                        if examples.len() < 3 {
                            examples.push(e);
                        }
                    }
                    Outcome::Error(e) => {
                        errors += 1;
                        if examples.len() < 3 {
                            examples.push(e);
                        }
                        // Do not spin on a refused connection.
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
            (ok, resumed, wrong, errors, lat_us, examples)
        }));
    }
    std::thread::sleep(Duration::from_secs_f64(warmup));
    let cpu0 = server_pid.map(tree_cpu_seconds);
    let t0 = Instant::now();
    measuring.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs_f64(duration));
    measuring.store(false, Ordering::Relaxed);
    let wall = t0.elapsed().as_secs_f64();
    let cpu1 = server_pid.map(tree_cpu_seconds);
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut resumed, mut wrong, mut errors) = (0, 0, 0, 0);
    let mut lat = Vec::new();
    let mut examples = Vec::new();
    for t in threads {
        let (o, r, w, e, l, x) = t.join().map_err(|_| "client thread panicked")?;
        ok += o;
        resumed += r;
        wrong += w;
        errors += e;
        lat.extend(l);
        examples.extend(x);
    }
    lat.sort_unstable();
    examples.truncate(5);
    let server_cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let line = serde_json::json!({
        "label": o.0.get("label").cloned().unwrap_or_default(),
        "round": o.num::<u32>("round", 0)?,
        "resume": resume,
        "concurrency": concurrency,
        "handshakes": ok,
        "resumed": resumed,
        "wrong_cert": wrong,
        "errors": errors,
        "examples": examples,
        "wall_s": wall,
        "hs_per_s": ok as f64 / wall,
        "server_cpu_s": server_cpu,
        "server_cpu_util": server_cpu.map(|c| c / wall),
        "hs_per_server_cpu_s": server_cpu.filter(|c| *c > 0.0).map(|c| ok as f64 / c),
        "p50_us": percentile(&lat, 0.50),
        "p99_us": percentile(&lat, 0.99),
    });
    println!("{line}");
    Ok(())
}

fn probe(o: &Opts) -> Res<()> {
    let addr: SocketAddr = o.get("addr")?.parse().map_err(err("--addr"))?;
    let sni = o.get("sni")?;
    let config = client_config(Path::new(o.get("ca")?), false, true)?;
    let wait: f64 = o.num("wait", 0.0)?;
    let deadline = Instant::now() + Duration::from_secs_f64(wait);
    let mut sans = HashMap::new();
    loop {
        match handshake(addr, &config, sni, &mut sans, false, None) {
            Outcome::Ok { .. } => return Ok(()),
            Outcome::WrongCert(e) => return Err(format!("wrong certificate: {e}")),
            Outcome::Error(e) if Instant::now() >= deadline => return Err(e),
            Outcome::Error(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

// --------------------------------------------------------- ref-server

/// Exact-SNI map; no SNI or an unknown name gets no certificate.
#[derive(Debug)]
struct MapResolver(HashMap<String, Arc<rustls::sign::CertifiedKey>>);

impl rustls::server::ResolvesServerCert for MapResolver {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.0.get(hello.server_name()?).cloned()
    }
}

fn ref_server(o: &Opts) -> Res<()> {
    use smol::io::AsyncReadExt as _;
    let dir = PathBuf::from(o.get("dir")?);
    let addr: SocketAddr = o.get("addr")?.parse().map_err(err("--addr"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut map = HashMap::new();
    for name in std::fs::read_to_string(dir.join("tenants.txt"))
        .map_err(err("tenants.txt"))?
        .lines()
    {
        let leaves = dir.join("leaves");
        let cert = CertificateDer::from(pem_der(&leaves.join(format!("{name}.pem")))?);
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pem_der(
            &leaves.join(format!("{name}.key")),
        )?));
        let signer = provider
            .key_provider
            .load_private_key(key)
            .map_err(err("key"))?;
        map.insert(
            name.to_string(),
            Arc::new(rustls::sign::CertifiedKey::new(vec![cert], signer)),
        );
    }
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(err("config"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(MapResolver(map)));
    if o.flag("tickets") {
        config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(err("ticketer"))?;
    }
    let acceptor = futures_rustls::TlsAcceptor::from(Arc::new(config));
    let ex = smol::LocalExecutor::new();
    smol::block_on(ex.run(async {
        let listener = smol::net::TcpListener::bind(addr)
            .await
            .map_err(err("bind"))?;
        eprintln!("ref-server: listening on {addr}");
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                smol::Timer::after(Duration::from_millis(10)).await;
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            ex.spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let mut buf = [0u8; 512];
                    while matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {}
                }
            })
            .detach();
        }
    }))
}

// ----------------------------------------------------- procstat, summary

fn procstat(args: &[String]) -> Res<()> {
    let pid: u32 = args.first().ok_or(USAGE)?.parse().map_err(err("pid"))?;
    let (mut rss, mut threads) = (0u64, 0u64);
    let procs = tree(pid);
    for p in &procs {
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
        for line in status.lines() {
            let val = |l: &str| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            if line.starts_with("VmRSS:") {
                rss += val(line);
            } else if line.starts_with("Threads:") {
                threads += val(line);
            }
        }
    }
    println!(
        "{}",
        serde_json::json!({"pid": pid, "rss_kb": rss, "threads": threads, "processes": procs.len()})
    );
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn read_jsonl(path: &str) -> Res<Vec<serde_json::Value>> {
    Ok(std::fs::read_to_string(path)
        .map_err(err("read"))?
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

fn summarize(args: &[String]) -> Res<()> {
    let runs = read_jsonl(args.first().ok_or(USAGE)?)?;
    let servers = read_jsonl(args.get(1).ok_or(USAGE)?)?;
    let o = Opts::parse(&args[2..]);
    let baseline = o.0.get("baseline").cloned().unwrap_or("rustls-ref".into());
    let f = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_f64()).unwrap_or(f64::NAN);
    let s = |v: &serde_json::Value, k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let mut labels: Vec<String> = Vec::new();
    for r in &runs {
        let l = s(r, "label");
        if !labels.contains(&l) {
            labels.push(l);
        }
    }
    let per_round = |label: &str| -> HashMap<u64, f64> {
        runs.iter()
            .filter(|r| s(r, "label") == label)
            .map(|r| {
                (
                    r.get("round").and_then(|x| x.as_u64()).unwrap_or(0),
                    f(r, "hs_per_server_cpu_s"),
                )
            })
            .collect()
    };
    let base = per_round(&baseline);
    println!(
        "| server | hs per server CPU-s: median (min-max) | vs {baseline} (paired by round) | hs per wall s | p50 / p99 ms | resumed | wrong cert / errors | idle RSS | threads | ready |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for label in &labels {
        let mine: Vec<&serde_json::Value> =
            runs.iter().filter(|r| &s(r, "label") == label).collect();
        let mut cpu: Vec<f64> = mine.iter().map(|r| f(r, "hs_per_server_cpu_s")).collect();
        let mut wall: Vec<f64> = mine.iter().map(|r| f(r, "hs_per_s")).collect();
        let mut p50: Vec<f64> = mine.iter().map(|r| f(r, "p50_us") / 1000.0).collect();
        let mut p99: Vec<f64> = mine.iter().map(|r| f(r, "p99_us") / 1000.0).collect();
        let hs: f64 = mine.iter().map(|r| f(r, "handshakes")).sum();
        let resumed: f64 = mine.iter().map(|r| f(r, "resumed")).sum();
        let wrong: f64 = mine.iter().map(|r| f(r, "wrong_cert")).sum();
        let errors: f64 = mine.iter().map(|r| f(r, "errors")).sum();
        let mut ratios: Vec<f64> = per_round(label)
            .iter()
            .filter_map(|(round, v)| base.get(round).map(|b| v / b))
            .collect();
        let (min, max) = cpu
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(*x), b.max(*x)));
        let srv = servers.iter().find(|v| &s(v, "label") == label);
        let sv = |k: &str| srv.map(|v| f(v, k)).unwrap_or(f64::NAN);
        println!(
            "| {label} | {:.0} ({min:.0}-{max:.0}) | {:.2} | {:.0} | {:.1} / {:.1} | {:.0} % | {wrong:.0} / {errors:.0} | {:.1} MB | {:.0} | {:.0} ms |",
            median(&mut cpu),
            median(&mut ratios),
            median(&mut wall),
            median(&mut p50),
            median(&mut p99),
            if hs > 0.0 { 100.0 * resumed / hs } else { 0.0 },
            sv("rss_kb") / 1000.0,
            sv("threads"),
            sv("ready_ms"),
        );
    }
    Ok(())
}
