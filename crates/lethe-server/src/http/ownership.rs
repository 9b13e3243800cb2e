//! Ownership: a platform reaches only the cases it owns (another
//! platform's case is "not found", never "forbidden"), and a case opens only
//! for a live account.

use lethe_domain::{Case, CaseId, Change, Channel, SubjectId};

use crate::AppState;
use crate::http::extract::parse_case_id;
use crate::http::middleware::Principal;
use crate::http::problem::Problem;

/// Loads a case and checks it belongs to the caller (another platform's
/// case is reported as not found).
/// A case of the principal, from the id in a path.
pub async fn owned_case(st: &AppState, p: &Principal, id: &str) -> Result<Case, Problem> {
    owned(st, p, parse_case_id(id)?).await
}

pub async fn owned(st: &AppState, p: &Principal, id: CaseId) -> Result<Case, Problem> {
    match st.store.get_case_and_principal(id).await? {
        // A case an agent opened belongs to the platform the agent named
        // (or serves), so it continues in that platform's app only.
        Some((owner, case)) if owner == p.0 => Ok(case),
        _ => Err(Problem::not_found("no case with this id")),
    }
}

/// A case may be opened only for a live account: one already erased (the
/// data map may keep accounting rows that make it look present) is a 409
/// naming the earlier case, whose receipt proves the erasure (the id only
/// to the platform that erased it); an unknown one is a 422.
pub async fn live_account(
    st: &AppState,
    platform: &str,
    subject: &SubjectId,
) -> Result<(), Problem> {
    let pseudo = st.secrets.pseudonym(subject.expose());
    if let Some((case, owner)) = st.store.erased_case_of(&pseudo).await? {
        let p = Problem::conflict("account-erased", "this account was already erased")
            .field("subject_id");
        return Err(if owner == platform {
            p.fix(format!(
                "nothing is left to cancel; the receipt of the erasure is GET /v1/cases/{case}/receipt"
            ))
        } else {
            p.fix("nothing is left to cancel")
        });
    }
    if !st.systems.subject_exists(subject).await? {
        return Err(Problem::unprocessable(
            "no account with this subject_id exists on the platform",
        )
        .field("subject_id")
        .fix("send the platform's id of an existing account"));
    }
    Ok(())
}

/// A new case, opened now under the installation's policy, for a live
/// account of `platform` ([`live_account`]), with the change that opens it
/// and the account's pseudonym; the caller stores all three in one
/// transaction.
pub async fn open_case(
    st: &AppState,
    platform: &str,
    subject: SubjectId,
    channel: Channel,
) -> Result<(Case, Change, String), Problem> {
    live_account(st, platform, &subject).await?;
    let id = CaseId::from_uuid(uuid::Uuid::now_v7());
    let (case, change) = Case::open(id, subject, channel, st.policy.clone(), st.clock.now());
    let pseudo = st.secrets.pseudonym(case.subject.expose());
    Ok((case, change, pseudo))
}
