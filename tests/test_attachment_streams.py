"""Streamed attachments: upload from files and iterators, download into files and functions, with progress.

Every I/O call runs in the four calling styles; bad input is refused before
any request; a failing stream stores nothing on the server.
"""
from __future__ import annotations

import hashlib
import io
import os

import pytest

from corduroy import ConnectionFailed, Couch, Database, NotFound, UnknownOutcome
from corduroy.attachment_streams import UploadSource
from tests.consistency import EVERY_COPY
from tests.proxy import FaultProxy
from tests.styles import STYLES, call

#: A body bigger than libcurl's buffers, so it moves in many pieces; every byte value in it.
BIG = bytes(range(256)) * 4096 + b"tail"          # 1 MiB + 4 bytes


@pytest.fixture
def db(couch_url: str, dbname: str) -> Database:
    return Couch(couch_url).create(dbname)


@pytest.fixture
def doc(db: Database) -> dict:
    doc = {"_id": "disk", "title": "An image"}
    # every copy has it (tests.consistency): _all_docs finds it, and a save without _rev meets a 409 everywhere
    db.save(doc, w=EVERY_COPY)
    return doc


def chunks_of(data: bytes, size: int = 100_000):
    """A generator of ``data`` in pieces (not a list: it can be read once, and has no length)."""
    for i in range(0, len(data), size):
        yield data[i:i + size]


def stored(db: Database, doc_id: str, name: str) -> dict:
    return db.get(doc_id)["_attachments"][name]


def assert_nothing_stored(db: Database, doc: dict, server_kind: str) -> None:
    """The aborted upload left the document as it was (CouchDB discards a request body cut short)."""
    if server_kind == "pouchdb":
        pytest.xfail("pouchdb-server stores an empty attachment from a request body the client aborted "
                     "(a little after the request failed); CouchDB discards it. The client side was checked.")
    now = db.get(doc["_id"])
    assert "_attachments" not in now and now["_rev"] == doc["_rev"]


# -- uploads -----------------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_upload_from_binary_file_is_streamed_with_its_length(style, db, doc, tmp_path):
    path = tmp_path / "image.iso"
    path.write_bytes(BIG)
    seen = []
    with open(path, "rb") as fh:
        result = call(style, db.put_attachment, doc, fh, progress=lambda sent, total: seen.append((sent, total)))
    assert result["ok"] and doc["_rev"] == result["rev"]
    info = stored(db, "disk", "image.iso")
    assert info["length"] == len(BIG)
    assert seen[-1] == (len(BIG), len(BIG))                       # total known: the file's size
    assert len(seen) > 1 and [s for s, _ in seen] == sorted(s for s, _ in seen)
    assert db.get_attachment("disk", "image.iso") == BIG


@pytest.mark.parametrize("style", STYLES)
def test_upload_from_generator_without_length_is_chunked(style, db, doc):
    seen = []
    call(style, db.put_attachment, doc, chunks_of(BIG), "gen.bin",
         progress=lambda sent, total: seen.append((sent, total)))
    assert seen[-1] == (len(BIG), None)                           # no total: sent chunked
    assert db.get_attachment("disk", "gen.bin") == BIG
    assert stored(db, "disk", "gen.bin")["content_type"] == "application/octet-stream"


@pytest.mark.parametrize("style", STYLES)
def test_upload_from_generator_with_exact_length(style, db, doc):
    call(style, db.put_attachment, doc, chunks_of(BIG, 7777), "sized.bin", length=len(BIG))
    assert db.get_attachment("disk", "sized.bin") == BIG


@pytest.mark.parametrize("style", STYLES)
def test_upload_part_of_a_file_from_its_position(style, db, doc, tmp_path):
    path = tmp_path / "log.txt"
    path.write_bytes(b"HEADER\n" + b"line\n" * 10)
    with open(path, "rb") as fh:
        fh.seek(7)
        call(style, db.put_attachment, doc, fh, "part.txt", length=10)
        assert fh.tell() == 17
    assert db.get_attachment("disk", "part.txt") == b"line\nline\n"


