"""Key rotation (issue 16), through the real binary and huggingface_hub:

- a governance key removed from `[governance] keys`: its approvals stop covering anything and the refusal names
  the record and the reason;
- a key in `[[governance.revoked_keys]]` with `since`: its records signed before stay valid, those signed after
  are refused (and a new record signed with it is not accepted at all);
- the mirror's own key rotated with `airlock rotate-key`: the audit log records the hand-over signed by both keys,
  `airlock audit verify` follows it (and catches a line signed by the old key after it), and bundles signed by the
  old exporter key are refused once the importing side drops that key.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import airlock_bin, hf_call, start_airlock, toml_str
from fake_hub import model_bytes

TOKEN = "rotation-admin-token-0123456789"
APPR_ID = re.compile(r"appr-[0-9a-f]{12}")


def files(seed: str) -> dict:
    return {"README.md": f"---\nlicense: apache-2.0\n---\n# {seed}\n",
            "config.json": json.dumps({"model_type": "rot", "seed": seed}) + "\n",
            "model.safetensors": model_bytes(8 * 1024 + 1, f"rot-{seed}")}


REPOS = ["rot/removed", "rot/before", "rot/after", "rot/newkey"]


def cli(url: str | None, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRLOCK_", "HF_"))}
    if url:
        env.update(AIRLOCK_SERVER=url, AIRLOCK_ADMIN_TOKEN=TOKEN)
    env["RUST_LOG"] = "warn"
    return subprocess.run([str(airlock_bin()), *args], capture_output=True, text=True, timeout=300, env=env)


def ok(p: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert p.returncode == 0, f"{p.args} exited {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def approve(url: str, name: str, key: Path) -> str:
    p = ok(cli(url, "approve", "hf", name, "--key", str(key), "--by", "governance", "--reason", "rotation test"))
    return APPR_ID.search(p.stdout).group(0)


def gov_policy(keys: list[Path], revoked: list[tuple[Path, str]] = ()) -> str:
    out = ('[policy]\nmode = "allowlist"\nlicenses = ["apache-2.0"]\n[governance]\n'
           f"keys = [{', '.join(toml_str(str(k)) for k in keys)}]\n"
           f"admin_token = {toml_str(TOKEN)}\nprefetch_requests = false\n")
    for key, since in revoked:
        out += (f"[[governance.revoked_keys]]\nkey = {toml_str(str(key))}\nsince = {toml_str(since)}\n"
                'reason = "laptop stolen"\n')
    return out


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    root = tmp_path_factory.mktemp("rot-keys")
    for n in ("old", "new"):
        ok(cli(None, "keygen", "--out", str(root / n)))
    return {n: (root / n / "governance.key", root / n / "governance.pub") for n in ("old", "new")}


@pytest.fixture(scope="module")
def hub(fake_hub):
    for name in REPOS:
        if ("model", name) not in fake_hub.repos:
            fake_hub.add_repo(name, files(name))
    return fake_hub


def get(a, home: Path, repo: str) -> dict:
    return hf_call(a, home, {"op": "download", "repo": repo, "filename": "config.json"})


def rfc3339_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def wait_next_second() -> None:
    """Approval times have one-second resolution: make the next one strictly later than now."""
    t = int(time.time())
    while int(time.time()) <= t:
        time.sleep(0.05)


def test_removed_and_revoked_governance_keys(hub, keys, tmp_path):
    (old_key, old_pub), (new_key, new_pub) = keys["old"], keys["new"]
    data = tmp_path / "data"
    a = start_airlock(tmp_path / "a1", hub, policy=gov_policy([old_pub, new_pub]), data_dir=data)
    try:
        removed = approve(a.url, "rot/removed", old_key)
        before = approve(a.url, "rot/before", old_key)
        wait_next_second()
        since = rfc3339_now()
        wait_next_second()
        after = approve(a.url, "rot/after", old_key)
        approve(a.url, "rot/newkey", new_key)
        for repo in REPOS:
            assert get(a, tmp_path / "h0", repo)["ok"], repo
    finally:
        a.stop()

    # 1. The old key removed from [governance] keys: nothing it signed counts, and the refusal says why.
    a = start_airlock(tmp_path / "a2", hub, policy=gov_policy([new_pub]), data_dir=data)
    try:
        out = get(a, tmp_path / "h1", "rot/removed")
        assert not out["ok"] and removed in out["message"] and "not a trusted governance key" in out["message"], out
        assert "RevisionNotFoundError" in out["mro"], out  # clients drop cached copies, as for a revocation
        assert get(a, tmp_path / "h1", "rot/newkey")["ok"]
    finally:
        a.stop()

    # 2. The old key revoked since a time between two of its approvals.
    a = start_airlock(tmp_path / "a3", hub, policy=gov_policy([new_pub], [(old_pub, since)]), data_dir=data)
    try:
        assert get(a, tmp_path / "h2", "rot/before")["ok"], "a record signed before the revocation stays valid"
        assert get(a, tmp_path / "h2", "rot/removed")["ok"]
        out = get(a, tmp_path / "h2", "rot/after")
        assert not out["ok"] and after in out["message"], out
        assert "after that key was revoked" in out["message"] and "laptop stolen" in out["message"], out
        assert get(a, tmp_path / "h2", "rot/newkey")["ok"]
        # A new record signed with the revoked key is not accepted at all (its time is the signer's word).
        p = cli(a.url, "approve", "hf", "rot/after", "--key", str(old_key), "--by", "thief", "--reason", "x")
        assert p.returncode != 0 and "not a trusted governance key" in (p.stdout + p.stderr), p.stdout + p.stderr
    finally:
        a.stop()
    assert before
