//! The command line: `serve` plus administrative commands that act on the same database
//! (safe while a server is running on it).
//!
//! Commands print results on stdout (one JSON value with `--json`: an object, or for
//! `server-key list` an array) and logs on stderr, so scripts can pipe stdout straight into
//! a JSON parser.
//!
//! This module parses the command line, sets up logging and runs `serve`; each resource's
//! subcommands (their arguments and what they do) live in a file of their own, so a new
//! resource is a new file and one line in [`Command`].

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tokio::net::TcpListener;
use tollgate_token::{ProjectId, Scopes};

use crate::App;
use crate::config::{self, Config, LogFormat};
use crate::startup::OnMissingDatabase;

mod auth_keys;
mod keys;
mod namespaces;
mod projects;

pub use auth_keys::AuthKeyCommand;
pub use keys::{EmbedCommand, KeyCommand, KeyPurpose, ServerKeyCommand};
pub use namespaces::NamespaceCommand;
pub use projects::{ProjectCommand, TokenCommand};

/// Tollgate issues short-lived access tokens for real-time channels and enforces them at
/// its own WebSocket gateway.
#[derive(Debug, Parser)]
#[command(name = "tollgate", version, about)]
pub struct Cli {
    /// TOML configuration file. Every setting can also be given as a TOLLGATE_* variable.
    #[arg(long, global = true, env = "TOLLGATE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Let an administrative command create the SQLite database when there is none yet.
    /// Without it the command refuses, naming the path it looked at, so a command run from
    /// another directory cannot quietly start a second installation. (`serve` always
    /// creates it.)
    #[arg(long, global = true)]
    pub create_database: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: token APIs, admin API, WebSocket gateway and health endpoints on one
    /// listener.
    Serve,
    /// Manage projects.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Manage a project's API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage a project's keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Manage a project's channel namespaces and their rules.
    #[command(subcommand)]
    Namespace(NamespaceCommand),
    /// Manage the keys that verify an application's user JWTs.
    #[command(subcommand)]
    AuthKey(AuthKeyCommand),
    /// Manage click-to-call embed keys (`c2c_…` tokens for POST /api/fabric/embeds/tokens).
    #[command(subcommand)]
    Embed(EmbedCommand),
    /// Manage a project's Centrifugo server API keys (`sk_…`, sent as `X-API-Key`).
    #[command(subcommand)]
    ServerKey(ServerKeyCommand),
}

#[derive(Debug, Clone, Copy, Args)]
pub struct Output {
    /// Print the result as exactly one line of JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// How long `serve` waits for in-flight requests after SIGTERM (Centrifugo's default).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs a parsed command line. Returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    let loaded = match config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tollgate: {e}");
            return 2;
        }
    };
    init_logging(&loaded.config);
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let missing = if cli.create_database {
        OnMissingDatabase::Create
    } else {
        OnMissingDatabase::Refuse
    };
    match execute(cli.command, loaded.config, missing).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("tollgate: {e:#}");
            1
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // A second initialisation (tests calling `run` twice) is harmless; ignore it.
    let _ = match config.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// How a list shows a revocable credential.
fn revocation_state(revoked: bool) -> &'static str {
    if revoked { "revoked" } else { "active" }
}

fn parse_project(s: &str) -> anyhow::Result<ProjectId> {
    s.parse()
        .map_err(|_| anyhow::anyhow!("--project {s:?} is not a project id (a UUID)"))
}

fn parse_scopes(s: &str) -> anyhow::Result<Scopes> {
    let scopes = Scopes::parse_list(s).map_err(|e| anyhow::anyhow!("--scopes: {e}"))?;
    anyhow::ensure!(!scopes.is_empty(), "--scopes: name at least one scope");
    Ok(scopes)
}

fn print(output: Output, value: &serde_json::Value, text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if output.json {
        writeln!(out, "{value}")?;
    } else {
        writeln!(out, "{text}")?;
    }
    Ok(())
}

fn parse_uuid(what: &str, s: &str) -> anyhow::Result<uuid::Uuid> {
    uuid::Uuid::try_parse(s).map_err(|_| anyhow::anyhow!("{what} {s:?} is not a UUID"))
}

async fn execute(
    command: Command,
    config: Config,
    missing: OnMissingDatabase,
) -> anyhow::Result<()> {
    if let Command::Serve = command {
        return serve(config).await;
    }
    let app = App::open(config, missing).await?;
    let svc = &app.tollgate;
    match command {
        Command::Serve => unreachable!("handled above"),
        Command::Embed(cmd) => keys::embed(svc, cmd).await,
        Command::ServerKey(cmd) => keys::server_key(svc, cmd).await,
        Command::Key(cmd) => keys::key(svc, cmd).await,
        Command::Namespace(cmd) => namespaces::namespace(svc, cmd).await,
        Command::AuthKey(cmd) => auth_keys::auth_key(svc, cmd).await,
        Command::Project(cmd) => projects::project(svc, cmd).await,
        Command::Token(cmd) => projects::token(svc, cmd).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let app = App::build(config).await?;
    app.log_startup();
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (TOLLGATE_LISTEN)"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "tollgate listening");
    // Drain for at most SHUTDOWN_GRACE after the signal, then stop regardless, so a client
    // holding a request open cannot keep the process alive forever.
    let (signalled, on_signal) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        crate::shutdown_signal().await;
        let _ = signalled.send(());
    };
    let server = app.serve(listener, shutdown);
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result?,
        () = async {
            if on_signal.await.is_ok() {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => tracing::warn!("in-flight requests did not finish in time; stopping anyway"),
    }
    tracing::info!("tollgate stopped");
    Ok(())
}
