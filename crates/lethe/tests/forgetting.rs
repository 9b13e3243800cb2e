//! An erased account leaves nothing behind in Lethe itself: after the
//! erasure, no table of Lethe's store (a backup made afterwards on SQLite, a
//! `pg_dump` on PostgreSQL), no file of its data directory and no log line
//! holds the subject id, the phone number, the ID number or the name.

mod common;

use common::*;
use serde_json::json;
use std::path::Path;
use std::process::Command;

/// Every file under `dir` (recursively), but the live databases: Lethe's
/// own is searched through a backup or a dump, the platform's is not
/// Lethe's.
fn files(root: &Path, dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if p.is_dir() {
            files(root, &p, out);
        } else {
            let live_store = name.starts_with("lethe.db") && p.parent() == Some(root);
            if !live_store && !name.starts_with("demo-mart.db") {
                out.push(p);
            }
        }
    }
}

fn hits(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn an_erased_subject_leaves_no_trace_in_lethe() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), 5).await;

    // A subject whose id, phone, ID number and name appear nowhere else.
    let r = uuid::Uuid::new_v4().as_u128();
    let subject: i64 = 800_000_000_000 + (r % 100_000_000_000) as i64;
    let phone = format!("1{:010}", (r >> 40) % 10_000_000_000);
    let id_number = format!("{:017}X", (r >> 70) % 100_000_000_000_000_000);
    let name = format!("Forgotten{:x}", r >> 96);
    let mart = demo.mart().await;
    sqlx::query("INSERT INTO users (id, phone, email, nickname, status, created_at) VALUES (?, ?, NULL, ?, 'active', '2020-01-01T00:00:00Z')")
        .bind(subject)
        .bind(&phone)
        .bind(format!("nick-{name}"))
        .execute(&mart)
        .await
        .unwrap();
    sqlx::query("INSERT INTO real_names (user_id, legal_name, id_number, verified_at) VALUES (?, ?, ?, '2020-01-01T00:00:00Z')")
        .bind(subject)
        .bind(&name)
        .bind(&id_number)
        .execute(&mart)
        .await
        .unwrap();
    sqlx::query("INSERT INTO addresses (user_id, recipient, phone, province, city, line1) VALUES (?, ?, ?, 'Zhejiang', 'Hangzhou', '1 Forgetting Road')")
        .bind(subject)
        .bind(&name)
        .bind(&phone)
        .execute(&mart)
        .await
        .unwrap();

    // The whole flow: a case (with retries that leave idempotency records),
    // SMS codes, an export of the data, cooling-off, erasure.
    let id = demo.create(subject).await;
    demo.to_cooling_off(&id).await;
    let (s, ex) = demo
        .post(
            &format!("/v1/cases/{id}/exports"),
            json!({"single_use": true}),
        )
        .await;
    assert_eq!(s, 202, "{ex}");
    let export = ex["id"].as_str().unwrap().to_owned();
    for _ in 0..100 {
        let (_, e) = demo.get(&format!("/v1/exports/{export}")).await;
        if e["state"] == "ready" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    demo.advance(8 * 86_400).await;
    demo.wait_state(&id, "erased", 60).await;
    let (s, receipt) = demo.get(&format!("/v1/cases/{id}/receipt")).await;
    assert_eq!(s, 200, "{receipt}");
    let (_, notes) = demo.get(&format!("/v1/notifications?case_id={id}")).await;
    assert!(
        notes.as_array().is_some_and(|n| !n.is_empty()),
        "the case sent notifications: {notes}"
    );

    // Lethe's store, as a backup made now (SQLite) or a dump (PostgreSQL).
    let mut haystacks: Vec<(String, Vec<u8>)> = vec![];
    if let Some(url) = store_url(dir.path()) {
        let out = Command::new("pg_dump")
            .args(["--data-only", "--no-owner", &url])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout.len() > 1000);
        haystacks.push(("pg_dump of Lethe's store".into(), out.stdout));
    } else {
        let backup = dir.path().join("backup");
        lethe_cli(
            dir.path(),
            &["backup"],
            &["--out", backup.to_str().unwrap()],
        );
    }
    let mut all = vec![];
    let backed_up = |all: &Vec<std::path::PathBuf>| all.iter().any(|p| p.ends_with("lethe.db"));
    files(dir.path(), dir.path(), &mut all);
    assert!(
        all.iter()
            .any(|p| p.to_string_lossy().contains("lethe")
                && p.extension().is_some_and(|e| e == "log")),
        "the log is searched too: {all:?}"
    );
    assert!(
        store_url(dir.path()).is_some() || backed_up(&all),
        "the backup of the store is searched: {all:?}"
    );
    for p in all {
        haystacks.push((p.display().to_string(), std::fs::read(&p).unwrap()));
    }
    let needles = [
        ("subject id", subject.to_string()),
        ("phone", phone.clone()),
        ("ID number", id_number.clone()),
        ("name", name.clone()),
    ];
    for (place, bytes) in &haystacks {
        eprintln!("searched {place}: {} bytes", bytes.len());
    }
    let mut found = vec![];
    for (what, needle) in &needles {
        for (place, bytes) in &haystacks {
            if hits(bytes, needle) {
                found.push(format!("the {what} is in {place}"));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}
