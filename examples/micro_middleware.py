"""A CouchApp micro-middleware: a tiny HTTP service on corduroy's own reactor.

The listening socket, each client connection and every CouchDB request run
on one ``loop`` reactor, in one thread, with no framework: the server
watches its sockets with ``reactor.watch(fd, ...)`` and does non-blocking
``accept``/``recv``/``send`` in the watcher callbacks, while corduroy's
requests go through the same reactor's curl driver.  It runs on every
backend (``uvloop``, ``asyncio``, ``pyuv`` where it is installed, and
``gevent``)::

    reactor = loop.Reactor.create("uvloop")
    loop.set_reactor(reactor)                 # corduroy's calls in this thread use it
    db = Couch().create("people")             # blocking: the reactor is not running yet
    server = MicroServer(reactor, GreeterApp(db))
    reactor.run()                             # serve until reactor.stop()

Inside a watcher callback the reactor is running, so corduroy calls never
block: they take a ``callback=`` or are ``yield``-ed in a ``@relax``
generator.  :class:`GreeterApp` does one of each:

``GET /hello/<id>``   a callback writes ``hello First Last`` (``hello whoever you are`` for an unknown id)
``POST /visits/<id>`` a ``@relax`` generator counts a visit in the document
                      (created on the first visit), retrying on a conflict,
                      and answers ``{"id": ..., "visits": n}``

Run it (it serves on a free loopback port, sends itself a few requests from a
client thread, prints the answers and exits)::

    COUCHDB_URL=http://admin:pw@127.0.0.1:5984 python examples/micro_middleware.py --backend all
"""
from __future__ import annotations

import argparse
import http.client
import json
import socket
import sys
import threading
import uuid
from http import HTTPStatus
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union
from urllib.parse import unquote, urlsplit

import loop
from corduroy import Conflict, Couch, Database, NotFound, Status, relax

#: Requests larger than this are refused (413); header blocks too (431).
MAX_BODY = 1 << 20
MAX_HEAD = 64 << 10

Body = Union[str, bytes, Dict[str, Any], List[Any]]
Respond = Callable[..., None]


class HTTPRequest:
    """One parsed request: ``method``, ``path`` (percent-decoded), ``query``, ``headers``, ``body``."""

    __slots__ = ("method", "path", "query", "headers", "body", "version")

    def __init__(self, method: str, target: str, version: str, headers: Dict[str, str], body: bytes) -> None:
        parts = urlsplit(target)
        self.method = method
        self.path = unquote(parts.path)
        self.query = parts.query
        self.version = version
        self.headers = headers  # lower-case names
        self.body = body

    def __repr__(self) -> str:
        return "<HTTPRequest %s %s>" % (self.method, self.path)


