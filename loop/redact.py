"""Removing credentials from URLs before they are shown anywhere."""
from __future__ import annotations

import re

__all__ = ["redact_url"]

_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#]*@")


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` part removed.

    >>> redact_url("http://admin:secret@127.0.0.1:5984/db")
    'http://127.0.0.1:5984/db'
    """
    return _USERINFO.sub(r"\1", url)
