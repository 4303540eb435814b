#!/usr/bin/env python3
"""Latency of the customer panel's API through each real server (Prosody's mod_http with
mod_xmpp_hosting_panel, ejabberd's request handler mod_xmpp_hosting_panel), with --domains customer
domains stored (default 10,000), each owned by its own account and claimed.

    cargo build --release --workspace && python3 benches/panel_api.py
        [--servers prosody,ejabberd] [--domains 10000] [--requests 500]
    XH_SERVERS=prosody-13,ejabberd-24.12 python3 benches/panel_api.py     # the other generations

Measured from a keep-alive HTTP client on loopback, as p50/p99 over --requests calls each:
  - status:   GET /panel/api/domains/{domain} (authorisation + the domain and its claims)
  - list:     GET /panel/api/domains (the caller's domains)
  - users:    GET /panel/api/domains/{domain}/users (the owner's accounts, listed by the server's own
              account store: 20 accounts here), when this build has the route
  - dns-test: POST /panel/api/domains/{domain}/dns-test, then polling the job until done (Knot on
              loopback answers; the time includes the page's polling, 20 ms apart here, and the
              job's two writes to the store: started, then its outcome)
The domains and claims are written straight into the store file after the CLI created it (10,000
CLI runs would take minutes); the one measured customer (bench-customer.example, served by the
server as a host of its own so that its users can be listed) is made with the CLI like any other.

The servers load a private copy of this build's Lua library and ejabberd module (PROFILE, default
release, from target/release: build it first), taken when the bench starts, so other work
rebuilding target/lua or the NIF in debug meanwhile does not change what is measured. Figures, not
assertions: the bench prints `uptime`'s load before and after each server (2 cores shared by other
work here).
"""

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCHES = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHES.parent / "tests"))
sys.path.insert(0, str(BENCHES))
os.environ.setdefault("PROFILE", "release")

import requests  # noqa: E402

from harness.common import LOOPBACK, PROFILE, run_cli, target, wait_for_port  # noqa: E402
from harness.ejabberd import Ejabberd  # noqa: E402
from harness.knot import Knot, point_store_at, zone_text  # noqa: E402
from harness.prosody import Prosody  # noqa: E402
from upload_slot_cost import private_builds  # noqa: E402

PW = "pw-123456"
PROVIDER = "provider.example"
CUSTOMER = "bench-customer.example"
OWNER = f"customer@{CUSTOMER}"
USERS = 20


def seed(db: Path, n: int):
    """n hosted domains d<i>.example, each claimed and owned by owner<i>@provider.example."""
    now = int(time.time())
    with sqlite3.connect(db) as c:
        c.executemany("INSERT OR IGNORE INTO domains (name, settings, created_at, updated_at) VALUES (?, ?, ?, ?)",
                      [(f"d{i}.example", f'{{"owner": "owner{i}@provider.example"}}', now, now) for i in range(n)])
        c.executemany("INSERT OR IGNORE INTO domain_claims (domain, account, token, state, created_at, verified_at) "
                      "VALUES (?, ?, ?, 'verified', ?, ?)",
                      [(f"d{i}.example", f"owner{i}@provider.example", f"t{i:028d}", now, now) for i in range(n)])
    c.close()


def prepare_store(db: Path, nameserver: str, n: int):
    db.parent.mkdir(parents=True, exist_ok=True)
    run_cli(db, "domain", "add", CUSTOMER, check=False)
    run_cli(db, "domain", "claim", CUSTOMER, "--account", OWNER)
    run_cli(db, "domain", "override", CUSTOMER, "--account", OWNER, "--reason", "bench")
    point_store_at(db, nameserver)
    seed(db, n)


