"""Server-wide endpoints of Couch: configuration, statistics, tasks, replication, cluster.

CouchDB 3 serves its configuration and statistics per node, under
``/_node/_local/...``; older servers (and pouchdb-server) serve the
configuration under ``/_config``.  :meth:`ServerMixin.config` asks once which
one the server has and remembers it on the :class:`~corduroy.http.Server`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Generator, List, Literal, Optional, Tuple, overload

from loop import Operation, Status, get_reactor
from loop.redact import describe

from .contract import io_methods
from .exceptions import BadRequest, NotFound
from .http import Server, finish
from .replication import Endpoint, replicate
from .results import DataCallback, ListResult
from .urls import quote_segment

if TYPE_CHECKING:  # pragma: no cover
    from .changes import DbUpdatesFeed, Listener
    from .document import Document

__all__ = ["ServerMixin"]

Callback = Optional[Callable[[Any, Status], Any]]

#: Where CouchDB 3 keeps this node's configuration, and where older servers keep it.
NODE_CONFIG = "/_node/_local/_config"
LEGACY_CONFIG = "/_config"


def _split_name(name: Optional[str], what: str) -> Tuple[Optional[str], Optional[str]]:
    """``"section"`` -> (section, None); ``"section/key"`` -> (section, key); None -> (None, None)."""
    if name is None:
        return None, None
    if not isinstance(name, str):
        raise TypeError("a %s name is a str like 'section' or 'section/key', not %s" % (what, type(name).__name__))
    section, sep, key = name.partition("/")
    if not section or (sep and not key):
        raise ValueError("invalid %s name %s: use 'section' or 'section/key'" % (what, describe(name)))
    return section, (key if sep else None)


def _config_value(value: Any) -> str:
    """CouchDB stores every configuration value as a string."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    raise TypeError("configuration values are strings (or numbers, booleans), not %s" % type(value).__name__)


