"""requests: one ``Session`` (keep-alive), one request at a time."""
from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

import requests
import simplejson

from ..fixtures import split_url
from . import HTTPStatusError, quote_id, rows_path

__all__ = ["RequestsClient"]

_loads = simplejson.loads
_dumps = simplejson.dumps
_JSON = {"Content-Type": "application/json"}

#: Conflict rounds before an update gives up (corduroy's resolve makes 25).
MAX_ATTEMPTS = 25


class RequestsClient:
    """``requests.Session``; bodies parsed with simplejson."""

    family = "sequential"

    def __init__(self, url: str, db: str, concurrency: int) -> None:
        base, self.user, self.password = split_url(url)
        self.db_url = base + "/" + quote_id(db)
        self.modes: Dict[str, str] = {}
        self.session: Any = None

    def open(self) -> None:
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json"
        if self.user is not None:
            self.session.auth = (self.user, self.password or "")

    def close(self) -> None:
        if self.session is not None:
            self.session.close()

    def _call(self, method: str, url: str, body: Any = None) -> Any:
        if body is None:
            resp = self.session.request(method, url, timeout=300)
        else:
            resp = self.session.request(method, url, data=_dumps(body).encode(), headers=_JSON, timeout=300)
        if resp.status_code >= 400:
            raise HTTPStatusError(resp.status_code, resp.content)
        return _loads(resp.content)

    def primitives(self) -> Dict[str, Callable[..., Any]]:
        db_url, call, session = self.db_url, self._call, self.session

        def get(doc_id: str) -> Any:
            resp = session.get(db_url + "/" + quote_id(doc_id), timeout=300)
            if resp.status_code >= 400:
                raise HTTPStatusError(resp.status_code, resp.content)
            return _loads(resp.content)

        def bulk(docs: list) -> int:
            return sum(1 for row in call("POST", db_url + "/_bulk_docs", {"docs": docs}) if row.get("ok"))

        def rows(n: int, source: str) -> int:
            self.modes["rows"] = "buffered"
            return len(call("GET", "%s%s?limit=%d" % (db_url, rows_path(source), n))["rows"])

        def changes(since: Any, limit: int) -> Tuple[int, Any]:
            data = call("GET", "%s/_changes?since=%s&limit=%d" % (db_url, quote_id(str(since)), limit))
            return len(data["results"]), data["last_seq"]

        def update(doc: dict) -> dict:
            url = db_url + "/" + quote_id(doc["_id"])
            for _ in range(MAX_ATTEMPTS):
                try:
                    doc["_rev"] = call("PUT", url, doc)["rev"]
                    return doc
                except HTTPStatusError as exc:
                    if exc.code != 409:
                        raise
                doc["_rev"] = call("GET", url)["_rev"]
            raise RuntimeError("update of %s still conflicts after %d attempts" % (doc["_id"], MAX_ATTEMPTS))

        return {"get": get, "bulk": bulk, "rows": rows, "changes": changes, "update": update}
