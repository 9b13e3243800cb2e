//! Errors as RFC 9457 problem details (`application/problem+json`), naming
//! the field at fault and what to do about it. Bodies never carry personal
//! data: messages are built from types and field names, never from values.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lethe_domain::TransitionError;
use lethe_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The request field at fault, as a JSON path (`code`, `consequences[0].id`) or a header name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What to change for the request to succeed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    #[serde(skip)]
    pub retry_after: Option<i64>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("urn:lethe:problem:{kind}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
            fix: None,
            retry_after: None,
        }
    }
    pub fn field(mut self, f: impl Into<String>) -> Self {
        self.field = Some(f.into());
        self
    }
    pub fn fix(mut self, f: impl Into<String>) -> Self {
        self.fix = Some(f.into());
        self
    }
    pub fn retry_after(mut self, secs: i64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    pub fn bad_request(kind: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, kind, "Bad request", detail)
    }
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "The request is not valid",
            detail,
        )
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }
    pub fn conflict(kind: &str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            kind,
            "Conflict with the case's state",
            detail,
        )
    }
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the request could not be completed; it changed nothing and can be retried",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry = self.retry_after;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = retry
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => Problem::not_found("no case with this id").fix("check the case id returned when the case was created"),
            StoreError::Transition(t) => transition(t),
            StoreError::IdempotencyConflict => Problem::conflict("idempotency", "a request with this Idempotency-Key was already processed or is in progress")
                .field("Idempotency-Key")
                .fix("repeat the original request unchanged to get its response, or use a new key for a new request"),
            StoreError::NoCode => Problem::unprocessable("no valid code exists for this case").field("code").fix("request a new code with POST /v1/cases/{id}/verification/sms/send"),
            StoreError::CodeExpired => Problem::unprocessable("the code has expired").field("code").fix("request a new code"),
            StoreError::WrongCode { attempts_left } => Problem::unprocessable(format!("the code is wrong; {attempts_left} attempt(s) left before the code is locked"))
                .field("code")
                .fix("type the six digits from the latest SMS"),
            StoreError::CodeLocked { until } => {
                let wait = (until.as_second() - jiff::Timestamp::now().as_second()).max(1);
                Problem::new(StatusCode::TOO_MANY_REQUESTS, "code-locked", "Too many wrong codes", format!("codes for this case are locked until {until}"))
                    .field("code")
                    .fix("wait until the lockout ends, then request a new code")
                    .retry_after(wait)
            }
            StoreError::ResendTooSoon { wait_secs } => Problem::new(StatusCode::TOO_MANY_REQUESTS, "resend-too-soon", "Code requested too often", format!("wait {wait_secs} s before requesting another code"))
                .retry_after(wait_secs),
            StoreError::Closed => Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Shutting down", "the server is shutting down; retry on another instance or shortly").retry_after(2),
            StoreError::Db { action, message } => {
                tracing::error!(action, message, "storage error");
                Problem::internal()
            }
            StoreError::Corrupt(what) => {
                tracing::error!(what, "corrupt stored data");
                Problem::internal()
            }
            StoreError::Refused(why) => Problem::conflict("refused", why),
        }
    }
}

fn transition(t: TransitionError) -> Problem {
    let detail = t.to_string();
    match t {
        TransitionError::Illegal { .. } | TransitionError::CoolingOffNotOver { .. } => {
            Problem::conflict("illegal-transition", detail)
        }
        TransitionError::AssuranceTooLow { .. } => Problem::new(
            StatusCode::FORBIDDEN,
            "assurance",
            "Identity assurance too low",
            detail,
        )
        .fix("verify the identity with a stronger method"),
        TransitionError::UnknownConsequence { .. } => Problem::unprocessable(detail)
            .field("consequence_id")
            .fix("use an id from the case's consequences list"),
        TransitionError::StaleConsequence { .. } => Problem::unprocessable(detail)
            .field("version")
            .fix("fetch the case, show the current text, and acknowledge that version"),
        TransitionError::AlreadyAcknowledged { .. } => {
            Problem::conflict("already-acknowledged", detail).field("consequence_id")
        }
        TransitionError::ExtensionNotAllowed { .. } => Problem::conflict("no-extension", detail),
        TransitionError::UnknownAsset { .. } => Problem::unprocessable(detail)
            .field("asset_id")
            .fix("use an id from the case's assets"),
        TransitionError::OptionNotOffered { .. } => Problem::unprocessable(detail).field("option"),
        TransitionError::TransferNeedsTarget => Problem::unprocessable(detail)
            .field("transfer_to")
            .fix("give the platform id of the account to transfer to"),
        TransitionError::AlreadySettled { .. } => {
            Problem::conflict("already-settled", detail).field("asset_id")
        }
        TransitionError::UnknownInstruction { .. } => {
            Problem::conflict("unknown-instruction", detail)
        }
    }
}

/// Removes values from a serde message: `invalid type: string "x"` becomes
/// `invalid type: string`, `unknown variant `x`` becomes `unknown variant
/// (value withheld)`. Field names in backticks stay when they look like field
/// names (schema words, not data).
pub fn redact_serde(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut in_quote = false;
    for c in msg.chars() {
        if c == '"' {
            in_quote = !in_quote;
            continue;
        }
        if !in_quote {
            out.push(c);
        }
    }
    // Backticked runs: keep plain identifiers, except the value after
    // "unknown variant", which is data.
    let mut result = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(start) = rest.find('`') {
        let (before, after) = rest.split_at(start);
        result.push_str(before);
        let Some(end) = after[1..].find('`') else {
            result.push_str(after);
            rest = "";
            break;
        };
        let word = &after[1..1 + end];
        let is_value = before.trim_end().ends_with("unknown variant");
        let plain = !word.is_empty()
            && word.len() <= 40
            && word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !word.bytes().all(|b| b.is_ascii_digit());
        if is_value || !plain {
            result.push_str("(value withheld)");
        } else {
            result.push('`');
            result.push_str(word);
            result.push('`');
        }
        rest = &after[end + 2..];
    }
    result.push_str(rest);
    result.replace("  ", " ").replace(" ,", ",")
}

#[cfg(test)]
mod tests {
    #[test]
    fn variant_values_and_odd_field_names_are_withheld() {
        assert_eq!(
            super::redact_serde(
                "unknown variant `user1@demo-mart.example`, expected one of `app`, `recovery`"
            ),
            "unknown variant (value withheld), expected one of `app`, `recovery`"
        );
        assert_eq!(
            super::redact_serde("unknown field `13900000001`, expected `code`"),
            "unknown field (value withheld), expected `code`"
        );
    }

    #[test]
    fn serde_messages_lose_their_values() {
        assert_eq!(
            super::redact_serde(
                "invalid type: string \"13800138000\", expected u64 at line 1 column 20"
            ),
            "invalid type: string, expected u64 at line 1 column 20"
        );
        assert_eq!(
            super::redact_serde("unknown field `phone`, expected `subject_id` or `channel`"),
            "unknown field `phone`, expected `subject_id` or `channel`"
        );
    }
}
