//! Purges against the real binary and Demo Mart: many accounts erased on
//! one legal basis; accounts with an open order, a balance or an open case
//! are skipped and listed with the reason, never erased; a notice period
//! tells each account and an objection keeps it; a data-map rule selects
//! accounts; every account has its audit event and its entry in the
//! signed report.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const DATAMAP: &str = include_str!("../../../examples/demo-mart/datamap.toml");

async fn wait_done(demo: &Demo, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, v) = demo.get(&format!("/v1/purges/{id}")).await;
        assert_eq!(s, 200, "{v}");
        if v["state"] == "done" {
            return v;
        }
        assert!(Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ids(demo: &Demo, sql: &str) -> Vec<i64> {
    let pool = demo.mart().await;
    let v: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    v
}

/// Rows of the user left in the tables erasure deletes.
async fn rows_left(demo: &Demo, user: i64) -> i64 {
    let pool = demo.mart().await;
    let n = subject_counts(&pool, user)
        .await
        .into_iter()
        .filter(|(t, _)| !KEPT.contains(&t.as_str()))
        .map(|(_, n)| n)
        .sum();
    pool.close().await;
    n
}

/// The report's entry of the i-th account of the request (entries keep
/// the request's order; they name accounts by pseudonym only).
fn entry(report: &Value, i: usize) -> &Value {
    let e = &report["report"]["subjects"][i];
    assert_eq!(e["subject_ref"].as_str().map(str::len), Some(32), "{e}");
    e
}

#[tokio::test]
async fn a_purge_erases_the_accounts_and_lists_the_ones_it_must_skip() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("datamap.toml"),
        format!(
            "{DATAMAP}\n[[purge_rules]]\nname = \"dormant\"\nsystem = \"demo_mart\"\nquery = \"SELECT id FROM users WHERE id IN (SELECT id FROM users ORDER BY id DESC LIMIT 3)\"\n"
        ),
    )
    .unwrap();
    let demo = Demo::start(dir.path(), 120).await;
    let free = ids(
        &demo,
        "SELECT id FROM users u WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id AND o.status IN ('pending','paid','shipping'))
           AND NOT EXISTS (SELECT 1 FROM wallets w WHERE w.user_id = u.id AND w.balance_fen > 0)
           AND NOT EXISTS (SELECT 1 FROM subscriptions s WHERE s.user_id = u.id AND s.auto_renew = 1)
           AND u.id < 100 ORDER BY id LIMIT 6",
    )
    .await;
    assert!(
        free.len() >= 4,
        "Demo Mart has accounts with nothing to settle: {free:?}"
    );
    let with_order = ids(&demo, "SELECT DISTINCT user_id FROM orders WHERE status IN ('pending','paid','shipping') AND user_id < 100 ORDER BY user_id LIMIT 1").await[0];
    let with_balance = ids(&demo, "SELECT user_id FROM wallets WHERE balance_fen > 0 AND user_id < 100 AND user_id NOT IN (SELECT user_id FROM orders WHERE status IN ('pending','paid','shipping')) ORDER BY user_id LIMIT 1").await[0];
    // One free account has a cancellation case open: the case decides.
    let in_case = free[0];
    demo.create(in_case).await;
    let erase: Vec<i64> = free[1..].to_vec();

    let mut subjects: Vec<String> = free.iter().map(|u| u.to_string()).collect();
    subjects.push(with_order.to_string());
    subjects.push(with_balance.to_string());
    let (s, purge) = demo
        .post(
            "/v1/purges",
            json!({"legal_basis": "PIPL Art. 47: accounts dormant for 3 years; retention ended", "subjects": subjects}),
        )
        .await;
    assert_eq!(s, 202, "{purge}");
    let id = purge["id"].as_str().unwrap().to_owned();
    let done = wait_done(&demo, &id).await;
    assert_eq!(done["requested"], subjects.len());
    assert_eq!(done["erased"], erase.len(), "{done}");
    assert_eq!(done["skipped"], 3, "{done}");

    // Erased: nothing left of them; skipped: every row still there.
    for u in &erase {
        assert_eq!(rows_left(&demo, *u).await, 0, "user {u}");
    }
    for u in [in_case, with_order, with_balance] {
        assert!(rows_left(&demo, u).await > 0, "user {u} was skipped");
    }

    // The signed report lists every account by pseudonym, with the reason
    // of each skip; it verifies with the installation's key.
    let (s, report) = demo.get(&format!("/v1/purges/{id}/report")).await;
    assert_eq!(s, 200, "{report}");
    let (_, pk) = demo.get("/v1/audit/public-key").await;
    let pk = pk["public_key"].as_str().unwrap().to_owned();
    let file = dir.path().join("purge-report.json");
    std::fs::write(&file, report.to_string()).unwrap();
    let out = lethe_cli_plain(&[
        "erasures",
        "verify",
        file.to_str().unwrap(),
        "--public-key",
        &pk,
    ]);
    assert!(out.contains("lethe.purge.v1"), "{out}");
    let r = &report["report"];
    assert_eq!(r["subjects"].as_array().unwrap().len(), subjects.len());
    assert!(r["legal_basis"].as_str().unwrap().contains("PIPL"));
    let at = |u: i64| subjects.iter().position(|s| *s == u.to_string()).unwrap();
    assert!(
        entry(&report, at(with_order))["reason"]
            .as_str()
            .unwrap()
            .starts_with("blocker unfinished_order")
    );
    assert!(
        entry(&report, at(with_balance))["reason"]
            .as_str()
            .unwrap()
            .contains("holds assets to settle: balance")
    );
    assert_eq!(
        entry(&report, at(in_case))["reason"],
        "has an open cancellation case"
    );
    for u in &erase {
        let e = entry(&report, at(*u));
        assert_eq!(e["outcome"], "erased");
        assert!(e["rows"].as_u64().unwrap() > 0);
    }
    assert!(!report.to_string().contains(&format!("\"{}\"", erase[0])));

    // One audit event per account.
    let (_, log) = demo.get("/v1/audit/export").await;
    let events: Vec<&Value> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["case_id"] == json!(id))
        .collect();
    let per = |k: &str| events.iter().filter(|e| e["kind"] == k).count();
    assert_eq!(per("subject.purged"), erase.len());
    assert_eq!(per("subject.purge_skipped"), 3);
    assert_eq!((per("purge.requested"), per("purge.finished")), (1, 1));

    // A data-map rule selects the accounts (here: the last three).
    let (s, by_rule) = demo
        .post(
            "/v1/purges",
            json!({"legal_basis": "PIPL Art. 47: accounts dormant for 3 years; retention ended", "rule": "dormant"}),
        )
        .await;
    assert_eq!(s, 202, "{by_rule}");
    assert_eq!(by_rule["requested"], 3);
    let done = wait_done(&demo, by_rule["id"].as_str().unwrap()).await;
    assert_eq!(
        done["erased"].as_u64().unwrap() + done["skipped"].as_u64().unwrap(),
        3
    );

    // Bad requests say what to fix.
    let (s, v) = demo
        .post(
            "/v1/purges",
            json!({"legal_basis": "short", "subjects": ["1"]}),
        )
        .await;
    assert_eq!((s, v["field"].as_str()), (422, Some("legal_basis")), "{v}");
    let (s, v) = demo
        .post(
            "/v1/purges",
            json!({"legal_basis": "PIPL Art. 47: retention ended", "rule": "nope"}),
        )
        .await;
    assert_eq!(s, 404, "{v}");
}

