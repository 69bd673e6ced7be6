"""Measuring a client process: CPU time, memory, latency percentiles."""
from __future__ import annotations

import os
import resource
from typing import Dict, List, Optional, Sequence

__all__ = ["cpu_times", "rss_bytes", "reset_peak_rss", "peak_rss_bytes", "percentiles", "process_cpu"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def cpu_times() -> tuple:
    """``(user, system)`` CPU seconds of this process, all threads included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def process_cpu(pid: Optional[int]) -> Optional[float]:
    """User + system CPU seconds of another process (``/proc``), or None if unknown."""
    if not pid:
        return None
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks
    except (OSError, ValueError, IndexError):
        try:
            import psutil

            times = psutil.Process(pid).cpu_times()
            return times.user + times.system
        except Exception:
            return None


def rss_bytes() -> int:
    """This process's resident set size now."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark for this process (Linux ``clear_refs``); True if it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """The peak RSS since the last :func:`reset_peak_rss` (``VmHWM``), else the lifetime peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):  # pragma: no cover - not Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def percentiles(samples: Sequence[float], points: Sequence[float] = (50, 90, 99, 99.9)) -> Dict[str, float]:
    """Latency percentiles in milliseconds (nearest rank), plus mean and max."""
    if not samples:
        return {}
    data: List[float] = sorted(samples)
    n = len(data)
    out: Dict[str, float] = {}
    for p in points:
        rank = max(1, -(-int(p * n * 10) // 1000))  # ceil(p/100 * n) without float error
        out["p%s" % ("%g" % p).replace(".", "_")] = data[min(rank, n) - 1] * 1000.0
    out["mean"] = sum(data) / n * 1000.0
    out["max"] = data[-1] * 1000.0
    out["samples"] = n
    return out
