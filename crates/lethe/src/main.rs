//! The `lethe` command.

mod backup;
#[cfg(feature = "bench")]
mod bench;
mod demo_mart;
mod erasures_cmd;
mod export_cmd;
mod monitor_cmd;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use lethe_domain::ManualClock;
use lethe_server::{ClockMode, Config, Server};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "lethe",
    version,
    about = "Account cancellation and erasure: safely, provably, on time."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run Lethe with the bundled demo platform, Demo Mart (Lethe's own data
    /// on SQLite, or on PostgreSQL with --store-url).
    Demo {
        /// Where the demo keeps its databases and keys.
        #[arg(long, default_value = "var/demo")]
        data_dir: PathBuf,
        #[command(flatten)]
        opts: Box<DemoOptions>,
    },
    /// Run Lethe with a configuration file (production: the system clock).
    Serve {
        #[arg(long, default_value = "lethe.toml")]
        config: PathBuf,
    },
    /// Check a configuration file and its data map; explain each error.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Check the cancellation policy: bounds, and no unreasonable conditions
    /// (blockers asking for more identity data than registration collected,
    /// or for unrelated products to be cancelled).
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
    /// Back up Lethe's store online: data and keys in separate directories.
    Backup {
        #[arg(long, default_value = "lethe.toml")]
        config: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore a backup into the configured data directory (Lethe stopped).
    Restore {
        #[arg(long, default_value = "lethe.toml")]
        config: PathBuf,
        /// A data-<time> directory.
        #[arg(long)]
        data: PathBuf,
        /// The keys-<time> directory (without it, encrypted fields stay unreadable).
        #[arg(long)]
        keys: Option<PathBuf>,
        #[arg(long)]
        force: bool,
    },
    /// Manage agent console accounts.
    Agent {
        #[command(subcommand)]
        cmd: AgentCmd,
    },
    /// Manage the API keys platforms use.
    Apikey {
        #[command(subcommand)]
        cmd: ApikeyCmd,
    },
    /// The audit log: export it, verify an export offline, show the public key.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Deletion receipts.
    Receipt {
        #[command(subcommand)]
        cmd: ReceiptCmd,
    },
    /// The signed compliance report for a period (JSON and HTML), or verify one.
    Report {
        #[arg(long, default_value = "lethe.toml")]
        config: PathBuf,
        /// Start: a date (YYYY-MM-DD, platform time zone) or RFC 3339.
        #[arg(long)]
        from: Option<String>,
        /// End, exclusive.
        #[arg(long)]
        to: Option<String>,
        /// Directory for report.json, report.html and report.html.sig.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Verify this signed report.json instead of writing one.
        #[arg(long)]
        verify: Option<PathBuf>,
        /// The public key to verify with (hex).
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Benchmarks that print figures against a raw baseline (built with
    /// `--features bench` only: the production binary carries none).
    #[cfg(feature = "bench")]
    Bench {
        #[command(subcommand)]
        cmd: bench::BenchCmd,
    },
    /// Copies of an account's data: request one from a running Lethe (with
    /// progress bars), or verify a downloaded archive.
    Export {
        #[command(subcommand)]
        cmd: export_cmd::ExportCmd,
    },
    /// The working-day calendar: what a year looks like, and the deadline
    /// Lethe computes from a date (final, or provisional beyond the years
    /// the calendar covers).
    Calendar {
        #[command(subcommand)]
        cmd: CalendarCmd,
    },
    /// Rows kept for a legal reason: what is kept, for which case, until
    /// when; and what the next purge would remove.
    Retention {
        #[command(subcommand)]
        cmd: RetentionCmd,
    },
    /// Erasures after a backup restore: reapply them, list the runs,
    /// verify a run's signed report.
    Erasures {
        #[command(subcommand)]
        cmd: erasures_cmd::ErasuresCmd,
    },
    /// Show the erasure plan of a data map (nothing is erased).
    Datamap {
        #[command(subcommand)]
        cmd: DatamapCmd,
    },
    /// Print the OpenAPI 3.1 document (what GET /openapi.json serves), for
    /// generating a client without a running server.
    Openapi {
        /// Include the demo's routes (/v1/dev/...).
        #[arg(long)]
        demo: bool,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    Check {
        #[arg(long, default_value = "lethe.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum AgentCmd {
    /// Create an agent: prints the initial password and the TOTP enrolment
    /// URL (otpauth://) once.
    Create {
        #[arg(long, default_value = "lethe.toml")]
        config: PathBuf,
        #[arg(long)]
        username: String,
        /// agent, reviewer, admin or auditor.
        #[arg(long)]
        role: String,
        /// The platform (API key name) the agent serves: its cases, exports
        /// and tasks only. Without it the agent is installation staff and
        /// serves every platform.
        #[arg(long)]
        platform: Option<String>,
    },
    /// The current six-digit TOTP code of an enrolment (what an
    /// authenticator app shows), for trying the console on this machine.
    Code {
        /// The otpauth:// URL `agent create` printed, or its base32 secret.
        otpauth: String,
    },
}

#[derive(Subcommand)]
enum PolicyCmd {
    Check {
        #[arg(long, default_value = "lethe.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum ApikeyCmd {
    /// Create a key; it is printed once and stored only as a hash.
    Create {
        #[arg(long, default_value = "lethe.toml")]
        config: PathBuf,
        #[arg(long)]
        name: String,
    },
    /// Revoke a key by name.
    Revoke {
        #[arg(long, default_value = "lethe.toml")]
        config: PathBuf,
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Write the log (events, recorded hashes, signed tree heads) to a file.
    Export {
        #[arg(long, default_value = "lethe.toml")]
        config: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify an exported log offline; only the public key is needed.
    Verify {
        #[arg(long)]
        log: PathBuf,
        /// Hex Ed25519 public key (GET /v1/audit/public-key).
        #[arg(long)]
        public_key: String,
    },
    /// Watch an installation's published log as a third party: each new
    /// head must extend the last one seen (exit code 3 on a fork, a
    /// rollback or a changed key).
    Monitor {
        /// The installation's URL; its /transparency.json is read.
        #[arg(long)]
        url: String,
        /// Where the monitor keeps the last head it checked (made on the
        /// first run).
        #[arg(long, default_value = "lethe-monitor.json")]
        state: PathBuf,
        /// The log's hex Ed25519 key, if known; else the first key seen is
        /// pinned in the state file.
        #[arg(long)]
        public_key: Option<String>,
        /// Keep watching, checking every this many seconds (5-86400);
        /// without it, check once (for cron).
        #[arg(long)]
        every: Option<u64>,
    },
    /// Print the public key that signs tree heads, receipts and reports.
    PublicKey {
        #[arg(long, default_value = "lethe.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum ReceiptCmd {
    /// Verify a receipt: its signature, its tree head and the inclusion of
    /// its final event in the signed audit log.
    Verify {
        #[arg(long)]
        receipt: PathBuf,
        #[arg(long)]
        public_key: String,
    },
}

#[derive(Subcommand)]
enum CalendarCmd {
    /// The days off and the make-up working days of a year, with the notice
    /// they come from (or, for a year not covered yet, the provisional
    /// rule).
    Show {
        year: i16,
        /// An operator calendar file extending the shipped one.
        #[arg(long)]
        calendar_file: Option<PathBuf>,
    },
    /// The end of the n-th working day after a date, as Lethe computes a
    /// deadline (in the platform's time zone).
    Deadline {
        /// The start date (YYYY-MM-DD, in the time zone).
        #[arg(long)]
        from: String,
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=366))]
        working_days: u32,
        #[arg(long, default_value = "Asia/Shanghai")]
        time_zone: String,
        #[arg(long)]
        calendar_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RetentionCmd {
    /// What is kept, per case and table, until when, and what was purged
    /// (every SQL system of the data map; URLs from the environment).
    List {
        #[arg(long)]
        datamap: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Purge kept rows whose retention has ended. With --dry-run, only
    /// count what would be removed.
    Purge {
        #[arg(long)]
        datamap: PathBuf,
        /// Count, remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Purge as at this time (RFC 3339; default now), e.g. to see what
        /// next month's purge will remove.
        #[arg(long)]
        at: Option<String>,
    },
}

#[derive(Subcommand)]
enum DatamapCmd {
    /// Generate a first data map from a live database: walk the foreign
    /// keys from the subject table (both directions, partitions included),
    /// find the columns that hold subject ids by value (under any name, as
    /// a local part, inside JSON), propose owner/belongs_to/referenced_by
    /// and an action per table, mark what looks personal, and list every
    /// other table as `ignore` with a TODO to confirm. Read-only.
    Init {
        /// The environment variable holding the database URL (sqlite:,
        /// postgres:, mysql: or mariadb:).
        #[arg(long)]
        url_env: String,
        /// The subject table and its id column, as TABLE.COLUMN.
        #[arg(long)]
        subject: String,
        /// The system's name in the map.
        #[arg(long, default_value = "platform")]
        name: String,
        /// Values sampled per column to recognise personal data (0 to skip).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=100))]
        sample: u32,
        /// Write the map to this file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Create Lethe's own record tables (lethe_erasures, lethe_retention)
    /// in every SQL system of the data map (URLs from the environment).
    /// Erasure creates them too, at its first run; `check` and `plan` never
    /// do, so they run under a read-only role.
    Install {
        #[arg(long)]
        datamap: PathBuf,
    },
    /// Print, per system, the tables in erasure order with their action and
    /// the condition that selects a subject's rows. The order is the one
    /// erasure runs: where the system's URL is in the environment, the live
    /// schema's foreign keys order it too (read-only). With a subject,
    /// show what would be erased, without erasing anything (a dry run).
    Plan {
        #[arg(long)]
        datamap: PathBuf,
        /// The platform's user id to plan for.
        subject: Option<String>,
    },
    /// Connect to every system (URLs from the environment), read its schema
    /// and report what the data map misses: tables or columns that do not
    /// exist, uncovered tables referencing covered ones, uncovered columns
    /// that look like personal data, foreign keys the erasure would break.
    /// Exits 1 when a finding is an error.
    Check {
        #[arg(long)]
        datamap: PathBuf,
        /// Values sampled per uncovered text column (0 to skip sampling).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=100))]
        sample: u32,
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn init_logs() {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter = EnvFilter::try_from_env("LETHE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_current_span(true)
        .init();
}

fn load_config(path: &Path) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the configuration {}", path.display()))?;
    // Every key, its default and bounds: docs/configuration.md; a complete
    // example: examples/lethe.toml.
    let cfg: Config = toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "configuration {}: {e}\n(every key, its default and bounds: docs/configuration.md; a complete example: examples/lethe.toml)",
            path.display()
        )
    })?;
    cfg.validate().map_err(|e| {
        anyhow::anyhow!(
            "configuration {}: {e}\n(see docs/configuration.md)",
            path.display()
        )
    })?;
    Ok(cfg)
}

fn main() -> anyhow::Result<()> {
    // Every file and directory Lethe makes (its store, WAL, keys, export
    // archives, the demo's databases) is its own: 0600 files, 0700
    // directories.
    // SAFETY: umask only sets the process's file-creation mask; it is called
    // before any thread starts.
    unsafe {
        libc::umask(0o077);
    }
    let cli = Cli::parse();
    lethe_server::install_crypto_provider();
    if !matches!(cli.cmd, Cmd::Demo { .. } | Cmd::Serve { .. }) {
        // A command whose output is piped into `head` stops quietly when
        // the reader goes away, like other Unix tools, instead of failing
        // on the broken pipe. (The server keeps ignoring SIGPIPE: its
        // sockets report a closed peer as an error.)
        // SAFETY: called before any other thread exists; SIG_DFL is a
        // valid disposition for SIGPIPE.
        #[cfg(unix)]
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    if let Cmd::Demo { data_dir, .. } = &cli.cmd {
        // The demo data map names DEMO_MART_URL for Demo Mart's database.
        // SAFETY: set before the async runtime starts, while this is the
        // only thread, so nothing reads the environment concurrently.
        let mart = std::path::absolute(data_dir.join("demo-mart.db"))?;
        unsafe { std::env::set_var("DEMO_MART_URL", format!("sqlite://{}", mart.display())) };
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli))
        .inspect_err(|e| {
            // A misbehaving log is not a failure to check: its own code.
            if let Some(a) = e.downcast_ref::<monitor_cmd::Alert>() {
                eprintln!("{a}");
                std::process::exit(monitor_cmd::EXIT_MISBEHAVIOUR);
            }
        })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Demo { data_dir, opts } => {
            init_logs();
            demo(data_dir, *opts).await
        }
        Cmd::Serve { config } => {
            init_logs();
            let cfg = load_config(&config)?;
            let server = Server::prepare(&cfg, ClockMode::System).await?;
            tracing::info!(addr = %server.local_addr()?, "lethe listening");
            server.run().await?;
            Ok(())
        }
        Cmd::Config {
            cmd: ConfigCmd::Check { config },
        } => {
            let cfg = load_config(&config)?;
            // The calendar file through the same parser as start-up.
            lethe_server::CalendarState::load(cfg.calendar_file.as_deref())
                .map_err(|e| anyhow::anyhow!("configuration {}: {e}", config.display()))?;
            let map = lethe_connect::DataMap::load(&cfg.datamap)?;
            for s in &map.systems {
                lethe_connect::planner::plan(s)?;
                if std::env::var(&s.url_env).is_err() {
                    bail!(
                        "system {}: the environment variable {} is not set; export it with the connection URL",
                        s.name,
                        s.url_env
                    );
                }
            }
            println!(
                "configuration {} is valid ({} system(s) in the data map)",
                config.display(),
                map.systems.len()
            );
            Ok(())
        }
        Cmd::Apikey { cmd } => {
            let (config, name, create) = match cmd {
                ApikeyCmd::Create { config, name } => (config, name, true),
                ApikeyCmd::Revoke { config, name } => (config, name, false),
            };
            let cfg = load_config(&config)?;
            std::fs::create_dir_all(&cfg.data_dir)?;
            let store = lethe_store::Store::open_url(
                &cfg.store_url().map_err(anyhow::Error::msg)?,
                Default::default(),
            )
            .await?;
            if create {
                // A key's name is the principal that owns what it opens: it
                // may not pass for the console or an agent.
                let plain = (1..=64).contains(&name.len())
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
                if !plain || name == "console" || name.starts_with("agent") {
                    bail!(
                        "--name '{name}': use 1 to 64 letters, digits, '-', '_' or '.', not 'console' and not starting with 'agent' (names Lethe uses for the console and its agents)"
                    );
                }
                let key = new_api_key();
                store
                    .insert_api_key(name.clone(), lethe_server::middleware::hash_api_key(&key))
                    .await?;
                println!("{key}");
                eprintln!(
                    "API key '{name}' created. It is shown only now; Lethe keeps only its hash."
                );
            } else if store.revoke_api_key(name.clone()).await? {
                eprintln!("API key '{name}' revoked.");
            } else {
                bail!("no live API key named '{name}'");
            }
            Ok(())
        }
        Cmd::Agent {
            cmd: AgentCmd::Code { otpauth },
        } => {
            let secret = otpauth
                .split("secret=")
                .nth(1)
                .map(|r| r.split('&').next().unwrap_or_default())
                .unwrap_or(&otpauth);
            let key = data_encoding::BASE32_NOPAD
                .decode(secret.trim_end_matches('=').as_bytes())
                .context("the secret must be the base32 secret of an otpauth:// URL")?;
            let step = jiff::Timestamp::now().as_second() / lethe_server::totp::STEP_SECS;
            let step = u64::try_from(step).context("the system clock is before 1970")?;
            println!("{:06}", lethe_server::totp::code_at(&key, step));
            Ok(())
        }
        Cmd::Agent {
            cmd:
                AgentCmd::Create {
                    config,
                    username,
                    role,
                    platform,
                },
        } => {
            let role = lethe_server::console::Role::parse(&role)
                .context("--role must be agent, reviewer, admin or auditor")?;
            let cfg = load_config(&config)?;
            let server = Server::prepare(
                &Config {
                    listen: "127.0.0.1:0".parse()?,
                    ..cfg
                },
                ClockMode::System,
            )
            .await?;
            let (password, url) =
                lethe_server::console::create_agent(&server.state, &username, role, platform)
                    .await
                    .map_err(|p| anyhow::anyhow!("{}", p.detail))?;
            println!("password: {password}\ntotp: {url}");
            eprintln!(
                "Agent '{username}' created. The password and TOTP secret are shown only now."
            );
            Ok(())
        }
        Cmd::Backup { config, out } => {
            let cfg = load_config(&config)?;
            sqlite_only(&cfg, "backup")?;
            let (data, keys) = backup::backup(&cfg.data_dir, &out).await?;
            println!("data: {}\nkeys: {}", data.display(), keys.display());
            eprintln!(
                "Keep the keys directory apart from the data and only for a short time (see docs/operations.md)."
            );
            Ok(())
        }
        Cmd::Restore {
            config,
            data,
            keys,
            force,
        } => {
            let cfg = load_config(&config)?;
            sqlite_only(&cfg, "restore")?;
            let n = backup::restore(&cfg.data_dir, &data, keys.as_deref(), force).await?;
            println!(
                "restored into {} ({n} vault key(s) restored)",
                cfg.data_dir.display()
            );
            Ok(())
        }
        Cmd::Policy {
            cmd: PolicyCmd::Check { config },
        } => {
            let cfg = load_config(&config)?;
            let map = lethe_connect::DataMap::load(&cfg.datamap)?;
            println!(
                "policy of {} is acceptable: cooling-off {} days, review {}, deadlines {}, {} blocker rule(s), {} provider(s)",
                config.display(),
                cfg.policy.cooling_off_days,
                if cfg.policy.review_required {
                    "required"
                } else {
                    "not required"
                },
                cfg.policy.deadlines,
                map.blockers.len(),
                map.providers.len()
            );
            Ok(())
        }
        #[cfg(feature = "bench")]
        Cmd::Bench { cmd } => bench::run(cmd).await,
        Cmd::Audit { cmd } => audit(cmd).await,
        Cmd::Export { cmd } => export_cmd::run(cmd).await,
        Cmd::Receipt {
            cmd:
                ReceiptCmd::Verify {
                    receipt,
                    public_key,
                },
        } => {
            let text = std::fs::read_to_string(&receipt)
                .with_context(|| format!("reading {}", receipt.display()))?;
            let r: lethe_ledger::Receipt = serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!("{} is not a Lethe receipt: {e}", receipt.display())
            })?;
            match r.verify(&public_key) {
                Ok(()) => {
                    println!(
                        "receipt for case {} is genuine: signed, and its final event #{} is in the signed audit log of size {}",
                        r.case_id,
                        r.final_event.as_ref().map_or(0, |f| f.seq),
                        r.tree_head.as_ref().map_or(0, |h| h.tree_size)
                    );
                    Ok(())
                }
                Err(e) => bail!("receipt {} does NOT verify: {e}", receipt.display()),
            }
        }
        Cmd::Report {
            config,
            from,
            to,
            out,
            verify,
            public_key,
        } => report(config, from, to, out, verify, public_key).await,
        Cmd::Datamap { cmd } => datamap_cmd(cmd).await,
        Cmd::Openapi { demo } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&lethe_server::openapi(demo))?
            );
            Ok(())
        }
        Cmd::Retention { cmd } => retention_cmd(cmd).await,
        Cmd::Erasures { cmd } => erasures_cmd::run(cmd).await,
        Cmd::Calendar { cmd } => calendar_cmd(cmd),
    }
}

fn calendar_cmd(cmd: CalendarCmd) -> anyhow::Result<()> {
    use lethe_domain::calendar::Calendar;
    let load = |f: Option<PathBuf>| {
        lethe_server::CalendarState::load(f.as_deref()).map_err(anyhow::Error::msg)
    };
    match cmd {
        CalendarCmd::Show {
            year,
            calendar_file,
        } => {
            let cal = load(calendar_file)?;
            let start = jiff::civil::Date::new(year, 1, 1)
                .map_err(|e| anyhow::anyhow!("year {year}: {e}"))?;
            match cal.years().find(|y| y.year == year) {
                Some(src) => println!("{year}: {} ({})", src.source, src.urls.join(", ")),
                None => println!(
                    "{year}: not covered by the calendar yet; deadlines are provisional: weekends and the certain statutory holidays only (the earliest possible dates); add the State Council notice to the calendar file"
                ),
            }
            let mut day = start;
            while day.year() == year {
                let weekend = matches!(
                    day.weekday(),
                    jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday
                );
                let working = if cal.covers(year) {
                    cal.is_working_day(day)?
                } else {
                    Calendar::provisional_is_working_day(day)
                };
                if working == weekend {
                    println!(
                        "  {day} {:<9} {}",
                        format!("{:?}", day.weekday()),
                        if working {
                            "working day (调休上班)"
                        } else {
                            "day off"
                        }
                    );
                }
                day = day.tomorrow()?;
            }
            Ok(())
        }
        CalendarCmd::Deadline {
            from,
            working_days,
            time_zone,
            calendar_file,
        } => {
            let cal = load(calendar_file)?;
            let tz = jiff::tz::TimeZone::get(&time_zone)
                .map_err(|e| anyhow::anyhow!("--time-zone {time_zone}: {e}"))?;
            let date: jiff::civil::Date = from
                .parse()
                .map_err(|e| anyhow::anyhow!("--from: {e}; write YYYY-MM-DD"))?;
            let start = date
                .to_zoned_datetime(tz.clone())
                .map_err(|e| anyhow::anyhow!("--from: {e}"))?
                .timestamp();
            let (due, provisional) =
                cal.end_of_nth_working_day_provisional(start, working_days, &tz)?;
            let local = due.to_zoned_datetime(tz.clone());
            println!(
                "{working_days} working days from {date}: due {} ({local}){}",
                due,
                if provisional {
                    " — provisional: the calendar does not cover every day counted; the notice can only make it later"
                } else {
                    ""
                }
            );
            Ok(())
        }
    }
}

async fn retention_cmd(cmd: RetentionCmd) -> anyhow::Result<()> {
    use lethe_connect::SqlSystem;
    const LIMIT: u32 = 1000;
    match cmd {
        RetentionCmd::List { datamap, json } => {
            let map = lethe_connect::DataMap::load(&datamap)?;
            let mut all = vec![];
            for s in map.systems.iter().filter(|s| s.kind.dialect().is_some()) {
                let sys = SqlSystem::connect_from_env(s).await?;
                for r in sys.retention_list(100_000).await? {
                    all.push((s.name.to_string(), r));
                }
            }
            if json {
                let v: Vec<serde_json::Value> = all
                    .iter()
                    .map(|(sys, r)| serde_json::json!({ "system": sys, "retention": r }))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            for (sys, r) in &all {
                let until = r
                    .retain_until
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "-".into());
                let state = match (&r.purged_at, r.purged_rows) {
                    (Some(at), Some(n)) => format!("purged at {at} ({n} row(s))"),
                    _ => "kept".into(),
                };
                println!(
                    "{sys}.{:<24} case {:<38} until {until:<22} {state}  ({})",
                    r.table,
                    r.case_id,
                    r.legal_basis.as_deref().unwrap_or("")
                );
            }
            let kept = all.iter().filter(|(_, r)| r.purged_at.is_none()).count();
            println!(
                "{} retention record(s): {kept} kept, {} purged",
                all.len(),
                all.len() - kept
            );
            Ok(())
        }
        RetentionCmd::Purge {
            datamap,
            dry_run,
            at,
        } => {
            let at: jiff::Timestamp = match at {
                Some(t) => t.parse().map_err(|e| {
                    anyhow::anyhow!("--at: {e}; write RFC 3339, e.g. 2027-01-01T00:00:00Z")
                })?,
                None => jiff::Timestamp::now(),
            };
            if !dry_run && at > jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60) {
                bail!(
                    "--at {at} is in the future: a purge removes rows only when their retention has ended; use --dry-run to see what a later purge would remove"
                );
            }
            let map = lethe_connect::DataMap::load(&datamap)?;
            let mut total = 0u64;
            for s in map.systems.iter().filter(|s| s.kind.dialect().is_some()) {
                let sys = SqlSystem::connect_from_env(s).await?;
                let done = if dry_run {
                    sys.purge_dry_run(at, LIMIT).await?
                } else {
                    sys.purge_expired(at, LIMIT).await?
                };
                for (case, table, rows) in done {
                    total += rows;
                    let verb = if dry_run { "would be purged" } else { "purged" };
                    println!(
                        "{}.{table:<24} case {case:<38} {rows:>8} row(s) {verb}",
                        s.name
                    );
                }
            }
            if dry_run {
                println!(
                    "{total} row(s) would be purged as at {at} (dry run: nothing was removed)"
                );
            } else {
                println!("{total} row(s) purged");
            }
            Ok(())
        }
    }
}

async fn datamap_cmd(cmd: DatamapCmd) -> anyhow::Result<()> {
    use lethe_connect::{Kind, SqlSystem};
    match cmd {
        DatamapCmd::Init {
            url_env,
            subject,
            name,
            sample,
            out,
        } => datamap_init(&url_env, &subject, &name, sample, out).await,
        DatamapCmd::Install { datamap } => {
            let map = lethe_connect::DataMap::load(&datamap)?;
            for s in &map.systems {
                if s.kind.dialect().is_some() {
                    SqlSystem::connect_from_env(s).await?.install().await?;
                    println!(
                        "system {}: lethe_erasures and lethe_retention are in place",
                        s.name
                    );
                }
            }
            Ok(())
        }
        DatamapCmd::Plan { datamap, subject } => {
            let map = lethe_connect::DataMap::load(&datamap)?;
            let subject = subject
                .map(|s| lethe_domain::SubjectId::parse(&s))
                .transpose()
                .map_err(|e| anyhow::anyhow!("subject: {e}"))?;
            for s in &map.systems {
                match s.kind {
                    Kind::Sqlite | Kind::Postgres | Kind::Mysql => {
                        let Some(subject) = &subject else {
                            // The live plan where the database is reachable
                            // (the order erasure runs), else the data map's.
                            let (plan, source) = if std::env::var(&s.url_env).is_ok() {
                                let sys = SqlSystem::connect_from_env(s).await?;
                                (
                                    sys.plan().clone(),
                                    "the data map and the live schema's foreign keys".to_owned(),
                                )
                            } else {
                                (
                                    lethe_connect::planner::plan(s)?,
                                    format!(
                                        "the data map alone; export {} to order by the live schema's foreign keys too, as erasure does",
                                        s.url_env
                                    ),
                                )
                            };
                            println!(
                                "system {} ({}), erased in this order (from {source}):",
                                s.name,
                                s.kind.as_str()
                            );
                            for (i, step) in plan.steps.iter().enumerate() {
                                println!(
                                    "  {:>2}. {:<24} {:<8} WHERE {}",
                                    i + 1,
                                    step.table.as_str(),
                                    step.action.name(),
                                    step.condition
                                );
                            }
                            continue;
                        };
                        let sys = SqlSystem::connect_from_env(s).await?;
                        println!(
                            "system {} ({}), in this order, batches of up to {} subjects:",
                            s.name,
                            s.kind.as_str(),
                            s.batch_size
                        );
                        let counts = sys.dry_run(subject).await?;
                        if counts.iter().all(|(_, _, n)| *n == 0)
                            && !sys.subject_exists(subject).await?
                        {
                            eprintln!(
                                "warning: system {}: no row of any table belongs to this subject id; check the id (is it the platform's account id, in the owner columns' format?)",
                                s.name
                            );
                        }
                        for (i, (table, action, rows)) in counts.iter().enumerate() {
                            let verb = match action.as_str() {
                                "delete" => "would be deleted",
                                "keep" => "would be kept (legal retention)",
                                _ => "would be updated",
                            };
                            println!(
                                "  {:>2}. {table:<24} {action:<8} {rows:>8} row(s) {verb}",
                                i + 1
                            );
                        }
                    }
                    Kind::Redis => {
                        println!("system {} (redis):", s.name);
                        match &subject {
                            Some(subject) => {
                                let r = lethe_connect::redis_conn::RedisSystem::connect_from_env(s)
                                    .await?;
                                for (what, n) in r.count(subject).await? {
                                    println!("      {what:<40} {n:>8} would be deleted");
                                }
                            }
                            None => {
                                for e in &s.keys {
                                    println!("      {}", lethe_connect::redis_conn::describe(e));
                                }
                            }
                        }
                    }
                    Kind::Http => println!(
                        "system {} (http, {:?}): a signed erasure request would be sent to the URL in {}",
                        s.name, s.mode, s.url_env
                    ),
                    Kind::Event => println!(
                        "system {} (event): the erasure_requested case event would be published; the service acknowledges through the API",
                        s.name
                    ),
                    Kind::Manual => println!(
                        "system {} (manual): a task would be opened for an operator, due in {} days: {}",
                        s.name,
                        s.due_days,
                        s.instructions.as_deref().unwrap_or_default()
                    ),
                }
            }
            if subject.is_some() {
                println!("(dry run: nothing was erased)");
            }
            Ok(())
        }
        DatamapCmd::Check {
            datamap,
            sample,
            json,
        } => {
            let map = lethe_connect::DataMap::load(&datamap)?;
            let (bar, tty) = progress_bar("columns");
            let run = lethe_connect::check::check_systems(
                &map,
                sample,
                |system, msg| bar.println(format!("{system}: {msg}")),
                |system, done, total| show_progress(&bar, tty, "sampled", system, done, total),
            )
            .await;
            bar.finish_and_clear();
            let run = run?;
            let errors = run.errors();
            let accepted = run.accepted();
            let (findings, unchecked) = (run.findings, run.unchecked);
            if json {
                println!("{}", serde_json::to_string_pretty(&findings)?);
            } else {
                for f in &findings {
                    println!("{f}");
                }
                for u in &unchecked {
                    println!(
                        "note: {u} has no schema Lethe can read (http or manual); not checked"
                    );
                }
                println!(
                    "{} finding(s): {errors} error(s), {} warning(s), {accepted} accepted as not personal data",
                    findings.len(),
                    findings.len() - errors - accepted
                );
            }
            if errors > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

/// A progress bar on stderr when it is a terminal; otherwise a line per
/// tenth (CI logs).
fn progress_bar(what: &'static str) -> (indicatif::ProgressBar, bool) {
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(0),
        if tty {
            indicatif::ProgressDrawTarget::stderr()
        } else {
            indicatif::ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{prefix:>12}} [{{bar:30}}] {{pos}}/{{len}} {what} {{elapsed}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    (bar, tty)
}

fn show_progress(
    bar: &indicatif::ProgressBar,
    tty: bool,
    what: &str,
    prefix: &str,
    done: usize,
    total: usize,
) {
    if tty {
        bar.set_prefix(prefix.to_owned());
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    } else if done == total || done.is_multiple_of((total / 10).max(1)) {
        eprintln!("{prefix}: {what} {done}/{total} columns");
    }
}

async fn datamap_init(
    url_env: &str,
    subject: &str,
    name: &str,
    sample: u32,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    let url = std::env::var(url_env).map_err(|_| {
        anyhow::anyhow!(
            "the environment variable {url_env} is not set; export it with the database URL"
        )
    })?;
    let kind = if url.starts_with("sqlite:") {
        "sqlite"
    } else if url.starts_with("postgres") {
        "postgres"
    } else if url.starts_with("mysql:") || url.starts_with("mariadb:") {
        "mysql"
    } else {
        bail!("the URL in {url_env} must start with sqlite:, postgres:, mysql: or mariadb:");
    };
    let Some((table, column)) = subject.split_once('.') else {
        bail!("--subject: write TABLE.COLUMN, e.g. --subject customer.customer_id");
    };
    let stub = lethe_connect::DataMap::parse(&format!(
        "[[systems]]\nname = \"{name}\"\nkind = \"{kind}\"\nurl_env = \"{url_env}\"\n"
    ))
    .map_err(|e| anyhow::anyhow!("--name or --url-env: {e}"))?;
    let system = &stub.systems[0];
    let sys = lethe_connect::SqlSystem::connect(system, &url).await?;
    let schema = sys.schema();
    let Some(st) = schema.table(table) else {
        let mut near: Vec<&String> = schema
            .tables
            .keys()
            .filter(|t| t.contains(table) || table.contains(t.as_str()))
            .take(5)
            .collect();
        near.sort();
        bail!(
            "--subject: the database has no table {table}{}",
            if near.is_empty() {
                String::new()
            } else {
                format!(
                    " (did you mean {}?)",
                    near.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
    };
    if st.column(column).is_none() {
        bail!(
            "--subject: table {table} has no column {column} (its columns: {})",
            st.columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    eprintln!("{name}: {} tables read", schema.tables.len());
    let (bar, tty) = progress_bar("columns");
    let cols = lethe_connect::check::uncovered_columns(system, schema);
    let (samples, _) = if sample == 0 {
        Default::default()
    } else {
        sys.sample_all(&cols, sample, |d, t| {
            show_progress(&bar, tty, "sampled", name, d, t)
        })
        .await?
    };
    let ids = if sample == 0 {
        vec![]
    } else {
        sys.sample_ids(table, column, 5).await?
    };
    let hits = sys
        .find_ids(&ids, &[(table.to_owned(), column.to_owned())], |d, t| {
            show_progress(&bar, tty, "searched for subject ids in", name, d, t)
        })
        .await?;
    bar.finish_and_clear();
    if sample > 0 && lethe_connect::discover::distinctive(&ids).is_empty() {
        eprintln!(
            "note: the subject ids are short numbers, so columns holding them without a foreign key cannot be told apart by value; only foreign keys and names were followed"
        );
    }
    let p = lethe_connect::init::propose(
        schema,
        &lethe_connect::init::Subject {
            system: name,
            kind,
            url_env,
            table,
            column,
        },
        &hits,
        &samples,
    );
    match &out {
        Some(f) => {
            std::fs::write(f, &p.text).with_context(|| format!("writing {}", f.display()))?
        }
        None => print!("{}", p.text),
    }
    eprintln!(
        "{name}: {} table(s) mapped ({} by value), {} to decide",
        p.mapped.len(),
        p.by_value,
        p.todo.len()
    );
    for t in &p.todo {
        eprintln!("  TODO {t}");
    }
    if let Some(f) = out {
        eprintln!(
            "written to {}; next: lethe datamap check --datamap {}",
            f.display(),
            f.display()
        );
    }
    Ok(())
}

/// `lethe backup` and `restore` copy the embedded SQLite store; a
/// PostgreSQL store is backed up by PostgreSQL's own tools.
fn sqlite_only(cfg: &Config, what: &str) -> anyhow::Result<()> {
    if cfg.store.url.is_some() || cfg.store.url_env.is_some() {
        anyhow::bail!(
            "lethe {what} copies the embedded SQLite store; this installation keeps its data in PostgreSQL: use pg_dump or continuous archiving for the database, and keep the data directory's key files (lethe.key, audit.key, vault.kek) apart, as docs/operations.md describes"
        );
    }
    Ok(())
}

async fn open_store(config: &Path) -> anyhow::Result<(Config, lethe_store::Store)> {
    let cfg = load_config(config)?;
    let store = lethe_store::Store::open_url(
        &cfg.store_url().map_err(anyhow::Error::msg)?,
        Default::default(),
    )
    .await?;
    Ok((cfg, store))
}

/// Puts the audit events this command (or a running instance) queued into
/// the tree: the running instance's sequencer does it, or, if none runs,
/// this process takes the sequencer's lease and does.
pub(crate) async fn integrate_audit(store: &lethe_store::Store) -> anyhow::Result<()> {
    let wait = std::time::Duration::from_millis(
        u64::try_from(lethe_store::LEASE_TTL_MS).unwrap_or(10_000) + 5_000,
    );
    store.integrate_queued(wait).await?;
    // A lease this command took is given back, so a running instance
    // need not wait for it to expire.
    store.release_sequencer().await?;
    Ok(())
}

async fn audit(cmd: AuditCmd) -> anyhow::Result<()> {
    match cmd {
        AuditCmd::Export { config, out } => {
            let (_, store) = open_store(&config).await?;
            integrate_audit(&store).await?;
            let mut events = vec![];
            loop {
                let page = store.export_events(events.len() as u64 + 1, 50_000).await?;
                if page.is_empty() {
                    break;
                }
                events.extend(page);
            }
            let tree_heads = store.tree_heads(0, u32::MAX).await?;
            let n = (events.len(), tree_heads.len());
            let mut bytes = vec![];
            lethe_ledger::write_log_file(&mut bytes, &events, &tree_heads);
            std::fs::write(&out, bytes)?;
            eprintln!(
                "exported {} events and {} signed tree heads to {}",
                n.0,
                n.1,
                out.display()
            );
            Ok(())
        }
        AuditCmd::Verify { log, public_key } => {
            let text = std::fs::read_to_string(&log)
                .with_context(|| format!("reading {}", log.display()))?;
            // A log file (`lethe audit export`) or the JSON of GET /v1/audit/export.
            let result = if text.starts_with("{\"format\"") {
                lethe_ledger::verify_log_file(&text, &public_key).map_err(|e| e.to_string())
            } else {
                let export: lethe_ledger::LogExport = serde_json::from_str(&text).map_err(|e| {
                    anyhow::anyhow!("{} is not a Lethe log export: {e}", log.display())
                })?;
                lethe_ledger::verify_log(&export, &public_key).map_err(|e| e.to_string())
            };
            match result {
                Ok(v) => {
                    println!(
                        "log verified: {} events, {} signed tree heads; {} event(s) after the last signed head",
                        v.events, v.tree_heads, v.unsigned_tail
                    );
                    Ok(())
                }
                Err(e) => bail!("log does NOT verify: {e}"),
            }
        }
        AuditCmd::Monitor {
            url,
            state,
            public_key,
            every,
        } => monitor_cmd::run(url, state, public_key, every).await,
        AuditCmd::PublicKey { config } => {
            let cfg = load_config(&config)?;
            println!(
                "{}",
                lethe_server::secrets::load_or_create_signer(&cfg.data_dir)?.public_key_hex()
            );
            Ok(())
        }
    }
}

async fn report(
    config: PathBuf,
    from: Option<String>,
    to: Option<String>,
    out: PathBuf,
    verify: Option<PathBuf>,
    public_key: Option<String>,
) -> anyhow::Result<()> {
    if let Some(file) = verify {
        let pk = public_key.context("--verify needs --public-key")?;
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        // A report made here, or one published on /transparency.
        let (ok, from, to) = match serde_json::from_str::<lethe_ledger::report::SignedReport>(&text)
        {
            Ok(r) => (r.verify(&pk), r.report.from, r.report.to),
            Err(_) => {
                let d: lethe_ledger::report::SignedDoc =
                    serde_json::from_str(&text).map_err(|e| {
                        anyhow::anyhow!("{} is not a signed report: {e}", file.display())
                    })?;
                let field = |k: &str| d.report[k].as_str().unwrap_or("?").to_owned();
                (d.verify(&pk), field("from"), field("to"))
            }
        };
        if ok {
            println!("report {from} — {to} is signed by {pk}");
            return Ok(());
        }
        bail!("report {} does NOT verify", file.display());
    }
    let (from, to) = (
        from.context("--from is required")?,
        to.context("--to is required")?,
    );
    let (cfg, store) = open_store(&config).await?;
    let tz = jiff::tz::TimeZone::get(&cfg.time_zone)?;
    let from_t =
        lethe_server::report::parse_when(&from, &tz).map_err(|e| anyhow::anyhow!("--from: {e}"))?;
    let to_t =
        lethe_server::report::parse_when(&to, &tz).map_err(|e| anyhow::anyhow!("--to: {e}"))?;
    if to_t <= from_t {
        bail!("--to must be after --from");
    }
    let signer = lethe_server::secrets::load_or_create_signer(&cfg.data_dir)?;
    let signed = lethe_server::report::compliance(
        &store,
        &signer,
        from_t,
        to_t,
        jiff::Timestamp::now(),
        None,
    )
    .await?;
    std::fs::create_dir_all(&out)?;
    let html = lethe_server::report::report_page(&signed);
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&signed)?,
    )?;
    std::fs::write(out.join("report.html.sig"), signer.sign(html.as_bytes()))?;
    std::fs::write(out.join("report.html"), html)?;
    eprintln!(
        "wrote report.json, report.html and report.html.sig to {} ({} cases)",
        out.display(),
        signed.report.cases
    );
    Ok(())
}

fn new_api_key() -> String {
    let bytes: [u8; 24] = rand::random();
    format!("lk_{}", hex::encode(bytes))
}

/// The demo's settings (flags of `lethe demo`).
#[derive(clap::Args)]
struct DemoOptions {
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Number of Demo Mart users to generate on first run.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=2_000_000))]
    users: u32,
    /// Write {url, api_key} as JSON to this file once listening.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Seconds of a job lease (shorter makes crash recovery faster).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(i64).range(1..=3600))]
    lease_secs: i64,
    /// How often the timer looks at deadlines (ms; the demo looks often so
    /// that its clock jumps act at once; `lethe serve` defaults to 1000).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    timer_interval_ms: u64,
    /// How often expired keeps and tombstones are purged (s; `lethe serve`
    /// defaults to 300).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    purge_interval_secs: u64,
    /// Cases need an agent's review before cooling-off.
    #[arg(long)]
    review: bool,
    /// Deadline rules: cn, gdpr or ccpa.
    #[arg(long, default_value = "cn")]
    deadlines: String,
    /// An operator calendar file extending the shipped one (watched).
    #[arg(long)]
    calendar_file: Option<PathBuf>,
    /// Accept the app's session tokens (HS256) signed with the secret in
    /// this environment variable.
    #[arg(long)]
    session_secret_env: Option<String>,
    /// Enable face verification: the provider's callback secret is in
    /// this environment variable (the demo platform then holds faces).
    #[arg(long)]
    face_secret_env: Option<String>,
    /// Send one-time codes to this SMS gateway (signed; the secret is in
    /// LETHE_SMS_SECRET) instead of the dev outbox.
    #[arg(long)]
    sms_url: Option<String>,
    /// Codes per client address per hour (the demo's callers all share
    /// one address, so the production default of 20 is raised).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    sms_per_client: u32,
    /// Deliver notifications to this webhook (secret in LETHE_WEBHOOK_SECRET).
    #[arg(long)]
    webhook_url: Option<String>,
    /// Attempts of a job before its case is marked failed.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=100))]
    max_attempts: u32,
    /// Longest wait between retries of a job (and of an erasure held by
    /// schema drift).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(i64).range(1..=86_400))]
    max_backoff_secs: i64,
    /// Requests per second allowed per API key.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    rate: u32,
    /// Publish case events to this NATS server (JetStream).
    #[arg(long)]
    nats_url: Option<String>,
    /// The events' subject prefix; the stream is named after it
    /// (dots become '_', upper case).
    #[arg(long, default_value = "lethe.cases")]
    events_prefix: String,
    /// Keep Lethe's own data in PostgreSQL at this URL (no password in it:
    /// use --store-url-env for one); default: SQLite under the data directory.
    #[arg(long, conflicts_with = "store_url_env")]
    store_url: Option<String>,
    /// Keep Lethe's own data in PostgreSQL: the environment variable
    /// holding its URL.
    #[arg(long)]
    store_url_env: Option<String>,
    /// Ask this witness to cosign each checkpoint: `<vkey>=<url>` (the
    /// witness's verifier key and submission prefix); repeatable.
    #[arg(long)]
    witness: Vec<String>,
    /// Turn the public /transparency pages and monthly reports off.
    #[arg(long)]
    no_transparency: bool,
    /// Deliver support answers to this endpoint (signed; the secret is in
    /// LETHE_SUPPORT_SECRET) instead of the dev outbox.
    #[arg(long)]
    support_delivery_url: Option<String>,
}

async fn demo(data_dir: PathBuf, o: DemoOptions) -> anyhow::Result<()> {
    let DemoOptions {
        listen,
        users,
        ready_file,
        lease_secs,
        timer_interval_ms,
        purge_interval_secs,
        max_attempts,
        max_backoff_secs,
        rate,
        review,
        deadlines,
        calendar_file,
        webhook_url,
        session_secret_env,
        face_secret_env,
        sms_url,
        sms_per_client,
        nats_url,
        events_prefix,
        store_url,
        store_url_env,
        witness,
        no_transparency,
        support_delivery_url,
    } = o;
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;
    let mart = data_dir.join("demo-mart.db");
    let started = std::time::Instant::now();
    if demo_mart::ensure(&mart, users).await? {
        tracing::info!(
            users,
            ms = started.elapsed().as_millis() as u64,
            "Demo Mart generated"
        );
    }
    let datamap = data_dir.join("datamap.toml");
    if !datamap.exists() {
        std::fs::write(
            &datamap,
            include_str!("../../../examples/demo-mart/datamap.toml"),
        )?;
    }
    let mut cfg_value = serde_json::json!({
        "listen": listen.to_string(),
        "data_dir": data_dir,
        "datamap": datamap,
        "policy": { "cooling_off_days": 7, "review_required": review, "deadlines": deadlines },
        "limits": { "rate_per_second": rate, "rate_burst": rate.saturating_mul(2) },
        "worker": { "lease_secs": lease_secs, "max_attempts": max_attempts, "max_backoff_secs": max_backoff_secs, "timer_interval_ms": timer_interval_ms, "purge_interval_secs": purge_interval_secs },
    });
    if let Some(f) = calendar_file {
        cfg_value["calendar_file"] = serde_json::json!(std::path::absolute(f)?);
    }
    // Signed carrier events are accepted when LETHE_CARRIER_SECRET is set.
    let mut identity = serde_json::json!({
        "sms_per_client_per_hour": sms_per_client,
        "carrier_secret_env": "LETHE_CARRIER_SECRET",
    });
    if let Some(v) = session_secret_env {
        identity["session_secret_env"] = serde_json::json!(v);
    }
    if let Some(v) = face_secret_env {
        identity["face_secret_env"] = serde_json::json!(v);
        identity["platform_holds"] = serde_json::json!(["phone", "id_number", "name", "face"]);
        identity["methods"] = serde_json::json!(["sms", "app", "hotline", "counter", "face"]);
    }
    if let Some(u) = sms_url {
        identity["sms_url"] = serde_json::json!(u);
        identity["sms_secret_env"] = serde_json::json!("LETHE_SMS_SECRET");
    }
    cfg_value["identity"] = identity;
    if let Some(u) = webhook_url {
        cfg_value["notifications"] = serde_json::json!({ "url": u });
    }
    if let Some(u) = nats_url {
        cfg_value["events"] = serde_json::json!({
            "nats_url": u,
            "stream": events_prefix.replace(['.', '-'], "_").to_uppercase(),
            "subject_prefix": events_prefix,
        });
    }
    if let Some(env) = store_url_env {
        cfg_value["store"] = serde_json::json!({ "url_env": env });
    }
    if let Some(url) = store_url {
        cfg_value["store"] = serde_json::json!({ "url": url });
    }
    let witnesses = witness
        .iter()
        .map(|w| {
            let (vkey, url) = w.split_once('=').context("--witness takes <vkey>=<url>")?;
            Ok(serde_json::json!({ "vkey": vkey, "url": url }))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    cfg_value["transparency"] =
        serde_json::json!({ "enabled": !no_transparency, "witnesses": witnesses });
    if let Some(u) = support_delivery_url {
        cfg_value["support"] = serde_json::json!({
            "delivery_url": u,
            "delivery_secret_env": "LETHE_SUPPORT_SECRET",
        });
    }
    let cfg: Config = serde_json::from_value(cfg_value.clone())?;
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("demo configuration: {e}"))?;
    // The same configuration as a file, for the commands that read one
    // (`lethe audit export`, `lethe report`, `lethe apikey create` ...).
    let cfg_file = data_dir.join("lethe.toml");
    let toml_text = toml::to_string(&cfg_value)
        .map_err(|e| anyhow::anyhow!("writing the demo configuration: {e}"))?;
    write_private(
        &cfg_file,
        &format!(
            "# Written by `lethe demo` at each start: the demo's own configuration,\n# for the commands that take --config. Not for `lethe serve`: the demo\n# runs its clock and platform in-process.\n{toml_text}"
        ),
    )?;
    // The demo clock: real time plus an offset that the dev routes move
    // forward, kept in a file so a restart does not turn time back.
    let offset_file = data_dir.join("demo-clock-offset");
    let offset = std::fs::read_to_string(&offset_file)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or(0);
    let clock = Arc::new(ManualClock::new(
        jiff::Timestamp::now,
        jiff::SignedDuration::from_secs(offset),
    ));
    let server = Server::prepare(&cfg, ClockMode::Manual { clock, offset_file }).await?;
    let key_file = data_dir.join("demo-api-key");
    let api_key = match std::fs::read_to_string(&key_file) {
        Ok(k) => k.trim().to_owned(),
        Err(_) => {
            let k = new_api_key();
            server
                .state
                .store
                .insert_api_key("demo".into(), lethe_server::middleware::hash_api_key(&k))
                .await?;
            write_private(&key_file, &k)?;
            k
        }
    };
    let agents = demo_agents(&server, &data_dir).await?;
    let addr = server.local_addr()?;
    let url = format!("http://{addr}");
    // Settlement instructions (and, without --webhook-url, notifications)
    // go to Demo Mart's own endpoints, signed with a secret of this run.
    let secret = format!("whsec_{}", hex::encode(rand::random::<[u8; 24]>()));
    let _ = server
        .state
        .demo_platform
        .set(lethe_server::demo_platform::Link {
            url: url.clone(),
            secret,
        });
    if let Some(rf) = ready_file {
        let tmp = rf.with_extension("tmp");
        std::fs::write(
            &tmp,
            serde_json::json!({ "url": url, "api_key": api_key, "data_dir": data_dir }).to_string(),
        )?;
        std::fs::rename(&tmp, &rf)?;
    }
    println!(
        r#"
Lethe demo is running with Demo Mart ({users} users at first run).

  URL:       {url}
  API docs:  {url}/docs
  API key:   {api_key}
  Data:      {dir}

In a browser (a phone-sized window shows the pages as users see them):
  {url}/demo-platform/app
      Demo Mart's app: press 注销账号 to enter the cancellation centre as a
      user (in the demo, the SMS with the code shows on the page)
  {url}/console/
      the agent console; the demo's agents, with their passwords and TOTP
      enrolments, are in {agents}
      (a code without an authenticator app: lethe agent code '<otpauth URL>')

Or the API. Try this (each POST needs a fresh Idempotency-Key):

  K={api_key}; U={url}
  H="-H 'Authorization: Bearer $K' -H 'Content-Type: application/json'"
  curl -s -X POST $U/v1/cases -H "Authorization: Bearer $K" -H "Content-Type: application/json" \
       -H "Idempotency-Key: $(uuidgen || date +%s%N)" -d '{{"subject_id":"1","channel":"app"}}'

Then follow README.md ("Walk through one cancellation"): send and verify the
code (the SMS lands in /v1/dev/outbox/{{id}}), run the checks, acknowledge the
consequences, confirm, move the demo clock 7 days with /v1/dev/clock/advance,
and read the receipt. Stop with Ctrl-C.

The commands that read a configuration take the demo's (in another terminal):
  {bin} audit export --config {cfg} --out audit.log
  {bin} report --config {cfg} --from 2026-01-01 --to 2027-01-01 --out report/
"#,
        dir = data_dir.display(),
        agents = agents.display(),
        cfg = cfg_file.display(),
        bin = std::env::current_exe()
            .ok()
            .and_then(|p| {
                let cwd = std::env::current_dir().ok()?;
                Some(p.strip_prefix(&cwd).map(|r| r.to_path_buf()).unwrap_or(p))
            })
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "lethe".into())
    );
    server.run().await?;
    Ok(())
}

/// The demo's console accounts (an agent, a reviewer, an auditor), made on
/// first run; their passwords and TOTP enrolments are kept in a 0600 file
/// of the data directory, whose path is returned.
async fn demo_agents(server: &Server, data_dir: &Path) -> anyhow::Result<PathBuf> {
    use lethe_server::console::Role;
    let file = data_dir.join("demo-agents.txt");
    if file.exists() {
        return Ok(file);
    }
    // A store restored from a backup has the agents but not this file:
    // their credentials stay with whoever kept the file.
    if server
        .state
        .store
        .agent_by_username("demo.agent")
        .await?
        .is_some()
    {
        return Ok(file);
    }
    let mut text = String::from(
        "# The demo's console accounts: sign in at /console/ with the username,\n# the password and the code of the TOTP enrolment (an authenticator app,\n# or: lethe agent code '<otpauth URL>').\n",
    );
    for (name, role) in [
        ("demo.agent", Role::Agent),
        ("demo.reviewer", Role::Reviewer),
        ("demo.auditor", Role::Auditor),
    ] {
        let (password, url) = lethe_server::console::create_agent(&server.state, name, role, None)
            .await
            .map_err(|p| anyhow::anyhow!("creating the demo agent {name}: {}", p.detail))?;
        text.push_str(&format!(
            "\n{name} ({})\n  password: {password}\n  totp: {url}\n",
            role.as_str()
        ));
    }
    write_private(&file, &text)?;
    Ok(file)
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text)?;
    Ok(())
}
