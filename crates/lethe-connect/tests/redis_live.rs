//! The Redis connector against the machine's Redis server (6379).

use lethe_connect::DataMap;
use lethe_connect::redis_conn::RedisSystem;
use lethe_domain::SubjectId;
use redis::AsyncCommands;

#[tokio::test]
async fn redis_erases_keys_fields_and_members_exactly_once() {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let p = format!("t{}", &run[..12]);
    let map = DataMap::parse(&format!(
        r#"
[[systems]]
name = "cache"
kind = "redis"
url_env = "UNUSED"
keys = [
  {{ type = "key", pattern = "{p}:session:{{subject}}:*" }},
  {{ type = "key", pattern = "{p}:cart:{{subject}}" }},
  {{ type = "hash_field", key = "{p}:last_seen", field = "{{subject}}" }},
  {{ type = "set_member", key = "{p}:online", member = "{{subject}}" }},
  {{ type = "zset_member", key = "{p}:leaderboard", member = "user:{{subject}}" }},
]
"#
    ))
    .unwrap();
    let case = format!("case-{run}");
    let url = "redis://127.0.0.1:6379/";
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    for u in ["1", "2", "10"] {
        for s in 0..3 {
            let _: () = c
                .set(format!("{p}:session:{u}:{s}"), "token")
                .await
                .unwrap();
        }
        let _: () = c.hset(format!("{p}:cart:{u}"), "sku-1", 2).await.unwrap();
        let _: () = c
            .hset(format!("{p}:last_seen"), u, 1_700_000_000)
            .await
            .unwrap();
        let _: () = c.sadd(format!("{p}:online"), u).await.unwrap();
        let _: () = c
            .zadd(format!("{p}:leaderboard"), format!("user:{u}"), 42)
            .await
            .unwrap();
    }
    let sys = RedisSystem::connect(&map.systems[0], url).await.unwrap();
    let subject = SubjectId::parse("1").unwrap();
    let exported = sys.export(&subject).await.unwrap();
    assert_eq!(exported[0].1.as_object().unwrap().len(), 3);
    assert_eq!(exported[1].1[format!("{p}:cart:1")]["sku-1"], "2");

    let out = sys.erase(&case, &subject).await.unwrap();
    let counts: Vec<u64> = out.tables.iter().map(|t| t.rows).collect();
    assert_eq!(counts, vec![3, 1, 1, 1, 1]);
    let verified = sys.verify(&subject, out.clone()).await.unwrap();
    assert!(verified.tables.iter().all(|t| t.remaining == Some(0)));
    // A re-run returns the recorded counts.
    let again = sys.erase(&case, &subject).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.tables, out.tables);
    // Subjects 2 and 10 (whose id starts with "1") are intact.
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{p}:session:*"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(left.len(), 6);
    assert!(c.exists::<_, bool>(format!("{p}:cart:10")).await.unwrap());
    assert_eq!(c.scard::<_, u64>(format!("{p}:online")).await.unwrap(), 2);
    assert_eq!(
        c.zcard::<_, u64>(format!("{p}:leaderboard")).await.unwrap(),
        2
    );
    assert_eq!(c.hlen::<_, u64>(format!("{p}:last_seen")).await.unwrap(), 2);
    // A late write is caught by verification.
    let _: () = c.sadd(format!("{p}:online"), "1").await.unwrap();
    let e = sys.verify(&subject, out).await.unwrap_err();
    assert!(e.to_string().contains("online"), "{e}");
    // Clean up this run's keys.
    let all: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{p}:*"))
        .query_async(&mut c)
        .await
        .unwrap();
    let _: () = c.del(all).await.unwrap();
    let _: () = c.del(format!("lethe:erasure:cache:{case}")).await.unwrap();
}
