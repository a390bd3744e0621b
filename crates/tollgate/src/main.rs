//! Entry point: parse the command line and hand over to `tollgate::cli`.

use clap::Parser as _;

/// mimalloc rather than glibc's allocator: a request allocates and frees many small
/// objects across the runtime's threads, and glibc's arenas showed up as ~15 % of server
/// CPU in the mint profile (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let cli = tollgate::cli::Cli::parse();
    std::process::exit(tollgate::cli::run(cli).await);
}
