"""One client over the nodes of a real 3-node CouchDB 3.4.3 cluster: spreading, routing, failover.

These tests start a private cluster (:mod:`tests.couchdb_cluster`) because
they stop nodes; without ``../shared/couchdb`` they are skipped.
"""
from __future__ import annotations

import logging
import random
import re
import time
import urllib.parse
from collections import Counter
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from corduroy import Couch, Database, relax
from corduroy.exceptions import NotFound, Timeout, Unauthorized, UnknownOutcome
from corduroy.shards import ShardMap, doc_hash, doc_of_path, format_range
from loop import get_reactor
from benchmarks.couchdb_cluster import PrivateCluster, available
from tests.consistency import eventually
from tests.proxy import FaultProxy

pytestmark = pytest.mark.skipif(available() is not None, reason=available() or "")


@pytest.fixture(scope="module")
def nodes() -> Iterator[PrivateCluster]:
    cluster = PrivateCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def couch(nodes: PrivateCluster) -> Couch:
    return Couch(nodes.urls)


_counter = iter(range(10 ** 6))


@pytest.fixture
def cluster_db(couch: Couch) -> Iterator[str]:
    name = "cluster_%d_%d" % (int(time.time() * 1000) % 10 ** 8, next(_counter))
    yield name
    try:
        Couch(couch.server.cluster.nodes[0].url, auth=("admin", "admin")).delete(name)
    except Exception:  # a test that stopped a node may leave it unreachable; the folder goes anyway
        pass


def _counts(couch: Couch) -> Dict[str, int]:
    return {node["url"]: node["served"] for node in couch.nodes}


# -- pure functions -------------------------------------------------------------

def test_doc_hash_is_crc32_of_utf8_and_partition_only_for_partitioned() -> None:
    import zlib

    assert doc_hash("caf\u00e9") == zlib.crc32("caf\u00e9".encode("utf-8"))
    assert doc_hash("p1:doc", partitioned=True) == zlib.crc32(b"p1")
    assert doc_hash("p1:doc") == zlib.crc32(b"p1:doc")
    assert doc_hash("_design/x", partitioned=True) == zlib.crc32(b"_design/x")


def test_shard_map_refuses_malformed_answers() -> None:
    with pytest.raises(ValueError, match="shard range"):
        ShardMap({"0000-": ["a"]})
    with pytest.raises(ValueError, match="at least one range"):
        ShardMap({})
    with pytest.raises(ValueError, match="not a _shards answer"):
        ShardMap.from_answer({"error": "not_found"})


def test_doc_of_path_names_documents_and_nothing_else() -> None:
    assert doc_of_path("/db/a%2Fb") == ("db", "a/b")
    assert doc_of_path("/db/doc/att.txt") == ("db", "doc")
    assert doc_of_path("/db/_design/app") == ("db", "_design/app")
    assert doc_of_path("/db/_local/x") == ("db", "_local/x")
    assert doc_of_path("/a%2Fb/doc") == ("a/b", "doc")
    for path in ("/db", "/db/", "/db/_all_docs", "/db/_bulk_docs", "/db/_design/", "/_all_dbs", "/"):
        assert doc_of_path(path) is None, path


def test_one_url_is_no_cluster_and_the_node_urls_must_agree_on_credentials() -> None:
    assert Couch("http://127.0.0.1:5984").cluster is None
    assert Couch("http://127.0.0.1:5984").nodes == []
    assert Couch(["http://127.0.0.1:5984"]).cluster is None
    with pytest.raises(ValueError, match="different credentials"):
        Couch(["http://a:secret1@127.0.0.1:1", "http://a:secret2@127.0.0.1:2"])
    try:
        Couch(["http://a:secret1@127.0.0.1:1", "http://a:secret2@127.0.0.1:2"])
    except ValueError as exc:
        assert "secret" not in str(exc)
    with pytest.raises(ValueError, match="at least one URL"):
        Couch([])
    with pytest.raises(ValueError, match="different databases"):
        Database(["http://127.0.0.1:1/a", "http://127.0.0.1:2/b"])
    couch = Couch(["http://u:pw@127.0.0.1:1", "http://127.0.0.1:2"])
    assert "pw" not in repr(couch.server) + repr(couch.cluster) + repr(couch.cluster.nodes)
    assert [n["url"] for n in couch.nodes] == ["http://127.0.0.1:1", "http://127.0.0.1:2"]


