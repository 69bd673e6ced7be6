"""When a failed request is sent again: :class:`RetryPolicy`.

Every :class:`~corduroy.http.Server` has one by default (``Server(retries=...)``
changes or removes it).  It sends a request again, after a wait, only when
that cannot do harm:

- a read (GET, HEAD, the POSTs that only query, and a login, see
  :func:`corduroy.http.is_idempotent`) that failed below HTTP (connection
  refused, reset, closed early, timed out) or got 429, 502, 503 or 504;
- a write that failed before a byte of it was sent (connection refused,
  connect timeout): the server never saw it.

A write that failed after it was sent is never sent again: it fails with
:class:`~corduroy.exceptions.UnknownOutcome`.  An HTTP error answer to a
write is reported as is.  TLS failures, a response over
``max_response_size``, and streamed requests (on_chunk consumers, such as
continuous feeds, which reconnect by themselves) are not retried.

The waits grow exponentially with full jitter: before retry ``n`` (0-based)
a random time between 0 and ``min(max_backoff, backoff * 2**n)`` seconds.
A ``Retry-After`` answer (seconds or an HTTP date) is waited for instead,
up to ``max_retry_after`` seconds (a longer one is reported, not waited
for).  With a total ``timeout`` on the request, no retry starts that could
not finish before it: the timeout covers every attempt and every wait.

Example::

    from corduroy import Couch
    from corduroy.retry import RetryPolicy

    couch = Couch("http://127.0.0.1:5984", retries=RetryPolicy(retries=5, max_backoff=2.0))
    fragile = Couch("http://127.0.0.1:5984", retries=0)  # fail at the first error
"""
from __future__ import annotations

import email.utils
import logging
import random
import time
from typing import Any, Iterable, Optional

import pycurl

from loop import Request
from loop.redact import describe, redact_url

from .exceptions import ConnectionFailed, HTTPError, Timeout, TLSError, Unauthorized
from .http import _last_header, is_idempotent, maybe_sent, resend_counts, resend_state

__all__ = ["RetryPolicy", "DEFAULT_STATUSES", "retry_after_seconds"]

log = logging.getLogger("corduroy")

#: Answers that say "try again later": Too Many Requests, Bad Gateway, Service Unavailable, Gateway Timeout.
DEFAULT_STATUSES = frozenset({429, 502, 503, 504})

#: curl errors that sending again will not cure (bad URL, unknown host, an aborted
#: consumer, the reactor closing).
_PERMANENT_ERRNOS = frozenset({
    -1, pycurl.E_UNSUPPORTED_PROTOCOL, pycurl.E_URL_MALFORMAT, pycurl.E_COULDNT_RESOLVE_PROXY,
    pycurl.E_COULDNT_RESOLVE_HOST, pycurl.E_WRITE_ERROR, pycurl.E_TOO_MANY_REDIRECTS,
})

#: A retry that would leave less than this (seconds) before the deadline is not started.
MIN_ATTEMPT = 0.01


