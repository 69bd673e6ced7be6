"""Incremental parsing of big JSON answers: rows are handed over as they arrive.

CouchDB answers views, ``_all_docs``, ``_find`` and normal ``_changes`` with
one JSON object holding a big array (``rows``, ``docs``, ``results``) and a
few small fields (``total_rows``, ``offset``, ``bookmark``, ``last_seq``...).
:class:`RowParser` is fed the body chunk by chunk and calls ``on_row`` with
each element of that array as soon as the chunk completing it has arrived,
so a million-row answer never sits whole in memory.  :func:`stream_rows`
sends a request whose answer goes through a parser.

How it works: a small state machine walks the top-level object (member
name, colon, value, comma...) until it meets the member naming the array.
Each value, and each element of the array, is decoded by simplejson's C
scanner (the decoder of :mod:`corduroy.codec`, so objects become
:class:`~corduroy.document.Document`), which also says where the value
ends: on complete data Python does a few operations per element, never
one per byte.  Only when a value is cut by the end of a chunk does a
second state machine run: it follows nesting depth and string/escape state
over that value (a regular expression jumps from bracket to bracket,
skipping whole strings, so brackets and escaped quotes inside strings do
not count) and over the following chunks, until the value is complete; it
is then decoded once.  An element split over many chunks is thus scanned
once and joined once.  Bytes are decoded to text incrementally, so a
multi-byte UTF-8 character split between chunks is fine.

Example::

    parser = RowParser("rows", on_row=print)
    parser.feed(b'{"total_rows":2,"offset":0,"rows":[{"id":"a"},')
    parser.feed(b'{"id":"b"}]}')
    parser.close()          # {'total_rows': 2, 'offset': 0}
"""
from __future__ import annotations

import codecs
import re
from typing import Any, Callable, Dict, List, Optional, Tuple

from loop import Operation, Status
from loop.redact import describe, type_name

from . import codec
from .document import Document
from .exceptions import BadResponse

__all__ = ["RowParser", "RowParseError", "stream_rows"]

# The C scanner of corduroy.codec's decoder: scan_once(text, idx) -> (value, end).
_scan_once = codec._decoder.scan_once
_DecodeError = codec.JSONDecodeError

_WS = re.compile(r"[ \t\r\n]*")

#: After an array element: whitespace, then "," (group 1, and the whitespace
#: after it) or "]" (group 2); no group at the end of the text or before junk.
_AFTER_ELEMENT = re.compile(r"[ \t\r\n]*(?:(,)[ \t\r\n]*|(\]))?")

#: One complete JSON string (escapes included).
_STRING = r'"[^"\\]*(?:\\[\s\S][^"\\]*)*"'

#: Inside a container: skip everything that is not a bracket, complete
#: strings included; stop at an opening bracket (group 1), a closing one
#: (group 2), the quote opening a string that does not end in this text
#: (group 3), or the end of the text (no group).
_SKIP = re.compile(r'(?:[^"{}\[\]]+|' + _STRING + r')*(?:([{\[])|([}\]])|(")|\Z)')

#: The rest of a string whose opening quote is behind us: group 1 is its
#: closing quote, if there.  Without it the match stops at the end of the
#: text, or just before a lone trailing backslash.
_STRING_REST = re.compile(r'[^"\\]*(?:\\[\s\S][^"\\]*)*(")?')

_NUMBERS = (int, float)

#: The first character that cannot belong to a literal (number, true, null...).
_LITERAL_END = re.compile(r"[^-+.0-9a-zA-Z]")

# States of the walk.
_BEFORE = 0         # before the top-level "{"
_FIRST_KEY = 1      # after "{": a member name or "}"
_KEY = 2            # after ",": a member name
_COLON = 3          # after a member name
_VALUE = 4          # after ":"
_AFTER = 5          # after a member's value: "," or "}"
_FIRST_ELEMENT = 6  # after the array's "[": an element or "]"
_ELEMENT = 7        # after "," in the array: an element
_SEPARATOR = 8      # after an element: "," or "]"
_DONE = 9           # after the top-level "}"


class RowParseError(ValueError):
    """The streamed body is not valid JSON, is cut short, or lacks the expected array."""


