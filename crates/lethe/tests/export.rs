//! Data exports against the real binary: one archive from every kind of
//! system (Demo Mart's SQLite, PostgreSQL and MariaDB databases of the
//! machine, Redis, an HTTP service), encrypted at rest, single-use and
//! expiring links, manifest verification, deletion before erasure, a crash
//! in the middle of a build, and `lethe export` with its progress.

mod common;

use axum::routing::post;
use common::*;
use lethe_connect::http::sign;
use redis::AsyncCommands;
use serde_json::{Value, json};
use sqlx::{AnyPool, AssertSqlSafe, Executor};
use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SECRET: &str = "whsec_ZXhwb3J0LXNlcnZpY2Utc2VjcmV0LWZvci10ZXN0cw==";
const REVIEW: &str = "外卖送得很快，汤没有洒";

/// A platform service answering `export.requested`, signed, after `delay_ms`.
async fn service(delay_ms: Arc<AtomicU64>) -> String {
    let app = axum::Router::new().route(
        "/svc",
        post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let delay = delay_ms.load(Ordering::Relaxed);
                async move {
                    let h = |n: &str| headers.get(n).unwrap().to_str().unwrap().to_owned();
                    let key = lethe_connect::http::secret_bytes(SECRET);
                    let ts: i64 = h("webhook-timestamp").parse().unwrap();
                    assert_eq!(
                        h("webhook-signature"),
                        sign(&key, &h("webhook-id"), ts, &body)
                    );
                    let req: Value = serde_json::from_slice(&body).unwrap();
                    assert_eq!(req["type"], "export.requested");
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    let answer = json!({"datasets": [
                        {"name": "tickets", "rows": [
                            {"ticket": "T-1", "subject": req["subject_id"], "text": "退款进度查询"},
                            {"ticket": "T-2", "subject": req["subject_id"], "text": "发票抬头修改"}
                        ]},
                        {"name": "preferences", "rows": {"language": "zh-CN"}}
                    ]})
                    .to_string();
                    let now = jiff::Timestamp::now().as_second();
                    axum::response::Response::builder()
                        .header("content-type", "application/json")
                        .header("webhook-id", "msg_export")
                        .header("webhook-timestamp", now.to_string())
                        .header(
                            "webhook-signature",
                            sign(&key, "msg_export", now, answer.as_bytes()),
                        )
                        .body(axum::body::Body::from(answer))
                        .unwrap()
                }
            },
        ),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/svc", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    url
}

/// A scratch database on the machine's PostgreSQL or MariaDB server,
/// dropped by `drop_db` when the test passes.
async fn scratch(kind: &str) -> (String, String) {
    sqlx::any::install_default_drivers();
    let name = format!(
        "lethe_exp_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let (admin, url) = match kind {
        "postgres" => (
            "postgres://postgres@127.0.0.1:5432/postgres".to_owned(),
            format!("postgres://postgres@127.0.0.1:5432/{name}"),
        ),
        _ => (
            "mysql://root@127.0.0.1:3306/test".to_owned(),
            format!("mysql://root@127.0.0.1:3306/{name}"),
        ),
    };
    let a = AnyPool::connect(&admin).await.unwrap();
    a.execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .unwrap();
    a.close().await;
    (name, url)
}

async fn drop_db(kind: &str, name: &str) {
    let (admin, stmt) = match kind {
        "postgres" => (
            "postgres://postgres@127.0.0.1:5432/postgres",
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        ),
        _ => (
            "mysql://root@127.0.0.1:3306/test",
            format!("DROP DATABASE IF EXISTS {name}"),
        ),
    };
    let a = AnyPool::connect(admin).await.unwrap();
    a.execute(AssertSqlSafe(stmt)).await.unwrap();
    a.close().await;
}

