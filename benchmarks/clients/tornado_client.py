"""Tornado's ``CurlAsyncHTTPClient`` (libcurl through pycurl) on uvloop."""
from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

import simplejson

from ..fixtures import split_url
from . import HTTPStatusError, quote_id, rows_path

__all__ = ["TornadoCurlClient"]

_loads = simplejson.loads
_dumps = simplejson.dumps

#: Conflict rounds before an update gives up (corduroy's resolve makes 25).
MAX_ATTEMPTS = 25


class TornadoCurlClient:
    """``CurlAsyncHTTPClient(max_clients=C)``; bodies parsed with simplejson."""

    family = "async"

    def __init__(self, url: str, db: str, concurrency: int) -> None:
        base, self.user, self.password = split_url(url)
        self.db_url = base + "/" + quote_id(db)
        self.concurrency = max(1, concurrency)
        self.modes: Dict[str, str] = {}
        self.http: Any = None
        self.plain = {"Accept": "application/json"}
        self.json = {"Accept": "application/json", "Content-Type": "application/json"}

    async def open(self) -> None:
        from tornado.curl_httpclient import CurlAsyncHTTPClient

        self.http = CurlAsyncHTTPClient(force_instance=True, max_clients=self.concurrency,
                                        defaults={"request_timeout": 300, "connect_timeout": 30})
        self.auth = {} if self.user is None else {"auth_username": self.user,
                                                  "auth_password": self.password or ""}

    async def close(self) -> None:
        if self.http is not None:
            self.http.close()

    async def _call(self, method: str, url: str, body: Any = None) -> Any:
        if body is None:
            resp = await self.http.fetch(url, method=method, headers=self.plain, raise_error=False, **self.auth)
        else:
            resp = await self.http.fetch(url, method=method, headers=self.json, body=_dumps(body).encode(),
                                         raise_error=False, **self.auth)
        if resp.code >= 400 or resp.code < 100:
            if resp.error is not None and resp.code == 599:
                raise resp.error
            raise HTTPStatusError(resp.code, resp.body)
        return _loads(resp.body)

    def primitives(self) -> Dict[str, Callable[..., Any]]:
        db_url, call = self.db_url, self._call

        async def get(doc_id: str) -> Any:
            return await call("GET", db_url + "/" + quote_id(doc_id))

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