@pytest.mark.parametrize("style", STYLES)
def test_upload_text_file_streams_utf8(style, db, doc, tmp_path):
    path = tmp_path / "notes.txt"
    text = "Ünïcode ✓ line\n" * 20000
    path.write_text(text, encoding="utf-8")
    with open(path, "r", encoding="utf-8") as fh:
        call(style, db.put_attachment, doc, fh)
    assert db.get_attachment("disk", "notes.txt") == text.encode("utf-8")
    assert stored(db, "disk", "notes.txt")["content_type"] == "text/plain"


def test_upload_of_an_empty_iterator_and_empty_file(db, doc, tmp_path):
    db.put_attachment(doc, iter([]), "empty.bin")
    assert db.get_attachment("disk", "empty.bin") == b""
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    with open(path, "rb") as fh:
        db.put_attachment(doc, fh)
    assert stored(db, "disk", "empty.txt")["length"] == 0


# -- downloads ---------------------------------------------------------------
@pytest.fixture
def big_doc(db: Database, doc: dict) -> dict:
    db.put_attachment(doc, BIG, "image.iso")
    return doc


@pytest.mark.parametrize("style", STYLES)
def test_download_into_binary_file(style, db, big_doc, tmp_path):
    path = tmp_path / "copy.iso"
    seen = []
    with open(path, "wb") as fh:
        fh.write(b"kept")
        received = call(style, db.get_attachment, "disk", "image.iso", into=fh,
                        progress=lambda got, total: seen.append((got, total)))
    assert received == len(BIG)
    assert path.read_bytes() == b"kept" + BIG
    assert len(seen) > 1 and seen[-1][0] == len(BIG)
    assert seen[-1][1] in (len(BIG), None)   # None when the server sends it compressed or chunked


@pytest.mark.parametrize("style", STYLES)
def test_download_to_a_function_of_chunks(style, db, big_doc):
    digest = hashlib.sha256()
    pieces = []

    def consume(chunk):
        pieces.append(len(chunk))
        digest.update(chunk)

    assert call(style, db.get_attachment, big_doc, "image.iso", into=consume) == len(BIG)
    assert digest.digest() == hashlib.sha256(BIG).digest()
    assert len(pieces) > 1 and max(pieces) < len(BIG)


@pytest.mark.parametrize("style", STYLES)
def test_download_with_progress_only_returns_bytes(style, db, big_doc):
    seen = []
    data = call(style, db.get_attachment, "disk", "image.iso", progress=lambda got, total: seen.append(got))
    assert data == BIG and seen[-1] == len(BIG)


@pytest.mark.parametrize("style", STYLES)
def test_download_of_missing_attachment_writes_nothing(style, db, doc, tmp_path):
    path = tmp_path / "nothing.bin"
    with open(path, "wb") as fh:
        with pytest.raises(NotFound):
            call(style, db.get_attachment, "disk", "nothing.bin", into=fh)
    assert path.read_bytes() == b""


def test_download_consumer_error_fails_the_call_and_truncates_the_file(db, big_doc, tmp_path):
    path = tmp_path / "half.iso"

    class Full(OSError):
        pass

    with open(path, "wb") as fh:
        written = []

        def progress(got, total):
            written.append(got)
            if got > len(BIG) // 2:
                raise Full("disk full")

        with pytest.raises(Full, match="disk full"):
            db.get_attachment("disk", "image.iso", into=fh, progress=progress)
    assert written and path.read_bytes() == b""   # no half attachment left behind


