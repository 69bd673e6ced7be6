"""Run one corduroy call in each of the four calling styles.

``call(style, fn, *args, **kwargs)`` invokes ``fn(*args, **kwargs)`` as:

- ``blocking``: no reactor running; the call returns the data or raises;
- ``callback``: with ``callback=``; the reactor runs until it fires, the test
  checks it got an Operation back and that the callback ran exactly once;
- ``relax``: ``yield``-ed inside a ``@relax`` generator;
- ``await``: awaited inside an asyncio task (on uvloop when available).

In every style it returns the data or raises the exception, so one test body
checks all four.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable

import loop
from corduroy import relax

STYLES = ("blocking", "callback", "relax", "await")


def _new_asyncio_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - CPython 3.9 with pyuv
        return asyncio.new_event_loop()


def run_async(coro_fn: Callable[[], Any]) -> Any:
    """Run ``coro_fn()`` on a fresh asyncio loop and close corduroy's reactor bound to it."""
    aloop = _new_asyncio_loop()
    try:
        return aloop.run_until_complete(coro_fn())
    finally:
        from loop.backends.aio import reactor_for_loop

        reactor_for_loop(aloop).close()
        aloop.close()


def call(style: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    if style == "blocking":
        result = fn(*args, **kwargs)
        assert not isinstance(result, loop.Operation), "a blocking call returned an Operation"
        return result
    if style == "callback":
        reactor = loop.get_reactor()
        seen = []

        def callback(data: Any, status: loop.Status) -> None:
            seen.append((data, status))
            reactor.stop()

        op = fn(*args, callback=callback, **kwargs)
        assert isinstance(op, loop.Operation), "a call with a callback must return its Operation"
        reactor.run()
        # Let any (wrong) second invocation happen before checking.
        reactor.call_soon(reactor.stop)
        reactor.run()
        assert len(seen) == 1, "callback ran %d times" % len(seen)
        data, status = seen[0]
        assert isinstance(status, loop.Status)
        if status.exception is not None:
            assert status.ok is False and status.error is type(status.exception)
            raise status.exception
        assert status.ok
        return data
    if style == "relax":

        @relax
        def body() -> Any:
            op = fn(*args, **kwargs)
            assert isinstance(op, loop.Operation), "inside @relax a call must return an Operation"
            data = yield op
            return data

        return body()
    if style == "await":

        async def body() -> Any:
            op = fn(*args, **kwargs)
            assert isinstance(op, loop.Operation), "inside asyncio a call must return an Operation"
            return await op

        return run_async(body)
    raise ValueError(style)
