"""corduroy under gevent: plain blocking calls in many greenlets, all overlapping.

Monkey-patching makes corduroy choose its gevent reactor; each call without a
callback then parks only the greenlet that made it.  Run it against your own
server with ``COUCHDB_URL=http://admin:pw@127.0.0.1:5984 python examples/gevent_example.py``.
"""
from gevent import monkey

monkey.patch_all()  # first, before other imports

import os  # noqa: E402
import uuid  # noqa: E402

import gevent  # noqa: E402

import loop  # noqa: E402
from corduroy import Couch  # noqa: E402

URL = os.environ.get("COUCHDB_URL", "http://127.0.0.1:5984")
FRUIT = ["apple", "banana", "cherry", "damson", "elderberry", "fig", "grape", "plum", "quince", "rhubarb"]


def main() -> None:
    print("backend:", loop.get_reactor().backend)
    couch = Couch(URL)
    name = "corduroy_gevent_%s" % uuid.uuid4().hex[:8]
    db = couch.create(name)
    try:
        db.save([{"_id": "fruit-%02d" % i, "name": FRUIT[i % len(FRUIT)]} for i in range(30)])

        in_flight = peak = 0

        def fetch(doc_id):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                return db.get(doc_id)  # blocks this greenlet only
            finally:
                in_flight -= 1

        jobs = [gevent.spawn(fetch, "fruit-%02d" % i) for i in range(30)]
        gevent.joinall(jobs, raise_error=True)
        print("fetched %d documents in %d greenlets" % (len(jobs), len(jobs)))
        print("at most %d calls in flight at once" % peak)
        for job in jobs[:10]:
            print(job.value["_id"], "->", job.value["name"])
    finally:
        couch.delete(name)
        print("deleted", name)


if __name__ == "__main__":
    main()
