//! The SQL connector against the real servers of the machine (PostgreSQL on
//! 5432, MariaDB on 3306) and SQLite: the same schema, the same data map,
//! the same expectations.

use jiff::Timestamp;
use lethe_connect::{BatchItem, DataMap, SqlSystem, SystemOutcome};
use lethe_domain::SubjectId;
use sqlx::{AnyPool, Executor};

mod common;
use common::{Scratch, fresh_db, scalar};

const HASH_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn map(kind: &str) -> DataMap {
    DataMap::parse(&map_text(kind)).unwrap()
}

fn map_text(kind: &str) -> String {
    // SAFETY of the test: every test sets the same value.
    unsafe { std::env::set_var("LIVE_HASH_KEY", HASH_KEY) };
    format!(
        r#"
[[systems]]
name = "shop"
kind = "{kind}"
url_env = "UNUSED_URL"
hash_key_env = "LIVE_HASH_KEY"
batch_size = 2
[[systems.tables]]
name = "users"
owner = "id"
action = "delete"
[[systems.tables]]
name = "orders"
owner = "user_id"
action = "delete"
[[systems.tables]]
name = "order_lines"
belongs_to = {{ table = "orders", columns = ["order_id"], references = ["id"] }}
action = "delete"
[[systems.tables]]
name = "line_notes"
belongs_to = {{ table = "order_lines", columns = ["order_id", "line_no"], references = ["order_id", "line_no"] }}
action = "delete"
[[systems.tables]]
name = "events"
owner = "user_id"
action = "delete"
[[systems.tables]]
name = "reviews"
owner = "user_id"
action = "update"
set_null = ["user_id"]
hash = ["author_phone"]
[[systems.tables]]
name = "invoices"
owner = "user_id"
action = "keep"
legal_basis = "tax records (accounting law)"
retention_days = 10
"#
    )
}

fn ddl(kind: &str) -> String {
    let events = if kind == "postgres" {
        "CREATE TABLE events (user_id BIGINT NOT NULL REFERENCES users(id), at BIGINT NOT NULL, kind VARCHAR(32)) PARTITION BY RANGE (at);
         CREATE TABLE events_a PARTITION OF events FOR VALUES FROM (0) TO (100);
         CREATE TABLE events_b PARTITION OF events FOR VALUES FROM (100) TO (MAXVALUE);"
    } else {
        "CREATE TABLE events (user_id BIGINT NOT NULL REFERENCES users(id), at BIGINT NOT NULL, kind VARCHAR(32));"
    };
    format!(
        "CREATE TABLE users (id BIGINT PRIMARY KEY, name VARCHAR(64), phone VARCHAR(32), referred_by BIGINT REFERENCES users(id) ON DELETE SET NULL);
         CREATE TABLE orders (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users(id), total BIGINT);
         CREATE TABLE order_lines (order_id BIGINT NOT NULL REFERENCES orders(id), line_no INT NOT NULL, sku VARCHAR(32), PRIMARY KEY (order_id, line_no));
         CREATE TABLE line_notes (id BIGINT PRIMARY KEY, order_id BIGINT NOT NULL, line_no INT NOT NULL, note VARCHAR(200),
             FOREIGN KEY (order_id, line_no) REFERENCES order_lines(order_id, line_no));
         {events}
         CREATE TABLE reviews (id BIGINT PRIMARY KEY, user_id BIGINT REFERENCES users(id), author_phone VARCHAR(64), body VARCHAR(200));
         CREATE TABLE invoices (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, amount BIGINT);
         INSERT INTO users VALUES (1, 'Ann', '13800000001', NULL), (2, 'Bo', '13800000002', 1), (3, 'Cy', '13800000003', 1);
         INSERT INTO orders VALUES (10, 1, 5), (11, 1, 6), (20, 2, 7), (30, 3, 8);
         INSERT INTO order_lines VALUES (10, 1, 'a'), (10, 2, 'b'), (11, 1, 'c'), (20, 1, 'd'), (30, 1, 'e'), (30, 2, 'f');
         INSERT INTO line_notes VALUES (1, 10, 1, 'x'), (2, 10, 2, 'y'), (3, 20, 1, 'z'), (4, 30, 2, 'w');
         INSERT INTO events VALUES (1, 5, 'login'), (1, 150, 'login'), (2, 7, 'login'), (3, 8, 'login'), (3, 180, 'login');
         INSERT INTO reviews VALUES (1, 1, '13800000001', 'good'), (2, 1, '13800000001', 'fine'), (3, 3, '13800000003', 'bad');
         INSERT INTO invoices VALUES (1, 1, 5), (2, 2, 7), (3, 3, 8);"
    )
}

