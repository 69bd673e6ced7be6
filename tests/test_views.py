"""Views, _all_docs, _design_docs, temporary queries, shows, lists, updates and paging.

Every public method runs in the four calling styles (see tests/styles.py).
Read-only tests share one module-scoped database of seven employees; tests
that write get a fresh database.
"""
from __future__ import annotations

import base64
import importlib.util
import uuid
from typing import Any, Dict, Iterator, List, Tuple

import pytest

import loop
from corduroy import (
    BadRequest, Couch, Database, Document, Formatted, NotFound, Pager, Row, View, relax,
)
from tests.consistency import EVERY_COPY, eventually_equal
from tests.styles import STYLES, call, run_async

needs_streaming = pytest.mark.skipif(
    importlib.util.find_spec("corduroy.streaming") is None,
    reason="corduroy/streaming.py (stream_rows) is not written yet",
)

# -- fixtures -------------------------------------------------------------
STAFF = [
    # id, last name, department, hired, salary
    ("e1", "abbott", "press", [2007, 11, 28], 10),
    ("e2", "coverley", "press", [2007, 11, 29], 20),
    ("e3", "cullen", "policy", [2007, 11, 29], 30),
    ("e4", "murray", "policy", [2007, 12, 1], 40),
    ("e5", "reeder", "policy", [2007, 12, 2], 50),
    ("e6", "tucker", "number10", [2007, 12, 2], 60),
    ("e7", "jamie", "number10", [2008, 1, 5], 70),
]
BY_NAME = sorted((last, doc_id) for doc_id, last, _d, _h, _s in STAFF)

EMPLOYEES = {
    "_id": "_design/employees",
    "language": "javascript",
    "views": {
        "byname": {"map": "function(doc) { if (doc.last) emit(doc.last, doc.salary); }", "reduce": "_sum"},
        "bydept": {"map": "function(doc) { if (doc.dept) emit(doc.dept, 1); }", "reduce": "_count"},
        "byhired": {"map": "function(doc) { if (doc.hired) emit(doc.hired, 1); }", "reduce": "_count"},
        "plain": {"map": "function(doc) { if (doc.last) emit(doc.last, null); }"},
    },
    "shows": {
        "card": (
            "function(doc, req) { return {body: (doc ? doc.last : 'nobody') + ' / ' + "
            "(req.query.greeting || '-'), headers: {'Content-Type': 'text/plain; charset=utf-8'}}; }"
        ),
        "info": (
            "function(doc, req) { return {json: {id: doc ? doc._id : null, "
            "greeting: req.query.greeting || null}}; }"
        ),
    },
    "lists": {
        "csv": (
            "function(head, req) { start({headers: {'Content-Type': 'text/csv'}}); var row; "
            "while ((row = getRow())) { send(row.key + ',' + row.value + '\\n'); } }"
        ),
        "keys": (
            "function(head, req) { start({headers: {'Content-Type': 'application/json'}}); "
            "var row, out = []; while ((row = getRow())) { out.push(row.key); } "
            "send(JSON.stringify({keys: out, tag: req.query.tag || null})); }"
        ),
    },
    "updates": {
        "stamp": (
            "function(doc, req) { if (!doc) { doc = {_id: req.id || req.uuid}; } "
            "doc.form = req.form; doc.body = req.body; doc.tag = req.query.tag || null; "
            "return [doc, {json: {ok: true, id: doc._id, form: req.form, body: req.body, tag: doc.tag}}]; }"
        ),
        "echo": (
            "function(doc, req) { return [null, {body: 'got ' + req.body, "
            "headers: {'Content-Type': 'text/plain; charset=utf-8'}}]; }"
        ),
    },
}
OTHER = {
    "_id": "_design/other",
    "views": {"salaries": {"map": "function(doc) { if (doc.salary) emit(doc.salary, doc.last); }"}},
}


def populate(db: Database) -> None:
    docs = [{"_id": i, "last": last, "dept": dept, "hired": hired, "salary": salary}
            for i, last, dept, hired, salary in STAFF]
    db.save(docs + [dict(EMPLOYEES), dict(OTHER)], w=EVERY_COPY)  # in every copy before views read it


