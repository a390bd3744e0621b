//! [`Store`] over SQL through sqlx's `Any` driver: one implementation, one set of portable
//! queries and migrations, for SQLite and PostgreSQL alike.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use tollgate_token::ids::ApiTokenId;
use tollgate_token::jose::Algorithm;
use tollgate_token::{KeyId, ProjectId, Scopes, UnixTime};

use crate::{
    ApiTokenRecord, KeyState, NewApiToken, ProjectRecord, SigningKeyRecord, Store, StoreError,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A SQL database: `sqlite://PATH` or `postgres://…`.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pub(crate) pool: AnyPool,
}

/// When SQLite reports a commit done (`PRAGMA synchronous`, in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteSynchronous {
    /// Every commit is on disk (the WAL fsynced) before it is acknowledged: nothing
    /// acknowledged is lost, even to a power cut. The default: a spent refresh token, a
    /// revocation or a new key must not come back.
    #[default]
    Full,
    /// The WAL is fsynced only at checkpoints: commits survive a crash of the process, but a
    /// power cut or kernel crash can undo the last ones. Faster writes (BENCHMARKS.md §4).
    Normal,
}

impl SqliteSynchronous {
    fn pragma(self) -> &'static str {
        match self {
            Self::Full => "PRAGMA synchronous = FULL",
            Self::Normal => "PRAGMA synchronous = NORMAL",
        }
    }
}

/// How to open the database.
#[derive(Debug, Clone, Copy, Default)]
pub struct SqlOptions {
    /// SQLite only; PostgreSQL's own `synchronous_commit` governs it there.
    pub sqlite_synchronous: SqliteSynchronous,
}

impl SqlStore {
    /// Connects to `url` with the default (durable) options: see [`SqlStore::connect_with`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, SqlOptions::default()).await
    }

    /// Connects to `url`, creating a SQLite file (and its directory) if needed, and applies
    /// pending migrations.
    pub async fn connect_with(url: &str, options: SqlOptions) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (url, sqlite) = if let Some(file) = url.strip_prefix("sqlite://") {
            create_private_sqlite_file(file)?;
            (format!("{url}?mode=rwc"), true)
        } else {
            (url.to_owned(), false)
        };
        let synchronous = options.sqlite_synchronous.pragma();
        let options = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 16 })
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if sqlite {
                        // WAL lets the CLI write while a server reads; busy_timeout makes
                        // concurrent writers wait for each other instead of failing.
                        // `synchronous` is set on every connection: it is not persistent.
                        for pragma in [
                            "PRAGMA journal_mode = WAL",
                            synchronous,
                            "PRAGMA busy_timeout = 5000",
                            "PRAGMA foreign_keys = ON",
                        ] {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                    }
                    Ok(())
                })
            });
        let pool = options.connect(&url).await.map_err(unavailable)?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))?;
        Ok(Self { pool })
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Creates the SQLite file (and its directory) owner-only if it does not exist yet. The
/// database holds sealed keys and token hashes; SQLite gives its `-wal` and `-shm` files the
/// main file's permissions, so all three stay private.
fn create_private_sqlite_file(file: &str) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let fail = |what: &Path, e: std::io::Error| {
        StoreError::Unavailable(format!("cannot create {}: {e}", what.display()))
    };
    let path = Path::new(file);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| fail(dir, e))?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(fail(path, e)),
    }
}

pub(crate) fn unavailable(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
        _ => StoreError::Unavailable(e.to_string()),
    }
}

pub(crate) fn corrupt(what: &str) -> impl FnOnce(String) -> StoreError + '_ {
    move |detail| StoreError::Corrupt(format!("{what}: {detail}"))
}

pub(crate) fn parse<T: FromStr>(what: &str, s: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    s.parse::<T>().map_err(|e| corrupt(what)(e.to_string()))
}

pub(crate) fn get<'r, T>(row: &'r AnyRow, col: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(col).map_err(unavailable)
}

fn project_from(row: &AnyRow) -> Result<ProjectRecord, StoreError> {
    Ok(ProjectRecord {
        id: parse("projects.id", &get::<String>(row, "id")?)?,
        name: get(row, "name")?,
        created_at: UnixTime(get(row, "created_at")?),
    })
}

fn token_from(row: &AnyRow) -> Result<ApiTokenRecord, StoreError> {
    Ok(ApiTokenRecord {
        id: parse("api_tokens.id", &get::<String>(row, "id")?)?,
        project_id: parse("api_tokens.project_id", &get::<String>(row, "project_id")?)?,
        name: get(row, "name")?,
        token_hash: get(row, "token_hash")?,
        scopes: Scopes::parse_list(&get::<String>(row, "scopes")?)
            .map_err(|e| corrupt("api_tokens.scopes")(e.to_string()))?,
        created_at: UnixTime(get(row, "created_at")?),
        revoked_at: get::<Option<i64>>(row, "revoked_at")?.map(UnixTime),
    })
}

pub(crate) fn key_from(row: &AnyRow) -> Result<SigningKeyRecord, StoreError> {
    Ok(SigningKeyRecord {
        kid: parse("signing_keys.kid", &get::<String>(row, "kid")?)?,
        project_id: parse(
            "signing_keys.project_id",
            &get::<String>(row, "project_id")?,
        )?,
        alg: Algorithm::from_str(&get::<String>(row, "alg")?)
            .map_err(|e| corrupt("signing_keys.alg")(e.to_string()))?,
        state: parse("signing_keys.state", &get::<String>(row, "state")?)?,
        sealed_secret: get(row, "sealed_secret")?,
        public_key: get(row, "public_key")?,
        created_at: UnixTime(get(row, "created_at")?),
        not_after: get::<Option<i64>>(row, "not_after")?.map(UnixTime),
    })
}

