"""The corduroy benchmark harness: ``python -m benchmarks --help``.

It measures corduroy (in each calling style) side by side with raw pycurl,
aiohttp, httpx, aiocouch, requests, couchdb-python and Tornado's curl client,
on six workloads (W1 GET by id at several concurrencies, W2 bulk insert, W3
a big view read with memory, W4 a changes catch-up, W5 mixed reads and
conflicting updates, W6 open-loop latency), against the built-in canned
server (``--target canned``), the pinned pouchdb-server, Apache CouchDB
3.4.3 from ``../shared/couchdb`` started and stopped by the run
(``--target couchdb [--nodes 3]``), or any CouchDB (``--url``).  Every
client runs in its own process, so its CPU time is its own.  Results: a
table on stdout, JSON and a PNG in ``benchmarks/results/``.
``python -m benchmarks.coalescing`` measures coalescing against the real
CouchDB (:mod:`~benchmarks.coalescing`).

Modules: :mod:`~benchmarks.cli` (the command), :mod:`~benchmarks.worker`
(one cell in a subprocess), :mod:`~benchmarks.drivers` (closed and open
loop), :mod:`~benchmarks.workloads`, :mod:`~benchmarks.clients`,
:mod:`~benchmarks.canned` (the canned server), :mod:`~benchmarks.targets`,
:mod:`~benchmarks.report`, :mod:`~benchmarks.stats`, :mod:`~benchmarks.fixtures`,
:mod:`~benchmarks.couchdb_cluster` (a private CouchDB, one node or a cluster).
"""

__all__ = ["main"]


def main(argv=None):  # type: ignore[no-untyped-def]
    """Run the harness with ``argv`` (as ``python -m benchmarks`` would); returns the exit code."""
    from .cli import main as cli_main

    return cli_main(argv)