# -- spreading and discovery ----------------------------------------------------

def test_requests_spread_over_every_node(couch: Couch) -> None:
    before = _counts(couch)

    @relax
    def many() -> Any:
        yield [couch.info() for _ in range(90)]

    many()
    after = _counts(couch)
    served = [after[url] - before[url] for url in after]
    assert sum(served) == 90
    assert min(served) >= 20, served  # least in flight: all 90 at once go 30/30/30
    assert all(node["up"] and node["in_flight"] == 0 for node in couch.nodes)


def test_discover_nodes_from_membership(nodes: PrivateCluster) -> None:
    couch = Couch(nodes.url(0))
    assert couch.cluster is None
    port = {"couchdb%d@127.0.0.1" % (nodes.port + i): nodes.base(i) for i in range(3)}
    urls = couch.discover_nodes(port)
    assert sorted(urls) == sorted(nodes.base(i) for i in range(3))
    assert couch.cluster is not None and len(couch.nodes) == 3
    assert couch.info()["couchdb"] == "Welcome"
    with pytest.raises(ValueError, match="no URL for cluster node"):
        Couch(nodes.url(0)).discover_nodes({})
    with pytest.raises(TypeError, match="node_url"):
        Couch(nodes.url(0)).discover_nodes("http://127.0.0.1:1")  # type: ignore[arg-type]


# -- shard-aware routing ---------------------------------------------------------

def _random_ids(count: int, rng: random.Random) -> List[str]:
    alphabet = "abcXYZ019-_.:/ \u00e9\u00fc\u4e2d\u6587\U0001F600+%"
    ids = set()
    while len(ids) < count:
        size = rng.randint(1, 24)
        doc_id = "".join(rng.choice(alphabet) for _ in range(size))
        if doc_id.startswith("_"):
            doc_id = "x" + doc_id
        ids.add(doc_id)
    return sorted(ids)


def _server_ranges(couch: Couch, db: str, ids: List[str]) -> Dict[str, Tuple[str, Tuple[str, ...]]]:
    """``GET /{db}/_shards/{docid}`` for each id: ``{id: (range, nodes)}``."""
    answers: Dict[str, Tuple[str, Tuple[str, ...]]] = {}

    @relax
    def ask() -> Any:
        for start in range(0, len(ids), 400):
            chunk = ids[start:start + 400]
            rows = yield [couch.server.request("GET", "/%s/_shards/%s" % (db, urllib.parse.quote(i, safe="")),
                                               plain=True) for i in chunk]
            for doc_id, row in zip(chunk, rows):
                answers[doc_id] = (row["range"], tuple(row["nodes"]))

    ask()
    return answers


@pytest.mark.slow
def test_routing_table_agrees_with_the_server_for_10000_ids(couch: Couch, cluster_db: str) -> None:
    couch.create(cluster_db, q=8, n=1)
    shard_map = couch.cluster.load_map(cluster_db)
    assert isinstance(shard_map, ShardMap) and len(shard_map.ranges()) == 8
    assert len(shard_map.nodes) == 3  # n=1, q=8 over 3 nodes: every node holds some range
    ids = _random_ids(10000, random.Random(1))
    server = _server_ranges(couch, cluster_db, ids)
    wrong = [i for i in ids if (format_range(*shard_map.range_of(i)), shard_map.owners(i)) != server[i]]
    assert wrong == []


