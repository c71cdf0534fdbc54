//! Thin entry point: restrict file permissions, parse arguments, run.
#![forbid(unsafe_code)]

use clap::{CommandFactory, FromArgMatches};

fn main() {
    // Everything the store creates must be private (keys live there): 0600/0700.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    // The version names the target and the bundled Root CA list; it is built
    // at run time (the list's hash), once, so leaking it is fine.
    let version: &'static str = Box::leak(pbx_certd::cli::long_version().into_boxed_str());
    let matches = pbx_certd::cli::Cli::command()
        .version(version)
        .get_matches();
    let cli = pbx_certd::cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    std::process::exit(pbx_certd::cli::run(cli));
}
