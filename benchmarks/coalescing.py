"""Coalescing against a real Apache CouchDB: what the server spends per document, and what a client wins.

    .venv/bin/python -m benchmarks.coalescing [--nodes 1|3 | --url URL --server-pid PID]
        [--parts endpoints,gets,saves] [--in-flight 16,64,256] [--docs 1000] [--gets 4000] [--saves 4000]

Starts a private Apache CouchDB 3.4.3 from ``../shared/couchdb``
(:mod:`benchmarks.couchdb_cluster`; exit status 3 without it) unless
``--url`` names one, writes ``--docs`` documents of about 330 bytes, and
measures three things, each in this one process, one cell after the other:

``endpoints``
    the two bulk reads a coalesced ``get(id)`` batch can become,
    ``POST _all_docs?include_docs=true`` with ``keys`` and ``POST _bulk_get``
    (no ``rev``), and the plain ``GET /db/id`` for reference, at several
    batch sizes (``--batch-sizes``) with 1 to N batches in flight
    (``--parallel``): documents a second, the server's CPU time per
    document (its process's ``/proc`` CPU time over the cell), the client's,
    and the median time a batch takes;
``gets``
    ``--gets`` random ``db.get(id)`` over the documents, ``--in-flight`` at a
    time (each callback issues the next), through ``Database(url)`` and
    through ``Database(url, coalesce=True)`` (and every variant of
    ``--variants``, e.g. ``all_docs`` to force the reads through
    ``_all_docs``);
``saves``
    ``--saves`` single ``db.save(doc)`` of new documents (with ids), the same
    way, uncoalesced and coalesced, each cell into a fresh database.

With ``--rounds N`` every mode of ``gets`` and ``saves`` runs N times,
alternating, and the tables show the medians.  It prints one table per
part, with the ratios coalesced / uncoalesced, and stops the server it
started (also on failure or Ctrl-C).
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import sys
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .fixtures import make_doc
from .stats import process_cpu

__all__ = ["main", "run_closed", "Cell"]

Job = Callable[[Callable[[Optional[BaseException]], None]], None]


class Cell:
    """Figures of one measured cell: wall and CPU seconds (client, server), units done, latencies."""

    def __init__(self, label: str, units: int) -> None:
        self.label = label
        self.units = units
        self.wall = 0.0
        self.cpu = 0.0
        self.server_cpu: Optional[float] = None
        self.latencies: List[float] = []
        self.errors = 0
        self.first_error: Optional[str] = None

    @property
    def rate(self) -> float:
        """Units (documents) a second."""
        return self.units / self.wall if self.wall > 0 else 0.0

    def per_unit_us(self, seconds: Optional[float]) -> Optional[float]:
        """``seconds`` per unit, in microseconds."""
        return None if seconds is None or not self.units else seconds / self.units * 1e6

    def median_ms(self) -> float:
        return statistics.median(self.latencies) * 1000 if self.latencies else 0.0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_closed(reactor: Any, jobs: Sequence[Job], in_flight: int, cell: Cell, server_pid: Optional[int]) -> Cell:
    """Run ``jobs`` on ``reactor`` with ``in_flight`` at a time (each completion starts the next)."""
    it = iter(jobs)
    pending = [0]
    lat = cell.latencies
    clock = time.perf_counter

    def start_next() -> None:
        job = next(it, None)
        if job is None:
            if pending[0] == 0:
                reactor.stop()
            return
        pending[0] += 1
        t0 = clock()

        def done(exc: Optional[BaseException]) -> None:
            lat.append(clock() - t0)
            pending[0] -= 1
            if exc is not None:
                cell.errors += 1
                if cell.first_error is None:
                    cell.first_error = "%s: %s" % (type(exc).__name__, exc)
            start_next()

        job(done)

    server0 = process_cpu(server_pid)
    cpu0, t0 = _cpu(), clock()
    for _ in range(in_flight):
        start_next()
    reactor.run()
    cell.wall, cell.cpu = clock() - t0, _cpu() - cpu0
    server1 = process_cpu(server_pid)
    if server0 is not None and server1 is not None:
        cell.server_cpu = server1 - server0
    return cell


# -- jobs ------------------------------------------------------------------
def get_job(db: Any, doc_id: str) -> Job:
    """``db.get(doc_id)``, checked."""
    def job(done: Callable[[Optional[BaseException]], None]) -> None:
        def got(data: Any, status: Any) -> None:
            exc = status.exception
            if exc is None and data.get("_id") != doc_id:
                exc = ValueError("got %r for %r" % (data.get("_id"), doc_id))
            done(exc)
        db.get(doc_id, callback=got)
    return job


def bulk_read_job(db: Any, endpoint: str, keys: List[str]) -> Job:
    """One bulk read of ``keys`` through ``_all_docs`` (keys, include_docs) or ``_bulk_get``, checked."""
    body: Dict[str, Any]
    if endpoint == "all_docs":
        path, params, body = "/_all_docs", {"include_docs": True}, {"keys": keys}
    else:
        path, params, body = "/_bulk_get", {"revs": False}, {"docs": [{"id": k} for k in keys]}

    def job(done: Callable[[Optional[BaseException]], None]) -> None:
        def got(data: Any, status: Any) -> None:
            exc = status.exception
            if exc is None:
                rows = data["rows"] if endpoint == "all_docs" else data["results"]
                if len(rows) != len(keys):
                    exc = ValueError("%d rows for %d keys" % (len(rows), len(keys)))
            done(exc)
        db._request("POST", path, params=params, json=body, plain=True).add_callback(got)
    return job


def save_job(db: Any, doc: Dict[str, Any]) -> Job:
    """``db.save(doc)`` of a new document, checked."""
    def job(done: Callable[[Optional[BaseException]], None]) -> None:
        def saved(data: Any, status: Any) -> None:
            exc = status.exception
            if exc is None and not doc.get("_rev"):
                exc = ValueError("no _rev set on %r" % doc.get("_id"))
            done(exc)
        db.save(doc, callback=saved)
    return job


# -- the parts ---------------------------------------------------------------
def _variant(name: str) -> Any:
    """Set the coalescer's read path / batch cap for variant ``name``; return what to restore."""
    from corduroy import coalesce

    saved = (getattr(coalesce, "READS", None), coalesce.MAX_BATCH)
    if name.startswith("all_docs") or name.startswith("bulk_get"):
        if not hasattr(coalesce, "READS"):
            raise SystemExit("--variants %s: this corduroy has no coalesce.READS" % name)
        coalesce.READS = "_all_docs" if name.startswith("all_docs") else "_bulk_get"
    if "/" in name:
        coalesce.MAX_BATCH = int(name.split("/", 1)[1])
    return saved


