//! Proof material: the audit log (an RFC 6962 Merkle tree of events), signed
//! tree heads, deletion receipts and their verification.
//!
//! Audit events carry no personal data: the subject appears only as a keyed
//! pseudonym ([`pseudonym`]), so erasing a user never breaks verification.
//! Everything here is pure: a third party verifies an exported log or a
//! receipt with this crate and the public key alone.

pub mod merkle;

use base64::Engine;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub seq: u64,
    pub case_id: String,
    /// Keyed pseudonym of the subject, never the subject id itself.
    pub subject: String,
    pub kind: String,
    pub from_state: Option<String>,
    pub to_state: String,
    /// Who acted: `platform:<key name>`, `worker`, `monitor`, `agent:<id>`.
    pub actor: String,
    /// RFC 3339, UTC.
    pub at: String,
    pub detail: serde_json::Value,
}

impl AuditEvent {
    /// The canonical bytes: JSON of the fields in declaration order, object
    /// keys of `detail` sorted, no whitespace.
    pub fn canonical(&self) -> Vec<u8> {
        // Serializing plain data cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&self.canonical())
    }
}

/// RFC 6962 leaf hash: SHA-256(0x00 || bytes).
pub fn leaf_hash(bytes: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(bytes);
    h.finalize().into()
}

/// An event as stored and exported, with its recorded leaf hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    #[serde(flatten)]
    pub event: AuditEvent,
    /// Hex leaf hash recorded when the event was appended.
    pub hash: String,
}

/// Keyed pseudonym of a subject id: HMAC-SHA-256 under the installation's
/// pseudonym key, hex, 32 characters.
pub fn pseudonym(key: &[u8], subject: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(b"lethe.subject.v1:");
    m.update(subject.as_bytes());
    let out = m.finalize().into_bytes();
    hex::encode(&out[..16])
}

// ------------------------------------------------------------------ signing

/// The installation's Ed25519 signing key. Never printed.
pub struct Signer {
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("public_key", &self.public_key_hex()).finish()
    }
}

impl Signer {
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self { key: SigningKey::from_bytes(seed) }
    }
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }
    /// Base64 Ed25519 signature.
    pub fn sign(&self, msg: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.key.sign(msg).to_bytes())
    }
}

/// Verifies a base64 Ed25519 signature under a hex public key.
pub fn verify_signature(public_key_hex: &str, msg: &[u8], signature_b64: &str) -> bool {
    let Ok(pk) = hex::decode(public_key_hex.trim()) else { return false };
    let Ok(pk): Result<[u8; 32], _> = pk.try_into() else { return false };
    let Ok(vk) = VerifyingKey::from_bytes(&pk) else { return false };
    let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(signature_b64) else { return false };
    let Ok(sig): Result<[u8; 64], _> = sig.try_into() else { return false };
    vk.verify(msg, &ed25519_dalek::Signature::from_bytes(&sig)).is_ok()
}

/// A signed tree head: the log's size and root at a moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeHead {
    pub tree_size: u64,
    /// Hex Merkle Tree Hash of the first `tree_size` events.
    pub root_hash: String,
    pub timestamp: String,
    /// Base64 Ed25519 signature over [`TreeHead::signed_bytes`].
    pub signature: String,
}

impl TreeHead {
    pub fn signed_bytes(tree_size: u64, root_hash: &str, timestamp: &str) -> Vec<u8> {
        format!("lethe-tree-head-v1\n{tree_size}\n{root_hash}\n{timestamp}\n").into_bytes()
    }
    pub fn sign(signer: &Signer, tree_size: u64, root: &Hash, timestamp: &str) -> Self {
        let root_hash = hex::encode(root);
        let signature = signer.sign(&Self::signed_bytes(tree_size, &root_hash, timestamp));
        Self { tree_size, root_hash, timestamp: timestamp.to_owned(), signature }
    }
    pub fn verify(&self, public_key_hex: &str) -> bool {
        verify_signature(public_key_hex, &Self::signed_bytes(self.tree_size, &self.root_hash, &self.timestamp), &self.signature)
    }
    pub fn root(&self) -> Option<Hash> {
        let mut h = [0u8; 32];
        hex::decode_to_slice(&self.root_hash, &mut h).ok()?;
        Some(h)
    }
}

fn unhex(s: &str) -> Option<Hash> {
    let mut h = [0u8; 32];
    hex::decode_to_slice(s, &mut h).ok()?;
    Some(h)
}

