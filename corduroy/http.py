"""The HTTP resource: one CouchDB server's URL, credentials and request defaults.

:class:`Server` sends requests through this thread's reactor (its curl
driver) and maps each response to ``(data, Status)``: JSON decoded, a status
of 400 or more to its exception class, a transport failure to the
:class:`~corduroy.exceptions.TransportError` family.  :func:`finish` applies
the calling contract (callback, yield/await, or blocking).
"""
from __future__ import annotations

import base64
import logging
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import pycurl

from loop import Operation, Request, Status, get_reactor
from loop.redact import redact_url

from . import codec
from .exceptions import (
    BadResponse, ConnectionFailed, CouchError, ResponseTooLarge, Timeout, TLSError,
    TransportError, error_for_code,
)
from .urls import encode_query, split_credentials

__all__ = ["Server", "finish", "DEFAULT_URL"]

log = logging.getLogger("corduroy")

DEFAULT_URL = "http://127.0.0.1:5984"

#: How much of an unexpected body an exception carries.
EXCERPT = 500

Transform = Callable[[Any, Status], Any]


class CouchOperation(Operation):
    """An Operation whose callback exceptions are logged through the ``corduroy`` logger."""

    __slots__ = ()
    log = log


_TIMEOUT_ERRORS = {pycurl.E_OPERATION_TIMEDOUT}
_TLS_ERRORS = {
    getattr(pycurl, name) for name in (
        "E_SSL_CONNECT_ERROR", "E_PEER_FAILED_VERIFICATION", "E_SSL_CACERT", "E_SSL_CERTPROBLEM",
        "E_SSL_CIPHER", "E_SSL_CACERT_BADFILE", "E_SSL_ENGINE_NOTFOUND", "E_SSL_ENGINE_SETFAILED",
        "E_SSL_ISSUER_ERROR", "E_SSL_CRL_BADFILE", "E_SSL_PINNEDPUBKEYNOTMATCH", "E_SSL_INVALIDCERTSTATUS",
        "E_USE_SSL_FAILED",
    ) if hasattr(pycurl, name)
}


def transport_error(request: Request) -> TransportError:
    """The exception for a request that failed below HTTP."""
    errno = request.errno
    cls: type
    if errno in _TIMEOUT_ERRORS:
        cls = Timeout
    elif errno in _TLS_ERRORS:
        cls = TLSError
    elif errno == pycurl.E_WRITE_ERROR and request.max_body:
        cls = ResponseTooLarge
    else:
        cls = ConnectionFailed
    message = request.errmsg or "transfer failed"
    # libcurl's messages can quote the URL; make sure no credentials leak through.
    return cls("%s (curl error %s)" % (redact_url(message), errno), method=request.method, url=redact_url(request.url))


def _excerpt(body: bytes) -> str:
    text = body[:EXCERPT].decode("utf-8", "replace")
    return text + ("..." if len(body) > EXCERPT else "")


def _content_type(header_lines: List[bytes]) -> str:
    for line in reversed(header_lines):
        if line[:13].lower() == b"content-type:":
            return line[13:].strip().decode("latin-1").lower()
    return ""


class _StreamGate:
    """Stands between curl and a streamed request's consumer.

    The consumer gets the body only once the status is known to be below
    400; an error body is kept (up to :data:`ERROR_BODY_MAX` bytes) to be
    decoded into the exception like a buffered one.  An exception raised by
    the consumer is kept and aborts the transfer; the Operation then fails
    with it (not with a transport error).
    """

    __slots__ = ("consumer", "request", "passing", "error_body", "failure", "delivered")

    def __init__(self, consumer: Callable[[bytes], Any]) -> None:
        self.consumer = consumer
        self.request: Optional[Request] = None
        self.reset()

    def reset(self) -> None:
        """Forget a previous attempt (the request is sent again)."""
        self.passing: Optional[bool] = None
        self.error_body: List[bytes] = []
        self.failure: Optional[BaseException] = None
        self.delivered = False

    def __call__(self, chunk: bytes) -> Any:
        passing = self.passing
        if passing is None:
            passing = self.passing = _status_code(self.request.header_lines) < 400  # type: ignore[union-attr]
        if not passing:
            if sum(map(len, self.error_body)) < ERROR_BODY_MAX:
                self.error_body.append(chunk)
            return None
        self.delivered = True
        try:
            return self.consumer(chunk)
        except Exception as exc:
            self.failure = exc
            return False  # libcurl aborts the transfer


