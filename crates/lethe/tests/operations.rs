//! Failure handling and the production (`serve`) mode.

mod common;

use common::*;
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test]
async fn a_system_that_keeps_failing_leaves_the_case_failed_until_an_operator_retries() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start_with(
        dir.path(),
        300,
        &["--max-attempts", "2", "--lease-secs", "2"],
    )
    .await;
    let mart = demo.mart().await;
    let user = clear_users(&mart, 3).await[1];
    let expected = subject_counts(&mart, user).await;
    // The platform database refuses to delete users (as a locked table would).
    sqlx::query("CREATE TRIGGER lock_users BEFORE DELETE ON users BEGIN SELECT RAISE(ABORT, 'users table is locked for maintenance'); END")
        .execute(&mart)
        .await
        .unwrap();
    let id = demo.create(user).await;
    demo.to_cooling_off(&id).await;
    demo.advance(7 * 86_400 + 60).await;
    demo.wait_state(&id, "failed", 60).await;
    let (_, case) = demo.get(&format!("/v1/cases/{id}")).await;
    let failure = case["failure"].as_str().unwrap();
    assert!(
        failure.contains("demo_mart") && failure.contains("locked for maintenance"),
        "{failure}"
    );
    assert!(case["next_step"].as_str().unwrap().contains("operator"));
    // The failed transaction rolled back: nothing of the subject is gone.
    assert_eq!(subject_counts(&mart, user).await, expected);

    sqlx::query("DROP TRIGGER lock_users")
        .execute(&mart)
        .await
        .unwrap();
    let v = demo.ok(&format!("/v1/cases/{id}/retry"), json!({})).await;
    assert_eq!(v["state"], "erasing");
    demo.wait_state(&id, "erased", 60).await;
    let (_, receipt) = demo.get(&format!("/v1/cases/{id}/receipt")).await;
    for (t, n) in &expected {
        assert_eq!(receipt_rows(&receipt, t), *n, "{t}");
    }
}

