//! Agent accounts, console sessions and inbound callback ids.

use jiff::Timestamp;
use sqlx::Row;

use crate::{Store, StoreError, db, from_ms, ms};

#[derive(Debug, Clone)]
pub struct AgentRow {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub totp_secret: String,
    pub role: String,
    pub disabled: bool,
    pub failed_logins: u32,
    pub locked_until: Option<Timestamp>,
    pub last_totp_step: Option<u64>,
    /// The platform the agent serves; None for installation staff.
    pub platform: Option<String>,
}

impl Store {
    pub async fn insert_agent(
        &self,
        id: String,
        username: String,
        password_hash: String,
        totp_secret: String,
        role: String,
        platform: Option<String>,
    ) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO agents (id, username, password_hash, totp_secret, role, created_at, platform) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                        .bind(id)
                        .bind(username)
                        .bind(password_hash)
                        .bind(totp_secret)
                        .bind(role)
                        .bind(ms(crate::now_wall()))
                        .bind(platform)
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(|e| match &e {
                            sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Db { action: "create agent", message: "the username is taken".into() },
                            _ => db("create agent")(e),
                        })?;
                    Ok(())
                })
            })
            .await
    }

    pub async fn agent_by_username(&self, username: &str) -> Result<Option<AgentRow>, StoreError> {
        let r = sqlx::query("SELECT id, username, password_hash, totp_secret, role, disabled, failed_logins, locked_until, last_totp_step, platform FROM agents WHERE username = $1")
            .bind(username.to_owned())
            .fetch_optional(&self.read)
            .await
            .map_err(db("read agent"))?;
        Ok(r.map(|r| AgentRow {
            id: r.get(0),
            username: r.get(1),
            password_hash: r.get(2),
            totp_secret: r.get(3),
            role: r.get(4),
            disabled: r.get::<i64, _>(5) != 0,
            failed_logins: u32::try_from(r.get::<i64, _>(6)).unwrap_or(u32::MAX),
            locked_until: r.get::<Option<i64>, _>(7).map(from_ms),
            last_totp_step: r
                .get::<Option<i64>, _>(8)
                .and_then(|v| u64::try_from(v).ok()),
            platform: r.get(9),
        }))
    }

    /// Records a failed login; after `max` failures the account is locked
    /// for a period that doubles with each further failure.
    pub async fn login_failed(
        &self,
        agent_id: String,
        max: u32,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let n: i64 = sqlx::query_scalar("UPDATE agents SET failed_logins = failed_logins + 1 WHERE id = $1 RETURNING failed_logins")
                        .bind(agent_id.clone())
                        .fetch_one(ctx.conn().await?)
                        .await
                        .map_err(db("count failed login"))?;
                    if n >= i64::from(max) {
                        // A backoff, not a lockout: from any address at most
                        // a minute, so no one can lock an agent out at will
                        // (the long lockout is per address, login_throttle).
                        let secs = 1i64 << (n - i64::from(max)).clamp(0, 6);
                        let until = now.checked_add(jiff::SignedDuration::from_secs(secs)).unwrap_or(now);
                        sqlx::query("UPDATE agents SET locked_until = $1 WHERE id = $2").bind(ms(until)).bind(agent_id).execute(ctx.conn().await?).await.map_err(db("lock agent"))?;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// A successful login: resets failures, records the TOTP step used (a
    /// code is accepted once) and stores the session (hashed).
    pub async fn login_succeeded(
        &self,
        agent_id: String,
        role: String,
        totp_step: u64,
        token_hash: String,
        expires: Timestamp,
    ) -> Result<bool, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let n = sqlx::query("UPDATE agents SET failed_logins = 0, locked_until = NULL, last_totp_step = $1 WHERE id = $2 AND (last_totp_step IS NULL OR last_totp_step < $1)")
                        .bind(i64::try_from(totp_step).unwrap_or(i64::MAX))
                        .bind(agent_id.clone())
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("record login"))?
                        .rows_affected();
                    if n == 0 {
                        return Ok(false);
                    }
                    sqlx::query("INSERT INTO console_sessions (token_hash, agent_id, role, expires_at) VALUES ($1, $2, $3, $4)")
                        .bind(token_hash)
                        .bind(agent_id)
                        .bind(role)
                        .bind(ms(expires))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("store session"))?;
                    Ok(true)
                })
            })
            .await
    }

    /// Ends a console session (sign-out): the token stops working at once.
    pub async fn end_console_session(&self, token_hash: String) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    sqlx::query("DELETE FROM console_sessions WHERE token_hash = $1")
                        .bind(token_hash)
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("end session"))?;
                    Ok(())
                })
            })
            .await
    }

    /// The live session with this token hash: (agent id, role, platform).
    pub async fn console_session(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<(String, String, Option<String>)>, StoreError> {
        let r = sqlx::query("SELECT s.agent_id, s.role, a.platform FROM console_sessions s JOIN agents a ON a.id = s.agent_id WHERE s.token_hash = $1 AND s.expires_at > $2 AND a.disabled = 0")
            .bind(token_hash.to_owned())
            .bind(ms(now))
            .fetch_optional(&self.read)
            .await
            .map_err(db("read session"))?;
        Ok(r.map(|r| (r.get(0), r.get(1), r.get(2))))
    }

    /// Records an inbound callback id; false if it was seen before (replay).
    pub async fn first_callback(&self, id: String, now: Timestamp) -> Result<bool, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    sqlx::query("DELETE FROM callback_ids WHERE seen_at < $1").bind(ms(now) - 86_400_000).execute(ctx.conn().await?).await.map_err(db("expire callback ids"))?;
                    let n = sqlx::query("INSERT INTO callback_ids (id, seen_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
                        .bind(id)
                        .bind(ms(now))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("record callback id"))?
                        .rows_affected();
                    Ok(n == 1)
                })
            })
            .await
    }
}