def test_routing_of_partitioned_ids_agrees_with_the_server(couch: Couch, cluster_db: str) -> None:
    couch.create(cluster_db, q=8, n=1, partitioned=True)
    shard_map = couch.cluster.load_map(cluster_db)
    assert shard_map.partitioned
    rng = random.Random(2)
    ids = ["%s:%s" % (p, d) for p, d in zip(_random_ids(1000, rng), _random_ids(1000, rng))
           if ":" not in p][:800] + ["_design/app%d" % i for i in range(20)]
    server = _server_ranges(couch, cluster_db, ids)
    wrong = [i for i in ids if (format_range(*shard_map.range_of(i)), shard_map.owners(i)) != server[i]]
    assert wrong == []


def test_single_document_requests_go_to_a_node_that_holds_the_document(
        couch: Couch, cluster_db: str, caplog: Any) -> None:
    couch.create(cluster_db, q=8, n=1)
    db = couch.database(cluster_db)
    shard_map = couch.cluster.load_map(cluster_db)
    name_of = {node.url: node.name for node in couch.cluster.nodes}
    assert all(name_of.values())
    ids = ["doc-%03d" % i for i in range(120)]
    with caplog.at_level(logging.DEBUG, logger="corduroy"):
        for doc_id in ids:
            doc = {"_id": doc_id}
            db.save(doc)
            assert db.get(doc_id)["_rev"] == doc["_rev"]
    seen = 0
    for record in caplog.records:
        match = re.match(r"(PUT|GET) (http://127\.0\.0\.1:\d+)/%s/(doc-\d+)(\?.*)? -> 20" % cluster_db,
                         record.getMessage())
        if match:
            seen += 1
            assert name_of[match.group(2)] in shard_map.owners(match.group(3)), record.getMessage()
    assert seen == 240


def test_coalesced_reads_go_to_the_nodes_that_hold_them(nodes: PrivateCluster, cluster_db: str, caplog: Any) -> None:
    couch = Couch(nodes.urls)
    couch.create(cluster_db, q=8, n=1)
    db = Database(cluster_db, server=couch.server, coalesce=True)
    ids = ["c%03d" % i for i in range(150)]
    db.save([{"_id": i, "n": n} for n, i in enumerate(ids)])
    shard_map = couch.cluster.load_map(cluster_db)

    @relax
    def reads() -> Any:
        return (yield [db.get(i) for i in ids] + [db.get("missing")])

    with caplog.at_level(logging.DEBUG, logger="corduroy"):
        with pytest.raises(NotFound):
            reads()
        docs = relax(lambda: (yield [db.get(i) for i in ids]))()
    assert [doc["n"] for doc in docs] == list(range(150))
    posts = [m.group(1) for m in (re.match(r"POST (http://127\.0\.0\.1:\d+)/%s/_bulk_get" % cluster_db, r.getMessage())
                                  for r in caplog.records) if m]
    # One batch per reactor turn, split by owner: each part went to a node owning every id in it
    # (q=8 n=1 over 3 nodes: three parts per batch, on three different nodes).
    assert len(posts) == 6 and sorted(set(posts)) == sorted(nodes.base(i) for i in range(3))
    owners = {shard_map.owners(i)[0] for i in ids}
    assert len(owners) == 3


def test_unrouted_cluster_spreads_single_document_requests(nodes: PrivateCluster, cluster_db: str) -> None:
    couch = Couch(nodes.urls, routing=False)
    couch.create(cluster_db, q=8, n=1)
    db = couch.database(cluster_db)
    db.save({"_id": "one"})
    before = _counts(couch)

    @relax
    def reads() -> Any:
        yield [db.get("one") for _ in range(60)]

    reads()
    after = _counts(couch)
    assert all(after[url] - before[url] >= 10 for url in after)  # not pinned to the owner
    assert couch.cluster.shard_map(cluster_db) is None  # no routing, no map fetched


def test_load_map_of_a_missing_database_raises_not_found(couch: Couch) -> None:
    with pytest.raises(NotFound):
        couch.cluster.load_map("no_such_db_here")
    with pytest.raises(ValueError):
        couch.cluster.load_map("Not A Name")


# -- failover: a node stopped under load ------------------------------------------------------------