// ---------------------------------------------------------- log verification

/// An exported log: its events in order and the signed tree heads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogExport {
    pub events: Vec<RecordedEvent>,
    pub tree_heads: Vec<TreeHead>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("event at position {position}: sequence number {found} where {expected} was expected: events {expected}..{} were removed", found - 1)]
    Removed { position: usize, expected: u64, found: u64 },
    #[error("event at position {position}: sequence number {found} appears again: an event was inserted")]
    Inserted { position: usize, found: u64 },
    #[error("event at position {position}: sequence number {found} where {expected} was expected: events were reordered")]
    Reordered { position: usize, expected: u64, found: u64 },
    #[error("event {seq} was modified: its content does not match its recorded hash")]
    Modified { seq: u64 },
    #[error("the signed tree head of size {tree_size} has an invalid signature (forged, or signed by another key)")]
    BadSignature { tree_size: u64 },
    #[error("the signed tree head of size {tree_size} does not match the log: events {from_seq}..={to_seq} were rewritten (content and recorded hashes)")]
    HeadMismatch { tree_size: u64, from_seq: u64, to_seq: u64 },
    #[error("a signed tree head covers {tree_size} events but the log holds {events}: events {}..={tree_size} were removed", events + 1)]
    Truncated { tree_size: u64, events: u64 },
    #[error("the export holds no signed tree head: nothing vouches for it")]
    NoTreeHead,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogVerified {
    pub events: u64,
    pub tree_heads: usize,
    /// Events after the last signed tree head (checked for order and
    /// hashes, not yet vouched for by a signature).
    pub unsigned_tail: u64,
}

/// Verifies an exported log offline with the public key only, and names
/// the first event (or range) that was modified, removed, reordered or
/// inserted.
pub fn verify_log(export: &LogExport, public_key_hex: &str) -> Result<LogVerified, LogError> {
    let mut seen = std::collections::HashSet::new();
    for (i, e) in export.events.iter().enumerate() {
        let expected = i as u64 + 1;
        let found = e.event.seq;
        if found != expected {
            if seen.contains(&found) {
                return Err(LogError::Inserted { position: i, found });
            }
            if found > expected && !export.events[i..].iter().any(|x| x.event.seq == expected) {
                return Err(LogError::Removed { position: i, expected, found });
            }
            return Err(LogError::Reordered { position: i, expected, found });
        }
        seen.insert(found);
        if unhex(&e.hash) != Some(e.event.leaf_hash()) {
            return Err(LogError::Modified { seq: found });
        }
    }
    if export.tree_heads.is_empty() {
        return Err(LogError::NoTreeHead);
    }
    let mut heads: Vec<&TreeHead> = export.tree_heads.iter().collect();
    heads.sort_by_key(|h| h.tree_size);
    for h in &heads {
        if !h.verify(public_key_hex) {
            return Err(LogError::BadSignature { tree_size: h.tree_size });
        }
    }
    let n = export.events.len() as u64;
    let mut f = merkle::Frontier::default();
    let mut last_good = 0u64;
    let mut hi = 0usize;
    for (i, e) in export.events.iter().enumerate() {
        // Recorded hashes equal the recomputed ones (checked above).
        f.push(unhex(&e.hash).unwrap_or_default(), |_, _, _| {});
        while hi < heads.len() && heads[hi].tree_size == i as u64 + 1 {
            if heads[hi].root() != Some(f.root()) {
                return Err(LogError::HeadMismatch { tree_size: heads[hi].tree_size, from_seq: last_good + 1, to_seq: heads[hi].tree_size });
            }
            last_good = heads[hi].tree_size;
            hi += 1;
        }
    }
    if let Some(h) = heads.iter().find(|h| h.tree_size > n) {
        return Err(LogError::Truncated { tree_size: h.tree_size, events: n });
    }
    Ok(LogVerified { events: n, tree_heads: heads.len(), unsigned_tail: n - last_good })
}

// ------------------------------------------------------------------ receipts

