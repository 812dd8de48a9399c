"""Fixtures for Airlock's end-to-end tests: a fake Hub (fake_hub.py), the real `airlock` binary in front of it,
and the real `huggingface_hub` client run in subprocesses with `HF_ENDPOINT` pointing at Airlock.

The binary is not built here: `scripts/test.sh` builds it. `AIRLOCK_BIN` overrides `target/debug/airlock`.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from fake_hub import FakeHub, model_bytes  # noqa: E402

HEALTH_TIMEOUT = 30.0
CLIENT_TIMEOUT = 90.0


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- the repos the fake Hub holds ------------------------------------------------------------------
# Every test reads the expected bytes from here, so assertions compare against what upstream really holds.
# Binary files are valid safetensors (whatever their name): Airlock scans content, and random bytes can look
# like a malformed pickle or archive and be refused for that.
TINY = {
    "config.json": json.dumps({"model_type": "tiny", "hidden_size": 8}, indent=2) + "\n",
    "tokenizer.json": json.dumps({"version": "1.0", "vocab": {f"t{i}": i for i in range(20)}}) + "\n",
    "README.md": "# acme/tiny\nA tiny test model.\n",
    "model.safetensors": model_bytes(3 * 1024 * 1024 + 17, "tiny-model"),
    "sub/weights.bin": model_bytes(64 * 1024, "tiny-weights"),
    "sub/dir/extra.txt": "extra\n",
}
TINY_PR1 = {"config.json": json.dumps({"model_type": "tiny", "hidden_size": 16, "pr": 1}) + "\n"}
DS = {
    "README.md": "# acme/tiny-ds\n",
    "data/train-00000.parquet": model_bytes(300 * 1024 + 5, "ds-train"),
    "data/test.csv": "a,b\n1,2\n3,4\n",
    "data/valid-00000.parquet": model_bytes(200 * 1024 + 11, "ds-valid"),
}
GPT2 = {"config.json": json.dumps({"model_type": "gpt2"}) + "\n",
        "model.safetensors": model_bytes(40 * 1024, "gpt2-model")}
EVIL = {"config.json": "{}\n", "model.safetensors": model_bytes(4096, "evil")}
PINNED_V1 = {"config.json": json.dumps({"version": 1}) + "\n", "model.safetensors": model_bytes(8192, "pin-v1")}
PINNED_V2 = {"config.json": json.dumps({"version": 2}) + "\n", "model.safetensors": model_bytes(8192, "pin-v2")}
# One file per fault, so tests never share a file's cold/warm state.
FAULTY = {
    "config.json": "{}\n",
    "flip.safetensors": model_bytes(256 * 1024, "flip"),
    "flip-small.json": json.dumps({"pad": "f" * 300}) + "\n",
    "cut.safetensors": model_bytes(4 * 1024 * 1024 + 3, "cut"),
    "flaky.safetensors": model_bytes(128 * 1024, "flaky"),
    "extra.safetensors": model_bytes(64 * 1024, "extra"),
    "absurd.safetensors": model_bytes(64 * 1024, "absurd"),
    "redirect.safetensors": model_bytes(64 * 1024, "redirect"),
    "slow.safetensors": model_bytes(512 * 1024, "slow"),
}
CONCURRENT = {"config.json": "{}\n", "big.safetensors": model_bytes(2 * 1024 * 1024, "concurrent")}
GATED = {"config.json": json.dumps({"gated": True}) + "\n", "model.safetensors": model_bytes(4096, "gated")}
HUB_TOKEN = "hf_airlock_integration_token"


def as_bytes(v) -> bytes:
    return v if isinstance(v, bytes) else v.encode()


@pytest.fixture(scope="session")
def fake_hub():
    hub = FakeHub(page_size=3, xet=True)
    hub.add_repo("acme/tiny", TINY, branches={"refs/pr/1": TINY_PR1})
    hub.add_repo("acme/tiny-ds", DS, kind="dataset")
    hub.add_repo("gpt2", GPT2)
    hub.add_repo("acme/evil", EVIL)
    hub.add_repo("pinned/model", PINNED_V1)
    hub.add_repo("acme/faulty", FAULTY)
    hub.add_repo("acme/concurrent", CONCURRENT)
    hub.add_repo("acme/gated", GATED, gated=True, token=HUB_TOKEN)
    hub.add_repo("acme/gated-other", GATED, gated=True, token="a-token-airlock-does-not-have")
    hub.start()
    yield hub
    hub.stop()


# ---- the airlock process ----------------------------------------------------------------------------
def airlock_bin() -> Path:
    p = Path(os.environ.get("AIRLOCK_BIN") or ROOT / "target" / "debug" / "airlock")
    if not p.exists():
        pytest.fail(f"airlock binary not found at {p}: build it first (scripts/test.sh does `cargo build`), "
                    "or set AIRLOCK_BIN")
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string


@dataclass
class Airlock:
    proc: subprocess.Popen
    port: int
    root: Path
    data_dir: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    # -- the store, as the tests see it
    def blob_files(self) -> dict[str, Path]:
        """Promoted blobs: name (64 hex) -> path, from data_dir/blobs/sha256/<2 hex>/<64 hex>."""
        base = self.data_dir / "blobs" / "sha256"
        out = {}
        if base.is_dir():
            for p in base.rglob("*"):
                if p.is_file():
                    out[p.name] = p
        return out

    def store_snapshot(self) -> set[str]:
        base = self.data_dir / "blobs"
        return {str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()} if base.is_dir() else set()

    def quarantine_files(self) -> list[Path]:
        q = self.data_dir / "quarantine"
        return [p for p in q.rglob("*") if p.is_file()] if q.is_dir() else []

    def assert_store_consistent(self) -> None:
        """Every promoted blob is named by the sha256 of its content, under its 2-hex prefix."""
        for name, p in self.blob_files().items():
            h = hashlib.sha256()
            with open(p, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            assert h.hexdigest() == name, f"blob {p} does not hash to its name (got {h.hexdigest()})"
            assert p.parent.name == name[:2], f"blob {p} is not under its 2-hex prefix"

    def holds_content(self, data: bytes) -> bool:
        """True if any promoted blob has exactly these bytes."""
        want = sha256(data)
        for p in self.blob_files().values():
            if p.stat().st_size == len(data) and hashlib.sha256(p.read_bytes()).hexdigest() == want:
                return True
        return False


def default_policy(hub: FakeHub) -> str:
    return f"""
