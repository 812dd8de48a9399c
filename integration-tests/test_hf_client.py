"""The real huggingface_hub client through Airlock (HF_ENDPOINT = Airlock): downloads, snapshots, datasets,
HfFileSystem ranged reads, refusals. Bytes are checked by sha256 against what the fake Hub holds."""

import json

from conftest import (DS, GATED, GPT2, HUB_TOKEN, TINY, TINY_PR1, as_bytes, expect_ok, request, settle, sha256)


def test_download_regular_file(airlock, fake_hub, hf):
    out = expect_ok(hf({"op": "download", "repo": "acme/tiny", "filename": "config.json"}), airlock)
    assert out["sha256"] == sha256(as_bytes(TINY["config.json"]))
    # the client names the cached blob after the ETag: the git blob sha1 for a regular file
    assert out["real"].rsplit("/", 1)[1] == fake_hub.file("acme/tiny", "config.json").oid
    # the snapshot folder is the 40-hex commit of main (X-Repo-Commit)
    assert f"/snapshots/{fake_hub.sha('acme/tiny')}/" in out["path"]


def test_download_lfs_file_fetched_once(airlock, fake_hub, hf, tmp_path):
    data = TINY["model.safetensors"]
    out = expect_ok(hf({"op": "download", "repo": "acme/tiny", "filename": "model.safetensors"}), airlock)
    assert out["sha256"] == sha256(data) and out["size"] == len(data)
    assert out["real"].rsplit("/", 1)[1] == sha256(data), "ETag/X-Linked-Etag of an LFS file must be its sha256"
    assert sha256(data) in airlock.blob_files(), "the verified blob is promoted under blobs/sha256/"
    cdn_gets = fake_hub.count("cdn", "GET", sha256(data))
    # a second client with an empty cache is served from Airlock's store: upstream sees no new GET
    out = expect_ok(hf({"op": "download", "repo": "acme/tiny", "filename": "model.safetensors"},
                       home=tmp_path / "second-home"), airlock)
    assert out["sha256"] == sha256(data)
    assert fake_hub.count("cdn", "GET", sha256(data)) == cdn_gets
    airlock.assert_store_consistent()


def test_snapshot_download_whole(airlock, hf):
    out = expect_ok(hf({"op": "snapshot", "repo": "acme/tiny"}), airlock)
    assert out["files"] == {p: sha256(as_bytes(v)) for p, v in TINY.items()}
    airlock.assert_store_consistent()


def test_snapshot_download_allow_patterns(airlock, hf):
    out = expect_ok(hf({"op": "snapshot", "repo": "acme/tiny", "allow_patterns": ["*.json"]}), airlock)
    assert out["files"] == {p: sha256(as_bytes(TINY[p])) for p in ("config.json", "tokenizer.json")}


def test_dataset_files(airlock, hf):
    for name in ("data/test.csv", "data/train-00000.parquet"):
        out = expect_ok(hf({"op": "download", "repo": "acme/tiny-ds", "filename": name, "repo_type": "dataset"}),
                        airlock)
        assert out["sha256"] == sha256(as_bytes(DS[name])), name


def test_hffilesystem_ranged_read_cold_and_warm(airlock, hf):
    """HfFileSystem (what `datasets` uses) sends ranged GETs to /resolve with no HEAD (T10)."""
    data = DS["data/valid-00000.parquet"]
    for offset, length in ((100, 5000), (150_000, 3000), (len(data) - 10, 10)):
        out = expect_ok(hf({"op": "fs_read", "path": "datasets/acme/tiny-ds/data/valid-00000.parquet",
                            "offset": offset, "length": length}), airlock)
        assert out["length"] == length
        assert out["sha256"] == sha256(data[offset:offset + length]), (offset, length)


def test_one_segment_repo_and_pr_revision(airlock, fake_hub, hf):
    out = expect_ok(hf({"op": "download", "repo": "gpt2", "filename": "model.safetensors"}), airlock)
    assert out["sha256"] == sha256(GPT2["model.safetensors"])
    out = expect_ok(hf({"op": "download", "repo": "acme/tiny", "filename": "config.json", "revision": "refs/pr/1"}),
                    airlock)
    assert out["sha256"] == sha256(as_bytes(TINY_PR1["config.json"]))
    assert f"/snapshots/{fake_hub.sha('acme/tiny', 'refs/pr/1')}/" in out["path"]


def test_list_repo_files_follows_pagination(airlock, hf):
    out = expect_ok(hf({"op": "list_files", "repo": "acme/tiny"}), airlock)
    assert out["files"] == sorted(TINY)


def test_unapproved_repo_is_refused_with_reason(airlock, fake_hub, hf):
    before = fake_hub.count(contains="acme/evil")
    out = hf({"op": "download", "repo": "acme/evil", "filename": "config.json"})
    assert not out["ok"]
    assert "RepositoryNotFoundError" in out["mro"], out
    text = out["message"]
    assert "acme/evil" in text and "approved" in text.lower(), f"Airlock's reason missing from: {text}"
    out = hf({"op": "snapshot", "repo": "acme/evil"})
    assert not out["ok"] and "RepositoryNotFoundError" in out["mro"]
    assert "approved" in out["message"].lower()
    # raw: the refusal shape of the contract, and the JSON error carries the same reason
    st, h, body = request(airlock, "GET", "/api/models/acme/evil/revision/main")
    assert st == 404 and h["X-Error-Code"] == "RepoNotFound"
    assert "acme/evil" in h["X-Error-Message"]
    assert json.loads(body)["error"]
    # Of an unapproved repo only whether the revision exists is asked upstream (a review request is recorded
    # only for one that does; test_request_resolution.py), once, and never a listing or a file.
    assert fake_hub.count(contains="acme/evil") - before <= 1, fake_hub.stats()


def test_gated_repo_uses_airlocks_token_and_never_leaks_it(airlock, fake_hub, hf):
    out = expect_ok(hf({"op": "download", "repo": "acme/gated", "filename": "model.safetensors"}), airlock)
    assert out["sha256"] == sha256(GATED["model.safetensors"])
    for method in ("HEAD", "GET"):
        st, h, body = settle(airlock, method, "/acme/gated/resolve/main/config.json")
        assert st == 200
        assert HUB_TOKEN not in str(h) and HUB_TOKEN.encode() not in body
    assert HUB_TOKEN not in airlock.log(), "the upstream token must never be logged"


def test_gated_repo_without_access_is_refused(airlock, hf):
    out = hf({"op": "download", "repo": "acme/gated-other", "filename": "config.json"})
    assert not out["ok"]
    assert "RepositoryNotFoundError" in out["mro"], out  # GatedRepoError is a subclass
