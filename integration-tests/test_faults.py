"""Faults (issue 12, "How it is shown"): upstreams that drip (1 byte/s), lie about Content-Length (shorter and
longer) or reset mid-body, and a client holding 2,000 slow connections whose headers dribble in. Through all of it
Airlock stays responsive for a normal client, its memory stays bounded (VmRSS against a generous bound over a
baseline, never a time), it never serves a byte that was not verified, and `airlock fsck` finds the store
consistent afterwards."""

from __future__ import annotations

import resource
import socket
import subprocess
import threading
import time

import pytest

from conftest import TINY, as_bytes, airlock_bin, default_policy, expect_ok, hf_call, request, sha256, start_airlock
from fake_hub import model_bytes

SLOW_CONNECTIONS = 2000
SIZE = 256 * 1024
FILES = {name: model_bytes(SIZE, f"faults-{name}") for name in
         ("drip.safetensors", "short.safetensors", "long.safetensors", "reset.safetensors")}
# Memory a slow-connection flood may add: generous (2,000 connections × 64 KiB of buffers would be 125 MiB).
RSS_BOUND_KB = 160 * 1024


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def raise_nofile(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < want:
        pytest.skip(f"cannot raise the open-files limit to {want}")


@pytest.fixture
def faulty(fake_hub, tmp_path):
    raise_nofile(2 * SLOW_CONNECTIONS + 512)  # inherited by the airlock process started below
    fake_hub.add_repo("faults/model", dict(FILES))
    policy = default_policy(fake_hub) + '[[policy.allow]]\nhf = "faults/model"\n'
    a = start_airlock(tmp_path / "a", fake_hub, policy=policy, env={"AIRLOCK_FETCH_STALL_TIMEOUT_SECS": "3"})
    yield a
    a.stop()


def answer(a, path: str, deadline_s: float = 60.0):
    """GETs a file until it is no longer pending (503/429): the final (status, body)."""
    end = time.monotonic() + deadline_s
    while True:
        st, h, body = request(a, "GET", path, timeout=60)
        if st not in (429, 503) or time.monotonic() > end:
            return st, body
        time.sleep(min(float(h.get("Retry-After") or 1), 2))


def normal_client_works(a, home) -> None:
    st, _, _ = request(a, "GET", "/healthz", timeout=10)
    assert st == 200
    out = expect_ok(hf_call(a, home, {"op": "download", "repo": "acme/tiny", "filename": "config.json"}), a)
    assert out["sha256"] == sha256(as_bytes(TINY["config.json"]))


def assert_only_verified(a, path: str, st: int, body: bytes, want: bytes) -> None:
    if st == 200:
        assert body == want, f"{path}: served bytes that are not the file"
    assert not a.holds_content(want[:-1000]), f"{path}: a truncated copy was promoted"
    a.assert_store_consistent()


def test_misbehaving_upstreams_never_reach_clients_and_airlock_stays_responsive(faulty, fake_hub, tmp_path):
    a = faulty
    base = "/faults/model/resolve/main/"
    fake_hub.set_fault("faults/model", "drip.safetensors", rate=1)
    fake_hub.set_fault("faults/model", "short.safetensors", short_length=1000)
    fake_hub.set_fault("faults/model", "long.safetensors", extra_bytes=1000)
    fake_hub.set_fault("faults/model", "reset.safetensors", cut_once=SIZE // 3)

    # The drip runs in the background while the normal client is served.
    results = {}
    drip = threading.Thread(target=lambda: results.setdefault("drip", answer(a, base + "drip.safetensors")))
    drip.start()
    normal_client_works(a, tmp_path / "h1")
    for name in ("short.safetensors", "long.safetensors", "reset.safetensors"):
        st, body = answer(a, base + name)
        results[name] = (st, body)
        assert_only_verified(a, name, st, body, FILES[name])
    drip.join(120)
    assert not drip.is_alive()
    st, body = results["drip"]
    assert st == 502, (st, body[:300])  # stalled: less than 1 KiB/s for the stall timeout
    assert_only_verified(a, "drip", st, body, FILES["drip.safetensors"])
    # Shorter or longer than declared: never served; a reset mid-body is resumed and served whole.
    assert results["short.safetensors"][0] != 200 and results["long.safetensors"][0] != 200, \
        {k: v[0] for k, v in results.items()}
    assert results["reset.safetensors"] == (200, FILES["reset.safetensors"]), results["reset.safetensors"][0]
    normal_client_works(a, tmp_path / "h2")

    # Once the upstream behaves, the dripping and the short file come through (their failures were not sticky).
    fake_hub.clear_faults()
    for name in ("drip.safetensors", "short.safetensors"):
        assert answer(a, base + name) == (200, FILES[name])
    a.stop()
    p = subprocess.run([str(airlock_bin()), "fsck", "--data-dir", str(a.data_dir)], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


def test_two_thousand_slow_connections_leave_room_for_a_normal_client(faulty, tmp_path):
    a = faulty
    normal_client_works(a, tmp_path / "warm")
    baseline = rss_kb(a.proc.pid)
    conns = []
    try:
        for i in range(SLOW_CONNECTIONS):
            s = socket.create_connection(("127.0.0.1", a.port), timeout=10)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            conns.append(s)
        # Dribble: one more header byte on every connection, a few rounds (the server must not wait for them).
        for _ in range(3):
            for s in conns:
                try:
                    s.sendall(b"x")
                except OSError:
                    pass  # the server gave up on this one: that is allowed
            normal_client_works(a, tmp_path / "during")
            peak = rss_kb(a.proc.pid)
            assert peak - baseline < RSS_BOUND_KB, (baseline, peak)
    finally:
        for s in conns:
            s.close()
    normal_client_works(a, tmp_path / "after")
    assert a.proc.poll() is None
    a.stop()
    p = subprocess.run([str(airlock_bin()), "fsck", "--data-dir", str(a.data_dir)], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
