"""One client, many CouchDB nodes: spreading, failover, health probes and shard-aware routing.

``Couch([url1, url2, url3])`` (or ``Server`` with a list of URLs) treats the
URLs as nodes of one CouchDB cluster.  :class:`Cluster` decides, for every
request, which node gets it:

- **Spreading.**  Among the nodes that are up, the one with the fewest
  requests in flight (ties: the next in turn).  Least-in-flight follows
  the real load: a node that answers slowly (busy, or the coordinator of
  heavy views) collects fewer new requests, and a node that comes back gets
  work at once, where round robin would keep feeding a slow node its share.
- **Shard-aware routing** (``routing=True``, the default): a request for
  one document (``/db/id``, attachments, ``_design/``, ``_local/``) goes to
  a node that holds a copy of the document's shard range, so the
  coordinating node reads and writes its own copy first.  The map comes
  from ``GET /{db}/_shards`` (fetched in the background the first time a
  database is used, then kept for :attr:`Cluster.map_ttl` seconds; see
  :mod:`corduroy.shards`), node names from ``GET /_node/_local`` on each
  node.  Until the map is known, or when every owner is down, any node
  that is up takes the request.  Behind a load balancer (one URL), there
  is no cluster and no routing.
- **Failover.**  A node that refuses a connection, resets it, or stalls
  past a timeout is marked down.  The request moves to another node at once
  when that is safe: a read (see :func:`corduroy.http.is_idempotent`) always,
  a write only when libcurl reports that not a byte of it was sent; a write
  that failed after it was sent raises
  :class:`~corduroy.exceptions.UnknownOutcome` as on a single server, so
  nothing is ever written twice silently.  A streamed request (a feed) moves
  only before its first byte reached the consumer; feeds reconnect by
  themselves and resume from their last sequence, which is valid on every
  node.
- **Health probes.**  A node that is down is probed with ``GET /_up``
  (at most every :attr:`Cluster.probe_interval` seconds, while the client
  makes requests: there are no timers, so an idle client keeps no reactor
  busy); the first ``200`` puts it back in use.  The ``corduroy`` logger
  says (WARNING) when a node goes down and (INFO) when it is back.

:attr:`Cluster.nodes` shows each :class:`Node`'s state.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import pycurl

from loop import Operation, Request, Status, get_reactor
from loop.redact import redact_url

from .contract import io_methods
from .exceptions import BadResponse, ConnectionFailed, Timeout, TLSError
from .http import CouchOperation, _on_response, _origin, finish, is_idempotent, maybe_sent, resend_state
from .shards import ShardMap, doc_of_path
from .urls import quote_segment, split_credentials, validate_db_name

if TYPE_CHECKING:  # pragma: no cover
    from .http import Server

__all__ = ["Cluster", "Node", "NodeMap", "cluster_urls"]

log = logging.getLogger("corduroy")

#: A rule from a node name (``couchdb@host``) to its URL, for discovery.
NodeMap = Union[Mapping[str, str], Callable[[str], Optional[str]]]

#: curl errors that say nothing about the node (a bad URL, an aborted consumer, the reactor closing).
_NOT_THE_NODE = frozenset({
    -1, pycurl.E_UNSUPPORTED_PROTOCOL, pycurl.E_URL_MALFORMAT, pycurl.E_WRITE_ERROR,
    pycurl.E_TOO_MANY_REDIRECTS, pycurl.E_ABORTED_BY_CALLBACK,
})


class Node:
    """One node of a cluster, as this client sees it.

    ``url`` (without credentials), ``name`` (``couchdb@host``, once known),
    ``up``, ``in_flight`` (requests sent and not answered), ``served``
    (requests answered, errors included), ``failures`` (times marked down),
    ``last_error`` (why it was last marked down), ``down_since`` (reactor
    time, None while up).
    """

    __slots__ = ("url", "name", "up", "in_flight", "served", "failures", "last_error", "down_since",
                 "next_probe", "probing", "_index")

    def __init__(self, url: str, index: int) -> None:
        self.url = url
        self.name: Optional[str] = None
        self.up = True
        self.in_flight = 0
        self.served = 0
        self.failures = 0
        self.last_error: Optional[str] = None
        self.down_since: Optional[float] = None
        self.next_probe = 0.0
        self.probing = False
        self._index = index

    def state(self) -> Dict[str, Any]:
        """A snapshot: ``{url, name, up, in_flight, served, failures, last_error}``."""
        return {"url": self.url, "name": self.name, "up": self.up, "in_flight": self.in_flight,
                "served": self.served, "failures": self.failures, "last_error": self.last_error}

    def __repr__(self) -> str:
        return "<Node %r%s %s in_flight=%d served=%d>" % (
            self.url, " (%s)" % self.name if self.name else "", "up" if self.up else "DOWN",
            self.in_flight, self.served)


class _Bound:
    """A request's ``on_done`` in a cluster: books the answer to its node, then maps the response."""

    __slots__ = ("cluster", "node")

    def __init__(self, cluster: "Cluster", node: Node) -> None:
        self.cluster = cluster
        self.node = node

    def __call__(self, request: Request) -> None:
        node = self.node
        node.in_flight -= 1
        node.served += 1
        _on_response(request)


