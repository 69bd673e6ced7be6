"""Credentials never leak; user callback errors are logged and contained."""
from __future__ import annotations

import logging
import socket
import traceback

import pytest

import loop
from corduroy import Couch, CouchError, Database, relax

SENTINEL = "s3cr3t-SENTINEL-pw"


def refused_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_credentials_never_appear_in_reprs_logs_or_errors(couch_url, caplog):
    host = couch_url.split("://", 1)[1].split("@")[-1]
    texts = []
    with caplog.at_level(logging.DEBUG):
        inline = Couch("http://admin:%s@%s" % (SENTINEL, host))
        tupled = Couch("http://" + host, auth=("admin", SENTINEL))
        db = Database("http://admin:%s@%s/some_db" % (SENTINEL, host))
        texts += [repr(inline), repr(tupled), repr(db), repr(db.server), inline.url, db.url, str(vars(db))]
        for target in (inline, tupled):
            try:
                target.db("does_not_exist_here")
            except CouchError as exc:
                texts += [str(exc), repr(exc), "".join(traceback.format_exception(type(exc), exc, None))]
        try:
            db.get("missing")
        except CouchError as exc:
            texts += [str(exc), repr(exc), str(exc.url)]
        # A transport failure, whose curl message could quote the URL.
        broken = Database("http://admin:%s@127.0.0.1:%d/x" % (SENTINEL, refused_port()))
        op = broken.info(callback=lambda d, s: None)
        with pytest.raises(CouchError) as info:
            loop.get_reactor().run_until_complete(op)
        texts += [str(info.value), repr(info.value), repr(op), repr(op.status)]
        req = loop.Request("GET", "http://admin:%s@127.0.0.1/x" % SENTINEL)
        texts.append(repr(req))
    texts.append(caplog.text)
    assert caplog.text  # DEBUG logging of requests did happen
    for text in texts:
        assert SENTINEL not in text


def test_basic_credentials_go_in_a_header_not_the_url():
    db = Database("http://admin:%s@127.0.0.1:5984/x" % SENTINEL)
    assert SENTINEL not in db.url
    assert any(h.startswith("Authorization: Basic ") for h in db.server.headers_plain)


def test_an_exception_in_a_user_callback_is_logged_and_does_not_stop_other_requests(couch_url, dbname, caplog):
    db = Couch(couch_url).create(dbname)
    db.save({"_id": "doc"})
    reactor = loop.get_reactor()
    results = []
    calls = []  # the five requests may complete in any order (Apache CouchDB answers them in parallel)

    def called() -> None:
        calls.append(True)
        if len(calls) == 5:
            reactor.stop()

    def bad_callback(doc, status):
        reactor.call_soon(called)
        raise ZeroDivisionError("user code failed")

    def good_callback(doc, status):
        results.append(doc["_id"])
        called()

    with caplog.at_level(logging.ERROR, logger="corduroy"):
        db.get("doc", callback=good_callback)
        db.get("doc", callback=bad_callback)
        db.get("doc", callback=good_callback)
        db.get("doc", callback=bad_callback)
        db.get("doc", callback=good_callback)
        deadline = reactor.call_later(10, reactor.stop)
        reactor.run()
        deadline.cancel()
    assert results == ["doc", "doc", "doc"]
    records = [r for r in caplog.records if r.name == "corduroy" and r.exc_info]
    assert len(records) == 2
    assert "ZeroDivisionError: user code failed" in caplog.text  # with its traceback
    assert "Traceback" in caplog.text
    # The reactor still serves requests afterwards.
    assert db.get("doc")["_id"] == "doc"


def test_relax_rejects_non_generators_clearly():
    with pytest.raises(TypeError, match="generator"):
        relax(lambda: None)

    async def coro():
        return 1

    with pytest.raises(TypeError, match="async def"):
        relax(coro)


def test_callback_must_be_callable(couch_url):
    with pytest.raises(TypeError, match="callback"):
        Couch(couch_url).version(callback="not callable")
