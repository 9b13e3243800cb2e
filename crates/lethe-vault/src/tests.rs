use super::*;
use std::sync::atomic::{AtomicBool, Ordering};

fn vault_in(dir: &std::path::Path) -> (Vault, Arc<MemoryKeyStore>) {
    let store = Arc::new(MemoryKeyStore::default());
    let kek = Arc::new(LocalKeyFile::open(&dir.join("vault.kek"), true).unwrap());
    (Vault::new(kek, store.clone(), &[7u8; 32]), store)
}

fn f(s: &str) -> FieldName {
    FieldName::parse(s).unwrap()
}

#[tokio::test]
async fn round_trip_and_binding_to_subject_and_field() {
    let d = tempfile::tempdir().unwrap();
    let (v, _) = vault_in(d.path());
    let ct = v
        .encrypt("u1", &f("id_number"), b"110105199001011234")
        .await
        .unwrap();
    assert_eq!(
        &*v.decrypt("u1", &f("id_number"), &ct).await.unwrap(),
        b"110105199001011234"
    );
    // Wrong field: the associated data differs.
    assert_eq!(
        v.decrypt("u1", &f("phone"), &ct).await.unwrap_err(),
        VaultError::Tampered
    );
    // Wrong subject (with no key, then with a key of its own).
    assert_eq!(
        v.decrypt("u2", &f("id_number"), &ct).await.unwrap_err(),
        VaultError::UnknownKey
    );
    v.encrypt("u2", &f("x"), b"y").await.unwrap();
    assert_eq!(
        v.decrypt("u2", &f("id_number"), &ct).await.unwrap_err(),
        VaultError::Tampered
    );
    // Text form round-trips.
    assert_eq!(from_text(&to_text(&ct)).unwrap(), ct);
}

#[tokio::test]
async fn tampered_ciphertexts_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let (v, _) = vault_in(d.path());
    let ct = v
        .encrypt("u1", &f("card"), b"6222020000000000")
        .await
        .unwrap();
    for i in [5usize, 20, ct.len() - 1, ct.len() / 2] {
        let mut t = ct.clone();
        t[i] ^= 0x01;
        assert_eq!(
            v.decrypt("u1", &f("card"), &t).await.unwrap_err(),
            VaultError::Tampered,
            "byte {i}"
        );
    }
    let mut t = ct.clone();
    t[1] ^= 0x01; // the key version
    assert!(matches!(
        v.decrypt("u1", &f("card"), &t).await.unwrap_err(),
        VaultError::UnknownKey
    ));
    assert!(matches!(
        v.decrypt("u1", &f("card"), &ct[..10]).await.unwrap_err(),
        VaultError::Malformed(_)
    ));
    let mut t = ct.clone();
    t[0] = 9;
    assert!(matches!(
        v.decrypt("u1", &f("card"), &t).await.unwrap_err(),
        VaultError::Malformed(_)
    ));
}

#[tokio::test]
async fn destroyed_keys_make_every_copy_unreadable_with_a_distinct_error() {
    let d = tempfile::tempdir().unwrap();
    let (v, store) = vault_in(d.path());
    let ct = v.encrypt("u1", &f("phone"), b"13900000001").await.unwrap();
    let backup_copy = ct.clone();
    let other = v.encrypt("u2", &f("phone"), b"13900000002").await.unwrap();
    let r = v.destroy("u1", "2026-11-23T00:00:00Z").await.unwrap();
    assert_eq!(r.versions_destroyed, 1);
    let e = v
        .decrypt("u1", &f("phone"), &backup_copy)
        .await
        .unwrap_err();
    assert_eq!(
        e,
        VaultError::Erased {
            at: "2026-11-23T00:00:00Z".into()
        }
    );
    assert!(e.to_string().contains("destroyed"));
    // Encrypting again for an erased subject is refused too.
    assert!(matches!(
        v.encrypt("u1", &f("phone"), b"x").await.unwrap_err(),
        VaultError::Erased { .. }
    ));
    // Idempotent, and other subjects are unaffected.
    assert_eq!(
        v.destroy("u1", "later").await.unwrap(),
        Destruction {
            versions_destroyed: 0,
            destroyed_at: "2026-11-23T00:00:00Z".into()
        }
    );
    assert_eq!(
        &*v.decrypt("u2", &f("phone"), &other).await.unwrap(),
        b"13900000002"
    );
    assert_eq!(store.count().await.unwrap(), 1);
}

