"""Options for the calls made inside a ``with`` block: one context variable for all of them.

:func:`corduroy.timeouts` and :func:`corduroy.headers` each derive a new
:class:`CallOptions` from the enclosing block's and set it for the length of
their block; :meth:`corduroy.http.Server.request` reads it once per request.
It is a context variable, so it follows asyncio tasks and threads, and it
applies to requests *made* in the block, whatever their calling style.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Any, FrozenSet, Iterator, NamedTuple, Optional, Tuple

__all__ = ["CallOptions", "UNSET", "current", "applied", "is_set"]

#: A field no block has set (the client's own value applies).
UNSET: Any = object()

#: Header names (lower case) and ``"Name: value"`` lines.
HeaderSet = Tuple[FrozenSet[str], Tuple[str, ...]]


class CallOptions(NamedTuple):
    """What the enclosing ``with`` blocks set; :data:`UNSET` (or None for headers) where they set nothing."""

    timeout: Any = UNSET
    connect_timeout: Any = UNSET
    idle_timeout: Any = UNSET
    headers: Optional[HeaderSet] = None


_NONE = CallOptions()
_current: "contextvars.ContextVar[Optional[CallOptions]]" = contextvars.ContextVar(
    "corduroy_call_options", default=None)

#: The options of the blocks around this call (None outside any).
current = _current.get


def is_set(name: str) -> bool:
    """True when a block around this call sets the field ``name`` (``"idle_timeout"``...)."""
    options = _current.get()
    return options is not None and getattr(options, name) is not UNSET


@contextlib.contextmanager
def applied(**fields: Any) -> Iterator[None]:
    """For the ``with`` block: the enclosing options with ``fields`` replaced."""
    token = _current.set((_current.get() or _NONE)._replace(**fields))
    try:
        yield
    finally:
        _current.reset(token)
