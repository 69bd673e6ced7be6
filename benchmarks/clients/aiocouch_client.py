"""aiocouch (a CouchDB client on aiohttp) on uvloop.

aiocouch decodes answers with aiohttp's ``ClientResponse.json()``, whose
default decoder is the stdlib ``json``; in this benchmark process that
default is switched to ``simplejson.loads`` (and aiohttp's encoder to
``simplejson.dumps``) so every client parses with the same library.  The
rest is aiocouch as its users call it: ``await db.get(id)``, bulk create
through ``db.create_docs()``, ``db.all_docs.get(limit=n)``, ``db.changes()``,
``Document.save()`` with a re-fetch of the revision on conflict.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

import aiohttp
import aiohttp.client_reqrep
import simplejson
from aiocouch import ConflictError, CouchDB
from aiocouch.document import Document

from ..fixtures import split_url

__all__ = ["AiocouchClient"]

#: Conflict rounds before an update gives up (corduroy's resolve makes 25).
MAX_ATTEMPTS = 25


class AiocouchClient:
    """aiocouch ``CouchDB`` / ``Database`` / ``Document``."""

    family = "async"

    def __init__(self, url: str, db: str, concurrency: int) -> None:
        self.base, self.user, self.password = split_url(url)
        self.dbname = db
        self.concurrency = max(1, concurrency)
        self.modes: Dict[str, str] = {"json": "aiohttp's json() decoder set to simplejson.loads"}
        self.couch: Any = None
        self.db: Any = None

    async def open(self) -> None:
        defaults = aiohttp.client_reqrep.ClientResponse.json.__kwdefaults__
        if defaults is not None and "loads" in defaults:
            defaults["loads"] = simplejson.loads
        else:  # pragma: no cover - another aiohttp: say so rather than compare unfairly
            self.modes["json"] = "aiohttp's default json decoder (could not switch it to simplejson)"
        kwargs: Dict[str, Any] = {}
        if self.user is not None:
            kwargs.update(user=self.user, password=self.password or "")
        connector = aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=0)
        self.couch = CouchDB(self.base, connector=connector, json_serialize=simplejson.dumps, **kwargs)
        self.db = await self.couch[self.dbname]

    async def close(self) -> None:
        if self.couch is not None:
            await self.couch.close()

    def primitives(self) -> Dict[str, Callable[..., Any]]:
        db = self.db

        async def bulk(docs: list) -> int:
            async with db.create_docs() as operation:
                for doc in docs:
                    operation.create(doc["_id"], data=doc)
            return len(operation.ok)

        async def rows(n: int, source: str) -> int:
            self.modes["rows"] = "buffered"
            view = db.view("bench", "by_n") if source == "view" else db.all_docs
            return len((await view.get(limit=n)).rows)

        async def changes(since: Any, limit: int) -> Tuple[int, Any]:
            count, last = 0, since
            async for event in db.changes(since=since, limit=limit):
                count += 1
                last = event.json["seq"]
            return count, last

        async def update(doc: dict) -> Any:
            document = Document(db, doc["_id"], data=doc)
            for _ in range(MAX_ATTEMPTS):
                try:
                    await document.save()
                    return document
                except ConflictError:
                    current = await db.get(doc["_id"])
                    document.rev = current.rev
            raise RuntimeError("update of %s still conflicts after %d attempts" % (doc["_id"], MAX_ATTEMPTS))

        return {"get": db.get, "bulk": bulk, "rows": rows, "changes": changes, "update": update}
