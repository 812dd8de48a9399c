"""Issue 14: policy boundaries. An approval (or allow rule) of one name must never serve another name's bytes.

The store is shared by every name, so each test first makes Airlock hold the other name's bytes (a review
request prefetches them), then asks for them through the allowed name, the way the issue's probe did: by
manifest digest, by blob digest (redirect and `?direct=1`), under a pinned tag rule, and after a deny.
The upstream is Debian's docker-registry (distribution), which itself answers 404 for
`library/tiny@<evil's digest>`.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (EVIL, TINY, TINY_PR1, airlock_bin, as_bytes, hf_call, request, sha256, start_airlock,
                      toml_str)
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
    asked = registry.log().count(f'http.request.uri="/v2/library/tiny/manifests/{evil.digest}"')
    assert asked, "Airlock did not ask the upstream to confirm the digest under library/tiny"
    # The miss is remembered: asking again in a loop does not ask the upstream again.
    for _ in range(10):
        st, _, _ = request(a, "GET", f"/v2/library/tiny/manifests/{evil.digest}", ACCEPT)
        assert st == 404
    assert registry.log().count(f'http.request.uri="/v2/library/tiny/manifests/{evil.digest}"') == asked


def test_another_names_blobs_are_not_served(open_rule, models):
    a, _ = open_rule
    evil = models["evil"]
    # The attacker's sequence: the manifest by digest under the allowed name first (which used to bind evil's
    # layers to it), then the layers.
    request(a, "GET", f"/v2/library/tiny/manifests/{evil.digest}", ACCEPT)
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


# ---- the smaller findings -------------------------------------------------------------------------------
def test_admin_authenticates_before_parsing_the_body_and_audits_failures(hf_boundary):
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        st, _, body = request(hf_boundary, "POST", "/admin/prepare", {**headers, "Content-Type": "application/json"},
                              body=b'{"source":"nope"}')
        assert st == 401 and json.loads(body)["error"] == "missing or wrong admin token", (st, body)
    # Authenticated, the same body is a clear 400 about the body.
    st, body = admin(hf_boundary, "POST", "/admin/prepare", {"source": "nope"})
    assert st == 400 and "bad JSON body" in body["error"], (st, body)
    deadline = time.monotonic() + 10
    while '"kind":"admin_auth_failed"' not in (hf_boundary.data_dir / "audit.log").read_text():
        assert time.monotonic() < deadline, "no failed admin login in the audit log"
        time.sleep(0.1)


def test_free_text_of_a_denial_is_bounded(hf_boundary, fake_hub, tmp_path):
    # It must exist upstream: a review request is recorded only for a revision that resolves there.
    if ("model", "acme/other-unapproved") not in fake_hub.repos:
        fake_hub.add_repo("acme/other-unapproved", {"config.json": "{}\n"})
    request(hf_boundary, "GET", "/api/models/acme/other-unapproved/revision/main")
    st, reqs = admin(hf_boundary, "GET", "/admin/requests")
    req = next(r for r in reqs if r["name"] == "acme/other-unapproved")
    st, body = admin(hf_boundary, "POST", f"/admin/requests/{req['id']}/deny", {"reason": "x" * 5000, "by": "bob"})
    assert st == 400 and "longer than the 4096-byte limit" in body["error"], (st, body)
    st, body = admin(hf_boundary, "POST", f"/admin/requests/{req['id']}/deny", {"reason": "no", "by": "b" * 300})
    assert st == 400 and "by" in body["error"], (st, body)
    st, body = admin(hf_boundary, "GET", f"/admin/requests/{req['id']}")
    assert st == 200 and body["status"] == "pending", body
    # The CLI says so before sending anything (the server here does not even exist).
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_")}
    p = subprocess.run([str(airlock_bin()), "requests", "deny", req["id"], "--reason", "y" * 5000,
                        "--server", "http://127.0.0.1:9", "--admin-token", "t"], capture_output=True, text=True,
                       env=env, timeout=30)
    assert p.returncode != 0 and "longer than the 4096-byte limit" in p.stderr, (p.returncode, p.stderr)
    p = subprocess.run([str(airlock_bin()), "revoke", "appr-0123456789ab", "--reason", "y" * 5000, "--by", "x",
                        "--key", str(tmp_path / "none.key"), "--server", "http://127.0.0.1:9", "--admin-token", "t"],
                       capture_output=True, text=True, env=env, timeout=30)
    assert p.returncode != 0 and "longer than the 4096-byte limit" in p.stderr, (p.returncode, p.stderr)


def test_paths_info_limit_is_the_stated_one_and_413_is_hf_form(hf_boundary):
    path = "/api/models/acme/tiny/paths-info/main"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    # 300 KiB: over actix's 256 KiB default that used to apply, under the stated 1 MiB.
    body = ("paths=config.json&" + "&".join(f"paths=p{i:06}" for i in range(300 * 1024 // 15))).encode()
    assert 256 * 1024 < len(body) < 1 << 20
    st, _, out = request(hf_boundary, "POST", path, form, body=body)
    assert st == 200 and [e["path"] for e in json.loads(out)] == ["config.json"], (st, out[:300])
    st, h, out = request(hf_boundary, "POST", path, form, body=b"paths=" + b"a" * (1 << 20))
    assert st == 413 and h["X-Error-Code"] == "PayloadTooLarge", (st, h.items())
    assert "1048576-byte limit" in json.loads(out)["error"] and h["X-Error-Message"], out


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_slow_request_bodies_are_bounded_in_memory_and_time(fake_hub, tmp_path):
    """The issue's probe: 500 connections each holding an unfinished 261 KB body. A resource bound, not a timing
    assertion: RSS growth stays far below the hundreds of MB it was, and the connections are answered or closed."""
    a = start_airlock(tmp_path / "slow", fake_hub, policy='[policy]\nmode = "allowlist"\n[[policy.allow]]\nhf = "acme/tiny"\n')
    try:
        before = rss_kib(a.proc.pid)
        head = (b"POST /api/models/acme/tiny/paths-info/main HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 261000\r\n\r\n")
        chunk = b"paths=" + b"a" * (260000 - 6)
        socks = []
        for _ in range(500):
            s = socket.create_connection(("127.0.0.1", a.port), timeout=30)
            s.setblocking(False)
            try:
                s.sendall(head)
                s.send(chunk)  # as much as the socket takes; the body is never finished
            except BlockingIOError:
                pass
            socks.append(s)
        time.sleep(3)
        grown = (rss_kib(a.proc.pid) - before) // 1024
        assert grown < 100, f"RSS grew by {grown} MiB with 500 unfinished bodies"
        # Every connection is answered (413/408/503) or closed within the body timeout plus slack.
        deadline = time.monotonic() + 30
        open_ = list(socks)
        while open_ and time.monotonic() < deadline:
            r, _, _ = select.select(open_, [], [], 1)
            for s in r:
                try:
                    s.recv(65536)
                except (BlockingIOError, ConnectionError):
                    pass
                open_.remove(s)
        assert not open_, f"{len(open_)} connections still held open"
        st, _, _ = request(a, "GET", "/api/models/acme/tiny/revision/main")
        assert st == 200
        after = (rss_kib(a.proc.pid) - before) // 1024
        assert after < 100, f"RSS stayed {after} MiB above the start"
    finally:
        for s in socks:
            s.close()
        a.stop()


def raw_get(a, path: str, host: str, extra: dict | None = None) -> tuple[int, dict[str, list[str]]]:
    """A GET with exactly this Host header (http.client would add its own)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Connection: close",
             *(f"{k}: {v}" for k, v in (extra or {}).items())]
    with socket.create_connection(("127.0.0.1", a.port), timeout=30) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in head[1:]:
        k, _, v = line.partition(":")
        headers.setdefault(k.strip().lower(), []).append(v.strip())
    return int(head[0].split()[1]), headers