def _bound(request: Request) -> Optional[_Bound]:
    done = request.on_done
    inner = getattr(done, "on_done", None)  # a Resend wrapper (corduroy.http.resend_state)
    if type(inner) is _Bound:
        return inner  # type: ignore[return-value]
    return done if type(done) is _Bound else None  # type: ignore[return-value]


@io_methods
class Cluster:
    """The nodes of one CouchDB cluster behind a :class:`~corduroy.http.Server`, and where each request goes.

    Made by ``Server([url, ...])``; see the module documentation.
    ``routing``: shard-aware routing of single-document requests.
    ``probe_interval``: seconds between ``/_up`` probes of a down node.
    ``map_ttl``: seconds a database's shard map is used before it is
    fetched again.
    """

    def __init__(self, server: "Server", urls: Sequence[str], routing: bool = True,
                 probe_interval: float = 1.0, map_ttl: float = 60.0) -> None:
        self.server = server
        self.nodes: List[Node] = []
        self.routing = bool(routing)
        self.probe_interval = float(probe_interval)
        self.map_ttl = float(map_ttl)
        self._turn = 0
        self._maps: Dict[str, Tuple[float, Optional[ShardMap]]] = {}  # db -> (fetched at, map or None)
        self._fetching: Dict[str, Operation] = {}
        self._names_asked = False
        for url in urls:
            self.add(url)

    # -- membership -------------------------------------------------------
    def add(self, url: str) -> Node:
        """Add a node (its URL without credentials); an existing one is returned as is."""
        base, _ = split_credentials(url)
        for node in self.nodes:
            if node.url == base:
                return node
        node = Node(base, len(self.nodes))
        self.nodes.append(node)
        self._names_asked = False
        return node

    def by_name(self, name: str) -> Optional[Node]:
        """The node called ``name`` (``couchdb@host``), if its name is known."""
        for node in self.nodes:
            if node.name == name:
                return node
        return None

    def node_of_url(self, url: str) -> Optional[Node]:
        """The node whose URL starts ``url`` (a request's URL), if any."""
        for node in self.nodes:
            if url.startswith(node.url) and url[len(node.url):len(node.url) + 1] in ("", "/", "?"):
                return node
        return None

    def same_origin(self, url: str) -> bool:
        """True if ``url`` has the scheme, host and port of one of the nodes (redirects may go there)."""
        origin = _origin(url)
        return any(_origin(node.url) == origin for node in self.nodes)

    def states(self) -> List[Dict[str, Any]]:
        """Every node's :meth:`Node.state`."""
        return [node.state() for node in self.nodes]

    def __repr__(self) -> str:
        up = sum(1 for node in self.nodes if node.up)
        return "<Cluster %d nodes, %d up%s>" % (len(self.nodes), up, ", routing" if self.routing else "")

    # -- choosing a node --------------------------------------------------
    def pick(self, path: str, exclude: Optional[Node] = None) -> Node:
        """The node for a request to ``path`` (quoted, from the server root)."""
        nodes = self.nodes
        now = -1.0
        for node in nodes:
            if not node.up:
                if now < 0:
                    now = get_reactor().time()
                if now >= node.next_probe and not node.probing:
                    self._probe(node, now)
        if self.routing and path:
            owners = self._owners(path)
            if owners:
                best = self._least_busy([n for n in nodes if n.up and n is not exclude and n.name in owners])
                if best is not None:
                    return best
        best = self._least_busy([n for n in nodes if n.up and n is not exclude])
        if best is not None:
            return best
        # Every node is down (or excluded): try the one down longest; it fails fast if it still is.
        candidates = [n for n in nodes if n is not exclude] or nodes
        return min(candidates, key=lambda n: (n.down_since or 0.0, n._index))

    def _least_busy(self, nodes: List[Node]) -> Optional[Node]:
        if not nodes:
            return None
        if len(nodes) == 1:
            return nodes[0]
        self._turn += 1
        count = len(self.nodes)
        turn = self._turn
        return min(nodes, key=lambda n: (n.in_flight, (n._index - turn) % count))

    def bind(self, request: Request, node: Node) -> None:
        """Book ``request`` (about to be submitted) to ``node``."""
        node.in_flight += 1
        done = request.on_done
        inner = getattr(done, "on_done", None)
        if type(inner) is _Bound:
            inner.node = node  # type: ignore[union-attr]
        elif type(done) is _Bound:
            done.node = node  # type: ignore[union-attr]
        else:
            request.on_done = _Bound(self, node)

    def resend(self, request: Request) -> None:
        """Book ``request``, about to be sent again, to its node; to another one if its node is down."""
        node = self.node_of_url(request.url)
        if node is None or not node.up:
            target = self.pick(_path_of(request.url, node), exclude=node)
            if target.up or node is None:
                self.move(request, target)
                node = target
        self.bind(request, node)

    def move(self, request: Request, node: Node) -> None:
        """Point ``request``'s URL at ``node`` (before it is submitted again)."""
        old = self.node_of_url(request.url)
        if old is not None and old is not node:
            request.url = node.url + request.url[len(old.url):]

    # -- failures ---------------------------------------------------------
    def transport_failed(self, request: Request, exc: BaseException) -> None:
        """A request to a node failed below HTTP: mark the node down if the failure is the node's.

        A total ``timeout`` that ran out while the answer was arriving (its
        status line had come) is the request's, not the node's: a slow view
        on a healthy node.  Refused and reset connections, connect timeouts
        and stalls (the idle timeout) are the node's.
        """
        if isinstance(exc, TLSError) or request.errno in _NOT_THE_NODE:
            return
        if (request.errno == pycurl.E_OPERATION_TIMEDOUT and request.header_lines
                and "too slow" not in (request.errmsg or "")):
            return
        bound = _bound(request)
        node = bound.node if bound is not None else self.node_of_url(request.url)
        if node is not None:
            self.mark_down(node, "%s: %s" % (type(exc).__name__, getattr(exc, "reason", None) or exc))

    def handle(self, server: Any, request: Request, exc: BaseException) -> bool:
        """Failure hook: move a request that failed below HTTP to another node, when that is safe."""
        if not isinstance(exc, (ConnectionFailed, Timeout)) or isinstance(exc, TLSError):
            return False
        if request.errno in _NOT_THE_NODE:
            return False
        op = request.context[0]
        if op.done():
            return False
        if not (is_idempotent(request.method, request.url) or not maybe_sent(request)):
            return False  # it may have been applied: UnknownOutcome, never a silent second write
        state = resend_state(request)
        moves = state.moves
        if moves >= len(self.nodes):
            return False
        bound = _bound(request)
        failed = bound.node if bound is not None else None
        target = self.pick(_path_of(request.url, failed), exclude=failed)
        if target is failed or not target.up:
            return False  # nowhere better to go now; the retry policy may still wait and try again
        deadline = request.context[4]
        if deadline is not None:  # a total timeout covers every node tried
            left = deadline - op.reactor.time()
            if left < 0.01:
                return False
            request.timeout = left
        state.moves = moves + 1
        self.move(request, target)
        log.info("%s %s: %s; sent to node %s instead", request.method, redact_url(request.url),
                 type(exc).__name__, target.url)
        server.resubmit(request)
        return True

    def mark_down(self, node: Node, why: str) -> None:
        """Stop using ``node`` until a probe finds it up again."""
        node.last_error = why
        if not node.up:
            return
        node.up = False
        node.failures += 1
        now = get_reactor().time()
        node.down_since = now
        node.next_probe = now + self.probe_interval
        log.warning("cluster node %s is down (%s); probing %s/_up every %.1f s", node.url, why, node.url,
                    self.probe_interval)

    def mark_up(self, node: Node) -> None:
        """Use ``node`` again."""
        if node.up:
            return
        node.up = True
        down = get_reactor().time() - (node.down_since or 0.0)
        node.down_since = None
        log.info("cluster node %s is back after %.1f s", node.url, down)

    def _probe(self, node: Node, now: float) -> None:
        node.probing = True
        node.next_probe = now + self.probe_interval

        def done(request: Request) -> None:
            node.probing = False
            if request.errno is None and request.code == 200:
                self.mark_up(node)
            else:
                node.next_probe = get_reactor().time() + self.probe_interval

        timeout = max(0.5, min(5.0, self.probe_interval * 2))
        req = Request("GET", node.url + "/_up", self.server.headers_plain, None, on_done=done,
                      timeout=timeout, connect_timeout=timeout)
        try:
            get_reactor().curl.submit(req)
        except RuntimeError:  # the reactor is closing
            node.probing = False

    # -- shard maps -------------------------------------------------------
    def _owners(self, path: str) -> Optional[Tuple[str, ...]]:
        found = doc_of_path(path)
        if found is None:
            return None
        db, doc_id = found
        entry = self._maps.get(db)
        now = get_reactor().time()
        if entry is None or now - entry[0] > self.map_ttl:
            self._fetch_map(db, now)
        if entry is None or entry[1] is None:
            return None
        return entry[1].owners(doc_id)

    def by_owner(self, db: str, ids: Sequence[str]) -> List[Tuple[Optional[Node], List[int]]]:
        """Split ``ids`` (of database ``db``) by the node that will be asked for them: ``[(node, [index, ...])]``.

        For coalesced reads: each group goes to one node that holds a copy
        of every id in it.  Without routing or a shard map, one group with
        node None (the cluster chooses).
        """
        entry = self._maps.get(db) if self.routing else None
        if self.routing:
            now = get_reactor().time()
            if entry is None or now - entry[0] > self.map_ttl:
                self._fetch_map(db, now)
        if entry is None or entry[1] is None:
            return [(None, list(range(len(ids))))]
        shard_map = entry[1]
        by_owners: Dict[Tuple[str, ...], List[int]] = {}
        for i, doc_id in enumerate(ids):
            by_owners.setdefault(shard_map.owners(doc_id), []).append(i)
        groups: Dict[Optional[Node], List[int]] = {}
        for owners, indexes in by_owners.items():
            node = self._least_busy([n for n in self.nodes if n.up and n.name in owners])
            groups.setdefault(node, []).extend(indexes)
        return list(groups.items())

    def shard_map(self, db: str) -> Optional[ShardMap]:
        """The shard map of database ``db`` as last fetched (None if not known yet)."""
        entry = self._maps.get(db)
        return entry[1] if entry is not None else None

    def forget(self, db: Optional[str] = None) -> None:
        """Drop the cached shard map of ``db`` (or of every database): fetched again on next use."""
        if db is None:
            self._maps.clear()
        else:
            self._maps.pop(db, None)

    def _fetch_map(self, db: str, now: float) -> Operation:
        running = self._fetching.get(db)
        if running is not None:
            return running
        reactor = get_reactor()
        result = Operation(reactor)
        self._fetching[db] = result
        entry = self._maps.get(db)
        # Keep using an old map while a new one is fetched; mark the attempt so a failure waits a TTL.
        self._maps[db] = (now, entry[1] if entry is not None else None)
        path = "/" + quote_segment(db)
        answers: Dict[str, Any] = {}
        wanted = 2 if self._names_asked else 3

        def got(key: str) -> Callable[[Any, Status], None]:
            def done(data: Any, status: Status) -> None:
                answers[key] = (data, status)
                if len(answers) == wanted:
                    finished()
            return done

        def finished() -> None:
            self._fetching.pop(db, None)
            (shards, s1), (info, s2) = answers["shards"], answers["info"]
            failed = s1.exception or s2.exception
            if failed is not None:  # not a cluster database (pouchdb), or gone: any node takes its requests
                result.complete(None, Status(s1.code if s1.exception else s2.code, exception=failed))
                return
            try:
                partitioned = bool((info.get("props") or {}).get("partitioned"))
                new = ShardMap.from_answer(shards, partitioned)
            except (ValueError, AttributeError, TypeError) as exc:
                log.debug("shard map of %s: unreadable answer", db, exc_info=True)
                result.complete(None, Status(s1.code, exception=BadResponse(
                    reason="unreadable _shards answer: %s" % exc, code=s1.code, method="GET",
                    url=self.server.url + path + "/_shards")))
                return
            self._maps[db] = (get_reactor().time(), new)
            result.complete(new, s1)

        if not self._names_asked:
            self._names_asked = True
            self._learn_names(callback=got("names"))
        self.server.request("GET", path + "/_shards", plain=True).add_callback(got("shards"))
        self.server.request("GET", path, plain=True).add_callback(got("info"))
        return result

    def load_map(self, db: str, callback: Optional[Callable[[Any, Status], Any]] = None) -> Any:
        """Fetch database ``db``'s shard map (and the node names) now; returns the :class:`ShardMap`.

        Routing fetches maps by itself in the background; this is for
        warming up, and for tests.  Raises what the server answers (e.g.
        NotFound for a missing database).
        """
        validate_db_name(db)
        reactor = get_reactor()
        op = CouchOperation(reactor)
        self._fetch_map(db, reactor.time()).add_callback(op.complete)
        return finish(op, callback)

    def _learn_names(self, callback: Optional[Callable[[Any, Status], Any]] = None) -> None:
        """Ask every node whose name is unknown (``GET /_node/_local``); then ``callback(None, status)``."""
        pending = [node for node in self.nodes if node.name is None]
        if not pending:
            if callback is not None:
                callback(None, Status(200))
            return
        left = [len(pending)]

        def one(node: Node) -> Callable[[Any, Status], None]:
            def done(data: Any, status: Status) -> None:
                if status.ok and isinstance(data, dict) and isinstance(data.get("name"), str):
                    node.name = data["name"]
                left[0] -= 1
                if left[0] == 0 and callback is not None:
                    callback(None, Status(200))
            return done

        for node in pending:
            self.server.request("GET", "/_node/_local", plain=True, node=node).add_callback(one(node))


def _path_of(url: str, node: Optional[Node]) -> str:
    """The path (from the server root, quoted, no query) of a request URL."""
    if node is not None and url.startswith(node.url):
        rest = url[len(node.url):]
    else:
        from urllib.parse import urlsplit

        rest = urlsplit(url).path
    return rest.split("?", 1)[0]


def cluster_urls(url: Any) -> Optional[List[str]]:
    """The node URLs if ``url`` names several nodes (a list or tuple of more than one URL), else None."""
    if isinstance(url, (list, tuple)):
        if not url:
            raise ValueError("give at least one URL")
        for one in url:
            if not isinstance(one, str):
                raise TypeError("node URLs are strings, not %s" % type(one).__name__)
        if len(url) > 1:
            return list(url)
    return None
