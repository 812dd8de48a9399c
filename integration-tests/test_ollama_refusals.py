"""A refused Ollama layer's reason reaches the user of `ollama pull` (issue 12, "Ollama").

ollama shows text in one place only: the body of a failed manifest GET (`Error: pull model manifest: 403: …`). Its
blob requests start with a HEAD (no body: `Error: 403: `), and a failed GET for a blob's direct URL is retried for
30 s and then reported as `context deadline exceeded` (server/download.go). So Airlock holds the manifest while the
layers are fetched and checked, and refuses the manifest itself, with the layer's reason, when one fails — on the
first pull, not only on the next one.

The per-media-type format check holds for every manifest that lists a blob, not only for the one it was first
fetched for: the same bytes are a fine template and a bad model layer."""

from __future__ import annotations

import pytest

from conftest import request
from ollama_support import (DOCKER_MANIFEST, oci_error, ollama_model, ollama_pull, rule, start_airlock_ollama,
                            start_registry)

ACCEPT = {"Accept": DOCKER_MANIFEST}


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    r = start_registry(tmp_path_factory.mktemp("registry"))
    yield r
    r.stop()


@pytest.fixture(scope="module")
def airlock(registry, tmp_path_factory):
    rules = "".join(rule(n) for n in ("library/tampered", "library/texty", "library/reuse"))
    a = start_airlock_ollama(tmp_path_factory.mktemp("airlock"), registry, rules)
    yield a
    a.stop()


def error_line(pull) -> str:
    """What the user reads: ollama prints the one `Error: …` line."""
    lines = [ln for ln in pull.stderr.splitlines() if ln.startswith("Error: ")]
    assert len(lines) == 1, pull.explain()
    return lines[0]


def test_a_layer_failing_verification_is_explained_on_the_first_pull(airlock, registry, tmp_path):
    m = registry.push(ollama_model("library/tampered", seed="tampered-first"))
    d = m.model_digest
    path = registry.blob_data_path(d)
    bad = bytearray(path.read_bytes())
    bad[-1] ^= 0x01
    path.write_bytes(bytes(bad))
    # Nothing asked before: this is the user's first pull of the model.
    pull = ollama_pull(airlock, "library/tampered:latest", tmp_path / "out")
    assert pull.rc == 1, pull.explain()
    line = error_line(pull)
    assert line.startswith("Error: pull model manifest: 403: "), line
    assert "DENIED" in line and d in line and "sha256" in line, line
    assert d.split(":")[1] not in airlock.blob_files()
    assert not airlock.holds_content(bytes(bad))


def test_the_same_bytes_are_checked_again_under_another_media_type(airlock, registry, tmp_path):
    text = b"{{ .Prompt }} -- a template that is a fine template and no GGUF at all\n"
    first = registry.push(ollama_model("library/texty", template=text, seed="texty"))
    assert ollama_pull(airlock, "library/texty:latest", tmp_path / "a").ok
    # Another model lists the very same bytes (same digest, now Ready in the store) as its weights.
    reuse = registry.push(ollama_model("library/reuse", weights=text, seed="reuse"))
    assert reuse.model_digest in first.blobs
    st, _, body = request(airlock, "GET", "/v2/library/reuse/manifests/latest", ACCEPT)
    assert st == 403, (st, body[:300])
    code, message = oci_error(body)
    assert code == "DENIED" and "GGUF" in message.upper() and reuse.model_digest in message, message
    st, _, body = request(airlock, "GET", f"/v2/library/reuse/blobs/{reuse.model_digest}")
    assert st == 403 and oci_error(body)[0] == "DENIED", (st, body[:300])
    pull = ollama_pull(airlock, "library/reuse:latest", tmp_path / "b")
    assert pull.rc == 1 and "gguf" in error_line(pull).lower(), pull.explain()
    # The first model, whose template those bytes are, still pulls.
    st, _, _ = request(airlock, "GET", f"/v2/library/texty/blobs/{reuse.model_digest}?direct=1")
    assert st == 200
