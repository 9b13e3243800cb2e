//! `lethe bench instances` and `lethe bench soak`: several `lethe demo`
//! processes on one PostgreSQL store, driven over HTTP from this process
//! (a second process, as a platform would be).

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sqlx::Connection;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const WEEK_AND_A_MINUTE: i64 = 7 * 86_400 + 60;
/// How long an instance may take to become ready.
const READY_WITHIN: Duration = Duration::from_secs(180);
/// Each request's time limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Instances of `lethe demo` sharing one fresh PostgreSQL database and one
/// data directory; stopped (and the database dropped) on drop.
struct Cluster {
    children: Vec<Child>,
    urls: Vec<String>,
    key: String,
    db_url: String,
    admin_url: String,
    db_name: String,
    dir: tempfile::TempDir,
    threads: Option<u16>,
}

impl Cluster {
    /// `admin_url` "sqlite": the store is the data directory's own SQLite
    /// file; else a fresh database on that PostgreSQL server.
    /// `threads`: each instance's runtime threads (`--worker-threads`), or
    /// its default.
    async fn start(
        admin_url: &str,
        n: usize,
        users: u32,
        threads: Option<u16>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let (db_url, db_name, admin) = if admin_url == "sqlite" {
            (
                format!("sqlite://{}", dir.path().join("lethe.db").display()),
                String::new(),
                String::new(),
            )
        } else {
            let db_name = format!("lethe_bench_{}", uuid::Uuid::new_v4().simple());
            let mut admin = sqlx::PgConnection::connect(admin_url)
                .await
                .with_context(|| "connecting to PostgreSQL (set --pg-url)".to_string())?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
                .execute(&mut admin)
                .await?;
            let base = admin_url.rsplit_once('/').map(|(b, _)| b).context(
                "--pg-url must name a database, like postgres://postgres@127.0.0.1:5432/postgres",
            )?;
            (format!("{base}/{db_name}"), db_name, admin_url.to_owned())
        };
        let mut c = Cluster {
            children: vec![],
            urls: vec![],
            key: String::new(),
            db_url,
            admin_url: admin,
            db_name,
            dir,
            threads,
        };
        // The first instance makes the keys and Demo Mart; the others join.
        for i in 0..n {
            c.spawn(i, users).await?;
        }
        c.key = std::fs::read_to_string(c.dir.path().join("demo-api-key"))?
            .trim()
            .to_owned();
        Ok(c)
    }

