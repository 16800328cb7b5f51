//! The `agentsim` binary: a thin shell over the library's CLI.

use clap::Parser;

fn main() -> std::process::ExitCode {
    agentsim::cli::main(agentsim::cli::Cli::parse())
}
