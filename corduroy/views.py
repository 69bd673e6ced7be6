"""Views, lists, shows, update handlers, _all_docs and temporary queries.

A view query returns a :class:`View`: a list of :class:`Row` objects plus the
response's ``total_rows``, ``offset`` and (when asked for) ``update_seq``.
Shows, lists and update handlers return a :class:`Formatted` response.
:meth:`ViewsMixin.iterview` and :meth:`ViewsMixin.iter_all_docs` walk a large
view page by page through a :class:`Pager`, with bounded memory.

Example::

    db = Database("http://127.0.0.1:5984/dosac")
    for row in db.view("employees/byname", startkey="c", endkey="d", inclusive_end=False):
        print(row.key, row.id)
"""
from __future__ import annotations

import logging
import uuid
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncIterator,
    Callable,
    Dict,
    Generator,
    Iterator,
    List,
    Mapping,
    Optional,
    Tuple,
    Union,
    overload,
)
from urllib.parse import quote as _quote

from loop import Operation, Status, completed, get_reactor, trampoline
from loop.redact import describe, type_name

from . import codec
from .contract import io_methods
from .document import Document
from .exceptions import BadResponse, NotFound
from .http import CouchOperation, finish
from .results import DataCallback, ListResult
from .urls import doc_path, encode_query, quote_segment

__all__ = ["ViewsMixin", "View", "Row", "Formatted", "Pager"]

log = logging.getLogger("corduroy")

Callback = Optional[Callable[[Any, Status], Any]]

#: Options that take a JSON value; an explicit None is sent as JSON ``null``.
_JSON_VALUE_OPTIONS = frozenset({"key", "startkey", "endkey", "start_key", "end_key"})
_BOOL_OPTIONS = frozenset({
    "descending", "include_docs", "inclusive_end", "reduce", "group", "conflicts", "attachments",
    "att_encoding_info", "update_seq", "stable", "sorted",
})
_STR_OPTIONS = frozenset({"startkey_docid", "endkey_docid", "start_key_doc_id", "end_key_doc_id"})
_INT_OPTIONS = frozenset({"limit", "skip", "group_level"})

#: Every query option of ``GET /db/_design/ddoc/_view/view`` (CouchDB 3.x).
VIEW_OPTIONS = frozenset(
    _JSON_VALUE_OPTIONS | _BOOL_OPTIONS | _STR_OPTIONS | _INT_OPTIONS | {"keys", "stale", "update"}
)
#: The options of ``_all_docs`` and ``_design_docs``: a view's, without reduction.
ALL_DOCS_OPTIONS = VIEW_OPTIONS - {"reduce", "group", "group_level"}

_ROW_FIELDS = ("id", "key", "value", "doc", "error")

#: At most how many rows a Pager drops per request to honour ``skip=``.
SKIP_BATCH = 1000

#: Prefix of the throwaway design documents :meth:`ViewsMixin.query` creates.
TEMP_DDOC_PREFIX = "_design/corduroy-tmp-"


# -- results ------------------------------------------------------------
class Row:
    """One row of a view result: ``id``, ``key``, ``value``, ``doc`` and ``error``.

    Fields a row lacks are None: ``id`` for reduced rows, ``doc`` unless the
    query had ``include_docs=True``, ``error`` unless the server reported one
    (``"not_found"`` for a missing key in an ``_all_docs`` ``keys=`` query).
    ``row["key"]`` works too, so ``"%(key)s -> %(value)s" % row`` formats.

    >>> row = Row({"id": "a", "key": ["x", 1], "value": 3})
    >>> row.key, row.value, row.doc
    (['x', 1], 3, None)
    >>> row
    <Row id='a' key=['x', 1] value=3>
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    @property
    def id(self) -> Optional[str]:
        """The id of the document that emitted the row (None for reduced rows)."""
        return self._data.get("id")

    @property
    def key(self) -> Any:
        """The emitted key."""
        return self._data.get("key")

    @property
    def value(self) -> Any:
        """The emitted (or reduced) value."""
        return self._data.get("value")

    @property
    def doc(self) -> Optional[Document]:
        """The row's document (queries with ``include_docs=True``), else None."""
        doc = self._data.get("doc")
        if doc is not None and not isinstance(doc, Document) and isinstance(doc, dict):
            doc = Document(doc)
        return doc

    @property
    def error(self) -> Optional[str]:
        """The server's error for this row (e.g. ``"not_found"``), else None."""
        return self._data.get("error")

    def __getitem__(self, name: str) -> Any:
        if name in _ROW_FIELDS:
            return getattr(self, name)
        raise KeyError(name)

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, Row):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in _ROW_FIELDS)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        parts = []
        if self.id is not None:
            parts.append("id=%r" % (self.id,))
        parts.append("key=%r" % (self.key,))
        if self.error is not None:
            parts.append("error=%r" % (self.error,))
        elif "value" in self._data:
            value = repr(self.value)
            if len(value) > 80:
                value = value[:77] + "..."
            parts.append("value=%s" % value)
        if self._data.get("doc") is not None:
            parts.append("+doc")
        return "<Row %s>" % " ".join(parts)


