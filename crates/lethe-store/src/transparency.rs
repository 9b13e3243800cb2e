//! Public transparency: the published compliance reports and the
//! witnesses' cosignatures of the log's checkpoints.

use jiff::Timestamp;
use sha2::Digest;
use sqlx::Row;

use crate::{Store, StoreError, db, from_ms, ms};

/// Reports listed at most (about eight years of monthly reports for a
/// dozen platforms).
pub const MAX_LISTED_REPORTS: u32 = 1_200;

/// A published report, without its body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PublishedReport {
    pub id: String,
    /// None: the whole installation.
    pub platform: Option<String>,
    pub kind: String,
    pub period_from: Timestamp,
    pub period_to: Timestamp,
    pub label: String,
    pub created_at: Timestamp,
}

/// A report to publish.
#[derive(Debug, Clone)]
pub struct NewReport {
    pub id: String,
    pub platform: Option<String>,
    pub kind: String,
    pub period_from: Timestamp,
    pub period_to: Timestamp,
    pub label: String,
    /// The signed public report (JSON).
    pub body: String,
}

const COLS: &str = "id, platform, kind, period_from, period_to, label, created_at";

fn row(r: &crate::DbRow) -> PublishedReport {
    let platform: String = r.get(1);
    PublishedReport {
        id: r.get(0),
        platform: (!platform.is_empty()).then_some(platform),
        kind: r.get(2),
        period_from: from_ms(r.get(3)),
        period_to: from_ms(r.get(4)),
        label: r.get(5),
        created_at: from_ms(r.get(6)),
    }
}

impl Store {
    /// Publishes a report, with a `report.published` event carrying the
    /// SHA-256 of its body (so the log vouches for what was published).
    /// False when one of the same platform, kind and period exists (another
    /// instance published it first).
    pub async fn publish_report(&self, r: NewReport, now: Timestamp) -> Result<bool, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let n = sqlx::query("INSERT INTO published_reports (id, platform, kind, period_from, period_to, label, body, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING")
                        .bind(r.id.clone())
                        .bind(r.platform.clone().unwrap_or_default())
                        .bind(r.kind.clone())
                        .bind(ms(r.period_from))
                        .bind(ms(r.period_to))
                        .bind(r.label.clone())
                        .bind(r.body.clone())
                        .bind(ms(now))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("publish a report"))?
                        .rows_affected();
                    if n == 0 {
                        return Ok(false);
                    }
                    crate::log::append_event(
                        ctx,
                        &format!("report-{}", r.id),
                        "",
                        "report.published",
                        None,
                        "published",
                        "worker",
                        serde_json::json!({
                            "platform": r.platform,
                            "kind": r.kind,
                            "from": r.period_from.to_string(),
                            "to": r.period_to.to_string(),
                            "sha256": hex::encode(sha2::Sha256::digest(r.body.as_bytes())),
                        }),
                        now,
                    )
                    .await?;
                    Ok(true)
                })
            })
            .await
    }

    /// Whether the installation's report of `kind` for the period exists.
    pub async fn report_published(
        &self,
        kind: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM published_reports WHERE platform = '' AND kind = $1 AND period_from = $2 AND period_to = $3")
            .bind(kind.to_owned())
            .bind(ms(from))
            .bind(ms(to))
            .fetch_one(&self.read)
            .await
            .map_err(db("read published reports"))?;
        Ok(n > 0)
    }

    /// Published reports, newest period first.
    pub async fn published_reports(&self, limit: u32) -> Result<Vec<PublishedReport>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM published_reports ORDER BY period_to DESC, platform, created_at DESC LIMIT $1")))
            .bind(i64::from(limit.min(MAX_LISTED_REPORTS)))
            .fetch_all(&self.read)
            .await
            .map_err(db("read published reports"))?;
        Ok(rows.iter().map(row).collect())
    }

    /// One published report and its signed body.
    pub async fn published_report(
        &self,
        id: &str,
    ) -> Result<Option<(PublishedReport, String)>, StoreError> {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS}, body FROM published_reports WHERE id = $1"
        )))
        .bind(id.to_owned())
        .fetch_optional(&self.read)
        .await
        .map_err(db("read a published report"))?;
        Ok(r.map(|r| (row(&r), r.get(7))))
    }

    /// The platforms with cases created in the period (at most `limit`).
    pub async fn platforms_with_cases(
        &self,
        from: Timestamp,
        to: Timestamp,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT DISTINCT principal FROM cases WHERE created_at >= $1 AND created_at < $2 ORDER BY principal LIMIT $3")
            .bind(ms(from))
            .bind(ms(to))
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(db("read the period's platforms"))
    }

    /// Keeps a witness's cosignature line of the checkpoint of `tree_size`.
    pub async fn store_cosignature(
        &self,
        tree_size: u64,
        witness: String,
        line: String,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let size = i64::try_from(tree_size).unwrap_or(i64::MAX);
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO checkpoint_cosignatures (tree_size, witness, line, cosigned_at) VALUES ($1, $2, $3, $4) ON CONFLICT (tree_size, witness) DO UPDATE SET line = excluded.line, cosigned_at = excluded.cosigned_at")
                        .bind(size)
                        .bind(witness)
                        .bind(line)
                        .bind(ms(now))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("store a cosignature"))?;
                    Ok(())
                })
            })
            .await
    }

    /// The cosignature lines of the checkpoint of `tree_size`, by witness.
    pub async fn cosignatures(&self, tree_size: u64) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT witness, line FROM checkpoint_cosignatures WHERE tree_size = $1 ORDER BY witness LIMIT 64")
            .bind(i64::try_from(tree_size).unwrap_or(i64::MAX))
            .fetch_all(&self.read)
            .await
            .map_err(db("read cosignatures"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// The largest checkpoint a witness cosigned.
    pub async fn last_cosigned(&self, witness: &str) -> Result<Option<u64>, StoreError> {
        let n: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(tree_size) FROM checkpoint_cosignatures WHERE witness = $1",
        )
        .bind(witness.to_owned())
        .fetch_one(&self.read)
        .await
        .map_err(db("read cosignatures"))?;
        Ok(n.and_then(|n| u64::try_from(n).ok()))
    }

    /// Signed tree heads, newest first (at most `limit`).
    pub async fn recent_tree_heads(
        &self,
        limit: u32,
    ) -> Result<Vec<lethe_ledger::TreeHead>, StoreError> {
        let rows = sqlx::query("SELECT tree_size, root_hash, timestamp, signature FROM tree_heads ORDER BY tree_size DESC LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(db("read tree heads"))?;
        Ok(rows.iter().map(crate::log::row_head).collect())
    }
}
