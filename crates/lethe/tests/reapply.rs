//! Forgotten for good: a platform restores a backup taken before 100
//! accounts were erased, and reapply erases them again — on SQLite (Demo
//! Mart), PostgreSQL and MariaDB (a CRM database on each), against the real
//! binary, the real servers and their real dump tools (pg_dump/psql,
//! mysqldump/mysql). Every other row comes out identical (checksums), a
//! second run finds nothing, and the reports verify.

mod common;

use common::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::Row;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

const N: usize = 100;
const USERS: u32 = 300;
const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const MY_ADMIN: &str = "mysql://root@127.0.0.1:3306/mysql";

fn crm_system(name: &str, kind: &str, env: &str) -> String {
    format!(
        r#"
[[systems]]
name = "{name}"
kind = "{kind}"
url_env = "{env}"

[[systems.tables]]
name = "crm_contacts"
owner = "user_id"
action = "delete"

[[systems.tables]]
name = "crm_visits"
owner = "user_id"
action = "delete"
"#
    )
}

/// A CRM database on PostgreSQL or MariaDB: a contact per user, three
/// visits each, and anonymous visits of nobody.
async fn crm(url: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    for ddl in [
        "CREATE TABLE crm_contacts (id INT PRIMARY KEY, user_id VARCHAR(32), email VARCHAR(100), note TEXT)",
        "CREATE TABLE crm_visits (id INT PRIMARY KEY, user_id VARCHAR(32), page VARCHAR(100))",
    ] {
        sqlx::query(ddl).execute(&pool).await.unwrap();
    }
    let mut contacts = vec![];
    let mut visits = vec![];
    for u in 1..=USERS {
        contacts.push(format!(
            "({u}, '{u}', 'user{u}@example.cn', 'likes tea #{u}')"
        ));
        for k in 0..3 {
            visits.push(format!("({}, '{u}', '/item/{}')", u * 10 + k, u * 7 + k));
        }
    }
    for k in 0..5 {
        visits.push(format!("({}, NULL, '/home')", 1_000_000 + k));
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO crm_contacts VALUES {}",
        contacts.join(",")
    )))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO crm_visits VALUES {}",
        visits.join(",")
    )))
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
}

/// (rows of the users, digest of every other row) of a CRM database.
async fn crm_state(url: &str, users: &[i64]) -> (i64, String) {
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let list = users
        .iter()
        .map(|u| format!("'{u}'"))
        .collect::<Vec<_>>()
        .join(",");
    let mut theirs = 0i64;
    let mut h = Sha256::new();
    for (t, cols) in [
        ("crm_contacts", "id, user_id, email, note"),
        ("crm_visits", "id, user_id, page"),
    ] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {t} WHERE user_id IN ({list})"
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        theirs += n;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {cols} FROM {t} WHERE user_id IS NULL OR user_id NOT IN ({list}) ORDER BY id"
        )))
        .fetch_all(&pool)
        .await
        .unwrap();
        h.update(t.as_bytes());
        for r in &rows {
            for i in 0..r.len() {
                let v: Option<String> = r.try_get::<Option<String>, _>(i).unwrap_or_else(|_| {
                    r.try_get::<Option<i32>, _>(i)
                        .map(|x| x.map(|x| x.to_string()))
                        .unwrap()
                });
                h.update(format!("{v:?}|").as_bytes());
            }
            h.update(b"\n");
        }
    }
    pool.close().await;
    (theirs, hex::encode(h.finalize()))
}

/// Copies Demo Mart's database aside (`VACUUM INTO`): the platform's backup.
async fn mart_backup(dir: &Path) -> std::path::PathBuf {
    let to = dir.join("mart-backup.db");
    let pool = mart(dir).await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "VACUUM INTO '{}'",
        to.display()
    )))
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    to
}

