"""Fork safety: a child process gets its own reactor and connections, never the parent's.

After ``os.fork()`` (``multiprocessing`` workers with the ``fork`` start
method) the first corduroy call in the child makes a new reactor and curl
driver; the parent's, inherited in the child's memory, are abandoned without
being closed (see ``Reactor._abandon`` in ``loop/reactor.py``), so the child
never reads, writes or closes a socket the parent still uses.

Connections are told apart by their local port, and "never touched" is
checked with the kernel's own counters: ``TCP_INFO`` gives the bytes sent
(acknowledged) and received on a socket, shared by every process holding it.
"""
from __future__ import annotations

import multiprocessing
import os
import socket
import struct
from typing import Any, Dict, List, Optional, Set, Tuple


import loop
from corduroy import Couch, Database
from tests.consistency import eventually
from tests.sockets import connections_to

#: ``struct tcp_info``: ``tcpi_bytes_acked`` and ``tcpi_bytes_received`` (Linux 4.2+).
_TCP_INFO_LEN = 136
_BYTES_AT = 120


def traffic(fd: int) -> Optional[Tuple[int, int]]:
    """``(bytes sent and acknowledged, bytes received)`` on socket ``fd``; None if the kernel does not say."""
    sock = socket.socket(fileno=os.dup(fd))
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    finally:
        sock.close()
    if len(info) < _TCP_INFO_LEN:
        return None
    return struct.unpack_from("QQ", info, _BYTES_AT)


def get_many(db: Database, ids: List[str]) -> List[Any]:
    """GET ``ids`` concurrently on this process's reactor; the documents' ``_id`` (or the exception)."""
    reactor = loop.get_reactor()
    results: List[Any] = [None] * len(ids)
    remaining = [len(ids)]

    def done(i: int) -> Any:
        def callback(doc: Any, status: Any) -> None:
            results[i] = doc["_id"] if status.ok else status.exception
            remaining[0] -= 1
            if remaining[0] == 0:
                reactor.stop()
        return callback

    for i, doc_id in enumerate(ids):
        db.get(doc_id, callback=done(i))
    deadline = reactor.call_later(30, reactor.stop)
    reactor.run()
    deadline.cancel()
    return results


def child_task(args: Tuple[str, int, Dict[int, int], int]) -> Dict[str, Any]:
    """Runs in a pool worker: requests on the child's own reactor; reports what it used."""
    url, port, parent_connections, task = args
    reactor = loop.get_reactor()
    ids = ["doc%09d" % (task * 100 + i) for i in range(40)]
    db = Database(url + "/forked")
    got = get_many(db, ids)
    single = db.get("doc%09d" % task)["_id"]  # a blocking call too
    mine = connections_to(port)
    inherited = {fd: lport for fd, lport in mine.items() if parent_connections.get(fd) == lport}
    own = {fd: lport for fd, lport in mine.items() if fd not in inherited}
    return {
        "pid": os.getpid(),
        "reactor": id(reactor),
        "reactor_pid": reactor.pid,
        "watched": reactor.curl.sockets,
        "ok": got == ids and single == "doc%09d" % task,
        "inherited": inherited,
        "own_ports": set(own.values()),
    }


