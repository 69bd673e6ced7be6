"""The _changes feed: normal, longpoll, filters, the continuous ChangesFeed (batching, stop,
resumption through a fault-injecting proxy) and follow() in asyncio, @relax and blocking code."""
from __future__ import annotations

import http.server
import json
import logging
import random
import threading
import time
import urllib.parse

import pytest

import loop
from corduroy import (
    BadRequest, ChangesFeed, Couch, Database, Document, NotFound, Operation, Status, relax,
)
from corduroy.changes import NotAnEventStream
from tests.consistency import EVERY_COPY, eventually
from tests.proxy import FaultProxy
from tests.styles import STYLES, call, run_async

WAIT = 30.0  # no test may take longer than this to see what it waits for


# -- helpers -------------------------------------------------------------------
def run(reactor, seconds: float = WAIT) -> None:
    """Run the reactor until something calls ``reactor.stop()``; fail if ``seconds`` pass first."""
    expired = []
    deadline = reactor.call_later(seconds, lambda: (expired.append(True), reactor.stop()))
    try:
        reactor.run()
    finally:
        deadline.cancel()
    assert not expired, "nothing stopped the reactor within %s s" % seconds


def run_for(reactor, seconds: float) -> None:
    """Run the reactor for ``seconds`` (to check that something does NOT happen)."""
    reactor.call_later(seconds, reactor.stop)
    reactor.run()


def sleep_op(reactor, seconds: float) -> Operation:
    """An Operation completing after ``seconds`` (a pause inside a trampolined generator)."""
    op = Operation(reactor)
    reactor.call_later(seconds, op.complete, None, Status(200))
    return op


def poll(reactor, predicate, then, every: float = 0.01) -> None:
    """Call ``then()`` on the reactor once ``predicate()`` holds."""
    def check():
        if predicate():
            then()
        else:
            reactor.call_later(every, check)
    reactor.call_soon(check)


def ids_of(result):
    return [row["id"] for row in result["results"] if not row["id"].startswith("_design/")]


def settled_seq(db, ids):
    """The feed's ``last_seq`` once it lists ``ids`` (a cluster shows a write eventually: tests.consistency)."""
    def read():
        result = db.changes()
        assert sorted(ids_of(result)) == sorted(ids)
        return result.last_seq

    return eventually(read)


@pytest.fixture
def db(couch_url, dbname):
    Couch(couch_url).create(dbname)
    # A total timeout bounds every request made without one of its own (longpoll waits are added to it).
    return Database(couch_url + "/" + dbname, timeout=WAIT)


@pytest.fixture
def reactor():
    return loop.get_reactor()


@pytest.fixture
def feeds(db):
    """Feeds a test opens; all stopped afterwards, even if it fails."""
    opened = []
    yield opened
    for feed in opened:
        feed.stop()


@pytest.fixture
def proxy(couch_url):
    with FaultProxy.for_url(couch_url) as p:
        yield p


def through(proxy, couch_url, db):
    """The same database, reached through the proxy."""
    return Database(proxy.url_for(couch_url) + "/" + db.name)


# -- normal feed -----------------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_normal_feed(style, db):
    db.save([{"_id": "a"}, {"_id": "b"}, {"_id": "c"}])

    def read():  # a cluster's _changes shows a write eventually (tests.consistency)
        result = call(style, db.changes)
        assert sorted(ids_of(result)) == ["a", "b", "c"]
        return result

    result = eventually(read)
    assert isinstance(result, Document)
    assert result.last_seq is not None
    for row in result.results:
        assert row.seq is not None and row.changes[0]["rev"].startswith("1-")
    if "pending" in result:  # CouchDB 2+ reports it
        assert result.pending == 0


@pytest.mark.parametrize("style", STYLES)
def test_since_limit_include_docs(style, db):
    # On every copy: the last read below is outside the eventually (tests.consistency).
    db.save([{"_id": "a", "n": 1}, {"_id": "b", "n": 2}, {"_id": "c", "n": 3}], w=EVERY_COPY)

    def read():
        everything = db.changes().results
        assert len(everything) == 3
        first = everything[0]
        result = call(style, db.changes, since=first.seq, limit=1, include_docs=True)
        assert len(result.results) == 1 and result.results[0].id in {"a", "b", "c"} - {first.id}
        return result

    row = eventually(read).results[0]
    assert row.doc["_id"] == row.id and row.doc["n"] in (1, 2, 3)
    # without include_docs there is no doc
    assert "doc" not in db.changes(limit=1).results[0]


