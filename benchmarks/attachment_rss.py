"""Client memory while a big attachment goes up from a file and comes back into a file.

Measures resident memory (``VmRSS`` from ``/proc/self/status``), not time:
the baseline just before the upload, then samples taken as the transfers
run (from the progress callbacks, every few megabytes) and once after each;
the figure that matters is the growth over the baseline.  The file is
written in 1 MiB blocks (never held whole), checked by SHA-256 after the
round trip, and removed with the database at the end.

Run it against a real CouchDB (pouchdb-server keeps attachments in memory)::

    python -m benchmarks.attachment_rss http://admin:pw@127.0.0.1:5984 --size 1G

It prints one JSON object: ``size``, ``baseline_kib``, ``upload_peak_kib``,
``download_peak_kib``, ``growth_kib`` (the larger peak minus the baseline)
and the seconds each way (for information only).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
import uuid
from typing import Any, Dict, List, Optional

#: How often (bytes moved) the progress callbacks sample VmRSS.
SAMPLE_EVERY = 8 * 1024 * 1024
_BLOCK = 1024 * 1024


def rss_kib() -> int:
    """This process's resident set size in KiB (``VmRSS``)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def write_file(path: str, size: int) -> str:
    """Write ``size`` bytes of varied content to ``path`` a block at a time; return their SHA-256."""
    digest = hashlib.sha256()
    seed = os.urandom(_BLOCK)
    with open(path, "wb") as fh:
        left, n = size, 0
        while left:
            block = (n.to_bytes(8, "big") + seed[8:])[:min(left, _BLOCK)]
            fh.write(block)
            digest.update(block)
            left -= len(block)
            n += 1
    return digest.hexdigest()


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


class Sampler:
    """A ``progress(done, total)`` callback that records VmRSS every :data:`SAMPLE_EVERY` bytes."""

    def __init__(self) -> None:
        self.samples: List[int] = []
        self._next = 0

    def __call__(self, done: int, total: Optional[int]) -> None:
        if done >= self._next:
            self.samples.append(rss_kib())
            self._next = done + SAMPLE_EVERY

    @property
    def peak(self) -> int:
        return max(self.samples) if self.samples else 0


def measure(db: Any, size: int, directory: str) -> Dict[str, Any]:
    """Upload a ``size``-byte file to ``db`` as an attachment and download it into another file.

    ``db`` is a :class:`corduroy.Database` that exists; the document and
    files made here are removed before returning.  Raises AssertionError
    if the copy differs.
    """
    source = os.path.join(directory, "rss-source.bin")
    copy = os.path.join(directory, "rss-copy.bin")
    try:
        expected = write_file(source, size)
        doc = {"_id": "rss-" + uuid.uuid4().hex}
        db.save(doc)
        up, down = Sampler(), Sampler()
        baseline = rss_kib()
        started = time.monotonic()
        with open(source, "rb") as fh:
            db.put_attachment(doc, fh, "big.bin", progress=up)
        up.samples.append(rss_kib())
        uploaded = time.monotonic()
        with open(copy, "wb") as out:
            received = db.get_attachment(doc, "big.bin", into=out, progress=down)
        down.samples.append(rss_kib())
        downloaded = time.monotonic()
        assert received == size, (received, size)
        assert file_sha256(copy) == expected, "the downloaded copy differs from the file uploaded"
        db.delete(db.get(doc["_id"]))
        return {
            "size": size,
            "baseline_kib": baseline,
            "upload_peak_kib": up.peak,
            "download_peak_kib": down.peak,
            "growth_kib": max(up.peak, down.peak) - baseline,
            "upload_s": round(uploaded - started, 2),
            "download_s": round(downloaded - uploaded, 2),
        }
    finally:
        for path in (source, copy):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def _size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper()
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.attachment_rss", description=__doc__.split("\n")[0])
    parser.add_argument("url", help="the server, with credentials (http://user:pw@host:port)")
    parser.add_argument("--size", type=_size, default=_size("1G"), help="attachment size (e.g. 200M, 1G)")
    parser.add_argument("--dir", default=None, help="where the temporary files go (default: the temp dir)")
    args = parser.parse_args(argv)
    from corduroy import Couch

    couch = Couch(args.url)
    name = "rss_" + uuid.uuid4().hex[:12]
    db = couch.create(name)
    try:
        with tempfile.TemporaryDirectory(dir=args.dir) as directory:
            result = measure(db, args.size, directory)
    finally:
        couch.delete(name)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
