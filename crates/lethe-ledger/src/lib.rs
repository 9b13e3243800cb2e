//! Proof material: the audit log (an RFC 6962 Merkle tree of events), signed
//! tree heads, deletion receipts and their verification.
//!
//! Audit events carry no personal data: the subject appears only as a keyed
//! pseudonym ([`pseudonym`]), so erasing a user never breaks verification.
//! Everything here is pure: a third party verifies an exported log or a
//! receipt with this crate and the public key alone.

pub mod merkle;
pub mod monitor;
pub mod note;
pub mod public;
pub mod report;

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
    /// keys of `detail` sorted, no whitespace — exactly what `serde_json`
    /// writes for this struct (a property test holds the two together),
    /// produced by a hand-written encoder because verification re-encodes
    /// every event.
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.canonical_into(&mut out);
        out
    }

    pub fn canonical_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"seq\":");
        let mut num = [0u8; 20];
        out.extend_from_slice(fmt_u64(self.seq, &mut num));
        self.canonical_tail_into(out);
    }

    /// The canonical bytes after the sequence number (`,"case_id":…}`):
    /// what an event is before it is sequenced. [`leaf_hash_of`] gives the
    /// leaf hash from it and a sequence number.
    pub fn canonical_tail_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b",\"case_id\":");
        json_str(out, &self.case_id);
        out.extend_from_slice(b",\"subject\":");
        json_str(out, &self.subject);
        out.extend_from_slice(b",\"kind\":");
        json_str(out, &self.kind);
        out.extend_from_slice(b",\"from_state\":");
        match &self.from_state {
            Some(s) => json_str(out, s),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"to_state\":");
        json_str(out, &self.to_state);
        out.extend_from_slice(b",\"actor\":");
        json_str(out, &self.actor);
        out.extend_from_slice(b",\"at\":");
        json_str(out, &self.at);
        out.extend_from_slice(b",\"detail\":");
        json_value(out, &self.detail);
        out.push(b'}');
    }

    pub fn leaf_hash(&self) -> Hash {
        let mut buf = Vec::with_capacity(256);
        self.leaf_hash_with(&mut buf)
    }

    /// The leaf hash, reusing `buf` for the encoding.
    pub fn leaf_hash_with(&self, buf: &mut Vec<u8>) -> Hash {
        buf.clear();
        self.canonical_into(buf);
        leaf_hash(buf)
    }
}

fn fmt_u64(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

/// A JSON value as serde_json writes it (maps are sorted: serde_json's
/// map is a BTreeMap here). Floats go through serde_json itself.
fn json_value(out: &mut Vec<u8>, v: &serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            let mut buf = [0u8; 20];
            if let Some(u) = n.as_u64() {
                out.extend_from_slice(fmt_u64(u, &mut buf));
            } else if let Some(i) = n.as_i64() {
                out.push(b'-');
                out.extend_from_slice(fmt_u64(i.unsigned_abs(), &mut buf));
            } else {
                // Writing a number to a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, n);
            }
        }
        Value::String(s) => json_str(out, s),
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_value(out, x);
            }
            out.push(b']');
        }
        Value::Object(m) => {
            out.push(b'{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_str(out, k);
                out.push(b':');
                json_value(out, x);
            }
            out.push(b'}');
        }
    }
}

/// Whether a recorded hex hash equals a hash, without allocating.
fn hex_eq(recorded: &str, h: &Hash) -> bool {
    let mut buf = [0u8; 64];
    hex::encode_to_slice(h, &mut buf).is_ok() && recorded.as_bytes() == buf
}

/// A JSON string as serde_json writes it.
fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 0xf) as usize],
                ]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The leaf hash of the event whose canonical bytes after the sequence
/// number are `tail` ([`AuditEvent::canonical_tail_into`]), given `seq`.
pub fn leaf_hash_of(seq: u64, tail: &[u8]) -> Hash {
    let mut num = [0u8; 20];
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(b"{\"seq\":");
    h.update(fmt_u64(seq, &mut num));
    h.update(tail);
    h.finalize().into()
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
    /// The event belongs to another platform: only its sequence number and
    /// leaf hash are given (the other fields are empty), so the tree still
    /// verifies against the signed heads, but its content is not shown and
    /// cannot be checked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
}

