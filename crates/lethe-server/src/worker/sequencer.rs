//! The audit log's sequencer: one instance at a time (the holder of the
//! store's sequencer lease) integrates queued events into the Merkle tree
//! in batches; every other instance watches the lease and takes it over
//! once its holder stops renewing it (killed, cut off). See
//! `lethe_store::log` for the invariants and docs/performance.md for the
//! maximum merge delay.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use lethe_store::{LEASE_TTL_MS, MAX_SEQUENCE_BATCH};
use tokio::sync::watch;

use crate::AppState;

/// How long the holder gathers events after a wake-up before a batch (more
/// events per transaction under load, at little delay).
const GATHER: Duration = Duration::from_millis(5);
/// The holder looks at the queue at least this often (events queued by
/// other instances wake nobody here).
const HOLDER_POLL: Duration = Duration::from_millis(100);
/// Other instances look at the lease this often.
const FOLLOWER_POLL: Duration = Duration::from_millis(1_000);
/// Waits after a failed pass, doubling, at most.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Whether `owner` (`host/pid/random`) ran on this instance's host and no
/// process with its pid exists any more.
fn process_gone(me: &str, owner: &str) -> bool {
    let mut mine = me.split('/');
    let mut theirs = owner.split('/');
    let (Some(my_host), Some(host), Some(pid)) = (mine.next(), theirs.next(), theirs.next()) else {
        return false;
    };
    if my_host != host || owner == me {
        return false;
    }
    pid.parse::<u32>()
        .is_ok_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
}

pub async fn run(st: AppState, mut shutdown: watch::Receiver<bool>) {
    let wake = st.store.audit_queued_signal();
    let renew_every = Duration::from_millis(u64::try_from(LEASE_TTL_MS / 3).unwrap_or(3_000));
    let mut held = false;
    let mut last_pass: Option<Instant> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        if *shutdown.borrow() {
            if held && let Err(e) = st.store.release_sequencer().await {
                tracing::warn!(error = %e, "releasing the sequencer's lease failed");
            }
            return;
        }
        let due = if held {
            // Work waiting, or the lease to renew.
            match st.store.audit_queued().await {
                Ok(queued) => queued || last_pass.is_none_or(|t| t.elapsed() >= renew_every),
                Err(e) => {
                    tracing::warn!(error = %e, "reading the audit queue failed");
                    false
                }
            }
        } else {
            // Free, expired, or never taken.
            match st.store.sequencer_lease().await {
                Ok(None) => true,
                Ok(Some((owner, expires_at, _))) => {
                    // Ours (after a failed pass, or taken by a request
                    // that caught the log up), free, or run out.
                    if owner == st.store.instance()
                        || expires_at < lethe_store::now_wall().as_millisecond()
                    {
                        true
                    } else if process_gone(st.store.instance(), &owner) {
                        // The holder ran on this host and its process is
                        // gone (a restart after a crash): no need to wait
                        // for its lease to run out.
                        tracing::warn!("the sequencer's holder on this host is gone; taking over");
                        st.store.expire_sequencer_of(owner).await.is_ok()
                    } else {
                        false
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the sequencer's lease failed");
                    false
                }
            }
        };
        if due {
            match st.store.sequence(MAX_SEQUENCE_BATCH, None).await {
                Ok(out) => {
                    if out.held != held {
                        if out.held {
                            tracing::info!(
                                epoch = out.epoch,
                                size = out.size,
                                "this instance sequences the audit log"
                            );
                        } else {
                            tracing::warn!("another instance sequences the audit log now");
                        }
                    }
                    held = out.held;
                    st.sequencer.holder.store(held, Ordering::Relaxed);
                    last_pass = Some(Instant::now());
                    backoff = Duration::from_millis(100);
                    if out.integrated > 0 {
                        st.sequencer
                            .integrated
                            .fetch_add(out.integrated, Ordering::Relaxed);
                        st.sequencer.batches.fetch_add(1, Ordering::Relaxed);
                    }
                    // Events wait beyond this batch: go on at once.
                    if out.more {
                        continue;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "sequencing the audit log failed; retrying");
                    held = false;
                    st.sequencer.holder.store(false, Ordering::Relaxed);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
        }
        let idle = if held { HOLDER_POLL } else { FOLLOWER_POLL };
        tokio::select! {
            _ = wake.notified(), if held => tokio::time::sleep(GATHER).await,
            _ = tokio::time::sleep(idle) => {}
            _ = shutdown.changed() => {}
        }
    }
}
