"""The gevent backend: plain corduroy calls inside greenlets block only their own greenlet.

In this process gevent is never monkey-patched (that cannot be undone): the
backend is forced with ``Reactor.create("gevent")``.  Scenarios that need a
patched interpreter, or a fresh one, run ``tests/gevent_scenarios.py`` in a
subprocess and assert on the JSON it prints.
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

gevent = pytest.importorskip("gevent")

import loop  # noqa: E402
from corduroy import Database, NotFound, relax  # noqa: E402
from loop import Reactor  # noqa: E402

from .conftest import couch_request  # noqa: E402
from .consistency import EVERY_COPY, eventually_equal  # noqa: E402
from .proxy import FaultProxy  # noqa: E402
from .styles import call  # noqa: E402

# The contracts of the reactor, the curl driver and the trampoline, which
# test_reactor.py, test_curl_driver.py and test_trampoline.py check on the
# other backends, run here on the gevent reactor (the ``reactor`` and ``db``
# fixtures below).
from .test_curl_driver import (  # noqa: E402,F401
    test_cancel_of_a_queued_request_never_calls_it_and_frees_the_slot,
    test_cancel_of_a_running_request_returns_its_handle_to_the_pool,
    test_concurrency_is_bounded_by_max_connections,
    test_consumer_returning_false_aborts_the_transfer,
    test_raw_request_round_trip_and_handle_reuse,
    test_refused_connection_is_a_connection_failed,
    test_requests_past_the_limit_queue_and_start_in_order,
    test_streamed_body_arrives_chunk_by_chunk_to_a_consumer,
    test_total_timeout_against_a_server_that_never_answers,
)
from .test_trampoline import (  # noqa: E402,F401
    test_already_completed_operations_do_not_recurse,
    test_an_error_in_a_parallel_list_is_thrown_in,
    test_each_yield_resumes_with_the_operation_data,
    test_exception_is_thrown_in_at_the_yield_and_can_be_caught,
    test_trampolines_nest_and_compose,
    test_uncaught_exception_fails_the_trampoline_operation,
    test_unobserved_failure_is_logged,
    test_yield_none_resumes_on_the_next_turn,
    test_yielding_a_dict_resumes_with_a_dict,
    test_yielding_a_list_runs_operations_concurrently,
    test_yielding_something_else_throws_type_error_into_the_generator,
)
from .test_reactor import (  # noqa: E402,F401
    test_call_later_orders_by_delay_and_cancel_prevents_the_call,
    test_call_soon_runs_in_order_on_the_next_turn,
    test_call_soon_threadsafe_from_other_threads_wakes_the_loop,
    test_closed_watcher_gets_no_more_events,
    test_exception_in_a_scheduled_call_does_not_stop_the_reactor,
    test_is_running_only_inside_run,
    test_run_until_complete_raises_the_operation_exception,
    test_run_until_complete_returns_the_result,
    test_time_is_monotonic_seconds,
    test_watch_reports_readable_and_writable_and_can_be_updated,
)

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = Path(__file__).resolve().parent / "gevent_scenarios.py"


@pytest.fixture
def reactor():
    """A gevent reactor, this thread's reactor for the test (the previous one is put back after)."""
    previous = loop.reactor._local.state.default
    r = Reactor.create("gevent")
    assert r.backend == "gevent"
    loop.set_reactor(r)
    yield r
    loop.set_reactor(previous)
    r.close()


@pytest.fixture
def db(couch_url, dbname):
    """A database holding ``doc-000``..``doc-019`` (``n``) and ``item-0``..``item-19`` (``value``)."""
    couch_request(couch_url, "PUT", "/" + dbname)
    docs = [{"_id": "doc-%03d" % i, "n": i} for i in range(20)]
    docs += [{"_id": "item-%d" % i, "value": "v%d" % i} for i in range(20)]
    # w: in every copy before a test reads it (a cluster; a single node answers 202: tests.consistency)
    status, _ = couch_request(couch_url, "POST", "/%s/_bulk_docs?w=%d" % (dbname, EVERY_COPY), {"docs": docs})
    assert status in (201, 202)
    return Database(couch_url + "/" + dbname)


