//! The crypto-shredding vault.
//!
//! Each subject gets its own 256-bit data key (XChaCha20-Poly1305), stored
//! only wrapped by a key-encryption key (KEK). A sensitive field is sealed
//! under the subject's data key with associated data = subject and field
//! name, so a ciphertext opens only for the subject and field it was made
//! for. Destroying the subject's data keys makes every copy of every
//! ciphertext unreadable — in backups, logs, replicas and warehouses alike —
//! and decrypting afterwards yields the distinct [`VaultError::Erased`].
//!
//! Key material is zeroized on drop and never formatted: every key type's
//! `Debug` is redacted and no error carries key bytes.

mod kek;
mod key;
mod memory;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use zeroize::Zeroizing;

pub use kek::{Kek, LocalKeyFile};
pub use key::{DataKey, VaultError, WrappedKey};
pub use memory::MemoryKeyStore;

/// Largest field accepted for encryption.
pub const MAX_FIELD_BYTES: usize = 64 * 1024;
/// Largest batch accepted by the batch calls.
pub const MAX_BATCH: usize = 1000;
/// Unwrapped data keys kept in memory at most.
pub const MAX_CACHED_KEYS: usize = 100_000;

const ENVELOPE_V1: u8 = 1;
const HEADER: usize = 1 + 4 + 24;

/// A subject's wrapped data key as the key store holds it. `subject` is the
/// vault's keyed reference of the subject, never the subject id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub subject: String,
    pub version: u32,
    pub wrapped: WrappedKey,
}

/// Where wrapped data keys live (Lethe's store, or memory in tests).
#[async_trait::async_trait]
pub trait KeyStore: Send + Sync {
    async fn latest(&self, subject: &str) -> Result<Option<StoredKey>, VaultError>;
    async fn get(&self, subject: &str, version: u32) -> Result<Option<StoredKey>, VaultError>;
    /// Inserts unless the (subject, version) exists; says whether it did.
    async fn insert(&self, key: StoredKey) -> Result<bool, VaultError>;
    /// Deletes every key of the subject and records when; returns how many
    /// versions were destroyed (0 if already destroyed).
    async fn destroy(&self, subject: &str, at: &str) -> Result<u32, VaultError>;
    /// [`KeyStore::destroy`] for many subjects at once (a purge); returns
    /// the versions destroyed in all.
    async fn destroy_many(&self, subjects: &[String], at: &str) -> Result<u32, VaultError> {
        let mut n = 0u32;
        for s in subjects {
            n = n.saturating_add(self.destroy(s, at).await?);
        }
        Ok(n)
    }
    async fn destroyed_at(&self, subject: &str) -> Result<Option<String>, VaultError>;
    async fn count(&self) -> Result<u64, VaultError>;
    /// Keys wrapped by a KEK version below `version`, at most `limit`.
    async fn wrapped_below(&self, version: u32, limit: u32) -> Result<Vec<StoredKey>, VaultError>;
    /// Replaces a wrapped key if it is still wrapped by `old_kek_version`.
    async fn rewrap(&self, key: &StoredKey, old_kek_version: u32) -> Result<bool, VaultError>;
}

/// A field name: 1-64 of `a-z 0-9 _ .`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldName(String);

impl FieldName {
    pub fn parse(s: &str) -> Result<Self, VaultError> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(VaultError::BadField)
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The outcome of destroying a subject's keys, for the receipt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Destruction {
    pub versions_destroyed: u32,
    pub destroyed_at: String,
}

type Cipher = Arc<XChaCha20Poly1305>;

/// Unwrapped keys by subject id, so a hit costs one hash look-up (no HMAC
/// to compute the subject reference, no store read, no unwrap).
#[derive(Default)]
struct Cache {
    subjects: HashMap<String, Entry>,
    keys: usize,
}

struct Entry {
    latest: Option<u32>,
    ciphers: HashMap<u32, Cipher>,
}

pub struct Vault {
    kek: Arc<dyn Kek>,
    store: Arc<dyn KeyStore>,
    subject_key: Zeroizing<[u8; 32]>,
    blind_key: Zeroizing<[u8; 32]>,
    cache: RwLock<Cache>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(<redacted>)")
    }
}

