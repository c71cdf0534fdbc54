//! A tiny stderr logger for the `log` facade (no extra crate on appliances).
//!
//! Why: the daemon logs lifecycle lines (ready, certificate changes, failed
//! handshakes) to stderr, where systemd/BusyBox init collect them.
//! What must hold: the level comes from `PBX_CERTD_LOG`
//! (`error|warn|info|debug|trace`, default `info`); secrets are never logged;
//! a write error (stderr closed) drops the line and never stops the daemon.

use log::{LevelFilter, Log, Metadata, Record};

struct StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            // Not eprintln!: it panics when stderr is gone (a closed log
            // pipe), and a lost log line must never stop the daemon.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr().lock(),
                "pbx-certd[{}] {}",
                record.level().as_str().to_ascii_lowercase(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

/// Install the logger (idempotent).
pub fn init() {
    let level = match std::env::var("PBX_CERTD_LOG").as_deref() {
        Ok("error") => LevelFilter::Error,
        Ok("warn") => LevelFilter::Warn,
        Ok("debug") => LevelFilter::Debug,
        Ok("trace") => LevelFilter::Trace,
        Ok("off") => LevelFilter::Off,
        _ => LevelFilter::Info,
    };
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}
