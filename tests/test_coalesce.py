"""Coalescing (``Database(url, coalesce=True)``) and encoding each save once.

Concurrent ``get(id)`` calls of one reactor turn go out as one
``POST _bulk_get`` (ids without ``rev``, or with it), concurrent ``save(doc)``
calls as one ``_bulk_docs``, and every caller gets what its own request
would have given: the document, or NotFound / Conflict / Forbidden for that
document alone.  Requests are counted by wrapping the database's
``Server.request``.
"""
from __future__ import annotations

import asyncio
import math
import socket
from functools import partial
from typing import Any, Callable, List, Tuple

import pytest

import loop
from corduroy import (
    Conflict, ConflictResolution, ConnectionFailed, Couch, Database, Document, Forbidden, NotFound, relax,
)
from corduroy import coalesce as coalesce_module
from corduroy import codec
from tests.conftest import couch_request
from tests.consistency import EVERY_COPY, until_conflict
from tests.styles import STYLES, call, run_async

CONCURRENT = ("callback", "relax", "await")
#: The one request a turn's reads of current revisions become.
BULK_READ = "POST /_bulk_get"


# -- helpers ---------------------------------------------------------------------------------------
class Outcome:
    """What one call gave: its data, or its exception, and the status code."""

    def __init__(self, data: Any, exc: Any, code: Any) -> None:
        self.data, self.exc, self.code = data, exc, code

    def __repr__(self) -> str:
        return "<Outcome %r %r %r>" % (self.data, self.exc, self.code)


def concurrently(style: str, calls: List[Callable[..., Any]]) -> List[Outcome]:
    """Make every call (each takes ``callback=None``) in one reactor turn, in ``style``.

    In blocking style the calls are made one after the other (one per turn).
    Returns each call's :class:`Outcome`, in order.
    """
    if style == "blocking":
        out = []
        for fn in calls:
            try:
                data = fn()
            except Exception as exc:
                out.append(Outcome(None, exc, getattr(exc, "code", None)))
            else:
                assert not isinstance(data, loop.Operation)
                out.append(Outcome(data, None, None))
        return out
    if style == "callback":
        reactor = loop.get_reactor()
        results: List[Any] = [None] * len(calls)
        left = [len(calls)]

        def collector(i: int) -> Callable[[Any, loop.Status], None]:
            def done(data: Any, status: loop.Status) -> None:
                assert results[i] is None, "callback ran twice"
                results[i] = Outcome(data if status.ok else None, status.exception, status.code)
                left[0] -= 1
                if left[0] == 0:
                    reactor.stop()
            return done

        for i, fn in enumerate(calls):
            assert isinstance(fn(callback=collector(i)), loop.Operation)
        reactor.run()
        return results
    if style == "relax":
        @relax
        def body():  # type: ignore[no-untyped-def]
            ops = [fn() for fn in calls]
            assert all(isinstance(op, loop.Operation) for op in ops)
            try:
                yield ops
            except Exception:
                pass  # each op says what it got
            return [Outcome(op.data if op.status.ok else None, op.status.exception, op.status.code) for op in ops]

        return body()
    if style == "await":
        async def one(op: loop.Operation) -> Outcome:
            try:
                data = await op
            except Exception as exc:
                return Outcome(None, exc, op.status.code)
            return Outcome(data, None, op.status.code)

        async def body() -> List[Outcome]:
            ops = [fn() for fn in calls]
            return list(await asyncio.gather(*(one(op) for op in ops)))

        return run_async(body)
    raise ValueError(style)


def count_requests(db: Database) -> List[Tuple[str, str]]:
    """Record ``(method, path)`` of every request ``db``'s server sends from now on."""
    seen: List[Tuple[str, str]] = []
    original = db.server.request

    def counting(method: str, path: str = "", *args: Any, **kwargs: Any) -> Any:
        seen.append((method, path))
        return original(method, path, *args, **kwargs)

    db.server.request = counting  # type: ignore[method-assign]
    return seen


