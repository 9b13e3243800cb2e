//! Public transparency, driven over HTTP without credentials: the monthly
//! signed report appears on /transparency by itself, with aggregate
//! figures only; `lethe audit monitor` passes across appends and exits 3
//! on a rolled-back or rewritten log.

mod common;

use common::*;
use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_lethe");

/// GET without any credentials.
async fn public(demo: &Demo, path: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(format!("{}{path}", demo.url))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn transparency(demo: &Demo) -> Value {
    let (s, body) = public(demo, "/transparency.json").await;
    assert_eq!(s, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn monitor(url: &str, state: &std::path::Path) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["audit", "monitor", "--url", url, "--state"])
        .arg(state)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

async fn sign_head(demo: &Demo) -> u64 {
    demo.ok("/v1/audit/tree-heads", json!({})).await["tree_size"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn the_monthly_report_is_published_for_anyone_with_small_counts_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), 4).await;
    // Two cases this month: fewer than the threshold of 5.
    let users = demo.users as i64;
    let a = demo.create(users - 1).await;
    let b = demo.create(users).await;
    // Into the first day of next month (the platform's time zone).
    let today = demo.today().await;
    let next = today
        .first_of_month()
        .checked_add(jiff::Span::new().months(1))
        .unwrap();
    let month = format!("{:04}-{:02}", today.year(), today.month());
    let days = (next - today).get_days() as i64;
    demo.advance(days * 86_400 + 3_600).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let listed = loop {
        let t = transparency(&demo).await;
        let found: Vec<Value> = t["reports"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["label"] == month.as_str() && r["kind"] == "monthly")
            .cloned()
            .collect();
        if found.iter().any(|r| r.get("platform").is_none()) {
            break (t, found);
        }
        assert!(
            Instant::now() < deadline,
            "no monthly report for {month}: {t}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (t, found) = listed;
    let public_key = t["public_key"].as_str().unwrap().to_owned();
    // The installation's report only: the demo platform's 2 cases are too
    // few for a report of its own (they are counted in the installation's).
    assert_eq!(found.len(), 1, "{found:?}");
    for r in &found {
        let (s, body) = public(&demo, r["json"].as_str().unwrap()).await;
        assert_eq!(s, 200, "{body}");
        let doc: lethe_ledger::report::SignedDoc = serde_json::from_str(&body).unwrap();
        assert!(doc.verify(&public_key), "the published report verifies");
        assert_eq!(doc.report["cases"], "< 5", "{body}");
        assert_eq!(doc.report["by_channel"]["app"], "< 5");
        assert_eq!(doc.report["threshold"], 5);
        // Aggregates only: no case id, no subject.
        for id in [&a, &b] {
            assert!(!body.contains(id.as_str()), "case id in the public report");
        }
        assert!(!body.contains("overdue_cases\": ["));
        // Readable as a page, in both languages.
        let (s, html) = public(&demo, &format!("{}&lang=en", r["html"].as_str().unwrap())).await;
        assert_eq!(s, 200);
        assert!(html.contains("Data deletion compliance report"), "{html}");
        assert!(html.contains("&lt; 5"));
        let (_, html) = public(
            &demo,
            &format!("{}&lang=zh-CN", r["html"].as_str().unwrap()),
        )
        .await;
        assert!(html.contains("数据删除合规报告"));
    }
    // The page and the JSON need no key; the published report is itself in
    // the log (its hash, as a `report.published` event).
    let (s, html) = public(&demo, "/transparency").await;
    assert_eq!(s, 200);
    assert!(html.contains("透明度与合规") && html.contains(&month));
    let (s, html) = public(&demo, "/transparency?lang=en").await;
    assert_eq!(s, 200);
    assert!(html.contains("Transparency and compliance"));
    sign_head(&demo).await;
    let t = transparency(&demo).await;
    let latest = &t["latest"];
    assert!(latest["tree_size"].as_u64().unwrap() >= 1);
    let head: lethe_ledger::TreeHead = serde_json::from_value(latest.clone()).unwrap();
    assert!(head.verify(&public_key));
    // The checkpoint: origin, size, base64 root, then the log's signature.
    let cp = latest["checkpoint"].as_str().unwrap();
    let note = lethe_ledger::note::Note::parse(cp).unwrap();
    let body = lethe_ledger::note::Checkpoint::parse(&note.text).unwrap();
    assert_eq!(body.size, head.tree_size);
    assert_eq!(Some(body.root), head.root());
    let (name, _, key) = lethe_ledger::note::parse_vkey(t["log_vkey"].as_str().unwrap()).unwrap();
    assert!(lethe_ledger::note::verify_text(&note, &name, &key));
    // On demand: a platform publishes an ended month now. Only whole
    // months (no two overlapping periods to subtract); the month published
    // already comes back as it is.
    let (s, v) = demo
        .post("/v1/transparency/reports", json!({"month": month}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["id"], found[0]["id"]);
    assert_eq!((&v["created"], &v["own"]), (&json!(false), &json!(false)));
    let earlier = format!("{:04}-{:02}", today.year() - 1, today.month());
    let (s, v) = demo
        .post("/v1/transparency/reports", json!({"month": earlier}))
        .await;
    assert_eq!(s, 201, "{v}");
    for bad in [
        json!({"month": next.to_string()}),
        json!({"month": "2026-13"}),
        json!({"from": "2026-01-01", "to": "2026-01-02"}),
    ] {
        let (s, v) = demo.post("/v1/transparency/reports", bad).await;
        assert_eq!(s, 422, "{v}");
    }
    let t = transparency(&demo).await;
    assert!(
        t["reports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == v_id(&t, &earlier)),
        "{t}"
    );
}

fn v_id(t: &Value, label: &str) -> Value {
    t["reports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["label"] == label)
        .map(|r| r["id"].clone())
        .unwrap_or(Value::Null)
}

// Multi-threaded: the monitor runs as a blocking child process while a
// server of this test answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_passes_appends_and_fails_on_a_rolled_back_or_rewritten_log() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("monitor.json");
    let demo = Demo::start(dir.path(), 6).await;
    sign_head(&demo).await;
    let (code, out) = monitor(&demo.url, &state);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("first head seen"), "{out}");
    // Appends: new events, a new head; the monitor checks the proof.
    for u in 1..=3 {
        demo.create(u).await;
    }
    let seen = sign_head(&demo).await;
    let (code, out) = monitor(&demo.url, &state);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("consistent") && out.contains(&format!("-> {seen} events")),
        "{out}"
    );
    let (code, out) = monitor(&demo.url, &state);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("unchanged"), "{out}");

    // The same installation (same signing key) restarted on a rewritten
    // store: first it shows fewer events (a rollback), then more events
    // that do not extend what the monitor saw (a fork).
    let other = tempfile::tempdir().unwrap();
    std::fs::copy(dir.path().join("audit.key"), other.path().join("audit.key")).unwrap();
    let rewritten = Demo::start(other.path(), 6).await;
    let size = sign_head(&rewritten).await;
    assert!(size < seen, "the new log starts smaller ({size} < {seen})");
    // The monitor's state names the installation's URL: it is the same one.
    let pointed = |from: &std::path::Path, to: &std::path::Path| {
        let mut s: Value = serde_json::from_str(&std::fs::read_to_string(from).unwrap()).unwrap();
        s["url"] = json!(rewritten.url);
        std::fs::write(to, s.to_string()).unwrap();
    };
    let rollback = dir.path().join("rollback.json");
    pointed(&state, &rollback);
    let (code, out) = monitor(&rewritten.url, &rollback);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("ALERT: rollback"), "{out}");
    let mut u = 1;
    while sign_head(&rewritten).await <= seen {
        rewritten.create(u).await;
        u += 1;
    }
    let fork = dir.path().join("fork.json");
    pointed(&state, &fork);
    let (code, out) = monitor(&rewritten.url, &fork);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("ALERT: fork"), "{out}");
    // The state file is left as it was: the alert repeats.
    let (code, _) = monitor(&rewritten.url, &fork);
    assert_eq!(code, 3);
    // A log that stops showing any head after one was seen hides its
    // history: an alert too, not "nothing to check".
    let key = transparency(&demo).await["public_key"].clone();
    let app = axum::Router::new().route(
        "/transparency.json",
        axum::routing::get(move || {
            let key = key.clone();
            async move { axum::Json(json!({"public_key": key, "latest": null})) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hidden = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let vanished = dir.path().join("vanished.json");
    let mut st: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    st["url"] = json!(hidden);
    std::fs::write(&vanished, st.to_string()).unwrap();
    let (code, out) = monitor(&hidden, &vanished);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("no tree head any more"), "{out}");
}

/// A witness (c2sp.org/tlog-witness) run in this test process: it knows
/// the log once the test tells it the log's origin and key, and keeps the
/// latest checkpoint it cosigned.
struct Witness {
    signer: lethe_ledger::Signer,
    name: String,
    log: std::sync::Mutex<Option<(String, [u8; 32])>>,
    latest: std::sync::Mutex<Option<lethe_ledger::note::Cosigned>>,
}

async fn add_checkpoint(
    axum::extract::State(w): axum::extract::State<std::sync::Arc<Witness>>,
    body: String,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some((origin, key)) = w.log.lock().unwrap().clone() else {
        return (axum::http::StatusCode::NOT_FOUND, "unknown log").into_response();
    };
    // Checked and updated atomically, as the protocol requires.
    let mut latest = w.latest.lock().unwrap();
    match lethe_ledger::note::witness_check(&body, &origin, &key, *latest) {
        Ok((next, text)) => {
            *latest = Some(next);
            let now = jiff::Timestamp::now().as_second() as u64;
            lethe_ledger::note::cosign(&w.signer, &w.name, &text, now)
                .line()
                .into_response()
        }
        Err(lethe_ledger::note::WitnessRefusal::Conflict(n)) => (
            axum::http::StatusCode::CONFLICT,
            [(axum::http::header::CONTENT_TYPE, "text/x.tlog.size")],
            format!("{n}\n"),
        )
            .into_response(),
        Err(e) => (
            axum::http::StatusCode::from_u16(e.status()).unwrap(),
            e.to_string(),
        )
            .into_response(),
    }
}

#[tokio::test]
async fn a_witness_cosigns_each_checkpoint_and_the_page_shows_it() {
    let w = std::sync::Arc::new(Witness {
        signer: lethe_ledger::Signer::from_seed(&[42; 32]),
        name: "witness.test/w1".into(),
        log: std::sync::Mutex::new(None),
        latest: std::sync::Mutex::new(None),
    });
    let app = axum::Router::new()
        .route("/add-checkpoint", axum::routing::post(add_checkpoint))
        .with_state(w.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let witness_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let wkey = w.signer.public_key_bytes();
    let vkey = lethe_ledger::note::vkey(&w.name, lethe_ledger::note::SIG_COSIGNATURE, &wkey);

    let dir = tempfile::tempdir().unwrap();
    let arg = format!("{vkey}={witness_url}");
    let demo = Demo::start_with(dir.path(), 4, &["--witness", &arg]).await;
    let t = transparency(&demo).await;
    let (origin, _, log_key) =
        lethe_ledger::note::parse_vkey(t["log_vkey"].as_str().unwrap()).unwrap();
    *w.log.lock().unwrap() = Some((origin, log_key));
    assert_eq!(t["witnesses"][0]["vkey"], vkey.as_str());

    // Each new head goes to the witness: first with old size 0, then with
    // a consistency proof from the last size it cosigned.
    for round in 0..2 {
        demo.create(round + 1).await;
        let size = sign_head(&demo).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        let latest = loop {
            let t = transparency(&demo).await;
            if t["latest"]["tree_size"] == size
                && !t["latest"]["cosignatures"].as_array().unwrap().is_empty()
            {
                break t["latest"].clone();
            }
            assert!(
                Instant::now() < deadline,
                "no cosignature for size {size}: {t}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(w.latest.lock().unwrap().unwrap().size, size);
        let c = &latest["cosignatures"][0];
        assert_eq!(c["witness"], "witness.test/w1");
        // The checkpoint note carries the cosignature, and it verifies
        // under the witness's key over the checkpoint text.
        let note = lethe_ledger::note::Note::parse(latest["checkpoint"].as_str().unwrap()).unwrap();
        assert_eq!(
            note.signatures.len(),
            2,
            "the log's signature and the witness's"
        );
        assert!(note.signatures.iter().any(|s| {
            lethe_ledger::note::verify_cosignature(&note.text, &w.name, &wkey, s).is_some()
        }));
    }
    let (_, html) = public(&demo, "/transparency?lang=en").await;
    // (minijinja escapes "/" in HTML text)
    assert!(
        html.contains("witness.test&#x2f;w1"),
        "the page shows the cosignature"
    );
    assert!(html.contains("id=\"tr-cosignatures\""));
}

#[tokio::test]
async fn transparency_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start_with(dir.path(), 2, &["--no-transparency"]).await;
    demo.create(1).await;
    sign_head(&demo).await;
    demo.create(2).await;
    sign_head(&demo).await;
    let public_routes = [
        "/transparency",
        "/transparency.json",
        "/transparency/checkpoint",
        "/transparency/proofs/consistency?first=1&second=2",
        "/transparency/reports/00000000-0000-0000-0000-000000000000",
    ];
    for path in public_routes {
        let (s, body) = public(&demo, path).await;
        assert_eq!(s, 404, "{path}");
        // Off, not merely "no such report": each route says so.
        assert!(body.contains("turned off"), "{path}: {body}");
    }
    // Nothing is published while it is off: not on demand, and not by the
    // worker when a month ends.
    let today = demo.today().await;
    let month = format!("{:04}-{:02}", today.year(), today.month());
    let next = today
        .first_of_month()
        .checked_add(jiff::Span::new().months(1))
        .unwrap();
    demo.advance((next - today).get_days() as i64 * 86_400 + 3_600)
        .await;
    let (s, v) = demo
        .post("/v1/transparency/reports", json!({ "month": month }))
        .await;
    assert_eq!(s, 404, "{v}");
    // The worker publishes within a tick or two of the month's end when
    // it is on (the test above waits for it); it has had five.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let db = demo.lethe_db().await;
    let published: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM published_reports")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(
        published, 0,
        "no report is published while transparency is off"
    );
    for path in public_routes {
        let (s, _) = public(&demo, path).await;
        assert_eq!(s, 404, "{path}");
    }
}

/// What `/transparency` lists is checkable as it stands: every head is
/// signed by the published key, and each head's consistency proof from the
/// one listed before it verifies (RFC 9162), the way an auditor reading the
/// page, not a monitor, would check it.
#[tokio::test]
async fn the_page_s_heads_are_signed_and_each_extends_the_one_before() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), 6).await;
    sign_head(&demo).await;
    for round in 0..3i64 {
        for u in 1..=2 {
            demo.create(round * 2 + u).await;
        }
        sign_head(&demo).await;
    }
    let t = transparency(&demo).await;
    let key = t["public_key"].as_str().unwrap();
    let heads = t["heads"].as_array().unwrap();
    assert!(heads.len() >= 4, "{t}");
    let hash = |s: &str| {
        let mut h = [0u8; 32];
        hex::decode_to_slice(s, &mut h).unwrap();
        h
    };
    let mut checked = 0;
    for (i, h) in heads.iter().enumerate() {
        let head = lethe_ledger::TreeHead {
            tree_size: h["tree_size"].as_u64().unwrap(),
            root_hash: h["root_hash"].as_str().unwrap().to_owned(),
            timestamp: h["timestamp"].as_str().unwrap().to_owned(),
            signature: h["signature"].as_str().unwrap().to_owned(),
        };
        assert!(
            head.verify(key),
            "head {} is not signed by the key",
            head.tree_size
        );
        // Newest first: the proof runs from the next entry (older) to this.
        let Some(prev) = heads.get(i + 1) else {
            assert!(h.get("consistency_from").is_none(), "{h}");
            continue;
        };
        let from = &h["consistency_from"];
        assert_eq!(from["tree_size"], prev["tree_size"], "{h}");
        let proof: Vec<[u8; 32]> = from["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| hash(p.as_str().unwrap()))
            .collect();
        let (old, new) = (prev["tree_size"].as_u64().unwrap(), head.tree_size);
        assert!(
            lethe_ledger::merkle::verify_consistency(
                old,
                new,
                &hash(prev["root_hash"].as_str().unwrap()),
                &hash(&head.root_hash),
                &proof
            ),
            "the proof from {old} to {new} does not verify"
        );
        // A proof that verifies for any pair would prove nothing: the same
        // proof must fail against another root.
        assert!(!lethe_ledger::merkle::verify_consistency(
            old,
            new,
            &hash(prev["root_hash"].as_str().unwrap()),
            &[0u8; 32],
            &proof
        ));
        checked += 1;
    }
    assert!(checked >= 3, "{checked} proofs checked");
}
