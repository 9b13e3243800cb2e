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
                        .execute(&mut ctx.conn)
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
                        .fetch_one(&mut ctx.conn)
                        .await
                        .map_err(db("count failed login"))?;
                    if n >= i64::from(max) {
                        let mins = 1i64 << (n - i64::from(max)).clamp(0, 10);
                        let until = now.checked_add(jiff::SignedDuration::from_mins(mins)).unwrap_or(now);
                        sqlx::query("UPDATE agents SET locked_until = $1 WHERE id = $2").bind(ms(until)).bind(agent_id).execute(&mut ctx.conn).await.map_err(db("lock agent"))?;
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
                        .execute(&mut ctx.conn)
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
                        .execute(&mut ctx.conn)
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
                        .execute(&mut ctx.conn)
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
                    sqlx::query("DELETE FROM callback_ids WHERE seen_at < $1").bind(ms(now) - 86_400_000).execute(&mut ctx.conn).await.map_err(db("expire callback ids"))?;
                    let n = sqlx::query("INSERT INTO callback_ids (id, seen_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
                        .bind(id)
                        .bind(ms(now))
                        .execute(&mut ctx.conn)
                        .await
                        .map_err(db("record callback id"))?
                        .rows_affected();
                    Ok(n == 1)
                })
            })
            .await
    }
}