def _stop_after(ops: List[Any], count: int, nodes: PrivateCluster, victim: int, killed: List[Any]) -> None:
    """Stop node ``victim`` when ``count`` of ``ops`` have completed (mid-load, whatever the speed)."""
    done = [0]

    def one(data: Any, status: Any) -> None:
        done[0] += 1
        if done[0] == count:
            killed.append(nodes.kill(victim))

    for op in ops:
        op.add_callback(one)


def _restart(nodes: PrivateCluster) -> None:
    nodes.start()  # starts the stopped node again (the others keep running)


def _node_back(couch: Couch, nodes: PrivateCluster, i: int, db: Database, doc_id: str) -> float:
    """Make requests until node ``i`` serves some again; returns how long it took (seconds)."""
    url = nodes.base(i)
    started = time.monotonic()

    def served() -> int:
        return next(n["served"] for n in couch.nodes if n["url"] == url)

    first = served()

    def back() -> None:
        db.get(doc_id)  # requests are what probe a down node
        assert served() > first + 2

    eventually(back, timeout=30.0)
    return time.monotonic() - started


@pytest.mark.slow
def test_a_node_stopped_during_5000_gets_fails_none_and_comes_back(
        couch: Couch, nodes: PrivateCluster, cluster_db: str, capsys: Any) -> None:
    couch.create(cluster_db)  # n=3: every document on every node
    db = couch.database(cluster_db)
    db.save([{"_id": "r%04d" % i, "n": i} for i in range(200)], w=3)
    victim = 1
    results: Counter = Counter()
    killed: List[Any] = []

    @relax
    def load() -> Any:
        ops = [db.get("r%04d" % (i % 200)) for i in range(5000)]
        _stop_after(ops, 1500, nodes, victim, killed)
        for op in ops:
            try:
                doc = yield op
                results["ok" if doc["n"] >= 0 else "bad"] += 1
            except Exception as exc:  # counted, and the assertion below names them
                results[type(exc).__name__] += 1

    load()
    killed[0].wait(timeout=60)
    with capsys.disabled():
        print("\n5000 GETs with node %d stopped mid-load: %s; node states: %s"
              % (victim + 1, dict(results), [(n["url"], n["up"], n["served"]) for n in couch.nodes]))
    assert results == Counter({"ok": 5000})
    assert not couch.nodes[victim]["up"] and couch.nodes[victim]["failures"] >= 1
    _restart(nodes)
    took = _node_back(couch, nodes, victim, db, "r0000")
    assert couch.nodes[victim]["up"]
    with capsys.disabled():
        print("node %d serves again %.1f s after its restart" % (victim + 1, took))


@pytest.mark.slow
def test_a_node_stopped_during_1000_writes_loses_nothing_silently(
        couch: Couch, nodes: PrivateCluster, cluster_db: str, capsys: Any) -> None:
    couch.create(cluster_db)
    db = couch.database(cluster_db)
    victim = 2
    written: List[str] = []
    unknown: List[str] = []
    other: List[str] = []
    killed: List[Any] = []

    @relax
    def load() -> Any:
        docs = [{"_id": "w%04d" % i, "n": i} for i in range(1000)]
        ops = [db.save(doc) for doc in docs]
        _stop_after(ops, 300, nodes, victim, killed)
        for doc, op in zip(docs, ops):
            try:
                yield op
                written.append(doc["_id"])
            except UnknownOutcome:
                unknown.append(doc["_id"])
            except Exception as exc:
                other.append("%s: %s" % (doc["_id"], exc))

    load()
    killed[0].wait(timeout=60)
    with capsys.disabled():
        print("\n1000 writes with node %d stopped mid-load: %d succeeded, %d unknown outcome, %d other errors"
              % (victim + 1, len(written), len(unknown), len(other)))
    assert other == []
    assert len(written) + len(unknown) == 1000 and len(written) >= 900
    # Every write that succeeded is readable through each live node.
    for i in (0, 1):
        single = Database(nodes.url(i) + "/" + cluster_db)
        eventually(lambda db=single: _all_present(db, written))  # type: ignore[misc]
    _restart(nodes)
    _node_back(couch, nodes, victim, db, written[0])


