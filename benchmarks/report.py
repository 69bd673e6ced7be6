"""Turning results into a table (stdout), a JSON file and a PNG chart."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from .clients import BASELINE, CLIENTS
from .workloads import DESCRIPTIONS

__all__ = ["add_ratios", "format_table", "write_json", "write_chart", "SEQUENTIAL_MARK"]

#: Marks a row measured once at 1 in flight and shown in every concurrency group.
SEQUENTIAL_MARK = "*"

Result = Dict[str, Any]


def _group(result: Result) -> int:
    group = result.get("group")
    return int(group if group is not None else result["concurrency"])


def _key(result: Result) -> Tuple[str, int]:
    return result["workload"], _group(result)


def add_ratios(results: List[Result]) -> None:
    """Give each ok result ``ratio_rate`` and ``ratio_cpu`` against the baseline in its group.

    ``ratio_rate`` > 1: more requests (rows, docs...) per second than
    corduroy-callback; ``ratio_cpu`` > 1: more CPU per request than it.
    """
    base: Dict[Tuple[str, int], Result] = {}
    for r in results:
        if r["client"] == BASELINE and r.get("status") == "ok":
            base[_key(r)] = r
    for r in results:
        b = base.get(_key(r))
        if b is None or r.get("status") != "ok":
            continue
        if r.get("rate") and b.get("rate"):
            r["ratio_rate"] = r["rate"] / b["rate"]
        if r.get("cpu_per_1k") and b.get("cpu_per_1k"):
            r["ratio_cpu"] = r["cpu_per_1k"] / b["cpu_per_1k"]


def _num(value: Optional[float], digits: int = 0) -> str:
    if value is None:
        return "-"
    if digits == 0:
        return "{:,.0f}".format(value)
    return "{:,.{d}f}".format(value, d=digits)


def _ms(result: Result, key: str) -> Optional[float]:
    return (result.get("latency_ms") or {}).get(key)


def _server_per_1k(result: Result) -> Optional[float]:
    """The server's CPU seconds per thousand units over the cell (None if its pid was not known)."""
    server, units = result.get("server_cpu_s"), result.get("units")
    return server / units * 1000 if server is not None and units else None


_COLUMNS = {
    # workload: [(header, width, getter)]
    "default": [
        ("rate/s", 10, lambda r: _num(r.get("rate"))),
        ("CPU s/1k", 9, lambda r: _num(r.get("cpu_per_1k"), 3)),
        ("srv s/1k", 9, lambda r: _num(_server_per_1k(r), 3)),
        ("p50 ms", 8, lambda r: _num(_ms(r, "p50"), 2)),
        ("p99 ms", 8, lambda r: _num(_ms(r, "p99"), 2)),
    ],
    "W3": [
        ("rows/s", 10, lambda r: _num(r.get("rate"))),
        ("CPU s/1k", 9, lambda r: _num(r.get("cpu_per_1k"), 4)),
        ("RSS +MB", 8, lambda r: _num(r.get("rss_growth_mb"), 1)),
        ("wall s", 8, lambda r: _num(r.get("wall_s"), 2)),
    ],
    "W6": [
        ("done/s", 8, lambda r: _num(r.get("rate"))),
        ("CPU s/1k", 9, lambda r: _num(r.get("cpu_per_1k"), 3)),
        ("p50 ms", 8, lambda r: _num(_ms(r, "p50"), 2)),
        ("p99 ms", 8, lambda r: _num(_ms(r, "p99"), 2)),
        ("p99.9 ms", 9, lambda r: _num(_ms(r, "p99_9"), 2)),
        ("lag p99", 8, lambda r: _num((r.get("send_lag_ms") or {}).get("p99"), 2)),
    ],
}


def _notes(result: Result) -> str:
    if result.get("status") != "ok":
        reason = str(result.get("reason") or result.get("status"))
        return "%s: %s" % (result.get("status", "?").upper(), reason[:110])
    parts: List[str] = []
    modes = dict(result.get("modes") or {})
    modes.pop("reactor", None)
    modes.pop("json", None)
    if modes.get("asyncio_loop") == "uvloop":
        modes.pop("asyncio_loop")
    parts.extend("%s" % v for v in modes.values())
    target_rate = result.get("target_rate")
    if target_rate and result.get("rate") and result["rate"] < 0.9 * target_rate:
        parts.append("overloaded: kept %.0f%% of the rate" % (100.0 * result["rate"] / target_rate))
    if result.get("capped_at_s"):
        parts.append("stopped at %gs" % result["capped_at_s"])
    busy = result.get("server_busy")
    if busy is not None and busy > 0.9:
        parts.append("server %.0f%% busy" % (busy * 100))
    if result.get("workload") == "W4" and (result.get("notes") or {}).get("pages"):
        parts.append("%d pages" % result["notes"]["pages"])
    return "; ".join(parts)


