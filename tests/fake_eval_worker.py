"""A stand-in evaluation worker for process-level validator tests: deterministic losses, no torch."""

import hashlib
import json
import sys
import time
from pathlib import Path

from sn29_growth.atomic import atomic_write_json

request = json.loads(Path(sys.argv[1]).read_text())
if request.get("dataset") == "hang":
    time.sleep(3600)
out = {}
for m in request["models"]:
    h = int(hashlib.sha256(m["path"].encode()).hexdigest(), 16)
    out[m["key"]] = {
        "rejection": None,
        "note": None,
        "content_hash": None,
        "losses": [100.0 + ((h >> i) % 7) for i in range(40)],
    }
atomic_write_json(sys.argv[2], {"models": out, "sample_ids": [str(i) for i in range(40)], "dataset": "fake"})
