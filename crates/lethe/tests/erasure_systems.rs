//! Erasure across every kind of system, against the real binary: Demo Mart's
//! SQLite database, Redis (the machine's server), an HTTP service that
//! accepts and calls back later (signed), and a manual task an operator
//! completes with a note. A service that is down leaves the case in
//! erasing with the failing system and its error visible.

mod common;

use axum::routing::post;
use common::*;
use lethe_connect::http::sign;
use redis::AsyncCommands;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

const SECRET: &str = "whsec_c2VydmljZS1zZWNyZXQtZm9yLXRlc3Rz";

/// A platform service: verifies Lethe's signature, remembers the request,
/// answers `accepted`, signed.
async fn service() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(vec![]));
    let s2 = seen.clone();
    let app = axum::Router::new().route(
        "/erase",
        post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let seen = s2.clone();
                async move {
                    let h = |n: &str| headers.get(n).unwrap().to_str().unwrap().to_owned();
                    let key = lethe_connect::http::secret_bytes(SECRET);
                    let ts: i64 = h("webhook-timestamp").parse().unwrap();
                    assert_eq!(
                        h("webhook-signature"),
                        sign(&key, &h("webhook-id"), ts, &body)
                    );
                    seen.lock()
                        .unwrap()
                        .push(serde_json::from_slice::<Value>(&body).unwrap());
                    let answer = json!({"status": "accepted"}).to_string();
                    let now = jiff::Timestamp::now().as_second();
                    axum::response::Response::builder()
                        .status(202)
                        .header("content-type", "application/json")
                        .header("webhook-id", "msg_answer")
                        .header("webhook-timestamp", now.to_string())
                        .header(
                            "webhook-signature",
                            sign(&key, "msg_answer", now, answer.as_bytes()),
                        )
                        .body(axum::body::Body::from(answer))
                        .unwrap()
                }
            },
        ),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/erase", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, seen)
}

fn datamap(prefix: &str) -> String {
    format!(
        r#"{}

[[systems]]
name = "cache"
kind = "redis"
url_env = "E2E_REDIS_URL"
keys = [{{ type = "key", pattern = "{prefix}:sess:{{subject}}:*" }}, {{ type = "set_member", key = "{prefix}:online", member = "{{subject}}" }}]

[[systems]]
name = "crm"
kind = "http"
url_env = "E2E_CRM_URL"
secret_env = "E2E_CRM_SECRET"
mode = "callback"

[[systems]]
name = "paper_archive"
kind = "manual"
instructions = "Shred the customer's paper contract in the archive and note the box number."
due_days = 3
"#,
        include_str!("../../../examples/demo-mart/datamap.toml")
    )
}

