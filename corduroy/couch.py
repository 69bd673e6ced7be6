"""Couch: a CouchDB server, its databases and its server-wide endpoints."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Generator, List, Mapping, Optional, Sequence, Union, overload

from loop import Operation, Status, get_reactor, trampoline

from .cluster import Cluster, NodeMap
from .contract import blocking, io_methods
from .database import Database, http2_curl_options
from .exceptions import NotFound, PreconditionFailed
from .http import CouchOperation, Server, finish
from .request_headers import Auth
from .results import BoolResult, DataCallback, ListResult, StrResult
from .server_api import ServerMixin
from .session import SessionMixin
from .urls import db_path, split_credentials, validate_db_name

if TYPE_CHECKING:  # pragma: no cover
    from .document import Document

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

    def __init__(self, url: Union[None, str, Sequence[str]] = None, auth: Optional[Auth] = None,
                 full_commit: Optional[bool] = None, http2: bool = False, **server_options: Any) -> None:
        self.server = Server(url, auth=auth, full_commit=full_commit, **server_options)
        if http2:  # HTTP/2, multiplexed (see corduroy.database.http2_curl_options)
            self.server.curl_options = http2_curl_options(self.server.url, self.server.curl_options)

    @property
    def url(self) -> str:
        """The server's URL (without credentials; in a cluster, the first node's)."""
        return self.server.url

    @property
    def cluster(self) -> Optional[Cluster]:
        """The :class:`~corduroy.cluster.Cluster` when this client talks to several nodes, else None."""
        return self.server.cluster

    @property
    def nodes(self) -> List[Dict[str, Any]]:
        """Each node's state: ``{url, name, up, in_flight, served, failures, last_error}`` (empty for one URL)."""
        return self.server.cluster.states() if self.server.cluster is not None else []

    @overload
    def discover_nodes(self, node_url: NodeMap, routing: bool = True, callback: None = None) -> ListResult[str]: ...

    @overload
    def discover_nodes(self, node_url: NodeMap, routing: bool = True,
                       callback: DataCallback[List[str]] = ...) -> Operation[List[str]]: ...

    def discover_nodes(self, node_url: NodeMap, routing: bool = True, callback: Callback = None) -> Any:
        """Add the other nodes of this server's cluster, found in ``GET /_membership``; returns their URLs.

        ``node_url`` maps a node name (``couchdb@10.0.0.2``) to its URL:
        a dict, or a function (returning None leaves a node out).  A name
        with no URL raises ValueError (nothing is added).  Credentials
        stay this client's.

        >>> couch = Couch("http://admin:pw@127.0.0.1:15984")            # doctest: +SKIP
        >>> couch.discover_nodes(lambda name: "http://127.0.0.1:%s" % name[7:12])  # doctest: +SKIP
        ['http://127.0.0.1:15984', 'http://127.0.0.1:15985', 'http://127.0.0.1:15986']
        """
        if not (callable(node_url) or isinstance(node_url, Mapping)):
            raise TypeError("node_url maps node names to URLs: a dict or a function, not %s"
                            % type(node_url).__name__)
        if not isinstance(routing, bool):
            raise TypeError("routing must be True or False")
        return self._run(self._discover(node_url, routing), callback)

    def _discover(self, node_url: NodeMap, routing: bool) -> Generator[Any, Any, List[str]]:
        membership = yield self.server.request("GET", "/_membership", plain=True)
        names = membership.get("cluster_nodes") or membership.get("all_nodes") or []
        urls = []
        for name in names:
            url = node_url.get(name) if isinstance(node_url, Mapping) else node_url(name)
            if url is None and isinstance(node_url, Mapping):
                raise ValueError("no URL for cluster node %r in node_url" % (name,))
            if url is not None:
                if not isinstance(url, str):
                    raise TypeError("node_url gave %s for %r, not a URL string" % (type(url).__name__, name))
                urls.append(split_credentials(url)[0])
        cluster = self.server.add_nodes(urls, routing=routing)
        return [node.url for node in cluster.nodes]

    def __repr__(self) -> str:
        return "<Couch %r>" % (self.server.url,)

    def _run(self, gen: Generator[Any, Any, Any], callback: Callback) -> Any:
        reactor = get_reactor()
        return finish(trampoline(gen, reactor, CouchOperation(reactor)), callback)

    def _database(self, name: str) -> Database:
        return Database(name, server=self.server)

    # -- databases ------------------------------------------------------
    @overload
    def create(self, name: str, callback: None = None, **options: Any) -> Database: ...

    @overload
    def create(self, name: str, callback: DataCallback[Database], **options: Any) -> Operation[Database]: ...

    def create(self, name: str, callback: Callback = None, **options: Any) -> Any:
        """Create database ``name``; returns its :class:`Database`.

        Raises PreconditionFailed if it exists.  Options: ``q``, ``n``,
        ``partitioned=True``.
        """
        path = db_path(name)
        db = self._database(name)
        if self.server.cluster is not None:
            self.server.cluster.forget(name)
        return finish(self.server.request("PUT", path, params=options or None,
                                          transform=lambda data, status: db), callback)

    @overload
    def delete(self, name: str, callback: None = None) -> Document: ...

    @overload
    def delete(self, name: str, callback: DataCallback[Document]) -> Operation[Document]: ...

    def delete(self, name: str, callback: Callback = None) -> Any:
        """Delete database ``name``; raises NotFound if there is none."""
        if self.server.cluster is not None:
            self.server.cluster.forget(validate_db_name(name))
        return finish(self.server.request("DELETE", db_path(name)), callback)

    @overload
    def db(self, name: str, create_if_missing: bool = False, callback: None = None,
           coalesce: bool = False) -> Database: ...

    @overload
    def db(self, name: str, create_if_missing: bool = False, callback: DataCallback[Database] = ...,
           coalesce: bool = False) -> Operation[Database]: ...

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

    @overload
    def contains(self, name: str, callback: None = None) -> BoolResult: ...

    @overload
    def contains(self, name: str, callback: DataCallback[bool]) -> Operation[bool]: ...

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

    @overload
    def all_dbs(self, callback: None = None, **options: Any) -> ListResult[str]: ...

    @overload
    def all_dbs(self, callback: DataCallback[List[str]], **options: Any) -> Operation[List[str]]: ...

    def all_dbs(self, callback: Callback = None, **options: Any) -> Any:
        """The names of all databases on the server."""
        return finish(self.server.request("GET", "/_all_dbs", params=options or None), callback)

    @overload
    def info(self, callback: None = None) -> Document: ...

    @overload
    def info(self, callback: DataCallback[Document]) -> Operation[Document]: ...

    def info(self, callback: Callback = None) -> Any:
        """The server's welcome document (``GET /``): ``{couchdb, version, vendor, features, ...}``.

        >>> couch.info()["version"]                   # doctest: +SKIP
        '3.4.3'
        """
        return finish(self.server.request("GET", "/"), callback)

    @overload
    def version(self, callback: None = None) -> StrResult: ...

    @overload
    def version(self, callback: DataCallback[str]) -> Operation[str]: ...

    def version(self, callback: Callback = None) -> Any:
        """The server's version string."""
        return finish(self.server.request("GET", "/", transform=lambda data, status: data.get("version")),
                      callback)

    @overload
    def uuids(self, count: int = 1, callback: None = None) -> ListResult[str]: ...

    @overload
    def uuids(self, count: int = 1, callback: DataCallback[List[str]] = ...) -> Operation[List[str]]: ...

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
