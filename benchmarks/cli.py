"""``python -m benchmarks``: run the workloads against a target, every client in its own process.

The run: start (or reach) the target and seed it; for every workload,
concurrency and client, run one cell in a fresh subprocess
(:mod:`benchmarks.worker`); then print the table, and write the JSON of raw
figures and a PNG chart to ``benchmarks/results/`` (``--out`` to change).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence

from .clients import BASELINE, CLIENTS, client_names, missing_packages
from .report import add_ratios, format_table, results_dir, write_chart, write_json
from .targets import Target, TargetUnavailable, make_target, redact
from .workloads import DESCRIPTIONS, WORKLOADS

__all__ = ["main", "build_parser", "resolve_config", "run"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Defaults: (full run on the canned server, full run on a real server, quick run).
DEFAULTS: Dict[str, tuple] = {
    "requests": (20000, 5000, 300),
    "duration": (5.0, 10.0, 5.0),
    "concurrency": ("1,16,64,256", "1,16,64,256", "1,16"),
    "docs": (100000, 10000, 2000),
    "batch": (1000, 1000, 500),
    "bulk_inflight": (4, 4, 2),
    "rows": (1000000, 10000, 20000),
    "changes": (100000, 10000, 5000),
    "changes_batch": (10000, 1000, 1000),
    "mixed": (5000, 2000, 300),
    "mixed_concurrency": (16, 16, 16),
    "hot": (100, 100, 50),
    "rate": (1000.0, 200.0, 200.0),
    "rate_seconds": (5.0, 5.0, 1.0),
    "w6_connections": (64, 64, 16),
}
#: How many distinct documents W1, W5 and W6 read (round robin).
ID_POOL = 1000
#: Clients whose family has no event loop to drive an open-loop rate.
NO_OPEN_LOOP = ("threads", "sequential")


def _csv(text: str) -> List[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark corduroy against raw pycurl and other Python HTTP/CouchDB clients.",
        epilog="Workloads: " + "; ".join("%s %s" % kv for kv in DESCRIPTIONS.items()),
    )
    t = p.add_argument_group("target")
    t.add_argument("--target", choices=("canned", "pouchdb", "couchdb", "url"),
                   help="canned: built-in canned server; pouchdb: the pinned pouchdb-server; couchdb: Apache "
                        "CouchDB 3.4.3 from ../shared/couchdb, started and stopped by the run; url: --url or "
                        "COUCHDB_URL (default: url if one is given, else pouchdb)")
    t.add_argument("--nodes", type=int, choices=(1, 3),
                   help="--target couchdb: a single node (default) or a 3-node cluster (requests go to node 1)")
    t.add_argument("--url", help="a CouchDB to load, e.g. http://admin:pw@127.0.0.1:5984 (implies --target url)")
    t.add_argument("--server-pid", type=int, help="pid of the --url server, to measure its CPU time too")
    w = p.add_argument_group("what to run")
    w.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated, default all: %(default)s")
    w.add_argument("--clients", default=",".join(client_names()),
                   help="comma-separated, default all: %(default)s")
    w.add_argument("--quick", action="store_true", help="a tiny run (seconds), for trying the harness")
    s = p.add_argument_group("sizes (defaults depend on the target and --quick)")
    s.add_argument("--concurrency", help="W1 requests in flight, comma-separated (default 1,16,64,256)")
    s.add_argument("--requests", type=int, help="W1 requests per cell")
    s.add_argument("--duration", type=float, help="W1/W5: stop issuing after this many seconds (0: never)")
    s.add_argument("--docs", type=int, help="W2 documents to insert")
    s.add_argument("--batch", type=int, help="W2 documents per _bulk_docs request")
    s.add_argument("--bulk-inflight", type=int, help="W2 batches in flight")
    s.add_argument("--rows", type=int, help="W3 rows to read")
    s.add_argument("--source", choices=("all_docs", "view"), default="all_docs", help="W3 reads this")
    s.add_argument("--changes", type=int, help="W4 changes to catch up")
    s.add_argument("--changes-batch", type=int, help="W4 limit= per _changes page")
    s.add_argument("--mixed", type=int, help="W5 operations")
    s.add_argument("--mixed-concurrency", type=int, help="W5 operations in flight")
    s.add_argument("--hot", type=int, help="W5 documents the operations hit")
    s.add_argument("--rate", type=float, help="W6 requests per second (open loop)")
    s.add_argument("--rate-seconds", type=float, help="W6 seconds of sending")
    s.add_argument("--w6-connections", type=int, help="W6 connection pool size of every client")
    o = p.add_argument_group("output")
    o.add_argument("--out", help="directory for the JSON and PNG (default benchmarks/results)")
    o.add_argument("--no-chart", action="store_true", help="skip the PNG")
    o.add_argument("--profile", action="store_true",
                   help="cProfile each cell's timed section; print the top 20 and keep the .prof")
    o.add_argument("--py-spy", action="store_true",
                   help="sample each cell's process with py-spy (needs ptrace); print the top 20")
    o.add_argument("--cell-timeout", type=float, default=600.0, help="kill a cell after this many seconds")
    o.add_argument("--strict", action="store_true", help="exit 1 if any cell failed")
    o.add_argument("--list-clients", action="store_true", help="list the clients and whether they are installed")
    return p


def resolve_config(args: argparse.Namespace) -> Dict[str, Any]:
    """Fill the defaults that depend on the target and on --quick; validate the lists."""
    kind = args.target or ("url" if (args.url or os.environ.get("COUCHDB_URL")) else "pouchdb")
    if args.url and kind != "url":
        raise SystemExit("--url goes with --target url")
    if args.nodes is not None and kind != "couchdb":
        raise SystemExit("--nodes goes with --target couchdb")
    column = 2 if args.quick else (0 if kind == "canned" else 1)
    config: Dict[str, Any] = {"target": kind, "quick": bool(args.quick)}
    for name, values in DEFAULTS.items():
        given = getattr(args, name, None)
        config[name] = values[column] if given is None else given
    if args.quick and kind != "canned":
        config["rows"] = args.rows or 2000
        config["changes"] = args.changes or 1000
        config["changes_batch"] = args.changes_batch or 500
    config["concurrency"] = [int(c) for c in _csv(str(config["concurrency"]))]
    if not config["concurrency"] or min(config["concurrency"]) < 1:
        raise SystemExit("--concurrency needs positive integers")
    config["workloads"] = [w.upper() for w in _csv(args.workloads)]
    unknown = [w for w in config["workloads"] if w not in WORKLOADS]
    if unknown:
        raise SystemExit("unknown workload(s) %s (choose from %s)" % (", ".join(unknown), ", ".join(WORKLOADS)))
    config["clients"] = _csv(args.clients)
    unknown = [c for c in config["clients"] if c not in CLIENTS]
    if unknown:
        raise SystemExit("unknown client(s) %s (choose from %s)" % (", ".join(unknown), ", ".join(CLIENTS)))
    for name in ("requests", "docs", "batch", "bulk_inflight", "rows", "changes", "changes_batch", "mixed",
                 "mixed_concurrency", "hot", "w6_connections"):
        if int(config[name]) < 1:
            raise SystemExit("--%s must be at least 1" % name.replace("_", "-"))
    if config["rate"] <= 0 or config["rate_seconds"] <= 0:
        raise SystemExit("--rate and --rate-seconds must be positive")
    config["source"] = args.source
    config["ids"] = min(ID_POOL, max(config["requests"], config["hot"]))
    config["hot"] = min(config["hot"], config["ids"])
    config["url"] = args.url
    config["server_pid"] = args.server_pid
    config["nodes"] = args.nodes or 1
    config["cell_timeout"] = args.cell_timeout
    config["profile"] = bool(args.profile)
    config["py_spy"] = bool(args.py_spy)
    return config


# -- planning ----------------------------------------------------------------
def plan_cells(config: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Every (workload, group, client) cell, in run order; cells not to run carry a status already."""
    cells: List[Dict[str, Any]] = []
    for workload in config["workloads"]:
        if workload == "W1":
            groups = config["concurrency"]
        elif workload == "W2":
            groups = [config["bulk_inflight"]]
        elif workload == "W5":
            groups = [config["mixed_concurrency"]]
        elif workload == "W6":
            groups = [config["w6_connections"]]
        else:
            groups = [1]
        for g_index, group in enumerate(groups):
            for client in config["clients"]:
                info = CLIENTS[client]
                cell: Dict[str, Any] = {"workload": workload, "client": client, "group": group,
                                        "concurrency": 1 if info.family == "sequential" else group}
                if workload == "W6" and info.family in NO_OPEN_LOOP:
                    cell.update(status="n/a", reason="a %s client has no event loop to send at a fixed rate"
                                % info.family)
                elif info.family == "sequential" and g_index > 0:
                    cell.update(status="shared")  # reuses the first group's measurement
                else:
                    missing = missing_packages(client)
                    if missing:
                        cell.update(status="skipped", reason="not installed: %s" % ", ".join(missing))
                cells.append(cell)
    return cells