def _all_present(db: Database, ids: List[str]) -> None:
    rows = db.all_docs(keys=ids)
    missing = [row.key for row in rows if row.error is not None or not row.value or row.value.get("deleted")]
    assert missing == []


@pytest.mark.slow
def test_a_follow_feed_whose_node_stops_resumes_on_another_node_exactly_once(
        couch: Couch, nodes: PrivateCluster, cluster_db: str) -> None:
    couch.create(cluster_db)
    db = couch.database(cluster_db)
    db.save([{"_id": "before-%02d" % i} for i in range(20)], w=3)
    seen: List[str] = []
    expected = ["before-%02d" % i for i in range(20)] + ["after-%02d" % i for i in range(20)]
    feed = db.follow(since=0, heartbeat=500)
    victim_box: List[int] = []

    @relax
    def consume() -> Any:
        get_reactor().call_later(90, feed.stop)  # a bound: a stuck feed fails the test, never hangs it
        while len(seen) < len(expected):
            change = yield feed.next()
            if change is None:
                return
            seen.append(change["id"])
            if len(seen) == 20:
                # The feed's connection is the one request in flight: stop the node it is on.
                busy = [i for i, n in enumerate(couch.nodes) if n["in_flight"] > 0]
                assert len(busy) == 1, couch.nodes
                victim_box.append(busy[0])
                nodes.kill(busy[0]).wait(timeout=60)
                other = Database(nodes.url((busy[0] + 1) % 3) + "/" + cluster_db)
                yield other.save([{"_id": "after-%02d" % i} for i in range(20)])

    try:
        consume()
    finally:
        feed.stop()
    assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen)), (len(seen), len(set(seen)), seen[18:])
    assert not couch.nodes[victim_box[0]]["up"]
    _restart(nodes)


def test_a_write_to_a_stopped_node_with_no_byte_sent_moves_to_another_node(
        nodes: PrivateCluster, cluster_db: str) -> None:
    # A cluster client with a node whose port refuses connections: writes never sent there move on.
    dead = "http://admin:admin@127.0.0.1:%d" % (nodes.port + 7)
    couch = Couch([dead, nodes.url(0), nodes.url(1)], routing=False)
    couch.create(cluster_db)
    db = couch.database(cluster_db)
    for i in range(12):
        db.save({"_id": "m%02d" % i})
    assert len(db.all_docs(keys=["m%02d" % i for i in range(12)])) == 12
    assert not couch.nodes[0]["up"] and "ConnectionFailed" in couch.nodes[0]["last_error"]
    assert couch.nodes[0]["failures"] == 1  # marked down once, then left alone


# -- sessions and the example -------------------------------------------------------

def test_a_cookie_session_works_on_every_node(nodes: PrivateCluster) -> None:
    couch = Couch([nodes.base(0), nodes.base(1), nodes.base(2)])  # no credentials: the session is all
    with pytest.raises(Unauthorized):
        couch.all_dbs()  # CouchDB 3 lists databases to admins only
    couch.login("admin", "admin")
    assert len(couch.all_dbs()) >= 2  # _users, _replicator
    before = _counts(couch)

    @relax
    def calls() -> Any:
        return (yield [couch.server.request("GET", "/_session", plain=True) for _ in range(30)])

    answers = calls()
    after = _counts(couch)
    assert all(answer["userCtx"]["name"] == "admin" for answer in answers)
    assert all(after[url] - before[url] >= 5 for url in after)  # every node took some, and knew the cookie


def test_the_cluster_example_runs(nodes: PrivateCluster) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, str(root / "examples" / "cluster.py"), *nodes.urls],
                          env=dict(os.environ, PYTHONPATH=str(root)), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "sum of n: 4950"
    assert sorted(line.split()[0] for line in lines[1:]) == sorted(nodes.base(i) for i in range(3))
    assert all(" up=True " in line and "@127.0.0.1" in line for line in lines[1:])


