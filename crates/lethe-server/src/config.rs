//! Server settings, read by the CLI from one TOML file (and the
//! environment for secrets). Every field has a bound.

use jiff::SignedDuration;
use lethe_domain::Policy;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where Lethe keeps its database and key file.
    pub data_dir: PathBuf,
    /// The data map of the platform's stores.
    pub datamap: PathBuf,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub worker: WorkerConfig,
    /// The platform's time zone for working-day arithmetic.
    #[serde(default = "default_tz")]
    pub time_zone: String,
    /// An operator's calendar file extending (or correcting) the shipped
    /// mainland China calendar; watched and reloaded when it changes.
    pub calendar_file: Option<PathBuf>,
    #[serde(default)]
    pub tombstones: TombstoneConfig,
    #[serde(default)]
    pub notifications: NotificationConfig,
    #[serde(default)]
    pub identity: IdentityConfig,
    /// The URL the platform's services reach Lethe at (for the callbacks of
    /// HTTP systems); default `http://{listen}`.
    pub public_url: Option<String>,
    #[serde(default)]
    pub export: ExportConfig,
    #[serde(default)]
    pub events: EventsConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub transparency: TransparencyConfig,
    #[serde(default)]
    pub support: SupportConfig,
}

/// Support requests (also after erasure, opened with the receipt).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupportConfig {
    /// Working days (the platform's calendar) an agent has to answer
    /// (1-30; default 3).
    pub answer_within_working_days: u32,
    /// Requests one receipt (or one live case) may open per day (1-100;
    /// default 3).
    pub per_receipt_per_day: u32,
    /// Requests one client address may open per hour (1-10000; default 10).
    pub per_client_per_hour: u32,
    /// Receipts that did not verify one client address may send per hour
    /// before it is refused without a check (1-10000; default 20).
    pub failed_receipts_per_hour: u32,
    /// An answered request is closed (its contact destroyed) this many days
    /// after the answer if no agent closed it (1-365; default 14).
    pub close_answered_after_days: u32,
    /// The platform's messaging endpoint that delivers answers to the
    /// holder's phone or email (signed webhook); required outside the demo.
    pub delivery_url: Option<String>,
    /// The environment variable holding that endpoint's signing secret.
    pub delivery_secret_env: Option<String>,
}

impl Default for SupportConfig {
    fn default() -> Self {
        Self {
            answer_within_working_days: 3,
            per_receipt_per_day: 3,
            per_client_per_hour: 10,
            failed_receipts_per_hour: 20,
            close_answered_after_days: 14,
            delivery_url: None,
            delivery_secret_env: None,
        }
    }
}

impl SupportConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=30).contains(&self.answer_within_working_days) {
            return Err(
                "support.answer_within_working_days must be between 1 and 30; 3 is the usual value"
                    .into(),
            );
        }
        if !(1..=100).contains(&self.per_receipt_per_day) {
            return Err(
                "support.per_receipt_per_day must be between 1 and 100; 3 is the usual value"
                    .into(),
            );
        }
        if !(1..=365).contains(&self.close_answered_after_days) {
            return Err("support.close_answered_after_days must be between 1 and 365; 14 is the usual value".into());
        }
        if !(1..=10_000).contains(&self.per_client_per_hour) {
            return Err(
                "support.per_client_per_hour must be between 1 and 10000; 10 is the usual value"
                    .into(),
            );
        }
        if !(1..=10_000).contains(&self.failed_receipts_per_hour) {
            return Err(
                "support.failed_receipts_per_hour must be between 1 and 10000; 20 is the usual value"
                    .into(),
            );
        }
        match (&self.delivery_url, &self.delivery_secret_env) {
            (Some(u), Some(_)) if u.starts_with("https://") || u.starts_with("http://") => Ok(()),
            (Some(_), Some(_)) => Err("support.delivery_url must be an http(s) URL".into()),
            (None, None) => Ok(()),
            _ => Err(
                "set both support.delivery_url and support.delivery_secret_env, or neither".into(),
            ),
        }
    }
}