def paths(seen: List[Tuple[str, str]], db: Database) -> List[str]:
    """``"METHOD /suffix"`` for each request, the database's path cut off (``/_uuids`` kept whole)."""
    prefix = db._path
    return ["%s %s" % (m, p[len(prefix):] if p.startswith(prefix + "/") else p) for m, p in seen]


@pytest.fixture
def plain(couch_url, dbname) -> Database:
    """The test database, created, seeded, without coalescing (to compare against)."""
    db = Couch(couch_url).create(dbname)
    # In every copy: a cluster may serve a coalesced read from any copy (tests.consistency).
    db.save([{"_id": "doc%02d" % i, "n": i} for i in range(30)], w=EVERY_COPY)
    gone = {"_id": "gone", "n": -1}
    db.save(gone, w=EVERY_COPY)  # so that every copy takes the deletion below
    db.save(dict(gone, _deleted=True), w=EVERY_COPY)
    return db


@pytest.fixture
def cdb(couch_url, dbname, plain) -> Database:
    """The same database with ``coalesce=True``."""
    return Database(couch_url + "/" + dbname, coalesce=True)


# -- reads -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_concurrent_gets_are_one_request(style, cdb):
    ids = ["doc%02d" % i for i in range(20)]
    seen = count_requests(cdb)
    out = concurrently(style, [partial(cdb.get, doc_id) for doc_id in ids])
    for doc_id, outcome in zip(ids, out):
        assert outcome.exc is None, outcome
        assert isinstance(outcome.data, Document)
        assert outcome.data["_id"] == doc_id and outcome.data.n == int(doc_id[3:])
        assert outcome.data["_rev"].startswith("1-")
        if style != "blocking":
            assert outcome.code == 200
    if style == "blocking":  # one call per turn: nothing to coalesce
        assert paths(seen, cdb) == ["GET /" + doc_id for doc_id in ids]
    else:
        assert paths(seen, cdb) == [BULK_READ]


@pytest.mark.parametrize("style", STYLES)
def test_missing_and_deleted_documents_are_not_found_each(style, cdb, plain):
    out = concurrently(style, [partial(cdb.get, "doc01"), partial(cdb.get, "nope"), partial(cdb.get, "gone"),
                               partial(cdb.get, "doc02")])
    assert out[0].data["_id"] == "doc01" and out[3].data["_id"] == "doc02"
    for outcome, doc_id in ((out[1], "nope"), (out[2], "gone")):
        exc = outcome.exc
        assert isinstance(exc, NotFound), outcome
        assert exc.error == "not_found" and exc.code == 404
        assert exc.method == "GET" and exc.url == cdb.url + "/" + doc_id
        if style != "blocking":
            assert outcome.code == 404
    assert out[1].exc.reason == "missing"
    # Exactly what a database without coalescing answers: "deleted" on CouchDB
    # (pouchdb-server says "missing" for a deleted document too).
    with pytest.raises(NotFound) as alone:
        plain.get("gone")
    assert out[2].exc.reason == alone.value.reason


@pytest.mark.parametrize("style", CONCURRENT)
def test_a_document_in_conflict_is_read_alone_for_its_winning_revision(style, couch_url, cdb, plain, server_kind):
    # _bulk_get without rev answers every leaf; only the GET of the document says which one wins.
    doc = plain.get("doc12")
    status, _ = couch_request(couch_url, "POST", "/%s/_bulk_docs" % plain.name, {
        "new_edits": False, "docs": [{"_id": "doc12", "_rev": "1-" + "f" * 32, "n": "other branch"}]})
    assert status == 201
    alone = plain.get("doc12")
    seen = count_requests(cdb)
    out = concurrently(style, [partial(cdb.get, "doc12"), partial(cdb.get, "doc13")])
    assert out[0].exc is None and out[0].data == alone and out[0].data["_rev"] in (doc["_rev"], "1-" + "f" * 32)
    assert out[1].data["_id"] == "doc13"
    # pouchdb-server's _bulk_get answers only the winning leaf, so nothing is asked again there.
    assert paths(seen, cdb) == [BULK_READ] + (["GET /doc12"] if server_kind == "couchdb" else [])


