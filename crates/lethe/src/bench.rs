//! `lethe bench ...`: benchmarks that print figures against a raw baseline
//! measured in the same run.

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
