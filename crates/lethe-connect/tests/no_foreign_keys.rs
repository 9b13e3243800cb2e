//! A schema of 100+ tables tied to the account only by value (a text id
//! under many names, as its local part, inside JSON), on PostgreSQL,
//! MariaDB and SQLite: the hand-written map is accepted by the check, and
//! erasing 100 subjects leaves nothing of theirs but the redacted JSON,
//! with every other subject's rows identical.

use jiff::Timestamp;
use lethe_connect::check::Severity;
use lethe_connect::{BatchItem, DataMap, SqlSystem};
use lethe_domain::SubjectId;
use sqlx::AnyPool;

mod chat_schema;
mod common;
use chat_schema::{USERS, user};
use common::{dump, dump_query, fresh_db};

const HASH_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const ERASED: i64 = 100;

/// The tables with the column holding the subject (as the text to look
/// for), and whether the subject's rows go.
const OWNED: [(&str, &str); 13] = [
    ("users", "name"),
    ("user_threepids", "user_id"),
    ("devices", "user_id"),
    ("access_tokens", "user_id"),
    ("events", "sender"),
    ("event_json", "json"),
    ("room_memberships", "user_id"),
    ("current_state", "state_key"),
    ("receipts", "receipt_user"),
    ("pushers", "user_name"),
    ("reports", "target_user_id"),
    ("user_ips", "user_id"),
    ("profiles", "user_id"),
];

/// Whether a dumped row mentions an erased subject (its full id, or its
/// local part as a whole value).
fn mentions_erased(row: &str) -> bool {
    (1..=ERASED).any(|i| {
        row.contains(&format!("\"{}\"", user(i)))
            || row.contains(&format!("\\\"{}\\\"", user(i)))
            || row.contains(&format!("\"u{i}\""))
    })
}

async fn erase_by_value(kind: &str) {
    // SAFETY of the test: every test sets the same value.
    unsafe { std::env::set_var("CHAT_HASH_KEY", HASH_KEY) };
    let (url, scratch) = fresh_db(kind, &chat_schema::ddl(kind)).await;
    let pool = AnyPool::connect(&url).await.unwrap();
    let m = DataMap::parse(&chat_schema::map(kind)).unwrap();
    let sys = SqlSystem::connect(&m.systems[0], &url).await.unwrap();
    assert!(sys.schema().tables.len() > 100, "{kind}");

    let cols = lethe_connect::check::uncovered_columns(&m.systems[0], sys.schema());
    let (samples, unreadable) = sys.sample_all(&cols, 20, |_, _| {}).await.unwrap();
    assert!(unreadable.is_empty(), "{kind}: {unreadable:?}");
    let findings = lethe_connect::check::check(&m.systems[0], sys.schema(), &samples);
    let errors: Vec<_> = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    assert!(errors.is_empty(), "{kind}: {errors:#?}");

    let doc_q = "SELECT room_id, CAST(doc AS CHAR) FROM room_state_docs ORDER BY 1";
    let doc_q = if kind == "mysql" {
        doc_q.to_owned()
    } else {
        doc_q.replace("AS CHAR", "AS TEXT")
    };
    let mut before = std::collections::BTreeMap::new();
    for (t, _) in OWNED {
        before.insert(t, dump(&pool, t).await);
    }
    let docs_before = dump_query(&pool, &doc_q).await;

    let items: Vec<BatchItem> = (1..=ERASED)
        .map(|i| BatchItem {
            case_id: format!("case-{i}"),
            subject: SubjectId::parse(&user(i)).unwrap(),
        })
        .collect();
    let now: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
    let out = sys.erase_verify_batch(&items, now).await.unwrap();
    let o = &out[0].1;
    let rows = |t: &str| o.tables.iter().find(|x| x.table == t).unwrap().rows;
    assert_eq!(
        (
            rows("users"),
            rows("profiles"),
            rows("user_threepids"),
            rows("event_json"),
            rows("room_state_docs")
        ),
        (1, 1, 2, 2, 1),
        "{kind}"
    );
    for (t, _) in OWNED {
        let after = dump(&pool, t).await;
        let expected: Vec<String> = before[t]
            .iter()
            .filter(|r| !mentions_erased(r))
            .cloned()
            .collect();
        assert_eq!(after.len(), expected.len(), "{kind}: {t}");
        assert_eq!(
            after, expected,
            "{kind}: {t}: nothing of the erased, the rest identical"
        );
    }
    // Rooms stay; the creator inside their JSON is now a keyed hash.
    let docs_after = dump_query(&pool, &doc_q).await;
    assert_eq!(docs_after.len(), USERS as usize, "{kind}");
    for (b, a) in docs_before.iter().zip(&docs_after) {
        let erased = mentions_erased(b);
        assert_eq!(a == b, !erased, "{kind}: {b} -> {a}");
        assert!(!mentions_erased(a), "{kind}: {a}");
        if erased {
            let i: i64 = b
                .split("!r")
                .nth(1)
                .and_then(|r| r.split(':').next())
                .and_then(|n| n.parse().ok())
                .unwrap();
            let h = lethe_connect::sql::keyed_hash(&hex::decode(HASH_KEY).unwrap(), &user(i));
            assert!(a.contains(&h), "{kind}: {a}");
        }
    }
    // room_aliases keep the alias without its creator.
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM room_aliases WHERE creator IS NULL")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, ERASED, "{kind}");
    pool.close().await;
    scratch.remove().await;
}

#[tokio::test]
async fn sqlite_erases_by_value() {
    erase_by_value("sqlite").await;
}

#[tokio::test]
async fn postgres_erases_by_value() {
    erase_by_value("postgres").await;
}

#[tokio::test]
async fn mariadb_erases_by_value() {
    erase_by_value("mysql").await;
}
