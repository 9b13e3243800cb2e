//! The pages' texts in zh-CN (the default) and English. A key without a
//! text shows as itself; a test checks that every key the templates use has
//! both texts.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Zh,
    En,
}

impl Lang {
    pub fn parse(s: &str) -> Self {
        if s.eq_ignore_ascii_case("en") || s.to_ascii_lowercase().starts_with("en-") {
            Self::En
        } else {
            Self::Zh
        }
    }
    pub fn tag(self) -> &'static str {
        match self {
            Self::Zh => "zh-CN",
            Self::En => "en",
        }
    }
    pub fn locale(self) -> lethe_domain::Locale {
        match self {
            Self::Zh => lethe_domain::Locale::ZhCn,
            Self::En => lethe_domain::Locale::En,
        }
    }
}

/// The text of `key` in `lang`, or the key itself.
pub fn text(lang: Lang, key: &str) -> &str {
    match TEXTS.binary_search_by(|(k, _, _)| (*k).cmp(key)) {
        Ok(i) => match lang {
            Lang::Zh => TEXTS[i].1,
            Lang::En => TEXTS[i].2,
        },
        Err(_) => key,
    }
}

/// (key, zh-CN, en), sorted by key (a test checks the order).
static TEXTS: &[(&str, &str, &str)] = &[
    ("a11y.console_nav", "控制台导航", "Console navigation"),
    ("a11y.done", "（已完成）", "(done)"),
    ("a11y.language", "语言", "Language"),
    ("a11y.skip", "跳到主要内容", "Skip to the main content"),
    ("a11y.steps", "注销步骤", "Cancellation steps"),
    (
        "app.footer",
        "由 Lethe 提供：安全、可证明、按时完成的账号注销。",
        "Provided by Lethe: account cancellation that is safe, provable and on time.",
    ),
    ("app.name", "账号注销中心", "Account cancellation centre"),
    ("asset.balance", "余额", "Balance"),
    ("asset.bank_card", "银行卡", "Bank card"),
    ("asset.coupon", "优惠券", "Coupon"),
    ("asset.deposit", "押金", "Deposit"),
    ("asset.gift_card", "礼品卡", "Gift card"),
    ("asset.points", "积分", "Points"),
    ("asset.subscription", "会员订阅", "Subscription"),
    (
        "asset.third_party_binding",
        "第三方账号绑定",
        "Third-party binding",
    ),
    ("assets.amount", "金额", "Amount"),
    ("assets.auto_renew", "自动续费中", "renews automatically"),
    (
        "assets.blocked",
        "暂时无法注销",
        "The account cannot be cancelled yet",
    ),
    (
        "assets.blocked_fix",
        "请先在应用内处理以上事项（例如完成或取消订单），然后重新检查。",
        "Please resolve the items above in the app first (for example, finish or cancel the order), then check again.",
    ),
    (
        "assets.choose",
        "请选择如何处理",
        "Choose what happens to it",
    ),
    ("assets.confirm_choice", "确认此选择", "Confirm this choice"),
    (
        "assets.lead",
        "我们将检查未完成的订单、纠纷、欠款，并列出您账号中的余额、积分、优惠券和会员。",
        "We check for unfinished orders, disputes and debts, and list the balances, points, coupons and memberships on your account.",
    ),
    ("assets.quantity", "数量", "Quantity"),
    ("assets.rerun", "重新检查", "Check again"),
    ("assets.run", "开始检查", "Run the checks"),
    (
        "assets.settle_lead",
        "注销前，请逐项选择账号中资产的处理方式。每个选项都写明了结果。",
        "Before cancelling, choose what happens to each asset on the account. Each option states its result.",
    ),
    (
        "assets.title",
        "未完成事项与账号资产",
        "Blockers and assets",
    ),
    (
        "assets.transfer_to",
        "转入的账号（仅选择转让时填写）",
        "Receiving account (only for a transfer)",
    ),
    (
        "assets.unavailable",
        "上次检查未能完成，请重试。",
        "The last check could not finish; please try again.",
    ),
    ("assets.until", "有效期至", "valid until"),
    ("case.actor", "操作者", "Actor"),
    ("case.assurance", "身份核验等级", "Assurance level"),
    ("case.attempts", "尝试次数", "Attempts"),
    ("case.change", "状态变化", "Change"),
    ("case.checks", "检查结果", "Checks"),
    (
        "case.consequences",
        "已确认的后果",
        "Consequences acknowledged",
    ),
    (
        "case.continues",
        "身份已核验。用户可在应用的注销中心继续后续步骤，进度在此实时可见。",
        "Identity verified. The user continues in the app's cancellation centre; the progress shows here.",
    ),
    ("case.event", "事件", "Event"),
    ("case.hash", "审计哈希", "Audit hash"),
    ("case.job", "任务", "Job"),
    (
        "case.sequencing",
        "正在写入审计日志",
        "being added to the audit log",
    ),
    ("case.title", "注销案件", "Cancellation case"),
    ("case.verified_by", "核验方式", "verified by"),
    ("case.when", "时间", "When"),
    ("channel.app", "应用内（已登录）", "App (signed in)"),
    (
        "channel.counter",
        "柜台（查验证件）",
        "Counter (ID checked)",
    ),
    ("channel.hotline", "客服热线", "Hotline"),
    (
        "channel.recovery",
        "找回账号（未登录）",
        "Account recovery (signed out)",
    ),
    (
        "claim.approve",
        "批准：解除该身份证号在所有账号上的实名绑定",
        "Approve: unbind this ID number from every account",
    ),
    (
        "claim.destroyed",
        "申诉已结束，证件材料已销毁。",
        "The claim is closed and its documents were destroyed.",
    ),
    ("claim.docs", "份材料", "documents"),
    ("claim.document", "材料", "Document"),
    ("claim.documents", "证件材料", "Documents"),
    (
        "claim.lead",
        "申诉人称其身份证被他人用于实名认证。请核对材料后作出决定；每次查看都会记入审计日志。",
        "The claimant says their ID was used by someone else for real-name registration. Review the documents and decide; every view is written to the audit log.",
    ),
    ("claim.missing", "没有这个申诉。", "No such claim."),
    ("claim.rotate", "旋转", "Rotate"),
    ("claim.title", "实名申诉审核", "Real-name dispute review"),
    ("claim.tools", "查看工具", "Viewer tools"),
    ("claim.zoom_in", "放大", "Zoom in"),
    ("claim.zoom_out", "缩小", "Zoom out"),
    (
        "closed.rejected",
        "注销申请未通过",
        "The request was rejected",
    ),
    ("closed.withdrawn", "已保留账号", "The account was kept"),
    (
        "closed.withdrawn_body",
        "您已撤回注销申请，账号照常可用。",
        "You withdrew the request; the account stays as it was.",
    ),
    (
        "confirm.cooling",
        "提交后进入 {n} 天冷静期，期间可一键恢复账号。",
        "A {n}-day cooling-off period follows, during which one step restores the account.",
    ),
    (
        "confirm.erased",
        "冷静期结束后，账号及其个人信息将被永久删除，无法恢复。",
        "When the cooling-off period ends, the account and its personal data are deleted for good and cannot be recovered.",
    ),
    (
        "confirm.frozen",
        "冷静期内账号将被冻结，无法登录和下单。",
        "During the cooling-off period the account is frozen: no sign-in, no orders.",
    ),
    ("confirm.go", "确认注销", "Confirm the cancellation"),
    (
        "confirm.keep",
        "我再想想，保留账号",
        "Not now, keep my account",
    ),
    (
        "confirm.kept",
        "依法保留的信息",
        "Data kept for a legal reason",
    ),
    ("confirm.kept_until", "保留期限", "Kept for"),
    ("confirm.kept_what", "信息", "Data"),
    ("confirm.kept_why", "法律依据", "Legal basis"),
    ("confirm.summary", "确认前请再看一遍", "Before you confirm"),
    ("confirm.title", "确认注销", "Confirm"),
    (
        "confirm.understood",
        "我已了解以上后果，确认注销本账号。",
        "I understand these consequences and want to cancel this account.",
    ),
    ("cons.ack", "我已知晓", "I understand"),
    ("cons.acked", "已确认", "Acknowledged"),
    (
        "cons.lead",
        "注销会带来以下后果。请逐条阅读并确认。",
        "Cancelling has these consequences. Read and acknowledge each one.",
    ),
    ("cons.title", "注销后果", "Consequences"),
    (
        "cons.wait_settlement",
        "全部已确认。资产处理完成后即可进入下一步。",
        "All acknowledged. The next step opens once the assets are settled.",
    ),
    ("console.datamap", "数据地图检查", "Data-map check"),
    ("console.logout", "退出", "Sign out"),
    ("console.name", "注销工作台", "Cancellation console"),
    ("console.queues", "工作队列", "Queues"),
    ("console.report", "合规报告", "Compliance report"),
    ("counter.branch", "网点", "Branch"),
    (
        "counter.foreign_permanent_residence",
        "外国人永久居留身份证",
        "Foreign permanent resident ID card",
    ),
    (
        "counter.go",
        "记录查验并核验身份",
        "Record the check and verify",
    ),
    (
        "counter.hk_macao_permit",
        "港澳居民来往内地通行证",
        "Mainland travel permit for Hong Kong and Macao residents",
    ),
    ("counter.id_card", "居民身份证", "Resident ID card"),
    (
        "counter.last4",
        "证件号后 4 位（当面查看）",
        "Last 4 characters of the document number (as seen)",
    ),
    (
        "counter.lead",
        "当面查验实体证件。系统只记录证件类型、后 4 位和网点，不保存完整证件号。",
        "Check the physical document in person. Only its type, last 4 characters and the branch are recorded, never the whole number.",
    ),
    ("counter.passport", "护照", "Passport"),
    (
        "counter.taiwan_permit",
        "台湾居民来往大陆通行证",
        "Mainland travel permit for Taiwan residents",
    ),
    ("counter.title", "柜台核验", "Counter check"),
    ("counter.type", "证件类型", "Document type"),
    ("datamap.at", "位置", "Where"),
    ("datamap.clean", "没有发现问题。", "No findings."),
    ("datamap.errors", "个错误", "errors"),
    ("datamap.findings", "检查结果", "Findings"),
    ("datamap.fix", "修复方法", "Fix"),
    (
        "datamap.lead",
        "对照平台数据库的实时结构检查数据地图：缺失的表和列、未覆盖的外键、疑似个人信息的列（抽样）。",
        "The data map checked against the live schema of the platform's databases: missing tables and columns, uncovered references, columns that look like personal data (sampled).",
    ),
    ("datamap.message", "说明", "Finding"),
    ("datamap.severity", "级别", "Severity"),
    ("datamap.systems", "系统", "Systems"),
    ("datamap.tables", "张表", "tables"),
    (
        "datamap.unchecked",
        "无可读结构，未检查",
        "no readable schema, not checked",
    ),
    ("deadline.acknowledge", "受理确认", "Acknowledgement"),
    ("deadline.completion", "整体完成", "Completion"),
    ("deadline.erasure_start", "开始删除", "Erasure start"),
    ("deadline.response", "答复", "Response"),
    ("deadline.review", "人工审核", "Review"),
    ("demo.account", "Demo Mart 账号 ID", "Demo Mart account id"),
    ("demo.app", "我的 · 设置", "Me · Settings"),
    ("demo.cancel", "注销账号", "Cancel my account"),
    (
        "demo.lead",
        "演示平台：选择一个账号，像在应用里一样点击“注销账号”，即进入 Lethe 注销中心。",
        "The demo platform: pick an account and press “Cancel my account” as in the app, to enter Lethe's cancellation centre.",
    ),
    ("demo.phone", "注册手机号", "Registered phone number"),
    (
        "demo.recovery",
        "无法登录？通过账号找回注销（将向注册手机号发送验证码）",
        "Cannot sign in? Cancel through account recovery (a code goes to the registered phone)",
    ),
    ("demo.signed_in", "已登录账号", "Signed in as account"),
    ("demo.signin", "登录", "Sign in"),
    (
        "demo.signin_failed",
        "账号 ID 或手机号不对。",
        "The account id or phone number is wrong.",
    ),
    ("demo.sms", "演示短信：", "Demo SMS:"),
    (
        "drift.accept",
        "接受（无需改数据地图）",
        "Accept (no change to the map)",
    ),
    ("drift.accepted_by", "接受人", "Accepted by"),
    (
        "drift.banner",
        "数据地图与平台数据库结构已不一致，定时检查发现了新的问题：",
        "The platform's schema has drifted from the data map; the scheduled check found something new:",
    ),
    (
        "drift.breaking",
        "会导致删除失败：该系统的删除已暂停，修复后自动继续",
        "breaks erasure: erasure in this system waits until it is fixed",
    ),
    (
        "drift.heading",
        "结构漂移（定时检查）",
        "Schema drift (scheduled check)",
    ),
    ("drift.last_check", "上次定时检查", "Last scheduled check"),
    (
        "drift.none",
        "定时检查没有发现未处理的问题。",
        "The scheduled check found nothing open.",
    ),
    (
        "drift.reason",
        "理由（例如：该列是快递员热线，不是用户手机号）",
        "Reason (e.g. the column holds the courier's hotline, not the user's phone)",
    ),
    ("drift.see", "查看并处理", "Review and resolve"),
    ("drift.state", "状态", "State"),
    ("drift.state.accepted", "已接受", "accepted"),
    ("drift.state.open", "待处理", "open"),
    ("dstatus.late", "已超期完成", "met late"),
    ("dstatus.met", "已按时完成", "met"),
    ("dstatus.on_track", "进行中", "on track"),
    ("dstatus.overdue", "已超期", "overdue"),
    ("dstatus.paused", "等待用户", "waiting for the user"),
    ("dstatus.unknown", "无法计算", "unknown"),
    ("dstatus.warning", "即将到期", "due soon"),
    (
        "err.csrf.body",
        "此请求不是从本页面发出的，或页面已过期。请返回并刷新页面后重试。",
        "This request did not come from this page, or the page is too old. Go back, reload the page and try again.",
    ),
    ("err.csrf.title", "请求被拒绝", "Request refused"),
    ("err.title", "未能完成：", "Not done:"),
    (
        "event.case.alternative_chosen",
        "选择了其他办法，注销已撤回",
        "An alternative was chosen; the cancellation was withdrawn",
    ),
    ("event.case.approved", "审核通过", "Approved by an agent"),
    (
        "event.case.checks_blocked",
        "检查完成：存在未完成事项",
        "Checks done: something blocks",
    ),
    (
        "event.case.checks_clear",
        "检查完成：可以继续",
        "Checks done: nothing blocks",
    ),
    (
        "event.case.checks_unavailable",
        "检查暂时无法完成",
        "The checks could not run",
    ),
    ("event.case.confirmed", "确认注销", "Cancellation confirmed"),
    (
        "event.case.consequence_acknowledged",
        "确认了一项注销后果",
        "A consequence acknowledged",
    ),
    (
        "event.case.deadline_extended",
        "答复期限已延长",
        "The response deadline was extended",
    ),
    (
        "event.case.erased",
        "数据已删除并核验，注销完成",
        "Data erased and verified; cancellation complete",
    ),
    (
        "event.case.erasure_failed",
        "删除遇到问题",
        "The erasure ran into a problem",
    ),
    (
        "event.case.erasure_retried",
        "重新开始删除",
        "The erasure was retried",
    ),
    (
        "event.case.erasure_started",
        "冷静期结束，开始删除",
        "Cooling-off over; erasure started",
    ),
    (
        "event.case.identity_stepped_up",
        "身份核验等级已提高",
        "Identity verified at a higher level",
    ),
    (
        "event.case.identity_verified",
        "身份已核验",
        "Identity verified",
    ),
    ("event.case.rejected", "申请未通过", "Rejected"),
    (
        "event.case.settlement_chosen",
        "选择了一项资产的处理方式",
        "A settlement chosen for an asset",
    ),
    (
        "event.case.settlement_result",
        "平台完成了一项资产处理",
        "The platform settled an asset",
    ),
    (
        "event.case.submitted",
        "提交注销申请",
        "Cancellation requested",
    ),
    (
        "event.case.withdrawn",
        "注销已撤回，账号保留",
        "Cancellation withdrawn; account kept",
    ),
    (
        "expired.body",
        "为了您的账号安全，注销链接只能使用一次且 10 分钟内有效。请回到应用，从“设置 › 账号与安全 › 注销账号”重新进入。",
        "For your account's safety, a cancellation link works once and for 10 minutes. Go back to the app and open Settings › Account › Cancel account again.",
    ),
    ("expired.title", "链接已失效", "This link has expired"),
    ("export.building", "正在生成", "being built"),
    ("export.copy", "数据副本", "Copy of your data"),
    ("export.deleted", "已删除", "deleted"),
    ("export.download", "下载副本", "Download the copy"),
    ("export.downloaded", "已下载", "downloaded"),
    ("export.downloading", "下载中", "downloading"),
    ("export.expired", "已过期", "expired"),
    ("export.failed", "生成失败", "failed"),
    (
        "export.lead",
        "注销后数据无法找回。您可以先下载一份个人数据副本（ZIP，含 JSON 和 CSV）。这一步可以跳过。",
        "Once cancelled, the data cannot be recovered. You can first download a copy of your data (a ZIP with JSON and CSV). This step is optional.",
    ),
    ("export.next", "下一步", "Next"),
    (
        "export.once",
        "链接只能使用一次，{t} 前有效。",
        "The link works once, until {t}.",
    ),
    ("export.progress", "生成进度", "Build progress"),
    ("export.queued", "排队中", "queued"),
    ("export.ready", "可以下载", "ready"),
    (
        "export.request",
        "生成我的数据副本",
        "Make a copy of my data",
    ),
    ("export.title", "下载数据副本", "Take a copy of your data"),
    ("hotline.go", "核对并核验身份", "Check and verify"),
    (
        "hotline.id_number",
        "身份证号（来电者口述）",
        "ID number (as the caller says it)",
    ),
    (
        "hotline.lead",
        "请来电者说出实名姓名、身份证号和注册手机号。系统以加密摘要与平台记录比对，您看不到记录本身；不一致时不会提示是哪一项。",
        "Ask the caller for the real name, the ID number and the registered phone number. They are compared with the platform's record by keyed hash; you never see the record, and a mismatch does not say which detail differs.",
    ),
    ("hotline.name", "姓名", "Name"),
    ("hotline.phone", "注册手机号", "Registered phone number"),
    ("hotline.title", "热线身份核验", "Hotline identity check"),
    (
        "job.dead",
        "失败，待人工处理",
        "failed, an operator will look",
    ),
    ("job.done", "已删除并核验", "erased and verified"),
    ("job.leased", "正在删除", "erasing"),
    ("job.ready", "排队中", "queued"),
    ("job.waiting", "等待系统确认", "waiting for the system"),
    ("login.go", "登录", "Sign in"),
    ("login.password", "密码", "Password"),
    ("login.title", "坐席登录", "Agent sign-in"),
    (
        "login.totp",
        "动态验证码（TOTP）",
        "Authenticator code (TOTP)",
    ),
    (
        "login.totp_hint",
        "身份验证器应用中的 6 位数字。",
        "The 6 digits shown by your authenticator app.",
    ),
    ("login.username", "用户名", "Username"),
    (
        "next.checks_blocked",
        "请先处理未完成事项，然后重新检查。",
        "Resolve the listed items, then check again.",
    ),
    (
        "next.checks_clear",
        "请处理账号资产并确认每一项后果。",
        "Settle the assets and acknowledge each consequence.",
    ),
    (
        "next.consequences_acknowledged",
        "可以下载数据副本，然后确认注销。",
        "Take a copy of your data if you wish, then confirm.",
    ),
    (
        "next.cooling_off",
        "冷静期结束后开始删除；在此之前可随时恢复账号。",
        "Erasure starts when the cooling-off period ends; until then you can restore the account.",
    ),
    (
        "next.erased",
        "注销已完成，删除凭证已生成。",
        "Done: the account is cancelled and the deletion receipt is ready.",
    ),
    (
        "next.erasing",
        "正在各系统中删除您的数据并逐一核验。",
        "Your data is being erased from each system and verified.",
    ),
    (
        "next.failed",
        "删除未能完成，工作人员会处理并重试。",
        "The erasure could not finish; an operator will fix and retry it.",
    ),
    (
        "next.identity_verified",
        "下一步：检查未完成事项和账号资产。",
        "Next: the checks for blockers and assets.",
    ),
    (
        "next.rejected",
        "申请未通过，原因见下方。",
        "The request was rejected; the reason is below.",
    ),
    (
        "next.settling",
        "正在按您的选择办理退款、提现、转移和解绑；全部完成后开始删除数据。",
        "Your chosen refunds, withdrawals, transfers and unbindings are being carried out; the erasure starts when all are done.",
    ),
    (
        "next.submitted",
        "下一步：核验身份。",
        "Next: verify that it is you.",
    ),
    (
        "next.under_review",
        "工作人员正在审核，审核结果会通知您。",
        "An agent is reviewing the request; you will be told the result.",
    ),
    ("next.withdrawn", "账号已保留。", "The account was kept."),
    ("option.forfeit", "放弃", "Give up"),
    (
        "option.refund_pro_rata",
        "按剩余天数退款",
        "Pro-rata refund",
    ),
    (
        "option.transfer",
        "转让给其他账号",
        "Transfer to another account",
    ),
    ("option.unbind", "解除绑定", "Unbind"),
    (
        "option.withdraw",
        "提现到原支付方式",
        "Withdraw to the original payment method",
    ),
    (
        "problem.account-erased",
        "这个账号已经注销，无法再次申请。如需凭证，请使用之前的注销回执。",
        "This account was already cancelled; use the earlier deletion receipt as proof.",
    ),
    (
        "problem.already-acknowledged",
        "这一项已经确认过了。",
        "This was already acknowledged.",
    ),
    (
        "problem.already-settled",
        "这项资产已经处理过了。",
        "This asset is already settled.",
    ),
    (
        "problem.assurance",
        "这一步需要更强的身份核验（如人脸识别或到柜台核验证件）。",
        "This step needs a stronger identity check (a face check, or an ID shown at a counter).",
    ),
    (
        "problem.busy",
        "系统繁忙，请稍后再试。",
        "The service is busy; try again in a moment.",
    ),
    (
        "problem.checks-unavailable",
        "暂时无法查询账号的未完成事项和资产，请稍后重试；检查不会被跳过。",
        "The checks for blockers and assets cannot run right now; try again shortly. They are never skipped.",
    ),
    (
        "problem.code",
        "验证码不正确或已过期，请重新输入或重新获取。",
        "The code is wrong or has expired; enter it again or ask for a new one.",
    ),
    (
        "problem.code-locked",
        "错误次数过多，验证码已锁定，请稍后再试。",
        "Too many wrong codes; try again later.",
    ),
    (
        "problem.export-gone",
        "这份数据副本已过期或已删除，请重新申请。",
        "This copy of your data has expired or was deleted; ask for a new one.",
    ),
    (
        "problem.export-in-use",
        "数据副本正在生成中，请稍候。",
        "The copy of your data is still being prepared; wait a moment.",
    ),
    (
        "problem.identity-check-locked",
        "核验失败次数过多，请稍后再试或联系客服。",
        "Too many failed checks; try again later or contact support.",
    ),
    (
        "problem.identity-mismatch",
        "来电者提供的信息与平台记录不一致，请重新询问（不会提示是哪一项不一致）。",
        "The details given do not match the platform's record; ask the caller again (which detail differs is not shown).",
    ),
    (
        "problem.illegal-transition",
        "当前状态下不能进行这一步，请刷新页面查看最新进度。",
        "This step is not possible in the case's current state; reload to see the latest.",
    ),
    (
        "problem.internal",
        "系统出了点问题，您的操作没有丢失，请稍后重试。",
        "Something went wrong on our side; nothing you did was lost. Try again shortly.",
    ),
    (
        "problem.method-disabled",
        "这种核验方式暂不可用，请选择其他方式。",
        "This way of checking your identity is not available; choose another.",
    ),
    (
        "problem.not-found",
        "找不到这项申请，请从应用里重新进入。",
        "This request cannot be found; enter again from the app.",
    ),
    (
        "problem.open-case-exists",
        "该账号已有进行中的注销申请。",
        "This account already has an open cancellation.",
    ),
    (
        "problem.other",
        "操作未成功，请刷新页面后重试；如仍有问题，请联系客服。",
        "This did not work; reload the page and try again, or contact support.",
    ),
    (
        "problem.rate-limited",
        "操作过于频繁，请稍后再试。",
        "Too many requests; try again in a moment.",
    ),
    (
        "problem.refused",
        "这项操作未被接受，请刷新页面查看当前状态。",
        "This was not accepted; reload the page to see where things stand.",
    ),
    (
        "problem.resend-too-soon",
        "验证码刚刚发送过，请稍候再获取。",
        "A code was just sent; wait a moment before asking again.",
    ),
    (
        "problem.restore-needs-code",
        "冷静期内恢复账号需要先验证手机。",
        "During cooling-off, restoring the account needs a verified code.",
    ),
    (
        "problem.sms-gateway",
        "短信暂时无法发送，请稍后再试。",
        "The SMS cannot be sent right now; try again shortly.",
    ),
    (
        "problem.sms-throttled",
        "验证码发送过于频繁，请稍后再试。",
        "Too many codes were sent; try again later.",
    ),
    (
        "problem.throttled",
        "请求验证码过于频繁，请稍后再试。",
        "Codes were asked for too often; try again later.",
    ),
    (
        "problem.timeout",
        "处理超时，请稍后重试。",
        "This took too long; try again shortly.",
    ),
    (
        "problem.unavailable",
        "服务暂时不可用，请稍后重试。",
        "The service is unavailable for a moment; try again shortly.",
    ),
    (
        "problem.unknown-instruction",
        "这项清算已经处理，请刷新页面。",
        "This settlement was already handled; reload the page.",
    ),
    (
        "problem.validation",
        "填写的内容有误，请检查后重试。",
        "Something you entered is not valid; check it and try again.",
    ),
    (
        "problem.validation.asset_id",
        "找不到这项资产，请刷新页面后重新选择。",
        "This asset is not on the list; reload the page and choose again.",
    ),
    (
        "problem.validation.branch",
        "请填写办理的营业厅。",
        "Give the branch where the ID was checked.",
    ),
    (
        "problem.validation.channel",
        "请选择办理渠道。",
        "Choose the channel.",
    ),
    (
        "problem.validation.code",
        "验证码不正确或已过期，请核对短信中的 6 位数字，或重新获取。",
        "The code is wrong or has expired; check the six digits in the latest text message, or ask for a new one.",
    ),
    (
        "problem.validation.consequence_id",
        "这条说明已更新，请刷新页面后重新确认。",
        "This statement changed; reload the page and acknowledge it again.",
    ),
    (
        "problem.validation.from",
        "开始日期无效，请填写如 2026-01-01 的日期。",
        "The start date is not valid; write a date such as 2026-01-01.",
    ),
    (
        "problem.validation.last4",
        "证件与账号的实名信息不一致。",
        "The document does not match the account's real-name record.",
    ),
    (
        "problem.validation.note",
        "请填写处理说明：在哪里删除了什么（1 到 2000 个字符）。",
        "Say what was erased where (1 to 2000 characters).",
    ),
    (
        "problem.validation.option",
        "请为这项资产选择一种处理方式。",
        "Choose how this asset is settled.",
    ),
    (
        "problem.validation.records",
        "请填写删除的记录数。",
        "Give the number of records erased.",
    ),
    (
        "problem.validation.to",
        "结束日期无效，请填写如 2026-04-01 的日期。",
        "The end date is not valid; write a date such as 2026-04-01.",
    ),
    (
        "problem.validation.transfer_to",
        "转移需要填写接收的账号（不能是本账号）。",
        "A transfer needs the account to transfer to (not this one).",
    ),
    (
        "problem.validation.understood",
        "请勾选确认框，表明您已了解注销后果。",
        "Tick the box to confirm that you understand the consequences.",
    ),
    (
        "problem.validation.version",
        "这条说明已更新，请刷新页面后重新确认。",
        "This statement changed; reload the page and acknowledge it again.",
    ),
    (
        "problem.validation.why_none",
        "记录数为 0 时，请说明为什么没有可删除的内容（10 到 500 个字符，不含个人信息）。",
        "With 0 records, say why there was nothing to erase (10 to 500 characters, no personal data).",
    ),
    ("progress.cooling", "冷静期中", "Cooling-off period"),
    (
        "progress.cooling_body",
        "账号已冻结。冷静期到 {t} 结束，之后开始删除数据。",
        "The account is frozen. The cooling-off period ends at {t}; then the erasure starts.",
    ),
    ("progress.deadlines", "时限", "Deadlines"),
    (
        "progress.failed",
        "删除遇到问题，工作人员已收到提醒，会处理后重试。您无需操作。",
        "The erasure ran into a problem; an operator has been alerted and will retry. Nothing for you to do.",
    ),
    (
        "progress.review",
        "您的申请正在人工审核中（3 个工作日内）。",
        "Your request is being reviewed by an agent (within 3 working days).",
    ),
    (
        "progress.settling",
        "冷静期已结束，注销生效：平台正在按您的选择办理退款、提现、转移和解绑，全部完成后开始删除数据。如有一项未能办理，请在下方重新选择。",
        "The cooling-off period has ended and the cancellation is final: the platform is carrying out the refunds, withdrawals, transfers and unbindings you chose; the erasure starts when all are done. If one could not be carried out, choose again below.",
    ),
    (
        "progress.settling_title",
        "正在办理权益清算",
        "Settling your assets",
    ),
    (
        "progress.systems",
        "各系统删除进度",
        "Erasure in each system",
    ),
    ("progress.timeline", "进度记录", "What has happened"),
    ("progress.title", "注销进度", "Progress"),
    (
        "queue.calendar_ends",
        "工作日日历（国务院放假调休安排）即将到期，之后的时限按周末和法定节假日暂算（标注“暂定”），请在 calendar_file 中加入新一年的安排。日历覆盖至",
        "The working-day calendar (the State Council's holiday notice) ends soon; deadlines after it are provisional (weekends and statutory holidays only) until calendar_file adds next year. Covered until",
    ),
    ("queue.case", "案件", "Case"),
    ("queue.channel", "渠道", "Channel"),
    ("queue.claims", "实名申诉", "Real-name disputes"),
    ("queue.deadline", "时限", "Deadline"),
    ("queue.empty", "暂无。", "Nothing here."),
    ("queue.instructions", "操作说明", "Instructions"),
    ("queue.left", "剩余时间", "Time left"),
    ("queue.new", "新案件", "New"),
    ("queue.open", "开立案件", "Open the case"),
    (
        "queue.open_case",
        "为来电或到访用户开立案件",
        "Open a case for a caller or visitor",
    ),
    ("queue.overdue", "已超期", "Overdue"),
    ("queue.platform", "所属平台", "Platform"),
    ("queue.review", "待审核", "In review"),
    ("queue.state", "状态", "State"),
    ("queue.subject", "平台账号 ID", "Platform account id"),
    ("queue.system", "系统", "System"),
    ("queue.tasks", "人工删除任务", "Manual tasks"),
    (
        "receipt.lead",
        "您的账号已注销，数据已在各系统中删除并核验。删除凭证经过签名，可以独立验证。",
        "Your account is cancelled and its data erased and verified in every system. The deletion receipt is signed and can be verified by anyone.",
    ),
    ("receipt.open", "查看删除凭证", "Open the deletion receipt"),
    ("receipt.title", "注销完成", "Cancellation complete"),
    ("report.by_channel", "按渠道", "By channel"),
    ("report.by_outcome", "按结果", "By outcome"),
    ("report.cases", "案件数", "Cases"),
    ("report.deadlines", "时限达成", "Deadlines met"),
    ("report.from", "开始日期", "From"),
    ("report.go", "生成报告", "Make the report"),
    ("report.late", "超期完成", "Late"),
    ("report.on_time", "按时完成", "On time"),
    ("report.open_overdue", "未完成且超期", "Open, overdue"),
    ("report.p50", "用时中位数", "Median duration"),
    ("report.p90", "用时 90 分位", "90th percentile"),
    ("report.rows", "已删除记录", "Rows erased"),
    (
        "report.signed",
        "报告已用审计密钥签名：",
        "The report is signed with the audit key:",
    ),
    ("report.to", "结束日期（不含）", "To (exclusive)"),
    ("report.verified", "已核验系统", "Systems verified"),
    ("report.with_due", "有截止时间", "With a due date"),
    ("restore.done", "账号已恢复", "Your account is restored"),
    (
        "restore.done_body",
        "注销申请已撤回，账号已解冻，可以照常使用。",
        "The cancellation was withdrawn and the account unfrozen; use it as before.",
    ),
    (
        "restore.early",
        "以下事项按平台规定在确认注销前已经办理，恢复账号不会撤销：",
        "These were settled before you confirmed, as the platform requires, and restoring the account does not undo them:",
    ),
    ("restore.go", "恢复账号", "Restore my account"),
    (
        "restore.lead",
        "改变主意了？获取验证码并输入，即可一步恢复账号。",
        "Changed your mind? Get a code and enter it: one step restores the account.",
    ),
    (
        "restore.settlements",
        "您选择在冷静期结束时办理的退款、提现、转移和解绑均未执行：余额、积分、优惠券和自动续费都保持原样。",
        "Nothing you chose to settle when the cooling-off period ends was carried out: your balance, points, coupons and auto-renewal are as they were.",
    ),
    ("restore.settlements_title", "您的权益", "Your assets"),
    ("restore.title", "恢复账号", "Restore the account"),
    ("retain.for", "{n} 天", "{n} days"),
    ("review.approve", "批准", "Approve"),
    ("review.decision", "审核决定", "Decision"),
    ("review.go", "提交决定", "Submit the decision"),
    (
        "review.reason",
        "理由（驳回时必填，用户可见）",
        "Reason (needed to reject; the user reads it)",
    ),
    ("review.reject", "驳回", "Reject"),
    ("review.title", "人工审核", "Review"),
    ("role.admin", "管理员", "admin"),
    ("role.agent", "坐席", "agent"),
    ("role.auditor", "审计员", "auditor"),
    ("role.reviewer", "审核员", "reviewer"),
    (
        "settle.chosen",
        "已选择，冷静期结束时执行",
        "chosen; carried out when the cooling-off period ends",
    ),
    ("settle.done", "已完成", "done"),
    (
        "settle.failed",
        "未成功，请重新选择",
        "failed, choose again",
    ),
    ("settle.forfeited", "已放弃", "given up"),
    ("settle.pending", "处理中", "in progress"),
    ("severity.error", "错误", "error"),
    ("severity.warning", "警告", "warning"),
    (
        "signout.body",
        "你已退出注销中心。案件不受影响；要继续，请从 App 再次进入。",
        "You have signed out of the cancellation centre. Your case is unchanged; to go on, enter again from the app.",
    ),
    ("signout.button", "退出", "Sign out"),
    ("signout.title", "已退出", "Signed out"),
    (
        "start.alternatives",
        "也许您只需要",
        "Perhaps all you need is",
    ),
    ("start.choose", "选择此项", "Choose this"),
    ("start.go", "继续注销", "Continue to cancel"),
    (
        "start.lead",
        "注销后，账号和个人信息将被永久删除。开始前，请先看看是否有更合适的办法。",
        "Cancelling deletes the account and its personal data for good. Before you start, see whether something else would suit you better.",
    ),
    ("start.title", "注销账号", "Cancel your account"),
    ("start.what", "注销流程", "How cancelling works"),
    (
        "start.what1",
        "核验身份（短信验证码）。",
        "Verify that it is you (a text-message code).",
    ),
    (
        "start.what2",
        "检查未完成的订单，处理余额、积分、会员等资产，并逐条确认注销后果。",
        "Check for unfinished orders, settle balances, points and memberships, and acknowledge each consequence.",
    ),
    (
        "start.what3",
        "可先下载数据副本；确认后进入 {n} 天冷静期，期间可一键恢复。",
        "Take a copy of your data if you wish; after you confirm, a {n}-day cooling-off period lets you restore in one step.",
    ),
    (
        "start.what4",
        "冷静期结束后删除数据，您会收到签名的删除凭证。",
        "Then the data is erased and you receive a signed deletion receipt.",
    ),
    ("state.checks_blocked", "存在未完成事项", "Blocked"),
    (
        "state.checks_clear",
        "待处理资产与确认",
        "Settle and acknowledge",
    ),
    (
        "state.consequences_acknowledged",
        "待确认注销",
        "Ready to confirm",
    ),
    ("state.cooling_off", "冷静期中", "Cooling-off"),
    ("state.erased", "已注销", "Cancelled"),
    ("state.erasing", "删除中", "Erasing"),
    ("state.failed", "删除受阻", "Erasure failed"),
    ("state.identity_verified", "身份已核验", "Identity verified"),
    ("state.rejected", "未通过", "Rejected"),
    ("state.settling", "权益清算中", "Settling"),
    ("state.submitted", "已提交", "Submitted"),
    ("state.under_review", "审核中", "In review"),
    ("state.withdrawn", "已撤回", "Withdrawn"),
    ("step.assets", "资产与事项", "Assets"),
    ("step.confirm", "确认", "Confirm"),
    ("step.consequences", "注销后果", "Consequences"),
    ("step.export", "数据副本", "Export"),
    ("step.progress", "进度", "Progress"),
    ("step.receipt", "删除凭证", "Receipt"),
    ("step.restore", "恢复", "Restore"),
    ("step.start", "开始", "Start"),
    ("step.verify", "核验身份", "Verify"),
    ("task.complete", "标记为已完成", "Mark as done"),
    ("task.done", "完成任务", "Complete"),
    (
        "task.note",
        "处理说明（不含个人信息）",
        "What was done (no personal data)",
    ),
    ("task.records", "人工删除的记录数", "Records erased by hand"),
    (
        "task.why_none",
        "若为 0：为何没有可删除的记录（不含个人信息）",
        "If 0: why there was nothing to erase (no personal data)",
    ),
    ("time.overdue", "超期", "overdue by"),
    ("verify.code", "6 位验证码", "6-digit code"),
    ("verify.go", "验证", "Verify"),
    // The code's lifetime comes from the policy (the SMS says the same).
    ("verify.hint", "验证码 ", "The code is valid for "),
    ("verify.hint_end", " 分钟内有效。", " minutes."),
    (
        "verify.lead",
        "为确认是您本人操作，我们会向账号绑定的手机号发送验证码。",
        "To make sure it is you, we send a code to the phone number registered on the account.",
    ),
    (
        "verify.other",
        "手机号已停用？请拨打客服热线，或携带身份证件到服务网点办理。",
        "No longer have that phone number? Call the hotline, or bring your ID to a service counter.",
    ),
    ("verify.send", "获取验证码", "Send me a code"),
    ("verify.sms", "短信验证", "Text-message code"),
    ("verify.title", "核验身份", "Verify that it is you"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_sorted_unique_and_complete() {
        for w in TEXTS.windows(2) {
            assert!(w[0].0 < w[1].0, "{} must come before {}", w[1].0, w[0].0);
        }
        for (k, zh, en) in TEXTS {
            assert!(!zh.is_empty() && !en.is_empty(), "{k}");
        }
        for s in lethe_domain::CaseState::ALL {
            for prefix in ["state", "next"] {
                let key = format!("{prefix}.{}", s.as_str());
                assert_ne!(text(Lang::En, &key), key);
            }
        }
        assert_eq!(text(Lang::Zh, "no.such"), "no.such");
        assert_eq!(Lang::parse("en-GB"), Lang::En);
        assert_eq!(Lang::parse("zh-CN"), Lang::Zh);
    }
}
