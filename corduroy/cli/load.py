"""``corduroy load DB FILE``: documents from a JSON-lines file into a database, through ``_bulk_docs``.

Batches of ``--batch-size`` documents go to ``_bulk_docs``, ``--concurrency``
batches in flight at once (each worker is a ``@relax`` generator that reads
the next batch, optionally asks ``_all_docs`` which of its ids exist, and
saves it).  Memory holds at most ``concurrency`` batches, whatever the size of
the file.  An id that appears twice in the file is written in order: the batch
holding the second waits until the batch holding the first has been answered
(so the first one wins and the second is a conflict: never two creations of
one id at once, which a cluster may both accept).  On a cluster a copy of the
shard that has not yet caught up with the first write can still accept the
second (CouchDB answers 202 and keeps both as conflicting revisions); and
``--skip-existing`` asks ``_all_docs``, which any copy answers.  A regular file is
checked line by line before anything is sent (a bad line is an error, and
nothing is written); stdin is checked as it is read.

Conflicts and documents the server rejects are reported one line each on
stderr; the command then exits with 1.  On stdout it writes one JSON line
summing up: ``{"read", "loaded", "skipped", "conflicts", "rejected"}``.
"""
from __future__ import annotations

import argparse
from typing import Any, Dict, Generator, Iterator, List, Optional

from loop.operation import OK, Operation

from ..couch import Couch
from ..database import Database
from ..exceptions import CouchError, TransportError
from ..relax import relax
from .errors import CLIError, ExitCode, UsageError, describe, exit_code_for
from .io import DocumentReader, Messages, Progress, batches, encode_line

__all__ = ["Loader", "run_load"]


class Loader:
    """Loads batches of documents with several ``_bulk_docs`` requests in flight.

    ``stats`` counts documents: ``read`` from the file, ``loaded`` (written),
    ``skipped`` (``skip_existing``: already in the database), ``conflicts``
    and ``rejected`` (refused by the server for another reason, e.g. a
    ``validate_doc_update`` function).
    """

    def __init__(self, db: Database, docs: Iterator[dict], messages: Messages, progress: Progress,
                 batch_size: int = 1000, concurrency: int = 4, skip_existing: bool = False,
                 save_options: Optional[Dict[str, Any]] = None) -> None:
        self.db = db
        self.messages = messages
        self.progress = progress
        self.concurrency = concurrency
        self.skip_existing = skip_existing
        self.save_options = save_options or {}
        self.stats = {"read": 0, "loaded": 0, "skipped": 0, "conflicts": 0, "rejected": 0}
        self._batches = batches(docs, batch_size)
        self._stopping = False
        #: id -> an Operation completed when the batch writing it has its answer.
        self._writing: Dict[Optional[str], Operation] = {}  # looked up with doc.get("_id")

    def run(self) -> Dict[str, int]:
        """Load every document (blocking); returns ``stats``; raises the first failure."""
        self._all()
        return self.stats

    @relax
    def _all(self) -> Generator[Any, Any, None]:
        yield [self._worker() for _ in range(self.concurrency)]

    def _worker(self) -> Generator[Any, Any, None]:
        while not self._stopping:
            try:
                batch = next(self._batches, None)
                if batch is None:
                    return
                self.stats["read"] += len(batch)
                docs = batch
                if self.skip_existing:
                    docs = yield from self._without_existing(batch)
                if docs:
                    yield from self._after_earlier_writes_of(docs)
                    written = Operation()
                    ids = [doc["_id"] for doc in docs if isinstance(doc.get("_id"), str)]
                    for doc_id in ids:
                        self._writing[doc_id] = written
                    try:
                        outcome = yield self.db.save(docs, **self.save_options)
                    finally:
                        for doc_id in ids:
                            if self._writing.get(doc_id) is written:
                                del self._writing[doc_id]
                        written.complete(None, OK)
                    self._count(docs, outcome)
            except BaseException:
                self._stopping = True  # the other workers finish their batch and stop
                raise
            self.progress.update(len(batch))

    def _after_earlier_writes_of(self, docs: List[dict]) -> Generator[Any, Any, None]:
        """Wait for the batches in flight that write one of the ids of ``docs``."""
        while not self._stopping:
            earlier = {id(op): op for op in (self._writing.get(doc.get("_id")) for doc in docs)
                       if op is not None}
            if not earlier:
                return
            yield list(earlier.values())

    def _without_existing(self, batch: List[dict]) -> Generator[Any, Any, List[dict]]:
        ids = [doc["_id"] for doc in batch if doc.get("_id") is not None]
        if not ids:
            return batch
        rows = yield self.db.all_docs(keys=ids)
        existing = set()
        for row in rows:
            value = row.value
            if row.error is None and row.id is not None and not (isinstance(value, dict) and value.get("deleted")):
                existing.add(row.id)
        if not existing:
            return batch
        self.stats["skipped"] += len(existing)
        return [doc for doc in batch if doc.get("_id") not in existing]

    def _count(self, docs: List[dict], outcome: Any) -> None:
        for doc_id in outcome.pending:
            self.messages("conflict: %s" % encode_line(doc_id).decode("utf-8").rstrip("\n"))
        for doc_id, info in outcome.errors.items():
            self.messages("rejected: %s: %s: %s" % (encode_line(doc_id).decode("utf-8").rstrip("\n"),
                                                   info.get("error"), info.get("reason")))
        self.stats["conflicts"] += len(outcome.pending)
        self.stats["rejected"] += len(outcome.errors)
        # Count what was not refused: with new_edits=false the server answers
        # only for the documents it refused.
        self.stats["loaded"] += len(docs) - len(outcome.pending) - len(outcome.errors)


