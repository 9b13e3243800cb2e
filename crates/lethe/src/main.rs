//! The `lethe` command.

#[cfg(feature = "bench")]
mod bench;
mod cmd;
mod demo_mart;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use lethe_domain::ManualClock;
use lethe_server::{ClockMode, Config, Server};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cmd::audit::{AuditCmd, audit};
use cmd::calendar::{CalendarCmd, calendar_cmd};
use cmd::datamap::{DatamapCmd, datamap_cmd};
use cmd::demo::{DemoOptions, demo};
use cmd::report::report;
use cmd::retention::{RetentionCmd, retention_cmd};

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
        cmd: cmd::export::ExportCmd,
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
        cmd: cmd::erasures::ErasuresCmd,
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
            if let Some(a) = e.downcast_ref::<cmd::monitor::Alert>() {
                eprintln!("{a}");
                std::process::exit(cmd::monitor::EXIT_MISBEHAVIOUR);
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
                    .insert_api_key(
                        name.clone(),
                        lethe_server::http::middleware::hash_api_key(&key),
                    )
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
            let step = jiff::Timestamp::now().as_second() / lethe_server::console::totp::STEP_SECS;
            let step = u64::try_from(step).context("the system clock is before 1970")?;
            println!("{:06}", lethe_server::console::totp::code_at(&key, step));
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
            let (data, keys) = cmd::backup::backup(&cfg.data_dir, &out).await?;
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
            let n = cmd::backup::restore(&cfg.data_dir, &data, keys.as_deref(), force).await?;
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
        Cmd::Export { cmd } => cmd::export::run(cmd).await,
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
        Cmd::Erasures { cmd } => cmd::erasures::run(cmd).await,
        Cmd::Calendar { cmd } => calendar_cmd(cmd),
    }
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

fn new_api_key() -> String {
    let bytes: [u8; 24] = rand::random();
    format!("lk_{}", hex::encode(bytes))
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
