"""A single-node Garage (the S3-compatible object store) for tests: started on 127.0.0.1 ephemeral ports in a
temporary directory, laid out, with one bucket and one read/write key; plus a tiny SigV4-signed S3 client
(stdlib only) so tests can look at the objects Airlock stored.

The binary: $AIRLOCK_GARAGE_BIN, else `garage` on PATH. Without one the caller skips, unless
AIRLOCK_REQUIRE_GARAGE=1 (scripts/test.sh sets it when Garage is installed): then it fails."""
from __future__ import annotations

import datetime
import hashlib
import hmac
import http.client
import os
import re
import secrets
import shutil
import subprocess
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import free_port

START_TIMEOUT = 30.0
REGION = "garage"
BUCKET = "airlock"


def garage_bin() -> str | None:
    return os.environ.get("AIRLOCK_GARAGE_BIN") or shutil.which("garage")


def need_garage() -> str:
    """The garage binary, or skip (fail when Garage is required)."""
    b = garage_bin()
    if b:
        return b
    if os.environ.get("AIRLOCK_REQUIRE_GARAGE") == "1":
        pytest.fail("AIRLOCK_REQUIRE_GARAGE=1 but no garage binary (set AIRLOCK_GARAGE_BIN or put garage on PATH)")
    pytest.skip("no garage binary (set AIRLOCK_GARAGE_BIN)")


@dataclass
class Garage:
    proc: subprocess.Popen
    root: Path
    conf: Path
    bin: str
    s3_port: int
    key_id: str = ""
    secret: str = ""

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def cli(self, *args: str) -> str:
        p = subprocess.run([self.bin, "-c", str(self.conf), *args], capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise RuntimeError(f"garage {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        return p.stdout

    def log(self) -> str:
        return (self.root / "garage.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    # -- a minimal S3 client (path-style, SigV4, unsigned payload) --------------------------------------------
    def _request(self, method: str, key: str = "", query: dict | None = None) -> tuple[int, bytes]:
        host = f"127.0.0.1:{self.s3_port}"
        path = "/" + BUCKET + ("/" + urllib.parse.quote(key, safe="/") if key else "")
        q = "&".join(f"{urllib.parse.quote(k, safe='')}={urllib.parse.quote(v, safe='')}"
                     for k, v in sorted((query or {}).items()))
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        signed = "host;x-amz-content-sha256;x-amz-date"
        canonical = "\n".join([method, path, q, f"host:{host}", "x-amz-content-sha256:UNSIGNED-PAYLOAD",
                               f"x-amz-date:{amz_date}", "", signed, "UNSIGNED-PAYLOAD"])
        scope = f"{day}/{REGION}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        k = ("AWS4" + self.secret).encode()
        for part in (day, REGION, "s3", "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        headers = {"Host": host, "x-amz-date": amz_date, "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
                   "Authorization": f"AWS4-HMAC-SHA256 Credential={self.key_id}/{scope}, SignedHeaders={signed}, "
                                    f"Signature={sig}"}
        conn = http.client.HTTPConnection("127.0.0.1", self.s3_port, timeout=30)
        try:
            conn.request(method, path + (f"?{q}" if q else ""), headers=headers)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def keys(self, prefix: str = "") -> dict[str, int]:
        """Every object key under `prefix`, with its size."""
        out, token = {}, None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            status, body = self._request("GET", query=query)
            assert status == 200, f"ListObjectsV2: {status} {body[:500]!r}"
            text = body.decode()
            for m in re.finditer(r"<Contents>(.*?)</Contents>", text, re.S):
                key = re.search(r"<Key>(.*?)</Key>", m.group(1)).group(1)
                out[key] = int(re.search(r"<Size>(\d+)</Size>", m.group(1)).group(1))
            t = re.search(r"<NextContinuationToken>(.*?)</NextContinuationToken>", text)
            if not t:
                return out
            token = t.group(1)

    def get(self, key: str) -> bytes:
        status, body = self._request("GET", key)
        assert status == 200, f"GetObject {key}: {status} {body[:500]!r}"
        return body


def start_garage(tmp: Path) -> Garage:
    """A fresh single-node Garage with bucket `airlock` and a key that may read and write it."""
    binary = need_garage()
    tmp.mkdir(parents=True, exist_ok=True)
    rpc, s3, admin = free_port(), free_port(), free_port()
    conf = tmp / "garage.toml"
    conf.write_text(f"""metadata_dir = "{tmp}/meta"
data_dir = "{tmp}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secrets.token_hex(32)}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3}"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
""")
    with open(tmp / "garage.log", "ab") as log:
        proc = subprocess.Popen([binary, "-c", str(conf), "server"], stdout=log, stderr=subprocess.STDOUT)
    g = Garage(proc, tmp, conf, binary, s3)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            pytest.fail(f"garage server exited with {proc.returncode}:\n{g.log()}")
        try:
            node = g.cli("node", "id", "-q").strip().split("@")[0]
            break
        except RuntimeError:
            if time.monotonic() > deadline:
                g.stop()
                pytest.fail(f"garage did not answer within {START_TIMEOUT:.0f}s:\n{g.log()}")
            time.sleep(0.1)
    g.cli("layout", "assign", "-z", "dc1", "-c", "1G", node)
    g.cli("layout", "apply", "--version", "1")
    g.cli("bucket", "create", BUCKET)
    out = g.cli("key", "create", "airlock-test")
    g.key_id = re.search(r"Key ID:\s*(\S+)", out).group(1)
    g.secret = re.search(r"Secret key:\s*(\S+)", out).group(1)
    g.cli("bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", "airlock-test")
    # The S3 API comes up with the layout; wait until the key works.
    while True:
        try:
            g.keys()
            return g
        except (AssertionError, OSError):
            if time.monotonic() > deadline:
                g.stop()
                pytest.fail(f"garage's S3 API did not accept the new key within {START_TIMEOUT:.0f}s:\n{g.log()}")
            time.sleep(0.2)


def store_section(g: Garage, credentials_file: Path | None = None) -> str:
    """The `[store]` section that puts Airlock's blobs into this Garage's bucket."""
    s = (f'[store]\nbackend = "s3"\nbucket = "{BUCKET}"\nendpoint = "{g.endpoint}"\nregion = "{REGION}"\n')
    if credentials_file is not None:
        s += f'credentials_file = "{credentials_file}"\n'
    return s
