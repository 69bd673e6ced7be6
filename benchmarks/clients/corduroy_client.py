"""corduroy in its four calling styles: callback, ``@relax``, ``await``, blocking.

All four use the public API (``Database.get``, ``Database.save``,
``all_docs``/``view``, ``changes``).  Where a method another engineer is still
writing is missing, the client falls back to the closest thing and says so in
``modes`` (``W3``: buffered instead of ``on_row=`` streaming, or a raw
``GET`` through the database's request helper).  The curl driver's
connection limit is set to the number of requests in flight, like every
other client's pool.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Generator, Optional, Tuple

from ..fixtures import VIEW_PATH

__all__ = ["CallbackStyle", "RelaxStyle", "AwaitStyle", "BlockingStyle", "CoalescingStyle", "Http2Style"]

VIEW_NAME = "bench/by_n"


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params


def _count_rows(result: Any) -> int:
    if isinstance(result, dict) and "rows" in result:
        return len(result["rows"])
    rows = getattr(result, "rows", None)
    if rows is not None:
        return len(rows)
    try:
        return len(result)
    except TypeError:
        return sum(1 for _ in result)


def _changes_page(result: Any) -> Tuple[int, Any]:
    if isinstance(result, dict):
        return len(result["results"]), result.get("last_seq")
    return len(result.results), result.last_seq


class _Corduroy:
    family = ""
    #: Extra ``Database(...)`` options of a variant (``coalesce=True``, ``http2=True``).
    db_options: Dict[str, Any] = {}

    def __init__(self, url: str, db: str, concurrency: int) -> None:
        from corduroy import Database

        self.db = Database(url.rstrip("/") + "/" + db, **self.db_options)
        self.concurrency = max(1, concurrency)
        self.modes: Dict[str, str] = {}

    def _limit_connections(self) -> None:
        import loop

        reactor = loop.get_reactor()
        reactor.curl.set_limits(self.concurrency)
        self.modes["reactor"] = reactor.backend

    def open(self) -> None:
        self._limit_connections()

    def close(self) -> None:
        pass

    def _rows_call(self, n: int, source: str) -> Tuple[Optional[Callable[..., Any]], tuple, bool]:
        """(method, positional args, streams?) for W3; method None means a raw request."""
        args: tuple
        if source == "view":
            fn, args = getattr(self.db, "view", None), (VIEW_NAME,)
        else:
            fn, args = getattr(self.db, "all_docs", None), ()
        what = "db.view" if source == "view" else "db.all_docs"
        if fn is None:
            self.modes["rows"] = "buffered, raw GET (%s missing)" % what
            return None, (), False
        if _accepts(fn, "on_row"):
            self.modes["rows"] = "streaming (%s on_row=)" % what
            return fn, args, True
        self.modes["rows"] = "buffered (%s has no on_row=)" % what
        return fn, args, False

    def _raw_rows(self, n: int, source: str) -> Any:
        path = VIEW_PATH if source == "view" else "/_all_docs"
        return self.db._request("GET", path, params={"limit": n})

    def _changes_call(self, since: Any, limit: int, **kw: Any) -> Any:
        fn = getattr(self.db, "changes", None)
        if fn is None:
            self.modes["changes"] = "raw GET /_changes (db.changes missing)"
            op = self.db._request("GET", "/_changes", params={"since": since, "limit": limit})
            cb = kw.get("callback")
            if cb is not None:
                op.add_callback(cb)
                return op
            from corduroy.http import finish

            return finish(op, None)
        self.modes["changes"] = "db.changes(since=, limit=)"
        return fn(since=since, limit=limit, **kw)


class CallbackStyle(_Corduroy):
    """``db.get(id, callback=fn)`` on corduroy's reactor; each callback issues the next request."""

    family = "callback"

    def open(self) -> None:
        import loop

        self.reactor = loop.get_reactor()
        self._limit_connections()

    def run(self) -> None:
        self.reactor.run()

    def stop(self) -> None:
        self.reactor.stop()

    def call_later(self, delay: float, fn: Callable[[], Any]) -> Any:
        return self.reactor.call_later(delay, fn)

    def primitives(self) -> Dict[str, Callable[..., Any]]:
        db = self.db

        def get(doc_id: str, done: Callable[[Any, Any], None]) -> None:
            db.get(doc_id, callback=lambda data, status: done(data, status.exception))

        def bulk(docs: list, done: Callable[[Any, Any], None]) -> None:
            def saved(outcome: Any, status: Any) -> None:
                if status.exception is not None:
                    done(None, status.exception)
                else:
                    done(len(outcome.resolved), None)

            db.save(docs, callback=saved)

        def rows(n: int, source: str, done: Callable[[Any, Any], None]) -> None:
            fn, args, streams = self._rows_call(n, source)
            if fn is None:
                self._raw_rows(n, source).add_callback(
                    lambda data, status: done(None if status.exception else _count_rows(data), status.exception))
            elif streams:
                count = [0]

                def on_row(*_row: Any) -> None:
                    count[0] += 1

                fn(*args, limit=n, on_row=on_row,
                   callback=lambda data, status: done(count[0], status.exception))
            else:
                fn(*args, limit=n, callback=lambda data, status: done(
                    None if status.exception else _count_rows(data), status.exception))

        def changes(since: Any, limit: int, done: Callable[[Any, Any], None]) -> None:
            self._changes_call(since, limit, callback=lambda data, status: done(
                None if status.exception else _changes_page(data), status.exception))

        def update(doc: dict, done: Callable[[Any, Any], None]) -> None:
            db.save(doc, force=True, callback=lambda data, status: done(doc, status.exception))

        return {"get": get, "bulk": bulk, "rows": rows, "changes": changes, "update": update}


