#!/usr/bin/env python3
"""Retention bench on Prosody's own SQLite schema (issue 13): N archived messages, half older
than the cutoff; our sweep (the core deleting in the database, as it does inside Prosody's
housekeeping, through the Lua module a Prosody loads) against Prosody's own cleanup statement
(mod_storage_sql's archive delete: one DELETE ... WHERE host, store, "when" < cutoff, in one
transaction) on a copy of the same data.

    python3 benches/retention_prosody.py [ROWS] [--lib PATH]   (default 1,000,000 rows)
    python3 benches/retention_prosody.py --data /tmp/1m.sqlite --lib NEW.so --compare OLD.so --repeat 2

The Lua module is target/lua/xmpp_hosting.so (`PROFILE=release scripts/build`), or the library
given with --lib (e.g. a release build kept apart from the debug one other work uses:
`CARGO_TARGET_DIR=/tmp/xh-release cargo build --release -p xmpp-hosting-lua`, then
`--lib /tmp/xh-release/release/libxmpp_hosting_lua.so`). The sweep runs with
XH_RETENTION_PROFILE set: the core prints where the steps' time went (picking the rows, the
DELETE, the commit, checkpoints, the gap left to Prosody, the engine between steps).

Prints rows/s over the sweep's wall time and over its time in steps, the longest step (the
longest the sweep held Prosody's database: a DELETE and its commit), the journal mode the sweep
left the database in (WAL, see the README), the length of its log file (`-wal`) after the sweep
while a connection stays open as Prosody's does (SQLite removes the file only when the last
connection closes), the log pages a row costs ours and Prosody's statement (run again in WAL
mode on another copy for that count: one transaction writes each page it changes once, steps a
few milliseconds long write a page shared by many users' rows once per step that changes it),
and the machine's load (uptime) beside each figure. The profile line gives
each phase's total and spread (p50, p90, p99, max): "held" is a step's DELETE and commit, the
time Prosody's writes would wait; "held restarting the log" the commits of the sweep's own that
start the log afresh (their new header's sync), "log file emptying rounds" the slices the end of
the sweep frees the log file in.

--compare OTHER.so runs the sweep with each library in turn on a fresh copy of the same data
(--repeat N times, alternating, so a load that changes meanwhile falls on both), and ends with
one line a run: rows/s, the longest step, the held spread, the load.
"""

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCHEMA = '''CREATE TABLE "prosodyarchive" ("sort_id" INTEGER PRIMARY KEY AUTOINCREMENT, "host" TEXT NOT NULL,
  "user" TEXT NOT NULL, "store" TEXT NOT NULL, "key" TEXT NOT NULL, "when" INTEGER NOT NULL, "with" TEXT NOT NULL,
  "type" TEXT NOT NULL, "value" MEDIUMTEXT NOT NULL);
CREATE UNIQUE INDEX "prosodyarchive_index" ON "prosodyarchive" ("host", "user", "store", "key");
CREATE INDEX "prosodyarchive_with_when" ON "prosodyarchive" ("host", "user", "store", "with", "when");
CREATE INDEX "prosodyarchive_when" ON "prosodyarchive" ("host", "user", "store", "when");
CREATE INDEX "prosodyarchive_sort" ON "prosodyarchive" ("host", "user", "store", "sort_id");'''
HOST = "bench.example"
DAY = 86_400

LUA = r'''
local xh = require "xmpp_hosting"
local h = assert(xh.open(arg[1]))
assert(h:add_domain(arg[3]))
assert(h:set_retention(arg[3], "archive", "1d"))
assert(h:register_archive_store(arg[3], "archive", arg[3], "prosody_sql", arg[2], "archive"))
-- As in Prosody with mod_xmpp_hosting_retention loaded: the database's gate exists (Prosody's
-- loop, idle here, never enters it), so the sweep leaves no gap between steps for Prosody's
-- writes; "nogate": as from another process (the command line), with the gap.
local gated = arg[4] ~= "nogate" and pcall(function() return h:prosody_sql_gate(arg[2]) end)
print("gate: " .. (gated and "yes (as inside Prosody)" or "no (as from another process: a gap after each step)"))
local socket = require "socket"
local t0 = socket.gettime()
local p = assert(h:start_retention_sweep(arg[3], "archive", {}))
while not p:ready() do socket.sleep(0.01) end
local rec = assert(p:result())
print(("wall %.2f s; %s"):format(socket.gettime() - t0, rec.text))
print(("deleted %d steps %d in_steps_us %d longest_us %d"):format(rec.deleted, rec.steps, rec.duration_us, rec.longest_step_us))
'''


