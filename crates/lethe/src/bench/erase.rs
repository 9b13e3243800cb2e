//! `lethe bench erase`: Lethe's SQL connector against a hand-written
//! set-based SQL baseline, on the same database in the same run.
//!
//! Eight related tables, 20 rows per user: users, profiles, addresses (2),
//! orders (3), order_items (2 per order: a composite key), payments (1 per
//! order), sessions (2), events (2). Every foreign key has its index. Two
//! disjoint sets of users spread over the id range are erased in
//! alternating batches: one by the baseline (one transaction per batch, one
//! DELETE per table, children first), one by Lethe (`erase_batch` +
//! `verify_batch`: counts per subject, parent keys kept for verification,
//! the erasure record, and the verification pass).

use anyhow::Context;
use lethe_connect::{BatchItem, DataMap, SqlSystem};
use lethe_domain::SubjectId;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, AssertSqlSafe, Executor};
use std::time::{Duration, Instant};

pub(crate) const MAP: &str = r#"
[[systems]]
name = "bench"
kind = "KIND"
url_env = "LETHE_BENCH_URL"
max_connections = 2
batch_size = BATCH
[[systems.tables]]
name = "users"
owner = "id"
action = "delete"
[[systems.tables]]
name = "profiles"
owner = "user_id"
action = "delete"
[[systems.tables]]
name = "addresses"
owner = "user_id"
action = "delete"
[[systems.tables]]
name = "orders"
owner = "user_id"
action = "delete"
[[systems.tables]]
name = "order_items"
belongs_to = { table = "orders", columns = ["order_id"], references = ["id"] }
action = "delete"
[[systems.tables]]
name = "payments"
belongs_to = { table = "orders", columns = ["order_id"], references = ["id"] }
action = "delete"
[[systems.tables]]
name = "sessions"
owner = "user_id"
action = "delete"
[[systems.tables]]
name = "events"
owner = "user_id"
action = "delete"
"#;

fn series(kind: &str, n: u64, mult: u64) -> String {
    match kind {
        "postgres" => format!("generate_series(1, {}) AS s(g)", n * mult),
        "mysql" => format!("(SELECT seq AS g FROM seq_1_to_{}) AS s", n * mult),
        _ => format!(
            "(WITH RECURSIVE c(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM c WHERE g < {}) SELECT g FROM c) AS s",
            n * mult
        ),
    }
}

fn div(kind: &str, a: &str, b: u64) -> String {
    match kind {
        "mysql" => format!("(({a}) DIV {b})"),
        _ => format!("(({a}) / {b})"),
    }
}

fn cat(kind: &str, a: &str, b: &str) -> String {
    match kind {
        "mysql" => format!("CONCAT({a}, {b})"),
        _ => format!("({a} || {b})"),
    }
}

