"""What the command line reads and writes: JSON lines in, JSON lines out, a progress bar.

Output goes to stdout as JSON lines (compact UTF-8, one value per line).
Progress bars and messages go to stderr; a progress bar is shown only when
stderr is a terminal (or ``--progress`` asks for one), so piped runs stay
quiet.  Input documents are read one JSON object per line, strictly: NaN and
Infinity (which CouchDB cannot store) are refused with the line number.
"""
from __future__ import annotations

import os
import stat
import sys
from typing import IO, Any, BinaryIO, Callable, Iterator, List, Optional, Set

import simplejson

from .. import codec
from .errors import UsageError

__all__ = [
    "Output", "Messages", "DocumentReader", "Progress", "parse_json", "encode_line", "batches", "stderr_is_terminal",
]


def encode_line(value: Any) -> bytes:
    """``value`` as one compact JSON line (with its newline)."""
    return codec.encode(value, "output") + b"\n"


class Output:
    """JSON lines to stdout (bytes through its buffer when it has one)."""

    def __init__(self, stream: Optional[IO[str]] = None) -> None:
        stream = stream if stream is not None else sys.stdout
        self._text = stream
        self._raw: Optional[BinaryIO] = getattr(stream, "buffer", None)
        if self._raw is not None:
            stream.flush()  # text written earlier goes first

    def write(self, value: Any) -> None:
        """Write ``value`` as one JSON line."""
        self.write_bytes(encode_line(value))

    def write_bytes(self, data: bytes) -> None:
        """Write already encoded JSON lines."""
        if self._raw is not None:
            self._raw.write(data)
        else:
            self._text.write(data.decode("utf-8"))

    def flush(self) -> None:
        """Push what was written to the reader (followers flush after each batch)."""
        (self._raw if self._raw is not None else self._text).flush()


class Messages:
    """Lines for the user on stderr, prefixed ``corduroy:`` and scrubbed of credentials."""

    def __init__(self, scrub: Callable[[str], str], stream: Optional[IO[str]] = None) -> None:
        self.scrub = scrub
        self.stream = stream
        #: The progress bar on screen, if any: messages are printed above it.
        self.progress: Optional["Progress"] = None

    def __call__(self, text: str) -> None:
        line = "corduroy: " + self.scrub(text)
        if self.progress is not None and self.progress.bar is not None:
            self.progress.bar.write(line, file=self._stream())
        else:
            stream = self._stream()
            stream.write(line + "\n")
            stream.flush()

    def _stream(self) -> IO[str]:
        return self.stream if self.stream is not None else sys.stderr


def stderr_is_terminal() -> bool:
    """True when stderr is a terminal (progress bars are shown by default then)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """A progress bar on stderr (rate and, when the total is known, ETA), or nothing.

    ``enabled=False`` makes every method a no-op, without importing tqdm.
    """

    def __init__(self, enabled: bool, total: Optional[int], unit: str, desc: str) -> None:
        self.bar: Any = None
        if enabled:
            from tqdm import tqdm

            tqdm.monitor_interval = 0  # no monitor thread next to the reactor
            self.bar = tqdm(total=total, unit=unit, desc=desc, file=sys.stderr,
                            dynamic_ncols=True, mininterval=0.25, smoothing=0.1)

    def update(self, count: int) -> None:
        """Count ``count`` more items done."""
        if self.bar is not None:
            self.bar.update(count)

    def close(self) -> None:
        """Take the bar off the screen's last line (its final state stays)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _reject_constant(name: str) -> Any:
    raise ValueError("%s is not valid JSON (CouchDB stores no NaN or Infinity)" % name)


_strict = simplejson.JSONDecoder(parse_constant=_reject_constant)


def parse_json(text: str, what: str) -> Any:
    """``text`` decoded as JSON, or a UsageError naming ``what`` (an option)."""
    try:
        return _strict.decode(text)
    except ValueError as exc:
        raise UsageError("%s takes a JSON value (quote strings: '\"abc\"'): %s" % (what, _first_line(exc))) \
            from None


def _first_line(exc: BaseException) -> str:
    return str(exc).split("\n", 1)[0]


class DocumentReader:
    """Documents from a JSON-lines file (``-``: stdin), one object per line; blank lines are skipped.

    Iterating raises :class:`UsageError` naming the line at the first bad one.
    A regular file can be read twice (``rewind()``): once to check it, once
    to load it; a pipe can only be checked as it is read.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = "stdin" if path == "-" else path
        self.line = 0
        self._stream: Optional[BinaryIO] = None

    def open(self) -> "DocumentReader":
        """Open the file (raises UsageError if it cannot be read)."""
        if self.path == "-":
            self._stream = sys.stdin.buffer
        else:
            try:
                self._stream = open(self.path, "rb")
            except OSError as exc:
                raise UsageError("cannot read %s: %s" % (self.path, exc.strerror or exc)) from None
        return self

    def close(self) -> None:
        """Close the file (never stdin)."""
        if self._stream is not None and self.path != "-":
            self._stream.close()
        self._stream = None

    @property
    def seekable(self) -> bool:
        """True for a regular file (it can be read twice: checked first, then loaded)."""
        if self._stream is None or self.path == "-":
            return False
        try:
            return stat.S_ISREG(os.fstat(self._stream.fileno()).st_mode)
        except (OSError, ValueError):
            return False

    def rewind(self) -> None:
        """Go back to the start of a regular file, to read it again."""
        assert self._stream is not None
        self._stream.seek(0)
        self.line = 0

    def __iter__(self) -> Iterator[dict]:
        return self._documents()

    def _documents(self) -> Iterator[dict]:
        assert self._stream is not None
        decode = _strict.decode
        for raw in self._stream:
            self.line += 1
            if not raw.strip():
                continue
            try:
                doc = decode(raw.decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise UsageError("%s, line %d: not JSON: %s" % (self.name, self.line, _first_line(exc))) from None
            if not isinstance(doc, dict):
                raise UsageError("%s, line %d: expected a JSON object (one document per line), got %s"
                                 % (self.name, self.line, type(doc).__name__))
            doc_id = doc.get("_id")
            if doc_id is not None and (not isinstance(doc_id, str) or not doc_id):
                raise UsageError("%s, line %d: _id must be a non-empty string" % (self.name, self.line))
            yield doc


def batches(docs: Iterator[dict], size: int) -> Iterator[List[dict]]:
    """Lists of up to ``size`` documents; a batch ends early rather than hold one ``_id`` twice."""
    batch: List[dict] = []
    ids: Set[str] = set()
    for doc in docs:
        doc_id = doc.get("_id")
        if doc_id is not None:
            if doc_id in ids:
                yield batch
                batch, ids = [], set()
            ids.add(doc_id)
        batch.append(doc)
        if len(batch) >= size:
            yield batch
            batch, ids = [], set()
    if batch:
        yield batch

