"""Custom request headers (per client and per call), JWT and proxy authentication.

What goes on the wire is checked against a small recording HTTP server; that
it works end to end, against the server under test (pouchdb-server, or the
real CouchDB with ``COUCHDB_URL``).  JWT and proxy authentication are
configured on the server at run time (``PUT /_node/_local/_config/...``) and
the configuration is restored after; pouchdb-server has neither, and those
tests skip when the server says so.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import http.server
import json
import logging
import os
import socket
import tempfile
import time
import uuid
from typing import Any, Dict, Iterator, List

import pycurl
import pytest

import corduroy
from corduroy import BadRequest, Couch, Database, NotFound, ProxyAuth, Unauthorized
from corduroy.request_headers import check_headers
from tests.conftest import couch_request
from tests.scripted import ScriptedServer
from tests.styles import STYLES, call

SECRET = "s3cret-" + uuid.uuid4().hex


class Recorder(ScriptedServer):
    """Answers every request with a JSON document and keeps each request's headers and body in ``seen``."""

    def __init__(self) -> None:
        super().__init__()
        self.answer_code = 200
        #: Compress answers (gzip) for a client that accepts it.
        self.gzip_answers = False

    def last(self) -> Dict[str, Any]:
        assert self.seen, "no request reached the server"
        return self.seen[-1]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        server: Recorder = self.server  # type: ignore[assignment]
        server.seen.append({"method": self.command, "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
        code = server.answer_code
        out = json.dumps({"_id": "doc", "_rev": "1-a", "ok": True} if code < 400
                         else {"error": "not_found", "reason": "missing", "pad": "x" * 2000}).encode()
        self.send_response(code)
        if server.gzip_answers and "gzip" in self.headers.get("Accept-Encoding", ""):
            out = gzip.compress(out)
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_PUT = do_POST = do_DELETE = _answer

    def log_message(self, *args: Any) -> None:
        pass


Recorder.handler = _Handler


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    with Recorder.running() as server:
        yield server


# -- per client and per call, on the wire ---------------------------------------

@pytest.mark.parametrize("style", STYLES)
def test_client_headers_go_with_every_request(recorder: Recorder, style: str) -> None:
    db = Database(recorder.url + "/db", headers={"X-Trace": "client", "X-Tenant": "t1"})
    doc = call(style, db.get, "doc")
    assert doc["_id"] == "doc"
    sent = recorder.last()["headers"]
    assert sent["x-trace"] == "client" and sent["x-tenant"] == "t1"
    assert sent["accept"] == "application/json"


@pytest.mark.parametrize("style", STYLES)
def test_call_headers_add_to_and_replace_the_clients(recorder: Recorder, style: str) -> None:
    db = Database(recorder.url + "/db", headers={"X-Trace": "client", "X-Tenant": "t1"})
    with corduroy.headers({"X-Trace": "call", "X-Request-Id": "42"}):
        call(style, db.save, {"_id": "doc", "n": 1})
    sent = recorder.last()["headers"]
    assert sent["x-trace"] == "call" and sent["x-request-id"] == "42" and sent["x-tenant"] == "t1"
    assert sent["content-type"] == "application/json"
    call(style, db.get, "doc")  # outside the block: the client's again
    sent = recorder.last()["headers"]
    assert sent["x-trace"] == "client" and "x-request-id" not in sent


def test_call_header_blocks_nest(recorder: Recorder) -> None:
    db = Database(recorder.url + "/db")
    with corduroy.headers({"X-A": "outer", "X-B": "outer"}):
        with corduroy.headers({"x-b": "inner"}):
            db.get("doc")
            sent = recorder.last()["headers"]
            assert sent["x-a"] == "outer" and sent["x-b"] == "inner"
        db.get("doc")
        assert recorder.last()["headers"]["x-b"] == "outer"


def test_an_operation_keeps_the_headers_of_the_block_it_was_made_in(recorder: Recorder) -> None:
    db = Database(recorder.url + "/db")

    @corduroy.relax
    def run() -> Any:
        with corduroy.headers({"X-Trace": "made-inside"}):
            op = db.get("doc")
        return (yield op)

    run()
    assert recorder.last()["headers"]["x-trace"] == "made-inside"


def test_client_headers_replace_corduroys_own_of_the_same_name(recorder: Recorder) -> None:
    Couch(recorder.url, headers={"accept": "application/json; charset=utf-8"}).info()
    assert recorder.last()["headers"]["accept"] == "application/json; charset=utf-8"


def test_empty_header_value_is_sent_empty(recorder: Recorder) -> None:
    Couch(recorder.url, headers={"X-Empty": ""}).info()
    assert recorder.last()["headers"]["x-empty"] == ""


def test_curl_options_httpheader_is_refused_with_a_pointer_to_headers() -> None:
    with pytest.raises(ValueError, match=r"headers=\{\.\.\.\}"):
        Couch("http://127.0.0.1:1", curl_options={pycurl.HTTPHEADER: ["X-Trace: 1"]})
    couch = Couch("http://127.0.0.1:1")
    with pytest.raises(ValueError, match="HTTPHEADER"):
        couch.server.curl_options = {pycurl.HTTPHEADER: ["X-Trace: 1"]}


# -- bad input: refused before any I/O, and the value never shown -----------------

BAD_HEADERS = [
    pytest.param({"X-Trace": "1\r\nX-Injected: yes"}, ValueError, id="crlf-in-value"),
    pytest.param({"X-Trace": "line\nbreak"}, ValueError, id="lf-in-value"),
    pytest.param({"X-Trace\r\nX-Injected": "1"}, ValueError, id="crlf-in-name"),
    pytest.param({"Authorization: Bearer": SECRET}, ValueError, id="colon-in-name"),
    pytest.param({"X Trace": "1"}, ValueError, id="space-in-name"),
    pytest.param({"": "1"}, ValueError, id="empty-name"),
    pytest.param({"X-Trace": "caf\u00e9"}, ValueError, id="non-ascii-value"),
    pytest.param({"X-Trace": 1}, TypeError, id="int-value"),
    pytest.param({"X-Trace": b"1"}, TypeError, id="bytes-value"),
    pytest.param({b"X-Trace": "1"}, TypeError, id="bytes-name"),
    pytest.param({"Content-Length": "5"}, ValueError, id="reserved-content-length"),
    pytest.param({"Content-Type": "text/plain"}, ValueError, id="reserved-content-type"),
    pytest.param({"X-A": "1", "x-a": "2"}, ValueError, id="twice"),
    pytest.param([("X-Trace", "1")], TypeError, id="not-a-mapping"),
    pytest.param("X-Trace: 1", TypeError, id="a-string"),
]


@pytest.mark.parametrize("bad, exc", BAD_HEADERS)
def test_bad_client_headers_are_refused_at_construction(recorder: Recorder, bad: Any, exc: type) -> None:
    with pytest.raises(exc) as info:
        Database(recorder.url + "/db", headers=bad)
    assert SECRET not in str(info.value)
    assert recorder.seen == []


@pytest.mark.parametrize("bad, exc", BAD_HEADERS)
@pytest.mark.parametrize("style", STYLES)
def test_bad_call_headers_are_refused_before_io(recorder: Recorder, bad: Any, exc: type, style: str) -> None:
    db = Database(recorder.url + "/db")
    with pytest.raises(exc) as info:
        with corduroy.headers(bad):
            call(style, db.get, "doc")
    assert SECRET not in str(info.value)
    assert recorder.seen == []


def test_a_secret_value_with_a_newline_is_not_echoed() -> None:
    with pytest.raises(ValueError) as info:
        check_headers({"X-Api-Key": SECRET + "\n"})
    assert "X-Api-Key" in str(info.value) and SECRET not in str(info.value)


@pytest.mark.parametrize("token, exc", [
    pytest.param("a.b.c\r\nX: 1", ValueError, id="crlf"),
    pytest.param("a b.c", ValueError, id="space"),
    pytest.param("", ValueError, id="empty"),
    pytest.param(b"a.b.c", TypeError, id="bytes"),
])
def test_bad_jwt_is_refused_without_echo(token: Any, exc: type) -> None:
    with pytest.raises(exc) as info:
        Couch("http://127.0.0.1:1", jwt=token)
    assert "a.b.c" not in str(info.value)


def test_jwt_and_password_together_are_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        Couch("http://u:p@127.0.0.1:1", jwt="a.b.c")


@pytest.mark.parametrize("args, exc", [
    pytest.param(("",), TypeError, id="empty-user"),
    pytest.param(("al\nice",), ValueError, id="newline-user"),
    pytest.param(("alice", "admin"), TypeError, id="roles-a-string"),
    pytest.param(("alice", ["a,b"]), ValueError, id="comma-in-role"),
    pytest.param(("alice", [], 123), TypeError, id="int-secret"),
])
def test_bad_proxy_auth_is_refused(args: Any, exc: type) -> None:
    with pytest.raises(exc):
        ProxyAuth(*args)


# -- JWT and proxy authentication, on the wire --------------------------------------

def test_jwt_is_sent_as_a_bearer_token(recorder: Recorder) -> None:
    couch = Couch(recorder.url, jwt="aaa.bbb.ccc")
    couch.info()
    assert recorder.last()["headers"]["authorization"] == "Bearer aaa.bbb.ccc"
    couch.server.set_jwt("ddd.eee.fff")
    couch.info()
    assert recorder.last()["headers"]["authorization"] == "Bearer ddd.eee.fff"
    couch.server.set_jwt(None)
    couch.info()
    assert "authorization" not in recorder.last()["headers"]


def test_proxy_auth_sends_user_roles_and_hmac_token(recorder: Recorder) -> None:
    Couch(recorder.url, auth=ProxyAuth("alice", ["staff", "ops"], secret=SECRET)).info()
    sent = recorder.last()["headers"]
    assert sent["x-auth-couchdb-username"] == "alice"
    assert sent["x-auth-couchdb-roles"] == "staff,ops"
    assert sent["x-auth-couchdb-token"] == hmac.new(SECRET.encode(), b"alice", hashlib.sha256).hexdigest()
    Couch(recorder.url, auth=ProxyAuth("bob")).info()
    sent = recorder.last()["headers"]
    assert sent["x-auth-couchdb-username"] == "bob" and "x-auth-couchdb-token" not in sent


# -- secrets never show ---------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_secret_headers_never_show_in_reprs_logs_or_errors(recorder: Recorder,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0." + uuid.uuid4().hex
    proxy = ProxyAuth("alice", ["staff"], secret=SECRET)
    secrets = [token, SECRET, proxy.token, "apikey-" + SECRET, "cookie-" + SECRET]
    caplog.set_level(logging.DEBUG)
    shown: List[str] = [repr(proxy)]
    for url in (recorder.url, "http://127.0.0.1:%d" % _free_port()):
        for options in ({"jwt": token}, {"auth": proxy}):
            couch = Couch(url, headers={"X-Api-Key": "apikey-" + SECRET, "Cookie": "cookie-" + SECRET},
                          retries=0, **options)
            db = couch.database("db")
            shown += [repr(couch), repr(db), repr(couch.server)]
            recorder.answer_code = 404
            for attempt, args in ((db.get, ("doc",)), (couch.info, ())):
                try:
                    with corduroy.headers({"Authorization": "Bearer " + token}):
                        attempt(*args)
                except corduroy.CouchError as exc:
                    shown += [str(exc), repr(exc), repr(exc.__dict__)]
                else:  # pragma: no cover
                    pytest.fail("expected an error")
    shown.append(caplog.text)
    assert any("GET" in line for line in caplog.messages), "the requests were not logged at all"
    for text in shown:
        for secret in secrets:
            assert secret not in text


# -- end to end, against the server under test ---------------------------------------

@pytest.mark.parametrize("style", STYLES)
def test_headers_work_against_the_server(couch_url: str, dbname: str, style: str) -> None:
    couch = Couch(couch_url, headers={"X-Trace": "client", "X-Client": "corduroy-tests"})
    call(style, couch.create, dbname)
    db = couch.database(dbname)
    with corduroy.headers({"X-Trace": "call-" + style}):
        call(style, db.save, {"_id": "a", "n": 1})
        doc = call(style, db.get, "a")
    assert doc["n"] == 1 and doc["_rev"].startswith("1-")
    with pytest.raises(NotFound):
        call(style, db.get, "missing")


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def make_jwt(secret: str, sub: str, roles: List[str]) -> str:
    """An HS256 JSON Web Token for ``sub`` with CouchDB roles, valid ten minutes."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = _b64url(json.dumps({"sub": sub, "_couchdb.roles": roles, "exp": int(time.time()) + 600}).encode())
    signature = hmac.new(secret.encode(), ("%s.%s" % (header, claims)).encode(), hashlib.sha256).digest()
    return "%s.%s.%s" % (header, claims, _b64url(signature))


HANDLERS = ("{chttpd_auth, cookie_authentication_handler}, {chttpd_auth, jwt_authentication_handler}, "
            "{chttpd_auth, proxy_authentication_handler}, {chttpd_auth, default_authentication_handler}")


#: Changing it restarts CouchDB's HTTP listener (and 512 is its default).
RESTART_KEY = ("chttpd", "backlog", "512")


#: Seconds between two listener restarts (see :func:`_space_restarts`).
RESTART_SPACING = 4.0


def _restart_marker(admin: Couch) -> str:
    from urllib.parse import urlsplit

    where = urlsplit(admin.server.url)
    return os.path.join(tempfile.gettempdir(), "corduroy-tests-restart-%s-%s" % (where.hostname, where.port))


def _space_restarts(admin: Couch) -> None:
    """Wait until the listener's last restart (by this fixture, in any run) is RESTART_SPACING s old.

    CouchDB 3.4 reads its authentication handlers when the HTTP listener
    starts, and a change of [chttpd] backlog restarts the listener; four
    restarts within a few seconds exceed its supervisor's restart intensity
    and stop CouchDB altogether.  So each setup and teardown restarts it
    once, spaced out even across back-to-back runs.
    """
    marker = _restart_marker(admin)
    try:
        age = time.time() - os.path.getmtime(marker)
        if 0 <= age < RESTART_SPACING:
            time.sleep(RESTART_SPACING - age)
    except OSError:
        pass


def _await_listener(admin: Couch) -> None:
    """After a restart: note its time and wait until the listener answers again."""
    with open(_restart_marker(admin), "w"):
        pass
    _wait_up(admin)


def _wait_up(admin: Couch) -> None:
    """Wait until the (restarting) listener answers again: the tests after these must find it up."""
    time.sleep(0.3)
    deadline = time.monotonic() + 20
    while True:
        try:
            admin.info()
            return
        except corduroy.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _handlers(couch_url: str) -> Any:
    """The authentication handlers the server lists in ``GET /_session`` (None: it lists none)."""
    _, answer = couch_request(_bare(couch_url), "GET", "/_session")
    info = answer.get("info") if isinstance(answer, dict) else None
    return info.get("authentication_handlers") if isinstance(info, dict) else None


@pytest.fixture(scope="module")
def auth_server(couch_url: str) -> Iterator[str]:
    """The server under test with JWT and proxy authentication on (HMAC secret SECRET); restored after."""
    admin = Couch(couch_url)
    keys = [("chttpd", "authentication_handlers", HANDLERS),
            ("jwt_keys", "hmac:_default", base64.b64encode(SECRET.encode()).decode()),
            ("chttpd_auth", "proxy_use_secret", "true"),
            ("chttpd_auth", "secret", SECRET),
            RESTART_KEY]  # last: restarts the listener
    saved: Dict[str, Any] = {}
    try:
        for section, key, value in keys:
            name = "%s/%s" % (section, key)
            if (section, key, value) == RESTART_KEY:
                _space_restarts(admin)
            try:
                saved[name] = admin.config(name)
            except NotFound:
                saved[name] = None
            admin.config(name, value)
        _await_listener(admin)
    except corduroy.HTTPError as exc:
        _restore(admin, saved)
        pytest.skip("the server refused the authentication configuration: %s" % exc)
    try:
        deadline = time.monotonic() + 3
        handlers = _handlers(couch_url)
        while handlers is not None and not {"jwt", "proxy"} <= set(handlers) and time.monotonic() < deadline:
            time.sleep(0.2)  # the listener restarting
            handlers = _handlers(couch_url)
        if handlers is None or not {"jwt", "proxy"} <= set(handlers):
            pytest.skip("the server has no JWT/proxy authentication (its _session lists handlers %r)" % handlers)
        yield couch_url
    finally:
        _restore(admin, saved)


def _restore(admin: Couch, saved: Dict[str, Any]) -> None:
    for name, value in saved.items():
        if name == "%s/%s" % RESTART_KEY[:2]:
            _space_restarts(admin)
        try:
            if value is None:
                admin.config(name, delete=True)
            else:
                admin.config(name, value)
        except NotFound:
            pass
    if "%s/%s" % RESTART_KEY[:2] in saved:  # restoring it restarted the listener
        _await_listener(admin)


def _bare(url: str) -> str:
    from corduroy.urls import split_credentials

    return split_credentials(url)[0]


@pytest.mark.parametrize("style", STYLES)
def test_jwt_authenticates_against_the_server(auth_server: str, dbname: str, style: str) -> None:
    couch = Couch(_bare(auth_server), jwt=make_jwt(SECRET, "jwt-user", ["_admin"]))
    user = call(style, couch.session)
    assert user["name"] == "jwt-user" and "_admin" in user["roles"]
    call(style, couch.create, dbname)  # an admin's action
    bad = Couch(_bare(auth_server), jwt=make_jwt("not-the-secret", "jwt-user", ["_admin"]))
    with pytest.raises((Unauthorized, BadRequest)) as info:  # CouchDB 3.4: 400 "Bad HMAC"
        call(style, bad.session)
    assert bad.server._jwt not in str(info.value)


@pytest.mark.parametrize("style", STYLES)
def test_proxy_auth_authenticates_against_the_server(auth_server: str, style: str) -> None:
    couch = Couch(_bare(auth_server), auth=ProxyAuth("proxy-user", ["staff", "ops"], secret=SECRET))
    assert call(style, couch.session) == {"name": "proxy-user", "roles": ["staff", "ops"]}
    wrong = Couch(_bare(auth_server), auth=ProxyAuth("proxy-user", ["staff"], secret="wrong"))
    assert call(style, wrong.session)["name"] is None  # an unvouched proxy user is anonymous