/// Failed sign-ins from one address within the window before it must wait.
pub const ADDRESS_FAILURES: i64 = 20;
/// The window of the per-address count, in seconds.
pub const ADDRESS_WINDOW_SECS: i64 = 900;
/// Failures on one account from one address before that address is locked
/// out of that account (doubling from one minute).
pub const ACCOUNT_ADDRESS_FAILURES: i64 = 5;

impl Store {
    /// Until when a sign-in from this address (`addr`: a keyed hash), or for
    /// this account from it, must wait; None if it may go ahead.
    pub async fn login_throttled(
        &self,
        addr: &str,
        agent_id: Option<&str>,
        now: Timestamp,
    ) -> Result<Option<Timestamp>, StoreError> {
        let mut keys = vec![format!("addr:{addr}")];
        if let Some(a) = agent_id {
            keys.push(format!("acct:{a}:{addr}"));
        }
        let mut until: Option<i64> = None;
        for k in keys {
            let t: Option<Option<i64>> =
                sqlx::query_scalar("SELECT locked_until FROM login_throttle WHERE key = $1")
                    .bind(k)
                    .fetch_optional(&self.read)
                    .await
                    .map_err(db("read sign-in throttle"))?;
            if let Some(Some(t)) = t
                && t > ms(now)
            {
                until = Some(until.map_or(t, |u| u.max(t)));
            }
        }
        Ok(until.map(from_ms))
    }

    /// Counts a failed sign-in from `addr` (for `agent_id`, when the
    /// username exists).
    pub async fn login_throttle_failed(
        &self,
        addr: String,
        agent_id: Option<String>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let now = ms(now);
                    let key = format!("addr:{addr}");
                    let row: Option<(i64, i64)> = sqlx::query_as(
                        "SELECT failures, window_start FROM login_throttle WHERE key = $1",
                    )
                    .bind(key.clone())
                    .fetch_optional(ctx.conn().await?)
                    .await
                    .map_err(db("read sign-in throttle"))?;
                    let (n, start) = match row {
                        Some((n, s)) if now - s < ADDRESS_WINDOW_SECS * 1000 => (n + 1, s),
                        _ => (1, now),
                    };
                    let locked =
                        (n >= ADDRESS_FAILURES).then_some(start + ADDRESS_WINDOW_SECS * 1000);
                    upsert_throttle(ctx, key, n, start, locked).await?;
                    if let Some(a) = agent_id {
                        let key = format!("acct:{a}:{addr}");
                        let n: i64 = sqlx::query_scalar(
                            "SELECT failures FROM login_throttle WHERE key = $1",
                        )
                        .bind(key.clone())
                        .fetch_optional(ctx.conn().await?)
                        .await
                        .map_err(db("read sign-in throttle"))?
                        .unwrap_or(0)
                            + 1;
                        let locked = (n >= ACCOUNT_ADDRESS_FAILURES).then(|| {
                            now + 60_000 * (1i64 << (n - ACCOUNT_ADDRESS_FAILURES).clamp(0, 10))
                        });
                        upsert_throttle(ctx, key, n, now, locked).await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// A successful sign-in clears the account's count from that address.
    pub async fn login_throttle_cleared(
        &self,
        addr: String,
        agent_id: String,
    ) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    sqlx::query("DELETE FROM login_throttle WHERE key = $1")
                        .bind(format!("acct:{agent_id}:{addr}"))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("clear sign-in throttle"))?;
                    Ok(())
                })
            })
            .await
    }
}

