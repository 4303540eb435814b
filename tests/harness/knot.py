"""A real Knot DNS on loopback serving test zones, for the DNS integration tests."""

import json
import os
import subprocess
import time
from pathlib import Path

from .common import LOOPBACK, free_port, run_cli, stop_process_group, tail


def zone_text(origin: str, serial: int, body: str) -> str:
    return (f"$ORIGIN {origin}.\n$TTL 60\n@ SOA ns.{origin}. hostmaster.{origin}. {serial} 3600 600 86400 60\n"
            f"@ NS ns.{origin}.\nns A 127.0.0.1\n{body}\n")


class Knot:
    """knotd with a generated config and zone files in `workdir`; a context manager."""

    def __init__(self, workdir: Path, zones: dict[str, str], extra_conf: list[str] = (),
                 zone_conf: dict[str, list[str]] | None = None, env: dict | None = None):
        """`extra_conf`: config lines before `zone:` (keys, acls); `zone_conf`: lines under a
        zone's entry (e.g. `acl: update` for a zone taking TSIG-signed updates); `env`: added to
        knotd's environment (a ServerClock's, so TSIG's time check agrees with a server whose
        clock was moved)."""
        self.dir = Path(workdir)
        self.zones = zones
        self.extra_conf = list(extra_conf)
        self.zone_conf = zone_conf or {}
        self.env = dict(env or {})
        self.port = free_port()
        self.conf = self.dir / "knot.conf"
        self.log = self.dir / "knot.log"
        self.proc = None

    @property
    def nameserver(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def __enter__(self):
        (self.dir / "db").mkdir(parents=True, exist_ok=True)
        lines = [
            "server:", f"  listen: {LOOPBACK}@{self.port}", f"  rundir: {self.dir}",
            "control:", f"  listen: {self.dir}/knot.sock",
            "database:", f"  storage: {self.dir}/db",
            "log:", f"  - target: {self.log}", "    any: info",
            "template:", "  - id: default", f"    storage: {self.dir}", '    file: "%s.zone"',
            "    zonefile-load: whole", "    journal-content: none",
            *self.extra_conf,
            "zone:",
        ]
        for name, text in self.zones.items():
            (self.dir / f"{name}.zone").write_text(text)
            lines.append(f"  - domain: {name}")
            lines.extend(f"    {line}" for line in self.zone_conf.get(name, []))
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(["knotd", "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True,
                                     env={**os.environ, **self.env} if self.env else None)
        try:
            self._wait(next(iter(self.zones)))
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait(self, zone: str, timeout: float = 20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = subprocess.run(["kdig", f"@{LOOPBACK}", "-p", str(self.port), "+short", "+time=1", "+retry=0", "SOA", zone],
                                 capture_output=True, text=True)
            if out.stdout.strip():
                return
            time.sleep(0.1)
        raise TimeoutError(f"knotd does not serve {zone}\n{tail(self.log)}")

    def replace(self, zone: str, text: str):
        """Serves `text` as the zone from now on (bump its serial) and waits until knotd does."""
        (self.dir / f"{zone}.zone").write_text(text)
        subprocess.run(["knotc", "-c", str(self.conf), "zone-reload", zone], check=True, capture_output=True)
        serial = text.split(" SOA ")[1].split()[2]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            out = subprocess.run(["kdig", f"@{LOOPBACK}", "-p", str(self.port), "+short", "+time=1", "+retry=0",
                                  "SOA", zone], capture_output=True, text=True)
            if out.stdout.split()[2:3] == [serial]:
                return
            time.sleep(0.1)
        raise TimeoutError(f"knotd did not load serial {serial} of {zone}\n{tail(self.log)}")

    def __exit__(self, *exc):
        if self.proc is not None:
            stop_process_group(self.proc)
            self.proc = None


def point_store_at(db: Path, nameserver: str, timeout_ms: int = 1500):
    """Points a store's provider DNS settings at `nameserver` (one attempt per lookup), expecting
    the records the server DNS tests check: `_xmpp-client._tcp` on 5222 and the `share` CNAME."""
    for key, value in [
        ("dns.nameservers", json.dumps([nameserver])),
        ("dns.timeout_ms", str(timeout_ms)),
        ("dns.attempts", "1"),
        ("dns.xmpp_client", json.dumps({"target": "xmpp.provider.example", "port": 5222})),
        ("dns.cnames", json.dumps([{"label": "share", "target": "xmpp.provider.example"}])),
    ]:
        run_cli(db, "provider", "set", key, value)