@pytest.fixture(scope="module")
def staff(couch_url: str) -> Iterator[Database]:
    """A database of seven employees and two design documents (read-only for tests)."""
    name = "test_views_%s" % uuid.uuid4().hex
    couch = Couch(couch_url)
    db = couch.create(name)
    populate(db)
    yield db
    couch.delete(name)


@pytest.fixture
def fresh(couch_url: str, dbname: str) -> Database:
    """A new database with the employees, for tests that write."""
    db = Couch(couch_url).create(dbname)
    populate(db)
    return db


def recording(db: Database) -> List[Tuple[str, str, Any]]:
    """Record ``(method, path, json body)`` of every request ``db`` sends from now on."""
    calls: List[Tuple[str, str, Any]] = []
    original = db._request

    def record(method: str, path: str = "", **kwargs: Any) -> loop.Operation:
        calls.append((method, path, kwargs.get("json")))
        return original(method, path, **kwargs)

    db._request = record  # type: ignore[method-assign]
    return calls


def keys(view: View) -> List[Any]:
    return [row.key for row in view]


# -- Row, View, Formatted (no server) --------------------------------------
def test_row_fields_and_mapping_access() -> None:
    row = Row({"id": "e1", "key": ["a", 1], "value": 3, "doc": {"_id": "e1", "last": "abbott"}})
    assert (row.id, row.key, row.value, row.error) == ("e1", ["a", 1], 3, None)
    assert isinstance(row.doc, Document) and row.doc.last == "abbott"
    assert "%(key)s -> %(value)s" % row == "['a', 1] -> 3"
    with pytest.raises(KeyError):
        row["nope"]
    assert repr(row) == "<Row id='e1' key=['a', 1] value=3 +doc>"
    missing = Row({"key": "zz", "error": "not_found"})
    assert missing.id is None and missing.doc is None and missing.error == "not_found"
    assert repr(missing) == "<Row key='zz' error='not_found'>"
    assert not hasattr(row, "__dict__")  # slotted
    assert Row({"key": 1, "value": 2}) == Row({"key": 1, "value": 2, "doc": None})


def test_view_is_a_list_of_rows() -> None:
    rows = [Row({"id": "e%d" % i, "key": i, "value": None}) for i in range(3)]
    view = View("employees/byname", rows, {"limit": 3}, total_rows=17, offset=2, update_seq="9-x")
    assert repr(view) == "<employees/byname: 3/17 rows>"
    assert len(view) == 3 and view[1].key == 1 and view[-1].id == "e2" and view[:2] == rows[:2]
    assert [r.key for r in view] == [0, 1, 2]
    assert (view.total_rows, view.offset, view.update_seq, view.options) == (17, 2, "9-x", {"limit": 3})
    assert repr(View("d/v", [])) == "<d/v: 0 rows>"


def test_formatted_decodes_json_and_text() -> None:
    js = Formatted(200, {"Content-Type": "application/json"}, b'{"a": [1]}')
    assert js.body == {"a": [1]} and js.content_type == "application/json"
    text = Formatted(200, {"Content-Type": "text/plain; charset=latin-1"}, "caf\xe9".encode("latin-1"))
    assert text.body == b"caf\xe9" and text.text == "caf\xe9"
    assert Formatted(200, {}, b"x").text == "x"
    assert repr(text) == "<Formatted 200 text/plain, 4 bytes>"


# -- view -----------------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_view_returns_rows(style: str, staff: Database) -> None:
    view = call(style, staff.view, "employees/plain")
    assert isinstance(view, View) and all(isinstance(r, Row) for r in view)
    assert [(r.key, r.id) for r in view] == BY_NAME
    assert view.total_rows == 7 and view.offset == 0
    assert repr(view) == "<employees/plain: 7/7 rows>"
    assert view.update_seq is None


