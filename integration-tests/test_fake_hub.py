"""The fake Hub itself, driven directly by the real huggingface_hub (no Airlock).

These pin down that the test upstream behaves like the Hub the protocol note describes, so a failure in the
Airlock tests points at Airlock, not at the fixture. They need no airlock binary.
"""

import json

from conftest import DS, TINY, TINY_PR1, as_bytes, expect_ok, hf_call, request, sha256

NO_XET = {"HF_HUB_DISABLE_XET": "1"}


def test_direct_download_and_snapshot(fake_hub, tmp_path):
    out = expect_ok(hf_call(fake_hub.url, tmp_path, {"op": "download", "repo": "acme/tiny",
                                                     "filename": "model.safetensors"}, NO_XET))
    assert out["sha256"] == sha256(TINY["model.safetensors"])
    out = expect_ok(hf_call(fake_hub.url, tmp_path, {"op": "snapshot", "repo": "acme/tiny"}, NO_XET))
    assert out["files"] == {p: sha256(as_bytes(v)) for p, v in TINY.items()}
    out = expect_ok(hf_call(fake_hub.url, tmp_path, {"op": "download", "repo": "acme/tiny",
                                                     "filename": "config.json", "revision": "refs/pr/1"}, NO_XET))
    assert out["sha256"] == sha256(as_bytes(TINY_PR1["config.json"]))


def test_direct_dataset_ranged_read(fake_hub, tmp_path):
    data = DS["data/train-00000.parquet"]
    out = expect_ok(hf_call(fake_hub.url, tmp_path, {"op": "fs_read", "path": "datasets/acme/tiny-ds/data/"
                                                     "train-00000.parquet", "offset": 100, "length": 5000}, NO_XET))
    assert out["sha256"] == sha256(data[100:5100])


def test_hub_shapes(fake_hub):
    st, h, body = request(fake_hub, "GET", "/api/models/acme/tiny/tree/main?recursive=true&expand=false")
    assert st == 200 and "Link" in h and h["Link"].startswith(f"<{fake_hub.url}/")
    assert len(json.loads(body)) == 3
    st, _, body = request(fake_hub, "GET", "/api/models/acme/tiny/tree/main/sub?recursive=true")
    assert any("xetHash" in e for e in json.loads(body))  # the Hub advertises Xet; Airlock must strip it
    st, h, _ = request(fake_hub, "HEAD", "/acme/tiny/resolve/main/model.safetensors")
    assert st == 302 and h["X-Xet-Hash"] and h["Location"].startswith(f"http://{fake_hub.cdn_hostport}/")
    st, h, _ = request(fake_hub, "GET", "/acme/tiny/resolve/main/nope.txt")
    assert st == 404 and h["X-Error-Code"] == "EntryNotFound" and len(h["X-Repo-Commit"]) == 40
    st, h, _ = request(fake_hub, "GET", "/api/models/acme/tiny/revision/nope")
    assert st == 404 and h["X-Error-Code"] == "RevisionNotFound"
    st, h, _ = request(fake_hub, "GET", "/api/models/acme/gated")
    assert st == 401 and h["X-Error-Code"] == "GatedRepo"
    st, h, body = request(fake_hub, "GET", "/api/models/gpt2/revision/main")
    assert st == 200 and json.loads(body)["id"] == "gpt2"


def test_faults(fake_hub):
    data = TINY["model.safetensors"]
    st, h, _ = request(fake_hub, "HEAD", "/acme/tiny/resolve/main/model.safetensors")
    cdn_path = h["Location"].split(f"{fake_hub.cdn_hostport}", 1)[1]
    cdn = ("127.0.0.1", fake_hub.cdn_port)
    fake_hub.set_fault("acme/tiny", "model.safetensors", flip=True)
    st, _, body = request(cdn, "GET", cdn_path)
    assert st == 200 and len(body) == len(data) and body != data
    fake_hub.set_fault("acme/tiny", "model.safetensors", cut_once=1000)
    try:
        request(cdn, "GET", cdn_path)
        raise AssertionError("cut_once did not cut")
    except Exception as e:  # IncompleteRead
        assert "IncompleteRead" in type(e).__name__ or "Incomplete" in repr(e)
    st, h, body = request(cdn, "GET", cdn_path, {"Range": "bytes=1000-"})
    assert st == 206 and body == data[1000:] and h["Content-Range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
    fake_hub.set_fault("acme/tiny", "model.safetensors", status_once=503)
    st, h, _ = request(cdn, "GET", cdn_path)
    assert st == 503 and h["Retry-After"] == "1"
    st, _, body = request(cdn, "GET", cdn_path)
    assert st == 200 and body == data
    fake_hub.clear_faults()
    assert fake_hub.count("cdn", "GET", sha256(data)) >= 5  # every request above was counted
