"""Governance end to end (issue 6, docs/governance.md): signed approvals made with the real `airlock` CLI,
the review-request queue, typosquat and licence refusals, revocation and the signed audit log — through the real
binary and the real `huggingface_hub` client.

One Airlock with a governance key and an admin token serves the module; tests that need a different config start
their own. Repos are added to the shared fake Hub here (under names no other test uses), not in fake_hub.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import (Airlock, airlock_bin, expect_ok, hf_call, request, sha256, start_airlock, toml_str)
from fake_hub import model_bytes

TOKEN = "gov-admin-token-0123456789"
REQ_ID = re.compile(r"req-[0-9A-Za-z_-]+")
APPR_ID = re.compile(r"appr-[0-9a-f]{12}")


def card(licence: str, title: str) -> str:
    return f"---\nlicense: {licence}\ntags: [test]\n---\n# {title}\n"


def repo_files(seed: str, licence: str = "apache-2.0") -> dict:
    return {
        "README.md": card(licence, seed),
        "config.json": json.dumps({"model_type": "gov", "seed": seed}) + "\n",
        "model.safetensors": model_bytes(16 * 1024 + 3, f"gov-{seed}"),
    }


# Upstream repos of this module. The typosquat targets are approved in the fixture; the rest start unapproved.
REPOS = {
    "govacme/tiny": repo_files("tiny"),
    "govacme/viareq": repo_files("viareq"),
    "govacme/denyme": repo_files("denyme"),
    "govacme/unknownkey": repo_files("unknownkey"),
    "govacme/changedpin": repo_files("changedpin"),
    "govacme/otherlic": repo_files("otherlic", licence="other"),
    "govacme/revokeme": repo_files("revokeme"),
    "govacme/partial": repo_files("partial"),
    "EleutherAI/gpt-j-6b": repo_files("gptj"),
    "Qwen/Qwen3.5-7B": repo_files("qwen"),
    "meta-llama/Llama-3.1-8B": repo_files("llama"),
    "mistralai/Mistral-7B": repo_files("mistral"),
}
APPROVED_AT_START = ["EleutherAI/gpt-j-6b", "Qwen/Qwen3.5-7B", "meta-llama/Llama-3.1-8B"]


@dataclass
class Gov:
    airlock: Airlock
    root: Path
    key: Path
    pub: Path
    other_key: Path  # a governance key the server does not trust
    approvals: dict  # name -> approval id made by the fixture


def cli(gov_or_url, *args: str, token: str | None = TOKEN, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs the real `airlock` binary with the server URL and admin token in its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRLOCK_", "HF_"))}
    url = gov_or_url.airlock.url if isinstance(gov_or_url, Gov) else gov_or_url
    env["AIRLOCK_SERVER"] = url
    if token is not None:
        env["AIRLOCK_ADMIN_TOKEN"] = token
    env.setdefault("RUST_LOG", "warn")
    return subprocess.run([str(airlock_bin()), *args], capture_output=True, text=True, timeout=timeout, env=env)


def ok(p: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert p.returncode == 0, f"{p.args} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


def admin(a: Airlock, method: str, path: str, body=None, token: str | None = TOKEN):
    """One admin API call; returns (status, parsed JSON or raw bytes)."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    st, _, raw = request(a, method, path, headers=headers, body=data, timeout=120)
    try:
        return st, json.loads(raw)
    except ValueError:
        return st, raw


def signer(gov: Gov, key: Path | None = None, reason: str = "evaluated by the test suite") -> list[str]:
    return ["--key", str(key or gov.key), "--by", "model-governance", "--reason", reason]


def approve(gov: Gov, name: str, *extra: str, key: Path | None = None) -> str:
    p = ok(cli(gov, "approve", "hf", name, *signer(gov, key), *extra))
    m = APPR_ID.search(p.stdout)
    assert m, f"no approval id in {p.stdout!r}"
    return m.group(0)


