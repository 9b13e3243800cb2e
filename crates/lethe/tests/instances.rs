//! Several Lethe instances on one PostgreSQL store (the machine's server),
//! each a real `lethe demo` process on the same data directory (keys,
//! exports, Demo Mart), sharing the work with no leader.

mod common;

use common::*;
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

const WEEK: i64 = 7 * 86_400;

/// Users with a wallet balance to withdraw and nothing that blocks.
async fn wallet_users(pool: &sqlx::SqlitePool, n: usize) -> Vec<i64> {
    sqlx::query_scalar("SELECT u.id FROM users u JOIN wallets w ON w.user_id = u.id AND w.balance_fen > 0 WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id AND o.status IN ('pending','paid','shipping')) AND NOT EXISTS (SELECT 1 FROM bank_cards b WHERE b.user_id = u.id) ORDER BY u.id DESC LIMIT ?1")
        .bind(n as i64)
        .fetch_all(pool)
        .await
        .unwrap()
}

/// Verify, check, acknowledge, withdraw the wallet (a settlement
/// instruction to the platform) and forfeit the rest; returns how many
/// withdrawals were chosen. The settlement itself runs on a worker.
async fn settle_withdrawing(demo: &Demo, id: &str) -> usize {
    demo.verify(id).await;
    let v = demo.ok(&format!("/v1/cases/{id}/checks"), json!({})).await;
    assert_eq!(v["state"], "checks_clear", "{v}");
    for c in v["consequences"].as_array().unwrap() {
        demo.ok(
            &format!("/v1/cases/{id}/acknowledgements"),
            json!({"consequence_id": c["id"], "version": c["version"], "locale": "zh-CN"}),
        )
        .await;
    }
    let mut withdrawals = 0;
    for a in v["assets"].as_array().unwrap() {
        let opts = a["options"].as_array().unwrap();
        let option = if opts.contains(&json!("withdraw")) {
            withdrawals += 1;
            json!("withdraw")
        } else if opts.contains(&json!("forfeit")) {
            json!("forfeit")
        } else {
            opts[0].clone()
        };
        demo.ok(
            &format!("/v1/cases/{id}/settlements"),
            json!({"asset_id": a["id"], "option": option, "locale": "zh-CN"}),
        )
        .await;
    }
    withdrawals
}