impl RecordedEvent {
    /// The same event with everything but its sequence number and leaf
    /// hash removed (see [`RecordedEvent::redacted`]).
    pub fn redact(self) -> Self {
        Self {
            event: AuditEvent {
                seq: self.event.seq,
                case_id: String::new(),
                subject: String::new(),
                kind: String::new(),
                from_state: None,
                to_state: String::new(),
                actor: String::new(),
                at: String::new(),
                detail: serde_json::Value::Null,
            },
            hash: self.hash,
            redacted: true,
        }
    }
}

/// Keyed pseudonym of a subject id: HMAC-SHA-256 under the installation's
/// pseudonym key, hex, 32 characters.
pub fn pseudonym(key: &[u8], subject: &str) -> String {
    Pseudonymizer::new(key).of(subject)
}

/// [`pseudonym`] for many ids: the key is absorbed once, each id costs two
/// compressions (a reapply hashes millions).
#[derive(Clone)]
pub struct Pseudonymizer(Hmac<Sha256>);

impl Pseudonymizer {
    pub fn new(key: &[u8]) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
        m.update(b"lethe.subject.v1:");
        Self(m)
    }

    pub fn of(&self, subject: &str) -> String {
        let mut m = self.0.clone();
        m.update(subject.as_bytes());
        let out = m.finalize().into_bytes();
        hex::encode(&out[..16])
    }
}

// ------------------------------------------------------------------ signing

/// The installation's Ed25519 signing key. Never printed.
pub struct Signer {
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("public_key", &self.public_key_hex())
            .finish()
    }
}

impl Signer {
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(seed),
        }
    }
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }
    pub fn public_key_bytes(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }
    /// Base64 Ed25519 signature.
    pub fn sign(&self, msg: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.sign_raw(msg))
    }
    /// The raw 64-byte Ed25519 signature.
    pub fn sign_raw(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }
}

/// Verifies a base64 Ed25519 signature under a hex public key.
pub fn verify_signature(public_key_hex: &str, msg: &[u8], signature_b64: &str) -> bool {
    let Ok(pk) = hex::decode(public_key_hex.trim()) else {
        return false;
    };
    let Ok(pk): Result<[u8; 32], _> = pk.try_into() else {
        return false;
    };
    let Ok(vk) = VerifyingKey::from_bytes(&pk) else {
        return false;
    };
    let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(signature_b64) else {
        return false;
    };
    let Ok(sig): Result<[u8; 64], _> = sig.try_into() else {
        return false;
    };
    vk.verify(msg, &ed25519_dalek::Signature::from_bytes(&sig))
        .is_ok()
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
        Self {
            tree_size,
            root_hash,
            timestamp: timestamp.to_owned(),
            signature,
        }
    }
    pub fn verify(&self, public_key_hex: &str) -> bool {
        verify_signature(
            public_key_hex,
            &Self::signed_bytes(self.tree_size, &self.root_hash, &self.timestamp),
            &self.signature,
        )
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
    Removed {
        position: usize,
        expected: u64,
        found: u64,
    },
    #[error(
        "event at position {position}: sequence number {found} appears again: an event was inserted"
    )]
    Inserted { position: usize, found: u64 },
    #[error(
        "event at position {position}: sequence number {found} where {expected} was expected: events were reordered"
    )]
    Reordered {
        position: usize,
        expected: u64,
        found: u64,
    },
    #[error("event {seq} was modified: its content does not match its recorded hash")]
    Modified { seq: u64 },
    #[error(
        "the signed tree head of size {tree_size} has an invalid signature (forged, or signed by another key)"
    )]
    BadSignature { tree_size: u64 },
    #[error(
        "the signed tree head of size {tree_size} does not match the log: events {from_seq}..={to_seq} were rewritten (content and recorded hashes)"
    )]
    HeadMismatch {
        tree_size: u64,
        from_seq: u64,
        to_seq: u64,
    },
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

/// Leaves per chunk of parallel verification (a power of two, so each
/// chunk is a perfect subtree).
const CHUNK_LEVEL: u32 = 14;

