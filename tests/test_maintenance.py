"""Maintenance and low-level document endpoints, in every calling style.

Endpoints pouchdb-server lacks (``_purge``, ``_missing_revs``, design document
compaction, partitions) are tested all the same and skipped only when the
server answers that it lacks them.
"""
from __future__ import annotations

import pytest

from corduroy import Conflict, ConnectionFailed, Couch, Database, NotFound, ServerError
from corduroy.maintenance import copy_destination
from tests.conftest import couch_request
from tests.consistency import EVERY_COPY, eventually, eventually_equal
from tests.styles import STYLES, call
from tests.lacking import LACKING, lacks

@pytest.fixture
def db(couch_url: str, dbname: str) -> Database:
    return Couch(couch_url).create(dbname)


def make_conflict(db: Database, doc_id: str = "contested") -> list:
    """A document with two extra conflicting leaves (written with new_edits=False); returns all leaf revs."""
    doc = {"_id": doc_id, "side": "original"}
    db.save(doc, w=EVERY_COPY)
    others = [
        {"_id": doc_id, "_rev": "1-" + "a" * 32, "side": "left"},
        {"_id": doc_id, "_rev": "1-" + "f" * 32, "side": "right"},
    ]
    # In every copy: a cluster reads ?conflicts=true from a quorum, which may hold a copy without them.
    db.save(others, new_edits=False, w=EVERY_COPY)
    return [doc["_rev"]] + [d["_rev"] for d in others]


# -- maintenance ------------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_compact_cleanup_commit_answer_ok(style, db):
    db.save({"_id": "a"})
    assert call(style, db.compact)["ok"] is True
    assert call(style, db.cleanup)["ok"] is True
    assert call(style, db.commit)["ok"] is True


@pytest.mark.parametrize("style", STYLES)
def test_compact_design_document(style, db):
    db.save({"_id": "_design/app", "views": {"all": {"map": "function (doc) { emit(doc._id, null); }"}}})
    try:
        result = call(style, db.compact, "app")
    except LACKING as exc:
        lacks(exc, "_compact/app")
    assert result["ok"] is True
    assert call(style, db.compact, "_design/app")["ok"] is True


@pytest.mark.parametrize("style", STYLES)
def test_info_of_database_and_design_document(style, db):
    db.save({"_id": "a"}, w=EVERY_COPY)  # counted in every copy (tests.consistency)
    info = call(style, db.info)
    assert info["db_name"] == db.name and info["doc_count"] == 1
    # Every copy answers for its shard with its own design docs (tests.consistency).
    db.save({"_id": "_design/app", "views": {"all": {"map": "function (doc) { emit(doc._id, null); }"}}},
            w=EVERY_COPY)
    assert "view_index" in call(style, db.info, "app")
    assert "view_index" in call(style, db.info, ddoc="_design/app")


@pytest.mark.parametrize("style", STYLES)
def test_security_get_and_set(style, db):
    assert isinstance(call(style, db.security), dict)
    wanted = {"admins": {"names": [], "roles": ["_admin"]},
              "members": {"names": [], "roles": ["_admin", "auditors"]}}
    assert call(style, db.security, wanted) == wanted
    # A cluster answers the PUT once a majority of the shard copies has it;
    # a read may meet a lagging copy for a moment (tests.consistency).
    eventually_equal(lambda: call(style, db.security), wanted)


def test_security_refuses_a_non_dict_before_io():
    with pytest.raises(TypeError):
        Database("http://127.0.0.1:9/nowhere").security(["admins"])


# -- COPY -------------------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_copy_to_a_new_id(style, db):
    db.save({"_id": "original", "n": 1})
    result = call(style, db.copy, "original", "duplicate")
    assert result["id"] == "duplicate"
    copied = db.get("duplicate")
    assert copied["_rev"] == result["rev"] and copied["n"] == 1


@pytest.mark.parametrize("style", STYLES)
def test_copy_over_an_existing_document(style, db):
    db.save({"_id": "source", "n": "new"})
    target = {"_id": "target", "n": "old"}
    db.save(target, w=EVERY_COPY)  # every copy refuses the COPY below (tests.consistency)
    with pytest.raises(Conflict):
        call(style, db.copy, "source", "target")
    assert db.get("target")["n"] == "old"
    result = call(style, db.copy, {"_id": "source"}, {"_id": "target", "_rev": target["_rev"]})
    now = db.get("target")
    assert now["n"] == "new" and now["_rev"] == result["rev"] != target["_rev"]


