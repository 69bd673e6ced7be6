"""The ``corduroy`` command: its arguments, and how a run ends (output, message, exit code)."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence

from loop.redact import describe as shown

from .._version import __version__
from ..couch import Couch
from ..database import Database
from ..exceptions import CouchError
from ..urls import split_credentials
from .errors import EXIT_CODES_HELP, CLIError, ExitCode, Scrubber, UsageError, describe, exit_code_for
from .io import Messages, Output, stderr_is_terminal

__all__ = ["main", "build_parser", "Context"]

DEFAULT_URL = "http://127.0.0.1:5984"

DESCRIPTION = """\
corduroy: scripted batch work against a CouchDB server.

Documents and rows are read and written as JSON lines (one JSON value per
line, UTF-8).  Results go to stdout; messages, and a progress bar when
stderr is a terminal, go to stderr."""

EPILOG = """\
environment:
  COUCHDB_URL  the server, when --url is not given (default %s);
               credentials may go inline (http://user:password@host:5984):
               they are sent as Basic auth and never printed

%s

Run `corduroy COMMAND --help` for a command's options.""" % (DEFAULT_URL, EXIT_CODES_HELP)


def _number(convert: Callable[[str], Any], kind: str, ok: Callable[[Any], bool],
            must: str) -> Callable[[str], Any]:
    """An argparse type: ``convert(text)``, refused unless ``ok`` (``must`` says what is allowed)."""
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError("%s is not %s" % (shown(text), kind)) from None
        if not ok(value):
            raise argparse.ArgumentTypeError("must be %s, got %s" % (must, shown(value)))
        return value

    return parse


_positive_int = _number(int, "an integer", lambda value: value >= 1, "at least 1")
_non_negative_int = _number(int, "an integer", lambda value: value >= 0, "0 or more")
_seconds = _number(float, "a number of seconds", lambda value: value > 0, "more than 0")


class _Parser(argparse.ArgumentParser):
    """argparse, with credentials scrubbed from its error messages and no exit on errors."""

    def error(self, message: str) -> Any:
        command = self.prog.split(" ", 1)[1] + ": " if " " in self.prog else ""
        raise UsageError("%s%s (see `%s --help`)" % (command, message, self.prog))


def _common_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """Options every command takes, before or after the command name."""
    default: Callable[[Any], Any] = (lambda value: argparse.SUPPRESS) if suppress else (lambda value: value)
    parser.add_argument("--url", default=default(None), metavar="URL",
                        help="the CouchDB server (default: $COUCHDB_URL, else %s)" % DEFAULT_URL)
    parser.add_argument("--timeout", type=_seconds, default=default(None), metavar="SECONDS",
                        help="give up on a request after this long (default: no limit)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=default(None),
                        help="show a progress bar on stderr (default: only when stderr is a terminal)")
    parser.add_argument("-v", "--verbose", action="count", default=default(0),
                        help="log more on stderr (-v: reconnections, -vv: every request)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``corduroy`` command."""
    parser = _Parser(prog="corduroy", description=DESCRIPTION, epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version="corduroy " + __version__)
    _common_options(parser, suppress=False)
    common = _Parser(add_help=False)
    _common_options(common, suppress=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    def command(name: str, summary: str, description: Optional[str] = None) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=summary, description=description or summary, parents=[common],
                                   epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)

    p = command("load", "load documents from a JSON-lines file through _bulk_docs", """\
Load documents, one JSON object per line, into database DB through
_bulk_docs: BATCH_SIZE documents per request, CONCURRENCY requests in flight.
A regular file is checked line by line before anything is written; stdin
(FILE `-`) is checked as it is read.  A document without _id gets a
server-generated one.

Each conflict (a document that exists with another revision) and each
document the server rejects is reported on stderr, one line each, and the
command exits with 1 once everything else is loaded.  A JSON summary line
goes to stdout: {"read", "loaded", "skipped", "conflicts", "rejected"}.

After an interruption, load the same file again with --skip-existing: only
the documents not yet in the database are sent.""")
    p.add_argument("db", metavar="DB", help="the database")
    p.add_argument("file", metavar="FILE", help="a JSON-lines file, or - for stdin")
    p.add_argument("--batch-size", type=_positive_int, default=1000, metavar="N",
                   help="documents per _bulk_docs request (default 1000)")
    p.add_argument("--concurrency", type=_positive_int, default=4, metavar="N",
                   help="requests in flight at once (default 4)")
    p.add_argument("--skip-existing", action="store_true",
                   help="do not send documents whose _id is already in the database (to resume a load)")
    p.add_argument("--create", action="store_true", help="create the database if it does not exist")
    revs = p.add_mutually_exclusive_group()
    revs.add_argument("--keep-revs", action="store_true",
                      help="store each document with its _rev as given, as replication does "
                           "(new_edits=false): restores a dump exactly")
    revs.add_argument("--strip-revs", action="store_true",
                      help="drop each document's _rev: load a dump as new documents")

    p = command("dump", "print every document as JSON lines", """\
Print every document of DB, one JSON object per line, paging through
_all_docs (PAGE_SIZE documents per request, so memory stays bounded).
With --changes, keep printing documents as they change (deleted ones as
{"_id", "_rev", "_deleted": true}) until interrupted.""")
    p.add_argument("db", metavar="DB", help="the database")
    p.add_argument("--page-size", type=_positive_int, default=1000, metavar="N",
                   help="documents per request (default 1000)")
    p.add_argument("--attachments", action="store_true", help="include attachments inline (base64)")
    p.add_argument("--changes", action="store_true", help="then follow the changes feed, printing changed documents")

    p = command("follow", "print the continuous changes feed as JSON lines", """\
Print the changes of DB as they happen, one JSON object per line (seq, id,
changes, deleted, doc), until interrupted or --limit changes.  The feed
reconnects by itself if the connection drops.  To resume later, pass the
last seq printed to --since.""")
    p.add_argument("db", metavar="DB", help="the database")
    p.add_argument("--since", metavar="SEQ", help="start after this seq, or `now` (default: the beginning)")
    p.add_argument("--limit", type=_positive_int, metavar="N", help="stop after N changes")
    p.add_argument("--include-docs", action="store_true", help="include each changed document")
    p.add_argument("--filter", metavar="DDOC/NAME", help="a filter function of a design document")
    p.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="a query parameter for the filter function (repeatable)")

    p = command("get", "print a document")
    p.add_argument("db", metavar="DB", help="the database")
    p.add_argument("id", metavar="ID", help="the document id")
    p.add_argument("--rev", metavar="REV", help="this revision instead of the current one")
    p.add_argument("--conflicts", action="store_true", help="include _conflicts (conflicting revisions)")

    p = command("put", "create or update a document", """\
Write a document (a JSON object from FILE, from stdin, or --data) with id
ID; print {"ok", "id", "rev"}.  Updating needs the current revision, as the
document's _rev or --rev; --force writes over whatever revision is there.""")
    p.add_argument("db", metavar="DB", help="the database")
    p.add_argument("id", metavar="ID", help="the document id")
    p.add_argument("file", metavar="FILE", nargs="?", help="a file holding the document, or - for stdin")
    p.add_argument("-d", "--data", metavar="JSON", help="the document itself")
    p.add_argument("--rev", metavar="REV", help="the revision being updated")
    p.add_argument("--force", action="store_true", help="overwrite the current revision, whatever it is")

    p = command("delete", "delete a document", """\
Delete document ID (its current revision, or --rev); print {"ok", "id", "rev"}.""")
    p.add_argument("db", metavar="DB", help="the database")
    p.add_argument("id", metavar="ID", help="the document id")
    p.add_argument("--rev", metavar="REV", help="the revision to delete (default: the current one)")

    p = command("view", "query a view, printing one row per line", """\
Query view DDOC/VIEW of DB (or _all_docs) and print each row as a JSON
line ({"id", "key", "value"}, plus "doc" with --include-docs), streamed as
the rows arrive.  --key, --keys, --startkey and --endkey take JSON values:
--key '"abc"', --startkey '[2024, 1]', --keys '["a", "b"]'.""")
    p.add_argument("db", metavar="DB", help="the database")
    p.add_argument("view", metavar="DDOC/VIEW", help="the view (or _all_docs)")
    p.add_argument("--key", metavar="JSON", help="only rows with this key")
    p.add_argument("--keys", metavar="JSON", help="only rows with these keys (a JSON array)")
    p.add_argument("--startkey", metavar="JSON", help="rows from this key")
    p.add_argument("--endkey", metavar="JSON", help="rows up to this key")
    p.add_argument("--startkey-docid", metavar="ID", help="with --startkey: from this document id")
    p.add_argument("--endkey-docid", metavar="ID", help="with --endkey: up to this document id")
    p.add_argument("--inclusive-end", action=argparse.BooleanOptionalAction, default=None,
                   help="include rows whose key is --endkey (the default)")
    p.add_argument("--limit", type=_non_negative_int, metavar="N", help="at most N rows")
    p.add_argument("--skip", type=_non_negative_int, metavar="N", help="skip the first N rows")
    p.add_argument("--descending", action="store_true", default=None, help="in descending key order")
    p.add_argument("--reduce", action=argparse.BooleanOptionalAction, default=None,
                   help="use the view's reduce function (default: when it has one)")
    p.add_argument("--group", action="store_true", default=None, help="reduce to one row per key")
    p.add_argument("--group-level", type=_non_negative_int, metavar="N",
                   help="reduce array keys grouped by their first N elements")
    p.add_argument("--include-docs", action="store_true", default=None, help="include each row's document")

    p = command("info", "print the server's info, or a database's")
    p.add_argument("db", metavar="DB", nargs="?", help="the database (default: the server)")
    return parser


class Context:
    """What a command runs with: the server, where output and messages go, progress or not."""

    def __init__(self, args: argparse.Namespace, url: str, messages: Messages) -> None:
        try:
            self.couch = Couch(url, timeout=args.timeout)
        except (TypeError, ValueError) as exc:
            raise UsageError("bad server URL: %s" % exc) from None
        self.output = Output()
        self.messages = messages
        self.show_progress = args.progress if args.progress is not None else stderr_is_terminal()

    def database(self, name: str) -> Database:
        """The database ``name`` on the server (no I/O; a bad name is a UsageError)."""
        if "://" in name:
            raise UsageError("DB is a database name, not a URL (the server goes in --url or $COUCHDB_URL)")
        try:
            return Database(name, server=self.couch.server)
        except (TypeError, ValueError) as exc:
            raise UsageError(str(exc)) from None


def _commands() -> Dict[str, Callable[[Context, argparse.Namespace], int]]:
    from .docs import run_delete, run_get, run_info, run_put, run_view
    from .load import run_load
    from .read import run_dump, run_follow

    return {"load": run_load, "dump": run_dump, "follow": run_follow, "get": run_get, "put": run_put,
            "delete": run_delete, "view": run_view, "info": run_info}


def _password(url: str) -> Optional[str]:
    try:
        _, credentials = split_credentials(url)
    except ValueError:
        return None
    return credentials[1] if credentials else None


class _LogFilter(logging.Filter):
    """Without -v, only warnings: an error the library logs is also raised, and reported once."""

    def __init__(self, verbose: int, scrub: Callable[[str], str]) -> None:
        super().__init__()
        self.verbose = verbose
        self.scrub = scrub

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.verbose and record.levelno >= logging.ERROR:
            return False
        record.msg = self.scrub(record.getMessage())
        record.args = None
        return True


def _install_logging(verbose: int, scrub: Callable[[str], str]) -> List[Any]:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("corduroy: %(message)s"))
    handler.addFilter(_LogFilter(verbose, scrub))
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    installed = []
    for name in ("corduroy", "loop"):
        logger = logging.getLogger(name)
        installed.append((logger, logger.level, logger.propagate))
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    return [handler, installed]