struct ChunkResult {
    /// The first event whose content does not match its recorded hash.
    modified: Option<u64>,
    /// Root of the chunk when full.
    root: Hash,
    /// Right edge inside the chunk after each tree head that ends in it.
    heads: Vec<(u64, Vec<(u32, Hash)>)>,
}

/// One chunk: `leaf(i)` gives the seq, the recorded hex hash and the
/// recomputed leaf hash of the chunk's i-th event.
fn verify_chunk<'a>(
    len: usize,
    start: u64,
    head_sizes: &[u64],
    mut leaf: impl FnMut(usize) -> (u64, &'a str, Hash),
) -> ChunkResult {
    let mut f = merkle::Frontier::default();
    let mut modified = None;
    let mut heads = vec![];
    let mut hi = head_sizes.partition_point(|s| *s <= start);
    for i in 0..len {
        let (seq, recorded, leaf) = leaf(i);
        if modified.is_none() && !hex_eq(recorded, &leaf) {
            modified = Some(seq);
        }
        f.push(leaf, |_, _, _| {});
        let size = start + i as u64 + 1;
        while hi < head_sizes.len() && head_sizes[hi] == size {
            heads.push((size, f.stack().to_vec()));
            hi += 1;
        }
    }
    ChunkResult {
        modified,
        root: f.root(),
        heads,
    }
}

/// The sequence checks: removed, reordered or inserted events.
fn check_sequence(seqs: &[u64]) -> Result<(), LogError> {
    for (i, &found) in seqs.iter().enumerate() {
        let expected = i as u64 + 1;
        if found != expected {
            if seqs[..i].contains(&found) {
                return Err(LogError::Inserted { position: i, found });
            }
            if found > expected && !seqs[i..].contains(&expected) {
                return Err(LogError::Removed {
                    position: i,
                    expected,
                    found,
                });
            }
            return Err(LogError::Reordered {
                position: i,
                expected,
                found,
            });
        }
    }
    Ok(())
}

/// Checks every event against its recorded hash and every signed tree head
/// against the rebuilt tree, on every core. `leaf(i)` describes event i.
/// The tree heads, sorted, after checking every signature.
fn checked_heads<'h>(
    tree_heads: &'h [TreeHead],
    public_key_hex: &str,
) -> Result<Vec<&'h TreeHead>, LogError> {
    if tree_heads.is_empty() {
        return Err(LogError::NoTreeHead);
    }
    let mut heads: Vec<&TreeHead> = tree_heads.iter().collect();
    heads.sort_by_key(|h| h.tree_size);
    for h in &heads {
        if !h.verify(public_key_hex) {
            return Err(LogError::BadSignature {
                tree_size: h.tree_size,
            });
        }
    }
    Ok(heads)
}

fn verify_events<'a>(
    n: usize,
    tree_heads: &[TreeHead],
    public_key_hex: &str,
    leaf: impl Fn(usize, &mut Vec<u8>) -> (u64, &'a str, Hash) + Sync,
) -> Result<LogVerified, LogError> {
    let heads = checked_heads(tree_heads, public_key_hex)?;
    let sizes: Vec<u64> = heads.iter().map(|h| h.tree_size).collect();
    let chunk = 1usize << CHUNK_LEVEL;
    let nchunks = n.div_ceil(chunk);
    let threads = std::thread::available_parallelism()
        .map(|p| p.get())
        .unwrap_or(1)
        .min(nchunks)
        .max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<Option<ChunkResult>> = (0..nchunks).map(|_| None).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = vec![];
                    let mut buf = Vec::with_capacity(512);
                    loop {
                        let j = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if j >= nchunks {
                            break mine;
                        }
                        let start = j * chunk;
                        let len = chunk.min(n - start);
                        mine.push((
                            j,
                            verify_chunk(len, start as u64, &sizes, |i| leaf(start + i, &mut buf)),
                        ));
                    }
                })
            })
            .collect();
        for h in handles {
            // A verification thread does not panic: it only hashes.
            for (j, r) in h.join().unwrap_or_default() {
                results[j] = Some(r);
            }
        }
    });
    let results: Vec<ChunkResult> = results.into_iter().flatten().collect();
    finish(&results, &heads, n)
}

