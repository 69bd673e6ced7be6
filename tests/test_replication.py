"""Replication: Couch.replicate, Database.push/pull and persistent replications, in every calling style.

Replications run between databases on the test server.  Options the server
ignores (pouchdb-server's ``_replicate`` drops ``doc_ids``, ``selector`` and
``cancel``) are checked on the request we build, and on the server only when
it honours them: such a test skips on the server's own answer.
"""
from __future__ import annotations

import time
import urllib.parse
import uuid
from typing import Iterable, Iterator, List

import pytest

from corduroy import Couch, Database, NotFound
from corduroy.replication import replication_body
from tests.conftest import couch_request
from tests.consistency import EVERY_COPY, eventually
from tests.styles import STYLES, call

#: Upper bound for a replication to deliver documents.
DEADLINE = 30.0


@pytest.fixture
def couch(couch_url: str) -> Couch:
    return Couch(couch_url)


@pytest.fixture
def names(couch_url: str) -> Iterator[List[str]]:
    """Fresh database names (``names[0]``, ``names[1]``...); every such database is deleted afterwards."""
    made = [f"test_{uuid.uuid4().hex}" for _ in range(4)]
    yield made
    for name in made:
        couch_request(couch_url, "DELETE", "/" + name)


@pytest.fixture
def replication_ids(couch_url: str) -> Iterator[List[str]]:
    """Fresh ``_replicator`` document ids; any left behind is deleted afterwards."""
    made = [f"corduroy-test-{uuid.uuid4().hex}" for _ in range(2)]
    yield made
    for doc_id in made:
        status, doc = couch_request(couch_url, "GET", "/_replicator/" + doc_id)
        if status == 200:
            couch_request(couch_url, "DELETE", "/_replicator/%s?rev=%s" % (doc_id, doc["_rev"]))


def fill(couch: Couch, name: str, *docs: dict) -> Database:
    db = couch.create(name)
    if docs:
        # In every copy before a replication reads the source's _changes (a cluster: tests.consistency).
        db.save([dict(doc) for doc in docs], w=EVERY_COPY)
    return db


def present(couch_url: str, name: str, ids: Iterable[str]) -> set:
    """Which of ``ids`` exist in database ``name``."""
    found = set()
    for doc_id in ids:
        status, _ = couch_request(couch_url, "GET", "/%s/%s" % (name, doc_id))
        if status == 200:
            found.add(doc_id)
    return found


def wait_for_docs(couch_url: str, name: str, ids: Iterable[str]) -> None:
    """Block until every id in ``ids`` is in database ``name`` (longpoll on its changes feed)."""
    wanted = set(ids)
    seen: set = set()
    since: object = 0
    deadline = time.monotonic() + DEADLINE
    while not wanted <= seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("replication did not deliver %s to %s in time" % (sorted(wanted - seen), name))
        status, feed = couch_request(
            couch_url, "GET", "/%s/_changes?feed=longpoll&since=%s&timeout=%d"
            % (name, since, int(min(remaining, 5) * 1000)))
        assert status == 200, feed
        seen.update(row["id"] for row in feed["results"] if not row.get("deleted"))
        since = urllib.parse.quote(str(feed["last_seq"]), safe="")


DOCS = ({"_id": "a", "kind": "keep"}, {"_id": "b", "kind": "drop"}, {"_id": "c", "kind": "keep"})


# -- one-shot replication ---------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_replicate_names_with_create_target(style, couch, couch_url, names):
    source, target = names[0], names[1]
    fill(couch, source, *DOCS)
    result = call(style, couch.replicate, source, target, create_target=True)
    assert result["ok"] is True
    assert present(couch_url, target, "abc") == {"a", "b", "c"}


@pytest.mark.parametrize("style", STYLES)
def test_replicate_database_objects_and_urls(style, couch, couch_url, names):
    source = fill(couch, names[0], *DOCS)
    fill(couch, names[1])
    result = call(style, couch.replicate, source, couch_url + "/" + names[1])
    assert result["ok"] is True
    assert present(couch_url, names[1], "abc") == {"a", "b", "c"}


@pytest.mark.parametrize("style", STYLES)
def test_replicate_doc_ids(style, couch, couch_url, names):
    source, target = names[0], names[1]
    fill(couch, source, *DOCS)
    fill(couch, target)
    assert call(style, couch.replicate, source, target, doc_ids=["a", "c"])["ok"] is True
    copied = present(couch_url, target, "abc")
    if "b" in copied:
        pytest.skip("the server replicated a document not in doc_ids: its _replicate ignores doc_ids")
    assert copied == {"a", "c"}


