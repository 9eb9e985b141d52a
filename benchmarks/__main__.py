"""Run the benchmarks named on the command line, or all of them, printing each one's table.

Each module in this package has ``main() -> None``; ``python -m benchmarks tracker`` runs one.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ["tracker_throughput", "tracker_cost", "aggregation", "dashboard"]


def main(names: list[str]) -> None:
    for name in names or BENCHMARKS:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"\n## {name}\n", flush=True)
        module.main()


if __name__ == "__main__":
    main(sys.argv[1:])