fn hmac32(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length: this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        m.update(&(p.len() as u32).to_be_bytes());
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

fn aad(subject: &str, field: &FieldName, version: u32) -> Vec<u8> {
    let mut a = Vec::with_capacity(32 + subject.len() + field.0.len());
    a.extend_from_slice(b"lethe.vault.v1\0");
    a.extend_from_slice(&(subject.len() as u32).to_be_bytes());
    a.extend_from_slice(subject.as_bytes());
    a.extend_from_slice(&(field.0.len() as u32).to_be_bytes());
    a.extend_from_slice(field.0.as_bytes());
    a.extend_from_slice(&version.to_be_bytes());
    a
}

fn wrap_context(subject_ref: &str, version: u32) -> Vec<u8> {
    let mut c = subject_ref.as_bytes().to_vec();
    c.extend_from_slice(&version.to_be_bytes());
    c
}

impl Vault {
    /// `master` derives the subject-reference and blind-index keys; they do
    /// not change when the KEK rotates, so references and indexes stay valid.
    pub fn new(kek: Arc<dyn Kek>, store: Arc<dyn KeyStore>, master: &[u8; 32]) -> Self {
        Self {
            kek,
            store,
            subject_key: Zeroizing::new(hmac32(master, &[b"lethe.vault.subject"])),
            blind_key: Zeroizing::new(hmac32(master, &[b"lethe.vault.blind-index"])),
            cache: RwLock::new(Cache::default()),
        }
    }

    /// The vault's keyed reference of a subject (what the key store sees).
    pub fn subject_ref(&self, subject: &str) -> String {
        hex::encode(&hmac32(&*self.subject_key, &[subject.as_bytes()])[..16])
    }

    /// Keyed HMAC of a normalized value, for equality look-ups (phone, ID
    /// number) without storing the plaintext. `kind` separates namespaces.
    pub fn blind_index(&self, kind: &FieldName, value: &str) -> String {
        self.blind_index_in("", kind, value)
    }

    /// A blind index in a namespace (a platform's): equal values in two
    /// namespaces give unrelated indexes, so one platform's indexes cannot
    /// be matched against another's. The empty namespace is
    /// [`Vault::blind_index`].
    pub fn blind_index_in(&self, namespace: &str, kind: &FieldName, value: &str) -> String {
        let norm: String = value
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if namespace.is_empty() {
            return hex::encode(hmac32(
                &*self.blind_key,
                &[kind.0.as_bytes(), norm.as_bytes()],
            ));
        }
        // A key of the namespace's own, derived under a label no field
        // name can take (it has a NUL), so no two namespaces share a key.
        let ns_key = Zeroizing::new(hmac32(
            &*self.blind_key,
            &[b"lethe.vault.blind-index.namespace\0", namespace.as_bytes()],
        ));
        hex::encode(hmac32(&*ns_key, &[kind.0.as_bytes(), norm.as_bytes()]))
    }

    fn cached(&self, subject: &str, version: Option<u32>) -> Option<(u32, Cipher)> {
        let c = self.cache.read().unwrap_or_else(|p| p.into_inner());
        let e = c.subjects.get(subject)?;
        let v = match version {
            Some(v) => v,
            None => e.latest?,
        };
        e.ciphers.get(&v).map(|k| (v, k.clone()))
    }

    fn remember(&self, subject: &str, version: u32, key: &DataKey, latest: bool) -> Cipher {
        let cipher = Arc::new(XChaCha20Poly1305::new(key.bytes().into()));
        let mut c = self.cache.write().unwrap_or_else(|p| p.into_inner());
        if c.keys >= MAX_CACHED_KEYS {
            // Dropping the entries zeroizes the ciphers' keys.
            c.subjects.clear();
            c.keys = 0;
        }
        let e = c
            .subjects
            .entry(subject.to_owned())
            .or_insert_with(|| Entry {
                latest: None,
                ciphers: HashMap::new(),
            });
        let added = e.ciphers.insert(version, cipher.clone()).is_none();
        if latest {
            e.latest = Some(e.latest.map_or(version, |l| l.max(version)));
        }
        if added {
            c.keys += 1;
        }
        cipher
    }

    fn forget(&self, subject: &str) {
        let mut c = self.cache.write().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = c.subjects.remove(subject) {
            c.keys = c.keys.saturating_sub(e.ciphers.len());
        }
    }

    async fn unwrap_stored(&self, k: &StoredKey) -> Result<DataKey, VaultError> {
        self.kek
            .unwrap(&k.wrapped, &wrap_context(&k.subject, k.version))
    }

    /// The subject's current key, created on first use.
    async fn current_key(&self, subject: &str) -> Result<(u32, Cipher), VaultError> {
        if let Some(k) = self.cached(subject, None) {
            return Ok(k);
        }
        let sref = self.subject_ref(subject);
        let subject_ref = sref.as_str();
        if let Some(stored) = self.store.latest(subject_ref).await? {
            let key = self.unwrap_stored(&stored).await?;
            return Ok((
                stored.version,
                self.remember(subject, stored.version, &key, true),
            ));
        }
        if let Some(at) = self.store.destroyed_at(subject_ref).await? {
            return Err(VaultError::Erased { at });
        }
        let key = DataKey::generate();
        let version = 1;
        let wrapped = self.kek.wrap(&key, &wrap_context(subject_ref, version))?;
        let stored = StoredKey {
            subject: subject_ref.to_owned(),
            version,
            wrapped,
        };
        if self.store.insert(stored).await? {
            Ok((version, self.remember(subject, version, &key, true)))
        } else {
            // Another writer created it first: use theirs.
            let stored = self
                .store
                .latest(subject_ref)
                .await?
                .ok_or(VaultError::Store(
                    "key vanished after a concurrent insert".into(),
                ))?;
            let key = self.unwrap_stored(&stored).await?;
            Ok((
                stored.version,
                self.remember(subject, stored.version, &key, true),
            ))
        }
    }

    async fn key_version(&self, subject: &str, version: u32) -> Result<Cipher, VaultError> {
        if let Some((_, k)) = self.cached(subject, Some(version)) {
            return Ok(k);
        }
        let sref = self.subject_ref(subject);
        let subject_ref = sref.as_str();
        match self.store.get(subject_ref, version).await? {
            Some(stored) => {
                let key = self.unwrap_stored(&stored).await?;
                Ok(self.remember(subject, version, &key, false))
            }
            None => match self.store.destroyed_at(subject_ref).await? {
                Some(at) => Err(VaultError::Erased { at }),
                None => Err(VaultError::UnknownKey),
            },
        }
    }

    /// Seals `plaintext` for `subject` and `field`. The envelope is
    /// `[1][key version: u32][nonce: 24][ciphertext + tag]`.
    pub async fn encrypt(
        &self,
        subject: &str,
        field: &FieldName,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, VaultError> {
        if plaintext.len() > MAX_FIELD_BYTES {
            return Err(VaultError::TooLarge {
                max: MAX_FIELD_BYTES,
            });
        }
        let (version, cipher) = self.current_key(subject).await?;
        seal(&cipher, version, &aad(subject, field, version), plaintext)
    }

    pub async fn decrypt(
        &self,
        subject: &str,
        field: &FieldName,
        envelope: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        if envelope.len() < HEADER + 16 {
            return Err(VaultError::Malformed("too short"));
        }
        if envelope[0] != ENVELOPE_V1 {
            return Err(VaultError::Malformed("unknown envelope version"));
        }
        let version = u32::from_be_bytes([envelope[1], envelope[2], envelope[3], envelope[4]]);
        let cipher = self.key_version(subject, version).await?;
        open(&cipher, &aad(subject, field, version), envelope)
    }

    pub async fn encrypt_batch(
        &self,
        items: &[(String, FieldName, Vec<u8>)],
    ) -> Result<Vec<Result<Vec<u8>, VaultError>>, VaultError> {
        if items.len() > MAX_BATCH {
            return Err(VaultError::BatchTooLarge { max: MAX_BATCH });
        }
        let mut out = Vec::with_capacity(items.len());
        for (s, f, p) in items {
            out.push(self.encrypt(s, f, p).await);
        }
        Ok(out)
    }

    pub async fn decrypt_batch(
        &self,
        items: &[(String, FieldName, Vec<u8>)],
    ) -> Result<Vec<Result<Zeroizing<Vec<u8>>, VaultError>>, VaultError> {
        if items.len() > MAX_BATCH {
            return Err(VaultError::BatchTooLarge { max: MAX_BATCH });
        }
        let mut out = Vec::with_capacity(items.len());
        for (s, f, c) in items {
            out.push(self.decrypt(s, f, c).await);
        }
        Ok(out)
    }

    /// Destroys every data key of the subject: all its ciphertexts become
    /// unreadable. Idempotent: a second call reports 0 versions and the
    /// original time.
    pub async fn destroy(&self, subject: &str, at: &str) -> Result<Destruction, VaultError> {
        let sref = self.subject_ref(subject);
        self.forget(subject);
        let n = self.store.destroy(&sref, at).await?;
        // A reader may have cached the key between the two steps.
        self.forget(subject);
        let destroyed_at = self
            .store
            .destroyed_at(&sref)
            .await?
            .unwrap_or_else(|| at.to_owned());
        Ok(Destruction {
            versions_destroyed: n,
            destroyed_at,
        })
    }

    /// Destroys the data keys of many subjects at once (a purge): the
    /// versions destroyed in all.
    pub async fn destroy_many(&self, subjects: &[String], at: &str) -> Result<u32, VaultError> {
        let refs: Vec<String> = subjects.iter().map(|s| self.subject_ref(s)).collect();
        subjects.iter().for_each(|s| self.forget(s));
        let n = self.store.destroy_many(&refs, at).await?;
        subjects.iter().for_each(|s| self.forget(s));
        Ok(n)
    }

    /// Makes a new KEK version current; new keys are wrapped by it. Reads
    /// and writes go on: older versions still unwrap until re-wrapped.
    pub fn rotate_kek(&self) -> Result<u32, VaultError> {
        self.kek.rotate()
    }

    /// Re-wraps up to `limit` data keys still under an older KEK version;
    /// returns how many. Call until it returns 0.
    pub async fn rewrap_batch(&self, limit: u32) -> Result<usize, VaultError> {
        let current = self.kek.current_version();
        let old = self.store.wrapped_below(current, limit).await?;
        let mut n = 0;
        for k in old {
            let key = self.unwrap_stored(&k).await?;
            let wrapped = self.kek.wrap(&key, &wrap_context(&k.subject, k.version))?;
            let new = StoredKey {
                subject: k.subject.clone(),
                version: k.version,
                wrapped,
            };
            if self.store.rewrap(&new, k.wrapped.kek_version).await? {
                n += 1;
            }
        }
        Ok(n)
    }

    pub fn kek_version(&self) -> u32 {
        self.kek.current_version()
    }
}

fn seal(
    cipher: &XChaCha20Poly1305,
    version: u32,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, VaultError> {
    let nonce: [u8; 24] = rand::random();
    let ct = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| VaultError::Kek("encryption failed"))?;
    let mut out = Vec::with_capacity(HEADER + ct.len());
    out.push(ENVELOPE_V1);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

fn open(
    cipher: &XChaCha20Poly1305,
    aad: &[u8],
    envelope: &[u8],
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let nonce = XNonce::from_slice(&envelope[5..HEADER]);
    cipher
        .decrypt(
            nonce,
            Payload {
                msg: &envelope[HEADER..],
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| VaultError::Tampered)
}

/// Text form of an envelope: `lv1:` + base64url without padding.
pub fn to_text(envelope: &[u8]) -> String {
    use base64::Engine;
    format!(
        "lv1:{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(envelope)
    )
}

pub fn from_text(s: &str) -> Result<Vec<u8>, VaultError> {
    use base64::Engine;
    let b = s
        .strip_prefix("lv1:")
        .ok_or(VaultError::Malformed("expected the prefix lv1:"))?;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b)
        .map_err(|_| VaultError::Malformed("not base64url"))
}

#[cfg(test)]
mod tests;
