"""How a test tells "the server lacks this endpoint" from a failure, and skips on the server's answer alone."""
from __future__ import annotations

import pytest

from corduroy import BadRequest, NotFound, ServerError

#: How a server says it has no such endpoint (pouchdb-server: 400 or 404; some CouchDB builds: 5xx).
LACKING = (BadRequest, NotFound, ServerError)


def lacks(exc: Exception, endpoint: str) -> None:
    """Skip the test: the server answered ``exc`` to ``endpoint``, so it lacks it."""
    pytest.skip("the server answered %s to %s: it lacks the endpoint (%s)" % (type(exc).__name__, endpoint, exc))
