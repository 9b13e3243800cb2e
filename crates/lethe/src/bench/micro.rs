//! Micro-benchmarks of the audit log and the vault (`lethe bench audit`,
//! `vault`, `vault-http`).

use anyhow::Context;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use lethe_vault::{FieldName, LocalKeyFile, Vault};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

const FIELD: usize = 1024;

fn rate(n: usize, secs: f64) -> f64 {
    n as f64 / secs
}

/// The vault library against the raw AEAD, single-threaded, 1 KiB fields.
pub async fn vault_library(ops: usize, subjects: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = lethe_store::Store::open(&dir.path().join("lethe.db"), Default::default()).await?;
    let kek = Arc::new(LocalKeyFile::open(&dir.path().join("vault.kek"), true)?);
    let vault = Vault::new(kek, Arc::new(store), &rand::random());
    let field = FieldName::parse("id_number")?;
    let plaintext: Vec<u8> = (0..FIELD).map(|i| (i % 251) as u8).collect();
    let names: Vec<String> = (0..subjects).map(|i| format!("user-{i}")).collect();
    // Warm up: each subject's key is created, wrapped, stored and cached.
    for s in &names {
        vault.encrypt(s, &field, b"warm").await?;
    }

    // Raw AEAD: the same cipher, a fresh random nonce per field, the same
    // size of associated data as the vault uses.
    let key: [u8; 32] = rand::random();
    let raw = XChaCha20Poly1305::new((&key).into());
    let aad = vec![7u8; 15 + 4 + 8 + 4 + field.as_str().len() + 4];
    let t = Instant::now();
    let mut raw_ct = Vec::with_capacity(ops);
    for _ in 0..ops {
        let nonce: [u8; 24] = rand::random();
        let ct = raw
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| anyhow::anyhow!("encrypt"))?;
        raw_ct.push((nonce, ct));
    }
    let raw_enc = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for (nonce, ct) in &raw_ct {
        black_box(
            raw.decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
                .map_err(|_| anyhow::anyhow!("decrypt"))?,
        );
    }
    let raw_dec = t.elapsed().as_secs_f64();
    drop(raw_ct);

    let t = Instant::now();
    let mut sealed = Vec::with_capacity(ops);
    for i in 0..ops {
        let s = &names[i % subjects];
        sealed.push(vault.encrypt(s, &field, &plaintext).await?);
    }
    let v_enc = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for (i, ct) in sealed.iter().enumerate() {
        black_box(vault.decrypt(&names[i % subjects], &field, ct).await?);
    }
    let v_dec = t.elapsed().as_secs_f64();

    println!("vault library, {ops} fields of {FIELD} B over {subjects} subjects, 1 thread");
    println!(
        "  raw XChaCha20-Poly1305 encrypt : {:>10.0} /s  ({:.0} MB/s)",
        rate(ops, raw_enc),
        rate(ops * FIELD, raw_enc) / 1e6
    );
    println!(
        "  vault encrypt                  : {:>10.0} /s  ({:.0} MB/s)  = {:.0}% of raw (target >= 80%)",
        rate(ops, v_enc),
        rate(ops * FIELD, v_enc) / 1e6,
        100.0 * raw_enc / v_enc
    );
    println!(
        "  raw XChaCha20-Poly1305 decrypt : {:>10.0} /s  ({:.0} MB/s)",
        rate(ops, raw_dec),
        rate(ops * FIELD, raw_dec) / 1e6
    );
    println!(
        "  vault decrypt                  : {:>10.0} /s  ({:.0} MB/s)  = {:.0}% of raw (target >= 80%)",
        rate(ops, v_dec),
        rate(ops * FIELD, v_dec) / 1e6,
        100.0 * raw_dec / v_dec
    );
    Ok(())
}

