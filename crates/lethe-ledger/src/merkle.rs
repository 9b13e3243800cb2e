//! An append-only Merkle tree with RFC 6962 / RFC 9162 hashing: leaves are
//! `SHA-256(0x00 || leaf)`, interior nodes `SHA-256(0x01 || left || right)`,
//! the tree over n leaves splits at the largest power of two below n.
//!
//! [`Frontier`] appends in amortized O(1) and reports each completed
//! perfect subtree so it can be stored; proofs are planned as ranges of
//! leaves ([`inclusion_ranges`], [`consistency_ranges`]) that a caller hashes
//! from stored nodes, and verified with the RFC 9162 algorithms.

use sha2::{Digest, Sha256};

use crate::Hash;

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 65];
    buf[0] = 1;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    Sha256::digest(buf).into()
}

/// The root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Largest power of two strictly below `n` (n >= 2).
fn split(n: u64) -> u64 {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The right edge of the tree: one perfect subtree per set bit of `size`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    /// (level, hash), levels strictly decreasing from the bottom of the stack.
    stack: Vec<(u32, Hash)>,
    size: u64,
}

impl Frontier {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Rebuilds the frontier of a tree of `size` leaves from its perfect
    /// subtree hashes, given by `perfect(level, index)`.
    pub fn restore(size: u64, mut perfect: impl FnMut(u32, u64) -> Option<Hash>) -> Option<Self> {
        let mut stack = vec![];
        let mut start = 0u64;
        for level in (0..64u32).rev() {
            if size & (1u64 << level) != 0 {
                stack.push((level, perfect(level, start >> level)?));
                start += 1u64 << level;
            }
        }
        Some(Self { stack, size })
    }

    /// Appends a leaf hash. `stored(level, index, hash)` is called for every
    /// perfect subtree completed at level >= 1.
    pub fn push(&mut self, leaf: Hash, mut stored: impl FnMut(u32, u64, &Hash)) {
        let index = self.size;
        self.size += 1;
        let mut level = 0u32;
        let mut hash = leaf;
        while let Some(&(l, left)) = self.stack.last() {
            if l != level {
                break;
            }
            self.stack.pop();
            hash = node_hash(&left, &hash);
            level += 1;
            stored(level, index >> level, &hash);
        }
        self.stack.push((level, hash));
    }

    /// Appends a whole perfect subtree of 2^level leaves. The tree's size
    /// must be a multiple of 2^level (the subtree is aligned).
    pub fn push_subtree(&mut self, level: u32, hash: Hash) {
        debug_assert!(self.size.is_multiple_of(1u64 << level));
        self.size += 1u64 << level;
        let (mut level, mut hash) = (level, hash);
        while let Some(&(l, left)) = self.stack.last() {
            if l != level {
                break;
            }
            self.stack.pop();
            hash = node_hash(&left, &hash);
            level += 1;
        }
        self.stack.push((level, hash));
    }

    /// The right edge as (level, hash), largest subtree first.
    pub fn stack(&self) -> &[(u32, Hash)] {
        &self.stack
    }

    /// The Merkle Tree Hash of all leaves so far.
    pub fn root(&self) -> Hash {
        root_of_stack(&self.stack)
    }
}

/// The root of a tree given its right edge (levels strictly decreasing).
pub fn root_of_stack(stack: &[(u32, Hash)]) -> Hash {
    let mut it = stack.iter().rev();
    let Some(&(_, mut r)) = it.next() else {
        return empty_root();
    };
    for (_, left) in it {
        r = node_hash(left, &r);
    }
    r
}

/// MTH over a slice of leaf hashes (reference implementation, O(n)).
pub fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// A range of leaves `[start, start + len)` whose MTH is a proof element.
pub type Range = (u64, u64);

/// The ranges of the audit path of leaf `m` in a tree of `n` leaves, in
/// proof order (RFC 6962 PATH).
pub fn inclusion_ranges(m: u64, n: u64) -> Vec<Range> {
    fn path(m: u64, start: u64, n: u64, out: &mut Vec<Range>) {
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            path(m, start, k, out);
            out.push((start + k, n - k));
        } else {
            path(m - k, start + k, n - k, out);
            out.push((start, k));
        }
    }
    let mut out = vec![];
    if m < n {
        path(m, 0, n, &mut out);
    }
    out
}