/// Creates and fills the eight tables (indexes after the load).
pub(crate) async fn load(pool: &AnyPool, kind: &str, n: u64) -> anyhow::Result<()> {
    let text = if kind == "mysql" {
        "VARCHAR(64)"
    } else {
        "TEXT"
    };
    let g = |m| series(kind, n, m);
    let c = |a: &str, b: &str| cat(kind, a, b);
    let gs = if kind == "postgres" { "g::text" } else { "g" };
    let mut stmts = vec![];
    let (pk_users, pk_items) = if kind == "postgres" {
        ("", "")
    } else {
        (" PRIMARY KEY", ", PRIMARY KEY (order_id, line)")
    };
    let fk = |parent: &str, col: &str| {
        if kind == "sqlite" {
            format!(" REFERENCES {parent}({col})")
        } else {
            String::new()
        }
    };
    stmts.push(format!(
        "CREATE TABLE users (id BIGINT NOT NULL{pk_users}, name {text}, phone {text}, created_at BIGINT)"
    ));
    stmts.push(format!(
        "CREATE TABLE profiles (user_id BIGINT NOT NULL{pk_users}{}, bio {text})",
        fk("users", "id")
    ));
    for t in ["addresses", "sessions", "events"] {
        stmts.push(format!(
            "CREATE TABLE {t} (id BIGINT NOT NULL{pk_users}, user_id BIGINT NOT NULL{}, info {text})",
            fk("users", "id")
        ));
    }
    stmts.push(format!(
        "CREATE TABLE orders (id BIGINT NOT NULL{pk_users}, user_id BIGINT NOT NULL{}, total BIGINT)",
        fk("users", "id")
    ));
    stmts.push(format!(
        "CREATE TABLE order_items (order_id BIGINT NOT NULL{}, line INT NOT NULL, sku {text}{pk_items})",
        fk("orders", "id")
    ));
    stmts.push(format!(
        "CREATE TABLE payments (id BIGINT NOT NULL{pk_users}, order_id BIGINT NOT NULL{}, amount BIGINT)",
        fk("orders", "id")
    ));
    stmts.push(format!(
        "INSERT INTO users SELECT g, {}, {}, g FROM {}",
        c("'user '", gs),
        c("'138'", gs),
        g(1)
    ));
    stmts.push(format!(
        "INSERT INTO profiles SELECT g, {} FROM {}",
        c("'bio '", gs),
        g(1)
    ));
    for t in ["addresses", "sessions", "events"] {
        stmts.push(format!(
            "INSERT INTO {t} SELECT g, {}, {} FROM {}",
            div(kind, "g + 1", 2),
            c("'info '", gs),
            g(2)
        ));
    }
    stmts.push(format!(
        "INSERT INTO orders SELECT g, {}, g % 1000 FROM {}",
        div(kind, "g + 2", 3),
        g(3)
    ));
    stmts.push(format!(
        "INSERT INTO order_items SELECT {}, (g % 2) + 1, {} FROM {}",
        div(kind, "g + 1", 2),
        c("'sku'", gs),
        g(6)
    ));
    stmts.push(format!(
        "INSERT INTO payments SELECT g, g, g % 1000 FROM {}",
        g(3)
    ));
    if kind == "postgres" {
        stmts.extend(
            [
                "ALTER TABLE users ADD PRIMARY KEY (id)",
                "ALTER TABLE profiles ADD PRIMARY KEY (user_id)",
                "ALTER TABLE addresses ADD PRIMARY KEY (id)",
                "ALTER TABLE sessions ADD PRIMARY KEY (id)",
                "ALTER TABLE events ADD PRIMARY KEY (id)",
                "ALTER TABLE orders ADD PRIMARY KEY (id)",
                "ALTER TABLE order_items ADD PRIMARY KEY (order_id, line)",
                "ALTER TABLE payments ADD PRIMARY KEY (id)",
            ]
            .map(String::from),
        );
    }
    for (t, col) in [
        ("addresses", "user_id"),
        ("sessions", "user_id"),
        ("events", "user_id"),
        ("orders", "user_id"),
        ("payments", "order_id"),
    ] {
        stmts.push(format!("CREATE INDEX {t}_{col} ON {t} ({col})"));
    }
    if kind != "sqlite" {
        for (t, col, parent) in [
            ("profiles", "user_id", "users"),
            ("addresses", "user_id", "users"),
            ("sessions", "user_id", "users"),
            ("events", "user_id", "users"),
            ("orders", "user_id", "users"),
            ("order_items", "order_id", "orders"),
            ("payments", "order_id", "orders"),
        ] {
            stmts.push(format!(
                "ALTER TABLE {t} ADD CONSTRAINT {t}_{col}_fk FOREIGN KEY ({col}) REFERENCES {parent}(id)"
            ));
        }
    }
    stmts.push(match kind {
        "postgres" => "ANALYZE".into(),
        "mysql" => "ANALYZE TABLE users, profiles, addresses, sessions, events, orders, order_items, payments".into(),
        _ => "ANALYZE".into(),
    });
    let mut conn = pool.acquire().await?;
    if kind == "mysql" {
        conn.execute("SET SESSION foreign_key_checks = 0, unique_checks = 0")
            .await?;
    }
    for (i, s) in stmts.iter().enumerate() {
        let t = Instant::now();
        if kind == "mysql" && s.starts_with("ANALYZE") {
            sqlx::query(AssertSqlSafe(s.clone()))
                .fetch_all(&mut *conn)
                .await?;
        } else {
            conn.execute(AssertSqlSafe(s.clone()))
                .await
                .with_context(|| format!("loading: {s}"))?;
        }
        eprintln!(
            "  load {:>2}/{}: {:.1} s  {}",
            i + 1,
            stmts.len(),
            t.elapsed().as_secs_f64(),
            s.chars().take(70).collect::<String>()
        );
    }
    if kind == "mysql" {
        conn.execute("SET SESSION foreign_key_checks = 1, unique_checks = 1")
            .await?;
    }
    Ok(())
}

