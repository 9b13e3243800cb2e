//! Data exports (PIPL Art. 45, GDPR Art. 15 and 20): a copy of the
//! subject's data from every system of the data map, before a cancellation
//! ("take a copy before you go") or as a request of its own, by the user
//! (through the platform) or by an agent on their behalf.
//!
//! - A worker builds the archive ([`lethe_export::Archive`]) as rows stream
//!   from the connectors, sealed on disk as it is written
//!   ([`lethe_export::seal`]); memory stays constant. The archive key is
//!   sealed by the vault under the export's own vault subject, so
//!   destroying that key destroys every copy of the file.
//! - Progress per system is on the export (and on its case).
//! - The link is `GET /v1/exports/{id}/download?token=…`; the token is a
//!   keyed hash of the id, never stored. Single-use links die with their
//!   first complete download; every link dies at its expiry (7 days by
//!   default). Either way the file and its key are deleted.
//! - An erasure deletes the subject's exports before it completes (the
//!   shred job), and no export can start once it has begun.
//! - A builder that dies loses its lease; the next one starts the export
//!   again from nothing (partial files are removed first).

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use jiff::SignedDuration;
use lethe_domain::SubjectId;
use lethe_domain::export::{ExportState, SystemProgress, overall_percent};
use lethe_store::{ExportRow, NewExport};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::http::agent::{Agent, require};
use crate::http::extract::ApiJson;
use crate::http::middleware::Principal;
use crate::http::problem::Problem;
use crate::outbound::systems::Connector;

/// Messages in flight between the connectors and the archive writer.
const ROW_QUEUE: usize = 16;
/// A database's rows go to the archive writer in batches of this many rows
/// or [`ROW_BATCH_BYTES`] (one hand-over, one wake-up of the writer, per
/// batch: per row, the hand-overs cost as much as the writing).
const ROW_BATCH_ROWS: usize = 512;
/// See [`ROW_BATCH_ROWS`]; memory in flight is at most [`ROW_QUEUE`] times
/// this (plus one row).
const ROW_BATCH_BYTES: usize = 256 * 1024;
/// Download chunks in flight to the client.
const CHUNK_QUEUE: usize = 8;
const CHUNK: usize = 64 * 1024;
/// How often a builder records its progress (and renews its lease).
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// Exports expired or cleaned per purge tick.
const PURGE_BATCH: u32 = 100;

fn vault_subject(id: &str) -> String {
    format!("export:{id}")
}

fn key_field() -> Result<lethe_vault::FieldName, Problem> {
    lethe_vault::FieldName::parse("archive_key").map_err(|_| Problem::internal())
}

fn dir(st: &AppState) -> PathBuf {
    st.data_dir.join("exports")
}

fn sealed_path(st: &AppState, id: &str) -> PathBuf {
    dir(st).join(format!("{id}.zip.sealed"))
}

fn part_path(st: &AppState, id: &str) -> PathBuf {
    dir(st).join(format!("{id}.part"))
}

fn spool_dir(st: &AppState) -> PathBuf {
    dir(st).join("spool")
}

// ------------------------------------------------------------------- views

