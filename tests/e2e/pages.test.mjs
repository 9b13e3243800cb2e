// Lethe's pages in real headless Chromium (Debian's chromium driven by
// playwright-core), against the real `lethe demo` binary:
//   - a full self-service cancellation, from the platform's app to the
//     signed receipt, with live progress over server-sent events;
//   - a restore during cooling-off;
//   - an agent's hotline case in the console (TOTP sign-in);
// and every page checked by axe-core (no serious or critical violation).
//
// LETHE_BIN names the binary (default target/debug/lethe); SCREENSHOT_DIR,
// when set, receives a screenshot of each main page (docs/screenshots).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { createHmac } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const AXE = fs.readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const ROOT = path.resolve(import.meta.dirname, "..", "..");
const BIN = path.resolve(ROOT, process.env.LETHE_BIN || "target/debug/lethe");
const SHOTS = process.env.SCREENSHOT_DIR ? path.resolve(ROOT, process.env.SCREENSHOT_DIR) : null;
const MOBILE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 1, isMobile: true, hasTouch: true };
const DESKTOP = { viewport: { width: 1280, height: 900 } };

let demo, browser;
const checked = []; // pages that passed axe
let supportHref = null; // the receipt's support link (first test)

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

async function startDemo() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lethe-e2e-"));
  const port = 20000 + Math.floor(Math.random() * 20000);
  const ready = path.join(dir, "ready.json");
  const proc = spawn(BIN, ["demo", "--data-dir", dir, "--listen", `127.0.0.1:${port}`, "--users", "200", "--ready-file", ready],
    { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, RUST_LOG: "warn" } });
  let stderr = "";
  proc.stderr.on("data", (d) => { stderr += d; });
  for (let i = 0; i < 600; i++) {
    if (fs.existsSync(ready)) {
      try {
        const r = JSON.parse(fs.readFileSync(ready, "utf8"));
        return { ...r, dir, proc };
      } catch { /* being written */ }
    }
    if (proc.exitCode !== null) throw new Error(`lethe demo exited: ${stderr}`);
    await sleep(100);
  }
  throw new Error(`lethe demo did not start: ${stderr}`);
}