def cell_spec(config: Dict[str, Any], cell: Dict[str, Any], target: Target, db: str) -> Dict[str, Any]:
    """The JSON a worker gets."""
    workload = cell["workload"]
    conc = cell["concurrency"]
    if workload in ("W1", "W5", "W6"):
        warmup = max(2 * conc, min(200, config["requests"] // 10))
    else:
        warmup = 5
    return {
        "workload": workload, "client": cell["client"], "concurrency": conc,
        "url": target.url, "db": db, "server_pid": target.server_pid,
        "requests": config["mixed"] if workload == "W5" else (
            int(config["rate"] * config["rate_seconds"]) if workload == "W6" else config["requests"]),
        "ids": config["ids"], "warmup": warmup, "hot": config["hot"],
        "docs": config["docs"], "batch": config["batch"],
        "rows": config["rows"], "source": config["source"],
        "changes": config["changes"], "changes_batch": config["changes_batch"],
        "rate": config["rate"], "duration": config["duration"] or None,
        "grace": max(10.0, config["rate_seconds"] * 2),
    }


def _seed_count(config: Dict[str, Any]) -> int:
    need = config["ids"]
    if "W3" in config["workloads"]:
        need = max(need, config["rows"])
    if "W4" in config["workloads"]:
        need = max(need, config["changes"])
    return need


# -- running a cell ------------------------------------------------------------
def run_cell(spec: Dict[str, Any], workdir: str, timeout: float, py_spy: Optional[str] = None) -> Dict[str, Any]:
    """Run one worker subprocess; return its result (an error result if it failed)."""
    stamp = "%s-%s-c%d" % (spec["workload"], spec["client"], spec["concurrency"])
    spec_path = os.path.join(workdir, "spec-%s.json" % stamp)
    spec = dict(spec, result=os.path.join(workdir, "result-%s.json" % stamp))
    fd = os.open(spec_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(spec, f)
    cmd = [sys.executable, "-m", "benchmarks.worker", spec_path]
    if py_spy:
        cmd = [py_spy, "record", "--nonblocking", "--format", "raw", "--rate", "250",
               "-o", spec["py_spy_out"], "--"] + cmd
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        _out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        return {"status": "error", "reason": "timed out after %gs" % timeout}
    except BaseException:  # Ctrl-C: the worker runs in its own session, so it must be stopped here
        _kill_group(proc)
        proc.wait()
        raise
    finally:
        try:
            os.unlink(spec_path)
        except OSError:
            pass
    try:
        with open(spec["result"]) as f:
            result = json.load(f)
        os.unlink(spec["result"])
    except (OSError, ValueError):
        tail = (err or b"").decode("utf-8", "replace").strip().splitlines()[-6:]
        return {"status": "error", "reason": "worker exited %s: %s" % (proc.returncode, " | ".join(tail))}
    if result.get("status") == "ok" and err and b"Traceback" in err:
        result["stderr"] = err.decode("utf-8", "replace")[-2000:]
    return result


def _kill_group(proc: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        proc.kill()


# -- meta ----------------------------------------------------------------------
def collect_meta(target: Target, config: Dict[str, Any]) -> Dict[str, Any]:
    """Python, libcurl, reactor backend, CPUs, package versions, the target."""
    meta: Dict[str, Any] = {
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "argv": [redact(a) if "://" in a else a for a in sys.argv[1:]],
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "loadavg_start": _loadavg(),
        "quick": config["quick"],
        "target": target.describe(),
        "baseline": BASELINE,
    }
    try:
        import pycurl

        meta["libcurl"] = pycurl.version
    except ImportError:
        meta["libcurl"] = None
    try:
        import loop

        meta["reactor_backend"] = os.environ.get("LOOP_BACKEND") or loop.default_backend()
    except ImportError:
        meta["reactor_backend"] = None
    from importlib import metadata

    versions: Dict[str, Optional[str]] = {}
    for dist in ("corduroy", "pycurl", "simplejson", "uvloop", "aiohttp", "httpx", "aiocouch", "requests",
                 "CouchDB", "tornado"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    meta["packages"] = versions
    return meta


def _loadavg() -> Optional[List[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# -- the run ---------------------------------------------------------------------
def _progress(total: int) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, file=sys.stderr, disable=not sys.stderr.isatty(), unit="cell", leave=False)


def run(config: Dict[str, Any], out_dir: str, chart: bool = True) -> Dict[str, Any]:
    """Run everything ``config`` asks for; return ``{"meta", "config", "results", "json", "png"}``."""
    cells = plan_cells(config)
    target = make_target(config["target"], config.get("url"), config.get("server_pid"), config.get("nodes", 1))
    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="corduroy-bench-")
    py_spy = None
    if config.get("py_spy"):
        py_spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
        if not os.path.exists(py_spy):
            raise SystemExit("--py-spy: py-spy is not installed (pip install py-spy)")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    results: List[Dict[str, Any]] = []
    profiles: List[str] = []
    try:
        seed = _seed_count(config)
        target.start(seed)
        meta = collect_meta(target, config)
        to_run = [c for c in cells if "status" not in c]
        bar = _progress(len(to_run))
        if to_run:
            target.prepare(seed, view=("W3" in config["workloads"] and config["source"] == "view"))
        measured: Dict[tuple, Dict[str, Any]] = {}
        for cell in cells:
            if "status" in cell:
                continue
            if bar is not None:
                bar.set_description("%s %s c=%d" % (cell["workload"], cell["client"], cell["concurrency"]))
            db = target.fresh_db() if cell["workload"] == "W2" else target.db
            spec = cell_spec(config, cell, target, db)
            label = "%s-%s-%s-c%d" % (stamp, cell["workload"], cell["client"], cell["concurrency"])
            if config.get("profile"):
                spec["profile"] = os.path.join(out_dir, "profile-%s.prof" % label)
            if py_spy:
                spec["py_spy_out"] = os.path.join(out_dir, "pyspy-%s.txt" % label)
            try:
                result = run_cell(spec, workdir, config["cell_timeout"], py_spy)
            finally:
                if cell["workload"] == "W2":
                    target.drop_db(db)
            result.update(client=cell["client"], workload=cell["workload"], concurrency=cell["concurrency"],
                          group=cell["group"])
            if result.get("status") == "ok":
                if spec.get("profile") and os.path.exists(spec["profile"] + ".txt"):
                    profiles.append(spec["profile"] + ".txt")
                if py_spy and os.path.exists(spec["py_spy_out"]):
                    profiles.append(spec["py_spy_out"])
            measured[(cell["workload"], cell["client"])] = result
            results.append(result)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        for cell in cells:  # the rows that were not run get their status (or a shared measurement)
            if cell.get("status") == "shared":
                first = measured.get((cell["workload"], cell["client"]))
                if first is not None:
                    results.append(dict(first, group=cell["group"], shared=True))
            elif "status" in cell:
                results.append(dict(cell))
    finally:
        target.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    add_ratios(results)
    meta["loadavg_end"] = _loadavg()
    meta["elapsed_s"] = round(time.monotonic() - started, 1)
    public_config = {k: v for k, v in config.items() if k != "url"}
    public_config["url"] = redact(config["url"]) if config.get("url") else None
    base = os.path.join(out_dir, "bench-%s-%s" % (stamp, config["target"]))
    write_json(base + ".json", meta, public_config, results)
    png = write_chart(base + ".png", results, meta) if chart else None
    return {"meta": meta, "config": public_config, "results": results, "json": base + ".json", "png": png,
            "profiles": profiles}


def _py_spy_top(path: str, count: int = 20) -> str:
    """Top ``count`` functions from a py-spy ``--format raw`` file: own samples, then inclusive."""
    import re

    strip_line = re.compile(r":\d+\)$")
    own: Dict[str, int] = {}
    inclusive: Dict[str, int] = {}
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, n = line.rstrip("\n").rpartition(" ")
            try:
                samples = int(n)
            except ValueError:
                continue
            total += samples
            frames = [strip_line.sub(")", frame) for frame in stack.split(";") if frame]
            if not frames:
                continue
            own[frames[-1]] = own.get(frames[-1], 0) + samples
            for frame in set(frames):
                inclusive[frame] = inclusive.get(frame, 0) + samples
    lines = ["py-spy samples of the whole worker process (start-up and warm-up included), %d in all" % total]
    for title, table in (("own time", own), ("inclusive time", inclusive)):
        lines.append("")
        lines.append("%7s  %5s  %s" % ("samples", "%", "function (%s)" % title))
        for name, samples in sorted(table.items(), key=lambda kv: -kv[1])[:count]:
            lines.append("%7d  %5.1f  %s" % (samples, 100.0 * samples / max(1, total), name))
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m benchmarks``."""
    args = build_parser().parse_args(argv)
    if args.list_clients:
        for name, info in CLIENTS.items():
            missing = missing_packages(name)
            state = "missing " + ", ".join(missing) if missing else "installed"
            print("%-18s %-10s %-22s %s" % (name, info.family, state, info.summary))
        return 0
    config = resolve_config(args)
    if config["target"] == "couchdb":
        from .couchdb_cluster import available

        why = available()
        if why is not None:
            print("benchmarks: --target couchdb %s" % why, file=sys.stderr)
            return 3
    out_dir = results_dir(args.out)
    try:
        outcome = run(config, out_dir, chart=not args.no_chart)
    except TargetUnavailable as exc:
        print("benchmarks: --target %s: %s" % (config["target"], exc), file=sys.stderr)
        return 3
    print(format_table(outcome["results"], outcome["meta"]))
    print()
    print("raw figures: %s" % outcome["json"])
    if outcome["png"]:
        print("chart:       %s" % outcome["png"])
    for path in outcome["profiles"]:
        print()
        print("== profile %s" % path)
        if path.endswith(".txt") and "pyspy-" in os.path.basename(path):
            print(_py_spy_top(path))
        else:
            with open(path) as f:
                print(f.read().rstrip())
    failed = [r for r in outcome["results"] if r.get("status") == "error"]
    if failed:
        print("\n%d cell(s) failed; see the notes column and %s" % (len(failed), outcome["json"]))
    return 1 if (failed and args.strict) else 0
