# Lethe's page texts in zh-CN (the default language).
#
# Each text is an attribute of a message named by its group: the code's key
# "event.case.approved" is message `event-case`, attribute `.approved`.
# Placeables: { $n } a number, { $t } a time. A text that begins or ends
# with a space keeps it as {" "}. Every key is in both files (a test checks
# this, and that every key is used by a page or by the code).

a11y =
    .console_nav = 控制台导航
    .done = （已完成）
    .language = 语言
    .skip = 跳到主要内容
    .steps = 注销步骤

app =
    .footer = 由 Lethe 提供：安全、可证明、按时完成的账号注销。
    .name = 账号注销中心

asset =
    .balance = 余额
    .bank_card = 银行卡
    .coupon = 优惠券
    .deposit = 押金
    .gift_card = 礼品卡
    .points = 积分
    .subscription = 会员订阅
    .third_party_binding = 第三方账号绑定

assets =
    .amount = 金额
    .auto_renew = 自动续费中
    .blocked = 暂时无法注销
    .blocked_fix = 请先在应用内处理以上事项（例如完成或取消订单），然后重新检查。
    .choose = 请选择如何处理
    .confirm_choice = 确认此选择
    .lead = 我们将检查未完成的订单、纠纷、欠款，并列出您账号中的余额、积分、优惠券和会员。
    .quantity = 数量
    .rerun = 重新检查
    .run = 开始检查
    .settle_lead = 注销前，请逐项选择账号中资产的处理方式。每个选项都写明了结果。
    .title = 未完成事项与账号资产
    .transfer_to = 转入的账号（仅选择转让时填写）
    .unavailable = 上次检查未能完成，请重试。
    .until = 有效期至

case =
    .actor = 操作者
    .assurance = 身份核验等级
    .attempts = 尝试次数
    .change = 状态变化
    .checks = 检查结果
    .consequences = 已确认的后果
    .continues = 身份已核验。用户可在应用的注销中心继续后续步骤，进度在此实时可见。
    .event = 事件
    .hash = 审计哈希
    .job = 任务
    .sequencing = 正在写入审计日志
    .title = 注销案件
    .verified_by = 核验方式
    .when = 时间

channel =
    .app = 应用内（已登录）
    .counter = 柜台（查验证件）
    .hotline = 客服热线
    .recovery = 找回账号（未登录）

claim =
    .approve = 批准：解除该身份证号在所有账号上的实名绑定
    .destroyed = 申诉已结束，证件材料已销毁。
    .docs = 份材料
    .document = 材料
    .documents = 证件材料
    .lead = 申诉人称其身份证被他人用于实名认证。请核对材料后作出决定；每次查看都会记入审计日志。
    .missing = 没有这个申诉。
    .rotate = 旋转
    .title = 实名申诉审核
    .tools = 查看工具
    .zoom_in = 放大
    .zoom_out = 缩小

closed =
    .rejected = 注销申请未通过
    .withdrawn = 已保留账号
    .withdrawn_body = 您已撤回注销申请，账号照常可用。

confirm =
    .cooling = 提交后进入 { $n } 天冷静期，期间可一键恢复账号。
    .erased = 冷静期结束后，账号及其个人信息将被永久删除，无法恢复。
    .frozen = 冷静期内账号将被冻结，无法登录和下单。
    .go = 确认注销
    .keep = 我再想想，保留账号
    .kept = 依法保留的信息
    .kept_until = 保留期限
    .kept_what = 信息
    .kept_why = 法律依据
    .summary = 确认前请再看一遍
    .title = 确认注销
    .understood = 我已了解以上后果，确认注销本账号。

cons =
    .ack = 我已知晓
    .acked = 已确认
    .lead = 注销会带来以下后果。请逐条阅读并确认。
    .title = 注销后果
    .wait_settlement = 全部已确认。资产处理完成后即可进入下一步。

console =
    .datamap = 数据地图检查
    .logout = 退出
    .name = 注销工作台
    .queues = 工作队列
    .report = 合规报告
    .support = 客服请求