TREE = "/api/models/acme/tiny/tree/main?recursive=true"


def test_host_headers_do_not_reach_the_tree_link_unchecked(hf_boundary):
    local = f"http://127.0.0.1:{hf_boundary.port}/"
    hostile = [
        ('evil.example>; rel="next", <http://attacker', {}),
        ("127.0.0.1", {"X-Forwarded-Host": "attacker.example", "X-Forwarded-Proto": "javascript"}),
        ("127.0.0.1", {"Forwarded": 'proto=https;host="attacker.example"'}),
    ]
    for host, extra in hostile:
        st, h = raw_get(hf_boundary, TREE, host, extra)
        assert st == 200 and len(h["link"]) == 1, (host, extra, st, h)
        link = h["link"][0]
        assert link.count("<") == 1 and "attacker" not in link, link
        assert link.startswith("<http://"), link
    # A well-formed Host is still honoured (clients follow the Link they are given).
    st, h = raw_get(hf_boundary, TREE, f"localhost:{hf_boundary.port}")
    assert h["link"][0].startswith(f"<http://localhost:{hf_boundary.port}/api/"), h["link"]
    st, h = raw_get(hf_boundary, TREE, "bad host")
    assert st in (200, 400), st
    if st == 200:
        assert h["link"][0].startswith(f"<{local}"), h["link"]


