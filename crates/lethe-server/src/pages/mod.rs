//! Server-rendered pages: the user's cancellation centre (`/u/`) and the
//! agent console (`/console/`).
//!
//! The pages are a presentation over the API: every action a page takes
//! calls the same handler the API route calls (same checks, same audit
//! event, same transaction), then renders the case again. Templates are
//! minijinja, compiled into the binary, HTML-escaped by default; every
//! asset is served by Lethe itself (no third-party host).
//!
//! Security: the user's session is a sealed cookie (XChaCha20-Poly1305
//! under the installation's pages key: nobody can read or forge it), set
//! from a single-use hand-off link the platform creates for its signed-in
//! user. Every form carries a CSRF token bound to the session, and a POST
//! whose `Origin` is another site is refused. Pages send a strict Content
//! Security Policy (scripts and styles from Lethe only).

pub mod agent;
mod i18n;
pub mod support;
pub mod user;

use std::sync::LazyLock;

use axum::extract::FromRequest;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use minijinja::{Environment, State as TplState, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use i18n::Lang;

use crate::AppState;
use crate::http::problem::Problem;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Sealed tokens longer than this are refused unread.
const MAX_TOKEN_LEN: usize = 2048;
/// Bytes of an API answer a page reads back (case views are far smaller).
const MAX_ANSWER_BYTES: usize = 4 << 20;

static TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("macros.html", include_str!("../../templates/macros.html")),
    ("u_start.html", include_str!("../../templates/u_start.html")),
    ("u_case.html", include_str!("../../templates/u_case.html")),
    (
        "u_expired.html",
        include_str!("../../templates/u_expired.html"),
    ),
    ("c_login.html", include_str!("../../templates/c_login.html")),
    (
        "c_queues.html",
        include_str!("../../templates/c_queues.html"),
    ),
    ("c_case.html", include_str!("../../templates/c_case.html")),
    ("c_claim.html", include_str!("../../templates/c_claim.html")),
    (
        "c_datamap.html",
        include_str!("../../templates/c_datamap.html"),
    ),
    (
        "c_report.html",
        include_str!("../../templates/c_report.html"),
    ),
    ("support.html", include_str!("../../templates/support.html")),
    (
        "support_done.html",
        include_str!("../../templates/support_done.html"),
    ),
    (
        "c_support_queue.html",
        include_str!("../../templates/c_support_queue.html"),
    ),
    (
        "c_support.html",
        include_str!("../../templates/c_support.html"),
    ),
    (
        "transparency.html",
        include_str!("../../templates/transparency.html"),
    ),
    (
        "transparency_report.html",
        include_str!("../../templates/transparency_report.html"),
    ),
    (
        "demo_app.html",
        include_str!("../../templates/demo_app.html"),
    ),
];

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, src) in TEMPLATES {
        // The templates are part of the binary and checked by the test
        // `every_template_compiles`; a broken one renders as an error page.
        if let Err(e) = env.add_template(name, src) {
            tracing::error!(template = name, error = %e, "a page template does not compile");
        }
    }
    env.add_function("t", |state: &TplState, key: &str| -> String {
        let lang = state
            .lookup("lang")
            .and_then(|v| v.as_str().map(Lang::parse))
            .unwrap_or_default();
        i18n::text(lang, key).to_owned()
    });
    env.add_filter("money", |minor: i64| -> String {
        let sign = if minor < 0 { "-" } else { "" };
        let m = minor.unsigned_abs();
        format!("{sign}¥{}.{:02}", m / 100, m % 100)
    });
    env
});

/// Renders a template with the context; an error becomes a 500 page
/// without details.
pub fn render(name: &str, ctx: Value) -> Response {
    match ENV.get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => html_response(StatusCode::OK, html),
        Err(e) => {
            tracing::error!(template = name, error = %e, "a page failed to render");
            html_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "<!doctype html><html lang=\"en\"><title>Error</title><main><h1>Something went wrong · 出错了</h1><p>Please try again.</p></main></html>".into(),
            )
        }
    }
}

