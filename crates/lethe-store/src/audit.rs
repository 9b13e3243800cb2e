//! Signed tree heads, Merkle proofs and log export.

use lethe_ledger::merkle::{
    Range, consistency_ranges, inclusion_ranges, perfect_pieces, range_hash,
};
use lethe_ledger::{Hash, RecordedEvent, TreeHead};
use sqlx::Row;
use std::collections::HashMap;

use crate::log::row_head;
use crate::{Store, StoreError, db};

#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error("the tree has {size} events; {what} must be between {min} and {size}")]
    OutOfRange {
        what: &'static str,
        min: u64,
        size: u64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    pub async fn latest_tree_head(&self) -> Result<Option<TreeHead>, StoreError> {
        let r = sqlx::query("SELECT tree_size, root_hash, timestamp, signature FROM tree_heads ORDER BY tree_size DESC LIMIT 1")
            .fetch_optional(&self.read)
            .await
            .map_err(db("read tree head"))?;
        Ok(r.as_ref().map(row_head))
    }

    /// Tree heads with `tree_size >= from_size`, oldest first.
    pub async fn tree_heads(
        &self,
        from_size: u64,
        limit: u32,
    ) -> Result<Vec<TreeHead>, StoreError> {
        let rows = sqlx::query("SELECT tree_size, root_hash, timestamp, signature FROM tree_heads WHERE tree_size >= $1 ORDER BY tree_size LIMIT $2")
            .bind(i64::try_from(from_size).unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(db("read tree heads"))?;
        Ok(rows.iter().map(row_head).collect())
    }

    pub async fn audit_size(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM audit_leaves")
            .fetch_one(&self.read)
            .await
            .map_err(db("read audit size"))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn hash_ranges(&self, ranges: &[Range]) -> Result<Vec<Hash>, StoreError> {
        let mut pieces = vec![];
        for (s, l) in ranges {
            perfect_pieces(*s, *l, &mut pieces);
        }
        let mut conn = self.read.acquire().await.map_err(db("read audit nodes"))?;
        let mut map: HashMap<(u32, u64), Hash> = HashMap::new();
        for (level, idx) in pieces {
            let h = crate::perfect_node(&mut conn, level, idx)
                .await?
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("audit node {level}/{idx} is missing"))
                })?;
            map.insert((level, idx), h);
        }
        ranges
            .iter()
            .map(|(s, l)| {
                range_hash(*s, *l, &|lv, ix| map.get(&(lv, ix)).copied())
                    .ok_or_else(|| StoreError::Corrupt("audit proof".into()))
            })
            .collect()
    }

    /// The audit path of event `seq` in the tree of `tree_size` events.
    pub async fn inclusion_proof(&self, seq: u64, tree_size: u64) -> Result<Vec<Hash>, ProofError> {
        let size = self.audit_size().await?;
        if tree_size == 0 || tree_size > size {
            return Err(ProofError::OutOfRange {
                what: "tree_size",
                min: 1,
                size,
            });
        }
        if seq == 0 || seq > tree_size {
            return Err(ProofError::OutOfRange {
                what: "seq",
                min: 1,
                size: tree_size,
            });
        }
        Ok(self
            .hash_ranges(&inclusion_ranges(seq - 1, tree_size))
            .await?)
    }

    /// The consistency proof between two tree sizes.
    pub async fn consistency_proof(
        &self,
        first: u64,
        second: u64,
    ) -> Result<Vec<Hash>, ProofError> {
        let size = self.audit_size().await?;
        if second == 0 || second > size {
            return Err(ProofError::OutOfRange {
                what: "second",
                min: 1,
                size,
            });
        }
        if first == 0 || first > second {
            return Err(ProofError::OutOfRange {
                what: "first",
                min: 1,
                size: second,
            });
        }
        Ok(self.hash_ranges(&consistency_ranges(first, second)).await?)
    }

    /// Events `from..` with their recorded leaf hashes, at most `limit`.
    pub async fn export_events(
        &self,
        from: u64,
        limit: u32,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.audit_range(from, limit).await
    }

    /// Of these case, claim, export and reapply-run ids, those the
    /// platform owns.
    pub async fn owned_ids(
        &self,
        platform: &str,
        ids: &[&str],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let mut out: std::collections::HashSet<String> = self
            .owned_of(platform, ids, |marks| {
                format!(
                    "SELECT id FROM cases WHERE principal = $1 AND id IN ({marks}) \
                     UNION SELECT id FROM claims WHERE principal = $1 AND id IN ({marks}) \
                     UNION SELECT id FROM exports WHERE principal = $1 AND id IN ({marks}) \
                     UNION SELECT id FROM reapply_runs WHERE principal = $1 AND id IN ({marks}) \
                     UNION SELECT id FROM purges WHERE principal = $1 AND id IN ({marks})"
                )
            })
            .await?
            .into_iter()
            .collect();
        // Support requests asked before any case have a trail of their own
        // (`support-<request id>`), owned by the request's platform.
        let requests: Vec<&str> = ids
            .iter()
            .filter_map(|i| i.strip_prefix("support-"))
            .collect();
        let found = self
            .owned_of(platform, &requests, |marks| {
                format!("SELECT id FROM support_requests WHERE principal = $1 AND case_id IS NULL AND id IN ({marks})")
            })
            .await?;
        out.extend(found.into_iter().map(|id| format!("support-{id}")));
        Ok(out)
    }

    /// The ids `sql(marks)` finds among `ids` for `platform` ($1), in
    /// chunks of 200 bound as $2...
    async fn owned_of(
        &self,
        platform: &str,
        ids: &[&str],
        sql: impl Fn(&str) -> String,
    ) -> Result<Vec<String>, StoreError> {
        let mut out = vec![];
        for chunk in ids.chunks(200) {
            let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let mut q =
                sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql(&marks.join(", "))))
                    .bind(platform.to_owned());
            for id in chunk {
                q = q.bind((*id).to_owned());
            }
            out.extend(
                q.fetch_all(&self.read)
                    .await
                    .map_err(db("read the owners of audit events"))?,
            );
        }
        Ok(out)
    }

    /// Receipts built in the closing transaction but not yet signed (the
    /// process stopped in between).
    pub async fn unsigned_receipts(&self, limit: u32) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT case_id, body FROM receipts WHERE signed = 0 LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(db("read receipts"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub async fn store_signed_receipt(
        &self,
        case_id: String,
        body: String,
    ) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    sqlx::query("UPDATE receipts SET body = $1, signed = 1 WHERE case_id = $2")
                        .bind(body)
                        .bind(case_id)
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("store signed receipt"))?;
                    Ok(())
                })
            })
            .await
    }

    pub async fn receipt_signed(
        &self,
        case_id: &str,
    ) -> Result<Option<(String, bool)>, StoreError> {
        let r = sqlx::query("SELECT body, signed FROM receipts WHERE case_id = $1")
            .bind(case_id.to_owned())
            .fetch_optional(&self.read)
            .await
            .map_err(db("read receipt"))?;
        Ok(r.map(|r| (r.get(0), r.get::<i64, _>(1) != 0)))
    }
}