class Connection:
    """One client connection: reads requests, hands each to the app, writes the answers.

    Requests on a kept-alive connection are handled one at a time, in order:
    the next buffered request goes to the app once the previous one is
    answered.  Everything happens in the reactor's callbacks.
    """

    def __init__(self, server: "MicroServer", sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.inbuf = b""
        self.outbuf = b""
        self.busy = False          # a request is with the app
        self.close_after = False   # close once outbuf is sent (no keep-alive)
        self.eof = False           # the client has closed its side
        self.closed = False
        self._pumping = False
        self.watcher = server.reactor.watch(sock.fileno(), True, False, self._on_ready)

    # -- reactor events --------------------------------------------------
    def _on_ready(self, fd: int, events: int) -> None:
        if events & loop.WRITE and self.outbuf:
            self._flush()
        if events & loop.READ and not self.closed:
            self._read()
        self._pump()

    def _read(self) -> None:
        while True:
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                self.close()
                return
            if not chunk:  # the client has closed its side: answer what it sent, then close
                self.eof = True
                return
            self.inbuf += chunk
            if len(chunk) < 65536:
                return

    def _flush(self) -> None:
        try:
            sent = self.sock.send(self.outbuf)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        self.outbuf = self.outbuf[sent:]

    def _pump(self) -> None:
        """Hand buffered requests to the app while it is free, then close or pick what to watch."""
        if self._pumping or self.closed:
            return
        self._pumping = True
        try:
            while not (self.busy or self.close_after or self.closed) and self._dispatch():
                pass
        finally:
            self._pumping = False
        if self.closed:
            return
        if not self.busy and not self.outbuf and (self.eof or self.close_after):
            self.close()  # nothing more will come, or the answer said "Connection: close"
            return
        # Stop reading while a request is with the app and plenty is already buffered.
        readable = not (self.eof or self.close_after) and len(self.inbuf) <= MAX_HEAD + MAX_BODY
        self.watcher.update(readable, bool(self.outbuf))

    # -- requests and responses --------------------------------------------
    def _dispatch(self) -> bool:
        """Parse one buffered request and give it to the app; False if none is complete yet."""
        head_end = self.inbuf.find(b"\r\n\r\n")
        if head_end < 0:
            if len(self.inbuf) > MAX_HEAD:
                self._fail(431, "request header too large")
                return True
            return False
        try:
            request_line, *header_lines = self.inbuf[:head_end].decode("latin-1").split("\r\n")
            method, target, version = request_line.split(" ")
            headers = {}
            for line in header_lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
        except ValueError:
            self._fail(400, "malformed request")
            return True
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._fail(501, "chunked request bodies are not supported")
            return True
        if length < 0 or length > MAX_BODY:
            self._fail(413, "request body too large")
            return True
        total = head_end + 4 + length
        if len(self.inbuf) < total:
            return False  # the rest of the body is still on its way
        body, self.inbuf = self.inbuf[head_end + 4:total], self.inbuf[total:]
        request = HTTPRequest(method, target, version, headers, body)
        connection_header = headers.get("connection", "").lower()
        keep_alive = connection_header != "close" if version == "HTTP/1.1" else connection_header == "keep-alive"
        self.busy = True
        answered: List[bool] = []

        def respond(code: int, body: Body = b"", content_type: Optional[str] = None) -> None:
            if answered:
                raise RuntimeError("this request was already answered")
            answered.append(True)
            self._respond(code, body, content_type, keep_alive)

        try:
            self.server.app(request, respond)
        except Exception:
            self.server.log_error("the app failed on %r" % (request,))
            if not answered:
                respond(500, "internal error")
        return True

    def _fail(self, code: int, message: str) -> None:
        self.busy = True
        self._respond(code, message, None, False)

    def _respond(self, code: int, body: Body, content_type: Optional[str], keep_alive: bool) -> None:
        self.busy = False
        if self.closed:
            return  # the client went away while CouchDB was answering
        if isinstance(body, (dict, list)):
            payload = json.dumps(body).encode("utf-8")
            content_type = content_type or "application/json"
        elif isinstance(body, str):
            payload = body.encode("utf-8")
            content_type = content_type or "text/plain; charset=utf-8"
        else:
            payload = body
            content_type = content_type or "application/octet-stream"
        head = "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: %s\r\n\r\n" % (
            code, HTTPStatus(code).phrase, content_type, len(payload), "keep-alive" if keep_alive else "close")
        if not keep_alive:
            self.close_after = True
        self.outbuf += head.encode("latin-1") + payload
        self._flush()
        self._pump()  # the next request (a no-op when called from inside _pump)

    def close(self) -> None:
        """Stop watching the socket, then close it."""
        if self.closed:
            return
        self.closed = True
        self.watcher.close()  # before the fd goes away
        self.sock.close()
        self.server.connections.discard(self)


class MicroServer:
    """An HTTP/1.1 server whose sockets are watched by a ``loop`` reactor.

    ``app(request, respond)`` is called for each request on the reactor;
    it answers, now or from a later callback, with ``respond(code, body)``
    (``body`` a str, bytes, or a dict/list sent as JSON).
    """

    def __init__(self, reactor: loop.Reactor, app: Callable[[HTTPRequest, Respond], Any],
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.reactor = reactor
        self.app = app
        self.connections: set = set()
        self.errors: List[str] = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen(128)
        self.listener.setblocking(False)
        self.address: Tuple[str, int] = self.listener.getsockname()
        self.watcher = reactor.watch(self.listener.fileno(), True, False, self._on_accept)

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return self.address[1]

    def _on_accept(self, fd: int, events: int) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of file descriptors: try again on the next event
                self.log_error("accept failed: %s" % exc)
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connections.add(Connection(self, sock))

    def log_error(self, message: str) -> None:
        """Keep an error message (a real service would log it)."""
        import traceback

        self.errors.append(message + "\n" + traceback.format_exc())

    def close(self) -> None:
        """Stop listening and close every connection."""
        self.watcher.close()
        self.listener.close()
        for connection in list(self.connections):
            connection.close()


class GreeterApp:
    """The middleware's routes, over one database of people."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def __call__(self, request: HTTPRequest, respond: Respond) -> None:
        parts = request.path.split("/")
        if len(parts) == 3 and parts[2]:
            if request.method == "GET" and parts[1] == "hello":
                return self.hello(parts[2], respond)
            if request.method == "POST" and parts[1] == "visits":
                return self.visit(parts[2], respond)
        respond(404, {"error": "not_found", "reason": "no route for %s %s" % (request.method, request.path)})

    def hello(self, user_id: str, respond: Respond) -> None:
        """Callback style: greet the person, answer from the callback."""

        def got_user_doc(doc: Any, status: Status) -> None:
            if status.ok:
                respond(200, "hello %s %s" % (doc["first"], doc["last"]))
            elif status.error is NotFound:
                respond(200, "hello whoever you are")
            else:
                respond(502, {"error": "couchdb", "reason": str(status.exception)})

        self.db.get(user_id, callback=got_user_doc)

    def visit(self, user_id: str, respond: Respond) -> None:
        """@relax style: count the visit, then answer from the Operation's callback."""

        def counted(visits: Any, status: Status) -> None:
            if status.ok:
                respond(200, {"id": user_id, "visits": visits})
            else:
                respond(502, {"error": "couchdb", "reason": str(status.exception)})

        self.count_visit(user_id).add_callback(counted)

    @relax
    def count_visit(self, user_id: str):  # type: ignore[no-untyped-def]
        """Add one to the document's ``visits`` (creating it); retry when another write got there first."""
        while True:
            try:
                doc = yield self.db.get(user_id)
            except NotFound:
                doc = {"_id": user_id}
            doc["visits"] = doc.get("visits", 0) + 1
            try:
                yield self.db.save(doc)
            except Conflict:
                continue
            return doc["visits"]


PEOPLE = [
    {"_id": "lackey-129", "first": "Oliver", "last": "Reeder"},
    {"_id": "lackey-130", "first": "Angela", "last": "Heaney"},
]


def serve_while(reactor: loop.Reactor, client: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Run the reactor while ``client()`` runs in a thread; return what it returned (or raise what it raised).

    The client thread stops the reactor with ``call_soon_threadsafe`` when it
    is done; a timer stops it after ``timeout`` seconds in any case.
    """
    outcome: Dict[str, Any] = {}

    def run_client() -> None:
        try:
            outcome["result"] = client()
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            reactor.call_soon_threadsafe(reactor.stop)

    thread = threading.Thread(target=run_client, daemon=True)
    guard = reactor.call_later(timeout, reactor.stop)
    thread.start()
    try:
        reactor.run()
    finally:
        guard.cancel()
    thread.join(5)
    if thread.is_alive() or not outcome:
        raise TimeoutError("the client did not finish within %g s" % timeout)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def fetch(conn: http.client.HTTPConnection, method: str, path: str) -> Tuple[int, str]:
    """One request on a kept-alive connection: (status, body text)."""
    conn.request(method, path, body=b"" if method == "POST" else None)
    response = conn.getresponse()
    return response.status, response.read().decode("utf-8")


def demo(backend: str) -> None:
    """Serve GreeterApp on ``backend`` and print the answers to a few requests."""
    reactor = loop.Reactor.create(backend)
    loop.set_reactor(reactor)
    try:
        couch = Couch(timeout=30)
        name = "corduroy_middleware_%s" % uuid.uuid4().hex[:8]
        db = couch.create(name)  # blocking calls run the reactor until they complete
        try:
            db.save([dict(person) for person in PEOPLE])
            server = MicroServer(reactor, GreeterApp(db))
            print("[%s] listening on 127.0.0.1:%d" % (reactor.backend, server.port))

            def client() -> List[str]:
                lines = []
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
                try:  # one kept-alive connection for all of them
                    for method, path in [("GET", "/hello/lackey-129"), ("GET", "/hello/nobody"),
                                         ("POST", "/visits/lackey-130"), ("POST", "/visits/lackey-130"),
                                         ("GET", "/nowhere")]:
                        code, body = fetch(conn, method, path)
                        lines.append("%s %-18s -> %d %s" % (method, path, code, body))
                finally:
                    conn.close()
                return lines

            try:
                lines = serve_while(reactor, client)
            finally:
                server.close()
            for line in lines:
                print("[%s] %s" % (reactor.backend, line))
            print("[%s] lackey-130 in CouchDB: visits=%d" % (reactor.backend, db.get("lackey-130")["visits"]))
            for error in server.errors:
                print(error, file=sys.stderr)
        finally:
            couch.delete(name)
    finally:
        loop.set_reactor(None)
        reactor.close()


def main(argv: Optional[Sequence[str]] = None) -> int:
    available = loop.available_backends()
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--backend", choices=list(available) + ["all"], default=loop.default_backend(),
                        help="the reactor backend (default: %(default)s; all: each available one)")
    args = parser.parse_args(argv)
    for backend in available if args.backend == "all" else [args.backend]:
        demo(backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
