"""Cookie authentication (``_session``) and the ``_users`` helpers.

``couch.login()`` posts the credentials once to ``/_session`` and from then on
every request of that Couch (and of the Databases it hands out) sends the
``AuthSession`` cookie instead of a Basic ``Authorization`` header.  The
cookie lives in memory only.  When the server answers 401 (the cookie expired,
or the server restarted with a new secret), the request is sent again once
after a fresh login; the caller sees one answer either way.  A refreshed
cookie the server sends along with any response is picked up as well.

Credentials never appear in a repr, a log line or an exception.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Dict, Generator, Iterable, List, Optional, Tuple, overload

from loop import Operation, Request, Status
from loop.redact import describe

from .contract import io_methods
from .exceptions import BadResponse, CouchError, Unauthorized
from .http import Server, finish
from .results import DataCallback
from .urls import doc_path

if TYPE_CHECKING:  # pragma: no cover
    from .document import Document

__all__ = ["SessionMixin", "CookieSession", "session_credentials"]

log = logging.getLogger("corduroy")

Callback = Optional[Callable[[Any, Status], Any]]

#: Prefix of the ids of user documents in ``_users``.
USER_PREFIX = "org.couchdb.user:"


def _login_headers(server: Server) -> List[str]:
    """JSON request headers without any Basic credentials or cookie."""
    return [h for h in server.headers_json if not h.lower().startswith(("authorization:", "cookie:"))]


def _auth_cookie(status: Status) -> Optional[str]:
    """The ``AuthSession=...`` pair a ``_session`` answer set, if any."""
    value = status.headers.get("Set-Cookie", "")
    pair = value.split(";", 1)[0].strip()
    if pair.startswith("AuthSession=") and len(pair) > len("AuthSession="):
        return pair
    return None


def _with_cookie(headers: Optional[List[str]], cookie: str) -> List[str]:
    """``headers`` with any credentials replaced by ``cookie`` (a new list)."""
    kept = [h for h in headers or () if not h.lower().startswith(("authorization:", "cookie:"))]
    kept.append("Cookie: " + cookie)
    return kept


def _check_credentials(user: Any, password: Any) -> None:
    # Never echo the values: one of them is a password.
    if not isinstance(user, str) or not user:
        raise TypeError("the user name must be a non-empty str")
    if not isinstance(password, str):
        raise TypeError("the password must be a str")


class CookieSession:
    """A cookie session on one :class:`~corduroy.http.Server`, kept alive across expiry.

    Installed in ``server.failure_hooks`` by :meth:`SessionMixin.login`.  On a
    401 answer it logs in again (one login for any number of requests failing
    at once) and sends each failed request again, once, with the new cookie.
    If the new login fails, each request completes with its own 401.
    Streaming requests (continuous feeds) are not resent.
    """

    __slots__ = ("user", "_password", "_waiting", "_second_try")

    def __init__(self, user: str, password: str) -> None:
        self.user = user
        self._password = password
        self._waiting: List[Tuple[Request, CouchError]] = []
        self._second_try: set = set()

    def __repr__(self) -> str:
        return "<CookieSession user=%r>" % (self.user,)

    @property
    def credentials(self) -> Tuple[str, str]:
        """``(user, password)`` of the session (kept in memory only)."""
        return self.user, self._password

    def login_body(self) -> Dict[str, str]:
        """The JSON body of a ``POST /_session``."""
        return {"name": self.user, "password": self._password}

    # -- the failure hook -------------------------------------------------
    def handle(self, server: Server, request: Request, exc: Exception) -> bool:
        """Take over a request that failed with 401: renew the session, send it again once."""
        if not isinstance(exc, Unauthorized) or id(request) in self._second_try:
            return False
        if request.on_chunk is not None or _is_session_url(server, request.url):
            return False
        op = request.context[0]
        if op.done():
            return False
        cookie = server._cookie
        if cookie is not None and request.headers and ("Cookie: " + cookie) not in request.headers:
            # Sent with an older cookie than the one we hold now: no new login needed.
            self._send_again(server, request, cookie)
            return True
        self._waiting.append((request, exc))
        if len(self._waiting) == 1:
            log.debug("cookie session rejected (401); logging in again")
            server.request("POST", "/_session", json=self.login_body(), headers=_login_headers(server),
                           what="login").add_callback(lambda data, status: self._logged_in(server, status))
        return True

    def _logged_in(self, server: Server, status: Status) -> None:
        waiting, self._waiting = self._waiting, []
        installed = self in server.failure_hooks  # not after a logout (or another login) meanwhile
        cookie = _auth_cookie(status) if status.ok and installed else None
        if cookie is None:
            if installed and status.error is Unauthorized:
                # The credentials no longer work: the session is over.
                log.warning("cookie session could not be renewed: %s", status.exception)
                self.end(server)
            elif installed and status.ok:
                log.warning("cookie session could not be renewed: the server set no AuthSession cookie")
            elif installed:
                log.debug("cookie session renewal failed: %s", status.exception)
            for request, exc in waiting:
                request.context[0].complete(exc.body, Status(exc.code, exception=exc,
                                                             header_lines=request.header_lines))
            return
        server.set_cookie(cookie)
        for request, _exc in waiting:
            self._send_again(server, request, cookie)

    def _send_again(self, server: Server, request: Request, cookie: str) -> None:
        if request.context[0].done():  # cancelled meanwhile
            return
        request.headers = _with_cookie(request.headers, cookie)
        original = request.on_done
        marks = self._second_try

        def second_answer(req: Request) -> None:
            req.on_done = original
            marks.add(id(req))
            try:
                original(req)  # type: ignore[misc]
            finally:
                marks.discard(id(req))

        request.on_done = second_answer
        server.resubmit(request)

    def end(self, server: Server) -> None:
        """Forget the session on ``server``: no cookie, no renewal (Basic auth again, if any)."""
        if self in server.failure_hooks:
            server.failure_hooks.remove(self)
            server.set_cookie(None)


def _is_session_url(server: Server, url: str) -> bool:
    rest = url[len(server.url):] if url.startswith(server.url) else url
    return rest == "/_session" or rest.startswith(("/_session?", "/_session/"))


def current_session(server: Server) -> Optional[CookieSession]:
    """The :class:`CookieSession` installed on ``server``, if any."""
    for hook in server.failure_hooks:
        if isinstance(hook, CookieSession):
            return hook
    return None


def session_credentials(server: Server) -> Optional[Tuple[str, str]]:
    """The credentials requests on ``server`` authenticate with: Basic auth's, else the session's."""
    if server._credentials is not None:
        return server._credentials
    session = current_session(server)
    return session.credentials if session is not None else None


@io_methods
class SessionMixin:
    """Couch methods for cookie sessions and users."""

    server: Server
    _run: Callable[..., Any]

    @overload
    def login(self, user: Optional[str] = None, password: Optional[str] = None,
              callback: None = None) -> Document: ...

    @overload
    def login(self, user: Optional[str] = None, password: Optional[str] = None,
              callback: DataCallback[Document] = ...) -> Operation[Document]: ...

    def login(self, user: Optional[str] = None, password: Optional[str] = None,
              callback: Callback = None) -> Any:
        """Start a cookie session (``POST /_session``); returns ``{ok, name, roles}``.

        Without arguments it logs in with the credentials the Couch was
        created with.  Afterwards requests send the ``AuthSession`` cookie
        instead of Basic auth, and an expired session is renewed by itself.
        Raises Unauthorized for wrong credentials.

        >>> couch = Couch("http://127.0.0.1:5984")
        >>> couch.login("alice", "s3cret")          # doctest: +SKIP
        {'ok': True, 'name': 'alice', 'roles': []}
        """
        if user is None and password is None:
            if self.server._credentials is None:
                raise ValueError("login needs a user and a password: none given and the Couch has none")
            user, password = self.server._credentials
        _check_credentials(user, password)
        session = CookieSession(user, password)  # type: ignore[arg-type]
        server = self.server

        def started(data: Any, status: Status) -> Any:
            cookie = _auth_cookie(status)
            if cookie is None:
                raise BadResponse(reason="the server accepted the login but set no AuthSession cookie",
                                  code=status.code, method="POST", url=server.url + "/_session")
            previous = current_session(server)
            if previous is not None:
                server.failure_hooks.remove(previous)
            server.failure_hooks.append(session)
            server.set_cookie(cookie)
            return data

        return finish(server.request("POST", "/_session", json=session.login_body(),
                                     headers=_login_headers(server), transform=started, what="login"),
                      callback)

    @overload
    def logout(self, callback: None = None) -> Document: ...

    @overload
    def logout(self, callback: DataCallback[Document]) -> Operation[Document]: ...

    def logout(self, callback: Callback = None) -> Any:
        """End the cookie session (``DELETE /_session``) and forget the cookie.

        Requests go back to the Couch's own credentials (Basic auth), if it has any.
        """
        return self._run(self._logout(), callback)

    def _logout(self) -> Generator[Any, Any, Any]:
        server = self.server
        try:
            result = yield server.request("DELETE", "/_session")
        finally:
            session = current_session(server)
            if session is not None:
                session.end(server)
            else:
                server.set_cookie(None)
        return result

    @overload
    def session(self, callback: None = None) -> Document: ...

    @overload
    def session(self, callback: DataCallback[Document]) -> Operation[Document]: ...

    def session(self, callback: Callback = None) -> Any:
        """Who the server thinks we are (``GET /_session``): the ``userCtx`` ``{name, roles}``."""
        return finish(self.server.request("GET", "/_session",
                                          transform=lambda data, status: data.get("userCtx")), callback)

    @overload
    def create_user(self, name: str, password: str, roles: Iterable[str] = (), callback: None = None,
                    **fields: Any) -> Document: ...

    @overload
    def create_user(self, name: str, password: str, roles: Iterable[str] = (), callback: DataCallback[Document] = ...,
                    **fields: Any) -> Operation[Document]: ...

    def create_user(self, name: str, password: str, roles: Iterable[str] = (), callback: Callback = None,
                    **fields: Any) -> Any:
        """Create user ``name`` in ``_users`` (``org.couchdb.user:NAME``); returns ``{ok, id, rev}``.

        ``roles`` is a list of role names; other ``fields`` are stored in the
        user document.  Raises Conflict if the user exists.
        """
        _check_credentials(name, password)
        if isinstance(roles, str):
            raise TypeError("roles is a list of role names, not a str")
        roles = list(roles)
        for role in roles:
            if not isinstance(role, str):
                raise TypeError("role names are strings, got %s" % type(role).__name__)
        for key in fields:
            if key in ("_id", "name", "password", "roles", "type"):
                raise TypeError("create_user sets %r itself" % key)
        doc = dict(fields)
        doc.update({"_id": USER_PREFIX + name, "name": name, "password": password, "roles": roles,
                    "type": "user"})
        return finish(self.server.request("PUT", "/_users/" + doc_path(doc["_id"]), json=doc,
                                          what="user document %s" % describe(doc["_id"])), callback)

    @overload
    def delete_user(self, name: str, callback: None = None) -> Document: ...

    @overload
    def delete_user(self, name: str, callback: DataCallback[Document]) -> Operation[Document]: ...

    def delete_user(self, name: str, callback: Callback = None) -> Any:
        """Delete user ``name`` from ``_users``; returns ``{ok, id, rev}`` (NotFound if there is none)."""
        if not isinstance(name, str) or not name:
            raise TypeError("the user name must be a non-empty str")
        return self._run(self._delete_user(name), callback)

    def _delete_user(self, name: str) -> Generator[Any, Any, Any]:
        path = "/_users/" + doc_path(USER_PREFIX + name)
        doc = yield self.server.request("GET", path)
        return (yield self.server.request("DELETE", path, params={"rev": doc["_rev"]}))