@pytest.mark.parametrize("style", STYLES)
def test_view_key_and_keys(style: str, staff: Database) -> None:
    one = call(style, staff.view, "employees/byname", key="cullen", reduce=False)
    assert [(r.key, r.id, r.value) for r in one] == [("cullen", "e3", 30)]
    calls = recording(staff)
    try:
        many = call(style, staff.view, "_design/employees/byname", keys=["murray", "nobody", "abbott"],
                    reduce=False)
    finally:
        del staff._request
    assert [(r.key, r.id) for r in many] == [("murray", "e4"), ("abbott", "e1")]
    method, path, body = calls[0]
    assert method == "POST" and body == {"keys": ["murray", "nobody", "abbott"]}
    assert path.startswith("/_design/employees/_view/byname?") and "keys" not in path
    assert many.options == {"keys": ["murray", "nobody", "abbott"], "reduce": False}


def test_view_key_none_means_json_null(fresh: Database) -> None:
    fresh.save({"_id": "nameless", "last": None}, w=EVERY_COPY)
    fresh.save({"_id": "_design/nulls", "views": {"v": {"map": "function(doc) { if (doc.last !== undefined) "
                                                          "emit(doc.last, 1); }"}}}, w=EVERY_COPY)
    assert [(r.key, r.id) for r in fresh.view("nulls/v", key=None)] == [(None, "nameless")]
    assert [r.id for r in fresh.view("nulls/v", startkey=None, endkey="b")] == ["nameless", "e1"]


def test_view_ranges_and_inclusive_end(staff: Database) -> None:
    c_names = staff.view("employees/plain", startkey="c", endkey="d", inclusive_end=False)
    assert keys(c_names) == ["coverley", "cullen"]
    upto = staff.view("employees/plain", startkey="c", endkey="cullen")
    assert keys(upto) == ["coverley", "cullen"]
    before = staff.view("employees/plain", startkey="c", endkey="cullen", inclusive_end=False)
    assert keys(before) == ["coverley"]
    aliased = staff.view("employees/plain", start_key="j", end_key="r")
    assert keys(aliased) == ["jamie", "murray"]
    backwards = staff.view("employees/plain", startkey="r", endkey="j", descending=True)
    assert keys(backwards) == ["murray", "jamie"]
    complex_keys = staff.view("employees/byhired", startkey=[2007, 12], endkey=[2007, 12, {}], reduce=False)
    assert [r.id for r in complex_keys] == ["e4", "e5", "e6"]


def test_view_docid_bounds_are_sent(staff: Database) -> None:
    # pouchdb-server ignores startkey_docid/endkey_docid, so this checks what is
    # sent, and that the rows stay within the key range either way.
    calls = recording(staff)
    try:
        rows = staff.view("employees/bydept", reduce=False, startkey="policy", startkey_docid="e4",
                          endkey="policy", endkey_docid="e5")
        staff.view("employees/bydept", reduce=False, start_key="policy", start_key_doc_id="e4",
                   end_key="policy", end_key_doc_id="e5")
    finally:
        del staff._request
    assert set(r.id for r in rows) <= {"e3", "e4", "e5"} and "e4" in {r.id for r in rows}
    assert "startkey=%22policy%22" in calls[0][1] and "startkey_docid=e4" in calls[0][1]
    assert "endkey_docid=e5" in calls[0][1]
    assert "start_key_doc_id=e4" in calls[1][1] and "end_key_doc_id=e5" in calls[1][1]


def test_view_limit_skip_descending(staff: Database) -> None:
    assert keys(staff.view("employees/plain", limit=2)) == ["abbott", "coverley"]
    skipped = staff.view("employees/plain", skip=5)
    assert keys(skipped) == ["reeder", "tucker"] and skipped.offset == 5 and skipped.total_rows == 7
    assert keys(staff.view("employees/plain", descending=True, limit=2)) == ["tucker", "reeder"]


def test_view_reduce_group_and_group_level(staff: Database) -> None:
    total = staff.view("employees/byname")
    assert [(r.key, r.value, r.id) for r in total] == [(None, 280, None)]
    assert total.total_rows is None and repr(total) == "<employees/byname: 1 rows>"
    assert len(staff.view("employees/byname", reduce=False)) == 7
    grouped = staff.view("employees/bydept", group=True)
    assert [(r.key, r.value) for r in grouped] == [("number10", 2), ("policy", 3), ("press", 2)]
    assert ["%(key)s=%(value)s" % r for r in grouped] == ["number10=2", "policy=3", "press=2"]
    by_month = staff.view("employees/byhired", group_level=2)
    assert [(r.key, r.value) for r in by_month] == [([2007, 11], 3), ([2007, 12], 3), ([2008, 1], 1)]
    by_year = staff.view("employees/byhired", group_level=1)
    assert [(r.key, r.value) for r in by_year] == [([2007], 6), ([2008], 1)]
    by_day = staff.view("employees/byhired", group=True)
    assert [r.value for r in by_day] == [1, 2, 1, 2, 1]


