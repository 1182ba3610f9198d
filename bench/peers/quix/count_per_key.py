"""Count per key with Quix Streams, the job of (b) in `casestudies bench streams`: RocksDB state
with its changelog topic, at-least-once. Reads RECORDS records of TOPIC from the beginning and
prints one JSON line: records/s from the first record to the last, and the CPU per record of the
thread that processes them (Quix Streams processes on the main thread).

usage: count_per_key.py BOOTSTRAP TOPIC RECORDS GROUP STATE_DIR COMMIT_S|default
"""

import json
import sys
import time

from quixstreams import Application


def main() -> None:
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    bootstrap, topic, records, group, state_dir, commit = sys.argv[1:]
    records = int(records)
    options = {} if commit == "default" else {"commit_interval": float(commit)}
    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        state_dir=state_dir,
        loglevel="WARNING",
        **options,
    )
    seen = 0
    start = end = (0.0, 0.0)

    def count(value, state):
        # The bench's values are JSON (decoded by the topic's deserializer, as ours decodes them).
        nonlocal seen, start, end
        total = state.get("count", 0) + 1
        state.set("count", total)
        seen += 1
        if seen == 1:
            start = (time.perf_counter(), time.thread_time())
        elif seen == records:
            end = (time.perf_counter(), time.thread_time())
            app.stop()
        return total

    sdf = app.dataframe(app.topic(topic, key_deserializer="str", value_deserializer="json"))
    sdf = sdf.apply(count, stateful=True)
    app.run()
    n = records - 1
    print(
        json.dumps(
            {
                "records": n,
                "records_per_s": round(n / (end[0] - start[0])),
                "cpu_us_per_record": round((end[1] - start[1]) * 1e6 / n, 2),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
