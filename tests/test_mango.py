"""Mango: find, iterfind (bookmark paging), indexes and explain, in all four calling styles."""
from __future__ import annotations

from typing import Any, List

import pytest

from corduroy import BadRequest, Couch, Database, Document, NotFound, ServerError, relax
from corduroy.mango import FindPager, FindResult
from tests.consistency import EVERY_COPY, eventually, eventually_equal
from tests.styles import STYLES, call, run_async

PEOPLE = [
    {"_id": "ada", "type": "person", "name": "Ada", "age": 36, "city": "London", "tags": ["math"]},
    {"_id": "alan", "type": "person", "name": "Alan", "age": 41, "city": "Wilmslow", "tags": ["math", "code"]},
    {"_id": "grace", "type": "person", "name": "Grace", "age": 85, "city": "Arlington", "tags": ["code"]},
    {"_id": "edsger", "type": "person", "name": "Edsger", "age": 72, "city": "Nuenen", "tags": ["code"]},
    {"_id": "barbara", "type": "person", "name": "Barbara", "age": 36, "city": "Boston", "tags": []},
    {"_id": "cat", "type": "pet", "name": "Tom", "age": 3},
]


@pytest.fixture
def db(couch_url: str, dbname: str) -> Database:
    db = Couch(couch_url).create(dbname)
    db.save([dict(doc) for doc in PEOPLE], w=EVERY_COPY)  # in every copy before a query reads it
    return db


@pytest.fixture
def numbered(couch_url: str, dbname: str) -> Database:
    """2000 documents ``item-0000``... with ``n`` = 0..1999 and ``group`` = n % 7."""
    db = Couch(couch_url).create(dbname)
    db.save([{"_id": "item-%04d" % n, "type": "item", "n": n, "group": n % 7} for n in range(2000)], w=EVERY_COPY)
    return db


def index_in_use(db: Database, fields: List[str], ddoc: str, name: str) -> None:
    """``db.index(...)``, then wait until the server plans a sort on ``fields`` with it.

    An index is a design document, and a cluster's query planner reads design
    documents from any copy (tests.consistency): for a moment after ``_index``
    a sort may still find no index. ``_index`` writes it at quorum, so it is
    saved again (unchanged) with ``w=EVERY_COPY``: every query the test then
    makes, not only the first one, finds the index.
    """
    created = db.index(fields, ddoc=ddoc, name=name)
    db.save(db.get(created["id"]), w=EVERY_COPY)

    def planned() -> None:
        try:
            plan = db.explain({fields[0]: {"$gt": None}}, sort=fields)
        except BadRequest as exc:  # no_usable_index
            raise AssertionError(str(exc)) from None
        assert (plan.get("index") or {}).get("name") == name

    eventually(planned)


def ids(docs: Any) -> List[str]:
    return [doc["_id"] for doc in docs]


# -- find --------------------------------------------------------------------

@pytest.mark.parametrize("style", STYLES)
def test_find_with_selector_and_fields(style, db):
    result = call(style, db.find, {"type": "person", "age": {"$gt": 40}}, fields=["_id", "name"])
    assert isinstance(result, FindResult)
    assert sorted(ids(result)) == ["alan", "edsger", "grace"]
    assert len(result) == 3
    for doc in result:
        assert isinstance(doc, Document) and set(doc) == {"_id", "name"}
    # No index covers "type": the server says so.
    assert result.warning and "index" in result.warning


@pytest.mark.parametrize("style", STYLES)
def test_find_with_limit_and_skip(style, db):
    everyone = ids(db.find({"type": "person"}))
    assert len(everyone) == 5
    page = call(style, db.find, {"type": "person"}, limit=2, skip=1)
    assert ids(page) == everyone[1:3]


@pytest.mark.parametrize("style", STYLES)
def test_find_with_operators(style, db):
    result = call(style, db.find, {"tags": {"$elemMatch": {"$eq": "code"}}, "age": {"$lt": 80}})
    assert sorted(ids(result)) == ["alan", "edsger"]
    result = call(style, db.find, {"$or": [{"name": "Tom"}, {"city": {"$in": ["Boston", "Paris"]}}]})
    assert sorted(ids(result)) == ["barbara", "cat"]
    result = call(style, db.find, {"city": {"$regex": "^L"}})
    assert ids(result) == ["ada"]


