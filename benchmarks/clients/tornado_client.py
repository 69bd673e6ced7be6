"""Tornado's ``CurlAsyncHTTPClient`` (libcurl through pycurl) on uvloop."""
from __future__ import annotations

from typing import Any, Callable, Dict

import simplejson

from ..fixtures import split_url
from . import HTTPStatusError, json_primitives, quote_id

__all__ = ["TornadoCurlClient"]

_loads = simplejson.loads
_dumps = simplejson.dumps

#: Conflict rounds before an update gives up (corduroy's resolve makes 25).


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

        return json_primitives(call, db_url, self.modes)
