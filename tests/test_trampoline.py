"""The generator trampoline on every backend: resume, throw in, parallel, nesting."""
from __future__ import annotations

import logging

import pytest

import loop
from loop import Operation, Reactor, Status, trampoline

BACKENDS = [b for b in loop.available_backends() if b != "gevent"]


@pytest.fixture(params=BACKENDS)
def reactor(request):
    r = Reactor.create(request.param)
    loop.set_reactor(r)
    yield r
    loop.set_reactor(None)
    r.close()


def later(reactor, value, delay=0.01, error=None):
    """An Operation that completes after ``delay`` seconds on the reactor."""
    op = Operation(reactor)
    if error is not None:
        reactor.call_later(delay, op.fail, error)
    else:
        reactor.call_later(delay, op.complete, value, Status(200))
    return op


def test_each_yield_resumes_with_the_operation_data(reactor):
    def gen():
        a = yield later(reactor, 1)
        b = yield later(reactor, a + 1)
        return a + b

    assert reactor.run_until_complete(trampoline(gen(), reactor)) == 3


def test_exception_is_thrown_in_at_the_yield_and_can_be_caught(reactor):
    def gen():
        try:
            yield later(reactor, None, error=KeyError("missing"))
        except KeyError as exc:
            caught = exc
        value = yield later(reactor, "after")
        return str(caught), value

    assert reactor.run_until_complete(trampoline(gen(), reactor)) == ("'missing'", "after")


def test_uncaught_exception_fails_the_trampoline_operation(reactor):
    def gen():
        yield later(reactor, None, error=ValueError("boom"))
        return "unreachable"

    op = trampoline(gen(), reactor)
    with pytest.raises(ValueError, match="boom"):
        reactor.run_until_complete(op)
    assert op.status.error is ValueError


def test_yielding_a_list_runs_operations_concurrently(reactor):
    def gen():
        start = reactor.time()
        results = yield [later(reactor, i, delay=0.1) for i in range(5)]
        return results, reactor.time() - start

    results, elapsed = reactor.run_until_complete(trampoline(gen(), reactor))
    assert results == [0, 1, 2, 3, 4]
    assert elapsed < 0.35  # five 0.1 s waits overlapped, not 0.5 s in sequence


def test_yielding_a_dict_resumes_with_a_dict(reactor):
    def gen():
        return (yield {"a": later(reactor, 1), "b": later(reactor, 2, delay=0.02)})

    assert reactor.run_until_complete(trampoline(gen(), reactor)) == {"a": 1, "b": 2}


def test_an_error_in_a_parallel_list_is_thrown_in(reactor):
    def gen():
        try:
            yield [later(reactor, 1), later(reactor, None, error=LookupError("one failed"))]
        except LookupError as exc:
            return "caught %s" % exc

    assert reactor.run_until_complete(trampoline(gen(), reactor)) == "caught one failed"


def test_trampolines_nest_and_compose(reactor):
    def inner(n):
        value = yield later(reactor, n)
        return value * 10

    def outer():
        a = yield trampoline(inner(1), reactor)  # an Operation
        b = yield inner(2)  # a bare generator
        c = yield [trampoline(inner(3), reactor), trampoline(inner(4), reactor)]
        return a, b, c

    assert reactor.run_until_complete(trampoline(outer(), reactor)) == (10, 20, [30, 40])


def test_yield_none_resumes_on_the_next_turn(reactor):
    order = []

    def gen():
        order.append("before")
        yield None
        order.append("after")

    reactor.call_soon(order.append, "queued first")
    op = trampoline(gen(), reactor)
    assert order == ["before"]  # not resumed inside trampoline()
    reactor.run_until_complete(op)
    assert order == ["before", "queued first", "after"]


def test_yielding_something_else_throws_type_error_into_the_generator(reactor):
    def gen():
        try:
            yield 42
        except TypeError as exc:
            return str(exc)

    message = reactor.run_until_complete(trampoline(gen(), reactor))
    assert "may yield an Operation" in message and "int" in message


def test_already_completed_operations_do_not_recurse(reactor):
    def gen():
        total = 0
        for i in range(5000):
            total += yield loop.completed(i, reactor=reactor)
        return total

    assert reactor.run_until_complete(trampoline(gen(), reactor)) == sum(range(5000))


def test_unobserved_failure_is_logged(reactor, caplog):
    def gen():
        yield later(reactor, None)
        raise RuntimeError("nobody is listening")

    def start():
        trampoline(gen(), reactor)  # result dropped on purpose

    reactor.call_soon(start)
    reactor.call_later(0.1, reactor.stop)
    with caplog.at_level(logging.ERROR):
        reactor.run()
    assert "nobody is listening" in caplog.text
