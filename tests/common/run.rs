//! Running a process from a test: `run_command` feeds stdin, reads stdout
//! and stderr on threads (never deadlocks on full pipes) and kills the
//! process at `HANG_GUARD` (a hang is a failure, not a timing assertion);
//! `Out` is what one run gave, with the assertions the CLI's contract needs
//! (success, usage error, `{"error":{"code","message"}}`).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_pbx-certd");

/// A command still running after this is killed and the test fails: the CLI
/// must never hang (this is a hang guard, not a performance assertion).
pub const HANG_GUARD: Duration = Duration::from_secs(120);

/// What one run of a process gave.
#[derive(Debug, Clone)]
pub struct Out {
    pub cmd: String,
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Everything about the run, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "command: {}\nexit status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmd, self.status, self.stdout, self.stderr
        )
    }

    /// stdout parsed as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!("stdout is not one JSON document ({e})\n{}", self.describe())
        })
    }

    /// Asserts exit 0 and returns self.
    #[track_caller]
    pub fn success(&self) -> &Self {
        assert_eq!(self.status, 0, "expected success\n{}", self.describe());
        self
    }

    /// Asserts a usage error: exit 2 and something on stderr.
    #[track_caller]
    pub fn usage_error(&self) -> &Self {
        assert_eq!(
            self.status,
            2,
            "expected a usage error (exit 2)\n{}",
            self.describe()
        );
        assert!(
            !self.stderr.trim().is_empty(),
            "a usage error must explain itself on stderr\n{}",
            self.describe()
        );
        self
    }

    /// Asserts a rejected operation run with `--json`: exit 1, stdout exactly
    /// `{"error":{"code","message"}}`, a human message on stderr. Returns it.
    #[track_caller]
    pub fn api_error(&self) -> ApiError {
        assert_eq!(
            self.status,
            1,
            "expected a rejected operation (exit 1)\n{}",
            self.describe()
        );
        assert!(
            !self.stderr.trim().is_empty(),
            "a rejected operation must print a human message on stderr\n{}",
            self.describe()
        );
        let v = self.json();
        let obj = v
            .as_object()
            .unwrap_or_else(|| panic!("error output is not an object\n{}", self.describe()));
        assert_eq!(
            obj.len(),
            1,
            "error output must be {{\"error\":{{..}}}} only\n{}",
            self.describe()
        );
        let e = &v["error"];
        let code = e["code"]
            .as_str()
            .unwrap_or_else(|| panic!("error.code must be a string\n{}", self.describe()))
            .to_string();
        let message = e["message"]
            .as_str()
            .unwrap_or_else(|| panic!("error.message must be a string\n{}", self.describe()))
            .to_string();
        assert!(
            !message.trim().is_empty(),
            "error.message is empty\n{}",
            self.describe()
        );
        ApiError {
            code,
            message,
            out: self.clone(),
        }
    }
}

/// A `{"error":{"code","message"}}` answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: String,
    pub message: String,
    pub out: Out,
}

impl ApiError {
    /// Asserts the code, with the whole run in the failure message.
    #[track_caller]
    pub fn expect(&self, code: &str) -> &Self {
        assert_eq!(self.code, code, "wrong error code\n{}", self.out.describe());
        self
    }
}

/// Runs `cmd`, feeding `stdin` (or nothing: stdin closed), killing it at the
/// hang guard. Never deadlocks on full pipes (readers run on threads).
pub fn run_command(mut cmd: Command, stdin: Option<Vec<u8>>) -> Out {
    let desc = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
    let writer = stdin.map(|data| {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        std::thread::spawn(move || {
            // The child may exit before reading everything (e.g. too-large):
            // a broken pipe is not the test's concern.
            let _ = pipe.write_all(&data);
        })
    });
    let mut out_pipe = child.stdout.take().expect("stdout pipe");
    let mut err_pipe = child.stderr.take().expect("stderr pipe");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait().expect("try_wait") {
            Some(status) => break status,
            None if start.elapsed() > HANG_GUARD => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{desc} did not finish within {HANG_GUARD:?}: it hangs");
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned();
    let status = status
        .code()
        .unwrap_or_else(|| panic!("{desc} was killed by a signal: {status:?}\nstderr:\n{stderr}"));
    Out {
        cmd: desc,
        status,
        stdout,
        stderr,
    }
}