@pytest.mark.parametrize("style", ["callback", "await"])
def test_reads_through_all_docs_give_the_same_answers(style, cdb, monkeypatch):
    monkeypatch.setattr(coalesce_module, "READS", "_all_docs")
    seen = count_requests(cdb)
    out = concurrently(style, [partial(cdb.get, "doc01"), partial(cdb.get, "nope"), partial(cdb.get, "gone")])
    assert out[0].data["_id"] == "doc01" and isinstance(out[0].data, Document)
    assert [(o.exc.code, o.exc.reason) for o in out[1:]] == [(404, "missing"), (404, "deleted")]
    assert paths(seen, cdb) == ["POST /_all_docs"]


@pytest.mark.parametrize("style", CONCURRENT)
def test_the_same_id_twice_is_fetched_once_and_each_caller_gets_its_own_copy(style, cdb):
    seen = count_requests(cdb)
    out = concurrently(style, [partial(cdb.get, "doc03"), partial(cdb.get, "doc04"), partial(cdb.get, "doc03")])
    assert [o.data["_id"] for o in out] == ["doc03", "doc04", "doc03"]
    assert out[0].data == out[2].data and out[0].data is not out[2].data
    assert paths(seen, cdb) == [BULK_READ]


@pytest.mark.parametrize("style", STYLES)
def test_gets_of_a_revision_are_one_bulk_get(style, cdb, plain):
    doc = plain.get("doc05")
    first_rev = doc["_rev"]
    doc["n"] = 500
    plain.save(doc)
    other = plain.get("doc06")
    seen = count_requests(cdb)
    out = concurrently(style, [partial(cdb.get, "doc05", rev=first_rev), partial(cdb.get, "doc06", rev=other["_rev"]),
                               partial(cdb.get, "doc05", rev=doc["_rev"])])
    assert [o.exc for o in out] == [None, None, None]
    assert out[0].data["_rev"] == first_rev and out[0].data.n == 5
    assert out[1].data == other
    assert out[2].data.n == 500
    assert all("_revisions" not in o.data for o in out)  # as a GET with rev= alone
    if style == "blocking":
        assert [p.split("?")[0] for p in paths(seen, cdb)] == ["GET /doc05", "GET /doc06", "GET /doc05"]
    else:
        assert paths(seen, cdb) == ["POST /_bulk_get"]


@pytest.mark.parametrize("style", STYLES)
def test_a_revision_that_does_not_exist_is_not_found(style, cdb):
    out = concurrently(style, [partial(cdb.get, "doc07", rev="1-00000000000000000000000000000000"),
                               partial(cdb.get, "nope", rev="1-00000000000000000000000000000000"),
                               partial(cdb.get, "doc08")])
    for outcome in out[:2]:
        assert isinstance(outcome.exc, NotFound) and outcome.exc.error == "not_found", outcome
        assert outcome.exc.url.endswith("?rev=1-00000000000000000000000000000000")
    assert out[2].data["_id"] == "doc08"


@pytest.mark.parametrize("style", CONCURRENT)
def test_a_batch_of_one_is_the_plain_request(style, cdb):
    seen = count_requests(cdb)
    out = concurrently(style, [partial(cdb.get, "doc09")])
    assert out[0].data["_id"] == "doc09"
    assert paths(seen, cdb) == ["GET /doc09"]


@pytest.mark.parametrize("style", CONCURRENT)
def test_batches_are_capped(style, cdb, monkeypatch):
    monkeypatch.setattr(coalesce_module, "MAX_BATCH", 8)
    ids = ["doc%02d" % i for i in range(20)]
    seen = count_requests(cdb)
    out = concurrently(style, [partial(cdb.get, doc_id) for doc_id in ids])
    assert [o.data["_id"] for o in out] == ids
    assert paths(seen, cdb) == [BULK_READ] * 3  # 8 + 8 + 4


