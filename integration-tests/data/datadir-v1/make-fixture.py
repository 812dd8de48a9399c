#!/usr/bin/env python3
"""Writes the version-1 data-directory fixture (`airlock-data/` + `expected.json` + `governance.pub` here) that
test_datadir_fixture.py opens with the current binary.

The fixture must come from an Airlock *before* `format.json` existed, so it was made once with the debug binaries
built from commit 62daee5 (the last main without a data-format version). To make it again the same way:

    git worktree add /tmp/v1 62daee5 && (cd /tmp/v1 && cargo build -p web -p ollama-pull)
    .venv/bin/python integration-tests/data/datadir-v1/make-fixture.py \
        --airlock-bin /tmp/v1/target/debug/airlock --ollama-pull-bin /tmp/v1/target/debug/ollama-pull

Do not regenerate it with a newer binary: it is the record of what an old release left on disk. What it does,
all on 127.0.0.1 with the suite's own fakes: a fake Hub with `fixture/tiny`, Debian's docker-registry with the
Ollama model `library/fixture:latest`; `airlock keygen`; `airlock serve` in allowlist mode trusting that key;
`airlock approve hf` and `airlock approve ollama` (signed approval records + audit entries); a huggingface_hub
download of every file and an ollama-pull of the model (blobs, HF listing, Ollama manifest and tag); then the
server is stopped and its data directory copied here without the lock file and the (empty) quarantine.
The governance private key is thrown away: the fixture only needs the public one to check its approvals.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # integration-tests/

TOKEN = "fixture-admin-token-0123456789"
HF_REPO = "fixture/tiny"
OLLAMA_NAME = "library/fixture"


def hf_files() -> dict[str, bytes]:
    from fake_hub import model_bytes
    return {
        "README.md": b"---\nlicense: apache-2.0\n---\n# fixture/tiny\nThe data-dir fixture's model.\n",
        "config.json": json.dumps({"model_type": "fixture", "hidden_size": 4}).encode() + b"\n",
        "model.safetensors": model_bytes(24 * 1024 + 5, "datadir-v1-fixture"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--airlock-bin", required=True)
    ap.add_argument("--ollama-pull-bin", required=True)
    ap.add_argument("--out", default=str(HERE))
    args = ap.parse_args()
    os.environ["AIRLOCK_BIN"] = args.airlock_bin
    os.environ["OLLAMA_PULL_BIN"] = args.ollama_pull_bin

    from conftest import expect_ok, hf_call, start_airlock, toml_str
    from fake_hub import FakeHub
    from ollama_support import gguf, ollama_model, ollama_pull, start_registry

    out = Path(args.out)
    tmp = Path(tempfile.mkdtemp(prefix="airlock-fixture-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRLOCK_", "HF_"))}
    env["RUST_LOG"] = "warn"

    def cli(*a: str, server: str | None = None) -> str:
        e = dict(env)
        if server:
            e.update(AIRLOCK_SERVER=server, AIRLOCK_ADMIN_TOKEN=TOKEN)
        p = subprocess.run([args.airlock_bin, *a], capture_output=True, text=True, env=e, timeout=300)
        if p.returncode != 0:
            raise SystemExit(f"{a} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
        return p.stdout

    hub = FakeHub(xet=False)
    files = hf_files()
    hub.add_repo(HF_REPO, files)
    hub.start()
    reg = start_registry(tmp / "registry")
    airlock = None
    try:
        model = reg.push(ollama_model(OLLAMA_NAME, weights=gguf(tensor_bytes=16 * 1024, seed="datadir-v1"),
                                      seed="datadir-v1"))
        cli("keygen", "--out", str(tmp / "keys"))
        pub = tmp / "keys" / "governance.pub"
        policy = (f'[policy]\nmode = "allowlist"\nlicenses = ["apache-2.0", "mit"]\n'
                  f"[ollama]\nupstream = {toml_str(reg.url)}\n"
                  f"[governance]\nkeys = [{toml_str(str(pub))}]\nadmin_token = {toml_str(TOKEN)}\n"
                  "prefetch_requests = false\n")
        airlock = start_airlock(tmp / "airlock", hub, policy=policy)
        signer = ["--key", str(tmp / "keys" / "governance.key"), "--by", "fixture", "--reason", "data-dir fixture"]
        appr_hf = cli("approve", "hf", HF_REPO, *signer, server=airlock.url)
        appr_ol = cli("approve", "ollama", "fixture", *signer, server=airlock.url)
        served = {}
        for name in files:
            r = expect_ok(hf_call(airlock, tmp / "hf-home", {"op": "download", "repo": HF_REPO, "filename": name}),
                          airlock)
            served[name] = r["sha256"]
        pull = ollama_pull(airlock, f"{OLLAMA_NAME}:latest", tmp / "pull")
        if not pull.ok:
            raise SystemExit(pull.explain())
        airlock.stop()
        data = out / "airlock-data"
        if data.exists():
            shutil.rmtree(data)
        shutil.copytree(airlock.data_dir, data, ignore=shutil.ignore_patterns("airlock.lock", "quarantine"))
        shutil.copy(pub, out / "governance.pub")
        expected = {
            "made_by": subprocess.run([args.airlock_bin, "--version"], capture_output=True, text=True).stdout.strip(),
            "hf": {"repo": HF_REPO, "commit": hub.sha(HF_REPO), "files": served},
            "ollama": {"name": OLLAMA_NAME, "tag": "latest", "manifest": model.digest,
                       "blobs": sorted(model.blobs)},
            "approvals": [l.strip() for l in (appr_hf + appr_ol).splitlines() if "appr-" in l],
        }
        (out / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
        print(f"fixture written to {out}")
    finally:
        if airlock is not None:
            airlock.stop()
        reg.stop()
        hub.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
