"""A stand-in for the SaaS app, run as a subprocess by the durability tests.

    python tests/client/app.py track ENDPOINT KEY SPOOL IDS_FILE   # track until killed
    python tests/client/app.py drain ENDPOINT KEY SPOOL            # replay the spool, print stats

``track`` appends each event id to IDS_FILE after track() returned for it (an unbuffered write, so
a SIGKILL cannot lose a line that was written).
"""

from __future__ import annotations

import json
import os
import sys
import time

from usage_tracker import Tracker


def main() -> int:
    mode, endpoint, key, spool = sys.argv[1:5]
    tracker = Tracker(
        endpoint, key, spool, flush_interval=0.05, backoff_base=0.02, backoff_max=0.2, adopt_interval=0.2
    )
    if mode == "track":
        out = os.open(sys.argv[5], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        n = 0
        while True:
            event_id = tracker.track(
                f"tenant-{n % 7}", "query", "gpt-4o-mini", input_tokens=n, output_tokens=1
            )
            os.write(out, (event_id + "\n").encode())
            n += 1
            if n % 20 == 0:
                time.sleep(0.002)
    drained = bool(tracker.flush(30))
    stats = tracker.stats().as_dict()
    tracker.close()
    print(json.dumps({"drained": drained, **stats}))
    return 0 if drained else 1


if __name__ == "__main__":
    sys.exit(main())
