//! The vault over HTTP, through the Rust client crate, and crypto-shredding
//! as part of a cancellation.

mod common;

use common::*;
use lethe_client::{Client, DecryptItem, EncryptItem, FieldError};
use std::process::{Command, Stdio};

#[tokio::test]
async fn fields_are_bound_to_subject_and_field_and_shredded_with_the_account() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), 300).await;
    let client = Client::new(&demo.url, &demo.key).unwrap();
    let mart = demo.mart().await;
    let users = clear_users(&mart, 3).await;
    let (a, b) = (users[0].to_string(), users[1].to_string());

    let sealed = client
        .encrypt(&[
            EncryptItem {
                subject_id: &a,
                field: "id_number",
                plaintext: "110105199001011234",
            },
            EncryptItem {
                subject_id: &a,
                field: "bank_card",
                plaintext: "6222020000000000",
            },
            EncryptItem {
                subject_id: &b,
                field: "id_number",
                plaintext: "110105198802023456",
            },
            EncryptItem {
                subject_id: &b,
                field: "Bad Field",
                plaintext: "x",
            },
        ])
        .await
        .unwrap();
    let ct: Vec<String> = sealed[..3].iter().map(|r| r.clone().unwrap()).collect();
    assert!(matches!(&sealed[3], Err(FieldError::Other { code, .. }) if code == "bad_field"));
    assert!(
        ct.iter()
            .all(|c| c.starts_with("lv1:") && !c.contains("1101"))
    );

    let opened = client
        .decrypt(&[
            DecryptItem {
                subject_id: &a,
                field: "id_number",
                ciphertext: &ct[0],
            },
            DecryptItem {
                subject_id: &a,
                field: "bank_card",
                ciphertext: &ct[0],
            },
            DecryptItem {
                subject_id: &b,
                field: "id_number",
                ciphertext: &ct[0],
            },
            DecryptItem {
                subject_id: &a,
                field: "id_number",
                ciphertext: "lv1:AAAA",
            },
        ])
        .await
        .unwrap();
    assert_eq!(opened[0].as_deref(), Ok("110105199001011234"));
    assert_eq!(opened[1], Err(FieldError::Tampered));
    assert!(matches!(
        opened[2],
        Err(FieldError::Tampered) | Err(FieldError::UnknownKey)
    ));
    assert!(matches!(&opened[3], Err(FieldError::Other { code, .. }) if code == "malformed"));

    let idx = client
        .blind_index("phone", &["139 0000 0001", "13900000001", "13900000002"])
        .await
        .unwrap();
    assert_eq!(idx[0], idx[1]);
    assert_ne!(idx[0], idx[2]);

    // KEK rotation while the platform keeps reading and writing.
    let writer = {
        let (client, a) = (client.clone(), a.clone());
        tokio::spawn(async move {
            for i in 0..100 {
                let p = format!("v{i}");
                let c = client
                    .encrypt(&[EncryptItem {
                        subject_id: &a,
                        field: "note",
                        plaintext: &p,
                    }])
                    .await
                    .unwrap()
                    .remove(0)
                    .unwrap();
                let back = client
                    .decrypt(&[DecryptItem {
                        subject_id: &a,
                        field: "note",
                        ciphertext: &c,
                    }])
                    .await
                    .unwrap()
                    .remove(0)
                    .unwrap();
                assert_eq!(back, p);
            }
        })
    };
    // Rotation is an installation admin's action, not a platform key's.
    let (s, _) = demo
        .post("/v1/console/vault/kek/rotate", serde_json::json!({}))
        .await;
    assert_eq!(s, 401, "a platform key does not rotate the KEK");
    let admin = agent_session(&demo, "vault.admin", "admin").await;
    let resp = demo
        .http
        .post(format!("{}/v1/console/vault/kek/rotate", demo.url))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["kek_version"], 2);
    writer.await.unwrap();

    // Cancelling the account destroys the subject's keys: every copy of the
    // ciphertext is now unreadable, with a distinct error.
    let id = demo.create(users[0]).await;
    demo.to_cooling_off(&id).await;
    demo.advance(7 * 86_400 + 60).await;
    demo.wait_state(&id, "erased", 60).await;
    let after = client
        .decrypt(&[
            DecryptItem {
                subject_id: &a,
                field: "id_number",
                ciphertext: &ct[0],
            },
            DecryptItem {
                subject_id: &a,
                field: "bank_card",
                ciphertext: &ct[1],
            },
            DecryptItem {
                subject_id: &b,
                field: "id_number",
                ciphertext: &ct[2],
            },
        ])
        .await
        .unwrap();
    assert!(
        matches!(&after[0], Err(FieldError::Erased(d)) if d.contains("destroyed")),
        "{:?}",
        after[0]
    );
    assert!(matches!(&after[1], Err(FieldError::Erased(_))));
    assert_eq!(
        after[2].as_deref(),
        Ok("110105198802023456"),
        "another subject is untouched"
    );
    let (_, receipt) = demo.get(&format!("/v1/cases/{id}/receipt")).await;
    assert_eq!(
        receipt["key_destruction"]["versions_destroyed"], 1,
        "{receipt}"
    );
    assert!(
        receipt["key_destruction"]["destroyed_at"]
            .as_str()
            .is_some()
    );
    // No system entry for the vault among the platform's tables.
    assert!(
        receipt["systems"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["system"] == "demo_mart")
    );
}

#[tokio::test]
async fn a_missing_vault_key_file_stops_start_up_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut demo = Demo::start(dir.path(), 50).await;
        let client = Client::new(&demo.url, &demo.key).unwrap();
        client
            .encrypt(&[EncryptItem {
                subject_id: "1",
                field: "phone",
                plaintext: "13900000001",
            }])
            .await
            .unwrap()
            .remove(0)
            .unwrap();
        demo.kill9();
    }
    std::fs::rename(
        dir.path().join("vault.kek"),
        dir.path().join("vault.kek.bak"),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(store_args(dir.path()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("vault.kek") && err.contains("missing") && err.contains("restore"),
        "{err}"
    );
    // A corrupt file is named as such.
    std::fs::write(dir.path().join("vault.kek"), "not json").unwrap();
    let out = Command::new(BIN)
        .args(["demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(store_args(dir.path()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupt"));
}