#: How much of an error body a streamed request keeps for its exception.
ERROR_BODY_MAX = 64 * 1024


def _status_code(header_lines: List[bytes]) -> int:
    """The status of the last response in ``header_lines`` (0 if there is none)."""
    for line in reversed(header_lines):
        if line[:5] == b"HTTP/":
            try:
                return int(line.split(None, 2)[1])
            except (IndexError, ValueError):
                return 0
    return 0


def _on_response(request: Request) -> None:
    """Map a finished curl request to its Operation's ``(data, Status)``."""
    op, transform, raw, server = request.context
    code = request.code
    # The common case first: a buffered JSON answer in the 2xx/3xx range.
    if (request.errno is None and code is not None and 100 <= code < 400 and not raw
            and request.on_chunk is None and server._cookie is None):
        status = Status(code, None, None, request.header_lines)
        body = request.body_out
        try:
            data = codec.decode(body) if body and request.method != "HEAD" else None
        except (ValueError, UnicodeDecodeError):
            _on_response_general(request, op, transform, raw, server)  # reports BadResponse
            return
        if transform is not None:
            try:
                data = transform(data, status)
            except Exception as exc:
                if not isinstance(exc, CouchError):
                    log.debug("response handler failed for %s %s", request.method, redact_url(request.url),
                              exc_info=True)
                op.complete(None, Status(code, exception=exc, header_lines=request.header_lines))
                return
        op.complete(data, status)
        return
    _on_response_general(request, op, transform, raw, server)


def _on_response_general(request: Request, op: Operation, transform: Optional[Transform], raw: bool,
                         server: "Server") -> None:
    header_lines = request.header_lines
    gate = request.on_chunk if type(request.on_chunk) is _StreamGate else None
    if request.errno is not None:
        if gate is not None and gate.failure is not None:
            # The consumer raised: that is the outcome, not the abort it caused.
            op.complete(None, Status(request.code, exception=gate.failure, header_lines=header_lines))
            return
        exc = transport_error(request)
        # A stream whose body already reached its consumer cannot be sent again.
        if server.failure_hooks and not (gate is not None and gate.delivered) \
                and server._on_failure(request, exc):
            return
        op.complete(None, Status(request.code, exception=exc, header_lines=header_lines))
        return
    code = request.code or 0
    body = request.body_out
    if gate is not None and gate.error_body:
        body = b"".join(gate.error_body)
    if code >= 400 or code < 100:
        data: Any = None
        error = reason = None
        if body:
            try:
                data = codec.decode(body)
            except (ValueError, UnicodeDecodeError):
                data = _excerpt(body)
                reason = data
            else:
                if isinstance(data, dict):
                    error = data.get("error")
                    reason = data.get("reason")
        cls = error_for_code(code) if code >= 400 else BadResponse
        exc = cls(reason=reason, error=error, code=code or None, method=request.method,
                  url=redact_url(request.url), body=data)
        if server.failure_hooks and server._on_failure(request, exc):
            return
        op.complete(data, Status(code or None, exception=exc, header_lines=header_lines))
        return
    status = Status(code, header_lines=header_lines)
    if server._cookie is not None:
        server._refresh_cookie(request)
    try:
        if raw:
            data = body
        elif body and request.method != "HEAD":
            try:
                data = codec.decode(body)
            except (ValueError, UnicodeDecodeError):
                raise BadResponse(
                    reason="the server did not answer JSON: %s" % _excerpt(body), code=code,
                    method=request.method, url=redact_url(request.url), body=_excerpt(body),
                ) from None
        else:
            data = None
        if transform is not None:
            data = transform(data, status)
    except Exception as exc:
        if not isinstance(exc, CouchError):
            log.debug("response handler failed for %s %s", request.method, redact_url(request.url), exc_info=True)
        op.complete(None, Status(code, exception=exc, header_lines=header_lines))
        return
    op.complete(data, status)


