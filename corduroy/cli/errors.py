"""Exit codes, the errors the command line reports, and how each is worded.

Every expected failure (a missing database, a conflict, a refused
connection, a bad argument) ends the command with one line on stderr and the
exit code of its kind; only a bug shows a traceback.  Nothing printed may
hold credentials: :func:`scrub` removes them from every line.
"""
from __future__ import annotations

import enum
import re
from typing import Optional, Sequence, Tuple

from ..exceptions import (
    Conflict,
    CouchError,
    Forbidden,
    NotFound,
    PreconditionFailed,
    Timeout,
    TLSError,
    TransportError,
    Unauthorized,
)

__all__ = ["ExitCode", "CLIError", "UsageError", "exit_code_for", "describe", "Scrubber", "EXIT_CODES_HELP"]


class ExitCode(enum.IntEnum):
    """The exit status of a ``corduroy`` command."""

    OK = 0
    #: Some documents were not written (conflicts or rejected documents).
    PARTIAL = 1
    #: Bad arguments or bad input (an invalid JSON line, an unknown option).
    USAGE = 2
    #: No such database, document, design document or view.
    NOT_FOUND = 3
    #: The request failed below HTTP: refused, reset, timed out, TLS.
    CONNECTION = 4
    #: A document changed meanwhile (stale revision), or the database already exists.
    CONFLICT = 5
    #: Wrong credentials, or not allowed.
    DENIED = 6
    #: The server answered with another error (other 4xx, 5xx, not CouchDB's JSON).
    SERVER = 7
    #: Interrupted (Ctrl-C).
    INTERRUPTED = 130
    #: stdout was closed before the output was all written (``corduroy dump db | head``).
    BROKEN_PIPE = 141


#: The exit codes as the ``--help`` text lists them.
EXIT_CODES_HELP = """\
exit codes:
  0    success
  1    partial failure: some documents were not written (load: conflicts or
       rejected documents, one line each on stderr)
  2    usage error: bad arguments or bad input (an invalid JSON line...)
  3    not found: no such database, document, design document or view
  4    connection failure: refused, reset, timed out, TLS
  5    conflict: the document changed meanwhile (stale or missing --rev),
       or the database already exists
  6    unauthorized or forbidden
  7    the server answered with another error
  130  interrupted (Ctrl-C)
  141  stdout closed early (a reader such as `head` went away)"""


class CLIError(Exception):
    """A failure the command line reports as one line, with an exit code."""

    def __init__(self, message: str, code: ExitCode = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class UsageError(CLIError):
    """Bad arguments or bad input: exit code 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ExitCode.USAGE)


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit code for an exception the library raised."""
    if isinstance(exc, CLIError):
        return exc.code
    if isinstance(exc, NotFound):
        return ExitCode.NOT_FOUND
    if isinstance(exc, TransportError):
        return ExitCode.CONNECTION
    if isinstance(exc, (Conflict, PreconditionFailed)):
        return ExitCode.CONFLICT
    if isinstance(exc, (Unauthorized, Forbidden)):
        return ExitCode.DENIED
    return ExitCode.SERVER


_LABELS: Sequence[Tuple[type, str]] = (
    (NotFound, "not found"),
    (Conflict, "conflict"),
    (PreconditionFailed, "precondition failed"),
    (Unauthorized, "unauthorized"),
    (Forbidden, "forbidden"),
    (Timeout, "timed out"),
    (TLSError, "TLS failure"),
    (TransportError, "connection failed"),
)


def describe(exc: CouchError) -> str:
    """One line for a library exception: what kind, the server's reason, and the request."""
    label = "server error"
    for cls, text in _LABELS:
        if isinstance(exc, cls):
            label = text
            break
    else:
        if exc.code is not None and 400 <= exc.code < 500:
            label = "request refused (%d)" % exc.code
        elif exc.code is not None:
            label = "server error (%d)" % exc.code
    detail = exc.reason or exc.error or type(exc).__name__
    if exc.error and exc.reason and exc.error != exc.reason and exc.error not in (
            "not_found", "conflict", "unauthorized", "forbidden", "file_exists"):
        detail = "%s: %s" % (exc.error, exc.reason)
    where = " ".join(part for part in (exc.method, exc.url) if part)
    return "%s: %s (%s)" % (label, detail, where) if where else "%s: %s" % (label, detail)


# ``scheme://anything@`` anywhere in a text (not only at its start).
_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#@\s]*@")


class Scrubber:
    """Removes credentials from text before it is printed.

    URLs lose their ``user:password@`` part wherever they appear, and the
    password of the ``--url`` in use is masked wherever it appears (a
    server's error message might quote it).
    """

    def __init__(self, password: Optional[str] = None) -> None:
        self.password = password if password and len(password) >= 2 else None

    def __call__(self, text: str) -> str:
        text = _USERINFO.sub(r"\1", text)
        if self.password is not None:
            text = text.replace(self.password, "***")
        return text
