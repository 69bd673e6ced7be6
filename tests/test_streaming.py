"""Streaming JSON rows: RowParser on any chunking, and stream_rows against the server."""
from __future__ import annotations

import http.server
import json
import random
import threading
from typing import Any, Iterator, List, Tuple

import pytest

from corduroy import BadResponse, Conflict, Couch, Database, Document, NotFound, ServiceUnavailable, codec
from corduroy.http import finish
from corduroy.streaming import RowParseError, RowParser, stream_rows
from tests.conftest import couch_request
from tests.consistency import EVERY_COPY
from tests.styles import STYLES, call

# A small body with everything that can go wrong at a chunk boundary: multi-byte
# UTF-8 (2, 3 and 4 bytes), escapes (quotes, backslashes, \u escapes, a
# surrogate pair), brackets and braces inside strings, nested containers,
# numbers of every shape, whitespace everywhere, and members after the array.
BODY = (
    '{ "total_rows" : 4 ,\r\n "offset":0,"rows":[\r\n'
    ' {"id":"a{[","key":["é","\\"}]","\\\\"],"value":{"n":[1,{"x":"ü€😀"}],"t":true}},\r\n'
    '{"id":"b\\\\","key":null,"value":"\\\\\\"{[\\u00e9\\ud83d\\ude00"} ,'
    '{"id":"c","key":-12.5e-3,"value":[[],{},[{}],""]},\n'
    '\t{"id":"d}","key":[1234567,0.5,false],"value":{"a":{"b":{"c":"]]]}}}"}}}}'
    ' ] , "update_seq" : "12-g1AAA\\"}]"}\n'
).encode("utf-8")
EXPECTED = json.loads(BODY)
EXPECTED_ROWS = EXPECTED.pop("rows")


def parse(chunks: List[bytes], array: str = "rows") -> Tuple[List[Any], dict]:
    rows: List[Any] = []
    parser = RowParser(array, rows.append)
    for chunk in chunks:
        parser.feed(chunk)
    return rows, parser.close()


# -- RowParser -------------------------------------------------------------

def test_the_sample_body_is_what_we_think():
    assert len(EXPECTED_ROWS) == 4 and "😀" in BODY.decode("utf-8")
    rows, fields = parse([BODY])
    assert rows == EXPECTED_ROWS
    assert fields == EXPECTED == {"total_rows": 4, "offset": 0, "update_seq": '12-g1AAA"}]'}
    assert all(isinstance(row, Document) for row in rows)  # objects decode like codec.decode


def test_every_split_point_gives_the_same_rows():
    for i in range(len(BODY) + 1):
        rows, fields = parse([BODY[:i], BODY[i:]])
        assert rows == EXPECTED_ROWS, i
        assert fields == EXPECTED, i


def test_every_pair_of_split_points_gives_the_same_rows():
    for i in range(0, len(BODY) + 1, 3):
        for j in range(i, len(BODY) + 1, 5):
            rows, fields = parse([BODY[:i], BODY[i:j], BODY[j:]])
            assert rows == EXPECTED_ROWS and fields == EXPECTED, (i, j)


def test_one_byte_at_a_time():
    rows, fields = parse([BODY[i:i + 1] for i in range(len(BODY))])
    assert rows == EXPECTED_ROWS and fields == EXPECTED


def test_rows_are_handed_over_as_soon_as_complete():
    rows: List[Any] = []
    parser = RowParser("rows", rows.append)
    first_end = BODY.index(b"}},") + 2
    parser.feed(BODY[:first_end - 1])
    assert rows == []  # its last brace is missing
    parser.feed(BODY[first_end - 1:first_end + 10])
    assert rows == EXPECTED_ROWS[:1] and parser.rows == 1
    parser.feed(BODY[first_end + 10:])
    assert rows == EXPECTED_ROWS
    parser.close()


def test_numbers_cut_at_a_chunk_boundary_are_not_cut_short():
    body = b'{"total_rows":12345,"rows":[1234,5.5e10,-7,{"a":[1,2]},"x",true,null],"offset":987}'
    for i in range(len(body) + 1):
        for j in range(i, len(body) + 1):
            rows, fields = parse([body[:i], body[i:j], body[j:]])
            assert rows == [1234, 5.5e10, -7, {"a": [1, 2]}, "x", True, None], (i, j)
            assert fields == {"total_rows": 12345, "offset": 987}, (i, j)


