//! `lethe bench purge`: a purge of 100,000 accounts on PostgreSQL, end to
//! end — `POST /v1/purges` to a `lethe serve` of its own (store on
//! PostgreSQL too) until every account is checked (blocker and asset
//! rules), erased in every table, verified, audited one event each and the
//! report signed — against the erasure engine alone (`erase_verify_batch`
//! on the same database, a disjoint set of as many accounts) in the same
//! run.

use anyhow::{Context, bail};
use lethe_connect::{BatchItem, DataMap, SqlSystem};
use lethe_domain::SubjectId;
use serde_json::{Value, json};
use sqlx::{AnyPool, AssertSqlSafe, Executor};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

const RULES: &str = r#"
[[blockers]]
system = "bench"
code = "open_order"
category = "unfinished_order"
query = "SELECT id FROM orders WHERE user_id = CAST($1 AS BIGINT) AND total < 0"
message_zh = "有未完成的订单"
message_en = "an order is not finished"

[[assets]]
system = "bench"
kind = "balance"
query = "SELECT 'wallet' AS id, 'balance' AS label, total AS amount_minor FROM orders WHERE user_id = CAST($1 AS BIGINT) AND total < 0"
"#;

struct Serve {
    child: std::process::Child,
    dbs: Vec<String>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for db in &self.dbs {
            let _ = Command::new("psql")
                .args([ADMIN, "-q", "-c"])
                .arg(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

async fn fresh_db(admin: &AnyPool, name: &str) -> anyhow::Result<String> {
    admin
        .execute(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .await?;
    admin
        .execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await?;
    Ok(format!("postgres://postgres@127.0.0.1:5432/{name}"))
}

pub async fn run(subjects: u64) -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir()?;
    let admin = AnyPool::connect(ADMIN).await?;
    let platform_url = fresh_db(&admin, "lethe_bench_purge_platform").await?;
    let store_url = fresh_db(&admin, "lethe_bench_purge_store").await?;
    admin.close().await;
    let users = subjects * 2;
    let pool = AnyPool::connect(&platform_url).await?;
    eprintln!("postgres: loading {users} users x 20 rows in 8 tables ...");
    let t = Instant::now();
    super::erase::load(&pool, "postgres", users).await?;
    eprintln!("postgres: loaded in {:.1} s", t.elapsed().as_secs_f64());

    let map_text = format!(
        "{}{RULES}",
        super::erase::MAP
            .replace("KIND", "postgres")
            .replace("BATCH", "500")
    );
    let map_path = dir.path().join("datamap.toml");
    std::fs::write(&map_path, &map_text)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let cfg = dir.path().join("lethe.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\ndatamap = \"{}\"\n[store]\nurl = \"{store_url}\"\n",
            dir.path().display(),
            map_path.display()
        ),
    )?;
    let exe = std::env::current_exe()?;
    let key = Command::new(&exe)
        .args(["apikey", "create", "--name", "bench", "--config"])
        .arg(&cfg)
        .output()?;
    if !key.status.success() {
        bail!("apikey create: {}", String::from_utf8_lossy(&key.stderr));
    }
    let key = String::from_utf8(key.stdout)?.trim().to_owned();
    let log = std::fs::File::create(dir.path().join("lethe.log"))?;
    let child = Command::new(&exe)
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("LETHE_BENCH_URL", &platform_url)
        .env(
            "LETHE_LOG",
            std::env::var("LETHE_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()?;
    let serve = Serve {
        child,
        dbs: vec![
            "lethe_bench_purge_platform".into(),
            "lethe_bench_purge_store".into(),
        ],
    };
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let until = Instant::now() + Duration::from_secs(60);
    while http
        .get(format!("{url}/readyz"))
        .send()
        .await
        .map(|r| !r.status().is_success())
        .unwrap_or(true)
    {
        if Instant::now() > until {
            bail!(
                "lethe serve did not become ready; see {}",
                dir.path().join("lethe.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Engine only: the odd users, erased and verified in batches of 500.
    let map = DataMap::parse(&map_text)?;
    let engine = SqlSystem::connect(&map.systems[0], &platform_url).await?;
    let odd: Vec<u64> = (0..subjects).map(|k| 1 + 2 * k).collect();
    let t = Instant::now();
    for chunk in odd.chunks(500) {
        let items: Vec<BatchItem> = chunk
            .iter()
            .map(|u| BatchItem {
                case_id: format!("engine-{u}"),
                subject: SubjectId::parse(&u.to_string())
                    .unwrap_or_else(|_| unreachable!("digits are a valid subject id")),
            })
            .collect();
        engine
            .erase_verify_batch(&items, jiff::Timestamp::now())
            .await?;
    }
    let t_engine = t.elapsed();
    drop(engine);

    // End to end: the even users, one purge request until it is done.
    let even: Vec<String> = (0..subjects).map(|k| (2 + 2 * k).to_string()).collect();
    let t = Instant::now();
    let r = http
        .post(format!("{url}/v1/purges"))
        .bearer_auth(&key)
        .header("idempotency-key", uuid::Uuid::new_v4().to_string())
        .json(&json!({"legal_basis": "PIPL Art. 47: accounts dormant for 3 years; retention ended", "subjects": even}))
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await?;
    if status.as_u16() != 202 {
        bail!("POST /v1/purges: {status} {v}");
    }
    let t_accepted = t.elapsed();
    let id = v["id"].as_str().context("purge id")?.to_owned();
    let done = loop {
        let v: Value = http
            .get(format!("{url}/v1/purges/{id}"))
            .bearer_auth(&key)
            .send()
            .await?
            .json()
            .await?;
        if v["state"] == "done" || v["state"] == "failed" {
            break v;
        }
        if t.elapsed() > Duration::from_secs(3600) {
            bail!("the purge did not finish within an hour: {v}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let t_e2e = t.elapsed();
    if done["state"] != "done" || done["erased"].as_u64() != Some(subjects) {
        bail!("the purge ended {done}");
    }
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&pool)
        .await?;
    if left != 0 {
        bail!("{left} users left after both erasures");
    }
    let report: Value = http
        .get(format!("{url}/v1/purges/{id}/report"))
        .bearer_auth(&key)
        .send()
        .await?
        .json()
        .await?;
    if std::env::var("LETHE_BENCH_LOG").is_ok() {
        let _ = std::fs::copy(dir.path().join("lethe.log"), "/tmp/lethe-bench-purge.log");
    }
    let entries = report["report"]["subjects"]
        .as_array()
        .map_or(0, |a| a.len());
    pool.close().await;
    drop(serve);

    let rate = |d: Duration| subjects as f64 / d.as_secs_f64();
    println!(
        "postgres: {users} users (20 rows each in 8 tables); {subjects} erased by the engine alone, {subjects} by one purge"
    );
    println!(
        "  engine only (erase + record + verify, batches of 500): {:>8.0} subjects/s  ({:.2} s)",
        rate(t_engine),
        t_engine.as_secs_f64()
    );
    println!(
        "  purge end to end (request accepted in {:.2} s; checks, erasure, verification, audit, signed report of {entries} entries): {:>8.0} subjects/s  ({:.2} s)",
        t_accepted.as_secs_f64(),
        rate(t_e2e),
        t_e2e.as_secs_f64()
    );
    println!(
        "  ratio: the purge takes {:.2}x the engine's time (target <= 2x, >= 1000 subjects/s)",
        t_e2e.as_secs_f64() / t_engine.as_secs_f64()
    );
    Ok(())
}
