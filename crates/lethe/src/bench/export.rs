//! `lethe bench export`: one subject's data export of about 1 GB from a
//! SQLite database, by Lethe (rows streamed from the connector into the
//! ZIP archive — JSON and CSV per dataset, manifest — sealed on disk) and by
//! a raw baseline (the same query's rows written as JSON lines to a plain
//! file: no archive, no CSV, no encryption), in the same run. Each side
//! runs in its own child process, so its peak memory (VmHWM) is its own.

use anyhow::{Context, bail};
use futures_util::TryStreamExt;
use lethe_domain::SubjectId;
use sqlx::{AnyPool, AssertSqlSafe, Executor};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

const MAP: &str = r#"
[[systems]]
name = "bench"
kind = "sqlite"
url_env = "LETHE_BENCH_URL"
[[systems.tables]]
name = "users"
owner = "id"
action = "delete"
[[systems.tables]]
name = "events"
owner = "user_id"
action = "delete"
"#;

/// Bytes of payload per row (hex text of half as many random bytes).
const PAYLOAD: u64 = 960;

/// The parent: makes the database, runs both sides `rounds` times (the
/// baseline, then Lethe, each round), prints the figures of every round and
/// the median ratio: the disk and the neighbours of a shared machine move
/// single runs by seconds, both sides alike within a round.
pub async fn run(mb: u64, rounds: u32) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("bench-export.db");
    let rows = (mb * 1024 * 1024) / (PAYLOAD + 60);
    let t = Instant::now();
    generate(&db, rows).await?;
    let size = std::fs::metadata(&db)?.len();
    println!(
        "database: {rows} rows of subject 1 ({:.0} MB of SQLite), made in {:.1} s",
        size as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let exe = std::env::current_exe()?;
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    println!(
        "{:<6} {:<8} {:>10} {:>12} {:>10} {:>10} {:>12}",
        "round", "side", "rows", "data MB", "seconds", "MB/s", "peak RSS MB"
    );
    let (mut ratios, mut rss, mut archive) = (vec![], 0.0f64, 0.0f64);
    for round in 1..=rounds {
        let mut results = vec![];
        for side in ["raw", "lethe"] {
            let out = std::process::Command::new(&exe)
                .args(["bench", "export-child", "--side", side, "--db"])
                .arg(&db)
                .arg("--out")
                .arg(dir.path())
                .env("LETHE_BENCH_URL", format!("sqlite://{}", db.display()))
                .output()
                .context("running a benchmark child")?;
            if !out.status.success() {
                bail!(
                    "the {side} side failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let v: serde_json::Value = serde_json::from_slice(&out.stdout)
                .with_context(|| format!("the {side} side printed no figures"))?;
            println!(
                "{:<6} {:<8} {:>10} {:>12.0} {:>10.2} {:>10.1} {:>12.1}",
                round,
                side,
                f(&v, "rows"),
                f(&v, "data_bytes") / 1e6,
                f(&v, "seconds"),
                f(&v, "data_bytes") / 1e6 / f(&v, "seconds").max(1e-9),
                f(&v, "peak_rss_kb") / 1024.0
            );
            // Each round's files go before the next round writes its own.
            for name in ["raw.jsonl", "lethe.zip.sealed"] {
                let _ = std::fs::remove_file(dir.path().join(name));
            }
            results.push(v);
        }
        let (raw, lethe) = (&results[0], &results[1]);
        ratios.push(f(lethe, "seconds") / f(raw, "seconds").max(1e-9));
        rss = rss.max(f(lethe, "peak_rss_kb") / 1024.0);
        archive = f(lethe, "file_bytes").max(f(lethe, "zip_bytes"));
    }
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    // Not empty: clap lets `rounds` be 1 to 9.
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN);
    println!(
        "lethe: archive {:.0} MB sealed; {:.2}x the baseline's time (median of {} rounds: {}; target <= 3x: {}); peak RSS {:.1} MB (target < 100 MB: {})",
        archive / 1e6,
        median,
        ratios.len(),
        ratios
            .iter()
            .map(|r| format!("{r:.2}x"))
            .collect::<Vec<_>>()
            .join(", "),
        if median <= 3.0 { "met" } else { "NOT met" },
        rss,
        if rss < 100.0 { "met" } else { "NOT met" }
    );
    Ok(())
}

async fn generate(db: &Path, rows: u64) -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let pool = AnyPool::connect(&format!("sqlite://{}?mode=rwc", db.display())).await?;
    pool.execute("PRAGMA journal_mode = OFF").await?;
    pool.execute("PRAGMA synchronous = OFF").await?;
    pool.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        .await?;
    pool.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), kind TEXT NOT NULL, at TEXT NOT NULL, payload TEXT NOT NULL)")
        .await?;
    pool.execute("INSERT INTO users VALUES (1, '张三'), (2, '李四')")
        .await?;
    pool.execute(AssertSqlSafe(format!(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows})
         INSERT INTO events SELECT x, 1, 'order.viewed', '2026-11-23T08:00:00Z', hex(randomblob({})) FROM c",
        PAYLOAD / 2
    )))
    .await?;
    pool.execute(
        "INSERT INTO events VALUES (0, 2, 'other', '2026-11-23T08:00:00Z', 'not subject 1')",
    )
    .await?;
    pool.execute("CREATE INDEX events_user ON events (user_id)")
        .await?;
    pool.close().await;
    Ok(())
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// One side, in its own process: prints its figures as JSON.
pub async fn child(side: &str, db: PathBuf, out: PathBuf) -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let subject = SubjectId::parse("1").map_err(|e| anyhow::anyhow!("{e}"))?;
    let map = lethe_connect::DataMap::parse(MAP).map_err(|e| anyhow::anyhow!("{e}"))?;
    let started = Instant::now();
    let figures = match side {
        "raw" => {
            let pool = AnyPool::connect(&format!("sqlite://{}", db.display())).await?;
            let path = out.join("raw.jsonl");
            let mut w =
                std::io::BufWriter::with_capacity(256 * 1024, std::fs::File::create(&path)?);
            let mut rows = 0u64;
            let mut bytes = 0u64;
            for table in ["users", "events"] {
                let sql = if table == "users" {
                    "SELECT json_object('id', id, 'name', name) FROM users WHERE id = 1"
                } else {
                    "SELECT json_object('id', id, 'user_id', user_id, 'kind', kind, 'at', at, 'payload', payload) FROM events WHERE user_id = 1"
                };
                let mut s = sqlx::query_scalar::<_, String>(sql).fetch(&pool);
                while let Some(line) = s.try_next().await? {
                    w.write_all(line.as_bytes())?;
                    w.write_all(b"\n")?;
                    rows += 1;
                    bytes += line.len() as u64 + 1;
                }
            }
            w.flush()?;
            w.into_inner()
                .map_err(|e| anyhow::anyhow!("{}", e.error()))?
                .sync_all()?;
            serde_json::json!({ "rows": rows, "data_bytes": bytes, "file_bytes": std::fs::metadata(&path)?.len() })
        }
        _ => {
            let systems =
                lethe_server::outbound::systems::Systems::connect(&map, reqwest::Client::new())
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            let path = out.join("lethe.zip.sealed");
            let progress = Arc::new(Mutex::new(vec![]));
            let built = lethe_server::api::exports::build_to_file(
                &systems,
                &subject,
                lethe_server::api::exports::Target {
                    export_id: "exp_bench".into(),
                    created_at: jiff::Timestamp::now().to_string(),
                    path: path.clone(),
                    spool: out.clone(),
                    key: lethe_export::Key::generate(),
                    max_bytes: 1 << 40,
                },
                progress,
                Arc::new(AtomicBool::new(false)),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            let rows: u64 = built.manifest.datasets.iter().map(|d| d.rows).sum();
            let data: u64 = built
                .manifest
                .files
                .iter()
                .filter(|f| f.path.ends_with(".json"))
                .map(|f| f.bytes)
                .sum();
            serde_json::json!({
                "rows": rows,
                "data_bytes": data,
                "zip_bytes": built.bytes,
                "file_bytes": std::fs::metadata(&path)?.len(),
            })
        }
    };
    let mut v = figures;
    v["side"] = side.into();
    v["seconds"] = started.elapsed().as_secs_f64().into();
    v["peak_rss_kb"] = peak_rss_kb().into();
    println!("{v}");
    Ok(())
}
