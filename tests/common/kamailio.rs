//! Debian's Kamailio as a SIP registrar peer (tests/sip/kamailio.cfg.in):
//! plain SIP on TCP at a loopback port, in-memory registrar, PROXY headers
//! accepted; with the define `WITH_WEBSOCKET` (`-A`) also SIP over
//! WebSocket on the same port (xhttp + websocket modules, RFC 7118).
//!
//! Used by tests/sip_kamailio.rs, tests/sip_wss.rs and the REGISTER
//! benchmark (benches/sip_register.rs, through `#[path]`), so it names no
//! sibling module. Kamailio cannot listen on port 0: its port is taken from
//! a socket the OS chose and closed just before it starts. Stopped by its
//! own PID (SIGTERM, then SIGKILL) on drop.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Hang guard of the start and the log waits (a hang is a failure).
const GUARD: Duration = Duration::from_secs(60);

/// Kamailio's binary, or why it is missing.
pub fn kamailio_bin() -> Result<PathBuf, String> {
    ["/usr/sbin/kamailio", "/usr/local/sbin/kamailio"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| "kamailio not installed (Debian: apt-get install kamailio)".to_owned())
}

/// Why Kamailio's websocket module cannot be loaded, if so.
pub fn websocket_missing() -> Option<String> {
    let found = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
    ]
    .iter()
    .any(|d| Path::new(d).join("kamailio/modules/websocket.so").exists());
    (!found).then(|| {
        "Kamailio's websocket module not installed (Debian: apt-get install kamailio-websocket-modules)"
            .to_owned()
    })
}

/// A running Kamailio registrar; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Kamailio {
    child: Child,
    /// Its TCP listener (SIP, and WebSocket with `WITH_WEBSOCKET`).
    pub addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Kamailio {
    /// Starts it with the config's preprocessor `defines` (e.g.
    /// `WITH_WEBSOCKET`) and waits until it listens.
    pub fn start(bin: &Path, defines: &[&str]) -> Kamailio {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let template = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sip/kamailio.cfg.in"),
        )
        .unwrap();
        let cfg = dir.path().join("kamailio.cfg");
        std::fs::write(
            &cfg,
            template
                .replace("@SIP_PORT@", &port.to_string())
                .replace("@SIP_DOMAINS_RE@", "^sip\\.acme\\.test$"),
        )
        .unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir(&run).unwrap();
        let log = dir.path().join("kamailio.log");
        let mut cmd = Command::new(bin);
        cmd.arg("-f").arg(&cfg);
        for d in defines {
            cmd.args(["-A", d]);
        }
        // -DD: the creator stays in the foreground (its PID is ours; SIGTERM
        // stops its children too); -E: log to stderr.
        let child = cmd
            .args(["-DD", "-E", "-m", "32", "-M", "8", "-Y"])
            .arg(&run)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut k = Kamailio {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
            _dir: dir,
        };
        let start = Instant::now();
        while TcpStream::connect(k.addr).is_err() {
            if let Ok(Some(status)) = k.child.try_wait() {
                panic!("kamailio exited ({status}):\n{}", k.log_text());
            }
            assert!(
                start.elapsed() < GUARD,
                "kamailio not listening on {}:\n{}",
                k.addr,
                k.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        k
    }

    /// Everything it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (hang guard) for Kamailio's `REGISTERED` line and returns it.
    pub fn registered_line(&self) -> String {
        let start = Instant::now();
        loop {
            if let Some(l) = self
                .log_text()
                .lines()
                .find(|l| l.contains("REGISTERED aor="))
            {
                return l.to_owned();
            }
            assert!(
                start.elapsed() < GUARD,
                "no REGISTERED line:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Stop a Kamailio started with `-DD`: SIGTERM first, so its main process
/// stops its worker processes (a SIGKILL would leave them running,
/// orphaned); SIGKILL only when it has not exited within 10 s.
pub fn stop(child: &mut Child) {
    if child.try_wait().ok().flatten().is_some() {
        return; // reaped already: its PID may be another process's now
    }
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}
