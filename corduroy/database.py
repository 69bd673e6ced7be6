"""Database: one CouchDB database, and its documents.

Every I/O method takes ``callback=None`` and keeps the calling contract (see
:func:`corduroy.http.finish`): with a callback it returns an Operation and
calls ``callback(data, status)`` later; inside a running reactor or a
``@relax`` generator it returns the Operation to yield or await; otherwise
it blocks and returns the data or raises.
"""
from __future__ import annotations

import re
import weakref
from typing import (
    TYPE_CHECKING, Any, Callable, Dict, Generator, Iterator, List, Optional, Sequence, Tuple, Union, overload,
)

import pycurl

from loop import Operation, Status, completed, get_reactor, trampoline
from loop.redact import describe

from . import codec
from .attachments import AttachmentsMixin
from .changes import ChangesMixin
from .coalesce import Coalescer, coalescible_id, with_id
from .conflicts import ConflictResolution, MergeFunction, take_server_rev
from .contract import blocking, io_methods
from .document import Document
from .exceptions import Conflict, NotFound
from .http import CouchOperation, Server, finish
from .request_headers import Auth
from .maintenance import MaintenanceMixin
from .mango import MangoMixin
from .multipart import streamed_attachments
from .replication import ReplicationMixin
from .results import BoolResult, DataCallback, ListResult
from .urls import check_doc_id, doc_path, quote_segment, split_credentials, validate_db_name
from .views import ViewsMixin

__all__ = ["Database"]

Callback = Optional[Callable[[Any, Status], Any]]

#: How many ids one ``_uuids`` request fetches for the id cache.
UUID_BATCH = 100


