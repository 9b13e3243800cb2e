//! Proof material: the hash-chained audit event and the deletion receipt.
//!
//! Audit events carry no personal data: the subject appears only as a keyed
//! pseudonym ([`pseudonym`]), so erasing a user never breaks verification.
//! Leaves are hashed as in RFC 6962 (`SHA-256(0x00 || leaf)`), and each
//! event's chain hash is `SHA-256(0x01 || prev || leaf_hash)`, so any change,
//! removal, reordering or insertion breaks the chain at that point.

pub mod merkle;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// The chain hash before the first event.
pub const GENESIS: Hash = [0u8; 32];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub seq: u64,
    pub case_id: String,
    /// Keyed pseudonym of the subject, never the subject id itself.
    pub subject: String,
    pub kind: String,
    pub from_state: Option<String>,
    pub to_state: String,
    /// Who acted: `platform:<key name>`, `worker`, `agent:<id>`.
    pub actor: String,
    /// RFC 3339, UTC.
    pub at: String,
    pub detail: serde_json::Value,
}

impl AuditEvent {
    /// The canonical bytes of the event: JSON with keys in sorted order
    /// (serde_json's map is ordered) and no whitespace.
    pub fn canonical(&self) -> Vec<u8> {
        // Serializing plain data to a Value cannot fail.
        let v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        serde_json::to_vec(&v).unwrap_or_default()
    }

    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&self.canonical())
    }
}

pub fn leaf_hash(bytes: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(bytes);
    h.finalize().into()
}

pub fn chain(prev: &Hash, leaf: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(prev);
    h.update(leaf);
    h.finalize().into()
}

/// A stored event with its chain hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainedEvent {
    #[serde(flatten)]
    pub event: AuditEvent,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error(
        "event at position {position}: expected sequence number {expected}, found {found} (an event was removed, inserted or reordered)"
    )]
    Sequence {
        position: usize,
        expected: u64,
        found: u64,
    },
    #[error(
        "event {seq}: its hash does not match its content or its predecessor (modified, or an earlier event was changed)"
    )]
    Hash { seq: u64 },
}

/// Verifies a contiguous run of events starting after `prev` (the chain hash
/// of the event before `events[0]`, or [`GENESIS`]).
pub fn verify_chain(
    prev: Hash,
    first_seq: u64,
    events: &[ChainedEvent],
) -> Result<Hash, ChainError> {
    let mut head = prev;
    for (i, e) in events.iter().enumerate() {
        let expected = first_seq + i as u64;
        if e.event.seq != expected {
            return Err(ChainError::Sequence {
                position: i,
                expected,
                found: e.event.seq,
            });
        }
        let h = chain(&head, &e.event.leaf_hash());
        if hex::encode(h) != e.hash {
            return Err(ChainError::Hash { seq: e.event.seq });
        }
        head = h;
    }
    Ok(head)
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
    /// Sequence number and chain hash of the audit event that closed the case.
    pub final_event: Option<FinalEvent>,
    /// SHA-256 over the canonical JSON of the receipt without this field.
    pub digest: String,
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
    pub hash: String,
}

impl Receipt {
    pub fn compute_digest(&self) -> String {
        let mut body = self.clone();
        body.digest = String::new();
        let v = serde_json::to_value(&body).unwrap_or(serde_json::Value::Null);
        hex::encode(Sha256::digest(serde_json::to_vec(&v).unwrap_or_default()))
    }
    pub fn seal(mut self) -> Self {
        self.digest = self.compute_digest();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64) -> AuditEvent {
        AuditEvent {
            seq,
            case_id: "c".into(),
            subject: "p".into(),
            kind: "case.submitted".into(),
            from_state: None,
            to_state: "submitted".into(),
            actor: "worker".into(),
            at: "2026-01-01T00:00:00Z".into(),
            detail: serde_json::json!({"b": 1, "a": 2}),
        }
    }

    fn chained(n: u64) -> Vec<ChainedEvent> {
        let mut head = GENESIS;
        (1..=n)
            .map(|s| {
                let e = ev(s);
                head = chain(&head, &e.leaf_hash());
                ChainedEvent {
                    event: e,
                    hash: hex::encode(head),
                }
            })
            .collect()
    }

    #[test]
    fn chain_verifies_and_pinpoints_tampering() {
        let evs = chained(5);
        assert!(verify_chain(GENESIS, 1, &evs).is_ok());
        let mut m = evs.clone();
        m[2].event.kind = "case.erased".into();
        assert_eq!(
            verify_chain(GENESIS, 1, &m),
            Err(ChainError::Hash { seq: 3 })
        );
        let mut r = evs.clone();
        r.remove(1);
        assert!(matches!(
            verify_chain(GENESIS, 1, &r),
            Err(ChainError::Sequence { position: 1, .. })
        ));
        let mut o = evs.clone();
        o.swap(1, 2);
        assert!(verify_chain(GENESIS, 1, &o).is_err());
    }

    #[test]
    fn pseudonyms_are_keyed_and_stable() {
        assert_eq!(pseudonym(b"k", "42"), pseudonym(b"k", "42"));
        assert_ne!(pseudonym(b"k", "42"), pseudonym(b"other", "42"));
        assert_eq!(pseudonym(b"k", "42").len(), 32);
    }
}
