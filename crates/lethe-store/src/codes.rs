//! One-time codes (SMS, restore): issued hashed, tried a bounded number of times.

use super::*;

/// What a one-time code proves: the identity at the start of a case, or the
/// holder's wish to restore the account during cooling-off (one verified step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodePurpose {
    Verify,
    Restore,
}

impl Store {
    // -------------------------------------------------------- one-time codes

    /// Stores a fresh code (hashed) and the message for the SMS gateway, and
    /// audits the sending. Refuses while a lockout or the resend interval runs.
    /// Wrong attempts count per case across resends: a new code does not
    /// give new attempts (only a lockout served does).
    #[allow(clippy::too_many_arguments)]
    pub async fn send_code(
        &self,
        id: CaseId,
        code_hash: String,
        message: OutboxDraft,
        now: Timestamp,
        ttl: jiff::SignedDuration,
        resend_after: jiff::SignedDuration,
        actor: String,
        idem: Option<Idem>,
    ) -> Result<Case, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    claim_idem(ctx, idem.as_ref()).await?;
                    let (case, pseudo) = load_case_and_pseudonym(ctx, id).await?;
                    if !matches!(case.state, CaseState::Submitted | CaseState::CoolingOff) {
                        return Err(TransitionError::Illegal { command: "send a code for", state: case.state, next: case.state.next_step() }.into());
                    }
                    let prev = sqlx::query("SELECT sent_at, locked_until, lockouts FROM otp_codes WHERE case_id = $1")
                        .bind(id.to_string())
                        .fetch_optional(ctx.conn().await?)
                        .await
                        .map_err(db("read code"))?;
                    let mut lockouts = 0i64;
                    if let Some(p) = prev {
                        let sent_at = from_ms(p.get(0));
                        if let Some(lu) = p.get::<Option<i64>, _>(1).map(from_ms)
                            && lu > now
                        {
                            return Err(StoreError::CodeLocked { until: lu });
                        }
                        lockouts = p.get(2);
                        let next_ok = sent_at.checked_add(resend_after).unwrap_or(sent_at);
                        if next_ok > now {
                            return Err(StoreError::ResendTooSoon { wait_secs: (next_ok.as_second() - now.as_second()).max(1) });
                        }
                    }
                    sqlx::query(
                        "INSERT INTO otp_codes (case_id, code_hash, expires_at, attempts, lockouts, locked_until, sent_at) VALUES ($1, $2, $3, 0, $4, NULL, $5)
                         ON CONFLICT (case_id) DO UPDATE SET code_hash = excluded.code_hash, expires_at = excluded.expires_at,
                           attempts = CASE WHEN otp_codes.locked_until IS NULL THEN otp_codes.attempts ELSE 0 END,
                           locked_until = NULL, sent_at = excluded.sent_at",
                    )
                    .bind(id.to_string())
                    .bind(code_hash)
                    .bind(ms(now.checked_add(ttl).unwrap_or(now)))
                    .bind(lockouts)
                    .bind(ms(now))
                    .execute(ctx.conn().await?)
                    .await
                    .map_err(db("store code"))?;
                    sqlx::query("INSERT INTO outbox (case_id, channel, destination, body, created_at) VALUES ($1, $2, $3, $4, $5)")
                        .bind(id.to_string())
                        .bind(message.channel)
                        .bind(message.destination)
                        .bind(message.body)
                        .bind(ms(now))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("queue message"))?;
                    let change = Change {
                        kind: "case.code_sent".into(),
                        from: Some(case.state),
                        to: case.state,
                        at: now,
                        detail: serde_json::json!({ "channel": "sms" }),
                    };
                    append_audit(ctx, &case, &pseudo, &change, &actor).await?;
                    finish_idem(ctx, idem.as_ref(), &case).await?;
                    Ok(case)
                })
            })
            .await
    }

    /// Checks a code in constant time. A wrong code is counted (and the count
    /// committed); after `max_attempts` wrong codes the code is locked for a
    /// period that doubles with each lockout. A right code is consumed and
    /// verifies the identity, in the same transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn verify_code(
        &self,
        id: CaseId,
        purpose: CodePurpose,
        candidate_hash: String,
        now: Timestamp,
        max_attempts: u32,
        base_lockout: jiff::SignedDuration,
        actor: String,
        idem: Option<Idem>,
    ) -> Result<Case, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    claim_idem(ctx, idem.as_ref()).await?;
                    let (case, pseudo) = load_case_and_pseudonym(ctx, id).await?;
                    let (expected, then) = match purpose {
                        CodePurpose::Verify => (CaseState::Submitted, CaseCommand::VerifyIdentity { method: "sms_code".into(), level: lethe_domain::AssuranceLevel::PHONE }),
                        CodePurpose::Restore => (CaseState::CoolingOff, CaseCommand::Withdraw),
                    };
                    if case.state != expected {
                        let command = match purpose {
                            CodePurpose::Verify => "verify a code for",
                            CodePurpose::Restore => "restore with a code",
                        };
                        return Err(TransitionError::Illegal { command, state: case.state, next: case.state.next_step() }.into());
                    }
                    let row = sqlx::query("SELECT code_hash, expires_at, attempts, lockouts, locked_until FROM otp_codes WHERE case_id = $1")
                        .bind(id.to_string())
                        .fetch_optional(ctx.conn().await?)
                        .await
                        .map_err(db("read code"))?
                        .ok_or(StoreError::NoCode)?;
                    let stored: String = row.get(0);
                    let expires_at = from_ms(row.get(1));
                    let attempts: i64 = row.get(2);
                    let lockouts: i64 = row.get(3);
                    if let Some(lu) = row.get::<Option<i64>, _>(4).map(from_ms) {
                        if lu > now {
                            return Err(StoreError::CodeLocked { until: lu });
                        }
                        // A lockout that ended leaves no usable code.
                        return Err(StoreError::NoCode);
                    }
                    if now > expires_at {
                        return Err(StoreError::CodeExpired);
                    }
                    let ok: bool = subtle::ConstantTimeEq::ct_eq(stored.as_bytes(), candidate_hash.as_bytes()).into();
                    if !ok {
                        let attempts = attempts + 1;
                        if attempts >= i64::from(max_attempts) {
                            let factor = 1i64 << lockouts.clamp(0, 10);
                            let until = now
                                .checked_add(jiff::SignedDuration::from_secs(base_lockout.as_secs().saturating_mul(factor)))
                                .unwrap_or(now);
                            sqlx::query("UPDATE otp_codes SET attempts = $1, lockouts = lockouts + 1, locked_until = $2 WHERE case_id = $3")
                                .bind(attempts)
                                .bind(ms(until))
                                .bind(id.to_string())
                                .execute(ctx.conn().await?)
                                .await
                                .map_err(db("lock code"))?;
                            let change = Change { kind: "case.code_locked".into(), from: Some(case.state), to: case.state, at: now, detail: serde_json::json!({ "attempts": attempts }) };
                            append_audit(ctx, &case, &pseudo, &change, &actor).await?;
                            return Err(StoreError::CodeLocked { until });
                        }
                        sqlx::query("UPDATE otp_codes SET attempts = $1 WHERE case_id = $2")
                            .bind(attempts)
                            .bind(id.to_string())
                            .execute(ctx.conn().await?)
                            .await
                            .map_err(db("count attempt"))?;
                        let left = u32::try_from(i64::from(max_attempts) - attempts).unwrap_or(0);
                        return Err(StoreError::WrongCode { attempts_left: left });
                    }
                    sqlx::query("DELETE FROM otp_codes WHERE case_id = $1")
                        .bind(id.to_string())
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("consume code"))?;
                    let case = apply_in(ctx, id, &then, now, &actor).await?;
                    finish_idem(ctx, idem.as_ref(), &case).await?;
                    Ok(case)
                })
            })
            .await
    }

    /// Messages queued for a case (the dev outbox in demo mode).
    pub async fn outbox_for(&self, id: CaseId) -> Result<Vec<OutboxMessage>, StoreError> {
        let rows = sqlx::query("SELECT id, case_id, channel, destination, body, created_at FROM outbox WHERE case_id = $1 ORDER BY id")
            .bind(id.to_string())
            .fetch_all(&self.read)
            .await
            .map_err(db("read outbox"))?;
        Ok(rows
            .iter()
            .map(|r| OutboxMessage {
                id: r.get(0),
                case_id: r.get(1),
                channel: r.get(2),
                destination: r.get(3),
                body: r.get(4),
                created_at: from_ms(r.get(5)),
            })
            .collect())
    }
}
