#!/usr/bin/env python3
"""Test writer that saves sessions through examples/backend/order_reset_store.py.

Usage: module_writer.py DATA_DIR NAME OPERATIONS RESULT [PAUSE_SECONDS]

Each operation is one transaction. It either updates one of this writer's
sessions that is still active, raising its "version", or creates a session
named NAME-<n>. A session that a reset archived is gone from the reloaded
data, so it is never written again, and each session must end up in exactly
one place: the active file or one archive. After the last operation the
writer saves RESULT, a JSON object with "last_versions" (each session id it
wrote and the version of its last write) and "reloads" (files it read).
PAUSE_SECONDS between operations leaves the lock free for a reset, which
polls for it.
"""
import datetime
import json
import os
import random
import sys
import time

sys.path.insert(
    0,
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "backend"),
)

from order_reset_store import Store  # noqa: E402


def main():
    data_dir, name, operations, result_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    pause = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    choices = random.Random(name)
    store = Store(data_dir)
    last_versions = {}
    created = 0
    for _ in range(operations):
        with store.transaction() as data:
            now = datetime.datetime.now().isoformat()
            own = [key for key in data.sessions if key.startswith(name + "-")]
            if own and choices.random() < 0.5:
                session_id = choices.choice(own)
                session = data.sessions[session_id]
                session["version"] += 1
                session["last_modified_at"] = now
            else:
                session_id = f"{name}-{created}"
                created += 1
                session = {
                    "session_id": session_id,
                    "status": "draft",
                    "version": 1,
                    "started_at": now,
                    "last_modified_at": now,
                }
                data.sessions[session_id] = session
            version = session["version"]
        # Recorded only after the transaction wrote the file.
        last_versions[session_id] = version
        time.sleep(pause)
    with open(result_path, "w") as result:
        json.dump({"last_versions": last_versions, "reloads": store.reload_count}, result)


if __name__ == "__main__":
    main()
