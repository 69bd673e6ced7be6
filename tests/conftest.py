"""Shared fixtures: the server under test and throwaway database names.

The suite runs against ``COUCHDB_URL`` when it is set (for example
``http://admin:pw@127.0.0.1:5984`` for a real Apache CouchDB 3.x); otherwise a
pinned pouchdb-server is started in memory for the session (see
:mod:`tests.server.launcher`).

Fixtures use plain :mod:`urllib`, never the library under test.

``pytest --server-only`` runs only the tests that reach the server (through
the ``couch_url``, ``server_kind`` or ``dbname`` fixture): CI runs the whole
suite once against pouchdb-server, then only these against Apache CouchDB
(``.ci/run``). Reading back your own writes on a CouchDB cluster is the
subject of :mod:`tests.consistency`.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import TYPE_CHECKING, Any, Iterator, Optional, Tuple

import pytest

if TYPE_CHECKING:
    from benchmarks.canned import CannedServer
    from loop import Reactor


def _split_credentials(url: str) -> Tuple[str, Optional[str]]:
    """Return (url without user:password, Basic auth header value or None)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, None
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), f"Basic {token}"


def couch_request(base_url: str, method: str, path: str = "/", body: Any = None) -> Tuple[int, Any]:
    """Send one JSON request with urllib; return (status code, decoded body).

    HTTP errors are returned, not raised. Credentials in *base_url* become a
    Basic auth header (urllib does not send URL credentials by itself).
    """
    url, auth = _split_credentials(base_url.rstrip("/"))
    headers = {"Accept": "application/json"}
    data = None
    if auth:
        headers["Authorization"] = auth
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw


@pytest.fixture(scope="session")
def couch_url() -> Iterator[str]:
    """Base URL of the server under test (``COUCHDB_URL`` or a pouchdb-server)."""
    url = os.environ.get("COUCHDB_URL")
    if url:
        yield url.rstrip("/")
        return
    from tests.server import TestServer

    server = TestServer().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def server_kind(couch_url: str) -> str:
    """``"couchdb"`` for Apache CouchDB, ``"pouchdb"`` for pouchdb-server."""
    status, welcome = couch_request(couch_url, "GET", "/")
    if isinstance(welcome, dict):
        if "couchdb" in welcome:
            return "couchdb"
        if "express-pouchdb" in welcome:
            return "pouchdb"
    raise RuntimeError(f"unrecognised server at GET / (HTTP {status}): {welcome!r}")


@pytest.fixture(scope="module")
def canned() -> Iterator["CannedServer"]:
    """The benchmark harness's canned CouchDB on a free loopback port (kept-alive connections never time out)."""
    from benchmarks.canned import CannedServer

    with CannedServer(docs=1000) as server:
        yield server


@pytest.fixture
def reactor() -> Iterator["Reactor"]:
    """A fresh default reactor for this thread (the one forked children inherit), closed after the test.

    Modules that test the reactor itself define their own.
    """
    import loop

    r = loop.Reactor.create()
    loop.set_reactor(r)
    yield r
    loop.set_reactor(None)
    r.close()


@pytest.fixture
def dbname(couch_url: str) -> Iterator[str]:
    """A fresh valid database name (``test_<hex>``); the database is deleted after."""
    name = f"test_{uuid.uuid4().hex}"
    yield name
    status, body = couch_request(couch_url, "DELETE", "/" + name)
    if status not in (200, 202, 404):
        raise RuntimeError(f"could not delete test database {name}: HTTP {status} {body!r}")


#: The fixtures through which a test reaches the server under test.
SERVER_FIXTURES = frozenset({"couch_url", "server_kind", "dbname"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--server-only", action="store_true", default=False,
        help="run only the tests that talk to the server under test (those that use the couch_url, "
             "server_kind or dbname fixture, directly or through another fixture): the rest (reactor, curl "
             "driver, canned server, argument checks...) do not depend on the server, so a second run "
             "against another server may leave them out")


def _deselect(config: pytest.Config, items: list, drop: list) -> None:
    if drop:
        dropped = set(map(id, drop))
        config.hook.pytest_deselected(items=drop)
        items[:] = [item for item in items if id(item) not in dropped]


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    """Deselect ``soak`` tests unless the ``-m`` expression names them (``pytest -m soak``);
    with ``--server-only``, deselect the tests that never reach the server."""
    if "soak" not in (config.getoption("markexpr") or ""):
        _deselect(config, items, [item for item in items if item.get_closest_marker("soak") is not None])
    if config.getoption("server_only"):
        _deselect(config, items, [item for item in items
                                  if not SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ()))])
