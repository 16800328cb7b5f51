//! The `agentsim` binary: a thin shell over the library's CLI.

use clap::Parser;

/// mimalloc: a run allocates several small blocks per event (the boxed message of each ractor
/// cast, transcript entries, names); the system allocator spent about a tenth of a run on them,
/// and a sweep is about a tenth faster with this one. No output depends on the allocator: every
/// digest is the same under either.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    agentsim::cli::end_quietly_when_output_closes();
    agentsim::cli::main(agentsim::cli::Cli::parse())
}
