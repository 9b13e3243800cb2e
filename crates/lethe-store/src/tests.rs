use super::*;
use jiff::SignedDuration;
use lethe_domain::{AssuranceLevel, Channel, Locale, Policy, Reason, SubjectId};
use proptest::prelude::*;

fn t0() -> Timestamp {
    "2026-03-02T02:00:00Z".parse().unwrap()
}

/// The store under test: SQLite in a temporary directory, or, with
/// `LETHE_TEST_STORE=postgres`, a fresh database on the machine's
/// PostgreSQL (`LETHE_TEST_PG_URL`, default postgres://postgres@127.0.0.1:5432/postgres).
async fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = test_url(dir.path()).await;
    let store = Store::open_url(&url, StoreOptions::default())
        .await
        .unwrap();
    (dir, store)
}

/// The URL of a new, empty store of the backend under test.
async fn test_url(dir: &std::path::Path) -> String {
    if std::env::var("LETHE_TEST_STORE").as_deref() == Ok("postgres") {
        fresh_pg_database().await
    } else {
        format!("sqlite://{}?mode=rwc", dir.join("lethe.db").display())
    }
}

fn pg_admin_url() -> String {
    std::env::var("LETHE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A new, empty PostgreSQL database; its URL.
async fn fresh_pg_database() -> String {
    create_pg_database("lethe_test").await.1
}

/// Creates a database named `<prefix>_<random>`; its name and URL.
async fn create_pg_database(prefix: &str) -> (String, String) {
    use sqlx::Connection;
    let admin_url = pg_admin_url();
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    let db = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = match admin_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{db}"),
        None => panic!("LETHE_TEST_PG_URL names no database"),
    };
    (db, url)
}

/// Case `n` (subject `u{n}`), just opened in the app, not yet stored.
fn opened(n: u128) -> (Case, Change) {
    Case::open(
        CaseId::from_uuid(uuid::Uuid::from_u128(n)),
        SubjectId::parse(&format!("u{n}")).unwrap(),
        Channel::App,
        Policy::default(),
        t0(),
    )
}

async fn new_case(store: &Store, n: u128) -> Case {
    let (case, change) = opened(n);
    store
        .create_case(case, change, format!("p{n}"), "test".into(), None)
        .await
        .unwrap()
}

fn command(i: u8) -> CaseCommand {
    match i % 9 {
        0 => CaseCommand::VerifyIdentity {
            method: "sms".into(),
            level: AssuranceLevel::PHONE,
        },
        1 => CaseCommand::RecordChecks {
            assets: vec![],
            blockers: vec![],
            consequences: vec![],
        },
        2 => CaseCommand::Acknowledge {
            consequence_id: "account_erased".into(),
            version: 1,
            locale: Locale::En,
        },
        3 => CaseCommand::Confirm,
        4 => CaseCommand::Withdraw,
        5 => CaseCommand::StartErasure {
            today: jiff::civil::date(2026, 3, 9),
        },
        6 => CaseCommand::CompleteErasure,
        7 => CaseCommand::Reject {
            reason: Reason::parse("no").unwrap(),
        },
        _ => CaseCommand::FailErasure { reason: "x".into() },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Random command sequences through the real store: every state change
    /// has exactly one audit event, refused commands write nothing, and the
    /// chain verifies.
    #[test]
    fn every_state_change_has_exactly_one_audit_event(cmds in proptest::collection::vec((any::<u8>(), 0i64..400_000), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (_d, store) = open().await;
            let case = new_case(&store, 1).await;
            let mut now = t0();
            let mut changes = 1usize; // the creation
            let mut state = case.state;
            for (c, dt) in cmds {
                now = now.checked_add(SignedDuration::from_secs(dt)).unwrap();
                match store.apply(case.id, command(c), now, "test".into(), vec![], None).await {
                    Ok(next) => { if next.state != state { changes += 1; } state = next.state; }
                    Err(StoreError::Transition(_)) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            settle(&store).await;
            let events = store.audit_for_case(case.id).await.unwrap();
            let transitions = events.iter().filter(|e| e.event.from_state.as_deref() != Some(e.event.to_state.as_str())).count();
            assert_eq!(transitions, changes);
            let stored = store.get_case(case.id).await.unwrap().unwrap();
            assert_eq!(stored.state, state);
            assert_eq!(events.len() as u64, stored.version);
            for e in &events {
                assert_eq!(e.hash, hex::encode(e.event.leaf_hash()));
            }
        });
    }
}

#[tokio::test]
async fn group_commit_keeps_the_chain_across_concurrent_writers() {
    let (_d, store) = open().await;
    let mut tasks = vec![];
    for n in 0..200u128 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move { new_case(&s, n + 10).await }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    settle(&store).await;
    let all = store.audit_range(1, 1000).await.unwrap();
    assert_eq!(all.len(), 200);
    verified(&store, all).await;
}

/// Integrates every queued audit event (the sequencer's work).
async fn settle(store: &Store) {
    store
        .integrate_queued(std::time::Duration::from_secs(30))
        .await
        .unwrap();
}

/// Signs a tree head and verifies the whole exported log with the public key.
async fn verified(store: &Store, events: Vec<lethe_ledger::RecordedEvent>) {
    let signer = std::sync::Arc::new(lethe_ledger::Signer::from_seed(&[3u8; 32]));
    let head = store
        .sign_tree_head(signer.clone(), "2026-01-01T00:00:00Z".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head.tree_size, events.len() as u64);
    let export = lethe_ledger::LogExport {
        events,
        tree_heads: vec![head.clone()],
    };
    lethe_ledger::verify_log(&export, &signer.public_key_hex()).unwrap();
    // Every event has a valid inclusion proof in that head.
    for seq in [1, head.tree_size / 2 + 1, head.tree_size] {
        let proof = store.inclusion_proof(seq, head.tree_size).await.unwrap();
        let leaf = export.events[(seq - 1) as usize].event.leaf_hash();
        assert!(lethe_ledger::merkle::verify_inclusion(
            &leaf,
            seq - 1,
            head.tree_size,
            &proof,
            &head.root().unwrap()
        ));
    }
}

#[tokio::test]
async fn a_failed_operation_does_not_disturb_its_batch() {
    let (_d, store) = open().await;
    let a = new_case(&store, 1).await;
    // An illegal command and a legal one, submitted together.
    let s1 = store.clone();
    let bad = tokio::spawn(async move {
        s1.apply(a.id, CaseCommand::Confirm, t0(), "t".into(), vec![], None)
            .await
    });
    let b = new_case(&store, 2).await;
    assert!(matches!(bad.await.unwrap(), Err(StoreError::Transition(_))));
    assert_eq!(store.audit_for_case(a.id).await.unwrap().len(), 1);
    assert_eq!(store.audit_for_case(b.id).await.unwrap().len(), 1);
    settle(&store).await;
    let all = store.audit_range(1, 10).await.unwrap();
    verified(&store, all).await;
}

#[tokio::test]
async fn wrong_codes_lock_and_count_survives() {
    let (_d, store) = open().await;
    let c = new_case(&store, 1).await;
    let draft = OutboxDraft {
        channel: "sms".into(),
        destination: "138****0000".into(),
        body: "code".into(),
    };
    store
        .send_code(
            c.id,
            "right".into(),
            draft,
            t0(),
            SignedDuration::from_mins(10),
            SignedDuration::from_secs(60),
            "t".into(),
            None,
        )
        .await
        .unwrap();
    for left in (1..5).rev() {
        let e = store
            .verify_code(
                c.id,
                CodePurpose::Verify,
                "wrong".into(),
                t0(),
                5,
                SignedDuration::from_mins(15),
                "t".into(),
                None,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(e, StoreError::WrongCode { attempts_left } if attempts_left == left),
            "{e}"
        );
    }
    let e = store
        .verify_code(
            c.id,
            CodePurpose::Verify,
            "wrong".into(),
            t0(),
            5,
            SignedDuration::from_mins(15),
            "t".into(),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::CodeLocked { .. }));
    // Even the right code is refused while locked.
    let e = store
        .verify_code(
            c.id,
            CodePurpose::Verify,
            "right".into(),
            t0(),
            5,
            SignedDuration::from_mins(15),
            "t".into(),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::CodeLocked { .. }));
    assert_eq!(
        store.get_case(c.id).await.unwrap().unwrap().state,
        CaseState::Submitted
    );
}

#[tokio::test]
async fn the_merkle_frontier_survives_a_restart_and_proofs_stay_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let url = test_url(dir.path()).await;
    let signer = std::sync::Arc::new(lethe_ledger::Signer::from_seed(&[3u8; 32]));
    let first = {
        let store = Store::open_url(&url, StoreOptions::default())
            .await
            .unwrap();
        for n in 0..37u128 {
            new_case(&store, n + 100).await;
        }
        settle(&store).await;
        store
            .sign_tree_head(signer.clone(), "t1".into())
            .await
            .unwrap()
            .unwrap()
    };
    let store = Store::open_url(&url, StoreOptions::default())
        .await
        .unwrap();
    for n in 0..21u128 {
        new_case(&store, n + 500).await;
    }
    settle(&store).await;
    let second = store
        .sign_tree_head(signer.clone(), "t2".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.tree_size, second.tree_size), (37, 58));
    let proof = store.consistency_proof(37, 58).await.unwrap();
    assert!(lethe_ledger::merkle::verify_consistency(
        37,
        58,
        &first.root().unwrap(),
        &second.root().unwrap(),
        &proof
    ));
    settle(&store).await;
    let all = store.audit_range(1, 1000).await.unwrap();
    let export = lethe_ledger::LogExport {
        events: all,
        tree_heads: vec![first, second],
    };
    lethe_ledger::verify_log(&export, &signer.public_key_hex()).unwrap();
    assert!(matches!(
        store.inclusion_proof(59, 58).await,
        Err(ProofError::OutOfRange { .. })
    ));
}

