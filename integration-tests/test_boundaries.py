"""Issue 14: policy boundaries. An approval (or allow rule) of one name must never serve another name's bytes.

The store is shared by every name, so each test first makes Airlock hold the other name's bytes (a review
request prefetches them), then asks for them through the allowed name, the way the issue's probe did: by
manifest digest, by blob digest (redirect and `?direct=1`), under a pinned tag rule, and after a deny.
The upstream is Debian's docker-registry (distribution), which itself answers 404 for
`library/tiny@<evil's digest>`.
"""

from __future__ import annotations

import json
import time

import pytest

from conftest import EVIL, TINY, TINY_PR1, as_bytes, hf_call, request, sha256, start_airlock, toml_str
from ollama_support import (DOCKER_MANIFEST, ollama_model, ollama_pull, oci_error, rule, start_airlock_ollama,
                            start_registry)

ACCEPT = {"Accept": DOCKER_MANIFEST}
TOKEN = "boundaries-admin-token"
GOVERNANCE = f"[governance]\nadmin_token = {toml_str(TOKEN)}\nprefetch_requests = true\n"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    r = start_registry(tmp_path_factory.mktemp("registry"))
    yield r
    r.stop()


@pytest.fixture(scope="module")
def models(registry):
    return {
        "tiny": registry.push(ollama_model("library/tiny", seed="b-tiny")),
        "tiny-v2": registry.push(ollama_model("library/tiny", tag="v2", seed="b-tiny-v2")),
        "evil": registry.push(ollama_model("library/evil", seed="b-evil")),
    }


def admin(a, method: str, path: str, body=None):
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    data = None if body is None else json.dumps(body).encode()
    st, _, raw = request(a, method, path, headers=headers, body=data, timeout=60)
    return st, (json.loads(raw) if raw[:1] in (b"{", b"[") else raw)


def prefetched(a, name: str, tag: str) -> dict:
    """Waits until the review request for name:tag carries its prefetch report (the bytes are then in the store)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        st, reqs = admin(a, "GET", "/admin/requests")
        assert st == 200, (st, reqs)
        for r in reqs:
            if r["name"] == name and r["revision"] == tag and r.get("report"):
                return r
        time.sleep(0.2)
    raise AssertionError(f"no prefetch report for {name}:{tag}\n{a.log()[-3000:]}")


def assert_not_served(a, path: str, forbidden: bytes, methods=("GET", "HEAD")):
    for method in methods:
        st, _, body = request(a, method, path, ACCEPT)
        assert st in (403, 404), (method, path, st, body[:300])
        assert body != forbidden, (method, path)
        if method == "GET":
            assert oci_error(body)[0] in ("DENIED", "MANIFEST_UNKNOWN", "BLOB_UNKNOWN"), body[:300]


@pytest.fixture(scope="module")
def open_rule(registry, models, tmp_path_factory):
    """Only library/tiny is allowed (every tag); library/evil is refused and prefetched for review."""
    a = start_airlock_ollama(tmp_path_factory.mktemp("open"), registry, rule("library/tiny") + GOVERNANCE)
    st, _, body = request(a, "GET", "/v2/library/evil/manifests/latest", ACCEPT)
    assert st == 403 and oci_error(body)[0] == "DENIED", (st, body[:300])
    req = prefetched(a, "library/evil", "latest")
    evil = models["evil"]
    held = a.blob_files()
    assert evil.model_digest.split(":")[1] in held, "the review prefetch did not store evil's layers"
    yield a, req
    a.stop()


def test_another_names_manifest_is_not_served_by_digest(open_rule, models, registry):
    a, _ = open_rule
    evil = models["evil"]
    assert_not_served(a, f"/v2/library/tiny/manifests/{evil.digest}", evil.manifest)
    # Airlock asked the upstream whether tiny has that digest (it has not), instead of trusting its store.
    asked = f'http.request.uri="/v2/library/tiny/manifests/{evil.digest}"' in registry.log()
    assert asked, "Airlock did not ask the upstream to confirm the digest under library/tiny"


def test_another_names_blobs_are_not_served(open_rule, models):
    a, _ = open_rule
    evil = models["evil"]
    for d, data in evil.blobs.items():
        for q in ("", "?direct=1"):
            assert_not_served(a, f"/v2/library/tiny/blobs/{d}{q}", data)


def test_the_allowed_name_still_pulls_and_by_its_own_digest(open_rule, models, registry, tmp_path):
    a, _ = open_rule
    tiny = models["tiny"]
    pull = ollama_pull(a, "library/tiny:latest", tmp_path / "out")
    assert pull.ok, pull.explain()
    assert pull.files() == tiny.blobs
    st, _, body = request(a, "GET", f"/v2/library/tiny/manifests/{tiny.digest}", ACCEPT)
    assert st == 200 and body == tiny.manifest, (st, body[:300])
    # Pulling tiny did not open a door to evil's blobs.
    assert_not_served(a, f"/v2/library/tiny/blobs/{models['evil'].model_digest}?direct=1",
                      models["evil"].blobs[models["evil"].model_digest])


def test_a_denied_request_keeps_its_prefetch_invisible(open_rule, models):
    a, req = open_rule
    st, body = admin(a, "POST", f"/admin/requests/{req['id']}/deny", {"reason": "not for us", "by": "alice"})
    assert st == 200 and body["status"] == "denied", (st, body)
    evil = models["evil"]
    assert_not_served(a, f"/v2/library/tiny/manifests/{evil.digest}", evil.manifest)
    assert_not_served(a, f"/v2/library/evil/manifests/{evil.digest}", evil.manifest)
    for name in ("library/tiny", "library/evil"):
        for q in ("", "?direct=1"):
            assert_not_served(a, f"/v2/{name}/blobs/{evil.model_digest}{q}", evil.blobs[evil.model_digest])


def test_a_pinned_tag_rule_does_not_serve_a_refused_tags_blobs(registry, models, tmp_path):
    tiny, v2 = models["tiny"], models["tiny-v2"]
    a = start_airlock_ollama(tmp_path / "pinned", registry,
                             rule("library/tiny", tag="latest", manifest=tiny.digest) + GOVERNANCE)
    try:
        st, _, body = request(a, "GET", "/v2/library/tiny/manifests/v2", ACCEPT)
        assert st == 403 and oci_error(body)[0] == "DENIED", (st, body[:300])
        prefetched(a, "library/tiny", "v2")
        assert v2.model_digest.split(":")[1] in a.blob_files()
        # The approved tag pulls, and only its own blobs become visible.
        pull = ollama_pull(a, "library/tiny:latest", tmp_path / "out")
        assert pull.ok and pull.files() == tiny.blobs, pull.explain()
        assert_not_served(a, f"/v2/library/tiny/manifests/{v2.digest}", v2.manifest)
        for d, data in v2.blobs.items():
            if d in tiny.blobs:
                continue
            for q in ("", "?direct=1"):
                assert_not_served(a, f"/v2/library/tiny/blobs/{d}{q}", data)
    finally:
        a.stop()


# ---- Hugging Face ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hf_boundary(fake_hub, tmp_path_factory):
    """Only acme/tiny is allowed (unpinned, no `allow_pr_refs`); acme/evil is refused and prefetched for review."""
    policy = f"""
