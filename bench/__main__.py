"""`make bench`: prints the numbers the issues set targets for. Not a test: nothing here asserts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench import backtest, cold_init, delivery, engine, readback, trigger_metrics, write_units


def main() -> int:
    results = {
        "write_units": write_units.run(),
        "engine": engine.run(),
        "cold_init": cold_init.run(),
        "delivery": delivery.run(),
        "readback": readback.run(),
        "trigger_metrics": trigger_metrics.run(),
        "backtest": backtest.run(),
    }
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n(results also in {out / 'latest.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