class _Rest:
    """Finds where one JSON value ends, over successive pieces of text.

    Follows nesting depth and string/escape state for objects, arrays and
    strings; for a literal (number, true, false, null) waits for the first
    character that cannot belong to it.
    """

    __slots__ = ("kind", "depth", "in_string", "escape")

    def __init__(self, first: str) -> None:
        self.depth = 0
        self.in_string = False
        self.escape = False
        if first in "{[":
            self.kind = 0
        elif first == '"':
            self.kind = 1
        else:
            self.kind = 2

    def end(self, text: str, pos: int) -> int:
        """Where the value ends in ``text`` (scanning from ``pos``), or -1 if not in it."""
        n = len(text)
        if self.kind == 2:
            m = _LITERAL_END.search(text, pos)
            return -1 if m is None else m.start()
        if self.kind == 1 and not self.in_string:  # at the opening quote
            self.in_string = True
            pos += 1
        if self.in_string:
            if self.escape:
                self.escape = False
                pos += 1
                if pos >= n:
                    return -1
            m = _STRING_REST.match(text, pos)
            if m.lastindex is None:  # type: ignore[union-attr]
                self.escape = m.end() < n  # type: ignore[union-attr]
                return -1
            self.in_string = False
            pos = m.end()  # type: ignore[union-attr]
            if self.kind == 1:
                return pos
        depth = self.depth
        for m in _SKIP.finditer(text, pos):
            kind = m.lastindex
            if kind == 1:
                depth += 1
            elif kind == 2:
                depth -= 1
                if depth == 0:
                    return m.end()
            elif kind == 3:
                self.in_string = True
                self.escape = _STRING_REST.match(text, m.end()).end() < n  # type: ignore[union-attr]
                break
            else:
                break
        self.depth = depth
        return -1


