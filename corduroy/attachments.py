"""Attachments: put, get and delete.

An attachment's name is quoted as one path segment, ``/`` included (``a/b.txt``
is sent as ``a%2Fb.txt``): CouchDB decodes each segment and joins the rest of
the path with ``/``, so both spellings name the same attachment, and quoting
keeps a name from ever reaching another path.
"""
from __future__ import annotations

import mimetypes
import os
from typing import TYPE_CHECKING, Any, Callable, Optional, Tuple, Union

from loop import Status
from loop.redact import describe

from .contract import io_methods
from .http import finish
from .urls import doc_path, quote_segment

if TYPE_CHECKING:  # pragma: no cover
    from loop import Operation

    from .http import Server

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


def _read_content(content: Any, filename: Optional[str]) -> Tuple[bytes, Optional[str]]:
    """The attachment's bytes and its name (taken from a file object's name if needed)."""
    if isinstance(content, (bytes, bytearray, memoryview)):
        return bytes(content), filename
    if isinstance(content, str):
        return content.encode("utf-8"), filename
    read = getattr(content, "read", None)
    if not callable(read):
        raise TypeError("attachment content is bytes, str or a readable file object, not %s"
                        % type(content).__name__)
    if filename is None:
        name = getattr(content, "name", None)
        if isinstance(name, bytes):
            name = os.fsdecode(name)
        if isinstance(name, str) and name:
            filename = os.path.basename(name)
    data = read()
    if isinstance(data, str):
        data = data.encode("utf-8")
    elif isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    elif not isinstance(data, bytes):
        raise TypeError("reading the attachment's file gave %s, not bytes or str" % type(data).__name__)
    return data, filename


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


def _updating(doc: dict) -> Callable[[Any, Status], Any]:
    """A transform that copies the new ``rev`` of an answer into ``doc``."""

    def applied(data: Any, status: Status) -> Any:
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

    def put_attachment(self, doc: dict, content: Union[bytes, str, Any], filename: Optional[str] = None,
                       content_type: Optional[str] = None, callback: Callback = None) -> Any:
        """Create or replace attachment ``filename`` of ``doc``; returns ``{ok, id, rev}``.

        ``content`` is bytes, a str (sent as UTF-8) or a file object (binary or
        text); a file's name (its basename) is used when ``filename`` is not
        given.  ``content_type`` is guessed from the name when not given
        (``application/octet-stream`` if unknown).  ``doc`` needs an ``_id``,
        and its current ``_rev`` if it exists; its ``_rev`` is updated in
        place.  Raises Conflict on a stale ``_rev``.

        >>> db.put_attachment(doc, b"\\x89PNG...", "logo.png")     # doctest: +SKIP
        {'ok': True, 'id': 'home', 'rev': '2-...'}
        """
        if not isinstance(doc, dict):
            raise TypeError("put_attachment needs the document (a dict with _id and _rev), not %s"
                            % type(doc).__name__)
        doc_id = _doc_id(doc, "put_attachment")
        body, filename = _read_content(content, filename)
        if filename is None:
            raise ValueError("put_attachment needs a filename for bytes or str content")
        _check_filename(filename)
        if content_type is None:
            content_type = guess_content_type(filename)
        elif not isinstance(content_type, str) or not content_type.strip():
            raise TypeError("content_type must be a non-empty str such as 'text/plain'")
        if "\r" in content_type or "\n" in content_type:
            raise ValueError("content_type cannot contain line breaks")
        params = {"rev": doc["_rev"]} if doc.get("_rev") else None
        headers = self.server.headers_with("Content-Type: " + content_type.strip(), "Expect:")
        path = "/" + doc_path(doc_id) + "/" + quote_segment(filename)
        return finish(self._request("PUT", path, params=params, body=body, headers=headers,
                                    transform=_updating(doc)), callback)

    def get_attachment(self, id_or_doc: Union[str, dict], filename: str, callback: Callback = None,
                       **options: Any) -> Any:
        """The content (bytes) of attachment ``filename`` of a document given by id or as a dict.

        Raises NotFound if the document or the attachment is missing.
        Options: ``rev`` (the attachment as of that revision).
        """
        doc_id = _doc_id(id_or_doc, "get_attachment")
        _check_filename(filename)
        path = "/" + doc_path(doc_id) + "/" + quote_segment(filename)
        return finish(self._request("GET", path, params=options or None, raw=True), callback)

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
