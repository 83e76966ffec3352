#!/usr/bin/env python3
"""Test writer that ignores the reset protocol as the unchanged backend does.

Usage: stale_writer.py DATA_DIR COUNT

It takes order-reset.lock for each write but never reloads. It loads
scan_sessions.json once, adds COUNT sessions modified now, writes its whole
memory back and prints "saved". Then, for each line read from stdin, it adds
one more session and writes its whole memory back again, printing "saved".
A reset between two saves is undone: the archived sessions come back.
"""
import datetime
import fcntl
import json
import os
import sys


def save(data_dir, sessions):
    lock_fd = os.open(os.path.join(data_dir, "order-reset.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        with open(os.path.join(data_dir, "scan_sessions.json"), "w") as file:
            json.dump(sessions, file, indent=2)
    finally:
        os.close(lock_fd)
    print("saved", flush=True)


def add_session(sessions, number):
    now = datetime.datetime.now().isoformat()
    session_id = f"stale-{number}"
    sessions[session_id] = {
        "session_id": session_id,
        "status": "draft",
        "started_at": now,
        "last_modified_at": now,
    }


def main():
    data_dir, count = sys.argv[1], int(sys.argv[2])
    try:
        with open(os.path.join(data_dir, "scan_sessions.json")) as file:
            sessions = json.load(file)
    except FileNotFoundError:
        sessions = {}
    for number in range(count):
        add_session(sessions, number)
    save(data_dir, sessions)
    for line in sys.stdin:
        add_session(sessions, len(sessions))
        save(data_dir, sessions)


if __name__ == "__main__":
    main()