/// Public transparency: `/transparency` (the latest signed tree head, the
/// public key, consistency proofs, the monthly reports), without
/// credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransparencyConfig {
    /// On by default; false answers 404 on every public route and
    /// publishes no report.
    pub enabled: bool,
    /// Counts from 1 to threshold - 1 are published as "< threshold"
    /// (1-1000; default 5; 1 publishes every count).
    pub threshold: u64,
    /// The checkpoint origin (and note key name); default the public URL's
    /// host and path followed by `/audit-log`.
    pub origin: Option<String>,
    /// Witnesses asked to cosign each new checkpoint (at most 16).
    pub witnesses: Vec<WitnessConfig>,
}

impl Default for TransparencyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: lethe_ledger::public::DEFAULT_THRESHOLD,
            origin: None,
            witnesses: vec![],
        }
    }
}

/// A witness (c2sp.org/tlog-witness).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// Its verifier key: `<name>+<key id>+<base64(0x04 || Ed25519 key)>`.
    pub vkey: String,
    /// Its submission prefix (`add-checkpoint` is appended).
    pub url: String,
}

impl WitnessConfig {
    /// The witness's name (the vkey's first part).
    pub fn name(&self) -> &str {
        self.vkey.split('+').next().unwrap_or_default()
    }
}

impl TransparencyConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=1000).contains(&self.threshold) {
            return Err(format!(
                "transparency.threshold must be between 1 and 1000; 5 is the usual value, got {}",
                self.threshold
            ));
        }
        if let Some(o) = &self.origin
            && !lethe_ledger::note::valid_name(o)
        {
            return Err("transparency.origin must be non-empty with no space and no '+', e.g. lethe.example.com/audit-log".into());
        }
        if self.witnesses.len() > 16 {
            return Err("transparency.witnesses lists at most 16 witnesses".into());
        }
        for (i, w) in self.witnesses.iter().enumerate() {
            match lethe_ledger::note::parse_vkey(&w.vkey) {
                Ok((_, lethe_ledger::note::SIG_COSIGNATURE, _)) => {}
                Ok(_) => {
                    return Err(format!(
                        "transparency.witnesses[{i}].vkey is not a cosignature key (its type byte must be 0x04, c2sp.org/tlog-cosignature)"
                    ));
                }
                Err(e) => return Err(format!("transparency.witnesses[{i}].vkey: {e}")),
            }
            if !(w.url.starts_with("https://") || w.url.starts_with("http://")) {
                return Err(format!(
                    "transparency.witnesses[{i}].url must be an http(s) URL, the witness's submission prefix"
                ));
            }
        }
        Ok(())
    }
}

/// Where Lethe keeps its own data: an embedded SQLite file under
/// `data_dir` (the default), or a PostgreSQL database that several
/// instances share. One of `url` (a URL without a password: trust, peer or
/// certificate authentication) or `url_env` (the variable holding a URL
/// with its password) chooses PostgreSQL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub url: Option<String>,
    /// The environment variable holding the PostgreSQL URL
    /// (`postgres://user:password@host/db`).
    pub url_env: Option<String>,
    /// Connections for reads (1 to 32; default 4).
    pub read_connections: u32,
    /// PostgreSQL: writer connections, each committing one change at a time
    /// so that independent cases commit side by side (1 to 32; default 4).
    /// SQLite has one writer that commits changes in groups.
    pub write_connections: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: None,
            url_env: None,
            read_connections: 4,
            write_connections: 4,
        }
    }
}

impl StoreConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("store.read_connections", self.read_connections),
            ("store.write_connections", self.write_connections),
        ] {
            if !(1..=32).contains(&v) {
                return Err(format!("{name} must be between 1 and 32, got {v}"));
            }
        }
        Ok(())
    }
}

impl Config {
    /// The store's URL: the PostgreSQL URL from `store.url_env`, or the
    /// SQLite file `<data_dir>/lethe.db`.
    pub fn store_url(&self) -> Result<String, String> {
        let postgres = |u: &str| u.starts_with("postgres://") || u.starts_with("postgresql://");
        match (&self.store.url, &self.store.url_env) {
            (None, None) => Ok(format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("lethe.db").display()
            )),
            (Some(_), Some(_)) => Err("set store.url or store.url_env, not both".into()),
            (Some(url), None) => {
                if !postgres(url) {
                    return Err(
                        "store.url must be a postgres:// URL (for SQLite, leave [store] out)"
                            .into(),
                    );
                }
                // user:password@ — a password belongs in the environment.
                let auth = url.split_once("://").map(|(_, r)| r).unwrap_or_default();
                let userinfo = auth.split_once('@').map(|(u, _)| u).unwrap_or_default();
                if userinfo.contains(':') {
                    return Err("store.url carries a password; put the URL in an environment variable and name it in store.url_env".into());
                }
                Ok(url.clone())
            }
            (None, Some(env)) => {
                let url = std::env::var(env).map_err(|_| {
                    format!(
                        "store.url_env names {env}, which is not set; export it with the PostgreSQL URL"
                    )
                })?;
                if postgres(&url) {
                    Ok(url)
                } else {
                    Err(format!(
                        "{env} must hold a postgres:// URL (for SQLite, leave [store] out)"
                    ))
                }
            }
        }
    }
}

