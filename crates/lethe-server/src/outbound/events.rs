//! Publishes case events to NATS JetStream for the platform's services
//! that own their data: `frozen`, `restored`, `erasure_requested.<system>`
//! and `erased`. Events are rows written with the change that causes them
//! (see `lethe-store/src/events.rs`); this loop publishes them in order,
//! each with its de-duplication id as `Nats-Msg-Id`, and marks them only
//! after JetStream acknowledged them: at least once, and the stream drops
//! a repeat within its duplicate window. A broker that is down delays
//! events; it never loses them.

use std::time::Duration;
use tokio::sync::watch;

use crate::AppState;

/// Events read per round.
const BATCH: u32 = 100;
/// How long a publisher holds the events it claimed (a batch takes at most
/// `BATCH` acknowledgements of `ACK_TIMEOUT` each when the broker is slow).
const LEASE: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);
/// The longest wait between attempts while NATS is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a publish may wait for JetStream's acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

async fn connect(st: &AppState, url: &str) -> Result<async_nats::jetstream::Context, String> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .map_err(|e| format!("connecting to NATS: {e}"))?;
    let js = async_nats::jetstream::new(client);
    let cfg = &st.events;
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: cfg.stream.clone(),
        subjects: vec![format!("{}.>", cfg.subject_prefix)],
        duplicate_window: Duration::from_secs(cfg.duplicate_window_secs),
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| format!("creating the stream {}: {e}", cfg.stream))?;
    Ok(js)
}

pub async fn publish_loop(st: AppState, mut shutdown: watch::Receiver<bool>) {
    let Some(url) = st.events.nats_url.clone() else {
        return;
    };
    let mut js: Option<async_nats::jetstream::Context> = None;
    let mut backoff = Duration::from_millis(250);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let ok = match round(&st, &url, &mut js).await {
            Ok(n) => {
                backoff = Duration::from_millis(250);
                n > 0
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "publishing case events failed; will retry");
                js = None;
                let wait = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
        };
        if !ok {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// Publishes one batch; returns how many events went out.
async fn round(
    st: &AppState,
    url: &str,
    js: &mut Option<async_nats::jetstream::Context>,
) -> Result<usize, String> {
    // Connect before claiming: an instance that cannot reach the broker
    // holds no lease, so an instance that can (or this one, restarted)
    // publishes at once instead of waiting for the lease to run out.
    if js.is_none() {
        *js = Some(connect(st, url).await?);
    }
    let events = st
        .store
        .pending_case_events(BATCH, LEASE)
        .await
        .map_err(|e| e.to_string())?;
    if events.is_empty() {
        return Ok(0);
    }
    let result = publish(st, url, js, &events).await;
    // What was not published goes back at once, for the next round here
    // or on another instance.
    let published: usize = *result.as_ref().unwrap_or(&0);
    let rest: Vec<i64> = events.iter().skip(published).map(|e| e.id).collect();
    if result.is_err() && !rest.is_empty() {
        let _ = st.store.release_case_events(rest).await;
    }
    result.map(|_| published)
}

/// Publishes `events` in order, stopping at the first failure; the number
/// published, or why it stopped.
async fn publish(
    st: &AppState,
    url: &str,
    js: &mut Option<async_nats::jetstream::Context>,
    events: &[lethe_store::CaseEvent],
) -> Result<usize, String> {
    if js.is_none() {
        *js = Some(connect(st, url).await?);
    }
    let Some(ctx) = js.as_ref() else {
        return Err("no NATS connection".into());
    };
    let mut done = vec![];
    let mut failure = None;
    for e in events {
        let subject = match &e.system {
            Some(s) => format!("{}.{}.{s}", st.events.subject_prefix, e.kind),
            None => format!("{}.{}", st.events.subject_prefix, e.kind),
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", e.dedupe_id.as_str());
        let sent = async {
            let ack = ctx
                .publish_with_headers(subject, headers, e.payload.clone().into())
                .await
                .map_err(|err| format!("publishing: {err}"))?;
            tokio::time::timeout(ACK_TIMEOUT, ack)
                .await
                .map_err(|_| "JetStream did not acknowledge in time".to_owned())?
                .map_err(|err| format!("JetStream refused: {err}"))
        }
        .await;
        match sent {
            Ok(_) => done.push(e.id),
            Err(why) => {
                let _ = st.store.case_event_failed(e.id, why.clone()).await;
                failure = Some(why);
                // Order matters to consumers: stop at the first failure.
                break;
            }
        }
    }
    let n = done.len();
    if !done.is_empty() {
        st.store
            .case_events_published(done, st.clock.now())
            .await
            .map_err(|e| e.to_string())?;
    }
    match failure {
        Some(why) => Err(why),
        None => Ok(n),
    }
}
