//! Failure handling and the production (`serve`) mode.

mod common;

use common::*;
use serde_json::json;
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
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\ndatamap = \"{}\"\n",
            data.display(),
            dir.path().join("datamap.toml").display()
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

    let (ok, key, err) = lethe(
        &["apikey", "create", "--config", cfg_s, "--name", "shop"],
        &env,
    );
    assert!(ok, "{err}");
    let key = key.trim().to_owned();
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
    let mut up = false;
    for _ in 0..200 {
        if http
            .get(format!("{url}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "serve did not become ready");
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
