"""JSON encoding and decoding, through simplejson's C speedups.

Objects decode as :class:`~corduroy.document.Document` (a dict with attribute
access).  Encoding refuses NaN and Infinity (CouchDB cannot store them) and
anything JSON cannot represent, with an error that names the problem.
"""
from __future__ import annotations

from typing import Any

import simplejson

from .document import Document

__all__ = ["encode", "decode", "decode_plain", "JSONDecodeError"]

JSONDecodeError = simplejson.JSONDecodeError

_encoder = simplejson.JSONEncoder(
    allow_nan=False, separators=(",", ":"), ensure_ascii=False,
    # No marker dict per container: a structure that contains itself recurses
    # until RecursionError, which encode() reports as such.
    check_circular=False,
)
_decoder = simplejson.JSONDecoder(object_hook=Document)
_plain_decoder = simplejson.JSONDecoder()


def encode(obj: Any, what: str = "value") -> bytes:
    """``obj`` as compact UTF-8 JSON; raises TypeError or ValueError naming ``what``.

    >>> encode({"a": [1, "é"]})
    b'{"a":[1,"\\xc3\\xa9"]}'
    """
    try:
        return _encoder.encode(obj).encode("utf-8")
    except TypeError as exc:
        raise TypeError("cannot encode %s as JSON: %s" % (what, exc)) from None
    except ValueError as exc:
        raise ValueError("cannot encode %s as JSON: %s (CouchDB stores no NaN or Infinity)" % (what, exc)) from None
    except RecursionError:
        raise ValueError("cannot encode %s as JSON: it is nested too deeply or refers to itself" % what) from None


_scan = _decoder.scan_once
_scan_plain = _plain_decoder.scan_once
_WHITESPACE = " \t\n\r"


def decode(data: bytes) -> Any:
    """Decode JSON bytes; objects become :class:`Document`.

    Raises ``JSONDecodeError`` (a ValueError) on invalid JSON.
    """
    return _decode(data, _scan)


def decode_plain(data: bytes) -> Any:
    """Decode JSON bytes into plain dicts and lists (cheaper: no hook per object)."""
    return _decode(data, _scan_plain)


def _decode(data: bytes, scan: Any) -> Any:
    text = data.decode("utf-8")
    # The C scanner directly (what JSONDecoder.decode ends up calling), with
    # its whitespace handling done here: CouchDB bodies are "{...}\n".
    start = 0
    if text[:1] in _WHITESPACE or text[:1] == "\ufeff":
        start = len(text) - len(text.lstrip(_WHITESPACE + "\ufeff"))
    obj, end = scan(text, start)
    if end != len(text) and text[end:].strip(_WHITESPACE):
        raise JSONDecodeError("Extra data", text, end)
    return obj
