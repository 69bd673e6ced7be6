"""Load: many requests through one reactor, with flat descriptors and memory.

The 100,000-request run goes to the benchmark harness's canned CouchDB
(:mod:`benchmarks.canned`, a fast uvloop server in a subprocess): the pinned
pouchdb-server manages only 1-3k requests/s, so a smaller run goes to the
real server under test.  A longer run is behind the ``soak`` marker
(deselected by default; ``pytest -m soak`` runs it, ``CORDUROY_SOAK_REQUESTS``
sets its length).

Descriptors are counted in ``/proc/self/fd`` and memory read as ``VmRSS``
from ``/proc/self/status`` once the first 10,000 requests are done (the pool
of connections and easy handles is full by then) and again at the end.
"""
from __future__ import annotations

import gc
import logging
import os
import socket
import threading
import time
from typing import Any, Callable, Dict, List, Tuple

import pytest

import loop
from corduroy import Couch, Database, NotFound
from loop import Cancelled, Reactor
from tests.consistency import eventually_equal

#: How much VmRSS may grow between request 10,000 and the last one (KiB).
#: A run allocates nothing for good after its warm-up, but the resident
#: size still moves a little: pymalloc keeps freed arenas around, libcurl
#: and the event loop size their buffers to the largest answer seen so far,
#: and the kernel counts pages as they are first touched.  Measured growth
#: is 0.0-0.4 MiB (uvloop) and 0.5-1.0 MiB (pyuv); 3 MiB over 90,000
#: requests catches any leak of more than 35 bytes a request (one leaked
#: Operation, Status or header list is several times that).
RSS_TOLERANCE_KB = 3072

#: Descriptors that may come and go between the two measurements (a pooled
#: connection the server closed and curl reopened, uvloop's self-pipe).
FD_TOLERANCE = 2


def open_fds() -> int:
    """Descriptors open in this process."""
    return len(os.listdir("/proc/self/fd"))


