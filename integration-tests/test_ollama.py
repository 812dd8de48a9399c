"""Issue 4 end to end: the real `airlock` binary in front of a real registry (Debian's docker-registry,
distribution 2.8) loaded with Ollama-shaped models, pulled by

- `ollama-pull` (integration-tests/ollama-pull), which pulls exactly as `ollama pull` does
  (shared/docs/ollama-protocol.md §1.3: manifest with the docker-v2 Accept, HEAD for the size, one GET that must end
  in 307/200 + Location, parallel unauthenticated Range parts with no status check, sha256 at the end);
- oras-py, a plain OCI client that simply follows the 307;
- raw HTTP for the HEAD/Range/error edge cases.

Findings (what Airlock got wrong, how to reproduce) are in /work/notes/ollama-findings.md; a test that shows an open
finding is xfail(strict=False) with the finding as its reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import request
from ollama_support import (DOCKER_MANIFEST, PULL_TIMEOUT, OllamaAiShim, Pull, digest_of, get_url, gguf,
                            gguf_raw, oci_error, ollama_model, ollama_pull, pull_cmd, rule, start_airlock_ollama,
                            start_registry)

ACCEPT = {"Accept": DOCKER_MANIFEST}
PARALLEL_PULLS = 30


# ---- fixtures -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    r = start_registry(tmp_path_factory.mktemp("registry"))
    yield r
    r.stop()


@pytest.fixture(scope="module")
def models(registry):
    """What upstream holds. Every model has its own blobs, so tests never share a blob's cold/warm state."""
    return {
        "tiny": registry.push(ollama_model("library/tiny")),
        # 4 MiB of weights in one F32 tensor: enough for 16 real Range parts with a small --min-part-size.
        "big": registry.push(ollama_model("library/big", weights=gguf(tensor_bytes=4 << 20, seed="big"))),
        "edge": registry.push(ollama_model("library/edge", weights=gguf(tensor_bytes=64 << 10, seed="edge"))),
        "tamper": registry.push(ollama_model("library/tamper")),
        "cold": registry.push(ollama_model("library/cold", weights=gguf(tensor_bytes=2 << 20, seed="cold"))),
        "pinned": registry.push(ollama_model("library/pinned", seed="pinned-v1")),
        # Upstream has it; Airlock's policy does not allow it.
        "forbidden": registry.push(ollama_model("library/forbidden")),
    }


@pytest.fixture(scope="module")
def ollama_airlock(registry, models, tmp_path_factory):
    rules = "".join(rule(n) for n in ("library/tiny", "library/big", "library/edge", "library/tamper",
                                      "library/cold", "library/missing", "library/scan", "library/moving"))
    # The pin is v1's manifest digest; the pinned test moves the upstream tag to v2.
    rules += rule("library/pinned", tag="latest", manifest=models["pinned"].digest)
    a = start_airlock_ollama(tmp_path_factory.mktemp("airlock-ollama"), registry, rules)
    yield a
    a.stop()
    if os.environ.get("AIRLOCK_TEST_SHOW_LOG"):
        print(a.log())


def explain(pull: Pull, airlock=None, registry=None) -> str:
    msg = pull.explain()
    if airlock is not None:
        msg += f"\n--- airlock log (tail)\n{airlock.log()[-3000:]}"
    if registry is not None:
        msg += f"\n--- registry log (tail)\n{registry.log()[-2000:]}"
    return msg


def assert_pulled(pull: Pull, model, airlock=None, registry=None) -> None:
    """Success, the manifest byte for byte, and every blob (config included) with its right sha256."""
    assert pull.ok, explain(pull, airlock, registry)
    assert pull.manifest() == model.manifest, "the manifest ollama stores must be the upstream bytes, unchanged"
    files = pull.files()
    assert set(files) == set(model.blobs), f"blobs written: {sorted(files)}; expected {sorted(model.blobs)}"
    for d, data in files.items():
        assert digest_of(data) == d and data == model.blobs[d], f"{d}: wrong bytes"


