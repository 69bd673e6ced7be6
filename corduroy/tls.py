"""TLS settings of a :class:`~corduroy.http.Server`, as libcurl options.

Certificate verification is on by default: the server's certificate must
chain to a trusted CA and name the host in the URL.  ``ca_bundle`` names the
CAs to trust instead of the system's (a PEM file); ``client_cert`` (and ``client_key``, if the key is in a file
of its own) present a client certificate.  ``verify=False`` turns checking
off: anyone between the client and the server can then read and change the
traffic, credentials included, so it is logged as a WARNING (once per
Server) and shown in the Server's repr.

Example::

    couch = Couch("https://db.example.com:6984", ca_bundle="/etc/corp/ca.pem",
                  client_cert="/etc/corp/me.pem", client_key="/etc/corp/me.key")
"""
from __future__ import annotations

import os
import ssl
from typing import Any, Dict, Optional

import pycurl

from loop.redact import describe

__all__ = ["tls_options", "system_ca_bundle"]

#: Where Linux and BSD distributions keep their CA bundle (the first that exists wins).
_WELL_KNOWN_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine, Arch
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL, CentOS
    "/etc/ssl/ca-bundle.pem",  # openSUSE
    "/etc/ssl/cert.pem",  # macOS, OpenBSD, Alpine
    "/usr/local/etc/ssl/cert.pem",  # FreeBSD
)

_UNSET: Any = object()
_system_bundle: Any = _UNSET


def system_ca_bundle() -> Optional[str]:
    """The system's CA bundle file, or None if none is found (libcurl's built-in default then applies).

    ``CURL_CA_BUNDLE`` or ``SSL_CERT_FILE`` in the environment win; then
    what Python's ``ssl`` module uses; then the distributions' usual places.
    libcurl's own default is where the distribution that built it keeps the
    file, which need not be where this system does (a pycurl wheel looks in
    Fedora's place), hence the search.
    """
    global _system_bundle
    if _system_bundle is _UNSET:
        candidates = [os.environ.get("CURL_CA_BUNDLE"), os.environ.get("SSL_CERT_FILE")]
        try:
            candidates.append(ssl.get_default_verify_paths().cafile)
        except Exception:  # pragma: no cover - an unusual OpenSSL build
            pass
        candidates.extend(_WELL_KNOWN_BUNDLES)
        _system_bundle = next((path for path in candidates if path and os.path.isfile(path)), None)
    return _system_bundle  # type: ignore[no-any-return]


def _check_file(value: Any, what: str) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise TypeError("%s must be a file path (str), got %s" % (what, type(value).__name__))
    if not os.path.isfile(value):
        raise ValueError("%s: no such file: %s" % (what, describe(value)))
    return value


def tls_options(url: str, verify: bool = True, ca_bundle: Any = None, client_cert: Any = None,
                client_key: Any = None, client_key_password: Optional[str] = None) -> Dict[int, Any]:
    """The libcurl options for these TLS settings (empty for an ``http://`` URL with none given).

    Raises TypeError or ValueError (before any I/O) for a setting of the
    wrong type or a file that does not exist.
    """
    if not isinstance(verify, bool):
        raise TypeError("verify must be True or False, got %s" % describe(verify))
    ca_bundle = _check_file(ca_bundle, "ca_bundle")
    client_cert = _check_file(client_cert, "client_cert")
    client_key = _check_file(client_key, "client_key")
    if client_key is not None and client_cert is None:
        raise ValueError("client_key goes with client_cert (the certificate it is the key of)")
    if client_key_password is not None and not isinstance(client_key_password, str):
        raise TypeError("client_key_password must be a str")
    options: Dict[int, Any] = {}
    if not verify:
        options[pycurl.SSL_VERIFYPEER] = 0
        options[pycurl.SSL_VERIFYHOST] = 0
    elif ca_bundle is not None:
        options[pycurl.CAINFO] = ca_bundle
    elif url.lower().startswith("https:"):
        bundle = system_ca_bundle()
        if bundle is not None:
            options[pycurl.CAINFO] = bundle
    if client_cert is not None:
        options[pycurl.SSLCERT] = client_cert
        options[pycurl.SSLCERTTYPE] = "PEM"
        if client_key is not None:
            options[pycurl.SSLKEY] = client_key
            options[pycurl.SSLKEYTYPE] = "PEM"
        if client_key_password is not None:
            options[pycurl.KEYPASSWD] = client_key_password
    return options
