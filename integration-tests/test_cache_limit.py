"""A cache that cannot fill the disk (issue 12): with `[store] max_bytes`, the least recently served blobs
that no approval or pin needs are evicted once promotions push the store over the limit; pinned ones stay;
an evicted file is fetched and verified again when asked for; `airlock gc` runs the same pass by hand and
`--force` also evicts what pins need."""

import subprocess
import time

from conftest import (CONCURRENT, TINY, PINNED_V1, as_bytes, default_policy, expect_ok, hf_call, sha256,
                      start_airlock, airlock_bin)

MAX = 4 * 1024 * 1024


def blob_bytes(a):
    return sum(p.stat().st_size for p in a.blob_files().values())


def get(a, home, repo, name):
    return expect_ok(hf_call(a, home, {"op": "download", "repo": repo, "filename": name}), a)


def test_least_recently_served_unpinned_blobs_are_evicted_and_come_back(fake_hub, tmp_path):
    policy = default_policy(fake_hub) + f"\n[store]\nmax_bytes = {MAX}\n"
    root = tmp_path / "a"
    a = start_airlock(root, fake_hub, policy=policy)
    tiny = sha256(as_bytes(TINY["model.safetensors"]))
    big = sha256(as_bytes(CONCURRENT["big.safetensors"]))
    pinned = sha256(as_bytes(PINNED_V1["model.safetensors"]))
    try:
        get(a, tmp_path / "h1", "pinned/model", "model.safetensors")
        get(a, tmp_path / "h1", "acme/tiny", "model.safetensors")
        assert {tiny, pinned} <= set(a.blob_files())
        time.sleep(1.1)  # mtimes order the blobs; make the two promotions distinguishable
        get(a, tmp_path / "h1", "acme/concurrent", "big.safetensors")
        deadline = time.monotonic() + 20
        while blob_bytes(a) > MAX:
            assert time.monotonic() < deadline, f"store still at {blob_bytes(a)} bytes > {MAX}"
            time.sleep(0.2)
        held = set(a.blob_files())
        assert tiny not in held, "the least recently served unpinned blob goes first"
        assert big in held and pinned in held, "the pinned and the newest blob stay"
        out = get(a, tmp_path / "h2", "acme/tiny", "model.safetensors")
        assert out["sha256"] == tiny, "an evicted file is fetched and verified again"
    finally:
        a.stop()
    p = subprocess.run([str(airlock_bin()), "fsck", "--data-dir", str(a.data_dir)], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0 and "0 problems" in p.stdout, p.stdout

    gc = [str(airlock_bin()), "gc", "--config", str(root / "airlock.toml"), "--max-bytes", "0"]
    p = subprocess.run(gc, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, p.stdout + p.stderr
    assert pinned in set(a.blob_files()), "gc keeps what a pin needs without --force"
    assert "needed by approvals or pins" in p.stdout, p.stdout
    p = subprocess.run(gc + ["--force"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert not a.blob_files()
