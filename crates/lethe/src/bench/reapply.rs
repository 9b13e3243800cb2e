//! `lethe bench reapply`: reapply after a restore — the subject ids of a
//! restored system read, pseudonymised and matched against the erasure
//! tombstones — against the raw scan of the same ids (`SELECT DISTINCT`
//! streamed, nothing else) on the same database in the same run. Then the
//! real run erases the matched subjects again and verifies.

use anyhow::Context;
use lethe_connect::{DataMap, SqlSystem};
use sqlx::{AnyPool, AssertSqlSafe, Executor};
use std::sync::Arc;
use std::time::Instant;

const MAP: &str = r#"
[[systems]]
name = "restored"
kind = "KIND"
url_env = "LETHE_BENCH_URL"
max_connections = 4
batch_size = 500
[[systems.tables]]
name = "accounts"
owner = "id"
action = "delete"
[[systems.tables]]
name = "devices"
belongs_to = { table = "accounts", columns = ["account_id"], references = ["id"] }
action = "delete"
"#;

fn series(kind: &str, n: u64) -> String {
    match kind {
        "postgres" => format!("generate_series(1, {n}) AS s(g)"),
        "mysql" => format!("(SELECT seq AS g FROM seq_1_to_{n}) AS s"),
        _ => format!(
            "(WITH RECURSIVE c(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM c WHERE g < {n}) SELECT g FROM c) AS s"
        ),
    }
}

fn id_expr(kind: &str) -> &'static str {
    match kind {
        "mysql" => "CONCAT('acct-', g)",
        _ => "'acct-' || g",
    }
}

async fn platform_db(kind: &str, dir: &std::path::Path) -> anyhow::Result<String> {
    let db = format!("lethe_bench_reapply_{kind}");
    Ok(match kind {
        "postgres" | "mysql" => {
            let (admin, url) = if kind == "postgres" {
                (
                    "postgres://postgres@127.0.0.1:5432/postgres",
                    format!("postgres://postgres@127.0.0.1:5432/{db}"),
                )
            } else {
                (
                    "mysql://root@127.0.0.1:3306/test",
                    format!("mysql://root@127.0.0.1:3306/{db}"),
                )
            };
            let a = AnyPool::connect(admin).await?;
            a.execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db}")))
                .await?;
            a.execute(AssertSqlSafe(format!("CREATE DATABASE {db}")))
                .await?;
            a.close().await;
            url
        }
        "sqlite" => format!("sqlite://{}?mode=rwc", dir.join("platform.db").display()),
        other => anyhow::bail!("--kind must be postgres, mysql or sqlite, not {other}"),
    })
}

