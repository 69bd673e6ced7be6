"""The curl driver's three ways of reaching the reactor ("perform", "batch", "watch") against the real server.

Each mode must move bodies larger than a socket buffer both ways, survive
its pooled connections being reset while idle, and stay quiet
afterwards: an idle connection the server closed wakes the reactor a
bounded number of times, not once per turn (a busy loop).
"""
from __future__ import annotations

import base64
import random
import warnings

import pytest

import loop
from corduroy import Couch, Database, Timeout
from loop import Reactor
from loop.curl import _NEW_PYCURL, MODES, SPARSE_FROM, SPARSE_RATIO, CurlDriver, _epoll, default_mode
from tests.consistency import EVERY_COPY

from .proxy import FaultProxy

AVAILABLE = [m for m in MODES if m == "watch" or _epoll is not None]
# Several socket buffers, and incompressible: a server that gzips its answers
# (pouchdb-server does, when asked) must still send that many bytes.
BIG = base64.b64encode(random.Random(1).randbytes(225_000)).decode("ascii")


@pytest.fixture(params=AVAILABLE)
def reactor(request, monkeypatch):
    monkeypatch.setenv("LOOP_CURL_MODE", request.param)
    r = Reactor.create()
    loop.set_reactor(r)
    assert r.curl.mode == request.param
    yield r
    loop.set_reactor(None)
    r.close()


@pytest.fixture
def db(couch_url, dbname):
    return Couch(couch_url).create(dbname)


def test_the_default_mode_is_perform_where_epoll_and_a_recent_pycurl_exist(monkeypatch):
    monkeypatch.delenv("LOOP_CURL_MODE", raising=False)
    assert default_mode() == ("perform" if _epoll is not None and _NEW_PYCURL else "watch")


def test_a_bad_mode_is_refused_before_any_io(monkeypatch):
    r = Reactor.create()
    try:
        with pytest.raises(ValueError, match="mode must be one of"):
            CurlDriver(r, mode="poll")
        monkeypatch.setenv("LOOP_CURL_MODE", "select")
        with pytest.raises(ValueError, match="LOOP_CURL_MODE"):
            default_mode()
    finally:
        r.close()


def run_all(reactor, calls, seconds=30.0):
    """Start every ``call(callback)`` at once, run the reactor until all have answered; the answers."""
    answers = []

    def answered(data, status):
        answers.append((data, status))
        if len(answers) == len(calls):
            reactor.stop()

    for call in calls:
        call(answered)
    bound = reactor.call_later(seconds, reactor.stop)  # a bound, not a synchronisation
    reactor.run()
    bound.cancel()
    assert len(answers) == len(calls), "not every request was answered"
    return answers


def test_big_bodies_both_ways_with_many_in_flight(reactor, db):
    saves = run_all(reactor, [
        lambda cb, i=i: db.save({"_id": "up-%d" % i, "body": BIG}, callback=cb) for i in range(8)])
    assert all(status.ok for _, status in saves)
    gets = run_all(reactor, [lambda cb, i=i: db.get("up-%d" % i, callback=cb) for i in range(8)])
    assert sorted(data["_id"] for data, _ in gets) == ["up-%d" % i for i in range(8)]
    assert all(status.ok and data["body"] == BIG for data, status in gets)


def test_idle_connections_reset_by_the_server_wake_the_reactor_a_bounded_number_of_times(
        reactor, couch_url, db):
    db.save([{"_id": "d%02d" % i} for i in range(16)])
    with FaultProxy.for_url(couch_url) as proxy:
        remote = Database(proxy.url_for(couch_url) + "/" + db.name)
        got = run_all(reactor, [lambda cb, i=i: remote.get("d%02d" % i, callback=cb) for i in range(16)])
        assert all(status.ok for _, status in got)
        pooled = proxy.active
        assert pooled >= 2  # several connections are now idle in the pool

        severed = proxy.sever()
        assert severed == pooled
        before = reactor.curl.wakeups
        # Let the reactor sit for a moment with nothing to do but notice the resets.
        reactor.call_later(0.3, reactor.stop)
        reactor.run()
        wakeups = reactor.curl.wakeups - before
        # One wake-up per reset connection at most (a level-triggered idle
        # socket with a pending reset would wake it on every turn instead).
        assert wakeups <= severed

        # The pool recovers: the next requests open new connections.
        again = run_all(reactor, [lambda cb, i=i: remote.get("d%02d" % i, callback=cb) for i in range(4)])
        assert [data["_id"] for data, _ in sorted(again, key=lambda a: a[0]["_id"])] == ["d00", "d01", "d02", "d03"]


