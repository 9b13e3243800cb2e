//! Test harness: starts the real `lethe` binary in demo mode and talks HTTP
//! to it; opens Demo Mart's database directly to check what was erased.
#![allow(dead_code)]
// The child is killed and waited for in `Drop`.
#![allow(clippy::zombie_processes)]

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_lethe");

/// The suite runs against Lethe's SQLite store, or with
/// `LETHE_TEST_STORE=postgres` against PostgreSQL: each test directory then
/// gets a database of its own on the machine's server (`LETHE_TEST_PG_URL`,
/// default postgres://postgres@127.0.0.1:5432/postgres), named in the file
/// `store-url` of the directory.
pub fn postgres_store() -> bool {
    std::env::var("LETHE_TEST_STORE").as_deref() == Ok("postgres")
}

/// The store URL of a test directory (PostgreSQL mode), made on first use.
/// A directory whose database was made by [`pg_store_url`] keeps it.
pub fn store_url(dir: &Path) -> Option<String> {
    if postgres_store() || dir.join("store-url").exists() {
        Some(pg_store_url(dir))
    } else {
        None
    }
}

/// A PostgreSQL database of the test directory's own on the machine's
/// server (made on first use, its URL kept in the file `store-url`), for
/// tests that always run on PostgreSQL (several instances).
pub fn pg_store_url(dir: &Path) -> String {
    let file = dir.join("store-url");
    if let Ok(u) = std::fs::read_to_string(&file) {
        return u.trim().to_owned();
    }
    let admin = std::env::var("LETHE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let db = format!("lethe_it_{}", uuid::Uuid::new_v4().simple());
    let out = Command::new("psql")
        .args([admin.as_str(), "-q", "-c", &format!("CREATE DATABASE {db}")])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = format!("{}/{db}", admin.rsplit_once('/').unwrap().0);
    std::fs::write(&file, &url).unwrap();
    url
}

/// `lethe demo` arguments for the test directory's store (none on SQLite).
pub fn store_args(dir: &Path) -> Vec<String> {
    store_url_args(store_url(dir))
}

fn store_url_args(store: Option<String>) -> Vec<String> {
    store
        .map(|u| vec!["--store-url".to_owned(), u])
        .unwrap_or_default()
}

/// A configuration file's text for CLI commands on a test directory.
pub fn config_toml(dir: &Path) -> String {
    let mut t = format!(
        "data_dir = \"{}\"\ndatamap = \"{}\"\n",
        dir.display(),
        dir.join("datamap.toml").display()
    );
    if let Some(u) = store_url(dir) {
        t.push_str(&format!("[store]\nurl = \"{u}\"\n"));
    }
    t
}

/// An HTTP client for tests; installs the TLS crypto provider first (the
/// workspace's reqwest is built with rustls and no default provider).
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

pub struct Demo {
    pub dir: PathBuf,
    pub url: String,
    pub key: String,
    pub child: Child,
    pub http: reqwest::Client,
    pub users: u32,
}

impl Demo {
    pub async fn start(dir: &Path, users: u32) -> Demo {
        Self::start_with(dir, users, &[]).await
    }

    pub async fn start_with(dir: &Path, users: u32, extra: &[&str]) -> Demo {
        Self::start_env(dir, users, extra, &[]).await
    }

    pub async fn start_env(dir: &Path, users: u32, extra: &[&str], envs: &[(&str, &str)]) -> Demo {
        Self::start_named(dir, users, "", extra, envs, store_url(dir)).await
    }

    /// An instance of its own name (`ready<name>.json`, `lethe<name>.log`)
    /// on the directory's data; several may run at once on one PostgreSQL
    /// store (`store`).
    pub async fn start_named(
        dir: &Path,
        users: u32,
        name: &str,
        extra: &[&str],
        envs: &[(&str, &str)],
        store: Option<String>,
    ) -> Demo {
        let ready = dir.join(format!("ready{name}.json"));
        let _ = std::fs::remove_file(&ready);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("lethe{name}.log")))
            .unwrap();
        let child = Command::new(BIN)
            .args([
                "demo",
                "--listen",
                "127.0.0.1:0",
                "--users",
                &users.to_string(),
            ])
            .arg("--data-dir")
            .arg(dir)
            .arg("--ready-file")
            .arg(&ready)
            .args(extra)
            .args(store_url_args(store))
            .env("LETHE_LOG", "info")
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start lethe");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(t) = std::fs::read_to_string(&ready)
                && let Ok(v) = serde_json::from_str::<Value>(&t)
            {
                return Demo {
                    dir: dir.to_owned(),
                    url: v["url"].as_str().unwrap().to_owned(),
                    key: v["api_key"].as_str().unwrap().to_owned(),
                    child,
                    http: http(),
                    users,
                };
            }
            if Instant::now() >= deadline {
                let log = std::fs::read_to_string(dir.join(format!("lethe{name}.log")))
                    .unwrap_or_default();
                // The log's last lines, without backtrace frames.
                let lines: Vec<&str> = log
                    .lines()
                    .filter(|l| !l.starts_with(' ') && !l.is_empty())
                    .collect();
                let tail = lines[lines.len().saturating_sub(12)..].join("\n");
                panic!("lethe did not become ready; its log ends:\n{tail}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The face provider's signed callback (`secret`: the provider's
    /// secret the demo was started with, see `--face-secret-env`).
    pub async fn face_callback(
        &self,
        body: &Value,
        id: &str,
        ts: i64,
        secret: &str,
    ) -> (u16, Value) {
        let text = body.to_string();
        let sig = lethe_server::outbound::webhook::sign(
            &lethe_server::outbound::webhook::secret_bytes(secret),
            id,
            ts,
            text.as_bytes(),
        );
        let (s, v, _) = self
            .raw_post(
                "/v1/callbacks/face",
                &text,
                &[
                    ("content-type", "application/json"),
                    ("webhook-id", id),
                    ("webhook-timestamp", &ts.to_string()),
                    ("webhook-signature", &sig),
                ],
            )
            .await;
        (s, v)
    }

    /// A face check passes for the case: assurance level 2 (a step-up
    /// after an SMS code, or the first verification).
    pub async fn face_pass(&self, case: &str, secret: &str) {
        let body = json!({"case_id": case, "result": "pass", "provider_ref": format!("fv-{case}")});
        let id = format!("evt-{}", uuid::Uuid::new_v4().simple());
        let (s, v) = self
            .face_callback(&body, &id, jiff::Timestamp::now().as_second(), secret)
            .await;
        assert_eq!(s, 200, "{v}");
    }

    /// SIGKILL: no shutdown of any kind.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub async fn raw_post(
        &self,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut rb = self
            .http
            .post(format!("{}{}", self.url, path))
            .body(body.to_owned());
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let h = r.headers().clone();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
            h,
        )
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let key = uuid::Uuid::new_v4().to_string();
        let auth = format!("Bearer {}", self.key);
        let (s, v, _) = self
            .raw_post(
                path,
                &body.to_string(),
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                    ("idempotency-key", &key),
                ],
            )
            .await;
        (s, v)
    }

    /// A request with another API key (another platform's); POSTs get a
    /// fresh Idempotency-Key.
    pub async fn call_as(
        &self,
        key: &str,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> (u16, Value) {
        let post = method != reqwest::Method::GET;
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(key);
        if post {
            r = r
                .header("idempotency-key", uuid::Uuid::new_v4().to_string())
                .json(&body);
        }
        let r = r.send().await.unwrap();
        let s = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            s,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{}", self.url, path))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            s,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// The demo clock's date in the platform's time zone (Asia/Shanghai).
    pub async fn today(&self) -> jiff::civil::Date {
        let v = self
            .ok("/v1/dev/clock/advance", json!({"seconds": 0}))
            .await;
        let now: jiff::Timestamp = v["now"].as_str().unwrap().parse().unwrap();
        now.to_zoned_datetime(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap())
            .date()
    }

    pub async fn ok(&self, path: &str, body: Value) -> Value {
        let (s, v) = self.post(path, body).await;
        assert!((200..300).contains(&s), "POST {path} -> {s}: {v}");
        v
    }

    pub async fn create(&self, subject: i64) -> String {
        let v = self
            .ok(
                "/v1/cases",
                json!({"subject_id": subject.to_string(), "channel": "app"}),
            )
            .await;
        v["id"].as_str().unwrap().to_owned()
    }

    pub async fn code(&self, id: &str) -> String {
        let (_, v) = self.get(&format!("/v1/dev/outbox/{id}")).await;
        let body = v.as_array().unwrap().last().unwrap()["body"]
            .as_str()
            .unwrap()
            .to_owned();
        body.split(|c: char| !c.is_ascii_digit())
            .find(|w| w.len() == 6)
            .unwrap()
            .to_owned()
    }

    pub async fn verify(&self, id: &str) {
        self.ok(&format!("/v1/cases/{id}/verification/sms/send"), json!({}))
            .await;
        let code = self.code(id).await;
        let v = self
            .ok(
                &format!("/v1/cases/{id}/verification/sms/verify"),
                json!({"code": code}),
            )
            .await;
        assert_eq!(v["state"], "identity_verified");
    }

    /// Verify, check (must be clear), acknowledge every consequence, settle
    /// every asset (forfeit where offered, else the first option), confirm.
    pub async fn to_cooling_off(&self, id: &str) -> Value {
        self.verify(id).await;
        let v = self.ok(&format!("/v1/cases/{id}/checks"), json!({})).await;
        assert_eq!(v["state"], "checks_clear", "{v}");
        self.acknowledge_and_settle(id, &v).await;
        let v = self.ok(&format!("/v1/cases/{id}/confirm"), json!({})).await;
        assert_eq!(v["state"], "cooling_off", "{v}");
        v
    }

    pub async fn acknowledge_and_settle(&self, id: &str, checks: &Value) {
        for c in checks["consequences"].as_array().unwrap() {
            self.ok(
                &format!("/v1/cases/{id}/acknowledgements"),
                json!({"consequence_id": c["id"], "version": c["version"], "locale": "zh-CN"}),
            )
            .await;
        }
        for a in checks["assets"].as_array().unwrap() {
            let opts = a["options"].as_array().unwrap();
            let option = if opts.contains(&json!("forfeit")) {
                json!("forfeit")
            } else {
                opts[0].clone()
            };
            self.ok(
                &format!("/v1/cases/{id}/settlements"),
                json!({"asset_id": a["id"], "option": option, "locale": "zh-CN"}),
            )
            .await;
        }
        self.wait_state(id, "consequences_acknowledged", 30).await;
    }

    pub async fn advance(&self, secs: i64) {
        self.ok("/v1/dev/clock/advance", json!({"seconds": secs}))
            .await;
    }

    pub async fn state(&self, id: &str) -> String {
        let (s, v) = self.get(&format!("/v1/cases/{id}")).await;
        assert_eq!(s, 200, "{v}");
        v["state"].as_str().unwrap().to_owned()
    }

    pub async fn wait_state(&self, id: &str, want: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.state(id).await;
            if s == want {
                return;
            }
            assert!(Instant::now() < deadline, "case {id} is {s}, wanted {want}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn mart(&self) -> SqlitePool {
        mart(&self.dir).await
    }

    /// Lethe's own store opened for writing (tests that tamper with it).
    pub async fn lethe_db_writable(&self) -> sqlx::AnyPool {
        self.store_pool("rw").await
    }

    /// Lethe's own store, for checks (SQLite file or PostgreSQL database).
    pub async fn lethe_db(&self) -> sqlx::AnyPool {
        self.store_pool("ro").await
    }

    /// A one-connection pool on the store; `sqlite_mode` for a SQLite file.
    async fn store_pool(&self, sqlite_mode: &str) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        let url = store_url(&self.dir).unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode={sqlite_mode}",
                self.dir.join("lethe.db").display()
            )
        });
        sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn mart(dir: &Path) -> SqlitePool {
    let opts = SqliteConnectOptions::from_str("sqlite:")
        .unwrap()
        .filename(dir.join("demo-mart.db"));
    SqlitePoolOptions::new()
        .max_connections(2)
        .connect_with(opts)
        .await
        .unwrap()
}

