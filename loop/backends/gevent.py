"""The gevent reactor: corduroy on gevent's hub loop, so blocking calls block one greenlet.

Everything runs on the loop of this thread's gevent hub
(``gevent.get_hub().loop``, libev or libuv): curl's sockets are io watchers,
``call_later`` uses timer watchers, ``call_soon`` the loop's callback queue,
and ``call_soon_threadsafe`` an async watcher.  All reactor callbacks run in
the hub greenlet.

What differs from the other backends is blocking.  The hub is always there, so
instead of running a loop a blocking call parks the calling greenlet until
its Operation completes, while the hub keeps serving curl's sockets and every
other greenlet::

    from gevent import monkey; monkey.patch_all()   # selects this backend
    import gevent
    from corduroy import Database

    db = Database("http://127.0.0.1:5984/mydb")
    jobs = [gevent.spawn(db.get, doc_id) for doc_id in ids]
    gevent.joinall(jobs)                 # job.value: each document

``is_running()`` is true only inside reactor callbacks (in the hub
greenlet), where calls return Operations as on every backend; ``run()``
parks the calling greenlet until ``stop()``.
"""
from __future__ import annotations

import collections
import logging
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import gevent  # type: ignore[import-untyped]
from gevent.event import Event  # type: ignore[import-untyped]
from gevent.hub import Waiter  # type: ignore[import-untyped]
from greenlet import getcurrent  # type: ignore[import-untyped]

from ..redact import redact_text
from ..reactor import READ, WRITE, Handle, Reactor, Watcher

__all__ = ["GeventReactor"]

log = logging.getLogger("loop")

_READ_WRITE = READ | WRITE


def _call(fn: Callable[..., Any], args: Tuple[Any, ...]) -> None:
    """Run a reactor callback, logging (not propagating) its exception."""
    try:
        fn(*args)
    except Exception:
        log.exception("exception in reactor callback %s", redact_text(repr(fn)))


class _IoWatcher(Watcher):
    __slots__ = ("_io", "_fd", "_callback", "_events")

    def __init__(self, hub_loop: Any, fd: int, callback: Callable[[int, int], Any]) -> None:
        self._io: Any = hub_loop.io(fd, _READ_WRITE)  # events are set in update()
        self._fd = fd
        self._callback = callback
        self._events = 0

    def _ready(self, events: int) -> None:
        mask = events & _READ_WRITE
        if events & ~_READ_WRITE:  # an error or hang-up (libuv's UV_DISCONNECT): let curl look
            mask = _READ_WRITE
        try:
            self._callback(self._fd, mask)
        except Exception:
            log.exception("exception in watcher callback for fd %d", self._fd)

    def update(self, readable: bool, writable: bool) -> None:
        events = (READ if readable else 0) | (WRITE if writable else 0)
        if events == self._events:
            return
        io = self._io
        if io is None:
            raise RuntimeError("this watcher is closed")
        if self._events:
            io.stop()
        self._events = events
        if events:
            io.events = events  # only settable while stopped (libuv)
            io.start(self._ready, pass_events=True)

    def close(self) -> None:
        io, self._io = self._io, None
        self._events = 0
        if io is not None:
            io.stop()
            io.close()