def test_a_reset_mid_body_is_retried_to_the_full_body(reactor, couch_url, db):
    db.save({"_id": "big", "body": BIG})
    with FaultProxy.for_url(couch_url) as proxy:
        # The default retry policy; plain answers, so the reset falls mid-body (pouchdb-server gzips).
        remote = Database(proxy.url_for(couch_url) + "/" + db.name, accept_compressed=False)
        proxy.reset_after(5000)
        [(data, status)] = run_all(reactor, [lambda cb: remote.get("big", callback=cb)])
        assert status.ok and data["body"] == BIG
        assert proxy.severed == 1 and proxy.accepted >= 2


def test_a_silent_server_hits_the_total_timeout_in_time(reactor, couch_url, db):
    with FaultProxy.for_url(couch_url) as proxy:
        remote = Database(proxy.url_for(couch_url) + "/" + db.name, timeout=0.5, retries=0)
        proxy.stall()  # connections are accepted, nothing is answered
        started = reactor.time()
        [(_, status)] = run_all(reactor, [lambda cb: remote.info(callback=cb)])
        elapsed = reactor.time() - started
        proxy.heal()
        assert status.error is Timeout
        assert 0.45 <= elapsed < 2.5


@pytest.fixture
def perform_reactor(monkeypatch):
    monkeypatch.setenv("LOOP_CURL_MODE", "perform")
    r = Reactor.create()
    loop.set_reactor(r)
    yield r
    loop.set_reactor(None)
    r.close()


def _many_docs(db):
    """32 big and 96 small documents, in every copy: read back at once, 64 in flight (the
    driver's default limit) and the rest queued, so that 64 run while the first 64 answers come."""
    db.save([{"_id": "big-%02d" % i, "body": BIG} for i in range(32)], w=EVERY_COPY)
    db.save([{"_id": "small-%02d" % i} for i in range(96)], w=EVERY_COPY)
    return ["big-%02d" % i for i in range(32)] + ["small-%02d" % i for i in range(96)]


@pytest.mark.skipif(_epoll is None or not _NEW_PYCURL, reason="perform mode needs epoll and pycurl 7.49+")
def test_perform_mode_runs_just_the_ready_sockets_when_few_of_many_are_ready(perform_reactor, db):
    ids = _many_docs(db)
    curl = perform_reactor.curl
    assert curl.mode == "perform" and curl.max_connections == 64 and 64 >= SPARSE_FROM and 64 >= SPARSE_RATIO
    got = run_all(perform_reactor, [lambda cb, i=i: db.get(i, callback=cb) for i in ids])
    assert sorted(data["_id"] for data, _ in got) == sorted(ids)
    assert all(status.ok and data.get("body", BIG) == BIG for data, status in got)
    # The server answers the 64 in flight one after the other: most wake-ups find one socket
    # ready, and run just that one (socket_action), bodies of several socket buffers included.
    assert curl.sparse_wakeups > 0
    again = run_all(perform_reactor, [lambda cb, i=i: db.get(i, callback=cb) for i in ids[:4]])
    assert sorted(data["_id"] for data, _ in again) == ids[:4]


@pytest.mark.skipif(_epoll is None or not _NEW_PYCURL, reason="perform mode needs epoll and pycurl 7.49+")
def test_perform_mode_where_deprecation_warnings_are_errors_runs_every_transfer_each_time(perform_reactor, db):
    ids = _many_docs(db)
    curl = perform_reactor.curl
    with warnings.catch_warnings():
        # pycurl warns on each socket_all(), which the driver uses to bring libcurl's socket table
        # up to date before it runs just the ready sockets
        warnings.simplefilter("error", DeprecationWarning)
        got = run_all(perform_reactor, [lambda cb, i=i: db.get(i, callback=cb) for i in ids])
        assert sorted(data["_id"] for data, _ in got) == sorted(ids)
        assert all(status.ok and data.get("body", BIG) == BIG for data, status in got)
        # Refused: the driver runs every transfer on every wake-up from then on.
        assert curl._run_all(reassess=True) == 0
        assert curl._sparse is False
        sparse = curl.sparse_wakeups
        again = run_all(perform_reactor, [lambda cb, i=i: db.get(i, callback=cb) for i in ids])
    assert sorted(data["_id"] for data, _ in again) == sorted(ids)
    assert curl.sparse_wakeups == sparse
