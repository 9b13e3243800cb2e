//! The pages over HTTP, without a browser: hand-off links, sealed
//! sessions, CSRF and origin checks, and a manual erasure task completed in
//! the console. (The user flows in a real browser are in tests/e2e.)

mod common;

use common::{Demo, create_agent, csrf, form, totp};
use serde_json::json;

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}

/// POSTs a form (`pairs`) as a browser would, with the session cookie and
/// the page's origin when given.
async fn post_form(
    http: &reqwest::Client,
    url: String,
    cookie: Option<&str>,
    origin: Option<&str>,
    pairs: &[(&str, &str)],
) -> reqwest::Response {
    let mut r = http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(pairs));
    if let Some(c) = cookie {
        r = r.header("cookie", c);
    }
    if let Some(o) = origin {
        r = r.header("origin", o);
    }
    r.send().await.unwrap()
}

async fn handoff(demo: &Demo, subject: &str, channel: &str) -> (u16, serde_json::Value) {
    let r = client()
        .post(format!("{}/v1/handoffs", demo.url))
        .bearer_auth(&demo.key)
        .json(&json!({"subject_id": subject, "channel": channel}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn hand_off_links_work_once_and_forms_need_the_pages_token() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), 50).await;
    let http = client();

    // Bad hand-offs are refused with the field named.
    let (s, v) = handoff(&demo, "999999", "app").await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["field"], "subject_id");
    let (s, v) = handoff(&demo, "1", "hotline").await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["field"], "channel");
    let r = http
        .post(format!("{}/v1/handoffs", demo.url))
        .json(&json!({"subject_id": "1", "channel": "app"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the API key is needed");

    let (s, link) = handoff(&demo, "1", "app").await;
    assert_eq!(s, 201, "{link}");
    let url = link["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("{}/u/enter?t=", demo.url)));
    // The link names the account only sealed.
    assert!(!url.contains("\"s\""));

    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/u/");
    let cookie_line = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("lethe_u="))
        .unwrap();
    assert!(cookie_line.contains("HttpOnly") && cookie_line.contains("SameSite=Lax"));
    let session = set_cookie(&r, "lethe_u").unwrap();
    // Once only.
    let again = http.get(&url).send().await.unwrap();
    assert_eq!(again.status(), 401);
    assert!(again.text().await.unwrap().contains("链接已失效"));

    let cookie = format!("lethe_u={session}");
    let page = http
        .get(format!("{}/u/", demo.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    let html = page.text().await.unwrap();
    assert!(html.contains("<html lang=\"zh-CN\">") && html.contains("注销账号"));
    let token = csrf(&html);

    let post = |body: String, origin: Option<&str>| {
        let mut b = http
            .post(format!("{}/u/do/start", demo.url))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(o) = origin {
            b = b.header("origin", o);
        }
        b.send()
    };
    // No token, a wrong token, another site: refused, nothing created.
    assert_eq!(post(String::new(), None).await.unwrap().status(), 403);
    assert_eq!(post("_csrf=AAAA".into(), None).await.unwrap().status(), 403);
    assert_eq!(
        post(format!("_csrf={token}"), Some("https://evil.example"))
            .await
            .unwrap()
            .status(),
        403
    );
    let mart = demo.lethe_db().await;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cases")
        .fetch_one(&mart)
        .await
        .unwrap();
    assert_eq!(n, 0, "no case from refused posts");
    // A tampered session is no session.
    let mut bad = session.clone();
    let last = bad.pop().unwrap();
    bad.push(if last == 'A' { 'B' } else { 'A' });
    let r = http
        .get(format!("{}/u/", demo.url))
        .header("cookie", format!("lethe_u={bad}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // With the token, from the page's own origin: the case opens (channel
    // app, by the platform that handed the user over) and the page moves on.
    let r = post(format!("_csrf={token}"), Some(&demo.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let session = set_cookie(&r, "lethe_u").unwrap();
    let (principal, channel): (String, String) =
        sqlx::query_as("SELECT principal, channel FROM cases")
            .fetch_one(&mart)
            .await
            .unwrap();
    assert_eq!((principal.as_str(), channel.as_str()), ("demo", "app"));
    let html = http
        .get(format!("{}/u/", demo.url))
        .header("cookie", format!("lethe_u={session}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("核验身份"), "step 2");
    // The English switch keeps the user where they were.
    let r = http
        .get(format!("{}/u/lang?to=en&back=/u/", demo.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/u/");
    assert_eq!(set_cookie(&r, "lethe_lang").as_deref(), Some("en"));
    // ... and never sends them elsewhere, however the target is dressed up
    // (a browser drops the tab in `/\t/evil.example` and goes off-site).
    for back in [
        "//evil.example/",
        "/%09/evil.example/x",
        "/%0a/evil.example/x",
        "/%5Cevil.example",
        "https://evil.example/",
        "%2F%2Fevil.example",
    ] {
        let r = http
            .get(format!("{}/u/lang?to=en&back={back}", demo.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["location"], "/u/", "{back}");
    }
}

fn datamap_with_manual_task() -> String {
    format!(
        r#"{}

[[systems]]
name = "paper_archive"
kind = "manual"
instructions = "Shred the customer's paper contract in the archive and note the box number."
due_days = 3
"#,
        include_str!("../../../examples/demo-mart/datamap.toml")
    )
}

#[tokio::test]
async fn an_operator_completes_a_manual_task_in_the_console() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("datamap.toml"), datamap_with_manual_task()).unwrap();
    let demo = Demo::start(dir.path(), 50).await;
    let http = client();
    let id = demo.create(4).await;
    demo.to_cooling_off(&id).await;
    demo.advance(7 * 86_400 + 60).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, v) = demo.get("/v1/console/manual-tasks").await;
        if v.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no manual task: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // Sign in through the login page (password and TOTP).
    let (password, secret) = create_agent(&demo.dir, "ops.chen", "agent");
    let r = post_form(
        &http,
        format!("{}/console/login", demo.url),
        None,
        None,
        &[
            ("username", "ops.chen"),
            ("password", password.as_str()),
            ("totp", totp(&secret, 0).as_str()),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    let token = set_cookie(&r, "lethe_console").unwrap();
    let cookie = format!("lethe_console={token}");
    let html = http
        .get(format!("{}/console/", demo.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("Shred the customer&#x27;s paper contract")
            || html.contains("Shred the customer")
    );
    let at = html.find("/console/tasks/").unwrap() + 15;
    let task: String = html[at..].split('/').next().unwrap().to_owned();
    let csrf = csrf(&html);
    // An empty note is refused, with the form shown again.
    let r = post_form(
        &http,
        format!("{}/console/tasks/{task}/complete", demo.url),
        Some(&cookie),
        None,
        &[("_csrf", csrf.as_str()), ("note", ""), ("records", "1")],
    )
    .await;
    assert_eq!(r.status(), 422);
    let page = r.text().await.unwrap();
    assert!(page.contains("请填写处理说明"), "{page}");
    let r = post_form(
        &http,
        format!("{}/console/tasks/{task}/complete", demo.url),
        Some(&cookie),
        None,
        &[
            ("_csrf", csrf.as_str()),
            ("note", "Box 17 shredded"),
            ("records", "1"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    demo.wait_state(&id, "erased", 30).await;
    let (_, tasks) = demo.get("/v1/console/manual-tasks?open=false").await;
    let done = &tasks.as_array().unwrap()[0];
    assert!(
        done["completed_by"]
            .as_str()
            .unwrap()
            .starts_with("agent:ag_"),
        "{done}"
    );
    // Signing out ends the session.
    let r = post_form(
        &http,
        format!("{}/console/logout", demo.url),
        Some(&cookie),
        None,
        &[("_csrf", csrf.as_str())],
    )
    .await;
    assert_eq!(r.status(), 303);
    let r = http
        .get(format!("{}/console/", demo.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/console/login");
}

#[tokio::test]
async fn a_user_signs_out_and_one_session_holds_few_live_connections() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), 20).await;
    let http = client();
    let (_, link) = handoff(&demo, "2", "app").await;
    let r = http
        .get(link["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let cookie = format!("lethe_u={}", set_cookie(&r, "lethe_u").unwrap());
    let page = |c: String| {
        let http = http.clone();
        let url = format!("{}/u/", demo.url);
        async move {
            let r = http.get(url).header("cookie", c).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (s, html) = page(cookie.clone()).await;
    assert_eq!(s, 200);
    // Start the case, so the page has something to follow live.
    let r = post_form(
        &http,
        format!("{}/u/do/start", demo.url),
        Some(&cookie),
        Some(&demo.url),
        &[("_csrf", &csrf(&html))],
    )
    .await;
    assert!(r.status().is_redirection() || r.status().is_success());
    let cookie = set_cookie(&r, "lethe_u")
        .map(|c| format!("lethe_u={c}"))
        .unwrap_or(cookie);

    // The verify step states the code's lifetime the policy sets, the same
    // the SMS states (10 minutes by default).
    let (_, html) = page(cookie.clone()).await;
    assert!(html.contains("验证码 10 分钟内有效"), "{html}");

    // A few tabs follow the case live; one session cannot take more.
    let mut open = vec![];
    for _ in 0..3 {
        let r = http
            .get(format!("{}/u/events", demo.url))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        open.push(r);
    }
    let r = http
        .get(format!("{}/u/events", demo.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "{}", r.text().await.unwrap());
    drop(open);

    // Signing out ends the session: the same cookie no longer opens the
    // centre, and the browser is told to drop it.
    let (_, html) = page(cookie.clone()).await;
    let r = post_form(
        &http,
        format!("{}/u/do/signout", demo.url),
        Some(&cookie),
        Some(&demo.url),
        &[("_csrf", &csrf(&html))],
    )
    .await;
    assert_eq!(r.status(), 200);
    let cleared = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|v| v.to_str().unwrap().starts_with("lethe_u=;"));
    assert!(cleared, "the cookie is cleared");
    assert!(r.text().await.unwrap().contains("已退出"));
    let (s, _) = page(cookie.clone()).await;
    assert_eq!(s, 401, "a kept copy of the cookie is signed out too");
    let r = http
        .get(format!("{}/u/events", demo.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn the_demo_app_hands_over_only_its_signed_in_user() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), 20).await;
    let http = client();
    let post = |path: &str, body: String, cookie: Option<String>| {
        let mut r = http
            .post(format!("{}{path}", demo.url))
            .header("origin", &demo.url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        r.send()
    };
    // Not signed in: no hand-off for any account named in the form.
    let r = post(
        "/demo-platform/app/cancel",
        form(&[("subject_id", "4"), ("channel", "app")]),
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.headers()["location"], "/demo-platform/app");
    // A wrong phone number does not sign in.
    let r = post(
        "/demo-platform/app/signin",
        form(&[("subject_id", "4"), ("phone", "13900000000")]),
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    // Demo Mart derives phone numbers from account ids.
    let demo_phone = |n: u64| format!("139{:08}", (n * 7919) % 100_000_000);
    let phone = demo_phone(4);
    let r = post(
        "/demo-platform/app/signin",
        form(&[("subject_id", "4"), ("phone", &phone)]),
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = format!("demo_mart={}", set_cookie(&r, "demo_mart").unwrap());
    // Signed in: the hand-off is for the account signed in, whatever the
    // form says.
    let r = post(
        "/demo-platform/app/cancel",
        form(&[("subject_id", "9"), ("channel", "app")]),
        Some(cookie),
    )
    .await
    .unwrap();
    let to = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(to.contains("/u/enter?t="), "{to}");
    let r = http.get(&to).send().await.unwrap();
    let session = format!("lethe_u={}", set_cookie(&r, "lethe_u").unwrap());
    let html = http
        .get(format!("{}/u/", demo.url))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = post_form(
        &http,
        format!("{}/u/do/start", demo.url),
        Some(&session),
        Some(&demo.url),
        &[("_csrf", &csrf(&html))],
    )
    .await;
    assert!(r.status().is_redirection(), "{}", r.status());
    let db = demo.lethe_db().await;
    let subjects: Vec<String> = sqlx::query_scalar("SELECT subject FROM cases")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(subjects, ["4"], "the case is the signed-in account's");
}
