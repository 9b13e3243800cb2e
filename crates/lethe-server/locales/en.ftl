# Lethe's page texts in English.
#
# Each text is an attribute of a message named by its group: the code's key
# "event.case.approved" is message `event-case`, attribute `.approved`.
# Placeables: { $n } a number, { $t } a time. A text that begins or ends
# with a space keeps it as {" "}. Every key is in both files (a test checks
# this, and that every key is used by a page or by the code).

a11y =
    .console_nav = Console navigation
    .done = (done)
    .language = Language
    .skip = Skip to the main content
    .steps = Cancellation steps

app =
    .footer = Provided by Lethe: account cancellation that is safe, provable and on time.
    .name = Account cancellation centre

asset =
    .balance = Balance
    .bank_card = Bank card
    .coupon = Coupon
    .deposit = Deposit
    .gift_card = Gift card
    .points = Points
    .subscription = Subscription
    .third_party_binding = Third-party binding

assets =
    .amount = Amount
    .auto_renew = renews automatically
    .blocked = The account cannot be cancelled yet
    .blocked_fix = Please resolve the items above in the app first (for example, finish or cancel the order), then check again.
    .choose = Choose what happens to it
    .confirm_choice = Confirm this choice
    .lead = We check for unfinished orders, disputes and debts, and list the balances, points, coupons and memberships on your account.
    .quantity = Quantity
    .rerun = Check again
    .run = Run the checks
    .settle_lead = Before cancelling, choose what happens to each asset on the account. Each option states its result.
    .title = Blockers and assets
    .transfer_to = Receiving account (only for a transfer)
    .unavailable = The last check could not finish; please try again.
    .until = valid until

case =
    .actor = Actor
    .assurance = Assurance level
    .attempts = Attempts
    .change = Change
    .checks = Checks
    .consequences = Consequences acknowledged
    .continues = Identity verified. The user continues in the app's cancellation centre; the progress shows here.
    .event = Event
    .hash = Audit hash
    .job = Job
    .sequencing = being added to the audit log
    .title = Cancellation case
    .verified_by = verified by
    .when = When

channel =
    .app = App (signed in)
    .counter = Counter (ID checked)
    .hotline = Hotline
    .recovery = Account recovery (signed out)

claim =
    .approve = Approve: unbind this ID number from every account
    .destroyed = The claim is closed and its documents were destroyed.
    .docs = documents
    .document = Document
    .documents = Documents
    .lead = The claimant says their ID was used by someone else for real-name registration. Review the documents and decide; every view is written to the audit log.
    .missing = No such claim.
    .rotate = Rotate
    .title = Real-name dispute review
    .tools = Viewer tools
    .zoom_in = Zoom in
    .zoom_out = Zoom out

closed =
    .rejected = The request was rejected
    .withdrawn = The account was kept
    .withdrawn_body = You withdrew the request; the account stays as it was.

confirm =
    .cooling = A { $n }-day cooling-off period follows, during which one step restores the account.
    .erased = When the cooling-off period ends, the account and its personal data are deleted for good and cannot be recovered.
    .frozen = During the cooling-off period the account is frozen: no sign-in, no orders.
    .go = Confirm the cancellation
    .keep = Not now, keep my account
    .kept = Data kept for a legal reason
    .kept_until = Kept for
    .kept_what = Data
    .kept_why = Legal basis
    .summary = Before you confirm
    .title = Confirm
    .understood = I understand these consequences and want to cancel this account.

cons =
    .ack = I understand
    .acked = Acknowledged
    .lead = Cancelling has these consequences. Read and acknowledge each one.
    .title = Consequences
    .wait_settlement = All acknowledged. The next step opens once the assets are settled.

console =
    .datamap = Data-map check
    .logout = Sign out
    .name = Cancellation console
    .queues = Queues
    .report = Compliance report
    .support = Support

counter =
    .branch = Branch
    .foreign_permanent_residence = Foreign permanent resident ID card
    .go = Record the check and verify
    .hk_macao_permit = Mainland travel permit for Hong Kong and Macao residents
    .id_card = Resident ID card
    .last4 = Last 4 characters of the document number (as seen)
    .lead = Check the physical document in person. Only its type, last 4 characters and the branch are recorded, never the whole number.
    .passport = Passport
    .taiwan_permit = Mainland travel permit for Taiwan residents
    .title = Counter check
    .type = Document type

