//! The data map file (TOML). See `docs/datamap.md` for the reference.

use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;

/// A SQL identifier from the data map: letters, digits and `_`, not starting
/// with a digit, at most 63 bytes. Anything else is refused at parse time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ident(String);

impl Ident {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !s.as_bytes()[0].is_ascii_digit();
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "'{s}' is not a plain SQL identifier (use letters, digits and '_', at most 63 characters, not starting with a digit)"
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Double-quoted, as SQLite and PostgreSQL expect.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
    /// Quoted for a dialect: backticks on MySQL/MariaDB, double quotes
    /// elsewhere. The identifier holds no quote character (checked at parse).
    pub fn q(&self, d: Dialect) -> String {
        match d {
            Dialect::Mysql => format!("`{}`", self.0),
            _ => self.quoted(),
        }
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Ident {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ident::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The connector of a system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Sqlite,
    Postgres,
    Mysql,
    Redis,
    Http,
    Manual,
    /// A service that erases on the `erasure_requested` case event (NATS)
    /// and acknowledges through Lethe's API.
    Event,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
            Self::Redis => "redis",
            Self::Http => "http",
            Self::Manual => "manual",
            Self::Event => "event",
        }
    }
    /// The SQL dialect of a SQL system.
    pub fn dialect(self) -> Option<Dialect> {
        match self {
            Self::Sqlite => Some(Dialect::Sqlite),
            Self::Postgres => Some(Dialect::Postgres),
            Self::Mysql => Some(Dialect::Mysql),
            _ => None,
        }
    }
}

/// The SQL dialects Lethe speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
    Mysql,
}

impl Dialect {
    /// The `i`-th (1-based) bind placeholder.
    pub fn ph(self, i: usize) -> String {
        match self {
            Self::Mysql => "?".into(),
            _ => format!("${i}"),
        }
    }
}

/// One Redis entry of a system: where the subject's data sits. `{subject}`
/// in a template is replaced by the subject id (glob characters escaped in
/// patterns).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RedisEntry {
    /// Keys matching a pattern (SCAN MATCH), deleted whole.
    Key { pattern: String },
    /// A field of a hash.
    HashField { key: String, field: String },
    /// A member of a set.
    SetMember { key: String, member: String },
    /// A member of a sorted set.
    ZsetMember { key: String, member: String },
}

/// How an HTTP service reports its erasure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpMode {
    /// The answer to the request carries the result.
    Sync,
    /// The service accepts (202) and later calls Lethe back, signed.
    Callback,
}

/// What happens to a table's rows that belong to the subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Physical deletion of the rows.
    Delete,
    /// The rows stay; the `set_null` columns become NULL and the `hash`
    /// columns are replaced by a keyed hash (HMAC-SHA-256, hex) of their
    /// value, so equal values stay equal (for statistics) without being
    /// readable.
    Update {
        set_null: Vec<Ident>,
        hash: Vec<Ident>,
    },
    /// The rows are kept for a legal reason until the retention ends. The
    /// `set_null` and `hash` columns are pseudonymised at erasure (an
    /// accounting row keeps the amount, not the person's name); the rows
    /// are purged at expiry.
    Keep {
        legal_basis: String,
        retention_days: u32,
        set_null: Vec<Ident>,
        hash: Vec<Ident>,
        /// A stub: these rows stay only because the kept rows of this
        /// table reference them (legal basis and retention are that
        /// table's); purged with them.
        stub_for: Option<Ident>,
    },
    /// The rows stay; the subject's id inside the JSON owner column (at
    /// `owner_path`) is replaced by JSON null, or by its keyed hash.
    Redact { with_hash: bool },
}

impl Action {
    /// The columns pseudonymised in the rows that stay: (set to NULL,
    /// hashed).
    pub fn pseudonymised(&self) -> (&[Ident], &[Ident]) {
        match self {
            Self::Update { set_null, hash } | Self::Keep { set_null, hash, .. } => (set_null, hash),
            Self::Delete | Self::Redact { .. } => (&[], &[]),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Delete => "delete",
            Self::Update { hash, .. } if hash.is_empty() => "nullify",
            Self::Update { set_null, .. } if set_null.is_empty() => "hash",
            Self::Update { .. } => "update",
            Self::Keep { .. } => "keep",
            Self::Redact { .. } => "redact",
        }
    }
}

/// A path into a JSON document: keys from the root, each a plain name
/// (letters, digits, `_`), 1 to 8 of them. Written `a.b.c` in the map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath(Vec<String>);

