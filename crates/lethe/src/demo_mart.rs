//! Demo Mart: the demo platform's own SQLite database, generated in SQL
//! (recursive CTEs) so 10,000 users and their rows take about a second.

use anyhow::Context;
use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use std::path::Path;
use std::str::FromStr;

const SCHEMA: &str = r#"
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    phone TEXT NOT NULL UNIQUE,
    email TEXT,
    nickname TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active',
    created_at TEXT NOT NULL
);
CREATE TABLE real_names (
    user_id INTEGER PRIMARY KEY REFERENCES users(id),
    legal_name TEXT NOT NULL,
    id_number TEXT NOT NULL,
    verified_at TEXT NOT NULL
);
CREATE TABLE addresses (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    recipient TEXT NOT NULL,
    phone TEXT NOT NULL,
    province TEXT NOT NULL,
    city TEXT NOT NULL,
    line1 TEXT NOT NULL
);
CREATE INDEX addresses_user ON addresses(user_id);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    status TEXT NOT NULL,
    total_fen INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX orders_user ON orders(user_id);
CREATE TABLE order_items (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL REFERENCES orders(id),
    sku TEXT NOT NULL,
    qty INTEGER NOT NULL,
    price_fen INTEGER NOT NULL
);
CREATE INDEX order_items_order ON order_items(order_id);
CREATE TABLE coupons (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    code TEXT NOT NULL,
    value_fen INTEGER NOT NULL,
    expires_at TEXT NOT NULL,
    used INTEGER NOT NULL
);
CREATE INDEX coupons_user ON coupons(user_id);
CREATE TABLE points (
    user_id INTEGER PRIMARY KEY REFERENCES users(id),
    balance INTEGER NOT NULL
);
CREATE TABLE subscriptions (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    plan TEXT NOT NULL,
    price_fen INTEGER NOT NULL,
    period_start TEXT NOT NULL,
    period_end TEXT NOT NULL,
    auto_renew INTEGER NOT NULL,
    -- Paused while a cancellation cools off; resumed when it is withdrawn.
    renewal_paused INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX subscriptions_user ON subscriptions(user_id);
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    device_id TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    ip TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);
CREATE TABLE wallets (
    user_id INTEGER PRIMARY KEY REFERENCES users(id),
    balance_fen INTEGER NOT NULL
);
CREATE TABLE bank_cards (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    bank TEXT NOT NULL,
    masked TEXT NOT NULL
);
CREATE INDEX bank_cards_user ON bank_cards(user_id);
-- Refunds and the settlement log are accounting records: kept, no foreign key.
CREATE TABLE refunds (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,
    instruction_id TEXT NOT NULL UNIQUE,
    amount_fen INTEGER NOT NULL,
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX refunds_user ON refunds(user_id);
CREATE TABLE settlement_log (
    instruction_id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL,
    option TEXT NOT NULL,
    status TEXT NOT NULL,
    reference TEXT,
    reason TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX settlement_log_user ON settlement_log(user_id);
-- Accounting records: kept for 3 years, so no foreign key to users.
CREATE TABLE invoices (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,
    order_id INTEGER NOT NULL,
    amount_fen INTEGER NOT NULL,
    issued_at TEXT NOT NULL
);
CREATE INDEX invoices_user ON invoices(user_id);
"#;

/// Statements filling the tables; `?1` is the number of users. The data is
/// pseudo-random but derived from ids, so a given size is reproducible.
const FILL: &[&str] = &[
    "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < ?1)
     INSERT INTO users (id, phone, email, nickname, created_at)
     SELECT n, '139' || printf('%08d', (n * 7919) % 100000000), 'user' || n || '@demo-mart.example',
            substr('小明小红阿强阿珍大伟晓东', 1 + (n % 6) * 2, 2) || n,
            date('2020-01-01', '+' || (n % 1800) || ' days')
     FROM s",
    "INSERT INTO real_names (user_id, legal_name, id_number, verified_at)
     SELECT id,
            substr('王李张刘陈杨黄赵吴周', 1 + (id % 10), 1) || substr('伟芳娜敏静丽强磊军洋', 1 + ((id / 10) % 10), 1) || substr('华明英杰涛', 1 + ((id / 100) % 5), 1),
            printf('110105%04d%02d%02d%03d', 1960 + (id % 45), 1 + (id % 12), 1 + (id % 28), id % 1000) || substr('0123456789X', 1 + (id % 11), 1),
            created_at
     FROM users",
    "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < 2)
     INSERT INTO addresses (user_id, recipient, phone, province, city, line1)
     SELECT u.id, r.legal_name, u.phone, substr('北京上海广东浙江四川', 1 + (u.id % 5) * 2, 2), substr('朝阳浦东天河西湖武侯', 1 + ((u.id + k.i) % 5) * 2, 2),
            (u.id % 300 + 1) || '号 ' || (k.i + 1) || '单元'
     FROM users u JOIN real_names r ON r.user_id = u.id JOIN k ON k.i < 1 + (u.id % 3)",
    "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < 7)
     INSERT INTO orders (user_id, status, total_fen, created_at)
     SELECT u.id,
            CASE WHEN k.i = 0 AND u.id % 10 = 3 THEN 'shipping' WHEN k.i = 0 AND u.id % 10 = 7 THEN 'pending' WHEN (u.id + k.i) % 13 = 0 THEN 'cancelled' ELSE 'completed' END,
            0, datetime('2024-01-01', '+' || ((u.id * 31 + k.i * 97) % 600) || ' days')
     FROM users u JOIN k ON k.i < (u.id * 7) % 9",
    "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < 3)
     INSERT INTO order_items (order_id, sku, qty, price_fen)
     SELECT o.id, 'SKU-' || ((o.id * 13 + k.i) % 5000), 1 + ((o.id + k.i) % 3), 100 + ((o.id * 37 + k.i * 11) % 20000)
     FROM orders o JOIN k ON k.i < 1 + (o.id % 4)",
    "UPDATE orders SET total_fen = (SELECT SUM(qty * price_fen) FROM order_items WHERE order_id = orders.id)",
    "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < 2)
     INSERT INTO coupons (user_id, code, value_fen, expires_at, used)
     SELECT u.id, 'C' || printf('%06d', u.id) || k.i, 500 + (u.id % 5) * 500, date('2027-06-30'), (u.id + k.i) % 2
     FROM users u JOIN k ON k.i < u.id % 4",
    "INSERT INTO points (user_id, balance) SELECT id, (id * 53) % 5000 FROM users",
    "INSERT INTO subscriptions (user_id, plan, price_fen, period_start, period_end, auto_renew)
     SELECT id, CASE id % 2 WHEN 0 THEN '月度会员 monthly' ELSE '年度会员 yearly' END, CASE id % 2 WHEN 0 THEN 1500 ELSE 12800 END,
            '2026-11-01', CASE id % 2 WHEN 0 THEN '2026-12-01' ELSE '2027-11-01' END, id % 3 <> 0
     FROM users WHERE id % 4 = 1",
    "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < 2)
     INSERT INTO sessions (user_id, device_id, token_hash, ip, created_at)
     SELECT u.id, 'dev-' || hex(randomblob(6)), hex(randomblob(16)), '10.' || (u.id % 250) || '.' || k.i || '.' || (u.id % 200), datetime('2026-11-01', '+' || k.i || ' hours')
     FROM users u JOIN k ON k.i < 1 + u.id % 3",
    "INSERT INTO wallets (user_id, balance_fen) SELECT id, (id * 37) % 20000 FROM users WHERE id % 5 = 2",
    "INSERT INTO bank_cards (user_id, bank, masked) SELECT id, CASE id % 3 WHEN 0 THEN '工商银行 ICBC' WHEN 1 THEN '招商银行 CMB' ELSE '建设银行 CCB' END, '**** ' || printf('%04d', (id * 7) % 10000) FROM users WHERE id % 10 = 9",
    "INSERT INTO invoices (user_id, order_id, amount_fen, issued_at)
     SELECT user_id, id, total_fen, created_at FROM orders WHERE status = 'completed' AND id % 3 = 0",
];

/// Brings a Demo Mart made by an earlier version up to date: the
/// subscriptions' pause flag.
async fn upgrade(path: &Path) -> anyhow::Result<()> {
    let mut conn = SqliteConnectOptions::from_str("sqlite:")?
        .filename(path)
        .connect()
        .await
        .context("opening Demo Mart")?;
    let has: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM pragma_table_info('subscriptions') WHERE name = 'renewal_paused'",
    )
    .fetch_optional(&mut conn)
    .await?;
    if has.is_none() {
        sqlx::query(
            "ALTER TABLE subscriptions ADD COLUMN renewal_paused INTEGER NOT NULL DEFAULT 0",
        )
        .execute(&mut conn)
        .await
        .context("adding subscriptions.renewal_paused to Demo Mart")?;
    }
    // Closed before going on: a dropped connection closes in the
    // background and its WAL files would vanish under later work.
    sqlx::Connection::close(conn).await?;
    Ok(())
}

/// Creates Demo Mart at `path` with `users` users, unless it exists.
/// Returns whether it was created.
pub async fn ensure(path: &Path, users: u32) -> anyhow::Result<bool> {
    if path.exists() {
        upgrade(path).await?;
        return Ok(false);
    }
    let tmp = path.with_extension("db.partial");
    let _ = std::fs::remove_file(&tmp);
    let opts = SqliteConnectOptions::from_str("sqlite:")?
        .filename(&tmp)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Delete)
        .foreign_keys(true);
    let mut conn = opts.connect().await.context("creating Demo Mart")?;
    sqlx::raw_sql(SCHEMA)
        .execute(&mut conn)
        .await
        .context("creating Demo Mart's schema")?;
    sqlx::query("BEGIN").execute(&mut conn).await?;
    for stmt in FILL {
        sqlx::query(*stmt)
            .bind(i64::from(users))
            .execute(&mut conn)
            .await
            .context("filling Demo Mart")?;
    }
    sqlx::query("COMMIT").execute(&mut conn).await?;
    drop(conn);
    // Switch to WAL once filled, then move into place: a crash mid-way
    // leaves only the .partial file, never a half-built database.
    let mut conn = SqliteConnectOptions::from_str("sqlite:")?
        .filename(&tmp)
        .journal_mode(SqliteJournalMode::Wal)
        .connect()
        .await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await?;
    drop(conn);
    std::fs::rename(&tmp, path).context("moving Demo Mart into place")?;
    for ext in ["db.partial-wal", "db.partial-shm"] {
        let _ = std::fs::remove_file(path.with_extension(ext));
    }
    Ok(true)
}