datamap =
    .at = Where
    .clean = No findings.
    .errors = errors
    .findings = Findings
    .fix = Fix
    .lead = The data map checked against the live schema of the platform's databases: missing tables and columns, uncovered references, columns that look like personal data (sampled).
    .message = Finding
    .severity = Severity
    .systems = Systems
    .tables = tables
    .unchecked = no readable schema, not checked

deadline =
    .acknowledge = Acknowledgement
    .completion = Completion
    .erasure_start = Erasure start
    .response = Response
    .review = Review

demo =
    .account = Demo Mart account id
    .app = Me · Settings
    .cancel = Cancel my account
    .lead = The demo platform: pick an account and press “Cancel my account” as in the app, to enter Lethe's cancellation centre.
    .phone = Registered phone number
    .recovery = Cannot sign in? Cancel through account recovery (a code goes to the registered phone)
    .signed_in = Signed in as account
    .signin = Sign in
    .signin_failed = The account id or phone number is wrong.
    .sms = Demo SMS:

drift =
    .accept = Accept (no change to the map)
    .accepted_by = Accepted by
    .banner = The platform's schema has drifted from the data map; the scheduled check found something new:
    .breaking = breaks erasure: erasure in this system waits until it is fixed
    .heading = Schema drift (scheduled check)
    .last_check = Last scheduled check
    .none = The scheduled check found nothing open.
    .reason = Reason (e.g. the column holds the courier's hotline, not the user's phone)
    .see = Review and resolve
    .state = State

drift-state =
    .accepted = accepted
    .open = open

dstatus =
    .late = met late
    .met = met
    .on_track = on track
    .overdue = overdue
    .paused = waiting for the user
    .unknown = unknown
    .warning = due soon

err =
    .title = Not done:

err-csrf =
    .body = This request did not come from this page, or the page is too old. Go back, reload the page and try again.
    .title = Request refused

event-case =
    .alternative_chosen = An alternative was chosen; the cancellation was withdrawn
    .approved = Approved by an agent
    .checks_blocked = Checks done: something blocks
    .checks_clear = Checks done: nothing blocks
    .checks_unavailable = The checks could not run
    .confirmed = Cancellation confirmed
    .consequence_acknowledged = A consequence acknowledged
    .deadline_extended = The response deadline was extended
    .erased = Data erased and verified; cancellation complete
    .erasure_failed = The erasure ran into a problem
    .erasure_retried = The erasure was retried
    .erasure_started = Cooling-off over; erasure started
    .identity_stepped_up = Identity verified at a higher level
    .identity_verified = Identity verified
    .rejected = Rejected
    .settlement_chosen = A settlement chosen for an asset
    .settlement_result = The platform settled an asset
    .submitted = Cancellation requested
    .withdrawn = Cancellation withdrawn; account kept

expired =
    .body = For your account's safety, a cancellation link works once and for 10 minutes. Go back to the app and open Settings › Account › Cancel account again.
    .title = This link has expired

export =
    .building = being built
    .copy = Copy of your data
    .deleted = deleted
    .download = Download the copy
    .downloaded = downloaded
    .downloading = downloading
    .expired = expired
    .failed = failed
    .lead = Once cancelled, the data cannot be recovered. You can first download a copy of your data (a ZIP with JSON and CSV). This step is optional.
    .next = Next
    .once = The link works once, until { $t }.
    .progress = Build progress
    .queued = queued
    .ready = ready
    .request = Make a copy of my data
    .title = Take a copy of your data

hotline =
    .go = Check and verify
    .id_number = ID number (as the caller says it)
    .lead = Ask the caller for the real name, the ID number and the registered phone number. They are compared with the platform's record by keyed hash; you never see the record, and a mismatch does not say which detail differs.
    .name = Name
    .phone = Registered phone number
    .title = Hotline identity check

job =
    .dead = failed, an operator will look
    .done = erased and verified
    .leased = erasing
    .ready = queued
    .waiting = waiting for the system

login =
    .go = Sign in
    .password = Password
    .title = Agent sign-in
    .totp = Authenticator code (TOTP)
    .totp_hint = The 6 digits shown by your authenticator app.
    .username = Username

next =
    .checks_blocked = Resolve the listed items, then check again.
    .checks_clear = Settle the assets and acknowledge each consequence.
    .consequences_acknowledged = Take a copy of your data if you wish, then confirm.
    .cooling_off = Erasure starts when the cooling-off period ends; until then you can restore the account.
    .erased = Done: the account is cancelled and the deletion receipt is ready.
    .erasing = Your data is being erased from each system and verified.
    .failed = The erasure could not finish; an operator will fix and retry it.
    .identity_verified = Next: the checks for blockers and assets.
    .rejected = The request was rejected; the reason is below.
    .settling = Your chosen refunds, withdrawals, transfers and unbindings are being carried out; the erasure starts when all are done.
    .submitted = Next: verify that it is you.
    .under_review = An agent is reviewing the request; you will be told the result.
    .withdrawn = The account was kept.

