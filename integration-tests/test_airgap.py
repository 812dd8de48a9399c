"""Air-gapped sites (issue 10, README "Air-gapped sites"): a connected Airlock (fake Hub + docker-registry)
approves an HF model, an HF dataset and an Ollama model and exports them with the real `airlock export`; a
second Airlock whose upstreams point at closed ports imports the bundle with `airlock import` and serves the real
clients (huggingface_hub, ollama-pull, oras) byte-identical files, refusing what it lacks with the offline
reason. Then every kind of bad bundle is refused with the store unchanged, a differential bundle carries only
new blobs, and a revocation exported later stops serving on the offline side.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import Airlock, airlock_bin, expect_ok, free_port, hf_call, request, toml_str
from fake_hub import model_bytes
from ollama_support import digest_of, gguf, ollama_model, ollama_pull, start_registry

HERE = Path(__file__).resolve().parent
TOKEN = "airgap-admin-token-0123456789"
OFFLINE_REASON = "not available on this offline mirror; export it from the connected mirror"
PART = 1 << 20  # 1 MiB parts, so every bundle here spans several


def card(title: str) -> str:
    return f"---\nlicense: apache-2.0\n---\n# {title}\n"


MODEL = {
    "README.md": card("airgap/model"),
    "config.json": json.dumps({"model_type": "gpt2", "n_embd": 8, "n_layer": 1, "n_head": 1}) + "\n",
    # A real (word-level) fast tokenizer, so transformers' AutoTokenizer loads it.
    "tokenizer.json": json.dumps({
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
        "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None, "decoder": None,
        "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "hello": 1, "air": 2, "gap": 3},
                  "unk_token": "[UNK]"}}) + "\n",
    "tokenizer_config.json": json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}) + "\n",
    "model.safetensors": model_bytes(2 * 1024 * 1024 + 11, "airgap-model"),
}
DATASET = {
    "README.md": card("airgap/ds"),
    "data/train.parquet": model_bytes(300 * 1024 + 5, "airgap-ds"),
    "data/test.csv": "a,b\n1,2\n",
}
SECOND = {"README.md": card("airgap/second"), "config.json": "{\"v\": 2}\n",
          "model.safetensors": model_bytes(64 * 1024 + 1, "airgap-second")}
UNEXPORTED = {"README.md": card("airgap/unexported"), "config.json": "{}\n"}


class _Evil:
    """Unpickling this runs a shell command: what the import's re-scan must refuse."""
    def __reduce__(self):
        return (os.system, ("echo pwned",))


# ---- a small, pure-Python Ed25519 signer (RFC 8032 §6), to forge a validly signed manifest ----------------
_P = 2**255 - 19
_Q = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P


def _add(a, b):
    x = (a[1] - a[0]) * (b[1] - b[0]) % _P
    y = (a[1] + a[0]) * (b[1] + b[0]) % _P
    c, d = 2 * a[3] * b[3] * _D % _P, 2 * a[2] * b[2] % _P
    e, f, g, h = y - x, d - c, d + c, y + x
    return (e * f, g * h, f * g, e * h)


def _mul(s, pt):
    q = (0, 1, 1, 0)
    while s:
        if s & 1:
            q = _add(q, pt)
        pt, s = _add(pt, pt), s >> 1
    return q


def _compress(pt):
    zi = pow(pt[2], _P - 2, _P)
    x, y = pt[0] * zi % _P, pt[1] * zi % _P
    return int.to_bytes(y | ((x & 1) << 255), 32, "little")


