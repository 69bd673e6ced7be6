"""Mango queries: ``_find``, ``_index``, ``_explain``, and paging through results.

:meth:`MangoMixin.find` runs one query and returns a :class:`FindResult`;
:meth:`MangoMixin.iterfind` returns a :class:`FindPager` that fetches page
after page by bookmark (never by ``skip``, which gets slower with every
page).  :meth:`~MangoMixin.index`, :meth:`~MangoMixin.indexes` and
:meth:`~MangoMixin.delete_index` manage the indexes queries use, and
:meth:`~MangoMixin.explain` tells which one a query would use.

Example::

    db.index(["age"], ddoc="people", name="by-age")
    result = db.find({"age": {"$gt": 30}}, sort=["age"], limit=10)
    for doc in result:
        print(doc.name, doc.age)
    for doc in db.iterfind({"type": "person"}, page_size=500):
        ...
"""
from __future__ import annotations

from typing import (
    TYPE_CHECKING, Any, AsyncIterator, Callable, Dict, Generator, Iterator, List, Optional, Sequence, Tuple, Union,
    overload,
)

from loop import Operation, Status, get_reactor, trampoline
from loop.redact import describe, type_name

from .contract import io_methods
from .http import CouchOperation, finish
from .results import DataCallback, ListResult
from .streaming import stream_rows
from .urls import quote_segment

if TYPE_CHECKING:  # pragma: no cover
    from .document import Document

__all__ = ["MangoMixin", "FindResult", "FindPager"]

Callback = Optional[Callable[[Any, Status], Any]]
Selector = Dict[str, Any]
SortSpec = Sequence[Union[str, Dict[str, str]]]

#: Default number of documents per page for :meth:`MangoMixin.iterfind`.
PAGE_SIZE = 100

_DESIGN = "_design/"


class FindResult:
    """The answer to a Mango query: its documents and the server's notes about it.

    Iterating over it (or ``len``, indexing) goes over ``docs``.  ``bookmark``
    lets a later query carry on where this one stopped; ``warning`` is the
    server's advice (for example, that no index matched); ``execution_stats``
    is there when the query asked for it.

    >>> result = FindResult([{"_id": "a"}], bookmark="g1AAAA")
    >>> len(result), result[0]["_id"], result.bookmark
    (1, 'a', 'g1AAAA')
    """

    __slots__ = ("docs", "bookmark", "warning", "execution_stats")

    if TYPE_CHECKING:  # pragma: no cover
        def __await__(self) -> Generator[Any, None, FindResult]:
            """For type checkers only (nothing at run time): see :mod:`corduroy.results`."""

    def __init__(self, docs: Optional[List[Any]] = None, bookmark: Optional[str] = None,
                 warning: Optional[str] = None, execution_stats: Optional[Dict[str, Any]] = None) -> None:
        #: The documents (:class:`~corduroy.document.Document`); empty when they went to ``on_doc``.
        self.docs: List[Any] = docs if docs is not None else []
        self.bookmark = bookmark
        self.warning = warning
        self.execution_stats = execution_stats

    @classmethod
    def from_answer(cls, data: Any) -> "FindResult":
        """Build one from the decoded body of a ``_find`` answer."""
        if not isinstance(data, dict):
            raise TypeError("a _find answer is a JSON object, not %s" % type(data).__name__)
        return cls(data.get("docs") or [], data.get("bookmark"), data.get("warning"),
                   data.get("execution_stats"))

    def __iter__(self) -> Iterator[Any]:
        return iter(self.docs)

    def __len__(self) -> int:
        return len(self.docs)

    def __getitem__(self, index: Any) -> Any:
        return self.docs[index]

    def __repr__(self) -> str:
        extra = " bookmark=%r" % self.bookmark if self.bookmark else ""
        return "<FindResult %d docs%s>" % (len(self.docs), extra)


def _find_result(data: Any, status: Status) -> FindResult:
    return FindResult.from_answer(data)


# -- validation ----------------------------------------------------------

def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError("%s must be True or False, got %s" % (name, describe(value)))


