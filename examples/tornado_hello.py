"""The guide's "Hello Tornado", in Python 3 and Tornado 6.

Three endpoints greet the person whose document id ends the URL:

``/hello/<id>``  :class:`JumpyHello` — an explicit callback finishes the response
``/hi/<id>``     :class:`RelaxedHello` — a ``@relax`` generator, ``yield`` each call
``/hey/<id>``    :class:`AsyncHello` — a native ``async def`` handler, ``await`` each call

An unknown id gets ``hello whoever you are``.

How each one keeps the request open in Tornado 6 (which dropped
``@tornado.web.asynchronous``): Tornado awaits whatever awaitable a handler
method returns before it finishes the request.

- ``RelaxedHello.get`` is a ``@relax`` generator: called in Tornado's running
  loop it returns a corduroy Operation, an awaitable, so Tornado waits for it.
- ``AsyncHello.get`` is a coroutine: corduroy shares Tornado's asyncio loop,
  so ``await people_db.get(...)`` just works.
- ``JumpyHello.get`` starts the request with a callback and returns
  ``self.until_finished()``: a Future that :class:`CallbackHandler` resolves in
  ``on_finish`` (after the callback calls ``self.finish()``).  The callback is
  wrapped in ``self.callback(...)`` so that ``raise status.exception`` inside
  it fails that Future, and Tornado answers 500 (and logs the error) instead
  of the request hanging.

The handlers take the database as an ``initialize`` argument (the guide used
a global ``people_db``) so that tests can give them their own.

Run it (it starts the app on a free loopback port, asks it for a few
greetings and exits)::

    COUCHDB_URL=http://admin:pw@127.0.0.1:5984 python examples/tornado_hello.py
"""
from __future__ import annotations

import asyncio
import sys
import uuid
from typing import Any, Awaitable, Callable, Optional, Tuple

import tornado.httpclient
import tornado.httpserver
import tornado.netutil
import tornado.web

import loop
from corduroy import Couch, Database, NotFound, Status, relax

PEOPLE = [
    {"_id": "lackey-129", "first": "Oliver", "last": "Reeder"},
    {"_id": "lackey-130", "first": "Angela", "last": "Heaney"},
]


class CallbackHandler(tornado.web.RequestHandler):
    """A RequestHandler whose response is finished later, by corduroy callbacks.

    A handler method passes ``callback=self.callback(self.next_step)`` and
    returns ``self.until_finished()``; Tornado keeps the request open until a
    callback calls ``self.finish()``, and answers an exception raised by a
    wrapped callback as it would one raised by the method itself.
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


class JumpyHello(CallbackHandler):
    """The twisted-up way: an explicit callback writes the greeting and finishes."""

    def initialize(self, people_db: Database) -> None:
        self.people_db = people_db

    def get(self, user_id: str) -> Awaitable[None]:
        # Request the user's doc. This returns at once; got_user_doc runs
        # later with the response and a Status.
        self.people_db.get(user_id, callback=self.callback(self.got_user_doc))
        return self.until_finished()

    def got_user_doc(self, doc: Any, status: Status) -> None:
        # Generate output based on the db's response
        if status.ok:
            self.write("hello %s %s" % (doc["first"], doc["last"]))
        elif status.error is NotFound:
            self.write("hello whoever you are")
        else:
            raise status.exception
        self.finish()


class RelaxedHello(tornado.web.RequestHandler):
    """The way out: ``yield`` the call; NotFound is raised at the yield."""

    def initialize(self, people_db: Database) -> None:
        self.people_db = people_db

    @relax
    def get(self, user_id: str):  # type: ignore[no-untyped-def]
        try:
            doc = yield self.people_db.get(user_id)
            self.write("hello %s %s" % (doc["first"], doc["last"]))
        except NotFound:
            self.write("hello whoever you are")
        self.finish()


class AsyncHello(tornado.web.RequestHandler):
    """Native coroutines: ``await`` the call."""

    def initialize(self, people_db: Database) -> None:
        self.people_db = people_db

    async def get(self, user_id: str) -> None:
        try:
            doc = await self.people_db.get(user_id)
            self.write("hello %s %s" % (doc["first"], doc["last"]))
        except NotFound:
            self.write("hello whoever you are")


def make_app(people_db: Database) -> tornado.web.Application:
    """The application: ``/hello/<id>``, ``/hi/<id>`` and ``/hey/<id>``."""
    args = {"people_db": people_db}
    return tornado.web.Application([
        (r"/hello/([^/]+)", JumpyHello, args),
        (r"/hi/([^/]+)", RelaxedHello, args),
        (r"/hey/([^/]+)", AsyncHello, args),
    ])


def listen(app: tornado.web.Application) -> Tuple[tornado.httpserver.HTTPServer, int]:
    """Serve ``app`` on a free port of 127.0.0.1 (inside a running loop); return the server and port."""
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    return server, sockets[0].getsockname()[1]


async def demo() -> None:
    """Create a people database, serve the app and fetch a few greetings."""
    couch = Couch(timeout=30)
    name = "corduroy_people_%s" % uuid.uuid4().hex[:8]
    people_db = await couch.create(name)
    server = None
    client = tornado.httpclient.AsyncHTTPClient()
    try:
        await people_db.save([dict(person) for person in PEOPLE])
        server, port = listen(make_app(people_db))
        for path in ("/hello/lackey-129", "/hi/lackey-130", "/hey/lackey-129", "/hello/nobody",
                     "/hi/nobody", "/hey/nobody"):
            response = await client.fetch("http://127.0.0.1:%d%s" % (port, path), request_timeout=30)
            print("GET %-18s -> %s" % (path, response.body.decode()))
    finally:
        if server is not None:
            server.stop()
            await server.close_all_connections()
        client.close()
        await couch.delete(name)
        print("deleted", name)
        loop.get_reactor().close()  # the reactor bound to this asyncio loop: its connections


def main() -> int:
    asyncio.run(asyncio.wait_for(demo(), 120))
    return 0


if __name__ == "__main__":
    sys.exit(main())
