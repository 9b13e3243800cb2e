//! Lethe's server: the HTTP API (axum) and the background worker, wired to
//! the store, the platform's systems and a clock.

// `Problem` is the error response itself (RFC 9457 body), built once per
// failed request; boxing it would only add an allocation to every error path.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod audit_api;
pub mod claims_api;
pub mod config;
pub mod console;
pub mod demo_platform;
pub mod drift_api;
pub mod erasure_api;
pub mod events;
pub mod export_api;
pub mod identity_api;
pub mod jwt;
pub mod metrics;
pub mod middleware;
pub mod openapi_doc;
pub mod ops_api;
pub mod pages;
pub mod problem;
pub mod providers;
pub mod purge;
pub mod reapply;
pub mod reapply_api;
pub mod report;
pub mod secrets;
pub mod sequencer;
pub mod support;
pub mod systems;
pub mod totp;
pub mod transparency;
pub mod vault_api;
pub mod webhook;
pub mod worker;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{MethodRouter, get, post};
use jiff::{SignedDuration, Timestamp};
use lethe_connect::DataMap;
use lethe_domain::{Clock, ManualClock, Policy};
use lethe_store::Store;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_swagger_ui::SwaggerUi;

pub use config::Config;
pub use secrets::Secrets;
pub use systems::Systems;

/// The production clock: system time, and nothing can move it.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A connection counted against its client address while it is open.
struct ClientSlot {
    map: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
    ip: std::net::IpAddr,
    /// Connections of this address, this one included.
    count: usize,
}

impl ClientSlot {
    fn take(
        map: &Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
        ip: std::net::IpAddr,
    ) -> Self {
        let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_insert(0);
        *n += 1;
        Self {
            map: map.clone(),
            ip,
            count: *n,
        }
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// A client must send its whole request head within this time.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest body of a vault batch call.
pub const VAULT_BODY_LIMIT: usize = 96 * 1024 * 1024;

/// What every handler, page and worker shares: one allocation, so a
/// request's copy of the state is one reference count.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub store: Store,
    /// This instance's audit-log sequencer, for the metrics.
    pub sequencer: Arc<sequencer::SequencerStats>,
    pub clock: Arc<dyn Clock>,
    /// Present only in demo mode: the clock the dev routes can move.
    pub manual_clock: Option<Arc<ManualClock>>,
    pub clock_file: Option<PathBuf>,
    pub datamap: Arc<DataMap>,
    pub systems: Arc<Systems>,
    pub secrets: Secrets,
    pub vault: Arc<lethe_vault::Vault>,
    /// Signs tree heads, receipts and reports.
    pub signer: Arc<lethe_ledger::Signer>,
    pub identity: config::IdentityConfig,
    pub metrics: Arc<metrics::Metrics>,
    /// Where the store and the key files live.
    pub data_dir: PathBuf,
    /// The key of the app's session tokens, when configured.
    pub session_key: Option<jwt::Key>,
    /// Outbound HTTP (providers, settlement instructions).
    pub http: reqwest::Client,
    /// Where the platform's services reach Lethe (HTTP-system callbacks).
    pub public_url: String,
    /// The demo points settlement instructions and notifications at its
    /// own demo platform.
    pub demo_platform: Arc<std::sync::OnceLock<demo_platform::Link>>,
    pub calendar: Arc<CalendarState>,
    pub tz: jiff::tz::TimeZone,
    pub tombstones: config::TombstoneConfig,
    pub notifications: config::NotificationConfig,
    pub policy: Policy,
    pub otp_resend: SignedDuration,
    pub otp_lockout: SignedDuration,
    pub limits: config::Limits,
    pub worker: config::WorkerConfig,
    pub export: config::ExportConfig,
    pub export_ttl: lethe_domain::export::LinkTtl,
    /// Wakes idle export builders when an export is requested.
    pub export_wake: Arc<Notify>,
    pub events: config::EventsConfig,
    pub transparency: config::TransparencyConfig,
    pub support: config::SupportConfig,
    pub keys: Arc<middleware::KeyCache>,
    pub limiter: Arc<middleware::RateLimiter>,
    /// Receipts that did not verify, per client address (support).
    pub receipt_tries: Arc<middleware::RateLimiter>,
    /// Receipts being sealed beside the workers (bounded).
    pub seal_slots: Arc<tokio::sync::Semaphore>,
    pub demo: bool,
    /// Wakes idle workers when jobs are enqueued.
    pub wake: Arc<Notify>,
    /// Wakes the deadline timer (after the demo clock moves).
    pub timer_wake: Arc<Notify>,
}

/// The calendar in force, and what happened at the last reload.
pub struct CalendarState {
    pub current: std::sync::RwLock<lethe_domain::calendar::Calendar>,
    pub file: Option<PathBuf>,
    /// The last reload's error (file line and reason); the calendar in force
    /// stays the previous one.
    pub last_error: std::sync::RwLock<Option<String>>,
    pub file_stamp: std::sync::Mutex<Option<std::time::SystemTime>>,
}

impl CalendarState {
    /// The shipped calendar extended by the operator's file.
    pub fn load(
        file: Option<&std::path::Path>,
    ) -> Result<lethe_domain::calendar::Calendar, String> {
        let base = lethe_domain::calendar::Calendar::china().map_err(|e| e.to_string())?;
        match file {
            None => Ok(base),
            Some(f) => {
                let text = std::fs::read_to_string(f).map_err(|e| {
                    format!(
                        "calendar file {}: cannot be read ({})",
                        f.display(),
                        e.kind()
                    )
                })?;
                let ext = lethe_domain::calendar::Calendar::parse(&text)
                    .map_err(|e| format!("{}: {e}", f.display()))?;
                base.extended_checked(&ext)
                    .map_err(|e| format!("{}: {e}", f.display()))
            }
        }
    }