/// Restores Demo Mart's database from the backup, table by table in one
/// transaction (the demo keeps its file open): what the backup did not
/// have (Lethe's record tables made at the first erasure) goes.
async fn mart_restore(dir: &Path, backup: &Path) {
    let pool = mart(dir).await;
    let mut c = pool.acquire().await.unwrap();
    sqlx::query("PRAGMA foreign_keys = OFF")
        .execute(&mut *c)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ATTACH DATABASE '{}' AS bak",
        backup.display()
    )))
    .execute(&mut *c)
    .await
    .unwrap();
    let names = |schema: &'static str| {
        sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!(
            "SELECT name FROM {schema}.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )))
    };
    let main: Vec<String> = names("main").fetch_all(&mut *c).await.unwrap();
    let bak: Vec<String> = names("bak").fetch_all(&mut *c).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *c)
        .await
        .unwrap();
    for t in &main {
        let sql = if bak.contains(t) {
            format!("DELETE FROM main.\"{t}\"")
        } else {
            format!("DROP TABLE main.\"{t}\"")
        };
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut *c)
            .await
            .unwrap();
    }
    for t in &bak {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO main.\"{t}\" SELECT * FROM bak.\"{t}\""
        )))
        .execute(&mut *c)
        .await
        .unwrap();
    }
    sqlx::query("COMMIT").execute(&mut *c).await.unwrap();
    sqlx::query("DETACH DATABASE bak")
        .execute(&mut *c)
        .await
        .unwrap();
    drop(c);
    pool.close().await;
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `lethe erasures <args>` with the systems' URLs in the environment.
fn erasures(dir: &Path, envs: &[(&str, String)], args: &[&str]) -> String {
    let cfg = dir.join("cli.toml");
    std::fs::write(&cfg, config_toml(dir)).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lethe"));
    cmd.arg("erasures").args(&args[..1]);
    if args[0] != "verify" {
        cmd.arg("--config").arg(&cfg);
    }
    cmd.args(&args[1..])
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())));
    run(&mut cmd)
}

async fn mart_rows(dir: &Path, users: &[i64]) -> i64 {
    let pool = mart(dir).await;
    let mut n = 0;
    for u in users {
        for (t, c) in subject_counts(&pool, *u).await {
            if !KEPT.contains(&t.as_str()) {
                n += c;
            }
        }
    }
    pool.close().await;
    n
}

fn report_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap()
}

