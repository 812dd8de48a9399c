"""Governance end to end (issue 6, docs/governance.md): signed approvals made with the real `airlock` CLI,
the review-request queue, typosquat and licence refusals, revocation and the signed audit log — through the real
binary and the real `huggingface_hub` client.

One Airlock with a governance key and an admin token serves the module; tests that need a different config start
their own. Repos are added to the shared fake Hub here (under names no other test uses), not in fake_hub.py.
"""

from __future__ import annotations

import datetime
import json
import os
import pickle
import re
import shutil
import subprocess
import time
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


class _Evil:
    """Unpickling this runs a shell command: what a scanner must refuse."""
    def __reduce__(self):
        return (os.system, ("echo pwned",))


# Upstream repos of this module. The typosquat targets are approved in the fixture; the rest start unapproved.
REPOS = {
    "govacme/tiny": repo_files("tiny"),
    "govacme/viareq": repo_files("viareq"),
    "govacme/denyme": repo_files("denyme"),
    "govacme/unknownkey": repo_files("unknownkey"),
    "govacme/changedpin": repo_files("changedpin"),
    "govacme/otherlic": repo_files("otherlic", licence="other"),
    "govacme/revokeme": repo_files("revokeme"),
    "govacme/revokecached": repo_files("revokecached"),
    "govacme/partial": repo_files("partial"),
    "govacme/expiring": repo_files("expiring"),
    "govacme/prefetch": repo_files("prefetch"),
    # Unapproved, but it exists upstream: a review request is recorded only for a revision that resolves there.
    "govacme/auditreq": repo_files("auditreq"),
    "govacme/evilpickle": {**repo_files("evilpickle"), "pytorch_model.bin": pickle.dumps(_Evil(), protocol=2)},
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
        k: "sha256:" + sha256(v if isinstance(v, bytes) else v.encode()) for k, v in hub_files.items()}
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


