"""The clients compared, each in its own module, and the registry that names them.

Every client class takes ``(url, db, concurrency)`` (``url`` may carry
credentials), has a ``family`` (see :mod:`benchmarks.drivers`), ``open()`` and
``close()`` (coroutines for the ``async`` family), and ``primitives()``: a
dict of ``get``, ``bulk``, ``rows``, ``changes``, ``update`` (see
:mod:`benchmarks.workloads`).  ``modes`` records how a primitive was done
when there is a choice (W3 streaming or buffered, for example).

Every client parses response bodies with simplejson, as corduroy does, and
sends ``Accept: application/json``; every client's connection pool holds as
many connections as there are requests in flight.  Asyncio clients run on
uvloop (plain asyncio where uvloop is not installed; the result says which).
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Any, Dict, List, NamedTuple, Optional, Tuple
from urllib.parse import quote

__all__ = ["ClientInfo", "CLIENTS", "client_names", "missing_packages", "load_client", "HTTPStatusError"]


class ClientInfo(NamedTuple):
    """What the harness knows about a client without importing it."""

    name: str
    module: str
    cls: str
    family: str
    requires: Tuple[str, ...]
    summary: str
    #: In the default ``--clients`` list (False: only when named, e.g. it needs a special server).
    default: bool = True


CLIENTS: Dict[str, ClientInfo] = {info.name: info for info in (
    ClientInfo("corduroy-callback", "corduroy_client", "CallbackStyle", "callback", ("corduroy", "pycurl"),
               "corduroy, callback=fn, on its reactor"),
    ClientInfo("corduroy-relax", "corduroy_client", "RelaxStyle", "relax", ("corduroy", "pycurl"),
               "corduroy, @relax generators yielding calls"),
    ClientInfo("corduroy-await", "corduroy_client", "AwaitStyle", "async", ("corduroy", "pycurl"),
               "corduroy, asyncio tasks awaiting calls on uvloop"),
    ClientInfo("corduroy-blocking", "corduroy_client", "BlockingStyle", "sequential", ("corduroy", "pycurl"),
               "corduroy, plain blocking calls (sequential)"),
    ClientInfo("corduroy-coalesce", "corduroy_client", "CoalescingStyle", "callback", ("corduroy", "pycurl"),
               "corduroy, callback=fn, Database(coalesce=True): one bulk request per reactor turn"),
    ClientInfo("corduroy-h2", "corduroy_client", "Http2Style", "callback", ("corduroy", "pycurl"),
               "corduroy, callback=fn, Database(http2=True); needs an HTTP/2 server (python -m benchmarks.http2)",
               default=False),
    ClientInfo("pycurl", "pycurl_client", "PycurlMulti", "callback", ("pycurl", "simplejson"),
               "raw pycurl CurlMulti, select loop, reused handles (the reference)"),
    ClientInfo("aiohttp", "aiohttp_client", "AiohttpClient", "async", ("aiohttp", "simplejson"),
               "aiohttp ClientSession on uvloop"),
    ClientInfo("httpx", "httpx_client", "HttpxClient", "async", ("httpx", "simplejson"),
               "httpx AsyncClient on uvloop"),
    ClientInfo("aiocouch", "aiocouch_client", "AiocouchClient", "async", ("aiocouch", "simplejson"),
               "aiocouch (on aiohttp) on uvloop"),
    ClientInfo("requests", "requests_client", "RequestsClient", "sequential", ("requests", "simplejson"),
               "requests.Session (sequential)"),
    ClientInfo("couchdb-python", "couchdb_client", "CouchdbPythonClient", "threads", ("couchdb", "simplejson"),
               "couchdb-python (the CouchDB package), C threads"),
    ClientInfo("tornado", "tornado_client", "TornadoCurlClient", "async", ("tornado", "pycurl", "simplejson"),
               "Tornado's CurlAsyncHTTPClient on uvloop"),
)}

#: The client every ratio is taken against.
BASELINE = "corduroy-callback"


def client_names() -> List[str]:
    """The default client names, in table order (those with ``default=False`` run only when named)."""
    return [name for name, info in CLIENTS.items() if info.default]


def missing_packages(name: str) -> List[str]:
    """The packages ``name`` needs that cannot be imported here."""
    return [pkg for pkg in CLIENTS[name].requires if importlib.util.find_spec(pkg) is None]


def load_client(name: str) -> Any:
    """The client class for ``name`` (imports its module)."""
    info = CLIENTS[name]
    module = importlib.import_module("benchmarks.clients." + info.module)
    return getattr(module, info.cls)


class HTTPStatusError(Exception):
    """A peer client got an HTTP error status (corduroy raises its own exceptions)."""

    def __init__(self, code: int, body: Optional[bytes] = None) -> None:
        super().__init__("HTTP %d: %s" % (code, (body or b"")[:200].decode("utf-8", "replace")))
        self.code = code


def quote_id(doc_id: str) -> str:
    """A document id as one URL path segment."""
    return quote(doc_id, safe="")


def rows_path(source: str) -> str:
    """The path, inside a database, of W3's read."""
    from ..fixtures import VIEW_PATH

    return VIEW_PATH if source == "view" else "/_all_docs"


#: How many times a W5 update re-reads and retries a conflicting write.
MAX_ATTEMPTS = 25


def json_primitives(call: Any, db_url: str, modes: Dict[str, str], get: Any = None) -> Dict[str, Any]:
    """The workload primitives for an async client given its ``call(method, url, body=None)``.

    ``call`` returns decoded JSON or raises :class:`HTTPStatusError`; ``get``
    overrides the plain GET of a document (for clients with a faster path).
    """

    async def get_doc(doc_id: str) -> Any:
        return await call("GET", db_url + "/" + quote_id(doc_id))

    async def bulk(docs: list) -> int:
        rows = await call("POST", db_url + "/_bulk_docs", {"docs": docs})
        return sum(1 for row in rows if row.get("ok"))

    async def rows(n: int, source: str) -> int:
        modes["rows"] = "buffered"
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

    return {"get": get or get_doc, "bulk": bulk, "rows": rows, "changes": changes, "update": update}