#[tokio::test]
async fn a_notice_period_tells_each_account_and_signing_in_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), 60).await;
    let pool = demo.mart().await;
    let users = ids(
        &demo,
        "SELECT id FROM users u WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id AND o.status IN ('pending','paid','shipping'))
           AND NOT EXISTS (SELECT 1 FROM wallets w WHERE w.user_id = u.id AND w.balance_fen > 0)
           AND NOT EXISTS (SELECT 1 FROM subscriptions s WHERE s.user_id = u.id AND s.auto_renew = 1)
           ORDER BY id LIMIT 2",
    )
    .await;
    pool.close().await;
    assert_eq!(users.len(), 2);
    let (s, purge) = demo
        .post(
            "/v1/purges",
            json!({"legal_basis": "PIPL Art. 47: accounts dormant for 3 years; retention ended",
                   "subjects": users.iter().map(|u| u.to_string()).collect::<Vec<_>>(), "notice_days": 14}),
        )
        .await;
    assert_eq!(s, 202, "{purge}");
    assert_eq!(purge["state"], "noticing");
    let id = purge["id"].as_str().unwrap().to_owned();
    // Each account is told.
    let (_, notes) = demo.get("/v1/notifications").await;
    let told: Vec<&Value> = notes
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "purge.notice")
        .collect();
    assert_eq!(told.len(), 2, "{notes}");
    assert!(told.iter().all(|n| n.to_string().contains(&id)));
    // One signs in: the platform reports it and the account is kept.
    let (s, v) = demo
        .post(
            &format!("/v1/purges/{id}/objections"),
            json!({"subject_id": users[0].to_string()}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, v) = demo.get(&format!("/v1/purges/{id}")).await;
    assert_eq!(
        v["state"], "noticing",
        "nothing is erased in the notice period"
    );
    assert!(rows_left(&demo, users[1]).await > 0);
    demo.advance(14 * 86_400 + 60).await;
    let done = wait_done(&demo, &id).await;
    assert_eq!(
        (done["erased"].as_u64(), done["skipped"].as_u64()),
        (Some(1), Some(1)),
        "{done}"
    );
    assert!(rows_left(&demo, users[0]).await > 0);
    assert_eq!(rows_left(&demo, users[1]).await, 0);
    let (_, report) = demo.get(&format!("/v1/purges/{id}/report")).await;
    let kept = entry(&report, 0);
    assert!(
        kept["reason"].as_str().unwrap().starts_with("objected"),
        "{kept}"
    );
    // The notices keep the accounts' pseudonyms, not their ids, once the
    // purge is over.
    let (_, notes) = demo.get("/v1/notifications").await;
    let told: Vec<&Value> = notes
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "purge.notice")
        .collect();
    assert_eq!(told.len(), 2);
    for n in told {
        let text = n.to_string();
        assert!(!text.contains("subject_id"), "{text}");
        assert!(text.contains("subject_ref"), "{text}");
    }
    // Too late to object now.
    let (s, _) = demo
        .post(
            &format!("/v1/purges/{id}/objections"),
            json!({"subject_id": users[1].to_string()}),
        )
        .await;
    assert_eq!(s, 409);
}

