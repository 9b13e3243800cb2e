//! Signed HTTP: the Standard Webhooks signature (`webhook-id`,
//! `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "{id}.{timestamp}.{body}">` under a `whsec_` secret), signed calls whose
//! answers must be signed too, and the HTTP-service connector built on them.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use std::time::Duration;

use crate::datamap::{HttpMode, System};
use crate::{ConnectError, SystemOutcome, TableOutcome};
use lethe_domain::SubjectId;

/// Answers older or newer than this are refused (replay window).
pub const REPLAY_WINDOW_SECS: i64 = 300;
/// Largest answer read from a service.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// Items one service may report.
const MAX_ITEMS: usize = 256;

/// The secret's key bytes: the base64 after `whsec_` (or the raw string).
pub fn secret_bytes(secret: &str) -> Vec<u8> {
    match secret.strip_prefix("whsec_") {
        Some(b) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .unwrap_or_else(|_| b.as_bytes().to_vec()),
        None => secret.as_bytes().to_vec(),
    }
}

/// The signature header for a secret setting that may hold two secrets
/// separated by a space during a rotation: one `v1,...` per secret, so the
/// receiver may check either (new first, then old).
pub fn sign_all(secrets: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .split_whitespace()
        .take(2)
        .map(|s| sign(&secret_bytes(s), id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length: this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(id.as_bytes());
    m.update(b".");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
    )
}

/// Checks a signature set (`v1,... v1,...`) against the secret setting
/// (one secret, or two during a rotation), in constant time.
pub fn signature_ok(secret: &str, id: &str, ts: i64, body: &[u8], sig: &str) -> bool {
    let expected: Vec<String> = secret
        .split_whitespace()
        .take(2)
        .map(|k| sign(&secret_bytes(k), id, ts, body))
        .collect();
    sig.split(' ').any(|s| {
        expected
            .iter()
            .any(|e| subtle::ConstantTimeEq::ct_eq(s.as_bytes(), e.as_bytes()).into())
    })
}

/// A verified answer: its HTTP status and JSON body.
#[derive(Debug, Clone)]
pub struct SignedAnswer {
    pub status: u16,
    pub body: serde_json::Value,
}

/// POSTs a signed JSON body and returns the verified JSON answer (2xx only).
pub async fn signed_call(
    http: &reqwest::Client,
    name: &str,
    url: &str,
    secret: &str,
    timeout_ms: u64,
    idempotency_key: &str,
    body: &serde_json::Value,
) -> Result<SignedAnswer, String> {
    let payload = body.to_string();
    let id = format!("msg_{idempotency_key}");
    let ts = jiff::Timestamp::now().as_second();
    let resp = http
        .post(url)
        .timeout(Duration::from_millis(timeout_ms))
        .header("content-type", "application/json")
        .header("idempotency-key", idempotency_key)
        .header("webhook-id", &id)
        .header("webhook-timestamp", ts.to_string())
        .header(
            "webhook-signature",
            sign_all(secret, &id, ts, payload.as_bytes()),
        )
        .body(payload)
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                format!("{name} did not answer within {timeout_ms} ms")
            } else {
                format!("{name} could not be reached")
            }
        })?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp
        .bytes()
        .await
        .map_err(|_| format!("{name}: the answer could not be read"))?;
    if bytes.len() > MAX_ANSWER_BYTES {
        return Err(format!(
            "{name}: the answer is larger than {MAX_ANSWER_BYTES} bytes"
        ));
    }
    if !(200..300).contains(&status) {
        return Err(format!("{name} answered HTTP {status}"));
    }
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (Some(rid), Some(rts), Some(rsig)) = (
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
    ) else {
        return Err(format!(
            "{name}: the answer is not signed (webhook-id, webhook-timestamp and webhook-signature are required)"
        ));
    };
    let rts: i64 = rts
        .parse()
        .map_err(|_| format!("{name}: the answer's webhook-timestamp is not a number"))?;
    if jiff::Timestamp::now().as_second().abs_diff(rts) > REPLAY_WINDOW_SECS.unsigned_abs() {
        return Err(format!(
            "{name}: the answer's timestamp is outside the {REPLAY_WINDOW_SECS} s window"
        ));
    }
    if !signature_ok(secret, &rid, rts, &bytes, &rsig) {
        return Err(format!("{name}: the answer's signature is invalid"));
    }
    let body = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "{name}: the answer is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    Ok(SignedAnswer { status, body })
}

