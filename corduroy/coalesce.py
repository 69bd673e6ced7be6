"""Coalescing: concurrent single-document reads and writes sent as one bulk request.

With ``Database(url, coalesce=True)``, every ``db.get(id)`` (no option, or
only ``rev=``) and every ``db.save(doc)`` (one dict, no option) made during
one turn of the reactor joins a batch.  At the end of the turn the batch goes
out as one request:

- reads of the current revision: ``POST /db/_bulk_get?revs=false`` with
  the ids and no ``rev`` (or, with :data:`READS` set to ``"_all_docs"``,
  ``POST /db/_all_docs?include_docs=true`` with the ids as ``keys``);
- reads of a given revision: ``POST /db/_bulk_get``;
- writes: ``POST /db/_bulk_docs``.

``_bulk_get`` is the default because it costs Apache CouchDB 3.4.3 far less
per document: 100-240 microseconds of server CPU (the bigger the batch, the
less) against 360-500 for ``_all_docs`` with ``keys`` and ``include_docs``,
and 830-1000 for a plain ``GET`` of it (``python -m benchmarks.coalescing``,
single node).  For the same reason a turn's reads go out as one batch (up to
:data:`MAX_BATCH`): smaller batches, several in flight, measured slower.

Each caller still gets its own Operation, completed with what the request
alone would have given: the Document (status 200), a ConflictResolution
(201), or the exception of that document alone -- ``NotFound`` (404, error
``not_found``, reason ``missing`` or ``deleted``), ``Conflict`` (409),
``Forbidden`` (403)...  Whatever the bulk answer cannot say exactly for a
document (an unexpected row, an error it does not map, a 4xx refusal of the
whole batch) is asked again with that document's own request.

Rules that keep "as if sent alone" true:

- a batch of one goes out as the plain single request;
- the same id read twice in a batch is fetched once; each caller gets its
  own copy of the document;
- a document in conflict is read with its own ``GET`` after all
  (``_bulk_get`` without ``rev`` answers every leaf revision, not which one
  wins);
- two saves of the same id in one turn never share a ``_bulk_docs``: the
  second goes in a later request, sent once the first has answered (so it
  conflicts exactly as it would have, sent second);
- a save's body is encoded when ``save`` is called (bad documents raise
  there, before any I/O), so changing the dict afterwards changes nothing;
- ids that ``_all_docs`` or ``_bulk_docs`` treat differently (``_local/...``
  and other ``_``-prefixed ids except ``_design/...``) are never coalesced;
- a batch holds at most :data:`MAX_BATCH` documents;
- on a cluster with routing (see :mod:`corduroy.cluster`), a batch is split
  by the node that holds its documents, each part sent to that node.

With ``blocking`` calls there is one call per turn, so nothing is batched
(and nothing changes).  The coalescer is per database object and per
reactor.
"""
from __future__ import annotations

import copy
import weakref
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from loop import Operation, Status
from loop.redact import describe

from . import codec
from .conflicts import ConflictResolution
from .document import Document
from .exceptions import (
    BadRequest,
    BadResponse,
    Conflict,
    CouchError,
    Forbidden,
    HTTPError,
    NotFound,
    Unauthorized,
)
from .http import CouchOperation
from .urls import doc_path, encode_query

if TYPE_CHECKING:  # pragma: no cover
    from .database import Database

__all__ = ["Coalescer", "MAX_BATCH", "READS", "coalescible_id", "with_id"]

#: The most documents one coalesced request carries.
MAX_BATCH = 1000

#: How a batch of reads of the current revision is sent: ``"_bulk_get"`` (the ids
#: without ``rev``; the default, cheapest for CouchDB) or ``"_all_docs"`` (the ids as
#: ``keys``, ``include_docs=true``; for a server whose ``_bulk_get`` is slow or missing).
READS = "_bulk_get"

