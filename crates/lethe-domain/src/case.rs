//! The cancellation case (注销申请) as an explicit state machine.
//!
//! ```text
//!  submitted ──verify──▶ identity_verified ──checks──▶ checks_blocked ◀─┐
//!                                               │          │ checks ────┘
//!                                               ▼          ▼
//!                                         checks_clear ◀───┘
//!                                               │ acknowledge (each consequence)
//!                                               ▼
//!                                 consequences_acknowledged
//!                                               │ confirm
//!                         ┌─────────────────────┴──────────────┐
//!                         ▼ (policy: review)                   ▼
//!                   under_review ──approve──▶ cooling_off ──(ends)──▶ settling ──(all settled)──┐
//!                         │                       │    └──(ends, nothing to settle)──┐          │
//!                         ▼ reject                ▼ withdraw                         ▼          ▼
//!                      rejected               withdrawn                    failed ◀──▶ erasing ──▶ erased
//! ```
//!
//! Money moves only when the cancellation is final: choosing a settlement
//! records it; the instructions go out when cooling-off ends (`settling`),
//! and the erasure starts once every one is settled.
//!
//! Every successful [`Case::apply`] yields exactly one [`Change`], which the
//! storage layer writes as exactly one audit event in the same transaction.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

use crate::calendar::Calendar;
use crate::deadline::{self, Deadline};
use crate::{AssuranceLevel, CaseId, Channel, Locale, Policy, Reason, SubjectId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseState {
    Submitted,
    IdentityVerified,
    ChecksBlocked,
    ChecksClear,
    ConsequencesAcknowledged,
    UnderReview,
    CoolingOff,
    /// Cooling-off ended: the chosen settlements are being carried out.
    Settling,
    Erasing,
    Erased,
    Withdrawn,
    Rejected,
    Failed,
}

impl CaseState {
    pub const ALL: [CaseState; 13] = [
        Self::Submitted,
        Self::IdentityVerified,
        Self::ChecksBlocked,
        Self::ChecksClear,
        Self::ConsequencesAcknowledged,
        Self::UnderReview,
        Self::CoolingOff,
        Self::Settling,
        Self::Erasing,
        Self::Erased,
        Self::Withdrawn,
        Self::Rejected,
        Self::Failed,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Submitted => "submitted",
            Self::IdentityVerified => "identity_verified",
            Self::ChecksBlocked => "checks_blocked",
            Self::ChecksClear => "checks_clear",
            Self::ConsequencesAcknowledged => "consequences_acknowledged",
            Self::UnderReview => "under_review",
            Self::CoolingOff => "cooling_off",
            Self::Settling => "settling",
            Self::Erasing => "erasing",
            Self::Erased => "erased",
            Self::Withdrawn => "withdrawn",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// States in which the case waits for the user, not for the platform.
    pub fn waits_for_user(self) -> bool {
        matches!(
            self,
            CaseState::Submitted
                | CaseState::ChecksBlocked
                | CaseState::ChecksClear
                | CaseState::ConsequencesAcknowledged
                | CaseState::CoolingOff
        )
    }

    /// A terminal case never changes again.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Erased | Self::Withdrawn | Self::Rejected)
    }

    /// Whether the user can still change their mind and keep the account.
    pub fn can_withdraw(&self) -> bool {
        matches!(
            self,
            Self::Submitted
                | Self::IdentityVerified
                | Self::ChecksBlocked
                | Self::ChecksClear
                | Self::ConsequencesAcknowledged
                | Self::UnderReview
                | Self::CoolingOff
        )
    }

    /// What has to happen next, in words for an operator or a developer.
    pub fn next_step(&self) -> &'static str {
        match self {
            Self::Submitted => "verify the account holder's identity",
            Self::IdentityVerified => "run the checks for blockers and assets",
            Self::ChecksBlocked => "resolve the listed blockers, then run the checks again",
            Self::ChecksClear => {
                "acknowledge each stated consequence and settle (or forfeit) each asset"
            }
            Self::ConsequencesAcknowledged => "confirm the cancellation",
            Self::UnderReview => "wait for an agent's review",
            Self::CoolingOff => {
                "wait for the cooling-off period to end, or withdraw to keep the account"
            }
            Self::Settling => {
                "wait while the platform carries out the chosen settlements; choose again for one it refused"
            }
            Self::Erasing => "wait while the data is erased",
            Self::Erased => "nothing: the account is cancelled and the receipt is ready",
            Self::Withdrawn => "nothing: the account was kept",
            Self::Rejected => "nothing: the request was rejected (see the reason)",
            Self::Failed => "an operator must look at the failure and retry the erasure",
        }
    }
}

impl fmt::Display for CaseState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that stops the cancellation until it is resolved (an unfinished
/// order, an open dispute...). `items` are the platform's references (order
/// numbers), never personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocker {
    pub code: String,
    pub system: String,
    pub message_zh: String,
    pub message_en: String,
    pub items: Vec<String>,
}

/// A statement of what cancelling will do, which the user must acknowledge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consequence {
    pub id: String,
    pub version: u32,
    pub text_zh: String,
    pub text_en: String,
}

impl Consequence {
    /// The statement every case carries whatever the platform configures.
    pub fn account_gone() -> Self {
        Self {
            id: "account_erased".into(),
            version: 1,
            text_zh: "冷静期结束后，账号将被注销且无法恢复，您的个人信息将被删除（法律要求保留的记录除外，回执中会列明）。".into(),
            text_en: "When the cooling-off period ends the account is cancelled for good and your personal data is erased (except records the law requires us to keep, which your receipt lists).".into(),
        }
    }

    pub fn text(&self, locale: Locale) -> &str {
        match locale {
            Locale::ZhCn => &self.text_zh,
            Locale::En => &self.text_en,
        }
    }
}

/// The user's acknowledgement of one consequence: the exact text shown, its
/// version and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledgement {
    pub consequence_id: String,
    pub version: u32,
    pub locale: Locale,
    pub text_shown: String,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    pub id: CaseId,
    pub subject: SubjectId,
    pub channel: Channel,
    pub state: CaseState,
    /// Number of changes applied so far; the storage layer uses it for
    /// optimistic concurrency.
    pub version: u64,
    pub policy: Policy,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub assurance: AssuranceLevel,
    pub verified_by: Option<String>,
    pub blockers: Vec<Blocker>,
    pub consequences: Vec<Consequence>,
    pub acknowledgements: Vec<Acknowledgement>,
    pub cooling_off_ends_at: Option<Timestamp>,
    pub erasure_started_at: Option<Timestamp>,
    pub closed_at: Option<Timestamp>,
    /// Shown to the user when the case was rejected.
    pub rejection_reason: Option<Reason>,
    /// Shown to operators when the erasure failed.
    pub failure: Option<String>,
    /// When the case entered its current state.
    #[serde(default)]
    pub state_since: Option<Timestamp>,
    /// Time spent waiting for the user so far (not counted against the
    /// CN completion deadline).
    #[serde(default)]
    pub user_wait: jiff::SignedDuration,
    #[serde(default)]
    pub review_started_at: Option<Timestamp>,
    #[serde(default)]
    pub review_ended_at: Option<Timestamp>,
    /// A deadline extension (GDPR, CCPA), with the reason given to the user.
    #[serde(default)]
    pub extension: Option<Extension>,
    /// The user's assets and how each is settled.
    #[serde(default)]
    pub assets: Vec<crate::asset::Asset>,
    /// Why the last checks could not run (a provider did not answer); the
    /// case waits, the check is never skipped.
    #[serde(default)]
    pub checks_problem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    pub reason: Reason,
    pub at: Timestamp,
}