def utc_in(seconds: float) -> str:
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_expired_approval_stops_serving(gov, tmp_path):
    # An expiry in the past cannot be signed at all.
    p = cli(gov, "approve", "hf", "govacme/expiring", *signer(gov), "--expires", "2020-01-01T00:00:00Z")
    assert p.returncode == 2 and "expires_at" in p.stderr, p.stderr
    p = cli(gov, "approve", "hf", "govacme/expiring", *signer(gov), "--expires", "tomorrow")
    assert p.returncode == 2 and "--expires" in p.stderr, p.stderr

    lifetime = 10
    expires = utc_in(lifetime)
    appr = approve(gov, "govacme/expiring", "--expires", expires)
    expect_ok(download(gov, tmp_path / "h", "govacme/expiring"), gov.airlock)
    deadline = datetime.datetime.strptime(expires, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    time.sleep(max(0.0, (deadline - datetime.datetime.now(datetime.timezone.utc)).total_seconds()) + 1.5)
    out = download(gov, tmp_path / "h2", "govacme/expiring")
    assert not out["ok"], f"served after expiry: {out}"
    assert "expired" in out["message"] and appr in out["message"], out["message"]


def test_version_with_a_refused_file_cannot_be_approved(gov, tmp_path):
    st, prepared = admin(gov.airlock, "POST", "/admin/prepare",
                         {"source": "hf", "name": "govacme/evilpickle", "revision": "main"})
    assert st == 200, prepared
    assert [r["file"] for r in prepared["refused"]] == ["pytorch_model.bin"], prepared
    p = cli(gov, "approve", "hf", "govacme/evilpickle", *signer(gov), "--out", str(tmp_path))
    assert p.returncode == 1 and "pytorch_model.bin" in p.stderr, p.stdout + p.stderr
    assert not list(tmp_path.glob("appr-*.json")), "a refused version got a record file"
    out = download(gov, tmp_path / "h", "govacme/evilpickle")
    assert not out["ok"], out


def test_prefetched_request_carries_the_scan_report(gov, fake_hub, tmp_path):
    policy = f"""
[policy]
licenses = ["apache-2.0"]
[governance]
keys = [{toml_str(str(gov.pub))}]
admin_token = {toml_str(TOKEN)}
prefetch_requests = true
"""
    a = start_airlock(tmp_path / "prefetching", fake_hub, policy=policy)
    try:
        out = hf_call(a, tmp_path / "h", {"op": "download", "repo": "govacme/prefetch", "filename": "config.json"})
        m = REQ_ID.search(out.get("message", ""))
        assert not out["ok"] and m, out
        req = m.group(0)
        deadline = time.monotonic() + 60
        while True:
            shown = json.loads(ok(cli(a.url, "requests", "show", req)).stdout)
            if shown.get("report") or shown.get("report_error") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        report = shown.get("report")
        assert report, f"no report after 60 s: {shown}"
        assert report["revision"] == fake_hub.sha("govacme/prefetch") and report["refused"] == []
        assert report["license"] == "apache-2.0" and report["license_allowed"] is True
        files = {f["path"]: f["sha256"] for f in report["files"]}
        assert files["model.safetensors"] == "sha256:" + sha256(REPOS["govacme/prefetch"]["model.safetensors"])
        assert "127.0.0.1" in " ".join(shown["clients"]) and shown["count"] >= 1
        ok(cli(a.url, "requests", "approve", req, *signer(gov)))
        expect_ok(hf_call(a, tmp_path / "h2", {"op": "download", "repo": "govacme/prefetch",
                                               "filename": "model.safetensors"}), a)
    finally:
        a.stop()


# ---- records that must not verify ---------------------------------------------------------------------
def approval_id(doc: dict) -> str:
    """What signing::ApprovalRecord::id computes: `appr-` + 12 hex of sha256("airlock-approval-v1\\n" + the
    canonical JSON (sorted keys, no whitespace) of the record without its envelope fields)."""
    record = {k: v for k, v in doc.items() if k not in ("format", "signature", "signed_by", "id")}
    body = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return "appr-" + sha256(b"airlock-approval-v1\n" + body)[:12]


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
    assert st == 400 and "not a trusted governance key" in body["error"], body
    # Through the CLI: refused (exit 1) with the server's reason.
    p = cli(gov, "approvals", "import", str(tmp_path))
    assert p.returncode == 1 and "rejected" in p.stdout, p.stdout + p.stderr

    drop_and_reload(gov, record)
    assert any(path.endswith(record.name) for path in rejected_paths(gov))
    out = download(gov, tmp_path / "h", "govacme/unknownkey")
    # Covers nothing, and the refusal says which record and why (issue 16).
    assert not out["ok"] and appr in out["message"] and "not a trusted governance key" in out["message"], out


def test_record_with_a_changed_pin_is_rejected(gov, tmp_path):
    signed = tmp_path / "signed"
    p = ok(cli(gov, "approve", "hf", "govacme/changedpin", *signer(gov), "--out", str(signed), "--no-send"))
    appr = APPR_ID.search(p.stdout).group(0)
    doc = json.loads((signed / f"{appr}.json").read_text())
    pin = next(f for f in doc["files"] if f["path"] == "model.safetensors")
    # Pin other bytes (the sha256 of something else), keeping everything else — id and signature — as signed.
    pin["sha256"] = "sha256:" + sha256(b"a different model")
    edited = tmp_path / "edited" / f"{appr}.json"
    edited.parent.mkdir()
    edited.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    st, body = admin(gov.airlock, "POST", "/admin/approvals", edited.read_bytes())
    assert st == 400 and "changed" in body["error"], body

    drop_and_reload(gov, edited)
    assert any(path.endswith(edited.name) for path in rejected_paths(gov))
    out = download(gov, tmp_path / "h", "govacme/changedpin")
    assert not out["ok"], "a record with a changed pin covered something"
    # The rejected file holds the record's name in approvals/ (the server will not overwrite it): move it away.
    (gov.airlock.data_dir / "approvals" / edited.name).unlink()
    assert admin(gov.airlock, "POST", "/admin/reload")[0] == 200
    # A careful forger also recomputes the content-derived id: then the signature is what catches it.
    assert approval_id(json.loads((signed / f"{appr}.json").read_text())) == appr, "id recomputation is wrong"
    doc["id"] = approval_id(doc)
    forged = tmp_path / "forged" / f"{doc['id']}.json"
    forged.parent.mkdir()
    forged.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    st, body = admin(gov.airlock, "POST", "/admin/approvals", forged.read_bytes())
    assert st == 400 and "does not verify" in body["error"], body
    drop_and_reload(gov, forged)
    assert any(path.endswith(forged.name) for path in rejected_paths(gov))
    assert not download(gov, tmp_path / "h3", "govacme/changedpin")["ok"]

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
    """`Qwеn` with a Cyrillic е (U+0435). HF repo ids are ASCII: `huggingface_hub` itself refuses the id before
    sending anything (HFValidationError), and Airlock, asked directly, answers 400 naming the id (the JSON body
    carries the real character; the X-Error-Message header can only show it as `?`). A typosquat refusal ("did you
    mean Qwen/…") is accepted too. Either way nothing is served and no request is queued."""
    asked = "Qw\u0435n/Qwen3.5-7B"
    out = download(gov, tmp_path / "h", asked)
    assert not out["ok"], out
    msg = out["message"]
    assert out["type"] == "HFValidationError" or "did you mean" in msg, out
    st, _, body = request(gov.airlock, "GET", "/api/models/Qw%D0%B5n/Qwen3.5-7B/revision/main")
    raw = body.decode(errors="replace")
    assert st in (400, 401, 403, 404), (st, raw)
    said = msg + " " + raw
    assert ("did you mean" in said and "Qwen/Qwen3.5-7B" in said) or \
        (st == 400 and ("\u0435" in raw or "U+0435" in raw or "ASCII" in raw or "ascii" in raw)), (st, said)
    st, listed = admin(gov.airlock, "GET", "/admin/requests")
    assert not any("Qw\u0435n" in r["name"] for r in listed), listed


def test_cli_refuses_to_approve_a_lookalike(gov, tmp_path):
    # An approver's typo must not whitelist the squat: the CLI runs the server's check first.
    p = cli(gov, "approve", "hf", "EleuterAI/gpt-j-6b", *signer(gov), "--out", str(tmp_path))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "did you mean" in p.stderr and "EleutherAI/gpt-j-6b" in p.stderr and "--allow-lookalike" in p.stderr
    assert not list(tmp_path.glob("*.json"))


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
def revoke_after_download(gov: Gov, repo: str, home: Path, reason: str) -> str:
    appr = approve(gov, repo)
    expect_ok(download(gov, home, repo), gov.airlock)
    expect_ok(download(gov, home, repo, "model.safetensors"), gov.airlock)
    p = ok(cli(gov, "revoke", appr, "--reason", reason, *signer(gov)[:4]))
    assert appr in p.stdout
    return appr


def test_revoke_stops_serving_and_audit_lists_earlier_downloads(gov, tmp_path):
    reason = "weights found to exfiltrate prompts"
    appr = revoke_after_download(gov, "govacme/revokeme", tmp_path / "home", reason)

    # The next download is refused at once, naming the approval, who revoked it and why.
    out = download(gov, tmp_path / "fresh", "govacme/revokeme")
    assert not out["ok"], f"served after revocation: {out}"
    assert reason in out["message"] and appr in out["message"], out["message"]
    st, body = admin(gov.airlock, "GET", "/admin/approvals")
    entry = next(a for a in body["approvals"] if a["id"] == appr)
    assert entry["revoked"] and entry["revoked"]["reason"] == reason

    # Who received the revoked bytes, and when.
    p = ok(cli(gov, "audit", "downloads", appr, "--data-dir", str(gov.airlock.data_dir)))
    assert "config.json" in p.stdout and "model.safetensors" in p.stdout and "127.0.0.1" in p.stdout, p.stdout
    assert sha256(REPOS["govacme/revokeme"]["model.safetensors"]) in p.stdout, p.stdout
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", p.stdout), p.stdout

    # Revoking an approval the server does not know is an error, not a silent success.
    p = cli(gov, "revoke", "appr-000000000000", "--reason", "x", *signer(gov)[:4])
    assert p.returncode == 2 and "not found" in p.stderr, p.stderr


def test_revoked_version_is_revision_not_found_so_cached_clients_notice(gov, tmp_path):
    reason = "licence withdrawn upstream"
    home = tmp_path / "home"
    revoke_after_download(gov, "govacme/revokecached", home, reason)
    st, h, _ = request(gov.airlock, "HEAD", "/govacme/revokecached/resolve/main/config.json")
    assert st == 404 and h.get("X-Error-Code") in ("RevisionNotFound", "EntryNotFound"), (st, dict(h))
    assert reason in (h.get("X-Error-Message") or ""), dict(h)
    # The client that holds a cached copy asks again: refused, not served from its cache.
    out = download(gov, home, "govacme/revokecached")
    assert not out["ok"], f"a cached client kept using a revoked version: {out}"
    assert reason in out["message"], out["message"]


def test_audit_verify_and_export(gov, tmp_path):
    d = gov.airlock.data_dir
    # Make sure the log holds a request and a refusal whatever ran before.
    out = download(gov, tmp_path / "h", "govacme/auditreq")
    assert not out["ok"] and REQ_ID.search(out["message"]), out
    time.sleep(0.5)  # audit appends run off the request thread
    p = ok(cli(gov, "audit", "verify", "--data-dir", str(d)))
    m = re.search(r"ok: (\d+) entries", p.stdout)
    assert m and int(m.group(1)) > 0, p.stdout
    lines = ok(cli(gov, "audit", "export", "--data-dir", str(d))).stdout.splitlines()
    assert len(lines) >= int(m.group(1))
    kinds = {json.loads(l)["event"]["kind"] for l in lines}
    assert {"approval", "request", "refusal"} <= kinds, kinds
    assert ok(cli(gov, "audit", "export", "--data-dir", str(d), "--since", "2999-01-01T00:00:00Z")).stdout == ""


def test_audit_verify_finds_one_edited_byte(gov, tmp_path):
    log = gov.airlock.data_dir / "audit.log"
    # Enough entries whatever ran before: each refused ask adds a request and a refusal.
    for i in range(2):
        assert not download(gov, tmp_path / f"h{i}", f"govacme/audit-filler-{i}")["ok"]
    deadline = time.monotonic() + 10
    while log.read_bytes().count(b"\n") < 6 and time.monotonic() < deadline:
        time.sleep(0.2)  # audit appends run off the request thread
    # Work on a copy: the server keeps appending to the live log.
    copy = tmp_path / "audit.log"
    data = bytearray(log.read_bytes())
    lines = data.split(b"\n")
    assert len(lines) > 6, "the audit log should have entries by now"
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

    # Two lines swapped: found at the first of them.
    swapped = lines[:2] + [lines[3], lines[2]] + lines[4:]
    copy.write_bytes(b"\n".join(swapped))
    p = cli(gov, "audit", "verify", "--log", str(copy), "--key", pub)
    assert p.returncode == 1 and "line 3" in p.stdout, p.stdout

    # A torn last line (a write cut short) is reported as such.
    copy.write_bytes(bytes(log.read_bytes()) + b'{"event":')
    p = cli(gov, "audit", "verify", "--log", str(copy), "--key", pub)
    assert p.returncode == 1 and "incomplete" in p.stdout, p.stdout

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


# ---- Ollama: approve by manifest digest, pull, revoke → 403 DENIED ----------------------------------------
@dataclass
class OllamaRun:
    airlock: Airlock
    model: object
    approval: str
    record: dict
    refused: object  # Pull before the approval
    pulled: object  # Pull after it
    after: object  # Pull after the revocation
    reason: str


@pytest.fixture(scope="module")
def ollama_run(gov, tmp_path_factory):
    """One Ollama mirror under governance: pull refused → `airlock approve ollama` → pull → revoke → pull."""
    from ollama_support import ollama_model, ollama_pull, start_airlock_ollama, start_registry

    tmp = tmp_path_factory.mktemp("gov-ollama")
    reg = start_registry(tmp / "registry")
    a = None
    try:
        model = reg.push(ollama_model("library/govtiny", seed="gov-ollama"))
        rules = ('licenses = ["mit"]\n[governance]\n'
                 f'keys = [{toml_str(str(gov.pub))}]\nadmin_token = {toml_str(TOKEN)}\nprefetch_requests = false\n')
        a = start_airlock_ollama(tmp / "airlock", reg, rules)
        refused = ollama_pull(a, "library/govtiny:latest", tmp / "p1")
        out = tmp / "records"
        p = ok(cli(a.url, "approve", "ollama", "govtiny", *signer(gov), "--out", str(out)))
        appr = APPR_ID.search(p.stdout).group(0)
        record = json.loads((out / f"{appr}.json").read_text())
        pulled = ollama_pull(a, "library/govtiny:latest", tmp / "p2")
        reason = "quantisation found broken"
        ok(cli(a.url, "revoke", appr, "--reason", reason, *signer(gov)[:4]))
        after = ollama_pull(a, "library/govtiny:latest", tmp / "p3")
        yield OllamaRun(a, model, appr, record, refused, pulled, after, reason)
    finally:
        if a is not None:
            a.stop()
        reg.stop()


def test_ollama_approve_pull_and_revoke(ollama_run):
    r = ollama_run
    assert not r.refused.ok and "not approved" in r.refused.stderr and REQ_ID.search(r.refused.stderr), \
        r.refused.explain()
    assert r.record["source"] == "ollama" and r.record["name"] == "library/govtiny"
    assert r.record["revision"] == r.model.digest and r.record["revision_name"] == "latest"
    pinned = {f["sha256"] for f in r.record["files"]}
    assert {l["digest"] for l in r.model.layers} <= pinned, (pinned, r.model.layers)
    assert r.pulled.ok, r.pulled.explain() + r.airlock.log()[-2000:]
    assert not r.after.ok and "403" in r.after.stderr and "DENIED" in r.after.stderr, r.after.explain()
    assert r.reason in r.after.stderr and r.approval in r.after.stderr, r.after.explain()


def test_ollama_audit_downloads_lists_the_pull(ollama_run):
    r = ollama_run
    p = ok(cli(r.airlock.url, "audit", "downloads", r.approval, "--data-dir", str(r.airlock.data_dir)))
    assert r.model.model_digest.split(":", 1)[1] in p.stdout, p.stdout
    assert "library/govtiny" in p.stdout and r.model.digest in p.stdout, p.stdout