def test_descending_and_other_options(db):
    db.save([{"_id": "a"}, {"_id": "b"}])

    def read():
        asc = db.changes()
        desc = db.changes(descending=True)
        assert sorted(ids_of(desc)) == sorted(ids_of(asc)) == ["a", "b"]
        # Options the server knows pass through (seq_interval only thins out seqs).
        everything = db.changes(conflicts=True, attachments=True, seq_interval=2, style="main_only")
        assert sorted(ids_of(everything)) == ["a", "b"]

    eventually(read)


def test_style_all_docs_lists_conflicting_revisions(db):
    doc = {"_id": "c", "v": 1}
    db.save(doc)
    # A second branch of the same doc: a conflict.
    db.save([{"_id": "c", "_rev": "1-" + "f" * 32, "v": 2}], new_edits=False)

    def read():
        main = db.changes(doc_ids=["c"])
        every = db.changes(doc_ids=["c"], style="all_docs")
        assert len(main.results[0].changes) == 1
        assert len(every.results[0].changes) == 2

    eventually(read)


@pytest.mark.parametrize("style", STYLES)
def test_since_now(style, db):
    # On every copy before "now" is read: a cluster's "now" is each copy's own position.
    db.save([{"_id": "old"}], w=EVERY_COPY)
    now = call(style, db.changes, since="now")
    assert now.results == []
    assert now.last_seq is not None
    db.save({"_id": "new"})

    def read():
        assert ids_of(db.changes(since=now.last_seq)) == ["new"]

    eventually(read)


@pytest.mark.parametrize("style", STYLES)
def test_longpoll_returns_when_a_doc_is_written(style, db):
    db.save({"_id": "before"})
    since = settled_seq(db, ["before"])
    written = []

    def longpoll(callback=None):
        if style == "blocking":
            # A blocking call runs none of the default reactor's timers: the
            # write comes from another thread (with its own reactors).
            def write_from_a_thread():
                written.append(True)
                db.save({"_id": "late"})

            threading.Timer(0.2, write_from_a_thread).start()
        else:
            def write():
                written.append(True)
                db.save({"_id": "late"}, callback=lambda data, status: None)

            loop.get_reactor().call_later(0.2, write)  # the reactor this style runs on
        return db.changes(feed="longpoll", since=since, timeout=20000, callback=callback)

    result = call(style, longpoll)
    assert written, "the longpoll returned before the doc was written"
    assert ids_of(result) == ["late"]
    assert result.last_seq is not None


# -- filters -----------------------------------------------------------------------
FILTER_DDOC = {
    "_id": "_design/app",
    "filters": {"atleast": "function(doc, req) { return doc.n >= parseInt(req.query.min, 10); }"},
    "views": {"odd": {"map": "function(doc) { if (doc.n % 2) { emit(doc.n, null); } }"}},
}


@pytest.fixture
def numbered(db):
    db.save([dict(FILTER_DDOC)] + [{"_id": "n%d" % n, "n": n} for n in range(1, 6)])
    return db


def settled(read, expected):
    """``read()`` (sorted ids), again until it gives ``expected``: a cluster's _changes is eventually consistent."""
    def check():
        got = sorted(read())
        assert got == expected
        return got

    return eventually(check)


@pytest.mark.parametrize("style", STYLES)
def test_design_doc_filter_with_its_query_parameters(style, numbered):
    settled(lambda: ids_of(call(style, numbered.changes, filter="app/atleast", min=4)), ["n4", "n5"])
    # "_design/app/atleast" is accepted too
    settled(lambda: ids_of(numbered.changes(filter="_design/app/atleast", min=5)), ["n5"])


@pytest.mark.parametrize("style", STYLES)
def test_doc_ids_filter(style, numbered):
    settled(lambda: ids_of(call(style, numbered.changes, doc_ids=["n2", "n5", "missing"])), ["n2", "n5"])
    settled(lambda: ids_of(numbered.changes(filter="_doc_ids", doc_ids=["n1"])), ["n1"])


@pytest.mark.parametrize("style", STYLES)
def test_selector_filter(style, numbered):
    try:
        call(style, numbered.changes, selector={"n": {"$gt": 3}})
    except (NotFound, BadRequest) as exc:
        pytest.skip("the server lacks the _selector changes filter (%s)" % exc)
    settled(lambda: ids_of(call(style, numbered.changes, selector={"n": {"$gt": 3}})), ["n4", "n5"])


@pytest.mark.parametrize("style", STYLES)
def test_view_filter(style, numbered):
    settled(lambda: ids_of(call(style, numbered.changes, view="app/odd")), ["n1", "n3", "n5"])
    settled(lambda: ids_of(numbered.changes(filter="_view", view="_design/app/odd")), ["n1", "n3", "n5"])


