//! Identity channels: the app's session token, the face provider's signed
//! callback, SMS throttles, proportionality, and identity claims end to end.

mod common;

use common::*;
use serde_json::{Value, json};
use std::process::{Command, Stdio};

const SESSION: &str = "app-session-secret-for-tests";
const FACE: &str = "whsec_ZmFjZS1wcm92aWRlci1zZWNyZXQ=";

async fn demo(dir: &std::path::Path) -> Demo {
    Demo::start_env(
        dir,
        300,
        &[
            "--session-secret-env",
            "T_SESSION",
            "--face-secret-env",
            "T_FACE",
        ],
        &[("T_SESSION", SESSION), ("T_FACE", FACE)],
    )
    .await
}

fn token(sub: &str, now: i64, f: impl FnOnce(&mut Value)) -> String {
    let mut c = json!({"sub": sub, "aud": "lethe", "iat": now - 5, "exp": now + 120, "auth_time": now - 20, "jti": uuid::Uuid::new_v4().to_string()});
    f(&mut c);
    lethe_server::jwt::sign_hs256(SESSION.as_bytes(), &c)
}

async fn now(demo: &Demo) -> i64 {
    let v = demo
        .ok("/v1/dev/clock/advance", json!({"seconds": 0}))
        .await;
    v["now"]
        .as_str()
        .unwrap()
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_second()
}

#[tokio::test]
async fn the_app_session_needs_a_fresh_signed_single_use_token() {
    let dir = tempfile::tempdir().unwrap();
    let demo = demo(dir.path()).await;
    let user = clear_users(&demo.mart().await, 1).await[0].to_string();
    let id = demo.create(user.parse().unwrap()).await;
    let t = now(&demo).await;
    let path = format!("/v1/cases/{id}/verification/session");
    for (label, tok, want) in [
        ("expired", token(&user, t - 1000, |_| {}), "expired"),
        (
            "forged",
            lethe_server::jwt::sign_hs256(
                b"not the secret",
                &json!({"sub": user, "aud": "lethe", "iat": t, "exp": t + 60, "auth_time": t, "jti": "x"}),
            ),
            "signature is invalid",
        ),
        (
            "stale re-authentication",
            token(&user, t, |c| c["auth_time"] = json!(t - 3600)),
            "not fresh",
        ),
        (
            "another account",
            token("999999", t, |_| {}),
            "another account",
        ),
        (
            "long-lived",
            token(&user, t, |c| c["exp"] = json!(t + 86_400)),
            "short-lived",
        ),
    ] {
        let (s, p) = demo.post(&path, json!({"token": tok})).await;
        assert_eq!(s, 401, "{label}: {p}");
        assert!(p["detail"].as_str().unwrap().contains(want), "{label}: {p}");
        assert_eq!(p["field"], "token");
    }
    let good = token(&user, t, |_| {});
    let v = demo.ok(&path, json!({"token": good})).await;
    assert_eq!(
        (
            v["state"].as_str(),
            v["verified_by"].as_str(),
            v["assurance_level"].as_u64()
        ),
        (Some("identity_verified"), Some("app_session"), Some(1))
    );
    // The same token again (another case) is refused: single use.
    let id2 = demo
        .create(clear_users(&demo.mart().await, 2).await[1])
        .await;
    let (s, p) = demo
        .post(
            &format!("/v1/cases/{id2}/verification/session"),
            json!({"token": good}),
        )
        .await;
    assert_eq!(s, 401, "{p}");
}

