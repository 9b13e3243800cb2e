//! Agents' identity checks of a case: failures recorded in the audit log.

use super::*;

/// The audit event of a failed hotline or counter check.
pub const IDENTITY_CHECK_FAILED: &str = "case.identity_check_failed";

impl Store {
    // ------------------------------------------------ agents' identity checks

    /// Records a failed hotline or counter check as an audit event of the
    /// case (`case.identity_check_failed`, actor the agent, detail the
    /// method only: never what was said), whatever state the case is in.
    pub async fn record_identity_failure(
        &self,
        id: CaseId,
        method: &'static str,
        actor: String,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let (case, pseudo) = load_case_and_pseudonym(ctx, id).await?;
                    let change = Change {
                        kind: IDENTITY_CHECK_FAILED.into(),
                        from: Some(case.state),
                        to: case.state,
                        at: now,
                        detail: serde_json::json!({ "method": method }),
                    };
                    append_audit(ctx, &case, &pseudo, &change, &actor).await
                })
            })
            .await
    }

    /// Failed identity checks since `since`: on this case, and by this
    /// agent on any case. Read from the audit log, so every instance sees
    /// the same counts.
    pub async fn identity_failures(
        &self,
        id: CaseId,
        actor: &str,
        since: Timestamp,
    ) -> Result<(u32, u32), StoreError> {
        let since = since.to_string();
        let count = |r: Option<i64>| u32::try_from(r.unwrap_or(0)).unwrap_or(u32::MAX);
        let on_case: Option<i64> = sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit_entries WHERE case_id = $1 AND kind = $2 AND at >= $3",
        )
        .bind(id.to_string())
        .bind(IDENTITY_CHECK_FAILED)
        .bind(since.clone())
        .fetch_one(&self.read)
        .await
        .map_err(db("count identity check failures"))?;
        // The kind as a literal: the partial index on these events serves.
        let by_agent: Option<i64> = sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit_entries WHERE actor = $1 AND kind = 'case.identity_check_failed' AND at >= $2",
        )
        .bind(actor.to_owned())
        .bind(since)
        .fetch_one(&self.read)
        .await
        .map_err(db("count identity check failures"))?;
        Ok((count(on_case), count(by_agent)))
    }
}
