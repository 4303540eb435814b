#!/usr/bin/env python3
"""Retention bench on Prosody's own SQLite schema (issue 13): N archived messages, half older
than the cutoff; our sweep (the core deleting in the database, as it does inside Prosody's
housekeeping, through the Lua module a Prosody loads) against Prosody's own cleanup statement
(mod_storage_sql's archive delete: one DELETE ... WHERE host, store, "when" < cutoff, in one
transaction) on a copy of the same data.

    python3 benches/retention_prosody.py [ROWS]      (default 1,000,000; needs scripts/build)

Prints rows/s over the sweep's wall time and over its time in steps, the longest step (the
longest the sweep held Prosody's database: a DELETE and its commit), the journal mode the sweep
left the database in (WAL, see the README), and the machine's load (uptime) beside each figure.
"""

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
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    work = Path(tempfile.mkdtemp(prefix="xh-retention-bench-"))
    now = int(time.time())
    src = work / "prosody.sqlite"
    t = time.monotonic()
    fill(src, rows, now)
    print(f"{rows} rows written in {time.monotonic() - t:.1f} s; load: {os.getloadavg()}")
    # Prosody's own cleanup: its one statement in one transaction.
    theirs = work / "theirs.sqlite"
    shutil.copy(src, theirs)
    c = sqlite3.connect(theirs, isolation_level=None)
    t = time.monotonic()
    c.execute("BEGIN")
    n = c.execute('DELETE FROM "prosodyarchive" WHERE "host" = ? AND "store" = ? AND "when" < ?',
                  (HOST, "archive", now - DAY)).rowcount
    c.execute("COMMIT")
    took = time.monotonic() - t
    print(f"Prosody's cleanup statement: {n} rows in {took:.2f} s ({n / took:,.0f} rows/s), "
          f"one transaction holding the lock (and Prosody's loop) throughout; load {os.getloadavg()}")
    c.close()
    # Ours, through the Lua module Prosody loads (the core's worker does the sweep).
    env = dict(os.environ, LUA_CPATH_5_4=f"{REPO}/target/lua/?.so;;")
    r = subprocess.run(["lua5.4", "-e", LUA, str(work / "store.sqlite"), str(src), HOST],
                       capture_output=True, text=True, env=env, check=False)
    # (lua5.4 -e takes no arg table; run as a script instead)
    if r.returncode != 0:
        script = work / "sweep.lua"
        script.write_text(LUA)
        r = subprocess.run(["lua5.4", str(script), str(work / "store.sqlite"), str(src), HOST],
                           capture_output=True, text=True, env=env, check=True)
    print("our sweep:", r.stdout.strip())
    line = r.stdout.split("deleted ")[-1].split()
    deleted, in_steps, longest = int(line[0]), int(line[4]), int(line[6])
    wall = float(r.stdout.split("wall ")[1].split()[0])
    print(f"our sweep: {deleted / wall:,.0f} rows/s over its wall time ({wall:.1f} s), "
          f"{deleted / (in_steps / 1e6):,.0f} rows/s counting time in steps, longest step (database held) "
          f"{longest / 1000:.2f} ms; load {os.getloadavg()}")
    c = sqlite3.connect(src)
    left = c.execute('SELECT count(*), min("when") FROM prosodyarchive').fetchone()
    print(f"rows left: {left[0]} (none older than the cutoff: {left[1] >= now - DAY}); "
          f"journal mode after the sweep: {c.execute('PRAGMA journal_mode').fetchone()[0]}")
    c.close()
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
