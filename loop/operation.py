"""Operation: the one-shot result of an asynchronous call, and its Status.

An :class:`Operation` is completed exactly once with ``(data, status)``.  It
can be observed four ways: callbacks ``fn(data, status)``, ``result()``,
``await op`` (on an asyncio-based reactor) and ``yield op`` inside the
generator trampoline (:mod:`loop.trampoline`).
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Iterable, List, Optional

__all__ = ["Operation", "Status", "OperationPending", "Cancelled"]

log = logging.getLogger("loop")

Callback = Callable[[Any, "Status"], Any]


class OperationPending(RuntimeError):
    """``Operation.result()`` was called before the operation completed."""


class Cancelled(Exception):
    """The operation was cancelled before it completed."""


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


class Operation:
    """The one-shot result of an asynchronous call.

    Example::

        op = db.get("doc-id", callback=lambda doc, status: print(doc))
        ...
        doc = op.result()    # once complete: the data, or raises

    ``await op`` works on the asyncio-based reactors, ``yield op`` inside a
    ``@relax`` generator.
    """

    __slots__ = ("reactor", "data", "status", "observed", "_callbacks", "_done", "_cancel",
                 "_asyncio_future_blocking", "__weakref__")

    #: Logger used for exceptions raised by user callbacks.
    log = log

    def __init__(self, reactor: Any = None, cancel: Optional[Callable[[], Any]] = None) -> None:
        self.reactor = reactor
        self.data: Any = None
        self.status: Optional[Status] = None
        self._callbacks: Optional[List[Callback]] = None
        self._done = False
        self._cancel = cancel
        #: True once someone asked for the outcome (a callback, result(), await).
        self.observed = False
        self._asyncio_future_blocking = False

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
        callbacks = self._callbacks
        if callbacks is not None:
            self._callbacks = None
            for fn in callbacks:
                try:
                    fn(data, status)
                except Exception:
                    self.log.exception("exception in callback %r", fn)

    def fail(self, exception: BaseException, code: Optional[int] = None) -> None:
        """Complete the operation with an exception."""
        self.complete(None, Status(code, exception=exception))

    def _run_callback(self, fn: Callback) -> None:
        try:
            fn(self.data, self.status)  # type: ignore[arg-type]  # only called once complete
        except Exception:
            self.log.exception("exception in callback %r", fn)

    def add_callback(self, fn: Callback) -> "Operation":
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
        """Cancel a pending operation; its callbacks see a ``Cancelled`` exception.

        Returns False if the operation had already completed.  (``msg`` is
        accepted for asyncio, which cancels what a task awaits this way.)
        """
        if self._done:
            return False
        canceller, self._cancel = self._cancel, None
        if canceller is not None:
            try:
                canceller()
            except Exception:
                self.log.exception("error while cancelling %r", self)
        self.fail(Cancelled("operation cancelled"))
        return True

    # -- observing ------------------------------------------------------
    def result(self) -> Any:
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
        return self.data

    def wait(self) -> Any:
        """Run the reactor until this operation completes, then return ``result()``."""
        if not self._done:
            self.reactor.run_until_complete(self)
        return self.result()

    # -- asyncio: an Operation is awaited as a future-like object ----------
    # asyncio's Task accepts any object with ``_asyncio_future_blocking``,
    # ``get_loop``, ``add_done_callback``, ``result`` and ``cancel``; yielding
    # the Operation itself saves a Future and a loop turn per ``await``.
    def __await__(self):  # type: ignore[no-untyped-def]
        if not self._done:
            self._asyncio_future_blocking = True
            try:
                yield self
            except Cancelled:
                import asyncio

                raise asyncio.CancelledError() from None
        return self.result()

    __iter__ = __await__  # ``yield from op`` in generator-based coroutines

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
        call_soon = self.get_loop().call_soon
        self.add_callback(lambda _d, _s: call_soon(fn, self, context=context))

    def remove_done_callback(self, fn: Callable[[Any], Any]) -> int:  # pragma: no cover - asyncio API
        return 0

    def cancelled(self) -> bool:
        """True if the operation was cancelled."""
        return self._done and isinstance(self.status.exception, Cancelled)  # type: ignore[union-attr]

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


def gather(ops: Iterable[Operation], reactor: Any = None) -> Operation:
    """An Operation completing with the list of ``ops``' data, in order.

    It fails with the first exception among them (after all have completed).
    """
    ops = list(ops)
    total = Operation(reactor)
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
    return total


def completed(data: Any, status: Optional[Status] = None, reactor: Any = None) -> Operation:
    """An Operation that has already completed with ``data``."""
    op = Operation(reactor)
    op.complete(data, status if status is not None else OK)
    return op


def failed(exception: BaseException, reactor: Any = None) -> Operation:
    """An Operation that has already failed with ``exception``."""
    op = Operation(reactor)
    op.fail(exception)
    return op


