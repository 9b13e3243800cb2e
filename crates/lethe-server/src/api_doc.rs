//! The OpenAPI document: every operation, the security scheme, the problem
//! responses each operation can give.

use crate::{api, console, http, openapi_doc, pages, worker};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(title = "Lethe", description = "Account cancellation (账号注销) and erasure, safely, provably, on time.\n\nEvery POST needs an `Idempotency-Key` header. Errors are RFC 9457 problem details naming the field at fault."),
    paths(
        api::cases::create_case, api::cases::get_case, api::cases::send_code, api::cases::verify_code, api::cases::run_checks, api::cases::acknowledge,
        api::cases::confirm, api::cases::withdraw, api::cases::review, api::cases::retry, api::cases::receipt, api::cases::timeline,
        api::cases::dev_outbox, api::cases::dev_advance, api::cases::healthz, api::cases::readyz,
        api::vault::encrypt, api::vault::decrypt, api::vault::blind_index, api::vault::rotate,
        api::cases::restore, api::cases::extend, api::settlement::settle, api::cases::alternatives, api::cases::choose_alternative, api::operations::check, api::operations::carrier_event, api::operations::carrier_callback, api::operations::overdue,
        api::operations::notifications, api::operations::calendar,
        api::audit::public_key, api::audit::tree_head, api::audit::sign_now, api::audit::tree_heads,
        api::audit::inclusion, api::audit::consistency, api::audit::export, api::audit::receipt_html,
        api::audit::compliance,
        console::login, console::create_case, console::read_case, console::hotline, console::counter,
        console::review, console::create_agent_route, console::report,
        api::identity::session, api::identity::face,
        api::claims::create, api::claims::read, api::claims::receipt, api::claims::list, api::claims::document, api::claims::decide,
        api::erasure::list, api::erasure::complete, api::erasure::callback, api::erasure::acknowledge,
        api::reapply::start, api::reapply::list, api::reapply::get_run,
        api::drift::list, api::drift::accept,
        worker::purge::create, worker::purge::list, worker::purge::read, worker::purge::report, worker::purge::object,
        api::exports::create, api::exports::create_for_case, api::exports::read, api::exports::delete,
        api::exports::download, api::exports::console_create, api::exports::console_read,
        pages::user::create_handoff,
        api::transparency::page, api::transparency::json, api::transparency::report, api::transparency::consistency,
        api::transparency::checkpoint_text, api::transparency::publish_on_demand,
        api::support::open_with_receipt, api::support::queue, api::support::read, api::support::answer,
        api::support::resend, api::support::close
    ),
    components(schemas(http::problem::Problem)),
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