    async fn spawn(&mut self, i: usize, users: u32) -> anyhow::Result<()> {
        let ready = self.dir.path().join(format!("ready-{i}.json"));
        let _ = std::fs::remove_file(&ready);
        let log = std::fs::File::create(self.dir.path().join(format!("lethe-{i}.log")))?;
        let child = Command::new(std::env::current_exe()?)
            .args(["demo", "--listen", "127.0.0.1:0", "--users"])
            .arg(users.to_string())
            .arg("--data-dir")
            .arg(self.dir.path())
            .arg("--ready-file")
            .arg(&ready)
            .args(if self.db_name.is_empty() {
                vec![]
            } else {
                vec!["--store-url", self.db_url.as_str()]
            })
            .args(["--rate", "1000000"])
            .args(["--lease-secs", "5"])
            .args(
                self.threads
                    .map(|t| vec!["--worker-threads".to_owned(), t.to_string()])
                    .unwrap_or_default(),
            )
            // The timers of `lethe serve`, not the demo's quick ones: what
            // an idle instance spends is part of what instances cost.
            .args([
                "--timer-interval-ms",
                "1000",
                "--purge-interval-secs",
                "300",
            ])
            .env("LETHE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()?;
        self.children.push(child);
        let until = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(t) = std::fs::read_to_string(&ready)
                && let Ok(v) = serde_json::from_str::<Value>(&t)
            {
                self.urls
                    .push(v["url"].as_str().context("ready file")?.to_owned());
                return Ok(());
            }
            if Instant::now() > until {
                bail!(
                    "instance {i} did not become ready; see {}",
                    self.dir.path().join(format!("lethe-{i}.log")).display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn mart(&self) -> PathBuf {
        self.dir.path().join("demo-mart.db")
    }

    fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if self.db_name.is_empty() {
            return;
        }
        // The children are gone: the database can go too.
        let _ = Command::new("psql")
            .args([
                self.admin_url.as_str(),
                "-q",
                "-c",
                &format!("DROP DATABASE IF EXISTS {}", self.db_name),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Users of Demo Mart with nothing that blocks and no money to settle.
async fn clear_users(mart: &Path, n: usize) -> anyhow::Result<Vec<i64>> {
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", mart.display())).await?;
    Ok(sqlx::query_scalar("SELECT id FROM users u WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id AND o.status IN ('pending','paid','shipping')) AND NOT EXISTS (SELECT 1 FROM bank_cards b WHERE b.user_id = u.id) AND NOT EXISTS (SELECT 1 FROM wallets w WHERE w.user_id = u.id AND w.balance_fen > 0) ORDER BY id LIMIT ?1")
        .bind(i64::try_from(n)?)
        .fetch_all(&mut conn)
        .await?)
}

/// HTTP requests sent by this process.
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// A platform's calls to one instance.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    url: String,
    key: String,
}

impl Api {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        REQUESTS.fetch_add(1, Ordering::Relaxed);
        let url = format!("{}{path}", self.url);
        // The end user's address, as a platform forwards it: each case's
        // caller has its own (one address for every simulated user would
        // soon meet the per-address limit on one-time codes).
        let h = path
            .bytes()
            .fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(b)));
        let client = format!("10.{}.{}.{}", (h >> 16) & 255, (h >> 8) & 255, h & 255);
        let rb = match method {
            "GET" => self.http.get(url),
            _ => self
                .http
                .post(url)
                .header("lethe-client-address", client)
                .header("content-type", "application/json")
                .header("idempotency-key", uuid::Uuid::new_v4().to_string())
                .body(body.unwrap_or(json!({})).to_string()),
        };
        let r = rb
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|e| format!("{method} {path}: {}", e.without_url()))?;
        let status = r.status().as_u16();
        let text = r
            .text()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        if !(200..300).contains(&status) {
            let v = serde_json::from_str::<Value>(&text).unwrap_or(Value::Null);
            let mut what = v["title"].as_str().unwrap_or_default().to_owned();
            if let Some(d) = v["detail"].as_str() {
                what = format!("{what}: {}", d.chars().take(160).collect::<String>());
            }
            return Err(format!("{method} {} -> {status} {what}", shape(path)));
        }
        serde_json::from_str(&text).map_err(|e| format!("{method} {path}: {e}"))
    }

    async fn state(&self, id: &str) -> Result<String, String> {
        let v = self.call("GET", &format!("/v1/cases/{id}"), None).await?;
        Ok(v["state"].as_str().unwrap_or_default().to_owned())
    }

    /// The code the dev outbox holds for a case (sent just before).
    async fn code(&self, id: &str) -> Result<String, String> {
        let outbox = self
            .call("GET", &format!("/v1/dev/outbox/{id}"), None)
            .await?;
        let body = outbox
            .as_array()
            .and_then(|a| a.last())
            .and_then(|m| m["body"].as_str())
            .ok_or("no code in the outbox")?
            .to_owned();
        body.split(|c: char| !c.is_ascii_digit())
            .find(|w| w.len() == 6)
            .map(str::to_owned)
            .ok_or_else(|| "no code in the message".to_owned())
    }

    /// The holder changes their mind during cooling-off: one verified step.
    async fn restore(&self, id: &str) -> Result<(), String> {
        self.call(
            "POST",
            &format!("/v1/cases/{id}/verification/sms/send"),
            None,
        )
        .await?;
        let code = self.code(id).await?;
        self.call(
            "POST",
            &format!("/v1/cases/{id}/restore"),
            Some(json!({"code": code})),
        )
        .await
        .map(|_| ())
    }

    /// A whole self-service cancellation up to its cooling-off.
    async fn to_cooling_off(&self, subject: i64) -> Result<String, String> {
        let v = self
            .call(
                "POST",
                "/v1/cases",
                Some(json!({"subject_id": subject.to_string(), "channel": "app"})),
            )
            .await?;
        let id = v["id"].as_str().ok_or("no case id")?.to_owned();
        self.call(
            "POST",
            &format!("/v1/cases/{id}/verification/sms/send"),
            None,
        )
        .await?;
        let code = self.code(&id).await?;
        self.call(
            "POST",
            &format!("/v1/cases/{id}/verification/sms/verify"),
            Some(json!({"code": code})),
        )
        .await?;
        let checks = self
            .call("POST", &format!("/v1/cases/{id}/checks"), None)
            .await?;
        for c in checks["consequences"].as_array().into_iter().flatten() {
            self.call(
                "POST",
                &format!("/v1/cases/{id}/acknowledgements"),
                Some(
                    json!({"consequence_id": c["id"], "version": c["version"], "locale": "zh-CN"}),
                ),
            )
            .await?;
        }
        for a in checks["assets"].as_array().into_iter().flatten() {
            let opts = a["options"].as_array().cloned().unwrap_or_default();
            let option = if opts.contains(&json!("forfeit")) {
                json!("forfeit")
            } else {
                opts.first().cloned().unwrap_or(json!("forfeit"))
            };
            self.call(
                "POST",
                &format!("/v1/cases/{id}/settlements"),
                Some(json!({"asset_id": a["id"], "option": option, "locale": "zh-CN"})),
            )
            .await?;
        }
        let until = Instant::now() + Duration::from_secs(60);
        while self.state(&id).await? != "consequences_acknowledged" {
            if Instant::now() > until {
                return Err("settlement did not finish within 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.call("POST", &format!("/v1/cases/{id}/confirm"), None)
            .await?;
        Ok(id)
    }
}

/// A path with its ids replaced, for error counts by kind.
fn shape(path: &str) -> String {
    path.split('/')
        .map(|p| if p.len() >= 32 { "{id}" } else { p })
        .collect::<Vec<_>>()
        .join("/")
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(64)
        .build()?)
}

fn apis(c: &Cluster) -> anyhow::Result<Vec<Api>> {
    let http = client()?;
    Ok(c.urls
        .iter()
        .map(|u| Api {
            http: http.clone(),
            url: u.clone(),
            key: c.key.clone(),
        })
        .collect())
}

async fn advance_all(apis: &[Api]) -> Result<(), String> {
    for a in apis {
        a.call(
            "POST",
            "/v1/dev/clock/advance",
            Some(json!({"seconds": WEEK_AND_A_MINUTE})),
        )
        .await?;
    }
    Ok(())
}

async fn count(pg: &mut sqlx::PgConnection, sql: &'static str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(sql).fetch_one(pg).await?)
}

/// Peak and current resident memory of a process, in MB.
fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Cases per second with each number of instances: the API steps of every
/// case (create, verify, checks, consent, confirm), spread round-robin over
/// the instances, then the erasures their workers share. 1 instance is the
/// baseline of the ratios.
pub async fn instances(
    pg_url: &str,
    counts: &[usize],
    cases: usize,
    concurrency: usize,
    rounds: usize,
    threads: Option<u16>,
) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "bench instances: {cases} cases per run, {concurrency} concurrent clients, {cores} cores, PostgreSQL store, {rounds} round(s), runtime threads per instance: {}",
        threads.map_or(
            "its share of the cores (cores / instances, at least 1)".to_owned(),
            |t| t.to_string()
        )
    );
    let share = |n: usize| -> u16 { u16::try_from((cores / n.max(1)).max(1)).unwrap_or(u16::MAX) };
    // Round r runs the counts in order when r is even, in reverse when odd.
    let order: Vec<usize> = (0..rounds)
        .flat_map(|r| {
            let mut c = counts.to_vec();
            if r % 2 == 1 {
                c.reverse();
            }
            c
        })
        .collect();
    let mut rows = vec![];
    for &n in &order {
        let per_instance = threads.unwrap_or_else(|| share(n));
        let cluster = Cluster::start(
            pg_url,
            n,
            u32::try_from(cases * 3 + 1000)?,
            Some(per_instance),
        )
        .await?;
        let apis = apis(&cluster)?;
        let users = clear_users(&cluster.mart(), cases).await?;
        if users.len() < cases {
            bail!("Demo Mart has only {} clear users", users.len());
        }
        let next = Arc::new(AtomicUsize::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let users = Arc::new(users);
        let t = Instant::now();
        let mut tasks = vec![];
        for w in 0..concurrency {
            let (next, errors, users, apis) =
                (next.clone(), errors.clone(), users.clone(), apis.clone());
            tasks.push(tokio::spawn(async move {
                let mut k = w;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(u) = users.get(i) else { return };
                    k += 1;
                    if let Err(e) = apis[k % apis.len()].to_cooling_off(*u).await {
                        errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!("case of user {u}: {e}");
                    }
                }
            }));
        }
        for t in tasks {
            t.await?;
        }
        let api_secs = t.elapsed().as_secs_f64();
        let failed = errors.load(Ordering::Relaxed);
        let confirmed = i64::try_from(cases)? - i64::try_from(failed)?;
        let mut pg = sqlx::PgConnection::connect(&cluster.db_url).await?;
        let t = Instant::now();
        advance_all(&apis).await.map_err(anyhow::Error::msg)?;
        let until = Instant::now() + Duration::from_secs(600);
        loop {
            let erased =
                count(&mut pg, "SELECT COUNT(*) FROM cases WHERE state = 'erased'").await?;
            if erased >= confirmed {
                break;
            }
            if Instant::now() > until {
                bail!("only {erased} of {confirmed} cases erased within 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let erase_secs = t.elapsed().as_secs_f64();
        let events = count(&mut pg, "SELECT COUNT(*) FROM audit_events").await?;
        let rss: Vec<String> = cluster
            .pids()
            .iter()
            .map(|p| format!("{:.0}", rss_mb(*p)))
            .collect();
        let total = api_secs + erase_secs;
        println!(
            "  {n} instance(s) x {per_instance} thread(s): API steps {:.1} cases/s ({api_secs:.1} s), erasure {:.1} cases/s ({erase_secs:.1} s), whole case {:.1} cases/s, {events} audit events ({:.0}/s), {failed} error(s), RSS MB per instance [{}]",
            cases as f64 / api_secs,
            confirmed as f64 / erase_secs,
            confirmed as f64 / total,
            events as f64 / total,
            rss.join(", ")
        );
        rows.push((
            n,
            cases as f64 / api_secs,
            confirmed as f64 / erase_secs,
            confirmed as f64 / total,
            failed,
        ));
        drop(pg);
        drop(cluster);
    }
    let medians = medians_by_count(counts, &rows);
    if let Some(&(base_n, base_api, base_erase, base_total)) = medians.first() {
        println!(
            "ratios against {base_n} instance(s) (the baseline, same run{}):",
            if rounds > 1 {
                ", medians of each count's runs"
            } else {
                ""
            }
        );
        for (n, api, erase, total) in &medians {
            println!(
                "  {n} instance(s): API {:.2}x, erasure {:.2}x, whole case {:.2}x",
                api / base_api,
                erase / base_erase,
                total / base_total
            );
        }
    }
    if rows.iter().any(|r| r.4 > 0) {
        bail!("some cases failed (see above)");
    }
    Ok(())
}

/// Each count's median API, erasure and whole-case rates over its runs,
/// in the order the counts were given.
fn medians_by_count(
    counts: &[usize],
    rows: &[(usize, f64, f64, f64, u64)],
) -> Vec<(usize, f64, f64, f64)> {
    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => 0.0,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }
    let mut seen = vec![];
    for &n in counts {
        if seen.contains(&n) {
            continue;
        }
        seen.push(n);
    }
    seen.into_iter()
        .map(|n| {
            let of = |f: fn(&(usize, f64, f64, f64, u64)) -> f64| {
                median(rows.iter().filter(|r| r.0 == n).map(f).collect())
            };
            (n, of(|r| r.1), of(|r| r.2), of(|r| r.3))
        })
        .collect()
}

/// Mixed traffic for `minutes` against `n` instances from this process:
/// whole cancellations, withdrawals during cooling-off, reads of cases,
/// timelines and the audit log, and a week of demo clock every 30 s so
/// that erasures run all along. Prints errors, throughput and each
/// instance's memory every 30 s, then checks that every confirmed case was
/// erased and that the audit log has no gap.
pub async fn soak(pg_url: &str, n: usize, minutes: u64, concurrency: usize) -> anyhow::Result<()> {
    // Half the operations start a cancellation, each with a user of its
    // own: enough for 160 operations/s all along (twice the rate seen on
    // this 2-core machine). About three in five of Demo Mart's users are
    // clear. A client that finds none left stops starting cases, and the
    // run is reported as not measuring what it should.
    let users_needed = usize::try_from(minutes)? * 60 * 80 + 1000;
    let cluster = Cluster::start(pg_url, n, u32::try_from(users_needed * 2)?, None).await?;
    let apis = apis(&cluster)?;
    let users = Arc::new(clear_users(&cluster.mart(), users_needed).await?);
    println!(
        "bench soak: {n} instance(s), {concurrency} clients, {minutes} min of mixed traffic, {} clear users",
        users.len()
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Each client operation holds this shared; moving the demo clock takes
    // it exclusively, so a week passes between a user's visits, never in
    // the middle of one (a code sent before the jump would have expired).
    let clock = Arc::new(tokio::sync::RwLock::new(()));
    let next = Arc::new(AtomicUsize::new(0));
    let ops = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<
        String,
        u64,
    >::new()));
    let confirmed = Arc::new(AtomicU64::new(0));
    let withdrawn = Arc::new(AtomicU64::new(0));
    let starved = Arc::new(AtomicU64::new(0));
    let mut tasks = vec![];
    for w in 0..concurrency {
        let clock = clock.clone();
        let starved = starved.clone();
        let (stop, next, ops, errors, users, apis, confirmed, withdrawn) = (
            stop.clone(),
            next.clone(),
            ops.clone(),
            errors.clone(),
            users.clone(),
            apis.clone(),
            confirmed.clone(),
            withdrawn.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut recent: Vec<String> = vec![];
            let mut k: usize = w;
            let fail = |e: String| {
                let mut m = errors.lock().unwrap_or_else(|p| p.into_inner());
                *m.entry(e).or_default() += 1;
            };
            while !stop.load(Ordering::Relaxed) {
                let _visit = clock.read().await;
                k = k.wrapping_add(1);
                let api = &apis[k % apis.len()];
                let roll = rand::random::<u8>() % 20;
                let r = match roll {
                    // A whole cancellation; one in ten is withdrawn.
                    0..=9 => {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(u) = users.get(i) else {
                            starved.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        };
                        match api.to_cooling_off(*u).await {
                            Ok(id) if roll == 0 => api.restore(&id).await.map(|_| {
                                withdrawn.fetch_add(1, Ordering::Relaxed);
                            }),
                            Ok(id) => {
                                confirmed.fetch_add(1, Ordering::Relaxed);
                                recent.push(id);
                                if recent.len() > 50 {
                                    recent.remove(0);
                                }
                                Ok(())
                            }
                            Err(e) => Err(e),
                        }
                    }
                    // Reads a platform and a user make.
                    10..=14 => match recent.last() {
                        Some(id) => api
                            .call("GET", &format!("/v1/cases/{id}"), None)
                            .await
                            .map(|_| ()),
                        None => api
                            .call("GET", "/v1/audit/public-key", None)
                            .await
                            .map(|_| ()),
                    },
                    15..=17 => match recent.first() {
                        Some(id) => api
                            .call("GET", &format!("/v1/cases/{id}/timeline"), None)
                            .await
                            .map(|_| ()),
                        None => Ok(()),
                    },
                    // An operator signs a tree head; a verifier reads it.
                    _ if recent.is_empty() => Ok(()),
                    _ => match api.call("POST", "/v1/audit/tree-heads", None).await {
                        Ok(_) => api
                            .call("GET", "/v1/audit/tree-head", None)
                            .await
                            .map(|_| ()),
                        Err(e) => Err(e),
                    },
                };
                ops.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = r {
                    fail(e);
                }
            }
        }));
    }
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(minutes * 60);
    let mut last_ops = 0u64;
    let mut last = Instant::now();
    let mut pg = sqlx::PgConnection::connect(&cluster.db_url).await?;
    println!("   t(s)   ops/s  req/s  errors  confirmed  erased  RSS MB per instance");
    let mut last_req = REQUESTS.load(Ordering::Relaxed);
    let mut next_advance = t0 + Duration::from_secs(30);
    let mut peak = vec![0f64; n];
    // (seconds since start, operations/s in the last interval, RSS MB per
    // instance) every 30 s, for the decay and memory checks at the end.
    let mut samples: Vec<(f64, f64, Vec<f64>)> = vec![];
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if Instant::now() >= next_advance {
            next_advance += Duration::from_secs(30);
            let advanced = {
                let _jump = clock.write().await;
                advance_all(&apis).await
            };
            if let Err(e) = advanced {
                let mut m = errors.lock().unwrap_or_else(|p| p.into_inner());
                *m.entry(e).or_default() += 1;
            }
            let done = ops.load(Ordering::Relaxed);
            let errs: u64 = errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .sum();
            let erased =
                count(&mut pg, "SELECT COUNT(*) FROM cases WHERE state = 'erased'").await?;
            let rss: Vec<f64> = cluster.pids().iter().map(|p| rss_mb(*p)).collect();
            for (p, r) in peak.iter_mut().zip(&rss) {
                *p = p.max(*r);
            }
            let req = REQUESTS.load(Ordering::Relaxed);
            let rate = (done - last_ops) as f64 / last.elapsed().as_secs_f64();
            samples.push((t0.elapsed().as_secs_f64(), rate, rss.clone()));
            println!(
                "  {:5.0}  {:6.1}  {:5.0}  {errs:6}  {:9}  {erased:6}  [{}]",
                t0.elapsed().as_secs_f64(),
                rate,
                (req - last_req) as f64 / last.elapsed().as_secs_f64(),
                confirmed.load(Ordering::Relaxed),
                rss.iter()
                    .map(|r| format!("{r:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            last_ops = done;
            last_req = req;
            last = Instant::now();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    let secs = t0.elapsed().as_secs_f64();
    // Whatever is still cooling off erases now.
    advance_all(&apis).await.map_err(anyhow::Error::msg)?;
    let want = i64::try_from(confirmed.load(Ordering::Relaxed))?;
    let until = Instant::now() + Duration::from_secs(300);
    let erased = loop {
        let erased = count(&mut pg, "SELECT COUNT(*) FROM cases WHERE state = 'erased'").await?;
        if erased >= want || Instant::now() > until {
            break erased;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Every event in the tree (within the maximum merge delay).
    let until = Instant::now() + lethe_store::MAX_MERGE_DELAY;
    while count(&mut pg, "SELECT COUNT(*) FROM audit_pending").await? > 0 && Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let queued = count(&mut pg, "SELECT COUNT(*) FROM audit_pending").await?;
    let events = count(&mut pg, "SELECT COUNT(*) FROM audit_events").await?;
    let max_seq = count(&mut pg, "SELECT COALESCE(MAX(seq), 0) FROM audit_events").await?;
    let failed_cases = count(&mut pg, "SELECT COUNT(*) FROM cases WHERE state = 'failed'").await?;
    let dead_jobs = count(&mut pg, "SELECT COUNT(*) FROM jobs WHERE state = 'dead'").await?;
    let taken_over = count(&mut pg, "SELECT COUNT(*) FROM jobs WHERE attempts > 1").await?;
    let errors = errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let total_errors: u64 = errors.values().sum();
    let total_ops = ops.load(Ordering::Relaxed);
    println!(
        "summary: {total_ops} operations ({} HTTP requests, {:.0}/s) in {secs:.0} s ({:.1} operations/s), {total_errors} error(s) (target 0); {want} cases confirmed, {erased} erased, {} withdrawn, {failed_cases} failed; {dead_jobs} dead job(s), {taken_over} job(s) claimed more than once; audit log {events} events, highest seq {max_seq} ({}); peak RSS MB per instance [{}]",
        REQUESTS.load(Ordering::Relaxed),
        REQUESTS.load(Ordering::Relaxed) as f64 / secs,
        total_ops as f64 / secs,
        withdrawn.load(Ordering::Relaxed),
        if events == max_seq { "no gap" } else { "GAP" },
        peak.iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (e, n) in &errors {
        println!("  error x{n}: {e}");
    }
    // Decay: operations/s over the last 5 minutes against minutes 2 to 5;
    // memory: each instance's last RSS against its RSS at minute 5.
    let mean = |xs: Vec<f64>| {
        if xs.is_empty() {
            f64::NAN
        } else {
            xs.iter().sum::<f64>() / xs.len() as f64
        }
    };
    let total = samples.last().map_or(0.0, |s| s.0);
    let early = mean(
        samples
            .iter()
            .filter(|s| s.0 > 60.0 && s.0 <= 300.0)
            .map(|s| s.1)
            .collect(),
    );
    let late = mean(
        samples
            .iter()
            .filter(|s| s.0 > total - 300.0)
            .map(|s| s.1)
            .collect(),
    );
    let decay_ok = minutes < 10 || late >= 0.8 * early;
    println!(
        "throughput: minutes 2-5 {early:.1} ops/s, last 5 minutes {late:.1} ops/s: ratio {:.2} (target >= 0.80{})",
        late / early,
        if minutes < 10 {
            "; needs 10 minutes or more"
        } else {
            ""
        }
    );
    let at5 = samples
        .iter()
        .min_by(|a, b| (a.0 - 300.0).abs().total_cmp(&(b.0 - 300.0).abs()))
        .map(|s| s.2.clone())
        .unwrap_or_default();
    let last_rss = samples.last().map(|s| s.2.clone()).unwrap_or_default();
    let ratios: Vec<f64> = last_rss.iter().zip(&at5).map(|(l, f)| l / f).collect();
    let rss_ok = ratios.iter().all(|r| *r <= 1.2);
    println!(
        "memory: RSS MB at minute 5 [{}], at the end [{}]: ratios [{}] (target <= 1.20)",
        at5.iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", "),
        last_rss
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", "),
        ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let starved = starved.load(Ordering::Relaxed);
    if starved > 0 {
        println!(
            "the clients ran out of clear users ({} seeded) {starved} time(s): the late minutes measured a lighter load; the run does not count",
            users.len()
        );
    }
    println!(
        "RESULT: {}",
        if decay_ok && rss_ok && total_errors == 0 && queued == 0 && starved == 0 {
            "targets met"
        } else {
            "targets NOT met"
        }
    );
    if total_errors > 0
        || erased < want
        || events != max_seq
        || queued > 0
        || failed_cases > 0
        || dead_jobs > 0
    {
        bail!("the soak test found problems (see above)");
    }
    Ok(())
}

/// `lethe bench history`: case intake and whole-case throughput of one
/// instance on an empty store, then on the same kind of store preloaded
/// with `preload` erased cases and their audit events (about ten each),
/// written by bulk SQL; the ratios must stay ≥ 0.85.
pub async fn history(
    kind: &str,
    pg_url: &str,
    preload: u64,
    cases: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    println!(
        "bench history ({kind}): {cases} cases per measure, {concurrency} clients; empty store, then {preload} erased cases preloaded"
    );
    let admin = if kind == "sqlite" { "sqlite" } else { pg_url };
    let mut rows = vec![];
    for preloaded in [false, true] {
        // About three in five of Demo Mart's users are clear (no blocker):
        // seed enough for the eleven per case the measures use.
        let mut cluster = Cluster::start(admin, 1, u32::try_from(cases * 20 + 1000)?, None).await?;
        let users = clear_users(&cluster.mart(), cases * 11 + 1).await?;
        if users.len() < cases * 11 + 1 {
            bail!("Demo Mart has only {} clear users", users.len());
        }
        if preloaded {
            // One real case, cancelled and erased through the API, is the
            // template every preloaded case and its events are cloned from.
            let api = apis(&cluster)?.remove(0);
            let id = api
                .to_cooling_off(users[cases * 11])
                .await
                .map_err(anyhow::Error::msg)?;
            advance_all(std::slice::from_ref(&api))
                .await
                .map_err(anyhow::Error::msg)?;
            let mut db = sqlx::AnyConnection::connect(&cluster.db_url).await?;
            wait_for(
                &mut db,
                &format!("SELECT COUNT(*) FROM cases WHERE id = '{id}' AND state = 'erased'"),
                1,
            )
            .await?;
            wait_for(
                &mut db,
                "SELECT CAST(1 - COUNT(*) AS BIGINT) FROM audit_pending",
                1,
            )
            .await?;
            // Stop the instance while the history is written, then start
            // it again: its sequencer integrates the preloaded events.
            for c in &mut cluster.children {
                let _ = c.kill();
                let _ = c.wait();
            }
            cluster.children.clear();
            cluster.urls.clear();
            let t = Instant::now();
            let events = preload_history(&mut db, kind, &id, preload).await?;
            println!(
                "  preloaded {preload} erased cases and {events} audit events in {:.1} s",
                t.elapsed().as_secs_f64()
            );
            drop(db);
            let t = Instant::now();
            cluster.spawn(0, u32::try_from(cases * 16 + 1000)?).await?;
            let mut db = sqlx::AnyConnection::connect(&cluster.db_url).await?;
            let until = Instant::now() + Duration::from_secs(3600);
            loop {
                let pending = count_any(&mut db, "SELECT COUNT(*) FROM audit_pending").await?;
                if pending == 0 {
                    break;
                }
                if Instant::now() > until {
                    bail!("{pending} preloaded events still not sequenced after an hour");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let size = count_any(&mut db, "SELECT COALESCE(MAX(seq), 0) FROM audit_leaves").await?;
            println!(
                "  sequenced by the restarted instance: log of {size} events after {:.1} s",
                t.elapsed().as_secs_f64()
            );
            // The tables the preload and the sequencer wrote are analyzed,
            // as autovacuum would after a bulk load; the others are left as
            // in the empty run. (Analyzing every table here, while
            // `idempotency` or `deadlines` held a row or none, gave the
            // instance's prepared statements generic plans that scan those
            // tables as they grow during the measure: a slowdown of the
            // bench's making, not of the history.)
            let analyze = if kind == "sqlite" {
                "ANALYZE cases; ANALYZE audit_entries; ANALYZE audit_leaves; ANALYZE audit_nodes"
            } else {
                "VACUUM ANALYZE cases, audit_entries, audit_pending, audit_leaves, audit_nodes"
            };
            sqlx::raw_sql(analyze).execute(&mut db).await?;
        }
        let apis = apis(&cluster)?;
        let api = apis[0].clone();
        // Intake: case creation only, ten times as many cases (a short
        // measure is mostly noise).
        let intake_users = Arc::new(users[cases..cases * 11].to_vec());
        let intake = run_clients(concurrency, intake_users, {
            let api = api.clone();
            move |u| {
                let api = api.clone();
                async move {
                    api.call(
                        "POST",
                        "/v1/cases",
                        Some(json!({"subject_id": u.to_string(), "channel": "app"})),
                    )
                    .await
                    .map(|_| ())
                }
            }
        })
        .await?;
        // Whole case: the API steps to cooling-off, then the erasure.
        let whole_users = Arc::new(users[..cases].to_vec());
        let ids = Arc::new(std::sync::Mutex::new(Vec::with_capacity(cases)));
        let t = Instant::now();
        let api_part = run_clients(concurrency, whole_users, {
            let (api, ids) = (api.clone(), ids.clone());
            move |u| {
                let (api, ids) = (api.clone(), ids.clone());
                async move {
                    let id = api.to_cooling_off(u).await?;
                    ids.lock().map_err(|e| e.to_string())?.push(id);
                    Ok(())
                }
            }
        })
        .await?;
        let mut db = sqlx::AnyConnection::connect(&cluster.db_url).await?;
        // Only this measure's cases are counted, by id. (A count of every
        // erased case, polled 20 times a second, cost PostgreSQL 50 ms a
        // time with a million of them: the bench slowed what it measured.)
        let listed = ids
            .lock()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .iter()
            .map(|id| format!("'{}'", id.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(", ");
        let erased = format!(
            "SELECT COUNT(*) FROM cases WHERE state = 'erased' AND id IN ({})",
            if listed.is_empty() { "''" } else { &listed }
        );
        advance_all(&apis).await.map_err(anyhow::Error::msg)?;
        wait_for(
            &mut db,
            &erased,
            i64::try_from(cases)? - i64::try_from(api_part.1)?,
        )
        .await?;
        let whole = cases as f64 / t.elapsed().as_secs_f64();
        let errors = intake.1 + api_part.1;
        println!(
            "  {}: intake {:.0} cases/s, whole case {:.1} cases/s, {errors} error(s)",
            if preloaded { "preloaded" } else { "empty" },
            intake.0,
            whole
        );
        rows.push((intake.0, whole, errors));
        drop(db);
        drop(cluster);
    }
    let (i0, w0, _) = rows[0];
    let (i1, w1, _) = rows[1];
    let errors: u64 = rows.iter().map(|r| r.2).sum();
    println!(
        "ratios preloaded / empty (same run): intake {:.2}x, whole case {:.2}x (target >= 0.85 each, 0 errors)",
        i1 / i0,
        w1 / w0
    );
    println!(
        "RESULT: {}",
        if i1 / i0 >= 0.85 && w1 / w0 >= 0.85 && errors == 0 {
            "target met"
        } else {
            "target NOT met"
        }
    );
    Ok(())
}

async fn count_any(db: &mut sqlx::AnyConnection, sql: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(db)
        .await?)
}

/// Waits until `sql` counts at least `n` (ten minutes at most).
async fn wait_for(db: &mut sqlx::AnyConnection, sql: &str, n: i64) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(600);
    loop {
        let got = count_any(db, sql).await?;
        if got >= n {
            return Ok(());
        }
        if Instant::now() > until {
            bail!("waited ten minutes for {n} from `{sql}`, got {got}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `f` once per user with `concurrency` clients; (per second, errors).
async fn run_clients<F, Fut>(
    concurrency: usize,
    users: Arc<Vec<i64>>,
    f: F,
) -> anyhow::Result<(f64, u64)>
where
    F: Fn(i64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let mut tasks = vec![];
    for _ in 0..concurrency {
        let (next, errors, users, f) = (next.clone(), errors.clone(), users.clone(), f.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(u) = users.get(i) else { return };
                if let Err(e) = f(*u).await {
                    errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("user {u}: {e}");
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok((
        users.len() as f64 / t.elapsed().as_secs_f64(),
        errors.load(Ordering::Relaxed),
    ))
}

/// Writes `n` erased cases cloned from `template` (ids, subjects and
/// pseudonyms made unique) and each with a copy of the template's audit
/// events, in chunks of 50,000 cases per statement; the number of events.
async fn preload_history(
    db: &mut sqlx::AnyConnection,
    kind: &str,
    template: &str,
    n: u64,
) -> anyhow::Result<i64> {
    let pseudonym: String = sqlx::query_scalar("SELECT subject_pseudonym FROM cases WHERE id = $1")
        .bind(template)
        .fetch_one(&mut *db)
        .await?;
    let subject: String = sqlx::query_scalar("SELECT subject FROM cases WHERE id = $1")
        .bind(template)
        .fetch_one(&mut *db)
        .await?;
    // A case id of the same shape (a UUID) and a pseudonym of the same
    // length, both from the row number.
    let (new_id, new_pseud, series) = match kind {
        "postgres" => (
            "CAST(CAST(md5('case' || g) AS uuid) AS TEXT)",
            "substr(md5('p' || g) || md5('q' || g), 1, length($2))",
            "generate_series(CAST($3 AS BIGINT), CAST($4 AS BIGINT)) AS s(g)",
        ),
        _ => (
            "printf('%08x-0000-4000-8000-%012x', g, g)",
            "substr(printf('%064x', g), 1, length($2))",
            "(WITH RECURSIVE c(g) AS (SELECT $3 UNION ALL SELECT g + 1 FROM c WHERE g < $4) SELECT g FROM c) AS s",
        ),
    };
    let chunk = 50_000u64;
    let mut from = 1u64;
    while from <= n {
        let to = (from + chunk - 1).min(n);
        let mut tx = sqlx::Connection::begin(&mut *db).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO cases (id, subject, principal, channel, state, body, version, created_at, updated_at, cooling_off_ends_at, subject_pseudonym) \
             SELECT {new_id}, replace(t.subject, $2, {new_pseud}), t.principal, t.channel, t.state, \
                    replace(replace(t.body, $1, {new_id}), $2, {new_pseud}), t.version, t.created_at, t.updated_at, t.cooling_off_ends_at, {new_pseud} \
             FROM cases t, {series} WHERE t.id = $1"
        )))
        .bind(template)
        .bind(&pseudonym)
        .bind(i64::try_from(from)?)
        .bind(i64::try_from(to)?)
        .execute(&mut *tx)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO audit_entries (case_id, subject, kind, from_state, to_state, actor, at, detail, body, queued_at) \
             SELECT {new_id}, replace(replace(e.subject, $2, {new_pseud}), $5, {new_pseud}), e.kind, e.from_state, e.to_state, e.actor, e.at, \
                    replace(e.detail, $1, {new_id}), replace(replace(replace(e.body, $1, {new_id}), $2, {new_pseud}), $5, {new_pseud}), e.queued_at \
             FROM {series}, audit_entries e WHERE e.case_id = $1 ORDER BY g, e.qid"
        )))
        .bind(template)
        .bind(&pseudonym)
        .bind(i64::try_from(from)?)
        .bind(i64::try_from(to)?)
        .bind(&subject)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        from = to + 1;
    }
    count_any(db, "SELECT COUNT(*) FROM audit_entries").await
}

#[cfg(test)]
mod tests {
    use super::medians_by_count;

    #[test]
    fn each_count_gets_the_median_of_its_own_runs_in_the_order_given() {
        // Rounds 1,3 then 3,1 (and a third round 1,3): count 1 ran at 10,
        // 30, 20; count 3 at 12 and 8 and 11.
        let rows = vec![
            (1, 10.0, 1.0, 5.0, 0),
            (3, 12.0, 2.0, 6.0, 0),
            (3, 8.0, 4.0, 4.0, 0),
            (1, 30.0, 3.0, 7.0, 0),
            (1, 20.0, 2.0, 6.0, 0),
            (3, 11.0, 3.0, 5.0, 0),
        ];
        let m = medians_by_count(&[1, 3], &rows);
        assert_eq!(m, vec![(1, 20.0, 2.0, 6.0), (3, 11.0, 3.0, 5.0)]);
        // Two runs: the mean of the middle two.
        let m = medians_by_count(&[3], &rows[1..3]);
        assert_eq!(m, vec![(3, 10.0, 3.0, 5.0)]);
    }
}