@pytest.mark.parametrize("style", CONCURRENT)
def test_options_and_local_ids_are_never_coalesced(style, cdb):
    cdb.save({"_id": "_local/mark", "at": 1})
    seen = count_requests(cdb)
    out = concurrently(style, [partial(cdb.get, "_local/mark"), partial(cdb.get, "doc10", revs=True),
                               partial(cdb.get, "doc11")])
    assert out[0].data["at"] == 1
    assert out[1].data["_revisions"]["start"] == 1
    assert out[2].data["_id"] == "doc11"
    assert sorted(p.split("?")[0] for p in paths(seen, cdb)) == ["GET /_local/mark", "GET /doc10", "GET /doc11"]


@pytest.mark.parametrize("style", CONCURRENT)
def test_a_refused_batch_is_asked_again_document_by_document(style, couch_url, dbname):
    # No such database: each GET alone answers 404 "Database does not exist" (or no_db_file).
    cdb = Database(couch_url + "/" + dbname, coalesce=True)
    plain = Database(couch_url + "/" + dbname)
    with pytest.raises(NotFound) as alone:
        plain.get("a")
    seen = count_requests(cdb)
    out = concurrently(style, [partial(cdb.get, "a"), partial(cdb.get, "b")])
    for outcome, doc_id in zip(out, "ab"):
        assert isinstance(outcome.exc, NotFound)
        assert outcome.exc.reason == alone.value.reason and outcome.exc.url == cdb.url + "/" + doc_id
    assert paths(seen, cdb) == [BULK_READ, "GET /a", "GET /b"]


@pytest.mark.parametrize("style", CONCURRENT)
def test_a_transport_failure_reaches_every_caller_naming_its_document(style):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cdb = Database("http://127.0.0.1:%d/nowhere" % port, coalesce=True, connect_timeout=5)
    out = concurrently(style, [partial(cdb.get, "a"), partial(cdb.get, "b")])
    for outcome, doc_id in zip(out, "ab"):
        assert isinstance(outcome.exc, ConnectionFailed), outcome
        assert outcome.exc.method == "GET" and outcome.exc.url.endswith("/nowhere/" + doc_id)
        assert outcome.code is None


def test_coalescing_is_off_by_default(plain):
    seen = count_requests(plain)
    out = concurrently("callback", [partial(plain.get, "doc01"), partial(plain.get, "doc02")])
    assert [o.data["_id"] for o in out] == ["doc01", "doc02"]
    assert sorted(paths(seen, plain)) == ["GET /doc01", "GET /doc02"]


@pytest.mark.parametrize("style", STYLES)
def test_couch_db_can_coalesce(style, couch_url, plain, dbname):
    cdb = call(style, Couch(couch_url).db, dbname, coalesce=True)
    assert cdb.coalesce is True
    seen = count_requests(cdb)
    out = concurrently("callback", [partial(cdb.get, "doc01"), partial(cdb.get, "doc02")])
    assert [o.data["_id"] for o in out] == ["doc01", "doc02"]
    assert paths(seen, cdb) == [BULK_READ]


# -- writes ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_concurrent_saves_are_one_bulk_docs(style, cdb, plain):
    cdb.server.uuid_cache.extend("%032x" % (0xabc0 + i) for i in range(2))  # no _uuids request needed
    docs = [{"_id": "new%02d" % i, "v": i} for i in range(10)] + [{"v": "anon1"}, {"v": "anon2"}]
    seen = count_requests(cdb)
    out = concurrently(style, [partial(cdb.save, doc) for doc in docs])
    for doc, outcome in zip(docs, out):
        assert outcome.exc is None, outcome
        assert isinstance(outcome.data, ConflictResolution) and outcome.data.ok
        assert outcome.data.resolved == {doc["_id"]: doc}
        assert doc["_rev"].startswith("1-")
        if style != "blocking":
            assert outcome.code == 201
    assert {docs[10]["_id"], docs[11]["_id"]} == {"%032x" % 0xabc0, "%032x" % 0xabc1}
    assert plain.get(docs[10]["_id"])["v"] == "anon1"
    assert plain.get("new07")["v"] == 7
    if style == "blocking":
        assert len(seen) == 12 and {p.split()[0] for p in paths(seen, cdb)} == {"PUT"}
    else:
        assert paths(seen, cdb) == ["POST /_bulk_docs"]


