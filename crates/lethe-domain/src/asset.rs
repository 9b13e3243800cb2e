//! Assets the user owns on the platform (待处理权益清单) and their settlement
//! (权益清算): each asset is settled — refunded pro rata, withdrawn,
//! transferred, unbound — or explicitly forfeited with the user's
//! acknowledgement of the exact statement shown, before anything is erased.
//!
//! Choosing only records the choice: money moves when the cancellation is
//! final (the cooling-off period ended), so a user who restores the account
//! finds it exactly as it was. A policy may name asset kinds that must be
//! settled before the cancellation is confirmed (`Policy::settle_early`);
//! their statement says that this happens now and is not undone by
//! restoring.

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::{Locale, MinorUnits, SubjectId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetKind {
    Balance,
    Points,
    Coupon,
    GiftCard,
    Deposit,
    Subscription,
    BankCard,
    ThirdPartyBinding,
}

impl AssetKind {
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Balance => "balance",
            Self::Points => "points",
            Self::Coupon => "coupon",
            Self::GiftCard => "gift_card",
            Self::Deposit => "deposit",
            Self::Subscription => "subscription",
            Self::BankCard => "bank_card",
            Self::ThirdPartyBinding => "third_party_binding",
        }
    }

    /// The settlement options the platform must offer for this kind.
    pub fn options(&self) -> &'static [OptionKind] {
        use OptionKind::*;
        match self {
            Self::Balance | Self::GiftCard | Self::Deposit => &[Withdraw, Forfeit],
            Self::Points | Self::Coupon => &[Transfer, Forfeit],
            Self::Subscription => &[RefundProRata, Forfeit],
            Self::BankCard | Self::ThirdPartyBinding => &[Unbind],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptionKind {
    /// Refund of the unused days, auto-renewal cancelled.
    RefundProRata,
    /// Paid back to the original payment method.
    Withdraw,
    /// Moved to another account of the user's choice.
    Transfer,
    /// Given up, explicitly.
    Forfeit,
    /// The card or binding is removed.
    Unbind,
}

impl OptionKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::RefundProRata => "refund_pro_rata",
            Self::Withdraw => "withdraw",
            Self::Transfer => "transfer",
            Self::Forfeit => "forfeit",
            Self::Unbind => "unbind",
        }
    }
}

/// An asset as a provider reports it. `id` is the platform's reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asset {
    pub id: String,
    pub kind: AssetKind,
    /// The provider (or data-map system) that reported it.
    pub source: String,
    /// A short description (plan name, masked card, coupon title).
    pub label: String,
    /// Money amount: balance, gift-card or deposit value, coupon face value,
    /// or the price paid for the current subscription period.
    pub amount: Option<MinorUnits>,
    /// Points count.
    pub quantity: Option<u64>,
    pub period_start: Option<Date>,
    pub period_end: Option<Date>,
    pub auto_renew: bool,
    pub settlement: Option<Settlement>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettlementStatus {
    /// Recorded with its acknowledged statement; the instruction goes to
    /// the platform when the cancellation becomes final.
    Chosen,
    /// The instruction went (or goes) to the platform.
    Pending,
    Done,
    /// The platform refused or failed; the user may choose again.
    Failed,
    /// Explicitly given up: nothing to instruct.
    Forfeited,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    pub option: OptionKind,
    pub status: SettlementStatus,
    /// The idempotency key of the instruction to the platform.
    pub instruction_id: String,
    /// Refund or withdrawal amount computed by Lethe: for a refund, on the
    /// day the instruction goes out.
    pub amount: Option<MinorUnits>,
    /// The amount the acknowledged statement named, when the executed one
    /// differs (days passed between choosing and the end of cooling-off).
    #[serde(default)]
    pub amount_shown: Option<MinorUnits>,
    /// Settled when chosen, before the cancellation was confirmed (the
    /// policy's `settle_early`): restoring does not undo it.
    #[serde(default)]
    pub early: bool,
    pub transfer_to: Option<SubjectId>,
    /// The statement shown to the user and acknowledged, exactly.
    pub statement: String,
    pub statement_version: u32,
    pub locale: Locale,
    pub reference: Option<String>,
    pub error: Option<String>,
}

impl Asset {
    /// The user has decided what happens to it (and, for an early
    /// settlement, the platform carried it out): the case may be
    /// confirmed.
    pub fn chosen(&self) -> bool {
        matches!(
            self.settlement.as_ref().map(|s| s.status),
            Some(SettlementStatus::Chosen | SettlementStatus::Done | SettlementStatus::Forfeited)
        )
    }

    /// Nothing is left to do for it: the erasure may start.
    pub fn settled(&self) -> bool {
        matches!(
            self.settlement.as_ref().map(|s| s.status),
            Some(SettlementStatus::Done | SettlementStatus::Forfeited)
        )
    }

