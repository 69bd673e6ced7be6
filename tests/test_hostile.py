"""Answers CouchDB never sends, and the response size limit.

A tiny scripted HTTP server (:class:`FaultServer`, raw sockets in threads,
127.0.0.1 only) answers each request with bytes chosen by the last segment
of its path: HTML error pages, invalid JSON, a body on a 204, huge bodies,
wrong content types, a bare status line, garbage.  The real server never
sends these, so a fault server is the only way to see what the client does
with them: each must give a clear exception carrying the status and a
bounded excerpt of the body (or, when no HTTP response could be read at
all, a :class:`~corduroy.exceptions.TransportError`), and the reactor must
go on serving requests.

``Server(max_response_size=N)`` refuses a buffered answer larger than N
bytes with :class:`~corduroy.exceptions.ResponseTooLarge`; streamed calls
(``on_row=``) are not limited.
"""
from __future__ import annotations

import logging
import socket
import socketserver
import threading
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

import pytest

import loop
from corduroy import (
    BadResponse, Conflict, ConnectionFailed, Couch, CouchError, Database, NotFound, ResponseTooLarge,
    ServerError, ServiceUnavailable, TransportError,
)
from tests.consistency import EVERY_COPY
from tests.styles import STYLES, call

#: How long an exception's text may get, whatever the body's size (its URL aside).
MAX_TEXT = 1000

HTML_502 = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway"
            b"</h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n</body>\r\n</html>\r\n")
HTML_LOGIN = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body><form>...</form></body></html>"
HUGE = 8 * 1024 * 1024