#[derive(Debug, Serialize, ToSchema)]
pub struct SystemProgressView {
    pub system: String,
    /// 0-100; 100 once every dataset of the system is in the archive.
    pub percent: u8,
    /// Rows (keys, records) written so far.
    pub done: u64,
    /// Rows expected.
    pub total: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExportView {
    pub id: String,
    /// The cancellation case the export belongs to, if any.
    pub case_id: Option<String>,
    /// queued, building, ready, downloading, downloaded, expired, deleted
    /// or failed.
    pub state: String,
    pub next_step: String,
    /// The whole export, 0-100.
    pub percent: u8,
    /// Per system of the data map (manual systems are not exported).
    pub systems: Vec<SystemProgressView>,
    /// The link works once (true) or until it expires (false).
    pub single_use: bool,
    pub requested_by: String,
    pub created_at: String,
    pub ready_at: Option<String>,
    /// When the link stops working and the copy is deleted.
    pub expires_at: String,
    /// Size of the archive (ZIP) in bytes, once ready.
    pub bytes: Option<u64>,
    pub downloads: u32,
    /// Builds started (more than one after a crash or a failure).
    pub attempts: u32,
    /// Datasets and files in the archive, once ready.
    #[schema(value_type = Object)]
    pub summary: Option<serde_json::Value>,
    /// Why the last attempt failed (no personal data).
    pub last_error: Option<String>,
    /// The download link to give the user (in answers to the request and
    /// to the platform that made it).
    pub download_url: Option<String>,
}

fn view(st: &AppState, e: &ExportRow, with_link: bool) -> ExportView {
    ExportView {
        id: e.id.clone(),
        case_id: e.case_id.clone(),
        state: e.state.as_str().into(),
        next_step: e.state.next_step().into(),
        percent: if matches!(
            e.state,
            ExportState::Ready
                | ExportState::Downloading
                | ExportState::Downloaded
                | ExportState::Expired
                | ExportState::Deleted
        ) {
            100
        } else {
            overall_percent(&e.progress)
        },
        systems: e
            .progress
            .iter()
            .map(|p| SystemProgressView {
                system: p.system.clone(),
                percent: p.percent(),
                done: p.done,
                total: p.total,
            })
            .collect(),
        single_use: e.single_use,
        requested_by: e.requested_by.clone(),
        created_at: e.created_at.to_string(),
        ready_at: e.ready_at.map(|t| t.to_string()),
        expires_at: e.expires_at.to_string(),
        bytes: e.bytes,
        downloads: e.downloads,
        attempts: e.attempts,
        summary: e.summary.clone(),
        last_error: e.last_error.clone(),
        download_url: (with_link && !e.state.is_terminal()).then(|| {
            format!(
                "{}/v1/exports/{}/download?token={}",
                st.public_url,
                e.id,
                st.secrets.export_token(&e.id)
            )
        }),
    }
}

/// The exports of a case, for the case view.
pub async fn views_for_case(st: &AppState, case_id: &str) -> Result<Vec<ExportView>, Problem> {
    Ok(st
        .store
        .exports_for_case(case_id)
        .await?
        .iter()
        .map(|e| view(st, e, true))
        .collect())
}

// ----------------------------------------------------------------- requests

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// The platform's id of the account.
    #[schema(value_type = String)]
    pub subject_id: SubjectId,
    /// The link works once (default) or until it expires.
    pub single_use: Option<bool>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseExportRequest {
    /// The link works once (default) or until it expires.
    pub single_use: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsoleExportRequest {
    #[schema(value_type = String)]
    pub subject_id: SubjectId,
    /// The case the holder called about, if any.
    pub case_id: Option<String>,
    pub single_use: Option<bool>,
    /// Without a case: the platform (API key name) of the account; agents
    /// of one platform leave it out.
    #[serde(default)]
    pub platform: Option<String>,
}

struct Request {
    subject: SubjectId,
    case_id: Option<String>,
    principal: String,
    requested_by: String,
    single_use: bool,
    idem: String,
}

/// Records an export request; answers 202 with the export (and its link),
/// or 200 with the export an earlier request with the same key made.
async fn request(st: &AppState, r: Request) -> Result<Response, Problem> {
    if !st.systems.subject_exists(&r.subject).await? {
        return Err(Problem::unprocessable(
            "no account with this subject_id exists on the platform",
        )
        .field("subject_id"));
    }
    let subject_ref = st.secrets.pseudonym(r.subject.expose());
    // An agent never sees the link: the copy goes to the user.
    let with_link = !r.requested_by.starts_with("agent:");
    // A UUID like every id in a path (the OpenAPI document says so).
    let id = uuid::Uuid::now_v7().to_string();
    let key = lethe_export::Key::generate();
    let sealed = st
        .vault
        .encrypt(&vault_subject(&id), &key_field()?, key.as_bytes())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "sealing an export key failed");
            Problem::internal()
        })?;
    let now = st.clock.now();
    let row = st
        .store
        .insert_export(
            NewExport {
                id: id.clone(),
                subject_id: r.subject.expose().to_owned(),
                subject_ref: subject_ref.clone(),
                case_id: r.case_id.clone(),
                principal: r.principal.clone(),
                requested_by: r.requested_by,
                single_use: r.single_use,
                idem_key: crate::http::middleware::hash_api_key(&format!(
                    "export\n{}\n{}",
                    r.principal, r.idem
                )),
                key_sealed: lethe_vault::to_text(&sealed),
                expires_at: st.export_ttl.expires_at(now),
                max_attempts: st.export.max_attempts,
            },
            now,
        )
        .await?;
    if row.id != id {
        // A retry of an earlier request: the same export, if it asked the same.
        let _ = st
            .vault
            .destroy(&vault_subject(&id), &now.to_string())
            .await;
        if row.subject_ref != subject_ref || row.case_id != r.case_id {
            return Err(lethe_store::StoreError::IdempotencyConflict.into());
        }
        return Ok((StatusCode::OK, axum::Json(view(st, &row, with_link))).into_response());
    }
    st.export_wake.notify_waiters();
    Ok((StatusCode::ACCEPTED, axum::Json(view(st, &row, with_link))).into_response())
}

fn idem_key(headers: &HeaderMap) -> Result<String, Problem> {
    crate::http::middleware::idem_key_of(headers)
}

/// Ask for a copy of an account's data (an access request of its own). The
/// answer carries the download link to give the user; it works once the
/// export is `ready`.
#[utoipa::path(post, path = "/v1/exports", tag = "exports", request_body = ExportRequest,
    responses((status = 202, body = ExportView), (status = 200, description = "a retry: the export made earlier", body = ExportView), (status = 409, body = Problem)), security(("api_key" = [])))]
pub async fn create(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ExportRequest>,
) -> Result<Response, Problem> {
    let idem = idem_key(&headers)?;
    request(
        &st,
        Request {
            subject: body.subject_id,
            case_id: None,
            requested_by: format!("platform:{}", p.0),
            principal: p.0,
            single_use: body.single_use.unwrap_or(true),
            idem,
        },
    )
    .await
}

