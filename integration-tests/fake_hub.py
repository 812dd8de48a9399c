#!/usr/bin/env python3
"""A local stand-in for the Hugging Face Hub, for Airlock's end-to-end tests and benchmark.

It behaves like the Hub as `shared/docs/hf-protocol.md` describes it (the contract real clients rely on),
on 127.0.0.1 only, with the Python standard library only:

* a **hub** listener: `/api/{models,datasets}/{repo}[/revision/{rev}]`, `/tree/{rev}[/{path}]` (paginated with an
  absolute `Link: <…>; rel="next"`, entries carry `xetHash` like a Xet-enabled Hub), `POST /paths-info/{rev}`,
  `/xet-read-token/{sha}`, `HEAD`/`GET /{repo}/resolve/{rev}/{path}` and `/datasets/{repo}/resolve/…`.
  Regular files are answered inline (200, `ETag: "<git blob sha1>"`); LFS files with a 302 to the **CDN**
  listener on another port, with `X-Linked-Etag`/`X-Linked-Size` and Xet metadata (`X-Xet-Hash`, `Link
  rel="xet-auth"`) that a mirror must strip. Errors carry `X-Error-Code` + `X-Error-Message` + JSON `error`.
* a **cdn** listener: serves blob bytes, `Range` → 206 + `Content-Range`.
* an **elsewhere** listener on 127.0.0.2 (a host a mirror must not be allowed to follow redirects to); it
  serves like the CDN so a test can tell "refused" from "followed and failed".

Every request is counted per (listener, method, path): `GET /_test/stats`, `POST /_test/reset`. Faults are
injected per file (`FakeHub.set_fault` or `POST /_test/faults`): `flip`, `cut_once`, `status_once`,
`extra_bytes`, `absurd_length`, `redirect_elsewhere`, `slow`, `rate` (bytes/s per connection for that file: a
drip-feed when small). `FakeHub.cdn_rate` caps every connection's bandwidth (a WAN link, a busy CDN edge).
`FakeHub.commit` moves a branch to a new commit.

Used in-process by the pytest fixtures (`FakeHub(...).start()`), or standalone for the benchmark:

    python fake_hub.py --repo bench/big --serve-file /tmp/big.bin=model.safetensors --no-xet
    # prints one JSON line: {"hub": "http://127.0.0.1:PORT", "cdn": ..., "hub_port": ..., "cdn_port": ...}
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator
from urllib.parse import parse_qs, quote, unquote

LFS_THRESHOLD = 1024
CHUNK = 256 * 1024
HEX40 = set("0123456789abcdef")


def gen_bytes(size: int, seed: str) -> bytes:
    """Deterministic pseudo-random bytes (same seed → same bytes on every run and machine)."""
    return random.Random(seed).randbytes(size)


def safetensors_header(size: int) -> bytes:
    """The header of a valid safetensors file of exactly `size` bytes holding one U8 tensor, so that a content
    scanner sees a real model file rather than random bytes that happen to look like a pickle or an archive."""
    n = size - 8
    for _ in range(4):  # the header's length depends on the digits of n: converges in two rounds
        body = json.dumps({"weight": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}},
                          separators=(",", ":")).encode()
        hlen = (len(body) + 7) // 8 * 8
        if 8 + hlen + n == size:
            return hlen.to_bytes(8, "little") + body.ljust(hlen)
        n = size - 8 - hlen
        if n < 0:
            raise ValueError(f"{size} bytes is too small for a safetensors file")
    raise ValueError(f"no safetensors header fits {size} bytes")


def model_bytes(size: int, seed: str) -> bytes:
    """A deterministic, valid safetensors file of exactly `size` bytes (random tensor data)."""
    head = safetensors_header(size)
    return head + gen_bytes(size - len(head), seed)


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass
class FileEntry:
    """One file of a commit. Bytes live in memory (`data`) or on disk (`disk_path`, benchmark files)."""

    path: str
    size: int
    sha256: str
    lfs: bool
    oid: str  # git blob sha1 of the file (regular) or of its LFS pointer (LFS), as the Hub's tree `oid`
    data: bytes | None = None
    disk_path: str | None = None
    pointer_size: int = 0
    xet_hash: str = ""

    @classmethod
    def from_bytes(cls, path: str, data: bytes, lfs: bool | None = None) -> "FileEntry":
        if lfs is None:
            lfs = len(data) >= LFS_THRESHOLD
        sha256 = hashlib.sha256(data).hexdigest()
        return cls._make(path, len(data), sha256, lfs, git_blob_sha1(data), data=data)

    @classmethod
    def from_disk(cls, path: str, disk_path: str) -> "FileEntry":
        h = hashlib.sha256()
        with open(disk_path, "rb") as f:
            while chunk := f.read(4 << 20):
                h.update(chunk)
        size = os.path.getsize(disk_path)
        return cls._make(path, size, h.hexdigest(), True, "", disk_path=disk_path)

    @classmethod
    def _make(cls, path, size, sha256, lfs, plain_oid, data=None, disk_path=None) -> "FileEntry":
        pointer = lfs_pointer(sha256, size)
        oid = git_blob_sha1(pointer) if lfs else plain_oid
        xet_hash = hashlib.sha256(b"xet" + sha256.encode()).hexdigest()
        return cls(path, size, sha256, lfs, oid, data, disk_path, len(pointer) if lfs else 0, xet_hash)

    def open_range(self, start: int, end: int) -> Iterator[bytes]:
        """Chunks of bytes [start, end)."""
        if self.data is not None:
            for i in range(start, end, CHUNK):
                yield self.data[i : min(end, i + CHUNK)]
            return
        with open(self.disk_path, "rb") as f:
            f.seek(start)
            left = end - start
            while left > 0:
                chunk = f.read(min(CHUNK * 4, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk


@dataclass
class Repo:
    kind: str  # "model" | "dataset"
    repo_id: str
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit sha
    commits: dict[str, dict[str, FileEntry]] = field(default_factory=dict)  # sha -> path -> file
    gated: bool = False
    token: str | None = None  # bearer token that opens a gated repo
    counter: int = 0

    def resolve(self, rev: str) -> str | None:
        if rev in self.branches:
            return self.branches[rev]
        if len(rev) == 40 and set(rev) <= HEX40 and rev in self.commits:
            return rev
        return None


def _as_entry(path: str, spec) -> FileEntry:
    if isinstance(spec, FileEntry):
        return spec
    if isinstance(spec, (bytes, bytearray)):
        return FileEntry.from_bytes(path, bytes(spec))
    if isinstance(spec, str):
        return FileEntry.from_bytes(path, spec.encode())
    if isinstance(spec, dict):  # JSON form: {"size": n, "seed": s, "lfs": bool} | {"text": t} | {"file": disk path}
        if "file" in spec:
            return FileEntry.from_disk(path, spec["file"])
        if "text" in spec:
            return FileEntry.from_bytes(path, spec["text"].encode(), spec.get("lfs"))
        return FileEntry.from_bytes(path, model_bytes(int(spec["size"]), spec.get("seed", path)), spec.get("lfs"))
    raise TypeError(f"bad file spec for {path}: {type(spec)}")


class FakeHub:
    """The fake Hub: repos, faults, counters and the three listeners."""

    def __init__(self, page_size: int = 3, xet: bool = True, host: str = "127.0.0.1", hub_port: int = 0,
                 cdn_port: int = 0, tls=None):
        self.page_size = page_size
        # An ssl.SSLContext (server side): the hub and CDN listeners then speak HTTPS (test_egress.py).
        self.tls = tls
        self.scheme = "https" if tls is not None else "http"
        self.xet = xet
        # Bytes per second per connection for file bodies (None: as fast as loopback goes).
        self.cdn_rate: float | None = None
        self.host = host
        self._want_ports = (hub_port, cdn_port)
        self.repos: dict[tuple[str, str], Repo] = {}
        self.blobs: dict[str, FileEntry] = {}  # sha256 -> entry, what the CDN serves
        self.faults: dict[tuple[str, str, str], dict] = {}
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.servers: dict[str, ThreadingHTTPServer] = {}
        self.threads: list[threading.Thread] = []

    # ---- repos -------------------------------------------------------------------------------------
    def add_repo(self, repo_id: str, files: dict, kind: str = "model", branches: dict | None = None,
                 gated: bool = False, token: str | None = None) -> Repo:
        """Create a repo whose `main` holds `files` (path -> bytes | str | FileEntry | JSON spec).
        `branches` maps other branch names (e.g. "refs/pr/1") to file overrides on top of main."""
        repo = Repo(kind, repo_id, gated=gated, token=token)
        with self.lock:
            self.repos[(kind, repo_id)] = repo
        self.commit(repo_id, files, branch="main", kind=kind, replace=True)
        for name, overrides in (branches or {}).items():
            base = dict(repo.commits[repo.branches["main"]])
            self._commit(repo, base, overrides, name)
        return repo

    def commit(self, repo_id: str, files: dict, branch: str = "main", kind: str = "model",
               replace: bool = False) -> str:
        """Make a new commit on `branch` with `files` changed (a value of None deletes the file) and move
        the branch to it. Returns the new 40-hex sha."""
        repo = self.repos[(kind, repo_id)]
        base = {} if replace or branch not in repo.branches else dict(repo.commits[repo.branches[branch]])
        return self._commit(repo, base, files, branch)

    def _commit(self, repo: Repo, base: dict, changes: dict, branch: str) -> str:
        for path, spec in changes.items():
            if spec is None:
                base.pop(path, None)
            else:
                base[path] = _as_entry(path, spec)
        with self.lock:
            repo.counter += 1
            seed = f"{repo.kind}/{repo.repo_id}/{branch}/{repo.counter}/" + ",".join(
                f"{p}:{e.sha256}" for p, e in sorted(base.items()))
            sha = hashlib.sha1(seed.encode()).hexdigest()
            repo.commits[sha] = base
            repo.branches[branch] = sha
            for e in base.values():
                if e.lfs:
                    self.blobs[e.sha256] = e
        return sha

    def sha(self, repo_id: str, rev: str = "main", kind: str = "model") -> str:
        return self.repos[(kind, repo_id)].resolve(rev)

    def file(self, repo_id: str, path: str, rev: str = "main", kind: str = "model") -> FileEntry:
        repo = self.repos[(kind, repo_id)]
        return repo.commits[repo.resolve(rev)][path]

    # ---- faults ------------------------------------------------------------------------------------
    def set_fault(self, repo_id: str, path: str, kind: str = "model", **fault) -> None:
        """Faults (combinable): flip=True|offset, cut_once=<bytes before the cut>, status_once=<status>,
        extra_bytes=<n>, short_length=<n> (Content-Length n short of the body sent), absurd_length=True,
        redirect_elsewhere=True, slow=<seconds before the body>,
        rate=<bytes per second per connection>."""
        with self.lock:
            self.faults[(kind, repo_id, path)] = dict(fault)

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def _take_fault(self, key) -> dict:
        """The fault set for a file, consuming its one-shot parts."""
        with self.lock:
            f = self.faults.get(key)
            if not f:
                return {}
            out = dict(f)
            for once in ("cut_once", "status_once"):
                f.pop(once, None)
            return out

    # ---- counters ----------------------------------------------------------------------------------
    def record(self, listener: str, method: str, path: str, query: str, headers) -> None:
        with self.lock:
            self.requests.append({"listener": listener, "method": method, "path": path, "query": query,
                                  "range": headers.get("Range"), "auth": bool(headers.get("Authorization")),
                                  "t": time.time()})

    def stats(self) -> dict:
        with self.lock:
            counts: dict[str, int] = {}
            for r in self.requests:
                k = f"{r['listener']} {r['method']} {r['path']}"
                counts[k] = counts.get(k, 0) + 1
            return {"counts": counts, "requests": list(self.requests), "total": len(self.requests)}

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()

    def count(self, listener: str | None = None, method: str | None = None, contains: str = "") -> int:
        with self.lock:
            return sum(1 for r in self.requests
                       if (listener is None or r["listener"] == listener)
                       and (method is None or r["method"] == method)
                       and contains in unquote(r["path"]))

    # ---- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> "FakeHub":
        hub_port, cdn_port = self._want_ports
        for role, host, port in (("hub", self.host, hub_port), ("cdn", self.host, cdn_port),
                                 ("elsewhere", "127.0.0.2", 0)):
            try:
                srv = _Server((host, port), _Handler)
            except OSError:
                if role == "elsewhere":  # 127.0.0.2 unavailable: the redirect test then only checks refusal
                    continue
                raise
            if self.tls is not None and role != "elsewhere":
                # Handshake on first read, in the handler thread, so a refused certificate never stalls accept.
                srv.socket = self.tls.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
            srv.hub = self
            srv.role = role
            self.servers[role] = srv
            t = threading.Thread(target=srv.serve_forever, name=f"fake-hub-{role}", daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def stop(self) -> None:
        for srv in self.servers.values():
            srv.shutdown()
            srv.server_close()

    def port(self, role: str) -> int:
        return self.servers[role].server_address[1]

    @property
    def hub_port(self) -> int:
        return self.port("hub")

    @property
    def cdn_port(self) -> int:
        return self.port("cdn")

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.hub_port}"

    @property
    def cdn_hostport(self) -> str:
        return f"{self.host}:{self.cdn_port}"

    def info(self) -> dict:
        d = {"hub": self.url, "cdn": f"{self.scheme}://{self.cdn_hostport}", "hub_port": self.hub_port,
             "cdn_port": self.cdn_port}
        if "elsewhere" in self.servers:
            d["elsewhere"] = f"http://127.0.0.2:{self.port('elsewhere')}"
        return d


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-hub/1"

    def log_message(self, fmt, *args):  # quiet; requests are counted instead
        pass

    @property
    def hub(self) -> FakeHub:
        return self.server.hub

    # ---- plumbing ----------------------------------------------------------------------------------
    def do_GET(self):
        self._dispatch()

    def do_HEAD(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def _dispatch(self):
        raw_path, _, query = self.path.partition("?")
        self.raw_path, self.query = raw_path, query
        if not raw_path.startswith("/_test/"):  # control traffic is not upstream traffic
            self.hub.record(self.server.role, self.command, raw_path, query, self.headers)
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        try:
            if self.server.role == "hub":
                self._hub()
            else:
                self._cdn()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send(self, status: int, headers: dict | None = None, body: bytes = b"", ctype: str | None = None):
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, status: int, obj, headers: dict | None = None):
        self._send(status, headers, json.dumps(obj).encode(), "application/json; charset=utf-8")

    def _error(self, status: int, code: str | None, message: str, headers: dict | None = None):
        h = dict(headers or {})
        if code:
            h["X-Error-Code"] = code
        h["X-Error-Message"] = message
        self._json(status, {"error": message}, h)

    def _qs(self) -> dict:
        return {k: v[-1] for k, v in parse_qs(self.query).items()}

    # ---- hub listener ------------------------------------------------------------------------------
    def _hub(self):
        segs = [unquote(s) for s in self.raw_path.split("/")[1:]]
        if segs and segs[0] == "_test":
            return self._control(segs[1:])
        if len(segs) >= 2 and segs[0] == "api" and segs[1] in ("models", "datasets"):
            return self._api(segs[1][:-1], segs[2:])
        if segs and segs[0] == "datasets":
            return self._resolve("dataset", segs[1:])
        if "resolve" in segs[1:3]:
            return self._resolve("model", segs)
        self._error(404, None, "Sorry, we can't find the page you are looking for.")

    def _find_repo(self, kind: str, rest: list[str], marker: set[str] | None):
        """Split `rest` into (repo, repo_id, tail): two-segment ids first, then one-segment ids (`gpt2`)."""
        for n in (2, 1):
            if len(rest) >= n:
                rid = "/".join(rest[:n])
                repo = self.hub.repos.get((kind, rid))
                if repo:
                    return repo, rid, rest[n:]
        # unknown: guess the id the way the Hub's router would
        if marker is not None and len(rest) >= 2 and rest[1] in marker:
            return None, rest[0], rest[1:]
        return None, "/".join(rest[:2]), rest[2:]

    def _gate(self, repo: Repo) -> bool:
        """True if the request may see the repo; otherwise answers 401 GatedRepo."""
        if not repo.gated or (repo.token and self.headers.get("Authorization") == f"Bearer {repo.token}"):
            return True
        self._error(401, "GatedRepo",
                    f"Access to {repo.kind} {repo.repo_id} is restricted. You must have access to it and be "
                    "authenticated to access it. Please log in.")
        return False

    def _api(self, kind: str, rest: list[str]):
        repo, rid, tail = self._find_repo(kind, rest, {"revision", "tree", "paths-info", "xet-read-token"})
        if repo is None:
            return self._error(404, "RepoNotFound", f"Repository Not Found for url: {self.hub.url}{self.path}.")
        if not self._gate(repo):
            return
        if self.command == "POST" and tail[:1] == ["paths-info"] and len(tail) == 2:
            return self._paths_info(repo, tail[1])
        if self.command not in ("GET", "HEAD"):
            return self._error(405, None, "Method not allowed")
        if not tail:
            return self._info(repo, "main")
        if tail[0] == "revision" and len(tail) >= 2:
            return self._info(repo, "/".join(tail[1:]))
        if tail[0] == "tree" and len(tail) >= 2:
            return self._tree(repo, tail[1], "/".join(tail[2:]))
        if tail[0] == "xet-read-token" and len(tail) == 2:
            # As the Hub does: a token for a CAS host. Points nowhere reachable: a client sent here by a
            # leaking mirror fails, which is what the tests want to catch.
            return self._json(200, {}, {"X-Xet-Cas-Url": "http://127.0.0.1:9", "X-Xet-Access-Token": "xet-fake",
                                        "X-Xet-Token-Expiration": str(int(time.time()) + 3600)})
        self._error(404, None, "Sorry, we can't find the page you are looking for.")

    def _rev(self, repo: Repo, rev: str) -> str | None:
        sha = repo.resolve(rev)
        if sha is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return sha

    def _entry_json(self, e: FileEntry) -> dict:
        d = {"type": "file", "oid": e.oid, "size": e.size, "path": e.path}
        if e.lfs:
            d["lfs"] = {"oid": e.sha256, "size": e.size, "pointerSize": e.pointer_size}
            if self.hub.xet:
                d["xetHash"] = e.xet_hash
        return d

    @staticmethod
    def _dir_json(path: str) -> dict:
        return {"type": "directory", "oid": hashlib.sha1(f"tree {path}".encode()).hexdigest(), "size": 0,
                "path": path}

    def _info(self, repo: Repo, rev: str):
        sha = self._rev(repo, rev)
        if sha is None:
            return
        files = repo.commits[sha]
        blobs = self._qs().get("blobs", "").lower() == "true"
        siblings = []
        for p in sorted(files):
            s = {"rfilename": p}
            if blobs:
                e = files[p]
                s.update(size=e.size, blobId=e.oid)
                if e.lfs:
                    s["lfs"] = {"sha256": e.sha256, "size": e.size, "pointerSize": e.pointer_size}
            siblings.append(s)
        body = {"_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24], "id": repo.repo_id,
                "author": repo.repo_id.split("/")[0] if "/" in repo.repo_id else None, "sha": sha,
                "lastModified": "2026-01-01T00:00:00.000Z", "createdAt": "2025-01-01T00:00:00.000Z",
                "private": False, "gated": "manual" if repo.gated else False, "disabled": False,
                "downloads": 0, "likes": 0, "tags": [], "siblings": siblings}
        if repo.kind == "model":
            body["modelId"] = repo.repo_id
        if self.hub.xet:
            body["xetEnabled"] = True
        self._json(200, body)

    def _listing(self, files: dict[str, FileEntry], base: str, recursive: bool) -> list[dict] | None:
        """Tree entries under directory `base` ('' = root), or None if `base` is not a directory."""
        prefix = base + "/" if base else ""
        if base and not any(p.startswith(prefix) for p in files):
            return None
        out, dirs = [], set()
        for p in sorted(files):
            if not p.startswith(prefix):
                continue
            rel = p[len(prefix):].split("/")
            for i in range(1, len(rel)):
                d = prefix + "/".join(rel[:i])
                if d not in dirs and (recursive or i == 1):
                    dirs.add(d)
                    out.append(self._dir_json(d))
            if recursive or len(rel) == 1:
                out.append(self._entry_json(files[p]))
        return out

    def _tree(self, repo: Repo, rev: str, path: str):
        sha = self._rev(repo, rev)
        if sha is None:
            return
        q = self._qs()
        recursive = q.get("recursive", "false").lower() in ("true", "1")
        entries = self._listing(repo.commits[sha], path.strip("/"), recursive)
        if entries is None:
            return self._error(404, "EntryNotFound", f"{path} does not exist on \"{rev}\"",
                               {"X-Repo-Commit": sha})
        start = int(base64.urlsafe_b64decode(q["cursor"]).decode()) if q.get("cursor") else 0
        page = entries[start:start + self.hub.page_size]
        headers = {}
        if start + self.hub.page_size < len(entries):
            cursor = base64.urlsafe_b64encode(str(start + self.hub.page_size).encode()).decode()
            t = "models" if repo.kind == "model" else "datasets"
            url = f"{self.hub.url}/api/{t}/{repo.repo_id}/tree/{quote(rev, safe='')}"
            if path:
                url += "/" + quote(path.strip("/"))
            url += f"?recursive={str(recursive).lower()}&expand={q.get('expand', 'false')}&cursor={cursor}"
            headers["Link"] = f'<{url}>; rel="next"'
        self._json(200, page, headers)

    def _paths_info(self, repo: Repo, rev: str):
        sha = self._rev(repo, rev)
        if sha is None:
            return
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype:
            paths = json.loads(self.body or b"{}").get("paths", [])
        else:
            paths = parse_qs(self.body.decode()).get("paths", [])
        files = repo.commits[sha]
        out = []
        for p in paths:
            p = p.strip("/")
            if p in files:
                out.append(self._entry_json(files[p]))
            elif any(f.startswith(p + "/") for f in files):
                out.append(self._dir_json(p))
        self._json(200, out)

    def _resolve(self, kind: str, rest: list[str]):
        repo, rid, tail = self._find_repo(kind, rest, {"resolve"})
        if repo is None or not tail or tail[0] != "resolve":
            if repo is None:
                return self._error(404, "RepoNotFound",
                                   f"Repository Not Found for url: {self.hub.url}{self.path}.")
            return self._error(404, None, "Sorry, we can't find the page you are looking for.")
        if not self._gate(repo):
            return
        if len(tail) < 3:
            return self._error(404, "EntryNotFound", "Entry not found")
        rev, path = tail[1], "/".join(tail[2:])
        sha = self._rev(repo, rev)
        if sha is None:
            return
        e = repo.commits[sha].get(path)
        if e is None:
            return self._error(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": sha})
        key = (kind, repo.repo_id, path)
        if not e.lfs:
            return self._body(e, key, {"X-Repo-Commit": sha, "ETag": f'"{e.oid}"'})
        fault = self.hub.faults.get(key, {})
        if fault.get("redirect_elsewhere") and "elsewhere" in self.hub.servers:
            host = f"127.0.0.2:{self.hub.port('elsewhere')}"
        elif fault.get("redirect_elsewhere"):
            host = "127.0.0.2:9"
        else:
            host = self.hub.cdn_hostport
        loc = (f"{self.hub.scheme}://{host}/repos/{e.sha256[:2]}/{e.sha256[2:4]}/{e.sha256}"
               f"?kind={kind}&repo={quote(repo.repo_id, safe='')}&path={quote(path, safe='')}"
               f"&X-Amz-Expires=3600&X-Amz-Signature={hashlib.md5(e.sha256.encode()).hexdigest()}")
        headers = {"X-Repo-Commit": sha, "X-Linked-Etag": f'"{e.sha256}"', "X-Linked-Size": e.size,
                   "ETag": f'"{e.oid}"', "Location": loc, "Accept-Ranges": "bytes"}
        if self.hub.xet:
            t = "models" if kind == "model" else "datasets"
            headers["X-Xet-Hash"] = e.xet_hash
            headers["Link"] = (f'<{self.hub.url}/api/{t}/{repo.repo_id}/xet-read-token/{sha}>; rel="xet-auth", '
                               f'<http://127.0.0.1:9/v1/reconstructions/{e.xet_hash}>; '
                               'rel="xet-reconstruction-info"')
        self._send(302, headers, b"", "text/plain; charset=utf-8")

    # ---- cdn / elsewhere listeners -----------------------------------------------------------------
    def _cdn(self):
        segs = self.raw_path.split("/")[1:]
        if len(segs) != 4 or segs[0] != "repos" or self.command not in ("GET", "HEAD"):
            return self._send(404, {}, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
        e = self.hub.blobs.get(segs[3])
        if e is None:
            return self._send(404, {}, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
        q = self._qs()
        key = (q.get("kind", "model"), q.get("repo", ""), q.get("path", ""))
        self._body(e, key, {"ETag": f'"{hashlib.md5(e.sha256.encode()).hexdigest()}"',
                            "Cache-Control": "public, max-age=604800, immutable"})

    # ---- bytes -------------------------------------------------------------------------------------
    def _range(self, size: int):
        """(start, end) of a satisfiable single `Range`, None for no/unsupported Range, 'bad' if unsatisfiable."""
        r = self.headers.get("Range")
        if not r or not r.startswith("bytes=") or "," in r:
            return None
        a, _, b = r[6:].strip().partition("-")
        try:
            if a == "":
                n = int(b)
                return (max(0, size - n), size) if n > 0 else "bad"
            start = int(a)
            end = min(size, int(b) + 1) if b else size
        except ValueError:
            return None
        if start >= size or end <= start:
            return "bad"
        return start, end

    def _body(self, e: FileEntry, key, headers: dict):
        fault = self.hub._take_fault(key) if self.command == "GET" else dict(self.hub.faults.get(key, {}))
        if self.command == "GET" and fault.get("status_once"):
            return self._error(int(fault["status_once"]), None, "Service temporarily unavailable",
                               {"Retry-After": "1"})
        rng = self._range(e.size)
        if rng == "bad":
            return self._send(416, {"Content-Range": f"bytes */{e.size}"}, b"")
        start, end = rng if rng else (0, e.size)
        extra = int(fault.get("extra_bytes", 0)) if not rng else 0
        self.send_response(206 if rng else 200)
        for k, v in headers.items():
            self.send_header(k, str(v))
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{e.size}")
        if fault.get("absurd_length") and self.command == "GET":
            self.send_header("Content-Length", str(10 ** 15))
            self.close_connection = True
        elif fault.get("short_length") and self.command == "GET":
            # Declares fewer bytes than it then sends (a lying upstream); the connection is not reusable.
            self.send_header("Content-Length", str(max(0, end - start - int(fault["short_length"]))))
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(end - start + extra))
        self.end_headers()
        if self.command == "HEAD":
            return
        if fault.get("slow"):
            self.wfile.flush()
            time.sleep(float(fault["slow"]))
        rate = fault.get("rate") or self.hub.cdn_rate
        write = self._paced(float(rate)) if rate else self.wfile.write
        flip = fault.get("flip")
        flip_at = None
        if flip is not None and flip is not False:
            flip_at = e.size // 2 if flip is True else int(flip)
        cut = fault.get("cut_once")
        budget = int(cut) if cut is not None else None
        if flip_at is None and budget is None and e.disk_path and not fault.get("absurd_length") and not rate:
            with open(e.disk_path, "rb") as f:  # the benchmark's fast path
                self.connection.sendfile(f, start, end - start)
        else:
            pos = start
            for chunk in e.open_range(start, end):
                if flip_at is not None and pos <= flip_at < pos + len(chunk):
                    b = bytearray(chunk)
                    b[flip_at - pos] ^= 0xFF
                    chunk = bytes(b)
                if budget is not None:
                    if budget <= len(chunk):
                        write(chunk[:budget])
                        self._hard_close()
                        return
                    budget -= len(chunk)
                write(chunk)
                pos += len(chunk)
        if extra:
            self.wfile.write(gen_bytes(extra, "extra"))
        if fault.get("absurd_length"):
            self._hard_close()

    def _paced(self, rate: float):
        """A writer that keeps this connection at `rate` bytes/s: bytes sent ≤ rate × elapsed, in steps of
        1/20 s, so parallel connections each get the full rate (as from a CDN edge)."""
        t0, sent = time.monotonic(), 0
        step = max(1, min(64 * 1024, int(rate / 20)))

        def write(data: bytes) -> None:
            nonlocal sent
            for i in range(0, len(data), step):
                piece = data[i:i + step]
                self.wfile.write(piece)
                sent += len(piece)
                ahead = sent / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        return write

    def _hard_close(self):
        """Drop the connection mid-body (what a flaky CDN does)."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # ---- control -----------------------------------------------------------------------------------
    def _control(self, segs: list[str]):
        hub = self.hub
        op = segs[0] if segs else ""
        if op == "stats" and self.command == "GET":
            return self._json(200, hub.stats())
        if op == "info":
            return self._json(200, hub.info())
        if self.command != "POST":
            return self._error(405, None, "control endpoints take POST")
        data = json.loads(self.body or b"{}")
        if op == "reset":
            hub.reset()
            if data.get("faults"):
                hub.clear_faults()
            return self._json(200, {"ok": True})
        if op == "faults":
            if data.get("clear"):
                hub.clear_faults()
            else:
                hub.set_fault(data["repo"], data["path"], data.get("kind", "model"), **data.get("fault", {}))
            return self._json(200, {"ok": True})
        if op == "commit":
            sha = hub.commit(data["repo"], data["files"], data.get("branch", "main"), data.get("kind", "model"))
            return self._json(200, {"sha": sha})
        if op == "add_repo":
            r = hub.add_repo(data["repo"], data["files"], data.get("kind", "model"), data.get("branches"),
                             data.get("gated", False), data.get("token"))
            return self._json(200, {"branches": r.branches})
        self._error(404, None, f"unknown control endpoint {op}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repos", help="JSON file: list of {repo, kind?, files: {path: spec}, branches?, gated?}")
    ap.add_argument("--repo", default="bench/big", help="repo that --serve-file/--gen-files go to")
    ap.add_argument("--kind", default="model")
    ap.add_argument("--serve-file", action="append", default=[], metavar="DISK[=REPO_PATH]",
                    help="serve a file from disk as an LFS file of --repo")
    ap.add_argument("--gen-files", type=int, default=0, metavar="N",
                    help="add N generated files to --repo (half small/regular, half LFS of --gen-size bytes)")
    ap.add_argument("--gen-size", type=int, default=64 * 1024)
    ap.add_argument("--page-size", type=int, default=3)
    ap.add_argument("--no-xet", action="store_true", help="do not send Xet metadata (for a direct client)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--cdn-port", type=int, default=0)
    ap.add_argument("--info-file", help="also write the JSON line with the ports here")
    ap.add_argument("--cdn-rate", type=float, default=0, metavar="BYTES_PER_SEC",
                    help="cap every connection's file-body bandwidth (a WAN link, a busy CDN edge)")
    args = ap.parse_args(argv)

    hub = FakeHub(page_size=args.page_size, xet=not args.no_xet, hub_port=args.port, cdn_port=args.cdn_port)
    hub.cdn_rate = args.cdn_rate or None
    files: dict = {}
    for spec in args.serve_file:
        disk, _, rpath = spec.partition("=")
        files[rpath or os.path.basename(disk)] = {"file": disk}
    for i in range(args.gen_files):
        if i % 2 == 0:
            files[f"config-{i}.json"] = json.dumps({"n": i, "pad": "x" * 200})
        else:
            files[f"shard-{i}.safetensors"] = {"size": args.gen_size, "seed": f"gen-{i}"}
    if files:
        hub.add_repo(args.repo, files, kind=args.kind)
    if args.repos:
        with open(args.repos) as f:
            for r in json.load(f):
                hub.add_repo(r["repo"], r["files"], r.get("kind", "model"), r.get("branches"),
                             r.get("gated", False), r.get("token"))
    hub.start()
    line = json.dumps(hub.info())
    if args.info_file:
        with open(args.info_file + ".tmp", "w") as f:
            f.write(line + "\n")
        os.replace(args.info_file + ".tmp", args.info_file)
    print(line, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        hub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