    pub fn get(&self) -> lethe_domain::calendar::Calendar {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// How time flows for this server.
pub enum ClockMode {
    /// Production: the system clock; no route can move it.
    System,
    /// Demo and tests: a manual clock whose offset is kept in a file.
    Manual {
        clock: Arc<ManualClock>,
        offset_file: PathBuf,
    },
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Lethe", description = "Account cancellation (账号注销) and erasure, safely, provably, on time.\n\nEvery POST needs an `Idempotency-Key` header. Errors are RFC 9457 problem details naming the field at fault."),
    paths(
        api::create_case, api::get_case, api::send_code, api::verify_code, api::run_checks, api::acknowledge,
        api::confirm, api::withdraw, api::review, api::retry, api::receipt, api::timeline,
        api::dev_outbox, api::dev_advance, api::healthz, api::readyz,
        vault_api::encrypt, vault_api::decrypt, vault_api::blind_index, vault_api::rotate,
        api::restore, api::extend, api::settle, api::alternatives, api::choose_alternative, ops_api::check, ops_api::carrier_event, ops_api::carrier_callback, ops_api::overdue,
        ops_api::notifications, ops_api::calendar,
        audit_api::public_key, audit_api::tree_head, audit_api::sign_now, audit_api::tree_heads,
        audit_api::inclusion, audit_api::consistency, audit_api::export, audit_api::receipt_html,
        audit_api::compliance,
        console::login, console::create_case, console::read_case, console::hotline, console::counter,
        console::review, console::create_agent_route, console::report,
        identity_api::session, identity_api::face,
        claims_api::create, claims_api::read, claims_api::receipt, claims_api::list, claims_api::document, claims_api::decide,
        erasure_api::list, erasure_api::complete, erasure_api::callback, erasure_api::acknowledge,
        reapply_api::start, reapply_api::list, reapply_api::get_run,
        drift_api::list, drift_api::accept,
        purge::create, purge::list, purge::read, purge::report, purge::object,
        export_api::create, export_api::create_for_case, export_api::read, export_api::delete,
        export_api::download, export_api::console_create, export_api::console_read,
        pages::user::create_handoff,
        transparency::page, transparency::json, transparency::report, transparency::consistency,
        transparency::checkpoint_text, transparency::publish_on_demand,
        support::open_with_receipt, support::queue, support::read, support::answer,
        support::resend, support::close
    ),
    components(schemas(problem::Problem)),
    modifiers(&SecurityAddon, &ProblemResponses)
)]
pub struct ApiDoc;

struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(c) = openapi.components.as_mut() {
            c.add_security_scheme(
                "api_key",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
            c.add_security_scheme(
                "console",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// Every error is `application/problem+json`, and some come from layers every
/// route passes through (authentication, rate limit, body limit, malformed
/// JSON, idempotency conflicts, storage trouble). This modifier states so on
/// every operation, so the document describes what a client can receive.
struct ProblemResponses;

impl ProblemResponses {
    const COMMON: [(&'static str, &'static str); 11] = [
        (
            "400",
            "malformed request: the body or a header cannot be read",
        ),
        ("401", "missing or wrong credentials"),
        ("403", "the credentials do not allow this"),
        ("404", "no such resource for these credentials"),
        (
            "409",
            "conflicts with the current state or with an earlier request under the same Idempotency-Key",
        ),
        ("413", "the body is larger than the limit"),
        ("415", "the body is not application/json"),
        ("422", "a field is not valid; `field` names it"),
        ("429", "too many requests; see Retry-After"),
        ("500", "an internal error (nothing personal in the body)"),
        (
            "503",
            "a dependency (store, provider) is unavailable; retry later",
        ),
    ];
}

impl utoipa::Modify for ProblemResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        use utoipa::openapi::{Content, Ref, RefOr, Required, ResponseBuilder};
        // POSTs outside the idempotency store (see `router`).
        // A hand-off link is single-use and short-lived: a retry asks for a
        // new one, and the idempotency store must not keep links.
        const NO_IDEMPOTENCY_KEY: [&str; 6] = [
            "/v1/handoffs",
            "/v1/vault/encrypt",
            "/v1/vault/decrypt",
            "/v1/vault/blind-index",
            "/v1/claims",
            "/v1/console/",
        ];
        const PROBLEM: &str = "application/problem+json";
        for (path, item) in openapi.paths.paths.iter_mut() {
            let ops = [
                (false, item.get.as_mut()),
                (false, item.put.as_mut()),
                (true, item.post.as_mut()),
                (false, item.delete.as_mut()),
                (false, item.patch.as_mut()),
            ];
            let needs_key = !NO_IDEMPOTENCY_KEY.iter().any(|p| path.starts_with(p));
            for (is_post, op) in ops {
                let Some(op) = op else { continue };
                let params = op.parameters.get_or_insert_with(Vec::new);
                for param in params.iter_mut() {
                    let RefOr::T(param) = param else { continue };
                    // Every `{id}` in a path is a UUID (cases, claims,
                    // exports), except a manual task's number.
                    if param.name == "id"
                        && matches!(param.parameter_in, ParameterIn::Path)
                        && !path.starts_with("/v1/console/manual-tasks/")
                    {
                        param.schema = Some(
                            ObjectBuilder::new()
                                .schema_type(Type::String)
                                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                                .into(),
                        );
                    }
                }
                let has_key = params.iter().any(
                    |p| matches!(p, RefOr::T(p) if p.name.eq_ignore_ascii_case("idempotency-key")),
                );
                if is_post && needs_key && !has_key && op.security.is_some() {
                    params.push(
                        ParameterBuilder::new()
                            .name("Idempotency-Key")
                            .parameter_in(ParameterIn::Header)
                            .required(Required::True)
                            .description(Some("unique per request; repeat it to retry safely"))
                            .schema(Some(
                                ObjectBuilder::new()
                                    .schema_type(Type::String)
                                    .pattern(Some("^[!-~]{1,255}$"))
                                    .max_length(Some(255)),
                            ))
                            .build()
                            .into(),
                    );
                }
                let responses = &mut op.responses.responses;
                // Documented errors: their body is problem+json, not json.
                for (status, resp) in responses.iter_mut() {
                    if !status.starts_with(['4', '5']) {
                        continue;
                    }
                    if let RefOr::T(r) = resp
                        && let Some(c) = r.content.shift_remove("application/json")
                    {
                        r.content.insert(PROBLEM.to_owned(), c);
                    }
                }
                for (status, why) in Self::COMMON {
                    responses.entry(status.to_owned()).or_insert_with(|| {
                        RefOr::T(
                            ResponseBuilder::new()
                                .description(why)
                                .content(
                                    PROBLEM,
                                    Content::new(Some(Ref::from_schema_name("Problem"))),
                                )
                                .build(),
                        )
                    });
                }
            }
        }
    }
}

/// The OpenAPI document; in production builds the demo routes are left out.
pub fn openapi(demo: bool) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    if !demo {
        doc.paths.paths.retain(|p, _| !p.starts_with("/v1/dev/"));
    }
    // Operation ids, response descriptions and the webhooks, on the JSON
    // form (a document that does not round-trip is served as it was; the
    // tests validate the served one).
    if let Ok(mut v) = serde_json::to_value(&doc) {
        openapi_doc::finish(&mut v);
        match serde_json::from_value(v) {
            Ok(finished) => doc = finished,
            Err(e) => {
                tracing::error!(error = %e, "the OpenAPI document's finishing touches did not apply")
            }
        }
    }
    doc
}

// Authentication and idempotency wrap each method's handler, not the whole
// route: a method the route does not have is answered 405 before either runs.
fn guard_auth(st: &AppState, m: MethodRouter<AppState>) -> MethodRouter<AppState> {
    m.route_layer(axum::middleware::from_fn_with_state(
        st.clone(),
        middleware::auth,
    ))
}

fn guard_idem(st: &AppState, m: MethodRouter<AppState>) -> MethodRouter<AppState> {
    guard_auth(
        st,
        m.route_layer(axum::middleware::from_fn_with_state(
            st.clone(),
            middleware::idempotency,
        )),
    )
}

fn guard_console(st: &AppState, m: MethodRouter<AppState>) -> MethodRouter<AppState> {
    m.route_layer(axum::middleware::from_fn_with_state(
        st.clone(),
        console::auth,
    ))
}

pub fn router(st: AppState) -> Router {
    let mut v1 = Router::new()
        .route("/v1/cases", guard_idem(&st, post(api::create_case)))
        .route("/v1/cases/{id}", guard_idem(&st, get(api::get_case)))
        .route(
            "/v1/cases/{id}/verification/sms/send",
            guard_idem(&st, post(api::send_code)),
        )
        .route(
            "/v1/cases/{id}/verification/sms/verify",
            guard_idem(&st, post(api::verify_code)),
        )
        .route(
            "/v1/cases/{id}/checks",
            guard_idem(&st, post(api::run_checks)),
        )
        .route(
            "/v1/cases/{id}/acknowledgements",
            guard_idem(&st, post(api::acknowledge)),
        )
        .route(
            "/v1/cases/{id}/confirm",
            guard_idem(&st, post(api::confirm)),
        )
        .route(
            "/v1/cases/{id}/withdraw",
            guard_idem(&st, post(api::withdraw)),
        )
        .route("/v1/cases/{id}/review", guard_idem(&st, post(api::review)))
        .route(
            "/v1/cases/{id}/erasures/{system}",
            guard_idem(&st, post(erasure_api::acknowledge)),
        )
        .route("/v1/cases/{id}/retry", guard_idem(&st, post(api::retry)))
        .route("/v1/cases/{id}/receipt", guard_idem(&st, get(api::receipt)))
        .route(
            "/v1/cases/{id}/timeline",
            guard_idem(&st, get(api::timeline)),
        )
        .route(
            "/v1/cases/{id}/restore",
            guard_idem(&st, post(api::restore)),
        )
        .route(
            "/v1/cases/{id}/settlements",
            guard_idem(&st, post(api::settle)),
        )
        .route(
            "/v1/cases/{id}/verification/session",
            guard_idem(&st, post(identity_api::session)),
        )
        .route(
            "/v1/cases/{id}/alternative",
            guard_idem(&st, post(api::choose_alternative)),
        )
        .route("/v1/alternatives", guard_idem(&st, get(api::alternatives)))
        .route("/v1/cases/{id}/extend", guard_idem(&st, post(api::extend)))
        .route(
            "/v1/identifiers/check",
            guard_idem(&st, get(ops_api::check)),
        )
        .route(
            "/v1/carrier-events",
            guard_idem(&st, post(ops_api::carrier_event)),
        )
        .route(
            "/v1/console/manual-tasks",
            guard_idem(&st, get(erasure_api::list)),
        )
        .route("/v1/purges/{id}", guard_idem(&st, get(purge::read)))
        .route(
            "/v1/purges/{id}/report",
            guard_auth(&st, get(purge::report)),
        )
        .route(
            "/v1/purges/{id}/objections",
            guard_idem(&st, post(purge::object)),
        )
        .route(
            "/v1/reapply-runs",
            guard_idem(&st, post(reapply_api::start).get(reapply_api::list)),
        )
        .route(
            "/v1/reapply-runs/{id}",
            guard_idem(&st, get(reapply_api::get_run)),
        )
        .route(
            "/v1/console/manual-tasks/{id}/complete",
            guard_idem(&st, post(erasure_api::complete)),
        )
        .route(
            "/v1/notifications",
            guard_idem(&st, get(ops_api::notifications)),
        )
        .route("/v1/calendar", guard_idem(&st, get(ops_api::calendar)))
        .route(
            "/v1/cases/{id}/receipt.html",
            guard_idem(&st, get(audit_api::receipt_html)),
        )
        .route(
            "/v1/audit/public-key",
            guard_idem(&st, get(audit_api::public_key)),
        )
        .route(
            "/v1/audit/tree-head",
            guard_idem(&st, get(audit_api::tree_head)),
        )
        .route(
            "/v1/audit/tree-heads",
            guard_idem(&st, get(audit_api::tree_heads).post(audit_api::sign_now)),
        )
        .route(
            "/v1/audit/proofs/inclusion",
            guard_idem(&st, get(audit_api::inclusion)),
        )
        .route(
            "/v1/audit/proofs/consistency",
            guard_idem(&st, get(audit_api::consistency)),
        )
        .route("/v1/audit/export", guard_idem(&st, get(audit_api::export)))
        .route(
            "/v1/reports/compliance",
            guard_idem(&st, get(audit_api::compliance)),
        )
        .route(
            "/v1/transparency/reports",
            guard_idem(&st, post(transparency::publish_on_demand)),
        );
    if st.manual_clock.is_some() {
        v1 = v1
            .route("/v1/dev/outbox/{id}", guard_idem(&st, get(api::dev_outbox)))
            .route(
                "/v1/dev/clock/advance",
                guard_idem(&st, post(api::dev_advance)),
            );
    }
    // Demo only: Demo Mart's own settlement endpoint (signed, no API key).
    let demo_platform = if st.manual_clock.is_some() {
        Router::new()
            .route("/demo-platform/settlements", post(demo_platform::settle))
            .route(
                "/demo-platform/notifications",
                post(demo_platform::notification),
            )
            .route("/demo-platform/app", get(pages::user::demo_app))
            .route("/demo-platform/app/cancel", post(pages::user::demo_cancel))
            .route("/demo-platform/app/signin", post(pages::user::demo_signin))
    } else {
        Router::new()
    };
    // The vault takes batches (1000 fields of up to 64 KiB, base64-inflated)
    // and stays outside the idempotency layer (see vault_api).
    let vault = Router::new()
        .route(
            "/v1/vault/encrypt",
            guard_auth(&st, post(vault_api::encrypt)),
        )
        .route(
            "/v1/vault/decrypt",
            guard_auth(&st, post(vault_api::decrypt)),
        )
        .route(
            "/v1/vault/blind-index",
            guard_auth(&st, post(vault_api::blind_index)),
        )
        .layer(DefaultBodyLimit::max(VAULT_BODY_LIMIT));
    let console = Router::new()
        .route(
            "/v1/console/cases",
            guard_console(&st, post(console::create_case)),
        )
        .route(
            "/v1/console/cases/{id}",
            guard_console(&st, get(console::read_case)),
        )
        .route(
            "/v1/console/cases/{id}/hotline",
            guard_console(&st, post(console::hotline)),
        )
        .route(
            "/v1/console/cases/{id}/counter",
            guard_console(&st, post(console::counter)),
        )
        .route(
            "/v1/console/cases/{id}/review",
            guard_console(&st, post(console::review)),
        )
        .route(
            "/v1/console/agents",
            guard_console(&st, post(console::create_agent_route)),
        )
        .route(
            "/v1/console/report",
            guard_console(&st, get(console::report)),
        )
        .route(
            "/v1/console/claims",
            guard_console(&st, get(claims_api::list)),
        )
        .route(
            "/v1/console/claims/{id}/documents/{n}",
            guard_console(&st, get(claims_api::document)),
        )
        .route(
            "/v1/console/claims/{id}/decision",
            guard_console(&st, post(claims_api::decide)),
        )
        .route(
            "/v1/console/exports",
            guard_console(&st, post(export_api::console_create)),
        )
        .route(
            "/v1/console/exports/{id}",
            guard_console(&st, get(export_api::console_read)),
        )
        // A platform key or an agent's console token.
        .route(
            "/v1/console/overdue",
            get(ops_api::overdue).route_layer(axum::middleware::from_fn_with_state(
                st.clone(),
                middleware::key_or_console,
            )),
        )
        .route(
            "/v1/console/datamap/findings",
            get(drift_api::list).route_layer(axum::middleware::from_fn_with_state(
                st.clone(),
                middleware::key_or_console,
            )),
        )
        .route(
            "/v1/console/datamap/findings/{id}/accept",
            guard_console(&st, post(drift_api::accept)),
        )
        .route(
            "/v1/console/support",
            guard_console(&st, get(support::queue)),
        )
        .route(
            "/v1/console/support/{id}",
            guard_console(&st, get(support::read)),
        )
        .route(
            "/v1/console/support/{id}/answer",
            guard_console(&st, post(support::answer)),
        )
        .route(
            "/v1/console/support/{id}/resend",
            guard_console(&st, post(support::resend)),
        )
        .route(
            "/v1/console/support/{id}/close",
            guard_console(&st, post(support::close)),
        )
        .route("/v1/console/login", post(console::login));
    // Exports answer with their download link, which must not be kept in
    // the idempotency store: the export itself is keyed by the platform's
    // Idempotency-Key instead (see export_api).
    let exports = Router::new()
        .route("/v1/exports", guard_auth(&st, post(export_api::create)))
        .route(
            "/v1/exports/{id}",
            guard_auth(&st, get(export_api::read).delete(export_api::delete)),
        )
        .route(
            "/v1/cases/{id}/exports",
            guard_auth(&st, post(export_api::create_for_case)),
        )
        .route("/v1/exports/{id}/download", get(export_api::download));
    // Claims carry document images: a larger body limit, and (like the
    // vault) no idempotency store, which would keep the images.
    let claims = Router::new()
        .route("/v1/claims", guard_auth(&st, post(claims_api::create)))
        .route("/v1/claims/{id}", guard_auth(&st, get(claims_api::read)))
        .route(
            "/v1/claims/{id}/receipt",
            guard_auth(&st, get(claims_api::receipt)),
        )
        .layer(DefaultBodyLimit::max(claims_api::CLAIM_BODY_LIMIT));
    // A purge names up to a million accounts: its own body limit.
    let purges = Router::new()
        .route(
            "/v1/purges",
            guard_idem(&st, post(purge::create).get(purge::list)),
        )
        .layer(DefaultBodyLimit::max(purge::BODY_LIMIT))
        .layer(axum::Extension(middleware::BodyLimit(purge::BODY_LIMIT)));
    // Public: a former holder's support request, keyed by the receipt
    // (which may be pasted whole: its own body limit).
    let support_public = Router::new()
        .route("/v1/support/requests", post(support::open_with_receipt))
        .route(
            "/support",
            get(pages::support::form).post(pages::support::submit),
        )
        .layer(DefaultBodyLimit::max(support::BODY_LIMIT))
        .layer(axum::Extension(middleware::BodyLimit(support::BODY_LIMIT)));
    let vault_admin = Router::new().route(
        "/v1/console/vault/kek/rotate",
        guard_console(&st, post(vault_api::rotate)),
    );
    // The pages: the user's cancellation centre and the agent console.
    let pages = Router::new()
        .route(
            "/v1/handoffs",
            guard_auth(&st, post(pages::user::create_handoff)),
        )
        .route("/u", get(|| async { pages::redirect("/u/") }))
        .route("/u/", get(pages::user::page))
        .route("/u/enter", get(pages::user::enter))
        .route("/u/lang", get(pages::user::switch_lang))
        .route("/u/events", get(pages::user::events))
        .route("/u/receipt", get(pages::user::receipt))
        .route("/u/do/{action}", post(pages::user::act))
        .route("/console", get(|| async { pages::redirect("/console/") }))
        .route("/console/", get(pages::agent::queues))
        .route(
            "/console/login",
            get(pages::agent::login_page).post(pages::agent::login),
        )
        .route("/console/logout", post(pages::agent::logout))
        .route("/console/cases", post(pages::agent::new_case))
        .route("/console/cases/{id}", get(pages::agent::case_page))
        .route(
            "/console/cases/{id}/{action}",
            post(pages::agent::case_action),
        )
        .route(
            "/console/tasks/{id}/complete",
            post(pages::agent::complete_task),
        )
        .route("/console/claims/{id}", get(pages::agent::claim_page))
        .route(
            "/console/claims/{id}/documents/{n}",
            get(pages::agent::claim_document),
        )
        .route(
            "/console/claims/{id}/decision",
            post(pages::agent::claim_decide),
        )
        .route("/console/datamap", get(pages::agent::datamap))
        .route(
            "/console/datamap/findings/{id}/accept",
            post(pages::agent::accept_finding),
        )
        .route("/console/report", get(pages::agent::report))
        .route("/console/support", get(pages::support::queue))
        .route("/console/support/{id}", get(pages::support::request_page))
        .route(
            "/console/support/{id}/receipt",
            get(pages::support::receipt),
        )
        .route(
            "/console/support/{id}/{action}",
            post(pages::support::request_action),
        )
        .route("/assets/lethe.css", get(pages::css))
        .route("/assets/lethe.js", get(pages::js))
        .route("/assets/icon.svg", get(pages::icon))
        .route("/favicon.ico", get(pages::icon));
    let limit = st.limits.body_bytes;
    let timeout = Duration::from_secs(st.limits.request_timeout_secs);
    Router::new()
        .merge(v1)
        .merge(demo_platform)
        .merge(console)
        .merge(exports)
        .merge(claims)
        .merge(purges)
        .merge(support_public)
        .merge(pages)
        .route("/v1/callbacks/face", post(identity_api::face))
        .route("/v1/callbacks/carrier", post(ops_api::carrier_callback))
        .route(
            "/v1/erasure-callbacks/{system}",
            post(erasure_api::callback),
        )
        .merge(vault)
        .merge(vault_admin)
        // Public: no credentials (transparency.enabled turns them off).
        .route("/transparency", get(transparency::page))
        .route("/transparency.json", get(transparency::json))
        .route("/transparency/reports/{id}", get(transparency::report))
        .route(
            "/transparency/proofs/consistency",
            get(transparency::consistency),
        )
        .route(
            "/transparency/checkpoint",
            get(transparency::checkpoint_text),
        )
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(metrics::metrics))
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi(st.demo)))
        .fallback(|| async {
            problem::Problem::not_found("no such route").fix("see /docs for the API")
        })
        .layer(axum::middleware::from_fn(middleware::request_id))
        .layer(axum::middleware::from_fn(
            move |req, next: axum::middleware::Next| async move {
                match tokio::time::timeout(timeout, next.run(req)).await {
                    Ok(r) => r,
                    Err(_) => axum::response::IntoResponse::into_response(
                        problem::Problem::new(
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            "timeout",
                            "Request timed out",
                            "the request took too long",
                        )
                        .retry_after(1),
                    ),
                }
            },
        ))
        // Outermost: the timeout's answer carries the headers too.
        .layer(axum::middleware::from_fn(middleware::security_headers))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(st)
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Secret(#[from] secrets::SecretError),
    #[error(transparent)]
    DataMap(#[from] lethe_connect::DataMapError),
    #[error(transparent)]
    Connect(#[from] lethe_connect::ConnectError),
    #[error("store: {0}")]
    Store(#[from] lethe_store::StoreError),
    #[error(transparent)]
    Vault(#[from] lethe_vault::VaultError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens the vault: its key-encryption key file `vault.kek` is created on
/// first run only; if it is missing while wrapped keys exist, start-up fails
/// with the instruction to restore it.
pub async fn open_vault(
    data_dir: &std::path::Path,
    store: &Store,
    secrets: &Secrets,
) -> Result<Arc<lethe_vault::Vault>, ServeError> {
    use lethe_vault::KeyStore;
    let existing = store.count().await?;
    let kek = lethe_vault::LocalKeyFile::open(&data_dir.join("vault.kek"), existing == 0)?;
    Ok(Arc::new(lethe_vault::Vault::new(
        Arc::new(kek),
        Arc::new(store.clone()),
        secrets.vault_master(),
    )))
}

/// Installs ring as the process's TLS crypto provider (for outbound
/// webhooks over https). Idempotent.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A prepared server: state built, socket bound.
pub struct Server {
    pub state: AppState,
    pub listener: tokio::net::TcpListener,
}

impl Server {
    pub async fn prepare(cfg: &Config, mode: ClockMode) -> Result<Self, ServeError> {
        install_crypto_provider();
        let policy = cfg.validate().map_err(ServeError::Config)?;
        std::fs::create_dir_all(&cfg.data_dir)?;
        secrets::secure_data_dir(&cfg.data_dir)?;
        let secrets = Secrets::load_or_create(&cfg.data_dir)?;
        let datamap = DataMap::load(&cfg.datamap)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ServeError::Config(format!("HTTP client: {e}")))?;
        if cfg.events.nats_url.is_none()
            && let Some(s) = datamap
                .systems
                .iter()
                .find(|s| s.kind == lethe_connect::Kind::Event)
        {
            return Err(ServeError::Config(format!(
                "system {} is of kind event: its service learns of erasures from case events; set [events] nats_url",
                s.name
            )));
        }
        let systems = Systems::connect(&datamap, http.clone()).await?;
        let tz = jiff::tz::TimeZone::get(&cfg.time_zone)
            .map_err(|_| ServeError::Config(format!("unknown time_zone {}", cfg.time_zone)))?;
        let calendar = Arc::new(CalendarState {
            current: std::sync::RwLock::new(
                CalendarState::load(cfg.calendar_file.as_deref()).map_err(ServeError::Config)?,
            ),
            file: cfg.calendar_file.clone(),
            last_error: std::sync::RwLock::new(None),
            file_stamp: std::sync::Mutex::new(
                cfg.calendar_file
                    .as_ref()
                    .and_then(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok()),
            ),
        });
        let deadline_fn: lethe_store::DeadlineFn = {
            let (calendar, tz) = (calendar.clone(), tz.clone());
            Arc::new(move |case: &lethe_domain::Case| {
                let cal = calendar.current.read().unwrap_or_else(|p| p.into_inner());
                lethe_domain::deadline::deadlines(case, &cal, &tz)
            })
        };
        let store = Store::open_url(
            &cfg.store_url().map_err(ServeError::Config)?,
            lethe_store::StoreOptions {
                deadlines: Some(deadline_fn),
                case_events: cfg.events.nats_url.is_some(),
                erasure_jobs: worker::erasure_jobs(&systems, cfg.worker.max_attempts),
                settle_attempts: cfg.worker.max_attempts,
                read_connections: cfg.store.read_connections,
                write_connections: cfg.store.write_connections,
            },
        )
        .await?;
        let vault = open_vault(&cfg.data_dir, &store, &secrets).await?;
        let signer = Arc::new(secrets::load_or_create_signer(&cfg.data_dir)?);
        let (clock, manual_clock, clock_file): (Arc<dyn Clock>, _, _) = match mode {
            ClockMode::System => (Arc::new(SystemClock), None, None),
            ClockMode::Manual { clock, offset_file } => {
                (clock.clone(), Some(clock), Some(offset_file))
            }
        };
        let demo = manual_clock.is_some();
        let state = Shared {
            sequencer: Arc::default(),
            store,
            clock,
            manual_clock,
            clock_file,
            datamap: Arc::new(datamap),
            systems: Arc::new(systems),
            secrets,
            vault,
            signer,
            http,
            // Set below, once the socket is bound (its port may be 0 here).
            public_url: String::new(),
            demo_platform: Arc::new(std::sync::OnceLock::new()),
            identity: cfg.identity.clone(),
            metrics: Arc::new(metrics::Metrics::default()),
            data_dir: cfg.data_dir.clone(),
            session_key: match (
                &cfg.identity.session_secret_env,
                &cfg.identity.session_public_key,
            ) {
                (Some(env), _) => Some(jwt::Key::Hs256(
                    std::env::var(env)
                        .map_err(|_| {
                            ServeError::Config(format!(
                                "identity.session_secret_env names {env}, which is not set"
                            ))
                        })?
                        .into_bytes(),
                )),
                (None, Some(pk)) => Some(jwt::Key::EdDsa(pk.clone())),
                (None, None) => None,
            },
            calendar,
            tz,
            tombstones: cfg.tombstones.clone(),
            notifications: cfg.notifications.clone(),
            policy,
            otp_resend: SignedDuration::from_secs(cfg.policy.otp_resend_seconds),
            otp_lockout: SignedDuration::from_mins(cfg.policy.otp_lockout_minutes),
            limits: cfg.limits.clone(),
            worker: cfg.worker.clone(),
            export: cfg.export.clone(),
            export_ttl: cfg.export.validate().map_err(ServeError::Config)?,
            export_wake: Arc::new(Notify::new()),
            events: cfg.events.clone(),
            transparency: cfg.transparency.clone(),
            support: cfg.support.clone(),
            keys: Arc::new(middleware::KeyCache::new()),
            limiter: Arc::new(middleware::RateLimiter::new(
                cfg.limits.rate_per_second,
                cfg.limits.rate_burst,
            )),
            seal_slots: Arc::new(tokio::sync::Semaphore::new(worker::SEALS_IN_FLIGHT)),
            receipt_tries: Arc::new(middleware::RateLimiter::per_hour(
                cfg.support.failed_receipts_per_hour,
            )),
            demo,
            wake: Arc::new(Notify::new()),
            timer_wake: Arc::new(Notify::new()),
        };
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| ServeError::Listen {
                addr: cfg.listen,
                source,
            })?;
        let mut state = state;
        state.public_url = match &cfg.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => format!("http://{}", listener.local_addr()?),
        };
        let state = AppState(Arc::new(state));
        Ok(Self { state, listener })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, ServeError> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until SIGINT/SIGTERM, then stops taking requests, lets running
    /// jobs finish (or leaves them leased for resumption) and returns.
    pub async fn run(self) -> Result<(), ServeError> {
        let (tx, rx) = watch::channel(false);
        let workers = worker::spawn(self.state.clone(), rx.clone());
        let app = router(self.state.clone());
        let mut srx = rx.clone();
        let shutdown = async move {
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            let term = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let term = std::future::pending::<()>();
            tokio::select! {
                _ = ctrl_c => {}
                _ = term => {}
                _ = srx.changed() => {}
            }
            tracing::info!("shutting down");
            let _ = tx.send(true);
        };
        // Our own accept loop (instead of axum::serve) for the limits axum
        // does not set: connections at once, and a deadline for the request
        // head so slow clients (slowloris) cannot hold connections.
        let max = self.state.limits.max_connections;
        let connections = Arc::new(tokio::sync::Semaphore::new(max));
        // One client address may hold only a share of the connections, and
        // past the soft cap (the last 32 kept for health checks and
        // operators) new connections are answered 503, not served.
        let per_client = (max / 8).clamp(4, 256);
        let soft_cap = max.saturating_sub(32).max(1);
        let by_client = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
            std::net::IpAddr,
            usize,
        >::new()));
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                r = self.listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let Ok(permit) = connections.clone().try_acquire_owned() else {
                tracing::warn!("connection limit reached; closing a new connection");
                drop(stream);
                continue;
            };
            let in_use = max - connections.available_permits();
            let client = ClientSlot::take(&by_client, peer.ip());
            // Shed: this client holds its share already, or the server is
            // past its soft cap. Health checks still get through.
            let shed = client.count > per_client || in_use > soft_cap;
            if shed {
                tracing::warn!(
                    client_connections = client.count,
                    in_use,
                    "shedding a connection with 503"
                );
            }
            let app = app.clone();
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    let health = matches!(req.uri().path(), "/healthz" | "/readyz");
                    let app = app.clone();
                    async move {
                        if shed && !health {
                            return Ok(axum::response::IntoResponse::into_response(
                                problem::Problem::new(
                                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                                    "busy",
                                    "Too many connections",
                                    "too many connections at once, from this address or in all",
                                )
                                .retry_after(1),
                            ));
                        }
                        tower::ServiceExt::oneshot(app, req).await
                    }
                },
            );
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                let _ = conn.await;
                drop(client);
                drop(permit);
            });
        }
        // Let in-flight requests finish, briefly.
        tokio::select! {
            _ = graceful.shutdown() => {}
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
        for w in workers {
            let _ = tokio::time::timeout(Duration::from_secs(10), w).await;
        }
        Ok(())
    }
}