#[tokio::test]
async fn face_results_arrive_signed_and_only_once() {
    let dir = tempfile::tempdir().unwrap();
    let demo = demo(dir.path()).await;
    let id = demo
        .create(clear_users(&demo.mart().await, 1).await[0])
        .await;
    let t = jiff::Timestamp::now().as_second();
    let body = json!({"case_id": id, "result": "pass", "provider_ref": "fv-1"});
    // Forged, unsigned and stale callbacks are refused.
    let (s, p) = demo
        .face_callback(&body, "evt-1", t, "whsec_b3RoZXI=")
        .await;
    assert_eq!(s, 401, "{p}");
    let (s, _, _) = demo
        .raw_post(
            "/v1/callbacks/face",
            &body.to_string(),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(s, 401);
    let (s, p) = demo.face_callback(&body, "evt-2", t - 3600, FACE).await;
    assert_eq!(s, 401, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("window"));
    assert_eq!(demo.state(&id).await, "submitted");
    // A genuine pass verifies at level 2; the same callback again is a replay.
    let (s, v) = demo.face_callback(&body, "evt-3", t, FACE).await;
    assert_eq!(s, 200, "{v}");
    let (_, case) = demo.get(&format!("/v1/cases/{id}")).await;
    assert_eq!(
        (
            case["verified_by"].as_str(),
            case["assurance_level"].as_u64()
        ),
        (Some("face"), Some(2))
    );
    let (s, p) = demo.face_callback(&body, "evt-3", t, FACE).await;
    assert_eq!(s, 409, "{p}");
}

#[tokio::test]
async fn a_face_method_without_faces_on_file_is_refused_by_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("lethe.toml");
    std::fs::write(&cfg, "data_dir = \"x\"\ndatamap = \"y\"\n[identity]\nmethods = [\"sms\", \"face\"]\nface_secret_env = \"F\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["config", "check", "--config", cfg.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no new face scan where none was collected"),
        "{err}"
    );
}

#[tokio::test]
async fn codes_are_throttled_per_phone_and_per_client_address() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start_with(dir.path(), 300, &["--sms-per-client", "20"]).await;
    let users = clear_users(&demo.mart().await, 6).await;
    let mut sent = 0;
    let mut first_429 = None;
    'outer: for u in &users {
        let id = demo.create(*u).await;
        for _ in 0..5 {
            let (s, p) = demo
                .post(&format!("/v1/cases/{id}/verification/sms/send"), json!({}))
                .await;
            if s == 429 {
                first_429 = Some((sent, p));
                break 'outer;
            }
            assert_eq!(s, 200, "{p}");
            sent += 1;
            demo.advance(61).await;
        }
        // A sixth code for the same phone within the hour is refused.
        let (s, p) = demo
            .post(&format!("/v1/cases/{id}/verification/sms/send"), json!({}))
            .await;
        assert_eq!(s, 429, "{p}");
        assert!(
            p["detail"].as_str().unwrap().contains("this phone number"),
            "{p}"
        );
        demo.advance(61).await;
    }
    let (n, p) = first_429.expect("the client address limit was never reached");
    assert_eq!(n, 20, "20 codes per client address per hour");
    assert!(
        p["detail"].as_str().unwrap().contains("from this address"),
        "{p}"
    );
}