counter =
    .branch = 网点
    .foreign_permanent_residence = 外国人永久居留身份证
    .go = 记录查验并核验身份
    .hk_macao_permit = 港澳居民来往内地通行证
    .id_card = 居民身份证
    .last4 = 证件号后 4 位（当面查看）
    .lead = 当面查验实体证件。系统只记录证件类型、后 4 位和网点，不保存完整证件号。
    .passport = 护照
    .taiwan_permit = 台湾居民来往大陆通行证
    .title = 柜台核验
    .type = 证件类型

datamap =
    .at = 位置
    .clean = 没有发现问题。
    .errors = 个错误
    .findings = 检查结果
    .fix = 修复方法
    .lead = 对照平台数据库的实时结构检查数据地图：缺失的表和列、未覆盖的外键、疑似个人信息的列（抽样）。
    .message = 说明
    .severity = 级别
    .systems = 系统
    .tables = 张表
    .unchecked = 无可读结构，未检查

deadline =
    .acknowledge = 受理确认
    .completion = 整体完成
    .erasure_start = 开始删除
    .response = 答复
    .review = 人工审核

demo =
    .account = Demo Mart 账号 ID
    .app = 我的 · 设置
    .cancel = 注销账号
    .lead = 演示平台：选择一个账号，像在应用里一样点击“注销账号”，即进入 Lethe 注销中心。
    .phone = 注册手机号
    .recovery = 无法登录？通过账号找回注销（将向注册手机号发送验证码）
    .signed_in = 已登录账号
    .signin = 登录
    .signin_failed = 账号 ID 或手机号不对。
    .sms = 演示短信：

drift =
    .accept = 接受（无需改数据地图）
    .accepted_by = 接受人
    .banner = 数据地图与平台数据库结构已不一致，定时检查发现了新的问题：
    .breaking = 会导致删除失败：该系统的删除已暂停，修复后自动继续
    .heading = 结构漂移（定时检查）
    .last_check = 上次定时检查
    .none = 定时检查没有发现未处理的问题。
    .reason = 理由（例如：该列是快递员热线，不是用户手机号）
    .see = 查看并处理
    .state = 状态

drift-state =
    .accepted = 已接受
    .open = 待处理

dstatus =
    .late = 已超期完成
    .met = 已按时完成
    .on_track = 进行中
    .overdue = 已超期
    .paused = 等待用户
    .unknown = 无法计算
    .warning = 即将到期

err =
    .title = 未能完成：

err-csrf =
    .body = 此请求不是从本页面发出的，或页面已过期。请返回并刷新页面后重试。
    .title = 请求被拒绝

event-case =
    .alternative_chosen = 选择了其他办法，注销已撤回
    .approved = 审核通过
    .checks_blocked = 检查完成：存在未完成事项
    .checks_clear = 检查完成：可以继续
    .checks_unavailable = 检查暂时无法完成
    .confirmed = 确认注销
    .consequence_acknowledged = 确认了一项注销后果
    .deadline_extended = 答复期限已延长
    .erased = 数据已删除并核验，注销完成
    .erasure_failed = 删除遇到问题
    .erasure_retried = 重新开始删除
    .erasure_started = 冷静期结束，开始删除
    .identity_stepped_up = 身份核验等级已提高
    .identity_verified = 身份已核验
    .rejected = 申请未通过
    .settlement_chosen = 选择了一项资产的处理方式
    .settlement_result = 平台完成了一项资产处理
    .submitted = 提交注销申请
    .withdrawn = 注销已撤回，账号保留

expired =
    .body = 为了您的账号安全，注销链接只能使用一次且 10 分钟内有效。请回到应用，从“设置 › 账号与安全 › 注销账号”重新进入。
    .title = 链接已失效

export =
    .building = 正在生成
    .copy = 数据副本
    .deleted = 已删除
    .download = 下载副本
    .downloaded = 已下载
    .downloading = 下载中
    .expired = 已过期
    .failed = 生成失败
    .lead = 注销后数据无法找回。您可以先下载一份个人数据副本（ZIP，含 JSON 和 CSV）。这一步可以跳过。
    .next = 下一步
    .once = 链接只能使用一次，{ $t } 前有效。
    .progress = 生成进度
    .queued = 排队中
    .ready = 可以下载
    .request = 生成我的数据副本
    .title = 下载数据副本