#[tokio::test]
async fn a_restored_backup_is_erased_again_on_sqlite_postgres_and_mariadb() {
    let dir = tempfile::tempdir().unwrap();
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let db = format!("lethe_reapply_{tag}");
    sqlx::any::install_default_drivers();
    for admin in [PG_ADMIN, MY_ADMIN] {
        let p = sqlx::AnyPool::connect(admin).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .execute(&p)
            .await
            .unwrap();
        p.close().await;
    }
    let pg_url = format!("postgres://postgres@127.0.0.1:5432/{db}");
    let my_url = format!("mysql://root@127.0.0.1:3306/{db}");
    crm(&pg_url).await;
    crm(&my_url).await;
    std::fs::write(
        dir.path().join("datamap.toml"),
        format!(
            "{}{}{}",
            include_str!("../../../examples/demo-mart/datamap.toml"),
            crm_system("crm_pg", "postgres", "E2E_CRM_PG_URL"),
            crm_system("crm_my", "mysql", "E2E_CRM_MY_URL"),
        ),
    )
    .unwrap();
    let envs = [
        ("E2E_CRM_PG_URL", pg_url.clone()),
        ("E2E_CRM_MY_URL", my_url.clone()),
        (
            "DEMO_MART_URL",
            format!("sqlite:{}", dir.path().join("demo-mart.db").display()),
        ),
    ];
    let env_refs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let demo = Demo::start_env(dir.path(), USERS, &[], &env_refs[..2]).await;
    let pool = demo.mart().await;
    let users = clear_users(&pool, N).await;
    assert_eq!(users.len(), N, "Demo Mart has {N} users free to cancel");
    pool.close().await;

    // The platform's backups, taken before the erasures.
    let since = demo
        .ok("/v1/dev/clock/advance", json!({"seconds": 0}))
        .await["now"]
        .as_str()
        .unwrap()
        .to_owned();
    let mart_bak = mart_backup(dir.path()).await;
    let pg_dump = dir.path().join("crm-pg.sql");
    run(Command::new("pg_dump")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "--clean",
            "--if-exists",
            "-f",
        ])
        .arg(&pg_dump)
        .arg(&db));
    let my_dump = dir.path().join("crm-my.sql");
    let dump = run(Command::new("mysqldump").args(["-h", "127.0.0.1", "-u", "root", &db]));
    std::fs::write(&my_dump, dump).unwrap();
    let pool = demo.mart().await;
    let mart_others = others_digest(&pool, &users).await;
    pool.close().await;
    let pg_before = crm_state(&pg_url, &users).await;
    let my_before = crm_state(&my_url, &users).await;
    assert_eq!(pg_before.0, 4 * N as i64);

    // 100 accounts cancelled and erased from all three systems.
    let mut ids = vec![];
    for chunk in users.chunks(10) {
        let made = futures_util::future::join_all(chunk.iter().map(|u| async {
            let id = demo.create(*u).await;
            demo.to_cooling_off(&id).await;
            id
        }))
        .await;
        ids.extend(made);
    }
    demo.advance(7 * 86_400 + 60).await;
    for id in &ids {
        demo.wait_state(id, "erased", 120).await;
    }
    assert_eq!(mart_rows(dir.path(), &users).await, 0);
    assert_eq!(crm_state(&pg_url, &users).await.0, 0);
    assert_eq!(crm_state(&my_url, &users).await.0, 0);

    // The platform restores all three backups: the accounts are back.
    mart_restore(dir.path(), &mart_bak).await;
    run(Command::new("psql")
        .args([
            "-q",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &db,
            "-f",
        ])
        .arg(&pg_dump));
    run(Command::new("sh").arg("-c").arg(format!(
        "mysql -h 127.0.0.1 -u root {db} < '{}'",
        my_dump.display()
    )));
    assert!(mart_rows(dir.path(), &users).await > 0);
    assert_eq!(crm_state(&pg_url, &users).await, pg_before);
    assert_eq!(crm_state(&my_url, &users).await, my_before);

    // A dry run counts and erases nothing.
    let out = erasures(
        dir.path(),
        &envs,
        &[
            "reapply",
            "--system",
            "demo_mart",
            "--since",
            &since,
            "--dry-run",
        ],
    );
    assert!(out.contains("100 of the 100 subject(s)"), "{out}");
    assert!(mart_rows(dir.path(), &users).await > 0);

    // Reapply: Demo Mart and MariaDB from the CLI, PostgreSQL through the
    // API (a platform's restore runbook).
    let report = dir.path().join("mart-report.json");
    erasures(
        dir.path(),
        &envs,
        &[
            "reapply",
            "--system",
            "demo_mart",
            "--since",
            &since,
            "--out",
            report.to_str().unwrap(),
        ],
    );
    let my_report = dir.path().join("my-report.json");
    erasures(
        dir.path(),
        &envs,
        &[
            "reapply",
            "--system",
            "crm_my",
            "--since",
            &since,
            "--out",
            my_report.to_str().unwrap(),
        ],
    );
    let (s, run) = demo
        .post(
            "/v1/reapply-runs",
            json!({"system": "crm_pg", "since": since}),
        )
        .await;
    assert_eq!(s, 202, "{run}");
    let run_id = run["id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let pg_run = loop {
        let (_, r) = demo.get(&format!("/v1/reapply-runs/{run_id}")).await;
        if r["state"] != "running" {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "{r}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(pg_run["state"], "done", "{pg_run}");

    // Gone again, everywhere; every other row as it was.
    assert_eq!(mart_rows(dir.path(), &users).await, 0);
    let pool = demo.mart().await;
    assert_eq!(others_digest(&pool, &users).await, mart_others);
    pool.close().await;
    assert_eq!(crm_state(&pg_url, &users).await, (0, pg_before.1.clone()));
    assert_eq!(crm_state(&my_url, &users).await, (0, my_before.1.clone()));

    // The reports: counts only, signed, verifiable.
    let (_, pk) = demo.get("/v1/audit/public-key").await;
    let pk = pk["public_key"].as_str().unwrap().to_owned();
    for (file, system) in [(&report, "demo_mart"), (&my_report, "crm_my")] {
        let doc = report_of(&std::fs::read_to_string(file).unwrap());
        let r = &doc["report"];
        assert_eq!(r["system"], system);
        assert_eq!(r["matched"], N, "{r}");
        assert_eq!(r["erased"], N, "{r}");
        assert_eq!(r["verified"], true, "{r}");
        assert!(!doc.to_string().contains("example.cn"));
        let out = erasures(
            dir.path(),
            &envs,
            &["verify", file.to_str().unwrap(), "--public-key", &pk],
        );
        assert!(out.contains("lethe.reapply.v1"), "{out}");
    }
    let r = &pg_run["signed_report"]["report"];
    assert_eq!(
        (r["matched"].as_u64(), r["erased"].as_u64()),
        (Some(N as u64), Some(N as u64)),
        "{r}"
    );
    assert!(r["scanned"].as_u64().unwrap() >= u64::from(USERS));

    // Running again finds nothing to erase.
    let out = erasures(
        dir.path(),
        &envs,
        &["reapply", "--system", "demo_mart", "--since", &since],
    );
    assert!(out.contains("0 of the 100 subject(s)"), "{out}");

    // Each run that erased is in the audit log, the dry run is not; the
    // platform sees its own run (the API's), the operator all four.
    let (_, log) = demo.get("/v1/audit/export").await;
    let runs: Vec<&Value> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "erasure.reapplied")
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["case_id"], json!(run_id));
    assert_eq!(runs[0]["detail"]["erased"], N);
    let file = dir.path().join("audit.log");
    lethe_cli(
        dir.path(),
        &["audit", "export"],
        &["--out", file.to_str().unwrap()],
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.matches("\"erasure.reapplied\"").count(), 4);
    let listed = erasures(dir.path(), &envs, &["runs"]);
    assert!(listed.contains("(dry run)"), "{listed}");

    drop(demo);
    for admin in [PG_ADMIN, MY_ADMIN] {
        let p = sqlx::AnyPool::connect(admin).await.unwrap();
        let force = if admin.starts_with("postgres") {
            " WITH (FORCE)"
        } else {
            ""
        };
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {db}{force}")))
            .execute(&p)
            .await;
        p.close().await;
    }
}