    /// A paid subscription that renews by itself: paused while the case
    /// cools off, resumed on restore.
    pub fn renews(&self) -> bool {
        self.kind == AssetKind::Subscription && self.auto_renew
    }
}

/// When a settlement is carried out, which its statement says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// When the cooling-off period ends (the default): restoring before
    /// then leaves the asset as it is.
    AtFinality,
    /// At once: before confirming (`settle_early`) or after cooling-off
    /// ended (a choice made again after the platform refused one).
    Now,
}

/// Version of the statement texts below; raise it when they change.
pub const STATEMENT_VERSION: u32 = 2;

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The pro-rata refund of a subscription on `today`: the whole days left
/// until the period ends, out of the period's days; rounded down to the fen
/// (see `settlement::pro_rata_refund`).
pub fn subscription_refund(a: &Asset, today: Date) -> Option<MinorUnits> {
    let (start, end, paid) = (a.period_start?, a.period_end?, a.amount?);
    let period = end.since(start).ok()?.get_days();
    let left = end.since(today).ok()?.get_days().clamp(0, period);
    crate::settlement::pro_rata_refund(paid, u32::try_from(period).ok()?, u32::try_from(left).ok()?)
        .ok()
}

/// The consequence statement for settling `a` with `option` (zh-CN, en),
/// saying when it happens. `to` is the receiving account of a transfer
/// (`None` while the user has not named it yet).
pub fn statement(
    a: &Asset,
    option: OptionKind,
    amount: Option<MinorUnits>,
    to: Option<&SubjectId>,
    timing: Timing,
) -> (String, String) {
    let (zh, en) = what_happens(a, option, amount, to, timing);
    match timing {
        Timing::AtFinality => (
            format!("{zh}冷静期结束、注销生效时执行；在此之前撤回注销，账号保持原样。"),
            format!(
                "{en} This happens when the cooling-off period ends; restoring the account before then leaves it as it is."
            ),
        ),
        Timing::Now => (
            format!("{zh}此操作立即执行，撤回注销也不会恢复。"),
            format!("{en} This happens now and is not undone by restoring."),
        ),
    }
}

