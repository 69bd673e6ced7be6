"""Transport faults, through tests/proxy.py in front of the real test server.

Each scenario checks that the call completes or fails exactly once, within
its timeout, with the right exception (reads retried where that is safe, a
write that may have been applied reported as UnknownOutcome and never sent
again), and that afterwards the reactor and the connection pool still serve
requests (a GET through the healed proxy, no transfer left behind).
"""
from __future__ import annotations

import itertools
import random
import socket
import time

import pytest

import loop
from corduroy import (
    ConnectionFailed, Couch, Database, NotFound, Timeout, TransportError, UnknownOutcome,
)
from corduroy.http import finish
from corduroy.retry import RetryPolicy
from tests.consistency import EVERY_COPY, eventually_equal
from tests.proxy import FaultProxy

WAIT = 20.0  # the most any scenario may take before the test fails as a hang
SLACK = 1.0  # what a timeout may be overrun by (a loaded machine's scheduling)
BIG = "x" * 200_000  # a document body several socket reads long


# -- helpers ---------------------------------------------------------------------
@pytest.fixture
def reactor():
    return loop.get_reactor()


@pytest.fixture
def proxy(couch_url):
    with FaultProxy.for_url(couch_url) as p:
        yield p


@pytest.fixture
def db(couch_url, dbname):
    couch = Couch(couch_url)
    couch.create(dbname)
    db = Database(couch_url + "/" + dbname, timeout=WAIT)
    # In every copy before a feed reads them (a cluster: tests.consistency).
    db.save({"_id": "big", "body": BIG}, w=EVERY_COPY)
    db.save({"_id": "small", "n": 1}, w=EVERY_COPY)
    return db


def through(proxy, couch_url, db, **options):
    """The same database, reached through the proxy, with these client options.

    Answers are asked for uncompressed (pouchdb-server gzips large ones):
    the faults here cut bodies at byte counts of the plain JSON.
    """
    return Database(proxy.url_for(couch_url) + "/" + db.name, **{"accept_compressed": False, **options})


def quick_retries(retries=8, seed=7):
    """A policy that keeps retrying for a second or so (seeded jitter: the same waits every run)."""
    return RetryPolicy(retries=retries, backoff=0.05, max_backoff=0.4, rng=random.Random(seed))


def outcome(reactor, start, limit=WAIT):
    """Run ``start(callback)`` on the reactor until its callback runs; return ``(data, status, seconds)``.

    Fails if the callback has not run within ``limit`` seconds (a hang), or
    if it runs more than once (checked over a few more reactor turns).
    """
    calls = []

    def callback(data, status):
        calls.append((data, status, reactor.time()))
        reactor.stop()

    began = reactor.time()
    op = start(callback)
    assert isinstance(op, loop.Operation)
    expired = []
    timer = reactor.call_later(limit, lambda: (expired.append(True), reactor.stop()))
    try:
        reactor.run()
    finally:
        timer.cancel()
    assert not expired, "no outcome within %s s: the call hangs" % limit
    reactor.call_later(0.05, reactor.stop)  # a second (wrong) callback would come now
    reactor.run()
    assert len(calls) == 1, "the callback ran %d times" % len(calls)
    data, status, when = calls[0]
    assert status.ok is (status.exception is None)
    return data, status, when - began


def assert_serving(reactor, proxy, watched):
    """The reactor and its pool are fine: nothing left in flight, and a GET through the proxy works."""
    proxy.heal()
    proxy.restore()
    assert reactor.curl.active == 0, "a transfer is stuck in the driver"
    assert reactor.curl.queued == 0
    assert watched.get("small").n == 1
    assert reactor.curl.active == 0


def run_later(reactor, seconds, fn):
    """Call ``fn`` from a reactor timer (the proxy's controls are thread-safe and quick)."""
    reactor.call_later(seconds, fn)


# -- refused ---------------------------------------------------------------------------
def test_refused_read_fails_fast_without_retries(reactor, proxy, couch_url, db):
    watched = through(proxy, couch_url, db, retries=0)
    proxy.pause(refuse=True)  # accepted, then reset at once
    _, status, seconds = outcome(reactor, lambda cb: watched.get("small", callback=cb))
    assert isinstance(status.exception, ConnectionFailed)
    assert not isinstance(status.exception, UnknownOutcome)  # a GET cannot have an unknown outcome
    assert status.code is None and seconds < 2
    assert proxy.refused == 1
    assert_serving(reactor, proxy, watched)


