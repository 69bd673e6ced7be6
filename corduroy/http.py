"""The HTTP resource: one CouchDB server's URL, credentials and request defaults.

:class:`Server` sends requests through this thread's reactor (its curl
driver) and maps each response to ``(data, Status)``: JSON decoded, a status
of 400 or more to its exception class, a transport failure to the
:class:`~corduroy.exceptions.TransportError` family.  :func:`finish` applies
the calling contract (callback, yield/await, or blocking).

Reliability (see ``docs/guide/reliability.rst``): each request has a total,
a connect and an idle (low-speed) timeout; a failed request may be sent
again by :attr:`Server.failure_hooks` (a :class:`~corduroy.retry.RetryPolicy`
is installed by default, retrying reads only); a write that fails after it
was sent is reported as :class:`~corduroy.exceptions.UnknownOutcome`;
GET/HEAD redirects are followed within the same server only.
"""
from __future__ import annotations

import base64
import contextlib
import logging
import math
import time
import zlib
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import urljoin, urlsplit

import pycurl

from loop import Operation, Request, Status, get_reactor
from loop.operation import T
from loop.redact import describe, redact_url

from . import codec
from .contract import finish
from .exceptions import (
    BadResponse,
    ConnectionFailed,
    CouchError,
    HTTPError,
    ResponseTooLarge,
    Timeout,
    TLSError,
    TransportError,
    UnknownOutcome,
    error_for_code,
)
from .call_options import UNSET, applied, current
from .request_headers import Auth, ProxyAuth, check_headers, check_jwt, merge_headers
from .urls import encode_query, split_credentials

__all__ = ["Server", "finish", "timeouts", "DEFAULT_COMPRESS_MIN_SIZE",
           "DEFAULT_URL", "DEFAULT_CONNECT_TIMEOUT", "DEFAULT_IDLE_TIMEOUT"]

log = logging.getLogger("corduroy")

#: The server a client talks to when given no URL.
DEFAULT_URL = "http://127.0.0.1:5984"

#: Seconds to establish a connection, unless a client or call says otherwise.
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Seconds a response may stall (under 1 byte/s) before the request fails with
#: Timeout (ibmcloudant's read timeout is 150 s too).  Changes feeds that wait
#: for news are exempt (their heartbeats are progress), and so is a one-shot
#: ``_replicate``, which answers only when the replication is done.
DEFAULT_IDLE_TIMEOUT = 150.0

#: Request bodies at least this many bytes long are sent gzip-compressed with ``compress_requests=True``.
DEFAULT_COMPRESS_MIN_SIZE = 1024
#: zlib level for compressed request bodies (1: fastest; JSON still shrinks several times).
COMPRESS_LEVEL = 1


def gzip_body(body: bytes) -> bytes:
    """``body`` gzip-compressed (for ``Content-Encoding: gzip``)."""
    packer = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, 31)  # 31: a gzip wrapper
    return packer.compress(body) + packer.flush()


@contextlib.contextmanager
def timeouts(timeout: Any = UNSET, connect_timeout: Any = UNSET, idle_timeout: Any = UNSET) -> Iterator[None]:
    """Override the client's timeouts for the requests made inside the ``with`` block (seconds; None or 0: no limit).

    Example::

        with corduroy.timeouts(timeout=2, idle_timeout=1):
            doc = db.get("x")                  # fails with Timeout after 2 s at most

    It applies to requests *made* in the block, in any calling style (an
    Operation made inside and awaited outside keeps them); it follows
    asyncio tasks and threads like any context variable
    (:mod:`corduroy.call_options`).  Arguments left out keep the value of an
    enclosing block, else the client's.
    """
    given = {"timeout": timeout, "connect_timeout": connect_timeout, "idle_timeout": idle_timeout}
    given = {name: value for name, value in given.items() if value is not UNSET}
    for name, value in given.items():
        _seconds(value, name)
    with applied(**given):
        yield

#: How much of an unexpected body an exception carries.
EXCERPT = 500

Transform = Callable[[Any, Status], Any]


class CouchOperation(Operation[T]):
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