@pytest.mark.parametrize("style", STYLES)
def test_replicate_filter_with_query_params(style, couch, couch_url, names):
    source, target = names[0], names[1]
    fill(couch, source, *DOCS, {"_id": "_design/app", "filters": {
        "by_kind": "function (doc, req) { return doc.kind === req.query.kind; }"}})
    fill(couch, target)
    result = call(style, couch.replicate, source, target, filter="app/by_kind", query_params={"kind": "keep"})
    assert result["ok"] is True
    assert present(couch_url, target, ["a", "b", "c", "_design/app"]) == {"a", "c"}


@pytest.mark.parametrize("style", STYLES)
def test_replicate_selector(style, couch, couch_url, names):
    source, target = names[0], names[1]
    fill(couch, source, *DOCS)
    fill(couch, target)
    assert call(style, couch.replicate, source, target, selector={"kind": "drop"})["ok"] is True
    copied = present(couch_url, target, "abc")
    if copied & {"a", "c"}:
        pytest.skip("the server replicated documents the selector excludes: its _replicate ignores selector")
    assert copied == {"b"}


# -- push and pull ------------------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_push_and_pull(style, couch, couch_url, names):
    here = fill(couch, names[0], {"_id": "mine"})
    there = fill(couch, names[1], {"_id": "theirs"})
    assert call(style, here.push, there)["ok"] is True
    assert present(couch_url, names[1], ["mine"]) == {"mine"}
    assert call(style, here.pull, names[1])["ok"] is True
    assert present(couch_url, names[0], ["theirs"]) == {"theirs"}


@pytest.mark.parametrize("style", STYLES)
def test_push_with_the_target_inside_the_options(style, couch, couch_url, names):
    here = fill(couch, names[0], {"_id": "mine"})
    repl = {"target": names[1], "create_target": True}
    assert call(style, here.push, **repl)["ok"] is True
    assert present(couch_url, names[1], ["mine"]) == {"mine"}


# -- persistent replication (_replicator) ---------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_persistent_replication_document(style, couch, couch_url, names, replication_ids):
    rep_id = replication_ids[0]
    here = fill(couch, names[0], {"_id": "mine"})
    fill(couch, names[1])
    saved = call(style, here.push, names[1], _id=rep_id)
    assert saved["ok"] is True and saved["id"] == rep_id
    doc = couch.replicator.get(rep_id)
    assert doc["source"] == here.url or doc["source"]["url"] == here.url
    wait_for_docs(couch_url, names[1], ["mine"])
    gone = call(style, here.push, names[1], _id=rep_id, cancel=True)
    assert gone["ok"] is True

    def forgotten() -> None:
        try:
            couch.replicator.get(rep_id)
        except NotFound:
            return
        call(style, here.push, names[1], _id=rep_id, cancel=True)
        raise AssertionError("the replication document is still there")

    # The replicator records the finished replication in its document through one copy; a
    # delete of the revision read before that write reached the others is accepted by them,
    # and the replicator's revision stays the winner (a cluster: tests.consistency): cancelling
    # again deletes it.  A single node refuses the stale delete, and cancel reads again itself.
    eventually(forgotten, retry_on=(AssertionError, NotFound))


def test_persistent_replication_with_doc_ids(couch, couch_url, names, replication_ids):
    here = fill(couch, names[0], *DOCS)
    fill(couch, names[1])
    here.push(names[1], doc_ids=["a", "c"], _id=replication_ids[0])
    wait_for_docs(couch_url, names[1], ["a", "c"])
    assert present(couch_url, names[1], "abc") == {"a", "c"}
    here.push(names[1], _id=replication_ids[0], cancel=True)


@pytest.mark.parametrize("style", STYLES)
def test_persistent_continuous_replication(style, couch, couch_url, names, replication_ids):
    rep_id = replication_ids[0]
    source = fill(couch, names[0])
    fill(couch, names[1])
    saved = call(style, couch.replicate, names[0], names[1], continuous=True, _id=rep_id)
    assert saved["id"] == rep_id
    assert couch.replicator.get(rep_id)["continuous"] is True
    source.save({"_id": "later"})  # written after the replication started
    wait_for_docs(couch_url, names[1], ["later"])
    assert call(style, couch.replicate, names[0], names[1], continuous=True, _id=rep_id, cancel=True)["ok"]
    with pytest.raises(NotFound):
        couch.replicator.get(rep_id)


