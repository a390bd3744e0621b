//! [`ChannelStore`] over SQL.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use tollgate_token::{ProjectId, UnixTime};

use crate::channels::{ChannelStore, NamespaceRecord, UserAuthKeyRecord};
use crate::sql::{
    KEY_COLUMNS, corrupt, get, insert_signing_key, key_from, parse, retire_active_keys, unavailable,
};
use crate::{SigningKeyRecord, SqlStore, StoreError};

fn user_auth_from(row: &AnyRow) -> Result<UserAuthKeyRecord, StoreError> {
    let id: String = get(row, "id")?;
    Ok(UserAuthKeyRecord {
        id: uuid::Uuid::try_parse(&id).map_err(|e| corrupt("user_auth_keys.id")(e.to_string()))?,
        project_id: parse(
            "user_auth_keys.project_id",
            &get::<String>(row, "project_id")?,
        )?,
        issuer: get(row, "issuer")?,
        audience: get(row, "audience")?,
        alg: get(row, "alg")?,
        key_data: get(row, "key_data")?,
        created_at: UnixTime(get(row, "created_at")?),
    })
}

#[async_trait]
impl ChannelStore for SqlStore {
    async fn put_member(
        &self,
        project: ProjectId,
        kind: &str,
        group: &str,
        user: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO group_members (project_id, kind, group_id, user_id, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(project.to_string())
        .bind(kind)
        .bind(group)
        .bind(user)
        .bind(now.seconds())
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_member(
        &self,
        project: ProjectId,
        kind: &str,
        group: &str,
        user: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "DELETE FROM group_members \
             WHERE project_id = $1 AND kind = $2 AND group_id = $3 AND user_id = $4",
        )
        .bind(project.to_string())
        .bind(kind)
        .bind(group)
        .bind(user)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    async fn members(
        &self,
        project: ProjectId,
        kind: &str,
        group: &str,
    ) -> Result<Vec<(String, UnixTime)>, StoreError> {
        sqlx::query(
            "SELECT user_id, created_at FROM group_members \
             WHERE project_id = $1 AND kind = $2 AND group_id = $3 ORDER BY created_at, user_id",
        )
        .bind(project.to_string())
        .bind(kind)
        .bind(group)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?
        .iter()
        .map(|r| Ok((get(r, "user_id")?, UnixTime(get(r, "created_at")?))))
        .collect()
    }

    async fn is_member(
        &self,
        project: ProjectId,
        kind: &str,
        group: &str,
        user: &str,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "SELECT 1 AS one FROM group_members \
             WHERE project_id = $1 AND kind = $2 AND group_id = $3 AND user_id = $4",
        )
        .bind(project.to_string())
        .bind(kind)
        .bind(group)
        .bind(user)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?
        .is_some())
    }

    async fn put_namespace(
        &self,
        project: ProjectId,
        ns: &NamespaceRecord,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO namespaces (project_id, name, rule, id_format, token_ttl, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (project_id, name) DO UPDATE SET \
               rule = excluded.rule, id_format = excluded.id_format, token_ttl = excluded.token_ttl",
        )
        .bind(project.to_string())
        .bind(&ns.name)
        .bind(&ns.rule)
        .bind(&ns.id_format)
        .bind(ns.token_ttl)
        .bind(now.seconds())
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn delete_namespace(&self, project: ProjectId, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM namespaces WHERE project_id = $1 AND name = $2")
            .bind(project.to_string())
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    async fn namespaces(&self, project: ProjectId) -> Result<Vec<NamespaceRecord>, StoreError> {
        sqlx::query(
            "SELECT name, rule, id_format, token_ttl FROM namespaces WHERE project_id = $1 ORDER BY name",
        )
        .bind(project.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?
        .iter()
        .map(|r| {
            Ok(NamespaceRecord {
                name: get(r, "name")?,
                rule: get(r, "rule")?,
                id_format: get(r, "id_format")?,
                token_ttl: get(r, "token_ttl")?,
            })
        })
        .collect()
    }

    async fn insert_user_auth_key(&self, key: &UserAuthKeyRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO user_auth_keys (id, project_id, issuer, audience, alg, key_data, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(key.id.to_string())
        .bind(key.project_id.to_string())
        .bind(&key.issuer)
        .bind(&key.audience)
        .bind(&key.alg)
        .bind(&key.key_data)
        .bind(key.created_at.seconds())
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn user_auth_keys(
        &self,
        project: ProjectId,
    ) -> Result<Vec<UserAuthKeyRecord>, StoreError> {
        sqlx::query(
            "SELECT id, project_id, issuer, audience, alg, key_data, created_at \
             FROM user_auth_keys WHERE project_id = $1 ORDER BY created_at, issuer",
        )
        .bind(project.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?
        .iter()
        .map(user_auth_from)
        .collect()
    }

    async fn delete_user_auth_key(
        &self,
        project: ProjectId,
        issuer: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM user_auth_keys WHERE project_id = $1 AND issuer = $2")
            .bind(project.to_string())
            .bind(issuer)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    async fn user_auth_key(&self, issuer: &str) -> Result<Option<UserAuthKeyRecord>, StoreError> {
        sqlx::query(
            "SELECT id, project_id, issuer, audience, alg, key_data, created_at \
             FROM user_auth_keys WHERE issuer = $1",
        )
        .bind(issuer)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?
        .as_ref()
        .map(user_auth_from)
        .transpose()
    }

    async fn rotate_signing_key(
        &self,
        key: &SigningKeyRecord,
        retire_until: UnixTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        retire_active_keys(&mut tx, "signing_keys", key.project_id, retire_until).await?;
        insert_signing_key(&mut tx, key).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn all_signing_keys(
        &self,
        project: ProjectId,
    ) -> Result<Vec<SigningKeyRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM signing_keys WHERE project_id = $1 ORDER BY created_at DESC, kid"
        ))
        .bind(project.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?
        .iter()
        .map(key_from)
        .collect()
    }

    async fn live_signing_keys(&self, now: UnixTime) -> Result<Vec<SigningKeyRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM signing_keys WHERE state = 'active' \
             OR (state = 'retiring' AND (not_after IS NULL OR not_after > $1)) \
             ORDER BY created_at DESC, kid"
        ))
        .bind(now.seconds())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?
        .iter()
        .map(key_from)
        .collect()
    }
}