async function api(method, p, body) {
  const r = await fetch(demo.url + p, {
    method,
    headers: {
      authorization: `Bearer ${demo.api_key}`,
      "content-type": "application/json",
      "idempotency-key": crypto.randomUUID(),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

// axe-core in the page (evaluated, so the page's own CSP stays on), and no
// console error such as a CSP violation.
async function axeCheck(page, name) {
  await page.evaluate(AXE);
  const res = await page.evaluate(async () =>
    // eslint-disable-next-line no-undef
    await axe.run(document, { resultTypes: ["violations"] }));
  const bad = res.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(
    bad.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`),
    [],
    `axe on ${name}`,
  );
  // No template leaks an empty value as a word.
  const text = await page.locator("body").innerText();
  assert.doesNotMatch(text, /\b(None|undefined|NaN)\b/, `a missing value shows as text on ${name}`);
  checked.push(name);
}

async function shot(page, name) {
  if (!SHOTS) return;
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

function watchConsole(page, errors) {
  // Error answers the test provokes (a wrong code) are logged by the
  // browser as failed loads; everything else (a CSP violation, a script
  // error) is a failure.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(String(e)));
}

async function newPage(opts) {
  const ctx = await browser.newContext({ ...opts, acceptDownloads: true });
  const page = await ctx.newPage();
  page.errors = [];
  watchConsole(page, page.errors);
  return page;
}

// The code from the demo's SMS shown on the page (demo mode only).
async function smsCode(page) {
  const t = await page.locator("#dev-sms").textContent();
  const m = t.match(/验证码 (\d{6})/);
  assert.ok(m, `a code in the demo SMS: ${t}`);
  return m[1];
}

// The platform's app hands its signed-in user over to the centre.
// Demo Mart's phone numbers are derived from the account id.
function demoPhone(subject) {
  return "139" + String((subject * 7919) % 100000000).padStart(8, "0");
}

async function enterFromApp(page, subject, channel = "app") {
  await page.goto(`${demo.url}/demo-platform/app`);
  if (channel === "app") {
    // The app hands over only the account signed in to it.
    if ((await page.locator("#sign-in").count()) > 0) {
      await page.fill("#subject", String(subject));
      await page.fill("#phone", demoPhone(subject));
      await Promise.all([page.waitForURL(/\/demo-platform\/app$/), page.click("#sign-in")]);
    }
    await Promise.all([page.waitForURL(/\/u\/$/), page.click("#cancel-account")]);
  } else {
    await page.fill("#rec-subject", String(subject));
    await Promise.all([page.waitForURL(/\/u\/$/), page.click("#cancel-recovery")]);
  }
}

async function verifyBySms(page) {
  await page.click("#send-code");
  await page.fill("#code", await smsCode(page));
  await page.click("#verify");
}

// Settles every asset (forfeit where offered, else the first option; a
// subscription gets its pro-rata refund), then acknowledges every
// consequence; returns once the export step shows.
async function settleAndAcknowledge(page, { shots = false } = {}) {
  await page.click("#run-checks");
  await page.waitForSelector("h1");
  if (shots) { await axeCheck(page, "assets"); await shot(page, "03-assets"); }
  for (let i = 0; i < 10; i++) {
    const form = page.locator('form[action="/u/do/settle"]').first();
    if ((await form.count()) === 0) break;
    const refund = form.locator('input[value="refund_pro_rata"]');
    const forfeit = form.locator('input[value="forfeit"]');
    if (await refund.count()) await refund.check();
    else if (await forfeit.count()) await forfeit.check();
    else await form.locator('input[type="radio"]').first().check();
    await form.locator('button[type="submit"]').click();
    await page.waitForLoadState("load");
  }
  // A refund goes to the platform and comes back; the page follows live.
  await page.waitForSelector("button.ack", { timeout: 30000 });
  if (shots) { await axeCheck(page, "consequences"); await shot(page, "04-consequences"); }
  for (let i = 0; i < 20; i++) {
    const ack = page.locator("button.ack").first();
    if ((await ack.count()) === 0) break;
    await ack.click();
    await page.waitForLoadState("load");
  }
  await page.waitForSelector("#to-confirm", { timeout: 30000 });
}

before(async () => {
  demo = await startDemo();
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
});

after(async () => {
  if (browser) await browser.close();
  if (demo) { demo.proc.kill("SIGTERM"); fs.rmSync(demo.dir, { recursive: true, force: true }); }
});

test("a full self-service cancellation, live to the signed receipt", async () => {
  const page = await newPage(MOBILE);
  await enterFromApp(page, 1);
  // 1. start, with the alternatives
  assert.equal(await page.locator("html").getAttribute("lang"), "zh-CN");
  assert.match(await page.locator("h1").textContent(), /注销账号/);
  assert.equal(await page.locator('form[action="/u/do/alternative"]').count(), 3);
  await axeCheck(page, "start");
  await shot(page, "01-start");
  // English switch, and back.
  await page.click('a[lang="en"]');
  assert.match(await page.locator("h1").textContent(), /Cancel your account/);
  assert.equal(await page.locator("html").getAttribute("lang"), "en");
  await axeCheck(page, "start (en)");
  await shot(page, "01-start-en");
  await page.click('a[lang="zh-CN"]');
  await page.click("#start");
  // 2. verify
  assert.match(await page.locator("h1").textContent(), /核验身份/);
  await page.click("#send-code");
  await axeCheck(page, "verify");
  await shot(page, "02-verify");
  // A wrong code is refused with a clear message, and nothing is lost.
  await page.fill("#code", "000000");
  await page.click("#verify");
  assert.match(await page.locator("#form-error").textContent(), /验证码/);
  await page.fill("#code", await smsCode(page));
  await page.click("#verify");
  // 3-4. blockers and assets, consequences
  await settleAndAcknowledge(page, { shots: true });
  // 5. export: a copy, built live, downloaded and verified
  await axeCheck(page, "export");
  await shot(page, "05-export");
  await page.click("#request-export");
  await page.waitForSelector("#download", { timeout: 60000 });
  const [dl] = await Promise.all([page.waitForEvent("download"), page.click("#download")]);
  const zip = path.join(demo.dir, "copy.zip");
  await dl.saveAs(zip);
  const verify = execFileSync(BIN, ["export", "verify", zip], { encoding: "utf8" });
  assert.match(verify, /ok|verified/i);
  // 6. confirm (the box must be ticked)
  await page.click("#to-confirm");
  assert.match(await page.locator("h1").textContent(), /确认注销/);
  // What is kept is named for the reader, once, with the reason in Chinese.
  const confirmText = await page.locator("main").textContent();
  assert.equal(confirmText.split("依法保留的信息").length - 1, 1, "one heading for kept data");
  assert.match(confirmText, /退款记录/);
  assert.match(confirmText, /会计档案/);
  assert.doesNotMatch(confirmText, /settlement_log|Refunds are accounting/);
  await axeCheck(page, "confirm");
  await shot(page, "06-confirm");
  await page.check("#understood");
  await page.click("#confirm");
  // 7. progress: cooling-off, with restore offered
  await page.waitForSelector("#restore");
  assert.match(await page.locator(".badge").first().textContent(), /冷静期/);
  await axeCheck(page, "progress");
  await shot(page, "07-progress");
  // The cooling-off ends (the demo's clock moves 7 days): the page follows
  // by itself over server-sent events, without a reload.
  await page.evaluate(() => { window.__sameDocument = true; });
  const adv = await api("POST", "/v1/dev/clock/advance", { seconds: 7 * 86400 + 60 });
  assert.equal(adv.status, 200);
  await page.waitForSelector("#receipt", { timeout: 90000 });
  assert.equal(await page.evaluate(() => window.__sameDocument), true, "updated live, not reloaded");
  // 9. receipt
  await axeCheck(page, "receipt");
  await shot(page, "09-receipt");
  await page.click("#receipt");
  const text = await page.locator("body").textContent();
  assert.match(text, /signature|签名/i);
  await axeCheck(page, "receipt document");
  await shot(page, "09-receipt-document");
  // The receipt carries its support link (case id and signature).
  supportHref = await page.locator("#support-link").getAttribute("href");
  // Absolute: a saved copy of the receipt page still leads to support.
  assert.match(supportHref, /^http:\/\/127\.0\.0\.1:\d+\/support\?case=[0-9a-f-]{36}&sig=[A-Za-z0-9_-]+$/);
  assert.deepEqual(page.errors, [], "no console errors (CSP violations included)");
});

test("a restore during cooling-off", async () => {
  const page = await newPage(MOBILE);
  await enterFromApp(page, 4, "recovery");
  await page.click("#start");
  await verifyBySms(page);
  await settleAndAcknowledge(page);
  await page.click("#to-confirm");
  await page.check("#understood");
  await page.click("#confirm");
  await page.waitForSelector("#restore");
  // One verified step restores the account.
  await page.locator("#restore #send-code").click();
  await page.fill("#code", await smsCode(page));
  await shot(page, "08-restore");
  await page.click("#restore-go");
  assert.match(await page.locator("h1").textContent(), /账号已恢复/);
  // What happened to the chosen settlements: nothing was carried out.
  if (await page.locator("#not-settled").count()) {
    assert.match(await page.locator("#not-settled").textContent(), /均未执行/);
  }
  await axeCheck(page, "restored");
  await shot(page, "08-restored");
  // The hand-off link works once.
  const link = await api("POST", "/v1/handoffs", { subject_id: "4", channel: "app" });
  assert.equal(link.status, 201);
  const fresh = await newPage(MOBILE);
  await fresh.goto(link.body.url);
  assert.match(fresh.url(), /\/u\/$/);
  const again = await newPage(MOBILE);
  const r = await again.goto(link.body.url);
  assert.equal(r.status(), 401);
  // Signed out, support is still a click away (with the receipt).
  assert.equal(await again.locator("#support-link").getAttribute("href"), "/support");
  await axeCheck(again, "expired link");
  // A form posted without the page's token is refused.
  const forged = await fresh.evaluate(async () => {
    const r = await fetch("/u/do/start", { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "_csrf=forged" });
    return r.status;
  });
  assert.equal(forged, 403);
  assert.deepEqual(page.errors, []);
});

test("an account with an unfinished order is told what blocks it", async () => {
  // Demo Mart's user 3 has an order being shipped.
  const page = await newPage(MOBILE);
  await enterFromApp(page, 3);
  await page.click("#start");
  await verifyBySms(page);
  await page.click("#run-checks");
  await page.waitForSelector(".blocked");
  const text = await page.locator(".blocked").textContent();
  assert.match(text, /订单|order/);
  assert.equal(await page.locator('form[action="/u/do/settle"]').count(), 0, "nothing to settle while blocked");
  await axeCheck(page, "blocked");
  await shot(page, "03-blocked");
  assert.deepEqual(page.errors, []);
});

function totp(secretB32, step = Math.floor(Date.now() / 30000)) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of secretB32.replace(/=+$/, "")) bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(step));
  const h = createHmac("sha1", Buffer.from(bytes)).update(msg).digest();
  const o = h[h.length - 1] & 0xf;
  const n = ((h[o] & 0x7f) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3];
  return String(n % 1_000_000).padStart(6, "0");
}

function createAgent(username, role) {
  const cfg = path.join(demo.dir, `agent-${username}.toml`);
  fs.writeFileSync(cfg, `data_dir = "${demo.dir}"\ndatamap = "${path.join(demo.dir, "datamap.toml")}"\n`);
  const out = execFileSync(BIN, ["agent", "create", "--config", cfg, "--username", username, "--role", role], {
    encoding: "utf8",
    env: { ...process.env, DEMO_MART_URL: `sqlite://${path.join(demo.dir, "demo-mart.db")}` },
  });
  const password = out.match(/^password: (.+)$/m)[1];
  const secret = out.match(/secret=([A-Z2-7]+)/)[1];
  return { password, secret };
}

// What the caller says on the phone: the platform's own record (Demo Mart).
function callerDetails(id) {
  const py = `import sqlite3,json,sys
c=sqlite3.connect(sys.argv[1])
r=c.execute("SELECT r.legal_name, r.id_number, u.phone FROM users u JOIN real_names r ON r.user_id=u.id WHERE u.id=?", (int(sys.argv[2]),)).fetchone()
print(json.dumps(r))`;
  const [name, idNumber, phone] = JSON.parse(execFileSync("python3", ["-c", py, path.join(demo.dir, "demo-mart.db"), String(id)], { encoding: "utf8" }));
  return { name, idNumber, phone };
}

test("an agent's hotline case in the console", async () => {
  const page = await newPage(DESKTOP);
  const agent = createAgent("hotline.li", "agent");
  await page.goto(`${demo.url}/console/`);
  assert.match(page.url(), /\/console\/login$/);
  await axeCheck(page, "console login");
  await shot(page, "10-console-login");
  // A wrong code is refused.
  await page.fill("#username", "hotline.li");
  await page.fill("#password", agent.password);
  await page.fill("#totp", totp(agent.secret, Math.floor(Date.now() / 30000) + 20));
  await page.click("#login");
  assert.ok(await page.locator("#form-error").count());
  await page.fill("#password", agent.password);
  await page.fill("#totp", totp(agent.secret));
  await page.click("#login");
  await page.waitForURL(/\/console\/$/);
  // Queues, each case with its countdown.
  assert.match(await page.locator("#q-new-h").textContent(), /新案件/);
  // Open a hotline case for a caller.
  await page.fill("#subject_id", "5");
  await page.selectOption("#channel", "hotline");
  await page.click("#open-case");
  await page.waitForURL(/\/console\/cases\/[0-9a-f-]{36}$/);
  const caseId = page.url().split("/").pop();
  assert.match(await page.locator("#case-state").textContent(), /已提交/);
  await axeCheck(page, "console case");
  // The caller gives a wrong detail: refused without saying which.
  const who = callerDetails(5);
  await page.fill("#h-name", who.name);
  await page.fill("#h-id", who.idNumber);
  await page.fill("#h-phone", "13900000000");
  await page.click("#hotline-verify");
  assert.match(await page.locator("#form-error").textContent(), /do not match|不一致|match/);
  // Right details: identity verified at phone assurance, by the agent.
  await page.fill("#h-name", who.name);
  await page.fill("#h-id", who.idNumber);
  await page.fill("#h-phone", who.phone);
  await page.click("#hotline-verify");
  await page.waitForSelector("#case-state");
  assert.match(await page.locator("#case-state").textContent(), /身份已核验/);
  const timeline = await page.locator("#timeline").textContent();
  assert.match(timeline, /agent:ag_/);
  assert.match(timeline, /identity_verified/);
  await shot(page, "11-console-case");
  // The queue lists the case with a countdown to its deadline.
  await page.goto(`${demo.url}/console/`);
  const row = page.locator(`a[href="/console/cases/${caseId}"]`).first();
  assert.ok(await row.count());
  assert.ok(await page.locator("[data-countdown]").count());
  await axeCheck(page, "console queues");
  await shot(page, "12-console-queues");
  // The caller continues in the app: the centre opens the agent's case at
  // the checks.
  const user = await newPage(MOBILE);
  await enterFromApp(user, 5);
  assert.ok(await user.locator("#run-checks").count(), "the agent's case continues at the checks");
  // Data-map check and the compliance report.
  await page.goto(`${demo.url}/console/datamap`);
  assert.match(await page.locator("h1").textContent(), /数据地图/);
  await axeCheck(page, "data-map check");
  await shot(page, "13-console-datamap");
  const auditor = createAgent("audit.wang", "auditor");
  const ap = await newPage(DESKTOP);
  await ap.goto(`${demo.url}/console/login`);
  await ap.fill("#username", "audit.wang");
  await ap.fill("#password", auditor.password);
  await ap.fill("#totp", totp(auditor.secret));
  await ap.click("#login");
  await ap.waitForURL(/\/console\/$/);
  await ap.goto(`${demo.url}/console/report`);
  assert.match(await ap.locator("#report-cases").textContent(), /\d+/);
  await axeCheck(ap, "compliance report");
  await shot(ap, "14-console-report");
  // Pages are served with a strict Content-Security-Policy.
  const head = await ap.goto(`${demo.url}/console/report`);
  assert.match(head.headers()["content-security-policy"], /script-src 'self'/);
  // Signing out ends the session on the server.
  await page.goto(`${demo.url}/console/`);
  await page.click('form[action="/console/logout"] button');
  await page.waitForURL(/\/console\/login$/);
  await page.goto(`${demo.url}/console/cases/${caseId}`);
  assert.match(page.url(), /\/console\/login$/);
  assert.deepEqual(page.errors, []);
  assert.deepEqual(ap.errors, []);
});

test("a real-name dispute reviewed with the document viewer", async () => {
  // A person whose ID was used by someone else files a claim with an image
  // of their ID card (drawn here, 320x200).
  const draw = await newPage({ viewport: { width: 320, height: 200 } });
  await draw.setContent('<div style="width:320px;height:200px;background:#dbe7f3;font:20px sans-serif;padding:16px">居民身份证 · ID card (specimen)</div>');
  const png = await draw.screenshot();
  const who = callerDetails(7);
  const claim = await api("POST", "/v1/claims", {
    id_number: who.idNumber,
    documents: [{ kind: "id_front", content_base64: png.toString("base64") }],
  });
  assert.equal(claim.status, 201, JSON.stringify(claim.body));
  const reviewer = createAgent("review.zhao", "reviewer");
  const page = await newPage(DESKTOP);
  await page.goto(`${demo.url}/console/login`);
  await page.fill("#username", "review.zhao");
  await page.fill("#password", reviewer.password);
  await page.fill("#totp", totp(reviewer.secret));
  await page.click("#login");
  await page.waitForURL(/\/console\/$/);
  await page.click(`a[href="/console/claims/${claim.body.id}"]`);
  const img = page.locator("ul.docs img").first();
  await img.waitFor();
  assert.ok(await img.evaluate((i) => i.complete && i.naturalWidth === 320), "the document image loads");
  await page.click('button[data-zoom="1.25"]');
  assert.equal(await img.evaluate((i) => i.getBoundingClientRect().width), 400, "zoomed to 125 %");
  await page.click('button[data-rotate="90"]');
  assert.match(await img.getAttribute("style"), /rotate\(90deg\)/);
  await axeCheck(page, "dispute review");
  await shot(page, "15-console-dispute");
  await page.check("#c-reject");
  await page.fill("#c-reason", "证件照片无法辨认，请重新提交清晰照片。");
  await page.click('form[action$="/decision"] button[type="submit"]');
  await page.waitForSelector(".badge");
  assert.match(await page.locator(".status .badge").textContent(), /rejected|closed|decided/);
  assert.deepEqual(page.errors, []);
});

test("support after erasure: the holder asks with the receipt, an agent answers and closes", async () => {
  assert.ok(supportHref, "the first test left the receipt's support link");
  // No account, no session: the receipt's link is enough.
  const holder = await newPage(MOBILE);
  await holder.goto(supportHref);
  assert.match(await holder.locator("h1").textContent(), /注销后客服支持/);
  assert.ok(await holder.locator("#receipt-linked").count(), "the receipt is recognised from its link");
  // The language switch keeps the receipt's link.
  await holder.click('a[lang="en"]');
  assert.match(await holder.locator("h1").textContent(), /Support after cancellation/);
  assert.ok(await holder.locator("#receipt-linked").count(), "still linked after switching language");
  await holder.click('a[lang="zh-CN"]');
  await axeCheck(holder, "support form");
  await shot(holder, "16-support-form");
  // Bad input is refused with the field named, and nothing is lost.
  await holder.check("#topic-refund_not_received");
  await holder.fill("#support-message", "退款一直没有到账。");
  await holder.fill("#support-contact", "not-a-contact");
  await holder.click("#support-send");
  assert.match(await holder.locator("#form-error").textContent(), /contact|联系方式|手机|mobile/i);
  assert.equal(await holder.locator("#support-message").inputValue(), "退款一直没有到账。");
  await holder.fill("#support-contact", "13812345678");
  await holder.click("#support-send");
  const reqId = (await holder.locator("#support-id").textContent()).trim();
  assert.match(reqId, /^sup_[0-9a-f]{32}$/);
  await axeCheck(holder, "support sent");
  await shot(holder, "17-support-sent");
  // The agent's queue, the request with the case's record, the answer.
  const agent = createAgent("care.zhao", "agent");
  const page = await newPage(DESKTOP);
  await page.goto(`${demo.url}/console/login`);
  await page.fill("#username", "care.zhao");
  await page.fill("#password", agent.password);
  await page.fill("#totp", totp(agent.secret));
  await page.click("#login");
  await page.waitForURL(/\/console\/$/);
  await page.goto(`${demo.url}/console/support`);
  assert.ok(await page.locator(`a[href="/console/support/${reqId}"]`).count(), "the request is queued");
  assert.ok(await page.locator("#support-queue [data-countdown]").count(), "with a countdown");
  await axeCheck(page, "support queue");
  await shot(page, "18-console-support-queue");
  await page.click(`a[href="/console/support/${reqId}"]`);
  assert.match(await page.locator("#support-message-text").textContent(), /退款一直没有到账/);
  assert.doesNotMatch(await page.locator("main").textContent(), /13812345678/, "the agent sees a hint only");
  assert.match(await page.locator("#support-timeline").textContent(), /support\.opened/);
  await axeCheck(page, "support request");
  await shot(page, "19-console-support");
  // The case's receipt, as its holder got it, one click away.
  const receiptHref = await page.locator("#support-receipt-link").getAttribute("href");
  const rp = await newPage(DESKTOP);
  await rp.context().addCookies(await page.context().cookies());
  const rr = await rp.goto(demo.url + receiptHref);
  assert.equal(rr.status(), 200);
  assert.match(await rp.locator("body").textContent(), /Proof|证明/);
  await page.fill("#support-answer", "退款已于今日重新发起，请留意到账。");
  await page.click("#support-answer-send");
  assert.match(await page.locator("#support-notice").textContent(), /答复已发送/);
  await page.click("#support-close");
  assert.match(await page.locator("#support-state").textContent(), /已结案/);
  assert.doesNotMatch(await page.locator("main").textContent(), /退款一直没有到账/, "the texts are destroyed");
  // Before erasure: every case page of the centre has the entry.
  const user = await newPage(MOBILE);
  await enterFromApp(user, 6);
  // The start page too (no case yet): a question before cancelling.
  await user.click("#support summary");
  await user.check("#topic-other");
  await user.fill("#support-message", "注销后优惠券还能用吗？");
  await user.fill("#support-contact", "13900001111");
  await user.click("#support-live-send");
  assert.ok(await user.locator("#support-sent").count());
  await axeCheck(user, "support (start page)");
  await user.click("#start");
  await user.click("#support summary");
  await user.check("#topic-other");
  await user.fill("#support-message", "我想确认注销后积分如何处理。");
  await user.fill("#support-contact", "li.lei@example.com");
  await user.click("#support-live-send");
  assert.ok(await user.locator("#support-sent").count());
  await axeCheck(user, "support (live case)");
  assert.deepEqual(holder.errors, []);
  assert.deepEqual(page.errors, []);
  assert.deepEqual(user.errors, []);
});

test("the public transparency page and a published report, without credentials", async () => {
  const page = await newPage(DESKTOP);
  await page.goto(`${demo.url}/transparency`);
  assert.match(await page.locator("h1").textContent(), /透明度与合规/);
  assert.ok(await page.locator("#tr-report-list a").count(), "last month's report is listed");
  await axeCheck(page, "transparency");
  await shot(page, "20-transparency");
  await page.goto(`${demo.url}/transparency?lang=en`);
  assert.match(await page.locator("h1").textContent(), /Transparency and compliance/);
  await axeCheck(page, "transparency (en)");
  await page.locator("#tr-report-list a").first().click();
  assert.match(await page.locator("h1").textContent(), /compliance report/);
  assert.match(await page.locator("#trr-cases").textContent(), /^(\d+|< \d+)$/);
  await axeCheck(page, "published report");
  await shot(page, "21-transparency-report");
  assert.deepEqual(page.errors, []);
});

test("every page was checked by axe-core", () => {
  for (const p of ["start", "start (en)", "blocked", "expired link", "receipt document", "verify", "assets", "consequences", "export", "confirm", "progress", "receipt",
    "restored", "console login", "console queues", "console case", "data-map check", "compliance report", "dispute review",
    "support form", "support sent", "support queue", "support request", "support (start page)", "support (live case)", "transparency", "transparency (en)", "published report"]) {
    assert.ok(checked.includes(p), `axe ran on ${p}`);
  }
});