/// The security headers of every page.
pub fn html_response(status: StatusCode, html: String) -> Response {
    let mut r = (status, html).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    r
}

/// A whole document made elsewhere (the receipt, the report), with its own
/// inline style and no script at all.
pub fn document(r: Result<Response, Problem>) -> Response {
    let mut r = match r {
        Ok(r) => r,
        Err(p) => return p.into_response(),
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub fn with_status(mut r: Response, status: StatusCode) -> Response {
    *r.status_mut() = status;
    r
}

pub fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

// ------------------------------------------------------------------ assets

const CSS: &str = include_str!("../../assets/lethe.css");
const JS: &str = include_str!("../../assets/lethe.js");
const ICON: &str = include_str!("../../assets/icon.svg");

pub async fn icon() -> Response {
    asset("image/svg+xml", ICON)
}

pub async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

pub async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

// ---------------------------------------------------------- sealed tokens

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token was not issued here or was altered")]
    Forged,
    #[error("the token has expired")]
    Expired,
}

/// Seals a value for the browser: confidential and authenticated; `purpose`
/// is bound as associated data, so a token of one kind is never accepted as
/// another.
pub fn seal<T: Serialize>(key: &[u8; 32], purpose: &str, value: &T) -> String {
    let aead = XChaCha20Poly1305::new(key.into());
    let nonce: [u8; 24] = rand::random();
    let plain = serde_json::to_vec(value).unwrap_or_default();
    match aead.encrypt(
        XNonce::from_slice(&nonce),
        Payload {
            msg: &plain,
            aad: purpose.as_bytes(),
        },
    ) {
        Ok(ct) => {
            let mut out = nonce.to_vec();
            out.extend_from_slice(&ct);
            B64.encode(out)
        }
        // Encryption of a short buffer cannot fail; an empty token is
        // refused when it comes back.
        Err(_) => String::new(),
    }
}

pub fn open<T: DeserializeOwned>(
    key: &[u8; 32],
    purpose: &str,
    token: &str,
) -> Result<T, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let raw = B64.decode(token).map_err(|_| TokenError::Malformed)?;
    if raw.len() < 24 + 16 {
        return Err(TokenError::Malformed);
    }
    let (nonce, ct) = raw.split_at(24);
    let aead = XChaCha20Poly1305::new(key.into());
    let plain = aead
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ct,
                aad: purpose.as_bytes(),
            },
        )
        .map_err(|_| TokenError::Forged)?;
    serde_json::from_slice(&plain).map_err(|_| TokenError::Forged)
}

/// A cookie's value from the request.
/// The language of a page without a session: the `lang` parameter, else
/// the visitor's choice (cookie), else zh-CN.
pub fn lang_of(headers: &HeaderMap, q: Option<&str>) -> Lang {
    q.map(Lang::parse)
        .or_else(|| cookie(headers, "lethe_lang").map(Lang::parse))
        .unwrap_or_default()
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: HttpOnly always; Secure unless the demo runs on
/// plain HTTP.
pub fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age: i64,
    same_site: &str,
    secure: bool,
) -> HeaderValue {
    let s = format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite={same_site}{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("x=; Max-Age=0"))
}

/// A keyed CSRF token for a session's secret.
pub fn csrf_token(key: &[u8; 32], session_secret: &str) -> String {
    use hmac::Mac;
    let mut m = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    m.update(b"csrf:");
    m.update(session_secret.as_bytes());
    B64.encode(&m.finalize().into_bytes()[..18])
}

pub fn csrf_ok(key: &[u8; 32], session_secret: &str, given: &str) -> bool {
    use subtle::ConstantTimeEq;
    csrf_token(key, session_secret)
        .as_bytes()
        .ct_eq(given.as_bytes())
        .into()
}

/// Form fields a page POST may have at most (the largest form has four).
pub const MAX_FIELDS: usize = 16;

/// A form posted to one of the pages from this site: read first (a
/// malformed form is refused by axum's own form reader), then its origin
/// and size checked (else 403 in the page's language). `headers` are the
/// request's, for what the handler reads next (cookies).
pub struct SiteForm {
    pub lang: Lang,
    pub headers: HeaderMap,
    pub form: std::collections::HashMap<String, String>,
}