const SECRET: &str = "whsec_c2VydmljZS1zZWNyZXQtZm9yLXRlc3Rz";

/// An HTTP service holding subjects: `subjects.list` pages through them (a
/// cursor, two per page), `erasure.requested` removes one. Every request's
/// signature is checked and every answer signed.
async fn service(held: Arc<Mutex<Vec<String>>>) -> (String, Arc<Mutex<Vec<Value>>>) {
    use lethe_connect::http::{secret_bytes, sign};
    let seen = Arc::new(Mutex::new(vec![]));
    let s2 = seen.clone();
    let app = axum::Router::new().route(
        "/svc",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (seen, held) = (s2.clone(), held.clone());
                async move {
                    let h = |n: &str| headers.get(n).unwrap().to_str().unwrap().to_owned();
                    let key = secret_bytes(SECRET);
                    let ts: i64 = h("webhook-timestamp").parse().unwrap();
                    assert_eq!(h("webhook-signature"), sign(&key, &h("webhook-id"), ts, &body));
                    let req: Value = serde_json::from_slice(&body).unwrap();
                    seen.lock().unwrap().push(req.clone());
                    let answer = match req["type"].as_str().unwrap() {
                        "subjects.list" => {
                            let from: usize =
                                req["cursor"].as_str().map_or(0, |c| c.parse().unwrap());
                            let all = held.lock().unwrap().clone();
                            let page: Vec<String> = all.iter().skip(from).take(2).cloned().collect();
                            let next = (from + 2 < all.len()).then(|| (from + 2).to_string());
                            json!({"subjects": page, "next_cursor": next})
                        }
                        _ => {
                            let subject = req["subject_id"].as_str().unwrap().to_owned();
                            let mut all = held.lock().unwrap();
                            let before = all.len();
                            all.retain(|s| *s != subject);
                            let n = (before - all.len()) as u64;
                            json!({"case_id": req["case_id"], "status": "erased",
                                   "items": [{"name": "profiles", "action": "delete", "count": n, "remaining": 0}]})
                        }
                    }
                    .to_string();
                    let now = jiff::Timestamp::now().as_second();
                    axum::response::Response::builder()
                        .status(200)
                        .header("content-type", "application/json")
                        .header("webhook-id", "msg_answer")
                        .header("webhook-timestamp", now.to_string())
                        .header("webhook-signature", sign(&key, "msg_answer", now, answer.as_bytes()))
                        .body(axum::body::Body::from(answer))
                        .unwrap()
                }
            },
        ),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/svc", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, seen)
}

