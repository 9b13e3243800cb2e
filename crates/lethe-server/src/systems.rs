//! The platform's systems, connected from the data map.

use lethe_connect::{ConnectError, DataMap, SqliteSystem, SystemOutcome};
use lethe_domain::{Blocker, Consequence, SubjectId};
use std::collections::BTreeMap;

use crate::problem::Problem;

pub struct Systems {
    by_name: BTreeMap<String, SqliteSystem>,
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
    /// Connects to every system of the data map, with URLs from the environment.
    pub async fn connect(map: &DataMap) -> Result<Self, ConnectError> {
        let mut by_name = BTreeMap::new();
        for s in &map.systems {
            by_name.insert(s.name.to_string(), SqliteSystem::connect_from_env(s).await?);
        }
        Ok(Self { by_name })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    pub fn get(&self, name: &str) -> Option<&SqliteSystem> {
        self.by_name.get(name)
    }

    pub async fn subject_exists(&self, subject: &SubjectId) -> Result<bool, ConnectError> {
        for s in self.by_name.values() {
            if s.subject_exists(subject).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub async fn phone(&self, subject: &SubjectId) -> Result<Option<String>, ConnectError> {
        for s in self.by_name.values() {
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
        for s in self.by_name.values() {
            out.extend(s.identifiers(subject).await?);
        }
        Ok(out)
    }

    pub async fn accounts_with_id_number(
        &self,
        id_number: &str,
    ) -> Result<Vec<String>, ConnectError> {
        let mut out = vec![];
        for s in self.by_name.values() {
            out.extend(s.accounts_with_id_number(id_number).await?);
        }
        Ok(out)
    }

    pub async fn accounts_with_phone(&self, phone: &str) -> Result<Vec<String>, ConnectError> {
        let mut out = vec![];
        for s in self.by_name.values() {
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
            if let Some(sys) = self.by_name.get(rule.system.as_str()) {
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
            if let Some(sys) = self.by_name.get(rule.system.as_str())
                && let Some(b) = sys.blocker(rule, subject).await?
            {
                blockers.push(b);
            }
        }
        let mut consequences = Vec::new();
        for c in &map.consequences {
            let value = match (&c.system, &c.query) {
                (Some(sys), Some(q)) => match self.by_name.get(sys.as_str()) {
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

    pub async fn erase(
        &self,
        system: &str,
        case_id: &str,
        subject: &SubjectId,
        now: jiff::Timestamp,
    ) -> Result<SystemOutcome, String> {
        let s = self
            .by_name
            .get(system)
            .ok_or_else(|| format!("system {system} is not in the data map any more"))?;
        let out = s
            .erase(case_id, subject, now)
            .await
            .map_err(|e| e.to_string())?;
        s.verify(case_id, subject, out)
            .await
            .map_err(|e| e.to_string())
    }
}
