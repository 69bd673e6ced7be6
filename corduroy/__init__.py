"""corduroy: an asynchronous CouchDB client on libcurl and libuv.

Every I/O method takes ``callback=None``.  Pass a callback and it is called
as ``callback(data, status)``; ``yield`` the call inside a ``@relax``
generator; ``await`` it in asyncio code; or call it with no reactor running
and it blocks and returns the data (or raises).

>>> from corduroy import Couch, Database
>>> Database("people")
<Database 'people'>
"""
from loop import Operation, Status

from . import defaults
from ._version import __version__
from .changes import ChangesFeed
from .conflicts import ConflictResolution
from .couch import Couch
from .database import Database
from .document import Document
from .exceptions import (
    BadRequest,
    BadResponse,
    Conflict,
    ConnectionFailed,
    CouchError,
    ExpectationFailed,
    Forbidden,
    HTTPError,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    PreconditionFailed,
    RequestTooLarge,
    ResponseTooLarge,
    ServerError,
    ServiceUnavailable,
    Timeout,
    TLSError,
    TooManyRequests,
    TransportError,
    Unauthorized,
    UnknownOutcome,
    UnsupportedMediaType,
)
from .http import DEFAULT_CONNECT_TIMEOUT, DEFAULT_IDLE_TIMEOUT, timeouts
from .relax import relax
from .request_headers import ProxyAuth, headers
from .retry import RetryPolicy
from .views import Formatted, Pager, Row, View

__all__ = [
    "Couch", "Database", "Document", "ConflictResolution", "Status", "Operation", "relax", "defaults",
    "CouchError", "HTTPError", "BadRequest", "Unauthorized", "Forbidden", "NotFound", "MethodNotAllowed",
    "NotAcceptable", "Conflict", "PreconditionFailed", "RequestTooLarge", "UnsupportedMediaType",
    "ExpectationFailed", "TooManyRequests", "ServerError", "ServiceUnavailable", "BadResponse",
    "TransportError", "ConnectionFailed", "Timeout", "TLSError", "ResponseTooLarge", "UnknownOutcome",
    "__version__",
    "ChangesFeed",
    "View", "Row", "Formatted", "Pager",
    "RetryPolicy",
    "timeouts", "DEFAULT_CONNECT_TIMEOUT", "DEFAULT_IDLE_TIMEOUT",
    "headers", "ProxyAuth",
]