class View:
    """The result of a view query: an indexable, iterable list of :class:`Row`.

    ``rows`` is the list; ``total_rows`` and ``offset`` are the server's
    counts (None for reduced results); ``update_seq`` is set when the query
    asked for it; ``options`` are the query options that produced it.

    >>> v = View("employees/byname", [Row({"id": "e1", "key": "abbott", "value": None})], total_rows=17)
    >>> v
    <employees/byname: 1/17 rows>
    >>> v[0].key, len(v)
    ('abbott', 1)
    """

    __slots__ = ("name", "rows", "total_rows", "offset", "update_seq", "options")

    if TYPE_CHECKING:  # pragma: no cover
        def __await__(self) -> Generator[Any, None, View]:
            """For type checkers only (nothing at run time): see :mod:`corduroy.results`."""

    def __init__(self, name: str, rows: List[Row], options: Optional[Dict[str, Any]] = None,
                 total_rows: Optional[int] = None, offset: Optional[int] = None,
                 update_seq: Any = None) -> None:
        self.name = name
        self.rows = rows
        self.options: Dict[str, Any] = options if options is not None else {}
        self.total_rows = total_rows
        self.offset = offset
        self.update_seq = update_seq

    @classmethod
    def from_response(cls, name: str, data: Mapping[str, Any], options: Dict[str, Any],
                      rows: Optional[List[Row]] = None) -> "View":
        """A View from a decoded view response (``rows`` given: use them instead of ``data["rows"]``)."""
        if rows is None:
            rows = [Row(r) for r in data.get("rows") or ()]
        return cls(name, rows, options, data.get("total_rows"), data.get("offset"), data.get("update_seq"))

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, index: int) -> Row: ...

    @overload
    def __getitem__(self, index: slice) -> List[Row]: ...

    def __getitem__(self, index: Union[int, slice]) -> Union[Row, List[Row]]:
        return self.rows[index]

    def __repr__(self) -> str:
        if self.total_rows is None:
            return "<%s: %d rows>" % (self.name, len(self.rows))
        return "<%s: %d/%d rows>" % (self.name, len(self.rows), self.total_rows)


class Formatted:
    """The answer of a show, list or update function.

    ``headers`` is a dict of response headers (Title-Case names), ``body``
    the decoded JSON when the content type is ``application/json`` and the
    raw bytes otherwise; ``text`` is the body decoded as text (using the
    charset of the content type, UTF-8 by default); ``code`` is the HTTP
    status.
    """

    __slots__ = ("code", "headers", "body", "raw")

    if TYPE_CHECKING:  # pragma: no cover
        def __await__(self) -> Generator[Any, None, Formatted]:
            """For type checkers only (nothing at run time): see :mod:`corduroy.results`."""

    def __init__(self, code: Optional[int], headers: Dict[str, str], raw: bytes) -> None:
        self.code = code
        self.headers = headers
        #: The undecoded response body.
        self.raw = raw
        body: Any = raw
        if self.content_type in ("application/json",) and raw:
            body = codec.decode(raw)
        self.body = body

    @property
    def content_type(self) -> str:
        """The media type, lower-cased, without parameters (``"text/csv"``)."""
        return self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()

    @property
    def text(self) -> str:
        """The body as text, decoded with the response's charset (default UTF-8)."""
        charset = "utf-8"
        for param in self.headers.get("Content-Type", "").split(";")[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "charset" and value.strip():
                charset = value.strip().strip('"')
        try:
            return self.raw.decode(charset, "replace")
        except LookupError:
            return self.raw.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return "<Formatted %s %s, %d bytes>" % (self.code, self.content_type or "(no type)", len(self.raw))


# -- names and options --------------------------------------------------
#: Search options whose values are JSON (a sort field is a JSON string too).
_SEARCH_JSON_OPTIONS = frozenset({"sort", "counts", "drilldown", "ranges", "group_sort", "highlight_fields",
                                  "include_fields"})


def _split_name(name: Any, what: str) -> Tuple[str, str]:
    """``"ddoc/func"`` or ``"_design/ddoc/func"`` as ``(ddoc, func)``."""
    if not isinstance(name, str):
        raise TypeError("a %s is named by a str like 'ddoc/name', not %s" % (what, type(name).__name__))
    rest = name[len("_design/"):] if name.startswith("_design/") else name
    ddoc, sep, func = rest.partition("/")
    if not sep or not ddoc or not func:
        raise ValueError("a %s is named 'ddoc/name' (or '_design/ddoc/name'), got %s" % (what, describe(name)))
    return ddoc, func


def _ddoc_prefix(ddoc: str) -> str:
    return "/_design/" + quote_segment(ddoc)


def _check_options(options: Mapping[str, Any], allowed: Optional[frozenset], what: str) -> None:
    """Raise TypeError/ValueError for an unknown option or a value of the wrong kind."""
    for name, value in options.items():
        if allowed is not None and name not in allowed:
            raise TypeError("unknown %s option %s (known: %s)" % (what, describe(name), ", ".join(sorted(allowed))))
        if value is None:
            continue
        if name in _BOOL_OPTIONS:
            if not isinstance(value, bool):
                raise TypeError("%s option %s is a bool, not %s" % (what, describe(name), describe(value)))
        elif name in _INT_OPTIONS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError("%s option %s is a non-negative int, not %s" % (what, describe(name), describe(value)))
        elif name in _STR_OPTIONS:
            if not isinstance(value, str):
                raise TypeError("%s option %s is a document id (str), not %s" % (what, describe(name), describe(value)))
        elif name == "keys":
            if not isinstance(value, (list, tuple)):
                raise TypeError("%s option 'keys' is a list of keys, not %s" % (what, type(value).__name__))
        elif name == "stale":
            if value not in ("ok", "update_after"):
                raise ValueError("%s option 'stale' is 'ok' or 'update_after', not %s" % (what, describe(value)))
        elif name == "update":
            if value not in (True, False, "true", "false", "lazy"):
                raise ValueError("%s option 'update' is True, False or 'lazy', not %s" % (what, describe(value)))
    if options.get("keys") is not None:
        for other in ("key", "startkey", "endkey", "start_key", "end_key"):
            if other in options:
                raise ValueError("%s option 'keys' cannot be combined with %s" % (what, describe(other)))


def _view_request(options: Mapping[str, Any], allowed: Optional[frozenset],
                  what: str = "view") -> Tuple[str, str, Optional[Dict[str, Any]]]:
    """Check ``options``; return ``(method, query string, JSON body or None)``.

    ``keys`` go in a POST body.  JSON-valued options (``key``, ``startkey``...)
    are JSON-encoded, an explicit None among them as ``null``; other None
    values are left out.  Raises before any I/O on bad input.
    """
    _check_options(options, allowed, what)
    params: Dict[str, Any] = {}
    nulls: List[str] = []
    body = None
    for name, value in options.items():
        if name == "keys":
            if value is not None:
                body = {"keys": list(value)}
            continue
        if value is None:
            if name in _JSON_VALUE_OPTIONS:
                nulls.append(name)
            continue
        params[name] = value
    query = encode_query(params)
    if nulls:
        query += ("&" if query else "?") + "&".join(_quote(n, safe="") + "=null" for n in nulls)
    if body is not None:
        codec.encode(body, "view keys")  # fail here, before any I/O
        return "POST", query, body
    return "GET", query, None


def _formatter_headers(server: Any, content_type: Optional[str] = None) -> List[str]:
    """The server's headers with ``Accept: */*`` (so a ``provides()`` function can choose)."""
    headers = [h for h in server.headers_plain if not h.lower().startswith("accept:")]
    headers.append("Accept: */*")
    if content_type is not None:
        headers.append("Content-Type: " + content_type)
        headers.append("Expect:")
    return headers


def _formatted(data: Any, status: Status) -> Formatted:
    return Formatted(status.code, status.headers, data if data is not None else b"")


def _form_value(value: Any) -> Union[str, bytes]:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):  # form fields are octets: sent percent-encoded as they are
        return bytes(value)
    return codec.encode(value, "form value").decode("utf-8")