@pytest.mark.parametrize("style", STYLES)
def test_sort_needs_an_index(style, db):
    with pytest.raises(BadRequest):
        call(style, db.find, {"age": {"$gt": 0}}, sort=["age"])
    index_in_use(db, ["age"], ddoc="by-age", name="age")
    ascending = call(style, db.find, {"age": {"$gt": 10}}, sort=["age"], fields=["_id", "age"])
    ages = [doc.age for doc in ascending]
    assert ages == sorted(ages) and len(ages) == 5
    descending = call(style, db.find, {"age": {"$gt": 10}}, sort=[{"age": "desc"}], limit=2)
    assert ids(descending) == ["grace", "edsger"]


@pytest.mark.parametrize("style", STYLES)
def test_find_streams_docs_to_on_doc(style, db):
    seen: List[Any] = []
    result = call(style, db.find, {"type": "person"}, on_doc=seen.append, fields=["_id", "age"])
    assert isinstance(result, FindResult)
    assert sorted(ids(seen)) == ["ada", "alan", "barbara", "edsger", "grace"]
    assert all(isinstance(doc, Document) for doc in seen)
    assert result.docs == [] and len(result) == 0  # they went to on_doc
    assert result.warning  # the other members are still there


class Enough(Exception):
    pass


@pytest.mark.parametrize("style", STYLES)
def test_an_exception_in_on_doc_stops_the_query(style, numbered):
    seen: List[Any] = []

    def on_doc(doc: Any) -> None:
        seen.append(doc)
        if len(seen) == 10:
            raise Enough()

    with pytest.raises(Enough):
        call(style, numbered.find, {"type": "item"}, on_doc=on_doc, limit=2000)
    assert len(seen) == 10


@pytest.mark.parametrize("style", STYLES)
def test_find_in_a_missing_database_is_not_found(style, couch_url, dbname):
    with pytest.raises(NotFound):
        call(style, Database(couch_url + "/" + dbname).find, {"type": "person"})
    with pytest.raises(NotFound):
        call(style, Database(couch_url + "/" + dbname).find, {"type": "person"}, on_doc=print)


def test_find_result():
    result = FindResult([Document(_id="a"), Document(_id="b")], bookmark="g1", warning="w",
                        execution_stats={"total_docs_examined": 2})
    assert len(result) == 2 and result[1]["_id"] == "b" and ids(result) == ["a", "b"]
    assert result.bookmark == "g1" and result.warning == "w"
    assert result.execution_stats == {"total_docs_examined": 2}
    assert repr(result) == "<FindResult 2 docs bookmark='g1'>"


# -- arguments are checked before any I/O --------------------------------------

NOWHERE = Database("http://127.0.0.1:9/nothing-listens-here")


@pytest.mark.parametrize("call_, error", [
    (lambda: NOWHERE.find(["type", "person"]), TypeError),
    (lambda: NOWHERE.find({"a": 1}, fields="name"), TypeError),
    (lambda: NOWHERE.find({"a": 1}, fields=["name", 3]), TypeError),
    (lambda: NOWHERE.find({"a": 1}, sort="age"), TypeError),
    (lambda: NOWHERE.find({"a": 1}, sort=[{"age": "up"}]), TypeError),
    (lambda: NOWHERE.find({"a": 1}, sort=[{"age": "asc", "n": "asc"}]), TypeError),
    (lambda: NOWHERE.find({"a": 1}, limit=-1), ValueError),
    (lambda: NOWHERE.find({"a": 1}, limit="10"), TypeError),
    (lambda: NOWHERE.find({"a": 1}, skip=True), TypeError),
    (lambda: NOWHERE.find({"a": 1}, bookmark=12), TypeError),
    (lambda: NOWHERE.find({"a": 1}, use_index=["a", "b", "c"]), TypeError),
    (lambda: NOWHERE.find({"a": 1}, r=0), ValueError),
    (lambda: NOWHERE.find({"a": 1}, conflicts="yes"), TypeError),
    (lambda: NOWHERE.find({"a": 1}, on_doc="print"), TypeError),
    (lambda: NOWHERE.find({"a": 1}, nan=float("nan")), ValueError),
    (lambda: NOWHERE.explain("type"), TypeError),
    (lambda: NOWHERE.iterfind({"a": 1}, page_size=0), ValueError),
    (lambda: NOWHERE.iterfind({"a": 1}, callback=print), TypeError),
    (lambda: NOWHERE.iterfind(None), TypeError),
    (lambda: NOWHERE.index([]), TypeError),
    (lambda: NOWHERE.index("age"), TypeError),
    (lambda: NOWHERE.index(["age"], partial_filter_selector=[1]), TypeError),
    (lambda: NOWHERE.index(["age"], name=""), TypeError),
    (lambda: NOWHERE.index(["age"], partitioned="no"), TypeError),
    (lambda: NOWHERE.delete_index("", "name"), TypeError),
    (lambda: NOWHERE.delete_index("_design/", "name"), ValueError),
    (lambda: NOWHERE.delete_index("ddoc", None), TypeError),
])
def test_bad_arguments_raise_before_any_io(call_, error):
    # Nothing listens on port 9: had a request been sent, this would be a ConnectionFailed.
    with pytest.raises(error):
        call_()


