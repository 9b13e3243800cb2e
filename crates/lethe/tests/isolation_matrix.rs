//! Two platforms on one installation, every role, every operation of the
//! OpenAPI document: what platform A owns is invisible and untouchable for
//! platform B's key and for B's agents, whatever their role; A's own key and
//! agents reach it as the role matrix says.
//!
//! The operations come from the served `/openapi.json`. Each needs an entry
//! in `spec` below (what it addresses, a valid body): a new endpoint without
//! one fails this test, so no endpoint skips the matrix.

mod common;

use common::*;
use lethe_server::console::{Role, allowed};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// What an operation addresses.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    /// One of platform A's resources (by the id in its path).
    Owned,
    /// No one resource: lists, creation, installation data.
    Collection,
    /// No credentials at all (health, sign-in, signed callbacks, links).
    Public,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Auth {
    Key,
    Console,
    /// A platform key or a console token (the document lists both).
    Either,
    None,
}

impl Auth {
    /// Whether an operation of this kind takes the caller's credential.
    fn takes(self, caller: Auth) -> bool {
        self == caller || (self == Auth::Either && caller != Auth::None)
    }
}

struct Spec {
    target: Target,
    /// The console route name of `console::allowed`, for console operations.
    route: Option<&'static str>,
    body: Option<Value>,
    query: String,
    /// Platform keys may never do this, not even on their own cases.
    never_a_key: bool,
}

/// A's resources and the strings that must never reach B.
struct Owned {
    case: String,
    export: String,
    claim: String,
    ciphertext: String,
    reapply: String,
    purge: String,
    support: String,
}

