"""Support for the Ollama end-to-end tests (test_ollama.py): a real upstream registry (Debian's
`docker-registry`, distribution 2.8) started on 127.0.0.1 with filesystem storage, Ollama-shaped models pushed
into it over plain HTTP, the real `airlock` binary in front of it, and the `ollama-pull` test client
(integration-tests/ollama-pull), which pulls the way `ollama pull` does.

Nothing here reaches the network beyond 127.0.0.1. The Airlock process helpers come from conftest.py
(`Airlock`, `airlock_bin`, `free_port`, `request`), so both suites start and stop the binary the same way.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import ROOT, Airlock, airlock_bin, free_port, request, toml_str

REGISTRY_BIN = os.environ.get("DOCKER_REGISTRY_BIN") or shutil.which("docker-registry") or "/usr/bin/docker-registry"
START_TIMEOUT = 30.0
PULL_TIMEOUT = 60.0

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OLLAMA = "application/vnd.ollama.image."


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_of(data: bytes) -> str:
    return "sha256:" + sha256(data)


# ---- GGUF v3 ------------------------------------------------------------------------------------------
def _gguf_str(s: bytes) -> bytes:
    return struct.pack("<Q", len(s)) + s


def gguf_raw(kvs: list[tuple[bytes, bytes]], n_tensors: int = 0, n_kv: int | None = None) -> bytes:
    """A GGUF v3 header with string metadata only; `n_tensors`/`n_kv` may lie (for malformed files)."""
    out = b"GGUF" + struct.pack("<I", 3) + struct.pack("<Q", n_tensors)
    out += struct.pack("<Q", len(kvs) if n_kv is None else n_kv)
    for k, v in kvs:
        out += _gguf_str(k) + struct.pack("<I", 8) + _gguf_str(v)
    return out


def gguf(arch: str = "llama", tensor_bytes: int = 0, seed: str = "") -> bytes:
    """A valid GGUF v3: `general.architecture` (+ `general.name` = seed, so every model's weights differ) and,
    if `tensor_bytes` > 0, one F32 tensor `w` of that many bytes (rounded down to 4) at offset 0 of the
    32-aligned data section, filled with deterministic pseudo-random bytes."""
    kvs = [(b"general.architecture", arch.encode()), (b"general.name", (seed or arch).encode())]
    n_tensors = 1 if tensor_bytes > 0 else 0
    out = b"GGUF" + struct.pack("<I", 3) + struct.pack("<Q", n_tensors) + struct.pack("<Q", len(kvs))
    for k, v in kvs:
        out += _gguf_str(k) + struct.pack("<I", 8) + _gguf_str(v)  # type 8 = string
    if n_tensors:
        elems = tensor_bytes // 4
        out += _gguf_str(b"w") + struct.pack("<I", 1) + struct.pack("<Q", elems)
        out += struct.pack("<I", 0) + struct.pack("<Q", 0)  # ggml type 0 = F32, offset 0
        out += b"\0" * (-len(out) % 32)
        out += pseudo_random(elems * 4, seed or arch)
    return out


def pseudo_random(n: int, seed: str) -> bytes:
    """n deterministic bytes (sha256 in counter mode; fast enough for a few MB)."""
    out = bytearray()
    block = hashlib.sha256(seed.encode()).digest()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(block + i.to_bytes(8, "little")).digest() * 64  # 2 KiB per round
        i += 1
    return bytes(out[:n])


# ---- models ---------------------------------------------------------------------------------------------
@dataclass
class OllamaModel:
    """An Ollama-shaped model as pushed: its manifest bytes and every blob (config included) by digest."""
    name: str
    tag: str
    manifest: bytes
    blobs: dict[str, bytes]  # "sha256:<hex>" -> bytes
    layers: list[dict]
    config_digest: str

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)

    @property
    def model_digest(self) -> str:
        return next(l["digest"] for l in self.layers if l["mediaType"] == OLLAMA + "model")


def ollama_model(name: str, tag: str = "latest", weights: bytes | None = None, seed: str = "",
                 system: str = "You are helpful.", template: bytes | None = None,
                 params: bytes | None = None) -> OllamaModel:
    """The model `ollama pull` expects: docker-v2 manifest, docker config, model/template/params/license/system
    layers. `seed` makes every blob of this model unique (so tests never share a blob's cold/warm state)."""
    seed = seed or f"{name}:{tag}"
    layers_data = [
        (OLLAMA + "model", weights if weights is not None else gguf(seed=seed)),
        (OLLAMA + "template", template if template is not None else
         b"{{ if .System }}<|system|>{{ .System }}{{ end }}<|user|>{{ .Prompt }}<|assistant|>" + f" {seed}".encode()),
        (OLLAMA + "params", params if params is not None else
         json.dumps({"stop": ["<|end|>"], "temperature": 0.7, "seed": seed}).encode()),
        (OLLAMA + "license", f"MIT License ({seed})\n".encode()),
        (OLLAMA + "system", f"{system} ({seed})".encode()),
    ]
    config = json.dumps({"model_format": "gguf", "model_family": "llama", "model_families": ["llama"],
                         "model_type": "1M", "file_type": "F32", "architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [digest_of(d) for _, d in layers_data]},
                         "seed": seed}).encode()
    layers = [{"mediaType": mt, "digest": digest_of(d), "size": len(d)} for mt, d in layers_data]
    manifest = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                           "config": {"mediaType": DOCKER_CONFIG, "digest": digest_of(config), "size": len(config)},
                           "layers": layers}).encode()
    blobs = {digest_of(d): d for _, d in layers_data}
    blobs[digest_of(config)] = config
    return OllamaModel(name, tag, manifest, blobs, layers, digest_of(config))