/// What an HTTP service reports of an erasure, in its answer or callback.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureReport {
    /// The case the report is about (callbacks).
    #[serde(default)]
    pub case_id: Option<String>,
    /// `erased`, `accepted` (callback mode: the result comes later) or
    /// `failed`.
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub items: Vec<ReportItem>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportItem {
    /// A dataset of the service (`profiles`, `photos`).
    pub name: String,
    /// `delete`, `nullify`, `hash` or `keep`.
    pub action: String,
    pub count: u64,
    /// The service's own verification: what is left (0 when erased).
    #[serde(default)]
    pub remaining: Option<u64>,
    #[serde(default)]
    pub legal_basis: Option<String>,
    /// When kept rows expire (RFC 3339).
    #[serde(default)]
    pub retain_until: Option<jiff::Timestamp>,
}

/// The result of asking a service to erase.
#[derive(Debug, Clone)]
pub enum HttpErase {
    Done(SystemOutcome),
    /// Accepted; a signed callback will carry the result.
    Pending,
}

/// Subject ids one `subjects.list` page may hold.
pub const MAX_SUBJECT_PAGE: usize = 10_000;
/// Pages one listing may take (10 million ids).
pub const MAX_SUBJECT_PAGES: usize = 1_000;

pub struct HttpSystem {
    name: String,
    url: String,
    secret: String,
    timeout_ms: u64,
    mode: HttpMode,
    client: reqwest::Client,
}

impl std::fmt::Debug for HttpSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSystem")
            .field("name", &self.name)
            .finish()
    }
}