fn lethe(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut c = Command::new(BIN);
    c.args(args).stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn serve_mode_has_a_fixed_clock_and_managed_keys() {
    let dir = tempfile::tempdir().unwrap();
    // Let the demo generate Demo Mart and its data map, then stop it.
    {
        let mut demo = Demo::start(dir.path(), 200).await;
        demo.kill9();
    }
    let data = dir.path().join("prod");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.path().join("lethe.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\ndatamap = \"{}\"\n{}",
            data.display(),
            dir.path().join("datamap.toml").display(),
            {
                // Its own keys, so its own database too.
                std::fs::create_dir_all(&data).unwrap();
                store_url(&data)
                    .map(|u| format!("[store]\nurl = \"{u}\"\n"))
                    .unwrap_or_default()
            }
        ),
    )
    .unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let mart_url = format!("sqlite://{}", dir.path().join("demo-mart.db").display());
    let env = [("DEMO_MART_URL", mart_url.as_str())];

    // config check: fine with the variable, a clear error without it.
    let (ok, out, _) = lethe(&["config", "check", "--config", cfg_s], &env);
    assert!(ok && out.contains("is valid"), "{out}");
    let (ok, _, err) = lethe(&["config", "check", "--config", cfg_s], &[]);
    assert!(!ok && err.contains("DEMO_MART_URL"), "{err}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "data_dir = \"x\"\ndatamap = \"y\"\n[worker]\nconcurrency = 0\n",
    )
    .unwrap();
    let (ok, _, err) = lethe(
        &["config", "check", "--config", bad.to_str().unwrap()],
        &env,
    );
    assert!(!ok && err.contains("worker.concurrency"), "{err}");
    // A malformed calendar file is refused by config check (the same parser
    // as start-up), with its line.
    let cal = dir.path().join("calendar.toml");
    std::fs::write(
        &cal,
        "[[year]]\nyear = 2027\nsource = \"notice\"\nholidays = [\"2027-13-01\"]\n",
    )
    .unwrap();
    let with_cal = dir.path().join("with-calendar.toml");
    std::fs::write(
        &with_cal,
        format!(
            "calendar_file = \"{}\"\n{}",
            cal.display(),
            std::fs::read_to_string(&cfg).unwrap()
        ),
    )
    .unwrap();
    let (ok, _, err) = lethe(
        &["config", "check", "--config", with_cal.to_str().unwrap()],
        &env,
    );
    assert!(!ok && err.contains("line"), "{err}");

    let (ok, key, err) = lethe(
        &["apikey", "create", "--config", cfg_s, "--name", "shop"],
        &env,
    );
    assert!(ok, "{err}");
    let key = key.trim().to_owned();
    // A key may not pass for the console or an agent.
    for bad in ["console", "agent:ag_1", "a b"] {
        let (ok, _, err) = lethe(
            &["apikey", "create", "--config", cfg_s, "--name", bad],
            &env,
        );
        assert!(!ok && err.contains("--name"), "{bad}: {err}");
    }
    let (ok, key2, _) = lethe(
        &["apikey", "create", "--config", cfg_s, "--name", "old"],
        &env,
    );
    assert!(ok);
    let (ok, _, _) = lethe(
        &["apikey", "revoke", "--config", cfg_s, "--name", "old"],
        &env,
    );
    assert!(ok);

    let mut child = Command::new(BIN)
        .args(["serve", "--config", cfg_s])
        .env("DEMO_MART_URL", &mart_url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let http = http();
    assert!(ready(&http, port, 200).await, "serve did not become ready");
    let post = |path: &str, k: &str| {
        http.post(format!("{url}{path}"))
            .bearer_auth(k.to_owned())
            .header("content-type", "application/json")
            .header("idempotency-key", uuid::Uuid::new_v4().to_string())
            .body(r#"{"seconds": 604800}"#)
            .send()
    };
    // No route can move a production clock.
    let r = post("/v1/dev/clock/advance", &key).await.unwrap();
    assert_eq!(r.status(), 404);
    let doc: serde_json::Value = http
        .get(format!("{url}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .all(|p| !p.starts_with("/v1/dev"))
    );
    // A revoked key is refused; a live one works.
    let r = post("/v1/cases", key2.trim()).await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(format!("{url}/v1/cases"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .header("idempotency-key", "p1")
        .body(r#"{"subject_id":"5","channel":"hotline"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn backups_keep_keys_apart_and_a_restore_never_resurrects_an_erased_key() {
    if postgres_store() {
        // `lethe backup` copies the SQLite store; PostgreSQL has its own tools.
        eprintln!("skipped: the store is PostgreSQL");
        return;
    }
    use lethe_client::{Client, DecryptItem, EncryptItem, FieldError};
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), 200).await;
    let users = clear_users(&demo.mart().await, 2).await;
    let (a, b) = (users[0].to_string(), users[1].to_string());
    let client = Client::new(&demo.url, &demo.key).unwrap();
    let ct = client
        .encrypt(&[
            EncryptItem {
                subject_id: &a,
                field: "id_number",
                plaintext: "A-secret",
            },
            EncryptItem {
                subject_id: &b,
                field: "id_number",
                plaintext: "B-secret",
            },
        ])
        .await
        .unwrap();
    let (ca, cb) = (ct[0].clone().unwrap(), ct[1].clone().unwrap());
    let cfg = dir.path().join("lethe.toml");
    std::fs::write(&cfg, common::config_toml(dir.path())).unwrap();
    let backups = dir.path().join("backups");
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{:?}: {}",
            args,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let pick = |out: &str, k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap()
            .trim()
            .to_owned()
    };
    // Backup 1 while the server runs: both keys.
    let out1 = run(&[
        "backup",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        backups.to_str().unwrap(),
    ]);
    let keys1 = pick(&out1, "keys: ");
    // Erase A (its key is destroyed), then backup 2.
    let id = demo.create(users[0]).await;
    demo.to_cooling_off(&id).await;
    demo.advance(7 * 86_400 + 60).await;
    demo.wait_state(&id, "erased", 60).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let out2 = run(&[
        "backup",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        backups.to_str().unwrap(),
    ]);
    let data2 = pick(&out2, "data: ");
    // The data backup holds no wrapped key.
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .connect(&format!("sqlite://{data2}/lethe.db"))
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM vault_keys")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
    pool.close().await;

    // Restore data 2 with the OLDER keys backup into a new directory.
    let new = tempfile::tempdir().unwrap();
    for f in [
        "demo-mart.db",
        "datamap.toml",
        "demo-api-key",
        "demo-clock-offset",
    ] {
        std::fs::copy(dir.path().join(f), new.path().join(f)).unwrap();
    }
    let cfg2 = new.path().join("lethe.toml");
    std::fs::write(
        &cfg2,
        format!(
            "data_dir = \"{}\"\ndatamap = \"{}\"\n",
            new.path().display(),
            new.path().join("datamap.toml").display()
        ),
    )
    .unwrap();
    let out = run(&[
        "restore",
        "--config",
        cfg2.to_str().unwrap(),
        "--data",
        &data2,
        "--keys",
        &keys1,
    ]);
    // B's key and the keys of the demo's three console agents (their
    // TOTP secrets are sealed by the vault); never A's erased key.
    assert!(
        out.contains("4 vault key(s) restored"),
        "only B's key (and the demo agents') comes back: {out}"
    );
    let restored = Demo::start(new.path(), 200).await;
    let c2 = Client::new(&restored.url, &restored.key).unwrap();
    let r = c2
        .decrypt(&[
            DecryptItem {
                subject_id: &a,
                field: "id_number",
                ciphertext: &ca,
            },
            DecryptItem {
                subject_id: &b,
                field: "id_number",
                ciphertext: &cb,
            },
        ])
        .await
        .unwrap();
    assert!(matches!(&r[0], Err(FieldError::Erased(_))), "{:?}", r[0]);
    assert_eq!(r[1].as_deref(), Ok("B-secret"));
    // A receipt and the audit log survived the restore.
    let (s, _) = restored.get(&format!("/v1/cases/{id}/receipt")).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn one_platform_cannot_see_or_touch_another_platforms_cases() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), 100).await;
    let id = demo
        .create(clear_users(&demo.mart().await, 1).await[0])
        .await;
    let cfg = dir.path().join("lethe.toml");
    std::fs::write(&cfg, common::config_toml(dir.path())).unwrap();
    let (ok, other, err) = lethe(
        &[
            "apikey",
            "create",
            "--config",
            cfg.to_str().unwrap(),
            "--name",
            "other-platform",
        ],
        &[],
    );
    assert!(ok, "{err}");
    let other = other.trim().to_owned();
    let http = http();
    let r = http
        .get(format!("{}/v1/cases/{id}", demo.url))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        404,
        "another platform's case looks like no case"
    );
    let r = http
        .post(format!("{}/v1/cases/{id}/withdraw", demo.url))
        .bearer_auth(&other)
        .header("content-type", "application/json")
        .header("idempotency-key", "x1")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(demo.state(&id).await, "submitted", "nothing changed");
}

