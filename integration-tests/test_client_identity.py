"""Client identity end to end (issue 11, item 3): `[[clients]]` tokens name the client in the audit log,
`[policy] require_client_token` refuses anonymous and unknown clients in each protocol's own error form
(huggingface_hub raises with Airlock's message; an OCI client gets 401 UNAUTHORIZED with a challenge that
makes oras-py run the token flow with its credentials), and upstream and client tokens never mix: the
upstream token appears in no response and no log line at debug level, and a client's token is never
forwarded upstream.

Real parts: huggingface_hub (hf_client.py), oras-py, Debian's docker-registry as the OCI upstream, the fake
Hub (whose gated repo opens only with the upstream token).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import HUB_TOKEN, TINY, expect_ok, hf_call, request, toml_str
from ollama_support import PULL_TIMEOUT, digest_of, ollama_model, ollama_pull_bin, start_registry

ALICE = "alice-token-7f3c9b1e2d"  # a [[clients]] token; never the upstream's
BOB_ADMIN = "bob-admin-token-91ac44"
UNKNOWN = "not-a-client-token-0000"


def sha(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


CLIENTS = f"""
[[clients]]
name = "alice"
token_sha256 = "{sha(ALICE)}"
[[clients]]
name = "bob.admin"
token_sha256 = "{sha(BOB_ADMIN)}"
roles = ["admin"]
"""


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    r = start_registry(tmp_path_factory.mktemp("registry"))
    yield r
    r.stop()


@pytest.fixture(scope="module")
def oci_model(registry):
    return registry.push(ollama_model("library/idtiny"))


@pytest.fixture(scope="module")
def ollama_keys(tmp_path_factory):
    """Two ollama identities (ed25519 seeds, as ollama-pull reads them): alice's, and one nobody configured."""
    d = tmp_path_factory.mktemp("ollama-keys")
    keys = {}
    for who, seed in (("alice", "11" * 32), ("stranger", "22" * 32)):
        path = d / who
        path.write_text(seed + "\n")
        p = subprocess.run([str(ollama_pull_bin()), "--key", str(path), "--print-public-key"],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0 and p.stdout.startswith("ssh-ed25519 "), p
        keys[who] = (path, p.stdout.strip())
    return keys


@pytest.fixture(scope="module")
def locked(fake_hub, registry, oci_model, ollama_keys, tmp_path_factory):
    """An Airlock that requires client tokens, holds the upstream token for the gated repo, and logs at debug."""
    from conftest import start_airlock
    alice_key = ollama_keys["alice"][1] + " alice@laptop"
    policy = f"""
[policy]
mode = "allowlist"
require_client_token = true
[[policy.allow]]
hf = "acme/tiny"
[[policy.allow]]
hf = "acme/gated"
[[policy.allow]]
ollama = "library/idtiny"
[[policy.allow]]
ollama = "library/idollama"
[ollama]
upstream = {toml_str(registry.url)}
[governance]
prefetch_requests = false
admin_token = "the-admin-token"
""" + CLIENTS.replace('name = "alice"\n', f'name = "alice"\nollama_keys = [{toml_str(alice_key)}]\n')
    a = start_airlock(tmp_path_factory.mktemp("locked"), fake_hub, policy=policy,
                      env={"AIRLOCK_HF_TOKEN": HUB_TOKEN, "RUST_LOG": "debug"})
    yield a
    a.stop()


def audit_events(a) -> list[dict]:
    path = a.data_dir / "audit.log"
    return [json.loads(l)["event"] for l in path.read_text().splitlines() if l.strip()]


def wait_for_event(a, pred, what: str, timeout: float = 20.0) -> dict:
    """Audit appends run off the request path: wait until one matches (not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        for e in audit_events(a):
            if pred(e):
                return e
        if time.monotonic() > deadline:
            raise AssertionError(f"no audit entry for {what}; entries:\n" +
                                 "\n".join(json.dumps(e) for e in audit_events(a)[-20:]))
        time.sleep(0.2)


ORAS = textwrap.dedent("""
    import json, sys
    import oras.client, oras.provider
    # oras-py retries a failed request five times with sleeps of up to 83 s; one attempt says the same.
    oras.provider.Registry.do_request = oras.provider.Registry.do_request.__wrapped__
    target, out, token = sys.argv[1], sys.argv[2], sys.argv[3]
    c = oras.client.OrasClient(insecure=True)
    if token:
        c.login(username="ci", password=token, hostname=target.split("/")[0])
    try:
        files = c.pull(target=target, outdir=out)
        print(json.dumps({"ok": True, "files": files}))
    except Exception as e:
        print(json.dumps({"ok": False, "type": type(e).__name__, "message": str(e)}))
""")


def oras_pull(a, model: str, out, token: str = "") -> dict:
    # oras-py's login writes ~/.docker/config.json and every later pull reads it: a home of its own per
    # pull, so an anonymous pull is anonymous and nothing lands in the real home.
    home = out.parent / f"{out.name}-home"
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
           "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker")}
    p = subprocess.run([sys.executable, "-c", ORAS, f"127.0.0.1:{a.port}/{model}", str(out), token],
                       capture_output=True, text=True, timeout=PULL_TIMEOUT, env=env)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    assert lines, f"oras script printed nothing (rc={p.returncode}):\n{p.stdout}\n{p.stderr[-3000:]}"
    out = json.loads(lines[-1])
    out["stderr"] = p.stderr[-3000:]
    return out


# ---- names in the audit log -----------------------------------------------------------------------------
def test_downloads_requests_and_refusals_are_audited_under_the_clients_name(locked, tmp_path):
    out = hf_call(locked, tmp_path / "h1", {"op": "download", "repo": "acme/tiny", "filename": "config.json"},
                  extra_env={"HF_TOKEN": ALICE})
    expect_ok(out, locked)
    dl = wait_for_event(locked, lambda e: e["kind"] == "download" and e["file"] == "config.json",
                        "alice's download")
    assert dl["client"] == "alice (127.0.0.1)", dl
    # An unapproved repo: a review request and a refusal, both under her name, and she is told why.
    out = hf_call(locked, tmp_path / "h2", {"op": "download", "repo": "acme/evil", "filename": "config.json"},
                  extra_env={"HF_TOKEN": ALICE})
    assert not out["ok"] and "not approved" in out["message"], out
    req = wait_for_event(locked, lambda e: e["kind"] == "request" and e["name"] == "acme/evil", "the request")
    ref = wait_for_event(locked, lambda e: e["kind"] == "refusal" and e["name"] == "acme/evil", "the refusal")
    assert req["client"] == ref["client"] == "alice (127.0.0.1)", (req, ref)
    # The review queue shows who asked by name too (the admin API, here with an admin-role client token).
    st, _, body = request(locked, "GET", "/admin/requests", {"Authorization": f"Bearer {BOB_ADMIN}"})
    assert st == 200, body
    evil = next(r for r in json.loads(body) if r["name"] == "acme/evil")
    assert evil["clients"] == ["alice (127.0.0.1)"], evil
    # A non-admin client token does not open the admin API.
    st, _, _ = request(locked, "GET", "/admin/requests", {"Authorization": f"Bearer {ALICE}"})
    assert st == 401


def test_oci_pull_with_credentials_runs_the_token_flow_and_is_audited_by_name(locked, oci_model, tmp_path):
    out = oras_pull(locked, "library/idtiny:latest", tmp_path / "o", token=ALICE)
    assert out["ok"], out
    layers = {l["digest"] for l in oci_model.layers}
    got = {os.path.basename(f) for f in out["files"]}
    assert got == layers, got
    # The blobs came through the direct URL, which oras fetched without Authorization (requests drops it
    # on a cross-host redirect): the grant in the redirect still names alice.
    model = oci_model.model_digest
    dl = wait_for_event(locked, lambda e: e["kind"] == "download" and e["file"] == model, "the layer download")
    assert dl["client"] == "alice (127.0.0.1)", dl


def ollama_pull_with(a, model: str, out, key=None) -> subprocess.CompletedProcess:
    cmd = [str(ollama_pull_bin()), "--insecure", "--out", str(out)]
    if key is not None:
        cmd += ["--key", str(key)]
    return subprocess.run(cmd + [f"127.0.0.1:{a.port}/{model}"], capture_output=True, text=True,
                          timeout=PULL_TIMEOUT)


def test_ollama_proves_its_key_in_the_token_flow_and_is_audited_by_name(locked, registry, ollama_keys,
                                                                          tmp_path):
    """ollama sends no token: it signs its token request to the challenge's realm with its ed25519 key
    (shared/docs/ollama-protocol.md 1.5), and a [[clients]] entry's ollama_keys names it."""
    m = registry.push(ollama_model("library/idollama"))
    # Without a key, and with a key nobody configured: refused at the token flow.
    p = ollama_pull_with(locked, "library/idollama:latest", tmp_path / "none")
    assert p.returncode == 1 and "401" in p.stderr and "requires a client token" in p.stderr, p.stderr
    p = ollama_pull_with(locked, "library/idollama:latest", tmp_path / "stranger", ollama_keys["stranger"][0])
    assert p.returncode == 1 and "401" in p.stderr, p.stderr
    # With alice's key: the whole pull, its layers fetched from the direct URL with the grant.
    p = ollama_pull_with(locked, "library/idollama:latest", tmp_path / "alice", ollama_keys["alice"][0])
    assert p.returncode == 0 and p.stdout.rstrip().endswith("success"), f"{p.stdout}\n{p.stderr}"
    got = {f.name.replace("sha256-", "sha256:", 1): f.read_bytes() for f in (tmp_path / "alice").glob("sha256-*")}
    assert got == m.blobs, sorted(got)
    dl = wait_for_event(locked, lambda e: e["kind"] == "download" and e["file"] == m.model_digest,
                        "the ollama layer download")
    assert dl["client"] == "alice (127.0.0.1)", dl
    # Something shaped like a signature but not one is refused.
    st, _, _ = request(locked, "GET", "/v2/token?nonce=00&scope=&service=airlock&ts=1",
                       {"Authorization": "AAAA:AAAA"})
    assert st == 401


# ---- refused without a token ----------------------------------------------------------------------------
def test_huggingface_hub_without_a_token_is_refused_with_airlocks_message(locked, tmp_path):
    before = {json.dumps(e) for e in audit_events(locked) if e["kind"] == "download"}
    out = hf_call(locked, tmp_path / "anon", {"op": "download", "repo": "acme/tiny", "filename": "README.md"})
    assert not out["ok"] and out["type"] == "HfHubHTTPError", out
    assert "401" in out["message"] and "requires a client token" in out["message"], out["message"]
    assert "HF_TOKEN" in out["message"], out["message"]
    out = hf_call(locked, tmp_path / "unknown", {"op": "snapshot", "repo": "acme/tiny"},
                  extra_env={"HF_TOKEN": UNKNOWN})
    assert not out["ok"] and "not known to this mirror" in out["message"], out
    # Raw: 401, the reason in X-Error-Message (what a HEAD can show) and in the body.
    st, h, body = request(locked, "HEAD", "/acme/tiny/resolve/main/README.md")
    assert st == 401 and "requires a client token" in h["X-Error-Message"], (st, dict(h))
    after = {json.dumps(e) for e in audit_events(locked) if e["kind"] == "download"}
    assert after == before, "a refused client must not be served"


def test_oci_client_without_credentials_gets_unauthorized(locked, tmp_path):
    st, h, body = request(locked, "GET", "/v2/library/idtiny/manifests/latest")
    assert st == 401, (st, body)
    assert json.loads(body)["errors"][0]["code"] == "UNAUTHORIZED", body
    challenge = h["WWW-Authenticate"]
    assert challenge.startswith("Bearer ") and f'realm="{locked.url}/v2/token"' in challenge, challenge
    # The token endpoint gives nothing to the anonymous or to unknown credentials ...
    st, h, _ = request(locked, "GET", "/v2/token?service=airlock")
    assert st == 401 and h["WWW-Authenticate"].startswith("Basic "), st
    st, _, _ = request(locked, "GET", "/v2/token", {"Authorization": f"Bearer {UNKNOWN}"})
    assert st == 401
    # A client's own credentials buy a short-lived token that names it (and never echoes its token) ...
    basic = "Basic " + base64.b64encode(f"ci:{ALICE}".encode()).decode()
    st, _, body = request(locked, "GET", "/v2/token?service=airlock", {"Authorization": basic})
    assert st == 200 and ALICE.encode() not in body, (st, body)
    issued = json.loads(body)["token"]
    st, _, _ = request(locked, "GET", "/v2/library/idtiny/manifests/latest", {"Authorization": f"Bearer {issued}"})
    assert st == 200, st
    # ... which does not buy another (it cannot be renewed forever without the client's own token).
    st, _, _ = request(locked, "GET", "/v2/token", {"Authorization": f"Bearer {issued}"})
    assert st == 401, st
    # A direct blob URL without a grant (or with a forged one) is refused as well.
    blob = f"/v2/library/idtiny/blobs/{digest_of(b'x')}?direct=1"
    for path in (blob, blob + "&grant=alk1.alice.99999999999.00"):
        st, _, body = request(locked, "GET", path)
        assert st == 401 and b"UNAUTHORIZED" in body, (path, st)
    # oras-py follows the challenge to the token endpoint, gets no token, and gives up.
    out = oras_pull(locked, "library/idtiny:latest", tmp_path / "o")
    assert not out["ok"] and "authentication" in out["message"], out


# ---- upstream and client tokens never mix -----------------------------------------------------------------
def test_the_upstream_token_never_appears_in_responses_or_logs(locked, fake_hub, tmp_path):
    # The gated repo opens only with the upstream token: this download proves Airlock holds and uses it.
    out = hf_call(locked, tmp_path / "g", {"op": "snapshot", "repo": "acme/gated"},
                  extra_env={"HF_TOKEN": ALICE})
    expect_ok(out, locked)
    seen = []
    auth = {"Authorization": f"Bearer {ALICE}"}
    commit = fake_hub.sha("acme/gated")
    for method, path, headers in [
        ("GET", "/api/models/acme/gated", auth),
        ("GET", "/api/models/acme/gated/revision/main", auth),
        ("GET", f"/api/models/acme/gated/tree/{commit}?recursive=true", auth),
        ("GET", "/acme/gated/resolve/main/config.json", auth),
        ("HEAD", "/acme/gated/resolve/main/model.safetensors", auth),
        ("GET", "/acme/gated/resolve/main/nope.bin", auth),
        ("GET", "/api/models/acme/gated-other", auth),
        ("GET", "/acme/gated/resolve/main/config.json", {}),
        ("GET", "/acme/gated/resolve/main/config.json", {"Authorization": f"Bearer {HUB_TOKEN}"}),
        ("GET", "/v2/", {}),
        ("GET", "/v2/token", {"Authorization": f"Bearer {ALICE}"}),
        ("GET", "/metrics", {}),
        ("GET", "/readyz", {}),
        ("GET", "/admin/requests", {"Authorization": "Bearer the-admin-token"}),
        ("GET", "/admin/fetches", {"Authorization": "Bearer the-admin-token"}),
    ]:
        st, h, body = request(locked, method, path, headers)
        seen.append((method, path, st, str(h), body))
    for method, path, st, h, body in seen:
        assert HUB_TOKEN not in h and HUB_TOKEN.encode() not in body, f"{method} {path} ({st}) leaks the upstream token"
    # Presenting the upstream token as a client credential opens nothing.
    assert seen[8][2] == 401, seen[8][:3]
    log = locked.log_path.read_text(errors="replace")
    assert "DEBUG" in log, "the test needs a debug-level log"
    assert HUB_TOKEN not in log, "the upstream token is in the log"
    for t in (ALICE, BOB_ADMIN, UNKNOWN):
        assert t not in log, "a client token is in the log"


def test_a_clients_token_is_never_forwarded_upstream(fake_hub, airlock_factory, tmp_path):
    """Without an upstream token, nothing Airlock sends upstream carries Authorization, whatever the client sent."""
    a = airlock_factory(policy='[policy]\nmode = "allowlist"\n[[policy.allow]]\nhf = "acme/tiny"\n' + CLIENTS)
    fake_hub.reset()
    out = hf_call(a, tmp_path / "h", {"op": "snapshot", "repo": "acme/tiny"}, extra_env={"HF_TOKEN": ALICE})
    expect_ok(out, a)
    sent = fake_hub.stats()["requests"]
    assert sent, "the snapshot should have gone upstream"
    assert not any(r["auth"] for r in sent), [r for r in sent if r["auth"]][:3]
    # Tokens are optional here: the download is still audited under the name, and anonymous clients are served.
    dl = wait_for_event(a, lambda e: e["kind"] == "download", "a download")
    assert dl["client"] == "alice (127.0.0.1)", dl
    out = hf_call(a, tmp_path / "anon", {"op": "download", "repo": "acme/tiny", "filename": "config.json"})
    expect_ok(out, a)
    assert out["sha256"] == hashlib.sha256(TINY["config.json"].encode()).hexdigest()