def fill(path: Path, rows: int, now: int):
    c = sqlite3.connect(path)
    c.executescript(SCHEMA)
    half = rows // 2
    with c:
        for start, count, when in ((0, half, now - 10 * DAY), (half, rows - half, now - 3600)):
            c.executemany(
                'INSERT INTO prosodyarchive (host, user, store, key, "when", "with", type, value) '
                "VALUES (?, ?, 'archive', ?, ?, ?, 'xml', ?)",
                ((HOST, f"user{i % 1000}", uuid.uuid4().hex, when, f"peer{i % 50}@{HOST}",
                  f"<message xmlns='jabber:client' type='chat'><body>message {i}</body></message>")
                 for i in range(start, start + count)))
    c.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rows", nargs="?", type=int, default=1_000_000)
    ap.add_argument("--lib", type=Path, default=REPO / "target/lua/xmpp_hosting.so",
                    help="the Lua module's library (default: target/lua/xmpp_hosting.so)")
    ap.add_argument("--data", type=Path,
                    help="keep the filled database here and reuse it while it is under 12 hours old "
                         "(filling a million rows takes minutes)")
    ap.add_argument("--no-statement", action="store_true",
                    help="skip Prosody's own statement (when comparing settings of our sweep alone)")
    ap.add_argument("--compare", type=Path, metavar="OTHER_LIB",
                    help="also sweep with this library (an older build), in turn with --lib on the same data")
    ap.add_argument("--repeat", type=int, default=1, help="sweeps per library (alternating with --compare)")
    ap.add_argument("--no-gate", action="store_true",
                    help="sweep as from another process than Prosody's (the command line): no gate, a gap "
                         "after each step for Prosody's writes")
    args = ap.parse_args()
    rows = args.rows
    work = Path(tempfile.mkdtemp(prefix="xh-retention-bench-"))
    now = int(time.time())
    src = work / "prosody.sqlite"
    t = time.monotonic()
    if args.data and args.data.exists() and time.time() - args.data.stat().st_mtime < 12 * 3600:
        # Its rows were written relative to its own time: 10 days and an hour old then.
        now = int(args.data.stat().st_mtime)
        shutil.copy(args.data, src)
        print(f"{rows} rows copied from {args.data}; load: {os.getloadavg()}")
    else:
        fill(src, rows, now)
        print(f"{rows} rows written in {time.monotonic() - t:.1f} s; load: {os.getloadavg()}")
        if args.data:
            shutil.copy(src, args.data)
            os.utime(args.data, (now, now))
    # Prosody's own cleanup: its one statement in one transaction.
    if not args.no_statement:
        statement(work, src, now)
    libs = [args.lib] + ([args.compare] if args.compare else [])
    runs = []
    for _ in range(args.repeat):
        for lib in libs:
            # Each sweep on a fresh copy of the same data.
            copy = work / "run.sqlite"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{copy}{suffix}").unlink(missing_ok=True)
            shutil.copy(src, copy)
            runs.append((lib, sweep(work, copy, now, lib, not args.no_gate)))
    if len(runs) > 1:
        print("\nback to back (same data, each on a fresh copy):")
        for lib, r in runs:
            print(f"  {lib.name}: {r['rate']:,.0f} rows/s, longest step {r['longest_ms']:.2f} ms, "
                  f"held p50/p90/p99/max {r['held']}, log file after {r['wal']}; load {r['load']}")
    shutil.rmtree(work)


def cleanup(c: sqlite3.Connection, now: int) -> int:
    """Prosody's own cleanup (mod_storage_sql's archive delete): one statement, one transaction."""
    c.execute("BEGIN")
    n = c.execute('DELETE FROM "prosodyarchive" WHERE "host" = ? AND "store" = ? AND "when" < ?',
                  (HOST, "archive", now - DAY)).rowcount
    c.execute("COMMIT")
    return n