/// The mapped tables and how a subject's rows are selected (`?1` = user id).
pub const TABLES: &[(&str, &str)] = &[
    ("users", "id = ?1"),
    ("real_names", "user_id = ?1"),
    ("addresses", "user_id = ?1"),
    ("orders", "user_id = ?1"),
    (
        "order_items",
        "order_id IN (SELECT id FROM orders WHERE user_id = ?1)",
    ),
    ("coupons", "user_id = ?1"),
    ("points", "user_id = ?1"),
    ("subscriptions", "user_id = ?1"),
    ("sessions", "user_id = ?1"),
    ("wallets", "user_id = ?1"),
    ("bank_cards", "user_id = ?1"),
    ("refunds", "user_id = ?1"),
    ("settlement_log", "user_id = ?1"),
    ("invoices", "user_id = ?1"),
];

/// Tables kept for a legal reason: the subject's rows stay after erasure.
pub const KEPT: &[&str] = &["invoices", "refunds", "settlement_log"];

pub async fn subject_counts(pool: &SqlitePool, user: i64) -> Vec<(String, i64)> {
    let mut out = vec![];
    for (t, cond) in TABLES {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {t} WHERE {cond}"
        )))
        .bind(user)
        .fetch_one(pool)
        .await
        .unwrap();
        out.push((t.to_string(), n));
    }
    out
}