/// Take a copy before cancelling: the export step of the cancellation
/// flow. Possible until the erasure starts.
#[utoipa::path(post, path = "/v1/cases/{id}/exports", tag = "exports", params(("id" = String, Path)), request_body = CaseExportRequest,
    responses((status = 202, body = ExportView), (status = 409, body = Problem)), security(("api_key" = [])))]
pub async fn create_for_case(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CaseExportRequest>,
) -> Result<Response, Problem> {
    let idem = idem_key(&headers)?;
    let case = crate::http::ownership::owned_case(&st, &p, &id).await?;
    still_open(&case)?;
    request(
        &st,
        Request {
            subject: case.subject.clone(),
            case_id: Some(case.id.to_string()),
            requested_by: format!("platform:{}", p.0),
            principal: p.0,
            single_use: body.single_use.unwrap_or(true),
            idem,
        },
    )
    .await
}

/// A copy belongs to a case only until its erasure starts.
fn still_open(case: &lethe_domain::Case) -> Result<(), Problem> {
    if case.state.is_terminal() || case.state == lethe_domain::CaseState::Erasing {
        return Err(Problem::conflict(
            "export-too-late",
            format!(
                "the case is {}; a copy can be taken only before the erasure starts",
                case.state
            ),
        ));
    }
    Ok(())
}

async fn owned(st: &AppState, principal: &str, id: &str) -> Result<ExportRow, Problem> {
    match st.store.export(id).await? {
        Some(e) if e.principal == principal => Ok(e),
        _ => Err(Problem::not_found("no export with this id")
            .fix("use the id returned when the export was requested")),
    }
}

/// Read an export: its state, the percentage done per system, the link.
#[utoipa::path(get, path = "/v1/exports/{id}", tag = "exports", params(("id" = String, Path)),
    responses((status = 200, body = ExportView), (status = 404, body = Problem)), security(("api_key" = [])))]
pub async fn read(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let e = owned(&st, &p.0, &id).await?;
    Ok(axum::Json(view(&st, &e, true)).into_response())
}

/// Delete an export now (the user no longer wants the copy kept).
#[utoipa::path(delete, path = "/v1/exports/{id}", tag = "exports", params(("id" = String, Path)),
    responses((status = 200, body = ExportView), (status = 404, body = Problem)), security(("api_key" = [])))]
pub async fn delete(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let e = owned(&st, &p.0, &id).await?;
    let now = st.clock.now();
    st.store
        .delete_export(&e.id, format!("platform:{}", p.0), "request", now)
        .await?;
    let e = st
        .store
        .export(&e.id)
        .await?
        .ok_or_else(Problem::internal)?;
    clean(&st, &e).await;
    let e = st
        .store
        .export(&e.id)
        .await?
        .ok_or_else(Problem::internal)?;
    Ok(axum::Json(view(&st, &e, false)).into_response())
}

/// An agent asks for a copy on the holder's behalf (hotline or counter,
/// after checking who is calling).
#[utoipa::path(post, path = "/v1/console/exports", tag = "console", request_body = ConsoleExportRequest,
    responses((status = 202, body = ExportView)), security(("console" = [])))]
pub async fn console_create(
    State(st): State<AppState>,
    Extension(a): Extension<Agent>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ConsoleExportRequest>,
) -> Result<Response, Problem> {
    require(&a, "export")?;
    // Console requests may repeat with an Idempotency-Key; without one,
    // each request is new.
    let idem = if headers.contains_key("idempotency-key") {
        idem_key(&headers)?
    } else {
        uuid::Uuid::new_v4().to_string()
    };
    // The copy belongs to the platform of the case, or (without a case)
    // to the agent's platform: that platform's key reads it, no other.
    let platform = if let Some(c) = &body.case_id {
        let id = lethe_domain::CaseId::parse(c)
            .map_err(|e| Problem::unprocessable(format!("case_id {e}")).field("case_id"))?;
        let no_case =
            || Problem::unprocessable("no case of this account has this id").field("case_id");
        let (owner, case) = st
            .store
            .get_case_and_principal(id)
            .await?
            .filter(|(o, c)| a.serves(o) && c.subject == body.subject_id)
            .ok_or_else(no_case)?;
        still_open(&case)?;
        owner
    } else {
        crate::http::agent::platform_for(&st, &a, body.platform.as_deref()).await?
    };
    request(
        &st,
        Request {
            subject: body.subject_id,
            case_id: body.case_id,
            principal: platform,
            requested_by: format!("agent:{}", a.id),
            single_use: body.single_use.unwrap_or(true),
            idem,
        },
    )
    .await
}

/// An export as the console shows it.
#[utoipa::path(get, path = "/v1/console/exports/{id}", tag = "console", params(("id" = String, Path)),
    responses((status = 200, body = ExportView)), security(("console" = [])))]
