//! Bounded in-memory limits shared by every request of an instance: the
//! API-key cache and the token-bucket rate limiter.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bounded cache of verified API keys (hash -> name), so a request does not
/// read the database to authenticate. Entries live 1 second, so a key
/// revoked on any instance stops working on every instance within that
/// time (each key costs each instance one read a second at most).
pub struct KeyCache {
    map: Mutex<HashMap<String, (String, Instant)>>,
}

const KEY_CACHE_MAX: usize = 10_000;

const KEY_CACHE_TTL: Duration = Duration::from_secs(1);

impl KeyCache {
    pub fn new() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }
    pub fn get(&self, hash: &str) -> Option<String> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(hash)
            .filter(|(_, at)| at.elapsed() < KEY_CACHE_TTL)
            .map(|(n, _)| n.clone())
    }
    pub fn put(&self, hash: String, name: String) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= KEY_CACHE_MAX {
            map.clear();
        }
        map.insert(hash, (name, Instant::now()));
    }
}

impl Default for KeyCache {
    fn default() -> Self {
        Self::new()
    }
}

/// Token buckets per principal, bounded in number. Each instance takes its
/// share of the configured rate and burst: the live instances (counted in
/// the store) share them out, so N instances together allow the rate once.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    share: std::sync::atomic::AtomicU32,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

const MAX_BUCKETS: usize = 10_000;

impl RateLimiter {
    pub fn new(rate_per_second: u32, burst: u32) -> Self {
        Self::with(f64::from(rate_per_second.max(1)), f64::from(burst.max(1)))
    }

    fn with(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            share: std::sync::atomic::AtomicU32::new(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// A bucket of `count` per hour (failed tries, not requests): burst
    /// `count`, refilled over the hour.
    pub fn per_hour(count: u32) -> Self {
        let count = f64::from(count.max(1));
        Self::with(count / 3600.0, count)
    }

    /// Whether `who` has a token left, without taking it (or how many
    /// seconds until one).
    pub fn available(&self, who: &str) -> Result<(), i64> {
        let (rate, burst) = self.shares();
        let b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let Some((tokens, at)) = b.get(who) else {
            return Ok(());
        };
        let tokens = (*tokens + at.elapsed().as_secs_f64() * rate).min(burst);
        if tokens >= 1.0 {
            Ok(())
        } else {
            Err(((1.0 - tokens) / rate).ceil() as i64)
        }
    }

    fn shares(&self) -> (f64, f64) {
        let n = f64::from(self.share.load(std::sync::atomic::Ordering::Relaxed).max(1));
        ((self.rate / n).max(0.0001), (self.burst / n).max(1.0))
    }

    /// How many live instances share the limits.
    pub fn set_instances(&self, n: u32) {
        self.share
            .store(n.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Takes a token, or says how many seconds to wait.
    pub fn check(&self, who: &str) -> Result<(), i64> {
        let (rate, burst) = self.shares();
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() >= MAX_BUCKETS && !b.contains_key(who) {
            b.retain(|_, (tokens, at)| *tokens < burst && at.elapsed() < Duration::from_secs(60));
        }
        let now = Instant::now();
        let (tokens, at) = b.entry(who.to_owned()).or_insert((burst, now));
        *tokens = (*tokens + at.elapsed().as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / rate).ceil() as i64)
        }
    }
}