class CoalescingStyle(CallbackStyle):
    """``CallbackStyle`` on a ``Database(url, coalesce=True)``: the gets of one turn go out as one request."""

    db_options = {"coalesce": True}


class Http2Style(CallbackStyle):
    """``CallbackStyle`` on a ``Database(url, http2=True)``: every request multiplexed on one HTTP/2 connection.

    The URL must be an HTTP/2 server (h2c with prior knowledge for http://),
    e.g. nginx with ``listen ... http2`` in front of CouchDB: see
    ``python -m benchmarks.http2``.
    """

    db_options = {"http2": True}


class RelaxStyle(_Corduroy):
    """``@relax`` generators, one per in-flight slot, each doing ``doc = yield db.get(id)``."""

    family = "relax"

    def open(self) -> None:
        import loop

        self.reactor = loop.get_reactor()
        self._limit_connections()

    def run(self) -> None:
        self.reactor.run()

    def stop(self) -> None:
        self.reactor.stop()

    def call_later(self, delay: float, fn: Callable[[], Any]) -> Any:
        return self.reactor.call_later(delay, fn)

    def primitives(self) -> Dict[str, Callable[..., Any]]:
        db = self.db

        def bulk(docs: list) -> Generator[Any, Any, int]:
            outcome = yield db.save(docs)
            return len(outcome.resolved)

        def rows(n: int, source: str) -> Generator[Any, Any, int]:
            fn, args, streams = self._rows_call(n, source)
            if fn is None:
                data = yield self._raw_rows(n, source)
                return _count_rows(data)
            if streams:
                count = [0]

                def on_row(*_row: Any) -> None:
                    count[0] += 1

                yield fn(*args, limit=n, on_row=on_row)
                return count[0]
            data = yield fn(*args, limit=n)
            return _count_rows(data)

        def changes(since: Any, limit: int) -> Generator[Any, Any, Tuple[int, Any]]:
            data = yield self._changes_call(since, limit)
            return _changes_page(data)

        def update(doc: dict) -> Generator[Any, Any, dict]:
            yield db.save(doc, force=True)
            return doc

        return {"get": db.get, "bulk": bulk, "rows": rows, "changes": changes, "update": update}


class AwaitStyle(_Corduroy):
    """asyncio tasks on uvloop doing ``doc = await db.get(id)``."""

    family = "async"

    async def open(self) -> None:  # type: ignore[override]
        self._limit_connections()  # the reactor bound to the running loop

    async def close(self) -> None:  # type: ignore[override]
        pass

    def primitives(self) -> Dict[str, Callable[..., Any]]:
        db = self.db

        async def bulk(docs: list) -> int:
            outcome = await db.save(docs)
            return len(outcome.resolved)

        async def rows(n: int, source: str) -> int:
            fn, args, streams = self._rows_call(n, source)
            if fn is None:
                return _count_rows(await self._raw_rows(n, source))
            if streams:
                count = [0]

                def on_row(*_row: Any) -> None:
                    count[0] += 1

                await fn(*args, limit=n, on_row=on_row)
                return count[0]
            return _count_rows(await fn(*args, limit=n))

        async def changes(since: Any, limit: int) -> Tuple[int, Any]:
            return _changes_page(await self._changes_call(since, limit))

        async def update(doc: dict) -> dict:
            await db.save(doc, force=True)
            return doc

        return {"get": db.get, "bulk": bulk, "rows": rows, "changes": changes, "update": update}


class BlockingStyle(_Corduroy):
    """Plain blocking calls: ``doc = db.get(id)``, one at a time."""

    family = "sequential"

    def primitives(self) -> Dict[str, Callable[..., Any]]:
        db = self.db

        def bulk(docs: list) -> int:
            return len(db.save(docs).resolved)

        def rows(n: int, source: str) -> int:
            fn, args, streams = self._rows_call(n, source)
            if fn is None:
                from corduroy.http import finish

                return _count_rows(finish(self._raw_rows(n, source), None))
            if streams:
                count = [0]

                def on_row(*_row: Any) -> None:
                    count[0] += 1

                fn(*args, limit=n, on_row=on_row)
                return count[0]
            return _count_rows(fn(*args, limit=n))

        def changes(since: Any, limit: int) -> Tuple[int, Any]:
            return _changes_page(self._changes_call(since, limit))

        def update(doc: dict) -> dict:
            db.save(doc, force=True)
            return doc

        return {"get": db.get, "bulk": bulk, "rows": rows, "changes": changes, "update": update}
