//! Key-encryption keys. The default is a local key file; a KMS or HSM plugs
//! in by implementing [`Kek`].

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use zeroize::Zeroizing;

use crate::{DataKey, VaultError, WrappedKey};

pub trait Kek: Send + Sync {
    fn current_version(&self) -> u32;
    fn wrap(&self, key: &DataKey, context: &[u8]) -> Result<WrappedKey, VaultError>;
    fn unwrap(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<DataKey, VaultError>;
    /// Creates a new current version; earlier ones keep unwrapping.
    fn rotate(&self) -> Result<u32, VaultError>;
}

struct State {
    current: u32,
    keys: BTreeMap<u32, Zeroizing<[u8; 32]>>,
}

/// KEKs in a local JSON file (mode 0600), one entry per version:
/// `{"format":"lethe-vault-kek-v1","current":2,"keys":{"1":"<hex>","2":"<hex>"}}`.
pub struct LocalKeyFile {
    path: PathBuf,
    state: RwLock<State>,
}

impl std::fmt::Debug for LocalKeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKeyFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    format: String,
    current: u32,
    keys: BTreeMap<u32, String>,
}

const FORMAT: &str = "lethe-vault-kek-v1";

impl LocalKeyFile {
    /// Opens the key file. When it is missing, it is created only if
    /// `create_if_missing` (the caller knows no data key exists yet);
    /// otherwise that is an error telling to restore the file.
    pub fn open(path: &Path, create_if_missing: bool) -> Result<Self, VaultError> {
        let err = |problem: String, fix: &'static str| VaultError::KeyFile {
            path: path.display().to_string(),
            problem,
            fix,
        };
        if !path.exists() {
            if !create_if_missing {
                return Err(err(
                    "it is missing, but the store holds wrapped data keys".into(),
                    "restore the key file from its backup: without it every encrypted field is unreadable",
                ));
            }
            let mut keys = BTreeMap::new();
            keys.insert(1, Zeroizing::new(rand::random::<[u8; 32]>()));
            let kf = Self {
                path: path.to_owned(),
                state: RwLock::new(State { current: 1, keys }),
            };
            kf.persist()?;
            return Ok(kf);
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            err(
                format!("cannot be read ({})", e.kind()),
                "check its owner and mode (0600, the user running lethe)",
            )
        })?);
        let parsed: FileFormat = serde_json::from_str(&text).map_err(|_| {
            err(
                "is corrupt (not the expected JSON)".into(),
                "restore it from its backup",
            )
        })?;
        if parsed.format != FORMAT {
            return Err(err(
                format!("has an unknown format (expected {FORMAT})"),
                "restore it from its backup",
            ));
        }
        let mut keys = BTreeMap::new();
        for (v, hexkey) in &parsed.keys {
            let mut k = Zeroizing::new([0u8; 32]);
            hex::decode_to_slice(hexkey, &mut *k).map_err(|_| {
                err(
                    format!("key version {v} is corrupt (expected 64 hex characters)"),
                    "restore it from its backup",
                )
            })?;
            keys.insert(*v, k);
        }
        if !keys.contains_key(&parsed.current) {
            return Err(err(
                format!("the current version {} has no key", parsed.current),
                "restore it from its backup",
            ));
        }
        Ok(Self {
            path: path.to_owned(),
            state: RwLock::new(State {
                current: parsed.current,
                keys,
            }),
        })
    }

    fn persist(&self) -> Result<(), VaultError> {
        let st = self.state.read().unwrap_or_else(|p| p.into_inner());
        let f = FileFormat {
            format: FORMAT.into(),
            current: st.current,
            keys: st
                .keys
                .iter()
                .map(|(v, k)| (*v, hex::encode(**k)))
                .collect(),
        };
        let text = Zeroizing::new(
            serde_json::to_string_pretty(&f)
                .map_err(|_| VaultError::Kek("cannot serialize the key file"))?,
        );
        let tmp = self.path.with_extension("tmp");
        write_private(&tmp, text.as_bytes()).map_err(|e| VaultError::KeyFile {
            path: tmp.display().to_string(),
            problem: format!("cannot be written ({})", e.kind()),
            fix: "make the data directory writable",
        })?;
        std::fs::rename(&tmp, &self.path).map_err(|e| VaultError::KeyFile {
            path: self.path.display().to_string(),
            problem: format!("cannot be replaced ({})", e.kind()),
            fix: "make the data directory writable",
        })
    }

    fn cipher(&self, version: u32) -> Result<XChaCha20Poly1305, VaultError> {
        let st = self.state.read().unwrap_or_else(|p| p.into_inner());
        let k = st.keys.get(&version).ok_or(VaultError::Kek(
            "the key-encryption key version is not in the key file",
        ))?;
        Ok(XChaCha20Poly1305::new((&**k).into()))
    }
}

fn kek_aad(version: u32, context: &[u8]) -> Vec<u8> {
    let mut a = b"lethe.kek.v1\0".to_vec();
    a.extend_from_slice(&version.to_be_bytes());
    a.extend_from_slice(context);
    a
}

impl Kek for LocalKeyFile {
    fn current_version(&self) -> u32 {
        self.state.read().unwrap_or_else(|p| p.into_inner()).current
    }

    fn wrap(&self, key: &DataKey, context: &[u8]) -> Result<WrappedKey, VaultError> {
        let version = self.current_version();
        let nonce: [u8; 24] = rand::random();
        let ct = self
            .cipher(version)?
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: key.bytes(),
                    aad: &kek_aad(version, context),
                },
            )
            .map_err(|_| VaultError::Kek("wrapping failed"))?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&ct);
        Ok(WrappedKey {
            kek_version: version,
            bytes,
        })
    }

    fn unwrap(&self, w: &WrappedKey, context: &[u8]) -> Result<DataKey, VaultError> {
        if w.bytes.len() != 24 + 32 + 16 {
            return Err(VaultError::Kek("a wrapped key has the wrong length"));
        }
        let pt = Zeroizing::new(
            self.cipher(w.kek_version)?
                .decrypt(
                    XNonce::from_slice(&w.bytes[..24]),
                    Payload {
                        msg: &w.bytes[24..],
                        aad: &kek_aad(w.kek_version, context),
                    },
                )
                .map_err(|_| {
                    VaultError::Kek("a wrapped key does not open with its key-encryption key")
                })?,
        );
        let mut k = [0u8; 32];
        k.copy_from_slice(&pt);
        Ok(DataKey::from_bytes(k))
    }

    fn rotate(&self) -> Result<u32, VaultError> {
        let next = {
            let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
            let next = st.keys.keys().max().copied().unwrap_or(0) + 1;
            st.keys.insert(next, Zeroizing::new(rand::random()));
            st.current = next;
            next
        };
        self.persist()?;
        Ok(next)
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}