def test_refused_read_is_retried_until_the_server_takes_it(reactor, proxy, couch_url, db):
    watched = through(proxy, couch_url, db, retries=quick_retries())
    proxy.pause(refuse=True)
    run_later(reactor, 0.3, proxy.resume)
    data, status, _ = outcome(reactor, lambda cb: watched.get("small", callback=cb))
    assert status.ok and data.n == 1
    assert proxy.refused >= 1, "the first attempt should have been refused"
    assert_serving(reactor, proxy, watched)


# -- reset mid-response ------------------------------------------------------------------------
def test_reset_mid_response_read_without_retries_fails(reactor, proxy, couch_url, db):
    watched = through(proxy, couch_url, db, retries=0)
    proxy.reset_after(5000)
    _, status, _ = outcome(reactor, lambda cb: watched.get("big", callback=cb))
    assert type(status.exception) is ConnectionFailed
    assert proxy.severed == 1
    assert_serving(reactor, proxy, watched)


def test_reset_mid_response_read_is_retried(reactor, proxy, couch_url, db):
    watched = through(proxy, couch_url, db)  # the default policy
    proxy.reset_after(5000)
    data, status, _ = outcome(reactor, lambda cb: watched.get("big", callback=cb))
    assert status.ok and data.body == BIG
    assert proxy.severed == 1 and proxy.accepted >= 2
    assert_serving(reactor, proxy, watched)


def test_write_reset_after_it_was_sent_is_an_unknown_outcome_never_resent(reactor, proxy, couch_url, db):
    watched = through(proxy, couch_url, db)  # retries on: they must not touch this write
    proxy.reset_after(10)  # the server answered (the write is applied); the answer is cut
    _, status, _ = outcome(reactor, lambda cb: watched.save({"_id": "w", "v": 1}, callback=cb))
    exc = status.exception
    assert isinstance(exc, UnknownOutcome) and isinstance(exc, TransportError)
    assert isinstance(exc.cause, ConnectionFailed) and exc.__cause__ is exc.cause
    assert exc.method == "PUT" and exc.url.endswith("/w")
    assert proxy.accepted == 1, "the write was sent again"
    doc = db.get("w")  # it was applied, once: a second PUT without _rev would have been a 409
    assert doc.v == 1 and doc._rev.startswith("1-")
    assert_serving(reactor, proxy, watched)


def test_post_write_cut_off_is_an_unknown_outcome_and_applied_once(reactor, proxy, couch_url, db):
    watched = through(proxy, couch_url, db)
    proxy.reset_after(0)

    def post(cb):
        return watched.server.request("POST", "/" + db.name, json={"kind": "posted"}).add_callback(cb)

    _, status, _ = outcome(reactor, post)
    assert isinstance(status.exception, UnknownOutcome)
    assert proxy.accepted == 1

    def posted():
        # _all_docs reads any copy, maybe one the write has not reached yet (tests.consistency)
        rows = finish(db.server.request("GET", "/" + db.name + "/_all_docs", params={"include_docs": True}), None)
        return [r["doc"]["kind"] for r in rows["rows"] if r["doc"].get("kind")]

    eventually_equal(posted, ["posted"])
    assert_serving(reactor, proxy, watched)


# -- stall: accept and send nothing, or stop mid-body -----------------------------------------
def test_stall_before_any_byte_hits_the_total_timeout(reactor, proxy, couch_url, db):
    watched = through(proxy, couch_url, db, timeout=0.8)  # retries on, but the timeout covers them
    proxy.stall()
    _, status, seconds = outcome(reactor, lambda cb: watched.get("small", callback=cb))
    assert isinstance(status.exception, Timeout)
    assert 0.7 <= seconds < 0.8 + SLACK
    assert_serving(reactor, proxy, watched)


def test_stall_before_any_byte_hits_the_idle_timeout(reactor, proxy, couch_url, db):
    watched = through(proxy, couch_url, db, idle_timeout=1, retries=0)
    proxy.stall()
    _, status, seconds = outcome(reactor, lambda cb: watched.get("small", callback=cb))
    assert isinstance(status.exception, Timeout) and "too slow" in str(status.exception)
    # libcurl checks the speed once a second and needs the slow spell to last
    # longer than idle_timeout: the cut comes after one or two checks.
    assert 0.9 <= seconds < 2 + SLACK
    assert_serving(reactor, proxy, watched)


