"""Routed vs unrouted single-document GETs on a real 3-node CouchDB cluster.

    .venv/bin/python -m benchmarks.cluster [--docs 1000] [--gets 4000] [--in-flight 64] [--rounds 2]

Starts a private 3-node Apache CouchDB 3.4.3 cluster from ``../shared/couchdb``
(:mod:`benchmarks.couchdb_cluster`), creates a database with ``q=8, n=1``
(each document on exactly one node, so a request that reaches another node
costs the coordinator a hop), writes ``--docs`` documents of about 330 bytes,
then reads ``--gets`` random ones with ``--in-flight`` requests in flight,
through one ``Couch([node1, node2, node3])`` client with shard-aware routing
and through one with ``routing=False`` (least in flight over all nodes),
alternately, ``--rounds`` times each.  Prints GET/s and the median and 99th
percentile latency of each; the cluster is stopped at the end.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from typing import Any, Dict, List

from benchmarks.couchdb_cluster import PrivateCluster, available
from corduroy import Couch, relax


def run_gets(couch: Couch, db_name: str, ids: List[str], in_flight: int) -> Dict[str, float]:
    """Read ``ids`` with ``in_flight`` requests in flight; GET/s and latencies (ms)."""
    db = couch.database(db_name)
    latencies: List[float] = []
    queue = list(ids)
    clock = time.perf_counter

    def worker() -> Any:
        while queue:
            doc_id = queue.pop()
            started = clock()
            yield db.get(doc_id)
            latencies.append(clock() - started)

    @relax
    def all_workers() -> Any:
        yield [worker() for _ in range(in_flight)]

    started = time.perf_counter()
    all_workers()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"gets_per_s": len(ids) / elapsed, "median_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000}


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster", description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--gets", type=int, default=4000)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    why = available()
    if why is not None:
        print("benchmarks.cluster: %s" % why, file=sys.stderr)
        return 3
    cluster = PrivateCluster().start()
    try:
        routed = Couch(cluster.urls)
        unrouted = Couch(cluster.urls, routing=False)
        name = "bench_cluster"
        routed.create(name, q=8, n=1)
        db = routed.database(name)
        body = "x" * 280
        ids = ["doc-%06d" % i for i in range(args.docs)]
        for start in range(0, len(ids), 500):
            db.save([{"_id": i, "body": body} for i in ids[start:start + 500]])
        routed.cluster.load_map(name)
        rng = random.Random(7)
        gets = [rng.choice(ids) for _ in range(args.gets)]
        run_gets(routed, name, gets[:200], args.in_flight)  # warm up both clients' connections
        run_gets(unrouted, name, gets[:200], args.in_flight)
        results: Dict[str, List[Dict[str, float]]] = {"routed": [], "unrouted": []}
        for _ in range(args.rounds):
            results["routed"].append(run_gets(routed, name, gets, args.in_flight))
            results["unrouted"].append(run_gets(unrouted, name, gets, args.in_flight))
        print("3-node CouchDB 3.4.3 cluster, q=8 n=1, %d docs, %d random GETs, %d in flight, %d rounds (median)"
              % (args.docs, args.gets, args.in_flight, args.rounds))
        print("%-9s %10s %11s %9s" % ("client", "GET/s", "median ms", "p99 ms"))
        for label, rows in results.items():
            print("%-9s %10.0f %11.2f %9.2f" % (
                label, statistics.median(r["gets_per_s"] for r in rows),
                statistics.median(r["median_ms"] for r in rows), statistics.median(r["p99_ms"] for r in rows)))
        ratio = (statistics.median(r["gets_per_s"] for r in results["routed"])
                 / statistics.median(r["gets_per_s"] for r in results["unrouted"]))
        print("routed / unrouted throughput: %.2fx" % ratio)
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