#: Methods that never change anything on a CouchDB server.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: The last path segment of POST requests that only read (a body carries the query),
#: and of logging in (``/_session``: a second login does no harm).
_READ_POSTS = frozenset({
    "_all_docs", "_bulk_get", "_changes", "_design_docs", "_local_docs", "_dbs_info", "_explain",
    "_find", "_missing_revs", "_revs_diff", "_session",
})


def is_idempotent(method: str, url: str) -> bool:
    """True for a request that is safe to send twice: GET, HEAD, OPTIONS, and the POSTs that only query.

    Those POSTs are ``_find``, ``_explain``, ``_all_docs``, ``_bulk_get``,
    ``_changes``, ``_revs_diff``, ``_missing_revs``, ``_design_docs``,
    ``_local_docs``, ``_dbs_info``, a view (``.../_view/name``) and their
    ``/queries`` forms; and a login (``POST /_session``).
    """
    if method in SAFE_METHODS:
        return True
    if method != "POST":
        return False
    path = urlsplit(url).path.rstrip("/")
    segments = path.rsplit("/", 3)
    if segments[-1] == "queries":
        segments = segments[:-1]
    if segments[-1] in _READ_POSTS:
        return True
    return len(segments) >= 2 and segments[-2] == "_view"


def transport_error(request: Request) -> TransportError:
    """The exception for a request that failed below HTTP.

    A write (see :func:`is_idempotent`) that failed after libcurl had sent
    any of it gets :class:`UnknownOutcome` (its ``cause`` is the transport
    error): the server may have applied it.  One that failed before a byte
    left (connection refused, connect timeout, TLS handshake) keeps its own
    class: nothing happened on the server.
    """
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
    url = redact_url(request.url)
    if cls is ResponseTooLarge:
        message = "the response body is larger than max_response_size (%d bytes)" % (request.max_body or 0)
    exc = cls("%s (curl error %s)" % (redact_url(message), errno), method=request.method, url=url)
    if cls is not ResponseTooLarge and maybe_sent(request) and not is_idempotent(request.method, request.url):
        answered = " (after a %d status line)" % request.code if request.code else ""
        unknown = UnknownOutcome(
            "the connection failed after the request was sent%s, so it may or may not have been applied: "
            "%s (curl error %s)" % (answered, redact_url(message), errno), method=request.method, url=url)
        unknown.cause = exc  # type: ignore[attr-defined]
        unknown.__cause__ = exc
        return unknown
    return exc


def maybe_sent(request: Request) -> bool:
    """False only when libcurl reported that no byte of a failed request left (``Request.sent == 0``)."""
    return getattr(request, "sent", None) != 0


def _excerpt(body: bytes) -> str:
    text = body[:EXCERPT].decode("utf-8", "replace")
    return text + ("..." if len(body) > EXCERPT else "")


def error_and_reason(data: Any, body: bytes) -> Tuple[Any, Any]:
    """The server's ``(error, reason)`` in the decoded JSON body ``data`` of an error answer, whatever its status.

    CouchDB answers ``{"error": ..., "reason": ...}``; a ``_bulk_docs`` batch
    refused as a whole (417 for ``all_or_nothing`` on CouchDB 3) answers a
    list of such rows, one per document: the first row that has them is
    used.  A body with neither gives an excerpt of itself as the reason.
    """
    if isinstance(data, dict):
        error, reason = data.get("error"), data.get("reason")
        if error is not None or reason is not None:
            return error, reason
    elif isinstance(data, list):
        for row in data:
            if isinstance(row, dict) and (row.get("error") is not None or row.get("reason") is not None):
                return row.get("error"), row.get("reason")
    elif isinstance(data, str) and data:
        return None, data[:EXCERPT]
    elif data is None:
        return None, None
    return None, _excerpt(body).strip() or None


def _unexpected(request: Request, code: int, body: bytes, exc: Exception) -> BadResponse:
    """A transform failed on an answer of the wrong shape: a BadResponse with the status and an excerpt."""
    bad = BadResponse(reason="unexpected answer (%s: %s): %s" % (type(exc).__name__, exc, _excerpt(body)),
                      code=code, method=request.method, url=redact_url(request.url), body=_excerpt(body))
    bad.__cause__ = exc
    return bad


def _empty(request: Request, code: int) -> BadResponse:
    """A 2xx answer with no body to a call that expects JSON."""
    return BadResponse(reason="the server answered %d with an empty body where JSON was expected" % code,
                       code=code, method=request.method, url=redact_url(request.url))


