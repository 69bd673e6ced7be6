"""JSON encoding and decoding, through simplejson's C speedups.

Objects decode as :class:`~corduroy.document.Document` (a dict with attribute
access).  Encoding refuses NaN and Infinity (CouchDB cannot store them) and
anything JSON cannot represent, with an error that names the problem:
``bytes`` too (JSON has no bytes; binary data goes in attachments), whatever
their content.
"""
from __future__ import annotations

from typing import Any

import simplejson

from loop.redact import describe

from .document import Document

__all__ = ["encode", "encode_document", "decode", "decode_plain", "JSONDecodeError"]

JSONDecodeError = simplejson.JSONDecodeError

#: What a TypeError for a bytes value says.
BYTES_MESSAGE = (
    "JSON has no bytes (got a %s value): store binary data as an attachment "
    "(db.put_attachment(doc, data, filename), or base64 under the document's _attachments), "
    "or decode text to a str first"
)


def _unknown(obj: Any) -> Any:
    """simplejson's hook for a value it cannot encode (never called for the JSON types)."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        raise TypeError(BYTES_MESSAGE % type(obj).__name__)
    raise TypeError("Object of type %s is not JSON serializable" % type(obj).__name__)


_encoder = simplejson.JSONEncoder(
    allow_nan=False, separators=(",", ":"), ensure_ascii=False,
    # No marker dict per container: a structure that contains itself recurses
    # until RecursionError, which encode() reports as such.
    check_circular=False,
    # simplejson decodes bytes as UTF-8 by default (b"abc" would be stored as
    # "abc", and b"\xff" fail with a UnicodeDecodeError): with no encoding,
    # bytes reach the ``default`` hook, which refuses them.
    encoding=None, default=_unknown,
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
        message = str(exc)
        if message.endswith("not bytes"):  # a bytes key: {b"k": ...}
            message += "; " + BYTES_MESSAGE % "bytes"
        raise TypeError("cannot encode %s as JSON: %s" % (what, message)) from None
    except ValueError as exc:
        raise ValueError("cannot encode %s as JSON: %s (CouchDB stores no NaN or Infinity)" % (what, exc)) from None
    except RecursionError:
        raise ValueError("cannot encode %s as JSON: it is nested too deeply or refers to itself" % what) from None


def encode_document(doc: Any) -> bytes:
    """``encode(doc)`` for a document: an error names it by its ``_id`` (shown safely), built only on failure."""
    try:
        return encode(doc)
    except (TypeError, ValueError):
        label = describe(doc.get("_id", "(new)")) if isinstance(doc, dict) else "(new)"
        return encode(doc, "document %s" % label)  # fails again, with the message that names it


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