/// The commands a case accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum CaseCommand {
    VerifyIdentity {
        method: String,
        level: AssuranceLevel,
    },
    RecordChecks {
        blockers: Vec<Blocker>,
        consequences: Vec<Consequence>,
        #[serde(default)]
        assets: Vec<crate::asset::Asset>,
    },
    /// A provider could not be asked; nothing changes but the reason shown.
    ChecksUnavailable {
        reason: String,
    },
    /// The user settles one asset (or forfeits it), acknowledging the
    /// statement of what will happen.
    ChooseSettlement {
        asset_id: String,
        option: crate::asset::OptionKind,
        locale: Locale,
        instruction_id: String,
        today: jiff::civil::Date,
        transfer_to: Option<SubjectId>,
    },
    /// The platform's answer to a settlement instruction.
    SettlementResult {
        instruction_id: String,
        ok: bool,
        reference: Option<String>,
        error: Option<String>,
    },
    Acknowledge {
        consequence_id: String,
        version: u32,
        locale: Locale,
    },
    Confirm,
    Approve,
    Reject {
        reason: Reason,
    },
    Withdraw,
    /// Cooling-off ended: the chosen settlements go out (refunds counted on
    /// `today`), or, with nothing to settle, the erasure starts.
    StartErasure {
        today: jiff::civil::Date,
    },
    CompleteErasure,
    FailErasure {
        reason: String,
    },
    RetryErasure,
    /// The user takes an alternative to cancelling (deactivate, change the
    /// password, unbind only the real-name identity): the case is withdrawn.
    ChooseAlternative {
        kind: String,
    },
    /// Extends the response deadline once (GDPR, CCPA), with a reason.
    Extend {
        reason: Reason,
    },
}

impl CaseCommand {
    pub fn name(&self) -> &'static str {
        match self {
            Self::VerifyIdentity { .. } => "verify identity",
            Self::RecordChecks { .. } => "record checks",
            Self::ChecksUnavailable { .. } => "record unavailable checks for",
            Self::ChooseSettlement { .. } => "settle an asset of",
            Self::SettlementResult { .. } => "record a settlement result for",
            Self::Acknowledge { .. } => "acknowledge a consequence",
            Self::Confirm => "confirm",
            Self::Approve => "approve",
            Self::Reject { .. } => "reject",
            Self::Withdraw => "withdraw",
            Self::StartErasure { .. } => "start erasure",
            Self::CompleteErasure => "complete erasure",
            Self::FailErasure { .. } => "fail erasure",
            Self::RetryErasure => "retry erasure",
            Self::Extend { .. } => "extend the deadline of",
            Self::ChooseAlternative { .. } => "choose an alternative for",
        }
    }
}

/// What a settlement pays out on `today`: a pro-rata refund counted for
/// that day, a withdrawal the whole amount.
fn settlement_amount(
    a: &crate::asset::Asset,
    option: crate::asset::OptionKind,
    today: jiff::civil::Date,
) -> Option<crate::MinorUnits> {
    use crate::asset::{AssetKind, OptionKind};
    match (a.kind, option) {
        (AssetKind::Subscription, OptionKind::RefundProRata) => {
            crate::asset::subscription_refund(a, today)
        }
        (_, OptionKind::Withdraw) => a.amount,
        _ => None,
    }
}

/// The event of a settlement change: `case.erasure_started` when it was
/// the last one outstanding (the erasure starts with it), so every case
/// records its erasure's start under one name.
fn settled_kind(kind: &'static str, to: CaseState) -> &'static str {
    if to == CaseState::Erasing {
        "case.erasure_started"
    } else {
        kind
    }
}

fn status_str(s: crate::asset::SettlementStatus) -> &'static str {
    use crate::asset::SettlementStatus::*;
    match s {
        Chosen => "chosen",
        Pending => "pending",
        Done => "done",
        Failed => "failed",
        Forfeited => "forfeited",
    }
}

/// The alternative that unbinds the account's real-name identity (and keeps
/// the account): it needs the verified holder.
pub const UNBIND_REAL_NAME: &str = "unbind_real_name";

/// A notification for the platform, written in the same transaction as the
/// change that caused it and delivered by webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub kind: &'static str,
    pub payload: serde_json::Value,
}

/// The record of one applied command: the audit event's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Event name, e.g. `case.identity_verified`.
    pub kind: String,
    /// `None` only for the creation of the case.
    pub from: Option<CaseState>,
    pub to: CaseState,
    pub at: Timestamp,
    /// Non-personal details (method, consequence id, blocker codes...).
    pub detail: serde_json::Value,
}

impl Change {
    pub fn is_state_change(&self) -> bool {
        self.from != Some(self.to)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("cannot {command} a case that is {state}; next step: {next}")]
    Illegal {
        command: &'static str,
        state: CaseState,
        next: &'static str,
    },
    #[error("the cooling-off period ends at {ends_at}; nothing is erased before then")]
    CoolingOffNotOver { ends_at: Timestamp },
    #[error("identity verified at assurance level {got}, but this policy needs level {needed}")]
    AssuranceTooLow { needed: u8, got: u8 },
    #[error("no consequence with id '{id}' is listed on this case")]
    UnknownConsequence { id: String },
    #[error(
        "consequence '{id}' is now at version {current}; show the user the current text and acknowledge that"
    )]
    StaleConsequence { id: String, current: u32 },
    #[error("consequence '{id}' is already acknowledged")]
    AlreadyAcknowledged { id: String },
    #[error("the deadline cannot be extended: {why}")]
    ExtensionNotAllowed { why: &'static str },
    #[error("no asset with id '{id}' is listed on this case")]
    UnknownAsset { id: String },
    #[error("a {kind} cannot be settled by {option}; offered: {offered}")]
    OptionNotOffered {
        kind: &'static str,
        option: &'static str,
        offered: String,
    },
    #[error("a transfer needs the account to transfer to (transfer_to), other than this one")]
    TransferNeedsTarget,
    #[error(
        "asset '{id}' is already settled or being settled; only a choice not yet carried out (or refused by the platform) can be changed"
    )]
    AlreadySettled { id: String },
    #[error("no settlement instruction '{id}' is pending on this case")]
    UnknownInstruction { id: String },
}

fn illegal(cmd: &CaseCommand, state: CaseState) -> TransitionError {
    TransitionError::Illegal {
        command: cmd.name(),
        state,
        next: state.next_step(),
    }
}

impl Case {
    /// The case's deadlines under its policy's profile, on the platform's
    /// calendar and time zone. A closed case (erased, withdrawn, rejected)
    /// has none open: each is met when the case closed, if not before, so a
    /// withdrawn case never goes overdue.
    pub fn deadlines(&self, cal: &Calendar, tz: &jiff::tz::TimeZone) -> Vec<Deadline> {
        let facts = deadline::Facts {
            profile: self.policy.deadlines,
            created_at: self.created_at,
            review_started_at: self.review_started_at,
            review_ended_at: self.review_ended_at,
            cooling_off_ends_at: self.cooling_off_ends_at,
            erasure_started_at: self.erasure_started_at,
            closed_at: self.closed_at.filter(|_| self.state.is_terminal()),
            waiting_for_user: self.state.waits_for_user(),
            user_wait: self.user_wait,
            extended: self.extension.is_some(),
        };
        deadline::deadlines(&facts, cal, tz)
    }