hotline =
    .go = 核对并核验身份
    .id_number = 身份证号（来电者口述）
    .lead = 请来电者说出实名姓名、身份证号和注册手机号。系统以加密摘要与平台记录比对，您看不到记录本身；不一致时不会提示是哪一项。
    .name = 姓名
    .phone = 注册手机号
    .title = 热线身份核验

job =
    .dead = 失败，待人工处理
    .done = 已删除并核验
    .leased = 正在删除
    .ready = 排队中
    .waiting = 等待系统确认

login =
    .go = 登录
    .password = 密码
    .title = 坐席登录
    .totp = 动态验证码（TOTP）
    .totp_hint = 身份验证器应用中的 6 位数字。
    .username = 用户名

next =
    .checks_blocked = 请先处理未完成事项，然后重新检查。
    .checks_clear = 请处理账号资产并确认每一项后果。
    .consequences_acknowledged = 可以下载数据副本，然后确认注销。
    .cooling_off = 冷静期结束后开始删除；在此之前可随时恢复账号。
    .erased = 注销已完成，删除凭证已生成。
    .erasing = 正在各系统中删除您的数据并逐一核验。
    .failed = 删除未能完成，工作人员会处理并重试。
    .identity_verified = 下一步：检查未完成事项和账号资产。
    .rejected = 申请未通过，原因见下方。
    .settling = 正在按您的选择办理退款、提现、转移和解绑；全部完成后开始删除数据。
    .submitted = 下一步：核验身份。
    .under_review = 工作人员正在审核，审核结果会通知您。
    .withdrawn = 账号已保留。

option =
    .forfeit = 放弃
    .refund_pro_rata = 按剩余天数退款
    .transfer = 转让给其他账号
    .unbind = 解除绑定
    .withdraw = 提现到原支付方式

problem =
    .account-erased = 这个账号已经注销，无法再次申请。如需凭证，请使用之前的注销回执。
    .already-acknowledged = 这一项已经确认过了。
    .already-settled = 这项资产已经处理过了。
    .assurance = 这一步需要更强的身份核验（如人脸识别或到柜台核验证件）。
    .busy = 系统繁忙，请稍后再试。
    .checks-unavailable = 暂时无法查询账号的未完成事项和资产，请稍后重试；检查不会被跳过。
    .code = 验证码不正确或已过期，请重新输入或重新获取。
    .code-locked = 错误次数过多，验证码已锁定，请稍后再试。
    .export-gone = 这份数据副本已过期或已删除，请重新申请。
    .export-in-use = 数据副本正在生成中，请稍候。
    .identity-check-locked = 核验失败次数过多，请稍后再试或联系客服。
    .identity-mismatch = 来电者提供的信息与平台记录不一致，请重新询问（不会提示是哪一项不一致）。
    .illegal-transition = 当前状态下不能进行这一步，请刷新页面查看最新进度。
    .internal = 系统出了点问题，您的操作没有丢失，请稍后重试。
    .method-disabled = 这种核验方式暂不可用，请选择其他方式。
    .no-case = 请先开始注销；在此之前请使用平台自己的客服。
    .not-found = 找不到这项申请，请从应用里重新进入。
    .open-case-exists = 该账号已有进行中的注销申请。
    .other = 操作未成功，请刷新页面后重试；如仍有问题，请联系客服。
    .rate-limited = 操作过于频繁，请稍后再试。
    .receipt-not-verified = 注销回执无法验证：请使用本服务签发的原始回执（文件或回执页上的客服链接）。
    .receipt-tries-exhausted = 回执验证失败次数过多，请稍后再试，并使用本服务签发的原始回执。
    .refused = 这项操作未被接受，请刷新页面查看当前状态。
    .resend-too-soon = 验证码刚刚发送过，请稍候再获取。
    .restore-needs-code = 冷静期内恢复账号需要先验证手机。
    .sms-gateway = 短信暂时无法发送，请稍后再试。
    .sms-throttled = 验证码发送过于频繁，请稍后再试。
    .support-closed = 该请求已结案，联系方式已销毁。
    .support-throttled = 提交过于频繁：客服已在处理你之前的请求，请等待答复。
    .throttled = 请求验证码过于频繁，请稍后再试。
    .timeout = 处理超时，请稍后重试。
    .unavailable = 服务暂时不可用，请稍后重试。
    .unknown-instruction = 这项清算已经处理，请刷新页面。
    .validation = 填写的内容有误，请检查后重试。

