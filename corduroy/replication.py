"""Replication: ``Couch.replicate`` and a Database's ``push`` and ``pull``.

A source or target is a database name on the server doing the replication,
a full URL, or a :class:`~corduroy.database.Database`.  Names and Databases
become full URLs (CouchDB 3 requires them).  Credentials, whether they come
from the Couch, the Database or a URL's ``user:password@``, travel in the
endpoint's ``headers`` (``{"url": ..., "headers": {"Authorization": ...}}``),
never inside a URL.

Without ``_id`` the replication is requested through ``POST /_replicate``;
with ``_id`` a document with the same fields is saved in ``_replicator``
(a persistent replication, which CouchDB runs and restarts by itself), and
``cancel=True`` then deletes that document.
"""
from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any, Callable, Dict, Generator, Optional, Tuple, Union, overload

from loop import Operation, Status, get_reactor, trampoline
from loop.redact import describe

from .contract import io_methods
from .exceptions import Conflict
from .call_options import is_set
from .http import CouchOperation, Server, finish
from .results import DataCallback
from .session import session_credentials
from .urls import doc_path, quote_segment, split_credentials, validate_db_name

if TYPE_CHECKING:  # pragma: no cover
    from .document import Document
    from .database import Database

__all__ = ["ReplicationMixin", "replicate", "replication_body", "REPLICATION_OPTIONS"]

Callback = Optional[Callable[[Any, Status], Any]]
Endpoint = Union[str, "Database", Dict[str, Any]]

#: Options a replication request or document accepts, and the type each must have.
REPLICATION_OPTIONS: Dict[str, Any] = {
    "cancel": bool,
    "continuous": bool,
    "create_target": bool,
    "create_target_params": dict,
    "doc_ids": list,
    "filter": str,
    "query_params": dict,
    "selector": dict,
    "since_seq": (str, int),
    "proxy": str,
    "source_proxy": str,
    "target_proxy": str,
    "replication_id": str,
    "use_checkpoints": bool,
    "checkpoint_interval": int,
    "winning_revs_only": bool,
    "worker_processes": int,
    "worker_batch_size": int,
    "http_connections": int,
    "connection_timeout": int,
    "retries_per_request": int,
    "use_bulk_get": bool,
    "user_ctx": dict,
}

_EXCLUSIVE = ("doc_ids", "filter", "selector")


def _basic(credentials: Tuple[str, str]) -> str:
    user, password = credentials
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode("utf-8")).decode("ascii")


def _endpoint(url: str, credentials: Optional[Tuple[str, str]]) -> Any:
    if credentials is None:
        return url
    return {"url": url, "headers": {"Authorization": _basic(credentials)}}


def resolve_endpoint(server: Server, where: Any, role: str) -> Any:
    """The ``source``/``target`` value for ``where`` as seen from ``server``."""
    from .database import Database

    if isinstance(where, Database):
        return _endpoint(where.url, session_credentials(where.server))
    if isinstance(where, dict):
        if not isinstance(where.get("url"), str):
            raise ValueError("a %s given as a dict needs a 'url'" % role)
        return where
    if not isinstance(where, str):
        raise TypeError("the %s is a database name, a URL or a Database, not %s" % (role, type(where).__name__))
    if "://" in where:
        url, inline = split_credentials(where)
        if inline is None and url.startswith(server.url + "/"):
            inline = session_credentials(server)  # a URL on this server: our credentials
        return _endpoint(url, inline)
    validate_db_name(where)
    return _endpoint(server.url + "/" + quote_segment(where), session_credentials(server))


