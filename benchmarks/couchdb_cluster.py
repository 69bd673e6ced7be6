"""A private Apache CouchDB (a 3-node cluster, or one node), for the cluster tests and benchmarks.

The cluster tests stop and restart nodes, so they never use the server
under test (``COUCHDB_URL``): :class:`PrivateCluster` starts its own
cluster from ``../shared/couchdb`` (or ``$COUCHDB_DIST``) on free loopback
ports, in its own folder, and stops it afterwards.  Without that folder (a
user's fresh clone) the tests that need it are skipped, saying why.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parent.parent  # the checkout
DIST = Path(os.environ.get("COUCHDB_DIST") or ROOT.parent / "shared" / "couchdb")

#: Ports tried for the first node (the others use P+1, P+2; epmd P+10000).
PORTS = range(17100, 17900, 7)


def available() -> Optional[str]:
    """None if a cluster can be started here, else why not."""
    if not (DIST / "start").exists():
        return "needs Apache CouchDB in %s (../shared/couchdb); a fresh clone has none" % DIST
    return None


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class PrivateCluster:
    """CouchDB nodes on 127.0.0.1:P..P+N-1 (three by default), admin ``admin``/``admin``.

    ``PrivateCluster(nodes=1)`` is a single node (no cluster set-up), in the
    same kind of private folder on free ports.
    """

    def __init__(self, nodes: int = 3) -> None:
        if not 1 <= nodes <= 9:
            raise ValueError("nodes must be 1 to 9, not %r" % (nodes,))
        self.nodes = nodes
        self.port = next(p for p in PORTS if all(_free(q) for q in [*range(p, p + nodes), p + 10000]))
        self.dir = Path(tempfile.mkdtemp(prefix="corduroy-cluster-")) / "couchdb"
        self.urls: List[str] = []

    def _run(self, tool: str, *args: str) -> str:
        done = subprocess.run(["bash", str(DIST / tool), "--port", str(self.port), "--dir", str(self.dir), *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError("couchdb %s failed (%d): %s" % (tool, done.returncode, done.stderr[-2000:]))
        return done.stdout

    def start(self) -> "PrivateCluster":
        """Start the cluster (or the nodes of it that are stopped) and wait until it is ready."""
        lines = [line for line in self._run("start", "--nodes", str(self.nodes)).splitlines()
                 if line.startswith("http")]
        # start prints node 2, node 3, ..., then node 1.
        self.urls = [lines[-1]] + lines[:-1]
        return self

    def stop(self) -> None:
        """Stop every node (and the cluster's epmd), then delete the cluster's folder."""
        try:
            self._run("stop")
        finally:
            shutil.rmtree(self.dir.parent, ignore_errors=True)

    def url(self, i: int) -> str:
        """Node ``i``'s URL (0-based), with credentials."""
        return self.urls[i]

    def base(self, i: int) -> str:
        """Node ``i``'s URL without credentials."""
        return "http://127.0.0.1:%d" % (self.port + i)

    def pid(self, i: int) -> int:
        """The pid of node ``i``'s Erlang VM (0-based)."""
        folder = self.dir if self.nodes == 1 else self.dir / ("node%d" % (i + 1))
        return int((folder / "couchdb.pid").read_text().strip())

    def kill(self, i: int) -> subprocess.Popen:
        """SIGTERM node ``i`` now, without waiting (returns the waiter process; ``.wait()`` it)."""
        pid = self.pid(i)
        os.kill(pid, signal.SIGTERM)
        # Reap-free wait for the process to be gone and its port closed, in a child process.
        return subprocess.Popen(["bash", "-c", "while kill -0 %d 2>/dev/null; do sleep 0.05; done" % pid])

    def refuses(self, i: int) -> bool:
        """True when node ``i``'s port refuses connections."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            return sock.connect_ex(("127.0.0.1", self.port + i)) != 0

    def wait_refusing(self, i: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.refuses(i):
            if time.monotonic() > deadline:
                raise RuntimeError("node %d still accepts connections" % i)
            time.sleep(0.05)
