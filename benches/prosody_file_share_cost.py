#!/usr/bin/env python3
"""What Prosody 0.12's own upload quota costs: the time of a XEP-0363 slot request to a real
mod_http_file_share (Debian prosody) on loopback, with 1,000 / 100,000 / 1,000,000 uploads in its
`uploads` archive, with its daily-quota cache cold and warm. For the table beside
benches/lua_quotas.lua and `cargo bench -p xmpp-hosting-core --bench quotas`.

    scripts/build && python3 benches/prosody_file_share_cost.py [--sizes 1000,100000,1000000]
        [--storage sql|internal] [--users 20] [--warm 50]

What mod_http_file_share does per slot request (0.12.3): it checks the daily quota with
get_daily_quota(uploader), which on a miss of its 1,024-entry cache scans the `uploads` archive
(`find(nil, {with = uploader, start = now - 86400})`) and sums the sizes; on a hit it uses the
cached sum. Then it appends the request to the archive and signs a JWT. Our module is not on the
component: only mod_http_file_share decides.

Storage (--storage):
  sql (default)  mod_storage_sql with SQLite3 (needs the lua-dbi-sqlite3 package). The archive
                 lives in one table; the scan is a query on it.
  internal       mod_storage_internal with storage_archive_item_limit raised above the largest
                 size (its default, 10,000, would refuse appends long before 100,000). The
                 component's whole archive is one file that is loaded on every scan.

Data, as in the other quota benches: every upload is 1,000 bytes; --users measuring users each
have the same 100 uploads of history (at now - i * 7919 s, i < 100), the rest of the N are spread
over 1,000 other users and the last 30 days. The archive is written straight into the store
(sqlite3, or the internal list file) before the server starts. http_file_share_expires_after is
31 days so the daily prune has nothing to do, and the daily quota is large so every request is
granted (and appended, as in normal use).

Per measuring user: one session; a ping (XEP-0199) round trip, then the cold slot request (the
user's first: a cache miss and a scan), then --warm slot requests, each after a ping, (cache hits).
Times are client round trips over loopback (slixmpp): the ping column is the same round trip with
no decision in it. Prosody logs at info level here. Figures, not assertions.
"""

import argparse
import asyncio
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from xml.etree import ElementTree as ET

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from harness import client  # noqa: E402
from harness.prosody import Prosody  # noqa: E402

HOST = "bench.example"
SHARE = "upload.bench.example"
HISTORY = 100  # uploads of each measuring user, as the measured user of the core bench
OTHERS = 1000  # other uploaders
SIZE = 1000  # bytes per upload
MONTH = 30 * 86400
PASSWORD = "bench-password"
REQUEST = ("<request xmlns='urn:xmpp:http:upload:0' filename='f.bin' size='1000' "
           "content-type='application/octet-stream'/>")


class BenchProsody(Prosody):
    """The harness's Prosody, logging at info level (the harness logs debug, which would be timed too)."""

    def write_config(self):
        config = super().write_config()
        text = config.read_text()
        config.write_text(text.replace('levels = { min = "debug" }', 'levels = { min = "info" }'))
        return config


def uploader(i: int, users: int) -> tuple[str, int]:
    """Who made upload i and its age in seconds: the measuring users' histories come first."""
    if i < users * HISTORY:
        return f"measure{i // HISTORY}@{HOST}", ((i % HISTORY) * 7919) % MONTH
    j = i - users * HISTORY
    return f"user{j % OTHERS}@{HOST}", (j * 7919) % MONTH


def seed_sql(db: Path, n: int, users: int, now: int):
    """Fills mod_storage_sql's prosodyarchive (the tables exist: prosodyctl register made them)."""
    c = sqlite3.connect(db)
    rows = ((SHARE, "", "uploads", f"seed{i}", now - age, who, "xml", REQUEST)
            for i, (who, age) in ((i, uploader(i, users)) for i in range(n)))
    with c:
        c.executemany('INSERT INTO prosodyarchive ("host", "user", "store", "key", "when", "with", "type", "value") '
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    c.close()


def seed_internal(data: Path, n: int, users: int, now: int):
    """Writes mod_storage_internal's list file for the component's `uploads` archive, in the
    format datamanager.list_append writes (one `item({...});` per upload)."""
    d = data / SHARE.replace(".", "%2e")
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "uploads.list", "w") as f:
        for i in range(n):
            who, age = uploader(i, users)
            when = now - age
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
            f.write('item({["attr"]={["content-type"]="application/octet-stream";["filename"]="f.bin";'
                    f'["size"]="1000";["stamp"]="{stamp}";["xmlns"]="urn:xmpp:http:upload:0";}};'
                    f'["key"]="seed{i}";["name"]="request";["when"]={when};["with"]="{who}";}});\n')