@io_methods
class Database(ViewsMixin, MangoMixin, ChangesMixin, AttachmentsMixin, MaintenanceMixin, ReplicationMixin):
    """A CouchDB database.

    ``Database("name")`` uses the default server (``corduroy.defaults.url``);
    ``Database("http://host:5984/name")`` names the server too, and a list
    of such URLs (one database on the nodes of a cluster) makes a cluster
    client (see :mod:`corduroy.cluster`).  Creating the object does no I/O.

    ``coalesce=True`` batches the single-document ``get(id)`` and
    ``save(doc)`` calls made in one reactor turn into one bulk request each
    (see :mod:`corduroy.coalesce`); every caller still gets its own answer.
    ``http2=True`` speaks HTTP/2 to the server (h2 with prior knowledge for
    ``http://``, negotiated over TLS for ``https://``) so concurrent
    requests share one connection (see :func:`http2_curl_options`).

    >>> Database("underlings")
    <Database 'underlings'>
    """

    if TYPE_CHECKING:  # pragma: no cover
        def __await__(self) -> Generator[Any, None, Database]:
            """For type checkers only (nothing at run time): see :mod:`corduroy.results`."""

    def __init__(self, name: Union[str, Sequence[str]], auth: Optional[Auth] = None, server: Optional[Server] = None,
                 coalesce: bool = False, http2: bool = False, **server_options: Any) -> None:
        if isinstance(name, (list, tuple)) and name:  # the database's URL on each node of a cluster
            name, server = _cluster_database(name, auth, server, server_options)
        if not isinstance(name, str):
            raise TypeError("a database is named by a str (or its URLs on the nodes of a cluster), not %s"
                            % type(name).__name__)
        if "://" in name:
            from urllib.parse import unquote

            base, inline = split_credentials(name)
            root, _, last = base.rpartition("/")
            if "://" not in root or not last:
                raise ValueError("the URL names no database")
            name = unquote(last)
            if server is None:
                server = Server(root, auth=auth if auth is not None else inline, **server_options)
        validate_db_name(name)
        if server is None:
            server = Server(None, auth=auth, **server_options)
        if http2:
            server.curl_options = http2_curl_options(server.url, server.curl_options)
        self.name = name
        self.server = server
        self._path = "/" + quote_segment(name)
        #: Batch concurrent single-document gets and saves (see :mod:`corduroy.coalesce`).
        self.coalesce = bool(coalesce)
        self._coalescers: "weakref.WeakKeyDictionary[Any, Coalescer]" = weakref.WeakKeyDictionary()

    @property
    def url(self) -> str:
        """The database's URL (without credentials)."""
        return self.server.url + self._path

    def __repr__(self) -> str:
        return "<Database %r>" % (self.name,)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Database) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    # -- plumbing shared by every method --------------------------------
    def _request(self, method: str, path: str = "", **kwargs: Any) -> Operation:
        return self.server.request(method, self._path + path, **kwargs)

    def _run(self, gen: Generator[Any, Any, Any], callback: Callback) -> Any:
        """Run an internal generator through the trampoline under the calling contract."""
        reactor = get_reactor()
        return finish(trampoline(gen, reactor, CouchOperation(reactor)), callback)

    def _coalescer(self) -> Coalescer:
        """This thread's (this reactor's) batcher of single-document calls."""
        reactor = get_reactor()
        coalescer = self._coalescers.get(reactor)
        if coalescer is None:
            coalescer = self._coalescers[reactor] = Coalescer(self, reactor)
        return coalescer

    # -- the database itself --------------------------------------------
    @overload
    def exists(self, callback: None = None) -> BoolResult: ...

    @overload
    def exists(self, callback: DataCallback[bool]) -> Operation[bool]: ...

    def exists(self, callback: Callback = None) -> Any:
        """True if the database exists on the server (a HEAD request)."""
        return self._run(self._exists(), callback)

    def _exists(self) -> Generator[Any, Any, bool]:
        try:
            yield self._request("HEAD")
        except NotFound:
            return False
        return True

    @overload
    def info(self, ddoc: Optional[str] = None, callback: None = None) -> Document: ...

    @overload
    def info(self, ddoc: Optional[str] = None, callback: DataCallback[Document] = ...) -> Operation[Document]: ...

    def info(self, ddoc: Optional[str] = None, callback: Callback = None) -> Any:
        """The database's info (``GET /db``), or a design document's (``_design/ddoc/_info``)."""
        if ddoc is None:
            return finish(self._request("GET"), callback)
        return finish(self._request("GET", "/" + _ddoc_path(ddoc) + "/_info"), callback)

    # -- reading documents ----------------------------------------------
    @overload
    def get(self, id_or_ids: str, callback: None = None, **options: Any) -> Document: ...

    @overload
    def get(self, id_or_ids: Union[List[str], Tuple[str, ...]], callback: None = None,
            **options: Any) -> ListResult[Optional[Document]]: ...

    @overload
    def get(self, id_or_ids: str, callback: DataCallback[Document], **options: Any) -> Operation[Document]: ...

    @overload
    def get(self, id_or_ids: Union[List[str], Tuple[str, ...]], callback: DataCallback[List[Optional[Document]]],
            **options: Any) -> Operation[List[Optional[Document]]]: ...

    def get(self, id_or_ids: Union[str, List[str], Tuple[str, ...]], callback: Callback = None,
            **options: Any) -> Any:
        """The document with id ``id_or_ids``, or a list of documents for a list of ids.

        One id: a :class:`Document`, or raises NotFound.  A list: a list in the
        same order with None where a document is missing or deleted.
        Options for one id: ``rev``, ``revs``, ``revs_info``, ``conflicts``,
        ``open_revs``, ``attachments``, ``latest``, ``local_seq``, ``meta``.
        """
        if isinstance(id_or_ids, (list, tuple)):
            return finish(self._fetch_many(list(id_or_ids), **options), callback)
        if self.coalesce and coalescible_id(id_or_ids):
            if not options:
                return finish(self._coalescer().get(id_or_ids), callback)
            rev = options.get("rev")
            if len(options) == 1 and type(rev) is str and rev:
                return finish(self._coalescer().get(id_or_ids, rev), callback)
        return finish(self.server.request("GET", self._path + "/" + doc_path(id_or_ids), options), callback)

    def _fetch_many(self, ids: List[str], **options: Any) -> Operation:
        for doc_id in ids:
            if not isinstance(doc_id, str) or not doc_id:
                raise TypeError("document ids are non-empty strings, got %s" % describe(doc_id))
            if doc_id[0] == "_":
                check_doc_id(doc_id)
        if not ids:
            return completed([], reactor=get_reactor())
        params = dict(options)
        params["include_docs"] = True
        return self._request("POST", "/_all_docs", params=params, json={"keys": ids},
                             transform=_docs_from_rows)

    # -- writing documents ----------------------------------------------
    @overload
    def save(self, doc_or_docs: Union[dict, List[dict]], merge: Optional[MergeFunction] = None,
             force: bool = False, callback: None = None, **options: Any) -> ConflictResolution: ...

    @overload
    def save(self, doc_or_docs: Union[dict, List[dict]], merge: Optional[MergeFunction] = None,
             force: bool = False, callback: DataCallback[ConflictResolution] = ...,
             **options: Any) -> Operation[ConflictResolution]: ...

    def save(self, doc_or_docs: Union[dict, List[dict]], merge: Optional[MergeFunction] = None,
             force: bool = False, callback: Callback = None, **options: Any) -> Any:
        """Create or update one document or a list of them; returns a :class:`ConflictResolution`.

        Saved docs get their ``_id`` and ``_rev`` updated in place; a doc with
        no ``_id`` gets a server-generated one.  One document in conflict
        raises :class:`Conflict`; in a list, conflicts are reported per doc in
        ``pending``.  ``merge=fn`` or ``force=True`` resolve conflicts at once
        (see :meth:`ConflictResolution.resolve`).  Options: ``batch="ok"``,
        ``new_edits=False`` (lists), ``w=N`` (a cluster answers once N copies
        of the shard have the write, instead of a quorum: ``w=3`` on an n=3
        cluster makes the write visible to every read that follows, views
        and ``_changes`` included; more copies than there are gives 202,
        still written), ``all_or_nothing=True`` (lists; CouchDB 1.x only:
        CouchDB 2 and later refuse it, ExpectationFailed).
        A list with ``_deleted: True`` docs deletes them.

        An ``_id`` starting with ``_`` other than ``_design/...`` or
        ``_local/...`` raises ValueError before anything is sent (and nothing
        of a list is written).

        Attachment content in one document's ``_attachments`` (a file object,
        bytes, or ``{"data": file_or_iterator, "content_type": ..., "length":
        n}``) is sent with the document in one streamed multipart/related
        request; the entries become stubs once saved (see
        ``docs/guide/attachments-and-maintenance.rst``).
        """
        if force and merge is None:
            merge = take_server_rev
        if merge is not None and not callable(merge):
            raise TypeError("merge must be a function of (local_doc, server_doc)")
        # Encode everything before any I/O, once: a bad doc raises here and nothing is sent.
        if isinstance(doc_or_docs, dict):
            doc = doc_or_docs
            if "_id" in doc and doc["_id"] is not None:
                check_doc_id(doc["_id"])
            if streamed_attachments(doc):  # file objects, bytes or iterators in _attachments
                return self._save_streamed(doc, merge, options, callback)
            body = codec.encode_document(doc)
            if merge is None and not options:
                doc_id = doc.get("_id")
                if self.coalesce and (doc_id is None or coalescible_id(doc_id)):
                    return finish(self._coalescer().save(doc, body), callback)
                if doc_id is not None:
                    return finish(self._write_one(doc, options, body, conflict_raises=True), callback)
            return self._run(self._save([doc], True, merge, options, [body]), callback)
        docs = doc_or_docs
        if not isinstance(docs, (list, tuple)):
            raise TypeError("save takes a dict or a list of dicts, not %s" % type(doc_or_docs).__name__)
        for doc in docs:
            if not isinstance(doc, dict):
                raise TypeError("documents are dicts, not %s" % type(doc).__name__)
            doc_id = doc.get("_id")
            if doc_id is not None and (type(doc_id) is not str or not doc_id or doc_id[0] == "_"):
                check_doc_id(doc_id)  # raises unless it is a _design/ or _local/ id
        encoded = _encode_bulk(docs, options)
        return self._run(self._save(list(docs), False, merge, options, encoded), callback)

    def _save(self, docs: List[dict], single: bool, merge: Optional[MergeFunction],
              options: Dict[str, Any], encoded: Union[bytes, List[bytes]]) -> Generator[Any, Any, ConflictResolution]:
        """Save ``docs``, already encoded: ``encoded`` is the whole ``_bulk_docs`` body, or one body per doc."""
        # A whole body (bytes) means every doc had its _id when it was encoded, a moment ago.
        missing = [] if isinstance(encoded, bytes) else [i for i, doc in enumerate(docs) if doc.get("_id") is None]
        if missing:
            ids = yield self._take_uuids(len(missing))
            for i, new_id in zip(missing, ids):
                docs[i]["_id"] = new_id
                if isinstance(encoded, list):
                    encoded[i] = with_id(encoded[i], docs[i], new_id)
        if single:
            outcome = yield self._write_one(docs[0], options, encoded[0])  # type: ignore[arg-type]
        else:
            if isinstance(encoded, list):
                encoded = _bulk_body(encoded, options)
            outcome = yield self._bulk_write(docs, options, encoded)
        if merge is not None and outcome.pending:
            yield outcome._resolve(merge)
        if single and outcome.pending and merge is None:
            doc = docs[0]
            raise Conflict(reason="Document update conflict.", error="conflict", code=409,
                           method="PUT", url=self.url + "/" + doc_path(doc["_id"]))
        return outcome

    def _write_one(self, doc: dict, options: Dict[str, Any], body: Optional[bytes] = None,
                   conflict_raises: bool = False) -> Operation:
        """PUT one doc (``body``: its encoding, if done already); completes with a ConflictResolution.

        A conflict leaves the doc in ``pending``, or with ``conflict_raises``
        fails the Operation with :class:`Conflict` (status 409).
        """
        params = {k: v for k, v in options.items() if k in ("batch", "new_edits", "rev", "w")} or None
        op = CouchOperation(get_reactor())
        url = self.url + "/" + doc_path(doc["_id"])

        def done(data: Any, status: Status) -> None:
            outcome = ConflictResolution(self, options=options)
            if status.error is Conflict:
                if conflict_raises:
                    op.complete(None, Status(409, exception=Conflict(
                        reason="Document update conflict.", error="conflict", code=409, method="PUT", url=url),
                        header_lines=None))
                    return
                outcome.pending[doc["_id"]] = doc
            elif status.exception is not None:
                op.complete(data, status)
                return
            else:
                _apply_result(doc, data)
                outcome.resolved[doc["_id"]] = doc
            op.complete(outcome, Status(status.code, header_lines=None, headers=status.headers))

        if body is None:
            request = self._request("PUT", "/" + doc_path(doc["_id"]), params=params, json=doc,
                                    what="document %s" % describe(doc["_id"]))
        else:
            request = self._request("PUT", "/" + doc_path(doc["_id"]), params=params, body=body)
        request.add_callback(done)
        op._cancel = request.cancel
        return op

    def _bulk_write(self, docs: List[dict], options: Dict[str, Any], body: Optional[bytes] = None) -> Operation:
        """POST ``docs`` to ``_bulk_docs`` (``body``: the request body, if encoded already)."""
        params = {k: options[k] for k in ("batch", "w") if k in options} or None

        def outcome(results: Any, status: Status) -> ConflictResolution:
            result = ConflictResolution(self, options=options)
            resolved, pending, errors = result.resolved, result.pending, result.errors
            doc_id: Any
            for doc, row in _pair_results(docs, results):
                get = row.get
                error = get("error")
                if error is None:
                    doc_id = get("id")
                    if doc_id is None:
                        doc_id = doc.get("_id")
                    else:
                        doc["_id"] = doc_id
                    rev = get("rev")
                    if rev is not None:
                        doc["_rev"] = rev
                    resolved[doc_id] = doc
                    continue
                doc_id = get("id") or doc.get("_id")
                if error == "conflict":
                    pending[doc_id] = doc
                else:
                    errors[doc_id] = {"doc": doc, "error": error, "reason": get("reason")}
            return result

        if body is None:
            json_body: Dict[str, Any] = {"docs": docs}
            for key in ("all_or_nothing", "new_edits"):
                if key in options:
                    json_body[key] = options[key]
            return self._request("POST", "/_bulk_docs", params=params, json=json_body, transform=outcome,
                                 what="documents", plain=True)
        return self._request("POST", "/_bulk_docs", params=params, body=body, transform=outcome, plain=True)

    def _take_uuids(self, count: int) -> Operation:
        cache = self.server.uuid_cache
        if len(cache) >= count:
            taken = cache[:count]
            del cache[:count]
            return completed(taken, reactor=get_reactor())

        def refill(data: Any, status: Status) -> List[str]:
            cache.extend(data["uuids"])
            taken = cache[:count]
            del cache[:count]
            return taken

        return self.server.request("GET", "/_uuids", params={"count": max(count, UUID_BATCH)},
                                   transform=refill)

    @overload
    def delete(self, doc: Union[dict, str], callback: None = None) -> Document: ...

    @overload
    def delete(self, doc: Union[dict, str], callback: DataCallback[Document]) -> Operation[Document]: ...

    def delete(self, doc: Union[dict, str], callback: Callback = None) -> Any:
        """Delete ``doc`` (it needs ``_id`` and the current ``_rev``), or the document with id ``doc``.

        Returns ``{ok, id, rev}`` and updates the doc's ``_rev``; raises
        NotFound or Conflict.  Given an id (a str), it makes two requests:
        one for the current revision (HEAD), then the DELETE of that
        revision; Conflict if the document changed in between.
        """
        if isinstance(doc, str):
            check_doc_id(doc)
            return self._run(self._delete_id(doc), callback)
        if not isinstance(doc, dict):
            raise TypeError("delete takes a document (a dict) or an id (a str), not %s" % type(doc).__name__)
        if not doc.get("_id"):
            raise ValueError("delete needs a document with an _id (and its current _rev), or an id")

        def applied(data: Any, status: Status) -> Any:
            if isinstance(data, dict) and data.get("rev"):
                doc["_rev"] = data["rev"]
            return data

        params = {"rev": doc["_rev"]} if doc.get("_rev") else None
        return finish(self._request("DELETE", "/" + doc_path(doc["_id"]), params=params,
                                    transform=applied), callback)

    def _delete_id(self, doc_id: str) -> Generator[Any, Any, Any]:
        path = "/" + doc_path(doc_id)
        rev = yield self._request("HEAD", path, transform=_etag_rev)
        if not rev:  # no ETag: read the document for its _rev
            rev = (yield self._request("GET", path))["_rev"]
        return (yield self._request("DELETE", path, params={"rev": rev}))

    @overload
    def contains(self, doc_id: str, callback: None = None) -> BoolResult: ...

    @overload
    def contains(self, doc_id: str, callback: DataCallback[bool]) -> Operation[bool]: ...

    def contains(self, doc_id: str, callback: Callback = None) -> Any:
        """True if document ``doc_id`` exists (and is not deleted): one HEAD request."""
        check_doc_id(doc_id)
        return self._run(self._contains(doc_id), callback)

    def _contains(self, doc_id: str) -> Generator[Any, Any, bool]:
        try:
            yield self._request("HEAD", "/" + doc_path(doc_id))
        except NotFound:
            return False
        return True

    # -- dict idioms (blocking only; inside a reactor use the methods) -----
    @blocking
    def __contains__(self, doc_id: str) -> bool:
        """``id in db``: True if the document exists (blocking; one HEAD request)."""
        _refuse_async("'id in db'", "db.contains(id)")
        return bool(self.contains(doc_id))

    @blocking
    def __getitem__(self, doc_id: str) -> Document:
        """``db[id]``: the :class:`Document` (blocking); NotFound, which is also a KeyError, if missing."""
        _refuse_async("'db[id]'", "db.get(id)")
        check_doc_id(doc_id)
        return self.get(doc_id)  # type: ignore[no-any-return]

    @blocking
    def __setitem__(self, doc_id: str, doc: dict) -> None:
        """``db[id] = doc``: save ``doc`` under ``id`` (blocking); sets its ``_id`` and ``_rev``.

        Conflict if ``doc`` lacks the current ``_rev`` of an existing document.
        """
        _refuse_async("'db[id] = doc'", "db.save(doc)")
        check_doc_id(doc_id)
        if not isinstance(doc, dict):
            raise TypeError("db[id] = doc takes a dict, not %s" % type(doc).__name__)
        if doc.get("_id") not in (None, doc_id):
            raise ValueError("db[%s] = doc: the doc's _id is %s" % (describe(doc_id), describe(doc["_id"])))
        codec.encode_document(doc)  # refuse a bad doc before touching it
        doc["_id"] = doc_id
        self.save(doc)

    @blocking
    def __delitem__(self, doc_id: str) -> None:
        """``del db[id]``: delete the document's current revision (blocking; two requests, see :meth:`delete`)."""
        _refuse_async("'del db[id]'", "db.delete(id)")
        check_doc_id(doc_id)
        self.delete(doc_id)

    @blocking
    def __len__(self) -> int:
        """``len(db)``: the number of documents (``doc_count`` of the database's info; blocking)."""
        _refuse_async("'len(db)'", "db.info()")
        return int(self.info()["doc_count"])

    def __iter__(self) -> Iterator[str]:
        """``for id in db``: every document id, design documents included, fetched 1000 at a time (blocking)."""
        _refuse_async("'for id in db'", "db.iter_all_docs() with `async for`, or db.all_docs()")
        return (str(row.id) for row in self.iter_all_docs(page_size=1000))

    def __bool__(self) -> bool:
        return True  # a Database is true even when empty (``len()`` would make a request)


