//! The compliance report and the readable receipt page: HTML with inline
//! SVG charts, no script, no external asset.

use jiff::Timestamp;
use lethe_ledger::report::{SignedReport, build};
use lethe_ledger::{Receipt, Signer};
use lethe_store::{Store, StoreError};
use std::fmt::Write as _;

/// Cases in one report at most.
pub const MAX_REPORT_CASES: u32 = 1_000_000;
/// Kept data listed when its retention ends within this many days after the period.
pub const EXPIRING_WITHIN_DAYS: u32 = 30;

/// A date (start of that day in `tz`) or an RFC 3339 instant.
pub fn parse_when(s: &str, tz: &jiff::tz::TimeZone) -> Result<Timestamp, String> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    let d: jiff::civil::Date = s
        .parse()
        .map_err(|_| format!("'{s}' is neither a date (YYYY-MM-DD) nor an RFC 3339 time"))?;
    d.to_zoned_datetime(tz.clone())
        .map(|z| z.timestamp())
        .map_err(|e| e.to_string())
}

pub async fn compliance(
    store: &Store,
    signer: &Signer,
    from: Timestamp,
    to: Timestamp,
    now: Timestamp,
    platform: Option<&str>,
) -> Result<SignedReport, StoreError> {
    Ok(SignedReport::sign(
        unsigned(store, from, to, now, platform).await?,
        signer,
    ))
}

/// The report of a period (one platform's, or the installation's),
/// unsigned.
pub async fn unsigned(
    store: &Store,
    from: Timestamp,
    to: Timestamp,
    now: Timestamp,
    platform: Option<&str>,
) -> Result<lethe_ledger::report::Report, StoreError> {
    let (cases, deadlines, erasures) = store
        .report_rows(
            from.as_millisecond(),
            to.as_millisecond(),
            MAX_REPORT_CASES,
            platform,
        )
        .await?;
    let mut r = build(
        &from.to_string(),
        &to.to_string(),
        &now.to_string(),
        now.as_millisecond(),
        to.as_millisecond(),
        &cases,
        &deadlines,
        &erasures,
        EXPIRING_WITHIN_DAYS,
    );
    r.platform = platform.map(str::to_owned);
    Ok(r)
}

pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A horizontal bar chart as inline SVG.
fn bars(title: &str, items: &[(String, f64)], unit: &str) -> String {
    let max = items
        .iter()
        .map(|(_, v)| *v)
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let h = 28 * items.len().max(1) + 30;
    let mut s = format!(
        "<figure><figcaption>{}</figcaption><svg role=\"img\" aria-label=\"{}\" viewBox=\"0 0 520 {h}\" width=\"520\" height=\"{h}\">",
        esc(title),
        esc(title)
    );
    for (i, (label, v)) in items.iter().enumerate() {
        let y = 10 + i * 28;
        let w = (v / max * 300.0).round();
        let _ = write!(
            s,
            "<text x=\"0\" y=\"{}\" font-size=\"13\">{}</text><rect x=\"150\" y=\"{}\" width=\"{w}\" height=\"18\" fill=\"#2563eb\"/><text x=\"{}\" y=\"{}\" font-size=\"13\">{}{}</text>",
            y + 14,
            esc(label),
            y,
            155.0 + w,
            y + 14,
            if v.fract() == 0.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            },
            esc(unit)
        );
    }
    if items.is_empty() {
        s.push_str("<text x=\"0\" y=\"24\" font-size=\"13\">no data</text>");
    }
    s.push_str("</svg></figure>");
    s
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'PingFang SC','Microsoft YaHei',sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#111;line-height:1.5}table{border-collapse:collapse;width:100%;margin:1rem 0}th,td{border:1px solid #ccc;padding:.3rem .5rem;text-align:left}th{background:#f3f4f6}code{word-break:break-all}figure{margin:1rem 0}";

