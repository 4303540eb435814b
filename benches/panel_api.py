#!/usr/bin/env python3
"""Latency of the customer panel's API through the real Prosody (mod_xmpp_hosting_panel), with
--domains customer domains stored (default 10,000), each owned by its own account and claimed.

    [XH_SERVERS=prosody-13] python3 benches/panel_api.py [--domains 10000] [--requests 300]

Measured from a keep-alive HTTP client on loopback, as p50/p99 over --requests calls each:
  - status:   GET /panel/api/domains/{domain} (authorisation + the domain and its claims)
  - list:     GET /panel/api/domains (the caller's domains: one scan of the claims)
  - dns-test: POST /panel/api/domains/{domain}/dns-test, then polling the job until done (Knot on
              loopback answers; the time includes the page's polling, 20 ms apart here)
The users call (create/list/re-password/delete) is not built yet. The domains and claims are
written straight into the store file after the CLI created it (10,000 CLI runs would take
minutes); the one measured customer is made with the CLI like any other. Figures, not
assertions: print `uptime` beside them (2 cores shared by other work here).
"""

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import requests  # noqa: E402

from harness.common import LOOPBACK, run_cli, target, wait_for_port  # noqa: E402
from harness.knot import Knot, point_store_at, zone_text  # noqa: E402
from harness.prosody import Prosody  # noqa: E402

PW = "pw-123456"
CUSTOMER = "bench-customer.example"


def seed(db: Path, n: int):
    """n hosted domains d<i>.example, each claimed and owned by owner<i>@provider.example."""
    now = int(time.time())
    with sqlite3.connect(db) as c:
        c.executemany("INSERT OR IGNORE INTO domains (name, settings, created_at, updated_at) VALUES (?, ?, ?, ?)",
                      [(f"d{i}.example", f'{{"owner": "owner{i}@provider.example"}}', now, now) for i in range(n)])
        c.executemany("INSERT OR IGNORE INTO domain_claims (domain, account, token, state, created_at, verified_at) "
                      "VALUES (?, ?, ?, 'verified', ?, ?)",
                      [(f"d{i}.example", f"owner{i}@provider.example", f"t{i:028d}", now, now) for i in range(n)])


def percentiles(samples: list[float]) -> str:
    s = sorted(samples)
    p = lambda q: s[min(len(s) - 1, int(q * len(s)))] * 1000  # noqa: E731
    return f"p50 {p(0.5):.2f} ms  p99 {p(0.99):.2f} ms  (n={len(s)}, mean {statistics.mean(s) * 1000:.2f} ms)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--domains", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=300)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="xh-panel-bench-"))
    zone = zone_text(CUSTOMER, 1, "_xmpp-client._tcp SRV 1 1 5222 xmpp.provider.example.\n")
    with Knot(work / "knot", {CUSTOMER: zone}) as knot, \
            Prosody(work / "prosody", host="provider.example", host_modules=["xmpp_hosting_panel"],
                    options={"http_default_host": "provider.example"}, version=target("prosody")) as server:
        wait_for_port(server.http_port, server.proc, log=server.log)
        server.create_user("customer", PW)
        run_cli(server.database, "domain", "claim", CUSTOMER, "--account", "customer@provider.example")
        run_cli(server.database, "domain", "override", CUSTOMER, "--account", "customer@provider.example",
                "--reason", "bench")
        point_store_at(server.database, knot.nameserver)
        seed(server.database, args.domains)
        base = f"http://{LOOPBACK}:{server.http_port}/panel/api/"
        http = requests.Session()
        r = http.post(base + "login", json={"jid": "customer@provider.example", "password": PW}, timeout=30)
        r.raise_for_status()
        csrf = r.json()["csrf"]

        def timed(call):
            samples = []
            for _ in range(args.requests):
                t = time.perf_counter()
                call()
                samples.append(time.perf_counter() - t)
            return samples

        def status():
            http.get(base + f"domains/{CUSTOMER}", timeout=30).raise_for_status()

        def listing():
            http.get(base + "domains", timeout=30).raise_for_status()

        def dns_test():
            r = http.post(base + f"domains/{CUSTOMER}/dns-test", json={}, headers={"X-CSRF-Token": csrf}, timeout=30)
            r.raise_for_status()
            job = r.json()["job"]
            while http.get(base + f"jobs/{job}", timeout=30).json()["state"] == "running":
                time.sleep(0.02)

        print(f"Prosody {server.version}, {args.domains} domains stored, load: {os.getloadavg()}")
        for name, call in [("status", status), ("list", listing), ("dns-test", dns_test)]:
            call()  # warm
            print(f"{name:9} {percentiles(timed(call))}")
        print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
