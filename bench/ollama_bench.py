#!/usr/bin/env python3
"""Helper for bench/ollama-bench.sh: a GGUF header of an exact total size, and a streaming push of an Ollama-shaped
model into a registry (plain OCI push, one monolithic PUT per blob; the big layer is never held in memory).

    ollama_bench.py gguf-header TOTAL         -> GGUF v3 header (one F32 tensor) on stdout; header + tensor data is
                                                 exactly TOTAL bytes (TOTAL a multiple of 32); append the data
    ollama_bench.py push REGISTRY NAME TAG FILE -> pushes FILE as the model layer plus small template/params/license/
                                                 system layers and a config; {"manifest": d, "model": d, "size": n}
"""

import hashlib
import http.client
import json
import os
import struct
import sys
import urllib.parse

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OLLAMA = "application/vnd.ollama.image."


def gstr(s: bytes) -> bytes:
    return struct.pack("<Q", len(s)) + s


def gguf_header(total: int) -> bytes:
    def header(elems: int) -> bytes:
        h = b"GGUF" + struct.pack("<IQQ", 3, 1, 1)
        h += gstr(b"general.architecture") + struct.pack("<I", 8) + gstr(b"llama")
        h += gstr(b"w") + struct.pack("<I", 1) + struct.pack("<Q", elems) + struct.pack("<IQ", 0, 0)
        return h + b"\0" * (-len(h) % 32)

    hlen = len(header(0))  # fixed-width fields: the length does not depend on the element count
    if total % 32 or total <= hlen:
        raise SystemExit(f"total size {total} must be a multiple of 32 and larger than {hlen}")
    return header((total - hlen) // 4)


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


class Registry:
    def __init__(self, url: str):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port

    def call(self, method, path, body=None, headers=None, length=None):
        c = http.client.HTTPConnection(self.host, self.port, timeout=600, blocksize=1 << 20)
        try:
            hdrs = dict(headers or {})
            if body is not None:
                hdrs["Content-Length"] = str(length if length is not None else len(body))
            c.request(method, path, body=body, headers=hdrs)
            r = c.getresponse()
            return r.status, r.headers, r.read()
        finally:
            c.close()

    def push_blob(self, name: str, digest: str, body, length: int) -> None:
        st, h, b = self.call("POST", f"/v2/{name}/blobs/uploads/", b"")
        if st != 202:
            raise SystemExit(f"upload start: {st} {b[:200]!r}")
        loc = urllib.parse.urlsplit(h["Location"])
        path = loc.path + "?" + (loc.query + "&" if loc.query else "") + "digest=" + urllib.parse.quote(digest)
        st, _, b = self.call("PUT", path, body, {"Content-Type": "application/octet-stream"}, length)
        if st != 201:
            raise SystemExit(f"blob {digest}: {st} {b[:200]!r}")


def push(url: str, name: str, tag: str, path: str) -> dict:
    reg = Registry(url)
    size = os.path.getsize(path)
    model = sha256_file(path)
    with open(path, "rb") as f:
        reg.push_blob(name, model, f, size)
    small = [(OLLAMA + "template", b"{{ if .System }}<|system|>{{ .System }}{{ end }}<|user|>{{ .Prompt }}<|assistant|>"),
             (OLLAMA + "params", json.dumps({"stop": ["<|end|>"]}).encode()),
             (OLLAMA + "license", b"MIT License\n"), (OLLAMA + "system", b"You are a benchmark.")]
    layers = [{"mediaType": OLLAMA + "model", "digest": model, "size": size}]
    for mt, data in small:
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        reg.push_blob(name, d, data, len(data))
        layers.append({"mediaType": mt, "digest": d, "size": len(data)})
    config = json.dumps({"model_format": "gguf", "model_family": "llama", "architecture": "amd64",
                         "os": "linux"}).encode()
    cd = "sha256:" + hashlib.sha256(config).hexdigest()
    reg.push_blob(name, cd, config, len(config))
    manifest = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                           "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                      "digest": cd, "size": len(config)},
                           "layers": layers}).encode()
    st, _, b = reg.call("PUT", f"/v2/{name}/manifests/{tag}", manifest, {"Content-Type": DOCKER_MANIFEST})
    if st != 201:
        raise SystemExit(f"manifest: {st} {b[:200]!r}")
    return {"manifest": "sha256:" + hashlib.sha256(manifest).hexdigest(), "model": model, "size": size}


def main() -> None:
    cmd = sys.argv[1:2]
    if cmd == ["gguf-header"] and len(sys.argv) == 3:
        sys.stdout.buffer.write(gguf_header(int(sys.argv[2])))
    elif cmd == ["push"] and len(sys.argv) == 6:
        print(json.dumps(push(*sys.argv[2:6])))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