/// The ranges of the consistency proof between sizes `m` and `n` (RFC 6962
/// PROOF), for 0 < m < n.
pub fn consistency_ranges(m: u64, n: u64) -> Vec<Range> {
    fn sub(m: u64, start: u64, n: u64, b: bool, out: &mut Vec<Range>) {
        if m == n {
            if !b {
                out.push((start, n));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            sub(m, start, k, b, out);
            out.push((start + k, n - k));
        } else {
            sub(m - k, start + k, n - k, false, out);
            out.push((start, k));
        }
    }
    let mut out = vec![];
    if 0 < m && m < n {
        sub(m, 0, n, true, &mut out);
    }
    out
}

/// The perfect, aligned subtrees `(level, index)` whose hashes make up the
/// MTH of a range (the range splits as RFC 6962 does).
pub fn perfect_pieces(start: u64, len: u64, out: &mut Vec<(u32, u64)>) {
    if len == 0 {
        return;
    }
    if len.is_power_of_two() && start.is_multiple_of(len) {
        let level = len.trailing_zeros();
        out.push((level, start >> level));
        return;
    }
    let k = split(len);
    perfect_pieces(start, k, out);
    perfect_pieces(start + k, len - k, out);
}

/// The MTH of a range from its perfect pieces.
pub fn range_hash(
    start: u64,
    len: u64,
    perfect: &impl Fn(u32, u64) -> Option<Hash>,
) -> Option<Hash> {
    if len.is_power_of_two() && start.is_multiple_of(len) {
        let level = len.trailing_zeros();
        return perfect(level, start >> level);
    }
    if len < 2 {
        return None;
    }
    let k = split(len);
    Some(node_hash(
        &range_hash(start, k, perfect)?,
        &range_hash(start + k, len - k, perfect)?,
    ))
}

/// RFC 9162 2.1.3.2: verifies that `leaf` is leaf `index` of the tree of
/// `size` leaves with root `root`.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnn, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fnn & 1 == 1 || fnn == sn {
            r = node_hash(p, &r);
            if fnn & 1 == 0 {
                while fnn & 1 == 0 && fnn != 0 {
                    fnn >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnn >>= 1;
        sn >>= 1;
    }
    sn == 0 && &r == root
}

/// RFC 9162 2.1.4.2: verifies that the tree of `second` leaves with root
/// `second_root` extends the tree of `first` leaves with root `first_root`.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> bool {
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    if first == 0 {
        return proof.is_empty();
    }
    if first > second || proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let (mut fnn, mut sn) = (first - 1, second - 1);
    while fnn & 1 == 1 {
        fnn >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if sn == 0 {
            return false;
        }
        if fnn & 1 == 1 || fnn == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnn & 1 == 0 {
                while fnn & 1 == 0 && fnn != 0 {
                    fnn >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnn >>= 1;
        sn >>= 1;
    }
    &fr == first_root && &sr == second_root && sn == 0
}

/// RFC 9162 2.1.4.1 SUBPROOF, straight from the definition: an
/// independent consistency proof for tests (the monitor's, the witness's).
#[cfg(test)]
pub(crate) fn consistency_by_definition(leaves: &[Hash], m: usize) -> Vec<Hash> {
    fn sub(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if b { vec![] } else { vec![mth(d)] };
        }
        let k = n.next_power_of_two() / 2;
        if m <= k {
            let mut p = sub(m, &d[..k], b);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = sub(m - k, &d[k..], false);
            p.push(mth(&d[..k]));
            p
        }
    }
    sub(m, leaves, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n)
            .map(|i| crate::leaf_hash(format!("event {i}").as_bytes()))
            .collect()
    }

    /// A store of perfect subtrees built by the frontier, as the database holds them.
    fn build(ls: &[Hash]) -> (Frontier, HashMap<(u32, u64), Hash>) {
        let mut f = Frontier::default();
        let mut nodes = HashMap::new();
        for (i, l) in ls.iter().enumerate() {
            nodes.insert((0, i as u64), *l);
            f.push(*l, |lv, ix, h| {
                nodes.insert((lv, ix), *h);
            });
        }
        (f, nodes)
    }

    fn hashes(ranges: &[Range], nodes: &HashMap<(u32, u64), Hash>) -> Vec<Hash> {
        ranges
            .iter()
            .map(|(s, l)| range_hash(*s, *l, &|lv, ix| nodes.get(&(lv, ix)).copied()).unwrap())
            .collect()
    }

    #[test]
    fn frontier_root_matches_the_reference_mth() {
        assert_eq!(Frontier::default().root(), empty_root());
        for n in 1..=70u64 {
            let ls = leaves(n);
            let (f, nodes) = build(&ls);
            assert_eq!(f.root(), mth(&ls), "n = {n}");
            let restored = Frontier::restore(n, |lv, ix| nodes.get(&(lv, ix)).copied()).unwrap();
            assert_eq!(restored, f);
        }
    }

    #[test]
    fn rfc_6962_test_vector_root() {
        // The 8-leaf tree of the certificate-transparency reference tests.
        let inputs: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        let ls: Vec<Hash> = inputs.iter().map(|b| crate::leaf_hash(b)).collect();
        assert_eq!(
            hex::encode(mth(&ls)),
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
        );
        assert_eq!(
            hex::encode(mth(&ls[..1])),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    #[test]
    fn every_inclusion_and_consistency_proof_verifies_and_tampering_fails() {
        for n in 1..=40u64 {
            let ls = leaves(n);
            let (f, nodes) = build(&ls);
            let root = f.root();
            for m in 0..n {
                let proof = hashes(&inclusion_ranges(m, n), &nodes);
                assert!(
                    verify_inclusion(&ls[m as usize], m, n, &proof, &root),
                    "incl {m}/{n}"
                );
                assert!(
                    !verify_inclusion(&ls[((m + 1) % n) as usize], m, n, &proof, &root) || n == 1
                );
                if let Some(p0) = proof.first() {
                    let mut bad = proof.clone();
                    bad[0][0] ^= 1;
                    assert!(!verify_inclusion(&ls[m as usize], m, n, &bad, &root));
                    let _ = p0;
                }
            }
            for m in 1..n {
                let old = mth(&ls[..m as usize]);
                let proof = hashes(&consistency_ranges(m, n), &nodes);
                assert!(
                    verify_consistency(m, n, &old, &root, &proof),
                    "cons {m}/{n}"
                );
                let mut wrong_old = old;
                wrong_old[5] ^= 1;
                assert!(!verify_consistency(m, n, &wrong_old, &root, &proof));
            }
        }
    }
}