def subprocess_env(**extra):
    """The environment for a child interpreter: this checkout importable, no forced backend."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("LOOP_BACKEND", None)
    env.update(extra)
    return env


def run_scenario(*args, env=None, timeout=120):
    """Run tests/gevent_scenarios.py with ``args``; return the JSON it printed last."""
    proc = subprocess.run([sys.executable, str(SCENARIOS)] + list(args), capture_output=True, text=True,
                          timeout=timeout, env=subprocess_env(**(env or {})))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- choosing the backend ---------------------------------------------------------
def test_loop_backend_variable_and_argument_force_gevent(monkeypatch):
    monkeypatch.setenv("LOOP_BACKEND", "gevent")
    forced = Reactor.create()
    argued = Reactor.create("gevent")
    try:
        assert forced.backend == argued.backend == "gevent"
        assert type(forced).__module__ == "loop.backends.gevent"
        assert forced.loop is gevent.get_hub().loop
    finally:
        forced.close()
        argued.close()


def test_monkey_patching_selects_gevent_and_without_it_gevent_is_never_imported():
    code = (
        "import sys\n"
        "%s\n"
        "import loop, corduroy\n"
        "r = loop.get_reactor()\n"
        "print(r.backend, 'gevent' in sys.modules)\n"
    )
    patched = subprocess.run([sys.executable, "-c", code % "from gevent import monkey; monkey.patch_all()"],
                             capture_output=True, text=True, timeout=60, env=subprocess_env())
    plain = subprocess.run([sys.executable, "-c", code % ""], capture_output=True, text=True, timeout=60,
                           env=subprocess_env())
    assert patched.stdout.split() == ["gevent", "True"], patched.stderr
    assert plain.stdout.split()[1] == "False", plain.stderr
    assert plain.stdout.split()[0] != "gevent"


def test_patched_threading_local_still_gives_one_reactor_per_thread():
    code = (
        "from gevent import monkey; monkey.patch_all()\n"
        "import gevent, loop\n"
        "seen = set()\n"
        "gevent.joinall([gevent.spawn(lambda: seen.add(id(loop.get_reactor()))) for _ in range(5)])\n"
        "seen.add(id(loop.get_reactor()))\n"
        "print(len(seen))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=subprocess_env())
    assert proc.stdout.strip() == "1", proc.stderr


# -- the reactor on gevent's hub ----------------------------------------------------
def test_reactor_callbacks_run_in_the_hub_greenlet(reactor):
    where = []
    reactor.call_soon(lambda: where.append(gevent.getcurrent()))
    reactor.call_later(0.001, lambda: where.append(gevent.getcurrent()))
    reactor.call_later(0.01, reactor.stop)
    reactor.run()
    assert where == [reactor.hub, reactor.hub]


def test_run_parks_only_the_calling_greenlet(reactor):
    ticks = []

    def ticker():
        for i in range(5):
            gevent.sleep(0.005)
            ticks.append(i)
        reactor.stop()

    gevent.spawn(ticker)
    reactor.run()  # returns when the ticker greenlet, which kept running, stops it
    assert ticks == [0, 1, 2, 3, 4]


def test_waiting_on_an_operation_completed_from_another_thread_is_no_deadlock(reactor):
    # Nothing else keeps gevent's loop alive: without the reactor holding it
    # open while a greenlet waits, gevent would raise LoopExit.
    op = loop.Operation(reactor)
    done_by_thread = threading.Timer(0.05, reactor.call_soon_threadsafe, (op.complete, "late", loop.Status(200)))
    done_by_thread.start()
    assert reactor.run_until_complete(op) == "late"
    done_by_thread.join()


def test_blocking_inside_a_reactor_callback_is_refused(reactor):
    outcome = []

    def inside():
        try:
            reactor.run_until_complete(loop.Operation(reactor))
        except RuntimeError as exc:
            outcome.append(str(exc))
        reactor.stop()

    reactor.call_soon(inside)
    reactor.run()
    assert outcome and "already running" in outcome[0]


# -- corduroy calls on the gevent reactor (in this process, not patched) -----------
@pytest.mark.parametrize("style", ["blocking", "callback", "relax", "greenlet"])
def test_get_save_and_errors_in_every_style(reactor, db, style):
    def run(fn, *args, **kw):
        if style == "greenlet":
            result = gevent.spawn(call, "blocking", fn, *args, **kw)
            result.join(10)
            return result.get()
        return call(style, fn, *args, **kw)

    assert run(db.get, "doc-007")["n"] == 7
    saved = run(db.save, {"_id": "new-" + style, "style": style})
    assert saved.ok
    assert run(db.get, "new-" + style)["style"] == style
    with pytest.raises(NotFound):
        run(db.get, "missing")
    eventually_equal(lambda: run(db.info)["doc_count"], 41)


def test_a_blocking_call_parks_only_its_greenlet(reactor, db):
    inside = []
    observed = []

    def caller():
        inside.append(True)
        doc = db.get("doc-003")
        inside.append(False)
        return doc

    def observer():
        # Runs while the caller is parked inside its call.
        observed.append(list(inside))

    g1 = gevent.spawn(caller)
    g2 = gevent.spawn(observer)
    gevent.joinall([g1, g2], timeout=10, raise_error=True)
    assert g1.value["n"] == 3
    assert observed == [[True]]
    assert inside == [True, False]


def test_calls_inside_reactor_callbacks_return_operations(reactor, db):
    got = []

    def first(doc, status):
        op = db.get("doc-002")  # on the hub: an Operation, as on every backend
        got.append(isinstance(op, loop.Operation))
        op.add_callback(lambda d, s: (got.append(d["n"]), reactor.stop()))

    db.get("doc-001", callback=first)
    reactor.run()
    assert got == [True, 2]


def test_a_greenlet_switching_inside_a_relax_generator_does_not_affect_others(reactor, db):
    @relax
    def slow_generator():
        gevent.sleep(0.05)  # switches away while this greenlet is inside a generator step
        doc = yield db.get("doc-004")
        return doc["n"]

    def plain():
        gevent.sleep(0.01)
        return db.get("doc-005")  # must block, not return an Operation

    g1 = gevent.spawn(slow_generator)
    g2 = gevent.spawn(plain)
    gevent.joinall([g1, g2], timeout=10, raise_error=True)
    assert g1.value == 4
    assert not isinstance(g2.value, loop.Operation)
    assert g2.value["n"] == 5


def test_operation_wait_parks_the_greenlet(reactor, db):
    op = db.get("doc-009", callback=lambda d, s: None)
    assert gevent.spawn(op.wait).get(timeout=10)["n"] == 9


def test_a_timeout_around_a_blocked_call_cancels_its_request(reactor, db):
    since = db.info()["update_seq"]
    # A longpoll on _changes that nothing will end: only the timeout can.
    op = db.changes(feed="longpoll", since=since, callback=lambda data, status: None)
    with pytest.raises(gevent.Timeout):
        with gevent.Timeout(0.2):
            op.wait()
    assert op.done() and isinstance(op.status.exception, loop.Cancelled)
    assert reactor.curl.active == 0
    assert db.get("doc-001")["n"] == 1  # the reactor carries on


# -- 50 greenlets, with and without monkey-patching, on libev and on libuv ---------
@pytest.mark.slow
@pytest.mark.parametrize("patch,hub_loop", [(True, "libev"), (False, "libev"), (True, "libuv")],
                         ids=["patched-libev", "not-patched-libev", "patched-libuv"])
def test_fifty_greenlets_really_overlap(couch_url, db, patch, hub_loop):
    # Through a proxy that adds latency (as a network would): against the
    # in-memory test server alone a GET is mostly server CPU, which no client
    # can overlap.  Each GET waits >= 2 x 20 ms.
    with FaultProxy.for_url(couch_url) as proxy:
        proxy.latency(0.02)
        args = ["overlap", proxy.url_for(couch_url), db.name] + (["--patch"] if patch else [])
        result = run_scenario(*args, env={"GEVENT_LOOP": {"libev": "libev-cext", "libuv": "libuv"}[hub_loop]})
    assert result["backend"] == "gevent"
    assert hub_loop in result["loop"]
    assert result["wrong"] == []
    assert result["reactors"] == 1  # every greenlet shared one reactor (one curl multi)
    assert result["peak"] == 50  # all 50 greenlets were inside a call at the same moment
    # Serially this would take 50 x single.  Overlapped it takes a few x
    # (the proxy and the server share two cores with this test); ask for at
    # least four times better than serial.
    assert result["fifty"] < 50 / 4 * result["single"], result


@pytest.mark.parametrize("patch", [True, False], ids=["patched", "not-patched"])
def test_pywsgi_handlers_making_blocking_calls_serve_concurrent_requests(couch_url, db, patch):
    args = [sys.executable, str(SCENARIOS), "wsgi", couch_url, db.name] + (["--patch"] if patch else [])
    server = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=subprocess_env(GEVENT_WSGI_REQUESTS="20"))
    try:
        ready, _, _ = select.select([server.stdout], [], [], 60)
        assert ready, "the pywsgi server did not start"
        port = json.loads(server.stdout.readline())["port"]
        bodies = {}
        errors = []
        at_once = threading.Barrier(20)

        def client(i):
            try:
                at_once.wait(10)
                url = "http://127.0.0.1:%d/item/%d" % (port, i)
                with urllib.request.urlopen(url, timeout=30) as response:
                    bodies[i] = json.loads(response.read())
            except Exception as exc:  # reported below
                errors.append((i, exc))

        clients = [threading.Thread(target=client, args=(i,)) for i in range(20)]
        for t in clients:
            t.start()
        for t in clients:
            t.join(60)
    finally:
        server.stdin.close()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            server.kill()
            server.wait()
        stderr = server.stderr.read()
        server.stdout.close()
        server.stderr.close()
    assert errors == [], stderr
    # Every handler waited (a blocking longpoll) for the 20th handler's write:
    # they could only all answer if they ran concurrently.
    assert sorted(bodies) == list(range(20))
    for i, body in bodies.items():
        assert body == {"i": i, "value": "v%d" % i, "backend": "gevent", "go_seen": True}


# -- the continuous changes feed --------------------------------------------------------
@pytest.mark.parametrize("patch", [True, False], ids=["patched", "not-patched"])
def test_continuous_changes_keep_arriving_while_greenlets_work(couch_url, db, patch):
    result = run_scenario("changes", couch_url, db.name, *(["--patch"] if patch else []))
    assert result["backend"] == "gevent"
    assert result["finished"], result
    written = ["written-%02d" % i for i in range(20)]
    # The listener (db.changes(feed="continuous", callback=...)) and a blocking
    # `for` over db.follow() in its own greenlet each got every change once (in
    # write order on one shard; Apache CouchDB merges the feeds of a database's
    # shards, so there the order is the server's)...
    assert sorted(doc_id for doc_id, _ in result["heard"]) == written
    assert sorted(doc_id for doc_id, _ in result["followed"]) == written
    assert result["follower_done"]
    # ...one by one while five other greenlets kept making blocking GETs: the
    # count of GETs done grows from one delivery to the next.
    counts = [gets for _, gets in result["heard"]]
    assert counts == sorted(counts) and len(set(counts)) >= 10, counts
    assert counts[-1] <= result["gets"]
    assert not result["feed_running_after_stop"]


# -- the example ---------------------------------------------------------------------
def test_gevent_example_runs(couch_url):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "gevent_example.py")],
                          env=subprocess_env(COUCHDB_URL=couch_url), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "backend: gevent" in out
    assert "fetched 30 documents in 30 greenlets" in out
    assert "at most 30 calls in flight at once" in out
    assert "fruit-07 -> plum" in out
    assert "deleted corduroy_gevent_" in out


@pytest.mark.parametrize("patch", [False, True], ids=["forced", "monkey-patched"])
def test_stray_stops_never_end_a_blocking_call(couch_url, db, patch):
    """The calling contract's stray-stop rounds on gevent: a blocking call parks its greenlet and no stop() ends it."""
    result = run_scenario("stray_stops", couch_url, db.name, *(["--patch"] if patch else []))
    assert result["wrong"] == []
    assert result["delivered"] == 400
    assert result["timer_ran"] == [1]  # the stop() made with no run() active was not kept
    assert result["active"] == 0
