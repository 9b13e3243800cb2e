//! `lethe bench sequencer`: the audit log's sequencer integrating a backlog
//! of queued events (sequence numbers, leaf hashes, Merkle nodes, one
//! narrow row per event in `audit_leaves`, the pending marks deleted)
//! against the same rows written by plain SQL (one `INSERT … SELECT` and
//! one `DELETE`, no hashing, no tree) on the same database in the same
//! run.

use sqlx::{AnyPool, AssertSqlSafe, Executor};
use std::time::Instant;

fn series(kind: &str, n: u64) -> String {
    match kind {
        "postgres" => format!("generate_series(1, {n}) AS s(g)"),
        _ => format!(
            "(WITH RECURSIVE c(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM c WHERE g < {n}) SELECT g FROM c) AS s"
        ),
    }
}

/// Queues `n` events shaped like a case's (a transition with a detail),
/// each with its canonical bytes after the sequence number, as a change
/// writes them.
async fn fill(pool: &AnyPool, kind: &str, n: u64, table: &str) -> anyhow::Result<()> {
    let detail = "'{\"assurance\":\"L1\",\"cooling_off_ends_at\":\"2026-12-13T08:00:00Z\",\"n\":' || g || '}'";
    pool.execute(AssertSqlSafe(format!(
        "INSERT INTO {table} (case_id, subject, kind, from_state, to_state, actor, at, detail, queued_at, body) \
         SELECT 'c-' || g, '8f2c3d' || g, 'case.confirmed', 'consequences_acknowledged', 'cooling_off', 'platform:demo', \
         '2026-12-06T08:00:00Z', {detail}, 0, \
         ',\"case_id\":\"c-' || g || '\",\"subject\":\"8f2c3d' || g || '\",\"kind\":\"case.confirmed\",\"from_state\":\"consequences_acknowledged\",\"to_state\":\"cooling_off\",\"actor\":\"platform:demo\",\"at\":\"2026-12-06T08:00:00Z\",\"detail\":' || {detail} || '}}' \
         FROM {}",
        series(kind, n)
    )))
    .await?;
    Ok(())
}

/// Before each timed phase, the same for both: the filled tables analysed
/// (as autovacuum would soon do) and the fill's dirty pages written out
/// (PostgreSQL's checkpoint, SQLite's WAL checkpoint), so that neither
/// phase pays for the set-up's writes or plans on empty-table statistics.
async fn settle(pool: &AnyPool, kind: &str) -> anyhow::Result<()> {
    pool.execute("ANALYZE").await?;
    match kind {
        "postgres" => pool.execute("CHECKPOINT").await?,
        _ => pool.execute("PRAGMA wal_checkpoint(TRUNCATE)").await?,
    };
    Ok(())
}

pub async fn run(kind: &str, leaves: u64) -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir()?;
    let url = match kind {
        "postgres" => {
            let db = "lethe_bench_sequencer";
            let admin = AnyPool::connect("postgres://postgres@127.0.0.1:5432/postgres").await?;
            admin
                .execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db}")))
                .await?;
            admin
                .execute(AssertSqlSafe(format!("CREATE DATABASE {db}")))
                .await?;
            admin.close().await;
            format!("postgres://postgres@127.0.0.1:5432/{db}")
        }
        "sqlite" => format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("lethe.db").display()
        ),
        other => anyhow::bail!("--kind must be postgres or sqlite, not {other}"),
    };
    let store = lethe_store::Store::open_url(&url, Default::default()).await?;
    let pool = AnyPool::connect(&url).await?;
    println!("bench sequencer ({kind}): {leaves} queued events");

    // Raw: the same work in three plain statements, with no hashing and
    // no tree: the queued events read through their pending marks, one
    // narrow row written for each, the marks deleted.
    pool.execute("CREATE TABLE raw_entries AS SELECT * FROM audit_entries WHERE 1 = 0")
        .await?;
    pool.execute("CREATE TABLE raw_pending (qid BIGINT PRIMARY KEY)")
        .await?;
    pool.execute(
        "CREATE TABLE raw_leaves (seq BIGINT PRIMARY KEY, qid BIGINT NOT NULL, hash TEXT NOT NULL)",
    )
    .await?;
    pool.execute("CREATE UNIQUE INDEX raw_leaves_qid ON raw_leaves (qid)")
        .await?;
    fill(&pool, kind, leaves, "raw_entries").await?;
    pool.execute("UPDATE raw_entries SET qid = CAST(SUBSTR(case_id, 3) AS BIGINT)")
        .await?;
    pool.execute("INSERT INTO raw_pending SELECT qid FROM raw_entries")
        .await?;
    settle(&pool, kind).await?;
    let t = Instant::now();
    let mut tx = pool.begin().await?;
    tx.execute("INSERT INTO raw_leaves SELECT p.qid, p.qid, SUBSTR(e.body || '0000000000000000000000000000000000000000000000000000000000000000', 1, 64) FROM raw_pending p JOIN raw_entries e ON e.qid = p.qid")
        .await?;
    tx.execute("DELETE FROM raw_pending").await?;
    tx.commit().await?;
    let raw = t.elapsed().as_secs_f64();
    println!(
        "raw (INSERT … SELECT of narrow rows + DELETE of the marks, one transaction): {raw:7.2} s  {:>10.0} rows/s",
        leaves as f64 / raw
    );

    fill(&pool, kind, leaves, "audit_entries").await?;
    settle(&pool, kind).await?;
    let t = Instant::now();
    let mut batches = 0u64;
    let mut size = 0;
    loop {
        let out = store
            .sequence(lethe_store::MAX_SEQUENCE_BATCH, None)
            .await?;
        anyhow::ensure!(out.held, "the sequencer's lease is held elsewhere");
        if out.integrated == 0 {
            break;
        }
        batches += 1;
        size = out.size;
    }
    let lethe = t.elapsed().as_secs_f64();
    anyhow::ensure!(size == leaves, "the tree has {size} events, not {leaves}");
    let signer = std::sync::Arc::new(lethe_ledger::Signer::from_seed(&[7u8; 32]));
    let head = store
        .sign_tree_head(signer.clone(), jiff::Timestamp::now().to_string())
        .await?
        .ok_or_else(|| anyhow::anyhow!("no tree head"))?;
    // Spot checks: a proof verifies against the signed head.
    for seq in [1, leaves / 2 + 1, leaves] {
        let proof = store.inclusion_proof(seq, head.tree_size).await?;
        let ev = store.audit_range(seq, 1).await?;
        let leaf = ev[0].event.leaf_hash();
        anyhow::ensure!(
            lethe_ledger::merkle::verify_inclusion(
                &leaf,
                seq - 1,
                head.tree_size,
                &proof,
                &head.root().unwrap_or_default()
            ),
            "the proof of event {seq} does not verify"
        );
    }
    let rate = leaves as f64 / lethe;
    println!(
        "sequencer ({batches} batches of up to {}): {lethe:7.2} s  {rate:>10.0} leaves/s  ({:.2}x the raw statements' time)",
        lethe_store::MAX_SEQUENCE_BATCH,
        lethe / raw
    );
    println!(
        "RESULT: {} (target >= 100000 leaves/s)",
        if rate >= 100_000.0 {
            "target met"
        } else {
            "target NOT met"
        }
    );
    pool.close().await;
    drop(store);
    if kind == "postgres" {
        let admin = AnyPool::connect("postgres://postgres@127.0.0.1:5432/postgres").await?;
        let _ = admin
            .execute("DROP DATABASE IF EXISTS lethe_bench_sequencer WITH (FORCE)")
            .await;
    }
    Ok(())
}
