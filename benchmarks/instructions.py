"""Instructions per GET (W1) or per document saved (W2), counted by callgrind: corduroy against raw pycurl.

    .venv/bin/python -m benchmarks.instructions [--clients corduroy-callback,pycurl] [--concurrency 64]
    .venv/bin/python -m benchmarks.instructions --workload W2 [--concurrency 4] [--batch 1000]

Time on a shared 2-core machine wanders; the instructions a request costs
do not.  Each client runs W1 (GET by id, ``--concurrency`` in flight)
against the canned server (:mod:`benchmarks.canned`, in its own process, so
its work is not counted) twice under ``valgrind --tool=callgrind``, with
``--small`` and ``--large`` requests; the difference divided by the
difference in requests is what one GET costs, start-up, imports and
warm-up cancelled out.  With ``--workload W2`` the units are documents
written through ``_bulk_docs`` (``--batch`` a request, ``--concurrency``
requests in flight; ``--small``/``--large`` count documents).  Needs
``valgrind`` (``apt-get install valgrind``).
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


def _spec(client: str, url: str, requests: int, concurrency: int, result: str,
          workload: str = "W1", batch: int = 1000) -> Dict[str, Any]:
    """A worker spec: ``requests`` GETs (W1), or ``requests`` documents in batches of ``batch`` (W2)."""
    bulk = workload == "W2"
    return {
        "workload": workload, "client": client, "concurrency": concurrency, "url": url, "db": "bench",
        "server_pid": None, "requests": 0 if bulk else requests, "ids": 1000,
        "warmup": 20 if bulk else max(2 * concurrency, 200),
        "hot": False, "docs": requests if bulk else 0, "batch": batch if bulk else 0, "rows": 0,
        "source": "view", "changes": 0, "changes_batch": 0, "rate": 0, "duration": None, "grace": 10.0,
        "result": result,
    }


def _callgrind(argv: List[str], workdir: str) -> "subprocess.CompletedProcess[str]":
    """Run ``python argv...`` under callgrind (its output file in ``workdir``)."""
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=%s" % os.path.join(workdir, "cg.out"),
           sys.executable] + argv
    env = dict(os.environ, PYTHONHASHSEED="0")
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, timeout=1800)


def _collected(done: "subprocess.CompletedProcess[str]", what: str) -> int:
    """The instruction count callgrind printed at the end of ``done``."""
    found = _COLLECTED.findall(done.stderr)
    if not found:
        raise RuntimeError("no callgrind summary for %s: %s" % (what, done.stderr[-1500:]))
    return int(found[-1])


def count(client: str, url: str, requests: int, concurrency: int, workdir: str,
          workload: str = "W1", batch: int = 1000) -> int:
    """Instructions callgrind counts for one worker process running ``requests`` GETs (W1) or document saves (W2)."""
    spec_path = os.path.join(workdir, "spec-%s-%d.json" % (client, requests))
    result = os.path.join(workdir, "result-%s-%d.json" % (client, requests))
    with open(spec_path, "w") as f:
        json.dump(_spec(client, url, requests, concurrency, result, workload, batch), f)
    done = _callgrind(["-m", "benchmarks.worker", spec_path], workdir)
    with open(result) as f:
        outcome = json.load(f)
    if done.returncode != 0 or outcome.get("status", "ok") not in ("ok", None) or outcome.get("errors"):
        raise RuntimeError("%s: worker failed (%s): %s" % (client, done.returncode, done.stderr[-1500:]))
    return _collected(done, client)


_PREPARE_ONLY = ("import json, sys\n"
                 "from benchmarks.workloads import make_workload\n"
                 "workload = make_workload(json.load(open(sys.argv[1])))\n"
                 "getattr(workload, 'prepare', lambda: None)()\n")


def count_preparation(url: str, requests: int, concurrency: int, workdir: str,
                      workload: str = "W1", batch: int = 1000) -> int:
    """Instructions callgrind counts for a process that only prepares the workload (W2 builds its documents).

    The worker prepares before it measures, but callgrind counts the whole
    process: this is what to take away.
    """
    spec_path = os.path.join(workdir, "spec-prepare-%d.json" % requests)
    with open(spec_path, "w") as f:
        json.dump(_spec("none", url, requests, concurrency, os.devnull, workload, batch), f)
    done = _callgrind(["-c", _PREPARE_ONLY, spec_path], workdir)
    if done.returncode != 0:
        raise RuntimeError("preparing %s failed (%s): %s" % (workload, done.returncode, done.stderr[-1500:]))
    return _collected(done, "preparing " + workload)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions", description=__doc__.split("\n")[0])
    parser.add_argument("--clients", default="corduroy-callback,corduroy-relax,corduroy-await,pycurl")
    parser.add_argument("--workload", choices=("W1", "W2"), default="W1")
    parser.add_argument("--concurrency", type=int, help="in flight (default: 64 for W1, 4 for W2)")
    parser.add_argument("--batch", type=int, default=1000, help="W2: documents per _bulk_docs request")
    parser.add_argument("--small", type=int, help="GETs or documents in the small run (default: 1000; W2 20000)")
    parser.add_argument("--large", type=int, help="... in the large run (default: 3000; W2 60000)")
    args = parser.parse_args(argv)
    bulk = args.workload == "W2"
    concurrency = args.concurrency or (4 if bulk else 64)
    small = args.small or (20000 if bulk else 1000)
    large = args.large or (60000 if bulk else 3000)
    if large <= small:
        parser.error("--large must be more than --small")
    if shutil.which("valgrind") is None:
        print("benchmarks.instructions: needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 3
    clients = [c for c in args.clients.split(",") if c]
    per_unit: Dict[str, float] = {}
    with CannedServer(docs=1000) as server, tempfile.TemporaryDirectory() as workdir:
        # What building the workload costs a unit (W2's documents), counted in every run: taken away.
        prepared = (count_preparation(server.url, large, concurrency, workdir, args.workload, args.batch)
                    - count_preparation(server.url, small, concurrency, workdir, args.workload, args.batch))
        for client in clients:
            few = count(client, server.url, small, concurrency, workdir, args.workload, args.batch)
            many = count(client, server.url, large, concurrency, workdir, args.workload, args.batch)
            per_unit[client] = (many - few - prepared) / float(large - small)
    if bulk:
        print("W2 bulk insert, %d documents a request, %d in flight, canned server: instructions per document "
              "(callgrind, %d vs %d documents)" % (args.batch, concurrency, large, small))
    else:
        print("W1 GET by id, %d in flight, canned server: instructions per GET (callgrind, %d vs %d GETs)"
              % (concurrency, large, small))
    print("  (building the workload, %.0f a unit, taken away)" % (prepared / float(large - small)))
    base = per_unit.get("pycurl")
    for client, n in per_unit.items():
        ratio = " (%.2fx raw pycurl)" % (n / base) if base else ""
        print("  %-18s %9.0f%s" % (client, n, ratio))
    return 0


if __name__ == "__main__":
    sys.exit(main())
