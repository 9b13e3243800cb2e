//! Tree heads as C2SP checkpoints (c2sp.org/tlog-checkpoint) in the signed
//! note format (c2sp.org/signed-note), the log's Ed25519 note signature,
//! witness cosignatures (c2sp.org/tlog-cosignature, timestamped Ed25519)
//! and the witness side of c2sp.org/tlog-witness `add-checkpoint`. Pure.

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::merkle::verify_consistency;
use crate::{Hash, Signer};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Signature type of a plain Ed25519 note signature (the log's).
pub const SIG_ED25519: u8 = 0x01;
/// Signature type of a timestamped Ed25519 cosignature (a witness's).
pub const SIG_COSIGNATURE: u8 = 0x04;
/// A note longer than this is refused unread.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
/// Signature lines read from one note at most (the spec asks for 16).
pub const MAX_SIGNATURES: usize = 64;
/// Consistency proof lines in an add-checkpoint request at most.
pub const MAX_PROOF_LINES: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("the note is longer than {MAX_NOTE_BYTES} bytes")]
    TooLong,
    #[error("the note has a control character other than newline")]
    Control,
    #[error("the note has no blank line before its signatures")]
    NoSignatures,
    #[error("signature line {0} is not '— <name> <base64>'")]
    BadSignatureLine(usize),
    #[error("the note has more than {MAX_SIGNATURES} signatures")]
    TooManySignatures,
    #[error("the checkpoint body is not origin, size and base64 root hash lines")]
    BadCheckpoint,
    #[error("the verifier key is not '<name>+<hex key id>+<base64 key>'")]
    BadKey,
}

/// `SHA-256(name || "\n" || type || public key)[:4]`.
pub fn key_id(name: &str, sig_type: u8, public_key: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([sig_type]);
    h.update(public_key);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// A key name: non-empty, no space and no '+'.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// The verifier key (vkey) text: `<name>+<hex key id>+<base64(type || key)>`.
pub fn vkey(name: &str, sig_type: u8, public_key: &[u8; 32]) -> String {
    let mut k = Vec::with_capacity(33);
    k.push(sig_type);
    k.extend_from_slice(public_key);
    format!(
        "{name}+{}+{}",
        hex::encode(key_id(name, sig_type, public_key)),
        B64.encode(k)
    )
}

/// Parses a vkey: its name, signature type and Ed25519 public key (the
/// key ID must match).
pub fn parse_vkey(s: &str) -> Result<(String, u8, [u8; 32]), NoteError> {
    let mut parts = s.trim().splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::BadKey);
    };
    let raw = B64.decode(key).map_err(|_| NoteError::BadKey)?;
    if !valid_name(name) || raw.len() != 33 {
        return Err(NoteError::BadKey);
    }
    let mut pk = [0u8; 32];
    pk.copy_from_slice(&raw[1..]);
    if hex::encode(key_id(name, raw[0], &pk)) != id.to_ascii_lowercase() {
        return Err(NoteError::BadKey);
    }
    Ok((name.to_owned(), raw[0], pk))
}

/// A tree head as a checkpoint body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: origin, size and base64 root, each ending in a newline.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }
    /// Reads a checkpoint body (extension lines are allowed and ignored).
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let mut lines = text.split('\n');
        let origin = lines.next().filter(|o| !o.is_empty());
        let size = lines
            .next()
            .filter(|s| *s == "0" || !s.starts_with('0'))
            .and_then(|s| s.parse::<u64>().ok());
        let root = lines
            .next()
            .and_then(|r| B64.decode(r).ok())
            .and_then(|r| <Hash>::try_from(r.as_slice()).ok());
        match (origin, size, root) {
            (Some(origin), Some(size), Some(root)) if text.ends_with('\n') => Ok(Self {
                origin: origin.to_owned(),
                size,
                root,
            }),
            _ => Err(NoteError::BadCheckpoint),
        }
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: [u8; 4],
    pub sig: Vec<u8>,
}

impl NoteSignature {
    /// `— <name> base64(key id || signature)` and a newline.
    pub fn line(&self) -> String {
        let mut b = Vec::with_capacity(4 + self.sig.len());
        b.extend_from_slice(&self.key_id);
        b.extend_from_slice(&self.sig);
        format!("\u{2014} {} {}\n", self.name, B64.encode(b))
    }
    fn parse(line: &str, n: usize) -> Result<Self, NoteError> {
        let rest = line
            .strip_prefix("\u{2014} ")
            .ok_or(NoteError::BadSignatureLine(n))?;
        let (name, sig) = rest.split_once(' ').ok_or(NoteError::BadSignatureLine(n))?;
        let raw = B64
            .decode(sig)
            .map_err(|_| NoteError::BadSignatureLine(n))?;
        if !valid_name(name) || raw.len() < 5 {
            return Err(NoteError::BadSignatureLine(n));
        }
        Ok(Self {
            name: name.to_owned(),
            key_id: [raw[0], raw[1], raw[2], raw[3]],
            sig: raw[4..].to_vec(),
        })
    }
}