    /// Opens a new case in `submitted`, with the change that records it.
    pub fn open(
        id: CaseId,
        subject: SubjectId,
        channel: Channel,
        policy: Policy,
        now: Timestamp,
    ) -> (Case, Change) {
        let case = Case {
            id,
            subject,
            channel,
            state: CaseState::Submitted,
            version: 1,
            policy,
            created_at: now,
            updated_at: now,
            assurance: AssuranceLevel::NONE,
            verified_by: None,
            blockers: Vec::new(),
            consequences: Vec::new(),
            acknowledgements: Vec::new(),
            cooling_off_ends_at: None,
            erasure_started_at: None,
            closed_at: None,
            rejection_reason: None,
            failure: None,
            assets: Vec::new(),
            checks_problem: None,
            state_since: Some(now),
            user_wait: jiff::SignedDuration::ZERO,
            review_started_at: None,
            review_ended_at: None,
            extension: None,
        };
        let change = Change {
            kind: "case.submitted".into(),
            from: None,
            to: CaseState::Submitted,
            at: now,
            detail: serde_json::json!({ "channel": channel.as_str() }),
        };
        (case, change)
    }

    /// Applies a command at `now`. On success returns the new case and the
    /// one change to audit; on failure the case is untouched.
    pub fn apply(
        &self,
        cmd: &CaseCommand,
        now: Timestamp,
    ) -> Result<(Case, Change), TransitionError> {
        use CaseState as S;
        let mut next = self.clone();
        let from = self.state;
        let (kind, to, detail): (&str, CaseState, serde_json::Value) = match (cmd, from) {
            (CaseCommand::VerifyIdentity { method, level }, S::Submitted) => {
                if *level < self.policy.min_assurance {
                    return Err(TransitionError::AssuranceTooLow {
                        needed: self.policy.min_assurance.get(),
                        got: level.get(),
                    });
                }
                next.assurance = *level;
                next.verified_by = Some(method.clone());
                (
                    "case.identity_verified",
                    S::IdentityVerified,
                    serde_json::json!({ "method": method, "level": level.get() }),
                )
            }
            (
                CaseCommand::ChecksUnavailable { reason },
                S::IdentityVerified | S::ChecksBlocked | S::ChecksClear,
            ) => {
                next.checks_problem = Some(reason.clone());
                ("case.checks_unavailable", from, serde_json::json!({}))
            }
            (
                CaseCommand::ChooseSettlement {
                    asset_id,
                    option,
                    locale,
                    instruction_id,
                    today,
                    transfer_to,
                },
                S::ChecksClear | S::ConsequencesAcknowledged | S::Settling,
            ) => {
                use crate::asset::{OptionKind, SettlementStatus};
                let idx = self
                    .assets
                    .iter()
                    .position(|a| &a.id == asset_id)
                    .ok_or_else(|| TransitionError::UnknownAsset {
                        id: asset_id.clone(),
                    })?;
                let asset = &self.assets[idx];
                if !asset.kind.options().contains(option) {
                    let offered: Vec<&str> =
                        asset.kind.options().iter().map(|o| o.as_str()).collect();
                    return Err(TransitionError::OptionNotOffered {
                        kind: asset.kind.as_str(),
                        option: option.as_str(),
                        offered: offered.join(", "),
                    });
                }
                // A choice not yet carried out may change; once the platform
                // was instructed it may not (unless it refused). After
                // cooling-off only a refused settlement is chosen again.
                let current = asset.settlement.as_ref().map(|s| s.status);
                let changeable = match from {
                    S::Settling => current == Some(SettlementStatus::Failed),
                    _ => !matches!(
                        current,
                        Some(SettlementStatus::Pending | SettlementStatus::Done)
                    ),
                };
                if !changeable {
                    return Err(TransitionError::AlreadySettled {
                        id: asset_id.clone(),
                    });
                }
                let to = match option {
                    OptionKind::Transfer => match transfer_to {
                        Some(t) if t != &self.subject => Some(t.clone()),
                        _ => return Err(TransitionError::TransferNeedsTarget),
                    },
                    _ => None,
                };
                let amount = settlement_amount(asset, *option, *today);
                // Settled now: after cooling-off, or a kind the policy
                // settles before confirming. A forfeit instructs nothing.
                let now_kind = self.settles_now(asset);
                let (zh, en) = self.settlement_statement(asset, *option, to.as_ref(), *today);
                let status = if *option == OptionKind::Forfeit {
                    SettlementStatus::Forfeited
                } else if now_kind {
                    SettlementStatus::Pending
                } else {
                    SettlementStatus::Chosen
                };
                next.assets[idx].settlement = Some(crate::asset::Settlement {
                    option: *option,
                    status,
                    instruction_id: instruction_id.clone(),
                    amount,
                    amount_shown: None,
                    early: now_kind && from != S::Settling,
                    transfer_to: to,
                    statement: match locale {
                        Locale::ZhCn => zh,
                        Locale::En => en,
                    },
                    statement_version: crate::asset::STATEMENT_VERSION,
                    locale: *locale,
                    reference: None,
                    error: None,
                });
                let to_state = match from {
                    S::Settling => next.after_settlement(now),
                    _ if next.ready() => S::ConsequencesAcknowledged,
                    _ => S::ChecksClear,
                };
                (
                    settled_kind("case.settlement_chosen", to_state),
                    to_state,
                    serde_json::json!({
                        "asset": asset_id,
                        "option": option.as_str(),
                        "status": status_str(status),
                    }),
                )
            }
            (
                CaseCommand::SettlementResult {
                    instruction_id,
                    ok,
                    reference,
                    error,
                },
                st,
            ) if !st.is_terminal() => {
                use crate::asset::SettlementStatus;
                let idx = self
                    .assets
                    .iter()
                    .position(|a| {
                        a.settlement.as_ref().is_some_and(|s| {
                            &s.instruction_id == instruction_id
                                && s.status == SettlementStatus::Pending
                        })
                    })
                    .ok_or_else(|| TransitionError::UnknownInstruction {
                        id: instruction_id.clone(),
                    })?;
                if let Some(s) = next.assets[idx].settlement.as_mut() {
                    s.status = if *ok {
                        SettlementStatus::Done
                    } else {
                        SettlementStatus::Failed
                    };
                    s.reference = reference.clone();
                    s.error = error.clone();
                }
                let to_state = match st {
                    S::ChecksClear if next.ready() => S::ConsequencesAcknowledged,
                    S::Settling => next.after_settlement(now),
                    _ => st,
                };
                (
                    settled_kind("case.settlement_result", to_state),
                    to_state,
                    serde_json::json!({
                        "instruction": instruction_id,
                        "asset": self.assets[idx].id,
                        "ok": ok,
                    }),
                )
            }
            (
                CaseCommand::RecordChecks {
                    blockers,
                    consequences,
                    assets,
                },
                S::IdentityVerified | S::ChecksBlocked | S::ChecksClear,
            ) => {
                // Keep a settlement when the asset is reported unchanged.
                next.assets = assets
                    .iter()
                    .map(|a| {
                        let mut a = a.clone();
                        a.settlement = self
                            .assets
                            .iter()
                            .find(|o| {
                                let mut o2 = (*o).clone();
                                o2.settlement = None;
                                o2 == a
                            })
                            .and_then(|o| o.settlement.clone());
                        a
                    })
                    .collect();
                next.checks_problem = None;
                let mut all = vec![Consequence::account_gone()];
                all.extend(consequences.iter().cloned());
                // Keep acknowledgements whose statement is unchanged.
                next.acknowledgements.retain(|a| {
                    all.iter()
                        .any(|c| c.id == a.consequence_id && c.version == a.version)
                });
                next.blockers = blockers.clone();
                next.consequences = all;
                let to = if blockers.is_empty() {
                    S::ChecksClear
                } else {
                    S::ChecksBlocked
                };
                let codes: Vec<&str> = blockers.iter().map(|b| b.code.as_str()).collect();
                let kind = if blockers.is_empty() {
                    "case.checks_clear"
                } else {
                    "case.checks_blocked"
                };
                (kind, to, serde_json::json!({ "blockers": codes }))
            }
            (
                CaseCommand::Acknowledge {
                    consequence_id,
                    version,
                    locale,
                },
                S::ChecksClear,
            ) => {
                let c = self
                    .consequences
                    .iter()
                    .find(|c| &c.id == consequence_id)
                    .ok_or_else(|| TransitionError::UnknownConsequence {
                        id: consequence_id.clone(),
                    })?;
                if c.version != *version {
                    return Err(TransitionError::StaleConsequence {
                        id: c.id.clone(),
                        current: c.version,
                    });
                }
                if self
                    .acknowledgements
                    .iter()
                    .any(|a| &a.consequence_id == consequence_id)
                {
                    return Err(TransitionError::AlreadyAcknowledged {
                        id: consequence_id.clone(),
                    });
                }
                next.acknowledgements.push(Acknowledgement {
                    consequence_id: c.id.clone(),
                    version: c.version,
                    locale: *locale,
                    text_shown: c.text(*locale).to_owned(),
                    at: now,
                });
                let all_done = next.ready();
                let to = if all_done {
                    S::ConsequencesAcknowledged
                } else {
                    S::ChecksClear
                };
                (
                    "case.consequence_acknowledged",
                    to,
                    serde_json::json!({ "consequence": c.id, "version": c.version }),
                )
            }
            (
                CaseCommand::VerifyIdentity { method, level },
                S::IdentityVerified
                | S::ChecksBlocked
                | S::ChecksClear
                | S::ConsequencesAcknowledged,
            ) => {
                // Step-up: a stronger verification later in the case.
                if *level <= self.assurance {
                    return Err(TransitionError::AssuranceTooLow {
                        needed: self.assurance.get() + 1,
                        got: level.get(),
                    });
                }
                next.assurance = *level;
                next.verified_by = Some(method.clone());
                (
                    "case.identity_stepped_up",
                    from,
                    serde_json::json!({ "method": method, "level": level.get() }),
                )
            }
            (CaseCommand::Confirm, S::ConsequencesAcknowledged)
                if self.assurance < self.required_assurance() =>
            {
                return Err(TransitionError::AssuranceTooLow {
                    needed: self.required_assurance().get(),
                    got: self.assurance.get(),
                });
            }
            (CaseCommand::Confirm, S::ConsequencesAcknowledged) => {
                if self.policy.review_required {
                    ("case.confirmed", S::UnderReview, serde_json::json!({}))
                } else {
                    next.cooling_off_ends_at = Some(self.cooling_off_end(now));
                    ("case.confirmed", S::CoolingOff, serde_json::json!({}))
                }
            }
            (CaseCommand::Approve, S::UnderReview) => {
                next.cooling_off_ends_at = Some(self.cooling_off_end(now));
                ("case.approved", S::CoolingOff, serde_json::json!({}))
            }
            (
                CaseCommand::Reject { reason },
                S::Submitted | S::IdentityVerified | S::ChecksBlocked | S::UnderReview,
            ) => {
                next.rejection_reason = Some(reason.clone());
                next.closed_at = Some(now);
                ("case.rejected", S::Rejected, serde_json::json!({}))
            }
            (CaseCommand::ChooseAlternative { kind }, st)
                if st.can_withdraw() && st != S::CoolingOff =>
            {
                // Unbinding the real-name identity changes the account: only
                // its verified holder may ask for it.
                if kind == UNBIND_REAL_NAME && self.assurance < self.policy.min_assurance {
                    return Err(TransitionError::AssuranceTooLow {
                        needed: self.policy.min_assurance.get(),
                        got: self.assurance.get(),
                    });
                }
                next.closed_at = Some(now);
                (
                    "case.alternative_chosen",
                    S::Withdrawn,
                    serde_json::json!({ "alternative": kind }),
                )
            }
            (CaseCommand::Withdraw, st) if st.can_withdraw() => {
                next.closed_at = Some(now);
                next.cooling_off_ends_at = None;
                (
                    "case.withdrawn",
                    S::Withdrawn,
                    serde_json::json!({ "from": st.as_str() }),
                )
            }
            (CaseCommand::StartErasure { today }, S::CoolingOff) => {
                // Invariant: nothing is erased, and no money moves, before
                // cooling-off ends. A case in cooling_off always has an end
                // (set on entering it).
                match self.cooling_off_ends_at {
                    Some(ends_at) if now >= ends_at => {}
                    Some(ends_at) => return Err(TransitionError::CoolingOffNotOver { ends_at }),
                    None => return Err(illegal(cmd, from)),
                }
                // The cancellation is final: every chosen settlement goes
                // out, a refund counted for today.
                let mut instructed = 0u32;
                for a in next.assets.iter_mut() {
                    let amount = a
                        .settlement
                        .as_ref()
                        .map(|s| settlement_amount(a, s.option, *today));
                    if let (Some(s), Some(amount)) = (a.settlement.as_mut(), amount)
                        && s.status == crate::asset::SettlementStatus::Chosen
                    {
                        if amount != s.amount {
                            s.amount_shown = s.amount;
                            s.amount = amount;
                        }
                        s.status = crate::asset::SettlementStatus::Pending;
                        instructed += 1;
                    }
                }
                if instructed > 0 {
                    (
                        "case.settlement_started",
                        next.after_settlement(now),
                        serde_json::json!({ "instructions": instructed }),
                    )
                } else {
                    next.erasure_started_at = Some(now);
                    ("case.erasure_started", S::Erasing, serde_json::json!({}))
                }
            }
            (CaseCommand::CompleteErasure, S::Erasing) => {
                next.closed_at = Some(now);
                next.failure = None;
                ("case.erased", S::Erased, serde_json::json!({}))
            }
            (CaseCommand::FailErasure { reason }, S::Erasing) => {
                next.failure = Some(reason.clone());
                ("case.erasure_failed", S::Failed, serde_json::json!({}))
            }
            (CaseCommand::RetryErasure, S::Failed) => {
                next.failure = None;
                ("case.erasure_retried", S::Erasing, serde_json::json!({}))
            }
            (CaseCommand::Extend { reason }, st) if !st.is_terminal() => {
                if !self.policy.deadlines.allows_extension() {
                    return Err(TransitionError::ExtensionNotAllowed {
                        why: "this policy's deadlines cannot be extended",
                    });
                }
                if self.extension.is_some() {
                    return Err(TransitionError::ExtensionNotAllowed {
                        why: "it was already extended once",
                    });
                }
                next.extension = Some(Extension {
                    reason: reason.clone(),
                    at: now,
                });
                ("case.deadline_extended", st, serde_json::json!({}))
            }
            (cmd, st) => return Err(illegal(cmd, st)),
        };
        if to != from {
            let since = self.state_since.unwrap_or(self.updated_at);
            if from.waits_for_user() && now > since {
                next.user_wait = self
                    .user_wait
                    .checked_add(now.duration_since(since))
                    .unwrap_or(self.user_wait);
            }
            next.state_since = Some(now);
            if to == S::UnderReview {
                next.review_started_at = Some(now);
            }
            if from == S::UnderReview {
                next.review_ended_at = Some(now);
            }
        }
        next.state = to;
        next.version = self.version + 1;
        next.updated_at = now;
        Ok((
            next,
            Change {
                kind: kind.to_owned(),
                from: Some(from),
                to,
                at: now,
                detail,
            },
        ))
    }

