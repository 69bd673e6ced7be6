"""The leaderboard from corduroy's project page, as a Tornado 6 application.

``POST /<style>/rankings/<player_id>`` with a number as the body updates that
player's score document, then queries the ``leaderboard/highscores`` view
(highest scores first, ``limit`` rows) and answers the rankings as JSON.  One
handler per calling style, each doing the same thing:

``callback``  :class:`RankingsUpdater` — explicit callbacks, the page's first version
``relax``     :class:`RelaxedRankingsUpdater` — a ``@relax`` generator, the page's second
``async``     :class:`AsyncRankingsUpdater` — a native ``async def`` handler with ``await``

Tornado 6 has no ``@tornado.web.asynchronous``.  Instead, when a handler
method returns an awaitable, Tornado awaits it before finishing the request:

- A ``@relax`` method, called inside Tornado's running loop, returns a
  corduroy Operation, which is awaitable; Tornado waits for the generator to
  finish.  An exception raised in it (``NotFound``, ``HTTPError``...) reaches
  Tornado like one raised in a coroutine.
- An ``async def`` method is a coroutine; ``await db.get(...)`` works because
  corduroy shares the asyncio loop Tornado runs on.
- A callback-style method has nothing to await by itself: the response is
  finished later, by a callback.  :class:`CallbackHandler` gives it something
  to return: ``until_finished()``, a Future resolved by ``on_finish`` (when a
  callback calls ``self.finish()``).  Wrapping each callback in
  ``self.callback(...)`` makes an exception raised inside it fail that Future,
  so Tornado answers it (``HTTPError(404)`` gives a 404, anything else a
  logged 500) instead of the exception being logged by corduroy while the
  request hangs.

Run it (it starts the app on a free loopback port, posts a few scores to
itself, prints the rankings and exits)::

    COUCHDB_URL=http://admin:pw@127.0.0.1:5984 python examples/leaderboard.py --style all

``make demo`` runs it against the embedded test server.  Each run uses a
database of its own (``corduroy_leaderboard_<random>``) and deletes it.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import uuid
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence, Tuple

import tornado.httpclient
import tornado.httpserver
import tornado.netutil
import tornado.web

import loop
from corduroy import Couch, Database, NotFound, Status, relax

#: The design document holding the view the handlers query.
DESIGN = {
    "_id": "_design/leaderboard",
    "views": {
        "highscores": {
            "map": "function (doc) { if (doc.type === 'player') { emit(doc.score, doc.name); } }",
        },
    },
}

#: The players written before the server starts.
PLAYERS = [
    {"_id": "ada", "type": "player", "name": "Ada", "score": 1200},
    {"_id": "grace", "type": "player", "name": "Grace", "score": 950},
    {"_id": "linus", "type": "player", "name": "Linus", "score": 700},
    {"_id": "barbara", "type": "player", "name": "Barbara", "score": 1100},
    {"_id": "ken", "type": "player", "name": "Ken", "score": 400},
]

#: How many rows the rankings hold.
TOP = 3

STYLES = ("callback", "relax", "async")


def parse_score(body: bytes) -> int:
    """The new score in a request body, or a 400 response."""
    try:
        return int(body)
    except ValueError:
        raise tornado.web.HTTPError(400, "the body must be an integer score") from None


def rankings(rows: Any) -> List[Dict[str, Any]]:
    """The JSON rankings for the rows of ``leaderboard/highscores``."""
    return [{"rank": i, "player": row.id, "name": row.value, "score": row.key}
            for i, row in enumerate(rows, 1)]


class CallbackHandler(tornado.web.RequestHandler):
    """A RequestHandler whose response is finished later, by corduroy callbacks.

    Tornado 6's stand-in for ``@tornado.web.asynchronous``: a handler method
    starts its requests with ``callback=self.callback(self.next_step)`` and
    returns ``self.until_finished()``; Tornado keeps the request open until a
    callback calls ``self.finish()``.
    """

    _finished_future: "Optional[asyncio.Future[None]]" = None

    def until_finished(self) -> "asyncio.Future[None]":
        """A Future resolved once the response is finished (failed by a callback's exception)."""
        if self._finished_future is None:
            self._finished_future = asyncio.get_running_loop().create_future()
        return self._finished_future

    def on_finish(self) -> None:
        future = self._finished_future
        if future is not None and not future.done():
            future.set_result(None)

    def callback(self, method: Callable[[Any, Status], Any]) -> Callable[[Any, Status], None]:
        """Wrap a corduroy callback so an exception it raises is answered by Tornado."""

        def guarded(data: Any, status: Status) -> None:
            try:
                method(data, status)
            except Exception as exc:
                future = self.until_finished()
                if not future.done():
                    future.set_exception(exc)

        return guarded


class RankingsUpdater(CallbackHandler):
    """Explicit callbacks: each response from CouchDB resumes the next method."""

    def initialize(self, db: Database, top: int = TOP) -> None:
        self.db = db
        self.top = top

    def post(self, player_id: str) -> Awaitable[None]:
        self.new_score = parse_score(self.request.body)
        self.db.get(player_id, callback=self.callback(self.got_player))
        return self.until_finished()

    def got_player(self, doc: Any, status: Status) -> None:
        if status.error is NotFound:
            raise tornado.web.HTTPError(404, "no such player")
        if not status.ok:
            raise status.exception
        doc.score = self.new_score
        self.db.save(doc, callback=self.callback(self.saved_player))

    def saved_player(self, conflicts: Any, status: Status) -> None:
        if not status.ok:
            raise status.exception
        self.db.view("leaderboard/highscores", descending=True, limit=self.top,
                     callback=self.callback(self.got_highscores))

    def got_highscores(self, rows: Any, status: Status) -> None:
        if not status.ok:
            raise status.exception
        self.write({"rankings": rankings(rows)})
        self.finish()


class RelaxedRankingsUpdater(tornado.web.RequestHandler):
    """@relax: each ``yield`` waits for CouchDB; errors are raised at the yield."""

    def initialize(self, db: Database, top: int = TOP) -> None:
        self.db = db
        self.top = top

    @relax
    def post(self, player_id: str):  # type: ignore[no-untyped-def]
        # update this player's score
        score = parse_score(self.request.body)
        try:
            doc = yield self.db.get(player_id)
        except NotFound:
            raise tornado.web.HTTPError(404, "no such player") from None
        doc.score = score
        yield self.db.save(doc)

        # return the new rankings
        highscores = yield self.db.view("leaderboard/highscores", descending=True, limit=self.top)
        self.write({"rankings": rankings(highscores)})


class AsyncRankingsUpdater(tornado.web.RequestHandler):
    """A native coroutine: ``await`` each call."""

    def initialize(self, db: Database, top: int = TOP) -> None:
        self.db = db
        self.top = top

    async def post(self, player_id: str) -> None:
        score = parse_score(self.request.body)
        try:
            doc = await self.db.get(player_id)
        except NotFound:
            raise tornado.web.HTTPError(404, "no such player") from None
        doc.score = score
        await self.db.save(doc)
        highscores = await self.db.view("leaderboard/highscores", descending=True, limit=self.top)
        self.write({"rankings": rankings(highscores)})


HANDLERS = {"callback": RankingsUpdater, "relax": RelaxedRankingsUpdater, "async": AsyncRankingsUpdater}


def make_app(db: Database, top: int = TOP) -> tornado.web.Application:
    """The application: ``POST /<style>/rankings/<player_id>`` for each style."""
    return tornado.web.Application([
        (r"/%s/rankings/([^/]+)" % style, handler, {"db": db, "top": top})
        for style, handler in HANDLERS.items()
    ])


async def create_leaderboard(db: Database) -> None:
    """Write the design document and the players' scores (inside a running loop)."""
    await db.save([dict(DESIGN)] + [dict(player) for player in PLAYERS])


def listen(app: tornado.web.Application) -> Tuple[tornado.httpserver.HTTPServer, int]:
    """Serve ``app`` on a free port of 127.0.0.1 (inside a running loop); return the server and port."""
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    return server, sockets[0].getsockname()[1]


def format_rankings(data: Dict[str, Any]) -> str:
    """The rankings of a response, one line each."""
    return "\n".join("  %(rank)d. %(name)-8s %(score)5d" % row for row in data["rankings"])


#: The update each style sends in the demo: (player, new score).
UPDATES = {"callback": ("grace", 2000), "relax": ("ken", 1150), "async": ("ada", 300)}


async def demo(styles: Sequence[str]) -> None:
    """Create a leaderboard, serve it, update a score in each style and print the rankings."""
    couch = Couch(timeout=30)
    name = "corduroy_leaderboard_%s" % uuid.uuid4().hex[:8]
    db = await couch.create(name)
    server = None
    client = tornado.httpclient.AsyncHTTPClient()
    try:
        await create_leaderboard(db)
        print("wrote scores:", ", ".join("%(name)s %(score)d" % p for p in PLAYERS))
        server, port = listen(make_app(db))
        base = "http://127.0.0.1:%d" % port
        for style in styles:
            player, score = UPDATES[style]
            response = await client.fetch("%s/%s/rankings/%s" % (base, style, player), method="POST",
                                          body=str(score), request_timeout=30)
            print("%s: %s now scores %d; the top %d:" % (style, player, score, TOP))
            print(format_rankings(json.loads(response.body)))
        missing = await client.fetch(base + "/%s/rankings/nobody" % styles[0], method="POST", body="1",
                                     raise_error=False, request_timeout=30)
        print("%s: an unknown player -> HTTP %d" % (styles[0], missing.code))
    finally:
        if server is not None:
            server.stop()
            await server.close_all_connections()
        client.close()
        await couch.delete(name)
        print("deleted", name)
        loop.get_reactor().close()  # the reactor bound to this asyncio loop: its connections


def new_event_loop(backend: str) -> asyncio.AbstractEventLoop:
    """A fresh asyncio loop: uvloop's or the stdlib's."""
    if backend == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def default_loop() -> str:
    """uvloop when it is installed, else the stdlib loop."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run(coro: Awaitable[Any], backend: str, timeout: float = 120.0) -> Any:
    """Run ``coro`` on a fresh asyncio loop of ``backend``, at most ``timeout`` seconds."""
    aloop = new_event_loop(backend)
    try:
        return aloop.run_until_complete(asyncio.wait_for(coro, timeout))
    finally:
        aloop.close()


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--style", choices=STYLES + ("all",), default="all",
                        help="the handler style to exercise (default: all three)")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default=default_loop(),
                        help="the asyncio loop Tornado and corduroy share")
    args = parser.parse_args(argv)
    styles = STYLES if args.style == "all" else (args.style,)
    # Tornado logs each 4xx as a warning; the demo prints the one it provokes itself.
    for name in ("tornado.access", "tornado.general"):
        logging.getLogger(name).setLevel(logging.ERROR)
    print("leaderboard on Tornado %s, %s loop" % (tornado.version, args.loop))
    run(demo(styles), args.loop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