def test_view_include_docs(staff: Database) -> None:
    rows = staff.view("employees/plain", key="abbott", include_docs=True)
    doc = rows[0].doc
    assert isinstance(doc, Document) and doc._id == "e1" and doc.dept == "press" and doc._rev
    assert staff.view("employees/plain", key="abbott")[0].doc is None


def test_view_conflicts_and_attachments(fresh: Database) -> None:
    fresh.save([{"_id": "x", "_rev": "1-aaa", "last": "xavier"}, {"_id": "x", "_rev": "1-bbb", "last": "xavier"}],
               new_edits=False, w=EVERY_COPY)
    fresh.save({"_id": "y", "last": "yates",
                "_attachments": {"a.txt": {"content_type": "text/plain",
                                           "data": base64.b64encode(b"hello").decode()}}}, w=EVERY_COPY)
    plain = fresh.view("employees/plain", startkey="x", include_docs=True)
    assert "_conflicts" not in plain[0].doc
    assert plain[1].doc._attachments["a.txt"].get("stub") is True
    full = fresh.view("employees/plain", startkey="x", include_docs=True, conflicts=True, attachments=True)
    assert full[0].doc._conflicts == ["1-aaa"]
    assert base64.b64decode(full[1].doc._attachments["a.txt"]["data"]) == b"hello"
    calls = recording(fresh)
    info = fresh.view("employees/plain", key="yates", include_docs=True, att_encoding_info=True)
    del fresh._request
    assert "att_encoding_info=true" in calls[0][1]
    stub = info[0].doc._attachments["a.txt"]
    assert stub["content_type"] == "text/plain"
    # CouchDB stores text compressed and then reports it; pouchdb-server never does
    assert stub.get("encoding", "gzip") == "gzip"


def test_view_update_seq(staff: Database) -> None:
    assert staff.view("employees/plain", update_seq=True, limit=1).update_seq is not None
    assert staff.view("employees/plain", limit=1).update_seq is None


def test_view_stale_serves_the_old_index(fresh: Database) -> None:
    assert len(fresh.view("employees/plain")) == 7  # builds the index
    fresh.save({"_id": "e8", "last": "zebedee"})
    assert "zebedee" not in keys(fresh.view("employees/plain", stale="ok"))
    eventually_equal(lambda: "zebedee" in keys(fresh.view("employees/plain")), True)  # tests.consistency


def test_view_update_stable_sorted_are_sent(staff: Database) -> None:
    # Their effect is on index freshness and shard choice (CouchDB 3); pouchdb-server
    # accepts and ignores them. Check the wire format and that the server takes them.
    calls = recording(staff)
    try:
        lazy = staff.view("employees/plain", update="lazy", stable=True)
        frozen = staff.view("employees/plain", update=False, stable=False, sorted=True)
        unsorted = staff.all_docs(keys=["e2", "e1"], sorted=False)
    finally:
        del staff._request
    assert "update=lazy" in calls[0][1] and "stable=true" in calls[0][1]
    assert "update=false" in calls[1][1] and "stable=false" in calls[1][1] and "sorted=true" in calls[1][1]
    assert "sorted=false" in calls[2][1]
    assert len(lazy) == 7 and len(frozen) <= 7
    assert {r.id for r in unsorted} == {"e1", "e2"}


@pytest.mark.parametrize("style", STYLES)
def test_view_missing_design_doc_or_view(style: str, staff: Database) -> None:
    with pytest.raises(NotFound):
        call(style, staff.view, "nosuchddoc/byname")
    with pytest.raises(NotFound):
        call(style, staff.view, "employees/nosuchview")


