//! [`SubscriberStore`] over SQL (SQLite and PostgreSQL alike).

use async_trait::async_trait;
use sqlx::any::AnyRow;
use tollgate_token::{KeyId, ProjectId, UnixTime};
use uuid::Uuid;

use crate::sql::{corrupt, get, parse, retire_active_keys, revoke_row, unavailable};
use crate::{
    AddressRecord, EmbedKeyRecord, EncryptionKeyRecord, FamilyRecord, KeyState, Login,
    NewRefreshToken, Rotation, SqlStore, StoreError, SubscriberProfile, SubscriberRecord,
    SubscriberStore,
};

const SUBSCRIBER_COLUMNS: &str = "id, project_id, reference, first_name, last_name, \
    display_name, job_title, timezone, country, company_name, password_hash, created_at, \
    updated_at";
const ADDRESS_COLUMNS: &str = "id, project_id, subscriber_id, name, display_name, created_at";
const EMBED_COLUMNS: &str = "id, project_id, address_id, token_hash, created_at, revoked_at";
const FAMILY_COLUMNS: &str = "id, project_id, subscriber_id, kind, created_at, revoked_at";

fn uuid_col(row: &AnyRow, col: &str) -> Result<Uuid, StoreError> {
    let s: String = get(row, col)?;
    Uuid::try_parse(&s).map_err(|e| corrupt(col)(e.to_string()))
}

fn subscriber_from(row: &AnyRow) -> Result<SubscriberRecord, StoreError> {
    Ok(SubscriberRecord {
        id: uuid_col(row, "id")?,
        project_id: parse("subscribers.project_id", &get::<String>(row, "project_id")?)?,
        reference: get(row, "reference")?,
        profile: SubscriberProfile {
            first_name: get(row, "first_name")?,
            last_name: get(row, "last_name")?,
            display_name: get(row, "display_name")?,
            job_title: get(row, "job_title")?,
            timezone: get(row, "timezone")?,
            country: get(row, "country")?,
            company_name: get(row, "company_name")?,
        },
        password_hash: get(row, "password_hash")?,
        created_at: UnixTime(get(row, "created_at")?),
        updated_at: UnixTime(get(row, "updated_at")?),
    })
}

fn address_from(row: &AnyRow) -> Result<AddressRecord, StoreError> {
    Ok(AddressRecord {
        id: uuid_col(row, "id")?,
        project_id: parse("addresses.project_id", &get::<String>(row, "project_id")?)?,
        subscriber_id: uuid_col(row, "subscriber_id")?,
        name: get(row, "name")?,
        display_name: get(row, "display_name")?,
        created_at: UnixTime(get(row, "created_at")?),
    })
}

fn family_from(row: &AnyRow) -> Result<FamilyRecord, StoreError> {
    let subscriber: Option<String> = get(row, "subscriber_id")?;
    Ok(FamilyRecord {
        id: uuid_col(row, "id")?,
        project_id: parse("families.project_id", &get::<String>(row, "project_id")?)?,
        subscriber_id: subscriber
            .map(|s| {
                Uuid::try_parse(&s).map_err(|e| corrupt("families.subscriber_id")(e.to_string()))
            })
            .transpose()?,
        kind: get(row, "kind")?,
        created_at: UnixTime(get(row, "created_at")?),
        revoked_at: get::<Option<i64>>(row, "revoked_at")?.map(UnixTime),
    })
}

fn embed_from(row: &AnyRow) -> Result<EmbedKeyRecord, StoreError> {
    Ok(EmbedKeyRecord {
        id: uuid_col(row, "id")?,
        project_id: parse("embed_keys.project_id", &get::<String>(row, "project_id")?)?,
        address_id: uuid_col(row, "address_id")?,
        token_hash: get(row, "token_hash")?,
        created_at: UnixTime(get(row, "created_at")?),
        revoked_at: get::<Option<i64>>(row, "revoked_at")?.map(UnixTime),
    })
}