class RowParser:
    """Feed me a JSON body in chunks; I call ``on_row(element)`` for each element of ``array``.

    ``array`` names the top-level member holding the rows (``"rows"`` for
    views and ``_all_docs``, ``"docs"`` for ``_find``, ``"results"`` for
    ``_changes``).  Elements are decoded like :func:`corduroy.codec.decode`
    does (objects become :class:`~corduroy.document.Document`).
    :meth:`feed` accepts chunks cut anywhere; :meth:`close` checks the body
    was complete and returns the other top-level members as a dict.  Both
    raise :class:`RowParseError` (a ValueError) on invalid or truncated
    input.  An exception raised by ``on_row`` propagates out of :meth:`feed`.
    """

    __slots__ = (
        "array", "on_row", "rows", "error", "_state", "_fields", "_name", "_rest", "_pieces",
        "_decoder", "_found", "_closed",
    )

    def __init__(self, array: str = "rows", on_row: Optional[Callable[[Any], Any]] = None) -> None:
        if not isinstance(array, str) or not array:
            raise TypeError("array must name a top-level member (a non-empty str), got %s" % describe(array))
        if on_row is not None and not callable(on_row):
            raise TypeError("on_row must be callable, got %s" % type_name(on_row))
        self.array = array
        self.on_row = on_row
        #: How many elements have been handed to ``on_row`` so far.
        self.rows = 0
        #: The RowParseError this parser raised, once it has.
        self.error: Optional[RowParseError] = None
        self._state = _BEFORE
        self._fields: Dict[str, Any] = Document()
        self._name: Any = None
        # While a value is cut by the end of the text: what finds its end, and
        # the pieces of text from its first character on.
        self._rest: Optional[_Rest] = None
        self._pieces: List[str] = []
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._found = False
        self._closed = False

    # -- feeding ---------------------------------------------------------
    def feed(self, chunk: bytes) -> None:
        """Parse the next piece of the body; call ``on_row`` for each element it completes."""
        if self.error is not None:
            raise self.error
        if self._closed:
            raise self._fail("data fed after close()")
        if not chunk:
            return
        try:
            piece = self._decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise self._fail("the body is not UTF-8 (%s)" % exc) from None
        if not piece:
            return
        rest = self._rest
        if rest is not None:
            # A value was cut: look for its end in the new text only.
            pieces = self._pieces
            pieces.append(piece)
            if rest.end(piece, 0) < 0:
                return
            self._rest = None
            self._pieces = []
            text = "".join(pieces)
        else:
            text = piece
        try:
            self._run(text, 0)
        except BaseException:
            if self.error is None:  # on_row raised: where the walk stopped is lost
                self.error = RowParseError("on_row raised an exception; the parser cannot go on")
            raise

    def _run(self, text: str, idx: int) -> None:
        """Walk ``text`` from ``idx`` (a token boundary) to its end."""
        n = len(text)
        ws = _WS.match
        fields = self._fields
        while True:
            idx = ws(text, idx).end()  # type: ignore[union-attr]
            if idx >= n:
                return
            state = self._state
            if state == _ELEMENT or state == _FIRST_ELEMENT or state == _SEPARATOR:
                idx = self._elements(text, idx)
                if idx < 0:
                    return
                continue
            c = text[idx]
            if state == _VALUE:
                if c == "[" and self._name == self.array:
                    self._found = True
                    fields[self._name] = None  # keeps the member order; removed by close()
                    self._state = _FIRST_ELEMENT
                    idx += 1
                    continue
                value, idx = self._value(text, idx)
                if idx < 0:
                    return
                fields[self._name] = value
                self._state = _AFTER
            elif state == _AFTER:
                if c == ",":
                    self._state = _KEY
                elif c == "}":
                    self._state = _DONE
                else:
                    raise self._fail("expected ',' or '}' after the member %r, found %r"
                                     % (self._name, text[idx:idx + 20]))
                idx += 1
            elif state == _KEY or state == _FIRST_KEY:
                if c == '"':
                    name, idx = self._value(text, idx)
                    if idx < 0:
                        return
                    self._name = name
                    self._state = _COLON
                    continue
                if c == "}" and state == _FIRST_KEY:
                    self._state = _DONE
                    idx += 1
                    continue
                raise self._fail("expected a member name, found %r" % text[idx:idx + 20])
            elif state == _COLON:
                if c != ":":
                    raise self._fail("expected ':' after the member name %r" % (self._name,))
                self._state = _VALUE
                idx += 1
            elif state == _BEFORE:
                if c != "{":
                    raise self._fail("the body is not a JSON object (it starts with %r)" % text[idx:idx + 20])
                self._state = _FIRST_KEY
                idx += 1
            else:  # _DONE
                raise self._fail("unexpected data after the end of the JSON object: %r" % text[idx:idx + 20])

    def _value(self, text: str, idx: int) -> Tuple[Any, int]:
        """Decode the value at ``idx``: (value, end), or (None, -1) if it goes past the text."""
        try:
            value, end = _scan_once(text, idx)
        except (_DecodeError, StopIteration) as exc:
            self._cut(text, idx, exc)
            return None, -1
        if type(value) in _NUMBERS and _LITERAL_END.search(text, end) is None:  # more may follow
            self._rest = _Rest("0")
            self._pieces = [text[idx:]]
            return None, -1
        return value, end

    def _cut(self, text: str, idx: int, exc: BaseException) -> None:
        """The value at ``idx`` did not decode: wait for the rest of it, or raise if it is complete."""
        rest = _Rest(text[idx])
        if rest.end(text, idx) >= 0:  # it is all there: really invalid
            where = "in the %r array after element %d" % (self.array, self.rows) \
                if self._state == _ELEMENT else "in the top-level object"
            pos = getattr(exc, "pos", idx)
            pos = pos if isinstance(pos, int) else idx
            raise self._fail("invalid JSON %s: %s near %r"
                             % (where, getattr(exc, "msg", exc), text[max(idx, pos - 20):pos + 20]))
        self._rest = rest
        self._pieces = [text[idx:]]

    def _elements(self, text: str, idx: int) -> int:
        """The hot loop: elements of the array from ``idx``; returns where the walk goes on, or -1."""
        state = self._state
        if state == _SEPARATOR:
            c = text[idx]
            if c == "]":
                self._state = _AFTER
                return idx + 1
            if c != ",":
                raise self._fail("expected ',' or ']' after element %d of the %r array, found %r"
                                 % (self.rows, self.array, text[idx:idx + 20]))
            idx = _WS.match(text, idx + 1).end()  # type: ignore[union-attr]
            self._state = _ELEMENT
            if idx >= len(text):
                return -1
        elif state == _FIRST_ELEMENT and text[idx] == "]":
            self._state = _AFTER
            return idx + 1
        self._state = _ELEMENT
        n = len(text)
        scan = _scan_once
        after = _AFTER_ELEMENT.match
        on_row = self.on_row
        while True:
            try:
                row, end = scan(text, idx)
            except (_DecodeError, StopIteration) as exc:
                self._cut(text, idx, exc)
                return -1
            if type(row) in _NUMBERS and _LITERAL_END.search(text, end) is None:  # more may follow
                self._rest = _Rest("0")
                self._pieces = [text[idx:]]
                return -1
            self.rows += 1
            if on_row is not None:
                on_row(row)
            m = after(text, end)
            kind = m.lastindex  # type: ignore[union-attr]
            idx = m.end()  # type: ignore[union-attr]
            if kind == 1:
                if idx >= n:
                    return -1
            elif kind == 2:
                self._state = _AFTER
                return idx
            else:
                self._state = _SEPARATOR
                if idx >= n:
                    return -1
                raise self._fail("expected ',' or ']' after element %d of the %r array, found %r"
                                 % (self.rows, self.array, text[idx:idx + 20]))

    # -- finishing -------------------------------------------------------
    def close(self) -> Dict[str, Any]:
        """Check the body was complete; return its other top-level members.

        Raises :class:`RowParseError` if the body was cut short, or never
        held the array.
        """
        if self.error is not None:
            raise self.error
        self._closed = True
        try:
            self._decoder.decode(b"", True)
        except UnicodeDecodeError:
            raise self._fail("the body ends in the middle of a UTF-8 character") from None
        state = self._state
        if state != _DONE:
            if state == _BEFORE and self._rest is None:
                raise self._fail("the response body is empty")
            if state in (_FIRST_ELEMENT, _ELEMENT, _SEPARATOR):
                raise self._fail("the body ended inside the %r array (after element %d)"
                                 % (self.array, self.rows))
            raise self._fail("the body ended before the end of the JSON object")
        if not self._found:
            raise self._fail("the response has no top-level %r array" % self.array)
        fields = self._fields
        fields.pop(self.array, None)
        return fields

    def _fail(self, message: str) -> RowParseError:
        self.error = RowParseError(message)
        return self.error

    def __repr__(self) -> str:
        return "<RowParser %r: %d rows>" % (self.array, self.rows)


