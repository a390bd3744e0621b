//! What opening an installation finds, and what start-up tells the operator about it.
//!
//! A newcomer's most common mistakes are invisible from outside: a CLI command run from
//! another directory quietly makes a second, empty database; a fresh master key nobody has
//! backed up; the server API silently off because no key is set. This module owns the
//! checks that refuse the first and the start-up lines that name the others.

use std::path::{Path, PathBuf};

use crate::config::{Config, Database, MasterKeySource};

/// What to do when the configured SQLite database does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMissingDatabase {
    /// Create it (`serve`, and the CLI with `--create-database`).
    Create,
    /// Refuse, naming the path: a CLI command run from another directory must not start a
    /// second installation by accident.
    Refuse,
}

/// What opening the installation created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Opened {
    /// A new SQLite database file was created.
    pub created_database: bool,
    /// A new master key file was written.
    pub created_key: bool,
}

/// `path` made absolute against the working directory, for messages an operator acts on.
#[must_use]
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Whether the SQLite database exists; PostgreSQL databases are the server's to create.
#[must_use]
pub fn database_exists(database: &Database) -> bool {
    match database {
        Database::Sqlite(path) => path.exists(),
        Database::Postgres(_) => true,
    }
}

/// Refuses a missing SQLite database, naming where it was looked for and both ways out.
pub fn check_database_exists(database: &Database) -> anyhow::Result<()> {
    if let Database::Sqlite(path) = database
        && !path.exists()
    {
        anyhow::bail!(
            "no Tollgate database at {} (TOLLGATE_DATABASE_URL; a relative path is resolved \
             against the current directory, for `serve` and the CLI alike). Run the command \
             from the directory `tollgate serve` runs in, point --config or \
             TOLLGATE_DATABASE_URL at its database, or add --create-database to start a new, \
             empty installation here",
            absolute(path).display()
        );
    }
    Ok(())
}

/// Refuses a missing master key file next to an existing database: a new key would make
/// every sealed secret in that database unreadable.
pub fn check_key_exists(key: &MasterKeySource, database: &Database) -> anyhow::Result<()> {
    if let MasterKeySource::File(path) = key
        && !path.exists()
        && matches!(database, Database::Sqlite(db) if db.exists())
    {
        anyhow::bail!(
            "the master key file {} is missing, but its database exists: restore the key \
             from your backup (a new key could not read the secrets sealed with the old one), \
             or point TOLLGATE_SECRET_KEY_FILE at it",
            absolute(path).display()
        );
    }
    Ok(())
}

/// The database as the log shows it: a SQLite path, or a PostgreSQL host and database
/// without credentials or query parameters.
#[must_use]
pub fn describe_database(database: &Database) -> String {
    match database {
        Database::Sqlite(path) => format!("SQLite at {}", absolute(path).display()),
        Database::Postgres(url) => {
            let url = url.expose();
            let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
            // Drop `user:password@` and `?sslmode=…&password=…`.
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            let rest = rest.split(['?', '#']).next().unwrap_or_default();
            format!("PostgreSQL at {rest}")
        }
    }
}

/// The optional features this configuration leaves off, each with the setting that turns
/// it on.
#[must_use]
pub fn features_off(config: &Config) -> Vec<&'static str> {
    let mut off = Vec::new();
    if config.centrifugo_api_key.is_none() {
        off.push(
            "Centrifugo server API with a deployment-wide key: set centrifugo.api_key \
             (TOLLGATE_CENTRIFUGO__API_KEY), or create per-project keys with \
             `tollgate server-key create`",
        );
    }
    if config.centrifugo_hmac_secret.is_none() {
        off.push(
            "connection tokens signed by your app with a shared HMAC secret: set \
             centrifugo.token_hmac_secret_key (tokens signed with a project's own keys work)",
        );
    }
    if config.gateway.allowed_origins.is_empty() {
        off.push(
            "browser pages on other origins (WebSocket and CORS): set \
             gateway.allowed_origins (TOLLGATE_GATEWAY__ALLOWED_ORIGINS), e.g. \
             [\"https://app.example.com\"]",
        );
    }
    if config.public_gateway_url.is_none() {
        off.push(
            "the gateway URL in SignalWire subscriber token responses: set \
             public_gateway_url (TOLLGATE_PUBLIC_GATEWAY_URL)",
        );
    }
    off
}

/// Logs what an operator should know about this installation before the first request.
pub fn log(config: &Config, opened: Opened) {
    let database = describe_database(&config.database);
    if opened.created_database {
        tracing::info!(%database, "created a new, empty database");
    } else {
        tracing::info!(%database, "database");
    }
    match &config.master_key {
        MasterKeySource::File(path) if opened.created_key => tracing::warn!(
            path = %absolute(path).display(),
            "created a new master key: back this file up now; without it the secrets \
             sealed in the database cannot be read"
        ),
        MasterKeySource::File(path) => {
            tracing::info!(path = %absolute(path).display(), "master key file");
        }
        MasterKeySource::Inline(_) => {
            tracing::info!("master key from TOLLGATE_SECRET_KEY");
        }
    }
    for feature in features_off(config) {
        tracing::info!("off: {feature}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn postgres_urls_are_described_without_credentials() {
        let db = Database::Postgres(Secret::new(
            "postgres://admin:hunter2@db.internal:5432/tollgate?sslmode=require&password=x",
        ));
        let shown = describe_database(&db);
        assert_eq!(shown, "PostgreSQL at db.internal:5432/tollgate");
        assert!(!shown.contains("hunter2"));
    }

    #[test]
    fn a_missing_database_is_refused_with_its_absolute_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nowhere/tollgate.db");
        let err = check_database_exists(&Database::Sqlite(path.clone()))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("--create-database"), "{err}");
        assert!(!path.exists());

        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"").unwrap();
        assert!(check_database_exists(&Database::Sqlite(path)).is_ok());
    }

    #[test]
    fn a_missing_key_beside_an_existing_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("tollgate.db");
        let key = MasterKeySource::File(dir.path().join("tollgate.key"));
        // A new installation: creating the key is right.
        assert!(check_key_exists(&key, &Database::Sqlite(db.clone())).is_ok());
        std::fs::write(&db, b"").unwrap();
        let err = check_key_exists(&key, &Database::Sqlite(db))
            .unwrap_err()
            .to_string();
        assert!(err.contains("restore the key"), "{err}");
    }
}
