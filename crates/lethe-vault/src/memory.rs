//! An in-memory key store, for tests and benchmarks of the library alone.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::{KeyStore, StoredKey, VaultError};

#[derive(Default)]
pub struct MemoryKeyStore {
    keys: Mutex<BTreeMap<(String, u32), StoredKey>>,
    tombstones: Mutex<BTreeMap<String, String>>,
}

#[async_trait::async_trait]
impl KeyStore for MemoryKeyStore {
    async fn latest(&self, subject: &str) -> Result<Option<StoredKey>, VaultError> {
        let k = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        Ok(
            k.range((subject.to_owned(), 0)..=(subject.to_owned(), u32::MAX))
                .next_back()
                .map(|(_, v)| v.clone()),
        )
    }
    async fn get(&self, subject: &str, version: u32) -> Result<Option<StoredKey>, VaultError> {
        Ok(self
            .keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(subject.to_owned(), version))
            .cloned())
    }
    async fn insert(&self, key: StoredKey) -> Result<bool, VaultError> {
        let mut k = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let id = (key.subject.clone(), key.version);
        if k.contains_key(&id) {
            return Ok(false);
        }
        k.insert(id, key);
        Ok(true)
    }
    async fn destroy(&self, subject: &str, at: &str) -> Result<u32, VaultError> {
        let mut k = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let before = k.len();
        k.retain(|(s, _), _| s != subject);
        let n = (before - k.len()) as u32;
        self.tombstones
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(subject.to_owned())
            .or_insert_with(|| at.to_owned());
        Ok(n)
    }
    async fn destroyed_at(&self, subject: &str) -> Result<Option<String>, VaultError> {
        Ok(self
            .tombstones
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(subject)
            .cloned())
    }
    async fn count(&self) -> Result<u64, VaultError> {
        Ok(self.keys.lock().unwrap_or_else(|p| p.into_inner()).len() as u64)
    }
    async fn wrapped_below(&self, version: u32, limit: u32) -> Result<Vec<StoredKey>, VaultError> {
        let k = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        Ok(k.values()
            .filter(|s| s.wrapped.kek_version < version)
            .take(limit as usize)
            .cloned()
            .collect())
    }
    async fn rewrap(&self, key: &StoredKey, old: u32) -> Result<bool, VaultError> {
        let mut k = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        match k.get_mut(&(key.subject.clone(), key.version)) {
            Some(s) if s.wrapped.kek_version == old => {
                s.wrapped = key.wrapped.clone();
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
