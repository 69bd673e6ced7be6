"""httpx: one ``AsyncClient`` on uvloop, a pool as large as the in-flight count."""
from __future__ import annotations

from typing import Any, Callable, Dict

import httpx
import simplejson

from ..fixtures import split_url
from . import HTTPStatusError, json_primitives, quote_id

__all__ = ["HttpxClient"]

_loads = simplejson.loads
_dumps = simplejson.dumps
_JSON = {"Content-Type": "application/json"}

#: Conflict rounds before an update gives up (corduroy's resolve makes 25).


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

        return json_primitives(call, db_url, self.modes, get)
