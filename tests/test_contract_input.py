"""Bad input and odd answers, from a user's side (issue 12, points 5, 6, 8 and 14).

- No credential (a URL's ``user:password@``, a password, an auth tuple) ever
  shows in an exception, its repr, or a log line, whatever argument it was
  passed through by mistake.
- Every HTTP error carries the server's ``error`` and ``reason``, whatever
  the status, and a non-JSON error body gives an excerpt as the reason.
- Only ``_design/...`` and ``_local/...`` ids start with ``_``: any other such
  id names a database endpoint (``_all_docs``, ``_security``...), so it is
  refused with ValueError before any I/O, and a batch holding one writes
  nothing.
- ``bytes`` in a document (or a query value) are refused with a TypeError
  that points at attachments: JSON has no bytes.
"""
from __future__ import annotations

import functools
import http.server
import json
import logging
import traceback
from typing import Any, Callable, Dict, List, Tuple

import pytest

from corduroy import Couch, Database, ExpectationFailed, HTTPError, ServerError, relax
from corduroy.exceptions import error_for_code
from tests.conftest import couch_request
from tests.consistency import eventually_equal
from tests.scripted import ScriptedServer
from tests.styles import STYLES, call

SECRET = "s3cr3t-pw"
URL_WITH_SECRET = "http://admin:%s@db.example.com:5984/remote" % SECRET


# -- a recording HTTP server: answers as scripted, remembers every request -------------------------------------
class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        path = self.path.split("?", 1)[0]
        server: Any = self.server
        server.seen.append((self.command, path))
        script = server.scripts.get(path)
        code, content_type, body = script.popleft() if script else (200, "application/json", b'{"ok":true}')
        self.send_response(code)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_COPY = _serve  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