/// The HTTP batch API from this (second) process, through lethe-client.
pub async fn vault_http(
    url: &str,
    key: &str,
    seconds: u64,
    batch: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let client = lethe_client::Client::new(url, key)?;
    let plaintext: String = (0..FIELD)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let subjects: Vec<String> = (1..=200).map(|i| i.to_string()).collect();
    // One sealed batch to decrypt repeatedly.
    let items: Vec<lethe_client::EncryptItem> = (0..batch)
        .map(|i| lethe_client::EncryptItem {
            subject_id: &subjects[i % subjects.len()],
            field: "bio",
            plaintext: &plaintext,
        })
        .collect();
    let sealed: Vec<String> = client
        .encrypt(&items)
        .await?
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (name, decrypt) in [("encrypt", false), ("decrypt", true)] {
        let deadline = Instant::now() + std::time::Duration::from_secs(seconds);
        let t = Instant::now();
        let mut tasks = vec![];
        for _ in 0..concurrency {
            let (client, subjects, plaintext, sealed) = (
                client.clone(),
                subjects.clone(),
                plaintext.clone(),
                sealed.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut done = 0usize;
                while Instant::now() < deadline {
                    if decrypt {
                        let items: Vec<lethe_client::DecryptItem> = (0..batch)
                            .map(|i| lethe_client::DecryptItem {
                                subject_id: &subjects[i % subjects.len()],
                                field: "bio",
                                ciphertext: &sealed[i],
                            })
                            .collect();
                        let r = client.decrypt(&items).await?;
                        anyhow::ensure!(r.iter().all(|x| x.is_ok()), "a decryption failed");
                    } else {
                        let items: Vec<lethe_client::EncryptItem> = (0..batch)
                            .map(|i| lethe_client::EncryptItem {
                                subject_id: &subjects[i % subjects.len()],
                                field: "bio",
                                plaintext: &plaintext,
                            })
                            .collect();
                        let r = client.encrypt(&items).await?;
                        anyhow::ensure!(r.iter().all(|x| x.is_ok()), "an encryption failed");
                    }
                    done += batch;
                }
                Ok::<usize, anyhow::Error>(done)
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.context("bench task")??;
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "  HTTP batch {name} ({batch} x {FIELD} B, {concurrency} in flight): {:>10.0} fields/s ({:.0} MB/s)",
            rate(total, secs),
            rate(total * FIELD, secs) / 1e6
        );
    }
    Ok(())
}

fn audit_events(n: usize) -> Vec<lethe_ledger::AuditEvent> {
    let kinds = [
        "case.submitted",
        "case.identity_verified",
        "case.checks_clear",
        "case.consequence_acknowledged",
        "case.confirmed",
        "case.erasure_started",
        "case.erased",
    ];
    (0..n)
        .map(|i| lethe_ledger::AuditEvent {
            seq: i as u64 + 1,
            case_id: format!("019ab2c4-{:04x}-7d3e-9f21-{:012x}", i % 65536, i / 7),
            subject: format!("{:032x}", (i / 7) as u128 * 0x9e37_79b9_7f4a_7c15),
            kind: kinds[i % kinds.len()].to_owned(),
            from_state: if i % 7 == 0 {
                None
            } else {
                Some("checks_clear".into())
            },
            to_state: "consequences_acknowledged".into(),
            actor: "platform:demo".into(),
            at: "2026-11-23T08:15:42.123456789Z".into(),
            detail: serde_json::json!({ "consequence": "points_forfeited", "version": 1 }),
        })
        .collect()
}

/// Audit appends batched (canonical encoding, leaf hashes on every core,
/// Merkle frontier with the perfect subtrees kept as the store keeps them),
/// offline verification of the same log, and raw SHA-256 over the same bytes.
pub fn audit(n: usize) -> anyhow::Result<()> {
    use lethe_ledger::merkle::Frontier;
    const BATCH: usize = 10_000;
    let events = audit_events(n);
    let threads = std::thread::available_parallelism()
        .map(|p| p.get())
        .unwrap_or(1);

    // Appends, batched.
    let t = Instant::now();
    let mut frontier = Frontier::default();
    let mut nodes: Vec<(u32, u64, lethe_ledger::Hash)> = Vec::with_capacity(n);
    let mut leaves: Vec<lethe_ledger::Hash> = vec![[0u8; 32]; n];
    for (bi, batch) in events.chunks(BATCH).enumerate() {
        let out = &mut leaves[bi * BATCH..bi * BATCH + batch.len()];
        let per = batch.len().div_ceil(threads);
        std::thread::scope(|s| {
            for (evs, dst) in batch.chunks(per).zip(out.chunks_mut(per)) {
                s.spawn(move || {
                    for (e, d) in evs.iter().zip(dst.iter_mut()) {
                        *d = e.leaf_hash();
                    }
                });
            }
        });
        for l in &leaves[bi * BATCH..bi * BATCH + batch.len()] {
            frontier.push(*l, |lv, ix, h| nodes.push((lv, ix, *h)));
        }
    }
    let append_secs = t.elapsed().as_secs_f64();
    let root = frontier.root();

    // The exported log, with a signed head every 100,000 events.
    let signer = lethe_ledger::Signer::from_seed(&rand::random());
    let mut f2 = Frontier::default();
    let mut heads = vec![];
    let mut recorded = Vec::with_capacity(n);
    for (i, (e, l)) in events.iter().zip(&leaves).enumerate() {
        f2.push(*l, |_, _, _| {});
        recorded.push(lethe_ledger::RecordedEvent {
            event: e.clone(),
            hash: hex::encode(l),
            redacted: false,
        });
        if (i + 1) % 100_000 == 0 || i + 1 == n {
            heads.push(lethe_ledger::TreeHead::sign(
                &signer,
                i as u64 + 1,
                &f2.root(),
                "2026-11-23T00:00:00Z",
            ));
        }
    }
    anyhow::ensure!(f2.root() == root, "roots differ");
    let mut file = Vec::new();
    lethe_ledger::write_log_file(&mut file, &recorded, &heads);
    let file = String::from_utf8(file)?;
    let n_heads = heads.len();
    let t = Instant::now();
    lethe_ledger::verify_log_file(&file, &signer.public_key_hex())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let verify_secs = t.elapsed().as_secs_f64();

    // Raw SHA-256 over the same canonical bytes: one thread, then every core.
    let bytes: Vec<Vec<u8>> = events.iter().map(|e| e.canonical()).collect();
    let total: usize = bytes.iter().map(|b| b.len()).sum();
    let t = Instant::now();
    for b in &bytes {
        black_box(lethe_ledger::leaf_hash(b));
    }
    let raw_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    std::thread::scope(|s| {
        for part in bytes.chunks(bytes.len().div_ceil(threads)) {
            s.spawn(move || {
                for b in part {
                    black_box(lethe_ledger::leaf_hash(b));
                }
            });
        }
    });
    let raw_all_secs = t.elapsed().as_secs_f64();

    println!(
        "audit log, {n} events ({} B canonical on average), {threads} core(s)",
        total / n
    );
    println!(
        "  appends, batched by {BATCH} (encode + leaf hash in parallel + Merkle frontier): {:>12.0} /s  (target >= 1,000,000)",
        rate(n, append_secs)
    );
    println!(
        "  offline verification of the log file (parse, re-hash, rebuild tree, check {n_heads} signed heads), {threads} core(s): {:>10.0} events/s = {:.0} MB/s",
        rate(n, verify_secs),
        total as f64 / verify_secs / 1e6
    );
    println!(
        "  raw SHA-256 over the same bytes, 1 thread:   {:>10.0} hashes/s = {:.0} MB/s",
        rate(n, raw_secs),
        total as f64 / raw_secs / 1e6
    );
    println!(
        "  raw SHA-256 over the same bytes, {threads} core(s): {:>10.0} hashes/s = {:.0} MB/s",
        rate(n, raw_all_secs),
        total as f64 / raw_all_secs / 1e6
    );
    println!(
        "  verification / raw hashing on the same cores = {:.0}% (target >= 50%)",
        100.0 * raw_all_secs / verify_secs
    );
    println!("  perfect subtrees stored: {}", nodes.len());
    Ok(())
}
