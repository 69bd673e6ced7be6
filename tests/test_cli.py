"""The ``corduroy`` command line, end to end against the test server.

Fast cases call :func:`corduroy.cli.main` in-process (``main(argv)`` returns
the exit code; output is captured by pytest); the cases that are about the
process itself (``python -m corduroy``, ``COUCHDB_URL``, Ctrl-C, a closed
pipe, tracebacks) run it in a subprocess.
"""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

from corduroy import Conflict, Couch, Database, __version__
from corduroy.cli import ExitCode, main
from tests.conftest import couch_request
from tests.consistency import EVERY_COPY, eventually, eventually_equal, until_conflict
from tests.proxy import FaultProxy
from tests.server.launcher import free_port

ROOT = Path(__file__).resolve().parent.parent


# -- helpers -------------------------------------------------------------------
def cli(capsys: Any, couch_url: str, *args: str) -> Tuple[int, str, str]:
    """Run ``corduroy --url couch_url ARGS`` in-process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main(["--url", couch_url, *args])
    out, err = capsys.readouterr()
    return code, out, err


def lines(text: str) -> List[Any]:
    """The JSON lines of ``text``, decoded."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def env_for(couch_url: Optional[str]) -> Dict[str, str]:
    env = dict(os.environ)
    env.pop("COUCHDB_URL", None)
    if couch_url is not None:
        env["COUCHDB_URL"] = couch_url
    return env


def run(couch_url: Optional[str], *args: str, stdin: Optional[bytes] = None,
        timeout: float = 60) -> subprocess.CompletedProcess:
    """``python -m corduroy ARGS`` with ``COUCHDB_URL=couch_url``, to completion."""
    return subprocess.run([sys.executable, "-m", "corduroy", *args], input=stdin, capture_output=True,
                          env=env_for(couch_url), cwd=str(ROOT), timeout=timeout)


class Running:
    """``python -m corduroy ARGS`` in the background, its stdout lines read as they come."""

    def __init__(self, couch_url: str, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "corduroy", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env_for(couch_url), cwd=str(ROOT))
        self._lines: "queue.Queue[Optional[bytes]]" = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def line(self, timeout: float = 20) -> Any:
        """The next JSON line (decoded); fails the test if none comes in time."""
        try:
            raw = self._lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail("no output line from %s within %s s" % (self.proc.args, timeout))
        assert raw is not None, "the command ended early: %r" % self.proc.stderr.read()  # type: ignore[union-attr]
        return json.loads(raw)

    def interrupt(self, timeout: float = 20) -> Tuple[int, str]:
        """Send SIGINT (Ctrl-C); return (exit code, stderr)."""
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        err = self.proc.stderr.read().decode("utf-8", "replace")  # type: ignore[union-attr]
        self.proc.stderr.close()  # type: ignore[union-attr]
        self._reader.join(5)
        return self.proc.returncode, err

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def one_line_error(err: str) -> str:
    """``err`` must be exactly one ``corduroy: ...`` line, without a traceback; return it."""
    assert "Traceback" not in err
    text = err.strip()
    assert text.startswith("corduroy: "), err
    assert "\n" not in text, err
    return text


def write_jsonl(path: Path, docs: List[Dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(doc) + "\n" for doc in docs), encoding="utf-8")
    return path


def without_rev(doc: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "_rev"}


@pytest.fixture
def db(couch_url: str, dbname: str) -> Database:
    return Couch(couch_url).create(dbname)


def some_docs(count: int, prefix: str = "d") -> List[Dict[str, Any]]:
    return [{"_id": "%s%04d" % (prefix, i), "n": i, "name": "doc %d \u00e9" % i, "tags": ["x", i % 3]}
            for i in range(count)]