class _TimerHandle(Handle):
    __slots__ = ("_timer",)

    def __init__(self, timer: Any) -> None:
        self._timer = timer

    def _fire(self, fn: Callable[..., Any], args: Tuple[Any, ...]) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.close()
            _call(fn, args)

    def cancel(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.stop()
            timer.close()


class _SoonHandle(Handle):
    __slots__ = ("_callback",)

    def __init__(self, callback: Any) -> None:
        self._callback = callback

    def cancel(self) -> None:
        self._callback.stop()


class _ThreadsafeHandle(Handle):
    __slots__ = ("fn", "args")

    def __init__(self, fn: Callable[..., Any], args: Tuple[Any, ...]) -> None:
        self.fn: Optional[Callable[..., Any]] = fn
        self.args = args

    def cancel(self) -> None:
        self.fn = None


class GeventReactor(Reactor):
    """A reactor on the loop of this thread's gevent hub.

    Blocking calls (no callback, outside reactor callbacks) park the calling
    greenlet rather than the thread.  Made by ``Reactor.create("gevent")``,
    ``LOOP_BACKEND=gevent``, or automatically when gevent has monkey-patched
    ``socket``.

    Example::

        reactor = Reactor.create("gevent")
        loop.set_reactor(reactor)
        greenlets = [gevent.spawn(db.get, "doc-%d" % i) for i in range(10)]
        gevent.joinall(greenlets)
    """

    backend = "gevent"

    def __init__(self) -> None:
        # Per-greenlet nesting depth of trampolines (see ``_async_depth``); set
        # before Reactor.__init__, which assigns ``_async_depth``.
        self._depths: Dict[Any, int] = {}
        super().__init__()
        self.hub = gevent.get_hub()
        self.loop = self.hub.loop
        self._runners: List[Event] = []
        self._parked = 0
        self._threadsafe: Deque[_ThreadsafeHandle] = collections.deque()
        self._wakeup: Any = self.loop.async_(ref=False)
        self._wakeup.start(self._on_wakeup)

    # -- per-greenlet async depth -------------------------------------------
    # The trampoline and @relax count how deeply the *current* code is inside
    # a generator step; other greenlets interleave with it, so the count is
    # kept per greenlet: a greenlet that switches away mid-step must not make
    # another greenlet's plain calls return Operations.
    @property
    def _async_depth(self) -> int:
        return self._depths.get(getcurrent(), 0)

    @_async_depth.setter
    def _async_depth(self, value: int) -> None:
        current = getcurrent()
        if value:
            self._depths[current] = value
        else:
            self._depths.pop(current, None)

    # -- the reactor interface -----------------------------------------------
    def watch(self, fd: int, readable: bool, writable: bool, callback: Callable[[int, int], Any]) -> Watcher:
        watcher = _IoWatcher(self.loop, fd, callback)
        watcher.update(readable, writable)
        return watcher

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Handle:
        timer = self.loop.timer(max(delay, 0.0))
        handle = _TimerHandle(timer)
        # update=True: measure the delay from now, not from the loop's cached time.
        timer.start(handle._fire, fn, args, update=True)
        return handle

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> Handle:
        return _SoonHandle(self.loop.run_callback(_call, fn, args))

    def call_soon_threadsafe(self, fn: Callable[..., Any], *args: Any) -> Handle:
        wakeup = self._wakeup
        if wakeup is None:
            raise RuntimeError("the reactor is closed")
        handle = _ThreadsafeHandle(fn, args)
        self._threadsafe.append(handle)  # deque.append is atomic
        wakeup.send()
        return handle

    def _on_wakeup(self) -> None:
        pending = self._threadsafe
        while pending:
            item = pending.popleft()
            fn = item.fn
            if fn is not None:
                _call(fn, item.args)

    def run(self) -> None:
        """Park the calling greenlet until ``stop()``; the hub runs meanwhile."""
        if getcurrent() is self.hub:
            raise RuntimeError("run() cannot be called from a reactor callback (the hub greenlet)")
        stopped = Event()
        self._runners.append(stopped)
        self._park(1)
        try:
            stopped.wait()
        finally:
            self._park(-1)
            if stopped in self._runners:
                self._runners.remove(stopped)

    def stop(self) -> None:
        """Make every greenlet parked in ``run()`` return."""
        runners, self._runners = self._runners, []
        for stopped in runners:
            stopped.set()

    def time(self) -> float:
        return time.monotonic()

    def is_running(self) -> bool:
        """True inside reactor callbacks, that is in this reactor's hub greenlet."""
        return getcurrent() is self.hub

    def run_until_complete(self, op: Any) -> Any:
        """Park the calling greenlet until ``op`` completes; return ``op.result()``.

        Other greenlets and the hub keep running meanwhile.  If the greenlet
        is interrupted while it waits (killed, or a ``gevent.Timeout``), the
        Operation is cancelled and the exception propagates.
        """
        if not op.done():
            if getcurrent() is self.hub:
                raise RuntimeError(
                    "the reactor is already running: yield the Operation or pass a callback "
                    "instead of blocking inside a reactor callback"
                )
            waiter = Waiter(self.hub)
            op.add_callback(lambda _data, _status: self.loop.run_callback(waiter.switch, None))
            self._park(1)
            try:
                waiter.get()
            except BaseException:
                op.cancel()
                raise
            finally:
                self._park(-1)
        return op.result()

    def _park(self, delta: int) -> None:
        # While a greenlet waits on the reactor, the async watcher holds a
        # reference on the loop so gevent does not declare a deadlock
        # (LoopExit) while a wake-up can still come from another thread.
        before = self._parked
        self._parked = before + delta
        if (before == 0) != (self._parked == 0) and self._wakeup is not None:
            self._wakeup.ref = self._parked > 0

    def close(self) -> None:
        super().close()
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None:
            wakeup.stop()
            wakeup.close()
        self.stop()