fn what_happens(
    a: &Asset,
    option: OptionKind,
    amount: Option<MinorUnits>,
    to: Option<&SubjectId>,
    timing: Timing,
) -> (String, String) {
    let money = |m: Option<MinorUnits>| m.map(|x| x.format_cny()).unwrap_or_else(|| "¥0.00".into());
    let label = &a.label;
    let (to_zh, to_en) = match to {
        Some(t) => (
            format!("账号 {}", t.expose()),
            format!("account {}", t.expose()),
        ),
        None => ("您指定的账号".to_owned(), "the account you name".to_owned()),
    };
    match (a.kind, option) {
        (AssetKind::Subscription, OptionKind::RefundProRata) if timing == Timing::AtFinality => (
            format!(
                "您的{label}按冷静期结束当日的未使用天数退款（按今日计为 {}），7 日内退回原支付方式；冷静期内自动续费暂停，注销生效时取消。",
                money(amount)
            ),
            format!(
                "The unused days of your {label} are counted on the day the cooling-off period ends and refunded to the original payment method within 7 days ({} if counted today); auto-renewal is paused during cooling-off and cancelled when the cancellation takes effect.",
                money(amount)
            ),
        ),
        (AssetKind::Subscription, OptionKind::RefundProRata) => (
            format!(
                "您的{label}未使用部分 {} 将在 7 日内退回原支付方式，自动续费同时取消。",
                money(amount)
            ),
            format!(
                "{} for the unused part of your {label} goes back to the original payment method within 7 days, and auto-renewal is cancelled.",
                money(amount)
            ),
        ),
        (AssetKind::Points, OptionKind::Transfer) => (
            format!("{} 积分将转入{to_zh}。", thousands(a.quantity.unwrap_or(0))),
            format!(
                "{} points will be transferred to {to_en}.",
                thousands(a.quantity.unwrap_or(0))
            ),
        ),
        (AssetKind::Points, _) => (
            format!(
                "{} 积分将作废，无法恢复。",
                thousands(a.quantity.unwrap_or(0))
            ),
            format!(
                "{} points will be forfeited and cannot be recovered.",
                thousands(a.quantity.unwrap_or(0))
            ),
        ),
        (AssetKind::Coupon, OptionKind::Transfer) => (
            format!("优惠券「{label}」将转入{to_zh}。"),
            format!("The coupon \"{label}\" will be transferred to {to_en}."),
        ),
        (AssetKind::Coupon, _) => (
            format!("优惠券「{label}」（{}）将作废。", money(a.amount)),
            format!(
                "The coupon \"{label}\" ({}) will be forfeited.",
                money(a.amount)
            ),
        ),
        (AssetKind::Balance | AssetKind::GiftCard | AssetKind::Deposit, OptionKind::Withdraw) => (
            format!("{label} {} 将退回原支付方式。", money(amount)),
            format!(
                "{} of your {label} goes back to the original payment method.",
                money(amount)
            ),
        ),
        (AssetKind::Balance | AssetKind::GiftCard | AssetKind::Deposit, _) => (
            format!("{label} {} 将作废，无法取回。", money(a.amount)),
            format!(
                "{} of your {label} will be forfeited and cannot be recovered.",
                money(a.amount)
            ),
        ),
        (AssetKind::Subscription, _) => (
            format!("您的{label}剩余权益将作废，自动续费取消。",),
            format!(
                "What is left of your {label} will be forfeited, and auto-renewal is cancelled."
            ),
        ),
        (AssetKind::BankCard | AssetKind::ThirdPartyBinding, _) => (
            format!("{label} 将解除绑定。"),
            format!("{label} will be unbound."),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(paid: i64) -> Asset {
        Asset {
            id: "sub-1".into(),
            kind: AssetKind::Subscription,
            source: "p".into(),
            label: "monthly membership".into(),
            amount: Some(MinorUnits::new(paid).unwrap()),
            quantity: None,
            period_start: Some("2026-11-01".parse().unwrap()),
            period_end: Some("2026-12-01".parse().unwrap()),
            auto_renew: true,
            settlement: None,
        }
    }

    #[test]
    fn monthly_membership_refund_and_statement() {
        // ¥15.50 for 30 days, 24 left on 7 November: 1550 * 24 / 30 = 1240.
        let a = sub(1550);
        let r = subscription_refund(&a, "2026-11-07".parse().unwrap()).unwrap();
        assert_eq!(r.get(), 1240);
        let (zh, en) = statement(&a, OptionKind::RefundProRata, Some(r), None, Timing::Now);
        assert!(
            en.starts_with(
                "¥12.40 for the unused part of your monthly membership goes back to the original"
            ),
            "{en}"
        );
        assert!(
            en.ends_with("This happens now and is not undone by restoring."),
            "{en}"
        );
        assert!(zh.contains("¥12.40") && zh.contains("7 日内"), "{zh}");
        // Chosen for the end of cooling-off, the statement says the days are
        // counted then, and the figure is today's.
        let (zh, en) = statement(
            &a,
            OptionKind::RefundProRata,
            Some(r),
            None,
            Timing::AtFinality,
        );
        assert!(
            en.contains("counted on the day the cooling-off period ends")
                && en.contains("¥12.40 if counted today"),
            "{en}"
        );
        assert!(
            zh.contains("冷静期结束当日") && zh.contains("¥12.40"),
            "{zh}"
        );
        // After the period: nothing; before it started: everything.
        assert_eq!(
            subscription_refund(&a, "2026-12-05".parse().unwrap())
                .unwrap()
                .get(),
            0
        );
        assert_eq!(
            subscription_refund(&a, "2026-10-20".parse().unwrap())
                .unwrap()
                .get(),
            1550
        );
    }

    #[test]
    fn points_statements_use_thousands_separators() {
        let a = Asset {
            kind: AssetKind::Points,
            quantity: Some(3200),
            label: "points".into(),
            ..sub(0)
        };
        assert_eq!(
            what_happens(&a, OptionKind::Forfeit, None, None, Timing::AtFinality).1,
            "3,200 points will be forfeited and cannot be recovered."
        );
        // A transfer whose account is not named yet never shows a blank.
        let (zh, en) = statement(&a, OptionKind::Transfer, None, None, Timing::AtFinality);
        assert!(zh.starts_with("3,200 积分将转入您指定的账号。"), "{zh}");
        assert!(
            en.starts_with("3,200 points will be transferred to the account you name."),
            "{en}"
        );
        let to = SubjectId::parse("u-9").unwrap();
        let (zh, _) = statement(
            &a,
            OptionKind::Transfer,
            None,
            Some(&to),
            Timing::AtFinality,
        );
        assert!(
            zh.starts_with("3,200 积分将转入账号 u-9。") && zh.contains("撤回注销，账号保持原样"),
            "{zh}"
        );
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn every_kind_has_options_and_cards_can_only_be_unbound() {
        assert_eq!(AssetKind::BankCard.options(), &[OptionKind::Unbind]);
        assert!(
            AssetKind::Subscription
                .options()
                .contains(&OptionKind::RefundProRata)
        );
        assert_eq!(AssetKind::parse("gift_card"), Some(AssetKind::GiftCard));
        assert_eq!(AssetKind::parse("car"), None);
    }
}
