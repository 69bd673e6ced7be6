"""multipart/related: a document and its attachments in one request, or in one answer.

CouchDB takes ``PUT /{db}/{docid}`` with ``Content-Type: multipart/related``:
the first part is the document's JSON, whose ``_attachments`` entries say
``"follows": true`` (with ``content_type`` and ``length``); each attachment's
bytes follow as the next parts, in the same order.  Asked for
``GET /{db}/{docid}?attachments=true`` with ``Accept: multipart/related``, it
answers the same way.  Both directions stream here: :func:`build_body` makes
an :class:`~corduroy.attachment_streams.UploadSource` that reads each
attachment's file or iterator as the upload goes, and :class:`MultipartReader`
splits an answer into parts chunk by chunk.
"""
from __future__ import annotations

import base64
import uuid
import zlib
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from loop.redact import describe, type_name

from . import codec
from .attachment_streams import DownloadSink, Progress, UploadSource, file_name, is_file, is_streamable

__all__ = ["streamed_attachments", "build_body", "MultipartReader", "AttachmentsAnswer", "MalformedAnswer"]


class MalformedAnswer(ValueError):
    """A multipart answer that cannot be read (no boundary, cut short, parts the document does not list)."""

_READ_SIZE = 256 * 1024
_BYTES_LIKE = (bytes, bytearray, memoryview)


def _is_content(value: Any) -> bool:
    """True for attachment content that goes in a multipart part, not in the JSON."""
    return isinstance(value, _BYTES_LIKE) or is_streamable(value)


def streamed_attachments(doc: dict) -> bool:
    """True if ``doc["_attachments"]`` holds content to send as parts (bytes, a file, an iterator).

    Such an entry is the content itself, or a dict whose ``data`` is (with
    optional ``content_type`` and ``length``).  Stubs and base64 ``data``
    strings stay in the JSON as usual.
    """
    attachments = doc.get("_attachments")
    if not isinstance(attachments, dict):
        return False
    for value in attachments.values():
        if isinstance(value, dict):
            value = value.get("data")
        if _is_content(value):
            return True
    return False


class _Part:
    __slots__ = ("name", "source", "content_type", "length")

    def __init__(self, name: str, source: UploadSource, content_type: str, length: int) -> None:
        self.name = name
        self.source = source
        self.content_type = content_type
        self.length = length


def build_body(doc: dict, progress: Optional[Progress] = None) -> Tuple[UploadSource, str, Dict[str, dict]]:
    """The multipart/related body saving ``doc`` with its attachments: ``(source, content_type, stubs)``.

    Every check is made here, before any I/O: each attachment's content
    (a closed file, a negative length...) and the document's JSON.  Each
    attachment's length must be known (bytes, a seekable file, a list of
    chunks, or ``length`` given for an iterator or a text file): CouchDB
    reads each part by the length the document gives.  ``stubs`` are the
    ``_attachments`` entries to put in ``doc`` once it is saved.
    """
    from .attachments import _check_content_type, _check_filename

    attachments = doc["_attachments"]
    described: Dict[str, Any] = {}
    parts: List[_Part] = []
    stubs: Dict[str, dict] = {}
    for name, value in attachments.items():
        _check_filename(name)
        spec = value if isinstance(value, dict) else {"data": value}
        data = spec.get("data")
        if not _is_content(data):
            described[name] = value  # a stub, or base64 data: as it is
            continue
        unknown = set(spec) - {"data", "content_type", "length"}
        if unknown:
            raise ValueError("attachment %s: %s cannot go with content to stream (data, content_type, length only)"
                             % (describe(name), ", ".join(sorted(unknown))))
        guess_from = name
        if is_file(data) and file_name(data):
            guess_from = file_name(data) or name
        content_type = _check_content_type(spec.get("content_type"), guess_from)
        source = UploadSource(data, spec.get("length"), what="attachment %s" % describe(name))
        if source.length is None:
            raise ValueError("attachment %s: its length is not known (an iterator or a text file); give it as "
                             "{'data': ..., 'length': n}, since CouchDB reads each part by its length"
                             % describe(name))
        parts.append(_Part(name, source, content_type, source.length))
        described[name] = {"follows": True, "content_type": content_type, "length": source.length}
        stubs[name] = {"stub": True, "content_type": content_type, "length": source.length}
    json_doc = dict(doc)
    json_doc["_attachments"] = described
    what = "document %s" % describe(doc["_id"]) if doc.get("_id") is not None else "document"
    body_json = codec.encode(json_doc, what)
    boundary = uuid.uuid4().hex
    opening = b"--" + boundary.encode("ascii") + b"\r\nContent-Type: application/json\r\n\r\n" + body_json
    separator = b"\r\n--" + boundary.encode("ascii") + b"\r\n\r\n"
    closing = b"\r\n--" + boundary.encode("ascii") + b"--"
    total = len(opening) + len(closing) + sum(len(separator) + part.length for part in parts)

    def pieces() -> Iterator[bytes]:
        yield opening
        for part in parts:
            yield separator
            source = part.source
            source.start()
            while True:
                data = source.read(_READ_SIZE)
                if source.failure is not None:
                    raise source.failure
                if not data:
                    break
                yield data
        yield closing

    body = UploadSource(pieces(), total, progress, what="the multipart body")
    after = {name: stubs.get(name, value) for name, value in described.items()}
    return body, 'multipart/related; boundary="%s"' % boundary, after