/// Case events for the platform's services, on NATS JetStream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// The NATS server, e.g. `nats://127.0.0.1:4222`; without it no events
    /// are recorded or published.
    pub nats_url: Option<String>,
    /// The JetStream stream (created when missing).
    pub stream: String,
    /// Subjects are `<prefix>.frozen`, `<prefix>.restored`,
    /// `<prefix>.erasure_requested.<system>`, `<prefix>.erased`.
    pub subject_prefix: String,
    /// How long the stream drops a repeated event id (seconds, 60-86400).
    pub duplicate_window_secs: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            nats_url: None,
            stream: "LETHE_CASES".into(),
            subject_prefix: "lethe.cases".into(),
            duplicate_window_secs: 3600,
        }
    }
}

impl EventsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(u) = &self.nats_url
            && !(u.starts_with("nats://") || u.starts_with("tls://"))
        {
            return Err(
                "events.nats_url must start with nats:// or tls://, e.g. nats://127.0.0.1:4222"
                    .into(),
            );
        }
        let token = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.split('.').all(|p| {
                    !p.is_empty()
                        && p.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                })
        };
        if !token(&self.stream) || self.stream.contains('.') {
            return Err("events.stream must be 1-64 of A-Z, a-z, 0-9, '_', '-'".into());
        }
        if !token(&self.subject_prefix) {
            return Err("events.subject_prefix must be dot-separated tokens of A-Z, a-z, 0-9, '_', '-' (e.g. lethe.cases)".into());
        }
        if !(60..=86_400).contains(&self.duplicate_window_secs) {
            return Err("events.duplicate_window_secs must be between 60 and 86400; 3600 is the usual value".into());
        }
        Ok(())
    }
}

/// Data exports (copies of a subject's data).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportConfig {
    /// Days a download link lives (1-30).
    pub link_ttl_days: i64,
    /// Exports built at once (1-8).
    pub concurrency: usize,
    /// Attempts before an export fails (1-10).
    pub max_attempts: u32,
    /// Largest archive, in bytes (1 MiB - 1 TiB).
    pub max_bytes: u64,
}

impl Default for ExportConfig {
    fn default() -> Self {
        Self {
            link_ttl_days: lethe_domain::export::LinkTtl::DEFAULT_DAYS,
            concurrency: 1,
            max_attempts: 3,
            max_bytes: 10 * 1024 * 1024 * 1024,
        }
    }
}

impl ExportConfig {
    pub fn validate(&self) -> Result<lethe_domain::export::LinkTtl, String> {
        let ttl = lethe_domain::export::LinkTtl::days(self.link_ttl_days)?;
        if !(1..=8).contains(&self.concurrency) {
            return Err("export.concurrency must be between 1 and 8; 1 is the usual value".into());
        }
        if !(1..=10).contains(&self.max_attempts) {
            return Err(
                "export.max_attempts must be between 1 and 10; 3 is the usual value".into(),
            );
        }
        if !((1 << 20)..=(1u64 << 40)).contains(&self.max_bytes) {
            return Err(
                "export.max_bytes must be between 1048576 (1 MiB) and 1099511627776 (1 TiB)".into(),
            );
        }
        Ok(ttl)
    }
}