def _cluster_database(urls: Sequence[Any], auth: Optional[Auth], server: Optional[Server],
                      server_options: Dict[str, Any]) -> Tuple[str, Server]:
    """The database name and the cluster Server of ``Database([url/db, url/db, ...])``."""
    from urllib.parse import unquote

    if server is not None:
        raise ValueError("give either the database's URLs or server=, not both")
    roots, names = [], set()
    for url in urls:
        if not isinstance(url, str) or "://" not in url:
            raise ValueError("a database on several nodes is given as a list of URLs (http://node/db)")
        base, inline = split_credentials(url)
        root, _, last = base.rpartition("/")
        if "://" not in root or not last:
            raise ValueError("the URL names no database")
        names.add(unquote(last))
        roots.append(url[:url.rstrip("/").rfind("/")])  # keeps the credentials for Server to check
    if len(names) != 1:
        raise ValueError("the URLs name different databases (%d names)" % len(names))
    return names.pop(), Server(roots, auth=auth, **server_options)


def http2_curl_options(url: str, curl_options: Optional[Dict[int, Any]] = None) -> Dict[int, Any]:
    """The curl options that make a server's requests HTTP/2, added to ``curl_options``.

    ``http://``: h2 with prior knowledge (h2c: the server, or the proxy in
    front of CouchDB, must speak HTTP/2 on that port); ``https://``: HTTP/2
    negotiated by ALPN, falling back to HTTP/1.1.  ``PIPEWAIT`` makes a new
    request wait for a connection it can multiplex on rather than open one.
    Raise the number of transfers in flight past the connection limit with
    ``reactor.curl.set_limits(max_connections, max_streams=...)``.
    """
    options = dict(curl_options or {})
    version = pycurl.CURL_HTTP_VERSION_2TLS if url.lower().startswith("https:") \
        else pycurl.CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE
    options[pycurl.HTTP_VERSION] = version
    options[pycurl.PIPEWAIT] = 1
    return options


