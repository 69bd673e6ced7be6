"""The curl driver against the real test server: pooling, limits, queueing, streaming, failures."""
from __future__ import annotations

import os
import socket

import pytest

import loop
from corduroy import ConnectionFailed, Couch, Database, Timeout
from loop import Reactor, Request
from loop.curl import MODES, _epoll, default_mode
from tests.consistency import EVERY_COPY

BACKENDS = [b for b in loop.available_backends() if b != "gevent"]
# Every backend with the driver's default mode, and the first backend with each other mode.
SETUPS = [(backend, None) for backend in BACKENDS] + [
    (BACKENDS[0], mode) for mode in MODES if mode != default_mode() and (mode == "watch" or _epoll is not None)]


@pytest.fixture(params=SETUPS, ids=lambda setup: "%s-%s" % (setup[0], setup[1] or "default"))
def reactor(request, monkeypatch):
    backend, mode = request.param
    if mode is not None:
        monkeypatch.setenv("LOOP_CURL_MODE", mode)
    r = Reactor.create(backend)
    loop.set_reactor(r)
    assert r.curl.mode == (mode or default_mode())
    yield r
    loop.set_reactor(None)
    r.close()


@pytest.fixture
def db(couch_url, dbname):
    db = Couch(couch_url).create(dbname)
    db.save([{"_id": "doc-%03d" % i, "n": i} for i in range(20)], w=EVERY_COPY)  # _all_docs reads any copy
    return db


def fds():
    return len(os.listdir("/proc/self/fd"))


def plain_url(db):
    return db.url


def run_until(reactor, predicate, seconds=20.0):
    def check():
        if predicate():
            reactor.stop()
        else:
            reactor.call_later(0.005, check)

    timed_out = []
    reactor.call_soon(check)
    deadline = reactor.call_later(seconds, lambda: (timed_out.append(True), reactor.stop()))
    reactor.run()
    deadline.cancel()
    assert not timed_out, "deadline reached"


def test_raw_request_round_trip_and_handle_reuse(reactor, db):
    driver = reactor.curl
    done = []
    headers = db.server.headers_plain

    def submit_next(_req=None):
        if _req is not None:
            done.append(_req)
        if len(done) < 30:
            driver.submit(Request("GET", db.url + "/doc-001", headers, on_done=submit_next))
        else:
            reactor.stop()

    submit_next()
    reactor.run()
    assert all(r.code == 200 and b'"n":1' in r.body_out for r in done)
    # 30 sequential requests used one easy handle, returned to the pool each time.
    assert driver.pooled_handles == 1
    assert driver.active == 0 and driver.queued == 0


def test_requests_past_the_limit_queue_and_start_in_order(reactor, db):
    driver = reactor.curl
    driver.set_limits(1)
    order = []
    for i in range(10):
        driver.submit(Request("GET", db.url + "/doc-%03d" % i, db.server.headers_plain,
                              on_done=lambda r, i=i: order.append(i)))
    assert driver.active == 1 and driver.queued == 9
    run_until(reactor, lambda: len(order) == 10)
    assert order == list(range(10))
    driver.set_limits(64)


def test_concurrency_is_bounded_by_max_connections(reactor, db):
    driver = reactor.curl
    driver.set_limits(4)
    peak = []
    done = []

    def finished(r):
        done.append(r.code)
        peak.append(driver.active)

    for i in range(40):
        driver.submit(Request("GET", db.url + "/doc-%03d" % (i % 20), db.server.headers_plain, on_done=finished))
    assert driver.active == 4
    run_until(reactor, lambda: len(done) == 40)
    assert done == [200] * 40
    assert max(peak) <= 4
    driver.set_limits(64)


def test_cancel_of_a_queued_request_never_calls_it_and_frees_the_slot(reactor, db):
    driver = reactor.curl
    driver.set_limits(1)
    calls = []
    first = Request("GET", db.url + "/doc-001", db.server.headers_plain, on_done=lambda r: calls.append("first"))
    second = Request("GET", db.url + "/doc-002", db.server.headers_plain, on_done=lambda r: calls.append("second"))
    third = Request("GET", db.url + "/doc-003", db.server.headers_plain, on_done=lambda r: calls.append("third"))
    for r in (first, second, third):
        driver.submit(r)
    assert driver.cancel(second) is True
    assert driver.cancel(second) is False
    run_until(reactor, lambda: len(calls) == 2)
    assert calls == ["first", "third"]
    driver.set_limits(64)


def test_cancel_of_a_running_request_returns_its_handle_to_the_pool(reactor, db):
    driver = reactor.curl
    op = db.get("doc-001", callback=lambda d, s: None)
    assert driver.active == 1
    assert op.cancel() is True
    assert driver.active == 0
    assert op.status.error is loop.Cancelled
    # The reactor keeps serving.
    assert reactor.run_until_complete(db.get("doc-002", callback=lambda d, s: None))["n"] == 2


def test_streamed_body_arrives_chunk_by_chunk_to_a_consumer(reactor, db):
    driver = reactor.curl
    chunks = []
    finished = []
    req = Request("GET", db.url + "/_all_docs?include_docs=true", db.server.headers_plain,
                  on_chunk=chunks.append, on_done=finished.append)
    driver.submit(req)
    run_until(reactor, lambda: finished)
    body = b"".join(chunks)
    assert req.code == 200 and req.body_out == b""  # nothing buffered by the driver
    assert body.count(b'"doc-0') >= 20


def test_consumer_returning_false_aborts_the_transfer(reactor, db):
    driver = reactor.curl
    finished = []
    req = Request("GET", db.url + "/_all_docs", db.server.headers_plain,
                  on_chunk=lambda chunk: False, on_done=finished.append)
    driver.submit(req)
    run_until(reactor, lambda: finished)
    assert req.errno == loop.curl.E_WRITE_ERROR


def test_refused_connection_is_a_connection_failed(reactor):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    db = Database("http://127.0.0.1:%d/nothing" % port)
    op = db.info(callback=lambda d, s: None)
    with pytest.raises(ConnectionFailed) as info:
        reactor.run_until_complete(op)
    assert op.status.code is None and op.status.ok is False
    assert "127.0.0.1:%d" % port in str(info.value)


def test_total_timeout_against_a_server_that_never_answers(reactor):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # the kernel accepts; nobody ever answers
    port = listener.getsockname()[1]
    try:
        db = Database("http://127.0.0.1:%d/silent" % port, timeout=0.3)
        start = reactor.time()
        op = db.info(callback=lambda d, s: None)
        with pytest.raises(Timeout):
            reactor.run_until_complete(op)
        assert 0.25 <= reactor.time() - start < 5
        assert op.status.code is None and op.status.error is Timeout
    finally:
        listener.close()


def test_ten_thousand_concurrent_gets_complete_and_leak_no_descriptors(couch_url, db):
    before = fds()
    reactor = Reactor.create()
    loop.set_reactor(reactor)
    try:
        codes = []
        total = 10000

        def done(doc, status):
            codes.append(status.code if status.ok else status.exception)

        for i in range(total):
            db.get("doc-%03d" % (i % 20), callback=done)
        assert reactor.curl.queued == total - reactor.curl.max_connections
        run_until(reactor, lambda: len(codes) == total, seconds=120)
        assert codes == [200] * total
        during = fds()
        # Only the bounded pool of kept-alive connections (and the loop's own fds) remain.
        assert during <= before + reactor.curl.max_connections + 8
    finally:
        loop.set_reactor(None)
        reactor.close()
    assert fds() <= before
