#!/usr/bin/env python3
"""What ejabberd 23.01's own upload quota costs: mod_http_upload + mod_http_upload_quota (Debian
ejabberd) on loopback, with 1,000 / 100,000 / 1,000,000 files in the uploader's directory. For
the table beside benches/lua_quotas.lua and `cargo bench -p xmpp-hosting-core --bench quotas`.

    python3 benches/ejabberd_upload_quota_cost.py [--sizes 1000,100000,1000000] [--cold 5] [--over 5]
        [--warm 1000] [--keep DIR]

What 23.01 does (read from its beams' abstract code): mod_http_upload runs the
http_upload_slot_request hook, where mod_http_upload_quota only sends a message (gen_server cast)
to its per-host process and answers `allow`: it never refuses, and the slot reply does not wait
for it. That process keeps each user's disk usage in memory. When the usage is unknown (the
user's first slot request since the server started) or the usage plus the slot would pass the
hard quota, it walks the user's directory (list_dir + stat of every slot directory and file),
sorts the files by age and, if over the hard quota, deletes the oldest down to the soft quota.
Otherwise it adds the slot's size to the usage: no file system access.

Measured per size, on one fresh node whose user has N files (each in its own slot directory, as
mod_http_upload lays them out: DOCROOT/sha1(user@host)/<slot>/<file>; 1,000 bytes each, sparse,
modified over the last 30 days; created once by this script and grown from one size to the next):
  - slot round trip: a real client's XEP-0363 slot request (slixmpp, loopback), the first one
    after the start (cold) and --warm more; a ping round trip for comparison.
  - quota work: the time from running the hook (ejabberd_hooks:run_fold, as mod_http_upload does)
    until the quota process has handled the message (sys:get_state returns), timed inside the
    node: cold (usage forgotten first: every cold sample walks), warm within the quota, and over
    the hard quota (quota rules lowered and reloaded; each sample walks the directory and deletes
    the two oldest files).
Quotas: within, soft = N x 1000 B rounded up to MiB + 10 MiB, hard = soft + 10 MiB; over,
soft = hard = N x 1000 B rounded up to MiB, with a slot 2,000 bytes larger than the room left.
Figures, not assertions. Creating a million files takes minutes; --keep DIR reuses them.
"""

import argparse
import ast
import asyncio
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from xml.etree import ElementTree as ET

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from harness import client  # noqa: E402
from harness.ejabberd import Ejabberd  # noqa: E402

HOST = "bench.example"
SHARE = f"upload.{HOST}"
USER = "measure"
PASSWORD = "bench-password"
SIZE = 1000
MONTH = 30 * 86400
MIB = 1024 * 1024
PROC = f"mod_http_upload:get_proc_name(<<\"{HOST}\">>, mod_http_upload_quota)"


class BenchEjabberd(Ejabberd):
    """The harness's node with mod_http_upload + mod_http_upload_quota and their quota rules."""

    def __init__(self, workdir: Path, docroot: Path, soft_mib: int, hard_mib: int):
        self.docroot, self.soft_mib, self.hard_mib = docroot, soft_mib, hard_mib
        super().__init__(workdir, host=HOST, install="none", extra_modules=(
            "  mod_ping: {}\n"
            "  mod_http_upload:\n"
            f'    docroot: "{docroot}"\n'
            '    put_url: "http://127.0.0.1:@PORT@/upload"\n'
            "    max_size: infinity\n"
            "  mod_http_upload_quota:\n"
            "    access_soft_quota: soft_upload_quota\n"
            "    access_hard_quota: hard_upload_quota\n"))

    def write_config(self):
        super().write_config()
        yml = self.conf_dir / "ejabberd.yml"
        rules = (f"shaper_rules:\n  soft_upload_quota:\n    {self.soft_mib}: all\n"
                 f"  hard_upload_quota:\n    {self.hard_mib}: all\n")
        text = yml.read_text().replace("shaper_rules:\n", rules, 1).replace("@PORT@", str(self.http_port))
        yml.write_text(text)

    def set_quotas(self, soft_mib: int, hard_mib: int):
        self.soft_mib, self.hard_mib = soft_mib, hard_mib
        self.write_config()
        self.ctl("reload_config")

    def run_in_node(self, body: str, timeout: float = 3600) -> object:
        """Evaluates `body` (Erlang expressions, no final dot) in a process of the node and returns
        its value (numbers and lists of them); the harness's eval has a 30 s limit, a walk of a
        million files may not."""
        out = self.dir / f"result-{time.monotonic_ns()}"
        self.eval(f'Out = "{out}", spawn(fun() -> R = begin {body} end, '
                  'file:write_file(Out ++ ".tmp", io_lib:format("~w", [R])), '
                  'file:rename(Out ++ ".tmp", Out) end), ok.')
        deadline = time.monotonic() + timeout
        while not out.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(body)
            time.sleep(0.05)
        return ast.literal_eval(out.read_text())


