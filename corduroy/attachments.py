"""Attachments: put, get and delete (streamed from and into files, see :mod:`corduroy.attachment_streams`).

An attachment's name is quoted as one path segment, ``/`` included (``a/b.txt``
is sent as ``a%2Fb.txt``): CouchDB decodes each segment and joins the rest of
the path with ``/``, so both spellings name the same attachment, and quoting
keeps a name from ever reaching another path.
"""
from __future__ import annotations

import mimetypes
import uuid
from typing import IO, TYPE_CHECKING, Any, Callable, Dict, Generator, List, Optional, Union, overload

from loop import Status, get_reactor
from loop.redact import describe, redact_url

from .attachment_streams import AttachmentChunks, DownloadSink, Progress, UploadSource, file_name, is_file
from .conflicts import ConflictResolution
from .contract import io_methods
from .exceptions import BadResponse
from .http import CouchOperation, finish
from .multipart import AttachmentsAnswer, MalformedAnswer, build_body
from .results import DataCallback, IntResult
from .urls import doc_path, quote_segment

if TYPE_CHECKING:  # pragma: no cover
    from loop import Operation

    from .document import Document
    from .http import Server

    class BytesResult(bytes):
        """Bytes; awaitable to bytes (for type checkers only, like :mod:`corduroy.results`)."""

        def __await__(self) -> Generator[Any, None, bytes]: ...
else:
    #: ``bytes`` at run time: what a blocking ``get_attachment`` returns (see :mod:`corduroy.results`).
    BytesResult = bytes

#: Where ``get_attachment(..., into=)`` writes: a binary file object, or a function of each chunk.
Into = Union[IO[bytes], Callable[[bytes], Any]]

__all__ = ["AttachmentsMixin", "guess_content_type"]

Callback = Optional[Callable[[Any, Status], Any]]

#: The content type of an attachment whose type cannot be guessed.
DEFAULT_CONTENT_TYPE = "application/octet-stream"

#: Types for names that :mod:`mimetypes` reports as compressed (``x.tar.gz``).
_ENCODING_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "compress": "application/x-compress",
    "br": "application/x-brotli",
}


def guess_content_type(filename: str) -> str:
    """The MIME type for ``filename`` guessed from its extension (``application/octet-stream`` if unknown).

    >>> guess_content_type("photo.png")
    'image/png'
    >>> guess_content_type("backup.tar.gz")
    'application/gzip'
    """
    kind, encoding = mimetypes.guess_type(filename, strict=False)
    if encoding is not None:
        return _ENCODING_TYPES.get(encoding, DEFAULT_CONTENT_TYPE)
    return kind or DEFAULT_CONTENT_TYPE


def _read_content(content: Union[bytes, bytearray, memoryview, str]) -> bytes:
    """In-memory content as bytes (a str as UTF-8)."""
    if isinstance(content, str):
        return content.encode("utf-8")
    return bytes(content)


def _check_filename(filename: Any) -> str:
    if not isinstance(filename, str):
        raise TypeError("an attachment is named by a str, not %s" % type(filename).__name__)
    if not filename:
        raise ValueError("an attachment name cannot be empty")
    if filename.startswith("_"):
        raise ValueError("attachment names cannot start with '_' (CouchDB refuses %s)" % describe(filename))
    return filename


def _doc_id(id_or_doc: Any, what: str) -> str:
    doc_id: Any
    if isinstance(id_or_doc, str):
        doc_id = id_or_doc
    elif isinstance(id_or_doc, dict):
        doc_id = id_or_doc.get("_id")
        if not doc_id:
            raise ValueError("%s needs a document with an _id" % what)
    else:
        raise TypeError("%s takes a document id or a dict with an _id, not %s" % (what, type(id_or_doc).__name__))
    if not isinstance(doc_id, str) or not doc_id:
        raise TypeError("document ids are non-empty strings, got %s" % describe(doc_id))
    return doc_id


def _check_content_type(content_type: Any, filename: str) -> str:
    """``content_type`` checked (one header value), or guessed from ``filename``."""
    if content_type is None:
        return guess_content_type(filename)
    if not isinstance(content_type, str) or not content_type.strip():
        raise TypeError("content_type must be a non-empty str such as 'text/plain'")
    if "\r" in content_type or "\n" in content_type:
        raise ValueError("content_type cannot contain line breaks")
    return content_type.strip()


