"""Property tests: no name or value can escape its place in a URL, and JSON round-trips exactly.

URLs are built by the real code paths (``corduroy/urls.py`` and each
method's own path building, down to the ``Request`` handed to the curl
driver, which here records it instead of sending it) and parsed back with
:mod:`urllib.parse`: the path segments and query keys must be exactly the
intended ones.  Then real documents with random ids, and random JSON, make
the round trip through the server under test (a bounded number of examples).
"""
from __future__ import annotations

import contextlib
import uuid
from typing import Any, Iterator, List, Tuple
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import loop
from corduroy import Couch, Database, NotFound, codec
from corduroy.http import Server
from loop import Reactor
from tests.consistency import EVERY_COPY, eventually

BASE = "http://127.0.0.1:5984"

#: Offline URL checks: many examples, each cheap.
OFFLINE = settings(max_examples=200, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow])
#: Round trips through the server: a bounded number of examples.
ONLINE = settings(max_examples=25, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Any code point UTF-8 can carry (lone surrogates cannot be sent at all; see
# test_a_lone_surrogate_is_refused_before_any_io).
CHARS = st.characters(blacklist_categories=("Cs",))
NASTY = [
    ".", "..", "../_config", "a/b", "/", "//", "?", "?rev=1", "#", "#frag", "&", "&x=1", "=", ";", "%",
    "%2F", "%2e%2e", "%00", "+", " ", "\t", "\x00", "\n", "\r\n", "\\", "@", ":", "_design/x", "_design/",
    "_local/x", "_all_docs", "_changes", "é", "\u2028", "\U0001f600", "\ufeff", "\uffff",
]
#: Names and values: hostile fragments, random text, and the two mixed.
TEXT = st.one_of(
    st.sampled_from(NASTY),
    st.text(CHARS, min_size=1, max_size=24),
    st.lists(st.one_of(st.sampled_from(NASTY), st.text(CHARS, max_size=4)), min_size=1, max_size=5)
    .map("".join).filter(bool),
)


def reserved(doc_id: str) -> bool:
    """True for an id no document can have: a leading ``_`` other than ``_design/NAME`` or ``_local/NAME``."""
    return doc_id.startswith("_") and not any(
        doc_id.startswith(prefix) and len(doc_id) > len(prefix) for prefix in ("_design/", "_local/"))


#: Document ids: TEXT but the ids that name database endpoints (test_a_reserved_id_is_refused_before_any_io).
DOC_IDS = TEXT.filter(lambda s: not reserved(s))
DB_NAMES = st.from_regex(r"\A[a-z][a-z0-9_$()+/-]{0,40}\Z")
#: JSON scalars; integers include some far beyond 64 bits.
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2 ** 200), max_value=2 ** 200),
    st.floats(allow_nan=False, allow_infinity=False), st.text(CHARS, max_size=12),
)


def json_values(scalars: st.SearchStrategy = SCALARS) -> st.SearchStrategy:
    """Nested JSON: lists and objects (empty keys included) of ``scalars``."""
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(CHARS, max_size=6), inner, max_size=4),
        max_leaves=20,
    )


# -- recording what the methods send -------------------------------------------

class Recorder:
    """A reactor whose curl driver records each submitted ``Request`` instead of sending it."""

    def __init__(self) -> None:
        self.reactor = Reactor.create()
        self.sent: List[loop.Request] = []
        self.reactor.curl.submit = self.sent.append  # what Server.request hands its Request to

    @contextlib.contextmanager
    def installed(self) -> Iterator["Recorder"]:
        """Make the recording reactor this thread's default, for the ``with`` block only."""
        self.sent.clear()
        loop.set_reactor(self.reactor)
        try:
            yield self
        finally:
            loop.set_reactor(None)

    def __call__(self, fn: Any, *args: Any, **kwargs: Any) -> List[Tuple[str, List[str], List[Tuple[str, str]]]]:
        """Call ``fn`` (with a callback, so it returns at once); what it sent, parsed back."""
        with self.installed():
            fn(*args, callback=lambda data, status: None, **kwargs)
        return [(r.method,) + parse(r.url) for r in self.sent]  # type: ignore[misc]


