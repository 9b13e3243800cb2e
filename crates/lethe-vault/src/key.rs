//! The vault's key material and its error: a data key (zeroized on drop,
//! never printed), a data key wrapped by a key-encryption key version, and
//! `VaultError`.

use zeroize::Zeroizing;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    #[error(
        "the subject's keys were destroyed (crypto-shredded) at {at}; the data is erased and cannot be decrypted"
    )]
    Erased { at: String },
    #[error("the ciphertext was modified, or belongs to another subject or field")]
    Tampered,
    #[error(
        "no key opens this ciphertext for this subject: it belongs to another subject or installation"
    )]
    UnknownKey,
    #[error("the ciphertext is malformed: {0}")]
    Malformed(&'static str),
    #[error("the field is larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("a batch holds at most {max} items")]
    BatchTooLarge { max: usize },
    #[error("the field name must be 1-64 characters of a-z, 0-9, '_' and '.'")]
    BadField,
    #[error("vault key file {path}: {problem}; {fix}")]
    KeyFile {
        path: String,
        problem: String,
        fix: &'static str,
    },
    #[error("key-encryption key: {0}")]
    Kek(&'static str),
    #[error("vault key store: {0}")]
    Store(String),
}

/// A data key. Zeroized on drop; never printed.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    pub fn generate() -> Self {
        Self(Zeroizing::new(rand::random()))
    }
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Self(Zeroizing::new(b))
    }
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// A data key wrapped (encrypted) by a KEK version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub kek_version: u32,
    pub bytes: Vec<u8>,
}