def test_longpoll_with_doc_ids_filter(db, reactor):
    db.save({"_id": "x"})
    since = db.changes().last_seq
    writer = threading.Timer(0.1, lambda: db.save([{"_id": "ignored"}, {"_id": "wanted"}]))
    writer.start()
    result = db.changes(feed="longpoll", since=since, doc_ids=["wanted"], timeout=20000)
    writer.join()
    assert ids_of(result) == ["wanted"]


def test_bad_options_raise_before_any_io(db):
    with pytest.raises(ValueError):
        db.changes(feed="sideways")
    with pytest.raises(TypeError):
        db.changes(doc_ids="abc")
    with pytest.raises(TypeError):
        db.changes(doc_ids=["ok", ""])
    with pytest.raises(ValueError):
        db.changes(filter="_doc_ids")
    with pytest.raises(ValueError):
        db.changes(filter="app/f", doc_ids=["a"])
    with pytest.raises(TypeError):
        db.changes(selector=[1])
    with pytest.raises(ValueError):
        db.changes(filter="_view")
    with pytest.raises(ValueError):
        db.changes(filter="nodesign")
    with pytest.raises(ValueError):
        db.changes(style="some")
    with pytest.raises(ValueError):
        db.changes(heartbeat=-5)
    with pytest.raises(TypeError):
        db.changes(since=1.5)
    with pytest.raises(TypeError):
        db.changes(latency=1)
    with pytest.raises(ValueError):
        db.changes(selector={"n": float("nan")})
    with pytest.raises(ValueError):
        db.changes(feed="continuous", callback=lambda seq, changes: None, latency=-1)
    with pytest.raises(TypeError):
        db.changes(feed="continuous", callback="not callable")


def test_continuous_without_listener_when_blocking_is_a_type_error(db):
    with pytest.raises(TypeError, match="callback=listener"):
        db.changes(feed="continuous")


# -- continuous feed with a listener -------------------------------------------------
def test_continuous_latency_zero_calls_once_per_change(db, reactor, feeds):
    db.save([{"_id": "a"}, {"_id": "b"}])
    calls = []

    def listener(last_seq, changes):
        calls.append((last_seq, changes))
        if len(calls) == 2:
            db.save([{"_id": "c"}, {"_id": "d"}, {"_id": "e"}], callback=lambda data, status: None)
        if len(calls) == 5:
            reactor.stop()

    feed = db.changes(feed="continuous", callback=listener, latency=0, since=0)
    feeds.append(feed)
    assert isinstance(feed, ChangesFeed) and feed.running and feed.callback is listener
    run(reactor)
    assert [len(changes) for _, changes in calls] == [1] * 5
    assert sorted(changes[0].id for _, changes in calls) == ["a", "b", "c", "d", "e"]
    for last_seq, changes in calls:
        assert last_seq == changes[0].seq  # the seq of the change delivered
    assert feed.last_seq == calls[-1][0]


def test_continuous_latency_batches_changes(db, reactor, feeds):
    calls = []

    def listener(last_seq, changes):
        calls.append((reactor.time(), last_seq, [c.id for c in changes]))
        if sum(len(ids) for _, _, ids in calls) >= 20:
            reactor.stop()

    feed = db.changes(feed="continuous", callback=listener, latency=0.3, since="now")
    feeds.append(feed)
    assert feed.latency == 0.3
    # Write once the feed has pinned "now", so every change is new.
    poll(reactor, lambda: feed.last_seq != "now",
         lambda: db.save([{"_id": "d%02d" % i} for i in range(20)], callback=lambda data, status: None))
    run(reactor)
    delivered = [i for _, _, ids in calls for i in ids]
    assert sorted(delivered) == ["d%02d" % i for i in range(20)]
    assert len(calls) < 20, "changes were not batched"
    for (t1, _, _), (t2, _, _) in zip(calls, calls[1:]):
        assert t2 - t1 >= 0.3 * 0.9  # at least `latency` between two calls
    assert calls[-1][1] == feed.last_seq


def test_stop_inside_listener_means_no_further_call(db, reactor, feeds):
    db.save([{"_id": "d%d" % i} for i in range(5)])
    calls = []

    def listener(last_seq, changes):
        calls.append(changes)
        feed.stop()
        assert not feed.running

    feed = db.changes(feed="continuous", callback=listener, latency=0, since=0)
    feeds.append(feed)
    poll(reactor, lambda: calls, reactor.stop)
    run(reactor)
    assert reactor.curl.active == 0  # the transfer was removed from the curl driver
    db.save({"_id": "after"}, callback=lambda data, status: None)
    run_for(reactor, 0.5)
    assert len(calls) == 1 and not feed.running