/// Parses signature lines (each ending in a newline), as a witness answers.
pub fn parse_signature_lines(text: &str) -> Result<Vec<NoteSignature>, NoteError> {
    if text.len() > MAX_NOTE_BYTES {
        return Err(NoteError::TooLong);
    }
    let lines: Vec<&str> = text.split_terminator('\n').collect();
    if lines.len() > MAX_SIGNATURES {
        return Err(NoteError::TooManySignatures);
    }
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| NoteSignature::parse(l, i + 1))
        .collect()
}

/// A signed note: its text (ending in a newline) and signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub text: String,
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    pub fn render(&self) -> String {
        let mut s = self.text.clone();
        s.push('\n');
        for sig in &self.signatures {
            s.push_str(&sig.line());
        }
        s
    }

    pub fn parse(s: &str) -> Result<Self, NoteError> {
        if s.len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLong);
        }
        if s.chars().any(|c| c.is_control() && c != '\n') {
            return Err(NoteError::Control);
        }
        // The text ends at the last blank line.
        let split = s.rfind("\n\n").ok_or(NoteError::NoSignatures)?;
        let (text, sigs) = (&s[..=split], &s[split + 2..]);
        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(NoteError::NoSignatures);
        }
        Ok(Self {
            text: text.to_owned(),
            signatures: parse_signature_lines(sigs)?,
        })
    }
}

fn verifies(public_key: &[u8; 32], msg: &[u8], sig: &[u8]) -> bool {
    let (Ok(vk), Ok(sig)) = (
        ed25519_dalek::VerifyingKey::from_bytes(public_key),
        <[u8; 64]>::try_from(sig),
    ) else {
        return false;
    };
    use ed25519_dalek::Verifier as _;
    vk.verify(msg, &ed25519_dalek::Signature::from_bytes(&sig))
        .is_ok()
}

/// The log's note signature over a checkpoint body, named by its origin.
pub fn sign_text(signer: &Signer, name: &str, text: &str) -> NoteSignature {
    NoteSignature {
        name: name.to_owned(),
        key_id: key_id(name, SIG_ED25519, &signer.public_key_bytes()),
        sig: signer.sign_raw(text.as_bytes()).to_vec(),
    }
}

/// Whether the note carries a valid Ed25519 signature of `name` and key.
pub fn verify_text(note: &Note, name: &str, public_key: &[u8; 32]) -> bool {
    let id = key_id(name, SIG_ED25519, public_key);
    note.signatures.iter().any(|s| {
        s.name == name && s.key_id == id && verifies(public_key, note.text.as_bytes(), &s.sig)
    })
}

fn cosigned_message(text: &str, timestamp: u64) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{text}").into_bytes()
}

/// A witness's timestamped cosignature over a checkpoint's text.
pub fn cosign(signer: &Signer, name: &str, text: &str, timestamp: u64) -> NoteSignature {
    let mut sig = Vec::with_capacity(72);
    sig.extend_from_slice(&timestamp.to_be_bytes());
    sig.extend_from_slice(&signer.sign_raw(&cosigned_message(text, timestamp)));
    NoteSignature {
        name: name.to_owned(),
        key_id: key_id(name, SIG_COSIGNATURE, &signer.public_key_bytes()),
        sig,
    }
}

/// Verifies a cosignature of witness `name` with `public_key` over
/// `text`: its timestamp when it holds.
pub fn verify_cosignature(
    text: &str,
    name: &str,
    public_key: &[u8; 32],
    s: &NoteSignature,
) -> Option<u64> {
    if s.name != name || s.key_id != key_id(name, SIG_COSIGNATURE, public_key) || s.sig.len() != 72
    {
        return None;
    }
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&s.sig[..8]);
    let ts = u64::from_be_bytes(ts);
    (ts < 1 << 63 && verifies(public_key, &cosigned_message(text, ts), &s.sig[8..])).then_some(ts)
}

// ------------------------------------------------------------- witness side

/// The body of an add-checkpoint request.
pub fn add_checkpoint_body(old_size: u64, proof: &[Hash], checkpoint: &Note) -> String {
    let mut s = format!("old {old_size}\n");
    for h in proof {
        s.push_str(&B64.encode(h));
        s.push('\n');
    }
    s.push('\n');
    s.push_str(&checkpoint.render());
    s
}

/// Why a witness refuses a checkpoint, with the HTTP status the protocol
/// gives it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessRefusal {
    #[error("malformed request: {0}")]
    BadRequest(String),
    #[error("unknown log origin")]
    UnknownOrigin,
    #[error("no signature from the log's key verifies")]
    Forbidden,
    /// The old size is not the latest cosigned size (given here).
    #[error("the latest cosigned size is {0}")]
    Conflict(u64),
    #[error("the consistency proof does not verify")]
    BadProof,
}

