"""The workloads W1 to W6: which jobs a client runs, and how each answer is checked.

A job is ``(kind, args, token)``: the driver calls the client's primitive
``kind`` with ``args`` and, when it completes, ``workload.check(kind, token,
result)`` says whether the answer was right.  Primitives every client has:

``get(doc_id)``            the document (a dict-like with ``_id``)
``bulk(docs)``             how many documents ``_bulk_docs`` wrote
``rows(n, source)``        how many rows an ``n``-row ``_all_docs`` / view read delivered
``changes(since, limit)``  ``(number of results, last_seq)`` of one ``_changes`` page
``update(doc)``            the document saved, conflicts resolved (its new ``_rev`` set)

Jobs are generated lazily, so a workload can depend on earlier answers (W4
pages through the feed with ``since=last_seq``; W5 updates the copy it last
read).  Every client gets the same job sequence.
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, List, Tuple

from .fixtures import doc_id, make_doc, mixed_ops

__all__ = ["WORKLOADS", "Workload", "make_workload", "DESCRIPTIONS"]

Job = Tuple[str, tuple, Any]

#: One line per workload, for the table and the docs.
DESCRIPTIONS = {
    "W1": "GET a document by id, N requests, C in flight",
    "W2": "bulk insert N documents through _bulk_docs in batches",
    "W3": "read an N-row _all_docs (or view): rows/s and peak RSS growth",
    "W4": "catch up a _changes feed of N changes, page by page",
    "W5": "mixed: 80% GET / 20% update with conflicts resolved, C in flight",
    "W6": "latency percentiles at a fixed open-loop request rate",
}
WORKLOADS = tuple(DESCRIPTIONS)


def _as_dict(doc: Any) -> Dict[str, Any]:
    return dict(doc) if isinstance(doc, dict) else dict(doc.items())


class Workload:
    """Base class: ``jobs()`` to run, ``check()`` for each answer, ``units`` done."""

    name = ""
    unit = "requests"

    def __init__(self, spec: Dict[str, Any]) -> None:
        self.spec = spec
        self.units = 0  # what the rate counts (requests, docs, rows, changes, ops)
        self.notes: Dict[str, Any] = {}

    def jobs(self) -> Iterator[Job]:  # pragma: no cover - interface
        raise NotImplementedError

    def warmup_jobs(self) -> List[Job]:
        """A few GETs that open connections and load lazy imports before timing starts."""
        count = int(self.spec.get("warmup", 0))
        ids = self.spec["ids"]
        return [("get", (doc_id(i % ids),), doc_id(i % ids)) for i in range(count)]

    def check(self, kind: str, token: Any, result: Any) -> bool:
        """True if ``result`` is the right answer for the job."""
        if kind == "get":
            return result["_id"] == token
        if kind == "bulk":
            return result == token
        raise ValueError(kind)


class GetById(Workload):
    """W1: N GETs of existing documents, round robin over the seeded ids."""

    name = "W1"

    def jobs(self) -> Iterator[Job]:
        n, ids = int(self.spec["requests"]), int(self.spec["ids"])
        self.units = n
        names = [doc_id(i) for i in range(min(ids, n))]
        return iter([("get", (names[i % len(names)],), names[i % len(names)]) for i in range(n)])


class OpenLoop(GetById):
    """W6: the same GETs, sent on a timer at a fixed rate whatever the completions."""

    name = "W6"


class BulkInsert(Workload):
    """W2: N fresh documents written through ``_bulk_docs`` in batches."""

    name = "W2"
    unit = "docs"

    def prepare(self) -> None:
        n, batch = int(self.spec["docs"]), int(self.spec["batch"])
        offset = 10 ** 9 // 2  # ids that the seeded documents never use
        docs = [make_doc(offset + i) for i in range(n)]
        self._batches = [docs[i:i + batch] for i in range(0, n, batch)]
        self.units = n

    def jobs(self) -> Iterator[Job]:
        return iter([("bulk", (batch,), len(batch)) for batch in self._batches])

    def warmup_jobs(self) -> List[Job]:
        """One-document bulk writes (the fresh database has nothing to GET yet)."""
        count = int(self.spec.get("warmup", 0))
        return [("bulk", ([make_doc(10 ** 9 // 4 + i)],), 1) for i in range(count)]


class ReadRows(Workload):
    """W3: one N-row read of ``_all_docs`` (or the view)."""

    name = "W3"
    unit = "rows"

    def jobs(self) -> Iterator[Job]:
        n = int(self.spec["rows"])
        self.units = n
        return iter([("rows", (n, self.spec.get("source", "all_docs")), n)])

    def check(self, kind: str, token: Any, result: Any) -> bool:
        if kind == "rows":
            return result == token
        return super().check(kind, token, result)


class CatchUpChanges(Workload):
    """W4: page through ``_changes`` from ``since=0`` with ``limit=batch`` until N changes arrived."""

    name = "W4"
    unit = "changes"

    def jobs(self) -> Iterator[Job]:
        self.target = int(self.spec["changes"])
        self.batch = int(self.spec["changes_batch"])
        self.received = 0
        self.since: Any = 0
        self.finished = False
        self.pages = 0

        def generate() -> Iterator[Job]:
            while not self.finished and self.received < self.target:
                limit = min(self.batch, self.target - self.received)
                yield ("changes", (self.since, limit), limit)

        return generate()

    def check(self, kind: str, token: Any, result: Any) -> bool:
        if kind != "changes":
            return super().check(kind, token, result)
        count, last_seq = result
        self.pages += 1
        self.received += count
        self.units = self.received
        self.since = last_seq
        if count == 0:
            self.finished = True
        self.notes["pages"] = self.pages
        return count == token or (count < token and self.received >= self.target)


class Mixed(Workload):
    """W5: 80% GETs, 20% updates of a hot set of documents, conflicts resolved by the client."""

    name = "W5"
    unit = "ops"

    def jobs(self) -> Iterator[Job]:
        ops = mixed_ops(int(self.spec["requests"]), int(self.spec["hot"]))
        self.units = len(ops)
        self.cache: Dict[int, Dict[str, Any]] = {}
        self.notes["updates"] = sum(1 for kind, _ in ops if kind == "update")

        def generate() -> Iterator[Job]:
            for i, (kind, n) in enumerate(ops):
                if kind == "get":
                    yield ("get", (doc_id(n),), n)
                else:
                    cached = self.cache.get(n)
                    doc = _as_dict(cached) if cached is not None else make_doc(n)
                    doc["count"] = i
                    yield ("update", (doc,), n)

        return generate()

    def check(self, kind: str, token: Any, result: Any) -> bool:
        if kind == "get":
            self.cache[token] = result
            return result["_id"] == doc_id(token)
        if kind == "update":
            self.cache[token] = result
            return result["_id"] == doc_id(token) and bool(result.get("_rev"))
        return super().check(kind, token, result)


_CLASSES = {"W1": GetById, "W2": BulkInsert, "W3": ReadRows, "W4": CatchUpChanges, "W5": Mixed, "W6": OpenLoop}


def make_workload(spec: Dict[str, Any]) -> Workload:
    """The workload object for ``spec["workload"]``."""
    return _CLASSES[spec["workload"]](spec)

