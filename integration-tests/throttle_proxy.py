"""A throttling TCP proxy (asyncio) for the tests: each connection's upstream → client bytes are capped at
`rate` bytes per second (bytes sent ≤ rate × elapsed), the way a WAN link or a busy CDN edge caps one TCP
stream, so parallel connections scale. It also records each request's line and `Range` header (HTTP/1.1
requests are small and arrive whole), so tests can see which ranges were asked for.

    proxy = ThrottleProxy(("127.0.0.1", registry.port), rate=128 * 1024).start()
    ... proxy.url ... proxy.requests ... proxy.stop()
"""

from __future__ import annotations

import asyncio
import re
import threading
import time

_REQUEST = re.compile(rb"^(GET|HEAD|POST|PUT|PATCH|DELETE) (\S+) HTTP/1\.[01]\r\n(.*?)\r\n\r\n", re.S | re.M)
_RANGE = re.compile(rb"^range:\s*(\S+)\s*$", re.I | re.M)


class ThrottleProxy:
    def __init__(self, upstream: tuple[str, int], rate: float):
        self.upstream = upstream
        self.rate = rate
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._server = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="throttle-proxy", daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ThrottleProxy":
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop)
        self._server = fut.result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close():
            self._server.close()
            for t in asyncio.all_tasks():  # connections still open (keep-alive clients)
                if t is not asyncio.current_task():
                    t.cancel()
        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def ranges(self, contains: str) -> list[str | None]:
        """The `Range` header (or None) of every GET whose path contains `contains`."""
        with self._lock:
            return [r["range"] for r in self.requests if r["method"] == "GET" and contains in r["path"]]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._requests(reader, up_w), self._throttled(up_r, writer), return_exceptions=True)
        for w in (writer, up_w):
            w.close()

    async def _requests(self, reader, up_w) -> None:
        """Client → upstream, unthrottled; request heads are recorded."""
        while data := await reader.read(64 * 1024):
            for m in _REQUEST.finditer(data):
                rng = _RANGE.search(m.group(3))
                with self._lock:
                    self.requests.append({"method": m.group(1).decode(), "path": m.group(2).decode(),
                                          "range": rng.group(1).decode() if rng else None, "t": time.time()})
            up_w.write(data)
            await up_w.drain()
        up_w.write_eof()

    async def _throttled(self, up_r, writer) -> None:
        """Upstream → client at `rate` bytes/s."""
        t0, sent = time.monotonic(), 0
        step = max(1, min(64 * 1024, int(self.rate / 20)))
        while data := await up_r.read(step):
            writer.write(data)
            await writer.drain()
            sent += len(data)
            ahead = sent / self.rate - (time.monotonic() - t0)
            if ahead > 0:
                await asyncio.sleep(ahead)
            elif ahead < -0.05:
                # An idle keep-alive connection earns no credit: a link does not bank unused bandwidth.
                t0, sent = time.monotonic(), 0
        writer.close()
