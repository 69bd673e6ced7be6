"""Retries: which failures are sent again (reads; writes only when nothing was sent), backoff with
jitter, Retry-After, the total timeout covering every attempt, UnknownOutcome for writes, and the
composition with cookie-session renewal.  A scripted loopback HTTP server plays the failing server."""
from __future__ import annotations

import email.utils
import http.server
import json
import logging
import random
import threading
import time

import pytest

from corduroy import (
    BadRequest, Conflict, ConnectionFailed, Couch, Database, NotFound, ServerError, ServiceUnavailable,
    TooManyRequests, TransportError, UnknownOutcome,
)
from corduroy.http import Server, is_idempotent
from corduroy.retry import DEFAULT_STATUSES, RetryPolicy, retry_after_seconds
from tests.scripted import ScriptedServer
from tests.styles import STYLES, call



# -- a scripted server ------------------------------------------------------------------------------
HANGUP = "hangup"  # read the request, then close the connection without answering


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: no keep-alive resends by libcurl

    def _serve(self) -> None:
        server = self.server
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        server.seen.append((self.command, path, dict(self.headers), body, time.monotonic()))  # type: ignore
        script = server.scripts.get((self.command, path)) or server.scripts.get(path)  # type: ignore
        step = script.popleft() if script else (200, {}, {"ok": True, "_id": path.rsplit("/", 1)[-1]})
        if step == HANGUP:
            self.close_connection = True
            return
        code, headers, payload = step
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_COPY = _serve  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


class Scripted(ScriptedServer):
    handler = _Handler

    def script(self, path: str, *steps, method: str = None) -> None:
        """Answer the next requests to ``path`` (and ``method``, if given) with ``steps`` in order."""
        key = (method, path) if method else path
        self.scripts[key].extend(steps)

    def requests(self, path: str = None):
        return [(m, p) for m, p, *_ in self.seen if path is None or p == path]

    def handle_error(self, request, client_address) -> None:
        pass


@pytest.fixture
def stub():
    with Scripted.running() as server:
        yield server


def fast(retries=3, **kw):
    """A policy with short waits, for tests."""
    kw.setdefault("backoff", 0.01)
    kw.setdefault("max_backoff", 0.02)
    return RetryPolicy(retries=retries, **kw)


class _LongestWait(random.Random):
    """Jitter that always picks the longest wait allowed."""

    def uniform(self, a, b):
        return b


def answer(code, payload=None, **headers):
    return (code, headers, payload if payload is not None else {"error": "e%d" % code, "reason": "scripted"})


DOC = answer(200, {"_id": "doc", "_rev": "1-a", "n": 1})


# -- reads are retried -------------------------------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_a_read_is_retried_on_503_and_succeeds(style, stub):
    db = Database(stub.url + "/db", retries=fast())
    stub.script("/db/doc", answer(503), answer(503), DOC)
    doc = call(style, db.get, "doc")
    assert doc.n == 1
    assert stub.requests("/db/doc") == [("GET", "/db/doc")] * 3


@pytest.mark.parametrize("code", sorted(DEFAULT_STATUSES))
def test_retried_statuses(stub, code):
    db = Database(stub.url + "/db", retries=fast())
    stub.script("/db/doc", answer(code), DOC)
    assert db.get("doc").n == 1
    assert len(stub.requests("/db/doc")) == 2


@pytest.mark.parametrize("code, exc", [(500, ServerError), (404, NotFound), (400, BadRequest),
                                       (409, Conflict), (501, ServerError)])
def test_other_statuses_are_not_retried(stub, code, exc):
    db = Database(stub.url + "/db", retries=fast())
    stub.script("/db/doc", answer(code), DOC)
    with pytest.raises(exc):
        db.get("doc")
    assert len(stub.requests("/db/doc")) == 1


def test_head_is_retried(stub):
    couch = Couch(stub.url, retries=fast())
    stub.script("/db", answer(503), answer(200, {}))
    assert couch.server.request("HEAD", "/db").wait() is None
    assert stub.requests("/db") == [("HEAD", "/db")] * 2