def test_view_bad_input_fails_before_io(staff: Database) -> None:
    calls = recording(staff)
    try:
        with pytest.raises(ValueError):
            staff.view("no-slash")
        with pytest.raises(ValueError):
            staff.view("ddoc/")
        with pytest.raises(TypeError):
            staff.view(42)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="include_doc"):
            staff.view("employees/plain", include_doc=True)
        with pytest.raises(ValueError, match="limit"):
            staff.view("employees/plain", limit=-1)
        with pytest.raises(TypeError, match="descending"):
            staff.view("employees/plain", descending="yes")
        with pytest.raises(ValueError, match="stale"):
            staff.view("employees/plain", stale="later")
        with pytest.raises(TypeError, match="keys"):
            staff.view("employees/plain", keys="abbott")
        with pytest.raises(ValueError, match="keys"):
            staff.view("employees/plain", keys=["a"], startkey="a")
        with pytest.raises(ValueError, match="NaN"):
            staff.view("employees/plain", key=float("nan"))
    finally:
        del staff._request
    assert calls == []


# -- _all_docs and _design_docs ---------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_all_docs(style: str, staff: Database) -> None:
    everything = call(style, staff.all_docs)
    assert isinstance(everything, View) and everything.total_rows == 9
    assert [r.id for r in everything] == ["_design/employees", "_design/other"] + ["e%d" % i for i in range(1, 8)]
    assert everything[2].value["rev"].startswith("1-") and repr(everything) == "<_all_docs: 9/9 rows>"
    picked = call(style, staff.all_docs, keys=["e3", "missing", "e1"], include_docs=True)
    assert [(r.key, r.error) for r in picked] == [("e3", None), ("missing", "not_found"), ("e1", None)]
    assert picked[0].doc.last == "cullen" and picked[1].doc is None
    ranged = call(style, staff.all_docs, startkey="e2", endkey="e4", inclusive_end=False, descending=False)
    assert [r.id for r in ranged] == ["e2", "e3"]


def test_all_docs_rejects_reduce_options(staff: Database) -> None:
    with pytest.raises(TypeError, match="group"):
        staff.all_docs(group=True)


@pytest.mark.parametrize("style", STYLES)
def test_design_docs(style: str, staff: Database) -> None:
    ddocs = call(style, staff.design_docs)
    assert isinstance(ddocs, View)
    assert [r.id for r in ddocs] == ["_design/employees", "_design/other"]
    full = call(style, staff.design_docs, include_docs=True, descending=True)
    assert [r.id for r in full] == ["_design/other", "_design/employees"]
    assert full[1].doc.views["byname"]["reduce"] == "_sum"


def test_design_docs_of_missing_database(couch_url: str) -> None:
    with pytest.raises(NotFound):
        Database(couch_url + "/test_views_missing_" + uuid.uuid4().hex).design_docs()


# -- query (temporary views) -----------------------------------------------
def temp_ddocs(db: Database) -> List[str]:
    return [r.id for r in db.design_docs() if r.id.startswith("_design/corduroy-tmp-")]


@pytest.mark.parametrize("style", STYLES)
def test_query(style: str, fresh: Database) -> None:
    view = call(style, fresh.query, "function(doc) { if (doc.dept) emit(doc.dept, doc.salary); }",
                startkey="policy", endkey="policy", limit=2)
    assert isinstance(view, View) and [(r.key, r.id, r.value) for r in view] == [
        ("policy", "e3", 30), ("policy", "e4", 40)]
    summed = call(style, fresh.query, "function(doc) { if (doc.dept) emit(doc.dept, doc.salary); }", "_sum",
                  group=True)
    assert [(r.key, r.value) for r in summed] == [("number10", 130), ("policy", 120), ("press", 30)]
    # Deleted at once; listed from any copy of the shards, so gone from the list eventually (tests.consistency).
    eventually_equal(lambda: [r.id for r in fresh.design_docs()], ["_design/employees", "_design/other"])


@pytest.mark.parametrize("style", STYLES)
def test_failing_query_leaves_no_design_doc(style: str, fresh: Database) -> None:
    calls = recording(fresh)
    with pytest.raises(BadRequest):  # a reversed key range: rejected by the server
        call(style, fresh.query, "function(doc) { emit(doc.salary, null); }", startkey=50, endkey=10)
    del fresh._request
    assert [c[0] for c in calls] == ["PUT", "GET", "DELETE"]
    assert calls[0][1].startswith("/_design/corduroy-tmp-")
    eventually_equal(lambda: temp_ddocs(fresh), [])


