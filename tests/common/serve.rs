//! The one way a test starts `pbx-certd serve`: [`Serve`], a builder over
//! a data dir (`Pbx::daemon()` / `Pbx::serve(echo)` for a `Pbx`,
//! [`Serve::on`] for any dir). `start()` spawns the daemon with stderr
//! piped, reads its log lines on a thread into a channel, waits for the
//! `ready:` line and takes the listeners' addresses from it (`https=ADDR`,
//! `http=ADDR`, `forward=ADDR->TARGET`); listeners default to port 0 on
//! 127.0.0.1, so no test guesses a free port. `command()` gives the same
//! command line unstarted (for kill loops and for a `serve` expected to
//! refuse to start). Also `cli`, one CLI run on a data dir.
//!
//! What must hold: with `Drain::Always` the reader keeps reading stderr for
//! the daemon's whole life, even when nobody reads the channel any more, so
//! the daemon never meets a closed log pipe by accident. `Drain::WhileRead`
//! stops (and closes the pipe) at the first line after the receiver is
//! dropped: only for the test of exactly that. Every line the reader read
//! is also kept in a transcript (`Daemon::log_text`), whoever reads the
//! channel. A `Daemon` is killed when dropped; waits are hang guards, never
//! timing assertions.
//!
//! `tests/common/mod.rs` declares it (`common::serve`); a test binary without
//! `common` declares it with `#[path = "common/serve.rs"] mod serve;`.

#![allow(dead_code)]

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_pbx-certd");

/// How long `start` waits for `ready:` (a hang guard: the emulated daemon
/// on a loaded machine may take long; a hang is a failure).
pub const READY_GUARD: Duration = Duration::from_secs(120);

/// `pbx-certd --data-dir DIR ARGS` run to its end: exit code (-1 when
/// killed by a signal), stdout, stderr.
pub fn cli(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// How long the reader thread reads the daemon's stderr.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// For the daemon's whole life.
    Always,
    /// Until a line finds the receiver dropped; the pipe is closed then.
    WhileRead,
}

/// A `pbx-certd serve` command line to start: HTTPS on `127.0.0.1:0`, no
/// port-80 listener, no forward, the environment inherited (minus
/// `PBX_CERTD_DATA_DIR`), unless changed.
pub struct Serve {
    data: PathBuf,
    https: String,
    http: String,
    forwards: Vec<String>,
    args: Vec<OsString>,
    envs: Vec<(OsString, Option<OsString>)>,
    echo: bool,
    drain: Drain,
}

impl Serve {
    /// `serve` on data dir `data` (created by the binary when missing).
    pub fn on(data: &Path) -> Serve {
        Serve {
            data: data.to_owned(),
            https: "127.0.0.1:0".into(),
            http: "none".into(),
            forwards: Vec::new(),
            args: Vec::new(),
            envs: Vec::new(),
            echo: false,
            drain: Drain::Always,
        }
    }

    /// The HTTPS listener (`--https`).
    pub fn https(mut self, addr: impl ToString) -> Self {
        self.https = addr.to_string();
        self
    }

    /// The port-80 listener (`--http`): `"127.0.0.1:0"`, a fixed port, or
    /// `"none"` (the default).
    pub fn http(mut self, addr: impl ToString) -> Self {
        self.http = addr.to_string();
        self
    }

    /// A `--tls-forward 127.0.0.1:0=TARGET` (its address: `Daemon::forward`).
    pub fn forward(mut self, target: SocketAddr) -> Self {
        self.forwards.push(format!("127.0.0.1:0={target}"));
        self
    }

    /// A `--tls-forward 127.0.0.1:0=TARGET,OPTIONS` (e.g. `proxy=v2`).
    pub fn forward_with(mut self, target: SocketAddr, options: &str) -> Self {
        self.forwards
            .push(format!("127.0.0.1:0={target},{options}"));
        self
    }

    /// One more argument after the listeners.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// More arguments after the listeners.
    pub fn args<S: Into<OsString> + Clone>(mut self, args: &[S]) -> Self {
        self.args.extend(args.iter().cloned().map(Into::into));
        self
    }

    /// An environment variable of the daemon.
    pub fn env(mut self, key: &str, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), Some(value.into())));
        self
    }

    /// An environment variable the daemon must not inherit.
    pub fn env_remove(mut self, key: &str) -> Self {
        self.envs.push((key.into(), None));
        self
    }

    /// Also copy each log line to the test's stderr as `daemon: LINE`
    /// (shown when the test fails).
    pub fn echo(mut self, echo: bool) -> Self {
        self.echo = echo;
        self
    }

    /// How long the log is read (default `Drain::Always`).
    pub fn drain(mut self, drain: Drain) -> Self {
        self.drain = drain;
        self
    }

    /// The command line, not started.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_remove("PBX_CERTD_DATA_DIR")
            .arg("--data-dir")
            .arg(&self.data)
            .args(["serve", "--https", &self.https, "--http", &self.http]);
        for f in &self.forwards {
            cmd.arg("--tls-forward").arg(f);
        }
        cmd.args(&self.args);
        for (k, v) in &self.envs {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd
    }

    /// Starts the daemon and waits (hang guard `READY_GUARD`) for `ready:`.
    #[track_caller]
    pub fn start(self) -> Daemon {
        let mut cmd = self.command();
        let Spawned {
            mut child,
            log,
            transcript,
            reader,
        } = spawn(&mut cmd, self.drain, self.echo);
        let (ready, mut startup) = match wait_ready(&log, READY_GUARD) {
            Ok(r) => r,
            Err(why) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{why}");
            }
        };
        startup.push(ready.clone());
        let https = addr(&ready, "https=")
            .unwrap_or_else(|| panic!("no https= in the ready line: {ready}"));
        Daemon {
            child: Mutex::new(child),
            reader: Some(reader),
            https,
            http: addr(&ready, "http="),
            forward: addr(&ready, "forward="),
            data: self.data,
            log,
            startup,
            transcript,
        }
    }
}

