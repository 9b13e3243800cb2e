//! Forgetting again after a backup restore.
//!
//! Every recorded erasure keeps a tombstone: the keyed pseudonym of the
//! subject id per system (`lethe_store::erased`). When a platform restores
//! a backup taken before some erasures, those subjects are back. A reapply
//! run reads the restored system's subject ids (SQL subject tables, Redis
//! keys and members, an HTTP service's `subjects.list`), computes their
//! pseudonyms, matches them against the tombstones newer than `since`, and
//! erases the matches again with the same data map, verified — then signs
//! a report of counts only. A reader task streams ids through a bounded
//! channel while the matcher hashes, so the scan uses both cores. Running
//! it twice is safe: the second run finds nothing left to erase.

use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;
use lethe_connect::BatchItem;
use lethe_domain::SubjectId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::outbound::systems::{Erased, Systems};
use crate::secrets::Secrets;

/// Ids per chunk read from a system.
pub const SCAN_CHUNK: usize = 5_000;
/// Chunks in flight between the reader and the matcher.
const CHANNEL_DEPTH: usize = 4;
/// Subjects one run erases again (its memory is bounded by this); a run
/// that finds more stops and says so.
pub const MAX_MATCHED: usize = 1_000_000;
/// The report's type.
pub const REPORT_TYPE: &str = "lethe.reapply.v1";

/// What a run needs.
pub struct Deps<'a> {
    pub store: &'a lethe_store::Store,
    /// The data map the systems were connected from (for the structural
    /// check before erasing).
    pub datamap: &'a lethe_connect::DataMap,
    pub systems: Arc<Systems>,
    pub secrets: &'a Secrets,
    pub signer: &'a lethe_ledger::Signer,
}

/// What to reapply.
#[derive(Debug, Clone)]
pub struct Request {
    pub system: String,
    /// Tombstones of erasures at or after this time (the backup's time).
    pub since: Timestamp,
    /// Count only: nothing is erased or recorded in the audit log.
    pub dry_run: bool,
    /// Only this platform's erased subjects (a platform key's run).
    pub platform: Option<String>,
}

/// The report of a run: counts only, never an id.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Report {
    /// `lethe.reapply.v1`.
    #[serde(rename = "type")]
    pub kind: String,
    pub run_id: String,
    pub system: String,
    /// Erasures at or after this time were looked for (RFC 3339).
    pub since: String,
    pub dry_run: bool,
    pub started_at: String,
    pub finished_at: String,
    /// Subjects erased from the system since `since` (tombstones).
    pub tombstoned: u64,
    /// Subject ids read from the system.
    pub scanned: u64,
    /// Erased subjects found again in the system.
    pub matched: u64,
    /// Of those, subjects whose rows were erased again (0 in a dry run).
    pub erased: u64,
    /// Rows, keys or records deleted or changed again.
    pub rows: u64,
    /// Erasure requests an HTTP service accepted to carry out later.
    pub accepted: u64,
    /// Ids that are not valid subject ids (skipped).
    pub skipped: u64,
    /// Every re-erasure verified (nothing of the matched subjects left).
    pub verified: bool,
}

/// Why a run failed, with what it had erased again by then (if anything).
#[derive(Debug)]
pub struct Failure {
    pub partial: Option<Report>,
    pub error: String,
}

impl From<String> for Failure {
    fn from(error: String) -> Self {
        Self {
            partial: None,
            error,
        }
    }
}

/// A new run id.
pub fn new_run_id() -> String {
    format!("reapply-{}", hex::encode(rand::random::<[u8; 8]>()))
}

/// Runs a reapply to the end: scan, match, erase again (unless a dry
/// run), verify. The caller records the run and signs the report.
pub async fn run(
    d: &Deps<'_>,
    run_id: &str,
    req: &Request,
    now: &(dyn Fn() -> Timestamp + Send + Sync),
) -> Result<Report, Failure> {
    let started = now();
    if d.systems.get(&req.system).is_none() {
        return Err(format!(
            "system {} is not in the data map (systems: {})",
            req.system,
            d.systems.names().collect::<Vec<_>>().join(", ")
        )
        .into());
    }
    let platform = req.platform.as_deref();
    let tombstoned = d
        .store
        .erased_count(&req.system, req.since, platform)
        .await
        .map_err(|e| e.to_string())?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<String>>(CHANNEL_DEPTH);
    let reader = {
        let systems = d.systems.clone();
        let system = req.system.clone();
        tokio::spawn(async move { systems.scan_subjects(&system, SCAN_CHUNK, tx).await })
    };
    let pseudo = d.secrets.pseudonymizer();
    // pseudonym -> id as the system holds it
    let mut found: HashMap<String, String> = HashMap::new();
    let mut scanned = 0u64;
    let mut failed = None;
    while let Some(chunk) = rx.recv().await {
        scanned += chunk.len() as u64;
        if tombstoned == 0 {
            continue;
        }
        // Ids as cases hold them (trimmed; what is no valid id never was
        // erased by a case).
        let chunk: Vec<String> = chunk
            .iter()
            .filter_map(|id| SubjectId::parse(id).ok())
            .map(|s| s.expose().to_owned())
            .collect();
        let hashes: Vec<String> = chunk.iter().map(|id| pseudo.of(id)).collect();
        let matches = match d
            .store
            .erased_matches(&req.system, req.since, platform, &hashes)
            .await
        {
            Ok(m) => m,
            Err(e) => {
                failed = Some(e.to_string());
                break;
            }
        };
        if matches.is_empty() {
            continue;
        }
        let at: HashMap<&str, usize> = hashes
            .iter()
            .enumerate()
            .map(|(i, h)| (h.as_str(), i))
            .collect();
        for m in matches {
            if let Some(&i) = at.get(m.subject_hash.as_str()) {
                found
                    .entry(m.subject_hash)
                    .or_insert_with(|| chunk[i].clone());
            }
        }
        if found.len() > MAX_MATCHED {
            failed = Some(format!(
                "more than {MAX_MATCHED} erased subjects came back in {}: run again with a later --since, in steps",
                req.system
            ));
            break;
        }
    }
    drop(rx);
    let read = reader
        .await
        .map_err(|_| "the reader stopped unexpectedly".to_owned())?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    read?;
    let mut report = Report {
        kind: REPORT_TYPE.into(),
        run_id: run_id.into(),
        system: req.system.clone(),
        since: req.since.to_string(),
        dry_run: req.dry_run,
        started_at: started.to_string(),
        finished_at: String::new(),
        tombstoned,
        scanned,
        matched: found.len() as u64,
        erased: 0,
        rows: 0,
        accepted: 0,
        skipped: 0,
        verified: true,
    };
    if !req.dry_run && !found.is_empty() {
        if let Err(e) = erase_again(d, run_id, &req.system, found, &mut report, now).await {
            // What was erased before the failure is reported with it.
            report.finished_at = now().to_string();
            report.verified = false;
            return Err(Failure {
                partial: (report.erased > 0).then_some(report),
                error: e,
            });
        }
        // An HTTP service that only accepted has not confirmed.
        report.verified &= report.accepted == 0;
    }
    report.finished_at = now().to_string();
    Ok(report)
}