def test_read_posts_are_retried(stub):
    db = Database(stub.url + "/db", retries=fast())
    stub.script("/db/_find", answer(503), answer(200, {"docs": [{"_id": "a"}]}))
    stub.script("/db/_all_docs", answer(502), answer(200, {"rows": [{"id": "a", "doc": {"_id": "a"}}]}))
    assert [d["_id"] for d in db.find({"x": 1})] == ["a"]
    assert [d["_id"] for d in db.get(["a"])] == ["a"]
    assert stub.requests("/db/_find") == [("POST", "/db/_find")] * 2
    assert stub.requests("/db/_all_docs") == [("POST", "/db/_all_docs")] * 2


def test_retries_run_out(stub):
    db = Database(stub.url + "/db", retries=fast(retries=3))
    stub.script("/db/doc", *[answer(503)] * 10)
    with pytest.raises(ServiceUnavailable):
        db.get("doc")
    assert len(stub.requests("/db/doc")) == 4  # the first try and 3 retries


@pytest.mark.parametrize("setting", [0, None, False, RetryPolicy(retries=0)])
def test_retries_off(stub, setting):
    db = Database(stub.url + "/db", retries=setting)
    assert db.server.retry_policy is None and db.server.failure_hooks == []
    stub.script("/db/doc", answer(503), DOC)
    with pytest.raises(ServiceUnavailable):
        db.get("doc")
    assert len(stub.requests("/db/doc")) == 1


def test_default_policy(stub):
    server = Couch(stub.url).server
    policy = server.retry_policy
    assert isinstance(policy, RetryPolicy) and server.failure_hooks == [policy]
    assert policy.retries == 3 and policy.statuses == {429, 502, 503, 504}
    assert Couch(stub.url, retries=5).server.retry_policy.retries == 5


def test_a_read_cut_off_without_an_answer_is_retried(stub):
    db = Database(stub.url + "/db", retries=fast())
    stub.script("/db/doc", HANGUP, DOC)
    assert db.get("doc").n == 1
    assert len(stub.requests("/db/doc")) == 2


# -- writes are not ------------------------------------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_a_write_cut_off_after_sending_is_an_unknown_outcome(style, stub):
    db = Database(stub.url + "/db", retries=fast())
    stub.script("/db/doc", HANGUP, answer(201, {"ok": True, "id": "doc", "rev": "1-a"}))
    with pytest.raises(UnknownOutcome) as info:
        call(style, db.save, {"_id": "doc", "n": 1})
    exc = info.value
    assert isinstance(exc, TransportError) and isinstance(exc.cause, ConnectionFailed)
    assert exc.code is None and exc.method == "PUT" and exc.url == stub.url + "/db/doc"
    assert "may or may not have been applied" in str(exc)
    assert stub.requests("/db/doc") == [("PUT", "/db/doc")], "the write was sent again"


@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE", "COPY"])
def test_writes_are_not_retried_on_statuses_or_after_sending(stub, method):
    server = Couch(stub.url, retries=fast()).server
    stub.script("/db/doc", answer(503), HANGUP, answer(201, {"ok": True}))
    with pytest.raises(ServiceUnavailable):
        server.request(method, "/db/doc", json={} if method in ("PUT", "POST") else None).wait()
    with pytest.raises(UnknownOutcome):
        server.request(method, "/db/doc", json={} if method in ("PUT", "POST") else None).wait()
    assert stub.requests("/db/doc") == [(method, "/db/doc")] * 2


def test_a_write_that_was_never_sent_is_retried(stub):
    # The first connect is refused (nothing sent); the stub then starts on that port.
    import socket

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    db = Database("http://127.0.0.1:%d/db" % port, retries=RetryPolicy(retries=5, backoff=0.2, max_backoff=0.2,
                                                                      rng=_LongestWait()))
    late = {}

    def start_server():
        server = Scripted(port)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        late["server"] = server

    starter = threading.Timer(0.1, start_server)  # while the blocking save retries
    starter.start()
    try:
        result = db.save({"_id": "doc"})
        assert result is not None
        assert [(m, p) for m, p, *_ in late["server"].seen] == [("PUT", "/db/doc")]
    finally:
        starter.join()
        if "server" in late:
            late["server"].shutdown()
            late["server"].server_close()


# -- waits ---------------------------------------------------------------------------------------------
def gaps(stub, path):
    times = [t for _m, p, _h, _b, t in stub.seen if p == path]
    return [b - a for a, b in zip(times, times[1:])]


def test_retry_after_seconds_is_honoured(stub):
    db = Database(stub.url + "/db", retries=fast())
    stub.script("/db/doc", answer(429, **{"Retry-After": "1"}), DOC)
    assert db.get("doc").n == 1
    assert 0.95 <= gaps(stub, "/db/doc")[0] < 2.0


