"""Streamed attachment bodies: uploads read piece by piece, downloads written piece by piece.

An attachment of any size goes through a few hundred kilobytes of memory:

- :class:`UploadSource` feeds a request body to libcurl as libcurl asks for
  it (its READFUNCTION): from a file object (binary or text) or from an
  iterator of ``bytes`` chunks, with a known length (``Content-Length``) or
  without (``Transfer-Encoding: chunked``).
- :class:`DownloadSink` writes a response body, chunk by chunk, into a
  binary file object or hands each chunk to a function.

Both call an optional ``progress(done, total)`` function after each piece
(``total`` is None when the size is not known).

Every check that can be made before a byte is sent is made when the object
is built (a closed file, a text file to download into, a negative length, a
list holding a str): a TypeError or ValueError, and nothing is sent.  What
only shows while streaming (an iterator that yields a str, or more or fewer
bytes than ``length``, a file that fails to read) aborts the transfer before
its last byte leaves, so the server never sees a complete body and stores
nothing; the request then fails with that error.
"""
from __future__ import annotations

import io
import os
from collections import deque
from typing import Any, Callable, Deque, Iterator, Optional, Tuple

import pycurl

from loop import Status, get_reactor
from loop.curl import WRITEFUNC_PAUSE as _WRITE_PAUSE
from loop.redact import type_name

from .contract import finish, io_method

__all__ = ["UploadSource", "DownloadSink", "AttachmentChunks", "Progress", "check_length", "is_streamable"]

#: ``progress(done, total)``: bytes moved so far, and the whole size (None if unknown).
Progress = Callable[[int, Optional[int]], Any]

_ABORT = pycurl.READFUNC_ABORT
_SEEK_OK = pycurl.SEEKFUNC_OK
_SEEK_CANT = pycurl.SEEKFUNC_CANTSEEK
_BYTES_LIKE = (bytes, bytearray, memoryview)


def check_length(length: Any) -> Optional[int]:
    """``length`` checked as a size in bytes (an int >= 0), or None."""
    if length is None:
        return None
    if not isinstance(length, int) or isinstance(length, bool):
        raise TypeError("length is a number of bytes (an int >= 0) or None, not %s" % type_name(length))
    if length < 0:
        raise ValueError("length cannot be negative (got %d)" % length)
    return length


def _check_progress(progress: Any) -> Optional[Progress]:
    if progress is not None and not callable(progress):
        raise TypeError("progress must be a function of (done, total), not %s" % type_name(progress))
    return progress


def is_file(value: Any) -> bool:
    """True for an object read like a file (it has a ``read`` method)."""
    return callable(getattr(value, "read", None))


def is_streamable(value: Any) -> bool:
    """True for content :class:`UploadSource` streams: a file object or an iterable of chunks (not str/bytes/dict)."""
    if isinstance(value, (str, dict) + _BYTES_LIKE):
        return False
    return is_file(value) or hasattr(value, "__iter__")


def file_name(fh: Any) -> Optional[str]:
    """The base name of a file object's ``name``, if it has a usable one."""
    name = getattr(fh, "name", None)
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    if isinstance(name, str) and name:
        return os.path.basename(name)
    return None


def _check_open(fh: Any, what: str) -> None:
    if getattr(fh, "closed", False):
        raise ValueError("%s is a closed file" % what)


