"""Bad input from clients and from upstream: a clear 4xx/502 with a reason, no panic, the store untouched,
and nothing odd forwarded upstream (issue 2, "Bad input")."""

from urllib.parse import unquote

import pytest

from conftest import FAULTY, error_text, request, settle, sha256

BAD_PATHS = [
    "/acme/../evil/resolve/main/config.json",
    "/acme/tiny/../../evil/resolve/main/config.json",
    "/acme%2F..%2Fevil/resolve/main/config.json",
    "/acme%2Ftiny/resolve/main/config.json",
    "/..%2F..%2Fetc/passwd/resolve/main/config.json",
    "/acme/tiny/resolve/main/..%2F..%2F..%2Fetc%2Fpasswd",
    "/acme/tiny/resolve/main/sub/../../../../etc/passwd",
    "/acme/tiny/resolve/..%2F..%2Fmain/config.json",
    "/api/models/acme/..%2Fevil/revision/main",
    "/api/models/acme%2F..%2Fevil/tree/main",
    "/acme/ti%00ny/resolve/main/config.json",
    "/acme/tiny%0d%0aX-Injected:%201/resolve/main/config.json",
    "/acme/ti%09ny/resolve/main/config.json",
    "/acme/tiny/resolve/main/conf%00ig.json",
    "/api/models/acme/ti%1bny",
    "/acme/" + "a" * 5000 + "/resolve/main/config.json",
    "/" + "o" * 300 + "/tiny/resolve/main/config.json",
    "/acme/tiny/resolve/" + "r" * 3000 + "/config.json",
    "/acme/tiny/resolve/main/" + "d/" * 2000 + "config.json",
]


@pytest.mark.parametrize("path", BAD_PATHS, ids=lambda p: p[:60])
def test_bad_repo_ids_and_paths_get_4xx_with_reason(airlock, fake_hub, path):
    before_store = airlock.store_snapshot()
    before_reqs = len(fake_hub.stats()["requests"])
    for method in ("GET", "HEAD"):
        st, h, body = request(airlock, method, path)
        assert 400 <= st < 500, f"{method} {path[:80]}: {st}"
        if method == "GET" and st != 414:
            assert error_text(h, body), f"{path[:80]}: {st} without a reason"
        assert "X-Injected" not in h
    new = fake_hub.stats()["requests"][before_reqs:]
    for r in new:
        p = unquote(r["path"])
        assert ".." not in p.split("/") and "\x00" not in p and "\r" not in p, f"forwarded upstream: {r['path']}"
        assert "evil" not in p and "passwd" not in p, f"forwarded upstream: {r['path']}"
    assert airlock.store_snapshot() == before_store
    st, _, _ = request(airlock, "GET", "/healthz")
    assert st == 200


def test_redirect_to_unlisted_host_is_refused(airlock, fake_hub):
    name = "redirect.safetensors"
    fake_hub.set_fault("acme/faulty", name, redirect_elsewhere=True)
    before = airlock.store_snapshot()
    elsewhere = fake_hub.count("elsewhere")
    st, h, body = settle(airlock, "GET", f"/acme/faulty/resolve/main/{name}")
    assert st == 502, (st, error_text(h, body))
    reason = error_text(h, body)
    assert "127.0.0.2" in reason or "redirect" in reason.lower(), f"502 without a reason: {reason!r}"
    assert fake_hub.count("elsewhere") == elsewhere, "Airlock followed a redirect to an unlisted host"
    assert airlock.store_snapshot() == before
    assert FAULTY[name] not in body


@pytest.mark.parametrize("name,fault", [("extra.safetensors", {"extra_bytes": 100}),
                                        ("absurd.safetensors", {"absurd_length": True})],
                         ids=["more-bytes-than-declared", "absurd-content-length"])
def test_upstream_sending_more_than_declared_is_refused(airlock, fake_hub, name, fault):
    data = FAULTY[name]
    fake_hub.set_fault("acme/faulty", name, **fault)
    before = airlock.store_snapshot()
    st, h, body = settle(airlock, "GET", f"/acme/faulty/resolve/main/{name}")
    assert st >= 400, f"{name}: served although upstream sent more than it declared ({st})"
    assert error_text(h, body), "refusal without a reason"
    assert airlock.store_snapshot() == before
    assert sha256(data) not in airlock.blob_files()
    st, h, body = settle(airlock, "HEAD", f"/acme/faulty/resolve/main/{name}")
    assert st >= 400
    assert request(airlock, "GET", "/healthz")[0] == 200


def test_huge_tree_cursor_is_an_empty_page_not_a_crash(airlock):
    # start + page_size used to overflow usize: a panic (and a dropped connection) in debug builds.
    st, h, body = request(airlock, "GET", f"/api/models/acme/tiny/tree/main?cursor={2**64 - 1}")
    assert st == 200, (st, body[:200])
    assert body.strip() == b"[]"
    assert not h.get("Link")
    assert request(airlock, "GET", "/api/models/acme/tiny/tree/main")[0] == 200
