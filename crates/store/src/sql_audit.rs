//! [`AuditStore`] over SQL.

use async_trait::async_trait;
use sqlx::any::AnyRow;

use crate::audit::{AuditQuery, AuditRecord, AuditStore};
use crate::sql::{corrupt, get, unavailable};
use crate::{SqlStore, StoreError};

const COLUMNS: &str = "id, at_ms, project_id, action, outcome, actor, subject, token_kind, jti, \
                       expires_at, channels, detail, client_addr, request_id";

fn audit_from(row: &AnyRow) -> Result<AuditRecord, StoreError> {
    let id: String = get(row, "id")?;
    let project: Option<String> = get(row, "project_id")?;
    Ok(AuditRecord {
        id: uuid::Uuid::try_parse(&id).map_err(|e| corrupt("audit_events.id")(e.to_string()))?,
        at_ms: get(row, "at_ms")?,
        project_id: project
            .map(|p| crate::sql::parse("audit_events.project_id", &p))
            .transpose()?,
        action: get(row, "action")?,
        outcome: get(row, "outcome")?,
        actor: get(row, "actor")?,
        subject: get(row, "subject")?,
        token_kind: get(row, "token_kind")?,
        jti: get(row, "jti")?,
        expires_at: get(row, "expires_at")?,
        channels: get(row, "channels")?,
        detail: get(row, "detail")?,
        client_addr: get(row, "client_addr")?,
        request_id: get(row, "request_id")?,
    })
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn insert_audit_events(&self, events: &[AuditRecord]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        for e in events {
            sqlx::query(&format!(
                "INSERT INTO audit_events ({COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            ))
            .bind(e.id.to_string())
            .bind(e.at_ms)
            .bind(e.project_id.map(|p| p.to_string()))
            .bind(&e.action)
            .bind(&e.outcome)
            .bind(e.actor.as_deref())
            .bind(e.subject.as_deref())
            .bind(e.token_kind.as_deref())
            .bind(e.jti.as_deref())
            .bind(e.expires_at)
            .bind(e.channels.as_deref())
            .bind(e.detail.as_deref())
            .bind(e.client_addr.as_deref())
            .bind(e.request_id.as_deref())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(())
    }

    async fn list_audit_events(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        // Optional filters as `($n IS NULL OR …)`: one statement, every value bound.
        let (after_ms, after_id) = match q.after {
            Some((ms, id)) => (Some(ms), Some(id.to_string())),
            None => (None, None),
        };
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM audit_events WHERE project_id = $1 \
             AND ($2 IS NULL OR action = $2) \
             AND ($3 IS NULL OR subject = $3) \
             AND ($4 IS NULL OR at_ms >= $4) \
             AND ($5 IS NULL OR at_ms < $5) \
             AND ($6 IS NULL OR at_ms < $6 OR (at_ms = $6 AND id < $7)) \
             ORDER BY at_ms DESC, id DESC LIMIT $8"
        ))
        .bind(q.project.to_string())
        .bind(q.action.as_deref())
        .bind(q.subject.as_deref())
        .bind(q.since_ms)
        .bind(q.until_ms)
        .bind(after_ms)
        .bind(after_id)
        .bind(i64::from(q.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?
        .iter()
        .map(audit_from)
        .collect()
    }

    async fn sweep_audit_events(&self, before_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM audit_events WHERE at_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected())
    }
}
