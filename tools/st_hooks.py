"""Schemathesis hooks for Lethe's API (used by tools/schemathesis.sh).

Every POST carries an Idempotency-Key, and reusing a key with another body
is refused by design (409). Generated keys repeat across requests, so a
generated key is replaced by a fresh UUID here; a request the generator
left without one (the missing-header check) stays without.
"""
import uuid

import schemathesis


@schemathesis.hook
def before_call(ctx, case, kwargs):
    if case.method.upper() != "POST" or not case.headers:
        return
    for name in list(case.headers):
        if name.lower() == "idempotency-key":
            case.headers[name] = str(uuid.uuid4())
