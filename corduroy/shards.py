"""Which shard range holds a document: CouchDB's own placement, computed on the client.

A CouchDB 3 database is split into ``q`` shard ranges, each kept in ``n``
copies on nodes of the cluster.  ``GET /{db}/_shards`` answers the map::

    {"shards": {"00000000-7fffffff": ["couchdb@node1", "couchdb@node2"],
                "80000000-ffffffff": ["couchdb@node2", "couchdb@node3"]}}

and a document lives in the range that holds the CRC-32 of its id's UTF-8
bytes (``mem3_hash``).  In a partitioned database the hash is taken over the
partition alone (the part of the id before the first ``:``), so that all of
a partition lives in one range; design documents are global and hash their
whole id.  :class:`ShardMap` answers "which nodes hold this id" with no I/O;
``GET /{db}/_shards/{docid}`` is the server's own answer, which the tests
compare it with.
"""
from __future__ import annotations

import bisect
import zlib
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

__all__ = ["ShardMap", "doc_hash", "parse_range", "format_range", "doc_of_path"]


def doc_hash(doc_id: str, partitioned: bool = False) -> int:
    """CouchDB's hash of a document id (an unsigned 32-bit int): CRC-32 of the UTF-8 id, or of its partition.

    >>> doc_hash("apple") == zlib.crc32(b"apple")
    True
    >>> doc_hash("fruit:apple", partitioned=True) == doc_hash("fruit")
    True
    """
    if partitioned and not doc_id.startswith("_design/"):
        doc_id = doc_id.partition(":")[0]
    return zlib.crc32(doc_id.encode("utf-8"))


def parse_range(text: str) -> Tuple[int, int]:
    """``"00000000-7fffffff"`` as ``(0, 0x7fffffff)`` (both ends included); ValueError if malformed."""
    lo, sep, hi = text.partition("-") if isinstance(text, str) else ("", "", "")
    try:
        low, high = int(lo, 16), int(hi, 16)
    except ValueError:
        sep = ""
    if not sep or not 0 <= low <= high <= 0xFFFFFFFF:
        raise ValueError("a shard range looks like 00000000-7fffffff, not %r" % (text,))
    return low, high


class ShardMap:
    """A database's shard ranges and the names of the nodes that hold each.

    Built from the body of ``GET /{db}/_shards`` (``ShardMap.from_answer``);
    ``partitioned`` tells how ids hash (see :func:`doc_hash`).

    >>> m = ShardMap({"00000000-7fffffff": ["a@h"], "80000000-ffffffff": ["b@h", "c@h"]})
    >>> m.owners("x") in (("a@h",), ("b@h", "c@h"))
    True
    """

    __slots__ = ("_lows", "_ranges", "partitioned", "nodes")

    def __init__(self, shards: Mapping[str, Sequence[str]], partitioned: bool = False) -> None:
        ranges: List[Tuple[int, int, Tuple[str, ...]]] = []
        for text, names in shards.items():
            low, high = parse_range(text)
            if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
                raise ValueError("shard range %s: expected a list of node names" % text)
            ranges.append((low, high, tuple(names)))
        if not ranges:
            raise ValueError("a shard map has at least one range")
        ranges.sort()
        self._ranges = ranges
        self._lows = [r[0] for r in ranges]
        self.partitioned = bool(partitioned)
        #: Every node name that holds a copy of some range.
        self.nodes = frozenset(name for r in ranges for name in r[2])

    @classmethod
    def from_answer(cls, answer: Any, partitioned: bool = False) -> "ShardMap":
        """The map in an answer of ``GET /{db}/_shards`` (``{"shards": {range: [node, ...]}}``)."""
        if not isinstance(answer, dict) or not isinstance(answer.get("shards"), dict):
            raise ValueError("not a _shards answer: %r" % (answer,))
        return cls(answer["shards"], partitioned)

    def range_of(self, doc_id: str) -> Tuple[int, int]:
        """``(low, high)`` of the range that holds ``doc_id``."""
        low, high, _names = self._find(doc_id)
        return low, high

    def owners(self, doc_id: str) -> Tuple[str, ...]:
        """The names of the nodes that hold a copy of ``doc_id`` (empty if no range covers its hash)."""
        return self._find(doc_id)[2]

    def _find(self, doc_id: str) -> Tuple[int, int, Tuple[str, ...]]:
        h = doc_hash(doc_id, self.partitioned)
        i = bisect.bisect_right(self._lows, h) - 1
        if i >= 0:
            low, high, names = self._ranges[i]
            if low <= h <= high:
                return low, high, names
        return (h, h, ())

    def ranges(self) -> Dict[str, Tuple[str, ...]]:
        """``{"00000000-7fffffff": (node, ...), ...}``, as CouchDB spells the ranges."""
        return {"%08x-%08x" % (low, high): names for low, high, names in self._ranges}

    def __repr__(self) -> str:
        return "<ShardMap q=%d nodes=%d%s>" % (len(self._ranges), len(self.nodes),
                                               " partitioned" if self.partitioned else "")


def format_range(low: int, high: int) -> str:
    """``(0, 0x7fffffff)`` as ``"00000000-7fffffff"``."""
    return "%08x-%08x" % (low, high)


def doc_of_path(path: str) -> Optional[Tuple[str, str]]:
    """``(db, doc_id)`` (unquoted) for a request path that names one document, else None.

    ``/db/id``, ``/db/id/attachment``, ``/db/_design/x``, ``/db/_local/x``
    (and their attachments) name documents; ``/db/_all_docs`` and every
    other ``_`` endpoint do not.
    """
    from urllib.parse import unquote

    parts = path.split("/", 3)  # "", db, first, rest
    if len(parts) < 3 or not parts[1] or not parts[2]:
        return None
    first = parts[2]
    if first[0] == "_":
        if first not in ("_design", "_local") or len(parts) < 4 or not parts[3]:
            return None
        doc_id = first + "/" + unquote(parts[3].split("/", 1)[0])
    else:
        doc_id = unquote(first)
    return unquote(parts[1]), doc_id