def test_stop_drops_a_batch_waiting_for_its_latency(db, reactor, feeds):
    calls = []

    def listener(last_seq, changes):
        calls.append([c.id for c in changes])
        if len(calls) == 1:  # the first change went through at once; the next ones must wait 1 s
            db.save([{"_id": "w%d" % i} for i in range(5)], callback=lambda data, status: None)

    db.save({"_id": "first"})
    feed = db.changes(feed="continuous", callback=listener, latency=1.0, since=0)
    feeds.append(feed)

    def stop_now():
        feed.stop()
        stopped.append(feed.backlog)
        reactor.stop()

    stopped = []
    poll(reactor, lambda: feed.backlog >= 5, stop_now, every=0.005)
    run(reactor)
    assert calls == [["first"]]
    assert stopped == [0]  # stop() dropped the batch
    run_for(reactor, 1.2)  # past the moment the batch was due
    assert calls == [["first"]]
    # listen() reopens from the last change delivered: the dropped batch comes again
    feed.listen()
    poll(reactor, lambda: len(calls) >= 2 and sum(map(len, calls)) >= 6, reactor.stop)
    run(reactor)
    assert sorted(i for batch in calls[1:] for i in batch) == ["w%d" % i for i in range(5)]


def test_continuous_limit_ends_the_feed(db, reactor, feeds):
    db.save([{"_id": "d%d" % i} for i in range(6)])
    seen = []
    feed = db.changes(feed="continuous", callback=lambda seq, changes: seen.extend(changes),
                      latency=0, since=0, limit=4)
    feeds.append(feed)
    poll(reactor, lambda: not feed.running and not feed.backlog, reactor.stop)
    run(reactor)
    run_for(reactor, 0.2)
    assert len(seen) == 4 and feed.error is None


def test_permanent_error_stops_the_feed_and_reports_it(couch_url, reactor, feeds, caplog):
    missing = Database(couch_url + "/no_such_db_for_changes")
    errors = []
    calls = []
    feed = missing.changes(feed="continuous", callback=lambda seq, changes: calls.append(changes),
                           on_error=lambda exc: (errors.append(exc), reactor.stop()))
    feeds.append(feed)
    with caplog.at_level(logging.ERROR, logger="corduroy"):
        run(reactor)
    assert len(errors) == 1 and isinstance(errors[0], NotFound)
    assert feed.error is errors[0] and not feed.running and not calls
    assert any("stopped" in r.getMessage() for r in caplog.records if r.name == "corduroy")
    run_for(reactor, 0.3)
    assert len(errors) == 1  # no retry


def test_missing_filter_is_a_permanent_error(db, reactor, feeds):
    errors = []
    feed = db.changes(feed="continuous", callback=lambda seq, changes: None, filter="nope/nothing",
                      on_error=lambda exc: (errors.append(exc), reactor.stop()))
    feeds.append(feed)
    run(reactor)
    assert isinstance(errors[0], NotFound) and not feed.running


def test_listener_exceptions_are_logged_and_the_feed_goes_on(db, reactor, feeds, caplog):
    db.save([{"_id": "a"}, {"_id": "b"}])
    seen = []

    def listener(last_seq, changes):
        seen.extend(c.id for c in changes)
        if len(seen) == 2:
            reactor.stop()
        raise RuntimeError("listener bug")

    feed = db.changes(feed="continuous", callback=listener, latency=0, since=0)
    feeds.append(feed)
    with caplog.at_level(logging.ERROR, logger="corduroy"):
        run(reactor)
    assert sorted(seen) == ["a", "b"] and feed.running
    assert sum("listener" in r.getMessage() for r in caplog.records) == 2


def test_repr_has_no_credentials():
    db = Database("http://admin:s3cret@127.0.0.1:5984/things")
    feed = db.follow(since=0)
    assert "s3cret" not in repr(feed) and "things" in repr(feed)
    assert not feed.running and feed.last_seq == 0 and feed.callback is None


