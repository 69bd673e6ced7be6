"""The curl driver against the real test server: pooling, limits, queueing, streaming, failures."""
from __future__ import annotations

import os
import select
import socket
import time
import weakref

import pytest

import loop
from corduroy import ConnectionFailed, Couch, Database, Timeout
from loop import Reactor, Request
from loop.curl import MODES, _epoll, default_mode
from tests.consistency import EVERY_COPY
from tests.proxy import FaultProxy
from tests.sockets import connections_to

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


def _wait_until_readable(port, count, seconds=10.0):
    """Block until ``count`` of this process's TCP connections to 127.0.0.1:``port`` have something to read."""
    poller = select.poll()
    for fd in connections_to(port):
        poller.register(fd, select.POLLIN)
    ready = set()
    deadline = time.monotonic() + seconds
    while len(ready) < count and time.monotonic() < deadline:
        ready.update(fd for fd, _ in poller.poll(100))
    return len(ready)


def test_a_finished_request_is_let_go_before_the_next_callback_of_the_same_wake_up(reactor, couch_url, db):
    # Twenty answers reach the client in one wake-up: the reactor is held in
    # a callback until all twenty connections have theirs.  Each callback
    # starts another request, as a closed loop does; by the time it runs,
    # every request whose callback ran before it must be gone.  Kept to the
    # end of the wake-up, a hundred finished requests and the hundred their
    # callbacks started made enough objects to run the cyclic garbage
    # collector on almost every wake-up (10 collections per 1,000 GETs at
    # 256 in flight, instead of 3).
    n = 20
    reactor.curl.set_limits(n)
    with FaultProxy.for_url(db.url) as proxy:  # a port only this reactor's connections go to
        pdb = Database(proxy.url_for(couch_url) + "/" + db.name, retries=0)  # with the credentials
        warm = [pdb.get("doc-001", callback=lambda d, s: None) for _ in range(n)]
        run_until(reactor, lambda: all(op.done() for op in warm))
        assert [op.result()["n"] for op in warm] == [1] * n
        assert proxy.accepted == n  # twenty pooled connections: the next requests go out at once
        ops = []
        wakeups = []
        alive_then = []
        follow_ups = []

        def callback(doc, status):
            assert doc["n"] == 1
            wakeups.append(reactor.curl.wakeups)
            # Finished and still here: this callback's own request, and no other.
            alive_then.append(sum(1 for ref in ops if ref() is not None and ref().done()))
            follow_ups.append(pdb.get("doc-002", callback=lambda d, s: None))

        for _ in range(n):
            ops.append(weakref.ref(pdb.get("doc-001", callback=callback)))
        readable = []
        # Queued after the driver's first run, which sends the twenty requests.
        reactor.call_soon(lambda: readable.append(_wait_until_readable(proxy.port, n)))
        run_until(reactor, lambda: len(wakeups) == n and all(op.done() for op in follow_ups))
    assert readable and readable[0] >= n
    assert alive_then == [1] * n, (wakeups, alive_then)
    if reactor.curl.mode != "watch":  # watch mode reads one socket per wake-up
        assert max(wakeups.count(w) for w in wakeups) >= n // 2, wakeups


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
