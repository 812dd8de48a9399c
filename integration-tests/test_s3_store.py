"""Issue 13, first increment: Airlock with `[store] backend = "s3"` on a real Garage started here.

huggingface_hub downloads (whole and ranged) and an Ollama pull (ollama-pull, in front of Debian's
docker-registry) are served from blobs in the bucket; the data directory holds no blob; every object in the
bucket hashes to its key; after a restart (credentials from a file this time) the same files are served
from Garage again without asking the upstreams for their bytes.

Fails on the code before the change: `[store] backend` was not a config key (the config is refused)."""
from __future__ import annotations

import hashlib

import pytest

from conftest import TINY, as_bytes, expect_ok, hf_call, sha256, start_airlock, default_policy, toml_str
from garage import start_garage, store_section
from ollama_support import digest_of, ollama_model, ollama_pull, rule, start_registry


@pytest.fixture(scope="module")
def garage(tmp_path_factory):
    g = start_garage(tmp_path_factory.mktemp("garage"))
    yield g
    g.stop()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    r = start_registry(tmp_path_factory.mktemp("registry"))
    yield r
    r.stop()


def config(hub, registry, store: str) -> str:
    return (default_policy(hub) + rule("library/s3tiny")
            + f"[ollama]\nupstream = {toml_str(registry.url)}\nredirect_hosts = []\n" + store)


def blob_path(model, digest: str) -> str:
    return f"/v2/{model.name}/blobs/{digest}"


def assert_pulled(pull, model, airlock) -> None:
    assert pull.ok, pull.explain() + "\n--- airlock log\n" + airlock.log()[-3000:]
    assert pull.manifest() == model.manifest
    files = pull.files()
    assert set(files) == set(model.blobs)
    for d, data in files.items():
        assert digest_of(data) == d and data == model.blobs[d], f"{d}: wrong bytes"


def local_blobs(a) -> list:
    base = a.data_dir / "blobs"
    return [p for p in base.rglob("*") if p.is_file()] if base.is_dir() else []


def test_s3_backend_serves_hf_and_ollama_from_garage_across_a_restart(garage, registry, fake_hub, tmp_path):
    model = registry.push(ollama_model("library/s3tiny", seed="s3"))
    creds = {"AWS_ACCESS_KEY_ID": garage.key_id, "AWS_SECRET_ACCESS_KEY": garage.secret}
    a = start_airlock(tmp_path / "a", fake_hub, policy=config(fake_hub, registry, store_section(garage)), env=creds)
    try:
        # huggingface_hub: a whole file (3 MiB, LFS) and ranged reads of it (HfFileSystem).
        weights = as_bytes(TINY["model.safetensors"])
        out = expect_ok(hf_call(a, tmp_path / "home1", {"op": "download", "repo": "acme/tiny",
                                                         "filename": "model.safetensors"}), a)
        assert out["sha256"] == sha256(weights)
        for offset, length in ((0, 1), (len(weights) - 1, 1), (1_000_000, 70_000)):
            out = expect_ok(hf_call(a, tmp_path / "home1", {"op": "fs_read", "path": "acme/tiny/model.safetensors",
                                                             "offset": offset, "length": length}), a)
            assert out["sha256"] == sha256(weights[offset:offset + length]), (offset, length)
        # An Ollama pull.
        pull = ollama_pull(a, "library/s3tiny:latest", tmp_path / "pull1")
        assert_pulled(pull, model, a)
    finally:
        a.stop()

    # The blobs are in the bucket, not on the data disk; each object hashes to its key.
    assert local_blobs(a) == [], "with backend = s3 no blob may land in data_dir/blobs"
    keys = garage.keys("blobs/sha256/")
    want = {sha256(weights)} | {d.split(":", 1)[1] for d in model.blobs}
    held = {k.rsplit("/", 1)[1] for k in keys}
    assert want <= held, f"missing from the bucket: {want - held}"
    for key, size in keys.items():
        hexname = key.rsplit("/", 1)[1]
        assert key == f"blobs/sha256/{hexname[:2]}/{hexname}", key
        body = garage.get(key)
        assert len(body) == size and hashlib.sha256(body).hexdigest() == hexname, f"{key} does not hash to its key"

    # Restart on the same data dir, credentials from a file: served from Garage, upstreams not asked for bytes.
    cred_file = tmp_path / "s3-credentials"
    cred_file.write_text(f"[default]\naws_access_key_id = {garage.key_id}\n"
                         f"aws_secret_access_key = {garage.secret}\n")
    blob_gets = {d: registry.gets(blob_path(model, d)) for d in model.blobs}
    cdn_before = fake_hub.count(contains="model.safetensors")
    b = start_airlock(tmp_path / "b", fake_hub, data_dir=a.data_dir,
                      policy=config(fake_hub, registry, store_section(garage, cred_file)))
    try:
        out = expect_ok(hf_call(b, tmp_path / "home2", {"op": "download", "repo": "acme/tiny",
                                                         "filename": "model.safetensors"}), b)
        assert out["sha256"] == sha256(weights)
        out = expect_ok(hf_call(b, tmp_path / "home2", {"op": "fs_read", "path": "acme/tiny/model.safetensors",
                                                         "offset": 2_000_000, "length": 12345}), b)
        assert out["sha256"] == sha256(weights[2_000_000:2_012_345])
        pull = ollama_pull(b, "library/s3tiny:latest", tmp_path / "pull2")
        assert_pulled(pull, model, b)
    finally:
        b.stop()
    assert {d: registry.gets(blob_path(model, d)) for d in model.blobs} == blob_gets, \
        "after the restart the layers must come from Garage, not the registry"
    assert fake_hub.count(contains="model.safetensors") - cdn_before == 0, \
        "after the restart the file must come from Garage: nothing about it is asked upstream"
    assert local_blobs(b) == []


def test_s3_backend_without_credentials_is_refused_at_start(garage, fake_hub, tmp_path, registry):
    """A missing credential is a clear start-up error, not a server that fails every download."""
    import subprocess
    from conftest import airlock_bin
    cfg = tmp_path / "airlock.toml"
    cfg.write_text(f'listen = "127.0.0.1:0"\ndata_dir = {toml_str(str(tmp_path / "data"))}\n' + store_section(garage))
    env = {"PATH": "/usr/bin:/bin", "RUST_LOG": "error"}
    p = subprocess.run([str(airlock_bin()), "serve", "--config", str(cfg)], capture_output=True, text=True,
                       timeout=30, env=env)
    assert p.returncode != 0
    assert "AWS_ACCESS_KEY_ID" in (p.stdout + p.stderr), p.stdout + p.stderr
