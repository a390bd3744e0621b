//! The `tollgate` binary's library half: configuration, the command line, and assembling
//! the store, services and HTTP front end into a running server.
//!
//! `main.rs` only parses arguments and calls [`cli::run`]; tests call [`App::build`] and
//! [`App::serve`] directly with a listener on port 0.

pub mod cli;
pub mod config;
mod invalidations;
pub mod master_key;
pub mod startup;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tollgate_http::AppState;
use tollgate_service::{Settings, SystemClock, Tollgate};
use tollgate_store::SqlStore;

use crate::config::Config;
use crate::startup::{OnMissingDatabase, Opened};

/// A configured Tollgate, ready to serve or to run administrative commands.
#[derive(Debug, Clone)]
pub struct App {
    pub tollgate: Tollgate,
    config: Config,
    opened: Opened,
}

impl App {
    /// Opens the database (creating and migrating it if needed), loads the master key and
    /// builds the services.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::open(config, OnMissingDatabase::Create).await
    }

    /// As [`App::build`], but with a choice about a SQLite database that does not exist
    /// yet: the CLI refuses it unless told otherwise, so a command run from the wrong
    /// directory cannot start a second installation.
    pub async fn open(config: Config, missing: OnMissingDatabase) -> anyhow::Result<Self> {
        if missing == OnMissingDatabase::Refuse {
            startup::check_database_exists(&config.database)?;
        }
        startup::check_key_exists(&config.master_key, &config.database)?;
        let created_database = !startup::database_exists(&config.database);
        // The database first (the store creates a SQLite file and its directory owner-only):
        // a wrong URL must not leave a fresh key file behind.
        let options = tollgate_store::SqlOptions {
            sqlite_synchronous: config.sqlite_synchronous,
        };
        let store = SqlStore::connect_with(&config.database.url(), options)
            .await
            .context("cannot open the database (TOLLGATE_DATABASE_URL)")?;
        let (master, created_key) = master_key::load(&config.master_key)?;
        let settings = Settings {
            issuer: config.issuer.clone(),
            public_gateway_url: config.public_gateway_url.clone(),
            max_subscriber_token_lifetime: config.max_subscriber_token_lifetime,
            refresh_reuse_leeway: config.refresh_reuse_leeway,
            max_family_lifetime: config.max_family_lifetime,
            jwks_allow_private_hosts: config.jwks_allow_private_hosts,
            centrifugo: tollgate_service::SharedCredentials {
                hmac_secret: config
                    .centrifugo_hmac_secret
                    .as_ref()
                    .map(|s| s.expose().as_bytes().to_vec()),
                api_key: config
                    .centrifugo_api_key
                    .as_ref()
                    .map(|k| k.expose().to_owned()),
                project: config.centrifugo_project,
            },
        };
        let tollgate = Tollgate::new(Arc::new(store), &master, settings, Arc::new(SystemClock))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self {
            tollgate,
            config,
            opened: Opened {
                created_database,
                created_key,
            },
        })
    }

    /// What opening this installation created.
    #[must_use]
    pub fn opened(&self) -> Opened {
        self.opened
    }

    /// Logs the database, the master key and the optional features that are off: what an
    /// operator should know before the first request.
    pub fn log_startup(&self) {
        startup::log(&self.config, self.opened);
    }

    /// Serves every endpoint on `listener` until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (broker, sweeper) = open_broker(&self.config.broker).await?;
        // Other nodes on the same broker forget what this one changes, and the other way round.
        let invalidations = invalidations::connect(&self.tollgate, &broker);
        // Revocations made elsewhere (another node, the CLI) reach this node's sets.
        let revocation_sync = tokio::spawn(self.tollgate.clone().run_revocation_sync());
        let gateway = tollgate_gateway::Gateway::new(
            self.tollgate.clone(),
            broker,
            self.config.gateway.clone(),
        );
        // Deployment-wide credentials that act for no project are refused on use; say so
        // now, naming the setting, rather than only in the logs of refused requests.
        match self.tollgate.check_shared_credentials().await {
            Ok(Some(warning)) => tracing::warn!("{warning}"),
            Ok(None) => {}
            Err(tollgate_service::ServiceError::InvalidInput(why)) => anyhow::bail!(why),
            Err(e) => tracing::warn!(error = %e, "cannot check the centrifugo.* credentials"),
        }
        let sessions = gateway.clone();
        let http = self.config.http.clone();
        let router =
            tollgate_http::router(AppState::new(self.tollgate, gateway.clone(), &http), &http);
        // On shutdown, WebSockets are told to reconnect (close 3001) while HTTP drains.
        let shutdown = async move {
            shutdown.await;
            gateway.shutdown();
        };
        tollgate_http::serve(listener, router, &http, shutdown)
            .await
            .context("server failed")?;
        // Upgraded sockets are not tracked by the HTTP server: give their close frames a
        // moment to go out before the process ends.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), sessions.drained()).await;
        if let Some(sweeper) = sweeper {
            sweeper.abort();
        }
        revocation_sync.abort();
        if let Some(relay) = invalidations {
            relay.abort();
        }
        Ok(())
    }
}

/// The configured broker, and the in-process one's sweeper task.
async fn open_broker(
    setting: &config::BrokerSetting,
) -> anyhow::Result<(
    Arc<dyn tollgate_broker::Broker>,
    Option<tokio::task::JoinHandle<()>>,
)> {
    Ok(match setting {
        config::BrokerSetting::Memory => {
            let broker = Arc::new(tollgate_broker::MemoryBroker::new());
            // Expired history and presence of channels nobody touches again are freed here.
            let sweeper = broker.spawn_sweeper(std::time::Duration::from_secs(30));
            (broker, Some(sweeper))
        }
        config::BrokerSetting::Redis(redis) => {
            let broker = tollgate_broker::RedisBroker::new(redis.clone())
                .map_err(|e| anyhow::anyhow!("broker_url: {e}"))?;
            // Redis may come up after this node: serve anyway (broker calls fail with a
            // temporary error meanwhile) and say so.
            match broker.ping().await {
                Ok(()) => tracing::info!(shards = redis.urls.len(), "Redis broker connected"),
                Err(e) => tracing::warn!(error = %e, "Redis broker not reachable yet"),
            }
            (Arc::new(broker), None)
        }
    })
}

/// Resolves when the process receives SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; draining");
}
