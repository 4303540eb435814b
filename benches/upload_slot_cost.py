#!/usr/bin/env python3
"""What our upload module adds to a slot request on each real server: the same client (slixmpp,
loopback, one session) asks Prosody 0.12 (mod_http_file_share) and ejabberd 23.01
(mod_http_upload + mod_http_upload_quota) for --requests slots one after another, with and
without mod_xmpp_hosting_uploads deciding, at 1,000 and 100,000 uploads stored. Prints p50 / p99
of the round trips, the p50 of the first and of the last 200 requests (flat or not as granted
slots pile up), a ping's round trip, the ratio with / without, and the server's CPU time per
request (its processes' user + system time over the requests, /proc: what the module costs the
machine, much less sensitive to other load than the round trips). Figures, not assertions; the
target (issue 11.4) is at most the server's own p50 + 0.5 ms, flat from first request to last.

    PROFILE=release scripts/build && python3 benches/upload_slot_cost.py
        [--servers prosody,ejabberd] [--sizes 1000,100000] [--requests 2000] [--prosody-storage sql|internal]
        [--repeat N] [--keep]

Warm-up: each session first sends slot requests (at least 100, for at least 3 s, and on Prosody
until mod_cron has run its periodic tasks), then measures --requests more. Prosody's first requests with 100,000
uploads in its archive take seconds each (the archive loaded whole, see WARMUP); inside the
measured window those seconds came out as about 2.5 ms of "CPU per request" in both runs of a
pair, and their spread was larger than what the module adds. The table says how many warm-up
requests ran and how long they took. "CPU first / last 200" is the server's CPU per request over
the first and the last 200 measured requests: flat or not, in CPU rather than round trips.

--repeat N runs each pair (without, then with the module) N times and ends with the median of
the pairs' differences: on a shared machine one pair can be off by more than the module costs.

Uploads stored: the servers' own records hold N uploads (Prosody: its `uploads` archive in SQL
storage, as benches/prosody_file_share_cost.py seeds it; ejabberd: N files in the user's upload
directory, as benches/ejabberd_upload_quota_cost.py creates them), and so does the store's ledger
(benches/quotas_seed.sql) when the module runs. Slots are never used: every request reserves its
1,000 bytes until the slot ends, so 2,000 grants pile up as the issue's did. Limits are far above
the traffic: every request is granted. Servers log at info level.

The servers load a private copy of this build's Lua library and ejabberd module (PROFILE, default
release), taken when the bench starts: other work on the machine rebuilding target/lua or the NIF
in debug meanwhile does not change what is measured. XH_SERVERS picks the generations, as for the
tests (`XH_SERVERS=prosody-13,ejabberd-24.12`); the bench prints which ones ran, and the load.

--prosody-storage internal keeps Prosody's data in its internal files (storage_archive_item_limit
raised), as benches/prosody_file_share_cost.py --storage internal does: a warm slot request then
costs mod_http_file_share a fraction of a millisecond instead of an SQLite append, so what the
module adds stands out from the noise.
"""

import argparse
import asyncio
import hashlib
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from xml.etree import ElementTree as ET

BENCHES = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHES.parent / "tests"))
sys.path.insert(0, str(BENCHES))
os.environ.setdefault("PROFILE", "release")
from harness import client  # noqa: E402
from harness import ejabberd as ejabberd_harness  # noqa: E402
from harness import prosody as prosody_harness  # noqa: E402
from harness import common  # noqa: E402
from harness.common import TARGET, run_cli, target  # noqa: E402
import ejabberd_upload_quota_cost as ejb  # noqa: E402
import prosody_file_share_cost as pfs  # noqa: E402

PASSWORD = "bench-password"
WINDOW = 200  # requests at the start and at the end compared for flatness
# Slot requests before the measured ones. Both servers do one-time work on a user's first
# requests that grows with the uploads stored and is no part of a slot's steady cost: Prosody 0.12
# with 100,000 uploads in its internal archive loads the whole archive for the user's first daily
# quota (get_daily_quota, a cache miss), again for the first append (the item count, not cached
# yet) and again in mod_cron's first run (the daily prune), each for seconds on its loop; measured,
# those seconds were about 3 ms of "CPU per request" and varied by more than the module costs.
WARMUP = 100
# And for at least this long: mod_xmpp_hosting's first housekeeping pass starts a second after
# the server, on the core's worker (its one-time work, e.g. a certificate for the host, is no
# part of a slot's cost either).
WARMUP_SECONDS = 3.0


