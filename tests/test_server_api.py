"""Server-wide endpoints of Couch (configuration, statistics, tasks, cluster), in every calling style.

pouchdb-server lacks ``_node/_local/...``, ``_up``, ``_dbs_info`` and
``_scheduler``: those tests run all the same and skip only when the server
answers that it lacks the endpoint.
"""
from __future__ import annotations

import threading
import time
import uuid

import pytest

from corduroy import Couch, NotFound
from corduroy.server_api import LEGACY_CONFIG, NODE_CONFIG
from tests.conftest import couch_request
from tests.styles import STYLES, call
from tests.lacking import LACKING, lacks

@pytest.fixture
def couch(couch_url: str) -> Couch:
    return Couch(couch_url)


@pytest.fixture
def section(couch_url: str):
    """A configuration section name of our own, removed afterwards."""
    name = "corduroy_test_" + uuid.uuid4().hex[:12]
    yield name
    couch = Couch(couch_url)
    for key, _ in (couch.config(name) or {}).items():
        couch.config(name + "/" + key, delete=True)


# -- configuration ------------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_config_set_get_delete_round_trip(style, couch, section):
    key = section + "/greeting"
    assert call(style, couch.config, key, "hello") is None
    assert call(style, couch.config, key) == "hello"
    assert call(style, couch.config, section) == {"greeting": "hello"}
    assert call(style, couch.config, key, delete=True) == "hello"  # the value it had
    with pytest.raises(NotFound):
        call(style, couch.config, key)


@pytest.mark.parametrize("style", STYLES)
def test_config_whole_and_section(style, couch):
    everything = call(style, couch.config)
    assert isinstance(everything, dict) and "couchdb" in everything
    assert call(style, couch.config, "couchdb") == everything["couchdb"]


def test_config_values_are_stored_as_strings_and_a_dict_sets_a_section(couch, section):
    assert couch.config(section, {"count": 3, "flag": True, "name": "x"}) is None
    assert couch.config(section) == {"count": "3", "flag": "true", "name": "x"}


def test_config_remembers_where_the_server_keeps_it(couch, couch_url):
    couch.config("couchdb")
    root = couch.server._config_root
    assert root in (NODE_CONFIG, LEGACY_CONFIG)
    if root == LEGACY_CONFIG:
        # Only when the server does not serve the node configuration.
        status, _ = couch_request(couch_url, "GET", NODE_CONFIG + "/couchdb")
        assert status in (400, 404)
    # A Database shares the Server, and so the choice.
    assert couch.database("_users").server._config_root == root


def test_config_bad_input_raises_before_any_io():
    couch = Couch("http://127.0.0.1:9")  # nothing listens there: any I/O would fail differently
    with pytest.raises(ValueError):
        couch.config("section/key", "v", delete=True)
    with pytest.raises(ValueError):
        couch.config("section", delete=True)
    with pytest.raises(ValueError):
        couch.config(None, "v")
    with pytest.raises(ValueError):
        couch.config("section/", "v")
    with pytest.raises(TypeError):
        couch.config("section", "not a dict")
    with pytest.raises(TypeError):
        couch.config("section/key", ["no"])
    with pytest.raises(TypeError):
        couch.config(42)


# -- statistics, tasks, state --------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_stats(style, couch):
    try:
        stats = call(style, couch.stats)
    except LACKING as exc:
        lacks(exc, "_node/_local/_stats")
    assert isinstance(stats, dict) and "couchdb" in stats
    metric = call(style, couch.stats, "couchdb/request_time")
    assert metric == stats["couchdb"]["request_time"] or "value" in metric
    with pytest.raises(NotFound):
        call(style, couch.stats, "no_such_group/no_such_metric")


def test_stats_name_is_checked():
    with pytest.raises(ValueError):
        Couch("http://127.0.0.1:9").stats("couchdb//x")


@pytest.mark.parametrize("style", STYLES)
def test_tasks_is_a_list(style, couch):
    assert isinstance(call(style, couch.tasks), list)


@pytest.mark.parametrize("style", STYLES)
def test_dbs_info(style, couch, dbname):
    couch.create(dbname)
    missing = dbname + "_missing"
    try:
        infos = call(style, couch.dbs_info, [dbname, missing])
    except LACKING as exc:
        lacks(exc, "_dbs_info")
    assert [row["key"] for row in infos] == [dbname, missing]
    assert infos[0]["info"]["db_name"] == dbname
    assert "error" in infos[1]


def test_dbs_info_checks_names():
    couch = Couch("http://127.0.0.1:9")
    with pytest.raises(TypeError):
        couch.dbs_info("one")
    with pytest.raises(TypeError):
        couch.dbs_info(["ok", 3])


@pytest.mark.parametrize("style", STYLES)
def test_up(style, couch):
    try:
        answer = call(style, couch.up)
    except LACKING as exc:
        lacks(exc, "_up")
    assert answer["status"] == "ok"


