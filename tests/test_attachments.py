"""Attachments: put (bytes, str, binary and text files), get, delete, in every calling style."""
from __future__ import annotations

import io

import pytest

from corduroy import Conflict, ConnectionFailed, Couch, Database, NotFound
from corduroy.attachments import guess_content_type
from tests.conftest import couch_request
from tests.consistency import until_conflict
from tests.styles import STYLES, call

#: Every byte value, several times over: binary content must round-trip untouched.
ALL_BYTES = bytes(range(256)) * 4


@pytest.fixture
def db(couch_url: str, dbname: str) -> Database:
    return Couch(couch_url).create(dbname)


@pytest.fixture
def doc(db: Database) -> dict:
    doc = {"_id": "report", "title": "Quarterly"}
    db.save(doc)
    return doc


def stub(db: Database, doc_id: str, name: str) -> dict:
    """The attachment's stub as the server describes it in the document."""
    return db.get(doc_id)["_attachments"][name]


# -- put_attachment -------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_put_bytes_guesses_type_and_updates_rev(style, db, doc):
    old_rev = doc["_rev"]
    result = call(style, db.put_attachment, doc, b"col1,col2\n1,2\n", "numbers.csv")
    assert result["ok"] is True and result["id"] == "report"
    assert doc["_rev"] == result["rev"] != old_rev          # updated in place
    assert db.get("report")["_rev"] == doc["_rev"]
    assert stub(db, "report", "numbers.csv")["content_type"] == "text/csv"
    assert db.get_attachment("report", "numbers.csv") == b"col1,col2\n1,2\n"


@pytest.mark.parametrize("style", STYLES)
def test_put_str_is_sent_as_utf8_with_explicit_type(style, db, doc):
    call(style, db.put_attachment, doc, "héllo ✓ wörld", "note", content_type="text/markdown")
    assert db.get_attachment(doc, "note") == "héllo ✓ wörld".encode("utf-8")
    info = stub(db, "report", "note")
    assert info["content_type"] == "text/markdown"
    assert info["length"] == len("héllo ✓ wörld".encode("utf-8"))


