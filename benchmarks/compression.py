"""Bytes on the wire and time for a 10,000-document bulk insert, with and without request compression.

    COUCHDB_URL=http://admin:pw@127.0.0.1:5984 .venv/bin/python -m benchmarks.compression [--docs 10000] [--batch 1000]

Inserts the same documents (person records, ~300 bytes of JSON each) into a
fresh database with ``_bulk_docs``, first as plain JSON, then with
``compress_requests=True`` (gzip, level 1), ``--rounds`` times each.  Bytes
are counted by a byte-counting TCP relay in front of the server (request
bytes up, response bytes down, headers included); times are taken on a
direct connection (no relay), median of the rounds.  Needs a CouchDB
(``COUCHDB_URL``; pouchdb-server works too).
"""
from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import sys
import threading
import time
import uuid
from typing import Any, Dict, List, Tuple
from urllib.parse import urlsplit, urlunsplit

from corduroy import Couch


class CountingRelay:
    """A TCP relay on a free loopback port that counts the bytes going each way."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.up = 0
        self.down = 0
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(client, server, "up"), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, "down"), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, way: str) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self.lock:
                    setattr(self, way, getattr(self, way) + len(data))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def reset(self) -> None:
        with self.lock:
            self.up = self.down = 0

    def close(self) -> None:
        self.closed = True
        self.listener.close()


def make_docs(count: int, seed: int = 1) -> List[Dict[str, Any]]:
    rng = random.Random(seed)
    first = ["Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "John", "Margaret", "Niklaus"]
    last = ["Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "Backus", "Hamilton", "Wirth"]
    cities = ["London", "Paris", "Berlin", "Madrid", "Rome", "Vienna", "Prague", "Lisbon", "Dublin", "Oslo"]
    docs = []
    for n in range(count):
        f, la = rng.choice(first), rng.choice(last)
        docs.append({
            "_id": "person:%06d" % n, "type": "person", "name": "%s %s" % (f, la),
            "email": "%s.%s%d@example.com" % (f.lower(), la.lower(), n), "age": rng.randint(18, 90),
            "tags": rng.sample(["admin", "staff", "guest", "beta", "vip", "ops", "dev"], 3),
            "address": {"street": "%d %s Street" % (rng.randint(1, 999), rng.choice(last)),
                        "city": rng.choice(cities), "zip": "%05d" % rng.randint(0, 99999)},
            "created": "2026-%02d-%02dT%02d:%02d:00Z" % (rng.randint(1, 12), rng.randint(1, 28),
                                                         rng.randint(0, 23), rng.randint(0, 59)),
            "active": rng.random() < 0.8, "score": round(rng.random() * 100, 2),
        })
    return docs


def insert(url: str, docs: List[Dict[str, Any]], batch: int, compress: bool) -> float:
    """Insert ``docs`` into a fresh database in ``batch``-sized ``_bulk_docs``; return the seconds it took."""
    couch = Couch(url, compress_requests=compress)
    name = "bench_compression_%s" % uuid.uuid4().hex[:10]
    db = couch.create(name)
    try:
        fresh = [dict(doc) for doc in docs]
        started = time.perf_counter()
        for i in range(0, len(fresh), batch):
            db.save(fresh[i:i + batch])
        return time.perf_counter() - started
    finally:
        couch.delete(name)


def via_relay(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = "127.0.0.1:%d" % port
    return urlunsplit(parts._replace(netloc=(netloc[0] + "@" + host) if len(netloc) == 2 else host))


def measure(url: str, count: int, batch: int, rounds: int) -> Dict[bool, Tuple[float, int, int]]:
    docs = make_docs(count)
    parts = urlsplit(url)
    relay = CountingRelay(parts.hostname or "127.0.0.1", parts.port or 5984)
    results: Dict[bool, Tuple[float, int, int]] = {}
    try:
        for compress in (False, True):
            relay.reset()
            insert(via_relay(url, relay.port), docs, batch, compress)  # bytes (create/delete included)
            up, down = relay.up, relay.down
            times = [insert(url, docs, batch, compress) for _ in range(rounds)]
            results[compress] = (statistics.median(times), up, down)
    finally:
        relay.close()
    return results


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=1000, help="documents per _bulk_docs request")
    parser.add_argument("--rounds", type=int, default=3, help="timed inserts per mode (the median is shown)")
    args = parser.parse_args(argv)
    url = os.environ.get("COUCHDB_URL")
    if not url:
        print("benchmarks.compression: set COUCHDB_URL (e.g. from ../shared/couchdb/start)", file=sys.stderr)
        return 2
    results = measure(url, args.docs, args.batch, args.rounds)
    print("%d documents, _bulk_docs of %d, median of %d rounds" % (args.docs, args.batch, args.rounds))
    print("%-22s %14s %14s %10s" % ("mode", "bytes up", "bytes down", "seconds"))
    for compress, label in ((False, "plain JSON"), (True, "compress_requests=True")):
        seconds, up, down = results[compress]
        print("%-22s %14d %14d %10.3f" % (label, up, down, seconds))
    plain, packed = results[False], results[True]
    print("request bytes: %.1fx fewer; time: %.2fx" % (plain[1] / max(packed[1], 1), packed[0] / plain[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
