"""Run every bench with quick sizes (``make bench``); pass --full for the issue's sizes.

Metering benches get explicit sizes below; any other bench/*.py runs with its own defaults.

    python bench/run_all.py          # dashboards and metrics at 1,000,000 events, ingest 10,000 events, import time
    python bench/run_all.py --full   # dashboards and metrics at 10,000,000 events, ingest 1,000,000 events (hours)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full", action="store_true", help="the issue's full sizes")
    args = parser.parse_args()
    runs = [
        ["import_time.py"],
        ["dashboard_bench.py", "--events", "10000000" if args.full else "1000000"],
        ["ingest_bench.py", "--events", "1000000" if args.full else "10000"],
        ["metrics_bench.py", "--events", "10000000" if args.full else "1000000", "--gauge"],
    ]
    # Every other bench script of the folder runs with its own defaults.
    known = {r[0] for r in runs} | {Path(__file__).name}
    runs += [[path.name] for path in sorted(HERE.glob("*.py")) if path.name not in known]
    status = 0
    for run in runs:
        print(f"\n=== python bench/{' '.join(run)}", flush=True)
        status |= subprocess.call([sys.executable, str(HERE / run[0]), *run[1:]])
    return status


if __name__ == "__main__":
    sys.exit(main())