def wait_for(pred, timeout: float, what: str, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(step)


def blob_path(model, digest: str) -> str:
    return f"/v2/{model.name}/blobs/{digest}"


# ---- the ollama way ---------------------------------------------------------------------------------------
def test_ollama_client_pulls_tiny_model(ollama_airlock, models, registry, tmp_path):
    m = models["tiny"]
    pull = ollama_pull(ollama_airlock, "library/tiny:latest", tmp_path / "out")
    assert_pulled(pull, m, ollama_airlock, registry)
    assert pull.manifest() == registry.manifest("library/tiny", "latest")
    # Every blob was handed over by a 307 to another hostname (127.0.0.1 -> localhost) with ?direct=1.
    assert len(pull.blob_lines) == len(m.blobs), pull.stdout
    for line in pull.blob_lines:
        assert f"from http://localhost:{ollama_airlock.port}/v2/library/tiny/blobs/sha256:" in line, line
        assert line.endswith("?direct=1"), line
    # What Airlock keeps: every blob, named by its own sha256.
    held = ollama_airlock.blob_files()
    for d in m.blobs:
        assert d.split(":")[1] in held, f"{d} was served but is not in Airlock's store"
    ollama_airlock.assert_store_consistent()
    # A second pull is served warm: no new blob request reaches upstream.
    before = {d: registry.gets(blob_path(m, d)) for d in m.blobs}
    assert all(n == 1 for n in before.values()), f"upstream blob GETs after one pull: {before}"
    again = ollama_pull(ollama_airlock, "library/tiny", tmp_path / "again")  # default tag `latest`
    assert_pulled(again, m, ollama_airlock)
    assert {d: registry.gets(blob_path(m, d)) for d in m.blobs} == before


def test_ollama_client_pulls_in_16_parallel_range_parts(ollama_airlock, models, tmp_path):
    m = models["big"]
    pull = ollama_pull(ollama_airlock, "library/big:latest", tmp_path / "out", min_part=64 * 1024)
    assert_pulled(pull, m, ollama_airlock)
    weights = next(l for l in pull.blob_lines if m.model_digest.split(":")[1][:12] in l)
    size = len(m.blobs[m.model_digest])
    n_parts = int(weights.split(" in ")[1].split(" parts")[0])
    assert f"{size} bytes" in weights and n_parts >= 16, weights
    statuses = pull.stdout.split(weights, 1)[1].splitlines()[1]
    assert statuses.strip() == f"part statuses: 206 x{n_parts}", f"every part must be an exact 206: {statuses}"


def test_ollama_client_via_localhost_is_sent_to_the_ip(ollama_airlock, models, tmp_path):
    """The other direction of the hostname switch: a client that used `localhost` goes to the local IP."""
    pull = ollama_pull(ollama_airlock, "library/tiny:latest", tmp_path / "out", host="localhost")
    assert_pulled(pull, models["tiny"], ollama_airlock)
    for line in pull.blob_lines:
        assert f"from http://127.0.0.1:{ollama_airlock.port}/" in line, line


def test_ollama_client_enforces_ollamas_blob_rules(registry, models, ollama_ai, tmp_path):
    """The client must fail where ollama fails, or the tests above prove nothing (protocol note traps 1 and 2)."""
    # distribution answers a blob GET with a plain 200 and no Location.
    pull = ollama_pull(registry, "library/tiny:latest", tmp_path / "plain")
    assert pull.rc == 1 and "no Location header" in pull.stderr, pull.explain()
    # A 307 to another hostname is where ollama stops and takes Location ...
    pull = ollama_pull(ollama_ai, "library/tiny:latest", tmp_path / "cross")
    assert_pulled(pull, models["tiny"])
    # ... but a redirect to the same hostname (another port) is followed, and the 200 at its end has no Location.
    pull = ollama_pull(ollama_ai, "library/tiny:latest", tmp_path / "same", host="localhost")
    assert pull.rc == 1 and "no Location header" in pull.stderr, pull.explain()


# ---- a plain OCI client ----------------------------------------------------------------------------------
ORAS_PULL = textwrap.dedent("""
    import json, sys
    import oras.client
    files = oras.client.OrasClient(insecure=True).pull(target=sys.argv[1], outdir=sys.argv[2])
    print(json.dumps(files))
""")


def test_oras_pulls_the_same_model(ollama_airlock, models, tmp_path):
    m = models["tiny"]
    out = tmp_path / "oras"
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    p = subprocess.run([sys.executable, "-c", ORAS_PULL, f"127.0.0.1:{ollama_airlock.port}/library/tiny:latest",
                        str(out)], capture_output=True, text=True, timeout=PULL_TIMEOUT, env=env)
    assert p.returncode == 0, f"oras pull failed:\n{p.stdout}\n{p.stderr[-3000:]}"
    files = {Path(f).name: Path(f).read_bytes() for f in json.loads(p.stdout.strip().splitlines()[-1])}
    # oras saves the layers (not the config) as files named by digest.
    assert set(files) == {l["digest"] for l in m.layers}, sorted(files)
    for d, data in files.items():
        assert digest_of(data) == d and data == m.blobs[d], f"{d}: wrong bytes from oras"


# ---- edge cases over raw HTTP ------------------------------------------------------------------------------
def test_base_endpoint(ollama_airlock):
    st, h, body = request(ollama_airlock, "GET", "/v2/")
    assert st == 200 and json.loads(body) == {}, (st, body)


def test_manifest_get_and_head(ollama_airlock, models):
    m = models["edge"]
    for ref in ("latest", m.digest):
        st, h, body = request(ollama_airlock, "GET", f"/v2/library/edge/manifests/{ref}", ACCEPT)
        assert st == 200, (ref, st, body)
        assert body == m.manifest, f"{ref}: not the upstream bytes"
        assert h["Content-Type"] == DOCKER_MANIFEST
        assert h["Docker-Content-Digest"] == m.digest
        assert int(h["Content-Length"]) == len(m.manifest)
        st, h, _ = request(ollama_airlock, "HEAD", f"/v2/library/edge/manifests/{ref}", ACCEPT)
        assert st == 200 and h["Docker-Content-Digest"] == m.digest, (ref, st)
        assert int(h["Content-Length"]) == len(m.manifest) and h["Content-Type"] == DOCKER_MANIFEST


def test_blob_head_has_exact_length(ollama_airlock, models):
    m = models["edge"]
    request(ollama_airlock, "GET", "/v2/library/edge/manifests/latest", ACCEPT)
    for d, data in m.blobs.items():
        st, h, body = request(ollama_airlock, "HEAD", blob_path(m, d))
        assert st == 200, (d, st)
        assert int(h["Content-Length"]) == len(data), f"{d}: HEAD Content-Length {h['Content-Length']} != {len(data)}"
        assert h["Docker-Content-Digest"] == d


def test_blob_get_is_a_307_to_another_hostname_serving_bytes_and_ranges(ollama_airlock, models):
    m = models["edge"]
    request(ollama_airlock, "GET", "/v2/library/edge/manifests/latest", ACCEPT)
    d = m.model_digest
    data = m.blobs[d]
    n = len(data)
    st, h, body = request(ollama_airlock, "GET", blob_path(m, d))
    assert st == 307, f"ollama needs a 307 (or 200 + Location) on a blob GET, got {st}"
    loc = h["Location"]
    assert loc == f"http://localhost:{ollama_airlock.port}{blob_path(m, d)}?direct=1", loc
    # The direct URL: 200 with everything (what oras and curl get after following the 307) ...
    st, h, body = get_url(loc)
    assert st == 200 and body == data and int(h["Content-Length"]) == n, (st, len(body))
    # ... exact 206 slices ...
    st, h, body = get_url(loc, {"Range": "bytes=0-3"})
    assert (st, body, h["Content-Range"]) == (206, b"GGUF", f"bytes 0-3/{n}"), (st, body[:8], h["Content-Range"])
    assert int(h["Content-Length"]) == 4
    st, h, body = get_url(loc, {"Range": "bytes=-5"})
    assert (st, body, h["Content-Range"]) == (206, data[-5:], f"bytes {n - 5}-{n - 1}/{n}")
    st, h, body = get_url(loc, {"Range": f"bytes=100-{n + 1000}"})
    assert (st, body, h["Content-Range"]) == (206, data[100:], f"bytes 100-{n - 1}/{n}")
    st, h, body = get_url(loc, {"Range": f"bytes={n // 2}-"})
    assert (st, body) == (206, data[n // 2:])
    # ... and 416 outside the blob.
    st, h, body = get_url(loc, {"Range": f"bytes={n}-"})
    assert st == 416 and h["Content-Range"] == f"bytes */{n}", (st, body)
    # HEAD on the direct URL (HEAD follows redirects in ollama) also carries the exact length.
    st, h, _ = get_url(loc, method="HEAD")
    assert st == 200 and int(h["Content-Length"]) == n


def test_bad_digests_are_400(ollama_airlock):
    for d in ("sha256:zz", "sha512:" + "a" * 128, "sha256:" + "a" * 63, "md5:0123"):
        st, _, body = request(ollama_airlock, "GET", f"/v2/library/tiny/blobs/{d}")
        assert st == 400 and oci_error(body)[0] == "DIGEST_INVALID", (d, st, body)


def test_pushes_and_deletes_are_405(ollama_airlock, models):
    m = models["tiny"]
    for method, path, body in (
        ("POST", "/v2/library/tiny/blobs/uploads/", b""),
        ("PUT", "/v2/library/tiny/manifests/latest", m.manifest),
        ("DELETE", "/v2/library/tiny/manifests/latest", None),
        ("PATCH", "/v2/library/tiny/blobs/uploads/x", b"abc"),
    ):
        st, _, resp = request(ollama_airlock, method, path, {"Content-Type": DOCKER_MANIFEST}, body)
        assert st == 405 and oci_error(resp)[0] == "UNSUPPORTED", (method, path, st, resp)


def test_unknown_upstream_model_is_404_manifest_unknown(ollama_airlock, tmp_path):
    st, _, body = request(ollama_airlock, "GET", "/v2/library/missing/manifests/latest", ACCEPT)
    assert st == 404 and oci_error(body)[0] == "MANIFEST_UNKNOWN", (st, body)
    pull = ollama_pull(ollama_airlock, "library/missing:latest", tmp_path / "out")
    assert pull.rc == 1 and "Error: pull model manifest: file does not exist" in pull.stderr, pull.explain()


def test_blob_not_in_an_approved_manifest_is_404(ollama_airlock, models):
    request(ollama_airlock, "GET", "/v2/library/tiny/manifests/latest", ACCEPT)
    other = models["big"].model_digest  # a real upstream blob, but of another model
    for q in ("", "?direct=1"):
        st, _, body = request(ollama_airlock, "GET", f"/v2/library/tiny/blobs/{other}{q}")
        assert st == 404 and oci_error(body)[0] == "BLOB_UNKNOWN", (q, st, body)
        st, _, _ = request(ollama_airlock, "HEAD", f"/v2/library/tiny/blobs/{other}{q}")
        assert st == 404, (q, st)


def test_a_name_needs_a_namespace(ollama_airlock):
    st, _, body = request(ollama_airlock, "GET", "/v2/tiny/manifests/latest", ACCEPT)
    assert st in (400, 404) and oci_error(body)[0] in ("NAME_INVALID", "NAME_UNKNOWN", "NOT_FOUND"), (st, body)


# ---- refusals ---------------------------------------------------------------------------------------------
def test_refused_name_shows_the_denied_message(ollama_airlock, models, registry, tmp_path):
    st, h, body = request(ollama_airlock, "GET", "/v2/library/forbidden/manifests/latest", ACCEPT)
    assert st == 403, (st, body)
    code, message = oci_error(body)
    assert code == "DENIED" and "library/forbidden" in message and "not approved" in message, body
    # What ollama shows: "Error: pull model manifest: 403: <raw body>".
    pull = ollama_pull(ollama_airlock, "library/forbidden:latest", tmp_path / "out")
    assert pull.rc == 1, pull.explain()
    assert pull.stderr.strip() == f"Error: pull model manifest: 403: {body.decode()}", pull.stderr
    # Blobs of a refused model are refused too (403, not 404: the reason must reach the user).
    d = models["forbidden"].model_digest
    for method in ("GET", "HEAD"):
        st, _, body = request(ollama_airlock, method, f"/v2/library/forbidden/blobs/{d}")
        assert st == 403, (method, st, body)
    # Not through the direct URL either.
    st, _, body = request(ollama_airlock, "GET", f"/v2/library/forbidden/blobs/{d}?direct=1")
    assert st == 403 and body != models["forbidden"].blobs[d], st


def upstream_blob_gets(registry, model) -> list[str]:
    return [r["uri"] for r in registry.requests() if r["method"] == "GET" and "airlock" in r["agent"]
            and r["uri"].split("?")[0] in {blob_path(model, d) for d in model.blobs}]


@pytest.mark.parametrize("governance", ["prefetch_max_bytes = 65536", "prefetch_requests = false"],
                         ids=["over-the-prefetch-limit", "prefetch-off"])
def test_refused_name_does_not_download_the_model(registry, governance, tmp_path):
    """F7: any client can ask for any name, and a refused name becomes a review request that Airlock prefetches in
    the background. That must stay bounded: a version larger than `[governance] prefetch_max_bytes` (or any
    version, with `prefetch_requests = false`) is not downloaded until a reviewer asks for it."""
    m = registry.push(ollama_model("library/forbidden", tag=governance.split()[0],
                                   weights=gguf(tensor_bytes=256 << 10, seed=f"forbidden-{governance}")))
    a = start_airlock_ollama(tmp_path / "a", registry, rule("library/tiny") + f"[governance]\n{governance}\n")
    try:
        st, _, body = request(a, "GET", f"/v2/library/forbidden/manifests/{m.tag}", ACCEPT)
        assert st == 403 and oci_error(body)[0] == "DENIED", (st, body[:300])
        time.sleep(1.0)  # the background prefetch, if any, would start at once
        assert not upstream_blob_gets(registry, m), "a refused name made Airlock download its blobs"
        assert not a.blob_files().keys() & {d.split(":")[1] for d in m.blobs if d != m.config_digest}
    finally:
        a.stop()


def test_tampered_upstream_blob_is_refused_and_never_stored(ollama_airlock, models, registry, tmp_path):
    m = models["tamper"]
    d = m.model_digest
    good = m.blobs[d]
    # Flip one byte of the stored weights inside the registry: same size, different sha256. Distribution serves
    # its `data` file as it is, so the upstream now answers this digest with the wrong bytes.
    path = registry.blob_data_path(d)
    assert path.read_bytes() == good
    bad = bytearray(good)
    bad[-1] ^= 0x01
    bad = bytes(bad)
    path.write_bytes(bad)
    st, _, body = registry.call("GET", blob_path(m, d))
    assert st == 200 and body == bad, "the registry should serve the tampered bytes as they are"

    # The manifest GET fetches and checks its blobs; the bad one refuses the manifest itself, with its reason
    # (test_ollama_refusals.py), and once it is checked even its HEAD is refused.
    st, _, body = request(ollama_airlock, "GET", "/v2/library/tamper/manifests/latest", ACCEPT)
    assert st == 403 and d in oci_error(body)[1], (st, body[:300])
    wait_for(lambda: request(ollama_airlock, "HEAD", blob_path(m, d))[0] == 403, 20, "the tampered blob refused")
    st, _, body = request(ollama_airlock, "GET", blob_path(m, d))
    assert st == 403 and oci_error(body)[0] == "DENIED", (st, body)
    assert "sha256" in oci_error(body)[1] or "digest" in oci_error(body)[1].lower(), body

    # The pull fails (with a reason on the manifest: see the next test).
    pull = ollama_pull(ollama_airlock, "library/tamper:latest", tmp_path / "out")
    assert pull.rc == 1 and "403" in pull.stderr, pull.explain()
    assert not (tmp_path / "out" / f"sha256-{d.split(':')[1]}").exists()
    # Never served: neither through the redirect target nor any other way.
    for q in ("?direct=1", ""):
        st, _, body = request(ollama_airlock, "GET", blob_path(m, d) + q, {"Range": "bytes=0-"})
        assert st == 403 and body != bad and bad[-64:] not in body, (q, st)
    # Never stored: no promoted blob has the bad bytes, or is filed under the digest.
    assert d.split(":")[1] not in ollama_airlock.blob_files()
    assert not ollama_airlock.holds_content(bad)
    # Quarantine may hold another fetch's file for a moment; a refused blob's must not stay.
    wait_for(lambda: not ollama_airlock.quarantine_files(), 5, "an empty quarantine (a refused blob left debris)")
    ollama_airlock.assert_store_consistent()


def test_refused_blob_reason_reaches_the_user_on_the_next_pull(ollama_airlock, models, registry, tmp_path):
    """Once a blob is refused, the manifest is refused with the blob's reason: the only place ollama shows text."""
    m = registry.push(ollama_model("library/tamper", tag="again", seed="tamper-again"))
    d = m.model_digest
    path = registry.blob_data_path(d)
    bad = bytearray(path.read_bytes())
    bad[-1] ^= 0x01
    path.write_bytes(bytes(bad))
    request(ollama_airlock, "GET", "/v2/library/tamper/manifests/again", ACCEPT)
    wait_for(lambda: request(ollama_airlock, "HEAD", blob_path(m, d))[0] == 403, 20, "the tampered blob refused")
    # Airlock now knows this manifest cannot be pulled: the next pull should be told why, on the manifest.
    pull = ollama_pull(ollama_airlock, "library/tamper:again", tmp_path / "out")
    assert pull.rc == 1, pull.explain()
    assert "Error: pull model manifest: 403: " in pull.stderr and "DENIED" in pull.stderr, pull.stderr
    assert "sha256" in pull.stderr or "digest" in pull.stderr, pull.stderr


# ---- scanning ---------------------------------------------------------------------------------------------
EVIL_TEMPLATE = b"{{ ''.__class__.__mro__[1].__subclasses__()[40]('/etc/passwd').read() }}"
SCAN_CASES = {
    # tag: (layer media type suffix, layer bytes, words the refusal must contain)
    "gguf-bad-count": ("model", gguf_raw([(b"general.architecture", b"llama")], n_tensors=1 << 40), "GGUF"),
    "gguf-evil-chat-template": ("model", gguf_raw([(b"general.architecture", b"llama"),
                                                   (b"tokenizer.chat_template", EVIL_TEMPLATE)]), "chat_template"),
    "evil-template-layer": ("template", EVIL_TEMPLATE, "__class__"),
}


def scan_model(registry, tag: str, kind: str, data: bytes):
    kw = {"weights": data} if kind == "model" else {kind: data}
    return registry.push(ollama_model("library/scan", tag=tag, seed=f"scan-{tag}", **kw))


def blob_answer(airlock, model, digest: str):
    """Asks for the manifest (which fetches and checks the blobs: a refused one refuses the manifest, naming it),
    then for the blob: (status, body)."""
    st, _, body = request(airlock, "GET", f"/v2/{model.name}/manifests/{model.tag}", ACCEPT)
    assert st == 200 or (st == 403 and digest in oci_error(body)[1]), (st, body)
    st, _, body = request(airlock, "GET", blob_path(model, digest))
    return st, body


@pytest.mark.parametrize("tag", sorted(SCAN_CASES))
def test_scanner_refuses_dangerous_layers(ollama_airlock, registry, tag, tmp_path):
    kind, data, word = SCAN_CASES[tag]
    m = scan_model(registry, tag, kind, data)
    d = digest_of(data)
    st, body = blob_answer(ollama_airlock, m, d)
    assert st == 403, (st, body[:300])
    code, message = oci_error(body)
    assert code == "DENIED" and word in message, message
    pull = ollama_pull(ollama_airlock, f"library/scan:{tag}", tmp_path / "out")
    assert pull.rc == 1, pull.explain()
    assert d.split(":")[1] not in ollama_airlock.blob_files() and not ollama_airlock.holds_content(data)


@pytest.mark.parametrize("what,data", [("text", b"hello world, this is not a gguf file at all\n"),
                                       ("zeros", b"\0" * 4096)], ids=["text", "zeros"])
def test_model_layer_that_is_not_gguf_is_refused(ollama_airlock, registry, what, data):
    m = scan_model(registry, f"not-gguf-{what}", "model", data)
    st, body = blob_answer(ollama_airlock, m, digest_of(data))
    assert st == 403 and oci_error(body)[0] == "DENIED", (st, body[:300])


def test_params_layer_that_is_not_json_is_refused(ollama_airlock, registry):
    data = b"{not json"
    m = scan_model(registry, "params-not-json", "params", data)
    st, body = blob_answer(ollama_airlock, m, digest_of(data))
    assert st == 403 and oci_error(body)[0] == "DENIED", (st, body[:300])


# ---- pinning ----------------------------------------------------------------------------------------------
def test_moved_upstream_tag_does_not_change_the_pinned_manifest(ollama_airlock, models, registry, tmp_path):
    v1 = models["pinned"]
    v2 = registry.push(ollama_model("library/pinned", seed="pinned-v2", system="You were moved."))
    assert registry.manifest("library/pinned", "latest") == v2.manifest, "upstream tag did not move"

    pull = ollama_pull(ollama_airlock, "library/pinned:latest", tmp_path / "out")
    assert_pulled(pull, v1, ollama_airlock, registry)
    st, h, body = request(ollama_airlock, "GET", "/v2/library/pinned/manifests/latest", ACCEPT)
    assert st == 200 and body == v1.manifest and h["Docker-Content-Digest"] == v1.digest
    # Nothing of v2 was fetched.
    held = ollama_airlock.blob_files()
    assert not [d for d in v2.blobs if d not in v1.blobs and d.split(":")[1] in held]
    # The drift is recorded for review (the log is the only place it shows).
    wait_for(lambda: "moved away from its pin" in ollama_airlock.log(), 10, "the drift warning in airlock's log")


def test_pinned_tag_does_not_serve_other_manifests_by_digest(ollama_airlock, models, registry):
    """The pin fixes which manifest is served under the name: a digest that is not the pin is not approved."""
    v2 = ollama_model("library/pinned", seed="pinned-v2", system="You were moved.")
    registry.push(v2)  # idempotent if the test above ran
    st, _, body = request(ollama_airlock, "GET", f"/v2/library/pinned/manifests/{v2.digest}", ACCEPT)
    assert st == 403 and oci_error(body)[0] == "DENIED", (st, body[:300])


# ---- single-flight ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cold_pulls(ollama_airlock, models, tmp_path_factory):
    """30 ollama-pull processes started at once against a model nobody has asked for yet."""
    base = tmp_path_factory.mktemp("cold-pulls")
    procs = []
    for i in range(PARALLEL_PULLS):
        out = base / f"p{i}"
        procs.append((out, subprocess.Popen(pull_cmd(ollama_airlock, "library/cold:latest", out),
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    results = []
    deadline = time.monotonic() + 2 * PULL_TIMEOUT
    for out, p in procs:
        try:
            so, se = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            so, se = p.communicate()
        results.append(Pull(p.returncode, so, se, out))
    return results


def test_parallel_cold_pulls_all_succeed(cold_pulls, models, ollama_airlock):
    failed = [r for r in cold_pulls if not r.ok]
    assert not failed, f"{len(failed)} of {PARALLEL_PULLS} pulls failed; first:\n{explain(failed[0], ollama_airlock)}"
    for r in cold_pulls:
        assert_pulled(r, models["cold"])


def test_parallel_cold_pulls_fetch_each_blob_once(cold_pulls, models, registry):
    m = models["cold"]
    counts = {d: registry.gets(blob_path(m, d)) for d in m.blobs}
    assert all(n == 1 for n in counts.values()), f"upstream GETs per blob after {PARALLEL_PULLS} pulls: {counts}"


def test_parallel_cold_pulls_fetch_the_manifest_once(cold_pulls, models, registry):
    m = models["cold"]
    tag = registry.gets("/v2/library/cold/manifests/latest")
    by_digest = registry.gets(f"/v2/library/cold/manifests/{m.digest}")
    assert (tag, by_digest) == (1, 0), f"upstream manifest GETs: by tag {tag}, by digest {by_digest}"


# ---- names ------------------------------------------------------------------------------------------------
def test_policy_matches_names_case_insensitively(ollama_airlock, models, tmp_path):
    """ollama may send a local model's casing on the wire (protocol note §1.2)."""
    pull = ollama_pull(ollama_airlock, "Library/Tiny:latest", tmp_path / "out")
    assert_pulled(pull, models["tiny"], ollama_airlock)


# ---- upstream failures ------------------------------------------------------------------------------------
def test_upstream_down_is_a_short_502_without_internals(registry, tmp_path):
    from conftest import free_port
    dead = free_port()  # nothing listens there

    class Dead:
        url = f"http://127.0.0.1:{dead}"

    a = start_airlock_ollama(tmp_path / "a", Dead, rule("library/tiny"))
    try:
        st, _, body = request(a, "GET", "/v2/library/tiny/manifests/latest", ACCEPT)
        assert st in (502, 503), (st, body)
        code, message = oci_error(body)
        pull = ollama_pull(a, "library/tiny:latest", tmp_path / "out")
        assert pull.rc == 1 and f"Error: pull model manifest: {st}: " in pull.stderr, pull.explain()
        for leak in ("os error", "tcp connect", "client error", "(Connect)", str(dead), "hyper", "reqwest"):
            assert leak not in message, f"internal detail {leak!r} in the client-visible message: {message!r}"
    finally:
        a.stop()


# ---- an upstream like registry.ollama.ai (blobs on a CDN host) ----------------------------------------------
@pytest.fixture(scope="module")
def ollama_ai(registry):
    shim = OllamaAiShim(registry)
    yield shim
    shim.stop()


@pytest.fixture(scope="module")
def cdn_model(registry):
    return registry.push(ollama_model("library/cdn", weights=gguf(tensor_bytes=256 << 10, seed="cdn")))


def test_upstream_blob_redirect_to_a_listed_cdn_host_is_followed(ollama_ai, cdn_model, registry, tmp_path):
    a = start_airlock_ollama(tmp_path / "a", ollama_ai, rule("library/cdn"),
                             redirect_hosts=[f"localhost:{registry.port}"])
    try:
        before = ollama_ai.redirects
        pull = ollama_pull(a, "library/cdn:latest", tmp_path / "out")
        assert_pulled(pull, cdn_model, a, registry)
        assert ollama_ai.redirects - before == len(cdn_model.blobs), "every blob should come through the CDN redirect"
        a.assert_store_consistent()
    finally:
        a.stop()


def test_manifest_is_served_as_docker_v2_whatever_upstream_says(ollama_ai, cdn_model, registry, tmp_path):
    a = start_airlock_ollama(tmp_path / "a", ollama_ai, rule("library/cdn"),
                             redirect_hosts=[f"localhost:{registry.port}"])
    try:
        st, h, body = request(a, "GET", "/v2/library/cdn/manifests/latest", ACCEPT)
        assert st == 200 and body == cdn_model.manifest, (st, body[:200])
        assert h["Content-Type"] == DOCKER_MANIFEST, h["Content-Type"]
    finally:
        a.stop()


def test_upstream_blob_redirect_to_an_unlisted_host_is_refused(ollama_ai, cdn_model, registry, tmp_path):
    a = start_airlock_ollama(tmp_path / "a", ollama_ai, rule("library/cdn"), redirect_hosts=[])
    try:
        st, _, _ = request(a, "GET", "/v2/library/cdn/manifests/latest", ACCEPT)
        assert st == 200
        d = cdn_model.model_digest
        st, _, body = request(a, "GET", blob_path(cdn_model, d))
        # A refusal or an upstream error, with a reason (not a 404, which ollama shows as "file does not exist").
        assert st >= 400 and st != 404 and oci_error(body)[1], (st, body)
        st, _, body = request(a, "GET", blob_path(cdn_model, d) + "?direct=1")
        assert st >= 400 and body != cdn_model.blobs[d], st
        assert a.blob_files().keys().isdisjoint(x.split(":")[1] for x in cdn_model.blobs)
        wait_for(lambda: not a.quarantine_files(), 5, "an empty quarantine after the refused fetches")
    finally:
        a.stop()


# ---- unpinned tags follow upstream after the tag TTL --------------------------------------------------------
def test_unpinned_tag_follows_upstream_after_its_ttl(registry, tmp_path):
    v1 = registry.push(ollama_model("library/moving", seed="moving-v1"))
    a = start_airlock_ollama(tmp_path / "a", registry, rule("library/moving"), tag_ttl_secs=2)
    try:
        st, _, body = request(a, "GET", "/v2/library/moving/manifests/latest", ACCEPT)
        assert st == 200 and body == v1.manifest
        v2 = registry.push(ollama_model("library/moving", seed="moving-v2"))
        st, _, body = request(a, "GET", "/v2/library/moving/manifests/latest", ACCEPT)
        assert st == 200 and body == v1.manifest, "within the TTL the resolved tag is kept"
        time.sleep(2.5)
        pull = ollama_pull(a, "library/moving:latest", tmp_path / "out")
        assert_pulled(pull, v2, a, registry)
    finally:
        a.stop()
