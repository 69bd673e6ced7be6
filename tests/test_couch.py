"""Couch: the server object, in all four calling styles."""
from __future__ import annotations

import pytest

from corduroy import Couch, Database, NotFound, PreconditionFailed, ServerError
from tests.consistency import eventually_equal
from tests.styles import STYLES, call


@pytest.fixture
def couch(couch_url):
    return Couch(couch_url)


@pytest.mark.parametrize("style", STYLES)
def test_create_returns_a_database_and_a_second_create_fails(style, couch, dbname):
    db = call(style, couch.create, dbname)
    assert isinstance(db, Database) and db.name == dbname
    with pytest.raises(PreconditionFailed) as info:
        call(style, couch.create, dbname)
    assert info.value.code == 412 and info.value.error == "file_exists"


@pytest.mark.parametrize("style", STYLES)
def test_delete_removes_the_database_and_missing_is_not_found(style, couch, dbname, server_kind):
    couch.create(dbname)
    assert call(style, couch.delete, dbname)["ok"] is True
    # Apache CouchDB 3.4 may answer 500 ("missing_target") for a few milliseconds
    # after the DELETE, while its shard cache still lists the database.
    eventually_equal(lambda: couch.contains(dbname), False, retry_on=(AssertionError, ServerError))
    if server_kind == "pouchdb":
        # pouchdb-server answers 200 to deleting a missing database; CouchDB answers 404.
        return
    with pytest.raises(NotFound):
        call(style, couch.delete, dbname)


@pytest.mark.parametrize("style", STYLES)
def test_db_checks_existence_and_can_create(style, couch, dbname):
    with pytest.raises(NotFound):
        call(style, couch.db, dbname)
    db = call(style, couch.db, dbname, create_if_missing=True)
    assert isinstance(db, Database) and db.exists() is True
    again = call(style, couch.db, dbname)
    assert again == db


@pytest.mark.parametrize("style", STYLES)
def test_all_dbs_lists_created_databases(style, couch, dbname):
    couch.create(dbname)
    names = call(style, couch.all_dbs)
    assert dbname in names


@pytest.mark.parametrize("style", STYLES)
def test_version_is_a_version_string(style, couch):
    version = call(style, couch.version)
    assert isinstance(version, str) and version[0].isdigit() and "." in version


@pytest.mark.parametrize("style", STYLES)
def test_uuids_are_distinct_and_counted(style, couch):
    ids = call(style, couch.uuids, 7)
    assert len(ids) == 7 and len(set(ids)) == 7
    assert all(isinstance(i, str) and len(i) >= 32 for i in ids)


@pytest.mark.parametrize("style", STYLES)
def test_contains(style, couch, dbname):
    assert call(style, couch.contains, dbname) is False
    couch.create(dbname)
    assert call(style, couch.contains, dbname) is True


def test_in_operator_blocks_and_answers(couch, dbname):
    assert dbname not in couch
    couch.create(dbname)
    assert dbname in couch


def test_url_forms_are_equivalent_and_repr_hides_credentials():
    forms = [
        Couch("http://username:pass@127.0.0.1:5984"),
        Couch("http://127.0.0.1:5984", auth=("username", "pass")),
        Couch("http://127.0.0.1:5984/"),
    ]
    assert {repr(c) for c in forms} == {"<Couch 'http://127.0.0.1:5984'>"}
    assert forms[0].server.headers_plain == forms[1].server.headers_plain


def test_default_url_is_local_couchdb(monkeypatch):
    import corduroy

    monkeypatch.setattr(corduroy.defaults, "url", "http://127.0.0.1:5984")
    assert Couch().url == "http://127.0.0.1:5984"
    assert Database("people").url == "http://127.0.0.1:5984/people"


def test_invalid_database_names_fail_before_any_io(couch):
    # The server is never contacted: a Couch pointing nowhere would fail otherwise.
    nowhere = Couch("http://127.0.0.1:9")
    for name in ["", "Upper", "1starts_with_digit", "has space", "../_config", "a?b", "x" * 239, "_private"]:
        with pytest.raises(ValueError, match="invalid database name"):
            nowhere.create(name)
        with pytest.raises(ValueError):
            nowhere.db(name)
        with pytest.raises(ValueError):
            Database(name)
    with pytest.raises(TypeError):
        nowhere.create(None)


def test_system_and_slashed_names_are_accepted_and_quoted(couch):
    assert couch.users.name == "_users"
    assert couch.replicator.url.endswith("/_replicator")
    assert couch.database("a/b").url.endswith("/a%2Fb")
