//! `Pbx`: one fresh pbx-certd data dir (created by the binary) plus a
//! scratch folder for PEM files, and the CLI on it (`run`, `ok`, `err`,
//! `import*`, listings). `Pbx::daemon()` / `Pbx::serve(echo)` start the
//! daemon on it through `serve.rs`, the one way tests start it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use super::*;

static FILE_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// `dns add bind --provider rfc2136` for zone `alpha.test` at 127.0.0.1:53
/// with TSIG key `key_name` (hmac-sha256) and Base64 `secret`: a stored
/// provider holding a secret (the tests of backups and sealing; nothing is
/// ever sent to that server).
pub fn rfc2136_provider<'a>(key_name: &'a str, secret: &'a str) -> [&'a str; 15] {
    [
        "dns",
        "add",
        "bind",
        "--provider",
        "rfc2136",
        "--zone",
        "alpha.test",
        "--server",
        "127.0.0.1:53",
        "--tsig-name",
        key_name,
        "--tsig-algorithm",
        "hmac-sha256",
        "--tsig-secret",
        secret,
    ]
}

/// One fresh pbx-certd data dir (not created beforehand: the binary creates
/// it) plus a scratch folder for PEM files.
pub struct Pbx {
    pub tmp: tempfile::TempDir,
    pub data: PathBuf,
    pub files: PathBuf,
}

impl Default for Pbx {
    fn default() -> Self {
        Self::new()
    }
}

impl Pbx {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("data");
        let files = tmp.path().join("files");
        std::fs::create_dir(&files).expect("files dir");
        Pbx { tmp, data, files }
    }

    /// `pbx-certd --data-dir DATA ARGS...` with no data-dir env var around.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_remove("PBX_CERTD_DATA_DIR")
            .arg("--data-dir")
            .arg(&self.data)
            .args(args);
        cmd
    }

    /// `serve` on this data dir, to configure and start (the one way to
    /// start the daemon, see `serve.rs`).
    pub fn daemon(&self) -> serve::Serve {
        serve::Serve::on(&self.data)
    }

    /// `serve` on this data dir (HTTPS on a free loopback port, no HTTP),
    /// ready; with `echo` its log goes to the test's output too.
    pub fn serve(&self, echo: bool) -> serve::Daemon {
        self.daemon().echo(echo).start()
    }

    pub fn run(&self, args: &[&str]) -> Out {
        run_command(self.command(args), None)
    }

    pub fn run_stdin(&self, args: &[&str], stdin: &[u8]) -> Out {
        run_command(self.command(args), Some(stdin.to_vec()))
    }

    /// Runs `ARGS --json`.
    pub fn run_json(&self, args: &[&str]) -> Out {
        let mut a = args.to_vec();
        a.push("--json");
        self.run(&a)
    }

    /// Runs `ARGS --json`, asserts success, returns the JSON.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> Value {
        let out = self.run_json(args);
        out.success();
        out.json()
    }

    /// Runs `ARGS --json` for a command with nothing to report: asserts
    /// success and `{"ok":true}`.
    #[track_caller]
    pub fn ok_true(&self, args: &[&str]) {
        let out = self.run_json(args);
        out.success();
        assert_eq!(
            out.json(),
            serde_json::json!({"ok": true}),
            "a command with nothing to report prints {{\"ok\":true}}\n{}",
            out.describe()
        );
    }

    /// Runs `ARGS --json`, asserts a rejected operation, returns the error.
    #[track_caller]
    pub fn err(&self, args: &[&str]) -> ApiError {
        self.run_json(args).api_error()
    }

    /// Writes a file in the scratch folder; returns its path as a string.
    pub fn file(&self, hint: &str, contents: impl AsRef<[u8]>) -> String {
        let n = FILE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = self.files.join(format!("{n:04}-{hint}"));
        std::fs::write(&path, contents).expect("write scratch file");
        path.to_str().expect("utf-8 path").to_string()
    }

    /// `import --cert CERTFILE [--key KEYFILE] EXTRA... --json`.
    pub fn import(&self, cert: impl AsRef<[u8]>, key: Option<&str>, extra: &[&str]) -> Out {
        let cert_path = self.file("cert.pem", cert);
        let key_path = key.map(|k| self.file("key.pem", k));
        let mut args = vec!["import", "--cert", cert_path.as_str()];
        if let Some(k) = &key_path {
            args.push("--key");
            args.push(k.as_str());
        }
        args.extend_from_slice(extra);
        self.run_json(&args)
    }

    /// Import that must succeed; returns the JSON answer.
    #[track_caller]
    pub fn import_ok(&self, cert: impl AsRef<[u8]>, key: Option<&str>, extra: &[&str]) -> Value {
        let out = self.import(cert, key, extra);
        out.success();
        out.json()
    }

    /// Import that must be rejected; returns the error.
    #[track_caller]
    pub fn import_err(
        &self,
        cert: impl AsRef<[u8]>,
        key: Option<&str>,
        extra: &[&str],
    ) -> ApiError {
        self.import(cert, key, extra).api_error()
    }

    /// Imports `leaf` (with its key) and `chain` (issuers, leaf-first order).
    #[track_caller]
    pub fn import_chain(&self, leaf: &Issued, chain: &[&Issued], extra: &[&str]) -> Value {
        let mut pem = leaf.pem();
        for c in chain {
            pem.push_str(&c.pem());
        }
        self.import_ok(pem, Some(&leaf.key_pem()), extra)
    }

    /// `certs --json` as a list.
    #[track_caller]
    pub fn certs(&self) -> Vec<Value> {
        as_array(self.ok(&["certs"]))
    }

    /// IDs of `certs --json`, in its order.
    #[track_caller]
    pub fn cert_ids(&self) -> Vec<String> {
        self.certs()
            .iter()
            .map(|c| c["id"].as_str().expect("id").to_string())
            .collect()
    }

    /// `roots --json` as a list.
    #[track_caller]
    pub fn roots(&self) -> Vec<Value> {
        as_array(self.ok(&["roots"]))
    }

    /// IDs of `roots --json`.
    #[track_caller]
    pub fn root_ids(&self) -> BTreeSet<String> {
        self.roots()
            .iter()
            .map(|c| c["id"].as_str().expect("id").to_string())
            .collect()
    }

    /// `resolve [SNI] --json`.
    #[track_caller]
    pub fn resolve(&self, sni: Option<&str>) -> Value {
        match sni {
            Some(s) => self.ok(&["resolve", s]),
            None => self.ok(&["resolve"]),
        }
    }

    /// `tenant add NAME --dns A --dns B ...`, must succeed. (Whether it
    /// prints `{"ok":true}` is checked once, in tests/cli.rs, not everywhere.)
    #[track_caller]
    pub fn tenant_add(&self, name: &str, dns: &[&str]) {
        let mut args = vec!["tenant", "add", name];
        for d in dns {
            args.push("--dns");
            args.push(d);
        }
        self.ok(&args);
    }

    /// `system show --json`.
    #[track_caller]
    pub fn system(&self) -> Value {
        self.ok(&["system", "show"])
    }

    /// Everything observable about the store, to compare before/after.
    #[track_caller]
    pub fn state(&self) -> Value {
        serde_json::json!({
            "certs": self.ok(&["certs"]),
            "roots": self.ok(&["roots"]),
            "tenants": self.ok(&["tenant", "list"]),
            "system": self.ok(&["system", "show"]),
        })
    }
}
