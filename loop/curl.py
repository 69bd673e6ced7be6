"""The curl driver: one ``pycurl.CurlMulti`` per reactor, driven by socket and timer events.

libcurl tells us which sockets to watch (``M_SOCKETFUNCTION``) and when to
wake it (``M_TIMERFUNCTION``); when a socket is ready or the timer fires,
the reactor runs curl, and finished transfers are drained with
``info_read``.  Nothing polls, nothing spins and there is no thread: curl
runs only when one of its sockets changed state or its timer is due.

How the sockets reach the reactor is the driver's *mode*:

``"perform"`` (the default on Linux with pycurl 7.49 or later)
    Every socket curl opens (``SOCKOPTFUNCTION``) or asks us to watch
    (``M_SOCKETFUNCTION``) goes into a private epoll set, edge-triggered for
    input; the reactor watches only that set's descriptor.  When it
    fires, one ``perform()`` runs every transfer that can move, and
    ``info_read`` is drained once: the select loop's cost, without its
    blocking.  A pooled connection stays in the set while idle
    (edge-triggered, it wakes the reactor once when its server closes it,
    not every turn).  A socket curl has something to send on (or is
    connecting) is watched for output too, level-triggered, until it is
    done: ``fdset()`` after each ``perform()`` says which.  (Output edges
    would wake the reactor for every acknowledgement, and curl may stop
    writing before the socket is full, after which no edge comes.)  The
    price is that such a wake-up visits every running transfer; so with
    many transfers running and only one or a few sockets ready, it runs
    ``socket_action`` on just those instead (see :data:`SPARSE_FROM`).
    Thousands of quiet long-lived transfers (continuous feeds) still cost
    more here than in batch mode, on every wake-up with many sockets ready.
``"batch"``
    The same private epoll set, level-triggered with the events curl asks
    for; each ready socket gets its own ``socket_action``, and
    ``info_read`` is drained once per turn.
``"watch"`` (the default without epoll, or with older pycurl)
    Each socket gets its own reactor watcher and ``socket_action``.

``LOOP_CURL_MODE`` in the environment picks the default mode.

Easy handles are pooled and reused; at most ``max_connections``
transfers run at once and the rest wait in a FIFO queue.  With HTTP/2
multiplexing (requests whose options ask for HTTP/2, see
:meth:`CurlDriver.set_limits`'s ``max_streams``) several transfers share one
connection, and up to ``max_connections * max_streams`` run at once.

A :class:`Request` carries what to send and, once done, what came back
(``code``, ``header_lines``, ``body`` or ``errno``/``errmsg``); its
``on_done(request)`` is called exactly once, on the reactor.  Give it an
``on_chunk(bytes)`` consumer to receive the body chunk by chunk instead of
buffered (return ``False`` from it to abort the transfer, or
:data:`WRITEFUNC_PAUSE` to pause it until :meth:`CurlDriver.resume`).
"""
from __future__ import annotations

import atexit
import logging
import os
import select
import weakref
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import pycurl

from .redact import describe

__all__ = ["CurlDriver", "Request"]

# No CLOSESOCKETFUNCTION is ever set: pycurl cannot run one for a pooled
# connection whose easy handle is not attached to the multi at that moment
# (cancelling a transfer on a reused connection, closing the multi); it then
# warns ("closesocket_callback failed to acquire thread"), leaves the socket
# open, and with warnings as errors leaves an exception set inside libcurl.
# libcurl closes its sockets itself; the epoll modes need no word of it (the
# kernel drops a closed descriptor from an epoll set, and a reused number is
# registered afresh by _new_socket), and watch mode stops watching a socket as
# soon as curl is done with it (POLL_REMOVE).


def _pycurl_version() -> tuple:
    text = pycurl.version.split()[0].split("/")[-1]  # "PycURL/7.49.0"
    return tuple(int(part) for part in text.split(".")[:3] if part.isdigit())


#: pycurl 7.49 or later: perform mode is the default only there (older pycurl,
#: 7.45 on CPython 3.9, keeps the per-socket watchers it was proven with).
_NEW_PYCURL = _pycurl_version() >= (7, 49)

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
_REQUEST_SIZE = pycurl.REQUEST_SIZE

#: libcurl error raised when a write callback refuses data (stream aborted).
E_WRITE_ERROR = pycurl.E_WRITE_ERROR
#: libcurl error for a transfer removed before completion.
E_ABORTED = -1
#: What an ``on_chunk`` consumer returns to pause the transfer, leaving the chunk untaken
#: (libcurl delivers it again after :meth:`CurlDriver.resume`).
WRITEFUNC_PAUSE = pycurl.WRITEFUNC_PAUSE

_BIG_BODY = 64 * 1024

#: The driver's modes (see the module's docstring).
MODES = ("perform", "batch", "watch")

#: perform mode, with at least SPARSE_FROM transfers running: a wake-up on
#: which at most one socket in SPARSE_RATIO is ready runs
#: ``socket_action`` on just those sockets, and a due timer or a new
#: transfer runs only the transfers whose time came, instead of a
#: ``perform()`` that visits (and reads from) every transfer.  Against a
#: server that answers one request at a time (CouchDB), most wake-ups find
#: one socket ready among all those in flight; against one that answers
#: many at once, one ``perform()`` for all of them is cheaper (measured:
#: docs/guide/performance.rst, Which curl mode to run).
SPARSE_FROM = 16
SPARSE_RATIO = 64