async fn upsert_throttle(
    ctx: &mut crate::WriteCtx,
    key: String,
    failures: i64,
    window_start: i64,
    locked_until: Option<i64>,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO login_throttle (key, failures, window_start, locked_until) VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO UPDATE SET failures = $2, window_start = $3, locked_until = $4")
        .bind(key)
        .bind(failures)
        .bind(window_start)
        .bind(locked_until)
        .execute(ctx.conn().await?)
        .await
        .map_err(db("count failed sign-in"))?;
    Ok(())
}

impl Store {
    /// Records that a user session was signed out (until it would expire).
    pub async fn sign_out(&self, sid: String, until: Timestamp) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO signed_out (sid, until_at) VALUES ($1, $2) ON CONFLICT (sid) DO NOTHING")
                        .bind(sid)
                        .bind(ms(until))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("sign out"))?;
                    Ok(())
                })
            })
            .await
    }

    pub async fn signed_out(&self, sid: &str) -> Result<bool, StoreError> {
        let n: Option<i64> = sqlx::query_scalar("SELECT 1 FROM signed_out WHERE sid = $1")
            .bind(sid.to_owned())
            .fetch_optional(&self.read)
            .await
            .map_err(db("read signed-out sessions"))?;
        Ok(n.is_some())
    }

    /// Forgets signed-out sessions that have expired anyway, and sign-in
    /// counts whose lock and window are over.
    pub async fn purge_sessions(&self, now: Timestamp) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    sqlx::query("DELETE FROM signed_out WHERE until_at < $1")
                        .bind(ms(now))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("purge signed-out sessions"))?;
                    sqlx::query("DELETE FROM login_throttle WHERE (locked_until IS NULL OR locked_until < $1) AND window_start < $2")
                        .bind(ms(now))
                        .bind(ms(now) - ADDRESS_WINDOW_SECS * 1000)
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("purge sign-in counts"))?;
                    Ok(())
                })
            })
            .await
    }
}

/// An instance is live if it was seen within this many milliseconds.
const INSTANCE_LIVE_MS: i64 = 15_000;

impl Store {
    /// This instance is alive; returns how many instances are (itself
    /// included).
    pub async fn instance_alive(&self, now: Timestamp) -> Result<u32, StoreError> {
        let id = self.instance().to_owned();
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO instances (id, seen_at) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET seen_at = $2")
                        .bind(id)
                        .bind(ms(now))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("record instance"))?;
                    sqlx::query("DELETE FROM instances WHERE seen_at < $1")
                        .bind(ms(now) - 10 * INSTANCE_LIVE_MS)
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("forget instances"))?;
                    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM instances WHERE seen_at >= $1")
                        .bind(ms(now) - INSTANCE_LIVE_MS)
                        .fetch_one(ctx.conn().await?)
                        .await
                        .map_err(db("count instances"))?;
                    Ok(u32::try_from(n).unwrap_or(u32::MAX).max(1))
                })
            })
            .await
    }

    /// Codes sent under a quota key since `since`, and when the oldest of
    /// them was sent.
    pub async fn sms_quota(
        &self,
        key: &str,
        since: Timestamp,
    ) -> Result<(u32, Option<Timestamp>), StoreError> {
        let r: (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), MIN(sent_at) FROM sms_sent WHERE quota_key = $1 AND sent_at >= $2",
        )
        .bind(key.to_owned())
        .bind(ms(since))
        .fetch_one(&self.read)
        .await
        .map_err(db("read SMS quota"))?;
        Ok((u32::try_from(r.0).unwrap_or(u32::MAX), r.1.map(from_ms)))
    }

    /// Counts a code sent against each quota key; forgets codes older than
    /// `forget_before`.
    pub async fn sms_sent(
        &self,
        keys: Vec<String>,
        at: Timestamp,
        forget_before: Timestamp,
    ) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    for k in keys {
                        sqlx::query("INSERT INTO sms_sent (quota_key, sent_at) VALUES ($1, $2)")
                            .bind(k)
                            .bind(ms(at))
                            .execute(ctx.conn().await?)
                            .await
                            .map_err(db("count SMS sent"))?;
                    }
                    sqlx::query("DELETE FROM sms_sent WHERE sent_at < $1")
                        .bind(ms(forget_before))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("forget SMS sent"))?;
                    Ok(())
                })
            })
            .await
    }
}