#: Per-document errors of ``_bulk_docs`` / ``_bulk_get`` and what the single request raises for them.
_ERRORS: Dict[str, Tuple[int, type]] = {
    "not_found": (404, NotFound),
    "conflict": (409, Conflict),
    "forbidden": (403, Forbidden),
    "unauthorized": (401, Unauthorized),
    "bad_request": (400, BadRequest),
}


def coalescible_id(doc_id: Any) -> bool:
    """True if a request for ``doc_id`` can join a bulk request.

    ``_local/`` documents are not in ``_all_docs``, and other ``_``-prefixed
    ids (except ``_design/``) make ``_bulk_docs`` refuse the whole batch.
    """
    if type(doc_id) is not str or not doc_id:
        return False
    return doc_id[0] != "_" or (doc_id.startswith("_design/") and len(doc_id) > 8)


def _as_if_alone(exc: BaseException, method: str, url: str) -> BaseException:
    """A copy of a batch request's exception that names the single request instead."""
    if not isinstance(exc, CouchError):
        return exc
    try:
        return type(exc)(reason=exc.reason, error=exc.error, code=exc.code, method=method, url=url,
                         body=exc.body)
    except TypeError:  # pragma: no cover - a subclass with its own constructor
        return exc


def _refused_whole(exc: BaseException) -> bool:
    """True if a batch request was refused as a whole (a 4xx, or an answer that is not CouchDB's).

    Its documents are then asked again one by one, each getting its own
    request's answer.  A transport failure or a 5xx reaches every caller as is.
    """
    if isinstance(exc, BadResponse):
        return True
    code = getattr(exc, "code", None)
    return isinstance(exc, HTTPError) and code is not None and 400 <= code < 500


def _deliver(waiters: List[Operation], data: Any, status: Status) -> None:
    """Complete every waiter with ``data``; each one after the first gets its own copy."""
    first = True
    for op in waiters:
        if first:
            first = False
            op.complete(data, status)
        else:
            op.complete(copy.deepcopy(data) if isinstance(data, (dict, list)) else data, status)


