//! Identity claims and their sealed documents.

use jiff::Timestamp;
use sqlx::Row;

use crate::log::append_event;
use crate::{Store, StoreError, db, from_ms, ms};

#[derive(Debug, Clone, serde::Serialize)]
pub struct ClaimRow {
    pub id: String,
    pub principal: String,
    pub subject: String,
    pub id_number_sealed: Option<String>,
    pub state: String,
    pub decision_reason: Option<String>,
    pub accounts_notified: Option<i64>,
    pub created_at: Timestamp,
    pub closed_at: Option<Timestamp>,
    pub documents_destroyed_at: Option<String>,
    pub documents: Vec<(i64, String)>,
}

impl Store {
    pub async fn insert_claim(
        &self,
        id: String,
        principal: String,
        subject: String,
        id_number_sealed: String,
        documents: Vec<(String, String)>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO claims (id, principal, subject, id_number_sealed, state, created_at) VALUES ($1, $2, $3, $4, 'submitted', $5)")
                        .bind(id.clone())
                        .bind(principal.clone())
                        .bind(subject.clone())
                        .bind(id_number_sealed)
                        .bind(ms(now))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("store claim"))?;
                    for (n, (kind, sealed)) in documents.iter().enumerate() {
                        sqlx::query("INSERT INTO claim_documents (claim_id, n, kind, sealed) VALUES ($1, $2, $3, $4)")
                            .bind(id.clone())
                            .bind(n as i64)
                            .bind(kind.clone())
                            .bind(sealed.clone())
                            .execute(ctx.conn().await?)
                            .await
                            .map_err(db("store claim document"))?;
                    }
                    append_event(ctx, &id, &subject, "claim.submitted", None, "submitted", &format!("platform:{principal}"), serde_json::json!({ "documents": documents.len() }), now).await
                })
            })
            .await
    }

    pub async fn claim(&self, id: &str) -> Result<Option<ClaimRow>, StoreError> {
        let r = sqlx::query("SELECT id, principal, subject, id_number_sealed, state, decision_reason, accounts_notified, created_at, closed_at, documents_destroyed_at FROM claims WHERE id = $1")
            .bind(id.to_owned())
            .fetch_optional(&self.read)
            .await
            .map_err(db("read claim"))?;
        let Some(r) = r else { return Ok(None) };
        let docs =
            sqlx::query("SELECT n, kind FROM claim_documents WHERE claim_id = $1 ORDER BY n")
                .bind(id.to_owned())
                .fetch_all(&self.read)
                .await
                .map_err(db("read claim documents"))?
                .iter()
                .map(|d| (d.get(0), d.get(1)))
                .collect();
        Ok(Some(ClaimRow {
            id: r.get(0),
            principal: r.get(1),
            subject: r.get(2),
            id_number_sealed: r.get(3),
            state: r.get(4),
            decision_reason: r.get(5),
            accounts_notified: r.get(6),
            created_at: from_ms(r.get(7)),
            closed_at: r.get::<Option<i64>, _>(8).map(from_ms),
            documents_destroyed_at: r.get(9),
            documents: docs,
        }))
    }

    /// Claims waiting for a decision; only `platform`'s when given.
    pub async fn open_claims(
        &self,
        limit: u32,
        platform: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT id FROM claims WHERE state = 'submitted' AND ($2 IS NULL OR principal = $2) ORDER BY created_at LIMIT $1",
        )
        .bind(i64::from(limit))
        .bind(platform.map(str::to_owned))
        .fetch_all(&self.read)
        .await
        .map_err(db("list claims"))
    }

    pub async fn claim_document(
        &self,
        id: &str,
        n: i64,
    ) -> Result<Option<(String, String)>, StoreError> {
        let r =
            sqlx::query("SELECT kind, sealed FROM claim_documents WHERE claim_id = $1 AND n = $2")
                .bind(id.to_owned())
                .bind(n)
                .fetch_optional(&self.read)
                .await
                .map_err(db("read claim document"))?;
        Ok(r.map(|r| (r.get(0), r.get(1))))
    }

    /// Audits an agent's look at a document.
    pub async fn audit_claim(
        &self,
        id: String,
        subject: String,
        kind: &'static str,
        actor: String,
        detail: serde_json::Value,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    append_event(
                        ctx,
                        &id,
                        &subject,
                        kind,
                        None,
                        "submitted",
                        &actor,
                        detail,
                        now,
                    )
                    .await
                })
            })
            .await
    }

    /// Records the decision, the notifications to the platform and the
    /// destruction of the documents, in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn decide_claim(
        &self,
        id: String,
        approved: bool,
        reason: Option<String>,
        accounts: Vec<String>,
        actor: String,
        destroyed_at: String,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let row: Option<(String, String)> = sqlx::query_as("SELECT subject, principal FROM claims WHERE id = $1 AND state = 'submitted'")
                        .bind(id.clone())
                        .fetch_optional(ctx.conn().await?)
                        .await
                        .map_err(db("read claim"))?;
                    let Some((subject, principal)) = row else { return Ok(false) };
                    let state = if approved { "approved" } else { "rejected" };
                    sqlx::query("UPDATE claims SET state = $1, decision_reason = $2, accounts_notified = $3, closed_at = $4, documents_destroyed_at = $5, id_number_sealed = NULL WHERE id = $6")
                        .bind(state)
                        .bind(reason)
                        .bind(accounts.len() as i64)
                        .bind(ms(now))
                        .bind(destroyed_at.clone())
                        .bind(id.clone())
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("decide claim"))?;
                    let n = sqlx::query("DELETE FROM claim_documents WHERE claim_id = $1").bind(id.clone()).execute(ctx.conn().await?).await.map_err(db("delete claim documents"))?.rows_affected();
                    for a in &accounts {
                        let payload = serde_json::json!({ "claim_id": id, "subject_id": a, "reason": "identity_claim_approved" });
                        // For the platform the claim was made through only.
                        crate::tx::insert_notification_for(ctx, lethe_domain::notice::REALNAME_UNBIND, None, Some(&principal), &payload, now).await?;
                        crate::tx::insert_notification_for(ctx, lethe_domain::notice::ACCOUNT_FREEZE, None, Some(&principal), &payload, now).await?;
                    }
                    append_event(ctx, &id, &subject, "claim.decided", Some("submitted"), state, &actor, serde_json::json!({ "accounts": accounts.len() }), now).await?;
                    append_event(ctx, &id, &subject, "claim.documents_destroyed", Some(state), state, "worker", serde_json::json!({ "documents": n }), now).await?;
                    Ok(true)
                })
            })
            .await
    }
}