async fn erase_again(
    d: &Deps<'_>,
    run_id: &str,
    system: &str,
    found: HashMap<String, String>,
    report: &mut Report,
    now: &(dyn Fn() -> Timestamp + Send + Sync),
) -> Result<(), String> {
    // The record key in the platform's system: the run and the pseudonym
    // (at most 64 characters), so a retried run replays, a new one erases.
    let short = run_id.trim_start_matches("reapply-");
    let mut items = Vec::with_capacity(found.len());
    for (hash, id) in found {
        match SubjectId::parse(&id) {
            Ok(subject) => items.push(BatchItem {
                case_id: format!("r{short}-{hash}"),
                subject,
            }),
            Err(_) => report.skipped += 1,
        }
    }
    // Like a case's erasure, this one does not start on a schema that
    // would break it part-way.
    if let (Some(sql), Some(entry)) = (d.systems.sql(system), d.datamap.system(system)) {
        let found = lethe_connect::check::breaking_drift(sql, entry, std::time::Duration::ZERO)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(f) = found.first() {
            return Err(format!(
                "the schema of {system} no longer matches the data map ({} at {}: {}; fix: {}): fix it, then run again",
                f.kind, f.at, f.message, f.fix
            ));
        }
    }
    let batch = d.systems.batch_size(system).max(1);
    for chunk in items.chunks(batch) {
        for r in d.systems.erase_batch(system, chunk, now(), None).await? {
            match r {
                Erased::Done(o) => {
                    let mut rows = 0;
                    for t in &o.tables {
                        if t.action == "keep" {
                            continue;
                        }
                        rows += t.rows;
                        if t.remaining.is_some_and(|n| n > 0) {
                            report.verified = false;
                        }
                    }
                    report.rows += rows;
                    if rows > 0 {
                        report.erased += 1;
                    }
                }
                Erased::AwaitingCallback => report.accepted += 1,
                Erased::Manual { .. } => {
                    return Err(format!(
                        "system {system} is erased by hand: reapply cannot do it"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The audit event's detail of a finished run: its counts.
pub fn event_detail(r: &Report) -> serde_json::Value {
    serde_json::json!({
        "system": r.system,
        "since": r.since,
        "tombstoned": r.tombstoned,
        "scanned": r.scanned,
        "matched": r.matched,
        "erased": r.erased,
        "rows": r.rows,
        "accepted": r.accepted,
        "verified": r.verified,
    })
}

/// Runs and records a run: opened `running`, closed `done` with the signed
/// report (and, unless a dry run, its audit event) or `failed` with why.
pub async fn run_recorded(
    d: &Deps<'_>,
    run_id: &str,
    req: &Request,
    actor: &str,
    now: &(dyn Fn() -> Timestamp + Send + Sync),
) -> Result<lethe_ledger::report::SignedDoc, String> {
    match run(d, run_id, req, now).await {
        Ok(report) => {
            let signed = lethe_ledger::report::SignedDoc::sign(&report, d.signer);
            let doc = serde_json::to_value(&signed).map_err(|e| e.to_string())?;
            let event = (!req.dry_run).then(|| event_detail(&report));
            d.store
                .close_reapply(run_id.to_owned(), Ok(doc), event, actor.to_owned(), now())
                .await
                .map_err(|e| e.to_string())?;
            Ok(signed)
        }
        Err(f) => {
            // Subjects erased again before the failure are in the log.
            let event = f.partial.as_ref().map(|r| {
                let mut d = event_detail(r);
                d["error"] = serde_json::json!(f.error);
                d
            });
            d.store
                .close_reapply(
                    run_id.to_owned(),
                    Err(f.error.clone()),
                    event,
                    actor.to_owned(),
                    now(),
                )
                .await
                .map_err(|e| e.to_string())?;
            Err(f.error)
        }
    }
}