def download(gov: Gov, home: Path, repo: str, filename: str = "config.json", revision: str | None = None) -> dict:
    op = {"op": "download", "repo": repo, "filename": filename}
    if revision:
        op["revision"] = revision
    return hf_call(gov.airlock, home, op)


def is_not_found(out: dict) -> bool:
    return "RepositoryNotFoundError" in out.get("mro", [])


@pytest.fixture(scope="module")
def gov(fake_hub, tmp_path_factory):
    root = tmp_path_factory.mktemp("gov")
    for name, files in REPOS.items():
        if ("model", name) not in fake_hub.repos:
            fake_hub.add_repo(name, files)
    keys = root / "keys"
    ok(cli("http://unused", "keygen", "--out", str(keys)))
    other = root / "other-keys"
    ok(cli("http://unused", "keygen", "--out", str(other)))
    policy = f"""
[policy]
mode = "allowlist"
licenses = ["apache-2.0", "mit"]
[governance]
keys = [{toml_str(str(keys / "governance.pub"))}]
admin_token = {toml_str(TOKEN)}
prefetch_requests = false
public_url = "http://airlock.test"
"""
    a = start_airlock(root / "airlock", fake_hub, policy=policy)
    g = Gov(a, root, keys / "governance.key", keys / "governance.pub", other / "governance.key", {})
    try:
        for name in APPROVED_AT_START:
            g.approvals[name] = approve(g, name)
        yield g
    finally:
        a.stop()
        if os.environ.get("AIRLOCK_TEST_SHOW_LOG"):
            print(a.log())


