//! `lethe backup` and `lethe restore` of Lethe's own store.
//!
//! A backup is two directories. `data-<time>/` holds an online, consistent
//! copy of the store (SQLite `VACUUM INTO`, safe while the server runs)
//! without the vault's wrapped data keys. `keys-<time>/` holds those keys
//! and the key files. Keep key backups for a short time only: once the last
//! key backup older than an erasure is gone, nothing can decrypt that
//! subject's data any more, in any backup.

use anyhow::{Context, bail};
use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::shared::load_config;
use lethe_server::Config;

const KEY_FILES: [&str; 3] = ["lethe.key", "vault.kek", "audit.key"];

async fn open(path: &Path, create: bool) -> anyhow::Result<SqliteConnection> {
    Ok(SqliteConnectOptions::from_str("sqlite:")?
        .filename(path)
        .create_if_missing(create)
        .busy_timeout(std::time::Duration::from_secs(30))
        .connect()
        .await?)
}

fn quote(p: &Path) -> anyhow::Result<String> {
    let s = p.to_str().context("the backup path is not UTF-8")?;
    if s.contains('\'') {
        bail!("the backup path must not contain a quote");
    }
    Ok(format!("'{s}'"))
}

pub async fn backup(data_dir: &Path, out: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let data = out.join(format!("data-{stamp}"));
    let keys = out.join(format!("keys-{stamp}"));
    std::fs::create_dir_all(&data)?;
    std::fs::create_dir_all(&keys)?;
    let db = data.join("lethe.db");
    let mut live = open(&data_dir.join("lethe.db"), false)
        .await
        .context("opening the store")?;
    sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM INTO {}", quote(&db)?)))
        .execute(&mut live)
        .await
        .context("copying the store")?;
    drop(live);
    // Move the wrapped keys out of the data copy.
    // Opened with create, so ATTACH may create the keys file.
    let mut copy = open(&db, true).await?;
    let keys_db = keys.join("vault-keys.db");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ATTACH DATABASE {} AS k",
        quote(&keys_db)?
    )))
    .execute(&mut copy)
    .await?;
    sqlx::query("CREATE TABLE k.vault_keys AS SELECT * FROM vault_keys")
        .execute(&mut copy)
        .await?;
    sqlx::query("DELETE FROM vault_keys")
        .execute(&mut copy)
        .await?;
    sqlx::query("DETACH DATABASE k").execute(&mut copy).await?;
    sqlx::query("PRAGMA secure_delete = ON")
        .execute(&mut copy)
        .await?;
    sqlx::query("VACUUM").execute(&mut copy).await?;
    drop(copy);
    for f in KEY_FILES {
        let src = data_dir.join(f);
        if src.exists() {
            std::fs::copy(&src, keys.join(f)).with_context(|| format!("copying {f}"))?;
        }
    }
    Ok((data, keys))
}

pub async fn restore(
    data_dir: &Path,
    data: &Path,
    keys: Option<&Path>,
    force: bool,
) -> anyhow::Result<u64> {
    let target = data_dir.join("lethe.db");
    if target.exists() && !force {
        bail!(
            "{} exists; stop Lethe and pass --force to replace it",
            target.display()
        );
    }
    std::fs::create_dir_all(data_dir)?;
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(data_dir.join(format!("lethe.db{ext}")));
    }
    std::fs::copy(data.join("lethe.db"), &target).context("copying the data backup")?;
    let mut restored = 0u64;
    if let Some(keys) = keys {
        for f in KEY_FILES {
            let src = keys.join(f);
            if src.exists() {
                std::fs::copy(&src, data_dir.join(f)).with_context(|| format!("restoring {f}"))?;
            }
        }
        let mut db = open(&target, false).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ATTACH DATABASE {} AS k",
            quote(&keys.join("vault-keys.db"))?
        )))
        .execute(&mut db)
        .await?;
        // Never bring back a key whose subject was erased (its tombstone is
        // in the data backup).
        restored = sqlx::query("INSERT OR IGNORE INTO vault_keys SELECT * FROM k.vault_keys WHERE subject NOT IN (SELECT subject FROM vault_tombstones)")
            .execute(&mut db)
            .await?
            .rows_affected();
        sqlx::query("DETACH DATABASE k").execute(&mut db).await?;
    }
    Ok(restored)
}

pub(crate) async fn run_backup(config: PathBuf, out: PathBuf) -> anyhow::Result<()> {
    let cfg = load_config(&config)?;
    sqlite_only(&cfg, "backup")?;
    let (data, keys) = backup(&cfg.data_dir, &out).await?;
    println!("data: {}\nkeys: {}", data.display(), keys.display());
    eprintln!(
        "Keep the keys directory apart from the data and only for a short time (see docs/operations.md)."
    );
    Ok(())
}

pub(crate) async fn run_restore(
    config: PathBuf,
    data: PathBuf,
    keys: Option<PathBuf>,
    force: bool,
) -> anyhow::Result<()> {
    let cfg = load_config(&config)?;
    sqlite_only(&cfg, "restore")?;
    let n = restore(&cfg.data_dir, &data, keys.as_deref(), force).await?;
    println!(
        "restored into {} ({n} vault key(s) restored)",
        cfg.data_dir.display()
    );
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
