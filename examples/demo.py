"""A round trip against a CouchDB server in all four calling styles.

Run it with ``make demo`` (which starts the embedded test server), or point
it at your own server: ``COUCHDB_URL=http://admin:pw@127.0.0.1:5984 python examples/demo.py``.
"""
from __future__ import annotations

import asyncio
import os
import uuid

import loop
from corduroy import Couch, Database, NotFound, relax

URL = os.environ.get("COUCHDB_URL", "http://127.0.0.1:5984")


def blocking_style(db: Database) -> None:
    """No reactor running: each call blocks and returns the data."""
    doc = {"_id": "lackey-129", "first": "Oliver", "last": "Reeder", "office": "Richmond Terrace"}
    print("blocking: save ->", db.save(doc))
    ollie = db.get("lackey-129")
    print("blocking: get  ->", ollie)
    del ollie.office
    ollie.education = "Oxbridge"
    db.save(ollie)
    print("blocking: after an update ->", db.get("lackey-129"))


def callback_style(db: Database) -> None:
    """Pass callback=: calls return at once; callbacks get (data, status) later."""
    reactor = loop.get_reactor()

    def saved(conflicts, status):
        print("callback: save ->", conflicts, "(HTTP %s)" % status.code)
        db.get("lackey-130", callback=got)

    def got(doc, status):
        print("callback: get  ->", doc)
        db.get("nobody-here", callback=missing)

    def missing(doc, status):
        print("callback: get of a missing doc -> ok=%s error=%s" % (status.ok, status.error.__name__))
        reactor.stop()

    db.save({"_id": "lackey-130", "first": "Angela", "last": "Heaney"}, callback=saved)
    reactor.run()


@relax
def relax_style(db: Database):
    """@relax: yield each call; errors are raised at the yield."""
    anon = {"first": "Julius", "last": "Nicholson"}
    yield db.save(anon)
    print("relax:    saved a doc without _id; it got", anon["_id"][:8] + "...", anon["_rev"][:6] + "...")
    docs = yield db.get(["lackey-129", "lackey-130", "nobody"])
    print("relax:    batch get ->", [d and d["first"] for d in docs])
    try:
        yield db.get("nobody")
    except NotFound as exc:
        print("relax:    NotFound raised at the yield:", exc.reason)


async def await_style(db: Database) -> None:
    """asyncio: await the calls (corduroy shares the running loop)."""
    docs = [{"_id": "first", "n": 1}, {"_id": "second", "n": 2}]
    print("await:    save two ->", await db.save(docs))
    del docs[1]["_rev"]
    conflicts = await db.save(docs)
    print("await:    save again with a stale doc ->", conflicts)
    await conflicts.overwrite()
    print("await:    after overwrite() ->", conflicts)
    info = await db.info()
    print("await:    the database now holds %d documents" % info["doc_count"])


def main() -> None:
    couch = Couch(URL)
    print("server:", couch, "version", couch.version())
    name = "corduroy_demo_%s" % uuid.uuid4().hex[:8]
    db = couch.create(name)
    print("created", db)
    try:
        blocking_style(db)
        callback_style(db)
        relax_style(db)
        asyncio.run(await_style(db))
    finally:
        couch.delete(name)
        print("deleted", name)


if __name__ == "__main__":
    main()