/// The PostgreSQL migrations give the same tables, columns, nullability and
/// keys as the SQLite ones (against the machine's PostgreSQL; the schema is
/// made in a database of its own and dropped).
#[tokio::test]
async fn postgres_migrations_match_the_sqlite_schema() {
    use sqlx::Connection;
    let (db, url) = create_pg_database("lethe_schema").await;
    let pg = sqlx::PgPool::connect(&url).await.unwrap();
    PG_MIGRATOR.run(&pg).await.unwrap();
    // Twice: applied migrations are recognised.
    PG_MIGRATOR.run(&pg).await.unwrap();
    let pg_cols: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, is_nullable = 'YES' FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations' ORDER BY 1, 2",
    )
    .fetch_all(&pg)
    .await
    .unwrap();
    let pg_keys: Vec<(String, String)> = sqlx::query_as(
        "SELECT tc.table_name::text, string_agg(k.column_name::text, ',' ORDER BY k.ordinal_position) \
         FROM information_schema.table_constraints tc JOIN information_schema.key_column_usage k \
         ON k.constraint_name = tc.constraint_name AND k.table_name = tc.table_name \
         WHERE tc.table_schema = 'public' AND tc.constraint_type = 'PRIMARY KEY' AND tc.table_name <> '_sqlx_migrations' \
         GROUP BY tc.table_name ORDER BY 1",
    )
    .fetch_all(&pg)
    .await
    .unwrap();
    pg.close().await;
    let mut admin = sqlx::PgConnection::connect(&pg_admin_url()).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {db}")))
        .execute(&mut admin)
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("lethe.db"), StoreOptions::default())
        .await
        .unwrap();
    let lite_cols: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT m.name, p.name, CASE WHEN p.\"notnull\" = 0 AND p.pk = 0 THEN 1 ELSE 0 END FROM sqlite_master m JOIN pragma_table_info(m.name) p \
         WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite_%' AND m.name <> '_sqlx_migrations' ORDER BY 1, 2",
    )
    .fetch_all(&store.read)
    .await
    .unwrap();
    let mut lite_pk: Vec<(String, String)> = vec![];
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY 1",
    )
    .fetch_all(&store.read)
    .await
    .unwrap();
    for t in tables {
        let cols: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info($1) WHERE pk > 0 ORDER BY pk")
                .bind(&t)
                .fetch_all(&store.read)
                .await
                .unwrap();
        if !cols.is_empty() {
            lite_pk.push((t, cols.join(",")));
        }
    }
    let lite_cols: Vec<(String, String, bool)> = lite_cols
        .into_iter()
        .map(|(t, c, n)| (t, c, n != 0))
        .collect();
    assert_eq!(pg_cols, lite_cols, "columns and nullability");
    assert_eq!(pg_keys, lite_pk, "primary keys");
    assert!(pg_cols.len() > 100, "{} columns", pg_cols.len());
}

