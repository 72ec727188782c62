"""`python -m akasha_ray.bench <name> [options]`, a name from BENCHMARKS below: JSON on stdout."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "hot": "akasha_ray.bench.hot",
    "encode": "akasha_ray.bench.encode",
    "graph": "akasha_ray.bench.graph",
    "timeseries": "akasha_ray.bench.timeseries",
    "warm": "akasha_ray.bench.warm",
    "window": "akasha_ray.bench.window",
    "bounded": "akasha_ray.bench.bounded",
    "recall": "akasha_ray.bench.recall",
    "cold": "akasha_ray.bench.cold",
    "ship": "akasha_ray.bench.ship",
    "fleet": "akasha_ray.bench.fleet",
    "dr": "akasha_ray.bench.dr",
    "clients": "akasha_ray.bench.clients",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHMARKS:
        print(f"usage: python -m akasha_ray.bench {{{'|'.join(BENCHMARKS)}}} [options]")
        return 2
    return importlib.import_module(BENCHMARKS[argv[0]]).main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