def statement(work: Path, src: Path, now: int):
    theirs = work / "theirs.sqlite"
    shutil.copy(src, theirs)
    c = sqlite3.connect(theirs, isolation_level=None)
    t = time.monotonic()
    n = cleanup(c, now)
    took = time.monotonic() - t
    print(f"Prosody's cleanup statement: {n} rows in {took:.2f} s ({n / took:,.0f} rows/s), "
          f"one transaction holding the lock (and Prosody's loop) throughout; load {os.getloadavg()}")
    c.close()
    theirs.unlink()
    # The same statement in WAL mode, nothing checkpointed: the log then holds each page it
    # changed once (one transaction), what the sweep's steps write is in its profile ("log
    # pages"): the pages a row costs each, beside each other.
    shutil.copy(src, theirs)
    c = sqlite3.connect(theirs, isolation_level=None)
    c.execute("PRAGMA journal_mode = WAL")
    c.execute("PRAGMA wal_autocheckpoint = 0")
    n = cleanup(c, now)
    page = c.execute("PRAGMA page_size").fetchone()[0]
    wal = Path(f"{theirs}-wal")
    frames = max(wal.stat().st_size - 32, 0) // (page + 24) if wal.exists() else 0
    print(f"Prosody's cleanup statement writes {frames:,} log pages for {n} rows "
          f"({frames / max(n, 1):.2f} a row) in WAL mode")
    c.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{theirs}{suffix}").unlink(missing_ok=True)


def sweep(work: Path, src: Path, now: int, lib: Path, gate: bool = True) -> dict:
    # Ours, through the Lua module Prosody loads (the core's worker does the sweep).
    # Lua finds the module as xmpp_hosting.so in a directory of LUA_CPATH.
    shutil.rmtree(work / "lua", ignore_errors=True)
    (work / "lua").mkdir()
    (work / "lua/xmpp_hosting.so").symlink_to(lib.resolve())
    (work / "store.sqlite").unlink(missing_ok=True)
    # The core's per-step trace; kept where XH_RETENTION_TRACE says, if the bench was given one
    # (e.g. to line it up with `perf record -a -k realtime -e sched:sched_switch -g`).
    trace = Path(os.environ.get("XH_RETENTION_TRACE") or work / "trace.txt")
    trace.unlink(missing_ok=True)
    env = dict(os.environ, LUA_CPATH_5_4=f"{work}/lua/?.so;;", XH_RETENTION_PROFILE="1",
               XH_RETENTION_TRACE=str(trace))
    print(f"\n== our sweep with {lib} (load {os.getloadavg()})")
    # As a script: `lua5.4 -e` would take the first argument for a script's name and shift the
    # rest (the store would be opened on Prosody's database).
    script = work / "sweep.lua"
    script.write_text(LUA)
    # Prosody's own connection, open throughout as in a running Prosody (in WAL mode, as the
    # sweep leaves the file): SQLite deletes the log file when the last connection closes, so
    # without it the log's length after the sweep could not be seen.
    prosody = sqlite3.connect(src, isolation_level=None)
    prosody.execute("PRAGMA journal_mode = WAL")
    prosody.execute("SELECT count(*) FROM prosodyarchive WHERE sort_id < 10").fetchone()
    r = subprocess.run(["lua5.4", str(script), str(work / "store.sqlite"), str(src), HOST] + ([] if gate else ["nogate"]),
                       capture_output=True, text=True, env=env, check=False)
    if r.returncode != 0:
        sys.exit(f"the sweep failed: {r.stdout}{r.stderr}")
    print("our sweep:", r.stdout.strip())
    held = "?"
    for line in r.stderr.splitlines():
        if line.startswith("profile:"):
            print("our sweep's", line)
            for part in line.split("; "):
                if part.startswith("held (delete and commit)"):
                    held = part.split(", ", 1)[1].replace("p50 ", "").replace(" p90 ", "/").replace(
                        " p99 ", "/").replace(" max ", "/")
    line = r.stdout.split("deleted ")[-1].split()
    deleted, in_steps, longest = int(line[0]), int(line[4]), int(line[6])
    wall = float(r.stdout.split("wall ")[1].split()[0])
    print(f"our sweep: {deleted / wall:,.0f} rows/s over its wall time ({wall:.1f} s), "
          f"{deleted / (in_steps / 1e6):,.0f} rows/s counting time in steps, longest step (database held) "
          f"{longest / 1000:.2f} ms; load {os.getloadavg()}")
    # One profile line a part of the sweep: their pages summed.
    pages = [p for line in r.stderr.splitlines() if line.startswith("profile:")
             for p in line.split("; ") if p.endswith(" log pages")]
    if pages and deleted:
        n = sum(int(p.split()[-3]) for p in pages)
        print(f"our sweep wrote {n:,} log pages for {deleted} rows ({n / deleted:.2f} a row)")
    if trace.exists():
        print(trace_summary(trace.read_text()))
    wal = Path(f"{src}-wal")
    wal_bytes = wal.stat().st_size if wal.exists() else None
    c = prosody
    left = c.execute('SELECT count(*), min("when") FROM prosodyarchive').fetchone()
    print(f"rows left: {left[0]} (none older than the cutoff: {left[1] >= now - DAY}); "
          f"journal mode after the sweep: {c.execute('PRAGMA journal_mode').fetchone()[0]}; "
          f"log file (-wal) after the sweep, Prosody's connection still open: "
          f"{'none' if wal_bytes is None else f'{wal_bytes:,} bytes'}")
    c.close()
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    return {"rate": deleted / wall, "longest_ms": longest / 1000, "held": held,
            "wal": "none" if wal_bytes is None else f"{wal_bytes:,} bytes",
            "load": ", ".join(f"{x:.2f}" for x in os.getloadavg())}