@pytest.mark.parametrize("array, body, rows, fields", [
    ("rows", b'{"total_rows":2,"offset":0,"rows":[{"id":"a"},{"id":"b"}]}',
     [{"id": "a"}, {"id": "b"}], {"total_rows": 2, "offset": 0}),
    ("rows", b'{"rows":[{"id":"a"}],"total_rows":1,"offset":0,"update_seq":5}',
     [{"id": "a"}], {"total_rows": 1, "offset": 0, "update_seq": 5}),
    ("rows", b'{"total_rows":0,"offset":0,"rows":[]}', [], {"total_rows": 0, "offset": 0}),
    ("docs", b'{"docs":[{"_id":"x"}],"bookmark":"g1AAAA","warning":"No matching index found"}',
     [{"_id": "x"}], {"bookmark": "g1AAAA", "warning": "No matching index found"}),
    ("docs", b'{"docs":[\n],\n"bookmark": "nil"}', [], {"bookmark": "nil"}),
    ("results", b'{"results":[{"seq":"1-a","id":"d","changes":[{"rev":"1-x"}]},\n'
                b'{"seq":"2-b","id":"e","changes":[{"rev":"1-y"}],"deleted":true}\n],\n'
                b'"last_seq":"2-b","pending":0}\n',
     [{"seq": "1-a", "id": "d", "changes": [{"rev": "1-x"}]},
      {"seq": "2-b", "id": "e", "changes": [{"rev": "1-y"}], "deleted": True}],
     {"last_seq": "2-b", "pending": 0}),
    # A member of the same name deeper down, or inside a string, is not the array.
    ("rows", b'{"meta":{"rows":[1,2]},"note":"\\"rows\\":[3]","rows":[4]}',
     [4], {"meta": {"rows": [1, 2]}, "note": '"rows":[3]'}),
    # An escaped spelling of the member name is the same name.
    ("rows", b'{"r\\u006fws":[1,2]}', [1, 2], {}),
])
def test_shapes_couchdb_sends(array, body, rows, fields):
    got_rows, got_fields = parse([body], array)
    assert got_rows == rows and got_fields == fields
    got_rows, got_fields = parse([body[i:i + 1] for i in range(len(body))], array)
    assert got_rows == rows and got_fields == fields


def test_every_truncation_is_an_error_at_close():
    complete = len(BODY.rstrip())
    for i in range(complete):
        parser = RowParser("rows", lambda row: None)
        parser.feed(BODY[:i])
        with pytest.raises(RowParseError):
            parser.close()
    parse([BODY[:complete]])  # no trailing newline needed


@pytest.mark.parametrize("body, message", [
    (b"", "empty"),
    (b"   \n", "empty"),
    (b'{"rows":[{"a":1}', "ended inside the 'rows' array"),
    (b'{"rows":[{"a":1}],"total_rows":', "ended before the end"),
    (b'{"rows":[{"a":1},]}', "invalid JSON in the 'rows' array"),
    (b'{"rows":[{"a":1} {"b":2}]}', "expected ',' or ']'"),
    (b'{"rows":[{"a":1]}]}', "invalid JSON in the 'rows' array"),
    (b'{"rows":[}', "invalid JSON"),
    (b'[{"a":1}]', "not a JSON object"),
    (b"<html>Bad gateway</html>", "not a JSON object"),
    (b'{"rows":[]} {"x":1}', "after the end of the JSON object"),
    (b'{"total_rows":1,"offset":0}', "no top-level 'rows' array"),
    (b'{"rows":[],"x":tru}', "invalid JSON in the top-level object"),
    (b'{"rows" [1]}', "expected ':'"),
    (b'{"rows":[1],}', "expected a member name"),
    (b'{"rows":[1] "x":2}', "expected ',' or '}'"),
    (b'{"rows":["\xff"]}', "not UTF-8"),
    (b'{"rows":["\xc3', "UTF-8"),
])
def test_invalid_input_raises_a_clear_error(body, message):
    parser = RowParser("rows", lambda row: None)
    with pytest.raises(RowParseError) as info:
        parser.feed(body)
        parser.close()
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)
    with pytest.raises(RowParseError):  # it stays failed
        parser.feed(b"{}")


