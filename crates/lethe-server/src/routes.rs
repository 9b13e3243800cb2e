//! The route table: every endpoint with its guard (authentication,
//! idempotency, console session), in one place.

use crate::*;
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