option =
    .forfeit = Give up
    .refund_pro_rata = Pro-rata refund
    .transfer = Transfer to another account
    .unbind = Unbind
    .withdraw = Withdraw to the original payment method

problem =
    .account-erased = This account was already cancelled; use the earlier deletion receipt as proof.
    .already-acknowledged = This was already acknowledged.
    .already-settled = This asset is already settled.
    .assurance = This step needs a stronger identity check (a face check, or an ID shown at a counter).
    .busy = The service is busy; try again in a moment.
    .checks-unavailable = The checks for blockers and assets cannot run right now; try again shortly. They are never skipped.
    .code = The code is wrong or has expired; enter it again or ask for a new one.
    .code-locked = Too many wrong codes; try again later.
    .export-gone = This copy of your data has expired or was deleted; ask for a new one.
    .export-in-use = The copy of your data is still being prepared; wait a moment.
    .identity-check-locked = Too many failed checks; try again later or contact support.
    .identity-mismatch = The details given do not match the platform's record; ask the caller again (which detail differs is not shown).
    .illegal-transition = This step is not possible in the case's current state; reload to see the latest.
    .internal = Something went wrong on our side; nothing you did was lost. Try again shortly.
    .method-disabled = This way of checking your identity is not available; choose another.
    .no-case = Start a cancellation first; until then, use the platform's own help.
    .not-found = This request cannot be found; enter again from the app.
    .open-case-exists = This account already has an open cancellation.
    .other = This did not work; reload the page and try again, or contact support.
    .rate-limited = Too many requests; try again in a moment.
    .receipt-not-verified = The deletion receipt does not verify: use the receipt exactly as this service issued it (the file, or the support link on its page).
    .receipt-tries-exhausted = Too many receipts from this address did not verify; try again later with the receipt exactly as this service issued it.
    .refused = This was not accepted; reload the page to see where things stand.
    .resend-too-soon = A code was just sent; wait a moment before asking again.
    .restore-needs-code = During cooling-off, restoring the account needs a verified code.
    .sms-gateway = The SMS cannot be sent right now; try again shortly.
    .sms-throttled = Too many codes were sent; try again later.
    .support-closed = The request is closed and its contact destroyed.
    .support-throttled = Too many requests: support is handling your earlier request; please wait for the answer.
    .throttled = Codes were asked for too often; try again later.
    .timeout = This took too long; try again shortly.
    .unavailable = The service is unavailable for a moment; try again shortly.
    .unknown-instruction = This settlement was already handled; reload the page.
    .validation = Something you entered is not valid; check it and try again.

problem-validation =
    .answer = Write the answer (1 to 2,000 characters).
    .asset_id = This asset is not on the list; reload the page and choose again.
    .branch = Give the branch where the ID was checked.
    .channel = Choose the channel.
    .code = The code is wrong or has expired; check the six digits in the latest text message, or ask for a new one.
    .consequence_id = This statement changed; reload the page and acknowledge it again.
    .contact = The contact must be a mobile number (11 digits, or + country code and number) or an email address.
    .from = The start date is not valid; write a date such as 2026-01-01.
    .last4 = The document does not match the account's real-name record.
    .message = Describe what happened (1 to 2,000 characters).
    .note = Say what was erased where (1 to 2000 characters).
    .option = Choose how this asset is settled.
    .receipt = The pasted text is not a deletion receipt (JSON).
    .records = Give the number of records erased.
    .to = The end date is not valid; write a date such as 2026-04-01.
    .topic = Choose a topic.
    .transfer_to = A transfer needs the account to transfer to (not this one).
    .understood = Tick the box to confirm that you understand the consequences.
    .version = This statement changed; reload the page and acknowledge it again.
    .why_none = With 0 records, say why there was nothing to erase (10 to 500 characters, no personal data).

progress =
    .cooling = Cooling-off period
    .cooling_body = The account is frozen. The cooling-off period ends at { $t }; then the erasure starts.
    .deadlines = Deadlines
    .failed = The erasure ran into a problem; an operator has been alerted and will retry. Nothing for you to do.
    .review = Your request is being reviewed by an agent (within 3 working days).
    .settling = The cooling-off period has ended and the cancellation is final: the platform is carrying out the refunds, withdrawals, transfers and unbindings you chose; the erasure starts when all are done. If one could not be carried out, choose again below.
    .settling_title = Settling your assets
    .systems = Erasure in each system
    .timeline = What has happened
    .title = Progress

