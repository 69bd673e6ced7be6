"""Operation: the one-shot result of an asynchronous call, and its Status.

An :class:`Operation` is completed exactly once with ``(data, status)``.  It
can be observed four ways: callbacks ``fn(data, status)``, ``result()``,
``await op`` (on an asyncio-based reactor) and ``yield op`` inside the
generator trampoline (:mod:`loop.trampoline`).
"""
from __future__ import annotations

import asyncio
import logging
import warnings
from typing import TYPE_CHECKING, Any, Callable, Dict, Generator, Generic, Iterable, List, Optional, Tuple, TypeVar

__all__ = ["Operation", "Status", "OperationPending", "Cancelled", "completed", "failed", "gather"]

log = logging.getLogger("loop")

Callback = Callable[[Any, "Status"], Any]

#: The type of an Operation's data (``Operation[Document]`` completes with a Document).
#: To a type checker it defaults to Any, so a bare ``Operation(reactor)`` needs no annotation.
if TYPE_CHECKING:
    from typing_extensions import TypeVar as _TypeVar

    T = _TypeVar("T", default=Any)
else:
    T = TypeVar("T")


class OperationPending(RuntimeError):
    """``Operation.result()`` was called before the operation completed."""


class Cancelled(asyncio.CancelledError):
    """The operation was cancelled before it completed.

    A subclass of :class:`asyncio.CancelledError` (so, like it, a
    ``BaseException``): an Operation that asyncio cancels (``wait_for``
    timing out, ``gather`` or a task being cancelled) behaves exactly like a
    cancelled asyncio future.  Callbacks see it as ``status.error is Cancelled``.
    """


#: Why an Operation is not its data (the text of the errors raised on misuse).
MISUSE = (
    "this call returned an Operation, not its data, because a reactor is running in this thread "
    "(inside a callback, a @relax generator or an asyncio task): `yield` it in a @relax generator, "
    "`await` it in async code, or pass callback=fn; only a call made where no reactor runs blocks "
    "and returns the data"
)


def _parse_header_lines(lines: Iterable[bytes]) -> Dict[str, str]:
    headers: Dict[str, str] = {}
    for raw in lines:
        line = raw.decode("latin-1").rstrip("\r\n")
        if not line:
            continue
        if line.startswith("HTTP/"):
            # A new response (after a 100 Continue or a redirect) starts over.
            headers.clear()
            continue
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().title()] = value.strip()
    return headers


class Status:
    """What happened to a request.

    ``ok`` is true for a successful response; ``code`` is the HTTP status (or
    ``None`` when no response arrived); ``headers`` is a dict of response
    headers; ``exception`` is the exception the call would raise, and
    ``error`` its class, so callbacks can write ``if status.error is
    NotFound:``.
    """

    __slots__ = ("code", "exception", "_headers", "_header_lines")

    def __init__(
        self,
        code: Optional[int] = None,
        headers: Optional[Dict[str, str]] = None,
        exception: Optional[BaseException] = None,
        header_lines: Optional[List[bytes]] = None,
    ) -> None:
        self.code = code
        self.exception = exception
        self._headers = headers
        self._header_lines = header_lines

    @property
    def ok(self) -> bool:
        """True when the request succeeded."""
        return self.exception is None

    @property
    def error(self) -> Optional[type]:
        """The class of ``exception``, or None."""
        exc = self.exception
        return None if exc is None else type(exc)

    @property
    def headers(self) -> Dict[str, str]:
        """Response headers (names in Title-Case), parsed on first use."""
        if self._headers is None:
            self._headers = _parse_header_lines(self._header_lines or ())
            self._header_lines = None
        return self._headers

    def __repr__(self) -> str:
        if self.exception is None:
            return "<Status %s ok>" % (self.code,)
        return "<Status %s %s>" % (self.code, type(self.exception).__name__)


OK = Status(200)


