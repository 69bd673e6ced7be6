"""Drivers: run a workload's jobs through a client, closed-loop or open-loop.

Each client belongs to a *family* that says how its primitives are called:

``callback``    ``prim(*args, done)``; ``done(result, exc)`` runs on the client's
                loop (``client.run()`` until ``client.stop()``; ``call_later``)
``relax``       ``prim(*args)`` returns something a ``@relax`` generator yields
``async``       ``await prim(*args)`` on the running asyncio loop (uvloop)
``threads``     ``prim(*args)`` blocks; C threads call it
``sequential``  ``prim(*args)`` blocks; one call at a time (C is always 1)

Closed loop keeps ``concurrency`` jobs in flight: each completion issues the
next job.  Open loop (W6) sends job ``i`` at ``t0 + i / rate`` whatever has
completed, and measures latency from that scheduled time, so a slow client
cannot hide its queueing (no coordinated omission).  Latencies are
``time.perf_counter()`` differences, recorded the same way for every client.
"""
from __future__ import annotations

import asyncio
import threading
from time import perf_counter
from typing import Any, Callable, Dict, Iterable, List, Optional

__all__ = ["Recorder", "closed_loop", "open_loop", "async_closed_loop", "async_open_loop", "FAMILIES"]

FAMILIES = ("callback", "relax", "async", "threads", "sequential")

Check = Callable[[str, Any, Any], bool]


class Recorder:
    """Latencies (seconds), send lags (open loop) and errors of one run."""

    def __init__(self) -> None:
        self.latencies: List[float] = []
        self.lags: List[float] = []
        self.errors = 0
        self.first_error: Optional[str] = None
        #: Open loop: requests still pending when the grace period ran out.
        self.incomplete = 0

    def fail(self, what: Any) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = what if isinstance(what, str) else "%s: %s" % (type(what).__name__, what)

    def wrong(self, kind: str, result: Any) -> None:
        text = repr(result)
        self.fail("wrong answer to %s: %s" % (kind, text[:200]))


# -- closed loop ----------------------------------------------------------
def closed_loop(client: Any, jobs: Iterable[Any], check: Check, concurrency: int, rec: Recorder) -> None:
    """Run ``jobs`` with ``concurrency`` in flight (blocking families and callback/relax)."""
    family = client.family
    if family == "callback":
        _callback_closed(client, jobs, check, concurrency, rec)
    elif family == "relax":
        _relax_closed(client, jobs, check, concurrency, rec)
    elif family == "threads":
        _threads_closed(client, jobs, check, concurrency, rec)
    elif family == "sequential":
        _threads_closed(client, jobs, check, 1, rec, use_threads=False)
    else:
        raise ValueError("family %r needs async_closed_loop" % family)


def _callback_closed(client: Any, jobs: Iterable[Any], check: Check, concurrency: int, rec: Recorder) -> None:
    it = iter(jobs)
    prims = client.primitives()
    lat = rec.latencies
    inflight = [0]
    clock = perf_counter

    def issue() -> bool:
        for kind, args, token in it:
            t0 = clock()

            def done(result: Any, exc: Optional[BaseException], kind: str = kind, token: Any = token,
                     t0: float = t0) -> None:
                lat.append(clock() - t0)
                inflight[0] -= 1
                if exc is not None:
                    rec.fail(exc)
                elif not check(kind, token, result):
                    rec.wrong(kind, result)
                if not issue() and inflight[0] == 0:
                    client.stop()

            inflight[0] += 1
            try:
                prims[kind](*args, done)
            except Exception as exc:  # refused before any I/O: count it, go on
                inflight[0] -= 1
                rec.fail(exc)
                continue
            return True
        return False

    started = sum(1 for _ in range(concurrency) if issue())
    if started and inflight[0]:
        client.run()


def _relax_closed(client: Any, jobs: Iterable[Any], check: Check, concurrency: int, rec: Recorder) -> None:
    from corduroy import relax

    it = iter(jobs)
    prims = client.primitives()
    lat = rec.latencies
    clock = perf_counter

    @relax
    def worker():  # type: ignore[no-untyped-def]
        for kind, args, token in it:
            t0 = clock()
            try:
                result = yield prims[kind](*args)
            except Exception as exc:
                lat.append(clock() - t0)
                rec.fail(exc)
                continue
            lat.append(clock() - t0)
            if not check(kind, token, result):
                rec.wrong(kind, result)

    @relax
    def everything():  # type: ignore[no-untyped-def]
        yield [worker() for _ in range(concurrency)]

    everything()


