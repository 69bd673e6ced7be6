"""TLS: verification on by default, a CA bundle, a client certificate, and a loud ``verify=False``.

The test makes its own CA and certificates (trustme) and puts a small
TLS-terminating proxy on loopback in front of the test server. The proxy's
URL carries the credentials of the server's URL (``COUCHDB_URL``): Apache
CouchDB 3 answers ``_all_dbs`` to admins only, pouchdb-server to anyone.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from typing import Any, List, Optional
from urllib.parse import urlsplit

import pytest

trustme = pytest.importorskip("trustme")

from corduroy import ConnectionFailed, Couch, Database, TLSError, TransportError  # noqa: E402
from corduroy.tls import system_ca_bundle, tls_options  # noqa: E402
from tests.styles import STYLES, call  # noqa: E402

WAIT = 10.0


class TLSFront:
    """A loopback TLS endpoint that forwards the decrypted bytes to a plain TCP ``target``.

    ``peers`` lists, per accepted connection, the client certificate's
    common name, or None when the client presented none.
    """

    def __init__(self, target: str, context: ssl.SSLContext) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname, parts.port)
        self.userinfo = parts.netloc.rpartition("@")[0]  # "user:password" of the target URL, or ""
        self.context = context
        self.peers: List[Optional[dict]] = []
        self.handshakes = 0
        self.forwarded = 0  # request bytes passed on to the target
        self.port = 0
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._writers: List[asyncio.StreamWriter] = []

    def url(self, host: str = "127.0.0.1", credentials: bool = True) -> str:
        """``https://[user:password@]host:port``, with the target URL's credentials unless told not to."""
        userinfo = self.userinfo + "@" if credentials and self.userinfo else ""
        return "https://%s%s:%d" % (userinfo, host, self.port)

    def __enter__(self) -> "TLSFront":
        ready = threading.Event()

        def run() -> None:
            aloop = self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(aloop)
            aloop.set_exception_handler(lambda loop, context: None)  # failed handshakes are the point
            server = aloop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.context))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            try:
                aloop.run_forever()
            finally:
                server.close()
                tasks = asyncio.all_tasks(aloop)
                for task in tasks:
                    task.cancel()
                if tasks:
                    aloop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                for writer in self._writers:  # every connection's sockets closed before the loop
                    writer.transport.abort()
                aloop.run_until_complete(asyncio.sleep(0.01))
                aloop.close()

        self._thread = threading.Thread(target=run, name="tls-front", daemon=True)
        self._thread.start()
        assert ready.wait(WAIT), "the TLS front did not start"
        return self

    def __exit__(self, *exc: Any) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)  # type: ignore[union-attr]
        self._thread.join(WAIT)  # type: ignore[union-attr]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        self.handshakes += 1
        cert = writer.get_extra_info("peercert")
        self.peers.append(dict(item[0] for item in cert["subject"])["commonName"] if cert else None)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.append(up_writer)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            try:
                while True:
                    data = await src.read(65536)
                    if not data:
                        break
                    if up:
                        self.forwarded += len(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError, ssl.SSLError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False), return_exceptions=True)


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca, tmp_path_factory):
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="module")
def client_files(ca, tmp_path_factory):
    """A client certificate and its key, in two files."""
    cert = ca.issue_cert("client.corduroy.test", common_name="corduroy-client")
    folder = tmp_path_factory.mktemp("client")
    cert_path, key_path = folder / "client.pem", folder / "client.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    return str(cert_path), str(key_path)


def server_context(ca, *names: str, client_certs: ssl.VerifyMode = ssl.CERT_OPTIONAL) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(*names).configure_cert(context)
    ca.configure_trust(context)  # to check client certificates
    context.verify_mode = client_certs
    return context


@pytest.fixture
def front(ca, couch_url):
    with TLSFront(couch_url, server_context(ca, "127.0.0.1", "localhost")) as f:
        yield f


# -- verification ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_refused_without_the_ca(style, front, caplog):
    couch = Couch(front.url())
    with caplog.at_level(logging.INFO, logger="corduroy"):
        with pytest.raises(TLSError) as info:
            call(style, couch.all_dbs)
    assert info.value.code is None and "curl error" in str(info.value)
    assert not [r for r in caplog.records if "retry" in r.getMessage()], "a TLS failure is not retried"
    assert front.forwarded == 0, "request bytes went over an unverified connection"


@pytest.mark.parametrize("style", STYLES)
def test_accepted_with_the_ca(style, front, ca_file):
    couch = Couch(front.url(), ca_bundle=ca_file)
    assert isinstance(call(style, couch.all_dbs), list)


def test_the_host_name_is_checked(ca, ca_file, couch_url):
    with TLSFront(couch_url, server_context(ca, "db.example.org")) as other:
        with pytest.raises(TLSError):
            Couch(other.url(), ca_bundle=ca_file, retries=0).all_dbs()


def test_a_database_over_tls(front, ca_file, couch_url, dbname):
    Couch(couch_url).create(dbname)
    db = Database(front.url() + "/" + dbname, ca_bundle=ca_file)
    db.save({"_id": "over-tls", "n": 1})
    assert db.get("over-tls").n == 1