# -- resilience (through tests/proxy.py) ------------------------------------------------
def test_feed_survives_severed_connections_during_a_stream_of_writes(couch_url, db, reactor, proxy, feeds):
    rng = random.Random(20240611)
    ids = ["doc-%03d" % i for i in range(300)]
    watched = through(proxy, couch_url, db)
    seen = []
    seen_ids = set()
    state = {"want": 0, "hits": 0}

    def sever_if_wanted():
        if state["want"] and proxy.active:
            if proxy.sever():
                state["want"] -= 1
                state["hits"] += 1

    def listener(last_seq, changes):
        for change in changes:
            seen.append(change)
            seen_ids.add(change.id)
            if len(seen) in (57, 173):  # mid-stream, between two changes of one batch
                state["want"] += 1
            sever_if_wanted()
        finished()

    def finished():
        if seen_ids >= set(ids) and writing and writing[0].done():
            reactor.stop()

    def writer():
        for batch, start in enumerate(range(0, len(ids), 10)):
            yield db.save([{"_id": i, "batch": batch} for i in ids[start:start + 10]])
            if batch in (4, 13, 22):
                state["want"] += 1
            sever_if_wanted()
            yield sleep_op(reactor, rng.uniform(0.005, 0.04))
        # A sever asked for while the feed was reconnecting waits for the next
        # connection: serve those before the stream ends (bounded: 5 s).
        for _ in range(250):
            if not state["want"]:
                break
            sever_if_wanted()
            yield sleep_op(reactor, 0.02)

    feed = watched.changes(feed="continuous", callback=listener, latency=0, heartbeat=1000)
    feeds.append(feed)
    writing = [loop.trampoline(writer(), reactor)]
    writing[0].add_callback(lambda data, status: finished())
    run(reactor)
    assert writing[0].status.ok
    assert seen_ids == set(ids)
    assert state["hits"] >= 5, "the proxy severed the feed only %d times" % state["hits"]
    assert proxy.accepted >= 6
    for a, b in zip(seen, seen[1:]):
        assert (a.seq, a.id) != (b.seq, b.id), "change %s delivered twice in a row" % a.id
    assert feed.running and feed.last_seq == seen[-1].seq


def test_feed_survives_a_server_restart(couch_url, db, reactor, proxy, feeds, caplog):
    watched = through(proxy, couch_url, db)
    seen = []

    def listener(last_seq, changes):
        seen.extend(c.id for c in changes)
        if seen == ["a"]:
            proxy.drop()  # the server goes away: connection reset, connects refused
            db.save([{"_id": "b"}, {"_id": "c"}], callback=lambda data, status: None)
            reactor.call_later(0.6, proxy.restore)
        if {"b", "c"} <= set(seen):
            reactor.stop()

    db.save({"_id": "a"})
    feed = watched.changes(feed="continuous", callback=listener, latency=0, since=0)
    feeds.append(feed)
    with caplog.at_level(logging.INFO, logger="corduroy"):
        run(reactor)
    assert sorted(seen) == ["a", "b", "c"]
    reconnects = [r for r in caplog.records if "reconnecting" in r.getMessage()]
    assert len(reconnects) >= 2  # at least one refused attempt after the reset
    assert feed.running and feed.error is None


def test_dead_connection_is_detected_by_missing_heartbeats(couch_url, db, reactor, proxy, feeds):
    watched = through(proxy, couch_url, db)
    seen = []
    feed = watched.changes(feed="continuous", callback=lambda seq, changes: seen.extend(changes),
                           latency=0, since=0, heartbeat=200)
    feeds.append(feed)
    assert feed.idle_timeout is not None and feed.idle_timeout < 2
    db.save({"_id": "a"})
    poll(reactor, lambda: seen, reactor.stop)
    run(reactor)
    proxy.stall()  # the connection stays open but nothing arrives: a dead peer

    def stalled_reconnect():
        proxy.resume()
        db.save({"_id": "b"}, callback=lambda data, status: None)

    poll(reactor, lambda: proxy.accepted >= 2, stalled_reconnect)
    poll(reactor, lambda: len(seen) >= 2, reactor.stop)
    run(reactor)
    assert [c.id for c in seen] == ["a", "b"]
    assert proxy.accepted >= 2


def test_since_now_survives_a_drop_before_the_first_change(couch_url, db, reactor, proxy, feeds):
    # On every copy before "now" is read: a lagging copy would send "old" as new (tests.consistency).
    db.save({"_id": "old"}, w=EVERY_COPY)
    watched = through(proxy, couch_url, db)
    seen = []
    feed = watched.changes(feed="continuous", callback=lambda seq, changes: seen.extend(changes),
                           latency=0, since="now")
    feeds.append(feed)

    def connected():
        proxy.sever()  # cut before any change arrived
        db.save({"_id": "new"}, callback=lambda data, status: None)

    poll(reactor, lambda: proxy.active and feed.last_seq != "now", connected)
    poll(reactor, lambda: seen, reactor.stop)
    run(reactor)
    assert [c.id for c in seen] == ["new"]


class _ScriptedFeed(http.server.BaseHTTPRequestHandler):
    """Serves ``_changes`` from a script: one function per connection, in order."""

    protocol_version = "HTTP/1.0"  # the body ends when the connection closes

    def do_GET(self) -> None:  # noqa: N802
        server = self.server
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        server.requests.append({k: v[0] for k, v in query.items()})  # type: ignore[attr-defined]
        script = server.scripts[min(len(server.requests), len(server.scripts)) - 1]  # type: ignore[attr-defined]
        script(self)

    def lines(self, *items) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        for item in items:
            self.wfile.write(b"\n" if item is None else json.dumps(item).encode() + b"\n")
            self.wfile.flush()

    def hold(self) -> None:
        self.server.release.wait(WAIT)  # type: ignore[attr-defined]

    def log_message(self, *args) -> None:
        pass


