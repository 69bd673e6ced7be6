"""The reference: raw pycurl, one CurlMulti, reused easy handles, a tight select loop.

The loop is ``perform()`` until it stops asking to be called again, drain
``info_read()``, then ``multi.select(1.0)``; each finished body is parsed
with ``simplejson``.  No framework, no futures: the least Python a request
can cost while still being a correct HTTP/1.1 client with keep-alive.
Timers (for W6's open loop) are a heap consulted between selects.
"""
from __future__ import annotations

import heapq
from collections import deque
from time import perf_counter, sleep
from typing import Any, Callable, Dict, List, Optional, Tuple

import pycurl
import simplejson

from ..fixtures import split_url
from . import HTTPStatusError, quote_id, rows_path

__all__ = ["PycurlMulti"]

_loads = simplejson.loads
_dumps = simplejson.dumps
_E_CALL_MULTI_PERFORM = pycurl.E_CALL_MULTI_PERFORM
_URL = pycurl.URL
_RESPONSE_CODE = pycurl.RESPONSE_CODE

#: Conflict rounds before an update gives up (corduroy's resolve makes 25).
MAX_ATTEMPTS = 25


class CurlError(Exception):
    """A transfer failed below HTTP."""


class PycurlMulti:
    """Raw pycurl: ``CurlMulti`` + ``select`` loop, handles reused, simplejson bodies."""

    family = "callback"

    def __init__(self, url: str, db: str, concurrency: int) -> None:
        base, user, password = split_url(url)
        self.db_url = base + "/" + quote_id(db)
        self.userpwd = "%s:%s" % (user, password) if user is not None else None
        self.concurrency = max(1, concurrency)
        self.modes: Dict[str, str] = {}
        self.plain_headers = ["Accept: application/json"]
        self.json_headers = ["Accept: application/json", "Content-Type: application/json", "Expect:"]
        self.multi: Any = None
        self.free: List[Any] = []
        self.queue: Any = deque()
        self.active = 0
        self.running = False
        self.timers: List[Tuple[float, int, Callable[[], Any]]] = []
        self._timer_seq = 0

    def open(self) -> None:
        self.multi = pycurl.CurlMulti()
        self.multi.setopt(pycurl.M_MAX_TOTAL_CONNECTIONS, self.concurrency)
        self.multi.setopt(pycurl.M_MAXCONNECTS, self.concurrency)

    def close(self) -> None:
        for curl in self.free:
            curl.close()
        self.free = []
        if self.multi is not None:
            self.multi.close()
            self.multi = None

    # -- transfers --------------------------------------------------------
    def _new_handle(self) -> Any:
        curl = pycurl.Curl()
        curl.setopt(pycurl.NOSIGNAL, 1)
        curl.setopt(pycurl.TCP_NODELAY, 1)
        curl.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        if self.userpwd:
            curl.setopt(pycurl.USERPWD, self.userpwd)
        chunks: List[bytes] = []
        curl.chunks = chunks
        curl.setopt(pycurl.WRITEFUNCTION, chunks.append)
        curl.setopt(pycurl.HTTPHEADER, self.plain_headers)
        curl.method = "GET"
        curl.done = None
        return curl

    def request(self, method: str, url: str, body: Optional[bytes], done: Callable[[Any, Any], None]) -> None:
        """Start a transfer; ``done(status_code_and_body_or_None, exc)`` when it ends."""
        if self.active >= self.concurrency:
            self.queue.append((method, url, body, done))
            return
        curl = self.free.pop() if self.free else self._new_handle()
        curl.setopt(_URL, url)
        if method != curl.method:
            if method == "GET":
                curl.setopt(pycurl.HTTPGET, 1)
                curl.unsetopt(pycurl.CUSTOMREQUEST)
                curl.setopt(pycurl.HTTPHEADER, self.plain_headers)
            elif curl.method == "GET":
                curl.setopt(pycurl.HTTPHEADER, self.json_headers)
            if method == "PUT":
                curl.setopt(pycurl.CUSTOMREQUEST, "PUT")
            elif method == "POST":
                curl.unsetopt(pycurl.CUSTOMREQUEST)
            curl.method = method
        if body is not None:
            curl.setopt(pycurl.POSTFIELDS, body)
        curl.done = done
        self.active += 1
        self.multi.add_handle(curl)

    def _finish(self, curl: Any, error: Optional[Tuple[int, str]]) -> None:
        self.multi.remove_handle(curl)
        self.active -= 1
        done = curl.done
        curl.done = None
        chunks = curl.chunks
        body = b"".join(chunks)
        chunks.clear()
        code = curl.getinfo(_RESPONSE_CODE)
        self.free.append(curl)
        if self.queue:
            self.request(*self.queue.popleft())
        if error is not None:
            done(None, CurlError("curl error %s: %s" % error))
        elif code >= 400:
            done(None, HTTPStatusError(code, body))
        else:
            done(body, None)

    # -- the loop ---------------------------------------------------------
    def run(self) -> None:
        """Run the select loop until :meth:`stop`."""
        multi = self.multi
        perform = multi.perform
        info_read = multi.info_read
        select = multi.select
        timers = self.timers
        self.running = True
        while self.running:
            while True:
                ret, _ = perform()
                if ret != _E_CALL_MULTI_PERFORM:
                    break
            while True:
                queued, ok_list, err_list = info_read()
                for curl in ok_list:
                    self._finish(curl, None)
                for curl, errno, errmsg in err_list:
                    self._finish(curl, (errno, errmsg))
                if not queued:
                    break
            if not self.running:
                break
            timeout = 1.0
            if timers:
                now = perf_counter()
                while timers and timers[0][0] <= now:
                    heapq.heappop(timers)[2]()
                    now = perf_counter()
                if not self.running:
                    break
                if timers:
                    timeout = min(timeout, max(0.0, timers[0][0] - now))
            if self.active:
                select(timeout)
            elif timers:
                sleep(timeout)
            elif not self.queue:
                break  # nothing in flight and nothing scheduled: nothing can call stop()

    def stop(self) -> None:
        self.running = False

    def call_later(self, delay: float, fn: Callable[[], Any]) -> None:
        self._timer_seq += 1
        heapq.heappush(self.timers, (perf_counter() + delay, self._timer_seq, fn))

    # -- primitives -------------------------------------------------------
    def primitives(self) -> Dict[str, Callable[..., Any]]:
        db_url = self.db_url
        request = self.request

        def get(doc_id: str, done: Callable[[Any, Any], None]) -> None:
            def parsed(body: Any, exc: Any) -> None:
                if exc is not None:
                    done(None, exc)
                else:
                    done(_loads(body), None)

            request("GET", db_url + "/" + quote_id(doc_id), None, parsed)

        def bulk(docs: list, done: Callable[[Any, Any], None]) -> None:
            def parsed(body: Any, exc: Any) -> None:
                if exc is not None:
                    done(None, exc)
                else:
                    done(sum(1 for row in _loads(body) if row.get("ok")), None)

            request("POST", db_url + "/_bulk_docs", _dumps({"docs": docs}).encode(), parsed)

        def rows(n: int, source: str, done: Callable[[Any, Any], None]) -> None:
            self.modes["rows"] = "buffered"

            def parsed(body: Any, exc: Any) -> None:
                if exc is not None:
                    done(None, exc)
                else:
                    done(len(_loads(body)["rows"]), None)

            request("GET", "%s%s?limit=%d" % (db_url, rows_path(source), n), None, parsed)

        def changes(since: Any, limit: int, done: Callable[[Any, Any], None]) -> None:
            def parsed(body: Any, exc: Any) -> None:
                if exc is not None:
                    done(None, exc)
                else:
                    data = _loads(body)
                    done((len(data["results"]), data["last_seq"]), None)

            request("GET", "%s/_changes?since=%s&limit=%d" % (db_url, quote_id(str(since)), limit), None, parsed)

        def update(doc: dict, done: Callable[[Any, Any], None]) -> None:
            url = db_url + "/" + quote_id(doc["_id"])
            attempts = [0]

            def put() -> None:
                attempts[0] += 1
                request("PUT", url, _dumps(doc).encode(), saved)

            def saved(body: Any, exc: Any) -> None:
                if exc is None:
                    doc["_rev"] = _loads(body)["rev"]
                    done(doc, None)
                elif isinstance(exc, HTTPStatusError) and exc.code == 409 and attempts[0] < MAX_ATTEMPTS:
                    request("GET", url, None, fetched)
                else:
                    done(None, exc)

            def fetched(body: Any, exc: Any) -> None:
                if exc is not None:
                    done(None, exc)
                    return
                doc["_rev"] = _loads(body)["_rev"]
                put()

            put()

        return {"get": get, "bulk": bulk, "rows": rows, "changes": changes, "update": update}
