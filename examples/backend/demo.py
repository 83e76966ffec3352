#!/usr/bin/env python3
"""Show that a Store respects a reset that runs between two of its saves.

Usage: demo.py DATA_DIR [--order-reset PATH]

DATA_DIR is a scratch data directory, created when missing; the demo resets
it. The demo saves one session through a Store, runs `order-reset reset`,
saves a second session through the same Store, and then checks that the
first session is only in the archive. A backend that wrote its memory back
instead would have put the first session into scan_sessions.json again.
Exit status 0 means that the reset stuck.
"""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys

from order_reset_store import SESSIONS_FILE, Store


def new_session(session_id: str) -> dict:
    """Return a session in the backend's shape, modified now (local time)."""
    now = datetime.datetime.now().isoformat()
    return {
        "session_id": session_id,
        "order_number": "1045300001",
        "status": "draft",
        "items_expected": [{"sku": "TB100", "qty_ordered": 1.0}],
        "started_at": now,
        "last_modified_at": now,
    }


def count_sessions(count: int) -> str:
    return f"{count} session" if count == 1 else f"{count} sessions"


def run_order_reset(binary: str, data_dir: str, *args: str) -> dict:
    """Run order-reset with --json and return its document."""
    command = [binary, "--data-dir", data_dir, "--json", *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        sys.exit(
            f"{' '.join(command)} exited {result.returncode} without a JSON document: {result.stderr.strip()}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", help="scratch data directory, created when missing")
    parser.add_argument(
        "--order-reset",
        default="order-reset",
        help="path of the order-reset binary (default: order-reset on PATH)",
    )
    args = parser.parse_args()
    binary = shutil.which(args.order_reset)
    if binary is None:
        sys.exit(
            f"{args.order_reset} not found: pass --order-reset PATH, such as target/debug/order-reset after `cargo build`"
        )
    os.makedirs(args.data_dir, exist_ok=True)

    store = Store(args.data_dir)
    with store.transaction() as data:
        data.sessions["demo-before-reset"] = new_session("demo-before-reset")
    print(f"1. saved demo-before-reset at generation {store.generation}")

    reset = run_order_reset(binary, args.data_dir, "reset")
    if not reset.get("success"):
        print(f"order-reset reset failed: {reset.get('error')}", file=sys.stderr)
        return 1
    print(
        f"2. order-reset archived {count_sessions(reset['total_sessions_reset'])} to "
        f"{reset['archived_to']} and raised the generation to {reset['generation']}"
    )

    loaded_at = store.generation
    with store.transaction() as data:
        data.sessions["demo-after-reset"] = new_session("demo-after-reset")
    print(
        f"3. saved demo-after-reset; the Store reloaded the files first because the "
        f"generation went from {loaded_at} to {store.generation}"
    )

    with open(os.path.join(args.data_dir, SESSIONS_FILE)) as file:
        active = sorted(json.load(file))
    status = run_order_reset(binary, args.data_dir, "status")
    resurrected = status["resurrection"]["count"]
    print(
        f"4. {SESSIONS_FILE} holds {active}; order-reset status counts "
        f"{count_sessions(resurrected)} resurrected"
    )
    if "demo-before-reset" in active or resurrected != 0:
        print("the reset was undone: demo-before-reset is active again", file=sys.stderr)
        return 1
    print("the reset stuck: demo-before-reset is only in the archive")
    return 0


if __name__ == "__main__":
    sys.exit(main())
