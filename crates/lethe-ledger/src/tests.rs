use super::*;

fn ev(seq: u64) -> AuditEvent {
    AuditEvent {
        seq,
        case_id: format!("case-{}", seq / 3),
        subject: "3f2a".into(),
        kind: "case.submitted".into(),
        from_state: None,
        to_state: "submitted".into(),
        actor: "worker".into(),
        at: "2026-01-01T00:00:00Z".into(),
        detail: serde_json::json!({"b": 1, "a": 2}),
    }
}

fn signer() -> Signer {
    Signer::from_seed(&[9u8; 32])
}

/// A log of `n` events with tree heads signed at the given sizes.
fn export(n: u64, heads_at: &[u64]) -> LogExport {
    let s = signer();
    let mut f = merkle::Frontier::default();
    let mut events = vec![];
    let mut tree_heads = vec![];
    for seq in 1..=n {
        let e = ev(seq);
        let h = e.leaf_hash();
        f.push(h, |_, _, _| {});
        events.push(RecordedEvent {
            event: e,
            hash: hex::encode(h),
            redacted: false,
        });
        if heads_at.contains(&seq) {
            tree_heads.push(TreeHead::sign(&s, seq, &f.root(), "2026-01-01T00:00:00Z"));
        }
    }
    LogExport { events, tree_heads }
}

fn pk() -> String {
    signer().public_key_hex()
}

#[test]
fn an_untouched_log_verifies_with_the_public_key_alone() {
    let x = export(100, &[10, 50, 100]);
    assert_eq!(
        verify_log(&x, &pk()).unwrap(),
        LogVerified {
            events: 100,
            tree_heads: 3,
            unsigned_tail: 0
        }
    );
    let y = export(105, &[10, 50, 100]);
    assert_eq!(verify_log(&y, &pk()).unwrap().unsigned_tail, 5);
}

#[test]
fn a_modified_event_is_pinpointed() {
    let mut x = export(100, &[100]);
    x.events[41].event.detail = serde_json::json!({"a": 3});
    assert_eq!(verify_log(&x, &pk()), Err(LogError::Modified { seq: 42 }));
}

#[test]
fn a_removed_event_is_pinpointed() {
    let mut x = export(100, &[100]);
    x.events.remove(29);
    assert_eq!(
        verify_log(&x, &pk()),
        Err(LogError::Removed {
            position: 29,
            expected: 30,
            found: 31
        })
    );
}

#[test]
fn reordered_events_are_pinpointed() {
    let mut x = export(100, &[100]);
    x.events.swap(60, 61);
    assert_eq!(
        verify_log(&x, &pk()),
        Err(LogError::Reordered {
            position: 60,
            expected: 61,
            found: 62
        })
    );
}

#[test]
fn an_inserted_event_is_pinpointed() {
    let mut x = export(100, &[100]);
    let forged = x.events[19].clone();
    x.events.insert(20, forged);
    assert_eq!(
        verify_log(&x, &pk()),
        Err(LogError::Inserted {
            position: 20,
            found: 20
        })
    );
}

#[test]
fn a_rewritten_range_is_caught_by_the_signed_heads() {
    // The attacker rewrites event 70 and its recorded hash consistently.
    let mut x = export(100, &[50, 80, 100]);
    x.events[69].event.actor = "someone-else".into();
    x.events[69].hash = hex::encode(x.events[69].event.leaf_hash());
    assert_eq!(
        verify_log(&x, &pk()),
        Err(LogError::HeadMismatch {
            tree_size: 80,
            from_seq: 51,
            to_seq: 80
        })
    );
}

#[test]
fn truncation_and_forged_heads_are_caught() {
    let mut x = export(100, &[50, 100]);
    x.events.truncate(90);
    assert_eq!(
        verify_log(&x, &pk()),
        Err(LogError::Truncated {
            tree_size: 100,
            events: 90
        })
    );
    let mut y = export(100, &[100]);
    y.tree_heads[0].tree_size = 99;
    assert_eq!(
        verify_log(&y, &pk()),
        Err(LogError::BadSignature { tree_size: 99 })
    );
    let other = Signer::from_seed(&[1u8; 32]).public_key_hex();
    assert!(matches!(
        verify_log(&export(10, &[10]), &other),
        Err(LogError::BadSignature { .. })
    ));
    assert_eq!(
        verify_log(&export(10, &[]), &pk()),
        Err(LogError::NoTreeHead)
    );
}