/// The hand-written baseline: one transaction per batch, one set-based
/// DELETE per table, children first. Returns rows deleted.
async fn baseline(pool: &AnyPool, kind: &str, ids: &[u64]) -> anyhow::Result<u64> {
    let list = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let stmts: Vec<String> = if kind == "mysql" {
        vec![
            format!("DELETE i FROM order_items i JOIN orders o ON i.order_id = o.id WHERE o.user_id IN ({list})"),
            format!("DELETE p FROM payments p JOIN orders o ON p.order_id = o.id WHERE o.user_id IN ({list})"),
        ]
    } else {
        vec![
            format!("DELETE FROM order_items WHERE order_id IN (SELECT id FROM orders WHERE user_id IN ({list}))"),
            format!("DELETE FROM payments WHERE order_id IN (SELECT id FROM orders WHERE user_id IN ({list}))"),
        ]
    }
    .into_iter()
    .chain(
        ["orders", "addresses", "sessions", "events", "profiles"]
            .map(|t| format!("DELETE FROM {t} WHERE user_id IN ({list})")),
    )
    .chain([format!("DELETE FROM users WHERE id IN ({list})")])
    .collect();
    let mut tx = if kind == "sqlite" {
        pool.begin_with("BEGIN IMMEDIATE").await?
    } else {
        pool.begin().await?
    };
    let mut rows = 0;
    for s in stmts {
        rows += tx.execute(AssertSqlSafe(s)).await?.rows_affected();
    }
    tx.commit().await?;
    Ok(rows)
}

async fn count_users(pool: &AnyPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(pool)
        .await?)
}

