#!/usr/bin/env python3
"""Registrations on a Prosody whose store another process keeps locking, while a client pings
Prosody every 20 ms. Another process (a stand-in for the CLI, ejabberd or a backup on the same
file) takes SQLite's write lock for HOLD seconds, lets go for 0.2 s, and again, for the whole run.
Prints the pings' round trips and the registrations' outcomes: the event loop must keep answering
while registrations wait for the lock on the core's worker.

    scripts/build && python3 benches/prosody_lock_pings.py [REGISTRATIONS] [HOLD]

Figures, not assertions."""

import asyncio
import json
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from harness import client  # noqa: E402
from harness.common import run_cli  # noqa: E402
from harness.prosody import Prosody  # noqa: E402

HOST = "lock.example"


def hold_lock(db: Path, hold: float, stop: threading.Event, held: list):
    conn = sqlite3.connect(db, timeout=30, isolation_level=None)
    while not stop.is_set():
        conn.execute("BEGIN IMMEDIATE")
        held.append(time.monotonic())
        time.sleep(hold)
        conn.execute("COMMIT")
        time.sleep(0.2)
    conn.close()


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    hold = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    work = Path(tempfile.mkdtemp(prefix="xh-bench-lock-"))
    with Prosody(work / "prosody", host=HOST, host_modules=["xmpp_hosting_invites"]) as prosody:
        prosody.create_user("pinger", "pw-123456")
        tokens = [json.loads(run_cli(prosody.database, "--json", "invite", "create", HOST).stdout)["token"]
                  for _ in range(n)]
        stop, held, outcomes = threading.Event(), [], []
        locker = threading.Thread(target=hold_lock, args=(prosody.database, hold, stop, held))

        def register_all():
            time.sleep(0.5)
            for i, token in enumerate(tokens):
                t0 = time.monotonic()
                r = client.register(prosody.c2s_port, f"u{i}@{HOST}", "pw-123456", token=token, timeout=60)
                outcomes.append((r.ok, r.error, time.monotonic() - t0))
            stop.set()

        registrar = threading.Thread(target=register_all)
        locker.start()
        registrar.start()

        async def pings(c):
            return await client.ping_until(c, stop.is_set, interval=0.02)

        rtts = asyncio.run(client._session(prosody.c2s_port, f"pinger@{HOST}", "pw-123456", pings, 900))
        registrar.join()
        locker.join()
    ok = sum(1 for o in outcomes if o[0])
    waits = sorted(o[2] for o in outcomes)
    print(f"lock held {hold:.1f} s at a time, {len(held)} times; registrations: {ok} of {n} succeeded, "
          f"failures: {[o[1] for o in outcomes if not o[0]]}")
    print(f"registration round trips: min {waits[0]:.2f} s, max {waits[-1]:.2f} s")
    print(client.ping_summary(rtts))


if __name__ == "__main__":
    main()