def _encode_bulk(docs: Union[List[dict], Tuple[dict, ...]], options: Dict[str, Any]) -> Union[bytes, List[bytes]]:
    """Encode a list save, once: the whole ``_bulk_docs`` body, or one body per doc if some lack an ``_id``.

    Raises TypeError or ValueError naming the first doc that cannot be encoded.
    """
    if any(doc.get("_id") is None for doc in docs):
        # Their ids come from the server's uuids later: encode each doc now, splice the id in then.
        encoded = [codec.encode_document(doc) for doc in docs]
        _bulk_body([], options)  # the options too, before any I/O
        return encoded
    body: Dict[str, Any] = {"docs": docs}
    for key in ("all_or_nothing", "new_edits"):
        if key in options:
            body[key] = options[key]
    try:
        return codec.encode(body, "documents")
    except (TypeError, ValueError):
        for doc in docs:  # name the culprit (the slow path, only on failure)
            codec.encode_document(doc)
        raise


def _bulk_body(encoded: List[bytes], options: Dict[str, Any]) -> bytes:
    """A ``_bulk_docs`` body from docs encoded one by one."""
    extra = b""
    for key in ("all_or_nothing", "new_edits"):
        if key in options:
            extra += b',"' + key.encode("ascii") + b'":' + codec.encode(options[key], "option %r" % key)
    return b'{"docs":[' + b",".join(encoded) + b"]" + extra + b"}"