/// Chains the chunk results (each a full perfect subtree but the last) and
/// checks every signed tree head against the rebuilt tree.
fn finish(results: &[ChunkResult], heads: &[&TreeHead], n: usize) -> Result<LogVerified, LogError> {
    if let Some(seq) = results.iter().filter_map(|r| r.modified).min() {
        return Err(LogError::Modified { seq });
    }
    // Chain the chunks: the edge before chunk j holds whole chunks only.
    let mut global = merkle::Frontier::default();
    let mut roots = std::collections::BTreeMap::new();
    for r in results {
        for (size, local) in &r.heads {
            let mut edge = global.stack().to_vec();
            edge.extend_from_slice(local);
            roots.insert(*size, merkle::root_of_stack(&edge));
        }
        global.push_subtree(CHUNK_LEVEL, r.root);
    }
    let n = n as u64;
    let mut last_good = 0u64;
    for h in heads {
        if h.tree_size > n {
            return Err(LogError::Truncated {
                tree_size: h.tree_size,
                events: n,
            });
        }
        if roots.get(&h.tree_size).copied() != h.root() {
            return Err(LogError::HeadMismatch {
                tree_size: h.tree_size,
                from_seq: last_good + 1,
                to_seq: h.tree_size,
            });
        }
        last_good = h.tree_size;
    }
    Ok(LogVerified {
        events: n,
        tree_heads: heads.len(),
        unsigned_tail: n - last_good,
    })
}

/// Verifies an exported log (events as JSON objects) offline with the
/// public key only, and names the first event (or range) that was modified,
/// removed, reordered or inserted.
pub fn verify_log(export: &LogExport, public_key_hex: &str) -> Result<LogVerified, LogError> {
    let seqs: Vec<u64> = export.events.iter().map(|e| e.event.seq).collect();
    check_sequence(&seqs)?;
    verify_events(
        export.events.len(),
        &export.tree_heads,
        public_key_hex,
        |i, buf| {
            let e = &export.events[i];
            // A redacted event is taken at its recorded hash (a malformed
            // one cannot match the signed root).
            let leaf = if e.redacted {
                unhex(&e.hash).unwrap_or([0u8; 32])
            } else {
                e.event.leaf_hash_with(buf)
            };
            (e.event.seq, e.hash.as_str(), leaf)
        },
    )
}

/// The first line of a log file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogFileHeader {
    pub format: String,
    pub tree_heads: Vec<TreeHead>,
}

pub const LOG_FILE_FORMAT: &str = "lethe-audit-log-v1";

/// Writes a log file: a header line with the signed tree heads, then one
/// line per event: `<hex leaf hash> <canonical event JSON>`. The event
/// bytes are exactly what was hashed, so verification hashes them as they
/// are.
pub fn write_log_file(out: &mut Vec<u8>, events: &[RecordedEvent], tree_heads: &[TreeHead]) {
    let header = LogFileHeader {
        format: LOG_FILE_FORMAT.into(),
        tree_heads: tree_heads.to_vec(),
    };
    // Serializing plain data cannot fail.
    let _ = serde_json::to_writer(&mut *out, &header);
    out.push(b'\n');
    for e in events {
        out.extend_from_slice(e.hash.as_bytes());
        out.push(b' ');
        e.event.canonical_into(out);
        out.push(b'\n');
    }
}