class _Save:
    """One pending ``save(doc)``: the doc, its body encoded at call time, its Operation."""

    __slots__ = ("doc", "body", "op", "doc_id", "cancelled")

    def __init__(self, doc: dict, body: bytes, op: Operation) -> None:
        self.doc = doc
        self.body = body
        self.op = op
        self.doc_id: Optional[str] = doc.get("_id")
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Coalescer:
    """Batches one database's single-document gets and saves made in one reactor turn.

    Made by :class:`~corduroy.database.Database` when ``coalesce=True``; not
    used directly.
    """

    __slots__ = ("db", "_reactor", "_gets", "_rev_gets", "_saves", "_scheduled")

    def __init__(self, db: "Database", reactor: Any) -> None:
        self.db = db
        # Weak: the database keeps its coalescers in a WeakKeyDictionary keyed by reactor.
        self._reactor = weakref.ref(reactor)
        self._gets: Dict[str, List[Operation]] = {}
        self._rev_gets: Dict[Tuple[str, str], List[Operation]] = {}
        self._saves: List[_Save] = []
        self._scheduled = False

    # -- registering ----------------------------------------------------
    def get(self, doc_id: str, rev: Optional[str] = None) -> Operation:
        """An Operation for document ``doc_id`` (at ``rev``), fetched with this turn's batch."""
        reactor: Any = self._reactor()
        op = CouchOperation(reactor)
        if rev is None:
            waiters = self._gets.get(doc_id)
            if waiters is None:
                self._gets[doc_id] = [op]
            else:
                waiters.append(op)
        else:
            key = (doc_id, rev)
            rev_waiters = self._rev_gets.get(key)
            if rev_waiters is None:
                self._rev_gets[key] = [op]
            else:
                rev_waiters.append(op)
        if not self._scheduled:
            self._scheduled = True
            reactor.call_soon(self._flush)
        return op

    def save(self, doc: dict, body: bytes) -> Operation:
        """An Operation for saving ``doc`` (already encoded as ``body``) with this turn's batch."""
        reactor: Any = self._reactor()
        op = CouchOperation(reactor)
        entry = _Save(doc, body, op)
        if entry.doc_id is None:
            cache = self.db.server.uuid_cache
            if cache:  # as an uncoalesced save does: the id is taken (and set) at once
                _assign_id(entry, cache.pop(0))
        op._cancel = entry.cancel  # cancelled before the flush: never sent
        self._saves.append(entry)
        if not self._scheduled:
            self._scheduled = True
            reactor.call_soon(self._flush)
        return op

    # -- sending --------------------------------------------------------
    def _flush(self) -> None:
        self._scheduled = False
        gets, self._gets = self._gets, {}
        rev_gets, self._rev_gets = self._rev_gets, {}
        saves, self._saves = self._saves, []
        if gets:
            for node, items in self._by_node(list(gets.items()), lambda item: item[0]):
                for start in range(0, len(items), MAX_BATCH):
                    self._send_gets(items[start:start + MAX_BATCH], node)
        if rev_gets:
            for node, rev_items in self._by_node(list(rev_gets.items()), lambda item: item[0][0]):
                for start in range(0, len(rev_items), MAX_BATCH):
                    self._send_rev_gets(rev_items[start:start + MAX_BATCH], node)
        if saves:
            self._start_saves([entry for entry in saves if not entry.cancelled])

    def _by_node(self, items: List[Any], doc_id: Any) -> List[Tuple[Any, List[Any]]]:
        """``items`` grouped by the cluster node that holds their documents (one group, node None, off a cluster)."""
        cluster = self.db.server.cluster
        if cluster is None or len(items) < 2:
            return [(None, items)]
        groups = cluster.by_owner(self.db.name, [doc_id(item) for item in items])
        return [(node, [items[i] for i in indexes]) for node, indexes in groups]

    def _doc_url(self, doc_id: str, rev: Optional[str] = None) -> str:
        url = self.db.url + "/" + doc_path(doc_id)
        return url + encode_query({"rev": rev}) if rev is not None else url

    def _single_get(self, doc_id: str, rev: Optional[str], waiters: List[Operation]) -> None:
        """Fetch one document with its own ``GET`` (a batch of one, or what a batch could not answer)."""
        params = {"rev": rev} if rev is not None else None
        self.db.server.request("GET", self.db._path + "/" + doc_path(doc_id), params).add_callback(
            lambda data, status: _deliver(waiters, data, status))

    def _fail_all(self, waiters: List[Operation], exc: BaseException, code: Optional[int], method: str,
                  url: str) -> None:
        _deliver(waiters, None, Status(code, exception=_as_if_alone(exc, method, url)))

    def _not_found(self, waiters: List[Operation], doc_id: str, rev: Optional[str], reason: str,
                   error: str = "not_found", code: int = 404, cls: type = NotFound) -> None:
        body = Document(error=error, reason=reason)
        exc = cls(reason=reason, error=error, code=code, method="GET", url=self._doc_url(doc_id, rev), body=body)
        _deliver(waiters, body, Status(code, exception=exc))

    # ---- reads of the current revision: _bulk_get (or _all_docs) ----
    def _send_gets(self, items: List[Tuple[str, List[Operation]]], node: Any = None) -> None:
        if len(items) == 1:
            doc_id, waiters = items[0]
            self._single_get(doc_id, None, waiters)
            return
        if READS == "_all_docs":
            keys = [doc_id for doc_id, _ in items]
            self.db._request("POST", "/_all_docs", params={"include_docs": True}, json={"keys": keys},
                             what="document ids", node=node).add_callback(
                lambda data, status: self._got_rows(items, data, status))
            return
        docs = [{"id": doc_id} for doc_id, _ in items]
        self.db._request("POST", "/_bulk_get", params={"revs": False}, json={"docs": docs},
                         what="document ids", node=node).add_callback(
            lambda data, status: self._got_current(items, data, status))

    def _got_current(self, items: List[Tuple[str, List[Operation]]], data: Any, status: Status) -> None:
        """Settle each read of the batch from a ``_bulk_get`` answer (ids asked without ``rev``).

        Without ``rev``, ``_bulk_get`` answers every leaf revision of a
        document.  One leaf is what a ``GET`` answers (a deleted one: 404
        ``deleted``); a document in conflict (several leaves), a missing row
        or anything unexpected is asked again with its own ``GET``, which
        picks the winning revision.
        """
        exc = status.exception
        if exc is not None:
            if not _refused_whole(exc):  # a transport failure or a 5xx: each request alone would have met it
                for doc_id, waiters in items:
                    self._fail_all(waiters, exc, status.code, "GET", self._doc_url(doc_id))
                return
            for doc_id, waiters in items:  # refused as a whole: each document on its own
                self._single_get(doc_id, None, waiters)
            return
        leaves: Dict[Any, Any] = {}
        results = data.get("results") if isinstance(data, dict) else None
        for result in results if isinstance(results, list) else ():
            if isinstance(result, dict) and isinstance(result.get("docs"), list):
                leaves[result.get("id")] = result["docs"]
        for doc_id, waiters in items:
            docs = leaves.get(doc_id)
            entry = docs[0] if docs is not None and len(docs) == 1 and isinstance(docs[0], dict) else None
            ok = entry.get("ok") if entry is not None else None
            error = entry.get("error") if entry is not None else None
            if isinstance(ok, dict) and ok.get("_id") == doc_id:
                if ok.get("_deleted"):
                    self._not_found(waiters, doc_id, None, "deleted")
                else:
                    ok.pop("_revisions", None)  # a plain GET never includes it
                    _deliver(waiters, ok, status)
            elif (isinstance(error, dict) and error.get("error") == "not_found"
                  and error.get("reason") in ("missing", "deleted")):
                self._not_found(waiters, doc_id, None, error["reason"])
            else:
                self._single_get(doc_id, None, waiters)

    def _got_rows(self, items: List[Tuple[str, List[Operation]]], data: Any, status: Status) -> None:
        exc = status.exception
        rows = data.get("rows") if exc is None and isinstance(data, dict) else None
        if exc is not None or not isinstance(rows, list) or len(rows) != len(items):
            if exc is not None and not _refused_whole(exc):
                # A transport failure or a server error: each request alone would have met it too.
                for doc_id, waiters in items:
                    self._fail_all(waiters, exc, status.code, "GET", self._doc_url(doc_id))
                return
            # The batch was refused (or answered oddly): ask each document on its own.
            for doc_id, waiters in items:
                self._single_get(doc_id, None, waiters)
            return
        for (doc_id, waiters), row in zip(items, rows):
            if not isinstance(row, dict) or row.get("key") != doc_id:
                self._single_get(doc_id, None, waiters)
                continue
            error = row.get("error")
            doc = row.get("doc")
            if error is None and isinstance(doc, dict):
                _deliver(waiters, doc, status)
                continue
            value = row.get("value")
            if error is None and isinstance(value, dict) and value.get("deleted"):
                self._not_found(waiters, doc_id, None, "deleted")
            elif error == "not_found":
                self._not_found(waiters, doc_id, None, "missing")
            else:
                self._single_get(doc_id, None, waiters)

    # ---- reads of a given revision: _bulk_get ----
    def _send_rev_gets(self, items: List[Tuple[Tuple[str, str], List[Operation]]], node: Any = None) -> None:
        if len(items) == 1:
            (doc_id, rev), waiters = items[0]
            self._single_get(doc_id, rev, waiters)
            return
        docs = [{"id": doc_id, "rev": rev} for (doc_id, rev), _ in items]
        self.db._request("POST", "/_bulk_get", params={"revs": False}, json={"docs": docs},
                         what="document ids", node=node).add_callback(
            lambda data, status: self._got_revs(items, data, status))

    def _got_revs(self, items: List[Tuple[Tuple[str, str], List[Operation]]], data: Any,
                  status: Status) -> None:
        exc = status.exception
        if exc is not None and not _refused_whole(exc):
            for (doc_id, rev), waiters in items:
                self._fail_all(waiters, exc, status.code, "GET", self._doc_url(doc_id, rev))
            return
        found: Dict[Tuple[Any, Any], Tuple[str, Any]] = {}
        results = data.get("results") if exc is None and isinstance(data, dict) else None
        for result in results if isinstance(results, list) else ():
            if not isinstance(result, dict) or not isinstance(result.get("docs"), list):
                continue
            result_id = result.get("id")
            for entry in result["docs"]:
                if not isinstance(entry, dict):
                    continue
                ok, err = entry.get("ok"), entry.get("error")
                if isinstance(ok, dict):
                    found[(ok.get("_id", result_id), ok.get("_rev"))] = ("ok", ok)
                elif isinstance(err, dict):
                    found[(err.get("id", result_id), err.get("rev"))] = ("error", err)
                elif isinstance(entry.get("missing"), str):
                    found[(result_id, entry["missing"])] = ("error", {"error": "not_found", "reason": "missing"})
        for (doc_id, rev), waiters in items:
            outcome = found.get((doc_id, rev))
            if outcome is None:
                self._single_get(doc_id, rev, waiters)
                continue
            kind, value = outcome
            if kind == "ok":
                value.pop("_revisions", None)  # a GET with only rev= never includes it
                _deliver(waiters, value, status)
                continue
            error = value.get("error")
            known = _ERRORS.get(error) if isinstance(error, str) else None
            if known is None:
                self._single_get(doc_id, rev, waiters)
                continue
            code, cls = known
            reason = value.get("reason") or error
            self._not_found(waiters, doc_id, rev, reason, error=error, code=code, cls=cls)

    # ---- writes: _bulk_docs ----
    def _start_saves(self, saves: List[_Save]) -> None:
        if not saves:
            return
        missing = [entry for entry in saves if entry.doc_id is None]
        if not missing:
            self._send_rounds(_rounds(saves), 0)
            return
        uuids = self.db._take_uuids(len(missing))

        def got_ids(ids: Any, status: Status) -> None:
            if status.exception is not None:
                for entry in missing:
                    entry.op.complete(None, status)  # as the single save: the _uuids failure
                rest = [entry for entry in saves if entry.doc_id is not None]
            else:
                for entry, new_id in zip(missing, ids):
                    _assign_id(entry, new_id)
                rest = saves
            self._send_rounds(_rounds(rest), 0)

        if uuids.done():
            got_ids(uuids.data, uuids.status)  # type: ignore[arg-type]
        else:
            uuids.add_callback(got_ids)

    def _send_rounds(self, rounds: List[List[_Save]], index: int) -> None:
        """Send round ``index`` (ids unique within it); the next goes once it has all answered."""
        if index >= len(rounds):
            return
        entries = rounds[index]
        chunks = [entries[start:start + MAX_BATCH] for start in range(0, len(entries), MAX_BATCH)]
        left = [len(chunks)]

        def chunk_done() -> None:
            left[0] -= 1
            if left[0] == 0:
                self._send_rounds(rounds, index + 1)

        for chunk in chunks:
            if len(chunk) == 1:
                self._single_save(chunk[0], chunk_done)
            else:
                self._bulk_save(chunk, chunk_done)

    def _single_save(self, entry: _Save, then: Any = None) -> None:
        """Write one document with its own ``PUT`` (a batch of one, or what a batch could not settle)."""
        doc_id = entry.doc_id
        assert doc_id is not None

        def done(data: Any, status: Status) -> None:
            try:
                exc = status.exception
                if exc is None:
                    self._saved(entry, data, status)
                elif status.error is Conflict:
                    self._conflict(entry, (data or {}).get("reason") if isinstance(data, dict) else None)
                else:
                    entry.op.complete(data, status)
            finally:
                if then is not None:
                    then()

        self.db._request("PUT", "/" + doc_path(doc_id), body=entry.body).add_callback(done)

    def _saved(self, entry: _Save, result: Any, status: Status) -> None:
        doc = entry.doc
        if isinstance(result, dict):
            if result.get("id") is not None:
                doc["_id"] = result["id"]
            if result.get("rev") is not None:
                doc["_rev"] = result["rev"]
        doc_id: Any = doc.get("_id", entry.doc_id)
        outcome = ConflictResolution(self.db, resolved={doc_id: doc})
        entry.op.complete(outcome, status)

    def _conflict(self, entry: _Save, reason: Optional[str]) -> None:
        exc = Conflict(reason=reason or "Document update conflict.", error="conflict", code=409, method="PUT",
                       url=self._doc_url(entry.doc_id))  # type: ignore[arg-type]
        entry.op.complete(None, Status(409, exception=exc))

    def _bulk_save(self, entries: List[_Save], then: Any) -> None:
        body = b'{"docs":[' + b",".join(entry.body for entry in entries) + b"]}"

        def done(data: Any, status: Status) -> None:
            try:
                self._got_saves(entries, data, status)
            finally:
                then()

        self.db._request("POST", "/_bulk_docs", body=body).add_callback(done)

    def _got_saves(self, entries: List[_Save], data: Any, status: Status) -> None:
        exc = status.exception
        if exc is not None:
            if _refused_whole(exc) and not isinstance(exc, BadResponse):
                # Refused whole, so nothing was written: each document on its own.
                for entry in entries:
                    self._single_save(entry)
                return
            # A server error or a transport failure: each write alone would have met it too.
            for entry in entries:
                entry.op.complete(None, Status(status.code, exception=_as_if_alone(
                    exc, "PUT", self._doc_url(entry.doc_id))))  # type: ignore[arg-type]
            return
        rows: Dict[Any, Any] = {}
        if isinstance(data, list):
            for row in data:
                if isinstance(row, dict):
                    rows[row.get("id")] = row
        for entry in entries:
            row = rows.get(entry.doc_id)
            if row is None:
                bad = BadResponse(reason="_bulk_docs answered nothing for this document", code=status.code,
                                  method="PUT", url=self._doc_url(entry.doc_id))  # type: ignore[arg-type]
                entry.op.complete(None, Status(status.code, exception=bad))
                continue
            error = row.get("error")
            if error is None:
                self._saved(entry, row, status)
            elif error == "conflict":
                self._conflict(entry, row.get("reason"))
            else:
                known = _ERRORS.get(error) if isinstance(error, str) else None
                if known is None:
                    self._single_save(entry)  # not written; let its own PUT say what is wrong
                    continue
                code, cls = known
                reason = row.get("reason")
                body = Document(error=error, reason=reason)
                failure = cls(reason=reason, error=error, code=code, method="PUT",
                              url=self._doc_url(entry.doc_id), body=body)  # type: ignore[arg-type]
                entry.op.complete(body, Status(code, exception=failure))


def _assign_id(entry: _Save, new_id: str) -> None:
    """Give a new document its server-made id, in the dict and in the body encoded at call time."""
    entry.doc["_id"] = new_id
    entry.doc_id = new_id
    entry.body = with_id(entry.body, entry.doc, new_id)


def with_id(encoded: bytes, doc: dict, new_id: str) -> bytes:
    """``encoded`` (a doc without an ``_id``, encoded) with ``"_id": new_id`` spliced in."""
    if b'"_id"' in encoded or not encoded.startswith(b"{"):
        return codec.encode(doc, "document %s" % describe(new_id))  # it held "_id": null: encode anew
    head = b'{"_id":' + codec.encode(new_id)
    return head + b"}" if encoded == b"{}" else head + b"," + encoded[1:]


def _rounds(saves: List[_Save]) -> List[List[_Save]]:
    """Split saves into rounds in which no id appears twice, keeping call order per id."""
    rounds: List[List[_Save]] = []
    seen: Dict[str, int] = {}
    for entry in saves:
        n = seen.get(entry.doc_id, 0)  # type: ignore[arg-type]
        seen[entry.doc_id] = n + 1  # type: ignore[index]
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(entry)
    return rounds
