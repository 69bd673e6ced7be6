"""The calling contract, written once: callback, yield/await, or blocking.

Every I/O method of corduroy takes ``callback=None`` and is decorated with
:func:`io_method` (a class gets all of its own with :func:`io_methods`); its
body ends in :func:`finish`.  Together they decide, before any I/O, how the
call completes:

``callback=fn``
    The method returns an Operation at once; ``fn(data, status)`` runs later
    on this thread's reactor, exactly once.  A callback that is not callable
    is refused with a TypeError before anything is sent.
no callback, a reactor running in this thread (a callback, a ``@relax`` generator, an asyncio task)
    The method returns the Operation, to be yielded or awaited.  Using it as
    if it were the data (``op["x"]``, ``op.get(...)``, ``for x in op``)
    raises an error saying so, and an Operation nobody consumes warns when
    it is collected.
no callback, no reactor running
    The call blocks and returns the data, or raises.  It runs on this
    thread's private blocking reactor (:func:`loop.reactor.blocking_reactor`),
    never on the default one: pending callback work (timers, callbacks,
    requests made with ``callback=``) stays pending until the next
    ``run()``, and no ``stop()`` can end it early.  Interrupted (Ctrl-C),
    its request is cancelled, never left running.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Optional, TypeVar

from loop import Operation, Status
from loop.reactor import call_blocking, would_block

__all__ = ["finish", "io_method", "io_methods", "blocking"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T", bound=type)

def finish(op: Operation, callback: Optional[Callable[[Any, Status], Any]]) -> Any:
    """Apply the calling contract to ``op``.

    With a callback: register it and return the Operation.  Inside a running
    reactor or a ``@relax`` generator: return the Operation (yield or await
    it).  Otherwise block until it completes and return its data (or raise).
    """
    if callback is not None:
        if not callable(callback):
            raise TypeError(_not_callable(callback))
        op.add_callback(callback)
        return op
    reactor = op.reactor
    if reactor.in_async_context():
        return op
    return reactor.run_until_complete(op)


def _not_callable(callback: Any) -> str:
    # The value itself is never shown: a misplaced argument is often a URL with credentials.
    return ("callback must be a function of (data, status), got a %s (an argument in the wrong place?)"
            % type(callback).__name__)


def io_method(fn: F) -> F:
    """Decorate an I/O method that takes ``callback=None`` (see the module's docstring).

    A call with no callback and no reactor running is made on this thread's
    blocking reactor; a callback that is not callable is refused before any
    I/O.  Calls with a callback, or inside a running reactor, go straight
    through.
    """
    if getattr(fn, "__io_method__", False):
        return fn
    index = list(inspect.signature(fn).parameters).index("callback")
    name = "%s()" % fn.__qualname__

    @functools.wraps(fn)
    def method(*args: Any, **kwargs: Any) -> Any:
        callback = args[index] if len(args) > index else kwargs.get("callback")
        if callback is None:
            if would_block():
                return call_blocking(fn, *args, **kwargs)
            op = fn(*args, **kwargs)
            if isinstance(op, Operation) and op.origin is None:
                op.origin = name  # for the warning if nobody consumes it
            return op
        if not callable(callback):
            raise TypeError(_not_callable(callback))
        return fn(*args, **kwargs)

    method.__io_method__ = True  # type: ignore[attr-defined]
    return method  # type: ignore[return-value]


def blocking(fn: F) -> F:
    """Decorate a method that may block (``__contains__``, ``__iter__``...): it blocks on the blocking reactor."""
    if getattr(fn, "__io_method__", False):
        return fn

    @functools.wraps(fn)
    def method(*args: Any, **kwargs: Any) -> Any:
        if would_block():
            return call_blocking(fn, *args, **kwargs)
        return fn(*args, **kwargs)

    method.__io_method__ = True  # type: ignore[attr-defined]
    return method  # type: ignore[return-value]


def io_methods(cls: T) -> T:
    """Class decorator: :func:`io_method` on each public method of ``cls`` that takes ``callback``.

    Only the class's own methods (a mixin decorates its own).  Methods that
    block without taking a callback (``__contains__``...) are decorated with
    :func:`blocking` one by one.
    """
    for name, value in list(vars(cls).items()):
        if not inspect.isfunction(value) or getattr(value, "__io_method__", False):
            continue
        if name.startswith("_"):
            continue
        if "callback" in inspect.signature(value).parameters:
            setattr(cls, name, io_method(value))
    return cls