pub fn report_page(s: &SignedReport) -> String {
    let r = &s.report;
    let mut h = format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>数据删除合规报告 Compliance report</title><style>{STYLE}</style></head><body><main><h1>数据删除合规报告 · Data deletion compliance report</h1><p>{} — {} · generated {}</p><p>Cases 案件: <strong>{}</strong></p>",
        esc(&r.from),
        esc(&r.to),
        esc(&r.generated_at),
        r.cases
    );
    let chan: Vec<(String, f64)> = r
        .by_channel
        .iter()
        .map(|(k, v)| (k.clone(), *v as f64))
        .collect();
    let out: Vec<(String, f64)> = r
        .by_outcome
        .iter()
        .map(|(k, v)| (k.clone(), *v as f64))
        .collect();
    h.push_str(&bars("Cases by channel 按渠道", &chan, ""));
    h.push_str(&bars("Cases by outcome 按结果", &out, ""));
    let d = &r.durations;
    h.push_str(&bars(
        &format!(
            "Duration, submission to close ({} closed cases) 办理时长",
            d.count
        ),
        &[
            ("p50".into(), d.p50_hours),
            ("p90".into(), d.p90_hours),
            ("p99".into(), d.p99_hours),
        ],
        " h",
    ));
    let shares: Vec<(String, f64)> = r
        .deadlines
        .iter()
        .map(|x| (x.kind.clone(), (x.share_on_time * 1000.0).round() / 10.0))
        .collect();
    h.push_str(&bars(
        "Share of cases within each deadline 时限内完成比例",
        &shares,
        " %",
    ));
    h.push_str("<h2>Deadlines 时限</h2><table><tr><th>deadline</th><th>with due date</th><th>of which provisional 暂定</th><th>met on time</th><th>met late</th><th>open, overdue</th></tr>");
    for x in &r.deadlines {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&x.kind),
            x.with_due_date,
            x.provisional,
            x.met_on_time,
            x.met_late,
            x.open_overdue
        );
    }
    h.push_str("</table>");
    if !r.provisional_cases.is_empty() {
        let _ = write!(
            h,
            "<h2>Provisional due dates 暂定时限 ({})</h2><p>The working-day calendar does not cover these due dates yet: they count weekends and the fixed statutory holidays only (the earliest possible date) and become final when the calendar file adds the year. 工作日历尚未覆盖：按周末和法定节假日计算的最早日期，日历补充该年后自动更新。</p><ul>",
            r.provisional_cases.len()
        );
        for c in &r.provisional_cases {
            let _ = write!(h, "<li><code>{}</code></li>", esc(c));
        }
        h.push_str("</ul>");
    }
    let _ = write!(
        h,
        "<h2>Overdue cases 逾期案件 ({})</h2><ul>",
        r.overdue_cases.len()
    );
    for c in &r.overdue_cases {
        let _ = write!(h, "<li><code>{}</code></li>", esc(c));
    }
    let v = &r.verification;
    let _ = write!(
        h,
        "</ul><h2>Verification 删除核验</h2><p>{} of {} system erasures verified with no row left; {} rows erased.</p><h2>Retained data expiring within {} days 即将到期的保留数据</h2><table><tr><th>case</th><th>system</th><th>table</th><th>rows</th><th>legal basis</th><th>retained until</th></tr>",
        v.systems_verified, v.systems_erased, v.rows_erased, r.expiring_within_days
    );
    for e in &r.expiring {
        let until = Timestamp::from_millisecond(e.retain_until_ms)
            .map(|t| t.to_string())
            .unwrap_or_default();
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&e.case_id),
            esc(&e.system),
            esc(&e.table),
            e.rows,
            esc(&e.legal_basis),
            esc(&until)
        );
    }
    let _ = write!(
        h,
        "</table><h2>Signature 签名</h2><p>The JSON form of this report is signed with Ed25519. Public key: <code>{}</code>; signature of the JSON report: <code>{}</code>. Verify with <code>lethe report verify</code>.</p></main></body></html>",
        esc(&s.public_key),
        esc(&s.signature)
    );
    h
}

/// A receipt line's notes: the columns pseudonymised in rows that stay,
/// rows shared with others and kept, rows kept as stubs (names and
/// counts only). Escaped.
fn receipt_notes(t: &lethe_ledger::ReceiptTable) -> String {
    let mut n = vec![];
    if !t.set_null.is_empty() {
        n.push(format!("set to NULL 已置空: {}", t.set_null.join(", ")));
    }
    if !t.hashed.is_empty() {
        n.push(format!(
            "replaced by a keyed hash 已哈希化: {}",
            t.hashed.join(", ")
        ));
    }
    if t.shared_kept > 0 {
        n.push(format!(
            "{} shared with others and kept 与他人共用而保留",
            t.shared_kept
        ));
    }
    if t.stub_deleted > 0 {
        n.push(format!(
            "{} not referenced by kept rows, deleted 未被保留数据引用，已删除",
            t.stub_deleted
        ));
    }
    if let Some(of) = &t.stub_for {
        n.push(format!(
            "kept only because kept {of} rows reference them; purged with them 因保留的 {of} 引用而保留，随之清除"
        ));
    }
    esc(&n.join("; "))
}

