"""What the I/O methods return, as a type checker sees it.

Every I/O method has two overloads (``typing.overload``):

``callback=fn`` given
    returns ``Operation[T]``, where ``T`` is the data: ``db.get(id, callback=fn)``
    is an ``Operation[Document]``, ``fn`` is a :data:`DataCallback` of ``T``.
no callback
    returns ``T`` itself, declared so that it is also awaitable to ``T``: the
    same call is ``doc = db.get(id)`` in blocking code and ``doc = await
    db.get(id)`` in asyncio code, and both give ``doc: Document`` with no cast.

Python's type system has no intersection type ("a Document, or an awaitable
of one, depending on whether a reactor runs in this thread"), so the second
overload is spelled one of two ways:

- corduroy's own result classes (:class:`~corduroy.document.Document`,
  :class:`~corduroy.views.View`, :class:`~corduroy.mango.FindResult`,
  :class:`~corduroy.views.Formatted`, :class:`~corduroy.database.Database`,
  :class:`~corduroy.conflicts.ConflictResolution`) declare an ``__await__``
  for type checkers only (under ``TYPE_CHECKING``; nothing is added at run
  time).  ``reveal_type(db.get(id))`` is exactly ``Document``.
- builtin results are the aliases below: :data:`ListResult`,
  :data:`DictResult`, :data:`BoolResult`, :data:`StrResult`,
  :data:`IntResult`.  At run time each *is* the builtin (``ListResult is
  list``); to a type checker each is a subclass of the builtin that is also
  awaitable, so ``names: List[str] = couch.all_dbs()`` and ``names = await
  couch.all_dbs()`` both check.

The price of that choice, which no declaration can avoid: a type checker
cannot see whether a reactor is running, so it cannot catch a missing
``await`` (inside async code ``db.get(id)`` *is* an Operation, and using it
as a Document raises a TypeError that says so), nor an ``await`` on data a
blocking call already returned.  A result that may be None
(:meth:`~corduroy.changes.ChangesFeed.next`) is declared ``Optional[...]``
and so is not awaitable to a type checker: in asyncio code iterate the feed
with ``async for``, or pass ``callback=``.  ``changes()`` and ``db_updates()``
pick their type from a literal ``feed=`` (the answer once, or a live feed
object); a ``feed=`` held in a plain ``str`` variable matches no overload
(annotate it with ``Literal[...]``).  ``config`` and ``stats``, whose data
depends on their arguments in ways a signature cannot say, return ``Any``;
so does ``yield db.get(id)`` inside a ``@relax`` generator (a generator's
sent values have one type).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Generator, List, Optional, TypeVar

from loop import Status

__all__ = ["DataCallback", "ListResult", "DictResult", "BoolResult", "StrResult", "IntResult"]

T = TypeVar("T")

#: A callback for data of type ``T``: ``fn(data, status)``; ``data`` is None when the call failed
#: (``status.ok`` is False), so a typed callback takes ``Optional[T]``.
DataCallback = Callable[[Optional[T], Status], object]

if TYPE_CHECKING:
    class ListResult(List[T]):
        """A list; awaitable to one (for type checkers only)."""

        def __await__(self) -> Generator[Any, None, List[T]]: ...

    class DictResult(Dict[str, Any]):
        """A dict; awaitable to one (for type checkers only)."""

        def __await__(self) -> Generator[Any, None, Dict[str, Any]]: ...

    class BoolResult(bool):  # type: ignore[misc]  # bool is final; this class exists for type checkers only
        """A bool; awaitable to one (for type checkers only)."""

        def __await__(self) -> Generator[Any, None, bool]: ...

    class StrResult(str):
        """A str; awaitable to one (for type checkers only)."""

        def __await__(self) -> Generator[Any, None, str]: ...

    class IntResult(int):
        """An int; awaitable to one (for type checkers only)."""

        def __await__(self) -> Generator[Any, None, int]: ...
else:
    #: ``list`` at run time: the result of a blocking call that returns a list (see the module's docstring).
    ListResult = list
    #: ``dict`` at run time.
    DictResult = dict
    #: ``bool`` at run time.
    BoolResult = bool
    #: ``str`` at run time.
    StrResult = str
    #: ``int`` at run time.
    IntResult = int