/// A month after `t0`: every cooling-off has ended.
fn t30() -> Timestamp {
    t0().checked_add(SignedDuration::from_hours(24 * 30))
        .unwrap()
}

/// Two stores on one PostgreSQL database, as two instances: each opens its
/// own writer and pool.
async fn two_instances() -> (Store, Store) {
    let url = fresh_pg_database().await;
    // An erasure is one job, for the system "crm".
    let opts = || StoreOptions {
        erasure_jobs: vec![NewJob {
            kind: "erase".into(),
            system: "crm".into(),
            max_attempts: 3,
        }],
        ..StoreOptions::default()
    };
    let a = Store::open_url(&url, opts()).await.unwrap();
    let b = Store::open_url(&url, opts()).await.unwrap();
    assert_eq!(a.backend(), Backend::Postgres);
    (a, b)
}

/// Drives a new case to `erasing` with one erase job per system.
async fn erasing_case(store: &Store, n: u128, systems: &[&str]) -> CaseId {
    let case = new_case(store, n).await;
    for c in [0u8, 1, 2, 3] {
        store
            .apply(case.id, command(c), t0(), "t".into(), vec![], None)
            .await
            .unwrap();
    }
    let jobs = systems
        .iter()
        .map(|s| NewJob {
            kind: "erase".into(),
            system: (*s).into(),
            max_attempts: 3,
        })
        .collect();
    let started = store
        .apply(
            case.id,
            CaseCommand::StartErasure {
                today: jiff::civil::date(2026, 3, 9),
            },
            t30(),
            "t".into(),
            jobs,
            None,
        )
        .await
        .unwrap();
    assert_eq!(started.state, CaseState::Erasing);
    case.id
}