/// Sets `revoked_at` on one unrevoked row of `table` (a credential table with `id`,
/// `project_id` and `revoked_at`). `true` if a row changed.
pub(crate) async fn revoke_row(
    pool: &AnyPool,
    table: &'static str,
    project: ProjectId,
    id: &str,
    now: UnixTime,
) -> Result<bool, StoreError> {
    let done = sqlx::query(&format!(
        "UPDATE {table} SET revoked_at = $1 \
         WHERE id = $2 AND project_id = $3 AND revoked_at IS NULL"
    ))
    .bind(now.seconds())
    .bind(id)
    .bind(project.to_string())
    .execute(pool)
    .await
    .map_err(unavailable)?;
    Ok(done.rows_affected() == 1)
}

/// Moves a project's active key in `table` (`signing_keys` or `encryption_keys`) to
/// `retiring` until `until`, inside the caller's transaction.
pub(crate) async fn retire_active_keys(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    table: &'static str,
    project: ProjectId,
    until: UnixTime,
) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "UPDATE {table} SET state = 'retiring', not_after = $1 \
         WHERE project_id = $2 AND state = 'active'"
    ))
    .bind(until.seconds())
    .bind(project.to_string())
    .execute(&mut **tx)
    .await
    .map_err(unavailable)?;
    Ok(())
}

/// Inserts a signing key inside the caller's transaction.
pub(crate) async fn insert_signing_key(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    key: &SigningKeyRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO signing_keys \
         (kid, project_id, alg, state, sealed_secret, public_key, created_at, not_after) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(key.kid.to_string())
    .bind(key.project_id.to_string())
    .bind(key.alg.as_str())
    .bind(key.state.as_str())
    .bind(&key.sealed_secret)
    .bind(key.public_key.as_deref())
    .bind(key.created_at.seconds())
    .bind(key.not_after.map(UnixTime::seconds))
    .execute(&mut **tx)
    .await
    .map_err(unavailable)?;
    Ok(())
}

const TOKEN_COLUMNS: &str = "id, project_id, name, token_hash, scopes, created_at, revoked_at";
pub(crate) const KEY_COLUMNS: &str =
    "kid, project_id, alg, state, sealed_secret, public_key, created_at, not_after";

async fn insert_token<'e, E>(exec: E, t: &NewApiToken) -> Result<(), StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO api_tokens (id, project_id, name, token_hash, scopes, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(t.id.to_string())
    .bind(t.project_id.to_string())
    .bind(&t.name)
    .bind(&t.token_hash)
    .bind(t.scopes.to_string())
    .bind(t.created_at.seconds())
    .execute(exec)
    .await
    .map_err(unavailable)?;
    Ok(())
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn setting_or_init(&self, name: &str, init: &str) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO instance_settings (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(init)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        let row = sqlx::query("SELECT value FROM instance_settings WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)?;
        get(&row, "value")
    }

    async fn create_project(
        &self,
        project: &ProjectRecord,
        token: &NewApiToken,
        key: &SigningKeyRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        sqlx::query("INSERT INTO projects (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(project.id.to_string())
            .bind(&project.name)
            .bind(project.created_at.seconds())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        insert_token(&mut *tx, token).await?;
        insert_signing_key(&mut tx, key).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn list_projects(&self) -> Result<Vec<ProjectRecord>, StoreError> {
        sqlx::query("SELECT id, name, created_at FROM projects ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?
            .iter()
            .map(project_from)
            .collect()
    }

    async fn project(&self, id: ProjectId) -> Result<Option<ProjectRecord>, StoreError> {
        sqlx::query("SELECT id, name, created_at FROM projects WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?
            .as_ref()
            .map(project_from)
            .transpose()
    }

    async fn insert_api_token(&self, token: &NewApiToken) -> Result<(), StoreError> {
        insert_token(&self.pool, token).await
    }

    async fn list_api_tokens(&self, project: ProjectId) -> Result<Vec<ApiTokenRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE project_id = $1 ORDER BY created_at, id"
        ))
        .bind(project.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?
        .iter()
        .map(token_from)
        .collect()
    }

    async fn revoke_api_token(
        &self,
        project: ProjectId,
        id: ApiTokenId,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        revoke_row(&self.pool, "api_tokens", project, &id.to_string(), now).await
    }

    async fn active_api_token(
        &self,
        project: ProjectId,
        token_hash: &str,
    ) -> Result<Option<ApiTokenRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens \
             WHERE token_hash = $1 AND project_id = $2 AND revoked_at IS NULL"
        ))
        .bind(token_hash)
        .bind(project.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?
        .as_ref()
        .map(token_from)
        .transpose()
    }

    async fn signing_key(&self, kid: &KeyId) -> Result<Option<SigningKeyRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM signing_keys WHERE kid = $1"
        ))
        .bind(kid.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?
        .as_ref()
        .map(key_from)
        .transpose()
    }

    async fn signing_keys(
        &self,
        project: ProjectId,
        state: KeyState,
    ) -> Result<Vec<SigningKeyRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM signing_keys WHERE project_id = $1 AND state = $2 \
             ORDER BY created_at DESC, kid"
        ))
        .bind(project.to_string())
        .bind(state.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?
        .iter()
        .map(key_from)
        .collect()
    }
}
