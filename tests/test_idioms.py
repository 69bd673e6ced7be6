"""couchdb-python idioms, the welcome document, partitions, multi-query views and the _db_updates feed.

Every call that does I/O is tried in the four calling styles (see
:mod:`tests.styles`); the dict idioms (``id in db``, ``db[id]``...) block by
nature, so they are tried blocking, and refused inside a running reactor.
Features pouchdb-server lacks (``.../queries``, ``_db_updates``, partitions)
are tested all the same and skipped only when the server answers that it
lacks them.
"""
from __future__ import annotations

import asyncio
from typing import Iterator

import pytest

from corduroy import Couch, Database, Document, NotFound, relax
from corduroy.changes import DbUpdatesFeed
from corduroy.mango import FindPager, FindResult
from corduroy.views import Pager, View
from tests.consistency import EVERY_COPY, until_conflict, eventually, eventually_equal
from tests.styles import STYLES, call, run_async
from tests.lacking import LACKING, lacks

OFFLINE = "http://127.0.0.1:9"


@pytest.fixture
def couch(couch_url: str) -> Couch:
    return Couch(couch_url)


@pytest.fixture
def db(couch: Couch, dbname: str) -> Database:
    return couch.create(dbname)


# -- dict idioms on a Database ---------------------------------------------------
def test_a_database_reads_and_writes_like_a_dict(db):
    doc = {"n": 1}
    db["a"] = doc                                   # saves; sets _id and _rev in place
    assert doc["_id"] == "a" and doc["_rev"].startswith("1-")
    assert "a" in db and "b" not in db
    got = db["a"]
    assert isinstance(got, Document) and got.n == 1
    got["n"] = 2
    db["a"] = got                                   # an update: it carries its _rev
    assert got["_rev"].startswith("2-")
    # len() and iteration read any copy of each shard: the writes show eventually (tests.consistency).
    eventually_equal(lambda: len(db), 1)
    eventually_equal(lambda: list(db), ["a"])
    del db["a"]                                     # no rev needed: fetched first
    assert "a" not in db
    eventually_equal(lambda: len(db), 0)
    with pytest.raises(NotFound):
        db["a"]
    with pytest.raises(KeyError):                   # NotFound is a KeyError too
        db["a"]
    with pytest.raises(KeyError):
        del db["a"]
    assert bool(db) is True                         # truth needs no request, even when empty


def test_setting_an_existing_id_without_its_rev_is_a_conflict(db):
    def attempt(n):
        doc_id = "a%d" % n
        db.save({"_id": doc_id, "n": 1}, w=EVERY_COPY)
        db[doc_id] = {"n": 2}  # a cluster copy that lags may accept it (tests.consistency)

    until_conflict(attempt)


def test_iterating_a_database_pages_through_all_its_ids(db):
    ids = ["d%05d" % i for i in range(1203)]
    db.save([{"_id": i} for i in ids] + [{"_id": "_design/app"}], w=EVERY_COPY)
    seen = list(iter(db))                         # two pages of _all_docs (1000 ids each)
    assert seen == sorted(ids + ["_design/app"])
    assert len(db) == 1204


@pytest.mark.parametrize("style", STYLES)
def test_delete_by_id_and_contains(style, db):
    db.save({"_id": "gone", "v": 1})
    assert call(style, db.contains, "gone") is True
    result = call(style, db.delete, "gone")          # two requests: HEAD for the rev, DELETE
    assert result["ok"] is True and result["rev"].startswith("2-")
    assert call(style, db.contains, "gone") is False
    with pytest.raises(NotFound):
        call(style, db.delete, "gone")


def test_dict_idioms_check_their_input_before_any_io():
    offline = Database(OFFLINE + "/nowhere", retries=0)
    for bad, error in (("", ValueError), ("_all_docs", ValueError), ("_design/", ValueError), (3, TypeError)):
        with pytest.raises(error):
            offline[bad]
        with pytest.raises(error):
            assert bad not in offline
        with pytest.raises(error):
            del offline[bad]
        with pytest.raises(error):
            offline[bad] = {}
        with pytest.raises(error):
            offline.delete(bad)
    with pytest.raises(TypeError):
        offline["a"] = ["not", "a", "dict"]
    with pytest.raises(ValueError):
        offline["a"] = {"_id": "b"}                # two different ids
    doc = {"x": float("nan")}
    with pytest.raises(ValueError):
        offline["a"] = doc
    assert doc == {"x": doc["x"]}                    # refused before it was touched: no _id set


