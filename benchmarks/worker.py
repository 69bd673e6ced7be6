"""One benchmark cell in its own process: one client, one workload, one concurrency.

``python -m benchmarks.worker SPEC.json`` reads the cell's spec (a JSON file,
so credentials never appear on a command line), runs a warm-up that opens
the connections, then the timed section, and writes the figures as JSON to
``spec["result"]``.  CPU time is this process's own (``getrusage``, all
threads), so each client is charged exactly for what it spent; the server's
CPU time over the same interval is read from ``/proc`` when its pid is known.

With ``spec["profile"]`` set, the timed section runs under cProfile and the
stats go to that path (plus a ``.txt`` top-20).
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import traceback
from time import perf_counter
from typing import Any, Dict, Optional

from .clients import load_client, missing_packages
from .drivers import (
    Recorder,
    async_closed_loop,
    async_open_loop,
    closed_loop,
    open_loop,
)
from .stats import (
    cpu_times,
    peak_rss_bytes,
    percentiles,
    process_cpu,
    reset_peak_rss,
    rss_bytes,
)
from .workloads import Workload, make_workload

__all__ = ["run_cell", "main"]

#: Workloads whose warm-up uses every in-flight slot (the others warm up with one connection).
_PARALLEL = ("W1", "W5", "W6")


class Measure:
    """Wall clock, CPU time, server CPU time, peak RSS and (optionally) a profile of the timed section."""

    def __init__(self, spec: Dict[str, Any]) -> None:
        self.spec = spec
        self.track_rss = spec["workload"] == "W3"
        self.profiler: Any = None
        self.figures: Dict[str, Any] = {}

    def start(self) -> None:
        if self.track_rss:
            import gc

            gc.collect()
            self.figures["rss_peak_reset"] = reset_peak_rss()
            self.rss0 = rss_bytes()
        self.server0 = process_cpu(self.spec.get("server_pid"))
        if self.spec.get("profile"):
            import cProfile

            self.profiler = cProfile.Profile()
            self.profiler.enable()
        self.cpu0 = cpu_times()
        self.t0 = perf_counter()

    def stop(self) -> None:
        t1 = perf_counter()
        cpu1 = cpu_times()
        if self.profiler is not None:
            self.profiler.disable()
        server1 = process_cpu(self.spec.get("server_pid"))
        wall = t1 - self.t0
        user, system = cpu1[0] - self.cpu0[0], cpu1[1] - self.cpu0[1]
        self.figures.update(wall_s=wall, cpu_user_s=user, cpu_sys_s=system, cpu_s=user + system)
        if self.server0 is not None and server1 is not None:
            self.figures["server_cpu_s"] = server1 - self.server0
            self.figures["server_busy"] = (server1 - self.server0) / wall if wall > 0 else None
        if self.track_rss:
            peak = peak_rss_bytes()
            self.figures.update(rss_before_bytes=self.rss0, rss_peak_bytes=peak,
                                rss_growth_mb=max(0, peak - self.rss0) / 2 ** 20)
        if self.profiler is not None:
            self._dump_profile()

    def _dump_profile(self) -> None:
        import io
        import pstats

        path = self.spec["profile"]
        self.profiler.dump_stats(path)
        text = io.StringIO()
        stats = pstats.Stats(self.profiler, stream=text)
        stats.sort_stats("tottime").print_stats(20)
        text.write("\n")
        stats.sort_stats("cumulative").print_stats(20)
        with open(path + ".txt", "w") as f:
            f.write(text.getvalue())
        self.figures["profile"] = path


def _until(jobs: Any, measure: "Measure", seconds: Optional[float]) -> Any:
    """``jobs``, cut off once the timed section has run ``seconds`` (None: no cap)."""
    if not seconds:
        return jobs

    def capped() -> Any:
        deadline = measure.t0 + seconds
        for job in jobs:
            if perf_counter() > deadline:
                measure.figures["capped_at_s"] = seconds
                return
            yield job

    return capped()


def _warm_check(workload: Workload) -> Any:
    return lambda kind, token, result: Workload.check(workload, kind, token, result)


def run_cell(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Run the cell described by ``spec``; return its figures (never raises)."""
    name = spec["client"]
    out: Dict[str, Any] = {"client": name, "workload": spec["workload"], "concurrency": spec["concurrency"],
                           "status": "ok"}
    missing = missing_packages(name)
    if missing:
        out.update(status="skipped", reason="not installed: %s" % ", ".join(missing))
        return out
    try:
        cls = load_client(name)
    except Exception as exc:  # a broken install: report, don't crash the run
        out.update(status="skipped", reason="cannot import: %s: %s" % (type(exc).__name__, exc))
        return out
    workload = make_workload(spec)
    prepare = getattr(workload, "prepare", None)
    if prepare is not None:
        prepare()  # e.g. W2 builds its documents before the clock starts
    client = cls(spec["url"], spec["db"], spec["concurrency"])
    rec, warm = Recorder(), Recorder()
    measure = Measure(spec)
    warm_conc = spec["concurrency"] if spec["workload"] in _PARALLEL else 1
    open_loop_rate = spec.get("rate") if spec["workload"] == "W6" else None
    duration = spec.get("duration") if spec["workload"] in ("W1", "W5") else None
    grace = float(spec.get("grace") or 10.0)
    try:
        if client.family == "async":
            _run_async(client, workload, spec, rec, warm, warm_conc, measure, open_loop_rate, duration, grace)
        else:
            client.open()
            try:
                closed_loop(client, workload.warmup_jobs(), _warm_check(workload), warm_conc, warm)
                if warm.errors:
                    raise RuntimeError("warm-up failed: %s" % warm.first_error)
                jobs = workload.jobs()
                measure.start()
                if open_loop_rate:
                    open_loop(client, jobs, workload.check, open_loop_rate, rec, grace)
                else:
                    closed_loop(client, _until(jobs, measure, duration), workload.check, spec["concurrency"], rec)
                measure.stop()
            finally:
                client.close()
    except Exception as exc:
        out.update(status="error", reason="%s: %s" % (type(exc).__name__, exc),
                   traceback=traceback.format_exc(limit=8))
        return out
    out.update(measure.figures)
    out["planned_units"] = {"W2": spec.get("docs"), "W3": spec.get("rows"), "W4": spec.get("changes")}.get(
        spec["workload"], spec.get("requests"))
    units = workload.units
    if spec["workload"] in ("W1", "W5", "W6"):  # what actually completed (a duration cap may stop early)
        units = len(rec.latencies) - rec.incomplete
    wall = out["wall_s"]
    out.update(
        unit=workload.unit, units=units, jobs=len(rec.latencies),
        rate=units / wall if wall > 0 else None,
        cpu_per_1k=out["cpu_s"] / units * 1000 if units else None,
        latency_ms=percentiles(rec.latencies), errors=rec.errors, first_error=rec.first_error,
        modes=getattr(client, "modes", {}), notes=workload.notes, family=client.family,
    )
    if rec.lags:
        out["send_lag_ms"] = percentiles(rec.lags)
        out["target_rate"] = open_loop_rate
        out["incomplete"] = rec.incomplete
    if rec.errors:
        out["status"] = "error"
        out["reason"] = "%d failed request(s); first: %s" % (rec.errors, rec.first_error)
    return out


