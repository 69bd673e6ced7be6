"""corduroy inside an aiohttp server: both run on the server's asyncio loop.

Inside a running asyncio loop, ``loop.get_reactor()`` is a reactor bound to
that very loop, so corduroy's curl sockets are watched by aiohttp's own loop
(uvloop's or the stdlib's) and every call returns an Operation to ``await``.
Nothing to configure, no second thread, no second loop.  Operations are
future-like, so ``asyncio.gather`` and ``asyncio.wait_for`` take them too.

Routes:

``GET /people/{id}``  the person's document as JSON (404 if there is none)
``PUT /people/{id}``  merge the JSON body's fields into the document (created if missing)
``GET /greetings?ids=a,b``  one greeting per id, the documents fetched concurrently

Run it (it serves on a free loopback port, sends itself a few requests and
exits)::

    COUCHDB_URL=http://admin:pw@127.0.0.1:5984 python examples/aiohttp_app.py
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from typing import Optional, Sequence, Tuple

from aiohttp import ClientSession, ClientTimeout, web

import loop
from corduroy import Conflict, Couch, Database, NotFound

DB = web.AppKey("db", Database)


async def get_person(request: web.Request) -> web.Response:
    """The document, without CouchDB's ``_rev``."""
    db = request.app[DB]
    try:
        doc = await db.get(request.match_info["id"])
    except NotFound:
        return web.json_response({"error": "not_found"}, status=404)
    doc.pop("_rev", None)
    return web.json_response(doc)


async def put_person(request: web.Request) -> web.Response:
    """Merge the body's fields into the document; retry if another write got there first."""
    db = request.app[DB]
    doc_id = request.match_info["id"]
    try:
        fields = await request.json()
    except ValueError:
        return web.json_response({"error": "bad_request", "reason": "the body must be JSON"}, status=400)
    if not isinstance(fields, dict) or any(key.startswith("_") for key in fields):
        return web.json_response({"error": "bad_request", "reason": "a JSON object of plain fields"}, status=400)
    while True:
        try:
            doc = await db.get(doc_id)
        except NotFound:
            doc = {"_id": doc_id}
        doc.update(fields)
        try:
            await db.save(doc)
        except Conflict:
            continue
        return web.json_response({"id": doc["_id"], "rev": doc["_rev"]})


async def greetings(request: web.Request) -> web.Response:
    """Greet several people; their documents are fetched concurrently."""
    db = request.app[DB]
    ids = [i for i in request.query.get("ids", "").split(",") if i]

    async def greet(doc_id: str) -> str:
        try:
            doc = await db.get(doc_id)
        except NotFound:
            return "hello whoever you are"
        return "hello %s %s" % (doc["first"], doc["last"])

    return web.json_response({"greetings": await asyncio.gather(*(greet(i) for i in ids))})


def make_app(db: Database) -> web.Application:
    """The application, serving the people in ``db``."""
    app = web.Application()
    app[DB] = db
    app.router.add_get("/people/{id}", get_person)
    app.router.add_put("/people/{id}", put_person)
    app.router.add_get("/greetings", greetings)
    return app


async def serve(app: web.Application) -> Tuple[web.AppRunner, int]:
    """Serve ``app`` on a free port of 127.0.0.1; return its runner (``await runner.cleanup()``) and port."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


async def demo() -> None:
    """Create a database, serve the app on this loop and send it a few requests."""
    reactor = loop.get_reactor()
    print("corduroy's reactor: %s, on the server's loop: %s"
          % (reactor.backend, getattr(reactor, "loop", None) is asyncio.get_running_loop()))
    couch = Couch(timeout=30)
    name = "corduroy_aiohttp_%s" % uuid.uuid4().hex[:8]
    db = await couch.create(name)
    runner = None
    try:
        runner, port = await serve(make_app(db))
        base = "http://127.0.0.1:%d" % port
        async with ClientSession(timeout=ClientTimeout(total=30)) as client:
            for method, path, body in [
                ("PUT", "/people/lackey-129", {"first": "Oliver", "last": "Reeder"}),
                ("PUT", "/people/lackey-129", {"office": "Richmond Terrace"}),
                ("GET", "/people/lackey-129", None),
                ("GET", "/people/nobody", None),
                ("GET", "/greetings?ids=lackey-129,nobody", None),
            ]:
                async with client.request(method, base + path, json=body) as response:
                    answer = await response.json()
                if "rev" in answer:
                    answer["rev"] = answer["rev"].split("-")[0] + "-..."
                print("%-3s %-33s -> %d %s" % (method, path, response.status, answer))
    finally:
        if runner is not None:
            await runner.cleanup()
        await couch.delete(name)
        print("deleted", name)
        reactor.close()  # the reactor bound to this loop: its connections


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default=None,
                        help="the asyncio loop to serve on (default: uvloop if installed)")
    args = parser.parse_args(argv)
    name = args.loop
    if name is None:
        try:
            import uvloop  # noqa: F401

            name = "uvloop"
        except ImportError:
            name = "asyncio"
    aloop: asyncio.AbstractEventLoop
    if name == "uvloop":
        import uvloop

        aloop = uvloop.new_event_loop()
    else:
        aloop = asyncio.new_event_loop()
    try:
        aloop.run_until_complete(asyncio.wait_for(demo(), 120))
    finally:
        aloop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
