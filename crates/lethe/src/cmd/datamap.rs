//! `lethe datamap init|check|plan|install`: the data map from a live schema, its check and plan.

use anyhow::{Context, bail};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(crate) enum DatamapCmd {
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

pub(crate) async fn datamap_cmd(cmd: DatamapCmd) -> anyhow::Result<()> {
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
pub(crate) fn progress_bar(what: &'static str) -> (indicatif::ProgressBar, bool) {
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

pub(crate) fn show_progress(
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

pub(crate) async fn datamap_init(
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
