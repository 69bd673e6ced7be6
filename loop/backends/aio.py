"""The asyncio-based reactor: a uvloop loop, a stdlib loop, or a loop someone else runs."""
from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable, Optional

from ..reactor import READ, WRITE, Reactor, Watcher, _by_loop

__all__ = ["AsyncioReactor", "reactor_for_loop"]

_get_running_loop = asyncio._get_running_loop


class _AioWatcher(Watcher):
    __slots__ = ("_loop", "_fd", "_callback", "_readable", "_writable")

    def __init__(self, aloop: asyncio.AbstractEventLoop, fd: int, callback: Callable[[int, int], Any]) -> None:
        self._loop = aloop
        self._fd = fd
        self._callback = callback
        self._readable = False
        self._writable = False

    def update(self, readable: bool, writable: bool) -> None:
        aloop, fd = self._loop, self._fd
        if readable != self._readable:
            if readable:
                aloop.add_reader(fd, self._callback, fd, READ)
            else:
                aloop.remove_reader(fd)
            self._readable = readable
        if writable != self._writable:
            if writable:
                aloop.add_writer(fd, self._callback, fd, WRITE)
            else:
                aloop.remove_writer(fd)
            self._writable = writable

    def close(self) -> None:
        self.update(False, False)


class AsyncioReactor(Reactor):
    """A reactor on an asyncio event loop (uvloop's, the stdlib's, or a given one)."""

    def __init__(self, uvloop: bool = True, loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
        super().__init__()
        if loop is None:
            if uvloop:
                import uvloop as _uvloop

                loop = _uvloop.new_event_loop()
                self.backend = "uvloop"
            else:
                loop = asyncio.new_event_loop()
                self.backend = "asyncio"
            self._owns_loop = True
        else:
            self.backend = "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
            self._owns_loop = False
        self.loop = loop
        _register(loop, self)

    def watch(self, fd: int, readable: bool, writable: bool, callback: Callable[[int, int], Any]) -> Watcher:
        watcher = _AioWatcher(self.loop, fd, callback)
        watcher.update(readable, writable)
        return watcher

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Any:
        return self.loop.call_later(delay, fn, *args)

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.loop.call_soon(fn, *args)

    def call_soon_threadsafe(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.loop.call_soon_threadsafe(fn, *args)

    def _run_loop(self) -> None:
        loop = self.loop
        previous = _get_running_loop()
        if previous is not None and previous is not loop:
            raise RuntimeError("another asyncio loop is running in this thread")
        loop.run_forever()

    def _stop_loop(self) -> None:
        self.loop.stop()

    def time(self) -> float:
        return self.loop.time()

    def is_running(self) -> bool:
        return _get_running_loop() is self.loop

    def _close_loop(self) -> None:
        _unregister(self.loop)
        if self._owns_loop and not self.loop.is_closed():
            self.loop.close()

    def _abandon(self) -> None:
        super()._abandon()
        _unregister(self.loop)

_lock = threading.Lock()


def _register(aloop: asyncio.AbstractEventLoop, reactor: AsyncioReactor) -> None:
    with _lock:
        for key, other in list(_by_loop.items()):
            if other.loop.is_closed():
                del _by_loop[key]
        _by_loop[id(aloop)] = reactor


def _unregister(aloop: asyncio.AbstractEventLoop) -> None:
    with _lock:
        other = _by_loop.get(id(aloop))
        if other is not None and other.loop is aloop:
            del _by_loop[id(aloop)]


def reactor_for_loop(aloop: asyncio.AbstractEventLoop) -> AsyncioReactor:
    """The reactor bound to the asyncio loop ``aloop`` (created on first use)."""
    reactor = _by_loop.get(id(aloop))
    if reactor is not None and reactor.loop is aloop:
        return reactor
    return AsyncioReactor(loop=aloop)
