//! Blockers, assets and settlement against a small real HTTP provider run by
//! the test: each asset kind end to end (chosen, nothing moves until the
//! cooling-off period ends, then each instruction once), a crash in the
//! middle of a settlement, and providers that time out, answer garbage or
//! do not sign.

mod common;

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use common::*;
use lethe_server::outbound::webhook::{secret_bytes, sign};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "whsec_cHJvdmlkZXItc2VjcmV0LWZvci10ZXN0cw==";
const FACE: &str = "whsec_ZmFjZS1wcm92aWRlci1zZWNyZXQ=";

#[derive(Default)]
struct Provider {
    /// ok, slow, malformed, unsigned, badsig, blocked
    mode: String,
    /// The assets answered (set by the test).
    assets: Value,
    /// Settlement deliveries in order: (instruction id, body).
    deliveries: Vec<(String, Value)>,
    /// First answer per instruction id: what a platform stores to be idempotent.
    settled: HashMap<String, Value>,
    /// Sleep before answering the first delivery of each instruction.
    slow_settle: bool,
}

type Shared = Arc<Mutex<Provider>>;

fn signed(body: &str, bad: bool) -> axum::response::Response {
    let key = secret_bytes(SECRET);
    let id = "msg_answer".to_owned();
    let ts = jiff::Timestamp::now().as_second();
    let mut sig = sign(&key, &id, ts, body.as_bytes());
    if bad {
        sig = sign(b"another key", &id, ts, body.as_bytes());
    }
    (
        [
            ("content-type", "application/json".to_owned()),
            ("webhook-id", id),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", sig),
        ],
        body.to_owned(),
    )
        .into_response()
}