def _content_type(header_lines: List[bytes]) -> str:
    for line in reversed(header_lines):
        if line[:13].lower() == b"content-type:":
            return line[13:].strip().decode("latin-1").lower()
    return ""


class _StreamGate:
    """Stands between curl and a streamed request's consumer.

    The consumer gets the body only once the status is known to be a 2xx;
    an error (or redirect) body is kept (up to :data:`ERROR_BODY_MAX` bytes) to be
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
            # Only a 2xx body streams; an error's (or a redirect's) is kept for the exception.
            passing = self.passing = _status_code(self.request.header_lines) < 300  # type: ignore[union-attr]
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


class Resend:
    """A resent request's counts (retries, redirects followed), kept as a wrapper of its ``on_done``.

    Failure hooks and the redirect logic find it with :func:`resend_state`;
    it lives exactly as long as the request, and costs nothing to requests
    that are never sent again.
    """

    __slots__ = ("on_done", "retries", "redirects", "moves")

    def __init__(self, on_done: Callable[[Request], Any]) -> None:
        self.on_done = on_done
        self.retries = 0
        self.redirects = 0
        #: Times a cluster moved it to another node (see corduroy.cluster).
        self.moves = 0

    def __call__(self, request: Request) -> None:
        self.on_done(request)


def resend_state(request: Request) -> Resend:
    """The :class:`Resend` counts of ``request`` (installed on first use)."""
    state = request.on_done
    if type(state) is not Resend:
        state = request.on_done = Resend(state)  # type: ignore[arg-type]
    return state  # type: ignore[return-value]


def resend_counts(request: Request) -> Tuple[int, int]:
    """``(retries, redirects)`` so far for ``request`` (0, 0 if it was never sent again)."""
    state = request.on_done
    if type(state) is Resend:
        return state.retries, state.redirects  # type: ignore[union-attr]
    return 0, 0


def _on_response(request: Request) -> None:
    """Map a finished curl request to its Operation's ``(data, Status)``."""
    op, transform, raw, server, _deadline, plain = request.context
    code = request.code
    # The common case first: a buffered JSON answer in the 2xx range.
    if (request.errno is None and code is not None and 100 <= code < 300 and not raw
            and request.on_chunk is None and server._cookie is None):
        status = Status(code, None, None, request.header_lines)
        body = request.body_out
        if not body and code != 204 and request.method != "HEAD":
            _on_response_general(request, op, transform, raw, server)  # reports BadResponse
            return
        try:
            if not body or request.method == "HEAD":
                data = None
            elif plain:
                data = codec.decode_plain(body)
            else:
                data = codec.decode(body)
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
                    exc = _unexpected(request, code, body, exc)
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
        upload = request.upload
        if upload is not None and upload.failure is not None:
            # The streamed body failed (bad chunk, wrong length, unreadable file): that is the outcome.
            op.complete(None, Status(request.code, exception=upload.failure, header_lines=header_lines))
            return
        exc: CouchError = transport_error(request)
        if server.cluster is not None:
            server.cluster.transport_failed(request, exc)
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
                error, reason = error_and_reason(data, body)
        cls = error_for_code(code) if code >= 400 else BadResponse
        exc = cls(reason=reason, error=error, code=code or None, method=request.method,
                  url=redact_url(request.url), body=data)
        if server.failure_hooks and server._on_failure(request, exc):
            return
        op.complete(data, Status(code or None, exception=exc, header_lines=header_lines))
        return
    if code in _REDIRECTS:
        refusal = _follow_redirect(server, request)
        if refusal is None:
            return  # sent again, to the new location
        op.complete(None, Status(code, exception=refusal, header_lines=header_lines))
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
        elif request.method == "HEAD" or code in (204, 304) or request.on_chunk is not None:
            data = None
        else:
            raise _empty(request, code)
        if transform is not None:
            data = transform(data, status)
    except Exception as exc:
        if not isinstance(exc, CouchError):
            log.debug("response handler failed for %s %s", request.method, redact_url(request.url), exc_info=True)
            exc = _unexpected(request, code, body, exc)
        op.complete(None, Status(code, exception=exc, header_lines=header_lines))
        return
    op.complete(data, status)


