//! Starting `pbx-certd serve` from a test: spawn it with stderr piped, read
//! its log lines on a thread into a channel, wait for the `ready:` line and
//! take the listeners' addresses from it (`https=ADDR`, `http=ADDR`,
//! `forward=ADDR->TARGET`); and `cli`, one CLI run on a data dir.
//!
//! What must hold: with `Drain::Always` the reader keeps reading stderr for
//! the daemon's whole life, even when nobody reads the channel any more, so
//! the daemon never meets a closed log pipe by accident. `Drain::WhileRead`
//! stops (and closes the pipe) at the first line after the receiver is
//! dropped: only for the test of exactly that.
//!
//! `tests/common/mod.rs` declares it (`common::serve`); a test binary without
//! `common` declares it with `#[path = "common/serve.rs"] mod serve;`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// `pbx-certd --data-dir DIR ARGS` run to its end: exit code (-1 when
/// killed by a signal), stdout, stderr.
pub fn cli(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pbx-certd"))
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

/// Spawn `cmd` (a `serve` command line) with stderr piped and stdout
/// discarded; its log lines arrive on the receiver. With `echo` each line
/// also goes to the test's stderr as `daemon: LINE` (shown on failure).
pub fn spawn(cmd: &mut Command, drain: Drain, echo: bool) -> (Child, mpsc::Receiver<String>) {
    let mut child = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if echo {
                eprintln!("daemon: {line}");
            }
            if tx.send(line).is_err() && drain == Drain::WhileRead {
                break;
            }
        }
    });
    (child, rx)
}

/// Wait for the `ready:` line (`guard` is a hang guard, not a timing
/// assertion): the line and the lines before it.
pub fn wait_ready(log: &mpsc::Receiver<String>, guard: Duration) -> (String, Vec<String>) {
    let mut before = Vec::new();
    loop {
        let line = log
            .recv_timeout(guard)
            .expect("daemon did not log `ready` in time");
        if line.contains("ready:") {
            return (line, before);
        }
        before.push(line);
    }
}

/// The address of listener `name` (`"https="`) in the `ready:` line.
pub fn addr(ready: &str, name: &str) -> Option<SocketAddr> {
    ready
        .split_whitespace()
        .find_map(|w| w.strip_prefix(name))
        .map(|a| a.split("->").next().unwrap().parse().unwrap())
}

/// A running daemon, killed when dropped; its log is read for its whole
/// life.
pub struct Daemon {
    pub child: Child,
    pub https: SocketAddr,
    /// The log lines after `ready:`.
    pub log: mpsc::Receiver<String>,
}

impl Daemon {
    /// Start `cmd` (a `serve` command line with an HTTPS listener) and wait
    /// (at most 60 s, a hang guard) until it is ready.
    pub fn start(cmd: &mut Command, echo: bool) -> Daemon {
        let (child, log) = spawn(cmd, Drain::Always, echo);
        let (ready, _) = wait_ready(&log, Duration::from_secs(60));
        Daemon {
            child,
            https: addr(&ready, "https=").unwrap(),
            log,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