def test_query_bad_input_fails_before_io(staff: Database) -> None:
    calls = recording(staff)
    try:
        with pytest.raises(TypeError):
            staff.query(None)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            staff.query("function(doc) {}", reduce_src=3)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="bogus"):
            staff.query("function(doc) {}", bogus=1)
    finally:
        del staff._request
    assert calls == []


# -- show, list, update --------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_show(style: str, staff: Database) -> None:
    card = call(style, staff.show, "employees/card", "e3", greeting="hello")
    assert isinstance(card, Formatted) and card.code == 200
    assert card.body == b"cullen / hello" and card.text == "cullen / hello"
    assert card.headers["Content-Type"].startswith("text/plain")
    nobody = call(style, staff.show, "_design/employees/card")
    assert nobody.text == "nobody / -"
    info = call(style, staff.show, "employees/info", "e1", greeting="hi there")
    assert info.content_type == "application/json"
    assert info.body == {"id": "e1", "greeting": "hi there"}
    with pytest.raises(NotFound):
        call(style, staff.show, "employees/nosuchshow", "e1")


@pytest.mark.parametrize("style", STYLES)
def test_list(style: str, staff: Database) -> None:
    csv = call(style, staff.list, "employees/csv", "byname", reduce=False, startkey="c", endkey="d",
               inclusive_end=False)
    assert isinstance(csv, Formatted) and csv.content_type == "text/csv"
    assert csv.body == b"coverley,20\ncullen,30\n"
    other = call(style, staff.list, "employees/csv", "other/salaries", startkey=50, limit=2, descending=False)
    assert other.text == "50,reeder\n60,tucker\n"
    picked = call(style, staff.list, "employees/keys", "plain", keys=["tucker", "abbott"], tag="sel")
    assert picked.body == {"keys": ["tucker", "abbott"], "tag": "sel"}
    backwards = call(style, staff.list, "employees/keys", "_design/employees/plain", descending=True, limit=3)
    assert backwards.body["keys"] == ["tucker", "reeder", "murray"]
    with pytest.raises(NotFound):
        call(style, staff.list, "employees/csv", "nosuchview")