/// A table as the receipt names it: the data map's titles (Chinese,
/// English) with the table's own name, or the name alone (HTML).
fn table_title(t: &lethe_ledger::ReceiptTable) -> String {
    let titles: Vec<&str> = t
        .labels
        .iter()
        .flat_map(|l| [l.title_zh.as_deref(), l.title_en.as_deref()])
        .flatten()
        .collect();
    if titles.is_empty() {
        esc(&t.table)
    } else {
        format!(
            "{} (<code>{}</code>)",
            esc(&titles.join(" · ")),
            esc(&t.table)
        )
    }
}

/// Why a table was kept, in both languages when the data map gives them.
fn legal_basis(t: &lethe_ledger::ReceiptTable) -> String {
    let both: Vec<&str> = t
        .labels
        .iter()
        .flat_map(|l| [l.legal_basis_zh.as_deref(), l.legal_basis_en.as_deref()])
        .flatten()
        .collect();
    if both.is_empty() {
        t.legal_basis.clone().unwrap_or_default()
    } else {
        both.join(" / ")
    }
}

pub fn receipt_page(r: &Receipt) -> String {
    let mut h = format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>注销回执 Deletion receipt</title><style>{STYLE}</style></head><body><main><h1>账号注销回执 · Deletion receipt</h1><p>Case 案件 <code>{}</code> · issued {}</p><h2>What was erased 已删除的数据</h2><table><tr><th>system</th><th>table</th><th>action</th><th>records</th><th>left after verification</th><th>notes 说明</th></tr>",
        esc(&r.case_id),
        esc(&r.issued_at)
    );
    for s in &r.systems {
        for t in s.tables.iter().filter(|t| t.action != "keep") {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&s.system),
                table_title(t),
                esc(&t.action),
                t.rows,
                t.remaining
                    .map(|x| x.to_string())
                    .unwrap_or_else(|| "—".into()),
                receipt_notes(t)
            );
        }
    }
    h.push_str("</table><h2>What was kept, why, and until when 依法保留的数据</h2><table><tr><th>system</th><th>table</th><th>records</th><th>legal basis</th><th>kept until</th><th>notes 说明</th></tr>");
    for s in &r.systems {
        for t in s.tables.iter().filter(|t| t.action == "keep") {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&s.system),
                table_title(t),
                t.rows,
                esc(&legal_basis(t)),
                esc(t.retain_until.as_deref().unwrap_or("—")),
                receipt_notes(t)
            );
        }
    }
    h.push_str("</table>");
    if let Some(k) = &r.key_destruction {
        let _ = write!(
            h,
            "<h2>Keys destroyed 密钥销毁</h2><p>{} key version(s) destroyed at {}: every copy of your encrypted fields, including in backups, is now unreadable.</p>",
            k.versions_destroyed,
            esc(&k.destroyed_at)
        );
    }
    if !r.settlements.is_empty() {
        h.push_str("<h2>Settlements 权益清算</h2><table><tr><th>asset 权益</th><th>settled by 方式</th><th>amount 金额</th><th>reference 凭证</th></tr>");
        for s in &r.settlements {
            let fen = |m: i64| {
                lethe_domain::MinorUnits::new(m)
                    .map(|x| x.format_cny())
                    .unwrap_or_else(|_| m.to_string())
            };
            let amount = match (s.amount_minor, s.amount_shown_minor) {
                (Some(paid), Some(shown)) if paid != shown => format!(
                    "{} (shown when chosen 选择时显示 {}; unused days counted on the day the cooling-off period ended 按冷静期结束当日计算)",
                    fen(paid),
                    fen(shown)
                ),
                (Some(paid), _) => fen(paid),
                (None, _) => "—".into(),
            };
            let _ = write!(
                h,
                "<tr><td>{} <code>{}</code></td><td>{} ({})</td><td>{}</td><td>{}</td></tr>",
                esc(&s.kind),
                esc(&s.asset_id),
                esc(&s.option),
                esc(&s.status),
                esc(&amount),
                esc(s.reference.as_deref().unwrap_or("—"))
            );
        }
        h.push_str("</table>");
    }
    h.push_str("<h2>Steps 办理过程</h2><ol>");
    for s in &r.steps {
        let _ = write!(h, "<li>{} — {}</li>", esc(&s.kind), esc(&s.at));
    }
    h.push_str("</ol><h2>Proof 证明</h2>");
    if let (Some(fe), Some(th)) = (&r.final_event, &r.tree_head) {
        let _ = write!(
            h,
            "<p>The closing event (#{}, <code>{}</code>) is in the audit log signed at size {} (root <code>{}</code>), proven by {} hashes. Receipt signature <code>{}</code> by public key <code>{}</code>. Check it with <code>lethe receipt verify</code>.</p>",
            fe.seq,
            esc(&fe.hash),
            th.tree_size,
            esc(&th.root_hash),
            r.inclusion_proof.len(),
            esc(&r.signature),
            esc(&r.public_key)
        );
    }
    if let Some(link) = support_link(r) {
        let _ = write!(
            h,
            "<h2>Questions after erasure? 注销后仍有问题？</h2><p>A refund that never arrived, a dispute over a settlement, data still showing somewhere: support still answers, with this receipt and no account. 退款未到账、权益结算有异议、数据仍可见：客服仍会处理，凭本回执即可，无需账号。 <a id=\"support-link\" href=\"{}\">Contact support 联系客服</a></p>",
            esc(&link)
        );
    }
    h.push_str("</main></body></html>");
    h
}

