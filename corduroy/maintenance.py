"""Database maintenance and low-level document endpoints.

Compaction, index cleanup, full commits and the security object; COPY;
revisions, conflicts and their resolution; purge, ``_revs_diff``,
``_missing_revs`` and ``_bulk_get``; ``_local`` documents; partitions of a
partitioned database.
"""
from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, Callable, Dict, Generator, List, Mapping, Optional, Tuple, Union, overload

from loop import Status
from loop.redact import describe

from .contract import io_methods
from .document import Document
from .exceptions import NotFound
from .http import finish
from .mango import FindPager, _find_result
from .mango import _query as mango_query
from .results import DataCallback, DictResult, IntResult, ListResult
from .urls import check_doc_id, doc_path, quote_segment
from .views import ALL_DOCS_OPTIONS, VIEW_OPTIONS, Pager

if TYPE_CHECKING:  # pragma: no cover
    from loop import Operation

    from .http import Server
    from .mango import FindResult
    from .views import View

__all__ = ["MaintenanceMixin", "copy_destination"]

Callback = Optional[Callable[[Any, Status], Any]]

#: What ``choose`` returns for :meth:`MaintenanceMixin.resolve_conflicts`: a rev, a doc, or None.
Chooser = Callable[[List[Document]], Union[str, dict, None]]

log = logging.getLogger("corduroy")

_LOCAL = "_local/"

_REV_ETAG = re.compile(r'^"(\d+-[0-9a-fA-F]+)"$')


def _id_and_rev(value: Any, what: str) -> Tuple[str, Optional[str]]:
    """``(id, rev or None)`` from an id string or a ``{_id, _rev}`` dict."""
    doc_id: Any
    rev: Any
    if isinstance(value, str):
        doc_id, rev = value, None
    elif isinstance(value, dict):
        doc_id, rev = value.get("_id"), value.get("_rev")
    else:
        raise TypeError("%s is a document id or a dict with _id (and _rev), not %s" % (what, type(value).__name__))
    if not isinstance(doc_id, str) or not doc_id:
        raise ValueError("%s needs a non-empty document id" % what)
    if rev is not None and (not isinstance(rev, str) or not rev):
        raise TypeError("%s has a _rev that is not a non-empty str: %s" % (what, describe(rev)))
    return doc_id, rev


def copy_destination(dest: Union[str, dict]) -> str:
    """The ``Destination`` header value for COPY to ``dest`` (an id, or a ``{_id, _rev}`` dict).

    The id is percent-quoted (CouchDB decodes it), so it can hold any
    character, ``?`` and line breaks included, without changing the header's
    meaning:

    >>> copy_destination({"_id": "a b?c", "_rev": "2-abc"})
    'a%20b%3Fc?rev=2-abc'
    """
    doc_id, rev = _id_and_rev(dest, "the COPY destination")
    value = quote_segment(check_doc_id(doc_id))
    if rev is not None:
        value += "?rev=" + quote_segment(rev)
    return value


def _local_id(doc_id: Any) -> str:
    if not isinstance(doc_id, str) or not doc_id:
        raise TypeError("a local document id is a non-empty str, got %s" % describe(doc_id))
    full = doc_id if doc_id.startswith(_LOCAL) else _LOCAL + doc_id
    if len(full) == len(_LOCAL):
        raise ValueError("a local document id needs a name after '_local/'")
    return full


def _revs_map(revs: Any, what: str) -> Dict[str, List[str]]:
    """``{id: [rev, ...]}`` from such a mapping (a single rev may be a str)."""
    if not isinstance(revs, Mapping):
        raise TypeError("%s takes a dict of {doc_id: [rev, ...]}, not %s" % (what, type(revs).__name__))
    out: Dict[str, List[str]] = {}
    for doc_id, value in revs.items():
        if not isinstance(doc_id, str) or not doc_id:
            raise TypeError("document ids are non-empty strings, got %s" % describe(doc_id))
        check_doc_id(doc_id)
        listed = [value] if isinstance(value, str) else value
        if not isinstance(listed, (list, tuple)) or not all(isinstance(r, str) and r for r in listed):
            raise TypeError("%s: the revisions of %s must be a list of rev strings" % (what, describe(doc_id)))
        out[doc_id] = list(listed)
    return out


