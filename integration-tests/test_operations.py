"""Operations end to end (issue 11, item 4): `/metrics` parsed with prometheus_client's own text parser (and
checked by its strict OpenMetrics parser), its counters moving as an HF download, a refusal and an OCI pull
pass; `/healthz` and `/readyz`, which fails (503, naming the check) when the data directory turns read-only;
`[metrics] token`; and request ids: `X-Request-Id` taken when well formed, generated otherwise, and carried by
every JSON log line of its request.

Real parts: huggingface_hub (hf_client.py), oras-py, Debian's docker-registry, prometheus_client.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from conftest import TINY, expect_ok, hf_call, request, start_airlock, toml_str
from ollama_support import PULL_TIMEOUT, ollama_model, start_registry


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    r = start_registry(tmp_path_factory.mktemp("registry"))
    yield r
    r.stop()


@pytest.fixture(scope="module")
def oci_model(registry):
    return registry.push(ollama_model("library/opstiny"))


@pytest.fixture(scope="module")
def ops(fake_hub, registry, oci_model, tmp_path_factory):
    policy = f"""
[policy]
mode = "allowlist"
[[policy.allow]]
hf = "acme/tiny"
[[policy.allow]]
ollama = "library/opstiny"
[ollama]
upstream = {toml_str(registry.url)}
[log]
format = "json"
level = "debug"
"""
    # RUST_LOG would win over [log] level: leave it unset so the config is what decides.
    a = start_airlock(tmp_path_factory.mktemp("ops"), fake_hub, policy=policy, env={"RUST_LOG": ""})
    yield a
    a.stop()


def scrape(a) -> dict[tuple, float]:
    """Every sample of /metrics as {(name, sorted labels): value}, read with prometheus_client's text parser."""
    st, h, body = request(a, "GET", "/metrics")
    assert st == 200, (st, body[:300])
    text = body.decode()
    assert h["Content-Type"].startswith("application/openmetrics-text"), h["Content-Type"]
    # The strict OpenMetrics parser accepts the whole exposition (it raises on any malformed line) ...
    assert list(openmetrics_families(text))
    # ... and the Prometheus text parser reads the samples.
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(samples: dict, name: str, **labels) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items()
               if n == name and all(dict(ls).get(k) == str(want) for k, want in labels.items()))


ORAS = textwrap.dedent("""
    import json, sys
    import oras.client
    files = oras.client.OrasClient(insecure=True).pull(target=sys.argv[1], outdir=sys.argv[2])
    print(json.dumps(files))
""")


def test_metrics_parse_and_move_with_traffic(ops, oci_model, tmp_path):
    before = scrape(ops)
    # An HF download (cold: fetched, scanned, promoted), a refusal, an OCI pull.
    out = hf_call(ops, tmp_path / "h", {"op": "download", "repo": "acme/tiny", "filename": "model.safetensors"})
    expect_ok(out, ops)
    size = len(TINY["model.safetensors"])
    out = hf_call(ops, tmp_path / "h", {"op": "download", "repo": "acme/evil", "filename": "config.json"})
    assert not out["ok"], out
    home = tmp_path / "oras-home"
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
           "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker")}
    p = subprocess.run([sys.executable, "-c", ORAS, f"127.0.0.1:{ops.port}/library/opstiny:latest",
                        str(tmp_path / "o")], capture_output=True, text=True, timeout=PULL_TIMEOUT, env=env)
    assert p.returncode == 0, f"oras pull failed:\n{p.stdout}\n{p.stderr[-3000:]}"
    after = scrape(ops)

    def moved(name, **labels):
        return total(after, name, **labels) - total(before, name, **labels)

    resolve = "/{repo}/resolve/{rev}/{path}"
    assert moved("airlock_http_requests_total", protocol="hf", route=resolve, status=200) >= 1
    assert moved("airlock_http_requests_total", protocol="oci", route="/v2/{name}/manifests/{reference}",
                 status=200) >= 1
    assert moved("airlock_http_requests_total", protocol="oci", route="/v2/{name}/blobs/{digest}") >= 1
    assert moved("airlock_http_response_bytes_total", protocol="hf") >= size
    model_layer = len(next(b for d, b in oci_model.blobs.items() if d == oci_model.model_digest))
    assert moved("airlock_http_response_bytes_total", protocol="oci") >= model_layer
    assert moved("airlock_upstream_requests_total", upstream="hf", status="2xx") >= 1
    assert moved("airlock_upstream_requests_total", upstream="ollama", status="2xx") >= 1
    assert moved("airlock_upstream_bytes_total", upstream="hf") >= size
    assert moved("airlock_upstream_bytes_total", upstream="ollama") >= model_layer
    assert moved("airlock_fetch_duration_seconds_count", outcome="promoted") >= 2
    assert moved("airlock_scan_verdicts_total", verdict="clean") >= 2
    assert moved("airlock_refusals_total", reason="not_approved") >= 1
    assert moved("airlock_audit_appends_total") >= 3  # downloads, the request, the refusal
    assert total(after, "airlock_store_bytes") >= size + model_layer
    assert total(after, "airlock_fetches_in_flight") == 0
    assert total(after, "airlock_single_flight_waiters") == 0
    # Bounded labels: no repo, file, digest or client ever becomes a label value.
    for (name, labels) in after:
        for k, v in labels:
            assert not re.search(r"acme|tiny|opstiny|sha256:|127\.0\.0\.1", v), (name, k, v)