async fn reapply_api(demo: &Demo, system: &str, since: &str) -> Value {
    let (s, run) = demo
        .post(
            "/v1/reapply-runs",
            json!({"system": system, "since": since}),
        )
        .await;
    assert_eq!(s, 202, "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, r) = demo.get(&format!("/v1/reapply-runs/{id}")).await;
        if r["state"] != "running" {
            assert_eq!(r["state"], "done", "{r}");
            return r["signed_report"]["report"].clone();
        }
        assert!(std::time::Instant::now() < deadline, "{r}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn redis_keys_and_an_http_services_records_that_came_back_are_erased_again() {
    use redis::AsyncCommands;
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("rp{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    std::fs::write(
        dir.path().join("datamap.toml"),
        format!(
            r#"{}
[[systems]]
name = "cache"
kind = "redis"
url_env = "E2E_REDIS_URL"
keys = [{{ type = "key", pattern = "{prefix}:sess:{{subject}}:*" }}, {{ type = "set_member", key = "{prefix}:online", member = "{{subject}}" }}, {{ type = "hash_field", key = "{prefix}:carts", field = "{{subject}}" }}]

[[systems]]
name = "crm"
kind = "http"
url_env = "E2E_CRM_URL"
secret_env = "E2E_CRM_SECRET"
mode = "sync"
"#,
            include_str!("../../../examples/demo-mart/datamap.toml")
        ),
    )
    .unwrap();
    let held = Arc::new(Mutex::new(
        ["5", "6", "7", "8", "9"].map(String::from).to_vec(),
    ));
    let (crm_url, seen) = service(held.clone()).await;
    let demo = Demo::start_env(
        dir.path(),
        50,
        &[],
        &[
            ("E2E_REDIS_URL", "redis://127.0.0.1:6379/"),
            ("E2E_CRM_URL", &crm_url),
            ("E2E_CRM_SECRET", SECRET),
        ],
    )
    .await;
    let pool = demo.mart().await;
    let users = clear_users(&pool, 2).await;
    pool.close().await;
    let (gone, stays) = (users[0].to_string(), users[1].to_string());
    held.lock().unwrap().extend([gone.clone(), stays.clone()]);
    let redis = redis::Client::open("redis://127.0.0.1:6379/").unwrap();
    let mut r = redis.get_multiplexed_async_connection().await.unwrap();
    let fill = |r: &mut redis::aio::MultiplexedConnection| {
        let mut r = r.clone();
        let (gone, stays, prefix) = (gone.clone(), stays.clone(), prefix.clone());
        async move {
            for u in [&gone, &stays] {
                let _: () = r.set(format!("{prefix}:sess:{u}:a"), "t").await.unwrap();
                let _: () = r.sadd(format!("{prefix}:online"), u).await.unwrap();
                let _: () = r
                    .hset(format!("{prefix}:carts"), u, "3 items")
                    .await
                    .unwrap();
            }
        }
    };
    fill(&mut r).await;
    let since = demo
        .ok("/v1/dev/clock/advance", json!({"seconds": 0}))
        .await["now"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = demo.create(users[0]).await;
    demo.to_cooling_off(&id).await;
    demo.advance(7 * 86_400 + 60).await;
    demo.wait_state(&id, "erased", 60).await;
    assert!(!held.lock().unwrap().contains(&gone));
    let sess = |r: &mut redis::aio::MultiplexedConnection, u: String| {
        let (mut r, prefix) = (r.clone(), prefix.clone());
        async move {
            let keys: Vec<String> = r.keys(format!("{prefix}:sess:{u}:*")).await.unwrap();
            let online: bool = r.sismember(format!("{prefix}:online"), &u).await.unwrap();
            let cart: bool = r.hexists(format!("{prefix}:carts"), &u).await.unwrap();
            (keys.len(), online, cart)
        }
    };
    assert_eq!(sess(&mut r, gone.clone()).await, (0, false, false));

    // Restored: the cache and the service hold the erased account again.
    fill(&mut r).await;
    held.lock().unwrap().push(gone.clone());
    let report = reapply_api(&demo, "cache", &since).await;
    assert_eq!(
        (report["matched"].as_u64(), report["erased"].as_u64()),
        (Some(1), Some(1)),
        "{report}"
    );
    assert_eq!(sess(&mut r, gone.clone()).await, (0, false, false));
    assert_eq!(sess(&mut r, stays.clone()).await, (1, true, true));
    let report = reapply_api(&demo, "crm", &since).await;
    assert_eq!(
        (report["matched"].as_u64(), report["erased"].as_u64()),
        (Some(1), Some(1)),
        "{report}"
    );
    assert!(report["scanned"].as_u64().unwrap() >= 7, "{report}");
    assert!(!held.lock().unwrap().contains(&gone));
    assert!(held.lock().unwrap().contains(&stays));
    // The service was paged through (two per page) and asked once to erase.
    let seen = seen.lock().unwrap().clone();
    assert!(seen.iter().filter(|x| x["type"] == "subjects.list").count() >= 4);
    let asked: Vec<&Value> = seen
        .iter()
        .filter(|x| x["type"] == "erasure.requested" && x["subject_id"] == json!(gone))
        .collect();
    assert_eq!(
        asked.len(),
        2,
        "the case's erasure, then the reapply: {asked:?}"
    );
    assert!(asked[1]["case_id"].as_str().unwrap().starts_with('r'));
    assert!(asked[1].get("callback_url").is_none());
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}:online"))
        .arg(format!("{prefix}:carts"))
        .arg(format!("{prefix}:sess:{stays}:a"))
        .query_async(&mut r)
        .await
        .unwrap();
}
