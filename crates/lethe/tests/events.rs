//! Case events on the machine's NATS JetStream: frozen, restored, erasure
//! requested per system and erased, each once, with its de-duplication id;
//! recorded while the broker is unreachable and published once it is back.

mod common;

use common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;

const NATS: &str = "nats://127.0.0.1:4222";

/// Every message of the stream, in order (subject, Nats-Msg-Id, body).
async fn stream_messages(stream: &str, want: usize) -> Vec<(String, String, Value)> {
    let client = async_nats::connect(NATS).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = js.get_stream(stream).await {
            let n = s.info().await.unwrap().state.messages as usize;
            if n >= want {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "fewer than {want} events in {stream}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = js.get_stream(stream).await.unwrap();
    let consumer = s
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut msgs = consumer.messages().await.unwrap();
    let mut out = vec![];
    while out.len() < want {
        let m = tokio::time::timeout(Duration::from_secs(5), msgs.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.to_string())
            .unwrap_or_default();
        out.push((
            m.subject.to_string(),
            id,
            serde_json::from_slice(&m.payload).unwrap(),
        ));
    }
    // Nothing more than expected.
    let extra = tokio::time::timeout(Duration::from_millis(700), msgs.next()).await;
    assert!(extra.is_err(), "an unexpected extra event: {extra:?}");
    out
}

async fn drop_stream(stream: &str) {
    let client = async_nats::connect(NATS).await.unwrap();
    let _ = async_nats::jetstream::new(client)
        .delete_stream(stream)
        .await;
}

#[tokio::test]
async fn case_events_reach_jetstream_once_each_even_after_the_broker_was_away() {
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let prefix = format!("lethe.t{tag}");
    let stream = prefix.replace('.', "_").to_uppercase();
    let dir = tempfile::tempdir().unwrap();

    // First the broker is unreachable: events are recorded, not lost.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("nats://{}", l.local_addr().unwrap())
    };
    let demo = Demo::start_with(
        dir.path(),
        50,
        &["--nats-url", &dead, "--events-prefix", &prefix],
    )
    .await;
    let erased = demo.create(5).await;
    demo.to_cooling_off(&erased).await;
    let kept = demo.create(6).await;
    demo.to_cooling_off(&kept).await;
    // The holder changes their mind: one verified step restores the account.
    demo.ok(
        &format!("/v1/cases/{kept}/verification/sms/send"),
        json!({}),
    )
    .await;
    let code = demo.code(&kept).await;
    let v = demo
        .ok(&format!("/v1/cases/{kept}/restore"), json!({"code": code}))
        .await;
    assert_eq!(v["state"], "withdrawn");
    drop(demo);

    // Back with the broker: the recorded events go out, then the rest.
    let demo = Demo::start_with(
        dir.path(),
        50,
        &["--nats-url", NATS, "--events-prefix", &prefix],
    )
    .await;
    demo.advance(7 * 86_400 + 60).await;
    demo.wait_state(&erased, "erased", 60).await;
    let msgs = stream_messages(&stream, 5).await;
    let got: Vec<(&str, &str)> = msgs
        .iter()
        .map(|(s, _, v)| (s.as_str(), v["case_id"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            (format!("{prefix}.frozen").as_str(), erased.as_str()),
            (format!("{prefix}.frozen").as_str(), kept.as_str()),
            (format!("{prefix}.restored").as_str(), kept.as_str()),
            (
                format!("{prefix}.erasure_requested.demo_mart").as_str(),
                erased.as_str()
            ),
            (format!("{prefix}.erased").as_str(), erased.as_str()),
        ]
    );
    for (_, id, v) in &msgs {
        assert_eq!(id, v["id"].as_str().unwrap(), "Nats-Msg-Id is the event id");
        assert!(v["at"].is_string());
    }
    // Events name the account while the case is open; once it is erased,
    // what is still to be published names only the pseudonym (the subject
    // id is forgotten as the case closes): here the erasure's own event.
    for (_, _, v) in &msgs {
        assert!(v["subject_id"].is_string() || v["subject_ref"].is_string());
    }
    assert!(msgs[4].2.get("subject_id").is_none(), "{:?}", msgs[4].2);
    assert!(msgs[4].2["subject_ref"].is_string(), "{:?}", msgs[4].2);
    assert_eq!(msgs[3].2["system"], "demo_mart");

    // A repeat of an event (a crash between the broker's acknowledgement
    // and Lethe's record) is dropped by the stream: same id, same count.
    let client = async_nats::connect(NATS).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Msg-Id", msgs[4].1.as_str());
    let ack = js
        .publish_with_headers(msgs[4].0.clone(), h, msgs[4].2.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(ack.duplicate);
    assert_eq!(
        js.get_stream(&stream)
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .messages,
        5
    );
    drop(demo);
    drop_stream(&stream).await;
}

#[tokio::test]
async fn a_service_erases_on_the_event_and_acknowledges_through_the_api() {
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let prefix = format!("lethe.a{tag}");
    let stream = prefix.replace('.', "_").to_uppercase();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("datamap.toml"),
        format!(
            "{}\n[[systems]]\nname = \"loyalty_svc\"\nkind = \"event\"\n",
            include_str!("../../../examples/demo-mart/datamap.toml")
        ),
    )
    .unwrap();
    let demo = Demo::start_with(
        dir.path(),
        50,
        &["--nats-url", NATS, "--events-prefix", &prefix],
    )
    .await;
    let user = clear_users(&demo.mart().await, 1).await[0];
    let id = demo.create(user).await;
    demo.to_cooling_off(&id).await;
    demo.advance(7 * 86_400 + 60).await;
    demo.wait_state(&id, "erasing", 30).await;
    // The service learns of the erasure from its event...
    let msgs = stream_messages(&stream, 3).await;
    let ev = msgs
        .iter()
        .find(|(s, _, _)| s == &format!("{prefix}.erasure_requested.loyalty_svc"))
        .expect("an erasure_requested event for the service");
    assert_eq!(ev.2["case_id"], json!(id));
    assert_eq!(ev.2["subject_id"], json!(user.to_string()));
    // ...the case waits for it...
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(demo.state(&id).await, "erasing");
    // ...an unknown system or a bad report is refused...
    let path = format!("/v1/cases/{id}/erasures/loyalty_svc");
    let (s, _) = demo
        .post(
            &format!("/v1/cases/{id}/erasures/crm"),
            json!({"status": "erased", "items": []}),
        )
        .await;
    assert_eq!(s, 404);
    let (s, v) = demo
        .post(&path, json!({"status": "erased", "items": [{"name": "members", "action": "delete", "count": 2, "remaining": 1}]}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["recorded"], false);
    // ...and its acknowledgement is the system's result: the case closes.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let (s, v) = demo
            .post(&path, json!({"status": "erased", "items": [{"name": "members", "action": "delete", "count": 2, "remaining": 0}]}))
            .await;
        if s == 200 && v["recorded"] == true {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{s} {v}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    demo.wait_state(&id, "erased", 60).await;
    let (_, receipt) = demo.get(&format!("/v1/cases/{id}/receipt")).await;
    let svc = receipt["systems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["system"] == "loyalty_svc")
        .unwrap_or_else(|| panic!("no loyalty_svc on the receipt: {receipt}"));
    assert_eq!(svc["tables"][0]["table"], "members");
    assert_eq!(svc["tables"][0]["rows"], 2);
    // A second acknowledgement finds nothing open.
    let (s, _) = demo
        .post(&path, json!({"status": "erased", "items": []}))
        .await;
    assert_eq!(s, 409);
    drop(demo);
    drop_stream(&stream).await;
}
