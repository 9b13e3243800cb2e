//! The scenario of seed 002 (放心注销), end to end against the demo and its
//! platform (Demo Mart's own settlement and notification endpoints): an
//! account with a ¥35.20 balance, 1,200 points, two coupons and a ¥30.00
//! monthly membership that renews by itself. The holder chooses how each is
//! settled and confirms; the platform freezes the account and pauses the
//! renewal; on day 5 the holder restores it and finds it exactly as before.
//! They cancel again; when cooling-off ends every settlement goes out once,
//! the refund counted for that day, then the erasure, and the receipt shows
//! the refund with the figure shown when it was chosen.

mod common;

use common::*;
use serde_json::{Value, json};
use sqlx::SqlitePool;
use std::time::{Duration, Instant};

const FACE: &str = "whsec_ZmFjZS1wcm92aWRlci1zZWNyZXQ=";
const DAY: i64 = 86_400;

/// What the platform holds of an account's assets, as one comparable value.
async fn account(mart: &SqlitePool, user: i64) -> Value {
    let status: String = sqlx::query_scalar("SELECT status FROM users WHERE id = ?1")
        .bind(user)
        .fetch_one(mart)
        .await
        .unwrap();
    let balance: Option<i64> =
        sqlx::query_scalar("SELECT balance_fen FROM wallets WHERE user_id = ?1")
            .bind(user)
            .fetch_optional(mart)
            .await
            .unwrap();
    let points: Option<i64> = sqlx::query_scalar("SELECT balance FROM points WHERE user_id = ?1")
        .bind(user)
        .fetch_optional(mart)
        .await
        .unwrap();
    let coupons: Vec<(i64, String, i64, i64)> = sqlx::query_as(
        "SELECT id, code, value_fen, used FROM coupons WHERE user_id = ?1 ORDER BY id",
    )
    .bind(user)
    .fetch_all(mart)
    .await
    .unwrap();
    let subs: Vec<(i64, i64, i64, String, String)> = sqlx::query_as(
        "SELECT id, auto_renew, renewal_paused, period_start, period_end FROM subscriptions WHERE user_id = ?1 ORDER BY id",
    )
    .bind(user)
    .fetch_all(mart)
    .await
    .unwrap();
    json!({"status": status, "balance": balance, "points": points, "coupons": coupons, "subscriptions": subs})
}

/// Waits until the platform's view of the account satisfies `ok`.
async fn wait_account(mart: &SqlitePool, user: i64, what: &str, ok: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = account(mart, user).await;
        if ok(&a) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {a}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Opens a case, verifies by SMS code and a face check (the account holds
/// money), runs the checks, chooses a settlement for every asset,
/// acknowledges every consequence and confirms. Returns the case id and
/// the case as it was when confirmed.
async fn cancel(demo: &Demo, user: i64, friend: i64) -> (String, Value) {
    let id = demo.create(user).await;
    demo.verify(&id).await;
    demo.face_pass(&id, FACE).await;
    let checks = demo.ok(&format!("/v1/cases/{id}/checks"), json!({})).await;
    assert_eq!(checks["state"], "checks_clear", "{checks}");
    let assets = checks["assets"].as_array().unwrap();
    let kinds: Vec<&str> = assets.iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["balance", "points", "coupon", "coupon", "subscription"],
        "{checks}"
    );
    let path = format!("/v1/cases/{id}/settlements");
    for (n, a) in assets.iter().enumerate() {
        let body = match (a["kind"].as_str().unwrap(), n) {
            ("balance", _) => json!({"option": "withdraw"}),
            ("points", _) => json!({"option": "transfer", "transfer_to": friend.to_string()}),
            ("coupon", 2) => json!({"option": "transfer", "transfer_to": friend.to_string()}),
            ("coupon", _) => json!({"option": "forfeit"}),
            _ => json!({"option": "refund_pro_rata"}),
        };
        let mut body = body;
        body["asset_id"] = a["id"].clone();
        body["locale"] = json!("zh-CN");
        demo.ok(&path, body).await;
    }
    for c in checks["consequences"].as_array().unwrap() {
        demo.ok(
            &format!("/v1/cases/{id}/acknowledgements"),
            json!({"consequence_id": c["id"], "version": c["version"], "locale": "zh-CN"}),
        )
        .await;
    }
    let v = demo.ok(&format!("/v1/cases/{id}/confirm"), json!({})).await;
    assert_eq!(v["state"], "cooling_off", "{v}");
    (id, v)
}

fn settlement<'a>(case: &'a Value, kind: &str) -> &'a Value {
    &case["assets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}: {case}"))["settlement"]
}