/// Per table: (row count, SHA-256 of every row's values) over the rows that
/// do not belong to any of `excluded`.
pub async fn others_digest(pool: &SqlitePool, excluded: &[i64]) -> Vec<(String, i64, String)> {
    let list = if excluded.is_empty() {
        "-1".to_owned()
    } else {
        excluded
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut out = vec![];
    for (t, cond) in TABLES {
        let cols: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT name FROM pragma_table_info('{t}')"
        )))
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect();
        let expr = cols
            .iter()
            .map(|c| format!("quote({c})"))
            .collect::<Vec<_>>()
            .join(" || '|' || ");
        let cond_any = cond.replace("= ?1", &format!("IN ({list})"));
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {expr} FROM {t} WHERE NOT ({cond_any}) ORDER BY rowid"
        )))
        .fetch_all(pool)
        .await
        .unwrap();
        let mut h = Sha256::new();
        for r in &rows {
            h.update(r.get::<String, _>(0).as_bytes());
            h.update(b"\n");
        }
        out.push((t.to_string(), rows.len() as i64, hex::encode(h.finalize())));
    }
    out
}

/// Users with no unfinished order (so checks come out clear).
pub async fn clear_users(pool: &SqlitePool, n: usize) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM users u WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id AND o.status IN ('pending','paid','shipping')) AND NOT EXISTS (SELECT 1 FROM bank_cards b WHERE b.user_id = u.id) AND NOT EXISTS (SELECT 1 FROM wallets w WHERE w.user_id = u.id AND w.balance_fen > 0) ORDER BY id LIMIT ?1")
        .bind(n as i64)
        .fetch_all(pool)
        .await
        .unwrap()
}

