"""`airlock reindex` rebuilds the sled index from the data directory's files (blobs and the listings
files were verified against): after deleting the index, verified files are served again without asking
the upstream for them."""

import shutil
import subprocess

from conftest import TINY, as_bytes, expect_ok, hf_call, sha256, start_airlock, airlock_bin


def test_reindex_rebuilds_the_index_from_blobs_and_listings(fake_hub, tmp_path):
    root = tmp_path / "a"
    a = start_airlock(root, fake_hub)
    commit = fake_hub.sha("acme/tiny")
    names = ["config.json", "model.safetensors", "sub/weights.bin"]
    try:
        for name in names:
            out = expect_ok(hf_call(a, tmp_path / "home1", {"op": "download", "repo": "acme/tiny", "filename": name}), a)
            assert out["sha256"] == sha256(as_bytes(TINY[name]))
    finally:
        a.stop()

    shutil.rmtree(a.data_dir / "index")
    p = subprocess.run([str(airlock_bin()), "reindex", "--data-dir", str(a.data_dir)], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "1 HF listings" in p.stdout and "3 verified files" in p.stdout, p.stdout

    fake_hub.reset()
    b = start_airlock(root, fake_hub)
    try:
        for name in names:
            out = expect_ok(hf_call(b, tmp_path / "home2", {"op": "download", "repo": "acme/tiny", "filename": name,
                                                             "revision": commit}), b)
            assert out["sha256"] == sha256(as_bytes(TINY[name]))
        # Served from the rebuilt index: neither the listing nor any file was fetched again.
        assert fake_hub.count(contains="acme/tiny") == 0, fake_hub.stats()
    finally:
        b.stop()