def _restore(saved: Any) -> None:
    from corduroy import coalesce

    if saved[0] is not None:
        coalesce.READS = saved[0]
    coalesce.MAX_BATCH = saved[1]


def part_endpoints(url: str, db_name: str, ids: List[str], args: argparse.Namespace,
                   server_pid: Optional[int]) -> List[Tuple[str, int, int, Cell]]:
    """The bulk reads on their own: per-document server cost by endpoint, batch size and batches in flight."""
    import loop
    from corduroy import Database

    reactor = loop.get_reactor()
    db = Database(url + "/" + db_name)
    rng = random.Random(11)
    out: List[Tuple[str, int, int, Cell]] = []
    for endpoint in ("get", "all_docs", "bulk_get"):
        for size in (args.batch_sizes if endpoint != "get" else [1]):
            for parallel in args.parallel if endpoint != "get" else sorted(set(args.parallel) | {16, 64}):
                batches = max(parallel * 4, args.endpoint_docs // size)
                jobs: List[Job] = []
                for _ in range(batches):
                    keys = rng.sample(ids, size) if size <= len(ids) else [rng.choice(ids) for _ in range(size)]
                    jobs.append(get_job(db, keys[0]) if endpoint == "get" else bulk_read_job(db, endpoint, keys))
                run_closed(reactor, jobs[:parallel], parallel, Cell("warm", parallel * size), server_pid)
                cell = run_closed(reactor, jobs, parallel, Cell(endpoint, batches * size), server_pid)
                out.append((endpoint, size, parallel, cell))
                _progress("endpoints %s batch %d x%d: %.0f docs/s" % (endpoint, size, parallel, cell.rate))
    return out


def part_gets(url: str, db_name: str, ids: List[str], args: argparse.Namespace,
              server_pid: Optional[int]) -> List[Tuple[str, int, Cell]]:
    """``--gets`` random ``db.get(id)`` at each in-flight count, uncoalesced, coalesced and the variants."""
    import loop
    from corduroy import Database

    reactor = loop.get_reactor()
    rng = random.Random(7)
    sequence = [rng.choice(ids) for _ in range(args.gets)]
    out: List[Tuple[str, int, Cell]] = []
    modes = list(args.modes) + list(args.variants)
    for in_flight in args.in_flight:
        reactor.curl.set_limits(in_flight)
        for mode in modes * args.rounds:
            saved = _variant(mode) if mode not in ("uncoalesced", "coalesced") else None
            profiler = None
            try:
                db = Database(url + "/" + db_name, coalesce=mode != "uncoalesced")
                warm = [get_job(db, doc_id) for doc_id in sequence[:max(200, 2 * in_flight)]]
                run_closed(reactor, warm, in_flight, Cell("warm", len(warm)), server_pid)
                jobs = [get_job(db, doc_id) for doc_id in sequence]
                if args.cprofile:
                    import cProfile

                    profiler = cProfile.Profile(time.process_time)  # CPU time, not wall time
                    profiler.enable()
                cell = run_closed(reactor, jobs, in_flight, Cell(mode, len(jobs)), server_pid)
            finally:
                if profiler is not None:
                    profiler.disable()
                if saved is not None:
                    _restore(saved)
            out.append((mode, in_flight, cell))
            if profiler is not None:
                print_profile(profiler, "%s, %d in flight" % (mode, in_flight), len(jobs), args.cprofile)
            _progress("gets %s %d in flight: %.0f GET/s" % (mode, in_flight, cell.rate))
    return out


def part_saves(couch: Any, url: str, args: argparse.Namespace,
               server_pid: Optional[int]) -> List[Tuple[str, int, Cell]]:
    """``--saves`` single saves of new documents at each in-flight count, uncoalesced and coalesced."""
    import loop
    from corduroy import Database

    reactor = loop.get_reactor()
    out: List[Tuple[str, int, Cell]] = []
    for in_flight in args.in_flight:
        reactor.curl.set_limits(in_flight)
        for mode in ("uncoalesced", "coalesced") * args.rounds:
            name = "corduroy_coalesce_saves_%s" % uuid.uuid4().hex[:8]
            couch.create(name)
            try:
                db = Database(url + "/" + name, coalesce=mode == "coalesced")
                warm = [save_job(db, dict(make_doc(i, with_id=False), _id="warm%06d" % i))
                        for i in range(max(100, 2 * in_flight))]
                run_closed(reactor, warm, in_flight, Cell("warm", len(warm)), server_pid)
                jobs = [save_job(db, dict(make_doc(i, with_id=False), _id="s%06d" % i)) for i in range(args.saves)]
                cell = run_closed(reactor, jobs, in_flight, Cell(mode, len(jobs)), server_pid)
            finally:
                couch.delete(name)
            out.append((mode, in_flight, cell))
            _progress("saves %s %d in flight: %.0f saves/s" % (mode, in_flight, cell.rate))
    return out


# -- printing ----------------------------------------------------------------
def print_profile(profiler: Any, title: str, units: int, top: int) -> None:
    """The ``top`` functions by own CPU time, in microseconds per GET, and the total by package."""
    import pstats

    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in stats.values())
    by_package: Dict[str, float] = {}
    rows = []
    for (filename, line, name), (_cc, calls, own, _cum, _callers) in stats.items():
        if filename == "~":
            where = name  # a C function or method: "<method 'perform' of 'pycurl.CurlMulti' objects>"
            package = ("C: pycurl/libcurl" if "pycurl" in name else "C: epoll" if "epoll" in name
                       else "C: other built-ins")
        else:
            parts = filename.replace("\\", "/").split("/")
            package = next((p for p in ("loop", "corduroy", "benchmarks") if p in parts[-3:-1]), "stdlib/other")
            where = "%s:%d(%s)" % ("/".join(parts[-2:]), line, name)
        by_package[package] = by_package.get(package, 0.0) + own
        rows.append((own, calls, where))
    rows.sort(reverse=True)
    print()
    print("cProfile (CPU time) of the gets, %s: %.0f us per GET under the profiler" % (title, total / units * 1e6))
    print("  %8s %7s %9s  %s" % ("us/GET", "share", "calls/GET", "function (own time)"))
    for own, calls, where in rows[:top]:
        print("  %8.1f %6.1f%% %9.2f  %s" % (own / units * 1e6, 100 * own / total, calls / units, where))
    print("  by package:", ", ".join("%s %.0f%%" % (k, 100 * v / total)
                                     for k, v in sorted(by_package.items(), key=lambda kv: -kv[1])))


