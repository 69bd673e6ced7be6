"""HTTP/2: ``Database(url, http2=True)`` / ``Couch(url, http2=True)`` multiplex requests on one connection.

The options are checked as set (curl options on the server, limits on the
curl driver).  The functional tests run against a tiny h2c server written
here with the ``h2`` package (the ``dev`` extra): HTTP/2 only, with prior
knowledge, on 127.0.0.1; it answers CouchDB-shaped JSON and counts
connections and the streams open at once.  They are skipped when ``h2``
cannot be imported.
"""
from __future__ import annotations

import asyncio
import threading
from functools import partial
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import unquote, urlsplit

import pycurl
import pytest

import loop
from corduroy import Couch, Database, NotFound
from corduroy.database import http2_curl_options
from tests.styles import STYLES, call

from .test_coalesce import concurrently, count_requests, paths

# -- the options -----------------------------------------------------------------------------------


def test_http2_options_for_http_and_https():
    plain = http2_curl_options("http://127.0.0.1:5984")
    assert plain[pycurl.HTTP_VERSION] == pycurl.CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE
    assert plain[pycurl.PIPEWAIT] == 1
    tls = http2_curl_options("HTTPS://couch.example:6984", {pycurl.SSL_VERIFYPEER: 0})
    assert tls[pycurl.HTTP_VERSION] == pycurl.CURL_HTTP_VERSION_2TLS
    assert tls[pycurl.PIPEWAIT] == 1 and tls[pycurl.SSL_VERIFYPEER] == 0


def test_database_and_couch_take_http2():
    db = Database("http://127.0.0.1:5984/things", http2=True)
    assert db.server.curl_options[pycurl.HTTP_VERSION] == pycurl.CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE
    assert Database("http://127.0.0.1:5984/things").server.curl_options is None
    couch = Couch("https://admin:pw@127.0.0.1:6984", http2=True, curl_options={pycurl.SSL_VERIFYHOST: 0})
    options = couch.server.curl_options
    assert options[pycurl.HTTP_VERSION] == pycurl.CURL_HTTP_VERSION_2TLS and options[pycurl.SSL_VERIFYHOST] == 0
    assert couch.database("things").server.curl_options is options  # its databases share the server
    assert "pw" not in repr(options)


def test_set_limits_allows_more_transfers_than_connections_with_max_streams():
    driver = loop.get_reactor().curl
    try:
        driver.set_limits(4, max_streams=8)
        assert driver.max_transfers == 32 and driver.max_streams == 8 and driver.max_connections == 4
        driver.set_limits(4)
        assert driver.max_transfers == 4 and driver.max_streams is None
        with pytest.raises(ValueError):
            driver.set_limits(4, max_streams=0)
    finally:
        driver.set_limits(64)


# -- a tiny h2c server -----------------------------------------------------------------------------
class H2Server:
    """HTTP/2 with prior knowledge only, on 127.0.0.1: CouchDB-shaped answers, counters.

    ``GET /db/ID`` answers ``{"_id": ID, "_rev": "1-..."}`` (404 for ids
    starting with ``missing``); ``POST /db/_all_docs`` answers rows for its
    ``keys``, ``POST /db/_bulk_get`` a result per id.  Each answer waits ``hold`` seconds so concurrent streams
    overlap.  ``connections`` counts connections, ``peak_streams`` the most
    requests open at once, ``paths`` every request's method and path.
    """

    REV = "1-967a00dff5e02add41819138abb3284d"

    def __init__(self, hold: float = 0.02) -> None:
        self.hold = hold
        self.connections = 0
        self.active = 0
        self.peak_streams = 0
        self.paths: List[Tuple[str, str]] = []
        self.url = ""
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._server: Any = None
        self.transports: List[Any] = []

    def __enter__(self) -> "H2Server":
        ready = threading.Event()

        def run() -> None:
            aloop = self._loop = asyncio.new_event_loop()
            self._server = aloop.run_until_complete(
                aloop.create_server(lambda: _H2Protocol(self), "127.0.0.1", 0))
            port = self._server.sockets[0].getsockname()[1]
            self.url = "http://127.0.0.1:%d" % port
            ready.set()
            aloop.run_forever()
            self._server.close()
            for transport in self.transports:  # every connection closed before the loop
                transport.abort()
            aloop.run_until_complete(asyncio.sleep(0.01))
            aloop.run_until_complete(self._server.wait_closed())
            aloop.close()

        self._thread = threading.Thread(target=run, name="h2-test-server", daemon=True)
        self._thread.start()
        assert ready.wait(10), "the h2 test server did not start"
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._loop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def answer(self, method: str, path: str, body: bytes) -> Tuple[int, Any]:
        self.paths.append((method, path))
        import json

        parts = urlsplit(path).path.split("/")
        if method == "POST" and parts[-1] == "_all_docs":
            keys = json.loads(body)["keys"]
            rows = [{"key": k, "error": "not_found"} if k.startswith("missing") else
                    {"id": k, "key": k, "value": {"rev": self.REV}, "doc": {"_id": k, "_rev": self.REV}}
                    for k in keys]
            return 200, {"total_rows": len(keys), "offset": 0, "rows": rows}
        if method == "POST" and parts[-1] == "_bulk_get":  # CouchDB's shape: a result per id, its leaves
            ids = [d["id"] for d in json.loads(body)["docs"]]
            results = [{"id": i, "docs": [{"error": {"id": i, "rev": "undefined", "error": "not_found",
                                                     "reason": "missing"}}]} if i.startswith("missing") else
                       {"id": i, "docs": [{"ok": {"_id": i, "_rev": self.REV}}]} for i in ids]
            return 200, {"results": results}
        if method == "GET" and len(parts) == 3:
            doc_id = unquote(parts[2])
            if doc_id.startswith("missing"):
                return 404, {"error": "not_found", "reason": "missing"}
            return 200, {"_id": doc_id, "_rev": self.REV}
        return 404, {"error": "not_found", "reason": "no such thing here"}


