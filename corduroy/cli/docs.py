"""``get``, ``put``, ``delete``, ``view`` and ``info``: one document, one query, one answer.

Each prints JSON lines on stdout: the document (``get``), ``{"ok", "id",
"rev"}`` (``put``, ``delete``), one row per line (``view``, streamed as the
rows arrive), the server's or the database's info (``info``).
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Dict

from loop.redact import describe

from ..database import Database
from ..http import finish
from ..views import Row
from .errors import ExitCode, UsageError
from .io import parse_json

__all__ = ["run_get", "run_put", "run_delete", "run_view", "run_info", "VIEW_JSON_OPTIONS"]


def run_get(ctx: Any, args: argparse.Namespace) -> int:
    """The ``get`` command."""
    db: Database = ctx.database(args.db)
    options: Dict[str, Any] = {}
    if args.rev:
        options["rev"] = args.rev
    if args.conflicts:
        options["conflicts"] = True
    ctx.output.write(db.get(args.id, **options))
    return ExitCode.OK


def _read_body(args: argparse.Namespace) -> Any:
    if args.data is not None:
        if args.file is not None:
            raise UsageError("give the document as FILE or --data, not both")
        return parse_json(args.data, "--data")
    path = args.file
    if path is None:
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError("put needs the document: a FILE, '-' (stdin) or --data JSON")
        path = "-"
    try:
        if path == "-":
            text = sys.stdin.buffer.read().decode("utf-8")
        else:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8")
    except OSError as exc:
        raise UsageError("cannot read %s: %s" % (path, exc.strerror or exc)) from None
    except UnicodeDecodeError as exc:
        raise UsageError("%s is not UTF-8: %s" % ("stdin" if path == "-" else path, exc)) from None
    return parse_json(text, "the document" if path == "-" else path)


def run_put(ctx: Any, args: argparse.Namespace) -> int:
    """The ``put`` command."""
    db: Database = ctx.database(args.db)
    doc = _read_body(args)
    if not isinstance(doc, dict):
        raise UsageError("a document is a JSON object, not %s" % type(doc).__name__)
    if doc.get("_id") is not None and doc["_id"] != args.id:
        raise UsageError("the document's _id %s is not %s" % (describe(doc["_id"]), describe(args.id)))
    doc["_id"] = args.id
    if args.rev:
        if doc.get("_rev") not in (None, args.rev):
            raise UsageError("the document's _rev %s is not --rev %s" % (describe(doc["_rev"]), describe(args.rev)))
        doc["_rev"] = args.rev
    try:
        db.save(doc, force=args.force)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    ctx.output.write({"ok": True, "id": doc["_id"], "rev": doc["_rev"]})
    return ExitCode.OK


def run_delete(ctx: Any, args: argparse.Namespace) -> int:
    """The ``delete`` command."""
    db: Database = ctx.database(args.db)
    rev = args.rev
    if not rev:
        rev = db.get(args.id)["_rev"]
    answer = db.delete({"_id": args.id, "_rev": rev})
    ctx.output.write({"ok": True, "id": args.id, "rev": answer.get("rev")})
    return ExitCode.OK


#: The ``view`` options whose values are JSON (CouchDB reads them as JSON).
VIEW_JSON_OPTIONS = ("key", "keys", "startkey", "endkey")
#: The other ``view`` options, passed as they are.
_VIEW_PLAIN_OPTIONS = ("startkey_docid", "endkey_docid", "limit", "skip", "descending", "reduce", "group",
                       "group_level", "include_docs", "inclusive_end")


def _row_line(row: Row) -> Dict[str, Any]:
    line: Dict[str, Any] = {}
    if row.id is not None:
        line["id"] = row.id
    line["key"] = row.key
    if row.error is not None:
        line["error"] = row.error
    else:
        line["value"] = row.value
    doc = row.doc
    if doc is not None:
        line["doc"] = doc
    return line


def view_options(args: argparse.Namespace) -> Dict[str, Any]:
    """The query options given on the command line (JSON ones decoded)."""
    options: Dict[str, Any] = {}
    for name in VIEW_JSON_OPTIONS:
        text = getattr(args, name, None)
        if text is not None:
            options[name] = parse_json(text, "--" + name)
    if "keys" in options and not isinstance(options["keys"], list):
        raise UsageError("--keys takes a JSON array of keys")
    for name in _VIEW_PLAIN_OPTIONS:
        value = getattr(args, name, None)
        if value is not None:
            options[name] = value
    return options


def run_view(ctx: Any, args: argparse.Namespace) -> int:
    """The ``view`` command."""
    db: Database = ctx.database(args.db)
    options = view_options(args)
    output = ctx.output

    def on_row(row: Row) -> None:
        output.write(_row_line(row))

    try:
        if args.view in ("_all_docs", "all_docs"):
            for name in ("reduce", "group", "group_level"):
                if name in options:
                    raise UsageError("_all_docs has no reduce: --%s does not apply" % name.replace("_", "-"))
            db.all_docs(on_row=on_row, **options)
        else:
            db.view(args.view, on_row=on_row, **options)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    return ExitCode.OK


def run_info(ctx: Any, args: argparse.Namespace) -> int:
    """The ``info`` command."""
    if args.db is None:
        ctx.output.write(finish(ctx.couch.server.request("GET", "/"), None))
    else:
        ctx.output.write(ctx.database(args.db).info())
    return ExitCode.OK