pub async fn console_read(
    State(st): State<AppState>,
    Extension(a): Extension<Agent>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    require(&a, "read_case")?;
    let e = st
        .store
        .export(&id)
        .await?
        .filter(|e| a.serves(&e.principal))
        .ok_or_else(|| Problem::not_found("no export with this id"))?;
    // Never the link: the copy goes to the user through the platform.
    Ok(axum::Json(view(&st, &e, false)).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DownloadQuery {
    /// The token of the link.
    pub token: String,
}

fn gone(detail: impl Into<String>, fix: &str) -> Problem {
    Problem::new(StatusCode::GONE, "export-gone", "The copy is gone", detail).fix(fix)
}

/// Download the copy through its link (no API key: the link is the
/// credential). A single-use link works for one complete download.
#[utoipa::path(get, path = "/v1/exports/{id}/download", tag = "exports", params(("id" = String, Path), DownloadQuery),
    responses((status = 200, description = "the ZIP archive", content_type = "application/zip"), (status = 404, body = Problem), (status = 409, body = Problem), (status = 410, body = Problem)))]
pub async fn download(
    State(st): State<AppState>,
    Path(id): Path<String>,
    q: crate::http::extract::ApiQuery<DownloadQuery>,
) -> Result<Response, Problem> {
    let no_link = || {
        Problem::not_found("no export link matches")
            .fix("use the complete link you were given, or ask for a new copy")
    };
    if id.len() > 64 || !st.secrets.export_token_ok(&id, &q.0.token) {
        return Err(no_link());
    }
    let e = st.store.export(&id).await?.ok_or_else(no_link)?;
    let now = st.clock.now();
    let ask_again = "ask for a new copy of your data";
    match e.state {
        ExportState::Queued | ExportState::Building => {
            return Err(Problem::conflict(
                "export-not-ready",
                format!(
                    "the copy is being prepared ({}% done)",
                    overall_percent(&e.progress)
                ),
            )
            .fix("try again in a moment")
            .retry_after(5));
        }
        ExportState::Downloading => {
            return Err(Problem::conflict(
                "export-in-use",
                "this single-use link is being downloaded right now",
            ));
        }
        ExportState::Downloaded => {
            return Err(gone(
                "this link worked once and has been used; the copy was deleted",
                ask_again,
            ));
        }
        ExportState::Expired => {
            return Err(gone(
                format!(
                    "this link expired at {}; the copy was deleted",
                    e.expires_at
                ),
                ask_again,
            ));
        }
        ExportState::Deleted => return Err(gone("the copy was deleted", ask_again)),
        ExportState::Failed => return Err(gone("the copy could not be made", ask_again)),
        ExportState::Ready if e.expires_at <= now => {
            return Err(gone(
                format!("this link expired at {}", e.expires_at),
                ask_again,
            ));
        }
        ExportState::Ready => {}
    }
    let Some(e) = st.store.begin_download(&id, now).await? else {
        return Err(
            Problem::conflict("export-in-use", "the link cannot be used right now").retry_after(5),
        );
    };
    let key = match open_key(&st, &e).await {
        Ok(k) => k,
        Err(p) => {
            let _ = st.store.release_download(&id).await;
            return Err(p);
        }
    };
    let file = match std::fs::File::open(sealed_path(&st, &id)) {
        Ok(f) => f,
        Err(err) => {
            tracing::error!(export = %id, error = %err, "an export's file is missing");
            let _ = st.store.release_download(&id).await;
            return Err(Problem::internal());
        }
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(CHUNK_QUEUE);
    let reader = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let mut r =
            lethe_export::open(&key, std::io::BufReader::new(file)).map_err(|e| e.to_string())?;
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = std::io::Read::read(&mut r, &mut buf).map_err(|e| {
                let _ = tx.blocking_send(Err(std::io::Error::other("the archive is damaged")));
                e.to_string()
            })?;
            if n == 0 {
                return Ok(());
            }
            buf.truncate(n);
            tx.blocking_send(Ok(Bytes::from(buf)))
                .map_err(|_| "the client went away".to_owned())?;
        }
    });
    {
        let id = id.clone();
        tokio::spawn(async move {
            // The reader's end is not the client's: the link is spent only
            // when the whole body was handed to the connection (below).
            match reader.await {
                Ok(Ok(())) => {}
                Ok(Err(why)) => {
                    tracing::warn!(export = %id, why, "a download broke off; the link works again");
                }
                Err(_) => tracing::warn!(export = %id, "the archive reader stopped"),
            }
        });
    }
    let guard = DownloadGuard {
        st: st.clone(),
        id: id.clone(),
        total: e.bytes,
        sent: 0,
        ended: std::cell::Cell::new(false),
    };
    let stream = futures_util::stream::unfold((rx, guard), |(mut rx, mut guard)| async move {
        match rx.recv().await {
            Some(item) => {
                if let Ok(b) = &item {
                    guard.sent += b.len() as u64;
                }
                Some((item, (rx, guard)))
            }
            None => {
                guard.ended.set(true);
                None
            }
        }
    });
    let mut resp = Body::from_stream(stream).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"lethe-export-{}.zip\"",
        e.id
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Some(n) = e.bytes
        && let Ok(v) = HeaderValue::from_str(&n.to_string())
    {
        h.insert(header::CONTENT_LENGTH, v);
    }
    Ok(resp)
}