# -- indexes -------------------------------------------------------------------

@pytest.mark.parametrize("style", STYLES)
def test_index_create_list_delete(style, db):
    created = call(style, db.index, ["city"], ddoc="_design/places", name="by-city")
    assert created["result"] == "created"
    assert created["id"] == "_design/places" and created["name"] == "by-city"
    again = call(style, db.index, ["city"], ddoc="places", name="by-city")
    assert again["result"] == "exists"

    def listed_with_mine() -> List[Any]:  # indexes are design documents, listed from any copy
        listed = call(style, db.indexes)
        assert any(ix["name"] == "by-city" for ix in listed)
        return listed

    listed = eventually(listed_with_mine)
    assert isinstance(listed, list)
    assert listed[0]["name"] == "_all_docs" and listed[0]["type"] == "special"
    mine = [ix for ix in listed if ix["name"] == "by-city"]
    assert len(mine) == 1
    assert mine[0]["ddoc"] == "_design/places" and mine[0]["type"] == "json"
    assert mine[0]["def"]["fields"] == [{"city": "asc"}]

    assert call(style, db.delete_index, "places", "by-city")["ok"] is True
    eventually_equal(lambda: [ix["name"] for ix in call(style, db.indexes)], ["_all_docs"])
    # CouchDB answers 404 for an index that is not there; pouchdb-server 4.2.0
    # fails with a 500 ("Cannot convert undefined or null to object").
    with pytest.raises((NotFound, ServerError)):
        call(style, db.delete_index, "_design/places", "by-city")


@pytest.mark.parametrize("style", STYLES)
def test_index_with_generated_names_and_sort_directions(style, db):
    created = call(style, db.index, [{"age": "asc"}, "name"], partial_filter_selector={"type": "person"})
    assert created["result"] == "created"
    assert created["id"].startswith("_design/") and created["name"]
    def fields_listed() -> Any:  # listed from any copy of the design documents (tests.consistency)
        return {ix["name"]: ix["def"]["fields"] for ix in db.indexes()}.get(created["name"])

    eventually_equal(fields_listed, [{"age": "asc"}, {"name": "asc"}])
    # The generated design document can be deleted by its full id.
    assert call(style, db.delete_index, created["id"], created["name"])["ok"] is True


@pytest.mark.parametrize("style", STYLES)
def test_explain_names_the_chosen_index(style, db):
    index_in_use(db, ["age"], ddoc="by-age", name="age-index")
    plan = call(style, db.explain, {"age": {"$gt": 40}}, sort=["age"], fields=["_id"], limit=2)
    assert plan["index"]["name"] == "age-index"
    assert plan["index"]["ddoc"] == "_design/by-age"
    assert plan["selector"] == {"age": {"$gt": 40}}
    assert plan["limit"] == 2
    # With no index on the field, the server falls back to _all_docs.
    plain = call(style, db.explain, {"city": "London"})
    assert plain["index"]["name"] == "_all_docs"


@pytest.mark.parametrize("style", STYLES)
def test_use_index(style, db):
    index_in_use(db, ["age"], ddoc="by-age", name="age-index")
    result = call(style, db.find, {"age": {"$gte": 36}}, use_index=["by-age", "age-index"],
                  sort=["age"], fields=["_id", "age"], limit=2)
    assert [doc.age for doc in result] == [36, 36]


# -- paging ----------------------------------------------------------------------

def test_iterfind_visits_every_document_once(numbered):
    pager = numbered.iterfind({"type": "item"}, page_size=300)
    assert isinstance(pager, FindPager) and pager.requests == 0  # no I/O yet
    seen = ids(pager)
    assert len(seen) == 2000 and len(set(seen)) == 2000
    assert pager.done
    # Several requests, each for a page (not one big one).
    assert pager.requests >= 7