def test_health_and_readiness_with_a_read_only_data_dir(fake_hub, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root: the read-only data dir is a read-only bind mount (chmod does not stop root)")
    data = tmp_path / "data"
    a = start_airlock(tmp_path / "a", fake_hub, data_dir=data)
    mounted = False
    try:
        st, _, body = request(a, "GET", "/readyz")
        assert st == 200 and json.loads(body)["status"] == "ready", body
        # A read-only bind mount stacked on the data dir while Airlock runs: every path Airlock opens from
        # now on is read-only. (Remounting a mount Airlock already holds files open on for writing is
        # refused by the kernel as busy, so the mount is made after start.)
        bind = subprocess.run(["mount", "--bind", str(data), str(data)], capture_output=True, text=True)
        if bind.returncode != 0:
            pytest.skip(f"mount --bind is not permitted here: {bind.stderr.strip()}")
        mounted = True
        subprocess.run(["mount", "-o", "remount,ro,bind", str(data)], check=True, capture_output=True)
        st, _, body = request(a, "GET", "/readyz")
        doc = json.loads(body)
        assert st == 503, (st, doc)
        assert any(f.startswith("store:") for f in doc["failing"]), doc
        assert any(f.startswith("audit:") for f in doc["failing"]), doc
        assert "Read-only" in doc["checks"]["store"], doc
        # Alive all the same: liveness must not restart a pod for a disk problem readiness reports.
        st, _, _ = request(a, "GET", "/healthz")
        assert st == 200
        subprocess.run(["umount", str(data)], check=True, capture_output=True)
        mounted = False
        st, _, body = request(a, "GET", "/readyz")
        assert st == 200, body
    finally:
        if mounted:
            subprocess.run(["umount", str(data)], capture_output=True)
        a.stop()


def test_metrics_token(fake_hub, airlock_factory):
    a = airlock_factory(policy='[metrics]\ntoken = "scrape-secret"\n')
    st, h, _ = request(a, "GET", "/metrics")
    assert st == 401 and h["WWW-Authenticate"].startswith("Bearer"), st
    st, _, _ = request(a, "GET", "/metrics", {"Authorization": "Bearer wrong"})
    assert st == 401
    st, _, body = request(a, "GET", "/metrics", {"Authorization": "Bearer scrape-secret"})
    assert st == 200 and b"airlock_http_requests_total" in body
    # The probes are never behind it.
    assert request(a, "GET", "/readyz")[0] == 200 and request(a, "GET", "/healthz")[0] == 200


def log_lines(a) -> list[dict]:
    out = []
    for line in a.log_path.read_text(errors="replace").splitlines():
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def test_request_ids_are_returned_and_in_every_log_line_of_the_request(ops):
    # Well formed: kept. Malformed or absent: replaced by a fresh one.
    mine = "req-ops-test-42"
    st, h, _ = request(ops, "GET", "/api/models/acme/evil", {"X-Request-Id": mine})
    assert st == 404 and h["X-Request-Id"] == mine
    st, h, _ = request(ops, "GET", "/healthz", {"X-Request-Id": "has spaces and\ttabs"})
    assert re.fullmatch(r"[0-9a-f]{32}", h["X-Request-Id"]), h["X-Request-Id"]
    ids = {request(ops, "GET", "/healthz")[1]["X-Request-Id"] for _ in range(3)}
    assert len(ids) == 3
    # Every line is JSON (format = "json"); the lines of our request carry its id, and the refusal it
    # produced is among them.
    deadline = time.monotonic() + 10
    while True:
        lines = log_lines(ops)
        ours = [l for l in lines if l.get("span", {}).get("request_id") == mine]
        if any("not approved" in json.dumps(l.get("fields")) for l in ours) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    text = ops.log_path.read_text(errors="replace")
    non_json = [l for l in text.splitlines() if l.strip() and not l.strip().startswith("{")]
    assert not non_json, non_json[:5]
    assert len(ours) >= 2, ours
    assert any("not approved" in json.dumps(l["fields"]) for l in ours), ours
    assert any(l["fields"].get("message") == "answered" and l["fields"].get("status") == 404 for l in ours), ours
    assert {l["level"] for l in lines} >= {"DEBUG", "INFO"}, "[log] level = debug"
