//! The finishing touches of the OpenAPI document, so that code generators
//! and gateways take it as it is: an `operationId` per operation that reads
//! as a method name (`createCase`), a description on every response, and
//! the webhooks the platform receives (OpenAPI 3.1 `webhooks`), one per
//! notification kind with its payload.

use lethe_domain::notice;
use serde_json::{Value, json};

/// (method, path, operationId). Every operation needs one: a test fails on
/// an operation without it, and on an id used twice.
pub const OPERATION_IDS: &[(&str, &str, &str)] = &[
    ("get", "/healthz", "getHealth"),
    ("get", "/readyz", "getReadiness"),
    ("get", "/transparency", "getTransparency"),
    ("get", "/transparency.json", "getTransparencyJson"),
    ("get", "/transparency/checkpoint", "getCheckpoint"),
    (
        "get",
        "/transparency/proofs/consistency",
        "getPublicConsistencyProof",
    ),
    ("get", "/transparency/reports/{id}", "getPublishedReport"),
    ("get", "/v1/alternatives", "listAlternatives"),
    ("get", "/v1/audit/export", "exportAuditLog"),
    ("get", "/v1/audit/proofs/consistency", "getConsistencyProof"),
    ("get", "/v1/audit/proofs/inclusion", "getInclusionProof"),
    ("get", "/v1/audit/public-key", "getAuditPublicKey"),
    ("get", "/v1/audit/tree-head", "getTreeHead"),
    ("get", "/v1/audit/tree-heads", "listTreeHeads"),
    ("post", "/v1/audit/tree-heads", "signTreeHead"),
    ("get", "/v1/calendar", "getCalendar"),
    ("post", "/v1/callbacks/carrier", "carrierCallback"),
    ("post", "/v1/callbacks/face", "faceCallback"),
    ("post", "/v1/carrier-events", "recordCarrierEvent"),
    ("post", "/v1/cases", "createCase"),
    ("get", "/v1/cases/{id}", "getCase"),
    (
        "post",
        "/v1/cases/{id}/acknowledgements",
        "acknowledgeConsequence",
    ),
    ("post", "/v1/cases/{id}/alternative", "chooseAlternative"),
    ("post", "/v1/cases/{id}/checks", "runChecks"),
    ("post", "/v1/cases/{id}/confirm", "confirmCase"),
    (
        "post",
        "/v1/cases/{id}/erasures/{system}",
        "acknowledgeErasure",
    ),
    ("post", "/v1/cases/{id}/exports", "createCaseExport"),
    ("post", "/v1/cases/{id}/extend", "extendDeadline"),
    ("get", "/v1/cases/{id}/receipt", "getReceipt"),
    ("get", "/v1/cases/{id}/receipt.html", "getReceiptPage"),
    ("post", "/v1/cases/{id}/restore", "restoreAccount"),
    ("post", "/v1/cases/{id}/retry", "retryErasure"),
    ("post", "/v1/cases/{id}/review", "reviewCase"),
    ("post", "/v1/cases/{id}/settlements", "chooseSettlement"),
    ("get", "/v1/cases/{id}/timeline", "getTimeline"),
    (
        "post",
        "/v1/cases/{id}/verification/session",
        "verifyAppSession",
    ),
    (
        "post",
        "/v1/cases/{id}/verification/sms/send",
        "sendSmsCode",
    ),
    (
        "post",
        "/v1/cases/{id}/verification/sms/verify",
        "verifySmsCode",
    ),
    ("post", "/v1/cases/{id}/withdraw", "withdrawCase"),
    ("post", "/v1/claims", "createClaim"),
    ("get", "/v1/claims/{id}", "getClaim"),
    ("get", "/v1/claims/{id}/receipt", "getClaimReceipt"),
    ("post", "/v1/console/agents", "consoleCreateAgent"),
    ("post", "/v1/console/cases", "consoleCreateCase"),
    ("get", "/v1/console/cases/{id}", "consoleGetCase"),
    (
        "post",
        "/v1/console/cases/{id}/counter",
        "consoleCounterCheck",
    ),
    (
        "post",
        "/v1/console/cases/{id}/hotline",
        "consoleHotlineCheck",
    ),
    ("post", "/v1/console/cases/{id}/review", "consoleReviewCase"),
    ("get", "/v1/console/claims", "consoleListClaims"),
    (
        "post",
        "/v1/console/claims/{id}/decision",
        "consoleDecideClaim",
    ),
    (
        "get",
        "/v1/console/claims/{id}/documents/{n}",
        "consoleGetClaimDocument",
    ),
    ("post", "/v1/console/exports", "consoleCreateExport"),
    ("get", "/v1/console/exports/{id}", "consoleGetExport"),
    (
        "get",
        "/v1/console/datamap/findings",
        "consoleListDriftFindings",
    ),
    (
        "post",
        "/v1/console/datamap/findings/{id}/accept",
        "consoleAcceptDriftFinding",
    ),
    ("post", "/v1/console/login", "consoleLogin"),
    ("get", "/v1/console/manual-tasks", "listManualTasks"),
    (
        "post",
        "/v1/console/manual-tasks/{id}/complete",
        "completeManualTask",
    ),
    ("get", "/v1/console/overdue", "listOverdue"),
    ("get", "/v1/console/report", "consoleGetReport"),
    ("get", "/v1/console/support", "consoleListSupportRequests"),
    (
        "get",
        "/v1/console/support/{id}",
        "consoleGetSupportRequest",
    ),
    (
        "post",
        "/v1/console/support/{id}/answer",
        "consoleAnswerSupportRequest",
    ),
    (
        "post",
        "/v1/console/support/{id}/close",
        "consoleCloseSupportRequest",
    ),
    (
        "post",
        "/v1/console/support/{id}/resend",
        "consoleResendSettlement",
    ),
    ("post", "/v1/console/vault/kek/rotate", "rotateKek"),
    ("post", "/v1/dev/clock/advance", "devAdvanceClock"),
    ("get", "/v1/dev/outbox/{id}", "devGetOutbox"),
    ("post", "/v1/erasure-callbacks/{system}", "erasureCallback"),
    ("post", "/v1/exports", "createExport"),
    ("get", "/v1/exports/{id}", "getExport"),
    ("delete", "/v1/exports/{id}", "deleteExport"),
    ("get", "/v1/exports/{id}/download", "downloadExport"),
    ("post", "/v1/handoffs", "createHandoff"),
    ("get", "/v1/identifiers/check", "checkIdentifier"),
    ("get", "/v1/notifications", "listNotifications"),
    ("get", "/v1/purges", "listPurges"),
    ("post", "/v1/purges", "createPurge"),
    ("get", "/v1/purges/{id}", "getPurge"),
    ("post", "/v1/purges/{id}/objections", "objectToPurge"),
    ("get", "/v1/purges/{id}/report", "getPurgeReport"),
    ("get", "/v1/reapply-runs", "listReapplyRuns"),
    ("post", "/v1/reapply-runs", "startReapply"),
    ("get", "/v1/reapply-runs/{id}", "getReapplyRun"),
    ("get", "/v1/reports/compliance", "getComplianceReport"),
    ("post", "/v1/support/requests", "openSupportRequest"),
    ("post", "/v1/transparency/reports", "publishReport"),
    ("post", "/v1/vault/blind-index", "vaultBlindIndex"),
    ("post", "/v1/vault/decrypt", "vaultDecrypt"),
    ("post", "/v1/vault/encrypt", "vaultEncrypt"),
];