    /// Whether a settlement of `asset` chosen now is carried out at once:
    /// after cooling-off ended, or a kind the policy settles early.
    pub fn settles_now(&self, asset: &crate::asset::Asset) -> bool {
        self.state == CaseState::Settling || self.policy.settle_early.contains(&asset.kind)
    }

    /// The statement a user acknowledges by choosing `option` for `asset`
    /// on `today` (zh-CN, en): what happens, for how much, and when.
    pub fn settlement_statement(
        &self,
        asset: &crate::asset::Asset,
        option: crate::asset::OptionKind,
        to: Option<&SubjectId>,
        today: jiff::civil::Date,
    ) -> (String, String) {
        let timing = if self.settles_now(asset) {
            crate::asset::Timing::Now
        } else {
            crate::asset::Timing::AtFinality
        };
        let amount = settlement_amount(asset, option, today);
        crate::asset::statement(asset, option, amount, to, timing)
    }

    /// After a settlement changed while `settling`: every asset settled
    /// starts the erasure (recorded here), otherwise the case waits.
    fn after_settlement(&mut self, now: Timestamp) -> CaseState {
        if self.assets.iter().all(|a| a.settled()) {
            self.erasure_started_at = Some(now);
            CaseState::Erasing
        } else {
            CaseState::Settling
        }
    }