async fn fresh(kind: &str) -> (String, Scratch) {
    fresh_db(kind, &ddl(kind)).await
}

fn rows(o: &SystemOutcome, t: &str) -> u64 {
    o.tables.iter().find(|x| x.table == t).unwrap().rows
}

fn item(case: &str, s: &str) -> BatchItem {
    BatchItem {
        case_id: case.into(),
        subject: SubjectId::parse(s).unwrap(),
    }
}

async fn erase_verify_replay_purge(kind: &str) {
    let (url, scratch) = fresh(kind).await;
    let m = map(kind);
    let sys = SqlSystem::connect(&m.systems[0], &url).await.unwrap();
    let order: Vec<&str> = sys.plan().steps.iter().map(|s| s.table.as_str()).collect();
    let pos = |t: &str| order.iter().position(|x| *x == t).unwrap();
    // Children first, including the schema's foreign keys (orders -> users).
    assert!(pos("line_notes") < pos("order_lines") && pos("order_lines") < pos("orders"));
    assert!(
        pos("orders") < pos("users")
            && pos("events") < pos("users")
            && pos("reviews") < pos("users")
    );

    // The export sees every column of the subject's rows, in each table.
    let export = sys
        .export(&SubjectId::parse("1").unwrap(), 1000)
        .await
        .unwrap();
    let rows_of = |t: &str| export.iter().find(|(n, _)| n == t).unwrap().1.clone();
    assert_eq!(rows_of("orders").len(), 2, "{kind}");
    assert_eq!(rows_of("order_lines").len(), 3, "{kind}");
    assert_eq!(rows_of("line_notes").len(), 2, "{kind}");
    assert_eq!(rows_of("events").len(), 2, "{kind}");
    let user = &rows_of("users")[0];
    assert_eq!(user["name"], "Ann", "{kind}: {user}");
    assert_eq!(user["phone"], "13800000001", "{kind}: {user}");
    assert_eq!(rows_of("invoices")[0]["amount"], 5, "{kind}");

    let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    // Two subjects in one set-based batch, and a subject that does not exist.
    let out = sys
        .erase_batch(
            &[
                item("case-1", "1"),
                item("case-2", "2"),
                item("case-9", "99"),
            ],
            now,
        )
        .await
        .unwrap();
    assert_eq!(out.len(), 3);
    let (o1, o2, o9) = (&out[0].1, &out[1].1, &out[2].1);
    assert_eq!(
        [
            rows(o1, "users"),
            rows(o1, "orders"),
            rows(o1, "order_lines"),
            rows(o1, "line_notes"),
            rows(o1, "events"),
            rows(o1, "reviews"),
            rows(o1, "invoices")
        ],
        [1, 2, 3, 2, 2, 2, 1],
        "{kind}: exact per-subject counts"
    );
    assert_eq!(
        [
            rows(o2, "users"),
            rows(o2, "orders"),
            rows(o2, "order_lines"),
            rows(o2, "line_notes"),
            rows(o2, "events"),
            rows(o2, "reviews"),
            rows(o2, "invoices")
        ],
        [1, 1, 1, 1, 1, 0, 1]
    );
    assert!(o9.tables.iter().all(|t| t.rows == 0));
    let kept = o1.tables.iter().find(|t| t.table == "invoices").unwrap();
    assert_eq!(
        kept.retain_until.unwrap().to_string(),
        "2026-01-11T00:00:00Z"
    );
    assert_eq!(
        kept.legal_basis.as_deref(),
        Some("tax records (accounting law)")
    );

    let pool = AnyPool::connect(&url).await.unwrap();
    // The other user is intact; the self-reference was released.
    assert_eq!(scalar(&pool, "SELECT COUNT(*) FROM users").await, 1);
    assert_eq!(
        scalar(
            &pool,
            "SELECT COUNT(*) FROM users WHERE referred_by IS NULL"
        )
        .await,
        1
    );
    assert_eq!(scalar(&pool, "SELECT COUNT(*) FROM orders").await, 1);
    assert_eq!(scalar(&pool, "SELECT COUNT(*) FROM order_lines").await, 2);
    assert_eq!(scalar(&pool, "SELECT COUNT(*) FROM line_notes").await, 1);
    assert_eq!(scalar(&pool, "SELECT COUNT(*) FROM events").await, 2);
    // Reviews stay, without their author; the phone is a keyed hash.
    assert_eq!(
        scalar(&pool, "SELECT COUNT(*) FROM reviews WHERE user_id IS NULL").await,
        2
    );
    assert_eq!(
        scalar(
            &pool,
            "SELECT COUNT(*) FROM reviews WHERE author_phone = '13800000001'"
        )
        .await,
        0
    );
    let h = lethe_connect::sql::keyed_hash(&hex::decode(HASH_KEY).unwrap(), "13800000001");
    assert_eq!(
        scalar(
            &pool,
            &format!("SELECT COUNT(*) FROM reviews WHERE author_phone = '{h}'")
        )
        .await,
        2
    );
    assert_eq!(
        scalar(
            &pool,
            "SELECT COUNT(*) FROM reviews WHERE author_phone = '13800000003'"
        )
        .await,
        1
    );
    assert_eq!(scalar(&pool, "SELECT COUNT(*) FROM invoices").await, 3);

    let verified = sys
        .verify_batch(
            out.iter()
                .zip(["1", "2", "99"])
                .map(|((c, o), s)| (c.clone(), SubjectId::parse(s).unwrap(), o.clone()))
                .collect(),
        )
        .await
        .unwrap();
    for (_, o) in &verified {
        for t in &o.tables {
            if t.action == "keep" {
                assert_eq!(t.remaining, Some(t.rows));
            } else {
                assert_eq!(t.remaining, Some(0), "{kind} {}", t.table);
            }
        }
    }

    // A re-run returns the recorded counts and touches nothing.
    let again = sys
        .erase("case-1", &SubjectId::parse("1").unwrap(), now)
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.tables, o1.tables);
    assert_eq!(scalar(&pool, "SELECT COUNT(*) FROM users").await, 1);

    // A late write of the subject's data is caught by verification.
    pool.execute("INSERT INTO users VALUES (1, 'Ann', '13800000001', NULL)")
        .await
        .unwrap();
    let e = sys
        .verify("case-1", &SubjectId::parse("1").unwrap(), o1.clone())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("left in users"), "{e}");
    pool.execute("DELETE FROM users WHERE id = 1")
        .await
        .unwrap();

    // Kept rows are purged when their retention ends, not before.
    assert!(
        sys.purge_expired("2026-01-10T00:00:00Z".parse().unwrap(), 100)
            .await
            .unwrap()
            .is_empty()
    );
    let purged = sys
        .purge_expired("2026-01-11T00:00:01Z".parse().unwrap(), 100)
        .await
        .unwrap();
    let mut purged: Vec<(String, u64)> = purged
        .into_iter()
        .map(|(c, t, n)| (format!("{c}/{t}"), n))
        .collect();
    purged.sort();
    assert_eq!(
        purged,
        vec![
            ("case-1/invoices".to_owned(), 1),
            ("case-2/invoices".to_owned(), 1)
        ]
    );
    assert_eq!(scalar(&pool, "SELECT COUNT(*) FROM invoices").await, 1);
    assert!(
        sys.purge_expired("2026-02-01T00:00:00Z".parse().unwrap(), 100)
            .await
            .unwrap()
            .is_empty()
    );
    scratch.remove().await;
}

