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

#: Watch a file descriptor for reading (``Reactor.watch(fd, READ, ...)``; combine with ``|``).
READ = 1
#: Watch a file descriptor for writing.
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
        self._run_thread: Optional[int] = None  # the thread inside run(), if any
        self._close_after_run = False
        self.closed = False

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

    def time(self) -> float:
        """The reactor's monotonic clock, in seconds."""
        raise NotImplementedError

    def is_running(self) -> bool:
        """True while the loop runs in this thread."""
        raise NotImplementedError

    def _run_loop(self) -> None:  # pragma: no cover - interface
        """Run the backend's loop until ``_stop_loop()``."""
        raise NotImplementedError

    def _stop_loop(self) -> None:  # pragma: no cover - interface
        """Make the backend's running loop return after the current turn."""
        raise NotImplementedError

    def _close_loop(self) -> None:
        """Release the backend's loop (after the curl driver is closed)."""

    # -- running and stopping ----------------------------------------------
    def run(self) -> None:
        """Run until ``stop()`` is called.

        One ``run()`` at a time: calling it while it runs (in this thread or
        another) raises RuntimeError.  While it runs, :func:`get_reactor` in
        this thread returns this reactor.
        """
        if self.closed:
            raise RuntimeError("the reactor is closed")
        me = threading.get_ident()
        owner = self._run_thread
        if owner is not None or self.is_running():
            if owner is not None and owner != me:
                raise RuntimeError("this reactor is already running in another thread; each thread has its "
                                   "own reactor (loop.get_reactor()), or hand work over with "
                                   "reactor.call_soon_threadsafe(fn)")
            raise RuntimeError("the reactor is already running: yield or await the Operation instead of "
                               "blocking, or pass a callback")
        state = _state()
        previous = state.current
        state.current = self
        self._run_thread = me
        try:
            self._run_loop()
        finally:
            self._run_thread = None
            state.current = previous
            if self._close_after_run:
                self._close_after_run = False
                self._close_now()

    def stop(self) -> None:
        """End the ``run()`` that is active on this reactor, after the current turn.

        A ``stop()`` made while no ``run()`` is active does nothing (it is
        not kept for a later ``run()``); one made from another thread is
        handed to the reactor's thread.  Blocking calls never run on this
        reactor (see :func:`blocking_reactor`), so no ``stop()`` can end one.
        """
        if self.is_running():
            self._stop_loop()
            return
        owner = self._run_thread
        if owner is not None and owner != threading.get_ident():
            self.call_soon_threadsafe(self.stop)
            return
        log.debug("%r: stop() while no run() is active: ignored", self)

    def close(self) -> None:
        """Release the reactor's resources (its curl driver and loop).

        Requests still in flight fail (``ConnectionFailed``, "reactor
        closed"); their callbacks run.  Called from a callback of this
        reactor, it does that at once, stops the ``run()`` and frees the
        loop when ``run()`` returns.
        """
        if self.closed:
            return
        owner = self._run_thread
        if owner is not None or self.is_running():
            if owner is not None and owner != threading.get_ident():
                raise RuntimeError("close() a reactor from the thread that runs it, or after run() returns")
            self._close_curl()
            if owner is not None:
                self._close_after_run = True
                self._stop_loop()
                return
            # A loop someone else runs (asyncio): only our side is ours to free.
        self._close_now()

    def _close_curl(self) -> None:
        if self._curl is not None:
            curl, self._curl = self._curl, None
            curl.close()

    def _close_now(self) -> None:
        self.closed = True
        self._close_curl()
        self._close_loop()

    # -- blocking -----------------------------------------------------------
    def run_until_complete(self, op: Any) -> Any:
        """Run the loop until the Operation ``op`` completes; return ``op.result()``.

        Nothing but ``op`` completing ends it: a ``stop()`` meant for someone
        else makes it run the loop again.  If it is interrupted (Ctrl-C, an
        exception out of the loop), ``op`` is cancelled and the exception
        propagates, with a note saying whether the request may have reached
        the server.
        """
        if op.done():
            return op.result()
        if self.is_running():
            raise RuntimeError(
                "the reactor is already running: yield or await the Operation instead of blocking"
            )
        waiter = _StopWhenDone(self)
        op.add_callback(waiter)
        try:
            while not op.done():
                self.run()
        except BaseException as exc:
            waiter.armed = False
            if not op.done():
                sent = op.may_have_been_sent()
                op.cancel()
                _add_note(exc, "corduroy: the blocking call was interrupted and cancelled; %s" % (
                    "the request may have reached the server" if sent else "the request was never sent"))
            raise
        waiter.armed = False
        return op.result()

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
        self.closed = True
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
            from .redact import describe

            raise ValueError("unknown reactor backend %s (choose from %s)" % (describe(name), ", ".join(BACKENDS)))
        if name in ("uvloop", "asyncio"):
            from .backends.aio import AsyncioReactor

            return AsyncioReactor(uvloop=(name == "uvloop"), **kwargs)
        if name == "pyuv":
            from .backends.pyuv import PyuvReactor

            return PyuvReactor(**kwargs)
        from .backends.gevent import GeventReactor

        return GeventReactor(**kwargs)


