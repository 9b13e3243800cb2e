//! `lethe demo`: Demo Mart's database, a store and a server with the demo's agents and key.

use anyhow::Context;
use lethe_domain::ManualClock;
use lethe_server::{ClockMode, Config, Server};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::demo_mart;
use crate::shared::*;

/// The demo's settings (flags of `lethe demo`).
#[derive(clap::Args)]
pub(crate) struct DemoOptions {
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

pub(crate) async fn demo(data_dir: PathBuf, o: DemoOptions) -> anyhow::Result<()> {
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
            include_str!("../../../../examples/demo-mart/datamap.toml"),
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
                .insert_api_key(
                    "demo".into(),
                    lethe_server::http::middleware::hash_api_key(&k),
                )
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
pub(crate) async fn demo_agents(server: &Server, data_dir: &Path) -> anyhow::Result<PathBuf> {
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
