"""Where the requests go: the canned server, the pinned pouchdb-server, a private Apache CouchDB, or any URL.

A target starts (or reaches) its server, creates and seeds the benchmark
database, hands out fresh databases for W2, and removes everything it
created when the run ends.  Set-up uses plain :mod:`urllib`, never a client
under test.  Databases are named ``corduroy_bench_<hex>`` so a run never
touches a database it did not create.
"""
from __future__ import annotations

import base64
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from typing import Any, Dict, List, Optional, Tuple

from .fixtures import DESIGN_DOC, VIEW_PATH, make_doc, split_url

__all__ = ["Target", "CannedTarget", "PouchTarget", "CouchDBTarget", "UrlTarget", "TargetUnavailable",
           "make_target", "redact"]

SEED_BATCH = 1000


def redact(url: str) -> str:
    """``url`` without its password (for printing and the JSON file)."""
    base, user, _password = split_url(url)
    if user is None:
        return base
    scheme, _, rest = base.partition("://")
    return "%s://%s:***@%s" % (scheme, user, rest)


class Target:
    """Base class: a server and the databases this run made on it."""

    kind = ""
    #: True for a server that stores what it is sent (seeding and clean-up needed).
    stores = True

    def __init__(self) -> None:
        self.url = ""
        self.server_pid: Optional[int] = None
        self.created: List[str] = []
        self.run_id = uuid.uuid4().hex[:10]
        self.db = "corduroy_bench_%s" % self.run_id
        self._w2 = 0

    # -- lifecycle ----------------------------------------------------------
    def start(self, docs: int) -> None:
        """Start or reach the server (``docs``: how many documents reads may need)."""

    def stop(self) -> None:
        """Remove the databases this run created, stop a server this run started."""
        self.drop_all()

    # -- HTTP for set-up ----------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, timeout: float = 600.0) -> Tuple[int, Any]:
        """One JSON request with urllib; returns ``(status, decoded body)`` (errors returned, not raised)."""
        base, user, password = split_url(self.url)
        headers = {"Accept": "application/json"}
        if user is not None:
            token = base64.b64encode(("%s:%s" % (user, password or "")).encode()).decode("ascii")
            headers["Authorization"] = "Basic " + token
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw

    def _check(self, what: str, status: int, body: Any, ok: Tuple[int, ...] = (200, 201, 202)) -> None:
        if status not in ok:
            raise RuntimeError("%s failed on %s: HTTP %s %r" % (what, redact(self.url), status, body))

    def describe(self) -> Dict[str, Any]:
        """Kind, URL (no password) and the server's welcome object."""
        info: Dict[str, Any] = {"kind": self.kind, "url": redact(self.url)}
        try:
            status, welcome = self.request("GET", "/", timeout=10)
            if status == 200 and isinstance(welcome, dict):
                info["version"] = welcome.get("version")
                info["vendor"] = welcome.get("vendor") or ("pouchdb-server" if "express-pouchdb" in welcome else None)
        except OSError as exc:
            info["error"] = str(exc)
        return info

    # -- databases ----------------------------------------------------------
    def create_db(self, name: str) -> None:
        status, body = self.request("PUT", "/" + name)
        self._check("creating database %s" % name, status, body)
        self.created.append(name)

    def drop_db(self, name: str) -> None:
        if name in self.created:
            self.created.remove(name)
            try:
                self.request("DELETE", "/" + name, timeout=60)
            except OSError:
                pass

    def drop_all(self) -> None:
        for name in list(self.created):
            self.drop_db(name)

    def prepare(self, seed: int, view: bool) -> None:
        """Create the benchmark database with ``seed`` documents (and the view, warmed up)."""
        if not self.stores:
            return
        self.create_db(self.db)
        for start in range(0, seed, SEED_BATCH):
            docs = [make_doc(i) for i in range(start, min(seed, start + SEED_BATCH))]
            status, body = self.request("POST", "/%s/_bulk_docs" % self.db, {"docs": docs})
            self._check("seeding %s" % self.db, status, body)
            failed = [row for row in body if "error" in row]
            if failed:
                raise RuntimeError("seeding %s: %d documents refused, first %r" % (self.db, len(failed), failed[0]))
        status, body = self.request("PUT", "/%s/%s" % (self.db, DESIGN_DOC["_id"]), DESIGN_DOC)
        self._check("writing the design document", status, body)
        if view:  # build the index now, not during the first timed read
            deadline = time.monotonic() + 3600
            while True:
                status, body = self.request("GET", "/%s%s?limit=1" % (self.db, VIEW_PATH), timeout=1800)
                # CouchDB gives up on a request after a minute (500 "timeout") while the
                # indexer goes on; asking again waits for the same build.
                if status == 500 and isinstance(body, dict) and body.get("error") == "timeout" \
                        and time.monotonic() < deadline:
                    continue
                self._check("building the view index", status, body)
                break

    def fresh_db(self) -> str:
        """A new empty database for one W2 cell."""
        self._w2 += 1
        name = "%s_w2_%d" % (self.db, self._w2)
        if self.stores:
            self.create_db(name)
        return name


