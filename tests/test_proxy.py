"""The fault-injecting proxy (tests/proxy.py) does what each mode says, checked with plain sockets."""
from __future__ import annotations

import http.server
import socket
import threading
import time
import urllib.request

import pytest

from tests.proxy import FaultProxy

BIG = bytes(range(256)) * 800  # 204800 bytes
WAIT = 5.0  # the most any step may take before the test fails


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one response per connection, then close

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/big":
            body = BIG
        elif self.path == "/hold":
            # Send a first part, then wait for the test to let the rest go.
            self.send_response(200)
            self.send_header("Content-Length", "10")
            self.end_headers()
            self.wfile.write(b"start")
            self.wfile.flush()
            self.server.release.wait(WAIT * 2)  # type: ignore[attr-defined]
            try:
                self.wfile.write(b"-end")
            except OSError:
                pass
            return
        else:
            body = b"hello"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients cut off on purpose are the point of these tests


@pytest.fixture
def upstream():
    server = _Server(("127.0.0.1", 0), _Handler)
    server.release = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.release.set()  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()
    thread.join(WAIT)


@pytest.fixture
def proxy(upstream):
    with FaultProxy("127.0.0.1", upstream.server_address[1]) as p:
        yield p


def connect(proxy: FaultProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT)
    return sock


