//! What a third-party monitor checks each time it fetches a log's
//! published head (as certificate-transparency monitors do): the head is
//! signed by the key it pinned, and it extends the last head it saw — same
//! size, same root; larger, a consistency proof from the old root to the
//! new one. A smaller head is a rollback; anything else is a fork. Pure:
//! the caller fetches and keeps the state.

use serde::{Deserialize, Serialize};

use crate::merkle::verify_consistency;
use crate::{Hash, TreeHead};

/// What the monitor last saw and checked, kept between runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// The log's key, pinned at the first run.
    pub public_key: String,
    pub head: TreeHead,
}

/// How a new head relates to the last one seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The first head this monitor saw (its key is now pinned).
    First,
    /// The same tree.
    Same,
    /// The tree grew from `from` to `to` events and the proof holds.
    Grew { from: u64, to: u64 },
}

/// Why a new head is refused: each means the log is not what it claimed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Misbehaviour {
    #[error("the log's public key changed from {pinned} to {now}")]
    KeyChanged { pinned: String, now: String },
    #[error("the head of size {size} does not verify under the log's key")]
    BadSignature { size: u64 },
    #[error("the head's root hash is not 32 bytes of hex")]
    BadRoot,
    #[error("the log publishes no tree head any more; it showed {seen} events before")]
    Vanished { seen: u64 },
    #[error("rollback: the log shows {now} events, it showed {seen} before")]
    Rollback { seen: u64, now: u64 },
    #[error("fork: two different roots for {size} events")]
    Fork { size: u64 },
    #[error(
        "fork: the head of {to} events does not extend the head of {from} events (the consistency proof fails)"
    )]
    Inconsistent { from: u64, to: u64 },
}

/// Checks `head`, published under `public_key`, against what was `seen`;
/// `proof` is the log's consistency proof from the seen size to the new
/// one (ignored unless the tree grew). On success, the new state.
pub fn check(
    seen: Option<&Seen>,
    public_key: &str,
    head: &TreeHead,
    proof: &[Hash],
) -> Result<(Step, Seen), Misbehaviour> {
    if let Some(s) = seen
        && s.public_key != public_key
    {
        return Err(Misbehaviour::KeyChanged {
            pinned: s.public_key.clone(),
            now: public_key.to_owned(),
        });
    }
    if !head.verify(public_key) {
        return Err(Misbehaviour::BadSignature {
            size: head.tree_size,
        });
    }
    let new_root = head.root().ok_or(Misbehaviour::BadRoot)?;
    let next = Seen {
        public_key: public_key.to_owned(),
        head: head.clone(),
    };
    let Some(s) = seen else {
        return Ok((Step::First, next));
    };
    let (old, new) = (s.head.tree_size, head.tree_size);
    let old_root = s.head.root().ok_or(Misbehaviour::BadRoot)?;
    if new < old {
        return Err(Misbehaviour::Rollback {
            seen: old,
            now: new,
        });
    }
    if new == old {
        return if new_root == old_root {
            // Keep the head first seen: a re-signed head of the same tree
            // proves nothing new.
            Ok((Step::Same, s.clone()))
        } else {
            Err(Misbehaviour::Fork { size: new })
        };
    }
    if !verify_consistency(old, new, &old_root, &new_root, proof) {
        return Err(Misbehaviour::Inconsistent { from: old, to: new });
    }
    Ok((Step::Grew { from: old, to: new }, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Signer;
    use crate::merkle::mth;

    fn leaves(n: u8, salt: u8) -> Vec<Hash> {
        (0..n).map(|i| [i ^ salt; 32]).collect()
    }

    use crate::merkle::consistency_by_definition as consistency;

    #[test]
    fn appends_pass_rollbacks_forks_and_other_keys_fail() {
        let signer = Signer::from_seed(&[7; 32]);
        let key = signer.public_key_hex();
        let log = leaves(13, 0);
        let head = |l: &[Hash], ts: &str| TreeHead::sign(&signer, l.len() as u64, &mth(l), ts);
        let h5 = head(&log[..5], "t1");
        let (step, seen) = check(None, &key, &h5, &[]).unwrap();
        assert_eq!(step, Step::First);
        // Appends: 5 -> 13 with the proof; the same tree again.
        let h13 = head(&log, "t2");
        let (step, seen13) = check(Some(&seen), &key, &h13, &consistency(&log, 5)).unwrap();
        assert_eq!(step, Step::Grew { from: 5, to: 13 });
        let (step, _) = check(Some(&seen13), &key, &head(&log, "t3"), &[]).unwrap();
        assert_eq!(step, Step::Same);
        // A rollback.
        assert_eq!(
            check(Some(&seen13), &key, &h5, &[]).unwrap_err(),
            Misbehaviour::Rollback { seen: 13, now: 5 }
        );
        // A rewritten log: same size, other root; larger, no proof holds.
        let other = leaves(13, 0x55);
        assert_eq!(
            check(Some(&seen13), &key, &head(&other, "t4"), &[]).unwrap_err(),
            Misbehaviour::Fork { size: 13 }
        );
        let mut longer = other.clone();
        longer.extend(leaves(3, 0x99));
        let h16 = head(&longer, "t5");
        assert_eq!(
            check(Some(&seen13), &key, &h16, &consistency(&longer, 13)).unwrap_err(),
            Misbehaviour::Inconsistent { from: 13, to: 16 }
        );
        // A head signed by another key, or presented under it.
        let mallory = Signer::from_seed(&[8; 32]);
        let forged = TreeHead::sign(&mallory, 13, &mth(&log), "t6");
        assert_eq!(
            check(Some(&seen13), &key, &forged, &[]).unwrap_err(),
            Misbehaviour::BadSignature { size: 13 }
        );
        assert!(matches!(
            check(Some(&seen13), &mallory.public_key_hex(), &forged, &[]),
            Err(Misbehaviour::KeyChanged { .. })
        ));
    }
}