#[tokio::test]
async fn an_identity_claim_end_to_end_with_document_destruction() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), 300).await;
    let mart = demo.mart().await;
    let (victim_account, idn): (i64, String) = sqlx::query_as(
        "SELECT user_id, id_number FROM real_names ORDER BY user_id LIMIT 1 OFFSET 7",
    )
    .fetch_one(&mart)
    .await
    .unwrap();
    let selfie = b"\x89PNG fake selfie bytes".to_vec();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let docs = json!([{"kind": "id_front", "content_base64": b64(b"front")}, {"kind": "id_back", "content_base64": b64(b"back")}, {"kind": "selfie", "content_base64": b64(&selfie)}]);
    let (s, claim, _) = demo
        .raw_post(
            "/v1/claims",
            &json!({"id_number": idn, "documents": docs}).to_string(),
            &[
                ("authorization", &format!("Bearer {}", demo.key)),
                ("content-type", "application/json"),
            ],
        )
        .await;
    assert_eq!(s, 201, "{claim}");
    let cid = claim["id"].as_str().unwrap().to_owned();
    // The claimant's view carries no account data.
    let keys: Vec<&String> = claim.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        vec![
            "closed_at",
            "created_at",
            "decision_reason",
            "documents_destroyed_at",
            "id",
            "state"
        ]
    );
    assert!(!claim.to_string().contains(&idn));

    // A reviewer signs in, sees the claim and one document (audited).
    let tok = agent_session(&demo, "rev1", "reviewer").await;
    let get = |p: String| {
        demo.http
            .get(format!("{}{p}", demo.url))
            .bearer_auth(tok.clone())
            .send()
    };
    let list: Value = get("/v1/console/claims".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == json!(cid))
    );
    let doc = get(format!("/v1/console/claims/{cid}/documents/2"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(doc.to_vec(), selfie);
    // The platform API cannot read documents.
    let (s, _) = demo
        .get(&format!("/v1/console/claims/{cid}/documents/2"))
        .await;
    assert_eq!(s, 401);

    // Approval: the platform is told to unbind and freeze; documents destroyed.
    let r = demo
        .http
        .post(format!("{}/v1/console/claims/{cid}/decision", demo.url))
        .bearer_auth(&tok)
        .header("content-type", "application/json")
        .body(json!({"decision": "approve"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["state"], "approved");
    assert!(v["documents_destroyed_at"].as_str().is_some());
    let (_, n) = demo.get("/v1/notifications").await;
    for kind in ["realname.unbind", "account.freeze"] {
        assert!(
            n.as_array().unwrap().iter().any(|x| x["kind"] == kind
                && x["payload"]["subject_id"] == json!(victim_account.to_string())
                && x["payload"]["claim_id"] == json!(cid)),
            "{kind}: {n}"
        );
    }
    // Another platform on the installation does not see them.
    let other = other_platform_key(&demo.dir, "other_platform");
    let (_, theirs) = demo
        .call_as(&other, reqwest::Method::GET, "/v1/notifications", json!({}))
        .await;
    assert!(!theirs.to_string().contains(&cid), "{theirs}");
    let r = get(format!("/v1/console/claims/{cid}/documents/2"))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("destroyed"));
    // The claim's receipt records the destruction, signed.
    let (s, rc) = demo.get(&format!("/v1/claims/{cid}/receipt")).await;
    assert_eq!(s, 200, "{rc}");
    assert_eq!(rc["decision"], "approved");
    let mut body = rc.clone();
    body["signature"] = json!("");
    let receipt: lethe_server::api::claims::ClaimReceipt = serde_json::from_value(body).unwrap();
    assert!(lethe_ledger::verify_signature(
        rc["public_key"].as_str().unwrap(),
        &serde_json::to_vec(&receipt).unwrap(),
        rc["signature"].as_str().unwrap()
    ));
    // The look at the document is in the audit log with the reviewer's id.
    let (_, export) = demo.get("/v1/audit/export").await;
    assert!(
        export["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "claim.document_viewed"
                && e["actor"].as_str().unwrap().starts_with("agent:ag_"))
    );
    assert!(
        export["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "claim.documents_destroyed")
    );
}

#[tokio::test]
async fn codes_go_to_the_sms_gateway_signed_and_are_not_stored() {
    use axum::body::Bytes;
    use axum::http::HeaderMap;
    use axum::response::IntoResponse;
    const SMS: &str = "whsec_c21zLWdhdGV3YXktc2VjcmV0";
    let got: std::sync::Arc<std::sync::Mutex<Vec<Value>>> = Default::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/sms",
        axum::routing::post(move |h: HeaderMap, b: Bytes| {
            let sink = sink.clone();
            async move {
                let key = lethe_server::outbound::webhook::secret_bytes(SMS);
                let g = |n: &str| h[n].to_str().unwrap().to_owned();
                assert_eq!(
                    lethe_server::outbound::webhook::sign(
                        &key,
                        &g("webhook-id"),
                        g("webhook-timestamp").parse().unwrap(),
                        &b
                    ),
                    g("webhook-signature")
                );
                sink.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&b).unwrap());
                let body = "{\"accepted\":true}";
                let ts = jiff::Timestamp::now().as_second();
                (
                    [
                        ("webhook-id", "ok".to_owned()),
                        ("webhook-timestamp", ts.to_string()),
                        (
                            "webhook-signature",
                            lethe_server::outbound::webhook::sign(&key, "ok", ts, body.as_bytes()),
                        ),
                    ],
                    body,
                )
                    .into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sms", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start_env(
        dir.path(),
        100,
        &["--sms-url", &url],
        &[("LETHE_SMS_SECRET", SMS)],
    )
    .await;
    let user = clear_users(&demo.mart().await, 1).await[0];
    let id = demo.create(user).await;
    demo.ok(&format!("/v1/cases/{id}/verification/sms/send"), json!({}))
        .await;
    let msg = got.lock().unwrap()[0].clone();
    let text = msg["text"].as_str().unwrap().to_owned();
    let code: String = text
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap()
        .to_owned();
    let (_, outbox) = demo.get(&format!("/v1/dev/outbox/{id}")).await;
    assert!(
        !outbox.to_string().contains(&code),
        "the code is not stored: {outbox}"
    );
    let v = demo
        .ok(
            &format!("/v1/cases/{id}/verification/sms/verify"),
            json!({"code": code}),
        )
        .await;
    assert_eq!(v["state"], "identity_verified");
}

/// Wrong codes count per case across resends (4 wrong, a new code, 1 wrong
/// locks), and a send refused (too soon, or locked) does not use up the
/// hourly quota: only codes actually sent count.
#[tokio::test]
async fn wrong_codes_count_across_resends_and_refused_sends_cost_no_quota() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), 300).await;
    let users = clear_users(&demo.mart().await, 2).await;
    let id = demo.create(users[0]).await;
    let send = |id: String| {
        let demo = &demo;
        async move {
            demo.post(&format!("/v1/cases/{id}/verification/sms/send"), json!({}))
                .await
        }
    };
    let wrong = |id: String| {
        let demo = &demo;
        async move {
            let code = demo.code(&id).await;
            let bad = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
            demo.post(
                &format!("/v1/cases/{id}/verification/sms/verify"),
                json!({ "code": bad }),
            )
            .await
        }
    };
    assert_eq!(send(id.clone()).await.0, 200);
    for _ in 0..4 {
        let (s, v) = wrong(id.clone()).await;
        assert_eq!(s, 422, "{v}");
    }
    demo.advance(61).await;
    assert_eq!(send(id.clone()).await.0, 200);
    // The fifth wrong code in all locks, although it is the first for this
    // code.
    let (s, v) = wrong(id.clone()).await;
    assert_ne!(s, 422, "a resend gave new attempts: {v}");
    assert!(v.to_string().contains("lock"), "{v}");

    // Refused sends (too soon) do not count: a second case on another
    // phone still gets its five codes within the hour.
    let id2 = demo.create(users[1]).await;
    for round in 0..5 {
        let (s, v) = send(id2.clone()).await;
        assert_eq!(s, 200, "code {round}: {v}");
        if round < 4 {
            // Again at once: refused (too soon), and not counted.
            let (s, v) = send(id2.clone()).await;
            assert_ne!(s, 200, "{v}");
            assert!(
                !v["detail"].as_str().unwrap_or("").contains("phone number"),
                "{v}"
            );
        }
        demo.advance(61).await;
    }
    let (s, v) = send(id2.clone()).await;
    assert_eq!(s, 429, "five codes sent per phone per hour: {v}");
    assert!(
        v["detail"].as_str().unwrap().contains("phone number"),
        "{v}"
    );
}