#[tokio::test]
async fn seed_002_choose_confirm_restore_on_day_5_cancel_again_settle_once_erase() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start_env(
        dir.path(),
        300,
        &["--face-secret-env", "T_FACE"],
        &[("T_FACE", FACE)],
    )
    .await;
    let mart = demo.mart().await;
    let users = clear_users(&mart, 2).await;
    let (user, friend) = (users[0], users[1]);
    // The account of seed 002.
    let day0 = demo.today().await;
    let start = day0.checked_sub(jiff::Span::new().days(12)).unwrap();
    let end = start.checked_add(jiff::Span::new().days(30)).unwrap();
    for (sql, binds) in [
        ("DELETE FROM coupons WHERE user_id = ?1", vec![]),
        ("DELETE FROM subscriptions WHERE user_id = ?1", vec![]),
        ("DELETE FROM wallets WHERE user_id = ?1", vec![]),
        ("DELETE FROM points WHERE user_id = ?1", vec![]),
        (
            "INSERT INTO wallets (user_id, balance_fen) VALUES (?1, 3520)",
            vec![],
        ),
        (
            "INSERT INTO points (user_id, balance) VALUES (?1, 1200)",
            vec![],
        ),
        (
            "INSERT INTO coupons (user_id, code, value_fen, expires_at, used) VALUES (?1, '满30减5', 500, '2027-06-30', 0)",
            vec![],
        ),
        (
            "INSERT INTO coupons (user_id, code, value_fen, expires_at, used) VALUES (?1, '外卖红包', 300, '2027-06-30', 0)",
            vec![],
        ),
        (
            "INSERT INTO subscriptions (user_id, plan, price_fen, period_start, period_end, auto_renew) VALUES (?1, '月卡会员 monthly membership', 3000, ?2, ?3, 1)",
            vec![start.to_string(), end.to_string()],
        ),
    ] {
        let mut q = sqlx::query(sql).bind(user);
        for b in binds {
            q = q.bind(b);
        }
        q.execute(&mart).await.unwrap();
    }
    let before = account(&mart, user).await;
    let friend_before = account(&mart, friend).await;
    assert_eq!(before["status"], "active");

    // Choose and confirm: statements say when, the refund figure is today's
    // (18 of 30 days left: ¥18.00); nothing moves.
    let (first, case) = cancel(&demo, user, friend).await;
    let sub = settlement(&case, "subscription");
    assert_eq!(
        (&sub["status"], &sub["amount_minor"]),
        (&json!("chosen"), &json!(1800))
    );
    let statement = sub["statement"].as_str().unwrap();
    assert!(
        statement.contains("冷静期结束当日") && statement.contains("¥18.00"),
        "{statement}"
    );
    // The platform freezes the account and pauses the renewal: reversible.
    wait_account(&mart, user, "frozen and paused", |a| {
        a["status"] == "frozen" && a["subscriptions"][0][2] == 1
    })
    .await;
    let frozen = account(&mart, user).await;
    assert_eq!(
        frozen["subscriptions"][0][1], 1,
        "auto-renewal is paused, not cancelled"
    );
    assert_eq!(
        (&frozen["balance"], &frozen["points"], &frozen["coupons"]),
        (&before["balance"], &before["points"], &before["coupons"])
    );

    // Day 5: the holder restores the account in one verified step.
    demo.advance(5 * DAY).await;
    demo.ok(
        &format!("/v1/cases/{first}/verification/sms/send"),
        json!({}),
    )
    .await;
    let code = demo.code(&first).await;
    let v = demo
        .ok(&format!("/v1/cases/{first}/restore"), json!({"code": code}))
        .await;
    assert_eq!(v["state"], "withdrawn");
    // Exactly as before: balance, points, coupons, auto-renewal.
    wait_account(&mart, user, "restored", |a| a == &before).await;
    assert_eq!(account(&mart, friend).await, friend_before);
    let settled: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM settlement_log WHERE user_id = ?1")
        .bind(user)
        .fetch_one(&mart)
        .await
        .unwrap();
    assert_eq!(settled, 0, "nothing was settled, so nothing needs undoing");
    let (_, restored) = demo.get(&format!("/v1/cases/{first}")).await;
    for kind in ["balance", "points", "subscription"] {
        assert_eq!(settlement(&restored, kind)["status"], "chosen", "{kind}");
    }

    // Cancel again (day 5: 13 of 30 days left, ¥13.00 if counted today).
    let (second, case) = cancel(&demo, user, friend).await;
    assert_eq!(settlement(&case, "subscription")["amount_minor"], 1300);
    demo.advance(7 * DAY + 60).await;
    demo.wait_state(&second, "erased", 90).await;

    // Every settlement went out once; the refund was counted on the day
    // cooling-off ended (day 12: 6 of 30 days left, ¥6.00).
    let log: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT instruction_id, option, status FROM settlement_log WHERE user_id = ?1 ORDER BY rowid",
    )
    .bind(user)
    .fetch_all(&mart)
    .await
    .unwrap();
    let options: Vec<&str> = log.iter().map(|(_, o, _)| o.as_str()).collect();
    assert_eq!(options.len(), 4, "{log:?}");
    for o in ["withdraw", "transfer", "refund_pro_rata"] {
        assert!(options.contains(&o), "{log:?}");
    }
    assert!(log.iter().all(|(_, _, s)| s == "done"), "{log:?}");
    let refunds: Vec<(i64, String)> = sqlx::query_as(
        "SELECT amount_fen, reason FROM refunds WHERE user_id = ?1 ORDER BY amount_fen",
    )
    .bind(user)
    .fetch_all(&mart)
    .await
    .unwrap();
    assert_eq!(
        refunds.iter().map(|r| r.0).collect::<Vec<_>>(),
        [600, 3520],
        "{refunds:?}"
    );
    // The friend received the points and one coupon.
    let got = account(&mart, friend).await;
    assert_eq!(
        got["points"].as_i64().unwrap_or(0),
        friend_before["points"].as_i64().unwrap_or(0) + 1200
    );
    assert_eq!(
        got["coupons"].as_array().unwrap().len(),
        friend_before["coupons"].as_array().unwrap().len() + 1
    );

    // The receipt and the final notification show the refund paid and the
    // figure shown when it was chosen.
    let (s, receipt) = demo.get(&format!("/v1/cases/{second}/receipt")).await;
    assert_eq!(s, 200, "{receipt}");
    let paid = find(&receipt["settlements"], "kind", "subscription");
    assert_eq!(
        (&paid["amount_minor"], &paid["amount_shown_minor"]),
        (&json!(600), &json!(1300)),
        "{receipt}"
    );
    // Kept tables are named for users, with the reason in both languages.
    let refunds = find(&receipt["systems"][0]["tables"], "table", "refunds");
    assert_eq!(refunds["labels"]["title_zh"], "退款记录", "{refunds}");
    assert!(
        refunds["labels"]["legal_basis_zh"]
            .as_str()
            .unwrap()
            .contains("会计档案管理办法")
    );
    let (_, html) = demo.get(&format!("/v1/cases/{second}/receipt.html")).await;
    let html = html.as_str().unwrap();
    assert!(
        html.contains("退款记录 · Refunds (<code>refunds</code>)")
            && html.contains("Settlements 权益清算")
            && html.contains("¥6.00 (shown when chosen 选择时显示 ¥13.00"),
        "{html}"
    );
    let (_, notes) = demo
        .get(&format!("/v1/notifications?case_id={second}"))
        .await;
    let erased = find(&notes, "kind", "account.erased");
    let summary = erased["payload"]["settlements"].as_array().unwrap();
    let sub = find(&erased["payload"]["settlements"], "kind", "subscription");
    assert_eq!(
        (&sub["amount_minor"], &sub["amount_shown_minor"]),
        (&json!(600), &json!(1300)),
        "{erased}"
    );
    assert_eq!(summary.len(), 5);
}
