"""Protocol details of the HF surface, checked with plain HTTP against Airlock (hf-protocol.md §1)."""

import json
import re
from urllib.parse import urlsplit

from conftest import (GPT2, PINNED_V1, PINNED_V2, TINY, TINY_PR1, as_bytes, error_text, request, settle, sha256)

HEX40 = re.compile(r"^[0-9a-f]{40}$")


def etag(h, name="ETag") -> str:
    v = h.get(name) or ""
    return v.removeprefix("W/").strip('"')


def assert_no_xet(h, body: bytes = b""):
    xet = [k for k in h.keys() if k.lower().startswith("x-xet-")]
    assert not xet, f"Xet headers leaked: {xet}"
    for link in h.get_all("Link") or []:
        assert "xet" not in link.lower(), f"Xet link leaked: {link}"
    assert b"xetHash" not in body, "xetHash leaked in a listing"


def test_model_info_and_one_segment_repo(airlock, fake_hub):
    for path, repo in (("/api/models/gpt2", "gpt2"), ("/api/models/gpt2/revision/main", "gpt2"),
                       ("/api/models/acme/tiny", "acme/tiny")):
        st, h, body = request(airlock, "GET", path)
        assert st == 200, (path, st, body[:300])
        info = json.loads(body)
        assert info["id"] == repo and info["sha"] == fake_hub.sha(repo), info
        assert_no_xet(h, body)
    st, h, body = settle(airlock, "GET", "/gpt2/resolve/main/config.json")
    assert st == 200 and body == as_bytes(GPT2["config.json"])
    assert h["X-Repo-Commit"] == fake_hub.sha("gpt2")


def test_percent_encoded_pr_revision(airlock, fake_hub):
    pr = fake_hub.sha("acme/tiny", "refs/pr/1")
    st, _, body = request(airlock, "GET", "/api/models/acme/tiny/revision/refs%2Fpr%2F1")
    assert st == 200 and json.loads(body)["sha"] == pr
    st, h, body = settle(airlock, "GET", "/acme/tiny/resolve/refs%2Fpr%2F1/config.json")
    assert st == 200 and body == as_bytes(TINY_PR1["config.json"])
    assert h["X-Repo-Commit"] == pr


def test_resolve_headers_regular_and_lfs(airlock, fake_hub):
    main = fake_hub.sha("acme/tiny")
    for name in ("config.json", "sub/weights.bin"):
        f = fake_hub.file("acme/tiny", name)
        data = as_bytes(TINY[name])
        st, h, body = settle(airlock, "GET", f"/acme/tiny/resolve/main/{name}")
        assert st == 200 and body == data, (name, st)
        st, hh, _ = settle(airlock, "HEAD", f"/acme/tiny/resolve/main/{name}")
        for hd in (h, hh):
            assert st == 200
            assert hd["X-Repo-Commit"] == main and HEX40.match(hd["X-Repo-Commit"])
            want = f.sha256 if f.lfs else f.oid
            # the client reads X-Linked-Etag, falling back to ETag, and names its cached blob after it
            assert (etag(hd, "X-Linked-Etag") or etag(hd)) == want, (name, dict(hd))
            assert int(hd["Content-Length"]) == len(data)
            assert int(hd.get("X-Linked-Size") or hd["Content-Length"]) == len(data)
            assert hd.get("Accept-Ranges") == "bytes"
            assert_no_xet(hd)


def test_range_requests_are_exact(airlock, fake_hub):
    data = TINY["model.safetensors"]
    n = len(data)
    path = "/acme/tiny/resolve/main/model.safetensors"
    settle(airlock, "HEAD", path)
    for rng, (a, b) in (("bytes=100-199", (100, 200)), ("bytes=0-0", (0, 1)), (f"bytes={n - 10}-", (n - 10, n)),
                        ("bytes=-7", (n - 7, n)), (f"bytes=1000-{n + 500}", (1000, n))):
        st, h, body = settle(airlock, "GET", path, {"Range": rng})
        assert st == 206, (rng, st)
        assert h["Content-Range"] == f"bytes {a}-{b - 1}/{n}", (rng, h["Content-Range"])
        assert int(h["Content-Length"]) == b - a and body == data[a:b], rng
        assert h["X-Repo-Commit"] == fake_hub.sha("acme/tiny")
    st, h, _ = settle(airlock, "GET", path, {"Range": f"bytes={n + 10}-"})
    assert st == 416, st
    # a regular file too
    cfg = as_bytes(TINY["config.json"])
    st, h, body = settle(airlock, "GET", "/acme/tiny/resolve/main/config.json", {"Range": "bytes=2-9"})
    assert st == 206 and body == cfg[2:10]


def collect_tree(airlock, first: str):
    entries, url, pages = [], first, 0
    while url:
        st, h, body = request(airlock, "GET", url)
        assert st == 200, (url, st, body[:300])
        assert_no_xet(h, body)
        entries += json.loads(body)
        pages += 1
        url = None
        link = h.get("Link")
        if link:
            m = re.search(r'<([^>]+)>;\s*rel="next"', link)
            assert m, link
            nxt = urlsplit(m.group(1))
            assert nxt.scheme == "http" and nxt.netloc == f"127.0.0.1:{airlock.port}", \
                f"pagination Link must be absolute and point at Airlock, got {m.group(1)}"
            url = nxt.path + ("?" + nxt.query if nxt.query else "")
        assert pages < 20
    return entries, pages