/// How account holders prove who they are.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// What the platform collected at registration: phone, id_number, name, face.
    pub platform_holds: Vec<String>,
    /// Enabled methods: sms, app, hotline, counter, face.
    pub methods: Vec<String>,
    /// Environment variable with the HS256 secret of the app's session tokens.
    pub session_secret_env: Option<String>,
    /// Or: the hex Ed25519 public key of the app's session tokens (EdDSA).
    pub session_public_key: Option<String>,
    /// Environment variable with the face provider's callback secret (whsec_...).
    pub face_secret_env: Option<String>,
    /// Environment variable with the carrier's callback secret (whsec_...),
    /// for signed carrier events at POST /v1/callbacks/carrier.
    pub carrier_secret_env: Option<String>,
    /// The platform's SMS gateway (signed webhook); required for sms outside the demo.
    pub sms_url: Option<String>,
    pub sms_secret_env: Option<String>,
    /// Codes sent per phone, and per client address, per hour at most.
    pub sms_per_phone_per_hour: u32,
    pub sms_per_client_per_hour: u32,
    /// The identity documents a counter agent may accept, by code (see
    /// [`COUNTER_DOCUMENTS`]).
    pub counter_documents: Vec<String>,
}

/// The identity documents a counter can check: code, Chinese name.
pub const COUNTER_DOCUMENTS: [(&str, &str); 5] = [
    ("id_card", "居民身份证"),
    ("passport", "护照"),
    ("hk_macao_permit", "港澳居民来往内地通行证"),
    ("taiwan_permit", "台湾居民来往大陆通行证"),
    ("foreign_permanent_residence", "外国人永久居留身份证"),
];

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            platform_holds: vec!["phone".into(), "id_number".into(), "name".into()],
            methods: vec![
                "sms".into(),
                "app".into(),
                "hotline".into(),
                "counter".into(),
            ],
            session_secret_env: None,
            session_public_key: None,
            face_secret_env: None,
            carrier_secret_env: None,
            sms_url: None,
            sms_secret_env: None,
            sms_per_phone_per_hour: 5,
            sms_per_client_per_hour: 20,
            counter_documents: COUNTER_DOCUMENTS
                .iter()
                .map(|(c, _)| (*c).to_owned())
                .collect(),
        }
    }
}

impl IdentityConfig {
    /// The configured counter document a form names (by code or by its
    /// Chinese name), as its code.
    pub fn counter_document(&self, named: &str) -> Option<&'static str> {
        let named = named.trim();
        COUNTER_DOCUMENTS
            .iter()
            .find(|(c, zh)| *c == named || *zh == named)
            .map(|(c, _)| *c)
            .filter(|c| self.counter_documents.iter().any(|d| d == c))
    }
}

impl IdentityConfig {
    /// Proportionality: a method may only ask for data the platform holds.
    pub fn validate(&self) -> Result<(), String> {
        const NEEDS: [(&str, &[&str]); 5] = [
            ("sms", &["phone"]),
            ("app", &[]),
            ("hotline", &["name", "id_number", "phone"]),
            ("counter", &["id_number"]),
            ("face", &["face"]),
        ];
        for d in &self.counter_documents {
            if !COUNTER_DOCUMENTS.iter().any(|(c, _)| c == d) {
                let known: Vec<&str> = COUNTER_DOCUMENTS.iter().map(|(c, _)| *c).collect();
                return Err(format!(
                    "identity.counter_documents: unknown document '{d}'; use {}",
                    known.join(", ")
                ));
            }
        }
        if self.methods.iter().any(|m| m == "counter") && self.counter_documents.is_empty() {
            return Err("identity.counter_documents is empty but identity.methods includes counter: list the documents a counter may accept".into());
        }
        for h in &self.platform_holds {
            if !["phone", "id_number", "name", "face", "email"].contains(&h.as_str()) {
                return Err(format!(
                    "identity.platform_holds: unknown item '{h}'; use phone, id_number, name, face or email"
                ));
            }
        }
        for m in &self.methods {
            let Some((_, needs)) = NEEDS.iter().find(|(n, _)| n == m) else {
                return Err(format!(
                    "identity.methods: unknown method '{m}'; use sms, app, hotline, counter or face"
                ));
            };
            for need in *needs {
                if !self.platform_holds.iter().any(|h| h == need) {
                    return Err(format!(
                        "identity.methods includes {m}, which needs the user's {need}, but identity.platform_holds does not list {need}: a channel may only ask for data the platform already holds (no new face scan where none was collected); remove {m} or list {need} if the platform really holds it"
                    ));
                }
            }
        }
        if self.methods.iter().any(|m| m == "face") && self.face_secret_env.is_none() {
            return Err("identity.methods includes face: set identity.face_secret_env to the variable holding the face provider's callback secret".into());
        }
        if self.methods.iter().any(|m| m == "app")
            && self.session_secret_env.is_some()
            && self.session_public_key.is_some()
        {
            return Err("identity: set either session_secret_env (HS256) or session_public_key (EdDSA), not both".into());
        }
        if !(1..=100).contains(&self.sms_per_phone_per_hour)
            || !(1..=10_000).contains(&self.sms_per_client_per_hour)
        {
            return Err("identity.sms_per_phone_per_hour must be 1-100 and identity.sms_per_client_per_hour 1-10000".into());
        }
        Ok(())
    }
}