#[tokio::test]
async fn every_kind_of_system_completes_the_case() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("e2e{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    std::fs::write(dir.path().join("datamap.toml"), datamap(&prefix)).unwrap();
    let (crm_url, seen) = service().await;
    let demo = Demo::start_env(
        dir.path(),
        50,
        &[],
        &[
            ("E2E_REDIS_URL", "redis://127.0.0.1:6379/"),
            ("E2E_CRM_URL", &crm_url),
            ("E2E_CRM_SECRET", SECRET),
        ],
    )
    .await;
    let user = 5i64;
    let redis = redis::Client::open("redis://127.0.0.1:6379/").unwrap();
    let mut r = redis.get_multiplexed_async_connection().await.unwrap();
    for s in 0..4 {
        let _: () = r
            .set(format!("{prefix}:sess:{user}:{s}"), "t")
            .await
            .unwrap();
    }
    let _: () = r.set(format!("{prefix}:sess:6:0"), "t").await.unwrap();
    let _: () = r
        .sadd(format!("{prefix}:online"), &[user.to_string(), "6".into()])
        .await
        .unwrap();

    let id = demo.create(user).await;
    demo.to_cooling_off(&id).await;
    demo.advance(7 * 86_400 + 60).await;
    demo.wait_state(&id, "erasing", 30).await;

    // The HTTP service was asked (signed) and accepted; the manual task is
    // in the operator queue; the case waits for both.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let task = loop {
        let (s, v) = demo.get("/v1/console/manual-tasks").await;
        assert_eq!(s, 200, "{v}");
        if let Some(t) = v
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["case_id"] == json!(id))
        {
            break t.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no manual task: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(task["system"], "paper_archive");
    assert!(
        task["instructions"]
            .as_str()
            .unwrap()
            .contains("paper contract")
    );
    let req = loop {
        if let Some(v) = seen.lock().unwrap().first().cloned() {
            break v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(req["case_id"], json!(id));
    assert_eq!(req["subject_id"], json!(user.to_string()));
    assert!(
        req["callback_url"]
            .as_str()
            .unwrap()
            .ends_with("/v1/erasure-callbacks/crm")
    );
    let job_in = |tl: &Value, sys: &str| {
        tl["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["system"] == sys)
            .unwrap()
            .clone()
    };
    // The CRM job has made its call and waits for the callback.
    let crm_waiting = |tl: &Value| {
        job_in(tl, "crm")["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("waiting for its signed callback"))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let tl = loop {
        let (_, tl) = demo.get(&format!("/v1/cases/{id}/timeline")).await;
        // Both settled: on a loaded machine the CRM call can come a moment
        // after the cache job is done.
        if (job_in(&tl, "cache")["state"] == "done" && crm_waiting(&tl))
            || std::time::Instant::now() > deadline
        {
            break tl;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let job = |sys: &str| job_in(&tl, sys);
    assert_eq!(job("cache")["state"], "done", "{tl}");
    // Redis was erased, and only this subject: the keys go before the job
    // is recorded done.
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:sess:*"))
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(left, vec![format!("{prefix}:sess:6:0")]);
    assert!(
        !r.sismember::<_, _, bool>(format!("{prefix}:online"), user.to_string())
            .await
            .unwrap()
    );
    assert_eq!(job("paper_archive")["state"], "waiting", "{tl}");
    assert!(crm_waiting(&tl), "{tl}");
    assert_eq!(demo.state(&id).await, "erasing");

    // The service calls back, signed; a forged callback is refused.
    let body = json!({"case_id": id, "status": "erased", "items": [
        {"name": "contacts", "action": "delete", "count": 3, "remaining": 0},
        {"name": "invoices", "action": "keep", "count": 1, "legal_basis": "tax law", "retain_until": "2031-01-01T00:00:00Z"}
    ]})
    .to_string();
    let key = lethe_connect::http::secret_bytes(SECRET);
    let now = jiff::Timestamp::now().as_second();
    let forged = sign(b"wrong", "msg_cb1", now, body.as_bytes());
    let (s, v, _) = demo
        .raw_post(
            "/v1/erasure-callbacks/crm",
            &body,
            &[
                ("content-type", "application/json"),
                ("webhook-id", "msg_cb1"),
                ("webhook-timestamp", &now.to_string()),
                ("webhook-signature", &forged),
            ],
        )
        .await;
    assert_eq!(s, 401, "{v}");
    let good = sign(&key, "msg_cb2", now, body.as_bytes());
    let (s, v, _) = demo
        .raw_post(
            "/v1/erasure-callbacks/crm",
            &body,
            &[
                ("content-type", "application/json"),
                ("webhook-id", "msg_cb2"),
                ("webhook-timestamp", &now.to_string()),
                ("webhook-signature", &good),
            ],
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["recorded"], true);
    // A replay is refused.
    let (s, _, _) = demo
        .raw_post(
            "/v1/erasure-callbacks/crm",
            &body,
            &[
                ("content-type", "application/json"),
                ("webhook-id", "msg_cb2"),
                ("webhook-timestamp", &now.to_string()),
                ("webhook-signature", &good),
            ],
        )
        .await;
    assert_eq!(s, 409);
    assert_eq!(
        demo.state(&id).await,
        "erasing",
        "the manual task is still open"
    );

    // Another platform on the installation neither sees nor completes it.
    let other = other_platform_key(&demo.dir, "other_platform");
    let listed: Value = demo
        .http
        .get(format!("{}/v1/console/manual-tasks", demo.url))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed, json!([]), "another platform's tasks are not listed");
    let resp = demo
        .http
        .post(format!(
            "{}/v1/console/manual-tasks/{}/complete",
            demo.url, task["id"]
        ))
        .bearer_auth(&other)
        .header("idempotency-key", uuid::Uuid::new_v4().to_string())
        .json(&json!({"note": "done", "records": 0, "why_none": "nothing was there at all"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "{}", resp.text().await.unwrap());
    // Zero records needs a reason.
    let (s, v) = demo
        .post(
            &format!("/v1/console/manual-tasks/{}/complete", task["id"]),
            json!({"note": "looked", "records": 0}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["field"], "why_none", "{v}");

    // The operator completes the manual task with a note: the case closes.
    let (s, v) = demo
        .post(
            &format!("/v1/console/manual-tasks/{}/complete", task["id"]),
            json!({"note": "contract shredded, box 12", "records": 1}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, tl) = demo.get(&format!("/v1/cases/{id}/timeline")).await;
    assert!(
        tl["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "case.manual_task_completed" && e["actor"] == "platform:demo"),
        "who completed the task is audited: {tl}"
    );
    demo.wait_state(&id, "erased", 30).await;
    let (s, v) = demo
        .post(
            &format!("/v1/console/manual-tasks/{}/complete", task["id"]),
            json!({"note": "again", "records": 1}),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    let (_, receipt) = demo.get(&format!("/v1/cases/{id}/receipt")).await;
    let systems = receipt["systems"].as_array().unwrap();
    let sys = |n: &str| {
        systems
            .iter()
            .find(|s| s["system"] == n)
            .unwrap_or_else(|| panic!("{n} in {receipt}"))
            .clone()
    };
    assert_eq!(sys("cache")["tables"][0]["rows"], 4);
    assert_eq!(sys("crm")["tables"][0]["rows"], 3);
    assert_eq!(
        sys("crm")["tables"][1]["retain_until"],
        "2031-01-01T00:00:00Z"
    );
    assert_eq!(sys("paper_archive")["tables"][0]["rows"], 1);
    let _: () = r.del(format!("{prefix}:sess:6:0")).await.unwrap();
    let _: () = r.del(format!("{prefix}:online")).await.unwrap();
}

#[tokio::test]
async fn a_system_that_is_down_leaves_the_case_erasing_with_its_error_visible() {
    let dir = tempfile::tempdir().unwrap();
    let map = format!(
        "{}\n[[systems]]\nname = \"crm\"\nkind = \"http\"\nurl_env = \"E2E_CRM_URL\"\nsecret_env = \"E2E_CRM_SECRET\"\nmode = \"sync\"\ntimeout_ms = 500\n",
        include_str!("../../../examples/demo-mart/datamap.toml")
    );
    std::fs::write(dir.path().join("datamap.toml"), map).unwrap();
    // Nothing listens on this port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/erase");
    let demo = Demo::start_env(
        dir.path(),
        50,
        &[],
        &[("E2E_CRM_URL", &url), ("E2E_CRM_SECRET", SECRET)],
    )
    .await;
    let id = demo.create(5).await;
    demo.to_cooling_off(&id).await;
    demo.advance(7 * 86_400 + 60).await;
    demo.wait_state(&id, "erasing", 30).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, tl) = demo.get(&format!("/v1/cases/{id}/timeline")).await;
        let crm = tl["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["system"] == "crm")
            .cloned()
            .unwrap();
        if crm["attempts"].as_u64().unwrap_or(0) >= 2 {
            assert_eq!(crm["state"], "ready", "retried with backoff: {crm}");
            assert!(
                crm["last_error"]
                    .as_str()
                    .unwrap()
                    .contains("crm could not be reached"),
                "{crm}"
            );
            let mart = tl["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|j| j["system"] == "demo_mart")
                .cloned()
                .unwrap();
            assert_eq!(mart["state"], "done");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no retry: {tl}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(demo.state(&id).await, "erasing");
}

/// Rows kept for a legal reason stay after the erasure, are listed on the
/// receipt with their expiry, and are purged by the running server once it
/// passes (the demo clock is moved past it).
#[tokio::test]
async fn kept_rows_are_purged_when_their_retention_ends() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), 50).await;
    let user = 5i64;
    let mart = demo.mart().await;
    sqlx::query("INSERT INTO refunds (user_id, instruction_id, amount_fen, reason, created_at) VALUES ($1, 'purge-test', 100, 'test refund', '2026-01-01T00:00:00Z')")
        .bind(user)
        .execute(&mart)
        .await
        .unwrap();
    let kept = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM refunds WHERE user_id = $1")
            .bind(user)
            .fetch_one(&mart)
            .await
            .unwrap()
    };
    let id = demo.create(user).await;
    demo.to_cooling_off(&id).await;
    demo.advance(7 * 86_400 + 60).await;
    demo.wait_state(&id, "erased", 60).await;
    let (_, receipt) = demo.get(&format!("/v1/cases/{id}/receipt")).await;
    let refunds = receipt["systems"][0]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "refunds")
        .unwrap()
        .clone();
    assert_eq!(refunds["action"], "keep");
    assert!(refunds["rows"].as_u64().unwrap() >= 1, "{refunds}");
    assert!(
        refunds["legal_basis"]
            .as_str()
            .unwrap()
            .contains("会计档案管理办法")
    );
    let until: jiff::Timestamp = refunds["retain_until"].as_str().unwrap().parse().unwrap();
    let n = kept().await;
    assert!(n >= 1);
    // About a day before the expiry: still there.
    // The dev clock moves at most 400 days per call.
    for _ in 0..3 {
        demo.advance(364 * 86_400 + 86_400 / 3).await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(kept().await, n);
    // Past it: purged by the server's scheduled job.
    demo.advance(2 * 86_400).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while kept().await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "kept rows not purged after {until}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let purged: (i64, Option<String>) = sqlx::query_as("SELECT purged_rows, subject FROM lethe_retention WHERE case_id = $1 AND table_name = 'refunds'")
        .bind(&id)
        .fetch_one(&mart)
        .await
        .unwrap();
    assert_eq!(
        purged,
        (n, None),
        "the purge is recorded and the subject id dropped"
    );
}