def test_forwarding_headers_count_from_trusted_proxies_and_public_url_wins(fake_hub, tmp_path):
    policy = '[policy]\nmode = "allowlist"\n[[policy.allow]]\nhf = "acme/tiny"\n'
    a = start_airlock(tmp_path / "proxied", fake_hub, policy=policy, env={"AIRLOCK_TRUSTED_PROXIES": "10.0.0.1, 127.0.0.0/8"})
    try:
        st, h = raw_get(a, TREE, "127.0.0.1", {"X-Forwarded-Host": "mirror.example", "X-Forwarded-Proto": "https"})
        assert h["link"][0].startswith("<https://mirror.example/api/models/acme/tiny/tree/main?"), h["link"]
        st, h = raw_get(a, TREE, "127.0.0.1", {"Forwarded": 'for=10.1.2.3;proto=https;host="m2.example:8443"'})
        assert h["link"][0].startswith("<https://m2.example:8443/api/"), h["link"]
        # Even a trusted proxy cannot smuggle a scheme or a second link.
        st, h = raw_get(a, TREE, "127.0.0.1", {"X-Forwarded-Host": "a>, <http://x", "X-Forwarded-Proto": "ftp"})
        assert h["link"][0].startswith(f"<http://127.0.0.1:{a.port}/"), h["link"]
    finally:
        a.stop()
    b = start_airlock(tmp_path / "public", fake_hub,
                      policy=policy + '[governance]\nprefetch_requests = false\npublic_url = "https://airlock.example/"\n')
    try:
        st, h = raw_get(b, TREE, "evil.example", {"X-Forwarded-Host": "attacker.example"})
        assert h["link"][0].startswith("<https://airlock.example/api/models/acme/tiny/tree/main?"), h["link"]
    finally:
        b.stop()


def test_oci_redirect_location_is_not_built_from_forwarding_headers(open_rule, models):
    a, _ = open_rule
    tiny = models["tiny"]
    st, _, _ = request(a, "GET", f"/v2/library/tiny/manifests/latest", ACCEPT)
    assert st == 200
    st, h = raw_get(a, f"/v2/library/tiny/blobs/{tiny.model_digest}", f"127.0.0.1:{a.port}",
                    {"X-Forwarded-Proto": "javascript", "X-Forwarded-Host": "attacker.example"})
    assert st in (200, 307), (st, h)
    location = h["location"][0]
    assert location.startswith("http://") and "attacker" not in location, location


def test_missing_revisions_are_asked_upstream_once_per_ttl(hf_boundary, fake_hub):
    for rev in ("no-such-branch", "ab" * 20):
        before = fake_hub.count(contains=rev)
        for i in range(40):
            path = (f"/api/models/acme/tiny/revision/{rev}" if i % 2 else f"/acme/tiny/resolve/{rev}/config.json")
            st, h, _ = request(hf_boundary, "GET", path)
            assert st == 404 and h["X-Error-Code"] == "RevisionNotFound", (path, st)
        asked = fake_hub.count(contains=rev) - before
        assert asked == 1, f"{asked} upstream requests for 40 asks of missing revision {rev}"