def parse(url: str) -> Tuple[List[str], List[Tuple[str, str]]]:
    """``url``'s path segments (unquoted) and query pairs, checking nothing else got in."""
    assert all(33 <= ord(c) < 127 for c in url), "unquoted character in %r" % url
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.fragment) == ("http", "127.0.0.1:5984", "")
    raw = parts.path.split("/")[1:]
    assert not [s for s in raw if s in (".", "..")], "a dot segment in %r" % url
    segments = [unquote(s, errors="strict") for s in raw]
    query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True,
                      errors="strict") if parts.query else []
    return segments, query


@pytest.fixture(scope="module")
def sent() -> Iterator[Recorder]:
    recorder = Recorder()
    try:
        yield recorder
    finally:
        recorder.reactor.close()


def db_for(name: str = "db") -> Database:
    return Database(name, server=Server(BASE))


def id_segments(doc_id: str) -> List[str]:
    """The path segments a document id must become: itself, or its ``_design``/``_local`` prefix and the rest."""
    for prefix in ("_design/", "_local/"):
        if doc_id.startswith(prefix) and len(doc_id) > len(prefix):
            return [prefix[:-1], doc_id[len(prefix):]]
    return [doc_id]


# -- document ids, attachment names, design documents, views -------------------

@OFFLINE
@given(doc_id=DOC_IDS, rev=TEXT)
def test_a_document_id_is_exactly_its_own_path(sent, doc_id, rev):
    db = db_for()
    where = ["db"] + id_segments(doc_id)
    assert sent(db.get, doc_id) == [("GET", where, [])]
    assert sent(db.get, doc_id, rev=rev) == [("GET", where, [("rev", rev)])]
    assert sent(db.save, {"_id": doc_id, "_rev": rev, "v": 1}) == [("PUT", where, [])]
    assert sent(db.delete, {"_id": doc_id, "_rev": rev}) == [("DELETE", where, [("rev", rev)])]


@OFFLINE
@given(doc_id=st.one_of(TEXT.filter(reserved), TEXT.map(lambda s: "_" + s).filter(reserved)))
def test_a_reserved_id_is_refused_before_any_io(sent, doc_id):
    db = db_for()
    with sent.installed():
        for fn, args in [
            (db.get, (doc_id,)), (db.get, (["ok", doc_id],)), (db.save, ({"_id": doc_id, "v": 1},)),
            (db.save, ([{"_id": "ok"}, {"_id": doc_id}],)), (db.delete, ({"_id": doc_id, "_rev": "1-a"},)),
            (db.get_attachment, (doc_id, "x")), (db.copy, ("ok", doc_id)), (db.show, ("d/s", doc_id)),
        ]:
            with pytest.raises(ValueError):
                fn(*args, callback=print)
    assert sent.sent == []


@OFFLINE
@given(name=DB_NAMES, doc_id=DOC_IDS)
def test_a_database_name_is_exactly_one_segment(sent, name, doc_id):
    db = db_for(name)
    assert sent(db.info) == [("GET", [name], [])]
    assert sent(db.get, doc_id) == [("GET", [name] + id_segments(doc_id), [])]


@OFFLINE
@given(doc_id=DOC_IDS, filename=TEXT, rev=TEXT)
def test_an_attachment_name_is_exactly_one_segment(sent, doc_id, filename, rev):
    db = db_for()
    if filename.startswith("_"):
        with sent.installed(), pytest.raises(ValueError):
            db.get_attachment(doc_id, filename, callback=print)
        assert sent.sent == []
        return
    where = ["db"] + id_segments(doc_id) + [filename]
    doc = {"_id": doc_id, "_rev": rev}
    assert sent(db.put_attachment, doc, b"content", filename) == [("PUT", where, [("rev", rev)])]
    assert sent(db.get_attachment, doc_id, filename) == [("GET", where, [])]
    assert sent(db.get_attachment, doc_id, filename, rev=rev) == [("GET", where, [("rev", rev)])]
    assert sent(db.delete_attachment, doc, filename) == [("DELETE", where, [("rev", rev)])]