[policy]
mode = "allowlist"
[[policy.allow]]
hf = "acme/tiny"
{GOVERNANCE}"""
    a = start_airlock(tmp_path_factory.mktemp("hf-boundary"), fake_hub, policy=policy)
    try:
        st, h, _ = request(a, "GET", "/api/models/acme/evil/revision/main")
        assert st == 404 and h["X-Error-Code"] == "RepoNotFound", st
        prefetched(a, "acme/evil", "main")
        yield a
    finally:
        a.stop()


def test_hf_another_repos_commit_is_not_served_through_an_allowed_repos_path(hf_boundary, fake_hub, tmp_path):
    evil = fake_hub.sha("acme/evil")
    st, h, body = request(hf_boundary, "GET", f"/api/models/acme/tiny/revision/{evil}")
    assert st == 404 and h["X-Error-Code"] == "RevisionNotFound", (st, body[:300])
    for path in ("model.safetensors", "config.json"):
        st, h, body = request(hf_boundary, "GET", f"/acme/tiny/resolve/{evil}/{path}")
        assert st == 404 and body != as_bytes(EVIL[path]), (path, st)
        assert h["X-Error-Code"] in ("RevisionNotFound", "EntryNotFound"), h["X-Error-Code"]
    out = hf_call(hf_boundary, tmp_path / "home", {"op": "download", "repo": "acme/tiny",
                                                    "filename": "model.safetensors", "revision": evil})
    assert not out["ok"], out


def test_hf_pull_request_ref_is_refused_under_an_unpinned_rule(hf_boundary, fake_hub, tmp_path):
    asked_before = fake_hub.count(contains="refs/pr/1")
    st, h, body = request(hf_boundary, "GET", "/api/models/acme/tiny/revision/refs%2Fpr%2F1")
    assert st == 404 and h["X-Error-Code"] == "RevisionNotFound", (st, body[:300])
    assert "pull request" in json.loads(body)["error"] and "allow_pr_refs" in h["X-Error-Message"], body
    st, h, body = request(hf_boundary, "GET", "/acme/tiny/resolve/refs%2Fpr%2F1/config.json")
    assert st == 404 and h["X-Error-Code"] == "RevisionNotFound" and body != as_bytes(TINY_PR1["config.json"])
    # The real client shows the reason.
    out = hf_call(hf_boundary, tmp_path / "home", {"op": "download", "repo": "acme/tiny",
                                                    "filename": "config.json", "revision": "refs/pr/1"})
    assert not out["ok"] and "pull request" in out["message"], out
    # Nothing of the pull request was asked upstream.
    assert fake_hub.count(contains="refs/pr/1") == asked_before
    # The main branch is unaffected.
    out = hf_call(hf_boundary, tmp_path / "home2", {"op": "download", "repo": "acme/tiny", "filename": "config.json"})
    assert out["ok"] and out["sha256"] == sha256(as_bytes(TINY["config.json"])), out