problem-validation =
    .answer = 请填写答复（1 至 2000 字）。
    .asset_id = 找不到这项资产，请刷新页面后重新选择。
    .branch = 请填写办理的营业厅。
    .channel = 请选择办理渠道。
    .code = 验证码不正确或已过期，请核对短信中的 6 位数字，或重新获取。
    .consequence_id = 这条说明已更新，请刷新页面后重新确认。
    .contact = 联系方式应为 11 位手机号（或 + 国家码和号码）或邮箱地址。
    .from = 开始日期无效，请填写如 2026-01-01 的日期。
    .last4 = 证件与账号的实名信息不一致。
    .message = 请填写问题描述（1 至 2000 字）。
    .note = 请填写处理说明：在哪里删除了什么（1 到 2000 个字符）。
    .option = 请为这项资产选择一种处理方式。
    .receipt = 粘贴的内容不是注销回执（JSON）。
    .records = 请填写删除的记录数。
    .to = 结束日期无效，请填写如 2026-04-01 的日期。
    .topic = 请选择问题类型。
    .transfer_to = 转移需要填写接收的账号（不能是本账号）。
    .understood = 请勾选确认框，表明您已了解注销后果。
    .version = 这条说明已更新，请刷新页面后重新确认。
    .why_none = 记录数为 0 时，请说明为什么没有可删除的内容（10 到 500 个字符，不含个人信息）。

progress =
    .cooling = 冷静期中
    .cooling_body = 账号已冻结。冷静期到 { $t } 结束，之后开始删除数据。
    .deadlines = 时限
    .failed = 删除遇到问题，工作人员已收到提醒，会处理后重试。您无需操作。
    .review = 您的申请正在人工审核中（3 个工作日内）。
    .settling = 冷静期已结束，注销生效：平台正在按您的选择办理退款、提现、转移和解绑，全部完成后开始删除数据。如有一项未能办理，请在下方重新选择。
    .settling_title = 正在办理权益清算
    .systems = 各系统删除进度
    .timeline = 进度记录
    .title = 注销进度

queue =
    .calendar_ends = 工作日日历（国务院放假调休安排）即将到期，之后的时限按周末和法定节假日暂算（标注“暂定”），请在 calendar_file 中加入新一年的安排。日历覆盖至
    .case = 案件
    .channel = 渠道
    .claims = 实名申诉
    .deadline = 时限
    .empty = 暂无。
    .instructions = 操作说明
    .left = 剩余时间
    .new = 新案件
    .open = 开立案件
    .open_case = 为来电或到访用户开立案件
    .overdue = 已超期
    .platform = 所属平台
    .review = 待审核
    .state = 状态
    .subject = 平台账号 ID
    .system = 系统
    .tasks = 人工删除任务

receipt =
    .lead = 您的账号已注销，数据已在各系统中删除并核验。删除凭证经过签名，可以独立验证。
    .open = 查看删除凭证
    .title = 注销完成

report =
    .by_channel = 按渠道
    .by_outcome = 按结果
    .cases = 案件数
    .deadlines = 时限达成
    .from = 开始日期
    .go = 生成报告
    .late = 超期完成
    .on_time = 按时完成
    .open_overdue = 未完成且超期
    .p50 = 用时中位数
    .p90 = 用时 90 分位
    .rows = 已删除记录
    .signed = 报告已用审计密钥签名：
    .to = 结束日期（不含）
    .verified = 已核验系统
    .with_due = 有截止时间