@pytest.mark.parametrize("style", STYLES)
def test_copy_of_a_given_source_revision(style, db):
    doc = {"_id": "versions", "n": 1}
    db.save(doc)
    first = dict(doc)
    doc["n"] = 2
    db.save(doc)
    call(style, db.copy, first, "first-version")
    assert db.get("first-version")["n"] == 1


def test_copy_destination_header_is_quoted():
    assert copy_destination("plain") == "plain"
    assert copy_destination({"_id": "a b?rev=1-x", "_rev": "2-abc"}) == "a%20b%3Frev%3D1-x?rev=2-abc"
    assert copy_destination("line\r\nX-Injected: 1") == "line%0D%0AX-Injected%3A%201"
    assert copy_destination("_design/app") == "_design%2Fapp"
    with pytest.raises(ValueError):
        copy_destination({"_rev": "1-x"})
    with pytest.raises(TypeError):
        Database("http://127.0.0.1:9/nowhere").copy(42, "x")


def test_copy_to_an_id_that_needs_quoting(db):
    db.save({"_id": "src", "n": 7})
    odd = "copy of/ü?x=1"
    db.copy("src", odd)
    try:
        copied = db.get(odd)
    except NotFound:
        from urllib.parse import quote

        db.get(quote(odd, safe=""))  # stored under the raw header value
        pytest.skip("the server does not percent-decode the Destination header (CouchDB does)")
    assert copied["n"] == 7


# -- revisions and conflicts ------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_revisions_newest_first(style, db):
    doc = {"_id": "edited"}
    revs = []
    for n in range(3):
        doc["n"] = n
        db.save(doc)
        revs.append(doc["_rev"])
    assert call(style, db.revisions, "edited") == revs[::-1]
    with pytest.raises(NotFound):
        call(style, db.revisions, "no-such-doc")


@pytest.mark.parametrize("style", STYLES)
def test_conflicts_lists_the_losing_leaves(style, db):
    leaves = make_conflict(db)
    winner = db.get("contested")["_rev"]
    found = call(style, db.conflicts, "contested")
    assert sorted(found) == sorted(r for r in leaves if r != winner)
    db.save({"_id": "calm"})
    assert call(style, db.conflicts, "calm") == []


@pytest.mark.parametrize("style", STYLES)
def test_resolve_conflicts_keeps_the_winner(style, db):
    leaves = make_conflict(db)
    winner = db.get("contested")
    summary = call(style, db.resolve_conflicts, "contested")
    assert summary["kept"] == winner["_rev"] and summary["errors"] == {}
    assert sorted(summary["deleted"]) == sorted(r for r in leaves if r != winner["_rev"])
    eventually_equal(lambda: db.conflicts("contested"), [])  # the losers' deletion, in every copy
    eventually_equal(lambda: db.get("contested")["side"], winner["side"])


@pytest.mark.parametrize("style", STYLES)
def test_resolve_conflicts_with_a_chooser(style, db):
    make_conflict(db)
    seen = []

    def choose(docs):
        seen.extend(d["side"] for d in docs)
        return next(d for d in docs if d["side"] == "left")["_rev"]

    summary = call(style, db.resolve_conflicts, "contested", choose)
    assert sorted(seen) == ["left", "original", "right"]
    assert summary["kept"] == "1-" + "a" * 32
    eventually_equal(lambda: db.conflicts("contested"), [])  # the losers' deletion, in every copy
    eventually_equal(lambda: db.get("contested")["side"], "left")  # a quorum read may meet a copy behind


@pytest.mark.parametrize("style", STYLES)
def test_resolve_conflicts_with_a_merged_document(style, db):
    make_conflict(db)

    def merge(docs):
        keep = dict(docs[0])
        keep["sides"] = sorted(d["side"] for d in docs)
        return keep

    summary = call(style, db.resolve_conflicts, "contested", merge)
    def resolved():
        merged = db.get("contested", conflicts=True)
        assert "_conflicts" not in merged  # the losers' deletion, in every copy
        return merged

    merged = eventually(resolved)
    assert merged["sides"] == ["left", "original", "right"]
    assert merged["_rev"] == summary["rev"] and merged["_rev"].startswith("2-")


@pytest.mark.parametrize("style", STYLES)
def test_resolve_conflicts_chooser_may_decline(style, db):
    leaves = make_conflict(db)
    summary = call(style, db.resolve_conflicts, "contested", lambda docs: None)
    assert summary["kept"] is None and summary["deleted"] == []
    assert len(db.conflicts("contested")) == len(leaves) - 1