#[tokio::test]
async fn kek_rotation_while_reads_and_writes_go_on() {
    let d = tempfile::tempdir().unwrap();
    let (v, store) = vault_in(d.path());
    let v = Arc::new(v);
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = vec![];
    for t in 0..4 {
        let (v, stop) = (v.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut made: Vec<(String, Vec<u8>, Vec<u8>)> = vec![];
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) || i < 200 {
                let s = format!("s{}", (i * 7 + t) % 300);
                let msg = format!("{t}-{i}").into_bytes();
                let ct = v
                    .encrypt(&s, &FieldName::parse("f").unwrap(), &msg)
                    .await
                    .unwrap();
                made.push((s, msg, ct));
                let (s, m, c) = &made[(i as usize * 13) % made.len()];
                assert_eq!(
                    &*v.decrypt(s, &FieldName::parse("f").unwrap(), c)
                        .await
                        .unwrap(),
                    &m[..]
                );
                i += 1;
                tokio::task::yield_now().await;
            }
            made
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    for _ in 0..3 {
        let version = v.rotate_kek().unwrap();
        while v.rewrap_batch(50).await.unwrap() > 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(store.wrapped_below(version, 10).await.unwrap().len(), 0);
    }
    stop.store(true, Ordering::Relaxed);
    let mut all = vec![];
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    // Finish re-wrapping keys created during the last rotation, then read
    // everything back with a fresh vault on the same key file (cold cache).
    while v.rewrap_batch(100).await.unwrap() > 0 {}
    let kek = Arc::new(LocalKeyFile::open(&d.path().join("vault.kek"), false).unwrap());
    assert_eq!(kek.current_version(), 4);
    let fresh = Vault::new(kek, store.clone(), &[7u8; 32]);
    for (s, m, c) in &all {
        assert_eq!(&*fresh.decrypt(s, &f("f"), c).await.unwrap(), &m[..]);
    }
    assert_eq!(store.wrapped_below(4, 10).await.unwrap().len(), 0);
}

#[test]
fn a_missing_or_corrupt_key_file_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("vault.kek");
    let e = LocalKeyFile::open(&p, false).unwrap_err().to_string();
    assert!(e.contains("missing") && e.contains("restore"), "{e}");
    LocalKeyFile::open(&p, true).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    std::fs::write(
        &p,
        "{\"format\":\"lethe-vault-kek-v1\",\"current\":1,\"keys\":{\"1\":\"zz\"}}",
    )
    .unwrap();
    let e = LocalKeyFile::open(&p, false).unwrap_err().to_string();
    assert!(e.contains("corrupt") && !e.contains("zz"), "{e}");
    std::fs::write(&p, "garbage").unwrap();
    assert!(
        LocalKeyFile::open(&p, false)
            .unwrap_err()
            .to_string()
            .contains("corrupt")
    );
}

#[tokio::test]
async fn blind_indexes_match_equal_values_only() {
    let d = tempfile::tempdir().unwrap();
    let (v, _) = vault_in(d.path());
    let a = v.blind_index(&f("phone"), "139 0000 0001");
    assert_eq!(a, v.blind_index(&f("phone"), "13900000001"));
    assert_ne!(a, v.blind_index(&f("phone"), "13900000002"));
    assert_ne!(a, v.blind_index(&f("id_number"), "13900000001"));
    assert_eq!(
        v.blind_index(&f("id_number"), "11010519900101123x"),
        v.blind_index(&f("id_number"), "11010519900101123X")
    );
    assert!(!a.contains("13900000001"));
}

#[test]
fn key_material_is_never_printed() {
    assert_eq!(format!("{:?}", DataKey::generate()), "DataKey(<redacted>)");
}

#[tokio::test]
async fn limits_hold() {
    let d = tempfile::tempdir().unwrap();
    let (v, _) = vault_in(d.path());
    assert!(matches!(
        v.encrypt("u", &f("f"), &vec![0u8; MAX_FIELD_BYTES + 1])
            .await,
        Err(VaultError::TooLarge { .. })
    ));
    let many: Vec<_> = (0..MAX_BATCH + 1)
        .map(|_| ("u".to_owned(), f("f"), vec![1u8]))
        .collect();
    assert!(matches!(
        v.encrypt_batch(&many).await,
        Err(VaultError::BatchTooLarge { .. })
    ));
    assert!(FieldName::parse("Bad Field").is_err());
}