/// A notification's payload field: name, JSON type, meaning.
type Field = (&'static str, &'static str, &'static str);

const CASE: Field = ("case_id", "string", "the case");
const SUBJECT: Field = (
    "subject_id",
    "string",
    "the account (while the case is open; an erased case's notifications carry subject_ref instead)",
);

/// Every notification kind: when it is sent, what the platform does, its
/// payload (docs/notifications.md says the same in prose).
pub fn notifications() -> Vec<(&'static str, &'static str, Vec<Field>)> {
    vec![
        (
            notice::ACCOUNT_FREEZE,
            "The user confirmed and cooling-off started (or a reviewer approved an identity claim): freeze the account and pause its auto-renewals; cancel nothing.",
            vec![
                CASE,
                SUBJECT,
                (
                    "cooling_off_ends_at",
                    "string",
                    "when cooling-off ends (RFC 3339)",
                ),
                (
                    "pause_auto_renewal",
                    "array",
                    "the subscriptions (asset ids) to pause",
                ),
                ("claim_id", "string", "for an approved identity claim"),
                ("reason", "string", "identity_claim_approved, for a claim"),
            ],
        ),
        (
            notice::ACCOUNT_RESTORE,
            "The user restored the account during cooling-off: unfreeze it and resume the paused renewals. Nothing was settled, so nothing needs undoing.",
            vec![
                CASE,
                SUBJECT,
                (
                    "resume_auto_renewal",
                    "array",
                    "the subscriptions (asset ids) to resume",
                ),
            ],
        ),
        (
            notice::COOLING_OFF_ENDED,
            "Cooling-off ended: the cancellation is final. The settlement instructions follow as signed calls; the erasure starts when all are settled.",
            vec![CASE, SUBJECT],
        ),
        (
            notice::SETTLEMENT_FAILED,
            "The platform refused a settlement instruction (or never answered): the user or an agent chooses again for that asset.",
            vec![
                CASE,
                SUBJECT,
                ("asset_id", "string", "the asset"),
                ("instruction_id", "string", "the refused instruction"),
            ],
        ),
        (
            notice::ACCOUNT_ERASED,
            "Every system is erased and verified; the receipt is signed.",
            vec![
                CASE,
                (
                    "subject_ref",
                    "string",
                    "the case's pseudonym (the subject id is forgotten)",
                ),
                (
                    "settlements",
                    "array",
                    "per asset: asset_id, kind, option, status, amount_minor, amount_shown_minor (the figure shown when chosen, when the amount paid differs), reference",
                ),
            ],
        ),
        (
            notice::CASE_REJECTED,
            "A reviewer rejected the case: tell the user the reason.",
            vec![
                CASE,
                SUBJECT,
                ("reason", "string", "the text the user reads"),
            ],
        ),
        (
            notice::ALTERNATIVE_REQUESTED,
            "The user took an alternative instead of cancelling: carry it out.",
            vec![
                CASE,
                SUBJECT,
                (
                    "alternative",
                    "string",
                    "deactivate, change_password or unbind_real_name",
                ),
            ],
        ),
        (
            notice::DEADLINE_WARNING,
            "80 % of a deadline's time has passed.",
            vec![
                CASE,
                ("deadline", "string", "review, erasure_start or completion"),
                ("state", "string", "the case's state"),
                (
                    "provisional",
                    "boolean",
                    "the due date lies beyond the working-day calendar (the earliest possible date)",
                ),
            ],
        ),
        (
            notice::DEADLINE_OVERDUE,
            "A deadline passed while open: escalate.",
            vec![
                CASE,
                ("deadline", "string", "review, erasure_start or completion"),
                ("state", "string", "the case's state"),
                (
                    "provisional",
                    "boolean",
                    "the due date lies beyond the working-day calendar",
                ),
            ],
        ),
        (
            notice::DEADLINE_EXTENDED,
            "The response deadline was extended once (GDPR, CCPA): tell the user why.",
            vec![
                CASE,
                SUBJECT,
                ("reason", "string", "the reason given to the user"),
            ],
        ),
        (
            notice::REALNAME_UNBIND,
            "A reviewer approved an identity claim: unbind the real-name identity from this account.",
            vec![
                ("claim_id", "string", "the claim"),
                SUBJECT,
                ("reason", "string", "identity_claim_approved"),
            ],
        ),
        (
            notice::IDENTIFIER_UNBIND,
            "A recycled phone number is still bound to live accounts: unbind it from them.",
            vec![
                ("kind", "string", "phone"),
                ("reason", "string", "recycled_number"),
                ("subject_ids", "array", "the accounts"),
            ],
        ),
        (
            notice::EXPORT_READY,
            "A copy an agent asked for is ready: give the user the link (GET /v1/exports/{export_id} with the platform's key).",
            vec![
                ("export_id", "string", "the export"),
                ("case_id", "string", "the case, or null"),
                SUBJECT,
                ("requested_by", "string", "agent"),
            ],
        ),
        (
            notice::PURGE_NOTICE,
            "A purge with a notice period will erase this account when the period ends (erase_after): tell the user; if they sign in before then, report it (POST /v1/purges/{purge_id}/objections) and the account is kept.",
            vec![
                ("purge_id", "string", "the purge"),
                ("subject_id", "string", "the account to tell"),
                (
                    "erase_after",
                    "string",
                    "when the notice period ends (RFC 3339)",
                ),
                ("legal_basis", "string", "why the platform purges"),
            ],
        ),
        (
            notice::DATAMAP_DRIFT,
            "The scheduled data-map check found something new in a system's schema: a personal column or table the map does not cover, a new reference into a mapped table, or a change that would break erasure (breaking: true; erasure in that system waits until it is fixed). Map it (the finding's fix), or accept it with a reason in the console.",
            vec![(
                "findings",
                "array",
                "the new findings: id, system, kind, at (table or table.column), severity, breaking, message, fix (the map text that resolves it)",
            )],
        ),
    ]
}

/// The description of a response the handler left without one.
fn default_description(status: &str) -> &'static str {
    match status {
        "200" => "OK: the result.",
        "201" => "Created: the new resource.",
        "202" => "Accepted: the work goes on in the background.",
        "204" => "Done; no content.",
        "302" | "303" => "Redirect to the location given.",
        "400" => "The request cannot be read; the problem says what to fix.",
        "401" => "Missing or wrong credentials.",
        "403" => "The credentials do not allow this.",
        "404" => "Not found (or not yours).",
        "409" => "Conflicts with the resource's state; the problem names the next step.",
        "410" => "Gone: expired or deleted.",
        "413" => "The body is too large.",
        "422" => "Not valid; the problem names the field and what to fix.",
        "429" => "Too many requests; Retry-After says when to try again.",
        "503" => "Not available now; try again shortly.",
        _ => "See the problem details.",
    }
}

