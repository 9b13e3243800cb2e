//! `lethe datamap check` and `lethe datamap plan <subject>` against a real
//! PostgreSQL database of the machine.

use sqlx::{AnyPool, AssertSqlSafe, Executor};
use std::process::Command;

/// Runs `lethe ARGS [PATH] [TAIL...]` with the shop's URL in CLI_SHOP_URL.
fn run(
    args: &[&str],
    path: Option<&std::path::Path>,
    tail: &[&str],
    url: &str,
) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lethe"));
    c.args(args);
    if let Some(p) = path {
        c.arg(p);
    }
    c.args(tail).env("CLI_SHOP_URL", url).output().unwrap()
}

async fn database() -> String {
    sqlx::any::install_default_drivers();
    let name = format!("lethe_cli_{}", uuid::Uuid::new_v4().simple());
    let admin = AnyPool::connect("postgres://postgres@127.0.0.1:5432/postgres")
        .await
        .unwrap();
    admin
        .execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .unwrap();
    let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    let pool = AnyPool::connect(&url).await.unwrap();
    for stmt in [
        "CREATE TABLE users (id BIGINT PRIMARY KEY, phone VARCHAR(20))",
        "CREATE TABLE orders (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users(id))",
        "CREATE TABLE order_items (order_id BIGINT REFERENCES orders(id), line INT, PRIMARY KEY (order_id, line))",
        // Planted: a table the map does not cover, referencing a covered one.
        "CREATE TABLE complaints (id BIGINT PRIMARY KEY, order_id BIGINT NOT NULL REFERENCES orders(id), body TEXT)",
        // Planted: an uncovered column holding e-mail addresses.
        "CREATE TABLE newsletter (id BIGINT PRIMARY KEY, contact VARCHAR(100))",
        "INSERT INTO users VALUES (7, '13800000007'), (8, '13800000008')",
        "INSERT INTO orders VALUES (70, 7), (71, 7), (80, 8)",
        "INSERT INTO order_items VALUES (70, 1), (70, 2), (71, 1), (80, 1)",
        "INSERT INTO newsletter VALUES (1, 'a@example.com'), (2, 'b@example.org')",
    ] {
        pool.execute(stmt).await.unwrap();
    }
    url
}

/// The tables of a printed plan, in order.
fn order_of(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let (n, rest) = l.split_once(". ")?;
            n.parse::<u32>().ok()?;
            rest.split_whitespace().next().map(str::to_owned)
        })
        .collect()
}

const MAP: &str = r#"
[[systems]]
name = "shop"
kind = "postgres"
url_env = "CLI_SHOP_URL"
[[systems.tables]]
name = "users"
owner = "id"
action = "delete"
[[systems.tables]]
name = "orders"
owner = "user_id"
action = "delete"
[[systems.tables]]
name = "order_items"
belongs_to = { table = "orders", columns = ["order_id"], references = ["id"] }
action = "delete"
"#;