/// Waits until the case is erased, then checks its receipt's count for
/// each table against `expected` and that no row of the user is left in a
/// table that is not kept.
pub async fn assert_erased_as_expected(
    waiter: &Demo,
    reader: &Demo,
    mart: &SqlitePool,
    id: &str,
    user: i64,
    expected: &[(String, i64)],
    secs: u64,
) {
    waiter.wait_state(id, "erased", secs).await;
    let (_, receipt) = reader.get(&format!("/v1/cases/{id}/receipt")).await;
    for (t, n) in expected {
        assert_eq!(
            receipt_rows(&receipt, t),
            *n,
            "case {id}: receipt count for {t}"
        );
    }
    for (t, n) in subject_counts(mart, user).await {
        if !KEPT.contains(&t.as_str()) {
            assert_eq!(n, 0, "rows left in {t}");
        }
    }
}

pub fn receipt_rows(receipt: &Value, table: &str) -> i64 {
    receipt["systems"][0]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == table)
        .unwrap()["rows"]
        .as_i64()
        .unwrap()
}

/// Creates a console agent with `lethe agent create`; returns its initial
/// password and TOTP secret.
pub fn create_agent(dir: &std::path::Path, username: &str, role: &str) -> (String, Vec<u8>) {
    create_agent_for(dir, username, role, None)
}

