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
        events.push(RecordedEvent { event: e, hash: hex::encode(h) });
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
    assert_eq!(verify_log(&x, &pk()).unwrap(), LogVerified { events: 100, tree_heads: 3, unsigned_tail: 0 });
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
    assert_eq!(verify_log(&x, &pk()), Err(LogError::Removed { position: 29, expected: 30, found: 31 }));
}

#[test]
fn reordered_events_are_pinpointed() {
    let mut x = export(100, &[100]);
    x.events.swap(60, 61);
    assert_eq!(verify_log(&x, &pk()), Err(LogError::Reordered { position: 60, expected: 61, found: 62 }));
}

#[test]
fn an_inserted_event_is_pinpointed() {
    let mut x = export(100, &[100]);
    let forged = x.events[19].clone();
    x.events.insert(20, forged);
    assert_eq!(verify_log(&x, &pk()), Err(LogError::Inserted { position: 20, found: 20 }));
}

#[test]
fn a_rewritten_range_is_caught_by_the_signed_heads() {
    // The attacker rewrites event 70 and its recorded hash consistently.
    let mut x = export(100, &[50, 80, 100]);
    x.events[69].event.actor = "someone-else".into();
    x.events[69].hash = hex::encode(x.events[69].event.leaf_hash());
    assert_eq!(verify_log(&x, &pk()), Err(LogError::HeadMismatch { tree_size: 80, from_seq: 51, to_seq: 80 }));
}

#[test]
fn truncation_and_forged_heads_are_caught() {
    let mut x = export(100, &[50, 100]);
    x.events.truncate(90);
    assert_eq!(verify_log(&x, &pk()), Err(LogError::Truncated { tree_size: 100, events: 90 }));
    let mut y = export(100, &[100]);
    y.tree_heads[0].tree_size = 99;
    assert_eq!(verify_log(&y, &pk()), Err(LogError::BadSignature { tree_size: 99 }));
    let other = Signer::from_seed(&[1u8; 32]).public_key_hex();
    assert!(matches!(verify_log(&export(10, &[10]), &other), Err(LogError::BadSignature { .. })));
    assert_eq!(verify_log(&export(10, &[]), &pk()), Err(LogError::NoTreeHead));
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
    let proof: Vec<Hash> = merkle::inclusion_ranges(16, 20).iter().map(|(st, l)| merkle::range_hash(*st, *l, &|lv, ix| nodes.get(&(lv, ix)).copied()).unwrap()).collect();
    Receipt {
        case_id: "c1".into(),
        subject: "3f2a".into(),
        issued_at: "2026-01-09T00:00:00Z".into(),
        systems: vec![ReceiptSystem {
            system: "demo_mart".into(),
            tables: vec![ReceiptTable { table: "orders".into(), action: "delete".into(), rows: 7, remaining: Some(0), legal_basis: None, retain_until: None }],
        }],
        key_destruction: Some(KeyDestruction { versions_destroyed: 1, destroyed_at: "2026-01-09T00:00:00Z".into() }),
        steps: vec![],
        final_event: Some(FinalEvent { seq: 17, hash: hex::encode(leaves[16]) }),
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
    let mut proof: Vec<Hash> = r.inclusion_proof.iter().map(|h| unhex(h).unwrap()).collect();
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