def _check_count(name: str, value: Any, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("%s must be an int, got %s" % (name, describe(value)))
    if value < minimum:
        raise ValueError("%s must be at least %d, got %d" % (name, minimum, value))


def _check_selector(selector: Any) -> None:
    if not isinstance(selector, dict):
        raise TypeError("a Mango selector is a dict (for example {\"type\": \"person\"}), not %s"
                        % type(selector).__name__)


def _check_fields(fields: Any) -> List[str]:
    if not isinstance(fields, (list, tuple)):
        raise TypeError("fields must be a list of field names, not %s" % type(fields).__name__)
    for field in fields:
        if not isinstance(field, str) or not field:
            raise TypeError("fields must be non-empty strs, got %s" % describe(field))
    return list(fields)


def _check_sort(sort: Any) -> List[Any]:
    if not isinstance(sort, (list, tuple)):
        raise TypeError('sort must be a list such as ["age"] or [{"age": "desc"}], not %s'
                        % type(sort).__name__)
    for item in sort:
        if isinstance(item, str) and item:
            continue
        if isinstance(item, dict) and len(item) == 1:
            (field, direction), = item.items()
            if isinstance(field, str) and field and direction in ("asc", "desc"):
                continue
        raise TypeError('each sort item is a field name or {"field": "asc" | "desc"}, got %s' % describe(item))
    return list(sort)


def _check_use_index(use_index: Any) -> Any:
    if isinstance(use_index, str) and use_index:
        return use_index
    if isinstance(use_index, (list, tuple)) and 1 <= len(use_index) <= 2 \
            and all(isinstance(part, str) and part for part in use_index):
        return list(use_index)
    raise TypeError('use_index is a design document name, or ["ddoc", "index-name"], got %s' % describe(use_index))


def _query(selector: Any, fields: Any = None, sort: Any = None, limit: Any = None, skip: Any = None,
           bookmark: Any = None, use_index: Any = None, r: Any = None, conflicts: Any = None,
           update: Any = None, stable: Any = None, execution_stats: Any = None,
           extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The JSON body of a ``_find`` / ``_explain`` request; raises on a bad argument."""
    _check_selector(selector)
    body: Dict[str, Any] = {"selector": selector}
    if fields is not None:
        body["fields"] = _check_fields(fields)
    if sort is not None:
        body["sort"] = _check_sort(sort)
    if limit is not None:
        _check_count("limit", limit)
        body["limit"] = limit
    if skip is not None:
        _check_count("skip", skip)
        body["skip"] = skip
    if bookmark is not None:
        if not isinstance(bookmark, str):
            raise TypeError("bookmark must be the str a previous query returned, got %s" % describe(bookmark))
        body["bookmark"] = bookmark
    if use_index is not None:
        body["use_index"] = _check_use_index(use_index)
    if r is not None:
        _check_count("r", r, 1)
        body["r"] = r
    for name, value in (("conflicts", conflicts), ("update", update), ("stable", stable),
                        ("execution_stats", execution_stats)):
        if value is not None:
            _check_bool(name, value)
            body[name] = value
    if extra:
        for key, value in extra.items():
            if key in body:  # pragma: no cover - named arguments cannot repeat
                raise TypeError("%s given twice" % key)
            body[key] = value
    return body


def _bare_ddoc(ddoc: Any) -> str:
    if not isinstance(ddoc, str) or not ddoc:
        raise TypeError("a design document is named by a non-empty str, got %s" % describe(ddoc))
    if ddoc.startswith(_DESIGN):
        ddoc = ddoc[len(_DESIGN):]
        if not ddoc:
            raise ValueError("the design document name is empty")
    return ddoc


# -- the mixin -------------------------------------------------------------

@io_methods
class MangoMixin:
    """Database methods: Mango queries (``_find``), their indexes (``_index``) and ``_explain``."""

    # Provided by Database.
    _request: Callable[..., Operation]
    _run: Callable[..., Any]

    @overload
    def find(
        self,
        selector: Selector,
        fields: Optional[Sequence[str]] = None,
        sort: Optional[SortSpec] = None,
        limit: Optional[int] = None,
        skip: Optional[int] = None,
        bookmark: Optional[str] = None,
        use_index: Optional[Union[str, Sequence[str]]] = None,
        r: Optional[int] = None,
        conflicts: Optional[bool] = None,
        update: Optional[bool] = None,
        stable: Optional[bool] = None,
        execution_stats: Optional[bool] = None,
        callback: None = None,
        on_doc: Optional[Callable[[Any], Any]] = None,
        **extra: Any,
    ) -> FindResult: ...

    @overload
    def find(
        self,
        selector: Selector,
        fields: Optional[Sequence[str]] = None,
        sort: Optional[SortSpec] = None,
        limit: Optional[int] = None,
        skip: Optional[int] = None,
        bookmark: Optional[str] = None,
        use_index: Optional[Union[str, Sequence[str]]] = None,
        r: Optional[int] = None,
        conflicts: Optional[bool] = None,
        update: Optional[bool] = None,
        stable: Optional[bool] = None,
        execution_stats: Optional[bool] = None,
        callback: DataCallback[FindResult] = ...,
        on_doc: Optional[Callable[[Any], Any]] = None,
        **extra: Any,
    ) -> Operation[FindResult]: ...

    def find(
        self,
        selector: Selector,
        fields: Optional[Sequence[str]] = None,
        sort: Optional[SortSpec] = None,
        limit: Optional[int] = None,
        skip: Optional[int] = None,
        bookmark: Optional[str] = None,
        use_index: Optional[Union[str, Sequence[str]]] = None,
        r: Optional[int] = None,
        conflicts: Optional[bool] = None,
        update: Optional[bool] = None,
        stable: Optional[bool] = None,
        execution_stats: Optional[bool] = None,
        callback: Callback = None,
        on_doc: Optional[Callable[[Any], Any]] = None,
        **extra: Any,
    ) -> Any:
        """Run a Mango query (``POST /db/_find``); returns a :class:`FindResult`.

        ``selector`` is the Mango selector; ``fields`` the fields to return;
        ``sort`` a list of field names or ``{"field": "desc"}`` (sorting needs
        an index on those fields); ``limit``, ``skip``, ``bookmark`` (from a
        previous result), ``use_index``, ``r``, ``conflicts``, ``update``,
        ``stable`` and ``execution_stats`` are CouchDB's; other keyword
        arguments go into the request body as they are.

        With ``on_doc=fn`` the answer is streamed: ``fn(doc)`` is called for
        each document as it arrives, and the result's ``docs`` stays empty.
        An exception raised by ``fn`` stops the transfer and is raised by
        the call (or reported to its callback).
        """
        body = _query(selector, fields, sort, limit, skip, bookmark, use_index, r, conflicts, update,
                      stable, execution_stats, extra)
        if on_doc is None:
            return finish(self._request("POST", "/_find", json=body, transform=_find_result), callback)
        if not callable(on_doc):
            raise TypeError("on_doc must be callable, got %s" % type_name(on_doc))
        if callback is not None and not callable(callback):
            raise TypeError("callback must be callable, got %s" % type_name(callback))
        return self._run(self._find_streamed(body, on_doc), callback)

    def _find_streamed(self, body: Dict[str, Any], on_doc: Callable[[Any], Any]) -> Generator[Any, Any, FindResult]:
        fields = yield stream_rows(self, "POST", "/_find", json=body, on_row=on_doc, array="docs")
        return FindResult([], fields.get("bookmark"), fields.get("warning"), fields.get("execution_stats"))

    def iterfind(
        self,
        selector: Selector,
        page_size: int = PAGE_SIZE,
        fields: Optional[Sequence[str]] = None,
        sort: Optional[SortSpec] = None,
        limit: Optional[int] = None,
        skip: Optional[int] = None,
        bookmark: Optional[str] = None,
        use_index: Optional[Union[str, Sequence[str]]] = None,
        r: Optional[int] = None,
        conflicts: Optional[bool] = None,
        update: Optional[bool] = None,
        stable: Optional[bool] = None,
        execution_stats: Optional[bool] = None,
        **extra: Any,
    ) -> "FindPager":
        """A :class:`FindPager` over every document matching ``selector``, ``page_size`` at a time.

        No I/O happens here.  Options are those of :meth:`find`; ``limit``
        caps the total number of documents, ``skip`` applies once, before the
        first page, and ``bookmark`` starts from an earlier position.
        """
        for name in ("callback", "on_doc"):
            if name in extra:
                raise TypeError("iterfind takes no %s: iterate over the pager, or call "
                                "pager.next_page(callback=...)" % name)
        _check_count("page_size", page_size, 1)
        query = _query(selector, fields, sort, limit, skip, bookmark, use_index, r, conflicts, update,
                       stable, execution_stats, extra)
        return FindPager(self, query, page_size)

    @overload
    def explain(
        self,
        selector: Selector,
        fields: Optional[Sequence[str]] = None,
        sort: Optional[SortSpec] = None,
        limit: Optional[int] = None,
        skip: Optional[int] = None,
        bookmark: Optional[str] = None,
        use_index: Optional[Union[str, Sequence[str]]] = None,
        r: Optional[int] = None,
        conflicts: Optional[bool] = None,
        update: Optional[bool] = None,
        stable: Optional[bool] = None,
        execution_stats: Optional[bool] = None,
        callback: None = None,
        **extra: Any,
    ) -> Document: ...

    @overload
    def explain(
        self,
        selector: Selector,
        fields: Optional[Sequence[str]] = None,
        sort: Optional[SortSpec] = None,
        limit: Optional[int] = None,
        skip: Optional[int] = None,
        bookmark: Optional[str] = None,
        use_index: Optional[Union[str, Sequence[str]]] = None,
        r: Optional[int] = None,
        conflicts: Optional[bool] = None,
        update: Optional[bool] = None,
        stable: Optional[bool] = None,
        execution_stats: Optional[bool] = None,
        callback: DataCallback[Document] = ...,
        **extra: Any,
    ) -> Operation[Document]: ...

    def explain(
        self,
        selector: Selector,
        fields: Optional[Sequence[str]] = None,
        sort: Optional[SortSpec] = None,
        limit: Optional[int] = None,
        skip: Optional[int] = None,
        bookmark: Optional[str] = None,
        use_index: Optional[Union[str, Sequence[str]]] = None,
        r: Optional[int] = None,
        conflicts: Optional[bool] = None,
        update: Optional[bool] = None,
        stable: Optional[bool] = None,
        execution_stats: Optional[bool] = None,
        callback: Callback = None,
        **extra: Any,
    ) -> Any:
        """How the server would run a query (``POST /db/_explain``): the index it picks, the range...

        Takes the arguments of :meth:`find`; returns the server's answer (its
        ``index`` member describes the chosen index).
        """
        body = _query(selector, fields, sort, limit, skip, bookmark, use_index, r, conflicts, update,
                      stable, execution_stats, extra)
        return finish(self._request("POST", "/_explain", json=body), callback)

    @overload
    def index(
        self,
        fields: Sequence[Union[str, Dict[str, str]]],
        ddoc: Optional[str] = None,
        name: Optional[str] = None,
        type: str = "json",
        partial_filter_selector: Optional[Selector] = None,
        partitioned: Optional[bool] = None,
        callback: None = None,
    ) -> Document: ...

    @overload
    def index(
        self,
        fields: Sequence[Union[str, Dict[str, str]]],
        ddoc: Optional[str] = None,
        name: Optional[str] = None,
        type: str = "json",
        partial_filter_selector: Optional[Selector] = None,
        partitioned: Optional[bool] = None,
        callback: DataCallback[Document] = ...,
    ) -> Operation[Document]: ...

    def index(
        self,
        fields: Sequence[Union[str, Dict[str, str]]],
        ddoc: Optional[str] = None,
        name: Optional[str] = None,
        type: str = "json",
        partial_filter_selector: Optional[Selector] = None,
        partitioned: Optional[bool] = None,
        callback: Callback = None,
    ) -> Any:
        """Create a Mango index on ``fields`` (``POST /db/_index``).

        ``fields`` is a list of field names (or ``{"field": "asc"}`` items;
        for a ``type="text"`` index, ``{"name": ..., "type": ...}``).
        ``ddoc`` (with or without ``_design/``) and ``name`` default to
        server-generated ones.  Returns the server's answer: ``result``
        (``"created"`` or ``"exists"``), ``id`` (the design document) and
        ``name``.
        """
        if not isinstance(fields, (list, tuple)) or not fields:
            raise TypeError("fields must be a non-empty list of field names, got %s" % describe(fields))
        for field in fields:
            if not ((isinstance(field, str) and field) or (isinstance(field, dict) and field)):
                raise TypeError("index fields are field names or dicts, got %s" % describe(field))
        definition: Dict[str, Any] = {"fields": list(fields)}
        if partial_filter_selector is not None:
            _check_selector(partial_filter_selector)
            definition["partial_filter_selector"] = partial_filter_selector
        if not isinstance(type, str) or not type:
            raise TypeError("type is an index type such as \"json\" or \"text\", got %s" % describe(type))
        body: Dict[str, Any] = {"index": definition, "type": type}
        if ddoc is not None:
            body["ddoc"] = _bare_ddoc(ddoc)
        if name is not None:
            if not isinstance(name, str) or not name:
                raise TypeError("name must be a non-empty str, got %s" % describe(name))
            body["name"] = name
        if partitioned is not None:
            _check_bool("partitioned", partitioned)
            body["partitioned"] = partitioned
        return finish(self._request("POST", "/_index", json=body), callback)

    @overload
    def indexes(self, callback: None = None) -> ListResult[Document]: ...

    @overload
    def indexes(self, callback: DataCallback[List[Document]]) -> Operation[List[Document]]: ...

    def indexes(self, callback: Callback = None) -> Any:
        """The database's Mango indexes (``GET /db/_index``): a list of dicts.

        Each has ``ddoc``, ``name``, ``type`` and ``def``; the first is the
        built-in ``_all_docs`` index (``type`` ``"special"``).
        """
        return finish(self._request("GET", "/_index", transform=_index_list), callback)

    @overload
    def delete_index(self, ddoc: str, name: str, type: str = "json", callback: None = None) -> Document: ...

    @overload
    def delete_index(self, ddoc: str, name: str, type: str = "json",
                     callback: DataCallback[Document] = ...) -> Operation[Document]: ...

    def delete_index(self, ddoc: str, name: str, type: str = "json", callback: Callback = None) -> Any:
        """Delete a Mango index (``DELETE /db/_index/{ddoc}/{type}/{name}``); returns ``{"ok": true}``.

        ``ddoc`` may be given with or without ``_design/``.  Raises NotFound
        if there is no such index.
        """
        bare = _bare_ddoc(ddoc)
        for label, value in (("name", name), ("type", type)):
            if not isinstance(value, str) or not value:
                raise TypeError("%s must be a non-empty str, got %s" % (label, describe(value)))
        path = "/_index/%s/%s/%s" % (quote_segment(_DESIGN + bare), quote_segment(type), quote_segment(name))
        return finish(self._request("DELETE", path), callback)


def _index_list(data: Any, status: Status) -> List[Any]:
    return list(data.get("indexes") or [])


# -- paging ----------------------------------------------------------------

def _split_path(field: str) -> List[str]:
    """A Mango field path as its parts: ``"a.b"`` -> ``["a", "b"]``; ``"a\\.b"`` is one name."""
    parts: List[str] = []
    current: List[str] = []
    escaped = False
    for ch in field:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


_MISSING = object()


def _get_path(doc: Any, parts: List[str]) -> Any:
    for part in parts:
        if not isinstance(doc, dict) or part not in doc:
            return _MISSING
        doc = doc[part]
    return doc


def _drop_path(doc: Any, parts: List[str]) -> None:
    """Remove the field at ``parts`` from ``doc``, and the objects it leaves empty."""
    trail = []
    for part in parts[:-1]:
        child = doc.get(part) if isinstance(doc, dict) else None
        if not isinstance(child, dict):
            return
        trail.append((doc, part))
        doc = child
    if isinstance(doc, dict):
        doc.pop(parts[-1], None)
    for parent, part in reversed(trail):
        if parent[part]:
            break
        del parent[part]


def _covers(requested: List[List[str]], parts: List[str]) -> bool:
    """True if a projection on ``requested`` paths returns the field at ``parts``."""
    return any(parts[:len(path)] == path for path in requested)


class _Keyset:
    """Paging without bookmarks: each page asks for what sorts after the last one seen.

    For servers that return no bookmark (pouchdb-server).  The sort order
    is the query's own sort, or ``_id``; the next page's selector is the
    query's, AND "sort key after the last one", OR "same sort key and a
    document id not seen yet" (so ties in the sort key, in whatever order
    the server returns them, are neither lost nor repeated).
    """

    def __init__(self, query: Dict[str, Any]) -> None:
        sort = query.get("sort")
        self.order: List[Tuple[str, List[str], str]] = []
        for item in sort or [{"_id": "asc"}]:
            field, direction = (item, "asc") if isinstance(item, str) else next(iter(item.items()))
            self.order.append((field, _split_path(field), "$lt" if direction == "desc" else "$gt"))
        self.sort = sort if sort else ["_id"]
        self.by_id_only = [field for field, _, _ in self.order] == ["_id"]
        self.added: List[List[str]] = []
        self.fields: Optional[List[str]] = None
        if query.get("fields") is not None:
            requested = [_split_path(f) for f in query["fields"]]
            self.fields = list(query["fields"])
            for field, parts, _ in self.order + [("_id", ["_id"], "$gt")]:
                if not _covers(requested, parts) and parts not in self.added:
                    self.added.append(parts)
                    self.fields.append(field)
        self.last: Optional[List[Any]] = None
        self.seen: List[str] = []

    def body(self, query: Dict[str, Any]) -> Dict[str, Any]:
        """The request body for the next page."""
        body = dict(query)
        body.pop("bookmark", None)
        body["sort"] = self.sort
        if self.fields is not None:
            body["fields"] = self.fields
        if self.last is not None:
            body["selector"] = {"$and": [query["selector"], self._after()]}
        return body

    def _after(self) -> Dict[str, Any]:
        last = self.last
        assert last is not None
        branches = []
        for i, (field, _, op) in enumerate(self.order):
            branch = {f: {"$eq": v} for (f, _, _), v in zip(self.order[:i], last[:i])}
            branch[field] = {op: last[i]}
            branches.append(branch)
        if self.by_id_only:
            return branches[0]
        tie = {f: {"$eq": v} for (f, _, _), v in zip(self.order, last)}
        tie["_id"] = {"$nin": list(self.seen)}
        branches.append(tie)
        return {"$or": branches}

    def advance(self, docs: List[Any]) -> None:
        """Remember where ``docs`` (the page just received, in order) ends; strip added fields."""
        for doc in docs:
            key = [_get_path(doc, parts) for _, parts, _ in self.order]
            if any(value is _MISSING for value in key):
                raise ValueError("cannot page through this query without bookmarks: document %r has no "
                                 "value for a sort field" % (doc.get("_id"),))
            if key != self.last:
                self.last = key
                self.seen = []
            self.seen.append(doc.get("_id"))
        for doc in docs:
            for parts in self.added:
                _drop_path(doc, parts)


@io_methods
class FindPager:
    """Pages through a Mango query's results, following bookmarks (never ``skip``).

    Iterate over it (``for doc in pager``: blocking; ``async for doc in
    pager``: asyncio), or fetch page by page with :meth:`next_page`, which
    keeps the calling contract (callback, ``yield`` in ``@relax``, ``await``,
    blocking) and returns an empty list once everything has been read.

    ``bookmark`` is the position reached; ``done`` is True once the last
    page has been read; ``warning`` and ``execution_stats`` are the last
    page's.  On a server that returns no bookmarks (pouchdb-server), it
    pages by sort key instead: see :class:`_Keyset`.
    """

    def __init__(self, db: Any, query: Dict[str, Any], page_size: int = PAGE_SIZE, path: str = "/_find") -> None:
        self.db = db
        self._path = path
        self._query = dict(query)
        #: How many documents each request asks for.
        self.page_size = page_size
        self._remaining: Optional[int] = self._query.pop("limit", None)
        self._skip: Optional[int] = self._query.pop("skip", None)
        #: Where the next page starts (None: at the beginning).
        self.bookmark: Optional[str] = self._query.pop("bookmark", None)
        #: True once the last page has been read.
        self.done = False
        #: How many requests have been made.
        self.requests = 0
        self.warning: Optional[str] = None
        self.execution_stats: Optional[Dict[str, Any]] = None
        self._keyset: Optional[_Keyset] = None
        self._busy = False

    def __repr__(self) -> str:
        return "<FindPager %s>" % ("done" if self.done else "at %r" % (self.bookmark,))

    # -- one page --------------------------------------------------------
    @overload
    def next_page(self, callback: None = None) -> ListResult[Document]: ...

    @overload
    def next_page(self, callback: DataCallback[List[Document]]) -> Operation[List[Document]]: ...

    def next_page(self, callback: Callback = None) -> Any:
        """The next page of documents (a list; empty once all have been read)."""
        return self.db._run(self._next_page(), callback)

    def _next_page(self) -> Generator[Any, Any, List[Any]]:
        if self._busy:
            raise RuntimeError("next_page() called while the previous page is still being fetched")
        self._busy = True
        try:
            while True:
                if self.done:
                    return []
                limit = self.page_size
                if self._remaining is not None:
                    limit = min(limit, self._remaining)
                    if limit <= 0:
                        self.done = True
                        return []
                if self._keyset is not None:
                    body = self._keyset.body(self._query)
                else:
                    body = dict(self._query)
                    if self.bookmark is not None:
                        body["bookmark"] = self.bookmark
                body["limit"] = limit
                first = self.requests == 0 or (self._keyset is not None and self._keyset.last is None)
                if first and self._skip:
                    body["skip"] = self._skip
                self.requests += 1
                data = yield self.db._request("POST", self._path, json=body)
                docs = list(data.get("docs") or [])
                self.warning = data.get("warning")
                self.execution_stats = data.get("execution_stats")
                if self._keyset is None:
                    bookmark = data.get("bookmark")
                    if not (isinstance(bookmark, str) and bookmark):
                        if not docs:
                            self.done = True
                            return []
                        # No bookmarks here: start again, paging by sort key.
                        self._keyset = _Keyset(self._query)
                        continue
                    if not docs or len(docs) < limit or bookmark == self.bookmark:
                        self.done = True
                    self.bookmark = bookmark
                else:
                    # Without bookmarks a short page does not prove the end
                    # (pouchdb can return fewer than limit): only an empty one does.
                    if not docs:
                        self.done = True
                        return []
                    self._keyset.advance(docs)
                if self._remaining is not None:
                    self._remaining -= len(docs)
                    if self._remaining <= 0:
                        self.done = True
                return docs
        finally:
            self._busy = False

    # -- iteration -------------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        """Every remaining document, fetching pages as needed (blocking)."""
        if get_reactor().in_async_context():
            raise RuntimeError("iterating a FindPager blocks: inside a running reactor use "
                               "next_page() (yield or await it), or async for")
        while True:
            page = self.next_page()
            if not page:
                return
            yield from page

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._async_docs()

    async def _async_docs(self) -> AsyncIterator[Any]:
        while True:
            reactor = get_reactor()
            page = await trampoline(self._next_page(), reactor, CouchOperation(reactor))
            if not page:
                return
            for doc in page:
                yield doc
