//! `lethe export`: ask a running Lethe for a copy of an account's data,
//! follow its progress per system with progress bars, download it and
//! verify it against its manifest; or verify an archive already downloaded.

use anyhow::{Context, bail};
use clap::Subcommand;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub enum ExportCmd {
    /// Ask for a copy of an account's data, show the progress of each
    /// system, download the archive and verify its manifest.
    Request {
        /// Lethe's URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// The account's subject id on the platform (or use --case).
        subject: Option<String>,
        /// Take the copy as the export step of this cancellation case.
        #[arg(long, conflicts_with = "subject")]
        case: Option<String>,
        /// Where to write the archive (default: lethe-export-<id>.zip).
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Make the link work until it expires instead of once.
        #[arg(long)]
        reusable: bool,
        /// The environment variable holding the platform's API key.
        #[arg(long, default_value = "LETHE_API_KEY")]
        api_key_env: String,
        /// Give up waiting for the export after this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout_secs: u64,
    },
    /// Verify a downloaded archive against its manifest (SHA-256 and size
    /// of every file, nothing missing, nothing extra).
    Verify { file: PathBuf },
}

pub async fn run(cmd: ExportCmd) -> anyhow::Result<()> {
    match cmd {
        ExportCmd::Verify { file } => verify(&file),
        ExportCmd::Request {
            url,
            subject,
            case,
            out,
            reusable,
            api_key_env,
            timeout_secs,
        } => {
            let key = std::env::var(&api_key_env).map_err(|_| {
                anyhow::anyhow!(
                    "the environment variable {api_key_env} is not set; export the platform's API key there (lethe apikey create)"
                )
            })?;
            request(Request {
                url: url.trim_end_matches('/').to_owned(),
                subject,
                case,
                out,
                single_use: !reusable,
                key,
                timeout: Duration::from_secs(timeout_secs.clamp(1, 7 * 86_400)),
            })
            .await
        }
    }
}

fn verify(file: &Path) -> anyhow::Result<()> {
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let m = lethe_export::verify(std::io::BufReader::new(f))
        .map_err(|e| anyhow::anyhow!("{} does NOT verify: {e}", file.display()))?;
    let rows: u64 = m.datasets.iter().map(|d| d.rows).sum();
    println!(
        "{}: manifest verified — {} files, {} datasets, {} rows (export {}, created {})",
        file.display(),
        m.files.len(),
        m.datasets.len(),
        rows,
        m.export_id,
        m.created_at
    );
    for d in &m.datasets {
        println!("  {}/{}: {} rows", d.system, d.name, d.rows);
    }
    Ok(())
}

struct Request {
    url: String,
    subject: Option<String>,
    case: Option<String>,
    out: Option<PathBuf>,
    single_use: bool,
    key: String,
    timeout: Duration,
}

/// Progress display: bars on a terminal, plain lines otherwise.
struct Display {
    multi: MultiProgress,
    bars: BTreeMap<String, ProgressBar>,
    plain: bool,
    last: String,
}

impl Display {
    fn new() -> Self {
        let plain = !std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(if plain {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        });
        Self {
            multi,
            bars: BTreeMap::new(),
            plain,
            last: String::new(),
        }
    }

