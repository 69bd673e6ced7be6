"""The test server: a pinned pouchdb-server started in memory on loopback.

``package.json`` / ``package-lock.json`` pin pouchdb-server; ``npm ci`` in this
directory installs it (``make tests/server/node_modules`` does that).
:class:`TestServer` in :mod:`tests.server.launcher` starts and stops it::

    from tests.server import TestServer
"""

from typing import Any

__all__ = ["ServerError", "TestServer"]


def __getattr__(name: str) -> Any:
    # Imported lazily so `python -m tests.server.launcher` runs cleanly.
    if name in __all__:
        from . import launcher

        return getattr(launcher, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