_epoll: Any = getattr(select, "epoll", None)
if _epoll is not None:
    _EPOLLIN = select.EPOLLIN
    _EPOLLOUT = select.EPOLLOUT
    _EPOLL_TROUBLE = select.EPOLLERR | select.EPOLLHUP
    #: curl's POLL_* mask (IN 1, OUT 2, INOUT 3) as an epoll mask.
    _EPOLL_MASK = (0, _EPOLLIN, _EPOLLOUT, _EPOLLIN | _EPOLLOUT)
    #: How perform mode watches a socket: for input, edge-triggered...
    _EPOLL_EDGES = _EPOLLIN | select.EPOLLET
    #: ... and for output too, level-triggered, while curl has something to send on it.
    _EPOLL_LEVELS = _EPOLLIN | _EPOLLOUT


def default_mode() -> str:
    """The mode a new driver uses: ``LOOP_CURL_MODE`` if set, else the best this platform supports."""
    mode = os.environ.get("LOOP_CURL_MODE")
    if mode:
        if mode not in MODES:
            raise ValueError("LOOP_CURL_MODE must be one of %s, not %s" % (", ".join(MODES), describe(mode)))
        return mode
    if _epoll is None:
        return "watch"
    return "perform" if _NEW_PYCURL else "watch"

#: Streams per HTTP/2 connection when ``set_limits`` is given no ``max_streams`` (libcurl's default).
DEFAULT_STREAMS = 100

_NO_DEFAULT = object()
#: What the per-request options pycurl cannot unset go back to (see ``CurlDriver._set_extra``).
_OPTION_DEFAULTS: Dict[int, Any] = {
    pycurl.HTTP_VERSION: pycurl.CURL_HTTP_VERSION_1_1,  # what _configure sets
    pycurl.PIPEWAIT: 0,
}


class Request:
    """One HTTP request for the driver, and its outcome once done.

    ``method`` is an upper-case string, ``url`` a full URL (``str``),
    ``headers`` a list of ``"Name: value"`` strings (reuse one list object
    across requests where you can: the driver skips re-setting it), ``body``
    bytes or None.  ``timeout`` and ``connect_timeout`` are seconds (0: none).
    After a failure (``errno`` set), ``sent`` is how many request bytes
    libcurl had sent (0: none reached the network, so the server saw
    nothing; None: unknown).

    ``upload`` streams a request body instead of ``body`` (a PUT or POST):
    an object with ``read(size) -> bytes`` (libcurl's READFUNCTION: at most
    ``size`` bytes, ``b""`` at the end, or ``pycurl.READFUNC_ABORT``),
    ``seek(offset, origin) -> int`` (SEEKFUNCTION, for a rewind), ``length``
    (the body's size, or None: sent with ``Transfer-Encoding: chunked``)
    and ``start()``, called each time the request is handed to libcurl (a
    resend starts the body over).
    """

    __slots__ = (
        "method", "url", "headers", "body", "timeout", "connect_timeout", "low_speed",
        "on_done", "on_chunk", "options", "upload",
        "code", "header_lines", "body_out", "errno", "errmsg", "handle", "_chunks",
        "context", "max_body", "driver", "sent", "started",
    )
    sent: Optional[int]  # set only when a transfer fails (no cost to the others)

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
        upload: Any = None,
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
        self.upload = upload
        self.driver: Optional["CurlDriver"] = None
        self.code: Optional[int] = None
        self.header_lines: List[bytes] = []
        self.body_out: bytes = b""
        self.errno: Optional[int] = None
        self.errmsg: Optional[str] = None
        self.handle: Any = None
        self._chunks: Optional[List[bytes]] = None
        #: True once libcurl was given the request (it may have sent some of it).
        self.started = False

    def __call__(self) -> bool:
        """Cancel this request (see :meth:`CurlDriver.cancel`); False if it is not pending."""
        driver = self.driver
        return driver.cancel(self) if driver is not None else False

    def queued(self) -> bool:
        """True while no byte of the request can have left: it was never handed to libcurl."""
        return not self.started

    def __repr__(self) -> str:
        # Never print the URL raw: it may carry credentials.
        from .redact import redact_url

        return "<Request %s %s>" % (self.method, redact_url(self.url))


class _Handle:
    """One pooled easy handle and what we last set on it.

    The state lives here, not as attributes of the ``pycurl.Curl`` object:
    pycurl looks an attribute up the generic way first and only then in the
    object's own dict, so every read of one raises (and swallows) an
    AttributeError; that was about a sixth of all the instructions a GET
    cost (callgrind, 29k of 173k).
    """

    __slots__ = ("curl", "mode", "hdrs", "t_total", "t_connect", "extra", "request", "low_speed")

    def __init__(self, curl: pycurl.Curl) -> None:
        self.curl = curl
        self.mode: Optional[str] = None  # what the method options are set to
        self.hdrs: Optional[List[str]] = None  # the header list object last set
        self.t_total: float = 0
        self.t_connect: float = 0
        self.extra: Optional[Dict[int, Any]] = None  # the extra options last set
        self.request: Optional[Request] = None
        self.low_speed: Optional[tuple] = None