#: Redirect statuses (300 Multiple Choices and 304 Not Modified are answers, not redirects).
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: The most redirects one request follows.
MAX_REDIRECTS = 5


def _last_header(header_lines: List[bytes], name: bytes) -> Optional[str]:
    """The value of header ``name`` (lower case, with the colon) in the last response, if any."""
    size = len(name)
    for line in reversed(header_lines):
        if line[:5] == b"HTTP/":
            return None
        if line[:size].lower() == name:
            return line[size:].strip().decode("latin-1")
    return None


def _origin(url: str) -> Tuple[str, str, Optional[int]]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:  # a malformed port
        port = -1
    return scheme, (parts.hostname or "").lower(), port


def _follow_redirect(server: "Server", request: Request) -> Optional[HTTPError]:
    """Send a redirected GET/HEAD again to its new location on the same server; else say why not.

    Credentials (the Authorization or Cookie header) only ever go back to
    the server they belong to: a redirect to another scheme, host or port,
    or to a URL with credentials in it, is not followed.
    """
    location = _last_header(request.header_lines, b"location:")
    target = urljoin(request.url, location) if location else None
    why = None
    if target is None:
        why = "the answer has no Location"
    elif not server.follow_redirects:
        why = "following redirects is off"
    elif request.method != "GET" and request.method != "HEAD":
        why = "only GET and HEAD requests follow redirects"
    elif ((_origin(target) != _origin(server.url)
           and not (server.cluster is not None and server.cluster.same_origin(target)))
          or "@" in urlsplit(target).netloc):
        why = "it leads to another server, and credentials only go to their own server"
    else:
        state = resend_state(request)
        if state.redirects >= MAX_REDIRECTS:
            why = "more than %d redirects" % MAX_REDIRECTS
        else:
            state.redirects += 1
            log.debug("%s %s: redirected (%s) to %s", request.method, redact_url(request.url), request.code,
                      redact_url(target))
            request.url = target
            server.resubmit(request)
            return None
    shown = redact_url(target) if target else "nowhere"
    return HTTPError(reason="redirected to %s; not followed: %s" % (shown, why), error="redirect",
                     code=request.code, method=request.method, url=redact_url(request.url))


def _seconds(value: Any, what: str) -> Optional[float]:
    """``value`` checked as a number of seconds (None or 0: no limit)."""
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or value != value:
        raise ValueError("%s is in seconds (a number >= 0, or None for no limit), got %s" % (what, describe(value)))
    return value


def _low_speed(idle_timeout: Optional[float]) -> Optional[Tuple[int, int]]:
    """libcurl's low-speed limit for an idle timeout: under 1 byte/s for that many (whole) seconds."""
    if not idle_timeout:
        return None
    return (1, max(1, int(math.ceil(idle_timeout))))


#: Feeds that stay open until something happens (``_changes``, ``_db_updates``).
_WAITING_FEEDS = ("longpoll", "continuous", "eventsource")


def _feed_low_speed(low: Tuple[int, int], params: Dict[str, Any]) -> Optional[Tuple[int, int]]:
    """The low-speed limit of a request that waits for news (``feed=`` one of :data:`_WAITING_FEEDS`).

    libcurl averages the speed over a few seconds, so heartbeats (one byte
    each) never count as traffic: a continuous feed, or a longpoll that
    heartbeats, gets no limit (the changes feed watches its heartbeats
    itself); a plain longpoll gets the idle timeout on top of its wait.
    """
    if params.get("feed") != "longpoll" or params.get("heartbeat"):
        return None
    wait = params.get("timeout")
    seconds = wait / 1000.0 if isinstance(wait, (int, float)) and not isinstance(wait, bool) else 60.0
    return (low[0], low[1] + int(math.ceil(seconds)))


