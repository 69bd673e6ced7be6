"""Custom request headers, JWT and proxy authentication.

Headers are given as a mapping of names to values, per client
(``Couch(url, headers={...})``, ``Database(url, headers=...)``) or per call
(the :func:`headers` block).  Each is checked before any I/O: a name must be
an HTTP token (no ``:``, space, CR or LF), a value a string of printable
ASCII (no CR or LF).  A bad one raises ValueError (TypeError for a value of
the wrong type) that names the header but never shows its value: it may be
a secret.  corduroy never shows any header value anywhere (repr, log line,
exception), so every header is treated as a secret.

Authentication helpers:

- ``jwt="..."`` (a client option) sends ``Authorization: Bearer <token>``;
- ``auth=ProxyAuth(user, roles, secret=...)`` sends CouchDB's proxy
  authentication headers (see :class:`ProxyAuth`).
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
from typing import Any, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

from .call_options import HeaderSet, applied, current

__all__ = ["headers", "ProxyAuth", "check_headers", "check_jwt", "merge_headers"]

#: An HTTP header name: a token (RFC 9110), so never ``:``, a space, CR or LF.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
#: A header value: printable ASCII and tabs (no CR, LF or other control characters).
_VALUE = re.compile(r"[\t\x20-\x7e]*\Z")

#: Headers corduroy (or libcurl) sets itself, per request.
RESERVED = frozenset({"content-type", "content-length", "content-encoding", "transfer-encoding", "host"})

#: ``(names in lower case, "Name: value" lines)``: a checked set of headers.


def check_headers(given: Optional[Mapping[str, str]], what: str = "headers") -> HeaderSet:
    """Check a mapping of headers and return it as ``(lower-case names, lines)``; raise before any I/O.

    >>> check_headers({"X-Trace": "1"})
    (frozenset({'x-trace'}), ('X-Trace: 1',))
    """
    if given is None:
        return frozenset(), ()
    if not isinstance(given, Mapping):
        raise TypeError("%s must be a mapping of header names to values (a dict), got a %s"
                        % (what, type(given).__name__))
    names = set()
    lines = []
    for position, (name, value) in enumerate(given.items(), 1):
        if not isinstance(name, str):
            raise TypeError("%s: header name #%d is a %s, not a str" % (what, position, type(name).__name__))
        if not _TOKEN.match(name):
            # The name is not shown either: a whole "Authorization: Bearer ..." line may have been given as one.
            raise ValueError("%s: header name #%d is not a valid HTTP header name (a ':', a space, CR, LF or "
                             "another character not allowed in a name); give the name alone, as in "
                             "{'X-Trace': '1'}" % (what, position))
        lower = name.lower()
        if lower in RESERVED:
            raise ValueError("%s: corduroy sets the %s header itself; it cannot be given" % (what, name))
        if lower in names:
            raise ValueError("%s: header %s is given twice (names are case-insensitive)" % (what, name))
        if not isinstance(value, str):
            raise TypeError("%s: the value of header %s must be a str, got a %s"
                            % (what, name, type(value).__name__))
        if not _VALUE.match(value):
            raise ValueError("%s: the value of header %s contains a CR, LF, control or non-ASCII character "
                             "(the value is not shown: it may be a secret)" % (what, name))
        value = value.strip()
        names.add(lower)
        # libcurl sends "Name;" as a header with an empty value ("Name:" would remove it).
        lines.append("%s: %s" % (name, value) if value else "%s;" % name)
    return frozenset(names), tuple(lines)


def merge_headers(lines: List[str], extra: HeaderSet) -> List[str]:
    """``lines`` with the headers of ``extra`` added, replacing any of the same names (a new list)."""
    names, added = extra
    if not added:
        return lines
    kept = [line for line in lines if _line_name(line) not in names]
    return kept + list(added)


def _line_name(line: str) -> str:
    end = len(line)
    for sep in (":", ";"):
        at = line.find(sep)
        if 0 <= at < end:
            end = at
    return line[:end].strip().lower()


def check_jwt(token: Any) -> str:
    """A JSON Web Token checked for use in ``Authorization: Bearer``; raise before any I/O (never showing it)."""
    if not isinstance(token, str):
        raise TypeError("jwt must be a str (an encoded JSON Web Token), got a %s" % type(token).__name__)
    if not token or not re.match(r"[A-Za-z0-9._~+/=-]+\Z", token):
        raise ValueError("jwt must be an encoded JSON Web Token (base64url parts joined by '.'), with no "
                         "space, CR or LF (the token is not shown)")
    return token


class ProxyAuth:
    """CouchDB proxy authentication: act as ``user`` with ``roles``, vouched for by a trusted proxy.

    Sends ``X-Auth-CouchDB-UserName``, ``X-Auth-CouchDB-Roles`` (the roles
    joined by commas) and, when ``secret`` (CouchDB's ``[chttpd_auth] secret``)
    is given, ``X-Auth-CouchDB-Token``: the hex HMAC of the user name keyed
    by the secret, with ``algorithm`` (``"sha256"`` by default, as CouchDB 3
    expects; ``"sha1"`` for CouchDB 2).  The server must have
    ``{chttpd_auth, proxy_authentication_handler}`` in ``[chttpd]
    authentication_handlers``.

    Example::

        couch = Couch("http://127.0.0.1:5984", auth=ProxyAuth("alice", ["staff"], secret="s3cret"))

    The secret and the token never show in a repr, log line or exception.
    """

    __slots__ = ("user", "roles", "_secret", "algorithm")

    def __init__(self, user: str, roles: Iterable[str] = (), secret: Union[str, bytes, None] = None,
                 algorithm: str = "sha256") -> None:
        if not isinstance(user, str) or not user:
            raise TypeError("ProxyAuth: user must be a non-empty str")
        if not _VALUE.match(user):
            raise ValueError("ProxyAuth: user contains a CR, LF, control or non-ASCII character")
        if isinstance(roles, str):
            raise TypeError("ProxyAuth: roles must be a list of str, not one str")
        roles = list(roles)
        for role in roles:
            if not isinstance(role, str) or not role:
                raise TypeError("ProxyAuth: each role must be a non-empty str")
            if "," in role or not _VALUE.match(role):
                raise ValueError("ProxyAuth: a role contains a comma, CR, LF, control or non-ASCII character")
        if secret is not None and not isinstance(secret, (str, bytes)):
            raise TypeError("ProxyAuth: secret must be a str or bytes, got a %s" % type(secret).__name__)
        if algorithm not in hashlib.algorithms_available:
            raise ValueError("ProxyAuth: unknown hash algorithm %r" % (algorithm,))
        self.user = user
        self.roles = roles
        self._secret = secret.encode("utf-8") if isinstance(secret, str) else secret
        self.algorithm = algorithm

    @property
    def token(self) -> Optional[str]:
        """The ``X-Auth-CouchDB-Token`` value (None without a secret)."""
        if self._secret is None:
            return None
        return hmac.new(self._secret, self.user.encode("utf-8"), self.algorithm).hexdigest()

    def header_lines(self) -> List[str]:
        """The request header lines this authentication adds."""
        lines = ["X-Auth-CouchDB-UserName: " + self.user]
        if self.roles:
            lines.append("X-Auth-CouchDB-Roles: " + ",".join(self.roles))
        token = self.token
        if token is not None:
            lines.append("X-Auth-CouchDB-Token: " + token)
        return lines

    def __repr__(self) -> str:
        return "<ProxyAuth user=%r roles=%r%s>" % (self.user, self.roles,
                                                   " secret=***" if self._secret is not None else "")


#: Per-call headers set by :func:`headers` (None: none).
@contextlib.contextmanager
def headers(extra: Mapping[str, str]) -> Iterator[None]:
    """Send ``extra`` headers with the requests made inside the ``with`` block.

    Example::

        with corduroy.headers({"X-Trace": "42"}):
            doc = db.get("x")                  # sent with X-Trace: 42

    They are added to the client's headers, replacing any of the same name
    (an ``Authorization`` given here replaces the client's credentials for
    these requests).  Blocks nest (the inner one wins for a name both set).
    Like :func:`corduroy.timeouts`, it applies to requests *made* in the
    block, in any calling style, and follows asyncio tasks and threads like
    any context variable.  Names and values are checked on entry
    (ValueError/TypeError, before any I/O); values never show in an error.
    """
    names, lines = check_headers(extra, "corduroy.headers()")
    enclosing = current()
    outer = enclosing.headers if enclosing is not None else None
    if outer is not None:
        merged = merge_headers(list(outer[1]), (names, lines))
        names, lines = outer[0] | names, tuple(merged)
    with applied(headers=(names, lines)):
        yield


#: What ``auth=`` takes: a ``(user, password)`` tuple or a :class:`ProxyAuth`.
Auth = Union[Tuple[str, str], ProxyAuth]
