//! [`RevocationStore`] over SQL.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use tollgate_token::ProjectId;
use tollgate_token::revocation::{Revocation, Target};

use crate::revocations::{RevocationRecord, RevocationStore};
use crate::sql::{corrupt, get, parse, unavailable};
use crate::{SqlStore, StoreError};

const COLUMNS: &str = "id, project_id, kind, target, issued_before, expire_at, created_ms, actor";

fn revocation_from(row: &AnyRow) -> Result<RevocationRecord, StoreError> {
    let id: String = get(row, "id")?;
    let kind: String = get(row, "kind")?;
    let value: String = get(row, "target")?;
    let target = match (kind.as_str(), get::<Option<i64>>(row, "issued_before")?) {
        ("token", None) => Target::Token { jti: value },
        ("subject", Some(issued_before)) => Target::Subject {
            subject: value,
            issued_before,
        },
        _ => return Err(corrupt("revocations.kind")(kind)),
    };
    Ok(RevocationRecord {
        project_id: parse("revocations.project_id", &get::<String>(row, "project_id")?)?,
        revocation: Revocation {
            id: uuid::Uuid::try_parse(&id).map_err(|e| corrupt("revocations.id")(e.to_string()))?,
            target,
            expire_at: get(row, "expire_at")?,
        },
        created_ms: get(row, "created_ms")?,
        actor: get(row, "actor")?,
    })
}

#[async_trait]
impl RevocationStore for SqlStore {
    async fn insert_revocation(&self, record: &RevocationRecord) -> Result<(), StoreError> {
        let (kind, value, issued_before) = match record.target() {
            Target::Token { jti } => ("token", jti, None),
            Target::Subject {
                subject,
                issued_before,
            } => ("subject", subject, Some(*issued_before)),
        };
        sqlx::query(&format!(
            "INSERT INTO revocations ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(record.revocation.id.to_string())
        .bind(record.project_id.to_string())
        .bind(kind)
        .bind(value)
        .bind(issued_before)
        .bind(record.revocation.expire_at)
        .bind(record.created_ms)
        .bind(&record.actor)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn list_revocations(
        &self,
        project: ProjectId,
        now: i64,
    ) -> Result<Vec<RevocationRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM revocations WHERE project_id = $1 AND expire_at > $2 \
             ORDER BY created_ms, id"
        ))
        .bind(project.to_string())
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?
        .iter()
        .map(revocation_from)
        .collect()
    }

    async fn delete_revocation(
        &self,
        project: ProjectId,
        id: uuid::Uuid,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM revocations WHERE id = $1 AND project_id = $2")
            .bind(id.to_string())
            .bind(project.to_string())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    async fn revocations_since(
        &self,
        since_ms: i64,
        now: i64,
        limit: u32,
    ) -> Result<Vec<RevocationRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM revocations WHERE created_ms >= $1 AND expire_at > $2 \
             ORDER BY created_ms, id LIMIT $3"
        ))
        .bind(since_ms)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?
        .iter()
        .map(revocation_from)
        .collect()
    }

    async fn sweep_revocations(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM revocations WHERE expire_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected())
    }
}