def _updating(doc: dict, upload: Optional[UploadSource] = None) -> Callable[[Any, Status], Any]:
    """A transform that copies the new ``rev`` of an answer into ``doc`` (and lets go of a streamed body)."""

    def applied(data: Any, status: Status) -> Any:
        if upload is not None:
            upload.close()
        if isinstance(data, dict) and data.get("rev"):
            doc["_rev"] = data["rev"]
        return data

    return applied


@io_methods
class AttachmentsMixin:
    """Database methods: put, get and delete attachments."""

    if TYPE_CHECKING:  # provided by Database
        server: Server

        def _request(self, method: str, path: str = "", **kwargs: Any) -> Operation: ...

    @overload
    def put_attachment(self, doc: dict, content: Union[bytes, str, Any], filename: Optional[str] = None,
                       content_type: Optional[str] = None, callback: None = None,
                       length: Optional[int] = None, progress: Optional[Progress] = None) -> Document: ...

    @overload
    def put_attachment(self, doc: dict, content: Union[bytes, str, Any], filename: Optional[str] = None,
                       content_type: Optional[str] = None, callback: DataCallback[Document] = ...,
                       length: Optional[int] = None, progress: Optional[Progress] = None) -> Operation[Document]: ...

    def put_attachment(self, doc: dict, content: Union[bytes, str, Any], filename: Optional[str] = None,
                       content_type: Optional[str] = None, callback: Callback = None,
                       length: Optional[int] = None, progress: Optional[Progress] = None) -> Any:
        """Create or replace attachment ``filename`` of ``doc``; returns ``{ok, id, rev}``.

        ``content`` is bytes, a str (sent as UTF-8), a file object (binary or
        text) or an iterator of ``bytes`` chunks.  Files and iterators are
        streamed: read piece by piece as the upload goes, so memory stays flat
        whatever the size.  A seekable binary file is sent from its current
        position to its end (``Content-Length``); a text file or an iterator
        is sent chunked (``Transfer-Encoding: chunked``) unless ``length``
        says how many bytes it gives.  ``length`` is then checked: more or
        fewer bytes than it says fail the request before its last byte is
        sent, so nothing is stored.  ``progress(sent, total)`` is called as
        the body goes out (``total``: the length, or None).

        A file's name (its basename) is used when ``filename`` is not given.
        ``content_type`` is guessed from the name when not given
        (``application/octet-stream`` if unknown).  ``doc`` needs an ``_id``,
        and its current ``_rev`` if it exists; its ``_rev`` is updated in
        place.  Raises Conflict on a stale ``_rev``.  A closed file, a
        negative length or a list with a non-bytes chunk is an error before
        anything is sent.  A streamed body from an iterator is never sent
        twice (no retry once it was read); a file is rewound for a resend.

        >>> db.put_attachment(doc, b"\\x89PNG...", "logo.png")     # doctest: +SKIP
        {'ok': True, 'id': 'home', 'rev': '2-...'}
        >>> with open("disk.iso", "rb") as fh:                    # doctest: +SKIP
        ...     db.put_attachment(doc, fh, progress=lambda sent, total: print(sent, total))
        """
        if not isinstance(doc, dict):
            raise TypeError("put_attachment needs the document (a dict with _id and _rev), not %s"
                            % type(doc).__name__)
        doc_id = _doc_id(doc, "put_attachment")
        body: Optional[bytes] = None
        upload: Optional[UploadSource] = None
        if length is None and progress is None and isinstance(content, (bytes, bytearray, memoryview, str)):
            body = _read_content(content)
        else:
            if filename is None and is_file(content):
                filename = file_name(content)
            upload = UploadSource(content, length, progress, what="the attachment's content")
        if filename is None:
            raise ValueError("put_attachment needs a filename for bytes, str or iterator content")
        _check_filename(filename)
        content_type = _check_content_type(content_type, filename)
        params = {"rev": doc["_rev"]} if doc.get("_rev") else None
        path = "/" + doc_path(doc_id) + "/" + quote_segment(filename)
        if upload is None:
            headers = self.server.headers_with("Content-Type: " + content_type, "Expect:")
            return finish(self._request("PUT", path, params=params, body=body, headers=headers,
                                        transform=_updating(doc)), callback)
        # No "Expect:" override: libcurl asks for "100 Continue" before a big or chunked
        # body, so a server that refuses the request at once spares us sending it.
        headers = self.server.headers_with("Content-Type: " + content_type)
        return finish(self._request("PUT", path, params=params, upload=upload, headers=headers,
                                    transform=_updating(doc, upload)), callback)

    @overload
    def get_attachment(self, id_or_doc: Union[str, dict], filename: str, callback: None = None,
                       into: None = None, progress: Optional[Progress] = None, **options: Any) -> BytesResult: ...

    @overload
    def get_attachment(self, id_or_doc: Union[str, dict], filename: str, callback: None = None, *,
                       into: Into, progress: Optional[Progress] = None, **options: Any) -> IntResult: ...

    @overload
    def get_attachment(self, id_or_doc: Union[str, dict], filename: str, callback: DataCallback[bytes] = ...,
                       into: None = None, progress: Optional[Progress] = None,
                       **options: Any) -> Operation[bytes]: ...

    @overload
    def get_attachment(self, id_or_doc: Union[str, dict], filename: str, callback: DataCallback[int] = ..., *,
                       into: Into, progress: Optional[Progress] = None, **options: Any) -> Operation[int]: ...

    def get_attachment(self, id_or_doc: Union[str, dict], filename: str, callback: Callback = None,
                       into: Any = None, progress: Optional[Progress] = None, **options: Any) -> Any:
        """The content (bytes) of attachment ``filename`` of a document given by id or as a dict.

        ``into``: stream the content into a binary file object, or hand each
        chunk (bytes) to a function, instead of holding it in memory; the
        call then returns the number of bytes received.  If the transfer
        fails half way, a seekable file is truncated back to where it was.
        ``progress(received, total)`` is called after each chunk (``total``:
        the Content-Length, or None when not known).  Raises NotFound if the
        document or the attachment is missing (nothing is written to
        ``into`` then).  Options: ``rev`` (the attachment as of that
        revision).

        >>> with open("copy.iso", "wb") as fh:                     # doctest: +SKIP
        ...     db.get_attachment("disk", "image.iso", into=fh)
        734003200
        """
        doc_id = _doc_id(id_or_doc, "get_attachment")
        _check_filename(filename)
        path = "/" + doc_path(doc_id) + "/" + quote_segment(filename)
        if into is None and progress is None:
            return finish(self._request("GET", path, params=options or None, raw=True), callback)
        parts: List[bytes] = []
        sink = DownloadSink(parts.append if into is None else into, progress)
        op = CouchOperation(get_reactor())

        def done(data: Any, status: Status) -> None:
            if status.exception is not None:
                sink.undo()
                op.complete(None, status)
                return
            op.complete(b"".join(parts) if into is None else sink.received, status)

        request = self._request("GET", path, params=options or None, on_chunk=sink)
        sink.request = request._cancel  # the loop Request: its Content-Length feeds progress()
        request.add_callback(done)
        op._cancel = request.cancel
        return finish(op, callback)

    def iter_attachment(self, id_or_doc: Union[str, dict], filename: str, buffer_size: int = 1024 * 1024,
                        progress: Optional[Progress] = None, **options: Any) -> AttachmentChunks:
        """The content of attachment ``filename`` as an iterator of ``bytes`` chunks, streamed.

        ``for chunk in db.iter_attachment(...)`` blocks (no reactor running);
        ``async for`` in asyncio code; ``chunk = yield chunks.next()`` in
        ``@relax`` code (None after the last chunk).  Nothing is sent until
        the first chunk is asked for; at most ``buffer_size`` bytes wait in
        memory (the transfer pauses until they are consumed).  See
        :class:`~corduroy.attachment_streams.AttachmentChunks`.  Options:
        ``rev``.

        >>> for chunk in db.iter_attachment("disk", "image.iso"):      # doctest: +SKIP
        ...     digest.update(chunk)
        """
        doc_id = _doc_id(id_or_doc, "iter_attachment")
        _check_filename(filename)
        path = "/" + doc_path(doc_id) + "/" + quote_segment(filename)
        return AttachmentChunks(self, path, options or None, buffer_size, progress)

    @overload
    def get_with_attachments(self, id_or_doc: Union[str, dict], callback: None = None,
                             into: Optional[Callable[[str, dict], Any]] = None, **options: Any) -> Document: ...

    @overload
    def get_with_attachments(self, id_or_doc: Union[str, dict], callback: DataCallback[Document] = ...,
                             into: Optional[Callable[[str, dict], Any]] = None,
                             **options: Any) -> Operation[Document]: ...

    def get_with_attachments(self, id_or_doc: Union[str, dict], callback: Callback = None,
                             into: Optional[Callable[[str, dict], Any]] = None, **options: Any) -> Any:
        """A document with the content of its attachments, in one request streamed as multipart/related.

        Sends ``GET /{db}/{docid}?attachments=true`` with ``Accept:
        multipart/related``: CouchDB answers the JSON and then each
        attachment as raw bytes (no base64).  Each stub in the returned
        document's ``_attachments`` gets ``data`` (bytes), unless
        ``into(name, stub)`` returns where that attachment goes instead: a
        binary file object or a function of each chunk (None: keep the bytes
        in ``data``).  A server that answers JSON (base64) gives the same
        result.  Options as for :meth:`get` (``rev``, ``atts_since``...);
        ``open_revs`` is not supported here.

        >>> def into(name, stub):                                      # doctest: +SKIP
        ...     return open("out/" + name, "wb")
        >>> doc = db.get_with_attachments("dune", into=into)           # doctest: +SKIP
        """
        doc_id = _doc_id(id_or_doc, "get_with_attachments")
        if "open_revs" in options:
            raise ValueError("get_with_attachments reads one revision; open_revs is not supported here")
        answer = AttachmentsAnswer(into)
        params = dict(options)
        params["attachments"] = True
        headers = [line for line in self.server.headers_plain if not line.lower().startswith("accept:")]
        headers.append("Accept: multipart/related, application/json")
        op = CouchOperation(get_reactor())

        def done(data: Any, status: Status) -> None:
            if status.exception is None:
                try:
                    op.complete(answer.finish(), status)
                    return
                except MalformedAnswer as exc:
                    status = Status(status.code, exception=BadResponse(
                        reason="unexpected answer: %s" % exc, code=status.code, method="GET",
                        url=redact_url(answer.request.url)), header_lines=None)
                except Exception as exc:  # raised by into(), or by writing to what it gave
                    status = Status(status.code, exception=exc, header_lines=None)
            answer.undo()
            op.complete(None, status)

        request = self._request("GET", "/" + doc_path(doc_id), params=params, headers=headers, on_chunk=answer)
        answer.request = request._cancel  # the loop Request: its Content-Type gives the boundary
        request.add_callback(done)
        op._cancel = request.cancel
        return finish(op, callback)

    def _save_streamed(self, doc: dict, merge: Any, options: Dict[str, Any], callback: Callback) -> Any:
        """Save ``doc`` and the content in its ``_attachments`` in one multipart/related PUT (see ``save``)."""
        if merge is not None:
            raise ValueError("merge= and force= do not go with attachment content to stream: save the "
                             "document, then resolve")
        options = dict(options)
        progress = options.pop("progress", None)
        unknown = set(options) - {"batch", "new_edits", "w"}
        if unknown:
            raise TypeError("save with attachment content takes batch, new_edits, w and progress, not %s"
                            % ", ".join(sorted(unknown)))
        given_id = doc.get("_id")
        if given_id is None:
            doc["_id"] = uuid.uuid4().hex
        try:
            upload, content_type, after = build_body(doc, progress)
        except BaseException:
            if given_id is None:
                del doc["_id"]
            raise
        headers = self.server.headers_with("Content-Type: " + content_type)

        def saved(data: Any, status: Status) -> ConflictResolution:
            upload.close()
            if isinstance(data, dict) and data.get("rev"):
                doc["_rev"] = data["rev"]
            doc["_attachments"] = after
            outcome = ConflictResolution(self, options=options)  # type: ignore[arg-type]
            outcome.resolved[doc["_id"]] = doc
            return outcome

        return finish(self._request("PUT", "/" + doc_path(doc["_id"]), params=options or None, upload=upload,
                                    headers=headers, transform=saved), callback)

    @overload
    def delete_attachment(self, doc: dict, filename: str, callback: None = None) -> Document: ...

    @overload
    def delete_attachment(self, doc: dict, filename: str,
                          callback: DataCallback[Document] = ...) -> Operation[Document]: ...

    def delete_attachment(self, doc: dict, filename: str, callback: Callback = None) -> Any:
        """Delete attachment ``filename`` of ``doc`` (which needs ``_id`` and ``_rev``); returns ``{ok, id, rev}``.

        Updates the doc's ``_rev`` in place; raises NotFound or Conflict.
        """
        if not isinstance(doc, dict):
            raise TypeError("delete_attachment needs the document (a dict with _id and _rev), not %s"
                            % type(doc).__name__)
        doc_id = _doc_id(doc, "delete_attachment")
        _check_filename(filename)
        if not doc.get("_rev"):
            raise ValueError("delete_attachment needs the document's current _rev")
        path = "/" + doc_path(doc_id) + "/" + quote_segment(filename)
        return finish(self._request("DELETE", path, params={"rev": doc["_rev"]}, transform=_updating(doc)),
                      callback)
