"""Signature requirements ([[trust]] rules, issue 5): a repo whose policy requires OpenSSF model signing
downloads through huggingface_hub only when its model.sig verifies over the whole revision; a tampered file,
an unsigned extra file, a wrong signer or a missing signature gets RepositoryNotFoundError naming the reason,
and nothing of that revision is served. The signed models are the model_signing test vectors
(verifier/tests/fixtures/signing/ms/*/model), served by the fake Hub."""

import hashlib
from pathlib import Path

import pytest

from conftest import ROOT, expect_ok, hf_call, request, start_airlock, toml_str

VECTORS = ROOT / "verifier" / "tests" / "fixtures" / "signing"
KEY = VECTORS / "keys" / "signer_p256.pub.pem"
CASES = {
    "signed/good": "key_p256",
    "signed/tampered": "neg_tampered_file",
    "signed/extra": "neg_extra_file",
    "signed/wrong-signer": "neg_wrong_key_nohint",  # signed by another key
}


def files_of(vector: str, drop: tuple = ()) -> dict:
    d = VECTORS / "ms" / vector / "model"
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file() and p.name not in drop}


@pytest.fixture(scope="module")
def signed_airlock(fake_hub, tmp_path_factory):
    for repo, vector in CASES.items():
        fake_hub.add_repo(repo, files_of(vector))
    fake_hub.add_repo("signed/unsigned", files_of("key_p256", drop=("model.sig",)))
    policy = f"""
[policy]
mode = "allowlist"
[[policy.allow]]
hf = "signed/*"
[[trust]]
match = "signed/*"
require = "model-signing"
keys = [{toml_str(str(KEY))}]
"""
    a = start_airlock(tmp_path_factory.mktemp("signed"), fake_hub, policy=policy)
    yield a
    a.stop()


def test_valid_signature_downloads_the_snapshot(signed_airlock, tmp_path):
    out = expect_ok(hf_call(signed_airlock, tmp_path / "home", {"op": "snapshot", "repo": "signed/good"}), signed_airlock)
    want = {name: hashlib.sha256(data).hexdigest() for name, data in files_of("key_p256").items()}
    assert out["files"] == want


@pytest.mark.parametrize("repo,needle", [
    ("signed/tampered", "does not verify"),
    ("signed/extra", "extra.txt"),
    ("signed/wrong-signer", "does not verify"),
    ("signed/unsigned", "no signature (model.sig)"),
])
def test_bad_signature_refuses_the_whole_revision(signed_airlock, tmp_path, repo, needle):
    out = hf_call(signed_airlock, tmp_path / "home", {"op": "snapshot", "repo": repo})
    assert not out["ok"], out
    assert "RepositoryNotFoundError" in out["mro"], out
    assert needle in out["message"], out["message"]
    # Nothing of that revision is served, not even the files that are fine on their own.
    for name in ("config.json", "model.safetensors"):
        st, h, _ = request(signed_airlock, "GET", f"/{repo}/resolve/main/{name}")
        assert st == 404 and h["X-Error-Code"] == "RepoNotFound", (repo, name, st)
        assert needle in h["X-Error-Message"]