#[tokio::test]
async fn sqlite_erases_batches_verifies_replays_and_purges() {
    erase_verify_replay_purge("sqlite").await;
}

#[tokio::test]
async fn postgres_erases_batches_verifies_replays_and_purges() {
    erase_verify_replay_purge("postgres").await;
}

#[tokio::test]
async fn mariadb_erases_batches_verifies_replays_and_purges() {
    erase_verify_replay_purge("mysql").await;
}

/// The erasure's connection is killed while it waits on a lock, half-way
/// through its tables: nothing is half-done, and a retry completes with the
/// exact counts.
#[tokio::test]
async fn postgres_connection_killed_mid_erasure_then_retry_completes() {
    let (url, scratch) = fresh("postgres").await;
    let m = map("postgres");
    let sys = std::sync::Arc::new(SqlSystem::connect(&m.systems[0], &url).await.unwrap());
    let admin = AnyPool::connect(&url).await.unwrap();
    let mut locker = admin.begin().await.unwrap();
    locker
        .execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let s2 = sys.clone();
    let run = tokio::spawn(async move {
        s2.erase("case-k", &SubjectId::parse("1").unwrap(), now)
            .await
    });
    // Wait until the erasure is blocked on the lock (children already deleted
    // inside its transaction), then kill its connection.
    let mut killed = 0;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        killed = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(pg_terminate_backend(pid))::int8 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&admin)
        .await
        .unwrap();
        if killed > 0 {
            break;
        }
    }
    assert_eq!(killed, 1, "the erasure never blocked");
    let e = run.await.unwrap().unwrap_err();
    assert!(e.to_string().contains("system shop"), "{e}");
    locker.rollback().await.unwrap();
    // Nothing was half-done.
    assert_eq!(scalar(&admin, "SELECT COUNT(*) FROM line_notes").await, 4);
    // The retry completes with exact counts.
    let o = sys
        .erase("case-k", &SubjectId::parse("1").unwrap(), now)
        .await
        .unwrap();
    assert!(!o.replayed);
    assert_eq!(
        [
            rows(&o, "users"),
            rows(&o, "orders"),
            rows(&o, "order_lines"),
            rows(&o, "line_notes"),
            rows(&o, "events")
        ],
        [1, 2, 3, 2, 2]
    );
    sys.verify("case-k", &SubjectId::parse("1").unwrap(), o)
        .await
        .unwrap();
    scratch.remove().await;
}