def test_pool_workers_get_their_own_reactor_and_never_touch_the_parents_connections(canned, reactor):
    port = canned.port
    db = Database(canned.url + "/forked")
    warm = ["doc%09d" % i for i in range(8)]
    assert get_many(db, warm) == warm
    parent = connections_to(port)
    assert len(parent) == 8  # the parent's pool: one kept-alive connection per concurrent GET
    before = {fd: traffic(fd) for fd in parent}

    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        reports = pool.map(child_task, [(canned.url, port, parent, task) for task in range(8)], chunksize=1)
        pool.close()
        pool.join()

    parent_ports = set(parent.values())
    by_pid: Dict[int, Set[int]] = {}
    for report in reports:
        assert report["ok"]
        assert report["pid"] != os.getpid() and report["reactor_pid"] == report["pid"]
        # The child holds the parent's sockets (fork copied them) but watches none of them...
        assert report["inherited"] == parent
        assert not set(report["watched"]) & set(parent)
        # ...and its requests went over connections of its own.
        assert report["own_ports"] and not report["own_ports"] & parent_ports
        by_pid.setdefault(report["pid"], set()).add(report["reactor"])
    assert len(by_pid) > 1
    # A worker that ran several tasks made its reactor once, on first use.
    assert all(len(reactors) == 1 for reactors in by_pid.values())

    # Nothing was sent or received on the parent's connections while the children ran or exited.
    if all(value is not None for value in before.values()):
        assert {fd: traffic(fd) for fd in parent} == before
    # The parent's pooled connections still work: the same sockets carry its
    # next requests, and no new connection is opened for them.
    again = ["doc%09d" % i for i in range(500, 508)]
    assert get_many(db, again) == again
    assert connections_to(port) == parent
    if all(value is not None for value in before.values()):
        after = {fd: traffic(fd) for fd in parent}
        # libcurl may put two of the eight on one connection (an answer can
        # come back before the last request picks its connection), so not
        # every socket need have moved.  No connection was opened (above)
        # and all eight answers came back: these sockets carried them.
        assert all(after[fd][0] >= before[fd][0] and after[fd][1] >= before[fd][1] for fd in parent)
        assert sum(after[fd][1] - before[fd][1] for fd in parent) > 0
        assert sum(1 for fd in parent if after[fd][0] > before[fd][0]) >= 2


def test_a_child_forked_with_requests_in_flight_leaves_them_to_the_parent(canned, reactor):
    db = Database(canned.url + "/forked")
    get_many(db, ["doc000000000"])  # a pooled connection exists
    results: List[Any] = []
    ids = ["doc%09d" % i for i in range(10, 30)]

    def done(doc: Any, status: Any) -> None:
        results.append(doc["_id"] if status.ok else status.exception)
        if len(results) == len(ids):
            reactor.stop()

    for doc_id in ids:
        db.get(doc_id, callback=done)
    assert reactor.curl.active == len(ids)

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: requests of its own, then leave without cleanup
        code = 1
        try:
            os.close(read_end)
            child = loop.get_reactor()
            got = get_many(Database(canned.url + "/forked"), ["doc%09d" % i for i in range(40, 50)])
            fine = child is not reactor and child.curl.active == 0 and got == ["doc%09d" % i for i in range(40, 50)]
            os.write(write_end, b"ok" if fine else repr(got).encode()[:200])
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert answer == b"ok" and os.waitstatus_to_exitcode(status) == 0
    # The parent's transfers, started before the fork, complete here as if nothing happened.
    deadline = reactor.call_later(30, reactor.stop)
    reactor.run()
    deadline.cancel()
    assert sorted(results) == ids


def write_docs(args: Tuple[str, str, int]) -> List[str]:
    """Runs in a pool worker: save documents on the real server; return their revisions."""
    url, dbname, worker = args
    db = Couch(url)[dbname]
    docs = [{"_id": "w%d-%d" % (worker, i), "worker": worker, "pid": os.getpid()} for i in range(10)]
    db.save(docs)
    return [doc["_rev"] for doc in docs]


def checked_workers(docs: List[Any]) -> List[Any]:
    assert [d and d["worker"] for d in docs] == [w for w in range(6) for _ in range(10)]
    return docs


def test_pool_workers_write_to_the_real_server_and_the_parent_reads_it_all(couch_url, dbname, reactor):
    db = Couch(couch_url).create(dbname)
    db.save({"_id": "before"})
    assert db.get("before")["_id"] == "before"  # the parent has a pooled connection now
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(3) as pool:
        revs = pool.map(write_docs, [(couch_url, dbname, w) for w in range(6)], chunksize=1)
        pool.close()
        pool.join()
    assert all(len(r) == 10 and all(rev.startswith("1-") for rev in r) for r in revs)
    # get([ids]) reads _all_docs, which a cluster serves from any copy (tests.consistency).
    docs = eventually(lambda: checked_workers(db.get(["w%d-%d" % (w, i) for w in range(6) for i in range(10)])))
    assert len({d["pid"] for d in docs}) > 1 and os.getpid() not in {d["pid"] for d in docs}
    assert db.get("before")["_id"] == "before"