impl HttpSystem {
    pub fn from_env(system: &System, client: reqwest::Client) -> Result<Self, ConnectError> {
        let var = |v: &str| {
            std::env::var(v).map_err(|_| ConnectError::MissingUrl {
                system: system.name.to_string(),
                var: v.to_owned(),
            })
        };
        let url = var(&system.url_env)?;
        let secret = var(system.secret_env.as_deref().unwrap_or_default())?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConnectError::Config {
                system: system.name.to_string(),
                message: format!("the URL in {} is not http(s)", system.url_env),
            });
        }
        Ok(Self {
            name: system.name.to_string(),
            url,
            secret,
            timeout_ms: system.timeout_ms,
            mode: system.mode,
            client,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn mode(&self) -> HttpMode {
        self.mode
    }

    /// The signing secret, to verify the service's callbacks.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    fn err(&self, message: String) -> ConnectError {
        ConnectError::Db {
            system: self.name.clone(),
            action: "call the service",
            message,
        }
    }

    /// Asks the service to erase the subject. The case id is the
    /// idempotency key: the service must answer a repeat with the same
    /// result.
    pub async fn erase(
        &self,
        case_id: &str,
        subject: &SubjectId,
        callback_url: Option<&str>,
    ) -> Result<HttpErase, ConnectError> {
        let mut body = serde_json::json!({
            "type": "erasure.requested",
            "case_id": case_id,
            "subject_id": subject.expose(),
            "mode": match self.mode { HttpMode::Sync => "sync", HttpMode::Callback => "callback" },
        });
        if let (HttpMode::Callback, Some(cb)) = (self.mode, callback_url) {
            body["callback_url"] = serde_json::json!(cb);
        }
        let answer = signed_call(
            &self.client,
            &self.name,
            &self.url,
            &self.secret,
            self.timeout_ms,
            case_id,
            &body,
        )
        .await
        .map_err(|m| self.err(m))?;
        let report: ErasureReport = serde_json::from_value(answer.body)
            .map_err(|e| self.err(format!("the answer does not fit the erasure report: {e}")))?;
        match (report.status.as_str(), self.mode) {
            ("accepted", HttpMode::Callback) => Ok(HttpErase::Pending),
            _ => self.outcome(report).map(HttpErase::Done),
        }
    }

    /// Streams the service's subject ids into `tx`, page by page: the
    /// signed call `{"type": "subjects.list", "cursor": null | "...",
    /// "limit": n}` answered (signed) with `{"subjects": [...],
    /// "next_cursor": null | "..."}`. At most [`MAX_SUBJECT_PAGE`] ids per
    /// page and [`MAX_SUBJECT_PAGES`] pages. Returns the number of ids sent.
    pub async fn scan_subjects(
        &self,
        chunk: usize,
        tx: tokio::sync::mpsc::Sender<Vec<String>>,
    ) -> Result<u64, ConnectError> {
        #[derive(Deserialize)]
        struct Page {
            subjects: Vec<String>,
            #[serde(default)]
            next_cursor: Option<String>,
        }
        let limit = chunk.clamp(1, MAX_SUBJECT_PAGE);
        let mut cursor: Option<String> = None;
        let mut sent = 0u64;
        for n in 0..MAX_SUBJECT_PAGES {
            let body = serde_json::json!({
                "type": "subjects.list",
                "cursor": cursor,
                "limit": limit,
            });
            let key = format!("subjects-{}-{n}", jiff::Timestamp::now().as_millisecond());
            let answer = signed_call(
                &self.client,
                &self.name,
                &self.url,
                &self.secret,
                self.timeout_ms,
                &key,
                &body,
            )
            .await
            .map_err(|m| self.err(m))?;
            // The error names no value (they are subject ids).
            let page: Page = serde_json::from_value(answer.body).map_err(|_| {
                self.err(
                    "the answer to subjects.list does not fit {\"subjects\": [\"<id>\", ...], \"next_cursor\": null or \"...\"} (ids are strings)".into(),
                )
            })?;
            if page.subjects.len() > MAX_SUBJECT_PAGE {
                return Err(self.err(format!(
                    "a subjects.list page holds more than {MAX_SUBJECT_PAGE} ids"
                )));
            }
            sent += page.subjects.len() as u64;
            if !page.subjects.is_empty() && tx.send(page.subjects).await.is_err() {
                return Ok(sent);
            }
            match page.next_cursor {
                Some(c) if !c.is_empty() => cursor = Some(c),
                _ => return Ok(sent),
            }
        }
        Err(self.err(format!(
            "subjects.list did not end within {MAX_SUBJECT_PAGES} pages"
        )))
    }

    /// Turns a report (answer or callback) into an outcome; a failed report,
    /// or one that says something is left, is an error (the job retries).
    pub fn outcome(&self, report: ErasureReport) -> Result<SystemOutcome, ConnectError> {
        report_outcome(&self.name, report)
    }

    /// Asks the service for the subject's data (for the data export).
    pub async fn export(
        &self,
        case_id: &str,
        subject: &SubjectId,
    ) -> Result<serde_json::Value, ConnectError> {
        let body = serde_json::json!({
            "type": "export.requested",
            "case_id": case_id,
            "subject_id": subject.expose(),
        });
        signed_call(
            &self.client,
            &self.name,
            &self.url,
            &self.secret,
            self.timeout_ms,
            &format!("export-{case_id}"),
            &body,
        )
        .await
        .map(|a| a.body)
        .map_err(|m| self.err(m))
    }

    /// The service's answer to `export.requested` as export datasets. The
    /// service answers `{"datasets": [{"name": …, "rows": [{…}, …]}, …]}`;
    /// any other JSON is one dataset named `data`.
    pub async fn export_datasets(
        &self,
        request_id: &str,
        subject: &SubjectId,
    ) -> Result<Vec<(crate::ExportDataset, crate::ExportRows)>, ConnectError> {
        let body = self.export(request_id, subject).await?;
        let parts: Vec<(String, serde_json::Value)> = match body {
            serde_json::Value::Object(mut m) if m.contains_key("datasets") => {
                let Some(serde_json::Value::Array(ds)) = m.remove("datasets") else {
                    return Err(self.err("the export answer's \"datasets\" is not an array".into()));
                };
                let mut parts = vec![];
                for d in ds {
                    let serde_json::Value::Object(mut d) = d else {
                        return Err(self.err("an export dataset is not an object".into()));
                    };
                    let name = match d.remove("name") {
                        Some(serde_json::Value::String(n)) if !n.is_empty() => n,
                        _ => return Err(self.err("an export dataset has no \"name\"".into())),
                    };
                    parts.push((name, d.remove("rows").unwrap_or(serde_json::Value::Null)));
                }
                parts
            }
            other => vec![("data".into(), other)],
        };
        Ok(parts
            .into_iter()
            .map(|(name, v)| {
                let (columns, rows) = crate::rows_of(v);
                (
                    crate::ExportDataset {
                        name,
                        columns,
                        rows: rows.len() as u64,
                    },
                    rows,
                )
            })
            .collect())
    }
}