def _run_async(client: Any, workload: Workload, spec: Dict[str, Any], rec: Recorder, warm: Recorder,
               warm_conc: int, measure: Measure, rate: Optional[float], duration: Optional[float],
               grace: float) -> None:
    aloop: asyncio.AbstractEventLoop
    try:
        import uvloop

        aloop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - no uvloop on this interpreter
        aloop = asyncio.new_event_loop()
    asyncio.set_event_loop(aloop)
    if hasattr(client, "modes"):
        client.modes["asyncio_loop"] = ("uvloop" if type(aloop).__module__.startswith("uvloop")
                                        else "plain asyncio (no uvloop)")

    async def body() -> None:
        await client.open()
        try:
            await async_closed_loop(client, workload.warmup_jobs(), _warm_check(workload), warm_conc, warm)
            if warm.errors:
                raise RuntimeError("warm-up failed: %s" % warm.first_error)
            jobs = workload.jobs()
            measure.start()
            if rate:
                await async_open_loop(client, jobs, workload.check, rate, rec, grace)
            else:
                await async_closed_loop(client, _until(jobs, measure, duration), workload.check,
                                        spec["concurrency"], rec)
            measure.stop()
        finally:
            await client.close()

    try:
        aloop.run_until_complete(body())
    finally:
        aio = sys.modules.get("loop.backends.aio")
        if aio is not None:  # corduroy bound a reactor to this loop: release its curl handles
            aio.reactor_for_loop(aloop).close()
        aloop.close()
        asyncio.set_event_loop(None)


def _redact(result: Dict[str, Any], url: str) -> Dict[str, Any]:
    """Take the target's password out of every message in ``result``."""
    from .fixtures import split_url

    password = split_url(url)[2]
    if not password:
        return result
    for key, value in result.items():
        if isinstance(value, str) and password in value:
            result[key] = value.replace(password, "***")
    return result


def main(argv: Optional[list] = None) -> int:
    """``python -m benchmarks.worker SPEC.json``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m benchmarks.worker SPEC.json\n")
        return 2
    with open(args[0]) as f:
        spec = json.load(f)
    result = _redact(run_cell(spec), spec["url"])
    result["pid"] = os.getpid()
    with open(spec["result"], "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
