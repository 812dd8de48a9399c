"""TLS for the end-to-end tests: a test CA and leaf certificates made with Debian's `openssl`, and `airlock serve`
with `[tls]` on. Reusable by any test that needs Airlock (or a fake upstream) over HTTPS:

    ca = make_ca(tmp / "ca")                                     # ca.cert / ca.key, a fresh CA per test
    leaf = issue(ca, tmp / "leaf", ["127.0.0.1", "localhost"])    # leaf.cert / leaf.key, SANs as given
    a = start_airlock_tls(tmp / "a", fake_hub, leaf, policy=...)  # an Airlock whose .url is https://127.0.0.1:P
    st, headers, body = tls_request(a, ca, "GET", "/healthz")

Clients trust the CA through `ca.cert` (`REQUESTS_CA_BUNDLE` / `SSL_CERT_FILE` for huggingface_hub and
ollama-pull, `ssl_context(ca)` here). Headless Chromium takes `--ignore-certificate-errors-spki-list=` +
`spki_sha256(leaf.cert)` (the certificate then counts as valid, so the page is a secure context), together with
`--host-resolver-rules="MAP airlock.test 127.0.0.1"` and a leaf issued for "airlock.test". Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import os
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import Airlock, airlock_bin, default_policy, free_port, toml_str

OPENSSL = "openssl"


@dataclass
class CertPair:
    cert: Path
    key: Path


def _openssl(*args: str, cwd: Path) -> None:
    p = subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed:\n{p.stderr}")


def make_ca(d: Path, name: str = "Airlock Test CA") -> CertPair:
    """A self-signed CA (EC P-256, 2 days) in `d`."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "ca.key", "-out", "ca.cert", "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=d)
    return CertPair(d / "ca.cert", d / "ca.key")


def issue(ca: CertPair, d: Path, names: list[str], cn: str | None = None) -> CertPair:
    """A server certificate signed by `ca` for `names` (IP addresses and DNS names), in `d`."""
    d.mkdir(parents=True, exist_ok=True)
    sans = []
    for n in names:
        try:
            ipaddress.ip_address(n)
            sans.append(f"IP:{n}")
        except ValueError:
            sans.append(f"DNS:{n}")
    (d / "ext.cnf").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        f"subjectAltName={','.join(sans)}\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", f"/CN={cn or names[0]}", cwd=d)
    _openssl("x509", "-req", "-in", "leaf.csr", "-CA", str(ca.cert), "-CAkey", str(ca.key), "-CAcreateserial",
             "-out", "leaf.cert", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    return CertPair(d / "leaf.cert", d / "leaf.key")


def spki_sha256(cert: Path) -> str:
    """base64(sha256(SubjectPublicKeyInfo)) of a certificate, as Chromium's --ignore-certificate-errors-spki-list
    wants it."""
    pub = subprocess.run([OPENSSL, "x509", "-in", str(cert), "-noout", "-pubkey"], capture_output=True,
                         timeout=30, check=True).stdout
    der = subprocess.run([OPENSSL, "pkey", "-pubin", "-outform", "DER"], input=pub, capture_output=True,
                         timeout=30, check=True).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def ssl_context(ca: CertPair | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca.cert) if ca else None)
    return ctx


@dataclass
class TlsAirlock(Airlock):
    """An Airlock serving HTTPS; `url` says so, so `hf_call(a, …)` sets `HF_ENDPOINT=https://…`."""
    ca: CertPair | None = None
    host: str = "127.0.0.1"
    plain_port: int | None = None

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"


def tls_request(target, ca: CertPair | None, method: str, path: str, headers: dict | None = None,
                body: bytes | None = None, timeout: float = 30.0, host: str = "127.0.0.1",
                port: int | None = None, conn: http.client.HTTPSConnection | None = None):
    """One HTTPS request (no redirect following). Returns (status, headers, body). Pass `conn` to reuse a
    keep-alive connection."""
    own = conn is None
    if conn is None:
        conn = http.client.HTTPSConnection(host, port or target.port, timeout=timeout, context=ssl_context(ca))
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
        if own:
            conn.close()


def start_airlock_tls(tmp: Path, hub, leaf: CertPair, ca: CertPair, policy: str | None = None,
                      extra: str = "", plain_listen: bool = False, env: dict | None = None) -> TlsAirlock:
    """`airlock serve` with `[tls] cert_file/key_file = leaf` in front of the fake Hub; waits for HTTPS /healthz
    (verified against `ca`)."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    plain = free_port() if plain_listen else None
    data_dir = tmp / "airlock-data"
    config = tmp / "airlock.toml"
    config.write_text(
        f"listen = {toml_str(f'127.0.0.1:{port}')}\n"
        f"data_dir = {toml_str(str(data_dir))}\n"
        + extra
        + "[huggingface]\n"
        f"upstream = {toml_str(hub.url)}\n"
        f"redirect_hosts = [{toml_str(hub.cdn_hostport)}]\n"
        "tree_page_size = 3\n"
        f"[tls]\ncert_file = {toml_str(str(leaf.cert))}\nkey_file = {toml_str(str(leaf.key))}\n"
        + (f"plain_listen = {toml_str(f'127.0.0.1:{plain}')}\n" if plain else "")
        + (policy if policy is not None else default_policy(hub))
        + ("" if "[governance]" in (policy or "") else "\n[governance]\nprefetch_requests = false\n"))
    log_path = tmp / "airlock.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRLOCK_", "HF_"))}
    full_env.setdefault("RUST_LOG", "info")
    full_env.update(env or {})
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([str(airlock_bin()), "serve", "--config", str(config)], stdout=log,
                                stderr=subprocess.STDOUT, env=full_env, cwd=tmp)
    a = TlsAirlock(proc, port, tmp, data_dir, log_path, ca=ca, plain_port=plain)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            pytest.fail(f"airlock serve (TLS) exited with {proc.returncode}:\n{config.read_text()}\n{a.log()}")
        try:
            if tls_request(a, ca, "GET", "/healthz", timeout=2)[0] == 200:
                return a
        except (OSError, ssl.SSLError):
            pass
        if time.monotonic() > deadline:
            a.stop()
            pytest.fail(f"airlock (TLS) did not answer HTTPS /healthz within 30s:\n{a.log()}")
        time.sleep(0.1)


def peer_serial(sock: ssl.SSLSocket) -> str:
    """The serial number of the certificate the server presented on this connection (hex, from DER)."""
    der = sock.getpeercert(binary_form=True)
    p = subprocess.run([OPENSSL, "x509", "-inform", "DER", "-noout", "-serial"], input=der, capture_output=True,
                       timeout=30)
    return p.stdout.decode().strip().split("=", 1)[-1]


def cert_serial(cert: Path) -> str:
    p = subprocess.run([OPENSSL, "x509", "-in", str(cert), "-noout", "-serial"], capture_output=True, text=True,
                       timeout=30)
    return p.stdout.strip().split("=", 1)[-1]


def alpn(port: int, ca: CertPair, protos: list[str], host: str = "127.0.0.1") -> str | None:
    """The protocol the server picks by ALPN from `protos`."""
    ctx = ssl_context(ca)
    ctx.set_alpn_protocols(protos)
    with socket.create_connection((host, port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as s:
            return s.selected_alpn_protocol()