/// Rows for the compliance report of cases submitted in `[from_ms, to_ms)`.
pub type ReportRows = (
    Vec<lethe_ledger::report::CaseRow>,
    Vec<lethe_ledger::report::DeadlineRow>,
    Vec<lethe_ledger::report::ErasureRow>,
);

impl Store {
    pub async fn report_rows(
        &self,
        from_ms: i64,
        to_ms: i64,
        max_cases: u32,
        platform: Option<&str>,
    ) -> Result<ReportRows, StoreError> {
        let platform = platform.map(str::to_owned);
        use lethe_ledger::report::{CaseRow, DeadlineRow, ErasureRow};
        let cases: Vec<CaseRow> = sqlx::query("SELECT id, channel, state, created_at, body FROM cases WHERE created_at >= $1 AND created_at < $2 AND ($4 IS NULL OR principal = $4) ORDER BY created_at LIMIT $3")
            .bind(from_ms)
            .bind(to_ms)
            .bind(i64::from(max_cases))
            .bind(platform.clone())
            .fetch_all(&self.read)
            .await
            .map_err(db("read cases for the report"))?
            .iter()
            .map(|r| {
                let body: serde_json::Value = serde_json::from_str(&r.get::<String, _>(4)).unwrap_or_default();
                let closed_ms = body["closed_at"].as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok()).map(|t| t.as_millisecond());
                CaseRow { case_id: r.get(0), channel: r.get(1), state: r.get(2), created_ms: r.get(3), closed_ms }
            })
            .collect();
        let deadlines: Vec<DeadlineRow> = sqlx::query("SELECT d.case_id, d.kind, d.due_at, d.met_at, d.provisional FROM deadlines d JOIN cases c ON c.id = d.case_id WHERE c.created_at >= $1 AND c.created_at < $2 AND ($3 IS NULL OR c.principal = $3)")
            .bind(from_ms)
            .bind(to_ms)
            .bind(platform.clone())
            .fetch_all(&self.read)
            .await
            .map_err(db("read deadlines for the report"))?
            .iter()
            .map(|r| DeadlineRow { case_id: r.get(0), kind: r.get(1), due_ms: r.get(2), met_ms: r.get(3), provisional: r.get::<i64, _>(4) != 0 })
            .collect();
        let erasures: Vec<ErasureRow> = sqlx::query("SELECT e.case_id, e.system, e.outcome FROM erasure_results e JOIN cases c ON c.id = e.case_id WHERE c.created_at >= $1 AND c.created_at < $2 AND ($3 IS NULL OR c.principal = $3)")
            .bind(from_ms)
            .bind(to_ms)
            .bind(platform)
            .fetch_all(&self.read)
            .await
            .map_err(db("read erasure results for the report"))?
            .iter()
            .filter_map(|r| {
                let v: serde_json::Value = serde_json::from_str(&r.get::<String, _>(2)).ok()?;
                let tables = v["tables"].as_array()?;
                let mut row = ErasureRow { case_id: r.get(0), system: r.get(1), tables_not_verified: 0, tables: 0, rows_erased: 0, kept: vec![] };
                for t in tables {
                    row.tables += 1;
                    let rows = t["rows"].as_u64().unwrap_or(0);
                    if t["action"] == "keep" {
                        let until = t["retain_until"].as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok()).map(|x| x.as_millisecond()).unwrap_or(i64::MAX);
                        row.kept.push((t["table"].as_str().unwrap_or("").to_owned(), rows, t["legal_basis"].as_str().unwrap_or("").to_owned(), until));
                    } else {
                        row.rows_erased += rows;
                        if t["remaining"].as_u64() != Some(0) {
                            row.tables_not_verified += 1;
                        }
                    }
                }
                Some(row)
            })
            .collect();
        Ok((cases, deadlines, erasures))
    }
}