class UploadSource:
    """A request body streamed to libcurl: from a file object or an iterator of ``bytes`` chunks.

    ``length`` is the number of bytes to send (None: unknown, sent chunked).
    For a seekable binary file it defaults to what is left from the current
    position; a longer ``length`` than that is a ValueError at once.  A
    file's position when the source was made is where every attempt starts
    (a resend rewinds it); an iterator can be sent only once: once a chunk
    was taken from it, the request is not sent again.

    Example::

        source = UploadSource(open("big.iso", "rb"))            # length from the file
        source = UploadSource(iter_chunks(), length=1 << 30)    # exactly 1 GiB, else an error
    """

    __slots__ = ("length", "sent", "failure", "progress", "what", "_file", "_chunks", "_pending",
                 "_origin", "_pulled", "_text", "_list")

    def __init__(self, content: Any, length: Optional[int] = None, progress: Optional[Progress] = None,
                 what: str = "the attachment") -> None:
        self.length = check_length(length)
        self.progress = _check_progress(progress)
        self.what = what
        #: Bytes handed to libcurl in the current attempt.
        self.sent = 0
        #: Why the body could not be sent (the request fails with it), else None.
        self.failure: Optional[BaseException] = None
        self._file: Any = None
        self._chunks: Optional[Iterator[Any]] = None
        self._list: Optional[Tuple[bytes, ...]] = None
        self._pending: Optional[memoryview] = None
        self._origin: Optional[int] = None
        self._pulled = False
        self._text = False
        if isinstance(content, str):
            content = content.encode("utf-8")
        if isinstance(content, _BYTES_LIKE):
            content = (bytes(content),)
        if is_file(content):
            self._from_file(content)
        elif isinstance(content, (list, tuple)):
            self._from_list(content)
        elif hasattr(content, "__iter__") and not isinstance(content, dict):
            self._chunks = iter(content)
            if self.length == 0 and self._more():
                # libcurl never reads an empty body: check now that it is one.
                raise ValueError("length=0, but %s gives bytes" % what)
        elif hasattr(content, "__aiter__"):
            raise TypeError("%s is an async iterator: give a file object or a (synchronous) iterator of "
                            "bytes chunks" % what)
        else:
            raise TypeError("%s is bytes, str, a readable file object or an iterator of bytes chunks, not %s"
                            % (what, type_name(content)))

    def _from_file(self, fh: Any) -> None:
        _check_open(fh, self.what)
        readable = getattr(fh, "readable", None)
        if callable(readable) and not readable():
            raise ValueError("%s is a file not open for reading" % self.what)
        self._file = fh
        self._text = isinstance(fh, io.TextIOBase)
        if self._text:
            return  # its size in UTF-8 bytes is unknown until read: sent chunked unless length is given
        try:
            seekable = fh.seekable()
        except (AttributeError, OSError, ValueError):
            seekable = False
        if not seekable:
            return
        origin = fh.tell()
        end = fh.seek(0, os.SEEK_END)
        fh.seek(origin)
        self._origin = origin
        left = max(0, end - origin)
        if self.length is None:
            self.length = left
        elif self.length > left:
            raise ValueError("length=%d, but %s has only %d bytes left to read" % (self.length, self.what, left))

    def _from_list(self, chunks: Any) -> None:
        checked = []
        for i, chunk in enumerate(chunks):
            if not isinstance(chunk, _BYTES_LIKE):
                raise TypeError("chunk %d of %s is %s; chunks are bytes" % (i, self.what, type_name(chunk)))
            checked.append(bytes(chunk))
        total = sum(map(len, checked))
        if self.length is None:
            self.length = total
        elif self.length != total:
            raise ValueError("length=%d, but the chunks of %s add up to %d bytes" % (self.length, self.what, total))
        self._list = tuple(checked)
        self._chunks = iter(self._list)

    # -- libcurl's side ---------------------------------------------------
    def start(self) -> None:
        """Called each time the request is handed to libcurl: start the body over (a resend), or refuse."""
        if self.sent == 0 and self._pending is None and not self._pulled:
            return
        if not self._rewind(0):
            self.failure = ValueError("%s was read from an iterator, which cannot be sent a second time"
                                      % self.what)

    def _rewind(self, offset: int) -> bool:
        if self._list is not None:
            if offset != 0:
                return False
            self._chunks = iter(self._list)
        elif self._origin is not None:
            self._file.seek(self._origin + offset)
        elif self._pulled or self._pending is not None or offset != 0:
            return False
        self.sent = offset
        self._pending = None
        self._pulled = offset != 0
        return True

    def seek(self, offset: int, origin: int) -> int:
        """libcurl's SEEKFUNCTION: go back to ``offset`` (from the start) to send the body again."""
        try:
            if origin != os.SEEK_SET:
                return _SEEK_CANT
            return _SEEK_OK if self._rewind(offset) else _SEEK_CANT
        except Exception:  # a file that fails to seek
            return _SEEK_CANT

    def read(self, size: int) -> Any:
        """libcurl's READFUNCTION: up to ``size`` bytes; ``b""`` at the end; abort on any failure."""
        if self.failure is not None:
            return _ABORT
        try:
            data = self._take(size)
            length = self.length
            sent = self.sent + len(data)
            if length is not None:
                if sent > length:
                    raise ValueError("%s gave more than length=%d bytes" % (self.what, length))
                if not data and sent < length:
                    raise ValueError("%s ended after %d bytes, short of length=%d" % (self.what, sent, length))
                if data and sent == length and self._file is None and self._more():
                    # The last byte must not leave before we know no more come.
                    raise ValueError("%s gave more than length=%d bytes" % (self.what, length))
            self.sent = sent
            if self.progress is not None and data:
                self.progress(sent, length)
            return data
        except Exception as exc:
            self.failure = exc
            return _ABORT

    def _take(self, size: int) -> bytes:
        pending = self._pending
        if pending is None:
            if self._file is not None:
                if self.length is not None and not self._text:
                    size = min(size, self.length - self.sent)
                    if size <= 0:
                        return b""
                chunk = self._file.read(size)
            else:
                chunk = self._next_chunk()
            self._pulled = True
            if isinstance(chunk, str):
                if self._file is None:
                    raise TypeError("%s gave a str chunk; chunks are bytes (encode text first)" % self.what)
                chunk = chunk.encode("utf-8")
            elif not isinstance(chunk, _BYTES_LIKE):
                raise TypeError("%s gave %s; chunks are bytes" % (self.what, type_name(chunk)))
            if len(chunk) <= size:
                return bytes(chunk)
            pending = memoryview(chunk)
        data = bytes(pending[:size])
        rest = pending[size:]
        self._pending = rest if len(rest) else None
        return data

    def _next_chunk(self) -> Any:
        chunks = self._chunks
        assert chunks is not None
        for chunk in chunks:
            if not isinstance(chunk, _BYTES_LIKE) or len(chunk):
                return chunk
        return b""

    def _more(self) -> bool:
        """True if the iterator still has a non-empty chunk (kept for the next read)."""
        if self._pending is not None:
            return True
        chunk = self._next_chunk()
        if isinstance(chunk, _BYTES_LIKE) and not len(chunk):
            return False
        return True

    def close(self) -> None:
        """Let go of the file or iterator (called once the request is done)."""
        self._file = None
        self._chunks = None
        self._pending = None

    def __repr__(self) -> str:
        kind = "file" if self._file is not None else "chunks"
        return "<UploadSource %s length=%s sent=%d>" % (kind, self.length, self.sent)


