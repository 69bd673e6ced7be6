"""Database document CRUD, in all four calling styles."""
from __future__ import annotations

import math

import pytest

from corduroy import Conflict, ConflictResolution, Couch, Database, Document, NotFound
from tests.consistency import EVERY_COPY, eventually_equal, until_conflict
from tests.styles import STYLES, call


@pytest.fixture
def db(couch_url, dbname):
    return Couch(couch_url).create(dbname)


@pytest.mark.parametrize("style", STYLES)
def test_exists(style, couch_url, dbname):
    db = Database(couch_url + "/" + dbname)
    assert call(style, db.exists) is False
    Couch(couch_url).create(dbname)
    assert call(style, db.exists) is True


@pytest.mark.parametrize("style", STYLES)
def test_info(style, db):
    db.save({"_id": "one"}, w=EVERY_COPY)  # counted in every copy (a cluster: tests.consistency)
    info = call(style, db.info)
    assert info.db_name == db.name and info["doc_count"] == 1


@pytest.mark.parametrize("style", STYLES)
def test_info_of_a_missing_database_is_not_found(style, couch_url, dbname):
    with pytest.raises(NotFound) as info:
        call(style, Database(couch_url + "/" + dbname).info)
    assert info.value.code == 404 and dbname in info.value.url


@pytest.mark.parametrize("style", STYLES)
def test_save_then_get_round_trip(style, db):
    doc = {"_id": "lackey-129", "first": "Oliver", "last": "Reeder"}
    result = call(style, db.save, doc)
    assert isinstance(result, ConflictResolution)
    assert repr(result) == "<Success: 1 doc updated>"
    assert doc["_rev"].startswith("1-")  # updated in place
    assert result.resolved == {"lackey-129": doc}
    fetched = call(style, db.get, "lackey-129")
    assert isinstance(fetched, Document)
    assert fetched.first == "Oliver" and fetched._rev == doc["_rev"]


@pytest.mark.parametrize("style", STYLES)
def test_get_missing_raises_not_found(style, db):
    with pytest.raises(NotFound) as info:
        call(style, db.get, "nobody")
    assert info.value.error == "not_found"


@pytest.mark.parametrize("style", STYLES)
def test_update_increments_the_revision(style, db):
    doc = {"_id": "ollie", "office": "Richmond Terrace"}
    db.save(doc)
    doc = db.get("ollie")
    del doc.office
    doc.education = "Oxbridge"
    call(style, db.save, doc)
    assert doc._rev.startswith("2-")
    assert "[2]" in repr(doc) and "office" not in db.get("ollie")


@pytest.mark.parametrize("style", STYLES)
def test_save_without_id_takes_one_from_the_uuid_cache(style, db):
    anon = {"first": "Julius"}
    call(style, db.save, anon)
    assert anon["_id"] and anon["_rev"].startswith("1-")
    # The cache was refilled in a batch: the next save needs no _uuids request.
    cached = len(db.server.uuid_cache)
    assert cached >= 50
    other = {"first": "Nicola"}
    call(style, db.save, other)
    assert len(db.server.uuid_cache) == cached - 1
    assert other["_id"] != anon["_id"]


@pytest.mark.parametrize("style", STYLES)
def test_single_document_conflict_raises(style, db):
    def attempt(n):
        db.save({"_id": "c%d" % n})
        return call(style, db.save, {"_id": "c%d" % n, "stale": True})  # accepted on a cluster? (tests.consistency)

    assert until_conflict(attempt).code == 409


@pytest.mark.parametrize("style", STYLES)
def test_batch_save_reports_conflicts_per_document(style, db):
    def attempt(n):
        docs = [{"_id": "first-%d" % n, "n": 1}, {"_id": "second-%d" % n, "n": 2}]
        result = call(style, db.save, docs)
        assert repr(result) == "<Success: 2 docs updated>"
        assert all(d["_rev"].startswith("1-") for d in docs)
        del docs[1]["_rev"]
        result = call(style, db.save, docs)
        assert docs[0]["_rev"].startswith("2-")
        if result.pending:
            assert repr(result) == "<Conflict: second-%d>" % n
            assert list(result.pending) == ["second-%d" % n] and list(result.resolved) == ["first-%d" % n]
            raise Conflict()
        return result  # accepted by a lagging copy of a cluster (tests.consistency): try again

    until_conflict(attempt)


@pytest.mark.parametrize("style", STYLES)
def test_save_with_w_returns_once_every_copy_has_the_write(style, db):
    docs = [{"_id": "w%d" % i} for i in range(5)]
    result = call(style, db.save, docs, w=EVERY_COPY)  # a single node has one copy: 202, written all the same
    assert result.ok and all(doc["_rev"].startswith("1-") for doc in docs)
    single = {"_id": "single"}
    assert call(style, db.save, single, w=EVERY_COPY).ok and single["_rev"].startswith("1-")
    # Every copy of every shard has them: reads of any copy see them at once.
    assert [row.id for row in db.all_docs()] == ["single", "w0", "w1", "w2", "w3", "w4"]
    assert sorted(row.id for row in db.changes().results) == ["single", "w0", "w1", "w2", "w3", "w4"]