class CurlDriver:
    """Runs HTTP requests on a reactor through one ``pycurl.CurlMulti``.

    ``mode`` is how curl's sockets reach the reactor: ``"perform"``,
    ``"batch"`` or ``"watch"`` (see the module's docstring; default:
    :func:`default_mode`).

    Example::

        driver = reactor.curl
        driver.submit(Request("GET", "http://127.0.0.1:5984/", on_done=print))
    """

    def __init__(self, reactor: Any, max_connections: int = 64, max_per_host: int = 0,
                 mode: Optional[str] = None) -> None:
        if mode is None:
            mode = default_mode()
        elif mode not in MODES:
            raise ValueError("mode must be one of %s, not %s" % (", ".join(MODES), describe(mode)))
        if mode != "watch" and _epoll is None:
            raise ValueError("mode %r needs select.epoll, which this platform lacks" % mode)
        #: How curl's sockets reach the reactor (see the module's docstring).
        self.mode = mode
        self._perform = mode == "perform"
        self.reactor = reactor
        self.multi = pycurl.CurlMulti()
        self._free: List[_Handle] = []
        self._queue: Deque[Request] = deque()
        self._masks: Dict[int, int] = {}  # fd -> the curl POLL_* mask it is watched for (0 or -1: idle, paused)
        self._watchers: Dict[int, Any] = {}  # fd -> reactor watcher (per-socket mode only)
        self._idle: set = set()
        self._epoll: Any = None
        self._epoll_watcher: Any = None
        self._levels: set = set()  # perform mode: sockets watched level-triggered (curl is sending)
        #: perform mode: may a wake-up run just its ready sockets (see SPARSE_FROM)?
        self._sparse = mode == "perform"
        #: perform mode: how many wake-ups ran just their ready sockets (see SPARSE_FROM).
        self.sparse_wakeups = 0
        self._stale_table = False  # perform mode: a perform() since the last socket_all()
        self._few_ready = False  # perform mode: the last wake-up with a socket ready found few of many
        #: How many times the reactor has woken the driver for socket events.
        self.wakeups = 0
        if mode == "perform":
            self._epoll = _epoll()
            self._epoll_watcher = reactor.watch(self._epoll.fileno(), True, False, self._on_epoll_perform)
            self.multi.setopt(pycurl.M_SOCKETFUNCTION, self._on_socket_perform)
        elif mode == "batch":
            self._epoll = _epoll()
            self._epoll_watcher = reactor.watch(self._epoll.fileno(), True, False, self._on_epoll)
            self.multi.setopt(pycurl.M_SOCKETFUNCTION, self._on_socket_batched)
        else:
            self.multi.setopt(pycurl.M_SOCKETFUNCTION, self._on_socket)
        # libcurl moves its timer twice per request or more, and every
        # callback from pycurl costs (the GIL taken back, arguments built).
        # In perform mode there is no timer callback: after each perform()
        # the driver asks curl_multi_timeout(), once per wake-up, and a new
        # transfer always wants curl run at once.  Otherwise the callback is
        # list.append (no Python frame) and the last value is applied
        # (_sync_timer) before control goes back to the reactor: at the end
        # of every entry point that calls into libcurl (submit, cancel,
        # set_limits and the reactor callbacks).
        self._timer_updates: List[int] = []
        if mode != "perform":
            self.multi.setopt(pycurl.M_TIMERFUNCTION, self._timer_updates.append)
        self._timer: Any = None
        self._timer_when = 0.0
        self._deadline: Optional[float] = None
        self._kick_pending = False
        self._pid = os.getpid()
        self._handles: List[_Handle] = []  # every easy handle, kept alive until the multi closes
        self._by_curl: Dict[pycurl.Curl, _Handle] = {}
        self._active = 0
        self._closed = False
        self.max_connections = 0
        self.max_per_host = 0
        #: Streams per HTTP/2 connection (None: libcurl's default, and no more transfers than connections).
        self.max_streams: Optional[int] = None
        self._max_transfers = 0
        # HTTP/2 transfers may share a connection (libcurl's default since
        # 7.62, set for older ones); HTTP/1.1 transfers never pipeline.
        self.multi.setopt(pycurl.M_PIPELINING, pycurl.PIPE_MULTIPLEX)
        self.set_limits(max_connections, max_per_host)
        _live.add(self)

    # -- configuration --------------------------------------------------
    def set_limits(self, max_connections: int, max_per_host: int = 0, max_streams: Optional[int] = None) -> None:
        """At most ``max_connections`` connections (and per host), and as many transfers at once.

        The transfers past the limit queue.  ``max_streams`` is for HTTP/2
        multiplexing: up to that many transfers share one connection
        (``CURLMOPT_MAX_CONCURRENT_STREAMS``), and up to ``max_connections *
        max_streams`` transfers run at once.  Plain HTTP/1.1 transfers past
        the connection limit then wait inside libcurl instead of our queue.
        """
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if max_per_host < 0:
            raise ValueError("max_per_host must be 0 (no limit) or more")
        if max_streams is not None and (not isinstance(max_streams, int) or max_streams < 1):
            raise ValueError("max_streams must be None or at least 1")
        self.max_connections = max_connections
        self.max_per_host = max_per_host
        self.max_streams = max_streams
        self._max_transfers = max_connections * (max_streams or 1)
        multi = self.multi
        multi.setopt(pycurl.M_MAX_TOTAL_CONNECTIONS, max_connections)
        multi.setopt(pycurl.M_MAXCONNECTS, max_connections)
        multi.setopt(pycurl.M_MAX_HOST_CONNECTIONS, max_per_host)
        multi.setopt(pycurl.M_MAX_CONCURRENT_STREAMS, max_streams or DEFAULT_STREAMS)
        started = False
        while self._queue and self._active < self._max_transfers:
            self._start(self._queue.popleft())
            started = True
        if self._perform:
            if started:
                self._on_timer(0)
        elif self._timer_updates:
            self._sync_timer()

    @property
    def limits(self) -> Tuple[int, int, Optional[int]]:
        """``(max_connections, max_per_host, max_streams)``: the arguments of :meth:`set_limits` in force."""
        return self.max_connections, self.max_per_host, self.max_streams

    @property
    def max_transfers(self) -> int:
        """How many transfers run at once (``max_connections``, times ``max_streams`` if set)."""
        return self._max_transfers

    @property
    def active(self) -> int:
        """Transfers currently handed to libcurl."""
        return self._active

    @property
    def queued(self) -> int:
        """Requests waiting for a free slot."""
        return len(self._queue)

    @property
    def sockets(self) -> List[int]:
        """The socket descriptors being watched for curl (including idle pooled ones), sorted."""
        return sorted(self._masks)

    @property
    def pooled_handles(self) -> int:
        """Idle easy handles kept for reuse."""
        return len(self._free)

    # -- submitting -----------------------------------------------------
    def submit(self, request: Request) -> Request:
        """Start ``request`` now, or queue it if ``max_connections`` transfers are running."""
        if self._closed:
            raise RuntimeError("the curl driver is closed")
        request.driver = self
        if self._active < self._max_transfers and not self._queue:
            self._start(request)
            if self._perform:
                if not self._kick_pending:
                    self._on_timer(0)  # a new transfer wants curl run at once
                return request
            updates = self._timer_updates
            if updates:
                if updates[-1] == 0 and self._kick_pending:
                    # The usual case, inlined: a new transfer wants curl run
                    # at once, and that is already scheduled for this turn.
                    updates.clear()
                    self._deadline = None
                else:
                    self._sync_timer()
        else:
            self._queue.append(request)
        return request

    def cancel(self, request: Request) -> bool:
        """Stop ``request`` (queued or running) without calling its ``on_done``.

        Its easy handle goes back to the pool.  Returns False if it was not pending.
        """
        handle = request.handle
        if handle is None:
            try:
                self._queue.remove(request)
            except ValueError:
                return False
            return True
        self.multi.remove_handle(handle.curl)
        self._active -= 1
        request.handle = None
        self._release(handle, request)
        self._start_queued()
        if self._perform:
            self._on_timer(self.multi.timeout())
        elif self._timer_updates:
            self._sync_timer()
        return True

    def resume(self, request: Request) -> None:
        """Resume a transfer whose ``on_chunk`` consumer paused it (returned :data:`WRITEFUNC_PAUSE`).

        libcurl may hand the held chunk over again from inside this call.
        Nothing happens if the request is no longer running.
        """
        handle = request.handle
        if handle is None or self._closed:
            return
        handle.curl.pause(pycurl.PAUSE_CONT)
        self._on_timer(0)  # have curl run soon, whatever the mode
        if self._timer_updates:
            self._sync_timer()

    def _new_handle(self) -> _Handle:
        handle = _Handle(pycurl.Curl())
        self._configure(handle)
        self._handles.append(handle)
        self._by_curl[handle.curl] = handle
        return handle

    def _configure(self, handle: _Handle) -> None:
        """Set a new (or reset) easy handle's fixed options and forget what the cache says is set."""
        curl = handle.curl
        curl.setopt(pycurl.NOSIGNAL, 1)
        curl.setopt(pycurl.TCP_NODELAY, 1)
        curl.setopt(pycurl.TCP_KEEPALIVE, 1)
        curl.setopt(pycurl.FOLLOWLOCATION, 0)
        curl.setopt(pycurl.PATH_AS_IS, 1)  # never rewrite "/./" or "/../" in a path we built
        curl.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        curl.setopt(pycurl.SOCKOPTFUNCTION, self._new_socket)
        # Idle connections are only closed when the server closes them or
        # when the pool needs room.
        curl.setopt(pycurl.MAXAGE_CONN, 3600)
        handle.mode = None
        handle.hdrs = None
        handle.t_total = 0
        handle.t_connect = 0
        handle.extra = None
        handle.low_speed = None

    def _set_extra(self, handle: _Handle, options: Optional[Dict[int, Any]]) -> None:
        """Replace the per-request options last set on ``curl`` (``Request.options``) with ``options``.

        An option that pycurl cannot unset goes back to what :meth:`_configure`
        sets (or libcurl's default, for the ones in :data:`_OPTION_DEFAULTS`);
        failing that, the handle is reset whole and configured again.
        """
        curl = handle.curl
        old = handle.extra
        if old:
            for key in old:
                if options and key in options:
                    continue  # set again below
                default = _OPTION_DEFAULTS.get(key, _NO_DEFAULT)
                try:
                    if default is _NO_DEFAULT:
                        curl.unsetopt(key)
                    else:
                        curl.setopt(key, default)
                except (TypeError, pycurl.error):
                    curl.reset()
                    self._configure(handle)
                    break
        if options:
            for key, value in options.items():
                curl.setopt(key, value)
        handle.extra = options

    def _set_method(self, handle: _Handle, method: str, body: Optional[bytes]) -> None:
        """Set the method (and body) on a reused handle, touching only what differs.

        A handle remembers its ``mode``: "GET", "HEAD", "POST" (POSTFIELDS),
        "body" (POSTFIELDS + CUSTOMREQUEST, e.g. PUT) or "custom" (no body +
        CUSTOMREQUEST, e.g. DELETE).
        """
        curl = handle.curl
        mode = handle.mode
        if mode == "upload":
            mode = self._leave_upload(handle)
        if body is None and (method == "PUT" or method == "POST"):
            body = b""
        if body is None:
            if method == "GET":
                if mode != "GET":
                    curl.setopt(pycurl.HTTPGET, 1)  # also clears NOBODY and POST
                    if mode == "body" or mode == "custom":
                        curl.unsetopt(_CUSTOMREQUEST)
                    handle.mode = "GET"
            elif method == "HEAD":
                if mode != "HEAD":
                    if mode == "body" or mode == "custom":
                        curl.unsetopt(_CUSTOMREQUEST)
                    curl.setopt(pycurl.NOBODY, 1)
                    handle.mode = "HEAD"
            else:
                if mode != "GET" and mode != "custom":
                    curl.setopt(pycurl.HTTPGET, 1)
                curl.setopt(_CUSTOMREQUEST, method)
                handle.mode = "custom"
            return
        if mode == "HEAD":
            curl.setopt(pycurl.NOBODY, 0)
        curl.setopt(_POSTFIELDS, body)
        if method == "POST":
            if mode == "body" or mode == "custom":
                curl.unsetopt(_CUSTOMREQUEST)
            handle.mode = "POST"
        else:
            curl.setopt(_CUSTOMREQUEST, method)
            handle.mode = "body"

    def _set_upload(self, handle: _Handle, request: Request) -> None:
        """Set a streamed request body (``Request.upload``): READFUNCTION, its size or chunked encoding."""
        curl = handle.curl
        upload = request.upload
        upload.start()
        if handle.mode == "HEAD":
            curl.setopt(pycurl.NOBODY, 0)
        curl.setopt(pycurl.UPLOAD, 1)
        curl.setopt(_CUSTOMREQUEST, request.method)
        curl.setopt(pycurl.READFUNCTION, upload.read)
        curl.setopt(pycurl.SEEKFUNCTION, upload.seek)
        length = upload.length
        # -1: size unknown, so libcurl sends HTTP/1.1 Transfer-Encoding: chunked.
        curl.setopt(pycurl.INFILESIZE_LARGE, -1 if length is None else length)
        handle.mode = "upload"

    @staticmethod
    def _leave_upload(handle: _Handle) -> str:
        """Undo :meth:`_set_upload` on a reused handle (only when the next request is not an upload)."""
        curl = handle.curl
        curl.setopt(pycurl.UPLOAD, 0)
        curl.setopt(pycurl.INFILESIZE_LARGE, -1)
        curl.unsetopt(pycurl.READFUNCTION)
        curl.unsetopt(pycurl.SEEKFUNCTION)
        curl.unsetopt(_CUSTOMREQUEST)
        curl.setopt(pycurl.HTTPGET, 1)
        handle.mode = "GET"
        return "GET"

    def _start(self, request: Request) -> None:
        free = self._free
        handle = free.pop() if free else self._new_handle()
        curl = handle.curl
        if request.options is not handle.extra:  # first: it may reset the handle
            self._set_extra(handle, request.options)
        curl.setopt(_URL, request.url)
        method = request.method
        if method == "GET" and request.body is None:
            if handle.mode != "GET":
                self._set_method(handle, method, None)
        elif request.upload is None:
            self._set_method(handle, method, request.body)
        else:
            self._set_upload(handle, request)

        headers = request.headers
        if headers is not handle.hdrs:
            curl.setopt(_HTTPHEADER, headers or [])
            handle.hdrs = headers
        if request.timeout != handle.t_total:
            curl.setopt(_TIMEOUT_MS, int(request.timeout * 1000))
            handle.t_total = request.timeout
        if request.connect_timeout != handle.t_connect:
            curl.setopt(_CONNECTTIMEOUT_MS, int(request.connect_timeout * 1000))
            handle.t_connect = request.connect_timeout
        low_speed = request.low_speed
        if low_speed != handle.low_speed:
            limit, seconds = low_speed or (0, 0)
            curl.setopt(pycurl.LOW_SPEED_LIMIT, int(limit))
            curl.setopt(pycurl.LOW_SPEED_TIME, int(seconds))
            handle.low_speed = low_speed
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

        handle.request = request
        request.handle = handle
        request.started = True
        self._active += 1
        try:
            self.multi.add_handle(curl)
        except pycurl.error as exc:
            self._active -= 1
            request.handle = None
            handle.request = None
            self._free.append(handle)
            request.errno = exc.args[0] if exc.args else E_ABORTED
            request.errmsg = str(exc.args[1]) if len(exc.args) > 1 else "could not start transfer"
            request.sent = 0
            self.reactor.call_soon(self._deliver, request)

    # -- libcurl callbacks ----------------------------------------------
    def _on_socket(self, event: int, fd: int, multi: Any, data: Any) -> None:
        # Watch mode: one reactor watcher per socket, while curl waits on it.
        # A kept-alive connection goes back and forth between a transfer and
        # the pool (POLL_REMOVE when it goes idle); its watcher goes with it,
        # since nothing tells us when curl closes an idle socket.
        if event == _POLL_REMOVE:
            # Without a close callback (see the top of the module) we would not
            # hear when curl closes an idle socket: stop watching it now.
            if fd in self._watchers:
                self._forget(fd)
            return
        readable = bool(event & _POLL_IN)
        writable = bool(event & _POLL_OUT)
        self._masks[fd] = event & 3
        watcher = self._watchers.get(fd)
        if watcher is None:
            self._watchers[fd] = self.reactor.watch(fd, readable, writable, self._on_ready)
        else:
            self._idle.discard(fd)
            watcher.update(readable, writable)

    def _on_socket_batched(self, event: int, fd: int, multi: Any, data: Any) -> None:
        # The same bookkeeping as _on_socket, on the private epoll set.
        masks = self._masks
        if event == _POLL_REMOVE:
            # An idle pooled socket stays in the set; if curl closes it, the
            # kernel drops it from the set (see the top of the module).
            if fd in masks:
                self._idle.add(fd)
            return
        mask = event & 3  # POLL_IN 1, POLL_OUT 2, POLL_INOUT 3
        old = masks.get(fd)
        if old is None or old < 0:  # new, or an idle one taken out of the set (see _on_epoll)
            self._epoll_set(fd, _EPOLL_MASK[mask])
            masks[fd] = mask
            if old is not None:
                self._idle.discard(fd)
            return
        if self._idle:
            self._idle.discard(fd)
        if old != mask:
            self._epoll_set(fd, _EPOLL_MASK[mask])
            masks[fd] = mask

    def _epoll_set(self, fd: int, events: int) -> None:
        """Watch ``fd`` for ``events`` in the epoll set, whether or not it is registered (closed fds leave it)."""
        try:
            self._epoll.modify(fd, events)
        except FileNotFoundError:
            self._epoll.register(fd, events)

    def _on_socket_perform(self, event: int, fd: int, multi: Any, data: Any) -> None:
        # Which way curl waits does not matter here (perform() finds out
        # itself); only that we hear when the socket's state changes.
        # Connection sockets are in the epoll set from birth (_new_socket);
        # libcurl does not always report them here in perform mode.  What
        # it does report (its own descriptors, a resolver's pipe) joins the
        # set while asked for.  A socket curl is done with (POLL_REMOVE)
        # stays in the set; closing it takes it out.  libcurl says
        # POLL_REMOVE before it closes a socket it reported, so a number
        # reused afterwards is always registered afresh.
        if event == _POLL_REMOVE:
            self._masks.pop(fd, None)
        elif fd not in self._masks:
            self._masks[fd] = 3
            self._add_edges(fd)

    def _add_edges(self, fd: int) -> None:
        """perform mode: have ``fd`` in the epoll set, edge-triggered for input (re-armed if it was)."""
        try:
            # Modifying re-arms it: if it is ready now, the event comes.
            self._epoll.modify(fd, _EPOLL_EDGES)
        except FileNotFoundError:
            self._epoll.register(fd, _EPOLL_EDGES)

    def _forget(self, fd: int) -> None:
        """Stop watching ``fd`` (it is closed, or about to be, or its number was reused)."""
        self._idle.discard(fd)
        mask = self._masks.pop(fd, None)
        if mask is None:
            return
        watcher = self._watchers.pop(fd, None)
        if watcher is not None:
            watcher.close()
        elif self._epoll is not None and mask >= 0:
            try:
                self._epoll.unregister(fd)
            except (OSError, ValueError):  # closed already: epoll dropped it itself
                pass

    def _new_socket(self, fd: int, purpose: int) -> int:
        """libcurl's SOCKOPTFUNCTION: a new socket ``fd`` exists.

        Any registration we still hold for that fd number belongs to a socket
        curl closed without telling us (pycurl cannot always run the close
        callback); drop it so the new socket gets a fresh one.
        """
        if fd in self._masks:
            self._forget(fd)
        if self._perform:
            self._levels.discard(fd)
            self._add_edges(fd)
        return 0

    def _sync_timer(self) -> None:
        """Apply the last timeout libcurl asked for (see ``__init__``)."""
        updates = self._timer_updates
        timeout_ms = updates[-1]
        updates.clear()
        self._on_timer(timeout_ms)

    def _on_timer(self, timeout_ms: int) -> None:
        # libcurl moves its timer very often (twice per request or more), so
        # the timer is lazy: a 0 ms timeout becomes one kick per reactor turn
        # however many handles were added, a later deadline keeps the timer
        # already armed (it re-arms itself when it fires early), and -1 just
        # forgets the deadline.
        if timeout_ms == 0:
            self._deadline = None
            if not self._kick_pending and not self._closed:
                self._kick_pending = True
                self.reactor.call_soon(self._kick)
        elif timeout_ms < 0:
            self._deadline = None
        else:
            deadline = self.reactor.time() + timeout_ms / 1000.0
            self._deadline = deadline
            if self._timer is None or self._timer_when > deadline:
                self._arm(deadline, timeout_ms / 1000.0)

    def _arm(self, deadline: float, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._closed:
            self._timer = None
            return
        self._timer = self.reactor.call_later(delay, self._on_timeout)
        self._timer_when = deadline

    # -- reactor callbacks ----------------------------------------------
    def _on_epoll(self, _fd: int, _events: int) -> None:
        """The epoll set is ready: ``socket_action`` every ready socket, then drain once."""
        if self._closed:
            return
        self.wakeups += 1
        masks = self._masks
        idle = self._idle
        running = self._active
        for fd, ev in self._epoll.poll(0):
            mask = masks.get(fd)
            if mask is None:  # closed by an earlier socket_action of this batch
                continue
            if mask < 0:
                continue
            if idle and fd in idle:
                # See _on_ready: an idle pooled connection woke up.  Take it
                # out of the set (a mask of 0 would still report a hang-up,
                # level-triggered, every turn) until curl uses or closes it.
                self._epoll.unregister(fd)
                masks[fd] = -1
                continue
            # CSELECT_IN/OUT are 1/2, as EPOLLIN/OUT are 1/4; an error or
            # hang-up wakes whatever curl waits for, and curl reads the error.
            action = (ev & _EPOLLIN) | ((ev & _EPOLLOUT) >> 1)
            if ev & _EPOLL_TROUBLE:
                action |= mask
            running = self._socket_action(fd, action)
        self._settle(running)

    def _on_epoll_perform(self, _fd: int, _events: int) -> None:
        """Some curl socket changed state: consume the edges, then run the transfers that can move."""
        if self._closed:  # closed earlier in this reactor turn
            return
        self.wakeups += 1
        self._step()

    def _step(self) -> None:
        """perform mode: take the ready sockets (the edges), then run all transfers or just those.

        Just those (``socket_action`` on each, which also runs the transfers
        whose time came, new ones included) when few of many are ready (see
        :data:`SPARSE_FROM`); all of them (one ``perform()``) otherwise.
        """
        if self._closed:
            return
        ready = self._epoll.poll(0)
        active = self._active
        few = self._sparse and active >= SPARSE_FROM and len(ready) * SPARSE_RATIO <= active
        if ready:
            self._few_ready = few
        if few:
            masks = self._masks
            for fd, _ev in ready:
                if fd not in masks:  # a socket libcurl's table may not know (an idle one...): run them all
                    break
            else:
                if self._stale_table:
                    # A perform() since the last full account: libcurl's socket table
                    # may miss a transfer; this run gives it one (see _run_all).  Not
                    # when nothing is ready (new transfers, a timer) and the last
                    # wake-up found many sockets ready, as a server that answers
                    # many at once makes it: the sparse path is not coming, and a
                    # perform() starts the new transfers without a socket callback each.
                    self._run(reassess=self._few_ready)
                    return
                if ready:
                    self.sparse_wakeups += 1
                self._run(ready)
                return
        self._run()

    def _run(self, ready: Optional[List[Any]] = None, reassess: bool = False) -> None:
        """perform mode: run curl, then drain finished transfers and re-arm the timer.

        With ``ready`` None: every transfer (one ``perform()``, which brings
        libcurl's socket table up to date too if ``reassess``).  Otherwise
        ``socket_action`` on just the ``(fd, epoll events)`` in ``ready``, or,
        if it is empty, on curl's timeout: the transfers whose time came
        (new ones included; each ``socket_action`` runs those too).
        """
        if self._closed:
            return
        multi = self.multi
        try:
            try:
                if ready is None:
                    running = self._run_all(reassess)
                elif not ready:
                    running = multi.socket_action(_SOCKET_TIMEOUT, 0)[1]
                else:
                    running = self._active
                    for fd, ev in ready:
                        if self._closed:  # by a streaming consumer, from inside curl
                            return
                        # CSELECT_IN/OUT are 1/2, as EPOLLIN/OUT are 1/4; an error or
                        # hang-up wakes whatever curl waits for.
                        action = (ev & _EPOLLIN) | ((ev & _EPOLLOUT) >> 1)
                        if ev & _EPOLL_TROUBLE:
                            action |= 3
                        running = multi.socket_action(fd, action)[1]
            except pycurl.error:  # pragma: no cover - libcurl reports per transfer
                log.exception("perform failed")
                running = -1
            if running != self._active:
                self._drain()
            if self._closed:  # by a completion handler
                return
            writers = self.multi.fdset()[1]
            if writers or self._levels:
                self._watch_writers(writers)
        finally:
            # Whatever happened, libcurl's next timeout must be armed, or
            # nothing would ever run curl again.
            if not self._closed:
                self._on_timer(self.multi.timeout())

    def _run_all(self, reassess: bool) -> int:
        """perform mode: run every transfer; how many are running.

        ``perform()`` leaves libcurl's socket table (which ``socket_action``
        goes by) as it was, so a connection a transfer opened or took from
        the pool meanwhile may be missing from it; ``reassess`` runs
        ``socket_all()`` instead: ``perform()``, then every transfer's
        sockets told to the socket callback.  That costs a visit of every
        transfer, so it is done only before the table is needed (a wake-up
        that would run just its ready sockets).  pycurl warns that
        ``socket_all()`` is deprecated, on every call: ignored by default,
        but where warnings are errors the driver goes back to running every
        transfer on every wake-up, for good.
        """
        if reassess:
            try:
                running: int = self.multi.socket_all()[1]
                self._stale_table = False
                return running
            except DeprecationWarning:  # warnings are errors here: pycurl did not run it
                self._sparse = False
                log.debug("socket_all() refused by the warnings filter: perform() on every wake-up")
        self._stale_table = True
        return self.multi.perform()[1]  # type: ignore[no-any-return]

    def _watch_writers(self, writers: List[int]) -> None:
        """perform mode: level-trigger exactly the sockets curl wants to send on (see the module's docstring)."""
        epoll = self._epoll
        wanted = set(writers)
        for fd in self._levels - wanted:
            try:
                epoll.modify(fd, _EPOLL_EDGES)
            except OSError:  # closed meanwhile
                pass
        for fd in wanted - self._levels:
            try:
                epoll.modify(fd, _EPOLL_LEVELS)
            except FileNotFoundError:
                epoll.register(fd, _EPOLL_LEVELS)
        self._levels = wanted

    def _on_ready(self, fd: int, events: int) -> None:
        self.wakeups += 1
        if fd in self._idle:
            # An idle pooled connection became readable: the server closed it
            # (or sent something unasked).  curl finds out when it next picks
            # the connection; stop watching it until then.
            self._watchers[fd].update(False, False)
            self._masks[fd] = 0
            return
        # READ is 1 and WRITE is 2, as are CSELECT_IN and CSELECT_OUT.
        self._action(fd, events)

    def _kick(self) -> None:
        self._kick_pending = False
        if self._perform:
            self._step()
        else:
            self._action(_SOCKET_TIMEOUT, 0)

    def _on_timeout(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:
            return
        remaining = deadline - self.reactor.time()
        if remaining > 0.001:
            self._arm(deadline, remaining)
            return
        self._deadline = None
        if self._perform:
            self._step()
        else:
            self._action(_SOCKET_TIMEOUT, 0)

    def _action(self, fd: int, mask: int) -> None:
        """``socket_action`` on ``fd`` (or the timeout), then drain finished transfers."""
        if self._closed:
            return
        self._settle(self._socket_action(fd, mask))

    def _socket_action(self, fd: int, mask: int) -> int:
        """``socket_action``; how many transfers libcurl says are running (-1 if it failed)."""
        try:
            return self.multi.socket_action(fd, mask)[1]
        except pycurl.error:  # pragma: no cover - libcurl reports per transfer
            log.exception("socket_action failed")
            return -1

    def _settle(self, running: int) -> None:
        """After ``socket_action``: drain what finished, then apply libcurl's last timer move."""
        if running != self._active:
            self._drain()
        if self._timer_updates:
            self._sync_timer()

    def _drain(self) -> None:
        """Read every finished transfer, settle the books of all of them, then run their ``on_done``.

        The books first: an exception that escapes an ``on_done`` (Ctrl-C in
        a user callback) must not leave other transfers read from libcurl
        but never finished.  The ``on_done`` of those after it run on the
        reactor's next turn.
        """
        info_read = self.multi.info_read
        by_curl = self._by_curl
        done: List[Request] = []
        while True:
            queued, ok_list, err_list = info_read()
            for curl in ok_list:
                self._finish(by_curl[curl], None, None, done)
            for curl, errno, errmsg in err_list:
                self._finish(by_curl[curl], errno, errmsg, done)
            if not queued:
                break
        if self._queue:
            self._start_queued()
        # Each request is let go once its on_done has run, not at the end:
        # the requests its callbacks start meanwhile would otherwise pile up
        # on top of all the finished ones, and with a hundred finishing in
        # one wake-up that is enough new objects to run the cyclic garbage
        # collector, over everything in flight, on almost every wake-up.
        done.reverse()
        while done:
            request = done.pop()
            try:
                request.on_done(request)  # type: ignore[misc]
            except Exception:
                log.exception("error in request completion handler for %r", request)
            except BaseException:
                for later in reversed(done):
                    self.reactor.call_soon(self._deliver, later)
                raise

    def _finish(self, handle: _Handle, errno: Optional[int], errmsg: Optional[str],
                done: List[Request]) -> None:
        request = handle.request
        curl = handle.curl
        code = curl.getinfo(_RESPONSE_CODE)
        self.multi.remove_handle(curl)
        self._active -= 1
        handle.request = None
        if request is None:  # pragma: no cover - cancelled meanwhile
            self._free.append(handle)
            return
        request.handle = None
        request.code = code or None
        if errno is not None:
            request.errno = errno
            request.errmsg = errmsg
            request.sent = curl.getinfo(_REQUEST_SIZE)  # also counts a resend on a fresh connection
        chunks = request._chunks
        if chunks is not None:
            request.body_out = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
            request._chunks = None
        body = request.body
        if body is not None:
            if len(body) > _BIG_BODY:
                curl.setopt(_POSTFIELDS, b"")  # do not keep a large body alive in the pool
        elif handle.mode == "upload":
            self._leave_upload(handle)  # nor a streamed body's file or iterator
        # Never close an easy handle before the multi (see close()): a handle
        # is only ever created when none is free, so the pool stays bounded.
        self._free.append(handle)
        if request.on_done is not None:
            done.append(request)

    def _release(self, handle: _Handle, request: Optional[Request]) -> None:
        handle.request = None
        if request is not None and request.body is not None and len(request.body) > _BIG_BODY:
            handle.curl.setopt(_POSTFIELDS, b"")  # do not keep a large body alive in the pool
        if handle.mode == "upload":
            self._leave_upload(handle)  # nor a streamed body's file or iterator
        # Never close an easy handle before the multi (see close()): a handle
        # is only ever created when none is free, so the pool stays bounded.
        self._free.append(handle)

    def _start_queued(self) -> None:
        queue = self._queue
        while queue and self._active < self._max_transfers:
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
        _live.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        aborted: List[Request] = list(self._queue)
        self._queue.clear()
        for request in aborted:
            request.sent = 0  # never started
        for handle in self._handles:
            running = handle.request
            if running is not None:  # a transfer in progress
                self.multi.remove_handle(handle.curl)
                handle.request = None
                running.sent = None  # how much left is unknown
                aborted.append(running)
        for watcher in self._watchers.values():
            watcher.close()
        self._watchers.clear()
        self._masks.clear()
        self._idle.clear()
        self._levels.clear()
        if self._epoll_watcher is not None:
            self._epoll_watcher.close()
            self._epoll_watcher = None
        # The multi first (it closes its pooled connections), then the easy handles.
        self.multi.close()
        for handle in self._handles:
            handle.curl.close()
        self._handles.clear()
        self._by_curl.clear()
        self._free.clear()
        if self._epoll is not None:
            self._epoll.close()  # after the multi: its sockets are closed by now
        for request in aborted:
            request.handle = None
            request.errno = E_ABORTED
            request.errmsg = "reactor closed"
        for i, request in enumerate(aborted):
            try:
                self._deliver(request)
            except BaseException:  # Ctrl-C in a callback: the others are still told
                for later in aborted[i + 1:]:
                    self._deliver(later)
                raise

    def abandon(self) -> None:
        """After ``os.fork()`` in the child: never touch (or close) the parent's connections.

        The driver, its multi and easy handles are leaked on purpose: freeing
        them would close sockets (and, for TLS, write to streams) that the
        parent still uses.
        """
        self._closed = True
        _live.discard(self)
        import ctypes

        ctypes.pythonapi.Py_IncRef(ctypes.py_object(self))

    def __del__(self) -> None:
        # A driver dropped without close(): free libcurl's side in a safe order.
        if not getattr(self, "_closed", True) and self._pid == os.getpid():
            try:
                self.close()
            except Exception:  # pragma: no cover - interpreter teardown
                pass


# Drivers still open, closed at interpreter exit in a safe order (see close()).
_live: "weakref.WeakSet[CurlDriver]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    pid = os.getpid()
    for driver in list(_live):
        if driver._pid == pid:
            try:
                driver.close()
            except Exception:  # pragma: no cover - interpreter teardown
                pass


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
            answer = consumer(chunk)
            if answer is not None:
                if answer is False:
                    return 0  # makes libcurl abort with E_WRITE_ERROR
                if answer == WRITEFUNC_PAUSE:
                    return WRITEFUNC_PAUSE  # not taken: libcurl hands it over again after resume()
        except Exception:
            log.exception("stream consumer failed; aborting transfer")
            return 0
        return None

    return write
