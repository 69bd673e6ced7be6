"""The calling contract under misuse: stray stops, re-entrancy, timeouts, threads, Ctrl-C, asyncio.

Each test is what a careless (or unlucky) user does, and what they must get:
a blocking call that returns its own result or raises its own error, work
meant for ``run()`` left for ``run()``, a cancelled request that is never
sent, clear errors instead of hangs.  They run on every reactor backend this
interpreter has (uvloop and asyncio; pyuv on CPython 3.9).
"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import threading
import time
import warnings
from typing import Any, Iterator, List

import pytest

import corduroy
import loop
from corduroy import Couch, Database, NotFound, Timeout, relax
from loop import Cancelled, Reactor
from loop.reactor import blocking_reactor
from tests.conftest import couch_request

BACKENDS = [name for name in ("uvloop", "asyncio", "pyuv") if name in loop.available_backends()]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[Reactor]:
    """This thread's default reactor, fresh, on each backend in turn (the blocking reactor follows it)."""
    r = Reactor.create(request.param)
    loop.set_reactor(r)
    yield r
    loop.set_reactor(None)
    r.close()


@pytest.fixture
def db(couch_url: str, dbname: str) -> Database:
    couch_request(couch_url, "PUT", "/" + dbname)
    couch_request(couch_url, "PUT", "/%s/doc?w=3" % dbname, {"v": 1})  # in every copy of a cluster
    return Database(couch_url + "/" + dbname)


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A server that accepts connections (the kernel's backlog does) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield "http://127.0.0.1:%d" % sock.getsockname()[1]
    finally:
        sock.close()


def run_until(reactor: Reactor, condition: Any, limit: float = 20.0) -> None:
    """Run ``reactor`` until ``condition()`` holds (checked every turn), failing after ``limit`` seconds."""
    deadline = time.monotonic() + limit

    def check() -> None:
        if condition() or time.monotonic() > deadline:
            reactor.stop()
        else:
            reactor.call_later(0.005, check)

    reactor.call_soon(check)
    reactor.run()
    assert condition(), "condition not reached in %s s" % limit


# -- 1. stray stops -------------------------------------------------------------
def test_stray_stops_never_end_a_later_blocking_call(backend: Reactor, db: Database) -> None:
    """200 rounds: 8 callbacks each calling stop(), one run(), then 5 blocking calls, all correct."""
    delivered: List[int] = []

    def stop_when_done(doc: Any, status: Any) -> None:
        assert status.ok, status
        delivered.append(doc["v"])
        backend.stop()  # the README's pattern: every callback stops the reactor

    for _round in range(200):
        for _ in range(8):
            db.get("doc", callback=stop_when_done)
        backend.run()  # ends at the first stop(); up to 7 ops are still in flight
        for _ in range(5):
            assert db.get("doc")["v"] == 1  # never "the reactor stopped before the operation completed"
    run_until(backend, lambda: len(delivered) == 1600)
    assert delivered == [1] * 1600


def test_a_leftover_stop_timer_and_a_failed_call_do_not_touch_the_next_calls(backend: Reactor, db: Database,
                                                                         couch_url: str, dbname: str) -> None:
    backend.call_later(0.01, backend.stop)  # meant for a run() that never comes
    with pytest.raises(NotFound):
        db.get("missing")
    time.sleep(0.05)  # the leftover timer is now due
    couch = Couch(couch_url)
    created = couch.create(dbname + "_second")  # must neither raise nor be stopped early
    try:
        assert created.name == dbname + "_second"
        assert db.get("doc")["v"] == 1
    finally:
        couch.delete(dbname + "_second")


def test_stop_with_no_run_active_is_not_kept_for_the_next_run(backend: Reactor) -> None:
    backend.stop()  # nothing runs: ignored
    ran: List[str] = []
    backend.call_later(0.05, ran.append, "timer")
    backend.call_later(0.06, backend.stop)
    backend.run()
    assert ran == ["timer"]  # the early stop() did not end this run() after one turn


# -- 2. blocking calls leave callback work for run() ---------------------------
def test_a_blocking_call_runs_none_of_the_pending_callback_work(backend: Reactor, db: Database) -> None:
    seen: List[str] = []
    backend.call_later(0, seen.append, "timer")
    backend.call_soon(seen.append, "soon")
    db.get("doc", callback=lambda doc, status: seen.append("callback"))
    assert db.get("doc")["v"] == 1
    assert db.info()["doc_count"] == 1
    assert seen == []  # nothing meant for run() ran inside the blocking calls
    run_until(backend, lambda: len(seen) == 3)
    assert sorted(seen) == ["callback", "soon", "timer"]


def test_blocking_calls_use_a_private_reactor_and_relax_follows_it(backend: Reactor, db: Database) -> None:
    @relax
    def where() -> Any:
        doc = yield db.get("doc")
        return loop.get_reactor(), doc["v"]

    reactor, value = where()
    assert value == 1
    assert reactor is blocking_reactor() and reactor is not backend
    assert reactor.backend == backend.backend


def test_blocking_calls_keep_the_connection_limits_set_on_the_default_reactor(backend: Reactor,
                                                                              db: Database) -> None:
    @relax
    def five_at_once() -> Any:
        ops = [db.get("doc") for _ in range(5)]
        curl = loop.get_reactor().curl
        seen = (curl.active, curl.queued)
        docs = yield ops
        return seen, [doc["v"] for doc in docs]

    backend.curl.set_limits(1)
    assert five_at_once() == ((1, 4), [1] * 5)  # one transfer at a time, the rest wait in order
    backend.curl.set_limits(3)  # changed after the private reactor exists: followed too
    assert five_at_once() == ((3, 2), [1] * 5)
    assert blocking_reactor().curl.max_connections == 3


# -- 3. default timeouts ---------------------------------------------------------
def test_timeouts_have_visible_defaults() -> None:
    couch = Couch("http://127.0.0.1:5984")
    assert couch.server.connect_timeout == corduroy.DEFAULT_CONNECT_TIMEOUT == 10.0
    assert couch.server.idle_timeout == corduroy.DEFAULT_IDLE_TIMEOUT == 150.0
    assert Couch("http://127.0.0.1:5984", idle_timeout=None).server.idle_timeout is None
    with pytest.raises(ValueError, match="idle_timeout"):
        with corduroy.timeouts(idle_timeout=-1):
            pass


def test_a_silent_server_fails_a_blocking_call_with_timeout(backend: Reactor, silent_url: str) -> None:
    db = Database(silent_url + "/db", idle_timeout=1, retries=0)
    started = time.monotonic()
    with pytest.raises(Timeout):
        db.get("x")
    assert time.monotonic() - started < 8


def test_timeouts_per_call_override_the_client(backend: Reactor, silent_url: str) -> None:
    db = Database(silent_url + "/db", retries=0)  # the client's defaults: 150 s of stall allowed
    started = time.monotonic()
    with corduroy.timeouts(timeout=0.5):
        with pytest.raises(Timeout):
            db.get("x")
    assert time.monotonic() - started < 5
    with corduroy.timeouts(idle_timeout=1):
        with pytest.raises(Timeout):
            db.info()


def test_a_heartbeating_longpoll_outlives_a_short_stall_timeout(backend: Reactor, db: Database,
                                                               couch_url: str, dbname: str) -> None:
    since = db.info()["update_seq"]
    writer = threading.Timer(3.0, couch_request, (couch_url, "PUT", "/%s/late" % dbname, {"v": 3}))
    writer.start()
    try:
        with corduroy.timeouts(idle_timeout=1):
            started = time.monotonic()
            result = db.changes(feed="longpoll", since=since, heartbeat=500)  # heartbeats: no timeout
    finally:
        writer.join()
    assert [row["id"] for row in result["results"]] == ["late"]
    assert time.monotonic() - started >= 2.5  # it waited for the change, heartbeats kept it alive


# -- 4. an Operation used as its data, or forgotten --------------------------------
def test_an_operation_used_as_data_says_why_it_is_one(backend: Reactor, db: Database) -> None:
    errors: List[BaseException] = []

    def inside_a_callback(_data: Any, _status: Any) -> None:
        op = db.get("doc")  # a reactor is running: this is an Operation
        for misuse in (lambda: op["v"], lambda: op.get("v"), lambda: list(op), lambda: "v" in op,
                       lambda: len(op)):
            try:
                misuse()
            except (TypeError, AttributeError) as exc:
                errors.append(exc)
        op.add_callback(lambda doc, status: backend.stop())

    db.info(callback=inside_a_callback)
    backend.run()
    assert len(errors) == 5
    for exc in errors:
        assert "returned an Operation" in str(exc) and "yield" in str(exc) and "await" in str(exc)
    assert not hasattr(db.get("doc", callback=lambda d, s: None), "_no_such_thing")


def test_a_forgotten_await_warns_when_the_operation_is_collected(db: Database) -> None:
    async def forget() -> None:
        db.save({"_id": "forgotten", "v": 2})  # no await: a bug
        for _ in range(200):
            try:
                await db.get("forgotten")
                return
            except NotFound:
                await asyncio.sleep(0.01)

    with pytest.warns(RuntimeWarning, match=r"Database.save\(\) was never consumed"):
        asyncio.run(forget())
        gc.collect()


def test_consumed_operations_never_warn(backend: Reactor, db: Database) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)

        @relax
        def styles() -> Any:
            a = yield db.get("doc")
            b, c = yield [db.get("doc"), db.info()]
            return a["v"] + b["v"]

        assert styles() == 2
        assert db.get("doc")["v"] == 1

        async def awaited() -> Any:
            return (await db.get("doc"))["v"]

        assert asyncio.run(awaited()) == 1
        got: List[Any] = []
        db.get("doc", callback=lambda d, s: got.append(d))
        run_until(backend, lambda: got)
        gc.collect()


