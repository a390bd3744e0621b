//! `tollgate key …`, `tollgate server-key …` and `tollgate embed …`: the keys a project
//! holds — its signing and encryption keys, its Centrifugo server API keys, and its
//! click-to-call embed keys.

use clap::Subcommand;
use serde_json::json;

use super::{Output, parse_project, parse_uuid, print, revocation_state};

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

pub(super) async fn key(
    svc: &tollgate_service::Tollgate,
    command: KeyCommand,
) -> anyhow::Result<()> {
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

pub(super) async fn embed(
    svc: &tollgate_service::Tollgate,
    command: EmbedCommand,
) -> anyhow::Result<()> {
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

pub(super) async fn server_key(
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