def change(seq, doc_id):
    return {"seq": seq, "id": doc_id, "changes": [{"rev": "1-" + doc_id * 4}]}


@pytest.fixture
def scripted():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ScriptedFeed)
    server.daemon_threads = True
    server.requests = []
    server.scripts = []
    server.release = threading.Event()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def test_replays_after_a_reconnect_are_not_delivered_again(scripted, reactor, feeds):
    """A server may resend changes at or after ``since`` (CouchDB clusters do): each is delivered once."""
    scripted.scripts = [
        lambda h: h.send_error(500, "warming up"),  # a 5xx is retried
        lambda h: h.lines(change("1-x", "a"), None, change("2-x", "b"), change("3-x", "c")),
        # replays c, then two changes without a seq (as with seq_interval)
        lambda h: h.lines(change("3-x", "c"), change("4-x", "d"), change(None, "e"), change(None, "f")),
        # replays d, e, f; ends the stream with its last_seq
        lambda h: h.lines(change("4-x", "d"), change(None, "e"), change(None, "f"), change("7-x", "g"),
                          {"last_seq": "9-x", "pending": 0}),
        lambda h: (h.lines(change("10-x", "h")), h.hold()),
    ]
    db = Database("http://127.0.0.1:%d/scripted" % scripted.server_address[1])
    calls = []

    def listener(last_seq, changes):
        calls.append((last_seq, [c.id for c in changes]))
        if changes[-1].id == "h":
            reactor.stop()

    feed = db.changes(feed="continuous", callback=listener, latency=0, since="0-x", heartbeat=5000)
    feeds.append(feed)
    run(reactor)
    assert [ids[0] for _, ids in calls] == list("abcdefgh")
    # seq-less changes are reported with the last seq seen
    assert [seq for seq, _ in calls] == ["1-x", "2-x", "3-x", "4-x", "4-x", "4-x", "7-x", "10-x"]
    sinces = [r.get("since") for r in scripted.requests]
    assert sinces == ["0-x", "0-x", "3-x", "4-x", "9-x"]  # opaque seqs sent back as they came
    assert all(r["feed"] == "continuous" and r["heartbeat"] == "5000" for r in scripted.requests)


def test_a_line_split_across_chunks_is_parsed_whole(scripted, reactor, feeds):
    def split(h):
        h.send_response(200)
        h.end_headers()
        line = json.dumps(change("1-x", "split-doc")).encode() + b"\n"
        for piece in (line[:7], line[7:30], line[30:] + b"\n\n"):
            h.wfile.write(piece)
            h.wfile.flush()
            time.sleep(0.05)  # the server side pacing its writes, so they arrive as separate chunks
        h.hold()

    scripted.scripts = [split]
    db = Database("http://127.0.0.1:%d/scripted" % scripted.server_address[1])
    seen = []
    feed = db.changes(feed="continuous", latency=0,
                      callback=lambda seq, changes: (seen.extend(changes), reactor.stop()))
    feeds.append(feed)
    run(reactor)
    assert [c.id for c in seen] == ["split-doc"] and seen[0].seq == "1-x"


# -- follow(): the feed as an iterator -------------------------------------------------
def test_async_for_over_follow(db):
    db.save([{"_id": "a"}, {"_id": "b"}, {"_id": "c"}])

    async def main():
        got = []
        async with db.follow(since=0) as feed:
            async for change in feed:
                got.append(change.id)
                if len(got) == 3:
                    await db.save([{"_id": "d"}, {"_id": "e"}])
                if len(got) == 5:
                    break
        assert not feed.running
        return got

    got = run_async(main)
    assert sorted(got[:3]) == ["a", "b", "c"] and sorted(got[3:]) == ["d", "e"]


def test_async_for_ends_when_stopped(db):
    db.save([{"_id": "a"}])

    async def main():
        feed = db.follow(since=0)
        got = []
        async for change in feed:
            got.append(change.id)
            feed.stop()
        return got

    assert run_async(main) == ["a"]


def test_relax_generator_over_follow(db):
    db.save([{"_id": "a"}, {"_id": "b"}])

    @relax
    def consume():
        feed = db.follow(since=0)
        got = []
        while len(got) < 4:
            change = yield feed.next()
            got.append(change.id)
            if len(got) == 2:
                yield db.save([{"_id": "c"}, {"_id": "d"}])
        feed.stop()
        ended = yield feed.next()
        return got, ended

    got, ended = consume()
    assert sorted(got) == ["a", "b", "c", "d"] and ended is None