def trace_summary(text: str) -> str:
    """What the steps that held the lock over 5 ms had in common, from the core's per-step trace
    (XH_RETENTION_TRACE, builds that write it): a checkpoint round beside them, a commit that
    restarted the log, a batch bigger than the step before's."""
    steps = []
    for line in text.splitlines():
        f = line.split()
        if len(f) == 9:
            steps.append(dict(at=float(f[0]), batch=int(f[1]), rows=int(f[2]), pages=int(f[3]),
                              held=int(f[4]) / 1000, delete=int(f[5]) / 1000, commit=int(f[6]) / 1000,
                              beside=f[7] == "1", restarted=f[8] == "1"))
    if not steps:
        return "trace: none written (a build without XH_RETENTION_TRACE)"
    for prev, s in zip(steps, steps[1:]):
        s["grew"] = s["batch"] > prev["batch"]
    long = [s for s in steps if s["held"] > 5]
    per_row = sorted(s["held"] / s["rows"] * 1000 for s in steps if s["rows"])
    out = [f"trace: {len(steps)} steps, {len(long)} held over 5 ms; held per row p50 "
           f"{per_row[len(per_row) // 2]:.1f} us"]
    if long:
        out.append(f"  of those over 5 ms: {sum(s['beside'] for s in long)} beside a checkpoint round "
                   f"(of all steps {sum(s['beside'] for s in steps)}), {sum(s['restarted'] for s in long)} "
                   f"restarting the log (of all {sum(s['restarted'] for s in steps)}), "
                   f"{sum(s.get('grew', False) for s in long)} with a bigger batch than the step before; "
                   f"held per row {sorted(s['held'] / max(s['rows'], 1) * 1000 for s in long)[len(long) // 2]:.1f} us "
                   f"(median of them)")
        for s in sorted(long, key=lambda s: -s["held"])[:8]:
            out.append(f"  at {s['at'] - steps[0]['at']:.2f} s: held {s['held']:.2f} ms (delete {s['delete']:.2f}, commit "
                       f"{s['commit']:.2f}), batch {s['batch']}, rows {s['rows']}, pages {s['pages']}"
                       f"{', beside a round' if s['beside'] else ''}{', restarted the log' if s['restarted'] else ''}")
    return "\n".join(out)


if __name__ == "__main__":
    main()