def retry_after_seconds(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds a ``Retry-After`` header value asks to wait (delay-seconds or an HTTP date); None if unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


class RetryPolicy:
    """Which failed requests are sent again, how often, and after what wait.

    ``retries``: the most times one request is sent again (0: never).
    ``backoff`` and ``max_backoff``: the wait before retry ``n`` is random
    between 0 and ``min(max_backoff, backoff * 2**n)`` seconds.
    ``max_retry_after``: the longest ``Retry-After`` waited for.
    ``statuses``: the HTTP answers a read is retried on.
    ``retry_unsent_writes``: also retry a write that failed before a byte
    of it was sent.  ``streams``: also retry a streamed request (nothing of
    a failed attempt reaches the consumer; off by default because the
    continuous changes feed reconnects by itself).  ``rng``: a
    ``random.Random`` for the jitter (tests pass a seeded one).

    It is a :attr:`Server.failure_hooks <corduroy.http.Server.failure_hooks>`
    entry: ``handle(server, request, exc)`` returns True when it has taken
    the request over.
    """

    def __init__(self, retries: int = 3, backoff: float = 0.1, max_backoff: float = 5.0,
                 max_retry_after: float = 30.0, statuses: Iterable[int] = DEFAULT_STATUSES,
                 retry_unsent_writes: bool = True, streams: bool = False,
                 rng: Optional[random.Random] = None) -> None:
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise ValueError("retries must be an int >= 0, got %s" % describe(retries))
        for name, value in (("backoff", backoff), ("max_backoff", max_backoff),
                            ("max_retry_after", max_retry_after)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
                raise ValueError("%s is in seconds (a number >= 0), got %s" % (name, describe(value)))
        self.retries = retries
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.max_retry_after = float(max_retry_after)
        self.statuses = frozenset(statuses)
        self.retry_unsent_writes = bool(retry_unsent_writes)
        self.streams = bool(streams)
        self._rng = rng or random.Random()

    @classmethod
    def from_setting(cls, setting: Any) -> Optional["RetryPolicy"]:
        """The policy for ``Server(retries=setting)``: a policy, or an int for the default one (0/None/False: none)."""
        if isinstance(setting, RetryPolicy):
            return setting if setting.retries else None
        if setting is None or setting is False:
            return None
        if isinstance(setting, int) and not isinstance(setting, bool):
            return cls(retries=setting) if setting else None
        raise TypeError("retries must be a RetryPolicy or an int (0: no retries), got %s" % describe(setting))

    def __repr__(self) -> str:
        return "<RetryPolicy retries=%d backoff=%g..%g s statuses=%s>" % (
            self.retries, self.backoff, self.max_backoff, sorted(self.statuses))

    # -- decisions ------------------------------------------------------------
    def backoff_delay(self, retry: int) -> float:
        """The wait before retry number ``retry`` (0-based): full jitter under an exponential cap."""
        cap = min(self.max_backoff, self.backoff * (2 ** min(retry, 32)))
        return self._rng.uniform(0.0, cap)

    def is_retryable(self, request: Request, exc: BaseException) -> bool:
        """True if ``request``, failed with ``exc``, may be sent again (counts and time aside)."""
        if isinstance(exc, HTTPError):
            # 401 is the cookie session's (corduroy.session), never ours.
            return (not isinstance(exc, Unauthorized) and exc.code in self.statuses
                    and is_idempotent(request.method, request.url))
        if not isinstance(exc, (ConnectionFailed, Timeout)) or isinstance(exc, TLSError):
            return False  # UnknownOutcome, TLSError, ResponseTooLarge, BadResponse...
        if request.errno in _PERMANENT_ERRNOS:
            return False
        if is_idempotent(request.method, request.url):
            return True
        return self.retry_unsent_writes and not maybe_sent(request)

    # -- the failure hook -----------------------------------------------------
    def handle(self, server: Any, request: Request, exc: BaseException) -> bool:
        """Send ``request`` again later if the policy allows; True if it did (the Operation completes later)."""
        if request.on_chunk is not None and not self.streams:
            return False
        op = request.context[0]
        if op.done():
            return False
        done, _redirects = resend_counts(request)
        if done >= self.retries or not self.is_retryable(request, exc):
            return False
        delay = None
        if isinstance(exc, HTTPError):
            delay = retry_after_seconds(_last_header(request.header_lines, b"retry-after:"))
            if delay is not None and delay > self.max_retry_after:
                log.info("%s %s: %s; not retried: Retry-After %.0f s is over the %.0f s limit",
                         request.method, redact_url(request.url), exc, delay, self.max_retry_after)
                return False
        if delay is None:
            delay = self.backoff_delay(done)
        deadline = request.context[4]
        if deadline is not None:
            left = deadline - op.reactor.time() - delay
            if left < MIN_ATTEMPT:
                return False  # the timeout is (about to be) spent: report this failure
            request.timeout = left
        resend_state(request).retries = done + 1
        log.info("%s %s failed (%s: %s); retry %d of %d in %.2f s", request.method, redact_url(request.url),
                 type(exc).__name__, getattr(exc, "reason", None) or exc, done + 1, self.retries, delay)
        server.resubmit(request, delay)
        return True
