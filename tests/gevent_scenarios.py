"""Scenarios for tests/test_gevent.py, each run in its own interpreter.

gevent's monkey-patching cannot be undone, so the tests run these in a
subprocess::

    python tests/gevent_scenarios.py SCENARIO URL DBNAME [--patch]

``--patch`` monkey-patches the process first (the gevent backend is then
chosen automatically); without it the backend is forced with
``loop.set_reactor(Reactor.create("gevent"))``.  Each scenario prints one
JSON object on its last line of stdout.
"""
from __future__ import annotations

import json
import os
import sys

PATCH = "--patch" in sys.argv
if PATCH:
    from gevent import monkey

    monkey.patch_all()

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import time  # noqa: E402

import gevent  # noqa: E402
import gevent.pool  # noqa: E402

import loop  # noqa: E402
from corduroy import Database  # noqa: E402


def setup_reactor() -> loop.Reactor:
    if not PATCH:
        loop.set_reactor(loop.Reactor.create("gevent"))
    return loop.get_reactor()


def overlap(url: str, name: str) -> dict:
    """50 greenlets x 20 sequential GETs, against one greenlet doing 20."""
    reactor = setup_reactor()
    db = Database(url + "/" + name)
    ids = ["doc-%03d" % i for i in range(20)]
    in_flight = [0]
    peak = [0]
    wrong = []
    reactors = set()

    def worker(offset: int) -> None:
        reactors.add(id(loop.get_reactor()))
        for k in range(20):
            doc_id = ids[(offset + k) % 20]
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
            try:
                doc = db.get(doc_id)  # a plain blocking call
            finally:
                in_flight[0] -= 1
            if doc["_id"] != doc_id or doc["n"] != int(doc_id[4:]):
                wrong.append(doc_id)

    db.get(ids[0])  # warm up: connect once
    start = time.monotonic()
    gevent.spawn(worker, 0).get()
    single = time.monotonic() - start
    peak[0] = 0
    start = time.monotonic()
    greenlets = [gevent.spawn(worker, i) for i in range(50)]
    gevent.joinall(greenlets, raise_error=True)
    fifty = time.monotonic() - start
    return {
        "backend": reactor.backend,
        "loop": type(reactor.loop).__module__,
        "single": single,
        "fifty": fifty,
        "peak": peak[0],
        "wrong": wrong,
        "reactors": len(reactors),
        "patched": PATCH,
    }


def wsgi(url: str, name: str) -> None:
    """A gevent.pywsgi server whose handler makes plain blocking corduroy calls.

    ``GET /item/<i>`` first waits (a blocking longpoll on ``_changes``) until
    the handler of the ``N``-th request has written the document ``go``, then
    returns document ``item-<i>`` as JSON.  Handlers can only all finish if
    they really run concurrently.  Prints ``{"port": ...}`` and serves until
    stdin closes.
    """
    from gevent.pywsgi import WSGIServer

    expected = int(os.environ.get("GEVENT_WSGI_REQUESTS", "20"))
    reactor = setup_reactor()
    db = Database(url + "/" + name)
    since = db.info()["update_seq"]
    arrived = [0]

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        path = environ["PATH_INFO"]
        if not path.startswith("/item/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"no such path"]
        i = int(path[len("/item/"):])
        arrived[0] += 1
        if arrived[0] == expected:
            db.save({"_id": "go"})
        # Blocks this greenlet until "go" exists: a longpoll on the changes feed.
        changes = db.changes(feed="longpoll", since=since, timeout=30000)
        doc = db.get("item-%d" % i)
        body = json.dumps({
            "i": i, "value": doc["value"], "backend": reactor.backend,
            "go_seen": any(row["id"] == "go" for row in changes["results"]),
        }).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    server = WSGIServer(("127.0.0.1", 0), app, log=None)
    server.start()
    print(json.dumps({"port": server.server_port}), flush=True)
    # Serve until the test closes our stdin.
    gevent.get_hub().threadpool.spawn(sys.stdin.read).get()
    server.stop()


def changes(url: str, name: str) -> dict:
    """A continuous changes feed (listener) and a blocking ``for`` over ``db.follow()``, both
    delivering while other greenlets keep making blocking calls and a writer saves 20 documents."""
    from gevent.event import Event

    reactor = setup_reactor()
    db = Database(url + "/" + name)
    since = db.info()["update_seq"]
    gets = [0]
    heard: list = []  # (doc id, GETs done by the workers at that moment)
    followed: list = []
    all_heard = Event()
    stop_work = Event()

    def listener(last_seq, batch):  # type: ignore[no-untyped-def]
        for change in batch:
            heard.append((change["id"], gets[0]))
        if len(heard) >= 20:
            all_heard.set()

    def worker() -> None:
        while not stop_work.is_set():
            assert db.get("doc-001")["n"] == 1  # plain blocking calls
            gets[0] += 1

    def follower() -> None:
        for change in db.follow(since=since):  # a blocking iteration, in a greenlet
            followed.append((change["id"], gets[0]))
            if len(followed) == 20:
                break

    def writer() -> None:
        for i in range(20):
            db.save({"_id": "written-%02d" % i})
            gevent.sleep(0.02)

    feed = db.changes(feed="continuous", since=since, latency=0, callback=listener)
    workers = [gevent.spawn(worker) for _ in range(5)]
    following = gevent.spawn(follower)
    writing = gevent.spawn(writer)
    finished = all_heard.wait(timeout=30)
    following.join(timeout=10)
    writing.join(timeout=10)
    work_during = gets[0]
    stop_work.set()
    gevent.joinall(workers, timeout=10, raise_error=True)
    feed.stop()
    return {
        "backend": reactor.backend,
        "finished": bool(finished),
        "heard": heard,
        "followed": followed,
        "follower_done": following.dead and following.successful(),
        "gets": work_during,
        "feed_running_after_stop": feed.running,
    }


def stray_stops(url: str, name: str) -> dict:
    """The calling contract on gevent: 50 rounds of 8 callbacks that each call stop(), one run(),
    then 5 blocking calls; a stop() with no run() active; Ctrl-C-like interruption of a blocking call."""
    reactor = setup_reactor()
    db = Database(url + "/" + name)
    delivered = []
    wrong = []

    def stop_when_done(doc: dict, status: object) -> None:
        delivered.append(doc["n"])
        reactor.stop()

    for _ in range(50):
        for _ in range(8):
            db.get("doc-001", callback=stop_when_done)
        reactor.run()
        for _ in range(5):
            try:
                if db.get("doc-002")["n"] != 2:
                    wrong.append("data")
            except RuntimeError as exc:
                wrong.append(str(exc))
    deadline = time.monotonic() + 30
    while len(delivered) < 400 and time.monotonic() < deadline:
        gevent.sleep(0.01)  # the hub delivers the rest
    reactor.stop()  # no run() active: ignored
    timer_ran = []
    reactor.call_later(0.05, timer_ran.append, 1)
    reactor.call_later(0.06, reactor.stop)
    reactor.run()
    return {"delivered": len(delivered), "wrong": wrong, "timer_ran": timer_ran,
            "active": reactor.curl.active}


SCENARIOS = {"overlap": overlap, "wsgi": wsgi, "changes": changes, "stray_stops": stray_stops}

if __name__ == "__main__":
    scenario, couch, dbname = sys.argv[1:4]
    result = SCENARIOS[scenario](couch, dbname)
    if result is not None:
        print(json.dumps(result), flush=True)