# -- bad input: refused before any request ---------------------------------------
def test_bad_streams_are_refused_before_any_request(tmp_path):
    offline = Database("http://127.0.0.1:9/nowhere")          # a request would be ConnectionFailed
    doc = {"_id": "d", "_rev": "1-abc"}
    path = tmp_path / "f.bin"
    path.write_bytes(b"12345")
    fh = open(path, "rb")
    fh.close()
    with pytest.raises(ValueError, match="closed file"):
        offline.put_attachment(doc, fh)
    with pytest.raises(ValueError, match="negative"):
        offline.put_attachment(doc, iter([b"x"]), "x.bin", length=-1)
    with pytest.raises(TypeError, match="length"):
        offline.put_attachment(doc, iter([b"x"]), "x.bin", length="1")
    with pytest.raises(TypeError, match="length"):
        offline.put_attachment(doc, iter([b"x"]), "x.bin", length=True)
    with pytest.raises(TypeError, match="chunk 1 .* a str"):
        offline.put_attachment(doc, [b"ok", "text"], "x.bin")
    with pytest.raises(ValueError, match="add up to 2"):
        offline.put_attachment(doc, [b"ok"], "x.bin", length=3)
    with open(path, "rb") as short:
        with pytest.raises(ValueError, match="only 5 bytes left"):
            offline.put_attachment(doc, short, length=6)
    with open(path, "ab") as write_only:
        with pytest.raises(ValueError, match="not open for reading"):
            offline.put_attachment(doc, write_only)
    with pytest.raises(ValueError, match="filename"):
        offline.put_attachment(doc, iter([b"x"]))
    with pytest.raises(TypeError, match="progress"):
        offline.put_attachment(doc, iter([b"x"]), "x.bin", progress="yes")

    async def agen():
        yield b"x"

    with pytest.raises(TypeError, match="async iterator"):
        offline.put_attachment(doc, agen(), "x.bin")
    with open(tmp_path / "t.txt", "w") as text:
        with pytest.raises(TypeError, match="binary mode"):
            offline.get_attachment("d", "x.bin", into=text)
    closed = open(tmp_path / "c.bin", "wb")
    closed.close()
    with pytest.raises(ValueError, match="closed file"):
        offline.get_attachment("d", "x.bin", into=closed)
    with pytest.raises(TypeError, match="into="):
        offline.get_attachment("d", "x.bin", into=42)
    with pytest.raises(ConnectionFailed):   # a valid call does reach the (absent) server
        offline.put_attachment(doc, iter([b"x"]), "x.bin")


# -- bad input found while streaming: the request fails, nothing is stored ---------
@pytest.mark.parametrize("style", STYLES)
def test_iterator_with_a_str_chunk_fails_and_stores_nothing(style, db, doc, server_kind):
    def chunks():
        yield b"a" * 100_000
        yield "not bytes"

    with pytest.raises(TypeError, match="str chunk"):
        call(style, db.put_attachment, doc, chunks(), "bad.bin")
    assert_nothing_stored(db, doc, server_kind)


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("given,length", [(10, 11), (12, 11), (11, 0)])
def test_length_that_does_not_match_the_iterator_fails_and_stores_nothing(style, db, doc, given, length,
                                                                          server_kind):
    rev = doc["_rev"]
    with pytest.raises(ValueError, match="length=%d" % length):
        call(style, db.put_attachment, doc, chunks_of(b"x" * given, 3), "wrong.bin", length=length)
    assert doc["_rev"] == rev
    assert_nothing_stored(db, doc, server_kind)


def test_file_that_fails_to_read_fails_the_upload(db, doc, server_kind):
    class Broken(io.RawIOBase):
        name = "broken.bin"

        def readable(self):
            return True

        def readinto(self, buffer):
            raise OSError("device gone")

    with pytest.raises(OSError, match="device gone"):
        db.put_attachment(doc, Broken())
    assert_nothing_stored(db, doc, server_kind)


def test_an_iterator_is_never_sent_twice():
    source = UploadSource(chunks_of(b"abcdef", 2))
    source.start()
    assert source.read(4) == b"ab"
    source.start()                                   # what a resend does
    assert source.failure is not None and "second time" in str(source.failure)


def test_a_seekable_file_rewinds_for_a_resend(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"0123456789")
    with open(path, "rb") as fh:
        fh.seek(2)
        source = UploadSource(fh)
        source.start()
        assert source.read(3) == b"234" and source.sent == 3
        source.start()
        assert source.read(100) == b"23456789" and source.read(100) == b""
        assert source.failure is None


