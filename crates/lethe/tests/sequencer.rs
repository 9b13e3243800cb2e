//! The audit log off the request path: changes queue their events; one
//! instance (the holder of the sequencer's lease) integrates them into the
//! Merkle tree. Two real `lethe demo` processes on the machine's
//! PostgreSQL: the holder is killed with SIGKILL while it integrates a
//! backlog, the other takes over, and the log has no gap, no event twice,
//! every case's events in the order they happened, and proofs that hold
//! across the handover.

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

fn lethe(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(BIN).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn unhex(s: &str) -> [u8; 32] {
    let mut h = [0u8; 32];
    hex::decode_to_slice(s, &mut h).unwrap();
    h
}

fn proof_of(v: &serde_json::Value) -> Vec<[u8; 32]> {
    v["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| unhex(x.as_str().unwrap()))
        .collect()
}

/// The pid in a lease owner (`host/pid/random`).
fn pid_of(owner: &str) -> u32 {
    owner.split('/').nth(1).unwrap().parse().unwrap()
}

async fn lease(pg: &sqlx::PgPool) -> Option<(String, i64)> {
    sqlx::query_as("SELECT owner, epoch FROM leases WHERE name = 'audit.sequencer'")
        .fetch_optional(pg)
        .await
        .unwrap()
}

async fn queued(pg: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM audit_pending")
        .fetch_one(pg)
        .await
        .unwrap()
}

/// Backlog events queued at once (as a burst of changes would).
const BACKLOG: i64 = 400_000;

#[tokio::test]
async fn killing_the_sequencer_mid_batch_loses_nothing_and_proofs_hold_across_the_handover() {
    let dir = tempfile::tempdir().unwrap();
    let url = pg_store_url(dir.path());
    let mut a = Demo::start_named(dir.path(), 400, "-a", &[], &[], Some(url.clone())).await;
    let pg = sqlx::PgPool::connect(&url).await.unwrap();
    // The first instance takes the lease.
    let deadline = Instant::now() + Duration::from_secs(20);
    while lease(&pg).await.is_none() {
        assert!(
            Instant::now() < deadline,
            "nobody took the sequencer's lease"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = Demo::start_named(dir.path(), 400, "-b", &[], &[], Some(url.clone())).await;
    let (owner, epoch_before) = lease(&pg).await.unwrap();
    assert_eq!(
        pid_of(&owner),
        a.child.id(),
        "the first instance holds the lease"
    );

    // Real cases through both instances; a head that covers them.
    let mart = a.mart().await;
    let users = clear_users(&mart, 24).await;
    let mut cases = vec![];
    for (i, u) in users[..12].iter().enumerate() {
        let inst = if i % 2 == 0 { &a } else { &b };
        let id = inst.create(*u).await;
        inst.to_cooling_off(&id).await;
        cases.push(id);
    }
    let (s, h1) = b.post("/v1/audit/tree-heads", json!({})).await;
    assert_eq!(s, 200, "{h1}");
    let n1 = h1["tree_size"].as_u64().unwrap();
    let queued_events: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE qid IS NOT NULL")
            .fetch_one(&pg)
            .await
            .unwrap();
    assert_eq!(n1 as i64, queued_events, "the head covers every event");

    // A backlog, as after a burst: the holder integrates it in batches.
    sqlx::query(
        "INSERT INTO audit_entries (case_id, subject, kind, from_state, to_state, actor, at, detail, queued_at, body) \
         SELECT 'load-' || g, 'p' || g, 'load.burst', NULL, 'none', 'test', '2026-12-06T00:00:00Z', '{\"n\":' || g || '}', 0, \
         ',\"case_id\":\"load-' || g || '\",\"subject\":\"p' || g || '\",\"kind\":\"load.burst\",\"from_state\":null,\"to_state\":\"none\",\"actor\":\"test\",\"at\":\"2026-12-06T00:00:00Z\",\"detail\":{\"n\":' || g || '}}' \
         FROM generate_series(1, $1) AS g",
    )
    .bind(BACKLOG)
    .execute(&pg)
    .await
    .unwrap();
    // Kill the holder once it is part-way through the backlog.
    let deadline = Instant::now() + Duration::from_secs(60);
    let left_at_kill = loop {
        let left = queued(&pg).await;
        if left < BACKLOG * 3 / 4 {
            a.kill9();
            break queued(&pg).await;
        }
        assert!(
            Instant::now() < deadline,
            "the backlog is not being integrated"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(
        left_at_kill > 0,
        "the holder finished the backlog before the kill; the test proves nothing"
    );
    eprintln!("killed the sequencer's holder with {left_at_kill} events queued");

    // Changes go on on the other instance during the handover.
    for u in &users[12..18] {
        let id = b.create(*u).await;
        b.to_cooling_off(&id).await;
        cases.push(id);
    }
    // The other instance takes over (after the lease expires) and drains.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if queued(&pg).await == 0
            && lease(&pg)
                .await
                .is_some_and(|(o, _)| pid_of(&o) == b.child.id())
        {
            break;
        }
        assert!(Instant::now() < deadline, "nobody took the sequencer over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, epoch_after) = lease(&pg).await.unwrap();
    assert!(epoch_after > epoch_before, "a takeover raises the epoch");

    // No gap, no event twice: seq 1..=N, every queued event once.
    let (n, max, qids, distinct): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), MAX(seq), COUNT(qid), COUNT(DISTINCT qid) FROM audit_events",
    )
    .fetch_one(&pg)
    .await
    .unwrap();
    assert_eq!(n, max, "the audit log has a gap");
    assert_eq!(qids, distinct, "an event was sequenced twice");
    let burst: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE kind = 'load.burst'")
            .fetch_one(&pg)
            .await
            .unwrap();
    assert_eq!(burst, BACKLOG, "every queued event is in the tree once");

    // Causal order: each case's events in the tree in the order they were
    // written, each starting from the state the one before left.
    for id in &cases {
        let rows: Vec<(i64, i64, Option<String>, String)> = sqlx::query_as(
            "SELECT seq, qid, from_state, to_state FROM audit_events WHERE case_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&pg)
        .await
        .unwrap();
        assert!(rows.len() >= 5, "case {id}: {rows:?}");
        for w in rows.windows(2) {
            assert!(w[0].1 < w[1].1, "case {id}: out of order {w:?}");
            if let Some(from) = &w[1].2 {
                assert_eq!(from, &w[0].3, "case {id}: {w:?}");
            }
        }
        assert_eq!(rows.last().unwrap().3, "cooling_off", "case {id}");
    }

    // Proofs across the handover: the head signed before the kill is
    // consistent with one signed after it, and events from before and
    // after are included in the new one.
    let (s, h2) = b.post("/v1/audit/tree-heads", json!({})).await;
    assert_eq!(s, 200, "{h2}");
    let n2 = h2["tree_size"].as_u64().unwrap();
    assert_eq!(n2 as i64, n);
    let (_, p) = b
        .get(&format!(
            "/v1/audit/proofs/consistency?first={n1}&second={n2}"
        ))
        .await;
    assert!(lethe_ledger::merkle::verify_consistency(
        n1,
        n2,
        &unhex(h1["root_hash"].as_str().unwrap()),
        &unhex(h2["root_hash"].as_str().unwrap()),
        &proof_of(&p)
    ));
    let (_, key) = b.get("/v1/audit/public-key").await;
    let key = key["public_key"].as_str().unwrap().to_owned();
    for seq in [1, n1, n1 + 1, n1 + (BACKLOG as u64) / 2, n2] {
        let (_, page) = b.get(&format!("/v1/audit/export?from={seq}&limit=1")).await;
        let ev: lethe_ledger::RecordedEvent =
            serde_json::from_value(page["events"][0].clone()).unwrap();
        assert_eq!(ev.event.seq, seq);
        // The backlog belongs to no platform: shown redacted, by its hash.
        let leaf = unhex(&ev.hash);
        if !ev.redacted {
            assert_eq!(ev.event.leaf_hash(), leaf, "seq {seq}");
        }
        let (_, p) = b
            .get(&format!(
                "/v1/audit/proofs/inclusion?seq={seq}&tree_size={n2}"
            ))
            .await;
        assert!(
            lethe_ledger::merkle::verify_inclusion(
                &leaf,
                seq - 1,
                n2,
                &proof_of(&p),
                &unhex(h2["root_hash"].as_str().unwrap())
            ),
            "seq {seq}"
        );
    }
    // The whole log verifies offline, heads from both holders included.
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
    let (ok, _, err) = lethe(&[
        "audit",
        "export",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        log.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = lethe(&[
        "audit",
        "verify",
        "--log",
        log.to_str().unwrap(),
        "--public-key",
        &key,
    ]);
    assert!(ok && out.contains("log verified"), "{out}{err}");
}
