"""The data every target and every client share: document ids, the ~400-byte document, the view.

All clients read the same documents and write the same bodies, so a
comparison measures the clients and nothing else.  Ids are ``doc000000042``:
fixed width, so the canned server can generate rows with one ``%`` per block.
"""
from __future__ import annotations

import random
from typing import Any, Dict, List, Optional, Tuple

__all__ = [
    "DOC_ID_FORMAT", "doc_id", "make_doc", "CANNED_REV", "DESIGN_DOC", "VIEW_PATH",
    "mixed_ops", "parse_seq",
]

#: How document ids are spelled (``doc000000042``).
DOC_ID_FORMAT = "doc%09d"

#: The revision every canned document has; a PUT carrying it succeeds, another ``_rev`` conflicts.
CANNED_REV = "1-967a00dff5e02add41819138abb3284d"

_WORDS = ("relax", "couch", "corduroy", "curl", "libuv", "reactor", "view", "changes",
          "replicate", "document", "revision", "conflict", "merge", "bulk", "stream")

#: The design document every real target gets (``_design/bench``, view ``by_n``).
DESIGN_DOC: Dict[str, Any] = {
    "_id": "_design/bench",
    "language": "javascript",
    "views": {"by_n": {"map": "function (doc) { if (doc.type === 'bench') emit(doc.n, null); }"}},
}
#: The view's path inside a database.
VIEW_PATH = "/_design/bench/_view/by_n"


def doc_id(i: int) -> str:
    """The id of the ``i``-th benchmark document."""
    return DOC_ID_FORMAT % i


def make_doc(i: int, with_id: bool = True) -> Dict[str, Any]:
    """The ``i``-th benchmark document: about 400 bytes of JSON, the same for every client."""
    doc: Dict[str, Any] = {}
    if with_id:
        doc["_id"] = doc_id(i)
    doc.update({
        "type": "bench",
        "n": i,
        "name": "document number %d" % i,
        "active": i % 3 != 0,
        "score": round((i * 7919 % 10007) / 101.0, 3),
        "tags": [_WORDS[(i + k) % len(_WORDS)] for k in range(4)],
        "owner": {"name": "user%05d" % (i % 50000), "email": "user%05d@example.org" % (i % 50000),
                  "roles": ["reader", "writer"]},
        "text": "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.",
        "created": "2024-01-%02dT12:%02d:%02dZ" % (i % 28 + 1, i % 60, (i * 7) % 60),
    })
    return doc


def mixed_ops(count: int, hot: int, update_share: float = 0.2, seed: int = 42) -> List[Tuple[str, int]]:
    """W5's operation sequence: ``("get"|"update", doc number)``, the same for every client."""
    rng = random.Random(seed)
    ops = []
    for _ in range(count):
        n = rng.randrange(hot)
        ops.append(("update" if rng.random() < update_share else "get", n))
    return ops


def parse_seq(seq: Any) -> int:
    """The leading integer of a CouchDB sequence (``"42-g1AAA..."`` or ``42``); 0 if none."""
    if isinstance(seq, int):
        return seq
    text = str(seq)
    digits = 0
    for ch in text:
        if not ch.isdigit():
            break
        digits += 1
    return int(text[:digits]) if digits else 0


def seq_string(n: int) -> str:
    """A CouchDB 2+ style opaque sequence for position ``n``."""
    return "%d-g1AAAABteJzLYWBgYMpgTmHgz8tPSTV0MDQy1zMAQsMcoEQiQ1L9____szKYE1lzgQLsZoYp" % n


def split_url(url: str) -> Tuple[str, Optional[str], Optional[str]]:
    """``(url without credentials, user, password)``."""
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.username is None:
        return url.rstrip("/"), None, None
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc = "%s:%d" % (netloc, parts.port)
    bare = urlunsplit(parts._replace(netloc=netloc)).rstrip("/")
    return bare, unquote(parts.username), unquote(parts.password or "")