def stream_rows(
    db: Any,
    method: str,
    path: str,
    params: Optional[Dict[str, Any]] = None,
    json: Any = None,
    on_row: Optional[Callable[[Any], Any]] = None,
    array: str = "rows",
    make_row: Optional[Callable[[Any], Any]] = None,
) -> Operation:
    """Send a request whose answer is streamed: ``on_row`` gets each element of ``array``.

    ``db`` is a :class:`~corduroy.database.Database` (``path`` is relative to
    it, quoted).  Each element is passed through ``make_row`` if given.  The
    returned Operation completes with the other top-level members (for a
    view: ``total_rows``, ``offset``...).  An HTTP error fails it with its
    usual exception; a body that is not the expected JSON with
    :class:`~corduroy.exceptions.BadResponse`; an exception raised by
    ``on_row`` aborts the transfer and fails it with that exception.
    """
    if on_row is None or not callable(on_row):
        raise TypeError("on_row must be callable, got %s" % type_name(on_row))
    if make_row is not None and not callable(make_row):
        raise TypeError("make_row must be callable, got %s" % type_name(make_row))
    if make_row is None:
        deliver = on_row
    else:
        def deliver(row: Any) -> None:
            on_row(make_row(row))

    parser = RowParser(array, deliver)
    url = db.url + path

    def bad(exc: RowParseError, code: Optional[int]) -> BadResponse:
        return BadResponse(reason=str(exc), code=code, method=method, url=url)

    def on_chunk(chunk: bytes) -> None:
        try:
            parser.feed(chunk)
        except RowParseError as exc:
            if exc is parser.error:
                raise bad(exc, None) from None
            raise

    def finished(data: Any, status: Status) -> Dict[str, Any]:
        try:
            return parser.close()
        except RowParseError as exc:
            raise bad(exc, status.code) from None

    return db._request(method, path, params=params, json=json, on_chunk=on_chunk, transform=finished)