def test_dict_idioms_refuse_to_block_inside_a_reactor(couch):
    db = couch.database("anything")
    idioms = {
        "'id in db'": lambda: "a" in db,
        "'db[id]'": lambda: db["a"],
        "'db[id] = doc'": lambda: db.__setitem__("a", {}),
        "'del db[id]'": lambda: db.__delitem__("a"),
        "'len(db)'": lambda: len(db),
        "'for id in db'": lambda: iter(db),
        "couch[name]": lambda: couch["anything"],
        "'name in couch'": lambda: "anything" in couch,
    }

    @relax
    def inside():
        messages = {}
        for name, idiom in idioms.items():
            with pytest.raises(RuntimeError) as info:
                idiom()
            messages[name] = str(info.value)
        return messages
        yield  # a generator

    for name, message in inside().items():
        assert name in message and "yield" in message, message

    async def in_asyncio():
        with pytest.raises(RuntimeError, match="yield"):
            db["a"]
        with pytest.raises(RuntimeError, match="couch.db"):
            couch["anything"]

    run_async(in_asyncio)


# -- dict idioms on a Couch ------------------------------------------------------
def test_couch_getitem_checks_that_the_database_exists(couch, dbname):
    assert dbname not in couch
    with pytest.raises(NotFound):
        couch[dbname]
    with pytest.raises(KeyError):
        couch[dbname]
    assert couch.database(dbname).name == dbname  # no I/O, no check
    couch.create(dbname)
    assert dbname in couch
    db = couch[dbname]
    assert isinstance(db, Database) and db.name == dbname
    with pytest.raises(ValueError):
        couch["Not A Valid Name"]                  # before any I/O
    with pytest.raises(ValueError):
        Couch(OFFLINE).database("Not A Valid Name")


# -- the welcome document --------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_couch_info_is_the_welcome_document(style, couch, server_kind):
    info = call(style, couch.info)
    assert isinstance(info, dict) and info["version"]
    assert ("couchdb" in info) == (server_kind == "couchdb")


# -- partitions ------------------------------------------------------------------
@pytest.fixture
def partitioned(couch: Couch, dbname: str) -> Database:
    try:
        db = couch.create(dbname, partitioned=True)
    except LACKING as exc:
        pytest.skip("the server refused a partitioned database: %s" % exc)
    if not db.info().get("props", {}).get("partitioned"):
        pytest.skip("the server created an unpartitioned database (it has no partitions)")
    db.save([{"_id": "red:%d" % n, "n": n} for n in range(1, 6)] + [
        {"_id": "blue:1", "n": 10},
        {"_id": "_design/app", "views": {"by_n": {"map": "function (doc) { emit(doc.n, null); }"}}},
    ], w=EVERY_COPY)
    return db


@pytest.mark.parametrize("style", STYLES)
def test_partition_queries_return_what_their_twins_return(style, partitioned):
    docs = call(style, partitioned.partition_all_docs, "red", limit=2)
    assert isinstance(docs, View) and [row.id for row in docs] == ["red:1", "red:2"]
    view = call(style, partitioned.partition_view, "red", "app/by_n", startkey=4)
    assert isinstance(view, View) and [(row.key, row.id) for row in view] == [(4, "red:4"), (5, "red:5")]
    found = call(style, partitioned.partition_find, "red", {"n": {"$gt": 3}}, fields=["_id"])
    assert isinstance(found, FindResult) and sorted(d["_id"] for d in found) == ["red:4", "red:5"]


@pytest.mark.parametrize("style", STYLES)
def test_partition_pagers_page_like_their_twins(style, partitioned):
    pager = partitioned.partition_iter_all_docs("red", page_size=2)
    assert isinstance(pager, Pager)
    assert [row.id for row in call(style, pager.next_page)] == ["red:1", "red:2"]
    views = partitioned.partition_iterview("red", "app/by_n", page_size=2, descending=True)
    assert [row.key for row in call(style, views.next_page)] == [5, 4]
    finds = partitioned.partition_iterfind("red", {"n": {"$gte": 1}}, page_size=2)
    assert isinstance(finds, FindPager) and len(call(style, finds.next_page)) == 2


