//! Proof end to end: signed receipts and their verification (genuine and
//! forged), the audit log's proofs, offline verification of an exported log
//! with tampering pinpointed, and the signed compliance report.

mod common;

use common::*;
use serde_json::{Value, json};
use std::process::{Command, Stdio};

fn lethe(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn unhex(s: &str) -> [u8; 32] {
    let mut h = [0u8; 32];
    hex::decode_to_slice(s, &mut h).unwrap();
    h
}

#[tokio::test]
async fn receipts_logs_and_reports_verify_and_forgeries_do_not() {
    let dir = tempfile::tempdir().unwrap();
    // A calendar covering this year and the next, so the deadlines in the
    // report do not depend on the shipped years.
    let year = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap())
        .date()
        .year();
    let cal = dir.path().join("calendar.toml");
    std::fs::write(&cal, format!("[[year]]\nyear = {year}\nreplace = true\nsource = \"test\"\n\n[[year]]\nyear = {}\nreplace = true\nsource = \"test\"\n", year + 1)).unwrap();
    let demo = Demo::start_with(dir.path(), 300, &["--calendar-file", cal.to_str().unwrap()]).await;
    let user = clear_users(&demo.mart().await, 1).await[0];
    let id = demo.create(user).await;
    demo.to_cooling_off(&id).await;
    demo.advance(7 * 86_400 + 60).await;
    demo.wait_state(&id, "erased", 60).await;
    let (_, pk) = demo.get("/v1/audit/public-key").await;
    let pk = pk["public_key"].as_str().unwrap().to_owned();

    // The receipt is signed, with the inclusion proof of its final event.
    let (s, receipt) = demo.get(&format!("/v1/cases/{id}/receipt")).await;
    assert_eq!(s, 200);
    assert!(
        !receipt["signature"].as_str().unwrap().is_empty(),
        "{receipt}"
    );
    assert_eq!(receipt["public_key"], json!(pk));
    let head = &receipt["tree_head"];
    assert!(head["tree_size"].as_u64().unwrap() >= receipt["final_event"]["seq"].as_u64().unwrap());
    let file = dir.path().join("receipt.json");
    std::fs::write(&file, receipt.to_string()).unwrap();
    let (ok, out, err) = lethe(&[
        "receipt",
        "verify",
        "--receipt",
        file.to_str().unwrap(),
        "--public-key",
        &pk,
    ]);
    assert!(ok && out.contains("genuine"), "{out}{err}");
    // A forged receipt (fewer rows claimed erased) is refused.
    let mut forged = receipt.clone();
    forged["systems"][0]["tables"][0]["rows"] = json!(0);
    std::fs::write(&file, forged.to_string()).unwrap();
    let (ok, _, err) = lethe(&[
        "receipt",
        "verify",
        "--receipt",
        file.to_str().unwrap(),
        "--public-key",
        &pk,
    ]);
    assert!(
        !ok && err.contains("does NOT verify") && err.contains("altered"),
        "{err}"
    );
    // The readable page.
    let html = demo
        .http
        .get(format!("{}/v1/cases/{id}/receipt.html", demo.url))
        .bearer_auth(&demo.key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("Deletion receipt")
            && html.contains("invoices")
            && html.contains("Keys destroyed"),
        "{html}"
    );

    // Proofs over the API verify against signed heads.
    let (_, h1) = demo.post("/v1/audit/tree-heads", json!({})).await;
    let n1 = h1["tree_size"].as_u64().unwrap();
    demo.create(clear_users(&demo.mart().await, 2).await[1])
        .await;
    let (_, h2) = demo.post("/v1/audit/tree-heads", json!({})).await;
    let n2 = h2["tree_size"].as_u64().unwrap();
    assert!(n2 > n1);
    let (_, p) = demo
        .get(&format!(
            "/v1/audit/proofs/consistency?first={n1}&second={n2}"
        ))
        .await;
    let proof: Vec<[u8; 32]> = p["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| unhex(x.as_str().unwrap()))
        .collect();
    assert!(lethe_ledger::merkle::verify_consistency(
        n1,
        n2,
        &unhex(h1["root_hash"].as_str().unwrap()),
        &unhex(h2["root_hash"].as_str().unwrap()),
        &proof
    ));
    let (s, p) = demo
        .get(&format!(
            "/v1/audit/proofs/inclusion?seq={}&tree_size={n2}",
            n2 + 1
        ))
        .await;
    assert_eq!(s, 422, "{p}");

    // Offline verification of the exported log; then tampering is pinpointed.
    let cfg = dir.path().join("lethe.toml");
    std::fs::write(&cfg, common::config_toml(dir.path())).unwrap();
    let log = dir.path().join("audit.log");
    let (ok, _, err) = lethe(&[
        "audit",
        "export",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        log.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = lethe(&[
        "audit",
        "verify",
        "--log",
        log.to_str().unwrap(),
        "--public-key",
        &pk,
    ]);
    assert!(ok && out.contains("log verified"), "{out}{err}");
    let lethe_db = demo.lethe_db_writable().await;
    sqlx::query("UPDATE audit_entries SET actor = 'agent:mallory' WHERE qid = (SELECT qid FROM audit_leaves WHERE seq = 5)")
        .execute(&lethe_db)
        .await
        .unwrap();
    let (ok, _, _) = lethe(&[
        "audit",
        "export",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        log.to_str().unwrap(),
    ]);
    assert!(ok);
    let (ok, _, err) = lethe(&[
        "audit",
        "verify",
        "--log",
        log.to_str().unwrap(),
        "--public-key",
        &pk,
    ]);
    assert!(!ok && err.contains("event 5 was modified"), "{err}");
    sqlx::query("UPDATE audit_entries SET actor = 'platform:demo' WHERE qid = (SELECT qid FROM audit_leaves WHERE seq = 5)")
        .execute(&lethe_db)
        .await
        .unwrap();

    // The compliance report, signed as JSON and as HTML.
    let (s, rep) = demo
        .get("/v1/reports/compliance?from=2000-01-01&to=2100-01-01")
        .await;
    assert_eq!(s, 200, "{rep}");
    let signed: lethe_ledger::report::SignedReport = serde_json::from_value(rep.clone()).unwrap();
    assert!(signed.verify(&pk));
    assert_eq!(signed.report.cases, 2);
    assert_eq!(signed.report.by_channel["app"], 2);
    assert_eq!(signed.report.by_outcome["erased"], 1);
    assert_eq!(signed.report.durations.count, 1);
    assert_eq!(signed.report.verification.systems_verified, 1);
    assert!(
        signed
            .report
            .deadlines
            .iter()
            .any(|d| d.kind == "completion" && d.met_on_time == 1)
    );
    let r = demo
        .http
        .get(format!(
            "{}/v1/reports/compliance?from=2000-01-01&to=2100-01-01&format=html",
            demo.url
        ))
        .bearer_auth(&demo.key)
        .send()
        .await
        .unwrap();
    let sig = r.headers()["lethe-signature"]
        .to_str()
        .unwrap()
        .strip_prefix("ed25519=")
        .unwrap()
        .to_owned();
    let html = r.text().await.unwrap();
    assert!(
        html.contains("<svg") && !html.contains("<script") && !html.contains("cdn"),
        "inline SVG, no script, no CDN"
    );
    assert!(lethe_ledger::verify_signature(&pk, html.as_bytes(), &sig));
    let out_dir = dir.path().join("report");
    let (ok, _, err) = lethe(&[
        "report",
        "--config",
        cfg.to_str().unwrap(),
        "--from",
        "2000-01-01",
        "--to",
        "2100-01-01",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = lethe(&[
        "report",
        "--config",
        cfg.to_str().unwrap(),
        "--verify",
        out_dir.join("report.json").to_str().unwrap(),
        "--public-key",
        &pk,
    ]);
    assert!(ok && out.contains("is signed"), "{out}{err}");
    let html = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
    let sig = std::fs::read_to_string(out_dir.join("report.html.sig")).unwrap();
    assert!(lethe_ledger::verify_signature(
        &pk,
        html.as_bytes(),
        sig.trim()
    ));
    let _: Value = rep;
}
