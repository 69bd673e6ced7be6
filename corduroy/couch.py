"""Couch: a CouchDB server, its databases and its server-wide endpoints."""
from __future__ import annotations

from typing import Any, Callable, Generator, Optional

from loop import Status, get_reactor, trampoline

from .contract import blocking, io_methods
from .database import Database, http2_curl_options
from .exceptions import NotFound, PreconditionFailed
from .http import CouchOperation, Server, finish
from .request_headers import Auth
from .server_api import ServerMixin
from .session import SessionMixin
from .urls import db_path, validate_db_name

__all__ = ["Couch"]

Callback = Optional[Callable[[Any, Status], Any]]


@io_methods
class Couch(ServerMixin, SessionMixin):
    """A CouchDB server.

    ``Couch()`` is ``http://127.0.0.1:5984`` (or ``corduroy.defaults.url``);
    credentials go inline (``http://user:pass@host:5984``) or as
    ``auth=(user, password)``.  Creating it does no I/O.

    >>> Couch("http://admin:secret@127.0.0.1:5984")
    <Couch 'http://127.0.0.1:5984'>
    """

    def __init__(self, url: Optional[str] = None, auth: Optional[Auth] = None,
                 full_commit: Optional[bool] = None, http2: bool = False, **server_options: Any) -> None:
        self.server = Server(url, auth=auth, full_commit=full_commit, **server_options)
        if http2:  # HTTP/2, multiplexed (see corduroy.database.http2_curl_options)
            self.server.curl_options = http2_curl_options(self.server.url, self.server.curl_options)

    @property
    def url(self) -> str:
        """The server's URL (without credentials)."""
        return self.server.url

    def __repr__(self) -> str:
        return "<Couch %r>" % (self.server.url,)

    def _run(self, gen: Generator[Any, Any, Any], callback: Callback) -> Any:
        reactor = get_reactor()
        return finish(trampoline(gen, reactor, CouchOperation(reactor)), callback)

    def _database(self, name: str) -> Database:
        return Database(name, server=self.server)

    # -- databases ------------------------------------------------------
    def create(self, name: str, callback: Callback = None, **options: Any) -> Any:
        """Create database ``name``; returns its :class:`Database`.

        Raises PreconditionFailed if it exists.  Options: ``q``, ``n``,
        ``partitioned=True``.
        """
        path = db_path(name)
        db = self._database(name)
        return finish(self.server.request("PUT", path, params=options or None,
                                          transform=lambda data, status: db), callback)

    def delete(self, name: str, callback: Callback = None) -> Any:
        """Delete database ``name``; raises NotFound if there is none."""
        return finish(self.server.request("DELETE", db_path(name)), callback)

    def db(self, name: str, create_if_missing: bool = False, callback: Callback = None,
           coalesce: bool = False) -> Any:
        """The :class:`Database` ``name``, checked to exist (NotFound otherwise).

        With ``create_if_missing=True`` a missing database is created;
        ``coalesce=True`` makes it batch concurrent single-document calls.
        """
        validate_db_name(name)
        return self._run(self._db(name, create_if_missing, coalesce), callback)

    def _db(self, name: str, create_if_missing: bool, coalesce: bool = False) -> Generator[Any, Any, Database]:
        db = self._database(name)
        db.coalesce = coalesce
        try:
            yield self.server.request("HEAD", db_path(name))
        except NotFound:
            if not create_if_missing:
                raise NotFound(reason="Database %r does not exist." % name, error="not_found", code=404,
                               method="HEAD", url=db.url) from None
            try:
                yield self.server.request("PUT", db_path(name))
            except PreconditionFailed:
                pass  # created meanwhile by someone else: fine
        return db

    def contains(self, name: str, callback: Callback = None) -> Any:
        """True if database ``name`` exists."""
        validate_db_name(name)
        return self._database(name).exists(callback=callback)

    @blocking
    def __contains__(self, name: str) -> bool:
        """``name in couch`` (blocking; inside a reactor use ``yield couch.contains(name)``)."""
        if get_reactor().in_async_context():
            raise RuntimeError("'name in couch' blocks; inside a reactor use `yield couch.contains(name)`")
        return bool(self.contains(name))

    def all_dbs(self, callback: Callback = None, **options: Any) -> Any:
        """The names of all databases on the server."""
        return finish(self.server.request("GET", "/_all_dbs", params=options or None), callback)

    def info(self, callback: Callback = None) -> Any:
        """The server's welcome document (``GET /``): ``{couchdb, version, vendor, features, ...}``.

        >>> couch.info()["version"]                   # doctest: +SKIP
        '3.4.3'
        """
        return finish(self.server.request("GET", "/"), callback)

    def version(self, callback: Callback = None) -> Any:
        """The server's version string."""
        return finish(self.server.request("GET", "/", transform=lambda data, status: data.get("version")),
                      callback)

    def uuids(self, count: int = 1, callback: Callback = None) -> Any:
        """A list of ``count`` fresh server-generated uuids."""
        if not isinstance(count, int) or count < 1:
            raise ValueError("count must be a positive int")
        return finish(self.server.request("GET", "/_uuids", params={"count": count},
                                          transform=lambda data, status: list(data["uuids"])), callback)

    @property
    def users(self) -> Database:
        """The ``_users`` system database."""
        return self._database("_users")

    @property
    def replicator(self) -> Database:
        """The ``_replicator`` system database."""
        return self._database("_replicator")

    def database(self, name: str) -> Database:
        """The :class:`Database` ``name`` on this server, without any I/O (no existence check)."""
        validate_db_name(name)
        return self._database(name)

    @blocking
    def __getitem__(self, name: str) -> Database:
        """``couch["name"]``: the :class:`Database`, checked to exist (blocking; NotFound otherwise).

        NotFound is also a KeyError.  Inside a reactor use ``yield
        couch.db(name)``; :meth:`database` gives the object with no I/O.
        """
        validate_db_name(name)
        if get_reactor().in_async_context():
            raise RuntimeError("couch[name] blocks (it checks that the database exists); inside a reactor use "
                               "`yield couch.db(name)`, or couch.database(name) for no check")
        return self.db(name)  # type: ignore[no-any-return]
