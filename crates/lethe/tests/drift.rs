//! Schema drift is watched, against the real binary and Demo Mart's live
//! database: the scheduled data-map check notices a new table with phone
//! numbers (notification, metric, console banner), and mapping it clears
//! it; an acceptance is audited; a change that would break erasure holds
//! the erasure with the reason on the case's timeline until it is fixed.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn findings(demo: &Demo) -> Value {
    let (s, v) = demo.get("/v1/console/datamap/findings").await;
    assert_eq!(s, 200, "{v}");
    v
}

/// Waits until the findings satisfy `ok` (the timer runs the due check).
async fn wait_findings(demo: &Demo, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = findings(demo).await;
        if ok(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn at_list(v: &Value) -> Vec<String> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["at"].as_str().unwrap().to_owned())
        .collect()
}

async fn console_html(demo: &Demo, token: &str, path: &str) -> String {
    demo.http
        .get(format!("{}{path}", demo.url))
        .header("cookie", format!("lethe_console={token}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn mart_exec(demo: &Demo, sql: &str) {
    let pool = demo.mart().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

const DATAMAP: &str = include_str!("../../../examples/demo-mart/datamap.toml");

#[tokio::test]
async fn a_new_phone_column_raises_drift_and_mapping_it_clears_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("datamap.toml"), DATAMAP).unwrap();
    let demo = Demo::start(dir.path(), 30).await;
    // The first check runs at start: Demo Mart's map covers its schema.
    let v = wait_findings(&demo, "first check", |v| v["last_check_at"].is_string()).await;
    assert!(at_list(&v).is_empty(), "{v}");

    // A developer adds a table of delivery notes with phone numbers.
    mart_exec(
        &demo,
        "CREATE TABLE delivery_notes (id INTEGER PRIMARY KEY, user_id INTEGER, phone TEXT, note TEXT);
         INSERT INTO delivery_notes (user_id, phone, note) VALUES (1, '13912345678', 'leave at the door'), (2, '13812345679', 'call first');",
    )
    .await;
    // Nothing until the next scheduled check (daily); then it is found.
    assert!(at_list(&findings(&demo).await).is_empty());
    demo.advance(86_400 + 60).await;
    let v = wait_findings(&demo, "the phone column", |v| {
        at_list(v).iter().any(|a| a == "delivery_notes.phone")
    })
    .await;
    let f = find(&v["findings"], "at", "delivery_notes.phone");
    assert_eq!(f["state"], "open");
    assert_eq!(f["breaking"], false);
    // The fix is the map text that covers it (used as it is below).
    let fix = f["fix"].as_str().unwrap();
    assert!(
        fix.contains("[[systems.tables]]\nname = \"delivery_notes\"\nowner = \"user_id\"\naction = \"delete\""),
        "{fix}"
    );

    // The platform is told (datamap.drift), the metric counts it, the
    // console shows it.
    let (_, notes) = demo.get("/v1/notifications").await;
    let drift = notes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["kind"] == "datamap.drift")
        .unwrap_or_else(|| panic!("no datamap.drift notification: {notes}"));
    assert!(
        drift.to_string().contains("delivery_notes.phone"),
        "{drift}"
    );
    let metrics = demo
        .http
        .get(format!("{}/metrics", demo.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(|l| l
            .starts_with("lethe_datamap_drift_findings{system=\"demo_mart\",breaking=\"false\"}")),
        "{metrics}"
    );
    let token = agent_session(&demo, "ops.lin", "agent").await;
    let html = console_html(&demo, &token, "/console/").await;
    assert!(html.contains("id=\"drift-banner\""), "{html}");
    assert!(html.contains("delivery_notes.phone"));

    // Mapping it: the map gets the table, Lethe restarts with it, and the
    // next scheduled check finds nothing open.
    drop(demo);
    std::fs::write(
        dir.path().join("datamap.toml"),
        format!(
            "{DATAMAP}\n[[systems.tables]]\nname = \"delivery_notes\"\ntitle_zh = \"配送备注\"\ntitle_en = \"Delivery notes\"\nowner = \"user_id\"\naction = \"delete\"\n"
        ),
    )
    .unwrap();
    let demo = Demo::start(dir.path(), 30).await;
    demo.advance(2 * 86_400).await;
    let v = wait_findings(&demo, "mapped", |v| at_list(v).is_empty()).await;
    assert!(v["last_error"].is_null(), "{v}");
    let token = agent_session(&demo, "ops.wu", "agent").await;
    let html = console_html(&demo, &token, "/console/").await;
    assert!(!html.contains("id=\"drift-banner\""));
}

#[tokio::test]
async fn erasure_waits_on_a_breaking_change_and_acceptance_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start_with(dir.path(), 30, &["--max-backoff-secs", "1"]).await;
    wait_findings(&demo, "first check", |v| v["last_check_at"].is_string()).await;
    let pool = demo.mart().await;
    let user = clear_users(&pool, 1).await[0];
    pool.close().await;

    // A new table references users with a key that blocks deletion.
    mart_exec(
        &demo,
        &format!(
            "CREATE TABLE loyalty_cards (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), tier TEXT);
             INSERT INTO loyalty_cards (user_id, tier) VALUES ({user}, 'gold');"
        ),
    )
    .await;
    let id = demo.create(user).await;
    demo.to_cooling_off(&id).await;
    demo.advance(7 * 86_400 + 60).await;
    demo.wait_state(&id, "erasing", 30).await;
    // The erasure waits, and the case's timeline says why.
    let deadline = Instant::now() + Duration::from_secs(30);
    let job = loop {
        let (_, tl) = demo.get(&format!("/v1/cases/{id}/timeline")).await;
        let job = tl["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["system"] == "demo_mart")
            .cloned()
            .unwrap();
        if job["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("loyalty_cards"))
        {
            break job;
        }
        assert!(Instant::now() < deadline, "{tl}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let why = job["last_error"].as_str().unwrap();
    assert!(
        why.contains("waits") && why.contains("uncovered_reference"),
        "{why}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(demo.state(&id).await, "erasing");
    let (_, tl) = demo.get(&format!("/v1/cases/{id}/timeline")).await;
    let job = find(&tl["jobs"], "system", "demo_mart");
    assert!(
        job["attempts"].as_u64().unwrap() <= 1,
        "a held erasure uses no attempt: {job}"
    );
    let pool = demo.mart().await;
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE id = ?1")
        .bind(user)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 1, "nothing was erased part-way");
    pool.close().await;

    // The platform maps the reference away (drops the table): the erasure
    // goes on by itself.
    mart_exec(&demo, "DROP TABLE loyalty_cards;").await;
    demo.wait_state(&id, "erased", 60).await;

    // A column that looks personal but is not: accepted with a reason by an
    // installation admin (audited); a platform's admin may not.
    mart_exec(
        &demo,
        "CREATE TABLE couriers (id INTEGER PRIMARY KEY, hotline_phone TEXT);
         INSERT INTO couriers (hotline_phone) VALUES ('4008123123');",
    )
    .await;
    demo.advance(86_400 + 60).await;
    let v = wait_findings(&demo, "couriers", |v| {
        at_list(v).iter().any(|a| a.starts_with("couriers"))
    })
    .await;
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["at"].as_str().unwrap().starts_with("couriers"))
        .unwrap()
        .clone();
    let path = format!(
        "/v1/console/datamap/findings/{}/accept",
        f["id"].as_str().unwrap()
    );
    let reason = json!({"reason": "the couriers' company hotline, not a person's phone"});
    let platform_admin = agent_session_for(&demo, "demo.admin", "admin", Some("demo")).await;
    let (s, body) = console_call(&demo, &platform_admin, &path, &reason).await;
    assert_eq!(s, 403, "{body}");
    let staff = agent_session_for(&demo, "staff.admin", "admin", None).await;
    let (s, body) = console_call(&demo, &staff, &path, &json!({"reason": "short"})).await;
    assert_eq!(s, 422, "{body}");
    let (s, body) = console_call(&demo, &staff, &path, &reason).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["state"], "accepted");
    let v = findings(&demo).await;
    assert_eq!(
        find(&v["findings"], "id", f["id"].as_str().unwrap())["state"],
        "accepted"
    );
    let html = console_html(&demo, &staff, "/console/").await;
    assert!(
        !html.contains("id=\"drift-banner\""),
        "an accepted finding leaves the banner"
    );
    // The acceptance is in the audit log, with its reason.
    let file = dir.path().join("audit.log");
    lethe_cli(
        dir.path(),
        &["audit", "export"],
        &["--out", file.to_str().unwrap()],
    );
    let log = std::fs::read_to_string(&file).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("datamap.finding_accepted"))
        .expect("the acceptance is audited");
    assert!(
        line.contains("company hotline") && line.contains("agent:"),
        "{line}"
    );

    // A breaking finding cannot be accepted: it must be fixed.
    mart_exec(
        &demo,
        "CREATE TABLE gift_cards (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id));",
    )
    .await;
    demo.advance(86_400 + 60).await;
    let v = wait_findings(&demo, "gift cards", |v| {
        at_list(v).iter().any(|a| a.starts_with("gift_cards"))
    })
    .await;
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["at"].as_str().unwrap().starts_with("gift_cards"))
        .unwrap();
    assert_eq!(f["breaking"], true, "{f}");
    let path = format!(
        "/v1/console/datamap/findings/{}/accept",
        f["id"].as_str().unwrap()
    );
    let (s, body) = console_call(&demo, &staff, &path, &reason).await;
    assert_eq!(s, 409, "{body}");
}

async fn console_call(demo: &Demo, token: &str, path: &str, body: &Value) -> (u16, Value) {
    let r = demo
        .http
        .post(format!("{}{path}", demo.url))
        .bearer_auth(token)
        .header("idempotency-key", uuid::Uuid::new_v4().to_string())
        .json(body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}
