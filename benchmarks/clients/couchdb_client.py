"""couchdb-python (the ``CouchDB`` package on PyPI), from C threads for concurrency.

It encodes and decodes with simplejson when installed (its default), keeps
its own connection pool, and is thread-safe; each of the C threads makes
blocking calls: ``db[id]``, ``db.update(docs)``, ``db.view(...)``,
``db.changes(...)``, ``db.save(doc)`` with a re-fetch of the revision on
``ResourceConflict``.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

import couchdb
import couchdb.json

__all__ = ["CouchdbPythonClient"]

#: Conflict rounds before an update gives up (corduroy's resolve makes 25).
MAX_ATTEMPTS = 25


class CouchdbPythonClient:
    """``couchdb.Server(url)[db]``, called from threads."""

    family = "threads"

    def __init__(self, url: str, db: str, concurrency: int) -> None:
        self.url = url.rstrip("/")
        self.dbname = db
        self.modes: Dict[str, str] = {}
        self.db: Any = None

    def open(self) -> None:
        couchdb.json.use("simplejson")
        self.server = couchdb.Server(self.url)
        self.db = self.server[self.dbname]

    def close(self) -> None:
        pass

    def primitives(self) -> Dict[str, Callable[..., Any]]:
        db = self.db

        def get(doc_id: str) -> Any:
            doc = db.get(doc_id)
            if doc is None:
                raise couchdb.ResourceNotFound(doc_id)
            return doc

        def bulk(docs: list) -> int:
            return sum(1 for ok, _id, _rev in db.update(docs) if ok)

        def rows(n: int, source: str) -> int:
            self.modes["rows"] = "buffered"
            name = "bench/by_n" if source == "view" else "_all_docs"
            return len(db.view(name, limit=n).rows)

        def changes(since: Any, limit: int) -> Tuple[int, Any]:
            data = db.changes(since=since, limit=limit)
            return len(data["results"]), data["last_seq"]

        def update(doc: dict) -> dict:
            for _ in range(MAX_ATTEMPTS):
                try:
                    db.save(doc)
                    return doc
                except couchdb.ResourceConflict:
                    doc["_rev"] = db[doc["_id"]].rev
            raise RuntimeError("update of %s still conflicts after %d attempts" % (doc["_id"], MAX_ATTEMPTS))

        return {"get": get, "bulk": bulk, "rows": rows, "changes": changes, "update": update}