fn receipt() -> Receipt {
    let x = export(20, &[]);
    let s = signer();
    let leaves: Vec<Hash> = x.events.iter().map(|e| e.event.leaf_hash()).collect();
    let mut f = merkle::Frontier::default();
    let mut nodes = std::collections::HashMap::new();
    for (i, l) in leaves.iter().enumerate() {
        nodes.insert((0u32, i as u64), *l);
        f.push(*l, |lv, ix, h| {
            nodes.insert((lv, ix), *h);
        });
    }
    let head = TreeHead::sign(&s, 20, &f.root(), "2026-01-09T00:00:00Z");
    let proof: Vec<Hash> = merkle::inclusion_ranges(16, 20)
        .iter()
        .map(|(st, l)| {
            merkle::range_hash(*st, *l, &|lv, ix| nodes.get(&(lv, ix)).copied()).unwrap()
        })
        .collect();
    Receipt {
        case_id: "c1".into(),
        subject: "3f2a".into(),
        issued_at: "2026-01-09T00:00:00Z".into(),
        systems: vec![ReceiptSystem {
            system: "demo_mart".into(),
            tables: vec![ReceiptTable {
                table: "orders".into(),
                action: "delete".into(),
                rows: 7,
                remaining: Some(0),
                legal_basis: None,
                retain_until: None,
                shared_kept: 0,
                set_null: vec![],
                hashed: vec![],
                stub_for: None,
                stub_deleted: 0,
                labels: None,
            }],
        }],
        key_destruction: Some(KeyDestruction {
            versions_destroyed: 1,
            destroyed_at: "2026-01-09T00:00:00Z".into(),
        }),
        steps: vec![],
        settlements: vec![],
        support_url: None,
        final_event: Some(FinalEvent {
            seq: 17,
            hash: hex::encode(leaves[16]),
        }),
        tree_head: None,
        inclusion_proof: vec![],
        digest: String::new(),
        signature: String::new(),
        public_key: String::new(),
    }
    .seal()
    .sign(&s, head, proof)
}

#[test]
fn a_genuine_receipt_verifies() {
    let r = receipt();
    assert!(r.is_signed());
    assert_eq!(r.verify(&pk()), Ok(()));
    // Through JSON, as a user would hold it.
    let back: Receipt = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(back.verify(&pk()), Ok(()));
}

#[test]
fn forged_receipts_are_refused() {
    let mut r = receipt();
    r.systems[0].tables[0].rows = 700;
    assert_eq!(r.verify(&pk()), Err(ReceiptError::Digest));
    // Altered and re-digested, but the signature no longer matches.
    let mut r = receipt();
    r.systems[0].tables[0].remaining = Some(3);
    r.digest = r.compute_digest();
    assert_eq!(r.verify(&pk()), Err(ReceiptError::Signature));
    // Signed by someone else entirely.
    let mut r = receipt();
    let forger = Signer::from_seed(&[2u8; 32]);
    r.public_key = forger.public_key_hex();
    r.digest = r.compute_digest();
    assert_eq!(r.verify(&pk()), Err(ReceiptError::WrongKey));
    // A proof that does not reach the signed root.
    let mut r = receipt();
    let head = r.tree_head.clone().unwrap();
    let mut proof: Vec<Hash> = r
        .inclusion_proof
        .iter()
        .map(|h| unhex(h).unwrap())
        .collect();
    proof[0][0] ^= 1;
    r = r.sign(&signer(), head, proof);
    assert_eq!(r.verify(&pk()), Err(ReceiptError::Inclusion));
}

#[test]
fn pseudonyms_are_keyed_and_stable() {
    assert_eq!(pseudonym(b"k", "42"), pseudonym(b"k", "42"));
    assert_ne!(pseudonym(b"k", "42"), pseudonym(b"other", "42"));
    assert_eq!(pseudonym(b"k", "42").len(), 32);
}