    fn cooling_off_end(&self, now: Timestamp) -> Timestamp {
        now.checked_add(self.policy.cooling_off)
            .unwrap_or(Timestamp::MAX)
    }

    /// The notifications the platform must receive for a change (freeze the
    /// account when cooling-off starts, restore it, the period ended...).
    /// `self` is the case after the change.
    pub fn notices(&self, change: &Change) -> Vec<Notice> {
        let base = || serde_json::json!({ "case_id": self.id.to_string(), "subject_id": self.subject.expose() });
        let mut out = vec![];
        let with = |mut v: serde_json::Value, k: &str, x: serde_json::Value| {
            if let Some(o) = v.as_object_mut() {
                o.insert(k.to_owned(), x);
            }
            v
        };
        // Auto-renewals are paused while the case cools off (reversibly),
        // resumed on restore, cancelled only by the final settlement.
        let renewing = || {
            serde_json::json!(
                self.assets
                    .iter()
                    .filter(|a| a.renews())
                    .map(|a| a.id.as_str())
                    .collect::<Vec<_>>()
            )
        };
        match (change.from, change.to) {
            (Some(f), CaseState::CoolingOff) if f != CaseState::CoolingOff => {
                let ends = self.cooling_off_ends_at.map(|t| t.to_string());
                let p = with(base(), "cooling_off_ends_at", serde_json::json!(ends));
                out.push(Notice {
                    kind: crate::notice::ACCOUNT_FREEZE,
                    payload: with(p, "pause_auto_renewal", renewing()),
                });
            }
            (Some(CaseState::CoolingOff), CaseState::Withdrawn) => out.push(Notice {
                kind: crate::notice::ACCOUNT_RESTORE,
                payload: with(base(), "resume_auto_renewal", renewing()),
            }),
            (Some(CaseState::CoolingOff), CaseState::Erasing | CaseState::Settling) => {
                out.push(Notice {
                    kind: crate::notice::COOLING_OFF_ENDED,
                    payload: base(),
                })
            }
            (Some(f), CaseState::Erased) if f != CaseState::Erased => out.push(Notice {
                kind: crate::notice::ACCOUNT_ERASED,
                payload: with(base(), "settlements", self.settlement_summary()),
            }),
            (Some(f), CaseState::Rejected) if f != CaseState::Rejected => {
                let reason = self
                    .rejection_reason
                    .as_ref()
                    .map(|r| r.as_str().to_owned());
                out.push(Notice {
                    kind: crate::notice::CASE_REJECTED,
                    payload: with(base(), "reason", serde_json::json!(reason)),
                });
            }
            _ => {}
        }
        if change.kind == "case.settlement_result" && change.detail["ok"] == false {
            // The platform refused: the user (or an agent) chooses again.
            let p = with(base(), "asset_id", change.detail["asset"].clone());
            out.push(Notice {
                kind: crate::notice::SETTLEMENT_FAILED,
                payload: with(p, "instruction_id", change.detail["instruction"].clone()),
            });
        }
        if change.kind == "case.alternative_chosen" {
            out.push(Notice {
                kind: crate::notice::ALTERNATIVE_REQUESTED,
                payload: with(base(), "alternative", change.detail["alternative"].clone()),
            });
        }
        if change.kind == "case.deadline_extended" {
            let reason = self
                .extension
                .as_ref()
                .map(|e| e.reason.as_str().to_owned());
            out.push(Notice {
                kind: crate::notice::DEADLINE_EXTENDED,
                payload: with(base(), "reason", serde_json::json!(reason)),
            });
        }
        out
    }

    /// What was settled, as the final notification and the receipt show it:
    /// the amount paid out and, when it differs, the amount the
    /// acknowledged statement named (days passed in between).
    pub fn settlement_summary(&self) -> serde_json::Value {
        serde_json::json!(
            self.assets
                .iter()
                .filter_map(|a| {
                    let s = a.settlement.as_ref()?;
                    Some(serde_json::json!({
                        "asset_id": a.id,
                        "kind": a.kind.as_str(),
                        "option": s.option.as_str(),
                        "status": status_str(s.status),
                        "amount_minor": s.amount.map(|m| m.get()),
                        "amount_shown_minor": s.amount_shown.map(|m| m.get()),
                        "reference": s.reference,
                    }))
                })
                .collect::<Vec<_>>()
        )
    }

    /// The assurance level the policy asks of this case: higher when the
    /// account holds money (a positive balance, gift card or deposit).
    pub fn required_assurance(&self) -> crate::AssuranceLevel {
        use crate::asset::AssetKind::*;
        let money = self.assets.iter().any(|a| {
            matches!(a.kind, Balance | GiftCard | Deposit) && a.amount.is_some_and(|m| m.get() > 0)
        });
        if money {
            self.policy
                .min_assurance
                .max(self.policy.positive_balance_level)
        } else {
            self.policy.min_assurance
        }
    }

    /// Every consequence acknowledged and every asset settled or forfeited:
    /// the case may leave the checks step.
    pub fn ready(&self) -> bool {
        self.pending_consequences().next().is_none() && self.assets.iter().all(|a| a.chosen())
    }