def test_stall_mid_body_hits_the_total_timeout(reactor, proxy, couch_url, db):
    watched = through(proxy, couch_url, db, timeout=1.0)
    proxy.stall(after=20000)  # headers and part of the body, then nothing
    _, status, seconds = outcome(reactor, lambda cb: watched.get("big", callback=cb))
    assert isinstance(status.exception, Timeout)
    assert seconds < 1.0 + SLACK
    assert proxy.bytes_down >= 20000
    assert_serving(reactor, proxy, watched)


def test_write_timing_out_after_it_was_sent_is_an_unknown_outcome(reactor, proxy, couch_url, db):
    # The proxy holds the request: from the client's side it was sent and
    # nothing came back, so it may yet be applied (the held bytes flow again
    # once the proxy resumes).  Not Timeout, not retried.
    watched = through(proxy, couch_url, db, timeout=0.5)
    proxy.stall()
    _, status, seconds = outcome(reactor, lambda cb: watched.save({"_id": "slow", "v": 1}, callback=cb))
    exc = status.exception
    assert isinstance(exc, UnknownOutcome) and isinstance(exc.cause, Timeout)
    assert seconds < 0.5 + SLACK
    assert proxy.accepted == 1
    assert_serving(reactor, proxy, watched)


@pytest.mark.slow
def test_stall_mid_body_hits_the_idle_timeout(reactor, proxy, couch_url, db):
    # libcurl averages the speed over its last ~5 s: a transfer that stops
    # after a burst is aborted idle_timeout seconds after that window drains,
    # at one of its once-a-second checks (the 7th or, driven by perform(),
    # the 8th second).
    watched = through(proxy, couch_url, db, idle_timeout=1, retries=0)
    proxy.stall(after=20000)
    _, status, seconds = outcome(reactor, lambda cb: watched.get("big", callback=cb))
    assert isinstance(status.exception, Timeout) and "too slow" in str(status.exception)
    assert seconds < 1 + 7 + SLACK
    assert_serving(reactor, proxy, watched)


def test_stalled_read_is_retried_within_its_timeout(reactor, proxy, couch_url, db):
    # The idle limit cuts the stalled attempt; the retry goes through once
    # the proxy lets data flow again; everything within the total timeout.
    watched = through(proxy, couch_url, db, idle_timeout=1, timeout=6, retries=quick_retries())
    proxy.stall()
    run_later(reactor, 2.6, proxy.resume)  # after the idle cut, which takes one or two speed checks
    data, status, seconds = outcome(reactor, lambda cb: watched.get("small", callback=cb))
    assert status.ok and data.n == 1 and seconds < 6
    assert proxy.accepted >= 2
    assert_serving(reactor, proxy, watched)


# -- truncated body --------------------------------------------------------------------------------
def test_truncated_chunked_body_read_is_retried(reactor, proxy, couch_url, db):
    watched = through(proxy, couch_url, db)
    # A longpoll _changes answer is chunked; the proxy closes cleanly (FIN) mid-body.
    proxy.truncate_after(300)
    data, status, _ = outcome(reactor, lambda cb: watched.changes(feed="longpoll", since=0, callback=cb))
    assert status.ok and {"big", "small"} <= {row["id"] for row in data["results"]}
    assert proxy.accepted >= 2
    assert_serving(reactor, proxy, watched)


def test_truncated_chunked_body_without_retries_is_a_connection_failure(reactor, proxy, couch_url, db):
    watched = through(proxy, couch_url, db, retries=0)
    proxy.truncate_after(300)
    _, status, _ = outcome(reactor, lambda cb: watched.changes(feed="longpoll", since=0, callback=cb))
    assert type(status.exception) is ConnectionFailed
    assert "curl error 18" in str(status.exception)  # transfer closed with outstanding read data
    assert_serving(reactor, proxy, watched)