def _remove_logging(state: List[Any]) -> None:
    handler, installed = state
    for logger, level, propagate in installed:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


class _ScrubAll:
    """Several scrubbers in a row (one per password seen on the command line or in the environment)."""

    def __init__(self, scrubbers: List[Scrubber]) -> None:
        self.scrubbers = scrubbers

    def __call__(self, text: str) -> str:
        for scrub in self.scrubbers:
            text = scrub(text)
        return text


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``corduroy`` command with ``argv`` (default: ``sys.argv[1:]``); return its exit code.

    Never raises for an expected failure: it prints one line on stderr and
    returns the exit code of its kind (see ``corduroy --help``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    env_url = os.environ.get("COUCHDB_URL") or None
    # Whatever happens, the password of a URL given anywhere on the command line is never printed.
    passwords = [p for p in (_password(a) for a in argv if "://" in a) if p]
    if env_url:
        passwords.append(_password(env_url) or "")
    scrub = _ScrubAll([Scrubber(p) for p in passwords if p] or [Scrubber()])
    messages = Messages(scrub)
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        messages(exc.message)
        return int(ExitCode.USAGE)
    except SystemExit as exc:  # --help and --version
        return int(exc.code or 0)
    logging_state = _install_logging(args.verbose, scrub)
    try:
        ctx = Context(args, args.url or env_url or DEFAULT_URL, messages)
        return int(_commands()[args.command](ctx, args))
    except CLIError as exc:
        messages(exc.message)
        return int(exc.code)
    except CouchError as exc:
        messages(describe(exc))
        return int(exit_code_for(exc))
    except KeyboardInterrupt:
        messages("interrupted")
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (`corduroy dump db | head`): stop quietly, and
        # keep Python from complaining when it flushes stdout at exit.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return int(ExitCode.BROKEN_PIPE)
    finally:
        _remove_logging(logging_state)
        try:
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            pass

