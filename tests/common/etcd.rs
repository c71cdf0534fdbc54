//! Debian's etcd (`etcd-server` 3.4) as the clustered store peer: one or
//! more members on loopback, each with its own data dir in a tempdir,
//! started by the test and killed by their own PIDs (drop, `stop_all`).
//! `stop_all` + `start_all` restart every member on the same data dirs and
//! ports (a whole-cluster outage and its end). `Etcd::start_tls` serves the
//! client URLs over TLS and requires a client certificate from `ca`.
//!
//! etcd cannot take port 0 for its URLs: ports come from sockets the OS
//! chose and closed just before the start. Members run with
//! `--max-txn-ops 4096`: the first open seeds the whole Root CA list in one
//! transaction (README "Cluster"); `start_default_limits` runs etcd's
//! default of 128.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Hang guard of a start (a leader election takes about a second).
const GUARD: Duration = Duration::from_secs(60);

/// etcd's binary, or why it is missing.
pub fn etcd_bin() -> Result<PathBuf, String> {
    ["/usr/bin/etcd", "/usr/local/bin/etcd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| "etcd not installed (Debian: apt-get install etcd-server)".to_owned())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Client-side TLS of the members: PEM files in the cluster's tempdir.
struct Tls {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// A running etcd cluster on loopback.
pub struct Etcd {
    bin: PathBuf,
    tls: Option<Tls>,
    members: Vec<Member>,
    dir: tempfile::TempDir,
    /// `--max-txn-ops` (None: etcd's default, 128).
    max_txn_ops: Option<u32>,
}

struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

impl Etcd {
    /// Start `n` members and wait until the cluster answers a read.
    pub fn start(bin: &Path, n: usize) -> Etcd {
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_port(),
                peer: free_port(),
                child: None,
            })
            .collect();
        let mut etcd = Etcd {
            bin: bin.to_owned(),
            tls: None,
            members,
            dir: tempfile::tempdir().unwrap(),
            max_txn_ops: Some(4096),
        };
        etcd.start_all();
        etcd
    }

    /// One member with etcd's default limits (`--max-txn-ops` 128), as a
    /// cluster set up without README's advice runs.
    pub fn start_default_limits(bin: &Path) -> Etcd {
        let mut etcd = Etcd {
            bin: bin.to_owned(),
            tls: None,
            members: vec![Member {
                name: "m0".into(),
                client: free_port(),
                peer: free_port(),
                child: None,
            }],
            dir: tempfile::tempdir().unwrap(),
            max_txn_ops: None,
        };
        etcd.start_all();
        etcd
    }

    /// One member whose client URL is HTTPS with a certificate for
    /// 127.0.0.1 from `ca`, requiring client certificates from `ca`.
    pub fn start_tls(bin: &Path, ca: &super::certs::Issued) -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let server = super::certs::leaf(&["127.0.0.1", "localhost"]).signed_by(ca);
        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let tls = Tls {
            ca: write("ca.pem", ca.pem()),
            cert: write("server.pem", server.pem()),
            key: write("server.key", server.key_pem()),
        };
        let mut etcd = Etcd {
            bin: bin.to_owned(),
            tls: Some(tls),
            max_txn_ops: Some(4096),
            members: vec![Member {
                name: "m0".into(),
                client: free_port(),
                peer: free_port(),
                child: None,
            }],
            dir,
        };
        etcd.start_all();
        etcd
    }

    /// `host:port` of each member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client))
            .collect()
    }

    /// A `--store` URL over every member with this key prefix.
    pub fn store_url(&self, prefix: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("etcd+{scheme}://{}/{prefix}", self.endpoints().join(","))
    }

    /// Start every stopped member (same data dirs and ports) and wait
    /// until the cluster answers a read.
    pub fn start_all(&mut self) {
        let cluster = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        for m in &mut self.members {
            if m.child.is_some() {
                continue;
            }
            let scheme = if self.tls.is_some() { "https" } else { "http" };
            let client = format!("{scheme}://127.0.0.1:{}", m.client);
            let peer = format!("http://127.0.0.1:{}", m.peer);
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join(format!("{}.log", m.name)))
                .unwrap();
            let mut cmd = Command::new(&self.bin);
            if let Some(tls) = &self.tls {
                cmd.arg("--cert-file")
                    .arg(&tls.cert)
                    .arg("--key-file")
                    .arg(&tls.key)
                    .arg("--trusted-ca-file")
                    .arg(&tls.ca)
                    .arg("--client-cert-auth");
            }
            let child = cmd
                .args(["--name", &m.name])
                .arg("--data-dir")
                .arg(self.dir.path().join(&m.name))
                .args(["--listen-client-urls", &client])
                .args(["--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer])
                .args(["--initial-advertise-peer-urls", &peer])
                .args(["--initial-cluster", &cluster])
                .args(["--initial-cluster-token", "pbx-certd-test"])
                .args(
                    self.max_txn_ops
                        .map(|n| vec!["--max-txn-ops".to_owned(), n.to_string()])
                        .unwrap_or_default(),
                )
                .stdin(Stdio::null())
                .stdout(Stdio::from(log.try_clone().unwrap()))
                .stderr(Stdio::from(log))
                .spawn()
                .unwrap();
            m.child = Some(child);
        }
        let start = Instant::now();
        while !self.answers() {
            if self.tls.is_some() {
                // Not read over TLS here: the first store call waits.
                let log = self.dir.path().join("m0.log");
                if std::fs::read_to_string(log)
                    .unwrap_or_default()
                    .contains("ready to serve client requests")
                {
                    break;
                }
            }
            assert!(
                start.elapsed() < GUARD,
                "etcd did not come up; logs in {}:\n{}",
                self.dir.path().display(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kill member `i` (by its PID) and reap it.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kill every member (by its PID) and reap it.
    pub fn stop_all(&mut self) {
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Kill the current leader (by its PID); its index. Panics when no
    /// running member names a leader.
    pub fn kill_leader(&mut self) -> usize {
        let status: Vec<Option<String>> = self
            .endpoints()
            .iter()
            .map(|ep| post(ep, "/v3/maintenance/status", "{}"))
            .collect();
        let field = |body: &str, name: &str| -> Option<String> {
            let v: serde_json::Value = serde_json::from_str(body).ok()?;
            let got = match name {
                "leader" => v.get("leader"),
                _ => v.pointer("/header/member_id"),
            };
            got.and_then(|x| x.as_str()).map(str::to_owned)
        };
        let leader = status
            .iter()
            .flatten()
            .find_map(|b| field(b, "leader"))
            .expect("no member names a leader");
        let index = status
            .iter()
            .position(|b| b.as_deref().and_then(|b| field(b, "member")) == Some(leader.clone()))
            .expect("the leader is not one of the members");
        if let Some(mut child) = self.members[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        index
    }

    /// Whether a linearizable read succeeds on some member (a leader exists).
    fn answers(&self) -> bool {
        self.endpoints()
            .iter()
            .any(|ep| post(ep, "/v3/kv/range", r#"{"key":"AA=="}"#).is_some())
    }

    /// Every member's log (last lines).
    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let text = std::fs::read_to_string(self.dir.path().join(format!("{}.log", m.name)))
                    .unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                format!(
                    "--- {} ---\n{}",
                    m.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// One POST on plain HTTP; the body of a 200 answer.
fn post(endpoint: &str, path: &str, body: &str) -> Option<String> {
    let mut s = TcpStream::connect(endpoint).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {endpoint}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop_all();
    }
}
