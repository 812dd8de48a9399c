"""A small HTTP CONNECT proxy for the egress tests (what a corporate egress proxy does for HTTPS): each CONNECT
opens a tunnel to the named host:port and is recorded, so a test can show that traffic went through the proxy.
Plain-HTTP (absolute-form) requests are forwarded too and recorded the same way.

    proxy = ConnectProxy().start()   # proxy.url == "http://127.0.0.1:PORT"
    ... proxy.tunnels ...            # ["127.0.0.1:443", ...] in order
    proxy.stop()
"""

from __future__ import annotations

import socket
import threading
import urllib.parse


class ConnectProxy:
    def __init__(self):
        self.tunnels: list[str] = []  # CONNECT targets, host:port
        self.forwarded: list[str] = []  # absolute-form request URLs
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._stop = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ConnectProxy":
        threading.Thread(target=self._accept, name="connect-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop = True
        try:
            self._sock.close()
        except OSError:
            pass

    def tunnels_to(self, hostport: str) -> int:
        with self._lock:
            return sum(1 for t in self.tunnels if t == hostport)

    def _accept(self) -> None:
        while not self._stop:
            try:
                c, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c: socket.socket) -> None:
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = c.recv(4096)
                if not chunk:
                    return
                head += chunk
                if len(head) > 65536:
                    return
            line, _, rest = head.partition(b"\r\n")
            method, target, _ = line.decode("latin-1").split(" ", 2)
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                with self._lock:
                    self.tunnels.append(target)
                try:
                    up = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
                except OSError:
                    c.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                    return
                c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                early = head.split(b"\r\n\r\n", 1)[1]
                if early:
                    up.sendall(early)
            else:
                u = urllib.parse.urlsplit(target)
                with self._lock:
                    self.forwarded.append(target)
                up = socket.create_connection((u.hostname, u.port or 80), timeout=10)
                path = (u.path or "/") + (f"?{u.query}" if u.query else "")
                up.sendall(f"{method} {path} ".encode() + line.split(b" ", 2)[2] + b"\r\n" + rest)
            self._pipe(c, up)
        except (OSError, ValueError):
            pass
        finally:
            c.close()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        def copy(src, dst):
            try:
                while chunk := src.recv(65536):
                    dst.sendall(chunk)
            except OSError:
                pass
            finally:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
        t = threading.Thread(target=copy, args=(b, a), daemon=True)
        t.start()
        copy(a, b)
        t.join(timeout=60)
        b.close()