def _us(value: Optional[float]) -> str:
    return "-" if value is None else "%.0f" % value


def _error_note(cell: Cell) -> str:
    return "  %d ERRORS, first: %s" % (cell.errors, cell.first_error) if cell.errors else ""


def print_endpoints(rows: List[Tuple[str, int, int, Cell]]) -> None:
    print("Bulk reads on their own (random ids; server and client CPU per document, median time per request)")
    print("  %-9s %6s %9s %10s %13s %13s %11s" % ("endpoint", "batch", "in flight", "docs/s", "server us/doc",
                                                  "client us/doc", "ms/request"))
    for endpoint, size, parallel, cell in rows:
        print("  %-9s %6d %9d %10.0f %13s %13s %11.2f%s" % (
            "GET /id" if endpoint == "get" else endpoint, size, parallel, cell.rate,
            _us(cell.per_unit_us(cell.server_cpu)), _us(cell.per_unit_us(cell.cpu)), cell.median_ms(),
            _error_note(cell)))


def _median(values: Sequence[Optional[float]]) -> Optional[float]:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def print_modes(title: str, unit: str, rows: List[Tuple[str, int, Cell]]) -> None:
    """One line per (mode, in flight): the median over the rounds of each figure."""
    print(title)
    print("  %-16s %9s %7s %10s %8s %13s %13s %8s %8s" % (
        "client", "in flight", "rounds", unit + "/s", "ratio", "client us/op", "server us/op", "p50 ms", "p99 ms"))
    cells: Dict[Tuple[str, int], List[Cell]] = {}
    for mode, flight, cell in rows:
        cells.setdefault((mode, flight), []).append(cell)
    base = {flight: _median([c.rate for c in group]) for (mode, flight), group in cells.items()
            if mode == "uncoalesced"}
    for (mode, flight), group in cells.items():
        rate = _median([c.rate for c in group]) or 0.0
        p99s: List[Optional[float]] = []
        for c in group:
            lat = sorted(c.latencies)
            p99s.append(lat[max(0, int(len(lat) * 0.99) - 1)] * 1000 if lat else None)
        base_rate = base.get(flight)
        ratio = rate / base_rate if base_rate else 0.0
        errors = [c for c in group if c.errors]
        print("  %-16s %9d %7d %10.0f %8s %13s %13s %8.2f %8.2f%s" % (
            mode, flight, len(group), rate, "%.2fx" % ratio if ratio else "-",
            _us(_median([c.per_unit_us(c.cpu) for c in group])),
            _us(_median([c.per_unit_us(c.server_cpu) for c in group])),
            _median([c.median_ms() for c in group]) or 0.0, _median(p99s) or 0.0,
            _error_note(errors[0]) if errors else ""))


