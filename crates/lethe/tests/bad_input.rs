//! Bad input gets a clear problem+json error and changes nothing.

mod common;

use common::*;
use serde_json::{Value, json};

async fn case_count(demo: &Demo) -> i64 {
    let db = demo.lethe_db().await;
    sqlx::query_scalar("SELECT COUNT(*) FROM cases")
        .fetch_one(&db)
        .await
        .unwrap()
}

fn is_problem(h: &reqwest::header::HeaderMap) -> bool {
    h.get("content-type").and_then(|v| v.to_str().ok()) == Some("application/problem+json")
}

#[tokio::test]
async fn bad_requests_are_refused_clearly_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), 500).await;
    let mart = demo.mart().await;
    let before = others_digest(&mart, &[]).await;
    let auth = format!("Bearer {}", demo.key);
    let hdrs = |k: &'static str| -> Vec<(&'static str, String)> {
        vec![
            ("authorization", auth.clone()),
            ("content-type", "application/json".into()),
            ("idempotency-key", k.into()),
        ]
    };
    let send = |path: &'static str, body: &'static str, h: Vec<(&'static str, String)>| {
        let demo = &demo;
        async move {
            let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
            demo.raw_post(path, body, &h).await
        }
    };

    // Malformed JSON.
    let (s, p, h) = send("/v1/cases", "{\"subject_id\": ", hdrs("k1")).await;
    assert_eq!(s, 400, "{p}");
    assert!(is_problem(&h));
    assert!(
        p["detail"].as_str().unwrap().contains("not valid JSON"),
        "{p}"
    );

    // Unknown field: named, with the fix.
    let (s, p, _) = send(
        "/v1/cases",
        r#"{"subject_id":"1","channel":"app","phone":"13900000001"}"#,
        hdrs("k2"),
    )
    .await;
    assert_eq!(s, 422, "{p}");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("unknown field `phone`"),
        "{p}"
    );
    assert!(
        !p.to_string().contains("13900000001"),
        "the value must not be echoed: {p}"
    );

    // A bad value names its field.
    let (s, p, _) = send(
        "/v1/cases",
        r#"{"subject_id":"1","channel":"fax"}"#,
        hdrs("k3"),
    )
    .await;
    assert_eq!(s, 422, "{p}");
    assert_eq!(p["field"], "channel", "{p}");

    // Wrong API key.
    let (s, p, h) = demo
        .raw_post(
            "/v1/cases",
            r#"{"subject_id":"1","channel":"app"}"#,
            &[
                ("authorization", "Bearer lk_wrong"),
                ("content-type", "application/json"),
                ("idempotency-key", "k4"),
            ],
        )
        .await;
    assert_eq!(s, 401, "{p}");
    assert!(is_problem(&h));
    assert_eq!(p["field"], "Authorization");

    // Missing Idempotency-Key.
    let (s, p, _) = demo
        .raw_post(
            "/v1/cases",
            r#"{"subject_id":"1","channel":"app"}"#,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
        )
        .await;
    assert_eq!(s, 400, "{p}");
    assert_eq!(p["field"], "Idempotency-Key");

    // Oversized body.
    let big = format!(
        r#"{{"subject_id":"1","channel":"app","x":"{}"}}"#,
        "a".repeat(70_000)
    );
    let (s, p, _) = demo
        .raw_post(
            "/v1/cases",
            &big,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
                ("idempotency-key", "k5"),
            ],
        )
        .await;
    assert_eq!(s, 413, "{p}");

    // Unknown subject.
    let (s, p, _) = send(
        "/v1/cases",
        r#"{"subject_id":"99999999","channel":"app"}"#,
        hdrs("k6"),
    )
    .await;
    assert_eq!(s, 422, "{p}");
    assert_eq!(p["field"], "subject_id");

    assert_eq!(
        case_count(&demo).await,
        0,
        "no bad request may create a case"
    );

    // Idempotency: same key and body -> same response; another body -> refused.
    let (s1, c1, _) = send(
        "/v1/cases",
        r#"{"subject_id":"1","channel":"app"}"#,
        hdrs("same"),
    )
    .await;
    assert_eq!(s1, 201, "{c1}");
    let (s2, c2, h2) = send(
        "/v1/cases",
        r#"{"subject_id":"1","channel":"app"}"#,
        hdrs("same"),
    )
    .await;
    assert_eq!((s2, &c2), (201, &c1));
    assert_eq!(h2.get("idempotent-replayed").unwrap(), "true");
    let (s3, p3, _) = send(
        "/v1/cases",
        r#"{"subject_id":"2","channel":"app"}"#,
        hdrs("same"),
    )
    .await;
    assert_eq!(s3, 422, "{p3}");
    assert_eq!(p3["field"], "Idempotency-Key");
    assert_eq!(case_count(&demo).await, 1);

    // Six wrong codes in a row: four "wrong", then locked, and locked again.
    let id = c1["id"].as_str().unwrap().to_owned();
    demo.ok(&format!("/v1/cases/{id}/verification/sms/send"), json!({}))
        .await;
    let right = demo.code(&id).await;
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    let mut statuses = vec![];
    for _ in 0..6 {
        let (s, p) = demo
            .post(
                &format!("/v1/cases/{id}/verification/sms/verify"),
                json!({"code": wrong}),
            )
            .await;
        assert_eq!(p["field"], "code", "{p}");
        statuses.push(s);
    }
    assert_eq!(statuses, vec![422, 422, 422, 422, 429, 429]);
    // The right code is refused during the lockout too.
    let (s, _) = demo
        .post(
            &format!("/v1/cases/{id}/verification/sms/verify"),
            json!({"code": right}),
        )
        .await;
    assert_eq!(s, 429);
    assert_eq!(demo.state(&id).await, "submitted");

    // A code that is not six digits is refused before any check.
    let (s, p) = demo
        .post(
            &format!("/v1/cases/{id}/verification/sms/verify"),
            json!({"code": "12ab"}),
        )
        .await;
    assert_eq!(s, 422);
    assert_eq!(p["field"], "code");

    // A bad case id in the path, and an unknown route.
    let (s, p) = demo.get("/v1/cases/not-a-uuid").await;
    assert_eq!(s, 400, "{p}");
    let (s, _) = demo.get("/v1/nothing").await;
    assert_eq!(s, 404);

    assert_eq!(
        others_digest(&mart, &[]).await,
        before,
        "Demo Mart must be unchanged"
    );
    let _: Value = json!(null);
}

