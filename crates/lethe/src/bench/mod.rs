//! `lethe bench ...`: benchmarks that print figures against a raw baseline
//! measured in the same run. Built only with `--features bench` (the
//! `bench/*.sh` scripts do): the production binary carries none of this.

mod erase;
mod export;
mod instances;
mod micro;
mod purge;
mod reapply;
mod sequencer;

use anyhow::Context;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Erasure: Lethe's SQL connector against hand-written set-based SQL on
    /// the same database (8 related tables, 20 rows per user).
    Erase {
        /// postgres (127.0.0.1:5432), mysql (MariaDB, 127.0.0.1:3306) or sqlite.
        #[arg(long, default_value = "postgres", value_parser = ["postgres", "mysql", "sqlite"])]
        kind: String,
        #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1000..=10_000_000))]
        users: u64,
        /// Users erased by each of Lethe and the baseline.
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..=1_000_000))]
        erase: u64,
        /// Subjects per set-based batch.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=1000))]
        batch: u64,
    },
    /// A purge of many accounts on PostgreSQL, end to end through a
    /// `lethe serve` of its own, against the erasure engine alone on as
    /// many other accounts of the same database.
    Purge {
        #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1000..=1_000_000))]
        subjects: u64,
    },
    /// Reapply after a backup restore: the subject ids of a restored
    /// system scanned, pseudonymised and matched against the erasure
    /// tombstones, against the raw scan of the same ids; then erased again.
    Reapply {
        /// postgres (127.0.0.1:5432), mysql (MariaDB, 127.0.0.1:3306) or sqlite.
        #[arg(long, default_value = "postgres", value_parser = ["postgres", "mysql", "sqlite"])]
        kind: String,
        #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1000..=20_000_000))]
        ids: u64,
        /// Subjects erased since the backup (tombstones), spread over the ids.
        #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        erased: u64,
    },
    /// The audit log's sequencer integrating a backlog of queued events,
    /// against the raw move of the same rows.
    Sequencer {
        /// postgres (127.0.0.1:5432) or sqlite.
        #[arg(long, default_value = "postgres", value_parser = ["postgres", "sqlite"])]
        kind: String,
        #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1000..=20_000_000))]
        leaves: u64,
    },
    /// A data export of about 1 GB (one subject, SQLite): Lethe's sealed
    /// archive against raw JSON lines; throughput and peak memory.
    Export {
        /// Size of the subject's data in MB.
        #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=65_536))]
        mb: u64,
        /// Rounds (each: the baseline, then Lethe); the ratio reported is
        /// the median of the rounds' ratios.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=9))]
        rounds: u32,
    },
    /// One side of `bench export`, in its own process (internal).
    #[command(hide = true)]
    ExportChild {
        #[arg(long, value_parser = ["raw", "lethe"])]
        side: String,
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Cases per second with 1, 2 and 3 instances of `lethe demo` on one
    /// PostgreSQL store, driven over HTTP from this process; ratios against
    /// one instance.
    Instances {
        /// An existing database to connect to; the runs use fresh databases
        /// of their own, dropped at the end.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
        pg_url: String,
        /// Instance counts to measure, comma-separated (1 to 8 each).
        #[arg(long, default_value = "1,2,3", value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..=8))]
        instances: Vec<u64>,
        /// Cases per run.
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(10..=100_000))]
        cases: u64,
        /// Concurrent clients.
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=256))]
        concurrency: u64,
        /// Rounds: the counts run in order, then in reverse, and so on
        /// (1,2,3,3,2,1,...), so that a machine getting faster or slower
        /// during the run weighs on every count alike; the ratios are of
        /// each count's median.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10))]
        rounds: u64,
        /// Each instance's runtime threads (`lethe --worker-threads`), the
        /// same for every count. Without it, each instance gets its share
        /// of the cores, as docs/operations.md advises: cores / instances,
        /// at least 1 (one instance keeps the runtime's default, all cores).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
        instance_threads: Option<u16>,
    },
    /// Case intake and whole-case throughput of one instance on an empty
    /// store and on one preloaded with erased cases and their audit events
    /// (bulk SQL); ratios against the empty store.
    History {
        /// postgres (a fresh database on --pg-url's server) or sqlite.
        #[arg(long, default_value = "postgres", value_parser = ["postgres", "sqlite"])]
        kind: String,
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
        pg_url: String,
        /// Erased cases preloaded (each with the template case's audit
        /// events, about ten).
        #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        preload: u64,
        /// Cases per measure (intake, and whole cases).
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(10..=100_000))]
        cases: u64,
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=256))]
        concurrency: u64,
    },
    /// A soak test: mixed traffic from this process against instances on
    /// one PostgreSQL store, with errors, throughput and memory over time.
    Soak {
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
        pg_url: String,
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=8))]
        instances: u64,
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1440))]
        minutes: u64,
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=256))]
        concurrency: u64,
    },
    /// Audit appends (batched, Merkle tree), verification, raw SHA-256.
    Audit {
        #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1000..=50_000_000))]
        events: u64,
    },
    /// The vault library against the raw AEAD, 1 KiB fields.
    Vault {
        #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        ops: u64,
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        subjects: u64,
    },
    /// The vault's HTTP batch API of a running Lethe (the API key is read
    /// from the file, never from a flag).
    VaultHttp {
        #[arg(long)]
        url: String,
        #[arg(long)]
        key_file: PathBuf,
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
        seconds: u64,
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
        batch: u64,
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
        concurrency: u64,
    },
}

