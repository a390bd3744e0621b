//! `tollgate auth-key …`: the keys that verify an application's own user JWTs.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use serde_json::json;

use super::{Output, parse_project, print};

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

pub(super) async fn auth_key(
    svc: &tollgate_service::Tollgate,
    command: AuthKeyCommand,
) -> anyhow::Result<()> {
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
