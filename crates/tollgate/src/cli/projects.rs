//! `tollgate project …` and `tollgate token …`: projects and the API tokens that act for
//! them.

use clap::Subcommand;
use serde_json::json;
use tollgate_token::ids::ApiTokenId;

use super::{Output, parse_project, parse_scopes, print, revocation_state};

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

pub(super) async fn project(
    svc: &tollgate_service::Tollgate,
    command: ProjectCommand,
) -> anyhow::Result<()> {
    let svc_err = |e: tollgate_service::ServiceError| anyhow::anyhow!("{e}");
    match command {
        ProjectCommand::Create {
            name,
            scopes,
            output,
        } => {
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
        ProjectCommand::List { output } => {
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
    }
}

pub(super) async fn token(
    svc: &tollgate_service::Tollgate,
    command: TokenCommand,
) -> anyhow::Result<()> {
    let svc_err = |e: tollgate_service::ServiceError| anyhow::anyhow!("{e}");
    match command {
        TokenCommand::Create {
            project,
            name,
            scopes,
            output,
        } => {
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
        TokenCommand::List { project, output } => {
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
        TokenCommand::Revoke {
            project,
            token_id,
            output,
        } => {
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