/// Queue ids are not dense: a gap wider than a batch (ids of changes
/// rolled back, a sequence's cache lost in a crash) and a change that
/// commits after later ids were integrated. Each event is integrated once,
/// the tree has no gap, every proof verifies (both backends).
#[tokio::test]
async fn queue_ids_with_gaps_and_late_commits_are_each_integrated_once() {
    let (_dir, store) = open().await;
    for n in 0..5u128 {
        new_case(&store, n + 1).await;
    }
    settle(&store).await;
    let first: i64 = sqlx::query_scalar("SELECT MAX(qid) FROM audit_entries")
        .fetch_one(&store.read)
        .await
        .unwrap();
    // An event committed with the queue id given (a copy of the first
    // event: the queue id is not part of what is hashed).
    let commit = |qid: i64| {
        store.writer.run(move |ctx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO audit_entries (qid, case_id, subject, kind, from_state, to_state, actor, at, detail, body, queued_at) \
                     SELECT $1, case_id, subject, kind, from_state, to_state, actor, at, detail, body, queued_at \
                     FROM audit_entries WHERE qid = (SELECT MIN(qid) FROM audit_entries)",
                )
                .bind(qid)
                .execute(ctx.conn().await?)
                .await
                .map_err(db("queue a test event"))?;
                Ok(())
            })
        })
    };
    let far = first + 3 * i64::from(MAX_SEQUENCE_BATCH);
    for qid in [far, far + 1, far + 5] {
        commit(qid).await.unwrap();
    }
    let mut passes = vec![];
    loop {
        let out = store.sequence(2, None).await.unwrap();
        assert!(out.held);
        if out.integrated == 0 {
            assert!(!out.more);
            break;
        }
        passes.push((out.integrated, out.more));
    }
    // Batches of up to 2 from the oldest pending id on: far and far + 1
    // (more wait), then far + 5 alone (the rest of its range is empty).
    assert_eq!(passes, vec![(2, true), (1, false)]);
    let late = first + 10;
    commit(late).await.unwrap();
    settle(&store).await;
    let order: Vec<i64> = sqlx::query_scalar("SELECT qid FROM audit_leaves ORDER BY seq")
        .fetch_all(&store.read)
        .await
        .unwrap();
    let n = order.len();
    assert_eq!(&order[n - 4..], &[far, far + 1, far + 5, late]);
    let mut unique = order.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), n, "an event integrated twice");
    assert!(!store.audit_queued().await.unwrap());
    let all = store.audit_range(1, 1000).await.unwrap();
    assert_eq!(all.len(), n);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.event.seq, i as u64 + 1);
    }
    verified(&store, all).await;
}