@pytest.mark.parametrize("style", STYLES)
def test_put_binary_file_takes_name_and_type_from_file(style, db, doc, tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(ALL_BYTES)
    with open(path, "rb") as fh:
        call(style, db.put_attachment, doc, fh)
    assert stub(db, "report", "photo.png")["content_type"] == "image/png"
    assert db.get_attachment("report", "photo.png") == ALL_BYTES


@pytest.mark.parametrize("style", STYLES)
def test_put_text_file_is_encoded_utf8(style, db, doc, tmp_path):
    path = tmp_path / "readme.txt"
    path.write_text("Ünïcode lines\nsecond ✓\n", encoding="utf-8")
    with open(path, "r", encoding="utf-8") as fh:
        call(style, db.put_attachment, doc, fh)
    assert stub(db, "report", "readme.txt")["content_type"] == "text/plain"
    assert db.get_attachment("report", "readme.txt") == "Ünïcode lines\nsecond ✓\n".encode("utf-8")


@pytest.mark.parametrize("style", STYLES)
def test_every_byte_value_round_trips_with_octet_stream_fallback(style, db, doc):
    call(style, db.put_attachment, doc, io.BytesIO(ALL_BYTES), "blob.unknownextension")
    assert stub(db, "report", "blob.unknownextension")["content_type"] == "application/octet-stream"
    assert call(style, db.get_attachment, doc, "blob.unknownextension") == ALL_BYTES


@pytest.mark.parametrize("style", STYLES)
def test_stale_rev_is_a_conflict_and_leaves_rev_alone(style, db):
    def attempt(n):
        doc = {"_id": "report-%d" % n, "title": "Quarterly"}
        db.save(doc)
        stale = dict(doc)
        db.save(doc)  # the server moves on; `stale` keeps the old _rev
        try:
            result = call(style, db.put_attachment, stale, b"late", "late.txt")
        except Conflict:
            assert stale["_rev"] != doc["_rev"]  # left alone
            assert "_attachments" not in db.get(doc["_id"])
            raise
        assert stale["_rev"] == result["rev"]  # accepted (a cluster): the doc follows the server's answer

    until_conflict(attempt)


@pytest.mark.parametrize("style", STYLES)
def test_put_on_a_new_document_creates_it(style, db):
    fresh = {"_id": "born-with-attachment"}
    result = call(style, db.put_attachment, fresh, b"first", "a.txt")
    assert fresh["_rev"] == result["rev"] and result["rev"].startswith("1-")
    assert db.get_attachment("born-with-attachment", "a.txt") == b"first"


@pytest.mark.parametrize("style", STYLES)
def test_names_with_slash_space_and_unicode_round_trip(style, db, doc):
    name = "dir/sub dir/ü?#%.txt"
    call(style, db.put_attachment, doc, b"deep", name)
    assert list(db.get("report")["_attachments"]) == [name]
    assert call(style, db.get_attachment, "report", name) == b"deep"


@pytest.mark.parametrize("style", STYLES)
def test_design_document_attachment(style, db):
    ddoc = {"_id": "_design/site"}
    db.save(ddoc)
    call(style, db.put_attachment, ddoc, "<h1>hi</h1>", "index.html")
    assert stub(db, "_design/site", "index.html")["content_type"] == "text/html"
    assert db.get_attachment(ddoc, "index.html") == b"<h1>hi</h1>"


# -- get_attachment ---------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_get_missing_attachment_or_document_is_not_found(style, db, doc):
    with pytest.raises(NotFound):
        call(style, db.get_attachment, doc, "nothing.txt")
    with pytest.raises(NotFound):
        call(style, db.get_attachment, "no-such-doc", "nothing.txt")


@pytest.mark.parametrize("style", STYLES)
def test_get_attachment_of_an_older_revision(style, db, doc):
    db.put_attachment(doc, b"version one", "v.txt")
    first_rev = doc["_rev"]
    db.put_attachment(doc, b"version two", "v.txt")
    assert call(style, db.get_attachment, "report", "v.txt") == b"version two"
    assert call(style, db.get_attachment, "report", "v.txt", rev=first_rev) == b"version one"


# -- delete_attachment ------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_delete_attachment_updates_rev(style, db, doc):
    db.put_attachment(doc, b"bye", "gone.txt")
    db.put_attachment(doc, b"stay", "kept.txt")
    before = doc["_rev"]
    result = call(style, db.delete_attachment, doc, "gone.txt")
    assert result["ok"] is True
    assert doc["_rev"] == result["rev"] != before
    assert list(db.get("report")["_attachments"]) == ["kept.txt"]
    with pytest.raises(NotFound):
        db.get_attachment(doc, "gone.txt")


@pytest.mark.parametrize("style", STYLES)
def test_delete_attachment_with_stale_rev_is_a_conflict(style, db):
    def attempt(n):
        doc = {"_id": "report-%d" % n}
        db.save(doc)
        db.put_attachment(doc, b"x", "x.txt")
        stale = dict(doc)
        db.put_attachment(doc, b"y", "y.txt")
        try:
            result = call(style, db.delete_attachment, stale, "x.txt")
        except Conflict:
            assert stale["_rev"] != doc["_rev"]
            assert db.get_attachment(doc["_id"], "x.txt") == b"x"
            raise
        assert stale["_rev"] == result["rev"]  # accepted (a cluster; see tests.consistency)

    until_conflict(attempt)


# -- validation happens before any I/O -------------------------------------
def test_bad_input_is_refused_before_any_request():
    # Nothing listens on port 9: a request would fail with ConnectionFailed, not these errors.
    offline = Database("http://127.0.0.1:9/nowhere")
    doc = {"_id": "d", "_rev": "1-abc"}
    with pytest.raises(ValueError, match="_id"):
        offline.put_attachment({"title": "no id"}, b"x", "x.txt")
    with pytest.raises(ValueError, match="filename"):
        offline.put_attachment(doc, b"x")
    with pytest.raises(ValueError, match="filename"):
        offline.put_attachment(doc, "text")
    with pytest.raises(ValueError, match="filename"):
        offline.put_attachment(doc, io.BytesIO(b"nameless"))
    with pytest.raises(TypeError, match="content"):
        offline.put_attachment(doc, 12345, "n.txt")
    with pytest.raises(TypeError, match="content_type"):
        offline.put_attachment(doc, b"x", "x.txt", content_type=b"text/plain")
    with pytest.raises(ValueError, match="line breaks"):
        offline.put_attachment(doc, b"x", "x.txt", content_type="text/plain\r\nX-Evil: 1")
    with pytest.raises(ValueError, match="_"):
        offline.put_attachment(doc, b"x", "_reserved")
    with pytest.raises(ValueError):
        offline.put_attachment(doc, b"x", "")
    with pytest.raises(TypeError):
        offline.put_attachment("d", b"x", "x.txt")
    with pytest.raises(ValueError, match="_rev"):
        offline.delete_attachment({"_id": "d"}, "x.txt")
    with pytest.raises(TypeError):
        offline.get_attachment(42, "x.txt")
    with pytest.raises(ConnectionFailed):  # and a valid call does reach the (absent) server
        offline.get_attachment("d", "x.txt")


def test_guess_content_type():
    assert guess_content_type("a.json") == "application/json"
    assert guess_content_type("a.tar.gz") == "application/gzip"
    assert guess_content_type("no-extension") == "application/octet-stream"


def test_attachment_path_is_quoted_as_one_segment(couch_url, db, doc):
    db.put_attachment(doc, b"slashy", "a/b")
    # The same attachment is reachable with the slash encoded: the name never became two segments.
    status, _ = couch_request(couch_url, "GET", "/%s/report/a%%2Fb" % db.name)
    assert status == 200