@OFFLINE
@given(ddoc=TEXT.filter(lambda s: "/" not in s), func=TEXT, doc_id=DOC_IDS)
def test_design_document_and_function_names_are_exactly_their_segments(sent, ddoc, func, doc_id):
    db = db_for()
    design = ["db", "_design", ddoc]
    name = "_design/%s/%s" % (ddoc, func)
    assert sent(db.info, "_design/" + ddoc) == [("GET", design + ["_info"], [])]
    assert sent(db.view, name) == [("GET", design + ["_view", func], [])]
    assert sent(db.view, name, on_row=print) == [("GET", design + ["_view", func], [])]
    assert sent(db.show, name, doc_id) == [("GET", design + ["_show", func] + id_segments(doc_id), [])]
    assert sent(db.update, name, doc_id) == [("PUT", design + ["_update", func] + id_segments(doc_id), [])]
    assert sent(db.update, name) == [("POST", design + ["_update", func], [])]
    if "/" not in func:
        # A list names a view of its own design document (or "other/view").
        assert sent(db.list, "_design/%s/%s" % (ddoc, func), func) == [
            ("GET", design + ["_list", func, func], [])]
        assert sent(db.list, "_design/%s/lst" % ddoc, "%s/%s" % (ddoc, func)) == [
            ("GET", design + ["_list", "lst", ddoc, func], [])]


@OFFLINE
@given(key=json_values(), startkey=json_values(), docid=TEXT, skip=st.integers(0, 10 ** 12))
def test_view_query_values_are_exactly_their_parameters(sent, key, startkey, docid, skip):
    db = db_for()
    ((method, where, query),) = sent(db.view, "d/v", key=key, startkey_docid=docid, skip=skip)
    assert (method, where) == ("GET", ["db", "_design", "d", "_view", "v"])
    # (A None JSON value is sent as null, after the others: compare as a mapping.)
    assert sorted(name for name, _ in query) == ["key", "skip", "startkey_docid"]
    values = dict(query)
    assert same(codec.decode(values["key"].encode()), key)
    assert values["startkey_docid"] == docid and values["skip"] == str(skip)
    ((_, _, query),) = sent(db.all_docs, startkey=startkey, endkey=key, descending=True)
    assert sorted(name for name, _ in query) == ["descending", "endkey", "startkey"]
    values = dict(query)
    assert same(codec.decode(values["startkey"].encode()), startkey)
    assert same(codec.decode(values["endkey"].encode()), key)
    assert values["descending"] == "true"


@OFFLINE
@given(options=st.dictionaries(TEXT.filter(lambda k: k not in ("callback", "name", "id")), TEXT, max_size=5),
       doc_id=DOC_IDS)
def test_query_names_and_values_never_add_a_parameter(sent, options, doc_id):
    db = db_for()
    ((_, where, query),) = sent(db.show, "d/s", doc_id, **options)
    assert where == ["db", "_design", "d", "_show", "s"] + id_segments(doc_id)
    assert query == list(options.items())


@OFFLINE
@given(prefix=TEXT, suffix=TEXT, surrogate=st.characters(whitelist_categories=("Cs",)))
def test_a_lone_surrogate_is_refused_before_any_io(sent, prefix, suffix, surrogate):
    db = db_for()
    bad = prefix + surrogate + suffix
    with sent.installed():
        for fn, args, kwargs in [
            (db.get, (bad,), {}), (db.get, ("ok",), {"rev": bad}), (db.save, ({"_id": bad},), {}),
            (db.delete, ({"_id": bad, "_rev": "1-a"},), {}), (db.get_attachment, ("ok", "x" + bad), {}),
            (db.view, ("d/" + bad,), {}), (db.view, ("d/v",), {"key": bad}),
            (db.save, ({"_id": "ok", "v": bad},), {}),
        ]:
            with pytest.raises(ValueError):
                fn(*args, callback=print, **kwargs)
    assert sent.sent == []


