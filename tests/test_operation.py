"""Operation: callbacks exactly once, result(), cancel, await, gather."""
from __future__ import annotations

import asyncio
import logging

import pytest

import loop
from loop import Cancelled, Operation, OperationPending, Status


@pytest.fixture
def reactor():
    r = loop.Reactor.create()
    yield r
    r.close()


def test_callbacks_run_once_with_data_and_status(reactor):
    op = Operation(reactor)
    seen = []
    op.add_callback(lambda d, s: seen.append((d, s)))
    op.complete("data", Status(200))
    op.complete("again", Status(201))  # ignored: one-shot
    assert len(seen) == 1
    data, status = seen[0]
    assert data == "data" and status.ok and status.code == 200 and status.error is None


def test_callback_added_after_completion_runs_later_on_the_reactor(reactor):
    op = Operation(reactor)
    op.complete(1, Status(200))
    seen = []
    op.add_callback(lambda d, s: seen.append(d))
    assert seen == []
    reactor.call_soon(reactor.stop)
    reactor.run()
    assert seen == [1]


def test_result_raises_a_clear_error_while_pending(reactor):
    op = Operation(reactor)
    with pytest.raises(OperationPending, match="still pending"):
        op.result()


def test_result_raises_the_exception_and_status_names_its_class(reactor):
    op = Operation(reactor)
    op.fail(KeyError("x"), code=404)
    assert op.status.ok is False
    assert op.status.error is KeyError
    assert op.status.code == 404
    with pytest.raises(KeyError):
        op.result()


def test_exception_in_a_callback_is_logged_and_others_still_run(reactor, caplog):
    op = Operation(reactor)
    seen = []

    def bad(d, s):
        raise ValueError("callback blew up")

    op.add_callback(bad)
    op.add_callback(lambda d, s: seen.append(d))
    with caplog.at_level(logging.ERROR):
        op.complete(5, Status(200))
    assert seen == [5]
    assert "callback blew up" in caplog.text


def test_cancel_calls_the_canceller_and_fails_with_cancelled(reactor):
    cancelled = []
    op = Operation(reactor, cancel=lambda: cancelled.append(True))
    seen = []
    op.add_callback(lambda d, s: seen.append(s.error))
    assert op.cancel() is True
    assert cancelled == [True]
    assert seen == [Cancelled]
    assert op.cancel() is False


def test_await_on_asyncio():
    async def main():
        r = loop.get_reactor()
        op = Operation(r)
        r.call_later(0.01, op.complete, "awaited", Status(200))
        failing = Operation(r)
        r.call_later(0.01, failing.fail, LookupError("bad"))
        value = await op
        with pytest.raises(LookupError):
            await failing
        return value

    aloop = asyncio.new_event_loop()
    try:
        assert aloop.run_until_complete(main()) == "awaited"
    finally:
        aloop.close()


def test_cancelling_the_awaiting_task_cancels_the_operation():
    async def main():
        r = loop.get_reactor()
        cancelled = []
        op = Operation(r, cancel=lambda: cancelled.append(True))
        task = asyncio.ensure_future(_await(op))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return cancelled, op

    async def _await(op):
        return await op

    aloop = asyncio.new_event_loop()
    try:
        cancelled, op = aloop.run_until_complete(main())
    finally:
        aloop.close()
    assert cancelled == [True]
    assert op.status.error is Cancelled


def test_gather_keeps_order_and_reports_the_first_error(reactor):
    a, b, c = Operation(reactor), Operation(reactor), Operation(reactor)
    total = loop.gather([a, b, c], reactor)
    c.complete("c", Status(200))
    a.complete("a", Status(200))
    assert not total.done()
    b.complete("b", Status(200))
    assert total.result() == ["a", "b", "c"]

    x, y = Operation(reactor), Operation(reactor)
    failed = loop.gather([x, y], reactor)
    x.fail(ValueError("first"))
    assert not failed.done()  # waits for all
    y.complete(1, Status(200))
    with pytest.raises(ValueError, match="first"):
        failed.result()