def _form_encode(fields: Mapping[str, Any]) -> bytes:
    """``fields`` as ``application/x-www-form-urlencoded``; bytes as they are, other non-str values as JSON."""
    parts = []
    for name, value in fields.items():
        if not isinstance(name, str):
            raise TypeError("form field names are str, not %s" % type(name).__name__)
        parts.append(_quote(name, safe="") + "=" + _quote(_form_value(value), safe=""))
    return "&".join(parts).encode("ascii")


# -- the mixin ----------------------------------------------------------
@io_methods
class ViewsMixin:
    """Database methods: views, ``_all_docs``, temporary queries, shows, lists and updates."""

    # Provided by Database.
    name: str
    server: Any
    _request: Callable[..., Operation]
    _run: Callable[..., Any]

    # -- views ------------------------------------------------------------
    @overload
    def view(self, name: str, callback: None = None, on_row: Optional[Callable[[Row], Any]] = None,
             **options: Any) -> View: ...

    @overload
    def view(self, name: str, callback: DataCallback[View], on_row: Optional[Callable[[Row], Any]] = None,
             **options: Any) -> Operation[View]: ...

    def view(self, name: str, callback: Callback = None, on_row: Optional[Callable[[Row], Any]] = None,
             **options: Any) -> Any:
        """Query the view ``name`` (``"ddoc/view"``); returns a :class:`View`.

        Options (CouchDB 3.x): ``key``, ``keys`` (sent in a POST body),
        ``startkey``/``start_key``, ``endkey``/``end_key`` (JSON values; an
        explicit None means JSON ``null``), ``startkey_docid``,
        ``endkey_docid``, ``inclusive_end``, ``include_docs``, ``conflicts``,
        ``attachments``, ``att_encoding_info``, ``limit``, ``skip``,
        ``descending``, ``reduce``, ``group``, ``group_level``, ``stale``
        (``"ok"``/``"update_after"``), ``update`` (True/False/``"lazy"``),
        ``stable``, ``update_seq``, ``sorted``.  A missing design document or
        view raises NotFound.

        With ``on_row=fn`` the response is streamed: ``fn(row)`` gets each
        :class:`Row` as it arrives and the View returned has empty ``rows``
        (but ``total_rows``, ``offset``...).

        >>> db.view("employees/byname", key="abbott", include_docs=True)  # doctest: +SKIP
        <employees/byname: 1/17 rows>
        """
        ddoc, view = _split_name(name, "view")
        path = _ddoc_prefix(ddoc) + "/_view/" + quote_segment(view)
        label = "%s/%s" % (ddoc, view)
        return self._rows_request(label, path, options, VIEW_OPTIONS, callback, on_row)

    @overload
    def all_docs(self, callback: None = None, on_row: Optional[Callable[[Row], Any]] = None,
                 **options: Any) -> View: ...

    @overload
    def all_docs(self, callback: DataCallback[View], on_row: Optional[Callable[[Row], Any]] = None,
                 **options: Any) -> Operation[View]: ...

    def all_docs(self, callback: Callback = None, on_row: Optional[Callable[[Row], Any]] = None,
                 **options: Any) -> Any:
        """Query ``_all_docs``; returns a :class:`View` (one row per document, keyed by id).

        Takes the view options except reduction (``keys=[...]`` is POSTed;
        a missing id gives a row with ``error="not_found"``).  ``on_row``
        streams the rows as for :meth:`view`.
        """
        return self._rows_request("_all_docs", "/_all_docs", options, ALL_DOCS_OPTIONS, callback, on_row)

    @overload
    def design_docs(self, callback: None = None, **options: Any) -> View: ...

    @overload
    def design_docs(self, callback: DataCallback[View], **options: Any) -> Operation[View]: ...

    def design_docs(self, callback: Callback = None, **options: Any) -> Any:
        """Query ``_design_docs`` (the design documents only); returns a :class:`View`.

        Takes the options of :meth:`all_docs`.  Servers without the
        ``_design_docs`` endpoint (CouchDB < 2.1, pouchdb-server) get the
        equivalent ``_all_docs`` range query instead.
        """
        method, query, body = _view_request(options, ALL_DOCS_OPTIONS, "_design_docs")
        return self._run(self._design_docs(method, query, body, dict(options)), callback)

    def _design_docs(self, method: str, query: str, body: Any,
                     options: Dict[str, Any]) -> Generator[Any, Any, View]:
        try:
            data = yield self._request(method, "/_design_docs" + query, json=body)
        except NotFound as exc:
            if exc.reason in ("Database does not exist.", "no_db_file"):
                raise
            fallback = dict(options)
            if fallback.get("keys") is None and "key" not in fallback:
                low, high = ("_design0", "_design/") if fallback.get("descending") else ("_design/", "_design0")
                if fallback.get("startkey", fallback.get("start_key")) is None:
                    fallback.pop("start_key", None)
                    fallback["startkey"] = low
                if fallback.get("endkey", fallback.get("end_key")) is None:
                    fallback.pop("end_key", None)
                    fallback["endkey"] = high
            method, query, body = _view_request(fallback, ALL_DOCS_OPTIONS, "_design_docs")
            data = yield self._request(method, "/_all_docs" + query, json=body)
            data["rows"] = [r for r in data.get("rows") or ()
                            if str(r.get("key", "")).startswith("_design/")]
        return View.from_response("_design_docs", data, options)

    @overload
    def view_queries(self, name: str, queries: List[Dict[str, Any]], callback: None = None) -> ListResult[View]: ...

    @overload
    def view_queries(self, name: str, queries: List[Dict[str, Any]],
                     callback: DataCallback[List[View]]) -> Operation[List[View]]: ...

    def view_queries(self, name: str, queries: List[Dict[str, Any]], callback: Callback = None) -> Any:
        """Several queries of view ``name`` in one request (``POST .../_view/view/queries``); a list of :class:`View`.

        Each query is a dict of the options of :meth:`view` (values as
        Python values: ``{"startkey": "a", "limit": 2}``); the result has one
        View per query, in order.  CouchDB 2.2+ (pouchdb-server lacks it).

        >>> [len(v) for v in db.view_queries("app/by_n", [{"limit": 1}, {"keys": [2, 3]}])]   # doctest: +SKIP
        [1, 2]
        """
        ddoc, view = _split_name(name, "view")
        path = _ddoc_prefix(ddoc) + "/_view/" + quote_segment(view) + "/queries"
        return self._queries("%s/%s" % (ddoc, view), path, queries, VIEW_OPTIONS, callback)

    @overload
    def all_docs_queries(self, queries: List[Dict[str, Any]], callback: None = None) -> ListResult[View]: ...

    @overload
    def all_docs_queries(self, queries: List[Dict[str, Any]],
                         callback: DataCallback[List[View]]) -> Operation[List[View]]: ...

    def all_docs_queries(self, queries: List[Dict[str, Any]], callback: Callback = None) -> Any:
        """Several ``_all_docs`` queries in one request (``POST /db/_all_docs/queries``); a list of :class:`View`.

        Each query is a dict of the options of :meth:`all_docs`.  CouchDB 2.2+.
        """
        return self._queries("_all_docs", "/_all_docs/queries", queries, ALL_DOCS_OPTIONS, callback)

    def _queries(self, label: str, path: str, queries: Any, allowed: frozenset, callback: Callback) -> Any:
        if isinstance(queries, (str, bytes, dict)) or not isinstance(queries, (list, tuple)):
            raise TypeError("queries is a list of dicts of query options, not %s" % type(queries).__name__)
        if not queries:
            raise ValueError("queries is empty: give at least one query")
        body = []
        for query in queries:
            if not isinstance(query, dict):
                raise TypeError("each query is a dict of query options, not %s" % type(query).__name__)
            _check_options(query, allowed, label)
            body.append({k: (list(v) if k == "keys" else v) for k, v in query.items()
                         if v is not None or k in _JSON_VALUE_OPTIONS})
        options = [dict(q) for q in queries]

        def make_views(data: Any, status: Status) -> List[View]:
            results = data.get("results") if isinstance(data, dict) else None
            if not isinstance(results, list):
                raise BadResponse(reason="the answer to %s has no results list" % path.lstrip("/"), method="POST")
            return [View.from_response(label, r, o) for r, o in zip(results, options)]

        return finish(self._request("POST", path, json={"queries": body}, what="view queries",
                                    transform=make_views), callback)

    @overload
    def local_docs(self, callback: None = None, **options: Any) -> View: ...

    @overload
    def local_docs(self, callback: DataCallback[View], **options: Any) -> Operation[View]: ...

    def local_docs(self, callback: Callback = None, **options: Any) -> Any:
        """Query ``_local_docs`` (the ``_local`` documents, CouchDB 2+); returns a :class:`View`.

        Takes the options of :meth:`all_docs`; rows are keyed by the full
        ``_local/...`` id.  pouchdb-server has no such endpoint (NotFound).
        """
        return self._rows_request("_local_docs", "/_local_docs", options, ALL_DOCS_OPTIONS, callback, None)

    @overload
    def search(self, name: str, query: str, callback: None = None, **options: Any) -> Document: ...

    @overload
    def search(self, name: str, query: str, callback: DataCallback[Document],
               **options: Any) -> Operation[Document]: ...

    def search(self, name: str, query: str, callback: Callback = None, **options: Any) -> Any:
        """Query the full-text search index ``name`` (``"ddoc/index"``, CouchDB with search enabled).

        Returns the server's answer: ``{total_rows, bookmark, rows: [{id,
        order, fields, doc?}]}``.  Options as in CouchDB: ``limit``,
        ``bookmark``, ``include_docs``, ``sort``, ``counts``, ``drilldown``,
        ``ranges``, ``group_field``... (JSON-valued ones are encoded for you).
        A CouchDB without search answers 503 (ServerError) or, with no such
        endpoint, NotFound.

        >>> db.search("books/by_text", "author:tolkien", limit=5)["rows"]   # doctest: +SKIP
        """
        ddoc, index = _split_name(name, "search index")
        if not isinstance(query, str) or not query:
            raise TypeError("a search query is a non-empty Lucene query string, not %s" % describe(query))
        params: Dict[str, Any] = {"q": query}
        for key, value in options.items():
            if value is None:
                continue
            if key in _SEARCH_JSON_OPTIONS:
                value = codec.encode(value, "search option %s" % describe(key)).decode("utf-8")
            params[key] = value
        path = _ddoc_prefix(ddoc) + "/_search/" + quote_segment(index)
        return finish(self._request("GET", path, params=params), callback)

    def _rows_request(self, label: str, path: str, options: Dict[str, Any], allowed: frozenset,
                      callback: Callback, on_row: Optional[Callable[[Row], Any]]) -> Any:
        method, query, body = _view_request(options, allowed, label)
        options = dict(options)
        if on_row is not None:
            if not callable(on_row):
                raise TypeError("on_row must be callable, got %s" % type_name(on_row))
            from .streaming import stream_rows

            return self._run(self._streamed(stream_rows, label, method, path + query, body, on_row, options),
                             callback)

        def make_view(data: Any, status: Status) -> View:
            return View.from_response(label, data, options)

        return finish(self._request(method, path + query, json=body, transform=make_view), callback)

    def _streamed(self, stream_rows: Callable[..., Operation], label: str, method: str, path: str,
                  body: Any, on_row: Callable[[Row], Any], options: Dict[str, Any]) -> Generator[Any, Any, View]:
        meta = yield stream_rows(self, method, path, params=None, json=body, on_row=on_row,
                                 array="rows", make_row=Row)
        return View.from_response(label, meta or {}, options, rows=[])

    # -- temporary queries ------------------------------------------------
    @overload
    def query(self, map_src: str, reduce_src: Optional[str] = None, language: str = "javascript",
              callback: None = None, **options: Any) -> View: ...

    @overload
    def query(self, map_src: str, reduce_src: Optional[str] = None, language: str = "javascript",
              callback: DataCallback[View] = ..., **options: Any) -> Operation[View]: ...

    def query(self, map_src: str, reduce_src: Optional[str] = None, language: str = "javascript",
              callback: Callback = None, **options: Any) -> Any:
        """Run a one-off view given by its source; returns a :class:`View`.

        CouchDB 2 removed temporary views, so this saves a throwaway design
        document (``_design/corduroy-tmp-<uuid hex>``), queries its view with
        the view ``options`` (see :meth:`view`), and deletes the design
        document afterwards, also when the query fails.  (If that delete
        fails too, a warning naming the design document is logged and the
        query's own result or error stands.)  Each call builds an index from
        scratch: fine for ad-hoc work, slow on big databases; CouchDB keeps
        the index files until ``_view_cleanup`` runs.  ``reduce_src`` may be
        a built-in (``"_sum"``, ``"_count"``, ``"_stats"``).

        >>> db.query("function(doc) { emit(doc.last, null) }", limit=2)  # doctest: +SKIP
        <query: 2/17 rows>
        """
        if not isinstance(map_src, str) or not map_src.strip():
            raise TypeError("map_src is the source of a map function (a non-empty str)")
        if reduce_src is not None and not isinstance(reduce_src, str):
            raise TypeError("reduce_src is the source of a reduce function or a built-in like '_count'")
        if not isinstance(language, str) or not language:
            raise TypeError("language is a str such as 'javascript'")
        method, query, body = _view_request(options, VIEW_OPTIONS, "query")
        view_def: Dict[str, Any] = {"map": map_src}
        if reduce_src is not None:
            view_def["reduce"] = reduce_src
        ddoc_id = TEMP_DDOC_PREFIX + uuid.uuid4().hex
        design = {"_id": ddoc_id, "language": language, "views": {"query": view_def},
                  "options": {"partitioned": False}}
        codec.encode(design, "temporary design document")
        return self._run(self._query(ddoc_id, design, method, query, body, dict(options)), callback)

    def _query(self, ddoc_id: str, design: Dict[str, Any], method: str, query: str, body: Any,
               options: Dict[str, Any]) -> Generator[Any, Any, View]:
        ddoc_path = "/" + doc_path(ddoc_id)
        saved = yield self._request("PUT", ddoc_path, json=design, what="temporary design document")
        try:
            data = yield self._request(method, ddoc_path + "/_view/query" + query, json=body)
        finally:
            try:
                yield self._request("DELETE", ddoc_path, params={"rev": saved["rev"]})
            except Exception as exc:
                log.warning("could not delete temporary design document %s: %s", ddoc_id, exc)
        return View.from_response("query", data, options)

    # -- formatters -------------------------------------------------------
    @overload
    def show(self, name: str, id: Optional[str] = None, callback: None = None, **options: Any) -> Formatted: ...

    @overload
    def show(self, name: str, id: Optional[str] = None, callback: DataCallback[Formatted] = ...,
             **options: Any) -> Operation[Formatted]: ...

    def show(self, name: str, id: Optional[str] = None, callback: Callback = None, **options: Any) -> Any:
        """Call the show function ``name`` (``"ddoc/show"``) on document ``id`` (or none).

        ``options`` go in the query string (the function's ``req.query``).
        Returns a :class:`Formatted` response (``headers``, ``body``, ``text``).
        """
        ddoc, func = _split_name(name, "show function")
        path = _ddoc_prefix(ddoc) + "/_show/" + quote_segment(func)
        if id is not None:
            path += "/" + doc_path(id)
        return finish(self._request("GET", path, params=options or None, raw=True, transform=_formatted,
                                    headers=_formatter_headers(self.server)), callback)

    @overload
    def list(self, name: str, view: str, callback: None = None, **options: Any) -> Formatted: ...

    @overload
    def list(self, name: str, view: str, callback: DataCallback[Formatted], **options: Any) -> Operation[Formatted]: ...

    def list(self, name: str, view: str, callback: Callback = None, **options: Any) -> Any:
        """Format view ``view`` with the list function ``name`` (``"ddoc/list"``).

        ``view`` is a view of the same design document (``"byname"``) or of
        another one (``"otherddoc/byname"``).  ``options`` are view options
        (``key``, ``startkey``... JSON-encoded as for :meth:`view`; ``keys``
        POSTed) plus whatever else the list function reads from ``req.query``.
        Returns a :class:`Formatted` response.
        """
        ddoc, func = _split_name(name, "list function")
        if not isinstance(view, str) or not view:
            raise TypeError("view is a view name ('byname' or 'otherddoc/byname')")
        path = _ddoc_prefix(ddoc) + "/_list/" + quote_segment(func) + "/"
        if "/" in view:
            other, view_name = _split_name(view, "view")
            path += quote_segment(other) + "/" + quote_segment(view_name)
        else:
            path += quote_segment(view)
        known = {k: v for k, v in options.items() if k in VIEW_OPTIONS}
        _check_options(known, None, "list")
        method, query, body = _view_request(options, None, "list")
        headers = _formatter_headers(self.server, "application/json" if body is not None else None)
        return finish(self._request(method, path + query, json=body, raw=True, transform=_formatted,
                                    headers=headers), callback)

    @overload
    def update(self, name: str, id: Optional[str] = None, body: Union[None, str, bytes, Mapping[str, Any]] = None,
               callback: None = None, **options: Any) -> Formatted: ...

    @overload
    def update(self, name: str, id: Optional[str] = None, body: Union[None, str, bytes, Mapping[str, Any]] = None,
               callback: DataCallback[Formatted] = ..., **options: Any) -> Operation[Formatted]: ...

    def update(self, name: str, id: Optional[str] = None, body: Union[None, str, bytes, Mapping[str, Any]] = None,
               callback: Callback = None, **options: Any) -> Any:
        """Call the update handler ``name`` (``"ddoc/func"``), on document ``id`` if given.

        Without ``id`` it is a POST, with one a PUT.  A dict ``body`` is sent
        form-encoded (the handler's ``req.form``; non-str values as JSON), a
        str or bytes as is (``req.body``).  ``options`` go in the query
        string.  Returns a :class:`Formatted` response; the handler's new
        revision is in ``headers["X-Couch-Update-Newrev"]``.
        """
        ddoc, func = _split_name(name, "update handler")
        path = _ddoc_prefix(ddoc) + "/_update/" + quote_segment(func)
        if id is not None:
            path += "/" + doc_path(id)
        payload: Optional[bytes]
        if body is None:
            payload, content_type = None, None
        elif isinstance(body, Mapping):
            payload, content_type = _form_encode(body), "application/x-www-form-urlencoded"
        elif isinstance(body, str):
            payload, content_type = body.encode("utf-8"), "text/plain; charset=utf-8"
        elif isinstance(body, (bytes, bytearray, memoryview)):
            payload, content_type = bytes(body), "application/octet-stream"
        else:
            raise TypeError("an update body is a dict (form-encoded), str or bytes, not %s"
                            % type(body).__name__)
        method = "POST" if id is None else "PUT"
        headers = _formatter_headers(self.server, content_type)
        return finish(self._request(method, path, params=options or None, body=payload, raw=True,
                                    transform=_formatted, headers=headers), callback)

    # -- paging -----------------------------------------------------------
    def iterview(self, name: str, page_size: int = 1000, **options: Any) -> "Pager":
        """A :class:`Pager` over view ``name``, fetching ``page_size`` rows per request.

        Takes the options of :meth:`view` except ``keys`` and reduction (it
        pages over map rows; ``reduce=False`` is sent for you).  ``limit``
        caps the total number of rows.  No I/O happens until iteration.

        >>> for row in db.iterview("employees/byname", page_size=500):  # doctest: +SKIP
        ...     print(row.key)
        """
        ddoc, view = _split_name(name, "view")
        path = _ddoc_prefix(ddoc) + "/_view/" + quote_segment(view)
        return Pager(self, "%s/%s" % (ddoc, view), path, page_size, options, all_docs=False)

    def iter_all_docs(self, page_size: int = 1000, **options: Any) -> "Pager":
        """A :class:`Pager` over ``_all_docs``, ``page_size`` rows per request (options as :meth:`all_docs`)."""
        return Pager(self, "_all_docs", "/_all_docs", page_size, options, all_docs=True)


