"""The curl driver: one ``pycurl.CurlMulti`` per reactor, driven by socket and timer events.

libcurl tells us which sockets to watch (``M_SOCKETFUNCTION``) and when to
wake it (``M_TIMERFUNCTION``); the reactor calls ``socket_action`` when a
socket is ready or the timer fires, and finished transfers are drained with
``info_read``.  There is no polling loop, no ``perform()`` spinning and no
thread.  Easy handles are pooled and reused; at most ``max_connections``
transfers run at once and the rest wait in a FIFO queue.

A :class:`Request` carries what to send and, once done, what came back
(``code``, ``header_lines``, ``body`` or ``errno``/``errmsg``); its
``on_done(request)`` is called exactly once, on the reactor.  Give it an
``on_chunk(bytes)`` consumer to receive the body chunk by chunk instead of
buffered (return ``False`` from it to abort the transfer).
"""
from __future__ import annotations

import logging
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional

import pycurl

from .reactor import READ, WRITE

__all__ = ["CurlDriver", "Request"]

log = logging.getLogger("loop")

_POLL_REMOVE = pycurl.POLL_REMOVE
_POLL_IN = pycurl.POLL_IN
_POLL_OUT = pycurl.POLL_OUT
_CSELECT_IN = pycurl.CSELECT_IN
_CSELECT_OUT = pycurl.CSELECT_OUT
_SOCKET_TIMEOUT = pycurl.SOCKET_TIMEOUT
_RESPONSE_CODE = pycurl.RESPONSE_CODE
_URL = pycurl.URL
_WRITEFUNCTION = pycurl.WRITEFUNCTION
_HEADERFUNCTION = pycurl.HEADERFUNCTION
_HTTPHEADER = pycurl.HTTPHEADER
_POSTFIELDS = pycurl.POSTFIELDS
_CUSTOMREQUEST = pycurl.CUSTOMREQUEST
_TIMEOUT_MS = pycurl.TIMEOUT_MS
_CONNECTTIMEOUT_MS = pycurl.CONNECTTIMEOUT_MS

#: libcurl error raised when a write callback refuses data (stream aborted).
E_WRITE_ERROR = pycurl.E_WRITE_ERROR
#: libcurl error for a transfer removed before completion.
E_ABORTED = -1

_BIG_BODY = 64 * 1024


class Request:
    """One HTTP request for the driver, and its outcome once done.

    ``method`` is an upper-case string, ``url`` a full URL (``str``),
    ``headers`` a list of ``"Name: value"`` strings (reuse one list object
    across requests where you can: the driver skips re-setting it), ``body``
    bytes or None.  ``timeout`` and ``connect_timeout`` are seconds (0: none).
    """

    __slots__ = (
        "method", "url", "headers", "body", "timeout", "connect_timeout", "low_speed",
        "on_done", "on_chunk", "options",
        "code", "header_lines", "body_out", "errno", "errmsg", "handle", "_chunks",
        "context", "max_body",
    )

    def __init__(
        self,
        method: str,
        url: str,
        headers: Optional[List[str]] = None,
        body: Optional[bytes] = None,
        on_done: Optional[Callable[["Request"], Any]] = None,
        on_chunk: Optional[Callable[[bytes], Any]] = None,
        timeout: float = 0,
        connect_timeout: float = 0,
        low_speed: Optional[tuple] = None,
        options: Optional[Dict[int, Any]] = None,
        context: Any = None,
        max_body: Optional[int] = None,
    ) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.on_done = on_done
        self.on_chunk = on_chunk
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.low_speed = low_speed
        self.options = options
        self.context = context
        self.max_body = max_body
        self.code: Optional[int] = None
        self.header_lines: List[bytes] = []
        self.body_out: bytes = b""
        self.errno: Optional[int] = None
        self.errmsg: Optional[str] = None
        self.handle: Any = None
        self._chunks: Optional[List[bytes]] = None

    def __repr__(self) -> str:
        # Never print the URL raw: it may carry credentials.
        from .redact import redact_url

        return "<Request %s %s>" % (self.method, redact_url(self.url))


