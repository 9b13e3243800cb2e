"""A whole cancellation through the Python client generated from Lethe's
OpenAPI document (openapi-python-client), against the demo: open, verify by
SMS code (read from the dev outbox), checks, acknowledgements, settlements,
confirm, clock, receipt. A Standard Webhooks receiver verifies the
notifications Lethe sends. Run by tools/clients/run.sh."""

import http.server
import importlib
import json
import os
import pkgutil
import re
import threading
import time
import uuid

import lethe_client.api
from lethe_client import AuthenticatedClient
from lethe_client.models import Acknowledge, Advance, CreateCase, Settle, VerifyCode
from standardwebhooks.webhooks import Webhook


def operation(name):
    """The generated module of an operation (operationId in snake case),
    whatever tag it sits under."""
    for tag in pkgutil.iter_modules(lethe_client.api.__path__):
        try:
            return importlib.import_module(f"lethe_client.api.{tag.name}.{name}")
        except ModuleNotFoundError:
            continue
    raise SystemExit(f"the generated client has no operation {name}")


def check(what, answer):
    """The parsed answer of a sync_detailed call, or the problem."""
    if answer.status_code >= 300:
        raise SystemExit(f"{what}: {answer.status_code} {answer.content!r}")
    return answer.parsed


lethe = AuthenticatedClient(base_url=os.environ["LETHE_URL"], token=os.environ["LETHE_KEY"])
idem = lambda: str(uuid.uuid4())  # noqa: E731

# The platform's webhook receiver: verifies every delivery's signature.
hook = Webhook(os.environ["HOOK_SECRET"])
received, forged_refused = [], []


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"])).decode()
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            msg = hook.verify(body, headers)
        except Exception as e:  # noqa: BLE001 - any failure is a refusal
            self.send_response(401)
            self.end_headers()
            self.wfile.write(str(e).encode())
            return
        received.append(msg["type"])
        try:
            hook.verify(body.replace("}", " }", 1), headers)
        except Exception:  # noqa: BLE001
            forged_refused.append(True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["HOOK_PORT"])), Receiver)
threading.Thread(target=server.serve_forever, daemon=True).start()

case = check(
    "createCase",
    operation("create_case").sync_detailed(
        client=lethe,
        body=CreateCase(subject_id=os.environ["SUBJECT"], channel="app"),
        idempotency_key=idem(),
    ),
)
cid = uuid.UUID(case.id)
check("sendSmsCode", operation("send_sms_code").sync_detailed(cid, client=lethe, idempotency_key=idem()))
outbox = check("devGetOutbox", operation("dev_get_outbox").sync_detailed(cid, client=lethe))
code = re.search(r"(\d{6})", " ".join(m.body for m in outbox)).group(1)
verified = check(
    "verifySmsCode",
    operation("verify_sms_code").sync_detailed(cid, client=lethe, body=VerifyCode(code=code), idempotency_key=idem()),
)
assert verified.state == "identity_verified", verified.state
checks = check("runChecks", operation("run_checks").sync_detailed(cid, client=lethe, idempotency_key=idem()))
assert checks.state == "checks_clear", checks.state
for q in checks.consequences:
    check(
        "acknowledgeConsequence",
        operation("acknowledge_consequence").sync_detailed(
            cid,
            client=lethe,
            body=Acknowledge(consequence_id=q.id, version=q.version, locale="zh-CN"),
            idempotency_key=idem(),
        ),
    )
for a in checks.assets:
    option = "forfeit" if "forfeit" in a.options else a.options[0]
    check(
        "chooseSettlement",
        operation("choose_settlement").sync_detailed(
            cid,
            client=lethe,
            body=Settle(asset_id=a.id, option=option, locale="zh-CN"),
            idempotency_key=idem(),
        ),
    )
confirmed = check("confirmCase", operation("confirm_case").sync_detailed(cid, client=lethe, idempotency_key=idem()))
assert confirmed.state == "cooling_off", confirmed.state
check(
    "devAdvanceClock",
    operation("dev_advance_clock").sync_detailed(
        client=lethe, body=Advance(seconds=7 * 86400 + 60), idempotency_key=idem()
    ),
)
deadline = time.time() + 90
while check("getCase", operation("get_case").sync_detailed(cid, client=lethe)).state != "erased":
    assert time.time() < deadline, "not erased in time"
    time.sleep(0.3)
answer = operation("get_receipt").sync_detailed(cid, client=lethe)
assert answer.status_code == 200, answer.content
receipt = json.loads(answer.content)
assert receipt["case_id"] == case.id and receipt["signature"], receipt

deadline = time.time() + 30
while not {"account.freeze", "account.erased"} <= set(received):
    assert time.time() < deadline, received
    time.sleep(0.2)
assert forged_refused, "a forged webhook verified"
server.shutdown()
print(f"python client: case {case.id} erased, receipt signed; verified webhooks: {', '.join(sorted(set(received)))}")