/// Decides, when a download's body is dropped, whether the archive went
/// out whole: then the single-use link is spent; else (the client went
/// away, the archive was damaged) the link works again.
struct DownloadGuard {
    st: AppState,
    id: String,
    /// The archive's size (the Content-Length sent).
    total: Option<u64>,
    /// Bytes handed to the connection.
    sent: u64,
    /// The archive's end was reached (read when the guard drops).
    ended: std::cell::Cell<bool>,
}

impl Drop for DownloadGuard {
    fn drop(&mut self) {
        // hyper stops asking for the body once Content-Length bytes went
        // out, so a whole download is one whose every byte was handed over.
        let whole = self.ended.get() || self.total.is_some_and(|t| self.sent >= t);
        let (st, id) = (self.st.clone(), self.id.clone());
        // Drop runs inside the runtime (the body is polled by hyper); a
        // drop outside one has nothing to record into and is skipped.
        let Ok(h) = tokio::runtime::Handle::try_current() else {
            return;
        };
        h.spawn(async move {
            if whole {
                if let Err(e) = st.store.finish_download(&id, st.clock.now()).await {
                    tracing::error!(export = %id, error = %e, "recording a download failed");
                }
                if let Ok(Some(e)) = st.store.export(&id).await
                    && e.state.is_terminal()
                {
                    clean(&st, &e).await;
                }
            } else {
                tracing::warn!(export = %id, "a download broke off; the link works again");
                let _ = st.store.release_download(&id).await;
            }
        });
    }
}

async fn open_key(st: &AppState, e: &ExportRow) -> Result<lethe_export::Key, Problem> {
    let sealed = e
        .key_sealed
        .as_deref()
        .ok_or_else(|| gone("the copy was deleted", "ask for a new copy of your data"))?;
    let env = lethe_vault::from_text(sealed).map_err(|_| Problem::internal())?;
    let key = st
        .vault
        .decrypt(&vault_subject(&e.id), &key_field()?, &env)
        .await
        .map_err(|err| match err {
            lethe_vault::VaultError::Erased { .. } => {
                gone("the copy was deleted", "ask for a new copy of your data")
            }
            other => {
                tracing::error!(export = %e.id, error = %other, "opening an export key failed");
                Problem::internal()
            }
        })?;
    let bytes: [u8; lethe_export::KEY_LEN] =
        key.as_slice().try_into().map_err(|_| Problem::internal())?;
    Ok(lethe_export::Key::from_bytes(bytes))
}

// ------------------------------------------------------------- housekeeping

/// Removes an export's files and destroys its key, then marks it cleaned.
/// Idempotent; a failure is retried by the next purge.
pub async fn clean(st: &AppState, e: &ExportRow) {
    if !e.state.is_terminal() {
        return;
    }
    for p in [sealed_path(st, &e.id), part_path(st, &e.id)] {
        if let Err(err) = std::fs::remove_file(&p)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::error!(export = %e.id, error = %err, "removing an export file failed; will retry");
            return;
        }
    }
    remove_spools(st, &e.id);
    let now = st.clock.now();
    if let Err(err) = st
        .vault
        .destroy(&vault_subject(&e.id), &now.to_string())
        .await
    {
        tracing::error!(export = %e.id, error = %err, "destroying an export key failed; will retry");
        return;
    }
    if let Err(err) = st.store.export_cleaned(&e.id, now).await {
        tracing::error!(export = %e.id, error = %err, "recording an export's cleanup failed");
    }
}

fn remove_spools(st: &AppState, id: &str) {
    let prefix = format!("{id}.");
    if let Ok(entries) = std::fs::read_dir(spool_dir(st)) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Expires links whose time ran out and removes what ended exports left.
pub async fn purge(st: &AppState) {
    let now = st.clock.now();
    match st.store.expire_exports(now, PURGE_BATCH).await {
        Ok(n) if n > 0 => tracing::info!(exports = n, "export links expired"),
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "expiring exports failed"),
    }
    match st.store.exports_to_clean(PURGE_BATCH).await {
        Ok(list) => {
            for e in list {
                clean(st, &e).await;
            }
        }
        Err(e) => tracing::error!(error = %e, "reading exports to clean failed"),
    }
}

/// Deletes every export of a subject that is not over, files and keys
/// included — run by the erasure before it can complete. Returns how many.
pub async fn delete_for_subject(st: &AppState, subject: &str) -> Result<u64, String> {
    let sref = st.secrets.pseudonym(subject);
    let now = st.clock.now();
    let mut n = 0;
    for e in st
        .store
        .open_exports_of(&sref)
        .await
        .map_err(|e| e.to_string())?
    {
        if st
            .store
            .delete_export(&e.id, "worker".into(), "erasure", now)
            .await
            .map_err(|e| e.to_string())?
        {
            n += 1;
        }
        let e = st
            .store
            .export(&e.id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("an export vanished")?;
        clean(st, &e).await;
        if e.state.is_terminal()
            && st
                .store
                .export(&e.id)
                .await
                .map_err(|e| e.to_string())?
                .is_some_and(|e| e.cleaned_at.is_none())
        {
            return Err(format!("export {} could not be removed yet", e.id));
        }
    }
    Ok(n)
}

// ------------------------------------------------------------------ builder

pub fn spawn(st: AppState, shutdown: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..st.export.concurrency)
        .map(|_| tokio::spawn(builder(st.clone(), shutdown.clone())))
        .collect()
}