# -- a hostile network: the connection dies mid-upload / mid-download ----------------
def test_connection_cut_mid_upload_is_an_unknown_outcome_and_stores_nothing(couch_url, db, doc, server_kind):
    with FaultProxy.for_url(couch_url) as proxy:
        via = Database(proxy.url + "/" + db.name, auth=db.server._credentials)
        sent = []

        def chunks():
            for piece in chunks_of(BIG * 4, 65536):
                sent.append(len(piece))
                if len(sent) == 8:
                    proxy.sever()
                yield piece

        with pytest.raises((UnknownOutcome, ConnectionFailed)):
            via.put_attachment(dict(doc), chunks(), "cut.bin")
    assert len(sent) < len(BIG * 4) // 65536          # it stopped reading when the connection died
    assert_nothing_stored(db, doc, server_kind)


def test_connection_cut_mid_download_truncates_the_file(couch_url, db, big_doc, tmp_path):
    path = tmp_path / "cut.iso"
    with FaultProxy.for_url(couch_url) as proxy:
        via = Database(proxy.url + "/" + db.name, auth=db.server._credentials)
        proxy.truncate_after(len(BIG) // 2)
        with open(path, "wb") as fh:
            with pytest.raises(ConnectionFailed):
                via.get_attachment("disk", "image.iso", into=fh)
    assert os.path.getsize(path) == 0


# -- memory: RSS stays flat whatever the size ----------------------------------------
def _rss_round_trip(db: Database, size: int, tmp_path) -> dict:
    from benchmarks.attachment_rss import measure

    figures = measure(db, size, str(tmp_path))
    print("\n[attachment rss] %s" % figures)
    return figures


def test_rss_stays_flat_while_a_big_attachment_goes_up_and_down(db, tmp_path, server_kind):
    # pouchdb-server holds attachments in memory and refuses much more than this.
    size = (48 if server_kind == "pouchdb" else 256) * 1024 * 1024
    figures = _rss_round_trip(db, size, tmp_path)
    # Buffered, the body alone would add its whole size each way; streamed, the growth is libcurl's buffers.
    assert figures["growth_kib"] < 16 * 1024, figures
    assert not list(tmp_path.iterdir())                 # the files were removed


@pytest.mark.soak
def test_rss_growth_under_50_mib_for_a_1_gib_attachment(db, tmp_path, server_kind):
    if server_kind == "pouchdb":
        pytest.skip("pouchdb-server keeps attachments in memory: run this against CouchDB "
                    "(tests/server/with-couchdb ... pytest -m soak)")
    figures = _rss_round_trip(db, 1024 * 1024 * 1024, tmp_path)
    assert figures["growth_kib"] < 50 * 1024, figures


# -- multipart/related: a document and its attachments in one request -----------------
def needs_multipart_put(server_kind: str) -> None:
    if server_kind == "pouchdb":
        pytest.skip("pouchdb-server 4.2.0 lacks multipart/related PUT: it resets the connection and its "
                    "process dies (CouchDB documents and supports it)")


@pytest.fixture
def dune(db: Database) -> dict:
    """A document with two attachments, written the ordinary way (any server)."""
    doc = {"_id": "dune"}
    db.put_attachment(doc, BIG, "cover.png")
    db.put_attachment(doc, b"Arrakis.", "blurb.txt")
    return doc


@pytest.mark.parametrize("style", STYLES)
def test_save_with_file_objects_in_attachments_is_one_multipart_request(style, db, tmp_path, server_kind):
    needs_multipart_put(server_kind)
    cover = tmp_path / "cover.png"
    cover.write_bytes(BIG)
    with open(cover, "rb") as fh:
        book = {"_id": "dune", "title": "Dune", "_attachments": {
            "cover.png": fh,                                                  # a file object, as in 0.9.0
            "blurb.txt": b"Arrakis.",                                         # bytes
            "chapters.txt": {"data": chunks_of(b"chapter\n" * 5000, 999),     # an iterator with its length
                             "content_type": "text/x-chapters", "length": 40000},
        }}
        result = call(style, db.save, book, w=EVERY_COPY)
    assert result.ok and book["_rev"].startswith("1-")                       # one write: revision 1
    assert book["_attachments"]["cover.png"] == {"stub": True, "content_type": "image/png", "length": len(BIG)}
    stubs = db.get("dune")["_attachments"]
    assert stubs["chapters.txt"]["content_type"] == "text/x-chapters" and stubs["chapters.txt"]["length"] == 40000
    assert db.get_attachment("dune", "cover.png") == BIG
    assert db.get_attachment("dune", "blurb.txt") == b"Arrakis."
    assert db.get_attachment("dune", "chapters.txt") == b"chapter\n" * 5000
    book["title"] = "Dune (1965)"
    db.save(book)                                                             # the stubs keep the attachments
    assert db.get_attachment("dune", "blurb.txt") == b"Arrakis."


def test_multipart_save_keeps_existing_stubs_and_gets_an_id(db, server_kind):
    needs_multipart_put(server_kind)
    doc = {"_attachments": {"a.txt": b"alpha"}}
    db.save(doc, w=EVERY_COPY)                 # every copy has it: the stub below is valid on any node
    assert doc["_id"] and doc["_rev"].startswith("1-")
    doc["_attachments"]["b.txt"] = {"data": io.BytesIO(b"beta"), "content_type": "text/plain"}
    db.save(doc)
    assert db.get_attachment(doc, "a.txt") == b"alpha" and db.get_attachment(doc, "b.txt") == b"beta"


def test_multipart_save_conflict_raises_and_sends_nothing_twice(db, doc, server_kind):
    needs_multipart_put(server_kind)
    stale = {"_id": "disk", "_attachments": {"x.bin": b"late"}}              # no _rev: the doc exists
    from corduroy import Conflict
    with pytest.raises(Conflict):
        db.save(stale)
    assert "_rev" not in stale and "_attachments" not in db.get("disk")


def test_multipart_save_bad_input_is_refused_before_any_request(tmp_path):
    offline = Database("http://127.0.0.1:9/nowhere")
    closed = open(tmp_path / "c.bin", "wb")
    closed.close()
    with pytest.raises(ValueError, match="closed file"):
        offline.save({"_id": "d", "_attachments": {"c.bin": closed}})
    with pytest.raises(ValueError, match="length is not known"):
        offline.save({"_id": "d", "_attachments": {"g.bin": iter([b"x"])}})
    with pytest.raises(ValueError, match="negative"):
        offline.save({"_id": "d", "_attachments": {"g.bin": {"data": iter([b"x"]), "length": -2}}})
    with pytest.raises(ValueError, match="merge"):
        offline.save({"_id": "d", "_attachments": {"a": b"x"}}, force=True)
    with pytest.raises(ValueError, match="_"):
        offline.save({"_id": "d", "_attachments": {"_bad": b"x"}})
    nameless = {"_attachments": {"a.txt": {"data": b"x", "digest": "md5-x"}}}
    with pytest.raises(ValueError, match="digest"):
        offline.save(nameless)
    assert "_id" not in nameless                      # nothing was changed in the refused doc
    with pytest.raises(ConnectionFailed):
        offline.save({"_id": "d", "_attachments": {"a.txt": b"x"}})


@pytest.mark.parametrize("style", STYLES)
def test_get_with_attachments_reads_multipart(style, db, dune):
    doc = call(style, db.get_with_attachments, "dune")
    assert doc["_id"] == "dune"
    assert doc["_attachments"]["cover.png"]["data"] == BIG
    assert doc["_attachments"]["blurb.txt"]["data"] == b"Arrakis."
    assert doc["_attachments"]["blurb.txt"]["content_type"] == "text/plain"


@pytest.mark.parametrize("style", STYLES)
def test_get_with_attachments_into_files(style, db, dune, tmp_path):
    opened = {}

    def into(name, stub):
        assert stub["content_type"] in ("image/png", "text/plain")
        opened[name] = open(tmp_path / name, "wb")
        return opened[name]

    doc = call(style, db.get_with_attachments, "dune", into=into)
    for fh in opened.values():
        fh.close()
    assert sorted(opened) == ["blurb.txt", "cover.png"]
    assert (tmp_path / "cover.png").read_bytes() == BIG
    assert (tmp_path / "blurb.txt").read_bytes() == b"Arrakis."
    assert "data" not in doc["_attachments"]["cover.png"]


def test_get_with_attachments_of_a_missing_doc_and_a_doc_without_attachments(db, doc):
    with pytest.raises(NotFound):
        db.get_with_attachments("nothing-here")
    plain = db.get_with_attachments("disk")
    assert plain["title"] == "An image" and "_attachments" not in plain
    with pytest.raises(ValueError, match="open_revs"):
        db.get_with_attachments("disk", open_revs="all")


def test_get_with_attachments_error_in_into_fails_the_call(db, dune):
    def into(name, stub):
        raise RuntimeError("no room for %s" % name)

    with pytest.raises(RuntimeError, match="no room for"):
        db.get_with_attachments("dune", into=into)


# -- the multipart reader, piece by piece ------------------------------------------------
MULTIPART = (b"--B1\r\nContent-Type: application/json\r\n\r\n"
             b'{"_id":"d","_attachments":{"a.txt":{"follows":true,"length":11},"b.bin":{"follows":true}}}'
             b"\r\n--B1\r\nContent-Disposition: attachment; filename=\"b.bin\"\r\n\r\n"
             b"\r\n--B2 is not the delimiter\r\n--B"
             b"\r\n--B1\r\n\r\nhello world"
             b"\r\n--B1--")


@pytest.mark.parametrize("piece", [1, 2, 5, 7, 64, len(MULTIPART)])
def test_multipart_answer_split_anywhere_reads_the_same(piece):
    from corduroy.multipart import AttachmentsAnswer

    class Answered:
        header_lines = [b"HTTP/1.1 200 OK\r\n", b'Content-Type: multipart/related; boundary="B1"\r\n']

    answer = AttachmentsAnswer()
    answer.request = Answered()
    for i in range(0, len(MULTIPART), piece):
        answer(MULTIPART[i:i + piece])
    doc = answer.finish()
    assert doc["_attachments"]["b.bin"]["data"] == b"\r\n--B2 is not the delimiter\r\n--B"
    assert doc["_attachments"]["a.txt"]["data"] == b"hello world"        # the part with no headers: in order
    assert "follows" not in doc["_attachments"]["a.txt"]


def test_multipart_answer_cut_short_is_malformed():
    from corduroy.multipart import AttachmentsAnswer, MalformedAnswer

    class Answered:
        header_lines = [b'Content-Type: multipart/related; boundary="B1"\r\n']

    answer = AttachmentsAnswer()
    answer.request = Answered()
    answer(MULTIPART[:-10])
    with pytest.raises(MalformedAnswer, match="closing delimiter"):
        answer.finish()


# -- the guide's example runs as written ---------------------------------------------------
def test_the_guides_streaming_example_runs(couch_url, dbname, tmp_path, monkeypatch, capsys, server_kind):
    from pathlib import Path

    guide = Path(__file__).resolve().parent.parent / "docs" / "guide" / "attachments-and-maintenance.rst"
    text = guide.read_text(encoding="utf-8")
    start = text.index("    # tested: streamed attachments")
    end = text.index("\nWhat to know:", start)
    code = "\n".join(line[4:] for line in text[start:end].splitlines())
    code = code.replace('"http://admin:secret@127.0.0.1:5984"', repr(couch_url))
    code = code.replace('couch.create("library")', "couch.create(%r)" % dbname)
    if server_kind == "pouchdb":   # no multipart/related PUT there (see needs_multipart_put): stop before it
        code = code[:code.index("# a document and its attachments in one multipart/related request")]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(guide), "exec"), {"__name__": "guide_example"})
    out = capsys.readouterr().out
    assert "4194304 of 4194304 bytes" in out                          # progress reached the whole size
    assert (tmp_path / "copy.mp3").read_bytes() == (tmp_path / "audiobook.mp3").read_bytes()