fn verify_request(h: &HeaderMap, body: &[u8]) -> bool {
    let g = |n: &str| {
        h.get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let ts: i64 = g("webhook-timestamp").parse().unwrap_or(0);
    sign(&secret_bytes(SECRET), &g("webhook-id"), ts, body) == g("webhook-signature")
}

async fn start_provider(p: Shared) -> String {
    let (pc, ps) = (p.clone(), p.clone());
    let app = axum::Router::new()
        .route(
            "/check",
            axum::routing::post(move |h: HeaderMap, b: Bytes| {
                let p = pc.clone();
                async move {
                    assert!(verify_request(&h, &b), "Lethe's request must be signed");
                    let (mode, assets) = {
                        let g = p.lock().unwrap();
                        (g.mode.clone(), g.assets.clone())
                    };
                    match mode.as_str() {
                        "slow" => {
                            tokio::time::sleep(Duration::from_secs(3)).await;
                            signed("{}", false)
                        }
                        "malformed" => signed("{\"assets\": [", false),
                        "unsigned" => ([("content-type", "application/json")], "{\"blockers\":[],\"assets\":[]}").into_response(),
                        "badsig" => signed("{\"blockers\":[],\"assets\":[]}", true),
                        "blocked" => signed(&json!({"blockers": [{"code": "open_dispute", "message_zh": "您有未结束的纠纷", "message_en": "You have an open dispute", "items": ["D-17"]}], "assets": assets}).to_string(), false),
                        _ => signed(&json!({"blockers": [], "assets": assets}).to_string(), false),
                    }
                }
            }),
        )
        .route(
            "/settle",
            axum::routing::post(move |h: HeaderMap, b: Bytes| {
                let p = ps.clone();
                async move {
                    assert!(verify_request(&h, &b));
                    let v: Value = serde_json::from_slice(&b).unwrap();
                    let key = h["idempotency-key"].to_str().unwrap().to_owned();
                    assert_eq!(key, v["instruction_id"].as_str().unwrap(), "the idempotency key is the instruction id");
                    let (first, slow) = {
                        let mut g = p.lock().unwrap();
                        g.deliveries.push((key.clone(), v.clone()));
                        let first = !g.settled.contains_key(&key);
                        if first {
                            // Settle once: a platform records the result under the key.
                            let answer = json!({"status": "done", "reference": format!("REF-{}", g.settled.len() + 1)});
                            g.settled.insert(key.clone(), answer);
                        }
                        (first, g.slow_settle)
                    };
                    if first && slow {
                        tokio::time::sleep(Duration::from_secs(4)).await;
                    }
                    let answer = p.lock().unwrap().settled[&key].clone();
                    signed(&answer.to_string(), false)
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Starts the demo with the provider in its data map.
async fn demo_with_provider(
    dir: &std::path::Path,
    url: &str,
    timeout_ms: u64,
    extra: &[&str],
) -> Demo {
    let map = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/demo-mart/datamap.toml"
    ))
    .unwrap();
    let map = format!(
        "{map}\n[[providers]]\nname = \"wallet\"\nurl_env = \"WALLET_URL\"\nsecret_env = \"WALLET_SECRET\"\nsettlement_url_env = \"WALLET_SETTLE_URL\"\ntimeout_ms = {timeout_ms}\n"
    );
    std::fs::write(dir.join("datamap.toml"), map).unwrap();
    let check = format!("{url}/check");
    let settle = format!("{url}/settle");
    let mut args = extra.to_vec();
    args.extend(["--face-secret-env", "T_FACE"]);
    Demo::start_env(
        dir,
        300,
        &args,
        &[
            ("WALLET_URL", &check),
            ("WALLET_SECRET", SECRET),
            ("WALLET_SETTLE_URL", &settle),
            ("T_FACE", FACE),
        ],
    )
    .await
}

fn provider_assets(today: jiff::civil::Date) -> Value {
    use jiff::ToSpan;
    json!([
        {"id": "bal", "kind": "balance", "label": "wallet balance", "amount_minor": 1240},
        {"id": "pts", "kind": "points", "label": "points", "quantity": 3200},
        {"id": "cpn", "kind": "coupon", "label": "¥5 off", "amount_minor": 500},
        {"id": "gift", "kind": "gift_card", "label": "gift card", "amount_minor": 5000},
        {"id": "dep", "kind": "deposit", "label": "bike deposit", "amount_minor": 9900},
        {"id": "sub", "kind": "subscription", "label": "monthly membership", "amount_minor": 1500,
         "period_start": today.checked_sub(6.days()).unwrap().to_string(), "period_end": today.checked_add(24.days()).unwrap().to_string(), "auto_renew": true},
        {"id": "card", "kind": "bank_card", "label": "CMB **** 1234"},
        {"id": "wx", "kind": "third_party_binding", "label": "WeChat"}
    ])
}

fn asset<'a>(case: &'a Value, id: &str) -> &'a Value {
    case["assets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .unwrap_or_else(|| panic!("no asset {id}: {case}"))
}

#[tokio::test]
async fn every_asset_kind_is_settled_end_to_end() {
    let p: Shared = Default::default();
    let url = start_provider(p.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let demo = demo_with_provider(dir.path(), &url, 3000, &[]).await;
    p.lock().unwrap().assets = provider_assets(demo.today().await);
    let users = clear_users(&demo.mart().await, 2).await;
    let id = demo.create(users[0]).await;
    demo.verify(&id).await;

    // A blocker from the provider holds the case.
    p.lock().unwrap().mode = "blocked".into();
    let v = demo.ok(&format!("/v1/cases/{id}/checks"), json!({})).await;
    assert_eq!(v["state"], "checks_blocked");
    assert_eq!(v["blockers"][0]["code"], "open_dispute");
    p.lock().unwrap().mode = "ok".into();
    let v = demo.ok(&format!("/v1/cases/{id}/checks"), json!({})).await;
    assert_eq!(v["state"], "checks_clear", "{v}");
    for c in v["consequences"].as_array().unwrap() {
        demo.ok(
            &format!("/v1/cases/{id}/acknowledgements"),
            json!({"consequence_id": c["id"], "version": c["version"], "locale": "en"}),
        )
        .await;
    }
    // Acknowledged everything, but assets are open: the case may not leave the checks step.
    let (s, p409) = demo
        .post(&format!("/v1/cases/{id}/confirm"), json!({}))
        .await;
    assert_eq!(s, 409, "{p409}");
    assert!(
        p409["detail"].as_str().unwrap().contains("settle"),
        "{p409}"
    );

    let choose = |asset: &str, option: &str, to: Option<String>| {
        let mut b = json!({"asset_id": asset, "option": option, "locale": "en"});
        if let Some(t) = to {
            b["transfer_to"] = json!(t);
        }
        b
    };
    let path = format!("/v1/cases/{id}/settlements");
    // Wrong choices get clear errors.
    let (s, e) = demo.post(&path, choose("card", "forfeit", None)).await;
    assert_eq!((s, e["field"].as_str()), (422, Some("option")), "{e}");
    let (s, e) = demo.post(&path, choose("pts", "transfer", None)).await;
    assert_eq!((s, e["field"].as_str()), (422, Some("transfer_to")), "{e}");
    for (a, o, t) in [
        ("bal", "withdraw", None),
        ("pts", "transfer", Some(users[1].to_string())),
        ("cpn", "forfeit", None),
        ("gift", "withdraw", None),
        ("dep", "withdraw", None),
        ("sub", "refund_pro_rata", None),
        ("card", "unbind", None),
        ("wx", "unbind", None),
    ] {
        demo.ok(&path, choose(a, o, t)).await;
    }
    // Demo Mart's own assets (from SQL rules) are forfeited.
    let (_, case) = demo.get(&format!("/v1/cases/{id}")).await;
    for a in case["assets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["source"] == "demo_mart")
    {
        demo.ok(&path, choose(a["id"].as_str().unwrap(), "forfeit", None))
            .await;
    }
    demo.wait_state(&id, "consequences_acknowledged", 30).await;

    // Choosing records the choice and its statement; nothing is sent.
    let (_, case) = demo.get(&format!("/v1/cases/{id}")).await;
    let sub = asset(&case, "sub");
    // ¥15.00 for a 30-day period with 24 days left: ¥12.00 if counted today.
    assert_eq!(sub["settlement"]["amount_minor"], 1200);
    let statement = sub["settlement"]["statement"].as_str().unwrap();
    assert!(
        statement.contains("counted on the day the cooling-off period ends")
            && statement.contains("(¥12.00 if counted today)"),
        "{sub}"
    );
    assert!(
        asset(&case, "pts")["settlement"]["statement"]
            .as_str()
            .unwrap()
            .starts_with(&format!(
                "3,200 points will be transferred to account {}. This happens when the cooling-off period ends",
                users[1]
            )),
        "{case}"
    );
    assert_eq!(asset(&case, "cpn")["settlement"]["status"], "forfeited");
    let sent = ["bal", "pts", "gift", "dep", "sub", "card", "wx"];
    for a in sent {
        assert_eq!(asset(&case, a)["settlement"]["status"], "chosen", "{a}");
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        p.lock().unwrap().deliveries.is_empty(),
        "nothing moves before the cancellation is final"
    );
    // The account holds money: an SMS code (level 1) is not enough to confirm.
    let (s, v) = demo
        .post(&format!("/v1/cases/{id}/confirm"), json!({}))
        .await;
    assert_eq!(s, 403, "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("needs level 2"),
        "{v}"
    );
    demo.face_pass(&id, FACE).await;
    let v = demo.ok(&format!("/v1/cases/{id}/confirm"), json!({})).await;
    assert_eq!(v["state"], "cooling_off", "{v}");
    demo.advance(3 * 86_400).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(p.lock().unwrap().deliveries.is_empty(), "still cooling off");

    // Cooling-off ends: every instruction goes out once, the refund counted
    // for that day (17 of 30 days left: ¥8.50), then the erasure.
    demo.advance(4 * 86_400 + 60).await;
    demo.wait_state(&id, "erased", 60).await;
    let (_, case) = demo.get(&format!("/v1/cases/{id}")).await;
    for a in sent {
        assert_eq!(asset(&case, a)["settlement"]["status"], "done", "{a}");
        assert!(
            asset(&case, a)["settlement"]["reference"]
                .as_str()
                .unwrap()
                .starts_with("REF-")
        );
    }
    // The case shows the refund paid and the figure the user was shown.
    let sub = &asset(&case, "sub")["settlement"];
    assert_eq!(
        (
            &sub["amount_minor"],
            &sub["amount_shown_minor"],
            &sub["early"]
        ),
        (&json!(850), &json!(1200), &json!(false)),
        "{sub}"
    );
    let deliveries = p.lock().unwrap().deliveries.clone();
    assert_eq!(deliveries.len(), sent.len(), "one instruction per asset");
    let by_asset = |a: &str| {
        deliveries
            .iter()
            .find(|(_, v)| v["asset"]["id"] == a)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(by_asset("bal")["option"], "withdraw");
    assert_eq!(by_asset("bal")["amount_minor"], 1240);
    assert_eq!(by_asset("gift")["amount_minor"], 5000);
    assert_eq!(by_asset("dep")["amount_minor"], 9900);
    assert_eq!(by_asset("sub")["amount_minor"], 850);
    assert_eq!(by_asset("sub")["cancel_auto_renewal"], true);
    assert_eq!(by_asset("pts")["transfer_to"], json!(users[1].to_string()));
    assert_eq!(by_asset("card")["option"], "unbind");
    assert_eq!(by_asset("wx")["option"], "unbind");
    assert!(
        !deliveries.iter().any(|(_, v)| v["asset"]["id"] == "cpn"),
        "a forfeit sends no instruction"
    );
    // The receipt shows the refund paid and the figure shown when chosen.
    let (_, receipt) = demo.get(&format!("/v1/cases/{id}/receipt")).await;
    let paid = find(&receipt["settlements"], "asset_id", "sub");
    assert_eq!(
        (&paid["amount_minor"], &paid["amount_shown_minor"]),
        (&json!(850), &json!(1200)),
        "{receipt}"
    );
}

#[tokio::test]
async fn a_crash_in_the_middle_of_a_settlement_never_refunds_twice() {
    let p: Shared = Default::default();
    let url = start_provider(p.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut demo = demo_with_provider(dir.path(), &url, 10_000, &["--lease-secs", "2"]).await;
    {
        let mut g = p.lock().unwrap();
        g.assets =
            json!([{"id": "bal", "kind": "balance", "label": "wallet", "amount_minor": 1240}]);
        g.mode = "ok".into();
        g.slow_settle = true;
    }
    let user = clear_users(&demo.mart().await, 1).await[0];
    let id = demo.create(user).await;
    demo.verify(&id).await;
    demo.ok(&format!("/v1/cases/{id}/checks"), json!({})).await;
    demo.ok(
        &format!("/v1/cases/{id}/settlements"),
        json!({"asset_id": "bal", "option": "withdraw", "locale": "zh-CN"}),
    )
    .await;
    let (_, case) = demo.get(&format!("/v1/cases/{id}")).await;
    for c in case["consequences"].as_array().unwrap() {
        demo.ok(
            &format!("/v1/cases/{id}/acknowledgements"),
            json!({"consequence_id": c["id"], "version": c["version"], "locale": "zh-CN"}),
        )
        .await;
    }
    for a in case["assets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["source"] == "demo_mart")
    {
        demo.ok(
            &format!("/v1/cases/{id}/settlements"),
            json!({"asset_id": a["id"], "option": "forfeit", "locale": "zh-CN"}),
        )
        .await;
    }
    demo.face_pass(&id, FACE).await;
    demo.ok(&format!("/v1/cases/{id}/confirm"), json!({})).await;
    demo.advance(7 * 86_400 + 60).await;
    // The platform received the instruction and settled; Lethe dies before hearing back.
    let deadline = Instant::now() + Duration::from_secs(20);
    while p.lock().unwrap().deliveries.is_empty() {
        assert!(Instant::now() < deadline, "no instruction arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    demo.kill9();
    let (_, case) = {
        let demo = Demo::start_env(
            dir.path(),
            300,
            &["--lease-secs", "2"],
            &[
                ("WALLET_URL", &format!("{url}/check")),
                ("WALLET_SECRET", SECRET),
                ("WALLET_SETTLE_URL", &format!("{url}/settle")),
            ],
        )
        .await;
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let (_, c) = demo.get(&format!("/v1/cases/{id}")).await;
            if asset(&c, "bal")["settlement"]["status"] == "done" {
                break (demo, c);
            }
            assert!(
                Instant::now() < deadline,
                "the settlement was not retried: {c}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let g = p.lock().unwrap();
    assert!(
        g.deliveries.len() >= 2,
        "the instruction was delivered again after the crash"
    );
    let keys: std::collections::HashSet<&str> =
        g.deliveries.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys.len(),
        1,
        "every delivery carried the same idempotency key"
    );
    assert_eq!(g.settled.len(), 1, "the platform refunded exactly once");
    assert_eq!(asset(&case, "bal")["settlement"]["reference"], "REF-1");
}

#[tokio::test]
async fn a_provider_that_fails_holds_the_case_with_a_clear_reason() {
    let p: Shared = Default::default();
    let url = start_provider(p.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let demo = demo_with_provider(dir.path(), &url, 500, &[]).await;
    p.lock().unwrap().assets = json!([]);
    let user = clear_users(&demo.mart().await, 1).await[0];
    let id = demo.create(user).await;
    demo.verify(&id).await;
    for (mode, reason) in [
        ("slow", "did not answer within 500 ms"),
        ("malformed", "not valid JSON"),
        ("unsigned", "is not signed"),
        ("badsig", "signature is invalid"),
    ] {
        p.lock().unwrap().mode = mode.into();
        let (s, e) = demo
            .post(&format!("/v1/cases/{id}/checks"), json!({}))
            .await;
        assert_eq!(s, 503, "{mode}: {e}");
        assert!(
            e["detail"].as_str().unwrap().contains(reason),
            "{mode}: {e}"
        );
        let (_, case) = demo.get(&format!("/v1/cases/{id}")).await;
        assert_eq!(
            case["state"], "identity_verified",
            "{mode}: the check is never skipped"
        );
        assert!(case["checks_problem"].as_str().unwrap().contains(reason));
    }
    p.lock().unwrap().mode = "ok".into();
    let v = demo.ok(&format!("/v1/cases/{id}/checks"), json!({})).await;
    assert_eq!(v["state"], "checks_clear");
    assert!(v["checks_problem"].is_null());
}

#[tokio::test]
async fn unreasonable_conditions_are_refused_by_the_policy_check() {
    let dir = tempfile::tempdir().unwrap();
    let map = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/demo-mart/datamap.toml"
    ))
    .unwrap();
    let cfg = dir.path().join("lethe.toml");
    std::fs::write(
        &cfg,
        common::config_toml(dir.path()).replace("datamap.toml", "map.toml"),
    )
    .unwrap();
    std::fs::write(dir.path().join("map.toml"), &map).unwrap();
    let run = || {
        std::process::Command::new(BIN)
            .args(["policy", "check", "--config", cfg.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = map.replace(
        "category = \"unfinished_order\"",
        "category = \"unrelated_product\"",
    );
    std::fs::write(dir.path().join("map.toml"), bad).unwrap();
    let out = run();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("requiring unrelated products")
            && err.contains("remove this blocker"),
        "{err}"
    );
}

/// Every asset kind chosen, confirmed, restored on day 5: the platform was
/// told to freeze and pause, then to unfreeze and resume; not one
/// instruction went out, before or after the cooling-off period would have
/// ended.
#[tokio::test]
async fn restoring_during_cooling_off_settles_nothing_of_any_kind() {
    let p: Shared = Default::default();
    let url = start_provider(p.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let demo = demo_with_provider(dir.path(), &url, 3000, &[]).await;
    let day = demo.today().await;
    {
        let mut g = p.lock().unwrap();
        g.assets = provider_assets(day);
        g.mode = "ok".into();
    }
    let users = clear_users(&demo.mart().await, 2).await;
    let id = demo.create(users[0]).await;
    demo.verify(&id).await;
    let checks = demo.ok(&format!("/v1/cases/{id}/checks"), json!({})).await;
    let path = format!("/v1/cases/{id}/settlements");
    for a in checks["assets"].as_array().unwrap() {
        // The first option of each kind that is not a forfeit: a refund, a
        // withdrawal, a transfer or an unbinding.
        let option = a["options"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| *o != "forfeit")
            .unwrap_or(&a["options"][0])
            .clone();
        let mut body = json!({"asset_id": a["id"], "option": option, "locale": "en"});
        if option == "transfer" {
            body["transfer_to"] = json!(users[1].to_string());
        }
        demo.ok(&path, body).await;
    }
    for c in checks["consequences"].as_array().unwrap() {
        demo.ok(
            &format!("/v1/cases/{id}/acknowledgements"),
            json!({"consequence_id": c["id"], "version": c["version"], "locale": "en"}),
        )
        .await;
    }
    demo.face_pass(&id, FACE).await;
    demo.ok(&format!("/v1/cases/{id}/confirm"), json!({})).await;
    demo.advance(5 * 86_400).await;
    demo.ok(&format!("/v1/cases/{id}/verification/sms/send"), json!({}))
        .await;
    let code = demo.code(&id).await;
    let v = demo
        .ok(&format!("/v1/cases/{id}/restore"), json!({"code": code}))
        .await;
    assert_eq!(v["state"], "withdrawn");
    // Past the day cooling-off would have ended: still nothing.
    demo.advance(3 * 86_400).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        p.lock().unwrap().deliveries.is_empty(),
        "no instruction for a restored account"
    );
    let (_, case) = demo.get(&format!("/v1/cases/{id}")).await;
    assert_eq!(case["state"], "withdrawn");
    let kinds: std::collections::BTreeSet<&str> = case["assets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["source"] == "wallet")
        .map(|a| {
            assert_eq!(a["settlement"]["status"], "chosen", "{a}");
            a["kind"].as_str().unwrap()
        })
        .collect();
    assert_eq!(kinds.len(), 8, "every kind: {kinds:?}");
    // The platform was told to pause, then resume, the renewal.
    let (_, notes) = demo.get(&format!("/v1/notifications?case_id={id}")).await;
    let of = |kind: &str| {
        notes
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}: {notes}"))["payload"]
            .clone()
    };
    for (kind, list) in [
        ("account.freeze", "pause_auto_renewal"),
        ("account.restore", "resume_auto_renewal"),
    ] {
        let ids = of(kind)[list].clone();
        assert!(
            ids.as_array().unwrap().contains(&json!("sub")),
            "{kind}: {ids}"
        );
    }
}

#[tokio::test]
async fn alternatives_are_offered_and_taking_one_keeps_the_account() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), 100).await;
    let (_, alts) = demo.get("/v1/alternatives").await;
    let kinds: Vec<&str> = alts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec!["deactivate", "change_password", "unbind_real_name"]
    );
    let id = demo.create(1).await;
    let v = demo
        .ok(
            &format!("/v1/cases/{id}/alternative"),
            json!({"kind": "deactivate"}),
        )
        .await;
    assert_eq!(v["state"], "withdrawn");
    let (_, n) = demo.get(&format!("/v1/notifications?case_id={id}")).await;
    assert!(
        n.as_array()
            .unwrap()
            .iter()
            .any(|x| x["kind"] == "alternative.requested"
                && x["payload"]["alternative"] == "deactivate"),
        "{n}"
    );
}
