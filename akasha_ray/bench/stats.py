"""Timing helpers shared by the benchmarks: repeated runs, percentiles, the machine they ran on."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def summarize(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {
        "runs": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
    }


def timed(calls: list[Callable[[], Any]], warmup: int = 3) -> tuple[dict[str, float], list[Any]]:
    """Run each call once (after a few warm-up calls) and summarize the latencies."""
    for call in calls[:warmup]:
        call()
    seconds, results = [], []
    for call in calls:
        started = time.perf_counter()
        results.append(call())
        seconds.append(time.perf_counter() - started)
    return summarize(seconds), results


def seconds_of(call: Callable[[], Any]) -> float:
    """How long one call took."""
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator else None


def loaded_vs_idle(idle: list[float], loaded: list[float]) -> dict[str, Any]:
    """Latencies idle and under load (seconds), summarized, and the loaded/idle p95 ratio."""
    a, b = summarize(idle), summarize(loaded)
    return {"idle": a, "loaded": b, "p95_ratio": ratio(b["p95_ms"], a["p95_ms"])}


def machine() -> dict[str, Any]:
    try:
        import threadpoolctl

        blas = [
            {k: info.get(k) for k in ("internal_api", "num_threads", "architecture")}
            for info in threadpoolctl.threadpool_info()
        ]
    except ImportError:
        blas = []
    meminfo = {}
    if os.path.exists("/proc/meminfo"):
        with open("/proc/meminfo") as lines:
            meminfo = dict(line.split(":", 1) for line in lines)
    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpus": os.cpu_count(),
        "memory": meminfo.get("MemTotal", "").strip(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas,
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
    }