class Server:
    """Where requests go: a CouchDB server's base URL, credentials and defaults.

    Credentials are taken out of the URL and sent in an ``Authorization``
    header; the URL kept (and shown anywhere) has none.

    Limits and reliability (each a default for every request; see
    ``docs/guide/reliability.rst``):

    ``timeout``
        Seconds a whole request may take, retries and their waits included
        (None: no limit).  ``Server.request(..., timeout=)`` overrides it.
    ``connect_timeout``
        Seconds to establish a connection (each attempt; default
        :data:`DEFAULT_CONNECT_TIMEOUT`, 10 s).
    ``idle_timeout``
        The stall timeout: abort a transfer when it moves fewer than 1 byte
        per second (averaged over a few seconds) for that many seconds
        (default :data:`DEFAULT_IDLE_TIMEOUT`, 150 s; None: never).
        Continuous feeds are exempt (they watch their heartbeats); a
        longpoll gets it on top of its wait.

    Each can be changed for the requests made in a block with
    :func:`timeouts`.

    ``retries``
        A :class:`~corduroy.retry.RetryPolicy`, or how many times the
        default policy may send a request again (3; 0 or None: never).  It
        retries reads, and writes only when nothing of them was sent.
    ``follow_redirects``
        Follow GET/HEAD redirects to the same server (scheme, host and
        port); never to another one.
    ``verify``, ``ca_bundle``, ``client_cert``, ``client_key``, ``client_key_password``
        TLS (see :mod:`corduroy.tls`).  ``verify=False`` is logged as a
        WARNING and shown in the repr.

    Headers, authentication and compression (see
    :mod:`corduroy.request_headers`):

    ``auth``
        A ``(user, password)`` tuple (Basic authentication; also taken from
        the URL), or a :class:`~corduroy.request_headers.ProxyAuth`.
    ``jwt``
        A JSON Web Token, sent as ``Authorization: Bearer <jwt>``
        (:meth:`set_jwt` replaces it, e.g. before it expires).
    ``headers``
        A dict of extra headers sent with every request; they replace
        corduroy's own of the same name (``Accept``...).  Per call: the
        :func:`~corduroy.request_headers.headers` block.  Headers cannot go
        through ``curl_options`` (``pycurl.HTTPHEADER`` there is a
        ValueError).  No header value ever shows in a repr, log line or
        exception.
    ``compress_requests``
        Send JSON request bodies (documents, ``_bulk_docs``, queries)
        gzip-compressed (``Content-Encoding: gzip``): True for those of
        :data:`DEFAULT_COMPRESS_MIN_SIZE` bytes or more, or the minimum
        size in bytes.  CouchDB 3 accepts them.
    ``accept_compressed``
        Ask for gzip/deflate-compressed responses (``Accept-Encoding``;
        libcurl decodes them, streamed bodies included).  On by default;
        CouchDB itself compresses only attachments, a proxy in front may
        compress everything.

    A cluster (see :mod:`corduroy.cluster`):

    ``url`` as a list of several URLs
        The nodes of one CouchDB cluster: requests spread over the nodes
        that are up, fail over to another node when that is safe, and a
        node that fails is probed until it answers again.  Credentials in
        the URLs, if any, must be the same for every node.  ``url`` (the
        attribute) is the first node's.  :attr:`cluster` is the
        :class:`~corduroy.cluster.Cluster` (None for one URL).
    ``routing``
        Send single-document requests to a node that holds a copy of the
        document (default True; only with several URLs).
    ``probe_interval``
        Seconds between health probes (``GET /_up``) of a node that is down.
    """

    def __init__(
        self,
        url: Union[None, str, Sequence[str]] = None,
        auth: Optional[Auth] = None,
        timeout: Optional[float] = None,
        connect_timeout: Optional[float] = DEFAULT_CONNECT_TIMEOUT,
        max_response_size: Optional[int] = None,
        full_commit: Optional[bool] = None,
        curl_options: Optional[Dict[int, Any]] = None,
        idle_timeout: Optional[float] = DEFAULT_IDLE_TIMEOUT,
        retries: Any = 3,
        follow_redirects: bool = True,
        verify: bool = True,
        ca_bundle: Optional[str] = None,
        client_cert: Optional[str] = None,
        client_key: Optional[str] = None,
        client_key_password: Optional[str] = None,
        headers: Optional[Mapping[str, str]] = None,
        jwt: Optional[str] = None,
        compress_requests: Union[bool, int] = False,
        accept_compressed: bool = True,
        routing: bool = True,
        probe_interval: float = 1.0,
    ) -> None:
        from . import defaults
        from .cluster import Cluster, cluster_urls
        from .retry import RetryPolicy
        from .tls import tls_options

        nodes = cluster_urls(url)
        first: Optional[str] = url[0] if isinstance(url, (list, tuple)) else url  # type: ignore[assignment]
        base, inline = split_credentials(first or defaults.url)
        for other in nodes or ():
            _, more = split_credentials(other)
            if more is not None and inline is not None and more != inline:
                raise ValueError("the node URLs carry different credentials; give them once, as auth=(user, password)")
            inline = inline or more
        self.url = base
        credentials = auth if auth is not None else inline
        self._proxy_auth: Optional[ProxyAuth] = None
        if isinstance(credentials, ProxyAuth):
            if inline is not None:
                raise ValueError("give either credentials in the URL or auth=ProxyAuth(...), not both")
            self._proxy_auth, credentials = credentials, None
        if credentials is not None:
            if not (isinstance(credentials, tuple) and len(credentials) == 2):
                raise TypeError("auth must be a (user, password) tuple or a corduroy.ProxyAuth")
        self._credentials = credentials
        self._jwt: Optional[str] = None
        if jwt is not None:
            if credentials is not None:
                raise ValueError("give either a user and password (auth= or in the URL) or jwt=, not both")
            self._jwt = check_jwt(jwt)
        self._user_headers = check_headers(headers, "headers")
        if isinstance(compress_requests, bool):
            self.compress_min_size: Optional[int] = DEFAULT_COMPRESS_MIN_SIZE if compress_requests else None
        elif isinstance(compress_requests, int) and compress_requests >= 0:
            self.compress_min_size = compress_requests
        else:
            raise ValueError("compress_requests must be True, False or a size in bytes (an int >= 0)")
        if not isinstance(accept_compressed, bool):
            raise TypeError("accept_compressed must be True or False")
        self.accept_compressed = accept_compressed
        self.timeout = _seconds(timeout, "timeout")
        self.connect_timeout = _seconds(connect_timeout, "connect_timeout")
        self.idle_timeout = idle_timeout
        self.max_response_size = max_response_size
        if not isinstance(follow_redirects, bool):
            raise TypeError("follow_redirects must be True or False, got %s" % describe(follow_redirects))
        self.follow_redirects = follow_redirects
        #: False when TLS certificates are not checked (``verify=False``).
        self.verify = verify
        self._tls = tls_options(base, verify, ca_bundle, client_cert, client_key, client_key_password)
        self.curl_options = curl_options
        if not verify:
            log.warning("TLS certificate verification is OFF for %s (verify=False): anyone on the path can "
                        "read and change this traffic, credentials included", base)
        #: The :class:`~corduroy.retry.RetryPolicy` installed in ``failure_hooks`` (None: no retries).
        self.retry_policy: Optional[RetryPolicy] = RetryPolicy.from_setting(retries)
        self._extra_headers: List[str] = []
        if full_commit is not None:
            self._extra_headers.append("X-Couch-Full-Commit: %s" % ("true" if full_commit else "false"))
        self._build_headers()
        #: Server-generated ids not yet used (see ``Couch.uuids``).
        self.uuid_cache: List[str] = []
        #: Objects with ``handle(server, request, exc) -> bool`` consulted, in
        #: order, when a request fails; one returning True has taken the
        #: request over (to retry it, or to renew a session) and completes it.
        #: The retry policy handles no 401, so a cookie session (which
        #: handles only 401) renews first wherever it stands in the list.
        self.failure_hooks: List[Any] = []
        #: The nodes of a cluster (``url`` a list of several URLs), else None.
        self.cluster: Optional[Cluster] = None
        if nodes is not None:
            if not isinstance(routing, bool):
                raise TypeError("routing must be True or False, got %s" % describe(routing))
            interval = _seconds(probe_interval, "probe_interval")
            self.cluster = Cluster(self, nodes, routing=routing, probe_interval=interval or 1.0)
            self.failure_hooks.append(self.cluster)  # first: another node now beats a retry later
        if self.retry_policy is not None:
            self.failure_hooks.append(self.retry_policy)

    # -- limits and options ----------------------------------------------
    @property
    def idle_timeout(self) -> Optional[float]:
        """Seconds under 1 byte/s after which a transfer is aborted (None: never)."""
        return self._idle_timeout

    @idle_timeout.setter
    def idle_timeout(self, value: Optional[float]) -> None:
        self._idle_timeout = _seconds(value, "idle_timeout")
        self._low_speed = _low_speed(self._idle_timeout)

    @property
    def curl_options(self) -> Optional[Dict[int, Any]]:
        """Extra libcurl options set on every request (``{pycurl.OPTION: value}``), over the TLS settings."""
        return self._curl_options

    @curl_options.setter
    def curl_options(self, options: Optional[Dict[int, Any]]) -> None:
        self._curl_options = options
        # One dict object, reused by every request: the curl driver skips
        # re-setting options it already set on a handle.
        if options and pycurl.HTTPHEADER in options:
            raise ValueError("request headers go in headers={...} (per client) or a corduroy.headers({...}) "
                             "block (per call), not in curl_options[pycurl.HTTPHEADER], which corduroy sets "
                             "on every request")
        merged = dict(self._tls)
        merged.update(options or {})  # explicit libcurl options win
        # Feeds that wait for news never ask for compression: a compressing
        # server (pouchdb-server, a proxy) would hold heartbeats and changes
        # back in its compressor.
        self._options_feed: Optional[Dict[int, Any]] = merged or None
        if getattr(self, "accept_compressed", True) and pycurl.ACCEPT_ENCODING not in merged:
            merged = dict(merged)
            merged[pycurl.ACCEPT_ENCODING] = "gzip, deflate"
        self._options: Optional[Dict[int, Any]] = merged or None

    # -- headers --------------------------------------------------------
    def _build_headers(self) -> None:
        common = ["Accept: application/json"] + self._extra_headers
        self._cookie: Optional[str] = getattr(self, "_cookie", None)
        # A cookie session replaces Basic auth (see corduroy.session).
        if self._credentials is not None and not self._cookie:
            user, password = self._credentials
            token = base64.b64encode(("%s:%s" % (user, password)).encode("utf-8")).decode("ascii")
            common.append("Authorization: Basic " + token)
        elif self._jwt is not None and not self._cookie:
            common.append("Authorization: Bearer " + self._jwt)
        if self._proxy_auth is not None:
            common.extend(self._proxy_auth.header_lines())
        if self._cookie:
            common.append("Cookie: " + self._cookie)
        common = merge_headers(common, self._user_headers)
        # One list object per kind, reused by every request: the curl driver
        # skips re-setting headers it already set.
        self.headers_plain = common
        self.headers_json = common + ["Content-Type: application/json", "Expect:"]

    @property
    def user(self) -> Optional[str]:
        """The user name requests authenticate as (None: anonymous, or unknown with a JWT)."""
        if self._proxy_auth is not None:
            return self._proxy_auth.user
        return self._credentials[0] if self._credentials else None

    def set_jwt(self, token: Optional[str]) -> None:
        """Send ``token`` as ``Authorization: Bearer`` from now on (a renewed JWT); None stops sending one."""
        if token is not None and self._credentials is not None:
            raise ValueError("this client authenticates with a user and password; it cannot take a jwt too")
        self._jwt = None if token is None else check_jwt(token)
        self._build_headers()

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

    def add_nodes(self, urls: Sequence[str], routing: bool = True) -> Any:
        """Treat this server as one node of a cluster and add ``urls`` as its other nodes; returns the Cluster.

        Credentials in the URLs are ignored: every node gets this server's.
        """
        from .cluster import Cluster

        if self.cluster is None:
            self.cluster = Cluster(self, [self.url], routing=routing)
            self.failure_hooks.insert(0, self.cluster)
        for url in urls:
            self.cluster.add(url)
        return self.cluster

    def __repr__(self) -> str:
        nodes = " (+%d nodes)" % (len(self.cluster.nodes) - 1) if self.cluster is not None else ""
        if not self.verify:
            return "<Server %r%s verify=False>" % (self.url, nodes)
        return "<Server %r%s>" % (self.url, nodes)

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
        idle_timeout: Optional[float] = None,
        plain: bool = False,
        node: Any = None,
        upload: Any = None,
    ) -> Operation:
        """Send a request; return its Operation (never blocks).

        ``path`` is already quoted and starts with ``/``; ``json`` is encoded
        (raising before any I/O if it cannot be); ``body`` is sent as is.
        ``transform(data, status)`` post-processes a successful answer.
        ``on_chunk(bytes)`` streams a successful body to a consumer instead of
        buffering it (``transform`` then gets ``data=None``); the body of an
        error (or a redirect) is buffered and raised as usual; an exception
        raised by the consumer aborts the transfer and fails the Operation.
        ``timeout`` and ``idle_timeout`` override the Server's (0: no limit).
        ``plain=True`` decodes a JSON answer into plain dicts instead of
        :class:`Document` (cheaper, for answers the caller only reads).
        ``node``: in a cluster, the :class:`~corduroy.cluster.Node` to send
        the request to (default: the cluster chooses).
        ``upload`` streams the body instead of ``body`` (see
        :class:`loop.curl.Request`; e.g. a
        :class:`~corduroy.attachment_streams.UploadSource`); if it fails
        (its ``failure`` set), that is the Operation's exception.
        """
        if json is not None:
            body = codec.encode(json, what)
            hdrs = self.headers_json if headers is None else headers
        else:
            if body is not None and isinstance(body, str):
                body = body.encode("utf-8")
            hdrs = (self.headers_plain if body is None else self.headers_json) if headers is None else headers
        minimum = self.compress_min_size
        if (minimum is not None and body is not None and len(body) >= minimum
                and (json is not None or headers is None)):  # JSON bodies only, never attachments
            body = gzip_body(body)
            hdrs = hdrs + ["Content-Encoding: gzip"]
        connect = self.connect_timeout
        block = current()
        if block is not None:  # inside `with corduroy.timeouts(...)` or `corduroy.headers(...)`
            if block.headers is not None:
                hdrs = merge_headers(hdrs, block.headers)
            if timeout is None and block.timeout is not UNSET:
                timeout = block.timeout or 0
            if block.connect_timeout is not UNSET:
                connect = block.connect_timeout
            if idle_timeout is None and block.idle_timeout is not UNSET:
                idle_timeout = block.idle_timeout or 0
        cluster = self.cluster
        if cluster is None:
            url = self.url + path + encode_query(params) if params else self.url + path
        else:
            if node is None:
                node = cluster.pick(path)
            url = node.url + path + encode_query(params) if params else node.url + path
        reactor = get_reactor()
        op = CouchOperation(reactor)
        t = self.timeout if timeout is None else timeout
        low = self._low_speed if idle_timeout is None else _low_speed(idle_timeout)
        options = self._options
        if params and params.get("feed") in _WAITING_FEEDS:  # waits for news: see _feed_low_speed
            options = self._options_feed
            if low is not None:
                low = _feed_low_speed(low, params)
        # With retries, a request's deadline covers every attempt and wait.
        deadline = reactor.time() + t if t and self.retry_policy is not None else None
        gate = _StreamGate(on_chunk) if on_chunk is not None else None
        req = Request(
            method, url, hdrs, body, on_done=_on_response, on_chunk=gate,
            timeout=t or 0, connect_timeout=connect or 0, low_speed=low,
            options=options,
            context=(op, transform, raw, self, deadline, plain),
            max_body=self.max_response_size if on_chunk is None else None,
            upload=upload,
        )
        if gate is not None:
            gate.request = req
        if cluster is not None:
            cluster.bind(req, node)
        op._cancel = req  # calling a submitted Request cancels it
        op.origin = (method, url)
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
        """Send a finished ``request`` again (after ``delay`` seconds); its Operation completes later.

        If the Operation is cancelled meanwhile, the request is not sent.
        """
        request.code = None
        request.errno = None
        request.errmsg = None
        request.body_out = b""
        request.header_lines = []
        if type(request.on_chunk) is _StreamGate:
            request.on_chunk.reset()
        reactor = request.context[0].reactor
        if delay > 0:
            reactor.call_later(delay, self._submit_again, request)
        else:
            self._submit_again(request)

    def _submit_again(self, request: Request) -> None:
        op = request.context[0]
        if op.done():  # cancelled while waiting
            return
        if self.cluster is not None:
            self.cluster.resend(request)
        try:
            op.reactor.curl.submit(request)
        except RuntimeError as exc:  # the reactor's curl driver was closed meanwhile
            op.complete(None, Status(None, exception=ConnectionFailed(
                "could not send the request again: %s" % exc, method=request.method,
                url=redact_url(request.url))))

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