def format_table(results: Sequence[Result], meta: Dict[str, Any]) -> str:
    """The human-readable table: one block per workload and concurrency."""
    lines: List[str] = []
    target = meta.get("target", {})
    kind = str(target.get("kind"))
    if target.get("nodes"):
        kind += " %s, %s" % (target.get("version") or "?",
                             "single node" if target["nodes"] == 1 else "%d-node cluster" % target["nodes"])
    lines.append("corduroy benchmarks, target %s (%s), %s" % (
        kind, target.get("url"), "quick run" if meta.get("quick") else "full run"))
    lines.append("Python %s, %s, reactor %s, %s CPUs, load average at start %s" % (
        meta.get("python_version"), meta.get("libcurl"), meta.get("reactor_backend"), meta.get("cpu_count"),
        meta.get("loadavg_start")))
    lines.append("rate x: throughput / %s's (higher is faster); CPU x: client CPU per unit / %s's "
                 "(higher costs more). %s = sequential client, measured once at 1 in flight."
                 % (BASELINE, BASELINE, SEQUENTIAL_MARK))
    order = {name: i for i, name in enumerate(CLIENTS)}
    groups: Dict[Tuple[str, int], List[Result]] = {}
    for r in results:
        groups.setdefault(_key(r), []).append(r)
    for (workload, group), rows in sorted(groups.items()):
        cols = _COLUMNS.get(workload, _COLUMNS["default"])
        first = next((r for r in rows if r.get("status") == "ok"), rows[0])
        size = first.get("planned_units") or first.get("units")
        lines.append("")
        if workload == "W6":
            sizes = "%s requests at %s/s, pools of %s connections" % (
                _num(size), _num(first.get("target_rate")), group)
        elif workload == "W2":
            sizes = "%s docs, %s batches in flight" % (_num(size), group)
        else:
            sizes = "%s %s, %s in flight" % (_num(size), first.get("unit") or "", group)
        lines.append("%s  %s  [%s]" % (workload, DESCRIPTIONS.get(workload, ""), sizes))
        header = "  %-18s %6s " % ("client", "flight") + " ".join("%*s" % (w, h) for h, w, _ in cols)
        header += " %6s %6s  %s" % ("rate x", "CPU x", "notes")
        lines.append(header)
        for r in sorted(rows, key=lambda r: order.get(r["client"], 99)):
            fewer = r.get("concurrency") != r.get("group", r.get("concurrency"))
            flight = str(r.get("concurrency", "")) + (SEQUENTIAL_MARK if fewer else "")
            if r.get("status") == "ok":
                cells = " ".join("%*s" % (w, get(r)) for _h, w, get in cols)
                ratios = " %6s %6s" % (_num(r.get("ratio_rate"), 2), _num(r.get("ratio_cpu"), 2))
            else:
                cells = " ".join("%*s" % (w, "-") for _h, w, _ in cols)
                ratios = " %6s %6s" % ("-", "-")
            lines.append("  %-18s %6s %s%s  %s" % (r["client"], flight, cells, ratios, _notes(r)))
    return "\n".join(lines)


def write_json(path: str, meta: Dict[str, Any], config: Dict[str, Any], results: Sequence[Result]) -> None:
    """The raw figures: ``{"meta", "config", "results"}``."""
    with open(path, "w") as f:
        json.dump({"meta": meta, "config": config, "results": list(results)}, f, indent=1, sort_keys=True)
        f.write("\n")


def write_chart(path: str, results: Sequence[Result], meta: Dict[str, Any]) -> Optional[str]:
    """A PNG with one panel per workload; returns the path, or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    ok = [r for r in results if r.get("status") == "ok" and r.get("rate")]
    workloads = sorted({r["workload"] for r in ok})
    if not workloads:
        return None
    order = list(CLIENTS)
    fig, axes = plt.subplots(len(workloads), 1, figsize=(11, 3.6 * len(workloads)), squeeze=False)
    for ax, workload in zip(axes[:, 0], workloads):
        rows = [r for r in ok if r["workload"] == workload]
        clients = [c for c in order if any(r["client"] == c for r in rows)]
        if workload == "W6":
            series = [("p50", "p50"), ("p99", "p99"), ("p99.9", "p99_9")]
            _bars(ax, clients, series, lambda c, key, rows=rows: next(
                (_ms(r, key) for r in rows if r["client"] == c), None))
            ax.set_ylabel("latency ms (lower is better)")
        else:
            groups = sorted({_group(r) for r in rows})
            in_flight: List[Tuple[str, Any]] = [("%d in flight" % g, g) for g in groups]
            _bars(ax, clients, in_flight, lambda c, g, rows=rows: next(
                (r["rate"] for r in rows if r["client"] == c and _group(r) == g), None))
            ax.set_ylabel("%s/s (higher is better)" % (rows[0].get("unit") or "units"))
        title = "%s: %s" % (workload, DESCRIPTIONS.get(workload, ""))
        groups_here = sorted({_group(r) for r in rows})
        if len(groups_here) == 1 and workload != "W6":
            title += " (%d in flight)" % groups_here[0]
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelrotation=25, labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    target = meta.get("target", {})
    kind = str(target.get("kind"))
    if target.get("nodes"):
        kind += " %s (%s)" % (target.get("version") or "?",
                              "single node" if target["nodes"] == 1 else "%d-node cluster" % target["nodes"])
    fig.suptitle("corduroy benchmarks: target %s, Python %s, %s CPUs" % (
        kind, meta.get("python_version"), meta.get("cpu_count")), fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _bars(ax: Any, clients: List[str], series: Iterable[Tuple[str, Any]], value: Any) -> None:
    series = list(series)
    width = 0.8 / max(1, len(series))
    for i, (label, key) in enumerate(series):
        xs, ys = [], []
        for j, client in enumerate(clients):
            v = value(client, key)
            if v is not None:
                xs.append(j - 0.4 + width * (i + 0.5))
                ys.append(v)
        ax.bar(xs, ys, width=width, label=label)
    ax.set_xticks(range(len(clients)))
    ax.set_xticklabels(clients, ha="right")
    if len(series) > 1:
        ax.legend(fontsize=8)


def results_dir(out: Optional[str]) -> str:
    """``--out`` or ``benchmarks/results`` (created)."""
    path = out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    os.makedirs(path, exist_ok=True)
    return path