fn datamap(prefix: &str) -> String {
    format!(
        r#"{}

[[systems]]
name = "loyalty"
kind = "postgres"
url_env = "EXP_PG_URL"

[[systems.tables]]
name = "members"
owner = "user_id"
action = "delete"

[[systems]]
name = "reviews"
kind = "mysql"
url_env = "EXP_MY_URL"

[[systems.tables]]
name = "reviews"
owner = "user_id"
action = "delete"

[[systems]]
name = "cache"
kind = "redis"
url_env = "EXP_REDIS_URL"
keys = [{{ type = "key", pattern = "{prefix}:sess:{{subject}}:*" }}, {{ type = "set_member", key = "{prefix}:online", member = "{{subject}}" }}]

[[systems]]
name = "crm"
kind = "http"
url_env = "EXP_CRM_URL"
secret_env = "EXP_CRM_SECRET"

[[systems]]
name = "paper_archive"
kind = "manual"
instructions = "Shred the paper contract."
due_days = 3
"#,
        include_str!("../../../examples/demo-mart/datamap.toml")
    )
}

struct Platform {
    prefix: String,
    pg: (String, String),
    my: (String, String),
    crm: String,
    delay: Arc<AtomicU64>,
}

impl Platform {
    async fn new() -> Platform {
        let pg = scratch("postgres").await;
        let p = AnyPool::connect(&pg.1).await.unwrap();
        for s in [
            "CREATE TABLE members (user_id BIGINT NOT NULL, tier TEXT NOT NULL, joined_at TIMESTAMPTZ NOT NULL, meta JSONB)",
            "INSERT INTO members VALUES (5, 'gold', '2024-02-29T08:00:00Z', '{\"city\": \"上海\"}'), (5, 'rail', '2025-01-01T00:00:00Z', NULL), (6, 'silver', '2024-01-01T00:00:00Z', NULL)",
        ] {
            p.execute(s).await.unwrap();
        }
        p.close().await;
        let my = scratch("mysql").await;
        let m = AnyPool::connect(&my.1).await.unwrap();
        m.execute("CREATE TABLE reviews (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, stars INT, body TEXT) DEFAULT CHARSET=utf8mb4")
            .await
            .unwrap();
        m.execute(AssertSqlSafe(format!(
            "INSERT INTO reviews VALUES (1, 5, 5, '{REVIEW}'), (2, 5, 4, 'ok'), (3, 5, 3, NULL), (4, 6, 1, 'no')"
        )))
        .await
        .unwrap();
        m.close().await;
        let prefix = format!("exp{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let redis = redis::Client::open("redis://127.0.0.1:6379/").unwrap();
        let mut r = redis.get_multiplexed_async_connection().await.unwrap();
        for s in 0..4 {
            let _: () = r
                .set(format!("{prefix}:sess:5:{s}"), format!("token-{s}"))
                .await
                .unwrap();
        }
        let _: () = r.sadd(format!("{prefix}:online"), "5").await.unwrap();
        let delay = Arc::new(AtomicU64::new(0));
        let crm = service(delay.clone()).await;
        Platform {
            prefix,
            pg,
            my,
            crm,
            delay,
        }
    }

    async fn start(&self, dir: &std::path::Path, extra: &[&str]) -> Demo {
        std::fs::write(dir.join("datamap.toml"), datamap(&self.prefix)).unwrap();
        Demo::start_env(
            dir,
            50,
            extra,
            &[
                ("EXP_PG_URL", &self.pg.1),
                ("EXP_MY_URL", &self.my.1),
                ("EXP_REDIS_URL", "redis://127.0.0.1:6379/"),
                ("EXP_CRM_URL", &self.crm),
                ("EXP_CRM_SECRET", SECRET),
            ],
        )
        .await
    }

    async fn drop(self) {
        drop_db("postgres", &self.pg.0).await;
        drop_db("mysql", &self.my.0).await;
    }
}

async fn wait_export(demo: &Demo, id: &str, want: &str, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (s, v) = demo.get(&format!("/v1/exports/{id}")).await;
        assert_eq!(s, 200, "{v}");
        if v["state"] == want {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "export not {want} after {secs} s: {v}; see {}",
            demo.dir.join("lethe.log").display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn fetch(demo: &Demo, link: &str) -> (u16, Vec<u8>) {
    let r = demo.http.get(link).send().await.unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

fn dataset<'a>(
    m: &'a lethe_export::Manifest,
    system: &str,
    name: &str,
) -> &'a lethe_export::DatasetEntry {
    m.datasets
        .iter()
        .find(|d| d.system == system && d.name.contains(name))
        .unwrap_or_else(|| panic!("no dataset {system}/{name} in {:?}", m.datasets))
}

fn file_text(zip: &[u8], path: &str) -> String {
    use std::io::Read;
    let mut z = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
    let mut s = String::new();
    z.by_name(path).unwrap().read_to_string(&mut s).unwrap();
    s
}

fn export_files(dir: &std::path::Path) -> Vec<String> {
    let mut out = vec![];
    for sub in ["exports", "exports/spool"] {
        if let Ok(rd) = std::fs::read_dir(dir.join(sub)) {
            for e in rd.flatten() {
                if e.path().is_file() {
                    out.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn one_archive_from_every_kind_of_system_with_a_single_use_link() {
    let platform = Platform::new().await;
    let dir = tempfile::tempdir().unwrap();
    let demo = platform.start(dir.path(), &[]).await;

    let (s, v) = demo.post("/v1/exports", json!({"subject_id": "5"})).await;
    assert_eq!(s, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let link = v["download_url"].as_str().unwrap().to_owned();
    assert_eq!(v["single_use"], true);
    // Before it is ready, the link says so (and how far it got).
    let ready = wait_export(&demo, &id, "ready", 60).await;
    let systems: Vec<&str> = ready["systems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["system"].as_str().unwrap())
        .collect();
    assert_eq!(systems, ["cache", "crm", "demo_mart", "loyalty", "reviews"]);
    assert!(
        ready["systems"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["percent"] == 100),
        "{ready}"
    );
    assert_eq!(ready["percent"], 100);

    // At rest the archive is sealed: no plaintext of the subject's data.
    let sealed = std::fs::read(dir.path().join(format!("exports/{id}.zip.sealed"))).unwrap();
    assert!(!sealed.windows(REVIEW.len()).any(|w| w == REVIEW.as_bytes()));
    assert!(sealed.starts_with(b"LETHEX1\0"), "not sealed");

    let (s, zip) = fetch(&demo, &link).await;
    assert_eq!(s, 200);
    assert_eq!(zip.len() as u64, ready["bytes"].as_u64().unwrap());
    let m = lethe_export::verify(Cursor::new(&zip)).unwrap();
    assert_eq!(m.export_id, id);
    assert_eq!(dataset(&m, "demo_mart", "users").rows, 1);
    assert_eq!(dataset(&m, "loyalty", "members").rows, 2);
    assert_eq!(dataset(&m, "reviews", "reviews").rows, 3);
    assert_eq!(dataset(&m, "cache", "sess").rows, 4);
    assert_eq!(dataset(&m, "cache", "online").rows, 1);
    assert_eq!(dataset(&m, "crm", "tickets").rows, 2);
    assert_eq!(dataset(&m, "crm", "preferences").rows, 1);
    assert!(!m.datasets.iter().any(|d| d.system == "paper_archive"));
    // Every column type comes out: PostgreSQL JSONB and timestamps, MariaDB
    // text in Chinese, Redis values; CSV beside JSON.
    let members: Vec<Value> =
        serde_json::from_str(&file_text(&zip, "loyalty/members.json")).unwrap();
    assert!(
        members.iter().any(|r| r["meta"]["city"] == "上海"),
        "{members:?}"
    );
    assert!(file_text(&zip, "reviews/reviews.json").contains(REVIEW));
    assert!(file_text(&zip, "reviews/reviews.csv").contains(REVIEW));
    assert!(file_text(&zip, "crm/tickets.csv").contains("退款进度查询"));
    let readme = file_text(&zip, "README.md");
    assert!(readme.contains("个人信息副本") && readme.contains("loyalty / members"));
    // Subject 6's rows are not in subject 5's copy.
    assert!(!file_text(&zip, "loyalty/members.json").contains("silver"));

    // Single use: the second request is refused, and the copy is gone.
    let (s, body) = fetch(&demo, &link).await;
    assert_eq!(s, 410, "{}", String::from_utf8_lossy(&body));
    let after = wait_export(&demo, &id, "downloaded", 10).await;
    assert_eq!(after["download_url"], Value::Null);
    let deadline = Instant::now() + Duration::from_secs(10);
    while export_files(dir.path()).iter().any(|f| f.starts_with(&id)) {
        assert!(Instant::now() < deadline, "{:?}", export_files(dir.path()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A forged token is not a link.
    let forged = link.replace("token=", "token=x");
    assert_eq!(fetch(&demo, &forged).await.0, 404);

    // The manifest catches a changed archive: `lethe export verify`.
    let good = dir.path().join("copy.zip");
    std::fs::write(&good, &zip).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["export", "verify"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("manifest verified"));
    let bad = dir.path().join("forged.zip");
    std::fs::write(&bad, forge(&zip, "reviews/reviews.csv")).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["export", "verify"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("reviews/reviews.csv") && err.contains("SHA-256"),
        "{err}"
    );

    // The audit log tells the story.
    assert_eq!(
        export_events(&demo, &id, 3).await,
        ["export.requested", "export.ready", "export.downloaded"]
    );
    drop(demo);
    platform.drop().await;
}

/// The archive with one file's content changed, the manifest kept.
fn forge(zip: &[u8], path: &str) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut src = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for i in 0..src.len() {
        let mut f = src.by_index(i).unwrap();
        let name = f.name().unwrap().into_owned();
        let mut body = Vec::new();
        f.read_to_end(&mut body).unwrap();
        if name == path {
            body.extend_from_slice("9,5,5,好评\n".as_bytes());
        }
        out.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
            .unwrap();
        out.write_all(&body).unwrap();
    }
    out.finish().unwrap().into_inner()
}

#[tokio::test]
async fn links_expire_and_exports_are_deleted_before_the_erasure_completes() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), 50).await;

    // An expiring (reusable) link works until it expires.
    let key = uuid::Uuid::new_v4().to_string();
    let auth = format!("Bearer {}", demo.key);
    let body = json!({"subject_id": "3", "single_use": false}).to_string();
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("idempotency-key", key.as_str()),
    ];
    let (s, v, _) = demo.raw_post("/v1/exports", &body, &headers).await;
    assert_eq!(s, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let link = v["download_url"].as_str().unwrap().to_owned();
    // A retry with the same key is the same export, with the same link.
    let (s, again, _) = demo.raw_post("/v1/exports", &body, &headers).await;
    assert_eq!(
        (s, &again["id"], &again["download_url"]),
        (200, &v["id"], &v["download_url"])
    );
    // The same key for another account is a conflict.
    let other = json!({"subject_id": "4"}).to_string();
    assert_eq!(demo.raw_post("/v1/exports", &other, &headers).await.0, 409);
    wait_export(&demo, &id, "ready", 30).await;
    for _ in 0..2 {
        let (s, zip) = fetch(&demo, &link).await;
        assert_eq!(s, 200);
        lethe_export::verify(Cursor::new(&zip)).unwrap();
    }
    // Both downloads are counted (each just after its last byte).
    assert_eq!(export_events(&demo, &id, 4).await.len(), 4);
    demo.advance(7 * 86_400 + 60).await;
    let expired = wait_export(&demo, &id, "expired", 30).await;
    assert_eq!(expired["downloads"], 2);
    let (s, body) = fetch(&demo, &link).await;
    assert_eq!(s, 410);
    assert!(String::from_utf8_lossy(&body).contains("expired"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while export_files(dir.path()).iter().any(|f| f.starts_with(&id)) {
        assert!(Instant::now() < deadline, "{:?}", export_files(dir.path()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // "Take a copy before you go": a step of the cancellation flow, whose
    // progress the case shows; the copy goes before the erasure completes.
    let case = demo.create(6).await;
    demo.to_cooling_off(&case).await;
    // Three days into cooling-off the user takes a copy; its link would
    // live past the erasure, which starts four days later.
    demo.advance(3 * 86_400).await;
    let (s, v) = demo
        .post(&format!("/v1/cases/{case}/exports"), json!({}))
        .await;
    assert_eq!(s, 202, "{v}");
    let exp = v["id"].as_str().unwrap().to_owned();
    let link = v["download_url"].as_str().unwrap().to_owned();
    wait_export(&demo, &exp, "ready", 30).await;
    let (_, c) = demo.get(&format!("/v1/cases/{case}")).await;
    assert_eq!(c["exports"][0]["id"], json!(exp), "{c}");
    assert_eq!(c["exports"][0]["systems"][0]["system"], "demo_mart");
    assert_eq!(c["exports"][0]["systems"][0]["percent"], 100);
    assert!(export_files(dir.path()).iter().any(|f| f.starts_with(&exp)));
    demo.advance(4 * 86_400 + 60).await;
    demo.wait_state(&case, "erased", 60).await;
    let (_, e) = demo.get(&format!("/v1/exports/{exp}")).await;
    assert_eq!(e["state"], "deleted", "{e}");
    assert!(!export_files(dir.path()).iter().any(|f| f.starts_with(&exp)));
    assert_eq!(fetch(&demo, &link).await.0, 410);
    // No new copy once the erasure has begun.
    let (s, v) = demo.post("/v1/exports", json!({"subject_id": "6"})).await;
    assert!(s == 409 || s == 422, "{s} {v}");
    let (s, _) = demo
        .post(&format!("/v1/cases/{case}/exports"), json!({}))
        .await;
    assert_eq!(s, 409);
    // The audit log records why the copy went.
    let (_, log) = demo.get("/v1/audit/export").await;
    let deleted = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["case_id"] == json!(exp) && e["kind"] == "export.deleted")
        .cloned()
        .unwrap();
    assert_eq!(deleted["detail"]["reason"], "erasure");
    assert_eq!(deleted["detail"]["case_id"], json!(case));

    // `lethe export request` shows the progress and verifies what it got.
    let out_file = dir.path().join("cli.zip");
    let out = tokio::process::Command::new(BIN)
        .args(["export", "request", "--url", &demo.url, "7", "-o"])
        .arg(&out_file)
        .env("LETHE_API_KEY", &demo.key)
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("demo_mart 100%"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("manifest verified"));
    lethe_export::verify(std::fs::File::open(&out_file).unwrap()).unwrap();
    // An agent takes a copy for a holder who called the hotline.
    let token = agent_session(&demo, "agent1", "agent").await;
    let agent_post = |path: &str, body: Value| {
        demo.http
            .post(format!("{}{path}", demo.url))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let r = agent_post("/v1/console/exports", json!({"subject_id": "9"}))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["requested_by"].as_str().unwrap().starts_with("agent:ag_"),
        "{v}"
    );
    let aid = v["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v: Value = demo
            .http
            .get(format!("{}/v1/console/exports/{aid}", demo.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["state"] == "ready" {
            // The agent never gets the link: the copy goes to the user. The
            // platform is told, and its key reads the link for the user.
            assert!(v.get("download_url").is_none_or(|u| u.is_null()), "{v}");
            let (_, notes) = demo.get("/v1/notifications").await;
            assert!(
                notes
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|n| n["kind"] == "export.ready"
                        && n["payload"]["export_id"] == json!(aid)
                        && n["payload"]["subject_id"] == "9"),
                "{notes}"
            );
            let (_, v) = demo.get(&format!("/v1/exports/{aid}")).await;
            let (s, zip) = fetch(&demo, v["download_url"].as_str().unwrap()).await;
            assert_eq!(s, 200);
            let m = lethe_export::verify(Cursor::new(&zip)).unwrap();
            assert_eq!(dataset(&m, "demo_mart", "users").rows, 1);
            break;
        }
        assert!(Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // An auditor may read but not request.
    let auditor = agent_session(&demo, "auditor1", "auditor").await;
    let r = demo
        .http
        .post(format!("{}/v1/console/exports", demo.url))
        .bearer_auth(&auditor)
        .json(&json!({"subject_id": "9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // Without the key in the environment it says what to do.
    let out = std::process::Command::new(BIN)
        .args(["export", "request", "--url", &demo.url, "7"])
        .env_remove("LETHE_API_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("LETHE_API_KEY"));
}

#[tokio::test]
async fn an_export_interrupted_by_a_crash_starts_again_cleanly() {
    let platform = Platform::new().await;
    let dir = tempfile::tempdir().unwrap();
    // The CRM answers slowly: the export is caught half-way.
    platform.delay.store(20_000, Ordering::Relaxed);
    let mut demo = platform.start(dir.path(), &["--lease-secs", "2"]).await;
    let (s, v) = demo.post("/v1/exports", json!({"subject_id": "5"})).await;
    assert_eq!(s, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let link = v["download_url"].as_str().unwrap().to_owned();
    // Systems are exported in name order: cache is done, crm is waiting.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = demo.get(&format!("/v1/exports/{id}")).await;
        if v["state"] == "building" && v["systems"][0]["percent"] == 100 {
            assert!(v["percent"].as_u64().unwrap() < 100);
            break;
        }
        assert!(Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // While it waits, the link says it is not ready.
    assert_eq!(fetch(&demo, &link).await.0, 409);
    assert!(
        export_files(dir.path())
            .iter()
            .any(|f| f == &format!("{id}.part"))
    );
    demo.kill9();

    platform.delay.store(0, Ordering::Relaxed);
    let demo = platform.start(dir.path(), &["--lease-secs", "2"]).await;
    // The restarted server listens on a new port: same path and token.
    let link = format!("{}{}", demo.url, &link[link.find("/v1/").unwrap()..]);
    let ready = wait_export(&demo, &id, "ready", 60).await;
    assert_eq!(ready["attempts"], 2, "{ready}");
    let files = export_files(dir.path());
    assert_eq!(files, [format!("{id}.zip.sealed")], "leftovers: {files:?}");
    let (s, zip) = fetch(&demo, &link).await;
    assert_eq!(s, 200);
    let m = lethe_export::verify(Cursor::new(&zip)).unwrap();
    assert_eq!(dataset(&m, "crm", "tickets").rows, 2);
    assert_eq!(dataset(&m, "reviews", "reviews").rows, 3);
    // One request, one ready: the crashed attempt left no trace but the retry.
    assert_eq!(
        export_events(&demo, &id, 3).await,
        ["export.requested", "export.ready", "export.downloaded"]
    );
    drop(demo);
    platform.drop().await;
}

#[tokio::test]
async fn a_copy_can_be_deleted_and_an_export_that_keeps_failing_ends_with_nothing_kept() {
    let dir = tempfile::tempdir().unwrap();
    // A CRM service that is down: nothing listens on its port.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/svc", l.local_addr().unwrap())
    };
    std::fs::write(
        dir.path().join("datamap.toml"),
        format!(
            "{}\n[[systems]]\nname = \"crm\"\nkind = \"http\"\nurl_env = \"EXP_CRM_URL\"\nsecret_env = \"EXP_CRM_SECRET\"\ntimeout_ms = 1000\n",
            include_str!("../../../examples/demo-mart/datamap.toml")
        ),
    )
    .unwrap();
    let demo = Demo::start_env(
        dir.path(),
        20,
        &[],
        &[("EXP_CRM_URL", &dead), ("EXP_CRM_SECRET", SECRET)],
    )
    .await;
    let (s, v) = demo.post("/v1/exports", json!({"subject_id": "2"})).await;
    assert_eq!(s, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    // Three attempts (5 s apart), then failed: the reason is on the export,
    // without personal data, and nothing of it stays on disk.
    let failed = wait_export(&demo, &id, "failed", 60).await;
    assert_eq!(failed["attempts"], 3, "{failed}");
    let why = failed["last_error"].as_str().unwrap();
    assert!(why.contains("crm"), "{why}");
    assert_eq!(failed["download_url"], Value::Null);
    let deadline = Instant::now() + Duration::from_secs(10);
    while export_files(dir.path()).iter().any(|f| f.starts_with(&id)) {
        assert!(Instant::now() < deadline, "{:?}", export_files(dir.path()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let link = v["download_url"].as_str().unwrap();
    assert_eq!(fetch(&demo, link).await.0, 410);
    drop(demo);

    // The user deletes a copy they no longer want (Demo Mart only).
    let dir2 = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir2.path(), 20).await;
    let (_, v) = demo.post("/v1/exports", json!({"subject_id": "2"})).await;
    let id = v["id"].as_str().unwrap().to_owned();
    let link = v["download_url"].as_str().unwrap().to_owned();
    wait_export(&demo, &id, "ready", 30).await;
    assert!(export_files(dir2.path()).iter().any(|f| f.starts_with(&id)));
    let r = demo
        .http
        .delete(format!("{}/v1/exports/{id}", demo.url))
        .bearer_auth(&demo.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["state"], "deleted", "{v}");
    assert!(!export_files(dir2.path()).iter().any(|f| f.starts_with(&id)));
    assert_eq!(fetch(&demo, &link).await.0, 410);
    // An export id that does not exist is 404.
    let (s, _) = demo
        .get(&format!("/v1/exports/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(s, 404);
}

/// A single-use link is spent only when the whole archive went out: a
/// download broken off after its first bytes leaves the link working, and
/// the next complete one spends it.
#[tokio::test]
async fn an_aborted_download_does_not_spend_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), 100).await;
    let mart = demo.mart().await;
    let user = clear_users(&mart, 1).await[0];
    // Enough incompressible rows for an archive far larger than the
    // buffers between Lethe and the client.
    let mut tx = mart.begin().await.unwrap();
    sqlx::query("INSERT INTO orders (id, user_id, status, total_fen, created_at) VALUES (99000001, ?1, 'completed', 100, '2026-01-01T00:00:00Z')")
        .bind(user)
        .execute(&mut *tx)
        .await
        .unwrap();
    for i in 0..40_000i64 {
        let noise: String = (0..8)
            .map(|k| {
                format!(
                    "{:016x}",
                    (i * 8 + k).wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as i64)
                )
            })
            .collect();
        sqlx::query("INSERT INTO order_items (id, order_id, sku, qty, price_fen) VALUES (?1, 99000001, ?2, 1, 100)")
            .bind(99_000_000 + i)
            .bind(noise)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let (s, v) = demo
        .post("/v1/exports", json!({"subject_id": user.to_string()}))
        .await;
    assert_eq!(s, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let link = v["download_url"].as_str().unwrap().to_owned();
    let ready = wait_export(&demo, &id, "ready", 120).await;
    assert!(ready["bytes"].as_u64().unwrap() > 4_000_000, "{ready}");
    // Read the first chunk, then go away.
    {
        let mut r = demo.http.get(&link).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let first = r.chunk().await.unwrap().unwrap();
        assert!(!first.is_empty());
    }
    // The link works again (once the server noticed the client left).
    let deadline = Instant::now() + Duration::from_secs(20);
    let zip = loop {
        let (s, body) = fetch(&demo, &link).await;
        if s == 200 {
            break body;
        }
        assert_eq!(s, 409, "{}", String::from_utf8_lossy(&body));
        assert!(
            Instant::now() < deadline,
            "the link was spent by the aborted download"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(zip.len() as u64, ready["bytes"].as_u64().unwrap());
    assert!(lethe_export::verify(Cursor::new(&zip)).is_ok());
    // Spent by the complete download.
    wait_export(&demo, &id, "downloaded", 10).await;
    assert_eq!(fetch(&demo, &link).await.0, 410);
}

/// The kinds of an export's audit events, once `want` of them are there:
/// a download is recorded when its body is dropped, just after the client
/// has read the last byte, so the log is read until it has caught up.
async fn export_events(demo: &Demo, id: &str, want: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, log) = demo.get("/v1/audit/export").await;
        let kinds: Vec<String> = log["events"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|e| e["case_id"] == json!(id))
                    .filter_map(|e| e["kind"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if kinds.len() >= want || Instant::now() >= deadline {
            return kinds;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
