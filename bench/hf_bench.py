#!/usr/bin/env python3
"""Helper for bench/hf-bench.sh: timed huggingface_hub calls, fake-Hub counters, RSS sampling, parallel ranges.

    hf_bench.py download REPO FILE      -> {"seconds": s, "sha256": h, "size": n}  (HF_ENDPOINT/HF_HOME from env)
    hf_bench.py snapshot REPO           -> {"seconds": s, "files": n}
    hf_bench.py reset HUB_URL | stats HUB_URL
    hf_bench.py rss PID OUT_FILE        -> samples VmRSS every 0.1 s until PID exits or OUT_FILE.stop appears;
                                           writes {"peak_rss_kb": …, "vmhwm_kb": …}
    hf_bench.py ranges URL SIZE N       -> N parallel HTTP Range streams over [0, SIZE); {"seconds": s, "bytes": n}
"""

import hashlib
import json
import os
import sys
import threading
import time
import urllib.request


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 << 20):
            h.update(chunk)
    return h.hexdigest()


def status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def route_counts(requests) -> dict:
    """Requests grouped as 'hub GET revision', 'hub HEAD resolve', 'cdn GET blob', …"""
    out: dict = {}
    for q in requests:
        segs = q["path"].split("/")
        if q["listener"] != "hub":
            kind = "blob"
        elif "resolve" in segs:
            kind = "resolve"
        else:
            kind = next((s for s in ("revision", "tree", "paths-info") if s in segs), "info" if segs[1:2] == ["api"]
                        else "other")
        k = f"{q['listener']} {q['method']} {kind}"
        out[k] = out.get(k, 0) + 1
    return dict(sorted(out.items()))


def main() -> int:
    cmd = sys.argv[1]
    if cmd == "download":
        import huggingface_hub as hf
        t0 = time.perf_counter()
        path = hf.hf_hub_download(sys.argv[2], sys.argv[3])
        secs = time.perf_counter() - t0
        print(json.dumps({"seconds": secs, "sha256": sha256_file(path), "size": os.path.getsize(path)}))
    elif cmd == "snapshot":
        import huggingface_hub as hf
        t0 = time.perf_counter()
        root = hf.snapshot_download(sys.argv[2])
        secs = time.perf_counter() - t0
        n = sum(len(files) for _, _, files in os.walk(root))
        print(json.dumps({"seconds": secs, "files": n}))
    elif cmd in ("reset", "stats"):
        url = sys.argv[2].rstrip("/") + "/_test/" + cmd
        req = urllib.request.Request(url, data=b"{}" if cmd == "reset" else None,
                                     method="POST" if cmd == "reset" else "GET")
        with urllib.request.urlopen(req, timeout=10) as r:
            data = json.loads(r.read())
        if cmd == "stats":
            data = {"total": data["total"], "by_listener": {
                l: sum(1 for q in data["requests"] if q["listener"] == l) for l in ("hub", "cdn")},
                "by_route": route_counts(data["requests"])}
        print(json.dumps(data))
    elif cmd == "rss":
        pid, out = int(sys.argv[2]), sys.argv[3]
        peak = 0
        while os.path.exists(f"/proc/{pid}") and not os.path.exists(out + ".stop"):
            try:
                peak = max(peak, status_kb(pid, "VmRSS"))
                hwm = status_kb(pid, "VmHWM")
            except OSError:
                break
            with open(out + ".tmp", "w") as f:
                json.dump({"peak_rss_kb": peak, "vmhwm_kb": hwm}, f)
            os.replace(out + ".tmp", out)
            time.sleep(0.1)
    elif cmd == "ranges":
        url, size, n = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        step = (size + n - 1) // n
        got = [0] * n
        errors = []

        def stream(i):
            a, b = i * step, min(size, (i + 1) * step) - 1
            req = urllib.request.Request(url, headers={"Range": f"bytes={a}-{b}", "Accept-Encoding": "identity"})
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    if r.status != 206:
                        errors.append(f"stream {i}: status {r.status}")
                    while chunk := r.read(1 << 20):
                        got[i] += len(chunk)
                if got[i] != b - a + 1:
                    errors.append(f"stream {i}: {got[i]} bytes, wanted {b - a + 1}")
            except Exception as e:  # reported, the run is then invalid
                errors.append(f"stream {i}: {e}")

        threads = [threading.Thread(target=stream, args=(i,)) for i in range(n)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(json.dumps({"seconds": time.perf_counter() - t0, "bytes": sum(got), "errors": errors}))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