# -- an attachment as an iterator of chunks ---------------------------------------------
def test_iter_attachment_blocking_for_loop(db, big_doc):
    chunks = db.iter_attachment("disk", "image.iso", buffer_size=64 * 1024)
    pieces = [chunk for chunk in chunks]
    assert b"".join(pieces) == BIG and len(pieces) > 1
    assert chunks.buffered_max <= 64 * 1024 + 65536          # the transfer paused instead of piling up


def test_iter_attachment_callback_style(db, big_doc):
    import loop

    reactor = loop.get_reactor()
    chunks = db.iter_attachment("disk", "image.iso")
    pieces, calls = [], []

    def on_chunk(chunk, status):
        calls.append(status.ok)
        if chunk is None:
            reactor.stop()
            return
        pieces.append(chunk)
        assert isinstance(chunks.next(callback=on_chunk), loop.Operation)

    chunks.next(callback=on_chunk)
    reactor.run()
    assert b"".join(pieces) == BIG and all(calls) and len(calls) == len(pieces) + 1


def test_iter_attachment_relax_with_a_slow_consumer(db, big_doc):
    from corduroy import relax

    @relax
    def read_all():
        chunks = db.iter_attachment("disk", "image.iso", buffer_size=32 * 1024)
        pieces = []
        while True:
            chunk = yield chunks.next()
            if chunk is None:
                return pieces, chunks.buffered_max
            pieces.append(chunk)
            yield db.info()                                   # a slow consumer: other I/O between chunks

    pieces, most = read_all()
    assert b"".join(pieces) == BIG
    assert most <= 32 * 1024 + 65536


