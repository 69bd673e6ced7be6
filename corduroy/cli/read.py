"""``corduroy dump DB`` and ``corduroy follow DB``: a database's documents and its changes, as JSON lines.

``dump`` pages through ``_all_docs?include_docs=true`` (``--page-size`` rows
per request, the next page requested while the current one is written), so
memory holds two pages at most.  ``--changes`` then follows the changes feed
from where the database stood when the dump began, printing each changed
document (a deleted one as ``{"_id", "_rev", "_deleted": true}``) until
interrupted: a document changed during the dump may appear twice, the later
line being the newer version.

``follow`` prints the continuous changes feed, one change per line (``seq``,
``id``, ``changes``, ``deleted``, ``doc``), flushing after each batch; it
reconnects by itself when the connection drops, and a later run resumes
with ``--since`` and the last ``seq`` printed.
"""
from __future__ import annotations

import argparse
from typing import Any, Callable, Dict, Generator, List, Optional

from loop import Operation
from loop.redact import describe

from ..changes import ChangesFeed
from ..database import Database
from ..relax import relax
from ..views import Pager, Row
from .errors import ExitCode, UsageError
from .io import Output, Progress, encode_line

__all__ = ["run_dump", "run_follow", "open_feed", "print_changes"]


@relax
def _dump_pages(pager: Pager, output: Output, progress: Progress) -> Generator[Any, Any, int]:
    count = 0
    # Inside the reactor next_page() returns an Operation (its declared type is the blocking one).
    page: Operation[List[Row]] = pager.next_page()  # type: ignore[assignment]
    while True:
        rows = yield page
        if not rows:
            return count
        page = pager.next_page()  # type: ignore[assignment]  # in flight while this one is written
        try:
            output.write_bytes(b"".join(encode_line(row.doc) for row in rows if row.doc is not None))
        except BaseException:
            page.cancel()  # the output is gone (a closed pipe): the next page is not wanted
            raise
        count += len(rows)
        progress.update(len(rows))


def run_dump(ctx: Any, args: argparse.Namespace) -> int:
    """The ``dump`` command."""
    db: Database = ctx.database(args.db)
    info = db.info()
    options: Dict[str, Any] = {"include_docs": True}
    if args.attachments:
        options["attachments"] = True
    pager = db.iter_all_docs(page_size=args.page_size, **options)
    progress = Progress(ctx.show_progress, info.get("doc_count"), "doc", "dump")
    ctx.messages.progress = progress
    try:
        _dump_pages(pager, ctx.output, progress)
    finally:
        progress.close()
        ctx.messages.progress = None
    ctx.output.flush()
    if args.changes:
        feed = open_feed(db, since=info.get("update_seq"), include_docs=True,
                         attachments=True if args.attachments else None)
        print_changes(feed, ctx.output, _as_document)
    return ExitCode.OK


def _as_document(change: Dict[str, Any]) -> Any:
    doc = change.get("doc")
    if doc is None:  # no body: a deletion the server reports without one
        revs = change.get("changes") or [{}]
        doc = {"_id": change.get("id"), "_rev": revs[0].get("rev")}
        if change.get("deleted"):
            doc["_deleted"] = True
    return doc


def open_feed(db: Database, **options: Any) -> ChangesFeed:
    """``db.follow(**options)`` (None values left out); bad options are a UsageError."""
    try:
        return db.follow(**{k: v for k, v in options.items() if v is not None})
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def print_changes(feed: ChangesFeed, output: Output,
                  shape: Optional[Callable[[Dict[str, Any]], Any]] = None) -> int:
    """Print the changes of ``feed`` (each through ``shape``) until it ends; returns how many."""
    count = 0
    with feed:
        while True:
            batch = feed.next_batch()
            if batch is None:
                return count
            output.write_bytes(b"".join(encode_line(shape(c) if shape else c) for c in batch))
            output.flush()
            count += len(batch)


def run_follow(ctx: Any, args: argparse.Namespace) -> int:
    """The ``follow`` command."""
    db: Database = ctx.database(args.db)
    params: Dict[str, Any] = {}
    for item in args.param or ():
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError("--param takes NAME=VALUE, got %s" % describe(item))
        params[name] = value
    if params and not args.filter:
        raise UsageError("--param goes with --filter (the filter function reads it from req.query)")
    feed = open_feed(db, since=args.since, include_docs=True if args.include_docs else None,
                     limit=args.limit, filter=args.filter, **params)
    db.info()  # a missing database or an unreachable server fails here, not in the feed's retry loop
    print_changes(feed, ctx.output)
    return ExitCode.OK