/// An example value of a schema, from the examples, enums, defaults and
/// formats it states (or a plain value of its type); `$ref`s are followed
/// into `components` up to a small depth.
fn example_of(schema: &Value, components: &Value, depth: u32) -> Value {
    if depth > 6 {
        return Value::Null;
    }
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or_default();
        return example_of(&components["schemas"][name], components, depth + 1);
    }
    for k in ["example", "const", "default"] {
        if let Some(v) = schema.get(k) {
            return v.clone();
        }
    }
    if let Some(v) = schema["examples"].as_array().and_then(|a| a.first()) {
        return v.clone();
    }
    if let Some(v) = schema["enum"].as_array().and_then(|a| a.first()) {
        return v.clone();
    }
    for k in ["oneOf", "anyOf", "allOf"] {
        if let Some(first) = schema[k]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["type"] != "null"))
        {
            return example_of(first, components, depth + 1);
        }
    }
    let ty = match &schema["type"] {
        // An optional value without an example: absent, as most requests
        // leave it.
        Value::Array(ts) if ts.iter().any(|t| t == "null") => return Value::Null,
        Value::Array(ts) => ts.first().cloned().unwrap_or(Value::Null),
        t => t.clone(),
    };
    match ty.as_str() {
        Some("object") => {
            let mut o = serde_json::Map::new();
            if let Some(props) = schema["properties"].as_object() {
                for (k, v) in props {
                    o.insert(k.clone(), example_of(v, components, depth + 1));
                }
            }
            Value::Object(o)
        }
        Some("array") => json!([example_of(&schema["items"], components, depth + 1)]),
        Some("integer") => schema.get("minimum").cloned().unwrap_or(json!(1)),
        Some("number") => json!(1.0),
        Some("boolean") => json!(true),
        Some("string") => match schema["format"].as_str() {
            Some("date-time") => json!("2026-12-06T08:00:00Z"),
            Some("date") => json!("2026-12-06"),
            Some("uuid") => json!("01939e5c-2f3a-7cc0-8a59-3b2c1d0e9f10"),
            _ => json!("string"),
        },
        _ => Value::Null,
    }
}