def test_tree_pagination_and_shapes(airlock, fake_hub):
    # The fake Hub pages by 3. Airlock may pass the pages through (then every Link must be absolute and point
    # at Airlock: checked in collect_tree) or merge them into one answer; either way the listing is complete.
    entries, pages = collect_tree(airlock, "/api/models/acme/tiny/tree/main?recursive=true&expand=false")
    files = {e["path"]: e for e in entries if e["type"] == "file"}
    dirs = {e["path"] for e in entries if e["type"] == "directory"}
    assert set(files) == set(TINY) and dirs == {"sub", "sub/dir"}
    for p, e in files.items():
        f = fake_hub.file("acme/tiny", p)
        assert e["oid"] == f.oid and e["size"] == f.size
        assert ("lfs" in e) == f.lfs
        if f.lfs:
            assert e["lfs"]["oid"] == f.sha256 and e["lfs"]["size"] == f.size
    sub, _ = collect_tree(airlock, "/api/models/acme/tiny/tree/main/sub?recursive=false")
    assert {e["path"] for e in sub} == {"sub/dir", "sub/weights.bin"}
    ds, _ = collect_tree(airlock, "/api/datasets/acme/tiny-ds/tree/main/data?recursive=false")
    assert {e["path"] for e in ds} == {"data/test.csv", "data/train-00000.parquet", "data/valid-00000.parquet"}
    st, h, body = request(airlock, "GET", "/api/models/acme/tiny/tree/main/additional_chat_templates?recursive=false")
    assert st == 404 and h["X-Error-Code"] == "EntryNotFound", (st, dict(h))


def test_tree_is_paginated_with_links_to_airlock(airlock):
    """conftest sets `tree_page_size = 3`, so Airlock's own pages (absolute Link back to Airlock) are exercised."""
    _, pages = collect_tree(airlock, "/api/models/acme/tiny/tree/main?recursive=true&expand=false")
    assert pages >= 2, "8 entries with tree_page_size = 3 should come in several pages"


def test_paths_info(airlock, fake_hub):
    body = b"paths=config.json&paths=sub&paths=model.safetensors&paths=missing.txt&expand=False"
    st, h, out = request(airlock, "POST", "/api/models/acme/tiny/paths-info/main", body=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert st == 200, (st, out[:300])
    assert_no_xet(h, out)
    got = {e["path"]: e for e in json.loads(out)}
    assert set(got) == {"config.json", "sub", "model.safetensors"}
    assert got["sub"]["type"] == "directory"
    assert got["model.safetensors"]["lfs"]["oid"] == sha256(TINY["model.safetensors"])
    assert got["config.json"]["oid"] == fake_hub.file("acme/tiny", "config.json").oid


def test_xet_never_leaks(airlock, fake_hub):
    sha = fake_hub.sha("acme/tiny")
    st, h, _ = settle(airlock, "HEAD", "/acme/tiny/resolve/main/model.safetensors")
    assert st == 200
    assert_no_xet(h)
    st, h, body = request(airlock, "GET", f"/api/models/acme/tiny/xet-read-token/{sha}")
    assert st == 404, st
    assert json.loads(body).get("error"), body
    assert not any(k.lower().startswith("x-xet-") for k in h.keys())


def test_unknown_api_paths_answer_404_json(airlock):
    for path in ("/api/models/acme/tiny/commits/main", "/api/agent-harnesses", "/api/whoami-v2",
                 "/api/models/acme/tiny/discussions"):
        st, h, body = request(airlock, "GET", path)
        assert st == 404, (path, st)
        assert json.loads(body).get("error"), (path, body[:200])


def test_missing_file_and_unknown_revision(airlock, fake_hub):
    for method in ("HEAD", "GET"):
        st, h, body = settle(airlock, method, "/acme/tiny/resolve/main/missing.txt")
        assert st == 404 and h["X-Error-Code"] == "EntryNotFound", (method, st, dict(h))
        assert h["X-Repo-Commit"] == fake_hub.sha("acme/tiny")
        assert h.get("X-Error-Message")
        st, h, body = settle(airlock, method, "/acme/tiny/resolve/no-such-branch/config.json")
        assert st == 404 and h["X-Error-Code"] == "RevisionNotFound", (method, st, dict(h))
    st, h, body = request(airlock, "GET", "/api/models/acme/tiny/revision/no-such-branch")
    assert st == 404 and h["X-Error-Code"] == "RevisionNotFound"
    assert json.loads(body).get("error")


def test_pinned_revision_survives_upstream_move(airlock, fake_hub):
    v1 = fake_hub.sha("pinned/model")
    st, _, body = request(airlock, "GET", "/api/models/pinned/model/revision/main")
    assert st == 200 and json.loads(body)["sha"] == v1
    st, h, body = settle(airlock, "GET", "/pinned/model/resolve/main/config.json")
    assert st == 200 and body == as_bytes(PINNED_V1["config.json"]) and h["X-Repo-Commit"] == v1
    v2 = fake_hub.commit("pinned/model", PINNED_V2)
    assert v2 != v1
    for path in ("/pinned/model/resolve/main/config.json", "/pinned/model/resolve/main/model.safetensors"):
        st, h, body = settle(airlock, "GET", path)
        name = path.rsplit("/", 1)[1]
        assert st == 200 and body == as_bytes(PINNED_V1[name]), f"{path}: pin not honoured"
        assert h["X-Repo-Commit"] == v1
    st, _, body = request(airlock, "GET", "/api/models/pinned/model")
    assert st == 200 and json.loads(body)["sha"] == v1
    # the new upstream commit, asked for by its sha, is not approved (RevisionNotFound is the better code here:
    # clients raise it even when they hold a cached copy, hf-protocol.md 1.8)
    st, h, body = settle(airlock, "GET", f"/pinned/model/resolve/{v2}/config.json")
    assert st == 404 and h["X-Error-Code"] in ("RepoNotFound", "RevisionNotFound"), (st, dict(h))
    assert v1 in error_text(h, body), "the refusal should name the approved commit"