/// The deletion receipt given to the user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub case_id: String,
    pub subject: String,
    pub issued_at: String,
    pub systems: Vec<ReceiptSystem>,
    /// The destruction of the subject's vault keys (crypto-shredding): every
    /// copy of the subject's encrypted fields is unreadable from then on.
    pub key_destruction: Option<KeyDestruction>,
    /// The case's steps and their times.
    pub steps: Vec<ReceiptStep>,
    /// Sequence number and leaf hash of the audit event that closed the case.
    pub final_event: Option<FinalEvent>,
    /// The signed tree head the final event is proven to be in.
    #[serde(default)]
    pub tree_head: Option<TreeHead>,
    /// Hex audit path of the final event in that tree (RFC 9162).
    #[serde(default)]
    pub inclusion_proof: Vec<String>,
    /// SHA-256 over the canonical JSON of the receipt without `digest` and
    /// `signature`.
    pub digest: String,
    /// Base64 Ed25519 signature over the same bytes.
    #[serde(default)]
    pub signature: String,
    /// Hex public key that made the signature.
    #[serde(default)]
    pub public_key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiptSystem {
    pub system: String,
    pub tables: Vec<ReceiptTable>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiptTable {
    pub table: String,
    pub action: String,
    pub rows: u64,
    /// Rows of the subject left after erasure, as counted by verification.
    pub remaining: Option<u64>,
    pub legal_basis: Option<String>,
    pub retain_until: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyDestruction {
    pub versions_destroyed: u32,
    pub destroyed_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiptStep {
    pub kind: String,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalEvent {
    pub seq: u64,
    /// Hex leaf hash of the event.
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("the receipt's content does not match its digest: it was altered")]
    Digest,
    #[error("the receipt's signature is invalid: it was altered or not issued by this key")]
    Signature,
    #[error("the receipt is not signed by the expected key")]
    WrongKey,
    #[error("the receipt's tree head signature is invalid")]
    TreeHead,
    #[error("the receipt's final event is not proven to be in the signed audit log")]
    Inclusion,
    #[error("the receipt lacks {0}")]
    Missing(&'static str),
}

impl Receipt {
    fn body_bytes(&self) -> Vec<u8> {
        let mut body = self.clone();
        body.digest = String::new();
        body.signature = String::new();
        let v = serde_json::to_value(&body).unwrap_or(serde_json::Value::Null);
        serde_json::to_vec(&v).unwrap_or_default()
    }

    pub fn compute_digest(&self) -> String {
        hex::encode(Sha256::digest(self.body_bytes()))
    }

    /// Fills the digest (the body without proof or signature yet).
    pub fn seal(mut self) -> Self {
        self.digest = self.compute_digest();
        self
    }

    /// Attaches the tree head and the inclusion proof of the final event,
    /// then signs.
    pub fn sign(mut self, signer: &Signer, head: TreeHead, proof: Vec<Hash>) -> Self {
        self.tree_head = Some(head);
        self.inclusion_proof = proof.iter().map(hex::encode).collect();
        self.public_key = signer.public_key_hex();
        self.digest = self.compute_digest();
        self.signature = signer.sign(&self.body_bytes());
        self
    }

    pub fn is_signed(&self) -> bool {
        !self.signature.is_empty()
    }

    /// Verifies the receipt with the issuer's public key: content, signature,
    /// tree head, and the inclusion of the final event in the signed log.
    pub fn verify(&self, public_key_hex: &str) -> Result<(), ReceiptError> {
        if self.compute_digest() != self.digest {
            return Err(ReceiptError::Digest);
        }
        if self.public_key.trim() != public_key_hex.trim() {
            return Err(ReceiptError::WrongKey);
        }
        if !verify_signature(public_key_hex, &self.body_bytes(), &self.signature) {
            return Err(ReceiptError::Signature);
        }
        let head = self.tree_head.as_ref().ok_or(ReceiptError::Missing("a signed tree head"))?;
        if !head.verify(public_key_hex) {
            return Err(ReceiptError::TreeHead);
        }
        let fe = self.final_event.as_ref().ok_or(ReceiptError::Missing("its final event"))?;
        let leaf = unhex(&fe.hash).ok_or(ReceiptError::Inclusion)?;
        let proof: Option<Vec<Hash>> = self.inclusion_proof.iter().map(|h| unhex(h)).collect();
        let root = head.root().ok_or(ReceiptError::TreeHead)?;
        let ok = fe.seq >= 1 && merkle::verify_inclusion(&leaf, fe.seq - 1, head.tree_size, &proof.ok_or(ReceiptError::Inclusion)?, &root);
        if !ok {
            return Err(ReceiptError::Inclusion);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