def finish(op: Operation, callback: Optional[Callable[[Any, Status], Any]]) -> Any:
    """Apply the calling contract to ``op``.

    With a callback: register it and return the Operation.  Inside a running
    reactor or a ``@relax`` generator: return the Operation (yield or await
    it).  Otherwise block until it completes and return its data (or raise).
    """
    if callback is not None:
        if not callable(callback):
            raise TypeError("callback must be callable, got %r" % (callback,))
        op.add_callback(callback)
        return op
    reactor = op.reactor
    if reactor.in_async_context():
        return op
    return reactor.run_until_complete(op)


class Server:
    """Where requests go: a CouchDB server's base URL, credentials and defaults.

    Credentials are taken out of the URL and sent in an ``Authorization``
    header; the URL kept (and shown anywhere) has none.
    """

    def __init__(
        self,
        url: Optional[str] = None,
        auth: Optional[Tuple[str, str]] = None,
        timeout: Optional[float] = None,
        connect_timeout: Optional[float] = 10.0,
        max_response_size: Optional[int] = None,
        full_commit: Optional[bool] = None,
        curl_options: Optional[Dict[int, Any]] = None,
    ) -> None:
        from . import defaults

        base, inline = split_credentials(url or defaults.url)
        self.url = base
        credentials = auth if auth is not None else inline
        if credentials is not None:
            if not (isinstance(credentials, tuple) and len(credentials) == 2):
                raise TypeError("auth must be a (user, password) tuple")
        self._credentials = credentials
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_response_size = max_response_size
        self.curl_options = curl_options
        self._extra_headers: List[str] = []
        if full_commit is not None:
            self._extra_headers.append("X-Couch-Full-Commit: %s" % ("true" if full_commit else "false"))
        self._build_headers()
        #: Server-generated ids not yet used (see ``Couch.uuids``).
        self.uuid_cache: List[str] = []
        #: Objects with ``handle(server, request, exc) -> bool`` consulted, in
        #: order, when a request fails; one returning True has taken the
        #: request over (to retry it, or to renew a session) and completes it.
        self.failure_hooks: List[Any] = []

    # -- headers --------------------------------------------------------
    def _build_headers(self) -> None:
        common = ["Accept: application/json"] + self._extra_headers
        self._cookie: Optional[str] = getattr(self, "_cookie", None)
        # A cookie session replaces Basic auth (see corduroy.session).
        if self._credentials is not None and not self._cookie:
            user, password = self._credentials
            token = base64.b64encode(("%s:%s" % (user, password)).encode("utf-8")).decode("ascii")
            common.append("Authorization: Basic " + token)
        if self._cookie:
            common.append("Cookie: " + self._cookie)
        # One list object per kind, reused by every request: the curl driver
        # skips re-setting headers it already set.
        self.headers_plain = common
        self.headers_json = common + ["Content-Type: application/json", "Expect:"]

    @property
    def user(self) -> Optional[str]:
        """The user name requests authenticate as (None: anonymous)."""
        return self._credentials[0] if self._credentials else None

    def set_cookie(self, cookie: Optional[str]) -> None:
        """Send ``cookie`` (an ``AuthSession=...`` pair) with every request, instead of Basic auth; None stops."""
        self._cookie = cookie
        self._build_headers()

    def _refresh_cookie(self, request: Request) -> None:
        """Adopt a renewed ``AuthSession`` cookie from a response to a request that sent ours."""
        for line in request.header_lines:
            if line[:11].lower() == b"set-cookie:":
                value = line[11:].split(b";", 1)[0].strip().decode("latin-1")
                if (value.startswith("AuthSession=") and len(value) > 12 and value != self._cookie
                        and request.headers and "Cookie: %s" % self._cookie in request.headers):
                    self.set_cookie(value)

    def __repr__(self) -> str:
        return "<Server %r>" % (self.url,)

    # -- requests -------------------------------------------------------
    def request(
        self,
        method: str,
        path: str = "",
        params: Optional[Dict[str, Any]] = None,
        body: Any = None,
        json: Any = None,
        headers: Optional[List[str]] = None,
        transform: Optional[Transform] = None,
        raw: bool = False,
        what: str = "request body",
        timeout: Optional[float] = None,
        on_chunk: Optional[Callable[[bytes], Any]] = None,
    ) -> Operation:
        """Send a request; return its Operation (never blocks).

        ``path`` is already quoted and starts with ``/``; ``json`` is encoded
        (raising before any I/O if it cannot be); ``body`` is sent as is.
        ``transform(data, status)`` post-processes a successful answer.
        ``on_chunk(bytes)`` streams a successful body to a consumer instead of
        buffering it (``transform`` then gets ``data=None``); an error body
        (status 400 or more) is buffered and raised as usual; an exception
        raised by the consumer aborts the transfer and fails the Operation.
        """
        if json is not None:
            body = codec.encode(json, what)
            hdrs = self.headers_json if headers is None else headers
        else:
            if body is not None and isinstance(body, str):
                body = body.encode("utf-8")
            hdrs = (self.headers_plain if body is None else self.headers_json) if headers is None else headers
        url = self.url + path + encode_query(params) if params else self.url + path
        reactor = get_reactor()
        op = CouchOperation(reactor)
        t = self.timeout if timeout is None else timeout
        gate = _StreamGate(on_chunk) if on_chunk is not None else None
        req = Request(
            method, url, hdrs, body, on_done=_on_response, on_chunk=gate,
            timeout=t or 0, connect_timeout=self.connect_timeout or 0,
            options=self.curl_options, context=(op, transform, raw, self),
            max_body=self.max_response_size if on_chunk is None else None,
        )
        if gate is not None:
            gate.request = req
        op._cancel = req  # calling a submitted Request cancels it
        if log.isEnabledFor(logging.DEBUG):
            _log_request(req)
        (reactor._curl or reactor.curl).submit(req)
        return op

    def _on_failure(self, request: Request, exc: Exception) -> bool:
        for hook in self.failure_hooks:
            if hook.handle(self, request, exc):
                return True
        return False

    def resubmit(self, request: Request, delay: float = 0.0) -> None:
        """Send a finished ``request`` again (after ``delay`` seconds); its Operation completes later."""
        request.code = None
        request.errno = None
        request.errmsg = None
        request.body_out = b""
        request.header_lines = []
        if type(request.on_chunk) is _StreamGate:
            request.on_chunk.reset()
        reactor = request.context[0].reactor
        driver = reactor.curl
        if delay > 0:
            reactor.call_later(delay, driver.submit, request)
        else:
            driver.submit(request)

    def headers_with(self, *extra: str) -> List[str]:
        """The plain headers plus ``extra`` lines (a new list)."""
        return self.headers_plain + list(extra)


def _log_request(req: Request) -> None:
    started = time.monotonic()
    original = req.on_done

    def logged(request: Request) -> None:
        log.debug("%s %s -> %s (%.1f ms)", request.method, redact_url(request.url),
                  request.code if request.errno is None else "curl error %s" % request.errno,
                  (time.monotonic() - started) * 1000)
        original(request)  # type: ignore[misc]

    req.on_done = logged