class CannedTarget(Target):
    """The built-in canned server, in its own process."""

    kind = "canned"
    stores = False

    def start(self, docs: int) -> None:
        from .canned import CannedServer

        self.server = CannedServer(docs=max(docs, 1)).start()
        self.url = self.server.url
        self.server_pid = self.server.pid

    def stop(self) -> None:
        super().stop()
        self.server.stop()


class PouchTarget(Target):
    """The pinned pouchdb-server of the test suite (``tests.server.TestServer``), in memory."""

    kind = "pouchdb"

    def start(self, docs: int) -> None:
        from tests.server import TestServer

        self.server = TestServer().start()
        self.url = self.server.url
        self.server_pid = self.server.process.pid if self.server.process else None

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.server.stop()


class CouchDBTarget(Target):
    """Apache CouchDB 3.4.3 from ``../shared/couchdb``: one node or a cluster, started and stopped by the run.

    It runs in a private temporary folder on free loopback ports
    (:class:`benchmarks.couchdb_cluster.PrivateCluster`) with fresh data, and
    is stopped (its folder deleted) when the run ends, whether it finished,
    failed or was interrupted.  The account lockout is turned off (a peer that
    mis-sends credentials must not lock the others out).  The requests go to
    the first node; the server CPU time measured is that node's.
    """

    kind = "couchdb"

    def __init__(self, nodes: int = 1) -> None:
        super().__init__()
        self.nodes = nodes
        self.cluster: Any = None

    def start(self, docs: int) -> None:
        from .couchdb_cluster import PrivateCluster, available

        why = available()
        if why is not None:
            raise TargetUnavailable(why)
        for attempt in range(3):  # another run may have taken the free ports meanwhile: try others
            self.cluster = PrivateCluster(nodes=self.nodes)
            try:
                self.cluster.start()
                break
            except RuntimeError:
                cluster, self.cluster = self.cluster, None
                try:
                    cluster.stop()  # start stopped what it launched; this deletes the folder
                except RuntimeError:
                    pass
                if attempt == 2:
                    raise
        self.url = self.cluster.url(0).rstrip("/")
        self.server_pid = self.cluster.pid(0)
        for i in range(self.nodes):
            base = self.url if i == 0 else self.cluster.url(i).rstrip("/")
            status, body = self._request_at(base, "PUT", "/_node/_local/_config/chttpd_auth_lockout/mode", "off")
            self._check("turning the account lockout off", status, body)

    def _request_at(self, base: str, method: str, path: str, body: Any) -> Tuple[int, Any]:
        saved, self.url = self.url, base
        try:
            return self.request(method, path, body)
        finally:
            self.url = saved

    def describe(self) -> Dict[str, Any]:
        info = super().describe()
        info["nodes"] = self.nodes
        return info

    def stop(self) -> None:
        try:
            if self.url:
                super().stop()
        finally:
            cluster, self.cluster = self.cluster, None
            if cluster is not None:
                cluster.stop()


class TargetUnavailable(RuntimeError):
    """The target cannot run here (e.g. no ``../shared/couchdb``); the message says why."""


class UrlTarget(Target):
    """A server someone else runs (``--url`` or ``COUCHDB_URL``), typically Apache CouchDB."""

    kind = "url"

    def __init__(self, url: str, server_pid: Optional[int] = None) -> None:
        super().__init__()
        self.url = url.rstrip("/")
        self.server_pid = server_pid

    def start(self, docs: int) -> None:
        deadline = time.monotonic() + 10
        while True:
            try:
                status, body = self.request("GET", "/", timeout=5)
                self._check("GET /", status, body, ok=(200,))
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("no server answers at %s" % redact(self.url)) from None
                time.sleep(0.2)


def make_target(kind: str, url: Optional[str] = None, server_pid: Optional[int] = None, nodes: int = 1) -> Target:
    """The target for ``--target`` / ``--url`` (``nodes``: for ``couchdb``, 1 or a cluster of 3)."""
    if kind == "canned":
        return CannedTarget()
    if kind == "pouchdb":
        return PouchTarget()
    if kind == "couchdb":
        return CouchDBTarget(nodes)
    if kind == "url":
        url = url or os.environ.get("COUCHDB_URL")
        if not url:
            raise ValueError("--target url needs --url URL or COUCHDB_URL")
        return UrlTarget(url, server_pid)
    raise ValueError("unknown target %r (canned, pouchdb, couchdb, url)" % kind)
