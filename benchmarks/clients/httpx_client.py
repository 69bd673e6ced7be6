"""httpx: one ``AsyncClient`` on uvloop, a pool as large as the in-flight count."""
from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

import httpx
import simplejson

from ..fixtures import split_url
from . import HTTPStatusError, quote_id, rows_path

__all__ = ["HttpxClient"]

_loads = simplejson.loads
_dumps = simplejson.dumps
_JSON = {"Content-Type": "application/json"}

#: Conflict rounds before an update gives up (corduroy's resolve makes 25).
MAX_ATTEMPTS = 25


class HttpxClient:
    """httpx ``AsyncClient``; bodies parsed with simplejson."""

    family = "async"

    def __init__(self, url: str, db: str, concurrency: int) -> None:
        base, self.user, self.password = split_url(url)
        self.db_url = base + "/" + quote_id(db)
        self.concurrency = max(1, concurrency)
        self.modes: Dict[str, str] = {}
        self.client: Any = None

    async def open(self) -> None:
        auth = (self.user, self.password or "") if self.user is not None else None
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        self.client = httpx.AsyncClient(limits=limits, auth=auth, timeout=300.0,
                                        headers={"Accept": "application/json"})

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    async def _call(self, method: str, url: str, body: Any = None) -> Any:
        if body is None:
            resp = await self.client.request(method, url)
        else:
            resp = await self.client.request(method, url, content=_dumps(body).encode(), headers=_JSON)
        if resp.status_code >= 400:
            raise HTTPStatusError(resp.status_code, resp.content)
        return _loads(resp.content)

    def primitives(self) -> Dict[str, Callable[..., Any]]:
        db_url, call, client = self.db_url, self._call, self.client

        async def get(doc_id: str) -> Any:
            resp = await client.get(db_url + "/" + quote_id(doc_id))
            if resp.status_code >= 400:
                raise HTTPStatusError(resp.status_code, resp.content)
            return _loads(resp.content)

        async def bulk(docs: list) -> int:
            rows = await call("POST", db_url + "/_bulk_docs", {"docs": docs})
            return sum(1 for row in rows if row.get("ok"))

        async def rows(n: int, source: str) -> int:
            self.modes["rows"] = "buffered"
            return len((await call("GET", "%s%s?limit=%d" % (db_url, rows_path(source), n)))["rows"])

        async def changes(since: Any, limit: int) -> Tuple[int, Any]:
            data = await call("GET", "%s/_changes?since=%s&limit=%d" % (db_url, quote_id(str(since)), limit))
            return len(data["results"]), data["last_seq"]

        async def update(doc: dict) -> dict:
            url = db_url + "/" + quote_id(doc["_id"])
            for _ in range(MAX_ATTEMPTS):
                try:
                    doc["_rev"] = (await call("PUT", url, doc))["rev"]
                    return doc
                except HTTPStatusError as exc:
                    if exc.code != 409:
                        raise
                doc["_rev"] = (await call("GET", url))["_rev"]
            raise RuntimeError("update of %s still conflicts after %d attempts" % (doc["_id"], MAX_ATTEMPTS))

        return {"get": get, "bulk": bulk, "rows": rows, "changes": changes, "update": update}