restore =
    .done = 账号已恢复
    .done_body = 注销申请已撤回，账号已解冻，可以照常使用。
    .early = 以下事项按平台规定在确认注销前已经办理，恢复账号不会撤销：
    .go = 恢复账号
    .lead = 改变主意了？获取验证码并输入，即可一步恢复账号。
    .settlements = 您选择在冷静期结束时办理的退款、提现、转移和解绑均未执行：余额、积分、优惠券和自动续费都保持原样。
    .settlements_title = 您的权益
    .title = 恢复账号

retain =
    .for = { $n } 天

review =
    .approve = 批准
    .decision = 审核决定
    .go = 提交决定
    .reason = 理由（驳回时必填，用户可见）
    .reject = 驳回
    .title = 人工审核

role =
    .admin = 管理员
    .agent = 坐席
    .auditor = 审计员
    .reviewer = 审核员

settle =
    .chosen = 已选择，冷静期结束时执行
    .done = 已完成
    .failed = 未成功，请重新选择
    .forfeited = 已放弃
    .pending = 处理中

severity =
    .error = 错误
    .warning = 警告

signout =
    .body = 你已退出注销中心。案件不受影响；要继续，请从 App 再次进入。
    .button = 退出
    .title = 已退出

start =
    .alternatives = 也许您只需要
    .choose = 选择此项
    .go = 继续注销
    .lead = 注销后，账号和个人信息将被永久删除。开始前，请先看看是否有更合适的办法。
    .title = 注销账号
    .what = 注销流程
    .what1 = 核验身份（短信验证码）。
    .what2 = 检查未完成的订单，处理余额、积分、会员等资产，并逐条确认注销后果。
    .what3 = 可先下载数据副本；确认后进入 { $n } 天冷静期，期间可一键恢复。
    .what4 = 冷静期结束后删除数据，您会收到签名的删除凭证。

state =
    .checks_blocked = 存在未完成事项
    .checks_clear = 待处理资产与确认
    .consequences_acknowledged = 待确认注销
    .cooling_off = 冷静期中
    .erased = 已注销
    .erasing = 删除中
    .failed = 删除受阻
    .identity_verified = 身份已核验
    .rejected = 未通过
    .settling = 权益清算中
    .submitted = 已提交
    .under_review = 审核中
    .withdrawn = 已撤回

step =
    .assets = 资产与事项
    .confirm = 确认
    .consequences = 注销后果
    .export = 数据副本
    .progress = 进度
    .receipt = 删除凭证
    .restore = 恢复
    .start = 开始
    .verify = 核验身份

support =
    .answer = 答复
    .answer_label = 答复内容（发送到申请人留下的一次性联系方式）
    .answer_send = 发送答复
    .answered = 答复已发送。
    .asset = 权益
    .case = 注销案件
    .close = 结案并销毁联系方式
    .close_hint = 结案后，申请人的联系方式、留言和答复将随其密钥一并销毁，无法恢复。
    .closed = 已结案，联系方式已销毁。
    .contact = 一次性联系方式（手机号或邮箱）
    .contact_destroyed = 已销毁
    .contact_hint = 只用于回复本次请求，结案后即销毁，不会与已注销的账号关联。
    .contact_hint_live = 只用于回复本次请求，结案后即销毁。
    .done = 请求已收到
    .done_lead = 客服已收到你的请求，会在期限内通过你留下的联系方式答复。
    .done_next = 答复发出后，请求会结案，你的联系方式随之销毁。如需再次联系客服，请提供上面的请求编号。
    .due = 答复期限
    .due_by = 最迟答复日期（当天结束前）
    .due_hint = 客服会在 { $n } 个工作日内答复（按国务院节假日安排计算）。
    .entry = 联系客服
    .expired = 表单已过期，请确认内容后再次提交。
    .expired_lead = 登录已失效。重新登录后，可在注销中心的每一页联系客服；如果账号已经注销，可以凭注销回执联系客服。
    .expired_link = 凭注销回执联系客服
    .instruction = 结算指令
    .lead = 账号注销后，问题依然有人管：退款未到账、权益结算有异议、数据仍可见，都可以凭注销回执联系客服，无需账号。
    .lead_account = 开始注销前有疑问？例如注销后余额、积分、优惠券如何处理。客服会答复到你留下的联系方式；这条请求不关联你的账号信息。
    .lead_live = 对注销有疑问？客服会处理与本次注销相关的问题。
    .message = 问题描述
    .no_case = 提交时尚未发起注销，没有关联的案件。
    .no_settlements = 本案没有需要结算的权益。
    .opened = 提交时间
    .option = 方式
    .origin = 来源
    .queue_empty = 没有待处理的客服请求。
    .queue_lead = 含账号已注销用户凭回执提交的请求；按答复期限排序。
    .receipt = 注销回执（粘贴回执 JSON 全文）
    .receipt_digest = 回执摘要
    .receipt_hint = 回执的签名必须能验证通过，且是本服务签发的那一份。
    .receipt_linked = 已通过回执链接识别你的注销回执。
    .receipt_open = 查看回执
    .reference = 平台流水号
    .request = 请求
    .resend = 重新发送指令
    .resent = 结算指令已按原幂等键重新发送：
    .send = 提交请求
    .sent_live = 请求已提交，客服会通过你留下的联系方式答复。
    .settlements = 权益结算
    .title = 注销后客服支持
    .topic = 问题类型