fn lethe_cli_plain(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_scheduled_purge_rule_opens_a_purge_when_it_is_due() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("datamap.toml"),
        format!(
            r#"{DATAMAP}
[[purge_rules]]
name = "dormant"
system = "demo_mart"
query = "SELECT id FROM users WHERE id IN (SELECT u.id FROM users u WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id AND o.status IN ('pending','paid','shipping')) AND NOT EXISTS (SELECT 1 FROM wallets w WHERE w.user_id = u.id AND w.balance_fen > 0) AND NOT EXISTS (SELECT 1 FROM subscriptions s WHERE s.user_id = u.id AND s.auto_renew = 1) ORDER BY u.id LIMIT 2)"
every_days = 30
legal_basis = "PIPL Art. 47: accounts dormant for 3 years; retention ended"
platform = "demo"
"#
        ),
    )
    .unwrap();
    let demo = Demo::start(dir.path(), 40).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_, list) = demo.get("/v1/purges").await;
    assert_eq!(list, json!([]), "not due before its period");
    demo.advance(30 * 86_400 + 60).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let purge = loop {
        let (_, list) = demo.get("/v1/purges").await;
        if let Some(p) = list.as_array().unwrap().first()
            && p["state"] == "done"
        {
            break p.clone();
        }
        assert!(Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(purge["rule"], "dormant");
    assert_eq!(
        (purge["requested"].as_u64(), purge["erased"].as_u64()),
        (Some(2), Some(2)),
        "{purge}"
    );
    assert!(purge["legal_basis"].as_str().unwrap().starts_with("PIPL"));
    // Not again until the next period.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_, list) = demo.get("/v1/purges").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
}