def test_resolve_conflicts_refuses_a_rev_that_is_no_leaf(db):
    make_conflict(db)
    with pytest.raises(ValueError, match="leaf"):
        db.resolve_conflicts("contested", lambda docs: "9-nope")
    assert len(db.conflicts("contested")) == 2


def test_resolve_conflicts_without_conflicts_changes_nothing(db):
    doc = {"_id": "calm"}
    db.save(doc)
    summary = db.resolve_conflicts("calm")
    assert summary["kept"] == doc["_rev"] and summary["deleted"] == []
    assert db.get("calm")["_rev"] == doc["_rev"]


def _not_found(read, *args):
    """Assert that ``read(*args)`` raises NotFound (an AssertionError, for eventually, if it does not)."""
    try:
        got = read(*args)
    except NotFound:
        return
    raise AssertionError("found %r" % (got,))


# -- purge, revs_diff, missing_revs, bulk_get ---------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_purge(style, db):
    doomed = {"_id": "doomed"}
    db.save(doomed, w=EVERY_COPY)  # purge removes what each copy has: all of them must have it
    db.save({"_id": "kept"})
    try:
        result = call(style, db.purge, [doomed])
    except LACKING as exc:
        lacks(exc, "_purge")
    assert result["purged"]["doomed"] == [doomed["_rev"]]
    # The purge is answered at quorum: a GET that meets the copy still without it
    # returns the doc (read repair prefers a found doc), until that copy has it too.
    eventually(lambda: _not_found(db.get, "doomed"))
    assert db.get("kept")["_id"] == "kept"


def test_purge_validates_before_io():
    offline = Database("http://127.0.0.1:9/nowhere")
    with pytest.raises(ValueError, match="_rev"):
        offline.purge([{"_id": "a"}])
    with pytest.raises(TypeError):
        offline.purge("a")
    with pytest.raises(TypeError):
        offline.purge({"a": [1]})
    with pytest.raises(ConnectionFailed):
        offline.purge({"a": "1-abc"})


@pytest.mark.parametrize("style", STYLES)
def test_revs_diff(style, db):
    doc = {"_id": "known"}
    db.save(doc, w=EVERY_COPY)  # _revs_diff asks any copy (tests.consistency)
    result = call(style, db.revs_diff, {"known": [doc["_rev"], "1-" + "9" * 32], "unknown": ["1-" + "8" * 32]})
    assert result["known"]["missing"] == ["1-" + "9" * 32]
    assert result["unknown"]["missing"] == ["1-" + "8" * 32]


@pytest.mark.parametrize("style", STYLES)
def test_missing_revs(style, db):
    doc = {"_id": "known"}
    db.save(doc, w=EVERY_COPY)  # _missing_revs asks any copy (tests.consistency)
    try:
        result = call(style, db.missing_revs, {"known": [doc["_rev"], "1-" + "9" * 32]})
    except LACKING as exc:
        lacks(exc, "_missing_revs")
    assert result == {"known": ["1-" + "9" * 32]}


@pytest.mark.parametrize("style", STYLES)
def test_bulk_get_with_a_missing_document(style, db):
    first = {"_id": "one", "n": 1}
    db.save(first)
    old_rev = first["_rev"]
    first["n"] = 2
    db.save(first)
    db.save({"_id": "two", "n": 20})
    results = call(style, db.bulk_get, [{"id": "one", "rev": old_rev}, "absent", {"_id": "two"}], revs=True)
    assert [r["id"] for r in results] == ["one", "absent", "two"]
    old, absent, two = results
    assert [d["n"] for d in old["docs"]] == [1] and old["errors"] == []
    assert old["docs"][0]["_rev"] == old_rev
    assert absent["docs"] == [] and absent["errors"][0]["id"] == "absent" and absent["errors"][0]["error"]
    assert [d["n"] for d in two["docs"]] == [20]
    assert two["docs"][0]["_revisions"]["start"] == 1


def test_bulk_get_validates_before_io():
    offline = Database("http://127.0.0.1:9/nowhere")
    with pytest.raises(ValueError):
        offline.bulk_get([{"rev": "1-x"}])
    with pytest.raises(TypeError):
        offline.bulk_get("one")
    with pytest.raises(TypeError):
        offline.bulk_get([3])