async fn timeline_count(demo: &Demo, id: &str, kind: &str) -> usize {
    let (_, tl) = demo.get(&format!("/v1/cases/{id}/timeline")).await;
    tl["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .count()
}

#[tokio::test]
async fn three_instances_finish_every_case_once_after_one_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let url = pg_store_url(dir.path());
    let lease = ["--lease-secs", "2"];
    // The first instance makes the keys and Demo Mart; the others join.
    let mut all = vec![];
    for name in ["-a", "-b", "-c"] {
        all.push(Demo::start_named(dir.path(), 3000, name, &lease, &[], Some(url.clone())).await);
    }
    let mart = all[0].mart().await;

    // Wave one: 60 cases, opened and confirmed through all three instances.
    let users = clear_users(&mart, 60).await;
    let mut cases = vec![];
    for (i, u) in users.iter().enumerate() {
        let inst = &all[i % 3];
        let id = inst.create(*u).await;
        inst.to_cooling_off(&id).await;
        cases.push((id, *u, subject_counts(&mart, *u).await));
    }
    // Wave two: wallets to withdraw, settled by the workers of any
    // instance while wave one erases.
    let payers = wallet_users(&mart, 12).await;
    let mut withdrawals = 0;
    let mut second = vec![];
    for (i, u) in payers.iter().enumerate() {
        let inst = &all[(i + 1) % 3];
        let id = inst.create(*u).await;
        withdrawals += settle_withdrawing(inst, &id).await;
        second.push((id, *u));
    }
    assert!(
        withdrawals >= payers.len(),
        "every payer withdraws a balance"
    );

    let pg = sqlx::PgPool::connect(&url).await.unwrap();
    // Every instance's demo clock moves a week: wave one is due.
    for inst in &all {
        inst.advance(WEEK + 60).await;
    }
    // Kill the instance holding a lease on an erasure as soon as the first
    // case is erased.
    let deadline = Instant::now() + Duration::from_secs(60);
    let victim = loop {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cases WHERE state = 'erased'")
            .fetch_one(&pg)
            .await
            .unwrap();
        let owner: Option<String> = sqlx::query_scalar(
            "SELECT lease_owner FROM jobs WHERE state = 'leased' AND kind = 'erase' ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(&pg)
        .await
        .unwrap()
        .flatten();
        if n >= 1
            && let Some(owner) = owner
        {
            let pid: u32 = owner.split('/').nth(1).unwrap().parse().unwrap();
            break all.iter().position(|d| d.child.id() == pid).unwrap();
        }
        assert!(Instant::now() < deadline, "no case was erased");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let mut dead = all.remove(victim);
    let held: Vec<i64> = {
        let owner_like = format!("%/{}/%", dead.child.id());
        dead.kill9();
        sqlx::query_scalar("SELECT id FROM jobs WHERE state = 'leased' AND lease_owner LIKE $1")
            .bind(owner_like)
            .fetch_all(&pg)
            .await
            .unwrap()
    };
    assert!(!held.is_empty(), "the killed instance held no lease");
    let unfinished: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM cases WHERE state NOT IN ('erased', 'consequences_acknowledged', 'checks_clear')",
    )
    .fetch_one(&pg)
    .await
    .unwrap();
    assert!(
        unfinished > 0,
        "every case finished before the kill; the test proves nothing"
    );
    eprintln!(
        "killed instance {victim} holding {} lease(s); {unfinished} case(s) unfinished",
        held.len()
    );
    let (a, c) = (&all[0], &all[1]);

    // Wave two goes on on the two instances left. Money needs assurance
    // level 2: an agent at a counter checks the ID (signed in on one
    // instance, working on another).
    let agent = agent_session(a, "counter1", "agent").await;
    for (id, user) in &second {
        a.wait_state(id, "consequences_acknowledged", 60).await;
        let idn: String = sqlx::query_scalar("SELECT id_number FROM real_names WHERE user_id = ?1")
            .bind(user)
            .fetch_one(&mart)
            .await
            .unwrap();
        let r = c
            .http
            .post(format!("{}/v1/console/cases/{id}/counter", c.url))
            .bearer_auth(&agent)
            .header("content-type", "application/json")
            .body(json!({"document_type": "id_card", "last4": &idn[idn.len() - 4..], "branch": "Beijing West Station"}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
        let v = c.ok(&format!("/v1/cases/{id}/confirm"), json!({})).await;
        assert_eq!(v["state"], "cooling_off", "{v}");
    }
    for inst in [a, c] {
        inst.advance(WEEK + 60).await;
    }

    for (id, user, expected) in &cases {
        assert_erased_as_expected(a, c, &mart, id, *user, expected, 120).await;
    }
    for (id, _) in &second {
        c.wait_state(id, "erased", 120).await;
    }
    // Exactly once: one start and one end of erasure per case.
    for id in cases
        .iter()
        .map(|x| &x.0)
        .chain(second.iter().map(|x| &x.0))
    {
        assert_eq!(timeline_count(a, id, "case.erased").await, 1, "{id}");
        assert_eq!(
            timeline_count(c, id, "case.erasure_started").await,
            1,
            "{id}"
        );
        let receipts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM receipts WHERE case_id = $1")
            .bind(id)
            .fetch_one(&pg)
            .await
            .unwrap();
        assert_eq!(receipts, 1);
    }
    // No double settlement: one refund per instruction, one per withdrawal.
    let (refunds, distinct): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT instruction_id) FROM refunds")
            .fetch_one(&mart)
            .await
            .unwrap();
    assert_eq!(refunds, distinct, "an instruction was refunded twice");
    assert_eq!(refunds as usize, withdrawals);
    let settled: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM settlement_log WHERE status = 'done'")
            .fetch_one(&mart)
            .await
            .unwrap();
    assert_eq!(settled as usize, withdrawals);
    // The killed instance's jobs were taken over by the others.
    for id in &held {
        let (state, attempts, owner): (String, i64, String) =
            sqlx::query_as("SELECT state, attempts, lease_owner FROM jobs WHERE id = $1")
                .bind(id)
                .fetch_one(&pg)
                .await
                .unwrap();
        assert_eq!(state, "done", "job {id}");
        assert!(attempts >= 2, "job {id} was not taken over");
        assert!(
            !owner.contains(&format!("/{}/", dead.child.id())),
            "job {id}"
        );
    }

    // No gap in the audit log: 1..=N, one tree that verifies offline.
    let (n, max): (i64, i64) = sqlx::query_as("SELECT COUNT(*), MAX(seq) FROM audit_events")
        .fetch_one(&pg)
        .await
        .unwrap();
    assert_eq!(n, max, "the audit log has a gap");
    let cfg = dir.path().join("lethe.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\ndatamap = \"{}\"\n[store]\nurl = \"{url}\"\n",
            dir.path().display(),
            dir.path().join("datamap.toml").display()
        ),
    )
    .unwrap();
    let log = dir.path().join("audit.log");
    let export = Command::new(BIN)
        .args(["audit", "export", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&log)
        .output()
        .unwrap();
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let (_, key) = a.get("/v1/audit/public-key").await;
    let key = key["public_key"].as_str().unwrap().to_owned();
    let verify = Command::new(BIN)
        .args(["audit", "verify", "--log"])
        .arg(&log)
        .args(["--public-key", &key])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    pg.close().await;
}

/// Limits hold for the installation, not per instance: two instances on one
/// store together allow a key's request rate once, count one address's SMS
/// codes once, and both stop a revoked key within a second.
#[tokio::test]
async fn limits_hold_across_two_instances() {
    let dir = tempfile::tempdir().unwrap();
    let url = pg_store_url(dir.path());
    let args = ["--rate", "10", "--sms-per-client", "3"];
    let a = Demo::start_named(dir.path(), 50, "-a", &args, &[], Some(url.clone())).await;
    let b = Demo::start_named(dir.path(), 50, "-b", &args, &[], Some(url.clone())).await;
    // Both have seen each other (an instance says it is alive every 5 s).
    tokio::time::sleep(Duration::from_secs(6)).await;

    // SMS codes from one client address: 3 an hour in all, whichever
    // instance sends them.
    let mart = a.mart().await;
    let users = clear_users(&mart, 4).await;
    let mut sent = 0;
    let mut refused = 0;
    for (i, u) in users.iter().enumerate() {
        let demo = if i % 2 == 0 { &a } else { &b };
        let id = demo.create(*u).await;
        let r = demo
            .http
            .post(format!("{}/v1/cases/{id}/verification/sms/send", demo.url))
            .bearer_auth(&demo.key)
            .header("idempotency-key", uuid::Uuid::new_v4().to_string())
            .header("lethe-client-address", "203.0.113.9")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => sent += 1,
            429 => refused += 1,
            s => panic!("{s} {}", r.text().await.unwrap()),
        }
    }
    assert_eq!((sent, refused), (3, 1), "the per-address quota is shared");

    // A key's rate (10/s, burst 20) is shared out: 40 quick requests
    // through both instances get about 20 through, not 40.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut ok = 0;
    let started = Instant::now();
    for i in 0..40 {
        let demo = if i % 2 == 0 { &a } else { &b };
        if demo.get("/v1/calendar").await.0 == 200 {
            ok += 1;
        }
    }
    let refill = (started.elapsed().as_secs_f64() * 10.0).ceil() as usize;
    assert!(
        ok <= 20 + refill + 2,
        "{ok} of 40 requests passed in {:?}: the instances share the rate",
        started.elapsed()
    );
    assert!(ok >= 10, "{ok}");

    // A key revoked through one installation stops on both instances
    // within a second, though both had it cached.
    let tmp = other_platform_key(dir.path(), "temporary");
    for demo in [&a, &b] {
        let (s, _) = demo
            .call_as(&tmp, reqwest::Method::GET, "/v1/calendar", json!({}))
            .await;
        assert_eq!(s, 200);
    }
    lethe_cli(dir.path(), &["apikey", "revoke"], &["--name", "temporary"]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for demo in [&a, &b] {
        let (s, _) = demo
            .call_as(&tmp, reqwest::Method::GET, "/v1/calendar", json!({}))
            .await;
        assert_eq!(s, 401, "a revoked key is refused everywhere");
    }
}
