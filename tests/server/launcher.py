"""Start and stop the pinned pouchdb-server for tests, demos and benchmarks.

Library use::

    from tests.server import TestServer

    with TestServer() as server:
        print(server.url)          # http://127.0.0.1:PORT

Command line: start a server, run a command with ``COUCHDB_URL`` set to the
server's URL, stop the server and exit with the command's exit code::

    python -m tests.server.launcher -- python examples/demo.py

If ``COUCHDB_URL`` is already set, the command runs against that server and
nothing is started.

The server is pouchdb-server (installed by ``npm ci`` in this directory), run
in memory, bound to 127.0.0.1 on a free port, with a fresh temporary directory
as its working directory, config file and database directory (it writes
``config.json`` and ``log.txt`` there). It runs with
``NODE_OPTIONS=--unhandled-rejections=warn``: without it, one failing
show/list request kills the process.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, List, Optional, Sequence

__all__ = ["ServerError", "TestServer", "main"]

HERE = Path(__file__).resolve().parent
BIN = HERE / "node_modules" / ".bin" / "pouchdb-server"
HOST = "127.0.0.1"


class ServerError(RuntimeError):
    """The test server could not be found or did not come up."""


def free_port(host: str = HOST) -> int:
    """Return a TCP port on *host* that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class TestServer:
    """A pouchdb-server process, in memory, on a free loopback port.

    ``start()`` launches it and waits until ``GET /`` answers; ``url`` is then
    ``http://127.0.0.1:PORT``; ``stop()`` ends it and removes its temporary
    directory. Usable as a context manager.
    """

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, binary: Optional[os.PathLike] = None, startup_timeout: float = 30.0) -> None:
        self.binary = Path(binary) if binary else BIN
        self.startup_timeout = startup_timeout
        self.port: Optional[int] = None
        self.process: Optional[subprocess.Popen] = None
        self.tmpdir: Optional[Path] = None
        self._log: Optional[IO[bytes]] = None

    @property
    def url(self) -> str:
        """The server's base URL, without a trailing slash."""
        if self.port is None:
            raise ServerError("the test server is not started")
        return f"http://{HOST}:{self.port}"

    def start(self) -> "TestServer":
        """Launch the server and wait until it answers; return self."""
        if self.process is not None:
            return self
        if not self.binary.exists():
            raise ServerError(
                f"{self.binary} not found: run `make tests/server/node_modules` "
                f"(or `npm ci` in {HERE})"
            )
        self.tmpdir = Path(tempfile.mkdtemp(prefix="corduroy-pouchdb-"))
        self.port = free_port()
        env = dict(os.environ, NODE_OPTIONS="--unhandled-rejections=warn")
        self._log = open(self.tmpdir / "stdout.txt", "wb")
        cmd = [
            str(self.binary),
            "--in-memory",
            "--port", str(self.port),
            "--host", HOST,
            "--dir", str(self.tmpdir),
            "--config", str(self.tmpdir / "config.json"),
            "--no-color",
        ]
        try:
            self.process = subprocess.Popen(
                cmd,
                cwd=self.tmpdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal is ours to handle
            )
            self._wait_until_up()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last_error: object = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ServerError(
                    f"pouchdb-server exited with code {self.process.returncode} "
                    f"before answering on {self.url}\n{self.log_tail()}"
                )
            try:
                req = urllib.request.Request(self.url + "/", headers={"Accept": "application/json"})
                with urllib.request.urlopen(req, timeout=2) as resp:
                    json.loads(resp.read())
                    return
            except (OSError, ValueError) as exc:  # URLError is an OSError
                last_error = exc
            time.sleep(0.1)
        raise ServerError(
            f"pouchdb-server did not answer on {self.url} within "
            f"{self.startup_timeout:g} s (last error: {last_error})\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        """The last *lines* lines of the server's output, for error messages."""
        if self.tmpdir is None:
            return ""
        out = []
        for name in ("stdout.txt", "log.txt"):
            path = self.tmpdir / name
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {name} (last {len(text)} lines) ---")
                out.extend(text)
        return "\n".join(out)

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server (kill it if it lingers) and remove its temp dir."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None
        self.port = None

    def __enter__(self) -> "TestServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.url if self.process is not None else "stopped"
        return f"<TestServer {state}>"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``CMD ARGS...`` with ``COUCHDB_URL`` pointing at a test server."""
    args: List[str] = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "--":
        args = args[1:]
    if not args or args[0] in ("-h", "--help"):
        print("usage: python -m tests.server.launcher -- CMD [ARGS...]\n\n"
              "Start pouchdb-server, run CMD with COUCHDB_URL set, stop the server,\n"
              "exit with CMD's code. With COUCHDB_URL already set, just run CMD.",
              file=sys.stderr)
        return 0 if args else 2
    if os.environ.get("COUCHDB_URL"):
        return subprocess.call(args)
    with TestServer() as server:
        env = dict(os.environ, COUCHDB_URL=server.url)
        try:
            return subprocess.call(args, env=env)
        except KeyboardInterrupt:
            return 130


if __name__ == "__main__":
    sys.exit(main())
