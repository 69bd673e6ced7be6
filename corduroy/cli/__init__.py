"""The ``corduroy`` command line: scripted batch work against a CouchDB server.

``corduroy`` (the console script) and ``python -m corduroy`` run
:func:`main`.  Commands:

- ``load DB FILE`` — documents from a JSON-lines file through ``_bulk_docs``,
  several batches in flight, a progress bar on a terminal, conflicts
  reported per document, resumable with ``--skip-existing``;
- ``dump DB`` — every document as JSON lines, paged with bounded memory;
  ``--changes`` keeps following;
- ``follow DB`` — the continuous changes feed as JSON lines (``--since``);
- ``get``/``put``/``delete DB ID``, ``view DB DDOC/VIEW``, ``info [DB]``.

The server is ``--url`` or ``$COUCHDB_URL``.  Expected failures end with one
line on stderr and an exit code of their kind (:class:`ExitCode`).

Called from Python, :func:`main` takes the arguments and returns the exit
code::

    from corduroy.cli import main
    status = main(["info", "--url", "http://127.0.0.1:5984"])
"""
from .app import build_parser, main
from .errors import ExitCode

__all__ = ["main", "build_parser", "ExitCode"]