/// The receipt's support link: its case id and signature (URL-safe), which
/// only the receipt's holder has.
pub fn support_link(r: &Receipt) -> Option<String> {
    use base64::Engine;
    if r.signature.is_empty() {
        return None;
    }
    let sig = base64::engine::general_purpose::STANDARD
        .decode(&r.signature)
        .ok()?;
    let case = lethe_domain::CaseId::parse(&r.case_id).ok()?;
    // Absolute when the receipt names its support page: a saved copy of
    // the page still leads there.
    let base = r.support_url.as_deref().unwrap_or("/support");
    Some(format!(
        "{base}?case={case}&sig={}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn html_escapes_and_parses_dates() {
        assert_eq!(
            super::esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let tz = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
        assert_eq!(
            super::parse_when("2026-01-01", &tz).unwrap().to_string(),
            "2025-12-31T16:00:00Z"
        );
        assert!(super::parse_when("yesterday", &tz).is_err());
    }
}

#[cfg(test)]
mod receipt_tests {
    use super::*;

    #[test]
    fn the_receipt_page_names_pseudonymised_columns_shared_rows_and_stubs() {
        let t = |table: &str, action: &str| lethe_ledger::ReceiptTable {
            table: table.into(),
            action: action.into(),
            rows: 1,
            remaining: Some(0),
            legal_basis: None,
            retain_until: None,
            shared_kept: 0,
            set_null: vec![],
            hashed: vec![],
            stub_for: None,
            stub_deleted: 0,
            labels: None,
        };
        let mut address = t("address", "delete");
        address.shared_kept = 1;
        let mut reviews = t("reviews", "update");
        reviews.set_null = vec!["user_id".into()];
        reviews.hashed = vec!["author_phone".into()];
        let mut payment = t("payment", "keep");
        payment.legal_basis = Some("accounting".into());
        payment.rows = 0;
        let mut customer = t("customer", "keep");
        customer.stub_for = Some("payment".into());
        let r: Receipt = serde_json::from_value(serde_json::json!({
            "case_id": "c1", "subject": "s", "issued_at": "2026-12-01T00:00:00Z",
            "systems": [], "key_destruction": null, "steps": [], "final_event": null,
            "tree_head": null, "inclusion_proof": [], "digest": ""
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let r = Receipt {
            systems: vec![lethe_ledger::ReceiptSystem {
                system: "shop".into(),
                tables: vec![address, reviews, payment, customer],
            }],
            ..r
        };
        let h = receipt_page(&r);
        assert!(h.contains("1 shared with others and kept"), "{h}");
        assert!(h.contains("set to NULL 已置空: user_id"), "{h}");
        assert!(
            h.contains("replaced by a keyed hash 已哈希化: author_phone"),
            "{h}"
        );
        assert!(
            h.contains("kept only because kept payment rows reference them"),
            "{h}"
        );
        // A kept table with no rows still shows its legal basis.
        assert!(
            h.contains("<td>payment</td><td>0</td><td>accounting</td>"),
            "{h}"
        );
    }
}