fn spec(method: &str, path: &str, a: &Owned) -> Option<Spec> {
    use Target::*;
    let s = |target, route: Option<&'static str>, body: Option<Value>, query: &str| Spec {
        target,
        route,
        body,
        query: query.to_owned(),
        never_a_key: false,
    };
    let now = jiff::Timestamp::now();
    let today = now.strftime("%Y-%m-%d").to_string();
    let tomorrow = now
        .checked_add(jiff::SignedDuration::from_hours(48))
        .unwrap()
        .strftime("%Y-%m-%d")
        .to_string();
    let report_q = format!("from=2020-01-01&to={tomorrow}");
    let _ = today;
    Some(match (method, path) {
        ("GET", "/healthz") | ("GET", "/readyz") => s(Public, None, None, ""),
        ("POST", "/v1/callbacks/carrier") => s(
            Public,
            None,
            Some(json!({"event": "recycled", "phone": "13800000000"})),
            "",
        ),
        ("POST", "/v1/callbacks/face") => s(
            Public,
            None,
            Some(json!({"case_id": a.case, "provider_ref": "x", "result": "pass"})),
            "",
        ),
        ("POST", "/v1/console/login") => s(
            Public,
            None,
            Some(json!({"username": "a.agent", "password": "wrong", "totp": "000000"})),
            "",
        ),
        ("POST", "/v1/erasure-callbacks/{system}") => s(Public, None, Some(json!({})), ""),
        ("GET", "/v1/exports/{id}/download") => s(Public, None, None, "token=not-the-token"),

        ("GET", "/v1/alternatives") => s(Collection, None, None, ""),
        ("GET", "/v1/audit/export") => s(Collection, None, None, ""),
        ("GET", "/v1/audit/proofs/consistency") => s(Collection, None, None, "first=1&second=2"),
        ("GET", "/v1/audit/proofs/inclusion") => s(Collection, None, None, "seq=1&tree_size=2"),
        ("GET", "/v1/audit/public-key") => s(Collection, None, None, ""),
        ("GET", "/v1/audit/tree-head") => s(Collection, None, None, ""),
        ("GET", "/v1/audit/tree-heads") => s(Collection, None, None, ""),
        ("POST", "/v1/audit/tree-heads") => s(Collection, None, None, ""),
        ("GET", "/v1/calendar") => s(Collection, None, None, ""),
        ("POST", "/v1/carrier-events") => s(
            Collection,
            None,
            Some(json!({"event": "recycled", "phone": "13900000000"})),
            "",
        ),
        ("POST", "/v1/cases") => s(
            Collection,
            None,
            Some(json!({"subject_id": "7", "channel": "app"})),
            "",
        ),
        ("GET", "/v1/cases/{id}") => s(Owned, None, None, ""),
        ("POST", "/v1/cases/{id}/acknowledgements") => s(
            Owned,
            None,
            Some(json!({"consequence_id": "no_login", "version": 1, "locale": "zh-CN"})),
            "",
        ),
        ("POST", "/v1/cases/{id}/alternative") => {
            s(Owned, None, Some(json!({"kind": "deactivate"})), "")
        }
        ("POST", "/v1/cases/{id}/checks") => s(Owned, None, None, ""),
        ("POST", "/v1/cases/{id}/confirm") => s(Owned, None, None, ""),
        ("POST", "/v1/cases/{id}/erasures/{system}") => s(Owned, None, Some(json!({})), ""),
        ("POST", "/v1/cases/{id}/exports") => s(Owned, None, Some(json!({"single_use": true})), ""),
        ("POST", "/v1/cases/{id}/extend") => s(
            Owned,
            None,
            Some(json!({"reason": "the holder asked for more time to collect documents"})),
            "",
        ),
        ("GET", "/v1/cases/{id}/receipt") => s(Owned, None, None, ""),
        ("GET", "/v1/cases/{id}/receipt.html") => s(Owned, None, None, ""),
        ("POST", "/v1/cases/{id}/restore") => s(Owned, None, Some(json!({"code": "123456"})), ""),
        ("POST", "/v1/cases/{id}/retry") => s(Owned, None, None, ""),
        ("POST", "/v1/cases/{id}/review") => Spec {
            never_a_key: true,
            ..s(Owned, None, Some(json!({"decision": "approve"})), "")
        },
        ("POST", "/v1/cases/{id}/settlements") => s(
            Owned,
            None,
            Some(json!({"asset_id": "balance", "option": "forfeit", "locale": "zh-CN"})),
            "",
        ),
        ("GET", "/v1/cases/{id}/timeline") => s(Owned, None, None, ""),
        ("POST", "/v1/cases/{id}/verification/session") => {
            s(Owned, None, Some(json!({"token": "e30.e30.e30"})), "")
        }
        ("POST", "/v1/cases/{id}/verification/sms/send") => s(Owned, None, None, ""),
        ("POST", "/v1/cases/{id}/verification/sms/verify") => {
            s(Owned, None, Some(json!({"code": "000000"})), "")
        }
        ("POST", "/v1/cases/{id}/withdraw") => s(Owned, None, None, ""),
        ("POST", "/v1/claims") => s(
            Collection,
            None,
            Some(json!({"id_number": "110101199003070000", "documents": [
                {"kind": "id_front", "content_base64": "ZnJvbnQ="},
                {"kind": "id_back", "content_base64": "YmFjaw=="},
                {"kind": "selfie", "content_base64": "c2VsZmll"}]})),
            "",
        ),
        ("GET", "/v1/claims/{id}") => s(Owned, None, None, ""),
        ("GET", "/v1/claims/{id}/receipt") => s(Owned, None, None, ""),
        ("POST", "/v1/console/agents") => s(
            Collection,
            Some("create_agent"),
            Some(json!({"username": "made.by.matrix", "role": "agent", "platform": "demo"})),
            "",
        ),
        ("POST", "/v1/console/cases") => s(
            Collection,
            Some("create_case"),
            Some(json!({"subject_id": "8", "channel": "hotline", "platform": "demo"})),
            "",
        ),
        ("GET", "/v1/console/cases/{id}") => s(Owned, Some("read_case"), None, ""),
        ("POST", "/v1/console/cases/{id}/counter") => s(
            Owned,
            Some("counter"),
            Some(json!({"document_type": "id_card", "last4": "000X", "branch": "Beijing South"})),
            "",
        ),
        ("POST", "/v1/console/cases/{id}/hotline") => s(
            Owned,
            Some("hotline"),
            Some(json!({"name": "n", "id_number": "110101199003070000", "phone": "13800000000"})),
            "",
        ),
        ("POST", "/v1/console/cases/{id}/review") => s(
            Owned,
            Some("review"),
            Some(json!({"decision": "approve"})),
            "",
        ),
        ("GET", "/v1/console/claims") => s(Collection, Some("claims"), None, ""),
        ("POST", "/v1/console/claims/{id}/decision") => s(
            Owned,
            Some("claims"),
            Some(json!({"decision": "reject", "reason": "the documents are unreadable"})),
            "",
        ),
        ("GET", "/v1/console/claims/{id}/documents/{n}") => s(Owned, Some("claims"), None, ""),
        ("POST", "/v1/console/exports") => s(
            Collection,
            Some("export"),
            Some(json!({"subject_id": "1", "case_id": a.case})),
            "",
        ),
        ("GET", "/v1/console/exports/{id}") => s(Owned, Some("read_case"), None, ""),
        ("GET", "/v1/console/manual-tasks") => s(Collection, None, None, "open=false"),
        ("POST", "/v1/console/manual-tasks/{id}/complete") => s(
            Owned,
            None,
            Some(json!({"note": "done", "records": 0, "why_none": "nothing was in the archive"})),
            "",
        ),
        ("GET", "/v1/console/overdue") => s(Collection, Some("overdue"), None, ""),
        ("GET", "/v1/console/report") => s(Collection, Some("report"), None, &report_q),
        ("POST", "/v1/console/vault/kek/rotate") => s(Collection, Some("rotate_kek"), None, ""),
        ("POST", "/v1/dev/clock/advance") => s(Collection, None, Some(json!({"seconds": 1})), ""),
        ("GET", "/v1/dev/outbox/{id}") => s(Owned, None, None, ""),
        ("POST", "/v1/exports") => s(Collection, None, Some(json!({"subject_id": "3"})), ""),
        ("GET", "/v1/exports/{id}") => s(Owned, None, None, ""),
        ("DELETE", "/v1/exports/{id}") => s(Owned, None, None, ""),
        ("POST", "/v1/handoffs") => s(
            Collection,
            None,
            Some(json!({"subject_id": "9", "channel": "app"})),
            "",
        ),
        ("GET", "/v1/identifiers/check") => {
            s(Collection, None, None, "kind=phone&value=13800000000")
        }
        ("GET", "/v1/notifications") => s(Collection, None, None, ""),
        ("GET", "/v1/reapply-runs") => s(Collection, None, None, ""),
        ("GET", "/v1/console/datamap/findings") => s(Collection, Some("datamap"), None, ""),
        ("POST", "/v1/console/datamap/findings/{id}/accept") => s(
            Collection,
            Some("datamap_accept"),
            Some(json!({"reason": "not personal: a warehouse shelf code"})),
            "",
        ),
        ("POST", "/v1/purges") => s(
            Collection,
            None,
            Some(
                json!({"legal_basis": "PIPL Art. 47: retention ended", "subjects": ["19"], "notice_days": 30}),
            ),
            "",
        ),
        ("GET", "/v1/purges") => s(Collection, None, None, ""),
        ("GET", "/v1/purges/{id}") => s(Owned, None, None, ""),
        ("GET", "/v1/purges/{id}/report") => s(Owned, None, None, ""),
        ("POST", "/v1/purges/{id}/objections") => {
            s(Owned, None, Some(json!({"subject_id": "18"})), "")
        }
        ("POST", "/v1/reapply-runs") => s(
            Collection,
            None,
            Some(json!({"system": "demo_mart", "since": "2026-01-01", "dry_run": true})),
            "",
        ),
        ("GET", "/v1/reapply-runs/{id}") => s(Owned, None, None, ""),
        ("GET", "/v1/reports/compliance") => s(Collection, None, None, &report_q),
        ("POST", "/v1/transparency/reports") => {
            s(Collection, None, Some(json!({"month": "2020-01"})), "")
        }
        ("GET", "/v1/console/support") => s(Collection, Some("support_read"), None, ""),
        ("GET", "/v1/console/support/{id}") => s(Owned, Some("support_read"), None, ""),
        ("POST", "/v1/console/support/{id}/answer") => s(
            Owned,
            Some("support"),
            Some(json!({"answer": "an answer"})),
            "",
        ),
        ("POST", "/v1/console/support/{id}/resend") => s(
            Owned,
            Some("support"),
            Some(json!({"instruction_id": "stl_none"})),
            "",
        ),
        ("POST", "/v1/console/support/{id}/close") => s(Owned, Some("support"), None, ""),
        ("POST", "/v1/support/requests") => s(
            Public,
            None,
            Some(
                json!({"case_id": a.case, "signature": "AAAA", "topic": "other", "message": "hi", "contact": "13800000000"}),
            ),
            "",
        ),
        ("GET", "/transparency")
        | ("GET", "/transparency.json")
        | ("GET", "/transparency/checkpoint")
        | ("GET", "/transparency/reports/{id}") => s(Public, None, None, ""),
        ("GET", "/transparency/proofs/consistency") => s(Public, None, None, "first=1&second=2"),
        ("POST", "/v1/vault/blind-index") => s(
            Collection,
            None,
            Some(json!({"items": [{"kind": "phone", "value": "13800000000"}]})),
            "",
        ),
        ("POST", "/v1/vault/decrypt") => s(
            Collection,
            None,
            Some(
                json!({"items": [{"subject_id": "1", "field": "note", "ciphertext": a.ciphertext}]}),
            ),
            "",
        ),
        ("POST", "/v1/vault/encrypt") => s(
            Collection,
            None,
            Some(json!({"items": [{"subject_id": "1", "field": "note", "plaintext": "b's own"}]})),
            "",
        ),
        _ => return None,
    })
}

