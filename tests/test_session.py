"""Cookie sessions (login, logout, session), users, and transparent session renewal.

pouchdb-server in memory runs as an "admin party": a request with an invalid
cookie is simply anonymous-and-admin, so it never answers 401 and cannot show
the renewal path.  That test runs against the test server all the same and
skips on the server's own answer; the renewal logic itself is exercised
against a tiny local HTTP server (``StubCouch``) that keeps CouchDB's cookie
rules, bound to 127.0.0.1.
"""
from __future__ import annotations

import base64
import http.server
import json
import logging
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from corduroy import BadResponse, Conflict, Couch, Database, NotFound, Unauthorized, relax
from corduroy.session import CookieSession, current_session
from corduroy.urls import split_credentials
from tests.conftest import couch_request
from tests.consistency import eventually, eventually_equal, until_conflict
from tests.styles import STYLES, call


def plain(couch_url: str) -> str:
    """The test server's URL without credentials."""
    return split_credentials(couch_url)[0]


@pytest.fixture
def user(couch_url: str) -> Iterator[Tuple[str, str]]:
    """A fresh user (name, password) in ``_users``, deleted afterwards."""
    name = "corduroy_" + uuid.uuid4().hex[:12]
    password = "pw-" + uuid.uuid4().hex
    Couch(couch_url).create_user(name, password)
    yield name, password
    try:
        Couch(couch_url).delete_user(name)
    except NotFound:
        pass


# -- users ------------------------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_create_and_delete_user(style, couch_url):
    couch = Couch(couch_url)
    name = "corduroy_" + uuid.uuid4().hex[:12]
    created = call(style, couch.create_user, name, "secret", roles=["reader"], nickname="Zed")
    assert created["ok"] is True and created["id"] == "org.couchdb.user:" + name
    status, doc = couch_request(couch_url, "GET", "/_users/org.couchdb.user:" + name)
    assert status == 200
    assert (doc["type"], doc["name"], doc["roles"], doc["nickname"]) == ("user", name, ["reader"], "Zed")
    assert doc.get("password") != "secret"  # the server keeps a hash, never the password
    # A cluster may accept this stale create once (a copy lags: tests.consistency); the
    # document then holds a conflicting revision, which is settled before the delete.
    until_conflict(lambda n: call(style, couch.create_user, name, "again"))
    users, doc_id = couch.users, "org.couchdb.user:" + name
    eventually_equal(lambda: users.resolve_conflicts(doc_id) and users.conflicts(doc_id), [])

    def deleted_user() -> None:
        deleted = call(style, couch.delete_user, name)
        assert deleted["ok"] is True
        assert couch_request(couch_url, "GET", "/_users/org.couchdb.user:" + name)[0] == 404

    # Right after the conflict was settled, delete_user's GET may give the other copy's older
    # winner: a delete of it is refused (Conflict) or accepted as a branch of its own, leaving
    # the user in place (tests.consistency); the next try reads the settled revision.
    eventually(deleted_user, retry_on=(AssertionError, Conflict))
    with pytest.raises(NotFound):
        call(style, couch.delete_user, name)