def test_iter_attachment_async_for(db, big_doc):
    from tests.styles import run_async

    async def read_all():
        pieces = []
        async for chunk in db.iter_attachment("disk", "image.iso"):
            pieces.append(chunk)
        return pieces

    assert b"".join(run_async(read_all)) == BIG


@pytest.mark.parametrize("style", STYLES)
def test_iter_attachment_missing_raises_not_found_on_first_next(style, db, doc):
    chunks = db.iter_attachment("disk", "nothing.bin")
    with pytest.raises(NotFound):
        call(style, chunks.next)


def test_iter_attachment_break_cancels_the_transfer(db, big_doc):
    chunks = db.iter_attachment("disk", "image.iso", buffer_size=16 * 1024)
    first = next(iter(chunks))
    assert first
    chunks.close()                                           # what leaving a for loop does
    assert chunks.next() is None and chunks.received < len(BIG)
    with pytest.raises(ValueError, match="buffer_size"):
        db.iter_attachment("disk", "image.iso", buffer_size=0)


def test_a_pooled_handle_goes_back_to_ordinary_requests_after_an_upload(db, doc):
    # Sequential requests reuse one easy handle: each method must come out right after an upload.
    for _ in range(2):
        db.put_attachment(doc, chunks_of(b"z" * 300_000), "z.bin")
        assert db.exists() is True                                            # HEAD
        assert db.get("disk")["_attachments"]["z.bin"]["length"] == 300_000  # GET
        assert db.get(["disk"])[0]["_id"] == "disk"                          # POST _all_docs
        fresh = db.get("disk")
        db.save(fresh)                                                        # PUT with a body
        db.delete_attachment(fresh, "z.bin")                                  # DELETE
        doc["_rev"] = fresh["_rev"]
        assert "_attachments" not in db.get("disk")


def test_the_rss_benchmark_command_prints_its_figures(couch_url, capsys, tmp_path):
    import json

    from benchmarks.attachment_rss import main

    assert main([couch_url, "--size", "3M", "--dir", str(tmp_path)]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["size"] == 3 * 1024 * 1024
    assert {"baseline_kib", "upload_peak_kib", "download_peak_kib", "growth_kib"} <= set(figures)
    assert not list(tmp_path.iterdir())


def test_a_failed_upload_lets_go_of_its_source(db, doc):
    import gc
    import weakref

    class Chunks:
        def __init__(self):
            self.left = [b"abc", "not bytes", b"def"]

        def __iter__(self):
            return self

        def __next__(self):
            if not self.left:
                raise StopIteration
            return self.left.pop(0)

    chunks = Chunks()
    gone = weakref.ref(chunks)
    with pytest.raises(TypeError):
        db.put_attachment(doc, chunks, "let-go.bin")
    del chunks
    gc.collect()
    assert gone() is None  # the pooled connection keeps no reference to the iterator