fn encryption_key_from(row: &AnyRow) -> Result<EncryptionKeyRecord, StoreError> {
    Ok(EncryptionKeyRecord {
        kid: parse("encryption_keys.kid", &get::<String>(row, "kid")?)?,
        project_id: parse(
            "encryption_keys.project_id",
            &get::<String>(row, "project_id")?,
        )?,
        state: parse("encryption_keys.state", &get::<String>(row, "state")?)?,
        sealed_secret: get(row, "sealed_secret")?,
        created_at: UnixTime(get(row, "created_at")?),
        not_after: get::<Option<i64>>(row, "not_after")?.map(UnixTime),
    })
}

async fn insert_subscriber_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    s: &SubscriberRecord,
    a: &AddressRecord,
) -> Result<(), StoreError> {
    let p = &s.profile;
    sqlx::query(&format!(
        "INSERT INTO subscribers ({SUBSCRIBER_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    ))
    .bind(s.id.to_string())
    .bind(s.project_id.to_string())
    .bind(&s.reference)
    .bind(p.first_name.as_deref())
    .bind(p.last_name.as_deref())
    .bind(p.display_name.as_deref())
    .bind(p.job_title.as_deref())
    .bind(p.timezone.as_deref())
    .bind(p.country.as_deref())
    .bind(p.company_name.as_deref())
    .bind(s.password_hash.as_deref())
    .bind(s.created_at.seconds())
    .bind(s.updated_at.seconds())
    .execute(&mut **tx)
    .await
    .map_err(unavailable)?;
    sqlx::query(&format!(
        "INSERT INTO subscriber_addresses ({ADDRESS_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
    ))
    .bind(a.id.to_string())
    .bind(a.project_id.to_string())
    .bind(a.subscriber_id.to_string())
    .bind(&a.name)
    .bind(&a.display_name)
    .bind(a.created_at.seconds())
    .execute(&mut **tx)
    .await
    .map_err(unavailable)?;
    Ok(())
}

/// `UPDATE subscribers` setting only the fields given; returns rows affected.
#[allow(clippy::too_many_arguments)]
async fn update_rows(
    exec: &mut sqlx::AnyConnection,
    project: ProjectId,
    by: (&str, String),
    reference: Option<&str>,
    p: &SubscriberProfile,
    password_hash: Option<&str>,
    now: UnixTime,
) -> Result<u64, StoreError> {
    let done = sqlx::query(&format!(
        "UPDATE subscribers SET \
           reference = COALESCE($1, reference), \
           first_name = COALESCE($2, first_name), last_name = COALESCE($3, last_name), \
           display_name = COALESCE($4, display_name), job_title = COALESCE($5, job_title), \
           timezone = COALESCE($6, timezone), country = COALESCE($7, country), \
           company_name = COALESCE($8, company_name), \
           password_hash = COALESCE($9, password_hash), updated_at = $10 \
         WHERE project_id = $11 AND {} = $12",
        by.0
    ))
    .bind(reference)
    .bind(p.first_name.as_deref())
    .bind(p.last_name.as_deref())
    .bind(p.display_name.as_deref())
    .bind(p.job_title.as_deref())
    .bind(p.timezone.as_deref())
    .bind(p.country.as_deref())
    .bind(p.company_name.as_deref())
    .bind(password_hash)
    .bind(now.seconds())
    .bind(project.to_string())
    .bind(by.1)
    .execute(exec)
    .await
    .map_err(unavailable)?;
    Ok(done.rows_affected())
}

#[async_trait]
impl SubscriberStore for SqlStore {
    async fn insert_encryption_key(&self, key: &EncryptionKeyRecord) -> Result<(), StoreError> {
        insert_encryption_key_row(&self.pool, key).await
    }

    async fn rotate_encryption_key(
        &self,
        key: &EncryptionKeyRecord,
        retire_until: UnixTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        retire_active_keys(&mut tx, "encryption_keys", key.project_id, retire_until).await?;
        insert_encryption_key_row(&mut *tx, key).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn encryption_key(&self, kid: &KeyId) -> Result<Option<EncryptionKeyRecord>, StoreError> {
        sqlx::query(
            "SELECT kid, project_id, state, sealed_secret, created_at, not_after \
             FROM encryption_keys WHERE kid = $1",
        )
        .bind(kid.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?
        .as_ref()
        .map(encryption_key_from)
        .transpose()
    }

    async fn encryption_keys(
        &self,
        project: ProjectId,
        state: KeyState,
    ) -> Result<Vec<EncryptionKeyRecord>, StoreError> {
        sqlx::query(
            "SELECT kid, project_id, state, sealed_secret, created_at, not_after \
             FROM encryption_keys WHERE project_id = $1 AND state = $2 \
             ORDER BY created_at DESC, kid",
        )
        .bind(project.to_string())
        .bind(state.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?
        .iter()
        .map(encryption_key_from)
        .collect()
    }

    async fn insert_subscriber(
        &self,
        subscriber: &SubscriberRecord,
        address: &AddressRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        insert_subscriber_rows(&mut tx, subscriber, address).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn upsert_subscriber(
        &self,
        s: &SubscriberRecord,
        address: &AddressRecord,
        login: Option<&Login>,
    ) -> Result<SubscriberRecord, StoreError> {
        // Update-then-insert, retried once: a concurrent first request for the same
        // reference makes our insert conflict, and the retry then updates its row.
        for _ in 0..2 {
            let mut tx = self.pool.begin().await.map_err(unavailable)?;
            let updated = update_rows(
                &mut tx,
                s.project_id,
                ("reference", s.reference.clone()),
                None,
                &s.profile,
                s.password_hash.as_deref(),
                s.updated_at,
            )
            .await?;
            if updated == 0 {
                match insert_subscriber_rows(&mut tx, s, address).await {
                    Ok(()) => {}
                    Err(StoreError::Conflict) => continue,
                    Err(e) => return Err(e),
                }
            }
            let row = sqlx::query(&format!(
                "SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE project_id = $1 AND reference = $2"
            ))
            .bind(s.project_id.to_string())
            .bind(&s.reference)
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable)?;
            let stored = subscriber_from(&row)?;
            if let Some(login) = login {
                let family = FamilyRecord {
                    id: login.family_id,
                    project_id: stored.project_id,
                    subscriber_id: Some(stored.id),
                    kind: login.kind.clone(),
                    created_at: s.updated_at,
                    revoked_at: None,
                };
                insert_family_rows(&mut tx, &family).await?;
                insert_refresh(&mut tx, &login.first_refresh).await?;
            }
            tx.commit().await.map_err(unavailable)?;
            return Ok(stored);
        }
        Err(StoreError::Unavailable(
            "subscriber upsert kept conflicting".into(),
        ))
    }

    async fn subscriber(
        &self,
        project: ProjectId,
        id: Uuid,
    ) -> Result<Option<SubscriberRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE project_id = $1 AND id = $2"
        ))
        .bind(project.to_string())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?
        .as_ref()
        .map(subscriber_from)
        .transpose()
    }

    async fn list_subscribers(
        &self,
        project: ProjectId,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<SubscriberRecord>, StoreError> {
        // Keyset pagination on (created_at, id): stable under concurrent inserts.
        let rows = match after {
            None => {
                sqlx::query(&format!(
                    "SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE project_id = $1 \
                 ORDER BY created_at, id LIMIT $2"
                ))
                .bind(project.to_string())
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
            }
            Some(after) => {
                sqlx::query(&format!(
                    "SELECT {SUBSCRIBER_COLUMNS} FROM subscribers s WHERE project_id = $1 AND \
                 EXISTS (SELECT 1 FROM subscribers a WHERE a.id = $2 AND a.project_id = $1 AND \
                   (s.created_at > a.created_at OR (s.created_at = a.created_at AND s.id > a.id))) \
                 ORDER BY created_at, id LIMIT $3"
                ))
                .bind(project.to_string())
                .bind(after.to_string())
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(unavailable)?;
        rows.iter().map(subscriber_from).collect()
    }

    async fn update_subscriber(
        &self,
        project: ProjectId,
        id: Uuid,
        reference: Option<&str>,
        profile: &SubscriberProfile,
        password_hash: Option<&str>,
        now: UnixTime,
    ) -> Result<Option<SubscriberRecord>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        let n = update_rows(
            &mut conn,
            project,
            ("id", id.to_string()),
            reference,
            profile,
            password_hash,
            now,
        )
        .await?;
        drop(conn);
        if n == 0 {
            return Ok(None);
        }
        self.subscriber(project, id).await
    }

    async fn delete_subscriber(&self, project: ProjectId, id: Uuid) -> Result<bool, StoreError> {
        // Foreign keys cascade to addresses, families and refresh tokens.
        let done = sqlx::query("DELETE FROM subscribers WHERE project_id = $1 AND id = $2")
            .bind(project.to_string())
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    async fn subscriber_addresses(
        &self,
        project: ProjectId,
        subscriber: Uuid,
    ) -> Result<Vec<AddressRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {ADDRESS_COLUMNS} FROM subscriber_addresses \
             WHERE project_id = $1 AND subscriber_id = $2 ORDER BY created_at, id"
        ))
        .bind(project.to_string())
        .bind(subscriber.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?
        .iter()
        .map(address_from)
        .collect()
    }

    async fn address(
        &self,
        project: ProjectId,
        id: Uuid,
    ) -> Result<Option<AddressRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {ADDRESS_COLUMNS} FROM subscriber_addresses WHERE project_id = $1 AND id = $2"
        ))
        .bind(project.to_string())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?
        .as_ref()
        .map(address_from)
        .transpose()
    }

    async fn insert_family(
        &self,
        family: &FamilyRecord,
        first: Option<&NewRefreshToken>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        insert_family_rows(&mut tx, family).await?;
        if let Some(rt) = first {
            insert_refresh(&mut tx, rt).await?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn family(&self, id: Uuid) -> Result<Option<FamilyRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {FAMILY_COLUMNS} FROM token_families WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?
        .as_ref()
        .map(family_from)
        .transpose()
    }

    async fn rotate_refresh_token(
        &self,
        family: Uuid,
        jti: Uuid,
        next: &NewRefreshToken,
        now_ms: i64,
        reuse_leeway_ms: i64,
    ) -> Result<Rotation, StoreError> {
        let now = now_ms.div_euclid(1000);
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // The write comes first in the transaction, so SQLite takes its write lock here and
        // concurrent rotations queue behind it; PostgreSQL re-checks the WHERE clause after
        // a concurrent update commits. Either way only one caller sees `used_at IS NULL`.
        let spent = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $1, used_at_ms = $2 \
             WHERE jti = $3 AND family_id = $4 AND used_at IS NULL AND EXISTS \
               (SELECT 1 FROM token_families f WHERE f.id = $4 AND f.revoked_at IS NULL)",
        )
        .bind(now)
        .bind(now_ms)
        .bind(jti.to_string())
        .bind(family.to_string())
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        if spent.rows_affected() == 1 {
            insert_refresh(&mut tx, next).await?;
            tx.commit().await.map_err(unavailable)?;
            return Ok(Rotation::Rotated);
        }
        let used_at_ms: Option<Option<i64>> =
            sqlx::query("SELECT used_at_ms FROM refresh_tokens WHERE jti = $1 AND family_id = $2")
                .bind(jti.to_string())
                .bind(family.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?
                .as_ref()
                .map(|row| get::<Option<i64>>(row, "used_at_ms"))
                .transpose()?;
        let Some(used_at_ms) = used_at_ms else {
            return Ok(Rotation::Unknown);
        };
        // Spent a moment ago: a concurrent or retried request of the legitimate client, not
        // a replay. Refuse it, but leave the family (and the winner's tokens) alive.
        if let Some(used_at_ms) = used_at_ms
            && now_ms.saturating_sub(used_at_ms) < reuse_leeway_ms
        {
            return Ok(Rotation::Contended);
        }
        // Replay (RFC 9700 §4.14.2): we cannot tell the thief from the owner, so the whole
        // family goes.
        sqlx::query(
            "UPDATE token_families SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(family.to_string())
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(Rotation::Reused)
    }

    async fn insert_embed_key(&self, key: &EmbedKeyRecord) -> Result<(), StoreError> {
        // The address must belong to the key's project; the foreign key alone would accept
        // another project's address.
        let done = sqlx::query(&format!(
            "INSERT INTO embed_keys ({EMBED_COLUMNS}) \
             SELECT $1, $2, $3, $4, $5, NULL WHERE EXISTS \
               (SELECT 1 FROM subscriber_addresses WHERE id = $3 AND project_id = $2)"
        ))
        .bind(key.id.to_string())
        .bind(key.project_id.to_string())
        .bind(key.address_id.to_string())
        .bind(&key.token_hash)
        .bind(key.created_at.seconds())
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    async fn active_embed_key(
        &self,
        token_hash: &str,
    ) -> Result<Option<EmbedKeyRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {EMBED_COLUMNS} FROM embed_keys WHERE token_hash = $1 AND revoked_at IS NULL"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?
        .as_ref()
        .map(embed_from)
        .transpose()
    }

    async fn list_embed_keys(&self, project: ProjectId) -> Result<Vec<EmbedKeyRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {EMBED_COLUMNS} FROM embed_keys WHERE project_id = $1 ORDER BY created_at, id"
        ))
        .bind(project.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?
        .iter()
        .map(embed_from)
        .collect()
    }

    async fn revoke_embed_key(
        &self,
        project: ProjectId,
        id: Uuid,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        revoke_row(&self.pool, "embed_keys", project, &id.to_string(), now).await
    }

    async fn record_dpop_proof(
        &self,
        id: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM dpop_proofs WHERE expires_at < $1")
            .bind(now.seconds())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        match sqlx::query("INSERT INTO dpop_proofs (id, expires_at) VALUES ($1, $2)")
            .bind(id)
            .bind(expires_at.seconds())
            .execute(&self.pool)
            .await
            .map_err(unavailable)
        {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

async fn insert_encryption_key_row<'e, E>(
    exec: E,
    key: &EncryptionKeyRecord,
) -> Result<(), StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO encryption_keys (kid, project_id, state, sealed_secret, created_at, not_after) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(key.kid.as_str())
    .bind(key.project_id.to_string())
    .bind(key.state.as_str())
    .bind(&key.sealed_secret)
    .bind(key.created_at.seconds())
    .bind(key.not_after.map(UnixTime::seconds))
    .execute(exec)
    .await
    .map_err(unavailable)?;
    Ok(())
}

async fn insert_family_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    family: &FamilyRecord,
) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO token_families ({FAMILY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
    ))
    .bind(family.id.to_string())
    .bind(family.project_id.to_string())
    .bind(family.subscriber_id.map(|s| s.to_string()))
    .bind(&family.kind)
    .bind(family.created_at.seconds())
    .bind(family.revoked_at.map(UnixTime::seconds))
    .execute(&mut **tx)
    .await
    .map_err(unavailable)?;
    Ok(())
}

async fn insert_refresh(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    rt: &NewRefreshToken,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO refresh_tokens (jti, family_id, parent_jti, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(rt.jti.to_string())
    .bind(rt.family_id.to_string())
    .bind(rt.parent_jti.map(|p| p.to_string()))
    .bind(rt.expires_at.seconds())
    .bind(rt.created_at.seconds())
    .execute(&mut **tx)
    .await
    .map_err(unavailable)?;
    Ok(())
}
