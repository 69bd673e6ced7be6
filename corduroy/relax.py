"""@relax: write asynchronous CouchDB code as a generator.

Inside a ``@relax`` function, ``yield`` an Operation (any corduroy call made
without a callback) to get its data, or have its exception raised at the
``yield``; ``yield [op1, op2]`` runs them concurrently.

Calling a ``@relax`` function follows the calling contract: inside a running
reactor, another ``@relax`` generator or an asyncio task it returns an
Operation (yield it, await it or add a callback); with no reactor running it
blocks and returns the generator's return value.  On a Tornado
``RequestHandler`` method it returns the Operation, which Tornado awaits.

Example::

    @relax
    def rename(db, doc_id, name):
        doc = yield db.get(doc_id)
        doc.name = name
        yield db.save(doc)
        return doc
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, TypeVar

from loop import get_reactor, trampoline

from .contract import blocking
from .http import CouchOperation, finish

__all__ = ["relax"]

F = TypeVar("F", bound=Callable[..., Any])


def relax(fn: F) -> F:
    """Decorate a generator function so its yields wait on Operations (see the module doc)."""
    if not inspect.isgeneratorfunction(fn):
        if inspect.iscoroutinefunction(fn):
            raise TypeError("@relax is for generator functions; an async def function can simply await")
        raise TypeError("@relax is for generator functions (functions that use `yield`)")

    @blocking  # no reactor running: the generator runs on the blocking reactor
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        reactor = get_reactor()
        reactor._async_depth += 1  # calls made while building the generator must not block
        try:
            gen = fn(*args, **kwargs)
        finally:
            reactor._async_depth -= 1
        op = CouchOperation(reactor)
        op.origin = "@relax %s()" % fn.__qualname__
        return finish(trampoline(gen, reactor, op), None)

    wrapper.__relaxed__ = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