class DownloadSink:
    """Where a streamed response body goes: a binary file object, or a function given each chunk.

    ``progress(received, total)`` is called after each chunk (``total`` is
    the ``Content-Length`` when the server sent one, else None).  If the
    transfer fails, a seekable file is truncated back to where it was, so
    it holds no half attachment.

    Example::

        with open("copy.iso", "wb") as fh:
            db.get_attachment("disk", "image.iso", into=fh)
    """

    __slots__ = ("write", "progress", "received", "total", "_file", "_origin", "request")

    def __init__(self, into: Any, progress: Optional[Progress] = None, what: str = "into") -> None:
        self.progress = _check_progress(progress)
        #: Bytes received so far.
        self.received = 0
        self.total: Optional[int] = None
        self._file: Any = None
        self._origin: Optional[int] = None
        #: The loop Request, to read Content-Length from (set by the caller once sent).
        self.request: Any = None
        write = getattr(into, "write", None)
        if callable(write):
            _check_open(into, "%s=" % what)
            if isinstance(into, io.TextIOBase):
                raise TypeError("%s= is a text file; open it in binary mode ('wb')" % what)
            writable = getattr(into, "writable", None)
            if callable(writable) and not writable():
                raise ValueError("%s= is a file not open for writing" % what)
            self._file = into
            try:
                if into.seekable():
                    self._origin = into.tell()
            except (AttributeError, OSError, ValueError):
                self._origin = None
            self.write = write
        elif callable(into):
            self.write = into
        else:
            raise TypeError("%s= is a binary file object or a function of (chunk), not %s" % (what, type_name(into)))

    def __call__(self, chunk: bytes) -> None:
        if self.received == 0 and self.request is not None:
            self.total = _content_length(self.request.header_lines)
        self.write(chunk)
        self.received += len(chunk)
        if self.progress is not None:
            self.progress(self.received, self.total)

    def undo(self) -> None:
        """After a failed transfer: truncate a seekable file back to where writing started."""
        if self._file is None or self._origin is None or not self.received:
            return
        try:
            self._file.seek(self._origin)
            self._file.truncate()
        except (OSError, ValueError):  # closed or not truncatable: nothing more to do
            pass

    def __repr__(self) -> str:
        return "<DownloadSink %s received=%d>" % ("file" if self._file is not None else "function", self.received)


def _content_length(header_lines: Any) -> Optional[int]:
    """The ``Content-Length`` of the last response (None if absent, or if the body is content-encoded)."""
    length = None
    for line in reversed(header_lines or ()):
        if line[:5] == b"HTTP/":
            break
        lower = line.lower()
        if lower.startswith(b"content-encoding:") and lower[17:].strip() not in (b"", b"identity"):
            return None  # libcurl decodes it: the length on the wire is not the length written
        if lower.startswith(b"content-length:"):
            try:
                length = int(line[15:].strip())
            except ValueError:
                return None
    return length



