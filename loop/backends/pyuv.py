"""The pyuv reactor: libuv through pyuv (pyuv 1.4 builds on CPython <= 3.9 only)."""
from __future__ import annotations

import collections
import signal
import threading
from typing import Any, Callable, Deque, Optional, Tuple

import pyuv

from ..redact import redact_text
from ..reactor import READ, WRITE, Handle, Reactor, Watcher

__all__ = ["PyuvReactor"]


class _PollWatcher(Watcher):
    __slots__ = ("_poll", "_fd", "_callback", "_events")

    def __init__(self, uvloop: pyuv.Loop, fd: int, callback: Callable[[int, int], Any]) -> None:
        self._poll = pyuv.Poll(uvloop, fd)
        self._fd = fd
        self._callback = callback
        self._events = 0

    def _ready(self, handle: Any, events: int, error: Any) -> None:
        if error is not None or events is None:
            # A poll error (e.g. a refused connect) comes with no events: let
            # curl look at both directions and find the failure itself.
            self._callback(self._fd, READ | WRITE)
            return
        mask = 0
        if events & pyuv.UV_READABLE:
            mask |= READ
        if events & pyuv.UV_WRITABLE:
            mask |= WRITE
        self._callback(self._fd, mask)

    def update(self, readable: bool, writable: bool) -> None:
        events = (pyuv.UV_READABLE if readable else 0) | (pyuv.UV_WRITABLE if writable else 0)
        if events == self._events:
            return
        self._events = events
        if events:
            self._poll.start(events, self._ready)
        else:
            self._poll.stop()

    def close(self) -> None:
        if not self._poll.closed:
            self._poll.close()
        self._events = 0


class _TimerHandle(Handle):
    __slots__ = ("_timer", "_fn", "_args", "_reactor")

    def __init__(self, reactor: "PyuvReactor", delay: float, fn: Callable[..., Any], args: Tuple[Any, ...]) -> None:
        self._reactor = reactor
        self._fn: Optional[Callable[..., Any]] = fn
        self._args = args
        self._timer = pyuv.Timer(reactor.uv)
        # libuv counts whole milliseconds (pyuv warns below one): a positive
        # delay waits at least 1 ms, a zero or negative one fires next turn.
        self._timer.start(self._fire, max(delay, 0.001) if delay > 0 else 0.0, 0.0)

    def _fire(self, timer: Any) -> None:
        timer.close()
        fn, args = self._fn, self._args
        self._fn = None
        if fn is not None:
            self._reactor._call(fn, args)

    def cancel(self) -> None:
        if self._fn is not None:
            self._fn = None
            if not self._timer.closed:
                self._timer.close()


class _SoonHandle(Handle):
    __slots__ = ("fn", "args")

    def __init__(self, fn: Callable[..., Any], args: Tuple[Any, ...]) -> None:
        self.fn: Optional[Callable[..., Any]] = fn
        self.args = args

    def cancel(self) -> None:
        self.fn = None


class PyuvReactor(Reactor):
    """A reactor on a ``pyuv.Loop``."""

    backend = "pyuv"

    def __init__(self) -> None:
        super().__init__()
        self.uv = pyuv.Loop()
        # pyuv hands an exception that escapes a callback to the loop's
        # excepthook and goes on; Ctrl-C or SystemExit must end run() instead.
        self.uv.excepthook = self._on_escaped
        self._escaped: Optional[BaseException] = None
        self._ready: Deque[_SoonHandle] = collections.deque()
        self._idle = pyuv.Idle(self.uv)
        self._idle_active = False
        self._threadsafe: Deque[_SoonHandle] = collections.deque()
        self._wakeup = pyuv.Async(self.uv, self._on_wakeup)
        self._thread: Any = None
        self._stopping = False

    def watch(self, fd: int, readable: bool, writable: bool, callback: Callable[[int, int], Any]) -> Watcher:
        watcher = _PollWatcher(self.uv, fd, callback)
        watcher.update(readable, writable)
        return watcher

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Handle:
        return _TimerHandle(self, delay, fn, args)

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> Handle:
        handle = _SoonHandle(fn, args)
        self._ready.append(handle)
        if not self._idle_active:
            self._idle.start(self._run_ready)
            self._idle_active = True
        return handle

    def call_soon_threadsafe(self, fn: Callable[..., Any], *args: Any) -> Handle:
        handle = _SoonHandle(fn, args)
        self._threadsafe.append(handle)  # deque.append is atomic
        self._wakeup.send()
        return handle

    def _on_wakeup(self, handle: Any) -> None:
        pending = self._threadsafe
        while pending:
            item = pending.popleft()
            self._ready.append(item)
        if self._ready and not self._idle_active:
            self._idle.start(self._run_ready)
            self._idle_active = True

    def _run_ready(self, handle: Any) -> None:
        ready = self._ready
        for _ in range(len(ready)):
            item = ready.popleft()
            fn = item.fn
            if fn is not None:
                self._call(fn, item.args)
        if not ready and self._idle_active:
            self._idle.stop()
            self._idle_active = False

    def _call(self, fn: Callable[..., Any], args: Tuple[Any, ...]) -> None:
        try:
            fn(*args)
        except Exception:
            import logging

            logging.getLogger("loop").exception("exception in reactor callback %s", redact_text(repr(fn)))

    def _run_loop(self) -> None:
        self._thread = threading.get_ident()
        self._stopping = False
        self._interrupted = False
        # While libuv waits in C, Python's SIGINT handler cannot raise
        # KeyboardInterrupt (and pyuv would swallow it in a callback): watch
        # SIGINT on the loop instead, then raise it once the loop is left.
        sigint = None
        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            sigint = pyuv.Signal(self.uv)
            sigint.start(self._on_sigint, signal.SIGINT)
        try:
            while not self._stopping:
                self.uv.run(pyuv.UV_RUN_ONCE)
        finally:
            self._thread = None
            if sigint is not None:
                sigint.close()
                self.uv.run(pyuv.UV_RUN_NOWAIT)
                signal.signal(signal.SIGINT, signal.default_int_handler)  # libuv left SIG_DFL behind
        escaped, self._escaped = self._escaped, None
        if escaped is not None:
            raise escaped
        if self._interrupted:
            raise KeyboardInterrupt

    def _on_escaped(self, kind: Any, value: Any, tb: Any) -> None:
        if isinstance(value, Exception):
            import logging

            logging.getLogger("loop").error("exception in reactor callback", exc_info=(kind, value, tb))
            return
        if self._escaped is None:
            self._escaped = value.with_traceback(tb)
        self._stop_loop()

    def _on_sigint(self, handle: Any, signum: int) -> None:
        self._interrupted = True
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._stopping = True
        self.uv.stop()

    def time(self) -> float:
        return self.uv.now() / 1000.0

    def is_running(self) -> bool:
        return self._thread == threading.get_ident()

    def _close_loop(self) -> None:
        if self.uv is None:  # closed already
            return
        for handle in (self._idle, self._wakeup):
            if not handle.closed:
                handle.close()
        self.uv.run(pyuv.UV_RUN_NOWAIT)
        # Let the libuv loop (and its epoll, eventfd and pipe fds) go: the
        # handles refer to it and to this reactor's methods in cycles.
        self._idle = self._wakeup = None  # type: ignore[assignment]
        self.uv = None  # type: ignore[assignment]
        import gc

        gc.collect()
