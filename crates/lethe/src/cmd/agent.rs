//! `lethe agent create|code`: agent console accounts, and the TOTP code of
//! an enrolment URL.

use anyhow::Context;
use lethe_server::{ClockMode, Config, Server};
use std::path::PathBuf;

use crate::shared::load_config;

pub(crate) fn code(otpauth: String) -> anyhow::Result<()> {
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

pub(crate) async fn create(
    config: PathBuf,
    username: String,
    role: String,
    platform: Option<String>,
) -> anyhow::Result<()> {
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
    eprintln!("Agent '{username}' created. The password and TOTP secret are shown only now.");
    Ok(())
}
