"""A canned CouchDB: fixed CouchDB-shaped answers, fast enough never to be the bottleneck.

It runs in its own process on uvloop with a raw :class:`asyncio.Protocol`,
HTTP/1.1 keep-alive and minimal parsing (the request line, ``Content-Length``
and, for PUT/POST, the body), one request at a time per connection.  It binds
127.0.0.1 only.  Every database exists and holds documents ``doc000000000`` to
``doc<docs-1>`` (``--docs``, default 1,000,000):

=================================  ==================================================
``GET /``                          the welcome object
``GET /_uuids?count=N``            N fresh uuids
``HEAD|GET|PUT|DELETE /db``        200 (info for GET), 201 ``{"ok":true}`` for PUT
``GET /db/docid``                  a fixed ~400-byte document with that ``_id``
``PUT /db/docid``                  201 ``{"ok":true,...}``; 409 if the body carries a
                                   ``_rev`` other than :data:`~fixtures.CANNED_REV`
``DELETE /db/docid``               200 ``{"ok":true,...}``
``POST /db/_bulk_docs``            201, an ok row (id, rev) per document
``POST /db/_all_docs`` with keys   a row per key (with the doc if ``include_docs``)
``GET /db/_all_docs``              ``limit`` rows (default all), streamed chunked
``GET /db/_design/d/_view/v``      ``limit`` rows (key = n), streamed chunked
``GET /db/_changes``               a normal feed from ``since``, ``limit`` results, chunked
=================================  ==================================================

Streamed answers are generated block by block while the socket drains, so a
million rows take no memory.

Run it alone with ``python -m benchmarks.canned [--port N] [--docs N]``; it
prints ``READY <port>`` on stdout once listening.  From Python, use
:class:`CannedServer` (a context manager, like ``tests.server.TestServer``).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from email.utils import formatdate
from typing import Any, Callable, Dict, Iterator, List, Optional
from urllib.parse import parse_qsl, unquote

from .fixtures import CANNED_REV, DOC_ID_FORMAT, make_doc, parse_seq, seq_string

__all__ = ["CannedServer", "CannedProtocol", "serve", "main"]

HOST = "127.0.0.1"
BLOCK = 1000  # rows generated per chunk of a streamed answer

_REASONS = {200: b"OK", 201: b"Created", 400: b"Bad Request", 404: b"Object Not Found",
            405: b"Method Not Allowed", 409: b"Conflict", 411: b"Length Required"}
_JSON_HEADERS = b"Server: corduroy-canned\r\nContent-Type: application/json\r\nCache-Control: must-revalidate\r\n"


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


_date_cache: List[Any] = [0, b""]


def _date() -> bytes:
    """The ``Date:`` header line, recomputed once a second (some clients sort their caches by it)."""
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0] = now
        _date_cache[1] = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
    return _date_cache[1]


def _response(code: int, body: bytes, extra: bytes = b"", head: bool = False) -> bytes:
    return b"".join((
        b"HTTP/1.1 %d %s\r\n" % (code, _REASONS.get(code, b"Unknown")), _JSON_HEADERS, _date(), extra,
        b"Content-Length: %d\r\n\r\n" % len(body), b"" if head else body,
    ))


def _error(code: int, error: str, reason: str) -> bytes:
    return _response(code, _json({"error": error, "reason": reason}) + b"\n")


# -- the fixed document --------------------------------------------------
def _doc_parts() -> tuple:
    doc = make_doc(0)
    doc["_id"] = "\x00"
    doc["_rev"] = CANNED_REV
    text = json.dumps(doc, separators=(",", ":"))
    before, after = text.split('"\\u0000"')
    return before.encode() + b'"', b'"' + after.encode()


_DOC_BEFORE, _DOC_AFTER = _doc_parts()
_DOC_HEAD = b"HTTP/1.1 200 OK\r\n" + _JSON_HEADERS + b'ETag: "' + CANNED_REV.encode() + b'"\r\n'


def _id_json(doc_id: str) -> bytes:
    """The JSON string body (without quotes) for ``doc_id``."""
    return json.dumps(doc_id)[1:-1].encode()


def _doc_bytes(raw_id: bytes) -> bytes:
    """The canned document's JSON for a (still percent-encoded) path segment."""
    if b"%" in raw_id or b"\\" in raw_id or b'"' in raw_id:
        return _DOC_BEFORE + _id_json(unquote(raw_id.decode("latin-1"))) + _DOC_AFTER
    return _DOC_BEFORE + raw_id + _DOC_AFTER


