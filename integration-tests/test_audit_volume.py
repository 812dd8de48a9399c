"""The audit log under repeated downloads (issue 12): ranged parts and re-reads of one file by one client
are one `download` entry plus one `download_repeats` count per window, not one fsynced line per
request; the chain still verifies, and the count is written when the server stops."""

import json
import subprocess

from conftest import TINY, as_bytes, airlock_bin, request, settle, start_airlock

FILE = "model.safetensors"


def entries(a):
    return [json.loads(l)["event"] for l in (a.data_dir / "audit.log").read_text().splitlines()]


def test_sixteen_ranged_parts_are_one_download_and_one_count(fake_hub, tmp_path):
    a = start_airlock(tmp_path / "a", fake_hub)
    data = as_bytes(TINY[FILE])
    path = f"/acme/tiny/resolve/main/{FILE}"
    try:
        st, _, _ = settle(a, "HEAD", path)
        assert st == 200
        part = len(data) // 16 + 1
        got = b""
        for i in range(16):
            lo, hi = i * part, min(len(data), (i + 1) * part) - 1
            st, _, body = request(a, "GET", path, {"Range": f"bytes={lo}-{hi}"})
            assert st == 206, st
            got += body
        assert got == data
    finally:
        a.stop()  # SIGTERM: a graceful stop writes the open window's count
    downloads = [e for e in entries(a) if e["kind"] == "download" and e["file"] == FILE]
    repeats = [e for e in entries(a) if e["kind"] == "download_repeats" and e["file"] == FILE]
    assert len(downloads) == 1, downloads
    assert [r["count"] for r in repeats] == [15], repeats
    p = subprocess.run([str(airlock_bin()), "audit", "verify", "--data-dir", str(a.data_dir)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("ok:"), p.stdout


def test_window_zero_audits_every_request(fake_hub, tmp_path):
    a = start_airlock(tmp_path / "a", fake_hub,
                      policy='[[policy.allow]]\nhf = "acme/tiny"\n[governance]\nprefetch_requests = false\n'
                             'download_audit_window_secs = 0\n')
    path = "/acme/tiny/resolve/main/config.json"
    try:
        assert settle(a, "GET", path)[0] == 200
        for _ in range(3):
            assert request(a, "GET", path)[0] == 200
    finally:
        a.stop()
    downloads = [e for e in entries(a) if e["kind"] == "download" and e["file"] == "config.json"]
    assert len(downloads) == 4
