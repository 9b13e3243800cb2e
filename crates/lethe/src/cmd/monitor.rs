//! `lethe audit monitor`: a third party's watch over a Lethe installation's
//! published log. Each check fetches `/transparency.json`, verifies the
//! latest head's signature under the pinned key, and checks that it
//! extends the last head this monitor saw (a consistency proof from
//! `/transparency/proofs/consistency`). The state file keeps that head.
//! A rollback, a fork or a changed key ends the monitor with exit code 3.

use anyhow::{Context, bail};
use lethe_ledger::monitor::{Misbehaviour, Seen, Step, check};
use lethe_ledger::{Hash, TreeHead};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The exit code of a detected misbehaviour (a fork, a rollback, a key
/// change): distinct from 1, a failure to check.
pub const EXIT_MISBEHAVIOUR: i32 = 3;
const TIMEOUT: Duration = Duration::from_secs(20);
/// Largest answer read from the installation.
const MAX_ANSWER: usize = 8 << 20;

#[derive(Debug, Serialize, Deserialize)]
struct State {
    url: String,
    seen: Seen,
    checked_at: String,
}

#[derive(Deserialize)]
struct Published {
    public_key: String,
    latest: Option<TreeHead>,
}

#[derive(Deserialize)]
struct Proof {
    proof: Vec<String>,
}

/// A detected misbehaviour, for `main` to turn into the exit code.
#[derive(Debug)]
pub struct Alert(pub Misbehaviour);

impl std::fmt::Display for Alert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ALERT: {}", self.0)
    }
}

impl std::error::Error for Alert {}

async fn get(client: &reqwest::Client, url: &str) -> anyhow::Result<Vec<u8>> {
    let mut resp = client
        .get(url)
        .timeout(TIMEOUT)
        .send()
        .await
        .with_context(|| format!("fetching {url}"))?;
    if !resp.status().is_success() {
        bail!("{url} answered {}", resp.status());
    }
    let mut body = vec![];
    while let Some(chunk) = resp
        .chunk()
        .await
        .with_context(|| format!("reading {url}"))?
    {
        if body.len() + chunk.len() > MAX_ANSWER {
            bail!("{url} answered more than {MAX_ANSWER} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn load(path: &Path) -> anyhow::Result<Option<State>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a monitor state file (remove it to start over)",
                path.display()
            )
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn save(path: &Path, s: &State) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(s)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// One check; prints what it saw. A misbehaviour is an [`Alert`] error.
async fn check_once(
    client: &reqwest::Client,
    base: &str,
    state_path: &Path,
    pinned: Option<&str>,
) -> anyhow::Result<()> {
    let prev = load(state_path)?;
    if let Some(p) = &prev
        && p.url != base
    {
        bail!(
            "{} watches {}, not {base}; use another --state file",
            state_path.display(),
            p.url
        );
    }
    let body = get(client, &format!("{base}/transparency.json")).await?;
    let published: Published = serde_json::from_slice(&body).with_context(|| {
        format!("{base}/transparency.json is not a Lethe transparency document")
    })?;
    if let Some(k) = pinned
        && !k.eq_ignore_ascii_case(&published.public_key)
    {
        return Err(Alert(Misbehaviour::KeyChanged {
            pinned: k.to_owned(),
            now: published.public_key,
        })
        .into());
    }
    let seen = prev.as_ref().map(|p| &p.seen);
    let Some(head) = published.latest else {
        // Once a head was seen, a log that shows none hides its history.
        if let Some(s) = seen {
            return Err(Alert(Misbehaviour::Vanished {
                seen: s.head.tree_size,
            })
            .into());
        }
        println!("{base}: no tree head published yet; nothing to check");
        return Ok(());
    };
    let proof: Vec<Hash> = match seen {
        Some(s) if head.tree_size > s.head.tree_size => {
            let url = format!(
                "{base}/transparency/proofs/consistency?first={}&second={}",
                s.head.tree_size, head.tree_size
            );
            let p: Proof = serde_json::from_slice(&get(client, &url).await?)
                .with_context(|| format!("{url} is not a consistency proof"))?;
            p.proof
                .iter()
                .map(|h| {
                    let mut out = [0u8; 32];
                    hex::decode_to_slice(h, &mut out).map(|()| out)
                })
                .collect::<Result<_, _>>()
                .with_context(|| format!("{url}: a proof hash is not 32 bytes of hex"))?
        }
        _ => vec![],
    };
    let (step, next) = check(seen, &published.public_key, &head, &proof)
        .map_err(|m| anyhow::Error::new(Alert(m)))?;
    match step {
        Step::First => println!(
            "{base}: first head seen, {} events, root {}; key {} pinned",
            head.tree_size, head.root_hash, published.public_key
        ),
        Step::Same => println!("{base}: unchanged, {} events", head.tree_size),
        Step::Grew { from, to } => {
            println!(
                "{base}: consistent, {from} -> {to} events, root {}",
                head.root_hash
            )
        }
    }
    save(
        state_path,
        &State {
            url: base.to_owned(),
            seen: next,
            checked_at: jiff::Timestamp::now().to_string(),
        },
    )
}

/// Runs the monitor: once, or every `every` seconds until a misbehaviour
/// (a failed fetch is reported and retried when watching).
pub async fn run(
    url: String,
    state: PathBuf,
    public_key: Option<String>,
    every: Option<u64>,
) -> anyhow::Result<()> {
    let base = url.trim_end_matches('/').to_owned();
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        bail!("--url must be the installation's http(s) URL, e.g. https://lethe.example.com");
    }
    if let Some(k) = &public_key
        && (k.len() != 64 || hex::decode(k).is_err())
    {
        bail!("--public-key must be the 64 hex digits of the log's Ed25519 key");
    }
    if let Some(s) = every
        && !(5..=86_400).contains(&s)
    {
        bail!("--every must be between 5 and 86400 seconds");
    }
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .context("making the HTTP client")?;
    let Some(every) = every else {
        return check_once(&client, &base, &state, public_key.as_deref()).await;
    };
    loop {
        if let Err(e) = check_once(&client, &base, &state, public_key.as_deref()).await {
            if e.downcast_ref::<Alert>().is_some() {
                return Err(e);
            }
            eprintln!("{base}: could not check ({e:#}); trying again in {every} s");
        }
        tokio::time::sleep(Duration::from_secs(every)).await;
    }
}