pub async fn run(kind: &str, ids: u64, erased: u64) -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    anyhow::ensure!(erased * 2 <= ids, "--erased must be at most half of --ids");
    let dir = tempfile::tempdir()?;
    let url = platform_db(kind, dir.path()).await?;
    let pool = AnyPool::connect(&url).await?;
    eprintln!("{kind}: loading {ids} accounts (and a device each) ...");
    let t = Instant::now();
    let text = if kind == "mysql" {
        "VARCHAR(32)"
    } else {
        "TEXT"
    };
    pool.execute(AssertSqlSafe(format!(
        "CREATE TABLE accounts (id {text} PRIMARY KEY, nickname {text})"
    )))
    .await?;
    pool.execute(AssertSqlSafe(format!(
        "CREATE TABLE devices (id BIGINT PRIMARY KEY, account_id {text}, model {text})"
    )))
    .await?;
    pool.execute("CREATE INDEX devices_account ON devices (account_id)")
        .await?;
    let s = series(kind, ids);
    let idx = id_expr(kind);
    pool.execute(AssertSqlSafe(format!(
        "INSERT INTO accounts (id, nickname) SELECT {idx}, 'nick' FROM {s}"
    )))
    .await?;
    pool.execute(AssertSqlSafe(format!(
        "INSERT INTO devices (id, account_id, model) SELECT g, {idx}, 'phone' FROM {s}"
    )))
    .await?;
    if kind == "postgres" {
        pool.execute("ANALYZE").await?;
    }
    eprintln!("{kind}: loaded in {:.1} s", t.elapsed().as_secs_f64());

    // Lethe's store (SQLite) with the tombstones of `erased` accounts spread
    // over the range, as erasures since the backup left them.
    let store_path = dir.path().join("lethe.db");
    let store = lethe_store::Store::open(&store_path, Default::default()).await?;
    let secrets = lethe_server::secrets::Secrets::load_or_create(dir.path())?;
    let signer = lethe_server::secrets::load_or_create_signer(dir.path())?;
    let p = secrets.pseudonymizer();
    let step = ids / erased.max(1);
    let chosen: Vec<String> = (0..erased)
        .map(|k| format!("acct-{}", 1 + k * step))
        .collect();
    let now = jiff::Timestamp::now();
    {
        let raw = AnyPool::connect(&format!("sqlite://{}", store_path.display())).await?;
        for chunk in chosen.chunks(500) {
            let values: Vec<String> = chunk
                .iter()
                .map(|id| {
                    format!(
                        "('restored', '{}', 'bench-case', NULL, {})",
                        p.of(id),
                        now.as_millisecond()
                    )
                })
                .collect();
            raw.execute(AssertSqlSafe(format!(
                "INSERT INTO erased_subjects (system, subject_hash, case_id, principal, erased_at) VALUES {}",
                values.join(",")
            )))
            .await?;
        }
        raw.close().await;
    }
    let since = now
        .checked_sub(jiff::SignedDuration::from_hours(1))
        .context("time")?;

    // Baseline: the ids streamed out of the database, nothing else.
    let t = Instant::now();
    let raw_n = {
        use futures_util::TryStreamExt;
        let mut n = 0u64;
        let mut rows =
            sqlx::query("SELECT DISTINCT id FROM accounts WHERE id IS NOT NULL").fetch(&pool);
        while let Some(r) = rows.try_next().await? {
            use sqlx::Row;
            let _: String = r.try_get(0)?;
            n += 1;
        }
        n
    };
    let t_raw = t.elapsed();

    let map = DataMap::parse(&MAP.replace("KIND", kind))?;
    let sys = SqlSystem::connect(&map.systems[0], &url).await?;
    let systems = Arc::new(lethe_server::outbound::systems::Systems::from_sql(vec![
        sys,
    ]));
    let deps = lethe_server::worker::reapply::Deps {
        store: &store,
        datamap: &map,
        systems,
        secrets: &secrets,
        signer: &signer,
    };
    let clock = jiff::Timestamp::now;
    let mut req = lethe_server::worker::reapply::Request {
        system: "restored".into(),
        since,
        dry_run: true,
        platform: None,
    };
    let t = Instant::now();
    let dry = lethe_server::worker::reapply::run(&deps, "reapply-bench0001", &req, &clock)
        .await
        .map_err(|f| anyhow::Error::msg(f.error))?;
    let t_dry = t.elapsed();
    anyhow::ensure!(
        dry.scanned == ids && dry.matched == erased,
        "dry run: scanned {} matched {}, expected {ids} and {erased}",
        dry.scanned,
        dry.matched
    );
    req.dry_run = false;
    let t = Instant::now();
    let full = lethe_server::worker::reapply::run(&deps, "reapply-bench0002", &req, &clock)
        .await
        .map_err(|f| anyhow::Error::msg(f.error))?;
    let t_full = t.elapsed();
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM accounts")
        .fetch_one(&pool)
        .await?;
    anyhow::ensure!(
        full.erased == erased && full.verified && left == i64::try_from(ids - erased)?,
        "full run: erased {} verified {} left {left}",
        full.erased,
        full.verified
    );
    let rate = |n: u64, d: std::time::Duration| n as f64 / d.as_secs_f64();
    println!(
        "{kind}: {ids} subject ids in the restored system, {erased} of them erased since the backup"
    );
    println!(
        "  baseline (SELECT DISTINCT id, streamed):        {:>10.0} ids/s  ({:.2} s, {raw_n} ids)",
        rate(raw_n, t_raw),
        t_raw.as_secs_f64()
    );
    println!(
        "  lethe dry run (scan + pseudonyms + match):      {:>10.0} ids/s  ({:.2} s)",
        rate(dry.scanned, t_dry),
        t_dry.as_secs_f64()
    );
    println!(
        "  lethe reapply (+ erase {erased} again, verified):  {:>10.0} ids/s  ({:.2} s, {} rows)",
        rate(full.scanned, t_full),
        t_full.as_secs_f64(),
        full.rows
    );
    println!(
        "  ratio: the dry run takes {:.2}x the raw scan's time; target >= 200000 ids/s",
        t_dry.as_secs_f64() / t_raw.as_secs_f64()
    );
    pool.close().await;
    if kind != "sqlite" {
        let db = format!("lethe_bench_reapply_{kind}");
        let admin = if kind == "postgres" {
            "postgres://postgres@127.0.0.1:5432/postgres"
        } else {
            "mysql://root@127.0.0.1:3306/test"
        };
        let a = AnyPool::connect(admin).await?;
        let force = if kind == "postgres" {
            " WITH (FORCE)"
        } else {
            ""
        };
        a.execute(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {db}{force}"
        )))
        .await?;
    }
    Ok(())
}
