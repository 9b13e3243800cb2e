//! A chat server's schema of 100+ tables in which the account is a text id
//! (`@u7:chat.test`) found in many tables under several names, as its bare
//! local part, and inside JSON documents, with no foreign key anywhere.
//! Shared by the erasure test and the `datamap init` recall measurement.
#![allow(dead_code)]

pub const SERVER: &str = "chat.test";
pub const USERS: i64 = 120;
pub const FILLERS: usize = 95;

pub fn user(i: i64) -> String {
    format!("@u{i}:{SERVER}")
}

/// The personal columns of the schema (table.column), by construction:
/// what a correct map must cover.
pub fn personal_columns() -> Vec<&'static str> {
    vec![
        "users.name",
        "users.password_hash",
        "profiles.user_id",
        "profiles.displayname",
        "profiles.avatar_url",
        "user_threepids.user_id",
        "user_threepids.address",
        "devices.user_id",
        "devices.display_name",
        "devices.last_seen_ip",
        "access_tokens.user_id",
        "access_tokens.token",
        "events.sender",
        "event_json.json",
        "room_memberships.user_id",
        "current_state.state_key",
        "room_state_docs.doc",
        "receipts.receipt_user",
        "pushers.user_name",
        "pushers.pushkey",
        "room_aliases.creator",
        "reports.target_user_id",
        "user_ips.user_id",
        "user_ips.ip",
        "support_tickets.requester",
        "support_tickets.contact",
        "login_audit.client_addr",
    ]
}

/// The DDL and data, one statement per line-ending `;`.
pub fn ddl(kind: &str) -> String {
    let (json, text) = match kind {
        "postgres" => ("JSONB", "TEXT"),
        "mysql" => ("JSON", "TEXT"),
        _ => ("TEXT", "TEXT"),
    };
    let v = "VARCHAR(100)";
    let mut s = format!(
        "CREATE TABLE users (name {v} PRIMARY KEY, password_hash {v}, creation_ts BIGINT NOT NULL, admin INT NOT NULL);
         CREATE TABLE profiles (user_id {v} NOT NULL, displayname {v}, avatar_url VARCHAR(200));
         CREATE TABLE user_threepids (user_id {v} NOT NULL, medium VARCHAR(10) NOT NULL, address {v} NOT NULL);
         CREATE TABLE devices (user_id {v} NOT NULL, device_id VARCHAR(50) NOT NULL, display_name {v}, last_seen_ip VARCHAR(50));
         CREATE TABLE access_tokens (id BIGINT PRIMARY KEY, user_id {v} NOT NULL, token {v} NOT NULL);
         CREATE TABLE events (event_id VARCHAR(60) PRIMARY KEY, room_id VARCHAR(60) NOT NULL, sender {v} NOT NULL, type VARCHAR(30) NOT NULL);
         CREATE TABLE event_json (event_id VARCHAR(60) PRIMARY KEY, room_id VARCHAR(60) NOT NULL, json {text} NOT NULL);
         CREATE TABLE room_memberships (event_id VARCHAR(60) PRIMARY KEY, user_id {v} NOT NULL, room_id VARCHAR(60) NOT NULL, membership VARCHAR(20));
         CREATE TABLE current_state (room_id VARCHAR(60) NOT NULL, type VARCHAR(30) NOT NULL, state_key {v} NOT NULL, event_id VARCHAR(60));
         CREATE TABLE room_state_docs (room_id VARCHAR(60) PRIMARY KEY, doc {json} NOT NULL);
         CREATE TABLE receipts (room_id VARCHAR(60) NOT NULL, receipt_user {v} NOT NULL, event_id VARCHAR(60));
         CREATE TABLE pushers (id BIGINT PRIMARY KEY, user_name {v} NOT NULL, pushkey {v});
         CREATE TABLE room_aliases (alias VARCHAR(60) PRIMARY KEY, creator {v});
         CREATE TABLE reports (id BIGINT PRIMARY KEY, target_user_id {v} NOT NULL, reason VARCHAR(60));
         CREATE TABLE user_ips (user_id {v} NOT NULL, ip VARCHAR(50) NOT NULL, last_seen BIGINT NOT NULL);
         CREATE TABLE rooms (room_id VARCHAR(60) PRIMARY KEY, is_public INT NOT NULL, version VARCHAR(10));
         CREATE TABLE support_tickets (id BIGINT PRIMARY KEY, requester {v} NOT NULL, contact {v});
         CREATE TABLE login_audit (id BIGINT PRIMARY KEY, client_addr VARCHAR(50) NOT NULL, ok INT NOT NULL);\n"
    );
    for f in 0..FILLERS {
        s.push_str(&format!(
            "CREATE TABLE stats_{f:03} (id BIGINT PRIMARY KEY, bucket VARCHAR(30), total BIGINT NOT NULL);\n"
        ));
    }
    let mut ins = |table: &str, rows: Vec<String>| {
        for chunk in rows.chunks(200) {
            s.push_str(&format!(
                "INSERT INTO {table} VALUES {};\n",
                chunk.join(", ")
            ));
        }
    };
    let mut users = vec![];
    let mut profiles = vec![];
    let mut threepids = vec![];
    let mut devices = vec![];
    let mut tokens = vec![];
    let mut events = vec![];
    let mut ejson = vec![];
    let mut members = vec![];
    let mut state = vec![];
    let mut docs = vec![];
    let mut receipts = vec![];
    let mut pushers = vec![];
    let mut aliases = vec![];
    let mut reports = vec![];
    let mut ips = vec![];
    let mut rooms = vec![];
    let mut tickets = vec![];
    let mut audit = vec![];
    for i in 1..=USERS {
        tickets.push(format!(
            "({i}, '{}', 'reach.u{i}@mail.example.cn')",
            user(i)
        ));
        audit.push(format!(
            "({i}, '172.16.{}.{}', {})",
            i / 200,
            i % 200 + 1,
            i % 2
        ));
        let u = user(i);
        users.push(format!(
            "('{u}', 'bcrypt$2b$12$h{i:04}', {}, 0)",
            1_600_000_000 + i
        ));
        profiles.push(format!("('u{i}', 'User {i}', 'mxc://{SERVER}/avatar{i}')"));
        threepids.push(format!("('{u}', 'email', 'u{i}@mail.example.cn')"));
        threepids.push(format!("('{u}', 'msisdn', '+86 1380000{i:04}')"));
        devices.push(format!(
            "('{u}', 'DEV{i}', 'Phone of u{i}', '10.0.{}.{}')",
            i / 200,
            i % 200 + 1
        ));
        tokens.push(format!("({i}, '{u}', 'syt_token_{i:08}')"));
        let room = format!("!r{i}:{SERVER}");
        rooms.push(format!("('{room}', {}, '10')", i % 2));
        for k in 0..2 {
            let ev = format!("$e{i}_{k}");
            events.push(format!("('{ev}', '{room}', '{u}', 'm.room.message')"));
            ejson.push(format!(
                "('{ev}', '{room}', '{{\"sender\": \"{u}\", \"type\": \"m.room.message\", \"content\": {{\"body\": \"hello {k}\"}}}}')"
            ));
        }
        members.push(format!("('$m{i}', '{u}', '{room}', 'join')"));
        state.push(format!("('{room}', 'm.room.member', '{u}', '$m{i}')"));
        docs.push(format!(
            "('{room}', '{{\"creator\": \"{u}\", \"topic\": \"room {i}\"}}')"
        ));
        receipts.push(format!("('{room}', '{u}', '$e{i}_0')"));
        pushers.push(format!("({i}, '{u}', 'pushkey-{i}')"));
        aliases.push(format!("('#a{i}:{SERVER}', '{u}')"));
        reports.push(format!("({i}, '{u}', 'spam')"));
        ips.push(format!(
            "('{u}', '192.168.{}.{}', {})",
            i / 200,
            i % 200 + 1,
            1_700_000_000 + i
        ));
    }
    ins("users", users);
    ins("profiles", profiles);
    ins("user_threepids", threepids);
    ins("devices", devices);
    ins("access_tokens", tokens);
    ins("events", events);
    ins("event_json", ejson);
    ins("room_memberships", members);
    ins("current_state", state);
    ins("room_state_docs", docs);
    ins("receipts", receipts);
    ins("pushers", pushers);
    ins("room_aliases", aliases);
    ins("reports", reports);
    ins("user_ips", ips);
    ins("rooms", rooms);
    ins("support_tickets", tickets);
    ins("login_audit", audit);
    for f in 0..FILLERS {
        let rows: Vec<String> = (1..=5)
            .map(|r| format!("({r}, 'bucket-{r}', {})", r * 10 + f as i64))
            .collect();
        ins(&format!("stats_{f:03}"), rows);
    }
    s
}