/// A service's report of an erasure (signed callback, or an event system's
/// acknowledgement through the API) as the system's outcome.
pub fn report_outcome(system: &str, report: ErasureReport) -> Result<SystemOutcome, ConnectError> {
    let err = |message: String| ConnectError::Db {
        system: system.to_owned(),
        action: "record the service's report",
        message,
    };
    match report.status.as_str() {
        "erased" => {}
        "failed" => {
            let mut r = report.reason.unwrap_or_else(|| "no reason given".into());
            r.truncate(300);
            return Err(err(format!("the service reports a failure: {r}")));
        }
        other => {
            return Err(err(format!(
                "unexpected status '{other}' (expected erased, accepted or failed)"
            )));
        }
    }
    if report.items.len() > MAX_ITEMS {
        return Err(err(format!("more than {MAX_ITEMS} items reported")));
    }
    let mut tables = vec![];
    for i in report.items {
        if !["delete", "nullify", "hash", "keep"].contains(&i.action.as_str()) {
            return Err(err(format!("unknown action '{}'", i.action)));
        }
        let keep = i.action == "keep";
        if keep && (i.legal_basis.is_none() || i.retain_until.is_none()) {
            return Err(err(format!(
                "kept item '{}' needs legal_basis and retain_until",
                i.name.chars().take(64).collect::<String>()
            )));
        }
        if !keep && i.remaining.unwrap_or(0) > 0 {
            return Err(ConnectError::NotErased {
                system: system.to_owned(),
                table: i.name,
                remaining: i.remaining.unwrap_or(0),
            });
        }
        tables.push(TableOutcome {
            table: i.name.chars().take(128).collect(),
            action: i.action,
            rows: i.count,
            remaining: Some(if keep { i.count } else { 0 }),
            legal_basis: i.legal_basis,
            retain_until: i.retain_until,
            ..Default::default()
        });
    }
    Ok(SystemOutcome {
        system: system.to_owned(),
        tables,
        replayed: false,
    })
}

/// A manual task system: the erasure goes to an operator queue.
#[derive(Debug, Clone)]
pub struct ManualSystem {
    pub name: String,
    pub instructions: String,
    pub due_days: u32,
}

impl ManualSystem {
    pub fn new(system: &System) -> Self {
        Self {
            name: system.name.to_string(),
            instructions: system.instructions.clone().unwrap_or_default(),
            due_days: system.due_days,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification.
        let s = sign(
            &secret_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(s, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(signature_ok(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
            &format!("v1,bad {s}")
        ));
    }
}