class AttachmentChunks:
    """An attachment's content as an iterator of ``bytes`` chunks: ``for``, ``async for``, or ``next()``.

    Made by :meth:`~corduroy.attachments.AttachmentsMixin.iter_attachment`;
    nothing is requested until the first chunk is asked for.  At most
    ``buffer_size`` bytes (plus one chunk) wait in memory: past that the
    transfer is paused until the consumer catches up, so a slow consumer
    never makes memory grow.

    - ``for chunk in chunks``: blocking (no reactor running in this thread);
    - ``async for chunk in chunks``: in asyncio code;
    - ``chunk = yield chunks.next()`` in ``@relax`` code, or
      ``chunks.next(callback=fn)``: the next chunk, or None at the end.

    Leaving a ``for`` loop early (or :meth:`close`) cancels the transfer.
    Raises NotFound (from the first ``next``) if the attachment is missing.
    """

    def __init__(self, db: Any, path: str, params: Optional[dict], buffer_size: int = 1024 * 1024,
                 progress: Optional[Progress] = None) -> None:
        if not isinstance(buffer_size, int) or isinstance(buffer_size, bool) or buffer_size < 1:
            raise ValueError("buffer_size is a number of bytes >= 1, not %s" % type_name(buffer_size))
        self.db = db
        self.path = path
        self.params = params
        self.buffer_size = buffer_size
        self.progress = _check_progress(progress)
        #: Bytes received so far, and the most that ever waited in memory at once.
        self.received = 0
        self.buffered_max = 0
        self._chunks: Deque[bytes] = deque()
        self._buffered = 0
        self._op: Any = None
        self._request: Any = None
        self._paused = False
        self._finished = False
        self._error: Optional[BaseException] = None
        self._waiter: Any = None
        self._closed = False

    # -- the transfer ---------------------------------------------------------
    def _start(self) -> None:
        self._op = self.db._request("GET", self.path, params=self.params, on_chunk=self._on_chunk)
        self._request = self._op._cancel  # the loop Request, to resume after a pause
        self._op.add_callback(self._on_done)

    def _on_chunk(self, chunk: bytes) -> Any:
        if self._closed:
            return False
        if self._buffered >= self.buffer_size:
            self._paused = True
            return _WRITE_PAUSE  # libcurl keeps the chunk and hands it over again after resume()
        if not self.received and self.progress is not None:
            self._total = _content_length(getattr(self._request, "header_lines", None))
        self.received += len(chunk)
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > self.buffered_max:
            self.buffered_max = self._buffered
        if self.progress is not None:
            self.progress(self.received, getattr(self, "_total", None))
        self._serve()
        return None

    def _on_done(self, data: Any, status: Status) -> None:
        self._finished = True
        self._error = status.exception
        self._serve()

    def _serve(self) -> None:
        waiter = self._waiter
        if waiter is None:
            return
        if self._chunks:
            self._waiter = None
            waiter.complete(self._take(), Status(200))
        elif self._finished:
            self._waiter = None
            if self._error is not None:
                waiter.complete(None, Status(getattr(self._error, "code", None), exception=self._error))
            else:
                waiter.complete(None, Status(200))

    def _take(self) -> bytes:
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._paused and self._buffered < self.buffer_size:
            self._paused = False
            request = self._request
            if request is not None and request.driver is not None:
                request.driver.resume(request)
        return chunk

    # -- the consumer's side ----------------------------------------------------
    @io_method
    def next(self, callback: Optional[Callable[[Any, Status], Any]] = None) -> Any:
        """The next chunk (bytes), or None after the last; follows the calling contract."""
        from .http import CouchOperation

        op = CouchOperation(get_reactor())
        if self._closed:
            op.complete(None, Status(200))
        elif self._chunks:
            op.complete(self._take(), Status(200))
        elif self._finished:
            if self._error is not None:
                op.complete(None, Status(getattr(self._error, "code", None), exception=self._error))
            else:
                op.complete(None, Status(200))
        else:
            if self._waiter is not None:
                raise RuntimeError("next() was called again before the previous chunk arrived")
            self._waiter = op
            if self._op is None:
                self._start()
        return finish(op, callback)

    def close(self) -> None:
        """Stop: cancel the transfer if it still runs, and drop what is buffered."""
        self._closed = True
        self._chunks.clear()
        self._buffered = 0
        op = self._op
        if op is not None and not op.done():
            op.cancel()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.complete(None, Status(200))

    def __iter__(self) -> Iterator[bytes]:
        if get_reactor().in_async_context():
            raise TypeError("a blocking `for` over attachment chunks cannot run inside a running reactor: use "
                            "`async for`, or `chunk = yield chunks.next()` in @relax code")
        return self._blocking_iter()

    def _blocking_iter(self) -> Iterator[bytes]:
        try:
            while True:
                chunk = self.next()
                if chunk is None:
                    return
                yield chunk
        finally:
            self.close()

    def __aiter__(self) -> "AttachmentChunks":
        return self

    async def __anext__(self) -> bytes:
        chunk = await self.next()
        if chunk is None:
            self.close()
            raise StopAsyncIteration
        return chunk

    def __enter__(self) -> "AttachmentChunks":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> "AttachmentChunks":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("done" if self._finished else "open")
        return "<AttachmentChunks %s received=%d>" % (state, self.received)