def test_an_invalid_element_is_reported_before_the_body_ends():
    rows: List[Any] = []
    parser = RowParser("rows", rows.append)
    # Not buffered until close(): the element is complete, and wrong.
    with pytest.raises(RowParseError) as info:
        parser.feed(b'{"rows":[{"a":1},{"b":nope},{"c":')
    assert "after element 1" in str(info.value)
    assert rows == [{"a": 1}]


def test_an_exception_in_on_row_propagates_from_feed():
    seen = []

    def on_row(row):
        seen.append(row)
        if len(seen) == 2:
            raise LookupError("enough")

    parser = RowParser("rows", on_row)
    with pytest.raises(LookupError):
        parser.feed(BODY)
    assert seen == EXPECTED_ROWS[:2]
    with pytest.raises(RowParseError):  # it cannot go on from an unknown position
        parser.feed(b"]}")


def test_constructor_checks_its_arguments():
    with pytest.raises(TypeError):
        RowParser("", print)
    with pytest.raises(TypeError):
        RowParser("rows", on_row="print")


def synthetic_body(count: int) -> bytes:
    rnd = random.Random(7)
    rows = []
    for i in range(count):
        rows.append({
            "id": "doc-%06d" % i, "key": [i, "k\u00e9y-%d" % rnd.randrange(1000)],
            "value": {"rev": "1-%032x" % rnd.getrandbits(128), "s": "{[\"%s\"]}" % ("x" * rnd.randrange(40)),
                      "n": rnd.random() * 1e6, "emoji": "😀" * rnd.randrange(3)},
        })
    text = json.dumps({"total_rows": count, "offset": 0, "rows": rows}, ensure_ascii=False,
                      separators=(",", ":"))
    return text.replace('},{"id"', '},\r\n{"id"').encode("utf-8")


def test_fifty_thousand_rows_in_random_chunks_match_a_whole_body_decode():
    body = synthetic_body(50_000)
    whole = codec.decode(body)
    rnd = random.Random(2024)
    chunks, pos = [], 0
    while pos < len(body):
        size = rnd.choice((1, 2, 3, 7, 100, 1000, 4096, 16384, 65536))
        chunks.append(body[pos:pos + size])
        pos += size
    rows, fields = parse(chunks)
    assert len(rows) == 50_000
    assert rows == whole["rows"]
    assert fields == {"total_rows": 50_000, "offset": 0}


# -- stream_rows against the server -----------------------------------------

def streamed(db: Database, method: str, path: str, callback: Any = None, **kwargs: Any) -> Any:
    """stream_rows under the calling contract, so tests/styles.py can drive it."""
    return finish(stream_rows(db, method, path, **kwargs), callback)


@pytest.fixture(scope="module")
def loaded(couch_url: str) -> Iterator[Database]:
    """A database of 3000 small documents (created once for this module)."""
    name = "test_streaming_%d" % random.randrange(1 << 30)
    db = Couch(couch_url).create(name)
    db.save([{"_id": "doc-%05d" % i, "n": i, "label": "é{[\"%d" % i} for i in range(3000)],
            w=EVERY_COPY)  # in every copy before a stream reads it (a cluster: tests.consistency)
    yield db
    couch_request(couch_url, "DELETE", "/" + name)


@pytest.mark.parametrize("style", STYLES)
def test_stream_all_docs(style, couch_url, loaded):
    rows: List[Any] = []
    fields = call(style, streamed, loaded, "GET", "/_all_docs", params={"include_docs": True},
                  on_row=rows.append)
    status, expected = couch_request(couch_url, "GET", "/%s/_all_docs?include_docs=true" % loaded.name)
    assert status == 200
    assert len(rows) == 3000
    assert rows == expected["rows"]
    assert fields["total_rows"] == 3000 and fields["offset"] == 0
    assert "rows" not in fields