/// Runs one benchmark.
pub async fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Instances {
            pg_url,
            instances,
            cases,
            concurrency,
            rounds,
            instance_threads,
        } => {
            let counts: Vec<usize> = instances
                .iter()
                .map(|n| usize::try_from(*n))
                .collect::<Result<_, _>>()?;
            instances::instances(
                &pg_url,
                &counts,
                usize::try_from(cases)?,
                usize::try_from(concurrency)?,
                usize::try_from(rounds)?,
                instance_threads,
            )
            .await
        }
        BenchCmd::History {
            kind,
            pg_url,
            preload,
            cases,
            concurrency,
        } => {
            instances::history(
                &kind,
                &pg_url,
                preload,
                usize::try_from(cases)?,
                usize::try_from(concurrency)?,
            )
            .await
        }
        BenchCmd::Soak {
            pg_url,
            instances,
            minutes,
            concurrency,
        } => {
            instances::soak(
                &pg_url,
                usize::try_from(instances)?,
                minutes,
                usize::try_from(concurrency)?,
            )
            .await
        }
        BenchCmd::Audit { events } => micro::audit(events as usize),
        BenchCmd::Erase {
            kind,
            users,
            erase,
            batch,
        } => erase::erase(&kind, users, erase, batch).await,
        BenchCmd::Purge { subjects } => purge::run(subjects).await,
        BenchCmd::Reapply { kind, ids, erased } => reapply::run(&kind, ids, erased).await,
        BenchCmd::Sequencer { kind, leaves } => sequencer::run(&kind, leaves).await,
        BenchCmd::Export { mb, rounds } => export::run(mb, rounds).await,
        BenchCmd::ExportChild { side, db, out } => export::child(&side, db, out).await,
        BenchCmd::Vault { ops, subjects } => {
            micro::vault_library(ops as usize, subjects as usize).await
        }
        BenchCmd::VaultHttp {
            url,
            key_file,
            seconds,
            batch,
            concurrency,
        } => {
            let key = std::fs::read_to_string(&key_file)
                .with_context(|| format!("reading the API key from {}", key_file.display()))?;
            micro::vault_http(
                &url,
                key.trim(),
                seconds,
                batch as usize,
                concurrency as usize,
            )
            .await
        }
    }
}