fn concrete(path: &str, a: &Owned) -> String {
    let id = if path.contains("/exports/{id}") {
        a.export.as_str()
    } else if path.contains("/claims/{id}") {
        a.claim.as_str()
    } else if path.contains("/purges/{id}") {
        a.purge.as_str()
    } else if path.contains("/reapply-runs/{id}") {
        a.reapply.as_str()
    } else if path.contains("/support/{id}") {
        a.support.as_str()
    } else if path.contains("/manual-tasks/{id}") {
        "1"
    } else {
        a.case.as_str()
    };
    path.replace("{id}", id)
        .replace("{system}", "crm")
        .replace("{n}", "1")
}

struct Caller {
    name: String,
    auth: Auth,
    token: Option<String>,
    /// The platform whose data it may reach (None: every platform).
    platform: Option<&'static str>,
    role: Option<Role>,
}

async fn call(
    demo: &Demo,
    method: &str,
    path: &str,
    query: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, String) {
    let url = if query.is_empty() {
        format!("{}{path}", demo.url)
    } else {
        format!("{}{path}?{query}", demo.url)
    };
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = demo.http.request(m, url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if method != "GET" {
        r = r.header("idempotency-key", uuid::Uuid::new_v4().to_string());
        r = r.json(body.unwrap_or(&json!({})));
    }
    let resp = r.send().await.unwrap();
    let s = resp.status().as_u16();
    (s, resp.text().await.unwrap())
}

/// A 404 that says the caller's resource is not there (what another
/// platform's resource looks like), not some other missing thing.
fn not_owned(status: u16, body: &str) -> bool {
    status == 404
        && [
            "no case with this id",
            "no export with this id",
            "no claim with this id",
            "no manual task with this id",
            "no reapply run of this platform has this id",
            "no purge of this platform has this id",
            "no support request with this id",
        ]
        .iter()
        .any(|t| body.contains(t))
}

#[tokio::test]
async fn two_platforms_every_role_every_operation() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), 20).await;
    let key_b = other_platform_key(&demo.dir, "platform_b");

    // Platform A ("demo", the demo's key) owns a case past verification, an
    // export, a claim, a ciphertext and a blind index.
    let case = demo.create(1).await;
    demo.verify(&case).await;
    let (s, ex) = demo.post("/v1/exports", json!({"subject_id": "2"})).await;
    assert_eq!(s, 202, "{ex}");
    let export = ex["id"].as_str().unwrap().to_owned();
    let (s, cl) = demo
        .post(
            "/v1/claims",
            json!({"id_number": "110101199003071234", "documents": [
                {"kind": "id_front", "content_base64": "ZnJvbnQ="},
                {"kind": "id_back", "content_base64": "YmFjaw=="},
                {"kind": "selfie", "content_base64": "c2VsZmll"}]}),
        )
        .await;
    assert_eq!(s, 201, "{cl}");
    let claim = cl["id"].as_str().unwrap().to_owned();
    let secret = format!("matrix-secret-{}", uuid::Uuid::new_v4().simple());
    let (s, enc) = demo
        .post(
            "/v1/vault/encrypt",
            json!({"items": [{"subject_id": "1", "field": "note", "plaintext": secret}]}),
        )
        .await;
    assert_eq!(s, 200, "{enc}");
    let ciphertext = enc["items"][0]["ciphertext"].as_str().unwrap().to_owned();
    let (_, bi) = demo
        .post(
            "/v1/vault/blind-index",
            json!({"items": [{"kind": "phone", "value": "13800000000"}]}),
        )
        .await;
    let index_a = bi["indexes"][0].as_str().unwrap().to_owned();
    let (s, run) = demo
        .post(
            "/v1/reapply-runs",
            json!({"system": "demo_mart", "since": "2026-01-01", "dry_run": true}),
        )
        .await;
    assert_eq!(s, 202, "{run}");
    let reapply = run["id"].as_str().unwrap().to_owned();
    let (s, pg) = demo
        .post(
            "/v1/purges",
            json!({"legal_basis": "PIPL Art. 47: retention ended", "subjects": ["18", "17"], "notice_days": 30}),
        )
        .await;
    assert_eq!(s, 202, "{pg}");
    let purge = pg["id"].as_str().unwrap().to_owned();
    // A support request the holder of A's case opened from the centre.
    let support_message = format!("matrix-support-{}", uuid::Uuid::new_v4().simple());
    let support = support_from_centre(&demo, "1", "other", &support_message, "13800000001").await;
    let a = Owned {
        case: case.clone(),
        export: export.clone(),
        claim: claim.clone(),
        ciphertext,
        reapply: reapply.clone(),
        purge: purge.clone(),
        support: support.clone(),
    };
    // What must never reach platform B or its agents.
    let leaks = [
        case.clone(),
        export.clone(),
        claim.clone(),
        secret,
        index_a,
        reapply,
        purge,
        support,
        support_message,
    ];

    // Every role, for each platform; and installation staff.
    let mut callers = vec![
        Caller {
            name: "anonymous".into(),
            auth: Auth::None,
            token: None,
            platform: None,
            role: None,
        },
        Caller {
            name: "key B".into(),
            auth: Auth::Key,
            token: Some(key_b.clone()),
            platform: Some("platform_b"),
            role: None,
        },
    ];
    for (platform, tag) in [("platform_b", "b"), ("demo", "a")] {
        for role in [Role::Agent, Role::Reviewer, Role::Admin, Role::Auditor] {
            let user = format!("{tag}.{}", role.as_str());
            let token = agent_session_for(&demo, &user, role.as_str(), Some(platform)).await;
            callers.push(Caller {
                name: format!("{} of {platform}", role.as_str()),
                auth: Auth::Console,
                token: Some(token),
                platform: Some(platform),
                role: Some(role),
            });
        }
    }
    let staff = agent_session_for(&demo, "staff.admin", "admin", None).await;
    callers.push(Caller {
        name: "installation admin".into(),
        auth: Auth::Console,
        token: Some(staff),
        platform: None,
        role: Some(Role::Admin),
    });
    callers.push(Caller {
        name: "key A".into(),
        auth: Auth::Key,
        token: Some(demo.key.clone()),
        platform: Some("demo"),
        role: None,
    });

    // The operations, from the served document.
    let (_, doc) = demo.get("/openapi.json").await;
    let mut ops: Vec<(String, String, Auth)> = vec![];
    let mut missing = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let method = method.to_uppercase();
            let schemes: BTreeSet<&str> = op["security"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_object()?.keys().next().map(String::as_str))
                .collect();
            let auth = match (schemes.contains("api_key"), schemes.contains("console")) {
                (true, true) => Auth::Either,
                (true, false) => Auth::Key,
                (false, true) => Auth::Console,
                _ => Auth::None,
            };
            if spec(&method, path, &a).is_none() {
                missing.insert(format!("{method} {path}"));
            }
            ops.push((method, path.clone(), auth));
        }
    }
    assert!(
        missing.is_empty(),
        "operations without an entry in the isolation matrix (add them to `spec`): {missing:?}"
    );
    assert!(
        ops.len() > 60,
        "the document lists {} operations",
        ops.len()
    );
    // Reads first, then writes, deletes last (so an owner's own delete does
    // not hide the resource from the owner's later calls).
    let rank = |m: &str| match m {
        "GET" => 0,
        "POST" => 1,
        _ => 2,
    };
    ops.sort_by_key(|(m, p, _)| (rank(m), p.contains("withdraw"), p.clone()));

    let before = demo.get(&format!("/v1/cases/{case}/timeline")).await.1;
    let mut failures: Vec<String> = vec![];
    let mut checked = 0usize;
    // Everyone but A's key and A's agents first: nothing they do may touch
    // or show A's data.
    for c in callers.iter().filter(|c| c.platform != Some("demo")) {
        for (method, path, auth) in &ops {
            let sp = spec(method, path, &a).unwrap();
            let url = concrete(path, &a);
            let (status, body) = call(
                &demo,
                method,
                &url,
                &sp.query,
                c.token.as_deref(),
                sp.body.as_ref(),
            )
            .await;
            checked += 1;
            let what = format!("{} -> {method} {path}: {status} {body:.300}", c.name);
            if c.platform.is_none() && c.auth == Auth::Console {
                // Installation staff: only the role matrix limits them.
                if auth.takes(Auth::Console)
                    && let Some(route) = sp.route
                {
                    let may = allowed(route).contains(&c.role.unwrap());
                    if !may && status != 403 {
                        failures.push(format!("role not allowed, yet not 403: {what}"));
                    }
                    if may && (status == 401 || status == 403) {
                        failures.push(format!("role allowed, yet refused: {what}"));
                    }
                }
                continue;
            }
            for l in &leaks {
                if body.contains(l.as_str()) {
                    failures.push(format!("platform A's data leaked: {what}"));
                }
            }
            match (sp.target, auth, c.auth) {
                (Target::Public, _, _) | (_, Auth::None, _) => {
                    if (200..300).contains(&status) && sp.target == Target::Owned {
                        failures.push(format!("public route acted on A's resource: {what}"));
                    }
                }
                (_, op_auth, caller) if op_auth.takes(caller) => {
                    if sp.target == Target::Owned && !matches!(status, 403 | 404) {
                        failures.push(format!("another platform's resource reached: {what}"));
                    }
                    if caller == Auth::Console
                        && let Some(route) = sp.route
                        && !allowed(route).contains(&c.role.unwrap())
                        && status != 403
                    {
                        failures.push(format!("role not allowed, yet not 403: {what}"));
                    }
                }
                _ => {
                    if status != 401 {
                        failures.push(format!("wrong kind of credential, yet not 401: {what}"));
                    }
                }
            }
        }
    }
    let after = demo.get(&format!("/v1/cases/{case}/timeline")).await.1;
    assert_eq!(
        before, after,
        "platform B's calls changed platform A's case"
    );
    let (_, dec) = demo
        .post(
            "/v1/vault/decrypt",
            json!({"items": [{"subject_id": "1", "field": "note", "ciphertext": a.ciphertext}]}),
        )
        .await;
    assert!(
        dec["items"][0]["plaintext"]
            .as_str()
            .is_some_and(|p| p.starts_with("matrix-secret-")),
        "A still reads its own ciphertext: {dec}"
    );

    // A's own key and agents reach A's resources as the role matrix says.
    for c in callers.iter().filter(|c| c.platform == Some("demo")) {
        for (method, path, auth) in &ops {
            let sp = spec(method, path, &a).unwrap();
            if sp.target != Target::Owned || !auth.takes(c.auth) {
                continue;
            }
            let url = concrete(path, &a);
            let (status, body) = call(
                &demo,
                method,
                &url,
                &sp.query,
                c.token.as_deref(),
                sp.body.as_ref(),
            )
            .await;
            checked += 1;
            let what = format!("{} -> {method} {path}: {status} {body:.300}", c.name);
            let may = match (c.auth, sp.route) {
                (Auth::Console, Some(route)) => allowed(route).contains(&c.role.unwrap()),
                (Auth::Console, None) => false,
                _ => !sp.never_a_key,
            };
            if may && (status == 401 || status == 403 || not_owned(status, &body)) {
                if path.contains("manual-tasks") && not_owned(status, &body) {
                    continue; // the demo opens no manual task here
                }
                failures.push(format!("the owner was refused: {what}"));
            }
            if !may && status != 403 {
                failures.push(format!("not allowed, yet not 403: {what}"));
            }
        }
    }
    // A case and an export an agent of A opened belong to A: B's key does
    // not reach them, A's key does.
    let a_agent = &callers
        .iter()
        .find(|c| c.name == "agent of demo")
        .unwrap()
        .token;
    let (s, opened) = call(
        &demo,
        "POST",
        "/v1/console/cases",
        "",
        a_agent.as_deref(),
        Some(&json!({"subject_id": "4", "channel": "hotline"})),
    )
    .await;
    assert_eq!(s, 201, "{opened}");
    let opened: Value = serde_json::from_str(&opened).unwrap();
    let hotline_case = opened["id"].as_str().unwrap();
    let path = format!("/v1/cases/{hotline_case}");
    assert_eq!(
        call(&demo, "GET", &path, "", Some(&key_b), None).await.0,
        404
    );
    assert_eq!(demo.get(&path).await.0, 200);
    let (s, cex) = call(
        &demo,
        "POST",
        "/v1/console/exports",
        "",
        a_agent.as_deref(),
        Some(&json!({"subject_id": "4", "case_id": hotline_case})),
    )
    .await;
    assert_eq!(s, 202, "{cex}");
    let cex: Value = serde_json::from_str(&cex).unwrap();
    let path = format!("/v1/exports/{}", cex["id"].as_str().unwrap());
    assert_eq!(
        call(&demo, "GET", &path, "", Some(&key_b), None).await.0,
        404
    );
    assert_eq!(demo.get(&path).await.0, 200);

    // B's copy of the audit log still verifies: A's events are there as
    // leaf hashes only.
    let (s, log) = call(&demo, "GET", "/v1/audit/export", "", Some(&key_b), None).await;
    assert_eq!(s, 200);
    let log: lethe_ledger::LogExport = serde_json::from_str(&log).unwrap();
    assert!(log.events.iter().any(|e| e.redacted));
    assert!(
        log.events
            .iter()
            .all(|e| e.redacted || e.event.case_id.is_empty() || !leaks.contains(&e.event.case_id))
    );
    let (_, pk) = demo.get("/v1/audit/public-key").await;
    if !log.tree_heads.is_empty() {
        lethe_ledger::verify_log(&log, pk["public_key"].as_str().unwrap())
            .expect("a redacted log export verifies");
    }

    assert!(
        failures.is_empty(),
        "{} of {checked} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