# -- _local documents ---------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_local_documents_round_trip(style, couch_url, db):
    checkpoint = {"_id": "checkpoint", "seq": 1}
    saved = call(style, db.save_local, checkpoint)
    assert checkpoint["_id"] == "_local/checkpoint" and checkpoint["_rev"] == saved["rev"]
    got = call(style, db.get_local, "checkpoint")
    assert got["seq"] == 1 and got["_id"] == "_local/checkpoint"
    checkpoint["seq"] = 2
    call(style, db.save_local, checkpoint)
    assert call(style, db.get_local, "_local/checkpoint")["seq"] == 2
    db.save({"_id": "ordinary"}, w=EVERY_COPY)  # listed by every copy (tests.consistency)
    status, all_docs = couch_request(couch_url, "GET", "/%s/_all_docs" % db.name)
    assert status == 200 and [row["id"] for row in all_docs["rows"]] == ["ordinary"]
    call(style, db.delete_local, checkpoint)
    # Written at quorum: a copy still holding it may answer, and a found doc wins the read (tests.consistency).
    eventually(lambda: _not_found(call, style, db.get_local, "checkpoint"))


def test_plain_get_save_delete_work_on_local_ids(db):
    doc = {"_id": "_local/settings", "theme": "dark"}
    assert db.save(doc).ok
    assert db.get("_local/settings")["theme"] == "dark"
    doc["theme"] = "light"
    db.save(doc)
    assert db.get_local("settings")["theme"] == "light"
    db.delete(doc)
    eventually(lambda: _not_found(db.get, "_local/settings"))  # a copy still holding it may answer a moment


def test_save_local_with_a_stale_rev_keeps_what_the_server_stored(db):
    # The CouchDB API leaves this open, and the servers differ: Apache
    # CouchDB 3 keeps _local documents last-write-wins (a stale _rev is
    # accepted and the document overwritten); pouchdb-server answers 409.
    # Either way save_local reports what happened and nothing is half-written.
    doc = {"_id": "cp", "n": 1}
    db.save_local(doc)
    stale = dict(doc, n="stale")
    doc["n"] = 2
    db.save_local(doc)
    try:
        result = db.save_local(stale)
    except Conflict:  # pouchdb-server
        assert db.get_local("cp")["n"] == 2 and stale["_rev"] != doc["_rev"]
    else:  # Apache CouchDB: last write wins
        assert result["ok"] and stale["_rev"] == result["rev"]

        def stored_stale():  # the copy that answers may not have the last write yet (tests.consistency)
            stored = db.get_local("cp")
            assert stored["n"] == "stale" and stored["_rev"] == stale["_rev"]

        eventually(stored_stale)


@pytest.mark.parametrize("style", STYLES)
def test_local_docs_lists_the_local_documents(style, db):
    # In every copy: _local_docs reads any copy of each shard (tests.consistency).
    db.save({"_id": "_local/b", "n": 2}, w=EVERY_COPY)
    db.save({"_id": "_local/a", "n": 1}, w=EVERY_COPY)
    db.save({"_id": "ordinary"}, w=EVERY_COPY)
    try:
        listed = call(style, db.local_docs)
    except LACKING as exc:
        lacks(exc, "_local_docs")
    assert [row.id for row in listed] == ["_local/a", "_local/b"]
    assert all(row.value["rev"] for row in listed)
    picked = call(style, db.local_docs, keys=["_local/b"], include_docs=True)
    assert [row.doc["n"] for row in picked] == [2]
    assert [row.id for row in call(style, db.local_docs, descending=True, limit=1)] == ["_local/b"]


# -- settings and layout --------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("limit, value", [("revs_limit", 5), ("purged_infos_limit", 50)])
def test_database_limits_read_and_set(style, db, limit, value):
    method = getattr(db, limit)
    try:
        assert call(style, method) == 1000  # CouchDB's default for both
    except LACKING as exc:
        lacks(exc, "_" + limit)
    assert call(style, method, value)["ok"] is True
    assert call(style, method) == value


def test_limits_are_checked_before_io():
    offline = Database("http://127.0.0.1:9/nowhere")
    for method in (offline.revs_limit, offline.purged_infos_limit):
        with pytest.raises(ValueError):
            method(0)
        with pytest.raises(TypeError):
            method("10")
        with pytest.raises(TypeError):
            method(True)


@pytest.mark.parametrize("style", STYLES)
def test_shards_name_member_nodes(style, couch_url, db):
    try:
        shards = call(style, db.shards)["shards"]
    except LACKING as exc:
        lacks(exc, "_shards")
    members = set(Couch(couch_url).membership()["all_nodes"])
    # q ranges (2 by default), each on n nodes (1 on a single node, 3 on the test cluster).
    assert shards and all(nodes and set(nodes) <= members for nodes in shards.values())
    assert len({len(nodes) for nodes in shards.values()}) == 1
    one = call(style, db.shards, "some doc/with?odd#chars")
    assert one["range"] in shards and sorted(one["nodes"]) == sorted(shards[one["range"]])