fn default_tz() -> String {
    "Asia/Shanghai".into()
}

/// Days an identifier of an erased account stays reserved (the platform's
/// re-registration rule); 0 = may register again at once.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TombstoneConfig {
    pub phone_days: u32,
    pub email_days: u32,
    pub id_number_days: u32,
}

impl Default for TombstoneConfig {
    fn default() -> Self {
        Self {
            phone_days: 180,
            email_days: 0,
            id_number_days: 180,
        }
    }
}

impl TombstoneConfig {
    pub fn days(&self, kind: &str) -> u32 {
        match kind {
            "phone" => self.phone_days,
            "email" => self.email_days,
            "id_number" => self.id_number_days,
            _ => 0,
        }
    }
}

/// Where notifications (freeze, restore, deadlines...) are delivered.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationConfig {
    /// The platform's webhook endpoint; without it notifications stay in
    /// the console's list (GET /v1/notifications).
    pub url: Option<String>,
    /// The environment variable holding the signing secret (`whsec_...`).
    pub secret_env: String,
    pub max_attempts: u32,
    pub timeout_secs: u64,
}

impl Default for NotificationConfig {
    fn default() -> Self {
        Self {
            url: None,
            secret_env: "LETHE_WEBHOOK_SECRET".into(),
            max_attempts: 10,
            timeout_secs: 10,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub cooling_off_days: i64,
    pub review_required: bool,
    pub otp_ttl_minutes: i64,
    pub otp_max_attempts: u32,
    /// Minimum seconds between two codes for one case.
    pub otp_resend_seconds: i64,
    /// First lockout after too many wrong codes; doubles each time.
    pub otp_lockout_minutes: i64,
    /// cn, gdpr or ccpa.
    pub deadlines: String,
    /// Assurance level needed to cancel while holding money (1 = SMS code,
    /// 2 = face or an ID seen at a counter).
    pub positive_balance_level: u8,
    /// Asset kinds settled when the user chooses, before confirming (say, a
    /// balance that must be withdrawn first); every other kind is settled
    /// when the cooling-off period ends. Empty by default.
    pub settle_early: Vec<String>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            cooling_off_days: 7,
            review_required: false,
            otp_ttl_minutes: 10,
            otp_max_attempts: 5,
            otp_resend_seconds: 60,
            otp_lockout_minutes: 15,
            deadlines: "cn".into(),
            positive_balance_level: 2,
            settle_early: Vec::new(),
        }
    }
}