async fn builder(st: AppState, mut shutdown: watch::Receiver<bool>) {
    let lease = SignedDuration::from_secs(st.worker.lease_secs);
    loop {
        if *shutdown.borrow() {
            return;
        }
        match st.store.claim_export(lethe_store::now_wall(), lease).await {
            Ok(Some(e)) => {
                let id = e.id.clone();
                tracing::info!(export = %id, attempt = e.attempts, "building an export");
                if let Err(err) = build(&st, e).await {
                    remove_partial(&st, &id);
                    let backoff = SignedDuration::from_secs(5);
                    let at = lethe_store::now_wall()
                        .checked_add(backoff)
                        .unwrap_or(lethe_store::now_wall());
                    tracing::warn!(export = %id, error = %err, "building an export failed");
                    match st.store.export_failed(&id, err, at, st.clock.now()).await {
                        Ok(s) if s.is_terminal() => {
                            if let Ok(Some(e)) = st.store.export(&id).await {
                                clean(&st, &e).await;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::error!(export = %id, error = %e, "recording an export failure failed")
                        }
                    }
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "claiming an export failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = st.export_wake.notified() => {}
            _ = shutdown.changed() => {}
        }
    }
}

fn remove_partial(st: &AppState, id: &str) {
    let _ = std::fs::remove_file(part_path(st, id));
    remove_spools(st, id);
}

/// What the connectors send the archive writer.
enum Msg {
    Begin {
        system: String,
        name: String,
        columns: Vec<String>,
    },
    /// A row a connector returned whole (Redis, HTTP).
    Row(serde_json::Map<String, serde_json::Value>),
    /// Database rows, each as the text of its JSON object.
    Rows(Vec<lethe_connect::RowJson>),
    End,
    /// Everything was sent: close the archive. Without it, the writer
    /// treats a closed channel as an abort.
    Finish,
}

/// Counts the archive's bytes and stops at the limit.
struct Counting<W: Write> {
    inner: W,
    bytes: u64,
    max: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes + buf.len() as u64 > self.max {
            return Err(std::io::Error::other(format!(
                "the archive would exceed export.max_bytes ({} bytes)",
                self.max
            )));
        }
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Archive bytes written between two background write-backs.
const WRITE_BACK_EVERY: u64 = 64 * 1024 * 1024;

/// The archive file, written back to disk while it is written: every
/// [`WRITE_BACK_EVERY`] bytes a thread of its own syncs what is there, so
/// the sync at the end (before the export is `ready`) finds little left and
/// the disk works while the cores compress. Without it the kernel holds
/// gigabytes of dirty pages and writes them all during that last sync.
struct WriteBack {
    file: std::fs::File,
    since: u64,
    /// One sync asked for at a time; a request while one runs is dropped.
    tx: Option<std::sync::mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WriteBack {
    fn new(file: std::fs::File) -> Self {
        // Without a second handle there is no background sync; the final
        // one still makes the file durable.
        let (tx, thread) = match file.try_clone() {
            Ok(f) => {
                let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
                let thread = std::thread::spawn(move || {
                    for () in rx {
                        if let Err(e) = f.sync_data() {
                            tracing::warn!(error = %e, "writing an archive back to disk failed; the final sync will retry");
                        }
                    }
                });
                (Some(tx), Some(thread))
            }
            Err(_) => (None, None),
        };
        Self {
            file,
            since: 0,
            tx,
            thread,
        }
    }

    /// Waits for the background sync, then syncs the rest.
    fn finish(mut self) -> std::io::Result<()> {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.file.sync_all()
    }
}

impl Write for WriteBack {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.since += n as u64;
        if self.since >= WRITE_BACK_EVERY {
            self.since = 0;
            if let Some(tx) = &self.tx {
                let _ = tx.try_send(());
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// What a finished archive is.
#[derive(Debug)]
pub struct Built {
    pub manifest: lethe_export::Manifest,
    /// Size of the ZIP (what a download sends).
    pub bytes: u64,
}

/// Writes the archive from messages, sealed, into `path` (blocking).
fn write_archive(t: Target, mut rx: mpsc::Receiver<Msg>) -> Result<Built, String> {
    let err = |e: &dyn std::fmt::Display| format!("writing the archive: {e}");
    let file = std::fs::File::create(&t.path).map_err(|e| err(&e))?;
    let sealed = lethe_export::seal(
        &t.key,
        std::io::BufWriter::with_capacity(256 * 1024, WriteBack::new(file)),
    )
    .map_err(|e| err(&e))?;
    let counting = Counting {
        inner: sealed,
        bytes: 0,
        max: t.max_bytes,
    };
    let mut a =
        lethe_export::Archive::new(counting, &t.export_id, &t.created_at).spool_dir(t.spool);
    loop {
        match rx.blocking_recv() {
            Some(Msg::Begin {
                system,
                name,
                columns,
            }) => a
                .begin_dataset(&system, &name, &columns)
                .map_err(|e| err(&e))?,
            Some(Msg::Row(r)) => a.row(&r).map_err(|e| err(&e))?,
            Some(Msg::Rows(rows)) => {
                for r in rows {
                    a.row_json(r.as_str()).map_err(|e| err(&e))?;
                }
            }
            Some(Msg::End) => {
                a.end_dataset().map_err(|e| err(&e))?;
            }
            Some(Msg::Finish) => break,
            None => return Err("the export was stopped".into()),
        }
    }
    let (counting, manifest) = a.finish().map_err(|e| err(&e))?;
    let bytes = counting.bytes;
    let mut buf = counting.inner.finish().map_err(|e| err(&e))?;
    buf.flush().map_err(|e| err(&e))?;
    let file = buf.into_inner().map_err(|e| err(&e.error()))?;
    file.finish().map_err(|e| err(&e))?;
    Ok(Built { manifest, bytes })
}

/// Where and how one archive is written.
pub struct Target {
    pub export_id: String,
    pub created_at: String,
    /// The sealed file (written whole, no seeking).
    pub path: PathBuf,
    /// Where CSV spool files go (sealed with keys that live in memory only).
    pub spool: PathBuf,
    pub key: lethe_export::Key,
    pub max_bytes: u64,
}

/// Builds an export from the platform's systems into a sealed file.
/// Progress goes to `progress` as rows are written; `cancel` stops it.
pub async fn build_to_file(
    systems: &crate::outbound::systems::Systems,
    subject: &SubjectId,
    t: Target,
    progress: Arc<Mutex<Vec<SystemProgress>>>,
    cancel: Arc<AtomicBool>,
) -> Result<Built, String> {
    let (tx, rx) = mpsc::channel::<Msg>(ROW_QUEUE);
    let export_id = t.export_id.clone();
    let writer = tokio::task::spawn_blocking(move || write_archive(t, rx));
    let sent = feed(systems, subject, &export_id, &tx, &progress, &cancel).await;
    if sent.is_ok() {
        let _ = tx.send(Msg::Finish).await;
    }
    drop(tx);
    let written = writer
        .await
        .map_err(|_| "the archive writer stopped unexpectedly".to_owned())?;
    // The writer's own error explains a failed send better than the send.
    match (sent, written) {
        (Ok(()), w) => w,
        (Err(_), Err(w)) if w != "the export was stopped" => Err(w),
        (Err(s), _) => Err(s),
    }
}

fn set<F: FnOnce(&mut SystemProgress)>(p: &Mutex<Vec<SystemProgress>>, i: usize, f: F) {
    // A poisoned lock only means a panic elsewhere mid-update; progress is
    // advisory, so keep going with what is there.
    let mut g = p.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = g.get_mut(i) {
        f(s);
    }
}

async fn feed(
    systems: &crate::outbound::systems::Systems,
    subject: &SubjectId,
    export_id: &str,
    tx: &mpsc::Sender<Msg>,
    progress: &Mutex<Vec<SystemProgress>>,
    cancel: &AtomicBool,
) -> Result<(), String> {
    let gone = || "the archive writer stopped".to_owned();
    let names: Vec<String> = systems
        .names()
        .filter(|n| {
            !matches!(
                systems.get(n),
                Some(Connector::Manual(_) | Connector::Event) | None
            )
        })
        .map(str::to_owned)
        .collect();
    {
        let mut g = progress.lock().unwrap_or_else(|e| e.into_inner());
        *g = names
            .iter()
            .map(|n| SystemProgress {
                system: n.clone(),
                done: 0,
                total: 0,
                finished: false,
            })
            .collect();
    }
    for (i, name) in names.iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return Err("the export was deleted".into());
        }
        match systems.get(name) {
            Some(Connector::Sql(s)) => {
                let plan = s.export_plan(subject).await.map_err(|e| e.to_string())?;
                let total = plan.iter().map(|d| d.rows).sum();
                set(progress, i, |p| p.total = total);
                for d in plan {
                    tx.send(Msg::Begin {
                        system: name.clone(),
                        name: d.name.clone(),
                        columns: d.columns.clone(),
                    })
                    .await
                    .map_err(|_| gone())?;
                    let mut rows = s.export_rows(subject, &d.name).map_err(|e| e.to_string())?;
                    let mut batch = Vec::with_capacity(ROW_BATCH_ROWS);
                    let mut bytes = 0;
                    loop {
                        let row = rows.try_next().await.map_err(|e| e.to_string())?;
                        let ended = row.is_none();
                        if let Some(r) = row {
                            bytes += r.as_str().len();
                            batch.push(r);
                        }
                        if !ended && batch.len() < ROW_BATCH_ROWS && bytes < ROW_BATCH_BYTES {
                            continue;
                        }
                        if cancel.load(Ordering::Relaxed) {
                            return Err("the export was deleted".into());
                        }
                        if !batch.is_empty() {
                            let n = batch.len() as u64;
                            let full =
                                std::mem::replace(&mut batch, Vec::with_capacity(ROW_BATCH_ROWS));
                            bytes = 0;
                            tx.send(Msg::Rows(full)).await.map_err(|_| gone())?;
                            set(progress, i, |p| {
                                p.done += n;
                                p.total = p.total.max(p.done);
                            });
                        }
                        if ended {
                            break;
                        }
                    }
                    tx.send(Msg::End).await.map_err(|_| gone())?;
                }
            }
            Some(Connector::Redis(r)) => {
                let data = r
                    .export_datasets(subject)
                    .await
                    .map_err(|e| e.to_string())?;
                send_whole(name, i, data, tx, progress).await?;
            }
            Some(Connector::Http(h)) => {
                let data = h
                    .export_datasets(export_id, subject)
                    .await
                    .map_err(|e| e.to_string())?;
                send_whole(name, i, data, tx, progress).await?;
            }
            Some(Connector::Manual(_) | Connector::Event) | None => {}
        }
        set(progress, i, |p| p.finished = true);
    }
    Ok(())
}

async fn send_whole(
    system: &str,
    i: usize,
    data: Vec<(lethe_connect::ExportDataset, lethe_connect::ExportRows)>,
    tx: &mpsc::Sender<Msg>,
    progress: &Mutex<Vec<SystemProgress>>,
) -> Result<(), String> {
    let gone = || "the archive writer stopped".to_owned();
    let total = data.iter().map(|(d, _)| d.rows).sum();
    set(progress, i, |p| p.total = total);
    for (d, rows) in data {
        tx.send(Msg::Begin {
            system: system.to_owned(),
            name: d.name,
            columns: d.columns,
        })
        .await
        .map_err(|_| gone())?;
        for r in rows {
            tx.send(Msg::Row(r)).await.map_err(|_| gone())?;
            set(progress, i, |p| p.done += 1);
        }
        tx.send(Msg::End).await.map_err(|_| gone())?;
    }
    Ok(())
}

/// One export, from claim to `ready`: the file is written as `.part` and
/// renamed when complete, so a crash leaves only a part file, which the
/// next attempt removes before it starts again.
async fn build(st: &AppState, e: ExportRow) -> Result<(), String> {
    let subject = e
        .subject_id
        .as_deref()
        .and_then(|s| SubjectId::parse(s).ok())
        .ok_or("the export has no subject any more")?;
    std::fs::create_dir_all(spool_dir(st))
        .map_err(|e| format!("creating the export directory: {e}"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir(st), std::fs::Permissions::from_mode(0o700));
    }
    remove_partial(st, &e.id);
    let key = open_key(st, &e).await.map_err(|p| p.detail)?;
    let progress = Arc::new(Mutex::new(Vec::new()));
    let cancel = Arc::new(AtomicBool::new(false));
    // Records progress and renews the lease while the export is built.
    let ticker = {
        let (st, id, progress, cancel) =
            (st.clone(), e.id.clone(), progress.clone(), cancel.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROGRESS_EVERY).await;
                let snapshot = progress.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let until = lethe_store::now_wall()
                    .checked_add(SignedDuration::from_secs(st.worker.lease_secs))
                    .unwrap_or(lethe_store::now_wall());
                match st.store.export_progress(&id, snapshot, until).await {
                    Ok(true) => {}
                    Ok(false) => {
                        cancel.store(true, Ordering::Relaxed);
                        return;
                    }
                    Err(err) => {
                        tracing::warn!(export = %id, error = %err, "recording export progress failed")
                    }
                }
            }
        })
    };
    let part = part_path(st, &e.id);
    let built = build_to_file(
        &st.systems,
        &subject,
        Target {
            export_id: e.id.clone(),
            created_at: e.created_at.to_string(),
            path: part.clone(),
            spool: spool_dir(st),
            key,
            max_bytes: st.export.max_bytes,
        },
        progress.clone(),
        cancel.clone(),
    )
    .await;
    ticker.abort();
    let built = built?;
    std::fs::rename(&part, sealed_path(st, &e.id))
        .map_err(|e| format!("moving the finished archive into place: {e}"))?;
    let snapshot = progress.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let summary = serde_json::json!({
        "datasets": built.manifest.datasets.iter().map(|d| serde_json::json!({
            "system": d.system, "name": d.name, "rows": d.rows,
        })).collect::<Vec<_>>(),
        "files": built.manifest.files.len() + 1,
        "bytes": built.bytes,
    });
    let ready = st
        .store
        .export_ready(&e.id, snapshot, built.bytes, summary, st.clock.now())
        .await
        .map_err(|e| e.to_string())?;
    if !ready {
        // Deleted or expired while it was built: nothing may stay.
        let _ = std::fs::remove_file(sealed_path(st, &e.id));
        if let Ok(Some(e)) = st.store.export(&e.id).await {
            clean(st, &e).await;
        }
        return Ok(());
    }
    tracing::info!(export = %e.id, bytes = built.bytes, "export ready");
    Ok(())
}
