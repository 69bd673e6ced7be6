"""corduroy inside servers: Tornado 6, aiohttp, and a server embedded in the reactor.

Each example in ``examples/`` is driven in-process (its app started on a free
loopback port and sent real HTTP requests) and also run as a script in a
subprocess, the way ``make demo`` and users run it.
"""
from __future__ import annotations

import asyncio
import http.client
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest

import loop
from corduroy import Couch, Database
from loop.backends.aio import reactor_for_loop
from tests.conftest import couch_request
from tests.consistency import EVERY_COPY, SETTLE, eventually

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
_loaded: Dict[str, Any] = {}


def example(name: str) -> Any:
    """Import ``examples/<name>.py`` (once) as a module."""
    module = _loaded.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location("corduroy_example_" + name, EXAMPLES / (name + ".py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        _loaded[name] = module
    return module


def run_script(name: str, couch_url: str, *args: str) -> str:
    """Run ``examples/<name>`` with ``COUCHDB_URL`` set; assert it exits 0; return its output."""
    env = dict(os.environ, COUCHDB_URL=couch_url, PYTHONPATH=str(EXAMPLES.parent))
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# The asyncio loops a framework can run on (and corduroy with it).
ASYNCIO_LOOPS = [
    pytest.param("uvloop", marks=pytest.mark.skipif(not _has("uvloop"), reason="uvloop is not installed")),
    "asyncio",
]


def run_on(kind: str, coro_fn: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Run ``coro_fn()`` on a fresh ``kind`` loop (at most ``timeout`` s); close corduroy's reactor on it after."""
    if kind == "uvloop":
        import uvloop

        aloop = uvloop.new_event_loop()
    else:
        aloop = asyncio.new_event_loop()
    try:
        return aloop.run_until_complete(asyncio.wait_for(coro_fn(), timeout))
    finally:
        reactor_for_loop(aloop).close()
        aloop.close()


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


PEOPLE = [
    {"_id": "lackey-129", "first": "Oliver", "last": "Reeder"},
    {"_id": "lackey-130", "first": "Angela", "last": "Heaney"},
]


@pytest.fixture
def people_db(couch_url, dbname) -> Database:
    db = Couch(couch_url).create(dbname)
    db.save([dict(person) for person in PEOPLE], w=EVERY_COPY)  # in every copy before a test reads it
    return db


# -- Tornado 6 ----------------------------------------------------------------
@pytest.fixture
def tornado():
    return pytest.importorskip("tornado")


async def tornado_fetch(port: int, path: str, method: str = "GET", body: Any = None) -> Any:
    from tornado.httpclient import AsyncHTTPClient

    client = AsyncHTTPClient()
    return await client.fetch("http://127.0.0.1:%d%s" % (port, path), method=method, body=body,
                              raise_error=False, request_timeout=30)


async def serving(module: Any, app: Any, scenario: Callable[[int], Any]) -> Any:
    """Serve ``app`` with ``module.listen`` while ``scenario(port)`` runs; stop the server after."""
    server, port = module.listen(app)
    try:
        return await scenario(port)
    finally:
        server.stop()
        await server.close_all_connections()


@pytest.mark.parametrize("aloop", ASYNCIO_LOOPS)
def test_hello_tornado_in_three_styles_greets_known_and_unknown_people(tornado, people_db, aloop):
    hello = example("tornado_hello")

    async def scenario(port: int) -> Dict[str, Any]:
        answers = {}
        for prefix in ("hello", "hi", "hey"):  # JumpyHello, RelaxedHello, AsyncHello
            for user in ("lackey-129", "lackey-130", "nobody"):
                response = await tornado_fetch(port, "/%s/%s" % (prefix, user))
                answers[prefix, user] = (response.code, response.body.decode())
        return answers

    answers = run_on(aloop, lambda: serving(hello, hello.make_app(people_db), scenario))
    for prefix in ("hello", "hi", "hey"):
        # The greeting is written by a callback (or after a yield/await) that runs
        # once CouchDB answers: it is in the body only if the request stayed open.
        assert answers[prefix, "lackey-129"] == (200, "hello Oliver Reeder")
        assert answers[prefix, "lackey-130"] == (200, "hello Angela Heaney")
        assert answers[prefix, "nobody"] == (200, "hello whoever you are")


def test_hello_tornado_answers_500_when_couchdb_is_unreachable(tornado):
    """An exception raised in JumpyHello's callback, at RelaxedHello's yield or AsyncHello's await is a 500."""
    hello = example("tornado_hello")
    unreachable = Database("http://127.0.0.1:%d/people" % closed_port())

    async def scenario(port: int) -> List[Any]:
        return [(await tornado_fetch(port, "/%s/lackey-129" % prefix)).code for prefix in ("hello", "hi", "hey")]

    assert run_on("asyncio", lambda: serving(hello, hello.make_app(unreachable), scenario)) == [500, 500, 500]


def test_a_relax_handler_method_returns_an_operation_that_tornado_awaits(tornado, people_db):
    hello = example("tornado_hello")
    seen = []

    class Probe(hello.RelaxedHello):
        def get(self, user_id):
            op = super().get(user_id)
            seen.append((isinstance(op, loop.Operation), op.done()))
            return op

    import tornado.web

    async def scenario(port: int) -> Any:
        return await tornado_fetch(port, "/probe/lackey-130")

    app = tornado.web.Application([(r"/probe/([^/]+)", Probe, {"people_db": people_db})])
    response = run_on("asyncio", lambda: serving(hello, app, scenario))
    assert response.body == b"hello Angela Heaney"
    # An Operation, still pending when get() returned: Tornado waited for it.
    assert seen == [(True, False)]


LEADERBOARD_AFTER = {
    # style: (player, new score, expected top 3 as (id, name, score))
    "callback": ("grace", 2000, [("grace", "Grace", 2000), ("ada", "Ada", 1200), ("barbara", "Barbara", 1100)]),
    "relax": ("ken", 1150, [("ada", "Ada", 1200), ("ken", "Ken", 1150), ("barbara", "Barbara", 1100)]),
    "async": ("ada", 300, [("barbara", "Barbara", 1100), ("grace", "Grace", 950), ("linus", "Linus", 700)]),
}


def rankings_of(response: Any) -> List[Tuple[str, str, int]]:
    return [(r["player"], r["name"], r["score"]) for r in json.loads(response.body)["rankings"]]


@pytest.mark.parametrize("aloop", ASYNCIO_LOOPS)
@pytest.mark.parametrize("style", ["callback", "relax", "async"])
def test_rankings_updater_saves_the_score_then_answers_the_highscores(tornado, couch_url, dbname, style, aloop):
    board = example("leaderboard")
    db = Couch(couch_url).create(dbname)
    player, score, expected = LEADERBOARD_AFTER[style]

    async def scenario(port: int) -> Any:
        deadline = time.monotonic() + SETTLE
        while True:
            response = await tornado_fetch(port, "/%s/rankings/%s" % (style, player), "POST", str(score))
            # The handler reads the rankings view right after saving the score: a
            # cluster's view may not show that save (or the players') yet (tests.consistency).
            # Posting the same score again is harmless; a single node is right the first time.
            if response.code != 200 or rankings_of(response) == expected or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        stored = await db.get(player)
        return response, stored

    async def go() -> Any:
        await board.create_leaderboard(db)
        return await serving(board, board.make_app(db), scenario)

    response, stored = run_on(aloop, go)
    assert response.code == 200, response.body
    assert response.headers["Content-Type"].startswith("application/json")
    rankings = json.loads(response.body)["rankings"]
    assert rankings_of(response) == expected
    assert [r["rank"] for r in rankings] == [1, 2, 3]
    assert stored.score == score and stored.name == dict((p["_id"], p["name"]) for p in board.PLAYERS)[player]


@pytest.mark.parametrize("style", ["callback", "relax", "async"])
def test_rankings_updater_answers_404_for_an_unknown_player_and_400_for_a_bad_score(
        tornado, couch_url, dbname, style):
    board = example("leaderboard")
    db = Couch(couch_url).create(dbname)

    async def scenario(port: int) -> Any:
        missing = await tornado_fetch(port, "/%s/rankings/nobody" % style, "POST", "10")
        bad = await tornado_fetch(port, "/%s/rankings/ada" % style, "POST", "lots")
        return missing.code, bad.code, await db.get("ada"), await db.get(["nobody"])

    async def go() -> Any:
        await board.create_leaderboard(db)
        return await serving(board, board.make_app(db), scenario)

    missing, bad, ada, nobody = run_on("asyncio", go)
    assert (missing, bad) == (404, 400)
    assert ada.score == 1200 and ada["_rev"].startswith("1-")  # nothing was written
    assert nobody == [None]


def test_callback_handler_fails_the_request_with_a_callbacks_http_error(tornado, people_db):
    """CallbackHandler: an HTTPError raised inside a wrapped callback sets the response status."""
    board = example("leaderboard")
    import tornado.web

    class Teapot(board.CallbackHandler):
        def get(self):
            people_db.get("lackey-129", callback=self.callback(self.got))
            return self.until_finished()

        def got(self, doc, status):
            raise tornado.web.HTTPError(418, "short and stout: %s" % doc["first"])

    async def scenario(port: int) -> Any:
        return await tornado_fetch(port, "/teapot")

    response = run_on("asyncio", lambda: serving(board, tornado.web.Application([(r"/teapot", Teapot)]), scenario))
    assert response.code == 418


# -- aiohttp -------------------------------------------------------------------
@pytest.fixture
def aiohttp():
    return pytest.importorskip("aiohttp")


@pytest.mark.parametrize("aloop", ASYNCIO_LOOPS)
def test_aiohttp_handlers_run_corduroy_on_the_servers_own_loop(aiohttp, people_db, aloop):
    app_module = example("aiohttp_app")
    from aiohttp import web

    seen = {}

    async def probe(request: web.Request) -> web.Response:
        reactor = loop.get_reactor()
        seen["same loop"] = getattr(reactor, "loop", None) is asyncio.get_running_loop()
        seen["backend"] = reactor.backend
        info = await request.app[app_module.DB].info()
        return web.json_response({"doc_count": info["doc_count"]})

    async def go() -> Any:
        app = app_module.make_app(people_db)
        app.router.add_get("/probe", probe)
        runner, port = await app_module.serve(app)
        base = "http://127.0.0.1:%d" % port
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as client:
                answers = []
                for method, path, body in [
                    ("GET", "/probe", None),
                    ("GET", "/people/lackey-129", None),
                    ("PUT", "/people/lackey-129", {"office": "Richmond Terrace"}),
                    ("GET", "/people/lackey-129", None),
                    ("GET", "/people/nobody", None),
                    ("GET", "/greetings?ids=lackey-130,nobody,lackey-129", None),
                    ("PUT", "/people/x", {"_id": "y"}),
                ]:
                    async with client.request(method, base + path, json=body) as response:
                        answers.append((response.status, await response.json()))
                return answers
        finally:
            await runner.cleanup()

    answers = run_on(aloop, go)
    assert seen == {"same loop": True, "backend": aloop}
    assert answers[0] == (200, {"doc_count": 2})
    assert answers[1] == (200, {"_id": "lackey-129", "first": "Oliver", "last": "Reeder"})
    assert answers[2][0] == 200 and answers[2][1]["rev"].startswith("2-")
    assert answers[3] == (200, {"_id": "lackey-129", "first": "Oliver", "last": "Reeder",
                                "office": "Richmond Terrace"})
    assert answers[4] == (404, {"error": "not_found"})
    assert answers[5] == (200, {"greetings": ["hello Angela Heaney", "hello whoever you are",
                                              "hello Oliver Reeder"]})
    assert answers[6][0] == 400


def test_aiohttp_concurrent_puts_to_one_document_all_land(aiohttp, people_db, couch_url):
    """Twelve PUTs at once on one loop: the handler's retry on Conflict keeps every field."""
    app_module = example("aiohttp_app")

    async def go() -> Any:
        runner, port = await app_module.serve(app_module.make_app(people_db))
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as client:
                async def put(i: int) -> int:
                    url = "http://127.0.0.1:%d/people/crowd" % port
                    async with client.put(url, json={"field%02d" % i: i}) as response:
                        return response.status

                statuses = await asyncio.gather(*(put(i) for i in range(12)))
                return statuses, await people_db.get("crowd")
        finally:
            await runner.cleanup()

    statuses, doc = run_on("asyncio", go)
    assert statuses == [200] * 12
    every_field = {"field%02d" % i: i for i in range(12)}
    if {k: v for k, v in doc.items() if k.startswith("field")} == every_field:
        return
    # Only a cluster may do this: it *accepts* a PUT with a stale _rev while a copy
    # lags (tests.consistency), and that edit lives on as a conflicting revision of
    # the document, not lost: every field is in one of the document's leaves.
    _, members = couch_request(couch_url, "GET", "/_membership")
    assert len(members["cluster_nodes"]) > 1, doc

    def in_some_leaf() -> None:
        found = {}
        for leaf in people_db.get("crowd", open_revs="all"):
            found.update((k, v) for k, v in leaf["ok"].items() if k.startswith("field"))
        assert found == every_field

    eventually(in_some_leaf)


# -- a server embedded in the reactor --------------------------------------------
@pytest.fixture(params=["uvloop", "asyncio", "pyuv", "gevent"])
def reactor(request):
    """A fresh reactor of each available backend, made this thread's reactor for the test."""
    if request.param not in loop.available_backends():
        pytest.skip("the %s backend is not available here" % request.param)
    previous = loop.get_reactor()
    reactor = loop.Reactor.create(request.param)
    loop.set_reactor(reactor)
    try:
        yield reactor
    finally:
        loop.set_reactor(previous)
        reactor.close()


def http_request(port: int, method: str, path: str, conn: Any = None) -> Any:
    """(status, body text) of one request (on ``conn`` if given, else a new connection)."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=b"" if method == "POST" else None)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        if own:
            conn.close()


def test_micro_middleware_serves_http_and_couchdb_on_one_reactor(reactor, people_db, couch_url):
    mw = example("micro_middleware")
    db = people_db
    server = mw.MicroServer(reactor, mw.GreeterApp(db))
    where_the_app_ran = set()
    original_app = server.app

    def recording_app(request, respond):
        where_the_app_ran.add((threading.get_ident(), reactor.is_running()))
        return original_app(request, respond)

    server.app = recording_app

    def client() -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:  # several requests on one kept-alive connection
            out["known"] = http_request(server.port, "GET", "/hello/lackey-129", conn)
            out["unknown"] = http_request(server.port, "GET", "/hello/nobody", conn)
            out["no route"] = http_request(server.port, "GET", "/elsewhere", conn)
            out["visits"] = [http_request(server.port, "POST", "/visits/lackey-130", conn) for _ in range(3)]
        finally:
            conn.close()
        # Eight clients at once, each on its own connection, all counting visits to one doc.
        results: List[Any] = [None] * 8

        def visit(i: int) -> None:
            results[i] = http_request(server.port, "POST", "/visits/crowd")

        crowd = [threading.Thread(target=visit, args=(i,)) for i in range(8)]
        for t in crowd:
            t.start()
        for t in crowd:
            t.join(30)
        out["crowd"] = results
        return out

    try:
        out = mw.serve_while(reactor, client, timeout=60)
    finally:
        server.close()
    assert server.errors == []
    assert out["known"] == (200, "hello Oliver Reeder")
    assert out["unknown"] == (200, "hello whoever you are")
    assert out["no route"][0] == 404
    assert [json.loads(body)["visits"] for _, body in out["visits"]] == [1, 2, 3]
    assert all(code == 200 for code, _ in out["crowd"])
    counts = sorted(json.loads(body)["visits"] for _, body in out["crowd"])
    # The app ran in this thread, inside the running reactor (so corduroy's calls did not block).
    assert where_the_app_ran == {(threading.get_ident(), True)}
    if counts == list(range(1, 9)):
        # Each visit was counted exactly once, conflicts retried: the counts are 1..8.
        assert db.get("crowd")["visits"] == 8  # blocking again now that the reactor has stopped
    else:
        # Only a cluster may do this: it *accepts* a write with a stale _rev when
        # one copy has not seen the newer revision yet (tests.consistency), and two
        # visits that wrote the same count then made the same revision.
        _, members = couch_request(couch_url, "GET", "/_membership")
        assert len(members["cluster_nodes"]) > 1, counts
        assert set(counts) <= set(range(1, 9)) and db.get("crowd")["visits"] == counts[-1]
    assert db.get("lackey-130")["visits"] == 3


def test_micro_middleware_pipelining_half_close_and_malformed_requests(people_db):
    mw = example("micro_middleware")
    previous = loop.get_reactor()
    reactor = loop.Reactor.create("asyncio")
    loop.set_reactor(reactor)
    server = mw.MicroServer(reactor, mw.GreeterApp(people_db))

    def read_all(payload: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)  # half-close: the server must still answer
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)

    def client() -> List[bytes]:
        pipelined = (b"GET /hello/lackey-129 HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /hello/lackey-130 HTTP/1.1\r\nHost: x\r\n\r\n")
        return [read_all(pipelined), read_all(b"NONSENSE\r\n\r\n"),
                read_all(b"GET /hello/lackey-129 HTTP/1.0\r\n\r\n")]

    try:
        pipelined, malformed, http10 = mw.serve_while(reactor, client, timeout=60)
    finally:
        server.close()
        loop.set_reactor(previous)
        reactor.close()
    # Three answers, in order, on one connection; the server closed it after the client's FIN.
    assert pipelined.count(b"HTTP/1.1 ") == 3
    first, second, third = (pipelined.index(s) for s in (b"hello Oliver Reeder", b"no route", b"hello Angela Heaney"))
    assert first < second < third
    assert malformed.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in malformed
    assert http10.startswith(b"HTTP/1.1 200 ") and http10.endswith(b"hello Oliver Reeder")


# -- the examples as scripts -------------------------------------------------------
def test_leaderboard_script_runs_every_style_end_to_end(tornado, couch_url):
    def run_once():
        out = run_script("leaderboard.py", couch_url)
        assert "wrote scores: Ada 1200, Grace 950, Linus 700, Barbara 1100, Ken 400" in out
        assert "callback: an unknown player -> HTTP 404" in out
        assert "deleted corduroy_leaderboard_" in out
        # Each handler reads the rankings view right after saving a score: a
        # cluster's view may not show that save yet (tests.consistency), and
        # then the script's run, not the client, is retried.
        assert "callback: grace now scores 2000; the top 3:\n  1. Grace     2000\n  2. Ada       1200\n" in out
        assert ("relax: ken now scores 1150; the top 3:\n"
                "  1. Grace     2000\n  2. Ada       1200\n  3. Ken       1150") in out
        assert ("async: ada now scores 300; the top 3:\n"
                "  1. Grace     2000\n  2. Ken       1150\n  3. Barbara   1100") in out

    eventually(run_once, timeout=20)


def test_tornado_hello_script(tornado, couch_url):
    out = run_script("tornado_hello.py", couch_url)
    for line in ["GET /hello/lackey-129  -> hello Oliver Reeder", "GET /hi/lackey-130     -> hello Angela Heaney",
                 "GET /hey/lackey-129    -> hello Oliver Reeder", "GET /hello/nobody      -> hello whoever you are",
                 "GET /hi/nobody         -> hello whoever you are", "GET /hey/nobody        -> hello whoever you are"]:
        assert line in out, out


def test_aiohttp_script(aiohttp, couch_url):
    out = run_script("aiohttp_app.py", couch_url)
    assert "on the server's loop: True" in out
    assert "GET /greetings?ids=lackey-129,nobody  -> 200 {'greetings': ['hello Oliver Reeder', " \
           "'hello whoever you are']}" in out
    assert "deleted corduroy_aiohttp_" in out


def test_micro_middleware_script_on_every_available_backend(couch_url):
    out = run_script("micro_middleware.py", couch_url, "--backend", "all")
    for backend in loop.available_backends():
        assert "[%s] GET /hello/lackey-129  -> 200 hello Oliver Reeder" % backend in out
        assert '[%s] POST /visits/lackey-130 -> 200 {"id": "lackey-130", "visits": 2}' % backend in out
        assert "[%s] lackey-130 in CouchDB: visits=2" % backend in out