@io_methods
class ServerMixin:
    """Couch methods for server-wide endpoints."""

    server: Server
    _run: Callable[..., Any]

    # -- configuration --------------------------------------------------
    @overload
    def config(self, name: Optional[str] = None, value: Any = None, delete: bool = False,
               callback: None = None) -> Any: ...

    @overload
    def config(self, name: Optional[str] = None, value: Any = None, delete: bool = False,
               callback: DataCallback[Any] = ...) -> Operation[Any]: ...

    def config(self, name: Optional[str] = None, value: Any = None, delete: bool = False,
               callback: Callback = None) -> Any:
        """Get, set or delete the server's configuration (or a section, or one key).

        ``name`` is ``"section"`` or ``"section/key"``.  Without ``value`` it
        returns the whole configuration, a section (a dict) or a key's value
        (a str).  With ``value`` it sets the key (or, given a section and a
        dict, every key in it) and returns None.  With ``delete=True`` it
        deletes the key and returns the value it had.

        >>> couch.config("log/level")                 # doctest: +SKIP
        'info'
        >>> couch.config("log/level", "debug")        # doctest: +SKIP
        """
        section, key = _split_name(name, "configuration")
        values: Optional[Dict[str, str]] = None
        if delete:
            if value is not None:
                raise ValueError("give either a value to set or delete=True, not both")
            if key is None:
                raise ValueError("delete=True needs a 'section/key' name")
        elif value is not None:
            if section is None:
                raise ValueError("setting a configuration value needs a 'section/key' name")
            if key is not None:
                values = {key: _config_value(value)}
            elif isinstance(value, dict):
                values = {}
                for k, v in value.items():
                    if not isinstance(k, str) or not k:
                        raise TypeError("configuration keys are non-empty strings")
                    values[k] = _config_value(v)
            else:
                raise TypeError("setting a whole section takes a dict of key: value")
        return self._run(self._config(section, key, values, delete), callback)

    def _config_root(self) -> Generator[Any, Any, str]:
        server = self.server
        root = getattr(server, "_config_root", None)
        if root is None:
            try:
                yield server.request("GET", NODE_CONFIG + "/couchdb")
                root = NODE_CONFIG
            except (NotFound, BadRequest):
                root = LEGACY_CONFIG
            server._config_root = root  # type: ignore[attr-defined]
        return root

    def _config(self, section: Optional[str], key: Optional[str], values: Optional[Dict[str, str]],
                delete: bool) -> Generator[Any, Any, Any]:
        root = yield from self._config_root()
        server = self.server
        if values is not None:
            base = root + "/" + quote_segment(section)  # type: ignore[arg-type]
            yield [server.request("PUT", base + "/" + quote_segment(k), json=v, what="configuration value")
                   for k, v in values.items()]
            return None
        path = root
        if section is not None:
            path += "/" + quote_segment(section)
            if key is not None:
                path += "/" + quote_segment(key)
        return (yield server.request("DELETE" if delete else "GET", path))

    # -- statistics and state -------------------------------------------
    @overload
    def stats(self, name: Optional[str] = None, callback: None = None) -> Any: ...

    @overload
    def stats(self, name: Optional[str] = None, callback: DataCallback[Any] = ...) -> Operation[Any]: ...

    def stats(self, name: Optional[str] = None, callback: Callback = None) -> Any:
        """Server statistics (``/_node/_local/_stats``), or one ``"group/metric"`` of them.

        Raises NotFound for an unknown name.

        >>> couch.stats("couchdb/request_time")["value"]["median"]   # doctest: +SKIP
        2.5
        """
        path = "/_node/_local/_stats"
        if name is None:
            return finish(self.server.request("GET", path), callback)
        if not isinstance(name, str) or not name or any(not part for part in name.split("/")):
            raise ValueError("a statistic is named 'group' or 'group/metric', got %s" % describe(name))
        path += "".join("/" + quote_segment(part) for part in name.split("/"))
        url = self.server.url + path

        def found(data: Any, status: Status) -> Any:
            if data is None:  # CouchDB answers null for a name it does not know
                raise NotFound(reason="no statistic named %s" % describe(name), error="not_found", method="GET",
                               url=url)
            return data

        return finish(self.server.request("GET", path, transform=found), callback)

    @overload
    def tasks(self, callback: None = None) -> ListResult[Document]: ...

    @overload
    def tasks(self, callback: DataCallback[List[Document]]) -> Operation[List[Document]]: ...

    def tasks(self, callback: Callback = None) -> Any:
        """The list of tasks running on the server (``_active_tasks``)."""
        return finish(self.server.request("GET", "/_active_tasks"), callback)

    @overload
    def dbs_info(self, names: List[str], callback: None = None) -> ListResult[Document]: ...

    @overload
    def dbs_info(self, names: List[str], callback: DataCallback[List[Document]]) -> Operation[List[Document]]: ...

    def dbs_info(self, names: List[str], callback: Callback = None) -> Any:
        """Information about several databases at once: a list of ``{key, info}`` (or ``{key, error}``)."""
        if isinstance(names, str) or not isinstance(names, (list, tuple)):
            raise TypeError("dbs_info takes a list of database names")
        for name in names:
            if not isinstance(name, str) or not name:
                raise TypeError("database names are non-empty strings, got %s" % describe(name))
        return finish(self.server.request("POST", "/_dbs_info", json={"keys": list(names)}), callback)

    @overload
    def up(self, callback: None = None) -> Document: ...

    @overload
    def up(self, callback: DataCallback[Document]) -> Operation[Document]: ...

    def up(self, callback: Callback = None) -> Any:
        """The node's health check (``/_up``): ``{"status": "ok", ...}``."""
        return finish(self.server.request("GET", "/_up"), callback)

    @overload
    def membership(self, callback: None = None) -> Document: ...

    @overload
    def membership(self, callback: DataCallback[Document]) -> Operation[Document]: ...

    def membership(self, callback: Callback = None) -> Any:
        """The cluster's nodes (``/_membership``): ``{all_nodes, cluster_nodes}``."""
        return finish(self.server.request("GET", "/_membership"), callback)

    @overload
    def system(self, callback: None = None) -> Document: ...

    @overload
    def system(self, callback: DataCallback[Document]) -> Operation[Document]: ...

    def system(self, callback: Callback = None) -> Any:
        """The node's Erlang VM statistics (``/_node/_local/_system``)."""
        return finish(self.server.request("GET", "/_node/_local/_system"), callback)

    @overload
    def node_info(self, callback: None = None) -> Document: ...

    @overload
    def node_info(self, callback: DataCallback[Document]) -> Operation[Document]: ...

    def node_info(self, callback: Callback = None) -> Any:
        """The name of the node answering (``/_node/_local``): ``{"name": "couchdb@..."}``."""
        return finish(self.server.request("GET", "/_node/_local"), callback)

    @overload
    def cluster_setup(self, ensure_dbs_exist: Optional[List[str]] = None, callback: None = None) -> Document: ...

    @overload
    def cluster_setup(self, ensure_dbs_exist: Optional[List[str]] = None,
                      callback: DataCallback[Document] = ...) -> Operation[Document]: ...

    def cluster_setup(self, ensure_dbs_exist: Optional[List[str]] = None, callback: Callback = None) -> Any:
        """How far the node's cluster setup went (``GET /_cluster_setup``): ``{"state": ...}``.

        ``state`` is ``"cluster_disabled"``, ``"single_node_disabled"``,
        ``"single_node_enabled"``, ``"cluster_enabled"`` or
        ``"cluster_finished"``; ``ensure_dbs_exist`` names the system
        databases to check (default ``_users``, ``_replicator``).  Setting a
        cluster up (the ``POST`` actions) is left to deployment tools.

        >>> couch.cluster_setup()["state"]             # doctest: +SKIP
        'cluster_finished'
        """
        params = None
        if ensure_dbs_exist is not None:
            if isinstance(ensure_dbs_exist, str) or not isinstance(ensure_dbs_exist, (list, tuple)) \
                    or not all(isinstance(n, str) and n for n in ensure_dbs_exist):
                raise TypeError("ensure_dbs_exist is a list of database names")
            params = {"ensure_dbs_exist": list(ensure_dbs_exist)}
        return finish(self.server.request("GET", "/_cluster_setup", params=params), callback)

    # The feed= literal decides the type: the answer once, or a live DbUpdatesFeed.
    @overload
    def db_updates(self, feed: Literal["normal", "longpoll"] = "normal", callback: None = None,
                   **options: Any) -> Document: ...

    @overload
    def db_updates(self, feed: Literal["normal", "longpoll"] = "normal", callback: DataCallback[Document] = ...,
                   **options: Any) -> Operation[Document]: ...

    @overload
    def db_updates(self, feed: Literal["continuous"], callback: Optional[Listener] = None,
                   **options: Any) -> DbUpdatesFeed: ...

    def db_updates(self, feed: str = "normal", callback: Any = None, **options: Any) -> Any:
        """Database events on the whole server (``/_db_updates``): ``{results, last_seq}``, or a live feed.

        Each result is ``{db_name, type, seq}`` with ``type`` ``"created"``,
        ``"updated"`` or ``"deleted"``.  ``feed`` is ``"normal"`` (what
        happened so far), ``"longpoll"`` (wait for the next event) or
        ``"continuous"``: with ``callback=listener`` that returns a listening
        :class:`~corduroy.changes.DbUpdatesFeed` calling
        ``listener(last_seq, events)``, as ``db.changes(feed="continuous")``
        does (see :meth:`follow_db_updates` for an iterator).  Options
        ``since`` (a ``last_seq``, or ``"now"``), ``limit``, ``descending``,
        ``timeout`` (ms, longpoll), ``heartbeat``.  Admins only; CouchDB 2
        and later (pouchdb-server has no such endpoint).

        >>> couch.db_updates(since="now", feed="longpoll", timeout=10000)   # doctest: +SKIP
        {'results': [{'db_name': 'recipes', 'type': 'created', 'seq': '...'}], 'last_seq': '...'}
        """
        if feed not in ("normal", "longpoll", "continuous"):
            raise ValueError("db_updates reads the normal, longpoll or continuous feed, not %s" % describe(feed))
        if feed == "continuous":
            from .changes import DbUpdatesFeed

            if callback is None:
                if not get_reactor().in_async_context():
                    raise TypeError("feed='continuous' needs callback=listener(last_seq, events); to iterate "
                                    "over events, use couch.follow_db_updates()")
                return DbUpdatesFeed(self.server, None, **options)
            return DbUpdatesFeed(self.server, callback, **options).listen()  # type: ignore[arg-type]
        for name in ("latency", "on_error"):
            if name in options:
                raise TypeError("%s= applies to feed='continuous' only" % name)
        since = options.get("since")
        if since is not None and (isinstance(since, bool) or not isinstance(since, (str, int))):
            raise TypeError("since is a seq from the server (str or int) or 'now', not %s" % describe(since))
        params: Dict[str, Any] = {"feed": feed}
        params.update((k, v) for k, v in options.items() if v is not None)
        timeout = None
        if feed == "longpoll" and self.server.timeout:
            # Long enough for the server's own wait (the request's deadline would end it first).
            wait = params.get("timeout")
            seconds = wait / 1000.0 if isinstance(wait, (int, float)) and not isinstance(wait, bool) else 60.0
            timeout = 0 if params.get("heartbeat") else self.server.timeout + seconds
        return finish(self.server.request("GET", "/_db_updates", params=params, timeout=timeout), callback)

    def follow_db_updates(self, since: Any = None, **options: Any) -> Any:
        """The continuous ``_db_updates`` feed as an iterator of events (no I/O until first used).

        The same resilient feed as ``db.follow()``, server-wide:
        ``for event in couch.follow_db_updates(since="now")`` (blocking),
        ``async for``, or ``event = yield feed.next()`` in ``@relax`` code.
        Options ``limit`` (end after that many events), ``heartbeat``,
        ``timeout``; ``stop()`` (or ``with``) closes it.
        """
        from .changes import DbUpdatesFeed

        for name in ("latency", "callback"):
            if name in options:
                raise TypeError("follow_db_updates() takes no %s=: use db_updates(feed='continuous', "
                                "callback=...)" % name)
        return DbUpdatesFeed(self.server, None, since=since, **options)

    # -- replication ----------------------------------------------------
    @overload
    def replicate(self, source: Endpoint, target: Endpoint, callback: None = None, **options: Any) -> Document: ...

    @overload
    def replicate(self, source: Endpoint, target: Endpoint, callback: DataCallback[Document],
                  **options: Any) -> Operation[Document]: ...

    def replicate(self, source: Endpoint, target: Endpoint, callback: Callback = None, **options: Any) -> Any:
        """Replicate ``source`` to ``target``; returns the server's answer.

        Each of ``source`` and ``target`` is a database name on this server, a
        full URL (credentials inline are moved into the request's headers) or
        a :class:`~corduroy.database.Database`.  Options: ``create_target``,
        ``continuous``, ``cancel``, ``doc_ids``, ``filter``, ``query_params``,
        ``selector``, ``since_seq``, ``proxy``, ``source_proxy``,
        ``target_proxy``, ``create_target_params``, ``winning_revs_only``,
        ``use_checkpoints``, ``checkpoint_interval``, ``replication_id`` and
        the replicator's tuning options.

        With ``_id="name"`` a document with these fields is saved in
        ``_replicator`` instead (a persistent replication) and its save
        result ``{ok, id, rev}`` returned; ``_id=..., cancel=True`` deletes it.

        >>> couch.replicate("olddb", "newdb", create_target=True)     # doctest: +SKIP
        """
        return replicate(self.server, source, target, callback=callback, **options)

    @overload
    def scheduler_jobs(self, job_id: Optional[str] = None, callback: None = None, **options: Any) -> Document: ...

    @overload
    def scheduler_jobs(self, job_id: Optional[str] = None, callback: DataCallback[Document] = ...,
                       **options: Any) -> Operation[Document]: ...

    def scheduler_jobs(self, job_id: Optional[str] = None, callback: Callback = None, **options: Any) -> Any:
        """Running replication jobs (``/_scheduler/jobs``), or one job; options ``limit``, ``skip``."""
        path = "/_scheduler/jobs"
        if job_id is not None:
            path += "/" + quote_segment(job_id)
        return finish(self.server.request("GET", path, params=options or None), callback)

    @overload
    def scheduler_docs(self, replicator_db: Optional[str] = None, doc_id: Optional[str] = None,
                       callback: None = None, **options: Any) -> Document: ...

    @overload
    def scheduler_docs(self, replicator_db: Optional[str] = None, doc_id: Optional[str] = None,
                       callback: DataCallback[Document] = ..., **options: Any) -> Operation[Document]: ...

    def scheduler_docs(self, replicator_db: Optional[str] = None, doc_id: Optional[str] = None,
                       callback: Callback = None, **options: Any) -> Any:
        """The state of document-based replications (``/_scheduler/docs``).

        ``replicator_db`` limits it to one replicator database, ``doc_id`` to
        one of its documents (in ``_replicator`` by default); options
        ``limit``, ``skip``.
        """
        path = "/_scheduler/docs"
        if doc_id is not None and replicator_db is None:
            replicator_db = "_replicator"
        if replicator_db is not None:
            path += "/" + quote_segment(replicator_db)
            if doc_id is not None:
                path += "/" + quote_segment(doc_id)
        return finish(self.server.request("GET", path, params=options or None), callback)
