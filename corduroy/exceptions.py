"""Exceptions: one class per HTTP failure CouchDB reports, and the transport family.

Every exception carries the server's ``error`` and ``reason`` (when it sent
them), the HTTP ``code`` (None for transport failures), and the ``method``
and ``url`` of the request, with credentials removed.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Type

__all__ = [
    "CouchError", "HTTPError", "BadRequest", "Unauthorized", "Forbidden", "NotFound",
    "MethodNotAllowed", "NotAcceptable", "Conflict", "PreconditionFailed", "RequestTooLarge",
    "UnsupportedMediaType", "RequestedRangeNotSatisfiable", "ExpectationFailed", "TooManyRequests",
    "ServerError", "ServiceUnavailable", "TransportError", "ConnectionFailed", "Timeout",
    "TLSError", "ResponseTooLarge", "UnknownOutcome", "BadResponse", "error_for_code",
]


class CouchError(Exception):
    """Base of every exception corduroy raises for a failed request."""

    def __init__(
        self,
        reason: Optional[str] = None,
        error: Optional[str] = None,
        code: Optional[int] = None,
        method: Optional[str] = None,
        url: Optional[str] = None,
        body: Any = None,
    ) -> None:
        self.reason = reason
        self.error = error
        self.code = code
        self.method = method
        self.url = url
        #: The decoded (or, if undecodable, an excerpt of the raw) response body.
        self.body = body
        super().__init__(reason or error or "")

    def __str__(self) -> str:
        parts = []
        if self.code is not None:
            parts.append(str(self.code))
        if self.error and self.error != self.reason:
            parts.append(str(self.error))
        if self.reason:
            parts.append(str(self.reason))
        where = " ".join(p for p in (self.method, self.url) if p)
        text = ": ".join(parts) if parts else type(self).__name__
        return "%s (%s)" % (text, where) if where else text


class HTTPError(CouchError):
    """The server answered with a status of 400 or more."""


class BadRequest(HTTPError):
    """400 Bad Request."""


class Unauthorized(HTTPError):
    """401 Unauthorized: missing or wrong credentials."""


class Forbidden(HTTPError):
    """403 Forbidden."""


class NotFound(HTTPError, KeyError):
    """404 Not Found: no such database, document, design document or view.

    Also a KeyError, so ``db[id]`` and ``couch[name]`` fail the way a
    mapping does (``except KeyError`` catches it).
    """

    __str__ = CouchError.__str__  # not KeyError's repr of the message


class MethodNotAllowed(HTTPError):
    """405 Method Not Allowed."""


class NotAcceptable(HTTPError):
    """406 Not Acceptable."""


class Conflict(HTTPError):
    """409 Conflict: the document's ``_rev`` is not the current one."""


class PreconditionFailed(HTTPError):
    """412 Precondition Failed (for example: the database already exists)."""


class RequestTooLarge(HTTPError):
    """413 Request Entity Too Large."""


class UnsupportedMediaType(HTTPError):
    """415 Unsupported Media Type."""


class RequestedRangeNotSatisfiable(HTTPError):
    """416 Requested Range Not Satisfiable."""


class ExpectationFailed(HTTPError):
    """417 Expectation Failed (for example: a rejected ``_bulk_docs`` batch)."""


class TooManyRequests(HTTPError):
    """429 Too Many Requests."""


class ServerError(HTTPError):
    """A 5xx answer."""


class ServiceUnavailable(ServerError):
    """503 Service Unavailable."""


class BadResponse(HTTPError):
    """The server's answer is not what CouchDB sends (invalid JSON, an HTML page...)."""


class TransportError(CouchError):
    """No usable HTTP response: the request failed below HTTP."""


class ConnectionFailed(TransportError):
    """Could not connect, or the connection broke (refused, reset, closed early)."""


class Timeout(TransportError):
    """The request took longer than its connect, total or idle timeout."""


class TLSError(TransportError):
    """The TLS handshake or certificate verification failed."""


class ResponseTooLarge(TransportError):
    """The response body was larger than the configured limit for buffered calls."""


class UnknownOutcome(TransportError):
    """A write failed after it may have reached the server: it may or may not have been applied.

    corduroy never retries such a write by itself; check the document and decide.
    """


_BY_CODE: Dict[int, Type[HTTPError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    406: NotAcceptable,
    409: Conflict,
    412: PreconditionFailed,
    413: RequestTooLarge,
    415: UnsupportedMediaType,
    416: RequestedRangeNotSatisfiable,
    417: ExpectationFailed,
    429: TooManyRequests,
    503: ServiceUnavailable,
}


def error_for_code(code: int) -> Type[HTTPError]:
    """The exception class for an HTTP status code of 400 or more."""
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls
    return ServerError if code >= 500 else HTTPError