    /// The consequences the user has not acknowledged yet.
    pub fn pending_consequences(&self) -> impl Iterator<Item = &Consequence> {
        self.consequences.iter().filter(|c| {
            !self
                .acknowledgements
                .iter()
                .any(|a| a.consequence_id == c.id && a.version == c.version)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;
    use proptest::prelude::*;

    fn t0() -> Timestamp {
        "2026-03-02T02:00:00Z".parse().unwrap()
    }

    fn new_case(review: bool) -> Case {
        let policy = Policy {
            review_required: review,
            ..Policy::default()
        };
        Case::open(
            CaseId::from_uuid(uuid::Uuid::nil()),
            SubjectId::parse("42").unwrap(),
            Channel::App,
            policy,
            t0(),
        )
        .0
    }

    fn verify() -> CaseCommand {
        CaseCommand::VerifyIdentity {
            method: "sms".into(),
            level: AssuranceLevel::PHONE,
        }
    }

    fn clear() -> CaseCommand {
        CaseCommand::RecordChecks {
            assets: vec![],
            blockers: vec![],
            consequences: vec![],
        }
    }

    fn ack(id: &str) -> CaseCommand {
        CaseCommand::Acknowledge {
            consequence_id: id.into(),
            version: 1,
            locale: Locale::En,
        }
    }

    #[test]
    fn happy_path_reaches_erased_only_after_cooling_off() {
        let mut c = new_case(false);
        let mut now = t0();
        for cmd in [
            verify(),
            clear(),
            ack("account_erased"),
            CaseCommand::Confirm,
        ] {
            c = c.apply(&cmd, now).unwrap().0;
        }
        assert_eq!(c.state, CaseState::CoolingOff);
        now = now
            .checked_add(SignedDuration::from_hours(24 * 7 - 1))
            .unwrap();
        let err = c
            .apply(
                &CaseCommand::StartErasure {
                    today: jiff::civil::date(2026, 3, 9),
                },
                now,
            )
            .unwrap_err();
        assert!(matches!(err, TransitionError::CoolingOffNotOver { .. }));
        now = now.checked_add(SignedDuration::from_hours(1)).unwrap();
        c = c
            .apply(
                &CaseCommand::StartErasure {
                    today: jiff::civil::date(2026, 3, 9),
                },
                now,
            )
            .unwrap()
            .0;
        c = c.apply(&CaseCommand::CompleteErasure, now).unwrap().0;
        assert_eq!(c.state, CaseState::Erased);
        assert_eq!(
            c.acknowledgements[0].text_shown,
            Consequence::account_gone().text_en
        );
    }

    #[test]
    fn illegal_transition_says_what_comes_next() {
        let c = new_case(false);
        let e = c.apply(&CaseCommand::Confirm, t0()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot confirm a case that is submitted; next step: verify the account holder's identity"
        );
    }

    #[test]
    fn blocked_checks_list_blockers_and_can_clear_later() {
        let mut c = new_case(false);
        c = c.apply(&verify(), t0()).unwrap().0;
        let blocked = CaseCommand::RecordChecks {
            assets: vec![],
            blockers: vec![Blocker {
                code: "unfinished_order".into(),
                system: "demo_mart".into(),
                message_zh: "有未完成的订单".into(),
                message_en: "unfinished orders".into(),
                items: vec!["9001".into()],
            }],
            consequences: vec![],
        };
        c = c.apply(&blocked, t0()).unwrap().0;
        assert_eq!(c.state, CaseState::ChecksBlocked);
        assert!(c.apply(&ack("account_erased"), t0()).is_err());
        c = c.apply(&clear(), t0()).unwrap().0;
        assert_eq!(c.state, CaseState::ChecksClear);
        assert!(c.blockers.is_empty());
    }

    #[test]
    fn review_policy_routes_through_under_review() {
        let mut c = new_case(true);
        for cmd in [
            verify(),
            clear(),
            ack("account_erased"),
            CaseCommand::Confirm,
        ] {
            c = c.apply(&cmd, t0()).unwrap().0;
        }
        assert_eq!(c.state, CaseState::UnderReview);
        let r = CaseCommand::Reject {
            reason: Reason::parse("documents unreadable").unwrap(),
        };
        let rejected = c.apply(&r, t0()).unwrap().0;
        assert_eq!(rejected.state, CaseState::Rejected);
        assert_eq!(
            rejected.rejection_reason.unwrap().as_str(),
            "documents unreadable"
        );
        let approved = c.apply(&CaseCommand::Approve, t0()).unwrap().0;
        assert_eq!(approved.state, CaseState::CoolingOff);
    }

    #[test]
    fn stale_and_unknown_acknowledgements_are_refused() {
        let mut c = new_case(false);
        c = c.apply(&verify(), t0()).unwrap().0;
        c = c.apply(&clear(), t0()).unwrap().0;
        let stale = CaseCommand::Acknowledge {
            consequence_id: "account_erased".into(),
            version: 0,
            locale: Locale::ZhCn,
        };
        assert!(matches!(
            c.apply(&stale, t0()),
            Err(TransitionError::StaleConsequence { current: 1, .. })
        ));
        assert!(matches!(
            c.apply(&ack("nope"), t0()),
            Err(TransitionError::UnknownConsequence { .. })
        ));
    }

    fn points_asset() -> crate::asset::Asset {
        crate::asset::Asset {
            id: "pts".into(),
            kind: crate::asset::AssetKind::Points,
            source: "p".into(),
            label: "points".into(),
            amount: None,
            quantity: Some(3200),
            period_start: None,
            period_end: None,
            auto_renew: false,
            settlement: None,
        }
    }

    fn card_asset() -> crate::asset::Asset {
        crate::asset::Asset {
            id: "card".into(),
            kind: crate::asset::AssetKind::BankCard,
            label: "card **** 0000".into(),
            quantity: None,
            ..points_asset()
        }
    }

    fn choose(asset: &str, option: crate::asset::OptionKind, instr: &str) -> CaseCommand {
        CaseCommand::ChooseSettlement {
            asset_id: asset.into(),
            option,
            locale: Locale::En,
            instruction_id: instr.into(),
            today: "2026-03-02".parse().unwrap(),
            transfer_to: None,
        }
    }

    #[test]
    fn assets_must_be_settled_or_forfeited_before_leaving_the_checks_step() {
        use crate::asset::{OptionKind, SettlementStatus};
        let mut c = new_case(false);
        c = c.apply(&verify(), t0()).unwrap().0;
        c = c
            .apply(
                &CaseCommand::RecordChecks {
                    blockers: vec![],
                    consequences: vec![],
                    assets: vec![points_asset(), card_asset()],
                },
                t0(),
            )
            .unwrap()
            .0;
        c = c.apply(&ack("account_erased"), t0()).unwrap().0;
        assert_eq!(c.state, CaseState::ChecksClear, "assets still open");
        // Options are checked per kind; a transfer needs a target.
        assert!(matches!(
            c.apply(&choose("card", OptionKind::Forfeit, "i0"), t0()),
            Err(TransitionError::OptionNotOffered { .. })
        ));
        assert!(matches!(
            c.apply(&choose("pts", OptionKind::Transfer, "i0"), t0()),
            Err(TransitionError::TransferNeedsTarget)
        ));
        c = c
            .apply(&choose("pts", OptionKind::Forfeit, "i1"), t0())
            .unwrap()
            .0;
        let s = c.assets[0].settlement.clone().unwrap();
        assert_eq!(
            (s.status, s.statement.as_str()),
            (
                SettlementStatus::Forfeited,
                "3,200 points will be forfeited and cannot be recovered. This happens when the cooling-off period ends; restoring the account before then leaves it as it is."
            )
        );
        c = c
            .apply(&choose("card", OptionKind::Unbind, "i2"), t0())
            .unwrap()
            .0;
        // Choosing only records the choice: nothing is pending.
        assert_eq!(c.state, CaseState::ConsequencesAcknowledged);
        assert_eq!(
            c.assets[1].settlement.as_ref().unwrap().status,
            SettlementStatus::Chosen
        );
        // A choice not carried out yet may change, also after the
        // acknowledgements; a result for an instruction never sent is refused.
        c = c
            .apply(&choose("pts", OptionKind::Transfer, "i3").to("7"), t0())
            .unwrap()
            .0;
        assert_eq!(c.state, CaseState::ConsequencesAcknowledged);
        assert!(matches!(
            c.apply(&result("i2", true), t0()),
            Err(TransitionError::UnknownInstruction { .. })
        ));
    }

    impl CaseCommand {
        fn to(mut self, account: &str) -> Self {
            if let CaseCommand::ChooseSettlement { transfer_to, .. } = &mut self {
                *transfer_to = Some(SubjectId::parse(account).unwrap());
            }
            self
        }
    }

    fn result(instr: &str, ok: bool) -> CaseCommand {
        CaseCommand::SettlementResult {
            instruction_id: instr.into(),
            ok,
            reference: ok.then(|| format!("ref-{instr}")),
            error: (!ok).then(|| "refused".to_owned()),
        }
    }

    /// Seed 002's account: a balance, points, two coupons, a monthly
    /// membership that renews, a bound card.
    fn seed_assets() -> Vec<crate::asset::Asset> {
        use crate::asset::AssetKind;
        let money = |k, id: &str, fen| crate::asset::Asset {
            id: id.into(),
            kind: k,
            amount: Some(crate::MinorUnits::new(fen).unwrap()),
            quantity: None,
            ..points_asset()
        };
        vec![
            money(AssetKind::Balance, "bal", 3520),
            crate::asset::Asset {
                quantity: Some(1200),
                ..points_asset()
            },
            money(AssetKind::Coupon, "cp1", 500),
            money(AssetKind::Coupon, "cp2", 300),
            crate::asset::Asset {
                id: "vip".into(),
                kind: AssetKind::Subscription,
                label: "monthly membership".into(),
                amount: Some(crate::MinorUnits::new(3000).unwrap()),
                quantity: None,
                period_start: Some("2026-02-20".parse().unwrap()),
                period_end: Some("2026-03-22".parse().unwrap()),
                auto_renew: true,
                ..points_asset()
            },
            card_asset(),
        ]
    }

    /// Verified, checked, every consequence acknowledged and every asset
    /// chosen (a withdrawal, a transfer, a forfeit, a refund, an unbinding).
    fn chosen_case(policy: Policy) -> Case {
        use crate::asset::OptionKind;
        let mut c = Case::open(
            CaseId::from_uuid(uuid::Uuid::nil()),
            SubjectId::parse("42").unwrap(),
            Channel::App,
            policy,
            t0(),
        )
        .0;
        let strong = CaseCommand::VerifyIdentity {
            method: "face".into(),
            level: AssuranceLevel::STRONG,
        };
        c = c.apply(&strong, t0()).unwrap().0;
        let checks = CaseCommand::RecordChecks {
            blockers: vec![],
            consequences: vec![],
            assets: seed_assets(),
        };
        c = c.apply(&checks, t0()).unwrap().0;
        c = c.apply(&ack("account_erased"), t0()).unwrap().0;
        for cmd in [
            choose("bal", OptionKind::Withdraw, "s-bal"),
            choose("pts", OptionKind::Transfer, "s-pts").to("43"),
            choose("cp1", OptionKind::Transfer, "s-cp1").to("43"),
            choose("cp2", OptionKind::Forfeit, "s-cp2"),
            choose("vip", OptionKind::RefundProRata, "s-vip"),
            choose("card", OptionKind::Unbind, "s-card"),
        ] {
            c = c.apply(&cmd, t0()).unwrap().0;
        }
        c
    }

    fn statuses(c: &Case) -> Vec<crate::asset::SettlementStatus> {
        c.assets
            .iter()
            .map(|a| a.settlement.as_ref().unwrap().status)
            .collect()
    }

    #[test]
    fn confirming_freezes_and_pauses_restoring_resumes_and_nothing_was_settled() {
        use crate::asset::SettlementStatus::*;
        let c = chosen_case(Policy::default());
        assert_eq!(c.state, CaseState::ConsequencesAcknowledged);
        assert_eq!(
            statuses(&c),
            [Chosen, Chosen, Chosen, Forfeited, Chosen, Chosen]
        );
        // Statements say when it happens; the refund counted as of today.
        let vip = c.assets[4].settlement.as_ref().unwrap();
        assert!(
            vip.statement
                .contains("counted on the day the cooling-off period ends")
        );
        assert!(
            vip.statement.contains("¥20.00 if counted today"),
            "{}",
            vip.statement
        );
        let (cooling, change) = c.apply(&CaseCommand::Confirm, t0()).unwrap();
        let n = cooling.notices(&change);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].kind, "account.freeze");
        assert_eq!(
            n[0].payload["pause_auto_renewal"],
            serde_json::json!(["vip"])
        );
        // Cooling-off refuses settling and erasing before its end.
        let early = t0()
            .checked_add(SignedDuration::from_hours(24 * 5))
            .unwrap();
        assert!(matches!(
            cooling.apply(
                &CaseCommand::StartErasure {
                    today: jiff::civil::date(2026, 3, 7)
                },
                early
            ),
            Err(TransitionError::CoolingOffNotOver { .. })
        ));
        assert!(
            cooling
                .apply(
                    &choose("cp2", crate::asset::OptionKind::Transfer, "x").to("43"),
                    early
                )
                .is_err()
        );
        // Restoring on day 5: the platform unfreezes and resumes the
        // renewal; nothing was settled, so nothing needs undoing.
        let (restored, change) = cooling.apply(&CaseCommand::Withdraw, early).unwrap();
        let n = restored.notices(&change);
        assert_eq!(n[0].kind, "account.restore");
        assert_eq!(
            n[0].payload["resume_auto_renewal"],
            serde_json::json!(["vip"])
        );
        assert_eq!(
            statuses(&restored),
            [Chosen, Chosen, Chosen, Forfeited, Chosen, Chosen]
        );
    }

    #[test]
    fn settlements_go_out_when_cooling_off_ends_and_erasure_waits_for_all() {
        use crate::asset::SettlementStatus::*;
        let c = chosen_case(Policy::default());
        let chosen_amount = c.assets[4].settlement.as_ref().unwrap().amount;
        let c = c.apply(&CaseCommand::Confirm, t0()).unwrap().0;
        let end = c.cooling_off_ends_at.unwrap();
        // Cooling-off ends on 9 March: the refund is counted for that day
        // (13 of 30 days left: ¥13.00), the figure shown is kept beside it.
        let (c, change) = c
            .apply(
                &CaseCommand::StartErasure {
                    today: jiff::civil::date(2026, 3, 9),
                },
                end,
            )
            .unwrap();
        assert_eq!(c.state, CaseState::Settling);
        assert_eq!(change.kind, "case.settlement_started");
        assert_eq!(c.notices(&change)[0].kind, "cooling_off.ended");
        assert_eq!(c.erasure_started_at, None);
        assert_eq!(
            statuses(&c),
            [Pending, Pending, Pending, Forfeited, Pending, Pending]
        );
        let vip = c.assets[4].settlement.as_ref().unwrap();
        assert_eq!(vip.amount.map(|m| m.get()), Some(1300));
        assert_eq!(vip.amount_shown, chosen_amount);
        assert_eq!(c.assets[0].settlement.as_ref().unwrap().amount_shown, None);
        // No restore once the money moves.
        assert!(c.apply(&CaseCommand::Withdraw, end).is_err());
        // The platform refuses the transfer: the case waits; the user
        // chooses again (executed at once) and the erasure starts when the
        // last instruction is settled.
        let mut c = c;
        for i in ["s-bal", "s-cp1", "s-vip", "s-card"] {
            c = c.apply(&result(i, true), end).unwrap().0;
            assert_eq!(c.state, CaseState::Settling);
        }
        let (c, change) = c.apply(&result("s-pts", false), end).unwrap();
        assert_eq!(c.state, CaseState::Settling);
        let n = c.notices(&change);
        assert_eq!(
            (n[0].kind, &n[0].payload["asset_id"]),
            ("settlement.failed", &serde_json::json!("pts"))
        );
        assert!(matches!(
            c.apply(
                &choose("cp2", crate::asset::OptionKind::Transfer, "x").to("43"),
                end
            ),
            Err(TransitionError::AlreadySettled { .. })
        ));
        let c = c
            .apply(
                &choose("pts", crate::asset::OptionKind::Forfeit, "s-pts2"),
                end,
            )
            .unwrap()
            .0;
        assert_eq!(c.state, CaseState::Erasing);
        assert_eq!(c.erasure_started_at, Some(end));
        let c = c.apply(&CaseCommand::CompleteErasure, end).unwrap();
        let summary = &c.0.notices(&c.1)[0].payload["settlements"];
        assert_eq!(summary[4]["amount_minor"], 1300);
        assert_eq!(summary[4]["amount_shown_minor"], 2000);
        assert_eq!(summary[1]["status"], "forfeited");
    }

    #[test]
    fn a_kind_the_policy_settles_early_happens_now_and_stays_settled() {
        use crate::asset::{OptionKind, SettlementStatus::*};
        let policy = Policy {
            settle_early: vec![crate::asset::AssetKind::Balance],
            ..Policy::default()
        };
        let c = chosen_case(policy);
        assert_eq!(
            c.state,
            CaseState::ChecksClear,
            "the withdrawal is not done yet"
        );
        let bal = c.assets[0].settlement.as_ref().unwrap();
        assert_eq!((bal.status, bal.early), (Pending, true));
        assert!(
            bal.statement
                .ends_with("This happens now and is not undone by restoring.")
        );
        assert!(matches!(
            c.apply(&choose("bal", OptionKind::Forfeit, "z"), t0()),
            Err(TransitionError::AlreadySettled { .. })
        ));
        let c = c.apply(&result("s-bal", true), t0()).unwrap().0;
        assert_eq!(c.state, CaseState::ConsequencesAcknowledged);
        let c = c.apply(&CaseCommand::Confirm, t0()).unwrap().0;
        let end = c.cooling_off_ends_at.unwrap();
        let c = c
            .apply(
                &CaseCommand::StartErasure {
                    today: jiff::civil::date(2026, 3, 9),
                },
                end,
            )
            .unwrap()
            .0;
        // Only what was not settled early goes out now.
        assert_eq!(
            statuses(&c),
            [Done, Pending, Pending, Forfeited, Pending, Pending]
        );
    }

    #[test]
    fn with_nothing_to_settle_erasure_starts_when_cooling_off_ends() {
        let mut c = new_case(false);
        for cmd in [
            verify(),
            clear(),
            ack("account_erased"),
            CaseCommand::Confirm,
        ] {
            c = c.apply(&cmd, t0()).unwrap().0;
        }
        let end = c.cooling_off_ends_at.unwrap();
        let (c, change) = c
            .apply(
                &CaseCommand::StartErasure {
                    today: jiff::civil::date(2026, 3, 9),
                },
                end,
            )
            .unwrap();
        assert_eq!(
            (c.state, change.kind.as_str()),
            (CaseState::Erasing, "case.erasure_started")
        );
    }

    fn arb_command() -> impl Strategy<Value = CaseCommand> {
        prop_oneof![
            (0u8..=3).prop_map(|l| CaseCommand::VerifyIdentity {
                method: "sms".into(),
                level: AssuranceLevel::new(l).unwrap()
            }),
            any::<bool>().prop_map(|blocked| CaseCommand::RecordChecks {
                assets: if blocked {
                    vec![]
                } else {
                    vec![points_asset(), card_asset()]
                },
                blockers: if blocked {
                    vec![Blocker {
                        code: "unfinished_order".into(),
                        system: "s".into(),
                        message_zh: "z".into(),
                        message_en: "e".into(),
                        items: vec![],
                    }]
                } else {
                    vec![]
                },
                consequences: vec![Consequence {
                    id: "points".into(),
                    version: 1,
                    text_zh: "积分作废".into(),
                    text_en: "points forfeited".into(),
                }],
            }),
            prop_oneof![Just("account_erased"), Just("points"), Just("other")].prop_map(ack),
            Just(CaseCommand::Confirm),
            Just(CaseCommand::Approve),
            Just(CaseCommand::Reject {
                reason: Reason::parse("no").unwrap()
            }),
            Just(CaseCommand::Withdraw),
            Just(CaseCommand::StartErasure {
                today: jiff::civil::date(2026, 3, 9)
            }),
            Just(CaseCommand::CompleteErasure),
            Just(CaseCommand::FailErasure {
                reason: "down".into()
            }),
            Just(CaseCommand::RetryErasure),
            Just(choose("pts", crate::asset::OptionKind::Forfeit, "f1")),
            Just(choose("card", crate::asset::OptionKind::Unbind, "u1")),
            any::<bool>().prop_map(|ok| CaseCommand::SettlementResult {
                instruction_id: "u1".into(),
                ok,
                reference: None,
                error: None
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Random event sequences with random time steps.
        #[test]
        fn invariants_hold_for_any_sequence(
            review in any::<bool>(),
            steps in proptest::collection::vec((arb_command(), 0i64..(3 * 86_400)), 0..60),
        ) {
            let mut case = new_case(review);
            let mut now = t0();
            let mut audit: Vec<Change> = vec![];
            let mut state_changes = 0usize;
            let mut was_cooling_off_until: Option<Timestamp> = None;
            for (cmd, dt) in steps {
                now = now.checked_add(SignedDuration::from_secs(dt)).unwrap();
                let before = case.clone();
                match case.apply(&cmd, now) {
                    Ok((next, change)) => {
                        prop_assert_eq!(next.version, before.version + 1);
                        prop_assert_eq!(change.from, Some(before.state));
                        prop_assert_eq!(change.to, next.state);
                        if next.state != before.state { state_changes += 1; }
                        // Terminal states never change.
                        prop_assert!(!before.state.is_terminal());
                        if next.state == CaseState::CoolingOff {
                            was_cooling_off_until = next.cooling_off_ends_at;
                        }
                        // No money moves before the cancellation is final.
                        if !matches!(next.state, CaseState::Settling | CaseState::Erasing | CaseState::Erased | CaseState::Failed) {
                            prop_assert!(next.assets.iter().all(|a| !matches!(
                                a.settlement.as_ref().map(|s| s.status),
                                Some(crate::asset::SettlementStatus::Pending | crate::asset::SettlementStatus::Done)
                            )));
                        }
                        // Nothing is erased before cooling-off ends.
                        if next.state == CaseState::Erasing && before.state == CaseState::CoolingOff {
                            let ends = was_cooling_off_until.expect("cooling-off had an end");
                            prop_assert!(now >= ends);
                        }
                        if next.state == CaseState::Erasing || next.state == CaseState::Erased {
                            prop_assert!(was_cooling_off_until.is_some_and(|e| now >= e));
                        }
                        audit.push(change);
                        case = next;
                    }
                    Err(_) => {
                        // A refused command leaves the case untouched.
                        prop_assert_eq!(&case, &before);
                    }
                }
                // A withdrawn or rejected case never erases.
                if matches!(case.state, CaseState::Withdrawn | CaseState::Rejected) {
                    let tries = [CaseCommand::StartErasure { today: jiff::civil::date(2026, 3, 9) }, CaseCommand::CompleteErasure, CaseCommand::RetryErasure];
                    for t in &tries { prop_assert!(case.apply(t, now).is_err()); }
                }
            }
            // Every state change has exactly one audit event.
            prop_assert_eq!(audit.iter().filter(|c| c.is_state_change()).count(), state_changes);
            prop_assert_eq!(audit.len() as u64, case.version - 1);
        }
    }

    #[test]
    fn unbinding_the_real_name_needs_the_verified_holder() {
        let (c, _) = Case::open(
            CaseId::from_uuid(uuid::Uuid::from_u128(9)),
            SubjectId::parse("9").unwrap(),
            Channel::Recovery,
            Policy::default(),
            t0(),
        );
        let unbind = CaseCommand::ChooseAlternative {
            kind: UNBIND_REAL_NAME.into(),
        };
        assert!(matches!(
            c.apply(&unbind, t0()),
            Err(TransitionError::AssuranceTooLow { got: 0, .. })
        ));
        // Other alternatives need no verification.
        let deactivate = CaseCommand::ChooseAlternative {
            kind: "deactivate".into(),
        };
        assert_eq!(
            c.apply(&deactivate, t0()).unwrap().0.state,
            CaseState::Withdrawn
        );
        let (v, _) = c
            .apply(
                &CaseCommand::VerifyIdentity {
                    method: "sms".into(),
                    level: AssuranceLevel::PHONE,
                },
                t0(),
            )
            .unwrap();
        assert_eq!(
            v.apply(&unbind, t0()).unwrap().0.state,
            CaseState::Withdrawn
        );
    }
}
