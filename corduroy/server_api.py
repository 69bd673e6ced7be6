"""Server-wide endpoints of Couch: configuration, statistics, tasks, replication, cluster.

CouchDB 3 serves its configuration and statistics per node, under
``/_node/_local/...``; older servers (and pouchdb-server) serve the
configuration under ``/_config``.  :meth:`ServerMixin.config` asks once which
one the server has and remembers it on the :class:`~corduroy.http.Server`.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Generator, List, Optional, Tuple

from loop import Status

from .exceptions import BadRequest, NotFound
from .http import Server, finish
from .replication import Endpoint, replicate
from .urls import quote_segment

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
        raise ValueError("invalid %s name %r: use 'section' or 'section/key'" % (what, name))
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


class ServerMixin:
    """Couch methods for server-wide endpoints."""

    server: Server
    _run: Callable[..., Any]

    # -- configuration --------------------------------------------------
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
            raise ValueError("a statistic is named 'group' or 'group/metric', got %r" % (name,))
        path += "".join("/" + quote_segment(part) for part in name.split("/"))
        url = self.server.url + path

        def found(data: Any, status: Status) -> Any:
            if data is None:  # CouchDB answers null for a name it does not know
                raise NotFound(reason="no statistic named %r" % name, error="not_found", method="GET", url=url)
            return data

        return finish(self.server.request("GET", path, transform=found), callback)

    def tasks(self, callback: Callback = None) -> Any:
        """The list of tasks running on the server (``_active_tasks``)."""
        return finish(self.server.request("GET", "/_active_tasks"), callback)

    def dbs_info(self, names: List[str], callback: Callback = None) -> Any:
        """Information about several databases at once: a list of ``{key, info}`` (or ``{key, error}``)."""
        if isinstance(names, str) or not isinstance(names, (list, tuple)):
            raise TypeError("dbs_info takes a list of database names")
        for name in names:
            if not isinstance(name, str) or not name:
                raise TypeError("database names are non-empty strings, got %r" % (name,))
        return finish(self.server.request("POST", "/_dbs_info", json={"keys": list(names)}), callback)

    def up(self, callback: Callback = None) -> Any:
        """The node's health check (``/_up``): ``{"status": "ok", ...}``."""
        return finish(self.server.request("GET", "/_up"), callback)

    def membership(self, callback: Callback = None) -> Any:
        """The cluster's nodes (``/_membership``): ``{all_nodes, cluster_nodes}``."""
        return finish(self.server.request("GET", "/_membership"), callback)

    def system(self, callback: Callback = None) -> Any:
        """The node's Erlang VM statistics (``/_node/_local/_system``)."""
        return finish(self.server.request("GET", "/_node/_local/_system"), callback)

    def node_info(self, callback: Callback = None) -> Any:
        """The name of the node answering (``/_node/_local``): ``{"name": "couchdb@..."}``."""
        return finish(self.server.request("GET", "/_node/_local"), callback)

    # -- replication ----------------------------------------------------
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

    def scheduler_jobs(self, job_id: Optional[str] = None, callback: Callback = None, **options: Any) -> Any:
        """Running replication jobs (``/_scheduler/jobs``), or one job; options ``limit``, ``skip``."""
        path = "/_scheduler/jobs"
        if job_id is not None:
            path += "/" + quote_segment(job_id)
        return finish(self.server.request("GET", path, params=options or None), callback)

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