#[tokio::test]
async fn instances_sharing_postgres_append_to_one_audit_tree() {
    let (a, b) = two_instances().await;
    let mut tasks = vec![];
    for n in 0..150u128 {
        let s = if n % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let case = new_case(&s, n + 10).await;
            s.apply(case.id, command(0), t0(), "t".into(), vec![], None)
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // 300 events, numbered 1..=300 without a gap, one tree: a head signed
    // by either instance covers them all and every proof verifies.
    settle(&a).await;
    let all = a.audit_range(1, 1000).await.unwrap();
    assert_eq!(all.len(), 300);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.event.seq, i as u64 + 1);
    }
    verified(&b, all.clone()).await;
    new_case(&a, 999).await;
    settle(&b).await;
    let all = b.audit_range(1, 1000).await.unwrap();
    assert_eq!(all.len(), 301);
    verified(&a, all).await;
}

#[tokio::test]
async fn instances_claim_each_job_once_and_close_each_case_once() {
    let (a, b) = two_instances().await;
    let systems = ["crm", "orders", "cache"];
    let mut cases = vec![];
    for n in 0..40u128 {
        cases.push(erasing_case(if n % 2 == 0 { &a } else { &b }, n + 1, &systems).await);
    }
    let lease = SignedDuration::from_secs(60);
    // Both instances claim at once, one job or a batch at a time, and record
    // what they claimed: each job goes to exactly one of them.
    let worker = |s: Store, batch: bool| {
        tokio::spawn(async move {
            let mut mine = vec![];
            loop {
                let jobs = if batch {
                    s.claim_more_jobs("erase", "orders", now_wall(), lease, 5)
                        .await
                        .unwrap()
                } else {
                    s.claim_job(now_wall(), lease)
                        .await
                        .unwrap()
                        .into_iter()
                        .collect()
                };
                if jobs.is_empty() {
                    if s.job_ready(now_wall()).await.unwrap() {
                        continue;
                    }
                    return mine;
                }
                for j in jobs {
                    s.record_erasure(
                        j.id,
                        j.case_id,
                        j.system.clone(),
                        serde_json::json!({"rows": 1}),
                        t30(),
                        |_, outcomes, _, _| format!("{} systems", outcomes.len()),
                    )
                    .await
                    .unwrap();
                    mine.push(j.id);
                }
            }
        })
    };
    let handles = [
        worker(a.clone(), false),
        worker(b.clone(), false),
        worker(a.clone(), true),
        worker(b.clone(), true),
    ];
    let mut claimed = vec![];
    for h in handles {
        claimed.extend(h.await.unwrap());
    }
    let total = claimed.len();
    claimed.sort_unstable();
    claimed.dedup();
    assert_eq!(claimed.len(), total, "a job was claimed twice");
    assert_eq!(total, cases.len() * systems.len());
    for id in cases {
        let case = a.get_case(id).await.unwrap().unwrap();
        assert_eq!(case.state, CaseState::Erased, "case {id}");
        assert_eq!(a.receipt(id).await.unwrap().as_deref(), Some("3 systems"));
        let closing = a
            .audit_for_case(id)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.event.to_state == "erased")
            .count();
        assert_eq!(closing, 1, "case {id} closed {closing} times");
    }
    settle(&a).await;
    let all = a.audit_range(1, 10_000).await.unwrap();
    verified(&b, all).await;
}