/// Adds an example to each parameter, the JSON request body and each JSON
/// success response that has none: an example request and response for
/// every operation.
fn add_examples(op: &mut Value, components: &Value) {
    if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
        for p in params {
            if p.get("example").is_none() && p.get("schema").is_some() {
                let mut v = example_of(&p["schema"], components, 0);
                if v.is_null() {
                    // An optional query value: show one anyway.
                    let mut schema = p["schema"].clone();
                    if let Some(ts) = schema["type"].as_array() {
                        schema["type"] = ts
                            .iter()
                            .find(|t| *t != "null")
                            .cloned()
                            .unwrap_or(Value::Null);
                    }
                    v = example_of(&schema, components, 0);
                }
                p["example"] = v;
            }
        }
    }
    // get_mut, not indexing: indexing a missing key inserts it.
    if let Some(content) = op
        .get_mut("requestBody")
        .and_then(|b| b.get_mut("content"))
        .and_then(Value::as_object_mut)
    {
        for media in content.values_mut() {
            if media.get("example").is_none() && media.get("schema").is_some() {
                media["example"] = example_of(&media["schema"], components, 0);
            }
        }
    }
    if let Some(responses) = op["responses"].as_object_mut() {
        for (status, r) in responses.iter_mut() {
            if !status.starts_with('2') {
                continue;
            }
            if let Some(content) = r.get_mut("content").and_then(Value::as_object_mut) {
                for (kind, media) in content.iter_mut() {
                    if kind.contains("json")
                        && media.get("example").is_none()
                        && media.get("schema").is_some()
                    {
                        media["example"] = example_of(&media["schema"], components, 0);
                    }
                }
            }
        }
    }
}