class _StopWhenDone:
    """The callback that ends ``run_until_complete``'s run; disarmed once that call returns."""

    __slots__ = ("reactor", "armed")

    def __init__(self, reactor: Reactor) -> None:
        self.reactor = reactor
        self.armed = True

    def __call__(self, _data: Any, _status: Any) -> None:
        if self.armed and self.reactor.is_running():
            self.reactor._stop_loop()


def _add_note(exc: BaseException, note: str) -> None:
    add = getattr(exc, "add_note", None)
    if add is not None:
        add(note)
    else:  # Python < 3.11: kept where 3.11's traceback printing would look
        exc.__notes__ = list(getattr(exc, "__notes__", ())) + [note]  # type: ignore[attr-defined]


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


class _ThreadState:
    """One OS thread's reactors: its default one, its private one for blocking calls, the current one.

    Reactors made here are closed when the thread ends (its thread-local
    state is dropped): a short-lived thread that made calls leaves no
    epoll set, pipe or connection behind.
    """

    __slots__ = ("default", "blocking", "current", "made")

    def __init__(self) -> None:
        self.default: Optional[Reactor] = None
        self.blocking: Optional[Reactor] = None
        #: The reactor calls go to right now: one running in this thread, or
        #: the blocking reactor while a blocking call is being made.
        self.current: Optional[Reactor] = None
        self.made: list = []

    def remember(self, reactor: Reactor) -> None:
        """Close ``reactor`` with the thread (and forget the closed ones already kept)."""
        self.made = [r for r in self.made if not r.closed]
        self.made.append(reactor)

    def __del__(self) -> None:
        for reactor in self.made:
            try:
                if not reactor.closed and reactor.pid == os.getpid() and reactor._run_thread is None:
                    reactor.close()
            except Exception:  # pragma: no cover - interpreter teardown
                pass


class _Local(_thread_local_base()):  # type: ignore[misc]
    # One state per OS thread, shared by all the greenlets of that thread.
    def __init__(self) -> None:
        self.state = _ThreadState()


_local = _Local()


def _state() -> _ThreadState:
    return _local.state


def get_reactor() -> Reactor:
    """This thread's current reactor.

    If an asyncio loop is running in this thread, the reactor bound to it
    (created on first use); else the reactor running in this thread, or
    the private blocking reactor while a blocking call is being made; else
    this thread's default reactor, created on first use with the default
    backend.  After ``os.fork()`` the child gets a fresh reactor and never
    touches the parent's sockets.
    """
    running = _get_running_loop()
    if running is not None:
        reactor = _by_loop.get(id(running))
        if reactor is not None and reactor.loop is running:
            return reactor
        from .backends.aio import reactor_for_loop

        return reactor_for_loop(running)
    state = _local.state
    reactor = state.current
    if reactor is not None:
        return reactor
    reactor = state.default
    if reactor is None or reactor.pid != _pid or reactor.closed:
        if reactor is not None and reactor.pid != _pid:
            reactor._abandon()
        reactor = state.default = Reactor.create()
        state.remember(reactor)
    return reactor


def set_reactor(reactor: Optional[Reactor]) -> None:
    """Make ``reactor`` this thread's default (None: make a new one on next use)."""
    _local.state.default = reactor


def blocking_reactor() -> Reactor:
    """This thread's private reactor for blocking calls (created on first use).

    A blocking call (no callback, no reactor running) runs on it, not on
    the default reactor, so it never runs the timers and callbacks pending
    there, and no ``stop()`` meant for the default reactor can end it.  It
    follows the default reactor's backend and its connection limits
    (``get_reactor().curl.set_limits(...)``): a limit set there holds for
    blocking calls and top-level ``@relax`` generators too.  On gevent,
    where blocking parks only the calling greenlet, it is the default
    reactor itself.
    """
    state = _local.state
    reactor = state.blocking
    default = state.default
    if default is not None and (default.pid != _pid or default.closed):
        default = None
    backend = default.backend if default is not None else None
    if reactor is None or reactor.pid != _pid or reactor.closed or (backend and reactor.backend != backend):
        if reactor is not None and reactor.pid != _pid:
            reactor._abandon()
        elif reactor is not None and not reactor.closed and reactor._run_thread is None:
            reactor.close()  # the default reactor's backend changed: follow it
        if backend == "gevent":
            return default  # type: ignore[return-value]
        reactor = Reactor.create(backend)
        if reactor.backend == "gevent":
            reactor.close()
            return get_reactor()
        state.blocking = reactor
        state.remember(reactor)
    if default is not None and default._curl is not None:
        limits = default._curl.limits
        if reactor._curl is None or reactor._curl.limits != limits:
            reactor.curl.set_limits(*limits)
    return reactor


def would_block() -> bool:
    """True when a call made now with no callback would block (no reactor running, no generator stepping)."""
    if _get_running_loop() is not None:
        return False
    state = _local.state
    reactor = state.current or state.default
    return reactor is None or not reactor.in_async_context()


def call_blocking(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` with this thread's blocking reactor as the current reactor (see :func:`blocking_reactor`)."""
    state = _local.state
    previous = state.current
    reactor = blocking_reactor()
    if reactor is previous or reactor.backend == "gevent":
        return fn(*args, **kwargs)
    state.current = reactor
    try:
        return fn(*args, **kwargs)
    finally:
        state.current = previous