def test_relax_next_batch(db):
    db.save([{"_id": "d%d" % i} for i in range(4)])

    @relax
    def consume():
        feed = db.follow(since=0)
        got = []
        while len(got) < 4:
            batch = yield feed.next_batch()
            assert batch
            got.extend(c.id for c in batch)
        feed.stop()
        return got

    assert sorted(consume()) == ["d0", "d1", "d2", "d3"]


def test_blocking_for_over_follow_stops_on_break_and_resumes(db, reactor):
    db.save([{"_id": "a"}, {"_id": "b"}])
    feed = db.follow(since=0)
    first = []
    for change in feed:
        first.append(change.id)
        if len(first) == 2:
            break
    assert sorted(first) == ["a", "b"]
    assert not feed.running and reactor.curl.active == 0
    db.save({"_id": "c"})
    for change in feed:  # resumes after the last change delivered
        assert change.id == "c"
        break


def test_follow_with_limit_ends_iteration(db):
    db.save([{"_id": "d%d" % i} for i in range(5)])
    got = [c.id for c in db.follow(since=0, limit=3)]
    assert len(got) == 3


@pytest.mark.parametrize("style", STYLES)
def test_feed_next_in_every_style(style, db):
    db.save([{"_id": "a"}, {"_id": "b"}])

    def first_change(callback=None):
        feed = db.follow(since=0, limit=1)  # ends (and closes) after one change
        return feed.next(callback=callback)

    change = call(style, first_change)
    assert change.id in ("a", "b") and change.seq is not None


@pytest.mark.parametrize("style", STYLES)
def test_feed_next_batch_in_every_style(style, db):
    db.save([{"_id": "a"}, {"_id": "b"}])

    def some_changes(callback=None):
        feed = db.follow(since=0, limit=2)
        return feed.next_batch(callback=callback)

    batch = call(style, some_changes)
    assert isinstance(batch, list) and 1 <= len(batch) <= 2
    assert {c.id for c in batch} <= {"a", "b"}


@pytest.mark.parametrize("style", ["relax", "await"])
def test_continuous_without_listener_in_async_code_is_an_iterator(style, db):
    db.save({"_id": "a"})

    def first_change(callback=None):
        feed = db.changes(feed="continuous", since=0, limit=1)
        assert isinstance(feed, ChangesFeed) and feed.callback is None
        return feed.next(callback=callback)

    assert call(style, first_change).id == "a"


def test_follow_raises_the_error_that_stopped_it(couch_url):
    feed = Database(couch_url + "/no_such_db_to_follow").follow()
    with pytest.raises(NotFound):
        feed.next()
    assert not feed.running and isinstance(feed.error, NotFound)


def test_listener_feed_has_no_next(db, feeds):
    feed = db.changes(feed="continuous", callback=lambda seq, changes: None)
    feeds.append(feed)
    with pytest.raises(TypeError):
        feed.next()


def test_slow_blocking_consumer_keeps_its_connection(couch_url, db, proxy):
    watched = through(proxy, couch_url, db)
    db.save({"_id": "a"})
    got = []
    for change in watched.follow(since=0, heartbeat=200):  # silence for 1.4 s would mean a dead peer
        got.append(change.id)
        if change.id == "a":
            time.sleep(2.0)  # a slow loop body: the reactor does not run meanwhile
            db.save({"_id": "b"})
        else:
            break
    assert got == ["a", "b"]
    assert proxy.accepted == 1, "a healthy connection was taken for dead"


# -- feed="eventsource": the continuous feed as Server-Sent Events -------------------------
def eventsource_or_skip(feed: ChangesFeed) -> None:
    """Skip when the server answered feed=eventsource with something else than an event stream."""
    if isinstance(feed.error, NotAnEventStream):
        pytest.skip("the server lacks feed=eventsource: %s" % feed.error)


def test_eventsource_feed_gives_the_changes_the_continuous_feed_gives(db, reactor, feeds):
    db.save([{"_id": "a"}, {"_id": "b"}])
    got = {"continuous": [], "eventsource": []}

    def listener(kind):
        def on_changes(last_seq, changes):
            got[kind].extend(changes)
            if len(got["eventsource"]) == 2 and not any(c.id == "c" for c in got["eventsource"]):
                db.save({"_id": "c"}, callback=lambda data, status: None)  # one written while it listens
            if len(got["continuous"]) >= 3 and len(got["eventsource"]) >= 3:
                reactor.stop()
        return on_changes

    errors = []
    es = db.changes(feed="eventsource", callback=listener("eventsource"), latency=0, since=0, heartbeat=500,
                    on_error=lambda exc: (errors.append(exc), reactor.stop()))
    feeds.append(es)
    assert isinstance(es, ChangesFeed) and es.running
    feeds.append(db.changes(feed="continuous", callback=listener("continuous"), latency=0, since=0))
    run(reactor)
    eventsource_or_skip(es)
    assert not errors
    by_id = {c.id: c for c in got["continuous"]}
    assert sorted(c.id for c in got["eventsource"]) == ["a", "b", "c"]
    for change in got["eventsource"]:
        assert isinstance(change, Document)
        assert change.changes == by_id[change.id].changes  # the same change dicts
        assert change.seq is not None
    assert es.last_seq == got["eventsource"][-1].seq


