#!/usr/bin/env python3
"""Test writer that behaves like the pick/pack backend.

Each round takes the exclusive flock on order-reset.lock, re-reads
scan_sessions.json, adds one session, and rewrites the file in place with
json.dump(data, f, indent=2). That is how the backend writes today: open("w")
truncates the file and the dump fills it again, so only the lock keeps a
reader from seeing it half-written. The id of every session it saved is
appended to LOG after the write, so a test can check that each one ends up in
the active file or in an archive.

Usage: backend_writer.py DATA_DIR ROUNDS LOG [PAUSE_SECONDS]
"""
import fcntl
import json
import os
import sys
import time


def main():
    data_dir, rounds, log_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    pause = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    lock_path = os.path.join(data_dir, "order-reset.lock")
    sessions_path = os.path.join(data_dir, "scan_sessions.json")
    with open(log_path, "a") as log:
        for number in range(rounds):
            session_id = f"writer-{os.getpid()}-{number}"
            lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
                try:
                    with open(sessions_path) as f:
                        sessions = json.load(f)
                except FileNotFoundError:
                    sessions = {}
                sessions[session_id] = {
                    "session_id": session_id,
                    "order_number": str(1045300000 + number),
                    "status": "draft",
                    "items_expected": [{"sku": "TB100", "qty_ordered": 1.0}],
                }
                with open(sessions_path, "w") as f:
                    json.dump(sessions, f, indent=2)
            finally:
                os.close(lock_fd)
            log.write(session_id + "\n")
            log.flush()
            time.sleep(pause)


if __name__ == "__main__":
    main()
