//! The installation's secret: a 32-byte key in `<data_dir>/lethe.key`
//! (mode 0600), created on first run. Purpose keys are derived from it, so
//! one file holds everything and nothing else needs to be kept secret.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("key file {path}: {problem}; {fix}")]
    Bad {
        path: PathBuf,
        problem: String,
        fix: &'static str,
    },
}

#[derive(Clone)]
pub struct Secrets {
    otp: [u8; 32],
    pseudonym: [u8; 32],
    vault: [u8; 32],
    tombstone: [u8; 32],
    export_link: [u8; 32],
    pages: [u8; 32],
    idempotency: [u8; 32],
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(<redacted>)")
    }
}

fn derive(master: &[u8], purpose: &str) -> [u8; 32] {
    // HMAC takes keys of any length: this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(master).unwrap_or_else(|_| unreachable!());
    m.update(b"lethe.derive.v1:");
    m.update(purpose.as_bytes());
    m.finalize().into_bytes().into()
}

impl Secrets {
    pub fn from_master(master: &[u8; 32]) -> Self {
        Self {
            otp: derive(master, "otp"),
            pseudonym: derive(master, "pseudonym"),
            vault: derive(master, "vault"),
            tombstone: derive(master, "tombstone"),
            export_link: derive(master, "export-link"),
            pages: derive(master, "pages"),
            idempotency: derive(master, "idempotency"),
        }
    }

    pub fn load_or_create(data_dir: &Path) -> Result<Self, SecretError> {
        let path = data_dir.join("lethe.key");
        let bad = |problem: String, fix: &'static str| SecretError::Bad {
            path: path.clone(),
            problem,
            fix,
        };
        if !path.exists() {
            let key: [u8; 32] = rand::random();
            write_private(&path, hex::encode(key).as_bytes()).map_err(|e| {
                bad(
                    format!("cannot create it ({})", e.kind()),
                    "make the data directory writable",
                )
            })?;
            return Ok(Self::from_master(&key));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| {
            bad(
                format!("cannot read it ({})", e.kind()),
                "check its owner and permissions (0600, the user running lethe)",
            )
        })?;
        let mut key = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut key).map_err(|_| {
            bad(
                "it is corrupt (expected 64 hexadecimal characters)".into(),
                "restore it from your key backup; a new key would orphan every pseudonym and code",
            )
        })?;
        Ok(Self::from_master(&key))
    }

    /// Keyed hash of a one-time code, bound to its case.
    pub fn code_hash(&self, case_id: &str, code: &str) -> String {
        let mut m =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.otp).unwrap_or_else(|_| unreachable!());
        m.update(case_id.as_bytes());
        m.update(b":");
        m.update(code.as_bytes());
        hex::encode(m.finalize().into_bytes())
    }

    /// The vault's master secret (subject references, blind indexes).
    /// The key that seals the pages' hand-off tokens and session cookies
    /// and derives their CSRF tokens (dedicated).
    pub fn pages_key(&self) -> &[u8; 32] {
        &self.pages
    }

    pub fn vault_master(&self) -> &[u8; 32] {
        &self.vault
    }

    /// Keyed hash of an identifier for tombstones (dedicated key). Values
    /// are normalized: spaces and '-' removed, letters upper-cased, a
    /// leading +86 dropped from phone numbers.
    pub fn identifier_hash(&self, kind: &str, value: &str) -> String {
        // Phones in one form whatever the prefix (+86, 0086, 86) or
        // separators; other identifiers without spaces and dashes.
        let v = match (kind, lethe_domain::phone_key(value)) {
            ("phone", Some(p)) => p,
            _ => value
                .chars()
                .filter(|c| !c.is_whitespace() && *c != '-')
                .map(|c| c.to_ascii_uppercase())
                .collect(),
        };
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.tombstone)
            .unwrap_or_else(|_| unreachable!());
        m.update(kind.as_bytes());
        m.update(b":");
        m.update(v.as_bytes());
        hex::encode(m.finalize().into_bytes())
    }

    /// The token of an export's download link: a keyed hash of the export
    /// id, so it is never stored and can be shown again to the platform
    /// that asked (a retried request).
    /// The keyed hash of a request an idempotency record compares a retry
    /// with: keyed, so the record does not let anyone try bodies (a subject
    /// id, a phone number) against it.
    pub fn request_hash(&self, method: &str, path: &str, body: &[u8]) -> String {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.idempotency)
            .unwrap_or_else(|_| unreachable!());
        m.update(method.as_bytes());
        m.update(b" ");
        m.update(path.as_bytes());
        m.update(b"\n");
        m.update(body);
        hex::encode(m.finalize().into_bytes())
    }

    pub fn export_token(&self, export_id: &str) -> String {
        use base64::Engine;
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.export_link)
            .unwrap_or_else(|_| unreachable!());
        m.update(export_id.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
    }

    /// Checks a link token in constant time.
    pub fn export_token_ok(&self, export_id: &str, token: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.export_token(export_id)
            .as_bytes()
            .ct_eq(token.as_bytes())
            .into()
    }

    pub fn pseudonym(&self, subject: &str) -> String {
        lethe_ledger::pseudonym(&self.pseudonym, subject)
    }

    /// The pseudonym function with its key absorbed, for many ids.
    pub fn pseudonymizer(&self) -> lethe_ledger::Pseudonymizer {
        lethe_ledger::Pseudonymizer::new(&self.pseudonym)
    }
}

