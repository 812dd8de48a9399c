"""Upgrades (issue 16): a data directory written by the last release before `format.json` existed
(integration-tests/data/datadir-v1, made by make-fixture.py there) is opened by the current binary, which stamps
it as format version 1 and serves the same bytes from it, with nothing upstream: the HF files, the Ollama manifest
and its blobs. Its approvals still cover what they covered (the policy is an allowlist with no rules, so nothing is
served without them) and `airlock audit verify` accepts its audit log. A directory stamped by a newer Airlock is
refused, untouched, with a message that says so.

Every later change to the store must keep this file green: a change of layout adds a migration step
(mirror/src/format/migrate.rs), it does not break this fixture.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import Airlock, airlock_bin, expect_ok, free_port, hf_call, request, toml_str
from ollama_support import ollama_pull

FIXTURE = Path(__file__).resolve().parent / "data" / "datadir-v1"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


def sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha256(p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()}


def config(tmp: Path, data: Path, port: int) -> Path:
    # Offline: nothing upstream exists, so every byte served comes from the fixture.
    cfg = tmp / "airlock.toml"
    cfg.write_text(
        f"listen = {toml_str(f'127.0.0.1:{port}')}\n"
        f"data_dir = {toml_str(str(data))}\n"
        "offline = true\n"
        '[policy]\nmode = "allowlist"\nlicenses = ["apache-2.0", "mit"]\n'
        f"[governance]\nkeys = [{toml_str(str(FIXTURE / 'governance.pub'))}]\nprefetch_requests = false\n")
    return cfg


def serve(tmp: Path, data: Path) -> Airlock:
    port = free_port()
    cfg = config(tmp, data, port)
    log_path = tmp / "airlock.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRLOCK_", "HF_"))}
    env.setdefault("RUST_LOG", "info")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([str(airlock_bin()), "serve", "--config", str(cfg)], stdout=log,
                                stderr=subprocess.STDOUT, env=env, cwd=tmp)
    a = Airlock(proc, port, tmp, data, log_path)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            pytest.fail(f"airlock serve exited with {proc.returncode}:\n{a.log()}")
        try:
            if request(a, "GET", "/healthz", timeout=2)[0] == 200:
                return a
        except OSError:
            pass
        if time.monotonic() > deadline:
            a.stop()
            pytest.fail(f"no /healthz within 30s:\n{a.log()}")
        time.sleep(0.1)


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRLOCK_", "HF_"))}
    env["RUST_LOG"] = "warn"
    return subprocess.run([str(airlock_bin()), *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture
def data_copy(tmp_path) -> Path:
    d = tmp_path / "airlock-data"
    shutil.copytree(FIXTURE / "airlock-data", d)
    return d


def test_the_v1_fixture_is_opened_stamped_and_served_unchanged(data_copy, tmp_path):
    assert not (data_copy / "format.json").exists(), "the fixture predates format.json"
    before = tree_digest(data_copy / "blobs")
    a = serve(tmp_path, data_copy)
    try:
        hf = EXPECTED["hf"]
        # By commit (raw GET, no client cache involved) and through huggingface_hub by branch name: the stored
        # ref resolves offline.
        for name, want in hf["files"].items():
            st, h, body = request(a, "GET", f"/{hf['repo']}/resolve/{hf['commit']}/{name}")
            assert st == 200, (name, st, h.get("X-Error-Message"), a.log()[-2000:])
            assert sha256(body) == want, name
            out = expect_ok(hf_call(a, tmp_path / "hf-home", {"op": "download", "repo": hf["repo"],
                                                              "filename": name}), a)
            assert out["sha256"] == want, name
        ol = EXPECTED["ollama"]
        st, _, manifest = request(a, "GET", f"/v2/{ol['name']}/manifests/{ol['tag']}",
                                  headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        assert st == 200 and "sha256:" + sha256(manifest) == ol["manifest"], (st, a.log()[-2000:])
        pull = ollama_pull(a, f"{ol['name']}:{ol['tag']}", tmp_path / "pull")
        assert pull.ok, pull.explain() + a.log()[-2000:]
        got = pull.files()
        for d in ol["blobs"]:
            assert "sha256:" + sha256(got[d]) == d
        assert pull.manifest() == manifest
        # Nothing else is served: the approvals are what opened the two above.
        st, h, _ = request(a, "GET", "/fixture/other/resolve/main/config.json")
        assert st in (401, 404), st
    finally:
        a.stop()
    fmt = json.loads((data_copy / "format.json").read_text())
    assert fmt["format"] == 1 and "migrating_to" not in fmt, fmt
    assert tree_digest(data_copy / "blobs") == before, "opening an old directory rewrote its blobs"
    p = cli("audit", "verify", "--data-dir", str(data_copy))
    assert p.returncode == 0 and "ok:" in p.stdout, p.stdout + p.stderr
    # Idempotent: `airlock migrate` on a current directory has nothing to do and succeeds.
    p = cli("migrate", "--data-dir", str(data_copy))
    assert p.returncode == 0 and "version 1" in p.stdout, p.stdout + p.stderr


def test_a_directory_from_a_newer_airlock_is_refused_untouched(data_copy, tmp_path):
    (data_copy / "format.json").write_text(json.dumps({"format": 999, "written_by": "airlock 9.0.0"}) + "\n")
    before = tree_digest(data_copy)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRLOCK_", "HF_"))}
    p = subprocess.run([str(airlock_bin()), "serve", "--config", str(config(tmp_path, data_copy, port))],
                       capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode != 0
    assert "format version 999" in p.stderr and "newer airlock" in p.stderr, p.stderr
    for cmd in (["reindex"], ["fsck"], ["migrate"]):
        q = cli(*cmd, "--data-dir", str(data_copy))
        assert q.returncode != 0 and "newer airlock" in q.stderr, (cmd, q.stderr)
    after = tree_digest(data_copy)
    after.pop("airlock.lock", None)
    assert after == before, "a refused directory was changed"
