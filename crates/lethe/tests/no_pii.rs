//! Personal data planted through every endpoint never reaches the logs or
//! an error body.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn planted_personal_data_never_reaches_logs_or_error_bodies() {
    let dir = tempfile::tempdir().unwrap();
    // Debug level: every request and every library's log lines count.
    let demo = Demo::start_env(dir.path(), 200, &[], &[("LETHE_LOG", "debug")]).await;
    let mart = demo.mart().await;
    let user = clear_users(&mart, 1).await[0];
    let (phone, email): (String, String) =
        sqlx::query_as("SELECT phone, email FROM users WHERE id = ?1")
            .bind(user)
            .fetch_one(&mart)
            .await
            .unwrap();
    let (name, idn): (String, String) =
        sqlx::query_as("SELECT legal_name, id_number FROM real_names WHERE user_id = ?1")
            .bind(user)
            .fetch_one(&mart)
            .await
            .unwrap();
    let planted = [phone.as_str(), email.as_str(), name.as_str(), idn.as_str()];
    let mut bodies: Vec<String> = vec![];
    let post = |path: String, body: serde_json::Value| {
        let demo = &demo;
        async move {
            let (s, v) = demo.post(&path, body).await;
            (s, v.to_string())
        }
    };
    // Good and bad requests carrying the data, through every kind of endpoint.
    for body in [
        json!({"subject_id": phone, "channel": "app"}),
        json!({"subject_id": user.to_string(), "channel": email}),
        json!({"subject_id": user.to_string(), "channel": "app", "name": name}),
        json!({"subject_id": idn, "channel": "app"}),
    ] {
        bodies.push(post("/v1/cases".into(), body).await.1);
    }
    let id = demo.create(user).await;
    for body in [
        json!({"code": phone}),
        json!({"code": idn}),
        json!({"code": "123456", "phone": phone}),
    ] {
        bodies.push(
            post(format!("/v1/cases/{id}/verification/sms/verify"), body)
                .await
                .1,
        );
    }
    bodies.push(
        post(
            format!("/v1/cases/{id}/acknowledgements"),
            json!({"consequence_id": name, "version": 1, "locale": "en"}),
        )
        .await
        .1,
    );
    bodies.push(
        post(
            format!("/v1/cases/{id}/settlements"),
            json!({"asset_id": idn, "option": "forfeit", "locale": "en"}),
        )
        .await
        .1,
    );
    bodies.push(post(format!("/v1/cases/{id}/settlements"), json!({"asset_id": "points", "option": "transfer", "locale": "en", "transfer_to": phone})).await.1);
    bodies.push(post("/v1/vault/encrypt".into(), json!({"items": [{"subject_id": user.to_string(), "field": "id_number", "plaintext": idn}, {"subject_id": phone, "field": email, "plaintext": name}]})).await.1);
    bodies.push(post("/v1/vault/decrypt".into(), json!({"items": [{"subject_id": user.to_string(), "field": "id_number", "ciphertext": format!("lv1:{idn}")}]})).await.1);
    bodies.push(
        post(
            "/v1/vault/blind-index".into(),
            json!({"items": [{"kind": "phone", "value": phone}, {"kind": name, "value": idn}]}),
        )
        .await
        .1,
    );
    bodies.push(
        post(
            "/v1/carrier-events".into(),
            json!({"event": "recycled", "phone": phone}),
        )
        .await
        .1,
    );
    bodies.push(
        post(
            "/v1/carrier-events".into(),
            json!({"event": email, "phone": phone}),
        )
        .await
        .1,
    );
    bodies.push(
        post(
            "/v1/claims".into(),
            json!({"id_number": idn, "documents": [{"kind": name, "content_base64": "!!"}]}),
        )
        .await
        .1,
    );
    bodies.push(
        post(
            "/v1/console/login".into(),
            json!({"username": email, "password": idn, "totp": phone}),
        )
        .await
        .1,
    );
    for q in [
        format!("kind=phone&value={phone}"),
        format!("kind={email}&value={idn}"),
    ] {
        bodies.push(
            demo.get(&format!("/v1/identifiers/check?{q}"))
                .await
                .1
                .to_string(),
        );
    }
    bodies.push(demo.get(&format!("/v1/cases/{phone}")).await.1.to_string());
    // Exports: bad requests carrying the data, and a real export of the
    // user's data (its build and download logs count).
    for body in [
        json!({"subject_id": phone}),
        json!({"subject_id": user.to_string(), "single_use": email}),
        json!({"subject_id": idn, "name": name}),
    ] {
        bodies.push(post("/v1/exports".into(), body).await.1);
    }
    bodies.push(
        post(
            format!("/v1/cases/{id}/exports"),
            json!({"single_use": name}),
        )
        .await
        .1,
    );
    bodies.push(
        demo.get(&format!("/v1/exports/{phone}"))
            .await
            .1
            .to_string(),
    );
    let (s, exp) = demo
        .post("/v1/exports", json!({"subject_id": user.to_string()}))
        .await;
    assert_eq!(s, 202, "{exp}");
    let link = exp["download_url"].as_str().unwrap().to_owned();
    let bad_link = format!(
        "{}/v1/exports/{}/download?token={idn}",
        demo.url,
        exp["id"].as_str().unwrap()
    );
    bodies.push(
        demo.http
            .get(&bad_link)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, v) = demo
            .get(&format!("/v1/exports/{}", exp["id"].as_str().unwrap()))
            .await;
        if v["state"] == "ready" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let zip = demo
        .http
        .get(&link)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(zip.len() > 100);
    // Let the erasure run too (its logs count).
    demo.to_cooling_off(&id).await.to_string();
    demo.advance(7 * 86_400 + 60).await;
    demo.wait_state(&id, "erased", 60).await;
    bodies.push(
        post(
            format!("/v1/cases/{id}/review"),
            json!({"decision": "reject", "reason": name}),
        )
        .await
        .1,
    );

    for b in &bodies {
        for p in planted {
            assert!(!b.contains(p), "an error body echoes personal data: {b}");
        }
    }
    let logs = std::fs::read_to_string(dir.path().join("lethe.log")).unwrap();
    assert!(logs.lines().count() > 3, "the server logged something");
    for p in planted {
        assert!(
            !logs.contains(p),
            "the logs hold personal data ({} chars)",
            p.len()
        );
    }
}