# -- stalls and resets, through a fault-injecting proxy in front of one node ----------

def test_a_stalled_node_is_marked_down_reads_move_and_a_sent_write_is_an_unknown_outcome(
        nodes: PrivateCluster, cluster_db: str) -> None:
    Couch(nodes.url(1)).create(cluster_db)
    Database(nodes.url(1) + "/" + cluster_db).save([{"_id": "s%02d" % i, "n": i} for i in range(12)], w=3)
    said: List[str] = []
    logger = logging.getLogger("corduroy")
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with FaultProxy("127.0.0.1", nodes.port) as proxy:
            proxied = "http://admin:admin@127.0.0.1:%d" % proxy.port
            couch = Couch([proxied, nodes.url(1), nodes.url(2)], routing=False, idle_timeout=1)
            db = couch.database(cluster_db)
            assert db.get("s00")["n"] == 0
            proxy.stall()
            docs = relax(lambda: (yield [db.get("s%02d" % i) for i in range(12)]))()
            assert [doc["n"] for doc in docs] == list(range(12))
            stalled = couch.nodes[0]
            assert not stalled["up"] and "Timeout" in stalled["last_error"]
            assert any("cluster node http://127.0.0.1:%d is down" % proxy.port in m for m in said), said
            # A write that reached the stalled node (its request went up, no answer came back): unknown outcome.
            with pytest.raises(UnknownOutcome):
                couch.server.request("PUT", "/%s/held" % cluster_db, json={"x": 1}, node=couch.cluster.nodes[0]).wait()
            assert not couch.nodes[0]["up"]  # still stalled: still down
            proxy.resume()
            def back() -> None:
                assert db.get("s01")["n"] == 1  # requests are what probe a down node
                assert couch.nodes[0]["up"]

            eventually(back, timeout=20.0)
            assert any("cluster node http://127.0.0.1:%d is back" % proxy.port in m for m in said), said
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def test_reads_reset_mid_body_move_to_another_node(nodes: PrivateCluster, cluster_db: str) -> None:
    Couch(nodes.url(1)).create(cluster_db)
    big = {"_id": "big", "blob": "x" * 200000}
    Database(nodes.url(1) + "/" + cluster_db).save(big, w=3)
    with FaultProxy("127.0.0.1", nodes.port) as proxy:
        proxied = "http://admin:admin@127.0.0.1:%d" % proxy.port
        couch = Couch([proxied, nodes.url(1), nodes.url(2)], routing=False, retries=0)
        db = couch.database(cluster_db)
        proxy.reset_after(1000)  # the next answer through node 1's proxy dies after 1000 bytes
        got = [couch.server.request("GET", "/%s/big" % cluster_db, node=couch.cluster.nodes[0]).wait()]
        assert got[0]["blob"] == big["blob"]  # moved to another node, though retries are off
        assert not couch.nodes[0]["up"]
        assert db.get("big")["_rev"] == got[0]["_rev"]


def test_a_total_timeout_while_the_answer_arrives_is_the_requests_not_the_nodes(
        nodes: PrivateCluster, cluster_db: str) -> None:
    Couch(nodes.url(1)).create(cluster_db)
    Database(nodes.url(1) + "/" + cluster_db).save({"_id": "big", "blob": "x" * 300000}, w=3)
    with FaultProxy("127.0.0.1", nodes.port) as proxy:
        proxied = "http://admin:admin@127.0.0.1:%d" % proxy.port
        couch = Couch([proxied, nodes.url(1), nodes.url(2)], routing=False, timeout=1, idle_timeout=None)
        proxy.stall(after=2000)  # the status line and some of the body, then nothing
        with pytest.raises(Timeout):
            couch.server.request("GET", "/%s/big" % cluster_db, node=couch.cluster.nodes[0]).wait()
        assert couch.nodes[0]["up"]  # the node answered; the caller's time ran out
        proxy.resume()
