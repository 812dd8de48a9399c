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


REPOS = ["rot/removed", "rot/before", "rot/after", "rot/newkey", "rot/export"]


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
        for repo in ("rot/removed", "rot/before", "rot/after", "rot/newkey"):
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


# ---- the mirror's own key -------------------------------------------------------------------------------
def importer_config(root: Path, gov_pub: Path, exporters: list[Path], revoked_since: str | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    cfg = root / "airlock.toml"
    gov = (f"keys = [{toml_str(str(gov_pub))}]\n" if revoked_since is None else
           f"keys = []\n[[governance.revoked_keys]]\nkey = {toml_str(str(gov_pub))}\nsince = {toml_str(revoked_since)}\n")
    cfg.write_text(
        f"data_dir = {toml_str(str(root / 'data'))}\noffline = true\n"
        '[policy]\nmode = "allowlist"\n'
        f"[airgap]\ntrusted_exporters = [{', '.join(toml_str(str(e)) for e in exporters)}]\n"
        f"[governance]\nprefetch_requests = false\n{gov}")
    return cfg


def test_mirror_key_rotation_is_recorded_followed_and_old_bundles_refused_once_dropped(hub, keys, tmp_path):
    new_key, new_pub = keys["new"]
    data = tmp_path / "data"
    a = start_airlock(tmp_path / "c", hub, policy=gov_policy([new_pub]), data_dir=data)
    try:
        approve(a.url, "rot/export", new_key)
    finally:
        a.stop()
    cfg = tmp_path / "c" / "airlock.toml"
    old_mirror_pub = tmp_path / "old-mirror.pub"
    shutil.copy(data / "mirror.pub", old_mirror_pub)
    ok(cli(None, "export", "--config", str(cfg), "--out", str(tmp_path / "bundle-old"), "--all-approved"))

    p = ok(cli(None, "rotate-key", "--data-dir", str(data)))
    assert "hand-over at audit line" in p.stdout, p.stdout
    assert (data / "mirror.pub").read_bytes() != old_mirror_pub.read_bytes()
    # The server runs on with the new key (its start-up appends a config_reload line).
    a = start_airlock(tmp_path / "c2", hub, policy=gov_policy([new_pub]), data_dir=data)
    a.stop()
    lines = [json.loads(l) for l in ok(cli(None, "audit", "export", "--data-dir", str(data))).stdout.splitlines()]
    at = next(i for i, l in enumerate(lines) if l["event"]["kind"] == "key_handover")
    old_id, new_id = lines[at]["key"], lines[-1]["key"]
    assert old_id != new_id and all(l["key"] == old_id for l in lines[:at + 1])
    assert all(l["key"] == new_id for l in lines[at + 1:]) and len(lines) > at + 1
    # `audit verify` follows the hand-over: with the defaults (current + retired keys), and with the first key alone.
    p = ok(cli(None, "audit", "verify", "--data-dir", str(data)))
    assert f"ok: {len(lines)} entries" in p.stdout, p.stdout
    p = ok(cli(None, "audit", "verify", "--data-dir", str(data), "--key", str(old_mirror_pub)))
    assert f"ok: {len(lines)} entries" in p.stdout, p.stdout
    # ...and without the first key the log's start is not vouched for.
    p = cli(None, "audit", "verify", "--data-dir", str(data), "--key", str(data / "mirror.pub"))
    assert p.returncode == 1 and "line 1" in p.stdout + p.stderr, p.stdout + p.stderr

    ok(cli(None, "export", "--config", str(cfg), "--out", str(tmp_path / "bundle-new"), "--all-approved"))
    # The importing side has dropped the old exporter key: the old bundle is refused, the new one accepted.
    icfg = importer_config(tmp_path / "imp", new_pub, [data / "mirror.pub"])
    p = cli(None, "import", str(tmp_path / "bundle-old"), "--config", str(icfg))
    assert p.returncode == 1 and "not in [airgap] trusted_exporters" in p.stderr, p.stderr
    ok(cli(None, "import", str(tmp_path / "bundle-new"), "--config", str(icfg)))
    # While it still lists both (during the hand-over), the old bundle is accepted too.
    icfg2 = importer_config(tmp_path / "imp2", new_pub, [old_mirror_pub, data / "mirror.pub"])
    ok(cli(None, "import", str(tmp_path / "bundle-old"), "--config", str(icfg2)))
    # An importing side that revoked the governance key before the approval was signed refuses the bundle; one
    # that revoked it later accepts it.
    icfg3 = importer_config(tmp_path / "imp3", new_pub, [data / "mirror.pub"], revoked_since="2000-01-01T00:00:00Z")
    p = cli(None, "import", str(tmp_path / "bundle-new"), "--config", str(icfg3))
    assert p.returncode == 1 and "after that key was revoked" in p.stderr, p.stderr
    icfg4 = importer_config(tmp_path / "imp4", new_pub, [data / "mirror.pub"], revoked_since="2999-01-01T00:00:00Z")
    ok(cli(None, "import", str(tmp_path / "bundle-new"), "--config", str(icfg4)))