class CurlDriver:
    """Runs HTTP requests on a reactor through one ``pycurl.CurlMulti``.

    Example::

        driver = reactor.curl
        driver.submit(Request("GET", "http://127.0.0.1:5984/", on_done=print))
    """

    def __init__(self, reactor: Any, max_connections: int = 64, max_per_host: int = 0) -> None:
        self.reactor = reactor
        self.multi = pycurl.CurlMulti()
        self.multi.setopt(pycurl.M_SOCKETFUNCTION, self._on_socket)
        self.multi.setopt(pycurl.M_TIMERFUNCTION, self._on_timer)
        self._free: List[pycurl.Curl] = []
        self._queue: Deque[Request] = deque()
        self._watchers: Dict[int, Any] = {}
        self._timer: Any = None
        self._active = 0
        self._busy: set = set()
        self._closed = False
        self.max_connections = 0
        self.max_per_host = 0
        self.set_limits(max_connections, max_per_host)

    # -- configuration --------------------------------------------------
    def set_limits(self, max_connections: int, max_per_host: int = 0) -> None:
        """At most ``max_connections`` transfers at once (the rest queue), and per host."""
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if max_per_host < 0:
            raise ValueError("max_per_host must be 0 (no limit) or more")
        self.max_connections = max_connections
        self.max_per_host = max_per_host
        multi = self.multi
        multi.setopt(pycurl.M_MAX_TOTAL_CONNECTIONS, max_connections)
        multi.setopt(pycurl.M_MAXCONNECTS, max_connections)
        multi.setopt(pycurl.M_MAX_HOST_CONNECTIONS, max_per_host)
        while self._queue and self._active < self.max_connections:
            self._start(self._queue.popleft())

    @property
    def active(self) -> int:
        """Transfers currently handed to libcurl."""
        return self._active

    @property
    def queued(self) -> int:
        """Requests waiting for a free slot."""
        return len(self._queue)

    @property
    def pooled_handles(self) -> int:
        """Idle easy handles kept for reuse."""
        return len(self._free)

    # -- submitting -----------------------------------------------------
    def submit(self, request: Request) -> Request:
        """Start ``request`` now, or queue it if ``max_connections`` transfers are running."""
        if self._closed:
            raise RuntimeError("the curl driver is closed")
        if self._active < self.max_connections and not self._queue:
            self._start(request)
        else:
            self._queue.append(request)
        return request

    def cancel(self, request: Request) -> bool:
        """Stop ``request`` (queued or running) without calling its ``on_done``.

        Its easy handle goes back to the pool.  Returns False if it was not pending.
        """
        curl = request.handle
        if curl is None:
            try:
                self._queue.remove(request)
            except ValueError:
                return False
            return True
        self.multi.remove_handle(curl)
        self._active -= 1
        self._busy.discard(curl)
        request.handle = None
        self._release(curl, request)
        self._start_queued()
        return True

    def _new_handle(self) -> pycurl.Curl:
        curl = pycurl.Curl()
        curl.setopt(pycurl.NOSIGNAL, 1)
        curl.setopt(pycurl.TCP_NODELAY, 1)
        curl.setopt(pycurl.TCP_KEEPALIVE, 1)
        curl.setopt(pycurl.FOLLOWLOCATION, 0)
        curl.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        curl.mode = None  # what the method options are set to
        curl.hdrs = None  # the header list object last set
        curl.timeouts = (0, 0)
        curl.extra = None  # the extra options last set
        curl.request = None
        curl.low_speed = None
        return curl

    def _start(self, request: Request) -> None:
        free = self._free
        curl = free.pop() if free else self._new_handle()
        curl.setopt(_URL, request.url)

        method = request.method
        body = request.body
        if body is None and method in ("PUT", "POST"):
            body = b""
        if body is None:
            if method == "GET" or method == "HEAD":
                if curl.mode != method:
                    if curl.mode is not None and curl.mode not in ("GET", "HEAD"):
                        curl.unsetopt(_CUSTOMREQUEST)
                    if method == "GET":
                        curl.setopt(pycurl.HTTPGET, 1)
                    else:
                        curl.setopt(pycurl.NOBODY, 1)
                    curl.mode = method
            else:
                if curl.mode != "custom":
                    curl.setopt(pycurl.HTTPGET, 1)
                    curl.mode = "custom"
                curl.setopt(_CUSTOMREQUEST, method)
        else:
            curl.setopt(_POSTFIELDS, body)
            if method == "POST":
                if curl.mode != "POST":
                    if curl.mode is not None and curl.mode not in ("GET", "HEAD"):
                        curl.unsetopt(_CUSTOMREQUEST)
                    curl.mode = "POST"
            else:
                curl.setopt(_CUSTOMREQUEST, method)
                curl.mode = "body"

        headers = request.headers
        if headers is not curl.hdrs:
            curl.setopt(_HTTPHEADER, headers or [])
            curl.hdrs = headers

        timeouts = (request.timeout, request.connect_timeout)
        if timeouts != curl.timeouts:
            curl.setopt(_TIMEOUT_MS, int(request.timeout * 1000))
            curl.setopt(_CONNECTTIMEOUT_MS, int(request.connect_timeout * 1000))
            curl.timeouts = timeouts
        low_speed = request.low_speed
        if low_speed != curl.low_speed:
            limit, seconds = low_speed or (0, 0)
            curl.setopt(pycurl.LOW_SPEED_LIMIT, int(limit))
            curl.setopt(pycurl.LOW_SPEED_TIME, int(seconds))
            curl.low_speed = low_speed
        options = request.options
        if options is not curl.extra:
            if curl.extra:
                for key in curl.extra:
                    curl.unsetopt(key)
            if options:
                for key, value in options.items():
                    curl.setopt(key, value)
            curl.extra = options

        if request.on_chunk is None:
            chunks: List[bytes] = []
            request._chunks = chunks
            if request.max_body:
                curl.setopt(_WRITEFUNCTION, _limited_writer(chunks, request.max_body))
            else:
                curl.setopt(_WRITEFUNCTION, chunks.append)
        else:
            curl.setopt(_WRITEFUNCTION, _stream_writer(request.on_chunk))
        curl.setopt(_HEADERFUNCTION, request.header_lines.append)

        curl.request = request
        request.handle = curl
        self._active += 1
        self._busy.add(curl)
        try:
            self.multi.add_handle(curl)
        except pycurl.error as exc:
            self._active -= 1
            self._busy.discard(curl)
            request.handle = None
            curl.request = None
            self._free.append(curl)
            request.errno = exc.args[0] if exc.args else E_ABORTED
            request.errmsg = str(exc.args[1]) if len(exc.args) > 1 else "could not start transfer"
            self.reactor.call_soon(self._deliver, request)

    # -- libcurl callbacks ----------------------------------------------
    def _on_socket(self, event: int, fd: int, multi: Any, data: Any) -> None:
        watchers = self._watchers
        if event == _POLL_REMOVE:
            watcher = watchers.pop(fd, None)
            if watcher is not None:
                watcher.close()
            return
        readable = bool(event & _POLL_IN)
        writable = bool(event & _POLL_OUT)
        watcher = watchers.get(fd)
        if watcher is None:
            watchers[fd] = self.reactor.watch(fd, readable, writable, self._on_ready)
        else:
            watcher.update(readable, writable)

    def _on_timer(self, timeout_ms: int) -> None:
        timer = self._timer
        if timer is not None:
            timer.cancel()
            self._timer = None
        if timeout_ms >= 0 and not self._closed:
            self._timer = self.reactor.call_later(timeout_ms / 1000.0, self._on_timeout)

    # -- reactor callbacks ----------------------------------------------
    def _on_ready(self, fd: int, events: int) -> None:
        mask = 0
        if events & READ:
            mask |= _CSELECT_IN
        if events & WRITE:
            mask |= _CSELECT_OUT
        self._action(fd, mask)

    def _on_timeout(self) -> None:
        self._timer = None
        self._action(_SOCKET_TIMEOUT, 0)

    def _action(self, fd: int, mask: int) -> None:
        if self._closed:
            return
        try:
            _, running = self.multi.socket_action(fd, mask)
        except pycurl.error:  # pragma: no cover - libcurl reports per transfer
            log.exception("socket_action failed")
            running = -1
        if running != self._active:
            self._drain()

    def _drain(self) -> None:
        info_read = self.multi.info_read
        while True:
            queued, ok_list, err_list = info_read()
            for curl in ok_list:
                self._finish(curl, None, None)
            for curl, errno, errmsg in err_list:
                self._finish(curl, errno, errmsg)
            if not queued:
                break

    def _finish(self, curl: pycurl.Curl, errno: Optional[int], errmsg: Optional[str]) -> None:
        request = curl.request
        code = curl.getinfo(_RESPONSE_CODE)
        self.multi.remove_handle(curl)
        self._active -= 1
        self._busy.discard(curl)
        if request is None:  # pragma: no cover - cancelled meanwhile
            self._release(curl, None)
            return
        request.handle = None
        request.code = code or None
        if errno is not None:
            request.errno = errno
            request.errmsg = errmsg
        chunks = request._chunks
        if chunks is not None:
            request.body_out = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
            request._chunks = None
        self._release(curl, request)
        self._start_queued()
        self._deliver(request)

    def _release(self, curl: pycurl.Curl, request: Optional[Request]) -> None:
        curl.request = None
        if request is not None and request.body is not None and len(request.body) > _BIG_BODY:
            curl.setopt(_POSTFIELDS, b"")  # do not keep a large body alive in the pool
        if len(self._free) < self.max_connections:
            self._free.append(curl)
        else:
            curl.close()

    def _start_queued(self) -> None:
        queue = self._queue
        while queue and self._active < self.max_connections:
            self._start(queue.popleft())

    def _deliver(self, request: Request) -> None:
        on_done = request.on_done
        if on_done is None:
            return
        try:
            on_done(request)
        except Exception:
            log.exception("error in request completion handler for %r", request)

    # -- shutting down --------------------------------------------------
    def close(self) -> None:
        """Abort every transfer (their ``on_done`` sees ``E_ABORTED``) and free libcurl's resources."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        aborted: List[Request] = list(self._queue)
        self._queue.clear()
        for curl in list(self._busy):
            request = curl.request
            self.multi.remove_handle(curl)
            if request is not None:
                aborted.append(request)
            curl.close()
        self._busy.clear()
        for watcher in self._watchers.values():
            watcher.close()
        self._watchers.clear()
        for curl in self._free:
            curl.close()
        self._free.clear()
        self.multi.close()
        for request in aborted:
            request.handle = None
            request.errno = E_ABORTED
            request.errmsg = "reactor closed"
            self._deliver(request)


def _limited_writer(chunks: List[bytes], limit: int) -> Callable[[bytes], Optional[int]]:
    size = [0]

    def write(chunk: bytes) -> Optional[int]:
        size[0] += len(chunk)
        if size[0] > limit:
            return 0  # libcurl aborts with E_WRITE_ERROR
        chunks.append(chunk)
        return None

    return write


def _stream_writer(consumer: Callable[[bytes], Any]) -> Callable[[bytes], Optional[int]]:
    def write(chunk: bytes) -> Optional[int]:
        try:
            if consumer(chunk) is False:
                return 0  # makes libcurl abort with E_WRITE_ERROR
        except Exception:
            log.exception("stream consumer failed; aborting transfer")
            return 0
        return None

    return write