def test_user_input_is_checked_before_any_io():
    couch = Couch("http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(TypeError):
        couch.create_user("", "pw")
    with pytest.raises(TypeError):
        couch.create_user("bob", None)
    with pytest.raises(TypeError):
        couch.create_user("bob", "pw", roles="admin")
    with pytest.raises(TypeError):
        couch.create_user("bob", "pw", type="admin")
    with pytest.raises(TypeError):
        couch.delete_user("")
    with pytest.raises(ValueError):
        couch.login()  # no credentials anywhere
    with pytest.raises(TypeError):
        couch.login("bob", None)


# -- login, session, logout ------------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_login_session_logout(style, couch_url, user):
    name, password = user
    couch = Couch(plain(couch_url))
    answer = call(style, couch.login, name, password)
    assert answer["ok"] is True and answer["name"] == name
    assert couch.server._cookie.startswith("AuthSession=")
    assert call(style, couch.session)["name"] == name
    assert call(style, couch.logout)["ok"] is True
    assert couch.server._cookie is None and current_session(couch.server) is None
    assert call(style, couch.session)["name"] is None


def test_login_defaults_to_the_couchs_credentials_and_replaces_basic_auth(couch_url, user):
    name, password = user
    base = urllib.parse.urlsplit(plain(couch_url))
    couch = Couch("%s://%s:%s@%s" % (base.scheme, name, password, base.netloc))
    assert any(h.startswith("Authorization: Basic") for h in couch.server.headers_plain)
    assert couch.login()["name"] == name
    assert not any(h.startswith("Authorization:") for h in couch.server.headers_plain)
    assert couch.session()["name"] == name  # authenticated by the cookie alone
    couch.logout()
    assert any(h.startswith("Authorization: Basic") for h in couch.server.headers_plain)


def test_login_with_a_wrong_password_raises_unauthorized(couch_url, user):
    couch = Couch(plain(couch_url))
    with pytest.raises(Unauthorized):
        couch.login(user[0], "not the password")
    assert couch.server._cookie is None and current_session(couch.server) is None


def test_databases_of_a_logged_in_couch_share_the_session(couch_url, user):
    couch = Couch(plain(couch_url))
    couch.login(*user)
    db = couch.database("_users")
    assert db.server is couch.server
    assert any(h.startswith("Cookie: AuthSession=") for h in db.server.headers_plain)


# -- renewal against the test server ------------------------------------------------------
def bogus_cookie(name: str) -> str:
    """A well-formed AuthSession cookie for ``name`` that no server issued (bad signature, long expired)."""
    raw = ("%s:5F5E1000:" % name).encode() + b"A" * 20
    return "AuthSession=" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def raw_status(url: str, cookie: str) -> int:
    request = urllib.request.Request(url, headers={"Accept": "application/json", "Cookie": cookie})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.mark.parametrize("style", STYLES)
def test_expired_cookie_is_renewed_transparently(style, couch_url, user, dbname):
    name, password = user
    Couch(couch_url).create(dbname)
    security = {"admins": {"names": [], "roles": []}, "members": {"names": [name], "roles": []}}
    status, body = couch_request(couch_url, "PUT", "/%s/_security" % dbname, security)
    assert status == 200, body
    # On a cluster the node's own copy may take the PUT a moment after the answer (tests.consistency).
    eventually_equal(lambda: couch_request(couch_url, "GET", "/%s/_security" % dbname)[1], security)
    base = plain(couch_url)
    bogus = bogus_cookie(name)
    answer = raw_status("%s/%s" % (base, dbname), bogus)
    if answer != 401:
        pytest.skip("the server answered %d (not 401) to an invalid session cookie on a members-only "
                    "database (an admin party): it cannot show the renewal path" % answer)
    couch = Couch(base)
    couch.login(name, password)
    couch.server.set_cookie(bogus)  # as if the session had expired
    info = call(style, couch.database(dbname).info)  # `call` checks the callback ran exactly once
    assert info["db_name"] == dbname
    assert couch.server._cookie not in (None, bogus)


# -- renewal, in detail, against a local stub --------------------------------------------
class StubCouch:
    """A tiny HTTP server with CouchDB's cookie-session rules, on 127.0.0.1.

    ``POST /_session`` with the right name/password sets ``AuthSession=tokN``
    (only the newest token is valid); other paths answer 200 to a valid
    cookie and 401 otherwise; ``always_401`` paths answer 401 whatever the
    cookie; ``/missing`` answers 404.  It records what it saw.
    """

    def __init__(self, name: str, password: str) -> None:
        self.name = name
        self.password = password
        self.valid: Optional[str] = None
        self.logins = 0  # successful
        self.login_attempts = 0
        self.hits: Counter = Counter()
        self.seen: List[Dict[str, Any]] = []
        self.always_401: set = set()
        self.refresh_with: Optional[str] = None
        self.set_no_cookie = False
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def answer(self, code: int, body: Any, cookie: Optional[str] = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if cookie is not None:
                    self.send_header("Set-Cookie", cookie + "; Version=1; Path=/; HttpOnly")
                self.end_headers()
                self.wfile.write(data)

            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                payload = self.rfile.read(length) if length else b""
                path = self.path.split("?")[0]
                cookie = self.headers.get("Cookie")
                stub.hits[(self.command, path)] += 1
                stub.seen.append({"method": self.command, "path": path, "cookie": cookie,
                                  "authorization": self.headers.get("Authorization")})
                if path == "/_session" and self.command == "POST":
                    stub.login_attempts += 1
                    creds = json.loads(payload)
                    if creds == {"name": stub.name, "password": stub.password}:
                        stub.logins += 1
                        stub.valid = "AuthSession=tok%d" % stub.logins
                        return self.answer(200, {"ok": True, "name": stub.name, "roles": []},
                                           None if stub.set_no_cookie else stub.valid)
                    return self.answer(401, {"error": "unauthorized", "reason": "Name or password is incorrect."})
                if path == "/_session" and self.command == "DELETE":
                    return self.answer(200, {"ok": True}, "AuthSession=")
                if path == "/_session":
                    who = stub.name if cookie is not None and cookie == stub.valid else None
                    return self.answer(200, {"ok": True, "userCtx": {"name": who, "roles": []}})
                if path == "/missing":
                    return self.answer(404, {"error": "not_found", "reason": "missing"})
                if path in stub.always_401 or cookie is None or cookie != stub.valid:
                    return self.answer(401, {"error": "unauthorized", "reason": "You are not authorized."})
                refreshed = None
                if stub.refresh_with is not None:
                    refreshed, stub.refresh_with = stub.refresh_with, None
                    stub.valid = refreshed
                return self.answer(200, {"db_name": path.strip("/"), "cookie": cookie}, refreshed)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@pytest.fixture
def stub() -> Iterator[StubCouch]:
    server = StubCouch("ann", "right-password")
    yield server
    server.close()


@pytest.fixture
def stub_couch(stub: StubCouch) -> Couch:
    couch = Couch(stub.url)
    couch.login("ann", "right-password")
    assert stub.logins == 1
    return couch


@pytest.mark.parametrize("style", STYLES)
def test_stub_renewal_resends_the_request_once_with_a_fresh_cookie(style, stub, stub_couch):
    stub_couch.server.set_cookie("AuthSession=expired")
    info = call(style, stub_couch.database("things").info)  # exactly one callback, checked by `call`
    assert info["db_name"] == "things" and info["cookie"] == "AuthSession=tok2"
    assert stub.logins == 2
    assert stub.hits[("GET", "/things")] == 2
    assert stub_couch.server._cookie == "AuthSession=tok2"
    # The login request itself carried neither the stale cookie nor Basic credentials.
    login = [s for s in stub.seen if s["path"] == "/_session" and s["method"] == "POST"][-1]
    assert login["cookie"] is None and login["authorization"] is None


def test_stub_concurrent_rejections_share_one_login(stub, stub_couch):
    stub_couch.server.set_cookie("AuthSession=expired")

    @relax
    def three():
        return (yield [stub_couch.database(name).info() for name in ("a", "b", "c")])

    infos = three()
    assert [i["db_name"] for i in infos] == ["a", "b", "c"]
    assert stub.logins == 2  # one renewal for the three
    assert all(stub.hits[("GET", "/" + n)] == 2 for n in "abc")


@pytest.mark.parametrize("style", STYLES)
def test_stub_failed_renewal_gives_the_original_401_once_and_ends_the_session(style, stub, stub_couch):
    stub.password = "changed-on-the-server"
    stub_couch.server.set_cookie("AuthSession=expired")
    with pytest.raises(Unauthorized) as info:
        call(style, stub_couch.database("things").info)
    assert info.value.reason == "You are not authorized."  # the request's own answer
    assert stub.login_attempts == 2 and stub.hits[("GET", "/things")] == 1
    assert stub_couch.server._cookie is None and current_session(stub_couch.server) is None


@pytest.mark.parametrize("style", STYLES)
def test_stub_a_request_still_rejected_after_renewal_is_not_resent_again(style, stub, stub_couch):
    stub.always_401.add("/forbidden")
    with pytest.raises(Unauthorized):
        call(style, stub_couch.database("forbidden").info)
    assert stub.hits[("GET", "/forbidden")] == 2  # the request and its one resend
    assert stub.logins == 2
    assert current_session(stub_couch.server) is not None  # the session itself is fine


def test_stub_other_failures_are_not_renewed(stub, stub_couch):
    with pytest.raises(NotFound):
        stub_couch.database("missing").info()
    assert stub.logins == 1 and stub.hits[("GET", "/missing")] == 1


def test_stub_refreshed_cookie_is_adopted(stub, stub_couch):
    stub.refresh_with = "AuthSession=refreshed"
    stub_couch.database("one").info()
    assert stub_couch.server._cookie == "AuthSession=refreshed"
    assert stub_couch.database("two").info()["cookie"] == "AuthSession=refreshed"
    assert stub.logins == 1


def test_stub_login_answered_without_a_cookie_is_an_error(stub):
    stub.set_no_cookie = True
    couch = Couch(stub.url)
    with pytest.raises(BadResponse):
        couch.login("ann", "right-password")
    assert couch.server._cookie is None and current_session(couch.server) is None


def test_session_repr_shows_no_password():
    assert repr(CookieSession("ann", "hunter2")) == "<CookieSession user='ann'>"


def test_stub_basic_credentials_stop_while_logged_in_and_return_after_logout(stub):
    couch = Couch(stub.url.replace("http://", "http://ann:right-password@"))
    couch.login()
    couch.database("things").info()
    couch.logout()
    with pytest.raises(Unauthorized):  # the stub only knows cookies
        couch.database("things").info()
    things = [s for s in stub.seen if s["path"] == "/things"]
    assert things[0]["authorization"] is None and things[0]["cookie"] == "AuthSession=tok1"
    assert things[-1]["authorization"].startswith("Basic ") and things[-1]["cookie"] is None


# -- credentials never leak -----------------------------------------------------------------
def test_credentials_never_appear_in_reprs_logs_or_exceptions(couch_url, caplog, stub):
    sentinel = "Sentinel-" + uuid.uuid4().hex
    name = "corduroy_" + uuid.uuid4().hex[:12]
    token = base64.b64encode(("%s:%s" % (name, sentinel)).encode()).decode()
    caplog.set_level(logging.DEBUG, logger="corduroy")
    caplog.set_level(logging.DEBUG, logger="loop")
    admin = Couch(couch_url)
    admin.create_user(name, sentinel)
    texts: List[str] = []
    try:
        base = urllib.parse.urlsplit(plain(couch_url))
        inline = Couch("%s://%s:%s@%s" % (base.scheme, name, sentinel, base.netloc))
        db = Database("%s://%s:%s@%s/somedb" % (base.scheme, name, sentinel, base.netloc))
        texts += [repr(inline), repr(inline.server), inline.url, repr(db), db.url]
        inline.login()
        texts += [repr(inline), repr(inline.server), repr(inline.server.failure_hooks)]
        texts.append(repr(inline.session()))
        with pytest.raises(Unauthorized) as failed:
            Couch(plain(couch_url)).login(name, sentinel + "-wrong")
        exc = failed.value
        texts += [str(exc), repr(exc), repr(exc.body), str(exc.url), repr(exc.args)]
        # A renewal that fails logs a warning: it must not carry the password either.
        stub.password = sentinel
        stub_side = Couch(stub.url)
        stub_side.login("ann", sentinel)
        stub.password = "changed"
        stub_side.server.set_cookie("AuthSession=expired")
        with pytest.raises(Unauthorized) as renewal:
            stub_side["things"].info()
        texts += [str(renewal.value), repr(renewal.value)]
        inline.logout()
    finally:
        admin.delete_user(name)
    texts.append(caplog.text)
    assert caplog.text  # the DEBUG request log was captured
    for text in texts:
        assert sentinel not in text
        assert token not in text
