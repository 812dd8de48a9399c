"""Internal failures reach no client (issue 12, "Errors"). When the mirror's own disk or index fails, the client is
told the kind of failure (a stable short code such as `E-IO`), a reason in words and a reference; the detail — paths
under the data directory, the OS or library error text — is logged once, on one line carrying the same reference,
and never sent. Provoked for real: a data-directory entry the server needs is replaced by a regular file while it
runs (root ignores permission bits, so "unreadable" is made with a wrong file type instead)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import default_policy, request, start_airlock
from fake_hub import model_bytes
from ollama_support import DOCKER_MANIFEST, ollama_model, rule, start_airlock_ollama, start_registry

# What the OS and Rust say about these failures; none of it may reach a client.
RUST_TEXT = ("os error", "Not a directory", "Is a directory", "No such file", "Permission denied", "io::", "Os {")


def everything_sent(h, body: bytes) -> str:
    return "\n".join(f"{k}: {v}" for k, v in h.items()) + "\n" + body.decode("utf-8", "replace")


def assert_nothing_internal(a, h, body: bytes, detail: str) -> str:
    """The answer carries a code, a reason and a reference, and no path or OS text; returns the reference."""
    sent = everything_sent(h, body)
    assert str(a.data_dir) not in sent and detail not in sent, sent
    for t in RUST_TEXT:
        assert t not in sent, (t, sent)
    assert "see server log" not in sent, sent
    m = re.search(r"internal error (E-[A-Z]+) \(ref ([0-9a-f]{8})\)", sent)
    assert m, sent
    assert m.group(1) == "E-IO", sent
    return m.group(2)


def log_lines(a) -> list[str]:
    return Path(a.log_path).read_text(errors="replace").splitlines()


def assert_logged_once(a, reference: str, detail: str, since: int = 0) -> None:
    """Exactly one line has the reference, and it has the detail; since line `since`, no other line has it."""
    lines = log_lines(a)
    with_ref = [ln for ln in lines if reference in ln]
    assert len(with_ref) == 1, with_ref
    assert detail in with_ref[0] and "E-IO" in with_ref[0], with_ref[0]
    # The detail is logged once for this request, not again by the engine or a second mapping.
    again = [ln for ln in lines[since:] if detail in ln]
    assert len(again) == 1, again


def block(path: Path) -> None:
    """Replaces a directory the server writes into with a regular file of the same name."""
    if path.is_dir():
        shutil.rmtree(path)
    path.write_text("not a directory\n")


def unblock(path: Path) -> None:
    path.unlink()
    path.mkdir()


# ---- Hugging Face -----------------------------------------------------------------------------------------
@pytest.fixture
def hf_airlock(fake_hub, tmp_path):
    fake_hub.add_repo("acme/internal", {"config.json": "{}\n", "model.safetensors": model_bytes(4096, "internal")})
    policy = default_policy(fake_hub) + '[[policy.allow]]\nhf = "acme/internal"\n'
    a = start_airlock(tmp_path / "a", fake_hub, policy=policy)
    yield a
    a.stop()


def test_a_listing_that_cannot_be_stored_shows_a_code_not_a_path(hf_airlock):
    a = hf_airlock
    listings = a.data_dir / "manifests" / "hf"
    block(listings)
    st, h, body = request(a, "GET", "/api/models/acme/internal/revision/main")
    assert st == 500, (st, body[:400])
    assert h.get("X-Error-Code") == "InternalError"
    ref = assert_nothing_internal(a, h, body, str(listings))
    assert_logged_once(a, ref, str(listings))
    # Not sticky: once the directory is back, the same request works.
    unblock(listings)
    st, _, body = request(a, "GET", "/api/models/acme/internal/revision/main")
    assert st == 200, body[:400]


def test_a_quarantine_that_cannot_be_written_shows_a_code_not_a_path(hf_airlock):
    a = hf_airlock
    st, _, _ = request(a, "GET", "/api/models/acme/internal/revision/main")
    assert st == 200
    q = a.data_dir / "quarantine"
    block(q)
    for method in ("HEAD", "GET"):
        since = len(log_lines(a))
        st, h, body = request(a, method, "/acme/internal/resolve/main/model.safetensors")
        assert st == 500, (method, st, body[:400])
        assert h.get("X-Error-Code") == "InternalError"
        msg = h.get("X-Error-Message", "")
        assert "upstream" not in msg.lower(), f"the mirror's own failure is not an upstream error: {msg}"
        ref = re.search(r"ref ([0-9a-f]{8})", msg)
        assert ref, msg
        assert_nothing_internal(a, h, body, str(q))
        assert_logged_once(a, ref.group(1), str(q), since)
    unblock(q)
    st, _, body = request(a, "GET", "/acme/internal/resolve/main/model.safetensors")
    assert st in (200, 302, 429), (st, body[:400])
    a.assert_store_consistent()


# ---- Ollama / OCI -----------------------------------------------------------------------------------------
@pytest.fixture
def oci_airlock(tmp_path):
    registry = start_registry(tmp_path / "registry")
    model = registry.push(ollama_model("library/internal", seed="internal"))
    a = start_airlock_ollama(tmp_path / "a", registry, rule("library/internal"))
    yield a, model
    a.stop()
    registry.stop()


def test_an_oci_manifest_that_cannot_be_quarantined_shows_a_code_not_a_path(oci_airlock):
    a, m = oci_airlock
    q = a.data_dir / "quarantine"
    block(q)
    since = len(log_lines(a))
    st, h, body = request(a, "GET", "/v2/library/internal/manifests/latest", {"Accept": DOCKER_MANIFEST})
    assert st == 500, (st, body[:400])
    err = json.loads(body)["errors"][0]
    assert err["code"] == "UNKNOWN", err
    ref = assert_nothing_internal(a, h, body, str(q))
    assert_logged_once(a, ref, str(q), since)
    unblock(q)
    st, _, body = request(a, "GET", "/v2/library/internal/manifests/latest", {"Accept": DOCKER_MANIFEST})
    assert st == 200, body[:400]
