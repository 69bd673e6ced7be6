"""@relax: generator functions over corduroy calls."""
from __future__ import annotations

import pytest

import loop
from corduroy import Couch, NotFound, relax
from tests.styles import run_async


@pytest.fixture
def db(couch_url, dbname):
    db = Couch(couch_url).create(dbname)
    db.save([{"_id": "a", "n": 1}, {"_id": "b", "n": 2}, {"_id": "c", "n": 3}])
    return db


def test_relax_blocks_at_top_level_and_returns_the_value(db):
    @relax
    def total():
        a = yield db.get("a")
        b = yield db.get("b")
        return a.n + b.n

    assert total() == 3


def test_not_found_is_raised_at_the_yield(db):
    @relax
    def greet(user_id):
        try:
            doc = yield db.get(user_id)
            return "hello %s" % doc["_id"]
        except NotFound:
            return "hello whoever you are"

    assert greet("a") == "hello a"
    assert greet("nobody") == "hello whoever you are"


def test_yield_a_list_fetches_concurrently(db):
    @relax
    def fetch_all():
        docs = yield [db.get(i) for i in ("a", "b", "c")]
        return [d.n for d in docs]

    assert fetch_all() == [1, 2, 3]


def test_relax_functions_compose(db):
    @relax
    def bump(doc_id):
        doc = yield db.get(doc_id)
        doc.n += 10
        yield db.save(doc)
        return doc.n

    @relax
    def bump_two():
        first = yield bump("a")  # an Operation inside another @relax function
        second = yield bump("b")
        return first, second

    assert bump_two() == (11, 12)
    assert db.get("a").n == 11


def test_relax_inside_a_running_reactor_returns_an_operation(db):
    @relax
    def read():
        return (yield db.get("c")).n

    reactor = loop.get_reactor()
    seen = []

    def start():
        op = read()
        assert isinstance(op, loop.Operation)
        op.add_callback(lambda data, status: (seen.append(data), reactor.stop()))

    reactor.call_soon(start)
    deadline = reactor.call_later(10, reactor.stop)
    reactor.run()
    deadline.cancel()
    assert seen == [3]


def test_the_operation_of_a_relax_function_can_be_awaited(db):
    @relax
    def read(doc_id):
        return (yield db.get(doc_id)).n

    async def main():
        doc = await db.get("c")
        return await read("b") + doc.n

    assert run_async(main) == 5


def test_exceptions_propagate_out_of_a_blocking_relax_call(db):
    @relax
    def broken():
        yield db.get("nobody")

    with pytest.raises(NotFound):
        broken()