def test_shards_checks_the_id_before_io():
    with pytest.raises(TypeError):
        Database("http://127.0.0.1:9/nowhere").shards("")


# -- full-text search -------------------------------------------------------------
def test_search(db):
    db.save([{"_id": "_design/books", "indexes": {
        "by_title": {"index": "function (doc) { if (doc.title) index('title', doc.title, {store: true}); }"}}},
        {"_id": "dune", "title": "Dune"}, {"_id": "emma", "title": "Emma"}], w=EVERY_COPY)  # indexed by any copy
    try:
        found = db.search("books/by_title", "title:dune", include_docs=True, limit=5)
    except ServerError as exc:
        if exc.code == 503:  # Apache CouchDB built without search (the test server's build)
            pytest.skip("full-text search is not available in this server build (%s)" % exc.reason)
        raise
    except NotFound as exc:
        lacks(exc, "_search")
    assert [row["id"] for row in found["rows"]] == ["dune"] and found["total_rows"] == 1
    assert found["rows"][0]["doc"]["title"] == "Dune"


def test_search_query_goes_in_the_url():
    from urllib.parse import parse_qs, urlsplit

    with pytest.raises(ConnectionFailed) as info:
        Database("http://127.0.0.1:9/nowhere", retries=0).search(
            "books/by title", "title:dune AND year:[1960 TO 1970]", sort=["-year<number>"], limit=3,
            include_docs=True, bookmark="g1AAAA")
    url = urlsplit(info.value.url)
    assert url.path == "/nowhere/_design/books/_search/by%20title"
    assert {k: v[0] for k, v in parse_qs(url.query).items()} == {
        "q": "title:dune AND year:[1960 TO 1970]", "sort": '["-year<number>"]', "limit": "3",
        "include_docs": "true", "bookmark": "g1AAAA"}
    with pytest.raises(ValueError):
        Database("http://127.0.0.1:9/nowhere").search("no-index", "x:1")
    with pytest.raises(TypeError):
        Database("http://127.0.0.1:9/nowhere").search("books/by_title", "")


# -- partitions -----------------------------------------------------------------
@pytest.fixture
def partitioned(couch_url: str, dbname: str) -> Database:
    couch = Couch(couch_url)
    try:
        db = couch.create(dbname, partitioned=True)
    except LACKING as exc:
        pytest.skip("the server refused a partitioned database: %s" % exc)
    if not db.info().get("props", {}).get("partitioned"):
        pytest.skip("the server created an unpartitioned database (it has no partitions)")
    db.save([
        {"_id": "red:1", "n": 1}, {"_id": "red:2", "n": 2}, {"_id": "blue:1", "n": 3},
        {"_id": "_design/app", "views": {"by_n": {"map": "function (doc) { emit(doc.n, null); }"}}},
    ], w=EVERY_COPY)  # in every copy before the partition's views and queries read it
    return db


@pytest.mark.parametrize("style", STYLES)
def test_partition_info(style, partitioned):
    info = call(style, partitioned.partition_info, "red")
    assert info["partition"] == "red" and info["doc_count"] == 2


@pytest.mark.parametrize("style", STYLES)
def test_partition_all_docs(style, partitioned):
    rows = call(style, partitioned.partition_all_docs, "red", include_docs=True)  # a View, as all_docs()
    assert [row.id for row in rows] == ["red:1", "red:2"]
    assert [row.doc["n"] for row in rows] == [1, 2]


@pytest.mark.parametrize("style", STYLES)
def test_partition_view(style, partitioned):
    rows = call(style, partitioned.partition_view, "red", "app/by_n", descending=True)  # a View
    assert [row.key for row in rows] == [2, 1]


@pytest.mark.parametrize("style", STYLES)
def test_partition_find(style, partitioned):
    found = call(style, partitioned.partition_find, "blue", {"n": {"$gt": 0}}, fields=["_id", "n"])
    assert found.docs == [{"_id": "blue:1", "n": 3}]  # a FindResult, as find()


def test_partition_names_are_checked_before_io():
    offline = Database("http://127.0.0.1:9/nowhere")
    with pytest.raises(ValueError):
        offline.partition_info("_all_docs")
    with pytest.raises(TypeError):
        offline.partition_all_docs("")
    with pytest.raises(ValueError):
        offline.partition_view("red", "no-slash")
