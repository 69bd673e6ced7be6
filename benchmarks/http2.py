"""``python -m benchmarks.http2``: does HTTP/2 multiplexing help corduroy behind an HTTP/2 proxy?

CouchDB itself speaks HTTP/1.1; HTTP/2 comes from a proxy in front of it.
This script puts nginx in front of a CouchDB-shaped server with two
listeners -- plain HTTP/1.1, and h2c (HTTP/2 with prior knowledge) -- and
runs the W1 workload (GET a document by id, C in flight) through each:

``corduroy-callback`` on the HTTP/1.1 port
    one connection per request in flight (the usual pool);
``corduroy-h2`` on the h2c port
    ``Database(url, http2=True)``: every request multiplexed on one
    connection (``CURLPIPE_MULTIPLEX``, ``PIPEWAIT``);
``pycurl`` on the HTTP/1.1 port
    the raw-pycurl reference, for scale.

Every cell runs in its own process (:func:`benchmarks.cli.run_cell`), after
a warm-up.  nginx's ``stub_status`` counts the connections each cell opened.
The upstream is the pinned pouchdb-server (``--upstream pouchdb``, the
default) or the canned server (``--upstream canned``: cheap, so the client
and the proxy are what is measured).

nginx is taken from Debian: if no ``nginx`` binary is found, this script runs
``apt-get update`` and ``apt-get install -y nginx`` (as root; ``--no-install``
to refuse).  It is never needed by ``make test``.  nginx runs from a
temporary directory, bound to 127.0.0.1, as one process
(``master_process off``), and is stopped at the end.

Examples::

    python -m benchmarks.http2
    python -m benchmarks.http2 --upstream canned --concurrency 1,16,64,256 --requests 20000
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any, Dict, List, Optional, Sequence

from .cli import run_cell
from .report import results_dir
from .targets import CannedTarget, PouchTarget, Target

__all__ = ["main", "Nginx", "ensure_nginx"]

HOST = "127.0.0.1"
#: (label, client, which nginx port) for every concurrency.
CELLS = (("HTTP/1.1", "corduroy-callback", "h1"), ("h2c", "corduroy-h2", "h2"), ("HTTP/1.1", "pycurl", "h1"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def ensure_nginx(install: bool = True) -> str:
    """The path of an ``nginx`` binary; installs Debian's package if there is none and ``install``."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if found:
        return found
    if not install:
        raise SystemExit("nginx is not installed (apt-get install nginx), and --no-install was given")
    if os.geteuid() != 0:
        raise SystemExit("nginx is not installed; run as root to have it installed, or: sudo apt-get install nginx")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    sys.stderr.write("installing nginx from Debian (apt-get update, apt-get install -y nginx)...\n")
    subprocess.run(["apt-get", "update"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "nginx"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(found):
        raise SystemExit("apt-get installed nginx but no nginx binary was found")
    return found


_CONF = """\
worker_processes 1;
master_process off;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    http2_max_concurrent_streams 512;
    client_max_body_size 0;
    upstream couch {{
        server {upstream};
        keepalive 512;
    }}
    server {{
        listen {host}:{h1};
        location / {{ proxy_pass http://couch; proxy_http_version 1.1; proxy_set_header Connection ""; }}
    }}
    server {{
        listen {host}:{h2} http2;
        location / {{ proxy_pass http://couch; proxy_http_version 1.1; proxy_set_header Connection ""; }}
    }}
    server {{
        listen {host}:{status};
        location = /status {{ stub_status; }}
    }}
}}
"""


class Nginx:
    """nginx in front of ``upstream`` (``host:port``): ``h1_url``, ``h2_url`` (h2c), ``accepted()``."""

    def __init__(self, binary: str, upstream: str) -> None:
        self.binary = binary
        self.upstream = upstream
        self.dir = tempfile.mkdtemp(prefix="corduroy-nginx-")
        self.ports = {"h1": _free_port(), "h2": _free_port(), "status": _free_port()}
        self.process: Optional[subprocess.Popen] = None

    @property
    def h1_url(self) -> str:
        return "http://%s:%d" % (HOST, self.ports["h1"])

    @property
    def h2_url(self) -> str:
        return "http://%s:%d" % (HOST, self.ports["h2"])

    def version(self) -> str:
        out = subprocess.run([self.binary, "-v"], capture_output=True, text=True)
        return (out.stderr or out.stdout).strip()

    def start(self) -> "Nginx":
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(_CONF.format(dir=self.dir, host=HOST, upstream=self.upstream, **self.ports))
        cmd = [self.binary, "-p", self.dir, "-c", conf, "-e", os.path.join(self.dir, "error.log")]
        self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while True:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode("utf-8", "replace") if self.process.stderr else ""
                raise RuntimeError("nginx exited at once: %s" % err.strip()[-500:])
            try:
                for port in self.ports.values():
                    socket.create_connection((HOST, port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("nginx did not start listening") from None
                time.sleep(0.05)

    def accepted(self) -> int:
        """Connections nginx has accepted so far (its stub_status ``accepts``; this query included)."""
        url = "http://%s:%d/status" % (HOST, self.ports["status"])
        with urllib.request.urlopen(url, timeout=10) as resp:
            lines = resp.read().decode().splitlines()
        return int(lines[2].split()[0])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful stop
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)


def _spec(client: str, url: str, db: str, concurrency: int, requests: int) -> Dict[str, Any]:
    return {
        "workload": "W1", "client": client, "concurrency": concurrency, "url": url, "db": db,
        "server_pid": None, "requests": requests, "ids": min(1000, requests),
        "warmup": max(2 * concurrency, min(200, requests // 10)), "hot": 100,
        "docs": 0, "batch": 1, "rows": 0, "source": "all_docs", "changes": 0, "changes_batch": 1,
        "rate": 1.0, "duration": None, "grace": 10.0,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.http2",
                                description="W1 through nginx: HTTP/1.1 vs HTTP/2 (h2c, multiplexed).")
    p.add_argument("--upstream", choices=("pouchdb", "canned"), default="pouchdb",
                   help="what nginx proxies to (default %(default)s)")
    p.add_argument("--concurrency", default="1,16,64,256", help="requests in flight, comma-separated")
    p.add_argument("--requests", type=int, default=5000, help="W1 requests per cell (default %(default)s)")
    p.add_argument("--rounds", type=int, default=1, help="run every cell this many times (median kept)")
    p.add_argument("--no-install", action="store_true", help="never apt-get install nginx")
    p.add_argument("--out", help="directory for the JSON (default benchmarks/results)")
    return p


def _median(values: List[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m benchmarks.http2``."""
    args = build_parser().parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    binary = ensure_nginx(install=not args.no_install)
    target: Target = PouchTarget() if args.upstream == "pouchdb" else CannedTarget()
    nginx: Optional[Nginx] = None
    workdir = tempfile.mkdtemp(prefix="corduroy-bench-h2-")
    rows: List[Dict[str, Any]] = []
    try:
        target.start(1000)
        target.prepare(min(1000, args.requests), view=False)
        upstream = target.url.split("://", 1)[1].rstrip("/")
        nginx = Nginx(binary, upstream).start()
        version = nginx.version()
        for concurrency in levels:
            for label, client, port in CELLS:
                url = nginx.h1_url if port == "h1" else nginx.h2_url
                runs = []
                for _ in range(args.rounds):
                    before = nginx.accepted()
                    result = run_cell(_spec(client, url, target.db, concurrency, args.requests), workdir, 600.0)
                    result["connections"] = nginx.accepted() - before - 1  # less our own status query
                    runs.append(result)
                ok = [r for r in runs if r.get("status") == "ok"]
                row: Dict[str, Any] = {"concurrency": concurrency, "protocol": label, "client": client}
                if not ok:
                    row.update(status="error", reason=runs[-1].get("reason"))
                else:
                    row.update(
                        status="ok", rate=_median([r["rate"] for r in ok]),
                        cpu_per_1k=_median([r["cpu_per_1k"] for r in ok]),
                        p50_ms=_median([r["latency_ms"]["p50"] for r in ok]),
                        p99_ms=_median([r["latency_ms"]["p99"] for r in ok]),
                        connections=max(r["connections"] for r in ok), rounds=len(ok),
                    )
                rows.append(row)
                sys.stderr.write("  done: %s c=%d %s\n" % (client, concurrency, row.get("status")))
    finally:
        if nginx is not None:
            nginx.stop()
        target.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    base = {r["concurrency"]: r for r in rows if r["client"] == "corduroy-callback" and r["status"] == "ok"}
    lines = ["W1 through %s -> %s, %d requests per cell, median of %d round(s); load average %s" % (
        version, args.upstream, args.requests, args.rounds, [round(x, 2) for x in os.getloadavg()]),
        "  %-18s %-9s %6s %10s %9s %8s %8s %6s %7s" % (
            "client", "protocol", "flight", "rate/s", "CPU s/1k", "p50 ms", "p99 ms", "conns", "rate x")]
    for r in rows:
        if r["status"] != "ok":
            lines.append("  %-18s %-9s %6d  ERROR: %s" % (r["client"], r["protocol"], r["concurrency"],
                                                          str(r.get("reason"))[:100]))
            continue
        b = base.get(r["concurrency"])
        ratio = r["rate"] / b["rate"] if b else None
        lines.append("  %-18s %-9s %6d %10s %9.3f %8.2f %8.2f %6d %7s" % (
            r["client"], r["protocol"], r["concurrency"], "{:,.0f}".format(r["rate"]), r["cpu_per_1k"],
            r["p50_ms"], r["p99_ms"], r["connections"], "%.2f" % ratio if ratio else "-"))
    print("\n".join(lines))
    out_dir = results_dir(args.out)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(out_dir, "http2-%s-%s.json" % (stamp, args.upstream))
    with open(path, "w") as f:
        json.dump({"nginx": version, "upstream": args.upstream, "requests": args.requests, "rounds": args.rounds,
                   "rows": rows}, f, indent=1)
    print("\nraw figures: %s" % path)
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