impl FromRequest<AppState> for SiteForm {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, st: &AppState) -> Result<Self, Response> {
        let headers = req.headers().clone();
        let axum::Form(form) = axum::Form::<Vec<(String, String)>>::from_request(req, st)
            .await
            .map_err(IntoResponse::into_response)?;
        let lang = lang_of(&headers, None);
        match site_form(&headers, &st.public_url, form) {
            Some(form) => Ok(Self {
                lang,
                headers,
                form,
            }),
            None => Err(forbidden_post(lang)),
        }
    }
}

/// A form POSTed from this site's own pages, as a map; None for one from
/// another origin or with more than [`MAX_FIELDS`] fields.
pub fn site_form(
    headers: &HeaderMap,
    public_url: &str,
    form: Vec<(String, String)>,
) -> Option<std::collections::HashMap<String, String>> {
    (form.len() <= MAX_FIELDS && same_origin(headers, public_url))
        .then(|| form.into_iter().collect())
}

/// A POST from another site (its `Origin` names another host) is refused,
/// whatever its token.
/// Whether a POST comes from Lethe's own pages: its Origin (when sent) is
/// this site, scheme included — the scheme of the public URL (`https`
/// behind a TLS proxy), so an `http://` page on the same host cannot post
/// into the `https://` site.
pub fn same_origin(headers: &HeaderMap, public_url: &str) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    if origin == "null" {
        return false;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let scheme = public_url
        .split_once("://")
        .map(|(s, _)| s)
        .unwrap_or("http");
    !host.is_empty() && origin.eq_ignore_ascii_case(&format!("{scheme}://{host}"))
}

pub fn forbidden_post(lang: Lang) -> Response {
    html_response(
        StatusCode::FORBIDDEN,
        format!(
            "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\"><title>403</title><link rel=\"stylesheet\" href=\"/assets/lethe.css\"></head><body><main><h1>{}</h1><p>{}</p></main></body></html>",
            lang.tag(),
            i18n::text(lang, "err.csrf.title"),
            i18n::text(lang, "err.csrf.body")
        ),
    )
}

/// The JSON body of an API handler's answer, or the problem it raised.
pub async fn answer(r: Result<Response, Problem>) -> Result<serde_json::Value, Problem> {
    let r = r?;
    let status = r.status();
    let bytes = axum::body::to_bytes(r.into_body(), MAX_ANSWER_BYTES)
        .await
        .map_err(|_| Problem::internal())?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    if status.is_success() {
        Ok(v)
    } else {
        Err(serde_json::from_value::<Problem>(v).unwrap_or_else(|_| Problem::internal()))
    }
}

/// What a page shows of a problem: the localized text where one exists for
/// its kind, else the API's own detail and fix.
pub fn problem_text(lang: Lang, p: &Problem) -> String {
    let kind = p.kind.rsplit(['/', ':']).next().unwrap_or_default();
    // The most specific text first: the kind at a field, then the kind.
    let mut keys = vec![format!("problem.{kind}")];
    if let Some(f) = &p.field {
        keys.insert(0, format!("problem.{kind}.{f}"));
    }
    for key in keys {
        // In English the detail says more than the generic line.
        if lang == Lang::En && key == "problem.validation" {
            continue;
        }
        let t = i18n::text(lang, &key);
        if t != key {
            return t.to_owned();
        }
    }
    match (lang, &p.fix) {
        // The details are English: a Chinese page never shows them.
        (Lang::Zh, _) => i18n::text(lang, "problem.other").to_owned(),
        (_, Some(fix)) => format!("{} — {}", p.detail, fix),
        (_, None) => p.detail.clone(),
    }
}

