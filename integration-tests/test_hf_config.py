"""Configuration as an operator uses it: environment-only start, token file, and a store that survives a
restart (each file fetched from upstream once, ever)."""

import json

from conftest import EVIL, GATED, GPT2, HUB_TOKEN, request, settle, sha256


def test_environment_only_configuration(fake_hub, airlock_factory, tmp_path):
    """Every key settable by env: no config file at all, open policy."""
    a = airlock_factory(config_file=False, data_dir=tmp_path / "env-data", env={
        "AIRLOCK_HF_UPSTREAM": fake_hub.url,
        "AIRLOCK_HF_REDIRECT_HOSTS": f"127.0.0.2:1,{fake_hub.cdn_hostport}",
        "AIRLOCK_POLICY_MODE": "open",
    })
    st, h, body = settle(a, "GET", "/acme/evil/resolve/main/model.safetensors")
    assert st == 200 and sha256(body) == sha256(EVIL["model.safetensors"]), (st, body[:200])
    assert sha256(EVIL["model.safetensors"]) in a.blob_files(), "AIRLOCK_DATA_DIR not honoured"
    a.assert_store_consistent()


def test_default_policy_refuses_everything(fake_hub, airlock_factory):
    """Allowlist with no rules (the embedded default) refuses, with a reason."""
    a = airlock_factory(config_file=False, env={"AIRLOCK_HF_UPSTREAM": fake_hub.url})
    st, h, body = request(a, "GET", "/gpt2/resolve/main/config.json")
    assert st == 404 and h["X-Error-Code"] == "RepoNotFound" and "gpt2" in h["X-Error-Message"]


def test_token_file(fake_hub, airlock_factory, tmp_path):
    tok = tmp_path / "hf-token"
    tok.write_text(HUB_TOKEN + "\n")
    policy = f'token_file = {json.dumps(str(tok))}\n[policy]\nmode = "allowlist"\n[[policy.allow]]\nhf = "acme/gated"\n'
    a = airlock_factory(policy=policy)
    st, h, body = settle(a, "GET", "/acme/gated/resolve/main/model.safetensors")
    assert st == 200 and body == GATED["model.safetensors"]
    assert HUB_TOKEN not in a.log()


def test_store_survives_restart(fake_hub, airlock_factory, tmp_path):
    data_dir = tmp_path / "shared-data"
    path = "/gpt2/resolve/main/model.safetensors"
    digest = sha256(GPT2["model.safetensors"])
    a = airlock_factory(data_dir=data_dir)
    st, _, body = settle(a, "GET", path)
    assert st == 200 and sha256(body) == digest
    a.stop()
    gets = fake_hub.count("cdn", "GET", digest)
    b = airlock_factory(data_dir=data_dir)
    for method in ("HEAD", "GET"):
        st, h, body = settle(b, method, path)
        assert st == 200
    assert sha256(body) == digest
    assert fake_hub.count("cdn", "GET", digest) == gets, "a promoted file was fetched again after a restart"