class _H2Protocol(asyncio.Protocol):
    def __init__(self, server: H2Server) -> None:
        import h2.config
        import h2.connection

        self.server = server
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.streams: Dict[int, Tuple[Dict[str, str], bytearray]] = {}
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.server.transports.append(transport)
        self.server.connections += 1
        self.conn.initiate_connection()
        transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        import h2.events
        import h2.exceptions

        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:  # e.g. an HTTP/1.1 request: this server speaks only h2
            self.transport.close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self.streams[event.stream_id] = (dict(event.headers), bytearray())
                self.server.active += 1
                self.server.peak_streams = max(self.server.peak_streams, self.server.active)
            elif isinstance(event, h2.events.DataReceived):
                self.streams[event.stream_id][1].extend(event.data)
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                asyncio.get_running_loop().call_later(self.server.hold, self.respond, event.stream_id)
        self.transport.write(self.conn.data_to_send())

    def respond(self, stream_id: int) -> None:
        import json

        headers, body = self.streams.pop(stream_id)
        self.server.active -= 1
        status, data = self.server.answer(headers[":method"], headers[":path"], bytes(body))
        payload = json.dumps(data).encode()
        self.conn.send_headers(stream_id, [(":status", str(status)), ("content-type", "application/json"),
                                           ("content-length", str(len(payload)))])
        self.conn.send_data(stream_id, payload, end_stream=True)
        self.transport.write(self.conn.data_to_send())


@pytest.fixture
def h2server():
    pytest.importorskip("h2")
    with H2Server() as server:
        yield server


@pytest.fixture
def driver():
    driver = loop.get_reactor().curl
    yield driver
    driver.set_limits(64)


# -- over HTTP/2 -----------------------------------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_a_database_speaks_http2(style, h2server):
    db = Database(h2server.url + "/db", http2=True)
    doc = call(style, db.get, "a/b")
    assert doc["_id"] == "a/b" and doc["_rev"] == H2Server.REV
    with pytest.raises(NotFound) as info:
        call(style, db.get, "missing-one")
    assert info.value.reason == "missing"
    assert h2server.paths == [("GET", "/db/a%2Fb"), ("GET", "/db/missing-one")]


def test_without_http2_the_h2_only_server_is_not_understood(h2server):
    from corduroy import TransportError

    with pytest.raises(TransportError):  # HTTP/1.1 to an h2-only port: proves the other tests used h2
        Database(h2server.url + "/db", connect_timeout=5, timeout=5).get("a")


@pytest.mark.parametrize("style", ("callback", "relax", "await"))
def test_concurrent_requests_share_one_connection(style, h2server, driver):
    db = Database(h2server.url + "/db", http2=True)
    ids = ["doc%d" % i for i in range(24)]
    out = concurrently(style, [partial(db.get, doc_id) for doc_id in ids])
    assert [o.data["_id"] for o in out] == ids
    assert h2server.connections == 1
    assert h2server.peak_streams > 1, "the requests were not multiplexed"


def test_max_streams_lets_more_transfers_run_than_connections(h2server, driver):
    db = Database(h2server.url + "/db", http2=True)
    ids = ["doc%d" % i for i in range(24)]
    driver.set_limits(2)
    out = concurrently("callback", [partial(db.get, doc_id) for doc_id in ids])
    assert [o.data["_id"] for o in out] == ids
    assert h2server.peak_streams <= 2  # no more transfers than connections
    h2server.peak_streams = 0
    driver.set_limits(2, max_streams=16)
    out = concurrently("callback", [partial(db.get, doc_id) for doc_id in ids])
    assert [o.data["_id"] for o in out] == ids
    assert h2server.peak_streams > 2
    assert h2server.connections <= 2


def test_coalescing_over_http2(h2server):
    db = Database(h2server.url + "/db", http2=True, coalesce=True)
    seen = count_requests(db)
    out = concurrently("callback", [partial(db.get, "x"), partial(db.get, "missing-y"), partial(db.get, "z")])
    assert out[0].data["_id"] == "x" and out[2].data["_id"] == "z"
    assert isinstance(out[1].exc, NotFound) and out[1].exc.reason == "missing"
    assert paths(seen, db) == ["POST /_bulk_get"]


def test_a_pooled_handle_goes_back_to_http1_after_http2(h2server, couch_url, driver):
    # One request at a time: the pool hands out the handle last released (LIFO), so each
    # request must undo the previous one's options (pycurl cannot unset HTTP_VERSION,
    # PIPEWAIT or VERBOSE).
    driver.set_limits(1)
    h2db = Database(h2server.url + "/db", http2=True)
    plain = Couch(couch_url)
    verbose = Couch(couch_url, curl_options={pycurl.VERBOSE: 0})
    assert h2db.get("one")["_id"] == "one"
    welcome = finish_get(plain)
    assert isinstance(welcome, dict) and welcome.get("version")
    assert h2db.get("two")["_id"] == "two"
    assert finish_get(verbose).get("version")
    assert finish_get(plain).get("version")  # after a reset: headers (Accept: JSON) set again


def finish_get(couch: Couch) -> Any:
    """``GET /`` on ``couch``, blocking: the welcome document."""
    from corduroy.http import finish

    return finish(couch.server.request("GET", "/"), None)
