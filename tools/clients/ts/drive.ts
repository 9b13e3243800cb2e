// A whole cancellation through the client generated from Lethe's OpenAPI
// document, against the demo: open, verify by SMS code (read from the dev
// outbox), checks, acknowledgements, settlements, confirm, clock, receipt.
// A Standard Webhooks receiver verifies the notifications Lethe sends.
import createClient from "openapi-fetch";
import type { paths } from "./gen/schema.js";
import { Webhook } from "standardwebhooks";
import http from "node:http";
import { randomUUID } from "node:crypto";

const env = (k: string): string => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const lethe = createClient<paths>({
  baseUrl: env("LETHE_URL"),
  headers: { Authorization: `Bearer ${env("LETHE_KEY")}` },
});
const idem = () => ({ "Idempotency-Key": randomUUID() });
const fail = (what: string, e: unknown): never => {
  throw new Error(`${what}: ${JSON.stringify(e)}`);
};

// The platform's webhook receiver: verifies every delivery's signature.
const hook = new Webhook(env("HOOK_SECRET"));
const received: string[] = [];
let refused = 0;
const server = http.createServer((req, res) => {
  let body = "";
  req.on("data", (c) => (body += c));
  req.on("end", () => {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) headers[k] = String(v);
    try {
      const msg = hook.verify(body, headers) as { type: string };
      received.push(msg.type);
      // A forged copy (one byte changed) must not verify.
      try {
        hook.verify(body.replace("}", " }"), headers);
        refused = -1;
      } catch {
        refused += 1;
      }
      res.writeHead(204).end();
    } catch (e) {
      res.writeHead(401).end(String(e));
    }
  });
});
await new Promise<void>((ok) => server.listen(Number(env("HOOK_PORT")), "127.0.0.1", ok));

const subject = env("SUBJECT");
const created = await lethe.POST("/v1/cases", {
  params: { header: idem() },
  body: { subject_id: subject, channel: "app" },
});
const id = created.data?.id ?? fail("createCase", created.error);

let r = await lethe.POST("/v1/cases/{id}/verification/sms/send", {
  params: { path: { id }, header: idem() },
});
if (r.error) fail("sendSmsCode", r.error);
const outbox = await lethe.GET("/v1/dev/outbox/{id}", { params: { path: { id } } });
const text = JSON.stringify(outbox.data ?? fail("devGetOutbox", outbox.error));
const code = /(\d{6})/.exec(text)?.[1] ?? fail("no code in the outbox", text);
const verified = await lethe.POST("/v1/cases/{id}/verification/sms/verify", {
  params: { path: { id }, header: idem() },
  body: { code },
});
if (verified.data?.state !== "identity_verified") fail("verifySmsCode", verified.error ?? verified.data);

const checks = await lethe.POST("/v1/cases/{id}/checks", { params: { path: { id }, header: idem() } });
const c = checks.data ?? fail("runChecks", checks.error);
if (c.state !== "checks_clear") fail("checks", c);
for (const q of c.consequences) {
  const a = await lethe.POST("/v1/cases/{id}/acknowledgements", {
    params: { path: { id }, header: idem() },
    body: { consequence_id: q.id, version: q.version, locale: "zh-CN" },
  });
  if (a.error) fail("acknowledgeConsequence", a.error);
}
for (const asset of c.assets) {
  const option = asset.options.includes("forfeit") ? "forfeit" : asset.options[0];
  const s = await lethe.POST("/v1/cases/{id}/settlements", {
    params: { path: { id }, header: idem() },
    body: { asset_id: asset.id, option, locale: "zh-CN" },
  });
  if (s.error) fail("chooseSettlement", s.error);
}
const confirmed = await lethe.POST("/v1/cases/{id}/confirm", { params: { path: { id }, header: idem() } });
if (confirmed.data?.state !== "cooling_off") fail("confirmCase", confirmed.error ?? confirmed.data);

const adv = await lethe.POST("/v1/dev/clock/advance", { params: { header: idem() }, body: { seconds: 7 * 86400 + 60 } });
if (adv.error) fail("devAdvanceClock", adv.error);
const deadline = Date.now() + 90_000;
for (;;) {
  const g = await lethe.GET("/v1/cases/{id}", { params: { path: { id } } });
  if (g.data?.state === "erased") break;
  if (Date.now() > deadline) fail("not erased in time", g.data ?? g.error);
  await new Promise((ok) => setTimeout(ok, 300));
}
const receipt = await lethe.GET("/v1/cases/{id}/receipt", { params: { path: { id } } });
const rc = (receipt.data ?? fail("getReceipt", receipt.error)) as { signature?: string; case_id?: string };
if (!rc.signature || rc.case_id !== id) fail("receipt", rc);

// The notifications of the case arrived signed and verified.
const waitHooks = Date.now() + 30_000;
while (!(received.includes("account.freeze") && received.includes("account.erased"))) {
  if (Date.now() > waitHooks) fail("webhooks", received);
  await new Promise((ok) => setTimeout(ok, 200));
}
if (refused <= 0) fail("a forged webhook verified", refused);
server.close();
console.log(`typescript client: case ${id} erased, receipt signed; verified webhooks: ${[...new Set(received)].join(", ")}`);