    fn update(&mut self, state: &str, systems: &[serde_json::Value]) {
        let mut line = format!("export {state}:");
        for s in systems {
            let name = s["system"].as_str().unwrap_or("?").to_owned();
            let pct = s["percent"].as_u64().unwrap_or(0);
            line.push_str(&format!(" {name} {pct}%"));
            let bar = self.bars.entry(name.clone()).or_insert_with(|| {
                let b = self.multi.add(ProgressBar::new(100));
                b.set_style(
                    ProgressStyle::with_template("{prefix:>14} [{bar:40}] {pos:>3}% {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                b.set_prefix(name);
                b
            });
            bar.set_position(pct);
            bar.set_message(format!(
                "{}/{} rows",
                s["done"].as_u64().unwrap_or(0),
                s["total"].as_u64().unwrap_or(0)
            ));
        }
        if self.plain && line != self.last {
            eprintln!("{line}");
            self.last = line;
        }
    }

    fn finish(&self) {
        for b in self.bars.values() {
            b.finish();
        }
    }
}

async fn request(r: Request) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let idem = uuid::Uuid::new_v4().to_string();
    let (url, body) = match (&r.case, &r.subject) {
        (Some(c), _) => (
            format!("{}/v1/cases/{c}/exports", r.url),
            serde_json::json!({ "single_use": r.single_use }),
        ),
        (None, Some(s)) => (
            format!("{}/v1/exports", r.url),
            serde_json::json!({ "subject_id": s, "single_use": r.single_use }),
        ),
        (None, None) => bail!("name the account (a subject id) or a case with --case"),
    };
    let resp = http
        .post(&url)
        .bearer_auth(&r.key)
        .header("Idempotency-Key", &idem)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("reaching Lethe at {}", r.url))?;
    let created = answer(resp).await?;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let link = created["download_url"]
        .as_str()
        .map(str::to_owned)
        .context("Lethe gave no download link")?;
    eprintln!(
        "export {id} requested; link expires at {}",
        created["expires_at"].as_str().unwrap_or("?")
    );
    let mut display = Display::new();
    let started = Instant::now();
    let ready = loop {
        let resp = http
            .get(format!("{}/v1/exports/{id}", r.url))
            .bearer_auth(&r.key)
            .send()
            .await
            .context("reading the export's progress")?;
        let v = answer(resp).await?;
        let state = v["state"].as_str().unwrap_or("?").to_owned();
        display.update(
            &state,
            v["systems"].as_array().map_or(&[][..], |a| a.as_slice()),
        );
        match state.as_str() {
            "ready" => break v,
            "queued" | "building" => {}
            other => {
                display.finish();
                bail!(
                    "the export is {other}: {}",
                    v["last_error"]
                        .as_str()
                        .unwrap_or(v["next_step"].as_str().unwrap_or(""))
                )
            }
        }
        if started.elapsed() > r.timeout {
            display.finish();
            bail!(
                "the export was not ready after {} s; it goes on: read it with GET /v1/exports/{id}",
                r.timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    display.finish();
    let out = r
        .out
        .unwrap_or_else(|| PathBuf::from(format!("lethe-export-{id}.zip")));
    download(&link, &out, ready["bytes"].as_u64()).await?;
    verify(&out)
}

async fn answer(resp: reqwest::Response) -> anyhow::Result<serde_json::Value> {
    let status = resp.status();
    let v: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
    if !status.is_success() {
        bail!(
            "Lethe answered {status}: {}{}",
            v["detail"].as_str().unwrap_or("(no detail)"),
            v["fix"]
                .as_str()
                .map(|f| format!(" — {f}"))
                .unwrap_or_default()
        );
    }
    Ok(v)
}

/// Downloads through the link into `out` (written as `.part`, renamed when
/// complete), with a byte progress bar.
async fn download(link: &str, out: &Path, bytes: Option<u64>) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .build()?;
    let mut resp = http
        .get(link)
        .send()
        .await
        .context("downloading the archive")?;
    if !resp.status().is_success() {
        return answer(resp).await.map(|_| ());
    }
    let bar = ProgressBar::with_draw_target(
        bytes.or(resp.content_length()),
        if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>14} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix("download");
    let part = out.with_extension("part");
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(&part).with_context(|| format!("creating {}", part.display()))?,
    );
    let mut n = 0u64;
    while let Some(chunk) = resp.chunk().await.context("the download broke off")? {
        f.write_all(&chunk)
            .with_context(|| format!("writing {}", part.display()))?;
        n += chunk.len() as u64;
        bar.set_position(n);
    }
    f.flush()?;
    drop(f);
    bar.finish();
    std::fs::rename(&part, out).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("downloaded {n} bytes to {}", out.display());
    Ok(())
}
