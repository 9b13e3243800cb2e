//! The vault's key store in Lethe's own database. Destroyed keys are
//! deleted with `secure_delete` on, so their bytes are overwritten in the
//! database file, and the WAL is checkpointed and truncated afterwards.

use lethe_vault::{KeyStore, StoredKey, VaultError, WrappedKey};
use sqlx::Row;

use crate::{Store, StoreError, ms, now_wall};

fn verr(e: StoreError) -> VaultError {
    VaultError::Store(e.to_string())
}

fn row_key(r: &crate::DbRow) -> StoredKey {
    StoredKey {
        subject: r.get(0),
        version: u32::try_from(r.get::<i64, _>(1)).unwrap_or(0),
        wrapped: WrappedKey {
            kek_version: u32::try_from(r.get::<i64, _>(2)).unwrap_or(0),
            bytes: r.get(3),
        },
    }
}

#[async_trait::async_trait]
impl KeyStore for Store {
    async fn latest(&self, subject: &str) -> Result<Option<StoredKey>, VaultError> {
        let r = sqlx::query("SELECT subject, version, kek_version, wrapped FROM vault_keys WHERE subject = $1 ORDER BY version DESC LIMIT 1")
            .bind(subject.to_owned())
            .fetch_optional(&self.read)
            .await
            .map_err(|e| verr(crate::db("read vault key")(e)))?;
        Ok(r.as_ref().map(row_key))
    }

    async fn get(&self, subject: &str, version: u32) -> Result<Option<StoredKey>, VaultError> {
        let r = sqlx::query("SELECT subject, version, kek_version, wrapped FROM vault_keys WHERE subject = $1 AND version = $2")
            .bind(subject.to_owned())
            .bind(i64::from(version))
            .fetch_optional(&self.read)
            .await
            .map_err(|e| verr(crate::db("read vault key")(e)))?;
        Ok(r.as_ref().map(row_key))
    }

    async fn insert(&self, key: StoredKey) -> Result<bool, VaultError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let gone: Option<String> = sqlx::query_scalar("SELECT destroyed_at FROM vault_tombstones WHERE subject = $1")
                        .bind(key.subject.clone())
                        .fetch_optional(ctx.conn().await?)
                        .await
                        .map_err(crate::db("read vault tombstone"))?;
                    if gone.is_some() {
                        return Ok(false);
                    }
                    let n = sqlx::query("INSERT INTO vault_keys (subject, version, kek_version, wrapped, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (subject, version) DO NOTHING")
                        .bind(key.subject)
                        .bind(i64::from(key.version))
                        .bind(i64::from(key.wrapped.kek_version))
                        .bind(key.wrapped.bytes)
                        .bind(ms(now_wall()))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(crate::db("store vault key"))?
                        .rows_affected();
                    Ok(n == 1)
                })
            })
            .await
            .map_err(verr)
    }

    async fn destroy(&self, subject: &str, at: &str) -> Result<u32, VaultError> {
        let (subject, at) = (subject.to_owned(), at.to_owned());
        let n = self
            .writer
            .run(move |ctx| {
                Box::pin(async move {
                    let n = sqlx::query("DELETE FROM vault_keys WHERE subject = $1")
                        .bind(subject.clone())
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(crate::db("destroy vault keys"))?
                        .rows_affected();
                    sqlx::query("INSERT INTO vault_tombstones (subject, destroyed_at, versions) VALUES ($1, $2, $3) ON CONFLICT (subject) DO NOTHING")
                        .bind(subject)
                        .bind(at)
                        .bind(i64::try_from(n).unwrap_or(0))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(crate::db("record vault tombstone"))?;
                    Ok(u32::try_from(n).unwrap_or(u32::MAX))
                })
            })
            .await
            .map_err(verr)?;
        if n > 0 {
            self.checkpoint().await.map_err(verr)?;
        }
        Ok(n)
    }

    async fn destroy_many(&self, subjects: &[String], at: &str) -> Result<u32, VaultError> {
        // Subject references are keyed hashes: inlined as literals.
        let refs: Vec<String> = subjects
            .iter()
            .filter(|s| crate::is_hex(s))
            .cloned()
            .collect();
        let at = at.to_owned();
        let n = self
            .writer
            .run(move |ctx| {
                Box::pin(async move {
                    let mut n = 0u64;
                    for chunk in refs.chunks(1000) {
                        let Some(list) = crate::hex_literals(chunk) else {
                            continue;
                        };
                        n += sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DELETE FROM vault_keys WHERE subject IN ({list})"
                        )))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(crate::db("destroy vault keys"))?
                        .rows_affected();
                        let rows: Vec<String> =
                            chunk.iter().map(|r| format!("('{r}', $1, 0)")).collect();
                        sqlx::query(sqlx::AssertSqlSafe(format!(
                            "INSERT INTO vault_tombstones (subject, destroyed_at, versions) VALUES {} ON CONFLICT (subject) DO NOTHING",
                            rows.join(",")
                        )))
                        .bind(at.clone())
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(crate::db("record vault tombstones"))?;
                    }
                    Ok(u32::try_from(n).unwrap_or(u32::MAX))
                })
            })
            .await
            .map_err(verr)?;
        if n > 0 {
            self.checkpoint().await.map_err(verr)?;
        }
        Ok(n)
    }

    async fn destroyed_at(&self, subject: &str) -> Result<Option<String>, VaultError> {
        sqlx::query_scalar("SELECT destroyed_at FROM vault_tombstones WHERE subject = $1")
            .bind(subject.to_owned())
            .fetch_optional(&self.read)
            .await
            .map_err(|e| verr(crate::db("read vault tombstone")(e)))
    }

    async fn count(&self) -> Result<u64, VaultError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM vault_keys")
            .fetch_one(&self.read)
            .await
            .map_err(|e| verr(crate::db("count vault keys")(e)))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn wrapped_below(&self, version: u32, limit: u32) -> Result<Vec<StoredKey>, VaultError> {
        let rows = sqlx::query("SELECT subject, version, kek_version, wrapped FROM vault_keys WHERE kek_version < $1 LIMIT $2")
            .bind(i64::from(version))
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(|e| verr(crate::db("list vault keys")(e)))?;
        Ok(rows.iter().map(row_key).collect())
    }

    async fn rewrap(&self, key: &StoredKey, old: u32) -> Result<bool, VaultError> {
        let key = key.clone();
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let n = sqlx::query("UPDATE vault_keys SET kek_version = $1, wrapped = $2 WHERE subject = $3 AND version = $4 AND kek_version = $5")
                        .bind(i64::from(key.wrapped.kek_version))
                        .bind(key.wrapped.bytes)
                        .bind(key.subject)
                        .bind(i64::from(key.version))
                        .bind(i64::from(old))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(crate::db("re-wrap vault key"))?
                        .rows_affected();
                    Ok(n == 1)
                })
            })
            .await
            .map_err(verr)
    }
}