def _purge_map(docs: Any) -> Dict[str, List[str]]:
    if isinstance(docs, Mapping) and "_id" not in docs:
        return _revs_map(docs, "purge")
    if isinstance(docs, dict):
        docs = [docs]
    if not isinstance(docs, (list, tuple)):
        raise TypeError("purge takes a list of {_id, _rev} dicts or a dict of {id: [revs]}, not %s"
                        % type(docs).__name__)
    out: Dict[str, List[str]] = {}
    for doc in docs:
        doc_id, rev = _id_and_rev(doc, "a document to purge")
        check_doc_id(doc_id)
        if rev is None:
            raise ValueError("purge needs the _rev of every document (%s has none)" % describe(doc_id))
        out.setdefault(doc_id, []).append(rev)
    return out


def _bulk_get_entries(docs: Any) -> List[Dict[str, Any]]:
    if not isinstance(docs, (list, tuple)):
        raise TypeError("bulk_get takes a list of ids or {id, rev} dicts, not %s" % type(docs).__name__)
    entries: List[Dict[str, Any]] = []
    for item in docs:
        if isinstance(item, str):
            if not item:
                raise ValueError("document ids cannot be empty")
            entries.append({"id": check_doc_id(item)})
            continue
        if not isinstance(item, dict):
            raise TypeError("bulk_get entries are ids or dicts, not %s" % type(item).__name__)
        entry = {k: v for k, v in item.items() if k not in ("_id", "_rev")}
        if "id" not in entry and "_id" in item:
            entry["id"] = item["_id"]
        if "rev" not in entry and item.get("_rev") is not None:
            entry["rev"] = item["_rev"]
        if not isinstance(entry.get("id"), str) or not entry["id"]:
            raise ValueError("every bulk_get entry needs an id, got %s" % describe(item))
        check_doc_id(entry["id"])
        if "rev" in entry and (not isinstance(entry["rev"], str) or not entry["rev"]):
            raise TypeError("a bulk_get rev must be a non-empty str, got %s" % describe(entry["rev"]))
        entries.append(entry)
    return entries


def _bulk_get_results(data: Any, status: Status) -> List[Document]:
    """One entry per result: ``{id, docs: [Document...], errors: [{id, rev, error, reason}...]}``."""
    out: List[Document] = []
    for result in data.get("results", []):
        doc_id = result.get("id")
        found: List[Any] = []
        errors: List[Document] = []
        for item in result.get("docs", []):
            if "ok" in item:
                found.append(item["ok"])
            elif isinstance(item.get("error"), dict):
                err = item["error"]
                errors.append(Document(id=err.get("id", doc_id), rev=err.get("rev"), error=err.get("error"),
                                       reason=err.get("reason")))
            elif "missing" in item:
                errors.append(Document(id=doc_id, rev=item["missing"], error="not_found", reason="missing"))
            else:
                errors.append(Document(id=doc_id, rev=None, error=item.get("error") or "unknown",
                                       reason=item.get("reason") or "the server returned neither a document "
                                                                    "nor an error"))
        out.append(Document(id=doc_id, docs=found, errors=errors))
    return out


def _view_path(name: str) -> str:
    """``ddoc/view`` (or ``_design/ddoc/view``) as ``_design/ddoc/_view/view``, quoted."""
    if not isinstance(name, str):
        raise TypeError("a view is named 'ddoc/view', not %s" % type(name).__name__)
    if name.startswith("_design/"):
        name = name[len("_design/"):]
    ddoc, sep, view = name.partition("/")
    if not sep or not ddoc or not view:
        raise ValueError("a view is named 'ddoc/view', got %s" % describe(name))
    return "_design/" + quote_segment(ddoc) + "/_view/" + quote_segment(view)


def _ddoc_name(ddoc: Any) -> str:
    if not isinstance(ddoc, str) or not ddoc:
        raise TypeError("a design document is named by a non-empty str")
    if ddoc.startswith("_design/"):
        ddoc = ddoc[len("_design/"):]
    if not ddoc:
        raise ValueError("the design document's name is empty")
    return ddoc