# ---- the upstream registry ------------------------------------------------------------------------------
_LOG_FIELD = re.compile(r'([\w.]+)=("(?:[^"\\]|\\.)*"|\S+)')


@dataclass
class Registry:
    """A `docker-registry serve` process on 127.0.0.1 with filesystem storage under `root/storage`."""
    proc: subprocess.Popen
    port: int
    root: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def call(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        return request(("127.0.0.1", self.port), method, path, headers, body)

    # -- pushing (the plain OCI push flow: POST uploads -> PUT ?digest= -> PUT manifest)
    def push_blob(self, name: str, data: bytes) -> str:
        d = digest_of(data)
        st, h, body = self.call("POST", f"/v2/{name}/blobs/uploads/", b"")
        assert st == 202, f"registry refused an upload start: {st} {body[:300]!r}"
        loc = urllib.parse.urlsplit(h["Location"])
        path = loc.path + "?" + (loc.query + "&" if loc.query else "") + "digest=" + urllib.parse.quote(d)
        st, _, body = self.call("PUT", path, data, {"Content-Type": "application/octet-stream"})
        assert st == 201, f"registry refused blob {d}: {st} {body[:300]!r}"
        return d

    def push(self, model: OllamaModel) -> OllamaModel:
        for data in model.blobs.values():
            self.push_blob(model.name, data)
        st, _, body = self.call("PUT", f"/v2/{model.name}/manifests/{model.tag}", model.manifest,
                                {"Content-Type": DOCKER_MANIFEST})
        assert st == 201, f"registry refused the manifest of {model.name}:{model.tag}: {st} {body[:300]!r}"
        return model

    def manifest(self, name: str, ref: str) -> bytes:
        st, _, body = self.call("GET", f"/v2/{name}/manifests/{ref}", headers={"Accept": DOCKER_MANIFEST})
        assert st == 200, f"registry: GET manifest {name}:{ref} -> {st} {body[:300]!r}"
        return body

    def blob_data_path(self, digest: str) -> Path:
        hexd = digest.split(":", 1)[1]
        return self.storage / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexd[:2] / hexd / "data"

    # -- what reached the registry, from its own log (distribution logs every response at info level)
    def requests(self) -> list[dict]:
        out = []
        for line in self.log().splitlines():
            if 'msg="response completed"' not in line:
                continue
            f = {k: v.strip('"') for k, v in _LOG_FIELD.findall(line)}
            out.append({"method": f.get("http.request.method"), "uri": f.get("http.request.uri", ""),
                        "agent": f.get("http.request.useragent", ""),
                        "status": int(f.get("http.response.status", "0"))})
        return out

    def gets(self, path: str) -> int:
        """How many GETs of exactly this path the registry answered."""
        return sum(1 for r in self.requests() if r["method"] == "GET" and r["uri"].split("?")[0] == path)


def start_registry(tmp: Path) -> Registry:
    if not Path(REGISTRY_BIN).exists():
        pytest.fail(f"docker-registry not found at {REGISTRY_BIN}: `apt-get install docker-registry` "
                    "(.ci/run does), or set DOCKER_REGISTRY_BIN")
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = tmp / "registry.yml"
    # Its own port and storage: a system service the Debian package may have started (port 5000) is never used.
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: info\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {json.dumps(str(tmp / 'storage'))}\n"
        "  maintenance:\n    uploadpurging:\n      enabled: false\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        # The debug server would take a fixed port; keep it off.
    )
    log_path = tmp / "registry.log"
    with open(log_path, "ab") as log:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                env=env, cwd=tmp)
    reg = Registry(proc, port, tmp, log_path)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            pytest.fail(f"docker-registry exited with {proc.returncode}:\n{reg.log()[-4000:]}")
        try:
            st, _, _ = reg.call("GET", "/v2/")
            if st == 200:
                return reg
        except OSError:
            pass
        if time.monotonic() > deadline:
            reg.stop()
            pytest.fail(f"docker-registry did not answer /v2/ within {START_TIMEOUT:.0f}s:\n{reg.log()[-4000:]}")
        time.sleep(0.1)