def rss_kb() -> int:
    """This process's resident set size (``VmRSS``), in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def measure() -> Tuple[int, int]:
    """``(open descriptors, VmRSS in KiB)``, after a full garbage collection.

    Collecting first takes the collector's timing out of the figure: some
    backends leave a reference cycle per closed watcher (pyuv's Poll handles),
    and how many of those wait for the collector at a given moment is noise,
    not a leak (a leaked object is still reachable and survives the collection).
    """
    gc.collect()
    return open_fds(), rss_kb()


def run_for(reactor: Reactor, seconds: float) -> None:
    """Run ``reactor`` until something stops it; fail the test if ``seconds`` pass first."""
    expired: List[bool] = []

    def deadline() -> None:
        expired.append(True)
        reactor.stop()

    handle = reactor.call_later(seconds, deadline)
    reactor.run()
    handle.cancel()
    assert not expired, "the deadline of %.0f s passed first" % seconds


class ClosedLoop:
    """Keep ``concurrency`` requests in flight until ``total`` have completed.

    Each completion sends the next request from inside its callback, so the
    reactor sees ``concurrency`` transfers at all times.  ``request(i,
    callback)`` sends request number ``i``; ``at(n, fn)`` runs ``fn()`` once
    ``n`` requests have completed.
    """

    def __init__(self, reactor: Reactor, total: int, concurrency: int,
                 request: Callable[[int, Callable[[Any, Any], None]], Any]) -> None:
        self.reactor = reactor
        self.total = total
        self.concurrency = concurrency
        self.request = request
        self.sent = 0
        self.done = 0
        self.outcomes: Dict[Any, int] = {}
        self.peak = 0
        self.marks: Dict[int, Callable[[], None]] = {}
        self.started = self.finished = 0.0

    def at(self, n: int, fn: Callable[[], None]) -> None:
        self.marks[n] = fn

    def _send(self) -> None:
        i = self.sent
        self.sent += 1
        self.request(i, self._completed)

    def _completed(self, data: Any, status: Any) -> None:
        self.done += 1
        key = status.code if status.ok else type(status.exception)
        self.outcomes[key] = self.outcomes.get(key, 0) + 1
        mark = self.marks.get(self.done)
        if mark is not None:
            mark()
        if self.done == self.total:
            self.finished = time.perf_counter()
            self.reactor.stop()
        elif self.sent < self.total:
            self._send()
            active = self.reactor.curl.active
            if active > self.peak:
                self.peak = active

    def run(self, seconds: float) -> None:
        self.started = time.perf_counter()
        for _ in range(min(self.concurrency, self.total)):
            self._send()
        run_for(self.reactor, seconds)

    @property
    def rate(self) -> float:
        """Requests per second over the whole run."""
        return self.total / (self.finished - self.started)


def request_kind(i: int, warmup: int) -> str:
    """What request number ``i`` is: a PUT, a GET of a missing document, or a GET.

    The first ``warmup`` requests are PUTs: each of them gets a new easy
    handle, and libcurl gives a handle its upload buffer on its first
    request with a body.  Without this, handles that happen to get their
    first PUT late add ~64 KiB each to VmRSS well after request 10,000.
    """
    if i < warmup:
        return "put"
    return {0: "put", 1: "missing"}.get(i % 20, "get")


def mixed_requests(db: Database, warmup: int) -> Callable[[int, Callable[[Any, Any], None]], Any]:
    """GETs of existing documents, with one PUT and one 404 in every 20 requests (see :func:`request_kind`)."""

    def request(i: int, callback: Callable[[Any, Any], None]) -> Any:
        kind = request_kind(i, warmup)
        if kind == "put":
            return db.save({"_id": "written-%d" % i, "n": i}, callback=callback)
        if kind == "missing":
            return db.get("_local/missing", callback=callback)  # the canned server says 404
        return db.get("doc%09d" % (i % 1000), callback=callback)

    return request


def expected_outcomes(total: int, warmup: int) -> Dict[Any, int]:
    """The outcome counts of :func:`mixed_requests` over ``total`` requests."""
    outcome = {"put": 201, "missing": NotFound, "get": 200}
    counts: Dict[Any, int] = {}
    for i in range(total):
        key = outcome[request_kind(i, warmup)]
        counts[key] = counts.get(key, 0) + 1
    return counts


# -- 100,000 requests at concurrency 256 --------------------------------------

def test_100k_requests_at_concurrency_256_keep_descriptors_and_memory_flat(canned, reactor, capsys):
    total, concurrency = 100_000, 256
    reactor.curl.set_limits(concurrency)
    db = Database(canned.url + "/load")
    before = open_fds()
    samples: Dict[int, tuple] = {}
    run = ClosedLoop(reactor, total, concurrency, mixed_requests(db, concurrency))
    for n in (10_000, total):
        run.at(n, lambda n=n: samples.__setitem__(n, measure()))
    run.run(seconds=240)

    assert run.done == total
    assert run.outcomes == expected_outcomes(total, concurrency)
    assert run.peak == concurrency  # 256 transfers really ran at once
    fds_10k, rss_10k = samples[10_000]
    fds_end, rss_end = samples[total]
    # The pool holds one connection per concurrent transfer, nothing more.
    assert fds_10k <= before + concurrency + FD_TOLERANCE
    assert abs(fds_end - fds_10k) <= FD_TOLERANCE
    assert rss_end - rss_10k <= RSS_TOLERANCE_KB
    assert reactor.curl.active == 0 and reactor.curl.queued == 0
    with capsys.disabled():
        print("\n[load] %d requests at concurrency %d: %.0f req/s; fds %d -> %d; VmRSS %d -> %d KiB"
              % (total, concurrency, run.rate, fds_10k, fds_end, rss_10k, rss_end))


def test_load_against_the_real_server_completes_and_returns_its_connections(couch_url, dbname, reactor):
    db = Couch(couch_url).create(dbname)
    db.save([{"_id": "doc%09d" % i, "n": i} for i in range(50)])
    total, concurrency = 1000, 256
    reactor.curl.set_limits(concurrency)
    before = open_fds()

    def request(i: int, callback: Callable[[Any, Any], None]) -> Any:
        if i % 10 == 0:
            return db.save({"_id": "written-%d" % i}, callback=callback)
        return db.get("doc%09d" % (i % 50), callback=callback)

    run = ClosedLoop(reactor, total, concurrency, request)
    run.run(seconds=120)
    assert run.outcomes == {200: total - total // 10, 201: total // 10}
    assert open_fds() <= before + concurrency + FD_TOLERANCE
    loop.set_reactor(None)
    reactor.close()
    assert open_fds() <= before
    # _all_docs reads any copy of each shard: the last writes show eventually (tests.consistency).
    eventually_equal(lambda: len(db.all_docs(startkey="written-", endkey="written-\ufff0")), total // 10)


# -- the queue past the connection limit ---------------------------------------

def test_requests_past_the_limit_start_in_submission_order(canned, reactor):
    """With ``limit`` transfers at most, the k-th completion can only be one of the first k+limit-1 requests."""
    limit, total = 8, 400
    reactor.curl.set_limits(limit)
    db = Database(canned.url + "/queue")
    completed: List[int] = []
    ok: List[bool] = []

    def finished(i: int) -> Callable[[Any, Any], None]:
        def callback(doc: Any, status: Any) -> None:
            completed.append(i)
            ok.append(status.ok and doc["_id"] == "doc%09d" % i)
            if len(completed) == total:
                reactor.stop()
        return callback

    for i in range(total):
        db.get("doc%09d" % i, callback=finished(i))
    assert reactor.curl.active == limit and reactor.curl.queued == total - limit
    run_for(reactor, 60)
    assert all(ok) and sorted(completed) == list(range(total))
    # When the k-th completion is reported, only the first limit + k - 1
    # requests can have started (``limit`` at once, then one per completion).
    highest = -1
    for k, i in enumerate(completed, 1):
        highest = max(highest, i)
        assert highest < limit + k - 1, "request %d ran before its turn" % highest


def test_one_connection_serves_mixed_calls_exactly_in_order(canned, reactor):
    reactor.curl.set_limits(1)
    db = Database(canned.url + "/queue")
    order: List[Any] = []

    def note(tag: Any) -> Callable[[Any, Any], None]:
        def callback(data: Any, status: Any) -> None:
            order.append((tag, status.code if status.ok else type(status.exception)))
            if len(order) == 40:
                reactor.stop()
        return callback

    expected = []
    for i in range(40):
        if i % 4 == 0:
            db.save({"_id": "w%d" % i}, callback=note(i))
            expected.append((i, 201))
        elif i % 4 == 1:
            db.get("_local/nothing", callback=note(i))
            expected.append((i, NotFound))
        elif i % 4 == 2:
            db.info(callback=note(i))
            expected.append((i, 200))
        else:
            db.get("doc%09d" % i, callback=note(i))
            expected.append((i, 200))
    run_for(reactor, 30)
    assert order == expected


def test_cancelling_pending_operations_releases_their_handles(canned, reactor):
    limit, total = 4, 60
    driver = reactor.curl
    driver.set_limits(limit)
    db = Database(canned.url + "/cancel")
    seen: Dict[int, List[Any]] = {i: [] for i in range(total)}
    remaining = [total]

    def callback(i: int) -> Callable[[Any, Any], None]:
        def done(doc: Any, status: Any) -> None:
            seen[i].append(status.error or status.code)
            remaining[0] -= 1
            if remaining[0] == 0:
                reactor.stop()
        return done

    ops = [db.get("doc%09d" % i, callback=callback(i)) for i in range(total)]
    assert driver.active == limit and driver.queued == total - limit
    # Cancel two running transfers (their handles go back to the pool and the
    # next queued requests take their slots) and a block of queued ones.
    cancelled = {1, 2} | set(range(10, 30))
    for i in sorted(cancelled):
        assert ops[i].cancel() is True
        assert ops[i].cancel() is False
    assert driver.active == limit
    assert driver.queued == total - limit - len(cancelled)
    run_for(reactor, 30)

    for i in range(total):
        assert seen[i] == [Cancelled if i in cancelled else 200], i
    # Every easy handle is back in the pool, and no more were ever made than
    # transfers ran at once: cancelled ones were reused, not leaked.
    assert driver.active == 0 and driver.queued == 0
    assert driver.pooled_handles <= limit
    made = driver.pooled_handles
    assert [db.get("doc%09d" % i)["_id"] for i in range(3)] == ["doc%09d" % i for i in range(3)]
    assert driver.pooled_handles == made  # served by pooled handles, none new


def test_cancelling_a_transfer_stuck_on_a_silent_server_frees_its_slot_and_socket(canned, reactor):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    accepted: List[socket.socket] = []
    watchers: List[Any] = []
    results: List[Any] = []
    try:
        reactor.curl.set_limits(1)
        silent = Database("http://127.0.0.1:%d/silent" % listener.getsockname()[1])
        db = Database(canned.url + "/cancel")
        baseline = open_fds()

        def check() -> None:
            if len(results) == 3:
                reactor.stop()

        stuck = silent.info(callback=lambda d, s: (results.append(("stuck", s.error)), check()))
        db.get("doc000000001", callback=lambda d, s: (results.append(("waiting", d["_id"])), check()))
        assert reactor.curl.active == 1 and reactor.curl.queued == 1

        def client_closed(fd: int, events: int) -> None:
            if accepted[0].recv(65536) == b"":  # EOF: the client closed the abandoned connection
                watchers[-1].close()
                results.append(("silent server saw", "EOF"))
                check()

        def connection_arrived(fd: int, events: int) -> None:
            # The stuck transfer holds its connection and the server never answers: give up on it.
            conn, _ = listener.accept()
            accepted.append(conn)
            watchers[0].close()
            assert stuck.cancel() is True
            watchers.append(reactor.watch(conn.fileno(), True, False, client_closed))

        watchers.append(reactor.watch(listener.fileno(), True, False, connection_arrived))
        run_for(reactor, 20)
        assert results[0] == ("stuck", Cancelled)
        assert sorted(results[1:]) == [("silent server saw", "EOF"), ("waiting", "doc000000001")]
        accepted[0].close()
        # The abandoned connection is gone; only the canned server's pooled one stays.
        assert open_fds() <= baseline + 1
    finally:
        for conn in accepted:
            conn.close()
        listener.close()


# -- other threads posting into a loaded reactor -------------------------------

def test_call_soon_threadsafe_from_threads_under_load_loses_nothing(canned, reactor, caplog):
    total, concurrency, threads_n = 10_000, 128, 4
    reactor.curl.set_limits(concurrency)
    db = Database(canned.url + "/threads")
    load_done = threading.Event()
    posted = [0] * threads_n
    seen: List[List[int]] = [[] for _ in range(threads_n)]
    finished_threads: List[int] = []
    from_threads: List[Any] = []

    def record(n: int, i: int) -> None:
        seen[n].append(i)
        if i % 50 == 0:  # some posted calls start requests of their own
            db.get("doc%09d" % i, callback=thread_request_done)

    def thread_request_done(doc: Any, status: Any) -> None:
        from_threads.append(status.code)
        check_end()

    def thread_done(n: int) -> None:
        finished_threads.append(n)
        check_end()

    def worker(n: int) -> None:
        # Post for as long as the load runs (pacing only: nothing waits on it).
        while not load_done.is_set():
            for _ in range(10):
                reactor.call_soon_threadsafe(record, n, posted[n])
                posted[n] += 1
            time.sleep(0.001)
        reactor.call_soon_threadsafe(thread_done, n)

    def check_end() -> None:
        expected = sum((count + 49) // 50 for count in posted)  # calls numbered 0, 50, 100...
        if len(finished_threads) == threads_n and len(from_threads) == expected:
            reactor.stop()

    def load_finished() -> None:
        load_done.set()

    run = ClosedLoop(reactor, total, concurrency, lambda i, cb: db.get("doc%09d" % (i % 1000), callback=cb))
    run.at(total, load_finished)
    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(threads_n)]
    reactor.call_soon(lambda: [t.start() for t in threads])

    with caplog.at_level(logging.WARNING):
        run.run(seconds=120)  # returns when the load is done
        # Let the threads' last posts and the requests they started finish.
        reactor.call_soon(check_end)
        run_for(reactor, 30)
    for t in threads:
        t.join(10)
        assert not t.is_alive()

    assert run.outcomes == {200: total}
    for n in range(threads_n):
        assert posted[n] > 0
        assert seen[n] == list(range(posted[n])), "thread %d: a call was lost or reordered" % n
    assert from_threads and set(from_threads) == {200}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


# -- the long run -----------------------------------------------------------------

@pytest.mark.soak
def test_soak_descriptors_and_memory_stay_flat(canned, reactor, capsys):
    total = int(os.environ.get("CORDUROY_SOAK_REQUESTS", "2000000"))
    concurrency = 256
    step = 100_000
    assert total >= 3 * step, "CORDUROY_SOAK_REQUESTS must be at least %d" % (3 * step)
    reactor.curl.set_limits(concurrency)
    db = Database(canned.url + "/soak")
    samples: List[tuple] = []
    run = ClosedLoop(reactor, total, concurrency, mixed_requests(db, concurrency))
    for n in range(step, total + 1, step):
        run.at(n, lambda n=n: samples.append((n,) + measure()))
    run.run(seconds=max(600.0, total / 500.0))

    assert run.outcomes == expected_outcomes(total, concurrency)
    _, fds_first, rss_first = samples[0]
    for n, fds, rss in samples:
        assert abs(fds - fds_first) <= FD_TOLERANCE, (n, fds, fds_first)
        assert rss - rss_first <= 2 * RSS_TOLERANCE_KB, (n, rss, rss_first)
    with capsys.disabled():
        print("\n[soak] %d requests: %.0f req/s; fds %s; VmRSS KiB %s"
              % (total, run.rate, sorted({s[1] for s in samples}), [s[2] for s in samples]))
