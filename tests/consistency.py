"""Reading your own writes on a CouchDB cluster, as far as the CouchDB API allows.

An Apache CouchDB cluster keeps ``n`` copies of each shard (3 on the test
cluster) and answers a write once a quorum of them (2) has it; the last copy
catches up a few tens of milliseconds later. A read of one document
(``GET``, a quorum read, ``r=2``) meets at least one copy that has the write
and nearly always answers with it (once in a while, right after a conflict
was settled, with the other copy's older winner); ``_changes``, views,
``_all_docs``, ``_design_docs``, ``_find``, ``_revs_diff``/``_missing_revs``
and the database's info read whichever copy of each shard answers first, and
for that moment it may be the one without the write: the CouchDB
documentation promises them eventual consistency only. The security object
is the same: ``PUT /{db}/_security`` answers once a majority of the copies
of every shard has it, and ``GET`` reads one copy. On the test cluster,
a ``_changes`` read right after the first write to a new database misses it
about one time in four. Single nodes and pouchdb-server see every write at
once, so there the first try passes and these helpers cost nothing.

Data a test writes only to read it back is best written with
``w=EVERY_COPY``: the write then returns once every copy has it. Where the
write itself is under test, :func:`eventually` retries the read instead.

A stale ``_rev`` is subject to the same window: the copies that have the
newer revision refuse it, and the lagging copy accepts it; with any copy
accepting, CouchDB answers *accepted* (HTTP 202, ``ok`` in ``_bulk_docs``,
200 for an attachment DELETE) instead of 409, and the edit becomes a
conflicting leaf. A test of conflict handling therefore needs a real 409,
which :func:`until_conflict` gets.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Optional, Tuple, Type, TypeVar

import pytest

from corduroy import Conflict

T = TypeVar("T")

#: How long a cluster may take to show a write everywhere (it takes milliseconds; this is a generous bound).
SETTLE = 15.0

#: ``save(..., w=EVERY_COPY)`` returns once every copy of the shards has the
#: write (3 on the test cluster), so every read that follows sees it: the way
#: a test writes the data it then reads through a view or a feed. A single
#: node has one copy and answers 202 (written, "fewer copies than asked").
EVERY_COPY = 3


def eventually(check: Callable[[], T], timeout: float = SETTLE, interval: float = 0.05,
               retry_on: Tuple[Type[BaseException], ...] = (AssertionError,)) -> T:
    """Call ``check()`` until it returns without an AssertionError (or ``retry_on``); return what it returned.

    ``check`` reads from the server and asserts what it read. After
    ``timeout`` seconds the last exception is raised. Use it only for
    reads the API makes eventually consistent (see the module's docstring).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except retry_on:
            if time.monotonic() > deadline:
                raise
        time.sleep(interval)


def eventually_equal(read: Callable[[], T], expected: Any, timeout: float = SETTLE,
                     retry_on: Tuple[Type[BaseException], ...] = (AssertionError,)) -> T:
    """``read()``, again until it returns ``expected`` (an AssertionError shows the last value after ``timeout``).

    >>> eventually_equal(lambda: db.info()["doc_count"], 10)      # doctest: +SKIP
    """
    def check() -> T:
        got = read()
        assert got == expected
        return got

    return eventually(check, timeout, retry_on=retry_on)


def until_conflict(attempt: Callable[[int], Any], tries: int = 12) -> Conflict:
    """Run ``attempt(n)`` (a write with a stale ``_rev``, on fresh documents each time) until it raises Conflict.

    A single node (and pouchdb-server) answers 409 the first time; a cluster
    may accept a stale write while a copy lags (see the module's docstring).
    ``attempt`` checks what the client made of an accepted write and
    returns; the test needs one real Conflict, which comes within a few tries.
    """
    last: Optional[Any] = None
    for n in range(tries):
        try:
            last = attempt(n)
        except Conflict as exc:
            return exc
    pytest.fail("no Conflict for a stale _rev in %d tries (last answer: %r)" % (tries, last))
