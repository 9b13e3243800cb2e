//! Idempotency keys: a retried request gets the first answer.

use super::*;

/// An idempotency record to write in the same transaction as the change.
#[derive(Debug, Clone)]
pub struct Idem {
    pub principal: String,
    pub key: String,
    pub request_hash: String,
    pub status: u16,
    /// Renders the response body from the case after the change.
    pub render: fn(&Case) -> String,
}

#[derive(Debug, Clone)]
pub struct IdemRecord {
    pub request_hash: String,
    pub status: u16,
    pub body: String,
}

/// How long an idempotency record answers retries; older ones are purged.
pub const IDEMPOTENCY_TTL_HOURS: i64 = 24;

/// Records created before this (wall clock, ms) have expired.
pub(crate) fn idem_cutoff() -> i64 {
    ms(now_wall()) - IDEMPOTENCY_TTL_HOURS * 3_600_000
}

/// Writes the record of a key: a new key, or one whose record has expired
/// (the expired record is replaced, so the key may be used again). A live
/// record of the key — a concurrent request with the same key that
/// committed first — makes this an [`StoreError::IdempotencyConflict`].
/// One statement: the upsert only replaces a record older than the cutoff.
pub(crate) async fn write_idem(ctx: &mut WriteCtx, record: IdemRow) -> Result<(), StoreError> {
    ctx.defer(
        Stmt::new(
            "store idempotency record",
            "INSERT INTO idempotency (principal, key, request_hash, status, body, created_at, case_id) VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (principal, key) DO UPDATE SET request_hash = excluded.request_hash, status = excluded.status, body = excluded.body, created_at = excluded.created_at, case_id = excluded.case_id
             WHERE idempotency.created_at < $8",
        )
        .arg(record.principal)
        .arg(record.key)
        .arg(record.request_hash)
        .arg(i64::from(record.status))
        .arg(record.body)
        .arg(ms(now_wall()))
        .arg(record.case_id)
        .arg(idem_cutoff())
        .then(Then::AtLeastOneRow(|| StoreError::IdempotencyConflict)),
    )
    .await
}

/// The columns of one idempotency record.
pub(crate) struct IdemRow {
    principal: String,
    key: String,
    request_hash: String,
    status: u16,
    body: String,
    case_id: Option<String>,
}

/// Reserves the idempotency key at the start of the transaction: a
/// concurrent request with the same key that committed first makes this
/// one a conflict before it does anything. For the operations that keep
/// some writes when they fail (a wrong code is counted); the others learn
/// of the conflict from [`finish_idem`], which rolls them back whole.
pub(crate) async fn claim_idem(ctx: &mut WriteCtx, idem: Option<&Idem>) -> Result<(), StoreError> {
    let Some(i) = idem else { return Ok(()) };
    let live: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM idempotency WHERE principal = $1 AND key = $2 AND created_at >= $3",
    )
    .bind(i.principal.clone())
    .bind(i.key.clone())
    .bind(idem_cutoff())
    .fetch_optional(ctx.conn().await?)
    .await
    .map_err(db("read idempotency record"))?;
    if live.is_some() {
        return Err(StoreError::IdempotencyConflict);
    }
    Ok(())
}

pub(crate) async fn finish_idem(
    ctx: &mut WriteCtx,
    idem: Option<&Idem>,
    case: &Case,
) -> Result<(), StoreError> {
    let Some(i) = idem else { return Ok(()) };
    write_idem(
        ctx,
        IdemRow {
            principal: i.principal.clone(),
            key: i.key.clone(),
            request_hash: i.request_hash.clone(),
            status: i.status,
            body: (i.render)(case),
            case_id: Some(case.id.to_string()),
        },
    )
    .await
}

impl Store {
    // ---------------------------------------------------------- idempotency

    pub async fn idem_get(
        &self,
        principal: &str,
        key: &str,
    ) -> Result<Option<IdemRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT request_hash, status, body FROM idempotency WHERE principal = $1 AND key = $2 AND created_at >= $3",
        )
        .bind(principal.to_owned())
        .bind(key.to_owned())
        .bind(idem_cutoff())
        .fetch_optional(&self.read)
        .await
        .map_err(db("read idempotency record"))?;
        Ok(row.map(|r| IdemRecord {
            request_hash: r.get(0),
            status: u16::try_from(r.get::<i64, _>(1)).unwrap_or(500),
            body: r.get(2),
        }))
    }

    /// Stores the idempotency record of a request that changed no case
    /// (`case_id`: the case its response shows, if any).
    pub async fn idem_put(
        &self,
        principal: String,
        key: String,
        request_hash: String,
        status: u16,
        body: String,
        case_id: Option<String>,
    ) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    write_idem(
                        ctx,
                        IdemRow {
                            principal,
                            key,
                            request_hash,
                            status,
                            body,
                            case_id,
                        },
                    )
                    .await
                })
            })
            .await
    }

    /// Deletes expired idempotency records, at most `limit`; returns how
    /// many went.
    pub async fn purge_idempotency(&self, limit: u32) -> Result<u64, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let n = sqlx::query(
                        "DELETE FROM idempotency WHERE (principal, key) IN (SELECT principal, key FROM idempotency WHERE created_at < $1 LIMIT $2)",
                    )
                    .bind(idem_cutoff())
                    .bind(i64::from(limit))
                    .execute(ctx.conn().await?)
                    .await
                    .map_err(db("purge idempotency records"))?
                    .rows_affected();
                    Ok(n)
                })
            })
            .await
    }

    /// On a PostgreSQL whose autovacuum is off (some installations turn it
    /// off), the dead rows that queues, job leases and idempotency records
    /// leave behind are never reclaimed and statistics never refreshed:
    /// every scan slows down as history grows and plans go stale. Then
    /// Lethe vacuums and analyzes its own tables whose dead or changed rows
    /// passed autovacuum's default thresholds: 50 rows plus a fifth of the
    /// live ones dead, or 50 plus a tenth changed since the last analyze —
    /// so a table analyzed while nearly empty is analyzed again soon after
    /// it grows, before prepared statements settle on plans that scan it.
    /// At most [`VACUUM_TABLES`] a call, busiest first, skipping a table
    /// another session is vacuuming. With autovacuum on it leaves that to
    /// PostgreSQL. Returns the tables vacuumed.
    pub async fn vacuum_if_needed(&self) -> Result<Vec<String>, StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(vec![]);
        }
        let setting: String = sqlx::query_scalar("SELECT current_setting('autovacuum')")
            .fetch_one(&self.read)
            .await
            .map_err(db("read the autovacuum setting"))?;
        if setting != "off" {
            return Ok(vec![]);
        }
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT CAST(relname AS TEXT) FROM pg_stat_user_tables WHERE schemaname = current_schema() \
             AND (n_dead_tup > 50 + n_live_tup / 5 OR n_mod_since_analyze > 50 + n_live_tup / 10) \
             ORDER BY n_dead_tup + n_mod_since_analyze DESC LIMIT $1",
        )
        .bind(VACUUM_TABLES)
        .fetch_all(&self.read)
        .await
        .map_err(db("read table statistics"))?;
        let mut done = Vec::with_capacity(tables.len());
        for t in tables {
            // Names from the catalogue, inlined: only plain identifiers.
            if t.is_empty()
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                continue;
            }
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "VACUUM (ANALYZE, SKIP_LOCKED) {t}"
            )))
            .execute(&self.read)
            .await
            .map_err(db("vacuum"))?;
            done.push(t);
        }
        Ok(done)
    }
}