def request(proxy: FaultProxy, path: str) -> socket.socket:
    sock = connect(proxy)
    sock.sendall(b"GET " + path.encode() + b" HTTP/1.0\r\nHost: x\r\n\r\n")
    return sock


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def read_exactly(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        data = sock.recv(n - len(buf))
        if not data:
            break
        buf += data
    return buf


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    buf = b""
    while marker not in buf:
        data = sock.recv(65536)
        if not data:
            break
        buf += data
    return buf


def body_of(response: bytes) -> bytes:
    return response.partition(b"\r\n\r\n")[2]


def nothing_arrives(sock: socket.socket, seconds: float = 0.3) -> bool:
    """True if no byte (and no EOF) arrives within ``seconds`` (a bounded check for absence)."""
    sock.settimeout(seconds)
    try:
        sock.recv(1)
    except socket.timeout:
        return True
    finally:
        sock.settimeout(WAIT)
    return False


def test_forwards_and_counts(proxy):
    with request(proxy, "/big") as sock:
        response = read_all(sock)
    assert body_of(response) == BIG
    assert proxy.wait_until(lambda p: p.active == 0, WAIT)
    assert proxy.accepted == 1
    assert proxy.bytes_down == len(response)
    assert proxy.bytes_up == len(b"GET /big HTTP/1.0\r\nHost: x\r\n\r\n")
    # urllib through the proxy's URL works too
    with urllib.request.urlopen(proxy.url + "/small", timeout=WAIT) as resp:
        assert resp.read() == b"hello"
    assert proxy.accepted == 2


def test_sever_resets_every_open_connection(proxy, upstream):
    socks = [request(proxy, "/hold") for _ in range(3)]
    for sock in socks:
        assert read_until(sock, b"start").endswith(b"\r\n\r\nstart")
    assert proxy.wait_until(lambda p: p.active == 3, WAIT)
    assert proxy.sever() == 3
    for sock in socks:
        with pytest.raises(ConnectionResetError):
            read_all(sock)
        sock.close()
    assert proxy.severed == 3
    # new connections work as before
    with request(proxy, "/small") as sock:
        assert body_of(read_all(sock)) == b"hello"


def test_pause_refuse_resets_new_connections(proxy):
    proxy.pause(refuse=True)
    try:  # the reset can even beat connect() back to the client
        with request(proxy, "/small") as sock:
            data = read_all(sock)
    except ConnectionResetError:
        data = b""
    assert data == b""
    assert proxy.wait_until(lambda p: p.refused == 1, WAIT)
    assert proxy.refused == 1 and proxy.bytes_down == 0
    proxy.resume()
    with request(proxy, "/small") as sock:
        assert body_of(read_all(sock)) == b"hello"


def test_pause_holds_new_connections_until_resume(proxy):
    with request(proxy, "/hold") as live:  # opened before the pause: keeps flowing
        assert proxy.wait_until(lambda p: p.accepted == 1, WAIT)
        proxy.pause()
        with request(proxy, "/small") as held:
            assert proxy.wait_until(lambda p: p.accepted == 2, WAIT)
            assert nothing_arrives(held)
            assert read_exactly(live, 5).startswith(b"HTTP/")
            proxy.resume()
            assert body_of(read_all(held)) == b"hello"


def test_stall_holds_everything_until_resume(proxy):
    proxy.stall()
    with request(proxy, "/small") as sock:
        assert proxy.wait_until(lambda p: p.accepted == 1, WAIT)
        assert nothing_arrives(sock)
        assert proxy.bytes_up == 0 and proxy.bytes_down == 0
        proxy.resume()
        assert body_of(read_all(sock)) == b"hello"


def test_stall_after_stops_mid_body(proxy):
    proxy.stall(after=1000)
    with request(proxy, "/big") as sock:
        first = read_exactly(sock, 1000)
        assert len(first) == 1000
        assert nothing_arrives(sock)
        assert proxy.bytes_down == 1000
        proxy.resume()
        rest = read_all(sock)
    assert body_of(first + rest) == BIG


def test_truncate_after_closes_cleanly_after_n_bytes(proxy):
    proxy.truncate_after(500)
    with request(proxy, "/big") as sock:
        data = read_all(sock)  # a clean EOF, no reset
    assert len(data) == 500
    # one-shot: the next response is whole
    with request(proxy, "/big") as sock:
        assert body_of(read_all(sock)) == BIG


def test_reset_after_sends_rst_after_n_bytes(proxy):
    proxy.reset_after(300)
    with request(proxy, "/big") as sock:
        got = b""
        with pytest.raises(ConnectionResetError):
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                got += data
    assert len(got) <= 300
    assert proxy.bytes_down == 300
    with request(proxy, "/big") as sock:
        assert body_of(read_all(sock)) == BIG


def test_latency_delays_each_chunk(proxy):
    proxy.latency(0.25)
    started = time.monotonic()
    with request(proxy, "/small") as sock:
        assert body_of(read_all(sock)) == b"hello"
    elapsed = time.monotonic() - started
    assert elapsed >= 0.45  # request chunk + response chunk, 0.25 s each
    proxy.latency(0)
    started = time.monotonic()
    with request(proxy, "/small") as sock:
        assert body_of(read_all(sock)) == b"hello"
    assert time.monotonic() - started < 0.45


def test_drop_refuses_and_restore_listens_on_the_same_port(proxy):
    port = proxy.port
    held = request(proxy, "/hold")
    assert proxy.wait_until(lambda p: p.active == 1, WAIT)
    proxy.drop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    with pytest.raises(ConnectionResetError):  # drop() severed the open connection
        read_all(held)
    held.close()
    proxy.restore()
    assert proxy.port == port
    with request(proxy, "/small") as sock:
        assert body_of(read_all(sock)) == b"hello"


def test_drop_without_sever_keeps_open_connections(proxy, upstream):
    with request(proxy, "/hold") as held:
        assert read_exactly(held, 5) == b"HTTP/"
        proxy.drop(sever=False)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT)
        upstream.release.set()
        assert read_all(held).endswith(b"start-end")
    proxy.restore()


def test_heal_ends_every_mode(proxy):
    proxy.latency(5)
    proxy.stall()
    proxy.truncate_after(1)
    proxy.heal()
    started = time.monotonic()
    with request(proxy, "/big") as sock:
        assert body_of(read_all(sock)) == BIG
    assert time.monotonic() - started < 2


def test_context_manager_stops_the_thread(upstream):
    with FaultProxy("127.0.0.1", upstream.server_address[1]) as proxy:
        thread = proxy._thread
        assert thread is not None and thread.is_alive()
        open_sock = request(proxy, "/hold")
        assert proxy.wait_until(lambda p: p.active == 1, WAIT)
    assert not thread.is_alive()
    with pytest.raises(ConnectionResetError):
        read_all(open_sock)
    open_sock.close()
    with pytest.raises(RuntimeError):
        proxy.sever()


def test_url_for_keeps_credentials():
    proxy = FaultProxy("127.0.0.1", 5984, port=12345)
    assert proxy.url_for("http://admin:pw@127.0.0.1:5984/db") == "http://admin:pw@127.0.0.1:12345/db"
    assert proxy.url == "http://127.0.0.1:12345"
    assert "pw" not in repr(proxy)
