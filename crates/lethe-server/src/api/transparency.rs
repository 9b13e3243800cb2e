//! Public transparency, without credentials: the latest signed tree head
//! (also as a C2SP checkpoint with its witnesses' cosignatures), the
//! public key, consistency proofs between published heads, and the
//! compliance reports published each month (aggregate figures, small
//! counts suppressed, signed). `transparency.enabled = false` turns it off.

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp, ToSpan};
use lethe_ledger::note::{self, Note};
use lethe_ledger::report::SignedDoc;
use lethe_store::{NewReport, PublishedReport};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use utoipa::ToSchema;

use crate::AppState;
use crate::api::audit::ConsistencyQuery;
use crate::http::extract::{ApiJson, ApiQuery};
use crate::http::middleware::Principal;
use crate::http::middleware::limited;
use crate::http::problem::Problem;
use crate::outbound::witness::{checkpoint, origin};

/// Heads listed on the page, newest first, each with its consistency
/// proof from the one before it.
pub const LISTED_HEADS: u32 = 8;
/// Reports listed on the page at most.
pub const LISTED_REPORTS: u32 = 120;
/// Platforms given their own monthly report at most (the installation's
/// report covers them all).
pub const MAX_PLATFORM_REPORTS: u32 = 200;

fn disabled() -> Problem {
    Problem::not_found("the transparency pages are turned off on this installation")
        .fix("an operator turns them on with transparency.enabled = true")
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CosignatureView {
    pub witness: String,
    /// When the witness cosigned (RFC 3339).
    pub timestamp: String,
    /// The note signature line.
    pub line: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublishedHead {
    pub tree_size: u64,
    pub root_hash: String,
    pub timestamp: String,
    pub signature: String,
    /// The head as a C2SP checkpoint (signed note), with cosignatures.
    pub checkpoint: String,
    pub cosignatures: Vec<CosignatureView>,
    /// The consistency proof from the previous listed head to this one
    /// (hex hashes, RFC 9162 order).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistency_from: Option<ConsistencyView>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsistencyView {
    pub tree_size: u64,
    pub proof: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReportLink {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    pub kind: String,
    pub label: String,
    pub period_from: String,
    pub period_to: String,
    pub published_at: String,
    /// The signed report (JSON).
    pub json: String,
    /// The same report as a page.
    pub html: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WitnessView {
    pub name: String,
    pub vkey: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Transparency {
    /// The log's checkpoint origin (and note key name).
    pub origin: String,
    /// Hex Ed25519 key: verifies tree heads, receipts and reports.
    pub public_key: String,
    pub algorithm: String,
    /// The same key as a signed-note verifier key.
    pub log_vkey: String,
    /// Counts below this are published as "< threshold".
    pub threshold: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest: Option<PublishedHead>,
    /// Recent heads, newest first (the first is `latest`).
    pub heads: Vec<PublishedHead>,
    pub reports: Vec<ReportLink>,
    pub witnesses: Vec<WitnessView>,
    /// Where to ask for a consistency proof between any two sizes.
    pub consistency_url: String,
}

fn link(r: &PublishedReport) -> ReportLink {
    ReportLink {
        id: r.id.clone(),
        platform: r.platform.clone(),
        kind: r.kind.clone(),
        label: r.label.clone(),
        period_from: r.period_from.to_string(),
        period_to: r.period_to.to_string(),
        published_at: r.created_at.to_string(),
        json: format!("/transparency/reports/{}", r.id),
        html: format!("/transparency/reports/{}?format=html", r.id),
    }
}

async fn view(st: &AppState) -> Result<Transparency, Problem> {
    let heads = st.store.recent_tree_heads(LISTED_HEADS).await?;
    let mut listed = Vec::with_capacity(heads.len());
    for (i, h) in heads.iter().enumerate() {
        let consistency_from = match heads.get(i + 1) {
            Some(prev) => Some(ConsistencyView {
                tree_size: prev.tree_size,
                proof: st
                    .store
                    .consistency_proof(prev.tree_size, h.tree_size)
                    .await
                    .map_err(|e| {
                        tracing::error!(error = %e, "consistency proof for the transparency page");
                        Problem::internal()
                    })?
                    .iter()
                    .map(hex::encode)
                    .collect(),
            }),
            None => None,
        };
        let cp = checkpoint(st, h).await?;
        let cosignatures = cosignature_views(st, &cp);
        listed.push(PublishedHead {
            tree_size: h.tree_size,
            root_hash: h.root_hash.clone(),
            timestamp: h.timestamp.clone(),
            signature: h.signature.clone(),
            checkpoint: cp.render(),
            cosignatures,
            consistency_from,
        });
    }
    let reports = st.store.published_reports(LISTED_REPORTS).await?;
    let origin = origin(st);
    // The newest head; its proof from the one before is in `heads`.
    let latest = listed.first().cloned().map(|h| PublishedHead {
        consistency_from: None,
        ..h
    });
    Ok(Transparency {
        log_vkey: note::vkey(&origin, note::SIG_ED25519, &st.signer.public_key_bytes()),
        origin,
        public_key: st.signer.public_key_hex(),
        algorithm: "ed25519".into(),
        threshold: st.transparency.threshold,
        latest,
        heads: listed,
        reports: reports.iter().map(link).collect(),
        witnesses: st
            .transparency
            .witnesses
            .iter()
            .map(|w| WitnessView {
                name: w.name().to_owned(),
                vkey: w.vkey.clone(),
            })
            .collect(),
        consistency_url: "/transparency/proofs/consistency?first={size}&second={size}".into(),
    })
}

/// The cosignatures of a checkpoint that verify under a configured
/// witness key.
fn cosignature_views(st: &AppState, cp: &Note) -> Vec<CosignatureView> {
    let mut out = vec![];
    for w in &st.transparency.witnesses {
        let Ok((name, _, key)) = note::parse_vkey(&w.vkey) else {
            continue;
        };
        for s in &cp.signatures {
            if let Some(ts) = note::verify_cosignature(&cp.text, &name, &key, s) {
                out.push(CosignatureView {
                    witness: name.clone(),
                    timestamp: i64::try_from(ts)
                        .ok()
                        .and_then(|t| Timestamp::from_second(t).ok())
                        .map(|t| t.to_string())
                        .unwrap_or_default(),
                    line: s.line().trim_end().to_owned(),
                });
            }
        }
    }
    out
}

#[derive(Debug, Deserialize)]
pub struct LangQuery {
    pub lang: Option<String>,
    pub format: Option<String>,
}

fn wants_json(headers: &HeaderMap, format: Option<&str>) -> bool {
    match format {
        Some(f) => f == "json",
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.starts_with("application/json")),
    }
}

fn json_response<T: Serialize>(v: &T) -> Response {
    let mut r = axum::Json(v).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

/// The transparency page (zh-CN or English), or its JSON.
#[utoipa::path(get, path = "/transparency", tag = "transparency", params(("lang" = Option<String>, Query, description = "zh-CN or en"), ("format" = Option<String>, Query, description = "json for the JSON document")), responses((status = 200, description = "the page (text/html), or the JSON document with `format=json` or `Accept: application/json`", content((Transparency = "application/json"), (String = "text/html"))), (status = 404, description = "turned off", body = Problem), (status = 429, body = Problem)))]
pub async fn page(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
) -> Response {
    if let Err(p) = limited(&st, &headers, peer) {
        return p.into_response();
    }
    if !st.transparency.enabled {
        return disabled().into_response();
    }
    let v = match view(&st).await {
        Ok(v) => v,
        Err(p) => return p.into_response(),
    };
    if wants_json(&headers, q.format.as_deref()) {
        return json_response(&v);
    }
    let lang = crate::pages::lang_of(&headers, q.lang.as_deref());
    crate::pages::render(
        "transparency.html",
        minijinja::context! {
            lang => lang.tag(),
            back => "/transparency",
            tp => minijinja::Value::from(minijinja::value::Serde(&v)),
        },
    )
}

/// The same as `/transparency?format=json`.
#[utoipa::path(get, path = "/transparency.json", tag = "transparency", responses((status = 200, body = Transparency), (status = 404, description = "turned off", body = Problem), (status = 429, body = Problem)))]
pub async fn json(
    st: State<AppState>,
    peer: ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
) -> Response {
    page(
        st,
        peer,
        headers,
        Query(LangQuery {
            lang: None,
            format: Some("json".into()),
        }),
    )
    .await
}

/// A published report: the signed JSON (`{"report", "public_key",
/// "signature"}`), or `?format=html` as a page.
#[utoipa::path(get, path = "/transparency/reports/{id}", tag = "transparency", params(("id" = String, Path), ("format" = Option<String>, Query), ("lang" = Option<String>, Query)), responses((status = 200, description = "the signed report (application/json), or a page (text/html) with `format=html`", content((SignedReportView = "application/json"), (String = "text/html"))), (status = 404, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)))]
pub async fn report(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<LangQuery>,
) -> Result<Response, Problem> {
    limited(&st, &headers, peer)?;
    if !st.transparency.enabled {
        return Err(disabled());
    }
    if id.len() > 64 {
        return Err(Problem::not_found("no such report"));
    }
    let (meta, body) = st.store.published_report(&id).await?.ok_or_else(|| {
        Problem::not_found("no such report").fix("GET /transparency lists the published reports")
    })?;
    match q.format.as_deref() {
        None | Some("json") => {
            let mut r = (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response();
            r.headers_mut().insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!(
                "attachment; filename=\"lethe-report-{}.json\"",
                meta.id
            )) {
                r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
            }
            Ok(r)
        }
        Some("html") => {
            let doc: SignedDoc = serde_json::from_str(&body).map_err(|_| Problem::internal())?;
            let lang = crate::pages::lang_of(&headers, q.lang.as_deref());
            Ok(crate::pages::render(
                "transparency_report.html",
                minijinja::context! {
                    lang => lang.tag(),
                    back => format!("/transparency/reports/{}?format=html", meta.id),
                    meta => minijinja::Value::from(minijinja::value::Serde(link(&meta))),
                    r => minijinja::Value::from(minijinja::value::Serde(&doc.report)),
                    signature => doc.signature,
                    public_key => doc.public_key,
                },
            ))
        }
        Some(_) => Err(Problem::unprocessable("format must be json or html").field("format")),
    }
}

/// A published report as downloaded: the report and its signature over
/// the report's JSON (keys sorted).
#[derive(Debug, Serialize, ToSchema)]
pub struct SignedReportView {
    #[schema(value_type = Object)]
    pub report: serde_json::Value,
    pub public_key: String,
    pub signature: String,
}

/// The consistency proof between two tree sizes (for monitors and
/// witnesses; no credentials).
#[utoipa::path(get, path = "/transparency/proofs/consistency", tag = "transparency", params(ConsistencyQuery), responses((status = 200, body = crate::api::audit::Proof), (status = 404, description = "turned off", body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)))]
pub async fn consistency(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ConsistencyQuery>,
) -> Result<Response, Problem> {
    limited(&st, &headers, peer)?;
    if !st.transparency.enabled {
        return Err(disabled());
    }
    let p = st
        .store
        .consistency_proof(q.first, q.second)
        .await
        .map_err(crate::api::audit::proof_problem)?;
    Ok(json_response(&crate::api::audit::Proof {
        proof: p.iter().map(hex::encode).collect(),
    }))
}

/// The latest checkpoint as a C2SP signed note (text), with cosignatures.
#[utoipa::path(get, path = "/transparency/checkpoint", tag = "transparency", responses((status = 200, description = "the signed note", content_type = "text/plain", body = String), (status = 404, body = Problem), (status = 429, body = Problem)))]
pub async fn checkpoint_text(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    limited(&st, &headers, peer)?;
    if !st.transparency.enabled {
        return Err(disabled());
    }
    let h = st
        .store
        .latest_tree_head()
        .await?
        .ok_or_else(|| Problem::not_found("no tree head signed yet"))?;
    let note = checkpoint(&st, &h).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        note.render(),
    )
        .into_response())
}

// ------------------------------------------------------------- publishing

/// The month before the one `now` falls in, in `tz`: its start, its end
/// and its name (`2026-11`).
pub fn previous_month(
    now: Timestamp,
    tz: &jiff::tz::TimeZone,
) -> Result<(Timestamp, Timestamp, String), jiff::Error> {
    let today = now.to_zoned_datetime(tz.clone()).date();
    let this = today.first_of_month();
    let prev = this.checked_sub(1.month())?;
    let from = prev.to_zoned_datetime(tz.clone())?.timestamp();
    let to = this.to_zoned_datetime(tz.clone())?.timestamp();
    Ok((from, to, format!("{:04}-{:02}", prev.year(), prev.month())))
}

fn report_id(platform: Option<&str>, kind: &str, from: Timestamp, to: Timestamp) -> String {
    let mut h = sha2::Sha256::new();
    h.update(platform.unwrap_or("").as_bytes());
    h.update(b"\n");
    h.update(kind.as_bytes());
    h.update(format!("\n{}\n{}", from.as_millisecond(), to.as_millisecond()).as_bytes());
    format!("rpt-{}", hex::encode(&h.finalize()[..10]))
}

/// Builds, signs and publishes a month's reports together (see
/// [`lethe_ledger::public::publish_set`]): the installation's, and one for
/// each platform with enough cases of its own. Platforms first: the
/// installation's report marks the month done. Returns how many were new.
/// The caller holds the month's schedule claim, so one instance builds
/// the whole set from one reading.
pub async fn publish_month(
    st: &AppState,
    kind: &str,
    from: Timestamp,
    to: Timestamp,
    label: &str,
) -> Result<usize, Problem> {
    let now = st.clock.now();
    let names = st
        .store
        .platforms_with_cases(from, to, MAX_PLATFORM_REPORTS)
        .await?;
    let mut platforms = Vec::with_capacity(names.len());
    for p in &names {
        platforms.push(crate::report::unsigned(&st.store, from, to, now, Some(p)).await?);
    }
    let installation = crate::report::unsigned(&st.store, from, to, now, None).await?;
    let set = lethe_ledger::public::publish_set(
        &installation,
        &platforms,
        kind,
        st.transparency.threshold,
    );
    let mut fresh = 0;
    for public in set
        .platforms
        .iter()
        .chain(std::iter::once(&set.installation))
    {
        let doc = SignedDoc::sign(public, &st.signer);
        let body = serde_json::to_string_pretty(&doc).map_err(|_| Problem::internal())?;
        let platform = public.platform.as_deref();
        if st
            .store
            .publish_report(
                NewReport {
                    id: report_id(platform, kind, from, to),
                    platform: platform.map(str::to_owned),
                    kind: kind.to_owned(),
                    period_from: from,
                    period_to: to,
                    label: label.to_owned(),
                    body,
                },
                now,
            )
            .await?
        {
            fresh += 1;
        }
    }
    Ok(fresh)
}

/// Claims the publication of a month's reports for this instance (an
/// hour; another instance may retry after it).
async fn claim_month(st: &AppState, label: &str) -> Result<bool, lethe_store::StoreError> {
    st.store
        .claim_schedule(
            format!("report:{label}"),
            st.clock.now(),
            SignedDuration::from_hours(1),
            true,
        )
        .await
}

/// Publishes last month's reports if no instance has yet: the
/// installation's, and one per platform with enough cases in it. True once
/// they exist.
pub async fn publish_due(st: &AppState) -> bool {
    if !st.transparency.enabled {
        return true;
    }
    let now = st.clock.now();
    let Ok((from, to, label)) = previous_month(now, &st.tz) else {
        return false;
    };
    match st.store.report_published("monthly", from, to).await {
        Ok(true) => return true,
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(error = %e, "reading the published reports failed");
            return false;
        }
    }
    // One instance publishes; if it stops half-way, another retries in an hour.
    let claimed = claim_month(st, &label).await.unwrap_or(false);
    if !claimed {
        return false;
    }
    match publish_month(st, "monthly", from, to, &label).await {
        Ok(n) => {
            tracing::info!(month = %label, reports = n, "monthly compliance reports published");
            true
        }
        Err(e) => {
            tracing::error!(problem = %e.detail, "publishing the monthly report failed");
            false
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The calendar month (`YYYY-MM`, the platform's time zone), ended.
    #[schema(example = "2026-11")]
    pub month: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Published {
    pub id: String,
    /// False when the month's reports were published before.
    pub created: bool,
    /// False when the platform had too few cases in the month for a report
    /// of its own (or a report of its own would have let another
    /// platform's few cases be worked out): `id` is then the
    /// installation's report, which counts them.
    pub own: bool,
    pub json: String,
    pub html: String,
}

/// The month `YYYY-MM` in `tz`: its start, its end and its name.
pub fn month_bounds(
    month: &str,
    tz: &jiff::tz::TimeZone,
) -> Option<(Timestamp, Timestamp, String)> {
    let (y, m) = month.split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    let first = jiff::civil::Date::new(y.parse().ok()?, m.parse().ok()?, 1).ok()?;
    let next = first.checked_add(1.month()).ok()?;
    let from = first.to_zoned_datetime(tz.clone()).ok()?.timestamp();
    let to = next.to_zoned_datetime(tz.clone()).ok()?.timestamp();
    Some((
        from,
        to,
        format!("{:04}-{:02}", first.year(), first.month()),
    ))
}

/// Publish an ended month's reports now (the installation's and the
/// platforms', as the start of the next month would), without waiting, and
/// get the calling platform's. Only whole months: the published figures are
/// the same cells for everyone, so no two reports of overlapping periods can
/// be subtracted to single out a case; publishing a month twice returns the
/// reports already published.
#[utoipa::path(post, path = "/v1/transparency/reports", tag = "transparency", request_body = PublishRequest, responses((status = 201, body = Published), (status = 200, body = Published), (status = 422, body = Problem), (status = 503, body = Problem)), security(("api_key" = [])))]
pub async fn publish_on_demand(
    State(st): State<AppState>,
    axum::Extension(p): axum::Extension<Principal>,
    ApiJson(req): ApiJson<PublishRequest>,
) -> Result<Response, Problem> {
    if !st.transparency.enabled {
        return Err(disabled());
    }
    let (from, to, label) = month_bounds(&req.month, &st.tz).ok_or_else(|| {
        Problem::unprocessable("month must be a calendar month written YYYY-MM, e.g. 2026-11")
            .field("month")
    })?;
    if to > st.clock.now() {
        return Err(Problem::unprocessable(
            "the month has not ended: a published report covers a whole month that is over",
        )
        .field("month"));
    }
    let mut created = false;
    if !st.store.report_published("monthly", from, to).await? {
        // The same run as the start of the next month's, now: one
        // instance builds the month's whole set.
        let claimed = claim_month(&st, &label).await?;
        if !claimed {
            return Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "report-in-progress",
                "The month's reports are being published",
                "another instance is publishing this month's reports right now",
            )
            .retry_after(10)
            .fix("retry in a few seconds"));
        }
        created = publish_month(&st, "monthly", from, to, &label).await? > 0;
    }
    // The platform's own report, or (too few cases for one of its own) the
    // installation's, which counts them.
    let own = report_id(Some(&p.0), "monthly", from, to);
    let (id, own) = if st.store.published_report(&own).await?.is_some() {
        (own, true)
    } else {
        (report_id(None, "monthly", from, to), false)
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        axum::Json(Published {
            json: format!("/transparency/reports/{id}"),
            html: format!("/transparency/reports/{id}?format=html"),
            id,
            created,
            own,
        }),
    )
        .into_response())
}