/// One parsed line: seq, recorded hex hash, the event's bytes.
fn parse_line(line: &[u8]) -> Option<(u64, &str, &[u8])> {
    if line.len() < 65 + 8 || line[64] != b' ' {
        return None;
    }
    let hash = std::str::from_utf8(&line[..64]).ok()?;
    let json = &line[65..];
    let rest = json.strip_prefix(b"{\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let seq = rest[..digits]
        .iter()
        .fold(0u64, |a, d| a * 10 + u64::from(d - b'0'));
    Some((seq, hash, json))
}

fn lines_of(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0usize;
    memchr::memchr_iter(b'\n', bytes)
        .chain(std::iter::once(bytes.len()))
        .map(move |end| {
            let line = &bytes[start.min(end)..end];
            start = end + 1;
            line
        })
        .filter(|l| !l.is_empty())
}

/// The start of the first line at or after `from` whose event begins a
/// chunk (seq - 1 a multiple of the chunk size), so every core works on
/// whole chunks. Tampering can misplace a cut; the checks then report it.
fn aligned_cut(bytes: &[u8], from: usize) -> usize {
    let chunk = 1u64 << CHUNK_LEVEL;
    let mut pos = match memchr::memchr(b'\n', &bytes[from..]) {
        Some(p) => from + p + 1,
        None => return bytes.len(),
    };
    while pos < bytes.len() {
        let end = memchr::memchr(b'\n', &bytes[pos..]).map_or(bytes.len(), |p| pos + p);
        match parse_line(&bytes[pos..end]) {
            Some((seq, _, _)) if seq.wrapping_sub(1).is_multiple_of(chunk) => return pos,
            None => return pos,
            _ => pos = end + 1,
        }
    }
    bytes.len()
}

struct Part {
    lines: usize,
    bad: Option<usize>,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    /// Whether seqs inside the part run without a gap.
    contiguous: bool,
    chunks: Vec<ChunkResult>,
}

/// Streams one part of the file: parse, hash, compare, build the part's
/// chunks (each 2^CHUNK_LEVEL lines), note whether seqs are contiguous.
fn verify_part(region: &[u8], sizes: &[u64]) -> Part {
    let chunk = 1usize << CHUNK_LEVEL;
    let mut part = Part {
        lines: 0,
        bad: None,
        first_seq: None,
        last_seq: None,
        contiguous: true,
        chunks: vec![],
    };
    let mut f = merkle::Frontier::default();
    let mut in_chunk = 0usize;
    let mut modified = None;
    let mut heads = vec![];
    let mut hi = 0usize;
    let mut start = 0u64;
    for line in lines_of(region) {
        let Some((seq, hash, json)) = parse_line(line) else {
            part.bad = Some(part.lines);
            part.lines += 1;
            return part;
        };
        if part.first_seq.is_none() {
            part.first_seq = Some(seq);
            start = seq.saturating_sub(1);
            hi = sizes.partition_point(|s| *s <= start);
        } else if part.last_seq != Some(seq.wrapping_sub(1)) {
            part.contiguous = false;
        }
        part.last_seq = Some(seq);
        let leaf = leaf_hash(json);
        if modified.is_none() && !hex_eq(hash, &leaf) {
            modified = Some(seq);
        }
        f.push(leaf, |_, _, _| {});
        part.lines += 1;
        in_chunk += 1;
        let size = start + part.lines as u64;
        while hi < sizes.len() && sizes[hi] == size {
            heads.push((size, f.stack().to_vec()));
            hi += 1;
        }
        if in_chunk == chunk {
            part.chunks.push(ChunkResult {
                modified: modified.take(),
                root: f.root(),
                heads: std::mem::take(&mut heads),
            });
            f = merkle::Frontier::default();
            in_chunk = 0;
        }
    }
    if in_chunk > 0 {
        part.chunks.push(ChunkResult {
            modified,
            root: f.root(),
            heads,
        });
    }
    part
}

/// Verifies a log file (see [`write_log_file`]) offline with the public key.
/// The file is cut into one part per core at chunk boundaries; parsing,
/// hashing and tree building run in parallel, streaming.
pub fn verify_log_file(text: &str, public_key_hex: &str) -> Result<LogVerified, LogFileError> {
    let (first, body) = text.split_once('\n').unwrap_or((text, ""));
    let header: LogFileHeader = serde_json::from_str(first).map_err(|_| LogFileError::Header)?;
    if header.format != LOG_FILE_FORMAT {
        return Err(LogFileError::Header);
    }
    let heads = checked_heads(&header.tree_heads, public_key_hex)?;
    let sizes: Vec<u64> = heads.iter().map(|h| h.tree_size).collect();
    let bytes = body.as_bytes();
    let threads = std::thread::available_parallelism()
        .map(|p| p.get())
        .unwrap_or(1);
    let mut cuts = vec![0usize];
    for t in 1..threads {
        let c = aligned_cut(bytes, bytes.len() * t / threads);
        if c > *cuts.last().unwrap_or(&0) && c < bytes.len() {
            cuts.push(c);
        }
    }
    cuts.push(bytes.len());
    let parts: Vec<Part> = std::thread::scope(|s| {
        let handles: Vec<_> = cuts
            .windows(2)
            .map(|w| {
                let (region, sizes) = (&bytes[w[0]..w[1]], &sizes);
                s.spawn(move || verify_part(region, sizes))
            })
            .collect();
        // A verification thread does not panic: it only parses and hashes.
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let mut before = 0usize;
    for p in &parts {
        if let Some(i) = p.bad {
            return Err(LogFileError::Line {
                line: before + i + 2,
            });
        }
        before += p.lines;
    }
    // Seqs must run 1..=n across parts; otherwise classify precisely.
    let mut expected = 1u64;
    let mut in_order = true;
    for p in &parts {
        if !p.contiguous || (p.lines > 0 && p.first_seq != Some(expected)) {
            in_order = false;
            break;
        }
        expected += p.lines as u64;
    }
    if !in_order {
        let seqs: Vec<u64> = lines_of(bytes)
            .filter_map(parse_line)
            .map(|p| p.0)
            .collect();
        check_sequence(&seqs)?;
    }
    let results: Vec<ChunkResult> = parts.into_iter().flat_map(|p| p.chunks).collect();
    Ok(finish(&results, &heads, before)?)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogFileError {
    #[error("the first line is not a Lethe audit log header ({LOG_FILE_FORMAT})")]
    Header,
    #[error("line {line} is not `<64 hex> <event JSON starting with {{\"seq\":>`")]
    Line { line: usize },
    #[error(transparent)]
    Log(#[from] LogError),
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
    /// What happened to each asset (refunds, withdrawals, transfers,
    /// unbindings, forfeits), with the amount the user was shown when it
    /// differs from the one paid out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settlements: Vec<ReceiptSettlement>,
    /// Where the holder reaches support after erasure, with this receipt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub support_url: Option<String>,
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
    /// Referenced rows of the subject kept because other rows still
    /// reference them (an address shared with a store).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shared_kept: u64,
    /// Columns set to NULL in the rows that stay (names only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set_null: Vec<String>,
    /// Columns replaced by a keyed hash in the rows that stay (names only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hashed: Vec<String>,
    /// Kept only because the kept rows of this table reference them (a
    /// stub), purged with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stub_for: Option<String>,
    /// A stub table's rows of the subject deleted because no kept row
    /// references them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stub_deleted: u64,
    /// What the table holds and why it is kept, in Chinese and English, as
    /// the data map names them for users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<lethe_domain::labels::TableLabels>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyDestruction {
    pub versions_destroyed: u32,
    pub destroyed_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiptSettlement {
    /// The platform's reference of the asset.
    pub asset_id: String,
    /// balance, points, coupon, gift_card, deposit, subscription, bank_card
    /// or third_party_binding.
    pub kind: String,
    /// refund_pro_rata, withdraw, transfer, unbind or forfeit.
    pub option: String,
    /// done or forfeited.
    pub status: String,
    /// Minor units (fen) paid out, for a refund or a withdrawal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_minor: Option<i64>,
    /// The amount the acknowledged statement named, when it differs (a
    /// refund counted on the day cooling-off ended, days after choosing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_shown_minor: Option<i64>,
    /// The platform's reference of the settlement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
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
        let head = self
            .tree_head
            .as_ref()
            .ok_or(ReceiptError::Missing("a signed tree head"))?;
        if !head.verify(public_key_hex) {
            return Err(ReceiptError::TreeHead);
        }
        let fe = self
            .final_event
            .as_ref()
            .ok_or(ReceiptError::Missing("its final event"))?;
        let leaf = unhex(&fe.hash).ok_or(ReceiptError::Inclusion)?;
        let proof: Option<Vec<Hash>> = self.inclusion_proof.iter().map(|h| unhex(h)).collect();
        let root = head.root().ok_or(ReceiptError::TreeHead)?;
        let ok = fe.seq >= 1
            && merkle::verify_inclusion(
                &leaf,
                fe.seq - 1,
                head.tree_size,
                &proof.ok_or(ReceiptError::Inclusion)?,
                &root,
            );
        if !ok {
            return Err(ReceiptError::Inclusion);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