def _partition_path(partition: Any) -> str:
    if not isinstance(partition, str) or not partition:
        raise TypeError("a partition is named by a non-empty str")
    if partition.startswith("_"):
        raise ValueError("partition names cannot start with '_' (got %s)" % describe(partition))
    return "/_partition/" + quote_segment(partition)


#: The ``_find`` fields :func:`corduroy.mango._query` checks by name.
_FIND_FIELDS = ("fields", "sort", "limit", "skip", "bookmark", "use_index", "r", "conflicts", "update", "stable",
                "execution_stats")


def _partition_query(selector: Any, options: Dict[str, Any]) -> Dict[str, Any]:
    """The ``_find`` body for a partition query, checked as :meth:`find` checks its own."""
    known = {k: options[k] for k in _FIND_FIELDS if options.get(k) is not None}
    extra = {k: v for k, v in options.items() if k not in _FIND_FIELDS and v is not None}
    return mango_query(selector, extra=extra, **known)


def _chosen_rev(choice: Any, revs: List[str]) -> Optional[str]:
    if choice is None:
        return None
    rev = choice.get("_rev") if isinstance(choice, dict) else choice
    if not isinstance(rev, str) or rev not in revs:
        raise ValueError("choose returned %s, which is none of the leaf revisions %r" % (describe(rev), revs))
    return rev