/// Timestamps as the platform's users read them: local time of the
/// installation's zone, to the minute.
pub fn local_time(ts: &str, tz: &jiff::tz::TimeZone) -> String {
    ts.parse::<jiff::Timestamp>()
        .map(|t| {
            t.to_zoned_datetime(tz.clone())
                .strftime("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|_| ts.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every problem a user can meet on the pages reads as Chinese on a
    /// zh-CN page: the transitions the domain refuses, the code and store
    /// problems, and the named kinds the handlers answer.
    #[test]
    fn problems_on_chinese_pages_are_chinese() {
        use crate::http::problem::Problem;
        use lethe_domain::TransitionError as T;
        use lethe_store::StoreError as S;
        let ts = jiff::Timestamp::UNIX_EPOCH;
        let transitions = vec![
            T::Illegal {
                command: "confirm",
                state: lethe_domain::CaseState::Submitted,
                next: "x",
            },
            T::CoolingOffNotOver { ends_at: ts },
            T::AssuranceTooLow { needed: 2, got: 1 },
            T::UnknownConsequence { id: "x".into() },
            T::StaleConsequence {
                id: "x".into(),
                current: 2,
            },
            T::AlreadyAcknowledged { id: "x".into() },
            T::ExtensionNotAllowed { why: "x" },
            T::UnknownAsset { id: "x".into() },
            T::OptionNotOffered {
                kind: "coupon",
                option: "withdraw",
                offered: "x".into(),
            },
            T::TransferNeedsTarget,
            T::AlreadySettled { id: "x".into() },
            T::UnknownInstruction { id: "x".into() },
        ];
        let mut problems: Vec<Problem> = transitions
            .into_iter()
            .map(|t| Problem::from(S::Transition(t)))
            .collect();
        problems.extend(
            [
                S::NoCode,
                S::CodeExpired,
                S::WrongCode { attempts_left: 2 },
                S::CodeLocked { until: ts },
                S::ResendTooSoon { wait_secs: 30 },
                S::Closed,
                S::Refused("x".into()),
                S::NotFound(lethe_domain::CaseId::from_uuid(uuid::Uuid::nil())),
            ]
            .map(Problem::from),
        );
        problems.push(Problem::unprocessable("something else").field("nickname"));
        problems.push(Problem::internal());
        for kind in [
            "checks-unavailable",
            "sms-gateway",
            "throttled",
            "rate-limited",
            "busy",
            "timeout",
            "account-erased",
            "some-new-kind",
        ] {
            problems.push(Problem::new(
                axum::http::StatusCode::CONFLICT,
                kind,
                "t",
                "an English detail",
            ));
        }
        for p in &problems {
            let zh = problem_text(Lang::Zh, p);
            assert!(
                !zh.chars().any(|c| c.is_ascii_alphabetic())
                    && zh.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
                "{} ({:?}): {zh}",
                p.kind,
                p.field
            );
        }
        // English pages keep the specific detail where no line says more.
        let p = Problem::unprocessable("the nickname is too long").field("nickname");
        assert_eq!(problem_text(Lang::En, &p), "the nickname is too long");
    }

    #[test]
    fn every_template_compiles_and_every_text_key_exists() {
        let mut env = Environment::new();
        for (name, src) in TEMPLATES {
            env.add_template(name, src)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        // Keys given whole, as t("key") or t('key'); keys built in the
        // template (t("state." ~ x)) end with a dot and are covered by the
        // i18n tests of their families.
        let re = |s: &str| -> Vec<String> {
            let mut out = vec![];
            for q in ['"', '\''] {
                let open = format!("t({q}");
                let mut rest = s;
                while let Some(i) = rest.find(&open) {
                    let word = i > 0 && {
                        let b = rest.as_bytes()[i - 1];
                        b.is_ascii_alphanumeric() || b == b'_'
                    };
                    rest = &rest[i + 3..];
                    if word {
                        continue;
                    }
                    if let Some(j) = rest.find(q) {
                        let key = &rest[..j];
                        if !key.ends_with('.') {
                            out.push(key.to_owned());
                        }
                    }
                }
            }
            out
        };
        for (name, src) in TEMPLATES {
            for key in re(src) {
                for lang in [Lang::Zh, Lang::En] {
                    assert_ne!(
                        i18n::text(lang, &key),
                        key,
                        "{name}: no {lang:?} text for {key}"
                    );
                }
            }
        }
    }

    /// Every text in the Fluent files is used: named whole in a template
    /// (`t("key")`) or in the code (`"key"`), or in a family a template or
    /// the code completes at run time (`t("state." ~ s)`,
    /// `format!("state.{}", s)`).
    #[test]
    fn every_text_key_is_used() {
        fn rust_files(dir: &std::path::Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    rust_files(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(std::fs::read_to_string(&p).unwrap());
                }
            }
        }
        let mut code = vec![];
        rust_files(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut code,
        );
        let templates: Vec<&str> = TEMPLATES.iter().map(|(_, src)| *src).collect();
        // Families: a quoted prefix ending in '.' that is completed at run
        // time, in a template (`t("state." ~`) or in code (`"state.{`).
        let mut families = vec![];
        for src in templates
            .iter()
            .copied()
            .chain(code.iter().map(String::as_str))
        {
            for (i, _) in src.match_indices('"') {
                let rest = &src[i + 1..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
                    .unwrap_or(rest.len());
                let (word, after) = rest.split_at(end);
                if word.ends_with('.')
                    && word.len() > 1
                    && (after.starts_with('{')
                        || after.starts_with("\" ~")
                        || after.starts_with("\"~"))
                {
                    families.push(word.to_owned());
                }
            }
        }
        let mut unused = vec![];
        for key in i18n::keys() {
            let quoted = [format!("\"{key}\""), format!("'{key}'")];
            let named = templates
                .iter()
                .copied()
                .chain(code.iter().map(String::as_str))
                .any(|src| quoted.iter().any(|q| src.contains(q.as_str())));
            if !named && !families.iter().any(|f| key.starts_with(f.as_str())) {
                unused.push(key);
            }
        }
        unused.sort_unstable();
        assert!(unused.is_empty(), "texts no page or code uses: {unused:?}");
    }

    #[test]
    fn sealed_tokens_are_bound_to_key_and_purpose() {
        let k = [7u8; 32];
        let t = seal(&k, "session", &("a", 1));
        let back: (String, i32) = open(&k, "session", &t).unwrap();
        assert_eq!(back, ("a".into(), 1));
        assert_eq!(
            open::<(String, i32)>(&k, "handoff", &t).unwrap_err(),
            TokenError::Forged
        );
        assert_eq!(
            open::<(String, i32)>(&[8u8; 32], "session", &t).unwrap_err(),
            TokenError::Forged
        );
        let mut bad = t.clone();
        bad.replace_range(40..41, if &t[40..41] == "A" { "B" } else { "A" });
        assert!(open::<(String, i32)>(&k, "session", &bad).is_err());
        assert_eq!(
            open::<(String, i32)>(&k, "session", "%%%").unwrap_err(),
            TokenError::Malformed
        );
        assert_eq!(
            open::<(String, i32)>(&k, "session", &"A".repeat(5000)).unwrap_err(),
            TokenError::Malformed
        );
    }

    #[test]
    fn csrf_tokens_and_origins() {
        let k = [1u8; 32];
        let t = csrf_token(&k, "s1");
        assert!(csrf_ok(&k, "s1", &t));
        assert!(!csrf_ok(&k, "s2", &t));
        assert!(!csrf_ok(&k, "s1", ""));
        let site = "https://lethe.example:8080";
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("lethe.example:8080"));
        assert!(same_origin(&h, site));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://lethe.example:8080"),
        );
        assert!(same_origin(&h, site));
        // The same host over plain http is another origin.
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://lethe.example:8080"),
        );
        assert!(!same_origin(&h, site));
        assert!(same_origin(&h, "http://lethe.example:8080"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&h, site));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h, site));
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; lethe_u=xyz; lethe_lang=en"),
        );
        assert_eq!(cookie(&h, "lethe_u"), Some("xyz"));
        assert_eq!(cookie(&h, "lethe_lang"), Some("en"));
        assert_eq!(cookie(&h, "b"), None);
    }
}