def test_list_bad_input_fails_before_io(staff: Database) -> None:
    with pytest.raises(TypeError):
        staff.list("employees/csv", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit"):
        staff.list("employees/csv", "byname", limit=-2)


@pytest.mark.parametrize("style", STYLES)
def test_update(style: str, fresh: Database) -> None:
    created = call(style, fresh.update, "employees/stamp", body={"stamp": "today", "n": 3}, tag="new")
    assert isinstance(created, Formatted) and created.code in (200, 201)
    new_id = created.body["id"]
    assert created.body["form"] == {"stamp": "today", "n": "3"} and created.body["tag"] == "new"
    assert created.headers.get("X-Couch-Update-Newrev", "").startswith("1-")
    doc = fresh.get(new_id)
    assert doc.form == {"stamp": "today", "n": "3"} and doc.tag == "new"

    edited = call(style, fresh.update, "employees/stamp", "e2", body='{"raw": "text"}')
    assert edited.body["id"] == "e2" and edited.body["body"] == '{"raw": "text"}'
    assert fresh.get("e2").body == '{"raw": "text"}' and fresh.get("e2")._rev.startswith("2-")

    echoed = call(style, fresh.update, "employees/echo", body="h\xe9llo")
    assert echoed.content_type == "text/plain" and echoed.text == "got h\xe9llo"
    raw = call(style, fresh.update, "employees/echo", "e5", body=b"raw-bytes")
    assert raw.body == b"got raw-bytes"


def test_update_bad_body_fails_before_io(staff: Database) -> None:
    with pytest.raises(TypeError, match="update body"):
        staff.update("employees/stamp", body=12)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        staff.update("nohandler")


# -- streaming (on_row) -----------------------------------------------------
@needs_streaming
@pytest.mark.parametrize("style", STYLES)
def test_view_on_row_streams_rows(style: str, staff: Database) -> None:
    seen: List[Row] = []
    view = call(style, staff.view, "employees/plain", on_row=seen.append, skip=1)
    assert all(isinstance(r, Row) for r in seen)
    assert [(r.key, r.id) for r in seen] == BY_NAME[1:]
    assert isinstance(view, View) and view.rows == [] and view.total_rows == 7 and view.offset == 1
    with_docs: List[Row] = []
    call(style, staff.view, "employees/plain", on_row=with_docs.append, keys=["tucker"], include_docs=True)
    assert [r.doc.dept for r in with_docs] == ["number10"]


@needs_streaming
@pytest.mark.parametrize("style", STYLES)
def test_all_docs_on_row_streams_rows(style: str, staff: Database) -> None:
    seen: List[Row] = []
    view = call(style, staff.all_docs, on_row=seen.append, keys=["e7", "nope"])
    assert [(r.key, r.error) for r in seen] == [("e7", None), ("nope", "not_found")]
    assert view.rows == [] and repr(view).startswith("<_all_docs: 0/")


@needs_streaming
def test_on_row_missing_view_raises(staff: Database) -> None:
    with pytest.raises(NotFound):
        staff.view("employees/nosuchview", on_row=lambda row: None)
    with pytest.raises(TypeError):
        staff.view("employees/plain", on_row="not callable")


# -- paging ---------------------------------------------------------------------
BIG = 2000
PAGED = {
    "_id": "_design/paged",
    "views": {
        # ~7 rows per key, ids scattered; every 50th doc emits its key twice
        # (identical key and id); every 13th also emits null (a group of 154
        # rows, bigger than a page).
        "bygroup": {
            "map": "function(doc) { if (doc.g === undefined) return; emit(doc.g, doc.i); "
                   "if (doc.i % 50 === 0) emit(doc.g, -doc.i); if (doc.i % 13 === 0) emit(null, 0); }",
            "reduce": "_count",
        },
    },
}


def big_docs() -> List[Dict[str, Any]]:
    return [{"_id": "doc-%04d" % i, "i": i, "g": (i * 37) % 290} for i in range(BIG)]


def expected_pairs() -> List[Tuple[Any, str]]:
    """(key, id) of every row of paged/bygroup, in view order."""
    rows: List[Tuple[int, Any, str]] = []
    for doc in big_docs():
        rows.append((1, doc["g"], doc["_id"]))
        if doc["i"] % 50 == 0:
            rows.append((1, doc["g"], doc["_id"]))
        if doc["i"] % 13 == 0:
            rows.append((0, 0, doc["_id"]))  # null sorts first
    rows.sort()
    return [(None if kind == 0 else key, doc_id) for kind, key, doc_id in rows]


@pytest.fixture(scope="module")
def big(couch_url: str) -> Iterator[Database]:
    """2000 documents and a view with duplicate keys (read-only for tests)."""
    name = "test_views_paging_%s" % uuid.uuid4().hex
    couch = Couch(couch_url)
    db = couch.create(name)
    db.save(big_docs() + [dict(PAGED)], w=EVERY_COPY)
    db.view("paged/bygroup", limit=0)  # build the index once
    yield db
    couch.delete(name)


def pairs(rows: List[Row]) -> List[Tuple[Any, str]]:
    return [(r.key, r.id) for r in rows]


def test_iterview_yields_every_row_once_in_order(big: Database) -> None:
    expected = expected_pairs()
    pager = big.iterview("paged/bygroup", page_size=97)
    assert isinstance(pager, Pager)
    rows = list(pager)
    assert pairs(rows) == expected and len(rows) == len(expected) == 2000 + 40 + 154
    assert pager.done and pager.total_rows == len(expected)
    # the two rows of a doc emitting its key twice both came, once each
    values = [r.value for r in rows if r.id == "doc-0050" and r.key is not None]
    assert sorted(values) == [-50, 50]
    backwards = list(big.iterview("paged/bygroup", page_size=97, descending=True))
    assert pairs(backwards) == expected[::-1]


def test_iterview_pages_with_tiny_pages_and_options(big: Database) -> None:
    expected = expected_pairs()
    assert pairs(list(big.iterview("paged/bygroup", page_size=5, startkey=100, endkey=103))) == [
        p for p in expected if p[0] is not None and 100 <= p[0] <= 103]
    assert pairs(list(big.iterview("paged/bygroup", page_size=3, key=7))) == [p for p in expected if p[0] == 7]
    limited = list(big.iterview("paged/bygroup", page_size=40, limit=250, skip=10))
    assert pairs(limited) == expected[10:260]
    with_docs = list(big.iterview("paged/bygroup", page_size=50, key=12, include_docs=True))
    assert with_docs and all(r.doc["g"] == 12 and r.doc._id == r.id for r in with_docs)


def test_iter_all_docs(big: Database) -> None:
    ids = [r.id for r in big.iter_all_docs(page_size=97)]
    assert ids == ["_design/paged"] + ["doc-%04d" % i for i in range(BIG)]
    tail = [r.id for r in big.iter_all_docs(page_size=7, startkey="doc-1990", descending=True, limit=10)]
    assert tail == ["doc-%04d" % i for i in range(1990, 1980, -1)]


@pytest.mark.parametrize("style", STYLES)
def test_next_page(style: str, big: Database) -> None:
    pager = big.iterview("paged/bygroup", page_size=250, startkey=None, endkey=40)
    pages: List[List[Row]] = []
    while True:
        page = call(style, pager.next_page)
        assert isinstance(page, list)
        if not page:
            break
        assert len(page) <= 250 and all(isinstance(r, Row) for r in page)
        pages.append(page)
    expected = [p for p in expected_pairs() if p[0] is None or p[0] <= 40]
    assert len(pages) == -(-len(expected) // 250) >= 2
    assert pairs([r for p in pages for r in p]) == expected
    assert call(style, pager.next_page) == []  # stays exhausted


def test_pager_async_for(big: Database) -> None:
    async def collect() -> List[Row]:
        return [row async for row in big.iterview("paged/bygroup", page_size=97, descending=True)]

    assert pairs(run_async(collect)) == expected_pairs()[::-1]

    async def collect_ids() -> List[str]:
        return [row.id async for row in big.iter_all_docs(page_size=500, startkey="doc-1000", limit=700)]

    assert run_async(collect_ids) == ["doc-%04d" % i for i in range(1000, 1700)]


def test_pager_in_relax(big: Database) -> None:
    @relax
    def count_pages(pager: Pager) -> Any:
        count = rows = 0
        while True:
            page = yield pager.next_page()
            if not page:
                return count, rows
            count += 1
            rows += len(page)

    assert count_pages(big.iterview("paged/bygroup", page_size=1000)) == (3, len(expected_pairs()))

    @relax
    def blocking_iteration(pager: Pager) -> Any:
        yield None
        return list(pager)

    with pytest.raises(RuntimeError, match="next_page"):
        blocking_iteration(big.iterview("paged/bygroup"))


def test_pager_one_page_at_a_time(big: Database) -> None:
    pager = big.iter_all_docs(page_size=10)
    reactor = loop.get_reactor()
    got: List[Any] = []
    op = pager.next_page(callback=lambda rows, status: (got.append(rows), reactor.stop()))
    with pytest.raises(RuntimeError, match="already"):
        pager.next_page(callback=lambda rows, status: None)
    reactor.run()
    assert isinstance(op, loop.Operation) and len(got[0]) == 10


def test_pager_bad_input_fails_before_io(big: Database) -> None:
    calls = recording(big)
    try:
        for bad in ({"reduce": True}, {"group": True}, {"group_level": 1}, {"keys": [1]}):
            with pytest.raises(ValueError):
                big.iterview("paged/bygroup", **bad)
        with pytest.raises(ValueError, match="page_size"):
            big.iterview("paged/bygroup", page_size=0)
        with pytest.raises(TypeError):
            big.iter_all_docs(reduce=False)
        with pytest.raises(ValueError):
            big.iterview("paged/bygroup", key=1, startkey=0)
        with pytest.raises(ValueError, match="NaN"):
            big.iterview("paged/bygroup", startkey=float("nan"))
        pager = big.iterview("paged/bygroup", limit=0)
        assert list(pager) == [] and pager.done
    finally:
        del big._request
    assert calls == []