# -- latency ----------------------------------------------------------------------------------------
def test_latency_under_the_timeout_is_fine(reactor, proxy, couch_url, db):
    watched = through(proxy, couch_url, db, timeout=5)
    proxy.latency(0.2)
    data, status, seconds = outcome(reactor, lambda cb: watched.get("small", callback=cb))
    assert status.ok and data.n == 1 and seconds >= 0.2
    assert_serving(reactor, proxy, watched)


def test_latency_over_the_timeout_times_out_once(reactor, proxy, couch_url, db):
    watched = through(proxy, couch_url, db, timeout=0.3)
    proxy.latency(0.5)
    _, status, seconds = outcome(reactor, lambda cb: watched.get("small", callback=cb))
    assert isinstance(status.exception, Timeout)
    assert seconds < 0.3 + SLACK
    assert_serving(reactor, proxy, watched)


# -- the server goes away and comes back ---------------------------------------------------------------
def test_read_rides_out_a_server_restart(reactor, proxy, couch_url, db):
    watched = through(proxy, couch_url, db, retries=quick_retries())
    watched.get("small")  # a pooled connection, about to be cut
    proxy.drop()
    run_later(reactor, 0.4, proxy.restore)
    data, status, _ = outcome(reactor, lambda cb: watched.get("small", callback=cb))
    assert status.ok and data.n == 1
    assert_serving(reactor, proxy, watched)


def test_write_refused_before_sending_is_a_plain_connection_failure(reactor, proxy, couch_url, db):
    watched = through(proxy, couch_url, db, retries=0)
    proxy.drop()  # connects are refused by the kernel: not a byte of the write leaves
    _, status, seconds = outcome(reactor, lambda cb: watched.save({"_id": "r", "v": 1}, callback=cb))
    assert type(status.exception) is ConnectionFailed, "nothing was sent: the outcome is known"
    assert seconds < 2
    with pytest.raises(NotFound):
        db.get("r")
    assert_serving(reactor, proxy, watched)


def test_write_refused_before_sending_is_retried(reactor, proxy, couch_url, db):
    watched = through(proxy, couch_url, db, retries=quick_retries())
    proxy.drop()
    run_later(reactor, 0.4, proxy.restore)
    _, status, _ = outcome(reactor, lambda cb: watched.save({"_id": "r", "v": 2}, callback=cb))
    assert status.ok
    assert db.get("r")._rev.startswith("1-")  # written once
    assert_serving(reactor, proxy, watched)


def test_write_retries_can_be_turned_off(reactor, proxy, couch_url, db):
    policy = RetryPolicy(retries=5, backoff=0.05, retry_unsent_writes=False)
    watched = through(proxy, couch_url, db, retries=policy)
    proxy.drop()
    run_later(reactor, 0.3, proxy.restore)
    _, status, seconds = outcome(reactor, lambda cb: watched.save({"_id": "r", "v": 3}, callback=cb))
    assert type(status.exception) is ConnectionFailed and seconds < 0.3
    assert_serving(reactor, proxy, watched)


def test_retries_give_up_when_the_server_stays_away(reactor, proxy, couch_url, db):
    policy = RetryPolicy(retries=3, backoff=0.05, max_backoff=0.1)
    watched = through(proxy, couch_url, db, retries=policy)
    proxy.drop()
    _, status, seconds = outcome(reactor, lambda cb: watched.get("small", callback=cb))
    assert type(status.exception) is ConnectionFailed and seconds < 0.05 + 0.1 * 2 + SLACK
    assert_serving(reactor, proxy, watched)