def test_partition_pagers_iterate_blocking(partitioned):
    assert [row.id for row in partitioned.partition_iter_all_docs("red", page_size=2)] == \
        ["red:%d" % n for n in range(1, 6)]
    assert [row.key for row in partitioned.partition_iterview("red", "app/by_n", page_size=2)] == [1, 2, 3, 4, 5]
    assert sorted(d["n"] for d in partitioned.partition_iterfind("red", {"n": {"$gt": 0}}, page_size=2)) == \
        [1, 2, 3, 4, 5]


def test_partition_arguments_are_checked_before_io():
    offline = Database(OFFLINE + "/nowhere", retries=0)
    with pytest.raises(ValueError):
        offline.partition_iter_all_docs("_bad")
    with pytest.raises(TypeError):
        offline.partition_all_docs("red", bogus=1)        # unknown option, as all_docs() says
    with pytest.raises(TypeError):
        offline.partition_view("red", "app/by_n", descending="yes")
    with pytest.raises(TypeError):
        offline.partition_find("red", ["not", "a", "selector"])
    with pytest.raises(TypeError):
        offline.partition_find("red", {}, sort="n")
    with pytest.raises(ValueError):
        offline.partition_iterview("red", "app/by_n", page_size=0)
    with pytest.raises(ValueError):
        offline.partition_iterfind("red", {}, page_size=0)


# -- several queries in one request ----------------------------------------------
@pytest.fixture
def numbers(db: Database) -> Database:
    db.save([{"_id": "n%d" % n, "n": n} for n in range(1, 6)] + [
        {"_id": "_design/app", "views": {"by_n": {"map": "function (doc) { emit(doc.n, null); }"}}},
    ], w=EVERY_COPY)
    return db


@pytest.mark.parametrize("style", STYLES)
def test_view_queries_answer_each_query(style, numbers):
    try:
        views = call(style, numbers.view_queries, "app/by_n",
                     [{"limit": 2}, {"keys": [5, 3]}, {"startkey": 4, "descending": False}])
    except LACKING as exc:
        lacks(exc, "_view/.../queries")
    assert all(isinstance(v, View) for v in views)
    assert [[row.key for row in v] for v in views] == [[1, 2], [5, 3], [4, 5]]


@pytest.mark.parametrize("style", STYLES)
def test_all_docs_queries_answer_each_query(style, numbers):
    try:
        views = call(style, numbers.all_docs_queries, [{"keys": ["n2", "n1"]}, {"startkey": "n4", "limit": 1}])
    except LACKING as exc:
        lacks(exc, "_all_docs/queries")
    assert [[row.id for row in v] for v in views] == [["n2", "n1"], ["n4"]]


def test_multi_queries_are_checked_before_io():
    offline = Database(OFFLINE + "/nowhere", retries=0)
    for bad, error in (({"limit": 1}, TypeError), ([], ValueError), (["limit=1"], TypeError),
                       ([{"bogus": 1}], TypeError), ([{"limit": -1}], ValueError),
                       ([{"keys": [1], "key": 1}], ValueError), ([{"startkey": float("nan")}], ValueError)):
        with pytest.raises(error):
            offline.view_queries("app/by_n", bad)
    with pytest.raises(TypeError):
        offline.all_docs_queries([{"reduce": False}])    # _all_docs has no reduce
    with pytest.raises(ValueError):
        offline.view_queries("no-slash", [{}])


# -- the _db_updates feed --------------------------------------------------------
@pytest.fixture(scope="module")
def global_changes(couch_url: str) -> Iterator[None]:
    """CouchDB 3 keeps ``_db_updates`` in the ``_global_changes`` system database: made here if missing."""
    couch = Couch(couch_url)
    made = False
    try:
        couch.db_updates(limit=1)
    except NotFound as exc:
        if exc.reason != "Database does not exist.":
            lacks(exc, "_db_updates")
        couch.create("_global_changes")
        made = True
    except LACKING as exc:
        lacks(exc, "_db_updates")
    yield
    if made:
        couch.delete("_global_changes")


