"""A fault-injecting TCP proxy for tests: put it between the client and the server, then break things.

:class:`FaultProxy` listens on ``127.0.0.1`` (a free port unless told) and
forwards every connection to a target ``(host, port)``.  It runs an asyncio
loop in a thread of its own; every control method is thread-safe, takes
effect before it returns, and may be called from a test, from another thread
or from inside a corduroy reactor callback::

    with FaultProxy("127.0.0.1", 5984) as proxy:
        db = Database(proxy.url + "/mydb")
        ...
        proxy.sever()                 # every open connection gets a TCP RST
        proxy.drop(); proxy.restore() # "server restart" on the same port

Terms used below: *request bytes* flow client -> server ("up"), *response
bytes* flow server -> client ("down").  A *connection* is one accepted client
connection and its upstream twin.

Modes (see each method's docstring for details):

``sever()``
    Abort every current connection at once with a TCP RST (``SO_LINGER 0``),
    on both sides.  New connections are accepted as usual.
``pause(refuse=False)`` / ``resume()``
    Affects *new* connections only.  ``refuse=True``: each is accepted and
    reset at once (the client sees a reset/empty reply).  Otherwise each is
    accepted and held: nothing is connected upstream or forwarded until
    ``resume()``, which then lets them through.  Existing connections flow.
``stall(after=None)``
    ``stall()``: every connection, existing and new, stops forwarding in both
    directions (connections stay open; new ones are accepted and held).
    ``stall(after=n)``: every connection forwards at most ``n`` more response
    bytes and then stops forwarding responses (a hang in the middle of a
    body); requests still flow.  ``resume()`` lets everything flow again and
    delivers what was held back.
``truncate_after(n)`` / ``reset_after(n)``
    One-shot: the next connection to carry response bytes forwards only ``n``
    more of them, then is closed: gracefully (FIN) for ``truncate_after``,
    abortively (RST) for ``reset_after``.  Later connections are unaffected.
``latency(seconds)``
    Every forwarded chunk, both ways, is delayed by ``seconds`` (0 turns it off).
``drop(sever=True)`` / ``restore()``
    ``drop()`` stops listening (new connects are refused by the kernel) and,
    by default, severs current connections (a server that went away).
    ``restore()`` listens again on the same port.

``resume()`` ends pause and stall modes; ``heal()`` ends every mode (pause,
stall, latency, armed one-shots) without touching connections.

Counters (read them from any thread): ``accepted`` (connections accepted,
refused ones included), ``refused`` (accepted and reset by
``pause(refuse=True)``), ``bytes_up`` and ``bytes_down`` (bytes forwarded),
``active`` (connections open now), ``severed`` (connections aborted by
``sever``/``drop``/``reset_after``).  ``wait_until(predicate, timeout)`` blocks
until ``predicate(proxy)`` holds (re-checked whenever a counter changes).
"""
from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from typing import Any, Callable, List, Optional, Set, Tuple

__all__ = ["FaultProxy"]

_CHUNK = 64 * 1024
_LINGER_RST = struct.pack("ii", 1, 0)


class _Killed(Exception):
    """A connection was closed on purpose by a fault mode."""