@pytest.mark.parametrize("style", STYLES)
def test_membership(style, couch):
    try:
        members = call(style, couch.membership)
    except LACKING as exc:
        lacks(exc, "_membership")
    assert members["all_nodes"] and set(members["cluster_nodes"]) <= set(members["all_nodes"])


@pytest.mark.parametrize("style", STYLES)
def test_system(style, couch):
    try:
        system = call(style, couch.system)
    except LACKING as exc:
        lacks(exc, "_node/_local/_system")
    assert "memory" in system and "uptime" in system


@pytest.mark.parametrize("style", STYLES)
def test_node_info(style, couch):
    try:
        node = call(style, couch.node_info)
    except LACKING as exc:
        lacks(exc, "_node/_local")
    assert isinstance(node["name"], str) and "@" in node["name"]


@pytest.mark.parametrize("style", STYLES)
def test_scheduler_jobs(style, couch):
    try:
        jobs = call(style, couch.scheduler_jobs, limit=5)
    except LACKING as exc:
        lacks(exc, "_scheduler/jobs")
    assert isinstance(jobs["jobs"], list) and len(jobs["jobs"]) <= 5
    assert "total_rows" in jobs


@pytest.mark.parametrize("style", STYLES)
def test_scheduler_docs(style, couch):
    try:
        docs = call(style, couch.scheduler_docs)
    except LACKING as exc:
        lacks(exc, "_scheduler/docs")
    assert isinstance(docs["docs"], list)
    in_replicator = call(style, couch.scheduler_docs, "_replicator", limit=1)
    assert len(in_replicator["docs"]) <= 1
    assert all(doc["database"] == "_replicator" for doc in in_replicator["docs"])
    with pytest.raises(NotFound):
        call(style, couch.scheduler_docs, doc_id="no-such-replication-" + uuid.uuid4().hex)


# -- cluster setup and database events -----------------------------------------
#: The states of CouchDB's /_cluster_setup.
SETUP_STATES = {"cluster_disabled", "single_node_disabled", "single_node_enabled", "cluster_enabled",
                "cluster_finished"}


@pytest.mark.parametrize("style", STYLES)
def test_cluster_setup(style, couch):
    try:
        state = call(style, couch.cluster_setup)["state"]
    except LACKING as exc:
        lacks(exc, "_cluster_setup")
    assert state in SETUP_STATES
    assert call(style, couch.cluster_setup, ensure_dbs_exist=["_users", "_replicator"])["state"] == state
    if state == "cluster_finished":  # a cluster: the node we ask knows its peers
        assert len(couch.membership()["cluster_nodes"]) >= 1


def test_cluster_setup_checks_its_argument():
    with pytest.raises(TypeError):
        Couch("http://127.0.0.1:9").cluster_setup(ensure_dbs_exist="_users")


@pytest.fixture
def global_changes(couch_url):
    """``_db_updates`` reads the ``_global_changes`` database, which CouchDB 3 does not create by itself.

    Created for the test when missing (and deleted after); without it
    CouchDB answers 404 "Database does not exist." to ``_db_updates``.
    """
    status, _ = couch_request(couch_url, "GET", "/_global_changes")
    created = False
    if status == 404:
        status, body = couch_request(couch_url, "PUT", "/_global_changes")
        created = status in (201, 202)
    yield
    if created:
        couch_request(couch_url, "DELETE", "/_global_changes")


@pytest.mark.parametrize("style", STYLES)
def test_db_updates(style, couch, dbname, global_changes):
    try:
        start = call(style, couch.db_updates)
    except LACKING as exc:
        lacks(exc, "_db_updates")
    assert isinstance(start["results"], list) and "last_seq" in start
    couch.create(dbname)
    # CouchDB records the events in _global_changes in batches (about every
    # half second); the feed from `since` has ours once they are written.
    deadline = time.monotonic() + 20
    while True:
        later = call(style, couch.db_updates, since=start["last_seq"])
        ours = [r["type"] for r in later["results"] if r["db_name"] == dbname]
        if ours or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "created" in ours
    assert all("seq" in r for r in later["results"])


def test_db_updates_longpoll_waits_for_an_event(couch, couch_url, dbname, global_changes):
    try:
        now = couch.db_updates()["last_seq"]
    except LACKING as exc:
        lacks(exc, "_db_updates")
    creator = threading.Timer(0.3, couch_request, (couch_url, "PUT", "/" + dbname))
    creator.start()
    began = time.monotonic()
    try:
        news = couch.db_updates(feed="longpoll", since=now, timeout=20000)
    finally:
        creator.join()
    assert news["results"] and time.monotonic() - began < 15  # an event ended the wait, not the timeout


def test_db_updates_checks_the_feed():
    with pytest.raises(ValueError):
        Couch("http://127.0.0.1:9").db_updates(feed="eventsource")
    with pytest.raises(TypeError):  # continuous needs a listener (or couch.follow_db_updates(), see test_idioms)
        Couch("http://127.0.0.1:9").db_updates(feed="continuous")