@pytest.mark.parametrize("style", STYLES)
def test_eventsource_follow_in_every_style(style, db):
    db.save([{"_id": "a"}, {"_id": "b"}])
    made = []

    def first_change(callback=None):
        feed = db.follow(since=0, limit=1, feed="eventsource")
        made.append(feed)
        return feed.next(callback=callback)

    try:
        change = call(style, first_change)
    except NotAnEventStream as exc:
        pytest.skip("the server lacks feed=eventsource: %s" % exc)
    assert change.id in ("a", "b") and change.seq is not None
    assert not made[0].running  # limit=1 ended it


def test_eventsource_without_listener_when_blocking_is_a_type_error(db):
    with pytest.raises(TypeError, match="feed='eventsource' needs callback"):
        db.changes(feed="eventsource")
    with pytest.raises(ValueError, match="live feed"):
        ChangesFeed(db, feed="longpoll")


def sse(*events: bytes) -> bytes:
    return b"".join(events)


def data_event(seq, doc_id) -> bytes:
    return b"data: %s\nid: %s\n\n" % (json.dumps(change(seq, doc_id)).encode(), json.dumps(seq).encode())


HEARTBEAT = b"event: heartbeat\ndata: \n\n"


def test_eventsource_parsing_heartbeats_comments_split_events_and_resume(scripted, reactor, feeds):
    """CouchDB's event stream: ``data:`` a change, ``id:`` its seq, ``event: heartbeat``; resumed from the last seq."""
    def first(h):
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.end_headers()
        one = data_event("1-x", "a")
        # a heartbeat, an event split across chunks, a comment, a multi-line data field with CRLF line ends
        two = b'data: {"seq": "2-x", "id": "b",\r\ndata:  "changes": [{"rev": "1-bbbb"}]}\r\nid: "2-x"\r\n\r\n'
        for piece in (HEARTBEAT, one[:9], one[9:40], one[40:], b": keep-alive\n\n", two):
            h.wfile.write(piece)
            h.wfile.flush()
            time.sleep(0.03)
        # the connection drops here: the feed reconnects from "2-x"

    def second(h):
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.end_headers()
        h.wfile.write(sse(data_event("2-x", "b"), HEARTBEAT, data_event("3-x", "c")))  # replays b
        h.wfile.flush()
        h.hold()

    scripted.scripts = [first, second]
    db = Database("http://127.0.0.1:%d/scripted" % scripted.server_address[1])
    calls = []

    def listener(last_seq, changes):
        calls.append((last_seq, [c.id for c in changes]))
        if changes[-1].id == "c":
            reactor.stop()

    feed = db.changes(feed="eventsource", callback=listener, latency=0, since="0-x", heartbeat=5000)
    feeds.append(feed)
    run(reactor)
    assert calls == [("1-x", ["a"]), ("2-x", ["b"]), ("3-x", ["c"])]
    assert [r.get("since") for r in scripted.requests] == ["0-x", "2-x"]
    assert all(r["feed"] == "eventsource" and r["heartbeat"] == "5000" for r in scripted.requests)


def test_a_server_without_eventsource_stops_the_feed_with_a_clear_error(scripted, reactor, feeds):
    """pouchdb-server answers feed=eventsource as feed=normal (a JSON body): no retrying, NotAnEventStream."""
    scripted.scripts = [lambda h: h.lines({"results": [change("1-x", "a")], "last_seq": "1-x"})]
    db = Database("http://127.0.0.1:%d/scripted" % scripted.server_address[1])
    errors = []
    feed = db.changes(feed="eventsource", callback=lambda seq, changes: None,
                      on_error=lambda exc: (errors.append(exc), reactor.stop()))
    feeds.append(feed)
    run(reactor)
    assert len(errors) == 1 and isinstance(errors[0], NotAnEventStream)
    assert "feed='continuous'" in str(errors[0]) and feed.error is errors[0] and not feed.running
    run_for(reactor, 0.3)
    assert len(scripted.requests) == 1  # a permanent error: no reconnection
