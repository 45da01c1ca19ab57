"""A stand-in for the SaaS app, run as a subprocess against `billing serve`.

    python tests/serve/app.py track ENDPOINT KEY SPOOL IDS_FILE TENANT RATE [INVALID_EVERY]
    python tests/serve/app.py drain ENDPOINT KEY SPOOL

``track`` tracks queries for TENANT at about RATE a second until killed and appends each event id
to IDS_FILE after track() returned for it (an unbuffered write: a SIGKILL cannot lose a written
line). Every INVALID_EVERY-th event names a model the price book does not know: the server refuses
that event alone (400 naming its index), its id goes to IDS_FILE.invalid. ``drain`` replays the
spool until everything is answered and prints the stats as JSON.
"""

from __future__ import annotations

import json
import os
import sys
import time

from usage_tracker import Tracker


def main() -> int:
    mode, endpoint, key, spool = sys.argv[1:5]
    # Batches of 250 and a long request timeout: moto-backed ingest on a loaded shared machine can
    # take tens of seconds for a full batch of 1,000, and a timed-out batch holds the tenant's lock.
    tracker = Tracker(
        endpoint,
        key,
        spool,
        flush_interval=0.05,
        backoff_base=0.05,
        backoff_max=0.5,
        adopt_interval=0.2,
        max_batch_events=250,
        timeout=120,
    )
    if mode == "track":
        ids_file, tenant, rate = sys.argv[5], sys.argv[6], float(sys.argv[7])
        invalid_every = int(sys.argv[8]) if len(sys.argv) > 8 else 0
        out = os.open(ids_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        bad = os.open(ids_file + ".invalid", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        n = 0
        started = time.monotonic()
        while True:
            invalid = invalid_every and n % invalid_every == invalid_every - 1
            model = "no-such-model" if invalid else "gpt-4o-mini"
            event_id = tracker.track(tenant, "query", model, input_tokens=n + 1, output_tokens=1)
            os.write(bad if invalid else out, (event_id + "\n").encode())
            n += 1
            ahead = n / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    drained = tracker.flush(600).complete  # every event answered for (delivered or refused)
    stats = tracker.stats().as_dict()
    tracker.close()
    print(json.dumps({"drained": drained, **stats}))
    return 0 if drained else 1


if __name__ == "__main__":
    sys.exit(main())