queue =
    .calendar_ends = The working-day calendar (the State Council's holiday notice) ends soon; deadlines after it are provisional (weekends and statutory holidays only) until calendar_file adds next year. Covered until
    .case = Case
    .channel = Channel
    .claims = Real-name disputes
    .deadline = Deadline
    .empty = Nothing here.
    .instructions = Instructions
    .left = Time left
    .new = New
    .open = Open the case
    .open_case = Open a case for a caller or visitor
    .overdue = Overdue
    .platform = Platform
    .review = In review
    .state = State
    .subject = Platform account id
    .system = System
    .tasks = Manual tasks

receipt =
    .lead = Your account is cancelled and its data erased and verified in every system. The deletion receipt is signed and can be verified by anyone.
    .open = Open the deletion receipt
    .title = Cancellation complete

report =
    .by_channel = By channel
    .by_outcome = By outcome
    .cases = Cases
    .deadlines = Deadlines met
    .from = From
    .go = Make the report
    .late = Late
    .on_time = On time
    .open_overdue = Open, overdue
    .p50 = Median duration
    .p90 = 90th percentile
    .rows = Rows erased
    .signed = The report is signed with the audit key:
    .to = To (exclusive)
    .verified = Systems verified
    .with_due = With a due date

restore =
    .done = Your account is restored
    .done_body = The cancellation was withdrawn and the account unfrozen; use it as before.
    .early = These were settled before you confirmed, as the platform requires, and restoring the account does not undo them:
    .go = Restore my account
    .lead = Changed your mind? Get a code and enter it: one step restores the account.
    .settlements = Nothing you chose to settle when the cooling-off period ends was carried out: your balance, points, coupons and auto-renewal are as they were.
    .settlements_title = Your assets
    .title = Restore the account

retain =
    .for = { $n } days

review =
    .approve = Approve
    .decision = Decision
    .go = Submit the decision
    .reason = Reason (needed to reject; the user reads it)
    .reject = Reject
    .title = Review

role =
    .admin = admin
    .agent = agent
    .auditor = auditor
    .reviewer = reviewer

settle =
    .chosen = chosen; carried out when the cooling-off period ends
    .done = done
    .failed = failed, choose again
    .forfeited = given up
    .pending = in progress

severity =
    .error = error
    .warning = warning

signout =
    .body = You have signed out of the cancellation centre. Your case is unchanged; to go on, enter again from the app.
    .button = Sign out
    .title = Signed out

start =
    .alternatives = Perhaps all you need is
    .choose = Choose this
    .go = Continue to cancel
    .lead = Cancelling deletes the account and its personal data for good. Before you start, see whether something else would suit you better.
    .title = Cancel your account
    .what = How cancelling works
    .what1 = Verify that it is you (a text-message code).
    .what2 = Check for unfinished orders, settle balances, points and memberships, and acknowledge each consequence.
    .what3 = Take a copy of your data if you wish; after you confirm, a { $n }-day cooling-off period lets you restore in one step.
    .what4 = Then the data is erased and you receive a signed deletion receipt.

state =
    .checks_blocked = Blocked
    .checks_clear = Settle and acknowledge
    .consequences_acknowledged = Ready to confirm
    .cooling_off = Cooling-off
    .erased = Cancelled
    .erasing = Erasing
    .failed = Erasure failed
    .identity_verified = Identity verified
    .rejected = Rejected
    .settling = Settling
    .submitted = Submitted
    .under_review = In review
    .withdrawn = Withdrawn

step =
    .assets = Assets
    .confirm = Confirm
    .consequences = Consequences
    .export = Export
    .progress = Progress
    .receipt = Receipt
    .restore = Restore
    .start = Start
    .verify = Verify

support =
    .answer = Answer
    .answer_label = Your answer (sent to the one-time contact the holder left)
    .answer_send = Send the answer
    .answered = The answer was sent.
    .asset = Asset
    .case = The case
    .close = Close and destroy the contact
    .close_hint = Closing destroys the holder's contact, message and answer with their key; they cannot be recovered.
    .closed = Closed; the contact is destroyed.
    .contact = One-time contact (mobile number or email)
    .contact_destroyed = Destroyed
    .contact_hint = Used only to answer this request and destroyed when it closes; never linked to the erased account.
    .contact_hint_live = Used only to answer this request, and destroyed when it closes.
    .done = Request received
    .done_lead = Support has your request and will answer through the contact you left, within the time limit.
    .done_next = Once answered, the request is closed and your contact destroyed with it. If you contact support again, quote the request number above.
    .due = Answer due
    .due_by = Answered by the end of
    .due_hint = Support answers within { $n } working days (by the State Council holiday calendar).
    .entry = Contact support
    .expired = The form expired; check your entries and send it again.
    .expired_lead = Your sign-in has ended. Sign in again to contact support from any page of the cancellation centre; if the account is already erased, contact support with your deletion receipt.
    .expired_link = Contact support with a deletion receipt
    .instruction = Instruction
    .lead = Even after the account is gone, someone still answers: a refund that never arrived, a dispute over a settlement, data still showing — contact support with your deletion receipt, no account needed.
    .lead_account = A question before you start? For example what happens to your balance, points or coupons. Support answers at the contact you leave; the request carries no account details.
    .lead_live = A question about this cancellation? Support handles anything about it.
    .message = What happened
    .no_case = Asked before any cancellation was started: no case is linked.
    .no_settlements = The case had nothing to settle.
    .opened = Opened
    .option = Option
    .origin = Opened from
    .queue_empty = No support request is waiting.
    .queue_lead = Includes requests former holders opened with their receipt; soonest due first.
    .receipt = Deletion receipt (paste the whole receipt JSON)
    .receipt_digest = Receipt digest
    .receipt_hint = The receipt's signature must verify and be the one this service issued.
    .receipt_linked = Your deletion receipt was recognised from its link.
    .receipt_open = Open the receipt
    .reference = Reference
    .request = Request
    .resend = Send again
    .resent = Settlement instruction sent again with its idempotency key:
    .send = Send the request
    .sent_live = Request sent; support will answer through the contact you left.
    .settlements = Settlements
    .title = Support after cancellation
    .topic = Topic

support-origin =
    .account = Cancellation centre (no case yet)
    .live = Cancellation centre (case live)
    .receipt = Deletion receipt (account erased)

support-state =
    .answered = Answered
    .closed = Closed
    .open = Open

support-topic =
    .data_still_visible = Data still visible
    .export_problem = Export problem
    .other = Other
    .refund_not_received = Refund not received
    .settlement_dispute = Settlement dispute

task =
    .complete = Mark as done
    .done = Complete
    .note = What was done (no personal data)
    .records = Records erased by hand
    .why_none = If 0: why there was nothing to erase (no personal data)

time =
    .overdue = overdue by

tr =
    .all_platforms = All platforms
    .checkpoint = Checkpoint (C2SP signed note)
    .closed = Closed
    .consistency = Consistency proof
    .cosignatures = Witness cosignatures
    .download = Download
    .history = Published tree heads
    .json = Signed JSON
    .key = Public key
    .kind = Kind
    .latest = Latest signed tree head
    .lead = No sign-in needed: anyone can check this platform's cancellation and erasure record here — the audit log's signed tree heads, its public key, consistency proofs between heads, and the data deletion compliance reports published and signed each month.
    .monitor_hint = A third party can watch the log for rewrites and rollbacks with:
    .no_cosignatures = No witness has cosigned yet.
    .no_head = The audit log has no signed tree head yet.
    .no_reports = No report published yet; last month's report is published at the start of each month.
    .origin = Log origin
    .overdue = Open cases past a deadline
    .period = Period
    .platform = Platform
    .read = Read
    .report = Data deletion compliance report
    .reports = Compliance reports
    .root = Root hash
    .signature = Signature
    .signed_at = Signed at
    .size = Events
    .summary = Summary
    .tables = Tables
    .threshold_hint = Reports carry aggregate figures only; counts from 1 to below { $n } are shown as "< { $n }" so that no one can be singled out.
    .title = Transparency and compliance
    .withheld = withheld
    .withheld_hint = A "withheld" figure is not small, but shown it would let a reader subtract it from its group's total and work out a count below the threshold (secondary suppression); the platforms' reports and the installation's are published together so that none can be subtracted from another either.
    .witnesses = Witnesses

tr-kind =
    .monthly = Monthly
    .on-demand = On demand

verify =
    .code = 6-digit code
    .go = Verify
    .hint = The code is valid for{" "}
    .hint_end = {" "}minutes.
    .lead = To make sure it is you, we send a code to the phone number registered on the account.
    .other = No longer have that phone number? Call the hotline, or bring your ID to a service counter.
    .send = Send me a code
    .sms = Text-message code
    .title = Verify that it is you