# -- client certificates ---------------------------------------------------------------------------------------
def test_client_certificate_is_presented_when_configured(front, ca_file, client_files):
    cert, key = client_files
    Couch(front.url(), ca_bundle=ca_file).all_dbs()
    Couch(front.url(), ca_bundle=ca_file, client_cert=cert, client_key=key).all_dbs()
    assert front.peers[0] is None
    assert front.peers[-1] == "corduroy-client"


def test_a_server_that_requires_a_client_certificate(ca, ca_file, client_files, couch_url):
    cert, key = client_files
    with TLSFront(couch_url, server_context(ca, "127.0.0.1", client_certs=ssl.CERT_REQUIRED)) as strict:
        with pytest.raises(TransportError) as info:
            Couch(strict.url(), ca_bundle=ca_file, retries=0).all_dbs()
        assert isinstance(info.value, (TLSError, ConnectionFailed))
        assert isinstance(Couch(strict.url(), ca_bundle=ca_file, client_cert=cert, client_key=key).all_dbs(), list)
        assert strict.peers[-1] == "corduroy-client"


def test_client_key_and_certificate_in_one_file(front, ca, ca_file, tmp_path):
    both = tmp_path / "both.pem"
    ca.issue_cert("client.corduroy.test", common_name="one-file").private_key_and_cert_chain_pem.write_to_path(
        str(both))
    Couch(front.url(), ca_bundle=ca_file, client_cert=str(both)).all_dbs()
    assert front.peers[-1] == "one-file"


# -- verify=False -------------------------------------------------------------------------------------------------
def test_verify_false_works_and_is_loud(front, caplog):
    with caplog.at_level(logging.WARNING, logger="corduroy"):
        couch = Couch(front.url(), verify=False)
        assert isinstance(couch.all_dbs(), list)  # no CA needed
        couch.all_dbs()
        bare = front.url(credentials=False)
        with_password = Couch(bare.replace("https://", "https://alice:s3cret@"), verify=False)
        Database(bare + "/somedb", server=with_password.server)  # the same Server: no new warning
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "verification is OFF" in r.getMessage()]
    assert len(warnings) == 2  # once per Server, not per request
    assert all(r.name == "corduroy" for r in warnings)
    assert all(bare in r.getMessage() and "s3cret" not in r.getMessage() for r in warnings)
    assert "verify=False" in repr(couch.server)
    assert "verify=False" in repr(with_password.server) and "s3cret" not in repr(with_password.server)
    assert couch.server.verify is False
    assert "verify" not in repr(Couch(front.url()).server)


def test_verify_false_does_not_leak_into_other_servers(front, ca_file):
    # Same reactor, same curl handles, same host and port: the insecure
    # settings (and connections) of one Server never serve another.
    insecure = Couch(front.url(), verify=False)
    secure = Couch(front.url())
    for _ in range(2):
        assert isinstance(insecure.all_dbs(), list)
        with pytest.raises(TLSError):
            secure.all_dbs()
    assert isinstance(Couch(front.url(), ca_bundle=ca_file).all_dbs(), list)
    with pytest.raises(TLSError):
        secure.all_dbs()


# -- settings --------------------------------------------------------------------------------------------------------
def test_bad_settings_raise_before_any_io(tmp_path, ca_file):
    with pytest.raises(ValueError, match="ca_bundle"):
        Couch("https://127.0.0.1:1", ca_bundle=str(tmp_path / "missing.pem"))
    with pytest.raises(ValueError, match="client_key goes with client_cert"):
        Couch("https://127.0.0.1:1", client_key=ca_file)
    with pytest.raises(TypeError):
        Couch("https://127.0.0.1:1", verify="no")
    with pytest.raises(TypeError):
        Couch("https://127.0.0.1:1", ca_bundle=42)


def test_options_for_each_setting(ca_file):
    import pycurl

    assert tls_options("http://127.0.0.1:5984") == {}
    assert tls_options("https://h", ca_bundle=ca_file) == {pycurl.CAINFO: ca_file}
    off = tls_options("https://h", verify=False, ca_bundle=ca_file)
    assert off == {pycurl.SSL_VERIFYPEER: 0, pycurl.SSL_VERIFYHOST: 0}
    bundle = system_ca_bundle()
    assert tls_options("https://h") == ({pycurl.CAINFO: bundle} if bundle else {})
    with_cert = tls_options("https://h", ca_bundle=ca_file, client_cert=ca_file, client_key_password="pw")
    assert with_cert[pycurl.SSLCERT] == ca_file and with_cert[pycurl.KEYPASSWD] == "pw"


def test_curl_options_and_tls_options_combine(front, ca_file):
    import pycurl

    couch = Couch(front.url(), ca_bundle=ca_file, curl_options={pycurl.USERAGENT: "corduroy-test"})
    assert couch.server.curl_options == {pycurl.USERAGENT: "corduroy-test"}
    assert isinstance(couch.all_dbs(), list)
    couch.server.curl_options = None  # TLS settings stay
    assert isinstance(couch.all_dbs(), list)