def _documents(reader: DocumentReader, args: argparse.Namespace) -> Iterator[dict]:
    """The documents of ``reader`` as the options want them (``--strip-revs``, ``--keep-revs``)."""
    for doc in reader:
        if args.strip_revs:
            doc.pop("_rev", None)
        elif args.keep_revs and (not doc.get("_id") or not isinstance(doc.get("_rev"), str)):
            raise UsageError("%s, line %d: --keep-revs needs an _id and a _rev in every document"
                             % (reader.name, reader.line))
        yield doc


def run_load(ctx: Any, args: argparse.Namespace) -> int:
    """The ``load`` command."""
    couch: Couch = ctx.couch
    db = ctx.database(args.db)  # the name is checked before any I/O
    reader = DocumentReader(args.file).open()
    progress = Progress(False, None, "doc", "load")
    loader = None
    try:
        try:
            exists = db.exists()
            if not exists and not args.create:
                raise CLIError("not found: database %r does not exist (%s); --create creates it"
                               % (db.name, db.url), ExitCode.NOT_FOUND)
            total = None
            if reader.seekable:
                # Check every line first: a bad one stops the load before anything is written.
                total = sum(1 for _ in _documents(reader, args))
                reader.rewind()
            if not exists:
                couch.db(db.name, create_if_missing=True)
        except CouchError as exc:
            raise CLIError(describe(exc), exit_code_for(exc)) from None
        progress = Progress(ctx.show_progress, total, "doc", "load")
        ctx.messages.progress = progress
        loader = Loader(db, _documents(reader, args), ctx.messages, progress, batch_size=args.batch_size,
                        concurrency=args.concurrency, skip_existing=args.skip_existing,
                        save_options={"new_edits": False} if args.keep_revs else None)
        stats = loader.run()
    except CouchError as exc:
        hint = ""
        if isinstance(exc, TransportError) and loader is not None:
            hint = "; %d documents loaded before it: load again with --skip-existing to resume" \
                   % loader.stats["loaded"]
        raise CLIError(describe(exc) + hint, exit_code_for(exc)) from None
    except UsageError as exc:
        if loader is not None and loader.stats["loaded"]:  # a bad line on stdin, after some batches
            raise UsageError("%s; %d documents were loaded before it (fix the line, then load again with "
                             "--skip-existing)" % (exc.message, loader.stats["loaded"])) from None
        raise
    except KeyboardInterrupt:
        done = loader.stats["loaded"] if loader is not None else 0
        raise CLIError("interrupted after %d documents loaded: load again with --skip-existing to resume"
                       % done, ExitCode.INTERRUPTED) from None
    finally:
        progress.close()
        ctx.messages.progress = None
        reader.close()
    ctx.output.write(stats)
    return ExitCode.PARTIAL if stats["conflicts"] or stats["rejected"] else ExitCode.OK