def _base():
    y = 4 * pow(5, _P - 2, _P) % _P
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P)
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * pow(2, (_P - 1) // 4, _P) % _P
    if x & 1:
        x = _P - x
    return (x, y, 1, x * y % _P)


def ed25519_sign(seed: bytes, msg: bytes) -> tuple[bytes, bytes]:
    """(public key, signature)."""
    h = hashlib.sha512(seed).digest()
    a = (int.from_bytes(h[:32], "little") & ((1 << 254) - 8)) | (1 << 254)
    pub = _compress(_mul(a, _base()))
    r = int.from_bytes(hashlib.sha512(h[32:] + msg).digest(), "little") % _Q
    rs = _compress(_mul(r, _base()))
    k = int.from_bytes(hashlib.sha512(rs + pub + msg).digest(), "little") % _Q
    return pub, rs + int.to_bytes((r + k * a) % _Q, 32, "little")


def sign_manifest(key_pem: Path, manifest: bytes) -> str:
    """manifest.sig content, as `airlock export` writes it, signed with a PKCS#8 Ed25519 key file."""
    der = base64.b64decode("".join(l for l in key_pem.read_text().splitlines() if not l.startswith("-----")))
    i = der.index(bytes([0x04, 0x22, 0x04, 0x20]))
    pub, sig = ed25519_sign(der[i + 4:i + 36], b"airlock-bundle-v1\n" + manifest)
    return f"{hashlib.sha256(pub).hexdigest()[:16]} {sig.hex()}\n"


# ---- processes ----------------------------------------------------------------------------------------
def run(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("AIRLOCK_", "HF_"))}
    e.setdefault("RUST_LOG", "warn")
    e.update(env or {})
    return subprocess.run([str(airlock_bin()), *args], capture_output=True, text=True, timeout=timeout, env=e)