# -- the command itself ---------------------------------------------------------
def test_help_lists_the_commands_and_the_exit_codes(capsys: Any) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("load", "dump", "follow", "get", "put", "delete", "view", "info"):
        assert command in out
    assert "exit codes:" in out and "130" in out and "COUCHDB_URL" in out
    assert main(["load", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--skip-existing" in out and "--batch-size" in out and "exit codes:" in out


def test_version(capsys: Any) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == "corduroy " + __version__


def test_python_dash_m_uses_couchdb_url(couch_url: str) -> None:
    done = run(couch_url, "info")
    assert done.returncode == 0, done.stderr
    welcome = json.loads(done.stdout)
    assert "version" in welcome
    assert done.stderr == b""


@pytest.mark.parametrize("argv, words", [
    (["frob"], "invalid choice"),
    (["get", "db"], "required"),
    (["load", "db", "f.jsonl", "--batch-size", "0"], "--batch-size"),
    (["load", "db", "f.jsonl", "--keep-revs", "--strip-revs"], "not allowed with"),
    (["view", "db", "a/b", "--limit", "-1"], "--limit"),
    (["info", "Not A Valid Name"], "invalid database name"),
    (["info", "http://127.0.0.1:5984/db"], "not a URL"),
    (["follow", "db", "--param", "min=1"], "--filter"),
    (["--url", "ftp://example.org", "info"], "http://"),
])
def test_usage_errors_exit_2_with_one_line(capsys: Any, argv: List[str], words: str) -> None:
    assert main(argv) == ExitCode.USAGE == 2
    captured = capsys.readouterr()
    assert words in one_line_error(captured.err)
    assert captured.out == ""


def test_missing_database_is_one_line_and_exit_3(couch_url: str, dbname: str) -> None:
    done = run(couch_url, "info", dbname)
    assert done.returncode == ExitCode.NOT_FOUND == 3
    line = one_line_error(done.stderr.decode())
    assert "not found" in line and dbname in line
    assert done.stdout == b""


def test_refused_connection_is_one_line_and_exit_4() -> None:
    done = run("http://127.0.0.1:%d" % free_port(), "get", "somedb", "someid")
    assert done.returncode == ExitCode.CONNECTION == 4
    assert "connection failed" in one_line_error(done.stderr.decode())


def test_timeout_bounds_each_request(capsys: Any, couch_url: str) -> None:
    with FaultProxy.for_url(couch_url) as proxy:
        proxy.stall()  # connections are accepted, nothing is answered
        started = time.monotonic()
        code = main(["--url", proxy.url_for(couch_url), "--timeout", "0.5", "info"])
        elapsed = time.monotonic() - started
        proxy.heal()
    assert code == ExitCode.CONNECTION
    assert "timed out" in one_line_error(capsys.readouterr().err)
    assert elapsed < 5


def test_credentials_are_never_printed(capsys: Any, couch_url: str, dbname: str) -> None:
    secret = "s3cret-Passw0rd"
    port = free_port()
    # A refused connection, the URL given on the command line.
    code = main(["--url", "http://admin:%s@127.0.0.1:%d" % (secret, port), "-vv", "info", "db"])
    err = capsys.readouterr().err
    assert code == ExitCode.CONNECTION and "127.0.0.1:%d" % port in err and secret not in err
    # Credentials the server refuses (Unauthorized), logged at -vv: nothing shows them.
    host = couch_url.split("://", 1)[1].rpartition("@")[2]
    bad = "http://nobody:%s@%s" % (secret, host)
    code = main(["-vv", "--url", bad, "get", dbname, "doc"])
    captured = capsys.readouterr()
    assert code in (ExitCode.DENIED, ExitCode.NOT_FOUND)
    assert secret not in captured.err and secret not in captured.out and "nobody" not in captured.err
    # A usage error that echoes the URL back.
    code = main(["info", "--url", bad, "somedb", bad])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE and "unrecognized arguments" in err and secret not in err
    # COUCHDB_URL in a subprocess, with the request log on.
    done = run(bad, "-vv", "dump", dbname)
    assert done.returncode in (ExitCode.DENIED, ExitCode.NOT_FOUND)
    assert secret.encode() not in done.stderr + done.stdout
    one_line_error(done.stderr.decode().splitlines()[-1])


def test_info_of_the_server_and_of_a_database(capsys: Any, couch_url: str, db: Database) -> None:
    code, out, err = cli(capsys, couch_url, "info")
    assert code == 0 and err == ""
    assert "version" in lines(out)[0]
    db.save([{"_id": "a"}, {"_id": "b"}], w=EVERY_COPY)  # counted in every copy (tests.consistency)
    code, out, err = cli(capsys, couch_url, "info", db.name)
    assert code == 0
    [info] = lines(out)
    assert info["db_name"] == db.name and info["doc_count"] == 2


# -- get, put, delete ---------------------------------------------------------
def test_put_get_delete(capsys: Any, couch_url: str, db: Database) -> None:
    first: Dict[str, Any] = {}

    def attempt(n: int) -> Any:
        doc_id = "a/b c" + ("" if n == 0 else " %d" % n)  # a fresh document each try
        code, out, _ = cli(capsys, couch_url, "put", db.name, doc_id, "--data", '{"x": 1, "s": "\u00e9"}')
        assert code == 0
        [saved] = lines(out)
        assert saved["ok"] is True and saved["id"] == doc_id and saved["rev"].startswith("1-")
        assert db.get(doc_id)["s"] == "\u00e9"

        code, out, _ = cli(capsys, couch_url, "get", db.name, doc_id)
        [doc] = lines(out)
        assert code == 0 and doc == {"_id": doc_id, "_rev": saved["rev"], "x": 1, "s": "\u00e9"}

        # An update needs the current revision...
        code, out, err = cli(capsys, couch_url, "put", db.name, doc_id, "--data", '{"x": 2}')
        if code == 0:  # accepted by a copy the first put had not reached yet (a cluster: tests.consistency)
            return out
        assert code == ExitCode.CONFLICT == 5 and out == ""
        assert "conflict" in one_line_error(err)
        first.update(id=doc_id, saved=saved)
        raise Conflict(err)

    until_conflict(attempt)
    doc_id, saved = first["id"], first["saved"]
    code, out, _ = cli(capsys, couch_url, "put", db.name, doc_id, "--data", '{"x": 2}', "--rev", saved["rev"])
    [second] = lines(out)
    assert code == 0 and second["rev"].startswith("2-")
    # ...or --force.
    code, out, _ = cli(capsys, couch_url, "put", db.name, doc_id, "-d", '{"x": 3}', "--force")
    [third] = lines(out)
    assert code == 0 and third["rev"].startswith("3-") and db.get(doc_id)["x"] == 3

    code, out, _ = cli(capsys, couch_url, "get", db.name, doc_id, "--rev", second["rev"])
    assert code == 0 and lines(out)[0]["x"] == 2

    # delete with a stale revision conflicts; without --rev it takes the current one.
    code, _, err = cli(capsys, couch_url, "delete", db.name, doc_id, "--rev", saved["rev"])
    assert code == ExitCode.CONFLICT and "conflict" in one_line_error(err)
    code, out, _ = cli(capsys, couch_url, "delete", db.name, doc_id)
    [deleted] = lines(out)
    assert code == 0 and deleted["id"] == doc_id and deleted["rev"].startswith("4-")
    code, out, err = cli(capsys, couch_url, "get", db.name, doc_id)
    assert code == ExitCode.NOT_FOUND and out == "" and "not found" in one_line_error(err)
    code, _, err = cli(capsys, couch_url, "delete", db.name, "never-was")
    assert code == ExitCode.NOT_FOUND and "not found" in one_line_error(err)


def test_get_with_conflicts(capsys: Any, couch_url: str, db: Database) -> None:
    db.save([{"_id": "c", "_rev": "1-aaaa", "v": 1}, {"_id": "c", "_rev": "1-bbbb", "v": 2}], new_edits=False)
    code, out, _ = cli(capsys, couch_url, "get", db.name, "c", "--conflicts")
    [doc] = lines(out)
    assert code == 0 and doc["_rev"] == "1-bbbb" and doc["_conflicts"] == ["1-aaaa"]
    code, out, _ = cli(capsys, couch_url, "get", db.name, "c")
    assert "_conflicts" not in lines(out)[0]


def test_put_reads_a_file_or_stdin(capsys: Any, couch_url: str, db: Database, tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    path.write_text('{\n  "_id": "f",\n  "from": "file"\n}\n')
    code, out, _ = cli(capsys, couch_url, "put", db.name, "f", str(path))
    assert code == 0 and db.get("f")["from"] == "file"
    done = run(couch_url, "put", db.name, "s", stdin=b'{"from": "stdin"}')
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["id"] == "s" and db.get("s")["from"] == "stdin"
    done = run(couch_url, "put", db.name, "t", "-", stdin=b'{"from": "dash"}')
    assert done.returncode == 0 and db.get("t")["from"] == "dash"


@pytest.mark.parametrize("args, words", [
    (["--data", "[1, 2]"], "JSON object"),
    (["--data", "{nope"], "JSON"),
    (["--data", '{"_id": "other"}'], "_id"),
    (["--data", '{"x": NaN}'], "NaN"),
    (["--data", '{"_rev": "1-a"}', "--rev", "1-b"], "_rev"),
    (["/nonexistent/doc.json"], "cannot read"),
])
def test_put_refuses_bad_input_before_any_write(capsys: Any, couch_url: str, db: Database, args: List[str],
                                                words: str) -> None:
    code, out, err = cli(capsys, couch_url, "put", db.name, "p", *args)
    assert code == ExitCode.USAGE and out == ""
    assert words in one_line_error(err)
    assert db.info()["doc_count"] == 0


# -- view -------------------------------------------------------------------
@pytest.fixture
def staff(db: Database) -> Database:
    db.save([
        {"_id": "e1", "last": "abbott", "dept": "press", "hired": [2007, 11]},
        {"_id": "e2", "last": "coverley", "dept": "press", "hired": [2007, 12]},
        {"_id": "e3", "last": "cullen", "dept": "policy", "hired": [2007, 12]},
        {"_id": "e4", "last": "murray", "dept": "policy", "hired": [2008, 1]},
        {"_id": "_design/staff", "views": {
            "byname": {"map": "function(doc) { if (doc.last) emit(doc.last, null); }"},
            "bydept": {"map": "function(doc) { if (doc.dept) emit(doc.dept, 1); }", "reduce": "_count"},
            "byhired": {"map": "function(doc) { if (doc.hired) emit(doc.hired, 1); }", "reduce": "_count"},
        }},
    ], w=EVERY_COPY)  # in every copy before the views read it (a cluster: tests.consistency)
    return db


def view(capsys: Any, couch_url: str, db: Database, *args: str) -> List[Any]:
    code, out, err = cli(capsys, couch_url, "view", db.name, *args)
    assert code == 0, err
    return lines(out)


def test_view_rows_and_key_options(capsys: Any, couch_url: str, staff: Database) -> None:
    rows = view(capsys, couch_url, staff, "staff/byname")
    assert rows == [{"id": "e1", "key": "abbott", "value": None}, {"id": "e2", "key": "coverley", "value": None},
                    {"id": "e3", "key": "cullen", "value": None}, {"id": "e4", "key": "murray", "value": None}]
    assert [r["id"] for r in view(capsys, couch_url, staff, "staff/byname", "--key", '"cullen"')] == ["e3"]
    assert [r["id"] for r in view(capsys, couch_url, staff, "_design/staff/byname",
                                  "--keys", '["murray", "abbott"]')] == ["e4", "e1"]
    assert [r["key"] for r in view(capsys, couch_url, staff, "staff/byname", "--startkey", '"c"',
                                   "--endkey", '"d"')] == ["coverley", "cullen"]
    assert [r["key"] for r in view(capsys, couch_url, staff, "staff/byname", "--startkey", '"coverley"',
                                   "--endkey", '"murray"', "--no-inclusive-end")] == ["coverley", "cullen"]
    assert [r["key"] for r in view(capsys, couch_url, staff, "staff/byname", "--descending",
                                   "--limit", "2")] == ["murray", "cullen"]
    assert [r["key"] for r in view(capsys, couch_url, staff, "staff/byname", "--skip", "3")] == ["murray"]
    rows = view(capsys, couch_url, staff, "staff/byname", "--key", '"abbott"', "--include-docs")
    assert rows[0]["doc"]["dept"] == "press" and rows[0]["doc"]["_id"] == "e1"


def test_view_docid_options_reach_the_server(capsys: Any, couch_url: str, staff: Database,
                                             monkeypatch: Any) -> None:
    paths: List[str] = []
    original = Database._request

    def recording(self: Database, method: str, path: str = "", **kwargs: Any) -> Any:
        paths.append(path)
        return original(self, method, path, **kwargs)

    monkeypatch.setattr(Database, "_request", recording)
    rows = view(capsys, couch_url, staff, "staff/byhired", "--reduce", "--startkey", "[2007, 12]",
                "--startkey-docid", "e3", "--endkey", "[2008, 1]", "--endkey-docid", "e4", "--no-reduce")
    [path] = paths
    query = dict(part.split("=", 1) for part in path.split("?", 1)[1].split("&"))
    assert query == {"startkey": "%5B2007%2C12%5D", "startkey_docid": "e3", "endkey": "%5B2008%2C1%5D",
                     "endkey_docid": "e4", "reduce": "false"}
    ids = [r["id"] for r in rows]
    assert ids[-2:] == ["e3", "e4"] and "e1" not in ids  # (pouchdb-server ignores startkey_docid)


def test_view_reduce_and_group(capsys: Any, couch_url: str, staff: Database) -> None:
    assert view(capsys, couch_url, staff, "staff/bydept") == [{"key": None, "value": 4}]
    assert view(capsys, couch_url, staff, "staff/bydept", "--group") == [
        {"key": "policy", "value": 2}, {"key": "press", "value": 2}]
    assert len(view(capsys, couch_url, staff, "staff/bydept", "--no-reduce")) == 4
    assert view(capsys, couch_url, staff, "staff/byhired", "--group-level", "1") == [
        {"key": [2007], "value": 3}, {"key": [2008], "value": 1}]


def test_view_all_docs(capsys: Any, couch_url: str, staff: Database) -> None:
    rows = view(capsys, couch_url, staff, "_all_docs", "--startkey", '"e"', "--endkey", '"e\ufff0"')
    assert [r["id"] for r in rows] == ["e1", "e2", "e3", "e4"]
    assert rows[0]["value"]["rev"].startswith("1-")
    rows = view(capsys, couch_url, staff, "_all_docs", "--keys", '["e2", "zz"]')
    assert rows[0]["id"] == "e2" and rows[1] == {"key": "zz", "error": "not_found"}
    code, _, err = cli(capsys, couch_url, "view", staff.name, "_all_docs", "--group")
    assert code == ExitCode.USAGE and "reduce" in one_line_error(err)


@pytest.mark.parametrize("args, code, words", [
    (["staff/byname", "--key", "abbott"], ExitCode.USAGE, "JSON"),
    (["staff/byname", "--keys", '"abbott"'], ExitCode.USAGE, "array"),
    (["staff/byname", "--key", '"a"', "--keys", '["a"]'], ExitCode.USAGE, "keys"),
    (["noview"], ExitCode.USAGE, "ddoc/name"),
    (["staff/nope"], ExitCode.NOT_FOUND, "not found"),
    (["nope/nope"], ExitCode.NOT_FOUND, "not found"),
])
def test_view_errors(capsys: Any, couch_url: str, staff: Database, args: List[str], code: int,
                     words: str) -> None:
    got, out, err = cli(capsys, couch_url, "view", staff.name, *args)
    assert got == code and out == ""
    assert words in one_line_error(err)


# -- load -----------------------------------------------------------------------
def test_load_writes_every_document_and_sums_up(capsys: Any, couch_url: str, db: Database,
                                                tmp_path: Path) -> None:
    docs = some_docs(250) + [{"no": "id"}, {"no": "id either"}]
    path = write_jsonl(tmp_path / "docs.jsonl", docs)
    with path.open("a") as f:
        f.write("\n   \n")  # blank lines are skipped
    code, out, err = cli(capsys, couch_url, "load", db.name, str(path), "--batch-size", "40")
    assert code == 0 and err == ""
    assert lines(out) == [{"read": 252, "loaded": 252, "skipped": 0, "conflicts": 0, "rejected": 0}]
    eventually_equal(lambda: db.info()["doc_count"], 252)

    def every_document() -> Dict[str, Any]:
        # _all_docs reads whichever copy of each shard answers first (eventually consistent on a cluster)
        found = {row.id: without_rev(row.doc) for row in db.all_docs(include_docs=True)}
        assert len(found) == 252
        return found

    stored = eventually(every_document)
    for doc in docs[:250]:
        assert stored[doc["_id"]] == doc
    generated = [d for d in stored.values() if "no" in d]
    assert sorted(d["no"] for d in generated) == ["id", "id either"]


def test_load_keeps_several_batches_in_flight(capsys: Any, couch_url: str, db: Database, tmp_path: Path,
                                              monkeypatch: Any) -> None:
    in_flight = [0]
    peak = [0]
    batches: List[int] = []
    original = Database.save

    def counting_save(self: Database, docs: Any, *args: Any, **kwargs: Any) -> Any:
        op = original(self, docs, *args, **kwargs)
        batches.append(len(docs))
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])

        def done(data: Any, status: Any) -> None:
            in_flight[0] -= 1

        op.add_callback(done)
        return op

    monkeypatch.setattr(Database, "save", counting_save)
    path = write_jsonl(tmp_path / "docs.jsonl", some_docs(300))
    code, out, _ = cli(capsys, couch_url, "load", db.name, str(path), "--batch-size", "25", "--concurrency", "5")
    assert code == 0 and lines(out)[0]["loaded"] == 300
    assert batches == [25] * 12
    assert peak[0] == 5
    del batches[:]
    peak[0] = 0
    code, out, _ = cli(capsys, couch_url, "load", db.name, str(path), "--strip-revs", "--batch-size", "100",
                       "--concurrency", "1")
    assert code == 1 and peak[0] == 1 and batches == [100] * 3


def test_load_reports_each_conflict_and_exits_1(capsys: Any, couch_url: str, db: Database,
                                                tmp_path: Path) -> None:
    def attempt(n: int) -> Any:
        p = "d" if n == 0 else "r%d-d" % n  # fresh ids each try
        db.save([{"_id": p + "0003", "old": True}, {"_id": p + "0007", "old": True}], w=EVERY_COPY)
        # The same id twice in the file: the second one starts a new batch, and that
        # batch waits for the one writing the first, so the first wins. (On a cluster a
        # copy the first write has not reached yet may accept the second: tests.consistency.)
        docs = some_docs(10, p) + [{"_id": p + "0009", "again": True}]
        path = write_jsonl(tmp_path / ("docs%d.jsonl" % n), docs)
        code, out, err = cli(capsys, couch_url, "load", db.name, str(path), "--batch-size", "4")
        assert code == ExitCode.PARTIAL == 1
        conflicts = ['corduroy: conflict: "%s0003"' % p, 'corduroy: conflict: "%s0007"' % p]
        if sorted(err.splitlines()) == conflicts:  # the second d0009 was accepted
            assert lines(out) == [{"read": 11, "loaded": 9, "skipped": 0, "conflicts": 2, "rejected": 0}]
            return out
        assert lines(out) == [{"read": 11, "loaded": 8, "skipped": 0, "conflicts": 3, "rejected": 0}]
        assert sorted(err.splitlines()) == conflicts + ['corduroy: conflict: "%s0009"' % p]
        assert db.get(p + "0003") == {"_id": p + "0003", "_rev": db.get(p + "0003")["_rev"], "old": True}
        assert db.get(p + "0005")["n"] == 5
        kept = db.get(p + "0009", conflicts=True)
        assert kept["n"] == 9 and "again" not in kept and "_conflicts" not in kept
        tries.append(n)
        raise Conflict(err)

    tries: List[int] = []
    until_conflict(attempt)
    eventually_equal(lambda: db.info()["doc_count"], 10 * (tries[0] + 1))


def test_load_reports_rejected_documents(capsys: Any, couch_url: str, db: Database, tmp_path: Path) -> None:
    db.save({"_id": "_design/rules", "validate_doc_update":
             "function(doc) { if (doc.bad) { throw({forbidden: 'no bad documents'}); } }"},
            w=EVERY_COPY)  # in every copy: each copy checks the writes it gets with its own design docs
    path = write_jsonl(tmp_path / "docs.jsonl", [{"_id": "good"}, {"_id": "evil", "bad": True}])
    code, out, err = cli(capsys, couch_url, "load", db.name, str(path))
    assert code == ExitCode.PARTIAL
    assert lines(out)[0] == {"read": 2, "loaded": 1, "skipped": 0, "conflicts": 0, "rejected": 1}
    assert err == 'corduroy: rejected: "evil": forbidden: no bad documents\n'


def test_load_into_a_missing_database(capsys: Any, couch_url: str, dbname: str, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "docs.jsonl", some_docs(3))
    code, out, err = cli(capsys, couch_url, "load", dbname, str(path))
    assert code == ExitCode.NOT_FOUND and out == ""
    assert "--create" in one_line_error(err)
    assert not Couch(couch_url).contains(dbname)
    code, out, err = cli(capsys, couch_url, "load", dbname, str(path), "--create")
    assert code == 0 and lines(out)[0]["loaded"] == 3
    eventually_equal(lambda: Database(dbname, server=Couch(couch_url).server).info()["doc_count"], 3)


@pytest.mark.parametrize("content, line, words", [
    (b'{"_id": "a"}\n{"_id": "b",\n{"_id": "c"}\n', 2, "not JSON"),
    (b'{"_id": "a"}\n[1, 2]\n', 2, "expected a JSON object"),
    (b'{"_id": "a"}\n{"_id": 7}\n', 2, "_id must be a non-empty string"),
    (b'{"_id": "a"}\n\n{"x": Infinity}\n', 3, "not JSON"),
    (b'{"_id": "a"}\n{"_id": "\xff"}\n', 2, "not JSON"),
])
def test_load_checks_a_file_before_writing_anything(capsys: Any, couch_url: str, db: Database, tmp_path: Path,
                                                    content: bytes, line: int, words: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    code, out, err = cli(capsys, couch_url, "load", db.name, str(path))
    assert code == ExitCode.USAGE and out == ""
    assert "%s, line %d: %s" % (path, line, words) in one_line_error(err)
    # The bad line comes after 3000 good ones: nothing is written all the same.
    big = tmp_path / "big.jsonl"
    big.write_bytes(b"".join(b'{"_id": "z%04d"}\n' % i for i in range(3000)) + content)
    code, out, err = cli(capsys, couch_url, "load", db.name, str(big), "--batch-size", "100")
    assert code == ExitCode.USAGE and "line %d: %s" % (3000 + line, words) in one_line_error(err)
    assert db.info()["doc_count"] == 0


def test_load_from_stdin(couch_url: str, db: Database) -> None:
    data = "".join(json.dumps(d) + "\n" for d in some_docs(30)).encode()
    done = run(couch_url, "load", db.name, "-", "--batch-size", "7", stdin=data)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["loaded"] == 30 and done.stderr == b""
    eventually_equal(lambda: db.info()["doc_count"], 30)
    # A bad line on stdin stops the load there, naming it.
    done = run(couch_url, "load", db.name, "-", stdin=b'{"_id": "ok"}\nnot json\n')
    assert done.returncode == ExitCode.USAGE
    assert "stdin, line 2: not JSON" in one_line_error(done.stderr.decode())
    eventually_equal(lambda: db.info()["doc_count"], 30)  # the bad line was in the first batch: nothing sent
    # After whole batches went in, the message says so.
    data = "".join(json.dumps(d) + "\n" for d in some_docs(30, prefix="e")).encode() + b"[]\n"
    done = run(couch_url, "load", db.name, "-", "--batch-size", "10", "--concurrency", "1", stdin=data)
    assert done.returncode == ExitCode.USAGE
    line = one_line_error(done.stderr.decode())
    assert "stdin, line 31: expected a JSON object" in line and "30 documents were loaded" in line
    eventually_equal(lambda: db.info()["doc_count"], 60)


def test_load_skip_existing_resumes_after_an_interruption(couch_url: str, db: Database, tmp_path: Path) -> None:
    total = 6000
    path = write_jsonl(tmp_path / "docs.jsonl", some_docs(total))
    loading = Running(couch_url, "load", db.name, str(path), "--batch-size", "50", "--concurrency", "1")
    try:
        deadline = time.monotonic() + 30
        while couch_request(couch_url, "GET", "/" + db.name)[1]["doc_count"] < 500:
            assert loading.proc.poll() is None, "the load ended before it could be interrupted"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        code, err = loading.interrupt()
    finally:
        loading.close()
    assert code == ExitCode.INTERRUPTED == 130
    line = one_line_error(err)
    assert "interrupted" in line and "--skip-existing" in line

    def count_before() -> int:
        # another copy than the one counted above may still lag behind it (tests.consistency)
        count = couch_request(couch_url, "GET", "/" + db.name)[1]["doc_count"]
        assert 500 <= count < total
        return count

    before = eventually(count_before)
    done = run(couch_url, "load", db.name, str(path), "--skip-existing", "--batch-size", "500")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["conflicts"] == 0 and summary["read"] == total
    # (The batch in flight at the interruption may have reached the server after it was counted.)
    assert summary["skipped"] >= before and summary["loaded"] == total - summary["skipped"]
    eventually_equal(lambda: db.info()["doc_count"], total)


def test_load_reports_a_lost_server_and_how_to_resume(capsys: Any, couch_url: str, db: Database,
                                                      tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "docs.jsonl", some_docs(2000))
    with FaultProxy.for_url(couch_url) as proxy:
        proxy.latency(0.02)

        def drop_when_loading() -> None:
            deadline = time.monotonic() + 30
            while couch_request(couch_url, "GET", "/" + db.name)[1]["doc_count"] < 200:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.01)
            proxy.drop()

        dropper = threading.Thread(target=drop_when_loading, daemon=True)
        dropper.start()
        code, out, err = cli(capsys, proxy.url_for(couch_url), "load", db.name, str(path), "--batch-size", "20",
                             "--concurrency", "2")
        dropper.join(30)
    assert code == ExitCode.CONNECTION and out == ""
    line = one_line_error(err)
    assert "load again with --skip-existing" in line
    code, out, _ = cli(capsys, couch_url, "load", db.name, str(path), "--skip-existing")
    summary = lines(out)[0]
    assert code == 0 and summary["conflicts"] == 0 and summary["skipped"] + summary["loaded"] == 2000
    assert summary["skipped"] >= 200
    eventually_equal(lambda: db.info()["doc_count"], 2000)


def test_load_skip_existing_reloads_deleted_documents(capsys: Any, couch_url: str, db: Database,
                                                      tmp_path: Path) -> None:
    db.save([{"_id": "d0000"}, {"_id": "d0001"}], w=EVERY_COPY)
    # deleted in every copy: --skip-existing asks _all_docs, which reads any copy (tests.consistency)
    db.save(dict(db.get("d0001"), _deleted=True), w=EVERY_COPY)
    path = write_jsonl(tmp_path / "docs.jsonl", some_docs(3) + [{"no": "id"}])
    code, out, _ = cli(capsys, couch_url, "load", db.name, str(path), "--skip-existing")
    assert code == 0
    assert lines(out)[0] == {"read": 4, "loaded": 3, "skipped": 1, "conflicts": 0, "rejected": 0}
    assert "n" not in db.get("d0000") and db.get("d0001")["n"] == 1


def test_dump_then_load_keep_revs_restores_exactly(capsys: Any, couch_url: str, db: Database, dbname: str,
                                                   tmp_path: Path) -> None:
    db.save(some_docs(20), w=EVERY_COPY)  # in every copy before dump reads _all_docs (tests.consistency)
    doc = db.get("d0004")
    doc["edited"] = True
    db.save(doc, w=EVERY_COPY)
    code, out, _ = cli(capsys, couch_url, "dump", db.name)
    assert code == 0
    dump = tmp_path / "dump.jsonl"
    dump.write_text(out)
    copy = Couch(couch_url).create(dbname + "_copy")
    try:
        code, out, err = cli(capsys, couch_url, "load", copy.name, str(dump), "--keep-revs")
        assert code == 0, err
        assert lines(out)[0]["loaded"] == 20
        assert copy.get("d0004")["_rev"] == doc["_rev"] and copy.get("d0004")["edited"] is True
        # the load is under test: its writes reach every copy of `copy` a moment later (tests.consistency)
        eventually_equal(lambda: {r.id: r.value["rev"] for r in copy.all_docs()},
                         {r.id: r.value["rev"] for r in db.all_docs()})
        # Into an empty database, a dump as it is conflicts (its revisions are not there);
        # --strip-revs loads it as new documents.
        Couch(couch_url).delete(copy.name)
        Couch(couch_url).create(copy.name)
        code, out, err = cli(capsys, couch_url, "load", copy.name, str(dump))
        assert code == ExitCode.PARTIAL and lines(out)[0]["conflicts"] == 20 and len(err.splitlines()) == 20
        code, out, _ = cli(capsys, couch_url, "load", copy.name, str(dump), "--strip-revs")
        assert code == 0 and lines(out)[0]["loaded"] == 20
        assert copy.get("d0004")["_rev"].startswith("1-") and copy.get("d0004")["edited"] is True
        # --keep-revs needs revisions.
        code, out, err = cli(capsys, couch_url, "load", copy.name, str(write_jsonl(tmp_path / "n.jsonl",
                                                                                   [{"_id": "x"}])), "--keep-revs")
        assert code == ExitCode.USAGE and "--keep-revs" in one_line_error(err)
    finally:
        Couch(couch_url).delete(copy.name)


def test_load_progress_bar_only_when_asked_or_on_a_terminal(couch_url: str, db: Database, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "docs.jsonl", some_docs(50))
    done = run(couch_url, "load", db.name, str(write_jsonl(tmp_path / "more.jsonl", some_docs(50, "e"))))
    assert done.returncode == 0 and done.stderr == b""  # piped: quiet
    # In every copy, so that each copy refuses the load below (a cluster: tests.consistency).
    db.save(some_docs(50), w=EVERY_COPY)
    done = run(couch_url, "load", db.name, str(path), "--strip-revs", "--progress")
    err = done.stderr.decode()
    assert done.returncode == ExitCode.PARTIAL
    assert "50/50" in err and "doc/s" in err  # count, total and rate
    assert err.count('corduroy: conflict: "d00') == 50

    def dump() -> str:
        # dump reads _all_docs, maybe from a copy the first load has not reached yet (tests.consistency)
        done = run(couch_url, "dump", db.name, "--progress")
        assert done.returncode == 0 and len(done.stdout.splitlines()) == 100
        return done.stderr.decode()

    err = eventually(dump)
    assert "100/100" in err and "doc/s" in err


# -- dump and follow ----------------------------------------------------------------
def test_dump_pages_with_bounded_requests(capsys: Any, couch_url: str, db: Database, monkeypatch: Any) -> None:
    docs = some_docs(20) + [{"_id": "_design/x", "views": {}}]
    db.save([dict(doc) for doc in docs], w=EVERY_COPY)
    limits: List[str] = []
    original = Database._request

    def recording(self: Database, method: str, path: str = "", **kwargs: Any) -> Any:
        if path.startswith("/_all_docs"):
            limits.append(path.split("limit=", 1)[1].split("&", 1)[0])
        return original(self, method, path, **kwargs)

    monkeypatch.setattr(Database, "_request", recording)
    code, out, err = cli(capsys, couch_url, "dump", db.name, "--page-size", "7")
    assert code == 0 and err == ""
    dumped = lines(out)
    assert [d["_id"] for d in dumped] == sorted(d["_id"] for d in docs)
    assert {d["_id"]: without_rev(d) for d in dumped} == {d["_id"]: d for d in docs}
    assert all(d["_rev"].startswith("1-") for d in dumped)
    assert len(limits) == 3 and set(limits) == {"8"}  # 7 rows a page, and the start of the next


def test_dump_with_attachments(capsys: Any, couch_url: str, db: Database) -> None:
    db.save({"_id": "a", "_attachments": {"hello.txt": {"content_type": "text/plain", "data": "aGVsbG8="}}},
            w=EVERY_COPY)
    code, out, _ = cli(capsys, couch_url, "dump", db.name)
    assert code == 0 and lines(out)[0]["_attachments"]["hello.txt"].get("stub") is True
    code, out, _ = cli(capsys, couch_url, "dump", db.name, "--attachments")
    assert code == 0 and lines(out)[0]["_attachments"]["hello.txt"]["data"] == "aGVsbG8="


def test_dump_missing_database(capsys: Any, couch_url: str, dbname: str) -> None:
    code, out, err = cli(capsys, couch_url, "dump", dbname)
    assert code == ExitCode.NOT_FOUND and out == "" and "not found" in one_line_error(err)


def test_dump_into_a_closed_pipe_stops_quietly(couch_url: str, db: Database) -> None:
    db.save(some_docs(3000), w=EVERY_COPY)
    proc = subprocess.Popen([sys.executable, "-m", "corduroy", "dump", db.name, "--page-size", "100"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_for(couch_url), cwd=str(ROOT))
    try:
        assert proc.stdout is not None and proc.stderr is not None
        first = json.loads(proc.stdout.readline())
        assert first["_id"] == "d0000"
        proc.stdout.close()  # like `corduroy dump db | head -1`
        err = proc.stderr.read()
        assert proc.wait(30) == ExitCode.BROKEN_PIPE == 141
        assert err == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]


def test_dump_changes_follows_until_interrupted(couch_url: str, db: Database) -> None:
    db.save(some_docs(5), w=EVERY_COPY)  # in every copy before dump reads them (tests.consistency)
    dumping = Running(couch_url, "dump", db.name, "--changes")
    try:
        # In no particular order: _changes is ordered only within a shard (CouchDB).
        assert sorted(dumping.line()["_id"] for _ in range(5)) == ["d0000", "d0001", "d0002", "d0003", "d0004"]
        db.save({"_id": "later", "v": 1})
        assert without_rev(dumping.line()) == {"_id": "later", "v": 1}
        gone = db.get("d0002")
        db.delete(gone)
        tombstone = dumping.line()
        assert tombstone == {"_id": "d0002", "_rev": gone["_rev"], "_deleted": True}
        code, err = dumping.interrupt()
    finally:
        dumping.close()
    assert code == ExitCode.INTERRUPTED and one_line_error(err) == "corduroy: interrupted"


def test_follow_from_the_start_with_limit_and_resume(capsys: Any, couch_url: str, db: Database) -> None:
    db.save(some_docs(4), w=EVERY_COPY)  # in every copy before the feed reads them (tests.consistency)
    code, out, err = cli(capsys, couch_url, "follow", db.name, "--limit", "3")
    assert code == 0 and err == ""
    changes = lines(out)
    everything = {"d0000", "d0001", "d0002", "d0003"}
    # Three different documents, but not necessarily the first three written:
    # the CouchDB API promises _changes only a partial order (Apache CouchDB
    # merges the feeds of the database's shards; pouchdb-server has one feed
    # in write order).  Sequences are opaque tokens (strings on CouchDB).
    seen = {c["id"] for c in changes}
    assert len(changes) == len(seen) == 3 and seen < everything
    assert all("seq" in c and c["changes"][0]["rev"].startswith("1-") for c in changes)
    # A later run resumes after the last seq printed and reaches the one
    # document left (CouchDB may send a change again after a `since`, never skip one).
    since = changes[-1]["seq"]
    for _ in range(4):
        code, out, _ = cli(capsys, couch_url, "follow", db.name, "--since", str(since), "--limit", "1",
                           "--include-docs")
        [change] = lines(out)
        assert code == 0 and change["id"] in everything and change["doc"]["n"] == int(change["id"][1:])
        if change["id"] not in seen:
            break
        since = change["seq"]
    assert change["id"] == (everything - seen).pop()


def test_follow_with_a_filter(capsys: Any, couch_url: str, db: Database) -> None:
    db.save({"_id": "_design/f", "filters": {
        "atleast": "function(doc, req) { return doc.n >= parseInt(req.query.min, 10); }"}}, w=EVERY_COPY)
    db.save(some_docs(6), w=EVERY_COPY)  # in every copy before the feed reads them (tests.consistency)
    code, out, _ = cli(capsys, couch_url, "follow", db.name, "--filter", "f/atleast", "--param", "min=4",
                       "--limit", "2")
    assert code == 0 and sorted(c["id"] for c in lines(out)) == ["d0004", "d0005"]
    done = run(couch_url, "follow", db.name, "--filter", "nope/none", "--limit", "1", timeout=30)
    assert done.returncode == ExitCode.NOT_FOUND and done.stdout == b""
    assert "not found" in one_line_error(done.stderr.decode())


def test_follow_prints_live_changes_until_interrupted(couch_url: str, db: Database) -> None:
    db.save(some_docs(2), w=EVERY_COPY)  # in every copy before update_seq is read
    since = db.info()["update_seq"]
    following = Running(couch_url, "follow", db.name, "--since", str(since))
    try:
        db.save({"_id": "new", "v": 1})
        change = following.line()
        assert change["id"] == "new" and "seq" in change
        db.save(db.get("new"))
        assert following.line()["changes"][0]["rev"].startswith("2-")
        code, err = following.interrupt()
    finally:
        following.close()
    assert code == ExitCode.INTERRUPTED and one_line_error(err) == "corduroy: interrupted"


def test_follow_missing_database(capsys: Any, couch_url: str, dbname: str) -> None:
    code, out, err = cli(capsys, couch_url, "follow", dbname)
    assert code == ExitCode.NOT_FOUND and out == "" and "not found" in one_line_error(err)


# -- the big round trip ------------------------------------------------------------------
@pytest.mark.slow
def test_load_and_dump_100000_documents(couch_url: str, db: Database, tmp_path: Path) -> None:
    total = 100_000
    source = tmp_path / "source.jsonl"
    expected = set()
    with source.open("w", encoding="utf-8") as f:
        for i in range(total):
            doc = {"_id": "doc-%06d" % i, "n": i, "name": "n\u00e9 %d" % i, "even": i % 2 == 0,
                   "tags": ["t%d" % (i % 7)]}
            line = json.dumps(doc, sort_keys=True)
            expected.add(line)
            f.write(line + "\n")
    started = time.monotonic()
    done = run(couch_url, "load", db.name, str(source), timeout=240)
    loaded = time.monotonic()
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"read": total, "loaded": total, "skipped": 0, "conflicts": 0,
                                       "rejected": 0}
    assert done.stderr == b""
    dump = tmp_path / "dump.jsonl"
    with dump.open("wb") as out:
        proc = subprocess.run([sys.executable, "-m", "corduroy", "dump", db.name], stdout=out,
                              stderr=subprocess.PIPE, env=env_for(couch_url), cwd=str(ROOT), timeout=240)
    dumped = time.monotonic()
    assert proc.returncode == 0, proc.stderr
    seen = set()
    count = 0
    with dump.open(encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            assert doc.pop("_rev").startswith("1-")
            seen.add(json.dumps(doc, sort_keys=True))
            count += 1
    assert count == total and seen == expected
    print("load %.1f s, dump %.1f s" % (loaded - started, dumped - loaded))


# -- the guide ---------------------------------------------------------------------------
def test_the_guide_commands_run(couch_url: str) -> None:
    """Every ``$ corduroy`` line of docs/guide/cli.rst's console blocks runs, in order, and succeeds."""
    guide = (ROOT / "docs" / "guide" / "cli.rst").read_text(encoding="utf-8")
    commands: List[str] = []
    in_console = False
    for text in guide.splitlines():
        if text.startswith(".. code-block::"):
            in_console = text.split("::", 1)[1].strip() == "console"
        elif text.strip() and not text.startswith(" "):
            in_console = False
        elif in_console and text.strip().startswith("$ corduroy "):
            commands.append(text.strip()[2:])
    assert len(commands) >= 12
    names = ("people", "people-copy")
    for name in names:
        assert couch_request(couch_url, "GET", "/" + name)[0] == 404, "the guide's database %s exists" % name
    python = "%s -m corduroy" % sys.executable
    try:
        for command in commands:
            done = subprocess.run(["bash", "-c", python + command[len("corduroy"):]], capture_output=True,
                                  env=env_for(couch_url), cwd=str(ROOT), timeout=60)
            assert done.returncode == 0, "%s\n%s" % (command, done.stderr.decode())
        # a view reads any copy: the last edits reach every copy a moment later (tests.consistency)
        eventually_equal(lambda: [r["key"] for r in lines(run(couch_url, "view", "people", "people/by_field",
                                                              "--group").stdout.decode())],
                         ["computing", "mathematics"])
    finally:
        for name in names:
            couch_request(couch_url, "DELETE", "/" + name)
        Path("/tmp/people.jsonl").unlink(missing_ok=True)  # written by the guide's dump example
