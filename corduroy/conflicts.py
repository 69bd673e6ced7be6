"""ConflictResolution: the outcome of a save, and the standard recipe for its conflicts.

The recipe (the guide's "Eventual Consistency"): attempt the write; for each
conflicted document fetch the server's copy, merge it with the local one,
and write the merged documents; repeat until no conflict remains or the
merge function gives up (returns None).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Generator, List, Optional, overload

from loop import Operation

from .contract import io_methods
from .results import DataCallback

if TYPE_CHECKING:  # pragma: no cover
    from .database import Database

__all__ = ["ConflictResolution", "MergeFunction", "take_server_rev"]

#: ``merge(local_doc, server_doc)``: the document to write, or None to leave it pending.
MergeFunction = Callable[[Any, Optional[dict]], Optional[dict]]

#: How many fetch-merge-write rounds ``resolve`` makes before it leaves the rest pending.
MAX_ROUNDS = 25


def take_server_rev(local: dict, server: Optional[dict]) -> dict:
    """The merge used by ``force=True`` and ``overwrite()``: keep ours, with the server's ``_rev``."""
    if server is None:
        local.pop("_rev", None)
    else:
        local["_rev"] = server["_rev"]
    return local


@io_methods
class ConflictResolution:
    """What a ``save`` did: ``resolved`` docs written, ``pending`` docs in conflict.

    Both are dicts keyed by ``_id``.  ``errors`` holds documents refused for
    another reason (``{id: {"doc", "error", "reason"}}``); those are not
    retried.  ``resolve(merge)`` and ``overwrite()`` work the pending ones.
    """

    if TYPE_CHECKING:  # pragma: no cover
        def __await__(self) -> Generator[Any, None, ConflictResolution]:
            """For type checkers only (nothing at run time): see :mod:`corduroy.results`."""

    def __init__(self, db: "Database", resolved: Optional[Dict[str, Any]] = None,
                 pending: Optional[Dict[str, Any]] = None, errors: Optional[Dict[str, Any]] = None,
                 options: Optional[Dict[str, Any]] = None) -> None:
        self.db = db
        self.resolved: Dict[str, Any] = resolved if resolved is not None else {}
        self.pending: Dict[str, Any] = pending if pending is not None else {}
        self.errors: Dict[str, Any] = errors if errors is not None else {}
        self._options = options or {}

    @property
    def ok(self) -> bool:
        """True when nothing is pending and nothing failed."""
        return not self.pending and not self.errors

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        if self.pending or self.errors:
            parts = []
            if self.pending:
                parts.append("<Conflict: %s>" % ", ".join(str(k) for k in self.pending))
            if self.errors:
                parts.append("<Error: %s>" % ", ".join(
                    "%s (%s)" % (k, v.get("error")) for k, v in self.errors.items()))
            return " ".join(parts)
        count = len(self.resolved)
        return "<Success: %d doc%s updated>" % (count, "" if count == 1 else "s")

    @overload
    def resolve(self, merge: MergeFunction, callback: None = None) -> ConflictResolution: ...

    @overload
    def resolve(self, merge: MergeFunction,
                callback: DataCallback[ConflictResolution]) -> Operation[ConflictResolution]: ...

    def resolve(self, merge: MergeFunction, callback: Optional[Callable[[Any, Any], Any]] = None) -> Any:
        """Merge each pending doc with the server's copy and write the result, until none conflicts.

        ``merge(local_doc, server_doc)`` returns the doc to write, or None to
        leave it pending (``server_doc`` is None if the server has no live
        copy).  Returns this object, updated.
        """
        if not callable(merge):
            raise TypeError("merge must be a function of (local_doc, server_doc)")
        return self.db._run(self._resolve(merge), callback)

    @overload
    def overwrite(self, callback: None = None) -> ConflictResolution: ...

    @overload
    def overwrite(self, callback: DataCallback[ConflictResolution]) -> Operation[ConflictResolution]: ...

    def overwrite(self, callback: Optional[Callable[[Any, Any], Any]] = None) -> Any:
        """Write the pending docs over the server's copies (taking the server's ``_rev``)."""
        return self.resolve(take_server_rev, callback)

    def _resolve(self, merge: MergeFunction) -> Generator[Any, Any, "ConflictResolution"]:
        for _ in range(MAX_ROUNDS):
            if not self.pending:
                break
            ids = list(self.pending)
            current = yield self.db._fetch_many(ids)
            to_write: List[Any] = []
            for doc_id, server_doc in zip(ids, current):
                merged = merge(self.pending[doc_id], server_doc)
                if merged is None:
                    continue
                if merged.get("_id") is None:
                    merged["_id"] = doc_id
                to_write.append(merged)
            if not to_write:
                break
            outcome = yield self.db._bulk_write(to_write, self._options)
            for doc_id in list(self.pending):
                if doc_id in outcome.resolved or doc_id in outcome.errors:
                    del self.pending[doc_id]
            self.resolved.update(outcome.resolved)
            self.errors.update(outcome.errors)
            for doc_id, doc in outcome.pending.items():
                self.pending[doc_id] = doc
        return self
