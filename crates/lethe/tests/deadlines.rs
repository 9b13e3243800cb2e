//! Deadlines, the deadline monitor, cooling-off notices, the calendar file
//! and identifier tombstones, against the real binary.

mod common;

use common::*;
use jiff::civil::Date;
use jiff::{Timestamp, ToSpan};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn server_now(demo: &Demo) -> Timestamp {
    let v = demo
        .ok("/v1/dev/clock/advance", json!({"seconds": 0}))
        .await;
    v["now"].as_str().unwrap().parse().unwrap()
}

fn shanghai_date(t: Timestamp) -> Date {
    t.to_zoned_datetime(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap())
        .date()
}

/// A calendar file covering `year` and the next, so these tests do not
/// depend on the shipped years; `holidays` are extra days off.
fn calendar_file(year: i16, holidays: &[Date]) -> String {
    let mut s = String::new();
    for y in [year, year + 1] {
        let hs: Vec<String> = holidays
            .iter()
            .filter(|d| d.year() == y)
            .map(|d| format!("\"{d}\""))
            .collect();
        s.push_str(&format!("[[year]]\nyear = {y}\nreplace = true\nsource = \"test calendar {y}\"\nholidays = [{}]\nworkdays = []\n\n", hs.join(", ")));
    }
    s
}

