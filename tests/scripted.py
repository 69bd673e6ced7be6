"""A tiny scripted HTTP server for tests of client behaviour no CouchDB shows on demand (redirects, 503s).

Subclasses give the request handler and how scripts are keyed; this holds
what they share: what was seen, the scripts, the URL, and running it on a
thread of its own for the length of a ``with`` block.
"""
from __future__ import annotations

import contextlib
import http.server
import threading
from collections import defaultdict, deque
from typing import Iterator, Type, TypeVar

WAIT = 20.0

S = TypeVar("S", bound="ScriptedServer")


class ScriptedServer(http.server.ThreadingHTTPServer):
    """Answers on 127.0.0.1 (``port``, or a free one) as its handler reads ``scripts``; records requests in ``seen``."""

    daemon_threads = True
    #: The request handler class (a subclass sets it).
    handler: Type[http.server.BaseHTTPRequestHandler]

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), self.handler)
        self.seen: list = []
        self.scripts: dict = defaultdict(deque)

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.server_address[1]

    @classmethod
    @contextlib.contextmanager
    def running(cls: Type[S]) -> Iterator[S]:
        """A server of this class serving on its own thread until the block ends."""
        server = cls()
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield server
        finally:
            server.shutdown()
            server.server_close()
            thread.join(WAIT)
