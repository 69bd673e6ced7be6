"""Removing credentials from URLs, and from any value, before they are shown anywhere.

:func:`redact_url` cleans one URL; :func:`redact_text` cleans every URL in a
text; :func:`describe` turns a value a caller passed (maybe in the wrong
place: a URL with a password where a callback was expected) into something
safe to put in an exception message or a log line.
"""
from __future__ import annotations

import re
from typing import Any

__all__ = ["redact_url", "redact_text", "describe", "type_name"]

_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#]*@")
#: ``scheme://user:password@`` anywhere in a text.
_ANY_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#]*@")
#: ``user:password@host`` without a scheme (a URL given without its ``http://``).
_BARE_USERINFO = re.compile(r"[^\s/?#'\"@:]+:[^\s/?#'\"]*@")

#: How much of a str :func:`describe` shows.
SHOWN = 60


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` part removed.

    >>> redact_url("http://admin:secret@127.0.0.1:5984/db")
    'http://127.0.0.1:5984/db'
    """
    return _USERINFO.sub(r"\1", url)


def redact_text(text: str) -> str:
    """``text`` with the credentials of every URL in it (with or without a scheme) replaced by ``***``.

    >>> redact_text("see http://admin:secret@host/db and admin:secret@host")
    'see http://***@host/db and ***@host'
    """
    if "@" not in text:
        return text
    return _BARE_USERINFO.sub("***@", _ANY_USERINFO.sub(r"\1***@", text))


def type_name(value: Any) -> str:
    """The type of ``value`` with its article, for messages: ``"a str"``, ``"an int"``, ``"None"``.

    >>> type_name(("admin", "secret"))
    'a tuple'
    """
    if value is None:
        return "None"
    name = type(value).__name__
    return ("an " if name[:1].lower() in "aeiou" else "a ") + name


def describe(value: Any) -> str:
    """``value`` as safe to show in a message: never a credential.

    Numbers, bools and None show as themselves; a str shows quoted, with
    the credentials of any URL in it removed (and shortened); anything else
    (a tuple that may be ``(user, password)``, a dict of headers, a
    function...) shows only as its type.

    >>> describe("http://admin:secret@host/db")
    "'http://***@host/db'"
    >>> describe(("admin", "secret"))
    'a tuple'
    >>> describe(2.5)
    '2.5'
    """
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, str):
        text = redact_text(value)
        if len(text) > SHOWN:
            text = text[:SHOWN] + "..."
        return repr(text)
    return type_name(value)