#[tokio::test]
async fn check_reports_planted_problems_and_plan_is_a_dry_run() {
    let url = database().await;
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("datamap.toml");
    std::fs::write(&map, MAP).unwrap();
    let lethe = env!("CARGO_BIN_EXE_lethe");

    let out = run(&["datamap", "check", "--datamap"], Some(&map), &[], &url);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("error[uncovered_reference] shop.complaints"),
        "{stdout}"
    );
    assert!(
        stdout.contains("error[personal_data] shop.newsletter.contact"),
        "{stdout}"
    );
    assert!(
        stdout.contains("looks like") || stdout.contains("look like"),
        "{stdout}"
    );
    // The sampled values themselves are never printed.
    assert!(!stdout.contains("a@example.com") && !stderr.contains("a@example.com"));
    assert!(stderr.contains("sampled"), "progress is shown: {stderr}");
    // Not on a terminal, progress comes as whole lines (a bar's carriage
    // returns would run them together in a log).
    assert!(!stderr.contains('\r'), "{stderr:?}");
    assert!(
        stderr
            .lines()
            .filter(|l| l.contains("sampled"))
            .all(|l| l.starts_with("shop: sampled ") && l.ends_with(" columns")),
        "{stderr}"
    );

    // Once the map covers them, the check passes.
    let fixed = format!(
        "{MAP}\n[[systems.tables]]\nname = \"complaints\"\nbelongs_to = {{ table = \"orders\", columns = [\"order_id\"], references = [\"id\"] }}\naction = \"delete\"\n[[systems.tables]]\nname = \"newsletter\"\nowner = \"id\"\naction = \"update\"\nset_null = [\"contact\"]\n"
    );
    std::fs::write(&map, fixed).unwrap();
    let out = run(&["datamap", "check", "--datamap"], Some(&map), &[], &url);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("0 error(s)"), "{stdout}");

    // The plan for a subject: what would go, nothing erased.
    let out = run(&["datamap", "plan", "--datamap"], Some(&map), &["7"], &url);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let line = |t: &str| {
        stdout
            .lines()
            .find(|l| l.contains(&format!(" {t} ")))
            .unwrap_or_else(|| panic!("{t} in {stdout}"))
            .to_owned()
    };
    assert!(
        line("order_items").contains("3 row(s) would be deleted"),
        "{stdout}"
    );
    assert!(
        line("orders").contains("2 row(s) would be deleted"),
        "{stdout}"
    );
    assert!(
        line("users").contains("1 row(s) would be deleted"),
        "{stdout}"
    );
    let pos = |t: &str| stdout.find(&format!(" {t} ")).unwrap();
    assert!(pos("order_items") < pos("orders") && pos("orders") < pos("users"));
    assert!(stdout.contains("nothing was erased"));
    let dry_order = order_of(&stdout);

    // The plan without a subject prints the order erasure runs: the live
    // foreign key orders -> users is in it (the map alone cannot tell).
    let out = run(&["datamap", "plan", "--datamap"], Some(&map), &[], &url);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(order_of(&stdout), dry_order, "{stdout}");
    assert!(stdout.contains("live schema"), "{stdout}");
    // Offline, it says that the order is the map's alone.
    let out = Command::new(lethe)
        .args(["datamap", "plan", "--datamap"])
        .arg(&map)
        .env_remove("CLI_SHOP_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("export CLI_SHOP_URL"), "{stdout}");

    // A subject id that does not exist is said to be so.
    let out = run(
        &["datamap", "plan", "--datamap"],
        Some(&map),
        &["999"],
        &url,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no row of any table belongs to this subject id"),
        "{stderr}"
    );
    let pool = AnyPool::connect(&url).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM order_items")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 4);
    pool.close().await;
    let name = url.rsplit('/').next().unwrap().to_owned();
    let admin = AnyPool::connect("postgres://postgres@127.0.0.1:5432/postgres")
        .await
        .unwrap();
    admin
        .execute(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .await
        .unwrap();
}

async fn drop_database(url: &str) {
    let name = url.rsplit('/').next().unwrap().to_owned();
    let admin = AnyPool::connect("postgres://postgres@127.0.0.1:5432/postgres")
        .await
        .unwrap();
    admin
        .execute(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .await
        .unwrap();
}

/// `lethe datamap init` writes a map that parses and that `check` keeps red
/// until its decisions are made; `install` makes the record tables; the
/// retention is visible before it acts (`retention list`, `purge --dry-run`).
#[tokio::test]
async fn init_install_and_retention_from_the_command_line() {
    let url = database().await;
    let dir = tempfile::tempdir().unwrap();
    let lethe = env!("CARGO_BIN_EXE_lethe");
    let generated = dir.path().join("generated.toml");
    let out = run(
        &[
            "datamap",
            "init",
            "--url-env",
            "CLI_SHOP_URL",
            "--subject",
            "users.id",
            "--name",
            "shop",
            "--out",
        ],
        Some(&generated),
        &[],
        &url,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("TODO"), "{stderr}");
    let text = std::fs::read_to_string(&generated).unwrap();
    assert!(
        text.contains("name = \"orders\"\n# foreign key to users\nowner = \"user_id\""),
        "{text}"
    );
    assert!(text.contains("belongs_to = { table = \"orders\""), "{text}");
    let out = run(
        &["datamap", "check", "--datamap"],
        Some(&generated),
        &[],
        &url,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("error[undecided] shop.newsletter"),
        "{stdout}"
    );
    // A subject table that does not exist is named, with a near one.
    let out = Command::new(lethe)
        .args([
            "datamap",
            "init",
            "--url-env",
            "CLI_SHOP_URL",
            "--subject",
            "user.id",
        ])
        .env("CLI_SHOP_URL", &url)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("did you mean users"),
        "{stderr}"
    );

    // Retention: invoices kept 30 days.
    let pool = AnyPool::connect(&url).await.unwrap();
    pool.execute(
        "CREATE TABLE invoices (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, amount BIGINT)",
    )
    .await
    .unwrap();
    pool.execute("INSERT INTO invoices VALUES (1, 7, 100), (2, 7, 200), (3, 8, 300)")
        .await
        .unwrap();
    let map = dir.path().join("datamap.toml");
    std::fs::write(
        &map,
        format!(
            "{MAP}\n[[systems.tables]]\nname = \"invoices\"\nowner = \"user_id\"\naction = \"keep\"\nlegal_basis = \"tax records\"\nretention_days = 30\n"
        ),
    )
    .unwrap();
    let out = run(&["retention", "list", "--datamap"], Some(&map), &[], &url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 retention record(s)"));
    let out = run(&["datamap", "install", "--datamap"], Some(&map), &[], &url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // SAFETY of the test: the variable is only read by this test.
    unsafe { std::env::set_var("CLI_SHOP_URL", &url) };
    let m = lethe_connect::DataMap::load(&map).unwrap();
    let sys = lethe_connect::SqlSystem::connect_from_env(&m.systems[0])
        .await
        .unwrap();
    let now = jiff::Timestamp::now();
    sys.erase("case-7", &lethe_domain::SubjectId::parse("7").unwrap(), now)
        .await
        .unwrap();
    let out = run(&["retention", "list", "--datamap"], Some(&map), &[], &url);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("shop.invoices")
            && stdout.contains("case-7")
            && stdout.contains("tax records"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 retention record(s): 1 kept, 0 purged"),
        "{stdout}"
    );
    let later = now
        .checked_add(jiff::SignedDuration::from_hours(31 * 24))
        .unwrap()
        .to_string();
    for (at, expect) in [
        (None, "0 row(s) would be purged"),
        (Some(later.as_str()), "2 row(s) would be purged"),
    ] {
        let mut c = Command::new(lethe);
        c.args(["retention", "purge", "--dry-run", "--datamap"])
            .arg(&map)
            .env("CLI_SHOP_URL", &url);
        if let Some(at) = at {
            c.args(["--at", at]);
        }
        let out = c.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(expect) && stdout.contains("nothing was removed"),
            "{stdout}"
        );
    }
    // A real purge never acts before the retention ends.
    let out = Command::new(lethe)
        .args(["retention", "purge", "--datamap"])
        .arg(&map)
        .args(["--at", later.as_str()])
        .env("CLI_SHOP_URL", &url)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("in the future"),
        "{stderr}"
    );
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM invoices WHERE user_id = 7")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 2, "a dry run removes nothing");
    pool.close().await;
    drop(sys);
    drop_database(&url).await;
}