impl JsonPath {
    pub fn parse(s: &str) -> Result<Self, String> {
        let keys: Vec<String> = s.split('.').map(str::to_owned).collect();
        let ok = (1..=8).contains(&keys.len())
            && keys.iter().all(|k| {
                !k.is_empty()
                    && k.len() <= 63
                    && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            });
        if ok {
            Ok(Self(keys))
        } else {
            Err(format!(
                "'{s}' is not a JSON path Lethe accepts: write keys separated by dots (letters, digits, '_'), at most 8"
            ))
        }
    }
    pub fn keys(&self) -> &[String] {
        &self.0
    }
    /// `$.a.b` (MySQL, SQLite).
    pub fn dollar(&self) -> String {
        format!("$.{}", self.0.join("."))
    }
    /// `{a,b}` (PostgreSQL's text-array path).
    pub fn braces(&self) -> String {
        format!("{{{}}}", self.0.join(","))
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// How an owner column holds the subject id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OwnerForm {
    /// The id as it is.
    #[default]
    Exact,
    /// Only its local part: `@alice:example.org` or `alice@example.org`
    /// is held as `alice`.
    LocalPart,
}

impl OwnerForm {
    /// The value an owner column of this form holds for a subject id.
    pub fn apply(self, id: &str) -> &str {
        match self {
            Self::Exact => id,
            Self::LocalPart => {
                let id = id.strip_prefix('@').unwrap_or(id);
                id.split([':', '@']).next().unwrap_or(id)
            }
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParentLink {
    pub table: Ident,
    /// Columns of this table...
    pub columns: Vec<Ident>,
    /// ...referencing these columns of the parent table.
    pub references: Vec<Ident>,
}

/// The other direction of a link: this table's rows are the ones that the
/// subject's rows in `table` reference (`customer.address_id -> address`).
/// They are erased after the referencing rows, and only where nothing else
/// references them any more (an address shared with a store stays).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefLink {
    /// The table whose rows hold the reference (mapped, the subject's).
    pub table: Ident,
    /// Columns of that table...
    pub columns: Vec<Ident>,
    /// ...referencing these columns of this table. Optional: when left out,
    /// they are read from the live schema's foreign key.
    #[serde(default)]
    pub references: Vec<Ident>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    name: Ident,
    owner: Option<Ident>,
    belongs_to: Option<ParentLink>,
    referenced_by: Option<RefLink>,
    action: String,
    #[serde(default)]
    columns: Vec<Ident>,
    #[serde(default)]
    set_null: Vec<Ident>,
    #[serde(default)]
    hash: Vec<Ident>,
    legal_basis: Option<String>,
    retention_days: Option<u32>,
    /// keep: the kept table whose rows reference these (a stub).
    stub_for: Option<Ident>,
    /// owner: the subject id sits inside this JSON column, at this path.
    owner_path: Option<String>,
    /// owner: "exact" (default) or "local_part".
    owner_form: Option<String>,
    /// redact: "null" (default) or "hash".
    redact_with: Option<String>,
    /// What the table holds, as users read it (pages, receipts).
    title_zh: Option<String>,
    title_en: Option<String>,
    /// keep: the legal basis in each language (else `legal_basis`).
    legal_basis_zh: Option<String>,
    legal_basis_en: Option<String>,
}

/// How a table is named to users, per language: what it holds and, when
/// kept, why. Each falls back to the table's name and `legal_basis`.
pub use lethe_domain::labels::TableLabels as Labels;

/// The longest title or legal basis a data map may give.
pub const MAX_LABEL_CHARS: usize = 300;

#[derive(Debug, Clone)]
pub struct Table {
    pub name: Ident,
    pub ownership: Ownership,
    pub action: Action,
    /// With `owner`: the subject id is inside this JSON column at this path.
    pub owner_path: Option<JsonPath>,
    /// With `owner`: how the column holds the id.
    pub owner_form: OwnerForm,
    /// Its names for users, per language.
    pub labels: Labels,
}

impl Table {
    /// What the table holds, for a reader of `zh` (Chinese) or English.
    pub fn title(&self, zh: bool) -> &str {
        let l = &self.labels;
        let t = if zh { &l.title_zh } else { &l.title_en };
        t.as_deref().unwrap_or(self.name.as_str())
    }

    /// Why a kept table is kept, in the reader's language.
    pub fn legal_basis(&self, zh: bool) -> Option<&str> {
        let Action::Keep { legal_basis, .. } = &self.action else {
            return None;
        };
        let l = &self.labels;
        let t = if zh {
            &l.legal_basis_zh
        } else {
            &l.legal_basis_en
        };
        Some(t.as_deref().unwrap_or(legal_basis))
    }
}

#[derive(Debug, Clone)]
pub enum Ownership {
    /// A column holding the subject id.
    Column(Ident),
    /// Rows belong to the subject through a foreign key to a parent table.
    Parent(ParentLink),
    /// Rows the subject's rows of another table reference.
    Referenced(RefLink),
}

impl Ownership {
    /// The mapped table this one reaches the subject through, if any.
    pub fn via(&self) -> Option<&Ident> {
        match self {
            Self::Column(_) => None,
            Self::Parent(p) => Some(&p.table),
            Self::Referenced(r) => Some(&r.table),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSystem {
    name: Ident,
    kind: Kind,
    /// Name of the environment variable holding the connection URL. Secrets
    /// never sit in the data map itself.
    #[serde(default)]
    url_env: String,
    #[serde(default = "default_conns")]
    max_connections: u32,
    /// Subjects erased per statement (set-based batches), 1..=1000.
    #[serde(default = "default_batch")]
    batch_size: u32,
    /// Erasure batches running at once against this system, 1..=16.
    #[serde(default = "default_concurrency")]
    concurrency: u32,
    /// SQL: the environment variable holding the key of `hash` columns.
    hash_key_env: Option<String>,
    /// HTTP: the environment variable holding the signing secret.
    secret_env: Option<String>,
    /// HTTP: sync or callback.
    mode: Option<HttpMode>,
    /// HTTP: request timeout.
    timeout_ms: Option<u64>,
    /// Redis entries.
    #[serde(default)]
    keys: Vec<RedisEntry>,
    /// Manual task: what the operator must do.
    instructions: Option<String>,
    /// Manual task: days until it is due.
    due_days: Option<u32>,
    /// A query returning the subject's registered phone, `$1` = subject id.
    phone_query: Option<String>,
    /// Queries returning the subject's identifiers (phone, email,
    /// id_number), kept as keyed-hash tombstones after erasure.
    #[serde(default)]
    identities: std::collections::BTreeMap<String, String>,
    /// A query returning the accounts bound to a phone number, `$1` = the
    /// number (for recycled-number events).
    accounts_by_phone: Option<String>,
    /// A query returning the accounts whose real-name identity has this ID
    /// number, `$1` = the number (for identity claims).
    accounts_by_id_number: Option<String>,
    #[serde(default)]
    tables: Vec<RawTable>,
    /// Tables and columns declared not personal data, each with its reason.
    #[serde(default)]
    ignore: Vec<Ignore>,
    /// PostgreSQL: materialised views refreshed after each erasure, so
    /// their copies of erased rows go too.
    #[serde(default)]
    refresh: Vec<Ident>,
}

/// A table (or one column of it) the data map declares not personal data,
/// and why: `datamap check` lists its findings as accepted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ignore {
    pub table: Ident,
    pub column: Option<Ident>,
    pub reason: String,
}

fn default_conns() -> u32 {
    4
}
fn default_batch() -> u32 {
    500
}
fn default_concurrency() -> u32 {
    2
}

#[derive(Debug, Clone)]
pub struct System {
    pub name: Ident,
    pub kind: Kind,
    pub url_env: String,
    pub max_connections: u32,
    pub batch_size: u32,
    pub concurrency: u32,
    pub hash_key_env: Option<String>,
    pub secret_env: Option<String>,
    pub mode: HttpMode,
    pub timeout_ms: u64,
    pub keys: Vec<RedisEntry>,
    pub instructions: Option<String>,
    pub due_days: u32,
    pub phone_query: Option<String>,
    pub identities: std::collections::BTreeMap<String, String>,
    pub accounts_by_phone: Option<String>,
    pub accounts_by_id_number: Option<String>,
    pub tables: Vec<Table>,
    pub ignore: Vec<Ignore>,
    /// Materialised views refreshed after each erasure (PostgreSQL).
    pub refresh: Vec<Ident>,
}

/// The identifier kinds that can be tombstoned.
pub const IDENTIFIER_KINDS: [&str; 5] = ["phone", "email", "id_number", "name", "device_id"];

/// A SQL rule that blocks the cancellation while it returns rows. Each row's
/// first column is a reference shown to the user (an order number).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockerRule {
    pub system: Ident,
    pub code: Ident,
    /// What kind of condition this is; some are not allowed (see
    /// [`BLOCKER_CATEGORIES`] and `lethe policy check`).
    pub category: String,
    pub query: String,
    pub message_zh: String,
    pub message_en: String,
}

/// Blocker categories a platform may use.
pub const BLOCKER_CATEGORIES: [&str; 5] = [
    "unfinished_order",
    "open_dispute",
    "debt",
    "abnormal_status",
    "last_owner",
];

/// Conditions that are not allowed as blockers, and why.
pub const FORBIDDEN_BLOCKERS: [(&str, &str); 2] = [
    (
        "extra_identity",
        "asking for more identity data than was collected at registration is not allowed as a condition for cancelling",
    ),
    (
        "unrelated_product",
        "requiring unrelated products or services to be cancelled too is not allowed as a condition for cancelling",
    ),
];

/// A SQL rule listing assets of one kind. Columns by name: `id` (required),
/// `label`, `amount_minor`, `quantity`, `period_start`, `period_end` (dates),
/// `auto_renew` (0/1).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetRule {
    pub system: Ident,
    pub kind: String,
    pub query: String,
}

/// A check provider: the platform's signed HTTP endpoint that returns a
/// subject's blockers and assets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    pub name: Ident,
    /// Environment variable holding the endpoint URL.
    pub url_env: String,
    /// Environment variable holding the shared signing secret (whsec_...).
    pub secret_env: String,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Environment variable holding the endpoint that settles this
    /// provider's assets (signed with the same secret); without it they go
    /// to the data map's [settlement] endpoint.
    pub settlement_url_env: Option<String>,
}

fn default_timeout() -> u64 {
    3000
}

/// Where settlement instructions go: the platform's signed endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettlementTarget {
    pub url_env: String,
    pub secret_env: String,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

/// A consequence statement. With a `query`, it appears only when the query
/// returns a row, and `{value}` in the texts is replaced by its first column.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsequenceRule {
    pub id: Ident,
    #[serde(default = "one")]
    pub version: u32,
    pub system: Option<Ident>,
    pub query: Option<String>,
    pub text_zh: String,
    pub text_en: String,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMap {
    #[serde(default)]
    systems: Vec<RawSystem>,
    #[serde(default)]
    blockers: Vec<BlockerRule>,
    #[serde(default)]
    consequences: Vec<ConsequenceRule>,
    #[serde(default)]
    assets: Vec<AssetRule>,
    #[serde(default)]
    providers: Vec<Provider>,
    settlement: Option<SettlementTarget>,
    #[serde(default)]
    purge_rules: Vec<PurgeRule>,
}

/// A rule selecting accounts to purge (`POST /v1/purges` with `rule`):
/// one SELECT without parameters whose first column is the subject id,
/// e.g. accounts not signed in for 3 years.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRule {
    pub name: Ident,
    pub system: Ident,
    pub query: String,
    /// Run it on a schedule: every this many days (1 to 365), the first
    /// time that long after the rule appears. Needs `legal_basis` and
    /// `platform`.
    #[serde(default)]
    pub every_days: Option<u32>,
    /// The legal basis of the scheduled purges (10 to 500 characters).
    #[serde(default)]
    pub legal_basis: Option<String>,
    /// The platform (API key name) the scheduled purges belong to: their
    /// notices, report and audit events.
    #[serde(default)]
    pub platform: Option<String>,
    /// Days each account is told before a scheduled purge erases it (0 to
    /// 90).
    #[serde(default)]
    pub notice_days: u32,
}

/// Purge rules one data map may hold.
pub const MAX_PURGE_RULES: usize = 50;

#[derive(Debug, Clone)]
pub struct DataMap {
    pub systems: Vec<System>,
    pub blockers: Vec<BlockerRule>,
    pub consequences: Vec<ConsequenceRule>,
    pub assets: Vec<AssetRule>,
    pub providers: Vec<Provider>,
    pub settlement: Option<SettlementTarget>,
    pub purge_rules: Vec<PurgeRule>,
}

#[derive(Debug, thiserror::Error)]
pub enum DataMapError {
    #[error("data map: {0}")]
    Syntax(String),
    #[error("data map: {at}: {problem}; fix: {fix}")]
    Invalid {
        at: String,
        problem: String,
        fix: String,
    },
    #[error("data map: cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn invalid(
    at: impl Into<String>,
    problem: impl Into<String>,
    fix: impl Into<String>,
) -> DataMapError {
    DataMapError::Invalid {
        at: at.into(),
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// Upper bounds, so that a data map cannot ask for unbounded work.
pub const MAX_SYSTEMS: usize = 64;
pub const MAX_TABLES_PER_SYSTEM: usize = 512;
pub const MAX_RULES: usize = 256;
pub const MAX_QUERY_LEN: usize = 4096;

impl DataMap {
    pub fn load(path: &std::path::Path) -> Result<Self, DataMapError> {
        let text = std::fs::read_to_string(path).map_err(|source| DataMapError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, DataMapError> {
        let raw: RawMap = toml::from_str(text).map_err(|e| DataMapError::Syntax(e.to_string()))?;
        if raw.systems.len() > MAX_SYSTEMS {
            return Err(invalid(
                "systems",
                format!("more than {MAX_SYSTEMS} systems"),
                "split the data map",
            ));
        }
        if raw.blockers.len() + raw.consequences.len() > MAX_RULES {
            return Err(invalid(
                "blockers/consequences",
                format!("more than {MAX_RULES} rules"),
                "merge rules",
            ));
        }
        let mut names = HashSet::new();
        let mut systems = Vec::new();
        for s in raw.systems {
            let at = format!("systems.{}", s.name);
            if !names.insert(s.name.clone()) {
                return Err(invalid(
                    &at,
                    "the system name is used twice",
                    "give each system its own name",
                ));
            }
            let is_env = |v: &str| {
                !v.is_empty()
                    && v.len() <= 64
                    && v.bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            };
            if !matches!(s.kind, Kind::Manual | Kind::Event) && !is_env(&s.url_env) {
                return Err(invalid(
                    format!("{at}.url_env"),
                    "must name an environment variable (A-Z, 0-9, _)",
                    "write e.g. url_env = \"DEMO_MART_URL\" and export that variable",
                ));
            }
            for (key, v) in [
                ("hash_key_env", &s.hash_key_env),
                ("secret_env", &s.secret_env),
            ] {
                if let Some(v) = v
                    && !is_env(v)
                {
                    return Err(invalid(
                        format!("{at}.{key}"),
                        "must name an environment variable (A-Z, 0-9, _)",
                        "write the variable's name, e.g. \"SHOP_HASH_KEY\", and export it",
                    ));
                }
            }
            if !(1..=1000).contains(&s.batch_size) {
                return Err(invalid(
                    format!("{at}.batch_size"),
                    "must be between 1 and 1000",
                    "use 500 unless statements get too large for the database",
                ));
            }
            if !(1..=16).contains(&s.concurrency) {
                return Err(invalid(
                    format!("{at}.concurrency"),
                    "must be between 1 and 16",
                    "use 2 unless the system can take more parallel erasures",
                ));
            }
            let timeout_ms = s.timeout_ms.unwrap_or(10_000);
            if !(100..=60_000).contains(&timeout_ms) {
                return Err(invalid(
                    format!("{at}.timeout_ms"),
                    "must be between 100 and 60000",
                    "use 10000 unless the service is slow",
                ));
            }
            check_kind_fields(&at, &s)?;
            if s.max_connections == 0 || s.max_connections > 64 {
                return Err(invalid(
                    format!("{at}.max_connections"),
                    "must be between 1 and 64",
                    "use 4 unless the system is large",
                ));
            }
            if s.tables.len() > MAX_TABLES_PER_SYSTEM {
                return Err(invalid(
                    &at,
                    format!("more than {MAX_TABLES_PER_SYSTEM} tables"),
                    "split the system",
                ));
            }
            if let Some(q) = &s.phone_query {
                check_query(&format!("{at}.phone_query"), q)?;
            }
            if let Some(q) = &s.accounts_by_phone {
                check_query(&format!("{at}.accounts_by_phone"), q)?;
            }
            if let Some(q) = &s.accounts_by_id_number {
                check_query(&format!("{at}.accounts_by_id_number"), q)?;
            }
            for (kind, q) in &s.identities {
                if !IDENTIFIER_KINDS.contains(&kind.as_str()) {
                    return Err(invalid(
                        format!("{at}.identities.{kind}"),
                        "unknown identifier kind",
                        "use phone, email, id_number, name or device_id",
                    ));
                }
                check_query(&format!("{at}.identities.{kind}"), q)?;
            }
            let mut tables: Vec<Table> = Vec::new();
            let mut seen = HashSet::new();
            for t in s.tables {
                let tat = format!("{at}.tables.{}", t.name);
                if !seen.insert(t.name.clone()) {
                    return Err(invalid(
                        &tat,
                        "the table is listed twice",
                        "merge the two entries",
                    ));
                }
                for (key, v) in [
                    ("title_zh", &t.title_zh),
                    ("title_en", &t.title_en),
                    ("legal_basis_zh", &t.legal_basis_zh),
                    ("legal_basis_en", &t.legal_basis_en),
                ] {
                    if let Some(v) = v
                        && (v.trim().is_empty() || v.chars().count() > MAX_LABEL_CHARS)
                    {
                        return Err(invalid(
                            format!("{tat}.{key}"),
                            format!("must be 1 to {MAX_LABEL_CHARS} characters"),
                            "shorten it, or remove the key to use the table's name",
                        ));
                    }
                }
                if t.action != "keep" && (t.legal_basis_zh.is_some() || t.legal_basis_en.is_some())
                {
                    return Err(invalid(
                        &tat,
                        "legal_basis_zh and legal_basis_en go with action = \"keep\"",
                        "remove them, or keep the table",
                    ));
                }
                let labels = Labels {
                    title_zh: t.title_zh.clone(),
                    title_en: t.title_en.clone(),
                    legal_basis_zh: t.legal_basis_zh.clone(),
                    legal_basis_en: t.legal_basis_en.clone(),
                };
                let ownership = match (t.owner, t.belongs_to, t.referenced_by) {
                    (Some(c), None, None) => Ownership::Column(c),
                    (None, Some(p), None) => {
                        if p.columns.is_empty() || p.columns.len() != p.references.len() {
                            return Err(invalid(
                                format!("{tat}.belongs_to"),
                                "columns and references must be non-empty and of the same length",
                                "list each foreign-key column and the parent column it references, in order",
                            ));
                        }
                        Ownership::Parent(p)
                    }
                    (None, None, Some(r)) => {
                        if r.columns.is_empty()
                            || (!r.references.is_empty() && r.columns.len() != r.references.len())
                        {
                            return Err(invalid(
                                format!("{tat}.referenced_by"),
                                "columns must be non-empty, and references (when given) of the same length",
                                format!(
                                    "list the columns of {} that hold the reference, e.g. referenced_by = {{ table = \"{}\", columns = [\"{}_id\"] }}",
                                    r.table, r.table, t.name
                                ),
                            ));
                        }
                        if r.table == t.name {
                            return Err(invalid(
                                format!("{tat}.referenced_by"),
                                "a table cannot be referenced by itself",
                                "use owner or belongs_to for a self-referencing table",
                            ));
                        }
                        Ownership::Referenced(r)
                    }
                    _ => {
                        return Err(invalid(
                            &tat,
                            "needs exactly one of `owner`, `belongs_to` or `referenced_by`",
                            "set owner = \"user_id\" for a column holding the subject id, belongs_to = { table = ..., columns = [...], references = [...] } for rows that reference the subject's rows, or referenced_by = { table = ..., columns = [...] } for rows the subject's rows reference (their own address)",
                        ));
                    }
                };
                let owner_path = match (&t.owner_path, &ownership) {
                    (None, _) => None,
                    (Some(p), Ownership::Column(_)) => Some(JsonPath::parse(p).map_err(|e| {
                        invalid(
                            format!("{tat}.owner_path"),
                            e,
                            "write e.g. owner_path = \"content.sender\"",
                        )
                    })?),
                    (Some(_), _) => {
                        return Err(invalid(
                            format!("{tat}.owner_path"),
                            "owner_path goes with owner (the JSON column)",
                            "write owner = \"<json column>\" and owner_path = \"key.key\"",
                        ));
                    }
                };
                let owner_form = match (t.owner_form.as_deref(), &ownership) {
                    (None | Some("exact"), _) => OwnerForm::Exact,
                    (Some("local_part"), Ownership::Column(_)) => OwnerForm::LocalPart,
                    (Some(other), _) => {
                        return Err(invalid(
                            format!("{tat}.owner_form"),
                            format!("'{other}' is not an owner form here"),
                            "use owner_form = \"exact\" or \"local_part\", with owner",
                        ));
                    }
                };
                // Keys of another action are refused, not ignored.
                let stray: Vec<&str> = [
                    ("legal_basis", t.legal_basis.is_some() && t.action != "keep"),
                    (
                        "retention_days",
                        t.retention_days.is_some() && t.action != "keep",
                    ),
                    ("stub_for", t.stub_for.is_some() && t.action != "keep"),
                    (
                        "columns",
                        !t.columns.is_empty() && !matches!(t.action.as_str(), "nullify" | "hash"),
                    ),
                    (
                        "set_null",
                        !t.set_null.is_empty()
                            && !matches!(t.action.as_str(), "update" | "hash" | "keep"),
                    ),
                    (
                        "hash",
                        !t.hash.is_empty()
                            && !matches!(t.action.as_str(), "update" | "nullify" | "keep"),
                    ),
                ]
                .into_iter()
                .filter(|(_, bad)| *bad)
                .map(|(k, _)| k)
                .collect();
                let known = matches!(
                    t.action.as_str(),
                    "delete" | "nullify" | "hash" | "update" | "keep" | "redact"
                );
                if let (true, Some(k)) = (known, stray.first()) {
                    return Err(invalid(
                        format!("{tat}.{k}"),
                        format!("{k} has no meaning with action = \"{}\"", t.action),
                        "remove it, or choose the action it belongs to (legal_basis, retention_days and stub_for go with keep; columns with nullify or hash; set_null and hash with update or keep)",
                    ));
                }
                if matches!(ownership, Ownership::Referenced(_)) && t.action != "delete" {
                    return Err(invalid(
                        format!("{tat}.action"),
                        "a referenced_by table is found through the rows that reference it, which are erased first, so only delete can reach it",
                        "use action = \"delete\" (rows still referenced by others stay), or map the table by an owner column",
                    ));
                }
                if t.redact_with.is_some() && t.action != "redact" {
                    return Err(invalid(
                        format!("{tat}.redact_with"),
                        "redact_with goes with action = \"redact\"",
                        "remove it, or use action = \"redact\"",
                    ));
                }
                let action = match t.action.as_str() {
                    "delete" => Action::Delete,
                    "redact" => {
                        if owner_path.is_none() {
                            return Err(invalid(
                                &tat,
                                "redact replaces the subject's id inside a JSON column, so it needs owner and owner_path",
                                "write owner = \"<json column>\", owner_path = \"key.key\" (or use delete/update for plain columns)",
                            ));
                        }
                        let with_hash = match t.redact_with.as_deref() {
                            None | Some("null") => false,
                            Some("hash") if s.hash_key_env.is_some() => true,
                            Some("hash") => {
                                return Err(invalid(
                                    &tat,
                                    "redact_with = \"hash\" needs the system's hash key",
                                    "add hash_key_env = \"...\" to the system",
                                ));
                            }
                            Some(other) => {
                                return Err(invalid(
                                    format!("{tat}.redact_with"),
                                    format!("unknown value '{other}'"),
                                    "use \"null\" or \"hash\"",
                                ));
                            }
                        };
                        Action::Redact { with_hash }
                    }
                    "nullify" | "hash" | "update" => {
                        let (set_null, hash) = match t.action.as_str() {
                            "nullify" => (t.columns, t.hash),
                            "hash" => (t.set_null, t.columns),
                            _ => (t.set_null, t.hash),
                        };
                        if set_null.is_empty() && hash.is_empty() {
                            return Err(invalid(
                                &tat,
                                format!("{} needs the columns to change", t.action),
                                "add columns = [\"...\"] (nullify, hash) or set_null = [...] and hash = [...] (update)",
                            ));
                        }
                        if !hash.is_empty() && s.hash_key_env.is_none() {
                            return Err(invalid(
                                &tat,
                                "hash columns need the system's hash key",
                                "add hash_key_env = \"...\" to the system and export a random key of at least 32 bytes (hex) in it",
                            ));
                        }
                        if let Some(c) = set_null.iter().find(|c| hash.contains(c)) {
                            return Err(invalid(
                                &tat,
                                format!("column {c} is both set to NULL and hashed"),
                                "choose one action per column",
                            ));
                        }
                        Action::Update { set_null, hash }
                    }
                    "keep" => {
                        if let Some(c) = t.set_null.iter().find(|c| t.hash.contains(c)) {
                            return Err(invalid(
                                &tat,
                                format!("column {c} is both set to NULL and hashed"),
                                "choose one action per column",
                            ));
                        }
                        if !t.hash.is_empty() && s.hash_key_env.is_none() {
                            return Err(invalid(
                                &tat,
                                "hash columns need the system's hash key",
                                "add hash_key_env = \"...\" to the system and export a random key of at least 32 bytes (hex) in it",
                            ));
                        }
                        // The columns that find the rows again at expiry
                        // must stay as they are.
                        let ties: Vec<&Ident> = match &ownership {
                            Ownership::Column(c) => vec![c],
                            Ownership::Parent(p) => p.columns.iter().collect(),
                            Ownership::Referenced(r) => r.references.iter().collect(),
                        };
                        if let Some(c) = t.set_null.iter().chain(&t.hash).find(|c| ties.contains(c))
                        {
                            return Err(invalid(
                                &tat,
                                format!(
                                    "column {c} ties the kept rows to the subject; changing it now would lose them before the purge"
                                ),
                                "pseudonymise the personal columns only; the rows are deleted whole when the retention ends",
                            ));
                        }
                        match (t.stub_for, t.legal_basis, t.retention_days) {
                            (Some(of), None, None) => Action::Keep {
                                // Filled from the kept table below.
                                legal_basis: String::new(),
                                retention_days: 0,
                                set_null: t.set_null,
                                hash: t.hash,
                                stub_for: Some(of),
                            },
                            (Some(_), _, _) => {
                                return Err(invalid(
                                    &tat,
                                    "a stub takes its legal basis and retention from the kept table it serves",
                                    "remove legal_basis and retention_days from this table",
                                ));
                            }
                            (None, Some(b), Some(d))
                                if !b.trim().is_empty() && d > 0 && d <= 36_500 =>
                            {
                                Action::Keep {
                                    legal_basis: b,
                                    retention_days: d,
                                    set_null: t.set_null,
                                    hash: t.hash,
                                    stub_for: None,
                                }
                            }
                            _ => {
                                return Err(invalid(
                                    &tat,
                                    "a kept table must name its legal basis and a retention period",
                                    "add legal_basis = \"...\" and retention_days = 1..36500 (or stub_for = \"<kept table>\" for rows kept only because kept rows reference them)",
                                ));
                            }
                        }
                    }
                    other => {
                        return Err(invalid(
                            format!("{tat}.action"),
                            format!("unknown action '{other}'"),
                            "use delete, nullify, hash, update, keep or redact",
                        ));
                    }
                };
                tables.push(Table {
                    name: t.name,
                    ownership,
                    action,
                    owner_path,
                    owner_form,
                    labels,
                });
            }
            if !tables.is_empty() && s.kind.dialect().is_none() {
                return Err(invalid(
                    &at,
                    format!("a {} system has no tables", s.kind.as_str()),
                    "remove the [[systems.tables]] entries, or use kind = sqlite, postgres or mysql",
                ));
            }
            // Stubs take the legal basis and retention of the kept table
            // whose rows reference them.
            let kept: Vec<(Ident, String, u32)> = tables
                .iter()
                .filter_map(|t| match &t.action {
                    Action::Keep {
                        legal_basis,
                        retention_days,
                        stub_for: None,
                        ..
                    } => Some((t.name.clone(), legal_basis.clone(), *retention_days)),
                    _ => None,
                })
                .collect();
            for t in &mut tables {
                if let Action::Keep {
                    legal_basis,
                    retention_days,
                    stub_for: Some(of),
                    ..
                } = &mut t.action
                {
                    let Some((_, b, d)) = kept.iter().find(|(n, _, _)| n == of) else {
                        return Err(invalid(
                            format!("{at}.tables.{}.stub_for", t.name),
                            format!("'{of}' is not a kept table of this system"),
                            "name the kept table (action = \"keep\" with a legal basis) whose rows reference this one",
                        ));
                    };
                    *legal_basis = b.clone();
                    *retention_days = *d;
                }
            }
            // A kept table outlives the erasure, so the rows that tie it to
            // the subject must outlive it too (for the purge at expiry).
            for t in &tables {
                if let (Action::Keep { .. }, Some(via)) = (&t.action, t.ownership.via())
                    && tables
                        .iter()
                        .any(|o| &o.name == via && !matches!(o.action, Action::Keep { .. }))
                {
                    return Err(invalid(
                        format!("{at}.tables.{}", t.name),
                        format!(
                            "a kept table reaches the subject through '{via}', which is erased, so its rows could not be found again when the retention ends",
                        ),
                        "give the kept table its own owner column, or keep that table too",
                    ));
                }
            }
            // Links must name mapped tables of the same system.
            for t in &tables {
                let (Some(via), key) = (
                    t.ownership.via(),
                    match t.ownership {
                        Ownership::Referenced(_) => "referenced_by",
                        _ => "belongs_to",
                    },
                ) else {
                    continue;
                };
                let Some(other) = tables.iter().find(|o| &o.name == via) else {
                    return Err(invalid(
                        format!("{at}.tables.{}.{key}", t.name),
                        format!("table '{via}' is not in the data map"),
                        "map that table too, or use `owner` if this table holds the subject id itself",
                    ));
                };
                // Rows under a referenced table may be shared with other
                // accounts; what hangs below them is not the subject's.
                if matches!(other.ownership, Ownership::Referenced(_))
                    && matches!(t.ownership, Ownership::Parent(_))
                {
                    return Err(invalid(
                        format!("{at}.tables.{}.belongs_to", t.name),
                        format!(
                            "'{via}' is mapped with referenced_by: its rows may be shared with other accounts, so rows belonging to them are not the subject's"
                        ),
                        format!(
                            "tie {} to the subject through another table, or map it with referenced_by too",
                            t.name
                        ),
                    ));
                }
            }
            if !s.refresh.is_empty() && s.kind != Kind::Postgres {
                return Err(invalid(
                    format!("{at}.refresh"),
                    "materialised views exist only on PostgreSQL",
                    "remove refresh, or use kind = \"postgres\"",
                ));
            }
            for ig in &s.ignore {
                let iat = format!("{at}.ignore.{}", ig.table);
                if ig.reason.trim().chars().count() < 10 {
                    return Err(invalid(
                        &iat,
                        "an ignored table or column needs the reason it holds no personal data",
                        "add reason = \"...\" (e.g. \"store branches: business addresses, no person\")",
                    ));
                }
                if tables.iter().any(|t| t.name == ig.table) && ig.column.is_none() {
                    return Err(invalid(
                        &iat,
                        "the table is both mapped and ignored",
                        "remove one of the two, or ignore only a column (column = \"...\")",
                    ));
                }
            }
            systems.push(System {
                name: s.name,
                kind: s.kind,
                url_env: s.url_env,
                max_connections: s.max_connections,
                batch_size: s.batch_size,
                concurrency: s.concurrency,
                hash_key_env: s.hash_key_env,
                secret_env: s.secret_env,
                mode: s.mode.unwrap_or(HttpMode::Sync),
                timeout_ms,
                keys: s.keys,
                instructions: s.instructions,
                due_days: s.due_days.unwrap_or(5),
                phone_query: s.phone_query,
                identities: s.identities,
                accounts_by_phone: s.accounts_by_phone,
                accounts_by_id_number: s.accounts_by_id_number,
                tables,
                ignore: s.ignore,
                refresh: s.refresh,
            });
        }
        for (i, b) in raw.blockers.iter().enumerate() {
            let at = format!("blockers[{i}] ({})", b.code);
            if !names.contains(&b.system) {
                return Err(invalid(
                    format!("{at}.system"),
                    format!("unknown system '{}'", b.system),
                    "name a system declared under [[systems]]",
                ));
            }
            check_query(&format!("{at}.query"), &b.query)?;
            if let Some((_, why)) = FORBIDDEN_BLOCKERS.iter().find(|(c, _)| *c == b.category) {
                return Err(invalid(
                    format!("{at}.category"),
                    format!("'{}': {why}", b.category),
                    "remove this blocker",
                ));
            }
            if !BLOCKER_CATEGORIES.contains(&b.category.as_str()) {
                return Err(invalid(
                    format!("{at}.category"),
                    format!("unknown category '{}'", b.category),
                    "use one of unfinished_order, open_dispute, debt, abnormal_status, last_owner",
                ));
            }
        }
        if raw.purge_rules.len() > MAX_PURGE_RULES {
            return Err(invalid(
                "purge_rules",
                format!("more than {MAX_PURGE_RULES} rules"),
                "merge rules",
            ));
        }
        for (i, r) in raw.purge_rules.iter().enumerate() {
            let at = format!("purge_rules[{i}] ({})", r.name);
            let is_sql = systems
                .iter()
                .any(|s| s.name == r.system && s.kind.dialect().is_some());
            if !is_sql {
                return Err(invalid(
                    format!("{at}.system"),
                    format!("'{}' is not a SQL system of this map", r.system),
                    "name a system of kind sqlite, postgres or mysql",
                ));
            }
            let t = r.query.trim_start().to_ascii_lowercase();
            if r.query.len() > MAX_QUERY_LEN
                || !(t.starts_with("select") || t.starts_with("with"))
                || r.query.contains(';')
                || r.query.contains('$')
            {
                return Err(invalid(
                    format!("{at}.query"),
                    "must be one SELECT without parameters or ';', its first column the subject id",
                    "e.g. SELECT id FROM users WHERE last_login_at < CURRENT_DATE - INTERVAL '3 years'",
                ));
            }
            if let Some(d) = r.every_days {
                if !(1..=365).contains(&d) {
                    return Err(invalid(
                        format!("{at}.every_days"),
                        "must be 1 to 365",
                        "e.g. every_days = 30",
                    ));
                }
                let basis = r
                    .legal_basis
                    .as_deref()
                    .map_or(0, |b| b.trim().chars().count());
                if !(10..=500).contains(&basis) {
                    return Err(invalid(
                        format!("{at}.legal_basis"),
                        "a scheduled rule needs its legal basis (10 to 500 characters)",
                        "e.g. legal_basis = \"PIPL Art. 47: accounts dormant for 3 years\"",
                    ));
                }
                if r.platform
                    .as_deref()
                    .is_none_or(|p| !(1..=64).contains(&p.len()))
                {
                    return Err(invalid(
                        format!("{at}.platform"),
                        "a scheduled rule names the platform (API key name) its purges belong to",
                        "e.g. platform = \"shop\"",
                    ));
                }
            }
            if r.every_days.is_some_and(|d| r.notice_days >= d) {
                return Err(invalid(
                    format!("{at}.notice_days"),
                    "the notice period must be shorter than the schedule's period, or purges overlap",
                    "shorten notice_days or lengthen every_days",
                ));
            }
            if r.notice_days > 90 {
                return Err(invalid(
                    format!("{at}.notice_days"),
                    "must be 0 to 90",
                    "e.g. notice_days = 30",
                ));
            }
            if raw.purge_rules[..i].iter().any(|o| o.name == r.name) {
                return Err(invalid(
                    format!("{at}.name"),
                    "used twice",
                    "give each purge rule its own name",
                ));
            }
        }
        for (i, a) in raw.assets.iter().enumerate() {
            let at = format!("assets[{i}] ({})", a.kind);
            if !names.contains(&a.system) {
                return Err(invalid(
                    format!("{at}.system"),
                    format!("unknown system '{}'", a.system),
                    "name a system declared under [[systems]]",
                ));
            }
            if lethe_domain::asset::AssetKind::parse(&a.kind).is_none() {
                return Err(invalid(
                    format!("{at}.kind"),
                    format!("unknown asset kind '{}'", a.kind),
                    "use balance, points, coupon, gift_card, deposit, subscription, bank_card or third_party_binding",
                ));
            }
            check_query(&format!("{at}.query"), &a.query)?;
        }
        let env_ok = |v: &str| {
            !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        };
        let mut pnames = HashSet::new();
        for p in &raw.providers {
            let at = format!("providers.{}", p.name);
            if !pnames.insert(p.name.clone()) {
                return Err(invalid(
                    &at,
                    "the provider name is used twice",
                    "give each provider its own name",
                ));
            }
            if !env_ok(&p.url_env) || !env_ok(&p.secret_env) {
                return Err(invalid(
                    &at,
                    "url_env and secret_env must name environment variables (A-Z, 0-9, _)",
                    "write e.g. url_env = \"WALLET_URL\", secret_env = \"WALLET_SECRET\"",
                ));
            }
            if !(100..=30_000).contains(&p.timeout_ms) {
                return Err(invalid(
                    format!("{at}.timeout_ms"),
                    "must be between 100 and 30000",
                    "use 3000 unless the provider is slow",
                ));
            }
        }
        if let Some(t) = &raw.settlement {
            if !env_ok(&t.url_env) || !env_ok(&t.secret_env) {
                return Err(invalid(
                    "settlement",
                    "url_env and secret_env must name environment variables (A-Z, 0-9, _)",
                    "write e.g. url_env = \"SETTLEMENT_URL\"",
                ));
            }
            if !(100..=30_000).contains(&t.timeout_ms) {
                return Err(invalid(
                    "settlement.timeout_ms",
                    "must be between 100 and 30000",
                    "use 3000",
                ));
            }
        }
        let mut cids = HashSet::new();
        for c in &raw.consequences {
            let at = format!("consequences.{}", c.id);
            if !cids.insert(c.id.clone()) || c.id.as_str() == "account_erased" {
                return Err(invalid(
                    &at,
                    "the id is used twice (account_erased is built in)",
                    "give each consequence its own id",
                ));
            }
            match (&c.system, &c.query) {
                (Some(s), Some(q)) => {
                    if !names.contains(s) {
                        return Err(invalid(
                            format!("{at}.system"),
                            format!("unknown system '{s}'"),
                            "name a system declared under [[systems]]",
                        ));
                    }
                    check_query(&format!("{at}.query"), q)?;
                }
                (None, None) => {}
                _ => {
                    return Err(invalid(
                        &at,
                        "system and query go together",
                        "set both, or neither for a fixed statement",
                    ));
                }
            }
        }
        Ok(Self {
            systems,
            blockers: raw.blockers,
            consequences: raw.consequences,
            assets: raw.assets,
            providers: raw.providers,
            settlement: raw.settlement,
            purge_rules: raw.purge_rules,
        })
    }

    pub fn system(&self, name: &str) -> Option<&System> {
        self.systems.iter().find(|s| s.name.as_str() == name)
    }
}

/// Fields that belong to one kind of system only.
fn check_kind_fields(at: &str, s: &RawSystem) -> Result<(), DataMapError> {
    let sql = s.kind.dialect().is_some();
    let has_queries = s.phone_query.is_some()
        || !s.identities.is_empty()
        || s.accounts_by_phone.is_some()
        || s.accounts_by_id_number.is_some();
    if !sql && has_queries {
        return Err(invalid(
            at,
            format!("a {} system cannot run queries", s.kind.as_str()),
            "put phone_query, identities and accounts_by_* on a SQL system",
        ));
    }
    if s.kind == Kind::Redis {
        if s.keys.is_empty() || s.keys.len() > 256 {
            return Err(invalid(
                format!("{at}.keys"),
                "a redis system needs 1 to 256 entries",
                "add e.g. keys = [{ type = \"key\", pattern = \"session:{subject}:*\" }]",
            ));
        }
        for (i, k) in s.keys.iter().enumerate() {
            let (template, what) = match k {
                RedisEntry::Key { pattern } => (pattern, "pattern"),
                RedisEntry::HashField { key, field } => {
                    check_template(&format!("{at}.keys[{i}].key"), key, false)?;
                    (field, "field")
                }
                RedisEntry::SetMember { key, member } | RedisEntry::ZsetMember { key, member } => {
                    check_template(&format!("{at}.keys[{i}].key"), key, false)?;
                    (member, "member")
                }
            };
            check_template(&format!("{at}.keys[{i}].{what}"), template, true)?;
        }
    } else if !s.keys.is_empty() {
        return Err(invalid(
            format!("{at}.keys"),
            "only a redis system has keys",
            "remove keys, or use kind = \"redis\"",
        ));
    }
    if s.kind == Kind::Http && s.secret_env.is_none() {
        return Err(invalid(
            at,
            "an http system needs the environment variable of its signing secret",
            "add secret_env = \"...\" (a whsec_ secret shared with the service)",
        ));
    }
    if s.kind == Kind::Manual {
        match &s.instructions {
            Some(t) if !t.trim().is_empty() && t.len() <= 4000 => {}
            _ => {
                return Err(invalid(
                    format!("{at}.instructions"),
                    "a manual system needs instructions for the operator (at most 4000 characters)",
                    "add instructions = \"what to erase where, and how\"",
                ));
            }
        }
        if !(1..=60).contains(&s.due_days.unwrap_or(5)) {
            return Err(invalid(
                format!("{at}.due_days"),
                "must be between 1 and 60",
                "use 5",
            ));
        }
    }
    Ok(())
}

/// A Redis template: at most 512 bytes; a subject template names `{subject}`.
fn check_template(at: &str, t: &str, needs_subject: bool) -> Result<(), DataMapError> {
    if t.is_empty() || t.len() > 512 {
        return Err(invalid(at, "must be 1 to 512 characters", "shorten it"));
    }
    if needs_subject && !t.contains("{subject}") {
        return Err(invalid(
            at,
            "does not name the subject",
            "write {subject} where the subject id goes, e.g. \"session:{subject}:*\"",
        ));
    }
    Ok(())
}

/// Rule queries are read-only SELECTs with exactly the `$1` parameter.
fn check_query(at: &str, q: &str) -> Result<(), DataMapError> {
    let t = q.trim_start().to_ascii_lowercase();
    if q.len() > MAX_QUERY_LEN {
        return Err(invalid(
            at,
            format!("longer than {MAX_QUERY_LEN} characters"),
            "shorten the query",
        ));
    }
    if !(t.starts_with("select") || t.starts_with("with")) || q.contains(';') {
        return Err(invalid(
            at,
            "must be a single SELECT statement",
            "write one SELECT without ';'",
        ));
    }
    if !q.contains("$1") {
        return Err(invalid(
            at,
            "does not use the subject id",
            "filter by the subject with $1",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
[[systems]]
name = "shop"
kind = "sqlite"
url_env = "SHOP_URL"
[[systems.tables]]
name = "users"
owner = "id"
action = "delete"
[[systems.tables]]
name = "orders"
owner = "user_id"
action = "delete"
[[systems.tables]]
name = "order_items"
belongs_to = { table = "orders", columns = ["order_id"], references = ["id"] }
action = "delete"
[[systems.tables]]
name = "invoices"
owner = "user_id"
action = "keep"
legal_basis = "tax law"
retention_days = 1095
[[blockers]]
system = "shop"
code = "unfinished_order"
category = "unfinished_order"
query = "SELECT id FROM orders WHERE user_id = $1 AND status = 'pending'"
message_zh = "有未完成的订单"
message_en = "unfinished orders"
"#;

    #[test]
    fn purge_rules_are_one_select_without_parameters_on_a_sql_system() {
        let rule = |system: &str, query: &str| {
            format!(
                "{OK}\n[[purge_rules]]\nname = \"dormant\"\nsystem = \"{system}\"\nquery = \"{query}\"\n"
            )
        };
        let m = DataMap::parse(&rule("shop", "SELECT id FROM users WHERE last_login < 1")).unwrap();
        assert_eq!(m.purge_rules[0].name.as_str(), "dormant");
        for (system, query, says) in [
            (
                "shop",
                "SELECT id FROM users WHERE id = $1",
                "without parameters",
            ),
            ("shop", "DELETE FROM users", "one SELECT"),
            ("shop", "SELECT 1; DROP TABLE users", "one SELECT"),
            ("crm", "SELECT id FROM users", "not a SQL system"),
        ] {
            let e = DataMap::parse(&rule(system, query))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("purge_rules[0]") && e.contains(says),
                "{query}: {e}"
            );
        }
        let twice = format!(
            "{}[[purge_rules]]\nname = \"dormant\"\nsystem = \"shop\"\nquery = \"SELECT id FROM users\"\n",
            rule("shop", "SELECT id FROM users")
        );
        assert!(
            DataMap::parse(&twice)
                .unwrap_err()
                .to_string()
                .contains("used twice")
        );
    }

    #[test]
    fn a_scheduled_purge_rule_names_its_legal_basis_and_platform() {
        let base = format!(
            "{OK}\n[[purge_rules]]\nname = \"dormant\"\nsystem = \"shop\"\nquery = \"SELECT id FROM users\"\nevery_days = 30\n"
        );
        let e = DataMap::parse(&base).unwrap_err().to_string();
        assert!(e.contains("legal_basis"), "{e}");
        let with_basis = format!("{base}legal_basis = \"PIPL Art. 47: dormant accounts\"\n");
        let e = DataMap::parse(&with_basis).unwrap_err().to_string();
        assert!(e.contains("platform"), "{e}");
        let ok = format!("{with_basis}platform = \"shop\"\nnotice_days = 14\n");
        let m = DataMap::parse(&ok).unwrap();
        assert_eq!(m.purge_rules[0].every_days, Some(30));
        let e = DataMap::parse(&ok.replace("every_days = 30", "every_days = 0"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("every_days"), "{e}");
        let e = DataMap::parse(&ok.replace("notice_days = 14", "notice_days = 30"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("notice_days"), "{e}");
    }

    #[test]
    fn tables_are_named_for_users_in_both_languages() {
        let with = OK.replace(
            "legal_basis = \"tax law\"\n",
            "legal_basis = \"tax law\"\ntitle_zh = \"发票\"\ntitle_en = \"Invoices\"\nlegal_basis_zh = \"依税法保留\"\n",
        );
        let m = DataMap::parse(&with).unwrap();
        let t = &m.systems[0].tables[3];
        assert_eq!((t.title(true), t.title(false)), ("发票", "Invoices"));
        // Without a language's text, the single legal basis and the name.
        assert_eq!(t.legal_basis(true), Some("依税法保留"));
        assert_eq!(t.legal_basis(false), Some("tax law"));
        assert_eq!(
            m.systems[0].tables[0].title(true),
            m.systems[0].tables[0].name.as_str()
        );
        // A reason to keep on a table that is deleted, or an empty or
        // overlong title, is refused with the key to fix.
        let bad = OK.replacen(
            "action = \"delete\"",
            "action = \"delete\"\nlegal_basis_en = \"x\"",
            1,
        );
        assert!(
            DataMap::parse(&bad)
                .unwrap_err()
                .to_string()
                .contains("legal_basis_zh and legal_basis_en go with")
        );
        let long = OK.replacen(
            "action = \"delete\"",
            &format!("action = \"delete\"\ntitle_zh = \"{}\"", "长".repeat(301)),
            1,
        );
        let e = DataMap::parse(&long).unwrap_err().to_string();
        assert!(e.contains("title_zh") && e.contains("1 to 300"), "{e}");
    }

    #[test]
    fn parses_a_valid_map() {
        let m = DataMap::parse(OK).unwrap();
        assert_eq!(m.systems[0].tables.len(), 4);
        assert!(matches!(
            m.systems[0].tables[3].action,
            Action::Keep {
                retention_days: 1095,
                ..
            }
        ));
    }

    #[test]
    fn errors_name_the_place_and_the_fix() {
        let bad = OK.replace("name = \"orders\"", "name = \"orders; DROP TABLE x\"");
        let e = DataMap::parse(&bad).unwrap_err().to_string();
        assert!(e.contains("not a plain SQL identifier"), "{e}");
        let bad = OK.replace("legal_basis = \"tax law\"\n", "");
        let e = DataMap::parse(&bad).unwrap_err().to_string();
        assert!(
            e.contains("systems.shop.tables.invoices") && e.contains("legal_basis"),
            "{e}"
        );
        let bad = OK.replace("action = \"keep\"", "action = \"shred\"");
        assert!(
            DataMap::parse(&bad)
                .unwrap_err()
                .to_string()
                .contains("unknown action 'shred'")
        );
        let bad = OK.replace(
            "status = 'pending'",
            "status = 'pending'; DELETE FROM users",
        );
        assert!(
            DataMap::parse(&bad)
                .unwrap_err()
                .to_string()
                .contains("single SELECT")
        );
        let bad = OK.replace("unknown_field_guard", "") + "\n[oops]\n";
        assert!(DataMap::parse(&bad).is_err());
        // No unreasonable conditions.
        let bad = OK.replace(
            "category = \"unfinished_order\"",
            "category = \"unrelated_product\"",
        );
        let e = DataMap::parse(&bad).unwrap_err().to_string();
        assert!(
            e.contains("unrelated products") && e.contains("remove this blocker"),
            "{e}"
        );
        let bad = OK.replace(
            "category = \"unfinished_order\"",
            "category = \"extra_identity\"",
        );
        assert!(
            DataMap::parse(&bad)
                .unwrap_err()
                .to_string()
                .contains("more identity data than was collected at registration")
        );
    }

    const LINKS: &str = r#"
[[systems]]
name = "shop"
kind = "sqlite"
url_env = "SHOP_URL"
[[systems.tables]]
name = "customer"
owner = "customer_id"
action = "delete"
[[systems.tables]]
name = "address"
referenced_by = { table = "customer", columns = ["address_id"] }
action = "delete"
"#;

    #[test]
    fn referenced_by_and_ignore_are_checked() {
        let m = DataMap::parse(LINKS).unwrap();
        assert!(matches!(
            m.systems[0].tables[1].ownership,
            Ownership::Referenced(_)
        ));
        let both = LINKS.replace(
            "action = \"delete\"\n\"#",
            "owner = \"id\"\naction = \"delete\"\n\"#",
        );
        let e = LINKS.replace(
            "referenced_by = { table = \"customer\", columns = [\"address_id\"] }",
            "referenced_by = { table = \"customer\", columns = [\"address_id\"] }\nowner = \"id\"",
        );
        for bad in [both, e] {
            if let Err(e) = DataMap::parse(&bad) {
                assert!(e.to_string().contains("exactly one of"), "{e}");
            }
        }
        let e = DataMap::parse(&LINKS.replace(
            "table = \"customer\", columns",
            "table = \"nobody\", columns",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("'nobody' is not in the data map"), "{e}");
        // A table hanging below a possibly shared row is refused.
        let below = format!(
            "{LINKS}\n[[systems.tables]]\nname = \"address_note\"\nbelongs_to = {{ table = \"address\", columns = [\"address_id\"], references = [\"id\"] }}\naction = \"delete\"\n"
        );
        let e = DataMap::parse(&below).unwrap_err().to_string();
        assert!(e.contains("shared with other accounts"), "{e}");
        // An ignore needs a reason.
        let ig = format!("{LINKS}\n[[systems.ignore]]\ntable = \"store\"\nreason = \"\"\n");
        let e = DataMap::parse(&ig).unwrap_err().to_string();
        assert!(e.contains("needs the reason"), "{e}");
        let ig = format!(
            "{LINKS}\n[[systems.ignore]]\ntable = \"store\"\nreason = \"business addresses of branches\"\n"
        );
        assert_eq!(DataMap::parse(&ig).unwrap().systems[0].ignore.len(), 1);
    }
}

#[cfg(test)]
mod example_tests {
    /// Every data map shipped as an example parses.
    #[test]
    fn shipped_examples_parse() {
        for (name, text) in [
            (
                "demo-mart",
                include_str!("../../../examples/demo-mart/datamap.toml"),
            ),
            (
                "food-delivery",
                include_str!("../../../examples/datamaps/food-delivery.toml"),
            ),
        ] {
            let m = super::DataMap::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!m.systems.is_empty());
        }
    }
}