# -- JSON through the codec -------------------------------------------------------

def same(a: Any, b: Any, exact: bool = True) -> bool:
    """``a`` and ``b`` are the same JSON: types, values, key order (and -0.0) when ``exact``.

    Not ``exact``: numbers compare by value (a server may send ``1.0`` back
    as ``1``), a float as the same double, and object keys in any order.
    """
    if isinstance(a, dict) or isinstance(b, dict):
        if not (isinstance(a, dict) and isinstance(b, dict)) or len(a) != len(b):
            return False
        if exact and list(a) != list(b):
            return False
        return all(k in b and same(v, b[k], exact) for k, v in a.items())
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(
            same(x, y, exact) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None or isinstance(a, str):
        return type(a) is type(b) and a == b
    if exact:
        if type(a) is not type(b):
            return False
        return repr(a) == repr(b) if isinstance(a, float) else a == b
    if not isinstance(b, (int, float)):
        return False
    if isinstance(a, float) or isinstance(b, float):
        # A double may come back written as an integer (JavaScript prints
        # 1.845511537678677e16 as 18455115376786770): the same double is enough.
        return float(a) == float(b)
    return a == b


@settings(max_examples=400, deadline=None, database=None)
@given(value=json_values())
def test_the_codec_round_trips_json_exactly(value):
    encoded = codec.encode(value)
    assert isinstance(encoded, bytes)
    encoded.decode("utf-8")  # valid UTF-8, whatever the text
    assert same(codec.decode(encoded), value)
    assert same(codec.decode(b" \n" + encoded + b"\n"), value)  # as CouchDB frames it


def test_the_codec_round_trips_the_edges():
    for value in [2 ** 64 + 1, -(2 ** 200), 0.1, -0.0, 5e-324, 1.7976931348623157e308, "", {"": {"": []}},
                  "\x00\u2028\U0001f600", [[[[[[]]]]]], {"a": 1, "b": 2, "": 3}]:
        assert same(codec.decode(codec.encode(value)), value), value


# -- round trips through the server -------------------------------------------------

#: Ids the server accepts: anything not starting with "_" (CouchDB reserves those).
SERVER_IDS = TEXT.filter(lambda s: not s.startswith("_"))
#: The smallest positive double, as JSON writes it: Apache CouchDB 3.4 (its
#: jiffy JSON parser) reads the text ``5e-324`` as 0.0, though ``4.9e-324``
#: and every larger subnormal come back exact; pouchdb-server keeps it.  The
#: CouchDB documentation ("Number Handling") promises only that numbers with
#: a fraction or exponent pass through the Erlang VM's doubles.
TINIEST = 5e-324
#: JSON every CouchDB-compatible server keeps exactly: integers within the
#: IEEE double range (see test_big_integers_round_trip_through_the_server),
#: doubles but the tiniest.
SAFE = st.one_of(
    st.none(), st.booleans(), st.integers(-(2 ** 53), 2 ** 53),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: abs(f) != TINIEST),
    st.text(CHARS, max_size=12),
)
BODIES = st.dictionaries(st.text(CHARS, max_size=8).filter(lambda k: not k.startswith("_")),
                         json_values(SAFE), max_size=5)


@pytest.fixture(scope="module")
def server_db(couch_url) -> Iterator[Database]:
    name = "test_%s" % uuid.uuid4().hex
    Couch(couch_url).create(name)
    try:
        yield Database(couch_url + "/" + name, timeout=30)  # a hang fails the example instead of the run
    finally:
        Couch(couch_url).delete(name)