class Recorder(ScriptedServer):
    handler = _Handler

    def answer(self, path: str, code: int, body: Any, content_type: str = "application/json") -> None:
        """Answer the next request to ``path`` with ``code`` and ``body`` (JSON-encoded unless bytes)."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.scripts[path].append((code, content_type, raw))


@pytest.fixture
def recorder():
    with Recorder.running() as server:
        yield server


@pytest.fixture
def db(couch_url, dbname):
    return Couch(couch_url).create(dbname)


def _texts(exc: BaseException) -> str:
    """What a user may see of ``exc`` and of the exceptions chained to it: str, repr, args, printed form."""
    shown: List[str] = []
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        shown += [str(exc), repr(exc), repr(exc.args)] + traceback.format_exception_only(type(exc), exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)  # type: ignore[assignment]
    return "\n".join(shown)


# -- point 5: credentials never shown ----------------------------------------------------------------------------
def _misplaced_calls() -> List[Tuple[str, Callable[[], Any]]]:
    db = Database("http://127.0.0.1:9/local")
    couch = Couch("http://127.0.0.1:9")
    return [
        # The 0.9.0 guide's push(target, url) mistake: the URL lands where the callback goes.
        ("push(db, url)", lambda: db.push("other", URL_WITH_SECRET)),
        ("pull(db, url)", lambda: db.pull("other", URL_WITH_SECRET)),
        ("replicate(a, b, url)", lambda: couch.replicate("a", "b", URL_WITH_SECRET)),
        ("get(id, url)", lambda: db.get("doc", URL_WITH_SECRET)),
        ("view(name, url)", lambda: db.view("ddoc/v", URL_WITH_SECRET)),
        ("view(on_row=url)", lambda: db.view("ddoc/v", on_row=URL_WITH_SECRET)),
        ("changes feed listener", lambda: db.changes(feed="continuous", callback=URL_WITH_SECRET)),
        # A URL with a typo, or without its scheme, where a database name or server URL goes.
        ("Database(typo url)", lambda: Database("http//admin:%s@db.example.com/remote" % SECRET)),
        ("Database(no scheme)", lambda: Database("admin:%s@db.example.com:5984/remote" % SECRET)),
        ("Couch(no scheme)", lambda: Couch("admin:%s@db.example.com:5984" % SECRET)),
        ("Couch(ftp url)", lambda: Couch("ftp://admin:%s@db.example.com" % SECRET)),
        ("Couch(auth tuple)", lambda: Couch(("admin", SECRET))),
        # Credentials of the wrong shape.
        ("auth of 3", lambda: Couch("http://127.0.0.1:9", auth=("admin", SECRET, "x"))),
        ("auth as str", lambda: Couch("http://127.0.0.1:9", auth="admin:" + SECRET)),
        ("auth as list", lambda: Database("local", auth=["admin", SECRET])),
        # A URL with credentials passed as some other setting.
        ("timeout=url", lambda: Couch("http://127.0.0.1:9", timeout=URL_WITH_SECRET)),
        ("retries=url", lambda: Couch("http://127.0.0.1:9", retries=URL_WITH_SECRET)),
        ("verify=url", lambda: Couch("http://127.0.0.1:9", verify=URL_WITH_SECRET)),
        ("ca_bundle=url", lambda: Couch("https://127.0.0.1:9", ca_bundle=URL_WITH_SECRET)),
        ("stats(url)", lambda: couch.stats(URL_WITH_SECRET + "//x")),
        ("save(doc, merge) with a tuple id", lambda: db.save({"_id": ("admin", SECRET)})),
        ("get([ids]) with a tuple id", lambda: db.get(["a", ("admin", SECRET)])),
        ("revs_diff with a bad rev", lambda: db.revs_diff({"a": [("admin", SECRET)]})),
        ("copy to a url id", lambda: db.copy("a", {"_id": "x", "_rev": ("admin", SECRET)})),
        ("find(use_index=url tuple)", lambda: db.find({"a": 1}, use_index=("admin", SECRET, "x"))),
    ]


@pytest.mark.parametrize("label, misplaced", [pytest.param(*call, id=call[0]) for call in _misplaced_calls()])
def test_a_misplaced_credential_never_shows_in_the_error(label, misplaced):
    with pytest.raises((TypeError, ValueError)) as info:
        misplaced()
    shown = _texts(info.value)
    assert SECRET not in shown, "%s leaked the password: %s" % (label, shown)
    assert "admin:" not in shown


def test_the_push_mistake_says_what_was_wrong_without_the_url():
    db = Database("http://127.0.0.1:9/local")
    with pytest.raises(TypeError) as info:
        db.push("other", URL_WITH_SECRET)
    assert "callback" in str(info.value) and "str" in str(info.value)
    assert "db.example.com" not in str(info.value)  # not even the host: the value is not shown at all


def test_errors_reprs_and_log_lines_of_a_server_with_credentials_hold_none(recorder, caplog):
    base = recorder.url.replace("http://", "http://admin:%s@" % SECRET)
    couch = Couch(base, retries=0)
    db = couch.database("things")
    recorder.answer("/things/missing", 404, {"error": "not_found", "reason": "missing"})
    recorder.answer("/things/broken", 500, b"<html>oops</html>", "text/html")
    caplog.set_level(logging.DEBUG, logger="corduroy")
    caplog.set_level(logging.DEBUG, logger="loop")
    seen: List[Any] = []
    for doc_id in ("missing", "broken"):
        with pytest.raises(HTTPError) as info:
            db.get(doc_id)
        seen.append(_texts(info.value))
        seen.append(info.value.url)
    seen += [repr(couch), repr(db), repr(couch.server), caplog.text]
    for text in seen:
        assert SECRET not in text and "admin:" not in text
    assert "127.0.0.1" in caplog.text  # the requests were logged, without their credentials


def test_a_failing_callback_is_logged_without_the_credentials_it_holds(recorder, reactor, caplog):
    db = Database(recorder.url + "/things")

    def handler(replica_url, data, status):
        raise RuntimeError("the handler failed")

    op = db.get("x", callback=functools.partial(handler, URL_WITH_SECRET))
    op.add_callback(lambda data, status: reactor.stop())
    with caplog.at_level(logging.ERROR):
        reactor.run()
    assert "the handler failed" in caplog.text  # logged, with its traceback
    assert SECRET not in caplog.text


# -- point 6: error and reason, whatever the status ---------------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_a_bulk_save_refused_as_a_whole_says_why(style, db, server_kind):
    docs = [{"_id": "a"}, {"_id": "b"}]
    try:
        result = call(style, db.save, docs, all_or_nothing=True)
    except ExpectationFailed as exc:  # CouchDB 3: 417, one {error, reason} row per document
        assert exc.code == 417
        assert exc.error == "not_implemented"
        assert exc.reason == "all_or_nothing is not supported"
        assert "all_or_nothing is not supported" in str(exc)
        assert isinstance(exc.body, list)  # the server's rows, as sent
        assert db.get(["a", "b"]) == [None, None]
        return
    if server_kind == "couchdb":
        pytest.fail("CouchDB 3 refuses all_or_nothing with 417, got %r" % (result,))
    pytest.skip("this server accepts all_or_nothing")


_RARE = [
    # status, content type, body, expected error, expected reason
    (418, "application/json", {"error": "teapot", "reason": "short and stout"}, "teapot", "short and stout"),
    (422, "application/json", [{"id": "a", "error": "invalid", "reason": "bad field"}], "invalid", "bad field"),
    (451, "application/json", {"error": "legal", "reason": {"court": "order"}}, "legal", {"court": "order"}),
    (499, "application/json", {"message": "closed by client"}, None, '{"message": "closed by client"}'),
    (507, "application/json", {"error": "insufficient_storage", "reason": "disk full"},
     "insufficient_storage", "disk full"),
    (520, "text/plain", b"upstream said nothing useful", None, "upstream said nothing useful"),
    (599, "text/html", b"<html><body>gateway</body></html>", None, "<html><body>gateway</body></html>"),
]


@pytest.mark.parametrize("code, content_type, body, error, reason", _RARE, ids=[str(r[0]) for r in _RARE])
def test_a_rare_status_carries_the_servers_error_and_reason(recorder, code, content_type, body, error, reason):
    recorder.answer("/things/x", code, body, content_type)
    db = Database(recorder.url + "/things", retries=0)
    with pytest.raises(HTTPError) as info:
        db.get("x")
    exc = info.value
    assert type(exc) is error_for_code(code)
    assert isinstance(exc, ServerError) == (code >= 500)
    assert exc.code == code and exc.method == "GET" and exc.url == recorder.url + "/things/x"
    assert exc.error == error
    assert exc.reason == reason
    if isinstance(reason, str):
        assert reason in str(exc)


# -- point 8: ids starting with "_" ---------------------------------------------------------------------------------
def _reserved_id_calls(db: Database) -> List[Tuple[str, Callable[[], Any]]]:
    return [
        ("get _all_docs", lambda: db.get("_all_docs")),
        ("get _revs_limit", lambda: db.get("_revs_limit")),
        ("get _security", lambda: db.get("_security", revs=True)),
        ("get a list", lambda: db.get(["fine", "_all_docs"])),
        ("get _design/ with no name", lambda: db.get("_design/")),
        ("save _security", lambda: db.save({"_id": "_security", "members": {"names": ["mallory"]}})),
        ("save with merge", lambda: db.save({"_id": "_revs_limit", "n": 1}, force=True)),
        ("save a list", lambda: db.save([{"_id": "fine"}, {"_id": "_security", "admins": {}}])),
        ("save a list without ids", lambda: db.save([{"n": 1}, {"_id": "_purge"}])),
        ("delete", lambda: db.delete({"_id": "_security", "_rev": "1-abc"})),
        ("copy from", lambda: db.copy("_all_docs", "x")),
        ("copy to", lambda: db.copy("fine", "_security")),
        ("copy to a dict", lambda: db.copy("fine", {"_id": "_revs_limit", "_rev": "1-abc"})),
        ("put_attachment", lambda: db.put_attachment({"_id": "_security"}, b"x", "a.txt")),
        ("get_attachment", lambda: db.get_attachment("_all_docs", "a.txt")),
        ("delete_attachment", lambda: db.delete_attachment({"_id": "_changes", "_rev": "1-a"}, "a.txt")),
        ("revisions", lambda: db.revisions("_all_docs")),
        ("conflicts", lambda: db.conflicts("_revs_limit")),
        ("resolve_conflicts", lambda: db.resolve_conflicts("_security")),
        ("bulk_get", lambda: db.bulk_get(["fine", "_all_docs"])),
        ("revs_diff", lambda: db.revs_diff({"_security": ["1-abc"]})),
        ("purge", lambda: db.purge([{"_id": "_security", "_rev": "1-abc"}])),
        ("show", lambda: db.show("ddoc/s", "_all_docs")),
        ("update", lambda: db.update("ddoc/u", "_security", body={"a": "b"})),
        ("replicate to _replicator/_all_docs", lambda: db.push("other", _id="_all_docs")),
    ]


@pytest.mark.parametrize("coalesce", [False, True])
def test_reserved_ids_are_refused_before_any_request(recorder, coalesce):
    db = Database(recorder.url + "/things", coalesce=coalesce, retries=0)
    for label, attempt in _reserved_id_calls(db):
        with pytest.raises(ValueError) as info:
            attempt()
        assert "_design/" in str(info.value) or "name after" in str(info.value), label
        assert recorder.seen == [], "%s sent %s" % (label, recorder.seen)


@pytest.mark.parametrize("style", STYLES)
def test_saving_a_document_named_security_leaves_the_security_object_alone(style, db, couch_url):
    wanted = {"admins": {"names": [], "roles": []}, "members": {"names": ["bernard"], "roles": []}}
    status, _ = couch_request(couch_url, "PUT", "/%s/_security" % db.name, wanted)
    assert status == 200
    with pytest.raises(ValueError, match="_security"):
        call(style, db.save, {"_id": "_security", "members": {"names": ["mallory"], "roles": []}})
    with pytest.raises(ValueError):
        call(style, db.save, [{"_id": "harmless"}, {"_id": "_security", "members": {"names": ["mallory"]}}])
    # Eventually: a cluster's copies take the PUT at slightly different times (tests.consistency).
    eventually_equal(lambda: couch_request(couch_url, "GET", "/%s/_security" % db.name)[1], wanted)
    assert db.info()["doc_count"] == 0  # nothing of the batch was written
    assert db.get(["harmless"]) == [None]


@pytest.mark.parametrize("style", STYLES)
def test_endpoints_are_not_read_as_documents(style, db):
    db.save({"_id": "one"})
    for endpoint in ("_all_docs", "_revs_limit", "_security", "_changes"):
        with pytest.raises(ValueError, match="database endpoints"):
            call(style, db.get, endpoint)


_ODD_IDS = ["_design/x", "_local/x", "a/b", "..", "../_config", "x_y", "ünïcødé ☃", "a?b#c", "%2F", "_design/a/b"]


@pytest.mark.parametrize("style", STYLES)
def test_design_local_and_odd_ids_still_work(style, db):
    for doc_id in _ODD_IDS:
        doc = {"_id": doc_id, "v": 1}
        call(style, db.save, doc)
        assert call(style, db.get, doc_id)["v"] == 1, doc_id
        doc["v"] = 2
        call(style, db.save, doc)
        if not doc_id.startswith("_local/"):  # local documents keep no revision history
            assert call(style, db.revisions, doc_id)[0] == doc["_rev"]
        call(style, db.delete, doc)
    ids = [i for i in _ODD_IDS if not i.startswith("_local/")]  # _local docs are not in _all_docs
    plain = [{"_id": i, "n": n} for n, i in enumerate(ids)]
    call(style, db.save, plain)
    assert [d["n"] for d in call(style, db.get, [d["_id"] for d in plain])] == list(range(len(plain)))


# -- point 14: bytes are not JSON -----------------------------------------------------------------------------------
_BYTES_DOCS = [
    {"v": b"abc"},                      # valid UTF-8: was silently stored as "abc"
    {"v": b"\xff\xfe"},                 # not UTF-8: was a ValueError about a codec
    {"v": [1, {"deep": bytearray(b"x")}]},
    {"v": memoryview(b"abc")},
    {b"key": "value"},
]


@pytest.mark.parametrize("doc", _BYTES_DOCS, ids=["utf8", "binary", "nested-bytearray", "memoryview", "key"])
def test_bytes_in_a_document_are_refused_and_point_at_attachments(db, doc):
    attempts = (
        lambda: db.save(dict(doc, _id="one")),
        lambda: db.save(dict(doc)),  # no _id: refused before a uuid is fetched
        lambda: db.save([{"_id": "fine"}, dict(doc, _id="two")]),
        lambda: db.save_local(dict(doc, _id="l")),
    )
    for attempt in attempts:
        with pytest.raises(TypeError) as info:
            attempt()
        message = str(info.value)
        assert "JSON has no bytes" in message and "attachment" in message
    assert db.info()["doc_count"] == 0


@pytest.mark.parametrize("style", STYLES)
def test_bytes_go_in_attachments(style, db):
    doc = {"_id": "logo"}
    db.save(doc)
    call(style, db.put_attachment, doc, b"\x89PNG\xff", "logo.png")
    assert call(style, db.get_attachment, "logo", "logo.png") == b"\x89PNG\xff"


def test_bytes_in_query_values_are_refused_before_any_request(recorder):
    db = Database(recorder.url + "/things", retries=0)
    attempts: Dict[str, Callable[[], Any]] = {
        "startkey": lambda: db.view("ddoc/v", startkey=b"a"),
        "key": lambda: db.all_docs(key=b"a"),
        "keys": lambda: db.all_docs(keys=[b"a", "b"]),
        "rev": lambda: db.get("x", rev=b"1-abc"),
    }
    for name, attempt in attempts.items():
        with pytest.raises(TypeError) as info:
            attempt()
        assert name in str(info.value) and "bytes" in str(info.value)
    assert recorder.seen == []


def test_a_refused_document_fails_the_relax_generator_at_the_call(db):
    @relax
    def body():
        try:
            yield db.save({"_id": "x", "v": b"abc"})
        except TypeError as exc:
            return "refused: %s" % ("attachment" in str(exc))
        return "sent"

    assert body() == "refused: True"
