//! Platform API keys: created, looked up by hash, revoked.

use super::*;

impl Store {
    // ------------------------------------------------------------- api keys

    pub async fn insert_api_key(&self, name: String, key_hash: String) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO api_keys (name, key_hash, created_at) VALUES ($1, $2, $3)",
                    )
                    .bind(name)
                    .bind(key_hash)
                    .bind(ms(now_wall()))
                    .execute(ctx.conn().await?)
                    .await
                    .map_err(db("insert API key"))?;
                    Ok(())
                })
            })
            .await
    }

    /// The name of the live API key with this hash.
    pub async fn api_key_name(&self, key_hash: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT name FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL")
            .bind(key_hash.to_owned())
            .fetch_optional(&self.read)
            .await
            .map_err(db("read API key"))
    }

    /// The platforms of the installation: the names of its API keys, live
    /// or revoked (a revoked key's cases stay its platform's), sorted.
    pub async fn platforms(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT name FROM api_keys ORDER BY name LIMIT 10000")
            .fetch_all(&self.read)
            .await
            .map_err(db("read platforms"))
    }

    /// The platforms with a live API key.
    pub async fn live_platforms(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT name FROM api_keys WHERE revoked_at IS NULL ORDER BY name LIMIT 10000",
        )
        .fetch_all(&self.read)
        .await
        .map_err(db("read platforms"))
    }

    pub async fn revoke_api_key(&self, name: String) -> Result<bool, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let n = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL")
                        .bind(ms(now_wall()))
                        .bind(name)
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("revoke API key"))?
                        .rows_affected();
                    Ok(n > 0)
                })
            })
            .await
    }
}