#[tokio::test]
async fn a_slow_client_is_cut_off_and_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), 50).await;
    let addr = demo.url.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: lethe\r\n")
        .await
        .unwrap();
    // Meanwhile the server answers others.
    let (s, _) = demo.get("/healthz").await;
    assert_eq!(s, 200);
    // The head never completes: the connection is closed within the limit.
    let started = std::time::Instant::now();
    let mut buf = [0u8; 256];
    let r = tokio::time::timeout(Duration::from_secs(20), slow.read(&mut buf))
        .await
        .expect("the server must cut the slow client off");
    assert!(matches!(r, Ok(_) | Err(_)));
    assert!(started.elapsed() < Duration::from_secs(15));
}

/// The shipped example configuration passes `lethe config check`, and
/// `lethe serve` starts with it (paths and port adjusted to the test; its
/// store on the machine's PostgreSQL, its events on the machine's NATS).
#[tokio::test]
async fn the_example_configuration_checks_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut demo = Demo::start(dir.path(), 200).await;
        demo.kill9();
    }
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(repo.join("examples/lethe.toml")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = dir.path().join("example");
    let datamap = repo.join("examples/demo-mart/datamap.toml");
    let adjusted = text
        .replace(
            "listen = \"127.0.0.1:8080\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        )
        .replace(
            "data_dir = \"var/example\"",
            &format!("data_dir = \"{}\"", data.display()),
        )
        .replace(
            "datamap = \"examples/demo-mart/datamap.toml\"",
            &format!("datamap = \"{}\"", datamap.display()),
        );
    assert!(
        adjusted.contains(&port.to_string()) && adjusted.contains(&*data.to_string_lossy()),
        "the example's listen or data_dir line changed; adjust this test"
    );
    let cfg = dir.path().join("lethe.toml");
    std::fs::write(&cfg, adjusted).unwrap();
    // A database of its own (the demo's holds the demo's wrapped keys).
    std::fs::create_dir_all(&data).unwrap();
    let store = pg_store_url(&data);
    let mart_url = format!("sqlite://{}", dir.path().join("demo-mart.db").display());
    let env = [
        ("DEMO_MART_URL", mart_url.as_str()),
        ("LETHE_STORE_URL", store.as_str()),
        (
            "LETHE_WEBHOOK_SECRET",
            "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        ),
        (
            "LETHE_SESSION_SECRET",
            "an-example-session-secret-of-32-bytes!",
        ),
        (
            "LETHE_SMS_SECRET",
            "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        ),
        (
            "LETHE_CARRIER_SECRET",
            "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        ),
    ];
    let cfg_s = cfg.to_str().unwrap();
    let (ok, out, err) = lethe(&["config", "check", "--config", cfg_s], &env);
    assert!(ok && out.contains("is valid"), "{out}\n{err}");
    let mut c = Command::new(BIN);
    c.args(["serve", "--config", cfg_s])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let up = ready(&http(), port, 300).await;
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(
        up,
        "serve did not become ready with the example configuration: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The data directory is the installation's own: a loose one is tightened
/// at start (and said so in the log), and what Lethe makes is 0600.
#[tokio::test]
async fn the_data_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let stale = dir.path().join("notes.txt");
    std::fs::write(&stale, b"left by an operator").unwrap();
    std::fs::set_permissions(&stale, std::fs::Permissions::from_mode(0o644)).unwrap();
    let demo = Demo::start(dir.path(), 100).await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dir.path()), 0o700);
    assert_eq!(mode(&stale), 0o600);
    for f in ["demo-mart.db", "lethe.key"] {
        assert_eq!(mode(&dir.path().join(f)), 0o600, "{f}");
    }
    if !postgres_store() {
        for f in ["lethe.db", "lethe.db-wal"] {
            let p = dir.path().join(f);
            if p.exists() {
                assert_eq!(mode(&p), 0o600, "{f}");
            }
        }
    }
    let log = std::fs::read_to_string(dir.path().join("lethe.log")).unwrap();
    assert!(log.contains("tightened"), "{log}");
    drop(demo);
}

/// Whether `lethe serve` on `port` answers /readyz 200 within `tries` × 50 ms.
async fn ready(http: &reqwest::Client, port: u16, tries: u32) -> bool {
    for _ in 0..tries {
        if http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// One client cannot take the service down: past its share of connections
/// it is answered 503 (health checks still answered), and served again
/// once it lets go.
#[tokio::test]
async fn one_client_gets_only_its_share_of_connections() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut demo = Demo::start(dir.path(), 100).await;
        demo.kill9();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = dir.path().join("serve");
    std::fs::create_dir_all(&data).unwrap();
    let cfg = dir.path().join("limits.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\ndatamap = \"{}\"\n{}[limits]\nmax_connections = 64\n",
            data.display(),
            dir.path().join("datamap.toml").display(),
            store_url(&data)
                .map(|u| format!("[store]\nurl = \"{u}\"\n"))
                .unwrap_or_default()
        ),
    )
    .unwrap();
    let mart_url = format!("sqlite://{}", dir.path().join("demo-mart.db").display());
    let mut child = Command::new(BIN)
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .env("DEMO_MART_URL", &mart_url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(ready(&http(), port, 300).await, "serve did not start");
    let fresh = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    };
    // A client holds idle connections (64 / 8 = 8 are its share).
    let idle: Vec<std::net::TcpStream> = (0..8)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = fresh()
        .get(format!("http://127.0.0.1:{port}/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let r = fresh()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "health checks still get through");
    drop(idle);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = fresh()
        .get(format!("http://127.0.0.1:{port}/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "served again once it let go");
    let _ = child.kill();
    let _ = child.wait();
}

/// An operator sees what Lethe will compute: a year's days off, and a
/// deadline from a date, provisional beyond the calendar.
#[test]
fn calendar_commands_show_what_lethe_computes() {
    let (ok, out, err) = lethe(
        &[
            "calendar",
            "deadline",
            "--from",
            "2026-12-15",
            "--working-days",
            "15",
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("2027-01-07T00:00:00+08:00") && out.contains("provisional"),
        "{out}"
    );
    let (ok, out, _) = lethe(
        &[
            "calendar",
            "deadline",
            "--from",
            "2026-03-02",
            "--working-days",
            "3",
        ],
        &[],
    );
    assert!(ok && !out.contains("provisional"), "{out}");
    let (ok, out, _) = lethe(&["calendar", "show", "2026"], &[]);
    assert!(
        ok && out.contains("2026-02-14 Saturday  working day"),
        "{out}"
    );
    let (ok, out, _) = lethe(&["calendar", "show", "2027"], &[]);
    assert!(
        ok && out.contains("not covered") && out.contains("2027-02-08 Monday    day off"),
        "{out}"
    );
    let (ok, _, err) = lethe(
        &[
            "calendar",
            "deadline",
            "--from",
            "15/12/2026",
            "--working-days",
            "3",
        ],
        &[],
    );
    assert!(!ok && err.contains("YYYY-MM-DD"), "{err}");
}

/// The demo writes its configuration into its data directory, so the
/// commands that read one (audit export, report) run against it while it
/// serves, as its start-up text says.
#[tokio::test]
async fn the_demo_writes_its_configuration_for_the_audit_and_report_commands() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), 100).await;
    let user = clear_users(&demo.mart().await, 1).await[0];
    let id = demo.create(user).await;
    demo.to_cooling_off(&id).await;
    let cfg = dir.path().join("lethe.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        text.contains("data_dir") && text.contains("[policy]"),
        "{text}"
    );
    let run = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let log = dir.path().join("audit.log");
    run(&["audit", "export", "--out", log.to_str().unwrap()]);
    assert!(
        std::fs::metadata(&log).unwrap().len() > 0,
        "an empty audit log"
    );
    let report = dir.path().join("report");
    run(&[
        "report",
        "--from",
        "2020-01-01",
        "--to",
        "2100-01-01",
        "--out",
        report.to_str().unwrap(),
    ]);
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("report.json")).unwrap())
            .unwrap();
    assert!(r["report"]["cases"].as_u64().unwrap() >= 1, "{r}");
    drop(demo);
}
