//! The platform's systems, connected from the data map: SQL databases,
//! Redis, HTTP services and manual tasks, each behind its connector, with a
//! limit on concurrent erasures per system.

use lethe_connect::http::{HttpErase, HttpSystem, ManualSystem};
use lethe_connect::redis_conn::RedisSystem;
use lethe_connect::{BatchItem, ConnectError, DataMap, Kind, SqlSystem, SystemOutcome};
use lethe_domain::{Blocker, Consequence, SubjectId};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Semaphore;

use crate::http::problem::Problem;

/// One system's connector.
pub enum Connector {
    Sql(Box<SqlSystem>),
    Redis(RedisSystem),
    Http(HttpSystem),
    Manual(ManualSystem),
    /// A service that erases on the `erasure_requested` case event and
    /// acknowledges through the API (`POST /v1/erasures/{case}/{system}`).
    Event,
}

/// What an erasure in one system came to.
#[derive(Debug, Clone)]
pub enum Erased {
    /// Erased and verified.
    Done(SystemOutcome),
    /// The HTTP service accepted; its signed callback completes the job.
    AwaitingCallback,
    /// An operator must do it: a manual task.
    Manual { instructions: String, due_days: u32 },
}

pub struct Systems {
    by_name: BTreeMap<String, Connector>,
    /// Erasures running at once per system.
    limits: BTreeMap<String, Arc<Semaphore>>,
}

impl std::fmt::Debug for Systems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}

impl From<ConnectError> for Problem {
    fn from(e: ConnectError) -> Self {
        tracing::warn!(error = %e, "platform system error");
        Problem::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "platform-system",
            "A platform system failed",
            e.to_string(),
        )
        .fix("retry later; an operator can see the system's state in the logs")
    }
}

impl Systems {
    /// Connects to every system of the data map, with URLs and secrets from
    /// the environment.
    pub async fn connect(map: &DataMap, http: reqwest::Client) -> Result<Self, ConnectError> {
        let mut by_name = BTreeMap::new();
        let mut limits = BTreeMap::new();
        for s in &map.systems {
            let c = match s.kind {
                Kind::Sqlite | Kind::Postgres | Kind::Mysql => {
                    Connector::Sql(Box::new(SqlSystem::connect_from_env(s).await?))
                }
                Kind::Redis => Connector::Redis(RedisSystem::connect_from_env(s).await?),
                Kind::Http => Connector::Http(HttpSystem::from_env(s, http.clone())?),
                Kind::Manual => Connector::Manual(ManualSystem::new(s)),
                Kind::Event => Connector::Event,
            };
            by_name.insert(s.name.to_string(), c);
            limits.insert(
                s.name.to_string(),
                Arc::new(Semaphore::new(s.concurrency as usize)),
            );
        }
        Ok(Self { by_name, limits })
    }