@io_methods
class MaintenanceMixin:
    """Database methods: maintenance, revisions and conflicts, purge, ``_local`` docs and partitions."""

    if TYPE_CHECKING:  # provided by Database
        server: Server

        def _request(self, method: str, path: str = "", **kwargs: Any) -> Operation: ...

        def _run(self, gen: Generator[Any, Any, Any], callback: Callback) -> Any: ...

        def _rows_request(self, label: str, path: str, options: Dict[str, Any], allowed: frozenset,
                          callback: Callback, on_row: Any) -> Any: ...

    # -- maintenance ------------------------------------------------------
    @overload
    def cleanup(self, callback: None = None) -> Document: ...

    @overload
    def cleanup(self, callback: DataCallback[Document]) -> Operation[Document]: ...

    def cleanup(self, callback: Callback = None) -> Any:
        """Remove index files no design document uses any more (``_view_cleanup``); returns ``{ok: True}``."""
        return finish(self._request("POST", "/_view_cleanup", json={}), callback)

    @overload
    def commit(self, callback: None = None) -> Document: ...

    @overload
    def commit(self, callback: DataCallback[Document]) -> Operation[Document]: ...

    def commit(self, callback: Callback = None) -> Any:
        """Ask the server to commit recent changes to disk (``_ensure_full_commit``); returns ``{ok: True, ...}``.

        CouchDB 3 always commits at once and answers it for compatibility.
        """
        return finish(self._request("POST", "/_ensure_full_commit", json={}), callback)

    @overload
    def compact(self, ddoc: Optional[str] = None, callback: None = None) -> Document: ...

    @overload
    def compact(self, ddoc: Optional[str] = None, callback: DataCallback[Document] = ...) -> Operation[Document]: ...

    def compact(self, ddoc: Optional[str] = None, callback: Callback = None) -> Any:
        """Start compacting the database, or the view indexes of design document ``ddoc``; returns ``{ok: True}``.

        Compaction runs in the background on the server; the call returns
        once it has started (see the database's ``compact_running`` info).
        """
        path = "/_compact" if ddoc is None else "/_compact/" + quote_segment(_ddoc_name(ddoc))
        return finish(self._request("POST", path, json={}), callback)

    @overload
    def security(self, value: Optional[dict] = None, callback: None = None) -> Document: ...

    @overload
    def security(self, value: Optional[dict] = None, callback: DataCallback[Document] = ...) -> Operation[Document]: ...

    def security(self, value: Optional[dict] = None, callback: Callback = None) -> Any:
        """The database's security object; with ``value``, replace it and return the new one.

        >>> db.security({"members": {"roles": ["staff"]}})      # doctest: +SKIP
        """
        if value is None:
            return finish(self._request("GET", "/_security"), callback)
        if not isinstance(value, dict):
            raise TypeError("the security object is a dict, not %s" % type(value).__name__)
        written = Document(value)
        return finish(self._request("PUT", "/_security", json=value, what="security object",
                                    transform=lambda data, status: written), callback)

    # -- settings and layout ----------------------------------------------
    @overload
    def revs_limit(self, value: Optional[int] = None, callback: None = None) -> Union[IntResult, Document]: ...

    @overload
    def revs_limit(self, value: Optional[int] = None, callback: DataCallback[Union[int,
                   Document]] = ...) -> Operation[Union[int, Document]]: ...

    def revs_limit(self, value: Optional[int] = None, callback: Callback = None) -> Any:
        """How many revisions of each document the database remembers (``_revs_limit``, default 1000).

        Without ``value`` returns the number; with it, sets it and returns ``{ok: True}``.

        >>> db.revs_limit(100)                       # doctest: +SKIP
        {'ok': True}
        """
        return finish(self._setting("/_revs_limit", value), callback)

    @overload
    def purged_infos_limit(self, value: Optional[int] = None, callback: None = None) -> Union[IntResult, Document]: ...

    @overload
    def purged_infos_limit(self, value: Optional[int] = None, callback: DataCallback[Union[int,
                           Document]] = ...) -> Operation[Union[int, Document]]: ...

    def purged_infos_limit(self, value: Optional[int] = None, callback: Callback = None) -> Any:
        """How many purges the database remembers (``_purged_infos_limit``, CouchDB 2.3+, default 1000).

        Without ``value`` returns the number; with it, sets it and returns ``{ok: True}``.
        """
        return finish(self._setting("/_purged_infos_limit", value), callback)

    def _setting(self, path: str, value: Optional[int]) -> "Operation":
        if value is None:
            return self._request("GET", path)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("%s is a positive int, not %s" % (path[1:], type(value).__name__))
        if value < 1:
            raise ValueError("%s is a positive int, got %d" % (path[1:], value))
        return self._request("PUT", path, json=value)

    @overload
    def shards(self, doc_id: Optional[str] = None, callback: None = None) -> Document: ...

    @overload
    def shards(self, doc_id: Optional[str] = None, callback: DataCallback[Document] = ...) -> Operation[Document]: ...

    def shards(self, doc_id: Optional[str] = None, callback: Callback = None) -> Any:
        """Where the database's shards live (``_shards``, CouchDB 2+): ``{shards: {range: [nodes]}}``.

        With ``doc_id``, the shard that holds (or would hold) that document:
        ``{range, nodes}``.

        >>> db.shards("some-doc")["nodes"]            # doctest: +SKIP
        ['couchdb@127.0.0.1']
        """
        if doc_id is None:
            return finish(self._request("GET", "/_shards"), callback)
        if not isinstance(doc_id, str) or not doc_id:
            raise TypeError("shards takes a document id (a non-empty str), not %s" % describe(doc_id))
        return finish(self._request("GET", "/_shards/" + quote_segment(doc_id)), callback)

    # -- COPY -------------------------------------------------------------
    @overload
    def copy(self, source: Union[str, dict], dest: Union[str, dict], callback: None = None) -> Document: ...

    @overload
    def copy(self, source: Union[str, dict], dest: Union[str, dict],
             callback: DataCallback[Document]) -> Operation[Document]: ...

    def copy(self, source: Union[str, dict], dest: Union[str, dict], callback: Callback = None) -> Any:
        """Copy document ``source`` to ``dest``; returns ``{id, rev}`` of the destination.

        ``source`` is an id or a ``{_id, _rev}`` dict (that revision is
        copied).  ``dest`` is a new id, or an existing document's
        ``{_id, _rev}`` to overwrite it; raises Conflict when ``dest`` exists
        and no current ``_rev`` was given.  (``rev`` is None only if the
        server neither named the new revision nor shows the copy under
        ``dest``'s id.)
        """
        source_id, source_rev = _id_and_rev(source, "the COPY source")
        check_doc_id(source_id)
        destination = copy_destination(dest)
        dest_id, _ = _id_and_rev(dest, "the COPY destination")
        return self._run(self._copy(source_id, source_rev, dest_id, destination), callback)

    def _copy(self, source_id: str, source_rev: Optional[str], dest_id: str,
              destination: str) -> Generator[Any, Any, Document]:
        def answer(data: Any, status: Status) -> Document:
            rev = data.get("rev") if isinstance(data, dict) else None
            if rev is None:
                # CouchDB also names it in the ETag; a weak or other ETag is no rev.
                match = _REV_ETAG.match(status.headers.get("Etag", ""))
                rev = match.group(1) if match else None
            return Document(id=(data or {}).get("id") or dest_id, rev=rev)

        headers = self.server.headers_with("Destination: " + destination)
        params = {"rev": source_rev} if source_rev else None
        result = yield self._request("COPY", "/" + doc_path(source_id), params=params, headers=headers,
                                     transform=answer)
        if result.rev is None:
            # The server said ok without naming the new revision (pouchdb-server does): ask for it.
            try:
                doc = yield self._request("GET", "/" + doc_path(dest_id))
            except NotFound:
                log.warning("COPY to %s succeeded but the server named no revision and has no such "
                            "document (does it decode the Destination header?)", describe(dest_id))
            else:
                result.rev = doc["_rev"]
        return result

    # -- revisions and conflicts ------------------------------------------
    @overload
    def revisions(self, id: str, callback: None = None, **options: Any) -> ListResult[str]: ...

    @overload
    def revisions(self, id: str, callback: DataCallback[List[str]], **options: Any) -> Operation[List[str]]: ...

    def revisions(self, id: str, callback: Callback = None, **options: Any) -> Any:
        """The available revisions (``_rev`` strings) of document ``id``, newest first.

        Revisions whose bodies were compacted away are left out; raises
        NotFound for a missing document.
        """
        if not isinstance(id, str) or not id:
            raise TypeError("document ids are non-empty strings, got %s" % describe(id))
        params = dict(options)
        params["revs_info"] = True

        def available(data: Any, status: Status) -> List[str]:
            return [info["rev"] for info in data.get("_revs_info", []) if info.get("status") == "available"]

        return finish(self._request("GET", "/" + doc_path(id), params=params, transform=available), callback)

    @overload
    def conflicts(self, id: str, callback: None = None) -> ListResult[str]: ...

    @overload
    def conflicts(self, id: str, callback: DataCallback[List[str]]) -> Operation[List[str]]: ...

    def conflicts(self, id: str, callback: Callback = None) -> Any:
        """The conflicting revisions of document ``id`` (the losing leaves), empty when it has none."""
        if not isinstance(id, str) or not id:
            raise TypeError("document ids are non-empty strings, got %s" % describe(id))
        return finish(self._request("GET", "/" + doc_path(id), params={"conflicts": True},
                                    transform=lambda data, status: list(data.get("_conflicts", []))), callback)

    @overload
    def resolve_conflicts(self, id: str, choose: Optional[Chooser] = None, callback: None = None) -> Document: ...

    @overload
    def resolve_conflicts(self, id: str, choose: Optional[Chooser] = None,
                          callback: DataCallback[Document] = ...) -> Operation[Document]: ...

    def resolve_conflicts(self, id: str, choose: Optional[Chooser] = None, callback: Callback = None) -> Any:
        """Resolve document ``id``'s conflicts: keep one leaf revision and delete the others.

        Without ``choose`` the current winner is kept.  ``choose(docs)`` gets
        the winning document and every conflicting revision (Documents, the
        winner first) and returns the one to keep (or its ``_rev``); a
        returned document whose content was changed is saved as the next
        revision of that branch.  Returning None leaves everything as it is.
        The losers are deleted in one ``_bulk_docs`` request.  Returns
        ``{id, kept, rev, deleted, errors}``: the kept leaf, the document's
        current rev afterwards, the deleted revs, and ``{rev: error}`` for
        any the server refused.
        """
        if not isinstance(id, str) or not id:
            raise TypeError("document ids are non-empty strings, got %s" % describe(id))
        check_doc_id(id)
        if choose is not None and not callable(choose):
            raise TypeError("choose must be a function of the list of conflicting documents")
        return self._run(self._resolve_conflicts(id, choose), callback)

    def _resolve_conflicts(self, doc_id: str, choose: Optional[Chooser]) -> Generator[Any, Any, Document]:
        path = "/" + doc_path(doc_id)
        winner = yield self._request("GET", path, params={"conflicts": True})
        losers = list(winner.get("_conflicts", []))
        winner.pop("_conflicts", None)
        summary = Document(id=doc_id, kept=winner["_rev"], rev=winner["_rev"], deleted=[], errors={})
        if not losers:
            return summary
        leaves = [winner["_rev"]] + losers
        replacement: Optional[dict] = None
        if choose is not None:
            found = yield self._request("GET", path, params={"open_revs": losers})
            docs = [winner] + [item["ok"] for item in found if "ok" in item]
            by_rev = {doc["_rev"]: doc.copy() for doc in docs}
            choice = choose(docs)
            kept = _chosen_rev(choice, leaves)
            if kept is None:
                summary.kept = None
                return summary
            if isinstance(choice, dict) and dict(choice) != dict(by_rev[kept]):
                replacement = dict(choice)
                replacement["_id"] = doc_id
        else:
            kept = winner["_rev"]
        summary.kept = kept
        to_delete = [rev for rev in leaves if rev != kept]
        body: List[dict] = [{"_id": doc_id, "_rev": rev, "_deleted": True} for rev in to_delete]
        if replacement is not None:
            body.append(replacement)
        results = yield self._request("POST", "/_bulk_docs", json={"docs": body}, what="documents")
        for item, row in zip(body, results):
            if row.get("error") is not None:
                summary.errors[item["_rev"]] = Document(error=row.get("error"), reason=row.get("reason"))
            elif item.get("_deleted"):
                summary.deleted.append(item["_rev"])
            else:
                summary.rev = row.get("rev")
        if replacement is None:
            summary.rev = kept
        return summary

    # -- purge and replication helpers ------------------------------------
    @overload
    def purge(self, docs: Union[List[dict], Dict[str, List[str]]], callback: None = None) -> Document: ...

    @overload
    def purge(self, docs: Union[List[dict], Dict[str, List[str]]],
              callback: DataCallback[Document]) -> Operation[Document]: ...

    def purge(self, docs: Union[List[dict], Dict[str, List[str]]], callback: Callback = None) -> Any:
        """Remove revisions completely, leaving no tombstone (``_purge``); returns ``{purge_seq, purged}``.

        ``docs`` is a list of ``{_id, _rev}`` dicts or a dict
        ``{id: [rev, ...]}``.  Purged revisions do not replicate: think twice.
        """
        body = _purge_map(docs)
        return finish(self._request("POST", "/_purge", json=body, what="purge request"), callback)

    @overload
    def revs_diff(self, revs: Dict[str, List[str]], callback: None = None) -> Document: ...

    @overload
    def revs_diff(self, revs: Dict[str, List[str]], callback: DataCallback[Document]) -> Operation[Document]: ...

    def revs_diff(self, revs: Dict[str, List[str]], callback: Callback = None) -> Any:
        """Which of ``revs`` (``{id: [rev, ...]}``) the database lacks: ``{id: {missing: [...], ...}}``."""
        body = _revs_map(revs, "revs_diff")
        return finish(self._request("POST", "/_revs_diff", json=body, what="revisions"), callback)

    @overload
    def missing_revs(self, revs: Dict[str, List[str]], callback: None = None) -> DictResult: ...

    @overload
    def missing_revs(self, revs: Dict[str, List[str]], callback: DataCallback[Dict[str, Any]]) -> Operation[Dict[str,
                     Any]]: ...

    def missing_revs(self, revs: Dict[str, List[str]], callback: Callback = None) -> Any:
        """Which of ``revs`` (``{id: [rev, ...]}``) the database lacks: ``{id: [rev, ...]}``."""
        body = _revs_map(revs, "missing_revs")
        return finish(self._request("POST", "/_missing_revs", json=body, what="revisions",
                                    transform=lambda data, status: data.get("missing_revs", {})), callback)

    @overload
    def bulk_get(self, docs: List[Union[str, dict]], revs: Optional[bool] = None, callback: None = None,
                 **options: Any) -> ListResult[Document]: ...

    @overload
    def bulk_get(self, docs: List[Union[str, dict]], revs: Optional[bool] = None,
                 callback: DataCallback[List[Document]] = ...,
                 **options: Any) -> Operation[List[Document]]: ...

    def bulk_get(self, docs: List[Union[str, dict]], revs: Optional[bool] = None, callback: Callback = None,
                 **options: Any) -> Any:
        """Fetch many documents (or given revisions) in one ``_bulk_get`` request.

        ``docs`` holds ids or ``{id, rev}`` dicts (``{_id, _rev}`` works too).
        Returns one entry per result, in order:
        ``{id, docs: [Document, ...], errors: [{id, rev, error, reason}, ...]}``;
        a missing document shows up in ``errors``, a conflicted one may have
        several ``docs``.  ``revs=True`` adds each doc's ``_revisions``;
        options: ``attachments``, ``latest``.
        """
        body = {"docs": _bulk_get_entries(docs)}
        params = dict(options)
        if revs is not None:
            params["revs"] = bool(revs)
        return finish(self._request("POST", "/_bulk_get", params=params or None, json=body, what="documents",
                                    transform=_bulk_get_results), callback)

    # -- local documents ----------------------------------------------------
    @overload
    def get_local(self, id: str, callback: None = None) -> Document: ...

    @overload
    def get_local(self, id: str, callback: DataCallback[Document]) -> Operation[Document]: ...

    def get_local(self, id: str, callback: Callback = None) -> Any:
        """The ``_local`` document ``id`` (with or without the ``_local/`` prefix); raises NotFound.

        Local documents do not replicate and appear in no ``_all_docs`` or
        ``_changes``.  ``get``/``save``/``delete`` with a ``_local/...`` id
        work as well.
        """
        return finish(self._request("GET", "/" + doc_path(_local_id(id))), callback)

    @overload
    def save_local(self, doc: dict, callback: None = None) -> Document: ...

    @overload
    def save_local(self, doc: dict, callback: DataCallback[Document]) -> Operation[Document]: ...

    def save_local(self, doc: dict, callback: Callback = None) -> Any:
        """Create or update a ``_local`` document; returns ``{ok, id, rev}``.

        The doc's ``_id`` gets the ``_local/`` prefix if it lacks it, and its
        ``_rev`` is updated in place.  Apache CouchDB 3 keeps ``_local``
        documents last-write-wins (a stale ``_rev`` overwrites); servers that
        check the ``_rev`` (pouchdb-server) raise Conflict.
        """
        if not isinstance(doc, dict):
            raise TypeError("save_local takes a dict, not %s" % type(doc).__name__)
        if not doc.get("_id"):
            raise ValueError("a local document needs an _id")
        full_id = _local_id(doc["_id"])
        from . import codec

        body = dict(doc, _id=full_id)
        codec.encode(body, "document %s" % describe(full_id))

        def applied(data: Any, status: Status) -> Any:
            doc["_id"] = full_id
            if isinstance(data, dict) and data.get("rev"):
                doc["_rev"] = data["rev"]
            return data

        return finish(self._request("PUT", "/" + doc_path(full_id), json=body, what="document %s" % describe(full_id),
                                    transform=applied), callback)

    @overload
    def delete_local(self, doc: Union[str, dict], callback: None = None) -> Document: ...

    @overload
    def delete_local(self, doc: Union[str, dict], callback: DataCallback[Document]) -> Operation[Document]: ...

    def delete_local(self, doc: Union[str, dict], callback: Callback = None) -> Any:
        """Delete a ``_local`` document (a dict with ``_id`` and ``_rev``, or an id); returns ``{ok, id, rev}``."""
        doc_id, rev = _id_and_rev(doc, "delete_local")
        params = {"rev": rev} if rev else None
        return finish(self._request("DELETE", "/" + doc_path(_local_id(doc_id)), params=params), callback)

    # -- partitions ---------------------------------------------------------
    @overload
    def partition_info(self, partition: str, callback: None = None) -> Document: ...

    @overload
    def partition_info(self, partition: str, callback: DataCallback[Document]) -> Operation[Document]: ...

    def partition_info(self, partition: str, callback: Callback = None) -> Any:
        """Information about one partition of a partitioned database (doc counts, sizes)."""
        return finish(self._request("GET", _partition_path(partition)), callback)

    @overload
    def partition_all_docs(self, partition: str, callback: None = None, **options: Any) -> View: ...

    @overload
    def partition_all_docs(self, partition: str, callback: DataCallback[View], **options: Any) -> Operation[View]: ...

    def partition_all_docs(self, partition: str, callback: Callback = None, **options: Any) -> Any:
        """``_all_docs`` of one partition: a :class:`~corduroy.views.View`, as :meth:`all_docs` returns."""
        path = _partition_path(partition) + "/_all_docs"
        return self._rows_request("_all_docs", path, options, ALL_DOCS_OPTIONS, callback, None)

    @overload
    def partition_view(self, partition: str, name: str, callback: None = None, **options: Any) -> View: ...

    @overload
    def partition_view(self, partition: str, name: str, callback: DataCallback[View],
                       **options: Any) -> Operation[View]: ...

    def partition_view(self, partition: str, name: str, callback: Callback = None, **options: Any) -> Any:
        """Query view ``name`` (``"ddoc/view"``) in one partition: a :class:`~corduroy.views.View`, as :meth:`view`."""
        path = _partition_path(partition) + "/" + _view_path(name)
        return self._rows_request(name, path, options, VIEW_OPTIONS, callback, None)

    @overload
    def partition_find(self, partition: str, selector: dict, fields: Optional[List[str]] = None,
                       sort: Optional[List[Any]] = None, limit: Optional[int] = None, skip: Optional[int] = None,
                       callback: None = None, **options: Any) -> FindResult: ...

    @overload
    def partition_find(self, partition: str, selector: dict, fields: Optional[List[str]] = None,
                       sort: Optional[List[Any]] = None, limit: Optional[int] = None, skip: Optional[int] = None,
                       callback: DataCallback[FindResult] = ..., **options: Any) -> Operation[FindResult]: ...

    def partition_find(self, partition: str, selector: dict, fields: Optional[List[str]] = None,
                       sort: Optional[List[Any]] = None, limit: Optional[int] = None, skip: Optional[int] = None,
                       callback: Callback = None, **options: Any) -> Any:
        """A Mango query over one partition (``_find``): a :class:`~corduroy.mango.FindResult`, as :meth:`find`.

        Other ``_find`` fields (``use_index``, ``bookmark``, ``execution_stats``...)
        go in ``options``.
        """
        path = _partition_path(partition) + "/_find"
        body = _partition_query(selector, dict(options, fields=fields, sort=sort, limit=limit, skip=skip))
        return finish(self._request("POST", path, json=body, what="query", transform=_find_result), callback)

    def partition_iter_all_docs(self, partition: str, page_size: int = 1000, **options: Any) -> Pager:
        """A :class:`~corduroy.views.Pager` over one partition's ``_all_docs`` (as :meth:`iter_all_docs`)."""
        return Pager(self, "_all_docs", _partition_path(partition) + "/_all_docs", page_size, options,
                     all_docs=True)

    def partition_iterview(self, partition: str, name: str, page_size: int = 1000, **options: Any) -> Pager:
        """A :class:`~corduroy.views.Pager` over view ``name`` in one partition (as :meth:`iterview`)."""
        return Pager(self, name, _partition_path(partition) + "/" + _view_path(name), page_size, options,
                     all_docs=False)

    def partition_iterfind(self, partition: str, selector: dict, page_size: int = 100,
                           **options: Any) -> FindPager:
        """A :class:`~corduroy.mango.FindPager` over a Mango query in one partition (as :meth:`iterfind`)."""
        if "callback" in options:
            raise TypeError("partition_iterfind takes no callback: iterate over the pager, or call "
                            "pager.next_page(callback=...)")
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise ValueError("page_size is a positive int, not %s" % describe(page_size))
        path = _partition_path(partition) + "/_find"
        query = _partition_query(selector, options)
        return FindPager(self, query, page_size, path=path)

