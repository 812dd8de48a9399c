#!/usr/bin/env python3
"""Runs one `huggingface_hub` call and prints its outcome as one JSON line.

Run in a subprocess by the tests: `huggingface_hub` reads `HF_ENDPOINT` and `HF_HOME` at import time, so each
call gets a fresh interpreter with the environment the test chose. Usage: `python hf_client.py '<json op>'`.
Output: `{"ok": true, ...}` or `{"ok": false, "type": "...", "mro": [...], "message": "..."}`.
"""

import hashlib
import json
import os
import sys
import traceback


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def run(op: dict) -> dict:
    import huggingface_hub as hf

    kind = op.get("repo_type")
    if op["op"] == "download":
        path = hf.hf_hub_download(op["repo"], op["filename"], repo_type=kind, revision=op.get("revision"))
        return {"path": path, "sha256": sha256_file(path), "size": os.path.getsize(path),
                "real": os.path.realpath(path)}
    if op["op"] == "snapshot":
        root = hf.snapshot_download(op["repo"], repo_type=kind, revision=op.get("revision"),
                                    allow_patterns=op.get("allow_patterns"))
        files = {}
        for dirpath, _, names in os.walk(root):
            for n in names:
                full = os.path.join(dirpath, n)
                files[os.path.relpath(full, root)] = sha256_file(full)
        return {"root": root, "files": files}
    if op["op"] == "fs_read":
        fs = hf.HfFileSystem()
        with fs.open(op["path"], "rb", block_size=op.get("block_size", 4096)) as f:
            f.seek(op["offset"])
            data = f.read(op["length"])
        return {"sha256": hashlib.sha256(data).hexdigest(), "length": len(data)}
    if op["op"] == "list_files":
        return {"files": sorted(hf.list_repo_files(op["repo"], repo_type=kind, revision=op.get("revision")))}
    if op["op"] == "model_info":
        info = hf.HfApi().repo_info(op["repo"], repo_type=kind, revision=op.get("revision"))
        return {"id": info.id, "sha": info.sha}
    if op["op"] == "transformers":
        from transformers import AutoConfig, AutoTokenizer
        config = AutoConfig.from_pretrained(op["repo"], revision=op.get("revision"))
        tokenizer = AutoTokenizer.from_pretrained(op["repo"], revision=op.get("revision"))
        return {"model_type": config.model_type, "ids": tokenizer(op["text"])["input_ids"]}
    raise ValueError(f"unknown op {op['op']}")


def main() -> int:
    op = json.loads(sys.argv[1])
    try:
        out = {"ok": True, **run(op)}
    except Exception as e:  # reported to the test, which decides
        out = {"ok": False, "type": type(e).__name__, "mro": [c.__name__ for c in type(e).__mro__],
               "message": str(e), "cause": repr(e.__cause__) if e.__cause__ else None,
               "traceback": traceback.format_exc()[-3000:]}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
