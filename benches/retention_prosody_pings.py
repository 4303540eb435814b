#!/usr/bin/env python3
"""Retention in a real Prosody (issue 13): the archive sweep of ROWS old messages on SQLite runs
in Prosody's housekeeping while one client pings every 50 ms and another sends a chat message
every 100 ms (each archived by mod_mam on Prosody's loop, for its sender and its recipient, so
Prosody's own writes meet the sweep's steps). Prints the pings' and the messages' p50/p99/max
round trips, the sweep's rows/s, steps and longest step, the length of Prosody's log file
(`-wal`) after the sweep, and the load.

    python3 benches/retention_prosody_pings.py [ROWS] [--lib PATH] [--servers prosody-13] [--baseline S]

ROWS defaults to 100,000 (plus 1,000 newer ones that must stay). The Lua module is
target/lua/xmpp_hosting.so (scripts/build), or the library given with --lib (a release build
kept apart, see benches/retention_prosody.py). The Prosody generation is the tests' (XH_SERVERS).

Prosody runs with XH_RETENTION_PROFILE set: each part of the sweep (one a housekeeping pass)
prints where its time went to Prosody's stdout; the bench sums them up: the steps, and for each
time the write lock was held (a step's delete and commit, a commit restarting the log, the rounds
emptying the log file) how many, the longest, and how many took over 5 ms.
"""

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rows", nargs="?", type=int, default=100_000)
    ap.add_argument("--lib", type=Path, help="the Lua module's library (default: target/lua/xmpp_hosting.so)")
    ap.add_argument("--servers", help="the Prosody generation (as XH_SERVERS: prosody-0.12, prosody-13)")
    ap.add_argument("--baseline", type=float, metavar="SECONDS",
                    help="no sweep: the same pings and messages for this long, on the same data (what the "
                         "machine's load alone gives)")
    args = ap.parse_args()
    if args.servers:
        os.environ["XH_SERVERS"] = args.servers
    # The core's profile of each part of the sweep, to Prosody's stdout (see profile_summary).
    os.environ["XH_RETENTION_PROFILE"] = "1"
    work = Path(tempfile.mkdtemp(prefix="xh-retention-pings-"))
    import harness.prosody
    if args.lib:
        (work / "lua").mkdir()
        (work / "lua/xmpp_hosting.so").symlink_to(args.lib.resolve())
        harness.prosody.LUA_CPATH_DIR = work / "lua"
    import slixmpp
    import test_prosody_retention as t
    from harness.client import _plain, ping_summary
    from harness.clock import ServerClock
    from harness.common import LOOPBACK, run_cli

    server = t.archive_server(work, "sql", ServerClock(work))
    with server:  # Prosody makes its tables
        t.SERVER["port"] = server.c2s_port
        for user in ("alice", "bob", "carol"):
            server.create_user(user, t.PASSWORD)
    db = server.data / "prosody.sqlite"
    now = int(time.time())
    t.fill_archive(db, t.HOST, [(args.rows, now - 10 * t.DAY), (1000, now - 3600)])
    newer = t.archive_rows(db, t.HOST, newer_than=now - t.DAY)
    server.start()
    t.SERVER["port"] = server.c2s_port
    latencies, stop = [], threading.Event()

    def messages():
        async def run():
            bob = slixmpp.ClientXMPP(f"bob@{t.HOST}", t.PASSWORD)
            carol = slixmpp.ClientXMPP(f"carol@{t.HOST}", t.PASSWORD)
            sent, started = {}, [asyncio.Event(), asyncio.Event()]
            for c, ev in ((bob, started[0]), (carol, started[1])):
                _plain(c)
                c.add_event_handler("session_start", lambda _, c=c, ev=ev: (c.send_presence(), ev.set()))
                c.connect(host=LOOPBACK, port=server.c2s_port)
            bob.add_event_handler("message", lambda m: m["body"] in sent and latencies.append(
                time.monotonic() - sent.pop(m["body"])))
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 30)
            n = 0
            while not stop.is_set():
                n += 1
                sent[str(n)] = time.monotonic()
                carol.send_message(mto=f"bob@{t.HOST}", mbody=str(n), mtype="chat")
                await asyncio.sleep(0.1)
            await asyncio.sleep(1)
            for c in (carol, bob):
                c.disconnect()
            return len(sent)
        return asyncio.run(run())

    lost = []
    sender = threading.Thread(target=lambda: lost.append(messages()), daemon=True)
    pinger = t.Pinger(server.c2s_port)
    sender.start()
    t0 = time.monotonic()
    if not args.baseline:
        run_cli(server.database, "retention", "set", t.HOST, "archive", "1d")
    try:
        if args.baseline:
            time.sleep(args.baseline)
            done = [{"id": 0, "deleted": 0, "steps": 0, "duration_us": 0, "longest_step_us": 0}]
        else:
            done = t.wait_until(lambda: [s for s in t.sweeps(server, "archive") if s["state"] == "done"],
                                timeout=1800)
    finally:
        wall = time.monotonic() - t0
        stop.set()
        rtts = pinger.finish()
        sender.join(30)
        # Prosody's connection is still open: the log file's length is what Prosody lives with
        # (SQLite removes the file only when the last connection closes).
        wal = Path(f"{db}-wal")
        wal_bytes = wal.stat().st_size if wal.exists() else None
        server.stop()
        stdout = server.dir / "stdout.log"
        profiles = [line for line in stdout.read_text(errors="replace").splitlines()
                    if line.startswith("profile:")] if stdout.exists() else []
    assert done, t.sweeps(server, "archive")
    [rec] = done
    left_new = t.archive_rows(db, t.HOST, newer_than=now - t.DAY)
    if args.baseline:
        print(f"{server.target.name}: baseline, no sweep, {args.baseline:.0f} s")
    print(f"{server.target.name}: {args.rows} old rows, "
          f"sweep #{rec['id']}: deleted {rec['deleted']} in {rec['steps']} steps, "
          f"{rec['duration_us'] / 1e6:.1f} s in steps, longest step {rec['longest_step_us'] / 1000:.2f} ms; "
          f"{rec['deleted'] / wall:,.0f} rows/s from the policy set to the sweep seen done ({wall:.1f} s, "
          f"the housekeeping pass's 1 s interval and the 2 s budget a pass included)")
    print(f"rows newer than the cutoff: {newer} before, {left_new} after (the messages of the run archived); "
          f"older rows left: {t.archive_rows(db, t.HOST) - left_new}")
    print(profile_summary(profiles))
    print("log file (-wal) after the sweep, Prosody running: "
          + ("none" if wal_bytes is None else f"{wal_bytes:,} bytes"))
    print(ping_summary(rtts) + (f"; pinger error: {pinger.error}" if pinger.error else ""))
    if latencies:
        ls = sorted(latencies)
        ms = lambda q: ls[min(len(ls) - 1, int(len(ls) * q))] * 1000  # noqa: E731
        print(f"chat messages (archived for both sides) during the run: {len(ls)} delivered, "
              f"{lost[0] if lost else '?'} not delivered, p50 {ms(0.5):.1f} ms, p99 {ms(0.99):.1f} ms, "
              f"max {ls[-1] * 1000:.1f} ms")
    print(f"load {os.getloadavg()}; " + subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    subprocess.run(["rm", "-rf", str(work)], check=False)


def profile_summary(lines: list) -> str:
    """The parts' profile lines summed up: counts added, and for each phase that holds the write
    lock (its name says "held") how many, the longest and how many took over 5 ms."""
    if not lines:
        return "profile: none printed (was the sweep run by this Prosody?)"
    counts, held = {}, {}
    for line in lines:
        for part in line[len("profile: "):].split("; "):
            words = part.split()
            if " total " not in part:
                if words and words[0].isdigit():
                    name = part.split(" ", 1)[1]
                    counts[name] = counts.get(name, 0) + int(words[0])
            elif "held" in part:
                name, n = part.split(" total ")[0].rsplit(" ", 1)
                h = held.setdefault(name, [0, 0.0, 0])
                h[0] += int(n)
                h[1] = max(h[1], float(part.split(" max ")[1].split()[0]))
                if " over 5 ms" in part:
                    h[2] += int(part.split(", ")[-1].split()[0])
    out = [f"profile of {len(lines)} part(s): " + ", ".join(f"{v} {k}" for k, v in counts.items())]
    for name, (n, mx, over) in held.items():
        out.append(f"  {name}: {n}, longest {mx:.2f} ms, {over} over 5 ms")
    return "\n".join(out)


if __name__ == "__main__":
    main()