@pytest.mark.parametrize("style", STYLES)
def test_a_conflict_is_raised_for_that_document_only(style, cdb, plain):
    stale = {"_id": "doc12", "n": "stale"}  # no _rev: the server's doc12 wins
    fresh = plain.get("doc13")
    fresh["n"] = "updated"
    new = {"_id": "brand-new"}
    out = concurrently(style, [partial(cdb.save, stale), partial(cdb.save, fresh), partial(cdb.save, new)])
    assert isinstance(out[0].exc, Conflict), out[0]
    assert out[0].exc.code == 409 and out[0].exc.method == "PUT" and out[0].exc.url == cdb.url + "/doc12"
    assert "_rev" not in stale
    assert out[1].exc is None and fresh["_rev"].startswith("2-")
    assert out[2].exc is None and new["_rev"].startswith("1-")
    if style != "blocking":
        assert [o.code for o in out] == [409, 201, 201]
    assert plain.get("doc12").n == 12 and plain.get("doc13").n == "updated"


@pytest.mark.parametrize("style", STYLES)
def test_two_saves_of_one_id_in_a_turn_behave_as_if_sent_in_order(style, cdb, plain):
    def turn(n):
        doc = {"_id": "twice%d" % n, "v": 1}
        seen = count_requests(cdb)
        # The same dict twice: its body is taken at call time, so the second carries no _rev either.
        out = concurrently(style, [partial(cdb.save, doc), partial(cdb.save, {"_id": "other%d" % n}),
                                   partial(cdb.save, doc)])
        assert out[0].exc is None and out[1].exc is None
        return doc, seen, out

    if style == "blocking":  # one after the other: the second save is an update
        doc, _, out = turn(0)
        assert out[2].exc is None and doc["_rev"].startswith("2-")
        return

    def attempt(n):
        doc, seen, out = turn(n)
        # Never both in one _bulk_docs: the second goes after the first answered.
        assert paths(seen, cdb) == ["POST /_bulk_docs", "PUT /twice%d" % n]
        if out[2].exc is None:
            # Accepted by a copy the first write had not reached yet (a cluster: tests.consistency);
            # the same body makes the same revision there.
            assert doc["_rev"].startswith("1-") and plain.get(doc["_id"])["_rev"] == doc["_rev"]
            return out[2]
        assert isinstance(out[2].exc, Conflict)
        assert doc["_rev"].startswith("1-") and plain.get(doc["_id"])["_rev"] == doc["_rev"]
        raise out[2].exc

    until_conflict(attempt)


@pytest.mark.parametrize("style", CONCURRENT)
def test_one_new_dict_saved_twice_in_a_turn_behaves_as_without_coalescing(style, cdb, plain):
    def twice(db, base):
        db.server.uuid_cache[:] = ["%032x" % (base + i) for i in range(2)]
        doc = {"v": 1}
        out = concurrently(style, [partial(db.save, doc), partial(db.save, doc)])
        # The first takes an id (set at once); the second sends the same id with no _rev: one
        # of them conflicts (without coalescing, whichever PUT the server sees second).
        assert doc["_id"] == "%032x" % base and db.server.uuid_cache == ["%032x" % (base + 1)]
        # On a cluster both may be accepted (202), when a copy had not yet seen the other write
        # (tests.consistency): one revision all the same, as the same body makes the same revision.
        assert plain.get(doc["_id"])["_rev"] == doc["_rev"]
        return [type(o.exc) for o in out]

    without = twice(plain, 0xfeed0)
    assert sorted(without, key=str) in (sorted([type(None), Conflict], key=str), [type(None)] * 2)

    def coalesced(n):
        outcomes = twice(cdb, 0xfeed0 + 100 + 10 * n)
        if outcomes == [type(None), type(None)]:
            return outcomes  # the second PUT was accepted by a lagging copy: try again for a 409
        assert outcomes == [type(None), Conflict]  # coalesced: in call order, always
        raise Conflict()

    until_conflict(coalesced)