/// A spawned daemon before `ready:`.
struct Spawned {
    child: Child,
    log: mpsc::Receiver<String>,
    transcript: Arc<Mutex<Vec<String>>>,
    reader: JoinHandle<()>,
}

/// Spawn `cmd` with stderr piped and stdout discarded; its log lines arrive
/// on the receiver and in the transcript. With `echo` each line also goes to
/// the test's stderr as `daemon: LINE`.
fn spawn(cmd: &mut Command, drain: Drain, echo: bool) -> Spawned {
    let mut child = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let stderr = child.stderr.take().unwrap();
    let (tx, log) = mpsc::channel();
    let transcript = Arc::new(Mutex::new(Vec::new()));
    let keep = transcript.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if echo {
                eprintln!("daemon: {line}");
            }
            if let Ok(mut t) = keep.lock() {
                t.push(line.clone());
            }
            if tx.send(line).is_err() && drain == Drain::WhileRead {
                break;
            }
        }
    });
    Spawned {
        child,
        log,
        transcript,
        reader,
    }
}

/// Wait for the `ready:` line (`guard` is a hang guard, not a timing
/// assertion): the line and the lines before it; `Err` says why not.
fn wait_ready(
    log: &mpsc::Receiver<String>,
    guard: Duration,
) -> Result<(String, Vec<String>), String> {
    let mut before = Vec::new();
    loop {
        match log.recv_timeout(guard) {
            Ok(line) if line.contains("ready:") => return Ok((line, before)),
            Ok(line) => before.push(line),
            Err(e) => {
                return Err(format!(
                    "daemon did not log `ready` ({e}); its log:\n{}",
                    before.join("\n")
                ))
            }
        }
    }
}

/// The address of listener `name` (`"https="`) in the `ready:` line.
fn addr(ready: &str, name: &str) -> Option<SocketAddr> {
    ready
        .split_whitespace()
        .find_map(|w| w.strip_prefix(name))
        .map(|a| a.split("->").next().unwrap().parse().unwrap())
}

/// A running daemon, killed when dropped.
pub struct Daemon {
    child: Mutex<Child>,
    reader: Option<JoinHandle<()>>,
    /// The HTTPS listener.
    pub https: SocketAddr,
    /// The port-80 listener, when started with one.
    pub http: Option<SocketAddr>,
    /// The first `--tls-forward` listener, when started with one.
    pub forward: Option<SocketAddr>,
    /// Its data dir.
    pub data: PathBuf,
    /// The log lines after `ready:`, as they come.
    pub log: mpsc::Receiver<String>,
    /// The log lines up to and including `ready:`.
    pub startup: Vec<String>,
    transcript: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// The port-80 listener (panics when started without one).
    #[track_caller]
    pub fn http(&self) -> SocketAddr {
        self.http.expect("the daemon was started without --http")
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.lock().map(|c| c.id()).unwrap_or(0)
    }

    /// Whether the process is still running.
    pub fn is_running(&self) -> bool {
        self.child
            .lock()
            .map(|mut c| matches!(c.try_wait(), Ok(None)))
            .unwrap_or(false)
    }

    /// `setup-token=...` from the start-up log (logged while no admin
    /// password is set).
    pub fn setup_token(&self) -> Option<String> {
        self.startup.iter().find_map(|l| {
            let rest = &l[l.find("setup-token=")? + "setup-token=".len()..];
            Some(rest.split_whitespace().next()?.to_owned())
        })
    }

    /// Every log line read so far (whoever read the channel), one a line.
    pub fn log_text(&self) -> String {
        self.transcript
            .lock()
            .map(|t| t.join("\n"))
            .unwrap_or_default()
    }

    /// The CLI on the daemon's data dir (through its control socket).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        cli(&self.data, args)
    }

    /// SIGTERM, wait for the exit: its status and every log line of the
    /// daemon's life (read to the end of the pipe with `Drain::Always`).
    pub fn stop(mut self) -> (ExitStatus, Vec<String>) {
        let pid = self.pid().to_string();
        let kill = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(
            kill.map(|s| s.success()).unwrap_or(false),
            "kill -TERM {pid}"
        );
        let status = self
            .child
            .get_mut()
            .map(|c| c.wait())
            .expect("child lock")
            .expect("wait for the daemon");
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let lines = self
            .transcript
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default();
        (status, lines)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(c) = self.child.get_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
