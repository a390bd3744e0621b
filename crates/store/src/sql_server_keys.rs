//! [`ServerKeyStore`] over SQL.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use tollgate_token::{ProjectId, UnixTime};

use crate::server_keys::{ServerKeyRecord, ServerKeyStore};
use crate::sql::{corrupt, get, parse, revoke_row, unavailable};
use crate::{SqlStore, StoreError};

const COLUMNS: &str = "id, project_id, name, key_hash, created_at, revoked_at";

fn server_key_from(row: &AnyRow) -> Result<ServerKeyRecord, StoreError> {
    let id: String = get(row, "id")?;
    Ok(ServerKeyRecord {
        id: uuid::Uuid::try_parse(&id).map_err(|e| corrupt("server_api_keys.id")(e.to_string()))?,
        project_id: parse(
            "server_api_keys.project_id",
            &get::<String>(row, "project_id")?,
        )?,
        name: get(row, "name")?,
        key_hash: get(row, "key_hash")?,
        created_at: UnixTime(get(row, "created_at")?),
        revoked_at: get::<Option<i64>>(row, "revoked_at")?.map(UnixTime),
    })
}

#[async_trait]
impl ServerKeyStore for SqlStore {
    async fn insert_server_key(&self, key: &ServerKeyRecord) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO server_api_keys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
        ))
        .bind(key.id.to_string())
        .bind(key.project_id.to_string())
        .bind(&key.name)
        .bind(&key.key_hash)
        .bind(key.created_at.seconds())
        .bind(key.revoked_at.map(UnixTime::seconds))
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn list_server_keys(
        &self,
        project: ProjectId,
    ) -> Result<Vec<ServerKeyRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM server_api_keys WHERE project_id = $1 ORDER BY created_at, id"
        ))
        .bind(project.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?
        .iter()
        .map(server_key_from)
        .collect()
    }

    async fn revoke_server_key(
        &self,
        project: ProjectId,
        id: uuid::Uuid,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        revoke_row(&self.pool, "server_api_keys", project, &id.to_string(), now).await
    }

    async fn active_server_key(
        &self,
        key_hash: &str,
    ) -> Result<Option<ServerKeyRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM server_api_keys WHERE key_hash = $1 AND revoked_at IS NULL"
        ))
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?
        .as_ref()
        .map(server_key_from)
        .transpose()
    }
}
