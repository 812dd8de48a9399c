"""Unbounded anonymous work (issue 12): one client asking for thousands of distinct unapproved names makes
Airlock record at most its review-request budget, write a bounded number of audit lines, and ask the
upstream nothing; another client still has its own budget. Clients are told apart by name ([[clients]]
tokens, issue 11), anonymous ones by address: an invented token buys no fresh budget."""

import hashlib
import json

from conftest import default_policy, request, start_airlock, error_text

BUDGET = 20
NAMES = 400


def events(a, kind):
    out = []
    for line in (a.data_dir / "audit.log").read_text().splitlines():
        e = json.loads(line)["event"]
        if e["kind"] == kind:
            out.append(e)
    return out


def test_one_client_flooding_distinct_names_stays_within_its_budget(fake_hub, tmp_path):
    named = hashlib.sha256(b"another-client").hexdigest()
    policy = default_policy(fake_hub) + (
        f"\n[governance]\nprefetch_requests = false\nrequests_per_client_hour = {BUDGET}\n"
        f'[[clients]]\nname = "another"\ntoken_sha256 = "{named}"\n')
    a = start_airlock(tmp_path / "a", fake_hub, policy=policy)
    fake_hub.reset()
    try:
        texts = []
        for i in range(NAMES):
            st, h, body = request(a, "GET", f"/api/models/floodorg/model-{i:05d}/revision/main")
            assert st in (401, 404), st
            texts.append(error_text(h, body))
        assert sum("req-" in t for t in texts) == BUDGET, "each new name within the budget is a request"
        assert "ask your model-governance team" in texts[-1], texts[-1]
        # An invented token is the same anonymous client: no fresh budget ...
        st, h, body = request(a, "GET", "/api/models/floodorg/invented/revision/main",
                              {"Authorization": "Bearer invented-token"})
        assert "req-" not in error_text(h, body), error_text(h, body)
        # ... while another client (a configured token) has its own budget.
        st, h, body = request(a, "GET", "/api/models/floodorg/other/revision/main",
                              {"Authorization": "Bearer another-client"})
        assert "req-" in error_text(h, body), error_text(h, body)
    finally:
        a.stop()
    assert len(events(a, "request")) == BUDGET + 1
    # One refusal line per recorded request, plus one a minute for the over-budget rest.
    refusals = events(a, "refusal")
    assert len(refusals) <= BUDGET + 1 + 3, len(refusals)
    assert any("budget spent" in r["reason"] for r in refusals)
    assert fake_hub.count(contains="floodorg") == 0, "nothing about an unapproved name is asked upstream"