async def measure_user(c, warm: int):
    """Ping, cold slot request, then `warm` x (ping, warm slot request); round trips in seconds."""
    c.register_plugin("xep_0199")

    async def ping():
        t0 = time.perf_counter()
        await c.plugin["xep_0199"].send_ping(HOST, timeout=60)
        return time.perf_counter() - t0

    async def slot():
        iq = c.Iq()
        iq["type"] = "get"
        iq["to"] = SHARE
        iq.append(ET.fromstring(REQUEST))
        t0 = time.perf_counter()
        reply = await iq.send(timeout=600)
        elapsed = time.perf_counter() - t0
        assert reply["type"] == "result", reply
        return elapsed

    pings = [await ping()]
    cold = await slot()
    hot = []
    for _ in range(warm):
        pings.append(await ping())
        hot.append(await slot())
    return cold, hot, pings


def run(n: int, storage: str, users: int, warm: int, work: Path) -> dict:
    if storage == "sql":
        options = {"storage": "sql", "sql": {"driver": "SQLite3", "database": "prosody.sqlite"}}
    else:
        options = {"storage": "internal", "storage_archive_item_limit": n + users * (warm + 1) + 1000}
    component = f"""
Component "{SHARE}" "http_file_share"
  http_file_share_size_limit = 1000000000
  http_file_share_daily_quota = 1000000000000000
  http_file_share_expires_after = {31 * 86400}
  http_file_share_secret = "bench-secret"
"""
    prosody = BenchProsody(work / f"{storage}-{n}", host=HOST, options=options, extra_config=component)
    prosody.write_config()
    for u in range(users):
        prosody.create_user(f"measure{u}", PASSWORD)  # with sql: also creates the tables
    now = int(time.time())
    t = time.monotonic()
    if storage == "sql":
        seed_sql(prosody.data / "prosody.sqlite", n, users, now)
    else:
        seed_internal(prosody.data, n, users, now)
    seeded = time.monotonic() - t
    colds, hots, pings = [], [], []
    with prosody:
        for u in range(users):
            cold, hot, ping = asyncio.run(client._session(prosody.c2s_port, f"measure{u}@{HOST}", PASSWORD,
                                                          lambda c: measure_user(c, warm), 3600))
            colds.append(cold)
            hots += hot
            pings += ping
        log = prosody.log_text()
    shutil.rmtree(prosody.dir, ignore_errors=True)
    if "error" in log.lower():
        errors = [line for line in log.splitlines() if "error" in line.lower()]
        print(f"  ({len(errors)} log lines with 'error', first: {errors[0][:200]})", file=sys.stderr)
    return {"n": n, "cold": sorted(colds), "warm": sorted(hots), "ping": sorted(pings), "seeded": seeded}


def pct(v: list[float], q: float) -> float:
    return v[min(len(v) - 1, round((len(v) - 1) * q))] * 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,100000,1000000")
    ap.add_argument("--storage", choices=("sql", "internal"), default="sql")
    ap.add_argument("--users", type=int, default=20, help="measuring users: one cold request each")
    ap.add_argument("--warm", type=int, default=50, help="warm requests per measuring user")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    work = Path(tempfile.mkdtemp(prefix="xh-bench-fileshare-"))
    print(f"Prosody 0.12 mod_http_file_share, {args.storage} storage: slot request round trip on loopback, ms "
          f"({args.users} cold requests, {args.users * args.warm} warm per size)\n")
    print("| uploads in archive | cold p50 | cold max | warm p50 | warm p99 | warm max | ping p50 | seeded in |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in sizes:
        r = run(n, args.storage, args.users, args.warm, work)
        print(f"| {n} | {pct(r['cold'], 0.5):.2f} | {r['cold'][-1] * 1000:.2f} | {pct(r['warm'], 0.5):.2f} | "
              f"{pct(r['warm'], 0.99):.2f} | {r['warm'][-1] * 1000:.2f} | {pct(r['ping'], 0.5):.2f} | "
              f"{r['seeded']:.1f} s |", flush=True)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
