"""URL building: quoting of names and ids, query strings, credentials.

Every database name, document id, attachment name, design document and view
name is quoted as one path segment, so no value can reach another path or
add a query parameter: ``a/b`` becomes ``a%2Fb`` and ``../_config`` stays a
document id.  ``_design/...`` and ``_local/...`` ids keep their prefix as a
path segment, as CouchDB expects.
"""
from __future__ import annotations

import re
from typing import Any, List, Mapping, Optional, Tuple
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from loop.redact import describe

from . import codec

__all__ = [
    "quote_segment", "doc_path", "check_doc_id", "db_path", "validate_db_name", "encode_query",
    "split_credentials", "JSON_PARAMS",
]

#: CouchDB's rule for database names (plus its system databases).
_DB_NAME = re.compile(r"^[a-z][a-z0-9_$()+/-]*\Z")
_SYSTEM_DBS = {"_users", "_replicator", "_global_changes", "_dbs", "_nodes"}
_MAX_DB_NAME = 238

#: Ids made only of characters that need no quoting (and no leading "_").
_PLAIN = re.compile(r"(?!\.{1,2}\Z)[A-Za-z0-9.~-][A-Za-z0-9_.~-]*\Z").match


#: Query parameters whose values CouchDB reads as JSON.
JSON_PARAMS = frozenset({
    "key", "keys", "startkey", "endkey", "start_key", "end_key", "startkey_docid_json",
})


def quote_segment(value: str) -> str:
    """Quote ``value`` as a single path segment (``/`` included).

    ``.`` and ``..`` are quoted too, so they can never act as dot segments.
    """
    if not isinstance(value, str):
        raise TypeError("expected a str for a name or id, got %s" % type(value).__name__)
    if value in (".", ".."):
        return value.replace(".", "%2E")
    return quote(value, safe="")


def doc_path(doc_id: str) -> str:
    """The path of a document id inside its database, quoted.

    Raises ValueError for an id no document can have (see :func:`check_doc_id`).

    >>> doc_path("a/b c")
    'a%2Fb%20c'
    >>> doc_path("_design/app")
    '_design/app'
    """
    try:
        if _PLAIN(doc_id) is not None:  # nothing to quote (the common case)
            return doc_id
    except TypeError:
        pass
    check_doc_id(doc_id)
    if doc_id[0] == "_":
        prefix = _DESIGN if doc_id.startswith(_DESIGN) else _LOCAL
        return prefix + quote_segment(doc_id[len(prefix):])
    return quote_segment(doc_id)


_DESIGN = "_design/"
_LOCAL = "_local/"


def check_doc_id(doc_id: Any) -> str:
    """Return ``doc_id`` if a document can have it; raise TypeError or ValueError (before any I/O) if not.

    Ids are non-empty strings.  Only ``_design/NAME`` and ``_local/NAME``
    start with ``_``: any other leading underscore names a database
    endpoint (``_all_docs``, ``_security``, ``_revs_limit``...), never a
    document, so it is refused.

    >>> check_doc_id("_design/app")
    '_design/app'
    >>> check_doc_id("_security")
    Traceback (most recent call last):
    ...
    ValueError: invalid document id '_security': only _design/... and _local/... ids may start with '_' ...
    """
    if not isinstance(doc_id, str):
        raise TypeError("document ids are strings, not %s" % type(doc_id).__name__)
    if not doc_id:
        raise ValueError("a document id cannot be empty")
    if doc_id[0] == "_":
        for prefix in (_DESIGN, _LOCAL):
            if doc_id.startswith(prefix):
                if len(doc_id) > len(prefix):
                    return doc_id
                raise ValueError("invalid document id %s: it needs a name after %s" % (describe(doc_id), prefix))
        raise ValueError(
            "invalid document id %s: only _design/... and _local/... ids may start with '_' (other names "
            "starting with '_' are database endpoints, not documents)" % describe(doc_id))
    return doc_id


def validate_db_name(name: str) -> str:
    """Return ``name`` if it is a valid CouchDB database name, else raise ValueError.

    Names start with a lower-case letter and hold lower-case letters, digits
    and ``_$()+-/``; system databases (``_users``, ``_replicator``...) pass.
    """
    if not isinstance(name, str):
        raise TypeError("database names are strings, not %s" % type(name).__name__)
    if name in _SYSTEM_DBS:
        return name
    if not name or len(name) > _MAX_DB_NAME or not _DB_NAME.match(name):
        raise ValueError(
            "invalid database name %s: it must start with a lower-case letter and contain only "
            "a-z, 0-9 and _$()+-/ (at most %d characters)" % (describe(name), _MAX_DB_NAME)
        )
    return name


def db_path(name: str) -> str:
    """The quoted path of database ``name`` (validated) from the server root."""
    return "/" + quote_segment(validate_db_name(name))


def _param_value(name: str, value: Any) -> str:
    if name in JSON_PARAMS:  # one of a few known names: safe to show
        return codec.encode(value, "query parameter %r" % name).decode("utf-8")
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (dict, list)):
        return codec.encode(value, "query parameter %s" % describe(name)).decode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):  # str() would send "b'...'"
        raise TypeError("query parameter %s is %s: pass a str" % (describe(name), type(value).__name__))
    return str(value)


def encode_query(params: Optional[Mapping[str, Any]]) -> str:
    """A query string (with its leading ``?``) from ``params``; None values are left out.

    >>> encode_query({"startkey": ["a", 1], "limit": 10, "descending": True})
    '?startkey=%5B%22a%22%2C1%5D&limit=10&descending=true'
    """
    if not params:
        return ""
    parts: List[str] = []
    for name, value in params.items():
        if value is None:
            continue
        parts.append(quote(str(name), safe="") + "=" + quote(_param_value(name, value), safe=""))
    return "?" + "&".join(parts) if parts else ""


def split_credentials(url: str) -> Tuple[str, Optional[Tuple[str, str]]]:
    """Split ``user:password@`` out of ``url``: ``(url_without, (user, password) or None)``."""
    if not isinstance(url, str):
        raise TypeError("a CouchDB URL is a str, not %s" % type(url).__name__)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        # Name the scheme only when the URL really has one: "admin:pw@host" would show "admin".
        shown = " (this one starts with %s)" % describe(parts.scheme + "://") if "://" in url else ""
        raise ValueError("CouchDB URLs start with http:// or https://%s" % shown)
    if not parts.hostname:
        raise ValueError("the URL has no host")
    credentials = None
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        credentials = (unquote(user), unquote(password))
    clean = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    return clean, credentials