impl PolicyConfig {
    pub fn to_policy(&self) -> Result<Policy, String> {
        let p = Policy {
            cooling_off: SignedDuration::from_hours(24 * self.cooling_off_days.clamp(-1, 1000)),
            review_required: self.review_required,
            min_assurance: lethe_domain::AssuranceLevel::PHONE,
            otp_ttl: SignedDuration::from_mins(self.otp_ttl_minutes.clamp(0, 10_000)),
            otp_max_attempts: self.otp_max_attempts,
            deadlines: lethe_domain::deadline::Profile::parse(&self.deadlines)
                .ok_or("policy.deadlines must be cn, gdpr or ccpa")?,
            positive_balance_level: lethe_domain::AssuranceLevel::new(self.positive_balance_level)
                .map_err(
                    |_| "policy.positive_balance_level must be 1, 2 or 3; 2 is the usual value",
                )?,
            settle_early: self
                .settle_early
                .iter()
                .map(|k| {
                    lethe_domain::asset::AssetKind::parse(k).ok_or_else(|| {
                        format!(
                            "policy.settle_early: unknown asset kind {k:?}; use balance, points, coupon, gift_card, deposit, subscription, bank_card or third_party_binding"
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        p.validate().map_err(|e| e.to_string())?;
        if !(0..=3600).contains(&self.otp_resend_seconds) {
            return Err(
                "policy.otp_resend_seconds must be between 0 and 3600; 60 is the usual value"
                    .into(),
            );
        }
        if !(1..=1440).contains(&self.otp_lockout_minutes) {
            return Err(
                "policy.otp_lockout_minutes must be between 1 and 1440; 15 is the usual value"
                    .into(),
            );
        }
        Ok(p)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body accepted.
    pub body_bytes: usize,
    /// Requests per second per API key (token bucket)...
    pub rate_per_second: u32,
    /// ...with this burst.
    pub rate_burst: u32,
    /// A request taking longer is answered 503. A write it had already
    /// queued may still commit: retry with the same Idempotency-Key to get
    /// the outcome.
    pub request_timeout_secs: u64,
    /// Connections served at once.
    pub max_connections: usize,
    /// Reverse proxies in front of Lethe (at most 64 addresses): from a
    /// connection of one of them, the public routes (support requests,
    /// transparency) take the client's address from `X-Forwarded-For`
    /// (the rightmost address that is not a listed proxy). From any other
    /// connection the header is ignored.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_bytes: 64 * 1024,
            rate_per_second: 1000,
            rate_burst: 2000,
            request_timeout_secs: 30,
            max_connections: 1024,
            trusted_proxies: vec![],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Jobs run at once.
    pub concurrency: usize,
    /// A claimed job is someone else's after this long without a heartbeat.
    pub lease_secs: i64,
    /// Attempts before a job is dead and its case failed.
    pub max_attempts: u32,
    /// How often deadlines (cooling-off ends) are checked.
    pub timer_interval_ms: u64,
    /// Longest wait between retries.
    pub max_backoff_secs: i64,
    /// How often a tree head of the audit log is signed (when it grew).
    pub tree_head_interval_secs: u64,
    /// How long an HTTP system has to call back before the request is sent
    /// again (an attempt of the job).
    pub callback_wait_secs: i64,
    /// How often kept rows whose retention ended, and expired identifier
    /// tombstones, are purged.
    pub purge_interval_secs: u64,
    /// How often the data map is checked against each system's live
    /// schema (read-only) for drift.
    pub datamap_check_hours: u32,
    /// Values sampled per uncovered column by that check (0: by names
    /// only).
    pub datamap_check_sample: u32,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            lease_secs: 30,
            max_attempts: 8,
            timer_interval_ms: 1000,
            max_backoff_secs: 300,
            tree_head_interval_secs: 60,
            callback_wait_secs: 3600,
            purge_interval_secs: 300,
            datamap_check_hours: 24,
            datamap_check_sample: 20,
        }
    }
}

impl Config {
    /// Checks every bound and names the key and the fix.
    pub fn validate(&self) -> Result<Policy, String> {
        let policy = self.policy.to_policy()?;
        self.export.validate()?;
        self.events.validate()?;
        self.transparency.validate()?;
        self.support.validate()?;
        for (key, days) in [
            ("phone_days", self.tombstones.phone_days),
            ("email_days", self.tombstones.email_days),
            ("id_number_days", self.tombstones.id_number_days),
        ] {
            if days > 36_500 {
                return Err(format!(
                    "tombstones.{key} must be between 0 and 36500 (100 years); got {days}"
                ));
            }
        }
        self.store_url()?;
        self.store.validate()?;
        if !(1..=86_400).contains(&self.worker.purge_interval_secs) {
            return Err(
                "worker.purge_interval_secs must be between 1 and 86400; 300 is the usual value"
                    .into(),
            );
        }
        if !(10..=86_400).contains(&self.worker.callback_wait_secs) {
            return Err(
                "worker.callback_wait_secs must be between 10 and 86400; 3600 is the usual value"
                    .into(),
            );
        }
        if let Some(u) = &self.public_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(
                "public_url must start with http:// or https://, e.g. https://lethe.example.com"
                    .into(),
            );
        }
        let l = &self.limits;
        if !(1024..=16 * 1024 * 1024).contains(&l.body_bytes) {
            return Err(
                "limits.body_bytes must be between 1024 and 16777216; 65536 is the usual value"
                    .into(),
            );
        }
        if l.rate_per_second == 0 || l.rate_burst < l.rate_per_second.min(1) {
            return Err(
                "limits.rate_per_second must be at least 1 and limits.rate_burst at least 1".into(),
            );
        }
        if !(1..=600).contains(&l.request_timeout_secs) {
            return Err("limits.request_timeout_secs must be between 1 and 600".into());
        }
        if !(1..=100_000).contains(&l.max_connections) {
            return Err("limits.max_connections must be between 1 and 100000".into());
        }
        if self.limits.trusted_proxies.len() > 64 {
            return Err("limits.trusted_proxies lists at most 64 addresses".into());
        }
        if jiff::tz::TimeZone::get(&self.time_zone).is_err() {
            return Err(format!(
                "time_zone '{}' is not a known IANA time zone; write e.g. \"Asia/Shanghai\"",
                self.time_zone
            ));
        }
        self.identity.validate()?;
        let n = &self.notifications;
        if let Some(u) = &n.url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err("notifications.url must start with http:// or https://".into());
            }
            if std::env::var(&n.secret_env).is_err() {
                return Err(format!(
                    "notifications.secret_env names {}, which is not set; export the signing secret (whsec_...) there",
                    n.secret_env
                ));
            }
        }
        if !(1..=100).contains(&n.max_attempts) || !(1..=120).contains(&n.timeout_secs) {
            return Err(
                "notifications.max_attempts must be 1-100 and notifications.timeout_secs 1-120"
                    .into(),
            );
        }
        let w = &self.worker;
        if !(1..=64).contains(&w.concurrency) {
            return Err("worker.concurrency must be between 1 and 64; 4 is the usual value".into());
        }
        if !(1..=3600).contains(&w.lease_secs) {
            return Err(
                "worker.lease_secs must be between 1 and 3600; 30 is the usual value".into(),
            );
        }
        if !(1..=100).contains(&w.max_attempts) {
            return Err(
                "worker.max_attempts must be between 1 and 100; 8 is the usual value".into(),
            );
        }
        if !(10..=60_000).contains(&w.timer_interval_ms) {
            return Err("worker.timer_interval_ms must be between 10 and 60000".into());
        }
        if !(1..=86_400).contains(&w.tree_head_interval_secs) {
            return Err(
                "worker.tree_head_interval_secs must be between 1 and 86400; 60 is the usual value"
                    .into(),
            );
        }
        if !(1..=86_400).contains(&w.max_backoff_secs) {
            return Err("worker.max_backoff_secs must be between 1 and 86400".into());
        }
        if !(1..=720).contains(&w.datamap_check_hours) {
            return Err(
                "worker.datamap_check_hours must be between 1 and 720 (30 days); 24 checks daily"
                    .into(),
            );
        }
        if w.datamap_check_sample > 1000 {
            return Err(
                "worker.datamap_check_sample must be at most 1000 values per column".into(),
            );
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::IdentityConfig;

    #[test]
    fn settle_early_names_asset_kinds_and_says_which_exist() {
        let p = super::PolicyConfig {
            settle_early: vec!["balance".into(), "deposit".into()],
            ..Default::default()
        };
        assert_eq!(
            p.to_policy().unwrap().settle_early,
            [
                lethe_domain::asset::AssetKind::Balance,
                lethe_domain::asset::AssetKind::Deposit
            ]
        );
        let bad = super::PolicyConfig {
            settle_early: vec!["wallet".into()],
            ..Default::default()
        };
        let e = bad.to_policy().unwrap_err();
        assert!(
            e.contains("policy.settle_early")
                && e.contains("\"wallet\"")
                && e.contains("gift_card"),
            "{e}"
        );
        assert!(
            super::PolicyConfig::default()
                .to_policy()
                .unwrap()
                .settle_early
                .is_empty()
        );
    }

    #[test]
    fn a_face_scan_where_none_was_collected_is_refused() {
        let ok = IdentityConfig::default();
        assert!(ok.validate().is_ok());
        let face = IdentityConfig {
            methods: vec!["sms".into(), "face".into()],
            face_secret_env: Some("F".into()),
            ..IdentityConfig::default()
        };
        let e = face.validate().unwrap_err();
        assert!(
            e.contains("no new face scan where none was collected"),
            "{e}"
        );
        let held = IdentityConfig {
            platform_holds: vec!["phone".into(), "face".into()],
            ..face
        };
        assert!(held.validate().is_ok());
        let hotline = IdentityConfig {
            platform_holds: vec!["phone".into()],
            methods: vec!["hotline".into()],
            ..IdentityConfig::default()
        };
        assert!(
            hotline
                .validate()
                .unwrap_err()
                .contains("needs the user's name")
        );
    }
}
