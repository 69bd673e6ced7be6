"""The generator trampoline: sequential-looking code over asynchronous Operations.

``trampoline(gen)`` steps the generator; each Operation it yields resumes it
with that Operation's data, or throws the Operation's exception in at the
``yield``.  Yielding a list (or tuple, or dict) of Operations runs them
concurrently and resumes with a list (or dict) of their data.  Yielding a
generator runs it as a nested trampoline; yielding None resumes on the next
turn of the reactor.  The trampoline's own result is an Operation.

Example::

    def work(db):
        doc = yield db.get("a")
        a, b = yield [db.get("b"), db.get("c")]
        return doc, a, b

    op = trampoline(work(db))
"""
from __future__ import annotations

import asyncio
import logging
import types
from typing import Any, Generator, Optional

from .operation import OK, Operation, Status, gather
from .reactor import Reactor, get_reactor

__all__ = ["trampoline"]

log = logging.getLogger("loop")


class _Runner:
    __slots__ = ("gen", "reactor", "op", "last", "waiting")

    def __init__(self, gen: Generator[Any, Any, Any], reactor: Reactor, op: Operation) -> None:
        self.gen = gen
        self.reactor = reactor
        self.op = op
        self.last: Optional[Status] = None  # status of the last Operation waited on
        self.waiting: Optional[Operation] = None  # the Operation the generator waits on
        op._cancel = self.cancel

    def cancel(self) -> None:
        """The trampoline's Operation was cancelled: cancel what the generator waits on, and close it."""
        waiting, self.waiting = self.waiting, None
        if waiting is not None:
            waiting.cancel()
        try:
            self.gen.close()
        except ValueError:  # cancelled from inside the generator itself: it ends at its next yield
            pass

    def resume(self, data: Any, status: Status) -> None:
        self.waiting = None
        if self.op.done():  # cancelled meanwhile
            return
        self.last = status
        self.step(data, status.exception)

    def step(self, value: Any, exc: Optional[BaseException]) -> None:
        reactor = self.reactor
        gen = self.gen
        reactor._async_depth += 1
        try:
            while True:
                try:
                    if exc is not None:
                        error, exc = exc, None
                        yielded = gen.throw(error)
                    else:
                        yielded = gen.send(value)
                except StopIteration as stop:
                    last = self.last
                    # Report the last request's status (its code and headers) when it succeeded.
                    self.op.complete(stop.value, last if last is not None and last.exception is None else OK)
                    return
                except (Exception, asyncio.CancelledError) as error:
                    self._failed(error)
                    return
                try:
                    waiting = self._waitable(yielded)
                except TypeError as error:
                    value, exc = None, error
                    continue
                if waiting is None:
                    reactor.call_soon(self.step, None, None)
                    return
                if waiting.done():
                    waiting.observed = True
                    self.last = waiting.status
                    value, exc = waiting.data, waiting.status.exception  # type: ignore[union-attr]
                    continue
                self.waiting = waiting
                waiting.add_callback(self.resume)
                return
        finally:
            reactor._async_depth -= 1

    def _waitable(self, yielded: Any) -> Optional[Operation]:
        if isinstance(yielded, Operation):
            return yielded
        if yielded is None:
            return None
        if isinstance(yielded, (list, tuple)):
            return gather([self._waitable_strict(item) for item in yielded], self.reactor)
        if isinstance(yielded, dict):
            keys = list(yielded)
            combined = gather([self._waitable_strict(yielded[k]) for k in keys], self.reactor)
            as_dict = Operation(self.reactor)
            combined.add_callback(
                lambda data, status: as_dict.complete(dict(zip(keys, data or ())), status)
            )
            as_dict._cancel = combined.cancel
            return as_dict
        if isinstance(yielded, types.GeneratorType):
            return trampoline(yielded, self.reactor)
        raise TypeError(
            "a @relax generator may yield an Operation, a list/tuple/dict of Operations, "
            "a generator or None, not %s" % type(yielded).__name__
        )

    def _waitable_strict(self, item: Any) -> Operation:
        waiting = self._waitable(item)
        if waiting is None:
            raise TypeError("cannot wait on None inside a list or dict")
        return waiting

    def _failed(self, error: BaseException) -> None:
        op = self.op
        op.fail(error)
        if not op.observed:
            # Nobody has asked for the result yet: if still nobody has by the
            # next turn, the exception would vanish, so log it.
            self.reactor.call_soon(_report_unobserved, op)


def _report_unobserved(op: Operation) -> None:
    if not op.observed:
        exc = op.status.exception  # type: ignore[union-attr]
        if exc is not None:
            op.log.error("unhandled exception in trampolined generator", exc_info=exc)


def trampoline(
    gen: Generator[Any, Any, Any], reactor: Optional[Reactor] = None, op: Optional[Operation] = None,
) -> Operation:
    """Run the generator ``gen``; return an Operation for its return value.

    The first step runs at once, in the caller's stack.  Pass ``op`` to have
    the result delivered to an Operation (or subclass) of your own.
    """
    if reactor is None:
        reactor = get_reactor()
    if op is None:
        op = Operation(reactor)
    _Runner(gen, reactor, op).step(None, None)
    return op