def test_retry_after_http_date_is_honoured(stub):
    db = Database(stub.url + "/db", retries=fast())
    when = email.utils.formatdate(time.time() + 2, usegmt=True)  # whole seconds: 1 to 2 s from now
    stub.script("/db/doc", answer(503, **{"Retry-After": when}), DOC)
    assert db.get("doc").n == 1
    assert 0.9 <= gaps(stub, "/db/doc")[0] < 2.5


def test_a_long_retry_after_is_reported_not_waited_for(stub):
    db = Database(stub.url + "/db", retries=fast(max_retry_after=5))
    stub.script("/db/doc", answer(429, **{"Retry-After": "120"}), DOC)
    began = time.monotonic()
    with pytest.raises(TooManyRequests) as info:
        db.get("doc")
    assert time.monotonic() - began < 1
    assert info.value.code == 429 and len(stub.requests("/db/doc")) == 1


def test_backoff_grows_exponentially_with_full_jitter():
    policy = RetryPolicy(backoff=0.1, max_backoff=1.0, rng=_LongestWait())
    assert [round(policy.backoff_delay(n), 6) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    jittered = RetryPolicy(backoff=0.1, max_backoff=1.0, rng=random.Random(3))
    for n in range(8):
        waits = [jittered.backoff_delay(n) for _ in range(200)]
        cap = min(1.0, 0.1 * 2 ** n)
        assert all(0 <= w <= cap for w in waits)
        assert max(waits) > cap * 0.8 and min(waits) < cap * 0.2  # spread over the whole range
    assert RetryPolicy(rng=_LongestWait()).backoff_delay(1000) == 5.0  # no overflow


def test_waits_between_attempts_follow_the_backoff(stub):
    db = Database(stub.url + "/db", retries=RetryPolicy(retries=3, backoff=0.15, max_backoff=1, rng=_LongestWait()))
    stub.script("/db/doc", answer(503), answer(503), answer(503), DOC)
    assert db.get("doc").n == 1
    for gap, wait in zip(gaps(stub, "/db/doc"), [0.15, 0.3, 0.6]):
        assert wait - 0.02 <= gap < wait + 1.0


def test_the_total_timeout_covers_every_attempt_and_wait(stub):
    policy = RetryPolicy(retries=10, backoff=0.25, max_backoff=0.25, rng=_LongestWait())
    db = Database(stub.url + "/db", retries=policy, timeout=0.6)
    stub.script("/db/doc", *[answer(503)] * 20)
    began = time.monotonic()
    with pytest.raises(ServiceUnavailable):
        db.get("doc")
    assert time.monotonic() - began < 0.6 + 0.5
    # At 0, 0.25 and 0.5 s (two, on a slow machine); a fourth would start past 0.6 s.
    assert len(stub.requests("/db/doc")) in (2, 3)


def test_a_retry_after_past_the_deadline_is_not_waited_for(stub):
    db = Database(stub.url + "/db", retries=fast(), timeout=1.0)
    stub.script("/db/doc", answer(503, **{"Retry-After": "3"}), DOC)
    began = time.monotonic()
    with pytest.raises(ServiceUnavailable):
        db.get("doc")
    assert time.monotonic() - began < 0.8
    assert len(stub.requests("/db/doc")) == 1


def test_retry_after_parsing():
    assert retry_after_seconds("5") == 5.0
    assert retry_after_seconds(" 0 ") == 0.0
    assert retry_after_seconds("-3") == 0.0
    now = 1_700_000_000.0
    assert retry_after_seconds(email.utils.formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)
    assert retry_after_seconds(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    for junk in (None, "", "soon", "nan", "Mon, 99 Foo 2020"):
        assert retry_after_seconds(junk) is None


# -- what counts as a read -------------------------------------------------------------------------------------
@pytest.mark.parametrize("method, path, read", [
    ("GET", "/db/doc", True), ("HEAD", "/db", True), ("OPTIONS", "/", True),
    ("POST", "/db/_find", True), ("POST", "/db/_explain", True), ("POST", "/db/_all_docs", True),
    ("POST", "/db/_all_docs/queries", True), ("POST", "/db/_design/d/_view/v", True),
    ("POST", "/db/_design/d/_view/v/queries", True), ("POST", "/db/_bulk_get?revs=true", True),
    ("POST", "/db/_revs_diff", True), ("POST", "/db/_changes?filter=_doc_ids", True),
    ("POST", "/_dbs_info", True),
    ("POST", "/db", False), ("POST", "/db/_bulk_docs", False), ("POST", "/db/_index", False),
    ("POST", "/_session", True),
    ("POST", "/db/_compact", False), ("POST", "/_replicate", False), ("DELETE", "/_session", False),
    ("POST", "/db/_design/d/_update/u/doc", False), ("PUT", "/db/_find", False),
    ("PUT", "/db/doc", False), ("DELETE", "/db/doc", False), ("COPY", "/db/doc", False),
])
def test_is_idempotent(method, path, read):
    assert is_idempotent(method, "http://127.0.0.1:5984" + path) is read


def test_streams_are_not_retried_unless_asked(stub):
    chunks = []
    stub.script("/db/_changes", answer(503), answer(200, {"results": []}))
    server = Couch(stub.url, retries=fast()).server
    with pytest.raises(ServiceUnavailable):
        server.request("GET", "/db/_changes", on_chunk=chunks.append).wait()
    stub.scripts.clear()
    stub.script("/db/_changes", answer(503), answer(200, {"results": []}))
    server = Couch(stub.url, retries=fast(streams=True)).server
    server.request("GET", "/db/_changes", on_chunk=chunks.append).wait()
    assert b"".join(chunks) == b'{"results": []}'  # the failed attempt's body never reached the consumer
    assert len(stub.requests("/db/_changes")) == 3  # once without retries, twice with


# -- composition with the cookie session ------------------------------------------------------------------
def test_session_renewal_then_retry(stub):
    """A 401 renews the session (corduroy.session); the resent request's 503 is then retried."""
    cookie = {"Set-Cookie": "AuthSession=c1; Version=1; Path=/; HttpOnly"}
    stub.script("/_session", answer(200, {"ok": True, "name": "u", "roles": []}, **cookie),
                answer(200, {"ok": True, "name": "u", "roles": []},
                       **{"Set-Cookie": "AuthSession=c2; Version=1; Path=/; HttpOnly"}), method="POST")
    stub.script("/db/doc", answer(401), answer(503), DOC)
    couch = Couch(stub.url, retries=fast())
    couch.login("u", "pw")
    assert Database("db", server=couch.server).get("doc").n == 1
    assert stub.requests() == [("POST", "/_session"), ("GET", "/db/doc"), ("POST", "/_session"),
                               ("GET", "/db/doc"), ("GET", "/db/doc")]
    cookies = [h.get("Cookie") for m, p, h, *_ in stub.seen if p == "/db/doc"]
    assert cookies == ["AuthSession=c1", "AuthSession=c2", "AuthSession=c2"]


# -- settings and what they show -------------------------------------------------------------------------------
def test_bad_settings_raise_before_any_io():
    with pytest.raises(TypeError):
        Couch("http://127.0.0.1:1", retries="often")
    with pytest.raises(ValueError):
        RetryPolicy(retries=-1)
    with pytest.raises(ValueError):
        RetryPolicy(backoff=-1)
    for name in ("timeout", "connect_timeout", "idle_timeout"):
        with pytest.raises(ValueError):
            Couch("http://127.0.0.1:1", **{name: -1})
        with pytest.raises(ValueError):
            Database("http://127.0.0.1:1/db", **{name: "soon"})


def test_retry_logs_name_no_credentials(stub, caplog):
    db = Database(stub.url.replace("http://", "http://alice:s3cret@") + "/db", retries=fast())
    stub.script("/db/doc", answer(503), DOC)
    with caplog.at_level(logging.INFO, logger="corduroy"):
        assert db.get("doc").n == 1
    messages = [r.getMessage() for r in caplog.records if "retry 1 of 3" in r.getMessage()]
    assert len(messages) == 1 and "s3cret" not in messages[0] and "/db/doc" in messages[0]
    assert stub.seen[0][2]["Authorization"].startswith("Basic ")
    assert "s3cret" not in repr(db.server.retry_policy)


def test_server_options_pass_through(stub):
    couch = Couch(stub.url, timeout=3, connect_timeout=1, idle_timeout=2, retries=fast(retries=2))
    server = couch.server
    assert (server.timeout, server.connect_timeout, server.idle_timeout) == (3, 1, 2)
    assert server.retry_policy.retries == 2
    assert isinstance(server, Server)