    /// Systems from SQL connectors already connected (benchmarks, tools),
    /// one erasure batch at a time each.
    pub fn from_sql(list: Vec<SqlSystem>) -> Self {
        let mut by_name = BTreeMap::new();
        let mut limits = BTreeMap::new();
        for s in list {
            limits.insert(s.name().to_owned(), Arc::new(Semaphore::new(1)));
            by_name.insert(s.name().to_owned(), Connector::Sql(Box::new(s)));
        }
        Self { by_name, limits }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    pub fn get(&self, name: &str) -> Option<&Connector> {
        self.by_name.get(name)
    }

    /// A SQL system by name.
    pub fn sql(&self, name: &str) -> Option<&SqlSystem> {
        match self.by_name.get(name) {
            Some(Connector::Sql(s)) => Some(&**s),
            _ => None,
        }
    }

    fn sqls(&self) -> impl Iterator<Item = &SqlSystem> {
        self.by_name.values().filter_map(|c| match c {
            Connector::Sql(s) => Some(&**s),
            _ => None,
        })
    }

    /// An HTTP system by name (for its callbacks).
    pub fn http(&self, name: &str) -> Option<&HttpSystem> {
        match self.by_name.get(name) {
            Some(Connector::Http(s)) => Some(s),
            _ => None,
        }
    }

    /// Subjects one erasure batch may hold in this system (1 unless SQL).
    pub fn batch_size(&self, name: &str) -> usize {
        self.sql(name).map(|s| s.batch_size()).unwrap_or(1)
    }

    pub async fn subject_exists(&self, subject: &SubjectId) -> Result<bool, ConnectError> {
        for s in self.sqls() {
            if s.subject_exists(subject).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub async fn phone(&self, subject: &SubjectId) -> Result<Option<String>, ConnectError> {
        for s in self.sqls() {
            if let Some(p) = s.phone(subject).await? {
                return Ok(Some(p));
            }
        }
        Ok(None)
    }

    /// The subject's identifiers (kind, value) across systems.
    pub async fn identifiers(
        &self,
        subject: &SubjectId,
    ) -> Result<Vec<(String, String)>, ConnectError> {
        let mut out = vec![];
        for s in self.sqls() {
            out.extend(s.identifiers(subject).await?);
        }
        Ok(out)
    }

    pub async fn accounts_with_id_number(
        &self,
        id_number: &str,
    ) -> Result<Vec<String>, ConnectError> {
        let mut out = vec![];
        for s in self.sqls() {
            out.extend(s.accounts_with_id_number(id_number).await?);
        }
        Ok(out)
    }

    pub async fn accounts_with_phone(&self, phone: &str) -> Result<Vec<String>, ConnectError> {
        let mut out = vec![];
        for s in self.sqls() {
            out.extend(s.accounts_with_phone(phone).await?);
        }
        Ok(out)
    }

    /// Assets from the data map's SQL rules.
    pub async fn assets(
        &self,
        map: &DataMap,
        subject: &SubjectId,
    ) -> Result<Vec<lethe_domain::asset::Asset>, ConnectError> {
        let mut out = vec![];
        for rule in &map.assets {
            if let Some(sys) = self.sql(rule.system.as_str()) {
                out.extend(sys.assets(rule, subject).await?);
            }
        }
        Ok(out)
    }

    /// Runs the blocker rules and builds the consequence statements.
    pub async fn checks(
        &self,
        map: &DataMap,
        subject: &SubjectId,
    ) -> Result<(Vec<Blocker>, Vec<Consequence>), ConnectError> {
        let mut blockers = Vec::new();
        for rule in &map.blockers {
            if let Some(sys) = self.sql(rule.system.as_str())
                && let Some(b) = sys.blocker(rule, subject).await?
            {
                blockers.push(b);
            }
        }
        let mut consequences = Vec::new();
        for c in &map.consequences {
            let value = match (&c.system, &c.query) {
                (Some(sys), Some(q)) => match self.sql(sys.as_str()) {
                    Some(s) => match s.value(q, subject).await? {
                        Some(v) => Some(v),
                        None => continue,
                    },
                    None => continue,
                },
                _ => None,
            };
            let fill = |t: &str| match &value {
                Some(v) => t.replace("{value}", v),
                None => t.to_owned(),
            };
            consequences.push(Consequence {
                id: c.id.to_string(),
                version: c.version,
                text_zh: fill(&c.text_zh),
                text_en: fill(&c.text_en),
            });
        }
        Ok((blockers, consequences))
    }

    /// Erases a batch of subjects (cases) in one system, under the
    /// system's concurrency limit, and verifies. SQL systems take the batch
    /// in set-based statements; other systems one case at a time. The
    /// outcome of each case, in order.
    pub async fn erase_batch(
        &self,
        system: &str,
        items: &[BatchItem],
        now: jiff::Timestamp,
        callback_url: Option<&str>,
    ) -> Result<Vec<Erased>, String> {
        let s = self
            .by_name
            .get(system)
            .ok_or_else(|| format!("system {system} is not in the data map any more"))?;
        let _permit = match self.limits.get(system) {
            Some(l) => Some(l.acquire().await.map_err(|_| "shutting down".to_owned())?),
            None => None,
        };
        match s {
            Connector::Sql(sql) => Ok(sql
                .erase_verify_batch(items, now)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|(_, o)| Erased::Done(o))
                .collect()),
            Connector::Redis(r) => {
                let mut out = vec![];
                for it in items {
                    let o = r
                        .erase(&it.case_id, &it.subject)
                        .await
                        .map_err(|e| e.to_string())?;
                    out.push(Erased::Done(
                        r.verify(&it.subject, o).await.map_err(|e| e.to_string())?,
                    ));
                }
                Ok(out)
            }
            Connector::Http(h) => {
                let mut out = vec![];
                for it in items {
                    out.push(
                        match h
                            .erase(&it.case_id, &it.subject, callback_url)
                            .await
                            .map_err(|e| e.to_string())?
                        {
                            HttpErase::Done(o) => Erased::Done(o),
                            HttpErase::Pending => Erased::AwaitingCallback,
                        },
                    );
                }
                Ok(out)
            }
            // The case event went out with the erasure's start; the job
            // waits for the service's acknowledgement like a callback.
            Connector::Event => Ok(items.iter().map(|_| Erased::AwaitingCallback).collect()),
            Connector::Manual(m) => Ok(items
                .iter()
                .map(|_| Erased::Manual {
                    instructions: m.instructions.clone(),
                    due_days: m.due_days,
                })
                .collect()),
        }
    }

    /// Streams the subject ids a system holds into `tx` (chunks of about
    /// `chunk`), for reapply after a restore. SQL, Redis and HTTP systems
    /// list them; manual and event systems cannot.
    pub async fn scan_subjects(
        &self,
        system: &str,
        chunk: usize,
        tx: tokio::sync::mpsc::Sender<Vec<String>>,
    ) -> Result<u64, String> {
        let s = self
            .by_name
            .get(system)
            .ok_or_else(|| format!("system {system} is not in the data map"))?;
        match s {
            Connector::Sql(sql) => sql.scan_subjects(chunk, tx).await,
            Connector::Redis(r) => r.scan_subjects(chunk, tx).await,
            Connector::Http(h) => h.scan_subjects(chunk, tx).await,
            Connector::Manual(_) | Connector::Event => {
                return Err(format!(
                    "system {system} cannot list its subjects (a manual or event system): after a restore there, erase again by hand from the erased cases' receipts"
                ));
            }
        }
        .map_err(|e| e.to_string())
    }

    /// Purges kept rows whose retention ended, in every SQL system.
    pub async fn purge_expired(
        &self,
        now: jiff::Timestamp,
    ) -> Vec<(String, Result<Vec<(String, String, u64)>, String>)> {
        let mut out = vec![];
        for s in self.sqls() {
            out.push((
                s.name().to_owned(),
                s.purge_expired(now, 100).await.map_err(|e| e.to_string()),
            ));
        }
        out
    }
}