pub async fn erase(kind: &str, users: u64, erase: u64, batch: u64) -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let db = format!("lethe_bench_{kind}");
    let _dir;
    let url = match kind {
        "postgres" => {
            let admin = AnyPool::connect("postgres://postgres@127.0.0.1:5432/postgres").await?;
            admin
                .execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db}")))
                .await?;
            admin
                .execute(AssertSqlSafe(format!("CREATE DATABASE {db}")))
                .await?;
            format!("postgres://postgres@127.0.0.1:5432/{db}")
        }
        "mysql" => {
            let admin = AnyPool::connect("mysql://root@127.0.0.1:3306/test").await?;
            admin
                .execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db}")))
                .await?;
            admin
                .execute(AssertSqlSafe(format!("CREATE DATABASE {db}")))
                .await?;
            format!("mysql://root@127.0.0.1:3306/{db}")
        }
        "sqlite" => {
            let d = tempfile::tempdir()?;
            let url = format!("sqlite://{}?mode=rwc", d.path().join("bench.db").display());
            _dir = d;
            url
        }
        other => anyhow::bail!("--kind must be postgres, mysql or sqlite, not {other}"),
    };
    let is_sqlite = kind == "sqlite";
    let pool = AnyPoolOptions::new()
        .max_connections(2)
        .after_connect(move |c, _| {
            Box::pin(async move {
                if is_sqlite {
                    c.execute("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000")
                        .await?;
                }
                Ok(())
            })
        })
        .connect(&url)
        .await?;
    if is_sqlite {
        pool.execute("PRAGMA journal_mode = WAL").await?;
    }
    eprintln!("{kind}: loading {users} users x 20 rows in 8 tables ...");
    let t = Instant::now();
    load(&pool, kind, users).await?;
    eprintln!("{kind}: loaded in {:.1} s", t.elapsed().as_secs_f64());

    let map = DataMap::parse(
        &MAP.replace("KIND", kind)
            .replace("BATCH", &batch.to_string()),
    )?;
    let lethe = SqlSystem::connect(&map.systems[0], &url).await?;

    // Two disjoint sets spread over the id range.
    let step = (users / (2 * erase)).max(1);
    let ours: Vec<u64> = (0..erase).map(|k| 1 + k * 2 * step).collect();
    let theirs: Vec<u64> = (0..erase).map(|k| 1 + k * 2 * step + step).collect();
    anyhow::ensure!(
        theirs.last().copied().unwrap_or(0) <= users,
        "--erase must be at most half of --users"
    );
    let (mut t_base, mut t_lethe) = (Duration::ZERO, Duration::ZERO);
    let (mut rows_base, mut rows_lethe) = (0u64, 0u64);
    let run = format!("{:x}", jiff::Timestamp::now().as_nanosecond());
    for (bi, (a, b)) in ours
        .chunks(batch as usize)
        .zip(theirs.chunks(batch as usize))
        .enumerate()
    {
        // Alternate who goes first, so neither always meets a warmer cache.
        let lethe_first = bi % 2 == 1;
        for turn in 0..2 {
            if (turn == 0) == lethe_first {
                let items: Vec<BatchItem> = a
                    .iter()
                    .map(|u| BatchItem {
                        case_id: format!("{run}-{u}"),
                        subject: SubjectId::parse(&u.to_string())
                            .unwrap_or_else(|_| unreachable!("digits are a valid subject id")),
                    })
                    .collect();
                let t = Instant::now();
                let verified = lethe
                    .erase_verify_batch(&items, jiff::Timestamp::now())
                    .await?;
                t_lethe += t.elapsed();
                rows_lethe += verified
                    .iter()
                    .flat_map(|(_, o)| o.tables.iter().map(|t| t.rows))
                    .sum::<u64>();
            } else {
                let t = Instant::now();
                rows_base += baseline(&pool, kind, b).await?;
                t_base += t.elapsed();
            }
        }
    }
    let left = count_users(&pool).await?;
    anyhow::ensure!(
        left == i64::try_from(users - 2 * erase)?,
        "{left} users left, expected {}",
        users - 2 * erase
    );
    anyhow::ensure!(
        rows_lethe == 20 * erase && rows_base == 20 * erase,
        "rows erased: lethe {rows_lethe}, baseline {rows_base}, expected {} each",
        20 * erase
    );
    let ups = |d: Duration| erase as f64 / d.as_secs_f64();
    println!(
        "{kind}: {users} users ({} rows in 8 tables), {erase} users erased by each, batches of {batch}",
        20 * users
    );
    println!(
        "  baseline (hand-written set-based SQL): {:>8.0} users/s  ({:.2} s, {rows_base} rows)",
        ups(t_base),
        t_base.as_secs_f64()
    );
    println!(
        "  lethe (erase + record + verify):       {:>8.0} users/s  ({:.2} s, {rows_lethe} rows)",
        ups(t_lethe),
        t_lethe.as_secs_f64()
    );
    println!(
        "  ratio: lethe takes {:.2}x the baseline's time (target <= 1.5x, >= 1000 users/s)",
        t_lethe.as_secs_f64() / t_base.as_secs_f64()
    );
    pool.close().await;
    drop(lethe);
    if kind != "sqlite" {
        let admin_url = if kind == "postgres" {
            "postgres://postgres@127.0.0.1:5432/postgres"
        } else {
            "mysql://root@127.0.0.1:3306/test"
        };
        let admin = AnyPool::connect(admin_url).await?;
        admin
            .execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db}")))
            .await?;
    }
    Ok(())
}
