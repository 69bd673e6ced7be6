"""The _changes feed: normal, longpoll and continuous (ChangesFeed), and follow().

``db.changes()`` asks for the changes once (``feed="normal"``, the default)
or waits for the next ones (``feed="longpoll"``) and returns CouchDB's answer,
``{last_seq, results, pending}``, as a :class:`~corduroy.document.Document`.

``db.changes(feed="continuous", callback=listener)`` returns a
:class:`ChangesFeed` at once: a streamed connection that calls
``listener(last_seq, changes)`` as changes arrive, batched by ``latency``
seconds, and that reconnects by itself (exponential backoff with jitter) from
the last change it delivered when the connection drops, the server restarts
or the stream ends.  ``db.follow()`` is the same resilient feed as an
iterator: ``async for``, ``yield feed.next()`` in ``@relax`` code, or a
blocking ``for``.  ``feed="eventsource"`` (CouchDB's Server-Sent Events form of
the continuous feed) works the same way and gives the same change dicts.

Example::

    db = Database("http://127.0.0.1:5984/watched")
    print(db.changes(since=0, limit=5).last_seq)

    def listener(last_seq, changes):
        for change in changes:
            print(last_seq, change.id)

    feed = db.changes(feed="continuous", since="now", callback=listener)
    ...
    feed.stop()

Sequence values are opaque (integers on some servers, strings on CouchDB 2
and later): corduroy never compares or computes with them, it only sends back
what the server gave.
"""
from __future__ import annotations

import logging
import random
from collections import OrderedDict, deque
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncIterator,
    Callable,
    Deque,
    Dict,
    Iterator,
    List,
    Literal,
    Optional,
    Set,
    Tuple,
    overload,
)

from loop import Operation, Status, get_reactor
from loop.operation import OK, Cancelled
from loop.redact import describe, redact_text, type_name

from . import codec
from .contract import io_methods
from .exceptions import BadResponse, HTTPError
from .http import CouchOperation, finish
from .results import DataCallback

if TYPE_CHECKING:  # pragma: no cover
    from .document import Document

__all__ = ["ChangesMixin", "ChangesFeed", "DbUpdatesFeed", "Listener", "NotAnEventStream"]

log = logging.getLogger("corduroy")

Callback = Optional[Callable[[Any, Status], Any]]
#: A continuous feed's listener: ``listener(last_seq, changes)``.
Listener = Callable[[Any, List[Any]], Any]

FEEDS = ("normal", "longpoll", "continuous", "eventsource")
#: The feeds that stream: a :class:`ChangesFeed` reads them.
LIVE_FEEDS = ("continuous", "eventsource")
STYLES = ("main_only", "all_docs")
#: CouchDB's own filters; any other is a design document's (``ddoc/name``).
BUILTIN_FILTERS = frozenset({"_doc_ids", "_selector", "_view", "_design"})

#: Default ``heartbeat`` of a continuous feed, in milliseconds.
DEFAULT_HEARTBEAT = 30000
#: Default ``latency`` of a continuous feed's listener, in seconds.
DEFAULT_LATENCY = 1.0
#: Reconnection delays: the first retry waits about BACKOFF_START seconds,
#: each failed attempt doubles it, up to BACKOFF_MAX (with jitter: 50-100 %).
BACKOFF_START = 0.1
BACKOFF_MAX = 10.0
#: HTTP statuses that will not go away by retrying: the feed stops on them.
#: Seconds a silent connection gets to prove alive before it is reopened.
IDLE_GRACE = 0.1
PERMANENT_ERRORS = frozenset({400, 401, 403, 404, 405, 406, 415})
#: At most this many changes are remembered to skip replays after a reconnect
#: (only matters with ``seq_interval``, where most changes carry no seq).
_WINDOW_MAX = 10000
#: How many document revisions a feed remembers having delivered, to skip a
#: change the server sends again after a reconnection that rewound (a
#: cluster resumes a sequence on another node by replaying the shard ranges
#: it cannot place; CouchDB's feed is at-least-once, corduroy's delivers a
#: revision once).
DELIVERED_MAX = 100000

_UNSET: Any = object()