async fn wait_for(what: &str, secs: u64, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn to_review(demo: &Demo, user: i64) -> String {
    let id = demo.create(user).await;
    demo.verify(&id).await;
    let v = demo.ok(&format!("/v1/cases/{id}/checks"), json!({})).await;
    demo.acknowledge_and_settle(&id, &v).await;
    let v = demo.ok(&format!("/v1/cases/{id}/confirm"), json!({})).await;
    assert_eq!(v["state"], "under_review");
    id
}

fn deadline(case: &Value, kind: &str) -> Value {
    case["deadlines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == kind)
        .cloned()
        .unwrap_or_else(|| panic!("no {kind} deadline in {case}"))
}

#[tokio::test]
async fn a_deadline_missed_while_the_worker_was_down_is_escalated_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let year = shanghai_date(Timestamp::now()).year();
    let cal = dir.path().join("calendar.toml");
    std::fs::write(&cal, calendar_file(year, &[])).unwrap();
    let args = ["--review", "--calendar-file", cal.to_str().unwrap()];
    let mut demo = Demo::start_with(dir.path(), 200, &args).await;
    let user = clear_users(&demo.mart().await, 1).await[0];
    let id = to_review(&demo, user).await;
    let (_, case) = demo.get(&format!("/v1/cases/{id}")).await;
    let review = deadline(&case, "review");
    assert_eq!(review["status"], "on_track", "{case}");
    let due: Timestamp = review["due_at"].as_str().unwrap().parse().unwrap();
    let start: Timestamp = review["starts_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(deadline(&case, "completion")["status"], "on_track");

    // At 90 % of the time allowed, a warning goes out.
    let now = server_now(&demo).await;
    let target = start
        .checked_add(jiff::SignedDuration::from_secs(
            due.duration_since(start).as_secs() * 9 / 10,
        ))
        .unwrap();
    demo.advance(target.duration_since(now).as_secs().max(0))
        .await;
    wait_for("the 80% warning", 10, async || {
        let (_, n) = demo.get(&format!("/v1/notifications?case_id={id}")).await;
        n.as_array()
            .unwrap()
            .iter()
            .any(|x| x["kind"] == "deadline.warning" && x["payload"]["deadline"] == "review")
    })
    .await;

    // The process dies; three days pass before it is back.
    demo.kill9();
    let off_file = dir.path().join("demo-clock-offset");
    let off: i64 = std::fs::read_to_string(&off_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    std::fs::write(&off_file, (off + 3 * 86_400).to_string()).unwrap();
    let demo = Demo::start_with(dir.path(), 200, &args).await;
    wait_for("the escalation at start-up", 10, async || {
        let (_, q) = demo.get("/v1/console/overdue").await;
        q.as_array().unwrap().iter().any(|e| {
            e["case_id"] == json!(id)
                && e["deadline"]["kind"] == "review"
                && e["deadline"]["status"] == "overdue"
        })
    })
    .await;
    // The queue lists a deadline past due at once; the escalation (its
    // notification) comes with the timer's first tick.
    wait_for("the overdue notification", 10, async || {
        let (_, n) = demo.get(&format!("/v1/notifications?case_id={id}")).await;
        n.as_array()
            .unwrap()
            .iter()
            .any(|x| x["kind"] == "deadline.overdue")
    })
    .await;
    let (_, tl) = demo.get(&format!("/v1/cases/{id}/timeline")).await;
    let overdue_events = tl["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "deadline.overdue")
        .count();
    assert_eq!(overdue_events, 1, "escalated exactly once");

    // The platform's own key cannot review its case.
    let (s, v) = demo
        .post(
            &format!("/v1/cases/{id}/review"),
            json!({"decision": "approve"}),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    assert!(
        v["fix"].as_str().unwrap().contains("/v1/console/cases/"),
        "{v}"
    );
    // The console's overdue queue answers an agent's session as well as
    // the platform's key.
    let token = agent_session(&demo, "rita.reviewer", "reviewer").await;
    let r = demo
        .http
        .get(format!("{}/v1/console/overdue", demo.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let q: Value = r.json().await.unwrap();
    assert!(
        q.as_array()
            .unwrap()
            .iter()
            .any(|e| e["case_id"] == json!(id)),
        "{q}"
    );
    // A reviewer decides; the deadline is met late and leaves the queue.
    let r = demo
        .http
        .post(format!("{}/v1/console/cases/{id}/review", demo.url))
        .bearer_auth(&token)
        .json(&json!({"decision": "approve"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let (_, case) = demo.get(&format!("/v1/cases/{id}")).await;
    assert_eq!(deadline(&case, "review")["status"], "late");
    let (_, q) = demo.get("/v1/console/overdue").await;
    assert!(
        !q.as_array()
            .unwrap()
            .iter()
            .any(|e| e["case_id"] == json!(id) && e["deadline"]["kind"] == "review")
    );
    // Cooling-off started: erasure must start within 24 h of its end.
    assert!(
        deadline(&case, "erasure_start")["due_at"]
            .as_str()
            .is_some()
    );
}

#[tokio::test]
async fn a_changed_calendar_file_is_reloaded_and_a_malformed_one_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let today = shanghai_date(Timestamp::now());
    let cal = dir.path().join("calendar.toml");
    std::fs::write(&cal, calendar_file(today.year(), &[])).unwrap();
    let args = ["--review", "--calendar-file", cal.to_str().unwrap()];
    let demo = Demo::start_with(dir.path(), 200, &args).await;
    let (_, c) = demo.get("/v1/calendar").await;
    assert_eq!(
        c["years"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|y| y["source"].as_str().unwrap().starts_with("test calendar"))
            .count(),
        2,
        "{c}"
    );
    assert!(c["last_error"].is_null());

    let user = clear_users(&demo.mart().await, 1).await[0];
    let id = to_review(&demo, user).await;
    let (_, case) = demo.get(&format!("/v1/cases/{id}")).await;
    let due_before: Timestamp = deadline(&case, "review")["due_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // Ten days off right after today: the review deadline moves later.
    let days: Vec<Date> = (1..=10)
        .map(|i| today.checked_add(i.days()).unwrap())
        .collect();
    std::fs::write(&cal, calendar_file(today.year(), &days)).unwrap();
    let mut due_after = due_before;
    wait_for("the recomputed deadline", 15, async || {
        let (_, case) = demo.get(&format!("/v1/cases/{id}")).await;
        due_after = deadline(&case, "review")["due_at"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        due_after > due_before
    })
    .await;
    assert!(
        due_after.duration_since(due_before) >= jiff::SignedDuration::from_hours(24 * 7),
        "{due_before} -> {due_after}"
    );

    // A malformed file is rejected with its line and reason; the calendar in force stays.
    std::fs::write(&cal, "[[year]]\nyear = 2030\nsource = \"x\"\nholidays = [\n  \"2030-01-01\",\n  \"2030-02-30\",\n]\n").unwrap();
    wait_for("the rejection", 15, async || {
        let (_, c) = demo.get("/v1/calendar").await;
        c["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("line 6") && e.contains("2030-02-30"))
    })
    .await;
    let (_, c) = demo.get("/v1/calendar").await;
    assert!(
        c["years"]
            .as_array()
            .unwrap()
            .iter()
            .any(|y| y["year"] == json!(today.year()))
    );
    assert!(
        !c["years"]
            .as_array()
            .unwrap()
            .iter()
            .any(|y| y["year"] == json!(2030))
    );
    let (_, case) = demo.get(&format!("/v1/cases/{id}")).await;
    assert_eq!(
        deadline(&case, "review")["due_at"]
            .as_str()
            .unwrap()
            .parse::<Timestamp>()
            .unwrap(),
        due_after
    );
}

#[tokio::test]
async fn tombstones_enforce_re_registration_and_release_recycled_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start_env(
        dir.path(),
        300,
        &[],
        &[("LETHE_CARRIER_SECRET", CARRIER_SECRET)],
    )
    .await;
    let mart = demo.mart().await;
    let users = clear_users(&mart, 2).await;
    let (gone, live) = (users[0], users[1]);
    let ident = |u: i64| {
        let mart = mart.clone();
        async move {
            let (phone, email): (String, String) =
                sqlx::query_as("SELECT phone, email FROM users WHERE id = ?1")
                    .bind(u)
                    .fetch_one(&mart)
                    .await
                    .unwrap();
            let idn: String =
                sqlx::query_scalar("SELECT id_number FROM real_names WHERE user_id = ?1")
                    .bind(u)
                    .fetch_one(&mart)
                    .await
                    .unwrap();
            (phone, email, idn)
        }
    };
    let (phone, email, idn) = ident(gone).await;
    let (live_phone, _, _) = ident(live).await;
    let check = |kind: &str, value: &str| {
        let path = format!("/v1/identifiers/check?kind={kind}&value={value}");
        let demo = &demo;
        async move { demo.get(&path).await }
    };
    assert_eq!(check("phone", &phone).await.1["allowed"], true);

    let id = demo.create(gone).await;
    demo.to_cooling_off(&id).await;
    demo.advance(7 * 86_400 + 60).await;
    demo.wait_state(&id, "erased", 60).await;

    let (_, r) = check("phone", &phone).await;
    assert_eq!(r["allowed"], false, "{r}");
    let from: Timestamp = r["allowed_from"].as_str().unwrap().parse().unwrap();
    let days = from.duration_since(server_now(&demo).await).as_hours() / 24;
    assert!(
        (179..=180).contains(&days),
        "phone reserved for 180 days, got {days}"
    );
    // Spaces and a +86 prefix do not get around it.
    let spaced = format!("%2B86 {} {} {}", &phone[..3], &phone[3..7], &phone[7..]);
    assert_eq!(check("phone", &spaced).await.1["allowed"], false);
    assert_eq!(check("id_number", &idn).await.1["allowed"], false);
    assert_eq!(
        check("email", &email).await.1["allowed"],
        true,
        "email may register again at once"
    );
    assert_eq!(check("phone", &live_phone).await.1["allowed"], true);
    let (s, p) = check("passport", "x").await;
    assert_eq!(s, 422, "{p}");

    // Lethe keeps only keyed hashes: the erased phone appears nowhere in its
    // files (SQLite) or in a dump of its database (PostgreSQL).
    if let Some(url) = store_url(dir.path()) {
        let dump = std::process::Command::new("pg_dump")
            .arg(&url)
            .output()
            .unwrap();
        assert!(
            dump.status.success(),
            "{}",
            String::from_utf8_lossy(&dump.stderr)
        );
        std::fs::write(dir.path().join("store.sql"), &dump.stdout).unwrap();
    }
    for f in ["lethe.db", "lethe.db-wal", "store.sql"] {
        if let Ok(bytes) = std::fs::read(dir.path().join(f)) {
            assert!(
                !bytes.windows(phone.len()).any(|w| w == phone.as_bytes()),
                "{f} holds the phone number"
            );
            assert!(
                !bytes.windows(idn.len()).any(|w| w == idn.as_bytes()),
                "{f} holds the ID number"
            );
        }
    }

    // Another platform's key neither sees nor releases this platform's
    // tombstone.
    let other = other_platform_key(dir.path(), "other_platform");
    let (_, v) = demo
        .call_as(
            &other,
            reqwest::Method::GET,
            &format!("/v1/identifiers/check?kind=phone&value={phone}"),
            json!({}),
        )
        .await;
    assert_eq!(v["allowed"], true, "{v}");
    let (_, v) = demo
        .call_as(
            &other,
            reqwest::Method::POST,
            "/v1/carrier-events",
            json!({"event": "recycled", "phone": phone}),
        )
        .await;
    assert_eq!(v["tombstone_released"], false, "{v}");
    assert_eq!(check("phone", &phone).await.1["allowed"], false);

    // The carrier recycles the erased account's number: the tombstone goes.
    let v = demo
        .ok(
            "/v1/carrier-events",
            json!({"event": "recycled", "phone": phone}),
        )
        .await;
    assert_eq!(
        v,
        json!({"tombstone_released": true, "accounts_to_unbind": 0})
    );
    assert_eq!(check("phone", &phone).await.1["allowed"], true);
    // A recycled number still bound to a live account is unbound from it.
    let v = demo
        .ok(
            "/v1/carrier-events",
            json!({"event": "recycled", "phone": live_phone}),
        )
        .await;
    assert_eq!(
        v,
        json!({"tombstone_released": false, "accounts_to_unbind": 1})
    );
    let (_, n) = demo.get("/v1/notifications").await;
    assert!(
        n.as_array()
            .unwrap()
            .iter()
            .any(|x| x["kind"] == "identifier.unbind"
                && x["payload"]["subject_ids"] == json!([live.to_string()])),
        "{n}"
    );
    // The carrier itself sends the event, signed (Standard Webhooks): it
    // counts once; a replay and an unsigned one are refused.
    let body = json!({"event": "recycled", "phone": live_phone}).to_string();
    let ts = jiff::Timestamp::now().as_second();
    let sig = lethe_connect::http::sign(
        &lethe_connect::http::secret_bytes(CARRIER_SECRET),
        "msg_carrier_1",
        ts,
        body.as_bytes(),
    );
    let ts = ts.to_string();
    let signed = [
        ("content-type", "application/json"),
        ("webhook-id", "msg_carrier_1"),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", sig.as_str()),
    ];
    let (s, v, _) = demo.raw_post("/v1/callbacks/carrier", &body, &signed).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["accounts_to_unbind"], 1);
    let (s, _, _) = demo.raw_post("/v1/callbacks/carrier", &body, &signed).await;
    assert_eq!(s, 409);
    let (s, _, _) = demo
        .raw_post(
            "/v1/callbacks/carrier",
            &body,
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(s, 401);
}

const CARRIER_SECRET: &str = "whsec_Y2Fycmllci1zZWNyZXQtZm9yLXRlc3Rz";

#[tokio::test]
async fn gdpr_deadlines_can_be_extended_once_with_a_notice() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start_with(dir.path(), 100, &["--deadlines", "gdpr"]).await;
    let id = demo.create(1).await;
    let (_, case) = demo.get(&format!("/v1/cases/{id}")).await;
    let due: Timestamp = deadline(&case, "response")["due_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let v = demo
        .ok(
            &format!("/v1/cases/{id}/extend"),
            json!({"reason": "Your data sits in 9 systems; we need more time."}),
        )
        .await;
    assert_eq!(v["state"], "submitted");
    let (_, case) = demo.get(&format!("/v1/cases/{id}")).await;
    let extended: Timestamp = deadline(&case, "response")["due_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        extended.duration_since(due).as_hours() >= 24 * 58,
        "{due} -> {extended}"
    );
    let (s, p) = demo
        .post(
            &format!("/v1/cases/{id}/extend"),
            json!({"reason": "again"}),
        )
        .await;
    assert_eq!(s, 409, "{p}");
    let (_, n) = demo.get(&format!("/v1/notifications?case_id={id}")).await;
    assert!(n.as_array().unwrap().iter().any(|x| {
        x["kind"] == "deadline.extended"
            && x["payload"]["reason"]
                .as_str()
                .unwrap()
                .contains("9 systems")
    }));
}

#[tokio::test]
async fn cooling_off_notices_reach_the_platform_webhook_signed() {
    use axum::body::Bytes;
    use axum::http::HeaderMap;
    use base64::Engine;
    use hmac::Mac;
    let got: std::sync::Arc<tokio::sync::Mutex<Vec<(HeaderMap, Bytes)>>> = Default::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |h: HeaderMap, b: Bytes| {
            let sink = sink.clone();
            async move {
                sink.lock().await.push((h, b));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let secret_raw = b"0123456789abcdef0123456789abcdef";
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(secret_raw)
    );
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start_env(
        dir.path(),
        100,
        &["--webhook-url", &hook],
        &[("LETHE_WEBHOOK_SECRET", &secret)],
    )
    .await;
    let user = clear_users(&demo.mart().await, 1).await[0];
    let id = demo.create(user).await;
    demo.to_cooling_off(&id).await;
    wait_for("the freeze webhook", 10, async || {
        !got.lock().await.is_empty()
    })
    .await;
    let (h, body) = got.lock().await[0].clone();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["type"], "account.freeze");
    assert_eq!(v["data"]["case_id"], json!(id));
    assert_eq!(v["data"]["subject_id"], json!(user.to_string()));
    // Verify as a platform would: HMAC-SHA256 over "id.timestamp.body".
    let hid = h["webhook-id"].to_str().unwrap();
    let ts = h["webhook-timestamp"].to_str().unwrap();
    let mut m = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(secret_raw).unwrap();
    m.update(format!("{hid}.{ts}.").as_bytes());
    m.update(&body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
    );
    assert_eq!(h["webhook-signature"].to_str().unwrap(), expected);
    // Marked delivered once the platform's answer is in (just after it
    // reached the hook).
    wait_for("the freeze marked delivered", 10, async || {
        let (_, n) = demo
            .get(&format!("/v1/notifications?case_id={id}&state=delivered"))
            .await;
        n.as_array()
            .unwrap()
            .iter()
            .any(|x| x["kind"] == "account.freeze")
    })
    .await;
}

/// Moves the demo clock to `when` (it only goes forward).
async fn advance_to(demo: &Demo, when: &str) {
    let target: Timestamp = when.parse().unwrap();
    let secs = target.duration_since(server_now(demo).await).as_secs();
    assert!(secs >= 0, "the demo clock is already past {when}");
    demo.advance(secs).await;
}

/// Cases submitted on 2026-12-15 and 2026-12-30, when the calendar has no
/// 2027 yet: their deadlines past the year's end are provisional (weekends
/// and the fixed statutory holidays only, the earliest possible date),
/// marked so in the API, the warning webhook and the compliance report.
/// The operator's file then adds 2027 and every one turns final.
#[tokio::test]
async fn deadlines_past_the_calendar_are_provisional_until_the_file_adds_the_year() {
    let dir = tempfile::tempdir().unwrap();
    let cal = dir.path().join("calendar.toml");
    std::fs::write(&cal, "# next year's notice is not published yet\n").unwrap();
    let args = ["--review", "--calendar-file", cal.to_str().unwrap()];
    let demo = Demo::start_with(dir.path(), 200, &args).await;
    let users = clear_users(&demo.mart().await, 2).await;

    advance_to(&demo, "2026-12-15T02:00:00Z").await;
    let mid = to_review(&demo, users[0]).await;
    let (_, case) = demo.get(&format!("/v1/cases/{mid}")).await;
    // Review: three working days within 2026, final. Completion: fifteen
    // working days reach into 2027, provisional (1 January off, weekends).
    assert_eq!(deadline(&case, "review")["provisional"], false, "{case}");
    let completion = deadline(&case, "completion");
    assert_eq!(completion["provisional"], true, "{completion}");
    assert_eq!(completion["status"], "on_track", "{completion}");
    assert!(
        completion["due_at"].is_string(),
        "never unknown: {completion}"
    );

    advance_to(&demo, "2026-12-30T02:00:00Z").await;
    let late = to_review(&demo, users[1]).await;
    let (_, case) = demo.get(&format!("/v1/cases/{late}")).await;
    let review = deadline(&case, "review");
    assert_eq!(
        (&review["provisional"], review["due_at"].as_str()),
        (&json!(true), Some("2027-01-05T16:00:00Z")),
        "{review}"
    );

    // The compliance report counts them and names them provisional.
    let (s, report) = demo
        .get("/v1/reports/compliance?from=2026-12-01&to=2027-01-01")
        .await;
    assert_eq!(s, 200, "{report}");
    let listed = report["report"]["provisional_cases"].as_array().unwrap();
    assert!(
        listed.contains(&json!(mid)) && listed.contains(&json!(late)),
        "{report}"
    );
    // The 80 % warning of the late review says its date is provisional.
    advance_to(&demo, "2027-01-05T06:00:00Z").await;
    wait_for("the provisional warning", 20, async || {
        let (_, n) = demo.get(&format!("/v1/notifications?case_id={late}")).await;
        n.as_array().unwrap().iter().any(|n| {
            n["kind"] == "deadline.warning"
                && n["payload"]["deadline"] == "review"
                && n["payload"]["provisional"] == true
        })
    })
    .await;

    // The operator adds 2027 (here with 4 January off as well): every
    // provisional deadline is recomputed and turns final.
    std::fs::write(
        &cal,
        "[[year]]\nyear = 2027\nsource = \"operator: State Council notice 2027\"\nholidays = [\"2027-01-01\", \"2027-01-04\"]\nworkdays = []\n",
    )
    .unwrap();
    wait_for("final deadlines", 20, async || {
        let mut all_final = true;
        for id in [&mid, &late] {
            let (_, case) = demo.get(&format!("/v1/cases/{id}")).await;
            for d in case["deadlines"].as_array().unwrap() {
                all_final &= d["provisional"] == false;
            }
        }
        all_final
    })
    .await;
    let (_, case) = demo.get(&format!("/v1/cases/{late}")).await;
    assert_eq!(
        deadline(&case, "review")["due_at"].as_str(),
        Some("2027-01-06T16:00:00Z"),
        "the day off moved the review deadline one working day later"
    );
    let (_, report) = demo
        .get("/v1/reports/compliance?from=2026-12-01&to=2027-01-01")
        .await;
    assert!(
        report["report"].get("provisional_cases").is_none(),
        "{report}"
    );
}