@pytest.mark.parametrize("style", STYLES)
def test_batch_save_with_deleted_docs_deletes_them(style, db):
    docs = [{"_id": "claire"}, {"_id": "geoff"}, {"_id": "ben"}]
    db.save(docs, w=EVERY_COPY)  # get([ids]) reads _all_docs, which a cluster serves from any copy
    claire, geoff, ben = db.get(["claire", "geoff", "ben"])
    claire.standing = "not standing"
    geoff._deleted = True
    ben.newsnight = {"paxman": 1, "swain": 0}
    result = call(style, db.save, [claire, geoff, ben])
    assert result.ok
    eventually_equal(lambda: db.get(["claire", "geoff", "ben"])[1], None)
    with pytest.raises(NotFound):
        db.get("geoff")


@pytest.mark.parametrize("style", STYLES)
def test_get_many_keeps_order_with_none_for_missing(style, db):
    db.save([{"_id": "a", "v": 1}, {"_id": "b", "v": 2}], w=EVERY_COPY)  # read back through _all_docs
    docs = call(style, db.get, ["b", "missing", "a"])
    assert [d and d.v for d in docs] == [2, None, 1]
    assert call(style, db.get, []) == []


@pytest.mark.parametrize("style", STYLES)
def test_delete(style, db):
    doc = {"_id": "gone"}
    db.save(doc)
    result = call(style, db.delete, doc)
    assert result["ok"] is True and doc["_rev"].startswith("2-")
    with pytest.raises(NotFound):
        db.get("gone")


@pytest.mark.parametrize("style", STYLES)
def test_delete_with_a_stale_rev_conflicts(style, db):
    def attempt(n):
        doc = {"_id": "x%d" % n}
        db.save(doc)
        stale = dict(doc)
        db.save(doc)
        return call(style, db.delete, stale)  # accepted by a lagging copy of a cluster (tests.consistency)

    until_conflict(attempt)


@pytest.mark.parametrize("style", STYLES)
def test_delete_missing_is_not_found(style, db):
    with pytest.raises(NotFound):
        call(style, db.delete, {"_id": "never", "_rev": "1-00000000000000000000000000000000"})


@pytest.mark.parametrize("doc_id", [
    "a/b", "what?x=1", "frag#ment", "100%", "with space", "ünïcødé ✓", "../_config", "../../_all_dbs",
    "a+b&c=d", "%2F", "trailing/", "\\back",
])
def test_awkward_ids_round_trip_exactly(db, doc_id):
    doc = {"_id": doc_id, "v": doc_id}
    db.save(doc)
    fetched = db.get(doc_id)
    assert fetched["_id"] == doc_id and fetched.v == doc_id
    eventually_equal(lambda: [doc["_id"] for doc in db.get([doc_id]) if doc], [doc_id])
    db.delete(fetched)
    with pytest.raises(NotFound):
        db.get(doc_id)
    # Nothing escaped into another path: the database holds no other document.
    eventually_equal(lambda: db.info()["doc_count"], 0)


def test_design_and_local_ids_keep_their_prefix(db):
    ddoc = {"_id": "_design/app", "views": {"all": {"map": "function(doc){emit(doc._id, null)}"}}}
    db.save(ddoc)
    assert db.get("_design/app")["views"]["all"]["map"].startswith("function")
    local = {"_id": "_local/checkpoint", "seq": 7}
    db.save(local)
    assert db.get("_local/checkpoint")["seq"] == 7
    # _local docs are not replicated and not listed; the design doc is a real doc.
    eventually_equal(lambda: db.info()["doc_count"], 1)


def _contains_itself():
    doc = {"_id": "loop", "parts": []}
    doc["parts"].append(doc)
    return doc


@pytest.mark.parametrize("bad, message", [
    ({"_id": "s", "tags": {1, 2}}, "set"),
    ({"_id": "o", "thing": object()}, "object"),
    ({"_id": "n", "value": math.nan}, "NaN"),
    ({"_id": "i", "value": math.inf}, "Infinity"),
    (_contains_itself(), "refers to itself"),
])
def test_unserialisable_documents_raise_before_anything_is_sent(db, bad, message):
    good = {"_id": "good"}
    with pytest.raises((TypeError, ValueError)) as info:
        db.save([good, bad])
    assert "cannot encode" in str(info.value) and message in str(info.value)
    with pytest.raises((TypeError, ValueError)):
        db.save(bad)
    # Nothing was half-written: the good doc of the batch is not there, no id was taken.
    assert db.get(["good"]) == [None]
    assert "_rev" not in good


def test_document_attribute_access_and_repr():
    doc = Document({"_id": "lackey-129", "_rev": "1-abc", "first": "Oliver", "last": "Reeder"})
    assert doc.first == "Oliver"
    doc.office = "Richmond Terrace"
    assert doc["office"] == "Richmond Terrace"
    del doc.office
    assert "office" not in doc
    with pytest.raises(AttributeError):
        doc.nothing  # noqa: B018 - the attribute access is what raises
    with pytest.raises(AttributeError):
        del doc.nothing
    assert repr(doc) == '<Document lackey-129[1] {first:"Oliver", last:"Reeder"}>'
    assert repr(Document(a=1)) == "<Document {a:1}>"
    assert hasattr(doc, "first") and not hasattr(doc, "second")


def test_batch_results_go_back_to_the_right_documents(db):
    # pouchdb-server answers design documents first; every doc must still get its own _rev.
    ids = ["plain-1", "_design/d", "plain-2"]
    docs = [{"_id": "plain-1", "n": 1}, {"_id": "_design/d", "views": {}}, {"_id": "plain-2", "n": 2}]
    result = db.save(docs)
    assert [doc["_id"] for doc in docs] == ids
    assert sorted(result.resolved) == sorted(ids)
    for doc in docs:
        assert doc["_rev"] == db.get(doc["_id"])["_rev"]