def _pair_results(docs: List[dict], results: List[Any]) -> Any:
    """Pair each doc with its ``_bulk_docs`` result row.

    CouchDB answers in the order of the request; some servers (pouchdb-server
    puts design documents first) do not, so when the ids disagree the rows
    are matched by id instead.
    """
    if len(results) == len(docs):
        ids = [row.get("id") for row in results]
        if ids == [doc.get("_id") for doc in docs] or all(
                got is None or got == doc.get("_id") for doc, got in zip(docs, ids)):
            return zip(docs, results)
    by_id: Dict[Any, List[Any]] = {}
    for row in results:
        by_id.setdefault(row.get("id"), []).append(row)
    pairs = []
    for doc in docs:
        rows = by_id.get(doc.get("_id"))
        if rows:
            pairs.append((doc, rows.pop(0)))
    return pairs


def _apply_result(doc: dict, result: Any) -> None:
    if isinstance(result, dict):
        if result.get("id") is not None:
            doc["_id"] = result["id"]
        if result.get("rev") is not None:
            doc["_rev"] = result["rev"]


_REV = re.compile(r"[1-9][0-9]*-[0-9a-f]+\Z")


def _refuse_async(idiom: str, method: str) -> None:
    if get_reactor().in_async_context():
        raise RuntimeError("%s blocks; inside a running reactor use `yield %s` (or await it, or pass callback=)"
                           % (idiom, method))


def _etag_rev(data: Any, status: Status) -> Optional[str]:
    """The revision in a HEAD answer's ETag, or None."""
    etag = (status.headers or {}).get("Etag", "").strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    etag = etag.strip('"')
    return etag if _REV.match(etag) else None  # some servers' ETags are not revisions


def _docs_from_rows(data: Any, status: Status) -> List[Optional[Document]]:
    return [row.get("doc") if row.get("error") is None else None for row in data["rows"]]


def _ddoc_path(ddoc: str) -> str:
    """``name`` or ``_design/name`` as the quoted path of a design document."""
    if not isinstance(ddoc, str) or not ddoc:
        raise TypeError("a design document is named by a non-empty str")
    if ddoc.startswith("_design/"):
        ddoc = ddoc[len("_design/"):]
    return "_design/" + quote_segment(ddoc)