def ok(p: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert p.returncode == 0, f"{p.args} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


@dataclass
class Site:
    """One Airlock: its config file (fixed port, so it can be stopped and started again) and data dir."""
    root: Path
    config: Path
    data_dir: Path
    port: int
    server: Airlock | None = None

    def start(self) -> Airlock:
        log_path = self.root / "airlock.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRLOCK_", "HF_"))}
        env.setdefault("RUST_LOG", "info")
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([str(airlock_bin()), "serve", "--config", str(self.config)], stdout=log,
                                    stderr=subprocess.STDOUT, env=env, cwd=self.root)
        a = Airlock(proc, self.port, self.root, self.data_dir, log_path)
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"airlock serve exited with {proc.returncode}:\n{a.log()}")
            try:
                if request(a, "GET", "/healthz", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                a.stop()
                pytest.fail(f"airlock did not answer /healthz:\n{a.log()}")
            time.sleep(0.1)
        self.server = a
        return a

    def stop(self) -> None:
        if self.server:
            self.server.stop()
            self.server = None

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return run(*args, env={"AIRLOCK_SERVER": f"http://127.0.0.1:{self.port}", "AIRLOCK_ADMIN_TOKEN": TOKEN})


def closed_port() -> int:
    return free_port()  # bound and released: nothing listens there


def listing(data_dir: Path) -> dict[str, str]:
    """sha256 of every file of a data dir but the audit log (a refused import is audited)."""
    out = {}
    for p in sorted(data_dir.rglob("*")):
        if p.is_file() and p.name != "audit.log":
            out[str(p.relative_to(data_dir))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@dataclass
class World:
    hub: object
    registry: object
    keys: Path
    connected: Site
    offline: Site
    target: Path            # a second offline data dir, never served, for the tamper cases
    offline_config: Path    # config of `target`
    bundle: Path
    model_appr: str
    ds_appr: str
    ollama_appr: str
    ollama_model: object


def offline_config(root: Path, data_dir: Path, port: int, gov_pub: Path, exporter_pub: Path) -> Path:
    cfg = root / "airlock.toml"
    cfg.write_text(
        f"listen = {toml_str(f'127.0.0.1:{port}')}\n"
        f"data_dir = {toml_str(str(data_dir))}\n"
        "offline = true\n"
        f"[huggingface]\nupstream = {toml_str(f'http://127.0.0.1:{closed_port()}')}\n"
        f"[ollama]\nupstream = {toml_str(f'http://127.0.0.1:{closed_port()}')}\n"
        "[policy]\nmode = \"allowlist\"\n"
        f"[governance]\nkeys = [{toml_str(str(gov_pub))}]\nprefetch_requests = false\n"
        f"[airgap]\ntrusted_exporters = [{toml_str(str(exporter_pub))}]\n")
    return cfg


@pytest.fixture(scope="module")
def world(fake_hub, tmp_path_factory):
    root = tmp_path_factory.mktemp("airgap")
    for name, files, kind in [("airgap/model", MODEL, "model"), ("airgap/ds", DATASET, "dataset"),
                              ("airgap/second", SECOND, "model"), ("airgap/unexported", UNEXPORTED, "model")]:
        if (kind, name) not in fake_hub.repos:
            fake_hub.add_repo(name, files, kind=kind)
    registry = start_registry(root / "registry")
    model = registry.push(ollama_model("library/airgapped", weights=gguf(tensor_bytes=256 << 10, seed="airgap")))
    registry.push(ollama_model("library/notexported"))
    keys = root / "keys"
    ok(run("keygen", "--out", str(keys)))
    ok(run("keygen", "--out", str(root / "other-keys")))

    c_root = root / "connected"
    c_root.mkdir()
    c_port = free_port()
    c_cfg = c_root / "airlock.toml"
    c_cfg.write_text(
        f"listen = {toml_str(f'127.0.0.1:{c_port}')}\n"
        f"data_dir = {toml_str(str(c_root / 'data'))}\n"
        f"[huggingface]\nupstream = {toml_str(fake_hub.url)}\nredirect_hosts = [{toml_str(fake_hub.cdn_hostport)}]\n"
        f"[ollama]\nupstream = {toml_str(registry.url)}\nredirect_hosts = []\n"
        "[policy]\nmode = \"allowlist\"\n"
        f"[governance]\nkeys = [{toml_str(str(keys / 'governance.pub'))}]\nadmin_token = {toml_str(TOKEN)}\n"
        "prefetch_requests = false\n")
    connected = Site(c_root, c_cfg, c_root / "data", c_port)
    connected.start()
    signer = ["--key", str(keys / "governance.key"), "--by", "model-governance", "--reason", "air-gap test"]

    def approve(kind: str, name: str) -> str:
        p = ok(connected.cli("approve", kind, name, *signer))
        return next(w for w in p.stdout.split() if w.startswith("appr-")).rstrip(".:,")

    model_appr = approve("hf", "airgap/model")
    ds_appr = approve("hf", "datasets/airgap/ds")
    ollama_appr = approve("ollama", "library/airgapped")
    connected.stop()
    bundle = root / "bundle"
    ok(run("export", "--config", str(c_cfg), "--out", str(bundle), "--all-approved", "--part-size", str(PART)))

    o_root = root / "offline"
    o_root.mkdir()
    o_port = free_port()
    exporter_pub = c_root / "data" / "mirror.pub"
    o_cfg = offline_config(o_root, o_root / "data", o_port, keys / "governance.pub", exporter_pub)
    offline = Site(o_root, o_cfg, o_root / "data", o_port)
    ok(run("import", str(bundle), "--config", str(o_cfg)))
    offline.start()

    t_root = root / "target"
    t_root.mkdir()
    t_cfg = offline_config(t_root, t_root / "data", free_port(), keys / "governance.pub", exporter_pub)
    ok(run("import", str(bundle), "--config", str(t_cfg)))

    w = World(fake_hub, registry, keys, connected, offline, t_root / "data", t_cfg, bundle,
              model_appr, ds_appr, ollama_appr, model)
    try:
        yield w
    finally:
        offline.stop()
        connected.stop()
        registry.stop()


def hf_op(site: Site, home: Path, op: dict) -> dict:
    return hf_call(f"http://127.0.0.1:{site.port}", home, op)


def as_bytes(v) -> bytes:
    return v if isinstance(v, bytes) else v.encode()


# ---- serving offline ------------------------------------------------------------------------------------
def test_clients_get_byte_identical_files_from_the_offline_mirror(world, tmp_path):
    off = world.offline
    out = expect_ok(hf_op(off, tmp_path / "h1", {"op": "download", "repo": "airgap/model",
                                                   "filename": "model.safetensors"}), off.server)
    assert out["sha256"] == hashlib.sha256(MODEL["model.safetensors"]).hexdigest()
    snap = expect_ok(hf_op(off, tmp_path / "h2", {"op": "snapshot", "repo": "airgap/model"}), off.server)
    assert snap["files"] == {k: hashlib.sha256(as_bytes(v)).hexdigest() for k, v in MODEL.items()}
    ds = expect_ok(hf_op(off, tmp_path / "h3", {"op": "snapshot", "repo": "airgap/ds", "repo_type": "dataset"}),
                   off.server)
    assert ds["files"] == {k: hashlib.sha256(as_bytes(v)).hexdigest() for k, v in DATASET.items()}

    tf = expect_ok(hf_op(off, tmp_path / "h4", {"op": "transformers", "repo": "airgap/model",
                                                  "text": "hello air gap"}), off.server)
    assert tf["model_type"] == "gpt2" and tf["ids"] == [1, 2, 3], tf

    pull = ollama_pull(off.server, "library/airgapped", tmp_path / "pull")
    assert pull.ok, pull.explain() + off.server.log()[-3000:]
    assert pull.manifest() == world.ollama_model.manifest
    for d, data in pull.files().items():
        assert data == world.ollama_model.blobs[d], d

    code = ("import sys, oras.client\n"
            "oras.client.OrasClient(insecure=True).pull(target=sys.argv[1], outdir=sys.argv[2])\n")
    p = subprocess.run([sys.executable, "-c", code, f"127.0.0.1:{off.port}/library/airgapped:latest",
                        str(tmp_path / "oras")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    got = {digest_of(f.read_bytes()) for f in (tmp_path / "oras").rglob("*") if f.is_file()}
    assert got == {l["digest"] for l in world.ollama_model.layers}


def test_unexported_names_are_refused_with_the_offline_reason(world, tmp_path):
    off = world.offline
    t0 = time.monotonic()
    out = hf_op(off, tmp_path / "h", {"op": "download", "repo": "airgap/unexported", "filename": "config.json"})
    assert not out["ok"] and OFFLINE_REASON in out["message"], out
    pull = ollama_pull(off.server, "library/notexported", tmp_path / "pull")
    assert not pull.ok and OFFLINE_REASON in pull.stdout + pull.stderr, pull.explain()
    # Refused at once: nothing waits on the closed upstream ports (the clients' own timeouts are 10 s+).
    assert time.monotonic() - t0 < 60


# ---- bad bundles: refused, store unchanged ------------------------------------------------------------
def manifest_of(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def flip_item(bundle: Path, kind: str, pick=lambda items: items[0]) -> None:
    m = manifest_of(bundle)
    item = pick([i for i in m["items"] if i["kind"] == kind])
    pos = item["offset"] + item["size"] // 2
    part = m["parts"][pos // m["part_size"]]
    path = bundle / part["name"]
    data = bytearray(path.read_bytes())
    data[pos % m["part_size"]] ^= 0x01
    path.write_bytes(bytes(data))


def flip_manifest(bundle: Path) -> None:
    text = (bundle / "manifest.json").read_text()
    i = text.index('"sha256": "sha256:') + len('"sha256": "sha256:')
    (bundle / "manifest.json").write_text(text[:i] + ("0" if text[i] != "0" else "1") + text[i + 1:])


def smuggle(world: World, bundle: Path, _tmp: Path) -> None:
    """A new version carrying a malicious pickle, under a manifest validly signed by the trusted exporter."""
    m = manifest_of(bundle)
    evil = pickle.dumps(_Evil(), protocol=2)
    git_oid = hashlib.sha1(b"blob %d\0" % len(evil) + evil).hexdigest()
    entry = {"path": "pytorch_model.bin", "type": "file", "oid": git_oid, "size": len(evil)}
    listing_bytes = json.dumps({"entries": [entry]}).encode()
    offset = m["items"][-1]["offset"] + m["items"][-1]["size"]
    new = listing_bytes + evil
    m["items"] += [
        {"kind": "listing", "sha256": "sha256:" + hashlib.sha256(listing_bytes).hexdigest(),
         "size": len(listing_bytes), "offset": offset},
        {"kind": "blob", "sha256": "sha256:" + hashlib.sha256(evil).hexdigest(), "size": len(evil),
         "offset": offset + len(listing_bytes)}]
    name = f"part-{len(m['parts']):04d}"
    (bundle / name).write_bytes(new)
    m["parts"].append({"name": name, "sha256": "sha256:" + hashlib.sha256(new).hexdigest(), "size": len(new)})
    m["versions"].append({"source": "hf", "name": "airgap/smuggled", "commit": "ab" * 20, "refs": ["main"],
                          "listing": m["items"][-2]["sha256"],
                          "files": [{"path": "pytorch_model.bin", "sha256": m["items"][-1]["sha256"],
                                     "size": len(evil), "etag": git_oid, "scan": "clean"}]})
    raw = json.dumps(m, indent=2).encode()
    (bundle / "manifest.json").write_bytes(raw)
    (bundle / "manifest.sig").write_text(sign_manifest(world.connected.data_dir / "mirror.key", raw))


def other_bundle_part(world: World, bundle: Path, tmp: Path) -> None:
    other = tmp / "other-bundle"
    ok(run("export", "--config", str(world.connected.config), "--out", str(other),
           "--approval", world.model_appr, "--part-size", str(PART)))
    shutil.copy(other / "part-0001", bundle / "part-0001")


TAMPERS = {
    "flipped byte in a blob": (lambda w, b, t: flip_item(b, "blob", lambda xs: max(xs, key=lambda i: i["size"])),
                               "does not match its sha256"),
    "flipped byte in the manifest": (lambda w, b, t: flip_manifest(b), "changed after it was signed"),
    "flipped byte in a listing": (lambda w, b, t: flip_item(b, "listing"), "does not match its sha256"),
    "missing part": (lambda w, b, t: (b / "part-0001").unlink(), "part-0001: missing"),
    "part from another bundle": (other_bundle_part, "part-0001"),
    "malicious file under a valid manifest": (smuggle, "refused by the scan"),
}


@pytest.mark.parametrize("case", list(TAMPERS))
def test_tampered_bundle_is_refused_and_the_store_is_unchanged(world, tmp_path, case):
    bundle = tmp_path / "bundle"
    shutil.copytree(world.bundle, bundle)
    tamper, expect = TAMPERS[case]
    tamper(world, bundle, tmp_path)
    before = listing(world.target)
    audit_before = (world.target / "audit.log").read_bytes()
    p = run("import", str(bundle), "--config", str(world.offline_config))
    assert p.returncode == 1, f"{case}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    assert "bundle refused" in p.stderr and expect in p.stderr, p.stderr
    assert listing(world.target) == before, f"{case}: the store changed"
    assert b'"refused"' in (world.target / "audit.log").read_bytes()[len(audit_before):]


def test_bundle_signed_by_an_untrusted_key_is_refused(world, tmp_path):
    cfg = tmp_path / "untrusting.toml"
    cfg.write_text(world.offline_config.read_text().replace(
        str(world.connected.data_dir / "mirror.pub"), str(world.keys.parent / "other-keys" / "governance.pub")))
    before = listing(world.target)
    p = run("import", str(world.bundle), "--config", str(cfg))
    assert p.returncode == 1 and "not in [airgap] trusted_exporters" in p.stderr, p.stderr
    assert listing(world.target) == before


def test_approval_signed_by_an_unknown_governance_key_is_refused(world, tmp_path):
    cfg = tmp_path / "other-gov.toml"
    cfg.write_text(world.offline_config.read_text().replace(
        str(world.keys / "governance.pub"), str(world.keys.parent / "other-keys" / "governance.pub")))
    before = listing(world.target)
    p = run("import", str(world.bundle), "--config", str(cfg))
    assert p.returncode == 1 and "approval appr-" in p.stderr and "not a trusted governance key" in p.stderr, \
        p.stderr
    assert listing(world.target) == before


def test_importing_the_same_bundle_again_changes_nothing(world):
    blobs = lambda: {k: v for k, v in listing(world.target).items() if k.startswith(("blobs", "manifests",
                                                                                      "approvals"))}
    before = blobs()
    p = ok(run("import", str(world.bundle), "--config", str(world.offline_config)))
    assert "0 new blob(s)" in p.stdout, p.stdout
    assert blobs() == before
    imports = [json.loads(l) for l in (world.target / "audit.log").read_text().splitlines() if '"import"' in l]
    done = [e for e in imports if "refused" not in json.dumps(e)]
    assert len(done) >= 2 and manifest_of(world.bundle)["exporter"] in json.dumps(done[-1]), done[-1:]


def test_an_offline_mirror_exports_again_for_a_further_tier(world, tmp_path):
    tier2 = tmp_path / "tier2"
    ok(run("export", "--config", str(world.offline_config), "--out", str(tier2), "--all-approved"))
    assert manifest_of(tier2)["exporter"] != manifest_of(world.bundle)["exporter"]
    t3 = tmp_path / "t3"
    t3.mkdir()
    cfg = offline_config(t3, t3 / "data", free_port(), world.keys / "governance.pub", world.target / "mirror.pub")
    p = ok(run("import", str(tier2), "--config", str(cfg)))
    assert "3 version(s)" in p.stdout, p.stdout
    names = lambda d: {p.name for p in (d / "blobs").rglob("*") if p.is_file()}
    assert names(t3 / "data") == names(world.target)
    # --all: every version held in full, approved or not (allow-rule setups), here the same three.
    everything = tmp_path / "all"
    ok(run("export", "--config", str(world.offline_config), "--out", str(everything), "--all"))
    assert sorted(v["name"] for v in manifest_of(everything)["versions"]) == \
        sorted(v["name"] for v in manifest_of(tier2)["versions"])


# ---- the AI-BOM ---------------------------------------------------------------------------------------
def cyclonedx_validator():
    """The CycloneDX 1.6 schema (checked-in copy, data/cyclonedx/README.md), with the schemas it refers to
    registered under the URIs its relative `$ref`s resolve to."""
    import jsonschema
    from referencing import Registry
    from referencing.jsonschema import DRAFT7
    base = HERE / "data" / "cyclonedx"
    load = lambda n: json.loads((base / n).read_text())
    bom = load("bom-1.6.SNAPSHOT.schema.json")
    registry = Registry().with_resources([
        ("http://cyclonedx.org/schema/" + n, DRAFT7.create_resource(load(n)))
        for n in ["spdx.SNAPSHOT.schema.json", "jsf-0.82.SNAPSHOT.schema.json"]])
    return jsonschema.Draft7Validator(bom, registry=registry)


def test_each_version_has_a_valid_cyclonedx_ml_bom(world):
    m = manifest_of(world.bundle)
    validator = cyclonedx_validator()
    stream = b"".join((world.bundle / p["name"]).read_bytes() for p in m["parts"])
    boms = [json.loads(stream[i["offset"]:i["offset"] + i["size"]]) for i in m["items"] if i["kind"] == "bom"]
    assert len(boms) == len(m["versions"]) == 3
    for bom in boms:
        errors = sorted(validator.iter_errors(bom), key=str)
        assert not errors, [e.message for e in errors[:5]]
        assert bom["metadata"]["component"]["type"] == "machine-learning-model"
    model_bom = next(b for b in boms if b["metadata"]["component"]["name"] == "airgap/model")
    hashes = {c["name"]: c["hashes"][0]["content"] for c in model_bom["components"]}
    assert hashes == {k: hashlib.sha256(as_bytes(v)).hexdigest() for k, v in MODEL.items()}
    props = {p["name"]: p["value"] for p in model_bom["metadata"]["component"]["properties"]}
    assert props["airlock:approval"] == world.model_appr

    # `airlock bom` prints the same document for the same version (here on the offline side).
    commit = world.hub.sha("airgap/model")
    p = ok(run("bom", "hf", "airgap/model", "--revision", commit, "--config", str(world.offline_config)))
    printed = json.loads(p.stdout)
    assert {c["name"]: c["hashes"] for c in printed["components"]} == \
        {c["name"]: c["hashes"] for c in model_bom["components"]}
    assert printed["serialNumber"] == model_bom["serialNumber"]


# ---- later bundles ------------------------------------------------------------------------------------
def test_differential_bundle_carries_only_new_blobs_and_a_later_revocation_stops_serving(world, tmp_path):
    c = world.connected
    c.start()
    signer = ["--key", str(world.keys / "governance.key"), "--by", "model-governance", "--reason", "air-gap test"]
    ok(c.cli("approve", "hf", "airgap/second", *signer))
    ok(c.cli("revoke", world.model_appr, *signer))
    c.stop()
    diff = tmp_path / "diff"
    ok(run("export", "--config", str(c.config), "--out", str(diff), "--all-approved", "--part-size", str(PART),
           "--since", str(world.bundle / "manifest.json")))
    old = {i["sha256"] for i in manifest_of(world.bundle)["items"]}
    new = manifest_of(diff)
    blobs = {i["sha256"] for i in new["items"] if i["kind"] == "blob"}
    assert blobs and not blobs & old, "a differential bundle repeated blobs of its base"
    assert blobs == {"sha256:" + hashlib.sha256(as_bytes(v)).hexdigest() for v in SECOND.values()}
    assert any(i["kind"] == "revocation" for i in new["items"])

    off = world.offline
    off.stop()
    p = ok(run("import", str(diff), "--config", str(off.config)))
    assert "airgap/second" in p.stdout
    off.start()
    out = expect_ok(hf_op(off, tmp_path / "h1", {"op": "download", "repo": "airgap/second",
                                                   "filename": "model.safetensors"}), off.server)
    assert out["sha256"] == hashlib.sha256(SECOND["model.safetensors"]).hexdigest()
    out = hf_op(off, tmp_path / "h2", {"op": "download", "repo": "airgap/model", "filename": "config.json"})
    assert not out["ok"] and "revoked" in out["message"], out


def test_trust_rules_are_checked_again_on_the_importing_side(world, fake_hub, tmp_path):
    """A model-signing rule on the offline side: the bundle's model.sig must verify with that side's key."""
    vectors = HERE.parent / "verifier" / "tests" / "fixtures" / "signing"
    model = vectors / "ms" / "key_p256" / "model"
    if ("model", "airgap/signed") not in fake_hub.repos:
        fake_hub.add_repo("airgap/signed", {p.name: p.read_bytes() for p in sorted(model.iterdir())})
    c = world.connected
    c.start()
    signer = ["--key", str(world.keys / "governance.key"), "--by", "model-governance", "--reason", "air-gap test"]
    p = ok(c.cli("approve", "hf", "airgap/signed", *signer))
    appr = next(w for w in p.stdout.split() if w.startswith("appr-")).rstrip(".:,")
    c.stop()
    bundle = tmp_path / "signed-bundle"
    ok(run("export", "--config", str(c.config), "--out", str(bundle), "--approval", appr))
    for key, refused in [("wrong_p256.pub.pem", True), ("signer_p256.pub.pem", False)]:
        site = tmp_path / key
        site.mkdir()
        cfg = offline_config(site, site / "data", free_port(), world.keys / "governance.pub",
                             world.connected.data_dir / "mirror.pub")
        cfg.write_text(cfg.read_text() + f'[[trust]]\nmatch = "airgap/signed"\nrequire = "model-signing"\n'
                                          f"keys = [{toml_str(str(vectors / 'keys' / key))}]\n")
        p = run("import", str(bundle), "--config", str(cfg))
        if refused:
            assert p.returncode == 1 and "[[trust]] airgap/signed" in p.stderr, p.stderr
            assert not (site / "data" / "blobs").exists(), "a refused import created the store"
        else:
            assert p.returncode == 0, p.stderr