/// Applies the touches to the document as JSON.
pub fn finish(doc: &mut Value) {
    let components = doc["components"].clone();
    let ids: std::collections::HashMap<(&str, &str), &str> = OPERATION_IDS
        .iter()
        .map(|(m, p, id)| ((*m, *p), *id))
        .collect();
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, op) in item.iter_mut() {
                if let Some(id) = ids.get(&(method.as_str(), path.as_str())) {
                    op["operationId"] = json!(id);
                }
                if let Some(responses) = op["responses"].as_object_mut() {
                    for (status, r) in responses.iter_mut() {
                        if r.get("description").is_none_or(|d| d.as_str() == Some("")) {
                            r["description"] = json!(default_description(status));
                        }
                    }
                }
                add_examples(op, &components);
            }
        }
    }
    let mut hooks = serde_json::Map::new();
    for (kind, when, fields) in notifications() {
        let mut props = serde_json::Map::new();
        for (name, ty, about) in &fields {
            let schema = match *ty {
                "array" => json!({"type": "array", "items": {}, "description": about}),
                "string" if *name == "case_id" && kind == notice::EXPORT_READY => {
                    json!({"type": ["string", "null"], "description": about})
                }
                t => json!({"type": t, "description": about}),
            };
            props.insert((*name).to_owned(), schema);
        }
        let camel: String = kind
            .split(['.', '_'])
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().chain(c).collect::<String>())
                    .unwrap_or_default()
            })
            .collect();
        hooks.insert(
            kind.to_owned(),
            json!({
                "post": {
                    "operationId": format!("on{camel}"),
                    "summary": when,
                    "description": "Delivered to the platform's notifications.url as a Standard Webhooks POST (webhook-id, webhook-timestamp, webhook-signature: v1,<base64 HMAC-SHA-256> with the whsec_ secret); retried with backoff until a 2xx.",
                    "requestBody": {
                        "required": true,
                        "content": {"application/json": {"schema": {
                            "type": "object",
                            "required": ["type", "timestamp", "data"],
                            "properties": {
                                "type": {"type": "string", "const": kind},
                                "timestamp": {"type": "string", "format": "date-time"},
                                "data": {"type": "object", "properties": props},
                            },
                        }}},
                    },
                    "responses": {"200": {"description": "Any 2xx acknowledges the notification."}},
                }
            }),
        );
    }
    doc["webhooks"] = Value::Object(hooks);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every API route the router serves is in the document, and every
    /// operation of the document has its operationId here: a route added
    /// without documentation fails.
    #[test]
    fn every_route_is_documented_with_an_operation_id() {
        let doc = serde_json::to_value(crate::openapi(true)).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        // The router's API paths, read from its source.
        let src = include_str!("routes.rs");
        let mut routed = std::collections::BTreeSet::new();
        let mut rest = src;
        while let Some(i) = rest.find(".route(") {
            rest = &rest[i + 7..];
            let Some(q) = rest.find('"') else { break };
            let after = &rest[q + 1..];
            let Some(end) = after.find('"') else { break };
            let path = &after[..end];
            if path.starts_with("/v1/") || path == "/healthz" || path == "/readyz" {
                routed.insert(path.to_owned());
            }
        }
        assert!(routed.len() > 50, "{routed:?}");
        let missing: Vec<&String> = routed.iter().filter(|p| !paths.contains_key(*p)).collect();
        assert!(
            missing.is_empty(),
            "routes without documentation: {missing:?}"
        );
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                assert!(
                    OPERATION_IDS
                        .iter()
                        .any(|(m, p, _)| m == method && p == path),
                    "{method} {path} has no operationId in OPERATION_IDS"
                );
                assert!(op["summary"].is_string(), "{method} {path} has no summary");
                for (status, r) in op["responses"].as_object().unwrap() {
                    assert!(
                        r["description"].as_str().is_some_and(|d| !d.is_empty()),
                        "{method} {path} {status} has no description"
                    );
                }
            }
        }
        assert_eq!(
            doc["webhooks"].as_object().unwrap().len(),
            notice::ALL.len()
        );
        // An example of every JSON body, sent and received, and of every
        // parameter.
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                for p in op["parameters"].as_array().into_iter().flatten() {
                    assert!(
                        p.get("example").is_some(),
                        "{method} {path}: no example of {}",
                        p["name"]
                    );
                }
                for media in op["requestBody"]["content"]
                    .as_object()
                    .into_iter()
                    .flat_map(|c| c.values())
                {
                    assert!(
                        media.get("example").is_some(),
                        "{method} {path}: no request example"
                    );
                }
                let ok = op["responses"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .find(|(s, _)| s.starts_with('2'));
                if let Some((_, r)) = ok
                    && let Some(json) = r["content"].get("application/json")
                    && json.get("schema").is_some()
                {
                    assert!(
                        json.get("example").is_some(),
                        "{method} {path}: no response example"
                    );
                }
            }
        }
        let create = &paths["/v1/cases"]["post"];
        assert_eq!(
            create["requestBody"]["content"]["application/json"]["example"]["channel"], "app",
            "{create}"
        );
    }

    /// Notifications are emitted only under the kinds of `notice` (so the
    /// webhooks of the document list every kind the code sends): no call
    /// that writes one names its kind with a string literal.
    #[test]
    fn notifications_are_emitted_under_the_documented_kinds_only() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let mut offenders = vec![];
        let mut seen = 0;
        for krate in ["lethe-domain", "lethe-store", "lethe-server"] {
            let mut stack = vec![std::path::PathBuf::from(format!("{root}/{krate}/src"))];
            while let Some(dir) = stack.pop() {
                for e in std::fs::read_dir(&dir).unwrap() {
                    let p = e.unwrap().path();
                    if p.is_dir() {
                        stack.push(p);
                        continue;
                    }
                    // Rust sources, but not this scan itself.
                    if p.extension().and_then(|x| x.to_str()) != Some("rs")
                        || p.ends_with("openapi_doc.rs")
                    {
                        continue;
                    }
                    let src = std::fs::read_to_string(&p).unwrap();
                    for call in [
                        "insert_notification(",
                        "insert_notification_for(",
                        ".notify(",
                        "Notice {",
                    ] {
                        for (i, _) in src.match_indices(call) {
                            // The argument (or field) that names the kind.
                            let rest = &src[i + call.len()..];
                            let arg = match call {
                                "Notice {" => rest.split_once("kind:").map(|x| x.1).unwrap_or(""),
                                ".notify(" => rest,
                                _ => rest.split_once(',').map(|x| x.1).unwrap_or(""),
                            };
                            let arg = arg.trim_start();
                            // The definitions and pass-throughs name no kind.
                            if ["kind", "&'static", "&str", "event", "n.kind"]
                                .iter()
                                .any(|w| arg.starts_with(w))
                            {
                                continue;
                            }
                            seen += 1;
                            if arg.starts_with('"') {
                                let end = arg.len().min(40);
                                offenders.push(format!("{}: {}", p.display(), &arg[..end]));
                            }
                        }
                    }
                }
            }
        }
        assert!(seen >= 10, "the scan found only {seen} emitters");
        assert!(
            offenders.is_empty(),
            "use lethe_domain::notice::* for: {offenders:?}"
        );
    }

    #[test]
    fn every_notification_kind_has_a_webhook_and_ids_are_unique() {
        let kinds: Vec<&str> = notifications().iter().map(|n| n.0).collect();
        let mut sorted = kinds.clone();
        sorted.sort();
        let mut all = notice::ALL.to_vec();
        all.sort();
        assert_eq!(sorted, all, "one webhook per notification kind");
        let mut ids: Vec<&str> = OPERATION_IDS.iter().map(|o| o.2).collect();
        ids.sort();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n, "an operationId is used twice");
    }
}