@pytest.mark.parametrize("style", STYLES)
def test_a_rejected_document_gets_its_own_exception(style, cdb, plain):
    plain.save({"_id": "_design/guard", "validate_doc_update":
                "function (doc) { if (doc.bad) { throw({forbidden: 'no bad docs'}); } }"},
               w=EVERY_COPY)  # each copy checks the writes it gets with its own design docs
    probe = {"_id": "probe", "bad": True}
    try:
        plain.save(probe)
    except Forbidden:
        pass
    else:
        pytest.skip("the server does not run validate_doc_update functions")
    good, bad = {"_id": "good"}, {"_id": "bad", "bad": True}
    out = concurrently(style, [partial(cdb.save, good), partial(cdb.save, bad)])
    assert out[0].exc is None and good["_rev"].startswith("1-")
    assert isinstance(out[1].exc, Forbidden), out[1]
    assert out[1].exc.error == "forbidden" and out[1].exc.reason == "no bad docs" and out[1].exc.code == 403
    assert "_rev" not in bad


@pytest.mark.parametrize("style", CONCURRENT)
def test_a_mixed_turn_is_one_request_per_kind(style, cdb, plain, server_kind):
    stale = {"_id": "doc14", "n": "stale"}
    seen = count_requests(cdb)
    out = concurrently(style, [partial(cdb.get, "doc15"), partial(cdb.save, {"_id": "m1"}),
                               partial(cdb.get, "nope"), partial(cdb.save, stale), partial(cdb.get, "doc16"),
                               partial(cdb.save, {"_id": "m2"})])
    assert out[0].data["_id"] == "doc15" and out[4].data["_id"] == "doc16"
    assert isinstance(out[2].exc, NotFound)
    assert out[1].data.ok and out[5].data.ok
    assert isinstance(out[3].exc, Conflict)
    # pouchdb-server's _bulk_get answers {} for a missing id: that one is asked alone.
    extra = ["GET /nope"] if server_kind == "pouchdb" else []
    assert sorted(paths(seen, cdb)) == sorted([BULK_READ, "POST /_bulk_docs"] + extra)


def test_save_options_and_merges_are_never_coalesced(cdb, plain):
    seen = count_requests(cdb)
    stale = {"_id": "doc17", "n": "mine"}
    out = concurrently("callback", [partial(cdb.save, stale, force=True), partial(cdb.save, {"_id": "b1"}, batch="ok"),
                                    partial(cdb.save, {"_id": "_local/x"})])
    assert [o.exc for o in out] == [None, None, None]
    assert plain.get("doc17").n == "mine"
    # Each went out as its own PUT (force=True then resolves its conflict as usual).
    puts = [p for p in paths(seen, cdb) if p.startswith("PUT ")]
    assert sorted(puts) == ["PUT /_local/x", "PUT /b1", "PUT /doc17"]


def test_a_save_cancelled_before_the_turn_ends_is_not_sent(cdb, plain):
    reactor = loop.get_reactor()
    seen = count_requests(cdb)
    got: List[Any] = []
    kept = cdb.save({"_id": "kept"}, callback=lambda d, s: (got.append(s), reactor.stop()))
    dropped = cdb.save({"_id": "dropped"}, callback=lambda d, s: got.append(s))
    assert dropped.cancel() is True
    reactor.run()
    assert kept.status.ok and isinstance(dropped.status.exception, loop.Cancelled)
    assert paths(seen, cdb) == ["PUT /kept"]  # a batch of one
    with pytest.raises(NotFound):
        plain.get("dropped")


@pytest.mark.parametrize("bad", [{"_id": "n", "v": math.nan}, {"_id": "s", "v": {1, 2}}])
def test_a_coalesced_save_that_cannot_be_encoded_raises_at_once(cdb, bad):
    seen = count_requests(cdb)
    with pytest.raises((TypeError, ValueError)) as info:
        cdb.save(bad, callback=lambda d, s: None)
    assert "cannot encode document %r" % bad["_id"] in str(info.value)
    assert seen == []


