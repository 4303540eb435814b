#!/usr/bin/env python3
"""Verify and DNS-test N customer domains (default 10,000) inside a running Prosody, against Knot
on loopback, while a client pings Prosody every 20 ms. Prints the run's times and the pings' round
trips: the event loop must keep answering while the core's worker does the DNS.

    scripts/build && python3 benches/prosody_dns_pings.py [N]

Figures, not assertions."""

import asyncio
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from harness import client  # noqa: E402
from harness.common import LUA_CPATH_DIR, run_cli  # noqa: E402
from harness.knot import Knot, zone_text  # noqa: E402
from harness.prosody import Prosody  # noqa: E402

ZONE = "bench.example"
TARGET = "xmpp.provider.example"

CLAIM_ALL = r"""
local xh = require "xmpp_hosting"
local h = assert(xh.open(arg[1]))
local out = assert(io.open(arg[2], "w"))
for i = 1, tonumber(arg[3]) do
  local c = assert(h:claim_domain(("d%d.%s"):format(i, arg[4]), "acct"))
  out:write(i, " ", c.claim.token, "\n")
end
out:close()
"""


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    work = Path(tempfile.mkdtemp(prefix="xh-bench-dns-"))
    db = work / "prosody" / "xmpp_hosting.sqlite"
    db.parent.mkdir(parents=True)
    script, tokens = work / "claim.lua", work / "tokens"
    script.write_text(CLAIM_ALL)
    t = time.monotonic()
    subprocess.run(["lua5.4", str(script), str(db), str(tokens), str(n), ZONE], check=True,
                   env={"LUA_CPATH_5_4": f"{LUA_CPATH_DIR}/?.so;;", "PATH": "/usr/bin:/bin"})
    print(f"setup: {n} claims in {time.monotonic() - t:.2f} s")
    records = []
    for line in tokens.read_text().split("\n"):
        if not line:
            continue
        i, token = line.split()
        d = f"d{i}"
        records += [f'xmpp-hosting-verification.{d} TXT "verify={token}"',
                    f"_xmpp-client._tcp.{d} SRV 1 1 5222 {TARGET}.", f"_xmpps-client._tcp.{d} SRV 1 1 443 {TARGET}.",
                    f"_xmpp-server._tcp.{d} SRV 1 1 5269 {TARGET}.", f"share.{d} CNAME {TARGET}.",
                    f"proxy.{d} CNAME {TARGET}.", f"conference.{d} CNAME {TARGET}."]
    with Knot(work / "knot", {ZONE: zone_text(ZONE, 1, "\n".join(records))}) as knot:
        srv = lambda port: json.dumps({"target": TARGET, "port": port, "priority": 1, "weight": 1})  # noqa: E731
        for key, value in [
            ("dns.nameservers", json.dumps([knot.nameserver])), ("dns.timeout_ms", "3000"),
            ("dns.xmpp_client", srv(5222)), ("dns.xmpps_client", srv(443)), ("dns.xmpp_server", srv(5269)),
            ("dns.cnames", json.dumps([{"label": lbl, "target": TARGET} for lbl in ("share", "proxy", "conference")])),
        ]:
            run_cli(db, "provider", "set", key, value)
        with Prosody(work / "prosody", host="pings.example") as prosody:
            prosody.create_user("pinger", "pw-123456")
            results = {}

            def admin():
                time.sleep(1.0)
                for command in ("xmpp_hosting:domain_verify_all()", "xmpp_hosting:dns_check_all()"):
                    t0 = time.monotonic()
                    r = prosody.shell(command)
                    results[command] = (time.monotonic() - t0, (r.stdout + r.stderr).strip())
                results["done"] = True

            async def pings(c):
                return await client.ping_until(c, lambda: "done" in results, interval=0.02)

            worker = threading.Thread(target=admin)
            worker.start()
            rtts = asyncio.run(client._session(prosody.c2s_port, "pinger@pings.example", "pw-123456", pings, 600))
            worker.join()
    for command, outcome in results.items():
        if command != "done":
            seconds, out = outcome
            print(f"{command}: {seconds:.2f} s (prosodyctl shell round trip) -> {out.splitlines()[-1]}")
    print(client.ping_summary(rtts))


if __name__ == "__main__":
    main()
