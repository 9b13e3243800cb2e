//! Support after the account is gone, end to end over HTTP: a case is
//! erased; its former holder opens a request with the receipt; an agent
//! reads the case's non-personal record, answers, re-sends the refund
//! instruction (the platform settles once), and closes the request, which
//! destroys the contact; Lethe's store then holds neither the contact nor
//! the subject id.

mod common;

use common::*;
use serde_json::{Value, json};
use std::process::Command;

const FACE: &str = "whsec_ZmFjZS1wcm92aWRlci1zZWNyZXQ=";

/// A POST without any credentials.
async fn public_post(demo: &Demo, path: &str, body: &Value) -> (u16, Value) {
    let (s, v, _) = demo
        .raw_post(
            path,
            &body.to_string(),
            &[("content-type", "application/json")],
        )
        .await;
    (s, v)
}

async fn console(
    demo: &Demo,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = demo
        .http
        .request(method, format!("{}{path}", demo.url))
        .bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let s = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn agent_get(demo: &Demo, token: &str, path: &str) -> (u16, Value) {
    console(demo, token, reqwest::Method::GET, path, None).await
}

async fn agent_post(demo: &Demo, token: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    console(demo, token, reqwest::Method::POST, path, body).await
}

/// An agent's action on a support request (answer, resend, close).
async fn on_request(
    demo: &Demo,
    token: &str,
    request: &str,
    action: &str,
    body: Option<Value>,
) -> (u16, Value) {
    agent_post(
        demo,
        token,
        &format!("/v1/console/support/{request}/{action}"),
        body,
    )
    .await
}

/// Lethe's store as text: a `pg_dump`, or a backup of the SQLite file and
/// the live database files themselves.
fn store_text(dir: &std::path::Path) -> Vec<u8> {
    if let Some(url) = store_url(dir) {
        let out = Command::new("pg_dump")
            .args(["--data-only", "--no-owner", &url])
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    } else {
        let backup = dir.join("support-backup");
        lethe_cli(dir, &["backup"], &["--out", backup.to_str().unwrap()]);
        fn walk(d: &std::path::Path, all: &mut Vec<u8>) {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, all);
                } else {
                    all.extend(std::fs::read(&p).unwrap());
                }
            }
        }
        let mut all = vec![];
        walk(&backup, &mut all);
        // Read once: the next search takes a backup of its own.
        std::fs::remove_dir_all(&backup).unwrap();
        // And the live files as they are on disk, free pages and the
        // write-ahead log included (what a copy of the disk would hold).
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("lethe.db") {
                all.extend(std::fs::read(&p).unwrap());
            }
        }
        all
    }
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn a_former_holder_is_answered_and_refunded_once_and_then_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    // Face verification on: moving money needs assurance level 2.
    let demo = Demo::start_env(
        dir.path(),
        3,
        &["--face-secret-env", "T_FACE"],
        &[("T_FACE", FACE)],
    )
    .await;
    // A subject whose id appears nowhere else, with a wallet balance.
    let r = uuid::Uuid::new_v4().as_u128();
    let subject: i64 = 700_000_000_000 + (r % 100_000_000_000) as i64;
    let contact = format!("139{:08}", (r >> 64) % 100_000_000);
    let mart = demo.mart().await;
    sqlx::query("INSERT INTO users (id, phone, email, nickname, status, created_at) VALUES (?, ?, NULL, 'n', 'active', '2020-01-01T00:00:00Z')")
        .bind(subject)
        .bind(format!("1{:010}", (r >> 20) % 10_000_000_000))
        .execute(&mart)
        .await
        .unwrap();
    sqlx::query("INSERT INTO wallets (user_id, balance_fen) VALUES (?, 4321)")
        .bind(subject)
        .execute(&mart)
        .await
        .unwrap();

    // The case: the balance withdrawn (a refund), cooling-off, erasure.
    let id = demo.create(subject).await;
    // The search below finds the subject while the case is open (so its
    // finding nothing at the end means something).
    assert!(
        holds(&store_text(dir.path()), &subject.to_string()),
        "the open case's subject is in the store"
    );
    demo.verify(&id).await;
    let checks = demo.ok(&format!("/v1/cases/{id}/checks"), json!({})).await;
    for c in checks["consequences"].as_array().unwrap() {
        demo.ok(
            &format!("/v1/cases/{id}/acknowledgements"),
            json!({"consequence_id": c["id"], "version": c["version"], "locale": "zh-CN"}),
        )
        .await;
    }
    let mut withdrawn = None;
    for a in checks["assets"].as_array().unwrap() {
        let option = if a["kind"] == "balance" {
            withdrawn = Some(a["id"].as_str().unwrap().to_owned());
            "withdraw"
        } else {
            "forfeit"
        };
        demo.ok(
            &format!("/v1/cases/{id}/settlements"),
            json!({"asset_id": a["id"], "option": option, "locale": "zh-CN"}),
        )
        .await;
    }
    let balance = withdrawn.expect("the wallet is listed");
    demo.wait_state(&id, "consequences_acknowledged", 30).await;
    demo.face_pass(&id, FACE).await;
    demo.ok(&format!("/v1/cases/{id}/confirm"), json!({})).await;
    demo.advance(8 * 86_400).await;
    demo.wait_state(&id, "erased", 60).await;
    let receipt = loop {
        let (s, v) = demo.get(&format!("/v1/cases/{id}/receipt")).await;
        if s == 200 && v["signature"].as_str().is_some_and(|s| !s.is_empty()) {
            break v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    // The signed receipt names where its holder finds support.
    assert_eq!(receipt["support_url"], format!("{}/support", demo.url));
    let (_, case) = demo.get(&format!("/v1/cases/{id}")).await;
    let settlement = &case["assets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == balance.as_str())
        .unwrap()["settlement"];
    assert_eq!(settlement["status"], "done", "{case}");
    let instruction = settlement["instruction_id"].as_str().unwrap().to_owned();
    let settled = |mart: sqlx::SqlitePool, instruction: String| async move {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM settlement_log WHERE instruction_id = ?")
                .bind(instruction)
                .fetch_one(&mart)
                .await
                .unwrap();
        n
    };
    assert_eq!(settled(mart.clone(), instruction.clone()).await, 1);

    // A receipt that does not verify opens nothing; a forged signature
    // neither.
    let mut forged = receipt.clone();
    forged["issued_at"] = json!("2020-01-01T00:00:00Z");
    let ask = |receipt: Value| json!({"receipt": receipt, "topic": "refund_not_received", "message": "退款没有到账 The refund never arrived", "contact": contact});
    let (s, v) = public_post(&demo, "/v1/support/requests", &ask(forged)).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["type"], "urn:lethe:problem:receipt-not-verified", "{v}");
    let (s, v) = public_post(
        &demo,
        "/v1/support/requests",
        &json!({"case_id": id, "signature": "AAAA", "topic": "other", "message": "hi", "contact": contact}),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    // Bad input names the field.
    let (s, v) = public_post(
        &demo,
        "/v1/support/requests",
        &json!({"receipt": receipt, "topic": "refund", "message": "x", "contact": contact}),
    )
    .await;
    assert_eq!((s, v["field"].as_str()), (422, Some("topic")), "{v}");

    // The holder opens a request with the receipt (no account, no key).
    let (s, opened) = public_post(&demo, "/v1/support/requests", &ask(receipt.clone())).await;
    assert_eq!(s, 201, "{opened}");
    let req = opened["id"].as_str().unwrap().to_owned();
    assert_eq!(opened["state"], "open");
    // The answer is due at the end of the third working day (the State
    // Council calendar, the platform's time zone).
    let due: jiff::Timestamp = opened["due_at"].as_str().unwrap().parse().unwrap();
    let now = demo
        .ok("/v1/dev/clock/advance", json!({"seconds": 0}))
        .await["now"]
        .as_str()
        .unwrap()
        .parse::<jiff::Timestamp>()
        .unwrap();
    let (want, _) = lethe_domain::calendar::Calendar::china()
        .unwrap()
        .end_of_nth_working_day_provisional(
            now,
            3,
            &jiff::tz::TimeZone::get("Asia/Shanghai").unwrap(),
        )
        .unwrap();
    assert_eq!(due, want, "due at the end of the third working day");

    // The agent's queue and the case's non-personal record.
    let token = agent_session(&demo, "helper", "agent").await;
    let (s, q) = agent_get(&demo, &token, "/v1/console/support").await;
    assert_eq!(s, 200, "{q}");
    assert!(
        q.as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == req.as_str()),
        "{q}"
    );
    let (s, v) = agent_get(&demo, &token, &format!("/v1/console/support/{req}")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["message"], "退款没有到账 The refund never arrived");
    assert_eq!(v["case"]["state"], "erased");
    assert_eq!(v["case"]["receipt_digest"], receipt["digest"]);
    assert_eq!(
        v["case"]["receipt"]["signature"], receipt["signature"],
        "the agent sees the receipt"
    );
    let s_view = v["case"]["settlements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["instruction_id"] == instruction.as_str())
        .unwrap()
        .clone();
    assert_eq!(s_view["amount_minor"], 4321);
    assert!(
        v["case"]["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "support.opened")
    );
    let text = v.to_string();
    assert!(
        !text.contains(&subject.to_string()),
        "the request never re-links the subject"
    );
    assert!(
        !text.contains(&contact),
        "agents see a hint, not the contact"
    );
    assert!(
        v["request"]["contact_hint"]
            .as_str()
            .unwrap()
            .ends_with(&contact[contact.len() - 2..])
    );

    // The agent answers (to the sealed contact) and re-sends the refund.
    let (s, v) = on_request(
        &demo,
        &token,
        &req,
        "answer",
        Some(json!({"answer": "已重新发起退款 The refund was sent again"})),
    )
    .await;
    assert_eq!(s, 204, "{v}");
    let (s, resent) = on_request(
        &demo,
        &token,
        &req,
        "resend",
        Some(json!({"instruction_id": instruction})),
    )
    .await;
    assert_eq!(s, 200, "{resent}");
    assert_eq!(resent["status"], "done");
    assert_eq!(
        resent["reference"], settlement["reference"],
        "the platform answers its first settlement"
    );
    let (s, _) = on_request(
        &demo,
        &token,
        &req,
        "resend",
        Some(json!({"instruction_id": instruction})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        settled(mart.clone(), instruction.clone()).await,
        1,
        "the platform settled once"
    );
    let refunds: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM refunds WHERE instruction_id = ?")
        .bind(&instruction)
        .fetch_one(&mart)
        .await
        .unwrap();
    assert_eq!(refunds, 1, "one refund, paid once");

    // Closing destroys the contact (its key) and empties the texts.
    let (s, _) = on_request(&demo, &token, &req, "close", None).await;
    assert_eq!(s, 204);
    let (s, v) = agent_get(&demo, &token, &format!("/v1/console/support/{req}")).await;
    assert_eq!(s, 200);
    assert_eq!(v["request"]["state"], "closed");
    assert!(
        v["message"].is_null() && v["answer"].is_null() && v["request"]["contact_hint"].is_null(),
        "{v}"
    );
    let (s, v) = on_request(
        &demo,
        &token,
        &req,
        "answer",
        Some(json!({"answer": "again"})),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    // Every action is in the case's audit trail.
    let (_, tl) = demo.get(&format!("/v1/cases/{id}/timeline")).await;
    let kinds: Vec<&str> = tl["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for k in [
        "support.opened",
        "support.answered",
        "support.settlement_resent",
        "support.closed",
    ] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    let db = demo.lethe_db().await;
    let (sealed, outbox): (Option<String>, i64) = (
        sqlx::query_scalar("SELECT contact_sealed FROM support_requests WHERE id = $1")
            .bind(&req)
            .fetch_one(&db)
            .await
            .unwrap(),
        sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE case_id = $1")
            .bind(&req)
            .fetch_one(&db)
            .await
            .unwrap(),
    );
    assert!(sealed.is_none() && outbox == 0);

    // The request's own vault key was destroyed (so every copy of the
    // sealed contact, a backup's included, is unreadable), as the log says.
    let (_, log) = demo.get("/v1/audit/export").await;
    let closed = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "support.closed" && e["detail"]["request"] == req.as_str())
        .unwrap_or_else(|| panic!("no support.closed event: {log}"));
    assert!(
        closed["detail"]["key_versions_destroyed"].as_u64().unwrap() >= 1,
        "{closed}"
    );
    // A search of Lethe's whole store finds neither.
    let all = store_text(dir.path());
    assert!(all.len() > 1000);
    assert!(!holds(&all, &contact), "the contact is gone from the store");
    assert!(
        !holds(&all, &subject.to_string()),
        "the subject id is gone from the store"
    );
    // Abuse limits: three requests per receipt per day.
    for n in 0..3 {
        let (s, v) = public_post(&demo, "/v1/support/requests", &ask(receipt.clone())).await;
        if n < 2 {
            assert_eq!(s, 201, "{v}");
        } else {
            assert_eq!(s, 429, "{v}");
        }
    }
}

/// What the platform's messaging endpoint received.
type Inbox = std::sync::Arc<std::sync::Mutex<Vec<Value>>>;

const DELIVERY_SECRET: &str = "whsec_c3VwcG9ydC1kZWxpdmVyeS1zZWNyZXQ=";

async fn messaging(
    axum::extract::State(inbox): axum::extract::State<Inbox>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    // As the platform must: the call is signed by Lethe.
    if lethe_server::outbound::webhook::verify_inbound(
        DELIVERY_SECRET,
        &headers,
        &body,
        jiff::Timestamp::now().as_second(),
    )
    .is_err()
    {
        return axum::http::StatusCode::UNAUTHORIZED.into_response();
    }
    inbox
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap());
    // And its answer is signed back.
    let text = json!({"status": "sent"}).to_string();
    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let ts = jiff::Timestamp::now().as_second();
    let sig = lethe_server::outbound::webhook::sign(
        &lethe_server::outbound::webhook::secret_bytes(DELIVERY_SECRET),
        &id,
        ts,
        text.as_bytes(),
    );
    (
        [
            ("content-type", "application/json".to_owned()),
            ("webhook-id", id),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", sig),
        ],
        text,
    )
        .into_response()
}

#[tokio::test]
async fn answers_go_to_the_platforms_messaging_endpoint_signed_and_live_cases_get_support_too() {
    let inbox: Inbox = Default::default();
    let app = axum::Router::new()
        .route("/send", axum::routing::post(messaging))
        .with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/send", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start_env(
        dir.path(),
        3,
        &["--support-delivery-url", &url],
        &[("LETHE_SUPPORT_SECRET", DELIVERY_SECRET)],
    )
    .await;
    // A live case: its holder asks from the centre's case page.
    let id = demo.create(1).await;
    support_from_centre(
        &demo,
        "1",
        "settlement_dispute",
        "积分清算有误",
        "wang.fang@example.com",
    )
    .await;
    // The agent sees it, tied to the live case, and answers.
    let token = agent_session(&demo, "care", "agent").await;
    let (_, q) = agent_get(&demo, &token, "/v1/console/support").await;
    let req = q
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["case_id"] == id.as_str())
        .expect("queued")
        .clone();
    assert_eq!(req["origin"], "live");
    assert_eq!(req["topic"], "settlement_dispute");
    let rid = req["id"].as_str().unwrap();
    let (s, v) = agent_get(&demo, &token, &format!("/v1/console/support/{rid}")).await;
    assert_eq!(
        (s, v["message"].as_str()),
        (200, Some("积分清算有误")),
        "{v}"
    );
    let (s, v) = on_request(
        &demo,
        &token,
        rid,
        "answer",
        Some(json!({"answer": "已核对，积分将补发。"})),
    )
    .await;
    assert_eq!(s, 204, "{v}");
    let got = inbox.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["type"], "support.answer");
    assert_eq!(got[0]["channel"], "email");
    assert_eq!(got[0]["to"], "wang.fang@example.com");
    assert!(got[0]["text"].as_str().unwrap().contains("积分将补发"));
    assert!(
        got[0].get("subject_id").is_none(),
        "the delivery never names the subject"
    );
    // Without the outbox: nothing of the answer is queued in Lethe.
    let db = demo.lethe_db().await;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE case_id = $1")
        .bind(rid)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(n, 0);
    // Reading the holder's message is on the record too.
    let (_, tl) = demo.get(&format!("/v1/cases/{id}/timeline")).await;
    assert!(
        tl["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "support.read"),
        "{tl}"
    );
    // Answered and left open: the worker closes it after 14 days, and the
    // contact goes with it.
    demo.advance(15 * 86_400).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        let (_, v) = agent_get(&demo, &token, &format!("/v1/console/support/{rid}")).await;
        if v["request"]["state"] == "closed" {
            assert_eq!(v["request"]["closed_by"], "worker");
            assert!(v["request"]["contact_hint"].is_null());
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not closed: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    // An agent of another platform does not see it.
    other_platform_key(dir.path(), "other-platform");
    let other = agent_session_for(&demo, "elsewhere", "agent", Some("other-platform")).await;
    let (s, _) = agent_get(&demo, &other, &format!("/v1/console/support/{rid}")).await;
    assert_eq!(s, 404);
    // A reviewer may not answer.
    let reviewer = agent_session(&demo, "rev", "reviewer").await;
    let (s, _) = on_request(
        &demo,
        &reviewer,
        rid,
        "answer",
        Some(json!({"answer": "x"})),
    )
    .await;
    assert_eq!(s, 403);
}

/// The demo's own log, for the lines the worker writes.
fn log_of(demo: &Demo) -> String {
    std::fs::read_to_string(demo.dir.join("lethe.log")).unwrap_or_default()
}

async fn metric(demo: &Demo, name: &str) -> i64 {
    let text = demo
        .http
        .get(format!("{}/metrics", demo.url))
        .bearer_auth(&demo.key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[tokio::test]
async fn a_question_before_any_case_is_answered_and_every_limit_holds_and_late_requests_escalate() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), 5).await;
    // Users 1-4 have no case: the start page has the entry too. Three
    // requests per account per day, ten per address per hour.
    let mut opened = 0;
    for user in ["1", "2", "3", "4"] {
        for n in 0..4 {
            let (s, page) = try_support_from_centre(
                &demo,
                user,
                "other",
                "注销后优惠券还能用吗？",
                "13900001111",
            )
            .await;
            let expect_ok = n < 3 && opened < 10;
            if expect_ok {
                assert_eq!(s, 303, "user {user}, request {n}: {page}");
                opened += 1;
            } else {
                assert_ne!(s, 303, "user {user}, request {n} passed a limit");
                assert!(page.contains("提交过于频繁"), "{page}");
            }
        }
    }
    assert_eq!(opened, 10);
    let db = demo.lethe_db().await;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM support_requests")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(n, 10, "a refused request stores nothing");
    let (none, account): (i64, i64) = (
        sqlx::query_scalar("SELECT COUNT(*) FROM support_requests WHERE case_id IS NULL")
            .fetch_one(&db)
            .await
            .unwrap(),
        sqlx::query_scalar("SELECT COUNT(*) FROM support_requests WHERE origin = 'account'")
            .fetch_one(&db)
            .await
            .unwrap(),
    );
    assert_eq!((none, account), (10, 10));

    // The agent reads one: no case, its own trail; nothing to re-send.
    let token = agent_session(&demo, "care", "agent").await;
    let (_, q) = agent_get(&demo, &token, "/v1/console/support").await;
    let q = q.as_array().unwrap();
    assert_eq!(q.len(), 10);
    assert!(
        q.iter()
            .all(|r| r["case_id"].is_null() && r["origin"] == "account")
    );
    let rid = q[0]["id"].as_str().unwrap().to_owned();
    let (s, v) = agent_get(&demo, &token, &format!("/v1/console/support/{rid}")).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["case"].is_null(), "{v}");
    assert_eq!(v["message"], "注销后优惠券还能用吗？");
    let kinds: Vec<&str> = v["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["support.opened", "support.read"], "{v}");
    let (s, v) = on_request(
        &demo,
        &token,
        &rid,
        "resend",
        Some(json!({"instruction_id": "ins_x"})),
    )
    .await;
    assert_eq!(
        (s, v["type"].as_str()),
        (409, Some("urn:lethe:problem:support-no-case")),
        "{v}"
    );
    let page = demo
        .http
        .get(format!("{}/console/support/{rid}", demo.url))
        .header("cookie", format!("lethe_console={token}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"support-no-case\""), "{page}");
    let (s, v) = on_request(
        &demo,
        &token,
        &rid,
        "answer",
        Some(json!({"answer": "余额、积分会先结算，优惠券注销后失效。"})),
    )
    .await;
    assert_eq!(s, 204, "{v}");
    let (s, v) = on_request(&demo, &token, &rid, "close", None).await;
    assert_eq!(s, 204, "{v}");
    // The whole trail is in the log under the request's own key.
    let (_, log) = demo.get("/v1/audit/export").await;
    let mine: Vec<&str> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["case_id"] == format!("support-{rid}").as_str())
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        mine,
        // Read twice: over the API and on the console page.
        [
            "support.opened",
            "support.read",
            "support.read",
            "support.answered",
            "support.closed"
        ],
        "{log}"
    );

    // Receipts that do not verify: 20 per address per hour, then the
    // address is refused before any check.
    let bad = json!({
        "case_id": "c_00000000000000000000000000",
        "signature": "AAAA",
        "topic": "other",
        "message": "x",
        "contact": "13900001111",
    });
    for n in 0..21 {
        let (s, v) = public_post(&demo, "/v1/support/requests", &bad).await;
        if n < 20 {
            assert_eq!(
                (
                    s,
                    v["type"]
                        .as_str()
                        .map(|t| t.ends_with("receipt-not-verified"))
                ),
                (422, Some(true)),
                "try {n}: {v}"
            );
        } else {
            assert_eq!(s, 429, "{v}");
            assert!(
                v["type"]
                    .as_str()
                    .unwrap()
                    .ends_with("receipt-tries-exhausted"),
                "{v}"
            );
        }
    }

    // Nine requests wait; past their third working day they are overdue,
    // in the metrics and escalated in the log.
    assert_eq!(metric(&demo, "lethe_support_open").await, 9);
    assert_eq!(metric(&demo, "lethe_support_overdue").await, 0);
    demo.advance(8 * 86_400).await;
    assert_eq!(metric(&demo, "lethe_support_overdue").await, 9);
    // The worker escalates them and, a day on, empties the limit keys and
    // client hashes (they no longer count, they would only link requests).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let left: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM support_requests WHERE client_hash <> '' OR limit_key IS NOT NULL",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        let escalated = log_of(&demo).contains("support requests past their answer deadline");
        if left == 0 && escalated {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "left {left}, escalated {escalated}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