def private_builds(work: Path, servers: list[str]):
    """Points the harnesses at copies of this build's Lua library and ejabberd module in `work`
    (only those of the servers measured), and at a copy of its CLI, which seeds the stores: a
    rebuild meanwhile with a newer migration would otherwise make a store the library refuses."""
    cli = work / "xmpp-hosting"
    shutil.copy(common.CLI, cli)
    common.CLI = cli
    if "prosody" in servers:
        lua = work / "lua"
        lua.mkdir()
        shutil.copy(TARGET / "libxmpp_hosting_lua.so", lua / "xmpp_hosting.so")
        prosody_harness.LUA_CPATH_DIR = lua
    if "ejabberd" in servers:
        module = work / "erlang" / ejabberd_harness.MODULE
        shutil.copytree(ejabberd_harness.MODULE_SRC, module, symlinks=True)
        (module / "priv" / "lib").mkdir(parents=True, exist_ok=True)
        shutil.copy(TARGET / "libxmpp_hosting_nif.so", module / "priv" / "lib" / "xmpp_hosting_nif.so")
        ejabberd_harness.MODULE_SRC = module
        ejabberd_harness.NIF_SO = module / "priv" / "lib" / "xmpp_hosting_nif.so"


def seed_ledger(database: Path, domain: str, n: int):
    """Creates the store with `domain` hosted and fills its ledger with n uploads."""
    database.parent.mkdir(parents=True, exist_ok=True)
    run_cli(database, "domain", "add", domain)
    sql = (BENCHES / "quotas_seed.sql").read_text()
    # Longest names first: ":n" is a prefix of ":now".
    for name, value in ((":history", "100"), (":domain", f"'{domain}'"), (":now", str(int(time.time()))),
                        (":n", str(n))):
        sql = sql.replace(name, value)
    c = sqlite3.connect(database)
    c.executescript(sql)
    # Steady state: commits and the upkeep keep only about a day of hourly buckets; the seed
    # writes a month of them, which the server's first upkeep would then purge during the run.
    with c:
        c.execute("DELETE FROM upload_volume WHERE span = 3600 AND start < ?", (int(time.time()) // 3600 - 25,))
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()


def session_cpu(sid: int) -> float:
    """CPU seconds (user + system) used so far by the processes of session `sid`: the harnesses
    start each server in a session of its own (Prosody's Lua, ejabberd's BEAM and its helpers)."""
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # ended meanwhile
        fields = stat.rsplit(")", 1)[1].split()  # from field 3 (state) on; the name may hold spaces
        if int(fields[3]) == sid:  # field 6, session
            ticks += int(fields[11]) + int(fields[12])  # fields 14 and 15, utime and stime
    return ticks / os.sysconf("SC_CLK_TCK")


async def slot_round_trips(c, share: str, requests: int, sid: int, warmed=lambda: True, warmup: int = WARMUP):
    """A ping; warm-up slot requests until `warmed()` says the server's one-time work is done
    (and at least `warmup` of them); then `requests` slot requests one after another: the
    measured round trips in seconds, the ping's, the server's CPU seconds over the measured
    requests, the warm-up's count and time in seconds, and the CPU seconds over the first and
    the last WINDOW measured requests."""
    c.register_plugin("xep_0199")
    t0 = time.perf_counter()
    await c.plugin["xep_0199"].send_ping(c.boundjid.host, timeout=60)
    ping = time.perf_counter() - t0

    async def slot():
        iq = c.Iq()
        iq["type"] = "get"
        iq["to"] = share
        iq.append(ET.fromstring(pfs.REQUEST))
        t0 = time.perf_counter()
        reply = await iq.send(timeout=600)
        elapsed = time.perf_counter() - t0
        assert reply["type"] == "result", reply
        return elapsed

    t0, warm = time.perf_counter(), 0
    while warm < warmup or time.perf_counter() - t0 < WARMUP_SECONDS or not warmed():
        await slot()
        warm += 1
    warm_time = time.perf_counter() - t0
    times, edges = [], []
    cpu0 = session_cpu(sid)
    for i in range(requests):
        if i in (WINDOW, requests - WINDOW):
            edges.append(session_cpu(sid))
        times.append(await slot())
    cpu1 = session_cpu(sid)
    first = (edges[0] - cpu0) if edges else cpu1 - cpu0
    last = (cpu1 - edges[-1]) if edges else cpu1 - cpu0
    return times, ping, cpu1 - cpu0, (warm, warm_time), (first, last)


def measure(port: int, jid: str, share: str, requests: int, sid: int, warmed=lambda: True):
    return asyncio.run(client._session(port, jid, PASSWORD,
                                       lambda c: slot_round_trips(c, share, requests, sid, warmed), 3600))


def prosody_run(n: int, with_module: bool, requests: int, work: Path, storage: str = "sql"):
    options = {"storage": "sql", "sql": {"driver": "SQLite3", "database": "prosody.sqlite"}}
    if storage == "internal":
        options = {"storage": "internal", "storage_archive_item_limit": n + requests + 1_000_000}  # warm-up too
    component = f"""
Component "{pfs.SHARE}" "http_file_share"
  http_file_share_size_limit = 1000000000
  http_file_share_daily_quota = 1000000000000000
  http_file_share_expires_after = {31 * 86400}
  http_file_share_secret = "bench-secret"
"""
    if with_module:
        component += '  modules_enabled = { "xmpp_hosting_uploads" }\n'
    run_dir = Path(tempfile.mkdtemp(dir=work, prefix=f"prosody-{n}-{with_module}-"))  # one per run (--repeat)
    prosody = pfs.BenchProsody(run_dir, host=pfs.HOST, options=options,
                               extra_config=component)
    prosody.write_config()
    prosody.create_user("measure0", PASSWORD)
    if storage == "sql":
        pfs.seed_sql(prosody.data / "prosody.sqlite", n, 1, int(time.time()))
    else:
        pfs.seed_internal(prosody.data, n, 1, int(time.time()))
    if with_module:
        seed_ledger(prosody.database, pfs.HOST, n)
    with prosody:
        # Warmed once mod_cron has run its periodic tasks (its first run, a second after start, is
        # held up by the first requests' loads of the whole archive, see WARMUP): from then on
        # nothing but the requests runs.
        result = measure(prosody.c2s_port, f"measure0@{pfs.HOST}", pfs.SHARE, requests, prosody.proc.pid,
                         warmed=lambda: "Running periodic tasks" in prosody.log_text())
        errors = [line for line in prosody.log_text().splitlines() if "\terror\t" in line]
    if errors:
        print(f"  ({len(errors)} error lines in Prosody's log, first: {errors[0][:200]})", file=sys.stderr)
        if with_module and any("Cannot open the xmpp-hosting store" in line for line in errors):
            raise SystemExit("the module never decided (its store did not open): this run measured nothing")
    return result


class ModuleEjabberd(ejb.BenchEjabberd):
    """The cost bench's node, with (or without) mod_xmpp_hosting_uploads deciding."""

    def __init__(self, workdir: Path, docroot: Path, soft_mib: int, hard_mib: int, with_module: bool):
        super().__init__(workdir, docroot, soft_mib, hard_mib)
        if with_module:
            self.install = "config"
            self.extra_modules += "  mod_xmpp_hosting_uploads: {}\n"
            self.http_handlers = {"/upload": "mod_xmpp_hosting_uploads"}


def ejabberd_run(n: int, with_module: bool, requests: int, work: Path):
    docroot = work / "ejabberd-upload"
    user_dir = docroot / hashlib.sha1(f"{ejb.USER}@{ejb.HOST}".encode()).hexdigest()
    if ejb.count(user_dir) > n:
        shutil.rmtree(user_dir)
    ejb.fill(user_dir, n, int(time.time()))
    fit = -(-(n * ejb.SIZE + requests * ejb.SIZE) // ejb.MIB)  # MiB: the files and every slot fit
    node_dir = Path(tempfile.mkdtemp(dir=work, prefix=f"ejabberd-{n}-{with_module}-"))  # one per run (--repeat)
    node = ModuleEjabberd(node_dir, docroot, fit + 10, fit + 20, with_module)
    if with_module:
        seed_ledger(node.database, ejb.HOST, n)
    with node:
        node.register(ejb.USER, PASSWORD)
        return measure(node.c2s_port, f"{ejb.USER}@{ejb.HOST}", ejb.SHARE, requests, node.proc.pid)


def pct(v: list[float], q: float) -> float:
    s = sorted(v)
    return s[min(len(s) - 1, round((len(s) - 1) * q))] * 1000


def main():
    global WARMUP_SECONDS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--servers", default="prosody,ejabberd")
    ap.add_argument("--sizes", default="1000,100000")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--prosody-storage", choices=("sql", "internal"), default="sql")
    ap.add_argument("--repeat", type=int, default=1, help="pairs (without, with) per server and size")
    ap.add_argument("--warmup-seconds", type=float, default=WARMUP_SECONDS,
                    help=f"the least time warm-up requests are sent for (default {WARMUP_SECONDS})")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work directory (the servers' logs, and the library copy a profiler needs to name "
                         "functions: perf record -p PID, then perf report after the bench)")
    args = ap.parse_args()
    WARMUP_SECONDS = args.warmup_seconds
    runs = {"prosody": lambda *a: prosody_run(*a, storage=args.prosody_storage), "ejabberd": ejabberd_run}
    work = Path(tempfile.mkdtemp(prefix="xh-bench-slots-"))
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    private_builds(work, servers)
    print(f"Slot request round trip, ms: {args.requests} requests in one session, loopback "
          f"(Prosody's upload archive: {args.prosody_storage}); {os.environ['PROFILE']} build; "
          f"{', '.join(target(s).name for s in servers)}\n")
    print(f"| server | uploads stored | module | warm-up | p50 | p99 | first {WINDOW} p50 | last {WINDOW} p50 | ping "
          f"| p50 ratio | p50 + | first + / last + | server CPU per request | CPU + | CPU first / last {WINDOW} "
          "| load (1 min) |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    summary = []
    for server in servers:
        for n in [int(s) for s in args.sizes.split(",") if s.strip()]:
            pairs = []
            for _ in range(args.repeat):
                base = None
                for with_module in (False, True):
                    times, ping, cpu, (warm, warm_s), (cpu_first, cpu_last) = runs[server](n, with_module,
                                                                                           args.requests, work)
                    window = min(WINDOW, len(times))
                    row = (pct(times, 0.5), pct(times[:WINDOW], 0.5), pct(times[-WINDOW:], 0.5), cpu / len(times) * 1000,
                           cpu_first / window * 1000, cpu_last / window * 1000)
                    p50, first, last, cpu_ms, cpu_first_ms, cpu_last_ms = row
                    ratio = added = edges = cpu_added = ""
                    if base:
                        ratio = f"×{p50 / base[0]:.2f}"
                        added = f"{p50 - base[0]:+.2f}"
                        edges = f"{first - base[1]:+.2f} / {last - base[2]:+.2f}"
                        cpu_added = f"{cpu_ms - base[3]:+.3f}"
                        pairs.append(tuple(w - b for w, b in zip(row, base)))
                    print(f"| {server} | {n} | {'with' if with_module else 'without'} | {warm} in {warm_s:.1f} s "
                          f"| {p50:.2f} | {pct(times, 0.99):.2f} | {first:.2f} | {last:.2f} | {ping * 1000:.2f} | {ratio} "
                          f"| {added} | {edges} | {cpu_ms:.3f} | {cpu_added} | {cpu_first_ms:.2f} / {cpu_last_ms:.2f} "
                          f"| {os.getloadavg()[0]:.2f} |", flush=True)
                    base = base or row
            summary.append((server, n, pairs))
    if args.repeat > 1:
        print(f"\nMedian of {args.repeat} pairs, with minus without (ms): p50 | first {WINDOW} p50 | last {WINDOW} p50 "
              f"| server CPU per request | CPU per request, first / last {WINDOW}")
        for server, n, pairs in summary:
            med = [statistics.median(p[i] for p in pairs) for i in range(6)]
            print(f"  {server}, {n} stored: {med[0]:+.2f} | {med[1]:+.2f} | {med[2]:+.2f} | {med[3]:+.3f} "
                  f"| {med[4]:+.3f} / {med[5]:+.3f}")
    if args.keep:
        print(f"\nKept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