/// The checker reads the live schema and finds a planted uncovered table
/// (referencing a mapped one), a planted personal-data column, a column the
/// map names that does not exist, and a kept row pointing to a deleted one.
async fn checker_finds_planted_problems(kind: &str) {
    let (url, scratch) = fresh(kind).await;
    let pool = AnyPool::connect(&url).await.unwrap();
    for stmt in [
        "CREATE TABLE support_tickets (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users(id), body VARCHAR(200))",
        "ALTER TABLE reviews ADD COLUMN contact VARCHAR(64)",
        "UPDATE reviews SET contact = '13912345678'",
        "CREATE TABLE audit_trail (id BIGINT PRIMARY KEY, order_id BIGINT REFERENCES orders(id) ON DELETE CASCADE, note VARCHAR(50))",
    ] {
        pool.execute(stmt)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {stmt}: {e}"));
    }
    let text = format!(
        "{}\n[[systems.tables]]\nname = \"invoice_lines\"\nowner = \"user_id\"\naction = \"delete\"\n",
        map_text(kind)
    )
    .replace("hash = [\"author_phone\"]", "hash = [\"author_phone\", \"author_email\"]");
    let m = DataMap::parse(&text).unwrap();
    let sys = SqlSystem::connect(&m.systems[0], &url).await.unwrap();
    let cols = lethe_connect::check::uncovered_columns(&m.systems[0], sys.schema());
    let samples = sys.sample(&cols, 20, |_, _| {}).await.unwrap();
    let findings = lethe_connect::check::check(&m.systems[0], sys.schema(), &samples);
    let has = |kind_: &str, at: &str, sev: lethe_connect::check::Severity| {
        findings
            .iter()
            .any(|f| f.kind == kind_ && f.at == at && f.severity == sev)
    };
    use lethe_connect::check::Severity::{Error, Warning};
    assert!(
        has("uncovered_reference", "support_tickets", Error),
        "{kind}: {findings:#?}"
    );
    assert!(
        has("personal_data", "reviews.contact", Error),
        "{kind}: {findings:#?}"
    );
    assert!(
        has("missing_table", "invoice_lines", Error),
        "{kind}: {findings:#?}"
    );
    assert!(
        has("missing_column", "reviews.author_email", Error),
        "{kind}: {findings:#?}"
    );
    assert!(
        has("uncovered_reference", "audit_trail", Warning),
        "{kind}: {findings:#?}"
    );
    // The partitions of a partitioned table are not reported as tables.
    assert!(
        !findings.iter().any(|f| f.at.starts_with("events_")),
        "{kind}: {findings:#?}"
    );
    // Kept invoices do not reference users here; make one that does.
    pool.execute("CREATE TABLE receipts_kept (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users(id))").await.unwrap();
    let text2 = format!(
        "{}\n[[systems.tables]]\nname = \"receipts_kept\"\nowner = \"user_id\"\naction = \"keep\"\nlegal_basis = \"tax\"\nretention_days = 30\n",
        map_text(kind)
    );
    let m2 = DataMap::parse(&text2).unwrap();
    let sys2 = SqlSystem::connect(&m2.systems[0], &url).await.unwrap();
    let f2 = lethe_connect::check::check(&m2.systems[0], sys2.schema(), &Default::default());
    assert!(
        f2.iter()
            .any(|f| f.kind == "order" && f.at == "receipts_kept" && f.severity == Error),
        "{kind}: {f2:#?}"
    );
    scratch.remove().await;
}

#[tokio::test]
async fn sqlite_checker_finds_planted_problems() {
    checker_finds_planted_problems("sqlite").await;
}

#[tokio::test]
async fn postgres_checker_finds_planted_problems() {
    checker_finds_planted_problems("postgres").await;
}

#[tokio::test]
async fn mariadb_checker_finds_planted_problems() {
    checker_finds_planted_problems("mysql").await;
}
