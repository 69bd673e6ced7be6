"""Compression: gzip/deflate answers accepted, large JSON request bodies sent gzip-compressed.

On the wire against a recording server (tests/test_headers.py's), end to
end against the server under test (pouchdb-server, or CouchDB with
``COUCHDB_URL``: CouchDB 3 accepts ``Content-Encoding: gzip`` bodies, and
serves compressible attachments gzip-encoded to a client that asks).
"""
from __future__ import annotations

import gzip
import json
from typing import Any, Iterator

import pytest

from corduroy import Couch, Database
from corduroy.http import DEFAULT_COMPRESS_MIN_SIZE
from tests.consistency import eventually_equal
from tests.styles import STYLES, call
from tests.test_headers import Recorder, recorder  # noqa: F401  (the fixture)


def _big_doc(n: int = 0) -> dict:
    return {"_id": "doc%05d" % n, "text": "the same words again and again " * 100, "n": n}


@pytest.mark.parametrize("style", STYLES)
def test_large_json_bodies_are_sent_gzip_compressed(recorder: Recorder, style: str) -> None:  # noqa: F811
    db = Database(recorder.url + "/db", compress_requests=True)
    call(style, db.save, _big_doc())
    seen = recorder.last()
    assert seen["headers"]["content-encoding"] == "gzip"
    assert seen["headers"]["content-type"] == "application/json"
    plain = gzip.decompress(seen["body"])
    assert json.loads(plain)["n"] == 0 and len(seen["body"]) < len(plain) / 5


def test_small_bodies_and_attachments_go_as_they_are(recorder: Recorder) -> None:  # noqa: F811
    db = Database(recorder.url + "/db", compress_requests=True)
    db.save({"_id": "small"})
    assert "content-encoding" not in recorder.last()["headers"]
    assert len(json.dumps({"_id": "small"})) < DEFAULT_COMPRESS_MIN_SIZE
    db.put_attachment({"_id": "doc", "_rev": "1-a"}, b"x" * 5000, "big.txt", "text/plain")
    seen = recorder.last()
    assert "content-encoding" not in seen["headers"] and seen["body"] == b"x" * 5000


def test_a_size_threshold_and_off_by_default(recorder: Recorder) -> None:  # noqa: F811
    Database(recorder.url + "/db", compress_requests=10).save({"_id": "a", "v": "0123456789"})
    assert recorder.last()["headers"]["content-encoding"] == "gzip"
    Database(recorder.url + "/db").save(_big_doc())
    assert "content-encoding" not in recorder.last()["headers"]


@pytest.mark.parametrize("bad", [-1, 1.5, "yes", None])
def test_bad_compress_requests_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="compress_requests"):
        Couch("http://127.0.0.1:1", compress_requests=bad)


@pytest.mark.parametrize("style", STYLES)
def test_compressed_answers_are_decoded(recorder: Recorder, style: str) -> None:  # noqa: F811
    recorder.gzip_answers = True
    db = Database(recorder.url + "/db")
    assert call(style, db.get, "doc")["_id"] == "doc"
    assert "gzip" in recorder.last()["headers"]["accept-encoding"]


def test_accept_compressed_off(recorder: Recorder) -> None:  # noqa: F811
    Database(recorder.url + "/db", accept_compressed=False).get("doc")
    assert "accept-encoding" not in recorder.last()["headers"]
    with pytest.raises(TypeError):
        Couch("http://127.0.0.1:1", accept_compressed="no")


# -- against the server under test ------------------------------------------------------

@pytest.fixture
def compressed_db(couch_url: str, dbname: str) -> Iterator[Database]:
    couch = Couch(couch_url, compress_requests=True)
    couch.create(dbname)
    yield couch.database(dbname)


@pytest.mark.parametrize("style", STYLES)
def test_compressed_bulk_insert_against_the_server(compressed_db: Database, style: str) -> None:
    docs = [_big_doc(n) for n in range(200)]
    result = call(style, compressed_db.save, docs)
    assert result is not None
    assert compressed_db.get("doc00199")["text"] == docs[199]["text"]
    eventually_equal(lambda: compressed_db.info()["doc_count"], 200)  # any copy answers info (tests.consistency)
    one = _big_doc(1000)
    call(style, compressed_db.save, one)  # one large document: PUT, compressed
    assert call(style, compressed_db.get, "doc01000")["n"] == 1000


@pytest.mark.parametrize("style", STYLES)
def test_compressible_attachment_round_trip(compressed_db: Database, style: str) -> None:
    body = b"line of text that compresses well\n" * 2000
    compressed_db.save({"_id": "att"})
    compressed_db.put_attachment(compressed_db.get("att"), body, "notes.txt", "text/plain")
    assert call(style, compressed_db.get_attachment, "att", "notes.txt") == body