#[tokio::test]
async fn due_cases_start_erasing_once_when_instances_race() {
    let (a, b) = two_instances().await;
    let mut ids = vec![];
    for n in 0..30u128 {
        let case = new_case(&a, n + 1).await;
        for c in [0u8, 1, 2, 3] {
            a.apply(case.id, command(c), t0(), "t".into(), vec![], None)
                .await
                .unwrap();
        }
        ids.push(case.id);
    }
    let later = t30();
    let today = jiff::civil::date(2026, 4, 1);
    let (ra, rb) = tokio::join!(
        a.start_due_erasures(later, today, 100, "worker".into()),
        b.start_due_erasures(later, today, 100, "worker".into()),
    );
    let started: Vec<CaseId> = ra
        .unwrap()
        .into_iter()
        .chain(rb.unwrap())
        .filter_map(|(id, r)| r.ok().map(|_| id))
        .collect();
    assert_eq!(started.len(), ids.len(), "each due case starts once");
    for id in ids {
        let n = a
            .audit_for_case(id)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.event.to_state == "erasing")
            .count();
        assert_eq!(n, 1);
    }
}

#[test]
fn audit_details_lose_control_and_bidi_characters() {
    let mut v = serde_json::json!({
        "branch": "Counter \u{202E}1\u{202C}",
        "notes": ["ok\u{2066}", {"k\u{200F}": "x\u{0007}y"}],
        "n": 3
    });
    crate::log::clean_json(&mut v);
    assert_eq!(
        v,
        serde_json::json!({"branch": "Counter 1", "notes": ["ok", {"k": "xy"}], "n": 3})
    );
}

