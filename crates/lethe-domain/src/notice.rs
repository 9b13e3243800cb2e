//! Every kind of notification Lethe sends the platform, in one place: the
//! emitters use these constants, the OpenAPI document lists one webhook per
//! kind, and docs/notifications.md says when each is sent and what the
//! platform does on it. A test keeps the three in step.

pub const ACCOUNT_FREEZE: &str = "account.freeze";
pub const ACCOUNT_RESTORE: &str = "account.restore";
pub const COOLING_OFF_ENDED: &str = "cooling_off.ended";
pub const SETTLEMENT_FAILED: &str = "settlement.failed";
pub const ACCOUNT_ERASED: &str = "account.erased";
pub const CASE_REJECTED: &str = "case.rejected";
pub const ALTERNATIVE_REQUESTED: &str = "alternative.requested";
pub const DEADLINE_WARNING: &str = "deadline.warning";
pub const DEADLINE_OVERDUE: &str = "deadline.overdue";
pub const DEADLINE_EXTENDED: &str = "deadline.extended";
pub const REALNAME_UNBIND: &str = "realname.unbind";
pub const IDENTIFIER_UNBIND: &str = "identifier.unbind";
pub const EXPORT_READY: &str = "export.ready";
pub const DATAMAP_DRIFT: &str = "datamap.drift";
pub const PURGE_NOTICE: &str = "purge.notice";

/// All of them.
pub const ALL: [&str; 15] = [
    ACCOUNT_FREEZE,
    ACCOUNT_RESTORE,
    COOLING_OFF_ENDED,
    SETTLEMENT_FAILED,
    ACCOUNT_ERASED,
    CASE_REJECTED,
    ALTERNATIVE_REQUESTED,
    DEADLINE_WARNING,
    DEADLINE_OVERDUE,
    DEADLINE_EXTENDED,
    REALNAME_UNBIND,
    IDENTIFIER_UNBIND,
    EXPORT_READY,
    DATAMAP_DRIFT,
    PURGE_NOTICE,
];