# -- reading a multipart answer ------------------------------------------------------
class MultipartReader:
    """Splits a multipart body into parts as its chunks arrive.

    ``on_part(headers)`` is called at the start of each part (``headers`` a
    dict, lower-case names) and returns the function that receives that
    part's bytes, chunk by chunk.  :meth:`close` raises ValueError if the
    body ended before its closing delimiter.

    Example::

        reader = MultipartReader(b"abc", on_part)
        reader.feed(b"--abc\\r\\nContent-Type: text/plain\\r\\n\\r\\nhello\\r\\n--abc--")
        reader.close()
    """

    def __init__(self, boundary: bytes, on_part: Callable[[Dict[str, str]], Callable[[bytes], Any]]) -> None:
        self._delimiter = b"\r\n--" + boundary
        self._on_part = on_part
        self._buffer = bytearray(b"\r\n")  # so the first delimiter looks like every other
        self._state = 0  # 0: before a delimiter (preamble), 1: after one, 2: headers, 3: body, 4: done
        self._sink: Optional[Callable[[bytes], Any]] = None

    @property
    def done(self) -> bool:
        """True once the closing delimiter was read."""
        return self._state == 4

    def feed(self, chunk: bytes) -> None:
        """Take the next piece of the body."""
        if self._state == 4:
            return
        buffer = self._buffer
        buffer += chunk
        delimiter = self._delimiter
        while True:
            state = self._state
            if state == 0 or state == 3:
                at = buffer.find(delimiter)
                if at < 0:
                    keep = len(delimiter) - 1
                    if state == 3 and len(buffer) > keep:
                        self._sink(bytes(buffer[:len(buffer) - keep]))  # type: ignore[misc]
                        del buffer[:len(buffer) - keep]
                    elif state == 0 and len(buffer) > keep:
                        del buffer[:len(buffer) - keep]
                    return
                if state == 3 and at:
                    self._sink(bytes(buffer[:at]))  # type: ignore[misc]
                del buffer[:at + len(delimiter)]
                self._state = 1
            elif state == 1:
                if len(buffer) < 2:
                    return
                if buffer[:2] == b"--":
                    self._state = 4
                    del buffer[:]
                    return
                end = buffer.find(b"\r\n")
                if end < 0:
                    return
                del buffer[:end + 2]
                self._state = 2
            elif state == 2:
                if buffer[:2] == b"\r\n":
                    head, rest = b"", 2
                else:
                    end = buffer.find(b"\r\n\r\n")
                    if end < 0:
                        return
                    head, rest = bytes(buffer[:end]), end + 4
                del buffer[:rest]
                self._sink = self._on_part(_parse_headers(head))
                self._state = 3
            else:
                return

    def close(self) -> None:
        """The body ended: it must have been complete."""
        if self._state != 4:
            raise MalformedAnswer("the multipart answer ended before its closing delimiter")


def _parse_headers(head: bytes) -> Dict[str, str]:
    headers: Dict[str, str] = {}
    for line in head.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return headers


def _param(header: str, name: str) -> Optional[str]:
    """Parameter ``name`` of a header value (``multipart/related; boundary="x"``)."""
    for piece in header.split(";")[1:]:
        key, sep, value = piece.strip().partition("=")
        if sep and key.strip().lower() == name:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            return value
    return None