#[tokio::test]
async fn idempotency_records_expire_after_a_day_and_are_purged() {
    let (_d, store) = open().await;
    store
        .idem_put("p".into(), "old".into(), "h".into(), 200, "{}".into(), None)
        .await
        .unwrap();
    store
        .idem_put("p".into(), "new".into(), "h".into(), 200, "{}".into(), None)
        .await
        .unwrap();
    // Make one a day and a minute old.
    let old = ms(now_wall()) - IDEMPOTENCY_TTL_HOURS * 3_600_000 - 60_000;
    age(
        &store,
        "UPDATE idempotency SET created_at = $1 WHERE key = 'old'",
        old,
    )
    .await;
    // An expired record answers no retry, and its key may be used again.
    assert!(store.idem_get("p", "old").await.unwrap().is_none());
    assert!(store.idem_get("p", "new").await.unwrap().is_some());
    store
        .idem_put(
            "p".into(),
            "old".into(),
            "h2".into(),
            201,
            "{}".into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        store.idem_get("p", "old").await.unwrap().unwrap().status,
        201
    );
    // A live record is never replaced: the key is taken.
    assert!(matches!(
        store
            .idem_put(
                "p".into(),
                "new".into(),
                "h3".into(),
                202,
                "{}".into(),
                None
            )
            .await,
        Err(StoreError::IdempotencyConflict)
    ));
    assert_eq!(
        store.idem_get("p", "new").await.unwrap().unwrap().status,
        200
    );
    age(&store, "UPDATE idempotency SET created_at = $1", old).await;
    assert_eq!(store.purge_idempotency(1000).await.unwrap(), 2);
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM idempotency")
        .fetch_one(&store.read)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn a_key_taken_by_a_committed_change_rolls_the_second_change_back_whole() {
    let (_d, store) = open().await;
    let idem = || {
        Some(Idem {
            principal: "p".into(),
            key: "k".into(),
            request_hash: "h".into(),
            status: 201,
            render: |c: &Case| c.id.to_string(),
        })
    };
    let (a, change) = opened(1);
    store
        .create_case(a, change, "p1".into(), "p".into(), idem())
        .await
        .unwrap();
    // The same key again (the read before the change missed the first
    // one's commit): a conflict, and nothing of the second change stays.
    let (b, change) = opened(2);
    let b_id = b.id;
    assert!(matches!(
        store
            .create_case(b, change, "p2".into(), "p".into(), idem())
            .await,
        Err(StoreError::IdempotencyConflict)
    ));
    assert!(store.get_case(b_id).await.unwrap().is_none());
    let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_entries WHERE case_id = $1")
        .bind(b_id.to_string())
        .fetch_one(&store.read)
        .await
        .unwrap();
    assert_eq!(events, 0);
    assert_eq!(
        store.idem_get("p", "k").await.unwrap().unwrap().body,
        CaseId::from_uuid(uuid::Uuid::from_u128(1)).to_string()
    );
}

/// A change's writes wait to be sent together; one that fails when they are
/// sent fails its own change, named by what it did, and the change beside
/// it in the same commit stays whole.
#[tokio::test]
async fn a_deferred_write_that_fails_fails_its_change_alone() {
    let (_d, store) = open().await;
    let (a, change) = opened(1);
    store
        .create_case(a, change, "p1".into(), "p".into(), None)
        .await
        .unwrap();
    let (again, change_again) = opened(1);
    let (b, change_b) = opened(2);
    let (again, b) = tokio::join!(
        store.create_case(again, change_again, "p1".into(), "p".into(), None),
        store.create_case(b, change_b, "p2".into(), "p".into(), None)
    );
    let e = again.unwrap_err();
    assert!(e.to_string().contains("insert case"), "{e}");
    let b = b.unwrap();
    for (id, n) in [(CaseId::from_uuid(uuid::Uuid::from_u128(1)), 1), (b.id, 1)] {
        let events: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM audit_entries WHERE case_id = $1")
                .bind(id.to_string())
                .fetch_one(&store.read)
                .await
                .unwrap();
        assert_eq!(events, n);
    }
    assert!(store.get_case(b.id).await.unwrap().is_some());
}

/// A change of a case checks the version it read when its deferred update
/// runs: a row changed beside Lethe in between fails the change, names
/// why, and leaves no audit event or effect of it; the next change, on
/// the row as it now is, goes through and reads its own writes.
#[tokio::test]
async fn a_change_whose_case_moved_underneath_fails_whole() {
    let (_d, store) = open().await;
    let a = new_case(&store, 1).await;
    // The row's version moves, its body does not: the store was written
    // beside Lethe.
    age(&store, "UPDATE cases SET version = version + $1", 1).await;
    let e = store
        .apply(a.id, command(0), t0(), "t".into(), vec![], None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("changed concurrently"), "{e}");
    assert_eq!(store.audit_for_case(a.id).await.unwrap().len(), 1);
    let stored = store.get_case(a.id).await.unwrap().unwrap();
    assert_eq!(stored.state, a.state);
    // Put the row back in line with its body: the change goes through,
    // and the one after it sees it.
    age(&store, "UPDATE cases SET version = version - $1", 1).await;
    let next = store
        .apply(a.id, command(0), t0(), "t".into(), vec![], None)
        .await
        .unwrap();
    store
        .apply(a.id, command(1), t0(), "t".into(), vec![], None)
        .await
        .unwrap();
    assert_eq!(next.version, a.version + 1);
    assert_eq!(store.audit_for_case(a.id).await.unwrap().len(), 3);
    assert!(matches!(
        store
            .apply(
                CaseId::from_uuid(uuid::Uuid::from_u128(99)),
                command(0),
                t0(),
                "t".into(),
                vec![],
                None
            )
            .await,
        Err(StoreError::NotFound(_))
    ));
}

/// An operation whose deferred statements are refused before they are sent
/// leaves the transaction control it would have carried in place: the
/// change committed before it in the same batch stays.
#[tokio::test]
async fn a_refused_deferred_statement_keeps_the_batch_before_it() {
    let (_d, store) = open().await;
    // The writer is busy, so the next two operations wait and are
    // committed together.
    let busy = store.writer.run(|_ctx| {
        Box::pin(async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            Ok(())
        })
    });
    let rest = async {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let (case, change) = opened(1);
        let created = store.create_case(case, change, "p1".into(), "test".into(), None);
        let refused = store.writer.run(|ctx| {
            Box::pin(async move {
                ctx.defer(Stmt::new("first", "SELECT $1").arg(1i64)).await?;
                ctx.defer(Stmt::new("second", "SELECT $2").arg(1i64))
                    .await?;
                ctx.flush().await
            })
        });
        tokio::join!(created, refused)
    };
    let (busy, (created, refused)) = tokio::join!(busy, rest);
    busy.unwrap();
    let e = refused.unwrap_err();
    assert!(e.to_string().contains("$2"), "{e}");
    let created = created.unwrap();
    assert!(store.get_case(created.id).await.unwrap().is_some());
    assert_eq!(store.audit_for_case(created.id).await.unwrap().len(), 1);
}