@pytest.mark.parametrize("style", STYLES)
def test_next_page_in_every_style(style, numbered):
    pager = numbered.iterfind({"type": "item", "n": {"$lt": 1000}}, page_size=250, fields=["_id", "n"])
    seen: List[str] = []
    for _ in range(20):
        page = call(style, pager.next_page)
        if not page:
            break
        assert len(page) <= 250
        assert all(set(doc) == {"_id", "n"} for doc in page)
        seen.extend(ids(page))
    assert len(seen) == 1000 and len(set(seen)) == 1000
    assert call(style, pager.next_page) == []  # and it stays at the end


def test_iterfind_never_uses_skip(numbered, monkeypatch):
    bodies: List[Any] = []
    original = numbered._request

    def spy(method: str, path: str = "", **kwargs: Any) -> Any:
        if path == "/_find":
            bodies.append(kwargs.get("json"))
        return original(method, path, **kwargs)

    monkeypatch.setattr(numbered, "_request", spy)
    assert len(list(numbered.iterfind({"type": "item"}, page_size=500))) == 2000
    assert len(bodies) >= 4
    assert all("skip" not in body for body in bodies)
    assert all(body["limit"] == 500 for body in bodies)


def test_iterfind_sorted_with_ties_visits_every_document_once(numbered):
    index_in_use(numbered, ["group"], ddoc="groups", name="by-group")
    for direction in ("asc", "desc"):
        # Pages end inside runs of equal "group" values (about 286 documents each).
        pager = numbered.iterfind({"group": {"$gte": 0}}, page_size=250, sort=[{"group": direction}],
                                  fields=["n"])
        docs = list(pager)
        assert len(docs) == 2000
        assert len({doc["n"] for doc in docs}) == 2000
        # Only the fields asked for come back, in the sort order.
        assert all(set(doc) == {"n"} for doc in docs)
        groups = [doc["n"] % 7 for doc in docs]
        assert groups == sorted(groups, reverse=(direction == "desc"))


def test_iterfind_limit_and_skip(numbered):
    everything = ids(numbered.iterfind({"type": "item"}, page_size=400))
    pager = numbered.iterfind({"type": "item"}, page_size=300, skip=100, limit=650)
    got = ids(pager)
    assert got == everything[100:750]
    assert pager.done and pager.next_page() == []


def test_iterfind_with_no_match(numbered):
    pager = numbered.iterfind({"type": "nothing"}, page_size=10)
    assert list(pager) == [] and pager.done


def test_async_for(numbered):
    async def collect() -> List[str]:
        seen = []
        async for doc in numbered.iterfind({"type": "item", "group": 3}, page_size=50):
            seen.append(doc["_id"])
        return seen

    seen = run_async(collect)
    expected = ["item-%04d" % n for n in range(2000) if n % 7 == 3]
    assert sorted(seen) == expected and len(seen) == len(set(seen))


def test_relax_paging(numbered):
    @relax
    def collect():
        pager = numbered.iterfind({"type": "item", "n": {"$lt": 120}}, page_size=50)
        seen = []
        while True:
            page = yield pager.next_page()
            if not page:
                return seen
            seen.extend(ids(page))

    assert sorted(collect()) == ["item-%04d" % n for n in range(120)]


def test_blocking_iteration_inside_a_running_reactor_is_refused(numbered):
    async def inside() -> None:
        with pytest.raises(RuntimeError):
            next(iter(numbered.iterfind({"type": "item"})))

    run_async(inside)


def test_pages_follow_bookmarks_when_the_server_gives_them(numbered):
    gives_bookmarks = bool(numbered.find({"type": "item"}, limit=5).bookmark)
    pager = numbered.iterfind({"type": "item"}, page_size=1000)
    first = pager.next_page()
    assert len(first) == 1000
    if gives_bookmarks:  # CouchDB: the next page is asked for by bookmark
        assert isinstance(pager.bookmark, str) and pager.bookmark and pager.requests == 1
    else:  # pouchdb-server: by sort key (_id here), after one restart
        assert pager.bookmark is None and pager.requests == 2
    second = pager.next_page()
    assert len(second) == 1000 and not set(ids(first)) & set(ids(second))
    assert pager.next_page() == [] and pager.done