class Operation(Generic[T]):
    """The one-shot result of an asynchronous call, completing with data of type ``T``.

    Example::

        op = db.get("doc-id", callback=lambda doc, status: print(doc))
        ...
        doc = op.result()    # once complete: the data, or raises

    ``await op`` works on the asyncio-based reactors, ``yield op`` inside a
    ``@relax`` generator.
    """

    __slots__ = ("reactor", "data", "status", "observed", "_callbacks", "_done", "_cancel",
                 "_asyncio_future_blocking", "_aio", "origin", "__weakref__")

    #: Logger used for exceptions raised by user callbacks.
    log = log

    def __init__(self, reactor: Any = None, cancel: Optional[Callable[[], Any]] = None) -> None:
        self.reactor = reactor
        self.data: Optional[T] = None
        self.status: Optional[Status] = None
        self._callbacks: Optional[List[Callback]] = None
        self._done = False
        self._cancel = cancel
        #: True once someone asked for the outcome (a callback, result(), await).
        self.observed = False
        self._asyncio_future_blocking = False
        self._aio: Optional[List[Tuple[Callable[[Any], Any], Any]]] = None
        #: What the Operation stands for (``(method, url)`` of a request, or a
        #: name), for the warning given when nobody ever consumed it.
        self.origin: Any = None

    # -- completion -----------------------------------------------------
    def done(self) -> bool:
        """True once the operation has completed (successfully or not)."""
        return self._done

    def complete(self, data: Any, status: Status) -> None:
        """Complete the operation and run its callbacks (once; later calls are ignored)."""
        if self._done:
            return
        self._done = True
        self.data = data
        self.status = status
        self._cancel = None
        aio = self._aio
        if aio is not None:
            # asyncio's waiters first: scheduling them runs no user code.
            self._aio = None
            call_soon = self.reactor.loop.call_soon
            for waiter, context in aio:
                call_soon(waiter, self, context=context)
        callbacks = self._callbacks
        if callbacks is not None:
            self._callbacks = None
            for i, fn in enumerate(callbacks):
                try:
                    fn(data, status)
                except Exception:
                    self.log.exception("exception in callback %s", _shown(fn))
                except BaseException:
                    # Ctrl-C (or SystemExit) in one callback: the others still
                    # run, on the reactor's next turn, then it propagates.
                    self._defer(callbacks[i + 1:])
                    raise

    def _defer(self, callbacks: List[Callback]) -> None:
        reactor = self.reactor
        for fn in callbacks:
            if reactor is not None:
                reactor.call_soon(self._run_callback, fn)

    def fail(self, exception: BaseException, code: Optional[int] = None) -> None:
        """Complete the operation with an exception."""
        self.complete(None, Status(code, exception=exception))

    def _run_callback(self, fn: Callback) -> None:
        try:
            fn(self.data, self.status)  # type: ignore[arg-type]  # only called once complete
        except Exception:
            self.log.exception("exception in callback %s", _shown(fn))

    def add_callback(self, fn: Callable[[Optional[T], "Status"], Any]) -> "Operation[T]":
        """Call ``fn(data, status)`` once the operation completes.

        If it has already completed, ``fn`` is scheduled on the reactor (it is
        never called from inside ``add_callback``).
        """
        self.observed = True
        if self._done:
            if self.reactor is not None:
                self.reactor.call_soon(self._run_callback, fn)
            else:
                self._run_callback(fn)
        elif self._callbacks is None:
            self._callbacks = [fn]
        else:
            self._callbacks.append(fn)
        return self

    def cancel(self, msg: Any = None) -> bool:
        """Cancel a pending operation; its callbacks see a :class:`Cancelled` exception.

        A request still waiting for a connection is never sent; one already
        sent is aborted (the server may or may not have applied it).  Returns
        False if the operation had already completed.  (``msg`` is accepted
        for asyncio, which cancels what a task awaits this way.)
        """
        if self._done:
            return False
        self.observed = True  # cancelling is a way of consuming it
        canceller, self._cancel = self._cancel, None
        if canceller is not None:
            try:
                canceller()
            except Exception:
                self.log.exception("error while cancelling %r", self)
        self.fail(Cancelled("operation cancelled" if msg is None else msg))
        return True

    def may_have_been_sent(self) -> bool:
        """False only while the operation is a request that provably never left (still queued)."""
        canceller = self._cancel
        if canceller is None:
            return not self._done
        queued = getattr(canceller, "queued", None)
        return not (queued is not None and queued())

    # -- observing ------------------------------------------------------
    def result(self) -> T:
        """The data, or raise the operation's exception.

        Raises :class:`OperationPending` if the operation has not completed.
        """
        self.observed = True
        if not self._done:
            raise OperationPending(
                "operation is still pending: pass a callback, yield it in a @relax "
                "generator, await it, or call it with no reactor running to block"
            )
        exc = self.status.exception  # type: ignore[union-attr]
        if exc is not None:
            raise exc
        return self.data  # type: ignore[return-value]  # complete and no exception: the data

    def wait(self) -> T:
        """Run the reactor until this operation completes, then return ``result()``."""
        if not self._done:
            self.reactor.run_until_complete(self)
        return self.result()

    # -- asyncio: an Operation is awaited as a future-like object ----------
    # asyncio's Task accepts any object with ``_asyncio_future_blocking``,
    # ``get_loop``, ``add_done_callback``, ``result`` and ``cancel``; yielding
    # the Operation itself saves a Future and a loop turn per ``await``.
    def __await__(self) -> Generator[Any, None, T]:
        self.observed = True
        if not self._done:
            self._asyncio_future_blocking = True
            yield self
        return self.result()

    def get_loop(self) -> Any:
        """The asyncio loop this Operation completes on (asyncio-based reactors only)."""
        aloop = getattr(self.reactor, "loop", None)
        if aloop is None:
            raise RuntimeError(
                "await needs an asyncio-based reactor (uvloop or asyncio), not %r" % (self.reactor,))
        return aloop

    def add_done_callback(self, fn: Callable[[Any], Any], *, context: Any = None) -> None:
        """asyncio's future protocol: schedule ``fn(self)`` (in ``context``) once complete.

        Like an asyncio Future it goes through ``call_soon``: waking a task from
        inside another task's step is not allowed.
        """
        aloop = self.get_loop()
        self.observed = True
        if self._done:
            aloop.call_soon(fn, self, context=context)
        elif self._aio is None:
            self._aio = [(fn, context)]
        else:
            self._aio.append((fn, context))

    def remove_done_callback(self, fn: Callable[[Any], Any]) -> int:
        """asyncio's future protocol: forget ``fn``; how many were removed."""
        aio = self._aio
        if not aio:
            return 0
        kept = [entry for entry in aio if entry[0] != fn]
        self._aio = kept or None
        return len(aio) - len(kept)

    def cancelled(self) -> bool:
        """True if the operation was cancelled."""
        return self._done and isinstance(self.status.exception, asyncio.CancelledError)  # type: ignore[union-attr]

    # asyncio reads these of a cancelled future it awaited or gathered.
    _cancel_message = None

    def _make_cancelled_error(self) -> asyncio.CancelledError:
        exc = self.status.exception if self._done else None  # type: ignore[union-attr]
        return exc if isinstance(exc, asyncio.CancelledError) else Cancelled("operation cancelled")

    def exception(self) -> Optional[BaseException]:
        """The operation's exception, or None (asyncio's future protocol)."""
        self.observed = True
        if not self._done:
            raise OperationPending("operation is still pending")
        return self.status.exception  # type: ignore[union-attr]

    def __repr__(self) -> str:
        if not self._done:
            return "<Operation pending>"
        return "<Operation done %r>" % (self.status,)

    # -- misuse: an Operation used as if it were the data ----------------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        raise AttributeError("%r object has no attribute %r: %s" % (type(self).__name__, name, MISUSE))

    def __getitem__(self, key: Any) -> Any:
        raise TypeError("%r object is not subscriptable: %s" % (type(self).__name__, MISUSE))

    def __setitem__(self, key: Any, value: Any) -> None:
        raise TypeError("%r object does not support item assignment: %s" % (type(self).__name__, MISUSE))

    def __contains__(self, item: Any) -> bool:
        raise TypeError("%r object is not a container: %s" % (type(self).__name__, MISUSE))

    def __iter__(self) -> Any:
        raise TypeError("%r object is not iterable: %s" % (type(self).__name__, MISUSE))

    def __len__(self) -> int:
        raise TypeError("%r object has no len(): %s" % (type(self).__name__, MISUSE))

    def __del__(self) -> None:
        # Like a coroutine that is never awaited: an Operation for a call that
        # nobody yielded, awaited, waited on or gave a callback is a bug (the
        # request ran, its answer and any error are lost).
        if not self.observed and self.origin is not None:
            try:
                what = describe_origin(self.origin)
                warnings.warn("%s was never consumed: its outcome (and any error) is lost. %s"
                              % (what, MISUSE), RuntimeWarning, stacklevel=2)
            except Exception:  # pragma: no cover - interpreter teardown
                pass


