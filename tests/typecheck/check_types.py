"""What a mypy user sees: the types of the I/O methods in each calling style.

Never run, only type-checked: ``mypy tests/typecheck`` (``make lint``, and
tests/test_typing.py).  ``assert_type`` fails the check when a declared type
drifts; each ``# type: ignore[code]`` below marks an error mypy must report
(checked with ``--warn-unused-ignores``: an ignore that is no longer needed fails).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Union

from typing_extensions import assert_type

from corduroy import Couch, Database, Document, Formatted, Operation, Row, Status, View, relax
from corduroy.changes import ChangesFeed, DbUpdatesFeed
from corduroy.conflicts import ConflictResolution
from corduroy.mango import FindResult
from corduroy.results import BoolResult, DictResult, IntResult, ListResult, StrResult


def on_doc(doc: Optional[Document], status: Status) -> None:
    """A typed callback: the data is None when the call failed."""


def blocking(couch: Couch, db: Database) -> None:
    """No callback, no reactor running: the call returns the data."""
    assert_type(db.get("a"), Document)
    doc: Document = db.get("a")
    assert_type(doc["x"], Any)
    assert_type(db.get(["a", "b"]), ListResult[Optional[Document]])
    docs: List[Optional[Document]] = db.get(["a", "b"])
    assert_type(db.save({"_id": "a"}), ConflictResolution)
    assert_type(db.view("ddoc/v"), View)
    assert_type(db.view("ddoc/v")[0], Row)
    assert_type(db.all_docs(include_docs=True), View)
    assert_type(db.find({"x": 1}), FindResult)
    assert_type(db.show("ddoc/s", "a"), Formatted)
    assert_type(db.info(), Document)
    assert_type(db.missing_revs({"a": ["1-x"]}), DictResult)
    assert_type(db.revs_limit(), Union[IntResult, Document])
    exists: bool = db.exists()
    assert_type(db.exists(), BoolResult)
    assert_type(couch.create("db"), Database)
    assert_type(couch.db("db"), Database)
    names: List[str] = couch.all_dbs()
    assert_type(couch.all_dbs(), ListResult[str])
    version: str = couch.version()
    assert_type(couch.version(), StrResult)
    assert_type(db.view_queries("d/v", [{}]), ListResult[View])
    assert_type(db.changes(), Document)  # feed="normal"
    assert_type(db.changes(feed="longpoll", since="now"), Document)
    assert_type(db.changes(feed="eventsource", callback=lambda seq, changes: None), ChangesFeed)
    assert_type(db.follow(since=0, feed="eventsource"), ChangesFeed)
    feed_kind: str = "continuous"
    # feed= must be a literal (or typed as one) for mypy to pick the type:
    db.changes(feed=feed_kind)  # type: ignore[call-overload]
    assert_type(couch.db_updates(), Document)
    assert_type(couch.db_updates("continuous", lambda seq, events: None), DbUpdatesFeed)
    assert_type(db.iterview("d/v").next_page(), ListResult[Row])
    count: int = len(db)
    del docs, exists, names, version, count, doc


def with_callbacks(couch: Couch, db: Database, feed: ChangesFeed) -> None:
    """callback= given: the call returns an Operation of the data."""
    op = db.get("a", callback=on_doc)
    assert_type(op, Operation[Document])
    assert_type(op.result(), Document)
    assert_type(db.get("a", on_doc), Operation[Document])
    assert_type(db.info(None, on_doc), Operation[Document])
    assert_type(db.view("d/v", callback=lambda view, status: None), Operation[View])
    assert_type(db.find({"x": 1}, callback=lambda found, status: None), Operation[FindResult])
    assert_type(couch.all_dbs(callback=lambda names, status: None), Operation[List[str]])
    assert_type(couch.create("db", callback=lambda db, status: None), Operation[Database])
    assert_type(db.save({}, callback=lambda result, status: None), Operation[ConflictResolution])
    assert_type(feed.next(callback=lambda change, status: None), Operation[Optional[Document]])
    # A callback that may be None: mypy splits the union over the two overloads.
    maybe: Optional[Callable[[Optional[Document], Status], None]] = on_doc
    assert_type(db.get("a", callback=maybe), Union[Document, Operation[Document]])
    # The data is None when the call failed, so a callback must check before indexing:
    db.get("a", callback=lambda doc, status: doc["x"])  # type: ignore[index]


async def awaiting(couch: Couch, db: Database, feed: ChangesFeed) -> None:
    """asyncio: no callback, the reactor is running; the call is awaited."""
    doc = await db.get("a")
    assert_type(doc, Document)
    assert_type(await db.get(["a"]), List[Optional[Document]])
    assert_type(await db.view("d/v"), View)
    assert_type(await db.find({"x": 1}), FindResult)
    assert_type(await db.exists(), bool)
    assert_type(await couch.all_dbs(), List[str])
    assert_type(await couch.version(), str)
    assert_type(await couch.create("db"), Database)
    assert_type(await db.save({}), ConflictResolution)
    assert_type(await db.missing_revs({}), Dict[str, Any])
    assert_type(await db.get("a", callback=on_doc), Document)
    async for change in feed:
        assert_type(change, Any)
    # A result that may be None is not awaitable to mypy (use async for, or callback=):
    await feed.next()  # type: ignore[misc]


@relax
def generator(db: Database) -> Any:
    """@relax: a generator's sent values have one type, so ``yield`` gives Any."""
    doc = yield db.get("a")
    assert_type(doc, Any)