@pytest.mark.parametrize("style", STYLES)
def test_stream_with_make_row_and_a_json_body(style, loaded):
    made: List[Any] = []
    keys = ["doc-00010", "doc-00002", "nobody"]
    call(style, streamed, loaded, "POST", "/_all_docs", json={"keys": keys}, on_row=made.append,
         make_row=lambda row: (row["key"], "error" in row))
    assert made == [("doc-00010", False), ("doc-00002", False), ("nobody", True)]


@pytest.mark.parametrize("style", STYLES)
def test_streaming_a_missing_view_raises_not_found(style, loaded):
    rows: List[Any] = []
    with pytest.raises(NotFound) as info:
        call(style, streamed, loaded, "GET", "/_design/nothing/_view/here", on_row=rows.append)
    assert rows == []  # the error body went to the exception, not to on_row
    assert info.value.error == "not_found" and info.value.code == 404


@pytest.mark.parametrize("style", STYLES)
def test_streaming_from_a_missing_database_raises_not_found(style, couch_url, dbname):
    with pytest.raises(NotFound):
        call(style, streamed, Database(couch_url + "/" + dbname), "GET", "/_all_docs", on_row=print)


class Stop(Exception):
    pass


@pytest.mark.parametrize("style", STYLES)
def test_an_exception_in_on_row_aborts_and_is_reported(style, loaded):
    seen: List[Any] = []

    def on_row(row: Any) -> None:
        seen.append(row["id"])
        if len(seen) == 25:
            raise Stop(row["id"])

    with pytest.raises(Stop) as info:
        call(style, streamed, loaded, "GET", "/_all_docs", params={"include_docs": True}, on_row=on_row)
    assert info.value.args == ("doc-00024",)
    assert len(seen) == 25  # nothing after the failing row
    # The connection pool is still usable afterwards.
    assert loaded.get("doc-00001")["n"] == 1


def test_stream_rows_checks_its_arguments(loaded):
    with pytest.raises(TypeError):
        stream_rows(loaded, "GET", "/_all_docs")
    with pytest.raises(TypeError):
        stream_rows(loaded, "GET", "/_all_docs", on_row=print, make_row="no")


# -- what the HTTP layer does with a streamed answer that is not a success --

class _Canned(http.server.BaseHTTPRequestHandler):
    """Answers every GET with the status and body its path names."""

    answers = {
        "/html-503": (503, "text/html", b"<html><body>Service Unavailable</body></html>"),
        "/json-409": (409, "application/json", b'{"error":"conflict","reason":"Document update conflict."}'),
        "/not-json": (200, "application/json", b"<html>surprise</html>"),
        "/cut-short": (200, "application/json", b'{"total_rows":3,"rows":[{"id":"a"},'),
    }

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        code, ctype, body = self.answers["/" + self.path.rsplit("/", 1)[-1]]
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def error_pages() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize("style", STYLES)
def test_a_streamed_error_page_maps_to_its_http_exception(style, error_pages):
    rows: List[Any] = []
    db = Database(error_pages + "/db")
    with pytest.raises(ServiceUnavailable) as info:
        call(style, streamed, db, "GET", "/html-503", on_row=rows.append)
    assert "Service Unavailable" in str(info.value.reason)
    with pytest.raises(Conflict) as info2:
        call(style, streamed, db, "GET", "/json-409", on_row=rows.append)
    assert info2.value.error == "conflict" and info2.value.reason == "Document update conflict."
    assert rows == []


@pytest.mark.parametrize("style", STYLES)
def test_a_streamed_body_that_is_not_the_expected_json_is_a_bad_response(style, error_pages):
    db = Database(error_pages + "/db")
    with pytest.raises(BadResponse) as info:
        call(style, streamed, db, "GET", "/not-json", on_row=print)
    assert "not a JSON object" in str(info.value)
    rows: List[Any] = []
    with pytest.raises(BadResponse) as info:
        call(style, streamed, db, "GET", "/cut-short", on_row=rows.append)
    assert "ended inside the 'rows' array" in str(info.value)
    assert rows == [{"id": "a"}]