#[test]
fn verification_across_many_chunks_matches_the_reference() {
    let sizes = [1, 16_383, 16_384, 16_385, 30_000, 32_768, 40_000];
    let x = export(40_000, &sizes);
    assert_eq!(
        verify_log(&x, &pk()).unwrap(),
        LogVerified {
            events: 40_000,
            tree_heads: 7,
            unsigned_tail: 0
        }
    );
    let mut m = x.clone();
    m.events[35_000].event.actor = "x".into();
    assert_eq!(
        verify_log(&m, &pk()),
        Err(LogError::Modified { seq: 35_001 })
    );
    let mut r = x.clone();
    r.events[20_000].event.actor = "x".into();
    r.events[20_000].hash = hex::encode(r.events[20_000].event.leaf_hash());
    assert_eq!(
        verify_log(&r, &pk()),
        Err(LogError::HeadMismatch {
            tree_size: 30_000,
            from_seq: 16_386,
            to_seq: 30_000
        })
    );
}

mod canonical {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_hand_written_encoder_equals_serde_json(
            seq in any::<u64>(),
            a in any::<String>(),
            b in "[\\\\x00-\\\\x7f]{0,40}",
            c in proptest::option::of(any::<String>()),
            k in any::<String>(),
            n in any::<i64>(),
        ) {
            let e = AuditEvent {
                seq,
                case_id: a.clone(),
                subject: b.clone(),
                kind: k.clone(),
                from_state: c,
                to_state: b,
                actor: a,
                at: k.clone(),
                detail: serde_json::json!({ "z": n, "a": [k, "\\u{7f}\\u{1}"], "m": { "y": null, "b": true } }),
            };
            prop_assert_eq!(e.canonical(), serde_json::to_vec(&e).unwrap());
            // The sequencer hashes the tail written before the event had a
            // sequence number: the same leaf hash.
            let mut tail = vec![];
            e.canonical_tail_into(&mut tail);
            prop_assert_eq!(crate::leaf_hash_of(e.seq, &tail), e.leaf_hash());
        }
    }
}

fn file(n: u64, heads: &[u64]) -> String {
    let x = export(n, heads);
    let mut out = vec![];
    write_log_file(&mut out, &x.events, &x.tree_heads);
    String::from_utf8(out).unwrap()
}

#[test]
fn log_files_verify_and_pinpoint_tampering() {
    let text = file(50, &[25, 50]);
    assert_eq!(verify_log_file(&text, &pk()).unwrap().events, 50);
    let lines: Vec<&str> = text.lines().collect();
    let join = |ls: Vec<String>| ls.join("\n") + "\n";
    let own = |ls: &[&str]| ls.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // Modified: one character of event 10.
    let mut m = own(&lines);
    m[10] = m[10].replace("\"worker\"", "\"agent:7\"");
    assert_eq!(
        verify_log_file(&join(m), &pk()),
        Err(LogFileError::Log(LogError::Modified { seq: 10 }))
    );
    // Removed: event 30.
    let mut r = own(&lines);
    r.remove(30);
    assert_eq!(
        verify_log_file(&join(r), &pk()),
        Err(LogFileError::Log(LogError::Removed {
            position: 29,
            expected: 30,
            found: 31
        }))
    );
    // Reordered: events 5 and 6.
    let mut o = own(&lines);
    o.swap(5, 6);
    assert_eq!(
        verify_log_file(&join(o), &pk()),
        Err(LogFileError::Log(LogError::Reordered {
            position: 4,
            expected: 5,
            found: 6
        }))
    );
    // Inserted: a copy of event 12.
    let mut i = own(&lines);
    let dup = i[12].clone();
    i.insert(13, dup);
    assert_eq!(
        verify_log_file(&join(i), &pk()),
        Err(LogFileError::Log(LogError::Inserted {
            position: 12,
            found: 12
        }))
    );
    // Garbage is named by line.
    let mut g = own(&lines);
    g[3] = "nonsense".into();
    assert_eq!(
        verify_log_file(&join(g), &pk()),
        Err(LogFileError::Line { line: 4 })
    );
}
