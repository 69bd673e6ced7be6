"""The reactor interface, backend selection and the per-thread default reactor.

A reactor watches file descriptors, runs timers and callbacks, and drives one
curl multi handle (:class:`loop.curl.CurlDriver`).  Backends:

``uvloop``
    libuv through uvloop; the default wherever uvloop is installed.
``asyncio``
    the stdlib event loop, or the asyncio loop already running in this thread
    (so corduroy can live inside an asyncio, aiohttp or Tornado application).
``pyuv``
    libuv through pyuv (CPython <= 3.9 only, where it is the default).

Choose one with ``Reactor.create(backend)`` or the ``LOOP_BACKEND`` variable.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any, Callable, Optional

log = logging.getLogger("loop")

READ = 1
WRITE = 2

BACKENDS = ("uvloop", "asyncio", "pyuv", "gevent")


class Handle:
    """A scheduled call; ``cancel()`` stops it from running."""

    __slots__ = ()

    def cancel(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class Watcher:
    """Interest in a file descriptor; ``update()`` it or ``close()`` it."""

    __slots__ = ()

    def update(self, readable: bool, writable: bool) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class Reactor:
    """An event loop that corduroy's requests run on.

    ``watch(fd, readable, writable, callback)`` calls ``callback(fd, events)``
    with ``events`` a mask of :data:`READ` and :data:`WRITE`.  Timers use
    ``call_later``; ``call_soon`` runs a function on the next turn and
    ``call_soon_threadsafe`` does so from any thread.

    Example::

        reactor = loop.get_reactor()
        reactor.call_later(0.5, reactor.stop)
        reactor.run()
    """

    #: Name of the backend (``"uvloop"``, ``"asyncio"``, ``"pyuv"``...).
    backend: str = ""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._curl: Any = None
        self._async_depth = 0

    # -- interface every backend implements -------------------------------
    def watch(self, fd: int, readable: bool, writable: bool,
              callback: Callable[[int, int], Any]) -> Watcher:
        """Watch ``fd``; ``callback(fd, events)`` runs when it is ready."""
        raise NotImplementedError

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Handle:
        """Run ``fn(*args)`` after ``delay`` seconds; returns a cancellable handle."""
        raise NotImplementedError

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the next turn of the loop."""
        raise NotImplementedError

    def call_soon_threadsafe(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Like ``call_soon``, callable from any thread; wakes the loop."""
        raise NotImplementedError

    def run(self) -> None:
        """Run until ``stop()`` is called."""
        raise NotImplementedError

    def stop(self) -> None:
        """Make ``run()`` return after the current turn."""
        raise NotImplementedError

    def time(self) -> float:
        """The reactor's monotonic clock, in seconds."""
        raise NotImplementedError

    def is_running(self) -> bool:
        """True while the loop runs in this thread."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the reactor's resources (its curl driver and loop)."""
        if self._curl is not None:
            self._curl.close()
            self._curl = None

    # -- shared behaviour -------------------------------------------------
    def run_until_complete(self, op: Any) -> Any:
        """Run the loop until the Operation ``op`` completes; return ``op.result()``."""
        if not op.done():
            if self.is_running():
                raise RuntimeError(
                    "the reactor is already running: yield or await the Operation instead of blocking"
                )
            op.add_callback(self._stop_on_done)
            self.run()
            if not op.done():
                raise RuntimeError("the reactor stopped before the operation completed")
        return op.result()

    def _stop_on_done(self, _data: Any, _status: Any) -> None:
        self.stop()

    def in_async_context(self) -> bool:
        """True when a call should return an Operation rather than block.

        That is while the loop runs, or while the trampoline steps a generator.
        """
        return self._async_depth > 0 or self.is_running()

    @property
    def curl(self) -> Any:
        """This reactor's :class:`loop.curl.CurlDriver`, created on first use."""
        driver = self._curl
        if driver is None:
            from .curl import CurlDriver

            driver = self._curl = CurlDriver(self)
        return driver

    def _abandon(self) -> None:
        """After ``os.fork()``: forget this reactor without closing the parent's sockets."""
        _abandoned.append(self)
        if self._curl is not None:
            self._curl.abandon()
            self._curl = None

    def __repr__(self) -> str:
        return "<%s backend=%s>" % (type(self).__name__, self.backend)

    # -- construction -----------------------------------------------------
    @staticmethod
    def create(backend: Optional[str] = None, **kwargs: Any) -> "Reactor":
        """Make a new reactor with ``backend`` (default: ``LOOP_BACKEND`` or the best available)."""
        name = backend or os.environ.get("LOOP_BACKEND") or default_backend()
        if name not in BACKENDS:
            raise ValueError("unknown reactor backend %r (choose from %s)" % (name, ", ".join(BACKENDS)))
        if name in ("uvloop", "asyncio"):
            from .backends.aio import AsyncioReactor

            return AsyncioReactor(uvloop=(name == "uvloop"), **kwargs)
        if name == "pyuv":
            from .backends.pyuv import PyuvReactor

            return PyuvReactor(**kwargs)
        from .backends.gevent import GeventReactor

        return GeventReactor(**kwargs)


def available_backends() -> list:
    """The backends that can be imported on this interpreter."""
    found = []
    for name, module in (("uvloop", "uvloop"), ("asyncio", "asyncio"), ("pyuv", "pyuv"), ("gevent", "gevent")):
        try:
            __import__(module)
        except ImportError:
            continue
        if name == "gevent":
            try:
                from .backends import gevent as _g  # noqa: F401
            except ImportError:
                continue
        found.append(name)
    return found


def default_backend() -> str:
    """The backend chosen when none is forced."""
    import sys

    if "gevent" in sys.modules:
        try:
            from gevent import monkey

            if monkey.is_module_patched("socket"):
                return "gevent"
        except ImportError:
            pass
    # pyuv is the libuv binding on CPython <= 3.9 (the only place it builds),
    # uvloop everywhere else; the stdlib asyncio loop when neither is there.
    order = ("pyuv", "uvloop") if sys.version_info < (3, 10) else ("uvloop", "pyuv")
    for name in order:
        try:
            __import__(name)
        except ImportError:
            continue
        return name
    return "asyncio"


# Reactors inherited across a fork are kept alive here, never closed: closing
# them would close (or, for TLS, write to) connections the parent still uses.
_abandoned: list = []


def _thread_local_base() -> type:
    """``threading.local``; the unpatched one if gevent is loaded (its patched one is per greenlet)."""
    import sys

    if "gevent" in sys.modules:
        try:
            from gevent import monkey

            return monkey.get_original("threading", "local")
        except Exception:  # pragma: no cover - gevent without its monkey module
            pass
    return threading.local


_get_running_loop = asyncio._get_running_loop
#: id(asyncio loop) -> the AsyncioReactor bound to it (kept by loop.backends.aio).
_by_loop: dict = {}
_pid = os.getpid()


def _after_fork_in_child() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork_in_child)


class _Local(_thread_local_base()):  # type: ignore[misc]
    # One reactor per OS thread, shared by all the greenlets of that thread.
    reactor: Optional[Reactor] = None


_local = _Local()


def get_reactor() -> Reactor:
    """This thread's reactor.

    If an asyncio loop is running in this thread, the reactor bound to it
    (created on first use); otherwise this thread's default reactor, created
    on first use with the default backend.  After ``os.fork()`` the child
    gets a fresh reactor and never touches the parent's sockets.
    """
    running = _get_running_loop()
    if running is not None:
        reactor = _by_loop.get(id(running))
        if reactor is not None and reactor.loop is running:
            return reactor
        from .backends.aio import reactor_for_loop

        return reactor_for_loop(running)
    reactor = _local.reactor
    if reactor is None or reactor.pid != _pid:
        if reactor is not None:
            reactor._abandon()
        reactor = _local.reactor = Reactor.create()
    return reactor


def set_reactor(reactor: Optional[Reactor]) -> None:
    """Make ``reactor`` this thread's default (None: make a new one on next use)."""
    _local.reactor = reactor