def _doc_response(raw_id: bytes, head: bool = False) -> bytes:
    body = _doc_bytes(raw_id) + b"\n"
    return b"".join((_DOC_HEAD, _date(), b"Content-Length: %d\r\n\r\n" % len(body), b"" if head else body))


# -- streamed row generators --------------------------------------------
_REV_B = CANNED_REV
_ROW_ALL = '{"id":"%s","key":"%s","value":{"rev":"%s"}}' % (DOC_ID_FORMAT, DOC_ID_FORMAT, _REV_B)
_ROW_VIEW = '{"id":"%s","key":%%d,"value":null}' % DOC_ID_FORMAT
_ROW_CHANGE = '{"seq":"%s","id":"%s","changes":[{"rev":"%s"}]}' % (
    seq_string(0).replace("0-", "%d-", 1), DOC_ID_FORMAT, _REV_B)


def _row_all_docs_with_doc() -> str:
    before, after = _DOC_BEFORE.decode(), _DOC_AFTER.decode()
    doc = (before + DOC_ID_FORMAT + after).replace("%", "%%").replace("%%09d", "%09d")
    return '{"id":"%s","key":"%s","value":{"rev":"%s"},"doc":' % (DOC_ID_FORMAT, DOC_ID_FORMAT, _REV_B) + doc + "}"


class _Rows:
    """Blocks of ``count`` rows from ``start``, each block one ``template % args``."""

    def __init__(self, row: str, args_per_row: int, arg_fn: Callable[[int], tuple]) -> None:
        self.row = row
        self.args_per_row = args_per_row
        self.arg_fn = arg_fn
        self._templates: Dict[int, str] = {}

    def template(self, size: int) -> str:
        tpl = self._templates.get(size)
        if tpl is None:
            tpl = self._templates[size] = ",\r\n".join([self.row] * size)
        return tpl

    def blocks(self, start: int, count: int) -> Iterator[bytes]:
        first = True
        end = start + count
        i = start
        while i < end:
            size = min(BLOCK, end - i)
            args: List[int] = []
            for n in range(i, i + size):
                args.extend(self.arg_fn(n))
            text = self.template(size) % tuple(args)
            yield (text if first else ",\r\n" + text).encode()
            first = False
            i += size


_ALL_DOCS_ROWS = _Rows(_ROW_ALL, 2, lambda n: (n, n))
_ALL_DOCS_ROWS_DOCS = _Rows(_row_all_docs_with_doc(), 3, lambda n: (n, n, n))
_VIEW_ROWS = _Rows(_ROW_VIEW, 2, lambda n: (n, n))
_CHANGE_ROWS = _Rows(_ROW_CHANGE, 2, lambda n: (n + 1, n))


def _params(query: bytes) -> Dict[str, str]:
    return dict(parse_qsl(query.decode("latin-1"))) if query else {}


def _int_param(params: Dict[str, str], name: str, default: int) -> int:
    value = params.get(name)
    if value is None:
        return default
    try:
        return max(0, int(value))
    except ValueError:
        return default


def _truthy(params: Dict[str, str], name: str) -> bool:
    return params.get(name, "false").lower() == "true"