#[tokio::test]
async fn openapi_and_docs_are_served_locally() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), 100).await;
    let (s, doc) = demo.get("/openapi.json").await;
    assert_eq!(s, 200);
    assert!(doc["paths"]["/v1/cases"]["post"].is_object());
    // The document describes what a client can receive and must send:
    // errors as problem+json, query parameters in the query, the
    // Idempotency-Key header on idempotent POSTs, UUID ids.
    let paths = doc["paths"].as_object().unwrap();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            for (status, resp) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    assert!(
                        resp["content"].get("application/json").is_none()
                            && resp["content"]["application/problem+json"].is_object(),
                        "{method} {path} {status} is problem+json"
                    );
                }
            }
            for code in ["400", "401", "413", "422", "429", "503"] {
                assert!(
                    op["responses"][code].is_object(),
                    "{method} {path} documents {code}"
                );
            }
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            for param in &params {
                if param["name"] == "id" {
                    // A manual task is numbered; everything else is a UUID.
                    let want = if path.starts_with("/v1/console/manual-tasks/") {
                        "int64"
                    } else {
                        "uuid"
                    };
                    assert_eq!(param["schema"]["format"], want, "{path}");
                }
            }
            let has_key = params.iter().any(|p| {
                p["name"] == "Idempotency-Key" && p["in"] == "header" && p["required"] == true
            });
            if method == "post" && path.starts_with("/v1/cases") {
                assert!(has_key, "{method} {path} asks for Idempotency-Key");
            }
            if path.starts_with("/v1/vault/encrypt") || path.starts_with("/v1/claims") {
                assert!(
                    !has_key,
                    "{method} {path} does not use the idempotency store"
                );
            }
        }
    }
    let consistency = &doc["paths"]["/v1/audit/proofs/consistency"]["get"]["parameters"];
    assert!(
        consistency
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["in"] == "query"),
        "query parameters are documented in the query: {consistency}"
    );
    // A method a route does not have: 405, before authentication.
    let r = demo
        .http
        .post(format!("{}/v1/alternatives", demo.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    // A missing query parameter: problem+json naming the parameter.
    let r = demo
        .http
        .get(format!("{}/v1/audit/proofs/consistency", demo.url))
        .bearer_auth(&demo.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(is_problem(r.headers()));
    let body: Value = r.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("first"), "{body}");
    let html = demo
        .http
        .get(format!("{}/docs/", demo.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("swagger"), "docs page");
    assert!(!html.contains("cdn") && !html.contains("unpkg"), "no CDN");
}

/// Every answer forbids framing and sniffing: pages, the API documentation
/// (a policy Swagger UI runs under), JSON, the receipt document; a body too
/// large for a callback route is a problem document, not plain text.
#[tokio::test]
async fn every_answer_has_a_policy_and_too_large_is_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), 100).await;
    for path in [
        "/docs/",
        "/openapi.json",
        "/u/",
        "/console/",
        "/healthz",
        "/no-such-route",
    ] {
        let r = demo
            .http
            .get(format!("{}{path}", demo.url))
            .send()
            .await
            .unwrap();
        let h = r.headers();
        let csp = h
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{path} has no Content-Security-Policy"));
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        if path == "/docs/" {
            assert!(
                csp.contains("script-src 'self'") && !csp.contains("unsafe-eval"),
                "{csp}"
            );
        }
    }
    // Over the limit, yet small enough for the socket to take it whole
    // before the server answers.
    let big = "a".repeat(200_000);
    let (s, p, h) = demo
        .raw_post(
            "/v1/callbacks/carrier",
            &big,
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(s, 413, "{p}");
    assert!(is_problem(&h), "{p}");
    assert!(p["fix"].as_str().unwrap().contains("smaller"), "{p}");
}