def _progress(text: str) -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\r\x1b[K" + text)
        sys.stderr.flush()


def _csv_ints(text: str) -> List[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.coalescing", description=__doc__.split("\n")[0])
    p.add_argument("--nodes", type=int, choices=(1, 3), default=1, help="start a single node (default) or 3")
    p.add_argument("--url", help="use this CouchDB instead of starting one")
    p.add_argument("--server-pid", type=int, help="with --url: the server's pid, to measure its CPU time")
    p.add_argument("--parts", default="endpoints,gets,saves", help="what to run (default %(default)s)")
    p.add_argument("--docs", type=int, default=1000, help="documents written, then read (default %(default)s)")
    p.add_argument("--gets", type=int, default=4000, help="random GETs per cell (default %(default)s)")
    p.add_argument("--saves", type=int, default=4000, help="saves per cell (default %(default)s)")
    p.add_argument("--in-flight", type=_csv_ints, default=[16, 64, 256], help="default 16,64,256")
    p.add_argument("--batch-sizes", type=_csv_ints, default=[16, 64, 256], help="endpoints: default 16,64,256")
    p.add_argument("--parallel", type=_csv_ints, default=[1, 4], help="endpoints: batches in flight, default 1,4")
    p.add_argument("--endpoint-docs", type=int, default=4096, help="endpoints: documents per cell")
    p.add_argument("--rounds", type=int, default=1,
                   help="gets/saves: run every mode this many times, alternating; print the medians")
    p.add_argument("--modes", default="uncoalesced,coalesced", help="gets: the modes (default %(default)s)")
    p.add_argument("--cprofile", type=int, default=0, metavar="N",
                   help="gets: profile each cell (cProfile, CPU time) and print its top N functions")
    p.add_argument("--variants", default="",
                   help="gets: more coalesced variants, e.g. all_docs,bulk_get,bulk_get/16 (read path/batch cap)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m benchmarks.coalescing``."""
    args = build_parser().parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    args.modes = [m for m in args.modes.split(",") if m]
    if set(args.modes) - {"uncoalesced", "coalesced"}:
        raise SystemExit("--modes: uncoalesced and/or coalesced")
    parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = set(parts) - {"endpoints", "gets", "saves"}
    if unknown:
        raise SystemExit("unknown part(s): %s" % ", ".join(sorted(unknown)))
    from .couchdb_cluster import PrivateCluster, available

    cluster = None
    url, server_pid = args.url, args.server_pid
    if url is None:
        why = available()
        if why is not None:
            print("benchmarks.coalescing: %s" % why, file=sys.stderr)
            return 3
        cluster = PrivateCluster(nodes=args.nodes)
    try:
        if cluster is not None:
            cluster.start()
            url, server_pid = cluster.url(0), cluster.pid(0)
        from corduroy import Couch

        url = url.rstrip("/")
        couch = Couch(url)
        db_name = "corduroy_coalesce_%s" % uuid.uuid4().hex[:8]
        db = couch.create(db_name)
        try:
            ids = ["doc%09d" % i for i in range(args.docs)]
            for start in range(0, len(ids), 500):
                db.save([dict(make_doc(i, with_id=False), _id=ids[i])
                         for i in range(start, min(len(ids), start + 500))])
            welcome = couch.info()
            server = "Apache CouchDB" if "couchdb" in welcome else "pouchdb-server" if "express-pouchdb" in welcome \
                else "server"
            shape = "%d-node cluster" % args.nodes if cluster is not None and args.nodes > 1 else "single node"
            print("%s %s (%s), %d docs of ~%d bytes; CPython %s, %d CPUs shared by client and server" % (
                server, welcome.get("version"), shape if cluster is not None else "--url", args.docs,
                len(_encoded(make_doc(1))), sys.version.split()[0], os.cpu_count() or 0))
            if "endpoints" in parts:
                rows = part_endpoints(url, db_name, ids, args, server_pid)
                print()
                print_endpoints(rows)
            if "gets" in parts:
                gets = part_gets(url, db_name, ids, args, server_pid)
                print()
                print_modes("%d random db.get(id) over %d docs, each callback issuing the next"
                            % (args.gets, args.docs), "GET", gets)
            if "saves" in parts:
                saves = part_saves(couch, url, args, server_pid)
                print()
                print_modes("%d db.save(doc) of new documents, each callback issuing the next" % args.saves,
                            "save", saves)
        finally:
            couch.delete(db_name)
    finally:
        if cluster is not None:
            cluster.stop()
        _progress("")
    return 0


def _encoded(doc: Dict[str, Any]) -> bytes:
    import json

    return json.dumps(doc, separators=(",", ":")).encode()


if __name__ == "__main__":
    sys.exit(main())
