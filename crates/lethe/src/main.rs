//! The `lethe` command.

#[cfg(feature = "bench")]
mod bench;
mod cmd;
mod demo_mart;
mod shared;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

use shared::init_logs;

use cmd::apikey::ApikeyCmd;
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
    /// Threads of the async runtime (default: the CPUs this process may
    /// use). Several instances on one host: give each about its share of
    /// the cores, leaving the database its own.
    #[arg(long, global = true, env = "LETHE_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=256))]
    worker_threads: Option<u16>,
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
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.worker_threads {
        runtime.worker_threads(usize::from(n));
    }
    runtime
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
        Cmd::Serve { config } => cmd::serve::run(config).await,
        Cmd::Config {
            cmd: ConfigCmd::Check { config },
        } => cmd::config::check(config),
        Cmd::Apikey { cmd } => cmd::apikey::run(cmd).await,
        Cmd::Agent {
            cmd: AgentCmd::Code { otpauth },
        } => cmd::agent::code(otpauth),
        Cmd::Agent {
            cmd:
                AgentCmd::Create {
                    config,
                    username,
                    role,
                    platform,
                },
        } => cmd::agent::create(config, username, role, platform).await,
        Cmd::Backup { config, out } => cmd::backup::run_backup(config, out).await,
        Cmd::Restore {
            config,
            data,
            keys,
            force,
        } => cmd::backup::run_restore(config, data, keys, force).await,
        Cmd::Policy {
            cmd: PolicyCmd::Check { config },
        } => cmd::policy::check(config),
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
        } => cmd::receipt::verify(receipt, public_key),
        Cmd::Report {
            config,
            from,
            to,
            out,
            verify,
            public_key,
        } => report(config, from, to, out, verify, public_key).await,
        Cmd::Datamap { cmd } => datamap_cmd(cmd).await,
        Cmd::Openapi { demo } => cmd::openapi::run(demo),
        Cmd::Retention { cmd } => retention_cmd(cmd).await,
        Cmd::Erasures { cmd } => cmd::erasures::run(cmd).await,
        Cmd::Calendar { cmd } => calendar_cmd(cmd),
    }
}