class AttachmentsAnswer:
    """The consumer of a ``GET ?attachments=true`` answer, multipart or JSON.

    The document's JSON goes to :attr:`doc`; each attachment's bytes go to
    ``into(name, stub)`` when given (a binary file object or a function of
    each chunk, or None to keep the bytes), else into the stub's ``data``
    as bytes.  A JSON answer (a server that ignores ``Accept:
    multipart/related``) has base64 ``data``, which is decoded the same way.
    """

    def __init__(self, into: Optional[Callable[[str, dict], Any]] = None) -> None:
        if into is not None and not callable(into):
            raise TypeError("into= is a function of (name, stub) returning a binary file object, a function of "
                            "each chunk, or None; not %s" % type_name(into))
        self.into = into
        self.request: Any = None
        self.doc: Any = None
        self._reader: Optional[MultipartReader] = None
        self._json: Optional[List[bytes]] = None
        self._names: List[str] = []
        self._kept: Dict[str, List[bytes]] = {}
        self.sinks: List[DownloadSink] = []

    def __call__(self, chunk: bytes) -> None:
        reader = self._reader
        if reader is None and self._json is None:
            reader = self._begin()
        if reader is not None:
            reader.feed(chunk)
        else:
            self._json.append(chunk)  # type: ignore[union-attr]

    def _begin(self) -> Optional[MultipartReader]:
        content_type = _header(self.request.header_lines, b"content-type:") if self.request is not None else ""
        kind = content_type.split(";", 1)[0].strip().lower()
        if kind.startswith("multipart/"):
            boundary = _param(content_type, "boundary")
            if not boundary:
                raise MalformedAnswer("a multipart answer without a boundary: %s" % describe(content_type))
            self._reader = MultipartReader(boundary.encode("latin-1"), self._part)
            return self._reader
        self._json = []
        return None

    def _part(self, headers: Dict[str, str]) -> Callable[[bytes], Any]:
        if self._json is not None:  # the document's part just ended
            self._set_doc(b"".join(self._json))
            self._json = None
        if self.doc is None:  # the first part: the document
            pieces: List[bytes] = []
            self._json = pieces
            return pieces.append
        name = _filename(headers.get("content-disposition", ""))
        if name is None:
            if not self._names:
                raise MalformedAnswer("the answer has more parts than the document has attachments")
            name = self._names.pop(0)
        elif name in self._names:
            self._names.remove(name)
        sink = self._sink_for(name)
        encoding = headers.get("content-encoding", "identity").lower()
        if encoding == "identity":
            return sink
        if encoding != "gzip":
            raise MalformedAnswer("attachment %s came %s-encoded, which corduroy cannot decode"
                                  % (describe(name), encoding))
        # CouchDB sends a compressible attachment as it stores it (gzip): hand over the content itself.
        stub = self.doc["_attachments"][name]
        stub.pop("encoding", None)
        stub.pop("encoded_length", None)
        unpack = zlib.decompressobj(31)

        def gunzip(chunk: bytes) -> None:
            data = unpack.decompress(chunk)
            if data:
                sink(data)
        return gunzip

    def _set_doc(self, body: bytes) -> None:
        try:
            doc = codec.decode(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedAnswer("the document part is not JSON: %s" % exc) from None
        if not isinstance(doc, dict):
            raise MalformedAnswer("the document part is not a JSON object")
        self.doc = doc
        attachments = doc.get("_attachments") or {}
        self._names = [name for name, stub in attachments.items() if isinstance(stub, dict) and stub.get("follows")]

    def _sink_for(self, name: str) -> Callable[[bytes], Any]:
        stub = (self.doc.get("_attachments") or {}).get(name)
        if stub is None:
            raise MalformedAnswer("the answer has a part for %s, which the document does not list" % describe(name))
        target = self.into(name, stub) if self.into is not None else None
        if target is None:
            kept = self._kept[name] = []
            return kept.append
        sink = DownloadSink(target, what="into(%s)" % describe(name))
        self.sinks.append(sink)
        return sink

    def finish(self) -> Any:
        """The document, once the whole answer was read (stubs with ``data`` bytes, or as written to ``into``)."""
        if self._reader is not None:
            self._reader.close()
            if self.doc is None and self._json is not None:
                self._set_doc(b"".join(self._json))
        elif self._json is not None:
            self._set_doc(b"".join(self._json))
            for name, stub in (self.doc.get("_attachments") or {}).items():
                data = stub.get("data") if isinstance(stub, dict) else None
                if isinstance(data, str):
                    raw = base64.b64decode(data)
                    target = self.into(name, stub) if self.into is not None else None
                    if target is None:
                        self._kept[name] = [raw]
                    else:
                        del stub["data"]
                        DownloadSink(target, what="into(%s)" % describe(name))(raw)
        doc = self.doc
        if doc is None:
            raise MalformedAnswer("the answer held no document")
        for name, stub in (doc.get("_attachments") or {}).items():
            if not isinstance(stub, dict):
                continue
            stub.pop("follows", None)
            if name in self._kept:
                stub["data"] = b"".join(self._kept[name])
        return doc

    def undo(self) -> None:
        """After a failure: truncate the files written so far."""
        for sink in self.sinks:
            sink.undo()


def _header(header_lines: Any, name: bytes) -> str:
    size = len(name)
    for line in reversed(header_lines or ()):
        if line[:5] == b"HTTP/":
            break
        if line[:size].lower() == name:
            return line[size:].strip().decode("latin-1")
    return ""


def _filename(disposition: str) -> Optional[str]:
    """The ``filename`` of a ``Content-Disposition`` header (CouchDB names each attachment part)."""
    value = _param(disposition, "filename") if disposition else None
    if value is None:
        return None
    return value.encode("latin-1").decode("utf-8", "replace")
