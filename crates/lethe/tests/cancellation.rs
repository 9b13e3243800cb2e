//! End-to-end cancellation cases against the real binary over HTTP.

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

const WEEK: i64 = 7 * 86_400;

#[tokio::test]
async fn happy_path_erases_only_the_subject() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), 2000).await;
    let mart = demo.mart().await;
    let user = clear_users(&mart, 50).await[17];
    let expected = subject_counts(&mart, user).await;
    assert!(
        expected.iter().all(|(t, n)| *n > 0
            || matches!(
                t.as_str(),
                "coupons"
                    | "subscriptions"
                    | "invoices"
                    | "wallets"
                    | "bank_cards"
                    | "refunds"
                    | "settlement_log"
            )),
        "{expected:?}"
    );
    let others_before = others_digest(&mart, &[user]).await;

    let id = demo.create(user).await;
    demo.to_cooling_off(&id).await;

    // Six days in: still cooling off, nothing erased.
    demo.advance(6 * 86_400).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(demo.state(&id).await, "cooling_off");
    assert_eq!(subject_counts(&mart, user).await, expected);

    demo.advance(86_400 + 60).await;
    demo.wait_state(&id, "erased", 60).await;

    // No row of the subject is left in any erased table; kept invoices stay.
    for (t, n) in subject_counts(&mart, user).await {
        if KEPT.contains(&t.as_str()) {
            assert_eq!(n, expected.iter().find(|(x, _)| *x == t).unwrap().1);
        } else {
            assert_eq!(n, 0, "rows of the subject left in {t}");
        }
    }
    // Every other user's rows are untouched: same counts, same checksums.
    assert_eq!(others_digest(&mart, &[user]).await, others_before);

    // The receipt lists each table with the exact counts.
    let (s, receipt) = demo.get(&format!("/v1/cases/{id}/receipt")).await;
    assert_eq!(s, 200, "{receipt}");
    for (t, n) in &expected {
        assert_eq!(receipt_rows(&receipt, t), *n, "receipt count for {t}");
    }
    let inv = receipt["systems"][0]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "invoices")
        .unwrap();
    assert_eq!(inv["action"], "keep");
    assert!(inv["retain_until"].as_str().is_some() && inv["legal_basis"].as_str().is_some());
    assert!(receipt["final_event"]["hash"].as_str().is_some());
    assert_eq!(
        receipt["steps"].as_array().unwrap().last().unwrap()["kind"],
        "case.erased"
    );

    // Prometheus metrics reflect the case and the erasure.
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
        metrics.contains("lethe_cases{state=\"erased\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("lethe_connector_erase_seconds_count{system=\"demo_mart\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("lethe_audit_events_total{kind=\"case.erased\"} 1"),
        "{metrics}"
    );
    // The calendar's coverage and the deadlines counted beyond it.
    assert!(
        metrics.contains("lethe_calendar_covered_until_year 2026"),
        "{metrics}"
    );
    assert!(
        metrics.contains("lethe_deadlines_provisional "),
        "{metrics}"
    );
    // Every state change has exactly one audit event.
    let (_, tl) = demo.get(&format!("/v1/cases/{id}/timeline")).await;
    let kinds: Vec<&str> = tl["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["from_state"] != e["to_state"])
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for k in [
        "case.submitted",
        "case.identity_verified",
        "case.checks_clear",
        "case.confirmed",
        "case.erasure_started",
        "case.erased",
    ] {
        assert_eq!(
            kinds.iter().filter(|x| **x == k).count(),
            1,
            "{k} in {kinds:?}"
        );
    }

    // The account is gone, whatever rows the data map keeps: no new case
    // for it, and the answer points at the receipt of its erasure.
    let (s, v) = demo
        .post(
            "/v1/cases",
            json!({"subject_id": user.to_string(), "channel": "app"}),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["field"], "subject_id", "{v}");
    assert!(v["fix"].as_str().unwrap().contains(&id), "{v}");
    let (s, v) = demo
        .post(
            "/v1/handoffs",
            json!({"subject_id": user.to_string(), "channel": "recovery"}),
        )
        .await;
    assert_eq!(s, 409, "{v}");

    // Unbinding the real-name identity (an alternative that keeps the
    // account) needs the verified holder.
    let other = clear_users(&mart, 50).await[3];
    let fresh = demo.create(other).await;
    let (s, v) = demo
        .post(
            &format!("/v1/cases/{fresh}/alternative"),
            json!({"kind": "unbind_real_name"}),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    demo.verify(&fresh).await;
    let (s, v) = demo
        .post(
            &format!("/v1/cases/{fresh}/alternative"),
            json!({"kind": "unbind_real_name"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "withdrawn");
}

#[tokio::test]
async fn an_unfinished_order_blocks_until_it_completes() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), 2000).await;
    let mart = demo.mart().await;
    let (user, order): (i64, i64) = sqlx::query_as(
        "SELECT user_id, id FROM orders WHERE status = 'pending' ORDER BY id LIMIT 1",
    )
    .fetch_one(&mart)
    .await
    .unwrap();
    let id = demo.create(user).await;
    demo.verify(&id).await;
    let v = demo.ok(&format!("/v1/cases/{id}/checks"), json!({})).await;
    assert_eq!(v["state"], "checks_blocked");
    let b = &v["blockers"][0];
    assert_eq!(b["code"], "unfinished_order");
    assert!(
        b["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i == &json!(order.to_string())),
        "{b}"
    );
    assert!(b["message_zh"].as_str().unwrap().contains("未完成的订单"));
    // Acknowledging or confirming is refused while blocked.
    let (s, p) = demo
        .post(&format!("/v1/cases/{id}/confirm"), json!({}))
        .await;
    assert_eq!(s, 409, "{p}");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("resolve the listed blockers"),
        "{p}"
    );

    // The order completes on the platform; the checks now clear.
    sqlx::query("UPDATE orders SET status = 'completed' WHERE user_id = ?1 AND status IN ('pending','paid','shipping')").bind(user).execute(&mart).await.unwrap();
    let v = demo.ok(&format!("/v1/cases/{id}/checks"), json!({})).await;
    assert_eq!(v["state"], "checks_clear", "{v}");
    assert!(v["blockers"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn withdrawal_during_cooling_off_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), 2000).await;
    let mart = demo.mart().await;
    let user = clear_users(&mart, 5).await[2];
    let all_before = others_digest(&mart, &[]).await;
    let id = demo.create(user).await;
    demo.to_cooling_off(&id).await;
    demo.advance(3 * 86_400).await;
    // The platform was told to freeze the account.
    let (_, notes) = demo.get(&format!("/v1/notifications?case_id={id}")).await;
    assert!(
        notes
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["kind"] == "account.freeze"
                && n["payload"]["subject_id"] == json!(user.to_string())),
        "{notes}"
    );
    // Restoring takes one verified step: a plain withdrawal is refused...
    let (s, p) = demo
        .post(&format!("/v1/cases/{id}/withdraw"), json!({}))
        .await;
    assert_eq!(s, 409, "{p}");
    assert!(p["fix"].as_str().unwrap().contains("/restore"));
    // ...a wrong code too...
    demo.ok(&format!("/v1/cases/{id}/verification/sms/send"), json!({}))
        .await;
    let code = demo.code(&id).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (s, _) = demo
        .post(&format!("/v1/cases/{id}/restore"), json!({"code": wrong}))
        .await;
    assert_eq!(s, 422);
    // ...and the right code restores the account.
    let v = demo
        .ok(&format!("/v1/cases/{id}/restore"), json!({"code": code}))
        .await;
    assert_eq!(v["state"], "withdrawn");
    let (_, notes) = demo.get(&format!("/v1/notifications?case_id={id}")).await;
    assert!(
        notes
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["kind"] == "account.restore"),
        "{notes}"
    );
    demo.advance(WEEK).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(demo.state(&id).await, "withdrawn");
    // A restored case has no open deadline: the erasure start that was due
    // a day after cooling-off never goes overdue.
    let (_, case) = demo.get(&format!("/v1/cases/{id}")).await;
    for d in case["deadlines"].as_array().unwrap() {
        assert!(
            d["status"] == "met" || d["status"] == "late",
            "an open deadline on a restored case: {d}"
        );
    }
    let (_, overdue) = demo.get("/v1/console/overdue").await;
    assert!(
        !overdue
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["case_id"] == json!(id)),
        "{overdue}"
    );
    assert_eq!(
        others_digest(&mart, &[]).await,
        all_before,
        "nothing may change after a withdrawal"
    );
    let (s, _) = demo.get(&format!("/v1/cases/{id}/receipt")).await;
    assert_eq!(s, 404);
    // The account can start a new case later.
    demo.create(user).await;
}