/// The Ed25519 key that signs tree heads, receipts and reports:
/// `<data_dir>/audit.key` (mode 0600), created on first run. Its public key
/// is what third parties verify with.
pub fn load_or_create_signer(data_dir: &Path) -> Result<lethe_ledger::Signer, SecretError> {
    let path = data_dir.join("audit.key");
    let bad = |problem: String, fix: &'static str| SecretError::Bad {
        path: path.clone(),
        problem,
        fix,
    };
    if !path.exists() {
        let seed: [u8; 32] = rand::random();
        write_private(&path, hex::encode(seed).as_bytes()).map_err(|e| {
            bad(
                format!("cannot create it ({})", e.kind()),
                "make the data directory writable",
            )
        })?;
        return Ok(lethe_ledger::Signer::from_seed(&seed));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| {
        bad(
            format!("cannot read it ({})", e.kind()),
            "check its owner and permissions (0600)",
        )
    })?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed)
        .map_err(|_| bad("it is corrupt (expected 64 hexadecimal characters)".into(), "restore it from your key backup; a new key cannot vouch for earlier tree heads and receipts"))?;
    Ok(lethe_ledger::Signer::from_seed(&seed))
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        let d = tempfile::tempdir().unwrap();
        let a = Secrets::load_or_create(d.path()).unwrap();
        let b = Secrets::load_or_create(d.path()).unwrap();
        assert_eq!(a.pseudonym("42"), b.pseudonym("42"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(d.path().join("lethe.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_corrupt_key_file_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("lethe.key"), "nonsense").unwrap();
        let e = Secrets::load_or_create(d.path()).unwrap_err().to_string();
        assert!(e.contains("corrupt") && e.contains("restore"), "{e}");
    }
}

/// The data directory holds Lethe's store, keys and export archives: it is
/// made 0700 and every file in it (and in its subdirectories, one level
/// down) 0600. Anything looser found at start is tightened and said loudly,
/// by name, so an operator sees what another account could have read.
pub fn secure_data_dir(dir: &std::path::Path) -> std::io::Result<Vec<String>> {
    use std::os::unix::fs::PermissionsExt;
    let mut fixed = vec![];
    let mut tighten = |p: &std::path::Path, want: u32| -> std::io::Result<()> {
        // A file gone since the listing (a database's WAL file closing)
        // needs nothing.
        let meta = match std::fs::symlink_metadata(p) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if meta.file_type().is_symlink() {
            return Ok(());
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            match std::fs::set_permissions(p, std::fs::Permissions::from_mode(want)) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                r => r?,
            }
            tracing::warn!(
                path = %p.display(),
                was = format!("{mode:o}"),
                now = format!("{want:o}"),
                "the data directory was readable by other accounts; tightened"
            );
            fixed.push(p.display().to_string());
        }
        Ok(())
    };
    tighten(dir, 0o700)?;
    for entry in std::fs::read_dir(dir)?.take(100_000) {
        let entry = entry?;
        let p = entry.path();
        if entry.file_type()?.is_dir() {
            tighten(&p, 0o700)?;
            for inner in std::fs::read_dir(&p)?.take(100_000) {
                let inner = inner?;
                if inner.file_type()?.is_file() {
                    tighten(&inner.path(), 0o600)?;
                }
            }
        } else if entry.file_type()?.is_file() {
            tighten(&p, 0o600)?;
        }
    }
    Ok(fixed)
}

#[cfg(test)]
mod permission_tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_loose_data_directory_is_tightened() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let f = dir.join("lethe.db");
        std::fs::write(&f, b"x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let sub = dir.join("exports");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("a.zip"), b"x").unwrap();
        std::fs::set_permissions(sub.join("a.zip"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let fixed = super::secure_data_dir(&dir).unwrap();
        assert_eq!(fixed.len(), 4, "{fixed:?}");
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&f), 0o600);
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(mode(&sub.join("a.zip")), 0o600);
        assert!(super::secure_data_dir(&dir).unwrap().is_empty());
    }
}