def _shown(fn: Any) -> str:
    """``repr(fn)`` with any credentials taken out (a partial may hold a URL with a password)."""
    from .redact import redact_text

    return redact_text(repr(fn))


def describe_origin(origin: Any) -> str:
    """``"the Operation of GET http://host/db/x"`` for an Operation's ``origin`` (credentials removed)."""
    if isinstance(origin, tuple):
        from .redact import redact_url

        method, url = origin
        return "the Operation of %s %s" % (method, redact_url(url))
    return "the Operation of %s" % (origin,)


def gather(ops: Iterable[Operation[Any]], reactor: Any = None) -> Operation[List[Any]]:
    """An Operation completing with the list of ``ops``' data, in order.

    It fails with the first exception among them (after all have completed).
    """
    ops = list(ops)
    total: Operation[List[Any]] = Operation(reactor)
    results: List[Any] = [None] * len(ops)
    remaining = [len(ops)]
    first_error: List[Optional[Status]] = [None]

    if not ops:
        total.complete([], OK)
        return total

    def make(i: int) -> Callback:
        def done(data: Any, status: Status) -> None:
            results[i] = data
            if status.exception is not None and first_error[0] is None:
                first_error[0] = status
            remaining[0] -= 1
            if remaining[0] == 0:
                if first_error[0] is not None:
                    total.complete(results, first_error[0])
                else:
                    total.complete(results, OK)

        return done

    for i, op in enumerate(ops):
        op.add_callback(make(i))

    def cancel_all() -> None:
        for op in ops:
            op.cancel()

    total._cancel = cancel_all
    return total


def completed(data: T, status: Optional[Status] = None, reactor: Any = None) -> Operation[T]:
    """An Operation that has already completed with ``data``."""
    op: Operation[T] = Operation(reactor)
    op.complete(data, status if status is not None else OK)
    return op


def failed(exception: BaseException, reactor: Any = None) -> Operation[Any]:
    """An Operation that has already failed with ``exception``."""
    op: Operation[Any] = Operation(reactor)
    op.fail(exception)
    return op