# ---- airlock in front of it -----------------------------------------------------------------------------
def start_airlock_ollama(tmp: Path, registry, rules: str, tag_ttl_secs: int = 300,
                         redirect_hosts: list[str] | None = None, extra_ollama: str = "") -> Airlock:
    """`airlock serve` with `[ollama] upstream` = `registry.url` (anything with a `url`) and the given
    `[[policy.allow]]` rules."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    data_dir = tmp / "airlock-data"
    config = tmp / "airlock.toml"
    config.write_text(
        f"listen = {toml_str(f'127.0.0.1:{port}')}\n"
        f"data_dir = {toml_str(str(data_dir))}\n"
        "[ollama]\n"
        f"upstream = {toml_str(registry.url)}\n"
        f"redirect_hosts = [{', '.join(toml_str(h) for h in (redirect_hosts or []))}]\n"
        f"tag_ttl_secs = {tag_ttl_secs}\n"
        + extra_ollama
        + "[policy]\nmode = \"allowlist\"\n"
        + rules)
    log_path = tmp / "airlock.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRLOCK_", "HF_"))}
    env.setdefault("RUST_LOG", "info")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([str(airlock_bin()), "serve", "--config", str(config)], stdout=log,
                                stderr=subprocess.STDOUT, env=env, cwd=tmp)
    a = Airlock(proc, port, tmp, data_dir, log_path)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            pytest.fail(f"airlock serve exited with {proc.returncode}.\nconfig:\n{config.read_text()}\n{a.log()}")
        try:
            st, _, _ = request(a, "GET", "/healthz", timeout=2)
            if st == 200:
                return a
        except OSError:
            pass
        if time.monotonic() > deadline:
            a.stop()
            pytest.fail(f"airlock did not answer /healthz within {START_TIMEOUT:.0f}s:\n{a.log()}")
        time.sleep(0.1)


def rule(name: str, tag: str | None = None, manifest: str | None = None) -> str:
    r = f"[[policy.allow]]\nollama = {toml_str(name)}\n"
    if tag:
        r += f"tag = {toml_str(tag)}\n"
    if manifest:
        r += f"manifest = {toml_str(manifest)}\n"
    return r


# ---- the ollama-pull client -----------------------------------------------------------------------------
def ollama_pull_bin() -> Path:
    """`$OLLAMA_PULL_BIN`, else next to the airlock binary (same cargo target dir), else target/debug."""
    if os.environ.get("OLLAMA_PULL_BIN"):
        p = Path(os.environ["OLLAMA_PULL_BIN"])
    else:
        p = airlock_bin().parent / "ollama-pull"
        if not p.exists():
            p = ROOT / "target" / "debug" / "ollama-pull"
    if not p.exists():
        pytest.fail(f"ollama-pull not found at {p}: `cargo build -p ollama-pull` (scripts/test.sh builds the "
                    "workspace), or set OLLAMA_PULL_BIN")
    return p


@dataclass
class Pull:
    rc: int
    stdout: str
    stderr: str
    out: Path
    seconds: float = 0.0
    blob_lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.rc == 0 and self.stdout.rstrip().endswith("success")

    def files(self) -> dict[str, bytes]:
        """`sha256:<hex>` -> bytes of every blob written (ollama's `sha256-<hex>` names)."""
        return {p.name.replace("sha256-", "sha256:", 1): p.read_bytes()
                for p in self.out.glob("sha256-*") if not p.name.endswith("-partial")}

    def manifest(self) -> bytes:
        return (self.out / "manifest").read_bytes()

    def explain(self) -> str:
        return f"ollama-pull rc={self.rc}\n--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}"


def pull_cmd(airlock, model: str, out: Path, min_part: int | None = None, host: str = "127.0.0.1") -> list[str]:
    """`airlock` is anything with a `port` (an Airlock, the Registry, the shim)."""
    cmd = [str(ollama_pull_bin()), "--insecure", "--out", str(out)]
    if min_part:
        cmd += ["--min-part-size", str(min_part)]
    return cmd + [f"{host}:{airlock.port}/{model}"]


def ollama_pull(airlock, model: str, out: Path, min_part: int | None = None, host: str = "127.0.0.1",
                timeout: float = PULL_TIMEOUT) -> Pull:
    t0 = time.monotonic()
    p = subprocess.run(pull_cmd(airlock, model, out, min_part, host), capture_output=True, text=True,
                       timeout=timeout)
    return Pull(p.returncode, p.stdout, p.stderr, out, time.monotonic() - t0,
                [l for l in p.stdout.splitlines() if re.match(r"pulling [0-9a-f]{12}: ", l)])


# ---- raw HTTP -------------------------------------------------------------------------------------------
def get_url(url: str, headers: dict | None = None, method: str = "GET", timeout: float = 30.0):
    """One request to an absolute http URL (no redirect following): (status, headers, body)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.putrequest(method, u.path + ("?" + u.query if u.query else ""), skip_accept_encoding=True)
        for k, v in {"Accept-Encoding": "identity", **(headers or {})}.items():
            conn.putheader(k, v)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, r.headers, (r.read() if method != "HEAD" else b"")
    finally:
        conn.close()


def oci_error(body: bytes) -> tuple[str, str]:
    """(code, message) of the first entry of an OCI `{"errors":[…]}` body."""
    doc = json.loads(body)
    e = doc["errors"][0]
    return e["code"], e.get("message", "")


# ---- an upstream shaped like registry.ollama.ai ---------------------------------------------------------
class OllamaAiShim:
    """A front for the registry that behaves like registry.ollama.ai (protocol note §1.6): `/v2/` is 404,
    manifests come back as `text/plain`, and blob GETs answer `307` to another host (the "CDN", here the
    registry itself under the hostname `localhost`). Counts blob redirects it handed out."""

    def __init__(self, registry: Registry):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.registry = registry
        self.redirects = 0
        shim = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, status: int, body: bytes = b"", headers: dict | None = None):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if "Content-Length" not in (headers or {}):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_GET(self):
                path = self.path.split("?")[0]
                m = re.fullmatch(r"/v2/([a-z0-9_.-]+/[a-z0-9_.-]+)/(manifests|blobs)/([^/]+)", path)
                if not m:
                    return self._send(404, b"404 page not found\n", {"Content-Type": "text/plain"})
                name, kind, ref = m.groups()
                if kind == "blobs":
                    shim.redirects += 1
                    loc = f"http://localhost:{shim.registry.port}{path}"
                    return self._send(307, b"", {"Location": loc})
                st, h, body = shim.registry.call("GET", path, headers={"Accept": self.headers.get("Accept", "")})
                headers = {"Content-Type": "text/plain; charset=utf-8"}
                if st == 200:
                    headers["Docker-Content-Digest"] = h.get("Docker-Content-Digest", "")
                self._send(st, body, headers)

            do_HEAD = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