async fn age(store: &Store, sql: &'static str, at: i64) {
    store
        .writer
        .run(move |ctx| {
            Box::pin(async move {
                sqlx::query(sql)
                    .bind(at)
                    .execute(ctx.conn().await?)
                    .await
                    .map_err(db("age"))?;
                Ok(())
            })
        })
        .await
        .unwrap();
}

/// On a PostgreSQL with autovacuum off (this machine's), a table that
/// changes change after change is vacuumed and analyzed by Lethe itself
/// once its dead rows pass the threshold; with autovacuum on, Lethe leaves
/// it to PostgreSQL.
#[tokio::test]
async fn lethe_vacuums_its_tables_when_autovacuum_is_off() {
    let url = fresh_pg_database().await;
    let store = Store::open_url(&url, StoreOptions::default())
        .await
        .unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let autovacuum: String = sqlx::query_scalar("SELECT current_setting('autovacuum')")
        .fetch_one(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO idempotency (principal, key, request_hash, status, body, created_at) SELECT 'p', 'k' || g, 'h', 200, '{}', 0 FROM generate_series(1, 5000) AS g")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM idempotency")
        .execute(&pool)
        .await
        .unwrap();
    // A session's statistics reach the shared counters when it ends.
    pool.close().await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let vacuumed = store.vacuum_if_needed().await.unwrap();
    if autovacuum == "off" {
        assert!(vacuumed.contains(&"idempotency".to_owned()), "{vacuumed:?}");
        let dead: i64 = sqlx::query_scalar(
            "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'idempotency'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(dead < 5000, "{dead} dead rows left");
    } else {
        assert!(vacuumed.is_empty(), "{vacuumed:?}");
    }
    // Nothing to do right after.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(
        !store
            .vacuum_if_needed()
            .await
            .unwrap()
            .contains(&"idempotency".to_owned())
    );
}