# -- connect timeout ----------------------------------------------------------------------------------------
@pytest.fixture
def unresponsive_port():
    """A loopback port whose accept queue is full: connects hang (SYNs are dropped)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(filler)
    yield port
    for s in fillers:
        s.close()
    listener.close()


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_connect_timeout(reactor, unresponsive_port, method):
    db = Database("http://127.0.0.1:%d/db" % unresponsive_port, connect_timeout=0.3, retries=0)
    if method == "GET":
        start = lambda cb: db.get("x", callback=cb)  # noqa: E731
    else:
        start = lambda cb: db.save({"_id": "x"}, callback=cb)  # noqa: E731
    _, status, seconds = outcome(reactor, start)
    # A write that never connected is known not to have happened: Timeout, not UnknownOutcome.
    assert type(status.exception) is Timeout
    assert 0.25 <= seconds < 0.3 + SLACK
    assert reactor.curl.active == 0


def test_connect_timeout_is_per_attempt_and_the_total_covers_the_retries(reactor, unresponsive_port):
    db = Database("http://127.0.0.1:%d/db" % unresponsive_port, connect_timeout=0.2, timeout=0.9,
                  retries=RetryPolicy(retries=10, backoff=0.01, max_backoff=0.02))
    _, status, seconds = outcome(reactor, lambda cb: db.get("x", callback=cb))
    assert isinstance(status.exception, Timeout)
    assert 0.4 <= seconds < 0.9 + SLACK  # several attempts, all inside the total


# -- cancelling ------------------------------------------------------------------------------------------
class _LongestWait(random.Random):
    """Jitter that always picks the longest wait allowed."""

    def uniform(self, a, b):
        return b


def test_cancel_while_waiting_to_retry_sends_nothing_more(reactor, proxy, couch_url, db):
    watched = through(proxy, couch_url, db, retries=RetryPolicy(retries=3, backoff=1.0, rng=_LongestWait()))
    proxy.pause(refuse=True)
    seen = []
    op = watched.get("small", callback=lambda data, status: seen.append(status))
    # Run until the first attempt has failed: the policy now waits 1 s to retry.
    deadline = time.monotonic() + 5
    while (proxy.refused < 1 or reactor.curl.active) and time.monotonic() < deadline:
        reactor.call_later(0.01, reactor.stop)
        reactor.run()
    assert proxy.refused == 1 and reactor.curl.active == 0 and not seen, "the retry should be pending"
    proxy.resume()
    op.cancel()
    accepted = proxy.accepted
    reactor.call_later(1.2, reactor.stop)  # past any retry wait
    reactor.run()
    assert len(seen) == 1 and seen[0].error is loop.operation.Cancelled
    assert proxy.accepted == accepted, "a cancelled request was sent again"
    assert_serving(reactor, proxy, watched)


# -- many requests at once through a fault -------------------------------------------------------------
def test_many_reads_in_flight_through_a_reset_all_complete_once(reactor, proxy, couch_url, db):
    watched = through(proxy, couch_url, db, timeout=10)
    results = []
    count = 40

    def done(data, status):
        results.append(status)
        if len(results) == count:
            reactor.stop()

    for _ in range(count):
        watched.get("big", callback=done)
    run_later(reactor, 0.02, proxy.sever)
    expired = []
    timer = reactor.call_later(WAIT, lambda: (expired.append(True), reactor.stop()))
    reactor.run()
    timer.cancel()
    assert not expired
    reactor.call_later(0.05, reactor.stop)
    reactor.run()
    assert len(results) == count
    assert all(status.ok for status in results), [s.exception for s in results if not s.ok][:3]
    assert_serving(reactor, proxy, watched)


# -- the continuous changes feed through a storm of faults -------------------------------------------------
def test_changes_feed_survives_a_storm_of_faults(reactor, proxy, couch_url, db):
    """Sever, reset_after, truncate_after, drop/restore, again and again while documents are written.

    Every change is delivered, none twice in a row; the feed is still
    running, and the reactor serves requests afterwards.
    """
    rng = random.Random(4242)
    watched = through(proxy, couch_url, db)
    ids = ["storm-%03d" % i for i in range(120)]
    seen = []
    state = {"writing": True, "faults": {"sever": 0, "reset": 0, "truncate": 0, "drop": 0}}
    storm_ends = reactor.time() + 6.0
    kinds = itertools.cycle(["sever", "reset", "truncate", "drop"])

    def listener(last_seq, changes):
        seen.extend(changes)
        check_done()

    def check_done():
        if not state["writing"] and set(ids) <= {c.id for c in seen}:
            reactor.stop()

    def fault():
        if reactor.time() > storm_ends or not state["writing"]:
            return
        if not proxy.active:  # the feed is reconnecting: strike once it is back
            reactor.call_later(0.02, fault)
            return
        kind = next(kinds)
        state["faults"][kind] += 1
        if kind == "sever":
            proxy.sever()
        elif kind == "reset":
            proxy.reset_after(rng.randrange(0, 400))
        elif kind == "truncate":
            proxy.truncate_after(rng.randrange(0, 400))
        else:
            proxy.drop()
            reactor.call_later(rng.uniform(0.05, 0.25), proxy.restore)
        reactor.call_later(rng.uniform(0.05, 0.2), fault)

    def writer():
        for i, doc_id in enumerate(ids):
            yield db.save({"_id": doc_id, "i": i})
            pause = loop.Operation(reactor)
            reactor.call_later(rng.uniform(0.01, 0.05), pause.complete, None, loop.Status(200))
            yield pause
        state["writing"] = False

    feed = watched.changes(feed="continuous", callback=listener, latency=0, since=0, heartbeat=300)
    try:
        writing = loop.trampoline(writer(), reactor)
        writing.add_callback(lambda data, status: check_done())
        reactor.call_later(0.05, fault)
        expired = []
        timer = reactor.call_later(WAIT + 10, lambda: (expired.append(True), reactor.stop()))
        reactor.run()
        timer.cancel()
        proxy.heal()
        proxy.restore()
        assert writing.status is not None and writing.status.ok, writing.status
        assert not expired, "the feed missed %s" % sorted(set(ids) - {c.id for c in seen})[:5]
        assert feed.running and feed.error is None
    finally:
        feed.stop()
    delivered = [c for c in seen if c.id.startswith("storm-")]
    assert {c.id for c in delivered} == set(ids)
    for a, b in zip(seen, seen[1:]):
        assert (a.seq, a.id) != (b.seq, b.id), "change %s delivered twice in a row" % a.id
    faults = state["faults"]
    assert all(count >= 2 for count in faults.values()), faults
    assert proxy.accepted >= 10, "the faults cut the feed only %d times" % (proxy.accepted - 1)
    assert_serving(reactor, proxy, watched)


def test_idle_timeout_spares_a_quiet_continuous_feed_with_heartbeats(reactor, proxy, couch_url, db):
    # One byte per heartbeat is below 1 byte/s on libcurl's average: a
    # continuous feed is exempt from the idle limit (it watches its heartbeats).
    watched = through(proxy, couch_url, db, idle_timeout=1)
    seen = []
    feed = watched.changes(feed="continuous", callback=lambda seq, changes: seen.extend(changes),
                           latency=0, since=db.changes()["last_seq"], heartbeat=1500)
    try:
        reactor.call_later(3.2, reactor.stop)  # quiet for well over the idle timeout
        reactor.run()
        assert proxy.accepted == 1, "the quiet feed was cut and reopened"
        db.save({"_id": "late"})
        deadline = reactor.call_later(WAIT, reactor.stop)

        def check():
            if seen:
                reactor.stop()
            else:
                reactor.call_later(0.02, check)

        check()
        reactor.run()
        deadline.cancel()
        assert [c.id for c in seen] == ["late"]
        assert proxy.accepted == 1
    finally:
        feed.stop()
    assert_serving(reactor, proxy, watched)


def test_idle_limit_of_each_kind_of_request(couch_url):
    """What libcurl's low-speed limit is set to: (1 byte/s, whole seconds), or None for no limit."""
    server = Database(couch_url + "/anything", idle_timeout=2.2).server

    def limit(**kwargs):
        op = server.request("GET", "/anything/_changes", **kwargs)
        request = op._cancel  # the curl Request behind the Operation
        op.cancel()
        return request.low_speed

    assert limit() == (1, 3)
    assert limit(idle_timeout=0.1) == (1, 1)
    assert limit(idle_timeout=0) is None
    # A longpoll may be silent for its whole wait: the idle limit comes on top of it.
    assert limit(params={"feed": "longpoll", "timeout": 10000}) == (1, 13)
    assert limit(params={"feed": "longpoll"}) == (1, 63)  # CouchDB's default wait is 60 s
    # Heartbeats are one byte each, below 1 byte/s on libcurl's average: no limit
    # (the changes feed watches its heartbeats itself).
    assert limit(params={"feed": "continuous", "heartbeat": 1000}) is None
    assert limit(params={"feed": "longpoll", "heartbeat": 1000}) is None
    assert limit(params={"feed": "normal"}) == (1, 3)
    default = Database(couch_url + "/anything").server  # a stall limit by default: 150 s
    op = default.request("GET", "/")
    assert op._cancel.low_speed == (1, 150)
    op.cancel()
    off = Database(couch_url + "/anything", idle_timeout=None).server
    op = off.request("GET", "/")
    assert op._cancel.low_speed is None
    op.cancel()