impl WitnessRefusal {
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Forbidden => 403,
            Self::UnknownOrigin => 404,
            Self::Conflict(_) => 409,
            Self::BadProof => 422,
        }
    }
}

/// What a witness keeps per log: the latest checkpoint it cosigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cosigned {
    pub size: u64,
    pub root: Hash,
}

/// The witness's checks of an add-checkpoint request against the log it
/// knows (`origin`, `log_key`) and what it `latest` cosigned: on success
/// the new latest checkpoint (to persist atomically before answering) and
/// the checkpoint's text to cosign.
pub fn witness_check(
    body: &str,
    origin: &str,
    log_key: &[u8; 32],
    latest: Option<Cosigned>,
) -> Result<(Cosigned, String), WitnessRefusal> {
    let bad = |m: &str| WitnessRefusal::BadRequest(m.to_owned());
    let (head, note) = body
        .split_once("\n\n")
        .ok_or_else(|| bad("no blank line before the checkpoint"))?;
    let mut lines = head.split('\n');
    let old: u64 = lines
        .next()
        .and_then(|l| l.strip_prefix("old "))
        .filter(|s| *s == "0" || !s.starts_with('0'))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("the first line is not 'old <size>'"))?;
    let proof = lines
        .map(|l| {
            B64.decode(l)
                .ok()
                .and_then(|h| <Hash>::try_from(h.as_slice()).ok())
        })
        .collect::<Option<Vec<Hash>>>()
        .ok_or_else(|| bad("a proof line is not a base64 hash"))?;
    if proof.len() > MAX_PROOF_LINES {
        return Err(bad("more than 63 proof lines"));
    }
    let note = Note::parse(note).map_err(|e| WitnessRefusal::BadRequest(e.to_string()))?;
    let cp =
        Checkpoint::parse(&note.text).map_err(|e| WitnessRefusal::BadRequest(e.to_string()))?;
    if cp.origin != origin {
        return Err(WitnessRefusal::UnknownOrigin);
    }
    if !verify_text(&note, origin, log_key) {
        return Err(WitnessRefusal::Forbidden);
    }
    if old > cp.size {
        return Err(bad("the old size is larger than the checkpoint's"));
    }
    let latest_size = latest.map_or(0, |l| l.size);
    if old != latest_size {
        return Err(WitnessRefusal::Conflict(latest_size));
    }
    match latest {
        Some(l) if l.size == cp.size && l.root != cp.root => {
            return Err(WitnessRefusal::Conflict(l.size));
        }
        Some(l)
            if l.size != cp.size
                && !verify_consistency(l.size, cp.size, &l.root, &cp.root, &proof) =>
        {
            return Err(WitnessRefusal::BadProof);
        }
        None if !proof.is_empty() => return Err(bad("a proof from size 0")),
        _ => {}
    }
    Ok((
        Cosigned {
            size: cp.size,
            root: cp.root,
        },
        note.text,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::mth;

    use crate::merkle::consistency_by_definition as consistency;

    fn checkpoint(signer: &Signer, origin: &str, leaves: &[Hash]) -> Note {
        let cp = Checkpoint {
            origin: origin.into(),
            size: leaves.len() as u64,
            root: mth(leaves),
        };
        let text = cp.body();
        Note {
            signatures: vec![sign_text(signer, origin, &text)],
            text,
        }
    }

    #[test]
    fn a_checkpoint_note_round_trips_and_verifies() {
        let log = Signer::from_seed(&[1; 32]);
        let leaves: Vec<Hash> = (0..5u8).map(|i| [i; 32]).collect();
        let note = checkpoint(&log, "lethe.example/log", &leaves);
        let text = note.render();
        assert!(text.starts_with("lethe.example/log\n5\n"));
        assert!(text.contains("\n\n\u{2014} lethe.example/log "));
        let back = Note::parse(&text).unwrap();
        assert_eq!(back, note);
        assert!(verify_text(
            &back,
            "lethe.example/log",
            &log.public_key_bytes()
        ));
        assert!(!verify_text(
            &back,
            "other.example/log",
            &log.public_key_bytes()
        ));
        let cp = Checkpoint::parse(&back.text).unwrap();
        assert_eq!(cp.size, 5);
        // A changed size no longer verifies.
        let forged = Note {
            text: back.text.replace("\n5\n", "\n6\n"),
            ..back
        };
        assert!(!verify_text(
            &forged,
            "lethe.example/log",
            &log.public_key_bytes()
        ));
        for bad in [
            "",
            "a\n",
            "a\n\n",
            "x\n1\nAAAA\n\n\u{2014} n AAAA\n",
            "a\u{7}\n\n\u{2014} n QUFBQUFB\n",
        ] {
            assert!(
                Note::parse(bad).is_err()
                    || Checkpoint::parse(&Note::parse(bad).unwrap().text).is_err(),
                "{bad:?}"
            );
        }
        let vk = vkey("lethe.example/log", SIG_ED25519, &log.public_key_bytes());
        assert_eq!(
            parse_vkey(&vk).unwrap(),
            (
                "lethe.example/log".into(),
                SIG_ED25519,
                log.public_key_bytes()
            )
        );
        assert!(parse_vkey(&vk.replacen('+', "+0", 1)).is_err());
    }

    #[test]
    fn the_witness_cosigns_appends_and_refuses_the_rest() {
        let log = Signer::from_seed(&[1; 32]);
        let wit = Signer::from_seed(&[2; 32]);
        let origin = "lethe.example/log";
        let lk = log.public_key_bytes();
        let leaves: Vec<Hash> = (0..11u8).map(|i| [i; 32]).collect();
        // First contact: old 0, no proof.
        let n4 = checkpoint(&log, origin, &leaves[..4]);
        let (latest, text) =
            witness_check(&add_checkpoint_body(0, &[], &n4), origin, &lk, None).unwrap();
        assert_eq!(latest.size, 4);
        let cs = cosign(&wit, "witness.example/w1", &text, 1_700_000_000);
        let line = cs.line();
        let parsed = parse_signature_lines(&line).unwrap();
        assert_eq!(
            verify_cosignature(
                &text,
                "witness.example/w1",
                &wit.public_key_bytes(),
                &parsed[0]
            ),
            Some(1_700_000_000)
        );
        assert_eq!(
            verify_cosignature(
                &n4.text.replace("\n4\n", "\n3\n"),
                "witness.example/w1",
                &wit.public_key_bytes(),
                &parsed[0]
            ),
            None
        );
        // An append with its proof.
        let n11 = checkpoint(&log, origin, &leaves);
        let body = add_checkpoint_body(4, &consistency(&leaves, 4), &n11);
        let (l11, _) = witness_check(&body, origin, &lk, Some(latest)).unwrap();
        assert_eq!(l11.size, 11);
        // A stale old size: 409 with the latest size.
        assert_eq!(
            witness_check(&body, origin, &lk, Some(l11)).unwrap_err(),
            WitnessRefusal::Conflict(11)
        );
        // A rewritten log: the proof does not hold.
        let mut other = leaves.clone();
        other[2] = [99; 32];
        let forged = checkpoint(&log, origin, &other);
        let body = add_checkpoint_body(4, &consistency(&other, 4), &forged);
        assert_eq!(
            witness_check(&body, origin, &lk, Some(latest)).unwrap_err(),
            WitnessRefusal::BadProof
        );
        // Same size, other root.
        let body = add_checkpoint_body(11, &[], &forged);
        assert_eq!(
            witness_check(&body, origin, &lk, Some(l11)).unwrap_err(),
            WitnessRefusal::Conflict(11)
        );
        // Another key, another origin, a malformed body.
        let mallory = checkpoint(&Signer::from_seed(&[3; 32]), origin, &leaves);
        assert_eq!(
            witness_check(&add_checkpoint_body(0, &[], &mallory), origin, &lk, None).unwrap_err(),
            WitnessRefusal::Forbidden
        );
        let elsewhere = checkpoint(&log, "elsewhere.example/log", &leaves);
        assert_eq!(
            witness_check(&add_checkpoint_body(0, &[], &elsewhere), origin, &lk, None).unwrap_err(),
            WitnessRefusal::UnknownOrigin
        );
        assert_eq!(
            witness_check("old x\n\n", origin, &lk, None)
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn an_independent_signed_note_reader_verifies_the_log_signature() {
        // The signed_note crate (another implementation of the spec) reads
        // the vkey Lethe publishes and verifies the checkpoint with it.
        let log = Signer::from_seed(&[5; 32]);
        let origin = "lethe.example/log";
        let leaves: Vec<Hash> = (0..3u8).map(|i| [i; 32]).collect();
        let rendered = checkpoint(&log, origin, &leaves).render();
        let vk = vkey(origin, SIG_ED25519, &log.public_key_bytes());
        let verifier = signed_note::StandardVerifier::new(&vk).unwrap();
        let note = signed_note::Note::from_bytes(rendered.as_bytes()).unwrap();
        let list = signed_note::VerifierList::new(vec![Box::new(verifier)]);
        let (verified, _) = note.verify(&list).unwrap();
        assert_eq!(verified.len(), 1);
        assert_eq!(
            note.text(),
            Checkpoint {
                origin: origin.into(),
                size: 3,
                root: mth(&leaves)
            }
            .body()
            .as_bytes()
        );
    }
}
