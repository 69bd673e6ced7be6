"""aiohttp: one ``ClientSession`` on uvloop, a connector pool as large as the in-flight count."""
from __future__ import annotations

from typing import Any, Callable, Dict

import aiohttp
import simplejson

from ..fixtures import split_url
from . import HTTPStatusError, json_primitives, quote_id

__all__ = ["AiohttpClient"]

_loads = simplejson.loads
_dumps = simplejson.dumps
_JSON = {"Content-Type": "application/json"}

#: Conflict rounds before an update gives up (corduroy's resolve makes 25).


class AiohttpClient:
    """aiohttp ``ClientSession``; bodies read as bytes and parsed with simplejson."""

    family = "async"

    def __init__(self, url: str, db: str, concurrency: int) -> None:
        base, self.user, self.password = split_url(url)
        self.db_url = base + "/" + quote_id(db)
        self.concurrency = max(1, concurrency)
        self.modes: Dict[str, str] = {}
        self.session: Any = None

    async def open(self) -> None:
        auth = aiohttp.BasicAuth(self.user, self.password or "") if self.user is not None else None
        connector = aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=0)
        self.session = aiohttp.ClientSession(
            connector=connector, auth=auth, headers={"Accept": "application/json"},
            json_serialize=_dumps, timeout=aiohttp.ClientTimeout(total=300),
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def _call(self, method: str, url: str, body: Any = None) -> Any:
        data = None if body is None else _dumps(body)
        async with self.session.request(method, url, data=data,
                                        headers=None if body is None else _JSON) as resp:
            raw = await resp.read()
            if resp.status >= 400:
                raise HTTPStatusError(resp.status, raw)
            return _loads(raw)

    def primitives(self) -> Dict[str, Callable[..., Any]]:
        db_url, call = self.db_url, self._call

        async def get(doc_id: str) -> Any:
            async with self.session.get(db_url + "/" + quote_id(doc_id)) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise HTTPStatusError(resp.status, raw)
                return _loads(raw)

        return json_primitives(call, db_url, self.modes, get)