def db_updates_or_skip(couch: Couch) -> dict:
    try:
        return couch.db_updates()
    except LACKING as exc:
        lacks(exc, "_db_updates")
        raise


@pytest.mark.parametrize("style", STYLES)
def test_db_updates_feed_resumes_from_a_seq(style, couch, dbname, global_changes):
    since = db_updates_or_skip(couch)["last_seq"]
    couch.create(dbname)
    # longpoll and normal, from where we were: the creation is there (CouchDB records events in batches)
    polled = call(style, couch.db_updates, feed="longpoll", since=since, timeout=5000)
    assert polled["results"] and polled["last_seq"] != since

    def created() -> None:
        found = call(style, couch.db_updates, since=since)
        assert dbname in [e["db_name"] for e in found["results"]]

    eventually(created)

    def mine(event):
        return event["db_name"] == dbname

    # continuous, as an iterator, resumed from a seq: each style reads up to our database's creation
    if style == "blocking":
        with couch.follow_db_updates(since=since) as feed:
            event = next(e for e in feed if mine(e))
    elif style == "callback":
        import loop

        reactor = loop.get_reactor()
        got = []

        def listener(last_seq, events):
            got.extend(e for e in events if mine(e))
            if got:
                feed.stop()  # no listener call after this
                reactor.stop()

        feed = couch.db_updates(feed="continuous", since=since, latency=0, callback=listener)
        assert isinstance(feed, DbUpdatesFeed) and feed.running
        timer = reactor.call_later(30, reactor.stop)
        reactor.run()
        timer.cancel()
        feed.stop()
        event = got[0]
    elif style == "relax":
        @relax
        def read():
            with couch.follow_db_updates(since=since) as feed:
                while True:
                    e = yield feed.next()
                    if mine(e):
                        return e

        event = read()
    else:
        async def read():
            async with couch.follow_db_updates(since=since) as feed:
                async for e in feed:
                    if mine(e):
                        return e

        event = run_async(lambda: asyncio.wait_for(read(), 30))
    assert event["type"] == "created" and event["seq"]


def test_db_updates_feed_hears_a_new_database(couch, dbname, global_changes):
    db_updates_or_skip(couch)
    import loop

    reactor = loop.get_reactor()
    feed = couch.follow_db_updates(since="now", heartbeat=1000)

    heard = []

    def on_event(event, status):
        if event is None:  # the feed stopped (the test timed out): nothing more to wait for
            return
        heard.append(event)
        if event["db_name"] == dbname:
            reactor.stop()
        else:
            feed.next(callback=on_event)

    feed.next(callback=on_event)
    # create the database once the feed has had time to connect
    reactor.call_later(1.0, lambda: couch.create(dbname, callback=lambda data, status: None))
    timer = reactor.call_later(30, reactor.stop)
    reactor.run()
    timer.cancel()
    feed.stop()
    reactor.call_soon(reactor.stop)
    reactor.run()  # let the stopped feed's last callback (None) run now, not in a later test
    assert heard and heard[-1]["db_name"] == dbname and heard[-1]["type"] == "created"


def test_db_updates_arguments_are_checked_before_io():
    offline = Couch(OFFLINE, retries=0)
    with pytest.raises(ValueError):
        offline.db_updates(feed="eventsource-ish")
    with pytest.raises(TypeError):
        offline.db_updates(feed="continuous")           # blocking: needs a listener, or follow_db_updates()
    with pytest.raises(TypeError):
        offline.db_updates(since=object())
    with pytest.raises(TypeError):
        offline.db_updates(latency=1)                   # continuous only
    with pytest.raises(TypeError):
        offline.follow_db_updates(filter="app/f")       # _db_updates takes no filter
    with pytest.raises(TypeError):
        offline.follow_db_updates(since=3.5)
    with pytest.raises(ValueError):
        offline.follow_db_updates(limit=0)
    with pytest.raises(TypeError):
        offline.db_updates(feed="continuous", callback="not callable")