def _threads_closed(client: Any, jobs: Iterable[Any], check: Check, concurrency: int, rec: Recorder,
                    use_threads: bool = True) -> None:
    it = iter(jobs)
    prims = client.primitives()
    lock = threading.Lock()
    clock = perf_counter

    def worker() -> None:
        lat: List[float] = []
        while True:
            with lock:
                job = next(it, None)
            if job is None:
                break
            kind, args, token = job
            t0 = clock()
            try:
                result = prims[kind](*args)
            except Exception as exc:
                lat.append(clock() - t0)
                with lock:
                    rec.fail(exc)
                continue
            lat.append(clock() - t0)
            with lock:
                ok = check(kind, token, result)
                if not ok:
                    rec.wrong(kind, result)
        with lock:
            rec.latencies.extend(lat)

    if not use_threads or concurrency <= 1:
        worker()
        return
    threads = [threading.Thread(target=worker, name="bench-%d" % i, daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


async def async_closed_loop(client: Any, jobs: Iterable[Any], check: Check, concurrency: int,
                            rec: Recorder) -> None:
    """Run ``jobs`` with ``concurrency`` asyncio tasks, each awaiting one job at a time."""
    it = iter(jobs)
    prims = client.primitives()
    lat = rec.latencies
    clock = perf_counter

    async def worker() -> None:
        for kind, args, token in it:
            t0 = clock()
            try:
                result = await prims[kind](*args)
            except Exception as exc:
                lat.append(clock() - t0)
                rec.fail(exc)
                continue
            lat.append(clock() - t0)
            if not check(kind, token, result):
                rec.wrong(kind, result)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


# -- open loop ------------------------------------------------------------
def open_loop(client: Any, jobs: Iterable[Any], check: Check, rate: float, rec: Recorder,
              grace: float = 10.0) -> None:
    """Send job ``i`` at ``t0 + i / rate`` on the client's loop (callback and relax families).

    Requests still pending ``grace`` seconds after the last send are given up:
    counted in ``rec.incomplete`` and recorded with the latency they had
    reached (a lower bound), so an overloaded client cannot look fast.
    """
    family = client.family
    if family not in ("callback", "relax"):
        raise ValueError("open loop needs an event loop; family %r has none" % family)
    todo = list(jobs)
    n = len(todo)
    if not n:
        return
    prims = client.primitives()
    interval = 1.0 / rate
    clock = perf_counter
    lat, lags = rec.latencies, rec.lags
    state = {"next": 0, "done": 0, "over": False}
    pending: Dict[int, float] = {}
    if family == "relax":
        from corduroy import relax

        @relax
        def one(kind: str, args: tuple):  # type: ignore[no-untyped-def]
            return (yield prims[kind](*args))

    def finish(i: int, kind: str, token: Any, due: float, result: Any, exc: Optional[BaseException]) -> None:
        if state["over"]:
            return
        pending.pop(i, None)
        lat.append(clock() - due)
        if exc is not None:
            rec.fail(exc)
        elif not check(kind, token, result):
            rec.wrong(kind, result)
        state["done"] += 1
        if state["done"] == n:
            client.stop()

    def issue(i: int, due: float) -> None:
        kind, args, token = todo[i]
        lags.append(clock() - due)
        pending[i] = due
        try:
            if family == "callback":
                prims[kind](*args, lambda result, exc: finish(i, kind, token, due, result, exc))
            else:
                one(kind, args).add_callback(
                    lambda data, status: finish(i, kind, token, due, data, status.exception))
        except Exception as exc:
            finish(i, kind, token, due, None, exc)

    t0 = clock() + 0.005

    def tick() -> None:
        now = clock()
        i = state["next"]
        while i < n and t0 + i * interval <= now:
            issue(i, t0 + i * interval)
            i += 1
        state["next"] = i
        if i < n:
            client.call_later(max(0.0, t0 + i * interval - clock()), tick)

    def cutoff() -> None:
        if state["done"] < n:
            _give_up(pending, rec, clock())
            state["over"] = True
            client.stop()

    client.call_later(0.005, tick)
    client.call_later(0.005 + n * interval + grace, cutoff)
    client.run()


def _give_up(pending: Dict[int, float], rec: Recorder, now: float) -> None:
    rec.incomplete = len(pending)
    for due in pending.values():
        rec.latencies.append(now - due)
    rec.fail("%d request(s) still pending after the grace period" % len(pending))
    pending.clear()


async def async_open_loop(client: Any, jobs: Iterable[Any], check: Check, rate: float, rec: Recorder,
                          grace: float = 10.0) -> None:
    """Send job ``i`` at ``t0 + i / rate`` as a new asyncio task, whatever has completed (see open_loop)."""
    todo = list(jobs)
    n = len(todo)
    if not n:
        return
    prims = client.primitives()
    interval = 1.0 / rate
    clock = perf_counter
    lat, lags = rec.latencies, rec.lags
    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    tasks: set = set()
    state = {"done": 0}
    pending: Dict[int, float] = {}

    async def one(i: int, kind: str, args: tuple, token: Any, due: float) -> None:
        try:
            result = await prims[kind](*args)
        except Exception as exc:
            lat.append(clock() - due)
            rec.fail(exc)
        else:
            lat.append(clock() - due)
            if not check(kind, token, result):
                rec.wrong(kind, result)
        pending.pop(i, None)
        state["done"] += 1
        if state["done"] == n and not finished.done():
            finished.set_result(None)

    t0 = clock() + 0.005
    i = 0
    while i < n:
        now = clock()
        while i < n and t0 + i * interval <= now:
            kind, args, token = todo[i]
            due = t0 + i * interval
            lags.append(now - due)
            pending[i] = due
            task = loop.create_task(one(i, kind, args, token, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        if i < n:
            await asyncio.sleep(max(0.0, t0 + i * interval - clock()))
    try:
        await asyncio.wait_for(asyncio.shield(finished), grace)
    except asyncio.TimeoutError:
        _give_up(pending, rec, clock())
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def family_table() -> Dict[str, str]:
    """Family name -> one-line meaning (for docs and ``--list-clients``)."""
    return {
        "callback": "callbacks on the client's own loop",
        "relax": "corduroy @relax generators",
        "async": "asyncio tasks on uvloop",
        "threads": "blocking calls from C threads",
        "sequential": "blocking calls, one at a time",
    }