# -- the protocol --------------------------------------------------------
class CannedProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection to the canned server."""

    docs = 1_000_000

    def __init__(self) -> None:
        self.transport: Any = None
        self.buf = b""
        self.producer: Optional[Iterator[bytes]] = None
        self.paused = False
        self.continued = False
        self.close_after = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=512 * 1024)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.producer = None
        self.transport = None

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.producer is not None:
            self._produce()

    def data_received(self, data: bytes) -> None:
        self.buf = self.buf + data if self.buf else data
        if self.producer is None:
            self._process()

    def _process(self) -> None:
        while self.producer is None and self.transport is not None:
            buf = self.buf
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = buf[:end]
            sp1 = head.find(b" ")
            sp2 = head.find(b" ", sp1 + 1)
            if sp1 < 0 or sp2 < 0:
                self.transport.write(_error(400, "bad_request", "bad request line"))
                self.transport.close()
                return
            method = head[:sp1]
            target = head[sp1 + 1:sp2]
            length = 0
            if method in (b"PUT", b"POST") or b"ength:" in head or b"lose" in head or b"xpect" in head:
                lower = head.lower()
                at = lower.find(b"\r\ncontent-length:")
                if at >= 0:
                    stop = lower.find(b"\r\n", at + 2)
                    length = int(head[at + 17:stop if stop >= 0 else len(head)])
                elif b"\r\ntransfer-encoding:" in lower:
                    self.transport.write(_error(411, "bad_request", "chunked request bodies are not supported"))
                    self.transport.close()
                    return
                if b"\r\nconnection: close" in lower:
                    self.close_after = True
                if length and len(buf) < end + 4 + length:
                    if not self.continued and b"\r\nexpect: 100-continue" in lower:
                        self.continued = True
                        self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    return
            total = end + 4 + length
            body = buf[end + 4:total]
            self.buf = buf[total:]
            self.continued = False
            self._handle(method, target, body)
            if self.close_after and self.producer is None and self.transport is not None:
                self.transport.close()
                return

    def _produce(self) -> None:
        transport = self.transport
        producer = self.producer
        while producer is not None and not self.paused and transport is not None:
            try:
                chunk = next(producer)
            except StopIteration:
                transport.write(b"0\r\n\r\n")
                self.producer = None
                if self.close_after:
                    transport.close()
                    return
                if self.buf:
                    self._process()
                return
            if chunk:
                transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    def _stream(self, pieces: Iterator[bytes]) -> None:
        self.transport.write(
            b"HTTP/1.1 200 OK\r\n" + _JSON_HEADERS + _date() + b"Transfer-Encoding: chunked\r\n\r\n")
        self.producer = pieces
        self._produce()

    # -- routing --------------------------------------------------------
    def _handle(self, method: bytes, target: bytes, body: bytes) -> None:
        write = self.transport.write
        path, _, query = target.partition(b"?")
        parts = path.split(b"/")  # ['', db, doc...]
        n = len(parts)
        if n == 3 and parts[2] and parts[2][:1] != b"_":
            if method == b"GET":
                write(_doc_response(parts[2]))
            else:
                self._doc(method, parts[2], body)
            return
        if n == 2 or (n == 3 and not parts[2]):
            if not parts[1] or parts[1][:1] == b"_":
                write(self._server(method, parts[1], query))
            else:
                write(self._database(method, parts[1]))
            return
        special = parts[2]
        if special == b"_all_docs":
            self._all_docs(method, query, body)
        elif special == b"_bulk_docs" and method == b"POST":
            write(self._bulk_docs(body))
        elif special == b"_changes":
            self._changes(query)
        elif special == b"_design" and n == 6 and parts[4] == b"_view" and method == b"GET":
            params = _params(query)
            limit = min(_int_param(params, "limit", self.docs), self.docs)
            self._stream(self._rows(_VIEW_ROWS, 0, limit, self.docs))
        elif special == b"_design" and n == 4 and method == b"GET":
            name = "_design/" + unquote(parts[3].decode("latin-1"))
            write(_response(200, _json({"_id": name, "_rev": CANNED_REV, "language": "javascript",
                                        "views": {"by_n": {"map": "function (doc) { emit(doc.n, null); }"}}})))
        elif special == b"_design" and n == 4:
            self._doc(method, b"_design%2F" + parts[3], body)
        else:
            write(_error(404, "not_found", "missing"))

    def _server(self, method: bytes, name: bytes, query: bytes) -> bytes:
        if name == b"":
            return _response(200, _json({"couchdb": "Welcome", "version": "3.3.3",
                                         "vendor": {"name": "corduroy canned server"}}), head=method == b"HEAD")
        if name == b"_uuids":
            count = _int_param(_params(query), "count", 1)
            return _response(200, _json({"uuids": [uuid.uuid4().hex for _ in range(min(count, 10000))]}))
        if name == b"_all_dbs":
            return _response(200, b"[]")
        if name == b"_up":
            return _response(200, b'{"status":"ok"}')
        return _error(404, "not_found", "missing")

    def _database(self, method: bytes, name: bytes) -> bytes:
        if method == b"HEAD":
            return _response(200, b"", head=True)
        if method == b"GET":
            return _response(200, _json({"db_name": unquote(name.decode()), "doc_count": self.docs,
                                         "doc_del_count": 0, "update_seq": seq_string(self.docs),
                                         "instance_start_time": "0"}))
        if method == b"PUT":
            return _response(201, b'{"ok":true}')
        if method == b"DELETE":
            return _response(200, b'{"ok":true}')
        return _error(405, "method_not_allowed", "Only GET,HEAD,PUT,DELETE allowed")

    def _doc(self, method: bytes, raw_id: bytes, body: bytes) -> None:
        write = self.transport.write
        doc_id = unquote(raw_id.decode("latin-1"))
        if method == b"HEAD":
            write(_doc_response(raw_id, head=True))
        elif method == b"PUT":
            if b'"_rev"' in body and CANNED_REV.encode() not in body:
                write(_error(409, "conflict", "Document update conflict."))
            else:
                rev = "2-" + CANNED_REV[2:] if b'"_rev"' in body else CANNED_REV
                write(_response(201, _json({"ok": True, "id": doc_id, "rev": rev}),
                                extra=b'ETag: "%s"\r\n' % rev.encode()))
        elif method == b"DELETE":
            write(_response(200, _json({"ok": True, "id": doc_id, "rev": "2-" + CANNED_REV[2:]})))
        else:
            write(_error(405, "method_not_allowed", "Only GET,HEAD,PUT,DELETE allowed"))

    def _bulk_docs(self, body: bytes) -> bytes:
        try:
            docs = json.loads(body)["docs"]
        except (ValueError, KeyError, TypeError):
            return _error(400, "bad_request", "POST body must include `docs` parameter.")
        out = []
        for doc in docs:
            doc_id = doc.get("_id") or uuid.uuid4().hex
            rev = doc.get("_rev")
            gen = parse_seq(rev) + 1 if rev else 1
            out.append({"ok": True, "id": doc_id, "rev": "%d-%s" % (gen, CANNED_REV[2:])})
        return _response(201, _json(out))

    def _all_docs(self, method: bytes, query: bytes, body: bytes) -> None:
        params = _params(query)
        include_docs = _truthy(params, "include_docs")
        keys = None
        if method == b"POST" and body:
            try:
                keys = json.loads(body).get("keys")
            except (ValueError, AttributeError):
                self.transport.write(_error(400, "bad_request", "invalid JSON body"))
                return
        elif "keys" in params:
            keys = json.loads(params["keys"])
        if keys is not None:
            rows = []
            for key in keys:
                row: Dict[str, Any] = {"id": key, "key": key, "value": {"rev": CANNED_REV}}
                if include_docs:
                    row["doc"] = json.loads(_doc_bytes(_id_json(key)))
                rows.append(row)
            self.transport.write(_response(200, _json({"total_rows": self.docs, "offset": 0, "rows": rows})))
            return
        limit = min(_int_param(params, "limit", self.docs), self.docs)
        source = _ALL_DOCS_ROWS_DOCS if include_docs else _ALL_DOCS_ROWS
        self._stream(self._rows(source, 0, limit, self.docs))

    def _rows(self, source: _Rows, start: int, count: int, total: int) -> Iterator[bytes]:
        yield b'{"total_rows":%d,"offset":%d,"rows":[\r\n' % (total, start)
        yield from source.blocks(start, count)
        yield b"\r\n]}\n"

    def _changes(self, query: bytes) -> None:
        params = _params(query)
        since_param = params.get("since", "0")
        since = self.docs if since_param == "now" else min(parse_seq(since_param), self.docs)
        limit = _int_param(params, "limit", self.docs)
        count = max(0, min(limit, self.docs - since))
        self._stream(self._change_rows(since, count))

    def _change_rows(self, since: int, count: int) -> Iterator[bytes]:
        yield b'{"results":[\r\n'
        yield from _CHANGE_ROWS.blocks(since, count)
        last = since + count
        yield b'\r\n],\r\n"last_seq":"%s","pending":%d}\n' % (
            seq_string(last).encode(), self.docs - last)


# -- running it ----------------------------------------------------------
def serve(port: int = 0, docs: int = 1_000_000, ready: Optional[Callable[[int], None]] = None) -> None:
    """Serve on 127.0.0.1:``port`` (0: any free port) until SIGTERM/SIGINT; ``ready(port)`` once listening."""
    loop: asyncio.AbstractEventLoop
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - CPython 3.9 without uvloop
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    CannedProtocol.docs = docs
    server: Any = loop.run_until_complete(
        loop.create_server(CannedProtocol, HOST, port, backlog=1024, reuse_address=True))
    bound = server.sockets[0].getsockname()[1]
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, loop.stop)
    if ready is not None:
        ready(bound)
    try:
        loop.run_forever()
    finally:
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()


class CannedServer:
    """The canned server in a subprocess; ``url`` once started.

    >>> with CannedServer(docs=1000) as server:   # doctest: +SKIP
    ...     print(server.url)
    http://127.0.0.1:40123
    """

    def __init__(self, docs: int = 1_000_000, port: int = 0, startup_timeout: float = 20.0) -> None:
        self.docs = docs
        self.port = port
        self.startup_timeout = startup_timeout
        self.process: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        if self.process is None:
            raise RuntimeError("the canned server is not started")
        return "http://%s:%d" % (HOST, self.port)

    @property
    def pid(self) -> Optional[int]:
        """The server process's id (for measuring its CPU time)."""
        return self.process.pid if self.process is not None else None

    def start(self) -> "CannedServer":
        """Start the subprocess and wait until it listens."""
        if self.process is not None:
            return self
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "") if env.get("PYTHONPATH") else root
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.canned", "--port", str(self.port), "--docs", str(self.docs)],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
        )
        deadline = time.monotonic() + self.startup_timeout
        assert self.process.stdout is not None
        line = b""
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if line.startswith(b"READY "):
                self.port = int(line.split()[1])
                return self
            if not line and self.process.poll() is not None:
                break
        self.stop()
        raise RuntimeError("the canned server did not start (last output: %r)" % line)

    def stop(self) -> None:
        """Stop the subprocess."""
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> "CannedServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m benchmarks.canned``: serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.canned", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--docs", type=int, default=1_000_000, help="documents every database holds")
    args = parser.parse_args(argv)

    def ready(port: int) -> None:
        sys.stdout.write("READY %d\n" % port)
        sys.stdout.flush()

    serve(args.port, args.docs, ready)
    return 0


if __name__ == "__main__":
    sys.exit(main())
