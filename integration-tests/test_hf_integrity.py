"""Integrity and the pipeline: tampered bytes are refused and never stored or served, a cut stream is
resumed, transient upstream errors are retried, a file in flight answers HEAD with 503 + Retry-After, and
any number of concurrent clients cause exactly one upstream download."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from conftest import CONCURRENT, FAULTY, as_bytes, error_text, expect_ok, hf_call, request, settle, sha256


def flipped(data: bytes, at: int | None = None) -> bytes:
    b = bytearray(data)
    b[len(data) // 2 if at is None else at] ^= 0xFF
    return bytes(b)


def wait_quarantine_empty(airlock, timeout=10.0):
    deadline = time.monotonic() + timeout
    while airlock.quarantine_files() and time.monotonic() < deadline:
        time.sleep(0.2)
    return airlock.quarantine_files()


def check_flip_refused(airlock, fake_hub, hf, name):
    data = as_bytes(FAULTY[name])
    bad = flipped(data)
    fake_hub.set_fault("acme/faulty", name, flip=True)
    out = hf({"op": "download", "repo": "acme/faulty", "filename": name})
    assert not out["ok"], f"client got a tampered {name} through Airlock"
    shown = f"{out['message']} {out.get('cause')}"
    assert name in shown, f"the refusal should name the file; client showed: {shown}"
    # nothing with the tampered content, nor anything under the advertised name, is promoted
    assert not airlock.holds_content(bad)
    assert sha256(bad) not in airlock.blob_files()
    assert sha256(data) not in airlock.blob_files()
    assert wait_quarantine_empty(airlock) == [], "the quarantined copy must be deleted"
    # asked again (upstream still tampering), it is still refused and its bytes are served from nowhere
    for method in ("HEAD", "GET"):
        st, h, body = settle(airlock, method, f"/acme/faulty/resolve/main/{name}")
        assert st >= 400, f"{method} after a failed verification answered {st}"
        assert bad not in body and data not in body
        assert name in error_text(h, body) or method == "HEAD", error_text(h, body)
    airlock.assert_store_consistent()


def test_flipped_byte_in_lfs_file_is_refused(airlock, fake_hub, hf):
    check_flip_refused(airlock, fake_hub, hf, "flip.safetensors")


def test_flipped_byte_in_regular_file_is_refused(airlock, fake_hub, hf):
    """Regular (non-LFS) files are checked against their git blob sha1."""
    check_flip_refused(airlock, fake_hub, hf, "flip-small.json")


def test_cut_stream_is_resumed_with_range(airlock, fake_hub, hf):
    name = "cut.safetensors"
    data = FAULTY[name]
    fake_hub.set_fault("acme/faulty", name, cut_once=1024 * 1024 + 7)
    out = expect_ok(hf({"op": "download", "repo": "acme/faulty", "filename": name}), airlock)
    assert out["sha256"] == sha256(data)
    cdn = [r for r in fake_hub.stats()["requests"]
           if r["listener"] == "cdn" and r["method"] == "GET" and sha256(data) in r["path"]]
    assert len(cdn) >= 2, cdn
    ranged = [r["range"] for r in cdn[1:] if r["range"]]
    assert ranged and not ranged[0].startswith("bytes=0-"), \
        f"Airlock should resume with Range after the cut, not restart: {[r['range'] for r in cdn]}"
    airlock.assert_store_consistent()


def test_transient_503_is_retried(airlock, fake_hub, hf):
    name = "flaky.safetensors"
    fake_hub.set_fault("acme/faulty", name, status_once=503)
    out = expect_ok(hf({"op": "download", "repo": "acme/faulty", "filename": name}), airlock)
    assert out["sha256"] == sha256(FAULTY[name])


def test_head_in_flight_answers_503_and_never_stalls(airlock, fake_hub, tmp_path):
    """Upstream stalls 12 s before the body: longer than a client waits for any answer (10 s, T15). Airlock
    must answer every HEAD within 10 s, with 503 + Retry-After while the file is in flight, and the real
    client, retrying on that 503, must still get the file."""
    name, delay = "slow.safetensors", 12.0
    data = FAULTY[name]
    path = f"/acme/faulty/resolve/main/{name}"
    fake_hub.set_fault("acme/faulty", name, slow=delay)
    t0 = time.monotonic()
    answers = []

    def poll_head():
        while time.monotonic() - t0 < 45:
            t1 = time.monotonic()
            st, h, _ = request(airlock, "HEAD", path, timeout=15)
            answers.append((round(t1 - t0, 1), round(time.monotonic() - t1, 1), st, h.get("Retry-After")))
            if st != 503:
                return
            time.sleep(0.5)

    with ThreadPoolExecutor(2) as pool:
        head = pool.submit(poll_head)
        client = pool.submit(hf_call, airlock, tmp_path / "home", {"op": "download", "repo": "acme/faulty",
                                                                   "filename": name})
        head.result(timeout=60)
        out = expect_ok(client.result(timeout=90), airlock)
    assert out["sha256"] == sha256(data)
    assert all(a[1] < 10 for a in answers), f"a HEAD was silent for 10 s or more: {answers}"
    assert answers[-1][2] == 200, answers
    # the body cannot have been verified before upstream sent it: every earlier answer must be a 503
    early = [a for a in answers if a[0] + a[1] < delay - 0.5]
    assert early and all(a[2] == 503 and a[3] for a in early), f"(start s, took s, status, Retry-After): {answers}"
    st, h, body = request(airlock, "GET", path)
    assert st == 200 and body == data


def test_fifty_concurrent_clients_one_upstream_download(airlock, fake_hub, tmp_path):
    """50 raw clients (HEAD until ready, then GET) plus 4 real huggingface_hub clients on one cold LFS file."""
    name = "big.safetensors"
    data = CONCURRENT[name]
    path = f"/acme/concurrent/resolve/main/{name}"
    fake_hub.set_fault("acme/concurrent", name, slow=1.5)  # keep the fetch in flight while clients pile up
    before = fake_hub.stats()["requests"]
    n_raw, n_hf = 50, 4
    barrier = threading.Barrier(n_raw + n_hf)
    deadline = time.monotonic() + 90

    def raw_client(i):
        barrier.wait(timeout=60)
        while True:
            st, h, _ = request(airlock, "HEAD", path, timeout=15)
            if st == 200:
                break
            assert st == 503 and h.get("Retry-After"), f"client {i}: HEAD {st}"
            assert time.monotonic() < deadline, f"client {i}: still 503 at the deadline"
            time.sleep(min(float(h["Retry-After"]), 2.0))
        st, h, body = request(airlock, "GET", path, timeout=30)
        assert st == 200, f"client {i}: GET {st} after HEAD 200"
        assert sha256(body) == sha256(data), f"client {i}: wrong bytes"
        return True

    def hf_client(i):
        barrier.wait(timeout=60)
        return hf_call(airlock, tmp_path / f"home{i}", {"op": "download", "repo": "acme/concurrent",
                                                        "filename": name})

    with ThreadPoolExecutor(n_raw + n_hf) as pool:
        raws = [pool.submit(raw_client, i) for i in range(n_raw)]
        hfs = [pool.submit(hf_client, i) for i in range(n_hf)]
        for f in raws:
            f.result(timeout=120)
        for f in hfs:
            out = expect_ok(f.result(timeout=120), airlock)
            assert out["sha256"] == sha256(data)
    new = fake_hub.stats()["requests"][len(before):]
    cdn_gets = [r for r in new if r["listener"] == "cdn" and r["method"] == "GET" and sha256(data) in r["path"]]
    hub_resolve = [r for r in new if r["listener"] == "hub" and "/resolve/" in r["path"] and name in r["path"]]
    hub_gets = [r for r in hub_resolve if r["method"] == "GET"]
    summary = (f"CDN GETs {len(cdn_gets)}, hub resolve GETs {len(hub_gets)}, "
               f"hub resolve HEADs {len(hub_resolve) - len(hub_gets)}")
    print(f"\n50+4 clients on one cold file -> {summary}")
    assert len(cdn_gets) == 1, summary
    assert len(hub_gets) <= 1, summary
    assert sha256(data) in airlock.blob_files()
    airlock.assert_store_consistent()