/// The right map, written by hand.
pub fn map(kind: &str) -> String {
    let refresh = "";
    format!(
        r#"
[[systems]]
name = "chat"
kind = "{kind}"
url_env = "UNUSED_URL"
hash_key_env = "CHAT_HASH_KEY"
batch_size = 40
{refresh}
[[systems.tables]]
name = "users"
owner = "name"
action = "delete"
[[systems.tables]]
name = "profiles"
owner = "user_id"
owner_form = "local_part"
action = "delete"
[[systems.tables]]
name = "user_threepids"
owner = "user_id"
action = "delete"
[[systems.tables]]
name = "devices"
owner = "user_id"
action = "delete"
[[systems.tables]]
name = "access_tokens"
owner = "user_id"
action = "delete"
[[systems.tables]]
name = "events"
owner = "sender"
action = "delete"
[[systems.tables]]
name = "event_json"
owner = "json"
owner_path = "sender"
action = "delete"
[[systems.tables]]
name = "room_memberships"
owner = "user_id"
action = "delete"
[[systems.tables]]
name = "current_state"
owner = "state_key"
action = "delete"
[[systems.tables]]
name = "room_state_docs"
owner = "doc"
owner_path = "creator"
action = "redact"
redact_with = "hash"
[[systems.tables]]
name = "receipts"
owner = "receipt_user"
action = "delete"
[[systems.tables]]
name = "pushers"
owner = "user_name"
action = "delete"
[[systems.tables]]
name = "room_aliases"
owner = "creator"
action = "nullify"
columns = ["creator"]
[[systems.tables]]
name = "reports"
owner = "target_user_id"
action = "delete"
[[systems.tables]]
name = "user_ips"
owner = "user_id"
action = "delete"
[[systems.tables]]
name = "support_tickets"
owner = "requester"
action = "delete"
[[systems.ignore]]
table = "login_audit"
reason = "addresses of anonymous login attempts, purged by the platform after 7 days"
"#
    )
}