@io_methods
class Pager:
    """Rows of a view fetched page by page, holding one page in memory at a time.

    Made by :meth:`ViewsMixin.iterview` and :meth:`ViewsMixin.iter_all_docs`.
    Each page is one request with ``limit=page_size + 1``: the extra row is
    where the next page starts (its ``startkey`` and ``startkey_docid``), so
    no ``skip`` is ever used and rows with equal keys are neither lost nor
    repeated across pages, in either direction.  (Rows a document emitted
    more than once with the same key, and servers that ignore
    ``startkey_docid``, are handled by dropping the rows already delivered
    at the head of the next page.)

    Three ways to consume it:

    - ``for row in pager`` with no reactor running (blocking);
    - ``async for row in pager`` in asyncio code;
    - ``rows = yield pager.next_page()`` in a ``@relax`` generator, or
      ``pager.next_page(callback=fn)``: one page (a list of :class:`Row`)
      per call, an empty list once the view is exhausted.

    A pager is consumed once.  ``total_rows``, ``offset`` and ``update_seq``
    hold what the last page reported.
    """

    def __init__(self, db: Any, name: str, path: str, page_size: int, options: Dict[str, Any],
                 all_docs: bool) -> None:
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise ValueError("page_size is a positive int, not %s" % describe(page_size))
        what = "iterview" if not all_docs else "iter_all_docs"
        if "keys" in options:
            raise ValueError("%s pages over a key range; it cannot take keys= (use view/all_docs)" % what)
        if options.get("reduce") or options.get("group") or options.get("group_level") is not None:
            raise ValueError("%s pages over map rows: reduce, group and group_level are not supported "
                             "(query reduced views with view())" % what)
        allowed = ALL_DOCS_OPTIONS if all_docs else VIEW_OPTIONS
        _check_options(options, allowed, what)
        opts = dict(options)
        for alias, canonical in (("start_key", "startkey"), ("end_key", "endkey"),
                                 ("start_key_doc_id", "startkey_docid"), ("end_key_doc_id", "endkey_docid")):
            if alias in opts:
                if canonical in opts:
                    raise ValueError("%s: give %r or %r, not both" % (what, alias, canonical))
                opts[canonical] = opts.pop(alias)
        if "key" in opts:
            if "startkey" in opts or "endkey" in opts:
                raise ValueError("%s: key= cannot be combined with startkey/endkey" % what)
            opts["startkey"] = opts["endkey"] = opts.pop("key")
            opts.pop("inclusive_end", None)
        self.db = db
        self.name = name
        self.page_size = page_size
        self.options = dict(options)
        self._path = path
        self._all_docs = all_docs
        self._has_start = "startkey" in opts
        self._start_key = opts.pop("startkey", None)
        self._start_docid: Optional[str] = opts.pop("startkey_docid", None)
        # A skip is done here, by dropping rows, so the group bookkeeping sees every row.
        self._skip_left: int = opts.pop("skip", None) or 0
        limit = opts.pop("limit", None)
        self._remaining: Optional[int] = limit
        if not all_docs:
            opts["reduce"] = False  # page over the map rows of views that have a reduce
        self._base = opts
        # Rows already delivered at the start of the next page: ``_dupes`` of
        # them identical (key and id) to the start row, ``_seen`` with its key
        # (the group began with the row whose id is ``_group_first``).
        self._dupes = 0
        self._seen = 0
        self._group_first: Optional[str] = None
        #: True once the server turned out to ignore ``startkey_docid``.
        self._docid_ignored = False
        self._done = limit == 0
        self._fetching = False
        self.total_rows: Optional[int] = None
        self.offset: Optional[int] = None
        self.update_seq: Any = None
        _view_request(self._page_options(), allowed, what)  # encode everything once, before any I/O

    def __repr__(self) -> str:
        state = "done" if self._done else "open"
        return "<Pager %s page_size=%d %s>" % (self.name, self.page_size, state)

    @property
    def done(self) -> bool:
        """True once every row has been delivered."""
        return self._done

    def _want(self) -> int:
        """How many new rows the next request is for (rows still to skip included)."""
        want = self.page_size + min(self._skip_left, max(self.page_size, SKIP_BATCH))
        if self._remaining is not None:
            want = min(want, self._remaining + self._skip_left)
        return want

    def _page_options(self) -> Dict[str, Any]:
        opts = dict(self._base)
        if self._has_start:
            opts["startkey"] = self._start_key
            if self._start_docid is not None and not self._all_docs:
                opts["startkey_docid"] = self._start_docid
        already = self._seen if self._docid_ignored else self._dupes
        opts["limit"] = self._want() + 1 + already
        return opts

    @overload
    def next_page(self, callback: None = None) -> ListResult[Row]: ...

    @overload
    def next_page(self, callback: DataCallback[List[Row]]) -> Operation[List[Row]]: ...

    def next_page(self, callback: Callback = None) -> Any:
        """The next page: a list of :class:`Row` (empty once the view is exhausted).

        Follows the calling contract: blocking, ``callback(rows, status)``,
        or an Operation to ``yield``/``await``.  Only one page may be in
        flight at a time.
        """
        reactor = get_reactor()
        if self._done:
            return finish(completed([], reactor=reactor), callback)
        if self._fetching:
            raise RuntimeError("a page of this Pager is already being fetched")
        self._fetching = True
        return finish(trampoline(self._fetch_page(), reactor, CouchOperation(reactor)), callback)

    def _fetch_page(self) -> Generator[Any, Any, List[Row]]:
        try:
            while True:
                method, query, body = _view_request(self._page_options(), None, self.name)
                data = yield self.db._request(method, self._path + query, json=body)
                page = self._take_page(data)
                if page is None:
                    continue  # the same page again, now knowing how the server pages
                if page or self._done:
                    return page
        finally:
            self._fetching = False

    def _take_page(self, data: Any) -> Optional[List[Row]]:
        """This response's new rows (updating where the next page starts), or None to refetch."""
        raw = data.get("rows") or []
        self.total_rows = data.get("total_rows", self.total_rows)
        self.offset = data.get("offset", self.offset)
        self.update_seq = data.get("update_seq", self.update_seq)
        by_docid = self._has_start and not self._all_docs and self._start_docid is not None
        if by_docid and raw and not self._docid_ignored and self._seen > self._dupes:
            first = raw[0]
            if (first.get("id") == self._group_first and first.get("id") != self._start_docid
                    and _same_key(first.get("key"), self._start_key)):
                # The server answered from the first row of the key, ignoring
                # startkey_docid: drop every row of that key already delivered.
                self._docid_ignored = True
                return None
        if by_docid:
            raw = raw[self._seen if self._docid_ignored else self._dupes:]
        want = self._want()
        if len(raw) <= want:
            self._done = True
            page, nxt = raw, None
        else:
            page, nxt = raw[:want], raw[want]
            if not self._all_docs:
                self._note_group(page, nxt)
            self._has_start = True
            self._start_key = nxt.get("key")
            self._start_docid = nxt.get("id")
        if self._skip_left:
            cut = min(self._skip_left, len(page))
            self._skip_left -= cut
            page = page[cut:]
        if self._remaining is not None:
            self._remaining -= len(page)
            if self._remaining <= 0:
                self._done = True
        return [Row(r) for r in page]

    def _note_group(self, page: List[Any], nxt: Any) -> None:
        """Count the rows of ``page`` (and earlier pages) sharing the next start row's key."""
        nxt_id = nxt.get("id")
        nxt_key = codec.encode(nxt.get("key"))
        same_key = same_row = 0
        for row in reversed(page):
            if codec.encode(row.get("key")) != nxt_key:
                break
            same_key += 1
            if same_row == same_key - 1 and row.get("id") == nxt_id:
                same_row += 1
        continues = (same_key == len(page) and self._group_first is not None
                     and codec.encode(self._start_key) == nxt_key)
        if continues:
            self._seen += same_key
        else:
            self._seen = same_key
            self._group_first = page[len(page) - same_key].get("id") if same_key else nxt_id
        if same_row == len(page) and continues and self._start_docid == nxt_id:
            self._dupes += same_row
        else:
            self._dupes = same_row

    def __iter__(self) -> Iterator[Row]:
        while True:
            if get_reactor().in_async_context():
                raise RuntimeError(
                    "`for row in pager` blocks; inside a running reactor use "
                    "`rows = yield pager.next_page()` (in @relax) or `async for row in pager`"
                )
            rows = self.next_page()
            if not rows:
                return
            yield from rows

    async def __aiter__(self) -> AsyncIterator[Row]:
        while True:
            rows = await self.next_page()
            if not rows:
                return
            for row in rows:
                yield row


def _same_key(a: Any, b: Any) -> bool:
    """True if two decoded view keys are the same JSON value."""
    return codec.encode(a) == codec.encode(b)