def replication_body(server: Server, source: Any, target: Any, options: Dict[str, Any]) -> Dict[str, Any]:
    """The JSON of a replication request (or ``_replicator`` document), checked before any I/O."""
    body: Dict[str, Any] = {}
    for key, value in options.items():
        kind = REPLICATION_OPTIONS.get(key)
        if kind is None:
            raise TypeError("unknown replication option %s" % describe(key))
        if value is None:
            continue
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise TypeError("replication option %r has the wrong type: %s" % (key, type(value).__name__))
        body[key] = value
    given = [key for key in _EXCLUSIVE if key in body]
    if len(given) > 1:
        raise ValueError("doc_ids, filter and selector are mutually exclusive; got %s" % ", ".join(given))
    if "proxy" in body and ("source_proxy" in body or "target_proxy" in body):
        raise ValueError("proxy is mutually exclusive with source_proxy and target_proxy")
    if "doc_ids" in body:
        ids = body["doc_ids"]
        if not all(isinstance(i, str) and i for i in ids):
            raise TypeError("doc_ids must be a list of non-empty strings")
        # CouchDB URL-decodes each id ("%xx", and "+" as a space): escape the two.
        body["doc_ids"] = [i.replace("%", "%25").replace("+", "%2B") for i in ids]
    for name, value in (body.get("query_params") or {}).items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError("query_params maps names to string values (got %s: %s)"
                            % (describe(name), type(value).__name__))
    body["source"] = resolve_endpoint(server, source, "source")
    body["target"] = resolve_endpoint(server, target, "target")
    return body


def replicate(server: Server, source: Endpoint, target: Endpoint, callback: Callback = None,
              **options: Any) -> Any:
    """Replicate ``source`` to ``target`` on ``server`` (see :meth:`ServerMixin.replicate`)."""
    doc_id = options.pop("_id", None)
    body = replication_body(server, source, target, options)
    if doc_id is None:
        # A one-shot replication answers when it is done: no stall timeout
        # unless the caller set one (corduroy.timeouts).
        return finish(server.request("POST", "/_replicate", json=body, what="replication request",
                                     idle_timeout=None if is_set("idle_timeout") else 0), callback)
    path = "/_replicator/" + doc_path(doc_id)
    if body.get("cancel"):
        reactor = get_reactor()
        return finish(trampoline(_forget(server, path), reactor, CouchOperation(reactor)), callback)
    body["_id"] = doc_id
    return finish(server.request("PUT", path, json=body, what="replication document %s" % describe(doc_id)), callback)


#: How often cancelling a persistent replication re-reads its document when
#: the replicator updated it between our read and our delete.
CANCEL_ATTEMPTS = 5


def _forget(server: Server, path: str) -> Generator[Any, Any, Any]:
    """Delete a ``_replicator`` document, whatever revision the replicator has written meanwhile."""
    for attempt in range(CANCEL_ATTEMPTS):
        doc = yield server.request("GET", path)
        try:
            return (yield server.request("DELETE", path, params={"rev": doc["_rev"]}))
        except Conflict:
            if attempt == CANCEL_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


@io_methods
class ReplicationMixin:
    """Database methods: replication from and to this database (push, pull)."""

    server: Server

    @overload
    def push(self, target: Endpoint, callback: None = None, **options: Any) -> Document: ...

    @overload
    def push(self, target: Endpoint, callback: DataCallback[Document], **options: Any) -> Operation[Document]: ...

    def push(self, target: Endpoint, callback: Callback = None, **options: Any) -> Any:
        """Replicate this database to ``target`` (a name on the same server, a URL or a Database).

        Options are those of :meth:`Couch.replicate <corduroy.server_api.ServerMixin.replicate>`
        (``continuous``, ``create_target``, ``doc_ids``, ``filter``, ``_id``...).

        >>> Database("localdb").push("http://elsewhere:5984/remotedb")    # doctest: +SKIP
        """
        this: Any = self  # a Database
        return replicate(self.server, this, target, callback=callback, **options)

    @overload
    def pull(self, source: Endpoint, callback: None = None, **options: Any) -> Document: ...

    @overload
    def pull(self, source: Endpoint, callback: DataCallback[Document], **options: Any) -> Operation[Document]: ...

    def pull(self, source: Endpoint, callback: Callback = None, **options: Any) -> Any:
        """Replicate ``source`` (a name on the same server, a URL or a Database) into this database.

        Options are those of :meth:`Couch.replicate <corduroy.server_api.ServerMixin.replicate>`.
        """
        this: Any = self  # a Database
        return replicate(self.server, source, this, callback=callback, **options)