def percentiles(samples: list[float]) -> str:
    s = sorted(samples)
    p = lambda q: s[min(len(s) - 1, int(q * len(s)))] * 1000  # noqa: E731
    return f"p50 {p(0.5):.2f} ms  p99 {p(0.99):.2f} ms  (n={len(s)}, mean {statistics.mean(s) * 1000:.2f} ms)"


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def measure(name: str, http_port: int, requests_each: int):
    base = f"http://{LOOPBACK}:{http_port}/panel/api/"
    http = requests.Session()
    r = http.post(base + "login", json={"jid": OWNER, "password": PW}, timeout=30)
    r.raise_for_status()
    csrf = r.json()["csrf"]
    routes = http.get(base + "routes", timeout=30).json()
    has_users = "/api/domains/{domain}/users" in str(routes)

    def timed(call):
        samples = []
        for _ in range(requests_each):
            t = time.perf_counter()
            call()
            samples.append(time.perf_counter() - t)
        return samples

    def status():
        http.get(base + f"domains/{CUSTOMER}", timeout=30).raise_for_status()

    def listing():
        http.get(base + "domains", timeout=30).raise_for_status()

    def users():
        r = http.get(base + f"domains/{CUSTOMER}/users", timeout=30)
        r.raise_for_status()
        return len(r.json()["users"])

    def dns_test():
        r = http.post(base + f"domains/{CUSTOMER}/dns-test", json={}, headers={"X-CSRF-Token": csrf}, timeout=30)
        r.raise_for_status()
        job = r.json()["job"]
        while True:
            state = http.get(base + f"jobs/{job}", timeout=30).json()["state"]
            if state != "running":
                assert state == "done", state
                return
            time.sleep(0.02)

    calls = [("status", status), ("list", listing)]
    if has_users:
        calls.append(("users", users))
    calls.append(("dns-test", dns_test))
    print(f"{name}, {PROFILE} build, load before: {uptime()}", flush=True)
    mine = http.get(base + "domains", timeout=30).json()["domains"]
    print(f"  logged in as {OWNER} (admin: {r.json()['admin']}); the list has {len(mine)} domain(s)", flush=True)
    for label, call in calls:
        try:
            warm = call()
        except Exception as e:  # noqa: BLE001 - a figure missing is reported, the others still taken
            print(f"  {label:9} not measured: {e}", flush=True)
            continue
        if label == "users" and warm != USERS:
            print(f"  users     listed {warm} accounts, not the {USERS} made", flush=True)
        print(f"  {label:9} {percentiles(timed(call))}", flush=True)
    if not has_users:
        print("  users     not measured: this build has no users route", flush=True)
    print(f"  load after: {uptime()}", flush=True)


def run_prosody(work: Path, knot: Knot, n: int, requests_each: int):
    extra = f'VirtualHost "{CUSTOMER}"\n'
    server = Prosody(work / "prosody", host=PROVIDER, host_modules=["xmpp_hosting_panel"],
                     options={"http_default_host": PROVIDER}, extra_config=extra, version=target("prosody"))
    server.write_config()
    prepare_store(server.database, knot.nameserver, n)
    with server:
        wait_for_port(server.http_port, server.proc, log=server.log)
        for i in range(USERS):
            server.ctl("register", "customer" if i == 0 else f"user{i}", CUSTOMER, PW, check=True)
        measure(f"Prosody {server.version}, {n} domains stored", server.http_port, requests_each)


def run_ejabberd(work: Path, knot: Knot, n: int, requests_each: int):
    node = Ejabberd(work / "ejabberd", host=PROVIDER, extra_hosts=[CUSTOMER], install="config",
                    http_handlers={"/panel": "mod_xmpp_hosting_panel"}, version=target("ejabberd"))
    prepare_store(node.database, knot.nameserver, n)
    with node:
        for i in range(USERS):
            node.register("customer" if i == 0 else f"user{i}", PW, CUSTOMER)
        measure(f"ejabberd {node.version}, {n} domains stored", node.http_port, requests_each)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--servers", default="prosody,ejabberd")
    ap.add_argument("--domains", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=500)
    args = ap.parse_args()
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    work = Path(tempfile.mkdtemp(prefix="xh-panel-bench-"))
    private_builds(work, servers)
    zone = zone_text(CUSTOMER, 1, "_xmpp-client._tcp SRV 1 1 5222 xmpp.provider.example.\n")
    with Knot(work / "knot", {CUSTOMER: zone}) as knot:
        for server in servers:
            run = {"prosody": run_prosody, "ejabberd": run_ejabberd}[server]
            run(work, knot, args.domains, args.requests)


if __name__ == "__main__":
    main()
