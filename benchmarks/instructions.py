"""Instructions per GET (W1), counted by callgrind: corduroy's calling styles against raw pycurl.

    .venv/bin/python -m benchmarks.instructions [--clients corduroy-callback,pycurl] [--concurrency 64]

Time on a shared 2-core machine wanders; the instructions a request costs
do not.  Each client runs W1 (GET by id, ``--concurrency`` in flight)
against the canned server (:mod:`benchmarks.canned`, in its own process, so
its work is not counted) twice under ``valgrind --tool=callgrind``, with
``--small`` and ``--large`` requests; the difference divided by the
difference in requests is what one GET costs, start-up, imports and
warm-up cancelled out.  Needs ``valgrind`` (``apt-get install valgrind``).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Optional

from .canned import CannedServer

_COLLECTED = re.compile(r"Collected : (\d+)")


def _spec(client: str, url: str, requests: int, concurrency: int, result: str) -> Dict[str, Any]:
    return {
        "workload": "W1", "client": client, "concurrency": concurrency, "url": url, "db": "bench",
        "server_pid": None, "requests": requests, "ids": 1000, "warmup": max(2 * concurrency, 200),
        "hot": False, "docs": 0, "batch": 0, "rows": 0, "source": "view", "changes": 0,
        "changes_batch": 0, "rate": 0, "duration": None, "grace": 10.0, "result": result,
    }


def count(client: str, url: str, requests: int, concurrency: int, workdir: str) -> int:
    """Instructions callgrind counts for one worker process running ``requests`` GETs."""
    spec_path = os.path.join(workdir, "spec-%s-%d.json" % (client, requests))
    result = os.path.join(workdir, "result-%s-%d.json" % (client, requests))
    with open(spec_path, "w") as f:
        json.dump(_spec(client, url, requests, concurrency, result), f)
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=%s" % os.path.join(workdir, "cg.out"),
           sys.executable, "-m", "benchmarks.worker", spec_path]
    env = dict(os.environ, PYTHONHASHSEED="0")
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, timeout=1800)
    with open(result) as f:
        outcome = json.load(f)
    if done.returncode != 0 or outcome.get("status", "ok") not in ("ok", None) or outcome.get("errors"):
        raise RuntimeError("%s: worker failed (%s): %s" % (client, done.returncode, done.stderr[-1500:]))
    found = _COLLECTED.findall(done.stderr)
    if not found:
        raise RuntimeError("no callgrind summary for %s: %s" % (client, done.stderr[-1500:]))
    return int(found[-1])


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions", description=__doc__.split("\n")[0])
    parser.add_argument("--clients", default="corduroy-callback,corduroy-relax,corduroy-await,pycurl")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=3000)
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("benchmarks.instructions: needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 3
    clients = [c for c in args.clients.split(",") if c]
    per_get: Dict[str, float] = {}
    with CannedServer(docs=1000) as server, tempfile.TemporaryDirectory() as workdir:
        for client in clients:
            small = count(client, server.url, args.small, args.concurrency, workdir)
            large = count(client, server.url, args.large, args.concurrency, workdir)
            per_get[client] = (large - small) / float(args.large - args.small)
    print("W1 GET by id, %d in flight, canned server: instructions per GET (callgrind, %d vs %d GETs)"
          % (args.concurrency, args.large, args.small))
    base = per_get.get("pycurl")
    for client, n in per_get.items():
        ratio = " (%.2fx raw pycurl)" % (n / base) if base else ""
        print("  %-18s %9.0f%s" % (client, n, ratio))
    return 0


if __name__ == "__main__":
    sys.exit(main())