@ONLINE
@given(doc_id=SERVER_IDS, filename=SERVER_IDS)
def test_documents_with_random_ids_round_trip_through_the_server(server_db, doc_id, filename):
    db = server_db
    doc = {"_id": doc_id, "v": doc_id}
    try:
        doc["_rev"] = db.get(doc_id)["_rev"]  # hypothesis tried this id before
    except NotFound:
        pass
    db.save(doc, w=EVERY_COPY)  # in every copy before _all_docs reads it (a cluster: tests.consistency)
    got = db.get(doc_id)
    assert got["_id"] == doc_id and got["v"] == doc_id and got["_rev"] == doc["_rev"]

    def listed() -> None:
        assert [row.id for row in db.all_docs(key=doc_id)] == [doc_id]
        assert [row.id for row in db.all_docs(keys=[doc_id])] == [doc_id]

    # An id tried before: a copy still catching up on its deletion refuses the save above,
    # which is then in the other copies only (tests.consistency).
    eventually(listed)
    db.put_attachment(doc, filename.encode("utf-8"), filename, "text/plain")
    assert db.get_attachment(doc_id, filename) == filename.encode("utf-8")
    assert list(db.get(doc_id)["_attachments"]) == [filename]
    db.delete(doc)
    with pytest.raises(NotFound):
        db.get(doc_id)


@ONLINE
@given(body=BODIES)
def test_json_round_trips_through_the_server(server_db, body):
    db = server_db
    doc = dict(body, _id=uuid.uuid4().hex)
    db.save(doc)
    got = db.get(doc["_id"])
    assert same(got, doc, exact=False)


def test_the_tiniest_double_through_the_server(server_db, server_kind):
    server_db.save({"_id": "tiniest", "n": TINIEST, "m": -TINIEST, "near": 1e-323})
    got = server_db.get("tiniest")
    assert got["near"] == 1e-323
    if server_kind == "couchdb":  # its parser's doing, not ours: the client sent "5e-324"
        assert got["n"] in (TINIEST, 0.0) and got["m"] in (-TINIEST, 0.0)
    else:
        assert got["n"] == TINIEST and got["m"] == -TINIEST


def test_big_integers_round_trip_through_the_server(server_db):
    db = server_db
    big = [2 ** 53 + 1, -(2 ** 63) - 7, 2 ** 64 + 1, 10 ** 40 + 3]
    doc = {"_id": "big-ints", "n": big, "nested": {"n": big[2]}}
    db.save(doc)
    got = db.get("big-ints")
    if got["n"] != big and all(isinstance(n, (int, float)) and float(n) == float(b) for n, b in zip(got["n"], big)):
        # The server answered with the nearest doubles: it stores numbers as
        # IEEE doubles (pouchdb-server on Node.js does; Apache CouchDB keeps them).
        pytest.skip("this server stores numbers as IEEE doubles: %r came back as %r" % (big, got["n"]))
    assert got["n"] == big and all(type(n) is int for n in got["n"])
    assert got["nested"]["n"] == big[2]


@pytest.mark.parametrize("ddoc, view", [
    ("a b c", "by?x=1"), ("..", "."), ("é&#", "%2F"), ("\U0001f600", "a b;c=d"),
])
def test_odd_design_document_and_view_names_work_on_the_server(server_db, ddoc, view):
    db = server_db
    ddoc_id = "_design/" + ddoc
    # In every copy before the view reads them (a cluster: tests.consistency).
    db.save({"_id": ddoc_id, "views": {view: {"map": "function (doc) { if (doc.tag) emit(doc.tag, 1); }"}}},
            w=EVERY_COPY)
    db.save({"_id": "tagged-" + uuid.uuid4().hex, "tag": ddoc + view}, w=EVERY_COPY)
    rows = db.view("%s/%s" % (ddoc_id, view), key=ddoc + view)
    assert [row.key for row in rows] == [ddoc + view]
    assert db.get(ddoc_id)["_id"] == ddoc_id
    assert isinstance(db.info(ddoc_id), dict)