class _Conn:
    """One proxied connection: the client side, the upstream side, and its fault state."""

    __slots__ = ("client_r", "client_w", "up_r", "up_w", "task", "stall_budget", "kill", "closed")

    def __init__(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.client_r = client_r
        self.client_w = client_w
        self.up_r: Optional[asyncio.StreamReader] = None
        self.up_w: Optional[asyncio.StreamWriter] = None
        self.task: Optional[asyncio.Task] = None
        #: Response bytes this connection may still forward before stalling (None: no limit).
        self.stall_budget: Optional[int] = None
        #: ("close" | "rst", remaining response bytes) once a one-shot fault is claimed.
        self.kill: Optional[List[Any]] = None
        self.closed = False

    def writers(self) -> List[asyncio.StreamWriter]:
        return [w for w in (self.client_w, self.up_w) if w is not None]

    def reset(self) -> None:
        """Abort both sides with an RST."""
        if self.closed:
            return
        self.closed = True
        for writer in self.writers():
            sock = writer.get_extra_info("socket")
            try:
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
            except OSError:
                pass
            writer.transport.abort()

    def close(self) -> None:
        """Close both sides gracefully (FIN after whatever was written)."""
        if self.closed:
            return
        self.closed = True
        for writer in self.writers():
            writer.close()


class FaultProxy:
    """A loopback TCP proxy to ``(target_host, target_port)`` with switchable faults.

    See the module docstring for every mode.  ``start()`` (or ``with``) runs
    it; ``close()`` (or leaving the ``with`` block) stops its thread and
    closes every connection.
    """

    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = (target_host, int(target_port))
        self.host = host
        self.port = port
        # counters
        self.accepted = 0
        self.refused = 0
        self.severed = 0
        self.bytes_up = 0
        self.bytes_down = 0
        # state, touched only on the proxy's loop thread
        self._conns: Set[_Conn] = set()
        self._pause: Optional[str] = None  # None | "hold" | "refuse"
        self._stall: Any = None  # None | "all" | int (response bytes allowed per connection)
        self._armed: Optional[Tuple[str, int]] = None
        self._latency = 0.0
        self._listening = False
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._server: Optional[asyncio.AbstractServer] = None
        self._flow: Optional[asyncio.Event] = None  # set while nothing is paused or stalled
        self._thread: Optional[threading.Thread] = None
        self._changed = threading.Condition()

    @classmethod
    def for_url(cls, url: str) -> "FaultProxy":
        """A proxy (not started) to the host and port of ``url``."""
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.hostname or "127.0.0.1", port)

    # -- lifecycle --------------------------------------------------------
    def start(self) -> "FaultProxy":
        """Start the proxy's thread and listen; returns self once it accepts connections."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: List[BaseException] = []

        def run() -> None:
            aloop = asyncio.new_event_loop()
            self._loop = aloop
            asyncio.set_event_loop(aloop)
            try:
                aloop.run_until_complete(self._setup())
            except BaseException as exc:  # pragma: no cover - reported to start()
                failure.append(exc)
                ready.set()
                aloop.close()
                return
            ready.set()
            try:
                aloop.run_forever()
            finally:
                aloop.run_until_complete(self._teardown())
                aloop.close()

        self._thread = threading.Thread(target=run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(10) or failure:
            self._thread = None
            raise RuntimeError("the fault proxy did not start: %r" % (failure[0] if failure else "timeout"))
        return self

    def close(self) -> None:
        """Close every connection, stop listening and stop the thread."""
        thread, aloop = self._thread, self._loop
        if thread is None or aloop is None:
            return
        aloop.call_soon_threadsafe(aloop.stop)
        thread.join(10)
        self._thread = None

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: the proxy's address as a base URL."""
        return "http://%s:%d" % (self.host, self.port)

    def url_for(self, url: str) -> str:
        """``url`` (a URL of the target server) rewritten to go through the proxy (credentials kept)."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(url)
        netloc = "%s:%d" % (self.host, self.port)
        if "@" in parts.netloc:
            netloc = parts.netloc.rpartition("@")[0] + "@" + netloc
        return urlunsplit(parts._replace(scheme="http", netloc=netloc))

    @property
    def active(self) -> int:
        """Connections open right now."""
        return len(self._conns)

    def __repr__(self) -> str:
        return "<FaultProxy %s -> %s:%d accepted=%d active=%d>" % (
            self.url, self.target[0], self.target[1], self.accepted, self.active)

    # -- controls (thread-safe) -------------------------------------------
    def sever(self) -> int:
        """Abort every current connection with an RST, both sides; returns how many."""
        return self._call(self._sever_now)

    def pause(self, refuse: bool = False) -> None:
        """New connections are held (accepted, nothing forwarded) or, with ``refuse=True``, reset at once."""
        def apply() -> None:
            self._pause = "refuse" if refuse else "hold"
            self._flow.clear()  # type: ignore[union-attr]
        self._call(apply)

    def resume(self) -> None:
        """End ``pause()`` and ``stall()``: held connections and held-back data flow again."""
        def apply() -> None:
            self._pause = None
            self._stall = None
            for conn in self._conns:
                conn.stall_budget = None
            self._flow.set()  # type: ignore[union-attr]
        self._call(apply)

    def stall(self, after: Optional[int] = None) -> None:
        """Stop forwarding: everything at once, or (``after=n``) responses after ``n`` more bytes per connection."""
        if after is not None and (not isinstance(after, int) or after < 0):
            raise ValueError("after must be a byte count >= 0")

        def apply() -> None:
            if after is None:
                self._stall = "all"
            else:
                self._stall = after
                for conn in self._conns:
                    conn.stall_budget = after
            self._flow.clear()  # type: ignore[union-attr]
        self._call(apply)

    def truncate_after(self, n: int) -> None:
        """The next connection carrying response bytes gets ``n`` more of them, then a clean close (FIN)."""
        self._arm("close", n)

    def reset_after(self, n: int) -> None:
        """The next connection carrying response bytes gets ``n`` more of them, then an RST."""
        self._arm("rst", n)

    def latency(self, seconds: float) -> None:
        """Delay every forwarded chunk (both directions) by ``seconds``; 0 turns it off."""
        if seconds < 0:
            raise ValueError("latency cannot be negative")

        def apply() -> None:
            self._latency = float(seconds)
        self._call(apply)

    def drop(self, sever: bool = True) -> None:
        """Stop listening (connects are refused); with ``sever=True`` also abort current connections."""
        async def apply() -> None:
            if self._server is not None:
                self._server.close()
                self._server = None
            self._listening = False
            if sever:
                self._sever_now()
        self._call_async(apply)

    def restore(self) -> None:
        """Listen again, on the same port, after ``drop()``."""
        async def apply() -> None:
            if self._server is None:
                await self._listen()
        self._call_async(apply)

    def heal(self) -> None:
        """End every fault mode (pause, stall, latency, armed one-shots); connections are left alone."""
        def apply() -> None:
            self._armed = None
            self._latency = 0.0
        self._call(apply)
        self.resume()

    def wait_until(self, predicate: Callable[["FaultProxy"], bool], timeout: float = 10.0) -> bool:
        """Block until ``predicate(self)`` is true (checked whenever a counter changes); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.05))
        return True

    # -- plumbing -----------------------------------------------------------
    def _arm(self, mode: str, n: int) -> None:
        if not isinstance(n, int) or n < 0:
            raise ValueError("n must be a byte count >= 0")

        def apply() -> None:
            self._armed = (mode, n)
        self._call(apply)

    def _call(self, fn: Callable[[], Any]) -> Any:
        async def run() -> Any:
            return fn()
        return self._call_async(run)

    def _call_async(self, fn: Callable[[], Any]) -> Any:
        aloop = self._loop
        if self._thread is None or aloop is None:
            raise RuntimeError("the fault proxy is not running (use start() or `with`)")
        if threading.current_thread() is self._thread:  # pragma: no cover - misuse
            raise RuntimeError("control methods are for other threads")
        return asyncio.run_coroutine_threadsafe(fn(), aloop).result(10)

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    async def _setup(self) -> None:
        self._flow = asyncio.Event()
        self._flow.set()
        await self._listen()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, reuse_address=True, backlog=128)
        self.port = self._server.sockets[0].getsockname()[1]
        self._listening = True

    async def _teardown(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        tasks = [conn.task for conn in self._conns if conn.task is not None]
        for conn in list(self._conns):
            conn.reset()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        # Aborted transports close their sockets on the loop's next turns.
        for _ in range(3):
            await asyncio.sleep(0)

    def _sever_now(self) -> int:
        conns = list(self._conns)
        for conn in conns:
            conn.reset()
            if conn.task is not None:
                conn.task.cancel()
        self.severed += len(conns)
        self._notify()
        return len(conns)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        conn = _Conn(client_r, client_w)
        conn.task = asyncio.current_task()
        self.accepted += 1
        self._conns.add(conn)
        self._notify()
        try:
            if self._pause == "refuse":
                self.refused += 1
                conn.reset()
                return
            while self._pause == "hold" or self._stall == "all":
                await self._flow.wait()  # type: ignore[union-attr]
            if isinstance(self._stall, int):
                conn.stall_budget = self._stall
            try:
                conn.up_r, conn.up_w = await asyncio.open_connection(*self.target)
            except OSError:
                conn.reset()
                return
            if conn.closed:  # severed while connecting
                conn.up_w.transport.abort()
                return
            pumps = [
                asyncio.ensure_future(self._pump(conn, client_r, conn.up_w, down=False)),
                asyncio.ensure_future(self._pump(conn, conn.up_r, client_w, down=True)),
            ]
            try:
                await asyncio.gather(*pumps)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        except (_Killed, asyncio.CancelledError, ConnectionError, OSError):
            pass
        finally:
            self._conns.discard(conn)
            if not conn.closed:
                conn.close()
            self._notify()

    async def _pump(self, conn: _Conn, src: asyncio.StreamReader, dst: asyncio.StreamWriter, down: bool) -> None:
        while True:
            while self._stall == "all":
                await self._flow.wait()  # type: ignore[union-attr]
            data = await src.read(_CHUNK)
            if not data:
                # End of stream on one side: pass the half-close on.
                if not conn.closed:
                    if down:
                        conn.close()  # the server is done: close the client side cleanly
                    elif dst.can_write_eof():
                        try:
                            dst.write_eof()
                        except OSError:
                            pass
                return
            while data:
                data = await self._forward(conn, dst, data, down)

    async def _forward(self, conn: _Conn, dst: asyncio.StreamWriter, data: bytes, down: bool) -> bytes:
        """Forward (part of) ``data``; return what is left to forward after a stall."""
        while self._stall == "all":
            await self._flow.wait()  # type: ignore[union-attr]
        rest = b""
        kill = None
        if down:
            if conn.kill is None and self._armed is not None:
                conn.kill = list(self._armed)
                self._armed = None
            if conn.kill is not None:
                mode, budget = conn.kill
                if len(data) >= budget:
                    data, kill = data[:budget], mode
                else:
                    conn.kill[1] = budget - len(data)
            if conn.stall_budget is not None and kill is None:
                budget = conn.stall_budget
                if len(data) > budget:
                    data, rest = data[:budget], data[budget:]
                conn.stall_budget = budget - len(data)
        if self._latency:
            await asyncio.sleep(self._latency)
        if data:
            dst.write(data)
            await dst.drain()
            if down:
                self.bytes_down += len(data)
            else:
                self.bytes_up += len(data)
            self._notify()
        if kill is not None:
            if kill == "rst":
                self.severed += 1
                conn.reset()
            else:
                conn.close()
            self._notify()
            raise _Killed()
        if rest:
            # Stalled mid-response: hold the rest until resume().
            while conn.stall_budget is not None and conn.stall_budget <= 0:
                await self._flow.wait()  # type: ignore[union-attr]
                if self._flow.is_set():  # type: ignore[union-attr]
                    break
        return rest
