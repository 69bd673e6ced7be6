"""The reactor, on every backend this Python has: timers, call_soon, watchers, threads."""
from __future__ import annotations

import os
import socket
import threading

import pytest

import loop
from loop import READ, WRITE, Reactor

BACKENDS = [b for b in loop.available_backends() if b != "gevent"]


@pytest.fixture(params=BACKENDS)
def reactor(request):
    r = Reactor.create(request.param)
    assert r.backend == request.param
    yield r
    r.close()


def run_briefly(reactor, seconds=2.0):
    """Run until stopped, failing the test (instead of hanging) after ``seconds``."""
    fired = []

    def deadline():
        fired.append(True)
        reactor.stop()

    handle = reactor.call_later(seconds, deadline)
    reactor.run()
    handle.cancel()
    assert not fired, "the reactor had to be stopped by the test's deadline"


def test_call_soon_runs_in_order_on_the_next_turn(reactor):
    seen = []
    reactor.call_soon(seen.append, 1)
    reactor.call_soon(seen.append, 2)
    assert seen == []  # not called from inside call_soon
    reactor.call_soon(reactor.stop)
    run_briefly(reactor)
    assert seen == [1, 2]


def test_call_later_orders_by_delay_and_cancel_prevents_the_call(reactor):
    seen = []
    reactor.call_later(0.05, seen.append, "late")
    reactor.call_later(0.01, seen.append, "early")
    cancelled = reactor.call_later(0.02, seen.append, "cancelled")
    cancelled.cancel()
    reactor.call_later(0.1, reactor.stop)
    start = reactor.time()
    run_briefly(reactor)
    assert seen == ["early", "late"]
    assert reactor.time() - start >= 0.09


def test_time_is_monotonic_seconds(reactor):
    t0 = reactor.time()
    reactor.call_later(0.05, reactor.stop)
    run_briefly(reactor)
    assert 0.04 <= reactor.time() - t0 < 1.0


def test_is_running_only_inside_run(reactor):
    inside = []
    assert not reactor.is_running()
    reactor.call_soon(lambda: inside.append(reactor.is_running()))
    reactor.call_soon(reactor.stop)
    run_briefly(reactor)
    assert inside == [True]
    assert not reactor.is_running()


def test_call_soon_threadsafe_from_other_threads_wakes_the_loop(reactor):
    seen = []
    count = 200

    def worker(n):
        for i in range(count):
            reactor.call_soon_threadsafe(seen.append, (n, i))
        reactor.call_soon_threadsafe(done)

    finished = []

    def done():
        finished.append(True)
        if len(finished) == 4:
            reactor.stop()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    reactor.call_soon(lambda: [t.start() for t in threads])
    run_briefly(reactor, 5)
    for t in threads:
        t.join()
    assert len(seen) == 4 * count
    for n in range(4):
        assert [i for (m, i) in seen if m == n] == list(range(count))


def test_watch_reports_readable_and_writable_and_can_be_updated(reactor):
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    events = []

    def on_ready(fd, mask):
        events.append(mask)
        if mask & READ:
            assert a.recv(10) == b"x"
            watcher.close()
            reactor.stop()
        elif mask & WRITE:
            # Writable at once; switch to read interest and make it readable.
            watcher.update(True, False)
            b.send(b"x")

    watcher = reactor.watch(a.fileno(), False, True, on_ready)
    run_briefly(reactor)
    assert events[0] & WRITE
    assert events[-1] & READ
    a.close()
    b.close()


def test_closed_watcher_gets_no_more_events(reactor):
    a, b = socket.socketpair()
    calls = []
    watcher = reactor.watch(a.fileno(), True, False, lambda fd, mask: calls.append(mask))
    watcher.close()
    b.send(b"x")
    reactor.call_later(0.05, reactor.stop)
    run_briefly(reactor)
    assert calls == []
    a.close()
    b.close()


def test_exception_in_a_scheduled_call_does_not_stop_the_reactor(reactor, caplog):
    seen = []

    def boom():
        raise RuntimeError("boom in call_soon")

    reactor.call_soon(boom)
    reactor.call_later(0.01, seen.append, "still running")
    reactor.call_later(0.02, reactor.stop)
    run_briefly(reactor)
    assert seen == ["still running"]


def test_run_until_complete_returns_the_result(reactor):
    op = loop.Operation(reactor)
    reactor.call_later(0.01, op.complete, 42, loop.Status(200))
    assert reactor.run_until_complete(op) == 42
    assert not reactor.is_running()


def test_run_until_complete_raises_the_operation_exception(reactor):
    op = loop.Operation(reactor)
    reactor.call_later(0.01, op.fail, KeyError("nope"))
    with pytest.raises(KeyError):
        reactor.run_until_complete(op)


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown reactor backend"):
        Reactor.create("tokio")


def test_loop_backend_environment_variable_forces_the_backend(monkeypatch):
    monkeypatch.setenv("LOOP_BACKEND", "asyncio")
    r = Reactor.create()
    try:
        assert r.backend == "asyncio"
    finally:
        r.close()


def test_get_reactor_is_per_thread_and_created_once():
    here = loop.get_reactor()
    assert loop.get_reactor() is here
    other = []
    t = threading.Thread(target=lambda: other.append(loop.get_reactor()))
    t.start()
    t.join()
    assert other[0] is not here
    other[0].close()


def test_get_reactor_inside_a_running_asyncio_loop_binds_to_that_loop():
    import asyncio

    async def main():
        r = loop.get_reactor()
        assert r.loop is asyncio.get_running_loop()
        assert r.is_running()
        assert loop.get_reactor() is r
        return r

    aloop = asyncio.new_event_loop()
    try:
        r = aloop.run_until_complete(main())
        assert r.backend == "asyncio"
        r.close()
    finally:
        aloop.close()


def test_default_backend_is_pyuv_on_old_pythons_and_uvloop_elsewhere(monkeypatch):
    import sys

    monkeypatch.delenv("LOOP_BACKEND", raising=False)
    expected = "pyuv" if sys.version_info < (3, 10) else "uvloop"
    assert loop.default_backend() == expected
    r = Reactor.create()
    try:
        assert r.backend == expected
    finally:
        r.close()


def test_child_after_fork_gets_its_own_reactor():
    parent = loop.get_reactor()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            child = loop.get_reactor()
            os.write(write_end, b"new" if child is not parent and child.pid == os.getpid() else b"same")
        finally:
            os._exit(0)
    os.close(write_end)
    answer = os.read(read_end, 10)
    os.waitpid(pid, 0)
    os.close(read_end)
    assert answer == b"new"
    assert loop.get_reactor() is parent
