//! The agent console: accounts with TOTP, the authorization matrix, the
//! hotline and counter channels, and step-up assurance for money.

mod common;

use common::*;
use serde_json::{Value, json};

struct Login {
    token: String,
}

async fn login(demo: &Demo, user: &str, password: &str, code: &str) -> (u16, Value) {
    let (s, v, _) = demo
        .raw_post(
            "/v1/console/login",
            &json!({"username": user, "password": password, "totp": code}).to_string(),
            &[("content-type", "application/json")],
        )
        .await;
    (s, v)
}

/// A sign-in from another client address (Linux routes all of 127/8 to
/// the loopback interface).
async fn login_from(
    demo: &Demo,
    ip: [u8; 4],
    user: &str,
    password: &str,
    code: &str,
) -> (u16, Value) {
    let client = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(ip))
        .build()
        .unwrap();
    let r = client
        .post(format!("{}/v1/console/login", demo.url))
        .json(&json!({"username": user, "password": password, "totp": code}))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn console(demo: &Demo, token: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
    let rb = match method {
        "GET" => demo.http.get(format!("{}{}", demo.url, path)),
        _ => demo
            .http
            .post(format!("{}{}", demo.url, path))
            .header("content-type", "application/json")
            .body(body.to_string()),
    };
    let r = rb.bearer_auth(token).send().await.unwrap();
    let s = r.status().as_u16();
    (
        s,
        serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn roles_channels_and_step_up() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), 300).await;
    let mut sessions = std::collections::HashMap::new();
    for role in ["agent", "reviewer", "admin", "auditor"] {
        let (pw, secret) = create_agent(dir.path(), &format!("{role}1"), role);
        if role == "agent" {
            // A wrong password, a wrong code, then the right ones.
            assert_eq!(
                login(&demo, "agent1", "nope", &totp(&secret, 0)).await.0,
                401
            );
            assert_eq!(login(&demo, "agent1", &pw, "000000").await.0, 401);
        }
        let code = totp(&secret, 0);
        let (s, v) = login(&demo, &format!("{role}1"), &pw, &code).await;
        assert_eq!(s, 200, "{v}");
        // The same code cannot be used twice.
        assert_eq!(login(&demo, &format!("{role}1"), &pw, &code).await.0, 401);
        sessions.insert(
            role,
            Login {
                token: v["token"].as_str().unwrap().to_owned(),
            },
        );
    }
    // Five failures lock the account.
    let (pw, secret) = create_agent(dir.path(), "victim", "agent");
    for _ in 0..5 {
        assert_eq!(
            login(&demo, "victim", "wrong", &totp(&secret, 0)).await.0,
            401
        );
    }
    assert_eq!(login(&demo, "victim", &pw, &totp(&secret, 1)).await.0, 429);
    // Without the password, a locked account answers like any refusal (and
    // like an unknown one): nobody else learns that it exists or is locked.
    let (s, v) = login(&demo, "victim", "wrong", &totp(&secret, 1)).await;
    assert_eq!(s, 401, "{v}");
    let (s2, v2) = login(&demo, "nobody.here", "wrong", "000000").await;
    assert_eq!((s2, &v2["detail"]), (401, &v["detail"]), "{v2}");
    // The lockout is the failing address's own: the agent, from another
    // address, signs in. Nobody can lock an agent out at will.
    let (s, v) = login_from(&demo, [127, 0, 0, 2], "victim", &pw, &totp(&secret, 1)).await;
    assert_eq!(s, 200, "{v}");
    // One address trying many accounts is throttled after 20 failures,
    // before any password is checked.
    for i in 0..20 {
        let (s, v) = login_from(&demo, [127, 0, 0, 3], &format!("guess{i}"), "x", "000000").await;
        assert_eq!(s, 401, "{v}");
    }
    let (s, v) = login_from(&demo, [127, 0, 0, 3], "victim", &pw, &totp(&secret, 2)).await;
    assert_eq!(
        (s, v["type"].as_str()),
        (429, Some("urn:lethe:problem:throttled")),
        "{v}"
    );
    assert!(
        v["detail"].as_str().unwrap().contains("this address"),
        "{v}"
    );
    // No session, a made-up session: refused.
    assert_eq!(
        console(
            &demo,
            "ls_made_up",
            "GET",
            "/v1/console/report?from=2000-01-01&to=2100-01-01",
            json!({})
        )
        .await
        .0,
        401
    );

    let mart = demo.mart().await;
    let user = clear_users(&mart, 3).await[1];
    let (name, idn, phone): (String, String, String) = sqlx::query_as("SELECT r.legal_name, r.id_number, u.phone FROM users u JOIN real_names r ON r.user_id = u.id WHERE u.id = ?1").bind(user).fetch_one(&mart).await.unwrap();

    // The authorization matrix: every role against every endpoint.
    let (_, case) = console(
        &demo,
        &sessions["agent"].token,
        "POST",
        "/v1/console/cases",
        json!({"subject_id": user.to_string(), "channel": "hotline"}),
    )
    .await;
    let cid = case["id"].as_str().unwrap().to_owned();
    let endpoints: Vec<(&str, String, Value, &[&str])> = vec![
        (
            "POST",
            "/v1/console/cases".into(),
            json!({"subject_id": "1", "channel": "counter"}),
            &["agent"],
        ),
        (
            "GET",
            format!("/v1/console/cases/{cid}"),
            json!({}),
            &["agent", "reviewer", "auditor"],
        ),
        (
            "POST",
            format!("/v1/console/cases/{cid}/hotline"),
            json!({"name": "x", "id_number": "x", "phone": "x"}),
            &["agent"],
        ),
        (
            "POST",
            format!("/v1/console/cases/{cid}/counter"),
            json!({"document_type": "id_card", "last4": "0000", "branch": "x"}),
            &["agent"],
        ),
        (
            "POST",
            format!("/v1/console/cases/{cid}/review"),
            json!({"decision": "approve"}),
            &["reviewer"],
        ),
        (
            "POST",
            "/v1/console/agents".into(),
            json!({"username": "newbie", "role": "agent"}),
            &["admin"],
        ),
        (
            "GET",
            "/v1/console/report?from=2000-01-01&to=2100-01-01".into(),
            json!({}),
            &["auditor", "admin"],
        ),
    ];
    for (method, path, body, allowed) in &endpoints {
        for role in ["agent", "reviewer", "admin", "auditor"] {
            let (s, v) = console(&demo, &sessions[role].token, method, path, body.clone()).await;
            if allowed.contains(&role) {
                assert_ne!(s, 403, "{role} {method} {path}: {v}");
                assert_ne!(s, 401, "{role} {method} {path}: {v}");
            } else {
                assert_eq!(s, 403, "{role} may not {method} {path}: {v}");
            }
        }
    }

    // Hotline: wrong details are refused without saying which; right ones verify.
    let agent = &sessions["agent"].token;
    let (s, v) = console(
        &demo,
        agent,
        "POST",
        &format!("/v1/console/cases/{cid}/hotline"),
        json!({"name": "someone else", "id_number": idn, "phone": phone}),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert!(
        !v.to_string().contains(&idn),
        "the ID number is never echoed"
    );
    let (s, v) = console(
        &demo,
        agent,
        "POST",
        &format!("/v1/console/cases/{cid}/hotline"),
        // The caller's number as people say it: 0086, spaces and dashes.
        json!({"name": name, "id_number": idn.to_lowercase(), "phone": format!("0086 {}-{}-{}", &phone[..3], &phone[3..7], &phone[7..])}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (
            v["state"].as_str(),
            v["verified_by"].as_str(),
            v["assurance_level"].as_u64()
        ),
        (Some("identity_verified"), Some("hotline"), Some(1))
    );
    assert!(!v.to_string().contains(&idn));
    let (_, tl) = demo.get(&format!("/v1/cases/{cid}/timeline")).await;
    assert!(
        tl["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "case.identity_verified"
                && e["actor"].as_str().unwrap().starts_with("agent:ag_")),
        "{tl}"
    );

    // Money needs level 2: SMS is not enough; a counter check steps up.
    let rich: i64 = sqlx::query_scalar("SELECT w.user_id FROM wallets w WHERE w.balance_fen > 0 AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.user_id = w.user_id AND o.status IN ('pending','paid','shipping')) AND NOT EXISTS (SELECT 1 FROM bank_cards b WHERE b.user_id = w.user_id) ORDER BY w.user_id LIMIT 1").fetch_one(&mart).await.unwrap();
    let id = demo.create(rich).await;
    demo.verify(&id).await;
    let v = demo.ok(&format!("/v1/cases/{id}/checks"), json!({})).await;
    demo.acknowledge_and_settle(&id, &v).await;
    let (s, p) = demo
        .post(&format!("/v1/cases/{id}/confirm"), json!({}))
        .await;
    assert_eq!(s, 403, "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("needs level 2"),
        "{p}"
    );
    let rich_idn: String =
        sqlx::query_scalar("SELECT id_number FROM real_names WHERE user_id = ?1")
            .bind(rich)
            .fetch_one(&mart)
            .await
            .unwrap();
    let last4 = &rich_idn[rich_idn.len() - 4..];
    let (s, v) = console(
        &demo,
        agent,
        "POST",
        &format!("/v1/console/cases/{id}/counter"),
        json!({"document_type": "id_card", "last4": "0000", "branch": "Beijing West Station"}),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    // A document the counter may not accept (a library card) is refused,
    // whatever its digits.
    let (s, v) = console(
        &demo,
        agent,
        "POST",
        &format!("/v1/console/cases/{id}/counter"),
        json!({"document_type": "library_card", "last4": last4, "branch": "Beijing West Station"}),
    )
    .await;
    assert_eq!(
        (s, v["field"].as_str()),
        (422, Some("document_type")),
        "{v}"
    );
    assert!(v["fix"].as_str().unwrap().contains("passport"), "{v}");
    // The document by its Chinese name is the same document.
    let (s, v) = console(
        &demo,
        agent,
        "POST",
        &format!("/v1/console/cases/{id}/counter"),
        json!({"document_type": "居民身份证", "last4": last4, "branch": "Beijing West Station"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["assurance_level"], 2);
    assert_eq!(
        v["verified_by"],
        json!(format!(
            "counter:id_card:*{}@Beijing West Station",
            last4.to_uppercase()
        ))
    );
    let v = demo.ok(&format!("/v1/cases/{id}/confirm"), json!({})).await;
    assert_eq!(v["state"], "cooling_off");
}

/// The hotline and counter checks are no oracle: five failures lock the
/// case for an hour (the right details too), ten lock the agent on any
/// case; every failure is an audit event with the agent, never with what
/// was said.
#[tokio::test]
async fn identity_checks_are_limited_and_every_failure_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), 300).await;
    let token = agent_session(&demo, "ann.agent", "agent").await;
    let mart = demo.mart().await;
    let users = clear_users(&mart, 6).await;
    let open = |user: i64| {
        let demo = &demo;
        let token = token.clone();
        async move {
            let (_, case) = console(
                demo,
                &token,
                "POST",
                "/v1/console/cases",
                json!({"subject_id": user.to_string(), "channel": "hotline"}),
            )
            .await;
            case["id"].as_str().unwrap().to_owned()
        }
    };
    let (name, idn, phone): (String, String, String) = sqlx::query_as("SELECT r.legal_name, r.id_number, u.phone FROM users u JOIN real_names r ON r.user_id = u.id WHERE u.id = ?1").bind(users[0]).fetch_one(&mart).await.unwrap();
    let cid = open(users[0]).await;
    let hotline = |cid: String, id_number: String| {
        let demo = &demo;
        let token = token.clone();
        let (name, phone) = (name.clone(), phone.clone());
        async move {
            console(
                demo,
                &token,
                "POST",
                &format!("/v1/console/cases/{cid}/hotline"),
                json!({"name": name, "id_number": id_number, "phone": phone}),
            )
            .await
        }
    };
    for i in 0..5 {
        let (s, v) = hotline(cid.clone(), format!("11010519491231{i:03}X")).await;
        assert_eq!(s, 422, "{v}");
    }
    // The fourth try, with the right number, is refused: the case is locked.
    let (s, v) = hotline(cid.clone(), idn.clone()).await;
    assert_eq!(s, 429, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("this case"), "{v}");
    let (_, tl) = demo.get(&format!("/v1/cases/{cid}/timeline")).await;
    let failures: Vec<&Value> = tl["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "case.identity_check_failed")
        .collect();
    assert_eq!(failures.len(), 5, "{tl}");
    let actor = failures[0]["actor"].as_str().unwrap();
    assert!(actor.starts_with("agent:"), "{tl}");
    assert!(failures.iter().all(|e| e["actor"] == actor), "{tl}");
    assert!(
        !tl.to_string().contains("11010519491231"),
        "what was said is never logged"
    );

    // Five more failures on other cases: the agent is locked everywhere.
    let mut n = 5;
    for u in &users[1..5] {
        let c = open(*u).await;
        for _ in 0..2 {
            if n == 10 {
                break;
            }
            let (s, v) = hotline(c.clone(), "110105194912310021".into()).await;
            assert_eq!(s, 422, "{v}");
            n += 1;
        }
    }
    let c = open(users[5]).await;
    let (s, v) = hotline(c, "110105194912310021".into()).await;
    assert_eq!(s, 429, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("this agent"), "{v}");
}
