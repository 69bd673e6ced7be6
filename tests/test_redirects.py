"""Redirects: GET/HEAD redirects within the same server are followed (credentials kept); a redirect to
another server (scheme, host or port) is never followed, so credentials never go there."""
from __future__ import annotations

import base64
import http.server
import json

import pytest

from corduroy import Couch, Database, HTTPError
from tests.scripted import ScriptedServer
from tests.styles import STYLES, call

AUTH = "Basic " + base64.b64encode(b"alice:s3cret").decode()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        server = self.server
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        server.seen.append((self.command, self.path, dict(self.headers)))  # type: ignore[attr-defined]
        steps = server.scripts.get(self.path)  # type: ignore[attr-defined]
        code, location = steps.popleft() if steps else (200, None)
        data = json.dumps({"path": self.path} if code == 200 else {"error": "moved"}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if location:
            self.send_header("Location", location)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


class Site(ScriptedServer):
    handler = _Handler

    def redirect(self, path: str, code: int, location: str, times: int = 1) -> None:
        self.scripts[path].extend([(code, location)] * times)


@pytest.fixture
def origin():
    with Site.running() as server:
        yield server


@pytest.fixture
def elsewhere():
    """Another server (another port): it must never see a request with credentials."""
    with Site.running() as server:
        yield server


def couch_for(site, **options):
    return Couch(site.url.replace("http://", "http://alice:s3cret@"), **options)


# -- followed: the same server -------------------------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_same_server_get_redirect_is_followed_with_credentials(style, origin):
    origin.redirect("/db/old", 301, "/db/new")
    db = Database("db", server=couch_for(origin).server)
    assert call(style, db.get, "old") == {"path": "/db/new"}
    assert [(m, p) for m, p, _ in origin.seen] == [("GET", "/db/old"), ("GET", "/db/new")]
    assert all(h.get("Authorization") == AUTH for _, _, h in origin.seen)


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_every_redirect_status_is_followed_for_get(origin, code):
    origin.redirect("/a", code, origin.url + "/b")  # an absolute Location to the same origin
    server = couch_for(origin).server
    assert server.request("GET", "/a").wait() == {"path": "/b"}
    assert [p for _, p, _ in origin.seen] == ["/a", "/b"]


def test_head_redirect_is_followed(origin):
    origin.redirect("/db", 302, "/db2")
    assert couch_for(origin).server.request("HEAD", "/db").wait() is None
    assert [(m, p) for m, p, _ in origin.seen] == [("HEAD", "/db"), ("HEAD", "/db2")]


def test_a_chain_of_redirects_is_followed_up_to_a_limit(origin):
    origin.redirect("/loop", 302, "/loop", times=20)
    with pytest.raises(HTTPError) as info:
        couch_for(origin).server.request("GET", "/loop").wait()
    assert info.value.code == 302 and "more than 5 redirects" in str(info.value)
    assert len(origin.seen) == 6  # the request and 5 redirects followed


# -- not followed -------------------------------------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_redirect_to_another_server_is_not_followed(style, origin, elsewhere):
    origin.redirect("/db/doc", 302, elsewhere.url + "/steal")
    db = Database("db", server=couch_for(origin).server)
    with pytest.raises(HTTPError) as info:
        call(style, db.get, "doc")
    exc = info.value
    assert exc.code == 302 and exc.error == "redirect"
    assert "another server" in str(exc) and elsewhere.url + "/steal" in str(exc)
    assert elsewhere.seen == [], "a request (with credentials) went to another server"
    assert len(origin.seen) == 1


@pytest.mark.parametrize("location", [
    "http://localhost:{port}/x",  # another host name for the same machine is another server
    "https://127.0.0.1:{port}/x",  # another scheme
    "http://alice:pa55word@127.0.0.1:{port}/x",  # credentials of its own in the URL
    "//127.0.0.1:1/x",  # another port, scheme-relative
])
def test_other_origins_are_not_followed(origin, location):
    port = origin.server_address[1]
    origin.redirect("/a", 307, location.format(port=port))
    with pytest.raises(HTTPError) as info:
        couch_for(origin).server.request("GET", "/a").wait()
    assert info.value.code == 307
    assert "pa55word" not in str(info.value)  # a password in the Location is not repeated either
    assert len(origin.seen) == 1


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_writes_do_not_follow_redirects(origin, method):
    origin.redirect("/db/doc", 307, "/db/doc2")
    with pytest.raises(HTTPError) as info:
        couch_for(origin).server.request(method, "/db/doc", json={} if method != "DELETE" else None).wait()
    assert info.value.code == 307 and "only GET and HEAD" in str(info.value)
    assert [(m, p) for m, p, _ in origin.seen] == [(method, "/db/doc")]


def test_following_can_be_turned_off(origin):
    origin.redirect("/a", 301, "/b")
    with pytest.raises(HTTPError) as info:
        couch_for(origin, follow_redirects=False).server.request("GET", "/a").wait()
    assert info.value.code == 301 and "off" in str(info.value)
    assert len(origin.seen) == 1
    with pytest.raises(TypeError):
        Couch(origin.url, follow_redirects="yes")


def test_a_redirect_without_location_is_an_error(origin):
    origin.redirect("/a", 302, None)
    with pytest.raises(HTTPError) as info:
        couch_for(origin).server.request("GET", "/a").wait()
    assert info.value.code == 302 and "no Location" in str(info.value)


def test_not_modified_is_an_answer_not_a_redirect(origin):
    origin.scripts["/a"].append((304, None))
    assert couch_for(origin).server.request("GET", "/a", raw=True).wait() == b""


def test_streamed_requests_follow_too_and_the_consumer_sees_only_the_final_body(origin):
    origin.redirect("/feed", 302, "/feed2")
    chunks = []
    couch_for(origin).server.request("GET", "/feed", on_chunk=chunks.append).wait()
    assert json.loads(b"".join(chunks)) == {"path": "/feed2"}