# -- 7. warnings as errors -------------------------------------------------------
def test_cancelling_on_a_reused_connection_with_warnings_as_errors(backend: Reactor, db: Database,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    assert not any("closesocket" in str(f[1]) for f in warnings.filters)  # no process-wide filter
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got: List[Any] = []
        db.get("doc", callback=lambda d, s: got.append(d))
        run_until(backend, lambda: got)  # now a pooled connection
        since = db.info()["update_seq"]
        waiting = db.changes(feed="longpoll", since=since, timeout=10000, callback=lambda d, s: got.append(s))
        backend.call_later(0.2, waiting.cancel)
        run_until(backend, lambda: len(got) == 2)
        assert got[1].error is Cancelled
        assert backend.curl.active == 0  # its slot is free again
        db.get("doc", callback=lambda d, s: got.append(d))
        run_until(backend, lambda: len(got) == 3)
        assert got[2]["v"] == 1
        pending = [db.get("doc", callback=lambda d, s: got.append(s)) for _ in range(3)]
        backend.close()  # in-flight callbacks are still called
        assert all(op.done() for op in pending)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- 9. Ctrl-C inside callbacks and blocking calls ------------------------------
def test_keyboard_interrupt_in_one_callback_loses_no_other(backend: Reactor, db: Database) -> None:
    backend.curl.set_limits(4)
    calls: List[int] = []

    def callback(_doc: Any, status: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt

    for _ in range(20):
        db.get("doc", callback=callback)
    with pytest.raises(KeyboardInterrupt):
        backend.run()
    run_until(backend, lambda: len(calls) == 20)
    assert backend.curl.active == 0 and backend.curl.queued == 0
    later: List[Any] = []
    for _ in range(8):  # the slots are all free again
        db.get("doc", callback=lambda d, s: later.append(d))
    run_until(backend, lambda: len(later) == 8)


def test_ctrl_c_during_a_blocking_call_cancels_it_and_says_so(backend: Reactor, silent_url: str) -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    db = Database(silent_url + "/db", retries=0)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt) as caught:
            db.save({"_id": "x"})
    finally:
        timer.cancel()
    notes = " ".join(getattr(caught.value, "__notes__", []))
    assert "cancelled" in notes and "may have reached the server" in notes
    assert blocking_reactor().curl.active == 0  # not left running


# -- 10. threads ------------------------------------------------------------------
def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_short_lived_threads_leave_no_reactor_behind(db: Database) -> None:
    def one_call() -> None:
        assert db.get("doc")["v"] == 1

    one_call()  # this thread's own reactor exists before counting
    gc.collect()
    before = _open_fds()
    for _ in range(3):
        threads = [threading.Thread(target=one_call) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    gc.collect()
    assert _open_fds() - before <= 2


def test_a_second_thread_calls_while_the_first_runs_its_reactor(backend: Reactor, db: Database) -> None:
    results: List[Any] = []
    errors: List[BaseException] = []

    def other_thread() -> None:
        try:
            results.extend(db.get("doc")["v"] for _ in range(20))  # its own reactors
            with pytest.raises(RuntimeError, match="another thread"):
                backend.run()  # not this thread's to run
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    got: List[Any] = []
    thread = threading.Thread(target=other_thread)

    def start(doc: Any, status: Any) -> None:
        got.append(doc)
        thread.start()

    db.get("doc", callback=start)
    run_until(backend, lambda: got and not thread.is_alive())
    thread.join()
    assert not errors and results == [1] * 20


# -- 11. close() from a callback ----------------------------------------------------
def test_close_from_a_callback_fails_the_others_and_ends_run(backend: Reactor, db: Database,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    statuses: List[Any] = []

    def first(_doc: Any, status: Any) -> None:
        statuses.append(status)
        backend.close()

    db.get("doc", callback=first)
    since = db.info()["update_seq"]
    db.changes(feed="longpoll", since=since, timeout=10000, callback=lambda d, s: statuses.append(s))
    backend.run()  # returns: close() stopped it
    assert backend.closed
    assert len(statuses) == 2 and statuses[0].ok and statuses[1].error is corduroy.ConnectionFailed
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- 12. a cancelled save is never sent -------------------------------------------
@pytest.mark.parametrize("with_id", [True, False])
def test_a_cancelled_queued_save_is_never_written(backend: Reactor, db: Database, with_id: bool,
                                                  couch_url: str, dbname: str) -> None:
    backend.curl.set_limits(1)
    since = db.info()["update_seq"]
    statuses: List[Any] = []
    # The one connection waits for a change (written by another client below).
    db.changes(feed="longpoll", since=since, callback=lambda d, s: statuses.append(d))
    doc = {"_id": "never", "v": 1} if with_id else {"v": 1}
    op = db.save(doc, callback=lambda d, s: statuses.append(s))  # queued behind it
    assert op.cancel()
    # In every copy: the doc_count below may read any copy (tests.consistency).
    backend.call_later(0.3, couch_request, couch_url, "PUT", "/%s/other?w=3" % dbname, {"v": 2})
    run_until(backend, lambda: len(statuses) == 2)
    assert statuses[0].error is Cancelled
    assert [row["id"] for row in statuses[1]["results"]] == ["other"]
    assert "_rev" not in doc and ("_id" not in doc) != with_id
    backend.curl.set_limits(64)
    assert db.info()["doc_count"] == 2  # "doc" and "other": the cancelled save never went out
    with pytest.raises(NotFound):
        db.get("never")


# -- 13. asyncio ------------------------------------------------------------------------
def test_asyncio_wait_for_times_out_as_asyncio_does(silent_url: str) -> None:
    db = Database(silent_url + "/db", retries=0)

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(db.get("x"), 0.3)

    asyncio.run(main())


def test_asyncio_gather_over_cancelled_and_failed_operations(db: Database, silent_url: str,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    silent = Database(silent_url + "/db", retries=0)

    async def main() -> None:
        stuck = silent.get("x")
        ok = db.get("doc")
        asyncio.get_running_loop().call_later(0.2, stuck.cancel)
        results = await asyncio.wait_for(asyncio.gather(ok, stuck, db.get("missing"), return_exceptions=True), 5)
        assert results[0]["v"] == 1
        assert isinstance(results[1], asyncio.CancelledError)
        assert isinstance(results[2], NotFound)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(silent.get("y"), db.get("doc")), 0.3)

    asyncio.run(main())
    assert "_cancel_message" not in caplog.text and "AttributeError" not in caplog.text
