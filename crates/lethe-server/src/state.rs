//! The server's shared state (`AppState`: store, vault, systems, clock,
//! limits, calendar) and the clock modes.

use crate::outbound::systems::Systems;
use crate::secrets::Secrets;
use crate::{config, http, jwt, metrics};
use jiff::{SignedDuration, Timestamp};
use lethe_connect::DataMap;
use lethe_domain::{Clock, ManualClock, Policy};
use lethe_store::Store;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// The production clock: system time, and nothing can move it.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A client must send its whole request head within this time.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest body of a vault batch call.
pub const VAULT_BODY_LIMIT: usize = 96 * 1024 * 1024;

/// What every handler, page and worker shares: one allocation, so a
/// request's copy of the state is one reference count.
#[derive(Clone)]
pub struct AppState(pub(crate) Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub store: Store,
    /// This instance's audit-log sequencer, for the metrics.
    pub sequencer: Arc<metrics::SequencerStats>,
    pub clock: Arc<dyn Clock>,
    /// Present only in demo mode: the clock the dev routes can move.
    pub manual_clock: Option<Arc<ManualClock>>,
    pub clock_file: Option<PathBuf>,
    pub datamap: Arc<DataMap>,
    pub systems: Arc<Systems>,
    pub secrets: Secrets,
    pub vault: Arc<lethe_vault::Vault>,
    /// Signs tree heads, receipts and reports.
    pub signer: Arc<lethe_ledger::Signer>,
    pub identity: config::IdentityConfig,
    pub metrics: Arc<metrics::Metrics>,
    /// Where the store and the key files live.
    pub data_dir: PathBuf,
    /// The key of the app's session tokens, when configured.
    pub session_key: Option<jwt::Key>,
    /// Outbound HTTP (providers, settlement instructions).
    pub http: reqwest::Client,
    /// Where the platform's services reach Lethe (HTTP-system callbacks).
    pub public_url: String,
    /// The demo points settlement instructions and notifications at its
    /// own demo platform.
    pub demo_platform: Arc<std::sync::OnceLock<Link>>,
    pub calendar: Arc<CalendarState>,
    pub tz: jiff::tz::TimeZone,
    pub tombstones: config::TombstoneConfig,
    pub notifications: config::NotificationConfig,
    pub policy: Policy,
    pub otp_resend: SignedDuration,
    pub otp_lockout: SignedDuration,
    pub limits: config::Limits,
    pub worker: config::WorkerConfig,
    pub export: config::ExportConfig,
    pub export_ttl: lethe_domain::export::LinkTtl,
    /// Wakes idle export builders when an export is requested.
    pub export_wake: Arc<Notify>,
    pub events: config::EventsConfig,
    pub transparency: config::TransparencyConfig,
    pub support: config::SupportConfig,
    pub keys: Arc<http::limits::KeyCache>,
    pub limiter: Arc<http::limits::RateLimiter>,
    /// Receipts that did not verify, per client address (support).
    pub receipt_tries: Arc<http::limits::RateLimiter>,
    /// Receipts being sealed beside the workers (bounded).
    pub seal_slots: Arc<tokio::sync::Semaphore>,
    pub demo: bool,
    /// Wakes idle workers when jobs are enqueued.
    pub wake: Arc<Notify>,
    /// Wakes the deadline timer (after the demo clock moves).
    pub timer_wake: Arc<Notify>,
}

/// The calendar in force, and what happened at the last reload.
pub struct CalendarState {
    pub current: std::sync::RwLock<lethe_domain::calendar::Calendar>,
    pub file: Option<PathBuf>,
    /// The last reload's error (file line and reason); the calendar in force
    /// stays the previous one.
    pub last_error: std::sync::RwLock<Option<String>>,
    pub file_stamp: std::sync::Mutex<Option<std::time::SystemTime>>,
}

impl CalendarState {
    /// The shipped calendar extended by the operator's file.
    pub fn load(
        file: Option<&std::path::Path>,
    ) -> Result<lethe_domain::calendar::Calendar, String> {
        let base = lethe_domain::calendar::Calendar::china().map_err(|e| e.to_string())?;
        match file {
            None => Ok(base),
            Some(f) => {
                let text = std::fs::read_to_string(f).map_err(|e| {
                    format!(
                        "calendar file {}: cannot be read ({})",
                        f.display(),
                        e.kind()
                    )
                })?;
                let ext = lethe_domain::calendar::Calendar::parse(&text)
                    .map_err(|e| format!("{}: {e}", f.display()))?;
                base.extended_checked(&ext)
                    .map_err(|e| format!("{}: {e}", f.display()))
            }
        }
    }

    pub fn get(&self) -> lethe_domain::calendar::Calendar {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// How time flows for this server.
pub enum ClockMode {
    /// Production: the system clock; no route can move it.
    System,
    /// Demo and tests: a manual clock whose offset is kept in a file.
    Manual {
        clock: Arc<ManualClock>,
        offset_file: PathBuf,
    },
}

/// Where the demo platform listens and the secret its calls are signed
/// with (one per run).
#[derive(Debug, Clone)]
pub struct Link {
    /// Lethe's own URL: the demo platform is served by the same process.
    pub url: String,
    pub secret: String,
}

impl Link {
    pub fn settlements(&self) -> String {
        format!("{}/demo-platform/settlements", self.url)
    }

    pub fn notifications(&self) -> String {
        format!("{}/demo-platform/notifications", self.url)
    }
}