def http(status: str, body: bytes = b"", content_type: Optional[str] = "application/json",
         headers: Tuple[str, ...] = (), length: bool = True) -> bytes:
    """A raw HTTP/1.1 response."""
    lines = ["HTTP/1.1 " + status]
    if content_type is not None:
        lines.append("Content-Type: " + content_type)
    if length:
        lines.append("Content-Length: %d" % len(body))
    lines.extend(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def huge_json_doc() -> bytes:
    return b'{"_id":"huge","_rev":"1-x","blob":"' + b"x" * HUGE + b'"}'


#: name -> (raw answer, close the connection after it)
ANSWERS: Dict[str, Tuple[bytes, bool]] = {
    "ok": (http("200 OK", b'{"_id":"ok","_rev":"1-a"}\n'), False),
    "html-502": (http("502 Bad Gateway", HTML_502, "text/html"), False),
    "html-200": (http("200 OK", HTML_LOGIN, "text/html; charset=utf-8"), False),
    "bad-json": (http("200 OK", b'{"_id": "x", "ok": tru'), False),
    "not-utf8": (http("200 OK", b'{"_id":"\xff\xfe\xfd"}'), False),
    "bad-json-409": (http("409 Conflict", b'{"error":"conflict",'), False),
    "text-404": (http("404 Not Found", b"Not Found", "text/plain"), False),
    "json-204": (http("204 No Content", b'{"ok":true,"note":"a body where none belongs"}'), False),
    "huge-500": (http("500 Internal Server Error", b"<html><body><pre>" + b"E" * HUGE + b"</pre></body></html>",
                      "text/html"), False),
    "huge-bad-json": (http("200 OK", b"<pre>" + b"[1]" * (HUGE // 3) + b"</pre>"), False),
    "huge-ok": (http("200 OK", huge_json_doc()), False),
    "json-as-text": (http("200 OK", b'{"_id":"json-as-text"}', "text/plain;charset=utf-8"), False),
    "json-as-html": (http("200 OK", b'{"_id":"json-as-html"}', "text/html"), False),
    "json-untyped": (http("200 OK", b'{"_id":"json-untyped"}', None), False),
    "status-500": (http("500 Internal Server Error", b"", None), False),
    "status-line-503": (b"HTTP/1.1 503 Service Unavailable\r\n", True),
    "status-200": (b"HTTP/1.1 200 OK\r\n\r\n", True),
    "empty-200": (http("200 OK", b""), False),
    "odd-status": (http("999 Whatever", b'{"ok":true}'), False),
    "garbage": (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", True),
    "nothing": (b"", True),
    "truncated": (http("200 OK", b'{"_id":"truncated","padding":"' + b"p" * 100 + b'"}')[:-60], True),
    "bad-chunked": (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"zz\r\n{}\r\n0\r\n\r\n", True),
    "wrong-shape": (http("200 OK", b"[1,2,3]"), False),
    "exact-1000": (http("200 OK", b'{"_id":"exact","pad":"' + b"p" * (1000 - 24) + b'"}'), False),
}
assert len(ANSWERS["exact-1000"][0].split(b"\r\n\r\n", 1)[1]) == 1000


class _Handler(socketserver.BaseRequestHandler):
    server: "FaultServer"

    def handle(self) -> None:
        sock: socket.socket = self.request
        self.server.connections.add(sock)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target = lines[0].split(" ")[:2]
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                while len(buf) < length:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf += data
                buf = buf[length:]
                name = target.split("?", 1)[0].rsplit("/", 1)[-1]
                self.server.hits.append((method, name))
                answer, close = ANSWERS.get(name, ANSWERS["ok"])
                if method == "HEAD" and name == "head-with-body":
                    answer, close = http("200 OK", b'{"a body":"after HEAD"}'), False
                sock.sendall(answer)
                if close:
                    sock.shutdown(socket.SHUT_WR)
                    return
        except OSError:  # the client went away (for example after ResponseTooLarge)
            return
        finally:
            self.server.connections.discard(sock)


class FaultServer(socketserver.ThreadingTCPServer):
    """Scripted HTTP answers on 127.0.0.1 (see :data:`ANSWERS`), each connection in a thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.connections: Set[socket.socket] = set()
        self.hits: List[Tuple[str, str]] = []
        self.thread = threading.Thread(target=self.serve_forever, name="fault-server", daemon=True)

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.server_address[1]

    def start(self) -> "FaultServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        for sock in list(self.connections):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server_close()
        self.thread.join(10)


@pytest.fixture(scope="module")
def fault() -> Iterator[FaultServer]:
    server = FaultServer().start()
    try:
        yield server
    finally:
        server.stop()


def plain(db: Database) -> Database:
    """``db`` with no failure hooks: no retries, so each odd answer is seen once and at once."""
    db.server.failure_hooks.clear()
    return db


@pytest.fixture
def db(fault) -> Database:
    return plain(Database(fault.url + "/db"))


def check_clear(exc: CouchError, cls: type, code: Optional[int], *fragments: str) -> None:
    """``exc`` is a ``cls`` with ``code``, its text bounded and naming the request and ``fragments``."""
    assert type(exc) is cls, "%s: %s" % (type(exc).__name__, exc)
    assert exc.code == code
    text = str(exc)
    assert exc.method and exc.url and exc.url in text
    assert len(text) - len(exc.url) < MAX_TEXT
    if code is not None:
        assert str(code) in text
    for fragment in fragments:
        assert fragment in text
    if exc.body is not None and isinstance(exc.body, str):
        assert len(exc.body) < MAX_TEXT


def still_serving(db: Database) -> None:
    assert db.get("ok")["_id"] == "ok"


# -- error pages and bodies that are not JSON ------------------------------

@pytest.mark.parametrize("style", STYLES)
def test_an_html_error_page_is_a_server_error_with_an_excerpt(style, db):
    with pytest.raises(ServerError) as info:
        call(style, db.get, "html-502")
    check_clear(info.value, ServerError, 502, "502 Bad Gateway")
    assert "nginx" in info.value.body
    still_serving(db)


def test_with_the_default_failure_hooks_an_error_page_ends_as_the_same_exception(fault):
    db = Database(fault.url + "/db")  # whatever the server's default hooks (retries) do first
    with pytest.raises(ServerError) as info:
        db.get("html-502")
    check_clear(info.value, ServerError, 502, "502 Bad Gateway")
    with pytest.raises(ConnectionFailed):
        db.get("garbage")
    still_serving(db)


@pytest.mark.parametrize("name, cls, code, fragment", [
    ("html-200", BadResponse, 200, "<title>Sign in</title>"),
    ("bad-json", BadResponse, 200, '{"_id": "x", "ok": tru'),
    ("not-utf8", BadResponse, 200, '{"_id":"'),
    ("bad-json-409", Conflict, 409, '{"error":"conflict",'),
    ("text-404", NotFound, 404, "Not Found"),
    ("status-500", ServerError, 500, "500"),
    ("status-line-503", ServiceUnavailable, 503, "503"),
    ("odd-status", ServerError, 999, "999"),
])
def test_an_answer_that_is_not_couchdb_json_is_a_clear_exception(name, cls, code, fragment, db):
    with pytest.raises(CouchError) as info:
        db.get(name)
    check_clear(info.value, cls, code, fragment)
    still_serving(db)


@pytest.mark.parametrize("name", ["huge-500", "huge-bad-json"])
def test_a_huge_body_gives_a_bounded_excerpt(name, db):
    with pytest.raises(CouchError) as info:
        db.get(name)
    exc = info.value
    check_clear(exc, ServerError if name == "huge-500" else BadResponse, 500 if name == "huge-500" else 200)
    assert len(str(exc)) < MAX_TEXT + len(exc.url) and len(repr(exc)) < 2 * MAX_TEXT + len(exc.url)
    still_serving(db)


def test_a_huge_valid_body_is_decoded_when_no_limit_is_set(db):
    doc = db.get("huge-ok")
    assert doc["_id"] == "huge" and len(doc["blob"]) == HUGE


@pytest.mark.parametrize("name", ["json-as-text", "json-as-html", "json-untyped"])
def test_json_under_a_wrong_content_type_is_still_decoded(name, db):
    # pouchdb-server labels JSON text/plain when not asked for JSON: the body decides, not the label.
    assert db.get(name)["_id"] == name


def test_a_body_on_a_204_is_ignored_and_does_not_poison_the_connection(fault, db):
    reactor = loop.get_reactor()
    reactor.curl.set_limits(1)  # the next request would reuse the connection
    try:
        op = db.get("json-204", callback=lambda d, s: None)
        assert reactor.run_until_complete(op) is None
        assert op.status.ok and op.status.code == 204
        for _ in range(3):
            still_serving(db)
    finally:
        reactor.curl.set_limits(64)


def test_a_body_after_a_head_answer_does_not_poison_the_connection(fault):
    reactor = loop.get_reactor()
    reactor.curl.set_limits(1)
    try:
        head_db = plain(Database(fault.url + "/head-with-body"))
        assert head_db.exists() is True
        for _ in range(3):
            assert head_db.get("ok")["_id"] == "ok"
    finally:
        reactor.curl.set_limits(64)


@pytest.mark.parametrize("name, fragment", [
    ("garbage", "curl error"),
    ("nothing", "curl error"),
    ("truncated", "curl error"),
    ("bad-chunked", "curl error"),
])
def test_an_answer_that_is_not_http_is_a_transport_error(name, fragment, db):
    with pytest.raises(TransportError) as info:
        db.get(name)
    exc = info.value
    assert isinstance(exc, ConnectionFailed) and exc.code is None
    assert fragment in str(exc) and exc.url in str(exc)
    assert len(str(exc)) - len(exc.url) < MAX_TEXT
    still_serving(db)


@pytest.mark.parametrize("name", ["status-200", "empty-200"])
def test_a_success_status_with_no_body_is_a_bad_response(name, db):
    with pytest.raises(BadResponse) as info:
        db.get(name)
    check_clear(info.value, BadResponse, 200)


def test_json_of_the_wrong_shape_is_a_bad_response(db):
    with pytest.raises(BadResponse) as info:
        db.view("_design/d/wrong-shape")
    check_clear(info.value, BadResponse, 200, "[1,2,3]")


# -- nothing crashes inside the reactor --------------------------------------

#: What ``db.get(name)`` gives for each answer (None: success).
AT_ONCE: Dict[str, Tuple[Optional[type], ...]] = {
    "ok": (None,), "html-502": (ServerError,), "html-200": (BadResponse,), "bad-json": (BadResponse,),
    "not-utf8": (BadResponse,), "bad-json-409": (Conflict,), "text-404": (NotFound,), "json-204": (None,),
    "huge-500": (ServerError,), "huge-bad-json": (BadResponse,), "huge-ok": (None,), "json-as-text": (None,),
    "json-as-html": (None,), "json-untyped": (None,), "status-500": (ServerError,),
    "status-line-503": (ServiceUnavailable,), "status-200": (None, BadResponse), "empty-200": (None, BadResponse),
    "odd-status": (ServerError, BadResponse), "garbage": (ConnectionFailed,), "nothing": (ConnectionFailed,),
    "truncated": (ConnectionFailed,), "bad-chunked": (ConnectionFailed,), "wrong-shape": (None,),
}


def test_every_hostile_answer_at_once_completes_each_callback_once_and_logs_no_error(fault, caplog):
    reactor = loop.Reactor.create()
    loop.set_reactor(reactor)
    reactor.curl.set_limits(4)  # connections are reused from one odd answer to the next
    names = [n for n in ANSWERS if not n.startswith("exact")]
    names += [n for n in names if not n.startswith("huge")] * 2
    outcomes: Dict[int, List[Any]] = {}
    db = plain(Database(fault.url + "/db"))

    def record(i: int) -> Any:
        def callback(data: Any, status: Any) -> None:
            outcomes.setdefault(i, []).append(status)
            if len(outcomes) == len(names):
                reactor.call_soon(reactor.stop)  # after any (wrong) second call
        return callback

    try:
        with caplog.at_level(logging.WARNING):
            for i, name in enumerate(names):
                db.get(name, callback=record(i))
            deadline = reactor.call_later(60, reactor.stop)
            reactor.run()
            deadline.cancel()
            assert sorted(outcomes) == list(range(len(names)))
            for i, name in enumerate(names):
                (status,) = outcomes[i]
                assert status.error in AT_ONCE[name], (name, status.exception)
            assert reactor.run_until_complete(db.get("ok", callback=lambda d, s: None))["_id"] == "ok"
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    finally:
        loop.set_reactor(None)
        reactor.close()


# -- the response size limit -------------------------------------------------

def test_the_limit_is_exact(fault):
    at = plain(Database(fault.url + "/db", max_response_size=1000))
    assert at.get("exact-1000")["_id"] == "exact"
    below = plain(Database(fault.url + "/db", max_response_size=999))
    with pytest.raises(ResponseTooLarge) as info:
        below.get("exact-1000")
    assert info.value.url == below.url + "/exact-1000"
    assert below.get("ok")["_id"] == "ok"  # small answers still pass


def test_a_huge_error_page_is_refused_too_when_a_limit_is_set(fault):
    limited = plain(Database(fault.url + "/db", max_response_size=64 * 1024))
    with pytest.raises(ResponseTooLarge):
        limited.get("huge-500")
    assert limited.get("ok")["_id"] == "ok"


def test_response_too_large_names_the_limit(fault):
    limited = plain(Database(fault.url + "/db", max_response_size=999))
    with pytest.raises(ResponseTooLarge) as info:
        limited.get("exact-1000")
    assert "999" in str(info.value) and "max_response_size" in str(info.value)


@pytest.fixture(scope="module")
def big_db(couch_url) -> Iterator[Tuple[str, int]]:
    """A database whose ``_all_docs?include_docs=true`` is ~75 KB; yields (name, rows)."""
    import uuid

    name = "test_%s" % uuid.uuid4().hex
    db = Couch(couch_url).create(name)
    rows = 60
    # In every copy before the views read them (a cluster: tests.consistency).
    db.save([{"_id": "doc-%03d" % i, "n": i, "text": "%04d" % i * 250} for i in range(rows)], w=EVERY_COPY)
    db.save({"_id": "_design/d", "views": {"by_n": {"map": "function (doc) { emit(doc.n, doc.text); }"}}},
            w=EVERY_COPY)
    db.put_attachment(db.get("doc-000"), b"\x00" * 100_000, "blob.bin")
    try:
        yield name, rows
    finally:
        Couch(couch_url).delete(name)


LIMIT = 16 * 1024


@pytest.mark.parametrize("style", STYLES)
def test_buffered_calls_larger_than_the_limit_are_refused(style, couch_url, big_db):
    name, rows = big_db
    db = Database(couch_url + "/" + name, max_response_size=LIMIT)
    with pytest.raises(ResponseTooLarge):
        call(style, db.all_docs, include_docs=True)
    with pytest.raises(ResponseTooLarge):
        call(style, db.view, "d/by_n")
    with pytest.raises(ResponseTooLarge):
        call(style, db.get_attachment, "doc-000", "blob.bin")
    # Answers under the limit pass, on the same database object.
    assert call(style, db.get, "doc-001")["n"] == 1
    assert len(call(style, db.all_docs, limit=5)) == 5


@pytest.mark.parametrize("style", STYLES)
def test_streamed_calls_of_the_same_size_are_not_limited(style, couch_url, big_db):
    name, rows = big_db
    db = Database(couch_url + "/" + name, max_response_size=LIMIT)
    seen: List[Any] = []
    result = call(style, db.all_docs, include_docs=True, on_row=seen.append)
    assert result.total_rows == rows + 1  # the design document too
    docs = [row.doc for row in seen if not row.id.startswith("_design/")]
    assert [doc["n"] for doc in docs] == list(range(rows))
    assert sum(len(doc["text"]) for doc in docs) > LIMIT
    values: List[Any] = []
    call(style, db.view, "d/by_n", on_row=values.append)
    assert [row.key for row in values] == list(range(rows))