# ---- keys ----------------------------------------------------------------------------------------------
def test_keygen_writes_private_key_0600_and_refuses_to_overwrite(gov, tmp_path):
    out = tmp_path / "k"
    ok(cli(gov, "keygen", "--out", str(out)))
    assert (out / "governance.key").stat().st_mode & 0o777 == 0o600
    assert (out / "governance.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    before = (out / "governance.key").read_bytes()
    p = cli(gov, "keygen", "--out", str(out))
    assert p.returncode == 2 and "exists" in p.stderr, p.stderr
    assert (out / "governance.key").read_bytes() == before


# ---- request → approve with the CLI → served -----------------------------------------------------------
def test_unapproved_is_not_found_with_request_id_then_cli_approval_serves_it(gov, fake_hub, tmp_path):
    out = download(gov, tmp_path / "home1", "govacme/tiny")
    assert not out["ok"] and is_not_found(out), out
    m = REQ_ID.search(out["message"])
    assert m, f"no request id in the client's error: {out['message']}"
    req = m.group(0)
    assert "not approved" in out["message"], out["message"]

    # The request is in the queue, through the API and the CLI.
    st, listed = admin(gov.airlock, "GET", "/admin/requests")
    assert st == 200 and any(r["id"] == req and r["name"] == "govacme/tiny" for r in listed), listed
    p = ok(cli(gov, "requests", "list"))
    assert req in p.stdout and "govacme/tiny" in p.stdout and "pending" in p.stdout, p.stdout

    review = tmp_path / "review"
    appr = approve(gov, "govacme/tiny", "--out", str(review))
    record = json.loads((review / f"{appr}.json").read_text())
    assert record["name"] == "govacme/tiny" and record["revision"] == fake_hub.sha("govacme/tiny")
    assert record["revision_name"] == "main" and record["approved_by"] == "model-governance"
    hub_files = REPOS["govacme/tiny"]
    assert {f["path"]: f["sha256"] for f in record["files"]} == {
        k: sha256(v if isinstance(v, bytes) else v.encode()) for k, v in hub_files.items()}
    assert record["license"] == "apache-2.0" and record["license_override"] is False

    got = expect_ok(download(gov, tmp_path / "home2", "govacme/tiny", "model.safetensors"), gov.airlock)
    assert got["sha256"] == sha256(hub_files["model.safetensors"])
    # The same HF_HOME that was refused now succeeds too.
    expect_ok(download(gov, tmp_path / "home1", "govacme/tiny"), gov.airlock)

    st, r = admin(gov.airlock, "GET", f"/admin/requests/{req}")
    assert st == 200 and r["status"] == "approved" and r.get("approval") == appr, r


def test_requests_show_and_approve_by_id(gov, tmp_path):
    out = download(gov, tmp_path / "h", "govacme/viareq")
    m = REQ_ID.search(out.get("message", ""))
    assert not out["ok"] and m, out
    req = m.group(0)
    shown = json.loads(ok(cli(gov, "requests", "show", req)).stdout)
    assert shown["id"] == req and shown["name"] == "govacme/viareq" and shown["status"] == "pending"
    p = ok(cli(gov, "requests", "approve", req, *signer(gov)))
    assert APPR_ID.search(p.stdout), p.stdout
    expect_ok(download(gov, tmp_path / "h2", "govacme/viareq"), gov.airlock)


def test_requests_deny_shows_reason_to_clients(gov, tmp_path):
    out = download(gov, tmp_path / "h", "govacme/denyme")
    m = REQ_ID.search(out.get("message", ""))
    assert not out["ok"] and m, out
    req = m.group(0)
    ok(cli(gov, "requests", "deny", req, "--reason", "not cleared for production", "--by", "alice"))
    again = download(gov, tmp_path / "h2", "govacme/denyme")
    assert not again["ok"], again
    assert "not cleared for production" in again["message"] and "alice" in again["message"], again["message"]
    shown = json.loads(ok(cli(gov, "requests", "show", req)).stdout)
    assert shown["status"] == "denied" and shown["reason"] == "not cleared for production"


def test_unknown_request_id_is_an_error(gov):
    p = cli(gov, "requests", "show", "req-doesnotexist")
    assert p.returncode == 2 and "not found" in p.stderr, p.stderr


def test_files_glob_limits_the_approval(gov, tmp_path):
    appr = approve(gov, "govacme/partial", "--files", "*.json", "--files", "README.md", "--out", str(tmp_path))
    record = json.loads((tmp_path / f"{appr}.json").read_text())
    assert sorted(f["path"] for f in record["files"]) == ["README.md", "config.json"]
    expect_ok(download(gov, tmp_path / "h", "govacme/partial", "config.json"), gov.airlock)
    out = download(gov, tmp_path / "h2", "govacme/partial", "model.safetensors")
    assert not out["ok"], "a file outside the approval was served"


# ---- records that must not verify ---------------------------------------------------------------------
def rejected_paths(gov: Gov) -> list[str]:
    st, body = admin(gov.airlock, "GET", "/admin/approvals")
    assert st == 200, body
    return [r["path"] for r in body["rejected"]]


def drop_and_reload(gov: Gov, record: Path) -> None:
    shutil.copy(record, gov.airlock.data_dir / "approvals" / record.name)
    st, body = admin(gov.airlock, "POST", "/admin/reload")
    assert st == 200, body


def test_record_signed_by_unknown_key_is_rejected(gov, tmp_path):
    # Signed offline with a key the server does not trust (prepared through the server, not sent).
    p = ok(cli(gov, "approve", "hf", "govacme/unknownkey", *signer(gov, gov.other_key), "--out", str(tmp_path),
               "--no-send"))
    appr = APPR_ID.search(p.stdout).group(0)
    record = tmp_path / f"{appr}.json"
    st, body = admin(gov.airlock, "POST", "/admin/approvals", record.read_bytes())
    assert st == 400 and "error" in body, body
    # Through the CLI: refused (exit 1) with the server's reason.
    p = cli(gov, "approvals", "import", str(tmp_path))
    assert p.returncode == 1 and "rejected" in p.stdout, p.stdout + p.stderr

    drop_and_reload(gov, record)
    assert any(path.endswith(record.name) for path in rejected_paths(gov))
    out = download(gov, tmp_path / "h", "govacme/unknownkey")
    assert not out["ok"] and is_not_found(out), out


def test_record_with_a_changed_pin_is_rejected(gov, tmp_path):
    signed = tmp_path / "signed"
    p = ok(cli(gov, "approve", "hf", "govacme/changedpin", *signer(gov), "--out", str(signed), "--no-send"))
    appr = APPR_ID.search(p.stdout).group(0)
    doc = json.loads((signed / f"{appr}.json").read_text())
    pin = next(f for f in doc["files"] if f["path"] == "model.safetensors")
    # Pin other bytes (the sha256 of something else), keeping everything else — id and signature — as signed.
    pin["sha256"] = sha256(b"a different model")
    edited = tmp_path / "edited" / f"{appr}.json"
    edited.parent.mkdir()
    edited.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    st, body = admin(gov.airlock, "POST", "/admin/approvals", edited.read_bytes())
    assert st == 400 and "error" in body, body

    drop_and_reload(gov, edited)
    assert any(path.endswith(edited.name) for path in rejected_paths(gov))
    out = download(gov, tmp_path / "h", "govacme/changedpin")
    assert not out["ok"], "a record with a changed pin covered something"
    # The untouched record is fine: the rejection was about the edit.
    st, body = admin(gov.airlock, "POST", "/admin/approvals", (signed / f"{appr}.json").read_bytes())
    assert st == 200 and body["id"] == appr, body


# ---- typosquats ---------------------------------------------------------------------------------------
TYPOSQUATS = [
    ("EleuterAI/gpt-j-6b", "EleutherAI/gpt-j-6b"),
    ("Qwen/Qwen35-7B", "Qwen/Qwen3.5-7B"),
    ("meta-IIama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B"),
    ("rneta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B"),
]


@pytest.mark.parametrize("asked,meant", TYPOSQUATS)
def test_typosquat_refused_with_did_you_mean(gov, tmp_path, asked, meant):
    out = download(gov, tmp_path / "h", asked)
    assert not out["ok"], out
    msg = out["message"]
    assert "did you mean" in msg and meant in msg, msg
    assert not REQ_ID.search(msg), f"a typosquat must be refused outright, not queued: {msg}"
    st, listed = admin(gov.airlock, "GET", "/admin/requests")
    assert st == 200 and not any(r["name"] == asked for r in listed), listed


def test_cyrillic_lookalike_is_refused(gov, tmp_path):
    """`Qwеn` with a Cyrillic е (U+0435). HF repo ids are ASCII: Airlock may refuse the name as a typosquat
    ("did you mean Qwen/…") or as an invalid id; either way it names the problem and serves nothing."""
    asked = "Qw\u0435n/Qwen3.5-7B"
    out = download(gov, tmp_path / "h", asked)
    assert not out["ok"], out
    msg = out["message"]
    st, _, body = request(gov.airlock, "GET", "/api/models/Qw%D0%B5n/Qwen3.5-7B/revision/main")
    raw = body.decode(errors="replace")
    assert st in (400, 401, 403, 404), (st, raw)
    said = msg + " " + raw
    assert ("did you mean" in said and "Qwen/Qwen3.5-7B" in said) or \
        (st == 400 and ("\u0435" in raw or "U+0435" in raw or "ASCII" in raw or "ascii" in raw)), (st, said)


def test_clearly_different_name_is_plain_not_approved(gov, tmp_path):
    out = download(gov, tmp_path / "h", "mistralai/Mistral-7B")
    assert not out["ok"] and is_not_found(out), out
    assert "did you mean" not in out["message"], out["message"]
    assert "not approved" in out["message"] and REQ_ID.search(out["message"]), out["message"]


def test_approved_names_are_not_flagged(gov, tmp_path):
    for name in APPROVED_AT_START:
        expect_ok(download(gov, tmp_path / name.replace("/", "_"), name), gov.airlock)


# ---- licences ------------------------------------------------------------------------------------------
def test_licence_outside_policy_needs_override(gov, tmp_path):
    p = cli(gov, "approve", "hf", "govacme/otherlic", *signer(gov))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "other" in p.stderr and "--license-override" in p.stderr, p.stderr
    out = download(gov, tmp_path / "h", "govacme/otherlic")
    assert not out["ok"], out

    appr = approve(gov, "govacme/otherlic", "--license-override", "--out", str(tmp_path / "r"))
    record = json.loads((tmp_path / "r" / f"{appr}.json").read_text())
    assert record["license"] == "other" and record["license_override"] is True
    expect_ok(download(gov, tmp_path / "h2", "govacme/otherlic"), gov.airlock)


# ---- revocation and the audit log ---------------------------------------------------------------------
def test_revoke_stops_serving_and_audit_lists_earlier_downloads(gov, tmp_path):
    appr = approve(gov, "govacme/revokeme")
    home = tmp_path / "home"
    expect_ok(download(gov, home, "govacme/revokeme"), gov.airlock)
    expect_ok(download(gov, home, "govacme/revokeme", "model.safetensors"), gov.airlock)

    reason = "weights found to exfiltrate prompts"
    p = ok(cli(gov, "revoke", appr, "--reason", reason, *signer(gov)[:4]))
    assert appr in p.stdout

    # The same HF_HOME (with the files cached) asks again: refused with the reason.
    out = download(gov, home, "govacme/revokeme")
    assert not out["ok"], f"served after revocation: {out}"
    assert reason in out["message"] and appr in out["message"], out["message"]
    st, body = admin(gov.airlock, "GET", "/admin/approvals")
    entry = next(a for a in body["approvals"] if a["id"] == appr)
    assert entry["revoked"] and entry["revoked"]["reason"] == reason

    p = ok(cli(gov, "audit", "downloads", appr, "--data-dir", str(gov.airlock.data_dir)))
    assert "config.json" in p.stdout and "model.safetensors" in p.stdout and "127.0.0.1" in p.stdout, p.stdout
    digest = sha256(REPOS["govacme/revokeme"]["model.safetensors"])
    assert digest in p.stdout, p.stdout

    # Revoking an approval the server does not know is an error, not a silent success.
    p = cli(gov, "revoke", "appr-000000000000", "--reason", "x", *signer(gov)[:4])
    assert p.returncode == 2 and "not found" in p.stderr, p.stderr


def test_audit_verify_and_export(gov, tmp_path):
    d = gov.airlock.data_dir
    p = ok(cli(gov, "audit", "verify", "--data-dir", str(d)))
    m = re.search(r"ok: (\d+) entries", p.stdout)
    assert m and int(m.group(1)) > 0, p.stdout
    lines = ok(cli(gov, "audit", "export", "--data-dir", str(d))).stdout.splitlines()
    assert len(lines) >= int(m.group(1))
    kinds = {json.loads(l)["event"]["kind"] for l in lines}
    assert {"approval", "request"} <= kinds, kinds
    assert ok(cli(gov, "audit", "export", "--data-dir", str(d), "--since", "2999-01-01T00:00:00Z")).stdout == ""


def test_audit_verify_finds_one_edited_byte(gov, tmp_path):
    log = gov.airlock.data_dir / "audit.log"
    # Work on a copy: the server keeps appending to the live log.
    copy = tmp_path / "audit.log"
    data = bytearray(log.read_bytes())
    lines = data.split(b"\n")
    assert len(lines) > 4, "the audit log should have entries by now"
    target = 3  # 1-based line to edit
    start = sum(len(l) + 1 for l in lines[:target - 1])
    at = data.index(b'"name":"', start) + len('"name":"')
    assert at < start + len(lines[target - 1]), "line 3 has no name field"
    data[at] = ord("X") if data[at] != ord("X") else ord("Y")
    copy.write_bytes(bytes(data))
    pub = str(gov.airlock.data_dir / "mirror.pub")

    ok(cli(gov, "audit", "verify", "--log", str(log), "--key", pub))
    p = cli(gov, "audit", "verify", "--log", str(copy), "--key", pub)
    assert p.returncode == 1, p.stdout + p.stderr
    assert f"line {target}" in p.stdout, p.stdout

    # Deleting a line is found too, at the line after the gap.
    cut = b"\n".join(lines[:1] + lines[2:])
    copy.write_bytes(cut)
    p = cli(gov, "audit", "verify", "--log", str(copy), "--key", pub)
    assert p.returncode == 1 and "line 2" in p.stdout, p.stdout

    # A key that did not sign the log: nothing verifies.
    p = cli(gov, "audit", "verify", "--log", str(log), "--key", str(gov.pub))
    assert p.returncode == 1 and "line 1" in p.stdout, p.stdout


# ---- export / import -------------------------------------------------------------------------------------
def test_approvals_export_then_import_into_another_mirror(gov, fake_hub, tmp_path):
    exported = tmp_path / "exported"
    ok(cli(gov, "approvals", "export", str(exported), "--data-dir", str(gov.airlock.data_dir)))
    st, body = admin(gov.airlock, "GET", "/admin/approvals")
    ids = {a["id"] for a in body["approvals"]}
    files = {p.name for p in exported.glob("*.json")}
    assert {f"{i}.json" for i in ids} <= files, (ids, files)

    policy = f"""
[policy]
licenses = ["apache-2.0"]
[governance]
keys = [{toml_str(str(gov.pub))}]
admin_token = {toml_str(TOKEN)}
prefetch_requests = false
"""
    other = start_airlock(tmp_path / "second", fake_hub, policy=policy)
    try:
        p = cli(other.url, "approvals", "import", str(exported))
        assert p.returncode == 0, p.stdout + p.stderr
        st, body2 = admin(other, "GET", "/admin/approvals")
        assert st == 200 and {a["id"] for a in body2["approvals"]} == ids, body2
        assert body2["rejected"] == []
        revoked = {a["id"] for a in body["approvals"] if a["revoked"]}
        assert revoked == {a["id"] for a in body2["approvals"] if a["revoked"]}
        expect_ok(hf_call(other, tmp_path / "h", {"op": "download", "repo": "EleutherAI/gpt-j-6b",
                                                 "filename": "config.json"}), other)
    finally:
        other.stop()


# ---- the admin API's door -------------------------------------------------------------------------------
@pytest.mark.parametrize("method,path", [("GET", "/admin/requests"), ("GET", "/admin/approvals"),
                                         ("POST", "/admin/reload"), ("POST", "/admin/approvals")])
def test_admin_api_needs_the_token(gov, method, path):
    body = b"{}" if method == "POST" else None
    st, _ = admin(gov.airlock, method, path, body, token=None)
    assert st == 401
    st, _ = admin(gov.airlock, method, path, body, token="wrong-" + TOKEN)
    assert st == 401
    st, _ = admin(gov.airlock, method, path, body, token=TOKEN[:-1])
    assert st == 401
    p = cli(gov, "requests", "list", token="wrong")
    assert p.returncode == 2 and "401" in p.stderr, p.stderr


def test_admin_api_absent_without_a_configured_token(fake_hub, tmp_path):
    a = start_airlock(tmp_path, fake_hub, policy='\n[governance]\nprefetch_requests = false\n')
    try:
        for tok in (None, TOKEN):
            st, _ = admin(a, "GET", "/admin/requests", token=tok)
            assert st == 404
        p = cli(a.url, "requests", "list")
        assert p.returncode == 2 and "404" in p.stderr, p.stderr
    finally:
        a.stop()