support-origin =
    .account = 注销中心（尚未发起注销）
    .live = 注销中心（注销进行中）
    .receipt = 注销回执（账号已注销）

support-state =
    .answered = 已答复
    .closed = 已结案
    .open = 待处理

support-topic =
    .data_still_visible = 数据仍可见
    .export_problem = 数据导出问题
    .other = 其他
    .refund_not_received = 退款未到账
    .settlement_dispute = 权益结算有异议

task =
    .complete = 标记为已完成
    .done = 完成任务
    .note = 处理说明（不含个人信息）
    .records = 人工删除的记录数
    .why_none = 若为 0：为何没有可删除的记录（不含个人信息）

time =
    .overdue = 超期

tr =
    .all_platforms = 全部平台
    .checkpoint = 检查点（C2SP 签名笔记）
    .closed = 已结案
    .consistency = 一致性证明
    .cosignatures = 见证方联署
    .download = 下载
    .history = 已发布的树头
    .json = 签名 JSON
    .key = 公钥
    .kind = 类型
    .latest = 最新签名树头
    .lead = 本页无需登录：任何人都可以核验本平台的注销与删除记录——审计日志的签名树头、公钥、树头之间的一致性证明，以及每月自动发布并签名的数据删除合规报告。
    .monitor_hint = 第三方可用以下命令持续监测日志是否被篡改或回滚：
    .no_cosignatures = 尚无见证方联署。
    .no_head = 审计日志尚无签名树头。
    .no_reports = 尚未发布报告；每月初自动发布上月报告。
    .origin = 日志标识
    .overdue = 超期未完成案件
    .period = 期间
    .platform = 平台
    .read = 查看
    .report = 数据删除合规报告
    .reports = 合规报告
    .root = 根哈希
    .signature = 签名
    .signed_at = 签名时间
    .size = 事件数
    .summary = 概览
    .tables = 数据表数
    .threshold_hint = 报告只含汇总数字；1 至 { $n } 以下的数目显示为“< { $n }”，以免识别到个人。
    .title = 透明度与合规
    .withheld = 不公开
    .withheld_hint = “不公开”的数目并不小，但若公开，就能与同组的总数相减，推算出另一个小于阈值的数目（次级隐藏）；各平台的报告与全站报告一起发布，彼此相减也推算不出小数目。
    .witnesses = 见证方

tr-kind =
    .monthly = 月度
    .on-demand = 按需

verify =
    .code = 6 位验证码
    .go = 验证
    .hint = 验证码{" "}
    .hint_end = {" "}分钟内有效。
    .lead = 为确认是您本人操作，我们会向账号绑定的手机号发送验证码。
    .other = 手机号已停用？请拨打客服热线，或携带身份证件到服务网点办理。
    .send = 获取验证码
    .sms = 短信验证
    .title = 核验身份