/// Creates a console agent serving one platform (`Some`), or installation
/// staff (`None`).
pub fn create_agent_for(
    dir: &std::path::Path,
    username: &str,
    role: &str,
    platform: Option<&str>,
) -> (String, Vec<u8>) {
    let cfg = dir.join("lethe.toml");
    std::fs::write(&cfg, config_toml(dir)).unwrap();
    let out = Command::new(BIN)
        .args([
            "agent",
            "create",
            "--config",
            cfg.to_str().unwrap(),
            "--username",
            username,
            "--role",
            role,
        ])
        .args(platform.map(|p| ["--platform", p]).into_iter().flatten())
        .env(
            "DEMO_MART_URL",
            format!("sqlite://{}", dir.join("demo-mart.db").display()),
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let password = text
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .unwrap()
        .to_owned();
    let url = text
        .lines()
        .find_map(|l| l.strip_prefix("totp: "))
        .unwrap()
        .to_owned();
    let secret = url
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    (
        password,
        data_encoding::BASE32_NOPAD
            .decode(secret.as_bytes())
            .unwrap(),
    )
}

pub fn totp(secret: &[u8], offset_steps: i64) -> String {
    let step = (jiff::Timestamp::now().as_second() / 30 + offset_steps) as u64;
    format!("{:06}", lethe_server::console::totp::code_at(secret, step))
}

/// Signs an agent in (password and the current TOTP code); returns the
/// session token.
pub async fn agent_session(demo: &Demo, username: &str, role: &str) -> String {
    agent_session_for(demo, username, role, None).await
}

/// Signs in a new agent of one platform (or installation staff).
pub async fn agent_session_for(
    demo: &Demo,
    username: &str,
    role: &str,
    platform: Option<&str>,
) -> String {
    let (pw, secret) = create_agent_for(&demo.dir, username, role, platform);
    let (s, v, _) = demo
        .raw_post(
            "/v1/console/login",
            &json!({"username": username, "password": pw, "totp": totp(&secret, 0)}).to_string(),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v["token"].as_str().unwrap().to_owned()
}

/// A second platform's API key on a running demo's installation.
pub fn other_platform_key(dir: &Path, name: &str) -> String {
    lethe_cli(dir, &["apikey", "create"], &["--name", name])
}

/// Runs `lethe <command> --config <the directory's config> <args>`, which
/// must succeed; returns its standard output.
pub fn lethe_cli(dir: &Path, command: &[&str], args: &[&str]) -> String {
    let cfg = dir.join("cli.toml");
    std::fs::write(&cfg, config_toml(dir)).unwrap();
    let out = Command::new(BIN)
        .args(command)
        .arg("--config")
        .arg(&cfg)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The element of a JSON array whose `key` is `value` (the test fails when
/// there is none).
pub fn find<'a>(list: &'a Value, key: &str, value: &str) -> &'a Value {
    list.as_array()
        .and_then(|a| a.iter().find(|x| x[key] == value))
        .unwrap_or_else(|| panic!("no element with {key} = {value} in {list}"))
}

/// An application/x-www-form-urlencoded body.
pub fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A page's CSRF token.
pub fn csrf(html: &str) -> String {
    let at = html.find("name=\"_csrf\" value=\"").expect("a CSRF field") + 20;
    html[at..].split('"').next().unwrap().to_owned()
}

/// The account holder opens a support request from the cancellation
/// centre's case page (hand-off, session cookie, the page's CSRF token,
/// the form): the request's id.
pub async fn support_from_centre(
    demo: &Demo,
    subject: &str,
    topic: &str,
    message: &str,
    contact: &str,
) -> String {
    let (status, text) = try_support_from_centre(demo, subject, topic, message, contact).await;
    assert_eq!(status, 303, "{text}");
    let db = demo.lethe_db().await;
    sqlx::query_scalar("SELECT id FROM support_requests ORDER BY created_at DESC, id LIMIT 1")
        .fetch_one(&db)
        .await
        .unwrap()
}

/// Opens a support request from the cancellation centre's page (the start
/// page when the subject has no case): the answer's status and text.
pub async fn try_support_from_centre(
    demo: &Demo,
    subject: &str,
    topic: &str,
    message: &str,
    contact: &str,
) -> (u16, String) {
    let link = demo
        .ok(
            "/v1/handoffs",
            json!({"subject_id": subject, "channel": "app"}),
        )
        .await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client
        .get(link["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    // The session cookie the hand-off set (no cookie jar: by hand).
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
        .collect::<Vec<_>>()
        .join("; ");
    let page = client
        .get(format!("{}/u/", demo.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("action=\"/u/do/support\""),
        "the case page has the support entry"
    );
    let csrf = csrf(&page);
    let r = client
        .post(format!("{}/u/do/support", demo.url))
        .header("origin", &demo.url)
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("_csrf", csrf.as_str()),
            ("topic", topic),
            ("message", message),
            ("contact", contact),
        ]))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}