#[tokio::test]
async fn kill_9_during_erasure_then_restart_completes_with_exact_counts() {
    let dir = tempfile::tempdir().unwrap();
    let mut demo = Demo::start_with(dir.path(), 3000, &["--lease-secs", "2"]).await;
    let mart = demo.mart().await;
    let users = clear_users(&mart, 60).await;
    let mut cases = vec![];
    for u in &users {
        let id = demo.create(*u).await;
        demo.to_cooling_off(&id).await;
        cases.push((id, *u, subject_counts(&mart, *u).await));
    }
    let others_before = others_digest(&mart, &users).await;
    let lethe = demo.lethe_db().await;
    demo.advance(WEEK + 60).await;
    // Kill as soon as the first case is erased, while the others are in flight.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cases WHERE state = 'erased'")
            .fetch_one(&lethe)
            .await
            .unwrap();
        if n >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no case was erased");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    demo.kill9();
    let unfinished: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cases WHERE state <> 'erased'")
        .fetch_one(&lethe)
        .await
        .unwrap();
    assert!(
        unfinished > 0,
        "every case finished before the kill; the test proves nothing"
    );
    lethe.close().await;

    let demo = Demo::start_with(dir.path(), 3000, &["--lease-secs", "2"]).await;
    for (id, user, expected) in &cases {
        assert_erased_as_expected(&demo, &demo, &mart, id, *user, expected, 90).await;
        // Exactly once: one start and one end of erasure in the audit log.
        let (_, tl) = demo.get(&format!("/v1/cases/{id}/timeline")).await;
        let evs = tl["events"].as_array().unwrap();
        assert_eq!(evs.iter().filter(|e| e["kind"] == "case.erased").count(), 1);
        assert_eq!(
            evs.iter()
                .filter(|e| e["kind"] == "case.erasure_started")
                .count(),
            1
        );
    }
    assert_eq!(others_digest(&mart, &users).await, others_before);
    // The audit log has no gap: sequence numbers are 1..=n.
    let lethe = demo.lethe_db().await;
    let (n, max): (i64, i64) = sqlx::query_as("SELECT COUNT(*), MAX(seq) FROM audit_events")
        .fetch_one(&lethe)
        .await
        .unwrap();
    assert_eq!(n, max);
}
