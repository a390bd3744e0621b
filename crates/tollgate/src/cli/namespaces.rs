//! `tollgate namespace …`: a project's channel namespaces and their rules.

use clap::Subcommand;
use serde_json::json;

use super::{Output, parse_project, print};

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

pub(super) async fn namespace(
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