def quota_work(node: BenchEjabberd, sizes: list[int], forget: bool) -> list[float]:
    """Seconds from running the slot hook (one slot of each size) until the quota process has
    handled it; with `forget`, the process's usage map is emptied before each (a cold start)."""
    user_dir = node.docroot / hashlib.sha1(f"{USER}@{HOST}".encode()).hexdigest()
    reset = "sys:replace_state(P, fun(S) -> setelement(7, S, #{}) end), " if forget else ""
    body = (f"P = {PROC}, J = jid:decode(<<\"{USER}@{HOST}\">>), D = <<\"{user_dir}\">>, "
            f"[begin {reset}T0 = erlang:monotonic_time(microsecond), "
            f"allow = ejabberd_hooks:run_fold(http_upload_slot_request, <<\"{HOST}\">>, allow, "
            f"[<<\"{HOST}\">>, J, D, Size, <<\"en\">>]), "
            "sys:get_state(P, infinity), erlang:monotonic_time(microsecond) - T0 end "
            f"|| Size <- {sizes!r}]")
    return [us / 1e6 for us in node.run_in_node(body)]


def drain(node: BenchEjabberd):
    """Waits until the quota process has handled every message sent to it."""
    node.run_in_node(f"sys:get_state({PROC}, infinity), 0")


def fill(user_dir: Path, n: int, now: int):
    """Adds files until the user has n, one per slot directory, sparse, 1,000 bytes, aged over the
    last 30 days (upload i at now - i * 7919 s mod 30 days; new ones numbered after the last)."""
    user_dir.mkdir(parents=True, exist_ok=True)
    names = [e.name for e in os.scandir(user_dir)]
    start = max((int(name, 16) for name in names), default=-1) + 1
    for i in range(start, start + n - len(names)):
        d = user_dir / f"{i:040x}"
        os.mkdir(d)
        fd = os.open(d / "f.bin", os.O_WRONLY | os.O_CREAT, 0o644)
        os.ftruncate(fd, SIZE)
        when = now - (i * 7919) % MONTH
        os.utime(fd, (when, when))
        os.close(fd)


def count(user_dir: Path) -> int:
    return sum(1 for _ in os.scandir(user_dir)) if user_dir.exists() else 0


async def round_trips(c, sizes: list[int]):
    """Ping, then a slot request for each size, each after a ping; round trips in seconds."""
    c.register_plugin("xep_0199")

    async def ping():
        t0 = time.perf_counter()
        await c.plugin["xep_0199"].send_ping(HOST, timeout=60)
        return time.perf_counter() - t0

    async def slot(size):
        iq = c.Iq()
        iq["type"] = "get"
        iq["to"] = SHARE
        iq.append(ET.Element("{urn:xmpp:http:upload:0}request",
                             {"filename": "f.bin", "size": str(size), "content-type": "application/octet-stream"}))
        t0 = time.perf_counter()
        reply = await iq.send(timeout=600)
        elapsed = time.perf_counter() - t0
        assert reply["type"] == "result", reply
        return elapsed

    pings, slots = [], []
    for size in sizes:
        pings.append(await ping())
        slots.append(await slot(size))
    return slots, pings


