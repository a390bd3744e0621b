//! The command line: `serve` plus administrative commands that act on the same database
//! (safe while a server is running on it).
//!
//! Commands print results on stdout (one JSON value with `--json`: an object, or for
//! `server-key list` an array) and logs on stderr, so scripts can pipe stdout straight into
//! a JSON parser.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use tokio::net::TcpListener;
use tollgate_token::ids::ApiTokenId;
use tollgate_token::{ProjectId, Scopes};

use crate::App;
use crate::config::{self, Config, LogFormat};
use crate::startup::OnMissingDatabase;

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

#[derive(Debug, Subcommand)]
pub enum ServerKeyCommand {
    /// Create a server API key for a project. The key is shown once.
    Create {
        /// Project id.
        #[arg(long)]
        project: String,
        /// A name to recognise the key by.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// List a project's server API keys, revoked ones included (never the keys).
    List {
        /// Project id.
        #[arg(long)]
        project: String,
        #[command(flatten)]
        output: Output,
    },
    /// Revoke a server API key; requests using it fail from the next one on.
    Revoke {
        /// Project id.
        #[arg(long)]
        project: String,
        /// The key's id (from `server-key list`).
        key_id: String,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Rotate a key: a new key takes over, and the old one keeps accepting the tokens it
    /// made until they expire (or, for signing keys, until --retire-after).
    Rotate {
        /// Project id.
        #[arg(long)]
        project: String,
        /// Which key to rotate.
        #[arg(long, value_enum)]
        purpose: KeyPurpose,
        /// Signing keys: the new key's algorithm (HS256, HS384, HS512, ES256, EdDSA, RS256).
        #[arg(long, default_value = "ES256")]
        alg: String,
        /// Signing keys: seconds the old key keeps verifying (and stays in the JWKS); at least
        /// 60, so every node has switched to the new key first.
        #[arg(long, default_value_t = 86_400)]
        retire_after: i64,
        #[command(flatten)]
        output: Output,
    },
    /// List a project's signing keys with their states.
    List {
        /// Project id.
        #[arg(long)]
        project: String,
        #[command(flatten)]
        output: Output,
    },
}

/// What a key is for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KeyPurpose {
    /// The key that signs PubSub, Chat and Centrifugo tokens (published in the JWKS).
    Signing,
    /// The AES-256-GCM key of subscriber access and refresh tokens.
    SubscriberTokens,
}

#[derive(Debug, Subcommand)]
pub enum NamespaceCommand {
    /// Add or replace a namespace: who may get subscription tokens for its channels.
    Set {
        /// Project id.
        #[arg(long)]
        project: String,
        /// Namespace name (the part before `:` in channel names).
        #[arg(long)]
        name: String,
        /// owner | member:<group kind> | authenticated | deny
        #[arg(long)]
        rule: String,
        /// What channel ids look like: uuid | token.
        #[arg(long, default_value = "uuid")]
        id_format: String,
        /// Subscription-token lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        token_ttl: i64,
        #[command(flatten)]
        output: Output,
    },
    /// List a project's namespaces, defaults included.
    List {
        /// Project id.
        #[arg(long)]
        project: String,
        #[command(flatten)]
        output: Output,
    },
    /// Remove a project namespace (a default one of the same name comes back).
    Delete {
        /// Project id.
        #[arg(long)]
        project: String,
        /// Namespace name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuthKeyCommand {
    /// List the issuers whose user JWTs the project accepts.
    List {
        /// Project id.
        #[arg(long)]
        project: String,
        #[command(flatten)]
        output: Output,
    },
    /// Stop accepting an issuer's user JWTs (to replace its key: remove, then add).
    Remove {
        /// Project id.
        #[arg(long)]
        project: String,
        /// The issuer to forget.
        #[arg(long)]
        issuer: String,
        #[command(flatten)]
        output: Output,
    },
    /// Register how to verify the application's own user JWTs (found by their `iss`).
    Add {
        /// Project id.
        #[arg(long)]
        project: String,
        /// The exact `iss` of the application's tokens.
        #[arg(long)]
        issuer: String,
        /// The exact `aud` the tokens must carry.
        #[arg(long)]
        audience: String,
        /// File holding the HMAC secret (raw bytes, at least the hash size).
        #[arg(long, conflicts_with = "public_key_file")]
        hmac_secret_file: Option<PathBuf>,
        /// HMAC algorithm for --hmac-secret-file.
        #[arg(long, default_value = "HS256")]
        hmac_alg: String,
        /// File holding a PEM public key (P-256, Ed25519 or RSA ≥ 2048 bits).
        #[arg(long, conflicts_with = "jwks_url")]
        public_key_file: Option<PathBuf>,
        /// The application's JWKS URL: https to a public address (loopback and private
        /// hosts need jwks.allow_private_hosts); tokens must carry `kid`.
        #[arg(long)]
        jwks_url: Option<String>,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum EmbedCommand {
    /// Create an embed key for one subscriber address. The `c2c_` token is shown once.
    Create {
        /// Project id.
        #[arg(long)]
        project: String,
        /// Address id (from GET /api/fabric/resources/subscribers/{id}/addresses).
        #[arg(long)]
        address: String,
        #[command(flatten)]
        output: Output,
    },
    /// List a project's embed keys (never their tokens).
    List {
        /// Project id.
        #[arg(long)]
        project: String,
        #[command(flatten)]
        output: Output,
    },
    /// Revoke an embed key; its token stops minting at once.
    Revoke {
        /// Project id.
        #[arg(long)]
        project: String,
        /// The embed key's id (from `embed list`).
        embed_id: String,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Create a project with its first API token and signing key. The token is shown once.
    Create {
        /// Human-readable project name.
        #[arg(long)]
        name: String,
        /// Comma-separated scopes for the first API token.
        #[arg(long, default_value = "pubsub,chat,calling,messaging,fax,video")]
        scopes: String,
        #[command(flatten)]
        output: Output,
    },
    /// List projects.
    List {
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create another API token for a project. The token is shown once.
    Create {
        /// Project id.
        #[arg(long)]
        project: String,
        /// A name to recognise the token by.
        #[arg(long, default_value = "api token")]
        name: String,
        /// Comma-separated scopes: calling, chat, datasphere, fax, management, messaging,
        /// numbers, pubsub, storage, tasking, video.
        #[arg(long, default_value = "pubsub,chat,calling,messaging,fax,video")]
        scopes: String,
        #[command(flatten)]
        output: Output,
    },
    /// List a project's API tokens (never their secrets).
    List {
        /// Project id.
        #[arg(long)]
        project: String,
        #[command(flatten)]
        output: Output,
    },
    /// Revoke an API token; requests using it fail from the next one on.
    Revoke {
        /// Project id.
        #[arg(long)]
        project: String,
        /// The API token's id (from `token list`).
        token_id: String,
        #[command(flatten)]
        output: Output,
    },
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
    let svc_err = |e: tollgate_service::ServiceError| anyhow::anyhow!("{e}");
    match command {
        Command::Serve => unreachable!("handled above"),
        Command::Embed(cmd) => embed(svc, cmd).await,
        Command::ServerKey(cmd) => server_key(svc, cmd).await,
        Command::Key(cmd) => key(svc, cmd).await,
        Command::Namespace(cmd) => namespace(svc, cmd).await,
        Command::AuthKey(cmd) => auth_key(svc, cmd).await,
        Command::Project(ProjectCommand::Create {
            name,
            scopes,
            output,
        }) => {
            let created = svc
                .create_project(&name, parse_scopes(&scopes)?)
                .await
                .map_err(svc_err)?;
            let id = created.project.id.to_string();
            let token = created.api_token.expose();
            print(
                output,
                &json!({"project_id": id, "api_token": token}),
                &format!(
                    "project_id: {id}\napi_token:  {token}\n\nThe API token is shown only this once; store it now."
                ),
            )
        }
        Command::Project(ProjectCommand::List { output }) => {
            let projects = svc.list_projects().await.map_err(svc_err)?;
            let list: Vec<_> = projects
                .iter()
                .map(|p| json!({"project_id": p.id.to_string(), "name": p.name, "created_at": p.created_at.seconds()}))
                .collect();
            let text = projects
                .iter()
                .map(|p| format!("{}  {}", p.id, p.name))
                .collect::<Vec<_>>()
                .join("\n");
            print(output, &json!({ "projects": list }), &text)
        }
        Command::Token(TokenCommand::Create {
            project,
            name,
            scopes,
            output,
        }) => {
            let project = parse_project(&project)?;
            let (id, secret) = svc
                .create_api_token(project, &name, parse_scopes(&scopes)?)
                .await
                .map_err(svc_err)?;
            print(
                output,
                &json!({"project_id": project.to_string(), "token_id": id.to_string(), "api_token": secret.expose()}),
                &format!(
                    "token_id:  {id}\napi_token: {}\n\nThe API token is shown only this once; store it now.",
                    secret.expose()
                ),
            )
        }
        Command::Token(TokenCommand::List { project, output }) => {
            let project = parse_project(&project)?;
            let tokens = svc.list_api_tokens(project).await.map_err(svc_err)?;
            let list: Vec<_> = tokens
                .iter()
                .map(|t| {
                    json!({
                        "token_id": t.id.to_string(),
                        "name": t.name,
                        "scopes": t.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                        "created_at": t.created_at.seconds(),
                        "revoked_at": t.revoked_at.map(|r| r.seconds()),
                    })
                })
                .collect();
            let text = tokens
                .iter()
                .map(|t| {
                    let state = revocation_state(t.revoked_at.is_some());
                    format!("{}  {:<8} {}  [{}]", t.id, state, t.name, t.scopes)
                })
                .collect::<Vec<_>>()
                .join("\n");
            print(output, &json!({ "tokens": list }), &text)
        }
        Command::Token(TokenCommand::Revoke {
            project,
            token_id,
            output,
        }) => {
            let project = parse_project(&project)?;
            let id: ApiTokenId = token_id
                .parse()
                .map_err(|_| anyhow::anyhow!("{token_id:?} is not an API token id"))?;
            svc.revoke_api_token(project, id).await.map_err(svc_err)?;
            print(
                output,
                &json!({"token_id": id.to_string(), "revoked": true}),
                &format!("revoked {id}"),
            )
        }
    }
}

async fn key(svc: &tollgate_service::Tollgate, command: KeyCommand) -> anyhow::Result<()> {
    let svc_err = |e: tollgate_service::ServiceError| anyhow::anyhow!("{e}");
    match command {
        KeyCommand::Rotate {
            project,
            purpose: KeyPurpose::Signing,
            alg,
            retire_after,
            output,
        } => {
            let alg: tollgate_token::jose::Algorithm = alg.parse().map_err(|_| {
                anyhow::anyhow!(
                    "--alg {alg:?}: expected HS256, HS384, HS512, ES256, EdDSA or RS256"
                )
            })?;
            anyhow::ensure!(
                (0..=30 * 86_400).contains(&retire_after),
                "--retire-after must be 0 to 2592000 seconds"
            );
            let kid = svc
                .rotate_signing_key(parse_project(&project)?, alg, retire_after)
                .await
                .map_err(svc_err)?;
            print(
                output,
                &json!({"kid": kid.as_str(), "purpose": "signing", "alg": alg.as_str()}),
                &format!("new {alg} signing key {kid} is active"),
            )
        }
        KeyCommand::List { project, output } => {
            let keys = svc
                .signing_keys(parse_project(&project)?)
                .await
                .map_err(svc_err)?;
            let list: Vec<_> = keys
                .iter()
                .map(|k| json!({"kid": k.kid.as_str(), "alg": k.alg.as_str(), "state": k.state.as_str(),
                               "created_at": k.created_at.seconds(), "not_after": k.not_after.map(|t| t.seconds())}))
                .collect();
            let text = keys
                .iter()
                .map(|k| format!("{}  {:<6} {}", k.kid, k.alg, k.state))
                .collect::<Vec<_>>()
                .join("\n");
            print(output, &json!({ "keys": list }), &text)
        }
        KeyCommand::Rotate {
            project,
            purpose: KeyPurpose::SubscriberTokens,
            output,
            ..
        } => {
            let kid = svc
                .rotate_subscriber_token_key(parse_project(&project)?)
                .await
                .map_err(svc_err)?;
            print(
                output,
                &json!({"kid": kid.as_str(), "purpose": "subscriber-tokens"}),
                &format!("new subscriber-token key {kid} is active"),
            )
        }
    }
}

fn parse_uuid(what: &str, s: &str) -> anyhow::Result<uuid::Uuid> {
    uuid::Uuid::try_parse(s).map_err(|_| anyhow::anyhow!("{what} {s:?} is not a UUID"))
}

async fn embed(svc: &tollgate_service::Tollgate, command: EmbedCommand) -> anyhow::Result<()> {
    let svc_err = |e: tollgate_service::ServiceError| anyhow::anyhow!("{e}");
    match command {
        EmbedCommand::Create {
            project,
            address,
            output,
        } => {
            let project = parse_project(&project)?;
            let address = parse_uuid("--address", &address)?;
            let (id, secret) = svc
                .create_embed_key(project, address)
                .await
                .map_err(svc_err)?;
            print(
                output,
                &json!({"embed_id": id, "token": secret.expose(), "address_id": address}),
                &format!(
                    "embed_id: {id}\ntoken:    {}\n\nThe token is shown only this once.",
                    secret.expose()
                ),
            )
        }
        EmbedCommand::List { project, output } => {
            let keys = svc
                .list_embed_keys(parse_project(&project)?)
                .await
                .map_err(svc_err)?;
            let list: Vec<_> = keys
                .iter()
                .map(|k| {
                    json!({"embed_id": k.id, "address_id": k.address_id,
                           "created_at": k.created_at.seconds(),
                           "revoked_at": k.revoked_at.map(|r| r.seconds())})
                })
                .collect();
            let text = keys
                .iter()
                .map(|k| {
                    let state = revocation_state(k.revoked_at.is_some());
                    format!("{}  {state:<8} address {}", k.id, k.address_id)
                })
                .collect::<Vec<_>>()
                .join("\n");
            print(output, &json!({ "embeds": list }), &text)
        }
        EmbedCommand::Revoke {
            project,
            embed_id,
            output,
        } => {
            let id = parse_uuid("embed id", &embed_id)?;
            svc.revoke_embed_key(parse_project(&project)?, id)
                .await
                .map_err(svc_err)?;
            print(
                output,
                &json!({"embed_id": id, "revoked": true}),
                &format!("revoked {id}"),
            )
        }
    }
}

async fn server_key(
    svc: &tollgate_service::Tollgate,
    command: ServerKeyCommand,
) -> anyhow::Result<()> {
    let svc_err = |e: tollgate_service::ServiceError| anyhow::anyhow!("{e}");
    match command {
        ServerKeyCommand::Create {
            project,
            name,
            output,
        } => {
            let (key, secret) = svc
                .create_server_key(parse_project(&project)?, name)
                .await
                .map_err(svc_err)?;
            print(
                output,
                &json!({"id": key.id, "key": secret.expose()}),
                &format!(
                    "id:  {}\nkey: {}\n\nThe key is shown only this once; store it now.",
                    key.id,
                    secret.expose()
                ),
            )
        }
        ServerKeyCommand::List { project, output } => {
            let keys = svc
                .list_server_keys(parse_project(&project)?)
                .await
                .map_err(svc_err)?;
            // A bare array (not wrapped in an object like the other lists): the shape the
            // server-key contract names.
            let list: Vec<_> = keys
                .iter()
                .map(|k| {
                    json!({"id": k.id, "name": k.name,
                           "created_at": k.created_at.seconds(),
                           "revoked_at": k.revoked_at.map(|r| r.seconds())})
                })
                .collect();
            let text = keys
                .iter()
                .map(|k| {
                    let state = revocation_state(k.revoked_at.is_some());
                    format!("{}  {state:<8} {}", k.id, k.name)
                })
                .collect::<Vec<_>>()
                .join("\n");
            print(output, &serde_json::Value::Array(list), &text)
        }
        ServerKeyCommand::Revoke {
            project,
            key_id,
            output,
        } => {
            let project = parse_project(&project)?;
            let id = parse_uuid("server key id", &key_id)?;
            anyhow::ensure!(
                svc.revoke_server_key(project, id).await.map_err(svc_err)?,
                "project {project} has no active server key {id}"
            );
            print(
                output,
                &json!({"id": id, "revoked": true}),
                &format!("revoked {id}"),
            )
        }
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

async fn namespace(
    svc: &tollgate_service::Tollgate,
    command: NamespaceCommand,
) -> anyhow::Result<()> {
    let svc_err = |e: tollgate_service::ServiceError| anyhow::anyhow!("{e}");
    let view = |ns: &tollgate_token::centrifugo::Namespace| {
        json!({"name": ns.name, "rule": ns.rule.to_stored(),
               "id_format": ns.id_format.as_str(), "token_ttl": ns.token_ttl})
    };
    match command {
        NamespaceCommand::Set {
            project,
            name,
            rule,
            id_format,
            token_ttl,
            output,
        } => {
            use tollgate_token::centrifugo::{IdFormat, Namespace, Rule};
            let rule = Rule::parse_input(&rule).map_err(|e| anyhow::anyhow!("--rule: {e}"))?;
            let id_format: IdFormat = id_format
                .parse()
                .map_err(|e| anyhow::anyhow!("--id-format: {e}"))?;
            let ns = Namespace {
                name: name.clone(),
                rule,
                id_format,
                token_ttl,
            };
            let ns = svc
                .put_namespace(parse_project(&project)?, ns)
                .await
                .map_err(svc_err)?;
            print(
                output,
                &view(&ns),
                &format!("namespace {name}: {}", ns.rule.to_stored()),
            )
        }
        NamespaceCommand::List { project, output } => {
            let all = svc
                .namespaces(parse_project(&project)?)
                .await
                .map_err(svc_err)?;
            let text = all
                .iter()
                .map(|n| {
                    format!(
                        "{:<16} {:<24} {:<6} {}s",
                        n.name,
                        n.rule.to_stored(),
                        n.id_format.as_str(),
                        n.token_ttl
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            print(
                output,
                &json!({"namespaces": all.iter().map(view).collect::<Vec<_>>()}),
                &text,
            )
        }
        NamespaceCommand::Delete { project, name } => svc
            .delete_namespace(parse_project(&project)?, &name)
            .await
            .map_err(svc_err),
    }
}

async fn auth_key(svc: &tollgate_service::Tollgate, command: AuthKeyCommand) -> anyhow::Result<()> {
    use tollgate_service::centrifugo::UserAuthKey;
    let svc_err = |e: tollgate_service::ServiceError| anyhow::anyhow!("{e}");
    let (project, issuer, audience, hmac_secret_file, hmac_alg, public_key_file, jwks_url, output) =
        match command {
            AuthKeyCommand::List { project, output } => {
                let keys = svc
                    .user_auth_keys(parse_project(&project)?)
                    .await
                    .map_err(svc_err)?;
                let list: Vec<_> = keys
                    .iter()
                    .map(|(i, a, k)| json!({"issuer": i, "audience": a, "kind": k}))
                    .collect();
                let text = keys
                    .iter()
                    .map(|(i, a, k)| format!("{i}  aud={a}  {k}"))
                    .collect::<Vec<_>>()
                    .join("\n");
                return print(output, &json!({ "auth_keys": list }), &text);
            }
            AuthKeyCommand::Remove {
                project,
                issuer,
                output,
            } => {
                svc.remove_user_auth_key(parse_project(&project)?, &issuer)
                    .await
                    .map_err(svc_err)?;
                return print(
                    output,
                    &json!({"issuer": issuer, "removed": true}),
                    &format!("user JWTs from {issuer:?} are no longer accepted"),
                );
            }
            AuthKeyCommand::Add {
                project,
                issuer,
                audience,
                hmac_secret_file,
                hmac_alg,
                public_key_file,
                jwks_url,
                output,
            } => (
                project,
                issuer,
                audience,
                hmac_secret_file,
                hmac_alg,
                public_key_file,
                jwks_url,
                output,
            ),
        };
    let project = parse_project(&project)?;
    let id = match (hmac_secret_file, public_key_file, jwks_url) {
        (None, None, Some(url)) => {
            svc.add_user_auth_key(project, &issuer, &audience, UserAuthKey::JwksUrl(&url))
                .await
        }
        (Some(file), None, None) => {
            let mut secret =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            // A file written by `echo` ends in a newline that is not part of the secret.
            while secret.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
                secret.pop();
            }
            let alg = hmac_alg
                .parse::<tollgate_token::jose::Algorithm>()
                .ok()
                .filter(|a| a.is_symmetric())
                .ok_or_else(|| anyhow::anyhow!("--hmac-alg must be HS256, HS384 or HS512"))?;
            svc.add_user_auth_key(project, &issuer, &audience, UserAuthKey::Hmac(alg, &secret))
                .await
        }
        (None, Some(file), None) => {
            let pem = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            svc.add_user_auth_key(project, &issuer, &audience, UserAuthKey::PublicPem(&pem))
                .await
        }
        _ => anyhow::bail!(
            "give exactly one of --hmac-secret-file, --public-key-file and --jwks-url"
        ),
    }
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    print(
        output,
        &json!({"id": id, "issuer": issuer, "audience": audience}),
        &format!("user JWTs from {issuer:?} for {audience:?} are accepted"),
    )
}
