"""The scanner against what real libraries write: a benign corpus generated at test time by numpy,
pandas, scikit-learn, scipy, joblib, transformers and the standard library (current and previous
major versions, integration-tests/corpus/), scanned by the real `airlock scan`, must raise no
finding at or above the refusal threshold; the labelled malicious corpus must stay fully caught;
`--explain` says why; `[scan] allow_globals` admits an organisation's class through the real server
and writes an audit line. Nothing here is ever unpickled."""
import io
import json
import os
import pickle
import subprocess
import sys
import types
from pathlib import Path

import pytest

from conftest import ROOT, airlock_bin, default_policy, expect_ok, hf_call, sha256, start_airlock

CORPUS = Path(__file__).parent / "corpus"
LABELLED = ROOT / "verifier" / "tests" / "fixtures" / "scan-corpus"
REFUSAL = {"medium", "high", "critical"}


def corpus_python(var: str, venv: str) -> str:
    p = os.environ.get(var) or str(ROOT / venv / "bin" / "python")
    if not Path(p).exists():
        pytest.fail(f"{p} missing: scripts/test.sh creates it from {CORPUS}/requirements*.txt (or set {var})")
    return p


@pytest.fixture(scope="module")
def benign(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("benign")
    for var, venv, which in (("AIRLOCK_CORPUS_PYTHON", ".venv-corpus", "current"),
                             ("AIRLOCK_CORPUS_PREV_PYTHON", ".venv-corpus-prev", "previous")):
        subprocess.run([corpus_python(var, venv), str(CORPUS / "gen_benign.py"), str(out), "--set", which],
                       check=True, capture_output=True, text=True, timeout=300)
    return out


def scan_json(*args: str) -> tuple[int, dict]:
    p = subprocess.run([str(airlock_bin()), "scan", "--no-progress", "--format", "json", *args],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode in (0, 1), f"airlock scan failed (rc={p.returncode}): {p.stderr[-2000:]}"
    return p.returncode, json.loads(p.stdout)


def test_real_library_pickles_raise_no_alarm(benign):
    files = [l for m in benign.glob("manifest*.txt") for l in m.read_text().split() if l]
    assert len(files) >= 200, f"corpus has only {len(files)} files"
    for prefix in ("numpy/", "numpy-1x/", "pandas/", "pandas-2x/", "sklearn/", "joblib/", "scipy/",
                   "stdlib/", "torch/", "transformers/"):
        assert any(f.startswith(prefix) for f in files), f"no {prefix} files generated"
    rc, doc = scan_json(str(benign))
    alarms = []
    for f in doc["files"]:
        if f["path"].endswith(".txt"):
            continue
        bad = [x for x in f["report"]["findings"] if x["severity"] in REFUSAL]
        if bad or not f["clean"]:
            alarms.append(f"{f['path']}: {f['summary']}")
    assert not alarms, f"{len(alarms)} false alarms:\n" + "\n".join(alarms)
    assert rc == 0


def test_malicious_corpus_stays_fully_caught():
    rows = [l.split(",") for l in (LABELLED / "labels.csv").read_text().splitlines()[1:] if l.strip()]
    _, doc = scan_json(str(LABELLED / "corpus"))
    by_path = {str(Path(f["path"]).relative_to(LABELLED / "corpus")): f for f in doc["files"]}
    wrong = [f"{name} ({label}): {by_path[name]['summary']}" for name, label, *_ in rows
             if by_path[name]["clean"] != (label == "benign")]
    assert sum(1 for r in rows if r[1] == "malicious") >= 70
    assert not wrong, "\n".join(wrong)


def explain(path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(airlock_bin()), "scan", "--no-progress", "--explain", *extra, str(path)],
                          capture_output=True, text=True, timeout=60)


def test_explain_names_every_global_with_decision_and_reason(benign):
    p = explain(benign / "torch" / "training_args.bin")
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    assert "allowed NEWOBJ   transformers.training_args.TrainingArguments" in out, out
    assert "allowed REDUCE   transformers.trainer_utils.IntervalStrategy" in out, out
    assert "transformers 5.25" in out, out
    p = explain(benign / "stdlib" / "range_p2.pkl")
    assert "__builtin__.xrange (= builtins.range)" in p.stdout, p.stdout
    p = explain(LABELLED / "corpus" / "pickle" / "p0_os_system.pkl")
    assert p.returncode == 1, p.stdout
    assert "REFUSED REDUCE   os.system" in p.stdout and "can execute code" in p.stdout, p.stdout


# ---- an organisation's own classes -----------------------------------------------------------------------
def org_pickle() -> bytes:
    """A pickle of `mypkg.models.Config`, a plain data class that no allowlist knows."""
    mod = types.ModuleType("mypkg.models")
    sys.modules.setdefault("mypkg", types.ModuleType("mypkg"))
    sys.modules["mypkg.models"] = mod

    class Config:
        def __init__(self):
            self.hidden, self.labels = 64, ["a", "b"]

    Config.__module__, Config.__qualname__ = "mypkg.models", "Config"
    mod.Config = Config
    try:
        return pickle.dumps(Config(), protocol=4)
    finally:
        del sys.modules["mypkg.models"]


def test_allow_global_on_the_cli(tmp_path):
    f = tmp_path / "config.pkl"
    f.write_bytes(org_pickle())
    p = explain(f)
    assert p.returncode == 1 and "REFUSED NEWOBJ   mypkg.models.Config" in p.stdout, p.stdout
    p = explain(f, "--allow-global", "mypkg.models.Config")
    assert p.returncode == 0, p.stdout
    assert "admitted by --allow-global: mypkg.models.Config" in p.stdout, p.stdout
    p = explain(f, "--allow-global", "os.system")
    assert p.returncode == 2 and "can execute code" in p.stderr, p.stderr


def test_allow_globals_admit_a_custom_class_through_the_server_and_are_audited(fake_hub, tmp_path):
    data = org_pickle()
    fake_hub.add_repo("acme/org-pickle", {"config.json": "{}\n", "model.pkl": data})
    policy = default_policy(fake_hub) + '[[policy.allow]]\nhf = "acme/org-pickle"\n'
    refusing = start_airlock(tmp_path / "plain", fake_hub, policy=policy)
    try:
        out = hf_call(refusing, tmp_path / "home1", {"op": "download", "repo": "acme/org-pickle",
                                                      "filename": "model.pkl"})
        assert not out.get("ok"), "served a pickle of an unknown class without allow_globals"
    finally:
        refusing.stop()
    a = start_airlock(tmp_path / "org", fake_hub,
                      policy=policy + '\n[scan]\nallow_globals = ["mypkg.models.Config"]\n')
    try:
        out = expect_ok(hf_call(a, tmp_path / "home2", {"op": "download", "repo": "acme/org-pickle",
                                                         "filename": "model.pkl"}), a)
        assert out["sha256"] == sha256(data)
        lines = [json.loads(l) for l in (a.data_dir / "audit.log").read_text().splitlines() if l.strip()]
        events = [l.get("event", l) for l in lines]
        hits = [e for e in events if e.get("kind") == "scan_allowance"]
        assert hits, f"no scan_allowance audit line in {events}"
        # The file is named with its repo (the fetch path's label for an HF file).
        assert hits[0]["file"] == "acme/org-pickle/model.pkl", hits
        assert hits[0]["globals"] == ["mypkg.models.Config"], hits
    finally:
        a.stop()