def run(n: int, args, base: Path) -> dict:
    docroot = base / "upload"
    user_dir = docroot / hashlib.sha1(f"{USER}@{HOST}".encode()).hexdigest()
    if count(user_dir) > n:  # a smaller size after a larger one: start again
        shutil.rmtree(user_dir)
    t = time.monotonic()
    fill(user_dir, n, int(time.time()))
    created = time.monotonic() - t
    total = n * SIZE
    fit = -(-total // MIB)  # MiB, rounded up
    node_dir = base / f"node-{n}"
    shutil.rmtree(node_dir, ignore_errors=True)
    r = {"n": n, "created": created}
    with BenchEjabberd(node_dir, docroot, fit + 10, fit + 20) as node:
        node.register(USER, PASSWORD)
        session = lambda sizes: asyncio.run(client._session(  # noqa: E731
            node.c2s_port, f"{USER}@{HOST}", PASSWORD, lambda c: round_trips(c, sizes), 3600))
        slots, pings = session([SIZE] * (args.warm + 1))
        drain(node)  # the first request's walk
        r["rt_cold"], r["rt_warm"], r["ping"] = slots[0], sorted(slots[1:]), sorted(pings)
        r["cold"] = sorted(quota_work(node, [SIZE] * args.cold, forget=True))
        r["warm"] = sorted(quota_work(node, [SIZE] * args.warm, forget=False))
        # Over the quota: each slot is two files larger than the room the files leave, as when a
        # user at the quota uploads again; each walk deletes the two oldest files.
        node.set_quotas(fit, fit)
        room = lambda k: fit * MIB - (n - 2 * k) * SIZE  # noqa: E731  (after k deletions)
        r["over"] = sorted(quota_work(node, [room(k) + 2 * SIZE for k in range(args.over)], forget=False))
        drain(node)
        r["deleted"] = n - count(user_dir)
        # What the client sees over the quota: the replies do not wait for the walks (queued).
        slots, _ = session([room(args.over + k) + 2 * SIZE for k in range(args.over)])
        r["rt_over"] = sorted(slots)
        drain(node)
    shutil.rmtree(node_dir, ignore_errors=True)
    return r


def ms(v: list[float], q: float) -> str:
    return f"{v[min(len(v) - 1, round((len(v) - 1) * q))] * 1000:.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,100000,1000000")
    ap.add_argument("--cold", type=int, default=5, help="cold quota-work samples (each walks the directory)")
    ap.add_argument("--over", type=int, default=5, help="over-quota samples (each walks and deletes 2 files)")
    ap.add_argument("--warm", type=int, default=1000, help="warm slot requests and quota-work samples")
    ap.add_argument("--keep", help="directory for the files, kept afterwards (default: a temporary one, removed)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="xh-bench-ejupload-"))
    base.mkdir(parents=True, exist_ok=True)
    print(f"ejabberd 23.01 mod_http_upload + mod_http_upload_quota, ms ({os.cpu_count()} cores)\n")
    print("| files of the user | slot round trip: first / warm p50 / warm p99 / over p50 | ping p50 "
          "| quota work: cold p50 (max) | warm p50 / p99 | over quota p50 (max) | files created in |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    try:
        for n in sizes:
            r = run(n, args, base)
            print(f"| {r['n']} | {r['rt_cold'] * 1000:.2f} / {ms(r['rt_warm'], 0.5)} / {ms(r['rt_warm'], 0.99)} / "
                  f"{ms(r['rt_over'], 0.5)} | {ms(r['ping'], 0.5)} | {ms(r['cold'], 0.5)} ({r['cold'][-1] * 1000:.2f}) | "
                  f"{ms(r['warm'], 0.5)} / {ms(r['warm'], 0.99)} | {ms(r['over'], 0.5)} ({r['over'][-1] * 1000:.2f}) | "
                  f"{r['created']:.1f} s |", flush=True)
            if r["deleted"] != 2 * args.over:
                print(f"  (over quota deleted {r['deleted']} files, expected {2 * args.over})", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
