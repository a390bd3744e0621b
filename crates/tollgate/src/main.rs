//! Entry point: parse the command line and hand over to `tollgate::cli`.

use clap::Parser as _;

#[tokio::main]
async fn main() {
    let cli = tollgate::cli::Cli::parse();
    std::process::exit(tollgate::cli::run(cli).await);
}