# -- continuous replication through _replicate ------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_continuous_replication_started_and_cancelled(style, couch, couch_url, names):
    source_name, target_name = names[0], names[1]
    source = fill(couch, source_name)
    fill(couch, target_name)
    try:
        answer = couch.replicate(source_name, target_name, cancel=True)
    except NotFound:
        pass  # as CouchDB answers: there is no such replication to cancel
    else:
        pytest.skip("the server answered ok=%r to cancelling a replication that does not exist: "
                    "its _replicate does not support cancel" % (answer.get("ok"),))
    started = call(style, couch.replicate, source_name, target_name, continuous=True)
    assert started["ok"] is True
    try:
        source.save({"_id": "later"})
        wait_for_docs(couch_url, target_name, ["later"])
    finally:
        stopped = call(style, couch.replicate, source_name, target_name, continuous=True, cancel=True)
    assert stopped["ok"] is True
    with pytest.raises(NotFound):  # it is gone
        call(style, couch.replicate, source_name, target_name, continuous=True, cancel=True)


# -- the request we build --------------------------------------------------------------
def test_names_become_urls_and_credentials_go_into_headers():
    couch = Couch("http://admin:s3cret@127.0.0.1:9")
    body = replication_body(couch.server, "src", "http://bob:hunter2@elsewhere:5984/dst", {"continuous": True})
    assert body["continuous"] is True
    assert body["source"]["url"] == "http://127.0.0.1:9/src"
    assert body["source"]["headers"]["Authorization"].startswith("Basic ")
    assert body["target"]["url"] == "http://elsewhere:5984/dst"
    assert body["target"]["headers"]["Authorization"] != body["source"]["headers"]["Authorization"]
    for endpoint in (body["source"], body["target"]):
        assert "s3cret" not in endpoint["url"] and "hunter2" not in endpoint["url"] and "@" not in endpoint["url"]


def test_endpoints_without_credentials_stay_plain_urls():
    couch = Couch("http://127.0.0.1:9")
    other = Database("http://127.0.0.1:8/far%2Faway")
    body = replication_body(couch.server, other, "a/b", {})
    assert body == {"source": "http://127.0.0.1:8/far%2Faway", "target": "http://127.0.0.1:9/a%2Fb"}


def test_database_endpoints_carry_their_own_servers_credentials():
    couch = Couch("http://127.0.0.1:9")
    remote = Database("http://carol:pw@127.0.0.1:8/remote")
    body = replication_body(couch.server, remote, "http://127.0.0.1:9/local", {"doc_ids": ["x"]})
    assert body["source"]["url"] == "http://127.0.0.1:8/remote"
    assert "Authorization" in body["source"]["headers"]
    assert body["target"] == "http://127.0.0.1:9/local"
    assert body["doc_ids"] == ["x"]


def test_doc_ids_are_escaped_the_way_couchdb_unescapes_them():
    body = replication_body(Couch("http://127.0.0.1:9").server, "a", "b", {"doc_ids": ["plain", "50%+1"]})
    assert body["doc_ids"] == ["plain", "50%25%2B1"]


def test_options_are_checked_before_any_io():
    couch = Couch("http://127.0.0.1:9")  # nothing listens: I/O would fail differently
    with pytest.raises(TypeError):
        couch.replicate("a", "b", continous=True)  # misspelt
    with pytest.raises(TypeError):
        couch.replicate("a", "b", continuous="yes")
    with pytest.raises(ValueError):
        couch.replicate("a", "b", doc_ids=["x"], filter="app/f")
    with pytest.raises(TypeError):
        couch.replicate("a", "b", doc_ids=["x", 3])
    with pytest.raises(ValueError):
        couch.replicate("Not A Name", "b")
    with pytest.raises(TypeError):
        couch.replicate(3, "b")
    with pytest.raises(TypeError):
        couch.replicate("a", "b", filter="app/f", query_params={"n": 1})
    with pytest.raises(ValueError):
        couch.replicate("a", "b", proxy="http://p:3128", target_proxy="http://q:3128")
    with pytest.raises(TypeError):
        Database("http://127.0.0.1:9/a").push("b", _id=7)
