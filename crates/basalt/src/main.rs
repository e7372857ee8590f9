//! The `basalt` binary: the server and its operator CLI. A thin shell over the
//! library crates; see ARCHITECTURE.md.

// The CLI prints to stdout by design: it is the command-line interface.
#![allow(clippy::print_stdout)]

mod cli;
mod http;
mod serve;
mod tls;
mod upgrade;

use clap::Parser;

/// mimalloc instead of glibc's malloc: under proxy load glibc's allocator took ~18 %
/// of the server's CPU, partly waiting on its arena locks (`perf`, benches/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // The process's rustls provider: agents' MCP executors (rmcp's HTTP client is
    // built without one of its own) use it for https servers.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("basalt: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
