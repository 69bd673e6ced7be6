"""One client over the nodes of a CouchDB cluster: spread, routed, and failing over by itself.

Run it with the nodes' URLs (credentials on the first one are used for all):

    python examples/cluster.py http://admin:pw@10.0.0.1:5984 http://10.0.0.2:5984 http://10.0.0.3:5984
"""
import sys

from corduroy import Couch, relax


def main(urls):
    couch = Couch(urls)                      # the nodes of one cluster
    db = couch.create("cluster_example", q=8)
    try:
        couch.cluster.load_map(db.name)      # optional: routing also fetches it by itself

        @relax
        def work():
            yield [db.save({"_id": "doc-%03d" % i, "n": i}) for i in range(100)]
            docs = yield [db.get("doc-%03d" % i) for i in range(100)]
            return sum(doc["n"] for doc in docs)

        print("sum of n:", work())
        for node in couch.nodes:             # each node's url, name, up, in_flight, served...
            print("%(url)s %(name)s up=%(up)s served=%(served)d" % node)
    finally:
        couch.delete(db.name)


if __name__ == "__main__":
    main(sys.argv[1:])