# -- encoding each save once -----------------------------------------------------------------------
@pytest.fixture
def encodes(monkeypatch) -> List[Any]:
    """Every object ``codec.encode`` is asked to encode."""
    calls: List[Any] = []
    original = codec.encode

    def counting(obj: Any, what: str = "value") -> bytes:
        calls.append(obj)
        return original(obj, what)

    monkeypatch.setattr(codec, "encode", counting)
    return calls


@pytest.mark.parametrize("style", STYLES)
def test_a_list_save_encodes_its_body_once(style, plain, encodes):
    docs = [{"_id": "bulk%03d" % i, "v": i} for i in range(50)]
    outcome = call(style, plain.save, docs)
    assert len(outcome.resolved) == 50 and all(doc["_rev"].startswith("1-") for doc in docs)
    bodies = [obj for obj in encodes if isinstance(obj, dict) and "docs" in obj]
    assert len(bodies) == 1 and len(encodes) == 1, "the docs were encoded %d times" % len(encodes)
    assert plain.get("bulk049")["v"] == 49


@pytest.mark.parametrize("style", STYLES)
def test_a_list_save_of_new_docs_encodes_each_doc_once(style, plain, encodes):
    docs = [{"v": i} for i in range(20)] + [{"_id": "named", "v": "x"}, {}]
    outcome = call(style, plain.save, docs)
    assert outcome.ok and len({doc["_id"] for doc in docs}) == 22
    doc_encodes = [obj for obj in encodes if isinstance(obj, dict)]
    assert len(doc_encodes) == 22, "each doc once, not %d encodes" % len(doc_encodes)
    assert plain.get(docs[3]["_id"])["v"] == 3 and plain.get(docs[21]["_id"])["_id"] == docs[21]["_id"]


@pytest.mark.parametrize("style", STYLES)
def test_a_single_save_encodes_once(style, plain, encodes):
    doc = {"_id": "single", "v": 1}
    call(style, plain.save, doc)
    assert len([obj for obj in encodes if obj is doc]) == 1
    doc["v"] = 2
    call(style, plain.save, doc)
    assert plain.get("single").v == 2


def test_a_bad_doc_in_a_list_is_named_and_nothing_is_sent(plain):
    seen = count_requests(plain)
    with pytest.raises(ValueError) as info:
        plain.save([{"_id": "fine"}, {"_id": "culprit", "v": math.inf}, {"_id": "after"}])
    assert "cannot encode document 'culprit'" in str(info.value)
    with pytest.raises(TypeError) as info2:
        plain.save([{"v": 1}, {"v": object()}])  # new docs: no uuid is taken either
    assert "cannot encode document '(new)'" in str(info2.value)
    assert seen == []


def test_a_single_save_conflict_reports_409(plain):
    with pytest.raises(Conflict) as info:
        plain.save({"_id": "doc18"})
    assert info.value.code == 409
    op = plain.save({"_id": "doc18"}, callback=lambda d, s: loop.get_reactor().stop())
    loop.get_reactor().run()
    assert op.status.code == 409 and op.status.error is Conflict


# -- the benchmark harness has the variant ---------------------------------------------------------
def test_the_harness_runs_a_coalescing_variant(tmp_path):
    import json
    import os

    from benchmarks import cli
    from benchmarks.clients import client_names

    assert "corduroy-coalesce" in client_names()
    assert "corduroy-h2" not in client_names()  # needs an HTTP/2 server: only when named
    code = cli.main(["--target", "canned", "--quick", "--workloads", "W1", "--clients",
                     "corduroy-callback,corduroy-coalesce", "--requests", "80", "--concurrency", "8",
                     "--out", str(tmp_path), "--no-chart"])
    assert code == 0
    [name] = [n for n in os.listdir(tmp_path) if n.endswith(".json")]
    with open(os.path.join(tmp_path, name)) as f:
        results = json.load(f)["results"]
    by_client = {r["client"]: r for r in results}
    assert by_client["corduroy-coalesce"]["status"] == "ok", by_client["corduroy-coalesce"]
    assert by_client["corduroy-coalesce"]["units"] == 80 and by_client["corduroy-coalesce"]["errors"] == 0
