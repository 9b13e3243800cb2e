//! The route table: every endpoint with its guard (authentication,
//! idempotency, console session), in one place.

use crate::api_doc::openapi;
use crate::state::{AppState, VAULT_BODY_LIMIT};
use crate::{api, console, demo_platform, http, pages, worker};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{MethodRouter, get, post};
use std::time::Duration;
use utoipa_swagger_ui::SwaggerUi;

// Authentication and idempotency wrap each method's handler, not the whole
// route: a method the route does not have is answered 405 before either runs.
fn guard_auth(st: &AppState, m: MethodRouter<AppState>) -> MethodRouter<AppState> {
    m.route_layer(axum::middleware::from_fn_with_state(
        st.clone(),
        http::middleware::auth,
    ))
}

fn guard_idem(st: &AppState, m: MethodRouter<AppState>) -> MethodRouter<AppState> {
    guard_auth(
        st,
        m.route_layer(axum::middleware::from_fn_with_state(
            st.clone(),
            http::middleware::idempotency,
        )),
    )
}

fn guard_console(st: &AppState, m: MethodRouter<AppState>) -> MethodRouter<AppState> {
    m.route_layer(axum::middleware::from_fn_with_state(
        st.clone(),
        http::agent::auth,
    ))
}

pub fn router(st: AppState) -> Router {
    let mut v1 = Router::new()
        .route("/v1/cases", guard_idem(&st, post(api::cases::create_case)))
        .route("/v1/cases/{id}", guard_idem(&st, get(api::cases::get_case)))
        .route(
            "/v1/cases/{id}/verification/sms/send",
            guard_idem(&st, post(api::cases::send_code)),
        )
        .route(
            "/v1/cases/{id}/verification/sms/verify",
            guard_idem(&st, post(api::cases::verify_code)),
        )
        .route(
            "/v1/cases/{id}/checks",
            guard_idem(&st, post(api::cases::run_checks)),
        )
        .route(
            "/v1/cases/{id}/acknowledgements",
            guard_idem(&st, post(api::cases::acknowledge)),
        )
        .route(
            "/v1/cases/{id}/confirm",
            guard_idem(&st, post(api::cases::confirm)),
        )
        .route(
            "/v1/cases/{id}/withdraw",
            guard_idem(&st, post(api::cases::withdraw)),
        )
        .route(
            "/v1/cases/{id}/review",
            guard_idem(&st, post(api::cases::review)),
        )
        .route(
            "/v1/cases/{id}/erasures/{system}",
            guard_idem(&st, post(api::erasure::acknowledge)),
        )
        .route(
            "/v1/cases/{id}/retry",
            guard_idem(&st, post(api::cases::retry)),
        )
        .route(
            "/v1/cases/{id}/receipt",
            guard_idem(&st, get(api::cases::receipt)),
        )
        .route(
            "/v1/cases/{id}/timeline",
            guard_idem(&st, get(api::cases::timeline)),
        )
        .route(
            "/v1/cases/{id}/restore",
            guard_idem(&st, post(api::cases::restore)),
        )
        .route(
            "/v1/cases/{id}/settlements",
            guard_idem(&st, post(api::settlement::settle)),
        )
        .route(
            "/v1/cases/{id}/verification/session",
            guard_idem(&st, post(api::identity::session)),
        )
        .route(
            "/v1/cases/{id}/alternative",
            guard_idem(&st, post(api::cases::choose_alternative)),
        )
        .route(
            "/v1/alternatives",
            guard_idem(&st, get(api::cases::alternatives)),
        )
        .route(
            "/v1/cases/{id}/extend",
            guard_idem(&st, post(api::cases::extend)),
        )
        .route(
            "/v1/identifiers/check",
            guard_idem(&st, get(api::operations::check)),
        )
        .route(
            "/v1/carrier-events",
            guard_idem(&st, post(api::operations::carrier_event)),
        )
        .route(
            "/v1/console/manual-tasks",
            guard_idem(&st, get(api::erasure::list)),
        )
        .route("/v1/purges/{id}", guard_idem(&st, get(worker::purge::read)))
        .route(
            "/v1/purges/{id}/report",
            guard_auth(&st, get(worker::purge::report)),
        )
        .route(
            "/v1/purges/{id}/objections",
            guard_idem(&st, post(worker::purge::object)),
        )
        .route(
            "/v1/reapply-runs",
            guard_idem(&st, post(api::reapply::start).get(api::reapply::list)),
        )
        .route(
            "/v1/reapply-runs/{id}",
            guard_idem(&st, get(api::reapply::get_run)),
        )
        .route(
            "/v1/console/manual-tasks/{id}/complete",
            guard_idem(&st, post(api::erasure::complete)),
        )
        .route(
            "/v1/notifications",
            guard_idem(&st, get(api::operations::notifications)),
        )
        .route(
            "/v1/calendar",
            guard_idem(&st, get(api::operations::calendar)),
        )
        .route(
            "/v1/cases/{id}/receipt.html",
            guard_idem(&st, get(api::audit::receipt_html)),
        )
        .route(
            "/v1/audit/public-key",
            guard_idem(&st, get(api::audit::public_key)),
        )
        .route(
            "/v1/audit/tree-head",
            guard_idem(&st, get(api::audit::tree_head)),
        )
        .route(
            "/v1/audit/tree-heads",
            guard_idem(&st, get(api::audit::tree_heads).post(api::audit::sign_now)),
        )
        .route(
            "/v1/audit/proofs/inclusion",
            guard_idem(&st, get(api::audit::inclusion)),
        )
        .route(
            "/v1/audit/proofs/consistency",
            guard_idem(&st, get(api::audit::consistency)),
        )
        .route("/v1/audit/export", guard_idem(&st, get(api::audit::export)))
        .route(
            "/v1/reports/compliance",
            guard_idem(&st, get(api::audit::compliance)),
        )
        .route(
            "/v1/transparency/reports",
            guard_idem(&st, post(api::transparency::publish_on_demand)),
        );
    if st.manual_clock.is_some() {
        v1 = v1
            .route(
                "/v1/dev/outbox/{id}",
                guard_idem(&st, get(api::cases::dev_outbox)),
            )
            .route(
                "/v1/dev/clock/advance",
                guard_idem(&st, post(api::cases::dev_advance)),
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
            guard_auth(&st, post(api::vault::encrypt)),
        )
        .route(
            "/v1/vault/decrypt",
            guard_auth(&st, post(api::vault::decrypt)),
        )
        .route(
            "/v1/vault/blind-index",
            guard_auth(&st, post(api::vault::blind_index)),
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
            guard_console(&st, get(api::claims::list)),
        )
        .route(
            "/v1/console/claims/{id}/documents/{n}",
            guard_console(&st, get(api::claims::document)),
        )
        .route(
            "/v1/console/claims/{id}/decision",
            guard_console(&st, post(api::claims::decide)),
        )
        .route(
            "/v1/console/exports",
            guard_console(&st, post(api::exports::console_create)),
        )
        .route(
            "/v1/console/exports/{id}",
            guard_console(&st, get(api::exports::console_read)),
        )
        // A platform key or an agent's console token.
        .route(
            "/v1/console/overdue",
            get(api::operations::overdue).route_layer(axum::middleware::from_fn_with_state(
                st.clone(),
                http::agent::key_or_console,
            )),
        )
        .route(
            "/v1/console/datamap/findings",
            get(api::drift::list).route_layer(axum::middleware::from_fn_with_state(
                st.clone(),
                http::agent::key_or_console,
            )),
        )
        .route(
            "/v1/console/datamap/findings/{id}/accept",
            guard_console(&st, post(api::drift::accept)),
        )
        .route(
            "/v1/console/support",
            guard_console(&st, get(api::support::queue)),
        )
        .route(
            "/v1/console/support/{id}",
            guard_console(&st, get(api::support::read)),
        )
        .route(
            "/v1/console/support/{id}/answer",
            guard_console(&st, post(api::support::answer)),
        )
        .route(
            "/v1/console/support/{id}/resend",
            guard_console(&st, post(api::support::resend)),
        )
        .route(
            "/v1/console/support/{id}/close",
            guard_console(&st, post(api::support::close)),
        )
        .route("/v1/console/login", post(console::login));
    // Exports answer with their download link, which must not be kept in
    // the idempotency store: the export itself is keyed by the platform's
    // Idempotency-Key instead (see export_api).
    let exports = Router::new()
        .route("/v1/exports", guard_auth(&st, post(api::exports::create)))
        .route(
            "/v1/exports/{id}",
            guard_auth(&st, get(api::exports::read).delete(api::exports::delete)),
        )
        .route(
            "/v1/cases/{id}/exports",
            guard_auth(&st, post(api::exports::create_for_case)),
        )
        .route("/v1/exports/{id}/download", get(api::exports::download));
    // Claims carry document images: a larger body limit, and (like the
    // vault) no idempotency store, which would keep the images.
    let claims = Router::new()
        .route("/v1/claims", guard_auth(&st, post(api::claims::create)))
        .route("/v1/claims/{id}", guard_auth(&st, get(api::claims::read)))
        .route(
            "/v1/claims/{id}/receipt",
            guard_auth(&st, get(api::claims::receipt)),
        )
        .layer(DefaultBodyLimit::max(api::claims::CLAIM_BODY_LIMIT));
    // A purge names up to a million accounts: its own body limit.
    let purges = Router::new()
        .route(
            "/v1/purges",
            guard_idem(&st, post(worker::purge::create).get(worker::purge::list)),
        )
        .layer(DefaultBodyLimit::max(worker::purge::BODY_LIMIT))
        .layer(axum::Extension(http::middleware::BodyLimit(
            worker::purge::BODY_LIMIT,
        )));
    // Public: a former holder's support request, keyed by the receipt
    // (which may be pasted whole: its own body limit).
    let support_public = Router::new()
        .route(
            "/v1/support/requests",
            post(api::support::open_with_receipt),
        )
        .route(
            "/support",
            get(pages::support::form).post(pages::support::submit),
        )
        .layer(DefaultBodyLimit::max(api::support::BODY_LIMIT))
        .layer(axum::Extension(http::middleware::BodyLimit(
            api::support::BODY_LIMIT,
        )));
    let vault_admin = Router::new().route(
        "/v1/console/vault/kek/rotate",
        guard_console(&st, post(api::vault::rotate)),
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
        .route("/v1/callbacks/face", post(api::identity::face))
        .route(
            "/v1/callbacks/carrier",
            post(api::operations::carrier_callback),
        )
        .route(
            "/v1/erasure-callbacks/{system}",
            post(api::erasure::callback),
        )
        .merge(vault)
        .merge(vault_admin)
        // Public: no credentials (transparency.enabled turns them off).
        .route("/transparency", get(api::transparency::page))
        .route("/transparency.json", get(api::transparency::json))
        .route("/transparency/reports/{id}", get(api::transparency::report))
        .route(
            "/transparency/proofs/consistency",
            get(api::transparency::consistency),
        )
        .route(
            "/transparency/checkpoint",
            get(api::transparency::checkpoint_text),
        )
        .route("/healthz", get(api::cases::healthz))
        .route("/readyz", get(api::cases::readyz))
        .route("/metrics", get(api::metrics::metrics))
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi(st.demo)))
        .fallback(|| async {
            http::problem::Problem::not_found("no such route").fix("see /docs for the API")
        })
        .layer(axum::middleware::from_fn(http::middleware::request_id))
        .layer(axum::middleware::from_fn(
            move |req, next: axum::middleware::Next| async move {
                match tokio::time::timeout(timeout, next.run(req)).await {
                    Ok(r) => r,
                    Err(_) => axum::response::IntoResponse::into_response(
                        http::problem::Problem::new(
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
        .layer(axum::middleware::from_fn(
            http::middleware::security_headers,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(st)
}
