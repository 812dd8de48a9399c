"""Unbounded anonymous work (issue 12): one client asking for thousands of distinct unapproved names makes
Airlock record at most its review-request budget, write a bounded number of audit lines, and ask the
upstream at most one revision lookup per budget unit (a request is recorded only for a revision that
resolves upstream, so each new name costs one unit whether or not it exists); another client still has
its own budget. Clients are told apart by name ([[clients]] tokens, issue 11), anonymous ones by address:
an invented token buys no fresh budget."""

import hashlib
import json

from conftest import default_policy, request, start_airlock, error_text

BUDGET = 20
NAMES = 400
REAL = 10  # the first REAL names exist upstream


def events(a, kind):
    out = []
    for line in (a.data_dir / "audit.log").read_text().splitlines():
        e = json.loads(line)["event"]
        if e["kind"] == kind:
            out.append(e)
    return out


def test_one_client_flooding_distinct_names_stays_within_its_budget(fake_hub, tmp_path):
    named = hashlib.sha256(b"another-client").hexdigest()
    for i in range(REAL):
        fake_hub.add_repo(f"floodorg/model-{i:05d}", {"config.json": "{}\n"})
    fake_hub.add_repo("floodorg/other", {"config.json": "{}\n"})
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
        assert sum("req-" in t for t in texts) == REAL, "each existing new name within the budget is a request"
        assert all("req-" in t for t in texts[:REAL]), texts[:REAL]
        assert not any("req-" in t or "approved" in t for t in texts[REAL:BUDGET]), \
            "a name missing upstream is answered as missing, and recorded nowhere"
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
    assert len(events(a, "request")) == REAL + 1
    # One refusal line per recorded request, plus one a minute for the over-budget rest.
    refusals = events(a, "refusal")
    assert len(refusals) <= REAL + 1 + 3, len(refusals)
    assert any("budget spent" in r["reason"] for r in refusals)
    # One revision lookup per budget unit, and nothing else (no listing, no file) about unapproved names.
    assert fake_hub.count(contains="floodorg") <= BUDGET + 1, fake_hub.stats()
    assert fake_hub.count(contains="floodorg", listener="cdn") == 0