[policy]
mode = "allowlist"
[[policy.allow]]
hf = "acme/tiny"
# The protocol tests fetch refs/pr/1; test_boundaries.py checks that pull requests are refused without this.
allow_pr_refs = true
[[policy.allow]]
hf = "datasets/acme/tiny-ds"
[[policy.allow]]
hf = "gpt2"
[[policy.allow]]
hf = "acme/faulty"
[[policy.allow]]
hf = "acme/concurrent"
[[policy.allow]]
hf = "acme/gated"
[[policy.allow]]
hf = "acme/gated-other"
[[policy.allow]]
hf = "pinned/*"
revision = "{hub.sha('pinned/model')}"
"""


def start_airlock(tmp: Path, hub: FakeHub, policy: str | None = None, env: dict | None = None,
                  redirect_hosts: list[str] | None = None, config_file: bool = True, port: int | None = None,
                  data_dir: Path | None = None) -> Airlock:
    """Starts `airlock serve` and waits for /healthz. With config_file=False no file is written: the caller
    configures Airlock through `env` alone (AIRLOCK_LISTEN and AIRLOCK_DATA_DIR are set from `port`, `data_dir`)."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    data_dir = data_dir or tmp / "airlock-data"
    hosts = redirect_hosts if redirect_hosts is not None else [hub.cdn_hostport]
    config = tmp / "airlock.toml"
    args = [str(airlock_bin()), "serve"]
    if config_file:
        config.write_text(
            f"listen = {toml_str(f'127.0.0.1:{port}')}\n"
            f"data_dir = {toml_str(str(data_dir))}\n"
            "[huggingface]\n"
            f"upstream = {toml_str(hub.url)}\n"
            f"redirect_hosts = [{', '.join(toml_str(h) for h in hosts)}]\n"
            # Small pages, so Airlock's own /tree pagination (absolute Link back to Airlock) is exercised.
            "tree_page_size = 3\n"
            + (policy if policy is not None else default_policy(hub))
            # Review requests are not prefetched unless a test asks (the governance tests do), so
            # the others can check that nothing about an unapproved repo is asked upstream.
            + ("" if "[governance]" in (policy or "") else "\n[governance]\nprefetch_requests = false\n"))
        args += ["--config", str(config)]
    else:
        config.write_text("# no config file: configured through the environment only\n")
    log_path = tmp / "airlock.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRLOCK_", "HF_"))}
    full_env.setdefault("RUST_LOG", "info")
    if not config_file:
        full_env["AIRLOCK_LISTEN"] = f"127.0.0.1:{port}"
        full_env["AIRLOCK_DATA_DIR"] = str(data_dir)
    full_env.update(env or {})
    log = open(log_path, "ab")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=tmp)
    log.close()
    a = Airlock(proc, port, tmp, data_dir, log_path)
    deadline = time.monotonic() + HEALTH_TIMEOUT
    while True:
        if proc.poll() is not None:
            pytest.fail(f"airlock serve exited with {proc.returncode} before answering /healthz.\n"
                        f"config:\n{config.read_text()}\noutput:\n{a.log()}")
        try:
            status, _, _ = request(a, "GET", "/healthz", timeout=2)
            if status == 200:
                return a
        except OSError:
            pass
        if time.monotonic() > deadline:
            a.stop()
            pytest.fail(f"airlock did not answer GET /healthz with 200 within {HEALTH_TIMEOUT:.0f}s.\n"
                        f"output:\n{a.log()}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def airlock(fake_hub, tmp_path_factory):
    """The shared Airlock: default policy, upstream token set (for the gated repo)."""
    a = start_airlock(tmp_path_factory.mktemp("airlock"), fake_hub, env={"AIRLOCK_HF_TOKEN": HUB_TOKEN})
    yield a
    a.stop()
    if os.environ.get("AIRLOCK_TEST_SHOW_LOG"):
        print(a.log())


@pytest.fixture
def airlock_factory(fake_hub, tmp_path):
    """Starts extra Airlocks with their own config and data dir, stopped at the end of the test."""
    started = []

    def make(**kw) -> Airlock:
        a = start_airlock(tmp_path / f"a{len(started)}", fake_hub, **kw)
        started.append(a)
        return a

    yield make
    for a in started:
        a.stop()


@pytest.fixture(autouse=True)
def _clean_faults(fake_hub):
    yield
    fake_hub.clear_faults()


# ---- clients ----------------------------------------------------------------------------------------
def request(target, method: str, path: str, headers: dict | None = None, body: bytes | None = None,
         timeout: float = 30.0):
    """One raw request (no redirect following, path sent as given). Returns (status, headers, body);
    headers is an http.client.HTTPMessage (case-insensitive, `get_all` for repeats)."""
    if isinstance(target, Airlock):
        host, port = "127.0.0.1", target.port
    elif isinstance(target, FakeHub):
        host, port = "127.0.0.1", target.hub_port
    else:
        host, port = target
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        hdrs = {"Accept-Encoding": "identity", **(headers or {})}
        if body is not None:
            hdrs.setdefault("Content-Length", str(len(body)))
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders(body)
        r = conn.getresponse()
        data = r.read() if method != "HEAD" else b""
        return r.status, r.headers, data
    finally:
        conn.close()


def hf_env(airlock: Airlock, home: Path, extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update({"HF_ENDPOINT": airlock.url if isinstance(airlock, Airlock) else airlock,
                "HF_HOME": str(home), "HF_HUB_DISABLE_TELEMETRY": "1",
                "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_ETAG_TIMEOUT": "10",
                "HF_HUB_DOWNLOAD_TIMEOUT": "10", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1"})
    env.pop("HF_HUB_DISABLE_XET", None)  # Airlock must keep clients off Xet by itself
    env.update(extra or {})
    return env


def hf_call(endpoint, home: Path, op: dict, extra_env: dict | None = None, timeout: float = CLIENT_TIMEOUT) -> dict:
    """Runs one huggingface_hub call (hf_client.py) in a fresh interpreter and returns its JSON outcome."""
    p = subprocess.run([sys.executable, str(HERE / "hf_client.py"), json.dumps(op)], capture_output=True,
                       text=True, timeout=timeout, env=hf_env(endpoint, home, extra_env))
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if not lines:
        raise AssertionError(f"hf_client.py printed no result (rc={p.returncode}):\n{p.stdout}\n{p.stderr}")
    out = json.loads(lines[-1])
    out["stderr"] = p.stderr[-3000:]
    return out


@pytest.fixture
def hf(airlock, tmp_path):
    """`hf(op)` runs a huggingface_hub call against the shared Airlock with a fresh HF_HOME per test."""
    def call(op: dict, home: Path | None = None, **kw) -> dict:
        return hf_call(airlock, home or tmp_path / "hf-home", op, **kw)
    return call


def expect_ok(out: dict, airlock: Airlock | None = None) -> dict:
    if not out.get("ok"):
        msg = f"client failed: {out.get('type')}: {out.get('message')}\n{out.get('traceback')}"
        if airlock is not None:
            msg += f"\n--- airlock log (tail) ---\n{airlock.log()[-3000:]}"
        raise AssertionError(msg)
    return out



def settle(target, method: str, path: str, headers: dict | None = None, timeout: float = 40.0):
    """Repeats a request while Airlock answers 503 + Retry-After (file still being fetched/checked) and
    returns the first other answer. Every single answer must come within 10 s (clients give up then, T15)."""
    deadline = time.monotonic() + timeout
    while True:
        t0 = time.monotonic()
        st, h, body = request(target, method, path, headers, timeout=15)
        took = time.monotonic() - t0
        assert took < 10, f"{method} {path} was silent for {took:.1f}s (clients time out after 10s)"
        if st != 503 or time.monotonic() > deadline:
            return st, h, body
        assert h.get("Retry-After"), f"503 without Retry-After on {method} {path}"
        time.sleep(0.3)


def error_text(h, body: bytes) -> str:
    """Everything a client could show of a refusal: X-Error-Message and the JSON error/body."""
    parts = [h.get("X-Error-Message") or ""]
    try:
        parts.append(str(json.loads(body).get("error", "")))
    except (ValueError, AttributeError):
        parts.append(repr(body[:300]))
    return " | ".join(p for p in parts if p)


def not_yet_built(reason: str):
    """Marks a test of a contract feature Airlock does not have yet: reported as XFAIL (XPASS once built)."""
    def wrap(fn):
        return pytest.mark.not_yet_built(reason)(pytest.mark.xfail(reason=f"not built yet: {reason}",
                                                                   strict=False)(fn))
    return wrap