# -- request building ----------------------------------------------------------
def _strip_design(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name:
        raise TypeError("%s must be a non-empty str like 'ddoc/name', got %s" % (what, describe(name)))
    if name.startswith("_design/"):
        name = name[len("_design/"):]
    if name.count("/") != 1 or name.startswith("/") or name.endswith("/"):
        raise ValueError("%s must look like 'ddoc/name', got %s" % (what, describe(name)))
    return name


def _check_seq(since: Any) -> Any:
    if since is None or isinstance(since, str) or (isinstance(since, int) and not isinstance(since, bool)):
        return since
    if isinstance(since, list):  # CouchDB 1.x clustered seqs were arrays
        return since
    raise TypeError("since must be a sequence value from the server (str or int) or 'now', got %s" % describe(since))


def _changes_request(opts: Dict[str, Any]) -> Tuple[str, Dict[str, Any], Optional[bytes]]:
    """``(method, params, body)`` for ``_changes`` from the caller's options; raises on bad input.

    ``doc_ids=[...]`` and ``selector={...}`` go in a POST body (with
    ``filter=_doc_ids`` / ``_selector``, implied when missing); everything
    else is a query parameter, so a design-doc filter's own parameters pass
    straight through.
    """
    opts = dict(opts)
    filt = opts.pop("filter", None)
    doc_ids = opts.pop("doc_ids", None)
    selector = opts.pop("selector", None)
    view = opts.pop("view", None)
    body: Optional[Dict[str, Any]] = None
    if filt is not None and not isinstance(filt, str):
        raise TypeError("filter must be a str ('ddoc/name', '_doc_ids', '_selector', '_view'), got %s" % describe(filt))
    if doc_ids is not None:
        if filt is None:
            filt = "_doc_ids"
        elif filt != "_doc_ids":
            raise ValueError("doc_ids goes with filter='_doc_ids', not %s" % describe(filt))
        if isinstance(doc_ids, (str, bytes)) or not isinstance(doc_ids, (list, tuple, set, frozenset)):
            raise TypeError("doc_ids must be a list of document ids, got %s" % describe(doc_ids))
        ids = list(doc_ids)
        for doc_id in ids:
            if not isinstance(doc_id, str) or not doc_id:
                raise TypeError("document ids are non-empty strings, got %s" % describe(doc_id))
        body = {"doc_ids": ids}
    elif filt == "_doc_ids":
        raise ValueError("filter='_doc_ids' needs doc_ids=[...]")
    if selector is not None:
        if filt is None:
            filt = "_selector"
        elif filt != "_selector":
            raise ValueError("selector goes with filter='_selector', not %s" % describe(filt))
        if not isinstance(selector, dict):
            raise TypeError("selector must be a dict (a Mango selector), got %s" % describe(selector))
        body = {"selector": selector}
    elif filt == "_selector":
        raise ValueError("filter='_selector' needs selector={...}")
    if view is not None:
        if filt is None:
            filt = "_view"
        elif filt != "_view":
            raise ValueError("view goes with filter='_view', not %s" % describe(filt))
        view = _strip_design(view, "view")
    elif filt == "_view":
        raise ValueError("filter='_view' needs view='ddoc/view'")
    if filt is not None and filt not in BUILTIN_FILTERS:
        filt = _strip_design(filt, "filter")
    params: Dict[str, Any] = {}
    if filt is not None:
        params["filter"] = filt
    if view is not None:
        params["view"] = view
    if "since" in opts:
        opts["since"] = _check_seq(opts["since"])
    for name in ("limit", "seq_interval"):
        value = opts.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ValueError("%s must be an int >= 0, got %s" % (name, describe(value)))
    style = opts.get("style")
    if style is not None and style not in STYLES:
        raise ValueError("style must be one of %s, got %s" % (", ".join(STYLES), describe(style)))
    heartbeat = opts.get("heartbeat")
    if heartbeat is False:
        opts["heartbeat"] = None
    elif heartbeat is not None and heartbeat is not True and (
            not isinstance(heartbeat, int) or isinstance(heartbeat, bool) or heartbeat <= 0):
        raise ValueError("heartbeat is in milliseconds (an int > 0) or True, got %s" % describe(heartbeat))
    timeout = opts.get("timeout")
    if timeout is not None and (not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout < 0):
        raise ValueError("timeout is in milliseconds (a number >= 0), got %s" % describe(timeout))
    params.update(opts)
    payload = codec.encode(body, "the _changes filter") if body is not None else None
    return ("POST" if payload is not None else "GET"), params, payload


def _http_timeout(server_timeout: Optional[float], params: Dict[str, Any]) -> Optional[float]:
    """The transfer timeout of a longpoll request: long enough for the server's own wait."""
    if not server_timeout:
        return None
    if params.get("heartbeat"):
        return 0  # the server keeps the connection alive; no total limit
    wait = params.get("timeout")
    seconds = wait / 1000.0 if isinstance(wait, (int, float)) else 60.0
    return server_timeout + seconds


def _change_key(change: Dict[str, Any]) -> Tuple[Any, Any, Any]:
    """What identifies one change: its seq and doc id (and rev, for changes without a seq)."""
    seq = change.get("seq")
    rev = None
    if seq is None:
        revs = change.get("changes")
        if isinstance(revs, list) and revs and isinstance(revs[0], dict):
            rev = revs[0].get("rev")
    elif not isinstance(seq, (str, int, float)):
        seq = codec.encode(seq)
    return (seq, change.get("id"), rev)


class NotAnEventStream(BadResponse):
    """``feed="eventsource"`` was asked for and the server answered something else.

    A server without Server-Sent Events for ``_changes`` (pouchdb-server
    answers as for ``feed=normal``) gives this; the feed stops with it as its
    ``error`` instead of reconnecting.  Use ``feed="continuous"`` there.
    """


#: How an event-stream line starts (``data: {...}``, ``id: ...``, ``event: heartbeat``, a ``:`` comment).
_SSE_FIELDS = (b"data:", b"id:", b"event:", b"retry:", b":")


class _EventStream:
    """Turns the lines of a Server-Sent Events stream into the lines a continuous feed sends.

    Each event's ``data`` (its lines joined) becomes one line; a heartbeat
    (``event: heartbeat``), an event without data, or a ``:`` comment
    becomes an empty line, as a continuous feed's heartbeat is.  ``id:``
    repeats the change's ``seq`` (which the change itself carries, and which
    the feed resumes from); ``retry:`` is ignored (the feed has its own backoff).
    """

    __slots__ = ("data", "event", "started", "url")

    def __init__(self, url: str) -> None:
        self.data: Optional[List[bytes]] = None
        self.event = b""
        self.started = False
        self.url = url

    def check_start(self, head: bytes) -> None:
        """Raise NotAnEventStream if the body starting with ``head`` is not an event stream."""
        head = head.lstrip()
        if not head:
            return
        if head.startswith(_SSE_FIELDS):
            self.started = True
        elif not (len(head) < 6 and any(field.startswith(head) for field in _SSE_FIELDS)):
            raise NotAnEventStream(
                reason="the server does not support feed=eventsource for _changes: it answered %r... instead "
                       "of a text/event-stream (use feed='continuous')" % head[:40],
                method="GET", url=self.url)

    def lines(self, raw: List[bytes]) -> List[bytes]:
        """The continuous-feed lines for these complete event-stream lines."""
        out = []
        for line in raw:
            if line[-1:] == b"\r":
                line = line[:-1]
            if not line:  # the blank line that ends an event
                data = self.data
                if data is not None or self.event:
                    out.append(b"" if data is None or self.event == b"heartbeat" else b"\n".join(data))
                self.data = None
                self.event = b""
                continue
            field, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if field == b"data":
                if self.data is None:
                    self.data = [value]
                else:
                    self.data.append(value)
            elif field == b"event":
                self.event = value
            elif not field:
                out.append(b"")  # a comment: the connection is alive
        return out


def _revision_mark(change: Dict[str, Any]) -> Optional[Tuple[Any, ...]]:
    """``(id, rev, ...)`` for a document change: what identifies it when a rewound feed sends it again."""
    revs = change.get("changes")
    if revs and type(revs) is list:
        return (change.get("id"),) + tuple(r.get("rev") if isinstance(r, dict) else r for r in revs)
    return None


class _Cursor:
    """Where a feed stands: the seq to resume from, and the changes seen at or after it.

    ``window`` holds the keys of the change that carried ``since`` and of the
    seq-less changes after it: a reconnection from ``since`` may send those
    again, and they are skipped.
    """

    __slots__ = ("since", "window", "last_key")

    def __init__(self, since: Any) -> None:
        self.since = since
        self.window: List[Tuple[Any, Any, Any]] = []
        self.last_key: Optional[Tuple[Any, Any, Any]] = None

    def advance(self, key: Tuple[Any, Any, Any], seq: Any) -> None:
        if seq is not None:
            self.since = seq
            self.window = [key]
        elif len(self.window) < _WINDOW_MAX:
            self.window.append(key)
        self.last_key = key

    def copy(self) -> "_Cursor":
        other = _Cursor(self.since)
        other.window = list(self.window)
        other.last_key = self.last_key
        return other


# -- the continuous feed ---------------------------------------------------------
@io_methods
class ChangesFeed:
    """A persistent, self-healing listener on a database's continuous ``_changes`` feed.

    Made by ``db.changes(feed="continuous", callback=listener)`` (already
    listening) or ``db.follow()`` (an iterator, listening from its first use).
    With ``feed="eventsource"`` it reads CouchDB's Server-Sent Events form of
    the feed instead (``data:`` lines carrying the same change dicts, ``id:``
    their seq, ``event: heartbeat``), with the same reconnection and resume
    (from the last change's seq, which is also the last event id); a server
    that answers with something else than an event stream stops the feed
    with :class:`NotAnEventStream`.

    Attributes:

    ``callback``
        ``listener(last_seq, changes)``; None for an iterator feed.
    ``latency``
        The least time in seconds between two listener calls; changes that
        arrive meanwhile are batched.  0 calls the listener once per change.
    ``last_seq``
        The seq of the last change delivered (the ``since`` given, before any).
    ``running``
        True while the feed listens or is about to reconnect; False after
        ``stop()``, after an error that will not go away, or once ``limit``
        changes arrived.
    ``error``
        The exception that stopped the feed (401, 403, 404...), else None.
    ``idle_timeout``
        Seconds without a byte (not even a heartbeat) after which the
        connection is taken for dead and reopened (None: never).

    When the connection drops, the server restarts or the stream ends, the
    feed reconnects after about 0.1 s, doubling the delay after each failed
    attempt up to 10 s (with jitter; back to 0.1 s once a connection works),
    and resumes from the last change it received: every change is delivered
    at least once, and never twice in a row.  It gives up only on ``stop()``
    or an HTTP error that will not go away (400, 401, 403, 404...): that one
    is logged on the ``corduroy`` logger and passed to ``on_error(exc)``.

    Call its methods on the reactor's thread (from elsewhere, use
    ``reactor.call_soon_threadsafe(feed.stop)``).
    """

    #: The feed's path under ``db``; what marks a line as an event; whether ``since="now"`` is pinned to a seq first.
    _PATH = "/_changes"
    _ITEM_FIELD = "id"
    _PIN_NOW = True

    def __init__(self, db: Any, callback: Optional[Listener] = None, latency: float = DEFAULT_LATENCY,
                 on_error: Optional[Callable[[BaseException], Any]] = None, since: Any = None,
                 heartbeat: Any = _UNSET, limit: Optional[int] = None, **options: Any) -> None:
        if callback is not None and not callable(callback):
            raise TypeError("the listener must be callable as listener(last_seq, changes), got %s"
                            % type_name(callback))
        if on_error is not None and not callable(on_error):
            raise TypeError("on_error must be callable as on_error(exception), got %s" % type_name(on_error))
        if not isinstance(latency, (int, float)) or isinstance(latency, bool) or latency < 0:
            raise ValueError("latency is in seconds (a number >= 0), got %s" % describe(latency))
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise ValueError("limit must be an int >= 1, got %s" % describe(limit))
        feed = options.pop("feed", None) or "continuous"
        if feed not in LIVE_FEEDS:
            raise ValueError("a live feed is one of %s, got %s" % (", ".join(LIVE_FEEDS), describe(feed)))
        if heartbeat is _UNSET:
            heartbeat = DEFAULT_HEARTBEAT
        options["heartbeat"] = heartbeat
        method, params, body = _changes_request(options)
        params.pop("limit", None)
        params["feed"] = feed
        self.db = db
        self.callback = callback
        self.latency = float(latency)
        self.on_error = on_error
        self.limit = limit
        self.last_seq: Any = _check_seq(since)
        self.running = False
        self.error: Optional[BaseException] = None
        hb = params.get("heartbeat")
        if hb is True:
            hb = 60000
        self.idle_timeout: Optional[float] = (hb / 1000.0) * 2 + 1.0 if hb else None
        self._method = method
        self._params = params
        self._body = body
        self._reactor: Any = None
        self._op: Optional[Operation] = None
        self._gen = 0  # bumped whenever a connection is abandoned: its late events are ignored
        self._cursor = _Cursor(self.last_seq)  # what has been received
        self._delivered = _Cursor(self.last_seq)  # what has been handed to the user
        self._replay: Set[Tuple[Any, Any, Any]] = set()
        self._seen_revs: "OrderedDict[Tuple[Any, ...], None]" = OrderedDict()
        self._partial = b""
        #: The event-stream parser of the current connection (feed="eventsource"), else None.
        self._events: Optional[_EventStream] = None
        self._got_data = False
        self._failures = 0
        self._last_data = 0.0
        self._count = 0
        self._started = False
        self._retry: Any = None
        self._flush_timer: Any = None
        self._watchdog: Any = None
        self._last_call: Optional[float] = None
        self._serve_scheduled = False
        #: (effective seq, key, seq, change) received and not yet delivered
        self._pending: Deque[Tuple[Any, Any, Any, Any]] = deque()
        #: iterator mode: (operation, wants a batch) waiting for changes
        self._waiters: Deque[Tuple[Operation, bool]] = deque()

    # -- public API ---------------------------------------------------------------
    @property
    def backlog(self) -> int:
        """Changes received but not yet delivered (to the listener, or through ``next()``)."""
        return len(self._pending)

    def listen(self) -> "ChangesFeed":
        """Open the connection, or reopen it after ``stop()`` (from the last change delivered); returns self."""
        if self.running:
            return self
        self._reactor = get_reactor()
        self._started = True
        self.running = True
        self.error = None
        self._failures = 0
        self._count = 0
        self._cursor = self._delivered.copy()
        self._connect()
        return self

    def stop(self) -> None:
        """Close the connection; no listener call (and no change from ``next()``) happens after this returns.

        Changes received but not yet delivered are dropped; ``listen()``
        resumes from the last change delivered.  Pending ``next()`` calls get
        None.
        """
        self.running = False
        self._abandon()
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        for item in self._pending:  # dropped, not delivered: they may come again
            mark = _revision_mark(item[3])
            if mark is not None:
                self._seen_revs.pop(mark, None)
        self._pending.clear()
        self._cursor = self._delivered.copy()
        if self._waiters and self._reactor is not None:
            self._schedule_serve()

    @overload
    def next(self, callback: None = None) -> Optional[Document]: ...

    @overload
    def next(self, callback: DataCallback[Optional[Document]]) -> Operation[Optional[Document]]: ...

    def next(self, callback: Callback = None) -> Any:
        """The next change (a dict); None once the feed has stopped; raises the error that stopped it.

        Starts listening on first use.  Follows the calling contract: yield
        it in ``@relax`` code, await it, pass ``callback=``, or (no reactor
        running) it blocks.
        """
        return self._next(False, callback)

    @overload
    def next_batch(self, callback: None = None) -> Optional[List[Document]]: ...

    @overload
    def next_batch(self, callback: DataCallback[Optional[List[Document]]]) -> Operation[Optional[List[Document]]]: ...

    def next_batch(self, callback: Callback = None) -> Any:
        """Every change received so far (a non-empty list, waiting for one if need be); None once stopped."""
        return self._next(True, callback)

    # iteration --------------------------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        """Blocking iteration: runs the reactor until each next change arrives.

        Leaving the loop (``break``) stops the feed; iterating again resumes
        from the last change delivered.
        """
        reactor = self._reactor or get_reactor()
        if reactor.in_async_context():
            raise TypeError("a blocking `for` over a changes feed cannot run inside a running reactor: "
                            "use `async for`, or `change = yield feed.next()` in @relax code")
        return self._blocking_iter()

    def _blocking_iter(self) -> Iterator[Any]:
        if self._started and not self.running and not self._pending:
            self.listen()  # iterating again after a break resumes from the last change delivered
        try:
            while True:
                change = self.next()
                if change is None:
                    return
                yield change
        finally:
            self.stop()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        # In a running reactor next() returns an Operation (its declared type is the blocking one).
        change = await self.next()  # type: ignore[misc]
        if change is None:
            raise StopAsyncIteration
        return change

    def __enter__(self) -> "ChangesFeed":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    async def __aenter__(self) -> "ChangesFeed":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else ("failed" if self.error is not None else "stopped")
        kind = "iterator" if self.callback is None else "listener"
        return "<%s %r %s %s last_seq=%r>" % (type(self).__name__, self.db.url, kind, state, self.last_seq)

    # -- connection -------------------------------------------------------------------
    def _abandon(self) -> None:
        """Forget the current connection (cancelling its transfer) and every timer but the flush."""
        self._gen += 1
        for name in ("_retry", "_watchdog"):
            handle = getattr(self, name)
            if handle is not None:
                handle.cancel()
                setattr(self, name, None)
        op, self._op = self._op, None
        if op is not None and not op.done():
            op.cancel()  # removes the transfer from the curl driver

    def _connect(self) -> None:
        self._retry = None
        if not self.running:
            return
        self._gen += 1
        gen = self._gen
        self._partial = b""
        if self._params["feed"] == "eventsource":
            self._events = _EventStream(self.db.url + self._PATH)
        self._got_data = False
        self._replay = set(self._cursor.window)
        since = self._cursor.since
        if since == "now" and self._PIN_NOW:
            # Pin "now" to a real seq first, so a reconnection misses nothing.
            op = self.db._request("GET")
            self._op = op
            op.add_callback(lambda data, status: self._on_now(gen, data, status))
            return
        params = dict(self._params)
        if since is not None:
            params["since"] = since
        if self.limit is not None:
            params["limit"] = self.limit - self._count
        try:
            op = self.db._request(self._method, self._PATH, params=params, body=self._body, timeout=0,
                                  raw=True, on_chunk=lambda chunk: self._on_chunk(gen, chunk))
        except RuntimeError as exc:  # the reactor (its curl driver) was closed under the feed
            self._shut_down(exc)
            return
        self._op = op
        op.add_callback(lambda data, status: self._on_closed(gen, status))
        if self.idle_timeout:
            self._last_data = self._reactor.time()
            self._watchdog = self._reactor.call_later(self.idle_timeout, self._check_idle, gen)

    def _on_now(self, gen: int, data: Any, status: Status) -> None:
        if gen != self._gen or not self.running:
            return
        if status.exception is not None:
            self._on_closed(gen, status)
            return
        seq = data.get("update_seq") if isinstance(data, dict) else None
        if seq is None:
            self._on_closed(gen, Status(status.code, exception=BadResponse(
                reason="the database info has no update_seq", method="GET", url=self.db.url)))
            return
        self._cursor.since = seq
        if self._delivered.since == "now":
            self._delivered.since = seq
        if self.last_seq == "now":
            self.last_seq = seq
        self._got_data = True
        self._connect()

    def _on_chunk(self, gen: int, chunk: bytes) -> Any:
        """Consume a piece of the stream (runs inside libcurl's write callback: no user code here)."""
        if gen != self._gen:
            return False  # an abandoned transfer: abort it
        self._last_data = self._reactor.time()
        data = self._partial + chunk if self._partial else chunk
        events = self._events
        if events is not None and not events.started:
            events.check_start(data)
        lines = data.split(b"\n")
        self._partial = lines.pop()
        if events is not None:
            lines = events.lines(lines)
        accepted = False
        for line in lines:
            line = line.strip()
            if not line:
                self._got_data = True  # a heartbeat: the connection works
                continue
            try:
                item = codec.decode(line)
            except (ValueError, UnicodeDecodeError):
                raise BadResponse(reason="the changes feed sent a line that is not JSON: %r" % line[:200],
                                  method=self._method, url=self.db.url + self._PATH) from None
            if not isinstance(item, dict):
                continue
            if self._ITEM_FIELD in item:
                self._got_data = True
                if self._accept(item):
                    accepted = True
                    if self.limit is not None and self._count >= self.limit:
                        self._finish_limit()
                        self._schedule_delivery()
                        return False  # enough: abort the transfer
            elif "last_seq" in item:
                # The server ended the stream: resume from there.
                self._cursor.since = item["last_seq"]
                self._cursor.window = []
        if accepted:
            self._schedule_delivery()
        return None

    def _accept(self, change: Any) -> bool:
        key = _change_key(change)
        if key == self._cursor.last_key or key in self._replay:
            self._replay.discard(key)
            return False
        mark = _revision_mark(change)
        if mark is not None:
            seen = self._seen_revs
            if mark in seen:
                return False
            seen[mark] = None
            if len(seen) > DELIVERED_MAX:
                seen.popitem(last=False)
        seq = change.get("seq")
        self._cursor.advance(key, seq)
        self._pending.append((seq if seq is not None else self._cursor.since, key, seq, change))
        self._count += 1
        return True

    def _finish_limit(self) -> None:
        self.running = False
        self._gen += 1
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._op = None

    def _on_closed(self, gen: int, status: Status) -> None:
        if gen != self._gen or not self.running:
            return
        self._op = None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        exc = status.exception
        if isinstance(exc, Cancelled):
            return
        if isinstance(exc, HTTPError) and exc.code in PERMANENT_ERRORS or isinstance(exc, NotAnEventStream):
            self._fail(exc)
            return
        self._reconnect_later("the server ended the stream" if exc is None else str(exc))

    def _reconnect_later(self, reason: str) -> None:
        if self._got_data:
            self._failures = 0
        else:
            self._failures += 1
        delay = min(BACKOFF_MAX, BACKOFF_START * 2 ** self._failures) * random.uniform(0.5, 1.0)
        level = logging.WARNING if self._failures >= 5 else logging.INFO
        log.log(level, "changes feed on %s: %s; reconnecting in %.2f s", self.db.url, reason, delay)
        try:
            self._retry = self._reactor.call_later(delay, self._connect)
        except RuntimeError as exc:  # the reactor's loop was closed under the feed
            self._shut_down(exc)

    def _shut_down(self, exc: BaseException) -> None:
        log.debug("changes feed on %s stops: its reactor is closed (%s)", self.db.url, exc)
        self.running = False
        self._gen += 1
        self._op = None

    def _check_idle(self, gen: int, confirm: bool = False) -> None:
        self._watchdog = None
        if gen != self._gen or not self.running or not self.idle_timeout:
            return
        idle = self._reactor.time() - self._last_data
        if idle < self.idle_timeout:
            self._watchdog = self._reactor.call_later(self.idle_timeout - idle, self._check_idle, gen)
            return
        if not confirm:
            # Look again after a turn or two of I/O: after the reactor was not
            # running for a while (a blocking loop's body), data may be waiting
            # in the socket, and some loops run due timers before polling I/O.
            self._watchdog = self._reactor.call_later(IDLE_GRACE, self._check_idle, gen, True)
            return
        self._abandon()
        self._reconnect_later("no data (not even a heartbeat) for %.1f s" % idle)

    def _fail(self, exc: BaseException) -> None:
        self.running = False
        self.error = exc
        self._abandon()
        log.error("changes feed on %s stopped: %s", self.db.url, exc)
        if self.callback is not None:
            # Deliver what had arrived before giving the error.
            if self._flush_timer is not None:
                self._flush_timer.cancel()
                self._flush_timer = None
            self._flush()
        else:
            self._schedule_serve()
        if self.on_error is not None:
            try:
                self.on_error(exc)
            except Exception:
                log.exception("exception in changes feed on_error handler %s", redact_text(repr(self.on_error)))

    # -- delivery ------------------------------------------------------------------------
    def _schedule_delivery(self) -> None:
        if self.callback is None:
            self._schedule_serve()
            return
        if self._flush_timer is not None:
            return
        reactor = self._reactor
        delay = 0.0
        if self.latency and self._last_call is not None:
            delay = max(0.0, self._last_call + self.latency - reactor.time())
        self._flush_timer = reactor.call_later(delay, self._flush)

    def _flush(self) -> None:
        self._flush_timer = None
        pending = self._pending
        if not pending:
            return
        delivered = self._delivered
        if self.latency:
            batch = list(pending)
            pending.clear()
            for _eff, key, seq, _change in batch:
                delivered.advance(key, seq)
            self.last_seq = batch[-1][0]
            self._last_call = self._reactor.time()
            self._call_listener(self.last_seq, [item[3] for item in batch])
            return
        while pending:  # stop() from inside the listener empties it
            eff, key, seq, change = pending.popleft()
            delivered.advance(key, seq)
            self.last_seq = eff
            self._call_listener(eff, [change])

    def _call_listener(self, seq: Any, changes: List[Any]) -> None:
        try:
            self.callback(seq, changes)  # type: ignore[misc]
        except Exception:
            log.exception("exception in changes listener %s", redact_text(repr(self.callback)))

    def _next(self, batch: bool, callback: Callback) -> Any:
        if callback is not None and not callable(callback):
            raise TypeError("callback must be callable, got %s" % type_name(callback))
        if self.callback is not None:
            raise TypeError("this feed delivers to its listener; next() is for feeds made by db.follow()")
        if not self._started:
            self.listen()
        op = CouchOperation(self._reactor)
        self._waiters.append((op, batch))
        self._serve()
        return finish(op, callback)

    def _schedule_serve(self) -> None:
        if not self._serve_scheduled:
            self._serve_scheduled = True
            self._reactor.call_soon(self._serve)

    def _serve(self) -> None:
        self._serve_scheduled = False
        waiters = self._waiters
        pending = self._pending
        while waiters:
            op, batch = waiters[0]
            if op.done():  # cancelled meanwhile
                waiters.popleft()
                continue
            if pending:
                waiters.popleft()
                items = list(pending) if batch else [pending.popleft()]
                if batch:
                    pending.clear()
                for _eff, key, seq, _change in items:
                    self._delivered.advance(key, seq)
                self.last_seq = items[-1][0]
                op.complete([item[3] for item in items] if batch else items[0][3], OK)
            elif not self.running:
                waiters.popleft()
                if self.error is not None:
                    op.fail(self.error)
                else:
                    op.complete(None, OK)
            else:
                break


class _ServerTarget:
    """What a feed needs of its database, for a server-wide feed: ``url`` and ``_request``."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.url = server.url

    def _request(self, method: str, path: str = "", **kwargs: Any) -> Operation:
        return self.server.request(method, path or "/", **kwargs)  # type: ignore[no-any-return]


#: The options of a continuous ``_db_updates`` feed besides those :class:`ChangesFeed` takes itself.
DB_UPDATES_OPTIONS = frozenset({"timeout"})


class DbUpdatesFeed(ChangesFeed):
    """The server's ``_db_updates`` feed (databases created, updated, deleted), continuous and self-healing.

    Made by ``couch.db_updates(feed="continuous", callback=listener)`` or
    ``couch.follow_db_updates()``; it works as :class:`ChangesFeed` does
    (listener or iterator, reconnects and resumes from the last event's
    ``seq``), with events ``{db_name, type, seq}``.  ``since="now"`` is sent
    as it is: until the first event arrives, a reconnection starts from
    "now" again and may miss events of the gap.  Admins only; CouchDB 2+.
    """

    _PATH = "/_db_updates"
    _ITEM_FIELD = "db_name"
    _PIN_NOW = False

    def __init__(self, server: Any, callback: Optional[Listener] = None, latency: float = DEFAULT_LATENCY,
                 on_error: Optional[Callable[[BaseException], Any]] = None, since: Any = None,
                 heartbeat: Any = _UNSET, limit: Optional[int] = None, **options: Any) -> None:
        options.pop("feed", None)
        unknown = sorted(set(options) - DB_UPDATES_OPTIONS)
        if unknown:
            raise TypeError("unknown _db_updates feed option(s) %s (known: since, limit, heartbeat, timeout, "
                            "latency, on_error)" % ", ".join(map(describe, unknown)))
        super().__init__(_ServerTarget(server), callback, latency, on_error, since, heartbeat, limit, **options)


# -- the mixin ------------------------------------------------------------------
@io_methods
class ChangesMixin:
    """Database methods for the ``_changes`` feed."""

    # The feed= literal decides the type: the answer once, or a live ChangesFeed.  (A catch-all
    # overload for a feed= known only at run time would make every call with a lambda Any.)
    @overload
    def changes(self, callback: None = None, *, feed: Literal["normal", "longpoll"] = "normal",
                **opts: Any) -> Document: ...

    @overload
    def changes(self, callback: DataCallback[Document], *, feed: Literal["normal", "longpoll"] = "normal",
                **opts: Any) -> Operation[Document]: ...

    @overload
    def changes(self, callback: Optional[Listener] = None, *, feed: Literal["continuous", "eventsource"],
                **opts: Any) -> ChangesFeed: ...

    def changes(self, callback: Any = None, **opts: Any) -> Any:
        """The database's changes: a list once (``normal``), the next ones (``longpoll``), or a live feed.

        ``feed="normal"`` (default) or ``"longpoll"``: returns
        ``{last_seq, results, pending}`` (a Document) under the calling
        contract; ``callback(data, status)``.  ``feed="continuous"`` with
        ``callback=listener``: returns a listening :class:`ChangesFeed` that
        calls ``listener(last_seq, changes)`` (options ``latency`` seconds,
        default 1, and ``on_error(exc)``); without a callback inside a running
        reactor it returns an iterator feed, as :meth:`follow` does.
        ``feed="eventsource"`` is the same live feed read as Server-Sent Events
        (CouchDB 2+; a server without them stops it with :class:`NotAnEventStream`).

        Options (CouchDB's): ``since`` (a seq, or ``"now"``), ``limit``,
        ``descending``, ``include_docs``, ``conflicts``, ``attachments``,
        ``att_encoding_info``, ``style`` (``"all_docs"``), ``heartbeat`` and
        ``timeout`` (milliseconds), ``seq_interval``; ``filter="ddoc/name"``
        with the filter's own query parameters as further keywords;
        ``doc_ids=[...]`` (``_doc_ids``, sent in a POST body),
        ``selector={...}`` (``_selector``, POST) or ``view="ddoc/view"``
        (``_view``).
        """
        feed = opts.pop("feed", None) or "normal"
        if feed not in FEEDS:
            raise ValueError("feed must be one of %s, got %s" % (", ".join(FEEDS), describe(feed)))
        if feed in LIVE_FEEDS:
            return self._continuous(callback, dict(opts, feed=feed))
        for name in ("latency", "on_error"):
            if name in opts:
                raise TypeError("%s= applies to feed='continuous' only" % name)
        method, params, body = _changes_request(opts)
        if feed == "longpoll":
            params = dict({"feed": "longpoll"}, **params)
            timeout = _http_timeout(self.server.timeout, params)  # type: ignore[attr-defined]
        else:
            timeout = None
        op = self._request(method, "/_changes", params=params, body=body, timeout=timeout)  # type: ignore[attr-defined]
        return finish(op, callback)

    def _continuous(self, callback: Optional[Listener], opts: Dict[str, Any]) -> ChangesFeed:
        if callback is None:
            if not get_reactor().in_async_context():
                raise TypeError(
                    "feed=%r needs callback=listener(last_seq, changes), which it calls as "
                    "changes arrive (run the reactor); to iterate over changes, use db.follow()" % opts["feed"]
                )
            return ChangesFeed(self, None, **opts)
        return ChangesFeed(self, callback, **opts).listen()

    def follow(self, since: Any = None, **opts: Any) -> ChangesFeed:
        """The continuous, self-healing feed as an iterator of change dicts (no I/O until first used).

        ``async for change in db.follow(since="now")`` under asyncio;
        ``change = yield feed.next()`` (or ``yield feed.next_batch()``) in
        ``@relax`` code, None meaning the feed stopped; a blocking
        ``for change in db.follow()`` runs the reactor between changes.
        Options as for :meth:`changes` (``limit`` ends the feed after that many
        changes; ``feed="eventsource"`` reads the Server-Sent Events form of the
        feed); call ``stop()``, or use ``with`` / ``async with``, to close it.
        """
        for name in ("latency", "callback"):
            if name in opts:
                raise TypeError("follow() takes no %s=: use changes(feed='continuous', callback=...)" % name)
        return ChangesFeed(self, None, since=since, **opts)
