//! Thin entry point: restrict file permissions, parse arguments, run.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    // Everything the store creates must be private (keys live there): 0600/0700.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = pbx_certd::cli::Cli::parse();
    std::process::exit(pbx_certd::cli::run(cli));
}
