"""loop: a small libuv-backed reactor that drives libcurl's multi interface.

The pieces, bottom up:

- :class:`Reactor` (``loop.reactor``): fd watchers, timers, ``call_soon``,
  ``run``/``stop``; backends uvloop, asyncio (including a loop someone else
  runs), pyuv and gevent.  :func:`get_reactor` gives this thread's reactor,
  :func:`blocking_reactor` the private one its blocking calls run on.
- :class:`CurlDriver` (``loop.curl``): one ``pycurl.CurlMulti`` per reactor.
- :class:`Operation` (``loop.operation``): the one-shot result of a call.
- :func:`trampoline` (``loop.trampoline``): runs generators over Operations.
"""
from .curl import CurlDriver, Request
from .operation import Cancelled, Operation, OperationPending, Status, completed, failed, gather
from .reactor import (
    READ, WRITE, Reactor, available_backends, blocking_reactor, default_backend, get_reactor, set_reactor,
)
from .trampoline import trampoline

__all__ = [
    "READ", "WRITE", "Reactor", "get_reactor", "set_reactor", "blocking_reactor", "available_backends",
    "default_backend",
    "CurlDriver", "Request", "Operation", "OperationPending", "Cancelled", "Status",
    "completed", "failed", "gather", "trampoline",
]
